/* SPDX-License-Identifier: MIT */
/*
 * Integration: Telnyx webhooks against the real daemon.  A signed
 * message.finalized with two recipients stores exactly two events (one per
 * recipient) under one message; the same webhook again adds only retry-log
 * rows; a late message.sent does not move the summary back; forged, unsigned
 * and stale requests answer 401 and write nothing; message.received stores an
 * inbound row and a STOP opt-out; an unconfigured dlrd answers 404.
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

#include "crypto.h"
#include "harness.h"

/* RFC 8032 TEST 1 key pair */
static const uint8_t SEED[32] = {0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a,
                                 0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32,
                                 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60};
#define PUB    "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
#define MSG_ID "40385f64-5717-4562-b3fc-2c963f66afa6"

static const char *const env[] = {"DLRD_TELNYX_PUBLIC_KEYS=" PUB, NULL};

static int setup(void **state)
{
	return h_fixture_start(state, env);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

static void sign(const char *ts, const char *body, char out[128])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, SEED, 32);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	size_t tl = strlen(ts), bl = strlen(body), sl = 64;
	uint8_t *m = malloc(tl + 1 + bl), s[64];
	memcpy(m, ts, tl);
	m[tl] = '|';
	memcpy(m + tl + 1, body, bl);
	assert_int_equal(EVP_DigestSignInit(c, NULL, NULL, NULL, k), 1);
	assert_int_equal(EVP_DigestSign(c, s, &sl, m, tl + 1 + bl), 1);
	crypto_b64_encode(s, sl, out);
	free(m);
	EVP_MD_CTX_free(c);
	EVP_PKEY_free(k);
}

/* POSTs body signed at now + skew_s (no signature when sig_ok is false:
 * a signature of another body is sent instead). */
static long post(const struct dlrd *d, const char *path, const char *body, long skew_s, bool sig_ok,
                 struct h_resp *out)
{
	char ts[32], sig[128], h1[64], h2[200];
	const char *hdrs[] = {"Content-Type: application/json", h1, h2, NULL};
	snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL) + skew_s);
	sign(ts, sig_ok ? body : "{}", sig);
	snprintf(h1, sizeof(h1), "telnyx-timestamp: %s", ts);
	snprintf(h2, sizeof(h2), "telnyx-signature-ed25519: %s", sig);
	assert_int_equal(h_request(d, "POST", path, hdrs, body, strlen(body), out), 0);
	return out->status;
}

static const char *finalized(char *b, size_t cap, const char *event_id, const char *type,
                             const char *st1, const char *st2)
{
	snprintf(b, cap,
	         "{\"data\":{\"event_type\":\"%s\",\"id\":\"%s\","
	         "\"occurred_at\":\"2019-12-09T21:32:14.148+00:00\",\"record_type\":\"event\","
	         "\"payload\":{\"id\":\"" MSG_ID "\",\"direction\":\"outbound\",\"type\":\"SMS\","
	         "\"from\":{\"phone_number\":\"+18445550001\"},"
	         "\"to\":[{\"phone_number\":\"+14155550123\",\"status\":\"%s\"},"
	         "{\"phone_number\":\"+14155550124\",\"status\":\"%s\"}],"
	         "\"errors\":[{\"code\":\"40008\",\"title\":\"Undeliverable\"}]}},"
	         "\"meta\":{\"attempt\":1}}",
	         type, event_id, st1, st2);
	return b;
}

static void test_two_recipients_retry_and_order(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char b[2048], buf[512];

	finalized(b, sizeof(b), "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be", "message.finalized",
	          "delivered", "delivery_failed");
	assert_int_equal(post(d, "/webhooks/telnyx/status", b, 0, true, &r), 200);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_message_events"), 2);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT group_concat(provider_event_id||'|'||status||'|'||raw_status||'|'||"
	              "coalesce(error_code,'-')||'|'||provider_occurred_at, ';') FROM "
	              "(SELECT * FROM sms_message_events ORDER BY id) AS s"),
	    /* data.id and the recipient tag under H_HASH_KEY (computed with
	     * Python's hmac), never the number */
	    "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be:rcpt-b8c0605256bdb4cd|delivered|delivered|-|"
	    "2019-12-09T21:32:14.148Z;"
	    "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be:rcpt-34b470d7fea3a92d|undelivered|"
	    "delivery_failed|40008|2019-12-09T21:32:14.148Z");
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider||'|'||current_status||'|'||event_count||'|'||"
	              "callback_count FROM sms_messages WHERE provider_message_id=%Q",
	              MSG_ID),
	    "telnyx|delivered|2|2");
	/* the same webhook again (a retry: new timestamp, same data.id) */
	assert_int_equal(post(d, "/webhooks/telnyx/inbound", b, 5, true, &r), 200);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_message_events"), 2);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_callback_log"), 4);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_callback_log WHERE duplicate=1"),
	                 2);
	/* a late message.sent: stored, but the summary stays delivered */
	finalized(b, sizeof(b), "11111111-4995-4309-a3c6-38e3db9ea4be", "message.sent", "sent",
	          "sent");
	assert_int_equal(post(d, "/webhooks/telnyx/status", b, 0, true, &r), 200);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_message_events"), 4);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_message_events WHERE "
	                              "status='sent' AND changed_summary=0"),
	                 2);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT current_status FROM sms_messages WHERE "
	                              "provider_message_id=%Q",
	                              MSG_ID),
	                    "delivered");
}

