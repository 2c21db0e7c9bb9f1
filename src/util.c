/* SPDX-License-Identifier: MIT */
/*
 * Allocation wrappers that abort on out-of-memory, bounded string helpers,
 * strict integer parsing, clocks, RFC 3339 and UUIDv7.
 */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"

static void oom(size_t n)
{
	char msg[96];
	int len = snprintf(msg, sizeof(msg), "dlrd: out of memory allocating %zu bytes\n", n);
	if (len > 0)
		(void)!write(2, msg, (size_t)len);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

size_t util_strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);
	if (size) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

size_t util_fmt(char *dst, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!size)
		return 0;
	va_start(ap, fmt);
	n = vsnprintf(dst, size, fmt, ap);
	va_end(ap);
	if (n < 0) {
		dst[0] = '\0';
		return 0;
	}
	return (size_t)n < size ? (size_t)n : size - 1;
}

bool iov_eq(struct iov a, const char *s)
{
	size_t n = strlen(s);
	return a.n == n && memcmp(a.p, s, n) == 0;
}

bool iov_eq_nocase(struct iov a, const char *s)
{
	size_t n = strlen(s);
	return a.n == n && strncasecmp(a.p, s, n) == 0;
}

int util_parse_u64(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 19)
		return DLRD_EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return DLRD_EINVAL;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	if (v > (uint64_t)INT64_MAX)
		return DLRD_EINVAL;
	*out = v;
	return 0;
}

int64_t util_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t util_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t util_mono_ms(void)
{
	return (int64_t)(util_mono_ns() / 1000000u);
}

void util_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

void util_deadline(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void put_digits(char *p, unsigned v, int n)
{
	while (n-- > 0) {
		p[n] = (char)('0' + v % 10);
		v /= 10;
	}
}

void util_rfc3339(int64_t ms, char buf[25])
{
	time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	unsigned frac = (unsigned)(ms - (int64_t)secs * 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	memcpy(buf, "0000-00-00T00:00:00.000Z", 25);
	put_digits(buf, (unsigned)(tm.tm_year + 1900) % 10000, 4);
	put_digits(buf + 5, (unsigned)tm.tm_mon + 1, 2);
	put_digits(buf + 8, (unsigned)tm.tm_mday, 2);
	put_digits(buf + 11, (unsigned)tm.tm_hour, 2);
	put_digits(buf + 14, (unsigned)tm.tm_min, 2);
	put_digits(buf + 17, (unsigned)tm.tm_sec, 2);
	put_digits(buf + 20, frac, 3);
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), Howard Hinnant's
 * days_from_civil. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *p, size_t n, unsigned *out)
{
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	*out = v;
	return 0;
}

int util_parse_rfc3339(const char *p, size_t n, int64_t *ms)
{
	unsigned y, mo, d, h, mi, s, frac = 0;
	size_t i = 19;
	int64_t off = 0;
	static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (n < 20 || p[4] != '-' || p[7] != '-' ||
	    (p[10] != 'T' && p[10] != 't' && p[10] != ' ') || p[13] != ':' || p[16] != ':')
		return DLRD_EINVAL;
	if (digits(p, 4, &y) || digits(p + 5, 2, &mo) || digits(p + 8, 2, &d) ||
	    digits(p + 11, 2, &h) || digits(p + 14, 2, &mi) || digits(p + 17, 2, &s))
		return DLRD_EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || s > 60)
		return DLRD_EINVAL;
	if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return DLRD_EINVAL;
	if (s == 60)
		s = 59; /* leap second: clamp */
	if (i < n && p[i] == '.') {
		size_t k = 0;
		i++;
		while (i < n && p[i] >= '0' && p[i] <= '9') {
			if (k < 3)
				frac = frac * 10 + (unsigned)(p[i] - '0');
			k++;
			i++;
		}
		if (k == 0 || k > 9)
			return DLRD_EINVAL;
		for (; k < 3; k++)
			frac *= 10;
	}
	if (i >= n)
		return DLRD_EINVAL;
	if (p[i] == 'Z' || p[i] == 'z') {
		i++;
	} else if (p[i] == '+' || p[i] == '-') {
		unsigned oh, om;
		if (n - i != 6 || p[i + 3] != ':' || digits(p + i + 1, 2, &oh) ||
		    digits(p + i + 4, 2, &om) || oh > 23 || om > 59)
			return DLRD_EINVAL;
		off = ((int64_t)oh * 60 + om) * 60;
		if (p[i] == '-')
			off = -off;
		i += 6;
	} else {
		return DLRD_EINVAL;
	}
	if (i != n)
		return DLRD_EINVAL;
	int64_t secs = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + mi * 60 + s - off;
	*ms = secs * 1000 + frac;
	return 0;
}

void util_uuid7(char buf[37])
{
	uint8_t b[16];
	uint64_t ms = (uint64_t)util_now_ms();
	static const char hex[] = "0123456789abcdef";

	crypto_random_public(b, sizeof(b));
	for (int i = 0; i < 6; i++)
		b[i] = (uint8_t)(ms >> (40 - 8 * i));
	b[6] = (uint8_t)(0x70 | (b[6] & 0x0f));
	b[8] = (uint8_t)(0x80 | (b[8] & 0x3f));
	for (int i = 0, j = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			buf[j++] = '-';
		buf[j++] = hex[b[i] >> 4];
		buf[j++] = hex[b[i] & 15];
	}
	buf[36] = '\0';
}
