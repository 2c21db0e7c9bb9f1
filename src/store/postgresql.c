/* SPDX-License-Identifier: MIT */
/*
 * PostgreSQL backend: several dlrd nodes on one database.
 *
 * Each node has one writer connection, owned by the writer thread (opened by
 * the main thread before the writer starts).  A batch is one transaction and,
 * in the normal case, one network round trip: libpq pipeline mode sends
 * BEGIN, one call of a server-side function per event (dlrd_apply_status,
 * dlrd_apply_inbound, or an INSERT for an unusable payload), COMMIT and a
 * Sync in one write, then reads every answer.  The commit queue answers 2xx
 * only after the COMMIT's own result came back; a lost connection or an
 * error anywhere rolls the whole batch back (nothing of it is visible) and
 * the batch is answered 503.
 *
 * Concurrency between nodes.  The functions (migration 2 below) lock the
 * message's summary row (SELECT ... FOR NO KEY UPDATE, READ COMMITTED) before
 * they insert the event, so two nodes that apply events of the same message
 * at the same time serialize on that row: the second reads the summary the
 * first committed and folds into it.  The fold (dlrd_event_gt and friends)
 * is status_event_cmp / status_fold / status_mask_conflict of ../status.c,
 * rewritten in SQL; tests/unit/test_store_pg.c checks the two agree on every
 * status and on hand-picked and random keys.  Since the fold is commutative
 * and idempotent, the summary depends only on the set of committed events.
 * Deduplication is the unique constraint (provider, dedup_key) with
 * INSERT ... ON CONFLICT DO NOTHING: the second of two concurrent inserts of
 * one event waits for the first transaction and then does nothing.  Events
 * are applied in (provider, message id) order so that two batches take their
 * row locks in the same order; a deadlock (40P01) or serialization failure
 * (40001) that still happens is retried, whole batch, a few times with a
 * short randomized backoff.
 *
 * Connection loss.  libpq runs non-blocking here and every wait has a
 * deadline, so a database that vanishes cannot hang the writer.  A batch that
 * finds the connection dead before sending anything reconnects first; one
 * that loses it midway fails (503; the provider retries and dedup absorbs a
 * batch that did commit before the answer was lost).  While the database is
 * unreachable, batches fail fast (one connection attempt per second at most)
 * and store_probe() reconnects and runs a real write transaction, which is
 * what turns /healthz back to 200.
 *
 * Secrets: the storage URL may hold a password.  Only host, port, database
 * and user are ever logged; libpq's parse errors (which may quote parts of
 * the string) are not passed on.
 *
 * Schema and migrations: see src/store/README.md.
 */
#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commitq.h"
#include "errcat.h"
#include "log.h"
#include "optout.h"
#include "status.h"
#include "store_int.h"

#define PG_CONNECT_TIMEOUT       "5"    /* seconds, unless the URL says otherwise */
#define PG_BATCH_TIMEOUT_MS      15000  /* one attempt of one batch, client side */
#define PG_SIMPLE_TIMEOUT_MS     5000   /* probe, ROLLBACK */
#define PG_RECONNECT_INTERVAL_MS 1000   /* between failed connection attempts */
#define PG_MAX_ATTEMPTS          5      /* of one batch, on deadlock/serialization */
#define PG_MIN_SERVER            120000 /* PostgreSQL 12 */
/* "dlrdmigr": the advisory lock every node takes to run migrations. */
#define PG_MIGRATION_LOCK "7236833635580488050"

/* Type OIDs (pg_type.h is a server header) for the prepared statements. */
#define OID_BOOL        16
#define OID_BYTEA       17
#define OID_INT8        20
#define OID_INT2        21
#define OID_TEXT        25
#define OID_TIMESTAMPTZ 1184
#define OID_UUID        2950

/*
 * Versioned migrations, applied in order at start-up.  Each runs in its own
 * transaction that first takes a transaction-level advisory lock, so nodes
 * that start at the same time apply each migration exactly once: the others
 * wait for the lock, then find the version already recorded.  Never edit
 * one that has shipped: add the next (CREATE OR REPLACE FUNCTION for a
 * changed function, with a new name if its signature changes, so that nodes
 * still running the old binary keep working during a rolling upgrade).
 *
 * Tables and columns mean what they mean in sqlite.c (migrations 1 and 2
 * there); the types are PostgreSQL's: uuid ids, timestamptz times, bytea raw
 * payloads kept byte for byte, plus payload_json, a jsonb copy of the payload
 * when it is JSON (NULL otherwise).  Flags are smallint 0/1 as in SQLite, so
 * queries against either backend read the same.
 */
