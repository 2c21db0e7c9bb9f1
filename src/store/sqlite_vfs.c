/* SPDX-License-Identifier: MIT */
/*
 * The SQLite backend's VFS, a shim over the default one ("dlrd"), used by
 * every connection.  Two jobs: each commit's WAL frames leave in one
 * pwrite() instead of two per page; and, for tests only, faults on demand.
 *
 * Gathered WAL writes: SQLite appends a frame to the WAL as two writes, its
 * 24-byte header and then the page, so a commit of 60 pages costs 120 pwrite() calls, each of
 * which pays the syscall and ext4's per-call work (inode lock, timestamps,
 * the per-page write_begin/write_end of a range that straddles page
 * boundaries).  Measured on this kind of machine: 2.2 us per frame so, 0.46
 * us per frame as one write (bench/README.md).
 *
 * So writes to a WAL file are gathered in a buffer while they are
 * contiguous and written out as one, and the buffer is always empty when a
 * commit becomes visible or durable:
 *   - after the page that follows a commit frame's header (a header whose
 *     "database size after commit" field is not zero: the WAL format,
 *     https://sqlite.org/fileformat2.html#walformat).  SQLite publishes the
 *     commit in the shared wal-index only after that write returns, and a
 *     failed write fails the commit;
 *   - at once for a commit frame's header that finds the buffer empty: no
 *     page may follow it.  A transaction that overwrote its own frames (a
 *     cache spill) rewrites their headers at COMMIT (walRewriteChecksums()),
 *     each after reading its frame, the commit frame's last and alone;
 *     buffered, it reached the file only at the barrier below, whose
 *     failure can only abort;
 *   - before anything else touches the file: a read (the writer reading back
 *     a page it spilled), a sync, a truncation, a size query, a file control,
 *     a write that does not continue the buffer, close;
 *   - in the main database file's shared-memory barrier, which SQLite calls
 *     when it writes a new wal-index header: a second guard that can only
 *     find the buffer empty.
 * Frames that never reach the file were never part of a visible or durable
 * commit, so a crash loses nothing that was acknowledged (dlrd answers only
 * after store_sync()'s fdatasync, which runs after COMMIT returned).
 *
 * Every other file, and every other method, passes straight through to the
 * default VFS.
 *
 * A failed sync of a main database file is remembered on that file
 * (store__sqlite_vfs_db_sync_failed()): only checkpoints sync the database,
 * and after a failed one the kernel may have dropped pages that earlier
 * checkpoints wrote without a sync and that the WAL no longer vouches for
 * once a later checkpoint succeeds (sqlite.c, the checkpointer).
 *
 * Faults, in the manner of SQLite's own test suite: while the file named by
 * the environment variable DLRD_TEST_FAULT_FILE exists, every write (as it
 * reaches the file), sync and truncate fails with SQLITE_IOERR, or
 * SQLITE_FULL when the file's first byte is 'f' (a full disk); only syncs,
 * dlrd's own WAL sync included, when it is 's'; only syncs of a main
 * database file (a checkpoint's last step) when it is 'd'.  Without that
 * variable the check is one NULL test.
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "sqlite_int.h"

#define WAL_BUF_BYTES (1u << 20)
#define WAL_WRITE_MAX (64u << 10)
#define WAL_FRAME_HDR 24

struct vfs_file {
	sqlite3_file base;
	sqlite3_file *real; /* follows this struct in the same allocation */
	bool is_wal;
	bool is_main_db;
	bool sync_failed;         /* main database: a sync failed (sticky) */
	bool flush_next;          /* the last write was a commit frame's header */
	struct vfs_file *partner; /* WAL <-> its main database file */
	char *buf;                /* WAL only, allocated at the first write */
	size_t len;
	sqlite3_int64 off; /* file offset of buf[0] */
};

static _Atomic uint64_t n_in, n_out; /* WAL writes asked for, made */
static sqlite3_vfs dlrd_vfs;
static sqlite3_vfs *below; /* the default VFS */
static const sqlite3_io_methods vfs_methods;
static const char *fault_path; /* $DLRD_TEST_FAULT_FILE, or NULL */

#define REAL(f) (((struct vfs_file *)(f))->real)

/* The armed fault mode: 0 (none), 'f' (full disk), 's' (syncs only), 'd'
 * (syncs of a main database file only) or 'e'. */
