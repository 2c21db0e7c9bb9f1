/* SPDX-License-Identifier: MIT */
/*
 * PostgreSQL backend: several dlrd nodes on one database.
 *
 * Each node has one writer connection, owned by the writer thread (opened by
 * the main thread before the writer starts).  A batch is one transaction and,
 * in the normal case, one network round trip: libpq pipeline mode sends
 * BEGIN, one call of a server-side function per event (dlrd_apply_status3,
 * dlrd_apply_inbound2, or an INSERT for an unusable payload), the payload
 * row of each request of several events (S_PAYLOAD), COMMIT and a Sync in
 * one write, then reads every answer.  The commit queue answers 2xx
 * only after the COMMIT's own result came back; a lost connection or an
 * error anywhere rolls the whole batch back (nothing of it is visible) and
 * the batch is answered 503.
 *
 * Concurrency between nodes.  The functions (migrations 2 and 3 below) lock
 * the message's summary row (SELECT ... FOR NO KEY UPDATE, READ COMMITTED)
 * before they insert the event, so two nodes that apply events of the same
 * message at the same time serialize on that row: the second reads the
 * summary the first committed and folds into it.  The fold (dlrd_event_gt
 * and friends) is status_event_cmp / status_fold / status_mask_conflict of
 * ../status.c, rewritten in SQL; tests/unit/test_store_pg.c checks the two
 * agree on every status and on hand-picked and random keys.  Since the fold
 * is commutative and idempotent, the summary depends only on the set of
 * committed events.  Deduplication is the unique constraint (message_id,
 * dedup_key) with INSERT ... ON CONFLICT DO NOTHING: the second of two
 * concurrent inserts of one event waits for the first transaction and then
 * does nothing.  Events are applied in (provider, message id) order so that
 * two batches take their row locks in the same order; a deadlock (40P01) or
 * serialization failure (40001) that still happens is retried, whole batch,
 * a few times with a short randomized backoff.
 *
 * The JSON API's writes (CI_API items, postgresql_api.c) run in the same
 * batch transaction, in queue order relative to the callbacks around them
 * (the callbacks between two API items are sorted as above).  Each is one
 * server-side function or statement that changes nothing when its outcome
 * is a refusal (not found, key reused, opted out ...), so no savepoint is
 * needed; its concurrency rules are at the functions (migration 3).  Two of
 * them need the writer between two statements: a recorded send (render the
 * answer, then store it with the idempotency key) and a reveal (decrypt,
 * then write the audit row).  A batch holding one of those takes a second
 * round trip before its COMMIT, shared by all of them; everything else,
 * callbacks included, stays in the pipeline.
 *
 * Connection loss.  libpq runs non-blocking here and every wait has a
 * deadline, so a database that vanishes cannot hang the writer.  A batch that
 * finds the connection dead before sending anything reconnects first; one
 * that loses it midway fails (503; the provider retries and dedup absorbs a
 * batch that did commit before the answer was lost).  While the database is
 * unreachable, batches fail fast (one connection attempt per second at most)
 * and store_probe() reconnects and runs a real write transaction, which is
 * what turns /healthz back to 200.  The API's reads have connections of
 * their own (a pool, postgresql_api.c), never the writer's.
 *
 * Secrets: the storage URL may hold a password.  Only host, port, database
 * and user are ever logged; libpq's parse errors (which may quote parts of
 * the string) are not passed on.
 *
 * Schema and migrations: see src/store/README.md and docs/postgresql.md.
 */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "commitq.h"
#include "errcat.h"
#include "log.h"
#include "metrics.h"
#include "optout.h"
#include "postgresql_int.h"
#include "privacy.h"
#include "provider.h"
#include "status.h"
#include "store_int.h"

#define PG_CONNECT_TIMEOUT   "5"    /* seconds, unless the URL says otherwise */
#define PG_BATCH_TIMEOUT_MS  15000  /* one attempt of one batch, client side */
#define PG_SIMPLE_TIMEOUT_MS 5000   /* probe, ROLLBACK */
#define PG_MAX_ATTEMPTS      5      /* of one batch, on deadlock/serialization */
#define PG_MIN_SERVER        120000 /* PostgreSQL 12 */
/* "dlrdmigr": the advisory lock every node takes to run migrations. */
#define PG_MIGRATION_LOCK "7236833635580488050"

/*
 * Versioned migrations, applied in order at start-up.  Each runs in its own
 * transaction that first takes a transaction-level advisory lock, so nodes
 * that start at the same time apply each migration exactly once: the others
 * wait for the lock, then find the version already recorded.  Never edit
 * one that has shipped: add the next (CREATE OR REPLACE FUNCTION for a
 * changed function, with a new name if its signature changes, so that nodes
 * still running the old binary keep working during a rolling upgrade).  A
 * migration is SQL, a step in C (a data migration SQL cannot express, run
 * in the same transaction), or both.  Version numbers may have gaps (a
 * number reserved by a change still in flight): every migration not yet
 * recorded is applied, in version order, so a gap filled by a later binary
 * is applied then, after higher ones; such neighbours are written so that
 * their order does not matter.
 *
 * Tables and columns mean what they mean in sqlite.c (migrations 1 to 3
 * there); the types are PostgreSQL's: uuid ids, timestamptz times, bytea raw
 * payloads kept byte for byte, plus payload_json, a jsonb copy of the payload
 * when it is JSON (NULL otherwise).  Payloads arrive sealed (pii.h: http.c
 * seals them before they are queued), and a sealed payload is never JSON, so
 * payload_json stays NULL for them; it is kept for rows of older versions.  Flags are smallint 0/1
 * as in SQLite, so queries against either backend read the same.
 */
struct pg_be;
static int migrate_privacy_ids(struct pg_be *be, char *err, size_t errlen);

