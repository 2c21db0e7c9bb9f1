/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/providers/kannel.c (Kannel dlr-url callbacks, dlrd's
 * own query format) through its provider table entry: token checks (both
 * tokens, missing, wrong, repeated), every DLR type bit and combinations,
 * the SMPP stat:/err: fields of the answer, the NACK form, time parsing,
 * canonical ids, recipients with a "00" prefix, unusable callbacks, and the
 * token's value redacted from the stored raw payload.
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

#include "provider.h"
#include "provider_test.h"

extern const struct provider provider_kannel;

#define TOKEN1 "kannel-token-0123456789abcdef"
#define TOKEN2 "kannel-token-second-fedcba9876"

struct fx {
	struct config cfg;
	void *state;
	struct arena a;
	char block[8192];
	struct provider_request req;
	struct provider_result res;
	char err[256];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	setenv("DLRD_KANNEL_TOKENS", TOKEN1 "," TOKEN2, 1);
	if (pt_start(&provider_kannel, &f->cfg, &f->state, true, &f->a, f->block,
	             sizeof(f->block)) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	pt_stop(&provider_kannel, &f->cfg, f->state, &f->a);
	free(f);
	unsetenv("DLRD_KANNEL_TOKENS");
	return 0;
}

/* Runs authenticate (and parse when it passes) on a GET with query q. */
static int run(struct fx *f, const char *method, const char *q, int *parse_rc)
{
	pt_request(&f->req, &f->a,
	           &(struct pt_call){.method = method,
	                             .target = "/webhooks/kannel/status",
	                             .query = q,
	                             .now_ms = 1700000000000LL});
	return pt_run(&provider_kannel, f->state, &f->req, &f->res, f->err, sizeof(f->err),
	              parse_rc);
}

/* A signed-in DLR: returns the single event. */
static const struct dlr_event *dlr(struct fx *f, const char *rest)
{
	char q[2048];
	int prc;

	snprintf(q, sizeof(q), "token=%s&%s", TOKEN1, rest);
	assert_int_equal(run(f, "GET", q, &prc), 0);
	assert_int_equal(prc, 0);
	assert_int_equal(f->res.n_events, 1);
	return &f->res.events[0];
}

static void test_tokens(void **state)
{
	struct fx *f = *state;
	int prc;

	assert_int_equal(run(f, "GET", "token=" TOKEN1 "&type=1&id=abc", &prc), 0);
	assert_int_equal(run(f, "GET", "type=1&token=" TOKEN2 "&id=abc", &prc), 0);
	/* percent-encoded name and value are decoded first */
	assert_int_equal(run(f, "GET", "%74oken=kannel-token-0123456789abcde%66&type=1&id=a", &prc),
	                 0);
	assert_int_equal(run(f, "GET", "type=1&id=abc", &prc), DLRD_EAUTH);
	assert_string_equal(f->err, "missing token");
	assert_int_equal(run(f, "GET", "token=&type=1&id=abc", &prc), DLRD_EAUTH);
	assert_int_equal(run(f, "GET", "token=kannel-token-0123456789abcdeF&type=1&id=abc", &prc),
	                 DLRD_EAUTH);
	assert_string_equal(f->err, "token mismatch");
	assert_int_equal(run(f, "GET", "token=" TOKEN1 "x&type=1&id=abc", &prc), DLRD_EAUTH);
	assert_int_equal(run(f, "GET", "token=kannel&type=1&id=abc", &prc), DLRD_EAUTH);
	/* a second token, even a wrong one after the right one */
	assert_int_equal(run(f, "GET", "token=" TOKEN1 "&token=x&type=1&id=abc", &prc), DLRD_EAUTH);
	assert_string_equal(f->err, "token given more than once");
	/* POST is not Kannel's dlr-url */
	assert_int_equal(run(f, "POST", "token=" TOKEN1 "&type=1&id=abc", &prc), DLRD_EMETHOD);
	/* a query that does not decode */
	assert_int_equal(run(f, "GET", "token=" TOKEN1 "&type=1&id=%F", &prc), DLRD_EINVAL);
	/* the secret never appears in an error */
	assert_null(strstr(f->err, TOKEN1));
}

static void test_config(void **state)
{
	struct config cfg;
	void *st = (void *)1;
	char err[256];

	(void)state;
	unsetenv("DLRD_KANNEL_TOKENS");
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(provider_kannel.init(&cfg, &st, err, sizeof(err)), 0);
	assert_null(st); /* not configured: 404 */
	config_fini(&cfg);
	setenv("DLRD_KANNEL_TOKENS", TOKEN1 ",short-token", 1);
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(provider_kannel.init(&cfg, &st, err, sizeof(err)), DLRD_ECONFIG);
	assert_string_equal(err, "config: kannel.tokens: item 2 is shorter than 16");
	config_fini(&cfg);
	unsetenv("DLRD_KANNEL_TOKENS");
}

static void test_types(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *type;
		enum dlr_status st;
		bool review;
	} cases[] = {
	    {"1", ST_DELIVERED, false},
	    {"2", ST_UNDELIVERED, false},
	    {"4", ST_SENT, false},
	    {"8", ST_SENT, false},
	    {"16", ST_REJECTED, false},
	    {"3", ST_UNDELIVERED, false}, /* 2 beats 1 */
	    {"9", ST_DELIVERED, false},
	    {"12", ST_SENT, false},
	    {"17", ST_REJECTED, false},
	    {"18", ST_REJECTED, false},
	    {"31", ST_REJECTED, false},
	    {"0", ST_UNKNOWN, true},
	    /* Kannel's DLR_EXPIRED (0x20|DLR_FAIL) and DLR_UNKNOWN (0x40|DLR_FAIL),
	     * gw/dlr.h: what smsc_smpp.c reports for message_state EXPIRED */
	    {"34", ST_EXPIRED, false},
	    {"66", ST_UNKNOWN, false},
	    /* 0x20 or 0x40 without the failure bit, both, or higher: not Kannel's */
	    {"32", ST_UNKNOWN, true},
	    {"64", ST_UNKNOWN, true},
	    {"98", ST_UNKNOWN, true},
	    {"128", ST_UNKNOWN, true},
	};
	char q[128];

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		snprintf(q, sizeof(q), "type=%s&id=msg1", cases[i].type);
		const struct dlr_event *ev = dlr(f, q);
		assert_int_equal(ev->kind, EV_STATUS);
		assert_int_equal(ev->status, cases[i].st);
		assert_string_equal(ev->raw_status, cases[i].type);
		assert_int_equal(ev->review, cases[i].review ? REVIEW_UNKNOWN_STATUS : REVIEW_NONE);
		assert_string_equal(ev->provider, "kannel");
		assert_null(ev->provider_event_id);
	}
}

