/* SPDX-License-Identifier: MIT */
/*
 * PostgreSQL backend, the JSON API's half (see postgresql_int.h and
 * store.h); sqlite_api.c is the reference for what each operation does.
 *
 * Writes.  postgresql.c's writer puts each API item into its batch
 * pipeline, in queue order, as one statement: a server-side function for a
 * send (dlrd_api_send), a provider id (dlrd_api_set_provider_id) or a
 * resolution (dlrd_api_resolve), a locking SELECT for a reveal.  The
 * functions (migration 3 in postgresql.c) make every decision under the
 * row locks and unique keys of the database itself, so two nodes handling
 * the same key, message or review item end the way one node handling them
 * one after the other would; and a refusal (not found, key reused, opted
 * out, provider id taken ...) changes nothing, which is what SQLite's
 * savepoint gives.  Two operations need the writer after their first
 * result: a recorded send renders its answer (op->render) and stores it with
 * the idempotency key; a reveal decrypts (op->open) and then writes its
 * audit row.  Those follow-up statements go out in the batch's second round
 * trip, before COMMIT.
 *
 * Reads.  A pool of connections of their own, never the writer's (issue 5),
 * opened on first use with the writer's connection settings, guarded by a
 * mutex and a condition variable; a reader waits at most PG_READ_WAIT_MS for
 * a free one (DLRD_EFULL otherwise).  A connection found closed by the
 * server is replaced, and a read that loses its connection midway is tried
 * once more on a new one (reads change nothing).  Each read is one
 * statement, or for a timeline one REPEATABLE READ READ ONLY transaction:
 * one snapshot either way, sent in one pipeline, one round trip.  Times come
 * back as SQLite's text (PG_TS).
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arena.h"
#include "postgresql_int.h"
#include "provider.h"
#include "store_int.h"
#include "util.h"

#define PG_READ_POOL_DEFAULT  4
#define PG_SESSION_TIMEOUT_MS 5000 /* a new read connection's settings */
#define SQL_MAX               3072
#define BINDS_MAX             (ST__COUNT + 48) /* a search: up to 25, plus one per provider */
#define NIL_UUID              "00000000-0000-0000-0000-000000000000"

/* ---- helpers ---- */

/* The canonical 8-4-4-4-12 form (either case); anything else names no
 * row, and must not reach a uuid parameter (an error would fail the
 * batch). */
static bool is_uuid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		             (c >= 'A' && c <= 'F'))) {
			return false;
		}
	}
	return true;
}

/* Whether s is well-formed UTF-8 (what a text parameter must be). */
static bool utf8_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		unsigned char c = *p;
		size_t n;
		uint32_t cp;
		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		for (size_t i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		p += n + 1;
	}
	return true;
}

static int64_t num_of(const PGresult *r, int row, int i)
{
	if (PQgetisnull(r, row, i))
		return 0;
	return strtoll(PQgetvalue(r, row, i), NULL, 10);
}

/* smallint 0/1 or boolean t/f */
static bool flag_of(const PGresult *r, int row, int i)
{
	if (PQgetisnull(r, row, i))
		return false;
	char c = PQgetvalue(r, row, i)[0];
	return c == '1' || c == 't';
}

/* Copies column i into buf (cap bytes), "" for NULL. */
static void copy_col(const PGresult *r, int row, int i, char *buf, size_t cap)
{
	util_strlcpy(buf, PQgetisnull(r, row, i) ? "" : PQgetvalue(r, row, i), cap);
}

/* ---- writes ---- */

enum { A_SEND, A_REPLAY, A_SET, A_REVEAL, A_RESOLVE, A_IDEM, A_AUDIT, A__COUNT };

/* The row a send or a provider id leaves (struct store_op_row). */
#define ROW_COLS                                                                                   \
	"o_id::text, o_origin, o_provider, o_pmid, o_current, o_is_final, o_masked, "              \
	"o_country, " PG_TS("o_created") ", " PG_TS("o_sent")
#define ROW_NCOLS 10

static const struct {
	const char *name;
	const char *sql;
	int nparams;
	Oid types[22];
} astmts[A__COUNT] = {
    [A_SEND] = {"dlrd_api_send",
                "SELECT o_outcome, o_status, o_body, " ROW_COLS
                " FROM dlrd_api_send($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
                " $14, $15, $16, $17, $18, $19, $20, $21, $22)",
                22,
                {OID_TEXT, OID_TEXT,  OID_TEXT,        OID_TEXT, OID_TEXT, OID_TEXT,
                 OID_TEXT, OID_BYTEA, OID_TEXT,        OID_TEXT, OID_TEXT, OID_TEXT,
                 OID_TEXT, OID_TEXT,  OID_TEXT,        OID_TEXT, OID_TEXT, OID_TEXT,
                 OID_BOOL, OID_TEXT,  OID_TIMESTAMPTZ, OID_UUID}},
    /* a send the API refuses now (store_send.replay_only): the answer
     * recorded under its key and request, if any, in dlrd_api_send's
     * shape; it writes nothing */
    [A_REPLAY] = {"dlrd_api_replay",
                  "SELECT CASE WHEN k.request_hash IS NULL THEN 'not_found'"
                  " WHEN k.request_hash = $3 THEN 'replayed' ELSE 'key_reused' END,"
                  " k.status, k.body, k.message_id::text,"
                  " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
                  " FROM (VALUES (1)) AS one (x) LEFT JOIN api_idempotency k"
                  " ON k.token_hash = $1 AND k.idem_key = $2",
                  3,
                  {OID_TEXT, OID_TEXT, OID_TEXT}},
    [A_SET] = {"dlrd_api_set_provider_id",
               "SELECT o_outcome, o_merged, " ROW_COLS " FROM dlrd_api_set_provider_id($1, $2, $3)",
               3,
               {OID_UUID, OID_TEXT, OID_TIMESTAMPTZ}},
    /* FOR SHARE: a reveal waits for a join that absorbs or adopts the row
     * and then reads what it left, as on one node */
    [A_REVEAL] = {"dlrd_api_reveal",
                  "SELECT recipient_enc, recipient_key_id FROM sms_messages WHERE id = $1"
                  " FOR SHARE",
                  1,
                  {OID_UUID}},
    [A_RESOLVE] = {"dlrd_api_resolve",
                   "SELECT o_outcome, " PG_TS(
                       "o_resolved_at") ", o_audit_id"
                                        " FROM dlrd_api_resolve($1, $2, $3, $4, $5)",
                   5,
                   {OID_INT8, OID_TEXT, OID_TEXT, OID_TEXT, OID_TIMESTAMPTZ}},
    [A_IDEM] = {"dlrd_api_idem",
                "UPDATE api_idempotency SET status = $3, body = $4"
                " WHERE token_hash = $1 AND idem_key = $2",
                4,
                {OID_TEXT, OID_TEXT, OID_INT4, OID_TEXT}},
    [A_AUDIT] = {"dlrd_api_audit",
                 "INSERT INTO audit_log (at, actor, actor_role, action, message_id, reason)"
                 " VALUES ($1, $2, $3, 'reveal', $4, $5) RETURNING id",
                 5,
                 {OID_TIMESTAMPTZ, OID_TEXT, OID_TEXT, OID_UUID, OID_TEXT}},
};

