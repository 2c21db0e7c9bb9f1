/* SPDX-License-Identifier: MIT */
/*
 * Compact JWS verification for HMAC-signed webhook tokens (see jwt.h).
 *
 * Order of work, so that an attacker's bytes meet as little code as
 * possible before the MAC is known good: split and size checks; strict
 * base64url decoding of the header; the header's "alg" against the
 * caller's allowed set; the MAC over the raw "header.payload" bytes under
 * every configured secret (constant time, no early exit); only then the
 * payload is decoded and parsed.  Bounded: the whole token is at most
 * JWT_MAX_BYTES, so every buffer below is on the stack.  The header is
 * parsed before the MAC is checked, so its values are bounded first
 * (jsonx_values_ok): 6 KB of "1," would cost jansson 0.7 ms.
 */
#include "jwt.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "crypto.h"
#include "dlrd_limits.h"
#include "json.h"
#include "util.h"

#define MAC_MAX 64 /* SHA-512 */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Strict base64url without padding: only the URL-safe alphabet, a length
 * that is not 1 mod 4, and zero bits past the last whole byte (so every
 * byte string has exactly one encoding).  out needs 3*n/4+1 bytes. */
static int b64url_decode(const char *p, size_t n, uint8_t *out, size_t *outlen)
{
	size_t o = 0, i = 0;
	uint32_t acc = 0;

	*outlen = 0;
	if (n % 4 == 1)
		return DLRD_EINVAL;
	for (; i + 4 <= n; i += 4) {
		acc = 0;
		for (size_t j = 0; j < 4; j++) {
			int v = b64url_val((unsigned char)p[i + j]);
			if (v < 0)
				return DLRD_EINVAL;
			acc = acc << 6 | (uint32_t)v;
		}
		out[o++] = (uint8_t)(acc >> 16);
		out[o++] = (uint8_t)(acc >> 8);
		out[o++] = (uint8_t)acc;
	}
	if (i < n) {
		size_t rem = n - i;
		acc = 0;
		for (size_t j = 0; j < rem; j++) {
			int v = b64url_val((unsigned char)p[i + j]);
			if (v < 0)
				return DLRD_EINVAL;
			acc = acc << 6 | (uint32_t)v;
		}
		if (rem == 2) {
			if (acc & 0xf)
				return DLRD_EINVAL;
			out[o++] = (uint8_t)(acc >> 4);
		} else {
			if (acc & 0x3)
				return DLRD_EINVAL;
			out[o++] = (uint8_t)(acc >> 10);
			out[o++] = (uint8_t)(acc >> 2);
		}
	}
	*outlen = o;
	return 0;
}

/* base64url without padding; out needs 4*((n+2)/3)+1 bytes. */
static size_t b64url_encode(const uint8_t *p, size_t n, char *out)
{
	size_t o = 0, i = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
		out[o++] = b64url[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
	}
	out[o] = '\0';
	return o;
}

static const struct {
	const char *name;
	unsigned bit;
} algs_known[] = {
    {"HS256", JWT_HS256},
    {"HS384", JWT_HS384},
    {"HS512", JWT_HS512},
};

/* HMAC of data under key with alg; returns the MAC length.  crypto.h has
 * no SHA-384, so HS384 (which only MessageBird's verifier accepts, and its
 * reference vectors exercise) goes to libcrypto directly. */
static size_t mac(unsigned alg, const char *key, const void *data, size_t n, uint8_t out[MAC_MAX])
{
	struct crypto_piece piece = {data, n};
	size_t klen = strlen(key);
	unsigned len = 0;

	switch (alg) {
	case JWT_HS256:
		crypto_hmac(CRYPTO_SHA256, key, klen, &piece, 1, out);
		return crypto_md_len(CRYPTO_SHA256);
	case JWT_HS512:
		crypto_hmac(CRYPTO_SHA512, key, klen, &piece, 1, out);
		return crypto_md_len(CRYPTO_SHA512);
	case JWT_HS384:
		/* HMAC() wants a non-NULL key even when it is empty */
		if (!HMAC(EVP_sha384(), klen ? key : "", (int)klen, data, n, out, &len))
			return 0;
		return len;
	default:
		return 0;
	}
}

