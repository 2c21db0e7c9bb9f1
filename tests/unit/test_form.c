/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/form.c: urlencoded decoding as form.h documents it
 * (percent escapes, '+', repeated names, empty values and pairs), every
 * rejection (bad escapes, NUL, invalid UTF-8), the limits, and that input is
 * never read past its length.  Inputs are copied into exactly-sized heap
 * buffers so AddressSanitizer catches any over-read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "form.h"
#include "dlrd_limits.h"
#include "util.h"

struct fixture {
	struct arena a;
	char block[512]; /* small, so big forms chain heap blocks */
	char err[128];
	char *input; /* exact-size copy of the current input */
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	arena_init(&fx->a, fx->block, sizeof(fx->block));
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	arena_fini(&fx->a);
	free(fx->input);
	free(fx);
	return 0;
}

/* Decodes p[0..n) from an exact-size heap copy. */
static int decode_n(struct fixture *fx, const char *p, size_t n, size_t max, struct form *f)
{
	free(fx->input);
	fx->input = xmalloc(n ? n : 1);
	memcpy(fx->input, p, n);
	fx->err[0] = 'X';
	fx->err[1] = '\0';
	return form_decode(&fx->a, fx->input, n, max, f, fx->err, sizeof(fx->err));
}

static int decode(struct fixture *fx, const char *s, struct form *f)
{
	return decode_n(fx, s, strlen(s), LIM_FORM_FIELDS, f);
}

static void assert_field(const struct form *f, size_t i, const char *name, size_t nlen,
                         const char *value, size_t vlen)
{
	assert_true(i < f->n);
	assert_int_equal(f->fields[i].name_len, nlen);
	assert_memory_equal(f->fields[i].name, name, nlen);
	assert_int_equal(f->fields[i].name[nlen], '\0');
	assert_int_equal(f->fields[i].value_len, vlen);
	assert_memory_equal(f->fields[i].value, value, vlen);
	assert_int_equal(f->fields[i].value[vlen], '\0');
}

#define FIELD(f, i, name, value)                                                                   \
	assert_field((f), (i), (name), sizeof(name) - 1, (value), sizeof(value) - 1)

static void test_basic(void **state)
{
	struct fixture *fx = *state;
	struct form f;

	assert_int_equal(decode(fx, "MessageSid=SM123&MessageStatus=delivered", &f), 0);
	assert_int_equal(f.n, 2);
	FIELD(&f, 0, "MessageSid", "SM123");
	FIELD(&f, 1, "MessageStatus", "delivered");
	assert_string_equal(fx->err, ""); /* cleared on success */
}

static void test_percent_and_plus(void **state)
{
	struct fixture *fx = *state;
	struct form f;

	assert_int_equal(decode(fx, "To=%2B15558675310&Body=Hi+there%21+a%2bb%3Dc&na+me%20x=1", &f),
	                 0);
	assert_int_equal(f.n, 3);
	FIELD(&f, 0, "To", "+15558675310");
	FIELD(&f, 1, "Body", "Hi there! a+b=c");
	FIELD(&f, 2, "na me x", "1");
	/* UTF-8, escaped and raw */
	assert_int_equal(decode(fx, "a=%E2%82%AC&b=\xe2\x82\xac&c=%F0%9F%98%80&d=%c3%a9", &f), 0);
	assert_int_equal(f.n, 4);
	FIELD(&f, 0, "a", "\xe2\x82\xac");
	FIELD(&f, 1, "b", "\xe2\x82\xac");
	FIELD(&f, 2, "c", "\xf0\x9f\x98\x80");
	FIELD(&f, 3, "d", "\xc3\xa9");
	/* edge code points that are valid */
	assert_int_equal(decode(fx, "a=%EF%BF%BF&b=%F4%8F%BF%BF&c=%ED%9F%BF&d=%EE%80%80", &f), 0);
	FIELD(&f, 1, "b", "\xf4\x8f\xbf\xbf");
}