static const struct {
	int version;
	const char *name;
	const char *sql;                                        /* NULL: none */
	int (*run)(struct pg_be *be, char *err, size_t errlen); /* C step; NULL: none */
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
     " sender_identity, effective_at);",
     NULL},
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
     "$fn$;",
     NULL},
    {3, "send records, masked and encrypted numbers, idempotency, audit log",
     /* SQLite's migration 3: the send side of a message (origin gains
      * 'joined'), the masked number and where the country came from, the
      * API's idempotency keys and its audit log. */
     "ALTER TABLE sms_messages ADD COLUMN action_type text, ADD COLUMN action_id text,"
     " ADD COLUMN metadata text," /* JSON object text, kept as the app sent it */
     " ADD COLUMN recipient_timezone text,"
     " ADD COLUMN recipient_enc bytea," /* AES-256-GCM nonce|ct|tag */
     " ADD COLUMN recipient_key_id text,"
     " ADD COLUMN recipient_masked text," /* +44*******23 */
     " ADD COLUMN country_source text,"   /* app, provider, number */
     " ADD COLUMN sent_recorded_at timestamptz,"
     " ADD COLUMN recorded_by text;" /* token id of the send */
     "ALTER TABLE review_queue ADD COLUMN resolved_by text, ADD COLUMN resolution text;"
     "CREATE INDEX sms_messages_created ON sms_messages (created_at);"
     "CREATE INDEX sms_messages_updated ON sms_messages (updated_at);"
     "CREATE INDEX sms_messages_action ON sms_messages (action_type, action_id);"
     /* a join moves the review rows of the absorbed message */
     "CREATE INDEX review_queue_message ON review_queue (message_id);"
     "CREATE TABLE api_idempotency (" /* one row per (token, Idempotency-Key) */
     " token_hash text NOT NULL,"
     " idem_key text NOT NULL,"
     " request_hash text NOT NULL," /* SHA-256 of the canonical request */
     " status integer NOT NULL,"
     " body text NOT NULL," /* the first answer, replayed */
     " message_id uuid,"
     " created_at timestamptz NOT NULL,"
     " PRIMARY KEY (token_hash, idem_key)"
     ");"
     "CREATE TABLE audit_log ("
     " id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
     " at timestamptz NOT NULL,"
     " actor text NOT NULL," /* token id (hash prefix) */
     " actor_role text NOT NULL,"
     " action text NOT NULL," /* reveal, review_resolve */
     " message_id uuid,"
     " review_id bigint,"
     " reason text NOT NULL"
     ");"
     "CREATE INDEX audit_log_message ON audit_log (message_id, id);"
     /* dlrd_apply_status with the masked number and the country's source
      * (sqlite.c's Q_INSERT_MSG and Q_UPDATE_MSG).  A new name, since the
      * signature changed: nodes still on the old binary keep calling the
      * old one during a rolling upgrade. */
     "CREATE FUNCTION dlrd_apply_status2(p_provider text, p_message_id text,"
     " p_event_id text, p_dedup_key text, p_status text, p_raw_status text,"
     " p_error_code text, p_error_reason text, p_occurred_ms bigint,"
     " p_occurred_at timestamptz, p_is_final smallint, p_read smallint,"
     " p_recipient_hash text, p_country text, p_sender text, p_payload bytea,"
     " p_is_json boolean, p_now timestamptz, p_new_id uuid, p_review text,"
     " p_review_detail text, p_masked text, p_country_source text,"
     " OUT is_new boolean, OUT reviews integer)"
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
     "  SELECT * INTO m FROM sms_messages\n"
     "   WHERE provider = p_provider AND provider_message_id = p_message_id\n"
     "   FOR NO KEY UPDATE;\n"
     "  IF NOT FOUND THEN\n"
     "    INSERT INTO sms_messages (id, provider, provider_message_id, recipient_hash,\n"
     "      destination_country, sender_identity, origin, current_status, created_at,\n"
     "      updated_at, recipient_masked, country_source)\n"
     "    VALUES (p_new_id, p_provider, p_message_id, p_recipient_hash, p_country,\n"
     "      p_sender, 'callback', 'accepted', p_now, p_now, p_masked, p_country_source)\n"
     "    ON CONFLICT (provider, provider_message_id) DO NOTHING\n"
     "    RETURNING * INTO m;\n"
     "    IF NOT FOUND THEN\n"
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
     "      recipient_masked = coalesce(recipient_masked, p_masked),\n"
     /* every right-hand side reads the row as it was: the source follows
      * the country only when this event gives the first one */
     "      country_source = CASE WHEN destination_country IS NULL THEN p_country_source\n"
     "        ELSE country_source END,\n"
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
     /* POST /v1/messages: sqlite_api.c's op_send(), safe with several
      * nodes.  The idempotency key is claimed first, by inserting its row:
      * a second request with the same key, on any node, waits on the unique
      * key until this transaction ends and then finds the answer (or, when
      * this one ended in a refusal, which deletes the claim, claims it
      * itself), exactly as if the two had come one after the other.  The
      * row's answer (status, body) is written by the caller once it has
      * rendered it, in the same transaction.  A refusal changes nothing.
      * The provider message id: the row that has it is locked (a
      * callback-created one is adopted), or the insert of the new row
      * waits for a concurrent creator and then looks again. */
     "CREATE FUNCTION dlrd_api_send(p_token text, p_key text, p_request text,"
     " p_provider text, p_pmid text, p_hash text, p_masked text, p_enc bytea,"
     " p_key_id text, p_country text, p_number_country text, p_timezone text,"
     " p_use_case text, p_template text, p_sender text, p_action_type text,"
     " p_action_id text, p_metadata text, p_exempt boolean, p_actor text,"
     " p_now timestamptz, p_new_id uuid,"
     " OUT o_outcome text, OUT o_status integer, OUT o_body text, OUT o_id uuid,"
     " OUT o_origin text, OUT o_provider text, OUT o_pmid text, OUT o_current text,"
     " OUT o_is_final smallint, OUT o_masked text, OUT o_country text,"
     " OUT o_created timestamptz, OUT o_sent timestamptz)"
     " LANGUAGE plpgsql AS $fn$\n"
     "DECLARE\n"
     "  k api_idempotency%ROWTYPE;\n"
     "  m sms_messages%ROWTYPE;\n"
     "  v_opted smallint;\n"
     "  v_country text;\n"
     "  v_source text;\n"
     "  v_tries integer := 0;\n"
     "BEGIN\n"
     "  LOOP\n"
     "    INSERT INTO api_idempotency (token_hash, idem_key, request_hash, status, body,\n"
     "      created_at)\n"
     "    VALUES (p_token, p_key, p_request, 0, '', p_now)\n"
     "    ON CONFLICT (token_hash, idem_key) DO NOTHING;\n"
     "    EXIT WHEN FOUND;\n"
     "    SELECT * INTO k FROM api_idempotency\n"
     "     WHERE token_hash = p_token AND idem_key = p_key;\n"
     "    IF FOUND THEN\n"
     "      o_id := k.message_id;\n"
     "      IF k.request_hash = p_request THEN\n"
     "        o_outcome := 'replayed';\n"
     "        o_status := k.status;\n"
     "        o_body := k.body;\n"
     "      ELSE\n"
     "        o_outcome := 'key_reused';\n"
     "      END IF;\n"
     "      RETURN;\n"
     "    END IF;\n"
     "    v_tries := v_tries + 1;\n"
     "    IF v_tries > 3 THEN\n"
     "      RAISE EXCEPTION 'idempotency key contended' USING ERRCODE = '40001';\n"
     "    END IF;\n"
     "  END LOOP;\n"
     /* the recipient's state for this sender, else the one recorded
      * without a sender */
     "  IF NOT p_exempt AND p_hash IS NOT NULL THEN\n"
     "    SELECT opted_out INTO v_opted FROM sms_opt_outs\n"
     "     WHERE recipient_hash = p_hash AND sender_identity = coalesce(p_sender, '');\n"
     "    IF NOT FOUND AND coalesce(p_sender, '') <> '' THEN\n"
     "      SELECT opted_out INTO v_opted FROM sms_opt_outs\n"
     "       WHERE recipient_hash = p_hash AND sender_identity = '';\n"
     "    END IF;\n"
     "    IF coalesce(v_opted, 0) <> 0 THEN\n"
     "      DELETE FROM api_idempotency WHERE token_hash = p_token AND idem_key = p_key;\n"
     "      o_outcome := 'opted_out';\n"
     "      RETURN;\n"
     "    END IF;\n"
     "  END IF;\n"
     "  v_tries := 0;\n"
     "  LOOP\n"
     /* the app's country, else the provider's, else the number's */
     "    v_country := p_country;\n"
     "    v_source := CASE WHEN p_country IS NOT NULL THEN 'app' END;\n"
     "    IF p_pmid IS NOT NULL THEN\n"
     "      SELECT * INTO m FROM sms_messages\n"
     "       WHERE provider = p_provider AND provider_message_id = p_pmid FOR UPDATE;\n"
     "      IF FOUND THEN\n"
     "        IF m.origin <> 'callback' THEN\n"
     "          DELETE FROM api_idempotency\n"
     "           WHERE token_hash = p_token AND idem_key = p_key;\n"
     "          o_outcome := 'pmid_taken';\n"
     "          RETURN;\n"
     "        END IF;\n"
     "        IF v_country IS NULL AND m.destination_country IS NOT NULL\n"
     "           AND m.country_source = 'provider' THEN\n"
     "          v_country := m.destination_country;\n"
     "          v_source := 'provider';\n"
     "        END IF;\n"
     "        IF v_country IS NULL AND p_number_country IS NOT NULL THEN\n"
     "          v_country := p_number_country;\n"
     "          v_source := 'number';\n"
     "        END IF;\n"
     "        UPDATE sms_messages SET origin = 'joined', recipient_hash = p_hash,\n"
     "          recipient_enc = p_enc, recipient_key_id = p_key_id,\n"
     "          recipient_masked = p_masked, destination_country = v_country,\n"
     "          country_source = v_source,\n"
     "          sender_identity = coalesce(p_sender, sender_identity),\n"
     "          template_key = p_template, use_case = p_use_case,\n"
     "          action_type = p_action_type, action_id = p_action_id,\n"
     "          metadata = p_metadata, recipient_timezone = p_timezone,\n"
     "          recorded_by = p_actor, sent_recorded_at = p_now,\n"
     "          updated_at = greatest(updated_at, p_now)\n"
     "        WHERE id = m.id;\n"
     "        o_id := m.id;\n"
     "        EXIT;\n"
     "      END IF;\n"
     "    END IF;\n"
     "    IF v_country IS NULL AND p_number_country IS NOT NULL THEN\n"
     "      v_country := p_number_country;\n"
     "      v_source := 'number';\n"
     "    END IF;\n"
     "    INSERT INTO sms_messages (id, provider, provider_message_id, recipient_hash,\n"
     "      recipient_enc, recipient_key_id, recipient_masked, destination_country,\n"
     "      country_source, sender_identity, template_key, use_case, action_type,\n"
     "      action_id, metadata, recipient_timezone, recorded_by, origin, current_status,\n"
     "      sent_recorded_at, created_at, updated_at)\n"
     "    VALUES (p_new_id, p_provider, p_pmid, p_hash, p_enc, p_key_id, p_masked,\n"
     "      v_country, v_source, p_sender, p_template, p_use_case, p_action_type,\n"
     "      p_action_id, p_metadata, p_timezone, p_actor, 'send', 'accepted', p_now,\n"
     "      p_now, p_now)\n"
     "    ON CONFLICT (provider, provider_message_id) DO NOTHING;\n"
     "    IF FOUND THEN\n"
     "      o_id := p_new_id;\n"
     "      EXIT;\n"
     "    END IF;\n"
     /* created meanwhile by another transaction, now committed: again */
     "    v_tries := v_tries + 1;\n"
     "    IF v_tries > 3 THEN\n"
     "      RAISE EXCEPTION 'provider message id contended' USING ERRCODE = '40001';\n"
     "    END IF;\n"
     "  END LOOP;\n"
     "  UPDATE api_idempotency SET message_id = o_id\n"
     "   WHERE token_hash = p_token AND idem_key = p_key;\n"
     "  o_outcome := 'done';\n"
     "  SELECT id, origin, provider, provider_message_id, current_status, is_final,\n"
     "    recipient_masked, destination_country, created_at, sent_recorded_at\n"
     "  INTO o_id, o_origin, o_provider, o_pmid, o_current, o_is_final, o_masked,\n"
     "    o_country, o_created, o_sent\n"
     "  FROM sms_messages WHERE id = o_id;\n"
     "END\n"
     "$fn$;"
     /* PATCH /v1/messages/{id}: sqlite_api.c's op_set_pmid() and merge().
      * The message row is locked first, then the callback-created row with
      * the id, if any, which is folded into it: its events and review rows
      * move, the summaries fold (mask OR, the winning event by
      * dlrd_event_gt, counters add, earliest first-callback and final
      * times), and it is deleted.  When there is no such row the id is set;
      * should a callback on another node create the row meanwhile, the
      * update meets it on the unique key once that commits, and the loop
      * merges it instead. */
     "CREATE FUNCTION dlrd_api_set_provider_id(p_id uuid, p_pmid text, p_now timestamptz,"
     " OUT o_outcome text, OUT o_merged boolean, OUT o_id uuid, OUT o_origin text,"
     " OUT o_provider text, OUT o_pmid text, OUT o_current text, OUT o_is_final smallint,"
     " OUT o_masked text, OUT o_country text, OUT o_created timestamptz,"
     " OUT o_sent timestamptz)"
     " LANGUAGE plpgsql AS $fn$\n"
     "DECLARE\n"
     "  s sms_messages%ROWTYPE;\n"
     "  c sms_messages%ROWTYPE;\n"
     "  t sms_messages%ROWTYPE;\n"
     "  v_any boolean;\n"
     "  v_mask integer;\n"
     "  v_country text;\n"
     "  v_source text;\n"
     "  v_tries integer := 0;\n"
     "BEGIN\n"
     "  o_merged := false;\n"
     "  SELECT * INTO s FROM sms_messages WHERE id = p_id FOR UPDATE;\n"
     "  IF NOT FOUND THEN\n"
     "    o_outcome := 'not_found';\n"
     "    RETURN;\n"
     "  END IF;\n"
     "  IF s.provider_message_id IS NOT NULL THEN\n"
     "    IF s.provider_message_id <> p_pmid THEN\n"
     "      o_outcome := 'pmid_set';\n"
     "      RETURN;\n"
     "    END IF;\n"
     "  ELSE\n"
     "    LOOP\n"
     "      SELECT * INTO c FROM sms_messages\n"
     "       WHERE provider = s.provider AND provider_message_id = p_pmid FOR UPDATE;\n"
     "      IF FOUND THEN\n"
     "        IF c.origin <> 'callback' THEN\n"
     "          o_outcome := 'pmid_taken';\n"
     "          RETURN;\n"
     "        END IF;\n"
     "        v_any := s.status_mask <> 0 OR c.status_mask <> 0;\n"
     "        IF c.status_mask = 0 OR (s.status_mask <> 0 AND NOT dlrd_event_gt(\n"
     "            c.current_status, c.current_occurred_ms, c.current_error_code,\n"
     "            c.current_raw_status, s.current_status, s.current_occurred_ms,\n"
     "            s.current_error_code, s.current_raw_status)) THEN\n"
     "          t := s;\n"
     "        ELSE\n"
     "          t := c;\n"
     "        END IF;\n"
     "        v_mask := s.status_mask | c.status_mask;\n"
     /* the app's country wins, then the provider's, then the number's */
     "        v_country := s.destination_country;\n"
     "        v_source := s.country_source;\n"
     "        IF v_source IS DISTINCT FROM 'app' AND c.destination_country IS NOT NULL\n"
     "           AND (c.country_source IS NOT DISTINCT FROM 'provider'\n"
     "                OR v_country IS NULL) THEN\n"
     "          v_country := c.destination_country;\n"
     "          v_source := c.country_source;\n"
     "        END IF;\n"
     /* retry-log rows follow their events */
     "        UPDATE sms_message_events SET message_id = s.id WHERE message_id = c.id;\n"
     "        UPDATE review_queue SET message_id = s.id WHERE message_id = c.id;\n"
     "        DELETE FROM sms_messages WHERE id = c.id;\n"
     "        UPDATE sms_messages SET provider_message_id = p_pmid,\n"
     "          current_status = CASE WHEN v_any THEN t.current_status ELSE 'accepted' END,\n"
     "          current_raw_status = CASE WHEN v_any THEN t.current_raw_status END,\n"
     "          current_error_code = CASE WHEN v_any THEN t.current_error_code END,\n"
     "          current_error_reason = CASE WHEN v_any THEN t.current_error_reason END,\n"
     "          current_occurred_at = CASE WHEN v_any THEN t.current_occurred_at END,\n"
     "          current_occurred_ms = CASE WHEN v_any THEN t.current_occurred_ms\n"
     "            ELSE -1 END,\n"
     "          is_final = CASE WHEN v_any THEN t.is_final ELSE 0 END,\n"
     "          status_mask = v_mask,\n"
     "          final_conflict = dlrd_mask_conflict(v_mask)::integer,\n"
     "          read_receipt = greatest(read_receipt, c.read_receipt),\n"
     "          event_count = event_count + c.event_count,\n"
     "          callback_count = callback_count + c.callback_count,\n"
     "          duplicate_count = duplicate_count + c.duplicate_count,\n"
     "          first_callback_at = least(first_callback_at, c.first_callback_at),\n"
     "          final_at = least(final_at, c.final_at),\n"
     "          destination_country = v_country,\n"
     "          country_source = v_source,\n"
     "          sender_identity = coalesce(sender_identity, c.sender_identity),\n"
     "          recipient_hash = coalesce(recipient_hash, c.recipient_hash),\n"
     "          recipient_masked = coalesce(recipient_masked, c.recipient_masked),\n"
     "          updated_at = greatest(updated_at, c.updated_at, p_now)\n"
     "        WHERE id = s.id;\n"
     "        IF dlrd_mask_conflict(v_mask) AND s.final_conflict = 0\n"
     "           AND c.final_conflict = 0 THEN\n"
     "          INSERT INTO review_queue (created_at, provider, reason, detail, message_id,\n"
     "            raw_payload)\n"
     "          VALUES (p_now, s.provider, 'final_conflict',\n"
     "            'two different definitive final states (joined send)', s.id, ''::bytea);\n"
     "        END IF;\n"
     "        o_merged := true;\n"
     "        EXIT;\n"
     "      END IF;\n"
     "      BEGIN\n"
     "        UPDATE sms_messages SET provider_message_id = p_pmid,\n"
     "          updated_at = greatest(updated_at, p_now)\n"
     "        WHERE id = p_id;\n"
     "        EXIT;\n"
     "      EXCEPTION WHEN unique_violation THEN\n"
     "        v_tries := v_tries + 1;\n"
     "        IF v_tries > 3 THEN\n"
     "          RAISE EXCEPTION 'provider message id contended' USING ERRCODE = '40001';\n"
     "        END IF;\n"
     "      END;\n"
     "    END LOOP;\n"
     "  END IF;\n"
     "  o_outcome := 'done';\n"
     "  SELECT id, origin, provider, provider_message_id, current_status, is_final,\n"
     "    recipient_masked, destination_country, created_at, sent_recorded_at\n"
     "  INTO o_id, o_origin, o_provider, o_pmid, o_current, o_is_final, o_masked,\n"
     "    o_country, o_created, o_sent\n"
     "  FROM sms_messages WHERE id = p_id;\n"
     "END\n"
     "$fn$;"
     /* POST /v1/review/{id}/resolve: the item locked, so that of two
      * concurrent resolutions the second finds the first's. */
     "CREATE FUNCTION dlrd_api_resolve(p_id bigint, p_actor text, p_role text,"
     " p_note text, p_now timestamptz, OUT o_outcome text,"
     " OUT o_resolved_at timestamptz, OUT o_audit_id bigint)"
     " LANGUAGE plpgsql AS $fn$\n"
     "DECLARE\n"
     "  r review_queue%ROWTYPE;\n"
     "BEGIN\n"
     "  SELECT * INTO r FROM review_queue WHERE id = p_id FOR UPDATE;\n"
     "  IF NOT FOUND THEN\n"
     "    o_outcome := 'not_found';\n"
     "    RETURN;\n"
     "  END IF;\n"
     "  IF r.resolved_at IS NOT NULL THEN\n"
     "    o_outcome := 'already_resolved';\n"
     "    o_resolved_at := r.resolved_at;\n"
     "    RETURN;\n"
     "  END IF;\n"
     "  UPDATE review_queue SET resolved_at = p_now, resolved_by = p_actor,\n"
     "    resolution = p_note\n"
     "  WHERE id = p_id;\n"
     "  INSERT INTO audit_log (at, actor, actor_role, action, message_id, review_id, reason)\n"
     "  VALUES (p_now, p_actor, p_role, 'review_resolve', r.message_id, p_id,\n"
     "    coalesce(p_note, ''))\n"
     "  RETURNING id INTO o_audit_id;\n"
     "  o_outcome := 'done';\n"
     "  o_resolved_at := p_now;\n"
     "END\n"
     "$fn$;",
     NULL},
    {4, "opt-outs keyed by the canonical sender; a provider's country first",
     /* Opt-outs were keyed by the sender text as the provider wrote it, so
      * a STOP to "447520650000" did not stop a send from "+447520650000".
      * dlrd_sender_key() is optout_sender_key() (optout.h) in SQL, the same
      * rule byte for byte (test_store_pg compares them): a phone-like
      * sender becomes its digits, any other is trimmed and its ASCII
      * letters lower-cased; NULL becomes ''.  The digit classes are
      * spelled out and '+' is bracketed, so neither the collation nor
      * standard_conforming_strings can change the answer.  The existing
      * rows are re-keyed as SQLite's migration 6 does (two rows of one user
      * whose senders share a key become the newest by effective time, ties
      * to the later arrival), under a lock that makes concurrent writers
      * (nodes still on the old binary) wait.  The functions that write and
      * read opt-outs are replaced in place, same signatures, so that those
      * nodes use the key too once this commits. */
     "LOCK TABLE sms_opt_outs, sms_opt_out_history IN SHARE ROW EXCLUSIVE MODE;"
     "CREATE OR REPLACE FUNCTION dlrd_sender_key(p_sender text) RETURNS text"
     " LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$"
     " SELECT CASE WHEN t ~ '^[+]?[0123456789 ().-]*$'"
     "  AND length(regexp_replace(t, '[^0123456789]', '', 'g')) BETWEEN 6 AND 15"
     "  THEN regexp_replace(t, '[^0123456789]', '', 'g')"
     "  ELSE translate(t, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') END"
     " FROM (SELECT btrim(coalesce(p_sender, ''), E' \\t\\r\\n') AS t) k $$;"
     "DELETE FROM sms_opt_outs o USING (SELECT ctid AS c, row_number() OVER ("
     " PARTITION BY recipient_hash, dlrd_sender_key(sender_identity)"
     " ORDER BY effective_at DESC, updated_at DESC, inbound_id DESC) AS n"
     " FROM sms_opt_outs) d WHERE o.ctid = d.c AND d.n > 1;"
     "UPDATE sms_opt_outs SET sender_identity = dlrd_sender_key(sender_identity)"
     " WHERE sender_identity <> dlrd_sender_key(sender_identity);"
     "UPDATE sms_opt_out_history SET sender_identity = dlrd_sender_key(sender_identity)"
     " WHERE sender_identity <> dlrd_sender_key(sender_identity);"
     /* migration 1's dlrd_apply_inbound: the state and its history under
      * the sender's key (to_identity keeps the text as written) */
     "CREATE OR REPLACE FUNCTION dlrd_apply_inbound(p_provider text, p_message_id text,"
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
     "  VALUES (p_sender_hash, dlrd_sender_key(p_to), p_action, p_word, v_id, v_effective,\n"
     "    p_now);\n"
     "  INSERT INTO sms_opt_outs (recipient_hash, sender_identity, opted_out, keyword,\n"
     "    inbound_id, effective_at, updated_at)\n"
     "  VALUES (p_sender_hash, dlrd_sender_key(p_to), p_opted_out, p_word, v_id,\n"
     "    v_effective, p_now)\n"
     "  ON CONFLICT (recipient_hash, sender_identity) DO UPDATE SET\n"
     "    opted_out = excluded.opted_out, keyword = excluded.keyword,\n"
     "    inbound_id = excluded.inbound_id, effective_at = excluded.effective_at,\n"
     "    updated_at = excluded.updated_at\n"
     "  WHERE excluded.effective_at >= sms_opt_outs.effective_at;\n"
     "END\n"
     "$fn$;"
     /* migration 3's dlrd_apply_status2: a country the provider gave
      * replaces one taken from the number (the app's stays), so the
      * summary is the same whether the send or the callback came first
      * (dlrd_api_send and dlrd_api_set_provider_id already prefer it) */
     "CREATE OR REPLACE FUNCTION dlrd_apply_status2(p_provider text, p_message_id text,"
     " p_event_id text, p_dedup_key text, p_status text, p_raw_status text,"
     " p_error_code text, p_error_reason text, p_occurred_ms bigint,"
     " p_occurred_at timestamptz, p_is_final smallint, p_read smallint,"
     " p_recipient_hash text, p_country text, p_sender text, p_payload bytea,"
     " p_is_json boolean, p_now timestamptz, p_new_id uuid, p_review text,"
     " p_review_detail text, p_masked text, p_country_source text,"
     " OUT is_new boolean, OUT reviews integer)"
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
     "  SELECT * INTO m FROM sms_messages\n"
     "   WHERE provider = p_provider AND provider_message_id = p_message_id\n"
     "   FOR NO KEY UPDATE;\n"
     "  IF NOT FOUND THEN\n"
     "    INSERT INTO sms_messages (id, provider, provider_message_id, recipient_hash,\n"
     "      destination_country, sender_identity, origin, current_status, created_at,\n"
     "      updated_at, recipient_masked, country_source)\n"
     "    VALUES (p_new_id, p_provider, p_message_id, p_recipient_hash, p_country,\n"
     "      p_sender, 'callback', 'accepted', p_now, p_now, p_masked, p_country_source)\n"
     "    ON CONFLICT (provider, provider_message_id) DO NOTHING\n"
     "    RETURNING * INTO m;\n"
     "    IF NOT FOUND THEN\n"
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
     "      recipient_masked = coalesce(recipient_masked, p_masked),\n"
     "      country_source = CASE WHEN destination_country IS NULL\n"
     "          OR (p_country_source = 'provider' AND country_source = 'number')\n"
     "        THEN p_country_source ELSE country_source END,\n"
     "      destination_country = CASE WHEN destination_country IS NULL\n"
     "          OR (p_country_source = 'provider' AND country_source = 'number')\n"
     "        THEN p_country ELSE destination_country END,\n"
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
     /* migration 3's dlrd_api_send: the opt-out lookup by the sender's key */
     "CREATE OR REPLACE FUNCTION dlrd_api_send(p_token text, p_key text, p_request text,"
     " p_provider text, p_pmid text, p_hash text, p_masked text, p_enc bytea,"
     " p_key_id text, p_country text, p_number_country text, p_timezone text,"
     " p_use_case text, p_template text, p_sender text, p_action_type text,"
     " p_action_id text, p_metadata text, p_exempt boolean, p_actor text,"
     " p_now timestamptz, p_new_id uuid,"
     " OUT o_outcome text, OUT o_status integer, OUT o_body text, OUT o_id uuid,"
     " OUT o_origin text, OUT o_provider text, OUT o_pmid text, OUT o_current text,"
     " OUT o_is_final smallint, OUT o_masked text, OUT o_country text,"
     " OUT o_created timestamptz, OUT o_sent timestamptz)"
     " LANGUAGE plpgsql AS $fn$\n"
     "DECLARE\n"
     "  k api_idempotency%ROWTYPE;\n"
     "  m sms_messages%ROWTYPE;\n"
     "  v_opted smallint;\n"
     "  v_country text;\n"
     "  v_source text;\n"
     "  v_tries integer := 0;\n"
     "BEGIN\n"
     "  LOOP\n"
     "    INSERT INTO api_idempotency (token_hash, idem_key, request_hash, status, body,\n"
     "      created_at)\n"
     "    VALUES (p_token, p_key, p_request, 0, '', p_now)\n"
     "    ON CONFLICT (token_hash, idem_key) DO NOTHING;\n"
     "    EXIT WHEN FOUND;\n"
     "    SELECT * INTO k FROM api_idempotency\n"
     "     WHERE token_hash = p_token AND idem_key = p_key;\n"
     "    IF FOUND THEN\n"
     "      o_id := k.message_id;\n"
     "      IF k.request_hash = p_request THEN\n"
     "        o_outcome := 'replayed';\n"
     "        o_status := k.status;\n"
     "        o_body := k.body;\n"
     "      ELSE\n"
     "        o_outcome := 'key_reused';\n"
     "      END IF;\n"
     "      RETURN;\n"
     "    END IF;\n"
     "    v_tries := v_tries + 1;\n"
     "    IF v_tries > 3 THEN\n"
     "      RAISE EXCEPTION 'idempotency key contended' USING ERRCODE = '40001';\n"
     "    END IF;\n"
     "  END LOOP;\n"
     "  IF NOT p_exempt AND p_hash IS NOT NULL THEN\n"
     "    SELECT opted_out INTO v_opted FROM sms_opt_outs\n"
     "     WHERE recipient_hash = p_hash AND sender_identity = dlrd_sender_key(p_sender);\n"
     "    IF NOT FOUND AND dlrd_sender_key(p_sender) <> '' THEN\n"
     "      SELECT opted_out INTO v_opted FROM sms_opt_outs\n"
     "       WHERE recipient_hash = p_hash AND sender_identity = '';\n"
     "    END IF;\n"
     "    IF coalesce(v_opted, 0) <> 0 THEN\n"
     "      DELETE FROM api_idempotency WHERE token_hash = p_token AND idem_key = p_key;\n"
     "      o_outcome := 'opted_out';\n"
     "      RETURN;\n"
     "    END IF;\n"
     "  END IF;\n"
     "  v_tries := 0;\n"
     "  LOOP\n"
     "    v_country := p_country;\n"
     "    v_source := CASE WHEN p_country IS NOT NULL THEN 'app' END;\n"
     "    IF p_pmid IS NOT NULL THEN\n"
     "      SELECT * INTO m FROM sms_messages\n"
     "       WHERE provider = p_provider AND provider_message_id = p_pmid FOR UPDATE;\n"
     "      IF FOUND THEN\n"
     "        IF m.origin <> 'callback' THEN\n"
     "          DELETE FROM api_idempotency\n"
     "           WHERE token_hash = p_token AND idem_key = p_key;\n"
     "          o_outcome := 'pmid_taken';\n"
     "          RETURN;\n"
     "        END IF;\n"
     "        IF v_country IS NULL AND m.destination_country IS NOT NULL\n"
     "           AND m.country_source = 'provider' THEN\n"
     "          v_country := m.destination_country;\n"
     "          v_source := 'provider';\n"
     "        END IF;\n"
     "        IF v_country IS NULL AND p_number_country IS NOT NULL THEN\n"
     "          v_country := p_number_country;\n"
     "          v_source := 'number';\n"
     "        END IF;\n"
     "        UPDATE sms_messages SET origin = 'joined', recipient_hash = p_hash,\n"
     "          recipient_enc = p_enc, recipient_key_id = p_key_id,\n"
     "          recipient_masked = p_masked, destination_country = v_country,\n"
     "          country_source = v_source,\n"
     "          sender_identity = coalesce(p_sender, sender_identity),\n"
     "          template_key = p_template, use_case = p_use_case,\n"
     "          action_type = p_action_type, action_id = p_action_id,\n"
     "          metadata = p_metadata, recipient_timezone = p_timezone,\n"
     "          recorded_by = p_actor, sent_recorded_at = p_now,\n"
     "          updated_at = greatest(updated_at, p_now)\n"
     "        WHERE id = m.id;\n"
     "        o_id := m.id;\n"
     "        EXIT;\n"
     "      END IF;\n"
     "    END IF;\n"
     "    IF v_country IS NULL AND p_number_country IS NOT NULL THEN\n"
     "      v_country := p_number_country;\n"
     "      v_source := 'number';\n"
     "    END IF;\n"
     "    INSERT INTO sms_messages (id, provider, provider_message_id, recipient_hash,\n"
     "      recipient_enc, recipient_key_id, recipient_masked, destination_country,\n"
     "      country_source, sender_identity, template_key, use_case, action_type,\n"
     "      action_id, metadata, recipient_timezone, recorded_by, origin, current_status,\n"
     "      sent_recorded_at, created_at, updated_at)\n"
     "    VALUES (p_new_id, p_provider, p_pmid, p_hash, p_enc, p_key_id, p_masked,\n"
     "      v_country, v_source, p_sender, p_template, p_use_case, p_action_type,\n"
     "      p_action_id, p_metadata, p_timezone, p_actor, 'send', 'accepted', p_now,\n"
     "      p_now, p_now)\n"
     "    ON CONFLICT (provider, provider_message_id) DO NOTHING;\n"
     "    IF FOUND THEN\n"
     "      o_id := p_new_id;\n"
     "      EXIT;\n"
     "    END IF;\n"
     "    v_tries := v_tries + 1;\n"
     "    IF v_tries > 3 THEN\n"
     "      RAISE EXCEPTION 'provider message id contended' USING ERRCODE = '40001';\n"
     "    END IF;\n"
     "  END LOOP;\n"
     "  UPDATE api_idempotency SET message_id = o_id\n"
     "   WHERE token_hash = p_token AND idem_key = p_key;\n"
     "  o_outcome := 'done';\n"
     "  SELECT id, origin, provider, provider_message_id, current_status, is_final,\n"
     "    recipient_masked, destination_country, created_at, sent_recorded_at\n"
     "  INTO o_id, o_origin, o_provider, o_pmid, o_current, o_is_final, o_masked,\n"
     "    o_country, o_created, o_sent\n"
     "  FROM sms_messages WHERE id = o_id;\n"
     "END\n"
     "$fn$;",
     NULL},
    {5, "keyed recipient tags in event ids, keyed request hashes", NULL, migrate_privacy_ids},
    {6, "audit rows follow their review item into a joined send",
     /* As SQLite's migration 8: the merge of a callback-created message
      * into its send (dlrd_api_send, dlrd_api_set_provider_id) moves its
      * review items, and the audit rows of their resolutions follow. */
     "CREATE FUNCTION dlrd_review_moved() RETURNS trigger LANGUAGE plpgsql AS $fn$\n"
     "BEGIN\n"
     "  UPDATE audit_log SET message_id = NEW.message_id\n"
     "   WHERE review_id = NEW.id AND message_id IS NOT DISTINCT FROM OLD.message_id;\n"
     "  RETURN NULL;\n"
     "END\n"
     "$fn$;"
     "CREATE TRIGGER review_queue_moved AFTER UPDATE OF message_id ON review_queue"
     " FOR EACH ROW WHEN (NEW.message_id IS DISTINCT FROM OLD.message_id)"
     " EXECUTE FUNCTION dlrd_review_moved();"
     "UPDATE audit_log a SET message_id = r.message_id FROM review_queue r"
     " WHERE r.id = a.review_id AND r.message_id IS NOT NULL"
     " AND r.message_id IS DISTINCT FROM a.message_id;",
     NULL},
    {7, "deduplicate events per message",
     /* As SQLite's migration 4: an event is unique per message, not per
      * provider.  The two agree whenever a provider's event ids are unique
      * (a key without an event id names its message anyway); when a
      * provider sends one event id for two messages, the second message's
      * event is stored, not counted as a duplicate of the first's (which
      * left the second message without it).  Every row already unique per
      * provider is unique per message, so the new constraint cannot fail;
      * building it locks sms_message_events for the build
      * (docs/postgresql.md).  The function is migration 4's with the
      * conflict target and the duplicate's lookup changed. */
     "ALTER TABLE sms_message_events DROP CONSTRAINT sms_message_events_dedup;"
     "ALTER TABLE sms_message_events ADD CONSTRAINT sms_message_events_dedup"
     " UNIQUE (message_id, dedup_key);"
     "CREATE OR REPLACE FUNCTION dlrd_apply_status2(p_provider text, p_message_id text,"
     " p_event_id text, p_dedup_key text, p_status text, p_raw_status text,"
     " p_error_code text, p_error_reason text, p_occurred_ms bigint,"
     " p_occurred_at timestamptz, p_is_final smallint, p_read smallint,"
     " p_recipient_hash text, p_country text, p_sender text, p_payload bytea,"
     " p_is_json boolean, p_now timestamptz, p_new_id uuid, p_review text,"
     " p_review_detail text, p_masked text, p_country_source text,"
     " OUT is_new boolean, OUT reviews integer)"
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
     "  SELECT * INTO m FROM sms_messages\n"
     "   WHERE provider = p_provider AND provider_message_id = p_message_id\n"
     "   FOR NO KEY UPDATE;\n"
     "  IF NOT FOUND THEN\n"
     "    INSERT INTO sms_messages (id, provider, provider_message_id, recipient_hash,\n"
     "      destination_country, sender_identity, origin, current_status, created_at,\n"
     "      updated_at, recipient_masked, country_source)\n"
     "    VALUES (p_new_id, p_provider, p_message_id, p_recipient_hash, p_country,\n"
     "      p_sender, 'callback', 'accepted', p_now, p_now, p_masked, p_country_source)\n"
     "    ON CONFLICT (provider, provider_message_id) DO NOTHING\n"
     "    RETURNING * INTO m;\n"
     "    IF NOT FOUND THEN\n"
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
     "  ON CONFLICT (message_id, dedup_key) DO NOTHING\n"
     "  RETURNING id INTO v_event;\n"
     "  is_new := FOUND;\n"
     "  IF is_new THEN\n"
     "    v_mask := m.status_mask | dlrd_status_bit(p_status);\n"
     "    v_conflict := dlrd_mask_conflict(v_mask);\n"
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
     "      recipient_masked = coalesce(recipient_masked, p_masked),\n"
     "      country_source = CASE WHEN destination_country IS NULL\n"
     "          OR (p_country_source = 'provider' AND country_source = 'number')\n"
     "        THEN p_country_source ELSE country_source END,\n"
     "      destination_country = CASE WHEN destination_country IS NULL\n"
     "          OR (p_country_source = 'provider' AND country_source = 'number')\n"
     "        THEN p_country ELSE destination_country END,\n"
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
     "     WHERE message_id = m.id AND dedup_key = p_dedup_key;\n"
     "  END IF;\n"
     "  INSERT INTO sms_callback_log (received_at, provider, event_id, duplicate)\n"
     "  VALUES (p_now, p_provider, v_event, (NOT is_new)::integer);\n"
     "END\n"
     "$fn$;",
     NULL},
    {8, "opt-outs in a send: a STOP without a sender is weighed; callbacks first are joined",
     /* Migration 4's dlrd_api_send with two changes, as sqlite_api.c's
      * op_send() and opted_out() decide:
      * - the opt-out kept without a sender ('', a STOP whose provider did
      *   not say which of our numbers it reached) was read only when the
      *   sender had no row of its own, so an older START to that sender
      *   hid the user's later STOP.  Now the later of the two rows by
      *   effective time decides, a tie counting as opted out;
      * - the opt-out refusal is decided after the provider id's row is
      *   looked for, and not when the send adopts that row (its callbacks
      *   show the message went out already; the STOP may answer it). */
     "CREATE OR REPLACE FUNCTION dlrd_api_send(p_token text, p_key text, p_request text,"
     " p_provider text, p_pmid text, p_hash text, p_masked text, p_enc bytea,"
     " p_key_id text, p_country text, p_number_country text, p_timezone text,"
     " p_use_case text, p_template text, p_sender text, p_action_type text,"
     " p_action_id text, p_metadata text, p_exempt boolean, p_actor text,"
     " p_now timestamptz, p_new_id uuid,"
     " OUT o_outcome text, OUT o_status integer, OUT o_body text, OUT o_id uuid,"
     " OUT o_origin text, OUT o_provider text, OUT o_pmid text, OUT o_current text,"
     " OUT o_is_final smallint, OUT o_masked text, OUT o_country text,"
     " OUT o_created timestamptz, OUT o_sent timestamptz)"
     " LANGUAGE plpgsql AS $fn$\n"
     "DECLARE\n"
     "  k api_idempotency%ROWTYPE;\n"
     "  m sms_messages%ROWTYPE;\n"
     "  v_opted smallint;\n"
     "  v_country text;\n"
     "  v_source text;\n"
     "  v_tries integer := 0;\n"
     "BEGIN\n"
     "  LOOP\n"
     "    INSERT INTO api_idempotency (token_hash, idem_key, request_hash, status, body,\n"
     "      created_at)\n"
     "    VALUES (p_token, p_key, p_request, 0, '', p_now)\n"
     "    ON CONFLICT (token_hash, idem_key) DO NOTHING;\n"
     "    EXIT WHEN FOUND;\n"
     "    SELECT * INTO k FROM api_idempotency\n"
     "     WHERE token_hash = p_token AND idem_key = p_key;\n"
     "    IF FOUND THEN\n"
     "      o_id := k.message_id;\n"
     "      IF k.request_hash = p_request THEN\n"
     "        o_outcome := 'replayed';\n"
     "        o_status := k.status;\n"
     "        o_body := k.body;\n"
     "      ELSE\n"
     "        o_outcome := 'key_reused';\n"
     "      END IF;\n"
     "      RETURN;\n"
     "    END IF;\n"
     "    v_tries := v_tries + 1;\n"
     "    IF v_tries > 3 THEN\n"
     "      RAISE EXCEPTION 'idempotency key contended' USING ERRCODE = '40001';\n"
     "    END IF;\n"
     "  END LOOP;\n"
     "  v_tries := 0;\n"
     "  LOOP\n"
     "    v_country := p_country;\n"
     "    v_source := CASE WHEN p_country IS NOT NULL THEN 'app' END;\n"
     "    IF p_pmid IS NOT NULL THEN\n"
     "      SELECT * INTO m FROM sms_messages\n"
     "       WHERE provider = p_provider AND provider_message_id = p_pmid FOR UPDATE;\n"
     "      IF FOUND THEN\n"
     "        IF m.origin <> 'callback' THEN\n"
     "          DELETE FROM api_idempotency\n"
     "           WHERE token_hash = p_token AND idem_key = p_key;\n"
     "          o_outcome := 'pmid_taken';\n"
     "          RETURN;\n"
     "        END IF;\n"
     "        IF v_country IS NULL AND m.destination_country IS NOT NULL\n"
     "           AND m.country_source = 'provider' THEN\n"
     "          v_country := m.destination_country;\n"
     "          v_source := 'provider';\n"
     "        END IF;\n"
     "        IF v_country IS NULL AND p_number_country IS NOT NULL THEN\n"
     "          v_country := p_number_country;\n"
     "          v_source := 'number';\n"
     "        END IF;\n"
     "        UPDATE sms_messages SET origin = 'joined', recipient_hash = p_hash,\n"
     "          recipient_enc = p_enc, recipient_key_id = p_key_id,\n"
     "          recipient_masked = p_masked, destination_country = v_country,\n"
     "          country_source = v_source,\n"
     "          sender_identity = coalesce(p_sender, sender_identity),\n"
     "          template_key = p_template, use_case = p_use_case,\n"
     "          action_type = p_action_type, action_id = p_action_id,\n"
     "          metadata = p_metadata, recipient_timezone = p_timezone,\n"
     "          recorded_by = p_actor, sent_recorded_at = p_now,\n"
     "          updated_at = greatest(updated_at, p_now)\n"
     "        WHERE id = m.id;\n"
     "        o_id := m.id;\n"
     "        EXIT;\n"
     "      END IF;\n"
     "    END IF;\n"
     "    IF v_country IS NULL AND p_number_country IS NOT NULL THEN\n"
     "      v_country := p_number_country;\n"
     "      v_source := 'number';\n"
     "    END IF;\n"
     "    IF NOT p_exempt AND p_hash IS NOT NULL THEN\n"
     "      SELECT opted_out INTO v_opted FROM sms_opt_outs\n"
     "       WHERE recipient_hash = p_hash\n"
     "         AND sender_identity IN (dlrd_sender_key(p_sender), '')\n"
     "       ORDER BY effective_at DESC, opted_out DESC LIMIT 1;\n"
     "      IF coalesce(v_opted, 0) <> 0 THEN\n"
     "        DELETE FROM api_idempotency WHERE token_hash = p_token AND idem_key = p_key;\n"
     "        o_outcome := 'opted_out';\n"
     "        RETURN;\n"
     "      END IF;\n"
     "    END IF;\n"
     "    INSERT INTO sms_messages (id, provider, provider_message_id, recipient_hash,\n"
     "      recipient_enc, recipient_key_id, recipient_masked, destination_country,\n"
     "      country_source, sender_identity, template_key, use_case, action_type,\n"
     "      action_id, metadata, recipient_timezone, recorded_by, origin, current_status,\n"
     "      sent_recorded_at, created_at, updated_at)\n"
     "    VALUES (p_new_id, p_provider, p_pmid, p_hash, p_enc, p_key_id, p_masked,\n"
     "      v_country, v_source, p_sender, p_template, p_use_case, p_action_type,\n"
     "      p_action_id, p_metadata, p_timezone, p_actor, 'send', 'accepted', p_now,\n"
     "      p_now, p_now)\n"
     "    ON CONFLICT (provider, provider_message_id) DO NOTHING;\n"
     "    IF FOUND THEN\n"
     "      o_id := p_new_id;\n"
     "      EXIT;\n"
     "    END IF;\n"
     "    v_tries := v_tries + 1;\n"
     "    IF v_tries > 3 THEN\n"
     "      RAISE EXCEPTION 'provider message id contended' USING ERRCODE = '40001';\n"
     "    END IF;\n"
     "  END LOOP;\n"
     "  UPDATE api_idempotency SET message_id = o_id\n"
     "   WHERE token_hash = p_token AND idem_key = p_key;\n"
     "  o_outcome := 'done';\n"
     "  SELECT id, origin, provider, provider_message_id, current_status, is_final,\n"
     "    recipient_masked, destination_country, created_at, sent_recorded_at\n"
     "  INTO o_id, o_origin, o_provider, o_pmid, o_current, o_is_final, o_masked,\n"
     "    o_country, o_created, o_sent\n"
     "  FROM sms_messages WHERE id = o_id;\n"
     "END\n"
     "$fn$;",
     NULL},
    {9, "an unusable payload sent again is one review item",
     /* As SQLite's migration 9: such items carry a keyed digest of the
      * request, unique per provider; a resend counts in retry_count.  An
      * older node inserts without a key, as before. */
     "ALTER TABLE review_queue ADD COLUMN dedup_key text,"
     " ADD COLUMN retry_count integer NOT NULL DEFAULT 0;"
     "CREATE UNIQUE INDEX review_queue_dedup ON review_queue (provider, dedup_key)"
     " WHERE dedup_key IS NOT NULL;",
     NULL},
    {10, "messages found by their action id alone",
     /* As SQLite's migration 10: ?action_id= without action_type read
      * every message; only sends carry an action, so callbacks write
      * nothing to this index. */
     "CREATE INDEX sms_messages_action_id ON sms_messages (action_id)"
     " WHERE action_id IS NOT NULL;",
     NULL},
    {11, "one payload row for all the events of a request",
     /* As SQLite's migration 11: a request of several events keeps its
      * payload once, in sms_payloads (named by a keyed digest, so a resend
      * names the same row), and its rows hold an empty raw_payload and the
      * payload_id.  The two functions are migration 4's dlrd_apply_inbound
      * and migration 7's dlrd_apply_status2 with p_payload_id added (new
      * names, so a node of the previous version keeps calling the old
      * ones during a rolling upgrade). */
     "CREATE TABLE sms_payloads ("
     " id text PRIMARY KEY,"
     " provider text NOT NULL,"
     " raw_payload bytea NOT NULL,"
     " received_at timestamptz NOT NULL"
     ");"
     "ALTER TABLE sms_message_events ADD COLUMN payload_id text;"
     "ALTER TABLE sms_inbound_messages ADD COLUMN payload_id text;"
     "ALTER TABLE review_queue ADD COLUMN payload_id text;"
     "CREATE OR REPLACE FUNCTION dlrd_apply_inbound2(p_provider text, p_message_id text,"
     " p_dedup_key text, p_sender_hash text, p_country text, p_to text, p_body text,"
     " p_keyword text, p_occurred_at timestamptz, p_payload bytea, p_is_json boolean,"
     " p_now timestamptz, p_action text, p_opted_out smallint, p_word text, p_payload_id text,"
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
     "    raw_payload, payload_json, received_at, payload_id)\n"
     "  VALUES (p_provider, p_message_id, p_dedup_key, p_sender_hash, p_country, p_to,\n"
     "    p_body, p_keyword, p_occurred_at, p_payload, v_json, p_now, p_payload_id)\n"
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
     "  VALUES (p_sender_hash, dlrd_sender_key(p_to), p_action, p_word, v_id, v_effective,\n"
     "    p_now);\n"
     "  INSERT INTO sms_opt_outs (recipient_hash, sender_identity, opted_out, keyword,\n"
     "    inbound_id, effective_at, updated_at)\n"
     "  VALUES (p_sender_hash, dlrd_sender_key(p_to), p_opted_out, p_word, v_id,\n"
     "    v_effective, p_now)\n"
     "  ON CONFLICT (recipient_hash, sender_identity) DO UPDATE SET\n"
     "    opted_out = excluded.opted_out, keyword = excluded.keyword,\n"
     "    inbound_id = excluded.inbound_id, effective_at = excluded.effective_at,\n"
     "    updated_at = excluded.updated_at\n"
     "  WHERE excluded.effective_at >= sms_opt_outs.effective_at;\n"
     "END\n"
     "$fn$;"
     "CREATE OR REPLACE FUNCTION dlrd_apply_status3(p_provider text, p_message_id text,"
     " p_event_id text, p_dedup_key text, p_status text, p_raw_status text,"
     " p_error_code text, p_error_reason text, p_occurred_ms bigint,"
     " p_occurred_at timestamptz, p_is_final smallint, p_read smallint,"
     " p_recipient_hash text, p_country text, p_sender text, p_payload bytea,"
     " p_is_json boolean, p_now timestamptz, p_new_id uuid, p_review text,"
     " p_review_detail text, p_masked text, p_country_source text, p_payload_id text,"
     " OUT is_new boolean, OUT reviews integer)"
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
     "  SELECT * INTO m FROM sms_messages\n"
     "   WHERE provider = p_provider AND provider_message_id = p_message_id\n"
     "   FOR NO KEY UPDATE;\n"
     "  IF NOT FOUND THEN\n"
     "    INSERT INTO sms_messages (id, provider, provider_message_id, recipient_hash,\n"
     "      destination_country, sender_identity, origin, current_status, created_at,\n"
     "      updated_at, recipient_masked, country_source)\n"
     "    VALUES (p_new_id, p_provider, p_message_id, p_recipient_hash, p_country,\n"
     "      p_sender, 'callback', 'accepted', p_now, p_now, p_masked, p_country_source)\n"
     "    ON CONFLICT (provider, provider_message_id) DO NOTHING\n"
     "    RETURNING * INTO m;\n"
     "    IF NOT FOUND THEN\n"
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
     "    payload_json, received_at, payload_id)\n"
     "  VALUES (m.id, p_provider, p_message_id, p_event_id, p_dedup_key, p_status,\n"
     "    p_raw_status, p_error_code, p_error_reason, p_is_final, p_read,\n"
     "    v_changed::integer, p_occurred_at, p_payload, v_json, p_now, p_payload_id)\n"
     "  ON CONFLICT (message_id, dedup_key) DO NOTHING\n"
     "  RETURNING id INTO v_event;\n"
     "  is_new := FOUND;\n"
     "  IF is_new THEN\n"
     "    v_mask := m.status_mask | dlrd_status_bit(p_status);\n"
     "    v_conflict := dlrd_mask_conflict(v_mask);\n"
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
     "      recipient_masked = coalesce(recipient_masked, p_masked),\n"
     "      country_source = CASE WHEN destination_country IS NULL\n"
     "          OR (p_country_source = 'provider' AND country_source = 'number')\n"
     "        THEN p_country_source ELSE country_source END,\n"
     "      destination_country = CASE WHEN destination_country IS NULL\n"
     "          OR (p_country_source = 'provider' AND country_source = 'number')\n"
     "        THEN p_country ELSE destination_country END,\n"
     "      sender_identity = coalesce(sender_identity, p_sender),\n"
     "      updated_at = greatest(updated_at, p_now)\n"
     "    WHERE id = m.id;\n"
     "    IF p_review IS NOT NULL THEN\n"
     "      INSERT INTO review_queue (created_at, provider, reason, detail, message_id,\n"
     "        event_id, raw_status, raw_payload, payload_json, payload_id)\n"
     "      VALUES (p_now, p_provider, p_review, p_review_detail, m.id, v_event,\n"
     "        p_raw_status, p_payload, v_json, p_payload_id);\n"
     "      reviews := reviews + 1;\n"
     "    END IF;\n"
     "    IF v_conflict AND NOT dlrd_mask_conflict(m.status_mask) THEN\n"
     "      INSERT INTO review_queue (created_at, provider, reason, detail, message_id,\n"
     "        event_id, raw_status, raw_payload, payload_json, payload_id)\n"
     "      VALUES (p_now, p_provider, 'final_conflict',\n"
     "        'two different definitive final states', m.id, v_event, p_raw_status,\n"
     "        p_payload, v_json, p_payload_id);\n"
     "      reviews := reviews + 1;\n"
     "    END IF;\n"
     "  ELSE\n"
     "    UPDATE sms_messages SET callback_count = callback_count + 1,\n"
     "      duplicate_count = duplicate_count + 1, updated_at = greatest(updated_at, p_now)\n"
     "    WHERE id = m.id;\n"
     "    SELECT id INTO STRICT v_event FROM sms_message_events\n"
     "     WHERE message_id = m.id AND dedup_key = p_dedup_key;\n"
     "  END IF;\n"
     "  INSERT INTO sms_callback_log (received_at, provider, event_id, duplicate)\n"
     "  VALUES (p_now, p_provider, v_event, (NOT is_new)::integer);\n"
     "END\n"
     "$fn$;",
     NULL},
    {12, "audit rows of a moved review item found by index",
     /* Migration 6's trigger (dlrd_review_moved) moves the audit rows of
      * a review item that moves with a joined send: "WHERE review_id =
      * NEW.id AND message_id IS NOT DISTINCT FROM OLD.message_id".  The
      * second term cannot use audit_log_message and nothing indexed
      * review_id, so each item moved read the whole audit log in the
      * writer's transaction.  Partial: reveals name no review item.  An
      * index only, so nodes of the previous version run on unchanged. */
     "CREATE INDEX audit_log_review ON audit_log (review_id) WHERE review_id IS NOT NULL;", NULL},
};

