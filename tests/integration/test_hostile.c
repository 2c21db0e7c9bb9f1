/* SPDX-License-Identifier: MIT */
/*
 * Integration: hostile or broken HTTP.  Oversized bodies (announced by
 * Content-Length or grown by chunks), malformed forms, wrong content types
 * and methods, unknown paths, ambiguous framing (Content-Length with
 * Transfer-Encoding, repeated Content-Length), pipelined requests, an
 * unconfigured provider, and slow clients that trickle a request.  Each
 * gets its exact answer and none writes a row.
 */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "util.h"

#define MAX_BODY           2048
#define REQUEST_TIMEOUT_MS 1500
#define IDLE_TIMEOUT_S     2

static const char *const env[] = {
    "DLRD_SERVER_MAX_BODY_BYTES=2048",
    "DLRD_SERVER_REQUEST_TIMEOUT_MS=1500",
    "DLRD_SERVER_IDLE_TIMEOUT_S=2",
    NULL,
};

static int setup(void **state)
{
	return h_fixture_start(state, env);
}

/* Starts dlrd with other settings, given as the test's initial state. */
static int setup_env(void **state)
{
	const char *const *other = *state;
	return h_fixture_start(state, other);
}

static const char *const no_tokens[] = {"DLRD_TWILIO_AUTH_TOKENS=", NULL};

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

static void expect_nothing_written(struct dlrd *d)
{
	assert_int_equal(h_count_data(d), 0);
}

/* The status codes of everything answered on one raw connection. */
static size_t raw_statuses(struct dlrd *d, const char *req, int *codes, size_t max, bool *closed)
{
	static char buf[65536];
	size_t n = h_raw(d, req, strlen(req), buf, sizeof(buf), 3000, closed);

	assert_true(n != (size_t)-1);
	return h_statuses(buf, n, codes, max);
}

static void test_body_too_large(void **state)
{
	struct dlrd *d = *state;
	char sid[35], body[4096], buf[1024];
	struct h_resp r;
	size_t n;
	bool closed;
	int codes[4];

	/* a signed callback one byte over the limit, sent by libcurl */
	h_sid(sid, 30, 1);
	n = h_twilio_body(body, sizeof(body), sid, "delivered", NULL);
	util_strlcpy(body + n, "&Pad=", sizeof(body) - n);
	for (n += 5; n < MAX_BODY + 1; n++)
		body[n] = 'x';
	body[n] = '\0';
	assert_int_equal(h_post_status(d, body, &r), 413);
	assert_string_equal(r.connection, "close");
	assert_string_equal(r.body, "request body too large\n");
	/* at the limit exactly it is accepted */
	body[MAX_BODY] = '\0';
	assert_int_equal(h_post_status(d, body, &r), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 1);

	/* announced by Content-Length: answered before any body is sent */
	util_fmt(buf, sizeof(buf),
	         "POST " H_STATUS_PATH " HTTP/1.1\r\nHost: sms.example.com\r\n"
	         "Content-Type: application/x-www-form-urlencoded\r\n"
	         "X-Twilio-Signature: x\r\nContent-Length: 1000000\r\n\r\n");
	int64_t t0 = h_now_ms();
	assert_int_equal(raw_statuses(d, buf, codes, 4, &closed), 1);
	assert_int_equal(codes[0], 413);
	assert_true(closed);
	assert_true(h_now_ms() - t0 < 2000);
	/* one byte over the limit is already too much to wait for */
	util_fmt(buf, sizeof(buf),
	         "POST " H_STATUS_PATH " HTTP/1.1\r\nHost: sms.example.com\r\n"
	         "Content-Type: application/x-www-form-urlencoded\r\n"
	         "X-Twilio-Signature: x\r\nContent-Length: %d\r\n\r\n",
	         MAX_BODY + 1);
	t0 = h_now_ms();
	assert_int_equal(raw_statuses(d, buf, codes, 4, &closed), 1);
	assert_int_equal(codes[0], 413);
	assert_true(closed);
	assert_true(h_now_ms() - t0 < 2000);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_int_equal(h_count_data(d), 3);
}

