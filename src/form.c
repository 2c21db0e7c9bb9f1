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
 */
static enum dec_err decode(const char *p, size_t n, char *out, int plus_is_space, int reject_nul,
                           size_t *outlen, size_t *erroff)
{
	char *o = out;

	for (size_t i = 0; i < n; i++) {
		size_t start = i;
		unsigned char c = (unsigned char)p[i];
		if (c == '%') {
			int hi, lo;
			if (n - i < 3 || (hi = hexval((unsigned char)p[i + 1])) < 0 ||
			    (lo = hexval((unsigned char)p[i + 2])) < 0) {
				*erroff = i;
				return DEC_ESCAPE;
			}
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		} else if (c == '+' && plus_is_space) {
			c = ' ';
		}
		if (c == 0 && reject_nul) {
			*erroff = start;
			return DEC_NUL;
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