static void test_repeated_and_order(void **state)
{
	struct fixture *fx = *state;
	struct form f;

	assert_int_equal(decode(fx, "b=2&a=1&a=3&b=2", &f), 0);
	assert_int_equal(f.n, 4);
	FIELD(&f, 0, "b", "2");
	FIELD(&f, 1, "a", "1");
	FIELD(&f, 2, "a", "3");
	FIELD(&f, 3, "b", "2");
	assert_ptr_equal(form_get(&f, "a"), &f.fields[1]);
	assert_ptr_equal(form_get(&f, "b"), &f.fields[0]);
	assert_null(form_get(&f, "c"));
	assert_null(form_get(&f, ""));
	assert_null(form_get(&f, "aa"));
}

static void test_empty_values_and_pairs(void **state)
{
	struct fixture *fx = *state;
	struct form f;

	assert_int_equal(decode(fx, "&&a=&&b&=v&c==d&", &f), 0);
	assert_int_equal(f.n, 4);
	FIELD(&f, 0, "a", "");
	FIELD(&f, 1, "b", ""); /* no '=' */
	FIELD(&f, 2, "", "v");
	FIELD(&f, 3, "c", "=d"); /* only the first '=' splits */
	assert_ptr_equal(form_get(&f, ""), &f.fields[2]);

	assert_int_equal(decode(fx, "", &f), 0);
	assert_int_equal(f.n, 0);
	assert_int_equal(decode(fx, "&", &f), 0);
	assert_int_equal(f.n, 0);
	assert_int_equal(decode(fx, "&&&", &f), 0);
	assert_int_equal(f.n, 0);
	assert_int_equal(decode(fx, "=", &f), 0);
	assert_int_equal(f.n, 1);
	FIELD(&f, 0, "", "");
	assert_int_equal(decode(fx, "x", &f), 0);
	assert_int_equal(f.n, 1);
	FIELD(&f, 0, "x", "");
}

/* Input without a terminating NUL: only n bytes are looked at. */
static void test_length_bounded(void **state)
{
	struct fixture *fx = *state;
	struct form f;
	const char buf[] = "a=1&b=2XYZ&c=3";

	assert_int_equal(form_decode(&fx->a, buf, 7, 10, &f, NULL, 0), 0);
	assert_int_equal(f.n, 2);
	FIELD(&f, 1, "b", "2");
	/* a trailing '%' right at the end of an exact-size buffer */
	assert_int_equal(decode_n(fx, "a=%", 3, 10, &f), DLRD_EINVAL);
	assert_int_equal(decode_n(fx, "a=%4", 4, 10, &f), DLRD_EINVAL);
	assert_int_equal(decode_n(fx, "a=%41", 5, 10, &f), 0);
	FIELD(&f, 0, "a", "A");
}

static void assert_invalid(struct fixture *fx, const char *s, const char *reason)
{
	struct form f = {(void *)1, 99};

	assert_int_equal(decode(fx, s, &f), DLRD_EINVAL);
	assert_int_equal(f.n, 0);
	assert_null(f.fields);
	assert_string_equal(fx->err, reason);
}

static void test_bad_escapes(void **state)
{
	struct fixture *fx = *state;

	assert_invalid(fx, "a=%G1", "invalid percent escape at byte 2");
	assert_invalid(fx, "a=%1G", "invalid percent escape at byte 2");
	assert_invalid(fx, "a=1&b=%", "invalid percent escape at byte 6");
	assert_invalid(fx, "a=1&b=x%4", "invalid percent escape at byte 7");
	assert_invalid(fx, "a%=1", "invalid percent escape at byte 1");
	assert_invalid(fx, "ok=1&%%41=1", "invalid percent escape at byte 5");
	assert_invalid(fx, "a=% 1", "invalid percent escape at byte 2");
}