/* The prepared statements of every writer connection (the API's are in
 * postgresql_api.c). */
enum { S_STATUS, S_INBOUND, S_UNUSABLE, S_PAYLOAD, S__COUNT };

static const struct {
	const char *name;
	const char *sql;
	int nparams;
	Oid types[24];
} stmts[S__COUNT] = {
    [S_STATUS] = {"dlrd_status",
                  "SELECT is_new, reviews FROM dlrd_apply_status3($1, $2, $3, $4, $5, $6, $7,"
                  " $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,"
                  " $23, $24)",
                  24,
                  {OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT,        OID_TEXT, OID_TEXT,
                   OID_TEXT, OID_TEXT, OID_INT8, OID_TIMESTAMPTZ, OID_INT2, OID_INT2,
                   OID_TEXT, OID_TEXT, OID_TEXT, OID_BYTEA,       OID_BOOL, OID_TIMESTAMPTZ,
                   OID_UUID, OID_TEXT, OID_TEXT, OID_TEXT,        OID_TEXT, OID_TEXT}},
    [S_INBOUND] = {"dlrd_inbound",
                   "SELECT is_new, reviews FROM dlrd_apply_inbound2($1, $2, $3, $4, $5, $6,"
                   " $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                   16,
                   {OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT,
                    OID_TIMESTAMPTZ, OID_BYTEA, OID_BOOL, OID_TIMESTAMPTZ, OID_TEXT, OID_INT2,
                    OID_TEXT, OID_TEXT}},
    [S_UNUSABLE] = {"dlrd_unusable",
                    /* a resend (same dedup_key) counts on the first item;
                     * xmax is 0 only in a row this statement inserted */
                    "INSERT INTO review_queue (created_at, provider, reason, detail, raw_status,"
                    " raw_payload, payload_json, dedup_key, payload_id) VALUES ($1, $2, $3, $4,"
                    " $5, $6, CASE WHEN $7 THEN convert_from($6, 'UTF8')::jsonb END, $8, $9)"
                    " ON CONFLICT (provider, dedup_key) WHERE dedup_key IS NOT NULL"
                    " DO UPDATE SET retry_count = review_queue.retry_count + 1"
                    " RETURNING xmax = 0",
                    9,
                    {OID_TIMESTAMPTZ, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_BYTEA, OID_BOOL,
                     OID_TEXT, OID_TEXT}},
    /* a request's payload kept once (migration 11), after its events and
     * only when a row names it: $5 are the message ids of its status
     * events, $6 the dedup keys of all its events (unique keys of the rows
     * it may have written), $7 its events' providers, $8 true when it
     * wrote a review item that has no key.  A resend names the same row,
     * and the first copy stays; one whose events were all stored before
     * writes nothing (in other bytes, as a Telnyx retry that counts its
     * attempt, it would be a copy that no row names). */
    [S_PAYLOAD] = {"dlrd_payload",
                   "INSERT INTO sms_payloads (id, provider, raw_payload, received_at)"
                   " SELECT $1, $2, $3, $4 WHERE $8"
                   " OR EXISTS (SELECT 1 FROM sms_messages m JOIN sms_message_events e"
                   " ON e.message_id = m.id WHERE m.provider = ANY ($7)"
                   " AND m.provider_message_id = ANY ($5) AND e.dedup_key = ANY ($6)"
                   " AND e.payload_id = $1)"
                   " OR EXISTS (SELECT 1 FROM sms_inbound_messages WHERE provider = ANY ($7)"
                   " AND dedup_key = ANY ($6) AND payload_id = $1)"
                   " OR EXISTS (SELECT 1 FROM review_queue WHERE provider = ANY ($7)"
                   " AND dedup_key IS NOT NULL AND dedup_key = ANY ($6) AND payload_id = $1)"
                   " ON CONFLICT DO NOTHING",
                   8,
                   {OID_TEXT, OID_TEXT, OID_BYTEA, OID_TIMESTAMPTZ, OID_TEXT_ARRAY, OID_TEXT_ARRAY,
                    OID_TEXT_ARRAY, OID_BOOL}},
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

/* A stretch of the batch in queue order: the events of consecutive
 * callbacks (refs[start, end), sorted), or one API item (items[start]). */
struct unit {
	bool api;
	size_t start, end;
};

/* One API item during an attempt. */
struct api_ref {
	struct commit_item *it;
	bool got;      /* its first result has been read */
	bool followed; /* store__pg_api_follow() ran */
};

/* One statement sent in the pipeline and what its result is for. */
enum slot_kind { SL_BEGIN, SL_PAYLOAD, SL_EVENT, SL_API, SL_FOLLOW, SL_COMMIT };
struct slot {
	enum slot_kind kind;
	size_t i; /* SL_EVENT: index into refs; SL_API, SL_FOLLOW: into apis */
};

/* Owned by the writer thread (opened by the main thread before it starts). */
struct pg_be {
	PGconn *conn;        /* NULL while disconnected */
	const char *kw[16];  /* connection keywords (static strings) */
	const char *val[16]; /* their values; val[dbname] is url */
	char *url;           /* a secret: wiped before it is freed */
	char where[256];     /* "host=... port=... dbname=... user=..." for logs */
	enum sync_mode sync;
	int64_t last_attempt_ms;     /* last failed connection attempt */
	bool lost;                   /* a connection was lost and not yet re-established */
	struct store__pg_pool *pool; /* the API's read connections (any thread) */
	/* scratch of one batch, grown as needed */
	struct ev_ref *refs;
	size_t refs_cap;
	struct unit *units;
	size_t units_cap;
	struct api_ref *apis;
	size_t apis_cap;
	struct commit_item **pays; /* the requests that keep their payload once */
	size_t pays_cap, npays;
	struct slot *slots; /* FIFO of the statements whose results are due */
	size_t slots_cap, slot_head, slot_tail;
	bool committed;  /* the COMMIT's result said COMMIT */
	bool sync_cut;   /* a WARNING came with the COMMIT: see on_notice() */
	bool unexpected; /* a result was not what its statement gives */
	uint64_t rng;
};

static bool pg_accepts(const char *url)
{
	return strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0 ||
	       strncmp(url, "host=", 5) == 0 || strncmp(url, "dbname=", 7) == 0;
}

void store__pg_set_err(char *err, size_t errlen, const char *prefix, const char *msg)
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

int store__pg_wait(PGconn *c, bool want_write, int64_t deadline_ms)
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

int store__pg_exec(PGconn *c, const char *label, const char *sql, int timeout_ms, struct pg_fail *f,
                   char *err, size_t errlen)
{
	int64_t deadline = util_now_ms() + timeout_ms;
	int fl;

	memset(f, 0, sizeof(*f));
	if (!PQsendQuery(c, sql)) {
		store__pg_set_err(err, errlen, "send", PQerrorMessage(c));
		f->broken = true;
		return DLRD_EIO;
	}
	while ((fl = PQflush(c)) == 1)
		if (store__pg_wait(c, true, deadline) != 0 || !PQconsumeInput(c))
			goto broken;
	if (fl < 0)
		goto broken;
	for (;;) {
		PGresult *r;
		if (!PQconsumeInput(c))
			goto broken;
		if (PQisBusy(c)) {
			if (store__pg_wait(c, false, deadline) != 0)
				goto broken;
			continue;
		}
		r = PQgetResult(c);
		if (!r)
			break;
		ExecStatusType st = PQresultStatus(r);
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && !f->failed) {
			const char *ss = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
			util_strlcpy(f->sqlstate, ss ? ss : "", sizeof(f->sqlstate));
			store__pg_set_err(err, errlen, label, m ? m : PQerrorMessage(c));
			f->failed = true;
		}
		PQclear(r);
	}
	if (PQstatus(c) != CONNECTION_OK)
		goto broken;
	return f->failed ? DLRD_EIO : 0;
broken:
	if (!f->failed)
		store__pg_set_err(err, errlen, "connection",
		                  util_now_ms() >= deadline ? "timed out" : PQerrorMessage(c));
	f->broken = true;
	return DLRD_EIO;
}

