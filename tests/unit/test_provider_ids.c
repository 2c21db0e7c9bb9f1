/* SPDX-License-Identifier: MIT */
/*
 * The canonical message-id hook of every provider: what the JSON API uses
 * so that a recorded send and its callbacks meet on one key, whatever case
 * the application or the provider wrote the id in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arena.h"
#include "provider.h"

static const char *canon(const char *provider, const char *id, struct arena *a)
{
	const struct provider *p = provider_find(provider, strlen(provider));
	assert_non_null(p);
	if (!p->canonical_id)
		return id;
	return p->canonical_id(a, id, strlen(id));
}

static void test_hex_and_uuid_ids_ignore_case(void **state)
{
	static const char *const hex_providers[] = {
	    "telnyx", "infobip", "vonage", "vonage-messages", "plivo", "kannel", "sns"};
	char buf[4096];
	struct arena a;
	(void)state;
	arena_init(&a, buf, sizeof(buf));
	for (size_t i = 0; i < ARRAY_LEN(hex_providers); i++) {
		const char *up =
		    canon(hex_providers[i], "AA2F6D1C-07B1-4D4E-9F1A-0C2B3D4E5F60", &a);
		const char *lo =
		    canon(hex_providers[i], "aa2f6d1c-07b1-4d4e-9f1a-0c2b3d4e5f60", &a);
		assert_string_equal(up, lo);
		assert_string_equal(lo, "aa2f6d1c-07b1-4d4e-9f1a-0c2b3d4e5f60");
	}
	/* MessageBird ids are hex without dashes */
	assert_string_equal(canon("messagebird", "ABCDEF0123456789", &a), "abcdef0123456789");
	/* an id that is not hex is kept as sent */
	assert_string_equal(canon("vonage-messages", "Not-Hex-Id", &a), "Not-Hex-Id");
	arena_fini(&a);
}

static void test_twilio_and_sinch_rules(void **state)
{
	char buf[4096];
	struct arena a;
	(void)state;
	arena_init(&a, buf, sizeof(buf));
	assert_string_equal(canon("twilio", "sm0123456789ABCDEF0123456789abcdef", &a),
	                    "SM0123456789abcdef0123456789abcdef");
	assert_string_equal(canon("sinch", "01fc66621vhds50z0n4s0hj0yz", &a),
	                    "01FC66621VHDS50Z0N4S0HJ0YZ");
	/* generic ids are the gateway's own: kept exactly */
	assert_string_equal(canon("generic", "Gw-42", &a), "Gw-42");
	arena_fini(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hex_and_uuid_ids_ignore_case),
	    cmocka_unit_test(test_twilio_and_sinch_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
