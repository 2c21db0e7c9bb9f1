/* SPDX-License-Identifier: MIT */
/*
 * Integration: callbacks that arrive before the send is recorded are joined
 * to it, whichever order things happen in.  For each order the end state is
 * the same: one message row (with the send's fields and the callbacks'
 * summary), every event once and attached to it, every retry-log row kept,
 * counters exact, review items following the message, and one timeline.
 *   A. callbacks, then a send that names the provider message id (adopt);
 *   B. a send without it, callbacks, then PATCH (merge of two rows);
 *   C. a send with it, then callbacks;
 *   D. a send without it, PATCH, then callbacks;
 *   E. callbacks, a STOP from the recipient, then a send that names the
 *      provider message id: recorded and joined (the message went out
 *      before the STOP), while a new send is still refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "api_helpers.h"
#include "status.h"

static int setup(void **state)
{
	const char *env[] = {api_tokens_env(), NULL};
	return h_fixture_start(state, env);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

static void callback(struct dlrd *d, const char *sid, const char *status, const char *code)
{
	char form[1024];
	struct h_resp r;
	assert_true(h_twilio_body(form, sizeof(form), sid, status, code) > 0);
	assert_int_equal(h_post_status(d, form, &r), 200);
}

/* sent, delivered, and a retry of sent: 2 events, 3 deliveries */
static void three_callbacks(struct dlrd *d, const char *sid)
{
	callback(d, sid, "sent", NULL);
	callback(d, sid, "delivered", NULL);
	callback(d, sid, "sent", NULL);
}

static void record(struct dlrd *d, const char *key, const char *pmid, char id[40], struct h_resp *r)
{
	char body[1024];
	api_send_body(body, sizeof(body), N_TO, pmid, "otp", "America/New_York");
	assert_int_equal(api_send(d, T_APP, key, body, r), 201);
	json_t *j = api_json(r);
	util_strlcpy(id, jpath_s(j, "id"), 40);
	json_decref(j);
}

static void patch(struct dlrd *d, const char *id, const char *sid, struct h_resp *r)
{
	char target[128], body[128];
	util_fmt(target, sizeof(target), "/v1/messages/%s", id);
	util_fmt(body, sizeof(body), "{\"provider_message_id\":\"%s\"}", sid);
	assert_int_equal(api_call(d, "PATCH", target, T_APP, body, NULL, r), 200);
}

/* The one end state every order must reach. */
static void assert_joined(struct dlrd *d, const char *id, const char *sid, const char *origin)
{
	char buf[1024], want[1024], target[128];
	struct h_resp r;

	assert_int_equal(h_count(d, "sms_messages"), 1);
	assert_int_equal(h_count(d, "sms_message_events"), 2);
	assert_int_equal(h_count(d, "sms_callback_log"), 3);
	util_fmt(want, sizeof(want),
	         "%s|%s|%s|delivered|1|%u|2|3|1|+1********23|US|login|otp|America/New_York|1|1|1",
	         id, sid, origin, (1u << ST_SENT) | (1u << ST_DELIVERED));
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT id||'|'||provider_message_id||'|'||origin||'|'||current_status||'|'||"
	              "is_final||'|'||status_mask||'|'||event_count||'|'||callback_count||'|'||"
	              "duplicate_count||'|'||recipient_masked||'|'||destination_country||'|'||"
	              "action_type||'|'||use_case||'|'||recipient_timezone||'|'||"
	              "(recipient_enc IS NOT NULL)||'|'||(first_callback_at IS NOT NULL)||'|'||"
	              "(final_at IS NOT NULL) FROM sms_messages"),
	    want);
	assert_int_equal(h_sql_int(d,
	                           "SELECT count(*) FROM sms_message_events WHERE message_id ="
	                           " %Q",
	                           id),
	                 2);
	assert_int_equal(h_sql_int(d,
	                           "SELECT count(*) FROM sms_callback_log l JOIN"
	                           " sms_message_events e ON e.id = l.event_id WHERE e.message_id"
	                           " = %Q",
	                           id),
	                 3);
	/* one timeline, the retry counted on its event */
	util_fmt(target, sizeof(target), "/v1/messages/%s/timeline", id);
	assert_int_equal(api_call(d, "GET", target, T_VIEWER, NULL, NULL, &r), 200);
	json_t *j = api_json(&r), *ev = jpath(j, "events");
	assert_int_equal(json_array_size(ev), 2);
	assert_string_equal(jpath_s(json_array_get(ev, 0), "status"), "sent");
	assert_int_equal(jpath_i(json_array_get(ev, 0), "provider_retries"), 1);
	assert_string_equal(jpath_s(json_array_get(ev, 1), "status"), "delivered");
	assert_int_equal(jpath_i(json_array_get(ev, 1), "provider_retries"), 0);
	assert_string_equal(jpath_s(j, "message.status"), "delivered");
	assert_string_equal(jpath_s(j, "message.use_case"), "otp");
	assert_string_equal(jpath_s(j, "send.action.type"), "login");
	/* whether the callbacks came first (openapi.json: joined_callbacks_first;
	 * the latencies from the send only when it came first), and where the
	 * country came from (the number: the send names none) */
	bool first = strcmp(origin, "joined") == 0;
	assert_true(json_is_boolean(jpath(j, "send.joined_callbacks_first")));
	assert_int_equal(json_is_true(jpath(j, "send.joined_callbacks_first")), first);
	assert_int_equal(json_is_null(jpath(j, "message.time_to_first_callback_ms")), first);
	assert_int_equal(json_is_null(jpath(j, "message.time_to_final_ms")), first);
	if (!first)
		assert_true(jpath_i(j, "message.time_to_final_ms") >=
		            jpath_i(j, "message.time_to_first_callback_ms"));
	assert_string_equal(jpath_s(j, "message.destination_country_source"), "number");
	json_decref(j);
	/* a later callback still lands on the same message */
	callback(d, sid, "delivered", NULL);
	assert_int_equal(h_count(d, "sms_messages"), 1);
	assert_int_equal(h_sql_int(d, "SELECT callback_count FROM sms_messages WHERE id = %Q", id),
	                 4);
}

