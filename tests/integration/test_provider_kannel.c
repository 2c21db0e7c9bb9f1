/* SPDX-License-Identifier: MIT */
/*
 * Integration: Kannel dlr-url callbacks (provider "kannel") against the real
 * daemon.  A GET with the right token stores exactly one event with the
 * DLR type, the SMSC's err: code and Kannel's timestamp, and the stored raw
 * payload is the query string with the token's value redacted; the same
 * callback again (Kannel retrying the dlr-url) adds only a retry-log row; a
 * late buffered DLR does not move a delivered summary back; a wrong or
 * missing token is 401 and writes nothing; the token never reaches the log;
 * POST is 405; an unusable callback goes to review.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define TOKEN "kannel-it-token-5f1d2c3b4a"
#define PATH  "/webhooks/kannel/status"

static const char *const env[] = {"DLRD_KANNEL_TOKENS=other-token-000000000," TOKEN, NULL};

static int setup(void **state)
{
	return h_fixture_start(state, env);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

/* GETs PATH?token=<token>&<rest> (no token when token is NULL). */
static long dlr(const struct dlrd *d, const char *token, const char *rest, struct h_resp *r)
{
	char target[2048];

	if (token)
		snprintf(target, sizeof(target), PATH "?token=%s&%s", token, rest);
	else
		snprintf(target, sizeof(target), PATH "?%s", rest);
	return h_get(d, target, r);
}

#define DELIVERED                                                                                  \
	"type=1&smsc=smpp-a&id=0A1B2C3D&to=00447700900123&from=ACME&ts=1795792200&answer=id%"      \
	"3A0A1B2C3D"                                                                               \
	"+sub%3A001+dlvrd%3A001+submit+date%3A2611271509+done+date%3A2611271510+stat%3ADELIVRD"    \
	"+err%3A000+text%3AHi"

static void test_delivered_retry_and_order(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[1024];

	assert_int_equal(dlr(d, TOKEN, DELIVERED, &r), 200);
	assert_string_equal(
	    h_sql_str(
	        d, buf, sizeof(buf),
	        "SELECT provider||'|'||provider_message_id||'|'||status||'|'||raw_status||'|'||"
	        "coalesce(error_code,'-')||'|'||provider_occurred_at||'|'||"
	        "coalesce(provider_event_id,'-') FROM sms_message_events"),
	    "kannel|0a1b2c3d|delivered|1|-|2026-11-27T15:10:00.000Z|-");
	/* the raw payload: the query string, the token's value redacted */
	assert_string_equal(
	    h_payload_str(d, buf, sizeof(buf), "SELECT raw_payload FROM sms_message_events"),
	    "token=REDACTED&" DELIVERED);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT current_status||'|'||destination_country||'|'||"
	              "sender_identity||'|'||length(recipient_hash) FROM sms_messages"),
	    "delivered|GB|ACME|64");
	/* Kannel retries the same dlr-url: a duplicate */
	assert_int_equal(dlr(d, TOKEN, DELIVERED, &r), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_int_equal(h_count(d, "sms_callback_log"), 2);
	/* a late "buffered" (type 4) stays in the timeline, not the summary */
	assert_int_equal(dlr(d, TOKEN, "type=4&id=0a1b2c3d&ts=1795792100", &r), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 2);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT current_status||'|'||event_count FROM sms_messages"),
	                    "delivered|2");
	/* the token never reaches the log */
	assert_false(h_log_contains(d, TOKEN));
}

static void test_failure_with_code(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[512];

	assert_int_equal(dlr(d, TOKEN,
	                     "type=2&id=msg-9&to=%2B14155550123&ts=1795792200"
	                     "&answer=id%3A9+stat%3AEXPIRED+err%3A027",
	                     &r),
	                 200);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT status||'|'||error_code||'|'||error_reason "
	                              "FROM sms_message_events"),
	                    "expired|027|expired");
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT current_status||'|'||is_final||'|'||destination_country "
	              "FROM sms_messages"),
	    "expired|1|US");
}

/* Kannel 1.5 reports an SMPP EXPIRED receipt as DLR_EXPIRED (34 = 0x20|2)
 * and DLR_UNKNOWN as 66: an expiry and an inconclusive final, never a
 * status dlrd cannot map (review queue). */
static void test_kannel15_expired_and_unknown(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[512];

	assert_int_equal(dlr(d, TOKEN,
	                     "type=34&id=msg-34&ts=1795792300"
	                     "&answer=id%3A34+stat%3AEXPIRED+err%3A000",
	                     &r),
	                 200);
	assert_int_equal(dlr(d, TOKEN, "type=66&id=msg-66&ts=1795792300", &r), 200);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT group_concat(provider_message_id||'|'||"
	                              "current_status||'|'||is_final, ';') FROM (SELECT * FROM"
	                              " sms_messages ORDER BY provider_message_id) AS s"),
	                    "msg-34|expired|1;msg-66|unknown|1");
	assert_int_equal(h_count(d, "review_queue"), 0);
}

static void test_rejections_write_nothing(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;

	assert_int_equal(dlr(d, "kannel-it-token-5f1d2c3b4b", DELIVERED, &r), 401);
	assert_string_equal(r.body, "unauthorized\n");
	assert_int_equal(dlr(d, NULL, DELIVERED, &r), 401);
	assert_int_equal(dlr(d, "", DELIVERED, &r), 401);
	assert_int_equal(dlr(d, TOKEN "&token=" TOKEN, DELIVERED, &r), 401);
	h_request(d, "POST", PATH "?token=" TOKEN "&type=1&id=a", NULL, "", 0, &r);
	assert_int_equal(r.status, 405);
	/* Allow names what the path takes: GET only (it said "GET, POST") */
	assert_string_equal(r.allow, "GET");
	assert_int_equal(h_count_data(d), 0);
	assert_false(h_log_contains(d, TOKEN));
	assert_false(h_log_contains(d, "5f1d2c3b4b"));
}

static void test_unusable_reviewed(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[512];

	/* a dlr-url without %F: authenticated, answered 200, reviewed */
	assert_int_equal(dlr(d, TOKEN, "type=1&smsc=a", &r), 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT reason||'|'||detail FROM review_queue"),
	    "unusable_payload|no usable id (Kannel %F)");
	assert_string_equal(
	    h_payload_str(d, buf, sizeof(buf), "SELECT raw_payload FROM review_queue"),
	    "token=REDACTED&type=1&smsc=a");
	assert_int_equal(h_count(d, "sms_messages"), 0);
	/* a type with no bit Kannel defines: stored as unknown, reviewed */
	assert_int_equal(dlr(d, TOKEN, "type=64&id=z", &r), 200);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT status||'|'||raw_status FROM sms_message_events"),
	                    "unknown|64");
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM review_queue "
	                              "WHERE reason = 'unknown_status'"),
	                 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_delivered_retry_and_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failure_with_code, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_kannel15_expired_and_unknown, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rejections_write_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unusable_reviewed, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