int store__pg_api_prepare(PGconn *c, char *err, size_t errlen)
{
	for (int i = 0; i < A__COUNT; i++) {
		PGresult *r =
		    PQprepare(c, astmts[i].name, astmts[i].sql, astmts[i].nparams, astmts[i].types);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
			store__pg_set_err(err, errlen, "preparing API statements",
			                  m ? m : PQerrorMessage(c));
			PQclear(r);
			return DLRD_EIO;
		}
		PQclear(r);
	}
	return 0;
}

void store__pg_api_reset(struct store_op *op)
{
	op->outcome = STORE_DONE;
	op->resp_len = 0;
	op->resp_status = 0;
	op->audit_id = 0;
	op->resolved_at[0] = '\0';
	memset(&op->row, 0, sizeof(op->row));
	explicit_bzero(op->number, sizeof(op->number));
}

bool store__pg_api_send(PGconn *c, const struct commit_item *it)
{
	const struct store_op *op = it->op;
	const struct store_send *s = &op->send;
	char now[25], uuid[37], rid[24];
	const char *v[22];
	int len[22] = {0}, fmt[22] = {0};

	util_rfc3339(it->received_ms, now);
	switch (op->kind) {
	case STORE_OP_SEND:
		v[0] = s->token_hash;
		v[1] = s->idem_key;
		v[2] = s->request_hash;
		if (s->replay_only)
			return PQsendQueryPrepared(c, astmts[A_REPLAY].name, 3, v, NULL, NULL, 0);
		util_uuid7(uuid);
		v[3] = s->provider;
		v[4] = s->provider_message_id;
		v[5] = s->recipient_hash;
		v[6] = s->recipient_masked;
		v[7] = (const char *)s->recipient_enc;
		len[7] = (int)s->recipient_enc_len;
		fmt[7] = 1;
		v[8] = s->recipient_key_id;
		v[9] = s->country;
		v[10] = s->number_country;
		v[11] = s->recipient_timezone;
		v[12] = s->use_case;
		v[13] = s->template_key;
		v[14] = s->sender_identity;
		v[15] = s->action_type;
		v[16] = s->action_id;
		v[17] = s->metadata;
		v[18] = s->optout_exempt ? "t" : "f";
		v[19] = op->actor;
		v[20] = now;
		v[21] = uuid;
		return PQsendQueryPrepared(c, astmts[A_SEND].name, 22, v, len, fmt, 0);
	case STORE_OP_SET_PROVIDER_ID:
		v[0] = is_uuid(op->message_id) ? op->message_id : NIL_UUID;
		v[1] = op->text;
		v[2] = now;
		return PQsendQueryPrepared(c, astmts[A_SET].name, 3, v, NULL, NULL, 0);
	case STORE_OP_REVEAL:
		/* binary results: the encrypted number as its bytes */
		v[0] = is_uuid(op->message_id) ? op->message_id : NIL_UUID;
		return PQsendQueryPrepared(c, astmts[A_REVEAL].name, 1, v, NULL, NULL, 1);
	case STORE_OP_RESOLVE_REVIEW:
		util_fmt(rid, sizeof(rid), "%lld", (long long)op->review_id);
		v[0] = rid;
		v[1] = op->actor;
		v[2] = op->actor_role;
		v[3] = op->text;
		v[4] = now;
		return PQsendQueryPrepared(c, astmts[A_RESOLVE].name, 5, v, NULL, NULL, 0);
	}
	assert(!"unknown API operation"); /* pg_apply checks the kind */
	return false;
}

static bool outcome_of(const PGresult *r, int i, enum store_outcome *out)
{
	static const struct {
		const char *name;
		enum store_outcome o;
	} map[] = {
	    {"done", STORE_DONE},
	    {"replayed", STORE_REPLAYED},
	    {"key_reused", STORE_KEY_REUSED},
	    {"opted_out", STORE_OPTED_OUT},
	    {"pmid_taken", STORE_PMID_TAKEN},
	    {"pmid_set", STORE_PMID_SET},
	    {"not_found", STORE_NOT_FOUND},
	    {"already_resolved", STORE_ALREADY_RESOLVED},
	};
	const char *s = PQgetvalue(r, 0, i);

	for (size_t k = 0; k < ARRAY_LEN(map); k++) {
		if (strcmp(s, map[k].name) == 0) {
			*out = map[k].o;
			return true;
		}
	}
	return false;
}

/* The ROW_COLS at column o of r's first row into row. */
static void row_from(const PGresult *r, int o, struct store_op_row *row)
{
	copy_col(r, 0, o, row->id, sizeof(row->id));
	copy_col(r, 0, o + 1, row->origin, sizeof(row->origin));
	copy_col(r, 0, o + 2, row->provider, sizeof(row->provider));
	copy_col(r, 0, o + 3, row->provider_message_id, sizeof(row->provider_message_id));
	copy_col(r, 0, o + 4, row->status, sizeof(row->status));
	row->is_final = flag_of(r, 0, o + 5);
	copy_col(r, 0, o + 6, row->recipient_masked, sizeof(row->recipient_masked));
	copy_col(r, 0, o + 7, row->destination_country, sizeof(row->destination_country));
	copy_col(r, 0, o + 8, row->created_at, sizeof(row->created_at));
	copy_col(r, 0, o + 9, row->sent_recorded_at, sizeof(row->sent_recorded_at));
}

