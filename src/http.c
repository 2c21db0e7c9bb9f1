/* SPDX-License-Identifier: MIT */
/*
 * The HTTP front over libmicrohttpd (internal epoll, thread pool,
 * suspend/resume).  What libmicrohttpd does not do for us is done here:
 *
 * - the raw request-target is captured in the URI log callback (MHD would
 *   otherwise hand us a decoded path and parsed arguments, and signatures are
 *   computed over the raw bytes);
 * - the raw body is read into the request's arena with a hard cap (413 at
 *   once when Content-Length says too much; a chunked body that grows past
 *   it is discarded from there on and answered 413 when it ends, since MHD
 *   0.9.75 cannot queue an answer in the middle of an upload, and the
 *   request deadline bounds how long that may take);
 * - past max_connections, a new connection is closed as soon as it is
 *   accepted (an accept policy over our own count), instead of waiting in
 *   the listen backlog until a slot frees, and the soft limit on open files
 *   is raised to cover max_connections;
 * - duplicated Content-Length, or Content-Length together with
 *   Transfer-Encoding, or any Transfer-Encoding but chunked, or any in
 *   HTTP/1.0, is 400; so is a
 *   header name that is not a token, or that MHD mangled from a folded line,
 *   and a header value with a bare CR in it (a proxy in front would frame
 *   such a request differently: is_token(), scan_header());
 * - a whole request must arrive within request_timeout_ms (a watchdog shuts
 *   down the socket of a request that is still arriving past its deadline;
 *   MHD's own timeout is only an inactivity timeout);
 * - a callback is answered only after its transaction is durable: the
 *   connection is suspended, the request is queued for group commit, and the
 *   writer resumes it with the result.  Every parked request is resumed
 *   exactly once (commitq.h), and a stopping server waits for them;
 * - /v1/... and /openapi.json go to the JSON API (api.c), which answers
 *   reads at once and parks its writes the same way as callbacks;
 * - a request without a body is answered at MHD's second call, not its
 *   first: MHD 0.9.75 closes the connection after an answer queued at the
 *   first call, so /healthz, /metrics and API reads would each cost a new
 *   connection.
 *
 * Threads: request structs belong to the MHD thread serving the connection,
 * except between commitq_push() and the writer's complete() call.  The
 * connection registry (for the watchdog) is guarded by reg_mu.
 */
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api.h"
#include "commitq.h"
#include "crypto.h"
#include "dlrd_limits.h"
#include "log.h"
#include "metrics.h"
#include "optout.h"
#include "pii.h"
#include "privacy.h"
#include "provider.h"

#define REQ_ARENA_BYTES 6144
#define WATCHDOG_MS     200
#define RETRY_AFTER     "1"
/* Files besides connections: listening socket, epoll and event fds, the
 * database and its WAL, logs. */
#define FD_RESERVE   64
#define LIMIT_LOG_MS 10000
/* A connection's memory pool in MHD 0.9.75 holds the whole request head
 * (request line and header lines, which stay where they were read), a
 * record for each header (56 bytes, 64 with MHD's alignment), the read
 * buffer, and then the answer's head, built in what is left.  When a head
 * within our limits leaves no room for that, MHD processes the request (a
 * callback is stored) and then closes the connection without an answer
 * ("failed to create response header"): the provider retries for ever.  So
 * the pool holds the largest head our limits let through, plus 8 KiB for
 * the answer's head and the read buffer (a body passes through it, and
 * pipelined requests wait in it); the limits themselves are enforced in
 * begin(), and a head much larger than them runs out of pool and gets
 * MHD's own 431.  MHD zeroes the whole pool for every request, so it is no
 * larger than that (bodies are read into our own arena). */
#define MHD_HEADER_RECORD_BYTES 64
#define MHD_POOL_BYTES                                                                             \
	((size_t)LIM_TARGET_BYTES + LIM_HEADER_BYTES + LIM_HEADERS * MHD_HEADER_RECORD_BYTES + 8192)

enum phase { PH_NEW = 0, PH_BODY, PH_PARKED, PH_DONE };

/* Connection state for the deadline watchdog. */
enum conn_state { CS_IDLE = 0, CS_REQUEST, CS_PARKED };

struct conn {
	struct conn *prev, *next; /* registry, guarded by reg_mu */
	int fd;
	atomic_int state;
	atomic_llong since_ms; /* when the current state began (monotonic: no NTP step moves it) */
	bool killed;           /* guarded by reg_mu */
};

struct req {
	struct http *h;
	struct conn *cc;
	struct MHD_Connection *mc;
	enum phase phase;
	const char *method;
	const struct provider *prov;
	const void *prov_state;
	size_t prov_idx;
	enum webhook_kind kind;
	char *target;
	size_t target_len;
	bool target_too_long;
	bool api_target; /* the target names the JSON API (also when too long) */
	char *body;
	size_t body_len, body_cap;
	bool body_heap;
	bool body_too_big; /* past max_body_bytes: the rest is discarded */
	bool is_api;       /* a JSON API request (api.c), not a webhook */
	bool answering;    /* resumed and answered; counted in h->answering */
	bool deferred;     /* no body: begin() waits for MHD's second call */
	struct api_state *api;
	struct provider_result res;
	struct commit_item item;
	struct req *next_free;
	struct arena arena;
	char arena_buf[REQ_ARENA_BYTES];
};

struct http {
	const struct config *cfg;
	struct commitq *q;
	void *const *states;
	struct MHD_Daemon *d;
	char *public_url;
	struct api *api;              /* the JSON API; read-only after start */
	const struct pii_keyring *kr; /* seals raw payloads (borrowed) */
	atomic_int parked;            /* waiting for their transaction (push to resume) */
	atomic_int answering;         /* resumed, answer not yet sent (finish to completed) */
	atomic_uint n_conns;          /* open connections (for the limit) */
	atomic_llong limit_log_ms;    /* last "connection limit reached" log */
	/* line budgets for what any peer can trigger (log.h) */
	struct log_limit reject_log, deadline_log;
	atomic_bool quiesced; /* shutting down: new connections are closed */
	/* static responses, shared read-only by every thread */
	struct MHD_Response *r_ok, *r_400, *r_401, *r_404, *r_405_post, *r_405_get_post,
	    *r_405_get_only, *r_405_get, *r_413, *r_414, *r_415, *r_431, *r_503, *r_503_full,
	    *r_503_stopping, *r_health_stopping, *r_503_stalled, *r_health_ok, *r_health_bad;
	/* free list of request structs */
	pthread_mutex_t pool_mu;
	struct req *pool;
	size_t pool_n;
	/* connection registry and watchdog */
	pthread_mutex_t reg_mu;
	struct conn *conns;
	pthread_t watchdog;
	atomic_bool stopping;
	bool watchdog_started;
};

