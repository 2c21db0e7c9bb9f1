/* SPDX-License-Identifier: MIT */
/*
 * Integration: Plivo callbacks against the real daemon.  A V3-signed POST
 * status stores one exact event; the same callback again adds only a
 * retry-log row; an undelivered after delivered does not change the
 * summary's winner order; a GET callback is verified over its query and
 * kept as its query string; forged or unsigned requests answer 401 and
 * write nothing; an inbound message is answered with empty Plivo XML.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/hmac.h>

#include "crypto.h"
#include "harness.h"

#define TOKEN "plivo-token-0123456789"
#define NONCE "12345678901234567890"
#define UUID  "2f0b4c4e-1e3a-11ee-8a3b-0242ac110002"

static const char *const env[] = {"DLRD_PLIVO_AUTH_TOKENS=" TOKEN, NULL};

static int setup(void **state)
{
	return h_fixture_start(state, env);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

/* base64(HMAC-SHA256(TOKEN, s + "." + NONCE)) with OpenSSL directly. */
static void v3(const char *s, char out[64])
{
	char m[2048];
	unsigned char md[32];
	unsigned int len = sizeof(md);
	snprintf(m, sizeof(m), "%s.%s", s, NONCE);
	HMAC(EVP_sha256(), TOKEN, (int)strlen(TOKEN), (const unsigned char *)m, strlen(m), md,
	     &len);
	crypto_b64_encode(md, len, out);
}

/* POSTs a status body with the V3 signature of signed_str. */
static long post(const struct dlrd *d, const char *target, const char *body, const char *signed_str,
                 struct h_resp *r)
{
	char sig[64], h1[128];
	const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded", h1,
	                      "X-Plivo-Signature-V3-Nonce: " NONCE, NULL};
	v3(signed_str, sig);
	snprintf(h1, sizeof(h1), "X-Plivo-Signature-V3: %s", sig);
	assert_int_equal(h_request(d, "POST", target, hdrs, body, strlen(body), r), 0);
	return r->status;
}

#define STATUS_BODY(st, ec)                                                                        \
	"MessageUUID=" UUID "&To=14155550123&From=14155550199&Status=" st "&ErrorCode=" ec         \
	"&Sequence=3&Units=1&MCC=310&MNC=260"
#define STATUS_SIGNED(st, ec)                                                                      \
	H_PUBLIC_URL "/webhooks/plivo/status?ErrorCode" ec "From14155550199MCC310MNC260"           \
	             "MessageUUID" UUID "Sequence3Status" st "To14155550123Units1"

static void test_status_retry_order(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[512];

	assert_int_equal(post(d, "/webhooks/plivo/status", STATUS_BODY("delivered", ""),
	                      STATUS_SIGNED("delivered", ""), &r),
	                 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider||'|'||provider_message_id||'|'||"
	              "coalesce(provider_event_id,'-')||'|'||status||'|'||raw_status"
	              "||'|'||coalesce(error_code,'-')||'|'||"
	              "coalesce(provider_occurred_at,'-') FROM sms_message_events"),
	    "plivo|" UUID "|-|delivered|delivered|-|-");
	assert_string_equal(
	    h_payload_str(d, buf, sizeof(buf), "SELECT raw_payload FROM sms_message_events"),
	    STATUS_BODY("delivered", ""));
	assert_int_equal(post(d, "/webhooks/plivo/status", STATUS_BODY("delivered", ""),
	                      STATUS_SIGNED("delivered", ""), &r),
	                 200);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_int_equal(h_count(d, "sms_callback_log"), 2);
	/* a late, out-of-order "sent" */
	assert_int_equal(post(d, "/webhooks/plivo/status", STATUS_BODY("sent", ""),
	                      STATUS_SIGNED("sent", ""), &r),
	                 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT current_status||'|'||is_final||'|'||event_count||'|'||"
	              "coalesce(destination_country,'-') FROM sms_messages"),
	    "delivered|1|2|US");
}

static void test_get(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char sig[64], h1[128], buf[256];
	const char *q = "MessageUUID=" UUID "&Status=undelivered&ErrorCode=30&To=14155550123";
	const char *hdrs[] = {h1, "X-Plivo-Signature-V3-Nonce: " NONCE, NULL};
	char target[512];

	v3(H_PUBLIC_URL "/webhooks/plivo/status?ErrorCode=30&MessageUUID=" UUID
	                "&Status=undelivered&To=14155550123",
	   sig);
	snprintf(h1, sizeof(h1), "X-Plivo-Signature-V3: %s", sig);
	snprintf(target, sizeof(target), "/webhooks/plivo/status?%s", q);
	assert_int_equal(h_request(d, "GET", target, hdrs, NULL, 0, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT status||'|'||error_code||'|'||error_reason"
	                              " FROM sms_message_events"),
	                    "undelivered|30|spam_blocked");
	assert_string_equal(
	    h_payload_str(d, buf, sizeof(buf), "SELECT raw_payload FROM sms_message_events"),
	    "MessageUUID=" UUID "&Status=undelivered&ErrorCode=30&To=14155550123");
}

static void test_rejected(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	const char *plain[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
	assert_int_equal(post(d, "/webhooks/plivo/status", STATUS_BODY("delivered", "1"),
	                      STATUS_SIGNED("delivered", ""), &r),
	                 401);
	assert_int_equal(h_request(d, "POST", "/webhooks/plivo/status", plain,
	                           STATUS_BODY("delivered", ""),
	                           strlen(STATUS_BODY("delivered", "")), &r),
	                 0);
	assert_int_equal(r.status, 401);
	assert_int_equal(h_count_data(d), 0);
}

static void test_inbound(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[256];
	assert_int_equal(
	    post(d, "/webhooks/plivo/inbound",
	         "From=14155550123&To=14155550199&Type=sms&Text=hello&MessageUUID=" UUID,
	         H_PUBLIC_URL "/webhooks/plivo/inbound?From14155550123MessageUUID" UUID "Texthello"
	                      "To14155550199Typesms",
	         &r),
	    200);
	assert_string_equal(r.body, "<Response></Response>");
	assert_non_null(strstr(r.content_type, "application/xml"));
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider_message_id||'|'||to_identity||'|'||body||'|'||"
	              "keyword FROM sms_inbound_messages"),
	    UUID "|14155550199|hello|none");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_status_retry_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rejected, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
