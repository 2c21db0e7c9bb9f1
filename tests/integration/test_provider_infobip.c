/* SPDX-License-Identifier: MIT */
/*
 * Integration: Infobip callbacks against the real daemon.  A batch of
 * delivery reports with Basic credentials stores one event per result (the
 * operator receipt as sent, the handset receipt as delivered); the same
 * batch again adds only retry-log rows; wrong or missing credentials answer
 * 401 and write nothing; inbound results store inbound rows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api_helpers.h"
#include "harness.h"

static int setup(void **state)
{
	const char *env[] = {"DLRD_INFOBIP_BASIC_AUTH=dlrd:pa55word", api_tokens_env(), NULL};
	return h_fixture_start(state, env);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

/* "dlrd:pa55word" */
#define AUTH "Authorization: Basic ZGxyZDpwYTU1d29yZA=="

static long post(const struct dlrd *d, const char *path, const char *auth, const char *body,
                 struct h_resp *r)
{
	const char *hdrs[] = {"Content-Type: application/json", auth, NULL};
	assert_int_equal(h_request(d, "POST", path, hdrs, body, strlen(body), r), 0);
	return r->status;
}

#define REPORT(id, gid, sid, name, done)                                                           \
	"{\"bulkId\":\"b1\",\"messageId\":\"" id "\",\"to\":\"41793026731\","                      \
	"\"doneAt\":\"" done "\",\"status\":{\"groupId\":" gid ",\"groupName\":\"X\",\"id\":" sid  \
	",\"name\":\"" name "\"},\"error\":{\"groupId\":0,\"groupName\":\"OK\",\"id\":0,"          \
	"\"name\":\"NO_ERROR\",\"permanent\":false}}"
#define MID "fb469d73-d362-463f-b30f-1e959b53badc"
#define BATCH_BODY                                                                                 \
	"{\"results\":[" REPORT(                                                                   \
	    MID, "3", "2", "DELIVERED_TO_OPERATOR",                                                \
	    "2019-04-09T16:01:00.000-0300") "," REPORT(MID, "3", "5", "DELIVERED_TO_HANDSET",      \
	                                               "2019-04-09T16:01:56.494-0300") "]}"

static void test_batch(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[512];

	assert_int_equal(post(d, "/webhooks/infobip/status", AUTH, BATCH_BODY, &r), 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT group_concat(status||'|'||raw_status||'|'||provider_occurred_at, ';')"
	              " FROM (SELECT * FROM sms_message_events ORDER BY id) AS s"),
	    "sent|DELIVERED_TO_OPERATOR|2019-04-09T19:01:00.000Z;"
	    "delivered|DELIVERED_TO_HANDSET|2019-04-09T19:01:56.494Z");
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT current_status||'|'||is_final||'|'||event_count||'|'||"
	              "destination_country FROM sms_messages WHERE "
	              "provider_message_id=%Q",
	              MID),
	    "delivered|1|2|CH");
	assert_int_equal(post(d, "/webhooks/infobip/status", AUTH, BATCH_BODY, &r), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 2);
	assert_int_equal(h_count(d, "sms_callback_log"), 4);
}

/* A batch keeps its body once (sms_payloads), not once per event: a 64 KB
 * request of 636 results wrote 42 MB.  Every event still shows the whole
 * request through the API, and a resend adds no second copy. */
static void test_batch_payload_once(void **state)
{
	enum { N = 40 };
	struct dlrd *d = *state;
	struct h_resp r;
	static char body[N * 400], got[N * 400];
	char target[96], id[64];
	size_t n = util_fmt(body, sizeof(body), "{\"results\":[");

	for (int i = 0; i < N; i++)
		n += util_fmt(
		    body + n, sizeof(body) - n,
		    "%s{\"bulkId\":\"b1\",\"messageId\":\"batch-%d\",\"to\":\"41793026731\","
		    "\"doneAt\":\"2019-04-09T16:01:56.494-0300\",\"status\":{\"groupId\":3,"
		    "\"groupName\":\"DELIVERED\",\"id\":5,\"name\":\"DELIVERED_TO_HANDSET\"}}",
		    i ? "," : "", i);
	util_fmt(body + n, sizeof(body) - n, "]}");

	assert_int_equal(post(d, "/webhooks/infobip/status", AUTH, body, &r), 200);
	assert_int_equal(h_count(d, "sms_message_events"), N);
	assert_int_equal(h_count(d, "sms_payloads"), 1);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_message_events WHERE"
	                              " length(raw_payload) = 0 AND payload_id ="
	                              " (SELECT id FROM sms_payloads)"),
	                 N);
	assert_string_equal(
	    h_payload_str(d, got, sizeof(got), "SELECT raw_payload FROM sms_payloads"), body);
	/* stored once: the body's sealed size, not N times it */
	assert_true(h_sql_int(d, "SELECT sum(length(raw_payload)) FROM sms_payloads") <
	            (int64_t)strlen(body) + 100);

	/* the API opens it for each event */
	h_sql_str(d, id, sizeof(id),
	          "SELECT id FROM sms_messages WHERE provider_message_id = 'batch-7'");
	util_fmt(target, sizeof(target), "/v1/messages/%s/timeline", id);
	assert_int_equal(api_call(d, "GET", target, T_SUPPORT, NULL, NULL, &r), 200);
	json_t *j = json_loads(r.body, 0, NULL);
	assert_non_null(j);
	json_t *ev = json_array_get(json_object_get(j, "events"), 0);
	assert_string_equal(json_string_value(json_object_get(ev, "raw_payload")), body);
	json_decref(j);

	/* a resend: retry-log rows only */
	assert_int_equal(post(d, "/webhooks/infobip/status", AUTH, body, &r), 200);
	assert_int_equal(h_count(d, "sms_payloads"), 1);
	assert_int_equal(h_count(d, "sms_message_events"), N);
	assert_int_equal(h_count(d, "sms_callback_log"), 2 * N);
}

