/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/phone.c and its tables: normalization (what providers
 * send, sender ids that are not numbers, the digit bounds), the destination
 * country for a broad sample of calling codes and every NANP country,
 * calling codes, masking, the keyed hash against a value computed with
 * openssl, and the table invariants the binary searches rely on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "phone.h"
#include "phone_table.h"
#include "util.h"

/* Normalizes the NUL-terminated s, asserting success and the result. */
static void norm_ok(const char *s, const char *want)
{
	char out[PHONE_E164_MAX + 1];

	if (phone_normalize(s, strlen(s), out) != 0)
		fail_msg("phone_normalize(\"%s\") failed, want %s", s, want);
	assert_string_equal(out, want);
}

static void norm_bad(const char *s)
{
	char out[PHONE_E164_MAX + 1];

	if (phone_normalize(s, strlen(s), out) != DLRD_EINVAL)
		fail_msg("phone_normalize(\"%s\") accepted it", s);
}

static void test_normalize_accepts(void **state)
{
	(void)state;
	norm_ok("+447700900123", "+447700900123");
	norm_ok("447700900123", "+447700900123"); /* Vonage: digits only */
	norm_ok("+1 (415) 555-0100", "+14155550100");
	norm_ok("1-415-555-0100", "+14155550100");
	norm_ok("+49.30.1234567", "+49301234567");
	norm_ok("  +33 6 12 34 56 78 ", "+33612345678");
	norm_ok("(+44) 7700 900123", "+447700900123");
	norm_ok(" 447700900123", "+447700900123");       /* form-decoded '+' */
	norm_ok("12345678", "+12345678");                /* 8 digits: the least without '+' */
	norm_ok("+683 4001", "+6834001");                /* Niue: 7 digits with '+' */
	norm_ok("+690 1234", "+6901234");                /* Tokelau */
	norm_ok("+123456789012345", "+123456789012345"); /* 15: the most */
	norm_ok("+1 2 3 4 5 6 7 8 9 0 1 2 3 4 5", "+123456789012345");
}

static void test_normalize_rejects(void **state)
{
	(void)state;
	/* alphanumeric sender ids and other text */
	norm_bad("ACME");
	norm_bad("InfoSMS");
	norm_bad("Vodafone1");
	norm_bad("MyBank2FA");
	norm_bad("1-800-FLOWERS");
	norm_bad("whatsapp:+14155550100");
	norm_bad("+44 7700 900123 ext 5");
	/* digit bounds */
	norm_bad("");
	norm_bad("+");
	norm_bad("+ - ( )");
	norm_bad("1234567");
	norm_bad("+123456");
	norm_bad("+1234567890123456");
	norm_bad("12345678901234567890");
	/* leading 0: a trunk or international prefix, not E.164 */
	norm_bad("07700900123");
	norm_bad("+07700900123");
	norm_bad("00447700900123");
	norm_bad("+ 0447700900123");
	/* '+' only once and only before the digits */
	norm_bad("++447700900123");
	norm_bad("44+7700900123");
	norm_bad("+447700900123+");
	/* separators other than space - . ( ) */
	norm_bad("+44\t7700900123");
	norm_bad("+44_7700900123");
	norm_bad("+44/7700900123");
	norm_bad("+44\n7700900123");
	norm_bad("+44\xef\xbc\x97\xef\xbc\x97\xef\xbc\x90\xef\xbc\x90"); /* full-width */
	/* longer than any formatted number */
	norm_bad("+1                                          4155550100");
}

static void test_normalize_bounds(void **state)
{
	char out[PHONE_E164_MAX + 1];
	const char nul[] = "+4477\0"
	                   "00900123";

	(void)state;
	/* only p[0..n) is read: no NUL needed, and nothing after n counts */
	assert_int_equal(phone_normalize("+447700900123999", 13, out), 0);
	assert_string_equal(out, "+447700900123");
	assert_int_equal(phone_normalize("+4477009", 7, out), DLRD_EINVAL);
	/* an embedded NUL is not a separator */
	assert_int_equal(phone_normalize(nul, sizeof(nul) - 1, out), DLRD_EINVAL);
	assert_int_equal(phone_normalize(NULL, 0, out), DLRD_EINVAL);
	/* idempotent */
	assert_int_equal(phone_normalize("+1 (415) 555-0100", 17, out), 0);
	assert_int_equal(phone_normalize(out, strlen(out), out), 0);
	assert_string_equal(out, "+14155550100");
}

