/* SPDX-License-Identifier: MIT */
/*
 * Key material that dlrd creates for itself when the config gives none: a
 * random key written once to a file in the data directory, readable by its
 * user alone (0600), and read back on every later start.
 */
#ifndef DLRD_KEYFILE_H
#define DLRD_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

/* Loads dir/name (hex of len random bytes), creating it when absent.  The
 * bytes go to out (len bytes).  *created tells whether it was made now.  An
 * existing file must pass keyfile_open()'s checks.  Returns 0, DLRD_EIO or
 * DLRD_ECONFIG (a file keyfile_open() refuses) with err set.  Main thread,
 * at start-up. */
int keyfile_load(const char *dir, const char *name, uint8_t *out, size_t len, int *created,
                 char *err, size_t errlen);

/* Opens the key file at path for reading and checks, on the open
 * descriptor, that it is private: a regular file, owned by the effective
 * user or root, with no permission bits for group or others (mode & 077 is
 * 0; 0600 and 0400 pass).  On success *fd_out is the descriptor, which the
 * caller closes.  Otherwise *fd_out is -1 and the result is DLRD_EIO (it
 * cannot be opened) or DLRD_ECONFIG (refused), with err naming the file,
 * and for a mode its value and the chmod that fixes it.  Any thread; used
 * at start-up. */
int keyfile_open(const char *path, int *fd_out, char *err, size_t errlen);

/* Creates dir/name (and dir, one level, when missing) holding the n bytes
 * of content, whole or not at all (see keyfile.c).  Returns 0 when it made
 * the file, 1 when the name already existed (another process made it first:
 * its file is the one to read), or DLRD_EIO with err set.  For key files
 * in other formats (pii.c's encryption keys). */
int keyfile_create(const char *dir, const char *name, const void *content, size_t n, char *err,
                   size_t errlen);

#endif
