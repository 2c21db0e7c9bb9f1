/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/json.c's raw scan jsonx_peek_strings(): it reports a
 * top-level string member only when it is sure what jansson makes of it
 * (one plain name, a plain string value), never a member deeper down, a
 * repeated or escaped name, or an escaped value; and it never reads past
 * the length it is given (inputs are exact-size heap copies, for
 * AddressSanitizer).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"

static const char *const keys[] = {"TopicArn", "Timestamp"};

/* Peeks both keys in s (an exact-size copy); checks out[0] and out[1]
 * against want0 and want1 (NULL: not reported). */
static void peek(const char *s, const char *want0, const char *want1)
{
	size_t n = strlen(s);
	char *copy = malloc(n ? n : 1);
	struct iov out[2];
	const char *want[2] = {want0, want1};

	memcpy(copy, s, n);
	jsonx_peek_strings(copy, n, keys, 2, out);
	for (int i = 0; i < 2; i++) {
		if (!want[i]) {
			assert_null(out[i].p);
			continue;
		}
		assert_non_null(out[i].p);
		assert_int_equal(out[i].n, strlen(want[i]));
		assert_memory_equal(out[i].p, want[i], out[i].n);
	}
	free(copy);
}

static void test_plain_members(void **state)
{
	(void)state;
	peek("{\"TopicArn\":\"a:b\",\"Timestamp\":\"2023\"}", "a:b", "2023");
	peek(" { \"Type\" : \"x\" , \"TopicArn\" \t:\n \"t\" } ", "t", NULL);
	peek("{\"TopicArn\":\"\"}", "", NULL);
	/* after strings with escapes, escaped quotes and backslashes */
	peek("{\"M\":\"a\\\"b\\\\\\\"c\\u0022:\\\\\",\"TopicArn\":\"t\",\"N\":\"\\\\\"}", "t",
	     NULL);
	/* values around it: strings with quotes, brackets and colons inside */
	peek("{\"M\":\"{\\\"TopicArn\\\":\\\"no\\\"}\",\"A\":[\"TopicArn\",{\"k\":1}],"
	     "\"TopicArn\":\"yes\"}",
	     "yes", NULL);
}

static void test_unsure_is_unreported(void **state)
{
	(void)state;
	/* deeper down, or an array on top */
	peek("{\"A\":{\"TopicArn\":\"x\"}}", NULL, NULL);
	peek("[{\"TopicArn\":\"x\"}]", NULL, NULL);
	peek("[\"TopicArn\",\"x\"]", NULL, NULL);
	/* repeated, even with the same value */
	peek("{\"TopicArn\":\"x\",\"TopicArn\":\"x\"}", NULL, NULL);
	/* an escaped name may be any key, before or after */
	peek("{\"Topic\\u0041rn\":\"y\",\"TopicArn\":\"x\",\"Timestamp\":\"1\"}", NULL, NULL);
	peek("{\"TopicArn\":\"x\",\"\\u0054opicArn\":\"y\"}", NULL, NULL);
	/* an escaped value, or not a string */
	peek("{\"TopicArn\":\"a\\/b\",\"Timestamp\":\"1\"}", NULL, "1");
	peek("{\"TopicArn\":1,\"Timestamp\":null}", NULL, NULL);
	/* cut short */
	peek("{\"TopicArn\":\"x", NULL, NULL);
	peek("{\"TopicArn\"", NULL, NULL);
	peek("{\"TopicArn\":", NULL, NULL);
	peek("{\"Topic", NULL, NULL);
	peek("", NULL, NULL);
	/* a backslash at the very end of the input */
	peek("{\"TopicArn\":\"x\\", NULL, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain_members),
	    cmocka_unit_test(test_unsure_is_unreported),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
