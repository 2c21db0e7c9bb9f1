/* SPDX-License-Identifier: MIT */
/*
 * Structured logging to stderr: one logfmt line per event worth telling,
 *   ts=2026-11-27T15:10:00.123Z level=info event=listening addr=127.0.0.1:8080
 * Anything that came from outside goes through log_quote() so a provider
 * cannot forge log lines.  Secrets are never passed to the logger.
 * Thread-safe: each line is written with one write(2).
 */
#ifndef DLRD_LOG_H
#define DLRD_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the minimum level written; call before starting threads. */
void log_set_level(enum log_level level);
/* Parses "debug", "info", "warn", "error". Returns 0 or DLRD_EINVAL. */
int log_parse_level(const char *s, enum log_level *out);
int log_enabled(enum log_level level);

/* Writes one line: the event name, then fmt (key=value pairs). */
void log_msg(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes p[0..n) as a double-quoted logfmt value into buf (escaping quotes,
 * backslashes, control and non-ASCII bytes as \xHH), truncating to fit.
 * Returns buf. */
char *log_quote(char *buf, size_t size, const char *p, size_t n);

/* A per-event line budget for what outside peers can trigger at will (a
 * rejected signature, an unknown API token, a request cut at its deadline):
 * without one, every request of a flood writes a line.  Zero-initialize it
 * (static storage or a struct the caller zeroes); any thread. */
struct log_limit {
	_Atomic uint64_t second; /* the wall-clock second being counted */
	atomic_uint lines;       /* lines taken in that second */
	atomic_uint dropped;     /* lines refused since the last one taken */
};

/* Lines per second each struct log_limit lets through. */
#define LOG_LIMIT_PER_SEC 10

/* Whether one more line may be written now.  When it may, *dropped gets the
 * number of lines refused since the last one allowed (for a "suppressed=N"
 * field), else it is left alone.  Any thread. */
bool log_limit_take(struct log_limit *l, unsigned *dropped);

/* The longest URL log_url() shows whole; a longer one is cut. */
#define LOG_URL_MAX 512

/* log_quote() of a URL with the password (or a bare token) of its user
 * info replaced by "***": "https://user:***@host/path".  Returns buf. */
char *log_url(char *buf, size_t size, const char *url);

#define LOG_D(ev, ...)                                                                             \
	do {                                                                                       \
		if (log_enabled(LOG_DEBUG))                                                        \
			log_msg(LOG_DEBUG, ev, __VA_ARGS__);                                       \
	} while (0)
#define LOG_I(ev, ...) log_msg(LOG_INFO, ev, __VA_ARGS__)
#define LOG_W(ev, ...) log_msg(LOG_WARN, ev, __VA_ARGS__)
#define LOG_E(ev, ...) log_msg(LOG_ERROR, ev, __VA_ARGS__)

#endif
