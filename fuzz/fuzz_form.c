/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the application/x-www-form-urlencoded decoder (form.c), which
 * sees every form body and query string before any signature is checked.
 *
 * Input: one byte choosing the field limit, then the raw form bytes.
 * Properties checked on every input, beyond "no crash, no leak, no UB":
 * - a decoded form has at most max_fields fields, each name and value at
 *   most LIM_FIELD_BYTES long, NUL-terminated at its length, without NUL
 *   bytes inside and valid UTF-8 (checked by an independent validator);
 * - the stored fields are exactly the non-empty '&' segments;
 * - re-encoding the fields (every byte escaped) and decoding again gives the
 *   same fields, and form_get() returns the first field of a name;
 * - form_unescape() never produces more bytes than it was given.
 * The arena starts with a small inline block, so heap chaining is exercised.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "dlrd_limits.h"
#include "form.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Percent-encodes every field again, escaping each byte that is not
 * alphanumeric (space as '+'), into a heap buffer. */
static char *ff_encode(const struct form *f, size_t *len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t cap = 1;
	char *out, *o;

	for (size_t i = 0; i < f->n; i++)
		cap += 3 * (f->fields[i].name_len + f->fields[i].value_len) + 2;
	out = o = xmalloc(cap);
	for (size_t i = 0; i < f->n; i++) {
		const struct form_field *fl = &f->fields[i];
		const struct iov parts[2] = {{fl->name, fl->name_len}, {fl->value, fl->value_len}};
		if (i)
			*o++ = '&';
		for (int k = 0; k < 2; k++) {
			if (k)
				*o++ = '=';
			for (size_t j = 0; j < parts[k].n; j++) {
				unsigned char c = (unsigned char)parts[k].p[j];
				if ((c >= '0' && c <= '9') ||
				    ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')) {
					*o++ = (char)c;
				} else if (c == ' ') {
					*o++ = '+';
				} else {
					*o++ = '%';
					*o++ = hex[c >> 4];
					*o++ = hex[c & 15];
				}
			}
		}
	}
	*len = (size_t)(o - out);
	return out;
}

static void ff_check_field(const char *s, size_t n)
{
	FZ_CHECK(s != NULL);
	FZ_CHECK(n <= LIM_FIELD_BYTES);
	FZ_CHECK(s[n] == '\0');
	FZ_CHECK(memchr(s, '\0', n) == NULL);
	FZ_CHECK(fz_utf8_ok((const unsigned char *)s, n));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	/* 0..255 fields; 0 means "the real limit" */
	size_t max_fields = fz_byte(&in);
	char small[256], err[128];
	struct arena a, a2;
	struct form f, g;
	char *body = fz_exact((struct iov){(const char *)in.p, in.n});
	size_t segments = 0;
	int rc;

	if (max_fields == 0)
		max_fields = LIM_FORM_FIELDS;
	arena_init(&a, small, sizeof(small));
	rc = form_decode(&a, body, in.n, max_fields, &f, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == DLRD_EINVAL || rc == DLRD_ETOOBIG);
	FZ_CHECK(rc == 0 || err[0] != '\0');
	for (size_t i = 0; i < in.n;) {
		const uint8_t *amp = memchr(in.p + i, '&', in.n - i);
		size_t e = amp ? (size_t)(amp - in.p) : in.n;
		segments += e > i;
		i = e + 1;
	}
	if (rc == 0) {
		size_t elen;
		char *enc;

		FZ_CHECK(f.n <= max_fields);
		FZ_CHECK(f.n == segments);
		for (size_t i = 0; i < f.n; i++) {
			ff_check_field(f.fields[i].name, f.fields[i].name_len);
			ff_check_field(f.fields[i].value, f.fields[i].value_len);
			const struct form_field *first = form_get(&f, f.fields[i].name);
			FZ_CHECK(first != NULL && first <= &f.fields[i]);
		}
		enc = ff_encode(&f, &elen);
		arena_init(&a2, NULL, 0);
		rc = form_decode(&a2, enc, elen, max_fields, &g, err, sizeof(err));
		FZ_CHECK(rc == 0);
		/* Fields with an empty name and value encode to "=", not to an
		 * empty segment, so the count is the same. */
		FZ_CHECK(g.n == f.n);
		for (size_t i = 0; i < f.n; i++) {
			FZ_CHECK(g.fields[i].name_len == f.fields[i].name_len);
			FZ_CHECK(g.fields[i].value_len == f.fields[i].value_len);
			FZ_CHECK(memcmp(g.fields[i].name, f.fields[i].name, f.fields[i].name_len) ==
			         0);
			FZ_CHECK(memcmp(g.fields[i].value, f.fields[i].value,
			                f.fields[i].value_len) == 0);
		}
		arena_fini(&a2);
		free(enc);
	}
	if (in.n) {
		char *out = xmalloc(in.n + 1);
		long n = form_unescape(body, in.n, out, in.p[0] & 1);
		FZ_CHECK(n == DLRD_EINVAL || (n >= 0 && (size_t)n <= in.n && out[n] == '\0'));
		free(out);
	}
	arena_fini(&a);
	free(body);
	return 0;
}
