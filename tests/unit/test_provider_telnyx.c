/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/providers/telnyx.c through its provider table entry:
 * Ed25519 verification (a pinned vector made with the RFC 8032 test-1 key,
 * and signatures made here with OpenSSL), the timestamp window both ways,
 * key rotation, per-recipient events with their ids (a keyed tag, never the
 * number) and the rewriting of ids stored before, every status of the
 * vocabulary, inbound messages, canonical ids and time parsing.
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
#include <openssl/evp.h>

#include "crypto.h"
#include "provider.h"
#include "provider_test.h"

extern const struct provider provider_telnyx;

/* RFC 8032 section 7.1 TEST 1 key pair. */
static const uint8_t SEED1[32] = {0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a,
                                  0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32,
                                  0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60};
#define PUB1 "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
/* A second key (seed 0x01 x 32) for rotation tests; its public key is
 * computed at run time. */
static const uint8_t SEED2[32] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

/* Self-computed with `openssl pkeyutl -sign -rawin` and the TEST 1 key over
 * "1700000000|" + VEC_BODY. */
#define VEC_TS "1700000000"
#define VEC_BODY                                                                                   \
	"{\"data\":{\"event_type\":\"message.finalized\",\"id\":"                                  \
	"\"4ee8c3a6-4995-4309-a3c6-38e3db9ea4be\"}}"
#define VEC_SIG                                                                                    \
	"LSlvn7JbdpP9Y/vAyvWoNXCbvPuKYfGQy+GqA1/XeyxhO81erQTGLoCfFkcLOiuIhSxcV9WgO/MooOVkYJPhBg=="

#define NOW_MS 1700000000000LL

struct fx {
	struct config cfg;
	void *state;
	struct arena a;
	char block[8192];
	struct pt_headers hdr;
	struct provider_result res;
	char err[256];
	char sig[128];
};

static void pub_b64(const uint8_t seed[32], char out[64])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	uint8_t pub[32];
	size_t n = sizeof(pub);
	assert_non_null(k);
	assert_int_equal(EVP_PKEY_get_raw_public_key(k, pub, &n), 1);
	crypto_b64_encode(pub, n, out);
	EVP_PKEY_free(k);
}

/* base64 Ed25519 signature of ts "|" body under seed. */
static void sign(const uint8_t seed[32], const char *ts, const char *body, char out[128])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	size_t ml = strlen(ts) + 1 + strlen(body), sl = 64;
	char *m = malloc(ml + 1);
	uint8_t s[64];
	memcpy(m, ts, strlen(ts));
	m[strlen(ts)] = '|';
	memcpy(m + strlen(ts) + 1, body, strlen(body));
	assert_int_equal(EVP_DigestSignInit(c, NULL, NULL, NULL, k), 1);
	assert_int_equal(EVP_DigestSign(c, s, &sl, (uint8_t *)m, ml), 1);
	crypto_b64_encode(s, sl, out);
	free(m);
	EVP_MD_CTX_free(c);
	EVP_PKEY_free(k);
}

static int start(void **state, const char *keys, const char *tolerance)
{
	struct fx *f = calloc(1, sizeof(*f));

	pt_setenv("DLRD_TELNYX_PUBLIC_KEYS", keys);
	pt_setenv("DLRD_TELNYX_TOLERANCE_SECONDS", tolerance);
	if (pt_start(&provider_telnyx, &f->cfg, &f->state, false, &f->a, f->block,
	             sizeof(f->block)) != 0)
		return -1;
	*state = f;
	return 0;
}

static int setup(void **state)
{
	char both[160], p2[64];
	pub_b64(SEED2, p2);
	snprintf(both, sizeof(both), "%s, %s", PUB1, p2);
	return start(state, both, NULL);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	pt_stop(&provider_telnyx, &f->cfg, f->state, &f->a);
	free(f);
	return 0;
}

/* Runs authenticate (and parse when it passes).  Returns authenticate's
 * code; parse must succeed. */
