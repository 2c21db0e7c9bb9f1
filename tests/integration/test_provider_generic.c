/* SPDX-License-Identifier: MIT */
/*
 * Integration: dlrd's own JSON events (provider "generic", Standard Webhooks
 * signatures) against the real daemon.  A signed status stores exactly one
 * event row with its webhook-id, time and error code; the same webhook
 * again (a retry) adds only a retry-log row; a late "sent" after
 * "delivered" does not move the summary; forged, unsigned and stale
 * requests answer 401 and write nothing; an invalid body is a 400 naming
 * the field; an unknown status goes to review; an inbound STOP is stored
 * and opts the user out.
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
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "api_helpers.h"
#include "crypto.h"

/* whsec_ + base64 of 32 bytes 0x01..0x20 */
#define SECRET "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
#define PATH   "/webhooks/generic/status"

static int setup(void **state)
{
	const char *env[] = {"DLRD_GENERIC_SECRETS=" SECRET, api_tokens_env(), NULL};
	return h_fixture_start(state, env);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

/* POSTs body as webhook id, signed at now + skew_s with SECRET (with
 * another secret when good is false). */
static long post(const struct dlrd *d, const char *path, const char *id, const char *body,
                 long skew_s, bool good, struct h_resp *out)
{
	char ts[32], h1[300], h2[64], h3[128], msg[8192], b64[64];
	const char *hdrs[] = {"Content-Type: application/json", h1, h2, h3, NULL};
	uint8_t key[64], mac[32];
	size_t kl = 0;
	unsigned ml = 0;
	int n;

	snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL) + skew_s);
	n = snprintf(msg, sizeof(msg), "%s.%s.%s", id, ts, body);
	assert_int_equal(crypto_b64_decode(SECRET + 6, strlen(SECRET) - 6, key, &kl), 0);
	if (!good)
		key[0] ^= 1;
	assert_non_null(HMAC(EVP_sha256(), key, (int)kl, (uint8_t *)msg, (size_t)n, mac, &ml));
	crypto_b64_encode(mac, ml, b64);
	snprintf(h1, sizeof(h1), "webhook-id: %s", id);
	snprintf(h2, sizeof(h2), "webhook-timestamp: %s", ts);
	snprintf(h3, sizeof(h3), "webhook-signature: v1,%s", b64);
	assert_int_equal(h_request(d, "POST", path, hdrs, body, strlen(body), out), 0);
	return out->status;
}

static const char *status_body(char *b, size_t cap, const char *status, const char *extra)
{
	snprintf(b, cap,
	         "{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:01Z\","
	         "\"data\":{\"message_id\":\"gw-42\",\"status\":\"%s\",\"to\":\"+447700900123\","
	         "\"from\":\"ACME\"%s}}",
	         status, extra);
	return b;
}

static void expect_nothing_written(struct dlrd *d)
{
	assert_int_equal(h_count_data(d), 0);
	assert_int_equal(h_count(d, "sms_inbound_messages"), 0);
}

