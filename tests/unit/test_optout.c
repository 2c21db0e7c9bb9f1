/* SPDX-License-Identifier: MIT */
/* Opt-out keywords and the error catalogue's fallbacks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "errcat.h"
#include "optout.h"

static enum optout_kind kw(const char *s)
{
	return optout_classify(s, strlen(s));
}

static void test_keywords(void **state)
{
	(void)state;
	const char *out[] = {"STOP", "stop", " Stop\n",    "STOPALL", "unsubscribe", "Cancel",
	                     "END",  "quit", "\tQUIT\r\n", "optout",  "REVOKE"};
	for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++)
		assert_int_equal(kw(out[i]), KW_OPT_OUT);
	assert_int_equal(kw("START"), KW_OPT_IN);
	assert_int_equal(kw("unstop"), KW_OPT_IN);
	assert_int_equal(kw(" yes "), KW_OPT_IN);
	assert_int_equal(kw("HELP"), KW_HELP);
	assert_int_equal(kw("info"), KW_HELP);
	/* only the whole trimmed message counts */
	assert_int_equal(kw("please stop"), KW_NONE);
	assert_int_equal(kw("STOP!"), KW_NONE);
	assert_int_equal(kw("STOPP"), KW_NONE);
	assert_int_equal(kw("S TOP"), KW_NONE);
	assert_int_equal(kw(""), KW_NONE);
	assert_int_equal(kw("   "), KW_NONE);
	assert_int_equal(optout_classify(NULL, 0), KW_NONE);
	/* a NUL-free prefix must not match by accident */
	assert_int_equal(optout_classify("STOPXYZ", 4), KW_OPT_OUT);
	assert_string_equal(optout_kind_name(KW_OPT_OUT), "opt_out");
	assert_string_equal(optout_kind_name(KW_NONE), "none");
}

static void test_errcat(void **state)
{
	(void)state;
	static const struct provider_error table[] = {
	    {"30003", ER_UNREACHABLE, "Unreachable destination handset"},
	    {"30006", ER_LANDLINE, "Landline or unreachable carrier"},
	    {NULL, ER_NONE, NULL},
	};
	const char *title;
	assert_int_equal(errcat_classify(table, "30003", ST_UNDELIVERED, &title), ER_UNREACHABLE);
	assert_string_equal(title, "Unreachable destination handset");
	assert_int_equal(errcat_classify(table, "99999", ST_FAILED, &title), ER_UNKNOWN);
	assert_null(title);
	assert_int_equal(errcat_classify(table, NULL, ST_DELIVERED, &title), ER_NONE);
	assert_int_equal(errcat_classify(table, "0", ST_SENT, &title), ER_NONE);
	assert_int_equal(errcat_classify(table, NULL, ST_EXPIRED, &title), ER_EXPIRED);
	assert_int_equal(errcat_classify(NULL, "30003", ST_UNDELIVERED, &title), ER_UNKNOWN);
	for (int r = 0; r < ER__COUNT; r++) {
		assert_non_null(errcat_name((enum err_reason)r));
		assert_true(strlen(errcat_note((enum err_reason)r)) > 10);
		assert_true(strlen(errcat_next_step((enum err_reason)r)) > 5);
	}
	assert_string_equal(errcat_name(ER_LANDLINE), "landline");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keywords),
	    cmocka_unit_test(test_errcat),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
