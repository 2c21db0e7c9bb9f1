/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: jsonx_peek_strings() (json.c), the raw scan the SNS adapter
 * runs on an unauthenticated envelope to refuse a foreign TopicArn or a
 * stale Timestamp before jansson parses it, checked against jansson itself.
 *
 * Input: one flags byte, then the body.  With flag 1, the body is preceded
 * by a name of the fuzzer's own (up to the first 0x1e, cut at a NUL byte),
 * looked for besides the fixed ones below.
 *
 * Properties (differential, against dlrd's loader jsonx_load_object(), with
 * its depth bound, the one src/providers/sns.c parses the envelope with):
 * - every value reported lies inside the body;
 * - when the body loads, every value reported for a name is exactly (same
 *   length, same bytes) the string value of that top-level member in
 *   jansson's tree.  A disagreement would refuse a genuine notification.
 * A body that does not load may get any answer: the caller refuses such a
 * body anyway, and jsonx_peek_strings() is documented to see bytes that
 * need not be JSON.  The body is an exact-size copy without a NUL, so
 * AddressSanitizer sees any read past its end.  fuzz/json_peek.options
 * allows long inputs, so a scan that is quadratic shows as a slow unit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fjp_fixed[] = {
    "TopicArn", "Timestamp", "Type", "a", "", "\xc3\xa9", "a b",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t flags = fz_byte(&in);
	const char *keys[JSONX_PEEK_MAX];
	struct iov out[JSONX_PEEK_MAX];
	size_t nkeys = 0;
	char *own = NULL, *body;
	const char *src;
	json_t *root;
	char err[128];

	for (size_t i = 0; i < ARRAY_LEN(fjp_fixed); i++)
		keys[nkeys++] = fjp_fixed[i];
	if (flags & 1) {
		own = fz_cstr(fz_part(&in, NULL));
		keys[nkeys++] = own;
	}
	body = fz_exact((struct iov){(const char *)in.p, in.n});
	src = body ? body : "";

	jsonx_peek_strings(src, in.n, keys, nkeys, out);
	for (size_t k = 0; k < nkeys; k++) {
		if (!out[k].p) {
			FZ_CHECK(out[k].n == 0);
			continue;
		}
		FZ_CHECK(out[k].p >= src && out[k].n <= in.n &&
		         (size_t)(out[k].p - src) <= in.n - out[k].n);
	}

	root = jsonx_load_object(src, in.n, err, sizeof(err));
	if (root) {
		for (size_t k = 0; k < nkeys; k++) {
			const char *v;
			size_t vn = 0;
			if (!out[k].p)
				continue;
			v = jsonx_member_string(root, keys[k], &vn);
			if (!v || vn != out[k].n || memcmp(v, out[k].p, vn) != 0)
				fprintf(stderr, "peek of \"%s\": %.*s; jansson: %s\n", keys[k],
				        (int)(out[k].n > 200 ? 200 : out[k].n), out[k].p,
				        v ? v : "(no string member)");
			FZ_CHECK(v != NULL);
			FZ_CHECK(vn == out[k].n && memcmp(v, out[k].p, vn) == 0);
		}
		json_decref(root);
	}
	free(body);
	free(own);
	return 0;
}
