/* SPDX-License-Identifier: MIT */
/*
 * Integration: Twilio inbound-message webhooks against the real daemon.  A
 * signed form POST to /webhooks/twilio/inbound stores exactly one inbound
 * row and is answered with empty TwiML as text/xml; the same message by GET
 * (signed over the whole URL) is a duplicate of it; a STOP opts the user
 * out for our number; forged and unsigned webhooks are 401 and write
 * nothing; an inbound message posted to the status URL, and a status
 * callback posted to the inbound URL, land where they belong.
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

#define INBOUND "/webhooks/twilio/inbound"
#define SID     "SM1f0c2d3e4a5b69788796a5b4c3d2e1f0"
#define TWIML   "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>"
#define BODY(text)                                                                                 \
	"ToCountry=US&ToState=CA&SmsMessageSid=" SID "&NumMedia=0&ToCity=&FromZip=&SmsSid=" SID    \
	"&FromState=&SmsStatus=received&FromCity=&Body=" text "&FromCountry=GB&To=%2B15005550006"  \
	"&ToZip=&NumSegments=1&MessageSid=" SID "&AccountSid=AC0123456789abcdef0123456789abcdef"   \
	"&From=%2B447700900123&ApiVersion=2010-04-01"

static int setup(void **state)
{
	return h_fixture_start(state, NULL);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

/* GETs target signed the way Twilio signs a GET webhook: the whole URL, no
 * POST parameters. */
static long get_signed(const struct dlrd *d, const char *target, const char *token,
                       struct h_resp *r)
{
	char url[8192], sig[29], hdr[64];
	const char *hdrs[] = {hdr, NULL};

	snprintf(url, sizeof(url), "%s%s", H_PUBLIC_URL, target);
	assert_int_equal(h_twilio_sign(token, url, "", 0, sig), 0);
	snprintf(hdr, sizeof(hdr), "X-Twilio-Signature: %s", sig);
	h_request(d, "GET", target, hdrs, NULL, 0, r);
	return r->status;
}

static void test_post_get_and_stop(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[1024];

	assert_int_equal(h_post_twilio(d, INBOUND, H_TOKEN1, BODY("Stop"), NULL, &r), 200);
	assert_string_equal(r.content_type, "text/xml");
	assert_string_equal(r.body, TWIML);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider||'|'||provider_message_id||'|'||"
	              "sender_country||'|'||to_identity||'|'||body||'|'||keyword||'|'||"
	              "coalesce(provider_occurred_at,'-')||'|'||length(sender_hash)||'|'||"
	              "retry_count FROM sms_inbound_messages"),
	    "twilio|" SID "|GB|+15005550006|Stop|opt_out|-|64|0");
	assert_int_equal(h_count(d, "sms_inbound_messages"), 1);
	assert_string_equal(
	    h_payload_str(d, buf, sizeof(buf), "SELECT raw_payload FROM sms_inbound_messages"),
	    BODY("Stop"));
	/* the state is kept under the sender's canonical key */
	assert_int_equal(h_sql_int(d, "SELECT opted_out FROM sms_opt_outs "
	                              "WHERE sender_identity = '15005550006'"),
	                 1);
	/* no delivery status was written */
	assert_int_equal(h_count(d, "sms_messages"), 0);
	assert_int_equal(h_count(d, "sms_message_events"), 0);

	/* the same message again, by GET: a duplicate */
	assert_int_equal(get_signed(d, INBOUND "?" BODY("Stop"), H_TOKEN2, &r), 200);
	assert_string_equal(r.body, TWIML);
	assert_int_equal(h_count(d, "sms_inbound_messages"), 1);
	assert_int_equal(h_sql_int(d, "SELECT retry_count FROM sms_inbound_messages"), 1);
}

/* A STOP with Unicode spaces after it (here 14 no-break spaces, which some
 * keyboards and gateways leave) is an opt-out, and its state and history
 * record the keyword as "STOP": only its letters, never a cut UTF-8
 * sequence, which PostgreSQL refuses as text (the whole batch then failed
 * with 503, again at every retry of the message). */
#define NBSP14                                                                                     \
	"%C2%A0%C2%A0%C2%A0%C2%A0%C2%A0%C2%A0%C2%A0%C2%A0%C2%A0%C2%A0%C2%A0%C2%A0%C2%A0%C2%A0"
static void test_stop_with_unicode_spaces(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[256];

	assert_int_equal(h_post_twilio(d, INBOUND, H_TOKEN1, BODY("Stop" NBSP14), NULL, &r), 200);
	assert_string_equal(r.body, TWIML);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT keyword FROM sms_inbound_messages"), "opt_out");
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT opted_out||'|'||keyword FROM sms_opt_outs"),
	    "1|STOP");
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT action||'|'||keyword FROM sms_opt_out_history"),
	    "opt_out|STOP");
}

