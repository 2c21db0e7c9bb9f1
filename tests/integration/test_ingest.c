/* SPDX-License-Identifier: MIT */
/*
 * Integration: what one accepted Twilio status callback leaves in the
 * database.  A valid callback gives exactly one summary row, one event and
 * one retry-log row; an identical retry adds only a retry-log row; every
 * Twilio status maps to its normalized state; an unknown status is kept as
 * 'unknown' with a review row; a callback without a message id is answered
 * 200 and kept byte-for-byte in the review queue.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/hmac.h>

#include "harness.h"
#include "status.h"
#include "util.h"

#define MSG_SUMMARY                                                                                \
	"SELECT provider||'|'||provider_message_id||'|'||origin||'|'||current_status||'|'||"       \
	"coalesce(current_raw_status,'-')||'|'||coalesce(current_error_code,'-')||'|'||"           \
	"is_final||'|'||status_mask||'|'||final_conflict||'|'||read_receipt||'|'||"                \
	"event_count||'|'||callback_count||'|'||duplicate_count||'|'||"                            \
	"coalesce(destination_country,'-')||'|'||coalesce(sender_identity,'-')"                    \
	" FROM sms_messages WHERE provider_message_id = %Q"

#define EVENT_ROW                                                                                  \
	"SELECT provider||'|'||provider_message_id||'|'||coalesce(provider_event_id,'-')||'|'||"   \
	"status||'|'||coalesce(raw_status,'-')||'|'||coalesce(error_code,'-')||'|'||"              \
	"is_final||'|'||read_receipt||'|'||changed_summary||'|'||"                                 \
	"coalesce(provider_occurred_at,'-')"                                                       \
	" FROM sms_message_events WHERE provider_message_id = %Q ORDER BY id LIMIT 1"

static int setup(void **state)
{
	return h_fixture_start(state, NULL);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

/* hex HMAC-SHA256(H_HASH_KEY, e164), computed without dlrd's code. */
static void expected_hash(const char *e164, char out[65])
{
	unsigned char md[32];
	unsigned int len = sizeof(md);

	HMAC(EVP_sha256(), H_HASH_KEY, (int)strlen(H_HASH_KEY), (const unsigned char *)e164,
	     strlen(e164), md, &len);
	for (unsigned i = 0; i < 32; i++)
		util_fmt(out + 2 * i, 3, "%02x", md[i]);
}