static void country_is(const char *e164, const char *want)
{
	const char *got = phone_country(e164);
	const char *shown = e164 ? e164 : "(null)";

	if (!want) {
		if (got)
			fail_msg("phone_country(%s) = %s, want NULL", shown, got);
		return;
	}
	if (!got || strcmp(got, want) != 0)
		fail_msg("phone_country(%s) = %s, want %s", shown, got ? got : "NULL", want);
}

static void test_country_sample(void **state)
{
	(void)state;
	country_is("+4930123456", "DE");
	country_is("+33612345678", "FR");
	country_is("+6834001", "NU");
	country_is("+6901234", "TK");
	country_is("+919876543210", "IN");
	country_is("+5511987654321", "BR");
	country_is("+2348031234567", "NG");
	country_is("+27821234567", "ZA");
	country_is("+61412345678", "AU");
	country_is("+81312345678", "JP");
	country_is("+8613812345678", "CN");
	country_is("+971501234567", "AE");
	country_is("+6591234567", "SG");
	country_is("+201001234567", "EG");
	country_is("+5215512345678", "MX");
	country_is("+38344123456", "XK");
	country_is("+211912345678", "SS");
	country_is("+4202123456789", "CZ");
	country_is("+88021234567", "BD");
	country_is("+992123456789", "TJ");
}

static void test_country_shared_codes(void **state)
{
	(void)state;
	/* +7: Russia, Kazakhstan by its zones 6, 7 and 33 */
	country_is("+74951234567", "RU");
	country_is("+79161234567", "RU");
	country_is("+77012345678", "KZ");
	country_is("+77172123456", "KZ");
	country_is("+76123456789", "KZ");
	country_is("+73362212345", "KZ");
	country_is("+73512345678", "RU");
	/* +44: the Crown Dependencies by their ranges, else GB */
	country_is("+447700900123", "GB");
	country_is("+442079460958", "GB");
	country_is("+441481123456", "GG");
	country_is("+447781123456", "GG");
	country_is("+441534123456", "JE");
	country_is("+447797712345", "JE");
	country_is("+447700312345", "JE");
	country_is("+447700912345", "GB");
	country_is("+441624123456", "IM");
	country_is("+447624123456", "IM");
	/* the others libphonenumber splits */
	country_is("+390612345678", "IT");
	country_is("+390669812345", "VA");
	country_is("+4791234567", "NO");
	country_is("+4779123456", "SJ");
	country_is("+358401234567", "FI");
	country_is("+358181234567", "AX");
	country_is("+262262123456", "RE");
	country_is("+262269123456", "YT");
	country_is("+262639123456", "YT");
	country_is("+212612345678", "MA");
	country_is("+212528812345", "EH");
	country_is("+590690123456", "GP");
	country_is("+590590271234", "BL");
	country_is("+590590071234", "MF");
	country_is("+59995123456", "CW");
	country_is("+5997123456", "BQ");
	country_is("+5994161234", "BQ");
	country_is("+2902123", "SH");
	country_is("+2908123", "TA");
	country_is("+61891621234", "CC");
	country_is("+61891641234", "CX");
	country_is("+61891001234", "AU");
}

static void test_country_nanp(void **state)
{
	static const struct {
		const char *npa, *cc;
	} cases[] = {
	    {"415", "US"}, {"212", "US"}, {"800", "US"}, {"888", "US"}, {"907", "US"},
	    {"808", "US"}, {"999", "US"}, {"555", "US"}, {"613", "CA"}, {"416", "CA"},
	    {"604", "CA"}, {"514", "CA"}, {"780", "CA"}, {"902", "CA"}, {"867", "CA"},
	    {"709", "CA"}, {"600", "CA"}, {"354", "CA"}, {"879", "CA"}, {"242", "BS"},
	    {"246", "BB"}, {"264", "AI"}, {"268", "AG"}, {"284", "VG"}, {"340", "VI"},
	    {"345", "KY"}, {"441", "BM"}, {"473", "GD"}, {"649", "TC"}, {"658", "JM"},
	    {"876", "JM"}, {"664", "MS"}, {"670", "MP"}, {"671", "GU"}, {"684", "AS"},
	    {"721", "SX"}, {"758", "LC"}, {"767", "DM"}, {"784", "VC"}, {"787", "PR"},
	    {"939", "PR"}, {"809", "DO"}, {"829", "DO"}, {"849", "DO"}, {"868", "TT"},
	    {"869", "KN"},
	};
	char num[PHONE_E164_MAX + 1];
	size_t ca = 0, us = 0;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		util_fmt(num, sizeof(num), "+1%s5550100", cases[i].npa);
		country_is(num, cases[i].cc);
	}
	/* the exchange does not matter, only the area code */
	country_is("+18002345678", "US");
	country_is("+18001234567", "US");
	/* Canada has every area code the metadata gives it plus the newer
	 * overlays, and the US what is left */
	for (unsigned npa = 200; npa < 1000; npa++) {
		const char *c;
		util_fmt(num, sizeof(num), "+1%u2345678", npa);
		c = phone_country(num);
		assert_non_null(c);
		ca += strcmp(c, "CA") == 0;
		us += strcmp(c, "US") == 0;
	}
	assert_int_equal(ca, 57);
	assert_int_equal(us, 800 - 57 - 27);
}

