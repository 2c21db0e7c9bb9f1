/* SPDX-License-Identifier: MIT */
/*
 * Every input that ever crashed a fuzz target stays a test: this replays
 * fuzz/regressions/<name>/ (and the seed corpus fuzz/corpus/<name>/) through
 * the very entry point libFuzzer calls, with the same property checks, in
 * the ordinary build, and so under ASan+UBSan in `make asan-test` too.  A
 * failing input aborts the binary right after "replay <path>" is printed.
 *
 * The targets below are compiled into this one file, each with
 * LLVMFuzzerTestOneInput renamed (their file-level names carry per-target
 * prefixes so they do not clash).  A target that cannot share a translation
 * unit, such as a provider's fuzz_provider_<name>.c, gets a three-line test
 * of its own (see fuzz_replay.h); test_every_regression_replayed fails when a
 * folder of regressions has neither.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define LLVMFuzzerTestOneInput fuzz_form_one
#include "../../fuzz/fuzz_form.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_base64_one
#include "../../fuzz/fuzz_base64.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_rfc3339_one
#include "../../fuzz/fuzz_rfc3339.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_phone_one
#include "../../fuzz/fuzz_phone.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_config_one
#include "../../fuzz/fuzz_config.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_twilio_one
#include "../../fuzz/fuzz_twilio.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_json_peek_one
#include "../../fuzz/fuzz_json_peek.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_jwt_one
#include "../../fuzz/fuzz_jwt.c"
#undef LLVMFuzzerTestOneInput

#include "fuzz_replay.h"

static const struct {
	const char *name;
	fr_entry entry;
} targets[] = {
    {"form", fuzz_form_one},           {"base64", fuzz_base64_one}, {"rfc3339", fuzz_rfc3339_one},
    {"phone", fuzz_phone_one},         {"config", fuzz_config_one}, {"twilio", fuzz_twilio_one},
    {"json_peek", fuzz_json_peek_one}, {"jwt", fuzz_jwt_one},
};

static char root[4096];

static int setup(void **state)
{
	(void)state;
	fr_root(__FILE__, root, sizeof(root));
	return 0;
}

static void replay(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(targets); i++) {
		if (strcmp(targets[i].name, name) == 0) {
			fr_replay_target(root, name, targets[i].entry);
			return;
		}
	}
	fail_msg("no target %s", name);
}

static void test_form(void **state)
{
	(void)state;
	replay("form");
}

static void test_base64(void **state)
{
	(void)state;
	replay("base64");
}

static void test_rfc3339(void **state)
{
	(void)state;
	replay("rfc3339");
}

static void test_phone(void **state)
{
	(void)state;
	replay("phone");
}

static void test_config(void **state)
{
	(void)state;
	replay("config");
}

static void test_twilio(void **state)
{
	(void)state;
	replay("twilio");
}

static void test_json_peek(void **state)
{
	(void)state;
	replay("json_peek");
}

static void test_jwt(void **state)
{
	(void)state;
	replay("jwt");
}

/* A folder of regressions nobody replays would be a crash that may come
 * back unnoticed: each one needs a target above or a test of its own. */
static void test_every_regression_replayed(void **state)
{
	char dir[4096 + 32], own[8192];
	DIR *d;
	struct dirent *de;
	unsigned checked = 0;

	(void)state;
	util_fmt(dir, sizeof(dir), "%s/fuzz/regressions", root);
	d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d))) {
		bool known = false;
		struct stat st;
		if (de->d_name[0] == '.')
			continue;
		for (size_t i = 0; i < ARRAY_LEN(targets); i++)
			known = known || strcmp(targets[i].name, de->d_name) == 0;
		util_fmt(own, sizeof(own), "%s/tests/unit/test_fuzz_%s.c", root, de->d_name);
		if (!known && stat(own, &st) != 0)
			fail_msg("fuzz/regressions/%s is replayed by no test: add %s (see "
			         "tests/unit/fuzz_replay.h)",
			         de->d_name, own);
		checked++;
	}
	closedir(d);
	/* the folder was read (a target with no crash yet has seeds only) */
	assert_true(checked > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_form),
	    cmocka_unit_test(test_base64),
	    cmocka_unit_test(test_rfc3339),
	    cmocka_unit_test(test_phone),
	    cmocka_unit_test(test_config),
	    cmocka_unit_test(test_twilio),
	    cmocka_unit_test(test_json_peek),
	    cmocka_unit_test(test_jwt),
	    cmocka_unit_test(test_every_regression_replayed),
	};
	return cmocka_run_group_tests_name("unit/fuzz_regressions", tests, setup, NULL);
}
