/* SPDX-License-Identifier: MIT */
/*
 * The JSON API: everything under /v1/ and GET /openapi.json (the contract,
 * docs/openapi.json, embedded at build time).  The app records what it
 * sends (POST /v1/messages, idempotent per token and Idempotency-Key) and
 * sets provider message ids (PATCH); support and engineers read summaries,
 * timelines and searches with masked numbers, reveal a number with an
 * audited reason, and work the review queue.
 *
 * The HTTP front (http.c) owns the connection and calls in three steps:
 * api_begin() once the headers are in (routing, bearer auth, roles: it may
 * answer at once), api_dispatch() once the body is in (reads answer right
 * away on the HTTP thread; writes reserve a commit-queue slot and ask to be
 * parked), and api_finish() after the writer resumed a parked request.
 * Writes go through the commit queue and the one writer thread like
 * callbacks, so a 2xx means durable.
 *
 * Every error is JSON: {"error":{"code":"...","message":"...","field":"..."}}
 * with a stable code; messages never hold a phone number, a token or an
 * input value.
 *
 * Threads: struct api is read-only after api_new() (its parts are
 * thread-safe: the read pool, the time zone cache); per-request state lives
 * in the request's arena and belongs to the thread serving the request,
 * except while parked.
 */
#ifndef DLRD_API_H
#define DLRD_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util.h"

struct api;
struct api_state;
struct arena;
struct commit_item;
struct commitq;
struct config;
struct pii_keyring;

#define API_MAX_HEADERS 6

/* An answer for the HTTP front to send. */
struct api_answer {
	unsigned status;
	char *body; /* heap (the front frees it), or static when body_static */
	size_t len;
	bool body_static;
	const char *content_type; /* static */
	/* extra headers: name static, value static or in the request arena
	 * (the front copies them) */
	const char *header_name[API_MAX_HEADERS];
	const char *header_value[API_MAX_HEADERS];
	size_t n_headers;
	bool park; /* no answer yet: suspend, then commitq_push(item) */
};

/* What the HTTP front hands the API about one request.  Views are borrowed
 * for the call. */
struct api_request {
	const char *method;
	struct iov path;        /* raw path, no query */
	struct iov query;       /* raw query without '?' */
	struct iov body;        /* NUL-terminated at body.p[body.n] */
	int64_t content_length; /* -1 when not given */
	size_t max_body;        /* [server] max_body_bytes */
	const char *(*header)(void *hctx, const char *name);
	void *hctx;
	struct arena *arena;      /* the request's arena */
	struct commit_item *item; /* the request's commit item, for writes */
	int64_t now_ms;
};

/* Whether path belongs to the API: "/v1", "/v1/..." or "/openapi.json". */
bool api_owns(struct iov path);
/* The API's error object for what the front refuses on an API path before
 * any route runs (a target too long, too many headers, broken framing);
 * the answer closes the connection.  message: static text. */
void api_early_error(struct api_answer *ans, unsigned status, const char *code,
                     const char *message);

/* Checks the settings api_new() reads (api.tokens, and that every item of
 * api.optout_exempt_use_cases can be a use case) and keeps nothing:
 * start-up calls it before it writes any file.  Returns 0, or
 * DLRD_ECONFIG with err naming the key. */
int api_check_config(const struct config *cfg, char *err, size_t errlen);

/* Sets up the API over q and its store: bearer tokens ([api] tokens), the
 * opt-out exemptions, the time zone database and, when tokens are
 * configured, the encryption keys ([privacy] encryption_keys, or the key
 * file created once in [server] data_dir, which is logged).  Returns 0 or
 * DLRD_ECONFIG / DLRD_EIO with err set.  Main thread, at start-up. */
int api_new(const struct config *cfg, struct commitq *q, const struct pii_keyring *kr,
            struct api **out, char *err, size_t errlen);
/* Frees what api_new made.  Accepts NULL.  Main thread, after the HTTP
 * server stopped. */
void api_free(struct api *a);

/* Headers complete: routes, authenticates and authorizes.  Returns true
 * when it answered (ans), false to go on reading the body.  *state gets the
 * request's state (in rq->arena) for the next calls.  HTTP thread. */
bool api_begin(struct api *a, const struct api_request *rq, struct api_state **state,
               struct api_answer *ans);
/* Body complete: answers (ans), or for a write fills rq->item, which holds
 * a reserved queue slot, and sets ans->park.  HTTP thread. */
void api_dispatch(struct api *a, struct api_state *s, const struct api_request *rq,
                  struct api_answer *ans);
/* The writer completed the parked item: the answer.  HTTP thread. */
void api_finish(struct api *a, struct api_state *s, const struct commit_item *item,
                struct api_answer *ans);

/* The route table, for the contract test: method ("GET") and OpenAPI path
 * template ("/v1/messages/{id}") of route i < api_route_count(). */
size_t api_route_count(void);
void api_route(size_t i, const char **method, const char **pattern);

/* The OpenAPI document (docs/openapi.json), embedded by the build. */
extern const unsigned char api_openapi_json[];
extern const size_t api_openapi_json_len;

#endif