static void test_nul(void **state)
{
	struct fixture *fx = *state;
	struct form f;

	assert_invalid(fx, "a=1&b=x%00y", "NUL byte at byte 7");
	assert_invalid(fx, "%00=1", "NUL byte at byte 0");
	assert_int_equal(decode_n(fx, "a=1&b=\0", 7, 10, &f), DLRD_EINVAL);
	assert_string_equal(fx->err, "NUL byte at byte 6");
	assert_int_equal(decode_n(fx, "a\0=1", 4, 10, &f), DLRD_EINVAL);
	assert_string_equal(fx->err, "NUL byte at byte 1");
}

static void test_bad_utf8(void **state)
{
	struct fixture *fx = *state;

	assert_invalid(fx, "a=1&b=%C3%28", "invalid UTF-8 in field at byte 6");
	assert_invalid(fx, "a=%C0%AF", "invalid UTF-8 in field at byte 2");       /* overlong / */
	assert_invalid(fx, "a=%C1%BF", "invalid UTF-8 in field at byte 2");       /* overlong */
	assert_invalid(fx, "a=%E0%80%AF", "invalid UTF-8 in field at byte 2");    /* overlong */
	assert_invalid(fx, "a=%F0%80%80%AF", "invalid UTF-8 in field at byte 2"); /* overlong */
	assert_invalid(fx, "a=%ED%A0%80", "invalid UTF-8 in field at byte 2");    /* U+D800 */
	assert_invalid(fx, "a=%ED%BF%BF", "invalid UTF-8 in field at byte 2");    /* U+DFFF */
	assert_invalid(fx, "a=%F4%90%80%80", "invalid UTF-8 in field at byte 2"); /* > U+10FFFF */
	assert_invalid(fx, "a=%F5%80%80%80", "invalid UTF-8 in field at byte 2");
	assert_invalid(fx, "a=%FF", "invalid UTF-8 in field at byte 2");
	assert_invalid(fx, "a=%80", "invalid UTF-8 in field at byte 2");    /* stray continuation */
	assert_invalid(fx, "a=%E2%82", "invalid UTF-8 in field at byte 2"); /* truncated */
	assert_invalid(fx, "a=%E2%82x", "invalid UTF-8 in field at byte 2");
	assert_invalid(fx, "a=%F0%9F%98", "invalid UTF-8 in field at byte 2");
	assert_invalid(fx, "%C3=1", "invalid UTF-8 in field at byte 0");  /* in a name */
	assert_invalid(fx, "a=\xc3", "invalid UTF-8 in field at byte 2"); /* raw */
	assert_invalid(fx, "a=\xed\xa0\x80", "invalid UTF-8 in field at byte 2");
}

static void test_field_count_limit(void **state)
{
	struct fixture *fx = *state;
	struct form f;

	assert_int_equal(decode_n(fx, "a&b", 3, 2, &f), 0);
	assert_int_equal(f.n, 2);
	assert_int_equal(decode_n(fx, "a&b&&&", 6, 2, &f), 0); /* empty pairs do not count */
	assert_int_equal(f.n, 2);
	assert_int_equal(decode_n(fx, "a&b&c", 5, 2, &f), DLRD_ETOOBIG);
	assert_int_equal(f.n, 0);
	assert_string_equal(fx->err, "more than 2 fields");
	assert_int_equal(decode_n(fx, "", 0, 0, &f), 0);
	assert_int_equal(decode_n(fx, "&", 1, 0, &f), 0);
	assert_int_equal(decode_n(fx, "a", 1, 0, &f), DLRD_ETOOBIG);
}

static void test_many_fields(void **state)
{
	struct fixture *fx = *state;
	struct form f;
	char *buf = xmalloc(LIM_FORM_FIELDS * 16);
	size_t n = 0;

	for (unsigned i = 0; i < LIM_FORM_FIELDS; i++)
		n += util_fmt(buf + n, LIM_FORM_FIELDS * 16 - n, "%sk%u=v%u", i ? "&" : "", i, i);
	assert_int_equal(decode_n(fx, buf, n, LIM_FORM_FIELDS, &f), 0);
	assert_int_equal(f.n, LIM_FORM_FIELDS);
	FIELD(&f, 255, "k255", "v255");
	n += util_fmt(buf + n, LIM_FORM_FIELDS * 16 - n, "&x");
	assert_int_equal(decode_n(fx, buf, n, LIM_FORM_FIELDS, &f), DLRD_ETOOBIG);
	free(buf);
}