bool store__pg_api_result(struct store_op *op, const PGresult *r)
{
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		return false;
	switch (op->kind) {
	case STORE_OP_SEND:
		if (PQntuples(r) != 1 || PQnfields(r) != 3 + ROW_NCOLS ||
		    !outcome_of(r, 0, &op->outcome))
			return false;
		if (op->outcome == STORE_REPLAYED) {
			/* the first answer, as it was stored */
			op->resp_status = (int)num_of(r, 0, 1);
			if (op->resp_cap) {
				size_t bl = (size_t)PQgetlength(r, 0, 2);
				if (bl >= op->resp_cap)
					bl = op->resp_cap - 1;
				memcpy(op->resp, PQgetvalue(r, 0, 2), bl);
				op->resp[bl] = '\0';
				op->resp_len = bl;
			}
			copy_col(r, 0, 3, op->row.id, sizeof(op->row.id));
		} else if (op->outcome == STORE_DONE) {
			row_from(r, 3, &op->row);
		}
		return true;
	case STORE_OP_SET_PROVIDER_ID:
		if (PQntuples(r) != 1 || PQnfields(r) != 2 + ROW_NCOLS ||
		    !outcome_of(r, 0, &op->outcome))
			return false;
		if (op->outcome == STORE_DONE) {
			row_from(r, 2, &op->row);
			op->row.merged = flag_of(r, 0, 1);
		}
		return true;
	case STORE_OP_REVEAL: {
		if (PQnfields(r) != 2 || PQntuples(r) > 1)
			return false;
		if (PQntuples(r) == 0) {
			op->outcome = STORE_NOT_FOUND;
			return true;
		}
		if (PQgetisnull(r, 0, 0)) {
			op->outcome = STORE_NO_RECIPIENT;
			return true;
		}
		const uint8_t *blob = (const uint8_t *)PQgetvalue(r, 0, 0);
		size_t n = (size_t)PQgetlength(r, 0, 0);
		const char *key_id = PQgetisnull(r, 0, 1) ? NULL : PQgetvalue(r, 0, 1);
		int rc = op->open ? op->open(op, blob, n, key_id) : DLRD_EUNSUPP;
		if (rc != 0)
			op->outcome = STORE_UNDECRYPTABLE;
		return true;
	}
	case STORE_OP_RESOLVE_REVIEW:
		if (PQntuples(r) != 1 || PQnfields(r) != 3 || !outcome_of(r, 0, &op->outcome))
			return false;
		copy_col(r, 0, 1, op->resolved_at, sizeof(op->resolved_at));
		if (op->outcome == STORE_DONE)
			op->audit_id = num_of(r, 0, 2);
		return true;
	}
	return false;
}

bool store__pg_api_may_follow(const struct store_op *op)
{
	return op->kind == STORE_OP_SEND || op->kind == STORE_OP_REVEAL;
}

bool store__pg_api_follow(PGconn *c, struct commit_item *it, bool *queued)
{
	struct store_op *op = it->op;
	char now[25];
	const char *v[5];
	int len[5] = {0}, fmt[5] = {0};

	*queued = false;
	if (op->outcome != STORE_DONE)
		return true;
	switch (op->kind) {
	case STORE_OP_SEND:
		/* the answer, kept for replays of the same key */
		op->resp_status = 201;
		op->resp_len = op->render ? op->render(op) : 0;
		v[0] = op->send.token_hash;
		v[1] = op->send.idem_key;
		v[2] = "201";
		/* as bytes: the body need not be NUL-terminated at resp_len */
		v[3] = op->resp ? op->resp : "";
		len[3] = (int)op->resp_len;
		fmt[3] = 1;
		*queued = true;
		return PQsendQueryPrepared(c, astmts[A_IDEM].name, 4, v, len, fmt, 0);
	case STORE_OP_SET_PROVIDER_ID:
		op->resp_status = 200;
		op->resp_len = op->render ? op->render(op) : 0;
		return true;
	case STORE_OP_REVEAL:
		util_rfc3339(it->received_ms, now);
		v[0] = now;
		v[1] = op->actor;
		v[2] = op->actor_role;
		v[3] = op->message_id;
		v[4] = op->text ? op->text : "";
		*queued = true;
		return PQsendQueryPrepared(c, astmts[A_AUDIT].name, 5, v, NULL, NULL, 0);
	case STORE_OP_RESOLVE_REVIEW:
		return true;
	}
	return true;
}

bool store__pg_api_follow_result(struct store_op *op, const PGresult *r)
{
	switch (op->kind) {
	case STORE_OP_SEND:
		return PQresultStatus(r) == PGRES_COMMAND_OK &&
		       strcmp(PQcmdTuples((PGresult *)r), "1") == 0;
	case STORE_OP_REVEAL:
		if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
			return false;
		op->audit_id = num_of(r, 0, 0);
		return true;
	default:
		return false;
	}
}

/* ---- the read pool ---- */

struct rconn {
	PGconn *c; /* NULL until first used, or after it broke */
	bool busy; /* guarded by the pool's mutex */
};

/* Shared by every HTTP thread; the connections themselves are used by one
 * thread at a time (busy). */
struct store__pg_pool {
	const char *const *kw; /* the writer's connection keywords (borrowed) */
	const char *const *val;
	char where[256];
	pthread_mutex_t mu;
	pthread_cond_t cv;   /* a connection was given back */
	struct rconn *conns; /* n slots */
	unsigned n;
	int64_t last_fail_ms; /* last failed connection attempt; guarded by mu */
};

struct store__pg_pool *store__pg_pool_new(const char *const *kw, const char *const *val,
                                          const char *where, unsigned size)
{
	struct store__pg_pool *p = xcalloc(1, sizeof(*p));

	p->kw = kw;
	p->val = val;
	util_strlcpy(p->where, where, sizeof(p->where));
	p->n = size ? size : PG_READ_POOL_DEFAULT;
	p->conns = xcalloc(p->n, sizeof(*p->conns));
	pthread_mutex_init(&p->mu, NULL);
	util_cond_init(&p->cv);
	return p;
}

void store__pg_pool_free(struct store__pg_pool *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->n; i++)
		if (p->conns[i].c)
			PQfinish(p->conns[i].c);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->conns);
	free(p);
}

static void quiet_notice(void *arg, const PGresult *r)
{
	(void)arg;
	(void)r;
}