/* A retry counts its attempt in the body (meta.attempt), so its bytes are
 * not the first delivery's: when all its recipients' events were stored
 * already, it keeps no copy of its own (nothing would name it), and every
 * event still reads the first delivery's payload. */
static void test_retry_keeps_no_payload_copy(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char b[2048], b2[2048], got[2048];

	finalized(b, sizeof(b), "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be", "message.finalized",
	          "delivered", "delivery_failed");
	assert_int_equal(post(d, "/webhooks/telnyx/status", b, 0, true, &r), 200);
	assert_int_equal(h_count(d, "sms_payloads"), 1);
	snprintf(b2, sizeof(b2), "%s", b);
	char *at = strstr(b2, "\"attempt\":1");
	assert_non_null(at);
	at[sizeof("\"attempt\":") - 1] = '2';
	assert_int_equal(post(d, "/webhooks/telnyx/status", b2, 5, true, &r), 200);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_callback_log WHERE duplicate=1"),
	                 2);
	assert_int_equal(h_count(d, "sms_payloads"), 1);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_message_events WHERE payload_id ="
	                              " (SELECT id FROM sms_payloads)"),
	                 2);
	assert_string_equal(
	    h_payload_str(d, got, sizeof(got), "SELECT raw_payload FROM sms_payloads"), b);
	/* a new event in the retry's bytes keeps them, once */
	finalized(b, sizeof(b), "11111111-4995-4309-a3c6-38e3db9ea4be", "message.sent", "sent",
	          "sent");
	assert_int_equal(post(d, "/webhooks/telnyx/status", b, 0, true, &r), 200);
	assert_int_equal(h_count(d, "sms_payloads"), 2);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_message_events e JOIN sms_payloads"
	                              " p ON p.id = e.payload_id"),
	                 4);
}

static void test_rejected_write_nothing(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char b[2048];
	const char *nosig[] = {"Content-Type: application/json", NULL};

	finalized(b, sizeof(b), "22222222-4995-4309-a3c6-38e3db9ea4be", "message.finalized",
	          "delivered", "delivered");
	assert_int_equal(post(d, "/webhooks/telnyx/status", b, 0, false, &r), 401);
	/* past the 300 s tolerance either way, with room for the second that
	 * time() drops and the request's own latency */
	assert_int_equal(post(d, "/webhooks/telnyx/status", b, -330, true, &r), 401);
	assert_int_equal(post(d, "/webhooks/telnyx/status", b, 330, true, &r), 401);
	assert_int_equal(h_request(d, "POST", "/webhooks/telnyx/status", nosig, b, strlen(b), &r),
	                 0);
	assert_int_equal(r.status, 401);
	assert_int_equal(h_count_data(d), 0);
	assert_int_equal(h_count(d, "sms_inbound_messages"), 0);
}

static void test_inbound_stop(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[512];
	const char *b =
	    "{\"data\":{\"event_type\":\"message.received\","
	    "\"id\":\"b301ed3f-1490-491f-995f-6e64e69674d4\","
	    "\"occurred_at\":\"2024-02-14T15:37:10.500+00:00\",\"payload\":{"
	    "\"id\":\"84cca175-9755-4859-b67f-4730d7f58aa3\",\"direction\":\"inbound\","
	    "\"from\":{\"phone_number\":\"+14155550123\"},"
	    "\"to\":[{\"phone_number\":\"+18445550001\",\"status\":\"webhook_delivered\"}],"
	    "\"text\":\"STOP\"}}}";
	/* inbound posted to the status path is routed by payload */
	assert_int_equal(post(d, "/webhooks/telnyx/status", b, 0, true, &r), 200);
	assert_int_equal(post(d, "/webhooks/telnyx/inbound", b, 1, true, &r), 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider_message_id||'|'||to_identity||'|'||body||'|'||"
	              "keyword||'|'||provider_occurred_at||'|'||retry_count FROM "
	              "sms_inbound_messages"),
	    "84cca175-9755-4859-b67f-4730d7f58aa3|+18445550001|STOP|opt_out|"
	    "2024-02-14T15:37:10.500Z|1");
	/* the state is kept under the sender's canonical key */
	assert_int_equal(h_sql_int(d, "SELECT opted_out FROM sms_opt_outs WHERE "
	                              "sender_identity='18445550001'"),
	                 1);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_message_events"), 0);
}

static void test_unconfigured_404(void **state)
{
	struct dlrd d;
	struct h_resp r;
	(void)state;
	assert_int_equal(h_setup(&d, NULL), 0);
	assert_int_equal(h_start(&d), 0);
	assert_int_equal(h_request(&d, "POST", "/webhooks/telnyx/status", NULL, "{}", 2, &r), 0);
	assert_int_equal(r.status, 404);
	h_teardown(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_two_recipients_retry_and_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retry_keeps_no_payload_copy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rejected_write_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound_stop, setup, teardown),
	    cmocka_unit_test(test_unconfigured_404),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