static char fault_mode(void)
{
	char c = 0;
	if (!fault_path)
		return 0;
	int fd = open(fault_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (read(fd, &c, 1) != 1 || (c != 'f' && c != 's' && c != 'd'))
		c = 'e';
	close(fd);
	return c;
}

/* 0 when writes and truncates go through, else the SQLite error to return. */
static int fault_write(void)
{
	char c = fault_mode();
	return c == 0 || c == 's' || c == 'd' ? 0 : c == 'f' ? SQLITE_FULL : SQLITE_IOERR_WRITE;
}

bool store__sqlite_vfs_sync_fails(void)
{
	char c = fault_mode();
	return c != 0 && c != 'd';
}

/* A write as it reaches the file. */
static int write_real(struct vfs_file *w, const void *b, int n, sqlite3_int64 o)
{
	int rc = fault_write();
	return rc ? rc : w->real->pMethods->xWrite(w->real, b, n, o);
}

/* Writes the buffer out, in pieces the unix VFS takes whole (its xWrite
 * writes at most 128 KiB - 1 bytes of a call, a page being its unit). */
static int flush(struct vfs_file *w)
{
	int rc = SQLITE_OK;

	for (size_t done = 0, n; done < w->len && rc == SQLITE_OK; done += n) {
		n = w->len - done < WAL_WRITE_MAX ? w->len - done : WAL_WRITE_MAX;
		rc = write_real(w, w->buf + done, (int)n, w->off + (sqlite3_int64)done);
		atomic_fetch_add_explicit(&n_out, 1, memory_order_relaxed);
	}
	w->off += (sqlite3_int64)w->len;
	w->len = 0;
	return rc;
}

static int v_close(sqlite3_file *f)
{
	struct vfs_file *w = (struct vfs_file *)f;
	int rc = flush(w);
	if (w->partner)
		w->partner->partner = NULL;
	free(w->buf);
	int rc2 = REAL(f)->pMethods->xClose(REAL(f));
	return rc != SQLITE_OK ? rc : rc2;
}

static int v_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
	int rc = flush((struct vfs_file *)f);
	return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xRead(REAL(f), b, n, o);
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int v_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
	struct vfs_file *w = (struct vfs_file *)f;
	bool commit_hdr = n == WAL_FRAME_HDR && be32((const unsigned char *)b + 4) != 0;
	int rc;

	if (!w->is_wal)
		return write_real(w, b, n, o);
	atomic_fetch_add_explicit(&n_in, 1, memory_order_relaxed);
	if (!w->buf && !(w->buf = malloc(WAL_BUF_BYTES))) {
		atomic_fetch_add_explicit(&n_out, 1, memory_order_relaxed);
		return write_real(w, b, n, o); /* unbuffered */
	}
	if (w->len && (o != w->off + (sqlite3_int64)w->len || w->len + (size_t)n > WAL_BUF_BYTES) &&
	    (rc = flush(w)) != SQLITE_OK)
		return rc;
	if (commit_hdr && !w->len) {
		/* Maybe no page follows (a checksum rewrite): out at once, so
		 * that a failure fails the commit; its page, if one follows,
		 * is flushed after it. */
		atomic_fetch_add_explicit(&n_out, 1, memory_order_relaxed);
		rc = write_real(w, b, n, o);
		w->flush_next = rc == SQLITE_OK;
		return rc;
	}
	if ((size_t)n > WAL_WRITE_MAX) {
		rc = write_real(w, b, n, o);
		atomic_fetch_add_explicit(&n_out, 1, memory_order_relaxed);
	} else {
		if (!w->len)
			w->off = o;
		memcpy(w->buf + w->len, b, (size_t)n);
		w->len += (size_t)n;
		rc = SQLITE_OK;
	}
	if (w->flush_next) { /* the page of a commit frame: out it all goes */
		w->flush_next = false;
		if (rc == SQLITE_OK)
			rc = flush(w);
	}
	if (commit_hdr)
		w->flush_next = true;
	return rc;
}

