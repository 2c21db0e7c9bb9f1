/* SPDX-License-Identifier: MIT */
/*
 * keyfile.h: a key created once (0600, hex), read back on every later start,
 * and never seen half-written: not by a process that starts at the same
 * moment, not after a crash in the middle of creating it.  An existing key
 * file is read only when it is private to dlrd's user.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
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
	assert_int_equal(chmod(path, 0600), 0); /* private: only its content is wrong */
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

/* Writes a valid hash.key (KEYLEN bytes of 0x5a) with the given mode into
 * dir; path gets its name. */
static void write_key(const char *dir, mode_t mode, char *path, size_t cap)
{
	FILE *f;

	snprintf(path, cap, "%s/hash.key", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	for (int i = 0; i < KEYLEN; i++)
		fputs("5a", f);
	fputs("\n", f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

/* A key file that group or others may read or write stops start-up with a
 * message naming the file, its mode and the fix, and is left as it is (not
 * replaced, not chmodded behind the operator's back).  Before the fix any
 * of these loaded silently. */
static void test_key_open_to_others_refused(void **state)
{
	static const mode_t modes[] = {0644, 0640, 0604, 0620, 0602, 0660, 0666, 0610, 0601};
	(void)state;

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		uint8_t k[KEYLEN];
		char err[512], path[256], want[600], *dir = make_dir();
		int created = -1;
		struct stat st;

		write_key(dir, modes[i], path, sizeof(path));
		assert_int_equal(
		    keyfile_load(dir, "hash.key", k, KEYLEN, &created, err, sizeof(err)),
		    DLRD_ECONFIG);
		assert_int_equal(created, 0);
		snprintf(want, sizeof(want), "key file %s has mode %04o", path, (unsigned)modes[i]);
		if (!strstr(err, want))
			fail_msg("mode %04o: err \"%s\"", (unsigned)modes[i], err);
		snprintf(want, sizeof(want), "chmod 600 %s", path);
		assert_non_null(strstr(err, want));
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_mode & 07777, modes[i]);
		assert_int_equal(st.st_size, 2 * KEYLEN + 1);
		remove_dir(dir);
		free(dir);
	}
}

/* 0600 (what dlrd creates) and 0400 (read-only, as some admins keep keys)
 * load, and give the key in the file. */
static void test_private_modes_load(void **state)
{
	static const mode_t modes[] = {0600, 0400};
	(void)state;

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		uint8_t k[KEYLEN], want[KEYLEN];
		char err[512], path[256], *dir = make_dir();
		int created = -1;

		memset(want, 0x5a, sizeof(want));
		write_key(dir, modes[i], path, sizeof(path));
		if (keyfile_load(dir, "hash.key", k, KEYLEN, &created, err, sizeof(err)) != 0)
			fail_msg("mode %04o: %s", (unsigned)modes[i], err);
		assert_int_equal(created, 0);
		assert_memory_equal(k, want, KEYLEN);
		remove_dir(dir);
		free(dir);
	}
}

/* A directory or a FIFO in the key's place is refused by name; the FIFO
 * must not hang start-up waiting for a writer (alarm: the test dies
 * rather than hang). */
static void test_not_regular_file_refused(void **state)
{
	uint8_t k[KEYLEN];
	char err[512], path[256], want[600], *dir = make_dir();
	int created = -1;
	(void)state;

	snprintf(path, sizeof(path), "%s/hash.key", dir);
	snprintf(want, sizeof(want), "key file %s is not a regular file", path);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(keyfile_load(dir, "hash.key", k, KEYLEN, &created, err, sizeof(err)),
	                 DLRD_ECONFIG);
	assert_string_equal(err, want);
	assert_int_equal(rmdir(path), 0);

	assert_int_equal(mkfifo(path, 0600), 0);
	alarm(10);
	assert_int_equal(keyfile_load(dir, "hash.key", k, KEYLEN, &created, err, sizeof(err)),
	                 DLRD_ECONFIG);
	alarm(0);
	assert_string_equal(err, want);
	remove_dir(dir);
	free(dir);
}

/* A key file of another user (not root), 0600 or not, is theirs to rewrite:
 * refused.  Needs root to make one; a file of root's passes for anyone
 * who can read it. */
static void test_foreign_owner_refused(void **state)
{
	uint8_t k[KEYLEN];
	char err[512], path[256], want[600], *dir;
	int created = -1;
	(void)state;

	if (geteuid() != 0)
		skip();
	dir = make_dir();
	write_key(dir, 0600, path, sizeof(path));
	assert_int_equal(chown(path, 65534, 65534), 0);
	assert_int_equal(keyfile_load(dir, "hash.key", k, KEYLEN, &created, err, sizeof(err)),
	                 DLRD_ECONFIG);
	snprintf(want, sizeof(want),
	         "key file %s is owned by uid 65534, not by dlrd's user (uid 0)", path);
	assert_non_null(strstr(err, want));
	assert_int_equal(chown(path, 0, 0), 0);
	assert_int_equal(keyfile_load(dir, "hash.key", k, KEYLEN, &created, err, sizeof(err)), 0);
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
	    cmocka_unit_test(test_key_open_to_others_refused),
	    cmocka_unit_test(test_private_modes_load),
	    cmocka_unit_test(test_not_regular_file_refused),
	    cmocka_unit_test(test_foreign_owner_refused),
	    cmocka_unit_test(test_concurrent_starts_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
