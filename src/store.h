/* SPDX-License-Identifier: MIT */
/*
 * Storage: one interface, one file per backend in src/store/.  A backend is a
 * table of methods (struct store_ops, in store/store_int.h); store.c picks it
 * by the URL scheme ("sqlite:", "postgresql://").  See src/store/README.md
 * for the schema, the migrations and the batch transaction.
 *
 * Thread rules: store_apply(), store_maintain() and store_probe() are
 * called only by the writer thread, which owns the handle; store_sync() only
 * by the commit queue's syncer thread; open and close by the main thread
 * while neither runs; the read methods of the JSON API (below) by any
 * thread.
 */
#ifndef DLRD_STORE_H
#define DLRD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "dlrd_limits.h"
#include "phone.h"
#include "status.h"

struct store;
struct commit_item;
struct arena;

/* Opens the backend named by cfg->storage_url and applies pending
 * migrations.  Returns 0, or DLRD_EIO / DLRD_ECONFIG with err set. */
int store_open(const struct config *cfg, struct store **out, char *err, size_t errlen);
void store_close(struct store *st);

/* Applies n items in one transaction and commits it.  On success every item
 * gets its counters; on failure nothing of the batch is visible and the
 * function returns DLRD_EIO (items untouched; the caller marks them failed).
 * The store stays usable for the next batch.  The commit is durable once a
 * store_sync() that started after this call returned has returned 0. */
int store_apply(struct store *st, struct commit_item **items, size_t n, char *err, size_t errlen);

/* Makes every transaction committed so far durable (SQLite: one fdatasync
 * of the WAL, while the writer goes on with the next batch; PostgreSQL:
 * nothing, its commits are durable).  Under storage.synchronous=normal it
 * does nothing unless force is set: the commit queue sets it for a batch
 * that holds a reveal, whose answer discloses a number and whose audit row
 * must therefore survive power loss (PostgreSQL commits such a batch with
 * synchronous_commit on instead).  Returns 0 or DLRD_EIO.  After a failure
 * nothing committed since the last good sync may be acknowledged, ever: the
 * page cache may have dropped it (see commitq.c). */
int store_sync(struct store *st, bool force, char *err, size_t errlen);

/* Backend housekeeping on the writer thread, between batches (after one was
 * handed to the syncer).  Failures are the backend's to log. */
void store_maintain(struct store *st);

/* A small write transaction to tell whether storage is writable again after
 * a failure.  Returns 0 or DLRD_EIO. */
int store_probe(struct store *st, char *err, size_t errlen);

/* Backend name, "sqlite" or "postgresql". */
const char *store_backend(const struct store *st);

/*
 * ---- The JSON API's operations (src/api.c) ----
 *
 * Writes (record a send, set a provider message id, reveal a number,
 * resolve a review item) travel through the commit queue like callbacks: a
 * commit_item of kind CI_API carries a struct store_op, and the writer
 * applies it inside the batch's transaction under a savepoint of its own, so
 * every 2xx is durable and SQLite keeps one writer.  Business outcomes (not
 * found, conflicts, opted out) are results in op->outcome: they undo the
 * operation's own changes, never the rest of the batch.  Only a storage
 * failure fails the batch.
 *
 * Reads run on the calling (HTTP) thread, each in one read transaction (a
 * consistent snapshot), on a small pool of read-only connections that never
 * block the writer ([storage] read_pool_size).  Strings they return are
 * copied into the caller's arena; NULL stands for SQL NULL.
 *
 * A backend that lacks a read method answers DLRD_EUNSUPP; one that cannot
 * apply CI_API items says so through store_api_writes().
 */

enum store_op_kind {
	STORE_OP_SEND = 1,        /* record a send (idempotent per token and key) */
	STORE_OP_SET_PROVIDER_ID, /* set the provider message id of a recorded send */
	STORE_OP_REVEAL,          /* decrypt the number and write an audit row */
	STORE_OP_RESOLVE_REVIEW,  /* close a review item and write an audit row */
};

enum store_outcome {
	STORE_DONE = 0,         /* applied (a send may have joined a callback-created row) */
	STORE_REPLAYED,         /* send: same key and request as before: resp_* hold that answer */
	STORE_KEY_REUSED,       /* send: the key was used with a different request */
	STORE_OPTED_OUT,        /* send: the recipient opted out of this sender */
	STORE_PMID_TAKEN,       /* another recorded send has this provider message id */
	STORE_PMID_SET,         /* set: the message already has a different provider message id */
	STORE_NOT_FOUND,        /* no such message or review item */
	STORE_NO_RECIPIENT,     /* reveal: no encrypted number is stored for the message */
	STORE_UNDECRYPTABLE,    /* reveal: op->open() failed (key not in the ring, bad blob) */
	STORE_ALREADY_RESOLVED, /* resolve: the item was resolved before */
};