#define POOL_MAX 1024

static struct req *req_new(struct http *h)
{
	struct req *r = NULL;
	pthread_mutex_lock(&h->pool_mu);
	if (h->pool) {
		r = h->pool;
		h->pool = r->next_free;
		h->pool_n--;
	}
	pthread_mutex_unlock(&h->pool_mu);
	if (!r)
		r = xmalloc(sizeof(*r));
	memset(r, 0, offsetof(struct req, arena));
	r->h = h;
	arena_init(&r->arena, r->arena_buf, sizeof(r->arena_buf));
	return r;
}

static void req_free(struct http *h, struct req *r)
{
	if (r->body_heap)
		free(r->body);
	arena_fini(&r->arena);
	pthread_mutex_lock(&h->pool_mu);
	if (h->pool_n < POOL_MAX) {
		r->next_free = h->pool;
		h->pool = r;
		h->pool_n++;
		r = NULL;
	}
	pthread_mutex_unlock(&h->pool_mu);
	free(r);
}

static void conn_set(struct conn *cc, enum conn_state s)
{
	if (!cc)
		return;
	atomic_store(&cc->since_ms, util_mono_ms());
	atomic_store(&cc->state, (int)s);
}

static struct MHD_Response *static_response(const char *body, const char *ctype)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	return r;
}

static enum MHD_Result reply(struct req *r, unsigned status, struct MHD_Response *resp)
{
	r->phase = PH_DONE;
	metrics_http(status);
	return MHD_queue_response(r->mc, status, resp);
}

/* A one-off plain-text answer (errors whose reason helps the caller). */
static enum MHD_Result reply_text(struct req *r, unsigned status, const char *text, bool close_conn)
{
	char buf[320];
	size_t n = util_fmt(buf, sizeof(buf), "%s\n", text);
	struct MHD_Response *resp = MHD_create_response_from_buffer(n, buf, MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (close_conn)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	enum MHD_Result ret = reply(r, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* An adapter's answer body (static text) with its content type. */
static enum MHD_Result reply_body(struct req *r, unsigned status, const char *body,
                                  const char *ctype)
{
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	                        ctype ? ctype : "text/plain; charset=utf-8");
	if (status == MHD_HTTP_SERVICE_UNAVAILABLE) /* a provider's "try later" */
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, RETRY_AFTER);
	enum MHD_Result ret = reply(r, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ---- request framing checks ---- */

struct hdr_scan {
	unsigned n;
	size_t bytes; /* as sent: name, ": ", value, CRLF */
	unsigned n_cl;
	unsigned n_te;
	bool te_ok;
	unsigned long long cl;
	bool cl_bad;
	bool name_bad;  /* see is_token() */
	bool value_bad; /* a bare CR in a value: see scan_header() */
	bool http10;    /* an HTTP/1.0 request */
};

/* A field name MHD 0.9.75 does not frame by but a proxy in front may, so
 * that the two would split the byte stream into different requests (CL.TE
 * smuggling): 400, as RFC 9112 5.1 and 5.2 ask.  MHD keeps anything before
 * the colon, so "Transfer-Encoding : chunked" reaches us as a header named
 * "Transfer-Encoding " (RFC 9110 5.1: a name is a token); and it glues a
 * folded continuation line (obs-fold) onto the name, so
 * "Transfer-Encoding:\r\n chunked" reaches us as "Transfer-Encodingchunked"
 * with an empty value, where a proxy that unfolds sees chunked. */
static bool is_token(const char *s)
{
	static const char tchar[] = "!#$%&'*+-.^_`|~";
	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr(tchar, c)))
			return false;
	}
	return true;
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
	struct hdr_scan *s = cls;
	(void)kind;
	size_t vl = value ? strlen(value) : 0;
	s->n++;
	s->bytes += (key ? strlen(key) : 0) + vl + 4;
	if (!key || !is_token(key) || (strncasecmp(key, "Content-Length", 14) == 0 && key[14]) ||
	    (strncasecmp(key, "Transfer-Encoding", 17) == 0 && key[17]))
		s->name_bad = true;
	/* MHD 0.9.75 ends a header line only at LF, so a bare CR stays inside
	 * the value, where a proxy that ends lines at CR sees the start of
	 * another field: "X-A: 1\rTransfer-Encoding: chunked" would be framed
	 * by Content-Length here and as chunked there.  RFC 9112 2.2: such a
	 * message is invalid (400). */
	if (vl && memchr(value, '\r', vl))
		s->value_bad = true;
	if (strcasecmp(key, "Content-Length") == 0) {
		uint64_t v;
		s->n_cl++;
		if (!value || util_parse_u64(value, strlen(value), &v) != 0)
			s->cl_bad = true;
		else
			s->cl = v;
	} else if (strcasecmp(key, "Transfer-Encoding") == 0) {
		s->n_te++;
		s->te_ok = value && strcasecmp(value, "chunked") == 0;
	}
	return MHD_YES;
}

/* ---- routing ---- */

static bool path_is(struct iov path, const char *s)
{
	return iov_eq(path, s);
}

/* Splits "/webhooks/<provider>/<kind>". */
static bool parse_webhook_path(struct iov path, struct iov *name, struct iov *kind)
{
	static const char prefix[] = "/webhooks/";
	const size_t pl = sizeof(prefix) - 1;
	if (path.n <= pl || memcmp(path.p, prefix, pl) != 0)
		return false;
	const char *p = path.p + pl, *end = path.p + path.n;
	const char *slash = memchr(p, '/', (size_t)(end - p));
	if (!slash || slash == p || slash + 1 >= end)
		return false;
	*name = (struct iov){p, (size_t)(slash - p)};
	*kind = (struct iov){slash + 1, (size_t)(end - slash - 1)};
	return memchr(kind->p, '/', kind->n) == NULL;
}

static void split_target(const struct req *r, struct iov *path, struct iov *query)
{
	const char *q = memchr(r->target, '?', r->target_len);
	if (q) {
		*path = (struct iov){r->target, (size_t)(q - r->target)};
		*query = (struct iov){q + 1, r->target_len - (size_t)(q - r->target) - 1};
	} else {
		*path = (struct iov){r->target, r->target_len};
		*query = (struct iov){"", 0};
	}
}

