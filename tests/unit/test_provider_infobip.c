/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/providers/infobip.c through its provider table entry:
 * Basic credentials (right, wrong, partial, rotated, malformed), batched
 * delivery reports (one event per result), the status mapping by name and
 * by group with DELIVERED_TO_OPERATOR as sent, error ids, Infobip's time
 * format with a colon-less offset, inbound messages and routing by content.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "crypto.h"
#include "provider.h"
#include "provider_test.h"

extern const struct provider provider_infobip;

/* "dlrd:s3cret:with:colons" and "old:pw" */
#define AUTH_OK  "Basic ZGxyZDpzM2NyZXQ6d2l0aDpjb2xvbnM="
#define AUTH_OLD "Basic b2xkOnB3"
#define AUTH_BAD "Basic ZGxyZDpzM2NyZXQ6d2l0aDpjb2xvbg==" /* one byte short */

struct fx {
	struct config cfg;
	void *state;
	struct arena a;
	char block[16384];
	struct pt_headers hdr;
	struct provider_result res;
	char err[256];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	setenv("DLRD_INFOBIP_BASIC_AUTH", "old:pw, dlrd:s3cret:with:colons", 1);
	if (pt_start(&provider_infobip, &f->cfg, &f->state, true, &f->a, f->block,
	             sizeof(f->block)) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	pt_stop(&provider_infobip, &f->cfg, f->state, &f->a);
	free(f);
	return 0;
}

static int run_full(struct fx *f, const char *method, const char *ctype, const char *auth,
                    const char *body)
{
	struct provider_request r;

	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "Authorization", auth);
	pt_request(&r, &f->a,
	           &(struct pt_call){.method = method,
	                             .target = "/webhooks/infobip/status",
	                             .ctype = ctype,
	                             .body = body,
	                             .now_ms = 1700000000000LL,
	                             .headers = &f->hdr});
	return pt_run(&provider_infobip, f->state, &r, &f->res, f->err, sizeof(f->err), NULL);
}

static int run(struct fx *f, const char *body)
{
	return run_full(f, "POST", "application/json", AUTH_OK, body);
}

/* One delivery report result with the given status and error. */
static const char *report(char *buf, size_t cap, int gid, const char *gname, int id,
                          const char *name, int err_id)
{
	snprintf(buf, cap,
	         "{\"results\":[{\"bulkId\":\"\",\"messageId\":"
	         "\"FB469D73-D362-463F-B30F-1E959B53BADC\",\"to\":\"41793026731\","
	         "\"sentAt\":\"2019-04-09T16:00:58.647-0300\","
	         "\"doneAt\":\"2019-04-09T16:01:56.494-0300\",\"messageCount\":1,"
	         "\"mccMnc\":\"22801\",\"callbackData\":\"ref-1\","
	         "\"price\":{\"pricePerMessage\":0.01,\"currency\":\"EUR\"},"
	         "\"status\":{\"groupId\":%d,\"groupName\":\"%s\",\"id\":%d,\"name\":\"%s\","
	         "\"description\":\"d\"},"
	         "\"error\":{\"groupId\":0,\"groupName\":\"OK\",\"id\":%d,\"name\":\"E\","
	         "\"description\":\"e\",\"permanent\":false},\"futureField\":[1]}]}",
	         gid, gname, id, name, err_id);
	return buf;
}

static void test_auth(void **state)
{
	struct fx *f = *state;
	const char *body = "{\"results\":[]}";
	assert_int_equal(run_full(f, "POST", "application/json", AUTH_OK, body), 0);
	assert_int_equal(run_full(f, "POST", "application/json", AUTH_OLD, body), 0);
	assert_int_equal(run_full(f, "POST", "application/json", "basic  b2xkOnB3 ", body), 0);
	assert_int_equal(run_full(f, "POST", "application/json", AUTH_BAD, body), DLRD_EAUTH);
	assert_int_equal(run_full(f, "POST", "application/json", "Basic b2xkOnB4", body),
	                 DLRD_EAUTH);
	assert_int_equal(run_full(f, "POST", "application/json", "Bearer b2xkOnB3", body),
	                 DLRD_EAUTH);
	assert_int_equal(run_full(f, "POST", "application/json", "Basic !!!", body), DLRD_EAUTH);
	assert_int_equal(run_full(f, "POST", "application/json", "Basic ", body), DLRD_EAUTH);
	assert_int_equal(run_full(f, "POST", "application/json", NULL, body), DLRD_EAUTH);
	assert_int_equal(run_full(f, "GET", "application/json", AUTH_OK, body), DLRD_EMETHOD);
	assert_int_equal(run_full(f, "POST", "text/plain", AUTH_OK, body), DLRD_EUNSUPP);
}

