/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/providers/twilio.c through its provider table entry.
 * Status callbacks: every MessageStatus of the map, with its final state and
 * read flag, the raw status and ErrorCode kept, an unknown status and a
 * payload without a message id.  Inbound messages: form POST and GET
 * webhooks (GET is signed over the URL alone), the empty TwiML answer, the
 * fields of an inbound event, routing by payload when a webhook is pointed
 * at the other URL, and signatures that must fail.  (Signature vectors are
 * in test_sig.c; storing and precedence in the integration tests.)
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

#include "dlrd_limits.h"
#include "form.h"
#include "provider.h"
#include "provider_test.h"
#include "sig.h"

extern const struct provider provider_twilio;

#define TOKEN  "unit-twilio-token-0123456789"
#define PUBLIC "https://sms.example.com"
#define SID    "SM0123456789abcdef0123456789abcdef"
#define TWIML  "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>"

/* An inbound webhook as Twilio documents its fields. */
#define INBOUND_BODY                                                                               \
	"ToCountry=US&ToState=CA&SmsMessageSid=" SID "&NumMedia=0&ToCity=&FromZip=&SmsSid=" SID    \
	"&FromState=&SmsStatus=received&FromCity=&Body=Stop+please%0A&FromCountry=GB&To=%2B1500"   \
	"5550006&ToZip=&NumSegments=1&MessageSid=" SID "&AccountSid=AC0123456789abcdef0123456789"  \
	"abcdef&From=%2B447700900123&ApiVersion=2010-04-01"

