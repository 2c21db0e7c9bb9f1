/* SPDX-License-Identifier: MIT */
/*
 * Integration: Vonage Messages API webhooks against the real daemon.  A
 * signed `rejected` status with error 1360 is stored as expired with exact
 * rows; the same status re-signed (a retry: new jti and iat) adds only a
 * retry-log row; a late `submitted` does not move the summary back and a
 * `read` sets the read flag; forged, unsigned, stale and body-tampered
 * requests answer 401 and write nothing; an inbound STOP (posted to the
 * status URL: routed by payload) stores an inbound row and an opt-out.
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

#define SECRET "vonage-messages-it-secret"
#define UUID   "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"

static const char *const env[] = {"DLRD_VONAGE_MESSAGES_SIGNATURE_SECRETS=" SECRET, NULL};

static int setup(void **state)
{
	return h_fixture_start(state, env);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

/* POSTs body with a token signed by secret, iat = now + skew, payload_hash
 * over hash_body (NULL: body).  Returns the status. */
static long post(struct dlrd *d, const char *path, const char *body, const char *secret, long skew,
                 const char *jti, const char *hash_body)
{
	unsigned char m[32];
	char hex[65], claims[512], tok[1024], auth[1100];
	const char *hb = hash_body ? hash_body : body;
	struct h_resp r;

	SHA256((const unsigned char *)hb, strlen(hb), m);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", m[i]);
	util_fmt(claims, sizeof(claims),
	         "{\"iat\":%lld,\"jti\":\"%s\",\"iss\":\"Vonage\",\"payload_hash\":\"%s\","
	         "\"api_key\":\"a1b2c3d\",\"application_id\":\"" UUID "\"}",
	         (long long)time(NULL) + skew, jti, hex);
	assert_true(jwt_sign(JWT_HS256, secret, claims, tok, sizeof(tok)) > 0);
	util_fmt(auth, sizeof(auth), "Authorization: Bearer %s", tok);
	const char *hdrs[] = {"Content-Type: application/json", auth, NULL};
	h_request(d, "POST", path, hdrs, body, strlen(body), &r);
	return r.status;
}

static void status(char *out, size_t cap, const char *st, const char *ts, const char *err)
{
	util_fmt(out, cap,
	         "{\"message_uuid\":\"" UUID "\",\"to\":\"447700900000\",\"from\":\"AcmeInc\","
	         "\"timestamp\":\"%s\",\"status\":\"%s\",\"channel\":\"sms\",\"client_ref\":\"abc\""
	         "%s%s,\"usage\":{\"currency\":\"EUR\",\"price\":\"0.0333\"}}",
	         ts, st, err ? "," : "", err ? err : "");
}

#define ERR_1360                                                                                   \
	"\"error\":{\"type\":\"https://developer.vonage.com/api-errors/messages#1360\","           \
	"\"title\":\"1360\",\"detail\":\"TTL was activated\",\"instance\":\"bf0c\"}"

static void test_status_retry_and_order(void **state)
{
	struct dlrd *d = *state;
	char body[2048], buf[512];

	status(body, sizeof(body), "rejected", "2023-05-01T14:00:00.000Z", ERR_1360);
	assert_int_equal(post(d, "/webhooks/vonage-messages/status", body, SECRET, 0, "j1", NULL),
	                 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider_message_id||'|'||current_status||'|'||"
	              "destination_country||'|'||sender_identity FROM sms_messages"),
	    UUID "|expired|GB|AcmeInc");
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT status||'|'||raw_status||'|'||error_code||'|'||"
	              "error_reason||'|'||provider_occurred_at FROM sms_message_events"),
	    "expired|rejected|1360|expired|2023-05-01T14:00:00.000Z");
	assert_string_equal(
	    h_payload_str(d, buf, sizeof(buf), "SELECT raw_payload FROM sms_message_events"), body);
	/* retry: re-signed with a new jti and iat, posted to the other path */
	assert_int_equal(
	    post(d, "/webhooks/vonage-messages/inbound", body, SECRET, -30, "j2", NULL), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_callback_log WHERE duplicate=1"),
	                 1);
	/* late submitted: stored, summary unchanged */
	status(body, sizeof(body), "submitted", "2023-05-01T13:59:00.000Z", NULL);
	assert_int_equal(post(d, "/webhooks/vonage-messages/status", body, SECRET, 0, "j3", NULL),
	                 200);
	assert_int_equal(h_count(d, "sms_message_events"), 2);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT current_status FROM sms_messages"), "expired");
	assert_int_equal(h_sql_int(d, "SELECT changed_summary FROM sms_message_events WHERE "
	                              "raw_status='submitted'"),
	                 0);
}

