/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/providers/generic.c (dlrd's own JSON format, signed
 * the Standard Webhooks way) through its provider table entry: the SDK
 * vector from the Standard Webhooks test suites, signatures made here with
 * OpenSSL's HMAC, key rotation on both sides, the timestamp window both
 * ways, every normalized status, unknown statuses, inbound messages, time
 * parsing, and the exact 400 messages of strict validation.
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
#include <openssl/hmac.h>

#include "crypto.h"
#include "provider.h"
#include "provider_test.h"

extern const struct provider provider_generic;

/* The Standard Webhooks SDK vector (providers.md section 10). */
#define VEC_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define VEC_ID     "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define VEC_TS     "1614265330"
#define VEC_BODY   "{\"test\": 2432232314}"
#define VEC_SIG    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

/* A second secret (32 bytes 0x01..0x20) for rotation. */
#define SECRET2 "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="

#define NOW_S  1700000000LL
#define NOW_TS "1700000000"

struct fx {
	struct config cfg;
	void *state;
	struct arena a;
	char block[8192];
	struct pt_headers hdr;
	struct provider_result res;
	char err[256];
	char sig[256];
};

static int start(void **state, const char *secrets, const char *tolerance)
{
	struct fx *f = calloc(1, sizeof(*f));

	pt_setenv("DLRD_GENERIC_SECRETS", secrets);
	pt_setenv("DLRD_GENERIC_TOLERANCE_SECONDS", tolerance);
	if (pt_start(&provider_generic, &f->cfg, &f->state, false, &f->a, f->block,
	             sizeof(f->block)) != 0)
		return -1;
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return start(state, VEC_SECRET ", " SECRET2, NULL);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	pt_stop(&provider_generic, &f->cfg, f->state, &f->a);
	free(f);
	return 0;
}

/* "v1,<base64 HMAC-SHA256>" of id.ts.body under a whsec_ secret. */
static void sign(const char *secret, const char *id, const char *ts, const char *body, char *out,
                 size_t cap)
{
	uint8_t key[128], mac[32];
	size_t kl = 0;
	unsigned ml = 0;
	char msg[4096], b64[64];
	int n = snprintf(msg, sizeof(msg), "%s.%s.%s", id, ts, body);

	assert_int_equal(crypto_b64_decode(secret + 6, strlen(secret) - 6, key, &kl), 0);
	assert_non_null(HMAC(EVP_sha256(), key, (int)kl, (uint8_t *)msg, (size_t)n, mac, &ml));
	crypto_b64_encode(mac, ml, b64);
	snprintf(out, cap, "v1,%s", b64);
}

/* Runs authenticate (and parse when it passes) on a POST. */
static int run(struct fx *f, const char *id, const char *ts, const char *sig, const char *body,
               int64_t now_ms, int *parse_rc)
{
	struct provider_request req;

	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "webhook-id", id);
	pt_header_add(&f->hdr, "webhook-timestamp", ts);
	pt_header_add(&f->hdr, "webhook-signature", sig);
	pt_request(&req, &f->a,
	           &(struct pt_call){.target = "/webhooks/generic/status",
	                             .ctype = "application/json",
	                             .body = body,
	                             .now_ms = now_ms,
	                             .headers = &f->hdr});
	return pt_run(&provider_generic, f->state, &req, &f->res, f->err, sizeof(f->err), parse_rc);
}

/* Signs body with the first secret and runs it at NOW. */
static int post(struct fx *f, const char *id, const char *body, int *parse_rc)
{
	sign(VEC_SECRET, id, NOW_TS, body, f->sig, sizeof(f->sig));
	return run(f, id, NOW_TS, f->sig, body, NOW_S * 1000, parse_rc);
}