struct fx {
	struct config cfg;
	void *state;
	struct arena a;
	char block[16384];
	char sig[29];
	struct pt_headers hdr;
	struct provider_request req;
	struct provider_result res;
	char err[256];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	setenv("DLRD_TWILIO_AUTH_TOKENS", TOKEN, 1);
	if (pt_start(&provider_twilio, &f->cfg, &f->state, true, &f->a, f->block,
	             sizeof(f->block)) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	pt_stop(&provider_twilio, &f->cfg, f->state, &f->a);
	free(f);
	unsetenv("DLRD_TWILIO_AUTH_TOKENS");
	return 0;
}

/* Twilio's signature for PUBLIC + target with the form params (NULL for
 * GET). */
static void sign(struct fx *f, const char *target, const char *form_body)
{
	char url[1024];
	struct form form, *fp = NULL;
	struct arena a;
	char block[8192], err[128];

	arena_init(&a, block, sizeof(block));
	if (form_body) {
		assert_int_equal(form_decode(&a, form_body, strlen(form_body), LIM_FORM_FIELDS,
		                             &form, err, sizeof(err)),
		                 0);
		fp = &form;
	}
	snprintf(url, sizeof(url), "%s%s", PUBLIC, target);
	sig_twilio_sign(TOKEN, (struct iov){url, strlen(url)}, fp, f->sig);
	arena_fini(&a);
}

/* Runs authenticate and parse.  target: "/webhooks/twilio/inbound?...". */
static int run(struct fx *f, const char *method, enum webhook_kind kind, const char *target,
               const char *body, int *parse_rc)
{
	pt_headers_reset(&f->hdr);
	if (f->sig[0])
		pt_header_add(&f->hdr, "X-Twilio-Signature", f->sig);
	pt_request(&f->req, &f->a,
	           &(struct pt_call){.method = method,
	                             .kind = kind,
	                             .target = target,
	                             .ctype = strcmp(method, "POST") == 0
	                                          ? "application/x-www-form-urlencoded"
	                                          : "",
	                             .body = body,
	                             .public_url = PUBLIC,
	                             .now_ms = 1700000000000LL,
	                             .headers = &f->hdr});
	return pt_run(&provider_twilio, f->state, &f->req, &f->res, f->err, sizeof(f->err),
	              parse_rc);
}

static void expect_inbound(struct fx *f)
{
	assert_int_equal(f->res.n_events, 1);
	const struct dlr_event *ev = &f->res.events[0];
	assert_int_equal(ev->kind, EV_INBOUND);
	assert_string_equal(ev->provider, "twilio");
	assert_string_equal(ev->provider_message_id, SID);
	assert_null(ev->provider_event_id);
	assert_non_null(ev->recipient_hash);
	assert_string_equal(ev->destination_country, "GB");
	assert_string_equal(ev->sender_identity, "+15005550006");
	assert_int_equal(ev->text_len, strlen("Stop please\n"));
	assert_string_equal(ev->text, "Stop please\n");
	assert_int_equal(ev->occurred_ms, -1);
	assert_string_equal(f->res.content_type, "text/xml");
	assert_string_equal(f->res.body, TWIML);
}

/* A status callback as Twilio sends it, for status st (and error code
 * ec when not NULL). */
static void status_body(char *buf, size_t cap, const char *st, const char *ec)
{
	snprintf(buf, cap,
	         "SmsSid=" SID "&SmsStatus=%s&MessageStatus=%s&To=%%2B447700900123"
	         "&MessageSid=" SID "&AccountSid=AC0123456789abcdef0123456789abcdef"
	         "&From=%%2B15005550006&ApiVersion=2010-04-01%s%s",
	         st, st, ec ? "&ErrorCode=" : "", ec ? ec : "");
}

static void test_status_map(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *raw;
		enum dlr_status st;
		bool final, read;
	} cases[] = {
	    {"accepted", ST_ACCEPTED, false, false},
	    {"scheduled", ST_ACCEPTED, false, false},
	    {"queued", ST_ACCEPTED, false, false},
	    {"sending", ST_ACCEPTED, false, false},
	    {"sent", ST_SENT, false, false},
	    {"delivered", ST_DELIVERED, true, false},
	    {"undelivered", ST_UNDELIVERED, true, false},
	    {"failed", ST_FAILED, true, false},
	    {"read", ST_DELIVERED, true, true},
	    {"canceled", ST_FAILED, true, false},
	    {"partially_delivered", ST_UNKNOWN, true, false}, /* final, not definitive */
	};
	char body[1024];
	int prc;

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		status_body(body, sizeof(body), cases[i].raw, NULL);
		sign(f, "/webhooks/twilio/status", body);
		assert_int_equal(run(f, "POST", HOOK_STATUS, "/webhooks/twilio/status", body, &prc),
		                 0);
		assert_int_equal(prc, 0);
		assert_int_equal(f->res.n_events, 1);
		const struct dlr_event *ev = &f->res.events[0];
		assert_int_equal(ev->kind, EV_STATUS);
		assert_int_equal(ev->status, cases[i].st);
		assert_int_equal(status_is_final(ev->status), cases[i].final);
		assert_int_equal(ev->read, cases[i].read);
		assert_string_equal(ev->raw_status, cases[i].raw);
		assert_string_equal(ev->provider_message_id, SID);
		assert_null(ev->error_code);
		assert_int_equal(ev->review, REVIEW_NONE);
		/* canceled is a failure on purpose; other reasons come later
		 * from the catalogue (http.c) */
		assert_int_equal(ev->error_reason,
		                 strcmp(cases[i].raw, "canceled") == 0 ? ER_CANCELED : ER_NONE);
		assert_string_equal(ev->destination_country, "GB");
		assert_string_equal(ev->sender_identity, "+15005550006");
		assert_non_null(ev->recipient_hash);
	}

	/* ErrorCode is kept as the provider's own text */
	status_body(body, sizeof(body), "undelivered", "30003");
	sign(f, "/webhooks/twilio/status", body);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "/webhooks/twilio/status", body, &prc), 0);
	assert_string_equal(f->res.events[0].error_code, "30003");

	/* a status dlrd does not know: unknown, raw kept, to review */
	status_body(body, sizeof(body), "teleported", NULL);
	sign(f, "/webhooks/twilio/status", body);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "/webhooks/twilio/status", body, &prc), 0);
	assert_int_equal(f->res.events[0].status, ST_UNKNOWN);
	assert_string_equal(f->res.events[0].raw_status, "teleported");
	assert_int_equal(f->res.events[0].review, REVIEW_UNKNOWN_STATUS);

	/* signed, but no message id: one unusable event for the review queue */
	static const char no_id[] =
	    "MessageStatus=delivered&AccountSid=AC0123456789abcdef0123456789"
	    "abcdef&ApiVersion=2010-04-01";
	sign(f, "/webhooks/twilio/status", no_id);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "/webhooks/twilio/status", no_id, &prc), 0);
	assert_int_equal(f->res.n_events, 1);
	assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
	assert_int_equal(f->res.events[0].review, REVIEW_UNUSABLE);
}

static void test_post(void **state)
{
	struct fx *f = *state;
	int prc;

	sign(f, "/webhooks/twilio/inbound", INBOUND_BODY);
	assert_int_equal(
	    run(f, "POST", HOOK_INBOUND, "/webhooks/twilio/inbound", INBOUND_BODY, &prc), 0);
	assert_int_equal(prc, 0);
	expect_inbound(f);
}

