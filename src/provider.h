/* SPDX-License-Identifier: MIT */
/*
 * The provider table.  Each provider is one file in src/providers/ exporting
 * one `const struct provider`, listed once in providers/registry.c (like
 * tmux's command table or SQLite's VFS methods).  The HTTP front knows
 * nothing about any provider: it routes /webhooks/<name>/<kind> to the entry,
 * calls authenticate(), then parse(), and queues the events parse() made.
 *
 * Contract for every adapter:
 * - authenticate() runs first, over the raw request, and decides 401 before
 *   anything is written.  It may decode the body and keep the result in
 *   req->scratch for parse().
 * - parse() turns the request into one or more normalized events in the
 *   request arena.  A signed request whose payload is unusable becomes one
 *   EV_UNUSABLE event (review queue) and is still answered 2xx.
 * - Both may be called from any HTTP thread at once: the provider's state
 *   (from init) is read-only after start-up.
 */
#ifndef DLRD_PROVIDER_H
#define DLRD_PROVIDER_H

#include <stddef.h>
#include <stdint.h>
#include "arena.h"
#include "config.h"
#include "errcat.h"
#include "event.h"
#include "util.h"

enum webhook_kind { HOOK_STATUS = 0, HOOK_INBOUND };

/* What the HTTP front hands an adapter.  All views are borrowed for the
 * duration of the request. */
struct provider_request {
	const char *method; /* "POST", "GET", ... */
	enum webhook_kind kind;
	struct iov target;        /* raw request-target: "/webhooks/twilio/status?x=1" */
	struct iov path;          /* raw path part of target */
	struct iov query;         /* raw query part (without '?'), may be empty */
	struct iov body;          /* raw body bytes */
	const char *content_type; /* media type only, lower-cased ("application/json"), or "" */
	const char *public_url;   /* [server] public_url, no trailing slash */
	int64_t now_ms;
	struct arena *arena;
	/* Header lookup (case-insensitive); returns NULL when absent. */
	const char *(*header)(void *hctx, const char *name);
	void *hctx;
	void *scratch; /* for the adapter, between the two calls */
};

/* What parse() gives back.  Inbound hooks set body and content_type to what
 * the provider expects back (for example Twilio's empty TwiML). */
struct provider_result {
	struct dlr_event *events; /* in the request arena */
	size_t n_events;
	int http_status;          /* answer once stored (default 200) */
	const char *content_type; /* of the answer body, default "text/plain" */
	const char *body;         /* answer body, static, default "" */
	/* What to store as the raw payload when it must differ from the
	 * request (for example a query string with a secret redacted); NULL p:
	 * the body, or the query string for GET. */
	struct iov raw_payload;
};

struct provider {
	const char *name;                    /* path segment and config section */
	unsigned hooks;                      /* bit (1 << HOOK_STATUS), (1 << HOOK_INBOUND) */
	unsigned get_hooks;                  /* hooks that take GET as well as POST */
	unsigned get_only_hooks;             /* of get_hooks, those that refuse POST */
	const struct config_key *keys;       /* keys of its config section, {NULL} ended */
	const struct provider_error *errors; /* its error codes, {NULL} ended, or NULL */
	/* The canonical form of a message id, as parse() stores it, so that a
	 * send recorded through the API and its callbacks meet on one key
	 * (in the arena; NULL when the text is not a usable id).  NULL hook:
	 * ids are kept as sent. */
	const char *(*canonical_id)(struct arena *a, const char *p, size_t n);
	/* For the data migration of the provider event ids that a dlrd before
	 * the recipient tag (privacy.h) built with the recipient's number in
	 * them (store migrations: SQLite 7, PostgreSQL 5).  Given a stored
	 * status event's provider_event_id, provider_message_id, raw_status
	 * and error_code (NULL: SQL NULL), returns the id parse() makes now
	 * for that event, in the arena, or NULL when id holds no number (no
	 * recipient in it, already the current form, or not a form the adapter
	 * ever made).  Needs the privacy key.  NULL hook: the provider's event
	 * ids never held a number. */
	const char *(*upgrade_event_id)(struct arena *a, const char *id, const char *pmid,
	                                const char *raw_status, const char *error_code);
	/* Reads the provider's section.  Sets *state to NULL when the provider is
	 * not configured (its paths answer 404).  Returns 0 or DLRD_ECONFIG with
	 * a message naming the key. */
	int (*init)(const struct config *cfg, void **state, char *err, size_t errlen);
	void (*fini)(void *state);
	/* Returns 0; DLRD_EAUTH or DLRD_ESTALE (401); DLRD_EINVAL (400);
	 * DLRD_EUNSUPP (415 or 405).  err gets a reason fit for the log. */
	int (*authenticate)(const void *state, struct provider_request *req, char *err,
	                    size_t errlen);
	/* Returns 0 with res filled, or DLRD_EINVAL (400) with err set. */
	int (*parse)(const void *state, struct provider_request *req, struct provider_result *res,
	             char *err, size_t errlen);
};