static void test_sdk_vector(void **state)
{
	struct fx *f = *state;
	int prc;
	char mine[256];

	/* our own signing helper agrees with the SDK vector */
	sign(VEC_SECRET, VEC_ID, VEC_TS, VEC_BODY, mine, sizeof(mine));
	assert_string_equal(mine, VEC_SIG);
	assert_int_equal(run(f, VEC_ID, VEC_TS, VEC_SIG, VEC_BODY, 1614265330000LL, &prc), 0);
	/* authentic, but not a dlrd event: strict parse */
	assert_int_equal(prc, DLRD_EINVAL);
	assert_string_equal(f->err, "type: required string");
	/* several entries, the good one last, an unknown version skipped */
	assert_int_equal(run(f, VEC_ID, VEC_TS,
	                     "v1a,AAAA v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " VEC_SIG,
	                     VEC_BODY, 1614265330000LL, &prc),
	                 0);
	/* one byte of the body changed */
	assert_int_equal(
	    run(f, VEC_ID, VEC_TS, VEC_SIG, "{\"test\": 2432232315}", 1614265330000LL, &prc),
	    DLRD_EAUTH);
	/* another id or timestamp */
	assert_int_equal(run(f, "msg_other", VEC_TS, VEC_SIG, VEC_BODY, 1614265330000LL, &prc),
	                 DLRD_EAUTH);
	assert_int_equal(run(f, VEC_ID, "1614265331", VEC_SIG, VEC_BODY, 1614265330000LL, &prc),
	                 DLRD_EAUTH);
}

static void test_rejections(void **state)
{
	struct fx *f = *state;
	int prc;
	const char *body = "{}";
	char sig2[256], longid[300];

	sign(VEC_SECRET, "msg_1", NOW_TS, body, f->sig, sizeof(f->sig));
	/* missing headers */
	assert_int_equal(run(f, NULL, NOW_TS, f->sig, body, NOW_S * 1000, &prc), DLRD_EAUTH);
	assert_int_equal(run(f, "msg_1", NULL, f->sig, body, NOW_S * 1000, &prc), DLRD_EAUTH);
	assert_int_equal(run(f, "msg_1", NOW_TS, NULL, body, NOW_S * 1000, &prc), DLRD_EAUTH);
	assert_string_equal(f->err, "missing webhook-id, webhook-timestamp or webhook-signature");
	/* no v1 entry at all; a v1 entry without the "v1," */
	assert_int_equal(run(f, "msg_1", NOW_TS, "v2,abc", body, NOW_S * 1000, &prc), DLRD_EAUTH);
	assert_string_equal(f->err, "no v1 signature");
	assert_int_equal(run(f, "msg_1", NOW_TS, f->sig + 3, body, NOW_S * 1000, &prc), DLRD_EAUTH);
	/* truncated signature */
	memcpy(sig2, f->sig, strlen(f->sig) - 1);
	sig2[strlen(f->sig) - 1] = '\0';
	assert_int_equal(run(f, "msg_1", NOW_TS, sig2, body, NOW_S * 1000, &prc), DLRD_EAUTH);
	/* a secret dlrd does not have */
	sign("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "msg_1", NOW_TS, body, sig2,
	     sizeof(sig2));
	assert_int_equal(run(f, "msg_1", NOW_TS, sig2, body, NOW_S * 1000, &prc), DLRD_EAUTH);
	assert_string_equal(f->err, "signature mismatch");
	/* malformed timestamp and id ('.' is forbidden by the spec) */
	assert_int_equal(run(f, "msg_1", "17e8", f->sig, body, NOW_S * 1000, &prc), DLRD_EAUTH);
	assert_int_equal(run(f, "msg.1", NOW_TS, f->sig, body, NOW_S * 1000, &prc), DLRD_EAUTH);
	memset(longid, 'a', 257);
	longid[257] = '\0';
	assert_int_equal(run(f, longid, NOW_TS, f->sig, body, NOW_S * 1000, &prc), DLRD_EAUTH);
	/* the second configured secret verifies too (rotation) */
	sign(SECRET2, "msg_1", NOW_TS, body, sig2, sizeof(sig2));
	assert_int_equal(run(f, "msg_1", NOW_TS, sig2, body, NOW_S * 1000, &prc), 0);
}

static void test_tolerance(void **state)
{
	struct fx *f = *state;
	int prc;
	const char *body = "{}";

	sign(VEC_SECRET, "msg_1", NOW_TS, body, f->sig, sizeof(f->sig));
	/* 300 s either way passes, 301 s does not, before the signature */
	assert_int_equal(run(f, "msg_1", NOW_TS, f->sig, body, (NOW_S + 300) * 1000, &prc), 0);
	assert_int_equal(run(f, "msg_1", NOW_TS, f->sig, body, (NOW_S - 300) * 1000, &prc), 0);
	assert_int_equal(run(f, "msg_1", NOW_TS, f->sig, body, (NOW_S + 301) * 1000, &prc),
	                 DLRD_ESTALE);
	assert_int_equal(run(f, "msg_1", NOW_TS, f->sig, body, (NOW_S - 301) * 1000, &prc),
	                 DLRD_ESTALE);
	assert_int_equal(run(f, "msg_1", NOW_TS, "v1,forged", body, (NOW_S + 999) * 1000, &prc),
	                 DLRD_ESTALE);
}

