/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: RFC 3339 timestamps (util.c), which providers put in their
 * payloads and which decide event precedence once parsed.
 *
 * Input: one mode byte, then bytes.
 * - Parse mode (even): when util_parse_rfc3339() accepts the text, its
 *   result must equal an independent computation (glibc timegm() over the
 *   fields at their fixed positions, the fraction truncated to
 *   milliseconds, minus the offset), and for years 0000..9999 formatting it
 *   with util_rfc3339() and parsing that again gives the same instant.
 * - Format mode (odd): eight bytes are an instant; clamped to years
 *   0000..9999, util_rfc3339() then util_parse_rfc3339() gives it back.
 */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z in ms since the epoch. */
#define FR_MIN_MS (-62167219200000LL)
#define FR_END_MS (253402300800000LL)

static unsigned fr_num(const char *p, size_t n)
{
	unsigned v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (unsigned)(p[i] - '0');
	return v;
}

/* The instant the text means, computed another way (text already accepted
 * by the parser, so the fixed positions hold digits). */
static int64_t fr_oracle(const char *p, size_t n)
{
	struct tm tm;
	int64_t ms, off = 0;
	size_t i = 19;
	unsigned frac = 0, sec = fr_num(p + 17, 2);

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = (int)fr_num(p, 4) - 1900;
	tm.tm_mon = (int)fr_num(p + 5, 2) - 1;
	tm.tm_mday = (int)fr_num(p + 8, 2);
	tm.tm_hour = (int)fr_num(p + 11, 2);
	tm.tm_min = (int)fr_num(p + 14, 2);
	tm.tm_sec = (int)(sec == 60 ? 59 : sec); /* a leap second is clamped */
	if (p[i] == '.') {
		unsigned k = 0;
		for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++, k++)
			if (k < 3)
				frac = frac * 10 + (unsigned)(p[i] - '0');
		for (; k < 3; k++)
			frac *= 10;
	}
	if (p[n - 1] != 'Z' && p[n - 1] != 'z') {
		off = ((int64_t)fr_num(p + n - 5, 2) * 60 + fr_num(p + n - 2, 2)) * 60;
		if (p[n - 6] == '-')
			off = -off;
	}
	ms = ((int64_t)timegm(&tm) - off) * 1000 + frac;
	return ms;
}

static void fr_roundtrip(int64_t ms)
{
	char buf[25];
	int64_t back = 0;

	util_rfc3339(ms, buf);
	FZ_CHECK(buf[24] == '\0' && strlen(buf) == 24);
	FZ_CHECK(util_parse_rfc3339(buf, 24, &back) == 0);
	FZ_CHECK(back == ms);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t mode = fz_byte(&in);

	if ((mode & 1) == 0) {
		char *text = fz_exact((struct iov){(const char *)in.p, in.n});
		int64_t ms = 0;
		if (util_parse_rfc3339(text ? text : "", in.n, &ms) == 0) {
			FZ_CHECK(in.n >= 20);
			FZ_CHECK(ms == fr_oracle(text, in.n));
			if (ms >= FR_MIN_MS && ms < FR_END_MS)
				fr_roundtrip(ms);
		}
		free(text);
	} else {
		uint64_t u = 0;
		memcpy(&u, in.p, in.n < 8 ? in.n : 8);
		int64_t span = FR_END_MS - FR_MIN_MS;
		fr_roundtrip(FR_MIN_MS + (int64_t)(u % (uint64_t)span));
	}
	return 0;
}