static void test_field_size_limit(void **state)
{
	struct fixture *fx = *state;
	struct form f;
	size_t max = LIM_FIELD_BYTES;
	char *buf = xmalloc(3 * (max + 1) + 8);

	/* value of exactly the limit */
	memcpy(buf, "v=", 2);
	memset(buf + 2, 'x', max);
	assert_int_equal(decode_n(fx, buf, 2 + max, 10, &f), 0);
	assert_int_equal(f.fields[0].value_len, max);
	/* one more byte */
	buf[2 + max] = 'x';
	assert_int_equal(decode_n(fx, buf, 2 + max + 1, 10, &f), DLRD_ETOOBIG);
	assert_string_equal(fx->err, "field at byte 2 longer than 16384 bytes");
	/* names too */
	memset(buf, 'n', max + 1);
	assert_int_equal(decode_n(fx, buf, max + 1, 10, &f), DLRD_ETOOBIG);
	/* the limit is on decoded bytes: 3*max escaped bytes decode to max */
	memcpy(buf, "v=", 2);
	for (size_t i = 0; i < max; i++)
		memcpy(buf + 2 + 3 * i, "%41", 3);
	assert_int_equal(decode_n(fx, buf, 2 + 3 * max, 10, &f), 0);
	assert_int_equal(f.fields[0].value_len, max);
	assert_int_equal(f.fields[0].value[max - 1], 'A');
	memcpy(buf + 2 + 3 * max, "%41", 3);
	assert_int_equal(decode_n(fx, buf, 2 + 3 * (max + 1), 10, &f), DLRD_ETOOBIG);
	free(buf);
}

/* Memory is bounded: a body of '&'s allocates nothing, and the worst case is
 * the input size plus max_fields slots. */
static void test_empty_pairs_cost_nothing(void **state)
{
	struct fixture *fx = *state;
	struct form f;
	size_t n = 100000;
	char *buf = xmalloc(n);

	memset(buf, '&', n);
	assert_int_equal(decode_n(fx, buf, n, LIM_FORM_FIELDS, &f), 0);
	assert_int_equal(f.n, 0);
	assert_int_equal(fx->a.total, 0);
	buf[0] = 'a';
	assert_int_equal(decode_n(fx, buf, n, LIM_FORM_FIELDS, &f), 0);
	assert_int_equal(f.n, 1);
	FIELD(&f, 0, "a", "");
	/* bounded by the input plus LIM_FORM_FIELDS slots and NUL pairs */
	assert_int_equal(fx->a.total,
	                 LIM_FORM_FIELDS * sizeof(struct form_field) + n + 2 * LIM_FORM_FIELDS);
	free(buf);
}

/* Long plain runs are copied whole once DECODE_RUN plain bytes went by a
 * byte at a time: every run length around that switch, with each kind of
 * byte that needs work after it, decodes exactly as a byte at a time, and
 * a bad byte after a long run is reported at its own offset.  So is
 * invalid UTF-8 after ASCII read eight bytes at a time. */
