/* SPDX-License-Identifier: MIT */
/*
 * Internal: the method table each storage backend implements.  store.c
 * dispatches on the URL scheme; nothing outside src/store/ sees this.
 */
#ifndef DLRD_STORE_INT_H
#define DLRD_STORE_INT_H

#include "store.h"

struct store_ops {
	const char *name;
	/* true when the backend handles this storage URL */
	bool (*accepts)(const char *url);
	int (*open)(const struct config *cfg, void **be, char *err, size_t errlen);
	void (*close)(void *be);
	int (*apply)(void *be, struct commit_item **items, size_t n, char *err, size_t errlen);
	int (*probe)(void *be, char *err, size_t errlen);
};

extern const struct store_ops store__sqlite_ops;
extern const struct store_ops store__pg_ops;

/* The fault-injecting VFS for tests (faultvfs.c): registers "dlrd-fault"
 * when DLRD_TEST_FAULT_FILE is set and returns its name, else NULL. */
const char *store__faultvfs_register(void);

#endif
