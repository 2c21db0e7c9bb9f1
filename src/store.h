/* SPDX-License-Identifier: MIT */
/*
 * Storage: one interface, one file per backend in src/store/.  A backend is a
 * table of methods (struct store_ops, in store/store_int.h); store.c picks it
 * by the URL scheme ("sqlite:", "postgresql://").  See src/store/README.md
 * for the schema, the migrations and the batch transaction.
 *
 * Thread rules: store_apply() and store_probe() are called only by the writer
 * thread, which owns the handle; open and close by the main thread while no
 * writer runs.
 */
#ifndef DLRD_STORE_H
#define DLRD_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"

struct store;
struct commit_item;

/* Opens the backend named by cfg->storage_url and applies pending
 * migrations.  Returns 0, or DLRD_EIO / DLRD_ECONFIG with err set. */
int store_open(const struct config *cfg, struct store **out, char *err, size_t errlen);
void store_close(struct store *st);

/* Applies n items in one transaction and commits durably.  On success every
 * item gets result 0 and its counters; on failure nothing of the batch is
 * visible and the function returns DLRD_EIO (items untouched; the caller
 * marks them failed).  The store stays usable for the next batch. */
int store_apply(struct store *st, struct commit_item **items, size_t n, char *err, size_t errlen);

/* A small write transaction to tell whether storage is writable again after
 * a failure.  Returns 0 or DLRD_EIO. */
int store_probe(struct store *st, char *err, size_t errlen);

/* Backend name, "sqlite" or "postgresql". */
const char *store_backend(const struct store *st);

#endif
