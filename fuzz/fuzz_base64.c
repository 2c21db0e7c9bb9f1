/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: base64 (crypto.c), which decodes signature headers from
 * outside before anything else is trusted.
 *
 * Input: one mode byte, then bytes.
 * - Decode mode (even): the bytes are decoded into a buffer of exactly the
 *   documented size (3*(n/4)+3), so any overrun is caught.  When they
 *   decode, encoding the result and decoding that gives the same bytes, the
 *   decoded length fits 3*n/4, and the same text in the other alphabet
 *   (standard <-> URL-safe) decodes to the same bytes.  The decoder rejects
 *   non-zero trailing bits, so decoding is one-to-one: re-encoding gives
 *   back the input itself, in the standard alphabet with padding.
 * - Encode mode (odd): the bytes are encoded; the text is canonical (length
 *   4*ceil(n/3), only the standard alphabet and trailing '='), decodes back
 *   to the input, and so does its URL-safe, unpadded form.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decodes text into an exact-size buffer; returns it (free it) or NULL. */
static uint8_t *fb_decode(const char *text, size_t n, size_t *outlen)
{
	uint8_t *out = xmalloc(3 * (n / 4) + 3);

	if (crypto_b64_decode(text, n, out, outlen) != 0) {
		free(out);
		return NULL;
	}
	FZ_CHECK(*outlen <= 3 * (n / 4) + 3);
	return out;
}

/* Swaps the two alphabets' extra characters and drops padding. */
static size_t fb_other_alphabet(const char *in, size_t n, char *out)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		if (c == '=')
			continue;
		out[k++] = c == '+' ? '-' : c == '/' ? '_' : c == '-' ? '+' : c == '_' ? '/' : c;
	}
	return k;
}

static int fb_is_std(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t mode = fz_byte(&in);
	char *text = fz_exact((struct iov){(const char *)in.p, in.n});
	const char *src = text ? text : "";

	if ((mode & 1) == 0) {
		size_t n1, n2, n3;
		uint8_t *raw = fb_decode(src, in.n, &n1);
		if (raw) {
			char *enc = xmalloc(4 * ((n1 + 2) / 3) + 1);
			size_t elen = crypto_b64_encode(raw, n1, enc);
			uint8_t *again = fb_decode(enc, elen, &n2);
			char *alt = xmalloc(in.n + 1);
			size_t alen = fb_other_alphabet(src, in.n, alt);
			uint8_t *other = fb_decode(alt, alen, &n3);

			FZ_CHECK(n1 <= 3 * ((in.n + 3) / 4));
			/* canonical: the input, in the standard alphabet and padded */
			char *canon = xmalloc(in.n + 4);
			size_t clen = fb_other_alphabet(src, in.n, canon);
			for (size_t i = 0; i < clen; i++)
				canon[i] = canon[i] == '-' ? '+' : canon[i] == '_' ? '/' : canon[i];
			while (clen % 4)
				canon[clen++] = '=';
			FZ_CHECK(clen == elen && memcmp(canon, enc, elen) == 0);
			free(canon);
			FZ_CHECK(again != NULL && n2 == n1 && memcmp(again, raw, n1) == 0);
			/* whether the other alphabet is accepted is the decoder's choice,
			 * but it must never decode to different bytes */
			FZ_CHECK(other == NULL || (n3 == n1 && memcmp(other, raw, n1) == 0));
			free(other);
			free(alt);
			free(again);
			free(enc);
			free(raw);
		}
	} else {
		size_t elen, n1, n2;
		char *enc = xmalloc(4 * ((in.n + 2) / 3) + 1);
		elen = crypto_b64_encode(in.p, in.n, enc);
		FZ_CHECK(elen == 4 * ((in.n + 2) / 3));
		FZ_CHECK(enc[elen] == '\0');
		for (size_t i = 0; i < elen; i++)
			FZ_CHECK(fb_is_std(enc[i]) || (enc[i] == '=' && i + 2 >= elen));
		uint8_t *raw = fb_decode(enc, elen, &n1);
		FZ_CHECK(raw != NULL && n1 == in.n && memcmp(raw, in.p, in.n) == 0);
		char *url = xmalloc(elen + 1);
		size_t ulen = fb_other_alphabet(enc, elen, url);
		uint8_t *raw2 = fb_decode(url, ulen, &n2);
		FZ_CHECK(raw2 != NULL && n2 == in.n && memcmp(raw2, in.p, in.n) == 0);
		free(raw2);
		free(url);
		free(raw);
		free(enc);
	}
	free(text);
	return 0;
}