int store__pg_exchange(PGconn *c, int64_t deadline_ms, bool (*on_result)(void *ctx, PGresult *r),
                       void *ctx, const char *(*label)(void *ctx), struct pg_fail *f, char *err,
                       size_t errlen)
{
	bool synced = false;
	int fl;

	if (!PQpipelineSync(c)) {
		store__pg_set_err(err, errlen, "send", PQerrorMessage(c));
		f->broken = true;
		return DLRD_EIO;
	}
	/* Send and receive together: the server may answer the first
	 * statements while the last ones are still on their way. */
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
				PQclear(r);
				continue;
			}
			if ((st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR) && !f->failed) {
				const char *ss = PQresultErrorField(r, PG_DIAG_SQLSTATE);
				const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
				util_strlcpy(f->sqlstate, ss ? ss : "", sizeof(f->sqlstate));
				store__pg_set_err(err, errlen, label ? label(ctx) : "statement",
				                  m ? m : PQerrorMessage(c));
				f->failed = true;
			}
			if (!on_result(ctx, r))
				PQclear(r);
		}
		if (synced)
			break;
		if (store__pg_wait(c, fl == 1, deadline_ms) != 0)
			goto broken;
	}
	return 0;
broken:
	store__pg_set_err(err, errlen, "connection lost",
	                  util_now_ms() >= deadline_ms ? "timed out" : PQerrorMessage(c));
	f->broken = true;
	return DLRD_EIO;
}

