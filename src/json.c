/* SPDX-License-Identifier: MIT */
/*
 * JSON from outside: the bounded loader and the accessors the provider
 * adapters share (see json.h).
 *
 * The depth check scans the raw bytes before jansson parses them, so a body
 * of a million '[' costs one pass over it and no allocation.  It counts
 * arrays and objects only, the way a reader counts nesting: {"a":[1]} is 2
 * deep.
 *
 * Where a body is parsed before it is authenticated (the SNS envelope, whose
 * signature is over its members), jansson's cost is what any peer can spend:
 * about 200 ns and an allocation per value, so 64 KiB of "1," or "{}," cost
 * 6 to 8 ms, 150 normal callbacks.  jsonx_values_ok() bounds the values by
 * the same kind of scan first.  A few long strings cost as much (about 20 ns
 * a byte, over a millisecond for 64 KiB), so jsonx_peek_strings() lets an
 * adapter see a few top-level string members (the SNS TopicArn and
 * Timestamp) from one more scan and refuse a request on them unparsed.
 */
#include "json.h"

#include <assert.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "dlrd_limits.h"
#include "provider.h"
#include "util.h"

/* One pass over the structure outside strings (a backslash skips the byte after
 * it): false as soon as the nesting passes max_depth or the values (1, plus
 * each ',' '{' '[') pass max_values. */
static bool scan_ok(const char *p, size_t n, unsigned max_depth, size_t max_values)
{
	unsigned depth = 0;
	size_t values = 1;
	bool in_str = false;

	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = false;
		} else if (c == '"') {
			in_str = true;
		} else if (c == '{' || c == '[') {
			if (++depth > max_depth || ++values > max_values)
				return false;
		} else if (c == ',') {
			if (++values > max_values)
				return false;
		} else if (c == '}' || c == ']') {
			if (depth)
				depth--;
		}
	}
	return true;
}

bool jsonx_depth_ok(const char *p, size_t n, unsigned max)
{
	return scan_ok(p, n, max, SIZE_MAX);
}

bool jsonx_values_ok(const char *p, size_t n, size_t max)
{
	return scan_ok(p, n, UINT_MAX, max);
}

/* The end of the string whose opening quote is at p[i]: the index of its
 * closing quote, or n when it has none.  *esc tells whether a backslash
 * appears in it.  A byte at a time while backslashes come close together;
 * after 32 other bytes in a row, memchr finds the next quote and the next
 * backslash before it.  Each search starts where the last one of its byte
 * ended (the quote is searched again only once an escaped one is passed),
 * so a string of 10,000 escapes is one pass, not 10,000. */
static size_t string_end(const char *p, size_t n, size_t i, bool *esc)
{
	size_t qi = 0, plain = 0; /* qi: the next quote, 0 before any search */

	*esc = false;
	for (i++; i < n;) {
		if (plain >= 32) {
			if (qi < i) {
				const char *q = memchr(p + i, '"', n - i);
				qi = q ? (size_t)(q - p) : n;
			}
			const char *b = memchr(p + i, '\\', qi - i);
			if (!b)
				return qi;
			i = (size_t)(b - p);
		}
		if (p[i] == '"')
			return i;
		if (p[i] == '\\') {
			*esc = true;
			i += 2;
			plain = 0;
		} else {
			i++;
			plain++;
		}
	}
	return n;
}

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

void jsonx_peek_strings(const char *p, size_t n, const char *const *keys, size_t nkeys,
                        struct iov *out)
{
	unsigned seen[JSONX_PEEK_MAX] = {0}; /* top-level members of that name */
	unsigned depth = 0;
	bool top_obj = false; /* the outermost container is an object */