static enum MHD_Result serve_metrics(struct req *r)
{
	struct http *h = r->h;
	size_t len;
	char *text = metrics_render(commitq_depth(h->q), (size_t)atomic_load(&h->parked),
	                            commitq_healthy(h->q), &len);
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	                        "text/plain; version=0.0.4; charset=utf-8");
	enum MHD_Result ret = reply(r, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* The 405 answer of a webhook path, whose Allow header names the methods
 * that path takes. */
static struct MHD_Response *webhook_405(const struct req *r)
{
	unsigned bit = 1u << r->kind;

	if (r->prov->get_only_hooks & bit)
		return r->h->r_405_get_only;
	return r->prov->get_hooks & bit ? r->h->r_405_get_post : r->h->r_405_post;
}

static enum MHD_Result api_begin_req(struct req *r, const struct hdr_scan *hs);
static enum MHD_Result reply_early(struct req *r, unsigned status, struct MHD_Response *plain,
                                   const char *code, const char *text);

/* Headers are complete (hs: their scan), no body read yet. */
static enum MHD_Result begin(struct req *r, const struct hdr_scan *hs)
{
	struct http *h = r->h;
	struct iov path, query, name, kind;

	if (r->target_too_long)
		return reply_early(r, MHD_HTTP_URI_TOO_LONG, h->r_414, "uri_too_long",
		                   "request target too long");
	if (hs->n > LIM_HEADERS)
		return reply_early(r, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, h->r_431,
		                   "too_many_headers", "too many request headers");
	if (hs->bytes > LIM_HEADER_BYTES)
		return reply_early(r, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, NULL,
		                   "headers_too_large", "request headers too large");
	/* Transfer-Encoding in HTTP/1.0, which has none, is faulty framing
	 * (RFC 9112 6.1): a 1.0 hop in front frames the body otherwise. */
	if (hs->n_cl > 1 || hs->n_te > 1 || (hs->n_cl && hs->n_te) || hs->cl_bad ||
	    (hs->n_te && (!hs->te_ok || hs->http10)))
		return reply_early(r, MHD_HTTP_BAD_REQUEST, NULL, "bad_framing",
		                   "conflicting or invalid Content-Length / Transfer-Encoding");
	if (hs->name_bad)
		return reply_early(r, MHD_HTTP_BAD_REQUEST, NULL, "bad_header_name",
		                   "invalid header field name");
	if (hs->value_bad)
		return reply_early(r, MHD_HTTP_BAD_REQUEST, NULL, "bad_header_value",
		                   "invalid header field value (a bare CR)");

	split_target(r, &path, &query);
	if (path_is(path, "/healthz")) {
		if (strcmp(r->method, "GET") && strcmp(r->method, "HEAD"))
			return reply(r, MHD_HTTP_METHOD_NOT_ALLOWED, h->r_405_get);
		/* stopping: a load balancer should send elsewhere now */
		if (atomic_load(&h->quiesced))
			return reply(r, MHD_HTTP_SERVICE_UNAVAILABLE, h->r_health_stopping);
		return commitq_healthy(h->q)
		           ? reply(r, MHD_HTTP_OK, h->r_health_ok)
		           : reply(r, MHD_HTTP_SERVICE_UNAVAILABLE, h->r_health_bad);
	}
	if (path_is(path, "/metrics")) {
		if (strcmp(r->method, "GET") && strcmp(r->method, "HEAD"))
			return reply(r, MHD_HTTP_METHOD_NOT_ALLOWED, h->r_405_get);
		return serve_metrics(r);
	}
	if (api_owns(path))
		return api_begin_req(r, hs);
	if (!parse_webhook_path(path, &name, &kind))
		return reply(r, MHD_HTTP_NOT_FOUND, h->r_404);
	r->prov = provider_find(name.p, name.n);
	if (!r->prov)
		return reply(r, MHD_HTTP_NOT_FOUND, h->r_404);
	r->prov_idx = provider_index(r->prov);
	r->prov_state = h->states[r->prov_idx];
	if (iov_eq(kind, "status"))
		r->kind = HOOK_STATUS;
	else if (iov_eq(kind, "inbound"))
		r->kind = HOOK_INBOUND;
	else
		return reply(r, MHD_HTTP_NOT_FOUND, h->r_404);
	/* An unconfigured provider is not there at all: dlrd never accepts an
	 * unauthenticated callback. */
	if (!r->prov_state || !(r->prov->hooks & (1u << r->kind)))
		return reply(r, MHD_HTTP_NOT_FOUND, h->r_404);
	unsigned bit = 1u << r->kind;
	bool method_ok = strcmp(r->method, "POST") == 0
	                     ? !(r->prov->get_only_hooks & bit)
	                     : strcmp(r->method, "GET") == 0 && (r->prov->get_hooks & bit);
	if (!method_ok) {
		metrics_callback(r->prov_idx, CB_UNSUPPORTED);
		return reply(r, MHD_HTTP_METHOD_NOT_ALLOWED, webhook_405(r));
	}
	if (hs->n_cl && hs->cl > h->cfg->max_body_bytes) {
		metrics_callback(r->prov_idx, CB_TOO_LARGE);
		return reply(r, MHD_HTTP_CONTENT_TOO_LARGE, h->r_413);
	}
	if (hs->n_cl) {
		r->body_cap = (size_t)hs->cl;
		r->body = arena_alloc(&r->arena, r->body_cap + 1);
	}
	r->phase = PH_BODY;
	return MHD_YES;
}

static enum MHD_Result append_body(struct req *r, const char *data, size_t n)
{
	struct http *h = r->h;
	if (r->body_too_big)
		return MHD_YES;
	if (n > h->cfg->max_body_bytes - r->body_len) {
		/* MHD cannot queue an answer in the middle of an upload: drop
		 * the body and answer 413 when it ends (dispatch). */
		if (r->body_heap)
			free(r->body);
		r->body = NULL;
		r->body_len = r->body_cap = 0;
		r->body_heap = false;
		r->body_too_big = true;
		return MHD_YES;
	}
	if (r->body_len + n > r->body_cap) {
		/* chunked (or a lying Content-Length, which MHD already bounds) */
		size_t cap = r->body_cap ? r->body_cap : 4096;
		while (cap < r->body_len + n)
			cap *= 2;
		if (cap > h->cfg->max_body_bytes)
			cap = h->cfg->max_body_bytes;
		char *nb = xmalloc(cap + 1);
		if (r->body_len)
			memcpy(nb, r->body, r->body_len);
		if (r->body_heap)
			free(r->body);
		r->body = nb;
		r->body_cap = cap;
		r->body_heap = true;
	}
	memcpy(r->body + r->body_len, data, n);
	r->body_len += n;
	return MHD_YES;
}

static const char *lookup_header(void *hctx, const char *name)
{
	return MHD_lookup_connection_value(hctx, MHD_HEADER_KIND, name);
}

/* Media type of Content-Type, lower-cased, parameters dropped. */
static const char *media_type(struct req *r)
{
	const char *ct = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Content-Type");
	if (!ct)
		return "";
	while (*ct == ' ' || *ct == '\t')
		ct++;
	size_t n = strcspn(ct, "; \t");
	char *out = arena_alloc(&r->arena, n + 1);
	for (size_t i = 0; i < n; i++)
		out[i] = (char)(ct[i] >= 'A' && ct[i] <= 'Z' ? ct[i] + 32 : ct[i]);
	out[n] = '\0';
	return out;
}

static void on_committed(struct commit_item *it);

/* A keyed digest (privacy.h: the bytes hold phone numbers) of the
 * provider, tag and the request's raw bytes, so that a resend of the same
 * request gives the same key; "" without a hash key.  Two uses, told apart
 * by the tag: an unusable event's dedup key (its place in the request, in
 * decimal: it has no ids to be known by), and the name under which a
 * request of several events keeps its payload once ("payload", commitq.h).
 * Hashed in pieces, not copied: a batch of 1000 unusable events would
 * otherwise copy the whole body into the arena 1000 times. */
static void request_key(const struct req *r, struct iov raw, const char *tag, char out[65])
{
	uint8_t md[CRYPTO_SHA256_LEN];

	out[0] = '\0';
	if (!privacy_has_key())
		return;
	crypto_sha256_pieces(
	    (const struct crypto_piece[]){
	        {r->prov->name, strlen(r->prov->name) + 1}, {tag, strlen(tag) + 1}, {raw.p, raw.n}},
	    3, md);
	privacy_request_hash(md, out);
}

/* ---- the JSON API (api.c): same body reading and parking, its own answers ---- */

static enum MHD_Result reply_api(struct req *r, struct api_answer *ans)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	    ans->len, ans->body, ans->body_static ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ans->content_type);
	for (size_t i = 0; i < ans->n_headers; i++)
		MHD_add_response_header(resp, ans->header_name[i], ans->header_value[i]);
	enum MHD_Result ret = reply(r, ans->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* An answer given before routing (framing, limits): to a JSON API client
 * as the API's error object, to anyone else as plain (a static answer) or,
 * when NULL, as text.  Closes the connection: what follows on it cannot be
 * trusted. */
static enum MHD_Result reply_early(struct req *r, unsigned status, struct MHD_Response *plain,
                                   const char *code, const char *text)
{
	if (r->api_target) {
		struct api_answer ans;
		api_early_error(&ans, status, code, text);
		return reply_api(r, &ans);
	}
	return plain ? reply(r, status, plain) : reply_text(r, status, text, true);
}

static void api_request_of(struct req *r, struct api_request *rq, int64_t content_length)
{
	memset(rq, 0, sizeof(*rq));
	rq->method = r->method;
	split_target(r, &rq->path, &rq->query);
	rq->body = (struct iov){r->body ? r->body : "", r->body_len};
	rq->content_length = content_length;
	rq->max_body = r->h->cfg->max_body_bytes;
	rq->header = lookup_header;
	rq->hctx = r->mc;
	rq->arena = &r->arena;
	rq->item = &r->item;
	rq->now_ms = util_now_ms();
}

/* Headers are in: route, authenticate; maybe answer at once. */
static enum MHD_Result api_begin_req(struct req *r, const struct hdr_scan *hs)
{
	struct api_request rq;
	struct api_answer ans;

	r->is_api = true;
	api_request_of(r, &rq, hs->n_cl ? (int64_t)hs->cl : -1);
	if (api_begin(r->h->api, &rq, &r->api, &ans))
		return reply_api(r, &ans);
	if (hs->n_cl) {
		r->body_cap = (size_t)hs->cl;
		r->body = arena_alloc(&r->arena, r->body_cap + 1);
	}
	r->phase = PH_BODY;
	return MHD_YES;
}

/* The body is in: answer, or park a write like a callback. */
static enum MHD_Result api_dispatch_req(struct req *r)
{
	static const char too_big[] = "{\"error\":{\"code\":\"body_too_large\",\"message\":"
	                              "\"the body is larger than the server accepts\"}}";
	struct http *h = r->h;
	struct api_request rq;
	struct api_answer ans;

	if (r->body_too_big) {
		memset(&ans, 0, sizeof(ans));
		ans.status = MHD_HTTP_CONTENT_TOO_LARGE;
		ans.body = (char *)too_big;
		ans.len = sizeof(too_big) - 1;
		ans.body_static = true;
		ans.content_type = "application/json";
		return reply_api(r, &ans);
	}
	if (!r->body) {
		r->body = arena_alloc(&r->arena, 1);
		r->body_cap = 0;
	}
	r->body[r->body_len] = '\0';
	api_request_of(r, &rq, -1);
	api_dispatch(h->api, r->api, &rq, &ans);
	if (!ans.park)
		return reply_api(r, &ans);
	/* api_dispatch reserved a queue slot and filled r->item */
	r->item.complete = on_committed;
	r->phase = PH_PARKED;
	conn_set(r->cc, CS_PARKED);
	atomic_fetch_add(&h->parked, 1);
	MHD_suspend_connection(r->mc);
	commitq_push(h->q, &r->item);
	return MHD_YES;
}

static enum MHD_Result reject(struct req *r, int rc, const char *why)
{
	struct http *h = r->h;
	char q[200];
	static const struct {
		int rc;
		unsigned status;
		enum cb_outcome outcome;
	} map[] = {
	    {DLRD_EAUTH, MHD_HTTP_UNAUTHORIZED, CB_UNAUTHORIZED},
	    {DLRD_ESTALE, MHD_HTTP_UNAUTHORIZED, CB_UNAUTHORIZED},
	    {DLRD_EMETHOD, MHD_HTTP_METHOD_NOT_ALLOWED, CB_UNSUPPORTED},
	    {DLRD_EUNSUPP, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, CB_UNSUPPORTED},
	    {DLRD_ETOOBIG, MHD_HTTP_CONTENT_TOO_LARGE, CB_TOO_LARGE},
	    /* a temporary failure (e.g. a certificate fetch): the provider
	     * retries */
	    {DLRD_EIO, MHD_HTTP_SERVICE_UNAVAILABLE, CB_UNAVAILABLE},
	};
	unsigned status = MHD_HTTP_BAD_REQUEST;
	enum cb_outcome outcome = CB_BAD_REQUEST;
	for (size_t i = 0; i < ARRAY_LEN(map); i++) {
		if (map[i].rc == rc) {
			status = map[i].status;
			outcome = map[i].outcome;
		}
	}
	metrics_callback(r->prov_idx, outcome);
	/* A forged or garbled request costs its sender nothing: a flood of
	 * them is told by a few lines a second and by /metrics, not by a line
	 * each.  */
	unsigned dropped;
	if (log_limit_take(&h->reject_log, &dropped))
		LOG_I("callback_rejected", "provider=%s status=%u reason=%s suppressed=%u",
		      r->prov->name, status, log_quote(q, sizeof(q), why, strlen(why)), dropped);
	switch (status) {
	case MHD_HTTP_UNAUTHORIZED:
		return reply(r, status, h->r_401);
	case MHD_HTTP_METHOD_NOT_ALLOWED:
		return reply(r, status, webhook_405(r));
	case MHD_HTTP_UNSUPPORTED_MEDIA_TYPE:
		return reply(r, status, h->r_415);
	case MHD_HTTP_CONTENT_TOO_LARGE:
		return reply(r, status, h->r_413);
	case MHD_HTTP_SERVICE_UNAVAILABLE:
		return reply(r, status, h->r_503);
	default:
		return reply_text(r, status, why, false);
	}
}

/* Last call with the whole body: authenticate, normalize, park. */
static enum MHD_Result dispatch(struct req *r)
{
	struct http *h = r->h;
	struct provider_request pr;
	char err[256] = "";
	int rc;

	if (r->is_api)
		return api_dispatch_req(r);
	if (r->body_too_big) {
		metrics_callback(r->prov_idx, CB_TOO_LARGE);
		return reply(r, MHD_HTTP_CONTENT_TOO_LARGE, h->r_413);
	}
	if (!r->body) {
		r->body = arena_alloc(&r->arena, 1);
		r->body_cap = 0;
	}
	r->body[r->body_len] = '\0';
	memset(&pr, 0, sizeof(pr));
	pr.method = r->method;
	pr.kind = r->kind;
	pr.target = (struct iov){r->target, r->target_len};
	split_target(r, &pr.path, &pr.query);
	pr.body = (struct iov){r->body, r->body_len};
	pr.content_type = media_type(r);
	pr.public_url = h->public_url;
	pr.now_ms = util_now_ms();
	pr.arena = &r->arena;
	pr.header = lookup_header;
	pr.hctx = r->mc;

	rc = r->prov->authenticate(r->prov_state, &pr, err, sizeof(err));
	if (rc != 0)
		return reject(r, rc, err[0] ? err : "authentication failed");
	memset(&r->res, 0, sizeof(r->res));
	r->res.http_status = MHD_HTTP_OK;
	rc = r->prov->parse(r->prov_state, &pr, &r->res, err, sizeof(err));
	if (rc != 0)
		return reject(r, DLRD_EINVAL, err[0] ? err : "unusable request");

	if (r->res.n_events > LIM_EVENTS_PER_REQUEST)
		return reject(r, DLRD_EINVAL, "too many events in one request");
	/* Central enrichment, the same for every provider. */
	for (size_t i = 0; i < r->res.n_events; i++) {
		struct dlr_event *ev = &r->res.events[i];
		if (ev->kind == EV_INBOUND) {
			/* a keyword the provider itself reports stands
			 * (optout_verdict()) */
			if (ev->keyword == KW_NONE)
				ev->keyword = ev->text_is_part
				                  ? KW_NONE
				                  : optout_classify(ev->text, ev->text_len);
			/* An opt-out's order is its provider time (the dedup key is
			 * made already): one ahead of our clock (a skewed provider)
			 * would outrank every later STOP or START until then, so
			 * it is taken as the receipt time (received_ms below).  The
			 * raw payload keeps the original. */
			if (ev->occurred_ms > pr.now_ms)
				ev->occurred_ms = pr.now_ms;
		} else if (ev->kind == EV_STATUS) {
			enum err_reason er = errcat_classify(r->prov->errors, ev->error_code,
			                                     ev->status, &ev->error_title);
			/* an adapter's own reason (a canceled message) stands */
			if (ev->error_reason == ER_NONE)
				ev->error_reason = er;
		}
	}
	if (r->res.n_events == 0) { /* nothing to store (e.g. a handshake) */
		/* a provider's "try later" (an SNS signing certificate that cannot
		 * be fetched now) is a 503 like a full queue */
		metrics_callback(r->prov_idx, r->res.http_status == MHD_HTTP_SERVICE_UNAVAILABLE
		                                  ? CB_UNAVAILABLE
		                                  : CB_HANDSHAKE);
		return reply_body(r, (unsigned)r->res.http_status, r->res.body ? r->res.body : "",
		                  r->res.content_type);
	}
	if (atomic_load(&h->quiesced)) { /* on a connection kept alive */
		metrics_callback(r->prov_idx, CB_UNAVAILABLE);
		return reply(r, MHD_HTTP_SERVICE_UNAVAILABLE, h->r_503_stopping);
	}
	if ((rc = commitq_reserve(h->q)) != 0) {
		metrics_callback(r->prov_idx, CB_UNAVAILABLE);
		return reply(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		             rc == DLRD_EBUSY ? h->r_503_stalled : h->r_503_full);
	}
	r->item.provider = r->prov->name;
	r->item.events = r->res.events;
	r->item.n_events = r->res.n_events;
	/* The raw payload holds phone numbers: it is stored sealed (pii.h),
	 * byte for byte under the encryption, and only the API opens it. */
	struct iov raw = r->res.raw_payload.p            ? r->res.raw_payload
	                 : strcmp(r->method, "GET") == 0 ? pr.query
	                                                 : pr.body;
	for (size_t i = 0; i < r->res.n_events; i++) {
		if (r->res.events[i].kind == EV_UNUSABLE) {
			char num[24];
			util_fmt(num, sizeof(num), "%zu", i);
			request_key(r, raw, num, r->res.events[i].dedup_key);
		}
	}
	if (r->res.n_events > 1)
		request_key(r, raw, "payload", r->item.payload_id);
	if (pii_seal_payload(h->kr, &r->arena, raw.p ? raw.p : "", raw.n, &r->item.raw_payload) !=
	    0) {
		commitq_unreserve(h->q);
		metrics_callback(r->prov_idx, CB_UNAVAILABLE);
		return reply(r, MHD_HTTP_SERVICE_UNAVAILABLE, h->r_503);
	}
	r->item.received_ms = pr.now_ms;
	r->item.complete = on_committed;
	r->phase = PH_PARKED;
	conn_set(r->cc, CS_PARKED);
	atomic_fetch_add(&h->parked, 1);
	MHD_suspend_connection(r->mc);
	commitq_push(h->q, &r->item);
	return MHD_YES;
}

/* Writer thread: the batch holding this request is durable (or failed). */
static void on_committed(struct commit_item *it)
{
	struct req *r = (struct req *)((char *)it - offsetof(struct req, item));
	MHD_resume_connection(r->mc);
}

/* Called again after resume: answer with the commit's result. */
static enum MHD_Result finish(struct req *r)
{
	struct http *h = r->h;
	atomic_fetch_sub(&h->parked, 1);
	atomic_fetch_add(&h->answering, 1);
	r->answering = true;
	conn_set(r->cc, CS_REQUEST);
	if (r->is_api) {
		struct api_answer ans;
		api_finish(h->api, r->api, &r->item, &ans);
		return reply_api(r, &ans);
	}
	if (r->item.result != 0) {
		metrics_callback(r->prov_idx, CB_UNAVAILABLE);
		return reply(r, MHD_HTTP_SERVICE_UNAVAILABLE, h->r_503);
	}
	if (r->item.n_dup)
		metrics_duplicates(r->prov_idx, r->item.n_dup);
	if (r->item.n_review)
		metrics_review(r->prov_idx, r->item.n_review);
	metrics_callback(r->prov_idx, r->item.n_review ? CB_REVIEW
	                              : r->item.n_new  ? CB_STORED
	                                               : CB_DUPLICATE);
	if (!r->res.body && r->res.http_status == MHD_HTTP_OK)
		return reply(r, MHD_HTTP_OK, h->r_ok);
	return reply_body(r, (unsigned)r->res.http_status, r->res.body ? r->res.body : "",
	                  r->res.content_type);
}

/* No body: no Transfer-Encoding, and no Content-Length or a single 0. */
static bool has_body(const struct hdr_scan *hs)
{
	return hs->n_te || hs->n_cl > 1 || hs->cl_bad || (hs->n_cl && hs->cl);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
	struct req *r = *con_cls;
	(void)cls;
	(void)url;

	if (!r)
		return MHD_NO; /* the URI callback always sets it */
	r->mc = mc;
	r->method = method;
	switch (r->phase) {
	case PH_NEW: {
		struct hdr_scan hs = {0};
		if (*upload_data_size)
			return MHD_NO; /* cannot happen: MHD sends headers first */
		MHD_get_connection_values(mc, MHD_HEADER_KIND, scan_header, &hs);
		hs.http10 = version && strcmp(version, MHD_HTTP_VERSION_1_0) == 0;
		/* MHD 0.9.75 closes the connection after any answer queued in
		 * this first call (it would not read a body after it).  A
		 * request without a body (GET /healthz, /metrics, API reads) is
		 * complete at the next call: answered there, the connection is
		 * kept alive. */
		if (!r->deferred && !has_body(&hs)) {
			r->deferred = true;
			return MHD_YES;
		}
		if (begin(r, &hs) == MHD_NO)
			return MHD_NO;
		return r->deferred && r->phase == PH_BODY ? dispatch(r) : MHD_YES;
	}
	case PH_BODY:
		if (*upload_data_size) {
			size_t n = *upload_data_size;
			*upload_data_size = 0;
			return append_body(r, upload_data, n);
		}
		return dispatch(r);
	case PH_PARKED:
		if (r->item.complete && *upload_data_size == 0)
			return finish(r);
		return MHD_NO;
	case PH_DONE:
		*upload_data_size = 0; /* discard what follows an early answer */
		return MHD_YES;
	}
	return MHD_NO;
}

/* MHD calls this with the raw request-target before decoding it; its
 * return value becomes the request's context. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *mc)
{
	struct http *h = cls;
	struct req *r = req_new(h);
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	size_t n = strlen(uri), path_len = strcspn(uri, "?");

	r->mc = mc;
	r->cc = ci ? ci->socket_context : NULL;
	conn_set(r->cc, CS_REQUEST);
	r->api_target = api_owns((struct iov){uri, path_len});
	if (n > LIM_TARGET_BYTES) {
		r->target_too_long = true;
		n = 0;
	}
	r->target = arena_strndup(&r->arena, uri, n);
	r->target_len = n;
	/* Next, MHD 0.9.75 splits the query into arguments, a record each in
	 * the connection's memory pool, which dlrd never reads (it parses the
	 * raw target copied above).  When they do not fit (a few hundred
	 * "a&"), MHD queues a 431 but then waits for header lines in the
	 * buffer it has just discarded: no answer, and the connection held
	 * until the request deadline cuts it off.  uri points into MHD's
	 * writable read buffer, and MHD has already found the '?': ending the
	 * string right after it leaves MHD no arguments to parse. */
	if (uri[path_len] == '?')
		((char *)uri)[path_len + 1] = '\0';
	return r;
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct http *h = cls;
	struct req *r = *con_cls;
	(void)mc;
	(void)toe;
	if (!r)
		return;
	if (r->phase == PH_PARKED)
		atomic_fetch_sub(&h->parked, 1); /* client left while parked */
	if (r->answering)
		atomic_fetch_sub(&h->answering, 1); /* sent, or the client left */
	conn_set(r->cc, CS_IDLE);
	*con_cls = NULL;
	req_free(h, r);
}

