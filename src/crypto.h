/* SPDX-License-Identifier: MIT */
/*
 * Cryptographic primitives over OpenSSL libcrypto: digests, HMAC, base64,
 * hex, constant-time comparison and random bytes.  Pure functions, callable
 * from any thread.
 */
#ifndef DLRD_CRYPTO_H
#define DLRD_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define CRYPTO_SHA1_LEN   20
#define CRYPTO_SHA256_LEN 32

enum crypto_md { CRYPTO_MD5, CRYPTO_SHA1, CRYPTO_SHA256, CRYPTO_SHA512 };
/* Digest length in bytes of md. */
size_t crypto_md_len(enum crypto_md md);

void crypto_sha256(const void *p, size_t n, uint8_t out[CRYPTO_SHA256_LEN]);

/* One-shot HMAC over a list of pieces (so callers need not concatenate).
 * out must hold crypto_md_len(md) bytes. */
struct crypto_piece {
	const void *p;
	size_t n;
};
void crypto_hmac(enum crypto_md md, const void *key, size_t keylen,
                 const struct crypto_piece *pieces, size_t npieces, uint8_t *out);

/* SHA-256 of the concatenation of the pieces, without building it. */
void crypto_sha256_pieces(const struct crypto_piece *pieces, size_t npieces,
                          uint8_t out[CRYPTO_SHA256_LEN]);

/* Streaming HMAC for signature schemes that feed many small pieces. */
struct crypto_hmac_ctx;
struct crypto_hmac_ctx *crypto_hmac_new(enum crypto_md md, const void *key, size_t keylen);
void crypto_hmac_update(struct crypto_hmac_ctx *c, const void *p, size_t n);
/* Writes the MAC to out and frees the context. */
void crypto_hmac_final(struct crypto_hmac_ctx *c, uint8_t *out);

/* Standard base64 with padding. out needs 4*((n+2)/3)+1 bytes; NUL-terminated.
 * Returns the length written. */
size_t crypto_b64_encode(const uint8_t *p, size_t n, char *out);
/* Decodes standard or URL-safe base64, padding optional; rejects anything
 * else.  *outlen gets the decoded length (out needs 3*(n/4)+3 bytes).
 * Returns 0 or DLRD_EINVAL. */
int crypto_b64_decode(const char *p, size_t n, uint8_t *out, size_t *outlen);

/* Lower-case hex; out needs 2n+1 bytes; NUL-terminated. */
void crypto_hex(const uint8_t *p, size_t n, char *out);

/* Constant-time equality of two byte strings (time depends only on the
 * lengths). */
bool crypto_ct_eq(const void *a, size_t alen, const void *b, size_t blen);
/* Constant-time, ASCII case-insensitive (for hex signatures). */
bool crypto_ct_eq_nocase(const char *a, size_t alen, const char *b, size_t blen);

/* Fills buf with cryptographically secure random bytes; aborts on failure. */
void crypto_random(void *buf, size_t n);
/* Random bytes for values that are public anyway (AES-GCM nonces, the random
 * bits of UUIDv7 ids), from a per-thread buffer of crypto_random() output.
 * Never for keys or tokens. */
void crypto_random_public(void *buf, size_t n);

#endif