static const struct {
	int version;
	const char *name;
	const char *sql;
} migrations[] = {
    {1, "initial schema, error reasons, inbound messages, opt-outs",
     "CREATE TABLE sms_messages ("
     " id uuid PRIMARY KEY," /* dlrd's stable id (UUIDv7) */
     " provider text NOT NULL,"
     " provider_message_id text," /* canonical form */
     " recipient_hash text,"      /* keyed HMAC of the E.164 number */
     " destination_country text,"
     " sender_identity text,"
     " template_key text,"
     " use_case text,"
     " origin text NOT NULL," /* 'callback' or 'send' */
     " current_status text NOT NULL,"
     " current_raw_status text,"
     " current_error_code text,"
     " current_error_reason text,"
     " current_occurred_at timestamptz,"
     " current_occurred_ms bigint NOT NULL DEFAULT -1," /* exact, for precedence */
     " is_final smallint NOT NULL DEFAULT 0,"
     " status_mask integer NOT NULL DEFAULT 0,"
     " final_conflict smallint NOT NULL DEFAULT 0,"
     " read_receipt smallint NOT NULL DEFAULT 0,"
     " event_count integer NOT NULL DEFAULT 0,"
     " callback_count integer NOT NULL DEFAULT 0,"
     " duplicate_count integer NOT NULL DEFAULT 0,"
     " first_callback_at timestamptz,"
     " final_at timestamptz,"
     " created_at timestamptz NOT NULL,"
     " updated_at timestamptz NOT NULL,"
     " CONSTRAINT sms_messages_provider_id UNIQUE (provider, provider_message_id)"
     ") WITH (fillfactor = 80);" /* room for HOT updates of the summary */
     "CREATE INDEX sms_messages_open ON sms_messages (is_final, created_at);"
     "CREATE TABLE sms_message_events ("
     " id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
     " message_id uuid NOT NULL REFERENCES sms_messages (id),"
     " provider text NOT NULL,"
     " provider_message_id text NOT NULL,"
     " provider_event_id text,"
     " dedup_key text NOT NULL,"
     " status text NOT NULL,"
     " raw_status text,"
     " error_code text,"
     " error_reason text,"
     " is_final smallint NOT NULL,"
     " read_receipt smallint NOT NULL DEFAULT 0,"
     " changed_summary smallint NOT NULL," /* 0: late or out of order on arrival */
     " provider_occurred_at timestamptz,"
     " raw_payload bytea NOT NULL,"
     " payload_json jsonb,"
     " received_at timestamptz NOT NULL,"
     " CONSTRAINT sms_message_events_dedup UNIQUE (provider, dedup_key)"
     ");"
     "CREATE INDEX sms_message_events_message ON sms_message_events (message_id, id);"
     "CREATE TABLE sms_callback_log (" /* every accepted request, duplicates included */
     " id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
     " received_at timestamptz NOT NULL,"
     " provider text NOT NULL,"
     " event_id bigint NOT NULL REFERENCES sms_message_events (id),"
     " duplicate smallint NOT NULL"
     ");"
     "CREATE INDEX sms_callback_log_event ON sms_callback_log (event_id);"
     "CREATE TABLE review_queue ("
     " id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
     " created_at timestamptz NOT NULL,"
     " provider text NOT NULL,"
     " reason text NOT NULL," /* unknown_status, unusable_payload, final_conflict */
     " detail text,"
     " message_id uuid,"
     " event_id bigint,"
     " raw_status text,"
     " raw_payload bytea,"
     " payload_json jsonb,"
     " resolved_at timestamptz"
     ");"
     "CREATE INDEX review_queue_open ON review_queue (resolved_at, id);"
     "CREATE TABLE sms_inbound_messages ("
     " id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
     " provider text NOT NULL,"
     " provider_message_id text,"
     " dedup_key text NOT NULL,"
     " sender_hash text," /* keyed HMAC of the user's number */
     " sender_country text,"
     " to_identity text," /* our number or short code */
     " body text,"
     " keyword text NOT NULL," /* none, opt_out, opt_in, help */
     " provider_occurred_at timestamptz,"
     " raw_payload bytea NOT NULL,"
     " payload_json jsonb,"
     " received_at timestamptz NOT NULL,"
     " retry_count integer NOT NULL DEFAULT 0,"
     " CONSTRAINT sms_inbound_dedup UNIQUE (provider, dedup_key)"
     ");"
     "CREATE INDEX sms_inbound_sender ON sms_inbound_messages (sender_hash, id);"
     "CREATE TABLE sms_opt_outs (" /* current state per user and sender */
     " recipient_hash text NOT NULL,"
     " sender_identity text NOT NULL," /* '' when the provider did not say */
     " opted_out smallint NOT NULL,"
     " keyword text,"
     " inbound_id bigint NOT NULL,"
     " effective_at timestamptz NOT NULL," /* provider time, else receipt time */
     " updated_at timestamptz NOT NULL,"
     " PRIMARY KEY (recipient_hash, sender_identity)"
     ");"
     "CREATE TABLE sms_opt_out_history ("
     " id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
     " recipient_hash text NOT NULL,"
     " sender_identity text NOT NULL,"
     " action text NOT NULL," /* opt_out, opt_in */
     " keyword text,"
     " inbound_id bigint NOT NULL,"
     " effective_at timestamptz NOT NULL,"
     " received_at timestamptz NOT NULL"
     ");"
     "CREATE INDEX sms_opt_out_history_user ON sms_opt_out_history (recipient_hash,"
     " sender_identity, effective_at);"},
    {2, "the batch functions and the precedence fold",
     /* status.c's ranks: higher wins; 0 for a name that is not a status. */
     "CREATE FUNCTION dlrd_status_rank(s text) RETURNS integer"
     " LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$"
     " SELECT CASE s WHEN 'accepted' THEN 1 WHEN 'sent' THEN 2 WHEN 'unknown' THEN 3"
     " WHEN 'failed' THEN 4 WHEN 'rejected' THEN 5 WHEN 'expired' THEN 6"
     " WHEN 'undelivered' THEN 7 WHEN 'delivered' THEN 8 ELSE 0 END $$;"
     /* 1 << enum dlr_status (status.h's order); 0 for a name that is not a
      * status. */
     "CREATE FUNCTION dlrd_status_bit(s text) RETURNS integer"
     " LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$"
     " SELECT CASE s WHEN 'accepted' THEN 1 WHEN 'sent' THEN 2 WHEN 'delivered' THEN 4"
     " WHEN 'undelivered' THEN 8 WHEN 'failed' THEN 16 WHEN 'expired' THEN 32"
     " WHEN 'rejected' THEN 64 WHEN 'unknown' THEN 128 ELSE 0 END $$;"
     /* status_mask_conflict(): two or more definitive finals (delivered,
      * undelivered, failed, expired, rejected = 4|8|16|32|64 = 124). */
     "CREATE FUNCTION dlrd_mask_conflict(mask integer) RETURNS boolean"
     " LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$"
     " SELECT ((mask & 124) & ((mask & 124) - 1)) <> 0 $$;"
     /* status_event_cmp(a, b) > 0: rank, then provider time (-1 when absent),
      * then error code, then raw status, NULL before every string and strings
      * in byte order (strcmp: COLLATE \"C\").  "x IS NOT NULL, coalesce(x, '')"
      * puts NULL before "". */
     "CREATE FUNCTION dlrd_event_gt(a_status text, a_occurred_ms bigint, a_error_code text,"
     " a_raw_status text, b_status text, b_occurred_ms bigint, b_error_code text,"
     " b_raw_status text) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$"
     " SELECT (dlrd_status_rank(a_status), a_occurred_ms, a_error_code IS NOT NULL,"
     "  coalesce(a_error_code, '') COLLATE \"C\", a_raw_status IS NOT NULL,"
     "  coalesce(a_raw_status, '') COLLATE \"C\")"
     "  > (dlrd_status_rank(b_status), b_occurred_ms, b_error_code IS NOT NULL,"
     "  coalesce(b_error_code, '') COLLATE \"C\", b_raw_status IS NOT NULL,"
     "  coalesce(b_raw_status, '') COLLATE \"C\") $$;"
     /* One delivery status event: sqlite.c's apply_event() under a row lock.
      * Returns whether the event was new and how many review rows it added. */
     "CREATE FUNCTION dlrd_apply_status(p_provider text, p_message_id text,"
     " p_event_id text, p_dedup_key text, p_status text, p_raw_status text,"
     " p_error_code text, p_error_reason text, p_occurred_ms bigint,"
     " p_occurred_at timestamptz, p_is_final smallint, p_read smallint,"
     " p_recipient_hash text, p_country text, p_sender text, p_payload bytea,"
     " p_is_json boolean, p_now timestamptz, p_new_id uuid, p_review text,"
     " p_review_detail text, OUT is_new boolean, OUT reviews integer)"
     " LANGUAGE plpgsql AS $fn$\n"
     "DECLARE\n"
     "  m sms_messages%ROWTYPE;\n"
     "  v_event bigint;\n"
     "  v_changed boolean;\n"
     "  v_mask integer;\n"
     "  v_conflict boolean;\n"
     "  v_json jsonb;\n"
     "BEGIN\n"
     "  reviews := 0;\n"
     /* Find or create the summary row, and lock it: concurrent writers of
      * this message wait here until this transaction ends. */
     "  SELECT * INTO m FROM sms_messages\n"
     "   WHERE provider = p_provider AND provider_message_id = p_message_id\n"
     "   FOR NO KEY UPDATE;\n"
     "  IF NOT FOUND THEN\n"
     "    INSERT INTO sms_messages (id, provider, provider_message_id, recipient_hash,\n"
     "      destination_country, sender_identity, origin, current_status, created_at,\n"
     "      updated_at)\n"
     "    VALUES (p_new_id, p_provider, p_message_id, p_recipient_hash, p_country,\n"
     "      p_sender, 'callback', 'accepted', p_now, p_now)\n"
     "    ON CONFLICT (provider, provider_message_id) DO NOTHING\n"
     "    RETURNING * INTO m;\n"
     "    IF NOT FOUND THEN\n"
     /* another node created it meanwhile (and has committed: ON CONFLICT
      * waited for it) */
     "      SELECT * INTO STRICT m FROM sms_messages\n"
     "       WHERE provider = p_provider AND provider_message_id = p_message_id\n"
     "       FOR NO KEY UPDATE;\n"
     "    END IF;\n"
     "  END IF;\n"
     "  v_changed := m.status_mask = 0 OR dlrd_event_gt(p_status, p_occurred_ms,\n"
     "    p_error_code, p_raw_status, m.current_status, m.current_occurred_ms,\n"
     "    m.current_error_code, m.current_raw_status);\n"
     "  IF p_is_json THEN\n"
     "    v_json := convert_from(p_payload, 'UTF8')::jsonb;\n"
     "  END IF;\n"
     "  INSERT INTO sms_message_events (message_id, provider, provider_message_id,\n"
     "    provider_event_id, dedup_key, status, raw_status, error_code, error_reason,\n"
     "    is_final, read_receipt, changed_summary, provider_occurred_at, raw_payload,\n"
     "    payload_json, received_at)\n"
     "  VALUES (m.id, p_provider, p_message_id, p_event_id, p_dedup_key, p_status,\n"
     "    p_raw_status, p_error_code, p_error_reason, p_is_final, p_read,\n"
     "    v_changed::integer, p_occurred_at, p_payload, v_json, p_now)\n"
     "  ON CONFLICT (provider, dedup_key) DO NOTHING\n"
     "  RETURNING id INTO v_event;\n"
     "  is_new := FOUND;\n"
     "  IF is_new THEN\n"
     "    v_mask := m.status_mask | dlrd_status_bit(p_status);\n"
     "    v_conflict := dlrd_mask_conflict(v_mask);\n"
     /* status_fold(): the winner's fields when this event wins, the union of
      * statuses, the read flag.  Receipt times: first_callback_at and
      * final_at take the earliest, updated_at the latest, so that clocks of
      * several nodes cannot move them back and forth. */
     "    UPDATE sms_messages SET\n"
     "      current_status = CASE WHEN v_changed THEN p_status ELSE current_status END,\n"
     "      current_raw_status = CASE WHEN v_changed THEN p_raw_status\n"
     "        ELSE current_raw_status END,\n"
     "      current_error_code = CASE WHEN v_changed THEN p_error_code\n"
     "        ELSE current_error_code END,\n"
     "      current_occurred_at = CASE WHEN v_changed THEN p_occurred_at\n"
     "        ELSE current_occurred_at END,\n"
     "      current_occurred_ms = CASE WHEN v_changed THEN p_occurred_ms\n"
     "        ELSE current_occurred_ms END,\n"
     "      current_error_reason = CASE WHEN v_changed THEN p_error_reason\n"
     "        ELSE current_error_reason END,\n"
     "      is_final = CASE WHEN v_changed THEN p_is_final ELSE is_final END,\n"
     "      status_mask = v_mask,\n"
     "      final_conflict = v_conflict::integer,\n"
     "      read_receipt = greatest(read_receipt, p_read),\n"
     "      event_count = event_count + 1,\n"
     "      callback_count = callback_count + 1,\n"
     "      first_callback_at = least(first_callback_at, p_now),\n"
     "      final_at = CASE WHEN p_is_final <> 0 THEN least(final_at, p_now)\n"
     "        ELSE final_at END,\n"
     "      recipient_hash = coalesce(recipient_hash, p_recipient_hash),\n"
     "      destination_country = coalesce(destination_country, p_country),\n"
     "      sender_identity = coalesce(sender_identity, p_sender),\n"
     "      updated_at = greatest(updated_at, p_now)\n"
     "    WHERE id = m.id;\n"
     "    IF p_review IS NOT NULL THEN\n"
     "      INSERT INTO review_queue (created_at, provider, reason, detail, message_id,\n"
     "        event_id, raw_status, raw_payload, payload_json)\n"
     "      VALUES (p_now, p_provider, p_review, p_review_detail, m.id, v_event,\n"
     "        p_raw_status, p_payload, v_json);\n"
     "      reviews := reviews + 1;\n"
     "    END IF;\n"
     /* Only the transaction that makes the conflict appear adds the row: the
      * row lock makes that exactly one. */
     "    IF v_conflict AND NOT dlrd_mask_conflict(m.status_mask) THEN\n"
     "      INSERT INTO review_queue (created_at, provider, reason, detail, message_id,\n"
     "        event_id, raw_status, raw_payload, payload_json)\n"
     "      VALUES (p_now, p_provider, 'final_conflict',\n"
     "        'two different definitive final states', m.id, v_event, p_raw_status,\n"
     "        p_payload, v_json);\n"
     "      reviews := reviews + 1;\n"
     "    END IF;\n"
     "  ELSE\n"
     "    UPDATE sms_messages SET callback_count = callback_count + 1,\n"
     "      duplicate_count = duplicate_count + 1, updated_at = greatest(updated_at, p_now)\n"
     "    WHERE id = m.id;\n"
     "    SELECT id INTO STRICT v_event FROM sms_message_events\n"
     "     WHERE provider = p_provider AND dedup_key = p_dedup_key;\n"
     "  END IF;\n"
     "  INSERT INTO sms_callback_log (received_at, provider, event_id, duplicate)\n"
     "  VALUES (p_now, p_provider, v_event, (NOT is_new)::integer);\n"
     "END\n"
     "$fn$;"
     /* One inbound message: sqlite.c's apply_inbound().  p_action is NULL
      * unless the body is an opt-out or opt-in keyword from a known user. */
     "CREATE FUNCTION dlrd_apply_inbound(p_provider text, p_message_id text,"
     " p_dedup_key text, p_sender_hash text, p_country text, p_to text, p_body text,"
     " p_keyword text, p_occurred_at timestamptz, p_payload bytea, p_is_json boolean,"
     " p_now timestamptz, p_action text, p_opted_out smallint, p_word text,"
     " OUT is_new boolean, OUT reviews integer)"
     " LANGUAGE plpgsql AS $fn$\n"
     "DECLARE\n"
     "  v_id bigint;\n"
     "  v_json jsonb;\n"
     "  v_effective timestamptz := coalesce(p_occurred_at, p_now);\n"
     "BEGIN\n"
     "  reviews := 0;\n"
     "  IF p_is_json THEN\n"
     "    v_json := convert_from(p_payload, 'UTF8')::jsonb;\n"
     "  END IF;\n"
     "  INSERT INTO sms_inbound_messages (provider, provider_message_id, dedup_key,\n"
     "    sender_hash, sender_country, to_identity, body, keyword, provider_occurred_at,\n"
     "    raw_payload, payload_json, received_at)\n"
     "  VALUES (p_provider, p_message_id, p_dedup_key, p_sender_hash, p_country, p_to,\n"
     "    p_body, p_keyword, p_occurred_at, p_payload, v_json, p_now)\n"
     "  ON CONFLICT (provider, dedup_key) DO NOTHING\n"
     "  RETURNING id INTO v_id;\n"
     "  is_new := FOUND;\n"
     "  IF NOT is_new THEN\n"
     "    UPDATE sms_inbound_messages SET retry_count = retry_count + 1\n"
     "    WHERE provider = p_provider AND dedup_key = p_dedup_key;\n"
     "    RETURN;\n"
     "  END IF;\n"
     "  IF p_action IS NULL THEN\n"
     "    RETURN;\n"
     "  END IF;\n"
     "  INSERT INTO sms_opt_out_history (recipient_hash, sender_identity, action,\n"
     "    keyword, inbound_id, effective_at, received_at)\n"
     "  VALUES (p_sender_hash, coalesce(p_to, ''), p_action, p_word, v_id, v_effective,\n"
     "    p_now);\n"
     /* The latest action by effective time wins, whatever the arrival order. */
     "  INSERT INTO sms_opt_outs (recipient_hash, sender_identity, opted_out, keyword,\n"
     "    inbound_id, effective_at, updated_at)\n"
     "  VALUES (p_sender_hash, coalesce(p_to, ''), p_opted_out, p_word, v_id,\n"
     "    v_effective, p_now)\n"
     "  ON CONFLICT (recipient_hash, sender_identity) DO UPDATE SET\n"
     "    opted_out = excluded.opted_out, keyword = excluded.keyword,\n"
     "    inbound_id = excluded.inbound_id, effective_at = excluded.effective_at,\n"
     "    updated_at = excluded.updated_at\n"
     "  WHERE excluded.effective_at >= sms_opt_outs.effective_at;\n"
     "END\n"
     "$fn$;"},
};