static void test_get(void **state)
{
	struct fx *f = *state;
	static const char target[] = "/webhooks/twilio/inbound?" INBOUND_BODY;
	int prc;
	char dedup[65];

	/* GET: the whole URL is signed, with no POST parameters */
	sign(f, target, NULL);
	assert_int_equal(run(f, "GET", HOOK_INBOUND, target, "", &prc), 0);
	assert_int_equal(prc, 0);
	expect_inbound(f);
	snprintf(dedup, sizeof(dedup), "%s", f->res.events[0].dedup_key);
	/* the same message by POST deduplicates with it (MessageSid) */
	sign(f, "/webhooks/twilio/inbound", INBOUND_BODY);
	assert_int_equal(
	    run(f, "POST", HOOK_INBOUND, "/webhooks/twilio/inbound", INBOUND_BODY, &prc), 0);
	assert_string_equal(f->res.events[0].dedup_key, dedup);
	/* a GET signed as if the query were POST parameters fails */
	sign(f, "/webhooks/twilio/inbound", INBOUND_BODY);
	assert_int_equal(run(f, "GET", HOOK_INBOUND, target, "", &prc), DLRD_EAUTH);
	/* so does a changed query */
	sign(f, target, NULL);
	assert_int_equal(run(f, "GET", HOOK_INBOUND,
	                     "/webhooks/twilio/inbound?" INBOUND_BODY "&Extra=1", "", &prc),
	                 DLRD_EAUTH);
	/* and no signature */
	f->sig[0] = '\0';
	assert_int_equal(run(f, "GET", HOOK_INBOUND, target, "", &prc), DLRD_EAUTH);
	/* GET stays 405 on the status URL, PUT on both */
	sign(f, target, NULL);
	assert_int_equal(run(f, "GET", HOOK_STATUS, "/webhooks/twilio/status?a=b", "", &prc),
	                 DLRD_EMETHOD);
	assert_int_equal(run(f, "PUT", HOOK_INBOUND, "/webhooks/twilio/inbound", "", &prc),
	                 DLRD_EMETHOD);
}

static void test_forged_post(void **state)
{
	struct fx *f = *state;
	int prc;

	sign(f, "/webhooks/twilio/inbound", INBOUND_BODY);
	assert_int_equal(run(f, "POST", HOOK_INBOUND, "/webhooks/twilio/inbound",
	                     INBOUND_BODY "&Body=changed", &prc),
	                 DLRD_EAUTH);
	/* signed for the status URL, posted to the inbound URL */
	sign(f, "/webhooks/twilio/status", INBOUND_BODY);
	assert_int_equal(
	    run(f, "POST", HOOK_INBOUND, "/webhooks/twilio/inbound", INBOUND_BODY, &prc),
	    DLRD_EAUTH);
}

/* Inbound posted to the status URL is still inbound, with TwiML. */
static void test_inbound_on_status_url(void **state)
{
	struct fx *f = *state;
	int prc;

	sign(f, "/webhooks/twilio/status", INBOUND_BODY);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "/webhooks/twilio/status", INBOUND_BODY, &prc),
	                 0);
	assert_int_equal(prc, 0);
	expect_inbound(f);
	/* a Body and no status at all: inbound too */
	static const char b2[] = "MessageSid=" SID "&From=%2B447700900123&To=12345&Body=hi";
	sign(f, "/webhooks/twilio/status", b2);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "/webhooks/twilio/status", b2, &prc), 0);
	assert_int_equal(f->res.events[0].kind, EV_INBOUND);
	assert_string_equal(f->res.events[0].text, "hi");
	/* no FromCountry: the number decides */
	assert_string_equal(f->res.events[0].destination_country, "GB");
}

/* A status callback posted to the inbound URL is still a status. */
static void test_status_on_inbound_url(void **state)
{
	struct fx *f = *state;
	static const char body[] = "MessageSid=" SID "&MessageStatus=delivered&SmsStatus=delivered"
	                           "&To=%2B14155550123&From=%2B15005550006";
	int prc;

	sign(f, "/webhooks/twilio/inbound", body);
	assert_int_equal(run(f, "POST", HOOK_INBOUND, "/webhooks/twilio/inbound", body, &prc), 0);
	assert_int_equal(prc, 0);
	assert_int_equal(f->res.n_events, 1);
	assert_int_equal(f->res.events[0].kind, EV_STATUS);
	assert_int_equal(f->res.events[0].status, ST_DELIVERED);
	assert_null(f->res.body); /* the default answer, not TwiML */
	/* even with a Body, an outbound status wins */
	static const char b2[] = "MessageSid=" SID "&MessageStatus=sent&Body=x";
	sign(f, "/webhooks/twilio/inbound", b2);
	assert_int_equal(run(f, "POST", HOOK_INBOUND, "/webhooks/twilio/inbound", b2, &prc), 0);
	assert_int_equal(f->res.events[0].kind, EV_STATUS);
	assert_int_equal(f->res.events[0].status, ST_SENT);
}