static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
	struct http *h = cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
		struct conn *cc = xcalloc(1, sizeof(*cc));
		cc->fd = ci ? ci->connect_fd : -1;
		atomic_init(&cc->state, CS_IDLE);
		atomic_init(&cc->since_ms, util_mono_ms());
		atomic_fetch_add(&h->n_conns, 1);
		pthread_mutex_lock(&h->reg_mu);
		cc->next = h->conns;
		if (h->conns)
			h->conns->prev = cc;
		h->conns = cc;
		pthread_mutex_unlock(&h->reg_mu);
		*socket_context = cc;
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		struct conn *cc = *socket_context;
		if (!cc)
			return;
		/* MHD closes the socket only after this returns, and the
		 * watchdog holds reg_mu while it uses fds: no fd reuse race. */
		pthread_mutex_lock(&h->reg_mu);
		if (cc->prev)
			cc->prev->next = cc->next;
		else
			h->conns = cc->next;
		if (cc->next)
			cc->next->prev = cc->prev;
		pthread_mutex_unlock(&h->reg_mu);
		atomic_fetch_sub(&h->n_conns, 1);
		free(cc);
		*socket_context = NULL;
	}
}

/* MHD's accept policy: past max_connections a new connection is closed at
 * once.  (MHD's own limit, kept a little higher as a hard cap, would instead
 * stop accepting and leave new clients waiting in the backlog.)  Two threads
 * accepting at once may both pass at max-1: the overshoot is at most the
 * number of threads. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	struct http *h = cls;
	(void)addr;
	(void)addrlen;
	if (atomic_load(&h->quiesced))
		return MHD_NO;
	if (atomic_load(&h->n_conns) < h->cfg->max_connections)
		return MHD_YES;
	long long now = util_mono_ms(), last = atomic_load(&h->limit_log_ms);
	if (now - last >= LIMIT_LOG_MS &&
	    atomic_compare_exchange_strong(&h->limit_log_ms, &last, now))
		LOG_W("connection_limit", "max_connections=%u note=\"new connections are closed\"",
		      h->cfg->max_connections);
	return MHD_NO;
}

/* max_connections needs as many file descriptors: raise the soft limit
 * towards the hard one when it is lower (it is often 1024). */