static void pool_put(struct store__pg_pool *p, struct rconn *rc, bool drop)
{
	if (drop && rc->c) {
		PQfinish(rc->c);
		rc->c = NULL;
	}
	pthread_mutex_lock(&p->mu);
	rc->busy = false;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* Opens a read connection: blocking, bounded by connect_timeout.  Returns
 * NULL with err set. */
static PGconn *read_connect(struct store__pg_pool *p, char *err, size_t errlen)
{
	struct pg_fail f;
	PGconn *c = PQconnectdbParams(p->kw, p->val, 1);

	if (!c) {
		util_fmt(err, errlen, "postgresql: out of memory");
		return NULL;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		char what[300];
		util_fmt(what, sizeof(what), "cannot open a read connection (%s)", p->where);
		store__pg_set_err(err, errlen, what, PQerrorMessage(c));
		goto fail;
	}
	PQsetNoticeReceiver(c, quiet_notice, NULL);
	if (store__pg_exec(c, "read session",
	                   "SET statement_timeout = '10s';"
	                   " SET idle_in_transaction_session_timeout = '30s';"
	                   " SET default_transaction_read_only = on",
	                   PG_SESSION_TIMEOUT_MS, &f, err, errlen) != 0)
		goto fail;
	if (PQsetnonblocking(c, 1) != 0) {
		store__pg_set_err(err, errlen, "PQsetnonblocking", PQerrorMessage(c));
		goto fail;
	}
	return c;
fail:
	PQfinish(c);
	return NULL;
}

/* Takes a free connection, opening or replacing it when needed; *fresh
 * tells that it was just opened.  DLRD_EFULL when none came free within
 * PG_READ_WAIT_MS, DLRD_EIO when none could be opened. */
static int pool_get(struct store__pg_pool *p, struct rconn **out, bool *fresh, char *err,
                    size_t errlen)
{
	struct rconn *rc = NULL;
	struct timespec ts;
	bool recent;

	*fresh = false;
	util_deadline(&ts, PG_READ_WAIT_MS);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		/* an open connection first, so only as many open as are needed */
		for (unsigned i = 0; i < p->n && !rc; i++)
			if (!p->conns[i].busy && p->conns[i].c)
				rc = &p->conns[i];
		for (unsigned i = 0; i < p->n && !rc; i++)
			if (!p->conns[i].busy)
				rc = &p->conns[i];
		if (rc)
			break;
		if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT) {
			pthread_mutex_unlock(&p->mu);
			util_fmt(err, errlen, "postgresql: no read connection free within %u ms",
			         PG_READ_WAIT_MS);
			return DLRD_EFULL;
		}
	}
	rc->busy = true;
	recent = util_now_ms() - p->last_fail_ms < PG_RECONNECT_INTERVAL_MS;
	pthread_mutex_unlock(&p->mu);

	/* one the server closed while it was idle is replaced */
	if (rc->c && !store__pg_alive(rc->c)) {
		PQfinish(rc->c);
		rc->c = NULL;
	}
	if (!rc->c) {
		if (recent) {
			util_fmt(err, errlen, "postgresql: not connected (%s); retrying", p->where);
			pool_put(p, rc, false);
			return DLRD_EIO;
		}
		rc->c = read_connect(p, err, errlen);
		if (!rc->c) {
			pthread_mutex_lock(&p->mu);
			p->last_fail_ms = util_now_ms();
			pthread_mutex_unlock(&p->mu);
			pool_put(p, rc, false);
			return DLRD_EIO;
		}
		*fresh = true;
	}
	*out = rc;
	return 0;
}

/* One read: its statements, with text parameters, and where their results
 * go. */
struct rq {
	const char *sql;
	int n;
	const char *const *vals;
};

struct rctx {
	PGresult **res;
	int nq;
	bool snapshot;
	int pos; /* results seen */
	bool bad;
};

static bool on_read_result(void *ctx, PGresult *r)
{
	struct rctx *x = ctx;
	int q = x->pos++ - (x->snapshot ? 1 : 0); /* the query it answers, or BEGIN/COMMIT */
	ExecStatusType st = PQresultStatus(r);

	if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_PIPELINE_ABORTED)
		return false;
	if (q >= 0 && q < x->nq) {
		if (st != PGRES_TUPLES_OK || x->res[q]) {
			x->bad = true;
			return false;
		}
		x->res[q] = r;
		return true;
	}
	x->bad |= st != PGRES_COMMAND_OK;
	return false;
}

static const char *read_label(void *ctx)
{
	(void)ctx;
	return "read";
}

/* Sends the statements (in a read-only snapshot transaction when snapshot)
 * in one pipeline and collects their results into res. */
static int read_once(PGconn *c, const struct rq *q, int nq, bool snapshot, PGresult **res,
                     struct pg_fail *f, char *err, size_t errlen)
{
	struct rctx x = {.res = res, .nq = nq, .snapshot = snapshot};

	memset(f, 0, sizeof(*f));
	if (!PQenterPipelineMode(c))
		goto send_failed;
	if (snapshot && !PQsendQueryParams(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0,
	                                   NULL, NULL, NULL, NULL, 0))
		goto send_failed;
	for (int i = 0; i < nq; i++)
		if (!PQsendQueryParams(c, q[i].sql, q[i].n, NULL, q[i].vals, NULL, NULL, 0))
			goto send_failed;
	if (snapshot && !PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0))
		goto send_failed;
	if (store__pg_exchange(c, util_now_ms() + PG_READ_TIMEOUT_MS, on_read_result, &x,
	                       read_label, f, err, errlen) != 0)
		return DLRD_EIO;
	if (!PQexitPipelineMode(c)) {
		store__pg_set_err(err, errlen, "pipeline", PQerrorMessage(c));
		f->broken = true;
		return DLRD_EIO;
	}
	if (f->failed)
		return DLRD_EIO;
	if (x.bad || x.pos != nq + (snapshot ? 2 : 0)) {
		store__pg_set_err(err, errlen, "read", "unexpected result");
		f->failed = true;
		return DLRD_EIO;
	}
	return 0;
send_failed:
	store__pg_set_err(err, errlen, "send", PQerrorMessage(c));
	f->broken = true;
	return DLRD_EIO;
}

/* Errors after which a read connection is not worth keeping. */
static bool suspect(const struct pg_fail *f)
{
	const char *s = f->sqlstate;
	return f->broken || !*s || !strncmp(s, "08", 2) || !strncmp(s, "57", 2) ||
	       !strncmp(s, "53", 2) || !strncmp(s, "58", 2) || !strncmp(s, "XX", 2);
}

/* Runs one read on a pooled connection.  On success res[0..nq) hold the
 * results (the caller PQclear()s them).  A connection that broke under a
 * read it had served before is replaced and the read tried once more. */
