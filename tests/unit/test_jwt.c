/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/jwt.c: the well-known jwt.io HS256 vector, tokens from
 * messagebird-nodejs lib/testdata/webhook-signature-jwt-reference.json
 * (HS256/384/512, a wrong secret, alg "none"), strict base64url (padding,
 * the standard alphabet, non-zero trailing bits, white space), the header
 * rules (alg spelled exactly, allowed set, crit), key rotation, and the
 * claim helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"
#include "jwt.h"
#include "util.h"

/* jwt.io's example token */
#define IO_SECRET "your-256-bit-secret"
#define IO_CLAIMS "{\"sub\":\"1234567890\",\"name\":\"John Doe\",\"iat\":1516239022}"
#define IO_TOKEN                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwi"                                     \
	"aWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"

/* messagebird-nodejs reference vectors */
#define MB_SECRET "36efdd1aace2e26cd490f0d951138253bef2f7c6d34d18981da781555cc4cebb"
#define MB_CLAIMS                                                                                  \
	".eyJpc3MiOiJNZXNzYWdlQmlyZCIsIm5iZiI6MTYyNTQ3OTIwMCwiZXhwIjoxNjI1NDc5MjYwLCJqdGkiOiI1OWE" \
	"y"                                                                                        \
	"NDRkYy1lOWFkLTRlMjMtOTc3OC0zNzFmYWEyMzhmNzIiLCJ1cmxfaGFzaCI6IjBmMTE1ZGIwNjJiN2MwZGQwMzBi" \
	"MTY4NzhjOTlkZWE1YzM1NGI0OWRjMzdiMzhlYjg4NDYxNzljNzc4M2U5ZDcifQ."
#define MB_HS256                                                                                   \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" MB_CLAIMS                                           \
	"6Fp0rVOsRr1fj9S2GidXAfkmPVofKr8_RTffC6G6r2E"
#define MB_HS384                                                                                   \
	"eyJhbGciOiJIUzM4NCIsInR5cCI6IkpXVCJ9" MB_CLAIMS                                           \
	"KNMW-29X77lZeuPmThmHWc_RUAvTkaDkpxIZK6mqE08v8mWKiU9Edh4QXwAJO2nv"
#define MB_HS512                                                                                   \
	"eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9" MB_CLAIMS                                           \
	"rd6r0iMyNGnVPCwurETphE3Y8rpAyvvnUK0S8WvGUkt2E1QSRAZ7NZJZBHw1Y_Wb5W-sK9HJr_PRL2vz4jRT3Q"
/* "Different secret - GET" */
#define MB_OTHER_SECRET                                                                            \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                    \
	"eyJpc3MiOiJNZXNzYWdlQmlyZCIsIm5iZiI6MTYyNTQ3OTIwMCwi"                                     \
	"ZXhwIjoxNjI1NDc5MjYwLCJqdGkiOiIyNDNjMjdhZS0yZjAyLTQ2YTAtODg1Mi1jNjZmMzdlYTlmNDYiLCJ1cmxf" \
	"aGFzaCI6IjBmMTE1ZGIwNjJiN2MwZGQwMzBiMTY4NzhjOTlkZWE1YzM1NGI0OWRjMzdiMzhlYjg4NDYxNzljNzc4" \
	"M2U5ZDcifQ.JgSeYyOtlEKAXk8bz30iJI4tXgf4lxknoiezawuVhb4"
/* "none alg - GET" */
#define MB_NONE                                                                                    \
	"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJNZXNzYWdlQmlyZCIsImlhdCI6MTYyNTQ3OTIwMCwi" \
	"ZXhwIjoxNjI1NDc5MjYwLCJqdGkiOiI1OWEyNDRkYy1lOWFkLTRlMjMtOTc3OC0zNzFmYWEyMzhmNzIiLCJ1cmxf" \
	"aGFzaCI6IjBmMTE1ZGIwNjJiN2MwZGQwMzBiMTY4NzhjOTlkZWE1YzM1NGI0OWRjMzdiMzhlYjg4NDYxNzljNzc4" \
	"M2U5ZDcifQ."