static void raise_fd_limit(unsigned max_connections)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)max_connections + FD_RESERVE;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < need)
		LOG_W("open_files_limit",
		      "limit=%llu max_connections=%u note=\"raise the hard"
		      " limit (LimitNOFILE, ulimit -Hn) or lower"
		      " server.max_connections\"",
		      (unsigned long long)rl.rlim_cur, max_connections);
}

/* Enforces the whole-request deadline: a request that is still arriving
 * request_timeout_ms after its request line (or a connection that dribbles a
 * request line for longer than the idle timeout plus that) is cut off.
 * Parked requests are ours to answer and are exempt. */
static void *watchdog_main(void *arg)
{
	struct http *h = arg;
	const long long req_ms = h->cfg->request_timeout_ms;
	const long long idle_ms = (long long)h->cfg->idle_timeout_s * 1000 + req_ms;

	pthread_setname_np(pthread_self(), "dlrd-watchdog");
	while (!atomic_load(&h->stopping)) {
		usleep(WATCHDOG_MS * 1000);
		long long now = util_mono_ms();
		pthread_mutex_lock(&h->reg_mu);
		for (struct conn *cc = h->conns; cc; cc = cc->next) {
			int st = atomic_load(&cc->state);
			long long age = now - atomic_load(&cc->since_ms);
			if (cc->killed || st == CS_PARKED || cc->fd < 0)
				continue;
			if ((st == CS_REQUEST && age > req_ms) ||
			    (st == CS_IDLE && age > idle_ms)) {
				cc->killed = true;
				/* counted before the peer can see the close */
				metrics_deadline(st == CS_IDLE);
				shutdown(cc->fd, SHUT_RDWR);
				unsigned dropped;
				if (log_limit_take(&h->deadline_log, &dropped))
					LOG_I("request_deadline",
					      "state=%s age_ms=%lld suppressed=%u",
					      st == CS_REQUEST ? "request" : "idle", age, dropped);
			}
		}
		pthread_mutex_unlock(&h->reg_mu);
		/* a stalled commit or sync is logged even when nobody asks
		 * /healthz */
		(void)commitq_healthy(h->q);
	}
	return NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512], q[600];
	(void)cls;
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	LOG_D("mhd", "msg=%s", log_quote(q, sizeof(q), buf, len));
}