static int read_run(struct store__pg_pool *p, const struct rq *q, int nq, bool snapshot,
                    PGresult **res, char *err, size_t errlen)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		struct rconn *rc;
		struct pg_fail f;
		bool fresh, drop;
		int r;

		for (int i = 0; i < nq; i++)
			res[i] = NULL;
		if ((r = pool_get(p, &rc, &fresh, err, errlen)) != 0)
			return r;
		if (read_once(rc->c, q, nq, snapshot, res, &f, err, errlen) == 0) {
			pool_put(p, rc, false);
			return 0;
		}
		for (int i = 0; i < nq; i++) {
			PQclear(res[i]);
			res[i] = NULL;
		}
		drop = suspect(&f);
		if (!drop && PQtransactionStatus(rc->c) != PQTRANS_IDLE) {
			struct pg_fail g;
			char e2[128];
			drop = store__pg_exec(rc->c, "ROLLBACK", "ROLLBACK", PG_SESSION_TIMEOUT_MS,
			                      &g, e2, sizeof(e2)) != 0;
		}
		pool_put(p, rc, drop);
		if (!(f.broken && !fresh))
			break;
	}
	return DLRD_EIO;
}

/* ---- reads ---- */

static const char *col(struct arena *ar, const PGresult *r, int row, int i)
{
	if (PQgetisnull(r, row, i))
		return NULL;
	return arena_strndup(ar, PQgetvalue(r, row, i), (size_t)PQgetlength(r, row, i));
}

/* A bytea column (text format) as its bytes, NUL-terminated in the arena. */
static const char *bytes_col(struct arena *ar, const PGresult *r, int row, int i, size_t *len)
{
	unsigned char *b;
	size_t n = 0;
	const char *out;

	*len = 0;
	if (PQgetisnull(r, row, i))
		return NULL;
	b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, i), &n);
	if (!b)
		abort(); /* out of memory: as xmalloc */
	out = arena_strndup(ar, (const char *)b, n);
	*len = n;
	PQfreemem(b);
	return out;
}

#define MSG_COLS                                                                                            \
	"id::text, provider, provider_message_id, origin, current_status, current_raw_status,"              \
	" current_error_code, current_error_reason, " PG_TS(                                                \
	    "current_occurred_at") ", is_final,"                                                            \
	                           " final_conflict, read_receipt, recipient_enc IS NOT NULL, "             \
	                           "recipient_masked,"                                                      \
	                           " destination_country, country_source, sender_identity, "                \
	                           "template_key, use_case,"                                                \
	                           " action_type, action_id, metadata, recipient_timezone, "                \
	                           "event_count, callback_count,"                                           \
	                           " duplicate_count, " PG_TS("first_callback_at") ", " PG_TS(              \
	                               "fi"                                                                 \
	                               "na"                                                                 \
	                               "l_"                                                                 \
	                               "a"                                                                  \
	                               "t") ", " PG_TS("created_at") ", " PG_TS("updated_at") ","           \
	                                                                                      " " PG_TS(    \
	                                                                                          "sent_"   \
	                                                                                          "recorde" \
	                                                                                          "d_at")
#define MSG_NCOLS 31

static void row_message(struct arena *ar, const PGresult *r, int row, struct store_message *m)
{
	int i = 0;
	memset(m, 0, sizeof(*m));
	m->id = col(ar, r, row, i++);
	m->provider = col(ar, r, row, i++);
	m->provider_message_id = col(ar, r, row, i++);
	m->origin = col(ar, r, row, i++);
	m->status = col(ar, r, row, i++);
	m->raw_status = col(ar, r, row, i++);
	m->error_code = col(ar, r, row, i++);
	m->error_reason = col(ar, r, row, i++);
	m->occurred_at = col(ar, r, row, i++);
	m->is_final = flag_of(r, row, i++);
	m->final_conflict = flag_of(r, row, i++);
	m->read_receipt = flag_of(r, row, i++);
	m->has_recipient = flag_of(r, row, i++);
	m->recipient_masked = col(ar, r, row, i++);
	m->destination_country = col(ar, r, row, i++);
	m->country_source = col(ar, r, row, i++);
	m->sender_identity = col(ar, r, row, i++);
	m->template_key = col(ar, r, row, i++);
	m->use_case = col(ar, r, row, i++);
	m->action_type = col(ar, r, row, i++);
	m->action_id = col(ar, r, row, i++);
	m->metadata = col(ar, r, row, i++);
	m->recipient_timezone = col(ar, r, row, i++);
	m->event_count = num_of(r, row, i++);
	m->callback_count = num_of(r, row, i++);
	m->duplicate_count = num_of(r, row, i++);
	m->first_callback_at = col(ar, r, row, i++);
	m->final_at = col(ar, r, row, i++);
	m->created_at = col(ar, r, row, i++);
	m->updated_at = col(ar, r, row, i++);
	m->sent_recorded_at = col(ar, r, row, i++);
	assert(i == MSG_NCOLS);
}

static const char *const q_message = "SELECT " MSG_COLS " FROM sms_messages WHERE id = $1::uuid";

static int bad_shape(char *err, size_t errlen, const char *what)
{
	store__pg_set_err(err, errlen, what, "unexpected result");
	return DLRD_EIO;
}

int store__pg_get_message(struct store__pg_pool *p, struct arena *ar, const char *id,
                          struct store_message *out, char *err, size_t errlen)
{
	const char *v[1] = {id};
	struct rq q = {q_message, 1, v};
	PGresult *r;
	int rc;

	if (!is_uuid(id))
		return DLRD_ENOTFOUND;
	if ((rc = read_run(p, &q, 1, false, &r, err, errlen)) != 0)
		return rc;
	if (PQnfields(r) != MSG_NCOLS)
		rc = bad_shape(err, errlen, "message");
	else if (PQntuples(r) == 0)
		rc = DLRD_ENOTFOUND;
	else
		row_message(ar, r, 0, out);
	PQclear(r);
	return rc;
}

#define EVENT_COLS                                                                                 \
	"e.id, e.status, e.raw_status, e.error_code, e.error_reason, e.provider_event_id,"         \
	" e.is_final, e.read_receipt, e.changed_summary, " PG_TS(                                  \
	    "e.provider_occurred_at") ", " PG_TS("e.received_at") ", (SELECT count(*) FROM "       \
	                                                          "sms_callback_log l"             \
	                                                          " WHERE l.event_id = e.id)"
/* A row's raw payload: its own, or the request's kept once (postgresql.c,
 * migration 11). */
#define PAYLOAD(t)                                                                                 \
	"coalesce((SELECT p.raw_payload FROM sms_payloads p WHERE p.id = " t ".payload_id), " t    \
	".raw_payload)"
