/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the JSON API's integration tests (test_api_*.c), on top of
 * harness.h: one token per role (the daemon is configured with their
 * SHA-256 hashes only, computed here with OpenSSL), requests with a bearer
 * token and a JSON body, and JSON answers decoded with jansson.  Header-only
 * (static functions), so each test binary stays one file.
 */
#ifndef DLRD_TEST_API_HELPERS_H
#define DLRD_TEST_API_HELPERS_H

#include <jansson.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

#define T_APP     "dlrd_test-app-token-0000000000000000000000000"
#define T_VIEWER  "dlrd_test-viewer-token-11111111111111111111111"
#define T_SUPPORT "dlrd_test-support-token-2222222222222222222222"
#define T_ADMIN   "dlrd_test-admin-token-333333333333333333333333"
#define T_APP2    "dlrd_test-second-app-token-444444444444444444"
#define T_WRONG   "dlrd_test-not-configured-token-55555555555555"

/* The numbers the tests send to; none may show up in clear anywhere. */
#define N_TO        H_TO        /* +14155550123, also in h_twilio_body() */
#define N_TO_DIGITS H_TO_DIGITS /* 4155550123 */
#define N_SENDER    H_FROM      /* +15017122661, our number */

/* "role:sha256:hex" for token. */
static inline void api_entry(const char *role, const char *token, char *out, size_t cap)
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	char hex[2 * SHA256_DIGEST_LENGTH + 1];

	SHA256((const unsigned char *)token, strlen(token), md);
	for (size_t i = 0; i < sizeof(md); i++)
		util_fmt(hex + 2 * i, 3, "%02x", md[i]);
	util_fmt(out, cap, "%s:sha256:%s", role, hex);
}

/* "DLRD_API_TOKENS=..." with every test token but T_WRONG. */
static inline const char *api_tokens_env(void)
{
	static char env[H_PATH_MAX];
	static const char *const pairs[][2] = {
	    {"app", T_APP},     {"viewer", T_VIEWER}, {"support", T_SUPPORT},
	    {"admin", T_ADMIN}, {"app", T_APP2},
	};
	size_t n = util_fmt(env, sizeof(env), "DLRD_API_TOKENS=");
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		char e[100];
		api_entry(pairs[i][0], pairs[i][1], e, sizeof(e));
		n += util_fmt(env + n, sizeof(env) - n, "%s%s", i ? "," : "", e);
	}
	return env;
}

/* A request with a bearer token (NULL: none) and a JSON body (NULL: none).
 * extra: NULL or more header lines.  Returns the status (0: no answer). */
/* noinline: inlined into callers with a short extra[], gcc -O2 warns about
 * bounds the loop never reaches. */
static __attribute__((noinline, unused)) long api_call(const struct dlrd *d, const char *method,
                                                       const char *target, const char *token,
                                                       const char *body, const char *const *extra,
                                                       struct h_resp *out)
{
	char auth[300];
	const char *headers[16];
	size_t n = 0;

	if (token) {
		util_fmt(auth, sizeof(auth), "Authorization: Bearer %s", token);
		headers[n++] = auth;
	}
	if (body)
		headers[n++] = "Content-Type: application/json";
	for (size_t i = 0; extra && extra[i] && n < 15; i++)
		headers[n++] = extra[i];
	headers[n] = NULL;
	h_request(d, method, target, headers, body, body ? strlen(body) : 0, out);
	return out->status;
}

/* POST /v1/messages with an Idempotency-Key. */
static inline long api_send(const struct dlrd *d, const char *token, const char *key,
                            const char *body, struct h_resp *out)
{
	char hdr[300];
	const char *extra[] = {hdr, NULL};
	util_fmt(hdr, sizeof(hdr), "Idempotency-Key: %s", key);
	return api_call(d, "POST", "/v1/messages", token, body, extra, out);
}

/* A valid send body; pmid may be NULL, tz may be NULL. */
static inline void api_send_body(char *buf, size_t cap, const char *to, const char *pmid,
                                 const char *use_case, const char *tz)
{
	char p[128] = "", z[96] = "";
	if (pmid)
		util_fmt(p, sizeof(p), "\"provider_message_id\":\"%s\",", pmid);
	if (tz)
		util_fmt(z, sizeof(z), "\"recipient_timezone\":\"%s\",", tz);
	util_fmt(buf, cap,
	         "{\"to\":\"%s\",\"provider\":\"twilio\",%s%s\"use_case\":\"%s\","
	         "\"template_key\":\"login_code\",\"sender_identity\":\"" N_SENDER "\","
	         "\"action\":{\"type\":\"login\",\"id\":\"user-42\"},"
	         "\"metadata\":{\"attempt\":1,\"locale\":\"en-US\"}}",
	         to, p, z, use_case);
}

/* The answer's JSON (caller decrefs); fails the test when it is not JSON. */
static inline json_t *api_json(const struct h_resp *r)
{
	json_error_t e;
	json_t *j = json_loadb(r->body, r->body_len, 0, &e);
	if (!j) {
		fprintf(stderr, "not JSON (%ld): %s\n", r->status, r->body);
		abort();
	}
	return j;
}

/* json path a.b.c as a string ("" when absent or not a string). */
static inline const char *jpath_s(json_t *j, const char *path)
{
	char key[64];
	const char *p = path;
	while (j && *p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		util_fmt(key, sizeof(key), "%.*s", (int)n, p);
		j = json_object_get(j, key);
		p += n + (dot ? 1 : 0);
	}
	return j && json_is_string(j) ? json_string_value(j) : "";
}

static inline json_t *jpath(json_t *j, const char *path)
{
	char key[64];
	const char *p = path;
	while (j && *p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		util_fmt(key, sizeof(key), "%.*s", (int)n, p);
		j = json_object_get(j, key);
		p += n + (dot ? 1 : 0);
	}
	return j;
}

static inline long long jpath_i(json_t *j, const char *path)
{
	j = jpath(j, path);
	return j && json_is_integer(j) ? (long long)json_integer_value(j) : -999999;
}

/* The error code of an error answer ("" when it is not one). */
static inline const char *api_error_code(const struct h_resp *r, char *buf, size_t cap)
{
	json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
	util_strlcpy(buf, jpath_s(j, "error.code"), cap);
	json_decref(j);
	return buf;
}

#endif