#define ALL (JWT_HS256 | JWT_HS384 | JWT_HS512)

static char err[256];

static int verify(const char *tok, unsigned algs, const char *secret, json_t **claims)
{
	char *secrets[] = {(char *)secret};
	err[0] = '\0';
	return jwt_verify(tok, strlen(tok), algs, secrets, 1, claims, err, sizeof(err));
}

/* Expects rejection with a reason containing why, and no claims. */
static void expect_reject(const char *tok, unsigned algs, const char *secret, const char *why)
{
	json_t *claims = (json_t *)1;
	assert_int_equal(verify(tok, algs, secret, &claims), DLRD_EAUTH);
	assert_null(claims);
	if (!strstr(err, why))
		fail_msg("expected \"%s\", got \"%s\"", why, err);
	if (strlen(secret) >= 8)
		assert_null(strstr(err, secret)); /* never a secret in err */
}

static void test_jwt_io_vector(void **state)
{
	char tok[512];
	json_t *claims = NULL;

	(void)state;
	assert_int_equal(jwt_sign(JWT_HS256, IO_SECRET, IO_CLAIMS, tok, sizeof(tok)),
	                 strlen(IO_TOKEN));
	assert_string_equal(tok, IO_TOKEN);
	assert_int_equal(verify(IO_TOKEN, JWT_HS256, IO_SECRET, &claims), 0);
	assert_string_equal(json_string_value(json_object_get(claims, "name")), "John Doe");
	json_decref(claims);
	expect_reject(IO_TOKEN, JWT_HS256, "your-256-bit-secreT", "does not verify");
	/* too small a buffer */
	assert_int_equal(jwt_sign(JWT_HS256, IO_SECRET, IO_CLAIMS, tok, 100), 0);
}

static void test_messagebird_vectors(void **state)
{
	json_t *claims = NULL;
	int64_t t = 0;

	(void)state;
	assert_int_equal(verify(MB_HS256, ALL, MB_SECRET, &claims), 0);
	assert_int_equal(jwt_claim_time(claims, "nbf", &t), 0);
	assert_int_equal(t, 1625479200);
	assert_int_equal(jwt_claim_time(claims, "exp", &t), 0);
	assert_int_equal(t, 1625479260);
	assert_string_equal(json_string_value(json_object_get(claims, "iss")), "MessageBird");
	json_decref(claims);
	assert_int_equal(verify(MB_HS384, ALL, MB_SECRET, &claims), 0);
	json_decref(claims);
	assert_int_equal(verify(MB_HS512, ALL, MB_SECRET, &claims), 0);
	json_decref(claims);
	expect_reject(MB_OTHER_SECRET, ALL, MB_SECRET, "does not verify");
	/* alg none with its empty signature */
	expect_reject(MB_NONE, ALL, MB_SECRET, "empty segment");
	/* an algorithm the caller did not allow */
	expect_reject(MB_HS384, JWT_HS256, MB_SECRET, "algorithm not allowed");
	expect_reject(MB_HS512, JWT_HS256 | JWT_HS384, MB_SECRET, "algorithm not allowed");
	expect_reject(MB_HS256, JWT_HS512, MB_SECRET, "algorithm not allowed");
}

static void test_rotation(void **state)
{
	char *secrets[] = {"old-secret", MB_SECRET, "another"};
	char *wrong[] = {"old-secret", "another"};
	json_t *claims = NULL;

	(void)state;
	assert_int_equal(
	    jwt_verify(MB_HS256, strlen(MB_HS256), ALL, secrets, 3, &claims, err, sizeof(err)), 0);
	json_decref(claims);
	assert_int_equal(
	    jwt_verify(MB_HS256, strlen(MB_HS256), ALL, wrong, 2, &claims, err, sizeof(err)),
	    DLRD_EAUTH);
	assert_int_equal(
	    jwt_verify(MB_HS256, strlen(MB_HS256), ALL, secrets, 0, &claims, err, sizeof(err)),
	    DLRD_EAUTH);
}

