/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by dlrd's libFuzzer targets (fuzz/fuzz_*.c): splitting one
 * fuzz input into parts, and a property check that aborts with a message
 * (libFuzzer then saves the input as a reproducer).
 *
 * Input format: parts are separated by the byte 0x1e (ASCII "record
 * separator"), which no provider payload contains, so seeds stay readable
 * (`printf 'a\036b'`) and dictionaries can hold the separator as "\x1e".
 *
 * Every fuzz target keeps its file-level names under its own prefix, because
 * tests/unit/test_fuzz_regressions.c includes all of them into one
 * translation unit (with LLVMFuzzerTestOneInput renamed per target) to replay
 * fuzz/regressions/ and fuzz/corpus/ in the ordinary test suite.
 */
#ifndef DLRD_FUZZ_H
#define DLRD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define FZ_SEP 0x1e

/* A property that must hold for every input; a violation is a bug. */
#define FZ_CHECK(cond)                                                                             \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz property failed: %s (%s:%d)\n", #cond, __FILE__,     \
			        __LINE__);                                                         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* The unread rest of a fuzz input. */
struct fz_in {
	const uint8_t *p;
	size_t n;
};

/* Takes one byte (0 when the input is exhausted). */
static inline uint8_t fz_byte(struct fz_in *in)
{
	uint8_t b = 0;
	if (in->n) {
		b = in->p[0];
		in->p++;
		in->n--;
	}
	return b;
}

/* Takes the bytes up to the next separator (or the end); *more tells
 * whether a separator was found, i.e. whether another part follows. */
static inline struct iov fz_part(struct fz_in *in, int *more)
{
	const uint8_t *sep = in->n ? memchr(in->p, FZ_SEP, in->n) : NULL;
	size_t len = sep ? (size_t)(sep - in->p) : in->n;
	struct iov v = {(const char *)in->p, len};

	in->p += len + (sep ? 1 : 0);
	in->n -= len + (sep ? 1 : 0);
	if (more)
		*more = sep != NULL;
	return v;
}

/* An exact-size heap copy of v, without a terminating NUL, so that AddressSanitizer
 * catches any read past its end.  NULL for an empty part.  free() it. */
static inline char *fz_exact(struct iov v)
{
	char *p;

	if (v.n == 0)
		return NULL;
	p = xmalloc(v.n);
	memcpy(p, v.p, v.n);
	return p;
}

/* A NUL-terminated heap copy of v, cut at its first NUL byte (as a C string
 * taken from a header or the environment would be).  free() it. */
static inline char *fz_cstr(struct iov v)
{
	const char *nul = v.n ? memchr(v.p, '\0', v.n) : NULL;
	return xstrndup(v.n ? v.p : "", nul ? (size_t)(nul - v.p) : v.n);
}

/* true when p[0..n) is well-formed UTF-8 (RFC 3629).  An independent
 * implementation, so the decoder's own check is not its own oracle. */
static inline int fz_utf8_ok(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint32_t cp;
		size_t len;
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0) {
			len = 2;
			cp = p[i] & 0x1f;
		} else if ((p[i] & 0xf0) == 0xe0) {
			len = 3;
			cp = p[i] & 0x0f;
		} else if ((p[i] & 0xf8) == 0xf0) {
			len = 4;
			cp = p[i] & 0x07;
		} else {
			return 0;
		}
		if (n - i < len)
			return 0;
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

#endif