static void test_status_retry_and_order(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char b[1024], buf[1024];

	status_body(b, sizeof(b), "delivered",
	            ",\"raw_status\":\"DELIVRD\",\"error_code\":\"000\","
	            "\"occurred_at\":\"2026-11-27T16:10:00.250+01:00\"");
	assert_int_equal(post(d, PATH, "evt_1", b, 0, true, &r), 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider||'|'||provider_message_id||'|'||provider_event_id||'|'||"
	              "status||'|'||raw_status||'|'||error_code||'|'||provider_occurred_at||'|'||"
	              "is_final||'|'||changed_summary FROM sms_message_events"),
	    "generic|gw-42|evt_1|delivered|DELIVRD|000|2026-11-27T15:10:00.250Z|1|1");
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_string_equal(
	    h_payload_str(d, buf, sizeof(buf), "SELECT raw_payload FROM sms_message_events"), b);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT current_status||'|'||destination_country||'|'||"
	                              "sender_identity||'|'||length(recipient_hash)||'|'||"
	                              "event_count||'|'||callback_count FROM sms_messages"),
	                    "delivered|GB|ACME|64|1|1");
	/* the producer retries: same webhook-id, new timestamp */
	assert_int_equal(post(d, PATH, "evt_1", b, 3, true, &r), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_int_equal(h_count(d, "sms_callback_log"), 2);
	assert_int_equal(h_sql_int(d, "SELECT sum(duplicate) FROM sms_callback_log"), 1);
	/* a late "sent" (its own event) does not move the summary back */
	status_body(b, sizeof(b), "sent", ",\"occurred_at\":\"2026-11-27T15:09:00Z\"");
	assert_int_equal(post(d, "/webhooks/generic/inbound", "evt_0", b, 0, true, &r), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 2);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT current_status||'|'||event_count FROM sms_messages"),
	                    "delivered|2");
	assert_int_equal(h_sql_int(d, "SELECT changed_summary FROM sms_message_events "
	                              "WHERE provider_event_id = 'evt_0'"),
	                 0);
}

static void test_rejections_write_nothing(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char b[1024];
	const char *nosig[] = {"Content-Type: application/json", "webhook-id: evt_x",
	                       "webhook-timestamp: 1700000000", NULL};

	status_body(b, sizeof(b), "delivered", "");
	/* another secret */
	assert_int_equal(post(d, PATH, "evt_1", b, 0, false, &r), 401);
	assert_string_equal(r.body, "unauthorized\n");
	/* stale and future beyond 300 s */
	assert_int_equal(post(d, PATH, "evt_1", b, -400, true, &r), 401);
	assert_int_equal(post(d, PATH, "evt_1", b, 400, true, &r), 401);
	/* no signature header */
	h_request(d, "POST", PATH, nosig, b, strlen(b), &r);
	assert_int_equal(r.status, 401);
	/* wrong media type, wrong method */
	{
		const char *hdrs[] = {"Content-Type: text/plain", NULL};
		h_request(d, "POST", PATH, hdrs, b, strlen(b), &r);
		assert_int_equal(r.status, 415);
		assert_int_equal(h_get(d, PATH, &r), 405);
	}
	expect_nothing_written(d);
	/* authentic but invalid: 400 naming the field, nothing written */
	assert_int_equal(post(d, PATH, "evt_2",
	                      "{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:01Z\","
	                      "\"data\":{\"message_id\":\"gw-42\"}}",
	                      0, true, &r),
	                 400);
	assert_string_equal(r.body, "data.status: required\n");
	expect_nothing_written(d);
}

static void test_unknown_status_reviewed(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char b[1024], buf[256];

	status_body(b, sizeof(b), "queued_at_smsc", "");
	assert_int_equal(post(d, PATH, "evt_u", b, 0, true, &r), 200);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT status||'|'||raw_status FROM sms_message_events"),
	                    "unknown|queued_at_smsc");
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT reason||'|'||detail FROM review_queue"),
	    "unknown_status|data.status is not one of dlrd's statuses");
}

static void test_inbound_stop(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[512];
	const char *b = "{\"type\":\"message.inbound\",\"timestamp\":\"2026-11-27T15:10:01Z\","
	                "\"data\":{\"message_id\":\"mo-7\",\"from\":\"+14155550123\","
	                "\"to\":\"+15005550006\",\"body\":\" stop\\n\","
	                "\"occurred_at\":\"2026-11-27T15:10:00Z\"}}";

	assert_int_equal(post(d, "/webhooks/generic/inbound", "evt_mo7", b, 0, true, &r), 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider||'|'||provider_message_id||'|'||"
	              "sender_country||'|'||to_identity||'|'||body||'|'||keyword||'|'||"
	              "provider_occurred_at||'|'||length(sender_hash) "
	              "FROM sms_inbound_messages"),
	    "generic|mo-7|US|+15005550006| stop\n|opt_out|2026-11-27T15:10:00.000Z|64");
	/* the state is kept under the sender's canonical key */
	assert_int_equal(h_sql_int(d, "SELECT opted_out FROM sms_opt_outs "
	                              "WHERE sender_identity = '15005550006'"),
	                 1);
	/* the same webhook again: still one message, one retry counted */
	assert_int_equal(post(d, "/webhooks/generic/status", "evt_mo7", b, 1, true, &r), 200);
	assert_int_equal(h_count(d, "sms_inbound_messages"), 1);
	assert_int_equal(h_sql_int(d, "SELECT retry_count FROM sms_inbound_messages"), 1);
	assert_int_equal(h_count(d, "sms_messages"), 0);
}

