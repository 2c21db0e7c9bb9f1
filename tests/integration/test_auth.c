/* SPDX-License-Identifier: MIT */
/*
 * Integration: request authentication.  Every way a Twilio signature can be
 * wrong (forged, missing, empty, truncated, computed for another URL or for
 * the Host dlrd saw instead of its public URL, made with a token dlrd does not
 * have, or over a body that was changed afterwards) is answered 401 and
 * writes nothing at all.  Both configured tokens are accepted (rotation),
 * and one signature is checked against an HMAC computed here with OpenSSL
 * alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "harness.h"
#include "util.h"

#define UNAUTHORIZED "dlrd_callbacks_total{provider=\"twilio\",outcome=\"unauthorized\"}"
#define STORED       "dlrd_callbacks_total{provider=\"twilio\",outcome=\"stored\"}"

static int setup(void **state)
{
	return h_fixture_start(state, NULL);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

/* POSTs body with exactly the given signature header line (NULL: none). */
static long post_sig(struct dlrd *d, const char *target, const char *body, const char *sig_line,
                     struct h_resp *r)
{
	const char *headers[] = {"Content-Type: application/x-www-form-urlencoded", sig_line, NULL};
	h_request(d, "POST", target, headers, body, strlen(body), r);
	return r->status;
}

/* POSTs body signed with token for url (which need not be where it goes). */
static long post_signed_for(struct dlrd *d, const char *target, const char *token, const char *url,
                            const char *body, struct h_resp *r)
{
	char sig[29], line[64];

	assert_int_equal(h_twilio_sign(token, url, body, strlen(body), sig), 0);
	util_fmt(line, sizeof(line), "X-Twilio-Signature: %s", sig);
	return post_sig(d, target, body, line, r);
}

static void expect_nothing_written(struct dlrd *d)
{
	assert_int_equal(h_count(d, "sms_messages"), 0);
	assert_int_equal(h_count(d, "sms_message_events"), 0);
	assert_int_equal(h_count(d, "sms_callback_log"), 0);
	assert_int_equal(h_count(d, "review_queue"), 0);
}

