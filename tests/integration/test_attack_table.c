/* SPDX-License-Identifier: MIT */
/*
 * Integration: hostile and broken input, as a table.  Each row is one raw
 * request (a template, expanded below), the answer dlrd must give (a status,
 * how many answers, and whether and how fast it closes the connection), and
 * the rows it may add to the database (by default none).  After every row a
 * fresh signed callback on a new connection must still be answered 200
 * within 5 s (an fsync on a loaded machine can take a second), so no row may
 * take dlrd down or wedge it.  A new case is
 * one line in `attacks[]`.
 *
 * Template tokens (everything else is sent byte for byte):
 *   {SID}        a message SID unique to the row
 *   {BODY}       the row's body (its builder's output; by default a valid
 *                Twilio status callback for {SID}), {LEN} its length,
 *                {CHUNKED} it in two chunks, {BSHA} its hex SHA-256
 *   {SIG}        Twilio's signature of the request for public_url + target
 *                (over the body's fields when it is a form without
 *                bodySHA256); {SIG:URL} the same for another base URL,
 *                {SIGTOK} under a wrong token, {SIG27} the first 27
 *                characters, {SIGLC} lower-cased
 *   {TS:+n}      (or {TS:-n}) Unix seconds n from now (the row's "now" is
 *                taken once), for a timestamped provider (generic: Standard
 *                Webhooks); {GSIG} its webhook-signature over {SID} (the
 *                webhook-id), the last {TS} and the body
 *   {HDRS:n}     n extra header lines, {PAD:n} n bytes 'a', {NUL} a 0 byte
 *   {DRIP}       the rest is sent one byte every drip_ms
 *
 * Separate tests cover what a single request cannot: the connection limit
 * (a lowered one, and the default of 1024), and memory under a flood of
 * endless headers.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "arena.h"
#include "crypto.h"
#include "dlrd_limits.h"
#include "form.h"
#include "harness.h"
#include "sig.h"
#include "util.h"

#define MAX_BODY       8192
#define REQ_TIMEOUT_MS 1500
/* the watchdog checks every 200 ms; the rest is slack for a loaded machine */
#define DEADLINE_MS (REQ_TIMEOUT_MS + 2500)
#define WRONG_TOKEN "not-the-token-0123456789abcdef"
#define REQ_CAP     (2u << 20)
/* whsec_ + base64 of the 32 bytes 0x01..0x20 */
#define GEN_SECRET "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
#define ANY        (-1)

static const char *const env[] = {
    "DLRD_SERVER_MAX_BODY_BYTES=8192",
    "DLRD_SERVER_REQUEST_TIMEOUT_MS=1500",
    "DLRD_SERVER_IDLE_TIMEOUT_S=2",
    "DLRD_GENERIC_SECRETS=" GEN_SECRET,
    NULL,
};

/* ---- bodies ---- */

typedef size_t (*body_fn)(char *buf, size_t cap, const char *sid);

static size_t b_callback(char *buf, size_t cap, const char *sid)
{
	return h_twilio_body(buf, cap, sid, "sent", NULL);
}

static size_t b_empty(char *buf, size_t cap, const char *sid)
{
	(void)sid;
	(void)cap;
	buf[0] = '\0';
	return 0;
}

/* A callback padded with extra fields to n fields in all. */
static size_t fields(char *buf, size_t cap, const char *sid, unsigned n)
{
	size_t at = h_twilio_body(buf, cap, sid, "sent", NULL);
	unsigned have = 1;

	for (size_t i = 0; i < at; i++)
		have += buf[i] == '&';
	for (unsigned i = have; i < n && at + 16 < cap; i++)
		at += util_fmt(buf + at, cap - at, "&P%u=x", i);
	return at;
}

static size_t b_fields_256(char *buf, size_t cap, const char *sid)
{
	return fields(buf, cap, sid, LIM_FORM_FIELDS);
}

static size_t b_fields_257(char *buf, size_t cap, const char *sid)
{
	return fields(buf, cap, sid, LIM_FORM_FIELDS + 1);
}

/* 4000 query arguments ("a&"), 8000 bytes: under the target limit, but
 * more than MHD's memory pool holds as argument records. */
static size_t b_query_args(char *buf, size_t cap, const char *sid)
{
	size_t at = 0;
	(void)sid;
	for (int i = 0; i < 4000 && at + 3 < cap; i++) {
		buf[at++] = 'a';
		buf[at++] = '&';
	}
	buf[at] = '\0';
	return at;
}

static size_t b_dup_sid(char *buf, size_t cap, const char *sid)
{
	return util_fmt(buf, cap,
	                "MessageSid=%s&MessageSid=SMffffffffffffffffffffffffffffffff"
	                "&MessageStatus=sent&MessageStatus=delivered&To=%%2B14155550123",
	                sid);
}

static size_t b_big_error(char *buf, size_t cap, const char *sid)
{
	return h_twilio_body(buf, cap, sid, "failed", "99999999999999999999");
}

static size_t b_over_limit(char *buf, size_t cap, const char *sid)
{
	size_t at = h_twilio_body(buf, cap, sid, "sent", NULL);
	at += util_fmt(buf + at, cap - at, "&Pad=");
	while (at < MAX_BODY + 1 && at + 1 < cap)
		buf[at++] = 'x';
	buf[at] = '\0';
	return at;
}

static size_t b_json(char *buf, size_t cap, const char *sid)
{
	return util_fmt(buf, cap,
	                "{\"MessageSid\":\"%s\",\"MessageStatus\":\"sent\",\"ErrorCode\":0}", sid);
}

static size_t b_json_deep_array(char *buf, size_t cap, const char *sid)
{
	size_t at = 0;
	(void)sid;
	for (int i = 0; i < 4000 && at + 2 < cap; i++)
		buf[at++] = '[';
	for (int i = 0; i < 4000 && at + 1 < cap; i++)
		buf[at++] = ']';
	buf[at] = '\0';
	return at;
}

/* A usable callback with one member nested 100 deep (LIM_JSON_DEPTH is 32). */
static size_t b_json_deep_member(char *buf, size_t cap, const char *sid)
{
	size_t at =
	    util_fmt(buf, cap, "{\"MessageSid\":\"%s\",\"MessageStatus\":\"sent\",\"X\":", sid);
	for (int i = 0; i < 100; i++)
		at += util_fmt(buf + at, cap - at, "{\"a\":");
	at += util_fmt(buf + at, cap - at, "1");
	for (int i = 0; i < 101; i++)
		at += util_fmt(buf + at, cap - at, "}");
	return at;
}

static size_t b_json_huge(char *buf, size_t cap, const char *sid)
{
	size_t at =
	    util_fmt(buf, cap, "{\"MessageSid\":\"%s\",\"MessageStatus\":\"sent\",\"X\":\"", sid);
	while (at < MAX_BODY + 100 && at + 3 < cap)
		buf[at++] = 'x';
	at += util_fmt(buf + at, cap - at, "\"}");
	return at;
}

static size_t b_json_257(char *buf, size_t cap, const char *sid)
{
	size_t at = util_fmt(buf, cap, "{\"MessageSid\":\"%s\",\"MessageStatus\":\"sent\"", sid);
	for (int i = 0; i < 255; i++)
		at += util_fmt(buf + at, cap - at, ",\"k%d\":\"v\"", i);
	at += util_fmt(buf + at, cap - at, "}");
	return at;
}

static size_t b_json_dupkey(char *buf, size_t cap, const char *sid)
{
	return util_fmt(
	    buf, cap,
	    "{\"MessageSid\":\"%s\",\"MessageSid\":\"SMffffffffffffffffffffffffffffffff\","
	    "\"MessageStatus\":\"sent\"}",
	    sid);
}