/* The other rows a batch writes name its payload too: a review item for an
 * unknown status and for an unusable result, inbound messages; the review
 * list opens it. */
static void test_batch_payload_rows(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	static const char body[] = "{\"results\":[" REPORT(
	    "m-ok", "3", "5", "DELIVERED_TO_HANDSET",
	    "2019-04-09T16:01:56.494-0300") "," REPORT("m-odd", "99", "77", "SOMETHING_NEW",
	                                               "2019-04-09T16:01:57.000-0300") ",{"
	                                                                               "\"bulkId\":"
	                                                                               "\"b1\"}]}";
	static const char inbound[] =
	    "{\"results\":[{\"messageId\":\"in-1\",\"from\":\"41793026731\","
	    "\"to\":\"447860099299\",\"text\":\"one\",\"receivedAt\":"
	    "\"2019-08-05T13:39:21.045+0000\"},{\"messageId\":\"in-2\",\"from\":"
	    "\"41793026731\",\"to\":\"447860099299\",\"text\":\"two\",\"receivedAt\":"
	    "\"2019-08-05T13:39:22.045+0000\"}],\"messageCount\":2,\"pendingMessageCount\":0}";
	char got[4096];

	assert_int_equal(post(d, "/webhooks/infobip/status", AUTH, body, &r), 200);
	assert_int_equal(h_count(d, "review_queue"), 2);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM review_queue WHERE"
	                              " length(raw_payload) = 0 AND payload_id ="
	                              " (SELECT id FROM sms_payloads)"),
	                 2);
	assert_int_equal(api_call(d, "GET", "/v1/review", T_ADMIN, NULL, NULL, &r), 200);
	json_t *j = json_loads(r.body, 0, NULL), *items = json_object_get(j, "items");
	assert_int_equal(json_array_size(items), 2);
	for (size_t i = 0; i < 2; i++)
		assert_string_equal(
		    json_string_value(json_object_get(json_array_get(items, i), "raw_payload")),
		    body);
	json_decref(j);

	assert_int_equal(post(d, "/webhooks/infobip/inbound", AUTH, inbound, &r), 200);
	assert_int_equal(h_count(d, "sms_payloads"), 2);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_inbound_messages WHERE"
	                              " length(raw_payload) = 0 AND payload_id IS NOT NULL"),
	                 2);
	assert_string_equal(h_payload_str(d, got, sizeof(got),
	                                  "SELECT p.raw_payload FROM sms_payloads p JOIN"
	                                  " sms_inbound_messages i ON i.payload_id = p.id"
	                                  " WHERE i.provider_message_id = 'in-2'"),
	                    inbound);
}

static void test_rejected(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	assert_int_equal(post(d, "/webhooks/infobip/status",
	                      "Authorization: Basic ZGxyZDpwYTU1d29yYg==", BATCH_BODY, &r),
	                 401);
	assert_int_equal(post(d, "/webhooks/infobip/status", "X-Other: 1", BATCH_BODY, &r), 401);
	assert_int_equal(h_count_data(d), 0);
}

static void test_inbound(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[256];
	assert_int_equal(
	    post(d, "/webhooks/infobip/inbound", AUTH,
	         "{\"results\":[{\"messageId\":\"817790313235066447\","
	         "\"from\":\"41793026731\",\"to\":\"447860099299\",\"text\":\"hi there\","
	         "\"cleanText\":\"there\",\"keyword\":\"HI\","
	         "\"receivedAt\":\"2019-08-05T13:39:21.045+0000\",\"smsCount\":1}],"
	         "\"messageCount\":1,\"pendingMessageCount\":0}",
	         &r),
	    200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider_message_id||'|'||to_identity||'|'||body||'|'||"
	              "sender_country||'|'||provider_occurred_at FROM "
	              "sms_inbound_messages"),
	    "817790313235066447|447860099299|hi there|CH|2019-08-05T13:39:21.045Z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_payload_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_payload_rows, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rejected, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