static void test_read_receipt(void **state)
{
	struct dlrd *d = *state;
	char body[2048], buf[128];

	status(body, sizeof(body), "delivered", "2023-05-01T14:00:00.000Z", NULL);
	assert_int_equal(post(d, "/webhooks/vonage-messages/status", body, SECRET, 0, "j1", NULL),
	                 200);
	status(body, sizeof(body), "read", "2023-05-01T14:05:00.000Z", NULL);
	assert_int_equal(post(d, "/webhooks/vonage-messages/status", body, SECRET, 0, "j2", NULL),
	                 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT current_status||'|'||read_receipt||'|'||final_conflict"
	              " FROM sms_messages"),
	    "delivered|1|0");
	assert_int_equal(h_count(d, "sms_message_events"), 2);
}

static void test_rejected_write_nothing(void **state)
{
	struct dlrd *d = *state;
	char body[2048], tampered[2048];
	struct h_resp r;
	const char *nohdr[] = {"Content-Type: application/json", NULL};

	status(body, sizeof(body), "delivered", "2023-05-01T14:00:00.000Z", NULL);
	status(tampered, sizeof(tampered), "rejected", "2023-05-01T14:00:00.000Z", NULL);
	/* another secret */
	assert_int_equal(
	    post(d, "/webhooks/vonage-messages/status", body, "wrong-secret", 0, "j", NULL), 401);
	/* unsigned */
	h_request(d, "POST", "/webhooks/vonage-messages/status", nohdr, body, strlen(body), &r);
	assert_int_equal(r.status, 401);
	/* stale and future iat */
	assert_int_equal(post(d, "/webhooks/vonage-messages/status", body, SECRET, -600, "j", NULL),
	                 401);
	assert_int_equal(post(d, "/webhooks/vonage-messages/status", body, SECRET, 600, "j", NULL),
	                 401);
	/* body changed after signing */
	assert_int_equal(
	    post(d, "/webhooks/vonage-messages/status", tampered, SECRET, 0, "j", body), 401);
	assert_int_equal(h_count_data(d), 0);
	assert_int_equal(h_count(d, "sms_inbound_messages"), 0);
}

static void test_inbound_stop(void **state)
{
	struct dlrd *d = *state;
	char buf[512];
	const char *body =
	    "{\"channel\":\"sms\",\"message_uuid\":\"" UUID "\",\"to\":\"447700900000\","
	    "\"from\":\"447700900123\",\"timestamp\":\"2020-01-01T14:00:00.000Z\","
	    "\"text\":\"STOP\",\"message_type\":\"text\","
	    "\"sms\":{\"num_messages\":\"1\",\"keyword\":\"STOP\"}}";

	assert_int_equal(post(d, "/webhooks/vonage-messages/status", body, SECRET, 0, "j", NULL),
	                 200);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT provider_message_id||'|'||body||'|'||keyword||'|'||"
	                              "to_identity||'|'||provider_occurred_at FROM "
	                              "sms_inbound_messages"),
	                    UUID "|STOP|opt_out|447700900000|2020-01-01T14:00:00.000Z");
	assert_int_equal(h_sql_int(d, "SELECT opted_out FROM sms_opt_outs"), 1);
	assert_int_equal(h_count(d, "sms_message_events"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_status_retry_and_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_receipt, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rejected_write_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound_stop, setup, teardown),
	};
	return cmocka_run_group_tests_name("integration/provider_vonage_messages", tests, NULL,
	                                   NULL);
}