static size_t b_json_bigint(char *buf, size_t cap, const char *sid)
{
	return util_fmt(buf, cap,
	                "{\"MessageSid\":\"%s\",\"MessageStatus\":\"failed\","
	                "\"ErrorCode\":99999999999999999999}",
	                sid);
}

static size_t b_json_bigreal(char *buf, size_t cap, const char *sid)
{
	return util_fmt(buf, cap,
	                "{\"MessageSid\":\"%s\",\"MessageStatus\":\"failed\",\"ErrorCode\":1e400}",
	                sid);
}

static size_t b_json_nul(char *buf, size_t cap, const char *sid)
{
	return util_fmt(buf, cap, "{\"MessageSid\":\"%s\\u0000\",\"MessageStatus\":\"sent\"}", sid);
}

/* A generic (Standard Webhooks) status event for message sid. */
static size_t b_generic(char *buf, size_t cap, const char *sid)
{
	return util_fmt(buf, cap,
	                "{\"type\":\"message.status\",\"timestamp\":\"2026-11-27T15:10:01Z\","
	                "\"data\":{\"message_id\":\"%s\",\"status\":\"delivered\","
	                "\"to\":\"+447700900123\",\"from\":\"ACME\"}}",
	                sid);
}

/* ---- the table ---- */

/* Rows a case may add: messages, events, retry-log rows, review rows. */
struct delta {
	int msg, ev, log, rev;
};
#define STORED1                                                                                    \
	{                                                                                          \
		1, 1, 1, 0                                                                         \
	}
#define STORED2                                                                                    \
	{                                                                                          \
		2, 2, 2, 0                                                                         \
	}

struct attack {
	const char *name;
	const char *req;
	body_fn body;      /* NULL: b_callback */
	int status;        /* first answer; 0: none at all; ANY: not checked */
	unsigned answers;  /* answers on the connection (0: 1 when status > 0) */
	int close_ms;      /* > 0: dlrd closes the connection within this (ms) */
	int drip_ms;       /* > 0: bytes after {DRIP} go one by one */
	struct delta rows; /* rows it adds (default: none) */
	const char *lit;   /* a literal body instead of body() ({NUL}: a 0 byte) */
};

#define POST_HEAD "POST /webhooks/twilio/status HTTP/1.1\r\nHost: sms.example.com\r\n"
#define FORM      "Content-Type: application/x-www-form-urlencoded\r\n"
#define SIGNED    "X-Twilio-Signature: {SIG}\r\n"
#define CLEN      "Content-Length: {LEN}\r\n"
#define VALID     POST_HEAD FORM SIGNED CLEN "\r\n{BODY}"
#define JSON_HEAD                                                                                  \
	"POST /webhooks/twilio/status?bodySHA256={BSHA} HTTP/1.1\r\nHost: sms.example.com\r\n"     \
	"Content-Type: application/json\r\n" SIGNED CLEN "\r\n{BODY}"
#define FORGED "X-Twilio-Signature: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"
/* a generic event signed with timestamp TS ("+0", "-3600", ...) */
#define GEN_HEAD                                                                                   \
	"POST /webhooks/generic/status HTTP/1.1\r\nHost: sms.example.com\r\n"                      \
	"Content-Type: application/json\r\nwebhook-id: {SID}\r\n"
#define GEN_AT(TS)                                                                                 \
	GEN_HEAD "webhook-timestamp: {TS:" TS "}\r\nwebhook-signature: {GSIG}\r\n" CLEN "\r\n{"    \
	         "BODY}"

