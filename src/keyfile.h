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
 * bytes go to out (len bytes).  *created tells whether it was made now.
 * Returns 0 or DLRD_EIO with err set.  Main thread, at start-up. */
int keyfile_load(const char *dir, const char *name, uint8_t *out, size_t len, int *created,
                 char *err, size_t errlen);

/* Creates dir/name (and dir, one level, when missing) holding the n bytes
 * of content, whole or not at all (see keyfile.c).  Returns 0 when it made
 * the file, 1 when the name already existed (another process made it first:
 * its file is the one to read), or DLRD_EIO with err set.  For key files
 * in other formats (pii.c's encryption keys). */
int keyfile_create(const char *dir, const char *name, const void *content, size_t n, char *err,
                   size_t errlen);

#endif
