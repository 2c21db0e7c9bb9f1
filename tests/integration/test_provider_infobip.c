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

#include "harness.h"

static const char *const env[] = {"DLRD_INFOBIP_BASIC_AUTH=dlrd:pa55word", NULL};

static int setup(void **state)
{
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
	    cmocka_unit_test_setup_teardown(test_rejected, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