static int run_full(struct fx *f, const char *method, const char *ctype, const char *ts,
                    const char *sig, const char *body, int64_t now_ms)
{
	struct provider_request r;

	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "Telnyx-Timestamp", ts);
	pt_header_add(&f->hdr, "Telnyx-Signature-Ed25519", sig);
	pt_request(&r, &f->a,
	           &(struct pt_call){.method = method,
	                             .target = "/webhooks/telnyx/status",
	                             .ctype = ctype,
	                             .body = body,
	                             .now_ms = now_ms,
	                             .headers = &f->hdr});
	return pt_run(&provider_telnyx, f->state, &r, &f->res, f->err, sizeof(f->err), NULL);
}

/* Signs body with key 1 at NOW and runs it. */
static int run(struct fx *f, const char *body)
{
	sign(SEED1, VEC_TS, body, f->sig);
	return run_full(f, "POST", "application/json", VEC_TS, f->sig, body, NOW_MS);
}

static char *evbody(const char *type, const char *st1, const char *st2, const char *errors)
{
	static char b[2048];
	snprintf(b, sizeof(b),
	         "{\"data\":{\"event_type\":\"%s\","
	         "\"id\":\"4EE8C3A6-4995-4309-A3C6-38E3DB9EA4BE\","
	         "\"occurred_at\":\"2019-12-09T21:32:14.148+00:00\",\"record_type\":\"event\","
	         "\"payload\":{\"id\":\"40385F64-5717-4562-B3FC-2C963F66AFA6\","
	         "\"direction\":\"outbound\",\"type\":\"SMS\",\"new_field\":{\"x\":[1,2]},"
	         "\"from\":{\"phone_number\":\"+18445550001\",\"carrier\":\"Telnyx\"},"
	         "\"to\":[{\"phone_number\":\"+14155550100\",\"status\":\"%s\"}%s%s%s],"
	         "\"errors\":[%s]}},\"meta\":{\"attempt\":1}}",
	         type, st1, st2 ? ",{\"phone_number\":\"+447700900123\",\"status\":\"" : "",
	         st2 ? st2 : "", st2 ? "\"}" : "", errors ? errors : "");
	return b;
}

static char *finalized(const char *st1, const char *st2, const char *errors)
{
	return evbody("message.finalized", st1, st2, errors);
}

static void test_pinned_vector(void **state)
{
	struct fx *f = *state;
	assert_int_equal(run_full(f, "POST", "application/json", VEC_TS, VEC_SIG, VEC_BODY, NOW_MS),
	                 0);
	/* authentic but without a payload: one review event */
	assert_int_equal(f->res.n_events, 1);
	assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
	assert_int_equal(f->res.events[0].review, REVIEW_UNUSABLE);
}

static void test_forged_missing_stale(void **state)
{
	struct fx *f = *state;
	char body[] = VEC_BODY;
	body[10] = 'X';
	assert_int_equal(run_full(f, "POST", "application/json", VEC_TS, VEC_SIG, body, NOW_MS),
	                 DLRD_EAUTH);
	/* signature of another timestamp */
	assert_int_equal(
	    run_full(f, "POST", "application/json", "1700000001", VEC_SIG, VEC_BODY, NOW_MS + 1000),
	    DLRD_EAUTH);
	assert_int_equal(run_full(f, "POST", "application/json", NULL, VEC_SIG, VEC_BODY, NOW_MS),
	                 DLRD_EAUTH);
	assert_int_equal(run_full(f, "POST", "application/json", VEC_TS, NULL, VEC_BODY, NOW_MS),
	                 DLRD_EAUTH);
	assert_int_equal(
	    run_full(f, "POST", "application/json", VEC_TS, "bm90IGEgc2ln", VEC_BODY, NOW_MS),
	    DLRD_EAUTH);
	assert_int_equal(
	    run_full(f, "POST", "application/json", "-1700000000", VEC_SIG, VEC_BODY, NOW_MS),
	    DLRD_EAUTH);
	/* 300 s either way passes, 301 s does not */
	assert_int_equal(
	    run_full(f, "POST", "application/json", VEC_TS, VEC_SIG, VEC_BODY, NOW_MS + 300000), 0);
	assert_int_equal(
	    run_full(f, "POST", "application/json", VEC_TS, VEC_SIG, VEC_BODY, NOW_MS - 300000), 0);
	assert_int_equal(
	    run_full(f, "POST", "application/json", VEC_TS, VEC_SIG, VEC_BODY, NOW_MS + 301000),
	    DLRD_ESTALE);
	assert_int_equal(
	    run_full(f, "POST", "application/json", VEC_TS, VEC_SIG, VEC_BODY, NOW_MS - 301000),
	    DLRD_ESTALE);
	/* telnyx-node compares whole seconds (Math.floor(Date.now() / 1000)):
	 * a timestamp 300 s old passes for the whole of that second, 301 s old
	 * fails from its first millisecond */
	assert_int_equal(
	    run_full(f, "POST", "application/json", VEC_TS, VEC_SIG, VEC_BODY, NOW_MS + 300999), 0);
	assert_int_equal(
	    run_full(f, "POST", "application/json", VEC_TS, VEC_SIG, VEC_BODY, NOW_MS - 299001), 0);
	assert_int_equal(
	    run_full(f, "POST", "application/json", VEC_TS, VEC_SIG, VEC_BODY, NOW_MS - 300001),
	    DLRD_ESTALE);
}

