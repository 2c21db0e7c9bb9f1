/* SPDX-License-Identifier: MIT */
/*
 * application/x-www-form-urlencoded decoding (WHATWG URL standard, section
 * "application/x-www-form-urlencoded parsing"), stricter than browsers: a '%'
 * without two hex digits, a NUL byte (raw or %00) and invalid UTF-8 in a
 * decoded name or value are errors.  form_decode() sizes everything from one
 * cheap count of '&' up front, then decodes in a single pass into one arena
 * block, so a form costs two arena allocations whatever its field count.
 */
#include "form.h"

#include <stdint.h>
#include <string.h>

#include <limits.h>

#include "dlrd_limits.h"
#include "util.h"

/* Hex digit value, or -1. */
static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

enum dec_err { DEC_OK, DEC_ESCAPE, DEC_NUL };

/*
 * Percent-decodes p[0..n) into out (which needs n bytes).  On success *outlen
 * is the decoded length; on failure *erroff is the offset in p of the bad
 * byte.  NUL bytes are rejected only when reject_nul is set.
 *
 * A byte at a time, as long as the bytes that need work ('%', '+' when it
 * means a space, NUL when it is refused) come close together; after
 * DECODE_RUN plain bytes in a row, the rest of the run is found with
 * memchr and copied whole.  A byte at a time cost about 3 ns a byte, most
 * of what a forged 64 KiB form costs; the searches cost at most one call
 * per DECODE_RUN bytes, and each starts where the last one of its byte
 * ended, so the whole stays linear.
 */
#define DECODE_RUN 32

/* The first c in [s, end), or end: *at, the last answer, unless s has
 * passed it (*at NULL: not searched yet). */
static const char *next(const char **at, const char *s, const char *end, char c)
{
	if (!*at || *at < s) {
		*at = memchr(s, c, (size_t)(end - s));
		if (!*at)
			*at = end;
	}
	return *at;
}

static enum dec_err decode(const char *p, size_t n, char *out, int plus_is_space, int reject_nul,
                           size_t *outlen, size_t *erroff)
{
	const char *s = p, *end = p + n, *pct = NULL, *plus = NULL, *nul = NULL;
	char *o = out;
	size_t plain = 0; /* plain bytes in a row */

	while (s < end) {
		unsigned char c = (unsigned char)*s;
		if (plain >= DECODE_RUN) {
			const char *e = next(&pct, s, end, '%'), *x;
			if (plus_is_space && (x = next(&plus, s, end, '+')) < e)
				e = x;
			if (reject_nul && (x = next(&nul, s, end, '\0')) < e)
				e = x;
			memcpy(o, s, (size_t)(e - s));
			o += e - s;
			s = e;
			plain = 0;
			continue;
		}
		if (c == '%') {
			int hi, lo;
			if (end - s < 3 || (hi = hexval((unsigned char)s[1])) < 0 ||
			    (lo = hexval((unsigned char)s[2])) < 0) {
				*erroff = (size_t)(s - p);
				return DEC_ESCAPE;
			}
			c = (unsigned char)(hi << 4 | lo);
			if (c == 0 && reject_nul) {
				*erroff = (size_t)(s - p);
				return DEC_NUL;
			}
			s += 3;
			plain = 0;
		} else if (c == '+' && plus_is_space) {
			c = ' ';
			s++;
			plain = 0;
		} else if (c == 0 && reject_nul) {
			*erroff = (size_t)(s - p);
			return DEC_NUL;
		} else {
			s++;
			plain++;
		}
		*o++ = (char)c;
	}
	*outlen = (size_t)(o - out);
	return DEC_OK;
}

/*
 * Checks that p[0..n) is well-formed UTF-8 (RFC 3629): no overlong forms, no
 * surrogates, nothing above U+10FFFF.  Returns the offset of the first bad
 * byte, or n.
 */
static size_t utf8_check(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];
		unsigned char lo = 0x80, hi = 0xbf;
		size_t len;
		uint64_t w;

		if (n - i >= 8) { /* eight ASCII bytes at a time */
			memcpy(&w, p + i, 8);
			if ((w & 0x8080808080808080u) == 0) {
				i += 8;
				continue;
			}
		}
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			if (c == 0xe0)
				lo = 0xa0; /* overlong */
			else if (c == 0xed)
				hi = 0x9f; /* surrogates */
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			if (c == 0xf0)
				lo = 0x90; /* overlong */
			else if (c == 0xf4)
				hi = 0x8f; /* > U+10FFFF */
		} else {
			return i; /* continuation byte, C0/C1 overlong or F5..FF */
		}
		if (n - i < len || p[i + 1] < lo || p[i + 1] > hi)
			return i;
		for (size_t k = 2; k < len; k++)
			if (p[i + k] < 0x80 || p[i + k] > 0xbf)
				return i;
		i += len;
	}
	return n;
}

static void seterr(char *errbuf, size_t errlen, const char *what, size_t off)
{
	if (errbuf && errlen)
		util_fmt(errbuf, errlen, "%s at byte %zu", what, off);
}