bool store__pg_alive(PGconn *c)
{
	/* Picks up what arrived while idle, never blocking: a server that ended
	 * the session sends a FATAL message, then EOF (a second read). */
	struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
	bool alive = pfd.fd >= 0 && PQstatus(c) == CONNECTION_OK;

	for (int i = 0; alive && i < 4 && poll(&pfd, 1, 0) > 0; i++)
		alive = PQconsumeInput(c) && PQstatus(c) == CONNECTION_OK;
	return alive && PQtransactionStatus(c) == PQTRANS_IDLE;
}

static int run_simple(struct pg_be *be, const char *label, const char *sql, int timeout_ms,
                      struct pg_fail *f, char *err, size_t errlen)
{
	return store__pg_exec(be->conn, label, sql, timeout_ms, f, err, errlen);
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
		store__pg_set_err(err, errlen, "migrations", m ? m : PQerrorMessage(be->conn));
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
	int rc;

	for (;;) {
		PGresult *r = NULL;
		int unknown = 0;
		size_t i, k;
		bool missing;

		if ((rc = exec_startup(be,
		                       "BEGIN; SET LOCAL statement_timeout = 0;"
		                       " SELECT pg_advisory_xact_lock(" PG_MIGRATION_LOCK ");"
		                       " SELECT to_regclass('schema_migrations') IS NULL",
		                       PGRES_TUPLES_OK, err, errlen, &r)) != 0)
			goto fail;
		missing = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
		PQclear(r);
		r = NULL;
		/* only when it is missing: CREATE ... IF NOT EXISTS needs the
		 * CREATE privilege on the schema even when the table exists, and
		 * a node of an up-to-date schema needs none */
		if (missing &&
		    (rc = exec_startup(be,
		                       "CREATE TABLE IF NOT EXISTS schema_migrations ("
		                       " version integer PRIMARY KEY, name text NOT NULL,"
		                       " applied_at timestamptz NOT NULL DEFAULT now())",
		                       PGRES_COMMAND_OK, err, errlen, NULL)) != 0)
			goto fail;
		if ((rc = exec_startup(be, "SELECT version FROM schema_migrations ORDER BY version",
		                       PGRES_TUPLES_OK, err, errlen, &r)) != 0)
			goto fail;
		/* the first migration not recorded, and any recorded version this
		 * binary does not know (a newer dlrd, or a change this one lacks,
		 * made the schema) */
		i = ARRAY_LEN(migrations);
		for (k = 0; k < ARRAY_LEN(migrations); k++) {
			bool found = false;
			for (int row = 0; row < PQntuples(r) && !found; row++)
				found = strtol(PQgetvalue(r, row, 0), NULL, 10) ==
				        migrations[k].version;
			if (!found) {
				i = k;
				break;
			}
		}
		for (int row = 0; row < PQntuples(r) && !unknown; row++) {
			int v = (int)strtol(PQgetvalue(r, row, 0), NULL, 10);
			for (k = 0; k < ARRAY_LEN(migrations) && migrations[k].version != v; k++)
				;
			if (k == ARRAY_LEN(migrations))
				unknown = v;
		}
		PQclear(r);
		if (unknown) {
			util_fmt(
			    err, errlen,
			    "postgresql: database schema version %d is newer than this dlrd (it "
			    "does not know that migration)",
			    unknown);
			rc = DLRD_EIO;
			goto fail;
		}
		if (i == ARRAY_LEN(migrations))
			return exec_startup(be, "COMMIT", PGRES_COMMAND_OK, err, errlen, NULL);

		char ver[16];
		const char *params[2] = {ver, migrations[i].name};
		util_fmt(ver, sizeof(ver), "%d", migrations[i].version);
		if (migrations[i].sql && (rc = exec_startup(be, migrations[i].sql, PGRES_COMMAND_OK,
		                                            err, errlen, NULL)) != 0)
			goto fail;
		if (migrations[i].run && (rc = migrations[i].run(be, err, errlen)) != 0)
			goto fail;
		r = PQexecParams(be->conn,
		                 "INSERT INTO schema_migrations (version, name)"
		                 " VALUES ($1::integer, $2)",
		                 2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			store__pg_set_err(err, errlen, "migrations", PQerrorMessage(be->conn));
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

/* Blocking PQexecParams for a data migration (text parameters); *out gets
 * the result when want is PGRES_TUPLES_OK.  Returns 0 or DLRD_EIO. */
static int exec_params(struct pg_be *be, const char *sql, int n, const char *const *params,
                       ExecStatusType want, char *err, size_t errlen, PGresult **out)
{
	PGresult *r = PQexecParams(be->conn, sql, n, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(r) != want) {
		const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		store__pg_set_err(err, errlen, "migrations", m ? m : PQerrorMessage(be->conn));
		PQclear(r);
		return DLRD_EIO;
	}
	if (out)
		*out = r;
	else
		PQclear(r);
	return 0;
}

/* Rows a data migration reads per statement: bounded memory, however large
 * the table. */
#define MIGRATE_CHUNK      512
#define MIGRATE_CHUNK_TEXT "512"

/* A text column of r, NULL for SQL NULL. */
static const char *col(const PGresult *r, int row, int c)
{
	return PQgetisnull(r, row, c) ? NULL : PQgetvalue(r, row, c);
}

/*
 * Migration 5, in C: SQLite's migration 7 (see migrate_privacy_ids() in
 * sqlite.c for what and why).  Runs inside the migration's transaction under
 * the advisory lock, so with several nodes starting together it runs once.
 * The new dedup key cannot meet another row's under the unique (provider,
 * dedup_key): it covers a tag that only this migration and a newer dlrd
 * write, and the newer dlrd writes only once this migration is recorded.
 * (A node still running an older binary keeps writing the old form until it
 * is stopped: see docs/deployment.md, upgrades.)
 */
static int migrate_privacy_ids(struct pg_be *be, char *err, size_t errlen)
{
	static const char *const need_key =
	    "postgresql: migration 5 needs privacy.hash_key (the key of the recipient hash)";
	PGresult *r = NULL;
	struct arena a;
	char *tok = NULL, *key = NULL; /* keyset position in api_idempotency */
	size_t n_ev = 0, n_req = 0;
	int rc = 0, n;

	arena_init(&a, NULL, 0);
	for (size_t p = 0; provider_table[p]; p++) {
		char last[24] = "0";
		if (!provider_table[p]->upgrade_event_id)
			continue;
		do {
			const char *sp[3] = {provider_table[p]->name, last, MIGRATE_CHUNK_TEXT};
			if ((rc = exec_params(be,
			                      "SELECT id, provider_event_id, provider_message_id,"
			                      " raw_status, error_code FROM sms_message_events"
			                      " WHERE provider = $1 AND id > $2::bigint AND"
			                      " provider_event_id IS NOT NULL ORDER BY id"
			                      " LIMIT $3::integer",
			                      3, sp, PGRES_TUPLES_OK, err, errlen, &r)) != 0)
				goto out;
			n = PQntuples(r);
			if (n && !privacy_has_key()) {
				util_fmt(err, errlen, "%s", need_key);
				rc = DLRD_ECONFIG;
				goto out;
			}
			for (int i = 0; i < n; i++) {
				const char *nid;
				char dedup[65];
				arena_reset(&a);
				if (!provider_upgrade_event_id(
				        &a, provider_table[p]->name, col(r, i, 1), col(r, i, 2),
				        col(r, i, 3), col(r, i, 4), &nid, dedup))
					continue;
				const char *up[3] = {nid, dedup, col(r, i, 0)};
				if ((rc = exec_params(
				         be,
				         "UPDATE sms_message_events SET provider_event_id ="
				         " $1, dedup_key = $2 WHERE id = $3::bigint",
				         3, up, PGRES_COMMAND_OK, err, errlen, NULL)) != 0)
					goto out;
				n_ev++;
			}
			if (n)
				util_strlcpy(last, PQgetvalue(r, n - 1, 0), sizeof(last));
			PQclear(r);
			r = NULL;
		} while (n == MIGRATE_CHUNK);
	}
	/* idempotency fingerprints, in primary-key order ('' sorts first) */
	tok = xstrdup("");
	key = xstrdup("");
	do {
		const char *sp[3] = {tok, key, MIGRATE_CHUNK_TEXT};
		rc = exec_params(be,
		                 "SELECT token_hash, idem_key, request_hash FROM api_idempotency"
		                 " WHERE (token_hash, idem_key) > ($1, $2)"
		                 " ORDER BY token_hash, idem_key LIMIT $3::integer",
		                 3, sp, PGRES_TUPLES_OK, err, errlen, &r);
		if (rc != 0)
			break;
		n = PQntuples(r);
		if (n && !privacy_has_key()) {
			util_fmt(err, errlen, "%s", need_key);
			rc = DLRD_ECONFIG;
			break;
		}
		for (int i = 0; i < n && rc == 0; i++) {
			char h[65];
			/* anything but a SHA-256 in hex never matched a request */
			if (privacy_request_hash_rekey(col(r, i, 2), h) != 0)
				continue;
			const char *up[3] = {h, col(r, i, 0), col(r, i, 1)};
			rc = exec_params(be,
			                 "UPDATE api_idempotency SET request_hash = $1"
			                 " WHERE token_hash = $2 AND idem_key = $3",
			                 3, up, PGRES_COMMAND_OK, err, errlen, NULL);
			n_req += rc == 0;
		}
		if (rc == 0 && n) {
			free(tok);
			free(key);
			tok = xstrdup(PQgetvalue(r, n - 1, 0));
			key = xstrdup(PQgetvalue(r, n - 1, 1));
		}
		PQclear(r);
		r = NULL;
	} while (rc == 0 && n == MIGRATE_CHUNK);
	if (rc == 0)
		LOG_I("privacy_ids_migrated", "backend=postgresql events=%zu request_hashes=%zu",
		      n_ev, n_req);
out:
	PQclear(r);
	free(tok);
	free(key);
	arena_fini(&a);
	return rc;
}

/*
 * Per-session settings and prepared statements, after every (re)connection.
 * statement_timeout bounds one batch on the server; a node that dies in the
 * middle of a transaction loses its row locks after
 * idle_in_transaction_session_timeout.  lock_timeout is 0 whatever the role
 * or database says: waiting for the summary row another node's batch holds
 * is how nodes serialize, and statement_timeout bounds that wait (a shorter
 * lock_timeout failed every callback of the batch with 55P03).
 * client_min_messages is warning, also whatever the role or database says:
 * the COMMIT's warning on_notice() looks for must reach us.
 * storage.synchronous: full keeps the server's synchronous_commit unless it
 * is off (then on: a 2xx must survive a crash of the database server);
 * normal turns it off for this session.
 */
static int setup_session(struct pg_be *be, char *err, size_t errlen)
{
	struct pg_fail f;
	int rc;

#define SESSION_COMMON                                                                             \
	"SET statement_timeout = '10s'; SET lock_timeout = 0;"                                     \
	" SET client_min_messages = warning;"                                                      \
	" SET idle_in_transaction_session_timeout = '30s';"
	static const char full[] =
	    SESSION_COMMON " SELECT set_config('synchronous_commit', CASE WHEN"
	                   " current_setting('synchronous_commit') = 'off' THEN 'on'"
	                   " ELSE current_setting('synchronous_commit') END, false)";
	static const char normal[] = SESSION_COMMON " SET synchronous_commit = off";
#undef SESSION_COMMON
	rc = run_simple(be, "session settings", be->sync == SYNC_FULL ? full : normal,
	                PG_SIMPLE_TIMEOUT_MS, &f, err, errlen);
	if (rc)
		return rc;
	for (int i = 0; i < S__COUNT; i++) {
		PGresult *r = PQprepare(be->conn, stmts[i].name, stmts[i].sql, stmts[i].nparams,
		                        stmts[i].types);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			store__pg_set_err(err, errlen, "preparing statements",
			                  PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
			                      ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
			                      : PQerrorMessage(be->conn));
			PQclear(r);
			return DLRD_EIO;
		}
		PQclear(r);
	}
	return store__pg_api_prepare(be->conn, err, errlen);
}

/* Whether the batch's COMMIT is queued and every result before the
 * statement that precedes it has been read: a notice parsed now belongs to
 * one of those two (libpq handles a notice as soon as it parses it, which
 * may be before the previous statement's result has been taken). */
static bool commit_is_due(const struct pg_be *be)
{
	return be->slot_tail > 0 && be->slots[be->slot_tail - 1].kind == SL_COMMIT &&
	       be->slot_tail - be->slot_head <= 2;
}

/* Server notices ("relation ... already exists, skipping") go to the debug
 * log instead of libpq's default, a bare line on stderr.  A WARNING with
 * the COMMIT is how PostgreSQL ends a COMMIT whose wait for a synchronous
 * standby was cancelled (pg_cancel_backend(), a tool): "committed locally,
 * but might not have been replicated to the standby", with the COMMIT's
 * result saying COMMIT.  The batch is then not acknowledged (503; the
 * provider's retry is a duplicate).  By SQLSTATE (01000) and the
 * untranslated severity, since the message text depends on lc_messages;
 * none of the batch's own statements raises a warning. */
static void on_notice(void *arg, const PGresult *r)
{
	struct pg_be *be = arg;
	const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *ss = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	char q[256];

	if (be && sev && ss && !strcmp(sev, "WARNING") && !strcmp(ss, "01000") && commit_is_due(be))
		be->sync_cut = true;
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
		store__pg_set_err(err, errlen, what, PQerrorMessage(c));
		PQfinish(c);
		be->last_attempt_ms = util_now_ms();
		return DLRD_EIO;
	}
	be->conn = c;
	PQsetNoticeReceiver(c, on_notice, be);
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
		store__pg_set_err(err, errlen, "PQsetnonblocking", PQerrorMessage(c));
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
		if (store__pg_alive(be->conn))
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
	store__pg_pool_free(be->pool);
	if (be->conn)
		PQfinish(be->conn);
	if (be->url) {
		explicit_bzero(be->url, strlen(be->url));
		free(be->url);
	}
	free(be->refs);
	free(be->units);
	free(be->apis);
	free(be->pays);
	free(be->slots);
	free(be);
}

/* v as a logfmt value: bare when it is plain and short, else quoted, escaped
 * and cut to fit buf (so four of them fit pg_be.where whole). */
static const char *describe_value(const char *v, char *buf, size_t size)
{
	if (strlen(v) + 1 > size)
		return log_quote(buf, size, v, strlen(v));
	for (const char *p = v; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '=')
			return log_quote(buf, size, v, strlen(v));
	}
	return v;
}