static int parse_listen(const struct config *cfg, struct sockaddr_storage *ss, bool *v6)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, cfg->listen_host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(cfg->listen_port);
		*v6 = false;
		return 0;
	}
	if (inet_pton(AF_INET6, cfg->listen_host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(cfg->listen_port);
		*v6 = true;
		return 0;
	}
	if (strcmp(cfg->listen_host, "localhost") == 0) {
		in4->sin_family = AF_INET;
		in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		in4->sin_port = htons(cfg->listen_port);
		*v6 = false;
		return 0;
	}
	return DLRD_ECONFIG;
}

/* MHD's hard connection cap, a little above our accept policy's
 * max_connections (on_accept), which may overshoot by one per thread. */
static unsigned mhd_connection_limit(unsigned threads, unsigned max_connections)
{
	return max_connections + threads + 16;
}

/*
 * libmicrohttpd 0.9.75 can stop serving a worker thread's connections until
 * one of them times out.  Its epoll loop (MHD_epoll() in daemon.c) drains
 * events with "while (MAX_EVENTS == num_events) epoll_wait(..., timeout)",
 * MAX_EVENTS being 128, and the timeout the one it computed before the
 * first call (up to the idle timeout).  When exactly 128 events come back,
 * it calls epoll_wait() again before it has handled any of them; the
 * connections are edge-triggered, so their events are not reported again,
 * and if nothing else happens the thread sleeps while every client waits.
 * Seen here with 128 keep-alive clients at full speed, all on one worker:
 * every request unread until the client gave up (over 10 s), in 7 of 20
 * runs of ten seconds; test_connections.c makes it happen every time.
 *
 * A worker's epoll set holds its connections, its listening socket and its
 * wake-up eventfd, so 125 connections per worker keep it below 128 and a
 * single epoll_wait() always returns everything that is ready.  MHD splits
 * its connection limit evenly between the threads of its pool, and a
 * worker at its share stops accepting (the others take new connections),
 * so the pool gets as many threads as that needs: 9 for the default 1024
 * connections.  Idle workers cost a thread stack each.
 */