/* The provider table, NULL-terminated, and lookup by name. */
extern const struct provider *const provider_table[];
const struct provider *provider_find(const char *name, size_t n);
/* Index of p in provider_table (for per-provider metrics). */
size_t provider_index(const struct provider *p);
size_t provider_count(void);

/* Helpers shared by adapters. */

/* Fills the recipient fields of ev from a raw number as the provider sent
 * it: recipient_hash (keyed HMAC, privacy.h; NULL when no key is set) and
 * destination_country, unless country
 * was already set from provider data.  Silently leaves them NULL when raw is
 * not a phone number. */
void provider_set_recipient(struct dlr_event *ev, struct arena *a, const char *raw, size_t n);

/* Copies a short provider text (an id, a status, an error code) into the
 * arena after checking it: 1..max bytes, no control bytes.  Returns NULL when
 * it is empty or fails the check. */
const char *provider_text(struct arena *a, const char *p, size_t n, size_t max);

/* For the store migrations (any thread, privacy key set): when the status
 * event that provider stored with provider event id `id` (and the other
 * columns as in struct provider's upgrade_event_id) has an id that held the
 * recipient's number, sets *new_id (in the arena) to the id parse() makes
 * now and new_dedup to the dedup key event_finish() gives it, exactly what
 * a retry of that callback gets today, and returns true.  Returns false,
 * nothing set, when the row needs no change (unknown provider included). */
bool provider_upgrade_event_id(struct arena *a, const char *provider, const char *id,
                               const char *pmid, const char *raw_status, const char *error_code,
                               const char **new_id, char new_dedup[65]);

/* Like provider_text(a, p, n, LIM_ID_BYTES), for a message or event id; an
 * id made only of hex digits and '-' (a UUID, an SMPP hex id) is
 * lower-cased, so a receipt matches whatever case an application stored it
 * in, and any other id is kept as sent. */
const char *provider_hex_id(struct arena *a, const char *p, size_t n);

/* n zeroed events (at least one) in the arena, each with provider set and
 * occurred_ms -1 (no provider time), for parse() to fill. */
struct dlr_event *provider_events_new(struct arena *a, const char *provider, size_t n);

/* Makes ev the event of an authenticated but unusable payload: EV_UNUSABLE
 * for the review queue with detail (static text), status unknown, no
 * message id; then event_finish(). */
void provider_unusable(struct dlr_event *ev, const char *detail);

/* For init(): the comma-separated list at [section] key (config_list()).
 * Sets *list NULL and *n 0 when the key is absent or lists nothing, so the
 * caller leaves the provider unconfigured; otherwise *list is the
 * caller's (config_list_free).  Returns DLRD_ECONFIG, nothing in *list,
 * and an err naming the key but never an item, when the list has more than
 * LIM_SECRETS items ("at most 16 <what>") or an item is shorter than
 * min_len bytes. */
int provider_config_list(const struct config *cfg, const char *section, const char *key,
                         const char *what, size_t min_len, char ***list, size_t *n, char *err,
                         size_t errlen);

/* The largest tolerance_seconds (a week): how far a signed timestamp may be
 * from our clock, either way.  Above a few minutes only for schemes whose
 * retries repeat the first attempt's timestamp (Vonage SMS, SNS). */
#define PROVIDER_TOLERANCE_MAX 604800u

/* For init(): [section] tolerance_seconds, an integer in
 * 1..PROVIDER_TOLERANCE_MAX, or dflt when absent, into *seconds.  Returns
 * 0, or DLRD_ECONFIG with err naming the key. */
int provider_config_tolerance(const struct config *cfg, const char *section, unsigned long dflt,
                              int64_t *seconds, char *err, size_t errlen);

#endif