static void test_bad_signatures_write_nothing(void **state)
{
	struct dlrd *d = *state;
	char sid[35], body[1024], tampered[1024], sig[29], line[64], url[128];
	struct h_resp r;
	int64_t rejected = 0;

	h_sid(sid, 20, 1);
	assert_true(h_twilio_body(body, sizeof(body), sid, "delivered", NULL) > 0);

	/* forged */
	assert_int_equal(post_sig(d, H_STATUS_PATH, body,
	                          "X-Twilio-Signature: AAAAAAAAAAAAAAAAAAAAAAAAAAA=", &r),
	                 401);
	rejected++;
	assert_string_equal(r.body, "unauthorized\n");
	expect_nothing_written(d);

	/* missing */
	assert_int_equal(h_post_twilio(d, H_STATUS_PATH, NULL, body, NULL, &r), 401);
	rejected++;
	expect_nothing_written(d);

	/* empty */
	assert_int_equal(post_sig(d, H_STATUS_PATH, body, "X-Twilio-Signature;", &r), 401);
	rejected++;
	expect_nothing_written(d);

	/* truncated: the right signature minus its last character */
	assert_int_equal(
	    h_twilio_sign(H_TOKEN1, H_PUBLIC_URL H_STATUS_PATH, body, strlen(body), sig), 0);
	util_fmt(line, sizeof(line), "X-Twilio-Signature: %.27s", sig);
	assert_int_equal(post_sig(d, H_STATUS_PATH, body, line, &r), 401);
	rejected++;
	expect_nothing_written(d);

	/* signed for another URL */
	assert_int_equal(post_signed_for(d, H_STATUS_PATH, H_TOKEN1,
	                                 "https://other.example.com" H_STATUS_PATH, body, &r),
	                 401);
	rejected++;
	expect_nothing_written(d);

	/* signed for the URL the request reached (Host header), not public_url */
	util_fmt(url, sizeof(url), "%s%s", d->base_url, H_STATUS_PATH);
	assert_int_equal(post_signed_for(d, H_STATUS_PATH, H_TOKEN1, url, body, &r), 401);
	rejected++;
	expect_nothing_written(d);

	/* signed without the query string the request carries */
	assert_int_equal(post_signed_for(d, H_STATUS_PATH "?attempt=2", H_TOKEN1,
	                                 H_PUBLIC_URL H_STATUS_PATH, body, &r),
	                 401);
	rejected++;
	expect_nothing_written(d);

	/* a token dlrd is not configured with */
	assert_int_equal(post_signed_for(d, H_STATUS_PATH, "tok3-not-configured-0123456789abcdef",
	                                 H_PUBLIC_URL H_STATUS_PATH, body, &r),
	                 401);
	rejected++;
	expect_nothing_written(d);

	/* a body changed after signing: delivered becomes failed */
	assert_true(h_twilio_body(tampered, sizeof(tampered), sid, "failed", NULL) > 0);
	util_fmt(line, sizeof(line), "X-Twilio-Signature: %s", sig);
	assert_int_equal(post_sig(d, H_STATUS_PATH, tampered, line, &r), 401);
	rejected++;
	/* ... or a field appended */
	util_fmt(tampered, sizeof(tampered), "%s&ErrorCode=30003", body);
	assert_int_equal(post_sig(d, H_STATUS_PATH, tampered, line, &r), 401);
	rejected++;
	expect_nothing_written(d);

	assert_int_equal(h_metric(d, UNAUTHORIZED), rejected);
	assert_int_equal(h_metric(d, STORED), 0);

	/* the untouched request with its real signature is accepted */
	assert_int_equal(post_sig(d, H_STATUS_PATH, body, line, &r), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_int_equal(h_metric(d, STORED), 1);
}

static void test_token_rotation(void **state)
{
	struct dlrd *d = *state;
	char a[35], b[35], body[1024];
	struct h_resp r;

	h_sid(a, 21, 1);
	h_sid(b, 21, 2);
	assert_true(h_twilio_body(body, sizeof(body), a, "sent", NULL) > 0);
	assert_int_equal(h_post_twilio(d, H_STATUS_PATH, H_TOKEN2, body, NULL, &r), 200);
	assert_true(h_twilio_body(body, sizeof(body), b, "sent", NULL) > 0);
	assert_int_equal(h_post_twilio(d, H_STATUS_PATH, H_TOKEN1, body, NULL, &r), 200);
	assert_int_equal(h_count(d, "sms_messages"), 2);
	assert_int_equal(h_sql_int(d,
	                           "SELECT count(*) FROM sms_message_events WHERE"
	                           " provider_message_id IN (%Q, %Q)",
	                           a, b),
	                 2);
}

/* The signature computed here from Twilio's published algorithm, without
 * dlrd's code: base64(HMAC-SHA1(token, url + sorted name+value pairs)). */
static void test_independent_signature(void **state)
{
	struct dlrd *d = *state;
	static const char body[] = "To=%2B14155550123&MessageStatus=delivered"
	                           "&MessageSid=SM99990000111122223333444455556666"
	                           "&AccountSid=AC0123456789abcdef0123456789abcdef";
	static const char data[] =
	    H_PUBLIC_URL H_STATUS_PATH "?src=it"
	                               "AccountSidAC0123456789abcdef0123456789abcdef"
	                               "MessageSidSM99990000111122223333444455556666"
	                               "MessageStatusdelivered"
	                               "To+14155550123";
	unsigned char md[20];
	unsigned int mdlen = sizeof(md);
	char expect[64], ours[29], line[64], buf[64];
	struct h_resp r;

	HMAC(EVP_sha1(), H_TOKEN2, (int)strlen(H_TOKEN2), (const unsigned char *)data, strlen(data),
	     md, &mdlen);
	assert_int_equal(mdlen, 20);
	assert_int_equal(EVP_EncodeBlock((unsigned char *)expect, md, 20), 28);

	assert_int_equal(
	    h_twilio_sign(H_TOKEN2, H_PUBLIC_URL H_STATUS_PATH "?src=it", body, strlen(body), ours),
	    0);
	assert_string_equal(ours, expect);

	util_fmt(line, sizeof(line), "X-Twilio-Signature: %s", expect);
	assert_int_equal(post_sig(d, H_STATUS_PATH "?src=it", body, line, &r), 200);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT provider_message_id||'|'||current_status FROM"
	                              " sms_messages"),
	                    "SM99990000111122223333444455556666|delivered");
}

/* Twilio's validator also accepts the URL with the scheme's default port. */
static void test_default_port_variant(void **state)
{
	struct dlrd *d = *state;
	char sid[35], body[1024];
	struct h_resp r;

	h_sid(sid, 22, 1);
	assert_true(h_twilio_body(body, sizeof(body), sid, "sent", NULL) > 0);
	assert_int_equal(post_signed_for(d, H_STATUS_PATH, H_TOKEN1,
	                                 "https://sms.example.com:443" H_STATUS_PATH, body, &r),
	                 200);
	assert_int_equal(post_signed_for(d, H_STATUS_PATH, H_TOKEN1,
	                                 "https://sms.example.com:8443" H_STATUS_PATH, body, &r),
	                 401);
	assert_int_equal(h_count(d, "sms_callback_log"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_bad_signatures_write_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_token_rotation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_independent_signature, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_default_port_variant, setup, teardown),
	};
	return cmocka_run_group_tests_name("integration/auth", tests, NULL, NULL);
}