static void test_stored_exactly_once(void **state)
{
	struct dlrd *d = *state;
	char sid[35], body[1024], exp[512], buf[4096], hash[65];
	struct h_resp r;
	size_t n;

	h_sid(sid, 1, 1);
	n = h_twilio_body(body, sizeof(body), sid, "delivered", NULL);
	assert_true(n > 0);

	assert_int_equal(h_post_status(d, body, &r), 200);
	assert_int_equal(r.body_len, 0);

	/* exact row counts in every table */
	assert_int_equal(h_count(d, "sms_messages"), 1);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_int_equal(h_count(d, "sms_callback_log"), 1);
	assert_int_equal(h_count(d, "review_queue"), 0);

	/* the summary row */
	util_fmt(exp, sizeof(exp), "twilio|%s|callback|delivered|delivered|-|1|%u|0|0|1|1|0|US|%s",
	         sid, 1u << ST_DELIVERED, H_FROM);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf), MSG_SUMMARY, sid), exp);
	assert_int_equal(h_sql_int(d, "SELECT current_occurred_ms FROM sms_messages"), -1);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT current_occurred_at FROM sms_messages"),
	    "(null)");
	assert_int_equal(h_sql_int(d, "SELECT first_callback_at IS NOT NULL AND final_at IS NOT"
	                              " NULL AND created_at IS NOT NULL FROM sms_messages"),
	                 1);

	/* the recipient is stored only as the keyed hash of its E.164 form */
	expected_hash(H_TO, hash);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT recipient_hash FROM sms_messages"), hash);
	assert_int_equal(h_sql_int(d,
	                           "SELECT count(*) FROM sms_messages WHERE"
	                           " instr(recipient_hash, %Q) > 0",
	                           H_TO_DIGITS),
	                 0);

	/* the event */
	util_fmt(exp, sizeof(exp), "twilio|%s|-|delivered|delivered|-|1|0|1|-", sid);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf), EVENT_ROW, sid), exp);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_message_events e JOIN sms_messages"
	                              " m ON m.id = e.message_id"),
	                 1);
	assert_int_equal(h_sql_int(d, "SELECT length(dedup_key) FROM sms_message_events"), 64);
	assert_int_equal(
	    h_sql_payload(d, buf, sizeof(buf), "SELECT raw_payload FROM sms_message_events"),
	    (long)n);
	assert_memory_equal(buf, body, n);
	/* stored sealed: the column itself holds no phone number in clear */
	long sealed = h_sql_text(d, buf, sizeof(buf), "SELECT raw_payload FROM sms_message_events");
	assert_true(sealed > (long)n);
	assert_memory_equal(buf, "DLRDE1", 6);
	assert_null(memmem(buf, (size_t)sealed, H_TO_DIGITS, strlen(H_TO_DIGITS)));
	assert_null(memmem(buf, (size_t)sealed, "MessageStatus", 13));

	/* the retry-log row points at the event */
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT l.provider||'|'||l.duplicate||'|'||(l.event_id = e.id)"
	              " FROM sms_callback_log l, sms_message_events e"),
	    "twilio|0|1");

	/* an identical retry: 200, one more log row, nothing else */
	assert_int_equal(h_post_status(d, body, &r), 200);
	assert_int_equal(r.body_len, 0);
	assert_int_equal(h_count(d, "sms_messages"), 1);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_int_equal(h_count(d, "sms_callback_log"), 2);
	assert_int_equal(h_count(d, "review_queue"), 0);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT group_concat(duplicate || ':' || (event_id = (SELECT id"
	              " FROM sms_message_events)), ',') FROM (SELECT * FROM"
	              " sms_callback_log ORDER BY id) AS s"),
	    "0:1,1:1");
	util_fmt(exp, sizeof(exp), "twilio|%s|callback|delivered|delivered|-|1|%u|0|0|1|2|1|US|%s",
	         sid, 1u << ST_DELIVERED, H_FROM);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf), MSG_SUMMARY, sid), exp);
}

/* Twilio SIDs are case-insensitive hex: a retry that spells the SID in
 * another case is the same message and the same event. */
static void test_sid_case_is_canonical(void **state)
{
	struct dlrd *d = *state;
	const char *upper = "SMABCDEF0123456789ABCDEF0123456789";
	const char *lower = "SMabcdef0123456789abcdef0123456789";
	char body[1024], buf[256];
	struct h_resp r;

	assert_true(h_twilio_body(body, sizeof(body), upper, "sent", NULL) > 0);
	assert_int_equal(h_post_status(d, body, &r), 200);
	assert_true(h_twilio_body(body, sizeof(body), lower, "sent", NULL) > 0);
	assert_int_equal(h_post_status(d, body, &r), 200);

	assert_int_equal(h_count(d, "sms_messages"), 1);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_int_equal(h_count(d, "sms_callback_log"), 2);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT provider_message_id FROM sms_messages"), lower);
	assert_int_equal(h_sql_int(d, "SELECT duplicate_count FROM sms_messages"), 1);
}