/* clang-format off */
#define NONE {0, 0, 0, 0}
static const struct attack attacks[] = {
	/* name, request, body, status, answers, close_ms, drip_ms, rows added, literal body */

	/* the baseline: a valid callback, and the same again (a replay) */
	{"valid signed callback", VALID, NULL, 200, 0, 0, 0, STORED1, NULL},
	{"replayed callback (same request twice)", VALID VALID, NULL, 200, 2, 0, 0, {1, 1, 2, 0}, NULL},
	{"HTTP/1.0 callback",
	 "POST /webhooks/twilio/status HTTP/1.0\r\n" FORM SIGNED CLEN "\r\n{BODY}",
	 NULL, 200, 0, 1000, 0, STORED1, NULL},

	/* sizes and framing */
	{"body over the limit, announced (no body sent)",
	 POST_HEAD FORM FORGED "Content-Length: 1000000\r\n\r\n",
	 NULL, 413, 0, 1000, 0, NONE, NULL},
	{"body over the limit, sent", VALID, b_over_limit, 413, 0, 1000, 0, NONE, NULL},
	{"body over the limit, chunked",
	 POST_HEAD FORM SIGNED "Transfer-Encoding: chunked\r\n\r\n{CHUNKED}",
	 b_over_limit, 413, 0, 1000, 0, NONE, NULL},
	{"Expect: 100-continue over the limit",
	 POST_HEAD FORM FORGED "Expect: 100-continue\r\nContent-Length: 9000\r\n\r\n",
	 NULL, 413, 0, 1000, 0, NONE, NULL},
	{"chunked callback",
	 POST_HEAD FORM SIGNED "Transfer-Encoding: chunked\r\n\r\n{CHUNKED}",
	 NULL, 200, 0, 0, 0, STORED1, NULL},
	{"chunk size not hex",
	 POST_HEAD FORM SIGNED "Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	{"chunk size overflowing 64 bits",
	 POST_HEAD FORM SIGNED "Transfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nab\r\n0\r\n\r\n",
	 NULL, 413, 0, 1000, 0, NONE, NULL},
	{"Content-Length and Transfer-Encoding",
	 POST_HEAD FORM SIGNED CLEN "Transfer-Encoding: chunked\r\n\r\n{CHUNKED}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	{"Transfer-Encoding and Content-Length",
	 POST_HEAD FORM SIGNED "Transfer-Encoding: chunked\r\n" CLEN "\r\n{CHUNKED}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	{"Content-Length twice, equal",
	 POST_HEAD FORM SIGNED CLEN CLEN "\r\n{BODY}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	{"Content-Length twice, different",
	 POST_HEAD FORM SIGNED CLEN "Content-Length: 3\r\n\r\n{BODY}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	{"Content-Length as a list",
	 POST_HEAD FORM SIGNED "Content-Length: {LEN}, {LEN}\r\n\r\n{BODY}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	{"Content-Length negative",
	 POST_HEAD FORM SIGNED "Content-Length: -1\r\n\r\n{BODY}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	{"Content-Length with a plus sign",
	 POST_HEAD FORM SIGNED "Content-Length: +{LEN}\r\n\r\n{BODY}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	/* MHD itself refuses a length it cannot represent, as too large */
	{"Content-Length of 20 digits",
	 POST_HEAD FORM SIGNED "Content-Length: 99999999999999999999\r\n\r\n{BODY}",
	 NULL, 413, 0, 1000, 0, NONE, NULL},
	{"Content-Length in hex",
	 POST_HEAD FORM SIGNED "Content-Length: 0x10\r\n\r\n{BODY}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	{"Transfer-Encoding gzip, chunked",
	 POST_HEAD FORM SIGNED "Transfer-Encoding: gzip, chunked\r\n\r\n{CHUNKED}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	{"Transfer-Encoding twice",
	 POST_HEAD FORM SIGNED "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n{CHUNKED}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	/* HTTP/1.0 has no transfer codings (RFC 9112 6.1: faulty framing);
	 * before the fix it was read as chunked and stored */
	{"Transfer-Encoding chunked in HTTP/1.0",
	 "POST /webhooks/twilio/status HTTP/1.0\r\n" FORM SIGNED "Transfer-Encoding: chunked\r\n\r\n{CHUNKED}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	{"Transfer-Encoding identity",
	 POST_HEAD FORM SIGNED "Transfer-Encoding: identity\r\n" CLEN "\r\n{BODY}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	/* whitespace before the colon (RFC 9112 5.1: 400): MHD keeps such a
	 * name apart, a proxy in front may not, and the two would frame the
	 * request differently (CL.TE smuggling) */
	{"Content-Length, and Content-Length with a space before the colon",
	 POST_HEAD FORM SIGNED CLEN "Content-Length : 3\r\n\r\n{BODY}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	{"Content-Length, and Transfer-Encoding with a space before the colon",
	 POST_HEAD FORM SIGNED CLEN "Transfer-Encoding : chunked\r\n\r\n{BODY}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	{"Content-Length, and Transfer-Encoding with a tab before the colon",
	 POST_HEAD FORM SIGNED CLEN "Transfer-Encoding\t: chunked\r\n\r\n{BODY}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	/* obs-fold (RFC 9112 5.2: 400 or unfold): MHD glues the continuation
	 * onto the name ("Transfer-Encodingchunked"), a proxy unfolds it */
	{"Content-Length, and Transfer-Encoding folded onto a second line",
	 POST_HEAD FORM SIGNED CLEN "Transfer-Encoding:\r\n chunked\r\n\r\n{BODY}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	{"Content-Length folded onto a second line",
	 POST_HEAD FORM SIGNED "Content-Length:\r\n {LEN}\r\n\r\n{BODY}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	/* a bare CR (RFC 9112 2.2: 400): MHD ends lines at LF only and keeps
	 * it in the value, a proxy may end the line there and see another
	 * field; before the fix both were stored */
	{"Content-Length, and Transfer-Encoding after a bare CR",
	 POST_HEAD FORM SIGNED CLEN "X-A: 1\rTransfer-Encoding: chunked\r\n\r\n{BODY}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	{"a bare CR inside a header value",
	 POST_HEAD FORM SIGNED CLEN "X-A: 1\r2\r\n\r\n{BODY}",
	 NULL, 400, 0, 1000, 0, NONE, NULL},
	{"pipelined: two callbacks",
	 VALID POST_HEAD FORM SIGNED CLEN "Connection: close\r\n\r\n{BODY}",
	 NULL, 200, 2, 0, 0, {1, 1, 2, 0}, NULL},
	{"pipelined: 413 then a callback",
	 POST_HEAD FORM FORGED "Content-Length: 1000000\r\n\r\n" VALID,
	 NULL, 413, 1, 1000, 0, NONE, NULL},
	{"pipelined: 401 then a callback",
	 POST_HEAD FORM FORGED CLEN "\r\n{BODY}" VALID,
	 NULL, 401, 2, 0, 0, STORED1, NULL},
	/* answers without a body keep the connection (MHD would close it after
	 * an answer given before the request was complete) */
	{"pipelined: /healthz, /metrics, a 404 GET",
	 "GET /healthz HTTP/1.1\r\nHost: sms.example.com\r\n\r\n"
	 "GET /metrics HTTP/1.1\r\nHost: sms.example.com\r\n\r\n"
	 "GET /nowhere HTTP/1.1\r\nHost: sms.example.com\r\n\r\n",
	 NULL, 200, 3, 0, 0, NONE, NULL},
	{"pipelined: a callback, then /healthz",
	 VALID "GET /healthz HTTP/1.1\r\nHost: sms.example.com\r\n\r\n",
	 NULL, 200, 2, 0, 0, STORED1, NULL},

	/* slow clients: the whole request has a deadline; past it the
	 * connection is shut down without an answer */
	{"Content-Length that never arrives",
	 POST_HEAD FORM SIGNED "Content-Length: 5000\r\n\r\nMess",
	 NULL, 0, 0, DEADLINE_MS, 0, NONE, NULL},
	{"headers dribbled, 1 byte / 100 ms",
	 POST_HEAD "{DRIP}X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	 NULL, 0, 0, DEADLINE_MS, 100, NONE, NULL},
	{"body dribbled, 1 byte / 100 ms",
	 POST_HEAD FORM SIGNED CLEN "\r\n{DRIP}{BODY}",
	 NULL, 0, 0, DEADLINE_MS, 100, NONE, NULL},

	/* header and field counts, floods */
	{"100 headers (the limit)", POST_HEAD FORM SIGNED CLEN "{HDRS:96}\r\n{BODY}",
	 NULL, 200, 0, 0, 0, STORED1, NULL},
	{"101 headers", POST_HEAD FORM SIGNED CLEN "{HDRS:97}\r\n{BODY}",
	 NULL, 431, 0, 1000, 0, NONE, NULL},
	/* both limits at once: 100 headers, 16 KiB of them in all (each
	 * {FATHDRS} line is 168 bytes), alone and after an 8000-byte target.
	 * MHD keeps the whole head, and a record per header, in a connection's
	 * memory pool: before the fix it was too small for them, so the first
	 * was answered 431 (the limit was not what the README said) and heads
	 * a little smaller than that were stored but never answered, MHD
	 * having no room left to build the answer */
	{"100 headers, 16 KiB in all (both limits)", POST_HEAD FORM SIGNED CLEN "{FATHDRS:96}\r\n{BODY}",
	 NULL, 200, 0, 0, 0, STORED1, NULL},
	{"an 8000-byte target and 16 KiB of headers",
	 "POST /webhooks/twilio/status?{PAD:7970} HTTP/1.1\r\nHost: sms.example.com\r\n" FORM SIGNED CLEN
	 "{FATHDRS:96}\r\n{BODY}",
	 NULL, 200, 0, 0, 0, STORED1, NULL},
	{"73 headers of 196 bytes: stored, but no answer before the fix",
	 POST_HEAD FORM SIGNED CLEN "{HDRS196:73}\r\n{BODY}",
	 NULL, 200, 0, 0, 0, STORED1, NULL},
	{"100 headers, 31 bytes over 16 KiB in all",
	 POST_HEAD FORM SIGNED CLEN "{FATHDRS:95}X-Fat-End: {PAD:300}\r\n\r\n{BODY}",
	 NULL, 431, 0, 1000, 0, NONE, NULL},
	{"one header of 17000 bytes", POST_HEAD FORM SIGNED CLEN "X-Big: {PAD:17000}\r\n\r\n{BODY}",
	 NULL, 431, 0, 1000, 0, NONE, NULL},
	{"header flood, 64 KiB", POST_HEAD FORM SIGNED CLEN "X-Big: {PAD:65536}\r\n\r\n{BODY}",
	 NULL, 431, 0, 1000, 0, NONE, NULL},
	{"endless header line, 1 MiB", POST_HEAD "X-Big: {PAD:1048576}",
	 NULL, 431, 0, 1000, 0, NONE, NULL},
	{"request target of 9000 bytes",
	 "POST /webhooks/twilio/status?{PAD:9000} HTTP/1.1\r\nHost: sms.example.com\r\n" FORM SIGNED CLEN
	 "\r\n{BODY}",
	 NULL, 414, 0, 1000, 0, NONE, NULL},
	/* MHD would split the query into argument records in its pool, and
	 * when they overflow it answered nothing until the request deadline */
	{"4000 query arguments on /healthz",
	 "GET /healthz?{BODY} HTTP/1.1\r\nHost: sms.example.com\r\n\r\n",
	 b_query_args, 200, 0, 0, 0, NONE, NULL},
	{"4000 query arguments on the status hook",
	 "POST /webhooks/twilio/status?{BODY} HTTP/1.1\r\nHost: sms.example.com\r\n" FORM FORGED
	 "Content-Length: 3\r\n\r\na=b",
	 b_query_args, 401, 0, 0, 0, NONE, NULL},
	{"8000 query arguments: a target over the limit",
	 "GET /healthz?{BODY}{BODY} HTTP/1.1\r\nHost: sms.example.com\r\n\r\n",
	 b_query_args, 414, 0, 1000, 0, NONE, NULL},
	{"256 form fields (the limit)", VALID, b_fields_256, 200, 0, 0, 0, STORED1, NULL},
	{"257 form fields", VALID, b_fields_257, 400, 0, 0, 0, NONE, NULL},

	/* form encoding */
	{"malformed escape %ZZ", VALID, NULL, 400, 0, 0, 0, NONE, "MessageSid=SM1&X=%ZZabc"},
	{"truncated escape at the end", VALID, NULL, 400, 0, 0, 0, NONE, "MessageSid=SM1&X=%4"},
	{"escaped NUL", VALID, NULL, 400, 0, 0, 0, NONE, "MessageSid=SM1%00&X=1"},
	{"raw NUL byte", VALID, NULL, 400, 0, 0, 0, NONE, "MessageSid=SM1{NUL}&X=1"},
	{"invalid UTF-8, escaped", VALID, NULL, 400, 0, 0, 0, NONE, "MessageSid=SM1&X=%FF"},
	{"invalid UTF-8, raw", VALID, NULL, 400, 0, 0, 0, NONE, "MessageSid=SM1&X=\xff"},
	{"overlong UTF-8", VALID, NULL, 400, 0, 0, 0, NONE, "MessageSid=SM1&X=%C0%AF"},
	{"UTF-16 surrogate in UTF-8", VALID, NULL, 400, 0, 0, 0, NONE, "MessageSid=SM1&X=%ED%A0%80"},
	{"duplicated form keys: the first wins", VALID, b_dup_sid, 200, 0, 0, 0, STORED1, NULL},
	{"error code out of any numeric range", VALID, b_big_error, 200, 0, 0, 0, STORED1, NULL},
	{"empty signed body: unusable, to review", VALID, b_empty, 200, 0, 0, 0, {0, 0, 0, 1}, NULL},

	/* the JSON variant (bodySHA256) */
	{"JSON callback", JSON_HEAD, b_json, 200, 0, 0, 0, STORED1, NULL},
	{"JSON nested 4000 deep", JSON_HEAD, b_json_deep_array, 400, 0, 0, 0, NONE, NULL},
	{"JSON member nested 100 deep", JSON_HEAD, b_json_deep_member, 400, 0, 0, 0, NONE, NULL},
	{"JSON over the body limit", JSON_HEAD, b_json_huge, 413, 0, 1000, 0, NONE, NULL},
	{"JSON with 257 members", JSON_HEAD, b_json_257, 400, 0, 0, 0, NONE, NULL},
	{"JSON duplicate keys", JSON_HEAD, b_json_dupkey, 400, 0, 0, 0, NONE, NULL},
	{"JSON integer out of range", JSON_HEAD, b_json_bigint, 400, 0, 0, 0, NONE, NULL},
	{"JSON number out of range", JSON_HEAD, b_json_bigreal, 400, 0, 0, 0, NONE, NULL},
	{"JSON NUL in a string", JSON_HEAD, b_json_nul, 400, 0, 0, 0, NONE, NULL},
	{"JSON body changed after signing",
	 "POST /webhooks/twilio/status?bodySHA256=0000000000000000000000000000000000000000000000000000000000000000"
	 " HTTP/1.1\r\nHost: sms.example.com\r\nContent-Type: application/json\r\n" SIGNED CLEN "\r\n{BODY}",
	 b_json, 401, 0, 0, 0, NONE, NULL},

	/* methods and paths */
	{"unknown method",
	 "FOO /webhooks/twilio/status HTTP/1.1\r\nHost: sms.example.com\r\n" FORM SIGNED CLEN "\r\n{BODY}",
	 NULL, 405, 0, 0, 0, NONE, NULL},
	{"lower-case method",
	 "post /webhooks/twilio/status HTTP/1.1\r\nHost: sms.example.com\r\n" FORM SIGNED CLEN "\r\n{BODY}",
	 NULL, 405, 0, 0, 0, NONE, NULL},
	{"GET on the status hook",
	 "GET /webhooks/twilio/status HTTP/1.1\r\nHost: sms.example.com\r\n" SIGNED "\r\n",
	 NULL, 405, 0, 0, 0, NONE, NULL},
	/* MHD does not check the method's characters; any method is 405 */
	{"method with a control byte",
	 "P\x01ST /webhooks/twilio/status HTTP/1.1\r\nHost: sms.example.com\r\n" FORM SIGNED CLEN "\r\n{BODY}",
	 NULL, 405, 0, 0, 0, NONE, NULL},
	{"unknown path",
	 "POST /webhooks/nosuch/status HTTP/1.1\r\nHost: sms.example.com\r\n" FORM SIGNED CLEN "\r\n{BODY}",
	 NULL, 404, 0, 0, 0, NONE, NULL},
	{"dot segments",
	 "POST /webhooks/twilio/x/../status HTTP/1.1\r\nHost: sms.example.com\r\n" FORM SIGNED CLEN
	 "\r\n{BODY}",
	 NULL, 404, 0, 0, 0, NONE, NULL},
	{"absolute-form target",
	 "POST https://sms.example.com/webhooks/twilio/status HTTP/1.1\r\nHost: sms.example.com\r\n" FORM
	 SIGNED CLEN "\r\n{BODY}",
	 NULL, 404, 0, 0, 0, NONE, NULL},
	/* Host is never used (signatures cover public_url), so none is needed */
	{"HTTP/1.1 without Host",
	 "POST /webhooks/twilio/status HTTP/1.1\r\n" FORM SIGNED CLEN "\r\n{BODY}",
	 NULL, 200, 0, 0, 0, STORED1, NULL},
	{"unknown HTTP version",
	 "POST /webhooks/twilio/status HTTP/9.9\r\nHost: sms.example.com\r\n" FORM SIGNED CLEN "\r\n{BODY}",
	 NULL, 505, 0, 1000, 0, NONE, NULL},
	{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", NULL, 505, 0, 1000, 0, NONE, NULL},
	/* no request line ever ends: the idle timeout plus the request deadline */
	{"TLS ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
	 NULL, 0, 0, DEADLINE_MS + 2000, 0, NONE, NULL},

	/* signatures */
	{"no signature", POST_HEAD FORM CLEN "\r\n{BODY}", NULL, 401, 0, 0, 0, NONE, NULL},
	{"empty signature", POST_HEAD FORM "X-Twilio-Signature:\r\n" CLEN "\r\n{BODY}",
	 NULL, 401, 0, 0, 0, NONE, NULL},
	{"truncated signature", POST_HEAD FORM "X-Twilio-Signature: {SIG27}\r\n" CLEN "\r\n{BODY}",
	 NULL, 401, 0, 0, 0, NONE, NULL},
	{"signature not base64",
	 POST_HEAD FORM "X-Twilio-Signature: !!!!!!!!!!!!!!!!!!!!!!!!!!!=\r\n" CLEN "\r\n{BODY}",
	 NULL, 401, 0, 0, 0, NONE, NULL},
	{"signature of the wrong length", POST_HEAD FORM "X-Twilio-Signature: AAAA\r\n" CLEN "\r\n{BODY}",
	 NULL, 401, 0, 0, 0, NONE, NULL},
	{"signature lower-cased", POST_HEAD FORM "X-Twilio-Signature: {SIGLC}\r\n" CLEN "\r\n{BODY}",
	 NULL, 401, 0, 0, 0, NONE, NULL},
	{"signature under another token", POST_HEAD FORM "X-Twilio-Signature: {SIGTOK}\r\n" CLEN "\r\n{BODY}",
	 NULL, 401, 0, 0, 0, NONE, NULL},
	{"signature for another host",
	 POST_HEAD FORM "X-Twilio-Signature: {SIG:https://evil.example.net}\r\n" CLEN "\r\n{BODY}",
	 NULL, 401, 0, 0, 0, NONE, NULL},
	{"signature for another scheme",
	 POST_HEAD FORM "X-Twilio-Signature: {SIG:http://sms.example.com}\r\n" CLEN "\r\n{BODY}",
	 NULL, 401, 0, 0, 0, NONE, NULL},
	{"signature for the default port",
	 POST_HEAD FORM "X-Twilio-Signature: {SIG:https://sms.example.com:443}\r\n" CLEN "\r\n{BODY}",
	 NULL, 200, 0, 0, 0, STORED1, NULL},
	{"forged signature first, valid second", POST_HEAD FORM FORGED SIGNED CLEN "\r\n{BODY}",
	 NULL, 401, 0, 0, 0, NONE, NULL},

	/* the Host header never matters: signatures are over public_url */
	{"Host disagrees with public_url, signed for public_url",
	 "POST /webhooks/twilio/status HTTP/1.1\r\nHost: evil.example.net\r\n" FORM SIGNED CLEN "\r\n{BODY}",
	 NULL, 200, 0, 0, 0, STORED1, NULL},
	{"Host disagrees with public_url, signed for Host",
	 "POST /webhooks/twilio/status HTTP/1.1\r\nHost: evil.example.net\r\n" FORM
	 "X-Twilio-Signature: {SIG:https://evil.example.net}\r\n" CLEN "\r\n{BODY}",
	 NULL, 401, 0, 0, 0, NONE, NULL},
	{"X-Forwarded-Host, signed for it",
	 POST_HEAD "X-Forwarded-Host: evil.example.net\r\nX-Forwarded-Proto: http\r\n" FORM
	 "X-Twilio-Signature: {SIG:http://evil.example.net}\r\n" CLEN "\r\n{BODY}",
	 NULL, 401, 0, 0, 0, NONE, NULL},

	/* replayed timestamps (generic: webhook-timestamp, tolerance 300 s,
	 * checked only once the signature holds) */
	{"timestamped callback, fresh", GEN_AT("+0"), b_generic, 200, 0, 0, 0, STORED1, NULL},
	{"timestamped callback replayed at once (a duplicate)", GEN_AT("+0") GEN_AT("+0"),
	 b_generic, 200, 2, 0, 0, {1, 1, 2, 0}, NULL},
	{"timestamped callback 290 s old (inside the tolerance)", GEN_AT("-290"), b_generic,
	 200, 0, 0, 0, STORED1, NULL},
	{"replayed timestamp, 310 s old", GEN_AT("-310"), b_generic, 401, 0, 0, 0, NONE, NULL},
	{"replayed timestamp, a day old", GEN_AT("-86400"), b_generic, 401, 0, 0, 0, NONE, NULL},
	{"timestamp 310 s ahead", GEN_AT("+310"), b_generic, 401, 0, 0, 0, NONE, NULL},
	{"timestamp 0 (1970)", GEN_HEAD "webhook-timestamp: 0\r\nwebhook-signature: {GSIG}\r\n"
	 CLEN "\r\n{BODY}", b_generic, 401, 0, 0, 0, NONE, NULL},
	{"timestamp of 20 digits",
	 GEN_HEAD "webhook-timestamp: 99999999999999999999\r\nwebhook-signature: {GSIG}\r\n"
	 CLEN "\r\n{BODY}", b_generic, 401, 0, 0, 0, NONE, NULL},
	{"timestamp not a number",
	 GEN_HEAD "webhook-timestamp: -1\r\nwebhook-signature: {GSIG}\r\n" CLEN "\r\n{BODY}",
	 b_generic, 401, 0, 0, 0, NONE, NULL},
};
/* clang-format on */

/* ---- expanding a template ---- */

struct ctx {
	char sid[35];
	int64_t now_s; /* the row's "now" for {TS} */
	char ts[32];   /* the last {TS} expanded ("" before: {GSIG} signs "0") */
	char *body;    /* the row's body */
	size_t body_len;
	char target[10000];
};

struct out {
	char *p;
	size_t n, cap;
	size_t drip_at; /* (size_t)-1: no {DRIP} */
};

static void put(struct out *o, const void *p, size_t n)
{
	assert_true(o->n + n <= o->cap);
	memcpy(o->p + o->n, p, n);
	o->n += n;
}

/* Twilio's signature of the request for base + target, over the body's
 * fields when it is a form without bodySHA256. */
static void sign(const struct ctx *cx, const char *token, const char *base, char sig[29])
{
	char url[10100], err[128];
	struct arena a;
	struct form f = {NULL, 0};
	bool json = strstr(cx->target, "bodySHA256=") != NULL;

	util_fmt(url, sizeof(url), "%s%s", base, cx->target);
	arena_init(&a, NULL, 0);
	if (json ||
	    form_decode(&a, cx->body, cx->body_len, LIM_FORM_FIELDS, &f, err, sizeof(err)) != 0)
		f.n = 0;
	sig_twilio_sign(token, (struct iov){url, strlen(url)}, f.n ? &f : NULL, sig);
	arena_fini(&a);
}

/* The generic provider's webhook-signature for cx (see {GSIG}). */
static void gen_sign(const struct ctx *cx, char *out, size_t cap)
{
	static const char secret[] = GEN_SECRET;
	uint8_t key[64], mac[CRYPTO_SHA256_LEN];
	char b64[64];
	size_t kl = 0;
	const char *ts = cx->ts[0] ? cx->ts : "0";
	const struct crypto_piece pieces[] = {
	    {cx->sid, strlen(cx->sid)}, {".", 1}, {ts, strlen(ts)}, {".", 1},
	    {cx->body, cx->body_len},
	};

	assert_int_equal(crypto_b64_decode(secret + 6, sizeof(secret) - 7, key, &kl), 0);
	crypto_hmac(CRYPTO_SHA256, key, kl, pieces, ARRAY_LEN(pieces), mac);
	crypto_b64_encode(mac, sizeof(mac), b64);
	util_fmt(out, cap, "v1,%s", b64);
}

static unsigned long token_num(const char *tok, const char *name)
{
	uint64_t v = 0;
	size_t nl = strlen(name);
	const char *end = strchr(tok, '}');
	assert_non_null(end);
	assert_int_equal(util_parse_u64(tok + nl, (size_t)(end - tok - (ptrdiff_t)nl), &v), 0);
	return (unsigned long)v;
}

static void expand(const char *tpl, struct ctx *cx, struct out *o)
{
	o->n = 0;
	o->drip_at = (size_t)-1;
	cx->ts[0] = '\0';
	for (const char *p = tpl; *p;) {
		char sig[29], num[32], gsig[80];
		const char *end;

		if (*p != '{') {
			put(o, p++, 1);
			continue;
		}
		end = strchr(p, '}');
		assert_non_null(end);
		if (strncmp(p, "{SID}", 5) == 0) {
			put(o, cx->sid, strlen(cx->sid));
		} else if (strncmp(p, "{BODY}", 6) == 0) {
			put(o, cx->body, cx->body_len);
		} else if (strncmp(p, "{LEN}", 5) == 0) {
			put(o, num, util_fmt(num, sizeof(num), "%zu", cx->body_len));
		} else if (strncmp(p, "{CHUNKED}", 9) == 0) {
			size_t half = cx->body_len / 2;
			put(o, num, util_fmt(num, sizeof(num), "%zx\r\n", half));
			put(o, cx->body, half);
			put(o, num, util_fmt(num, sizeof(num), "\r\n%zx\r\n", cx->body_len - half));
			put(o, cx->body + half, cx->body_len - half);
			put(o, "\r\n0\r\n\r\n", 7);
		} else if (strncmp(p, "{BSHA}", 6) == 0) {
			uint8_t md[CRYPTO_SHA256_LEN];
			char hex[2 * CRYPTO_SHA256_LEN + 1];
			crypto_sha256(cx->body, cx->body_len, md);
			crypto_hex(md, sizeof(md), hex);
			put(o, hex, 64);
		} else if (strncmp(p, "{SIG}", 5) == 0) {
			sign(cx, H_TOKEN1, H_PUBLIC_URL, sig);
			put(o, sig, 28);
		} else if (strncmp(p, "{SIG:", 5) == 0) {
			char base[256];
			util_strlcpy(base, p + 5, (size_t)(end - p - 5) + 1);
			sign(cx, H_TOKEN1, base, sig);
			put(o, sig, 28);
		} else if (strncmp(p, "{SIGTOK}", 8) == 0) {
			sign(cx, WRONG_TOKEN, H_PUBLIC_URL, sig);
			put(o, sig, 28);
		} else if (strncmp(p, "{SIG27}", 7) == 0) {
			sign(cx, H_TOKEN1, H_PUBLIC_URL, sig);
			put(o, sig, 27);
		} else if (strncmp(p, "{SIGLC}", 7) == 0) {
			sign(cx, H_TOKEN1, H_PUBLIC_URL, sig);
			for (int i = 0; i < 28; i++)
				sig[i] =
				    (char)(sig[i] >= 'A' && sig[i] <= 'Z' ? sig[i] + 32 : sig[i]);
			put(o, sig, 28);
		} else if (strncmp(p, "{TS:", 4) == 0 && (p[4] == '+' || p[4] == '-')) {
			long long delta = (long long)token_num(p + 1, "TS:+");
			util_fmt(cx->ts, sizeof(cx->ts), "%lld",
			         (long long)cx->now_s + (p[4] == '-' ? -delta : delta));
			put(o, cx->ts, strlen(cx->ts));
		} else if (strncmp(p, "{GSIG}", 6) == 0) {
			gen_sign(cx, gsig, sizeof(gsig));
			put(o, gsig, strlen(gsig));
		} else if (strncmp(p, "{HDRS:", 6) == 0) {
			unsigned long n = token_num(p, "{HDRS:");
			for (unsigned long i = 0; i < n; i++)
				put(o, num, util_fmt(num, sizeof(num), "X-Flood-%lu: v\r\n", i));
		} else if (strncmp(p, "{FATHDRS:", 9) == 0 || strncmp(p, "{HDRS196:", 9) == 0) {
			/* lines of 168 bytes, or of 196-byte values */
			bool fat = p[1] == 'F';
			unsigned long n = token_num(p, fat ? "{FATHDRS:" : "{HDRS196:");
			size_t vlen = fat ? 168 - 13 : 196;
			for (unsigned long i = 0; i < n; i++) {
				put(o, num, util_fmt(num, sizeof(num), "X-Fat-%03lu: ", i));
				assert_true(o->n + vlen + 2 <= o->cap);
				memset(o->p + o->n, 'v', vlen);
				o->n += vlen;
				put(o, "\r\n", 2);
			}
		} else if (strncmp(p, "{PAD:", 5) == 0) {
			unsigned long n = token_num(p, "{PAD:");
			assert_true(o->n + n <= o->cap);
			memset(o->p + o->n, 'a', n);
			o->n += n;
		} else if (strncmp(p, "{NUL}", 5) == 0) {
			put(o, "", 1);
		} else if (strncmp(p, "{DRIP}", 6) == 0) {
			o->drip_at = o->n;
		} else {
			fail_msg("unknown template token %.*s", (int)(end - p + 1), p);
		}
		p = end + 1;
	}
}

/* Builds row's request into o: the body, then the request line (for the
 * target the signatures cover), then everything. */
static void build(const struct attack *a, unsigned idx, struct ctx *cx, struct out *o)
{
	static char body[65536];
	const char *sp1, *sp2;

	h_sid(cx->sid, 0xa77ac000u, idx);
	cx->now_s = (int64_t)time(NULL);
	if (a->lit) {
		cx->body_len = 0;
		for (const char *p = a->lit; *p && cx->body_len < sizeof(body);) {
			bool nul = strncmp(p, "{NUL}", 5) == 0;
			body[cx->body_len++] = nul ? '\0' : *p;
			p += nul ? 5 : 1;
		}
	} else {
		cx->body_len = (a->body ? a->body : b_callback)(body, sizeof(body), cx->sid);
	}
	cx->body = body;
	cx->target[0] = '\0';
	expand(a->req, cx, o);
	/* the target is the second word of the request line */
	sp1 = memchr(o->p, ' ', o->n);
	sp2 = sp1 ? memchr(sp1 + 1, ' ', o->n - (size_t)(sp1 + 1 - o->p)) : NULL;
	if (sp1 && sp2 && (size_t)(sp2 - sp1 - 1) < sizeof(cx->target))
		util_strlcpy(cx->target, sp1 + 1, (size_t)(sp2 - sp1));
	expand(a->req, cx, o);
}

/* ---- talking to dlrd ---- */

struct result {
	int codes[8];
	size_t n_codes;    /* complete answers */
	bool closed;       /* dlrd closed the connection (EOF or reset) */
	int64_t closed_ms; /* after the request (or its drip) began */
	size_t got;
};

/* Counts the complete answers in buf (head, and a body of its
 * Content-Length). */
static size_t complete_answers(const char *buf, size_t n, int *codes, size_t max)
{
	size_t k = 0;
	const char *p = buf, *end = buf + n;

	while (k < max && end - p >= 12 && memcmp(p, "HTTP/1.", 7) == 0) {
		const char *he = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
		uint64_t cl = 0;
		if (!he)
			break;
		for (const char *l = p; l < he;) {
			const char *eol = memmem(l, (size_t)(he - l) + 2, "\r\n", 2);
			if (!eol)
				break;
			if ((size_t)(eol - l) > 15 && strncasecmp(l, "Content-Length:", 15) == 0) {
				const char *v = l + 15;
				while (*v == ' ')
					v++;
				util_parse_u64(v, (size_t)(eol - v), &cl);
			}
			l = eol + 2;
		}
		if ((uint64_t)(end - (he + 4)) < cl)
			break;
		codes[k++] = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
		p = he + 4 + cl;
	}
	return k;
}

static void read_some(int fd, char *buf, size_t cap, struct result *r, int64_t t0, int timeout)
{
	struct pollfd pfd = {fd, POLLIN, 0};
	if (r->closed || poll(&pfd, 1, timeout) <= 0)
		return;
	ssize_t n = recv(fd, buf + r->got, cap - 1 - r->got, 0);
	if (n <= 0) {
		if (n == 0 || errno != EINTR) {
			r->closed = true;
			r->closed_ms = h_now_ms() - t0;
		}
		return;
	}
	r->got += (size_t)n;
	buf[r->got] = '\0';
}

/* Sends req (dripping from drip_at), then reads until the expected answers
 * are complete (and, when close is wanted, the connection is closed) or
 * wait_ms pass. */
static void exchange(const struct dlrd *d, const struct out *req, int drip_ms, unsigned want,
                     bool want_close, int wait_ms, struct result *r)
{
	static char buf[262144];
	size_t first = req->drip_at == (size_t)-1 ? req->n : req->drip_at;
	int fd = h_connect(d->port);
	int64_t t0, deadline;

	memset(r, 0, sizeof(*r));
	assert_true(fd >= 0);
	/* a failed send is not an error: dlrd may answer and close early */
	h_send_all(fd, req->p, first);
	t0 = h_now_ms();
	for (size_t i = first; i < req->n && !r->closed; i++) {
		read_some(fd, buf, sizeof(buf), r, t0, drip_ms);
		if (!r->closed && send(fd, req->p + i, 1, MSG_NOSIGNAL) != 1) {
			r->closed = true;
			r->closed_ms = h_now_ms() - t0;
		}
	}
	deadline = h_now_ms() + wait_ms;
	while (!r->closed && h_now_ms() < deadline) {
		r->n_codes = complete_answers(buf, r->got, r->codes, ARRAY_LEN(r->codes));
		if (!want_close && want && r->n_codes >= want)
			break;
		read_some(fd, buf, sizeof(buf), r, t0, 20);
	}
	r->n_codes = complete_answers(buf, r->got, r->codes, ARRAY_LEN(r->codes));
	close(fd);
}

struct counts {
	int64_t msg, ev, log, rev;
};

static void counts(const struct dlrd *d, struct counts *c)
{
	c->msg = h_count(d, "sms_messages");
	c->ev = h_count(d, "sms_message_events");
	c->log = h_count(d, "sms_callback_log");
	c->rev = h_count(d, "review_queue");
}

/* A fresh signed callback on a new connection: dlrd still serves. */
static bool still_serves(struct dlrd *d, unsigned n, char *why, size_t whylen)
{
	char sid[35], body[1024];
	struct h_resp *r = malloc(sizeof(*r));
	bool ok;

	assert_non_null(r);
	h_sid(sid, 0x5e7e0000u, n);
	assert_true(h_twilio_body(body, sizeof(body), sid, "delivered", NULL) > 0);
	ok = h_post_status(d, body, r) == 200 && r->elapsed_ms < 5000;
	if (!ok)
		util_fmt(why, whylen, "afterwards a valid callback got %ld in %lld ms (curl %d)",
		         r->status, (long long)r->elapsed_ms, r->curl_code);
	free(r);
	return ok;
}

static int64_t rss_kib(pid_t pid)
{
	char path[64], *s, *p;
	int64_t kib = -1;
	uint64_t v;

	util_fmt(path, sizeof(path), "/proc/%d/status", (int)pid);
	s = h_read_file(path, NULL);
	if (s && (p = strstr(s, "VmRSS:"))) {
		p += 6;
		while (*p == ' ' || *p == '\t')
			p++;
		size_t n = strspn(p, "0123456789");
		if (util_parse_u64(p, n, &v) == 0)
			kib = (int64_t)v;
	}
	free(s);
	return kib;
}

/* Runs one row; returns false with the reason in why. */
static bool run_row(struct dlrd *d, const struct attack *a, unsigned idx, char *why, size_t whylen)
{
	struct ctx cx;
	struct out o = {malloc(REQ_CAP), 0, REQ_CAP, 0};
	struct result r;
	struct counts before, after;
	unsigned want = a->answers ? a->answers : a->status > 0 ? 1u : 0u;
	int wait_ms = a->close_ms ? a->close_ms + 1000 : 3000;
	bool ok = false;

	assert_non_null(o.p);
	build(a, idx, &cx, &o);
	counts(d, &before);
	exchange(d, &o, a->drip_ms, want, a->close_ms > 0, wait_ms, &r);
	counts(d, &after);

	if (a->status > 0 && (r.n_codes == 0 || r.codes[0] != a->status))
		util_fmt(why, whylen,
		         "answered %d (%zu answers, closed %d after %lld ms), expected %d",
		         r.n_codes ? r.codes[0] : 0, r.n_codes, r.closed, (long long)r.closed_ms,
		         a->status);
	else if (a->status == 0 && r.n_codes != 0)
		util_fmt(why, whylen, "answered %d, expected no answer", r.codes[0]);
	else if (a->status != ANY && want && r.n_codes != want)
		util_fmt(why, whylen, "%zu answers, expected %u", r.n_codes, want);
	else if (a->close_ms && (!r.closed || r.closed_ms > a->close_ms))
		util_fmt(why, whylen, "connection %s, expected a close within %d ms",
		         r.closed ? "closed late" : "still open", a->close_ms);
	else if (after.msg - before.msg != a->rows.msg || after.ev - before.ev != a->rows.ev ||
	         after.log - before.log != a->rows.log || after.rev - before.rev != a->rows.rev)
		util_fmt(why, whylen,
		         "rows added (messages/events/log/review) %lld/%lld/%lld/%lld, expected"
		         " %d/%d/%d/%d",
		         (long long)(after.msg - before.msg), (long long)(after.ev - before.ev),
		         (long long)(after.log - before.log), (long long)(after.rev - before.rev),
		         a->rows.msg, a->rows.ev, a->rows.log, a->rows.rev);
	else if (a->rows.ev && h_sql_int(d,
	                                 "SELECT count(*) FROM sms_messages WHERE"
	                                 " provider_message_id = %Q",
	                                 cx.sid) != 1)
		util_fmt(why, whylen, "the callback was not stored under its (first) MessageSid");
	else
		ok = still_serves(d, idx, why, whylen);
	print_message("%-4s %-56s %3d x%zu%s%s\n", ok ? "ok" : "FAIL", a->name,
	              r.n_codes ? r.codes[0] : 0, r.n_codes, r.closed ? " closed" : "",
	              ok ? "" : " <--");
	free(o.p);
	return ok;
}

static void test_attack_table(void **state)
{
	struct dlrd *d = *state;
	unsigned failed = 0;
	int64_t rss0 = rss_kib(d->pid), rss1;
	char why[512];

	for (unsigned i = 0; i < ARRAY_LEN(attacks); i++) {
		if (!run_row(d, &attacks[i], i, why, sizeof(why))) {
			print_error("FAILED: %s: %s\n", attacks[i].name, why);
			failed++;
		}
	}
	rss1 = rss_kib(d->pid);
	print_message("dlrd RSS %lld KiB before the table, %lld KiB after\n", (long long)rss0,
	              (long long)rss1);
	assert_true(rss0 > 0 && rss1 > 0);
	/* bounded memory: a table of floods must not leave dlrd much bigger */
	assert_true(rss1 - rss0 < 64 * 1024);
	if (failed)
		fail_msg("%u of %zu rows failed", failed, ARRAY_LEN(attacks));
}

/* A clean stop after all that: SIGTERM drains and exits 0, and (in a
 * sanitizer build) dlrd reported nothing, leaks included. */
static void stop_clean(struct dlrd *d)
{
	int status = 0;

	assert_int_equal(h_stop(d, SIGTERM, 10000, &status), 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("dlrd did not exit 0 after SIGTERM (status 0x%x); see %s", status,
		         d->log_path);
	assert_false(h_log_contains(d, "Sanitizer"));
	assert_false(h_log_contains(d, "runtime error"));
}

/* ---- connections ---- */

/* Waits up to timeout_ms for dlrd to close fd (EOF or reset); returns how
 * long it took, or -1. */
static int64_t wait_closed(int fd, int timeout_ms)
{
	int64_t t0 = h_now_ms();
	char buf[4096];

	while (h_now_ms() - t0 < timeout_ms) {
		struct pollfd pfd = {fd, POLLIN, 0};
		if (poll(&pfd, 1, 20) <= 0)
			continue;
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
			return h_now_ms() - t0;
	}
	return -1;
}

/* Sends req on an already open connection; returns the answer's status (0:
 * none within 10 s). */
static int ask_on(int fd, const char *req, size_t len)
{
	char buf[4096];
	struct result r;
	int codes[2];
	int64_t deadline = h_now_ms() + 10000;

	memset(&r, 0, sizeof(r));
	if (h_send_all(fd, req, len) != 0)
		return 0;
	while (h_now_ms() < deadline && !r.closed) {
		read_some(fd, buf, sizeof(buf), &r, h_now_ms(), 20);
		if (complete_answers(buf, r.got, codes, 1) == 1)
			return codes[0];
	}
	return 0;
}

/* A signed callback on an already open connection; returns the status. */
static int callback_on(int fd, unsigned tag, unsigned n)
{
	char sid[35], body[1024], req[4096];

	h_sid(sid, tag, n);
	assert_true(h_twilio_body(body, sizeof(body), sid, "sent", NULL) > 0);
	size_t len = h_raw_status_post(req, sizeof(req), body, false);
	assert_true(len > 0);
	return ask_on(fd, req, len);
}

/* Holds limit connections, checks that more are turned away at once while
 * the held ones are still served, and that a freed slot is usable again. */
static void connection_limit(struct dlrd *d, unsigned limit)
{
	int *held = calloc(limit, sizeof(*held));
	unsigned tag = 0xc0770000u + limit;
	int64_t worst = 0;

	assert_non_null(held);
	for (unsigned i = 0; i < limit; i++) {
		held[i] = h_connect(d->port);
		if (held[i] < 0)
			fail_msg("connection %u of %u failed: %s", i + 1, limit, strerror(errno));
	}
	/* dlrd has accepted them all once each has been answered */
	for (unsigned i = 0; i < limit; i++) {
		static const char hz[] = "GET /healthz HTTP/1.1\r\nHost: sms.example.com\r\n\r\n";
		if (ask_on(held[i], hz, sizeof(hz) - 1) != 200)
			fail_msg("held connection %u of %u was not served", i + 1, limit);
	}
	/* past the limit: turned away quickly, again and again */
	for (unsigned k = 0; k < 16; k++) {
		int fd = h_connect(d->port);
		int64_t ms = fd >= 0 ? wait_closed(fd, 3000) : 0;
		if (fd >= 0)
			close(fd);
		if (ms < 0 || ms > 500)
			fail_msg("connection %u (limit %u) was %s", limit + 1 + k, limit,
			         ms < 0 ? "neither served nor closed within 3 s"
			                : "closed too slowly");
		worst = ms > worst ? ms : worst;
	}
	/* the held ones are still there, and served */
	for (unsigned i = 0; i < limit; i++) {
		struct pollfd pfd = {held[i], POLLIN, 0};
		if (poll(&pfd, 1, 0) > 0)
			fail_msg("held connection %u was closed", i);
	}
	assert_int_equal(callback_on(held[0], tag, 1), 200);
	assert_int_equal(callback_on(held[limit - 1], tag, 2), 200);
	/* freed slots are usable again */
	for (unsigned i = 1; i < 9; i++)
		close(held[i]);
	/* once dlrd has seen the closes: a new connection until one is served */
	int st = 0;
	for (int64_t t0 = h_now_ms(); st != 200 && h_now_ms() - t0 < 5000;) {
		int fd = h_connect(d->port);
		assert_true(fd >= 0);
		st = callback_on(fd, tag, 3);
		close(fd);
		if (st != 200)
			h_sleep_ms(50);
	}
	assert_int_equal(st, 200);
	for (unsigned i = 0; i < limit; i++)
		if (i == 0 || i >= 9)
			close(held[i]);
	free(held);
	print_message("limit %u: %u held and served, 16 more each closed within %lld ms\n", limit,
	              limit, (long long)worst);
	assert_int_equal(h_count(d, "sms_message_events"), 3);
}

static void test_connection_limit(void **state)
{
	static const char *const lim[] = {"DLRD_SERVER_MAX_CONNECTIONS=64",
	                                  "DLRD_SERVER_IDLE_TIMEOUT_S=60", NULL};
	struct dlrd *d;

	(void)state;
	assert_int_equal(h_fixture_start((void **)&d, lim), 0);
	connection_limit(d, 64);
	stop_clean(d);
	h_fixture_stop((void **)&d);
}

/* The default limit (1024), with dlrd started under the common soft limit
 * of 1024 open files: it must still hold 1024 connections. */
static void test_connection_limit_default(void **state)
{
	static const char *const idle[] = {"DLRD_SERVER_IDLE_TIMEOUT_S=60", NULL};
	struct rlimit rl, low;
	struct dlrd *d;

	(void)state;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 2300) {
		print_message("skipped: the hard limit on open files is %llu\n",
		              (unsigned long long)rl.rlim_max);
		skip();
	}
	low = rl;
	low.rlim_cur = 1024;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	int rc = h_fixture_start((void **)&d, idle); /* dlrd inherits the soft limit */
	struct rlimit high = rl;
	high.rlim_cur = 2300;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &high), 0);
	assert_int_equal(rc, 0);
	connection_limit(d, LIM_CONNECTIONS_DEFAULT);
	stop_clean(d);
	h_fixture_stop((void **)&d);
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* Many connections each sending an endless header: each is cut off, and
 * dlrd's memory stays bounded while it happens. */
static void test_header_flood_memory(void **state)
{
	struct dlrd *d = *state;
	enum { N = 64, TOTAL = 1 << 20, CHUNK = 16384 };
	static const char head[] = POST_HEAD "X-Big: ";
	static char chunk[CHUNK];
	int fd[N];
	size_t sent[N];
	bool done[N];
	int64_t rss0 = rss_kib(d->pid), peak = rss0, t0;
	char why[256];

	memset(chunk, 'a', sizeof(chunk));
	for (int i = 0; i < N; i++) {
		fd[i] = h_connect(d->port);
		assert_true(fd[i] >= 0);
		assert_int_equal(h_send_all(fd[i], head, sizeof(head) - 1), 0);
		sent[i] = 0;
		done[i] = false;
	}
	t0 = h_now_ms();
	for (bool any = true; any && h_now_ms() - t0 < 10000;) {
		any = false;
		for (int i = 0; i < N; i++) {
			if (done[i])
				continue;
			ssize_t w = send(fd[i], chunk, CHUNK, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0)
				sent[i] += (size_t)w;
			else if (errno != EAGAIN && errno != EWOULDBLOCK)
				done[i] = true;
			if (sent[i] >= TOTAL)
				done[i] = true;
			any = any || !done[i];
		}
		int64_t rss = rss_kib(d->pid);
		peak = rss > peak ? rss : peak;
		h_sleep_ms(1);
	}
	for (int i = 0; i < N; i++) {
		int64_t ms = wait_closed(fd[i], 2000);
		if (ms < 0)
			fail_msg("flooding connection %d (%zu bytes sent) is still open", i,
			         sent[i]);
		close(fd[i]);
	}
	print_message("header flood: %d connections cut off; dlrd RSS %lld KiB, peak %lld KiB\n", N,
	              (long long)rss0, (long long)peak);
	assert_true(peak - rss0 < 32 * 1024);
	assert_true(still_serves(d, 9999, why, sizeof(why)));
	assert_int_equal(h_count_data(d), 3);
}

static int setup(void **state)
{
	return h_fixture_start(state, env);
}

static int teardown(void **state)
{
	stop_clean(*state);
	return h_fixture_stop(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_attack_table, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_header_flood_memory, setup, teardown),
	    cmocka_unit_test(test_connection_limit),
	    cmocka_unit_test(test_connection_limit_default),
	};
	return cmocka_run_group_tests_name("integration/attack_table", tests, NULL, NULL);
}
