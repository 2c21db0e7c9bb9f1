/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the Vonage Messages API adapter
 * (src/providers/vonage_messages.c), driven through its provider table
 * entry with a fake request and a real config loaded from the environment.
 * Tokens are made with jwt_sign (itself checked against the jwt.io vector
 * in test_jwt.c) with the claims of Vonage's "Signed webhooks" sample; the
 * payload_hash is computed here with OpenSSL.
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
#include <openssl/sha.h>

#include "config.h"
#include "jwt.h"
#include "phone.h"
#include "provider.h"
#include "provider_test.h"
#include "util.h"

extern const struct provider provider_vonage_messages;
#define P (&provider_vonage_messages)

#define SECRET "vms-signature-secret-0123456789"
#define NOW_S  1683036000LL /* 2023-05-02T14:00:00Z */
#define UUID   "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"

struct fx {
	void *state;
	struct arena a;
	char block[16384];
	struct provider_request req;
	struct provider_result res;
	char err[256];
	char auth[4096];
	char body[4096];
	struct pt_headers hdr;
};

static struct fx *fx_new(const char *secrets)
{
	struct fx *f = calloc(1, sizeof(*f));
	char e1[256];
	const char *env[] = {e1, NULL};

	assert_non_null(f);
	util_fmt(e1, sizeof(e1), "DLRD_VONAGE_MESSAGES_SIGNATURE_SECRETS=%s", secrets);
	assert_int_equal(pt_load(P, env, &f->state, f->err, sizeof(f->err)), 0);
	assert_non_null(f->state);
	arena_init(&f->a, f->block, sizeof(f->block));
	return f;
}

static void fx_free(struct fx *f)
{
	P->fini(f->state);
	arena_fini(&f->a);
	free(f);
}

static void sha256_hex(const char *s, size_t n, char out[65])
{
	unsigned char m[32];
	SHA256((const unsigned char *)s, n, m);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", m[i]);
}

/* "Bearer <token>" with Vonage's claims; hash_of: what payload_hash
 * covers (NULL: no payload_hash claim). */
static void bearer(struct fx *f, unsigned alg, const char *secret, int64_t iat, const char *jti,
                   const char *hash_of)
{
	char claims[1024], h[65], tok[2048];

	if (hash_of) {
		sha256_hex(hash_of, strlen(hash_of), h);
		util_fmt(claims, sizeof(claims),
		         "{\"iat\":%lld,\"jti\":\"%s\",\"iss\":\"Vonage\",\"payload_hash\":\"%s\","
		         "\"api_key\":\"a1b2c3d\",\"application_id\":\"" UUID "\"}",
		         (long long)iat, jti, h);
	} else {
		util_fmt(claims, sizeof(claims),
		         "{\"iat\":%lld,\"jti\":\"%s\",\"iss\":\"Vonage\",\"api_key\":\"a1b2c3d\"}",
		         (long long)iat, jti);
	}
	assert_true(jwt_sign(alg, secret, claims, tok, sizeof(tok)) > 0);
	util_fmt(f->auth, sizeof(f->auth), "Bearer %s", tok);
}

static int run(struct fx *f, const char *method, enum webhook_kind kind, const char *ctype,
               const char *body, int64_t now_s)
{
	int rc, prc;

	util_strlcpy(f->body, body, sizeof(f->body));
	pt_headers_reset(&f->hdr);
	if (f->auth[0])
		pt_header_add(&f->hdr, "Authorization", f->auth);
	pt_request(&f->req, &f->a,
	           &(struct pt_call){.method = method,
	                             .kind = kind,
	                             .target = kind == HOOK_STATUS
	                                           ? "/webhooks/vonage-messages/status"
	                                           : "/webhooks/vonage-messages/inbound",
	                             .ctype = ctype,
	                             .body = f->body,
	                             .now_ms = now_s * 1000 + 123,
	                             .headers = &f->hdr});
	rc = pt_run(P, f->state, &f->req, &f->res, f->err, sizeof(f->err), &prc);
	return rc != 0 ? rc : prc;
}