/* base64url (no padding) of HMAC-SHA256(secret, data), via crypto.h. */
static void hmac_b64url(const char *secret, const char *data, char *out)
{
	uint8_t m[CRYPTO_SHA256_LEN];
	struct crypto_piece piece = {data, strlen(data)};
	char b64[64];
	size_t n, o = 0;

	crypto_hmac(CRYPTO_SHA256, secret, strlen(secret), &piece, 1, m);
	n = crypto_b64_encode(m, sizeof(m), b64);
	for (size_t i = 0; i < n; i++) {
		if (b64[i] == '=')
			continue;
		out[o++] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	}
	out[o] = '\0';
}

/* base64url of s, taken from the payload segment jwt_sign makes. */
static void b64url_of(const char *s, char *out, size_t cap)
{
	char tok[2048];
	const char *p1, *p2;

	assert_true(jwt_sign(JWT_HS256, "x", s, tok, sizeof(tok)) > 0);
	p1 = strchr(tok, '.') + 1;
	p2 = strchr(p1, '.');
	util_fmt(out, cap, "%.*s", (int)(p2 - p1), p1);
}

/* A token with an arbitrary header, HS256-signed by hand. */
static void sign_raw(const char *header_json, const char *claims_json, const char *secret,
                     char *out, size_t cap)
{
	char h[1024], c[1024], signing[2100], mac[64];

	b64url_of(header_json, h, sizeof(h));
	b64url_of(claims_json, c, sizeof(c));
	util_fmt(signing, sizeof(signing), "%s.%s", h, c);
	hmac_b64url(secret, signing, mac);
	util_fmt(out, cap, "%s.%s", signing, mac);
}

static void test_header_rules(void **state)
{
	char tok[2048];
	json_t *claims = NULL;

	(void)state;
	/* our hand-made signer agrees with jwt_sign */
	sign_raw("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"a\":1}", "k", tok, sizeof(tok));
	assert_int_equal(verify(tok, JWT_HS256, "k", &claims), 0);
	json_decref(claims);
	/* no typ is fine */
	sign_raw("{\"alg\":\"HS256\"}", "{\"a\":1}", "k", tok, sizeof(tok));
	assert_int_equal(verify(tok, JWT_HS256, "k", &claims), 0);
	json_decref(claims);
	/* alg spelled otherwise, missing, not a string, none */
	sign_raw("{\"alg\":\"hs256\"}", "{\"a\":1}", "k", tok, sizeof(tok));
	expect_reject(tok, ALL, "k", "algorithm not allowed");
	sign_raw("{\"alg\":\"HS256 \"}", "{\"a\":1}", "k", tok, sizeof(tok));
	expect_reject(tok, ALL, "k", "algorithm not allowed");
	sign_raw("{\"typ\":\"JWT\"}", "{\"a\":1}", "k", tok, sizeof(tok));
	expect_reject(tok, ALL, "k", "algorithm not allowed");
	sign_raw("{\"alg\":256}", "{\"a\":1}", "k", tok, sizeof(tok));
	expect_reject(tok, ALL, "k", "algorithm not allowed");
	sign_raw("{\"alg\":\"none\"}", "{\"a\":1}", "k", tok, sizeof(tok));
	expect_reject(tok, ALL, "k", "algorithm not allowed");
	sign_raw("{\"alg\":\"RS256\"}", "{\"a\":1}", "k", tok, sizeof(tok));
	expect_reject(tok, ALL, "k", "algorithm not allowed");
	/* critical extensions are not understood */
	sign_raw("{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", "{\"a\":1}", "k", tok,
	         sizeof(tok));
	expect_reject(tok, ALL, "k", "critical");
	/* duplicate names in header or payload */
	sign_raw("{\"alg\":\"HS256\",\"alg\":\"HS256\"}", "{\"a\":1}", "k", tok, sizeof(tok));
	expect_reject(tok, ALL, "k", "header is not a JSON object");
	sign_raw("{\"alg\":\"HS256\"}", "{\"a\":1,\"a\":2}", "k", tok, sizeof(tok));
	expect_reject(tok, ALL, "k", "payload is not a JSON object");
	/* header and payload must be objects */
	sign_raw("[\"HS256\"]", "{\"a\":1}", "k", tok, sizeof(tok));
	expect_reject(tok, ALL, "k", "header is not a JSON object");
	sign_raw("{\"alg\":\"HS256\"}", "[1,2]", "k", tok, sizeof(tok));
	expect_reject(tok, ALL, "k", "payload is not a JSON object");
	sign_raw("{\"alg\":\"HS256\"}", "\"s\"", "k", tok, sizeof(tok));
	expect_reject(tok, ALL, "k", "payload is not a JSON object");
}

