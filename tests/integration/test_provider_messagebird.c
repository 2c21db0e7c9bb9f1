/* SPDX-License-Identifier: MIT */
/*
 * Integration: MessageBird status reports against the real daemon.  A GET
 * report signed with MessageBird-Signature-JWT (url_hash over dlrd's public
 * URL) stores exact rows; the same report with a new token (a retry) adds
 * only a retry-log row; reports arriving out of order keep the final
 * status; forged, unsigned, expired and URL-tampered requests, and a token
 * made for the Host dlrd saw instead of its public URL, answer 401 and
 * write nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "harness.h"
#include "jwt.h"
#include "util.h"

#define KEY  "messagebird-it-signing-key"
#define ID   "e8077d803532c0b5937c639b60216938"
#define PATH "/webhooks/messagebird/status"

static const char *const env[] = {"DLRD_MESSAGEBIRD_SIGNING_KEYS=" KEY, NULL};

static int setup(void **state)
{
	return h_fixture_start(state, env);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

static void sha256_hex(const char *s, char out[65])
{
	unsigned char m[32];
	SHA256((const unsigned char *)s, strlen(s), m);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", m[i]);
}

/* GETs target with a token signed by key for base+signed_target, nbf = now
 * + skew.  Returns the status. */
static long get_signed(struct dlrd *d, const char *target, const char *key, const char *base,
                       const char *signed_target, long skew, int jti)
{
	char url[4096], uh[65], claims[512], tok[1024], hdr[1100];
	long long nbf = (long long)time(NULL) + skew;
	struct h_resp r;

	util_fmt(url, sizeof(url), "%s%s", base, signed_target);
	sha256_hex(url, uh);
	util_fmt(claims, sizeof(claims),
	         "{\"iss\":\"MessageBird\",\"nbf\":%lld,\"exp\":%lld,\"jti\":\"jti-%d\","
	         "\"url_hash\":\"%s\"}",
	         nbf, nbf + 60, jti, uh);
	assert_true(jwt_sign(JWT_HS256, key, claims, tok, sizeof(tok)) > 0);
	util_fmt(hdr, sizeof(hdr), "MessageBird-Signature-JWT: %s", tok);
	const char *hdrs[] = {hdr, NULL};
	h_request(d, "GET", target, hdrs, NULL, 0, &r);
	return r.status;
}

static void report(char *out, size_t cap, const char *status, const char *extra, const char *dt)
{
	util_fmt(out, cap,
	         PATH "?id=" ID "&reference=order-42&recipient=31612345678&status=%s"
	              "&statusDatetime=%s%s&mccmnc=20408&ported=0",
	         status, dt, extra);
}

static void test_report_retry_and_order(void **state)
{
	struct dlrd *d = *state;
	char t[1024], buf[512];

	report(t, sizeof(t), "delivery_failed",
	       "&statusReason=unknown+subscriber&statusErrorCode=1",
	       "2016-05-03T08%3A58%3A10%2B00%3A00");
	assert_int_equal(get_signed(d, t, KEY, H_PUBLIC_URL, t, 0, 1), 200);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT provider_message_id||'|'||current_status||'|'||"
	                              "destination_country FROM sms_messages"),
	                    ID "|undelivered|NL");
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT status||'|'||raw_status||'|'||error_code||'|'||"
	              "error_reason||'|'||provider_occurred_at FROM sms_message_events"),
	    "undelivered|delivery_failed|1|invalid_number|2016-05-03T08:58:10.000Z");
	assert_string_equal(
	    h_payload_str(d, buf, sizeof(buf), "SELECT raw_payload FROM sms_message_events"),
	    strchr(t, '?') + 1);
	/* retry with a new token */
	assert_int_equal(get_signed(d, t, KEY, H_PUBLIC_URL, t, -10, 2), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_callback_log WHERE duplicate=1"),
	                 1);
	/* an earlier `sent` arriving late */
	report(t, sizeof(t), "sent", "", "2016-05-03T08%3A58%3A00%2B00%3A00");
	assert_int_equal(get_signed(d, t, KEY, H_PUBLIC_URL, t, 0, 3), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 2);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT current_status FROM sms_messages"),
	    "undelivered");
}

static void test_rejected_write_nothing(void **state)
{
	struct dlrd *d = *state;
	char t[1024], other[1024], host_url[128];
	struct h_resp r;

	report(t, sizeof(t), "delivered", "", "2016-05-03T08%3A58%3A10%2B00%3A00");
	report(other, sizeof(other), "expired", "", "2016-05-03T08%3A58%3A10%2B00%3A00");
	/* unknown key */
	assert_int_equal(get_signed(d, t, "another-key", H_PUBLIC_URL, t, 0, 1), 401);
	/* unsigned */
	h_request(d, "GET", t, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 401);
	/* expired long ago; not valid for an hour yet */
	assert_int_equal(get_signed(d, t, KEY, H_PUBLIC_URL, t, -3600, 1), 401);
	assert_int_equal(get_signed(d, t, KEY, H_PUBLIC_URL, t, 3600, 1), 401);
	/* the query changed after signing */
	assert_int_equal(get_signed(d, other, KEY, H_PUBLIC_URL, t, 0, 1), 401);
	/* signed for the address dlrd listens on, not its public URL */
	util_fmt(host_url, sizeof(host_url), "%s", d->base_url);
	assert_int_equal(get_signed(d, t, KEY, host_url, t, 0, 1), 401);
	assert_int_equal(h_count_data(d), 0);
}

static void test_unconfigured_404(void **state)
{
	struct dlrd d;
	struct h_resp r;

	(void)state;
	assert_int_equal(h_setup(&d, NULL), 0);
	assert_int_equal(h_start(&d), 0);
	assert_int_equal(h_get(&d, PATH "?id=1&status=sent", &r), 404);
	h_teardown(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_report_retry_and_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rejected_write_nothing, setup, teardown),
	    cmocka_unit_test(test_unconfigured_404),
	};
	return cmocka_run_group_tests_name("integration/provider_messagebird", tests, NULL, NULL);
}
