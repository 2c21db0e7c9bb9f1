/* SPDX-License-Identifier: MIT */
/*
 * Replays fuzz inputs through a fuzz target's entry point in the ordinary
 * (gcc, and ASan+UBSan under `make asan-test`) test suite, so that every
 * crash a fuzzer once found stays a regression test and the committed seeds
 * keep running where no clang is needed.
 *
 * A test includes the fuzz target's source (fuzz/fuzz_<name>.c, with
 * LLVMFuzzerTestOneInput renamed when it includes several), then this file,
 * and calls fr_replay() for fuzz/corpus/<name>/ and fuzz/regressions/<name>/.
 * A broken property aborts, so a failing input ends the test binary with its
 * path printed just before.  For a target of its own translation unit (a
 * provider's fuzz_provider_<name>.c, whose file-level names may clash with
 * other targets'), a whole test is three lines:
 *
 *     #include "../../fuzz/fuzz_provider_<name>.c"
 *     #include "fuzz_replay.h"
 *     FR_MAIN("provider_<name>", LLVMFuzzerTestOneInput)
 *
 * saved as tests/unit/test_fuzz_provider_<name>.c.
 */
#ifndef DLRD_TEST_FUZZ_REPLAY_H
#define DLRD_TEST_FUZZ_REPLAY_H

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "util.h"

typedef int (*fr_entry)(const uint8_t *data, size_t size);

/* The repository root, from the path of the test's own source file
 * (".../tests/unit/test_x.c"), or DLRD_SOURCE_DIR when set. */
static inline void fr_root(const char *file, char *out, size_t cap)
{
	const char *env = getenv("DLRD_SOURCE_DIR");
	size_t n;

	if (env && *env) {
		util_strlcpy(out, env, cap);
		return;
	}
	n = util_strlcpy(out, file, cap);
	for (int up = 0; up < 3 && n > 0; up++) {
		while (n > 0 && out[n - 1] != '/')
			n--;
		if (n > 0)
			n--; /* drop the '/' too */
		out[n] = '\0';
	}
	if (n == 0)
		util_strlcpy(out, ".", cap);
}

static inline int fr_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file in dir through entry, in name order.  Returns how
 * many ran; -1 when the folder does not exist. */
static inline long fr_replay(const char *dir, fr_entry entry)
{
	DIR *d = opendir(dir);
	char **names = NULL, path[4096];
	size_t n = 0, cap = 0;
	long ran = 0;
	struct dirent *de;

	if (!d)
		return -1;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			names = xrealloc(names, cap * sizeof(*names));
		}
		names[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), fr_name_cmp);
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		FILE *f;
		uint8_t *buf;
		size_t len;

		util_fmt(path, sizeof(path), "%s/%s", dir, names[i]);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		f = fopen(path, "rb");
		assert_non_null(f);
		buf = xmalloc((size_t)st.st_size + 1);
		len = fread(buf, 1, (size_t)st.st_size, f);
		fclose(f);
		assert_int_equal(len, (size_t)st.st_size);
		/* announced first: a crash or broken property aborts right here */
		fprintf(stderr, "replay %s\n", path);
		/* an exact-size copy, as libFuzzer hands inputs over */
		uint8_t *exact = xmalloc(len ? len : 1);
		if (len)
			memcpy(exact, buf, len);
		entry(len ? exact : buf, len);
		free(exact);
		free(buf);
		ran++;
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return ran;
}

/* Replays fuzz/corpus/<name>/ and fuzz/regressions/<name>/ under root;
 * fails the test when neither has an input. */
static inline void fr_replay_target(const char *root, const char *name, fr_entry entry)
{
	char dir[4096];
	long a, b;

	util_fmt(dir, sizeof(dir), "%s/fuzz/corpus/%s", root, name);
	a = fr_replay(dir, entry);
	util_fmt(dir, sizeof(dir), "%s/fuzz/regressions/%s", root, name);
	b = fr_replay(dir, entry);
	print_message("fuzz_%s: %ld seeds, %ld regressions replayed\n", name, a < 0 ? 0 : a,
	              b < 0 ? 0 : b);
	if ((a < 0 ? 0 : a) + (b < 0 ? 0 : b) == 0)
		fail_msg("fuzz_%s: no input in %s/fuzz/corpus/%s or fuzz/regressions/%s", name,
		         root, name, name);
}

/* The whole test for one target in its own translation unit. */
#define FR_MAIN(name, entry)                                                                       \
	static void fr_test_one(void **state)                                                      \
	{                                                                                          \
		char root[4096];                                                                   \
		(void)state;                                                                       \
		fr_root(__FILE__, root, sizeof(root));                                             \
		fr_replay_target(root, name, entry);                                               \
	}                                                                                          \
	int main(void)                                                                             \
	{                                                                                          \
		const struct CMUnitTest tests[] = {cmocka_unit_test(fr_test_one)};                 \
		return cmocka_run_group_tests_name("unit/fuzz_regressions_" name, tests, NULL,     \
		                                   NULL);                                          \
	}

#endif