/* Signs body properly and runs it as a status POST. */
static int post(struct fx *f, enum webhook_kind kind, const char *body)
{
	bearer(f, JWT_HS256, SECRET, NOW_S, "c5ba8f24-1a14-4c10-bfdf-3fbe8ce511b5", body);
	return run(f, "POST", kind, "application/json", body, NOW_S);
}

static int setup(void **state)
{
	pt_set_hash_key();
	*state = NULL;
	return 0;
}

static void status_body(char *out, size_t cap, const char *status, const char *error)
{
	util_fmt(
	    out, cap,
	    "{\"message_uuid\":\"" UUID "\",\"to\":\"447700900000\",\"from\":\"447700900001\","
	    "\"timestamp\":\"2023-05-01T14:00:00.000Z\",\"status\":\"%s\",\"channel\":\"sms\","
	    "\"client_ref\":\"abc\",\"usage\":{\"currency\":\"EUR\",\"price\":\"0.0333\"},"
	    "\"destination\":{\"network_code\":\"23410\"},\"sms\":{\"count_total\":\"2\"}%s%s}",
	    status, error ? "," : "", error ? error : "");
}

static void test_status_vocabulary(void **state)
{
	static const struct {
		const char *raw;
		const char *error;
		enum dlr_status st;
		bool read;
		const char *code;
	} cases[] = {
	    {"submitted", NULL, ST_SENT, false, NULL},
	    {"delivered", NULL, ST_DELIVERED, false, NULL},
	    {"read", NULL, ST_DELIVERED, true, NULL},
	    {"undeliverable", NULL, ST_FAILED, false, NULL},
	    {"rejected", NULL, ST_REJECTED, false, NULL},
	    /* current RFC 7807-like error object */
	    {"rejected",
	     "\"error\":{\"type\":\"https://developer.vonage.com/api-errors/messages#1360\","
	     "\"title\":\"1360\",\"detail\":\"TTL was activated\",\"instance\":\"bf0c\"}",
	     ST_EXPIRED, false, "1360"},
	    /* title as a number, type without a code */
	    {"rejected", "\"error\":{\"type\":\"about:blank\",\"title\":1330}", ST_UNKNOWN, false,
	     "1330"},
	    /* only the type carries the code */
	    {"rejected",
	     "\"error\":{\"type\":\"https://developer.vonage.com/api-errors/messages#1180\","
	     "\"title\":\"Absent Subscriber Temporary\"}",
	     ST_UNDELIVERED, false, "1180"},
	    /* 2021 schema: {code, reason} */
	    {"rejected", "\"error\":{\"code\":1030,\"reason\":\"Internal error\"}", ST_FAILED,
	     false, "1030"},
	    {"rejected", "\"error\":{\"code\":1240,\"reason\":\"Illegal Number\"}", ST_REJECTED,
	     false, "1240"},
	    {"rejected", "\"error\":{\"code\":\"1300\"}", ST_REJECTED, false, "1300"},
	    {"rejected", "\"error\":{\"code\":9999}", ST_REJECTED, false, "9999"},
	};
	struct fx *f = fx_new(SECRET);
	char body[2048];

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		status_body(body, sizeof(body), cases[i].raw, cases[i].error);
		assert_int_equal(post(f, HOOK_STATUS, body), 0);
		const struct dlr_event *ev = &f->res.events[0];
		assert_int_equal(f->res.n_events, 1);
		assert_int_equal(ev->kind, EV_STATUS);
		assert_string_equal(ev->provider, "vonage-messages");
		assert_string_equal(ev->provider_message_id, UUID);
		assert_string_equal(ev->raw_status, cases[i].raw);
		assert_int_equal(ev->status, cases[i].st);
		assert_int_equal(ev->read, cases[i].read);
		if (cases[i].code)
			assert_string_equal(ev->error_code, cases[i].code);
		else
			assert_null(ev->error_code);
		assert_int_equal(ev->occurred_ms, 1682949600000LL); /* 2023-05-01T14:00:00Z */
		assert_string_equal(ev->recipient_hash, pt_hash_of("+447700900000"));
		assert_string_equal(ev->destination_country, "GB");
		assert_string_equal(ev->sender_identity, "447700900001");
		assert_int_equal(ev->review, REVIEW_NONE);
	}
	status_body(body, sizeof(body), "deleted", NULL);
	assert_int_equal(post(f, HOOK_STATUS, body), 0);
	assert_int_equal(f->res.events[0].status, ST_UNKNOWN);
	assert_int_equal(f->res.events[0].review, REVIEW_UNKNOWN_STATUS);
	fx_free(f);
}