static void test_answer(void **state)
{
	struct fx *f = *state;
	const struct dlr_event *ev;

	/* the SMPP receipt of a delivered message: err:000 is no error */
	ev = dlr(f, "type=1&id=msg1&answer=id%3A0A1B2C+sub%3A001+dlvrd%3A001+submit+date%3A"
	            "2401011200+done+date%3A2401011201+stat%3ADELIVRD+err%3A000+text%3AHello");
	assert_int_equal(ev->status, ST_DELIVERED);
	assert_null(ev->error_code);
	/* undeliverable with a code */
	ev = dlr(f, "type=2&id=msg1&answer=id%3A1+stat%3AUNDELIV+err%3A034+text%3A");
	assert_int_equal(ev->status, ST_UNDELIVERED);
	assert_string_equal(ev->error_code, "034");
	/* stat refines type 2 */
	ev = dlr(f, "type=2&id=msg1&answer=id%3A1+stat%3AEXPIRED+err%3A000");
	assert_int_equal(ev->status, ST_EXPIRED);
	ev = dlr(f, "type=2&id=msg1&answer=id%3A1+Stat%3Arejectd+Err%3A00B");
	assert_int_equal(ev->status, ST_REJECTED);
	assert_string_equal(ev->error_code, "00B");
	ev = dlr(f, "type=2&id=msg1&answer=id%3A1+stat%3AUNKNOWN+err%3A001");
	assert_int_equal(ev->status, ST_UNKNOWN);
	assert_int_equal(ev->review, REVIEW_NONE);
	/* but never overrides another type */
	ev = dlr(f, "type=1&id=msg1&answer=stat%3AUNDELIV+err%3A034");
	assert_int_equal(ev->status, ST_DELIVERED);
	/* err: and stat: inside the message text are not receipt fields */
	ev = dlr(f, "type=2&id=msg1&answer=id%3A1+stat%3AUNDELIV+text%3Aerr%3A999+stat%3AEXPIRED");
	assert_int_equal(ev->status, ST_UNDELIVERED);
	assert_null(ev->error_code);
	/* "xerr:" is not "err:"; a value with punctuation is not a code */
	ev = dlr(f, "type=2&id=msg1&answer=xerr%3A12+err%3A1%2F2");
	assert_null(ev->error_code);
	/* an SMSC rejection in Kannel's NACK form */
	ev = dlr(f, "type=16&id=msg1&answer=NACK%2F0x00000045%2FSubmit+failed");
	assert_int_equal(ev->status, ST_REJECTED);
	assert_string_equal(ev->error_code, "0x00000045");
	/* the answer of an SMSC success is just an ACK */
	ev = dlr(f, "type=8&id=msg1&answer=ACK%2F");
	assert_int_equal(ev->status, ST_SENT);
	assert_null(ev->error_code);
}

