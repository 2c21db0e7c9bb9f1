/* SPDX-License-Identifier: MIT */
/*
 * Self-created key files (see keyfile.h).  Written and fsynced under a
 * temporary name (0600), then linked into place and the folder fsynced: a
 * crash or a second process starting at the same moment can never see a
 * half-written key, and there is only ever one.
 *
 * Reading one back checks it first (keyfile_open), as ssh does a private
 * key: a key file that group or others may read or write, that is not a
 * regular file, or that a user other than dlrd's own (or root) owns stops
 * start-up.  Such a file has already exposed, or may yet change, the key
 * that protects every recipient hash and stored payload; carrying on with
 * a warning would keep using it.  The checks run on the opened descriptor
 * (fstat), so the file checked is the file read.
 */
#include "keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "util.h"

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int keyfile_open(const char *path, int *fd_out, char *err, size_t errlen)
{
	struct stat st;
	uid_t me = geteuid();
	/* O_NONBLOCK: a FIFO put in the key's place must not hang start-up in
	 * open(); it is refused below like any other non-regular file.  A
	 * symbolic link is followed (a secret mounted elsewhere); the checks
	 * apply to the file it names. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	*fd_out = -1;
	if (fd < 0) {
		util_fmt(err, errlen, "cannot read key file %s: %s", path, strerror(errno));
		return DLRD_EIO;
	}
	if (fstat(fd, &st) != 0) {
		util_fmt(err, errlen, "cannot read key file %s: %s", path, strerror(errno));
		close(fd);
		return DLRD_EIO;
	}
	if (!S_ISREG(st.st_mode)) {
		util_fmt(err, errlen, "key file %s is not a regular file", path);
		close(fd);
		return DLRD_ECONFIG;
	}
	if (st.st_mode & 077) {
		util_fmt(err, errlen,
		         "key file %s has mode %04o: group or others may read or write it"
		         " (fix: chmod 600 %s)",
		         path, (unsigned)(st.st_mode & 07777), path);
		close(fd);
		return DLRD_ECONFIG;
	}
	/* Root may own it (an admin put it there, 0600).  Any other user may
	 * rewrite it, or chmod it open, whatever its mode says now. */
	if (st.st_uid != me && st.st_uid != 0) {
		util_fmt(err, errlen,
		         "key file %s is owned by uid %lu, not by dlrd's user (uid %lu) or root"
		         " (fix: chown %lu %s)",
		         path, (unsigned long)st.st_uid, (unsigned long)me, (unsigned long)me,
		         path);
		close(fd);
		return DLRD_ECONFIG;
	}
	*fd_out = fd;
	return 0;
}

static int read_key(const char *path, uint8_t *out, size_t len, char *err, size_t errlen)
{
	char buf[260];
	int fd, rc = keyfile_open(path, &fd, err, errlen);
	if (rc != 0)
		return rc;
	ssize_t n = read(fd, buf, sizeof(buf));
	close(fd);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (n < 0 || (size_t)n != 2 * len) {
		util_fmt(err, errlen, "key file %s: expected %zu hex characters", path, 2 * len);
		return DLRD_EIO;
	}
	for (size_t i = 0; i < len; i++) {
		int hi = unhex(buf[2 * i]), lo = unhex(buf[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			util_fmt(err, errlen, "key file %s: not hex", path);
			return DLRD_EIO;
		}
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int keyfile_create(const char *dir, const char *name, const void *content, size_t n, char *err,
                   size_t errlen)
{
	char path[4096], tmp[4200];
	int fd, dfd, rc;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		util_fmt(err, errlen, "cannot create data directory %s: %s", dir, strerror(errno));
		return DLRD_EIO;
	}
	util_fmt(path, sizeof(path), "%s/%s", dir, name);
	/* Written whole under a name of this process's own, then linked into
	 * place: link() fails if the name exists, so of processes starting at
	 * once exactly one key wins, and no one ever reads a partial file. */
	util_fmt(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	unlink(tmp); /* a leftover of a crashed process that had our pid */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		util_fmt(err, errlen, "cannot create key file %s: %s", tmp, strerror(errno));
		return DLRD_EIO;
	}
	if (write(fd, content, n) != (ssize_t)n || fsync(fd) != 0) {
		util_fmt(err, errlen, "cannot write key file %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return DLRD_EIO;
	}
	close(fd);
	rc = link(tmp, path) == 0 ? 0 : errno;
	unlink(tmp);
	if (rc == EEXIST) /* another process made it first: theirs is the key */
		return 1;
	if (rc != 0) {
		util_fmt(err, errlen, "cannot create key file %s: %s", path, strerror(rc));
		return DLRD_EIO;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

int keyfile_load(const char *dir, const char *name, uint8_t *out, size_t len, int *created,
                 char *err, size_t errlen)
{
	char path[4096], hex[260];
	int rc;

	*created = 0;
	if (len == 0 || 2 * len + 1 > sizeof(hex))
		return DLRD_EINVAL;
	util_fmt(path, sizeof(path), "%s/%s", dir, name);
	if (access(path, F_OK) == 0)
		return read_key(path, out, len, err, errlen);
	crypto_random(out, len);
	crypto_hex(out, len, hex);
	hex[2 * len] = '\n';
	rc = keyfile_create(dir, name, hex, 2 * len + 1, err, errlen);
	explicit_bzero(hex, sizeof(hex));
	if (rc == 1)
		return read_key(path, out, len, err, errlen);
	if (rc != 0)
		return rc;
	*created = 1;
	return 0;
}