/* "host=... port=... dbname=... user=..." from the parsed URL, without the
 * password or any other option; a value that is not plain (a database name
 * or a socket directory with blanks) is quoted, so the log lines that hold
 * it stay logfmt. */
static void describe(const char *url, char *out, size_t outlen)
{
	char qh[64], qp[24], qd[64], qu[64]; /* with the keys, < sizeof(be->where) */
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
	         describe_value(host       ? host
	                        : hostaddr ? hostaddr
	                                   : "(default)",
	                        qh, sizeof(qh)),
	         describe_value(port ? port : "(default)", qp, sizeof(qp)),
	         describe_value(db ? db : "(default)", qd, sizeof(qd)),
	         describe_value(user ? user : "(default)", qu, sizeof(qu)));
	PQconninfoFree(opts);
}

static int pg_open(const struct config *cfg, void **out, char *err, size_t errlen)
{
	struct pg_be *be = xcalloc(1, sizeof(*be));
	PQconninfoOption *opts;
	const char *ps;
	uint64_t pool = 0;
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
	/* The API's read connections: the same keywords, opened on first use. */
	ps = config_get(cfg, "storage", "read_pool_size");
	if (!ps || util_parse_u64(ps, strlen(ps), &pool) != 0 || pool > 64)
		pool = 0; /* the default */
	be->pool = store__pg_pool_new(be->kw, be->val, be->where, (unsigned)pool);
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
 * the lock order of their summary rows; inbound messages by user and
 * canonical sender (optout_sender_key()), the key and so the lock order of
 * their opt-out rows, whichever provider reported them; then arrival order,
 * so that of a STOP and a START with the same effective time the later
 * arrival wins, as on SQLite (also when two providers reported them). */
static int ref_cmp(const void *pa, const void *pb)
{
	const struct ev_ref *a = pa, *b = pb;
	int c;

	if (a->cls != b->cls)
		return a->cls - b->cls;
	if (a->cls != 1 && (c = cmp_str(a->ev->provider, b->ev->provider)) != 0)
		return c;
	if (a->cls == 0 &&
	    (c = cmp_str(a->ev->provider_message_id, b->ev->provider_message_id)) != 0)
		return c;
	if (a->cls == 1) {
		char ka[LIM_ID_BYTES + 1], kb[LIM_ID_BYTES + 1];
		const char *sa = a->ev->sender_identity, *sb = b->ev->sender_identity;
		if ((c = cmp_str(a->ev->recipient_hash, b->ev->recipient_hash)) != 0)
			return c;
		/* sender ids are capped at LIM_ID_BYTES by the adapters */
		optout_sender_key(sa, sa ? strnlen(sa, LIM_ID_BYTES) : 0, ka);
		optout_sender_key(sb, sb ? strnlen(sb, LIM_ID_BYTES) : 0, kb);
		if ((c = strcmp(ka, kb)) != 0)
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

/* Queues one event's statement into the pipeline. */
static int send_event(struct pg_be *be, const struct ev_ref *r, bool use_json)
{
	const struct dlr_event *ev = r->ev;
	const struct commit_item *it = r->it;
	char now[25], occurred[25], occ_ms[24], uuid[37], word[OPTOUT_WORD_MAX];
	const char *v[24];
	int len[24] = {0}, fmt[24] = {0};
	/* a request that keeps its payload once names it (S_PAYLOAD) */
	const char *pid = it->payload_id[0] ? it->payload_id : NULL;
	const char *payload = pid ? "" : it->raw_payload.p ? it->raw_payload.p : "";
	int payload_len = pid ? 0 : (int)it->raw_payload.n;
	bool json = use_json && r->json && !pid;
	bool has_occ = ev->occurred_ms >= 0 && ev->occurred_ms <= UTIL_TIME_MAX_MS;

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
		len[15] = payload_len;
		fmt[15] = 1;
		v[16] = json ? "t" : "f";
		v[17] = now;
		v[18] = uuid;
		v[19] = ev->review != REVIEW_NONE ? review_reason_name(ev->review) : NULL;
		v[20] = ev->review != REVIEW_NONE ? ev->review_detail : NULL;
		v[21] = ev->recipient_masked;
		/* where the country came from, as sqlite.c's country_source() */
		v[22] = !ev->destination_country  ? NULL
		        : ev->country_from_number ? "number"
		                                  : "provider";
		v[23] = pid;
		return PQsendQueryPrepared(be->conn, stmts[S_STATUS].name, 24, v, len, fmt, 0);
	case 1: {
		bool action =
		    (ev->keyword == KW_OPT_OUT || ev->keyword == KW_OPT_IN) && ev->recipient_hash;
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
		len[9] = payload_len;
		fmt[9] = 1;
		v[10] = json ? "t" : "f";
		v[11] = now;
		v[12] = action ? optout_kind_name(ev->keyword) : NULL;
		v[13] = ev->keyword == KW_OPT_OUT ? "1" : "0";
		v[14] = action ? optout_keyword_word(ev->text, ev->text_len, word) : NULL;
		v[15] = pid;
		return PQsendQueryPrepared(be->conn, stmts[S_INBOUND].name, 16, v, len, fmt, 0);
	}
	default:
		v[0] = now;
		v[1] = ev->provider;
		v[2] = review_reason_name(REVIEW_UNUSABLE);
		v[3] = ev->review_detail;
		v[4] = ev->raw_status;
		v[5] = payload;
		len[5] = payload_len;
		fmt[5] = 1;
		v[6] = json ? "t" : "f";
		v[7] = ev->dedup_key[0] ? ev->dedup_key : NULL;
		v[8] = pid;
		return PQsendQueryPrepared(be->conn, stmts[S_UNUSABLE].name, 9, v, len, fmt, 0);
	}
}

/* What id_array() lists of an item's events. */
enum ids { IDS_PMIDS, IDS_KEYS, IDS_PROVIDERS };

static const char *id_of(const struct dlr_event *ev, enum ids what)
{
	switch (what) {
	case IDS_PMIDS:
		return ev->kind == EV_STATUS ? ev->provider_message_id : NULL;
	case IDS_KEYS:
		return ev->dedup_key;
	default:
		return ev->provider;
	}
}

/* The text[] literal of what an item's events name (the message ids of
 * its status events, the dedup keys of all, their providers): {"a","b"},
 * '"' and '\\' escaped, a value equal to the one before it left out.  The
 * caller frees it. */
static char *id_array(const struct commit_item *it, enum ids what)
{
	size_t cap = 3;
	const char *prev = NULL;
	char *b, *p;

	for (size_t e = 0; e < it->n_events; e++) {
		const char *s = id_of(&it->events[e], what);
		if (s)
			cap += 2 * strlen(s) + 3;
	}
	b = p = xmalloc(cap);
	*p++ = '{';
	for (size_t e = 0; e < it->n_events; e++) {
		const char *s = id_of(&it->events[e], what);
		if (!s || (prev && strcmp(s, prev) == 0))
			continue;
		prev = s;
		if (p > b + 1)
			*p++ = ',';
		*p++ = '"';
		for (; *s; s++) {
			if (*s == '"' || *s == '\\')
				*p++ = '\\';
			*p++ = *s;
		}
		*p++ = '"';
	}
	*p++ = '}';
	*p = '\0';
	return b;
}

/* Queues the row of a request that keeps its payload once (S_PAYLOAD:
 * written when a row of it names the payload). */
static int send_payload(struct pg_be *be, const struct commit_item *it)
{
	char now[25];
	bool keyless = false;
	int ok;

	for (size_t e = 0; e < it->n_events; e++)
		keyless |= it->events[e].kind == EV_UNUSABLE && !it->events[e].dedup_key[0];
	char *pmids = id_array(it, IDS_PMIDS), *keys = id_array(it, IDS_KEYS),
	     *provs = id_array(it, IDS_PROVIDERS);
	const char *v[8] = {it->payload_id,
	                    it->provider,
	                    it->raw_payload.p ? it->raw_payload.p : "",
	                    now,
	                    pmids,
	                    keys,
	                    provs,
	                    keyless ? "t" : "f"};
	int len[8] = {0, 0, (int)it->raw_payload.n, 0, 0, 0, 0, 0},
	    fmt[8] = {0, 0, 1, 0, 0, 0, 0, 0};

	util_rfc3339(it->received_ms, now);
	ok = PQsendQueryPrepared(be->conn, stmts[S_PAYLOAD].name, 8, v, len, fmt, 0);
	free(pmids);
	free(keys);
	free(provs);
	return ok;
}

static int pay_cmp(const void *a, const void *b)
{
	return strcmp((*(struct commit_item *const *)a)->payload_id,
	              (*(struct commit_item *const *)b)->payload_id);
}

/* Reads the outcome of one event's statement into r. */
static bool read_outcome(struct ev_ref *r, const PGresult *res)
{
	if (r->cls == 2) {
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
		    PQnfields(res) != 1)
			return false;
		r->is_new = PQgetvalue(res, 0, 0)[0] == 't';
		r->reviews = r->is_new ? 1 : 0;
		return true;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 2)
		return false;
	r->is_new = PQgetvalue(res, 0, 0)[0] == 't';
	r->reviews = (uint32_t)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
	return true;
}

/* ---- one attempt: the pipeline ---- */

/* Notes that the statement just queued (ok: libpq took it) gives one result
 * for kind / i. */
static bool push(struct pg_be *be, bool ok, enum slot_kind kind, size_t i)
{
	if (!ok)
		return false;
	assert(be->slot_tail < be->slots_cap);
	be->slots[be->slot_tail++] = (struct slot){kind, i};
	return true;
}

static const char *slot_label(void *ctx)
{
	struct pg_be *be = ctx;
	if (be->slot_head == be->slot_tail)
		return "batch";
	switch (be->slots[be->slot_head].kind) {
	case SL_BEGIN:
		return "BEGIN";
	case SL_PAYLOAD:
		return "payload";
	case SL_COMMIT:
		return "COMMIT";
	case SL_API:
	case SL_FOLLOW:
		return "API operation";
	default:
		return "batch";
	}
}

/* One result, for the oldest statement still due. */
static bool on_batch_result(void *ctx, PGresult *r)
{
	struct pg_be *be = ctx;
	ExecStatusType st = PQresultStatus(r);
	const struct slot *s;

	if (be->slot_head == be->slot_tail) {
		be->unexpected = true;
		return false;
	}
	s = &be->slots[be->slot_head++];
	if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_PIPELINE_ABORTED)
		return false; /* the exchange noted the error; the batch fails */
	switch (s->kind) {
	case SL_BEGIN:
	case SL_PAYLOAD:
		be->unexpected |= st != PGRES_COMMAND_OK;
		break;
	case SL_EVENT:
		be->unexpected |= !read_outcome(&be->refs[s->i], r);
		break;
	case SL_API:
		be->apis[s->i].got = true;
		be->unexpected |= !store__pg_api_result(be->apis[s->i].it->op, r);
		break;
	case SL_FOLLOW:
		be->unexpected |= !store__pg_api_follow_result(be->apis[s->i].it->op, r);
		break;
	case SL_COMMIT:
		be->committed =
		    st == PGRES_COMMAND_OK && !strcmp(PQcmdStatus(r), "COMMIT") && !be->sync_cut;
		break;
	}
	return false;
}