static void test_strict_base64url(void **state)
{
	char tok[1024];
	json_t *claims = NULL;
	const char *sig = strrchr(IO_TOKEN, '.') + 1;

	(void)state;
	/* padding on the signature */
	util_fmt(tok, sizeof(tok), "%s=", IO_TOKEN);
	expect_reject(tok, JWT_HS256, IO_SECRET, "signature is not base64url");
	/* the standard alphabet instead of the URL-safe one */
	util_fmt(tok, sizeof(tok), "%.*s/%s", (int)(sig - IO_TOKEN), IO_TOKEN, sig + 1);
	expect_reject(tok, JWT_HS256, IO_SECRET, "signature");
	util_fmt(tok, sizeof(tok), "%.*s+%s", (int)(sig - IO_TOKEN), IO_TOKEN, sig + 1);
	expect_reject(tok, JWT_HS256, IO_SECRET, "signature");
	/* non-zero trailing bits: the last character of a 43-character MAC
	 * carries 2 spare bits; 'c' (011100) -> 'd' (011101) keeps the MAC
	 * bytes but sets one */
	util_fmt(tok, sizeof(tok), "%.*sd", (int)strlen(IO_TOKEN) - 1, IO_TOKEN);
	expect_reject(tok, JWT_HS256, IO_SECRET, "signature is not base64url");
	/* white space and a newline */
	util_fmt(tok, sizeof(tok), " %s", IO_TOKEN);
	expect_reject(tok, JWT_HS256, IO_SECRET, "header is not base64url");
	util_fmt(tok, sizeof(tok), "%s\n", IO_TOKEN);
	expect_reject(tok, JWT_HS256, IO_SECRET, "signature is not base64url");
	/* a header with '=' padding */
	util_fmt(tok, sizeof(tok), "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9=%s",
	         strchr(IO_TOKEN, '.'));
	expect_reject(tok, JWT_HS256, IO_SECRET, "header is not base64url");
	/* segments: two, four, empty ones */
	expect_reject("a.b", JWT_HS256, IO_SECRET, "three");
	util_fmt(tok, sizeof(tok), "%s.x", IO_TOKEN);
	expect_reject(tok, JWT_HS256, IO_SECRET, "three");
	expect_reject("..", JWT_HS256, IO_SECRET, "empty segment");
	util_fmt(tok, sizeof(tok), "%.*s.", (int)(sig - IO_TOKEN - 1), IO_TOKEN);
	expect_reject(tok, JWT_HS256, IO_SECRET, "empty segment");
	expect_reject("", JWT_HS256, IO_SECRET, "empty");
	/* a MAC of the wrong length (truncated by 4 chars = 3 bytes) */
	util_fmt(tok, sizeof(tok), "%.*s", (int)strlen(IO_TOKEN) - 4, IO_TOKEN);
	expect_reject(tok, JWT_HS256, IO_SECRET, "does not verify");
	/* the untouched token still verifies */
	assert_int_equal(verify(IO_TOKEN, JWT_HS256, IO_SECRET, &claims), 0);
	json_decref(claims);
}