/* A message row as a send or set-provider-id left it. */
struct store_op_row {
	char id[37];
	char origin[12]; /* "send", "joined" (adopted a callback-created row) */
	char provider[64];
	char provider_message_id[LIM_ID_BYTES + 1]; /* "" when not known yet */
	char status[16];
	bool is_final;
	char recipient_masked[PHONE_E164_MAX + 1];
	char destination_country[3];
	char created_at[25];
	char sent_recorded_at[25];
	bool merged; /* set: a callback-created row was folded into this one */
};

/* The input of STORE_OP_SEND.  Strings are borrowed; NULL when absent. */
struct store_send {
	const char *token_hash;   /* idempotency scope: hex SHA-256 of the token */
	const char *idem_key;     /* the Idempotency-Key header */
	const char *request_hash; /* privacy_request_hash() of the canonical body */
	const char *provider;
	const char *provider_message_id; /* canonical form, or NULL */
	const char *recipient_hash; /* keyed HMAC of the E.164 number (as callbacks compute it) */
	const char *recipient_masked;
	const uint8_t *recipient_enc; /* pii_encrypt() of the number */
	size_t recipient_enc_len;
	const char *recipient_key_id;
	const char *country;        /* the app's destination_country, or NULL */
	const char *number_country; /* phone_country() of the number, or NULL */
	const char *recipient_timezone;
	const char *use_case;
	const char *template_key;
	const char *sender_identity;
	const char *action_type;
	const char *action_id;
	const char *metadata; /* compact JSON object text, or NULL */
	bool optout_exempt;   /* the use case is exempt from opt-out refusal */
	/* Only a replay: the API refuses this request now (a check added
	 * after it may have been recorded, such as an unassigned calling
	 * code), so a send recorded before under the same key and request is
	 * answered as before (STORE_REPLAYED), anything else is
	 * STORE_NOT_FOUND or STORE_KEY_REUSED and nothing is written.  Only
	 * token_hash, idem_key and request_hash are set. */
	bool replay_only;
};

/* One API write.  Owned by the HTTP layer (in the request's arena); the
 * writer reads the input and writes the output between push and complete. */
struct store_op {
	enum store_op_kind kind;
	/* input */
	const char *actor; /* who: token id (hash prefix), for audit rows and sends */
	const char *actor_role;
	const char *message_id; /* set-provider-id, reveal */
	int64_t review_id;      /* resolve */
	const char *text;       /* set: canonical provider message id; reveal: reason;
	                         * resolve: note (may be NULL) */
	struct store_send send;
	/* Writer-thread callbacks, set by the caller.  render() writes the
	 * answer body of a send or set from op->row into resp (resp_cap bytes)
	 * and returns its length; open() decrypts (blob, key_id) into
	 * op->number and returns 0 or < 0. */
	size_t (*render)(struct store_op *op);
	int (*open)(struct store_op *op, const uint8_t *blob, size_t n, const char *key_id);
	void *ctx;
	char *resp; /* caller's buffer for the answer body */
	size_t resp_cap;
	/* output */
	enum store_outcome outcome;
	struct store_op_row row;
	int resp_status; /* send: 201, or the first answer's status when replayed */
	size_t resp_len;
	char number[PHONE_E164_MAX + 1]; /* reveal */
	int64_t audit_id;                /* reveal, resolve */
	char resolved_at[25];            /* resolve */
};

/* A message summary row, with the send record when there is one. */
struct store_message {
	const char *id, *provider, *provider_message_id, *origin;
	const char *status, *raw_status, *error_code, *error_reason, *occurred_at;
	bool is_final, final_conflict, read_receipt, has_recipient;
	const char *recipient_masked, *destination_country, *country_source, *sender_identity;
	const char *template_key, *use_case, *action_type, *action_id, *metadata;
	const char *recipient_timezone;
	int64_t event_count, callback_count, duplicate_count;
	const char *first_callback_at, *final_at, *created_at, *updated_at, *sent_recorded_at;
};

/* One timeline event. */
struct store_event {
	int64_t id;
	const char *status, *raw_status, *error_code, *error_reason, *provider_event_id;
	bool is_final, read_receipt, changed_summary;
	const char *provider_occurred_at, *received_at;
	int64_t deliveries;       /* accepted requests that carried it (1 + provider retries) */
	const char *raw_payload;  /* only when asked for; not NUL-safe: see raw_payload_len */
	size_t raw_payload_len;   /* its size, read or not */
	bool raw_payload_omitted; /* past STORE_PAYLOAD_BUDGET: not read */
};

/* Message search.  Unset filters are NULL (or -1 for final); times are
 * canonical RFC 3339 UTC with milliseconds (util_rfc3339).  A
 * provider_message_id without a provider is looked up under every provider
 * of provider_table, through the (provider, provider_message_id) index. */