static void test_status_mapping(void **state)
{
	struct dlrd *d = *state;
	static const struct {
		const char *raw;
		const char *status;
		int is_final;
		int read;
	} cases[] = {
	    {"accepted", "accepted", 0, 0},
	    {"scheduled", "accepted", 0, 0},
	    {"queued", "accepted", 0, 0},
	    {"sending", "accepted", 0, 0},
	    {"sent", "sent", 0, 0},
	    {"delivered", "delivered", 1, 0},
	    {"undelivered", "undelivered", 1, 0},
	    {"failed", "failed", 1, 0},
	    {"read", "delivered", 1, 1},
	    {"canceled", "failed", 1, 0},
	    {"partially_delivered", "unknown", 1, 0},
	};
	char sid[35], body[1024], exp[256], buf[256];
	struct h_resp r;

	for (unsigned i = 0; i < ARRAY_LEN(cases); i++) {
		h_sid(sid, 2, i);
		assert_true(h_twilio_body(body, sizeof(body), sid, cases[i].raw, NULL) > 0);
		assert_int_equal(h_post_status(d, body, &r), 200);
		util_fmt(exp, sizeof(exp), "%s|%s|%d|%d|%s|%s|%d|%d", cases[i].status, cases[i].raw,
		         cases[i].is_final, cases[i].read, cases[i].status, cases[i].raw,
		         cases[i].is_final, cases[i].read);
		assert_string_equal(
		    h_sql_str(d, buf, sizeof(buf),
		              "SELECT e.status||'|'||e.raw_status||'|'||e.is_final||'|'||"
		              "e.read_receipt||'|'||m.current_status||'|'||m.current_raw_status"
		              "||'|'||m.is_final||'|'||m.read_receipt FROM sms_message_events e"
		              " JOIN sms_messages m ON m.id = e.message_id WHERE"
		              " e.provider_message_id = %Q",
		              sid),
		    exp);
	}
	assert_int_equal(h_count(d, "sms_messages"), (int64_t)ARRAY_LEN(cases));
	assert_int_equal(h_count(d, "sms_message_events"), (int64_t)ARRAY_LEN(cases));
	assert_int_equal(h_count(d, "review_queue"), 0);
}

/* A scheduled message canceled through Twilio's API failed on purpose: its
 * reason is "canceled" (providers.md 1.3: failed, reason=canceled), not an
 * unexplained failure that support would be told to retry. */
static void test_canceled_reason(void **state)
{
	struct dlrd *d = *state;
	char sid[35], body[1024], buf[256];
	struct h_resp r;

	h_sid(sid, 2, 99);
	assert_true(h_twilio_body(body, sizeof(body), sid, "canceled", NULL) > 0);
	assert_int_equal(h_post_status(d, body, &r), 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT e.status||'|'||coalesce(e.error_reason,'-')||'|'||"
	              "coalesce(m.current_error_reason,'-') FROM sms_message_events e"
	              " JOIN sms_messages m ON m.id = e.message_id WHERE"
	              " e.provider_message_id = %Q",
	              sid),
	    "failed|canceled|canceled");
}

static void test_unknown_status(void **state)
{
	struct dlrd *d = *state;
	char sid[35], body[1024], exp[512], buf[4096];
	struct h_resp r;
	size_t n;

	h_sid(sid, 3, 1);
	n = h_twilio_body(body, sizeof(body), sid, "teleported", NULL);
	assert_true(n > 0);
	assert_int_equal(h_post_status(d, body, &r), 200);
	assert_int_equal(r.body_len, 0);

	assert_int_equal(h_count(d, "sms_messages"), 1);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_int_equal(h_count(d, "sms_callback_log"), 1);
	assert_int_equal(h_count(d, "review_queue"), 1);
	util_fmt(exp, sizeof(exp), "twilio|%s|-|unknown|teleported|-|1|0|1|-", sid);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf), EVENT_ROW, sid), exp);
	util_fmt(exp, sizeof(exp), "twilio|%s|callback|unknown|teleported|-|1|%u|0|0|1|1|0|US|%s",
	         sid, 1u << ST_UNKNOWN, H_FROM);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf), MSG_SUMMARY, sid), exp);

	/* the review row names the message, the event and the raw status */
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT q.provider||'|'||q.reason||'|'||q.raw_status||'|'||"
	              "(q.message_id = m.id)||'|'||(q.event_id = e.id)||'|'||"
	              "coalesce(q.resolved_at,'-') FROM review_queue q, sms_messages m,"
	              " sms_message_events e"),
	    "twilio|unknown_status|teleported|1|1|-");
	assert_int_equal(h_sql_payload(d, buf, sizeof(buf), "SELECT raw_payload FROM review_queue"),
	                 (long)n);
	assert_memory_equal(buf, body, n);

	/* a definitive final state replaces unknown, without a conflict */
	assert_true(h_twilio_body(body, sizeof(body), sid, "delivered", NULL) > 0);
	assert_int_equal(h_post_status(d, body, &r), 200);
	util_fmt(exp, sizeof(exp), "twilio|%s|callback|delivered|delivered|-|1|%u|0|0|2|2|0|US|%s",
	         sid, (1u << ST_UNKNOWN) | (1u << ST_DELIVERED), H_FROM);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf), MSG_SUMMARY, sid), exp);
	assert_int_equal(h_count(d, "review_queue"), 1);
}