/* The prepared statements of every connection. */
enum { S_STATUS, S_INBOUND, S_UNUSABLE, S__COUNT };

static const struct {
	const char *name;
	const char *sql;
	int nparams;
	Oid types[21];
} stmts[S__COUNT] = {
    [S_STATUS] = {"dlrd_status",
                  "SELECT is_new, reviews FROM dlrd_apply_status($1, $2, $3, $4, $5, $6, $7,"
                  " $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
                  21,
                  {OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT,        OID_TEXT, OID_TEXT,
                   OID_TEXT, OID_TEXT, OID_INT8, OID_TIMESTAMPTZ, OID_INT2, OID_INT2,
                   OID_TEXT, OID_TEXT, OID_TEXT, OID_BYTEA,       OID_BOOL, OID_TIMESTAMPTZ,
                   OID_UUID, OID_TEXT, OID_TEXT}},
    [S_INBOUND] = {"dlrd_inbound",
                   "SELECT is_new, reviews FROM dlrd_apply_inbound($1, $2, $3, $4, $5, $6,"
                   " $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                   15,
                   {OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT,
                    OID_TIMESTAMPTZ, OID_BYTEA, OID_BOOL, OID_TIMESTAMPTZ, OID_TEXT, OID_INT2,
                    OID_TEXT}},
    [S_UNUSABLE] = {"dlrd_unusable",
                    "INSERT INTO review_queue (created_at, provider, reason, detail, raw_status,"
                    " raw_payload, payload_json) VALUES ($1, $2, $3, $4, $5, $6,"
                    " CASE WHEN $7 THEN convert_from($6, 'UTF8')::jsonb END)",
                    7,
                    {OID_TIMESTAMPTZ, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_BYTEA, OID_BOOL}},
};