static void test_country_none(void **state)
{
	static const char *const nongeo[] = {"800", "808", "870", "878", "881",
	                                     "882", "883", "888", "979"};
	char num[PHONE_E164_MAX + 1], cc[4];

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(nongeo); i++) {
		util_fmt(num, sizeof(num), "+%s12345678", nongeo[i]);
		country_is(num, NULL);
		/* but the calling code is known */
		assert_int_equal(phone_calling_code(num, cc), 3);
		assert_string_equal(cc, nongeo[i]);
	}
	/* unassigned (spare) codes */
	country_is("+28012345678", NULL);
	country_is("+21012345678", NULL);
	country_is("+38812345678", NULL);
	country_is("+42512345678", NULL);
	country_is("+96912345678", NULL);
	country_is("+99912345678", NULL);
	country_is("+8012345678", NULL);
	/* not E.164 */
	country_is(NULL, NULL);
	country_is("", NULL);
	country_is("+", NULL);
	country_is("447700900123", NULL);
	country_is("+0447700900123", NULL);
	country_is("+44 7700900123", NULL);
	country_is("+4477009001234567", NULL);
}

static void code_is(const char *e164, const char *want)
{
	char cc[4];
	size_t n;

	memset(cc, 'x', sizeof(cc));
	n = phone_calling_code(e164, cc);
	assert_int_equal(n, strlen(want));
	assert_string_equal(cc, want);
}

static void test_calling_code(void **state)
{
	(void)state;
	code_is("+14155550100", "1");
	code_is("+12645550100", "1"); /* Anguilla: +1, not +1264 */
	code_is("+74951234567", "7");
	code_is("+447700900123", "44");
	code_is("+2348031234567", "234");
	code_is("+80012345678", "800");
	code_is("+5997123456", "599");
	code_is("+28012345678", "");
	code_is("+8012345678", "");
	code_is("447700900123", "");
	code_is("", "");
	code_is("+", "");
	code_is("+7", "7");
}

static void mask_is(const char *e164, const char *want)
{
	char out[PHONE_E164_MAX + 1];

	memset(out, 'x', sizeof(out));
	phone_mask(e164, out);
	assert_string_equal(out, want);
}

static void test_mask(void **state)
{
	(void)state;
	/* every digit but the calling code and the last two; the length stays */
	mask_is("+447700900123", "+44********23");
	mask_is("+14155550100", "+1********00");
	mask_is("+2348031234567", "+234********67");
	mask_is("+80012345678", "+800******78");
	mask_is("+123456789012345", "+1************45");
	/* an unknown calling code shows none of its digits */
	mask_is("+28012345678", "+*********78");
	/* a very short national number shows nothing of it */
	mask_is("+35312345", "+353*****");
	mask_is("+353123456", "+353****56");
	mask_is("+4412345", "+44*****");
	/* not E.164: nothing to show */
	mask_is("447700900123", "");
	mask_is("+44abc", "");
	mask_is("", "");
}

static void test_hash(void **state)
{
	static const uint8_t key[] = "dlrd-test-key";
	char h1[65], h2[65];

	(void)state;
	/* printf '%s' '+447700900123' | openssl dgst -sha256 -hmac 'dlrd-test-key' */
	phone_hash(key, sizeof(key) - 1, "+447700900123", h1);
	assert_string_equal(h1, "4d1fe0f9fc19bca2d2fa7734b31ed572a6881ab5e29027e93ffa149feb220a1c");
	/* printf '%s' '+14155550100' | openssl dgst -sha256 -hmac 'k' */
	phone_hash((const uint8_t *)"k", 1, "+14155550100", h2);
	assert_string_equal(h2, "60f665f65fc1eeba7b37f87fd667801cc5ecff880815f330d107e1735f9f0509");
	/* the key matters */
	phone_hash((const uint8_t *)"k", 1, "+447700900123", h2);
	assert_string_not_equal(h1, h2);
}