/* The header is parsed before the MAC is checked: its values are bounded
 * (LIM_JSON_UNAUTH_VALUES) before jansson builds them. */
static void test_header_values(void **state)
{
	char hdr[1024], tok[2048];
	json_t *claims = NULL;
	size_t at;

	(void)state;
	/* 1 + 2 opening brackets + 1 + (k - 1) commas: k = 253 is 256 values */
	for (unsigned k = 253; k <= 254; k++) {
		at = (size_t)snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"x\":[1");
		for (unsigned i = 1; i < k; i++)
			at += (size_t)snprintf(hdr + at, sizeof(hdr) - at, ",1");
		snprintf(hdr + at, sizeof(hdr) - at, "]}");
		sign_raw(hdr, "{\"a\":1}", "k", tok, sizeof(tok));
		if (k == 253) {
			assert_int_equal(verify(tok, JWT_HS256, "k", &claims), 0);
			json_decref(claims);
		} else {
			expect_reject(tok, ALL, "k", "token header has more than 256 JSON values");
		}
	}
}

static void test_size_bound(void **state)
{
	size_t n = JWT_MAX_BYTES + 1;
	char *big = malloc(n + 1);
	json_t *claims = NULL;
	char *secrets[] = {"k"};

	(void)state;
	assert_non_null(big);
	memset(big, 'A', n);
	big[10] = '.';
	big[20] = '.';
	big[n] = '\0';
	assert_int_equal(jwt_verify(big, n, JWT_HS256, secrets, 1, &claims, err, sizeof(err)),
	                 DLRD_EAUTH);
	assert_non_null(strstr(err, "longer than"));
	free(big);
}

static void test_claim_helpers(void **state)
{
	json_error_t jerr;
	json_t *c =
	    json_loads("{\"i\":1625479200,\"r\":1625479200.75,\"s\":\"1625479200\","
	               "\"neg\":-1,\"h\":\"DFFD6021BB2BD5B0AF676290809EC3A53191DD81C7F70A4B28688A"
	               "362182986F\",\"n\":null}",
	               0, &jerr);
	int64_t t = 0;

	(void)state;
	assert_non_null(c);
	assert_int_equal(jwt_claim_time(c, "i", &t), 0);
	assert_int_equal(t, 1625479200);
	assert_int_equal(jwt_claim_time(c, "r", &t), 0);
	assert_int_equal(t, 1625479200);
	assert_int_equal(jwt_claim_time(c, "s", &t), DLRD_EINVAL);
	assert_int_equal(jwt_claim_time(c, "neg", &t), DLRD_EINVAL);
	assert_int_equal(jwt_claim_time(c, "n", &t), DLRD_EINVAL);
	assert_int_equal(jwt_claim_time(c, "absent", &t), DLRD_ENOTFOUND);
	/* sha256("Hello, World!"), upper-case hex accepted */
	assert_true(jwt_claim_sha256(c, "h", "Hello, World!", 13));
	assert_false(jwt_claim_sha256(c, "h", "Hello, World?", 13));
	assert_false(jwt_claim_sha256(c, "i", "Hello, World!", 13));
	assert_false(jwt_claim_sha256(c, "absent", "", 0));
	json_decref(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_jwt_io_vector),    cmocka_unit_test(test_messagebird_vectors),
	    cmocka_unit_test(test_rotation),         cmocka_unit_test(test_header_rules),
	    cmocka_unit_test(test_strict_base64url), cmocka_unit_test(test_header_values),
	    cmocka_unit_test(test_size_bound),       cmocka_unit_test(test_claim_helpers),
	};
	return cmocka_run_group_tests_name("jwt", tests, NULL, NULL);
}