/* One event of a batch, in the order it is applied. */
struct ev_ref {
	struct commit_item *it;
	const struct dlr_event *ev;
	size_t order; /* position in the batch as queued: keeps the sort stable */
	int cls;      /* 0 status, 1 inbound, 2 unusable */
	bool json;    /* the request's payload is JSON (decided once per request) */
	/* outcome of the current attempt */
	bool is_new;
	uint32_t reviews;
};

/* Owned by the writer thread (opened by the main thread before it starts). */
struct pg_be {
	PGconn *conn;        /* NULL while disconnected */
	const char *kw[16];  /* connection keywords (static strings) */
	const char *val[16]; /* their values; val[dbname] is url */
	char *url;           /* a secret: wiped before it is freed */
	char where[256];     /* "host=... port=... dbname=... user=..." for logs */
	enum sync_mode sync;
	int64_t last_attempt_ms; /* last failed connection attempt */
	bool lost;               /* a connection was lost and not yet re-established */
	struct ev_ref *refs;     /* scratch, grown as needed */
	size_t refs_cap;
	uint64_t rng;
};

/* What went wrong in one attempt, for the retry decision. */
struct pg_fail {
	char sqlstate[6];
	bool broken; /* the connection is unusable: drop it */
};

static bool pg_accepts(const char *url)
{
	return strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0 ||
	       strncmp(url, "host=", 5) == 0 || strncmp(url, "dbname=", 7) == 0;
}

/* Copies text from the server into err after prefix, with quotes, control
 * and non-ASCII bytes replaced: err ends up in a logfmt value. */
static void set_err(char *err, size_t errlen, const char *prefix, const char *msg)
{
	size_t n;

	if (!errlen)
		return;
	n = util_fmt(err, errlen, "postgresql: %s: ", prefix);
	for (const char *p = msg ? msg : "(no message)"; *p && n + 1 < errlen; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '\n' && p[1] == '\0')
			break;
		err[n++] = c == '"' ? '\'' : (c < 0x20 || c >= 0x7f) ? ' ' : (char)c;
	}
	err[n < errlen ? n : errlen - 1] = '\0';
}

static void drop_conn(struct pg_be *be, const char *why)
{
	if (!be->conn)
		return;
	PQfinish(be->conn);
	be->conn = NULL;
	if (!be->lost)
		LOG_W("storage_disconnected", "backend=postgresql %s reason=\"%s\"", be->where,
		      why);
	be->lost = true;
}

/* Waits until the connection's socket is readable, or writable too when
 * want_write.  Returns 0, or -1 on timeout or error. */
static int sock_wait(PGconn *c, bool want_write, int64_t deadline_ms)
{
	struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
	int64_t left = deadline_ms - util_now_ms();

	if (pfd.fd < 0 || left <= 0)
		return -1;
	if (want_write)
		pfd.events |= POLLOUT;
	for (;;) {
		int r = poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
		if (r > 0)
			return 0;
		left = deadline_ms - util_now_ms();
		if ((r < 0 && errno != EINTR) || left <= 0)
			return -1;
	}
}

/* Runs sql (one or more statements, simple protocol) and waits for every
 * result within timeout_ms.  Returns 0, or DLRD_EIO with err and f set. */
static int run_simple(struct pg_be *be, const char *label, const char *sql, int timeout_ms,
                      struct pg_fail *f, char *err, size_t errlen)
{
	PGconn *c = be->conn;
	int64_t deadline = util_now_ms() + timeout_ms;
	bool failed = false;
	int fl;