static void test_tolerance_setting(void **state)
{
	struct fx *f;
	int prc;
	const char *body = "{}";

	(void)state;
	assert_int_equal(start((void **)&f, VEC_SECRET, "10"), 0);
	sign(VEC_SECRET, "msg_1", NOW_TS, body, f->sig, sizeof(f->sig));
	assert_int_equal(run(f, "msg_1", NOW_TS, f->sig, body, (NOW_S + 10) * 1000, &prc), 0);
	assert_int_equal(run(f, "msg_1", NOW_TS, f->sig, body, (NOW_S + 11) * 1000, &prc),
	                 DLRD_ESTALE);
	teardown((void **)&f);
}

static void test_config(void **state)
{
	struct config cfg;
	void *st = (void *)1;
	char err[256];

	(void)state;
	unsetenv("DLRD_GENERIC_TOLERANCE_SECONDS");
	/* not configured: disabled */
	unsetenv("DLRD_GENERIC_SECRETS");
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(provider_generic.init(&cfg, &st, err, sizeof(err)), 0);
	assert_null(st);
	config_fini(&cfg);
	/* no prefix, bad base64, too short: refused, naming the key, never
	 * echoing the value */
	static const char *const bad[] = {"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_***",
	                                  "whsec_c2hvcnQ="};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		setenv("DLRD_GENERIC_SECRETS", bad[i], 1);
		assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
		err[0] = '\0';
		assert_int_equal(provider_generic.init(&cfg, &st, err, sizeof(err)), DLRD_ECONFIG);
		assert_non_null(strstr(err, "generic.secrets"));
		assert_null(strstr(err, bad[i]));
		config_fini(&cfg);
	}
	unsetenv("DLRD_GENERIC_SECRETS");
}

/* Every normalized status, as the sender writes it. */
static void test_statuses(void **state)
{
	struct fx *f = *state;
	static const char *const names[] = {"accepted", "sent",    "delivered", "undelivered",
	                                    "failed",   "expired", "rejected",  "unknown"};
	static const enum dlr_status st[] = {ST_ACCEPTED, ST_SENT,    ST_DELIVERED, ST_UNDELIVERED,
	                                     ST_FAILED,   ST_EXPIRED, ST_REJECTED,  ST_UNKNOWN};
	char body[512], id[32];
	int prc;

	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		snprintf(body, sizeof(body),
		         "{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:00Z\","
		         "\"data\":{\"message_id\":\"m-1\",\"status\":\"%s\"}}",
		         names[i]);
		snprintf(id, sizeof(id), "msg_%zu", i);
		assert_int_equal(post(f, id, body, &prc), 0);
		assert_int_equal(prc, 0);
		assert_int_equal(f->res.n_events, 1);
		const struct dlr_event *ev = &f->res.events[0];
		assert_int_equal(ev->kind, EV_STATUS);
		assert_int_equal(ev->status, st[i]);
		assert_string_equal(ev->raw_status, names[i]);
		assert_int_equal(ev->review, REVIEW_NONE);
		assert_string_equal(ev->provider_event_id, id);
		assert_int_equal(ev->occurred_ms, -1);
	}
}

