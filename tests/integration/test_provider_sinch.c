/* SPDX-License-Identifier: MIT */
/*
 * Integration: Sinch callbacks against the real daemon.  A signed batch
 * report with two recipients stores two events under the batch; the
 * recipient report of the same state later is a duplicate (same synthetic
 * event id); forged, unsigned and stale requests answer 401 and write
 * nothing; an MO message stores an inbound row.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/hmac.h>

#include "crypto.h"
#include "harness.h"

#define SECRET "sinch-integration-secret"
#define BATCH  "01FC66621XXXXX119Z8PMV1QPQ"

static const char *const env[] = {"DLRD_SINCH_SECRETS=" SECRET, NULL};

static int setup(void **state)
{
	return h_fixture_start(state, env);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

/* POSTs body signed (with OpenSSL directly) at now + skew_s; with a wrong
 * secret when forged. */
static long post(const struct dlrd *d, const char *path, const char *body, long skew_s, bool forged,
                 struct h_resp *r)
{
	char ts[32], m[4096], h1[128], h2[96];
	unsigned char md[32];
	unsigned int len = sizeof(md);
	char sig[64];
	const char *key = forged ? "wrong-secret" : SECRET;
	const char *hdrs[] = {"Content-Type: application/json",
	                      h1,
	                      "x-sinch-webhook-signature-nonce: 01FJA8B4A7BM43YGWSG9GBV067",
	                      h2,
	                      "x-sinch-webhook-signature-algorithm: HmacSHA256",
	                      NULL};
	snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL) + skew_s);
	snprintf(m, sizeof(m), "%s.01FJA8B4A7BM43YGWSG9GBV067.%s", body, ts);
	HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)m, strlen(m), md, &len);
	crypto_b64_encode(md, len, sig);
	snprintf(h1, sizeof(h1), "x-sinch-webhook-signature: %s", sig);
	snprintf(h2, sizeof(h2), "x-sinch-webhook-signature-timestamp: %s", ts);
	assert_int_equal(h_request(d, "POST", path, hdrs, body, strlen(body), r), 0);
	return r->status;
}

#define BATCH_BODY                                                                                 \
	"{\"type\":\"delivery_report_sms\",\"batch_id\":\"" BATCH "\",\"total_message_count\":2,"  \
	"\"statuses\":[{\"code\":0,\"status\":\"Delivered\",\"count\":1,"                          \
	"\"recipients\":[\"14155550123\"]},{\"code\":402,\"status\":\"Aborted\",\"count\":1,"      \
	"\"recipients\":[\"14155550124\"]}]}"
#define RCPT_BODY                                                                                  \
	"{\"type\":\"recipient_delivery_report_sms\",\"batch_id\":\"" BATCH "\","                  \
	"\"recipient\":\"14155550123\",\"code\":0,\"status\":\"Delivered\","                       \
	"\"at\":\"2022-08-30T08:16:08.930Z\",\"operator_status_at\":\"2022-08-30T08:16:00Z\"}"

static void test_batch_then_recipient(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[512];

	assert_int_equal(post(d, "/webhooks/sinch/status", BATCH_BODY, 0, false, &r), 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT group_concat(provider_event_id||'|'||status||'|'||error_code||'|'||"
	              "coalesce(error_reason,'-'), ';') FROM "
	              "(SELECT * FROM sms_message_events ORDER BY id) AS s"),
	    /* the recipient tags under H_HASH_KEY (computed with Python's hmac),
	     * never the number */
	    BATCH "/rcpt-4f112cd1615eaa1a/Delivered/0|delivered|0|none;" BATCH
	          "/rcpt-55414fc5aab64f5d/Aborted/402|failed|402|provider_error");
	assert_int_equal(post(d, "/webhooks/sinch/inbound", RCPT_BODY, 0, false, &r), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 2);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_callback_log WHERE duplicate=1"),
	                 1);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider||'|'||provider_message_id||'|'||current_status"
	              " FROM sms_messages"),
	    "sinch|" BATCH "|delivered");
}

static void test_rejected(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	const char *plain[] = {"Content-Type: application/json", NULL};
	assert_int_equal(post(d, "/webhooks/sinch/status", RCPT_BODY, 0, true, &r), 401);
	assert_int_equal(post(d, "/webhooks/sinch/status", RCPT_BODY, -400, false, &r), 401);
	assert_int_equal(post(d, "/webhooks/sinch/status", RCPT_BODY, 400, false, &r), 401);
	assert_int_equal(
	    h_request(d, "POST", "/webhooks/sinch/status", plain, RCPT_BODY, strlen(RCPT_BODY), &r),
	    0);
	assert_int_equal(r.status, 401);
	assert_int_equal(h_count_data(d), 0);
}

static void test_mo(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[256];
	assert_int_equal(post(d, "/webhooks/sinch/inbound",
	                      "{\"type\":\"mo_text\",\"id\":\"01FJA8B4A7BM43YGWSG9GBV099\","
	                      "\"from\":\"14155550123\",\"to\":\"12345\",\"body\":\"HELP\","
	                      "\"received_at\":\"2016-10-02T09:34:28.542Z\"}",
	                      0, false, &r),
	                 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider_message_id||'|'||to_identity||'|'||body||'|'||"
	              "keyword||'|'||provider_occurred_at FROM sms_inbound_messages"),
	    "01FJA8B4A7BM43YGWSG9GBV099|12345|HELP|help|2016-10-02T09:34:28.542Z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_batch_then_recipient, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rejected, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mo, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