	memset(f, 0, sizeof(*f));
	if (!PQsendQuery(c, sql)) {
		set_err(err, errlen, "send", PQerrorMessage(c));
		f->broken = true;
		return DLRD_EIO;
	}
	while ((fl = PQflush(c)) == 1)
		if (sock_wait(c, true, deadline) != 0 || !PQconsumeInput(c))
			goto broken;
	if (fl < 0)
		goto broken;
	for (;;) {
		PGresult *r;
		if (!PQconsumeInput(c))
			goto broken;
		if (PQisBusy(c)) {
			if (sock_wait(c, false, deadline) != 0)
				goto broken;
			continue;
		}
		r = PQgetResult(c);
		if (!r)
			break;
		ExecStatusType st = PQresultStatus(r);
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && !failed) {
			const char *ss = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			util_strlcpy(f->sqlstate, ss ? ss : "", sizeof(f->sqlstate));
			set_err(err, errlen, label,
			        PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
			            ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
			            : PQerrorMessage(c));
			failed = true;
		}
		PQclear(r);
	}
	if (PQstatus(c) != CONNECTION_OK)
		goto broken;
	return failed ? DLRD_EIO : 0;
broken:
	if (!failed)
		set_err(err, errlen, "connection",
		        util_now_ms() >= deadline ? "timed out" : PQerrorMessage(c));
	f->broken = true;
	return DLRD_EIO;
}

/* Ends a transaction an error left open; drops the connection if that is
 * not possible. */
static void rollback_if_open(struct pg_be *be)
{
	struct pg_fail f;
	char err[128];

	if (!be->conn)
		return;
	PGTransactionStatusType ts = PQtransactionStatus(be->conn);
	if (ts == PQTRANS_IDLE)
		return;
	if (ts == PQTRANS_UNKNOWN || ts == PQTRANS_ACTIVE ||
	    run_simple(be, "ROLLBACK", "ROLLBACK", PG_SIMPLE_TIMEOUT_MS, &f, err, sizeof(err)) != 0)
		drop_conn(be, "rollback failed");
}

/* Blocking PQexec for start-up (migrations).  Returns 0 or DLRD_EIO. */
static int exec_startup(struct pg_be *be, const char *sql, ExecStatusType want, char *err,
                        size_t errlen, PGresult **out)
{
	PGresult *r = PQexec(be->conn, sql);

	if (PQresultStatus(r) != want) {
		const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		set_err(err, errlen, "migrations", m ? m : PQerrorMessage(be->conn));
		PQclear(r);
		return DLRD_EIO;
	}
	if (out)
		*out = r;
	else
		PQclear(r);
	return 0;
}

/*
 * Applies pending migrations, one transaction each, under the advisory lock.
 * Every node runs this at start; whichever gets the lock first applies a
 * migration, the others wait and then see it recorded.
 */
static int migrate(struct pg_be *be, char *err, size_t errlen)
{
	const int latest = migrations[ARRAY_LEN(migrations) - 1].version;
	int rc;

	for (;;) {
		PGresult *r = NULL;
		int current;
		size_t i;

		if ((rc = exec_startup(be,
		                       "BEGIN; SET LOCAL statement_timeout = 0;"
		                       " SELECT pg_advisory_xact_lock(" PG_MIGRATION_LOCK ");"
		                       " CREATE TABLE IF NOT EXISTS schema_migrations ("
		                       " version integer PRIMARY KEY, name text NOT NULL,"
		                       " applied_at timestamptz NOT NULL DEFAULT now())",
		                       PGRES_COMMAND_OK, err, errlen, NULL)) != 0)
			goto fail;
		if ((rc =
		         exec_startup(be, "SELECT coalesce(max(version), 0) FROM schema_migrations",
		                      PGRES_TUPLES_OK, err, errlen, &r)) != 0)
			goto fail;
		current = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
		PQclear(r);
		if (current > latest) {
			util_fmt(
			    err, errlen,
			    "postgresql: database schema version %d is newer than this dlrd (%d)",
			    current, latest);
			rc = DLRD_EIO;
			goto fail;
		}
		for (i = 0; i < ARRAY_LEN(migrations) && migrations[i].version <= current; i++)
			;
		if (i == ARRAY_LEN(migrations))
			return exec_startup(be, "COMMIT", PGRES_COMMAND_OK, err, errlen, NULL);

		char ver[16];
		const char *params[2] = {ver, migrations[i].name};
		util_fmt(ver, sizeof(ver), "%d", migrations[i].version);
		if ((rc = exec_startup(be, migrations[i].sql, PGRES_COMMAND_OK, err, errlen,
		                       NULL)) != 0)
			goto fail;
		r = PQexecParams(be->conn,
		                 "INSERT INTO schema_migrations (version, name)"
		                 " VALUES ($1::integer, $2)",
		                 2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			set_err(err, errlen, "migrations", PQerrorMessage(be->conn));
			PQclear(r);
			rc = DLRD_EIO;
			goto fail;
		}
		PQclear(r);
		if ((rc = exec_startup(be, "COMMIT", PGRES_COMMAND_OK, err, errlen, NULL)) != 0)
			goto fail;
		LOG_I("migration_applied", "backend=postgresql version=%d name=\"%s\"",
		      migrations[i].version, migrations[i].name);
	}
fail:
	PQclear(PQexec(be->conn, "ROLLBACK"));
	return rc;
}

/*
 * Per-session settings and prepared statements, after every (re)connection.
 * statement_timeout bounds one batch on the server; a node that dies in the
 * middle of a transaction loses its row locks after
 * idle_in_transaction_session_timeout.  storage.synchronous: full keeps the
 * server's synchronous_commit unless it is off (then on: a 2xx must survive a
 * crash of the database server); normal turns it off for this session.
 */
static int setup_session(struct pg_be *be, char *err, size_t errlen)
{
	struct pg_fail f;
	int rc;

	rc = run_simple(be, "session settings",
	                be->sync == SYNC_FULL
	                    ? "SET statement_timeout = '10s';"
	                      " SET idle_in_transaction_session_timeout = '30s';"
	                      " SELECT set_config('synchronous_commit', CASE WHEN"
	                      " current_setting('synchronous_commit') = 'off' THEN 'on' ELSE"
	                      " current_setting('synchronous_commit') END, false)"
	                    : "SET statement_timeout = '10s';"
	                      " SET idle_in_transaction_session_timeout = '30s';"
	                      " SET synchronous_commit = off",
	                PG_SIMPLE_TIMEOUT_MS, &f, err, errlen);
	if (rc)
		return rc;
	for (int i = 0; i < S__COUNT; i++) {
		PGresult *r = PQprepare(be->conn, stmts[i].name, stmts[i].sql, stmts[i].nparams,
		                        stmts[i].types);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			set_err(err, errlen, "preparing statements",
			        PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
			            ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
			            : PQerrorMessage(be->conn));
			PQclear(r);
			return DLRD_EIO;
		}
		PQclear(r);
	}
	return 0;
}

/* Server notices ("relation ... already exists, skipping") go to the debug
 * log instead of libpq's default, a bare line on stderr. */
static void on_notice(void *arg, const PGresult *r)
{
	const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	char q[256];

	(void)arg;
	if (m)
		LOG_D("storage_notice", "backend=postgresql message=%s",
		      log_quote(q, sizeof(q), m, strlen(m)));
}