/* The answer is the SMSC's receipt text, whose "text:" part quotes the
 * message in the SMSC's own encoding: GSM 7-bit '@' is the byte 0, and
 * Latin-1 letters are not UTF-8.  Such a DLR is kept (before, 400 and the
 * DLR lost: a retried fetch is refused alike). */
static void test_answer_raw_bytes(void **state)
{
	struct fx *f = *state;
	const struct dlr_event *ev;
	char q[512];
	int prc;

	ev = dlr(f,
	         "type=2&id=msg1&answer=id%3A1+stat%3AREJECTD+err%3A00B+text%3Ame%00home+%E9t%E9");
	assert_int_equal(ev->kind, EV_STATUS);
	assert_int_equal(ev->status, ST_REJECTED);
	assert_string_equal(ev->error_code, "00B");
	ev = dlr(f, "type=1&id=msg1&answer=%00%FF+stat%3ADELIVRD+err%3A000+text%3A%C3");
	assert_int_equal(ev->status, ST_DELIVERED);
	assert_null(ev->error_code);
	/* the raw payload keeps the query as sent, token redacted */
	assert_memory_equal(f->res.raw_payload.p, "token=REDACTED&type=1&id=msg1&answer=%00%FF",
	                    strlen("token=REDACTED&type=1&id=msg1&answer=%00%FF"));
	/* an encoded name is still the answer; a later one is not read */
	ev = dlr(f, "type=2&id=msg1&%61nswer=stat%3AEXPIRED+%00&answer=stat%3AREJECTD");
	assert_int_equal(ev->status, ST_EXPIRED);
	/* the other fields stay strict, and a malformed escape in the
	 * answer is still malformed */
	snprintf(q, sizeof(q), "token=%s&type=1&id=a%%FF&answer=ok", TOKEN1);
	assert_int_equal(run(f, "GET", q, &prc), DLRD_EINVAL);
	snprintf(q, sizeof(q), "token=%s&type=1&id=a&to=%%00&answer=ok", TOKEN1);
	assert_int_equal(run(f, "GET", q, &prc), DLRD_EINVAL);
	snprintf(q, sizeof(q), "token=%s&type=1&id=a&answer=%%G0", TOKEN1);
	assert_int_equal(run(f, "GET", q, &prc), DLRD_EINVAL);
	/* and the token is still required */
	assert_int_equal(run(f, "GET", "type=1&id=a&answer=%00", &prc), DLRD_EAUTH);
}

