/* SPDX-License-Identifier: MIT */
/*
 * A fault-injecting SQLite VFS for tests, in the manner of SQLite's own test
 * suite: it wraps the default VFS and, while the file named by the
 * environment variable DLRD_TEST_FAULT_FILE exists, fails every write, sync
 * and truncate with SQLITE_IOERR (or SQLITE_FULL when the file's first byte
 * is 'f', a full disk; only syncs, dlrd's own WAL sync included, when it is
 * 's').  Without that variable nothing is registered and the default VFS is
 * used untouched, so production pays nothing.
 */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

#include "store_int.h"
#include "util.h"

struct fault_file {
	sqlite3_file base;
	sqlite3_file *real; /* follows this struct in the same allocation */
};

static sqlite3_vfs fault_vfs;
static sqlite3_vfs *real_vfs;
static const char *fault_path;

/* The armed mode: 0 (none), 'f' (full disk), 's' (syncs only) or 'e'. */
static char mode(void)
{
	char c = 0;
	int fd = open(fault_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (read(fd, &c, 1) != 1 || (c != 'f' && c != 's'))
		c = 'e';
	close(fd);
	return c;
}

/* 0 when writes and truncates go through, else the SQLite error to return. */
static int armed(void)
{
	char c = mode();
	return c == 0 || c == 's' ? 0 : c == 'f' ? SQLITE_FULL : SQLITE_IOERR_WRITE;
}

bool store__faultvfs_sync_fails(void)
{
	return fault_path && mode() != 0;
}

#define REAL(f) (((struct fault_file *)(f))->real)

static int f_close(sqlite3_file *f)
{
	return REAL(f)->pMethods->xClose(REAL(f));
}
static int f_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
	return REAL(f)->pMethods->xRead(REAL(f), b, n, o);
}
static int f_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
	int rc = armed();
	return rc ? rc : REAL(f)->pMethods->xWrite(REAL(f), b, n, o);
}
static int f_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	int rc = armed();
	return rc ? (rc == SQLITE_FULL ? rc : SQLITE_IOERR_TRUNCATE)
	          : REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int f_sync(sqlite3_file *f, int flags)
{
	char c = mode();
	return c == 'f' ? SQLITE_FULL
	       : c != 0 ? SQLITE_IOERR_FSYNC
	                : REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int f_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int f_lock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int f_unlock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int f_check(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int f_fcntl(sqlite3_file *f, int op, void *arg)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int f_sector(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int f_devchar(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int f_shmmap(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, ext, pp);
}
static int f_shmlock(sqlite3_file *f, int off, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void f_shmbarrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int f_shmunmap(sqlite3_file *f, int del)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int f_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **pp)
{
	return REAL(f)->pMethods->xFetch(REAL(f), o, n, pp);
}
static int f_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p)
{
	return REAL(f)->pMethods->xUnfetch(REAL(f), o, p);
}

static const sqlite3_io_methods fault_methods = {
    3,         f_close,      f_read,     f_write, f_truncate, f_sync,    f_size,
    f_lock,    f_unlock,     f_check,    f_fcntl, f_sector,   f_devchar, f_shmmap,
    f_shmlock, f_shmbarrier, f_shmunmap, f_fetch, f_unfetch,
};

static int f_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out)
{
	struct fault_file *ff = (struct fault_file *)file;
	(void)vfs;
	ff->real = (sqlite3_file *)(ff + 1);
	int rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out);
	ff->base.pMethods = ff->real->pMethods ? &fault_methods : NULL;
	return rc;
}

static int f_delete(sqlite3_vfs *v, const char *n, int s)
{
	(void)v;
	return real_vfs->xDelete(real_vfs, n, s);
}
static int f_access(sqlite3_vfs *v, const char *n, int fl, int *out)
{
	(void)v;
	return real_vfs->xAccess(real_vfs, n, fl, out);
}
static int f_fullpath(sqlite3_vfs *v, const char *n, int sz, char *out)
{
	(void)v;
	return real_vfs->xFullPathname(real_vfs, n, sz, out);
}
static int f_random(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	return real_vfs->xRandomness(real_vfs, n, out);
}
static int f_sleep(sqlite3_vfs *v, int us)
{
	(void)v;
	return real_vfs->xSleep(real_vfs, us);
}
static int f_time(sqlite3_vfs *v, double *out)
{
	(void)v;
	return real_vfs->xCurrentTime(real_vfs, out);
}
static int f_lasterr(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	return real_vfs->xGetLastError(real_vfs, n, out);
}
static int f_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
	(void)v;
	return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

const char *store__faultvfs_register(void)
{
	const char *path = getenv("DLRD_TEST_FAULT_FILE");
	if (!path || !*path)
		return NULL;
	if (!real_vfs) {
		real_vfs = sqlite3_vfs_find(NULL);
		fault_path = path;
		fault_vfs = (sqlite3_vfs){
		    .iVersion = 2,
		    .szOsFile = (int)sizeof(struct fault_file) + real_vfs->szOsFile,
		    .mxPathname = real_vfs->mxPathname,
		    .zName = "dlrd-fault",
		    .xOpen = f_open,
		    .xDelete = f_delete,
		    .xAccess = f_access,
		    .xFullPathname = f_fullpath,
		    .xDlOpen = NULL,
		    .xRandomness = f_random,
		    .xSleep = f_sleep,
		    .xCurrentTime = f_time,
		    .xGetLastError = f_lasterr,
		    .xCurrentTimeInt64 = f_time64,
		};
		sqlite3_vfs_register(&fault_vfs, 0);
	}
	return "dlrd-fault";
}