int jwt_verify(const char *token, size_t n, unsigned algs, char *const *secrets, size_t nsecrets,
               json_t **claims, char *err, size_t errlen)
{
	uint8_t buf[JWT_MAX_BYTES], sig[MAC_MAX + 3], want[MAC_MAX];
	const char *dot1, *dot2;
	size_t hlen, plen, slen, blen, siglen, maclen;
	json_t *hdr = NULL, *payload = NULL, *alg;
	json_error_t jerr;
	unsigned which = 0;
	bool ok = false;

	*claims = NULL;
	if (!token || n == 0 || n > JWT_MAX_BYTES) {
		util_fmt(err, errlen, "token empty or longer than %u bytes", JWT_MAX_BYTES);
		return DLRD_EAUTH;
	}
	dot1 = memchr(token, '.', n);
	dot2 = dot1 ? memchr(dot1 + 1, '.', (size_t)(token + n - dot1 - 1)) : NULL;
	if (!dot2 || memchr(dot2 + 1, '.', (size_t)(token + n - dot2 - 1))) {
		util_fmt(err, errlen, "token is not three dot-separated segments");
		return DLRD_EAUTH;
	}
	hlen = (size_t)(dot1 - token);
	plen = (size_t)(dot2 - dot1 - 1);
	slen = (size_t)(token + n - dot2 - 1);
	if (hlen == 0 || plen == 0 || slen == 0) {
		util_fmt(err, errlen, "token has an empty segment");
		return DLRD_EAUTH;
	}

	/* header */
	if (b64url_decode(token, hlen, buf, &blen) != 0) {
		util_fmt(err, errlen, "token header is not base64url");
		return DLRD_EAUTH;
	}
	if (!jsonx_values_ok((const char *)buf, blen, LIM_JSON_UNAUTH_VALUES)) {
		util_fmt(err, errlen, "token header has more than %u JSON values",
		         LIM_JSON_UNAUTH_VALUES);
		return DLRD_EAUTH;
	}
	hdr = json_loadb((const char *)buf, blen, JSON_REJECT_DUPLICATES, &jerr);
	if (!hdr || !json_is_object(hdr)) {
		util_fmt(err, errlen, "token header is not a JSON object");
		goto fail;
	}
	alg = json_object_get(hdr, "alg");
	for (size_t i = 0; alg && json_is_string(alg) && i < ARRAY_LEN(algs_known); i++) {
		if (strcmp(json_string_value(alg), algs_known[i].name) == 0 &&
		    json_string_length(alg) == strlen(algs_known[i].name))
			which = algs_known[i].bit;
	}
	if (!which || !(algs & which)) {
		util_fmt(err, errlen, "token algorithm not allowed");
		goto fail;
	}
	if (json_object_get(hdr, "crit")) {
		util_fmt(err, errlen, "token has critical header extensions");
		goto fail;
	}

	/* signature: the MAC over the raw "header.payload" bytes */
	if (slen > (MAC_MAX * 4 + 2) / 3 || b64url_decode(dot2 + 1, slen, sig, &siglen) != 0) {
		util_fmt(err, errlen, "token signature is not base64url of a MAC");
		goto fail;
	}
	for (size_t i = 0; i < nsecrets; i++) {
		maclen = mac(which, secrets[i], token, hlen + 1 + plen, want);
		ok |= maclen > 0 && crypto_ct_eq(want, maclen, sig, siglen);
	}
	if (!ok) {
		util_fmt(err, errlen, "token signature does not verify");
		goto fail;
	}

	/* payload */
	if (b64url_decode(dot1 + 1, plen, buf, &blen) != 0) {
		util_fmt(err, errlen, "token payload is not base64url");
		goto fail;
	}
	payload = json_loadb((const char *)buf, blen, JSON_REJECT_DUPLICATES, &jerr);
	if (!payload || !json_is_object(payload)) {
		util_fmt(err, errlen, "token payload is not a JSON object");
		goto fail;
	}
	json_decref(hdr);
	*claims = payload;
	return 0;
fail:
	json_decref(hdr);
	json_decref(payload);
	return DLRD_EAUTH;
}

int jwt_claim_time(const json_t *claims, const char *name, int64_t *secs)
{
	const json_t *v = json_object_get(claims, name);

	if (!v)
		return DLRD_ENOTFOUND;
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (i < 0 || i > (json_int_t)253402300799) /* year 9999 */
			return DLRD_EINVAL;
		*secs = (int64_t)i;
		return 0;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (!(d >= 0 && d <= 253402300799.0))
			return DLRD_EINVAL;
		*secs = (int64_t)d;
		return 0;
	}
	return DLRD_EINVAL;
}

bool jwt_claim_sha256(const json_t *claims, const char *name, const void *data, size_t n)
{
	const json_t *v = json_object_get(claims, name);
	uint8_t md[CRYPTO_SHA256_LEN];
	char hex[2 * CRYPTO_SHA256_LEN + 1];

	if (!v || !json_is_string(v))
		return false;
	crypto_sha256(data, n, md);
	crypto_hex(md, sizeof(md), hex);
	return crypto_ct_eq_nocase(hex, 2 * CRYPTO_SHA256_LEN, json_string_value(v),
	                           json_string_length(v));
}

size_t jwt_sign(unsigned alg, const char *secret, const char *claims_json, char *out, size_t cap)
{
	char hdr_json[48];
	const char *name = NULL;
	uint8_t m[MAC_MAX];
	size_t clen = strlen(claims_json), hl, need, at, ml;

	for (size_t i = 0; i < ARRAY_LEN(algs_known); i++)
		if (algs_known[i].bit == alg)
			name = algs_known[i].name;
	if (!name)
		return 0;
	hl = util_fmt(hdr_json, sizeof(hdr_json), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", name);
	need = 4 * ((hl + 2) / 3) + 1 + 4 * ((clen + 2) / 3) + 1 + 4 * ((MAC_MAX + 2) / 3) + 1;
	if (clen > cap || need > cap)
		return 0;
	at = b64url_encode((const uint8_t *)hdr_json, hl, out);
	out[at++] = '.';
	at += b64url_encode((const uint8_t *)claims_json, clen, out + at);
	ml = mac(alg, secret, out, at, m);
	out[at++] = '.';
	at += b64url_encode(m, ml, out + at);
	return at;
}
