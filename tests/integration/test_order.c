/* SPDX-License-Identifier: MIT */
/*
 * Integration: the summary of a message depends only on the set of its
 * callbacks, never on their arrival order.  Every one of the 24 orders of a
 * realistic set (queued, sent, delivered, and a retry of sent) gives the same
 * summary row; two different definitive final states give the same
 * conflict summary in both orders, with exactly one review row per message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "status.h"
#include "util.h"

/* The fields a reader of the summary relies on. */
#define SUMMARY                                                                                    \
	"current_status||'|'||coalesce(current_raw_status,'-')||'|'||"                             \
	"coalesce(current_error_code,'-')||'|'||is_final||'|'||status_mask||'|'||"                 \
	"final_conflict||'|'||event_count||'|'||callback_count||'|'||duplicate_count"

static int setup(void **state)
{
	return h_fixture_start(state, NULL);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

static void post(struct dlrd *d, const char *sid, const char *status, const char *error_code)
{
	char body[1024];
	struct h_resp r;

	assert_true(h_twilio_body(body, sizeof(body), sid, status, error_code) > 0);
	assert_int_equal(h_post_status(d, body, &r), 200);
}

static void test_every_arrival_order(void **state)
{
	struct dlrd *d = *state;
	static const char *const events[4] = {"queued", "sent", "delivered", "sent"};
	char sid[35], exp[256], buf[512];
	unsigned perm = 0;

	/* all 24 orders of {0,1,2,3}, each on its own message */
	for (unsigned a = 0; a < 4; a++)
		for (unsigned b = 0; b < 4; b++)
			for (unsigned c = 0; c < 4; c++)
				for (unsigned e = 0; e < 4; e++) {
					if (a == b || a == c || a == e || b == c || b == e ||
					    c == e)
						continue;
					h_sid(sid, 10, perm++);
					post(d, sid, events[a], NULL);
					post(d, sid, events[b], NULL);
					post(d, sid, events[c], NULL);
					post(d, sid, events[e], NULL);
				}
	assert_int_equal(perm, 24);

	util_fmt(exp, sizeof(exp), "delivered|delivered|-|1|%u|0|3|4|1",
	         (1u << ST_ACCEPTED) | (1u << ST_SENT) | (1u << ST_DELIVERED));
	for (unsigned i = 0; i < 24; i++) {
		h_sid(sid, 10, i);
		assert_string_equal(h_sql_str(d, buf, sizeof(buf),
		                              "SELECT " SUMMARY
		                              " FROM sms_messages WHERE provider_message_id = %Q",
		                              sid),
		                    exp);
	}
	assert_int_equal(h_count(d, "sms_messages"), 24);
	assert_int_equal(h_sql_int(d, "SELECT count(DISTINCT " SUMMARY ") FROM sms_messages"), 1);
	assert_int_equal(h_count(d, "sms_message_events"), 72);
	assert_int_equal(h_count(d, "sms_callback_log"), 96);
	assert_int_equal(h_sql_int(d, "SELECT sum(duplicate) FROM sms_callback_log"), 24);
	assert_int_equal(h_count(d, "review_queue"), 0);
}

/* delivered and undelivered (30003) for one message, in both orders. */
static void test_final_conflict_both_orders(void **state)
{
	struct dlrd *d = *state;
	char a[35], b[35], exp[256], buf[512];

	h_sid(a, 11, 1);
	h_sid(b, 11, 2);
	post(d, a, "delivered", NULL);
	post(d, a, "undelivered", "30003");
	post(d, b, "undelivered", "30003");
	post(d, b, "delivered", NULL);

	util_fmt(exp, sizeof(exp), "delivered|delivered|-|1|%u|1|2|2|0",
	         (1u << ST_DELIVERED) | (1u << ST_UNDELIVERED));
	for (int i = 0; i < 2; i++) {
		const char *sid = i ? b : a;
		assert_string_equal(h_sql_str(d, buf, sizeof(buf),
		                              "SELECT " SUMMARY
		                              " FROM sms_messages WHERE provider_message_id = %Q",
		                              sid),
		                    exp);
		/* exactly one review row, about this message and one of its events */
		assert_int_equal(h_sql_int(d,
		                           "SELECT count(*) FROM review_queue q JOIN sms_messages m"
		                           " ON m.id = q.message_id JOIN sms_message_events e ON"
		                           " e.id = q.event_id AND e.message_id = m.id WHERE"
		                           " q.reason = 'final_conflict' AND q.provider = 'twilio'"
		                           " AND m.provider_message_id = %Q",
		                           sid),
		                 1);
		assert_string_equal(
		    h_sql_str(d, buf, sizeof(buf),
		              "SELECT group_concat(status||':'||coalesce(error_code,"
		              "'-'), ',') FROM (SELECT status, error_code FROM"
		              " sms_message_events WHERE provider_message_id = %Q"
		              " ORDER BY status) AS s",
		              sid),
		    "delivered:-,undelivered:30003");
	}
	assert_int_equal(h_count(d, "review_queue"), 2);

	/* a retry and a third definitive final add no second review row */
	post(d, a, "undelivered", "30003");
	post(d, a, "failed", "30008");
	util_fmt(exp, sizeof(exp), "delivered|delivered|-|1|%u|1|3|4|1",
	         (1u << ST_DELIVERED) | (1u << ST_UNDELIVERED) | (1u << ST_FAILED));
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT " SUMMARY " FROM sms_messages WHERE provider_message_id = %Q", a),
	    exp);
	assert_int_equal(h_count(d, "review_queue"), 2);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM review_queue WHERE reason <>"
	                              " 'final_conflict'"),
	                 0);
}

/* Two receipts of the same final status that differ only in the error code
 * are not a conflict; the tie is broken the same way in both orders. */
static void test_same_status_tie_both_orders(void **state)
{
	struct dlrd *d = *state;
	char a[35], b[35], exp[256], buf[512];

	h_sid(a, 12, 1);
	h_sid(b, 12, 2);
	post(d, a, "undelivered", "30003");
	post(d, a, "undelivered", "30005");
	post(d, b, "undelivered", "30005");
	post(d, b, "undelivered", "30003");
	util_fmt(exp, sizeof(exp), "undelivered|undelivered|30005|1|%u|0|2|2|0",
	         1u << ST_UNDELIVERED);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT " SUMMARY " FROM sms_messages WHERE provider_message_id = %Q", a),
	    exp);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT " SUMMARY " FROM sms_messages WHERE provider_message_id = %Q", b),
	    exp);
	assert_int_equal(h_count(d, "review_queue"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_every_arrival_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_final_conflict_both_orders, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_same_status_tie_both_orders, setup, teardown),
	};
	return cmocka_run_group_tests_name("integration/order", tests, NULL, NULL);
}