static void test_method_and_type(void **state)
{
	struct fx *f = *state;
	assert_int_equal(run_full(f, "GET", "application/json", VEC_TS, VEC_SIG, VEC_BODY, NOW_MS),
	                 DLRD_EMETHOD);
	assert_int_equal(run_full(f, "POST", "application/x-www-form-urlencoded", VEC_TS, VEC_SIG,
	                          VEC_BODY, NOW_MS),
	                 DLRD_EUNSUPP);
}

static void test_rotation(void **state)
{
	struct fx *f = *state;
	const char *body = finalized("delivered", NULL, NULL);
	sign(SEED2, VEC_TS, body, f->sig);
	assert_int_equal(run_full(f, "POST", "application/json", VEC_TS, f->sig, body, NOW_MS), 0);
	assert_int_equal(f->res.events[0].status, ST_DELIVERED);
}

static void test_two_recipients(void **state)
{
	struct fx *f = *state;
	const struct dlr_event *a, *b;
	assert_int_equal(run(f, finalized("delivered", "delivery_failed",
	                                  "{\"code\":\"40008\",\"title\":\"Undeliverable\"}")),
	                 0);
	assert_int_equal(f->res.n_events, 2);
	a = &f->res.events[0];
	b = &f->res.events[1];
	assert_int_equal(a->kind, EV_STATUS);
	assert_string_equal(a->provider, "telnyx");
	assert_string_equal(a->provider_message_id, "40385f64-5717-4562-b3fc-2c963f66afa6");
	assert_string_equal(b->provider_message_id, "40385f64-5717-4562-b3fc-2c963f66afa6");
	/* data.id and the recipient tag (test_privacy.c has the vectors), never
	 * the number */
	assert_string_equal(a->provider_event_id,
	                    "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be:rcpt-3e71accb2658bcd2");
	assert_string_equal(b->provider_event_id,
	                    "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be:rcpt-0ddcd554a75431db");
	assert_null(strstr(a->provider_event_id, "4155550100"));
	assert_null(strstr(b->provider_event_id, "7700900123"));
	assert_int_equal(a->status, ST_DELIVERED);
	assert_null(a->error_code);
	assert_int_equal(b->status, ST_UNDELIVERED);
	assert_string_equal(b->raw_status, "delivery_failed");
	assert_string_equal(b->error_code, "40008");
	assert_int_equal(a->occurred_ms, 1575927134148LL);
	assert_string_equal(a->destination_country, "US");
	assert_string_equal(b->destination_country, "GB");
	assert_non_null(a->recipient_hash);
	assert_string_equal(a->sender_identity, "+18445550001");
	assert_string_not_equal(a->dedup_key, b->dedup_key);
}

static void test_rejected_by_error(void **state)
{
	struct fx *f = *state;
	assert_int_equal(run(f, finalized("delivery_failed", NULL, "{\"code\":\"40300\"}")), 0);
	assert_int_equal(f->res.events[0].status, ST_REJECTED);
	assert_string_equal(f->res.events[0].error_code, "40300");
	/* integer codes are accepted too */
	assert_int_equal(run(f, finalized("delivery_failed", NULL, "{\"code\":40003}")), 0);
	assert_int_equal(f->res.events[0].status, ST_REJECTED);
	assert_string_equal(f->res.events[0].error_code, "40003");
}