struct store_query {
	const char *statuses[ST__COUNT];
	size_t n_statuses;
	int final; /* -1 any, 0 not final, 1 final */
	const char *provider, *country, *sender_identity, *template_key, *use_case;
	const char *provider_message_id, *action_type, *action_id, *origin;
	const char *created_from, *created_to; /* created_at >= from, < to */
	const char *updated_from, *updated_to;
	const char *stuck_before; /* not final and created before this time */
	const char *before_id;    /* keyset cursor: ids strictly below, newest first */
	unsigned limit;
};

struct store_review_item {
	int64_t id;
	const char *created_at, *provider, *reason, *detail, *message_id, *raw_status;
	int64_t event_id;         /* 0 when none */
	const char *raw_payload;  /* NULL: none, or past the budget (raw_payload_omitted) */
	size_t raw_payload_len;   /* its size, read or not */
	bool raw_payload_omitted; /* past STORE_PAYLOAD_BUDGET: not read */
	const char *resolved_at, *resolved_by, *resolution;
	int64_t retries; /* resends of the same unusable request */
};

struct store_review_query {
	int state; /* 0 open, 1 resolved, -1 all */
	const char *reason;
	int64_t before_id; /* keyset cursor, 0 for the first page */
	unsigned limit;
};

struct store_audit_row {
	int64_t id;
	const char *at, *actor, *actor_role, *action, *message_id, *reason;
	int64_t review_id; /* 0 when none */
};

struct store_audit_query {
	const char *message_id;
	int64_t before_id;
	unsigned limit;
};

/* Aggregates over messages (GET /v1/stats): one row per value of the
 * grouping column among messages created in [since, until), the largest
 * groups first (ties by value, bytewise, no value last). */
enum store_stats_group {
	STORE_STATS_COUNTRY = 0, /* destination_country */
	STORE_STATS_PROVIDER,
	STORE_STATS_USE_CASE,
	STORE_STATS_SENDER_IDENTITY,
	STORE_STATS_TEMPLATE_KEY,
};

struct store_stats_query {
	enum store_stats_group group_by;
	const char *since, *until; /* canonical RFC 3339 UTC (util_rfc3339); both set */
	const char *provider, *use_case, *country; /* filters; NULL when unset */
	unsigned limit;                            /* groups */
};

struct store_stats_row {
	const char *key; /* the group's value; NULL for messages without one */
	int64_t count;
	int64_t final_count;
	int64_t by_status[ST__COUNT]; /* by current status, indexed by enum dlr_status */
};

/* Whether the backend applies CI_API items (else the API answers 501). */
bool store_api_writes(const struct store *st);

/* Read methods: any thread; results in arena a.  Each returns 0,
 * DLRD_ENOTFOUND (no such message), DLRD_EFULL (no read connection freed up
 * in time: answer 503), DLRD_EIO (err set) or DLRD_EUNSUPP (the backend has
 * no such method yet). */
int store_get_message(struct store *st, struct arena *a, const char *id, struct store_message *out,
                      char *err, size_t errlen);
/* store_get_timeline() returns at most this many events, the oldest. */
#define STORE_TIMELINE_EVENTS 1000
/* The summary and the events of one message (up to STORE_TIMELINE_EVENTS),
 * oldest first, in one snapshot; raw payloads only when payloads is true,
 * and only those that fit in STORE_PAYLOAD_BUDGET, as store_list_review()
 * reads them (the others raw_payload_omitted). */
int store_get_timeline(struct store *st, struct arena *a, const char *id, bool payloads,
                       struct store_message *msg, struct store_event **events, size_t *n, char *err,
                       size_t errlen);
/* Up to q->limit messages, newest (largest id) first. */
int store_search(struct store *st, struct arena *a, const struct store_query *q,
                 struct store_message **rows, size_t *n, char *err, size_t errlen);
/* Raw payload bytes one review list reads, in all. */
#define STORE_PAYLOAD_BUDGET (4u << 20)
/* Up to q->limit review items, newest first, with their raw payloads in that
 * order while each fits in what is left of STORE_PAYLOAD_BUDGET; one that
 * does not is not read (raw_payload_omitted), and a later smaller one may
 * still be.  Items can hold up to max_body_bytes each (a whole batch). */
int store_list_review(struct store *st, struct arena *a, const struct store_review_query *q,
                      struct store_review_item **rows, size_t *n, char *err, size_t errlen);
/* Up to q->limit audit rows, newest first. */
int store_list_audit(struct store *st, struct arena *a, const struct store_audit_query *q,
                     struct store_audit_row **rows, size_t *n, char *err, size_t errlen);
/* Up to q->limit groups, in one read over sms_messages. */
int store_stats(struct store *st, struct arena *a, const struct store_stats_query *q,
                struct store_stats_row **rows, size_t *n, char *err, size_t errlen);

#endif
