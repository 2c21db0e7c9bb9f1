/* SPDX-License-Identifier: MIT */
/*
 * Small helpers every module uses: allocation that aborts on out-of-memory
 * (pressure is kept off by bounded queues, not by NULL checks), a pointer plus
 * length view of bytes, project error codes and clock helpers.
 */
#ifndef DLRD_UTIL_H
#define DLRD_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

/* Project error codes: functions return 0 or one of these (negative). */
enum {
	DLRD_OK = 0,
	DLRD_EINVAL = -1, /* bad input from outside */
	DLRD_ENOMEM = -2, /* a bound was reached */
	DLRD_EIO = -3,    /* storage or system I/O failed */
	DLRD_EAUTH = -4,  /* authentication failed */
	DLRD_ENOTFOUND = -5,
	DLRD_EFULL = -6, /* queue full, try later */
	DLRD_ECONFIG = -7,
	DLRD_EUNSUPP = -8, /* unsupported media type, method, ... */
	DLRD_ETOOBIG = -9,
	DLRD_ESTALE = -10,  /* timestamp outside the tolerance */
	DLRD_EMETHOD = -11, /* method not allowed */
	DLRD_EBUSY = -12,   /* a bounded resource is in use, try later */
};

/* A borrowed view of bytes; not NUL-terminated unless stated. */
struct iov {
	const char *p;
	size_t n;
};

#define IOV_LIT(s)   ((struct iov){(s), sizeof(s) - 1})
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Copies at most size-1 bytes of src into dst and NUL-terminates (size > 0).
 * Returns the length of src, like strlcpy. */
size_t util_strlcpy(char *dst, const char *src, size_t size);

/* snprintf that always NUL-terminates and returns the number of bytes
 * written (clamped to size-1). */
size_t util_fmt(char *dst, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* true when the n bytes at a equal the NUL-terminated s exactly. */
bool iov_eq(struct iov a, const char *s);
/* ASCII case-insensitive variant. */
bool iov_eq_nocase(struct iov a, const char *s);

/* Parses a non-negative decimal integer that fits in int64 and has no sign,
 * space or trailing bytes. Returns 0 or DLRD_EINVAL. */
int util_parse_u64(const char *p, size_t n, uint64_t *out);

/* Wall clock, milliseconds since the Unix epoch. */
int64_t util_now_ms(void);
/* Monotonic clock in nanoseconds, and in milliseconds (deadlines, ages). */
uint64_t util_mono_ns(void);
int64_t util_mono_ms(void);
/* Timed waits on the monotonic clock, which a wall-clock step (NTP on a
 * fresh VM) cannot move: util_cond_init() makes a condition variable whose
 * pthread_cond_timedwait() deadlines util_deadline() gives, ms from now. */
void util_cond_init(pthread_cond_t *cv);
void util_deadline(struct timespec *ts, unsigned ms);

/* The last instant util_rfc3339() can write (four-digit years) and
 * PostgreSQL's timestamptz takes from it: 9999-12-31T23:59:59.999Z. */
#define UTIL_TIME_MAX_MS 253402300799999LL

/* Formats ms-since-epoch as RFC 3339 UTC with milliseconds
 * ("2026-11-27T15:10:00.123Z"); buf needs 25 bytes. */
void util_rfc3339(int64_t ms, char buf[25]);

/* Parses RFC 3339 (any offset, optional fraction) into ms since the epoch, UTC. */
int util_parse_rfc3339(const char *p, size_t n, int64_t *ms);

/* Writes a UUIDv7 (time-ordered) in canonical lower-case form; buf needs 37. */
void util_uuid7(char buf[37]);

#endif