static void test_chunked_too_large(void **state)
{
	struct dlrd *d = *state;
	static char req[8192];
	char chunk[1100];
	size_t at;
	bool closed;
	int codes[4];

	/* chunks that grow past the limit */
	at = util_fmt(req, sizeof(req),
	              "POST " H_STATUS_PATH " HTTP/1.1\r\nHost: sms.example.com\r\n"
	              "Content-Type: application/x-www-form-urlencoded\r\n"
	              "X-Twilio-Signature: x\r\nTransfer-Encoding: chunked\r\n\r\n");
	memset(chunk, 'a', 1024);
	chunk[1024] = '\0';
	for (int i = 0; i < 3; i++)
		at += util_fmt(req + at, sizeof(req) - at, "400\r\n%s\r\n", chunk);
	at += util_fmt(req + at, sizeof(req) - at, "0\r\n\r\n");
	assert_true(at + 1 < sizeof(req));
	assert_int_equal(raw_statuses(d, req, codes, 4, &closed), 1);
	assert_int_equal(codes[0], 413);
	assert_true(closed);
	expect_nothing_written(d);
}

/* A small signed body in two chunks is an ordinary callback. */
static void test_chunked_small(void **state)
{
	struct dlrd *d = *state;
	static char req[8192];
	char sid[35], body[1024], head[2048];
	size_t n, half;
	bool closed;
	int codes[4];

	h_sid(sid, 31, 1);
	n = h_twilio_body(body, sizeof(body), sid, "sent", NULL);
	half = n / 2;
	assert_true(n > 0);
	assert_true(h_raw_status_post(head, sizeof(head), body, true) > 0);
	/* keep the request head (up to the blank line), swap the framing */
	char *cl = strstr(head, "Content-Length:");
	assert_non_null(cl);
	*cl = '\0';
	assert_true(util_fmt(req, sizeof(req),
	                     "%sTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
	                     "%zx\r\n%.*s\r\n%zx\r\n%s\r\n0\r\n\r\n",
	                     head, half, (int)half, body, n - half, body + half) +
	                1 <
	            sizeof(req));
	assert_int_equal(raw_statuses(d, req, codes, 4, &closed), 1);
	assert_int_equal(codes[0], 200);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
}

static void test_malformed_form(void **state)
{
	struct dlrd *d = *state;
	static const char *const bodies[] = {
	    "MessageSid=SM00000000000000000000000000000001&MessageStatus=%ZZ",
	    "MessageSid=SM00000000000000000000000000000001&MessageStatus=sent%4",
	    "MessageSid=SM00000000000000000000000000000001&MessageStatus=se%00nt",
	    "MessageSid=SM00000000000000000000000000000001&MessageStatus=%FF%FE",
	};
	const char *headers[] = {"Content-Type: application/x-www-form-urlencoded",
	                         "X-Twilio-Signature: AAAAAAAAAAAAAAAAAAAAAAAAAAA=", NULL};
	struct h_resp r;

	for (size_t i = 0; i < ARRAY_LEN(bodies); i++) {
		h_request(d, "POST", H_STATUS_PATH, headers, bodies[i], strlen(bodies[i]), &r);
		assert_int_equal(r.status, 400);
	}
	expect_nothing_written(d);
	assert_int_equal(
	    h_metric(d, "dlrd_callbacks_total{provider=\"twilio\",outcome=\"bad_request\"}"),
	    (int64_t)ARRAY_LEN(bodies));
}