static void test_get_raw_payload(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[512];

	assert_int_equal(get_signed(d, INBOUND "?" BODY("Hello+there"), H_TOKEN1, &r), 200);
	assert_string_equal(r.content_type, "text/xml");
	/* a GET's raw payload is its query string, byte for byte */
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_inbound_messages "
	                              "WHERE body = 'Hello there' AND keyword = 'none'"),
	                 1);
	assert_string_equal(h_payload_str(d, buf, sizeof(buf),
	                                  "SELECT raw_payload FROM sms_inbound_messages "
	                                  "WHERE body = 'Hello there' AND keyword = 'none'"),
	                    BODY("Hello+there"));
	assert_int_equal(h_count(d, "sms_opt_outs"), 0);
}

static void test_forged_write_nothing(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char sig[29], hdr[64], url[4096];
	const char *hdrs[] = {hdr, NULL};

	/* a token dlrd does not have */
	assert_int_equal(h_post_twilio(d, INBOUND, "not-a-configured-token", BODY("Hi"), NULL, &r),
	                 401);
	/* unsigned */
	assert_int_equal(h_post_twilio(d, INBOUND, NULL, BODY("Hi"), NULL, &r), 401);
	/* a GET signed as if its query were POST parameters */
	snprintf(url, sizeof(url), "%s%s", H_PUBLIC_URL, INBOUND);
	assert_int_equal(h_twilio_sign(H_TOKEN1, url, BODY("Hi"), strlen(BODY("Hi")), sig), 0);
	snprintf(hdr, sizeof(hdr), "X-Twilio-Signature: %s", sig);
	h_request(d, "GET", INBOUND "?" BODY("Hi"), hdrs, NULL, 0, &r);
	assert_int_equal(r.status, 401);
	/* a signed GET whose query was changed afterwards */
	snprintf(url, sizeof(url), "%s%s", H_PUBLIC_URL, INBOUND "?" BODY("Hi"));
	assert_int_equal(h_twilio_sign(H_TOKEN1, url, "", 0, sig), 0);
	snprintf(hdr, sizeof(hdr), "X-Twilio-Signature: %s", sig);
	h_request(d, "GET", INBOUND "?" BODY("Ha"), hdrs, NULL, 0, &r);
	assert_int_equal(r.status, 401);
	assert_int_equal(h_count(d, "sms_inbound_messages"), 0);
	assert_int_equal(h_count_data(d), 0);
}

static void test_routed_by_payload(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char status[1024], buf[256];

	/* an inbound message sent to the status URL */
	assert_int_equal(h_post_twilio(d, H_STATUS_PATH, H_TOKEN1, BODY("hello"), NULL, &r), 200);
	assert_string_equal(r.body, TWIML);
	assert_int_equal(h_count(d, "sms_inbound_messages"), 1);
	assert_int_equal(h_count(d, "sms_messages"), 0);
	assert_int_equal(h_count(d, "review_queue"), 0);
	/* a status callback sent to the inbound URL */
	assert_true(h_twilio_body(status, sizeof(status), "SM00000000000000000000000000000001",
	                          "delivered", NULL) > 0);
	assert_int_equal(h_post_twilio(d, INBOUND, H_TOKEN1, status, NULL, &r), 200);
	assert_string_not_equal(r.body, TWIML);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT provider_message_id||'|'||status FROM "
	                              "sms_message_events"),
	                    "SM00000000000000000000000000000001|delivered");
	assert_int_equal(h_count(d, "sms_inbound_messages"), 1);
}

/* A Messaging Service with Advanced Opt-Out and a custom opt-out word
 * (here Spanish "ALTO"): Twilio blocks the user and says so in OptOutType
 * (Twilio support article 31560110671259); dlrd records the opt-out with
 * the word the user sent, and a later OptOutType=START opts them back in.
 * Before, both were stored as plain messages and the state never changed. */
#define MS_BODY(sid, text, type)                                                                   \
	"ToCountry=US&ToState=CA&SmsMessageSid=" sid "&NumMedia=0&SmsSid=" sid                     \
	"&SmsStatus=received&Body=" text "&FromCountry=GB&To=%2B15005550006&NumSegments=1"         \
	"&MessagingServiceSid=MG0123456789abcdef0123456789abcdef&OptOutType=" type                 \
	"&MessageSid=" sid "&AccountSid=AC0123456789abcdef0123456789abcdef"                        \
	"&From=%2B447700900123&ApiVersion=2010-04-01"
#define SID2 "SM2f0c2d3e4a5b69788796a5b4c3d2e1f0"
static void test_advanced_opt_out_type(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[256];

	assert_int_equal(
	    h_post_twilio(d, INBOUND, H_TOKEN1, MS_BODY(SID, "ALTO", "STOP"), NULL, &r), 200);
	assert_string_equal(r.body, TWIML);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT keyword FROM sms_inbound_messages"), "opt_out");
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT opted_out||'|'||keyword FROM sms_opt_outs"),
	    "1|ALTO");
	assert_int_equal(
	    h_post_twilio(d, INBOUND, H_TOKEN1, MS_BODY(SID2, "ALTA", "START"), NULL, &r), 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT opted_out||'|'||keyword FROM sms_opt_outs"),
	    "0|ALTA");
	assert_int_equal(h_count(d, "sms_opt_out_history"), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_post_get_and_stop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_with_unicode_spaces, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_advanced_opt_out_type, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get_raw_payload, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_forged_write_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_routed_by_payload, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
