/* SPDX-License-Identifier: MIT */
/*
 * Internal to the SQLite backend: the JSON API's half of it (sqlite_api.c),
 * which sqlite.c calls into.  sqlite.c keeps the connection, the ingest path
 * and the migrations; sqlite_api.c the API's writes (applied inside the
 * writer's batch transaction) and its reads (a pool of read-only
 * connections).  Nothing outside src/store/ sees this.
 */
#ifndef DLRD_SQLITE_INT_H
#define DLRD_SQLITE_INT_H

#include <sqlite3.h>

#include "commitq.h"
#include "store.h"

#define SQLITE_READ_POOL_DEFAULT 4
#define SQLITE_READ_WAIT_MS      2000 /* longest wait for a free read connection */
/* Longest read (one API call's transaction), as the PostgreSQL backend's
 * statement_timeout; checked every SQLITE_READ_PROGRESS_OPS VM steps. */
#define SQLITE_READ_TIMEOUT_MS   10000
#define SQLITE_READ_PROGRESS_OPS 1000

struct store__sqlite_api;

/* Prepares the API's writer statements on wdb (the writer's connection,
 * migrated) and sets up an empty read pool of pool_size connections to path
 * (opened lazily, with vfs, may be NULL).  Main thread, at open. */
int store__sqlite_api_open(sqlite3 *wdb, const char *path, const char *vfs, unsigned pool_size,
                           struct store__sqlite_api **out, char *err, size_t errlen);
/* Closes the read connections and finalizes the writer statements (before
 * wdb is closed).  Accepts NULL. */
void store__sqlite_api_close(struct store__sqlite_api *a);

/* Applies it->op inside the open batch transaction, under a savepoint.
 * Returns 0 (the outcome is in the op) or DLRD_EIO (the batch must roll
 * back).  Writer thread. */
int store__sqlite_api_apply(struct store__sqlite_api *a, struct commit_item *it, const char *now,
                            char *err, size_t errlen);

/* The read methods of store_ops (store.h), over the pool. */
int store__sqlite_get_message(struct store__sqlite_api *a, struct arena *ar, const char *id,
                              struct store_message *out, char *err, size_t errlen);
int store__sqlite_get_timeline(struct store__sqlite_api *a, struct arena *ar, const char *id,
                               bool payloads, struct store_message *msg,
                               struct store_event **events, size_t *n, char *err, size_t errlen);
int store__sqlite_search(struct store__sqlite_api *a, struct arena *ar, const struct store_query *q,
                         struct store_message **rows, size_t *n, char *err, size_t errlen);
/* The SQL text store__sqlite_search() runs for q (its '?' bound in order)
 * on the database db (the index it reads depends on the rows), into sql
 * (cap bytes), for tests that look at its plan.  0 or DLRD_EIO. */
int store__sqlite_search_sql(sqlite3 *db, const struct store_query *q, char *sql, size_t cap);
int store__sqlite_list_review(struct store__sqlite_api *a, struct arena *ar,
                              const struct store_review_query *q, struct store_review_item **rows,
                              size_t *n, char *err, size_t errlen);
int store__sqlite_list_audit(struct store__sqlite_api *a, struct arena *ar,
                             const struct store_audit_query *q, struct store_audit_row **rows,
                             size_t *n, char *err, size_t errlen);
int store__sqlite_stats(struct store__sqlite_api *a, struct arena *ar,
                        const struct store_stats_query *q, struct store_stats_row **rows, size_t *n,
                        char *err, size_t errlen);

/* The backend's VFS (sqlite_vfs.c): registers "dlrd" over the default VFS
 * once and returns its name (NULL: no default VFS).  Main thread, at open. */
const char *store__sqlite_vfs_register(void);
/* True while $DLRD_TEST_FAULT_FILE exists: syncs are failing (tests). */
bool store__sqlite_vfs_sync_fails(void);
/* True once a sync of db's main database file failed (through the dlrd
 * VFS); sticky.  The thread that owns db. */
bool store__sqlite_vfs_db_sync_failed(sqlite3 *db);
/* WAL writes SQLite asked for and writes made, since start (for tests). */
void store__sqlite_vfs_counts(uint64_t *asked, uint64_t *made);

/* Installs the page cache wrapper of sqlite_pcache.c; before SQLite is
 * initialized, else it does nothing.  Main thread, at open. */
void store__sqlite_pcache_install(void);
/* Truncations the wrapper found nothing for and skipped (for tests). */
unsigned long store__sqlite_pcache_skipped(void);

#endif