/* Sends a Sync and reads every result due.  Returns 0 when all of them came
 * back as expected, else DLRD_EIO (f says whether the connection broke). */
static int exchange(struct pg_be *be, int64_t deadline, struct pg_fail *f, char *err, size_t errlen)
{
	if (store__pg_exchange(be->conn, deadline, on_batch_result, be, slot_label, f, err,
	                       errlen) != 0)
		return DLRD_EIO;
	if (f->failed)
		return DLRD_EIO;
	if (be->unexpected || be->slot_head != be->slot_tail) {
		store__pg_set_err(err, errlen, "batch", "unexpected result");
		return DLRD_EIO;
	}
	return 0;
}

/* Runs the follow-up step of every API item whose first result is in;
 * *queued tells whether that put statements into the pipeline.  false when
 * libpq refused one. */
static bool follow_all(struct pg_be *be, size_t napi, bool *queued)
{
	*queued = false;
	for (size_t a = 0; a < napi; a++) {
		struct api_ref *ar = &be->apis[a];
		bool q = false;
		if (!ar->got || ar->followed)
			continue;
		ar->followed = true;
		if (!store__pg_api_follow(be->conn, ar->it, &q))
			return false;
		if (q && !push(be, true, SL_FOLLOW, a))
			return false;
		*queued |= q;
	}
	return true;
}