/* Opens the connection (blocking, bounded by connect_timeout).  With
 * for_open, also checks the server and runs the migrations. */
static int do_connect(struct pg_be *be, bool for_open, char *err, size_t errlen)
{
	PGconn *c;
	const char *enc;

	c = PQconnectdbParams(be->kw, be->val, 1);
	if (!c) {
		util_fmt(err, errlen, "postgresql: out of memory");
		return DLRD_EIO;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		char what[300];
		util_fmt(what, sizeof(what), "cannot connect (%s)", be->where);
		set_err(err, errlen, what, PQerrorMessage(c));
		PQfinish(c);
		be->last_attempt_ms = util_now_ms();
		return DLRD_EIO;
	}
	be->conn = c;
	PQsetNoticeReceiver(c, on_notice, NULL);
	if (for_open) {
		if (PQserverVersion(c) < PG_MIN_SERVER) {
			util_fmt(err, errlen, "postgresql: server version %d is older than 12",
			         PQserverVersion(c));
			goto fail;
		}
		enc = PQparameterStatus(c, "server_encoding");
		if (!enc || strcmp(enc, "UTF8") != 0) {
			util_fmt(err, errlen,
			         "postgresql: the database's encoding must be UTF8 (it is %s)",
			         enc ? enc : "unknown");
			goto fail;
		}
		if (migrate(be, err, errlen) != 0)
			goto fail;
	}
	if (setup_session(be, err, errlen) != 0)
		goto fail;
	/* From here on libpq never blocks: every wait goes through poll() with
	 * a deadline. */
	if (PQsetnonblocking(c, 1) != 0) {
		set_err(err, errlen, "PQsetnonblocking", PQerrorMessage(c));
		goto fail;
	}
	if (be->lost)
		LOG_I("storage_reconnected", "backend=postgresql %s", be->where);
	be->lost = false;
	return 0;
fail:
	PQfinish(c);
	be->conn = NULL;
	be->last_attempt_ms = util_now_ms();
	return DLRD_EIO;
}

/* Makes sure there is a live connection before a batch or a probe.  A
 * connection that died while idle (the server restarted) is replaced at
 * once; after a failed attempt the next one waits PG_RECONNECT_INTERVAL_MS
 * unless force. */
static int ensure_conn(struct pg_be *be, bool force, char *err, size_t errlen)
{
	if (be->conn) {
		/* Picks up what arrived while idle, never blocking: a server that
		 * ended the session sends a FATAL message, then EOF (a second
		 * read). */
		struct pollfd pfd = {.fd = PQsocket(be->conn), .events = POLLIN};
		bool alive = pfd.fd >= 0;
		for (int i = 0; alive && i < 4 && poll(&pfd, 1, 0) > 0; i++)
			alive = PQconsumeInput(be->conn) && PQstatus(be->conn) == CONNECTION_OK;
		if (alive && PQtransactionStatus(be->conn) == PQTRANS_IDLE)
			return 0;
		drop_conn(be, "connection closed while idle");
	}
	if (!force && util_now_ms() - be->last_attempt_ms < PG_RECONNECT_INTERVAL_MS) {
		util_fmt(err, errlen, "postgresql: not connected (%s); retrying", be->where);
		return DLRD_EIO;
	}
	return do_connect(be, false, err, errlen);
}

static void pg_close(void *p)
{
	struct pg_be *be = p;

	if (!be)
		return;
	if (be->conn)
		PQfinish(be->conn);
	if (be->url) {
		explicit_bzero(be->url, strlen(be->url));
		free(be->url);
	}
	free(be->refs);
	free(be);
}

/* "host=... port=... dbname=... user=..." from the parsed URL, without the
 * password or any other option. */
static void describe(const char *url, char *out, size_t outlen)
{
	PQconninfoOption *opts = PQconninfoParse(url, NULL);
	const char *host = NULL, *hostaddr = NULL, *port = NULL, *db = NULL, *user = NULL;

	for (PQconninfoOption *o = opts; o && o->keyword; o++) {
		if (!o->val || !*o->val)
			continue;
		if (!strcmp(o->keyword, "host"))
			host = o->val;
		else if (!strcmp(o->keyword, "hostaddr"))
			hostaddr = o->val;
		else if (!strcmp(o->keyword, "port"))
			port = o->val;
		else if (!strcmp(o->keyword, "dbname"))
			db = o->val;
		else if (!strcmp(o->keyword, "user"))
			user = o->val;
	}
	util_fmt(out, outlen, "host=%s port=%s db=%s user=%s",
	         host       ? host
	         : hostaddr ? hostaddr
	                    : "(default)",
	         port ? port : "(default)", db ? db : "(default)", user ? user : "(default)");
	/* Values made of anything but plain characters are not worth the
	 * risk of a forged log line. */
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f || *p == '"')
			*p = '?';
	PQconninfoFree(opts);
}

static int pg_open(const struct config *cfg, void **out, char *err, size_t errlen)
{
	struct pg_be *be = xcalloc(1, sizeof(*be));
	PQconninfoOption *opts;
	size_t k = 0;
	int rc;

	be->url = xstrdup(cfg->storage_url);
	be->sync = cfg->synchronous;
	be->rng = (uint64_t)util_now_ms() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)be;
	/* libpq's message would quote the part it could not parse, which may
	 * be the password: say only that it failed. */
	opts = PQconninfoParse(be->url, NULL);
	if (!opts) {
		util_fmt(err, errlen,
		         "config: storage.url: libpq cannot parse this connection string"
		         " (see libpq's \"Connection Strings\")");
		rc = DLRD_ECONFIG;
		goto out;
	}
	PQconninfoFree(opts);
	describe(be->url, be->where, sizeof(be->where));

	/* Our defaults come first; the URL (expanded from "dbname", last) may
	 * override any of them. */
	be->kw[k] = "connect_timeout", be->val[k++] = PG_CONNECT_TIMEOUT;
	be->kw[k] = "application_name", be->val[k++] = "dlrd";
	be->kw[k] = "client_encoding", be->val[k++] = "UTF8";
	be->kw[k] = "keepalives", be->val[k++] = "1";
	be->kw[k] = "keepalives_idle", be->val[k++] = "10";
	be->kw[k] = "keepalives_interval", be->val[k++] = "5";
	be->kw[k] = "keepalives_count", be->val[k++] = "3";
	be->kw[k] = "tcp_user_timeout", be->val[k++] = "20000";
	be->kw[k] = "target_session_attrs", be->val[k++] = "read-write";
	be->kw[k] = "dbname", be->val[k++] = be->url;
	be->kw[k] = NULL, be->val[k] = NULL;

	if ((rc = do_connect(be, true, err, errlen)) != 0)
		goto out;
	LOG_I("storage_open", "backend=postgresql %s server=%d synchronous=%s", be->where,
	      PQserverVersion(be->conn), cfg->synchronous == SYNC_FULL ? "full" : "normal");
	*out = be;
	return 0;
out:
	pg_close(be);
	return rc;
}

/* ---- the batch ---- */

static int cls_of(const struct dlr_event *ev)
{
	return ev->kind == EV_STATUS ? 0 : ev->kind == EV_INBOUND ? 1 : 2;
}