static void test_vocabulary(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *raw;
		enum dlr_status st;
	} cases[] = {
	    {"scheduled", ST_ACCEPTED},
	    {"queued", ST_ACCEPTED},
	    {"sending", ST_ACCEPTED},
	    {"sent", ST_SENT},
	    {"delivered", ST_DELIVERED},
	    {"sending_failed", ST_FAILED},
	    {"delivery_failed", ST_UNDELIVERED},
	    {"delivery_unconfirmed", ST_UNKNOWN},
	    {"expired", ST_EXPIRED},
	    {"cancelled", ST_FAILED},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		assert_int_equal(run(f, finalized(cases[i].raw, NULL, NULL)), 0);
		assert_int_equal(f->res.n_events, 1);
		assert_int_equal(f->res.events[0].status, cases[i].st);
		assert_int_equal(f->res.events[0].review, REVIEW_NONE);
		assert_string_equal(f->res.events[0].raw_status, cases[i].raw);
	}
	/* cancelled failed on purpose: reason canceled, not an unexplained failure */
	assert_int_equal(run(f, finalized("cancelled", NULL, NULL)), 0);
	assert_int_equal(f->res.events[0].error_reason, ER_CANCELED);
	assert_int_equal(run(f, finalized("sending_failed", NULL, NULL)), 0);
	assert_int_equal(f->res.events[0].error_reason, ER_NONE); /* classified later */
	assert_int_equal(run(f, finalized("teleported", NULL, NULL)), 0);
	assert_int_equal(f->res.events[0].status, ST_UNKNOWN);
	assert_int_equal(f->res.events[0].review, REVIEW_UNKNOWN_STATUS);
	assert_non_null(f->res.events[0].review_detail);
}

/* Telnyx's delivery error codes, each with the reason whose note and next
 * step fit what Telnyx says the code means (messaging error code
 * reference). */
static void test_error_reasons(void **state)
{
	(void)state;
	static const struct {
		const char *code;
		enum err_reason reason;
	} cases[] = {
	    {"40001", ER_LANDLINE},
	    {"40003", ER_SPAM_BLOCKED},
	    {"40005", ER_EXPIRED},
	    /* "the recipient's carrier server is down; retry with backoff":
	     * the carrier's fault, not the handset's */
	    {"40006", ER_PROVIDER_ERROR},
	    {"40012", ER_INVALID_NUMBER},
	    {"40300", ER_OPTED_OUT},
	};
	const char *title;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		assert_int_equal(
		    errcat_classify(provider_telnyx.errors, cases[i].code, ST_UNDELIVERED, &title),
		    cases[i].reason);
}

static void test_sent_event(void **state)
{
	struct fx *f = *state;
	assert_int_equal(run(f, evbody("message.sent", "sent", NULL, NULL)), 0);
	assert_int_equal(f->res.events[0].status, ST_SENT);
}

static void test_inbound(void **state)
{
	struct fx *f = *state;
	const char *body =
	    "{\"data\":{\"event_type\":\"message.received\","
	    "\"id\":\"b301ed3f-1490-491f-995f-6e64e69674d4\","
	    "\"occurred_at\":\"2024-02-14T15:37:10.5-05:00\",\"payload\":{"
	    "\"id\":\"84CCA175-9755-4859-B67F-4730D7F58AA3\",\"direction\":\"inbound\","
	    "\"from\":{\"phone_number\":\"+14155550100\",\"carrier\":\"T-Mobile\"},"
	    "\"to\":[{\"phone_number\":\"+18445550001\",\"status\":\"webhook_delivered\"}],"
	    "\"text\":\" Stop \",\"media\":[]}}}";
	assert_int_equal(run(f, body), 0);
	assert_int_equal(f->res.n_events, 1);
	const struct dlr_event *ev = &f->res.events[0];
	assert_int_equal(ev->kind, EV_INBOUND);
	assert_string_equal(ev->provider_message_id, "84cca175-9755-4859-b67f-4730d7f58aa3");
	assert_string_equal(ev->provider_event_id, "b301ed3f-1490-491f-995f-6e64e69674d4");
	assert_string_equal(ev->sender_identity, "+18445550001");
	assert_string_equal(ev->destination_country, "US");
	assert_non_null(ev->recipient_hash);
	assert_int_equal(ev->text_len, 6);
	assert_memory_equal(ev->text, " Stop ", 6);
	assert_int_equal(ev->occurred_ms, 1707943030500LL);
}