/* An inbound message from +14155550123 at time at, to our number `to` (NULL:
 * the gateway did not say which of our numbers it reached). */
static void inbound(struct dlrd *d, const char *id, const char *to, const char *text,
                    const char *at)
{
	struct h_resp r;
	char b[512], to_member[64] = "";

	if (to)
		snprintf(to_member, sizeof(to_member), "\"to\":\"%s\",", to);
	snprintf(b, sizeof(b),
	         "{\"type\":\"message.inbound\",\"timestamp\":\"2026-11-27T15:10:01Z\","
	         "\"data\":{\"message_id\":\"%s\",\"from\":\"+14155550123\",%s"
	         "\"body\":\"%s\",\"occurred_at\":\"%s\"}}",
	         id, to_member, text, at);
	assert_int_equal(post(d, "/webhooks/generic/inbound", id, b, 0, true, &r), 200);
}

static long send_from(struct dlrd *d, const char *key, struct h_resp *r)
{
	return api_send(d, T_APP, key,
	                "{\"to\":\"+14155550123\",\"provider\":\"generic\",\"use_case\":\"otp\","
	                "\"template_key\":\"login_code\",\"sender_identity\":\"+15005550006\","
	                "\"action\":{\"type\":\"login\",\"id\":\"u-1\"}}",
	                r);
}

/* A STOP whose gateway did not say which of our numbers it reached is kept
 * under the sender '' and, as the README says, a send from any sender
 * honours it.  Its being the user's latest word must win over an older
 * START the user sent to that very sender; before, the sender's own row
 * hid it (it was read only when the sender had no row at all), and the app
 * texted a user whose last message was STOP.  The reverse order keeps the
 * START: the latest action wins either way. */
static void test_stop_without_sender_after_start(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;

	inbound(d, "mo-1", "+15005550006", "STOP", "2026-11-27T15:00:00Z");
	inbound(d, "mo-2", "+15005550006", "START", "2026-11-27T15:01:00Z");
	assert_int_equal(send_from(d, "k-1", &r), 201);
	/* the user's latest message: STOP, to a number the gateway did not name */
	inbound(d, "mo-3", NULL, "STOP", "2026-11-27T15:02:00Z");
	assert_int_equal(h_sql_int(d, "SELECT opted_out FROM sms_opt_outs WHERE"
	                              " sender_identity = ''"),
	                 1);
	assert_int_equal(send_from(d, "k-2", &r), 409);
	/* then START to our number again: that one is the latest now */
	inbound(d, "mo-4", "+15005550006", "START", "2026-11-27T15:03:00Z");
	assert_int_equal(send_from(d, "k-3", &r), 201);
	assert_int_equal(h_count(d, "sms_messages"), 2);
}

static void test_not_configured(void **state)
{
	struct dlrd d;
	struct h_resp r;

	(void)state;
	assert_int_equal(h_setup(&d, NULL), 0);
	assert_int_equal(h_start(&d), 0);
	h_request(&d, "POST", PATH, NULL, "{}", 2, &r);
	assert_int_equal(r.status, 404);
	h_teardown(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_status_retry_and_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rejections_write_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_status_reviewed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound_stop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_without_sender_after_start, setup, teardown),
	    cmocka_unit_test(test_not_configured),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
