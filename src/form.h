/* SPDX-License-Identifier: MIT */
/*
 * application/x-www-form-urlencoded decoding from raw bytes (bodies and query
 * strings), as the WHATWG URL standard defines it: '&' separates pairs, the
 * first '=' separates name from value, '+' is a space, %XX is a byte.  Unlike
 * browsers we reject a '%' not followed by two hex digits, NUL bytes and
 * invalid UTF-8, since no provider sends them and a signature over them would
 * be ambiguous.  Empty pairs ("a=1&&b=2") are skipped; a pair without '='
 * has an empty value.  Order and repeated names are preserved.
 */
#ifndef DLRD_FORM_H
#define DLRD_FORM_H

#include <stddef.h>
#include "arena.h"

struct form_field {
	const char *name; /* decoded, NUL-terminated, in the arena */
	size_t name_len;
	const char *value; /* decoded, NUL-terminated, in the arena */
	size_t value_len;
};

struct form {
	struct form_field *fields; /* in the arena, in input order */
	size_t n;
};

/* Decodes p[0..n) into f, allocating from a.  At most max_fields pairs and
 * LIM_FIELD_BYTES per decoded name or value.  Returns 0, DLRD_EINVAL
 * (malformed; errbuf says why) or DLRD_ETOOBIG (a limit was hit). */
int form_decode(struct arena *a, const char *p, size_t n, size_t max_fields, struct form *f,
                char *errbuf, size_t errlen);

/* The value of the first field named name, or NULL. */
const struct form_field *form_get(const struct form *f, const char *name);

/* Percent-decodes one component (no '+' handling when plus_is_space is
 * false) into out, which needs n+1 bytes.  Returns the decoded length or
 * DLRD_EINVAL. */
long form_unescape(const char *p, size_t n, char *out, int plus_is_space);

#endif