#define MHD_CONNS_PER_WORKER 125u

static unsigned threads_for_connections(unsigned threads, unsigned max_connections)
{
	while ((mhd_connection_limit(threads, max_connections) + threads - 1) / threads >
	       MHD_CONNS_PER_WORKER)
		threads++;
	return threads;
}

int http_start(const struct config *cfg, struct commitq *q, void *const *provider_states,
               const struct pii_keyring *kr, struct http **out, char *err, size_t errlen)
{
	struct http *h = xcalloc(1, sizeof(*h));
	struct sockaddr_storage ss;
	bool v6 = false;
	unsigned threads = cfg->threads;
	char url[LOG_URL_MAX + 8];

	if (parse_listen(cfg, &ss, &v6) != 0) {
		util_fmt(err, errlen, "config: server.listen: '%s' is not an IP address",
		         cfg->listen_host);
		free(h);
		return DLRD_ECONFIG;
	}
	if (!threads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		threads = n > 0 ? (unsigned)n : 1;
	}
	/* At least two: a provider may hold its thread for a bounded time
	 * (SNS: one signing-certificate fetch at a time, up to its timeout,
	 * for any sender), and with a single thread that would stop every
	 * other request meanwhile. */
	if (threads < 2)
		threads = 2;
	threads = threads_for_connections(threads, cfg->max_connections);
	h->cfg = cfg;
	h->q = q;
	h->states = provider_states;
	h->kr = kr;
	if (cfg->public_url && *cfg->public_url) {
		h->public_url = xstrdup(cfg->public_url);
	} else {
		char buf[128];
		util_fmt(buf, sizeof(buf), v6 ? "http://[%s]:%u" : "http://%s:%u", cfg->listen_host,
		         cfg->listen_port);
		h->public_url = xstrdup(buf);
		LOG_W("public_url_unset",
		      "using=%s note=\"set server.public_url to the URL "
		      "providers call, or signatures will not verify\"",
		      h->public_url);
	}
	atomic_init(&h->parked, 0);
	atomic_init(&h->answering, 0);
	atomic_init(&h->n_conns, 0);
	atomic_init(&h->limit_log_ms, util_mono_ms() - LIMIT_LOG_MS);
	atomic_init(&h->quiesced, false);
	atomic_init(&h->stopping, false);
	pthread_mutex_init(&h->pool_mu, NULL);
	pthread_mutex_init(&h->reg_mu, NULL);

	h->r_ok = static_response("", "text/plain");
	h->r_400 = static_response("bad request\n", "text/plain");
	h->r_401 = static_response("unauthorized\n", "text/plain");
	h->r_404 = static_response("not found\n", "text/plain");
	h->r_405_post = static_response("method not allowed\n", "text/plain");
	MHD_add_response_header(h->r_405_post, MHD_HTTP_HEADER_ALLOW, "POST");
	h->r_405_get_post = static_response("method not allowed\n", "text/plain");
	MHD_add_response_header(h->r_405_get_post, MHD_HTTP_HEADER_ALLOW, "GET, POST");
	h->r_405_get_only = static_response("method not allowed\n", "text/plain");
	MHD_add_response_header(h->r_405_get_only, MHD_HTTP_HEADER_ALLOW, "GET");
	h->r_405_get = static_response("method not allowed\n", "text/plain");
	MHD_add_response_header(h->r_405_get, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	h->r_413 = static_response("request body too large\n", "text/plain");
	MHD_add_response_header(h->r_413, MHD_HTTP_HEADER_CONNECTION, "close");
	h->r_414 = static_response("request target too long\n", "text/plain");
	MHD_add_response_header(h->r_414, MHD_HTTP_HEADER_CONNECTION, "close");
	h->r_415 = static_response("unsupported content type\n", "text/plain");
	h->r_431 = static_response("too many request headers\n", "text/plain");
	MHD_add_response_header(h->r_431, MHD_HTTP_HEADER_CONNECTION, "close");
	h->r_503 = static_response("temporarily unavailable, retry\n", "text/plain");
	MHD_add_response_header(h->r_503, MHD_HTTP_HEADER_RETRY_AFTER, RETRY_AFTER);
	h->r_503_full = static_response("the queue is full, retry\n", "text/plain");
	MHD_add_response_header(h->r_503_full, MHD_HTTP_HEADER_RETRY_AFTER, RETRY_AFTER);
	h->r_503_stopping = static_response("dlrd is stopping, retry\n", "text/plain");
	MHD_add_response_header(h->r_503_stopping, MHD_HTTP_HEADER_RETRY_AFTER, RETRY_AFTER);
	MHD_add_response_header(h->r_503_stopping, MHD_HTTP_HEADER_CONNECTION, "close");
	h->r_health_stopping = static_response("stopping\n", "text/plain");
	h->r_503_stalled = static_response("storage is not answering, retry\n", "text/plain");
	MHD_add_response_header(h->r_503_stalled, MHD_HTTP_HEADER_RETRY_AFTER, RETRY_AFTER);
	h->r_health_ok = static_response("ok\n", "text/plain");
	h->r_health_bad = static_response("storage unavailable\n", "text/plain");

	if (api_new(cfg, q, kr, &h->api, err, errlen) != 0) {
		http_stop(h, 0);
		return DLRD_ECONFIG;
	}
	raise_fd_limit(cfg->max_connections);
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
	                 MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
	/* No MHD_OPTION_LISTENING_ADDRESS_REUSE: MHD's default, SO_REUSEADDR,
	 * lets a restarted dlrd listen at once (connections of the old one in
	 * TIME_WAIT), while SO_REUSEPORT would let a second process listen on
	 * the same port and silently take half the connections.
	 * The logger goes first, or MHD prints what it says before it.  The
	 * pool size: MHD_POOL_BYTES. */
	h->d = MHD_start_daemon(
	    flags, 0, on_accept, h, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, threads,
	    MHD_OPTION_CONNECTION_LIMIT, mhd_connection_limit(threads, cfg->max_connections),
	    MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)MHD_POOL_BYTES, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
	    MHD_OPTION_URI_LOG_CALLBACK, on_uri, h, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
	    MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_END);
	if (!h->d) {
		util_fmt(err, errlen, "http: cannot listen on %s (address in use?)", cfg->listen);
		http_stop(h, 0);
		return DLRD_EIO;
	}
	if (pthread_create(&h->watchdog, NULL, watchdog_main, h) == 0)
		h->watchdog_started = true;
	LOG_I("listening", "addr=%s threads=%u max_connections=%u public_url=%s", cfg->listen,
	      threads, cfg->max_connections, log_url(url, sizeof(url), h->public_url));
	*out = h;
	return 0;
}