static int cmp_str(const char *a, const char *b)
{
	if (!a || !b)
		return (a != NULL) - (b != NULL);
	return strcmp(a, b);
}

/* The order events are applied in: status events by (provider, message id),
 * the lock order of their summary rows; inbound messages by user and sender,
 * the lock order of opt-out rows; then arrival order. */
static int ref_cmp(const void *pa, const void *pb)
{
	const struct ev_ref *a = pa, *b = pb;
	int c;

	if (a->cls != b->cls)
		return a->cls - b->cls;
	if ((c = cmp_str(a->ev->provider, b->ev->provider)) != 0)
		return c;
	if (a->cls == 0 &&
	    (c = cmp_str(a->ev->provider_message_id, b->ev->provider_message_id)) != 0)
		return c;
	if (a->cls == 1) {
		if ((c = cmp_str(a->ev->recipient_hash, b->ev->recipient_hash)) != 0 ||
		    (c = cmp_str(a->ev->sender_identity, b->ev->sender_identity)) != 0 ||
		    (c = strcmp(a->ev->dedup_key, b->ev->dedup_key)) != 0)
			return c;
	}
	return a->order < b->order ? -1 : a->order > b->order;
}

/* True when the payload is one JSON document that jsonb will take too. */
static bool payload_is_json(struct iov p)
{
	size_t i = 0;
	json_t *j;

	while (i < p.n && (p.p[i] == ' ' || p.p[i] == '\t' || p.p[i] == '\r' || p.p[i] == '\n'))
		i++;
	if (i == p.n || (p.p[i] != '{' && p.p[i] != '['))
		return false;
	j = json_loadb(p.p, p.n, 0, NULL);
	if (!j)
		return false;
	json_decref(j);
	return true;
}

/* Latest time timestamptz takes from util_rfc3339 (year 9999). */
#define MAX_RFC3339_MS 253402300799999LL

/* Queues one event's statement into the pipeline. */
static int send_event(struct pg_be *be, const struct ev_ref *r, bool use_json)
{
	const struct dlr_event *ev = r->ev;
	const struct commit_item *it = r->it;
	char now[25], occurred[25], occ_ms[24], uuid[37], word[32];
	const char *v[21];
	int len[21] = {0}, fmt[21] = {0};
	const char *payload = it->raw_payload.p ? it->raw_payload.p : "";
	bool json = use_json && r->json;
	bool has_occ = ev->occurred_ms >= 0 && ev->occurred_ms <= MAX_RFC3339_MS;

	util_rfc3339(it->received_ms, now);
	if (has_occ)
		util_rfc3339(ev->occurred_ms, occurred);
	switch (r->cls) {
	case 0:
		util_fmt(occ_ms, sizeof(occ_ms), "%lld", (long long)ev->occurred_ms);
		util_uuid7(uuid);
		v[0] = ev->provider;
		v[1] = ev->provider_message_id;
		v[2] = ev->provider_event_id;
		v[3] = ev->dedup_key;
		v[4] = status_name(ev->status);
		v[5] = ev->raw_status;
		v[6] = ev->error_code;
		v[7] = errcat_name(ev->error_reason);
		v[8] = occ_ms;
		v[9] = has_occ ? occurred : NULL;
		v[10] = status_is_final(ev->status) ? "1" : "0";
		v[11] = ev->read ? "1" : "0";
		v[12] = ev->recipient_hash;
		v[13] = ev->destination_country;
		v[14] = ev->sender_identity;
		v[15] = payload;
		len[15] = (int)it->raw_payload.n;
		fmt[15] = 1;
		v[16] = json ? "t" : "f";
		v[17] = now;
		v[18] = uuid;
		v[19] = ev->review != REVIEW_NONE ? review_reason_name(ev->review) : NULL;
		v[20] = ev->review != REVIEW_NONE ? ev->review_detail : NULL;
		return PQsendQueryPrepared(be->conn, stmts[S_STATUS].name, 21, v, len, fmt, 0);
	case 1: {
		bool action =
		    (ev->keyword == KW_OPT_OUT || ev->keyword == KW_OPT_IN) && ev->recipient_hash;
		size_t wl = 0;
		/* The keyword as the user wrote it, blanks removed, upper-cased
		 * (sqlite.c does the same). */
		for (size_t i = 0; action && i < ev->text_len && wl + 1 < sizeof(word); i++) {
			char c = ev->text[i];
			if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
				continue;
			word[wl++] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
		}
		word[wl] = '\0';
		v[0] = ev->provider;
		v[1] = ev->provider_message_id;
		v[2] = ev->dedup_key;
		v[3] = ev->recipient_hash;
		v[4] = ev->destination_country;
		v[5] = ev->sender_identity;
		v[6] = ev->text;
		v[7] = optout_kind_name(ev->keyword);
		v[8] = has_occ ? occurred : NULL;
		v[9] = payload;
		len[9] = (int)it->raw_payload.n;
		fmt[9] = 1;
		v[10] = json ? "t" : "f";
		v[11] = now;
		v[12] = action ? optout_kind_name(ev->keyword) : NULL;
		v[13] = ev->keyword == KW_OPT_OUT ? "1" : "0";
		v[14] = action ? word : NULL;
		return PQsendQueryPrepared(be->conn, stmts[S_INBOUND].name, 15, v, len, fmt, 0);
	}
	default:
		v[0] = now;
		v[1] = ev->provider;
		v[2] = review_reason_name(REVIEW_UNUSABLE);
		v[3] = ev->review_detail;
		v[4] = ev->raw_status;
		v[5] = payload;
		len[5] = (int)it->raw_payload.n;
		fmt[5] = 1;
		v[6] = json ? "t" : "f";
		return PQsendQueryPrepared(be->conn, stmts[S_UNUSABLE].name, 7, v, len, fmt, 0);
	}
}

/* Reads the outcome of one event's statement into r. */
static bool read_outcome(struct ev_ref *r, const PGresult *res)
{
	if (r->cls == 2) {
		r->is_new = false;
		r->reviews = 1;
		return PQresultStatus(res) == PGRES_COMMAND_OK;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 2)
		return false;
	r->is_new = PQgetvalue(res, 0, 0)[0] == 't';
	r->reviews = (uint32_t)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
	return true;
}

/*
 * One attempt at the batch: BEGIN, every event, COMMIT and a Sync go out in
 * one pipeline; then every result is read.  Returns 0 once the COMMIT's
 * result said COMMIT, else DLRD_EIO with f and err set.  Leaves the
 * connection outside pipeline mode and outside a transaction, or drops it.
 */