static void test_unusable_and_edge_fields(void **state)
{
	struct fx *f = *state;
	int prc;

	/* no MessageSid: a review row, still answered with TwiML */
	static const char b1[] = "SmsStatus=received&From=%2B447700900123&Body=x";
	sign(f, "/webhooks/twilio/inbound", b1);
	assert_int_equal(run(f, "POST", HOOK_INBOUND, "/webhooks/twilio/inbound", b1, &prc), 0);
	assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
	assert_int_equal(f->res.events[0].review, REVIEW_UNUSABLE);
	assert_string_equal(f->res.body, TWIML);
	/* SmsMessageSid alone is enough; upper-case hex is canonicalized;
	 * a bad FromCountry is ignored; an empty Body (media only) is a message */
	static const char b2[] =
	    "SmsMessageSid=MM0123456789ABCDEF0123456789ABCDEF&SmsStatus=received"
	    "&From=%2B14155550123&FromCountry=gb&Body=&NumMedia=1";
	sign(f, "/webhooks/twilio/inbound", b2);
	assert_int_equal(run(f, "POST", HOOK_INBOUND, "/webhooks/twilio/inbound", b2, &prc), 0);
	const struct dlr_event *ev = &f->res.events[0];
	assert_int_equal(ev->kind, EV_INBOUND);
	assert_string_equal(ev->provider_message_id, "MM0123456789abcdef0123456789abcdef");
	assert_string_equal(ev->destination_country, "US");
	assert_int_equal(ev->text_len, 0);
	assert_string_equal(ev->text, "");
	assert_null(ev->sender_identity);
}

/* Advanced Opt-Out (a Messaging Service with custom keywords, e.g. Spanish
 * "ALTO"/"AYUDA" or a removed default): Twilio tells which keyword list the
 * whole body matched in OptOutType (STOP, START or HELP), and blocks or
 * unblocks the user on its side whatever dlrd's own list says.  Source:
 * Twilio support article 31560110671259 "How to Track Opt-Out, Opt-In and
 * Help Messages Using the OptOutType Parameter" (the parameter is sent on
 * the incoming message webhook when Advanced Opt-Out is enabled).  Before,
 * a custom opt-out word was stored as a plain message and the user stayed
 * opted in at dlrd while Twilio refused every send (21610). */
static void test_opt_out_type(void **state)
{
	struct fx *f = *state;
	int prc;
	static const struct {
		const char *body, *type;
		enum optout_kind kw;
	} cases[] = {
	    {"ALTO", "STOP", KW_OPT_OUT},  {"ALTA", "START", KW_OPT_IN}, {"AYUDA", "HELP", KW_HELP},
	    {"ARRET", "stop", KW_OPT_OUT}, {"Hola", NULL, KW_NONE},      {"Hola", "", KW_NONE},
	    {"Hola", "MAYBE", KW_NONE},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char body[1024];
		snprintf(body, sizeof(body),
		         "ToCountry=US&SmsMessageSid=" SID "&NumMedia=0&SmsSid=" SID
		         "&SmsStatus=received&Body=%s&FromCountry=US&To=%%2B15005550006"
		         "&MessagingServiceSid=MG0123456789abcdef0123456789abcdef"
		         "&NumSegments=1%s%s&MessageSid=" SID
		         "&AccountSid=AC0123456789abcdef0123456789abcdef"
		         "&From=%%2B14155550123&ApiVersion=2010-04-01",
		         cases[i].body, cases[i].type ? "&OptOutType=" : "",
		         cases[i].type ? cases[i].type : "");
		sign(f, "/webhooks/twilio/inbound", body);
		assert_int_equal(
		    run(f, "POST", HOOK_INBOUND, "/webhooks/twilio/inbound", body, &prc), 0);
		assert_int_equal(prc, 0);
		assert_int_equal(f->res.n_events, 1);
		assert_int_equal(f->res.events[0].kind, EV_INBOUND);
		assert_string_equal(f->res.events[0].text, cases[i].body);
		assert_int_equal(f->res.events[0].keyword, cases[i].kw);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_status_map, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_post, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_forged_post, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound_on_status_url, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_status_on_inbound_url, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unusable_and_edge_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_opt_out_type, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
