/* SPDX-License-Identifier: MIT */
/*
 * keyfile.h: a key created once (0600, hex), read back on every later start,
 * and never seen half-written: not by a process that starts at the same
 * moment, not after a crash in the middle of creating it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "keyfile.h"
#include "racing.h"
#include "util.h"

#define KEYLEN 32

static char *make_dir(void)
{
	char tmpl[] = "/tmp/dlrd-keyfile-XXXXXX";
	char *d = mkdtemp(tmpl);
	assert_non_null(d);
	return strdup(d);
}

static void remove_dir(const char *dir)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_created_once_then_read_back(void **state)
{
	uint8_t a[KEYLEN], b[KEYLEN];
	char err[256], path[256], *dir = make_dir();
	struct stat st;
	int created = -1;
	FILE *f;
	char line[128];
	(void)state;

	assert_int_equal(keyfile_load(dir, "hash.key", a, KEYLEN, &created, err, sizeof(err)), 0);
	assert_int_equal(created, 1);
	snprintf(path, sizeof(path), "%s/hash.key", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 2 * KEYLEN + 1);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	assert_int_equal(strspn(line, "0123456789abcdef"), 2 * KEYLEN);

	assert_int_equal(keyfile_load(dir, "hash.key", b, KEYLEN, &created, err, sizeof(err)), 0);
	assert_int_equal(created, 0);
	assert_memory_equal(a, b, KEYLEN);
	/* nothing else left in the folder */
	{
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "test \"$(ls -A '%s')\" = hash.key", dir);
		assert_int_equal(system(cmd), 0);
	}
	remove_dir(dir);
	free(dir);
}

/* A file that is there but not a key (truncated, edited) stops start-up
 * with its path named; dlrd never replaces it with a new key. */
static void test_bad_file_refused_not_replaced(void **state)
{
	uint8_t k[KEYLEN];
	char err[256], path[256], *dir = make_dir();
	int created = -1;
	FILE *f;
	struct stat st;
	(void)state;

	snprintf(path, sizeof(path), "%s/hash.key", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("abc\n", f);
	fclose(f);
	assert_int_equal(keyfile_load(dir, "hash.key", k, KEYLEN, &created, err, sizeof(err)),
	                 DLRD_EIO);
	assert_non_null(strstr(err, path));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 4);
	remove_dir(dir);
	free(dir);
}

/* What a crash in the middle of an earlier creation leaves behind (a
 * temporary file, whole or not) is not the key: the next start makes one. */
static void test_leftover_from_a_crash_ignored(void **state)
{
	uint8_t k[KEYLEN];
	char err[256], path[256], *dir = make_dir();
	int created = -1;
	FILE *f;
	(void)state;

	snprintf(path, sizeof(path), "%s/hash.key.tmp.12345", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("0123", f);
	fclose(f);
	assert_int_equal(keyfile_load(dir, "hash.key", k, KEYLEN, &created, err, sizeof(err)), 0);
	assert_int_equal(created, 1);
	remove_dir(dir);
	free(dir);
}

/* One racing start: out[0] whether keyfile_load() succeeded, then the key. */
static void load_hash_key(void *dir, uint8_t *out, size_t len)
{
	char err[256];
	int created;

	out[0] = (uint8_t)(keyfile_load(dir, "hash.key", out + 1, len - 1, &created, err,
	                                sizeof(err)) == 0);
	if (!out[0])
		fprintf(stderr, "child: %s\n", err);
}

/* Processes starting at the same moment on one data directory all get the
 * same key, and none of them reads the file before it is whole. */
static void test_concurrent_starts_agree(void **state)
{
	enum { ROUNDS = 200, PROCS = 4 };
	(void)state;

	for (int r = 0; r < ROUNDS; r++) {
		char *dir = make_dir();
		uint8_t keys[PROCS][KEYLEN + 1];

		race_procs(PROCS, load_hash_key, dir, &keys[0][0], sizeof(keys[0]));
		for (int i = 0; i < PROCS; i++) {
			assert_int_equal(keys[i][0], 1);
			assert_memory_equal(keys[i], keys[0], sizeof(keys[i]));
		}
		remove_dir(dir);
		free(dir);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_created_once_then_read_back),
	    cmocka_unit_test(test_bad_file_refused_not_replaced),
	    cmocka_unit_test(test_leftover_from_a_crash_ignored),
	    cmocka_unit_test(test_concurrent_starts_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