#define SQL_NUMBER_(x) #x
#define SQL_NUMBER(x)  SQL_NUMBER_(x) /* a numeric macro as SQL text */
#define EVENT_FROM                                                                                 \
	" FROM sms_message_events e WHERE e.message_id = $1::uuid ORDER BY e.id"                   \
	" LIMIT " SQL_NUMBER(STORE_TIMELINE_EVENTS)

/* Reads the raw payloads of the events ev[0..k) that fit in
 * STORE_PAYLOAD_BUDGET, oldest first (their sizes are in raw_payload_len),
 * in one query by event id (an event's payload never changes), so that up
 * to STORE_TIMELINE_EVENTS payloads of up to max_body_bytes each are never
 * in memory at once.  Marks the others raw_payload_omitted. */
static int event_payloads(struct store__pg_pool *p, struct arena *ar, struct store_event *ev, int k,
                          char *err, size_t errlen)
{
	size_t left = STORE_PAYLOAD_BUDGET, cap = 3 + (size_t)k * 21, len = 0;
	char *ids = arena_alloc(ar, cap);
	const char *v[1] = {ids};
	struct rq q = {"SELECT e.id, " PAYLOAD("e") " FROM sms_message_events e"
	                                            " WHERE e.id = ANY ($1::bigint[])",
	               1, v};
	PGresult *r = NULL;
	int rc, want = 0;

	ids[len++] = '{';
	for (int i = 0; i < k; i++) {
		if (ev[i].raw_payload_len > left) {
			ev[i].raw_payload_omitted = true;
			continue;
		}
		left -= ev[i].raw_payload_len;
		len += util_fmt(ids + len, cap - len, "%s%lld", want++ ? "," : "",
		                (long long)ev[i].id);
	}
	ids[len++] = '}';
	ids[len] = '\0';
	if (!want)
		return 0;
	if ((rc = read_run(p, &q, 1, false, &r, err, errlen)) != 0)
		return rc;
	if (PQnfields(r) != 2) {
		PQclear(r);
		return bad_shape(err, errlen, "timeline payloads");
	}
	for (int j = 0; j < PQntuples(r); j++) {
		int64_t id = num_of(r, j, 0);
		for (int i = 0; i < k; i++) {
			if (ev[i].id == id && !ev[i].raw_payload_omitted) {
				ev[i].raw_payload = bytes_col(ar, r, j, 1, &ev[i].raw_payload_len);
				break;
			}
		}
	}
	PQclear(r);
	return 0;
}

int store__pg_get_timeline(struct store__pg_pool *p, struct arena *ar, const char *id,
                           bool payloads, struct store_message *msg, struct store_event **events,
                           size_t *n, char *err, size_t errlen)
{
	const char *v[1] = {id};
	/* the payloads' sizes first, the payloads that fit after
	 * (event_payloads()) */
	struct rq q[2] = {
	    {q_message, 1, v},
	    {payloads ? "SELECT " EVENT_COLS ", octet_length(" PAYLOAD("e") ")" EVENT_FROM
	              : "SELECT " EVENT_COLS EVENT_FROM,
	     1, v},
	};
	PGresult *r[2];
	struct store_event *ev = NULL;
	int rc, k;

	*events = NULL;
	*n = 0;
	if (!is_uuid(id))
		return DLRD_ENOTFOUND;
	/* the summary and its events from one snapshot */
	if ((rc = read_run(p, q, 2, true, r, err, errlen)) != 0)
		return rc;
	if (PQnfields(r[0]) != MSG_NCOLS || PQnfields(r[1]) != (payloads ? 13 : 12)) {
		rc = bad_shape(err, errlen, "timeline");
		goto out;
	}
	if (PQntuples(r[0]) == 0) {
		rc = DLRD_ENOTFOUND;
		goto out;
	}
	row_message(ar, r[0], 0, msg);
	k = PQntuples(r[1]);
	if (k > 0)
		ev = arena_alloc(ar, (size_t)k * sizeof(*ev));
	for (int i = 0; i < k; i++) {
		struct store_event *e = &ev[i];
		memset(e, 0, sizeof(*e));
		e->id = num_of(r[1], i, 0);
		e->status = col(ar, r[1], i, 1);
		e->raw_status = col(ar, r[1], i, 2);
		e->error_code = col(ar, r[1], i, 3);
		e->error_reason = col(ar, r[1], i, 4);
		e->provider_event_id = col(ar, r[1], i, 5);
		e->is_final = flag_of(r[1], i, 6);
		e->read_receipt = flag_of(r[1], i, 7);
		e->changed_summary = flag_of(r[1], i, 8);
		e->provider_occurred_at = col(ar, r[1], i, 9);
		e->received_at = col(ar, r[1], i, 10);
		e->deliveries = num_of(r[1], i, 11);
		e->raw_payload_len = payloads ? (size_t)num_of(r[1], i, 12) : 0;
	}
	if (payloads && k > 0 && (rc = event_payloads(p, ar, ev, k, err, errlen)) != 0)
		goto out;
	*events = ev;
	*n = (size_t)k;
out:
	PQclear(r[0]);
	PQclear(r[1]);
	return rc;
}

/* A query under construction: SQL text and its text parameters, in order. */
struct qbuild {
	char sql[SQL_MAX];
	size_t len;
	const char *vals[BINDS_MAX];
	char nums[BINDS_MAX][24];
	int n;
	bool overflow; /* too long or too many parameters */
	bool none;     /* a value no row can have: no query needed */
};

static void qb_add(struct qbuild *b, const char *s)
{
	size_t n = strlen(s);
	if (b->len + n >= sizeof(b->sql)) {
		b->overflow = true;
		return;
	}
	memcpy(b->sql + b->len, s, n + 1);
	b->len += n;
}

/* Appends "<pre>$N<post>" with v as parameter N (nothing when v is NULL). */
static void qb_param(struct qbuild *b, const char *pre, const char *v, const char *post)
{
	char frag[160];

	if (!v)
		return;
	if (b->n >= BINDS_MAX) {
		b->overflow = true;
		return;
	}
	/* stored text is UTF-8: another value matches nothing, where the
	 * server would refuse it */
	if (!utf8_ok(v))
		b->none = true;
	b->vals[b->n++] = v;
	util_fmt(frag, sizeof(frag), "%s$%d%s", pre, b->n, post);
	qb_add(b, frag);
}

static void qb_int(struct qbuild *b, const char *pre, int64_t v, const char *post)
{
	if (b->n >= BINDS_MAX) {
		b->overflow = true;
		return;
	}
	util_fmt(b->nums[b->n], sizeof(b->nums[b->n]), "%lld", (long long)v);
	qb_param(b, pre, b->nums[b->n], post);
}

