/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: phone numbers (phone.c), which every adapter feeds with the
 * recipient exactly as the provider sent it.
 *
 * Input: the raw number.  Properties, from the contract in phone.h:
 * - phone_normalize() accepts only what becomes "+" and 7..15 digits (8..15
 *   when the input has no "+"), the first not 0, NUL-terminated within
 *   PHONE_E164_MAX+1 bytes, and is idempotent (normalizing its output gives
 *   the output);
 * - phone_country() is NULL or two upper-case letters, and the same for the
 *   same number;
 * - phone_calling_code() is 0..3 digits that prefix the number;
 * - phone_mask() keeps the '+' and never shows more digits than the calling
 *   code (three when unknown) and the last two, within bounds: the point of
 *   masking;
 * - phone_hash() is 64 lower-case hex digits and deterministic.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "phone.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fp_key[] = "fuzz-phone-hash-key-0123456789a";

static size_t fp_digits(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s >= '0' && *s <= '9';
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *raw = fz_exact((struct iov){(const char *)data, size});
	char e164[PHONE_E164_MAX + 1], again[PHONE_E164_MAX + 1];
	char mask[PHONE_E164_MAX + 1], cc[4], h1[65], h2[65];
	const char *country;
	size_t len, cclen;

	memset(e164, 0x7f, sizeof(e164));
	if (phone_normalize(raw ? raw : "", size, e164) != 0) {
		free(raw);
		return 0;
	}
	len = strnlen(e164, sizeof(e164));
	FZ_CHECK(len < sizeof(e164));
	FZ_CHECK(e164[0] == '+');
	/* 7..15 digits with a '+' (Niue, Tokelau), 8..15 without */
	FZ_CHECK(len - 1 >= 7 && len - 1 <= 15);
	FZ_CHECK(len - 1 >= 8 || memchr(data, '+', size) != NULL);
	FZ_CHECK(fp_digits(e164) == len - 1);
	FZ_CHECK(e164[1] != '0');
	FZ_CHECK(phone_normalize(e164, len, again) == 0 && strcmp(again, e164) == 0);

	country = phone_country(e164);
	if (country) {
		FZ_CHECK(strlen(country) == 2);
		FZ_CHECK(country[0] >= 'A' && country[0] <= 'Z' && country[1] >= 'A' &&
		         country[1] <= 'Z');
		const char *c2 = phone_country(again);
		FZ_CHECK(c2 != NULL && strcmp(c2, country) == 0);
	}
	cclen = phone_calling_code(e164, cc);
	FZ_CHECK(cclen <= 3);
	if (cclen) {
		FZ_CHECK(cc[cclen] == '\0');
		FZ_CHECK(memcmp(cc, e164 + 1, cclen) == 0);
	}

	memset(mask, 0x7f, sizeof(mask));
	phone_mask(e164, mask);
	FZ_CHECK(strnlen(mask, sizeof(mask)) < sizeof(mask));
	FZ_CHECK(mask[0] == '+');
	/* an unknown calling code may show as up to three digits */
	FZ_CHECK(fp_digits(mask) <= (cclen ? cclen : 3) + 2);
	FZ_CHECK(strchr(mask, '*') != NULL);

	phone_hash(fp_key, sizeof(fp_key), e164, h1);
	phone_hash(fp_key, sizeof(fp_key), again, h2);
	FZ_CHECK(strlen(h1) == 64 && strcmp(h1, h2) == 0);
	for (size_t i = 0; i < 64; i++)
		FZ_CHECK((h1[i] >= '0' && h1[i] <= '9') || (h1[i] >= 'a' && h1[i] <= 'f'));
	free(raw);
	return 0;
}
