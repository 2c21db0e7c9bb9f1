/* SPDX-License-Identifier: MIT */
/*
 * The keyed digests of privacy.h: the recipient tag in provider event ids
 * and the API's request hash, against vectors computed independently
 * (Python's hmac over the documented messages), their domain separation,
 * and the rekeying of a stored plain SHA-256 by the data migration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"
#include "phone.h"
#include "privacy.h"
#include "util.h"

#define KEY "unit-test-hash-key"

static int setup(void **state)
{
	(void)state;
	privacy_set_hash_key((const uint8_t *)KEY, sizeof(KEY) - 1);
	return 0;
}

static void test_tag_vectors(void **state)
{
	char tag[PRIVACY_TAG_LEN + 1];
	(void)state;
	/* "rcpt-" + hex(HMAC-SHA256(key, "dlrd-tag/v1:" + raw))[:16] */
	privacy_tag("+14155550100", 12, tag);
	assert_string_equal(tag, "rcpt-3e71accb2658bcd2");
	/* the raw text, not the normalized number: two raw forms, two tags */
	privacy_tag("14155550100", 11, tag);
	assert_string_equal(tag, "rcpt-ff299ca748119ed3");
	privacy_tag("+447700900123", 13, tag);
	assert_string_equal(tag, "rcpt-0ddcd554a75431db");
	assert_true(privacy_is_tag(tag, strlen(tag)));
}

static void test_tag_is_keyed(void **state)
{
	char a[PRIVACY_TAG_LEN + 1], b[PRIVACY_TAG_LEN + 1], plain[65];
	uint8_t md[CRYPTO_SHA256_LEN];
	(void)state;
	privacy_tag("+14155550100", 12, a);
	privacy_set_hash_key((const uint8_t *)"another-key-another-key-another!", 31);
	privacy_tag("+14155550100", 12, b);
	setup(NULL);
	assert_string_not_equal(a, b);
	/* not a truncated plain hash of the number, nor the recipient hash */
	crypto_sha256("+14155550100", 12, md);
	crypto_hex(md, sizeof(md), plain);
	assert_memory_not_equal(a + PRIVACY_TAG_PREFIX_LEN, plain, PRIVACY_TAG_HEX);
	phone_hash((const uint8_t *)KEY, sizeof(KEY) - 1, "+14155550100", plain);
	assert_memory_not_equal(a + PRIVACY_TAG_PREFIX_LEN, plain, PRIVACY_TAG_HEX);
}

static void test_recipient_hash(void **state)
{
	char h[65] = "", want[65];
	(void)state;
	/* unchanged: HMAC(key, E.164), what dlrd has always stored */
	assert_true(privacy_recipient_hash("+14155550100", h));
	phone_hash((const uint8_t *)KEY, sizeof(KEY) - 1, "+14155550100", want);
	assert_string_equal(h, want);
	privacy_set_hash_key(NULL, 0);
	assert_false(privacy_has_key());
	assert_false(privacy_recipient_hash("+14155550100", h));
	setup(NULL);
	assert_true(privacy_has_key());
}

static void test_is_tag(void **state)
{
	(void)state;
	assert_true(privacy_is_tag("rcpt-0123456789abcdef", 21));
	assert_false(privacy_is_tag("rcpt-0123456789ABCDEF", 21));
	/* lower-case hex only: g..z are not digits */
	assert_false(privacy_is_tag("rcpt-0123456789abcdeg", 21));
	assert_false(privacy_is_tag("rcpt-zzzzzzzzzzzzzzzz", 21));
	assert_false(privacy_is_tag("rcpt-0123456789abcde", 20));
	assert_false(privacy_is_tag("rcpt-0123456789abcdef0", 22));
	assert_false(privacy_is_tag("rcpx-0123456789abcdef", 21));
	assert_false(privacy_is_tag("+14155550100", 12));
	assert_false(privacy_is_tag("", 0));
}

static void test_request_hash(void **state)
{
	static const char body[] = "{\"to\":\"+14155550100\"}";
	uint8_t md[CRYPTO_SHA256_LEN];
	char old[65], h[65], r[65];
	(void)state;
	crypto_sha256(body, sizeof(body) - 1, md);
	crypto_hex(md, sizeof(md), old);
	assert_string_equal(old,
	                    "502a9b7b9e0f3f629c7e4b54bdd801bf80838f4c585f0f316e3a0697d9f3f734");
	/* hex(HMAC-SHA256(key, "dlrd-request/v1:" + SHA-256(body))) */
	privacy_request_hash(md, h);
	assert_string_equal(h, "13d88ba2c7438d0855a1c195a919d365d1c7312551bb332dc4c4d3da919319ad");
	/* the migration rekeys the stored plain SHA-256 to the same value */
	assert_int_equal(privacy_request_hash_rekey(old, r), 0);
	assert_string_equal(r, h);
	for (char *p = old; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 32);
	assert_int_equal(privacy_request_hash_rekey(old, r), 0);
	assert_string_equal(r, h);
	/* anything else is not a stored SHA-256 */
	assert_int_equal(privacy_request_hash_rekey("", r), DLRD_EINVAL);
	assert_int_equal(privacy_request_hash_rekey(NULL, r), DLRD_EINVAL);
	old[10] = 'g';
	assert_int_equal(privacy_request_hash_rekey(old, r), DLRD_EINVAL);
	old[10] = '0';
	old[63] = '\0';
	assert_int_equal(privacy_request_hash_rekey(old, r), DLRD_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_tag_vectors, setup),
	    cmocka_unit_test_setup(test_tag_is_keyed, setup),
	    cmocka_unit_test_setup(test_recipient_hash, setup),
	    cmocka_unit_test_setup(test_is_tag, setup),
	    cmocka_unit_test_setup(test_request_hash, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