/* Advanced Opt-In/Out: "When a user sends an opt-in, opt-out, or help
 * keyword, the inbound message webhook includes an autoresponse_type field"
 * (Telnyx "Advanced Opt-In/Out Management", Track opt-out behavior via
 * webhooks; null otherwise, as in the message.received payloads Telnyx
 * sends).  Telnyx creates or removes its block rule by its own keyword
 * lists, custom ones included, so its verdict decides the keyword.  Before,
 * a custom word ("ALTO") was a plain message and the user stayed opted in
 * at dlrd while Telnyx answered every send with 40300. */
static void test_inbound_autoresponse_type(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *text, *type;
		enum optout_kind kw;
	} cases[] = {
	    {"ALTO", "\"STOP\"", KW_OPT_OUT}, {"ALTA", "\"start\"", KW_OPT_IN},
	    {"AYUDA", "\"HELP\"", KW_HELP},   {"Hola", "null", KW_NONE},
	    {"Hola", "\"promo\"", KW_NONE},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char body[1024];
		snprintf(body, sizeof(body),
		         "{\"data\":{\"event_type\":\"message.received\","
		         "\"id\":\"5ed9ec04-a33f-4ef2-b452-3a2989fac327\","
		         "\"occurred_at\":\"2025-05-15T18:47:41.038+00:00\",\"payload\":{"
		         "\"autoresponse_type\":%s,\"cc\":[],\"direction\":\"inbound\","
		         "\"errors\":[],\"from\":{\"carrier\":\"T-Mobile USA\","
		         "\"line_type\":\"Wireless\",\"phone_number\":\"+13125550001\"},"
		         "\"id\":\"84cca175-9755-4859-b67f-4730d7f58aa3\",\"media\":[],"
		         "\"parts\":1,\"received_at\":\"2025-05-15T18:47:40.991+00:00\","
		         "\"record_type\":\"message\",\"text\":\"%s\","
		         "\"to\":[{\"phone_number\":\"+17735550002\","
		         "\"status\":\"webhook_delivered\"}],\"type\":\"SMS\"},"
		         "\"record_type\":\"event\"},\"meta\":{\"attempt\":1}}",
		         cases[i].type, cases[i].text);
		assert_int_equal(run(f, body), 0);
		assert_int_equal(f->res.n_events, 1);
		assert_int_equal(f->res.events[0].kind, EV_INBOUND);
		assert_string_equal(f->res.events[0].text, cases[i].text);
		assert_int_equal(f->res.events[0].keyword, cases[i].kw);
	}
}

/* A provider time that SQLite's four-digit text and PostgreSQL's timestamptz
 * cannot both hold is no time, the same on both backends (SQLite kept a
 * wrapped year for it, PostgreSQL NULL). */
static void test_time_range(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *at;
		long long ms;
	} cases[] = {
	    {"9999-12-31T23:59:59.999Z", 253402300799999LL},
	    {"9999-12-31T23:30:00-01:00", -1}, /* year 10000 in UTC */
	    {"1969-12-31T23:59:59Z", -1},
	    {"1970-01-01T00:00:00.001Z", 1},
	};
	char body[1024];

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		snprintf(body, sizeof(body),
		         "{\"data\":{\"event_type\":\"message.received\","
		         "\"id\":\"b301ed3f-1490-491f-995f-6e64e69674d4\","
		         "\"occurred_at\":\"%s\",\"payload\":{"
		         "\"id\":\"84CCA175-9755-4859-B67F-4730D7F58AA3\","
		         "\"direction\":\"inbound\","
		         "\"from\":{\"phone_number\":\"+14155550100\"},"
		         "\"to\":[{\"phone_number\":\"+18445550001\"}],\"text\":\"hi\"}}}",
		         cases[i].at);
		assert_int_equal(run(f, body), 0);
		assert_int_equal(f->res.n_events, 1);
		assert_int_equal(f->res.events[0].occurred_ms, cases[i].ms);
	}
}