/* Ends the query: newest first, at most limit rows. */
static void qb_newest(struct qbuild *b, unsigned limit)
{
	qb_int(b, " ORDER BY id DESC LIMIT ", limit, "");
}

/* Runs b's query; on success *res holds its result. */
static int qb_run(struct store__pg_pool *p, struct qbuild *b, int ncols, PGresult **res, char *err,
                  size_t errlen)
{
	struct rq q = {b->sql, b->n, b->vals};
	int rc;

	*res = NULL;
	if (b->overflow) {
		util_fmt(err, errlen, "postgresql: query too long");
		return DLRD_EIO;
	}
	if (b->none)
		return 0;
	if ((rc = read_run(p, &q, 1, false, res, err, errlen)) != 0)
		return rc;
	if (PQnfields(*res) != ncols) {
		PQclear(*res);
		*res = NULL;
		return bad_shape(err, errlen, "read");
	}
	return 0;
}

int store__pg_search(struct store__pg_pool *p, struct arena *ar, const struct store_query *q,
                     struct store_message **rows, size_t *n, char *err, size_t errlen)
{
	struct qbuild *b = xcalloc(1, sizeof(*b));
	struct store_message *out = NULL;
	PGresult *r = NULL;
	int rc, k;

	*rows = NULL;
	*n = 0;
	qb_add(b, "SELECT " MSG_COLS " FROM sms_messages WHERE true");
	if (q->n_statuses) {
		for (size_t i = 0; i < q->n_statuses; i++)
			qb_param(b, i ? ", " : " AND current_status IN (", q->statuses[i], "");
		qb_add(b, ")");
	}
	if (q->final >= 0)
		qb_int(b, " AND is_final = ", q->final ? 1 : 0, "::smallint");
	qb_param(b, " AND provider = ", q->provider, "");
	qb_param(b, " AND destination_country = ", q->country, "");
	qb_param(b, " AND sender_identity = ", q->sender_identity, "");
	qb_param(b, " AND template_key = ", q->template_key, "");
	qb_param(b, " AND use_case = ", q->use_case, "");
	qb_param(b, " AND provider_message_id = ", q->provider_message_id, "");
	if (q->provider_message_id && !q->provider) {
		/* every provider: the (provider, provider_message_id) index
		 * then finds the row, where a provider message id alone would
		 * read every message, newest first, to the oldest */
		for (size_t i = 0; provider_table[i]; i++)
			qb_param(b, i ? ", " : " AND provider IN (", provider_table[i]->name, "");
		qb_add(b, ")");
	}
	qb_param(b, " AND action_type = ", q->action_type, "");
	qb_param(b, " AND action_id = ", q->action_id, "");
	qb_param(b, " AND origin = ", q->origin, "");
	qb_param(b, " AND created_at >= ", q->created_from, "::timestamptz");
	qb_param(b, " AND created_at < ", q->created_to, "::timestamptz");
	qb_param(b, " AND updated_at >= ", q->updated_from, "::timestamptz");
	qb_param(b, " AND updated_at < ", q->updated_to, "::timestamptz");
	qb_param(b, " AND is_final = 0 AND created_at < ", q->stuck_before, "::timestamptz");
	if (q->before_id && !is_uuid(q->before_id)) {
		util_fmt(err, errlen, "postgresql: search: the cursor is not a message id");
		rc = DLRD_EIO;
		goto out;
	}
	qb_param(b, " AND id < ", q->before_id, "::uuid");
	qb_newest(b, q->limit);
	if ((rc = qb_run(p, b, MSG_NCOLS, &r, err, errlen)) != 0 || !r)
		goto out;
	k = PQntuples(r);
	if (k > 0)
		out = arena_alloc(ar, (size_t)k * sizeof(*out));
	for (int i = 0; i < k; i++)
		row_message(ar, r, i, &out[i]);
	*rows = out;
	*n = (size_t)k;
out:
	PQclear(r);
	free(b);
	return rc;
}

/* Reads the raw payloads of the review items in rows[0..k) that fit in
 * STORE_PAYLOAD_BUDGET, in that order (their sizes are in raw_payload_len):
 * one query for those, so that a list of items of up to max_body_bytes each
 * is never in memory at once.  Marks the others raw_payload_omitted. */
static int review_payloads(struct store__pg_pool *p, struct arena *ar,
                           struct store_review_item *rows, int k, const bool *has, char *err,
                           size_t errlen)
{
	struct qbuild *b = NULL;
	PGresult *r = NULL;
	size_t left = STORE_PAYLOAD_BUDGET, cap = 3 + (size_t)k * 21, len = 0;
	char *ids = arena_alloc(ar, cap);
	int rc = 0, want = 0;

	ids[len++] = '{';
	for (int i = 0; i < k; i++) {
		if (!has[i])
			continue;
		if (rows[i].raw_payload_len > left) {
			rows[i].raw_payload_omitted = true;
			continue;
		}
		left -= rows[i].raw_payload_len;
		len += util_fmt(ids + len, cap - len, "%s%lld", want++ ? "," : "",
		                (long long)rows[i].id);
	}
	ids[len++] = '}';
	ids[len] = '\0';
	if (!want)
		return 0;
	b = xcalloc(1, sizeof(*b));
	qb_add(b, "SELECT id, " PAYLOAD("review_queue") " FROM review_queue WHERE id = ANY (");
	qb_param(b, "", ids, "::bigint[])");
	if ((rc = qb_run(p, b, 2, &r, err, errlen)) != 0 || !r)
		goto out;
	for (int j = 0; j < PQntuples(r); j++) {
		int64_t id = num_of(r, j, 0);
		for (int i = 0; i < k; i++) {
			if (rows[i].id == id && has[i] && !rows[i].raw_payload_omitted) {
				rows[i].raw_payload =
				    bytes_col(ar, r, j, 1, &rows[i].raw_payload_len);
				break;
			}
		}
	}
out:
	PQclear(r);
	free(b);
	return rc;
}