static void test_error_catalogue(void **state)
{
	const char *title = NULL;

	(void)state;
	assert_int_equal(errcat_classify(P->errors, "1360", ST_EXPIRED, &title), ER_EXPIRED);
	assert_string_equal(title, "TTL was activated");
	assert_int_equal(errcat_classify(P->errors, "1240", ST_REJECTED, &title), ER_OPTED_OUT);
	assert_int_equal(errcat_classify(P->errors, "1170", ST_REJECTED, &title),
	                 ER_INVALID_NUMBER);
	assert_string_equal(title, "Invalid or Missing Msisdn Param");
}

static void test_old_schema_parties_and_canonical_uuid(void **state)
{
	struct fx *f = fx_new(SECRET);
	const char *body =
	    "{\"message_uuid\":\"AAAAAAAA-BBBB-CCCC-DDDD-0123456789AB\","
	    "\"to\":{\"type\":\"sms\",\"number\":\"14155550123\"},"
	    "\"from\":{\"type\":\"sms\",\"number\":\"12345\"},"
	    "\"timestamp\":\"2020-01-01T14:00:00.000+01:00\",\"status\":\"delivered\","
	    "\"a_field_vonage_added\":{\"nested\":[1,2,3]}}";

	(void)state;
	assert_int_equal(post(f, HOOK_STATUS, body), 0);
	const struct dlr_event *ev = &f->res.events[0];
	assert_string_equal(ev->provider_message_id, UUID);
	assert_string_equal(ev->recipient_hash, pt_hash_of("+14155550123"));
	assert_string_equal(ev->sender_identity, "12345");
	assert_int_equal(ev->occurred_ms, 1577883600000LL); /* 13:00Z */
	fx_free(f);
}

static void test_inbound(void **state)
{
	struct fx *f = fx_new(SECRET);
	const char *body =
	    "{\"channel\":\"sms\",\"message_uuid\":\"" UUID "\",\"to\":\"447700900000\","
	    "\"from\":\"447700900001\",\"timestamp\":\"2020-01-01T14:00:00.000Z\","
	    "\"text\":\"Stop\",\"message_type\":\"text\","
	    "\"sms\":{\"num_messages\":\"1\",\"keyword\":\"STOP\"},"
	    "\"usage\":{\"price\":\"0.0057\",\"currency\":\"EUR\"}}";

	(void)state;
	for (int k = 0; k < 2; k++) {
		assert_int_equal(post(f, k ? HOOK_STATUS : HOOK_INBOUND, body), 0);
		const struct dlr_event *ev = &f->res.events[0];
		assert_int_equal(ev->kind, EV_INBOUND);
		assert_string_equal(ev->provider_message_id, UUID);
		assert_string_equal(ev->text, "Stop");
		assert_int_equal(ev->text_len, 4);
		assert_string_equal(ev->recipient_hash, pt_hash_of("+447700900001"));
		assert_string_equal(ev->sender_identity, "447700900000");
		assert_int_equal(ev->occurred_ms, 1577887200000LL);
	}
	/* an image: inbound without text */
	assert_int_equal(
	    post(f, HOOK_INBOUND,
	         "{\"channel\":\"mms\",\"message_uuid\":\"" UUID "\","
	         "\"to\":\"14155550100\",\"from\":\"14155550123\","
	         "\"message_type\":\"image\",\"image\":{\"url\":\"https://x/y.jpg\"}}"),
	    0);
	assert_int_equal(f->res.events[0].kind, EV_INBOUND);
	assert_null(f->res.events[0].text);
	assert_int_equal(f->res.events[0].occurred_ms, -1);
	fx_free(f);
}

