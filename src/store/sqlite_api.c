/* SPDX-License-Identifier: MIT */
/*
 * SQLite backend, the JSON API's half (see sqlite_int.h and store.h).
 *
 * Writes.  The writer applies each API operation inside the batch's
 * transaction under "SAVEPOINT api_op": a business outcome (not found, a
 * reused idempotency key, an opted-out recipient, a provider message id
 * taken) rolls back to the savepoint, so it undoes only that operation;
 * an SQLite error returns DLRD_EIO and the whole batch rolls back, as for
 * callbacks.
 *
 * Joining early callbacks.  A callback for an unknown (provider, provider
 * message id) creates a row with origin 'callback'.  Then:
 * - a send recorded with that provider message id adopts the row: the row
 *   keeps its id (returned with 201), gets the send's fields and origin
 *   'joined';
 * - a send recorded without one and later given it (PATCH) absorbs the
 *   row: its events and review items move to the send's id, the summaries
 *   fold (status mask OR, the winning event by status_event_cmp, counters
 *   add, earliest first-callback and final times) and the callback row is
 *   deleted, in one savepoint;
 * - a send recorded first is found by later callbacks through the unique
 *   (provider, provider_message_id) index, as any message is.
 * Whichever came first, there is one row, one timeline, and every event and
 * retry-log row exactly once.
 *
 * Reads.  A pool of read-only connections, opened on first use, guarded by
 * a mutex and a condition variable; a reader waits at most
 * SQLITE_READ_WAIT_MS for a free one (DLRD_EFULL otherwise).  In WAL mode
 * readers never block the writer, and each read runs in one read
 * transaction, so a timeline is one snapshot.  A read gets
 * SQLITE_READ_TIMEOUT_MS (a progress handler interrupts it then), as
 * PostgreSQL's reads get statement_timeout: a reader's snapshot keeps the
 * WAL from starting over, so a read left to run for minutes made the WAL
 * grow for minutes, and held a connection of the pool as long.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arena.h"
#include "event.h"
#include "log.h"
#include "optout.h"
#include "provider.h"
#include "sqlite_int.h"
#include "status.h"
#include "store_int.h"

#define SQL_MAX   3072
#define BINDS_MAX (ST__COUNT + 48) /* a search: up to 25, plus one per provider */

/* ---- writer statements ---- */

enum {
	W_IDEM_FIND,
	W_IDEM_INSERT,
	W_OPTOUT,
	W_FIND_BY_PMID,
	W_INSERT_SEND,
	W_ADOPT,
	W_ROW_OUT,
	W_GET_FOR_SET,
	W_SET_PMID,
	W_SUMMARY,
	W_MOVE_EVENTS,
	W_MOVE_REVIEW,
	W_DELETE_MSG,
	W_MERGED,
	W_INSERT_REVIEW,
	W_GET_ENC,
	W_AUDIT,
	W_REVIEW_GET,
	W_REVIEW_RESOLVE,
	W_SP_BEGIN,
	W_SP_RELEASE,
	W_SP_ROLLBACK,
	W__COUNT
};

static const char *const wsql[W__COUNT] = {
    [W_IDEM_FIND] = "SELECT request_hash, status, body, message_id FROM api_idempotency"
                    " WHERE token_hash = ?1 AND idem_key = ?2",
    [W_IDEM_INSERT] = "INSERT INTO api_idempotency (token_hash, idem_key, request_hash,"
                      " status, body, message_id, created_at)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    /* the sender's own state and the one kept without a sender, the
     * later by effective time; a tie counts as opted out */
    [W_OPTOUT] = "SELECT opted_out FROM sms_opt_outs WHERE recipient_hash = ?1"
                 " AND sender_identity IN (?2, '')"
                 " ORDER BY effective_at DESC, opted_out DESC LIMIT 1",
    [W_FIND_BY_PMID] = "SELECT id, origin, destination_country, country_source"
                       " FROM sms_messages WHERE provider = ?1 AND provider_message_id = ?2",
    [W_INSERT_SEND] = "INSERT INTO sms_messages (id, provider, provider_message_id,"
                      " recipient_hash, recipient_enc, recipient_key_id, recipient_masked,"
                      " destination_country, country_source, sender_identity, template_key,"
                      " use_case, action_type, action_id, metadata, recipient_timezone,"
                      " recorded_by, origin, current_status, sent_recorded_at, created_at,"
                      " updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
                      " ?13, ?14, ?15, ?16, ?17, 'send', 'accepted', ?18, ?18, ?18)",
    [W_ADOPT] = "UPDATE sms_messages SET origin = 'joined', recipient_hash = ?2,"
                " recipient_enc = ?3, recipient_key_id = ?4, recipient_masked = ?5,"
                " destination_country = ?6, country_source = ?7,"
                " sender_identity = coalesce(?8, sender_identity), template_key = ?9,"
                " use_case = ?10, action_type = ?11, action_id = ?12, metadata = ?13,"
                " recipient_timezone = ?14, recorded_by = ?15, sent_recorded_at = ?16,"
                " updated_at = max(updated_at, ?16) WHERE id = ?1",
    [W_ROW_OUT] = "SELECT id, origin, provider, provider_message_id, current_status, is_final,"
                  " recipient_masked, destination_country, created_at, sent_recorded_at"
                  " FROM sms_messages WHERE id = ?1",
    [W_GET_FOR_SET] = "SELECT provider, provider_message_id FROM sms_messages WHERE id = ?1",
    [W_SET_PMID] = "UPDATE sms_messages SET provider_message_id = ?2,"
                   " updated_at = max(updated_at, ?3) WHERE id = ?1",
    [W_SUMMARY] = "SELECT current_status, current_raw_status, current_error_code,"
                  " current_error_reason, current_occurred_at, current_occurred_ms,"
                  " status_mask, read_receipt, event_count, callback_count, duplicate_count,"
                  " first_callback_at, final_at, final_conflict, recipient_hash,"
                  " recipient_masked, destination_country, country_source, sender_identity,"
                  " updated_at FROM sms_messages WHERE id = ?1",
    [W_MOVE_EVENTS] = "UPDATE sms_message_events SET message_id = ?2 WHERE message_id = ?1",
    [W_MOVE_REVIEW] = "UPDATE review_queue SET message_id = ?2 WHERE message_id = ?1",
    [W_DELETE_MSG] = "DELETE FROM sms_messages WHERE id = ?1",
    [W_MERGED] = "UPDATE sms_messages SET provider_message_id = ?2, current_status = ?3,"
                 " current_raw_status = ?4, current_error_code = ?5, current_error_reason = ?6,"
                 " current_occurred_at = ?7, current_occurred_ms = ?8, is_final = ?9,"
                 " status_mask = ?10, final_conflict = ?11, read_receipt = ?12,"
                 " event_count = event_count + ?13, callback_count = callback_count + ?14,"
                 " duplicate_count = duplicate_count + ?15, first_callback_at = ?16,"
                 " final_at = ?17, destination_country = ?18, country_source = ?19,"
                 " sender_identity = coalesce(sender_identity, ?20),"
                 " recipient_hash = coalesce(recipient_hash, ?21),"
                 " recipient_masked = coalesce(recipient_masked, ?22),"
                 " updated_at = max(updated_at, ?23, ?24) WHERE id = ?1",
    [W_INSERT_REVIEW] = "INSERT INTO review_queue (created_at, provider, reason, detail,"
                        " message_id, raw_payload) VALUES (?1, ?2, ?3, ?4, ?5, x'')",
    [W_GET_ENC] = "SELECT recipient_enc, recipient_key_id FROM sms_messages WHERE id = ?1",
    [W_AUDIT] = "INSERT INTO audit_log (at, actor, actor_role, action, message_id, review_id,"
                " reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [W_REVIEW_GET] = "SELECT resolved_at, message_id FROM review_queue WHERE id = ?1",
    [W_REVIEW_RESOLVE] = "UPDATE review_queue SET resolved_at = ?2, resolved_by = ?3,"
                         " resolution = ?4 WHERE id = ?1 AND resolved_at IS NULL",
    [W_SP_BEGIN] = "SAVEPOINT api_op",
    [W_SP_RELEASE] = "RELEASE api_op",
    [W_SP_ROLLBACK] = "ROLLBACK TO api_op",
};