static void test_callbacks_then_send(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char sid[35], cb_id[40], id[40], upper[35];

	h_sid(sid, 1, 1);
	three_callbacks(d, sid);
	assert_int_equal(h_count(d, "sms_messages"), 1);
	h_sql_str(d, cb_id, sizeof(cb_id), "SELECT id FROM sms_messages");
	/* the app spells the SID in upper case: still the same message */
	util_strlcpy(upper, sid, sizeof(upper));
	for (char *c = upper; *c; c++)
		*c = (char)(*c >= 'a' && *c <= 'f' ? *c - 32 : *c);
	record(d, "a-1", upper, id, &r);
	assert_string_equal(id, cb_id); /* the callback row is adopted, its id kept */
	json_t *j = api_json(&r);
	assert_string_equal(jpath_s(j, "origin"), "joined");
	assert_string_equal(jpath_s(j, "status"), "delivered");
	assert_true(json_is_true(jpath(j, "joined_callbacks")));
	json_decref(j);
	assert_joined(d, id, sid, "joined");
}

static void test_send_callbacks_patch(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char sid[35], id[40];

	h_sid(sid, 2, 1);
	record(d, "b-1", NULL, id, &r);
	three_callbacks(d, sid);
	/* an unknown status too: its review item must follow the message */
	callback(d, sid, "mystery", NULL);
	assert_int_equal(h_count(d, "sms_messages"), 2);
	char cb_id[40];
	h_sql_str(d, cb_id, sizeof(cb_id), "SELECT id FROM sms_messages WHERE origin = 'callback'");
	assert_int_equal(
	    h_sql_int(d, "SELECT count(*) FROM review_queue WHERE message_id = %Q", cb_id), 1);
	/* resolved before the join: its audit row must follow the message too */
	char target[96];
	util_fmt(target, sizeof(target), "/v1/review/%lld/resolve",
	         (long long)h_sql_int(d, "SELECT id FROM review_queue"));
	assert_int_equal(
	    api_call(d, "POST", target, T_ADMIN, "{\"note\":\"carrier test\"}", NULL, &r), 200);
	patch(d, id, sid, &r);
	json_t *j = api_json(&r);
	assert_true(json_is_true(jpath(j, "joined_callbacks")));
	assert_string_equal(jpath_s(j, "status"), "delivered");
	json_decref(j);
	/* the unknown-status event came along; drop it from the comparison */
	assert_int_equal(
	    h_sql_int(d, "SELECT count(*) FROM review_queue WHERE message_id = %Q", id), 1);
	assert_int_equal(
	    h_sql_int(d, "SELECT count(*) FROM review_queue WHERE message_id = %Q", cb_id), 0);
	util_fmt(target, sizeof(target), "/v1/audit?message_id=%s", id);
	assert_int_equal(api_call(d, "GET", target, T_ADMIN, NULL, NULL, &r), 200);
	j = api_json(&r);
	assert_int_equal(json_array_size(jpath(j, "entries")), 1);
	assert_string_equal(jpath_s(json_array_get(jpath(j, "entries"), 0), "action"),
	                    "review_resolve");
	json_decref(j);
	assert_int_equal(
	    h_sql_int(d, "SELECT count(*) FROM audit_log WHERE message_id = %Q", cb_id), 0);
	assert_int_equal(h_count(d, "sms_messages"), 1);
	assert_int_equal(h_count(d, "sms_message_events"), 3);
	assert_int_equal(h_sql_int(d, "SELECT event_count FROM sms_messages"), 3);
	assert_int_equal(h_sql_int(d, "SELECT callback_count FROM sms_messages"), 4);
	assert_int_equal(h_sql_int(d, "SELECT duplicate_count FROM sms_messages"), 1);
	assert_int_equal(h_sql_int(d, "SELECT status_mask FROM sms_messages"),
	                 (1 << ST_SENT) | (1 << ST_DELIVERED) | (1 << ST_UNKNOWN));
	char buf[128], want[128];
	util_fmt(want, sizeof(want), "delivered|send|%s", id);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT current_status||'|'||origin||'|'||id FROM sms_messages"),
	    want);
}