static void test_unusable(void **state)
{
	struct fx *f = *state;
	static const char *const bodies[] = {
	    "not json",
	    "[1,2]",
	    "{\"data\":{\"event_type\":\"message.finalized\",\"payload\":{\"to\":[]}}}",
	    "{\"data\":{\"event_type\":\"call.initiated\",\"payload\":{}}}",
	    "{\"data\":{\"event_type\":\"message.finalized\",\"payload\":{\"id\":\"x\","
	    "\"to\":[1,2]}}}",
	};
	for (size_t i = 0; i < ARRAY_LEN(bodies); i++) {
		assert_int_equal(run(f, bodies[i]), 0);
		assert_int_equal(f->res.n_events, 1);
		assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
	}
}

/* A recipient entry that is not an object is not dropped while the others
 * are stored: it goes to review. */
static void test_bad_recipient_entry_reviewed(void **state)
{
	struct fx *f = *state;
	const char *body =
	    "{\"data\":{\"event_type\":\"message.finalized\","
	    "\"id\":\"4ee8c3a6-4995-4309-a3c6-38e3db9ea4be\",\"payload\":{"
	    "\"id\":\"40385f64-5717-4562-b3fc-2c963f66afa6\",\"to\":["
	    "{\"phone_number\":\"+14155550100\",\"status\":\"delivered\"},\"+447700900123\"]}}}";

	assert_int_equal(run(f, body), 0);
	assert_int_equal(f->res.n_events, 2);
	assert_int_equal(f->res.events[0].kind, EV_STATUS);
	assert_int_equal(f->res.events[0].status, ST_DELIVERED);
	assert_int_equal(f->res.events[1].kind, EV_UNUSABLE);
	assert_int_equal(f->res.events[1].review, REVIEW_UNUSABLE);
}

static void test_deep_json(void **state)
{
	struct fx *f = *state;
	char body[200];
	size_t n = 0;
	for (int i = 0; i < 40; i++)
		body[n++] = '[';
	for (int i = 0; i < 40; i++)
		body[n++] = ']';
	body[n] = '\0';
	assert_int_equal(run(f, body), 0);
	assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
}

static void test_dedup_stable(void **state)
{
	struct fx *f = *state;
	char k1[65];
	assert_int_equal(run(f, finalized("delivered", NULL, NULL)), 0);
	memcpy(k1, f->res.events[0].dedup_key, 65);
	/* a retry is the same body with another timestamp and signature */
	sign(SEED1, "1700000100", finalized("delivered", NULL, NULL), f->sig);
	assert_int_equal(run_full(f, "POST", "application/json", "1700000100", f->sig,
	                          finalized("delivered", NULL, NULL), NOW_MS),
	                 0);
	assert_string_equal(f->res.events[0].dedup_key, k1);
}

/* Stored ids of a dlrd before the recipient tag, as the store's data
 * migration rewrites them: to exactly the id and dedup key parse() gives
 * the same callback now, so a retry after the upgrade is a duplicate. */
static int upgrade(struct fx *f, const char *id, const struct dlr_event *e, const char **nid,
                   char key[65])
{
	return provider_upgrade_event_id(&f->a, "telnyx", id, e->provider_message_id, e->raw_status,
	                                 e->error_code, nid, key);
}