static void test_long_runs(void **state)
{
	struct fixture *fx = *state;
	static const struct {
		const char *raw, *dec;
	} tail[] = {{"%41", "A"}, {"+", " "}, {"%2B", "+"}, {"%C3%A9", "\xc3\xa9"}, {"", ""}};
	char in[256], want[256], err[128];
	struct form f;

	for (size_t run = 0; run < 80; run++) {
		for (size_t t = 0; t < ARRAY_LEN(tail); t++) {
			size_t n = 2, w = 0;
			memcpy(in, "a=", 2);
			for (size_t r = 0; r < 2; r++) { /* twice: the searches start again */
				memset(in + n, 'x', run);
				memset(want + w, 'x', run);
				n += run;
				w += run;
				memcpy(in + n, tail[t].raw, strlen(tail[t].raw));
				memcpy(want + w, tail[t].dec, strlen(tail[t].dec));
				n += strlen(tail[t].raw);
				w += strlen(tail[t].dec);
			}
			assert_int_equal(decode_n(fx, in, n, LIM_FORM_FIELDS, &f), 0);
			assert_int_equal(f.n, 1);
			assert_field(&f, 0, "a", 1, want, w);

			/* a bad escape, a %00, a raw NUL after the run */
			memcpy(in + 2 + run, "%4", 2);
			assert_int_equal(decode_n(fx, in, 2 + run + 2, LIM_FORM_FIELDS, &f),
			                 DLRD_EINVAL);
			util_fmt(err, sizeof(err), "invalid percent escape at byte %zu", 2 + run);
			assert_string_equal(fx->err, err);
			memcpy(in + 2 + run, "%00x", 4);
			assert_int_equal(decode_n(fx, in, 2 + run + 4, LIM_FORM_FIELDS, &f),
			                 DLRD_EINVAL);
			util_fmt(err, sizeof(err), "NUL byte at byte %zu", 2 + run);
			assert_string_equal(fx->err, err);
			memcpy(in + 2 + run, "\0xx", 3);
			assert_int_equal(decode_n(fx, in, 2 + run + 3, LIM_FORM_FIELDS, &f),
			                 DLRD_EINVAL);
			assert_string_equal(fx->err, err);
			/* invalid UTF-8 after the run */
			memcpy(in + 2 + run, "%FFxx", 5);
			assert_int_equal(decode_n(fx, in, 2 + run + 5, LIM_FORM_FIELDS, &f),
			                 DLRD_EINVAL);
			assert_string_equal(fx->err, "invalid UTF-8 in field at byte 2");
		}
	}
}

static void test_null_errbuf(void **state)
{
	struct fixture *fx = *state;
	struct form f;

	assert_int_equal(form_decode(&fx->a, "a=%G", 4, 10, &f, NULL, 0), DLRD_EINVAL);
	assert_int_equal(form_decode(&fx->a, "a&b", 3, 1, &f, NULL, 0), DLRD_ETOOBIG);
	assert_int_equal(form_decode(&fx->a, "a=%C3", 5, 1, &f, fx->err, 1), DLRD_EINVAL);
	assert_string_equal(fx->err, "");
}

static void test_unescape(void **state)
{
	char out[32];

	(void)state;
	assert_int_equal(form_unescape("a+b%20c%2B", 10, out, 1), 6);
	assert_string_equal(out, "a b c+");
	assert_int_equal(form_unescape("a+b%20c%2B", 10, out, 0), 6);
	assert_string_equal(out, "a+b c+");
	assert_int_equal(form_unescape("", 0, out, 1), 0);
	assert_string_equal(out, "");
	assert_int_equal(form_unescape("%zz", 3, out, 1), DLRD_EINVAL);
	assert_int_equal(form_unescape("ab%", 3, out, 1), DLRD_EINVAL);
	assert_int_equal(form_unescape("ab%4", 3, out, 1), DLRD_EINVAL); /* n bounds the read */
	/* only escapes are checked here: NUL and raw bytes pass through */
	assert_int_equal(form_unescape("x%00y%FF", 8, out, 1), 4);
	assert_memory_equal(out, "x\0y\xff", 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_percent_and_plus, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_repeated_and_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_values_and_pairs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_length_bounded, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_escapes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_nul, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_utf8, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_field_count_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_field_size_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_pairs_cost_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_long_runs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_null_errbuf, setup, teardown),
	    cmocka_unit_test(test_unescape),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
