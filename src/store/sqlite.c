/* SPDX-License-Identifier: MIT */
/*
 * SQLite backend: the embedded default.
 *
 * One connection, owned by the writer thread (opened by the main thread
 * before the writer starts).  WAL mode.  A batch is one transaction; any
 * error rolls the whole batch back.  An flock on "<db>.lock" keeps a second
 * dlrd off the same file; at open the write lock is taken once, so a
 * database another process holds locked, or a read-only one, stops start-up.
 *
 * Durability (synchronous=full, the default): the batch is durable, and the
 * commit queue may answer 2xx, once the WAL frames its COMMIT wrote are on
 * disk.  SQLite's own synchronous=FULL would fsync inside COMMIT, on the
 * writer thread, which then idles through every fsync.  Instead the
 * connections run synchronous=NORMAL (in WAL mode: no sync at commit, but
 * the WAL is synced before each checkpoint and the database after it) and
 * sqlite_sync(), on the commit queue's syncer thread, calls fdatasync on the
 * WAL while the writer already builds the next batch: one fdatasync covers
 * every commit that returned before it began.  The WAL's directory entry is
 * synced once at open.  A failed fdatasync is sticky (after one, the kernel
 * may have dropped pages we cannot name, so nothing is acknowledged again
 * until a restart recovers from what is on disk: PostgreSQL's rule after
 * "fsyncgate").  The kernel reports a writeback error once per open file,
 * to whichever fdatasync on it returns first: the syncer's and the writer's
 * idle probe's calls are therefore serialized by sync_mu, and each decides
 * from the sticky flag after its own call, so an error the probe collected
 * can never let the syncer acknowledge the batch it covered.  A failed sync
 * of the database by a checkpoint is as final, under either setting, and
 * stops the checkpoints (ckpt_halt()).
 * synchronous=normal skips the fdatasync: fast, and may lose
 * the last acknowledged batches on power loss (never on a crash of dlrd);
 * except a batch holding a reveal, which is synced all the same: its
 * answer discloses a number, and the audit row must outlive the disclosure.
 *
 * Schema and migrations: see src/store/README.md.  The JSON API's half of
 * the backend (its writes inside the batch transaction, its pool of
 * read-only connections) lives in sqlite_api.c.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <libgen.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "commitq.h"
#include "errcat.h"
#include "optout.h"
#include "log.h"
#include "privacy.h"
#include "provider.h"
#include "sqlite_int.h"
#include "status.h"
#include "store_int.h"

struct sqlite_be;
static int migrate_privacy_ids(struct sqlite_be *be, char *err, size_t errlen);

/* Versioned migrations, applied in version order at start-up, each in its
 * own transaction together with its schema_migrations row: its SQL, then its
 * step in C when it has one (a data migration SQL cannot express).  Never
 * edit one that has shipped: add the next.  Version numbers may have gaps
 * (a number reserved by a change still in flight): every migration not yet
 * recorded is applied, so a gap filled by a later binary is applied then,
 * after higher ones; migrations are written so that their order between
 * such neighbours does not matter. */