/* Not MHD_quiesce_daemon(): with epoll and a thread pool it races with the
 * workers' own removal of the listening socket from their epoll sets, and
 * the loser's epoll_ctl() fails with ENOENT, which libmicrohttpd 0.9.75
 * answers with MHD_PANIC(), that is abort() (seen in CI: dlrd killed by
 * SIGABRT during the SIGTERM drain).  The accept policy closes new
 * connections instead; the listening socket closes with the daemon. */
void http_quiesce(struct http *h)
{
	if (h)
		atomic_store(&h->quiesced, true);
}

void http_stop(struct http *h, unsigned timeout_ms)
{
	if (!h)
		return;
	if (h->d) {
		/* Parked requests were resumed by the commit queue: wait until
		 * MHD has sent their answers (or their clients left), since
		 * stopping the daemon closes every connection. */
		for (unsigned waited = 0;
		     (atomic_load(&h->parked) > 0 || atomic_load(&h->answering) > 0) &&
		     waited < timeout_ms;
		     waited += 5)
			usleep(5000);
		MHD_stop_daemon(h->d);
	}
	atomic_store(&h->stopping, true);
	if (h->watchdog_started)
		pthread_join(h->watchdog, NULL);
	struct MHD_Response *all[] = {h->r_ok,
	                              h->r_400,
	                              h->r_401,
	                              h->r_404,
	                              h->r_405_post,
	                              h->r_405_get_post,
	                              h->r_405_get,
	                              h->r_413,
	                              h->r_414,
	                              h->r_415,
	                              h->r_431,
	                              h->r_503,
	                              h->r_503_full,
	                              h->r_503_stalled,
	                              h->r_health_ok,
	                              h->r_health_bad,
	                              h->r_405_get_only,
	                              h->r_503_stopping,
	                              h->r_health_stopping};
	for (size_t i = 0; i < ARRAY_LEN(all); i++)
		if (all[i])
			MHD_destroy_response(all[i]);
	while (h->pool) {
		struct req *r = h->pool;
		h->pool = r->next_free;
		free(r);
	}
	pthread_mutex_destroy(&h->pool_mu);
	pthread_mutex_destroy(&h->reg_mu);
	api_free(h->api);
	free(h->public_url);
	free(h);
}
