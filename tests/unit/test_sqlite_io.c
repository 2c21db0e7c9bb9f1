/* SPDX-License-Identifier: MIT */
/*
 * The SQLite backend's two I/O helpers, through SQLite itself:
 *   - sqlite_vfs.c gathers WAL writes, yet every commit is in the WAL file when
 *     COMMIT returns: another connection (default VFS) reads it, and a copy
 *     of the files taken right then (a crash image) holds it; and a commit
 *     whose last write fails fails with an I/O error, never an abort();
 *   - sqlite_pcache.c skips truncations of the page cache, yet a truncation
 *     drops every page past its limit, however the page got its number
 *     (driven through the cache's methods), and transactions that split
 *     pages and then roll back, whole or to a savepoint, leave the database
 *     intact, with a cache small enough to evict and spill.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/sqlite_int.h"
#include "store/store_int.h"
#include "util.h"

struct fixture {
	char dir[64];
	char path[128];
	sqlite3 *db; /* through the dlrd VFS, WAL mode, synchronous=NORMAL */
};

static void exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg ? msg : "?");
}

static long long one_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	long long v = -1;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void assert_intact(sqlite3 *db)
{
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
	sqlite3_finalize(st);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	util_strlcpy(f->dir, "/tmp/dlrd-sqlio-XXXXXX", sizeof(f->dir));
	assert_non_null(mkdtemp(f->dir));
	util_fmt(f->path, sizeof(f->path), "%s/t.db", f->dir);
	const char *vfs = store__sqlite_vfs_register();
	assert_string_equal(vfs, "dlrd");
	assert_int_equal(
	    sqlite3_open_v2(f->path, &f->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
	    SQLITE_OK);
	exec(f->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
	            "PRAGMA wal_autocheckpoint=0;"
	            "CREATE TABLE t(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID;"
	            "CREATE TABLE u(id INTEGER PRIMARY KEY, k BLOB, v BLOB);"
	            "CREATE INDEX u_k ON u(k);");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];
	sqlite3_close(f->db);
	util_fmt(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* n rows with random 16-byte keys (random keys split pages all over). */
static void insert_random(sqlite3 *db, int n)
{
	char sql[200];
	util_fmt(sql, sizeof(sql),
	         "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %d)"
	         " INSERT INTO u(k, v) SELECT randomblob(16), randomblob(300) FROM c",
	         n);
	exec(db, sql);
	util_fmt(sql, sizeof(sql),
	         "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %d)"
	         " INSERT INTO t(k, v) SELECT randomblob(16), randomblob(200) FROM c",
	         n);
	exec(db, sql);
}

/* Copies the database and its WAL as they are on file right now, as a
 * crash would leave them, and returns the rows of u the copy holds. */
static long long rows_in_crash_image(struct fixture *f)
{
	char cmd[600], copy[160];
	sqlite3 *db;
	util_fmt(copy, sizeof(copy), "%s/crash.db", f->dir);
	util_fmt(cmd, sizeof(cmd), "rm -f '%s'*; cp '%s' '%s' && cp '%s-wal' '%s-wal'", copy,
	         f->path, copy, f->path, copy);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(sqlite3_open_v2(copy, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	long long n = one_int(db, "SELECT count(*) FROM u");
	assert_intact(db);
	sqlite3_close(db);
	return n;
}

static void test_commit_is_on_file_when_commit_returns(void **state)
{
	struct fixture *f = *state;
	sqlite3 *other;
	uint64_t asked0, made0, asked, made;
	long long total = 0;

	assert_int_equal(sqlite3_open_v2(f->path, &other, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	store__sqlite_vfs_counts(&asked0, &made0);
	for (int i = 1; i <= 20; i++) {
		exec(f->db, "BEGIN");
		insert_random(f->db, 10 * i);
		exec(f->db, "COMMIT");
		total += 10 * i;
		/* another connection, another file handle, the default VFS */
		assert_int_equal(one_int(other, "SELECT count(*) FROM u"), total);
		assert_int_equal(one_int(other, "SELECT count(*) FROM t"), total);
		assert_int_equal(rows_in_crash_image(f), total);
	}
	assert_intact(other);
	sqlite3_close(other);
	/* and the frames were gathered: far fewer writes than SQLite asked for */
	store__sqlite_vfs_counts(&asked, &made);
	assert_true(asked - asked0 > 1000);
	assert_true((made - made0) * 10 < asked - asked0);
}

static void test_large_and_spilling_transactions(void **state)
{
	struct fixture *f = *state;

	/* A 40-page cache spills pages to the WAL mid-transaction and reads
	 * them back; 4 MB of rows overflow the 1 MiB buffer many times. */
	exec(f->db, "PRAGMA cache_size=40");
	exec(f->db, "BEGIN");
	insert_random(f->db, 8000);
	exec(f->db, "UPDATE u SET v = randomblob(310) WHERE id % 3 = 0");
	exec(f->db, "COMMIT");
	assert_int_equal(one_int(f->db, "SELECT count(*) FROM u"), 8000);
	assert_int_equal(rows_in_crash_image(f), 8000);
	exec(f->db, "BEGIN");
	insert_random(f->db, 3000);
	exec(f->db, "ROLLBACK");
	assert_int_equal(one_int(f->db, "SELECT count(*) FROM u"), 8000);
	assert_int_equal(rows_in_crash_image(f), 8000);
	assert_intact(f->db);
	/* a checkpoint, then new frames from the WAL's start again */
	exec(f->db, "PRAGMA wal_checkpoint(TRUNCATE)");
	exec(f->db, "BEGIN");
	insert_random(f->db, 500);
	exec(f->db, "COMMIT");
	assert_int_equal(rows_in_crash_image(f), 8500);
	assert_intact(f->db);
}

static void test_rollbacks_leave_no_stale_pages(void **state)
{
	struct fixture *f = *state;
	unsigned long skipped0 = store__sqlite_pcache_skipped();
	long long kept = 0;

	for (int round = 0; round < 30; round++) {
		exec(f->db, round % 2 ? "PRAGMA cache_size=30" : "PRAGMA cache_size=2000");
		/* grows the file and splits pages, then takes it all back */
		exec(f->db, "BEGIN");
		insert_random(f->db, 200);
		exec(f->db, "ROLLBACK");
		/* keeps some, takes back what came after a savepoint */
		exec(f->db, "BEGIN");
		insert_random(f->db, 50);
		exec(f->db, "SAVEPOINT s");
		insert_random(f->db, 150);
		exec(f->db, "ROLLBACK TO s");
		exec(f->db, "RELEASE s");
		exec(f->db, "COMMIT");
		kept += 50;
		/* then commits a split-heavy transaction */
		exec(f->db, "BEGIN");
		insert_random(f->db, 100);
		exec(f->db, "COMMIT");
		kept += 100;
		assert_int_equal(one_int(f->db, "SELECT count(*) FROM u"), kept);
		assert_int_equal(one_int(f->db, "SELECT count(*) FROM t"), kept);
		assert_int_equal(one_int(f->db, "SELECT count(*) FROM u INDEXED BY u_k"
		                                " WHERE k IS NOT NULL"),
		                 kept);
	}
	assert_intact(f->db);
	/* a fresh connection (empty cache) sees the same */
	sqlite3 *other;
	assert_int_equal(sqlite3_open_v2(f->path, &other, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(one_int(other, "SELECT count(*) FROM t"), kept);
	assert_intact(other);
	sqlite3_close(other);
	/* the wrapper was in place and did skip truncations */
	assert_true(store__sqlite_pcache_skipped() > skipped0);
}

/* The default VFS's pwrite(), through its own hook for tests
 * (xSetSystemCall): while armed, a write of a lone commit-frame header (24
 * bytes, "database size after commit" not zero) fails with EIO.  SQLite
 * writes one alone only when it rewrites the checksums of a transaction
 * that overwrote its own frames (walRewriteChecksums()), the commit frame's
 * last; dlrd's VFS gathers every other. */
static sqlite3_syscall_ptr os_pwrite, os_pwrite64;
static bool fail_commit_header;
static unsigned failed_commit_headers;

static bool lone_commit_header(const void *b, size_t n)
{
	const unsigned char *p = b;
	if (!fail_commit_header || n != 24 || (p[4] | p[5] | p[6] | p[7]) == 0)
		return false;
	failed_commit_headers++;
	errno = EIO;
	return true;
}

static ssize_t test_pwrite(int fd, const void *b, size_t n, off_t o)
{
	return lone_commit_header(b, n)
	           ? -1
	           : ((ssize_t(*)(int, const void *, size_t, off_t))os_pwrite)(fd, b, n, o);
}

static ssize_t test_pwrite64(int fd, const void *b, size_t n, off_t o)
{
	return lone_commit_header(b, n)
	           ? -1
	           : ((ssize_t(*)(int, const void *, size_t, off_t))os_pwrite64)(fd, b, n, o);
}

static void hook_pwrite(void)
{
	sqlite3_vfs *os = sqlite3_vfs_find(NULL);
	assert_non_null(os);
	os_pwrite = os->xGetSystemCall(os, "pwrite");
	os_pwrite64 = os->xGetSystemCall(os, "pwrite64");
	assert_int_equal(os->xSetSystemCall(os, "pwrite", (sqlite3_syscall_ptr)test_pwrite),
	                 SQLITE_OK);
	assert_int_equal(os->xSetSystemCall(os, "pwrite64", (sqlite3_syscall_ptr)test_pwrite64),
	                 SQLITE_OK);
}

/* A transaction that spills, so that SQLite overwrites its own frames and
 * then rewrites their checksums, the commit frame's last: when that last
 * write fails, COMMIT fails with an I/O error and nothing of the
 * transaction is visible or in a crash image (dlrd answers 503).  It used
 * to wait in the VFS's buffer for the shared-memory barrier, which can
 * only abort(): a failing disk crashed dlrd. */
static void test_failed_checksum_rewrite_fails_the_commit(void **state)
{
	struct fixture *f = *state;

	exec(f->db, "PRAGMA cache_size=40");
	exec(f->db, "BEGIN");
	insert_random(f->db, 1000);
	exec(f->db, "COMMIT");
	exec(f->db, "BEGIN");
	insert_random(f->db, 3000);
	exec(f->db, "UPDATE u SET v = randomblob(310) WHERE id % 3 = 0");
	fail_commit_header = true;
	failed_commit_headers = 0;
	int rc = sqlite3_exec(f->db, "COMMIT", NULL, NULL, NULL);
	fail_commit_header = false;
	assert_int_equal(failed_commit_headers, 1);
	assert_int_equal(rc & 0xff, SQLITE_IOERR);
	if (!sqlite3_get_autocommit(f->db))
		exec(f->db, "ROLLBACK");
	assert_int_equal(one_int(f->db, "SELECT count(*) FROM u"), 1000);
	assert_int_equal(rows_in_crash_image(f), 1000);
	assert_intact(f->db);
	/* and the next transactions, one frame or many, commit as before */
	exec(f->db, "INSERT INTO u(k, v) VALUES (x'01', x'02')");
	exec(f->db, "BEGIN");
	insert_random(f->db, 500);
	exec(f->db, "COMMIT");
	assert_int_equal(one_int(f->db, "SELECT count(*) FROM u"), 1501);
	assert_int_equal(rows_in_crash_image(f), 1501);
	assert_intact(f->db);
}

static sqlite3_pcache_methods2 pc; /* the installed cache's methods */

/* True when page key is in cache c (unpins it again). */
static bool cached(sqlite3_pcache *c, unsigned key)
{
	sqlite3_pcache_page *p = pc.xFetch(c, key, 0);
	if (p)
		pc.xUnpin(c, p, 0);
	return p != NULL;
}

static void fill(sqlite3_pcache *c, unsigned from, unsigned to)
{
	for (unsigned k = from; k <= to; k++) {
		sqlite3_pcache_page *p = pc.xFetch(c, k, 2);
		assert_non_null(p);
		pc.xUnpin(c, p, 0);
	}
}

/* The cache's contract, straight through its methods: after xTruncate(L)
 * no page at or past L is left, however it got its number. */
static void test_truncate_drops_every_page_past_the_limit(void **state)
{
	(void)state;
	sqlite3_pcache *c = pc.xCreate(4096, 256, 1);
	assert_non_null(c);
	pc.xCachesize(c, 500);

	/* fetched past the limit */
	fill(c, 1, 40);
	pc.xTruncate(c, 21);
	for (unsigned k = 1; k <= 40; k++)
		assert_int_equal(cached(c, k), k < 21);

	/* moved far past it for a moment, as balance_nonroot() does, and back */
	sqlite3_pcache_page *p = pc.xFetch(c, 5, 0);
	assert_non_null(p);
	pc.xRekey(c, p, 5, 262145);
	pc.xRekey(c, p, 262145, 5);
	pc.xUnpin(c, p, 0);
	pc.xTruncate(c, 21);
	assert_true(cached(c, 5));

	/* moved past it and left there */
	p = pc.xFetch(c, 6, 0);
	pc.xRekey(c, p, 6, 262145);
	pc.xUnpin(c, p, 0);
	pc.xTruncate(c, 21);
	assert_false(cached(c, 262145));

	/* more moves than the wrapper keeps apart, most of them moved back,
	 * pages held by pointer meanwhile (as balance_nonroot() holds them) */
	sqlite3_pcache_page *held[16];
	for (unsigned k = 7; k <= 15; k++) {
		held[k] = pc.xFetch(c, k, 0);
		assert_non_null(held[k]);
		pc.xRekey(c, held[k], k, 300000 + k);
	}
	for (unsigned k = 7; k <= 14; k++)
		pc.xRekey(c, held[k], 300000 + k, k);
	for (unsigned k = 7; k <= 15; k++)
		pc.xUnpin(c, held[k], 0);
	pc.xTruncate(c, 21);
	for (unsigned k = 7; k <= 14; k++)
		assert_true(cached(c, k));
	assert_false(cached(c, 300015));
	fill(c, 15, 20);

	/* a moved page discarded, then a lower limit */
	fill(c, 21, 30);
	p = pc.xFetch(c, 25, 0);
	pc.xRekey(c, p, 25, 400000);
	pc.xUnpin(c, p, 1);
	pc.xTruncate(c, 3);
	for (unsigned k = 1; k <= 30; k++)
		assert_int_equal(cached(c, k), k < 3);
	assert_false(cached(c, 400000));
	pc.xDestroy(c);
}

int main(void)
{
	/* before SQLite initializes, as store_open() does */
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	store__sqlite_pcache_install();
	assert_int_equal(sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &pc), SQLITE_OK);
	assert_int_equal(sqlite3_initialize(), SQLITE_OK);
	hook_pwrite();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_failed_checksum_rewrite_fails_the_commit, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_commit_is_on_file_when_commit_returns, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_large_and_spilling_transactions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rollbacks_leave_no_stale_pages, setup, teardown),
	    cmocka_unit_test(test_truncate_drops_every_page_past_the_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