static void test_unusable_payload(void **state)
{
	struct dlrd *d = *state;
	/* signed, but no MessageSid / SmsSid; odd but valid bytes must be
	 * kept exactly as received */
	static const char no_sid[] =
	    "AccountSid=AC0123456789abcdef0123456789abcdef&From=%2B15017122661"
	    "&To=%2B14155550123&MessageStatus=delivered&SmsStatus=delivered"
	    "&Body=caf%C3%A9+%26+cr%C3%A8me&Empty=&Flag&ApiVersion=2010-04-01";
	char sid[35], body[1024], buf[4096];
	struct h_resp r;

	assert_int_equal(h_post_status(d, no_sid, &r), 200);
	assert_int_equal(r.body_len, 0);
	assert_int_equal(h_count(d, "sms_messages"), 0);
	assert_int_equal(h_count(d, "sms_message_events"), 0);
	assert_int_equal(h_count(d, "sms_callback_log"), 0);
	assert_int_equal(h_count(d, "review_queue"), 1);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider||'|'||reason||'|'||coalesce(message_id,'-')"
	              "||'|'||coalesce(CAST(event_id AS TEXT),'-')||'|'||coalesce(resolved_at,'-')"
	              " FROM review_queue"),
	    "twilio|unusable_payload|-|-|-");
	assert_int_equal(h_sql_payload(d, buf, sizeof(buf), "SELECT raw_payload FROM review_queue"),
	                 (long)strlen(no_sid));
	assert_memory_equal(buf, no_sid, strlen(no_sid));
	/* the provider sends it again (our 200 got lost): still one item, the
	 * resend counted on it (before the fix: a second item each time) */
	assert_int_equal(h_post_status(d, no_sid, &r), 200);
	assert_int_equal(h_post_status(d, no_sid, &r), 200);
	assert_int_equal(h_count(d, "review_queue"), 1);
	assert_int_equal(h_sql_int(d, "SELECT retry_count FROM review_queue"), 2);

	/* a message id but no status is unusable too */
	h_sid(sid, 4, 1);
	util_fmt(body, sizeof(body), "MessageSid=%s&AccountSid=AC0123&To=%%2B14155550123", sid);
	assert_int_equal(h_post_status(d, body, &r), 200);
	assert_int_equal(h_count(d, "sms_messages"), 0);
	assert_int_equal(h_count(d, "sms_message_events"), 0);
	assert_int_equal(h_count(d, "review_queue"), 2);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT reason FROM review_queue ORDER BY id DESC LIMIT 1"),
	                    "unusable_payload");
	assert_int_equal(
	    h_sql_payload(d, buf, sizeof(buf),
	                  "SELECT raw_payload FROM review_queue ORDER BY id DESC LIMIT 1"),
	    (long)strlen(body));
	assert_string_equal(buf, body);
	assert_int_equal(h_post_status(d, body, &r), 200);
	assert_int_equal(h_count(d, "review_queue"), 2);
	/* review additions and duplicates as the queue says */
	assert_int_equal(h_metric(d, "dlrd_review_events_total{provider=\"twilio\"}"), 2);
	assert_int_equal(h_metric(d, "dlrd_duplicate_events_total{provider=\"twilio\"}"), 3);
	assert_int_equal(
	    h_metric(d, "dlrd_callbacks_total{provider=\"twilio\",outcome=\"review\"}"), 2);
	assert_int_equal(
	    h_metric(d, "dlrd_callbacks_total{provider=\"twilio\",outcome=\"duplicate\"}"), 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_stored_exactly_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sid_case_is_canonical, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_status_mapping, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_canceled_reason, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_status, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unusable_payload, setup, teardown),
	};
	return cmocka_run_group_tests_name("integration/ingest", tests, NULL, NULL);
}