/*
 * Decodes one name or value at p[0..n) (offset base in the whole input) to
 * out and NUL-terminates it.  Returns 0, DLRD_EINVAL or DLRD_ETOOBIG.
 */
static int decode_part(const char *p, size_t n, size_t base, char *out, size_t *outlen,
                       char *errbuf, size_t errlen)
{
	size_t len = 0, off = 0;

	switch (decode(p, n, out, 1, 1, &len, &off)) {
	case DEC_ESCAPE:
		seterr(errbuf, errlen, "invalid percent escape", base + off);
		return DLRD_EINVAL;
	case DEC_NUL:
		seterr(errbuf, errlen, "NUL byte", base + off);
		return DLRD_EINVAL;
	case DEC_OK:
		break;
	}
	if (len > LIM_FIELD_BYTES) {
		if (errbuf && errlen)
			util_fmt(errbuf, errlen, "field at byte %zu longer than %u bytes", base,
			         LIM_FIELD_BYTES);
		return DLRD_ETOOBIG;
	}
	off = utf8_check((const unsigned char *)out, len);
	if (off != len) {
		/* The decoded offset is not an input offset; name the field. */
		if (errbuf && errlen)
			util_fmt(errbuf, errlen, "invalid UTF-8 in field at byte %zu", base);
		return DLRD_EINVAL;
	}
	out[len] = '\0';
	*outlen = len;
	return 0;
}

/* Decodes p[0..n) into f, allocating from a; see form.h. */
int form_decode(struct arena *a, const char *p, size_t n, size_t max_fields, struct form *f,
                char *errbuf, size_t errlen)
{
	size_t npairs = 1, cap, nf = 0, pos = 0;
	struct form_field *fields = NULL;
	char *out = NULL;
	int rc;

	f->fields = NULL;
	f->n = 0;
	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (n == 0)
		return 0;

	/* Both allocations are sized from an upper bound on the pairs: decoded
	 * text never grows, each stored pair adds two NULs, and at most
	 * min(pairs, max_fields) pairs are stored.  They are made at the first
	 * non-empty pair, so a body of '&'s allocates nothing. */
	for (size_t i = 0; i < n; i++) /* not memchr: a body of '&'s is one call per byte */
		npairs += p[i] == '&';
	cap = npairs < max_fields ? npairs : max_fields;
	if (cap > (SIZE_MAX - n) / 2 || cap > SIZE_MAX / sizeof(*fields)) {
		if (errbuf && errlen)
			util_fmt(errbuf, errlen, "form too large");
		return DLRD_ETOOBIG;
	}

	while (pos < n) {
		const char *s, *amp, *eq;
		size_t seglen, nlen, vlen = 0;
		struct form_field *fl;

		if (p[pos] == '&') { /* empty pair: skipped, without a memchr call */
			pos++;
			continue;
		}
		s = p + pos;
		amp = memchr(s, '&', n - pos);
		seglen = amp ? (size_t)(amp - s) : n - pos;
		if (nf == max_fields) {
			if (errbuf && errlen)
				util_fmt(errbuf, errlen, "more than %zu fields", max_fields);
			return DLRD_ETOOBIG;
		}
		if (!fields) {
			fields = arena_alloc(a, cap * sizeof(*fields));
			out = arena_alloc(a, n + 2 * cap);
		}
		fl = &fields[nf];
		eq = memchr(s, '=', seglen);
		nlen = eq ? (size_t)(eq - s) : seglen;

		rc = decode_part(s, nlen, pos, out, &fl->name_len, errbuf, errlen);
		if (rc)
			return rc;
		fl->name = out;
		out += fl->name_len + 1;
		if (eq) {
			size_t voff = nlen + 1;
			rc = decode_part(s + voff, seglen - voff, pos + voff, out, &vlen, errbuf,
			                 errlen);
			if (rc)
				return rc;
		} else {
			*out = '\0';
		}
		fl->value = out;
		fl->value_len = vlen;
		out += vlen + 1;
		nf++;
		pos += seglen + 1;
	}
	f->fields = nf ? fields : NULL;
	f->n = nf;
	return 0;
}

/* The first field named name, or NULL. */
const struct form_field *form_get(const struct form *f, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < f->n; i++) {
		const struct form_field *fl = &f->fields[i];
		if (fl->name_len == len && memcmp(fl->name, name, len) == 0)
			return fl;
	}
	return NULL;
}

/*
 * Percent-decodes one component into out (n+1 bytes) and NUL-terminates it.
 * Only malformed escapes are errors here; NUL bytes and UTF-8 are the
 * caller's business (the result has an explicit length).
 */
long form_unescape(const char *p, size_t n, char *out, int plus_is_space)
{
	size_t len = 0, off = 0;

	if (n > (size_t)LONG_MAX)
		return DLRD_EINVAL;
	if (decode(p, n, out, plus_is_space, 0, &len, &off) != DEC_OK)
		return DLRD_EINVAL;
	out[len] = '\0';
	return (long)len;
}