	assert(nkeys <= JSONX_PEEK_MAX);
	for (size_t k = 0; k < nkeys; k++)
		out[k] = (struct iov){NULL, 0};
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (c == '{' || c == '[') {
			if (depth++ == 0)
				top_obj = c == '{';
		} else if (c == '}' || c == ']') {
			if (depth)
				depth--;
		} else if (c == '"') {
			bool kesc, vesc;
			size_t ke = string_end(p, n, i, &kesc), j, ve;
			if (ke == n)
				break;
			for (j = ke + 1; j < n && is_ws(p[j]); j++)
				;
			if (depth != 1 || !top_obj || j == n || p[j] != ':') {
				i = ke; /* a value, or a member deeper down */
				continue;
			}
			for (size_t k = 0; k < nkeys; k++) {
				size_t kl = strlen(keys[k]);
				/* an escaped name may spell any key: unsure of all */
				if (!kesc &&
				    (ke - i - 1 != kl || memcmp(p + i + 1, keys[k], kl) != 0))
					continue;
				if (kesc || ++seen[k] > 1) {
					seen[k] = 2;
					out[k] = (struct iov){NULL, 0};
					continue;
				}
				for (j++; j < n && is_ws(p[j]); j++)
					;
				if (j < n && p[j] == '"' && (ve = string_end(p, n, j, &vesc)) < n &&
				    !vesc)
					out[k] = (struct iov){p + j + 1, ve - j - 1};
			}
			i = ke; /* the value is scanned as any other */
		}
	}
}

/* jsonx_load(), with not_json as the message for bytes jansson refuses. */
static json_t *load(const char *p, size_t n, const char *not_json, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *v;

	if (!jsonx_depth_ok(p, n, LIM_JSON_DEPTH)) {
		util_fmt(err, errlen, "body nests deeper than %u", LIM_JSON_DEPTH);
		return NULL;
	}
	v = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr);
	if (!v)
		util_fmt(err, errlen, "%s", not_json);
	return v;
}

json_t *jsonx_load(const char *p, size_t n, char *err, size_t errlen)
{
	return load(p, n, "body is not JSON", err, errlen);
}

json_t *jsonx_load_object_max(const char *p, size_t n, size_t max_values, char *err, size_t errlen)
{
	if (!jsonx_values_ok(p, n, max_values)) {
		util_fmt(err, errlen, "body has more than %zu JSON values", max_values);
		return NULL;
	}
	return jsonx_load_object(p, n, err, errlen);
}

json_t *jsonx_load_object(const char *p, size_t n, char *err, size_t errlen)
{
	json_t *v = load(p, n, "body is not a JSON object", err, errlen);

	if (v && !json_is_object(v)) {
		json_decref(v);
		util_fmt(err, errlen, "body is not a JSON object");
		return NULL;
	}
	return v;
}

bool jsonx_scalar(const json_t *v, char num[JSONX_NUM_MAX], const char **p, size_t *n)
{
	if (json_is_string(v)) {
		*p = json_string_value(v);
		*n = json_string_length(v);
		return true;
	}
	if (json_is_integer(v)) {
		*n = util_fmt(num, JSONX_NUM_MAX, "%lld", (long long)json_integer_value(v));
		*p = num;
		return true;
	}
	return false;
}

const char *jsonx_text(struct arena *a, const json_t *v, size_t max)
{
	char num[JSONX_NUM_MAX];
	const char *p;
	size_t n;

	return jsonx_scalar(v, num, &p, &n) ? provider_text(a, p, n, max) : NULL;
}

const char *jsonx_member_text(struct arena *a, const json_t *obj, const char *key, size_t max)
{
	return jsonx_text(a, json_object_get(obj, key), max);
}

const char *jsonx_member_id(struct arena *a, const json_t *obj, const char *key)
{
	char num[JSONX_NUM_MAX];
	const char *p;
	size_t n;

	return jsonx_scalar(json_object_get(obj, key), num, &p, &n) ? provider_hex_id(a, p, n)
	                                                            : NULL;
}

const char *jsonx_member_string(const json_t *obj, const char *key, size_t *len)
{
	const json_t *v = json_object_get(obj, key);

	if (!json_is_string(v))
		return NULL;
	if (len)
		*len = json_string_length(v);
	return json_string_value(v);
}

int64_t jsonx_member_time(const json_t *obj, const char *key)
{
	size_t n;
	const char *s = jsonx_member_string(obj, key, &n);
	int64_t ms;

	return s && util_parse_rfc3339(s, n, &ms) == 0 ? ms : -1;
}