static void test_upgrade_event_id(void **state)
{
	static const char *const numbers[] = {"+14155550100", "+447700900123"};
	struct fx *f = *state;
	const char *nid;
	char key[65], oldid[128];
	struct dlr_event old;

	assert_int_equal(run(f, finalized("delivered", "delivery_failed",
	                                  "{\"code\":\"40008\",\"title\":\"Undeliverable\"}")),
	                 0);
	assert_int_equal(f->res.n_events, 2);
	for (size_t i = 0; i < 2; i++) {
		const struct dlr_event *e = &f->res.events[i];
		snprintf(oldid, sizeof(oldid), "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be:%s",
		         numbers[i]);
		memset(&old, 0, sizeof(old));
		old.kind = EV_STATUS;
		old.provider = "telnyx";
		old.provider_event_id = oldid;
		event_finish(&old);
		assert_string_not_equal(old.dedup_key, e->dedup_key);
		assert_true(upgrade(f, oldid, e, &nid, key));
		assert_string_equal(nid, e->provider_event_id);
		assert_string_equal(key, e->dedup_key);
		/* idempotent: a rewritten id stays */
		assert_false(upgrade(f, e->provider_event_id, e, &nid, key));
	}
	/* the raw text, as sent: "14155550100" was another event than
	 * "+14155550100" and stays another one */
	assert_true(upgrade(f, "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be:14155550100",
	                    &f->res.events[0], &nid, key));
	assert_string_equal(nid, "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be:rcpt-ff299ca748119ed3");
	/* ids without a number need no change */
	assert_false(
	    upgrade(f, "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be:#1", &f->res.events[0], &nid, key));
	assert_false(
	    upgrade(f, "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be:#12", &f->res.events[0], &nid, key));
	assert_false(
	    upgrade(f, "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be:", &f->res.events[0], &nid, key));
	assert_false(
	    upgrade(f, "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be", &f->res.events[0], &nid, key));
	/* a provider whose ids never held a number has no hook */
	assert_false(provider_upgrade_event_id(&f->a, "twilio", "x:+14155550100", "SM1", "sent",
	                                       NULL, &nid, key));
	assert_false(provider_upgrade_event_id(&f->a, "nosuch", "x:+14155550100", "SM1", "sent",
	                                       NULL, &nid, key));

	/* an entry without a number keeps its index, as before */
	assert_int_equal(run(f, "{\"data\":{\"event_type\":\"message.finalized\","
	                        "\"id\":\"4ee8c3a6-4995-4309-a3c6-38e3db9ea4be\","
	                        "\"payload\":{\"id\":\"40385f64-5717-4562-b3fc-2c963f66afa6\","
	                        "\"to\":[{\"phone_number\":\"+14155550100\",\"status\":"
	                        "\"delivered\"},{\"status\":\"delivered\"}]}}}"),
	                 0);
	assert_int_equal(f->res.n_events, 2);
	assert_string_equal(f->res.events[1].provider_event_id,
	                    "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be:#1");
}

static void test_config(void **state)
{
	struct config cfg;
	void *st = (void *)1;
	char err[256] = "";
	(void)state;
	unsetenv("DLRD_TELNYX_PUBLIC_KEYS");
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(provider_telnyx.init(&cfg, &st, err, sizeof(err)), 0);
	assert_null(st);
	config_fini(&cfg);
	setenv("DLRD_TELNYX_PUBLIC_KEYS", "c2hvcnQ=", 1);
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(provider_telnyx.init(&cfg, &st, err, sizeof(err)), DLRD_ECONFIG);
	assert_non_null(strstr(err, "telnyx.public_keys"));
	config_fini(&cfg);
	setenv("DLRD_TELNYX_PUBLIC_KEYS", PUB1, 1);
	setenv("DLRD_TELNYX_TOLERANCE_SECONDS", "0", 1);
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(provider_telnyx.init(&cfg, &st, err, sizeof(err)), DLRD_ECONFIG);
	config_fini(&cfg);
	unsetenv("DLRD_TELNYX_TOLERANCE_SECONDS");
}

static int setup_tol(void **state)
{
	return start(state, PUB1, "10");
}

static void test_custom_tolerance(void **state)
{
	struct fx *f = *state;
	assert_int_equal(
	    run_full(f, "POST", "application/json", VEC_TS, VEC_SIG, VEC_BODY, NOW_MS + 10000), 0);
	assert_int_equal(
	    run_full(f, "POST", "application/json", VEC_TS, VEC_SIG, VEC_BODY, NOW_MS + 11000),
	    DLRD_ESTALE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_pinned_vector, setup, teardown),
	    cmocka_unit_test(test_error_reasons),
	    cmocka_unit_test_setup_teardown(test_forged_missing_stale, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_method_and_type, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_recipients, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rejected_by_error, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vocabulary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sent_event, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound_autoresponse_type, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_time_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unusable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_recipient_entry_reviewed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deep_json, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dedup_stable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_upgrade_event_id, setup, teardown),
	    cmocka_unit_test(test_config),
	    cmocka_unit_test_setup_teardown(test_custom_tolerance, setup_tol, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