static void test_full_status_event(void **state)
{
	struct fx *f = *state;
	int prc;
	const char *body =
	    "{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:00.500Z\","
	    "\"data\":{\"message_id\":\"SMPP-00af\",\"status\":\"undelivered\","
	    "\"raw_status\":\"UNDELIV\",\"error_code\":\"034\","
	    "\"occurred_at\":\"2026-11-27T16:10:00.123+01:00\",\"to\":\"+44 7700 900123\","
	    "\"from\":\"ACME\",\"extra\":{\"nested\":[1,2,3]}},\"more\":true}";
	char other[65];

	assert_int_equal(post(f, "evt_full", body, &prc), 0);
	assert_int_equal(prc, 0);
	const struct dlr_event *ev = &f->res.events[0];
	assert_string_equal(ev->provider, "generic");
	assert_string_equal(ev->provider_message_id, "SMPP-00af"); /* kept as sent */
	assert_string_equal(ev->provider_event_id, "evt_full");
	assert_int_equal(ev->status, ST_UNDELIVERED);
	assert_string_equal(ev->raw_status, "UNDELIV");
	assert_string_equal(ev->error_code, "034");
	assert_int_equal(ev->occurred_ms, 1795792200123LL); /* 15:10:00.123Z */
	assert_non_null(ev->recipient_hash);
	assert_string_equal(ev->destination_country, "GB");
	assert_string_equal(ev->sender_identity, "ACME");
	assert_int_equal(strlen(ev->dedup_key), 64);

	/* the same event id gives the same dedup key; another id another */
	snprintf(other, sizeof(other), "%s", ev->dedup_key);
	assert_int_equal(post(f, "evt_full", body, &prc), 0);
	assert_string_equal(f->res.events[0].dedup_key, other);
	assert_int_equal(post(f, "evt_full2", body, &prc), 0);
	assert_string_not_equal(f->res.events[0].dedup_key, other);

	/* an integer error code is accepted as its decimal text */
	assert_int_equal(post(f, "evt_int",
	                      "{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:00Z\","
	                      "\"data\":{\"message_id\":\"m\",\"status\":\"failed\","
	                      "\"error_code\":30003}}",
	                      &prc),
	                 0);
	assert_int_equal(prc, 0);
	assert_string_equal(f->res.events[0].error_code, "30003");
}

static void test_unknown_status(void **state)
{
	struct fx *f = *state;
	int prc;

	assert_int_equal(post(f, "evt_u",
	                      "{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:00Z\","
	                      "\"data\":{\"message_id\":\"m\",\"status\":\"DELIVRD\"}}",
	                      &prc),
	                 0);
	assert_int_equal(prc, 0);
	const struct dlr_event *ev = &f->res.events[0];
	assert_int_equal(ev->kind, EV_STATUS);
	assert_int_equal(ev->status, ST_UNKNOWN);
	assert_string_equal(ev->raw_status, "DELIVRD");
	assert_int_equal(ev->review, REVIEW_UNKNOWN_STATUS);
	assert_string_equal(ev->review_detail, "data.status is not one of dlrd's statuses");
}

static void test_inbound(void **state)
{
	struct fx *f = *state;
	int prc;

	assert_int_equal(
	    post(f, "evt_in",
	         "{\"type\":\"message.inbound\",\"timestamp\":\"2026-11-27T15:10:00Z\","
	         "\"data\":{\"message_id\":\"MO-1\",\"from\":\"+14155550123\","
	         "\"to\":\"12345\",\"body\":\"STOP\\u00e9\\n\","
	         "\"occurred_at\":\"2026-11-27T15:09:59Z\"}}",
	         &prc),
	    0);
	assert_int_equal(prc, 0);
	const struct dlr_event *ev = &f->res.events[0];
	assert_int_equal(ev->kind, EV_INBOUND);
	assert_string_equal(ev->provider_message_id, "MO-1");
	assert_string_equal(ev->provider_event_id, "evt_in");
	assert_non_null(ev->recipient_hash);
	assert_string_equal(ev->destination_country, "US");
	assert_string_equal(ev->sender_identity, "12345");
	assert_int_equal(ev->text_len, 7);
	assert_memory_equal(ev->text, "STOP\xc3\xa9\n", 7);
	assert_int_equal(ev->occurred_ms, 1795792199000LL);
	/* an empty body is a message too (media only, say) */
	assert_int_equal(
	    post(f, "evt_in2",
	         "{\"type\":\"message.inbound\",\"timestamp\":\"2026-11-27T15:10:00Z\","
	         "\"data\":{\"message_id\":\"MO-2\",\"from\":\"+14155550123\","
	         "\"body\":\"\"}}",
	         &prc),
	    0);
	assert_int_equal(prc, 0);
	assert_int_equal(f->res.events[0].text_len, 0);
	assert_null(f->res.events[0].sender_identity);
}

