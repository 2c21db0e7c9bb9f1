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
	const char *method;         /* "POST", "GET", ... */
	enum webhook_kind kind;
	struct iov target;          /* raw request-target: "/webhooks/twilio/status?x=1" */
	struct iov path;            /* raw path part of target */
	struct iov query;           /* raw query part (without '?'), may be empty */
	struct iov body;            /* raw body bytes */
	const char *content_type;   /* media type only, lower-cased ("application/json"), or "" */
	const char *public_url;     /* [server] public_url, no trailing slash */
	int64_t now_ms;
	struct arena *arena;
	/* Header lookup (case-insensitive); returns NULL when absent. */
	const char *(*header)(void *hctx, const char *name);
	void *hctx;
	void *scratch;              /* for the adapter, between the two calls */
};

/* What parse() gives back.  Inbound hooks set body and content_type to what
 * the provider expects back (for example Twilio's empty TwiML). */
struct provider_result {
	struct dlr_event *events;   /* in the request arena */
	size_t n_events;
	int http_status;            /* answer once stored (default 200) */
	const char *content_type;   /* of the answer body, default "text/plain" */
	const char *body;           /* answer body, static, default "" */
	/* What to store as the raw payload when it must differ from the
	 * request (for example a query string with a secret redacted); NULL p:
	 * the body, or the query string for GET. */
	struct iov raw_payload;
};

struct provider {
	const char *name;                   /* path segment and config section */
	unsigned hooks;                     /* bit (1 << HOOK_STATUS), (1 << HOOK_INBOUND) */
	unsigned get_hooks;                 /* hooks that take GET as well as POST */
	const struct config_key *keys;      /* keys of its config section, {NULL} ended */
	const struct provider_error *errors; /* its error codes, {NULL} ended, or NULL */
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
 * it: recipient_hash (keyed HMAC) and destination_country, unless country
 * was already set from provider data.  Silently leaves them NULL when raw is
 * not a phone number. */
void provider_set_recipient(struct dlr_event *ev, struct arena *a, const char *raw, size_t n);

/* Copies a short provider text (an id, a status, an error code) into the
 * arena after checking it: 1..max bytes, no control bytes.  Returns NULL when
 * it is empty or fails the check. */
const char *provider_text(struct arena *a, const char *p, size_t n, size_t max);

/* The recipient-hash key, set once at start-up before threads run. */
void provider_set_hash_key(const uint8_t *key, size_t len);

#endif
