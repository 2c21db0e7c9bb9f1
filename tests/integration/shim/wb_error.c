/* SPDX-License-Identifier: MIT */
/*
 * LD_PRELOAD shim for test_faults: one writeback error on dlrd's WAL, with
 * the kernel's reporting rule.  Linux reports a writeback error once per open
 * file, to the first fdatasync() on it that returns after the error
 * (file_check_and_advance_wb_err).  A failing disk also makes fdatasync
 * slow while it retries.
 *
 * Armed when the file named by $DLRD_SHIM_ARM exists: the next fdatasync of
 * a "-wal" file by the thread "dlrd-syncer" (or the one named by
 * $DLRD_SHIM_THREAD, e.g. "dlrd-writer" for the idle probe's) takes
 * $DLRD_SHIM_SLEEP_MS, and the writeback error happens as it starts.  Whichever fdatasync of that
 * descriptor returns first from then on gets EIO, once.  With
 * $DLRD_SHIM_EIO=0 the fdatasync is only slow (a stalled disk that
 * recovers), without the error.  Not part of dlrd:
 * built only for the tests, without sanitizers.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int fired;       /* the error happened (once per process) */
static atomic_int err_fd = -1; /* it waits on this descriptor */
static atomic_int err_pending; /* not reported yet */

static int is_wal(int fd)
{
	char link[64], path[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n < 4)
		return 0;
	path[n] = '\0';
	return strcmp(path + n - 4, "-wal") == 0;
}

int fdatasync(int fd)
{
	static int (*real)(int);
	const char *arm = getenv("DLRD_SHIM_ARM");
	const char *ms = getenv("DLRD_SHIM_SLEEP_MS");
	const char *thread = getenv("DLRD_SHIM_THREAD");
	char name[16] = "";
	int rc;

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	rc = real(fd);
	pthread_getname_np(pthread_self(), name, sizeof(name));
	if (arm && access(arm, F_OK) == 0 && strcmp(name, thread ? thread : "dlrd-syncer") == 0 &&
	    is_wal(fd) && !atomic_exchange(&fired, 1)) {
		long sleep_ms = ms ? strtol(ms, NULL, 10) : 7000;
		struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
		const char *eio = getenv("DLRD_SHIM_EIO");
		if (!eio || strcmp(eio, "0") != 0) {
			atomic_store(&err_fd, fd);
			atomic_store(&err_pending, 1);
		}
		nanosleep(&ts, NULL);
	}
	if (fd == atomic_load(&err_fd) && atomic_exchange(&err_pending, 0)) {
		errno = EIO;
		return -1;
	}
	return rc;
}