static bool str_eq(const char *a, const char *b)
{
	return a && b ? strcmp(a, b) == 0 : a == b;
}

/* Whether API item a is a send whose idempotency key an earlier send of this
 * batch used and whose answer is not stored yet: a must see that answer. */
static bool key_pending(const struct pg_be *be, size_t a)
{
	const struct store_op *op = be->apis[a].it->op;

	if (op->kind != STORE_OP_SEND)
		return false;
	for (size_t b = 0; b < a; b++) {
		const struct store_op *o = be->apis[b].it->op;
		if (o->kind == STORE_OP_SEND && !be->apis[b].followed &&
		    str_eq(o->send.token_hash, op->send.token_hash) &&
		    str_eq(o->send.idem_key, op->send.idem_key))
			return true;
	}
	return false;
}

/* Whether the batch's API items include a reveal. */
static bool holds_reveal(const struct pg_be *be, size_t napi)
{
	for (size_t a = 0; a < napi; a++)
		if (be->apis[a].it->op->kind == STORE_OP_REVEAL)
			return true;
	return false;
}

/*
 * One attempt at the batch.  Without API items: BEGIN, every event, COMMIT
 * and a Sync go out in one pipeline, then every result is read: one round
 * trip.  With API items, in queue order: a second exchange before COMMIT when
 * a send or a reveal needs its follow-up statement (and, rarely, one before
 * a send that reuses the key of an earlier send of the same batch).  Returns
 * 0 once the COMMIT's result said COMMIT, else DLRD_EIO with f and err set.
 * Leaves the connection outside pipeline mode and outside a transaction, or
 * drops it.
 */
static int run_batch(struct pg_be *be, size_t nunits, size_t napi, bool use_json, struct pg_fail *f,
                     char *err, size_t errlen)
{
	PGconn *c = be->conn;
	int64_t deadline = util_now_ms() + PG_BATCH_TIMEOUT_MS;
	bool follow_due = false, queued;

	memset(f, 0, sizeof(*f));
	be->slot_head = be->slot_tail = 0;
	be->committed = be->unexpected = be->sync_cut = false;
	for (size_t a = 0; a < napi; a++) {
		be->apis[a].got = be->apis[a].followed = false;
		store__pg_api_reset(be->apis[a].it->op);
	}
	if (!PQenterPipelineMode(c)) {
		store__pg_set_err(err, errlen, "pipeline", PQerrorMessage(c));
		f->broken = true;
		goto out;
	}
	if (!push(be,
	          PQsendQueryParams(c, "BEGIN ISOLATION LEVEL READ COMMITTED", 0, NULL, NULL, NULL,
	                            NULL, 0),
	          SL_BEGIN, 0))
		goto send_failed;
	/* synchronous=normal commits asynchronously, but a reveal's answer
	 * discloses a number: its audit row must survive a crash of the server
	 * before the number leaves (store_sync()) */
	if (be->sync != SYNC_FULL && holds_reveal(be, napi) &&
	    !push(be,
	          PQsendQueryParams(c, "SET LOCAL synchronous_commit = on", 0, NULL, NULL, NULL,
	                            NULL, 0),
	          SL_BEGIN, 0))
		goto send_failed;
	for (size_t u = 0; u < nunits; u++) {
		const struct unit *un = &be->units[u];
		if (!un->api) {
			for (size_t i = un->start; i < un->end; i++)
				if (!push(be, send_event(be, &be->refs[i], use_json), SL_EVENT, i))
					goto send_failed;
			continue;
		}
		if (key_pending(be, un->start)) {
			if (exchange(be, deadline, f, err, errlen) != 0)
				goto exchanged;
			if (!follow_all(be, napi, &queued))
				goto send_failed;
		}
		if (!push(be, store__pg_api_send(c, be->apis[un->start].it), SL_API, un->start))
			goto send_failed;
		follow_due |= store__pg_api_may_follow(be->apis[un->start].it->op);
	}
	if (follow_due) {
		if (exchange(be, deadline, f, err, errlen) != 0)
			goto exchanged;
		if (!follow_all(be, napi, &queued))
			goto send_failed;
	}
	/* payload rows last (written when a row names them), in id order: a
	 * transaction that waits there for another's payload row waits for
	 * one that is past its events too and locks nothing but payload rows
	 * of greater ids, so the two cannot wait for each other */
	for (size_t i = 0; i < be->npays; i++)
		if (!push(be, send_payload(be, be->pays[i]), SL_PAYLOAD, i))
			goto send_failed;
	if (!push(be, PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0), SL_COMMIT, 0))
		goto send_failed;
	if (exchange(be, deadline, f, err, errlen) != 0)
		goto exchanged;
	/* what is left to follow (a provider id's answer) queues nothing */
	if (!follow_all(be, napi, &queued) || queued) {
		store__pg_set_err(err, errlen, "batch", "a statement after COMMIT");
		f->failed = true;
	}

exchanged:
	if (f->broken)
		goto out;
	if (!PQexitPipelineMode(c)) {
		store__pg_set_err(err, errlen, "pipeline", PQerrorMessage(c));
		f->broken = true;
		goto out;
	}
	if (be->committed && !f->failed && !be->unexpected)
		return 0;
	if (!f->failed && !be->unexpected)
		store__pg_set_err(err, errlen, "COMMIT",
		                  be->sync_cut
		                      ? "committed locally, but the wait for the synchronous"
		                        " standby was cancelled (may not be replicated)"
		                      : "the transaction did not commit");
	rollback_if_open(be);
	return DLRD_EIO;

send_failed:
	store__pg_set_err(err, errlen, "send", PQerrorMessage(c));
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

/* Grows a scratch array to hold n elements of size sz. */
static void *reserve(void *p, size_t *cap, size_t n, size_t sz)
{
	if (n <= *cap)
		return p;
	free(p);
	*cap = n < 64 ? 64 : n;
	return xcalloc(*cap, sz);
}

static int pg_apply(void *p, struct commit_item **items, size_t n, char *err, size_t errlen)
{
	struct pg_be *be = p;
	size_t nev = 0, napi = 0, nunits = 0, k = 0, npays = 0;
	bool use_json = true;
	struct pg_fail f;
	int rc;

	for (size_t i = 0; i < n; i++) {
		if (items[i]->kind != CI_API) {
			nev += items[i]->n_events;
			npays += items[i]->n_events && items[i]->payload_id[0];
			continue;
		}
		if (!items[i]->op || items[i]->op->kind < STORE_OP_SEND ||
		    items[i]->op->kind > STORE_OP_RESOLVE_REVIEW) {
			util_fmt(err, errlen, "postgresql: unknown API operation %d",
			         items[i]->op ? (int)items[i]->op->kind : -1);
			return DLRD_EIO;
		}
		napi++;
	}
	be->refs = reserve(be->refs, &be->refs_cap, nev, sizeof(*be->refs));
	be->apis = reserve(be->apis, &be->apis_cap, napi, sizeof(*be->apis));
	be->units = reserve(be->units, &be->units_cap, 2 * napi + 1, sizeof(*be->units));
	be->pays = reserve(be->pays, &be->pays_cap, npays, sizeof(*be->pays));
	/* BEGIN, a reveal's SET LOCAL, COMMIT; each API item and its follow-up;
	 * each payload row */
	be->slots =
	    reserve(be->slots, &be->slots_cap, nev + 2 * napi + npays + 3, sizeof(*be->slots));
	be->npays = 0;
	for (size_t i = 0; i < n; i++)
		if (items[i]->kind != CI_API && items[i]->n_events && items[i]->payload_id[0])
			be->pays[be->npays++] = items[i];
	if (be->npays > 1)
		qsort(be->pays, be->npays, sizeof(*be->pays), pay_cmp);

	/* Queue order, with each stretch of callbacks between two API items
	 * (the whole batch, without any) sorted into lock order. */
	napi = 0;
	for (size_t i = 0; i < n; i++) {
		struct commit_item *it = items[i];
		if (it->kind == CI_API) {
			be->apis[napi] = (struct api_ref){.it = it};
			be->units[nunits++] = (struct unit){.api = true, .start = napi++};
			continue;
		}
		if (!it->n_events)
			continue;
		if (!nunits || be->units[nunits - 1].api)
			be->units[nunits++] = (struct unit){.api = false, .start = k, .end = k};
		bool json = payload_is_json(it->raw_payload);
		for (size_t e = 0; e < it->n_events; e++, k++) {
			be->refs[k] = (struct ev_ref){.it = it,
			                              .ev = &it->events[e],
			                              .order = k,
			                              .cls = cls_of(&it->events[e]),
			                              .json = json};
		}
		be->units[nunits - 1].end = k;
	}
	for (size_t u = 0; u < nunits; u++) {
		struct unit *un = &be->units[u];
		if (!un->api && un->end - un->start > 1)
			qsort(be->refs + un->start, un->end - un->start, sizeof(*be->refs),
			      ref_cmp);
	}

	for (int attempt = 0;; attempt++) {
		if ((rc = ensure_conn(be, false, err, errlen)) != 0)
			goto failed;
		if (run_batch(be, nunits, napi, use_json, &f, err, errlen) == 0)
			break;
		if (drop_after(&f))
			drop_conn(be, "error in a batch");
		if (attempt + 1 < PG_MAX_ATTEMPTS && retryable(&f)) {
			metrics_storage_retry();
			LOG_W("storage_retry",
			      "backend=postgresql sqlstate=%s attempt=%d events=%zu api=%zu",
			      f.sqlstate, attempt + 1, nev, napi);
			backoff(be, attempt);
			continue;
		}
		/* A payload jansson took as JSON but jsonb refused: once more,
		 * without payload_json, rather than refuse the batch forever. */
		if (use_json && !strncmp(f.sqlstate, "22", 2)) {
			use_json = false;
			continue;
		}
		rc = DLRD_EIO;
		goto failed;
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
		} else if (!r->is_new) {
			r->it->n_dup++; /* a resent unusable payload */
		}
		r->it->n_review += r->reviews;
	}
	return 0;
failed:
	/* nothing of an attempt that did not commit is kept, least of all a
	 * number a reveal decrypted */
	for (size_t a = 0; a < napi; a++)
		store__pg_api_reset(be->apis[a].it->op);
	return rc;
}

/* A real write: a transaction that gets a transaction id (so its COMMIT is
 * written and flushed like a batch's), which also fails on a read-only
 * standby; and 25006 when the transaction is read-only, as on a primary
 * that turned read-only (default_transaction_read_only, reloaded under a
 * session that is already open: txid_current() still works there, every
 * batch fails with 25006).  It touches no table, so it needs no privilege
 * beyond the batches'.  Reconnects first when needed. */
static int pg_probe(void *p, char *err, size_t errlen)
{
	struct pg_be *be = p;
	struct pg_fail f;
	int rc;

	if ((rc = ensure_conn(be, true, err, errlen)) != 0)
		return rc;
	rc = run_simple(be, "probe",
	                "BEGIN; SELECT txid_current();"
	                " DO $$BEGIN IF current_setting('transaction_read_only') = 'on' THEN"
	                " RAISE EXCEPTION USING ERRCODE = 'read_only_sql_transaction',"
	                " MESSAGE = 'the server is read-only'; END IF; END$$; COMMIT",
	                PG_SIMPLE_TIMEOUT_MS, &f, err, errlen);
	if (rc) {
		if (drop_after(&f))
			drop_conn(be, "probe failed");
		else
			rollback_if_open(be);
	}
	return rc;
}

/* The JSON API's reads (postgresql_api.c), on the backend's read pool. */
static int pg_get_message(void *p, struct arena *a, const char *id, struct store_message *out,
                          char *err, size_t errlen)
{
	return store__pg_get_message(((struct pg_be *)p)->pool, a, id, out, err, errlen);
}

static int pg_get_timeline(void *p, struct arena *a, const char *id, bool payloads,
                           struct store_message *msg, struct store_event **events, size_t *n,
                           char *err, size_t errlen)
{
	return store__pg_get_timeline(((struct pg_be *)p)->pool, a, id, payloads, msg, events, n,
	                              err, errlen);
}

static int pg_search(void *p, struct arena *a, const struct store_query *q,
                     struct store_message **rows, size_t *n, char *err, size_t errlen)
{
	return store__pg_search(((struct pg_be *)p)->pool, a, q, rows, n, err, errlen);
}

static int pg_list_review(void *p, struct arena *a, const struct store_review_query *q,
                          struct store_review_item **rows, size_t *n, char *err, size_t errlen)
{
	return store__pg_list_review(((struct pg_be *)p)->pool, a, q, rows, n, err, errlen);
}

static int pg_list_audit(void *p, struct arena *a, const struct store_audit_query *q,
                         struct store_audit_row **rows, size_t *n, char *err, size_t errlen)
{
	return store__pg_list_audit(((struct pg_be *)p)->pool, a, q, rows, n, err, errlen);
}

static int pg_stats(void *p, struct arena *a, const struct store_stats_query *q,
                    struct store_stats_row **rows, size_t *n, char *err, size_t errlen)
{
	return store__pg_stats(((struct pg_be *)p)->pool, a, q, rows, n, err, errlen);
}

const struct store_ops store__pg_ops = {
    .name = "postgresql",
    .accepts = pg_accepts,
    .open = pg_open,
    .close = pg_close,
    .apply = pg_apply,
    .probe = pg_probe,
    .api_writes = true,
    .get_message = pg_get_message,
    .get_timeline = pg_get_timeline,
    .search = pg_search,
    .list_review = pg_list_review,
    .list_audit = pg_list_audit,
    .stats = pg_stats,
};