static const struct {
	int version;
	const char *name;
	const char *sql;                                            /* NULL: none */
	int (*run)(struct sqlite_be *be, char *err, size_t errlen); /* NULL: none */
} migrations[] = {
    {1, "initial schema",
     "CREATE TABLE sms_messages ("
     " id TEXT PRIMARY KEY," /* dlrd's stable id (UUIDv7) */
     " provider TEXT NOT NULL,"
     " provider_message_id TEXT," /* canonical form */
     " recipient_hash TEXT,"      /* keyed HMAC of the E.164 number */
     " destination_country TEXT,"
     " sender_identity TEXT,"
     " template_key TEXT,"
     " use_case TEXT,"
     " origin TEXT NOT NULL," /* 'callback' or 'send' */
     " current_status TEXT NOT NULL,"
     " current_raw_status TEXT,"
     " current_error_code TEXT,"
     " current_occurred_at TEXT,"
     " current_occurred_ms INTEGER NOT NULL DEFAULT -1," /* exact, for precedence */
     " is_final INTEGER NOT NULL DEFAULT 0,"
     " status_mask INTEGER NOT NULL DEFAULT 0,"
     " final_conflict INTEGER NOT NULL DEFAULT 0,"
     " read_receipt INTEGER NOT NULL DEFAULT 0,"
     " event_count INTEGER NOT NULL DEFAULT 0,"
     " callback_count INTEGER NOT NULL DEFAULT 0,"
     " duplicate_count INTEGER NOT NULL DEFAULT 0,"
     " first_callback_at TEXT,"
     " final_at TEXT,"
     " created_at TEXT NOT NULL,"
     " updated_at TEXT NOT NULL"
     ");"
     "CREATE UNIQUE INDEX sms_messages_provider_id ON sms_messages(provider, provider_message_id);"
     "CREATE INDEX sms_messages_open ON sms_messages(is_final, created_at);"
     "CREATE TABLE sms_message_events ("
     " id INTEGER PRIMARY KEY,"
     " message_id TEXT NOT NULL REFERENCES sms_messages(id),"
     " provider TEXT NOT NULL,"
     " provider_message_id TEXT NOT NULL,"
     " provider_event_id TEXT,"
     " dedup_key TEXT NOT NULL,"
     " status TEXT NOT NULL,"
     " raw_status TEXT,"
     " error_code TEXT,"
     " is_final INTEGER NOT NULL,"
     " read_receipt INTEGER NOT NULL DEFAULT 0,"
     " changed_summary INTEGER NOT NULL," /* 0: late or out of order on arrival */
     " provider_occurred_at TEXT,"
     " raw_payload BLOB NOT NULL,"
     " received_at TEXT NOT NULL"
     ");"
     "CREATE UNIQUE INDEX sms_message_events_dedup ON sms_message_events(provider, dedup_key);"
     "CREATE INDEX sms_message_events_message ON sms_message_events(message_id, id);"
     "CREATE TABLE sms_callback_log (" /* every accepted request, duplicates included */
     " id INTEGER PRIMARY KEY,"
     " received_at TEXT NOT NULL,"
     " provider TEXT NOT NULL,"
     " event_id INTEGER NOT NULL REFERENCES sms_message_events(id),"
     " duplicate INTEGER NOT NULL"
     ");"
     "CREATE INDEX sms_callback_log_event ON sms_callback_log(event_id);"
     "CREATE TABLE review_queue ("
     " id INTEGER PRIMARY KEY,"
     " created_at TEXT NOT NULL,"
     " provider TEXT NOT NULL,"
     " reason TEXT NOT NULL," /* unknown_status, unusable_payload, final_conflict */
     " detail TEXT,"
     " message_id TEXT,"
     " event_id INTEGER,"
     " raw_status TEXT,"
     " raw_payload BLOB,"
     " resolved_at TEXT"
     ");"
     "CREATE INDEX review_queue_open ON review_queue(resolved_at, id);",
     NULL},
    {2, "error reasons, inbound messages, opt-outs",
     "ALTER TABLE sms_message_events ADD COLUMN error_reason TEXT;"
     "ALTER TABLE sms_messages ADD COLUMN current_error_reason TEXT;"
     "CREATE TABLE sms_inbound_messages ("
     " id INTEGER PRIMARY KEY,"
     " provider TEXT NOT NULL,"
     " provider_message_id TEXT,"
     " dedup_key TEXT NOT NULL,"
     " sender_hash TEXT," /* keyed HMAC of the user's number */
     " sender_country TEXT,"
     " to_identity TEXT," /* our number or short code */
     " body TEXT,"
     " keyword TEXT NOT NULL," /* none, opt_out, opt_in, help */
     " provider_occurred_at TEXT,"
     " raw_payload BLOB NOT NULL,"
     " received_at TEXT NOT NULL,"
     " retry_count INTEGER NOT NULL DEFAULT 0"
     ");"
     "CREATE UNIQUE INDEX sms_inbound_dedup ON sms_inbound_messages(provider, dedup_key);"
     "CREATE INDEX sms_inbound_sender ON sms_inbound_messages(sender_hash, id);"
     "CREATE TABLE sms_opt_outs (" /* current state per user and sender */
     " recipient_hash TEXT NOT NULL,"
     " sender_identity TEXT NOT NULL," /* '' when the provider did not say */
     " opted_out INTEGER NOT NULL,"
     " keyword TEXT,"
     " inbound_id INTEGER NOT NULL,"
     " effective_at TEXT NOT NULL," /* provider time, else receipt time */
     " updated_at TEXT NOT NULL,"
     " PRIMARY KEY (recipient_hash, sender_identity)"
     ");"
     "CREATE TABLE sms_opt_out_history ("
     " id INTEGER PRIMARY KEY,"
     " recipient_hash TEXT NOT NULL,"
     " sender_identity TEXT NOT NULL,"
     " action TEXT NOT NULL," /* opt_out, opt_in */
     " keyword TEXT,"
     " inbound_id INTEGER NOT NULL,"
     " effective_at TEXT NOT NULL,"
     " received_at TEXT NOT NULL"
     ");"
     "CREATE INDEX sms_opt_out_history_user ON sms_opt_out_history(recipient_hash,"
     " sender_identity, effective_at);",
     NULL},
    {3, "send records, masked and encrypted numbers, idempotency, audit log",
     /* the send side (POST /v1/messages); origin gains 'joined' */
     "ALTER TABLE sms_messages ADD COLUMN action_type TEXT;"
     "ALTER TABLE sms_messages ADD COLUMN action_id TEXT;"
     "ALTER TABLE sms_messages ADD COLUMN metadata TEXT;" /* JSON object text */
     "ALTER TABLE sms_messages ADD COLUMN recipient_timezone TEXT;"
     "ALTER TABLE sms_messages ADD COLUMN recipient_enc BLOB;" /* AES-256-GCM nonce|ct|tag */
     "ALTER TABLE sms_messages ADD COLUMN recipient_key_id TEXT;"
     "ALTER TABLE sms_messages ADD COLUMN recipient_masked TEXT;" /* +44*******23 */
     "ALTER TABLE sms_messages ADD COLUMN country_source TEXT;"   /* app, provider, number */
     "ALTER TABLE sms_messages ADD COLUMN sent_recorded_at TEXT;"
     "ALTER TABLE sms_messages ADD COLUMN recorded_by TEXT;" /* token id of the send */
     "ALTER TABLE review_queue ADD COLUMN resolved_by TEXT;"
     "ALTER TABLE review_queue ADD COLUMN resolution TEXT;"
     "CREATE INDEX sms_messages_created ON sms_messages(created_at);"
     "CREATE INDEX sms_messages_updated ON sms_messages(updated_at);"
     "CREATE INDEX sms_messages_action ON sms_messages(action_type, action_id);"
     "CREATE TABLE api_idempotency (" /* one row per (token, Idempotency-Key) */
     " token_hash TEXT NOT NULL,"
     " idem_key TEXT NOT NULL,"
     " request_hash TEXT NOT NULL," /* SHA-256 of the canonical request */
     " status INTEGER NOT NULL,"
     " body TEXT NOT NULL," /* the first answer, replayed */
     " message_id TEXT,"
     " created_at TEXT NOT NULL,"
     " PRIMARY KEY (token_hash, idem_key)"
     ");"
     "CREATE TABLE audit_log ("
     " id INTEGER PRIMARY KEY,"
     " at TEXT NOT NULL,"
     " actor TEXT NOT NULL," /* token id (hash prefix) */
     " actor_role TEXT NOT NULL,"
     " action TEXT NOT NULL," /* reveal, review_resolve */
     " message_id TEXT,"
     " review_id INTEGER,"
     " reason TEXT NOT NULL"
     ");"
     "CREATE INDEX audit_log_message ON audit_log(message_id, id);",
     NULL},
    {4, "deduplicate events per message",
     /* Same uniqueness (a dedup key always names its message: the provider
      * message id is part of the fallback key, and a provider event id
      * belongs to one message), but keyed by the time-ordered message id, so
      * new entries land on recent index pages instead of a random page per
      * event (the SHA-256 key): measured +20-40% callbacks/s. */
     "DROP INDEX sms_message_events_dedup;"
     "CREATE UNIQUE INDEX sms_message_events_dedup ON sms_message_events(message_id,"
     " dedup_key);",
     NULL},
    {5, "fewer index writes per event",
     /* Measured with bench/ (WAL frames per commit, by b-tree): every index
      * entry written for a late event lands on a page of its own.  The
      * timeline reads a message's few events through the dedup index (same
      * leading column) and sorts them, so the second index on message_id
      * goes; the open-messages index keeps only open rows, so a message
      * turning final deletes one entry instead of moving it.  Together
      * 12.3 -> 9.5 KB written per callback, +10-15% callbacks/s. */
     "DROP INDEX sms_message_events_message;"
     "DROP INDEX sms_messages_open;"
     "CREATE INDEX sms_messages_open ON sms_messages(created_at) WHERE is_final = 0;",
     NULL},
    {6, "opt-outs keyed by the canonical sender",
     /* Opt-outs were keyed by the sender text as the provider wrote it, so
      * a STOP to "447520650000" did not stop a send from "+447520650000".
      * They are now keyed by optout_sender_key() (dlrd_sender_key(), see
      * sqlite_open()).  Two rows of one user whose senders share a key
      * become one: the newest state by effective time stays, as the
      * upsert (Q_UPSERT_OPT_OUT) would have kept it, ties going to the
      * later arrival.  The history keeps every row, re-keyed; the sender
      * as written stays in sms_inbound_messages.to_identity. */
     "DELETE FROM sms_opt_outs WHERE rowid IN (SELECT r FROM (SELECT rowid AS r,"
     " row_number() OVER (PARTITION BY recipient_hash, dlrd_sender_key(sender_identity)"
     " ORDER BY effective_at DESC, updated_at DESC, inbound_id DESC) AS n"
     " FROM sms_opt_outs) WHERE n > 1);"
     "UPDATE sms_opt_outs SET sender_identity = dlrd_sender_key(sender_identity)"
     " WHERE sender_identity <> dlrd_sender_key(sender_identity);"
     "UPDATE sms_opt_out_history SET sender_identity = dlrd_sender_key(sender_identity)"
     " WHERE sender_identity <> dlrd_sender_key(sender_identity);",
     NULL},
    {7, "keyed recipient tags in event ids, keyed request hashes", NULL, migrate_privacy_ids},
    {8, "audit rows follow their review item into a joined send",
     /* A review item moves when its callback-created message is joined to
      * the send (sqlite_api.c's merge); the audit row of its resolution
      * named the old, deleted message and dropped out of
      * GET /v1/audit?message_id=.  The same trigger in the PostgreSQL
      * backend's migration 6.  Rows moved before are mended. */
     "CREATE TRIGGER review_queue_moved AFTER UPDATE OF message_id ON review_queue"
     " WHEN NEW.message_id IS NOT OLD.message_id BEGIN"
     " UPDATE audit_log SET message_id = NEW.message_id"
     " WHERE review_id = NEW.id AND message_id IS OLD.message_id;"
     " END;"
     "UPDATE audit_log SET message_id = (SELECT r.message_id FROM review_queue r"
     " WHERE r.id = audit_log.review_id)"
     " WHERE review_id IS NOT NULL AND EXISTS (SELECT 1 FROM review_queue r"
     " WHERE r.id = audit_log.review_id AND r.message_id IS NOT audit_log.message_id"
     " AND r.message_id IS NOT NULL);",
     NULL},
    {9, "an unusable payload sent again is one review item",
     /* A provider resends a request whose 2xx it did not get; for an
      * unusable payload each resend added a review item of its own.  Such
      * items now carry a keyed digest of the request (http.c), unique per
      * provider, and a resend counts in retry_count, as an inbound
      * message's does.  Older items have no key and stay as they are. */
     "ALTER TABLE review_queue ADD COLUMN dedup_key TEXT;"
     "ALTER TABLE review_queue ADD COLUMN retry_count INTEGER NOT NULL DEFAULT 0;"
     "CREATE UNIQUE INDEX review_queue_dedup ON review_queue(provider, dedup_key)"
     " WHERE dedup_key IS NOT NULL;",
     NULL},
    {10, "messages found by their action id alone",
     /* GET /v1/messages?action_id= without action_type could not use
      * sms_messages_action (action_type first) and read every message.
      * Partial: only sends carry an action, so callbacks write nothing
      * to it. */
     "CREATE INDEX sms_messages_action_id ON sms_messages(action_id)"
     " WHERE action_id IS NOT NULL;",
     NULL},
    {11, "one payload row for all the events of a request",
     /* A batch (Infobip, Sinch: up to LIM_EVENTS_PER_REQUEST events in one
      * body) stored its whole body with each event: a 64 KB request of
      * 636 results wrote 42 MB.  Such a body is now kept once, named by a
      * keyed digest of provider and body (http.c, so a resend names the
      * same row), and the rows that came with it hold an empty raw_payload
      * and its payload_id.  A request with one event keeps its payload in
      * its row, as before; older rows are unchanged. */
     "CREATE TABLE sms_payloads ("
     " id TEXT PRIMARY KEY,"
     " provider TEXT NOT NULL,"
     " raw_payload BLOB NOT NULL,"
     " received_at TEXT NOT NULL"
     ");"
     "ALTER TABLE sms_message_events ADD COLUMN payload_id TEXT;"
     "ALTER TABLE sms_inbound_messages ADD COLUMN payload_id TEXT;"
     "ALTER TABLE review_queue ADD COLUMN payload_id TEXT;",
     NULL},
    {12, "open messages found newest first",
     /* GET /v1/messages?stuck_for= (and final=false) lists open messages
      * newest first, by id.  The open-messages index was keyed by
      * created_at, which cannot give that order without sorting every
      * open message, so SQLite read every message by id instead and
      * skipped the final ones (most of them): a hundred or a thousand
      * rows read per row shown, the whole table for the last page.  Keyed
      * by id it gives the order, and it stays partial: a message turning
      * final deletes one entry, as before. */
     "DROP INDEX sms_messages_open;"
     "CREATE INDEX sms_messages_open ON sms_messages(id) WHERE is_final = 0;",
     NULL},
    {13, "review items moved by index",
     /* The join of a callback-created message into its send moves its
      * review items (sqlite_api.c, W_MOVE_REVIEW); review_queue had no
      * index by message, so every such PATCH read the whole review queue
      * in the writer's transaction while callbacks waited.  PostgreSQL
      * has had review_queue_message since its migration 3.  Partial: the
      * items of an unusable payload name no message. */
     "CREATE INDEX review_queue_message ON review_queue(message_id)"
     " WHERE message_id IS NOT NULL;",
     NULL},
};

enum {
	Q_FIND_MSG,
	Q_INSERT_MSG,
	Q_INSERT_EVENT,
	Q_FIND_EVENT,
	Q_UPDATE_MSG,
	Q_COUNT_DUP,
	Q_INSERT_LOG,
	Q_INSERT_REVIEW,
	Q_INSERT_UNUSABLE,
	Q_COUNT_UNUSABLE_DUP,
	Q_INSERT_INBOUND,
	Q_COUNT_INBOUND_DUP,
	Q_INSERT_OPT_HISTORY,
	Q_UPSERT_OPT_OUT,
	Q_INSERT_PAYLOAD,
	Q__COUNT
};