static void test_unusable(void **state)
{
	struct fx *f = fx_new(SECRET);

	(void)state;
	assert_int_equal(post(f, HOOK_STATUS, "{\"status\":\"delivered\"}"), 0);
	assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
	assert_int_equal(f->res.events[0].review, REVIEW_UNUSABLE);
	assert_int_equal(post(f, HOOK_STATUS, "{\"message_uuid\":\"" UUID "\"}"), 0);
	assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
	assert_int_equal(
	    post(f, HOOK_STATUS, "{\"message_uuid\":\"" UUID "\",\"status\":{\"x\":1}}"), 0);
	assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
	fx_free(f);
}

static void test_rejections(void **state)
{
	struct fx *f = fx_new(SECRET);
	char body[2048];

	(void)state;
	status_body(body, sizeof(body), "delivered", NULL);
	/* no header, another scheme, empty */
	f->auth[0] = '\0';
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", body, NOW_S), DLRD_EAUTH);
	util_fmt(f->auth, sizeof(f->auth), "Basic dXNlcjpwYXNz");
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", body, NOW_S), DLRD_EAUTH);
	util_fmt(f->auth, sizeof(f->auth), "Bearer ");
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", body, NOW_S), DLRD_EAUTH);
	/* a scheme name in another case is fine */
	bearer(f, JWT_HS256, SECRET, NOW_S, "j", body);
	memcpy(f->auth, "bearer", 6);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", body, NOW_S), 0);
	/* wrong secret; HS512 with the right one (only HS256 is Vonage's) */
	bearer(f, JWT_HS256, "not-the-secret", NOW_S, "j", body);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", body, NOW_S), DLRD_EAUTH);
	bearer(f, JWT_HS512, SECRET, NOW_S, "j", body);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", body, NOW_S), DLRD_EAUTH);
	/* iat outside 300 s either way; at the edge it passes */
	bearer(f, JWT_HS256, SECRET, NOW_S - 301, "j", body);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", body, NOW_S), DLRD_ESTALE);
	bearer(f, JWT_HS256, SECRET, NOW_S + 301, "j", body);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", body, NOW_S), DLRD_ESTALE);
	bearer(f, JWT_HS256, SECRET, NOW_S - 300, "j", body);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", body, NOW_S), 0);
	/* no iat */
	{
		char tok[1024], claims[256], h[65];
		sha256_hex(body, strlen(body), h);
		util_fmt(claims, sizeof(claims), "{\"jti\":\"j\",\"payload_hash\":\"%s\"}", h);
		assert_true(jwt_sign(JWT_HS256, SECRET, claims, tok, sizeof(tok)) > 0);
		util_fmt(f->auth, sizeof(f->auth), "Bearer %s", tok);
		assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", body, NOW_S),
		                 DLRD_EAUTH);
	}
	/* payload_hash missing, or of another body (the status changed) */
	bearer(f, JWT_HS256, SECRET, NOW_S, "j", NULL);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", body, NOW_S), DLRD_EAUTH);
	bearer(f, JWT_HS256, SECRET, NOW_S, "j", body);
	char tampered[2048];
	status_body(tampered, sizeof(tampered), "rejected", NULL);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", tampered, NOW_S),
	                 DLRD_EAUTH);
	assert_non_null(strstr(f->err, "payload_hash"));
	/* method, media type, body */
	assert_int_equal(run(f, "GET", HOOK_STATUS, "application/json", body, NOW_S), DLRD_EMETHOD);
	assert_int_equal(
	    run(f, "POST", HOOK_STATUS, "application/x-www-form-urlencoded", body, NOW_S),
	    DLRD_EUNSUPP);
	bearer(f, JWT_HS256, SECRET, NOW_S, "j", "not json");
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", "not json", NOW_S),
	                 DLRD_EINVAL);
	assert_null(strstr(f->err, SECRET));
	fx_free(f);
}

