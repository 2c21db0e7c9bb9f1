/* SPDX-License-Identifier: MIT */
/*
 * Internal to the PostgreSQL backend: what postgresql.c (the connection, the
 * migrations, the batch pipeline) and postgresql_api.c (the JSON API's
 * writes inside the batch, and its pool of read connections) share.
 * Nothing outside src/store/ sees this.
 */
#ifndef DLRD_POSTGRESQL_INT_H
#define DLRD_POSTGRESQL_INT_H

#include <libpq-fe.h>

#include "commitq.h"
#include "store.h"

#define PG_READ_WAIT_MS          2000  /* longest wait for a free read connection */
#define PG_READ_TIMEOUT_MS       12000 /* one read, client side (the server's is 10 s) */
#define PG_RECONNECT_INTERVAL_MS 1000  /* between failed connection attempts */

/* A timestamptz column as the text SQLite stores and util_rfc3339 writes:
 * 2024-02-14T15:37:00.123Z (UTC, milliseconds).  The API compares these as
 * text, so both backends must give exactly this. */
#define PG_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* Type OIDs (pg_type.h is a server header) for the prepared statements. */
#define OID_BOOL        16
#define OID_BYTEA       17
#define OID_INT8        20
#define OID_INT2        21
#define OID_INT4        23
#define OID_TEXT        25
#define OID_TIMESTAMPTZ 1184
#define OID_UUID        2950
#define OID_TEXT_ARRAY  1009

/* What went wrong in one exchange with the server. */
struct pg_fail {
	char sqlstate[6];
	bool failed; /* a statement failed (sqlstate, err set) */
	bool broken; /* the connection is unusable: drop it */
};

/* Copies text from the server into err after "postgresql: prefix: ", with
 * quotes, control and non-ASCII bytes replaced (err ends up in a logfmt
 * value). */
void store__pg_set_err(char *err, size_t errlen, const char *prefix, const char *msg);

/* Waits until c's socket is readable (and writable when want_write), at most
 * until deadline_ms.  Returns 0, or -1 on timeout or error. */
int store__pg_wait(PGconn *c, bool want_write, int64_t deadline_ms);

/* Runs sql (simple protocol, one or more statements) outside pipeline mode
 * and reads every result within timeout_ms.  Returns 0, or DLRD_EIO with
 * err and f set. */
int store__pg_exec(PGconn *c, const char *label, const char *sql, int timeout_ms, struct pg_fail *f,
                   char *err, size_t errlen);

/* Whether c is still connected and idle, without blocking: a server that
 * ended the session while it was idle has sent a FATAL message and EOF. */
bool store__pg_alive(PGconn *c);

/* In pipeline mode: sends a Sync after what is queued, then reads every
 * result up to the Sync's, sending and receiving together, until
 * deadline_ms.  Each statement's result (also an error or "aborted") goes to
 * on_result in order, which returns true when it keeps the result (then it
 * PQclear()s it itself).  The first failed statement
 * sets f->failed, f->sqlstate and err (prefixed by label(ctx) when given).
 * Returns 0 once the Sync came back (statements may still have failed:
 * f->failed), or DLRD_EIO with f->broken when the connection broke or the
 * deadline passed. */
int store__pg_exchange(PGconn *c, int64_t deadline_ms, bool (*on_result)(void *ctx, PGresult *r),
                       void *ctx, const char *(*label)(void *ctx), struct pg_fail *f, char *err,
                       size_t errlen);

/* ---- the API's writes (postgresql_api.c), inside the writer's batch ---- */

/* Prepares the API's statements on a new writer connection.  0 or DLRD_EIO. */
int store__pg_api_prepare(PGconn *c, char *err, size_t errlen);

/* Resets op's outputs before an attempt of the batch. */
void store__pg_api_reset(struct store_op *op);

/* Queues the first statement of it->op into the pipeline.  Returns false
 * when libpq refused it (the connection is broken). */
bool store__pg_api_send(PGconn *c, const struct commit_item *it);

/* Reads the first statement's result into the op (outcome, row, number
 * ...).  Returns false when the result is not what the statement gives. */
bool store__pg_api_result(struct store_op *op, const PGresult *r);

/* Whether the op still needs a statement after its first result: the
 * idempotency answer of a recorded send, the audit row of a reveal.  Such a
 * statement needs the first result, so a batch with such an op takes a
 * second round trip before its COMMIT. */
bool store__pg_api_may_follow(const struct store_op *op);

/* After the first result: renders the answer, and queues the follow-up
 * statement when there is one (*queued).  Returns false when libpq refused
 * it. */
bool store__pg_api_follow(PGconn *c, struct commit_item *it, bool *queued);

/* Reads the follow-up's result.  Returns false when it is not what the
 * statement gives. */
bool store__pg_api_follow_result(struct store_op *op, const PGresult *r);

/* ---- the read pool (postgresql_api.c) ---- */

struct store__pg_pool;

/* A pool of size read connections (0: the default), opened on first use
 * with the writer's connection keywords kw/val (borrowed: they must outlive
 * the pool); where is the loggable "host= port= db= user=".  Main thread. */
struct store__pg_pool *store__pg_pool_new(const char *const *kw, const char *const *val,
                                          const char *where, unsigned size);
/* Closes every connection.  No reader may be running.  Accepts NULL. */
void store__pg_pool_free(struct store__pg_pool *p);

/* The read methods of store_ops (store.h), over the pool.  Any thread. */
int store__pg_get_message(struct store__pg_pool *p, struct arena *a, const char *id,
                          struct store_message *out, char *err, size_t errlen);
int store__pg_get_timeline(struct store__pg_pool *p, struct arena *a, const char *id, bool payloads,
                           struct store_message *msg, struct store_event **events, size_t *n,
                           char *err, size_t errlen);
int store__pg_search(struct store__pg_pool *p, struct arena *a, const struct store_query *q,
                     struct store_message **rows, size_t *n, char *err, size_t errlen);
int store__pg_list_review(struct store__pg_pool *p, struct arena *a,
                          const struct store_review_query *q, struct store_review_item **rows,
                          size_t *n, char *err, size_t errlen);
int store__pg_list_audit(struct store__pg_pool *p, struct arena *a,
                         const struct store_audit_query *q, struct store_audit_row **rows,
                         size_t *n, char *err, size_t errlen);
int store__pg_stats(struct store__pg_pool *p, struct arena *a, const struct store_stats_query *q,
                    struct store_stats_row **rows, size_t *n, char *err, size_t errlen);

#endif