static int v_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	int rc = flush((struct vfs_file *)f);
	if (rc == SQLITE_OK && (rc = fault_write()) != SQLITE_OK)
		return rc == SQLITE_FULL ? rc : SQLITE_IOERR_TRUNCATE;
	return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int v_sync(sqlite3_file *f, int flags)
{
	struct vfs_file *w = (struct vfs_file *)f;
	int rc = flush(w);
	char c = rc == SQLITE_OK ? fault_mode() : 0;

	if (c == 'd' && !w->is_main_db)
		c = 0;
	if (c)
		rc = c == 'f' ? SQLITE_FULL : SQLITE_IOERR_FSYNC;
	else if (rc == SQLITE_OK)
		rc = REAL(f)->pMethods->xSync(REAL(f), flags);
	if (rc != SQLITE_OK && w->is_main_db)
		w->sync_failed = true;
	return rc;
}
static int v_size(sqlite3_file *f, sqlite3_int64 *size)
{
	int rc = flush((struct vfs_file *)f);
	return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int v_lock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int v_unlock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int v_check(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int v_fcntl(sqlite3_file *f, int op, void *arg)
{
	int rc = flush((struct vfs_file *)f);
	return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int v_sector(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int v_devchar(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int v_shmmap(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, ext, pp);
}
static int v_shmlock(sqlite3_file *f, int off, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void v_shmbarrier(sqlite3_file *f)
{
	struct vfs_file *wal = ((struct vfs_file *)f)->partner;

	/* Never so while the commit-frame rule above holds; if it ever did not,
	 * a commit would become visible without its frames on file, and
	 * stopping before anything is acknowledged is the only safe answer. */
	if (wal && wal->len && flush(wal) != SQLITE_OK) {
		LOG_E("wal_write_failed", "note=\"a commit's frames could not be written\"");
		abort();
	}
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int v_shmunmap(sqlite3_file *f, int del)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int v_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **pp)
{
	return REAL(f)->pMethods->xFetch(REAL(f), o, n, pp);
}
static int v_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p)
{
	return REAL(f)->pMethods->xUnfetch(REAL(f), o, p);
}

static const sqlite3_io_methods vfs_methods = {
    3,         v_close,      v_read,     v_write, v_truncate, v_sync,    v_size,
    v_lock,    v_unlock,     v_check,    v_fcntl, v_sector,   v_devchar, v_shmmap,
    v_shmlock, v_shmbarrier, v_shmunmap, v_fetch, v_unfetch,
};

static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out)
{
	struct vfs_file *w = (struct vfs_file *)file;
	(void)vfs;
	*w = (struct vfs_file){.real = (sqlite3_file *)(w + 1)};
	int rc = below->xOpen(below, name, w->real, flags, out);
	w->base.pMethods = w->real->pMethods ? &vfs_methods : NULL;
	w->is_main_db = (flags & SQLITE_OPEN_MAIN_DB) != 0;
	if (rc != SQLITE_OK || !w->real->pMethods || !(flags & SQLITE_OPEN_WAL) || !name)
		return rc;
	w->is_wal = true;
	sqlite3_file *db = sqlite3_database_file_object(name);
	if (db && db->pMethods == &vfs_methods) {
		w->partner = (struct vfs_file *)db;
		w->partner->partner = w;
	}
	return rc;
}

static int v_delete(sqlite3_vfs *v, const char *n, int s)
{
	(void)v;
	return below->xDelete(below, n, s);
}
static int v_access(sqlite3_vfs *v, const char *n, int fl, int *out)
{
	(void)v;
	return below->xAccess(below, n, fl, out);
}
static int v_fullpath(sqlite3_vfs *v, const char *n, int sz, char *out)
{
	(void)v;
	return below->xFullPathname(below, n, sz, out);
}
static int v_random(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	return below->xRandomness(below, n, out);
}
static int v_sleep(sqlite3_vfs *v, int us)
{
	(void)v;
	return below->xSleep(below, us);
}
static int v_time(sqlite3_vfs *v, double *out)
{
	(void)v;
	return below->xCurrentTime(below, out);
}
static int v_lasterr(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	return below->xGetLastError(below, n, out);
}
static int v_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
	(void)v;
	return below->xCurrentTimeInt64(below, out);
}

const char *store__sqlite_vfs_register(void)
{
	if (!below) {
		if (!(below = sqlite3_vfs_find(NULL)))
			return NULL;
		const char *fp = getenv("DLRD_TEST_FAULT_FILE");
		fault_path = fp && *fp ? fp : NULL;
		dlrd_vfs = (sqlite3_vfs){
		    .iVersion = 2,
		    .szOsFile = (int)sizeof(struct vfs_file) + below->szOsFile,
		    .mxPathname = below->mxPathname,
		    .zName = "dlrd",
		    .xOpen = v_open,
		    .xDelete = v_delete,
		    .xAccess = v_access,
		    .xFullPathname = v_fullpath,
		    .xDlOpen = NULL,
		    .xRandomness = v_random,
		    .xSleep = v_sleep,
		    .xCurrentTime = v_time,
		    .xGetLastError = v_lasterr,
		    .xCurrentTimeInt64 = v_time64,
		};
		sqlite3_vfs_register(&dlrd_vfs, 0);
	}
	return "dlrd";
}

void store__sqlite_vfs_counts(uint64_t *asked, uint64_t *made)
{
	*asked = atomic_load(&n_in);
	*made = atomic_load(&n_out);
}

bool store__sqlite_vfs_db_sync_failed(sqlite3 *db)
{
	sqlite3_file *f = NULL;

	if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK || !f ||
	    f->pMethods != &vfs_methods)
		return false;
	return ((struct vfs_file *)f)->sync_failed;
}