/* Strict validation: exact 400 messages that name the field. */
static void test_validation(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *body;
		const char *err;
	} cases[] = {
	    {"[1]", "body is not a JSON object"},
	    {"{\"type\":", "body is not a JSON object"},
	    {"{\"type\":\"a\",\"type\":\"b\"}", "body is not a JSON object"},
	    {"{\"timestamp\":\"2026-11-27T15:10:00Z\",\"data\":{}}", "type: required string"},
	    {"{\"type\":\"message.status\",\"data\":{}}", "timestamp: required RFC 3339 time"},
	    {"{\"type\":\"message.status\",\"timestamp\":\"2026-13-27T15:10:00Z\",\"data\":{}}",
	     "timestamp: required RFC 3339 time"},
	    {"{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:00Z\"}",
	     "data: required object"},
	    {"{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:00Z\",\"data\":[]}",
	     "data: required object"},
	    {"{\"type\":\"message.sent\",\"timestamp\":\"2026-11-27T15:10:00Z\",\"data\":{}}",
	     "type: must be message.status or message.inbound"},
	    {"{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:00Z\","
	     "\"data\":{\"status\":\"sent\"}}",
	     "data.message_id: required"},
	    {"{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:00Z\","
	     "\"data\":{\"message_id\":7,\"status\":\"sent\"}}",
	     "data.message_id: must be a string"},
	    {"{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:00Z\","
	     "\"data\":{\"message_id\":\"\",\"status\":\"sent\"}}",
	     "data.message_id: must be 1 to 256 bytes without control characters"},
	    {"{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:00Z\","
	     "\"data\":{\"message_id\":\"m\"}}",
	     "data.status: required"},
	    {"{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:00Z\","
	     "\"data\":{\"message_id\":\"m\",\"status\":\"sent\",\"occurred_at\":\"yesterday\"}}",
	     "data.occurred_at: not an RFC 3339 time"},
	    {"{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:00Z\","
	     "\"data\":{\"message_id\":\"m\",\"status\":\"sent\",\"error_code\":1.5}}",
	     "data.error_code: must be a string or an integer"},
	    {"{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:00Z\","
	     "\"data\":{\"message_id\":\"m\",\"status\":\"sent\",\"to\":12}}",
	     "data.to: must be a string"},
	    {"{\"type\":\"message.inbound\",\"timestamp\":\"2026-11-27T15:10:00Z\","
	     "\"data\":{\"message_id\":\"m\",\"body\":\"x\"}}",
	     "data.from: required"},
	    {"{\"type\":\"message.inbound\",\"timestamp\":\"2026-11-27T15:10:00Z\","
	     "\"data\":{\"message_id\":\"m\",\"from\":\"+14155550123\"}}",
	     "data.body: required"},
	    {"{\"type\":\"message.inbound\",\"timestamp\":\"2026-11-27T15:10:00Z\","
	     "\"data\":{\"message_id\":\"m\",\"from\":\"+14155550123\",\"body\":null}}",
	     "data.body: required"},
	};
	char id[32];
	int prc;

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		snprintf(id, sizeof(id), "msg_v%zu", i);
		assert_int_equal(post(f, id, cases[i].body, &prc), 0);
		assert_int_equal(prc, DLRD_EINVAL);
		assert_string_equal(f->err, cases[i].err);
	}
}

static void test_depth_limit(void **state)
{
	struct fx *f = *state;
	char body[512];
	size_t n = 0;
	int prc;

	/* 33 levels of nesting inside data: refused */
	n += (size_t)snprintf(body, sizeof(body),
	                      "{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:00Z\","
	                      "\"data\":{\"message_id\":\"m\",\"status\":\"sent\",\"x\":");
	for (int i = 0; i < 31; i++)
		body[n++] = '[';
	for (int i = 0; i < 31; i++)
		body[n++] = ']';
	memcpy(body + n, "}}", 3);
	assert_int_equal(post(f, "msg_deep", body, &prc), 0);
	assert_int_equal(prc, DLRD_EINVAL);
	assert_string_equal(f->err, "body nests deeper than 32");
}

static void test_method_and_type(void **state)
{
	struct fx *f = *state;
	struct provider_request req;

	pt_request(&req, &f->a,
	           &(struct pt_call){.method = "GET", .target = "/webhooks/generic/status"});
	assert_int_equal(provider_generic.authenticate(f->state, &req, f->err, sizeof(f->err)),
	                 DLRD_EMETHOD);
	req.method = "POST";
	req.content_type = "text/plain";
	assert_int_equal(provider_generic.authenticate(f->state, &req, f->err, sizeof(f->err)),
	                 DLRD_EUNSUPP);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_sdk_vector, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rejections, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tolerance, setup, teardown),
	    cmocka_unit_test(test_tolerance_setting),
	    cmocka_unit_test(test_config),
	    cmocka_unit_test_setup_teardown(test_statuses, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_full_status_event, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_status, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_depth_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_method_and_type, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