static bool is_region(const char *r)
{
	return strlen(r) == 2 && r[0] >= 'A' && r[0] <= 'Z' && r[1] >= 'A' && r[1] <= 'Z';
}

/* The invariants phone.c's binary searches rely on. */
/* Every region the calling-code table can return is a known country, and
 * two letters that are no country are not. */
static void test_country_known(void **state)
{
	(void)state;
	for (size_t i = 0; i < phone__nccs; i++)
		if (phone__ccs[i].region[0] && !phone_country_known(phone__ccs[i].region))
			fail_msg("+%u: %s", phone__ccs[i].code, phone__ccs[i].region);
	for (size_t i = 0; i < phone__nsubs; i++)
		if (!phone_country_known(phone__subs[i].region))
			fail_msg("%s: %s", phone__subs[i].digits, phone__subs[i].region);
	static const char *const yes[] = {"AC", "AD", "AQ", "GB", "US", "XK", "ZW"};
	static const char *const no[] = {"AA", "UK", "ZZ", "EU", "XX", "gb", "A1", "ZX"};
	for (size_t i = 0; i < ARRAY_LEN(yes); i++)
		assert_true(phone_country_known(yes[i]));
	for (size_t i = 0; i < ARRAY_LEN(no); i++)
		assert_false(phone_country_known(no[i]));
}

static void test_table_invariants(void **state)
{
	size_t nsub = 0, nongeo = 0;

	(void)state;
	assert_true(phone__nccs > 200 && phone__nccs < 300);
	for (size_t i = 0; i < phone__nccs; i++) {
		const struct phone__cc *c = &phone__ccs[i];
		char a[8];

		assert_true(c->code >= 1 && c->code <= 999);
		if (i > 0)
			assert_true(phone__ccs[i - 1].code < c->code);
		/* prefix-free: no other code begins this one's digits */
		util_fmt(a, sizeof(a), "%u", c->code);
		for (size_t j = 0; j < phone__nccs; j++) {
			char b[8];
			util_fmt(b, sizeof(b), "%u", phone__ccs[j].code);
			if (j != i && strncmp(a, b, strlen(b)) == 0)
				fail_msg("calling code %s begins with %s", a, b);
		}
		if (c->region[0])
			assert_true(is_region(c->region));
		else
			nongeo++;
		/* the slices tile phone__subs in order */
		assert_int_equal(c->sub, nsub);
		nsub += c->nsub;
		for (size_t k = c->sub; k < (size_t)c->sub + c->nsub; k++) {
			const struct phone__sub *s = &phone__subs[k];
			size_t len = strlen(s->digits);
			char num[PHONE_E164_MAX + 1];

			assert_true(len >= 1 && len <= PHONE__SUB_DIGITS);
			assert_int_equal(strspn(s->digits, "0123456789"), len);
			assert_true(is_region(s->region));
			assert_string_not_equal(s->region, c->region);
			if (c->code == 1)
				assert_true(len == 3 && s->digits[0] >= '2');
			/* sorted and prefix-free (checking neighbours suffices) */
			if (k > c->sub) {
				const char *prev = phone__subs[k - 1].digits;
				assert_true(strcmp(prev, s->digits) < 0);
				if (strncmp(prev, s->digits, strlen(prev)) == 0)
					fail_msg("+%u: %s begins %s", c->code, prev, s->digits);
			}
			/* and every entry is reached */
			util_fmt(num, sizeof(num), "+%s%s%.*s", a, s->digits,
			         (int)(11 - strlen(a) - len), "5555555555");
			country_is(num, s->region);
		}
	}
	assert_int_equal(nsub, phone__nsubs);
	assert_int_equal(nongeo, 9);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_normalize_accepts),
	    cmocka_unit_test(test_normalize_rejects),
	    cmocka_unit_test(test_normalize_bounds),
	    cmocka_unit_test(test_country_sample),
	    cmocka_unit_test(test_country_shared_codes),
	    cmocka_unit_test(test_country_nanp),
	    cmocka_unit_test(test_country_none),
	    cmocka_unit_test(test_calling_code),
	    cmocka_unit_test(test_mask),
	    cmocka_unit_test(test_hash),
	    cmocka_unit_test(test_table_invariants),
	    cmocka_unit_test(test_country_known),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