/* B without the unknown status: exactly the common end state */
static void test_send_callbacks_patch_plain(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char sid[35], id[40];

	h_sid(sid, 3, 1);
	record(d, "b-2", NULL, id, &r);
	three_callbacks(d, sid);
	assert_int_equal(h_count(d, "sms_messages"), 2);
	patch(d, id, sid, &r);
	assert_joined(d, id, sid, "send");
}

static void test_send_then_callbacks(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char sid[35], id[40];

	h_sid(sid, 4, 1);
	record(d, "c-1", sid, id, &r);
	three_callbacks(d, sid);
	assert_joined(d, id, sid, "send");
}

static void test_send_patch_then_callbacks(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char sid[35], id[40];

	h_sid(sid, 5, 1);
	record(d, "d-1", NULL, id, &r);
	patch(d, id, sid, &r);
	three_callbacks(d, sid);
	assert_joined(d, id, sid, "send");
}

/* A final conflict in the callbacks survives the merge with its review
 * item, and the merge adds none of its own. */
static void test_merge_keeps_conflict(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char sid[35], id[40];

	h_sid(sid, 6, 1);
	record(d, "e-1", NULL, id, &r);
	callback(d, sid, "delivered", NULL);
	callback(d, sid, "undelivered", "30003");
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM review_queue WHERE reason ="
	                              " 'final_conflict'"),
	                 1);
	patch(d, id, sid, &r);
	assert_int_equal(h_count(d, "sms_messages"), 1);
	assert_int_equal(h_sql_int(d, "SELECT final_conflict FROM sms_messages WHERE id = %Q", id),
	                 1);
	assert_int_equal(h_sql_int(d,
	                           "SELECT count(*) FROM review_queue WHERE reason ="
	                           " 'final_conflict' AND message_id = %Q",
	                           id),
	                 1);
	assert_int_equal(h_count(d, "review_queue"), 1);
}

/* The provider was faster than the app, and the recipient answered STOP to
 * the message before the app recorded it: the callbacks prove the message
 * went out before the opt-out, so recording it adopts them like any early
 * callbacks (nothing lost whichever came first) instead of 409, which left
 * them an orphan without the send's fields.  A new send to the recipient
 * is still refused. */
static void test_stop_before_the_record(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char sid[35], in_sid[35], form[512], body[1024], id[40], code[64];

	h_sid(sid, 7, 1);
	three_callbacks(d, sid);
	h_sid(in_sid, 0x1b0, 1);
	util_fmt(form, sizeof(form),
	         "MessageSid=%s&AccountSid=AC0123456789abcdef0123456789abcdef"
	         "&From=%%2B%s&To=%%2B%s&Body=STOP",
	         in_sid, N_TO + 1, N_SENDER + 1);
	assert_int_equal(h_post_twilio(d, "/webhooks/twilio/inbound", H_TOKEN1, form, NULL, &r),
	                 200);
	api_send_body(body, sizeof(body), N_TO, sid, "otp", "America/New_York");
	long st = api_send(d, T_APP, "s-1", body, &r);
	if (st != 201)
		fail_msg("recording the send that was delivered before the STOP: %ld %s", st,
		         r.body);
	json_t *j = api_json(&r);
	util_strlcpy(id, jpath_s(j, "id"), sizeof(id));
	assert_string_equal(jpath_s(j, "origin"), "joined");
	json_decref(j);
	assert_joined(d, id, sid, "joined");
	/* a send that did not happen yet is refused as before */
	api_send_body(body, sizeof(body), N_TO, NULL, "otp", NULL);
	assert_int_equal(api_send(d, T_APP, "s-2", body, &r), 409);
	assert_string_equal(api_error_code(&r, code, sizeof(code)), "recipient_opted_out");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_callbacks_then_send, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_send_callbacks_patch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_send_callbacks_patch_plain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_send_then_callbacks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_send_patch_then_callbacks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_merge_keeps_conflict, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_before_the_record, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