struct rconn {
	sqlite3 *db;          /* NULL until first used */
	bool busy;            /* guarded by the pool's mutex */
	uint64_t deadline_ns; /* util_mono_ns(); the thread holding it sets it */
};

struct store__sqlite_api {
	/* writer side: the writer's connection, owned by the writer thread */
	sqlite3 *wdb;
	sqlite3_stmt *w[W__COUNT];
	/* read pool */
	char *path;
	char *vfs;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct rconn *conns; /* n slots; busy flags guarded by mu */
	unsigned n;
	unsigned read_timeout_ms; /* SQLITE_READ_TIMEOUT_MS, or DLRD_TEST_READ_TIMEOUT_MS */
};

/* ---- helpers ---- */

static int wfail(struct store__sqlite_api *a, char *err, size_t errlen, const char *what)
{
	util_fmt(err, errlen, "sqlite: %s: %s", what, sqlite3_errmsg(a->wdb));
	return DLRD_EIO;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static void reset(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/* Steps a statement that returns no row. */
static int wdone(struct store__sqlite_api *a, int q, char *err, size_t errlen)
{
	int rc = sqlite3_step(a->w[q]);
	reset(a->w[q]);
	if (rc != SQLITE_DONE)
		return wfail(a, err, errlen, wsql[q]);
	return 0;
}

/* Steps a query: 1 with a row (reset it later), 0 without, or DLRD_EIO. */
static int wrow(struct store__sqlite_api *a, int q, char *err, size_t errlen)
{
	int rc = sqlite3_step(a->w[q]);
	if (rc == SQLITE_ROW)
		return 1;
	reset(a->w[q]);
	if (rc != SQLITE_DONE)
		return wfail(a, err, errlen, wsql[q]);
	return 0;
}

/* Copies column i into buf (cap bytes); returns whether it was not NULL. */
static bool col_copy(sqlite3_stmt *st, int i, char *buf, size_t cap)
{
	buf[0] = '\0';
	if (sqlite3_column_type(st, i) == SQLITE_NULL)
		return false;
	const char *t = (const char *)sqlite3_column_text(st, i);
	util_strlcpy(buf, t ? t : "", cap);
	return true;
}

static const char *col_arena(struct arena *ar, sqlite3_stmt *st, int i)
{
	if (sqlite3_column_type(st, i) == SQLITE_NULL)
		return NULL;
	const char *t = (const char *)sqlite3_column_text(st, i);
	return arena_strndup(ar, t ? t : "", (size_t)sqlite3_column_bytes(st, i));
}

static const char *blob_arena(struct arena *ar, sqlite3_stmt *st, int i, size_t *len)
{
	*len = 0;
	if (sqlite3_column_type(st, i) == SQLITE_NULL)
		return NULL;
	const void *p = sqlite3_column_blob(st, i);
	size_t n = (size_t)sqlite3_column_bytes(st, i);
	*len = n;
	return arena_strndup(ar, p ? p : "", n);
}

/* Column i's raw payload into the arena while it fits in *left (the
 * bytes of STORE_PAYLOAD_BUDGET still free); one that does not is only
 * measured (*omitted, store.h).  The row holds it already, one at a time. */
static const char *payload_arena(struct arena *ar, sqlite3_stmt *st, int i, size_t *left,
                                 size_t *len, bool *omitted)
{
	size_t n = (size_t)sqlite3_column_bytes(st, i);
	const char *p;

	if (n > *left) {
		*len = n;
		*omitted = true;
		return NULL;
	}
	p = blob_arena(ar, st, i, len);
	*left -= *len;
	return p;
}

/* ---- open / close ---- */

int store__sqlite_api_open(sqlite3 *wdb, const char *path, const char *vfs, unsigned pool_size,
                           struct store__sqlite_api **out, char *err, size_t errlen)
{
	struct store__sqlite_api *a = xcalloc(1, sizeof(*a));

	a->wdb = wdb;
	for (int i = 0; i < W__COUNT; i++) {
		if (sqlite3_prepare_v3(wdb, wsql[i], -1, SQLITE_PREPARE_PERSISTENT, &a->w[i],
		                       NULL) != SQLITE_OK) {
			util_fmt(err, errlen, "sqlite: preparing API statements: %s",
			         sqlite3_errmsg(wdb));
			store__sqlite_api_close(a);
			return DLRD_EIO;
		}
	}
	a->path = xstrdup(path);
	a->vfs = vfs ? xstrdup(vfs) : NULL;
	a->n = pool_size ? pool_size : SQLITE_READ_POOL_DEFAULT;
	a->conns = xcalloc(a->n, sizeof(*a->conns));
	a->read_timeout_ms = SQLITE_READ_TIMEOUT_MS;
	const char *tt = getenv("DLRD_TEST_READ_TIMEOUT_MS"); /* tests: reads cut short */
	uint64_t ttn;
	if (tt && util_parse_u64(tt, strlen(tt), &ttn) == 0 && ttn <= SQLITE_READ_TIMEOUT_MS)
		a->read_timeout_ms = (unsigned)ttn;
	pthread_mutex_init(&a->mu, NULL);
	util_cond_init(&a->cv);
	*out = a;
	return 0;
}

void store__sqlite_api_close(struct store__sqlite_api *a)
{
	if (!a)
		return;
	for (int i = 0; i < W__COUNT; i++)
		sqlite3_finalize(a->w[i]);
	if (a->conns) {
		for (unsigned i = 0; i < a->n; i++)
			if (a->conns[i].db)
				sqlite3_close(a->conns[i].db);
		pthread_mutex_destroy(&a->mu);
		pthread_cond_destroy(&a->cv);
	}
	free(a->conns);
	free(a->path);
	free(a->vfs);
	free(a);
}

/* ---- the read pool ---- */

/* The read connection's progress handler: non-zero interrupts the read
 * (SQLITE_INTERRUPT) once its time is up. */
static int read_progress(void *arg)
{
	const struct rconn *c = arg;
	return util_mono_ns() >= c->deadline_ns;
}

static int pool_get(struct store__sqlite_api *a, struct rconn **out, char *err, size_t errlen)
{
	struct rconn *c = NULL;
	struct timespec ts;

	util_deadline(&ts, SQLITE_READ_WAIT_MS);
	pthread_mutex_lock(&a->mu);
	for (;;) {
		/* an open connection first, so only as many open as are needed */
		for (unsigned i = 0; i < a->n && !c; i++)
			if (!a->conns[i].busy && a->conns[i].db)
				c = &a->conns[i];
		for (unsigned i = 0; i < a->n && !c; i++)
			if (!a->conns[i].busy)
				c = &a->conns[i];
		if (c)
			break;
		if (pthread_cond_timedwait(&a->cv, &a->mu, &ts) == ETIMEDOUT) {
			pthread_mutex_unlock(&a->mu);
			util_fmt(err, errlen, "sqlite: no read connection free within %u ms",
			         SQLITE_READ_WAIT_MS);
			return DLRD_EFULL;
		}
	}
	c->busy = true;
	pthread_mutex_unlock(&a->mu);
	if (!c->db) {
		sqlite3 *db = NULL;
		if (sqlite3_open_v2(a->path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
		                    a->vfs) != SQLITE_OK) {
			util_fmt(err, errlen, "sqlite: opening a read connection: %s",
			         db ? sqlite3_errmsg(db) : "out of memory");
			sqlite3_close(db);
			pthread_mutex_lock(&a->mu);
			c->busy = false;
			pthread_cond_signal(&a->cv);
			pthread_mutex_unlock(&a->mu);
			return DLRD_EIO;
		}
		sqlite3_extended_result_codes(db, 1);
		sqlite3_busy_timeout(db, SQLITE_READ_WAIT_MS);
		c->deadline_ns = UINT64_MAX;
		sqlite3_progress_handler(db, SQLITE_READ_PROGRESS_OPS, read_progress, c);
		c->db = db;
	}
	*out = c;
	return 0;
}

static void pool_put(struct store__sqlite_api *a, struct rconn *c)
{
	pthread_mutex_lock(&a->mu);
	c->busy = false;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

/* Takes a connection and opens a read transaction on it. */
static int read_begin(struct store__sqlite_api *a, struct rconn **c, char *err, size_t errlen)
{
	int rc = pool_get(a, c, err, errlen);
	if (rc != 0)
		return rc;
	(*c)->deadline_ns = util_mono_ns() + (uint64_t)a->read_timeout_ms * 1000000u;
	if (sqlite3_exec((*c)->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		util_fmt(err, errlen, "sqlite: BEGIN (read): %s", sqlite3_errmsg((*c)->db));
		pool_put(a, *c);
		return DLRD_EIO;
	}
	return 0;
}

static void read_end(struct store__sqlite_api *a, struct rconn *c)
{
	c->deadline_ns = UINT64_MAX; /* the read's end is never cut */
	if (!sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
	if (!sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	pool_put(a, c);
}

static int rprep(struct rconn *c, const char *sql, sqlite3_stmt **st, char *err, size_t errlen)
{
	if (sqlite3_prepare_v2(c->db, sql, -1, st, NULL) != SQLITE_OK) {
		util_fmt(err, errlen, "sqlite: preparing a read: %s", sqlite3_errmsg(c->db));
		return DLRD_EIO;
	}
	return 0;
}

/* ---- reads ---- */

/* A row's raw payload: its own, or the request's kept once (sqlite.c,
 * migration 11). */
#define PAYLOAD(t)                                                                                 \
	"coalesce((SELECT p.raw_payload FROM sms_payloads p WHERE p.id = " t ".payload_id), " t    \
	".raw_payload)"

#define MSG_COLS                                                                                   \
	"id, provider, provider_message_id, origin, current_status, current_raw_status,"           \
	" current_error_code, current_error_reason, current_occurred_at, is_final,"                \
	" final_conflict, read_receipt, recipient_enc IS NOT NULL, recipient_masked,"              \
	" destination_country, country_source, sender_identity, template_key, use_case,"           \
	" action_type, action_id, metadata, recipient_timezone, event_count, callback_count,"      \
	" duplicate_count, first_callback_at, final_at, created_at, updated_at,"                   \
	" sent_recorded_at"

static void row_message(struct arena *ar, sqlite3_stmt *st, struct store_message *m)
{
	int i = 0;
	memset(m, 0, sizeof(*m));
	m->id = col_arena(ar, st, i++);
	m->provider = col_arena(ar, st, i++);
	m->provider_message_id = col_arena(ar, st, i++);
	m->origin = col_arena(ar, st, i++);
	m->status = col_arena(ar, st, i++);
	m->raw_status = col_arena(ar, st, i++);
	m->error_code = col_arena(ar, st, i++);
	m->error_reason = col_arena(ar, st, i++);
	m->occurred_at = col_arena(ar, st, i++);
	m->is_final = sqlite3_column_int(st, i++) != 0;
	m->final_conflict = sqlite3_column_int(st, i++) != 0;
	m->read_receipt = sqlite3_column_int(st, i++) != 0;
	m->has_recipient = sqlite3_column_int(st, i++) != 0;
	m->recipient_masked = col_arena(ar, st, i++);
	m->destination_country = col_arena(ar, st, i++);
	m->country_source = col_arena(ar, st, i++);
	m->sender_identity = col_arena(ar, st, i++);
	m->template_key = col_arena(ar, st, i++);
	m->use_case = col_arena(ar, st, i++);
	m->action_type = col_arena(ar, st, i++);
	m->action_id = col_arena(ar, st, i++);
	m->metadata = col_arena(ar, st, i++);
	m->recipient_timezone = col_arena(ar, st, i++);
	m->event_count = sqlite3_column_int64(st, i++);
	m->callback_count = sqlite3_column_int64(st, i++);
	m->duplicate_count = sqlite3_column_int64(st, i++);
	m->first_callback_at = col_arena(ar, st, i++);
	m->final_at = col_arena(ar, st, i++);
	m->created_at = col_arena(ar, st, i++);
	m->updated_at = col_arena(ar, st, i++);
	m->sent_recorded_at = col_arena(ar, st, i++);
}

static int read_message(struct rconn *c, struct arena *ar, const char *id,
                        struct store_message *out, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc = rprep(c, "SELECT " MSG_COLS " FROM sms_messages WHERE id = ?1", &st, err, errlen);
	if (rc != 0)
		return rc;
	bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		row_message(ar, st, out);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = DLRD_ENOTFOUND;
	} else {
		util_fmt(err, errlen, "sqlite: reading a message: %s", sqlite3_errmsg(c->db));
		rc = DLRD_EIO;
	}
	sqlite3_finalize(st);
	return rc;
}

int store__sqlite_get_message(struct store__sqlite_api *a, struct arena *ar, const char *id,
                              struct store_message *out, char *err, size_t errlen)
{
	struct rconn *c;
	int rc = read_begin(a, &c, err, errlen);
	if (rc != 0)
		return rc;
	rc = read_message(c, ar, id, out, err, errlen);
	read_end(a, c);
	return rc;
}

int store__sqlite_get_timeline(struct store__sqlite_api *a, struct arena *ar, const char *id,
                               bool payloads, struct store_message *msg,
                               struct store_event **events, size_t *n, char *err, size_t errlen)
{
	struct rconn *c;
	sqlite3_stmt *st = NULL;
	struct store_event *ev = NULL;
	size_t cap = 0, k = 0, left = STORE_PAYLOAD_BUDGET;
	int rc;

	*events = NULL;
	*n = 0;
	if ((rc = read_begin(a, &c, err, errlen)) != 0)
		return rc;
	if ((rc = read_message(c, ar, id, msg, err, errlen)) != 0)
		goto out;
	rc = rprep(c,
	           payloads
	               ? "SELECT e.id, e.status, e.raw_status, e.error_code, e.error_reason,"
	                 " e.provider_event_id, e.is_final, e.read_receipt, e.changed_summary,"
	                 " e.provider_occurred_at, e.received_at, (SELECT count(*) FROM"
	                 " sms_callback_log l WHERE l.event_id = e.id), " PAYLOAD(
	                     "e") " FROM sms_message_events e WHERE e.message_id = ?1 ORDER BY e.id"
	                          " LIMIT ?2"
	               : "SELECT e.id, e.status, e.raw_status, e.error_code, e.error_reason,"
	                 " e.provider_event_id, e.is_final, e.read_receipt, e.changed_summary,"
	                 " e.provider_occurred_at, e.received_at, (SELECT count(*) FROM"
	                 " sms_callback_log l WHERE l.event_id = e.id)"
	                 " FROM sms_message_events e WHERE e.message_id = ?1 ORDER BY e.id"
	                 " LIMIT ?2",
	           &st, err, errlen);
	if (rc != 0)
		goto out;
	bind_text(st, 1, id);
	sqlite3_bind_int(st, 2, STORE_TIMELINE_EVENTS);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (k == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct store_event *nev = arena_alloc(ar, ncap * sizeof(*nev));
			if (k)
				memcpy(nev, ev, k * sizeof(*ev));
			ev = nev;
			cap = ncap;
		}
		struct store_event *e = &ev[k++];
		memset(e, 0, sizeof(*e));
		e->id = sqlite3_column_int64(st, 0);
		e->status = col_arena(ar, st, 1);
		e->raw_status = col_arena(ar, st, 2);
		e->error_code = col_arena(ar, st, 3);
		e->error_reason = col_arena(ar, st, 4);
		e->provider_event_id = col_arena(ar, st, 5);
		e->is_final = sqlite3_column_int(st, 6) != 0;
		e->read_receipt = sqlite3_column_int(st, 7) != 0;
		e->changed_summary = sqlite3_column_int(st, 8) != 0;
		e->provider_occurred_at = col_arena(ar, st, 9);
		e->received_at = col_arena(ar, st, 10);
		e->deliveries = sqlite3_column_int64(st, 11);
		if (payloads)
			e->raw_payload = payload_arena(ar, st, 12, &left, &e->raw_payload_len,
			                               &e->raw_payload_omitted);
	}
	if (rc != SQLITE_DONE) {
		util_fmt(err, errlen, "sqlite: reading events: %s", sqlite3_errmsg(c->db));
		rc = DLRD_EIO;
		goto out;
	}
	rc = 0;
	*events = ev;
	*n = k;
out:
	sqlite3_finalize(st);
	read_end(a, c);
	return rc;
}

/* A query under construction: SQL text and its text bindings, in order. */
struct qbuild {
	char sql[SQL_MAX];
	size_t len;
	const char *binds[BINDS_MAX];
	int64_t ints[BINDS_MAX];
	bool is_int[BINDS_MAX];
	int n;
};

static void qb_add(struct qbuild *b, const char *s)
{
	b->len += util_fmt(b->sql + b->len, sizeof(b->sql) - b->len, "%s", s);
}

/* Appends the i-th '?' of an IN list (", ?" after the first), bound to v.
 * The caller checks that a bind is left. */
static void qb_item(struct qbuild *b, size_t i, const char *v)
{
	qb_add(b, i ? ", ?" : "?");
	b->binds[b->n] = v;
	b->is_int[b->n] = false;
	b->n++;
}

/* Appends " AND <cond>" where cond holds one '?' bound to v (skipped when v
 * is NULL). */
static void qb_text(struct qbuild *b, const char *cond, const char *v)
{
	if (!v || b->n >= BINDS_MAX - 1)
		return;
	qb_add(b, " AND ");
	qb_add(b, cond);
	b->binds[b->n] = v;
	b->is_int[b->n] = false;
	b->n++;
}

static void qb_int(struct qbuild *b, const char *cond, int64_t v)
{
	if (b->n >= BINDS_MAX - 1)
		return;
	qb_add(b, " AND ");
	qb_add(b, cond);
	b->ints[b->n] = v;
	b->is_int[b->n] = true;
	b->n++;
}

/* Ends the query: newest first, at most limit rows. */
static void qb_newest(struct qbuild *b, unsigned limit)
{
	qb_add(b, " ORDER BY id DESC LIMIT ?");
	b->ints[b->n] = limit;
	b->is_int[b->n] = true;
	b->n++;
}

static void qb_bind(struct qbuild *b, sqlite3_stmt *st)
{
	for (int i = 0; i < b->n; i++) {
		if (b->is_int[i])
			sqlite3_bind_int64(st, i + 1, b->ints[i]);
		else
			bind_text(st, i + 1, b->binds[i]);
	}
}

/* Grows an arena array of rows of size sz (cap doubles). */
static void *grow(struct arena *ar, void *rows, size_t k, size_t *cap, size_t sz)
{
	if (k < *cap)
		return rows;
	size_t ncap = *cap ? *cap * 2 : 16;
	void *nr = arena_alloc(ar, ncap * sz);
	if (k)
		memcpy(nr, rows, k * sz);
	*cap = ncap;
	return nr;
}

/* Fills one element from the current row. */
typedef void (*row_fill_fn)(struct arena *ar, sqlite3_stmt *st, void *elem, void *ctx);

/* Runs the built query b on a read connection and collects one zeroed
 * element of size sz per row, filled by fill() (given ctx), into an arena
 * array.  what names the query in err.  Returns 0, or read_begin()'s error,
 * or DLRD_EIO. */
static int read_rows_on(struct rconn *c, struct arena *ar, struct qbuild *b, size_t sz,
                        row_fill_fn fill, void *ctx, const char *what, void **rows, size_t *n,
                        char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	char *out = NULL;
	size_t cap = 0, k = 0;
	int rc;

	*rows = NULL;
	*n = 0;
	if ((rc = rprep(c, b->sql, &st, err, errlen)) != 0)
		goto out;
	qb_bind(b, st);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		out = grow(ar, out, k, &cap, sz);
		memset(out + k * sz, 0, sz);
		fill(ar, st, out + k * sz, ctx);
		k++;
	}
	if (rc != SQLITE_DONE) {
		util_fmt(err, errlen, "sqlite: %s: %s", what, sqlite3_errmsg(c->db));
		rc = DLRD_EIO;
		goto out;
	}
	rc = 0;
	*rows = out;
	*n = k;
out:
	sqlite3_finalize(st);
	return rc;
}

/* read_rows_on() in a read transaction of its own. */
static int read_rows(struct store__sqlite_api *a, struct arena *ar, struct qbuild *b, size_t sz,
                     row_fill_fn fill, void *ctx, const char *what, void **rows, size_t *n,
                     char *err, size_t errlen)
{
	struct rconn *c;
	int rc;

	*rows = NULL;
	*n = 0;
	if ((rc = read_begin(a, &c, err, errlen)) != 0)
		return rc;
	rc = read_rows_on(c, ar, b, sz, fill, ctx, what, rows, n, err, errlen);
	read_end(a, c);
	return rc;
}

static void fill_message(struct arena *ar, sqlite3_stmt *st, void *e, void *ctx)
{
	(void)ctx;
	row_message(ar, st, e);
}

/* ctx: the payload bytes left to read (STORE_PAYLOAD_BUDGET at first) */
static void fill_review(struct arena *ar, sqlite3_stmt *st, void *e, void *ctx)
{
	struct store_review_item *r = e;
	size_t *left = ctx;
	r->id = sqlite3_column_int64(st, 0);
	r->created_at = col_arena(ar, st, 1);
	r->provider = col_arena(ar, st, 2);
	r->reason = col_arena(ar, st, 3);
	r->detail = col_arena(ar, st, 4);
	r->message_id = col_arena(ar, st, 5);
	r->event_id = sqlite3_column_int64(st, 6);
	r->raw_status = col_arena(ar, st, 7);
	r->raw_payload =
	    payload_arena(ar, st, 8, left, &r->raw_payload_len, &r->raw_payload_omitted);
	r->resolved_at = col_arena(ar, st, 9);
	r->resolved_by = col_arena(ar, st, 10);
	r->resolution = col_arena(ar, st, 11);
	r->retries = sqlite3_column_int64(st, 12);
}

static void fill_audit(struct arena *ar, sqlite3_stmt *st, void *e, void *ctx)
{
	(void)ctx;
	struct store_audit_row *r = e;
	r->id = sqlite3_column_int64(st, 0);
	r->at = col_arena(ar, st, 1);
	r->actor = col_arena(ar, st, 2);
	r->actor_role = col_arena(ar, st, 3);
	r->action = col_arena(ar, st, 4);
	r->message_id = col_arena(ar, st, 5);
	r->review_id = sqlite3_column_int64(st, 6);
	r->reason = col_arena(ar, st, 7);
}

static void fill_stats(struct arena *ar, sqlite3_stmt *st, void *e, void *ctx)
{
	(void)ctx;
	struct store_stats_row *r = e;
	r->key = col_arena(ar, st, 0);
	r->count = sqlite3_column_int64(st, 1);
	r->final_count = sqlite3_column_int64(st, 2);
	for (int s = 0; s < ST__COUNT; s++)
		r->by_status[s] = sqlite3_column_int64(st, 3 + s);
}

/* A time range or a provider of the search holding fewer rows than this is
 * read through its index and sorted (search_index()). */
#define SEARCH_RANGE_ROWS 10000

#define PROVIDER_INDEX "sms_messages_provider_id"

/* The index a search with a time range or a provider reads, chosen by their
 * rows.  Newest first is the id's order, so SQLite reads the id index and
 * skips the rows that do not match; but when fewer rows than a page are
 * left to match (the last hour's messages, a provider little used, the
 * last page of any range) nothing tells it to stop, and it read every
 * older message: the whole table.  A range or a provider of fewer than
 * SEARCH_RANGE_ROWS rows, counted through its index (the count reads index
 * entries only, and at most that many), is read through that index and
 * sorted; with more, the id's order (a sort of all of them for every page
 * would cost more).  A provider message id finds its row by itself.  Sets
 * *index (NULL: none); returns 0, or DLRD_EIO with err set. */
static int search_index(sqlite3 *db, const struct store_query *q, const char **index, char *err,
                        size_t errlen)
{
	static const char *const names[] = {"sms_messages_created", "sms_messages_updated",
	                                    PROVIDER_INDEX};
	static const char *const conds[] = {"created_at >= ?1 AND created_at < ?2",
	                                    "updated_at >= ?1 AND updated_at < ?2",
	                                    "provider = ?1"};
	/* an absent bound: '' sorts before every time, '~' after */
	const char *lo[] = {q->created_from, q->updated_from, q->provider};
	const char *hi[] = {q->created_to, q->updated_to, NULL};
	bool on[] = {q->created_from || q->created_to, q->updated_from || q->updated_to,
	             q->provider && !q->provider_message_id};
	sqlite3_int64 fewest = SEARCH_RANGE_ROWS;
	int rc = 0;

	*index = NULL;
	for (int i = 0; i < 3 && rc == 0; i++) {
		sqlite3_stmt *st = NULL;
		char sql[300];
		if (!on[i])
			continue;
		util_fmt(sql, sizeof(sql),
		         "SELECT count(*) FROM (SELECT 1 FROM sms_messages INDEXED BY %s"
		         " WHERE %s LIMIT %d)",
		         names[i], conds[i], SEARCH_RANGE_ROWS);
		if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
			util_fmt(err, errlen, "sqlite: preparing a search count: %s",
			         sqlite3_errmsg(db));
			return DLRD_EIO;
		}
		bind_text(st, 1, lo[i] ? lo[i] : "");
		if (i < 2)
			bind_text(st, 2, hi[i] ? hi[i] : "~");
		if (sqlite3_step(st) == SQLITE_ROW) {
			sqlite3_int64 k = sqlite3_column_int64(st, 0);
			if (k < fewest) {
				fewest = k;
				*index = names[i];
			}
		} else {
			util_fmt(err, errlen, "sqlite: a search count: %s", sqlite3_errmsg(db));
			rc = DLRD_EIO;
		}
		sqlite3_finalize(st);
	}
	return rc;
}

/* Builds the search's SQL and bindings into b, reading index when not NULL.
 * Returns 0, or DLRD_EIO when they do not fit. */
static int search_query(const struct store_query *q, const char *index, struct qbuild *b, char *err,
                        size_t errlen)
{
	memset(b, 0, sizeof(*b));
	qb_add(b, "SELECT " MSG_COLS " FROM sms_messages");
	if (index) {
		qb_add(b, " INDEXED BY ");
		qb_add(b, index);
	}
	qb_add(b, " WHERE 1");
	if (q->n_statuses) {
		qb_add(b, " AND current_status IN (");
		for (size_t i = 0; i < q->n_statuses && b->n < BINDS_MAX - 1; i++)
			qb_item(b, i, q->statuses[i]);
		qb_add(b, ")");
	}
	/* literal, so that the partial index of open messages serves
	 * final=false (sqlite.c, migration 12) */
	if (q->final >= 0)
		qb_add(b, q->final ? " AND is_final = 1" : " AND is_final = 0");
	/* With a provider message id the (provider, provider_message_id)
	 * index finds the row, and search_index() chose it for a provider of
	 * few messages.  Otherwise SQLite would take the provider alone to
	 * that index, read all of the provider's messages and sort them for
	 * every page; '+' keeps the term off it, so the newest-first read of
	 * the id stops after a page. */
	qb_text(b,
	        q->provider_message_id || (index && strcmp(index, PROVIDER_INDEX) == 0)
	            ? "provider = ?"
	            : "+provider = ?",
	        q->provider);
	qb_text(b, "destination_country = ?", q->country);
	qb_text(b, "sender_identity = ?", q->sender_identity);
	qb_text(b, "template_key = ?", q->template_key);
	qb_text(b, "use_case = ?", q->use_case);
	qb_text(b, "provider_message_id = ?", q->provider_message_id);
	if (q->provider_message_id && !q->provider) {
		/* every provider: the (provider, provider_message_id) index
		 * then finds the row, where a provider message id alone would
		 * read every message, newest first, to the oldest */
		qb_add(b, " AND provider IN (");
		for (size_t i = 0; provider_table[i]; i++) {
			if (b->n >= BINDS_MAX - 1) {
				util_fmt(err, errlen, "sqlite: search query too long");
				return DLRD_EIO;
			}
			qb_item(b, i, provider_table[i]->name);
		}
		qb_add(b, ")");
	}
	qb_text(b, "action_type = ?", q->action_type);
	qb_text(b, "action_id = ?", q->action_id);
	qb_text(b, "origin = ?", q->origin);
	qb_text(b, "created_at >= ?", q->created_from);
	qb_text(b, "created_at < ?", q->created_to);
	qb_text(b, "updated_at >= ?", q->updated_from);
	qb_text(b, "updated_at < ?", q->updated_to);
	qb_text(b, "is_final = 0 AND created_at < ?", q->stuck_before);
	qb_text(b, "id < ?", q->before_id);
	qb_newest(b, q->limit);
	if (b->len >= sizeof(b->sql) - 1) {
		util_fmt(err, errlen, "sqlite: search query too long");
		return DLRD_EIO;
	}
	return 0;
}

int store__sqlite_search_sql(sqlite3 *db, const struct store_query *q, char *sql, size_t cap)
{
	struct qbuild b;
	const char *index;
	char err[160];
	int rc = search_index(db, q, &index, err, sizeof(err));
	if (rc == 0)
		rc = search_query(q, index, &b, err, sizeof(err));
	if (rc == 0 && util_strlcpy(sql, b.sql, cap) >= cap)
		rc = DLRD_EIO;
	return rc;
}

int store__sqlite_search(struct store__sqlite_api *a, struct arena *ar, const struct store_query *q,
                         struct store_message **rows, size_t *n, char *err, size_t errlen)
{
	struct qbuild b;
	struct rconn *c;
	const char *index;
	int rc;

	*rows = NULL;
	*n = 0;
	if ((rc = read_begin(a, &c, err, errlen)) != 0)
		return rc;
	/* the count and the search in one snapshot */
	if ((rc = search_index(c->db, q, &index, err, errlen)) == 0 &&
	    (rc = search_query(q, index, &b, err, errlen)) == 0)
		rc = read_rows_on(c, ar, &b, sizeof(**rows), fill_message, NULL, "search",
		                  (void **)rows, n, err, errlen);
	read_end(a, c);
	return rc;
}

int store__sqlite_list_review(struct store__sqlite_api *a, struct arena *ar,
                              const struct store_review_query *q, struct store_review_item **rows,
                              size_t *n, char *err, size_t errlen)
{
	struct qbuild b;
	size_t left = STORE_PAYLOAD_BUDGET;

	memset(&b, 0, sizeof(b));
	qb_add(&b, "SELECT id, created_at, provider, reason, detail, message_id, event_id,"
	           " raw_status, " PAYLOAD("review_queue") ", resolved_at, resolved_by,"
	                                                   " resolution, retry_count"
	                                                   " FROM review_queue"
	                                                   " WHERE 1");
	if (q->state == 0)
		qb_add(&b, " AND resolved_at IS NULL");
	else if (q->state == 1)
		qb_add(&b, " AND resolved_at IS NOT NULL");
	qb_text(&b, "reason = ?", q->reason);
	if (q->before_id > 0)
		qb_int(&b, "id < ?", q->before_id);
	qb_newest(&b, q->limit);
	return read_rows(a, ar, &b, sizeof(**rows), fill_review, &left, "review list",
	                 (void **)rows, n, err, errlen);
}

int store__sqlite_list_audit(struct store__sqlite_api *a, struct arena *ar,
                             const struct store_audit_query *q, struct store_audit_row **rows,
                             size_t *n, char *err, size_t errlen)
{
	struct qbuild b;

	memset(&b, 0, sizeof(b));
	qb_add(&b, "SELECT id, at, actor, actor_role, action, message_id, review_id, reason"
	           " FROM audit_log WHERE 1");
	qb_text(&b, "message_id = ?", q->message_id);
	if (q->before_id > 0)
		qb_int(&b, "id < ?", q->before_id);
	qb_newest(&b, q->limit);
	return read_rows(a, ar, &b, sizeof(**rows), fill_audit, NULL, "audit list", (void **)rows,
	                 n, err, errlen);
}

/* One GROUP BY over sms_messages, through the created_at index: the key,
 * the count, the final count and one count per status. */
int store__sqlite_stats(struct store__sqlite_api *a, struct arena *ar,
                        const struct store_stats_query *q, struct store_stats_row **rows, size_t *n,
                        char *err, size_t errlen)
{
	const char *colname = store__stats_column(q->group_by);
	struct qbuild b;
	char frag[160];

	*rows = NULL;
	*n = 0;
	memset(&b, 0, sizeof(b));
	util_fmt(frag, sizeof(frag), "SELECT %s, COUNT(*), SUM(is_final <> 0)", colname);
	qb_add(&b, frag);
	for (int s = 0; s < ST__COUNT; s++) {
		util_fmt(frag, sizeof(frag), ", SUM(current_status = '%s')",
		         status_name((enum dlr_status)s));
		qb_add(&b, frag);
	}
	qb_add(&b, " FROM sms_messages INDEXED BY sms_messages_created WHERE 1");
	qb_text(&b, "created_at >= ?", q->since);
	qb_text(&b, "created_at < ?", q->until);
	qb_text(&b, "provider = ?", q->provider);
	qb_text(&b, "use_case = ?", q->use_case);
	qb_text(&b, "destination_country = ?", q->country);
	util_fmt(frag, sizeof(frag),
	         " GROUP BY 1 ORDER BY 2 DESC, (%s IS NULL), %s COLLATE BINARY LIMIT ?", colname,
	         colname);
	qb_add(&b, frag);
	b.ints[b.n] = q->limit;
	b.is_int[b.n] = true;
	b.n++;
	if (b.len >= sizeof(b.sql) - 1) {
		util_fmt(err, errlen, "sqlite: stats query too long");
		return DLRD_EIO;
	}
	return read_rows(a, ar, &b, sizeof(**rows), fill_stats, NULL, "stats", (void **)rows, n,
	                 err, errlen);
}

/* ---- writes ---- */

/* Reads the row as the operation left it into op->row. */
static int load_row(struct store__sqlite_api *a, const char *id, struct store_op_row *row,
                    char *err, size_t errlen)
{
	sqlite3_stmt *st = a->w[W_ROW_OUT];
	bool merged = row->merged;
	int rc;

	bind_text(st, 1, id);
	if ((rc = wrow(a, W_ROW_OUT, err, errlen)) <= 0)
		return rc == 0 ? wfail(a, err, errlen, "the message row vanished") : rc;
	memset(row, 0, sizeof(*row));
	col_copy(st, 0, row->id, sizeof(row->id));
	col_copy(st, 1, row->origin, sizeof(row->origin));
	col_copy(st, 2, row->provider, sizeof(row->provider));
	col_copy(st, 3, row->provider_message_id, sizeof(row->provider_message_id));
	col_copy(st, 4, row->status, sizeof(row->status));
	row->is_final = sqlite3_column_int(st, 5) != 0;
	col_copy(st, 6, row->recipient_masked, sizeof(row->recipient_masked));
	col_copy(st, 7, row->destination_country, sizeof(row->destination_country));
	col_copy(st, 8, row->created_at, sizeof(row->created_at));
	col_copy(st, 9, row->sent_recorded_at, sizeof(row->sent_recorded_at));
	row->merged = merged;
	reset(st);
	return 0;
}

/* Whether the recipient opted out of this sender: of the row for the
 * sender's canonical key (optout_sender_key(): "+447520650000" finds the
 * STOP a provider reported as sent to "447520650000") and the row recorded
 * without a sender (a STOP whose provider did not say which of our numbers
 * it was sent to, which applies to every sender), the later by effective
 * time, as PostgreSQL's dlrd_api_send decides it; a tie counts as opted
 * out.  Before, the sender's own row hid a later STOP without a sender. */
static int opted_out(struct store__sqlite_api *a, const char *hash, const char *sender, bool *out,
                     char *err, size_t errlen)
{
	char *key = optout_sender_key_dup(sender);
	sqlite3_stmt *st = a->w[W_OPTOUT];
	int rc;

	*out = false;
	bind_text(st, 1, hash);
	bind_text(st, 2, key);
	rc = wrow(a, W_OPTOUT, err, errlen);
	if (rc == 1) {
		*out = sqlite3_column_int(st, 0) != 0;
		reset(st);
	}
	free(key);
	return rc < 0 ? rc : 0;
}

/* Binds the send record's fields, in the order both W_ADOPT and
 * W_INSERT_SEND take them, from parameter first on. */
static void bind_send(sqlite3_stmt *st, int first, const struct store_send *s, const char *country,
                      const char *source, const char *actor, const char *now)
{
	int i = first;
	bind_text(st, i++, s->recipient_hash);
	if (s->recipient_enc)
		sqlite3_bind_blob(st, i++, s->recipient_enc, (int)s->recipient_enc_len,
		                  SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i++);
	bind_text(st, i++, s->recipient_key_id);
	bind_text(st, i++, s->recipient_masked);
	bind_text(st, i++, country);
	bind_text(st, i++, source);
	bind_text(st, i++, s->sender_identity);
	bind_text(st, i++, s->template_key);
	bind_text(st, i++, s->use_case);
	bind_text(st, i++, s->action_type);
	bind_text(st, i++, s->action_id);
	bind_text(st, i++, s->metadata);
	bind_text(st, i++, s->recipient_timezone);
	bind_text(st, i++, actor);
	bind_text(st, i, now);
}

static int op_send(struct store__sqlite_api *a, struct store_op *op, const char *now, char *err,
                   size_t errlen)
{
	const struct store_send *s = &op->send;
	sqlite3_stmt *st;
	char id[37], cur_country[3], cur_source[12];
	const char *country, *source;
	bool adopt = false, out;
	int rc;

	/* 1. the idempotency key, scoped to the token */
	st = a->w[W_IDEM_FIND];
	bind_text(st, 1, s->token_hash);
	bind_text(st, 2, s->idem_key);
	if ((rc = wrow(a, W_IDEM_FIND, err, errlen)) < 0)
		return rc;
	if (rc == 1) {
		const char *rh = (const char *)sqlite3_column_text(st, 0);
		if (rh && strcmp(rh, s->request_hash) == 0) {
			op->outcome = STORE_REPLAYED;
			op->resp_status = sqlite3_column_int(st, 1);
			op->resp_len = 0;
			if (op->resp_cap) {
				const char *body = (const char *)sqlite3_column_text(st, 2);
				size_t bl = (size_t)sqlite3_column_bytes(st, 2);
				if (bl >= op->resp_cap)
					bl = op->resp_cap - 1;
				memcpy(op->resp, body ? body : "", bl);
				op->resp[bl] = '\0';
				op->resp_len = bl;
			}
			col_copy(st, 3, op->row.id, sizeof(op->row.id));
		} else {
			op->outcome = STORE_KEY_REUSED;
		}
		reset(st);
		return 0;
	}
	if (s->replay_only) {
		op->outcome = STORE_NOT_FOUND;
		return 0;
	}

	/* 2. a row for this provider message id already? */
	country = s->country;
	source = s->country ? "app" : NULL;
	if (s->provider_message_id) {
		st = a->w[W_FIND_BY_PMID];
		bind_text(st, 1, s->provider);
		bind_text(st, 2, s->provider_message_id);
		if ((rc = wrow(a, W_FIND_BY_PMID, err, errlen)) < 0)
			return rc;
		if (rc == 1) {
			char origin[16];
			col_copy(st, 0, id, sizeof(id));
			col_copy(st, 1, origin, sizeof(origin));
			bool has_c = col_copy(st, 2, cur_country, sizeof(cur_country));
			col_copy(st, 3, cur_source, sizeof(cur_source));
			reset(st);
			if (strcmp(origin, "callback") != 0) {
				op->outcome = STORE_PMID_TAKEN;
				return 0;
			}
			adopt = true;
			/* app's country, else the provider's, else the number's */
			if (!country && has_c && strcmp(cur_source, "provider") == 0) {
				country = cur_country;
				source = "provider";
			}
		}
	}
	if (!country && s->number_country) {
		country = s->number_country;
		source = "number";
	}

	/* 3. opt-out, unless the use case is exempt or callbacks show that
	 * the message went out already (the STOP may answer it) */
	if (!adopt && !s->optout_exempt && s->recipient_hash) {
		if ((rc = opted_out(a, s->recipient_hash, s->sender_identity, &out, err, errlen)) !=
		    0)
			return rc;
		if (out) {
			op->outcome = STORE_OPTED_OUT;
			return 0;
		}
	}

	/* 4. adopt the callback-created row, or insert the send */
	if (adopt) {
		st = a->w[W_ADOPT];
		bind_text(st, 1, id);
		bind_send(st, 2, s, country, source, op->actor, now);
		if ((rc = wdone(a, W_ADOPT, err, errlen)) != 0)
			return rc;
	} else {
		util_uuid7(id);
		st = a->w[W_INSERT_SEND];
		bind_text(st, 1, id);
		bind_text(st, 2, s->provider);
		bind_text(st, 3, s->provider_message_id);
		bind_send(st, 4, s, country, source, op->actor, now);
		if ((rc = wdone(a, W_INSERT_SEND, err, errlen)) != 0)
			return rc;
	}

	/* 5. the answer, kept for replays of the same key */
	if ((rc = load_row(a, id, &op->row, err, errlen)) != 0)
		return rc;
	op->resp_status = 201;
	op->resp_len = op->render ? op->render(op) : 0;
	st = a->w[W_IDEM_INSERT];
	bind_text(st, 1, s->token_hash);
	bind_text(st, 2, s->idem_key);
	bind_text(st, 3, s->request_hash);
	sqlite3_bind_int(st, 4, op->resp_status);
	sqlite3_bind_text(st, 5, op->resp ? op->resp : "", (int)op->resp_len, SQLITE_STATIC);
	bind_text(st, 6, id);
	bind_text(st, 7, now);
	return wdone(a, W_IDEM_INSERT, err, errlen);
}

/* The summary columns of one row, for the fold of a merge. */
struct sumrow {
	char status[16], raw_status[LIM_STATUS_BYTES + 1], error_code[LIM_STATUS_BYTES + 1];
	char error_reason[32], occurred_at[25], first_cb[25], final_at[25], updated_at[25];
	char hash[65], masked[PHONE_E164_MAX + 1], country[3], source[12];
	char sender[LIM_ID_BYTES + 1];
	bool has_raw, has_code, has_reason, has_occ, has_first, has_final;
	bool has_hash, has_masked, has_country, has_source, has_sender;
	int64_t occurred_ms, events, callbacks, dups;
	uint32_t mask;
	bool read, conflict;
};

static int load_sum(struct store__sqlite_api *a, const char *id, struct sumrow *r, char *err,
                    size_t errlen)
{
	sqlite3_stmt *st = a->w[W_SUMMARY];
	int rc;

	memset(r, 0, sizeof(*r));
	bind_text(st, 1, id);
	if ((rc = wrow(a, W_SUMMARY, err, errlen)) <= 0)
		return rc == 0 ? wfail(a, err, errlen, "a message row vanished") : rc;
	col_copy(st, 0, r->status, sizeof(r->status));
	r->has_raw = col_copy(st, 1, r->raw_status, sizeof(r->raw_status));
	r->has_code = col_copy(st, 2, r->error_code, sizeof(r->error_code));
	r->has_reason = col_copy(st, 3, r->error_reason, sizeof(r->error_reason));
	r->has_occ = col_copy(st, 4, r->occurred_at, sizeof(r->occurred_at));
	r->occurred_ms = sqlite3_column_int64(st, 5);
	r->mask = (uint32_t)sqlite3_column_int64(st, 6);
	r->read = sqlite3_column_int(st, 7) != 0;
	r->events = sqlite3_column_int64(st, 8);
	r->callbacks = sqlite3_column_int64(st, 9);
	r->dups = sqlite3_column_int64(st, 10);
	r->has_first = col_copy(st, 11, r->first_cb, sizeof(r->first_cb));
	r->has_final = col_copy(st, 12, r->final_at, sizeof(r->final_at));
	r->conflict = sqlite3_column_int(st, 13) != 0;
	r->has_hash = col_copy(st, 14, r->hash, sizeof(r->hash));
	r->has_masked = col_copy(st, 15, r->masked, sizeof(r->masked));
	r->has_country = col_copy(st, 16, r->country, sizeof(r->country));
	r->has_source = col_copy(st, 17, r->source, sizeof(r->source));
	r->has_sender = col_copy(st, 18, r->sender, sizeof(r->sender));
	col_copy(st, 19, r->updated_at, sizeof(r->updated_at));
	reset(st);
	return 0;
}

static struct status_key key_of(const struct sumrow *r)
{
	struct status_key k = {ST_ACCEPTED, r->occurred_ms, r->has_code ? r->error_code : NULL,
	                       r->has_raw ? r->raw_status : NULL};
	status_parse(r->status, strlen(r->status), &k.status);
	return k;
}

/* The earlier of two optional times (canonical text compares as time). */
static const char *min_time(bool ha, const char *a, bool hb, const char *b)
{
	if (ha && hb)
		return strcmp(a, b) <= 0 ? a : b;
	return ha ? a : hb ? b : NULL;
}

/* Folds the callback-created row cb_id into the send's row send_id and
 * gives the send the provider message id (see the header comment). */
static int merge(struct store__sqlite_api *a, struct store_op *op, const char *send_id,
                 const char *cb_id, const char *now, char *err, size_t errlen)
{
	struct sumrow s, c;
	sqlite3_stmt *st;
	char top_occ_at[25];
	int rc;

	if ((rc = load_sum(a, send_id, &s, err, errlen)) != 0 ||
	    (rc = load_sum(a, cb_id, &c, err, errlen)) != 0)
		return rc;
	struct status_key ks = key_of(&s), kc = key_of(&c);
	bool s_has = s.mask != 0, c_has = c.mask != 0;
	const struct sumrow *top = !c_has || (s_has && status_event_cmp(&ks, &kc) >= 0) ? &s : &c;
	uint32_t mask = s.mask | c.mask;
	bool any = s_has || c_has;
	bool conflict = status_mask_conflict(mask);
	const char *country = s.has_country ? s.country : NULL;
	const char *source = s.has_source ? s.source : NULL;

	/* the app's country wins, then the provider's, then the number's */
	if (!(source && strcmp(source, "app") == 0) && c.has_country &&
	    ((c.has_source && strcmp(c.source, "provider") == 0) || !country)) {
		country = c.country;
		source = c.has_source ? c.source : NULL;
	}
	util_strlcpy(top_occ_at, top->occurred_at, sizeof(top_occ_at));

	/* events and review items move; retry-log rows follow their events */
	for (int q = W_MOVE_EVENTS; q <= W_MOVE_REVIEW; q++) {
		st = a->w[q];
		bind_text(st, 1, cb_id);
		bind_text(st, 2, send_id);
		if ((rc = wdone(a, q, err, errlen)) != 0)
			return rc;
	}
	st = a->w[W_DELETE_MSG];
	bind_text(st, 1, cb_id);
	if ((rc = wdone(a, W_DELETE_MSG, err, errlen)) != 0)
		return rc;

	st = a->w[W_MERGED];
	bind_text(st, 1, send_id);
	bind_text(st, 2, op->text);
	bind_text(st, 3, any ? top->status : "accepted");
	bind_text(st, 4, any && top->has_raw ? top->raw_status : NULL);
	bind_text(st, 5, any && top->has_code ? top->error_code : NULL);
	bind_text(st, 6, any && top->has_reason ? top->error_reason : NULL);
	bind_text(st, 7, any && top->has_occ ? top_occ_at : NULL);
	sqlite3_bind_int64(st, 8, any ? top->occurred_ms : -1);
	sqlite3_bind_int(st, 9, any && status_is_final(key_of(top).status));
	sqlite3_bind_int64(st, 10, mask);
	sqlite3_bind_int(st, 11, conflict);
	sqlite3_bind_int(st, 12, s.read || c.read);
	sqlite3_bind_int64(st, 13, c.events);
	sqlite3_bind_int64(st, 14, c.callbacks);
	sqlite3_bind_int64(st, 15, c.dups);
	bind_text(st, 16, min_time(s.has_first, s.first_cb, c.has_first, c.first_cb));
	bind_text(st, 17, min_time(s.has_final, s.final_at, c.has_final, c.final_at));
	bind_text(st, 18, country);
	bind_text(st, 19, source);
	bind_text(st, 20, c.has_sender ? c.sender : NULL);
	bind_text(st, 21, c.has_hash ? c.hash : NULL);
	bind_text(st, 22, c.has_masked ? c.masked : NULL);
	bind_text(st, 23, now);
	bind_text(st, 24, c.updated_at);
	if ((rc = wdone(a, W_MERGED, err, errlen)) != 0)
		return rc;
	if (conflict && !s.conflict && !c.conflict) {
		char provider[64] = "";
		const char *pv = provider;
		st = a->w[W_GET_FOR_SET];
		bind_text(st, 1, send_id);
		if ((rc = wrow(a, W_GET_FOR_SET, err, errlen)) < 0)
			return rc;
		if (rc == 1) {
			col_copy(st, 0, provider, sizeof(provider));
			reset(st);
		}
		st = a->w[W_INSERT_REVIEW];
		bind_text(st, 1, now);
		bind_text(st, 2, pv);
		bind_text(st, 3, review_reason_name(REVIEW_FINAL_CONFLICT));
		bind_text(st, 4, "two different definitive final states (joined send)");
		bind_text(st, 5, send_id);
		if ((rc = wdone(a, W_INSERT_REVIEW, err, errlen)) != 0)
			return rc;
	}
	op->row.merged = true;
	return 0;
}

static int op_set_pmid(struct store__sqlite_api *a, struct store_op *op, const char *now, char *err,
                       size_t errlen)
{
	sqlite3_stmt *st = a->w[W_GET_FOR_SET];
	char provider[64], pmid[LIM_ID_BYTES + 1], other[37], origin[16];
	bool has_pmid;
	int rc;

	bind_text(st, 1, op->message_id);
	if ((rc = wrow(a, W_GET_FOR_SET, err, errlen)) < 0)
		return rc;
	if (rc == 0) {
		op->outcome = STORE_NOT_FOUND;
		return 0;
	}
	col_copy(st, 0, provider, sizeof(provider));
	has_pmid = col_copy(st, 1, pmid, sizeof(pmid));
	reset(st);
	if (has_pmid) {
		if (strcmp(pmid, op->text) != 0) {
			op->outcome = STORE_PMID_SET;
			return 0;
		}
	} else {
		st = a->w[W_FIND_BY_PMID];
		bind_text(st, 1, provider);
		bind_text(st, 2, op->text);
		if ((rc = wrow(a, W_FIND_BY_PMID, err, errlen)) < 0)
			return rc;
		if (rc == 1) {
			col_copy(st, 0, other, sizeof(other));
			col_copy(st, 1, origin, sizeof(origin));
			reset(st);
			if (strcmp(origin, "callback") != 0) {
				op->outcome = STORE_PMID_TAKEN;
				return 0;
			}
			if ((rc = merge(a, op, op->message_id, other, now, err, errlen)) != 0)
				return rc;
		} else {
			st = a->w[W_SET_PMID];
			bind_text(st, 1, op->message_id);
			bind_text(st, 2, op->text);
			bind_text(st, 3, now);
			if ((rc = wdone(a, W_SET_PMID, err, errlen)) != 0)
				return rc;
		}
	}
	if ((rc = load_row(a, op->message_id, &op->row, err, errlen)) != 0)
		return rc;
	op->resp_status = 200;
	op->resp_len = op->render ? op->render(op) : 0;
	return 0;
}

static int audit(struct store__sqlite_api *a, struct store_op *op, const char *now,
                 const char *action, const char *message_id, int64_t review_id, const char *reason,
                 char *err, size_t errlen)
{
	sqlite3_stmt *st = a->w[W_AUDIT];
	int rc;

	bind_text(st, 1, now);
	bind_text(st, 2, op->actor);
	bind_text(st, 3, op->actor_role);
	bind_text(st, 4, action);
	bind_text(st, 5, message_id);
	if (review_id > 0)
		sqlite3_bind_int64(st, 6, review_id);
	else
		sqlite3_bind_null(st, 6);
	bind_text(st, 7, reason ? reason : "");
	if ((rc = wdone(a, W_AUDIT, err, errlen)) != 0)
		return rc;
	op->audit_id = sqlite3_last_insert_rowid(a->wdb);
	return 0;
}

static int op_reveal(struct store__sqlite_api *a, struct store_op *op, const char *now, char *err,
                     size_t errlen)
{
	sqlite3_stmt *st = a->w[W_GET_ENC];
	int rc;

	bind_text(st, 1, op->message_id);
	if ((rc = wrow(a, W_GET_ENC, err, errlen)) < 0)
		return rc;
	if (rc == 0) {
		op->outcome = STORE_NOT_FOUND;
		return 0;
	}
	if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
		reset(st);
		op->outcome = STORE_NO_RECIPIENT;
		return 0;
	}
	const uint8_t *blob = sqlite3_column_blob(st, 0);
	size_t n = (size_t)sqlite3_column_bytes(st, 0);
	const char *key_id = (const char *)sqlite3_column_text(st, 1);
	rc = op->open ? op->open(op, blob, n, key_id) : DLRD_EUNSUPP;
	reset(st);
	if (rc != 0) {
		op->outcome = STORE_UNDECRYPTABLE;
		return 0;
	}
	return audit(a, op, now, "reveal", op->message_id, 0, op->text, err, errlen);
}

static int op_resolve(struct store__sqlite_api *a, struct store_op *op, const char *now, char *err,
                      size_t errlen)
{
	sqlite3_stmt *st = a->w[W_REVIEW_GET];
	char message_id[37];
	bool has_mid;
	int rc;

	sqlite3_bind_int64(st, 1, op->review_id);
	if ((rc = wrow(a, W_REVIEW_GET, err, errlen)) < 0)
		return rc;
	if (rc == 0) {
		op->outcome = STORE_NOT_FOUND;
		return 0;
	}
	if (col_copy(st, 0, op->resolved_at, sizeof(op->resolved_at))) {
		reset(st);
		op->outcome = STORE_ALREADY_RESOLVED;
		return 0;
	}
	has_mid = col_copy(st, 1, message_id, sizeof(message_id));
	reset(st);
	st = a->w[W_REVIEW_RESOLVE];
	sqlite3_bind_int64(st, 1, op->review_id);
	bind_text(st, 2, now);
	bind_text(st, 3, op->actor);
	bind_text(st, 4, op->text);
	if ((rc = wdone(a, W_REVIEW_RESOLVE, err, errlen)) != 0)
		return rc;
	util_strlcpy(op->resolved_at, now, sizeof(op->resolved_at));
	return audit(a, op, now, "review_resolve", has_mid ? message_id : NULL, op->review_id,
	             op->text, err, errlen);
}

int store__sqlite_api_apply(struct store__sqlite_api *a, struct commit_item *it, const char *now,
                            char *err, size_t errlen)
{
	struct store_op *op = it->op;
	int rc;

	op->outcome = STORE_DONE;
	op->resp_len = 0;
	op->resp_status = 0;
	op->audit_id = 0;
	memset(&op->row, 0, sizeof(op->row));
	if ((rc = wdone(a, W_SP_BEGIN, err, errlen)) != 0)
		return rc;
	switch (op->kind) {
	case STORE_OP_SEND:
		rc = op_send(a, op, now, err, errlen);
		break;
	case STORE_OP_SET_PROVIDER_ID:
		rc = op_set_pmid(a, op, now, err, errlen);
		break;
	case STORE_OP_REVEAL:
		rc = op_reveal(a, op, now, err, errlen);
		break;
	case STORE_OP_RESOLVE_REVIEW:
		rc = op_resolve(a, op, now, err, errlen);
		break;
	default:
		util_fmt(err, errlen, "sqlite: unknown API operation %d", (int)op->kind);
		rc = DLRD_EIO;
	}
	if (rc != 0)
		return rc; /* the batch rolls back, savepoint and all */
	if (op->outcome != STORE_DONE && (rc = wdone(a, W_SP_ROLLBACK, err, errlen)) != 0)
		return rc;
	return wdone(a, W_SP_RELEASE, err, errlen);
}