/* Vonage may hash a compact re-serialization rather than the raw bytes. */
static void test_payload_hash_compact(void **state)
{
	struct fx *f = fx_new(SECRET);
	const char *pretty = "{\n  \"message_uuid\": \"" UUID "\",\n  \"status\": \"delivered\",\n"
	                     "  \"timestamp\": \"2023-05-01T14:00:00.000Z\"\n}";
	const char *compact = "{\"message_uuid\":\"" UUID "\",\"status\":\"delivered\","
	                      "\"timestamp\":\"2023-05-01T14:00:00.000Z\"}";

	(void)state;
	bearer(f, JWT_HS256, SECRET, NOW_S, "j", compact);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", pretty, NOW_S), 0);
	assert_int_equal(f->res.events[0].status, ST_DELIVERED);
	bearer(f, JWT_HS256, SECRET, NOW_S, "j", pretty);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", pretty, NOW_S), 0);
	fx_free(f);
}

static void test_rotation_and_dedup(void **state)
{
	struct fx *f = fx_new("old-one," SECRET);
	char body[2048], k1[65];

	(void)state;
	status_body(body, sizeof(body), "delivered", NULL);
	bearer(f, JWT_HS256, SECRET, NOW_S, "jti-1", body);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", body, NOW_S), 0);
	util_strlcpy(k1, f->res.events[0].dedup_key, sizeof(k1));
	/* a retry: new jti and iat, other key of the rotation */
	bearer(f, JWT_HS256, "old-one", NOW_S + 60, "jti-2", body);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", body, NOW_S + 60), 0);
	assert_string_equal(k1, f->res.events[0].dedup_key);
	status_body(body, sizeof(body), "read", NULL);
	assert_int_equal(post(f, HOOK_STATUS, body), 0);
	assert_string_not_equal(k1, f->res.events[0].dedup_key);
	fx_free(f);
}

static void test_config(void **state)
{
	char err[256];
	void *st = (void *)1;
	const char *none[] = {NULL};
	const char *bad_tol[] = {"DLRD_VONAGE_MESSAGES_SIGNATURE_SECRETS=s",
	                         "DLRD_VONAGE_MESSAGES_TOLERANCE_SECONDS=abc", NULL};
	const char *tol[] = {"DLRD_VONAGE_MESSAGES_SIGNATURE_SECRETS=s",
	                     "DLRD_VONAGE_MESSAGES_TOLERANCE_SECONDS=60", NULL};

	(void)state;
	assert_int_equal(pt_load(P, none, &st, err, sizeof(err)), 0);
	assert_null(st);
	assert_int_equal(pt_load(P, bad_tol, &st, err, sizeof(err)), DLRD_ECONFIG);
	assert_non_null(strstr(err, "vonage-messages.tolerance_seconds"));
	assert_int_equal(pt_load(P, tol, &st, err, sizeof(err)), 0);
	assert_non_null(st);
	P->fini(st);
	pt_clearenv();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_status_vocabulary),
	    cmocka_unit_test(test_error_catalogue),
	    cmocka_unit_test(test_old_schema_parties_and_canonical_uuid),
	    cmocka_unit_test(test_inbound),
	    cmocka_unit_test(test_unusable),
	    cmocka_unit_test(test_rejections),
	    cmocka_unit_test(test_payload_hash_compact),
	    cmocka_unit_test(test_rotation_and_dedup),
	    cmocka_unit_test(test_config),
	};
	return cmocka_run_group_tests_name("provider_vonage_messages", tests, setup, NULL);
}