static void test_fields(void **state)
{
	struct fx *f = *state;
	const struct dlr_event *ev;
	char key[65];

	ev = dlr(f, "type=1&smsc=smpp1&id=0A1B2C&to=00447700900123&from=ACME&ts=1700000123"
	            "&answer=&myref=order-77");
	assert_string_equal(ev->provider_message_id, "0a1b2c");
	assert_int_equal(ev->occurred_ms, 1700000123000LL);
	assert_non_null(ev->recipient_hash);
	assert_string_equal(ev->destination_country, "GB");
	assert_string_equal(ev->sender_identity, "ACME");
	snprintf(key, sizeof(key), "%s", ev->dedup_key);
	/* a plus-encoded '+' is a space; %2B is the plus */
	ev = dlr(f, "type=1&id=0a1b2c&to=%2B14155550123&ts=1700000123");
	assert_string_equal(ev->destination_country, "US");
	/* same id (canonically), type, err and ts: the same event */
	assert_string_equal(ev->dedup_key, key);
	ev = dlr(f, "type=1&id=0a1b2c&ts=1700000124");
	assert_string_not_equal(ev->dedup_key, key);
	/* other ids are kept as sent */
	ev = dlr(f, "type=1&id=Order-77%2Fb");
	assert_string_equal(ev->provider_message_id, "Order-77/b");
	ev = dlr(f, "type=1&id=3F2504E0-4F89-11D3-9A0C-0305E82C3301");
	assert_string_equal(ev->provider_message_id, "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
	/* ts: absent, not a number, zero or past year 9999 is no time */
	ev = dlr(f, "type=1&id=a");
	assert_int_equal(ev->occurred_ms, -1);
	ev = dlr(f, "type=1&id=a&ts=%25T");
	assert_int_equal(ev->occurred_ms, -1);
	ev = dlr(f, "type=1&id=a&ts=0");
	assert_int_equal(ev->occurred_ms, -1);
	ev = dlr(f, "type=1&id=a&ts=253402300800");
	assert_int_equal(ev->occurred_ms, -1);
	/* an alphanumeric "to" is no recipient */
	ev = dlr(f, "type=1&id=a&to=INFO");
	assert_null(ev->recipient_hash);
}

static void test_unusable(void **state)
{
	struct fx *f = *state;
	const struct dlr_event *ev;

	ev = dlr(f, "type=1");
	assert_int_equal(ev->kind, EV_UNUSABLE);
	assert_int_equal(ev->review, REVIEW_UNUSABLE);
	assert_string_equal(ev->review_detail, "no usable id (Kannel %F)");
	ev = dlr(f, "id=abc");
	assert_int_equal(ev->kind, EV_UNUSABLE);
	assert_string_equal(ev->review_detail, "no usable type (Kannel %d)");
	ev = dlr(f, "type=delivered&id=abc");
	assert_int_equal(ev->kind, EV_UNUSABLE);
	ev = dlr(f, "type=-1&id=abc");
	assert_int_equal(ev->kind, EV_UNUSABLE);
	ev = dlr(f, "type=1&id=a%0Ab");
	assert_int_equal(ev->kind, EV_UNUSABLE);
}

static void test_redaction(void **state)
{
	struct fx *f = *state;
	int prc;

	assert_int_equal(run(f, "GET", "type=1&token=" TOKEN1 "&id=abc&answer=a+b&&x", &prc), 0);
	assert_int_equal(prc, 0);
	assert_int_equal(f->res.raw_payload.n,
	                 strlen("type=1&token=REDACTED&id=abc&answer=a+b&&x"));
	assert_memory_equal(f->res.raw_payload.p, "type=1&token=REDACTED&id=abc&answer=a+b&&x",
	                    f->res.raw_payload.n);
	/* an encoded name is still the token; the encoded name is kept */
	assert_int_equal(run(f, "GET", "%74oken=" TOKEN2 "&type=1&id=abc&", &prc), 0);
	assert_memory_equal(f->res.raw_payload.p, "%74oken=REDACTED&type=1&id=abc&",
	                    f->res.raw_payload.n);
	assert_int_equal(f->res.raw_payload.n, strlen("%74oken=REDACTED&type=1&id=abc&"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
	    cmocka_unit_test(test_config),
	    cmocka_unit_test_setup_teardown(test_types, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_answer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_answer_raw_bytes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unusable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_redaction, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
