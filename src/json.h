/* SPDX-License-Identifier: MIT */
/*
 * JSON from outside, on top of jansson: a loader that refuses a body nested
 * deeper than LIM_JSON_DEPTH before jansson builds anything, and the member
 * accessors the provider adapters share (short texts copied into the
 * request arena with provider_text()'s checks, ids, RFC 3339 times).
 *
 * jansson owns the json_ prefix, so this module's is jsonx_.  Nothing here
 * keeps state: every function may be called from any thread.  Values are
 * jansson's; the accessors take borrowed references and never keep them.
 */
#ifndef DLRD_JSON_H
#define DLRD_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "util.h"

/* Room for a JSON integer in decimal, sign and NUL included. */
#define JSONX_NUM_MAX 24

/* Whether the n bytes at p nest arrays and objects at most max deep, by a
 * scan of the raw bytes (no recursion, nothing built; brackets inside
 * strings do not count).  The bytes need not be valid JSON. */
bool jsonx_depth_ok(const char *p, size_t n, unsigned max);

/* Whether the n bytes at p hold at most max JSON values, by a scan of the
 * raw bytes like jsonx_depth_ok(): the count is 1 plus the commas and the
 * opening brackets outside strings, never less than the values jansson
 * would build. */
bool jsonx_values_ok(const char *p, size_t n, size_t max);

/* The most keys one jsonx_peek_strings() call looks for. */
#define JSONX_PEEK_MAX 8

/* For a cheap refusal before a body is parsed: one scan of the n bytes at
 * p, nothing built.  For each of the nkeys (at most JSONX_PEEK_MAX) names
 * in keys, out[i] is set to the raw bytes of the value of the member of
 * that name in the top-level object when the scan is sure what jansson
 * would make of it, should the body be valid JSON: the name appears once
 * among the top-level members, written without a backslash, and its value
 * is a string without one (so the raw bytes are the value).  Otherwise
 * out[i] is {NULL, 0}.  The bytes need not be valid JSON: a caller may
 * refuse on what it sees, never accept. */
void jsonx_peek_strings(const char *p, size_t n, const char *const *keys, size_t nkeys,
                        struct iov *out);

/* Parses the n bytes at p (no NUL needed) as one JSON value, refusing
 * duplicate object keys (JSON_REJECT_DUPLICATES), and only once
 * jsonx_depth_ok(p, n, LIM_JSON_DEPTH) holds.  Returns a new reference
 * (json_decref it), or NULL with err set to "body nests deeper than <LIM>"
 * or "body is not JSON", text fit for a 400 answer and the log.  err may be
 * NULL when errlen is 0. */
json_t *jsonx_load(const char *p, size_t n, char *err, size_t errlen);

/* jsonx_load() for a value that must be an object: NULL with err set to
 * "body is not a JSON object" when it is not JSON or not an object. */
json_t *jsonx_load_object(const char *p, size_t n, char *err, size_t errlen);

/* jsonx_load_object() for a body parsed before it is authenticated: first
 * NULL with err "body has more than <max_values> JSON values" unless
 * jsonx_values_ok(p, n, max_values), so what an unauthenticated peer makes
 * jansson build stays bounded. */
json_t *jsonx_load_object_max(const char *p, size_t n, size_t max_values, char *err, size_t errlen);

/* A string, or an integer written in decimal into num, as a view: true
 * with *p and *n set (*p borrowed from v or num), false for any other type
 * and for NULL. */
bool jsonx_scalar(const json_t *v, char num[JSONX_NUM_MAX], const char **p, size_t *n);

/* A string or integer value as short text copied into the arena after
 * provider_text()'s checks (1..max bytes, no control bytes); NULL when v is
 * absent, of another type or fails them. */
const char *jsonx_text(struct arena *a, const json_t *v, size_t max);

/* jsonx_text() of the member key of obj (NULL when obj is not an object). */
const char *jsonx_member_text(struct arena *a, const json_t *obj, const char *key, size_t max);

/* The member key of obj as a message or event id: provider_hex_id() of its
 * string or integer value, or NULL. */
const char *jsonx_member_id(struct arena *a, const json_t *obj, const char *key);

/* The member key of obj when it is a string: its value (borrowed from obj)
 * with its length in *len when len is not NULL; NULL otherwise. */
const char *jsonx_member_string(const json_t *obj, const char *key, size_t *len);

/* The member key of obj as an RFC 3339 time string, in Unix ms; -1 when it
 * is absent, not a string or not such a time. */
int64_t jsonx_member_time(const json_t *obj, const char *key);

#endif
