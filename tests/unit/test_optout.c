/* SPDX-License-Identifier: MIT */
/* Opt-out keywords and the error catalogue's fallbacks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
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

/* Telnyx blocks on "STOP ALL" by default (its Advanced Opt-In/Out page
 * lists STOP, STOPALL, STOP ALL, UNSUBSCRIBE, CANCEL, END, QUIT), so the
 * provider stops sending while dlrd, missing it, would let the same app
 * send to that user through any other provider or sender.  The words may
 * be apart by any run of blanks; a keyword still has to be the whole
 * message. */
/* White space outside ASCII around a keyword is still only white space: a
 * no-break space a keyboard appends, the ideographic space of a CJK input
 * method, a byte-order mark or zero-width space a UCS-2 gateway leaves in
 * front.  The user sees and meant "STOP"; read as no keyword, the opt-out
 * was lost and the app went on texting them. */
static void test_unicode_space(void **state)
{
	(void)state;
	const char *out[] = {
	    "STOP\xc2\xa0",                 /* U+00A0 no-break space */
	    "\xe3\x80\x80stop\xe3\x80\x80", /* U+3000 ideographic space */
	    "\xef\xbb\xbfSTOP",             /* U+FEFF byte-order mark */
	    "\xe2\x80\x8bStop\xe2\x80\x8b", /* U+200B zero-width space */
	    "\xe2\x80\xafSTOP\n",           /* U+202F narrow no-break space */
	    "STOP\xc2\xa0"
	    "ALL", /* between the words of STOP ALL */
	};
	for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++)
		assert_int_equal(kw(out[i]), KW_OPT_OUT);
	assert_int_equal(kw("\xc2\xa0start"), KW_OPT_IN);
	/* other characters are not white space */
	assert_int_equal(kw("STOP\xc2\xa1"), KW_NONE);
	assert_int_equal(kw("STOP\xe2\x80"), KW_NONE); /* a truncated sequence */
	assert_int_equal(kw("\xc2\xa0"), KW_NONE);
	assert_int_equal(kw("ST\xc2\xa0OP"), KW_NONE);
	/* bytes past n are not read */
	assert_int_equal(optout_classify("STOP\xc2\xa0", 5), KW_NONE);
}

static void test_multiword_keywords(void **state)
{
	(void)state;
	const char *out[] = {"STOP ALL", "stop all", " Stop  All\n", "STOP\tALL", "stop \r\n all"};
	for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++)
		assert_int_equal(kw(out[i]), KW_OPT_OUT);
	assert_int_equal(kw("STOP ALL PLEASE"), KW_NONE);
	assert_int_equal(kw("STOP A"), KW_NONE);
	assert_int_equal(kw("STOPALL ALL"), KW_NONE);
	assert_int_equal(kw("STOP ALLL"), KW_NONE);
	assert_int_equal(kw("S TOP ALL"), KW_NONE);
	assert_int_equal(kw("STOP"), KW_OPT_OUT);
	/* pointer and length: bytes past n are not read */
	assert_int_equal(optout_classify("STOP ALL", 6), KW_NONE);
	assert_int_equal(optout_classify("STOP ALLX", 8), KW_OPT_OUT);
}

/* The canonical sender key (optout.h), one case a line: input, key. */
static const char *const sender_keys[][2] = {
    /* phone-like: the digits */
    {"+447520650000", "447520650000"},
    {"447520650000", "447520650000"},
    {"+44 7520 650000", "447520650000"},
    {"+1 (415) 555-0123", "14155550123"},
    {"415.555.0123", "4155550123"},
    {" +447520650000\r\n", "447520650000"},
    {"\t(44)7520-650000 ", "447520650000"},
    {"123456", "123456"},                        /* 6 digits: the fewest */
    {"123456789012345", "123456789012345"},      /* 15: the most */
    {"+1 234 567 890 12345", "123456789012345"}, /* 15, formatted */
    {"+1-2-3-4-5-6", "123456"},
    /* not phone-like: the trimmed text, ASCII letters lower-cased */
    {"12345", "12345"},                       /* a short code */
    {"1 2 3 4 5", "1 2 3 4 5"},               /* 5 digits */
    {"1234567890123456", "1234567890123456"}, /* 16 digits */
    {"AcmeInc", "acmeinc"},
    {" ACME Bank ", "acme bank"},
    {"++447520650000", "++447520650000"},
    {"44+7520650000", "44+7520650000"},
    {"+44 7520 65000x", "+44 7520 65000x"},
    {"+447520/650000", "+447520/650000"},
    {"tel:+447520650000", "tel:+447520650000"},
    {"\xc3\x89TAT", "\xc3\x89tat"}, /* non-ASCII bytes as they are */
    {"+", "+"},
    {"()", "()"},
    {"", ""},
    {" \t\r\n", ""},
};

static void test_sender_key(void **state)
{
	(void)state;
	char out[64], again[64];
	for (size_t i = 0; i < sizeof(sender_keys) / sizeof(sender_keys[0]); i++) {
		const char *in = sender_keys[i][0], *want = sender_keys[i][1];
		size_t n = optout_sender_key(in, strlen(in), out);
		assert_string_equal(out, want);
		assert_int_equal(n, strlen(want));
		/* a key is its own key */
		optout_sender_key(out, n, again);
		assert_string_equal(again, out);
		char *dup = optout_sender_key_dup(in);
		assert_string_equal(dup, want);
		free(dup);
	}
	/* no sender: "" */
	assert_int_equal(optout_sender_key(NULL, 5, out), 0);
	assert_string_equal(out, "");
	char *dup = optout_sender_key_dup(NULL);
	assert_string_equal(dup, "");
	free(dup);
	/* pointer and length: bytes past n are not read */
	assert_int_equal(optout_sender_key("+447520650000XYZ", 13, out), 12);
	assert_string_equal(out, "447520650000");
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
	    cmocka_unit_test(test_keywords),      cmocka_unit_test(test_multiword_keywords),
	    cmocka_unit_test(test_unicode_space), cmocka_unit_test(test_sender_key),
	    cmocka_unit_test(test_errcat),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
