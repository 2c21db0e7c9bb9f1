/* SPDX-License-Identifier: MIT */
/*
 * Compact JWS (JWT) verification for HMAC-signed webhook tokens, shared by
 * the providers that sign callbacks that way (Vonage Messages, MessageBird).
 *
 * The verifier is deliberately narrow: three base64url segments without
 * padding, decoded strictly (URL-safe alphabet only, no trailing bits, no
 * white space); a JSON object header whose "alg" is one of the HMAC
 * algorithms the caller allows, spelled exactly ("none" and every other
 * algorithm are refused, and so is a "crit" header); the MAC checked in
 * constant time against each configured secret (key rotation); then the
 * payload parsed as a JSON object with duplicate names refused.  Claim
 * checks (times, hashes, issuer) are the caller's, with the helpers below.
 * Pure functions; any thread.  No secret is ever written to err.
 */
#ifndef DLRD_JWT_H
#define DLRD_JWT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Algorithms a caller may allow (bit set). */
enum {
	JWT_HS256 = 1u << 0,
	JWT_HS384 = 1u << 1,
	JWT_HS512 = 1u << 2,
};

/* The longest token accepted, in bytes: far above what providers send, far
 * below the header limit. */
#define JWT_MAX_BYTES 8192u

/*
 * Verifies token[0..n) (not NUL-terminated) against secrets[0..nsecrets)
 * (NUL-terminated strings, used as raw key bytes) with any algorithm in
 * algs.  On success returns 0 and sets *claims to the payload object, which
 * the caller owns (json_decref).  On failure *claims is NULL and the result
 * is DLRD_EAUTH with a reason in err (malformed token, algorithm not
 * allowed, signature mismatch, payload not a JSON object).
 */
int jwt_verify(const char *token, size_t n, unsigned algs, char *const *secrets, size_t nsecrets,
               json_t **claims, char *err, size_t errlen);

/*
 * Reads a numeric date claim (seconds since the epoch, an integer or a real
 * with a fraction, as RFC 7519 allows).  Returns 0, DLRD_ENOTFOUND when the
 * claim is absent, or DLRD_EINVAL when it is not a number in range.
 */
int jwt_claim_time(const json_t *claims, const char *name, int64_t *secs);

/*
 * True when the string claim name is the hex SHA-256 of data[0..n)
 * (compared in constant time, hex case-insensitive).  False when the claim
 * is absent, not a string, or different.
 */
bool jwt_claim_sha256(const json_t *claims, const char *name, const void *data, size_t n);

/*
 * Signs claims_json (a JSON object, used byte for byte as the payload) with
 * HMAC under secret, alg one of JWT_HS256/384/512, header
 * {"alg":"HS...","typ":"JWT"}.  For tests, fuzzers and the benchmark's
 * request generator.  Writes a NUL-terminated token to out and returns its
 * length, or 0 when it does not fit in cap.
 */
size_t jwt_sign(unsigned alg, const char *secret, const char *claims_json, char *out, size_t cap);

#endif