int store__pg_list_review(struct store__pg_pool *p, struct arena *ar,
                          const struct store_review_query *q, struct store_review_item **rows,
                          size_t *n, char *err, size_t errlen)
{
	struct qbuild *b = xcalloc(1, sizeof(*b));
	struct store_review_item *out = NULL;
	bool *has = NULL;
	PGresult *r = NULL;
	int rc, k;

	*rows = NULL;
	*n = 0;
	/* the payloads' sizes first, the payloads that fit after
	 * (review_payloads()) */
	qb_add(b,
	       "SELECT id, " PG_TS(
	           "created_at") ", provider, reason, detail, message_id::text,"
	                         " event_id, raw_status, octet_length(" PAYLOAD(
	                             "review_queue") "), " PG_TS("resolved_at") ", resolved_by,"
	                                                                        " resolution, "
	                                                                        "retry_count FROM "
	                                                                        "review_queue "
	                                                                        "WHERE true");
	if (q->state == 0)
		qb_add(b, " AND resolved_at IS NULL");
	else if (q->state == 1)
		qb_add(b, " AND resolved_at IS NOT NULL");
	qb_param(b, " AND reason = ", q->reason, "");
	if (q->before_id > 0)
		qb_int(b, " AND id < ", q->before_id, "::bigint");
	qb_newest(b, q->limit);
	if ((rc = qb_run(p, b, 13, &r, err, errlen)) != 0 || !r)
		goto out;
	k = PQntuples(r);
	if (k > 0) {
		out = arena_alloc(ar, (size_t)k * sizeof(*out));
		has = arena_alloc(ar, (size_t)k * sizeof(*has));
	}
	for (int i = 0; i < k; i++) {
		struct store_review_item *it = &out[i];
		memset(it, 0, sizeof(*it));
		it->id = num_of(r, i, 0);
		it->created_at = col(ar, r, i, 1);
		it->provider = col(ar, r, i, 2);
		it->reason = col(ar, r, i, 3);
		it->detail = col(ar, r, i, 4);
		it->message_id = col(ar, r, i, 5);
		it->event_id = num_of(r, i, 6);
		it->raw_status = col(ar, r, i, 7);
		has[i] = !PQgetisnull(r, i, 8);
		it->raw_payload_len = (size_t)num_of(r, i, 8);
		it->resolved_at = col(ar, r, i, 9);
		it->resolved_by = col(ar, r, i, 10);
		it->resolution = col(ar, r, i, 11);
		it->retries = num_of(r, i, 12);
	}
	PQclear(r);
	r = NULL;
	if (k > 0 && (rc = review_payloads(p, ar, out, k, has, err, errlen)) != 0)
		goto out;
	*rows = out;
	*n = (size_t)k;
out:
	PQclear(r);
	free(b);
	return rc;
}

int store__pg_list_audit(struct store__pg_pool *p, struct arena *ar,
                         const struct store_audit_query *q, struct store_audit_row **rows,
                         size_t *n, char *err, size_t errlen)
{
	struct qbuild *b = xcalloc(1, sizeof(*b));
	struct store_audit_row *out = NULL;
	PGresult *r = NULL;
	int rc, k;

	*rows = NULL;
	*n = 0;
	qb_add(b, "SELECT id, " PG_TS("at") ", actor, actor_role, action, message_id::text,"
	                                    " review_id, reason FROM audit_log WHERE true");
	if (q->message_id && !is_uuid(q->message_id))
		b->none = true; /* no message has such an id */
	else
		qb_param(b, " AND message_id = ", q->message_id, "::uuid");
	if (q->before_id > 0)
		qb_int(b, " AND id < ", q->before_id, "::bigint");
	qb_newest(b, q->limit);
	if ((rc = qb_run(p, b, 8, &r, err, errlen)) != 0 || !r)
		goto out;
	k = PQntuples(r);
	if (k > 0)
		out = arena_alloc(ar, (size_t)k * sizeof(*out));
	for (int i = 0; i < k; i++) {
		struct store_audit_row *a = &out[i];
		memset(a, 0, sizeof(*a));
		a->id = num_of(r, i, 0);
		a->at = col(ar, r, i, 1);
		a->actor = col(ar, r, i, 2);
		a->actor_role = col(ar, r, i, 3);
		a->action = col(ar, r, i, 4);
		a->message_id = col(ar, r, i, 5);
		a->review_id = num_of(r, i, 6);
		a->reason = col(ar, r, i, 7);
	}
	*rows = out;
	*n = (size_t)k;
out:
	PQclear(r);
	free(b);
	return rc;
}

/* One GROUP BY over sms_messages (the created_at index bounds it): the key,
 * the count, the final count and one count per status. */
int store__pg_stats(struct store__pg_pool *p, struct arena *ar, const struct store_stats_query *q,
                    struct store_stats_row **rows, size_t *n, char *err, size_t errlen)
{
	const char *colname = store__stats_column(q->group_by);
	struct qbuild *b = xcalloc(1, sizeof(*b));
	struct store_stats_row *out = NULL;
	PGresult *r = NULL;
	char frag[200];
	int rc, k;

	*rows = NULL;
	*n = 0;
	util_fmt(frag, sizeof(frag),
	         "SELECT %s::text, COUNT(*), COUNT(*) FILTER (WHERE is_final <> 0)", colname);
	qb_add(b, frag);
	for (int s = 0; s < ST__COUNT; s++) {
		util_fmt(frag, sizeof(frag), ", COUNT(*) FILTER (WHERE current_status = '%s')",
		         status_name((enum dlr_status)s));
		qb_add(b, frag);
	}
	qb_add(b, " FROM sms_messages WHERE true");
	qb_param(b, " AND created_at >= ", q->since, "::timestamptz");
	qb_param(b, " AND created_at < ", q->until, "::timestamptz");
	qb_param(b, " AND provider = ", q->provider, "");
	qb_param(b, " AND use_case = ", q->use_case, "");
	qb_param(b, " AND destination_country = ", q->country, "");
	util_fmt(frag, sizeof(frag),
	         " GROUP BY 1 ORDER BY 2 DESC, (%s IS NULL), %s::text COLLATE \"C\"", colname,
	         colname);
	qb_add(b, frag);
	qb_int(b, " LIMIT ", q->limit, "");
	if ((rc = qb_run(p, b, 3 + ST__COUNT, &r, err, errlen)) != 0 || !r)
		goto out;
	k = PQntuples(r);
	if (k > 0)
		out = arena_alloc(ar, (size_t)k * sizeof(*out));
	for (int i = 0; i < k; i++) {
		struct store_stats_row *g = &out[i];
		memset(g, 0, sizeof(*g));
		g->key = col(ar, r, i, 0);
		g->count = num_of(r, i, 1);
		g->final_count = num_of(r, i, 2);
		for (int s = 0; s < ST__COUNT; s++)
			g->by_status[s] = num_of(r, i, 3 + s);
	}
	*rows = out;
	*n = (size_t)k;
out:
	PQclear(r);
	free(b);
	return rc;
}