static void test_report_fields(void **state)
{
	struct fx *f = *state;
	char b[2048];
	assert_int_equal(run(f, report(b, sizeof(b), 3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", 0)),
	                 0);
	assert_int_equal(f->res.n_events, 1);
	const struct dlr_event *ev = &f->res.events[0];
	assert_int_equal(ev->kind, EV_STATUS);
	assert_string_equal(ev->provider, "infobip");
	assert_string_equal(ev->provider_message_id, "fb469d73-d362-463f-b30f-1e959b53badc");
	assert_null(ev->provider_event_id);
	assert_int_equal(ev->status, ST_DELIVERED);
	assert_string_equal(ev->raw_status, "DELIVERED_TO_HANDSET");
	assert_string_equal(ev->error_code, "0");
	/* 16:01:56.494-03:00 */
	assert_int_equal(ev->occurred_ms, 1554836516494LL);
	assert_string_equal(ev->destination_country, "CH");
	assert_non_null(ev->recipient_hash);
}

static void test_statuses(void **state)
{
	struct fx *f = *state;
	static const struct {
		int gid;
		const char *gname;
		int id;
		const char *name;
		enum dlr_status st;
		bool review;
	} cases[] = {
	    {1, "PENDING", 26, "PENDING_ACCEPTED", ST_ACCEPTED, false},
	    {1, "PENDING", 7, "PENDING_ENROUTE", ST_SENT, false},
	    {1, "PENDING", 3, "PENDING_WAITING_DELIVERY", ST_SENT, false},
	    {3, "DELIVERED", 2, "DELIVERED_TO_OPERATOR", ST_SENT, false},
	    {3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", ST_DELIVERED, false},
	    {2, "UNDELIVERABLE", 4, "UNDELIVERABLE_REJECTED_OPERATOR", ST_UNDELIVERED, false},
	    {2, "UNDELIVERABLE", 9, "UNDELIVERABLE_NOT_DELIVERED", ST_UNDELIVERED, false},
	    {4, "EXPIRED", 15, "EXPIRED_EXPIRED", ST_EXPIRED, false},
	    {4, "EXPIRED", 29, "EXPIRED_DLR_UNKNOWN", ST_UNKNOWN, false},
	    {5, "REJECTED", 6, "REJECTED_NETWORK", ST_REJECTED, false},
	    {5, "REJECTED", 87, "SIGNALS_BLOCKED", ST_REJECTED, false},
	    {1, "PENDING", 99, "PENDING_SOMETHING_NEW", ST_SENT, false},
	    {3, "DELIVERED", 99, "DELIVERED_SOMEWHERE", ST_UNKNOWN, true},
	    {9, "NEW_GROUP", 99, "BRAND_NEW", ST_UNKNOWN, true},
	};
	char b[2048];
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		assert_int_equal(run(f, report(b, sizeof(b), cases[i].gid, cases[i].gname,
		                               cases[i].id, cases[i].name, 0)),
		                 0);
		assert_int_equal(f->res.events[0].status, cases[i].st);
		assert_int_equal(f->res.events[0].review,
		                 cases[i].review ? REVIEW_UNKNOWN_STATUS : REVIEW_NONE);
		assert_string_equal(f->res.events[0].raw_status, cases[i].name);
	}
}

static void test_batch_and_errors(void **state)
{
	struct fx *f = *state;
	const char *body = "{\"results\":["
	                   "{\"messageId\":\"m1\",\"to\":\"41793026731\",\"doneAt\":\"2019-04-"
	                   "09T16:01:56.494+0000\","
	                   "\"status\":{\"groupId\":2,\"groupName\":\"UNDELIVERABLE\",\"id\":4,"
	                   "\"name\":\"UNDELIVERABLE_REJECTED_OPERATOR\"},"
	                   "\"error\":{\"groupId\":1,\"groupName\":\"HANDSET_ERRORS\",\"id\":1,"
	                   "\"name\":\"EC_UNKNOWN_SUBSCRIBER\",\"permanent\":true}},"
	                   "{\"messageId\":\"m2\",\"to\":\"41793026732\","
	                   "\"status\":{\"groupId\":3,\"groupName\":\"DELIVERED\",\"id\":5,"
	                   "\"name\":\"DELIVERED_TO_HANDSET\"}},"
	                   "7,"
	                   "{\"messageId\":\"m3\",\"from\":\"41793026733\",\"to\":\"447860099299\","
	                   "\"text\":\"stop\",\"cleanText\":\"\",\"keyword\":\"STOP\","
	                   "\"receivedAt\":\"2019-08-05T13:39:21.045+0000\",\"smsCount\":1}"
	                   "],\"messageCount\":3,\"pendingMessageCount\":0}";
	assert_int_equal(run(f, body), 0);
	assert_int_equal(f->res.n_events, 4);
	const struct dlr_event *e = f->res.events;
	assert_string_equal(e[0].provider_message_id, "m1");
	assert_string_equal(e[0].error_code, "1");
	assert_int_equal(e[0].occurred_ms, 1554825716494LL);
	assert_int_equal(e[1].status, ST_DELIVERED);
	assert_null(e[1].error_code);
	assert_int_equal(e[1].occurred_ms, -1);
	assert_int_equal(e[2].kind, EV_UNUSABLE);
	assert_int_equal(e[3].kind, EV_INBOUND);
	assert_string_equal(e[3].provider_message_id, "m3");
	assert_string_equal(e[3].text, "stop");
	assert_string_equal(e[3].sender_identity, "447860099299");
	assert_string_equal(e[3].destination_country, "CH");
	assert_int_equal(e[3].occurred_ms, 1565012361045LL);
	/* error ids map through the table with Infobip's permanent flag */
	const char *title = NULL;
	assert_int_equal(errcat_classify(provider_infobip.errors, "1", ST_UNDELIVERED, &title),
	                 ER_INVALID_NUMBER);
	assert_non_null(strstr(title, "permanent"));
	assert_int_equal(errcat_classify(provider_infobip.errors, "6", ST_UNDELIVERED, &title),
	                 ER_UNREACHABLE);
	assert_int_equal(errcat_classify(provider_infobip.errors, "0", ST_DELIVERED, &title),
	                 ER_NONE);
}

static void test_unusable(void **state)
{
	struct fx *f = *state;
	static const char *const bodies[] = {
	    "garbage",
	    "{\"results\":[]}",
	    "{\"results\":{}}",
	    "{\"results\":[{\"foo\":1}]}",
	    "{\"results\":[{\"status\":{\"groupId\":3}}]}",
	};
	for (size_t i = 0; i < ARRAY_LEN(bodies); i++) {
		assert_int_equal(run(f, bodies[i]), 0);
		assert_int_equal(f->res.n_events, 1);
		assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
	}
}

static void test_config(void **state)
{
	struct config cfg;
	void *st = (void *)1;
	char err[256];
	(void)state;
	unsetenv("DLRD_INFOBIP_BASIC_AUTH");
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(provider_infobip.init(&cfg, &st, err, sizeof(err)), 0);
	assert_null(st);
	config_fini(&cfg);
	setenv("DLRD_INFOBIP_BASIC_AUTH", "nocolon", 1);
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(provider_infobip.init(&cfg, &st, err, sizeof(err)), DLRD_ECONFIG);
	assert_null(strstr(err, "nocolon")); /* never echo a secret */
	config_fini(&cfg);
	unsetenv("DLRD_INFOBIP_BASIC_AUTH");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_report_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_statuses, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_and_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unusable, setup, teardown),
	    cmocka_unit_test(test_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