static void test_content_type(void **state)
{
	struct dlrd *d = *state;
	char sid[35], body[1024];
	static const char *const json[] = {"Content-Type: application/json", NULL};
	static const char *const text[] = {"Content-Type: text/plain", NULL};
	static const char *const none[] = {"Content-Type:", NULL};
	static const char *const charset[] = {
	    "Content-Type: Application/X-WWW-Form-Urlencoded; charset=utf-8", NULL};
	struct h_resp r;

	h_sid(sid, 32, 1);
	assert_true(h_twilio_body(body, sizeof(body), sid, "sent", NULL) > 0);
	/* the signature is valid; only the media type is wrong */
	assert_int_equal(h_post_twilio(d, H_STATUS_PATH, H_TOKEN1, body, json, &r), 415);
	assert_string_equal(r.body, "unsupported content type\n");
	assert_int_equal(h_post_twilio(d, H_STATUS_PATH, H_TOKEN1, body, text, &r), 415);
	assert_int_equal(h_post_twilio(d, H_STATUS_PATH, H_TOKEN1, body, none, &r), 415);
	expect_nothing_written(d);
	/* parameters and case do not matter */
	assert_int_equal(h_post_twilio(d, H_STATUS_PATH, H_TOKEN1, body, charset, &r), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
}

static void test_wrong_method(void **state)
{
	struct dlrd *d = *state;
	struct h_resp get, put, del, post;

	h_get(d, H_STATUS_PATH, &get);
	h_request(d, "PUT", H_STATUS_PATH, NULL, "a=b", 3, &put);
	h_request(d, "DELETE", H_STATUS_PATH, NULL, NULL, 0, &del);
	h_request(d, "POST", "/healthz", NULL, "a=b", 3, &post);
	assert_int_equal(get.status, 405);
	assert_int_equal(put.status, 405);
	assert_int_equal(del.status, 405);
	assert_int_equal(post.status, 405);
	expect_nothing_written(d);
	/* Allow lists what the resource supports (RFC 9110, 15.5.6) */
	assert_string_equal(get.allow, "POST");
	assert_string_equal(put.allow, "POST");
	assert_string_equal(del.allow, "POST");
	assert_string_equal(post.allow, "GET, HEAD");
}

static void test_unknown_paths(void **state)
{
	struct dlrd *d = *state;
	static const char *const paths[] = {
	    "/",
	    "/nope",
	    "/webhooks",
	    "/webhooks/",
	    "/webhooks/twilio",
	    "/webhooks/twilio/",
	    "/webhooks/nosuch/status",
	    "/webhooks/twilio/other",
	    "/webhooks/twilio/status/extra",
	    "/webhooks//status",
	    "/Webhooks/twilio/status",
	    "/webhooks/twilio/status%2F",
	};
	char sid[35], body[1024];
	struct h_resp r;

	h_sid(sid, 33, 1);
	assert_true(h_twilio_body(body, sizeof(body), sid, "sent", NULL) > 0);
	for (size_t i = 0; i < ARRAY_LEN(paths); i++) {
		/* signed for that very URL, so only the route can refuse it */
		assert_int_equal(h_post_twilio(d, paths[i], H_TOKEN1, body, NULL, &r), 404);
		assert_string_equal(r.body, "not found\n");
	}
	expect_nothing_written(d);
}

static void test_ambiguous_framing(void **state)
{
	struct dlrd *d = *state;
	static const char *const reqs[] = {
	    /* Content-Length and Transfer-Encoding together (smuggling) */
	    "POST " H_STATUS_PATH " HTTP/1.1\r\nHost: sms.example.com\r\n"
	    "Content-Type: application/x-www-form-urlencoded\r\n"
	    "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "5\r\nhello\r\n0\r\n\r\n",
	    /* the same the other way round */
	    "POST " H_STATUS_PATH " HTTP/1.1\r\nHost: sms.example.com\r\n"
	    "Content-Type: application/x-www-form-urlencoded\r\n"
	    "Transfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n"
	    "5\r\nhello\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n",
	    /* a repeated Content-Length, equal values */
	    "POST " H_STATUS_PATH " HTTP/1.1\r\nHost: sms.example.com\r\n"
	    "Content-Type: application/x-www-form-urlencoded\r\n"
	    "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
	    /* a repeated Content-Length, different values */
	    "POST " H_STATUS_PATH " HTTP/1.1\r\nHost: sms.example.com\r\n"
	    "Content-Type: application/x-www-form-urlencoded\r\n"
	    "Content-Length: 5\r\nContent-Length: 30\r\n\r\nhello",
	    /* a Transfer-Encoding other than chunked */
	    "POST " H_STATUS_PATH " HTTP/1.1\r\nHost: sms.example.com\r\n"
	    "Content-Type: application/x-www-form-urlencoded\r\n"
	    "Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	    /* a Content-Length that is not a number */
	    "POST " H_STATUS_PATH " HTTP/1.1\r\nHost: sms.example.com\r\n"
	    "Content-Type: application/x-www-form-urlencoded\r\n"
	    "Content-Length: 5x\r\n\r\nhello",
	};
	int codes[4];
	bool closed;

	for (size_t i = 0; i < ARRAY_LEN(reqs); i++) {
		size_t n = raw_statuses(d, reqs[i], codes, 4, &closed);
		/* one answer, 400, and the connection is not reused */
		if (n != 1 || codes[0] != 400 || !closed)
			fail_msg("request %zu: %zu answers, first %d, closed %d", i, n,
			         n ? codes[0] : 0, closed);
	}
	expect_nothing_written(d);
}

static void test_pipelined(void **state)
{
	struct dlrd *d = *state;
	static char req[8192];
	char a[35], b[35], body[1024];
	size_t at;
	int codes[4];
	bool closed;

	h_sid(a, 34, 1);
	h_sid(b, 34, 2);
	assert_true(h_twilio_body(body, sizeof(body), a, "sent", NULL) > 0);
	at = h_raw_status_post(req, sizeof(req), body, false);
	assert_true(at > 0);
	assert_true(h_twilio_body(body, sizeof(body), b, "delivered", NULL) > 0);
	assert_true(h_raw_status_post(req + at, sizeof(req) - at, body, true) > 0);

	assert_int_equal(raw_statuses(d, req, codes, 4, &closed), 2);
	assert_int_equal(codes[0], 200);
	assert_int_equal(codes[1], 200);
	assert_true(closed);
	assert_int_equal(h_count(d, "sms_messages"), 2);
	assert_int_equal(h_sql_int(d,
	                           "SELECT count(*) FROM sms_messages WHERE"
	                           " (provider_message_id = %Q AND current_status = 'sent') OR"
	                           " (provider_message_id = %Q AND current_status = 'delivered')",
	                           a, b),
	                 2);
}

/* Sends the head of a request, then drip one byte every 300 ms (repeating
 * its last byte when it runs out).  Returns how long
 * dlrd kept the connection open (ms), or -1 if it still was after limit_ms.
 * When side is true, /healthz and a normal callback are asked on other
 * connections while the slow one trickles, and answered (/healthz promptly). */
static int64_t trickle(struct dlrd *d, const char *head, const char *drip, int64_t limit_ms,
                       bool side)
{
	int fd = h_connect(d->port);
	int64_t t0, closed_after = -1;
	size_t i = 0;
	bool side_done = !side;

	assert_true(fd >= 0);
	assert_int_equal(h_send_all(fd, head, strlen(head)), 0);
	t0 = h_now_ms();
	while (h_now_ms() - t0 < limit_ms) {
		struct pollfd pfd = {fd, POLLIN, 0};
		if (poll(&pfd, 1, 300) > 0) {
			char buf[512];
			ssize_t r = recv(fd, buf, sizeof(buf), 0);
			if (r <= 0) {
				closed_after = h_now_ms() - t0;
				break;
			}
			continue; /* an answer (408, say) before the close is fine */
		}
		/* the drip, then its last byte again and again */
		size_t k = i < strlen(drip) ? i : strlen(drip) - 1;
		if (send(fd, drip + k, 1, MSG_NOSIGNAL) != 1) {
			closed_after = h_now_ms() - t0;
			break;
		}
		i++;
		if (!side_done && h_now_ms() - t0 >= 600) {
			char sid[35], body[1024];
			struct h_resp r;
			h_sid(sid, 35, 1);
			assert_true(h_twilio_body(body, sizeof(body), sid, "sent", NULL) > 0);
			/* served promptly: /healthz, which waits for no fsync,
			 * so a slow disk cannot make this fail */
			assert_int_equal(h_request(d, "GET", "/healthz", NULL, NULL, 0, &r), 0);
			assert_int_equal(r.status, 200);
			assert_true(r.elapsed_ms < 1000);
			assert_int_equal(h_post_status(d, body, &r), 200);
			side_done = true;
		}
	}
	close(fd);
	assert_true(side_done);
	return closed_after;
}

/* The sample of dlrd_request_deadlines_total for state. */
#define DEADLINES(state) "dlrd_request_deadlines_total{state=\"" state "\"}"

static void test_slow_body(void **state)
{
	struct dlrd *d = *state;
	static const char head[] = "POST " H_STATUS_PATH " HTTP/1.1\r\nHost: sms.example.com\r\n"
	                           "Content-Type: application/x-www-form-urlencoded\r\n"
	                           "X-Twilio-Signature: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"
	                           "Content-Length: 100\r\n\r\n";
	int64_t ms = trickle(d, head, "MessageSid=SM0&", 6000, true);

	if (ms < REQUEST_TIMEOUT_MS - 300 || ms > REQUEST_TIMEOUT_MS + 3000)
		fail_msg("slow body: connection closed after %lld ms, expected about %d ms",
		         (long long)ms, REQUEST_TIMEOUT_MS);
	/* only the normal callback was stored */
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_int_equal(h_count_data(d), 3);
	/* the cut-off is counted (README: /metrics counts every request_deadline,
	 * of which the log shows at most 10 a second) */
	assert_int_equal(h_metric(d, DEADLINES("request")), 1);
	assert_int_equal(h_metric(d, DEADLINES("idle")), 0);
}

static void test_slow_headers(void **state)
{
	struct dlrd *d = *state;
	static const char head[] = "POST " H_STATUS_PATH " HTTP/1.1\r\nHost: sms.example.com\r\n";
	int64_t ms = trickle(d, head, "X-Slow: a", 6000, false);

	if (ms < REQUEST_TIMEOUT_MS - 300 || ms > REQUEST_TIMEOUT_MS + 3000)
		fail_msg("slow headers: connection closed after %lld ms, expected about %d ms",
		         (long long)ms, REQUEST_TIMEOUT_MS);
	expect_nothing_written(d);
	assert_int_equal(h_metric(d, DEADLINES("request")), 1);
}

static void test_slow_request_line(void **state)
{
	struct dlrd *d = *state;
	const int64_t expect = IDLE_TIMEOUT_S * 1000 + REQUEST_TIMEOUT_MS;
	int64_t ms = trickle(d, "P", "OST /webhooks/twilio/status?a", 8000, false);

	if (ms < 0 || ms > expect + 3000)
		fail_msg("slow request line: connection closed after %lld ms, expected at most"
		         " %lld ms",
		         (long long)ms, (long long)expect + 1500);
	expect_nothing_written(d);
	assert_int_equal(h_metric(d, DEADLINES("idle")), 1);
	assert_int_equal(h_metric(d, DEADLINES("request")), 0);
}

/* A provider without credentials does not exist for the outside world. */
static void test_unconfigured_provider(void **state)
{
	struct dlrd *d = *state;
	char sid[35], body[1024];
	struct h_resp r;

	h_sid(sid, 36, 1);
	assert_true(h_twilio_body(body, sizeof(body), sid, "sent", NULL) > 0);
	assert_int_equal(h_post_status(d, body, &r), 404);
	assert_int_equal(h_post_twilio(d, H_STATUS_PATH, NULL, body, NULL, &r), 404);
	expect_nothing_written(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_body_too_large, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chunked_too_large, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chunked_small, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed_form, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_content_type, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_method, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_paths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ambiguous_framing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pipelined, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slow_body, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slow_headers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slow_request_line, setup, teardown),
	    cmocka_unit_test_prestate_setup_teardown(test_unconfigured_provider, setup_env,
	                                             teardown, (void *)no_tokens),
	};
	return cmocka_run_group_tests_name("integration/hostile", tests, NULL, NULL);
}
