/* SPDX-License-Identifier: MIT */
/*
 * Structured logging: one logfmt line per event on stderr,
 *   ts=2026-11-27T15:10:00.123Z level=info event=listening addr=127.0.0.1:8080
 *
 * Each line is formatted into a bounded stack buffer (LOG_LINE_MAX bytes,
 * newline included) and written with a single write(2).  LOG_LINE_MAX is below
 * PIPE_BUF, so lines from different threads never interleave even when stderr
 * is a pipe to a log collector.  A longer line is cut and ends in "...".
 *
 * The formatted part is checked once more on its way out: any control byte
 * that slipped past the caller (who should have used log_quote() for outside
 * data) becomes '?', so one call can never produce two lines.
 *
 * The level filter is the only mutable state.  It is an atomic read with
 * relaxed ordering, so log_set_level() is safe at any time, although it is
 * meant to be called once at start-up, before threads run.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* Bytes per line, newline included.  Must stay at or below PIPE_BUF for
 * writes to a pipe to be atomic. */
#define LOG_LINE_MAX 2048
_Static_assert(LOG_LINE_MAX <= PIPE_BUF, "log lines must be written atomically");

static _Atomic int min_level = LOG_INFO;

static const char *const level_names[] = {
    [LOG_DEBUG] = "debug",
    [LOG_INFO] = "info",
    [LOG_WARN] = "warn",
    [LOG_ERROR] = "error",
};

/* Any thread; meant for start-up. */
void log_set_level(enum log_level level)
{
	atomic_store_explicit(&min_level, (int)level, memory_order_relaxed);
}

/* Exact lower-case names only. */
int log_parse_level(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < ARRAY_LEN(level_names); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return DLRD_EINVAL;
}

int log_enabled(enum log_level level)
{
	return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

/* Writes all of p[0..n) to stderr with one write(2), retrying on EINTR only;
 * there is nowhere to report a failure. */
static void write_line(const char *p, size_t n)
{
	ssize_t w;

	do
		w = write(STDERR_FILENO, p, n);
	while (w < 0 && errno == EINTR);
}

/* Any thread.  Never fails visibly: a write error is ignored, since stderr is
 * the only place it could be reported. */
void log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	char ts[25];
	size_t len, start;
	va_list ap;
	int n;

	if (!log_enabled(level))
		return;
	if ((unsigned)level >= ARRAY_LEN(level_names))
		level = LOG_ERROR;
	util_rfc3339(util_now_ms(), ts);
	/* Room for the newline is kept back by formatting into size - 1. */
	len = util_fmt(line, sizeof(line) - 1, "ts=%s level=%s event=%s ", ts, level_names[level],
	               event);
	start = len;
	va_start(ap, fmt);
	n = vsnprintf(line + len, sizeof(line) - 1 - len, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(line) - 1 - len) {
		len = sizeof(line) - 1;
		memcpy(line + len - 3, "...", 3);
	} else {
		len += (size_t)n;
	}
	if (len == start) /* no key=value pairs: drop the separator */
		len--;
	for (size_t i = start; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c < 0x20 || c == 0x7f)
			line[i] = '?';
	}
	line[len++] = '\n';
	write_line(line, len);
}

/* Any thread.  Lock-free and approximate at a second's boundary (a racing
 * reset may let a few more lines through), never undercounting what it
 * refused. */
bool log_limit_take(struct log_limit *l, unsigned *dropped)
{
	uint64_t now = (uint64_t)util_now_ms() / 1000;
	uint64_t sec = atomic_load_explicit(&l->second, memory_order_relaxed);

	if (sec != now && atomic_compare_exchange_strong_explicit(
	                      &l->second, &sec, now, memory_order_relaxed, memory_order_relaxed))
		atomic_store_explicit(&l->lines, 0, memory_order_relaxed);
	if (atomic_fetch_add_explicit(&l->lines, 1, memory_order_relaxed) >= LOG_LIMIT_PER_SEC) {
		atomic_fetch_add_explicit(&l->dropped, 1, memory_order_relaxed);
		return false;
	}
	*dropped = atomic_exchange_explicit(&l->dropped, 0, memory_order_relaxed);
	return true;
}

/* Bytes needed to write c inside a quoted value. */
static size_t quoted_len(unsigned char c)
{
	if (c == '"' || c == '\\')
		return 2;
	if (c < 0x20 || c >= 0x7f)
		return 4;
	return 1;
}

static size_t put_quoted(char *dst, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";

	if (c == '"' || c == '\\') {
		dst[0] = '\\';
		dst[1] = (char)c;
		return 2;
	}
	if (c < 0x20 || c >= 0x7f) {
		dst[0] = '\\';
		dst[1] = 'x';
		dst[2] = hex[c >> 4];
		dst[3] = hex[c & 15];
		return 4;
	}
	dst[0] = (char)c;
	return 1;
}

/* Any thread.  buf (size bytes, size may be 0) is always NUL-terminated when
 * size > 0; a value that does not fit ends in `..."`, and an escape is never
 * split.  p may hold any bytes, NUL included. */
char *log_quote(char *buf, size_t size, const char *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t need = 3; /* two quotes and the NUL */
	size_t room, i, o = 0;

	if (size == 0)
		return buf;
	for (i = 0; i < n && need <= size; i++)
		need += quoted_len(s[i]);
	if (need <= size) {
		room = size - 2; /* everything fits; the closing quote and NUL follow */
	} else if (size >= 6) {
		room = size - 5; /* keep space for `..."` and the NUL */
	} else {
		/* Too small even for `"..."`: an empty quoted value, if that fits. */
		util_strlcpy(buf, "\"\"", size);
		return buf;
	}
	buf[o++] = '"';
	for (i = 0; i < n && o + quoted_len(s[i]) <= room; i++)
		o += put_quoted(buf + o, s[i]);
	if (i < n) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* Any thread.  The user info of an http(s) URL can hold credentials (a
 * webhook URL with HTTP Basic auth is signed with them, so public_url keeps
 * them): "user:password@" becomes "user:***@", and a bare "token@" becomes
 * "***@".  The result is quoted like log_quote(). */
char *log_url(char *buf, size_t size, const char *url)
{
	const char *auth = strstr(url, "://");
	size_t alen, at = SIZE_MAX, colon = SIZE_MAX;
	char tmp[LOG_URL_MAX];
	size_t o;

	if (!auth)
		return log_quote(buf, size, url, strlen(url));
	auth += 3;
	alen = strcspn(auth, "/?#");
	for (size_t i = 0; i < alen; i++) {
		if (auth[i] == '@')
			at = i;
		else if (auth[i] == ':' && colon == SIZE_MAX)
			colon = i;
	}
	if (at == SIZE_MAX)
		return log_quote(buf, size, url, strlen(url));
	o = (size_t)(auth - url);
	if (colon < at)
		o += colon + 1; /* keep "user:" */
	if (o > sizeof(tmp) / 2)
		o = sizeof(tmp) / 2; /* leave room for what follows the user info */
	memcpy(tmp, url, o);
	o += util_strlcpy(tmp + o, "***", sizeof(tmp) - o);
	util_strlcpy(tmp + o, auth + at, sizeof(tmp) - o);
	return log_quote(buf, size, tmp, strlen(tmp));
}
