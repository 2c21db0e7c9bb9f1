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
	/* Makes every transaction apply() has committed so far durable, for a
	 * backend whose commits do not wait for the disk themselves (SQLite
	 * with synchronous=full syncs its WAL here, off the writer thread).
	 * Optional: NULL when commits are durable on return.  Called only by
	 * the commit queue's syncer thread, concurrently with apply().  force:
	 * sync even under synchronous=normal (store_sync()). */
	int (*sync)(void *be, bool force, char *err, size_t errlen);
	/* Housekeeping that must run on the writer's connection but outside a
	 * commit (SQLite: the end of a WAL cycle).  Optional.  Called by the
	 * writer thread after it handed a committed batch to the syncer, so it
	 * overlaps that batch's sync instead of delaying it. */
	void (*maintain)(void *be);
	/* The JSON API (store.h).  Optional: NULL makes store.c answer
	 * DLRD_EUNSUPP.  api_writes: apply() handles CI_API items. */
	bool api_writes;
	int (*get_message)(void *be, struct arena *a, const char *id, struct store_message *out,
	                   char *err, size_t errlen);
	int (*get_timeline)(void *be, struct arena *a, const char *id, bool payloads,
	                    struct store_message *msg, struct store_event **events, size_t *n,
	                    char *err, size_t errlen);
	int (*search)(void *be, struct arena *a, const struct store_query *q,
	              struct store_message **rows, size_t *n, char *err, size_t errlen);
	int (*list_review)(void *be, struct arena *a, const struct store_review_query *q,
	                   struct store_review_item **rows, size_t *n, char *err, size_t errlen);
	int (*list_audit)(void *be, struct arena *a, const struct store_audit_query *q,
	                  struct store_audit_row **rows, size_t *n, char *err, size_t errlen);
	int (*stats)(void *be, struct arena *a, const struct store_stats_query *q,
	             struct store_stats_row **rows, size_t *n, char *err, size_t errlen);
};

/* The sms_messages column of a stats grouping (a fixed name, safe to paste
 * into SQL). */
const char *store__stats_column(enum store_stats_group g);

extern const struct store_ops store__sqlite_ops;
extern const struct store_ops store__pg_ops;

#endif