static const char *const queries[Q__COUNT] = {
    [Q_FIND_MSG] = "SELECT id, current_status, current_occurred_ms, current_error_code,"
                   " current_raw_status, status_mask, read_receipt, is_final, rowid"
                   " FROM sms_messages WHERE provider = ?1 AND provider_message_id = ?2",
    [Q_INSERT_MSG] = "INSERT INTO sms_messages (id, provider, provider_message_id,"
                     " recipient_hash, destination_country, sender_identity, origin,"
                     " current_status, created_at, updated_at, recipient_masked, country_source)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'callback', 'accepted', ?7, ?7, ?8, ?9)",
    [Q_INSERT_EVENT] = "INSERT INTO sms_message_events (message_id, provider,"
                       " provider_message_id, provider_event_id, dedup_key, status,"
                       " raw_status, error_code, is_final, read_receipt, changed_summary,"
                       " provider_occurred_at, raw_payload, received_at, error_reason,"
                       " payload_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
                       " ?13, ?14, ?15, ?16)"
                       " ON CONFLICT (message_id, dedup_key) DO NOTHING",
    [Q_FIND_EVENT] = "SELECT id FROM sms_message_events WHERE message_id = ?1 AND dedup_key = ?2",
    /* A message's summary, written once per batch (struct msg_slot). */
    [Q_UPDATE_MSG] = "UPDATE sms_messages SET current_status = ?2, current_raw_status = ?3,"
                     " current_error_code = ?4, current_occurred_at = ?5, is_final = ?6,"
                     " current_occurred_ms = ?7,"
                     " current_error_reason = CASE WHEN ?8 THEN ?9 ELSE current_error_reason END,"
                     " status_mask = ?10, final_conflict = ?11, read_receipt = ?12,"
                     " event_count = event_count + ?13, callback_count = callback_count + ?14,"
                     " duplicate_count = duplicate_count + ?15,"
                     /* receipt times as PostgreSQL keeps them: the
                      * earliest first callback and final, the latest
                      * update (canonical text compares as time) */
                     " first_callback_at = CASE WHEN first_callback_at IS NULL"
                     " OR ?16 < first_callback_at THEN ?16 ELSE first_callback_at END,"
                     " final_at = CASE WHEN final_at IS NULL OR ?17 < final_at THEN ?17"
                     " ELSE final_at END,"
                     " recipient_hash = coalesce(recipient_hash, ?18),"
                     " recipient_masked = coalesce(recipient_masked, ?19),"
                     /* every right-hand side reads the row as it was: a
                      * provider's country replaces one taken from the
                      * number, any country fills a row without one */
                     " country_source = CASE WHEN destination_country IS NULL"
                     " OR (?20 = 'provider' AND country_source = 'number') THEN ?20"
                     " ELSE country_source END,"
                     " destination_country = CASE WHEN destination_country IS NULL"
                     " OR (?20 = 'provider' AND country_source = 'number') THEN ?21"
                     " ELSE destination_country END,"
                     " sender_identity = coalesce(sender_identity, ?22),"
                     " updated_at = max(updated_at, ?23) WHERE rowid = ?1",
    /* ... when the batch brought only duplicates */
    [Q_COUNT_DUP] = "UPDATE sms_messages SET callback_count = callback_count + ?3,"
                    " duplicate_count = duplicate_count + ?3, updated_at = max(updated_at, ?2)"
                    " WHERE rowid = ?1",
    [Q_INSERT_LOG] = "INSERT INTO sms_callback_log (received_at, provider, event_id, duplicate)"
                     " VALUES (?1, ?2, ?3, ?4)",
    [Q_INSERT_INBOUND] = "INSERT INTO sms_inbound_messages (provider, provider_message_id,"
                         " dedup_key, sender_hash, sender_country, to_identity, body, keyword,"
                         " provider_occurred_at, raw_payload, received_at, payload_id)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                         " ON CONFLICT (provider, dedup_key) DO NOTHING",
    [Q_COUNT_INBOUND_DUP] = "UPDATE sms_inbound_messages SET retry_count = retry_count + 1"
                            " WHERE provider = ?1 AND dedup_key = ?2",
    [Q_INSERT_OPT_HISTORY] = "INSERT INTO sms_opt_out_history (recipient_hash,"
                             " sender_identity, action, keyword, inbound_id, effective_at,"
                             " received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    /* The latest action by effective time wins, whatever the arrival order. */
    [Q_UPSERT_OPT_OUT] = "INSERT INTO sms_opt_outs (recipient_hash, sender_identity,"
                         " opted_out, keyword, inbound_id, effective_at, updated_at)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                         " ON CONFLICT (recipient_hash, sender_identity) DO UPDATE SET"
                         " opted_out = excluded.opted_out, keyword = excluded.keyword,"
                         " inbound_id = excluded.inbound_id, effective_at = excluded.effective_at,"
                         " updated_at = excluded.updated_at"
                         " WHERE excluded.effective_at >= sms_opt_outs.effective_at",
    [Q_INSERT_REVIEW] = "INSERT INTO review_queue (created_at, provider, reason, detail,"
                        " message_id, event_id, raw_status, raw_payload, payload_id)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [Q_INSERT_UNUSABLE] = "INSERT INTO review_queue (created_at, provider, reason, detail,"
                          " raw_status, raw_payload, dedup_key, payload_id)"
                          " VALUES (?1, ?2, 'unusable_payload', ?3, ?4, ?5, ?6, ?7)"
                          " ON CONFLICT DO NOTHING",
    [Q_COUNT_UNUSABLE_DUP] = "UPDATE review_queue SET retry_count = retry_count + 1"
                             " WHERE provider = ?1 AND dedup_key = ?2",
    /* a resend names the same row: the first copy stays */
    [Q_INSERT_PAYLOAD] = "INSERT INTO sms_payloads (id, provider, raw_payload, received_at)"
                         " VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
};

/* Checkpoints run on a thread of their own, with a connection of their own,
 * so that copying WAL pages back into the database (and its fsync) never
 * happens inside a commit the HTTP side is waiting for.  Like PostgreSQL's
 * checkpointer.  A checkpoint copies each page once however often the WAL
 * rewrote it, so a longer WAL copies less per callback (4000 -> 16000 pages
 * measured 9.5 -> 8 KB written per callback and +8% callbacks/s, bench/).
 *
 * The cycle, driven by the writer's WAL hook after each commit: once the WAL
 * holds CKPT_PAGES frames, the thread copies them back (PASSIVE: never
 * blocks the writer), again after each commit that finds more than
 * 1/CKPT_CATCHUP_DIV of that left, since the writer keeps adding frames
 * meanwhile (and never wakes it while it runs, see wal_hook()).  Then the
 * writer copies the few frames left itself (sqlite_maintain(), about a
 * millisecond, while the syncer syncs the batch it just committed): with the
 * whole WAL in the database and no other writer, its next transaction starts
 * the WAL over from the beginning.  Without that last step, under constant
 * load the thread never quite catches up, the WAL never starts over (190 MB
 * after 10 s of bench/) and the thread runs hundreds of tiny checkpoints a
 * second, each copying hot pages again: measured 3-4% less CPU and ~1.3 KB
 * less written per callback with it. */
#define CKPT_PAGES       16000 /* 64 MiB at 4 KiB pages */
#define CKPT_CATCHUP_DIV 16    /* the writer copies the last 1/16th itself */
#define CKPT_LIMIT       4     /* the writer copies it all at 4 cycles' worth */
#define CKPT_IDLE_MS     5000

struct checkpointer {
	sqlite3 *db; /* the checkpointer's own connection */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv, idle; /* the thread waits on cv, the writer on idle */
	bool wanted, stopping;   /* guarded by mu */
	bool started;
	int pages;              /* CKPT_PAGES, or DLRD_TEST_CKPT_PAGES */
	int delay_ms;           /* DLRD_TEST_CKPT_DELAY_MS: tests, a slow disk */
	_Atomic bool running;   /* the thread is checkpointing */
	bool catch_up;          /* writer thread only */
	_Atomic int backfilled; /* WAL frames in the database, after the last checkpoint */
	/* No more checkpoints, ever: a sync of the database by one failed, or
	 * one of the WAL by sqlite_sync() (ckpt_halt()) */
	_Atomic bool halted;
};

/* The batch's summary cache.  Events of one message cluster in time (queued,
 * sending, sent within a second), so a batch often holds several of them: the
 * summary row is read once per batch, folded in memory, and written once
 * before COMMIT (or before an API item, which may touch the row), instead of
 * a read and an UPDATE per event.  The fold is the same status_fold(), in
 * the same order, so the result is what per-event updates would give. */
struct msg_slot {
	const char *provider, *pmid; /* the key; borrowed from the batch's events */
	char id[37];
	sqlite3_int64 rowid;
	struct status_summary sum; /* top's strings: in strs or in an event */
	char strs[2 * 256];
	bool dirty;
	/* what the batch changes, written by flush_slot() */
	uint32_t d_events, d_dups;
	bool changed;                                  /* some new event changed the top */
	const char *error_reason;                      /* of the last one that did */
	const char *recipient_hash;                    /* first non-NULL of the batch's events, */
	const char *recipient_masked;                  /* each kept only where the row has none */
	const char *country, *country_source, *sender; /* country: the first, or the
	                                                * provider's (apply_event) */
	char first_callback_at[25], final_at[25], updated_at[25]; /* "" = none */
};

struct msg_cache {
	struct msg_slot *slots; /* cap of them, never moved during a batch */
	size_t n, cap;
	int32_t *index; /* open addressing, mask + 1 entries, -1 = empty */
	size_t mask;
};

struct sqlite_be {
	sqlite3 *db;
	struct checkpointer ckpt;
	struct msg_cache cache;
	struct store__sqlite_api *api; /* the JSON API's statements and read pool */
	sqlite3_stmt *stmt[Q__COUNT];
	sqlite3_stmt *begin, *commit, *rollback;
	int lock_fd;
	int wal_fd;              /* the WAL, for sqlite_sync() */
	bool sync_full;          /* synchronous=full: every batch is synced */
	pthread_mutex_t sync_mu; /* one fdatasync of wal_fd at a time */
	atomic_bool sync_error;  /* sticky: a WAL fdatasync failed; set under sync_mu */
	char *path;
};

static bool sqlite_accepts(const char *url)
{
	return strncmp(url, "sqlite:", 7) == 0;
}

static int fail(struct sqlite_be *be, char *err, size_t errlen, const char *what)
{
	util_fmt(err, errlen, "sqlite: %s: %s", what, sqlite3_errmsg(be->db));
	return DLRD_EIO;
}

static int exec(struct sqlite_be *be, const char *sql, char *err, size_t errlen)
{
	if (sqlite3_exec(be->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return fail(be, err, errlen, sql);
	return 0;
}

/* dlrd_sender_key(text): optout_sender_key() for SQL, on the writer's
 * connection (migration 6 re-keys stored opt-outs with it). */
static void sql_sender_key(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const char *s = (const char *)sqlite3_value_text(argv[0]);
	size_t n = s ? (size_t)sqlite3_value_bytes(argv[0]) : 0;
	char *key = xmalloc(n + 1);

	(void)argc;
	size_t kl = optout_sender_key(s, n, key);
	sqlite3_result_text(ctx, key, (int)kl, free);
}

/* Binding helpers: NULL strings bind as SQL NULL. */
static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

/* Column i of the current row as text in the arena; NULL for SQL NULL. */
static const char *col_dup(struct arena *a, sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? arena_strndup(a, (const char *)t, (size_t)sqlite3_column_bytes(st, i)) : NULL;
}

/* Whether schema_migrations records version; -1 on error. */
static int migration_applied(struct sqlite_be *be, int version)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(be->db, "SELECT 1 FROM schema_migrations WHERE version = ?1", -1,
	                       &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int(st, 1, version);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int migrate(struct sqlite_be *be, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc, unknown = 0;

	rc = exec(be,
	          "CREATE TABLE IF NOT EXISTS schema_migrations ("
	          " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
	          err, errlen);
	if (rc)
		return rc;
	/* a recorded version this binary does not know: a newer dlrd (or a
	 * change this one lacks) made the schema */
	if (sqlite3_prepare_v2(be->db, "SELECT version FROM schema_migrations ORDER BY version", -1,
	                       &st, NULL) != SQLITE_OK)
		return fail(be, err, errlen, "reading schema version");
	while (!unknown && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int v = sqlite3_column_int(st, 0);
		size_t i;
		for (i = 0; i < ARRAY_LEN(migrations) && migrations[i].version != v; i++)
			;
		if (i == ARRAY_LEN(migrations))
			unknown = v;
	}
	sqlite3_finalize(st);
	if (unknown) {
		util_fmt(err, errlen,
		         "sqlite: database schema version %d is newer than this dlrd (it does not "
		         "know that migration)",
		         unknown);
		return DLRD_EIO;
	}
	for (size_t i = 0; i < ARRAY_LEN(migrations); i++) {
		char now[25], ins[256];
		int done = migration_applied(be, migrations[i].version);
		if (done < 0)
			return fail(be, err, errlen, "reading schema version");
		if (done)
			continue;
		util_rfc3339(util_now_ms(), now);
		util_fmt(ins, sizeof(ins), "INSERT INTO schema_migrations VALUES (%d, '%s', '%s')",
		         migrations[i].version, migrations[i].name, now);
		if ((rc = exec(be, "BEGIN IMMEDIATE", err, errlen)) != 0)
			return rc;
		if ((migrations[i].sql && (rc = exec(be, migrations[i].sql, err, errlen)) != 0) ||
		    (migrations[i].run && (rc = migrations[i].run(be, err, errlen)) != 0) ||
		    (rc = exec(be, ins, err, errlen)) != 0 ||
		    (rc = exec(be, "COMMIT", err, errlen)) != 0) {
			sqlite3_exec(be->db, "ROLLBACK", NULL, NULL, NULL);
			return rc;
		}
		LOG_I("migration_applied", "backend=sqlite version=%d name=\"%s\"",
		      migrations[i].version, migrations[i].name);
	}
	return 0;
}

/* Rows a data migration reads per statement: bounded memory, however large
 * the table. */
#define MIGRATE_CHUNK 512

/*
 * Migration 7, in C: a dlrd before the recipient tag (privacy.h) stored
 * Telnyx and Sinch event ids with the recipient's number in them, and the
 * API's idempotency fingerprints as a plain SHA-256 of a body holding the
 * number.  Each event id of a provider with an upgrade_event_id hook is
 * rewritten, with its dedup key, to exactly what parse() and event_finish()
 * give that callback now, so a retry arriving after the upgrade is still a
 * duplicate; each request_hash is rekeyed (privacy_request_hash_rekey), so a
 * replayed send still matches.  Ids without a number, or already tagged,
 * are left alone.  The new dedup key cannot meet another row's under the
 * unique (message_id, dedup_key): it covers a tag that only this migration
 * and a newer dlrd write, and nothing has written one yet.  Needs the
 * privacy key, and says so when it is missing and a row needs it.
 */
static int migrate_privacy_ids(struct sqlite_be *be, char *err, size_t errlen)
{
	static const char *const need_key =
	    "sqlite: migration 7 needs privacy.hash_key (the key of the recipient hash)";
	struct row {
		sqlite3_int64 id;
		const char *eid, *pmid, *raw, *code, *old;
	} rows[MIGRATE_CHUNK];
	sqlite3_stmt *sel = NULL, *upd = NULL;
	struct arena a;
	size_t n_ev = 0, n_req = 0, n;
	int rc = 0;

	arena_init(&a, NULL, 0);
	/* event ids, provider by provider */
	if (sqlite3_prepare_v2(be->db,
	                       "SELECT id, provider_event_id, provider_message_id, raw_status,"
	                       " error_code FROM sms_message_events WHERE provider = ?1 AND"
	                       " id > ?2 AND provider_event_id IS NOT NULL ORDER BY id LIMIT ?3",
	                       -1, &sel, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(be->db,
	                       "UPDATE sms_message_events SET provider_event_id = ?1,"
	                       " dedup_key = ?2 WHERE id = ?3",
	                       -1, &upd, NULL) != SQLITE_OK) {
		rc = fail(be, err, errlen, "migration 7");
		goto out;
	}
	for (size_t p = 0; provider_table[p]; p++) {
		sqlite3_int64 last = 0;
		if (!provider_table[p]->upgrade_event_id)
			continue;
		do {
			sqlite3_reset(sel);
			sqlite3_bind_text(sel, 1, provider_table[p]->name, -1, SQLITE_STATIC);
			sqlite3_bind_int64(sel, 2, last);
			sqlite3_bind_int(sel, 3, MIGRATE_CHUNK);
			arena_reset(&a);
			for (n = 0; (rc = sqlite3_step(sel)) == SQLITE_ROW; n++) {
				rows[n].id = sqlite3_column_int64(sel, 0);
				rows[n].eid = col_dup(&a, sel, 1);
				rows[n].pmid = col_dup(&a, sel, 2);
				rows[n].raw = col_dup(&a, sel, 3);
				rows[n].code = col_dup(&a, sel, 4);
				last = rows[n].id;
			}
			if (rc != SQLITE_DONE) {
				rc = fail(be, err, errlen, "migration 7: reading events");
				goto out;
			}
			rc = 0;
			if (n && !privacy_has_key()) {
				util_fmt(err, errlen, "%s", need_key);
				rc = DLRD_ECONFIG;
				goto out;
			}
			for (size_t i = 0; i < n; i++) {
				const char *nid;
				char key[65];
				if (!provider_upgrade_event_id(
				        &a, provider_table[p]->name, rows[i].eid, rows[i].pmid,
				        rows[i].raw, rows[i].code, &nid, key))
					continue;
				sqlite3_reset(upd);
				bind_text(upd, 1, nid);
				bind_text(upd, 2, key);
				sqlite3_bind_int64(upd, 3, rows[i].id);
				if (sqlite3_step(upd) != SQLITE_DONE) {
					rc = fail(be, err, errlen,
					          "migration 7: rewriting an event id");
					goto out;
				}
				n_ev++;
			}
		} while (n == MIGRATE_CHUNK);
	}
	sqlite3_finalize(sel);
	sqlite3_finalize(upd);
	sel = upd = NULL;

	/* idempotency fingerprints */
	if (sqlite3_prepare_v2(be->db,
	                       "SELECT rowid, request_hash FROM api_idempotency WHERE rowid > ?1"
	                       " ORDER BY rowid LIMIT ?2",
	                       -1, &sel, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(be->db,
	                       "UPDATE api_idempotency SET request_hash = ?1 WHERE rowid = ?2", -1,
	                       &upd, NULL) != SQLITE_OK) {
		rc = fail(be, err, errlen, "migration 7");
		goto out;
	}
	sqlite3_int64 last = 0;
	do {
		sqlite3_reset(sel);
		sqlite3_bind_int64(sel, 1, last);
		sqlite3_bind_int(sel, 2, MIGRATE_CHUNK);
		arena_reset(&a);
		for (n = 0; (rc = sqlite3_step(sel)) == SQLITE_ROW; n++) {
			rows[n].id = sqlite3_column_int64(sel, 0);
			rows[n].old = col_dup(&a, sel, 1);
			last = rows[n].id;
		}
		if (rc != SQLITE_DONE) {
			rc = fail(be, err, errlen, "migration 7: reading idempotency keys");
			goto out;
		}
		rc = 0;
		if (n && !privacy_has_key()) {
			util_fmt(err, errlen, "%s", need_key);
			rc = DLRD_ECONFIG;
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			char h[65];
			/* anything but a SHA-256 in hex never matched a request */
			if (privacy_request_hash_rekey(rows[i].old, h) != 0)
				continue;
			sqlite3_reset(upd);
			bind_text(upd, 1, h);
			sqlite3_bind_int64(upd, 2, rows[i].id);
			if (sqlite3_step(upd) != SQLITE_DONE) {
				rc = fail(be, err, errlen, "migration 7: rekeying a request hash");
				goto out;
			}
			n_req++;
		}
	} while (n == MIGRATE_CHUNK);
	LOG_I("privacy_ids_migrated", "backend=sqlite events=%zu request_hashes=%zu", n_ev, n_req);
out:
	sqlite3_finalize(sel);
	sqlite3_finalize(upd);
	arena_fini(&a);
	return rc;
}

/* Stops checkpoints for good, and with them the restart of the WAL and its
 * removal at close.  A checkpoint writes pages into the database and syncs
 * the database only when it has copied the whole WAL; the WAL starts over,
 * or is deleted at close, only after such a sync succeeded.  When one
 * fails, the kernel may have dropped pages that earlier checkpoints wrote,
 * and a later checkpoint's sync would succeed without them: the WAL would
 * then start over on top of the only copy of acknowledged callbacks.  So
 * the WAL is kept as it is, sqlite_sync() fails from now on (nothing is
 * acknowledged again) and a restart copies the whole WAL back again
 * (recovery rebuilds the wal-index from the WAL file).  Likewise after a
 * failed fdatasync of the WAL: a checkpoint could read back frames the
 * kernel failed to write. */
static void ckpt_halt(struct checkpointer *c, const char *why)
{
	if (!atomic_exchange(&c->halted, true))
		LOG_E("checkpoints_halted",
		      "reason=%s note=\"nothing is acknowledged again until dlrd restarts;"
		      " the WAL is kept for the restart\"",
		      why);
}

/* After a checkpoint on db that returned rc. */
static void ckpt_check(struct checkpointer *c, sqlite3 *db, int rc)
{
	if (rc != SQLITE_OK && store__sqlite_vfs_db_sync_failed(db))
		ckpt_halt(c, "database_sync_failed");
}

/* What a checkpoint leaves for the hook: the frames now in the database,
 * or 0 when it copied the whole WAL (the next transaction starts the WAL
 * over, so the old count would be stale; 0 errs towards the thread). */
static void ckpt_done(struct checkpointer *c, int log, int done)
{
	atomic_store(&c->backfilled, done >= log ? 0 : done);
}

static void *ckpt_main(void *arg)
{
	struct checkpointer *c = arg;

	pthread_setname_np(pthread_self(), "dlrd-checkpoint");
	for (;;) {
		pthread_mutex_lock(&c->mu);
		if (!c->wanted && !c->stopping) {
			struct timespec ts;
			util_deadline(&ts, CKPT_IDLE_MS);
			pthread_cond_timedwait(&c->cv, &c->mu, &ts);
		}
		bool stop = c->stopping;
		c->wanted = false;
		pthread_mutex_unlock(&c->mu);
		if (stop)
			break;
		if (atomic_load(&c->halted))
			continue;
		int log = 0, done = 0;
		atomic_store(&c->running, true);
		int rc =
		    sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
		ckpt_check(c, c->db, rc);
		if (c->delay_ms > 0)
			nanosleep(
			    &(struct timespec){c->delay_ms / 1000, c->delay_ms % 1000 * 1000000L},
			    NULL);
		/* The count first: the hook that sees running clear must read
		 * this checkpoint's count, not the one before it (wal_hook()). */
		if (rc == SQLITE_OK)
			ckpt_done(c, log, done);
		pthread_mutex_lock(&c->mu);
		atomic_store(&c->running, false);
		pthread_cond_signal(&c->idle);
		pthread_mutex_unlock(&c->mu);
		if (rc != SQLITE_OK && rc != SQLITE_BUSY)
			LOG_W("checkpoint_failed", "error=\"%s\"", sqlite3_errstr(rc));
	}
	return NULL;
}

/* The writer's WAL hook: runs after each commit, on the writer thread.
 *
 * While the thread runs, it is left alone: the first commit after it ends
 * decides, from a fresh count, whether it runs again or the writer copies
 * the rest.  (Waking it again while it ran, as before, made it chase the
 * writer for ever whenever one checkpoint took longer than a batch: on a
 * slow disk the WAL then never started over.)  And if the WAL reaches
 * CKPT_LIMIT cycles' worth because the thread cannot keep up, the writer
 * waits for the thread and copies the rest itself: back-pressure, so the
 * WAL stays under CKPT_LIMIT cycles and a batch. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct checkpointer *c = arg;
	(void)db;
	(void)name;
	if (pages >= CKPT_LIMIT * c->pages) {
		c->catch_up = true;
		return SQLITE_OK;
	}
	if (pages < c->pages || atomic_load(&c->running))
		return SQLITE_OK;
	int done = atomic_load(&c->backfilled);
	int left = pages >= done ? pages - done : pages;
	if (left <= c->pages / CKPT_CATCHUP_DIV) {
		c->catch_up = true; /* sqlite_maintain(), once the batch is handed on */
		return SQLITE_OK;
	}
	pthread_mutex_lock(&c->mu);
	c->wanted = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return SQLITE_OK;
}

/* The end of a WAL cycle: the writer copies the last frames itself (see
 * above), while the syncer syncs the batch just committed. */
static void sqlite_maintain(void *p)
{
	struct sqlite_be *be = p;
	struct checkpointer *c = &be->ckpt;
	int log = 0, done = 0;

	if (!c->catch_up || atomic_load(&c->halted))
		return;
	c->catch_up = false;
	if (atomic_load(&c->running)) { /* only at CKPT_LIMIT, see wal_hook() */
		pthread_mutex_lock(&c->mu);
		while (atomic_load(&c->running))
			pthread_cond_wait(&c->idle, &c->mu);
		pthread_mutex_unlock(&c->mu);
	}
	/* busy only if the thread's idle-time checkpoint got there first: then
	 * the next commit's hook decides again */
	int rc = sqlite3_wal_checkpoint_v2(be->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
	ckpt_check(c, be->db, rc);
	if (rc == SQLITE_OK)
		ckpt_done(c, log, done);
	else if (rc != SQLITE_BUSY)
		LOG_W("checkpoint_failed", "error=\"%s\"", sqlite3_errstr(rc));
}

static int ckpt_start(struct sqlite_be *be, const char *vfs, char *err, size_t errlen)
{
	struct checkpointer *c = &be->ckpt;

	if (sqlite3_open_v2(be->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, vfs) !=
	    SQLITE_OK) {
		util_fmt(err, errlen, "sqlite: checkpointer cannot open %s", be->path);
		return DLRD_EIO;
	}
	sqlite3_busy_timeout(c->db, 1000);
	/* checkpoints sync the WAL before and the database after, see above */
	sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	const char *tp = getenv("DLRD_TEST_CKPT_PAGES"); /* tests: a short cycle */
	uint64_t tpn = 0;
	c->pages = tp && util_parse_u64(tp, strlen(tp), &tpn) == 0 && tpn >= CKPT_CATCHUP_DIV &&
	                   tpn <= CKPT_PAGES
	               ? (int)tpn
	               : CKPT_PAGES;
	const char *td = getenv("DLRD_TEST_CKPT_DELAY_MS"); /* tests: a slow disk */
	uint64_t tdn = 0;
	c->delay_ms =
	    td && util_parse_u64(td, strlen(td), &tdn) == 0 && tdn <= 10000 ? (int)tdn : 0;
	pthread_mutex_init(&c->mu, NULL);
	util_cond_init(&c->cv);
	pthread_cond_init(&c->idle, NULL);
	if (pthread_create(&c->thread, NULL, ckpt_main, c) != 0) {
		util_fmt(err, errlen, "sqlite: cannot start the checkpointer");
		return DLRD_EIO;
	}
	c->started = true;
	sqlite3_wal_autocheckpoint(be->db, 0);
	sqlite3_wal_hook(be->db, wal_hook, c);
	return 0;
}

static void ckpt_stop(struct checkpointer *c)
{
	if (c->started) {
		pthread_mutex_lock(&c->mu);
		c->stopping = true;
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->thread, NULL);
		pthread_mutex_destroy(&c->mu);
		pthread_cond_destroy(&c->cv);
		pthread_cond_destroy(&c->idle);
		c->started = false;
	}
	if (c->db)
		sqlite3_close(c->db);
	c->db = NULL;
}

static void sqlite_close(void *p)
{
	struct sqlite_be *be = p;
	if (!be)
		return;
	ckpt_stop(&be->ckpt);
	store__sqlite_api_close(be->api);
	for (int i = 0; i < Q__COUNT; i++)
		sqlite3_finalize(be->stmt[i]);
	sqlite3_finalize(be->begin);
	sqlite3_finalize(be->commit);
	sqlite3_finalize(be->rollback);
	/* The last connection to close would copy the WAL back and delete it;
	 * after a failed sync it stays for the restart (ckpt_halt()). */
	if (be->db && atomic_load(&be->ckpt.halted))
		sqlite3_db_config(be->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
	if (be->db && sqlite3_close(be->db) != SQLITE_OK) {
		const char *m = sqlite3_errmsg(be->db);
		char q[512];
		LOG_E("sqlite_close_failed", "error=%s", log_quote(q, sizeof(q), m, strlen(m)));
	}
	if (be->lock_fd >= 0)
		close(be->lock_fd);
	if (be->wal_fd >= 0)
		close(be->wal_fd);
	pthread_mutex_destroy(&be->sync_mu);
	free(be->cache.slots);
	free(be->cache.index);
	free(be->path);
	free(be);
}

static int mkdir_parents(const char *path)
{
	char buf[4096];
	size_t n = util_strlcpy(buf, path, sizeof(buf));
	if (n >= sizeof(buf))
		return -1;
	for (size_t i = 1; i < n; i++) {
		if (buf[i] != '/')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -1;
		buf[i] = '/';
	}
	return 0;
}

/* Opens the WAL (the migrations have created it) for sqlite_sync(), and
 * makes its directory entry durable, which fdatasync on the file alone would
 * not.  Under synchronous=normal too: a batch holding a reveal is synced
 * whatever the setting (store_sync()). */
static int open_wal(struct sqlite_be *be, char *err, size_t errlen)
{
	const char *wal = sqlite3_filename_wal(sqlite3_db_filename(be->db, "main"));
	char dir[4096];
	int dfd;

	be->wal_fd = wal ? open(wal, O_RDONLY | O_CLOEXEC) : -1;
	if (be->wal_fd < 0) {
		util_fmt(err, errlen, "sqlite: cannot open the WAL of %s: %s", be->path,
		         strerror(errno));
		return DLRD_EIO;
	}
	if (util_strlcpy(dir, wal, sizeof(dir)) >= sizeof(dir)) {
		util_fmt(err, errlen, "sqlite: the path of %s is too long", be->path);
		return DLRD_EIO;
	}
	dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0) {
		util_fmt(err, errlen, "sqlite: cannot sync the folder of %s: %s", be->path,
		         strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return DLRD_EIO;
	}
	close(dfd);
	return 0;
}

/* Start-up: the write lock can be taken and a write succeeds, so the
 * database is writable and no other process holds it.  A database already
 * migrated takes no write lock at open, and without this check dlrd would
 * listen, say healthy, and answer 503 to every callback (issue 6: a clear
 * error and a non-zero exit).  SQLite opens a file it may not write
 * read-only without a word, and in WAL mode BEGIN IMMEDIATE succeeds on such
 * a connection: only a real write (here rolled back) fails. */
static int check_writable(struct sqlite_be *be, char *err, size_t errlen)
{
	char msg[200] = "";
	int rc = SQLITE_OK;

	if (sqlite3_db_readonly(be->db, "main") == 1) {
		rc = SQLITE_READONLY;
		util_fmt(msg, sizeof(msg), "the file is read-only for this process");
	} else if ((rc = sqlite3_exec(be->db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) == SQLITE_OK) {
		rc = sqlite3_exec(be->db,
		                  "CREATE TABLE IF NOT EXISTS dlrd_probe (x INTEGER);"
		                  " INSERT INTO dlrd_probe VALUES (1)",
		                  NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			util_fmt(msg, sizeof(msg), "%s", sqlite3_errmsg(be->db));
		sqlite3_exec(be->db, "ROLLBACK", NULL, NULL, NULL);
	} else {
		util_fmt(msg, sizeof(msg), "%s", sqlite3_errmsg(be->db));
	}
	if (rc != SQLITE_OK) {
		util_fmt(err, errlen,
		         "sqlite: cannot write %s: %s (is another process holding it, or is the"
		         " file read-only?)",
		         be->path, msg);
		return DLRD_EIO;
	}
	return 0;
}

static int sqlite_open(const struct config *cfg, void **out, char *err, size_t errlen)
{
	struct sqlite_be *be;
	const char *vfs;

	/* SQLite's memory statistics take a global mutex around every
	 * allocation, shared by the writer, the checkpointer and the readers;
	 * nothing reads them (bench/: +4% callbacks/s without).  Fails
	 * harmlessly once SQLite is initialized (a second store in a test). */
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	store__sqlite_pcache_install();
	be = xcalloc(1, sizeof(*be));
	vfs = store__sqlite_vfs_register();
	char lockpath[4200];
	sqlite3_stmt *st = NULL;
	int rc = DLRD_EIO;

	be->lock_fd = -1;
	be->wal_fd = -1;
	pthread_mutex_init(&be->sync_mu, NULL);
	atomic_init(&be->sync_error, false);
	be->path = xstrdup(cfg->storage_url + 7);
	if (!*be->path) {
		util_fmt(err, errlen, "config: storage.url: sqlite: needs a file path");
		rc = DLRD_ECONFIG;
		goto out;
	}
	if (mkdir_parents(be->path) != 0) {
		util_fmt(err, errlen, "sqlite: cannot create the folder of %s: %s", be->path,
		         strerror(errno));
		goto out;
	}
	util_fmt(lockpath, sizeof(lockpath), "%s.lock", be->path);
	be->lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (be->lock_fd < 0) {
		util_fmt(err, errlen, "sqlite: cannot open %s: %s", lockpath, strerror(errno));
		goto out;
	}
	if (flock(be->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		util_fmt(err, errlen, "sqlite: %s is in use by another dlrd process", be->path);
		goto out;
	}
	if (sqlite3_open_v2(be->path, &be->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	                    vfs) != SQLITE_OK) {
		util_fmt(err, errlen, "sqlite: cannot open %s: %s", be->path,
		         be->db ? sqlite3_errmsg(be->db) : "out of memory");
		goto out;
	}
	sqlite3_extended_result_codes(be->db, 1);
	sqlite3_busy_timeout(be->db, 2000);
	if (sqlite3_prepare_v2(be->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW ||
	    strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
		sqlite3_finalize(st);
		rc = fail(be, err, errlen, "cannot switch to WAL mode (is the file writable?)");
		goto out;
	}
	sqlite3_finalize(st);
	if ((rc = exec(be, "PRAGMA synchronous=NORMAL", err, errlen)) != 0)
		goto out;
	if ((rc = exec(be,
	               "PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY;"
	               " PRAGMA cache_size=-65536",
	               err, errlen)) != 0)
		goto out;
	if (sqlite3_create_function(be->db, "dlrd_sender_key", 1,
	                            SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
	                            sql_sender_key, NULL, NULL) != SQLITE_OK) {
		rc = fail(be, err, errlen, "registering dlrd_sender_key()");
		goto out;
	}
	if ((rc = migrate(be, err, errlen)) != 0)
		goto out;
	if ((rc = check_writable(be, err, errlen)) != 0)
		goto out;
	be->sync_full = cfg->synchronous == SYNC_FULL;
	if ((rc = open_wal(be, err, errlen)) != 0)
		goto out;
	for (int i = 0; i < Q__COUNT; i++) {
		if (sqlite3_prepare_v3(be->db, queries[i], -1, SQLITE_PREPARE_PERSISTENT,
		                       &be->stmt[i], NULL) != SQLITE_OK) {
			rc = fail(be, err, errlen, "preparing statements");
			goto out;
		}
	}
	if (sqlite3_prepare_v2(be->db, "BEGIN IMMEDIATE", -1, &be->begin, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(be->db, "COMMIT", -1, &be->commit, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(be->db, "ROLLBACK", -1, &be->rollback, NULL) != SQLITE_OK) {
		rc = fail(be, err, errlen, "preparing statements");
		goto out;
	}
	{
		const char *ps = config_get(cfg, "storage", "read_pool_size");
		uint64_t pool = 0;
		if (!ps || util_parse_u64(ps, strlen(ps), &pool) != 0 || pool > 64)
			pool = 0; /* the default */
		if ((rc = store__sqlite_api_open(be->db, be->path, vfs, (unsigned)pool, &be->api,
		                                 err, errlen)) != 0)
			goto out;
	}
	if ((rc = ckpt_start(be, vfs, err, errlen)) != 0)
		goto out;
	{
		char q[1024]; /* the path is the operator's: quoted */
		LOG_I("storage_open", "backend=sqlite path=%s synchronous=%s",
		      log_quote(q, sizeof(q), be->path, strlen(be->path)),
		      cfg->synchronous == SYNC_FULL ? "full" : "normal");
	}
	*out = be;
	return 0;
out:
	sqlite_close(be);
	return rc;
}

static int step_done(struct sqlite_be *be, sqlite3_stmt *st, char *err, size_t errlen,
                     const char *what)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE)
		return fail(be, err, errlen, what);
	return 0;
}

/* Binds a row's raw payload (the blob at parameter i, payload_id at j): the
 * request's bytes, or, when the request keeps them once (sms_payloads), an
 * empty blob and the id naming them. */
static void bind_payload(sqlite3_stmt *st, int i, int j, const struct commit_item *it)
{
	if (it->payload_id[0]) {
		sqlite3_bind_blob(st, i, "", 0, SQLITE_STATIC);
		bind_text(st, j, it->payload_id);
		return;
	}
	sqlite3_bind_blob(st, i, it->raw_payload.p ? it->raw_payload.p : "", (int)it->raw_payload.n,
	                  SQLITE_STATIC);
	sqlite3_bind_null(st, j);
}

/* The row of a request whose payload is kept once (after its events). */
static int add_payload(struct sqlite_be *be, const struct commit_item *it, const char *now,
                       char *err, size_t errlen)
{
	sqlite3_stmt *st = be->stmt[Q_INSERT_PAYLOAD];
	bind_text(st, 1, it->payload_id);
	bind_text(st, 2, it->provider);
	sqlite3_bind_blob(st, 3, it->raw_payload.p ? it->raw_payload.p : "", (int)it->raw_payload.n,
	                  SQLITE_STATIC);
	bind_text(st, 4, now);
	return step_done(be, st, err, errlen, "inserting payload");
}

static int add_review(struct sqlite_be *be, const char *now, const char *provider,
                      enum review_reason reason, const char *detail, const char *message_id,
                      sqlite3_int64 event_id, const char *raw_status, const struct commit_item *it,
                      char *err, size_t errlen)
{
	sqlite3_stmt *st = be->stmt[Q_INSERT_REVIEW];
	bind_text(st, 1, now);
	bind_text(st, 2, provider);
	bind_text(st, 3, review_reason_name(reason));
	bind_text(st, 4, detail);
	bind_text(st, 5, message_id);
	if (event_id > 0)
		sqlite3_bind_int64(st, 6, event_id);
	else
		sqlite3_bind_null(st, 6);
	bind_text(st, 7, raw_status);
	bind_payload(st, 8, 9, it);
	return step_done(be, st, err, errlen, "inserting review row");
}

/* Where a callback's destination_country came from. */
static const char *country_source(const struct dlr_event *ev)
{
	if (!ev->destination_country)
		return NULL;
	return ev->country_from_number ? "number" : "provider";
}

/* ---- the batch's summary cache (struct msg_slot) ---- */

static uint32_t slot_hash(const char *provider, const char *pmid)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (const char *p = provider; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	h = (h ^ 0xff) * 16777619u;
	for (const char *p = pmid; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return h;
}

/* Empties the cache and sizes it for a batch of up to events events. */
static void cache_reset(struct msg_cache *c, size_t events)
{
	if (events > c->cap) {
		free(c->slots);
		free(c->index);
		c->cap = events < 64 ? 64 : events;
		c->slots = xcalloc(c->cap, sizeof(*c->slots));
		size_t buckets = 1;
		while (buckets < 2 * c->cap)
			buckets <<= 1;
		c->index = xmalloc(buckets * sizeof(*c->index));
		c->mask = buckets - 1;
		c->n = 1; /* forces the clear below */
	}
	if (c->n) {
		memset(c->index, 0xff, (c->mask + 1) * sizeof(*c->index));
		c->n = 0;
	}
}

/* The slot of (provider, pmid), or where a new one goes (*found false). */
static int32_t *cache_find(struct msg_cache *c, const char *provider, const char *pmid, bool *found)
{
	size_t i = slot_hash(provider, pmid) & c->mask;
	for (;; i = (i + 1) & c->mask) {
		int32_t *x = &c->index[i];
		if (*x < 0) {
			*found = false;
			return x;
		}
		struct msg_slot *m = &c->slots[*x];
		if (strcmp(m->pmid, pmid) == 0 && strcmp(m->provider, provider) == 0) {
			*found = true;
			return x;
		}
	}
}

/* The slot of ev's message: from the cache, else read from its summary row,
 * else a new row created from what the callback carries. */
static int load_message(struct sqlite_be *be, const struct dlr_event *ev, const char *now,
                        struct msg_slot **out, char *err, size_t errlen)
{
	struct msg_cache *c = &be->cache;
	sqlite3_stmt *st = be->stmt[Q_FIND_MSG];
	struct msg_slot *m;
	bool found = false;
	int32_t *x = NULL;
	int rc;

	/* (a status event always has both; the NOT NULL constraint on the event
	 * row will say so if not) */
	if (ev->provider && ev->provider_message_id)
		x = cache_find(c, ev->provider, ev->provider_message_id, &found);
	if (found) {
		*out = &c->slots[*x];
		return 0;
	}
	if (c->n == c->cap) /* cannot happen: one slot per event at most */
		return fail(be, err, errlen, "summary cache full");
	m = &c->slots[c->n];
	memset(m, 0, sizeof(*m));
	m->provider = ev->provider;
	m->pmid = ev->provider_message_id;
	bind_text(st, 1, ev->provider);
	bind_text(st, 2, ev->provider_message_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		struct status_summary *sum = &m->sum;
		util_strlcpy(m->id, (const char *)sqlite3_column_text(st, 0), sizeof(m->id));
		m->rowid = sqlite3_column_int64(st, 8);
		sum->mask = (uint32_t)sqlite3_column_int64(st, 5);
		sum->read = sqlite3_column_int(st, 6) != 0;
		sum->has_event = sum->mask != 0;
		if (sum->has_event) {
			/* Copy the winning key's strings out of the row before reset. */
			const char *cs = (const char *)sqlite3_column_text(st, 1);
			const char *ec = (const char *)sqlite3_column_text(st, 3);
			const char *rs = (const char *)sqlite3_column_text(st, 4);
			size_t half = sizeof(m->strs) / 2;
			status_parse(cs, strlen(cs), &sum->top.status);
			sum->top.occurred_ms = sqlite3_column_int64(st, 2);
			sum->top.error_code = ec ? m->strs : NULL;
			if (ec)
				util_strlcpy(m->strs, ec, half);
			sum->top.raw_status = rs ? m->strs + half : NULL;
			if (rs)
				util_strlcpy(m->strs + half, rs, half);
		}
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	} else {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		if (rc != SQLITE_DONE)
			return fail(be, err, errlen, "finding message");
		util_uuid7(m->id);
		st = be->stmt[Q_INSERT_MSG];
		bind_text(st, 1, m->id);
		bind_text(st, 2, ev->provider);
		bind_text(st, 3, ev->provider_message_id);
		bind_text(st, 4, ev->recipient_hash);
		bind_text(st, 5, ev->destination_country);
		bind_text(st, 6, ev->sender_identity);
		bind_text(st, 7, now);
		bind_text(st, 8, ev->recipient_masked);
		bind_text(st, 9, country_source(ev));
		if ((rc = step_done(be, st, err, errlen, "inserting message")) != 0)
			return rc;
		m->rowid = sqlite3_last_insert_rowid(be->db);
	}
	if (x)
		*x = (int32_t)c->n;
	c->n++;
	*out = m;
	return 0;
}

/* Writes what the batch changed in one message's summary row. */
static int flush_slot(struct sqlite_be *be, struct msg_slot *m, char *err, size_t errlen)
{
	const struct status_summary *sum = &m->sum;
	sqlite3_stmt *st;
	char occ[25];

	if (!m->d_events) {
		st = be->stmt[Q_COUNT_DUP];
		sqlite3_bind_int64(st, 1, m->rowid);
		bind_text(st, 2, m->updated_at);
		sqlite3_bind_int64(st, 3, m->d_dups);
		return step_done(be, st, err, errlen, "counting duplicates");
	}
	if (sum->top.occurred_ms >= 0)
		util_rfc3339(sum->top.occurred_ms, occ);
	st = be->stmt[Q_UPDATE_MSG];
	sqlite3_bind_int64(st, 1, m->rowid);
	bind_text(st, 2, status_name(sum->top.status));
	bind_text(st, 3, sum->top.raw_status);
	bind_text(st, 4, sum->top.error_code);
	bind_text(st, 5, sum->top.occurred_ms >= 0 ? occ : NULL);
	sqlite3_bind_int(st, 6, status_is_final(sum->top.status));
	sqlite3_bind_int64(st, 7, sum->top.occurred_ms);
	sqlite3_bind_int(st, 8, m->changed);
	bind_text(st, 9, m->error_reason);
	sqlite3_bind_int64(st, 10, sum->mask);
	sqlite3_bind_int(st, 11, status_mask_conflict(sum->mask));
	sqlite3_bind_int(st, 12, sum->read);
	sqlite3_bind_int64(st, 13, m->d_events);
	sqlite3_bind_int64(st, 14, (sqlite3_int64)m->d_events + m->d_dups);
	sqlite3_bind_int64(st, 15, m->d_dups);
	bind_text(st, 16, m->first_callback_at[0] ? m->first_callback_at : NULL);
	bind_text(st, 17, m->final_at[0] ? m->final_at : NULL);
	bind_text(st, 18, m->recipient_hash);
	bind_text(st, 19, m->recipient_masked);
	bind_text(st, 20, m->country_source);
	bind_text(st, 21, m->country);
	bind_text(st, 22, m->sender);
	bind_text(st, 23, m->updated_at);
	return step_done(be, st, err, errlen, "updating summary");
}

/* Writes every changed summary and empties the cache (before an API item,
 * which may read or rewrite a summary row, and before COMMIT). */
static int flush_cache(struct sqlite_be *be, char *err, size_t errlen)
{
	struct msg_cache *c = &be->cache;
	int rc;
	for (size_t i = 0; i < c->n; i++)
		if (c->slots[i].dirty && (rc = flush_slot(be, &c->slots[i], err, errlen)) != 0)
			return rc;
	cache_reset(c, 0);
	return 0;
}

/* An inbound message: its own table, deduplicated; opt-out keywords update
 * the user's state for that sender and its history. */
static int apply_inbound(struct sqlite_be *be, struct commit_item *it, const struct dlr_event *ev,
                         const char *now, char *err, size_t errlen)
{
	sqlite3_stmt *st = be->stmt[Q_INSERT_INBOUND];
	char occurred[25];
	const char *effective = now;
	int rc;

	if (ev->occurred_ms >= 0) {
		util_rfc3339(ev->occurred_ms, occurred);
		effective = occurred;
	}
	bind_text(st, 1, ev->provider);
	bind_text(st, 2, ev->provider_message_id);
	bind_text(st, 3, ev->dedup_key);
	bind_text(st, 4, ev->recipient_hash);
	bind_text(st, 5, ev->destination_country);
	bind_text(st, 6, ev->sender_identity);
	if (ev->text)
		sqlite3_bind_text(st, 7, ev->text, (int)ev->text_len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 7);
	bind_text(st, 8, optout_kind_name(ev->keyword));
	bind_text(st, 9, ev->occurred_ms >= 0 ? occurred : NULL);
	bind_payload(st, 10, 12, it);
	bind_text(st, 11, now);
	if ((rc = step_done(be, st, err, errlen, "inserting inbound message")) != 0)
		return rc;
	if (sqlite3_changes(be->db) == 0) {
		it->n_dup++;
		st = be->stmt[Q_COUNT_INBOUND_DUP];
		bind_text(st, 1, ev->provider);
		bind_text(st, 2, ev->dedup_key);
		return step_done(be, st, err, errlen, "counting inbound duplicate");
	}
	it->n_new++;
	if ((ev->keyword != KW_OPT_OUT && ev->keyword != KW_OPT_IN) || !ev->recipient_hash)
		return 0;
	sqlite3_int64 inbound_id = sqlite3_last_insert_rowid(be->db);
	/* the state is kept per canonical sender (optout.h), so that a send
	 * from the same number written another way finds it */
	char *sender = optout_sender_key_dup(ev->sender_identity);
	char word[OPTOUT_WORD_MAX];
	st = be->stmt[Q_INSERT_OPT_HISTORY];
	bind_text(st, 1, ev->recipient_hash);
	bind_text(st, 2, sender);
	bind_text(st, 3, optout_kind_name(ev->keyword));
	bind_text(st, 4, optout_keyword_word(ev->text, ev->text_len, word));
	sqlite3_bind_int64(st, 5, inbound_id);
	bind_text(st, 6, effective);
	bind_text(st, 7, now);
	if ((rc = step_done(be, st, err, errlen, "inserting opt-out history")) != 0)
		goto out;
	st = be->stmt[Q_UPSERT_OPT_OUT];
	bind_text(st, 1, ev->recipient_hash);
	bind_text(st, 2, sender);
	sqlite3_bind_int(st, 3, ev->keyword == KW_OPT_OUT);
	bind_text(st, 4, word);
	sqlite3_bind_int64(st, 5, inbound_id);
	bind_text(st, 6, effective);
	bind_text(st, 7, now);
	rc = step_done(be, st, err, errlen, "updating opt-out state");
out:
	free(sender);
	return rc;
}

/* A payload dlrd cannot use: a review item, or, when the same request came
 * before (its dedup_key, see http.c), a resend counted on that item. */
static int apply_unusable(struct sqlite_be *be, struct commit_item *it, const struct dlr_event *ev,
                          const char *now, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int rc;

	if (!ev->dedup_key[0]) {
		it->n_review++;
		return add_review(be, now, ev->provider, REVIEW_UNUSABLE, ev->review_detail, NULL,
		                  0, ev->raw_status, it, err, errlen);
	}
	st = be->stmt[Q_INSERT_UNUSABLE];
	bind_text(st, 1, now);
	bind_text(st, 2, ev->provider);
	bind_text(st, 3, ev->review_detail);
	bind_text(st, 4, ev->raw_status);
	bind_payload(st, 5, 7, it);
	bind_text(st, 6, ev->dedup_key);
	if ((rc = step_done(be, st, err, errlen, "inserting review row")) != 0)
		return rc;
	if (sqlite3_changes(be->db) > 0) {
		it->n_review++;
		return 0;
	}
	it->n_dup++;
	st = be->stmt[Q_COUNT_UNUSABLE_DUP];
	bind_text(st, 1, ev->provider);
	bind_text(st, 2, ev->dedup_key);
	return step_done(be, st, err, errlen, "counting a resent unusable payload");
}

static int apply_event(struct sqlite_be *be, struct commit_item *it, const struct dlr_event *ev,
                       const char *now, char *err, size_t errlen)
{
	char occurred[25];
	struct msg_slot *m;
	struct status_summary *sum;
	sqlite3_stmt *st;
	sqlite3_int64 event_id;
	bool was_conflict, is_new, changed;
	struct status_key key = {ev->status, ev->occurred_ms, ev->error_code, ev->raw_status};
	int rc;

	if (ev->kind == EV_INBOUND)
		return apply_inbound(be, it, ev, now, err, errlen);
	if (ev->kind == EV_UNUSABLE)
		return apply_unusable(be, it, ev, now, err, errlen);
	if ((rc = load_message(be, ev, now, &m, err, errlen)) != 0)
		return rc;
	sum = &m->sum;
	if (ev->occurred_ms >= 0)
		util_rfc3339(ev->occurred_ms, occurred);

	was_conflict = status_mask_conflict(sum->mask);
	changed = !sum->has_event || status_event_cmp(&key, &sum->top) > 0;

	st = be->stmt[Q_INSERT_EVENT];
	bind_text(st, 1, m->id);
	bind_text(st, 2, ev->provider);
	bind_text(st, 3, ev->provider_message_id);
	bind_text(st, 4, ev->provider_event_id);
	bind_text(st, 5, ev->dedup_key);
	bind_text(st, 6, status_name(ev->status));
	bind_text(st, 7, ev->raw_status);
	bind_text(st, 8, ev->error_code);
	sqlite3_bind_int(st, 9, status_is_final(ev->status));
	sqlite3_bind_int(st, 10, ev->read);
	sqlite3_bind_int(st, 11, changed);
	bind_text(st, 12, ev->occurred_ms >= 0 ? occurred : NULL);
	bind_payload(st, 13, 16, it);
	bind_text(st, 14, now);
	bind_text(st, 15, errcat_name(ev->error_reason));
	if ((rc = step_done(be, st, err, errlen, "inserting event")) != 0)
		return rc;
	is_new = sqlite3_changes(be->db) > 0;
	if (is_new) {
		event_id = sqlite3_last_insert_rowid(be->db);
	} else {
		st = be->stmt[Q_FIND_EVENT];
		bind_text(st, 1, m->id);
		bind_text(st, 2, ev->dedup_key);
		rc = sqlite3_step(st);
		event_id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		if (rc != SQLITE_ROW)
			return fail(be, err, errlen, "finding duplicate event");
	}

	/* The summary row's changes, as one UPDATE per event would make them
	 * (see Q_UPDATE_MSG); flush_slot() writes them before COMMIT. */
	m->dirty = true;
	/* Receipt times do not depend on the order of a batch's requests
	 * (which only roughly follows their received_ms), as on PostgreSQL:
	 * the latest update, the earliest first callback and final event. */
	if (strcmp(now, m->updated_at) > 0)
		util_strlcpy(m->updated_at, now, sizeof(m->updated_at));
	if (is_new) {
		status_fold(sum, &key, ev->read);
		bool conflict = status_mask_conflict(sum->mask);
		m->d_events++;
		if (changed) {
			m->changed = true;
			m->error_reason = errcat_name(ev->error_reason);
		}
		if (!m->first_callback_at[0] || strcmp(now, m->first_callback_at) < 0)
			util_strlcpy(m->first_callback_at, now, sizeof(m->first_callback_at));
		if (status_is_final(ev->status) &&
		    (!m->final_at[0] || strcmp(now, m->final_at) < 0))
			util_strlcpy(m->final_at, now, sizeof(m->final_at));
		if (!m->recipient_hash)
			m->recipient_hash = ev->recipient_hash;
		if (!m->recipient_masked)
			m->recipient_masked = ev->recipient_masked;
		/* the first country, or the first the provider gave after
		 * one taken from the number (what Q_UPDATE_MSG per event
		 * would keep) */
		if (ev->destination_country &&
		    (!m->country ||
		     (!ev->country_from_number && strcmp(m->country_source, "number") == 0))) {
			m->country = ev->destination_country;
			m->country_source = country_source(ev);
		}
		if (!m->sender)
			m->sender = ev->sender_identity;
		it->n_new++;
		if (ev->review != REVIEW_NONE) {
			it->n_review++;
			if ((rc = add_review(be, now, ev->provider, ev->review, ev->review_detail,
			                     m->id, event_id, ev->raw_status, it, err, errlen)) !=
			    0)
				return rc;
		}
		if (conflict && !was_conflict) {
			it->n_review++;
			if ((rc = add_review(be, now, ev->provider, REVIEW_FINAL_CONFLICT,
			                     "two different definitive final states", m->id,
			                     event_id, ev->raw_status, it, err, errlen)) != 0)
				return rc;
		}
	} else {
		m->d_dups++;
		it->n_dup++;
	}

	st = be->stmt[Q_INSERT_LOG];
	bind_text(st, 1, now);
	bind_text(st, 2, ev->provider);
	sqlite3_bind_int64(st, 3, event_id);
	sqlite3_bind_int(st, 4, !is_new);
	return step_done(be, st, err, errlen, "inserting retry-log row");
}

static int sqlite_apply(void *p, struct commit_item **items, size_t n, char *err, size_t errlen)
{
	struct sqlite_be *be = p;
	int rc;

	if (sqlite3_step(be->begin) != SQLITE_DONE) {
		sqlite3_reset(be->begin);
		return fail(be, err, errlen, "BEGIN");
	}
	sqlite3_reset(be->begin);
	size_t events = 0;
	for (size_t i = 0; i < n; i++)
		events += items[i]->kind == CI_API ? 0 : items[i]->n_events;
	cache_reset(&be->cache, events);
	for (size_t i = 0; i < n; i++) {
		struct commit_item *it = items[i];
		char now[25];
		util_rfc3339(it->received_ms, now);
		it->n_new = it->n_dup = it->n_review = 0;
		if (it->kind == CI_API) {
			if ((rc = flush_cache(be, err, errlen)) != 0 ||
			    (rc = store__sqlite_api_apply(be->api, it, now, err, errlen)) != 0)
				goto rollback;
			continue;
		}
		for (size_t e = 0; e < it->n_events; e++) {
			if ((rc = apply_event(be, it, &it->events[e], now, err, errlen)) != 0)
				goto rollback;
		}
		/* the payload a request keeps once, when a row it wrote names it:
		 * a resend whose every event is a duplicate, in other bytes (a
		 * Telnyx retry counts its attempt in the body), would leave a
		 * copy no row names */
		if (it->payload_id[0] && it->n_new + it->n_review > 0 &&
		    (rc = add_payload(be, it, now, err, errlen)) != 0)
			goto rollback;
	}
	if ((rc = flush_cache(be, err, errlen)) != 0)
		goto rollback;
	if (sqlite3_step(be->commit) != SQLITE_DONE) {
		sqlite3_reset(be->commit);
		rc = fail(be, err, errlen, "COMMIT");
		goto rollback;
	}
	sqlite3_reset(be->commit);
	return 0;
rollback:
	if (!sqlite3_get_autocommit(be->db)) {
		sqlite3_step(be->rollback);
		sqlite3_reset(be->rollback);
	}
	return rc;
}

/* Any thread (the syncer; the writer's probe).  See the top of the file.
 * Under synchronous=normal only when forced (a batch holding a reveal). */
static int sqlite_sync(void *p, bool force, char *err, size_t errlen)
{
	struct sqlite_be *be = p;
	int rc = 0;

	/* after a failed sync, of the WAL or by a checkpoint of the database:
	 * final whatever the setting (ckpt_halt()) */
	if (atomic_load(&be->ckpt.halted)) {
		util_fmt(err, errlen, "sqlite: %s failed earlier; restart dlrd",
		         atomic_load(&be->sync_error) ? "an fdatasync of the WAL"
		                                      : "a checkpoint's sync of the database");
		return DLRD_EIO;
	}
	if (be->wal_fd < 0 || (!be->sync_full && !force))
		return 0;
	/* Serialized, and the flag read after our own call: the kernel may
	 * have reported the error that covers our data to the other caller
	 * (see the top of the file). */
	pthread_mutex_lock(&be->sync_mu);
	if (!atomic_load(&be->sync_error)) {
		bool injected = store__sqlite_vfs_sync_fails();
		if (injected || fdatasync(be->wal_fd) != 0) {
			util_fmt(err, errlen, "sqlite: fdatasync of the WAL failed: %s",
			         injected ? "injected fault" : strerror(errno));
			atomic_store(&be->sync_error, true);
			ckpt_halt(&be->ckpt, "wal_sync_failed");
			rc = DLRD_EIO;
		}
	} else {
		util_fmt(err, errlen,
		         "sqlite: an earlier fdatasync of the WAL failed; restart dlrd");
		rc = DLRD_EIO;
	}
	pthread_mutex_unlock(&be->sync_mu);
	return rc;
}

static int sqlite_probe(void *p, char *err, size_t errlen)
{
	struct sqlite_be *be = p;
	/* A real write that goes through the WAL and its fsync, then undone. */
	int rc = exec(be,
	              "BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS dlrd_probe (x INTEGER);"
	              " INSERT INTO dlrd_probe VALUES (1); DELETE FROM dlrd_probe; COMMIT",
	              err, errlen);
	if (rc && !sqlite3_get_autocommit(be->db))
		sqlite3_exec(be->db, "ROLLBACK", NULL, NULL, NULL);
	return rc ? rc : sqlite_sync(be, false, err, errlen);
}

/* The JSON API's reads (sqlite_api.c), on the backend's read pool. */
static int sqlite_get_message(void *p, struct arena *a, const char *id, struct store_message *out,
                              char *err, size_t errlen)
{
	return store__sqlite_get_message(((struct sqlite_be *)p)->api, a, id, out, err, errlen);
}

static int sqlite_get_timeline(void *p, struct arena *a, const char *id, bool payloads,
                               struct store_message *msg, struct store_event **events, size_t *n,
                               char *err, size_t errlen)
{
	return store__sqlite_get_timeline(((struct sqlite_be *)p)->api, a, id, payloads, msg,
	                                  events, n, err, errlen);
}

static int sqlite_search(void *p, struct arena *a, const struct store_query *q,
                         struct store_message **rows, size_t *n, char *err, size_t errlen)
{
	return store__sqlite_search(((struct sqlite_be *)p)->api, a, q, rows, n, err, errlen);
}

static int sqlite_list_review(void *p, struct arena *a, const struct store_review_query *q,
                              struct store_review_item **rows, size_t *n, char *err, size_t errlen)
{
	return store__sqlite_list_review(((struct sqlite_be *)p)->api, a, q, rows, n, err, errlen);
}

static int sqlite_list_audit(void *p, struct arena *a, const struct store_audit_query *q,
                             struct store_audit_row **rows, size_t *n, char *err, size_t errlen)
{
	return store__sqlite_list_audit(((struct sqlite_be *)p)->api, a, q, rows, n, err, errlen);
}

static int sqlite_stats(void *p, struct arena *a, const struct store_stats_query *q,
                        struct store_stats_row **rows, size_t *n, char *err, size_t errlen)
{
	return store__sqlite_stats(((struct sqlite_be *)p)->api, a, q, rows, n, err, errlen);
}

const struct store_ops store__sqlite_ops = {
    .name = "sqlite",
    .accepts = sqlite_accepts,
    .open = sqlite_open,
    .close = sqlite_close,
    .apply = sqlite_apply,
    .probe = sqlite_probe,
    .sync = sqlite_sync,
    .maintain = sqlite_maintain,
    .api_writes = true,
    .get_message = sqlite_get_message,
    .get_timeline = sqlite_get_timeline,
    .search = sqlite_search,
    .list_review = sqlite_list_review,
    .list_audit = sqlite_list_audit,
    .stats = sqlite_stats,
};