static int run_batch(struct pg_be *be, size_t n, bool use_json, struct pg_fail *f, char *err,
                     size_t errlen)
{
	PGconn *c = be->conn;
	int64_t deadline = util_now_ms() + PG_BATCH_TIMEOUT_MS;
	size_t nq = n + 2, got = 0;
	bool committed = false, failed = false, synced = false;
	int fl;

	memset(f, 0, sizeof(*f));
	if (!PQenterPipelineMode(c)) {
		set_err(err, errlen, "pipeline", PQerrorMessage(c));
		f->broken = true;
		goto out;
	}
	if (!PQsendQueryParams(c, "BEGIN ISOLATION LEVEL READ COMMITTED", 0, NULL, NULL, NULL, NULL,
	                       0))
		goto send_failed;
	for (size_t i = 0; i < n; i++)
		if (!send_event(be, &be->refs[i], use_json))
			goto send_failed;
	if (!PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) || !PQpipelineSync(c))
		goto send_failed;

	/* Send and receive together: the server may answer the first events
	 * while the last ones are still on their way. */
	while (!synced) {
		bool idle = false;
		if ((fl = PQflush(c)) < 0 || !PQconsumeInput(c))
			goto broken;
		while (!synced && !PQisBusy(c)) {
			PGresult *r = PQgetResult(c);
			if (!r) {
				/* end of one statement's results; twice in a row:
				 * nothing more has arrived yet */
				if (idle)
					break;
				idle = true;
				continue;
			}
			idle = false;
			ExecStatusType st = PQresultStatus(r);
			if (st == PGRES_PIPELINE_SYNC) {
				synced = true;
			} else if (st == PGRES_PIPELINE_ABORTED) {
				got++;
			} else if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR) {
				if (!failed) {
					const char *ss = PQresultErrorField(r, PG_DIAG_SQLSTATE);
					const char *m =
					    PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
					util_strlcpy(f->sqlstate, ss ? ss : "",
					             sizeof(f->sqlstate));
					set_err(err, errlen,
					        got == 0        ? "BEGIN"
					        : got + 1 == nq ? "COMMIT"
					                        : "batch",
					        m ? m : PQerrorMessage(c));
					failed = true;
				}
				got++;
			} else if (got == 0) {
				failed |= st != PGRES_COMMAND_OK;
				got++;
			} else if (got + 1 == nq) {
				committed =
				    st == PGRES_COMMAND_OK && !strcmp(PQcmdStatus(r), "COMMIT");
				got++;
			} else if (got < nq) {
				if (!read_outcome(&be->refs[got - 1], r) && !failed) {
					set_err(err, errlen, "batch", "unexpected result");
					failed = true;
				}
				got++;
			}
			PQclear(r);
		}
		if (synced)
			break;
		if (sock_wait(c, fl == 1, deadline) != 0)
			goto broken;
	}
	if (!PQexitPipelineMode(c)) {
		set_err(err, errlen, "pipeline", PQerrorMessage(c));
		f->broken = true;
		goto out;
	}
	if (committed && !failed && got == nq)
		return 0;
	if (!failed)
		set_err(err, errlen, "COMMIT", "the transaction did not commit");
	rollback_if_open(be);
	return DLRD_EIO;

send_failed:
	set_err(err, errlen, "send", PQerrorMessage(c));
	f->broken = true;
	goto out;
broken:
	set_err(err, errlen, "connection lost during the batch",
	        util_now_ms() >= deadline ? "timed out" : PQerrorMessage(c));
	f->broken = true;
out:
	drop_conn(be, f->broken ? "connection lost during a batch" : "pipeline error");
	return DLRD_EIO;
}

static bool retryable(const struct pg_fail *f)
{
	return !f->broken && (!strcmp(f->sqlstate, "40P01") || !strcmp(f->sqlstate, "40001"));
}

/* Errors after which the connection itself is suspect: connection
 * exceptions, the server shutting down, a read-only (standby) server, out of
 * resources, internal errors. */
static bool drop_after(const struct pg_fail *f)
{
	const char *s = f->sqlstate;
	return f->broken || !*s || !strncmp(s, "08", 2) || !strncmp(s, "57", 2) ||
	       !strcmp(s, "25006") || !strncmp(s, "53", 2) || !strncmp(s, "58", 2) ||
	       !strncmp(s, "XX", 2);
}

static void backoff(struct pg_be *be, int attempt)
{
	uint64_t x = be->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	be->rng = x;
	long ms = 5L << attempt;
	ms += (long)(x % (uint64_t)ms);
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static int pg_apply(void *p, struct commit_item **items, size_t n, char *err, size_t errlen)
{
	struct pg_be *be = p;
	size_t nev = 0, k = 0;
	bool use_json = true;
	struct pg_fail f;
	int rc;

	for (size_t i = 0; i < n; i++)
		nev += items[i]->n_events;
	if (nev > be->refs_cap) {
		free(be->refs);
		be->refs_cap = nev < 64 ? 64 : nev;
		be->refs = xcalloc(be->refs_cap, sizeof(*be->refs));
	}
	for (size_t i = 0; i < n; i++) {
		bool json = items[i]->n_events && payload_is_json(items[i]->raw_payload);
		for (size_t e = 0; e < items[i]->n_events; e++, k++) {
			be->refs[k] = (struct ev_ref){.it = items[i],
			                              .ev = &items[i]->events[e],
			                              .order = k,
			                              .cls = cls_of(&items[i]->events[e]),
			                              .json = json};
		}
	}
	if (nev > 1)
		qsort(be->refs, nev, sizeof(*be->refs), ref_cmp);

	for (int attempt = 0;; attempt++) {
		if ((rc = ensure_conn(be, false, err, errlen)) != 0)
			return rc;
		if (run_batch(be, nev, use_json, &f, err, errlen) == 0)
			break;
		if (drop_after(&f))
			drop_conn(be, "error in a batch");
		if (attempt + 1 < PG_MAX_ATTEMPTS && retryable(&f)) {
			LOG_W("storage_retry",
			      "backend=postgresql sqlstate=%s attempt=%d events=%zu", f.sqlstate,
			      attempt + 1, nev);
			backoff(be, attempt);
			continue;
		}
		/* A payload jansson took as JSON but jsonb refused: once more,
		 * without payload_json, rather than refuse the batch forever. */
		if (use_json && !strncmp(f.sqlstate, "22", 2)) {
			use_json = false;
			continue;
		}
		return DLRD_EIO;
	}

	for (size_t i = 0; i < n; i++)
		items[i]->n_new = items[i]->n_dup = items[i]->n_review = 0;
	for (size_t i = 0; i < nev; i++) {
		struct ev_ref *r = &be->refs[i];
		if (r->cls != 2) {
			if (r->is_new)
				r->it->n_new++;
			else
				r->it->n_dup++;
		}
		r->it->n_review += r->reviews;
	}
	return 0;
}

/* A real write: a transaction that gets a transaction id (so its COMMIT is
 * written and flushed like a batch's), which also fails on a read-only
 * standby.  Reconnects first when needed. */
static int pg_probe(void *p, char *err, size_t errlen)
{
	struct pg_be *be = p;
	struct pg_fail f;
	int rc;

	if ((rc = ensure_conn(be, true, err, errlen)) != 0)
		return rc;
	rc = run_simple(be, "probe", "BEGIN; SELECT txid_current(); COMMIT", PG_SIMPLE_TIMEOUT_MS,
	                &f, err, errlen);
	if (rc) {
		if (drop_after(&f))
			drop_conn(be, "probe failed");
		else
			rollback_if_open(be);
	}
	return rc;
}

const struct store_ops store__pg_ops = {
    .name = "postgresql",
    .accepts = pg_accepts,
    .open = pg_open,
    .close = pg_close,
    .apply = pg_apply,
    .probe = pg_probe,
};
