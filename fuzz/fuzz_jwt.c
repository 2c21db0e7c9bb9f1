/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: jwt_verify() (jwt.c), the HMAC JWT check in front of Vonage
 * Messages and MessageBird callbacks.
 *
 * Input: one flags byte, then parts separated by 0x1e.
 * - Flags & 3 == 3 (forged): part 1 is the token, verified as is against
 *   the two configured secrets with every algorithm allowed.
 * - Otherwise (signed): flags & 3 picks HS256, HS384 or HS512; part 1 is a
 *   claims text (cut at a NUL byte) that the target signs with jwt_sign()
 *   under the first or second secret (flag 4); part 2's first three bytes
 *   pick a byte of the token (two bytes, big-endian) and what it is XORed
 *   with (a zero XOR is taken as 1).
 *
 * Properties:
 * - jwt_verify() answers 0 with a claims object, or DLRD_EAUTH with no
 *   claims and a reason; the reason never holds a secret.
 * - Forged: a token accepted is signed with a configured secret: its third
 *   segment is exactly the unpadded base64url HMAC, computed here with
 *   libcrypto, of its first two segments, for HS256, HS384 or HS512.
 * - Signed: the token (when no longer than JWT_MAX_BYTES) verifies exactly
 *   when the claims text is a JSON object without duplicate names, and its
 *   claims are that object; it verifies with its own algorithm alone, not
 *   with the other two, and not under a third secret.  Any single byte of
 *   it changed, the token is refused (the decoding is strict, so no part of
 *   a token is ignored).
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "fuzz.h"
#include "jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fjwt_k1[] = "fuzz-secret-one";
static char fjwt_k2[] = "a second, rotated secret of 48 bytes ...........";
static char *const fjwt_secrets[] = {fjwt_k1, fjwt_k2};
static char *const fjwt_other[] = {(char *)"not the secret"};
#define FJWT_ALL (JWT_HS256 | JWT_HS384 | JWT_HS512)

/* jwt_verify() with the checks every answer must pass; returns its rc. */
static int fjwt_verify(const char *tok, size_t n, unsigned algs, char *const *secrets, size_t ns,
                       json_t **claims)
{
	char err[256];
	int rc;

	err[0] = '\0';
	rc = jwt_verify(tok, n, algs, secrets, ns, claims, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == DLRD_EAUTH);
	if (rc == 0) {
		FZ_CHECK(*claims != NULL && json_is_object(*claims));
	} else {
		FZ_CHECK(*claims == NULL);
		FZ_CHECK(err[0] != '\0');
	}
	FZ_CHECK(strstr(err, fjwt_k1) == NULL && strstr(err, fjwt_k2) == NULL);
	return rc;
}

/* Unpadded base64url of p[0..n) into out (4*((n+2)/3)+1 bytes); its length. */
static size_t fjwt_b64url(const uint8_t *p, size_t n, char *out)
{
	size_t m = crypto_b64_encode(p, n, out);

	while (m && out[m - 1] == '=')
		m--;
	for (size_t i = 0; i < m; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	out[m] = '\0';
	return m;
}

/* Whether tok[0..n) is "A.B.S" with S the HMAC of "A.B" under a configured
 * secret with one of the three algorithms, by libcrypto directly. */
static bool fjwt_signed_by_us(const char *tok, size_t n)
{
	const EVP_MD *mds[] = {EVP_sha256(), EVP_sha384(), EVP_sha512()};
	const char *dot = memchr(tok, '.', n);
	const char *dot2 = dot ? memchr(dot + 1, '.', (size_t)(tok + n - dot - 1)) : NULL;
	size_t signed_len, slen;

	if (!dot2)
		return false;
	signed_len = (size_t)(dot2 - tok);
	slen = n - signed_len - 1;
	for (size_t s = 0; s < ARRAY_LEN(fjwt_secrets); s++) {
		for (size_t a = 0; a < ARRAY_LEN(mds); a++) {
			uint8_t m[EVP_MAX_MD_SIZE];
			unsigned ml = 0;
			char enc[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
			const char *k = fjwt_secrets[s];
			if (!HMAC(mds[a], k, (int)strlen(k), (const uint8_t *)tok, signed_len, m,
			          &ml))
				continue;
			size_t el = fjwt_b64url(m, ml, enc);
			if (el == slen && memcmp(enc, dot2 + 1, el) == 0)
				return true;
		}
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned algs[] = {JWT_HS256, JWT_HS384, JWT_HS512};
	struct fz_in in = {data, size};
	uint8_t flags = fz_byte(&in);
	json_t *claims = NULL;

	if ((flags & 3) == 3) {
		struct iov t = fz_part(&in, NULL);
		char *tok = fz_exact(t);
		if (fjwt_verify(tok, t.n, FJWT_ALL, fjwt_secrets, ARRAY_LEN(fjwt_secrets),
		                &claims) == 0)
			FZ_CHECK(fjwt_signed_by_us(tok, t.n));
		json_decref(claims);
		free(tok);
		return 0;
	}

	unsigned alg = algs[flags & 3];
	char *text = fz_cstr(fz_part(&in, NULL));
	struct iov mut = fz_part(&in, NULL);
	size_t cap = 4 * JWT_MAX_BYTES;
	char *tok = xmalloc(cap);
	size_t n = jwt_sign(alg, fjwt_secrets[(flags >> 2) & 1], text, tok, cap);
	json_t *want = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	bool good = want && json_is_object(want);

	if (n > 0 && n <= JWT_MAX_BYTES) {
		char *exact = fz_exact((struct iov){tok, n});
		int rc =
		    fjwt_verify(exact, n, FJWT_ALL, fjwt_secrets, ARRAY_LEN(fjwt_secrets), &claims);
		FZ_CHECK((rc == 0) == good);
		if (rc == 0)
			FZ_CHECK(json_equal(claims, want));
		json_decref(claims);
		claims = NULL;
		if (good) {
			FZ_CHECK(fjwt_verify(exact, n, alg, fjwt_secrets, ARRAY_LEN(fjwt_secrets),
			                     &claims) == 0);
			json_decref(claims);
			claims = NULL;
			FZ_CHECK(fjwt_verify(exact, n, FJWT_ALL & ~alg, fjwt_secrets,
			                     ARRAY_LEN(fjwt_secrets), &claims) != 0);
			FZ_CHECK(fjwt_verify(exact, n, FJWT_ALL, fjwt_other, 1, &claims) != 0);
		}
		/* one byte changed */
		const uint8_t *m = (const uint8_t *)mut.p;
		size_t pos = mut.n >= 2 ? ((size_t)m[0] << 8 | m[1]) % n : 0;
		uint8_t x = mut.n >= 3 && m[2] ? m[2] : 1;
		exact[pos] = (char)(exact[pos] ^ x);
		FZ_CHECK(fjwt_verify(exact, n, FJWT_ALL, fjwt_secrets, ARRAY_LEN(fjwt_secrets),
		                     &claims) != 0);
		free(exact);
	}
	json_decref(want);
	free(tok);
	free(text);
	return 0;
}
