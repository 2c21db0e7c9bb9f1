/* SPDX-License-Identifier: MIT */
/*
 * The JSON API (see api.h): routing, bearer auth and roles, input
 * validation, the write operations handed to the writer (struct store_op),
 * the read endpoints over the store's read pool, and the JSON answers.
 *
 * Phone numbers: a recorded send's number is hashed with the same keyed
 * HMAC callbacks use (provider_set_recipient), encrypted with the current
 * key of the ring (pii.h) and masked for display; only POST
 * /v1/messages/{id}/reveal, for support and admin, decrypts it, and only
 * together with an audit row in the same transaction.  No answer but the
 * reveal's, no log line and no error message ever holds a number.
 *
 * Idempotency: POST /v1/messages needs an Idempotency-Key, scoped to the
 * token.  The request is identified by the SHA-256 of its canonical JSON
 * (keys sorted, compact), so whitespace and key order do not matter.  The
 * writer keeps the first 201 answer; the same key and request get it again
 * (with Idempotent-Replayed: true), the same key with another request gets
 * 409.  Only the 201 is kept: a refused request (422, 409 opted out) may be
 * retried with the same key once fixed.  Requests with the same key that
 * race each other serialize in the writer, so they make one message.
 */
#include "api.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "arena.h"
#include "auth.h"
#include "commitq.h"
#include "config.h"
#include "crypto.h"
#include "dlrd_limits.h"
#include "errcat.h"
#include "event.h"
#include "form.h"
#include "json.h"
#include "log.h"
#include "phone.h"
#include "pii.h"
#include "privacy.h"
#include "provider.h"
#include "status.h"
#include "store.h"
#include "tz.h"

/* ---- API limits (the HTTP body itself is capped by [server] max_body_bytes) ---- */
#define API_IDEM_KEY_MAX   255  /* Idempotency-Key header */
#define API_METADATA_MAX   4096 /* metadata, as compact JSON */
#define API_METADATA_DEPTH 8    /* nesting inside metadata */
/* JSON values in a request body, as jsonx_values_ok() counts them (1, plus
 * each ',' '[' '{' outside strings) before jansson builds them (about
 * 200 ns and an allocation each).  Every opening bracket has a closing one
 * and every comma a value after it, so at most 2 bytes of 3 count ("[],"
 * repeated): the largest metadata counts at most 2 * API_METADATA_MAX / 3
 * + 1, the other fields a few dozen */
#define API_BODY_VALUES    (2 * API_METADATA_MAX / 3 + 64)
#define API_SLUG_MAX       64   /* use_case, template_key, action.type */
#define API_TEXT_MAX       128  /* sender_identity, action.id */
#define API_REASON_MAX     500  /* reveal reason */
#define API_NOTE_MAX       1000 /* review resolution note */
#define API_LIMIT_DEFAULT  50   /* page size */
#define API_LIMIT_MAX      500
#define API_RESP_MAX       4096       /* a send's answer, kept for replays */
#define API_PAYLOAD_BUDGET (4u << 20) /* raw payload bytes in one timeline or review list */
#define API_STUCK_MAX_S    (366 * 86400)
#define API_QUERY_FIELDS   64
#define API_STATS_GROUPS   500                   /* groups in one stats answer */
#define API_STATS_SPAN_MS  (31LL * 86400 * 1000) /* longest [since, until) */
#define API_STATS_DEFAULT  (24LL * 3600 * 1000)  /* default span, ending now */
#define RETRY_AFTER        "1"

/* the store reads no more (store_list_review()) */
_Static_assert(API_PAYLOAD_BUDGET == STORE_PAYLOAD_BUDGET, "one payload budget");
/* Times a parameter may name, in UTC: years 0001-9999.  PostgreSQL has no
 * year 0, and the stored text (and util_rfc3339) has four digits. */
#define API_TIME_MIN_MS (-62135596800000LL) /* 0001-01-01T00:00:00.000Z */
#define API_TIME_MAX_MS UTIL_TIME_MAX_MS

enum route_id {
	R_OPENAPI,
	R_MSG_CREATE,
	R_MSG_LIST,
	R_MSG_GET,
	R_MSG_PATCH,
	R_MSG_TIMELINE,
	R_MSG_REVEAL,
	R_REVIEW_LIST,
	R_REVIEW_RESOLVE,
	R_AUDIT_LIST,
	R_STATS,
};

/* The routes.  docs/openapi.json lists exactly these (a unit test checks
 * both ways). */
static const struct route {
	const char *method;
	const char *pattern; /* OpenAPI path template; "{id}" is one segment */
	enum auth_role role; /* AUTH_NONE: no token needed */
	enum route_id id;
	const char *name; /* for log lines */
} routes[] = {
    {"GET", "/openapi.json", AUTH_NONE, R_OPENAPI, "openapi"},
    {"POST", "/v1/messages", AUTH_APP, R_MSG_CREATE, "record_send"},
    {"GET", "/v1/messages", AUTH_VIEWER, R_MSG_LIST, "search"},
    {"GET", "/v1/messages/{id}", AUTH_VIEWER, R_MSG_GET, "summary"},
    {"PATCH", "/v1/messages/{id}", AUTH_APP, R_MSG_PATCH, "set_provider_id"},
    {"GET", "/v1/messages/{id}/timeline", AUTH_VIEWER, R_MSG_TIMELINE, "timeline"},
    {"POST", "/v1/messages/{id}/reveal", AUTH_SUPPORT, R_MSG_REVEAL, "reveal"},
    {"GET", "/v1/review", AUTH_ADMIN, R_REVIEW_LIST, "review_list"},
    {"POST", "/v1/review/{id}/resolve", AUTH_ADMIN, R_REVIEW_RESOLVE, "review_resolve"},
    {"GET", "/v1/audit", AUTH_ADMIN, R_AUDIT_LIST, "audit"},
    {"GET", "/v1/stats", AUTH_VIEWER, R_STATS, "stats"},
};

/* Read-only after api_new(). */
struct api {
	const struct config *cfg;
	struct commitq *q;
	struct store *st;
	struct auth *auth;
	const struct pii_keyring *kr; /* borrowed from main.c; never NULL */
	struct tz_db *tz;
	char **exempt; /* [api] optout_exempt_use_cases */
	size_t n_exempt;
	struct log_limit denied_log; /* 401s: any peer can send them (log.h) */
};

/* One request, in its arena. */
struct api_state {
	struct arena *arena; /* the request's */
	const struct route *route;
	struct iov id; /* the {id} segment */
	struct auth_principal who;
	char actor[AUTH_ID_LEN + 1];
	struct store_op op;
	/* a send refused by a check newer than what it may have been recorded
	 * under (store_send.replay_only): the 422 unless it is a replay */
	struct {
		const char *code, *message, *field;
	} refused;
};

/* ---- the route table ---- */

size_t api_route_count(void)
{
	return ARRAY_LEN(routes);
}

void api_route(size_t i, const char **method, const char **pattern)
{
	*method = routes[i].method;
	*pattern = routes[i].pattern;
}

bool api_owns(struct iov path)
{
	return iov_eq(path, "/openapi.json") || iov_eq(path, "/v1") ||
	       (path.n >= 4 && memcmp(path.p, "/v1/", 4) == 0);
}

/* Matches path against a pattern segment by segment; *id gets the "{id}"
 * segment. */
static bool match(const char *pattern, struct iov path, struct iov *id)
{
	const char *p = pattern, *q = path.p, *qe = path.p + path.n;

	while (*p && q < qe) {
		if (*p != '/' || *q != '/')
			return false;
		p++;
		q++;
		const char *pe = strchr(p, '/');
		size_t pl = pe ? (size_t)(pe - p) : strlen(p);
		const char *se = memchr(q, '/', (size_t)(qe - q));
		size_t sl = se ? (size_t)(se - q) : (size_t)(qe - q);
		if (pl == 4 && memcmp(p, "{id}", 4) == 0) {
			if (sl == 0)
				return false;
			*id = (struct iov){q, sl};
		} else if (pl != sl || memcmp(p, q, sl) != 0) {
			return false;
		}
		p += pl;
		q += sl;
	}
	return *p == '\0' && q == qe;
}

/* ---- answers ---- */

static void ans_header(struct api_answer *ans, const char *name, const char *value)
{
	if (ans->n_headers < API_MAX_HEADERS) {
		ans->header_name[ans->n_headers] = name;
		ans->header_value[ans->n_headers] = value;
		ans->n_headers++;
	}
}

static void ans_init(struct api_answer *ans)
{
	memset(ans, 0, sizeof(*ans));
	ans->content_type = "application/json";
	ans_header(ans, "Cache-Control", "no-store");
}

static void ans_json(struct api_answer *ans, unsigned status, json_t *root)
{
	static const char fallback[] =
	    "{\"error\":{\"code\":\"internal_error\",\"message\":\"the answer could not be"
	    " encoded\"}}";
	char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;

	json_decref(root);
	if (!s) {
		ans->status = 500;
		ans->body = (char *)fallback;
		ans->len = sizeof(fallback) - 1;
		ans->body_static = true;
		return;
	}
	ans->status = status;
	ans->body = s;
	ans->len = strlen(s);
	ans->body_static = false;
}

/* The error body; message and field are our own static texts. */
static void ans_error(struct api_answer *ans, unsigned status, const char *code,
                      const char *message, const char *field)
{
	json_t *err = json_pack("{s:s, s:s}", "code", code, "message", message);
	if (err && field)
		json_object_set_new(err, "field", json_string(field));
	ans_json(ans, status, err ? json_pack("{s:o}", "error", err) : NULL);
	if (status == 401)
		ans_header(ans, "WWW-Authenticate", "Bearer realm=\"dlrd\"");
	else if (status == 503)
		ans_header(ans, "Retry-After", RETRY_AFTER);
	else if (status == 413)
		ans_header(ans, "Connection", "close");
}

void api_early_error(struct api_answer *ans, unsigned status, const char *code, const char *message)
{
	ans_init(ans);
	ans_error(ans, status, code, message, NULL);
	ans_header(ans, "Connection", "close");
}

/* The answer to a failed read. */
static void ans_store_error(struct api_answer *ans, int rc, const char *what, const char *err)
{
	switch (rc) {
	case DLRD_ENOTFOUND:
		ans_error(ans, 404, "message_not_found", "no message with this id", NULL);
		return;
	case DLRD_EFULL:
		ans_error(ans, 503, "busy", "every read connection is busy; retry", NULL);
		return;
	case DLRD_EUNSUPP:
		ans_error(ans, 501, "not_implemented",
		          "the configured storage backend does not support this endpoint yet",
		          NULL);
		return;
	default: {
		char q[320];
		LOG_E("api_read_failed", "what=%s error=%s", what,
		      log_quote(q, sizeof(q), err, strlen(err)));
		ans_error(ans, 503, "storage_unavailable", "storage failed; retry", NULL);
		return;
	}
	}
}

/* ---- JSON values ---- */

/* A JSON string for s (NULL: null).  Stored texts from providers are not
 * guaranteed UTF-8: invalid bytes become '?'. */
static json_t *jstr(const char *s)
{
	json_t *v;
	if (!s)
		return json_null();
	if ((v = json_string(s)) != NULL)
		return v;
	size_t n = strlen(s);
	char *c = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++)
		c[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
	c[n] = '\0';
	v = json_string(c);
	free(c);
	return v ? v : json_null();
}

static void set(json_t *o, const char *k, json_t *v)
{
	json_object_set_new(o, k, v ? v : json_null());
}

static int64_t ms_of(const char *t)
{
	int64_t ms;
	if (!t || util_parse_rfc3339(t, strlen(t), &ms) != 0)
		return INT64_MIN;
	return ms;
}

static enum err_reason reason_of(const char *name)
{
	for (int r = 0; r < ER__COUNT; r++)
		if (name && strcmp(errcat_name((enum err_reason)r), name) == 0)
			return (enum err_reason)r;
	return ER_UNKNOWN;
}

/* null when there is no error: no code, or a code the provider sends on
 * success (Infobip's 0 NO_ERROR, Sinch's 401 Dispatched), which classifies
 * as "none"; the code stays in the event's raw payload. */
static json_t *error_json(const char *code, const char *reason)
{
	if ((reason && strcmp(reason, "none") == 0) || (!code && !reason))
		return json_null();
	enum err_reason r = reason ? reason_of(reason) : ER_UNKNOWN;
	json_t *o = json_object();
	set(o, "code", jstr(code));
	set(o, "reason", json_string(errcat_name(r)));
	set(o, "note", json_string(errcat_note(r)));
	set(o, "next_step", json_string(errcat_next_step(r)));
	return o;
}

/* When the message was sent, as far as dlrd knows: the send record, when it
 * came before any callback.  NULL otherwise. */
static const char *sent_at(const struct store_message *m)
{
	if (!m->sent_recorded_at)
		return NULL;
	if (m->first_callback_at && strcmp(m->sent_recorded_at, m->first_callback_at) > 0)
		return NULL;
	return m->sent_recorded_at;
}

static json_t *delta_json(const char *from, const char *to)
{
	int64_t a = ms_of(from), b = ms_of(to);
	if (a == INT64_MIN || b == INT64_MIN || b < a)
		return json_null();
	return json_integer(b - a);
}

static json_t *message_json(const struct store_message *m)
{
	json_t *o = json_object();
	set(o, "id", jstr(m->id));
	set(o, "status", jstr(m->status));
	set(o, "is_final", json_boolean(m->is_final));
	set(o, "final_conflict", json_boolean(m->final_conflict));
	set(o, "read", json_boolean(m->read_receipt));
	set(o, "raw_status", jstr(m->raw_status));
	set(o, "error", error_json(m->error_code, m->error_reason));
	set(o, "provider", jstr(m->provider));
	set(o, "provider_message_id", jstr(m->provider_message_id));
	set(o, "origin", jstr(m->origin));
	set(o, "recipient", jstr(m->recipient_masked));
	set(o, "destination_country", jstr(m->destination_country));
	set(o, "destination_country_source", jstr(m->country_source));
	set(o, "sender_identity", jstr(m->sender_identity));
	set(o, "template_key", jstr(m->template_key));
	set(o, "use_case", jstr(m->use_case));
	if (m->action_type)
		set(o, "action",
		    json_pack("{s:o, s:o}", "type", jstr(m->action_type), "id",
		              jstr(m->action_id)));
	else
		set(o, "action", json_null());
	json_t *meta = m->metadata ? json_loads(m->metadata, 0, NULL) : NULL;
	set(o, "metadata", meta ? meta : json_null());
	set(o, "recipient_timezone", jstr(m->recipient_timezone));
	set(o, "callbacks", json_integer(m->callback_count));
	set(o, "duplicates", json_integer(m->duplicate_count));
	set(o, "events", json_integer(m->event_count));
	set(o, "created_at", jstr(m->created_at));
	set(o, "updated_at", jstr(m->updated_at));
	set(o, "sent_recorded_at", jstr(m->sent_recorded_at));
	set(o, "first_callback_at", jstr(m->first_callback_at));
	set(o, "final_at", jstr(m->final_at));
	set(o, "time_to_first_callback_ms", delta_json(sent_at(m), m->first_callback_at));
	set(o, "time_to_final_ms", delta_json(sent_at(m), m->final_at));
	return o;
}

/* ---- input helpers ---- */

static bool printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

/* The Idempotency-Key: a Structured Field string (RFC 9651; the IETF
 * Idempotency-Key draft), so printable ASCII only.  A header may carry any
 * byte, and one that is not UTF-8 must never reach storage: PostgreSQL
 * refuses such text, which would fail the whole batch it is in. */
static bool idem_key_ok(const char *s, size_t n)
{
	if (n == 0 || n > API_IDEM_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e)
			return false;
	}
	return true;
}

/* [A-Za-z0-9_.:/-] */
static bool slug(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == ':' || c == '/' || c == '-'))
			return false;
	}
	return true;
}

/* A message id: a UUID in canonical form (either case); out gets it in
 * lower case (37 bytes). */
static bool uuid_of(struct iov v, char out[37])
{
	if (v.n != 36)
		return false;
	for (size_t i = 0; i < 36; i++) {
		char c = v.p[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (c >= 'A' && c <= 'F') {
			c = (char)(c + 32);
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return false;
		}
		out[i] = c;
	}
	out[36] = '\0';
	return true;
}

/* Strict E.164: '+', a first digit 1-9, 7..15 digits in all (the
 * shortest numbers, Niue's and Tokelau's, have 7; phone_normalize() takes
 * them from callbacks too). */
static bool e164(const char *s, size_t n)
{
	if (n < 8 || n > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9')
		return false;
	for (size_t i = 1; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* The provider's canonical form of a message id, the one its adapter
 * stores (struct provider.canonical_id), so a send and its callbacks meet
 * on the same key; kept as sent when the provider has no rule. */
static char *canonical_pmid(struct arena *ar, const char *provider, const char *p, size_t n)
{
	const struct provider *pv = provider_find(provider, strlen(provider));
	const char *c = pv && pv->canonical_id ? pv->canonical_id(ar, p, n) : NULL;
	return c ? (char *)c : arena_strndup(ar, p, n);
}

static unsigned json_depth(json_t *v, unsigned limit)
{
	const char *key;
	size_t i;
	json_t *x;
	unsigned best = 0, d;

	if (limit == 0)
		return 1;
	if (json_is_object(v)) {
		json_object_foreach(v, key, x)
		{
			if ((d = json_depth(x, limit - 1)) > best)
				best = d;
		}
		return best + 1;
	}
	if (json_is_array(v)) {
		json_array_foreach(v, i, x)
		{
			if ((d = json_depth(x, limit - 1)) > best)
				best = d;
		}
		return best + 1;
	}
	return 0;
}

/* Decodes the body as one JSON object.  An empty body is {} when
 * empty_ok.  Returns the object (caller decrefs) or NULL with ans set. */
static json_t *body_object(const struct api_request *rq, bool empty_ok, struct api_answer *ans)
{
	const char *ct = rq->header(rq->hctx, "Content-Type");
	json_error_t jerr;
	json_t *root;
	char msg[160];

	if (rq->body.n == 0 && empty_ok)
		return json_object();
	if (ct && *ct) {
		size_t n = strcspn(ct, "; \t");
		bool json = (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
		            (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0);
		if (!json) {
			ans_error(ans, 415, "unsupported_media_type",
			          "the body must be application/json", NULL);
			return NULL;
		}
	}
	if (!jsonx_values_ok(rq->body.p, rq->body.n, API_BODY_VALUES)) {
		ans_error(ans, 400, "invalid_json", "the body holds too many JSON values", NULL);
		return NULL;
	}
	root = json_loadb(rq->body.p, rq->body.n, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		/* jerr.text may quote the input: only the position is given */
		util_fmt(msg, sizeof(msg), "the body is not valid JSON (line %d, column %d)",
		         jerr.line, jerr.column);
		ans_error(ans, 400, "invalid_json", msg, NULL);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		ans_error(ans, 400, "invalid_json", "the body must be a JSON object", NULL);
		return NULL;
	}
	if (json_depth(root, LIM_JSON_DEPTH + 1) > LIM_JSON_DEPTH) {
		json_decref(root);
		ans_error(ans, 400, "invalid_json", "the body is nested too deeply", NULL);
		return NULL;
	}
	return root;
}

/* Rejects members not in allowed (NULL-terminated).  The member's name is
 * named only when it looks like a field name (so no input leaks back). */
static bool only_known(json_t *obj, const char *const *allowed, struct api_answer *ans)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v)
	{
		bool ok = false;
		for (size_t i = 0; allowed[i] && !ok; i++)
			ok = strcmp(key, allowed[i]) == 0;
		if (ok)
			continue;
		bool named = strlen(key) <= 40;
		for (const char *k = key; *k && named; k++)
			named = (*k >= 'a' && *k <= 'z') || *k == '_';
		ans_error(ans, 422, "unknown_field",
		          "the body has a field this endpoint does not take", named ? key : NULL);
		return false;
	}
	return true;
}

enum text_kind { TX_SLUG, TX_PRINTABLE, TX_ANY };

/* Reads string member name of obj (NULL: absent or null) into the arena,
 * checked for length 1..max and kind.  label names it in errors ("action.id"
 * for a nested member).  Returns 0, or -1 with ans set. */
static int str_label(struct arena *ar, json_t *obj, const char *name, const char *label,
                     bool required, size_t max, enum text_kind kind, const char **out,
                     struct api_answer *ans)
{
	json_t *v = json_object_get(obj, name);
	char msg[160];

	*out = NULL;
	if (!v || json_is_null(v)) {
		if (!required)
			return 0;
		util_fmt(msg, sizeof(msg), "%s is required", label);
		ans_error(ans, 422, "missing_field", msg, label);
		return -1;
	}
	if (!json_is_string(v)) {
		util_fmt(msg, sizeof(msg), "%s must be a string", label);
		ans_error(ans, 422, "invalid_field", msg, label);
		return -1;
	}
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (n == 0) {
		util_fmt(msg, sizeof(msg), "%s must not be empty", label);
		ans_error(ans, 422, "invalid_field", msg, label);
		return -1;
	}
	if (n > max) {
		util_fmt(msg, sizeof(msg), "%s is longer than %zu bytes", label, max);
		ans_error(ans, 422, "too_long", msg, label);
		return -1;
	}
	if (memchr(s, '\0', n) || (kind == TX_SLUG && !slug(s, n)) ||
	    (kind == TX_PRINTABLE && !printable(s, n))) {
		util_fmt(msg, sizeof(msg),
		         kind == TX_SLUG ? "%s may hold only letters, digits and _ . : / -"
		                         : "%s must not hold control characters",
		         label);
		ans_error(ans, 422, "invalid_field", msg, label);
		return -1;
	}
	*out = arena_strndup(ar, s, n);
	return 0;
}

static int str_member(struct arena *ar, json_t *obj, const char *name, bool required, size_t max,
                      enum text_kind kind, const char **out, struct api_answer *ans)
{
	return str_label(ar, obj, name, name, required, max, kind, out, ans);
}

#define PMID_SPACED     "provider_message_id must not begin or end with a space"
#define COUNTRY_INVALID "destination_country must be an assigned ISO 3166-1 alpha-2 code"
#define TZ_UNKNOWN      "recipient_timezone must name a zone of the tz database, such as Europe/Berlin"

/* provider_message_id: printable, at most LIM_ID_BYTES, and no space
 * before or after it.  No provider's callback repeats such a space, so an
 * id kept with one would never meet its callbacks.  0, -1 with the 422 in
 * ans, or 1 for such a space, which the caller answers (PMID_SPACED): a
 * send may be a replay of one recorded before the check (refuse()). */
static int pmid_member(struct arena *ar, json_t *obj, bool required, const char **out,
                       struct api_answer *ans)
{
	if (str_member(ar, obj, "provider_message_id", required, LIM_ID_BYTES, TX_PRINTABLE, out,
	               ans) != 0)
		return -1;
	if (*out && ((*out)[0] == ' ' || (*out)[strlen(*out) - 1] == ' ')) {
		*out = NULL;
		return 1; /* the caller answers (PMID_SPACED) */
	}
	return 0;
}

/* ---- cursors (opaque: base64url of "<kind>1:<key>") ---- */

static char *cursor_encode(struct arena *ar, char kind, const char *key)
{
	char raw[80];
	size_t n = util_fmt(raw, sizeof(raw), "%c1:%s", kind, key);
	char *out = arena_alloc(ar, 4 * ((n + 2) / 3) + 1);
	size_t m = crypto_b64_encode((const uint8_t *)raw, n, out);
	while (m && out[m - 1] == '=')
		m--;
	for (size_t i = 0; i < m; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	out[m] = '\0';
	return out;
}

/* Sets root's next_cursor: the cursor of the last integer id on this page
 * when there is a next page, else null. */
static void set_int_cursor(json_t *root, struct arena *ar, char kind, bool more, long long last)
{
	char num[24];
	if (!more) {
		set(root, "next_cursor", json_null());
		return;
	}
	util_fmt(num, sizeof(num), "%lld", last);
	set(root, "next_cursor", json_string(cursor_encode(ar, kind, num)));
}

/* Decodes a cursor of kind into key (cap bytes).  Returns 0 or -1. */
static int cursor_decode(const char *c, size_t n, char kind, char *key, size_t cap)
{
	uint8_t raw[96];
	size_t m = 0;

	if (n == 0 || n > 100 || crypto_b64_decode(c, n, raw, &m) != 0 || m < 4 || m - 3 >= cap)
		return -1;
	if (raw[0] != (uint8_t)kind || raw[1] != '1' || raw[2] != ':')
		return -1;
	memcpy(key, raw + 3, m - 3);
	key[m - 3] = '\0';
	return 0;
}

/* ---- query strings ---- */

struct params {
	struct form f;
	bool ok;
};

/* Decodes the query; rejects parameters not in allowed. */
static bool query_params(const struct api_request *rq, const char *const *allowed, struct params *p,
                         struct api_answer *ans)
{
	char err[128];

	memset(p, 0, sizeof(*p));
	if (form_decode(rq->arena, rq->query.p, rq->query.n, API_QUERY_FIELDS, &p->f, err,
	                sizeof(err)) != 0) {
		ans_error(ans, 400, "invalid_query", "the query string is malformed", NULL);
		return false;
	}
	for (size_t i = 0; i < p->f.n; i++) {
		bool ok = false;
		for (size_t k = 0; allowed[k] && !ok; k++)
			ok = strcmp(p->f.fields[i].name, allowed[k]) == 0;
		if (!ok) {
			const char *nm = p->f.fields[i].name;
			bool named = strlen(nm) <= 40;
			for (const char *c = nm; *c && named; c++)
				named = (*c >= 'a' && *c <= 'z') || *c == '_';
			ans_error(ans, 422, "unknown_parameter",
			          "the query has a parameter this endpoint does not take",
			          named ? nm : NULL);
			return false;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(p->f.fields[j].name, p->f.fields[i].name) == 0) {
				ans_error(ans, 422, "repeated_parameter",
				          "a query parameter is given twice", p->f.fields[i].name);
				return false;
			}
		}
	}
	return true;
}

/* A parameter's value ("" counts as absent). */
static const char *param(const struct params *p, const char *name)
{
	const struct form_field *f = form_get(&p->f, name);
	return f && f->value_len ? f->value : NULL;
}

static bool param_limit(const struct params *p, unsigned *out, struct api_answer *ans)
{
	const char *v = param(p, "limit");
	uint64_t n;

	*out = API_LIMIT_DEFAULT;
	if (!v)
		return true;
	if (util_parse_u64(v, strlen(v), &n) != 0 || n < 1) {
		ans_error(ans, 422, "invalid_parameter", "limit must be a positive integer",
		          "limit");
		return false;
	}
	*out = n > API_LIMIT_MAX ? API_LIMIT_MAX : (unsigned)n; /* capped, not refused */
	return true;
}

/* Whether ms is a time a parameter may name; else ans is set. */
static bool time_in_range(int64_t ms, const char *name, struct api_answer *ans)
{
	char msg[128];

	if (ms >= API_TIME_MIN_MS && ms <= API_TIME_MAX_MS)
		return true;
	util_fmt(msg, sizeof(msg), "%s must be a time in the years 0001 to 9999 (UTC)", name);
	ans_error(ans, 422, "invalid_parameter", msg, name);
	return false;
}

/* An RFC 3339 time parameter, canonicalized (UTC, milliseconds). */
static bool param_time(struct arena *ar, const struct params *p, const char *name, const char **out,
                       struct api_answer *ans)
{
	const char *v = param(p, name);
	int64_t ms;
	char msg[128];

	*out = NULL;
	if (!v)
		return true;
	if (util_parse_rfc3339(v, strlen(v), &ms) != 0) {
		util_fmt(msg, sizeof(msg), "%s must be an RFC 3339 time", name);
		ans_error(ans, 422, "invalid_parameter", msg, name);
		return false;
	}
	if (!time_in_range(ms, name, ans))
		return false;
	char *c = arena_alloc(ar, 25);
	util_rfc3339(ms, c);
	*out = c;
	return true;
}

/* The country parameter: an ISO 3166-1 alpha-2 code, upper-cased. */
static bool param_country(struct arena *ar, const struct params *p, const char **out,
                          struct api_answer *ans)
{
	const char *v = param(p, "country");

	*out = NULL;
	if (!v)
		return true;
	char *c = arena_strndup(ar, v, strlen(v));
	for (char *x = c; *x; x++)
		*x = (char)(*x >= 'a' && *x <= 'z' ? *x - 32 : *x);
	if (strlen(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z') {
		ans_error(ans, 422, "invalid_parameter",
		          "country must be an ISO 3166-1 alpha-2 code", "country");
		return false;
	}
	*out = c;
	return true;
}

/* An RFC 3339 time parameter as milliseconds; *out is untouched when the
 * parameter is absent. */
static bool param_ms(const struct params *p, const char *name, int64_t *out, struct api_answer *ans)
{
	const char *v = param(p, name);
	char msg[128];

	if (!v)
		return true;
	if (util_parse_rfc3339(v, strlen(v), out) != 0) {
		util_fmt(msg, sizeof(msg), "%s must be an RFC 3339 time", name);
		ans_error(ans, 422, "invalid_parameter", msg, name);
		return false;
	}
	return time_in_range(*out, name, ans);
}

/* "90s", "30m", "4h", "2d" -> seconds. */
static int parse_duration(const char *v, int64_t *secs)
{
	size_t n = strlen(v);
	uint64_t x;
	int64_t mul;

	if (n < 2)
		return -1;
	switch (v[n - 1]) {
	case 's':
		mul = 1;
		break;
	case 'm':
		mul = 60;
		break;
	case 'h':
		mul = 3600;
		break;
	case 'd':
		mul = 86400;
		break;
	default:
		return -1;
	}
	if (util_parse_u64(v, n - 1, &x) != 0 || x > API_STUCK_MAX_S ||
	    (int64_t)x * mul > API_STUCK_MAX_S)
		return -1;
	*secs = (int64_t)x * mul;
	return 0;
}

/* ---- time zones ---- */

static json_t *time_json(const struct tz_zone *z, const char *utc)
{
	char loc[TZ_FMT_LEN];
	struct tz_local l;
	int64_t ms = ms_of(utc);

	if (!utc)
		return json_null();
	json_t *o = json_object();
	set(o, "utc", jstr(utc));
	if (z && ms != INT64_MIN) {
		tz_format(z, ms, loc, &l);
		/* RFC 3339 writes four-digit years: a local time past 9999
		 * (east of UTC at the end of that year) has no such form, and
		 * tz_format() would print its year modulo 10000 */
		int64_t local_ms = ms + (int64_t)l.offset_s * 1000;
		set(o, "local",
		    local_ms >= API_TIME_MIN_MS && local_ms <= API_TIME_MAX_MS ? json_string(loc)
		                                                               : json_null());
		set(o, "zone_abbreviation", jstr(l.abbrev));
	} else {
		set(o, "local", json_null());
		set(o, "zone_abbreviation", json_null());
	}
	return o;
}

/* ---- the closing line ---- */

static void age_text(int64_t ms, char *buf, size_t cap)
{
	int64_t s = ms / 1000;
	if (s < 60)
		util_fmt(buf, cap, "less than a minute");
	else if (s < 7200)
		util_fmt(buf, cap, "%lld minute%s", (long long)(s / 60), s / 60 == 1 ? "" : "s");
	else if (s < 2 * 86400)
		util_fmt(buf, cap, "%lld hours", (long long)(s / 3600));
	else
		util_fmt(buf, cap, "%lld days", (long long)(s / 86400));
}

/* What support can tell the user now: from the current status, the final
 * flag, the error's reason and how long ago the message was sent. */
static char *closing_line(struct arena *ar, const struct store_message *m, int64_t now_ms)
{
	const size_t cap = 768;
	char *out = arena_alloc(ar, cap), age[48] = "";
	const char *base = sent_at(m) ? sent_at(m) : m->created_at;
	int64_t since = ms_of(base);
	int64_t age_ms = since == INT64_MIN ? -1 : now_ms - since;
	enum dlr_status st = ST_ACCEPTED;
	size_t n = 0;

	if (age_ms >= 0)
		age_text(age_ms, age, sizeof(age));
	if (m->status)
		status_parse(m->status, strlen(m->status), &st);
	if (m->event_count == 0) {
		n = util_fmt(
		    out, cap,
		    "No delivery report has arrived yet%s%s%s. Reports usually come within"
		    " minutes; if none arrives within an hour, tell the user the outcome is"
		    " unknown and offer to send the message again.",
		    age[0] ? " (the send was recorded " : "", age, age[0] ? " ago)" : "");
	} else if (st == ST_DELIVERED) {
		n = util_fmt(
		    out, cap,
		    "The message was delivered to the user's phone%s. If they cannot find"
		    " it, ask them to check blocked senders and spam filters on the phone.",
		    m->read_receipt ? " and read" : "");
	} else if (st == ST_ACCEPTED || st == ST_SENT) {
		bool slow = age_ms > 3600 * 1000;
		n = util_fmt(out, cap, "%s%s%s%s, and the phone has not confirmed delivery yet.%s",
		             st == ST_SENT ? "The carrier took the message"
		                           : "The provider accepted the message",
		             age[0] ? " " : "", age, age[0] ? " ago" : "",
		             slow ? " This is unusually long: some carriers never confirm; if the"
		                    " user has not received it, offer to send it again."
		                  : " Ask the user to wait a few minutes.");
	} else if (st == ST_UNKNOWN) {
		n = util_fmt(
		    out, cap,
		    "The provider closed the message without a clear outcome, so delivery"
		    " cannot be confirmed. If the user did not receive it, send it again.");
	} else {
		enum err_reason r = m->error_reason ? reason_of(m->error_reason) : ER_UNKNOWN;
		if (r == ER_NONE)
			r = st == ST_EXPIRED ? ER_EXPIRED : ER_UNKNOWN;
		n = util_fmt(out, cap, "The message was not delivered (%s%s%s%s). %s %s",
		             status_name(st), age[0] ? ", sent " : "", age, age[0] ? " ago" : "",
		             errcat_note(r), errcat_next_step(r));
	}
	if (m->final_conflict && n < cap)
		util_fmt(out + n, cap - n,
		         " The provider sent conflicting final reports; the case went to the review"
		         " queue.");
	return out;
}

/* ---- writes: hand the operation to the writer ---- */

/* Writer thread: the answer to a send or a provider id update. */
static size_t render_row(struct store_op *op)
{
	const struct store_op_row *r = &op->row;
	json_t *o = json_object();
	char *s;
	size_t n = 0;

	set(o, "id", jstr(r->id));
	set(o, "origin", jstr(r->origin));
	set(o, "provider", jstr(r->provider));
	set(o, "provider_message_id",
	    jstr(r->provider_message_id[0] ? r->provider_message_id : NULL));
	set(o, "status", jstr(r->status));
	set(o, "is_final", json_boolean(r->is_final));
	set(o, "recipient", jstr(r->recipient_masked[0] ? r->recipient_masked : NULL));
	set(o, "destination_country",
	    jstr(r->destination_country[0] ? r->destination_country : NULL));
	set(o, "created_at", jstr(r->created_at));
	set(o, "sent_recorded_at", jstr(r->sent_recorded_at[0] ? r->sent_recorded_at : NULL));
	set(o, "joined_callbacks", json_boolean(strcmp(r->origin, "joined") == 0 || r->merged));
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s) {
		n = util_strlcpy(op->resp, s, op->resp_cap);
		if (n >= op->resp_cap)
			n = op->resp_cap - 1;
		free(s);
	}
	return n;
}

/* Writer thread: decrypts the stored number into op->number. */
static int open_number(struct store_op *op, const uint8_t *blob, size_t n, const char *key_id)
{
	const struct api *a = op->ctx;
	char num[PHONE_E164_MAX + 1];
	size_t len = 0;
	int rc;

	if (!a->kr)
		return DLRD_ENOTFOUND;
	rc = pii_decrypt(a->kr, key_id, blob, n, num, sizeof(num) - 1, &len);
	if (rc != 0)
		return rc;
	num[len] = '\0';
	util_strlcpy(op->number, num, sizeof(op->number));
	explicit_bzero(num, sizeof(num));
	return 0;
}

/* Reserves a queue slot and fills the commit item; the front parks. */
static void park(struct api *a, struct api_state *s, const struct api_request *rq,
                 struct api_answer *ans)
{
	struct commit_item *it = rq->item;
	int rc;

	if (!store_api_writes(a->st)) {
		ans_error(ans, 501, "not_implemented",
		          "the configured storage backend does not support API writes yet", NULL);
		return;
	}
	if ((rc = commitq_reserve(a->q)) != 0) {
		if (rc == DLRD_EBUSY)
			ans_error(ans, 503, "storage_stalled",
			          "storage has not answered for seconds; retry", NULL);
		else
			ans_error(ans, 503, "queue_full", "too many requests are waiting; retry",
			          NULL);
		return;
	}
	s->op.actor = s->actor;
	s->op.actor_role = auth_role_name(s->who.role);
	s->op.render = render_row;
	s->op.open = open_number;
	s->op.ctx = a;
	s->op.resp_cap = API_RESP_MAX;
	s->op.resp = arena_alloc(rq->arena, API_RESP_MAX);
	s->op.resp[0] = '\0';
	it->kind = CI_API;
	it->op = &s->op;
	it->provider = "api";
	it->events = NULL;
	it->n_events = 0;
	it->raw_payload = (struct iov){NULL, 0};
	it->received_ms = rq->now_ms;
	ans->park = true;
}

static bool use_case_exempt(const struct api *a, const char *use_case)
{
	for (size_t i = 0; use_case && i < a->n_exempt; i++)
		if (strcmp(a->exempt[i], use_case) == 0)
			return true;
	return false;
}

/* A check added after sends may have been recorded refuses this one: the
 * 422 is answered unless the request replays a send recorded before under
 * the same key (an application retrying across the upgrade must get its
 * 201 again, not a refusal of a message that is recorded). */
static void refuse(struct api_state *s, const char *code, const char *message, const char *field)
{
	s->refused.code = code;
	s->refused.message = message;
	s->refused.field = field;
}

static void h_send(struct api *a, struct api_state *s, const struct api_request *rq,
                   struct api_answer *ans)
{
	static const char *const fields[] = {"to",
	                                     "provider",
	                                     "provider_message_id",
	                                     "use_case",
	                                     "template_key",
	                                     "sender_identity",
	                                     "destination_country",
	                                     "recipient_timezone",
	                                     "action",
	                                     "metadata",
	                                     NULL};
	static const char *const action_fields[] = {"type", "id", NULL};
	struct store_send *sd = &s->op.send;
	const char *key = rq->header(rq->hctx, "Idempotency-Key");
	const char *to = NULL, *prov = NULL, *pmid = NULL, *country = NULL, *tz_name = NULL;
	json_t *root = NULL, *action, *meta;
	struct dlr_event ev;
	uint8_t hash[CRYPTO_SHA256_LEN];
	char *canon = NULL, *hex, cc[4];
	size_t enc_len = 0;
	int rc;

	memset(&s->op, 0, sizeof(s->op));
	memset(&s->refused, 0, sizeof(s->refused));
	s->op.kind = STORE_OP_SEND;
	if (!key || !*key) {
		ans_error(ans, 400, "idempotency_key_required",
		          "POST /v1/messages needs an Idempotency-Key header", "Idempotency-Key");
		return;
	}
	if (!idem_key_ok(key, strlen(key))) {
		ans_error(ans, 422, "invalid_idempotency_key",
		          "the Idempotency-Key must be 1..255 printable ASCII characters",
		          "Idempotency-Key");
		return;
	}
	if (!(root = body_object(rq, false, ans)))
		return;
	if (!only_known(root, fields, ans))
		goto out;

	/* to: strict E.164; never echoed */
	json_t *tov = json_object_get(root, "to");
	if (!tov || json_is_null(tov)) {
		ans_error(ans, 422, "missing_field", "to is required", "to");
		goto out;
	}
	if (!json_is_string(tov) || !e164(json_string_value(tov), json_string_length(tov))) {
		ans_error(ans, 422, "invalid_phone_number",
		          "to must be an E.164 number: '+' and 7 to 15 digits", "to");
		goto out;
	}
	to = json_string_value(tov);
	/* a spare calling code (+28x, +83x, +999 ...) is no number */
	if (phone_calling_code(to, cc) == 0) {
		refuse(s, "invalid_phone_number",
		       "to must be an E.164 number: its calling code is not assigned", "to");
		goto replay;
	}

	if (str_member(rq->arena, root, "provider", true, 63, TX_SLUG, &prov, ans) != 0)
		goto out;
	if (!provider_find(prov, strlen(prov))) {
		ans_error(ans, 422, "unknown_provider", "provider is not one dlrd knows",
		          "provider");
		goto out;
	}
	sd->provider = provider_find(prov, strlen(prov))->name;
	if ((rc = pmid_member(rq->arena, root, false, &pmid, ans)) < 0)
		goto out;
	if (rc > 0) {
		refuse(s, "invalid_field", PMID_SPACED, "provider_message_id");
		goto replay;
	}
	if (pmid)
		sd->provider_message_id =
		    canonical_pmid(rq->arena, sd->provider, pmid, strlen(pmid));
	if (str_member(rq->arena, root, "use_case", true, API_SLUG_MAX, TX_SLUG, &sd->use_case,
	               ans) != 0 ||
	    str_member(rq->arena, root, "template_key", true, API_SLUG_MAX, TX_SLUG,
	               &sd->template_key, ans) != 0 ||
	    str_member(rq->arena, root, "sender_identity", true, API_TEXT_MAX, TX_PRINTABLE,
	               &sd->sender_identity, ans) != 0)
		goto out;
	if (str_member(rq->arena, root, "destination_country", false, 2, TX_SLUG, &country, ans) !=
	    0)
		goto out;
	if (country) {
		char *c = arena_strndup(rq->arena, country, strlen(country));
		for (char *p = c; *p; p++)
			*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
		if (strlen(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z') {
			ans_error(ans, 422, "invalid_country", COUNTRY_INVALID,
			          "destination_country");
			goto out;
		}
		if (!phone_country_known(c)) {
			refuse(s, "invalid_country", COUNTRY_INVALID, "destination_country");
			goto replay;
		}
		sd->country = c;
	}
	if (str_member(rq->arena, root, "recipient_timezone", false, TZ_NAME_MAX, TX_PRINTABLE,
	               &tz_name, ans) != 0)
		goto out;
	if (tz_name) {
		const struct tz_zone *z;
		if (tz_lookup(a->tz, tz_name, strlen(tz_name), &z) != 0) {
			/* files of the zone folder an older dlrd took as zones */
			if (strcmp(tz_name, "localtime") == 0 ||
			    strcmp(tz_name, "posixrules") == 0) {
				refuse(s, "unknown_time_zone", TZ_UNKNOWN, "recipient_timezone");
				goto replay;
			}
			ans_error(ans, 422, "unknown_time_zone", TZ_UNKNOWN, "recipient_timezone");
			goto out;
		}
		sd->recipient_timezone = tz_name;
	}
	action = json_object_get(root, "action");
	if (!action || json_is_null(action)) {
		ans_error(ans, 422, "missing_field", "action is required", "action");
		goto out;
	}
	if (!json_is_object(action)) {
		ans_error(ans, 422, "invalid_field", "action must be an object with type and id",
		          "action");
		goto out;
	}
	if (!only_known(action, action_fields, ans))
		goto out;
	if (str_label(rq->arena, action, "type", "action.type", true, API_SLUG_MAX, TX_SLUG,
	              &sd->action_type, ans) != 0 ||
	    str_label(rq->arena, action, "id", "action.id", false, API_TEXT_MAX, TX_PRINTABLE,
	              &sd->action_id, ans) != 0)
		goto out;
	meta = json_object_get(root, "metadata");
	if (meta && !json_is_null(meta)) {
		if (!json_is_object(meta)) {
			ans_error(ans, 422, "invalid_field", "metadata must be a JSON object",
			          "metadata");
			goto out;
		}
		if (json_depth(meta, API_METADATA_DEPTH + 1) > API_METADATA_DEPTH) {
			ans_error(ans, 422, "invalid_field", "metadata is nested too deeply",
			          "metadata");
			goto out;
		}
		char *m = json_dumps(meta, JSON_COMPACT);
		if (!m || strlen(m) > API_METADATA_MAX) {
			free(m);
			ans_error(ans, 422, "too_long",
			          "metadata is larger than 4096 bytes as JSON", "metadata");
			goto out;
		}
		sd->metadata = arena_strndup(rq->arena, m, strlen(m));
		free(m);
	}

	/* the number: keyed hash, masked, encrypted; the clear copy is wiped */
	memset(&ev, 0, sizeof(ev));
	provider_set_recipient(&ev, rq->arena, to, strlen(to));
	sd->recipient_hash = ev.recipient_hash;
	sd->recipient_masked = ev.recipient_masked;
	sd->number_country = ev.destination_country;
	if (!a->kr) {
		ans_error(ans, 500, "no_encryption_key", "no encryption key is loaded", NULL);
		goto out;
	}
	uint8_t *enc = arena_alloc(rq->arena, PHONE_E164_MAX + PII_OVERHEAD);
	if (pii_encrypt(a->kr, to, strlen(to), enc, PHONE_E164_MAX + PII_OVERHEAD, &enc_len,
	                &sd->recipient_key_id) != 0) {
		ans_error(ans, 500, "encryption_failed", "the number could not be encrypted", NULL);
		goto out;
	}
	sd->recipient_enc = enc;
	sd->recipient_enc_len = enc_len;
	sd->optout_exempt = use_case_exempt(a, sd->use_case);

replay:
	/* idempotency: the token, the key, the canonical request */
	canon = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
	if (!canon) {
		ans_error(ans, 400, "invalid_json", "the body could not be read", NULL);
		goto out;
	}
	/* keyed (privacy.h): the body holds the number, and every other field
	 * of it is stored in clear */
	crypto_sha256(canon, strlen(canon), hash);
	explicit_bzero(canon, strlen(canon));
	hex = arena_alloc(rq->arena, 2 * sizeof(hash) + 1);
	privacy_request_hash(hash, hex);
	explicit_bzero(hash, sizeof(hash));
	sd->request_hash = hex;
	sd->token_hash = arena_strndup(rq->arena, s->who.hash, strlen(s->who.hash));
	sd->idem_key = arena_strndup(rq->arena, key, strlen(key));
	sd->replay_only = s->refused.code != NULL;
	park(a, s, rq, ans);
out:
	free(canon);
	/* the clear number lives in the JSON tree: wipe it before freeing */
	if (root && (tov = json_object_get(root, "to")) && json_is_string(tov))
		explicit_bzero((char *)json_string_value(tov), json_string_length(tov));
	json_decref(root);
}

static void h_patch(struct api *a, struct api_state *s, const struct api_request *rq,
                    struct api_answer *ans)
{
	static const char *const fields[] = {"provider_message_id", NULL};
	char id[37];
	const char *pmid;
	json_t *root;

	memset(&s->op, 0, sizeof(s->op));
	s->op.kind = STORE_OP_SET_PROVIDER_ID;
	if (!uuid_of(s->id, id)) {
		ans_error(ans, 404, "message_not_found", "no message with this id", NULL);
		return;
	}
	if (!(root = body_object(rq, false, ans)))
		return;
	int prc = -1;
	if (only_known(root, fields, ans) &&
	    (prc = pmid_member(rq->arena, root, true, &pmid, ans)) > 0)
		ans_error(ans, 422, "invalid_field", PMID_SPACED, "provider_message_id");
	if (prc == 0) {
		/* The canonical form depends on the message's provider, which
		 * never changes: read it first (the writer checks the row
		 * again). */
		struct store_message m;
		char err[256];
		int rc = store_get_message(a->st, rq->arena, id, &m, err, sizeof(err));
		if (rc != 0) {
			ans_store_error(ans, rc, "message", err);
		} else {
			s->op.message_id = arena_strndup(rq->arena, id, 36);
			s->op.text = canonical_pmid(rq->arena, m.provider, pmid, strlen(pmid));
			park(a, s, rq, ans);
		}
	}
	json_decref(root);
}

static void h_reveal(struct api *a, struct api_state *s, const struct api_request *rq,
                     struct api_answer *ans)
{
	static const char *const fields[] = {"reason", NULL};
	char id[37];
	const char *reason;
	json_t *root;

	memset(&s->op, 0, sizeof(s->op));
	s->op.kind = STORE_OP_REVEAL;
	if (!uuid_of(s->id, id)) {
		ans_error(ans, 404, "message_not_found", "no message with this id", NULL);
		return;
	}
	if (!(root = body_object(rq, false, ans)))
		return;
	if (only_known(root, fields, ans) &&
	    str_member(rq->arena, root, "reason", true, API_REASON_MAX, TX_PRINTABLE, &reason,
	               ans) == 0) {
		char *r = (char *)reason; /* ours, in the arena */
		size_t n = strlen(r);
		while (n && (r[n - 1] == ' ' || r[n - 1] == '\t'))
			r[--n] = '\0';
		while (*r == ' ' || *r == '\t') {
			r++;
			n--;
		}
		reason = r;
		if (n == 0) {
			ans_error(ans, 422, "invalid_field", "reason must not be blank", "reason");
		} else {
			s->op.message_id = arena_strndup(rq->arena, id, 36);
			s->op.text = reason;
			park(a, s, rq, ans);
		}
	}
	json_decref(root);
}

static void h_resolve(struct api *a, struct api_state *s, const struct api_request *rq,
                      struct api_answer *ans)
{
	static const char *const fields[] = {"note", NULL};
	uint64_t rid;
	const char *note;
	json_t *root;

	memset(&s->op, 0, sizeof(s->op));
	s->op.kind = STORE_OP_RESOLVE_REVIEW;
	if (util_parse_u64(s->id.p, s->id.n, &rid) != 0 || rid == 0) {
		ans_error(ans, 404, "review_item_not_found", "no review item with this id", NULL);
		return;
	}
	if (!(root = body_object(rq, true, ans)))
		return;
	if (only_known(root, fields, ans) &&
	    str_member(rq->arena, root, "note", false, API_NOTE_MAX, TX_PRINTABLE, &note, ans) ==
	        0) {
		s->op.review_id = (int64_t)rid;
		s->op.text = note;
		park(a, s, rq, ans);
	}
	json_decref(root);
}

/* ---- reads ---- */

static void h_openapi(struct api_answer *ans)
{
	ans->status = 200;
	ans->body = (char *)api_openapi_json;
	ans->len = api_openapi_json_len;
	ans->body_static = true;
	ans->n_headers = 0; /* cacheable */
}

static void h_get(struct api *a, struct api_state *s, const struct api_request *rq,
                  struct api_answer *ans)
{
	static const char *const allowed[] = {NULL}; /* the summary takes none */
	struct params p;
	struct store_message m;
	char id[37], err[256];
	int rc;

	if (!uuid_of(s->id, id)) {
		ans_error(ans, 404, "message_not_found", "no message with this id", NULL);
		return;
	}
	if (!query_params(rq, allowed, &p, ans))
		return;
	rc = store_get_message(a->st, rq->arena, id, &m, err, sizeof(err));
	if (rc != 0) {
		ans_store_error(ans, rc, "message", err);
		return;
	}
	ans_json(ans, 200, message_json(&m));
}

/* Sets the raw payload on ev: opened when sealed (pii.h), as it is when
 * stored in clear before payloads were sealed.  When it cannot be opened
 * (its key is not in the ring, or it does not verify) raw_payload is null
 * and raw_payload_unavailable says why; the rest of the answer stands.
 * One answer inlines at most API_PAYLOAD_BUDGET stored bytes: *budget is
 * what is left, and a payload past it is only marked raw_payload_omitted. */
static json_t *payload_json(const struct api *a, struct arena *ar, const char *p, size_t n,
                            size_t *budget, json_t *ev)
{
	struct iov plain;
	int rc;

	if (n > *budget) {
		set(ev, "raw_payload_omitted", json_true());
		return ev;
	}
	*budget -= n;
	rc = pii_open_payload(a->kr, ar, p, n, &plain);

	if (rc == 0) {
		p = plain.p;
		n = plain.n;
	} else if (rc != DLRD_EINVAL) {
		set(ev, "raw_payload", json_null());
		set(ev, "raw_payload_unavailable",
		    json_string(rc == DLRD_ENOTFOUND ? "encryption_key_missing"
		                                     : "payload_does_not_verify"));
		return ev;
	}
	json_t *v = json_stringn(p, n);
	if (v) {
		set(ev, "raw_payload", v);
		return ev;
	}
	char *b = xmalloc(4 * ((n + 2) / 3) + 1);
	crypto_b64_encode((const uint8_t *)p, n, b);
	set(ev, "raw_payload_base64", json_string(b));
	free(b);
	return ev;
}

static void h_timeline(struct api *a, struct api_state *s, const struct api_request *rq,
                       struct api_answer *ans)
{
	static const char *const allowed[] = {"tz", NULL};
	struct params p;
	struct store_message m;
	struct store_event *evs;
	size_t n = 0, budget = API_PAYLOAD_BUDGET;
	const struct tz_zone *z = NULL;
	const char *zsrc = "default", *tzq;
	bool payloads = auth_allows(s->who.role, AUTH_SUPPORT);
	char id[37], err[256];
	int rc;

	if (!uuid_of(s->id, id)) {
		ans_error(ans, 404, "message_not_found", "no message with this id", NULL);
		return;
	}
	if (!query_params(rq, allowed, &p, ans))
		return;
	if ((tzq = param(&p, "tz")) != NULL) {
		if (tz_lookup(a->tz, tzq, strlen(tzq), &z) != 0) {
			ans_error(
			    ans, 422, "unknown_time_zone",
			    "tz must name a zone of the tz database, such as America/New_York",
			    "tz");
			return;
		}
		zsrc = "query";
	}
	rc = store_get_timeline(a->st, rq->arena, id, payloads, &m, &evs, &n, err, sizeof(err));
	if (rc != 0) {
		ans_store_error(ans, rc, "timeline", err);
		return;
	}
	if (!z && m.recipient_timezone &&
	    tz_lookup(a->tz, m.recipient_timezone, strlen(m.recipient_timezone), &z) == 0)
		zsrc = "send";
	if (!z && tz_lookup(a->tz, "UTC", 3, &z) != 0)
		z = NULL;

	json_t *root = json_object();
	set(root, "message", message_json(&m));
	/* the summary's times (UTC text in "message", as search gives them)
	 * also in the timeline's zone, like the events' */
	set(root, "message_times",
	    json_pack("{s:o, s:o, s:o, s:o, s:o}", "created_at", time_json(z, m.created_at),
	              "updated_at", time_json(z, m.updated_at), "sent_recorded_at",
	              time_json(z, m.sent_recorded_at), "first_callback_at",
	              time_json(z, m.first_callback_at), "final_at", time_json(z, m.final_at)));
	set(root, "time_zone", z ? json_string(tz_zone_name(z)) : json_null());
	set(root, "time_zone_source", json_string(zsrc));
	if (m.sent_recorded_at) {
		json_t *sd = json_object();
		set(sd, "recorded_at", time_json(z, m.sent_recorded_at));
		set(sd, "provider", jstr(m.provider));
		set(sd, "provider_message_id", jstr(m.provider_message_id));
		set(sd, "recipient", jstr(m.recipient_masked));
		set(sd, "destination_country", jstr(m.destination_country));
		set(sd, "sender_identity", jstr(m.sender_identity));
		set(sd, "template_key", jstr(m.template_key));
		set(sd, "use_case", jstr(m.use_case));
		set(sd, "action",
		    json_pack("{s:o, s:o}", "type", jstr(m.action_type), "id", jstr(m.action_id)));
		set(sd, "joined_callbacks_first",
		    json_boolean(m.first_callback_at &&
		                 strcmp(m.first_callback_at, m.sent_recorded_at) < 0));
		set(root, "send", sd);
	} else {
		set(root, "send", json_null());
	}
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		const struct store_event *e = &evs[i];
		json_t *o = json_object();
		set(o, "id", json_integer(e->id));
		set(o, "status", jstr(e->status));
		set(o, "raw_status", jstr(e->raw_status));
		set(o, "is_final", json_boolean(e->is_final));
		set(o, "read", json_boolean(e->read_receipt));
		set(o, "error", error_json(e->error_code, e->error_reason));
		set(o, "provider_event_id", jstr(e->provider_event_id));
		set(o, "provider_time", time_json(z, e->provider_occurred_at));
		set(o, "received_at", time_json(z, e->received_at));
		set(o, "callback_latency_ms", delta_json(e->provider_occurred_at, e->received_at));
		set(o, "deliveries", json_integer(e->deliveries));
		set(o, "provider_retries", json_integer(e->deliveries > 0 ? e->deliveries - 1 : 0));
		set(o, "changed_summary", json_boolean(e->changed_summary));
		set(o, "late", json_boolean(!e->changed_summary));
		if (payloads && e->raw_payload_omitted)
			set(o, "raw_payload_omitted", json_true());
		else if (payloads && e->raw_payload)
			payload_json(a, rq->arena, e->raw_payload, e->raw_payload_len, &budget, o);
		json_array_append_new(arr, o);
	}
	/* only the oldest STORE_TIMELINE_EVENTS are listed; the summary counts
	 * them all (ahead of the list, so a reader sees it first) */
	set(root, "events_truncated",
	    json_boolean(n >= STORE_TIMELINE_EVENTS && m.event_count > (int64_t)n));
	set(root, "events", arr);
	set(root, "closing_line", json_string(closing_line(rq->arena, &m, rq->now_ms)));
	ans_json(ans, 200, root);
}

static void h_search(struct api *a, const struct api_request *rq, struct api_answer *ans)
{
	static const char *const allowed[] = {
	    "status",          "final",        "provider",   "country",
	    "sender_identity", "template_key", "use_case",   "provider_message_id",
	    "action_type",     "action_id",    "origin",     "created_from",
	    "created_to",      "updated_from", "updated_to", "stuck_for",
	    "limit",           "cursor",       NULL};
	struct params p;
	struct store_query q;
	struct store_message *rows;
	size_t n = 0;
	const char *v;
	char err[256];
	int rc;

	memset(&q, 0, sizeof(q));
	q.final = -1;
	if (!query_params(rq, allowed, &p, ans) || !param_limit(&p, &q.limit, ans))
		return;
	if ((v = param(&p, "status")) != NULL) {
		const char *c = v;
		while (*c) {
			const char *comma = strchr(c, ',');
			size_t len = comma ? (size_t)(comma - c) : strlen(c);
			enum dlr_status st;
			if (status_parse(c, len, &st) != 0 || q.n_statuses >= ST__COUNT) {
				ans_error(
				    ans, 422, "invalid_parameter",
				    "status must be a comma-separated list of accepted, sent,"
				    " delivered, undelivered, failed, expired, rejected, unknown",
				    "status");
				return;
			}
			q.statuses[q.n_statuses++] = status_name(st);
			c += len + (comma ? 1 : 0);
		}
	}
	if ((v = param(&p, "final")) != NULL) {
		if (strcmp(v, "true") == 0) {
			q.final = 1;
		} else if (strcmp(v, "false") == 0) {
			q.final = 0;
		} else {
			ans_error(ans, 422, "invalid_parameter", "final must be true or false",
			          "final");
			return;
		}
	}
	q.provider = param(&p, "provider");
	if (!param_country(rq->arena, &p, &q.country, ans))
		return;
	q.sender_identity = param(&p, "sender_identity");
	q.template_key = param(&p, "template_key");
	q.use_case = param(&p, "use_case");
	q.action_type = param(&p, "action_type");
	q.action_id = param(&p, "action_id");
	if ((v = param(&p, "origin")) != NULL) {
		if (strcmp(v, "send") && strcmp(v, "callback") && strcmp(v, "joined")) {
			ans_error(ans, 422, "invalid_parameter",
			          "origin must be send, callback or joined", "origin");
			return;
		}
		q.origin = v;
	}
	if ((v = param(&p, "provider_message_id")) != NULL)
		q.provider_message_id =
		    q.provider ? canonical_pmid(rq->arena, q.provider, v, strlen(v)) : v;
	if (!param_time(rq->arena, &p, "created_from", &q.created_from, ans) ||
	    !param_time(rq->arena, &p, "created_to", &q.created_to, ans) ||
	    !param_time(rq->arena, &p, "updated_from", &q.updated_from, ans) ||
	    !param_time(rq->arena, &p, "updated_to", &q.updated_to, ans))
		return;
	if ((v = param(&p, "stuck_for")) != NULL) {
		int64_t secs;
		if (parse_duration(v, &secs) != 0) {
			ans_error(ans, 422, "invalid_parameter",
			          "stuck_for must be a duration such as 90s, 30m, 4h or 2d (at most"
			          " 366 days)",
			          "stuck_for");
			return;
		}
		char *t = arena_alloc(rq->arena, 25);
		util_rfc3339(rq->now_ms - secs * 1000, t);
		q.stuck_before = t;
	}
	if ((v = param(&p, "cursor")) != NULL) {
		char key[40], *id = arena_alloc(rq->arena, 37);
		if (cursor_decode(v, strlen(v), 'm', key, sizeof(key)) != 0 ||
		    !uuid_of((struct iov){key, strlen(key)}, id)) {
			ans_error(ans, 422, "invalid_cursor", "cursor is not one this API gave",
			          "cursor");
			return;
		}
		q.before_id = id; /* in small letters, as stored: SQLite compares text */
	}
	unsigned limit = q.limit;
	q.limit = limit + 1; /* one more tells whether a next page exists */
	rc = store_search(a->st, rq->arena, &q, &rows, &n, err, sizeof(err));
	if (rc != 0) {
		ans_store_error(ans, rc, "search", err);
		return;
	}
	json_t *root = json_object(), *arr = json_array();
	for (size_t i = 0; i < n && i < limit; i++)
		json_array_append_new(arr, message_json(&rows[i]));
	set(root, "messages", arr);
	set(root, "next_cursor",
	    n > limit ? json_string(cursor_encode(rq->arena, 'm', rows[limit - 1].id))
	              : json_null());
	ans_json(ans, 200, root);
}

static bool param_int_cursor(const struct params *p, char kind, int64_t *out,
                             struct api_answer *ans)
{
	const char *v = param(p, "cursor");
	char key[24];
	uint64_t x;

	*out = 0;
	if (!v)
		return true;
	if (cursor_decode(v, strlen(v), kind, key, sizeof(key)) != 0 ||
	    util_parse_u64(key, strlen(key), &x) != 0 || x == 0) {
		ans_error(ans, 422, "invalid_cursor", "cursor is not one this API gave", "cursor");
		return false;
	}
	*out = (int64_t)x;
	return true;
}

static void h_review(struct api *a, const struct api_request *rq, struct api_answer *ans)
{
	static const char *const allowed[] = {"state", "reason", "limit", "cursor", NULL};
	struct params p;
	struct store_review_query q;
	struct store_review_item *rows;
	size_t n = 0, budget = API_PAYLOAD_BUDGET;
	const char *v;
	char err[256];
	int rc;

	memset(&q, 0, sizeof(q));
	if (!query_params(rq, allowed, &p, ans) || !param_limit(&p, &q.limit, ans) ||
	    !param_int_cursor(&p, 'r', &q.before_id, ans))
		return;
	v = param(&p, "state");
	if (!v || strcmp(v, "open") == 0) {
		q.state = 0;
	} else if (strcmp(v, "resolved") == 0) {
		q.state = 1;
	} else if (strcmp(v, "all") == 0) {
		q.state = -1;
	} else {
		ans_error(ans, 422, "invalid_parameter", "state must be open, resolved or all",
		          "state");
		return;
	}
	if ((v = param(&p, "reason")) != NULL) {
		if (strcmp(v, "unknown_status") && strcmp(v, "unusable_payload") &&
		    strcmp(v, "final_conflict")) {
			ans_error(
			    ans, 422, "invalid_parameter",
			    "reason must be unknown_status, unusable_payload or final_conflict",
			    "reason");
			return;
		}
		q.reason = v;
	}
	unsigned limit = q.limit;
	q.limit = limit + 1;
	rc = store_list_review(a->st, rq->arena, &q, &rows, &n, err, sizeof(err));
	if (rc != 0) {
		ans_store_error(ans, rc, "review", err);
		return;
	}
	json_t *root = json_object(), *arr = json_array();
	for (size_t i = 0; i < n && i < limit; i++) {
		const struct store_review_item *r = &rows[i];
		json_t *o = json_object();
		set(o, "id", json_integer(r->id));
		set(o, "created_at", jstr(r->created_at));
		set(o, "provider", jstr(r->provider));
		set(o, "reason", jstr(r->reason));
		set(o, "detail", jstr(r->detail));
		set(o, "message_id", jstr(r->message_id));
		set(o, "event_id", r->event_id ? json_integer(r->event_id) : json_null());
		set(o, "raw_status", jstr(r->raw_status));
		set(o, "retries", json_integer(r->retries));
		/* bounded like a timeline's: up to 500 items of up to
		 * max_body_bytes each would otherwise be one answer; the store
		 * read only those that fit (store_list_review()) */
		if (r->raw_payload_omitted)
			set(o, "raw_payload_omitted", json_true());
		else if (r->raw_payload)
			payload_json(a, rq->arena, r->raw_payload, r->raw_payload_len, &budget, o);
		set(o, "resolved_at", jstr(r->resolved_at));
		set(o, "resolved_by", jstr(r->resolved_by));
		set(o, "resolution", jstr(r->resolution));
		json_array_append_new(arr, o);
	}
	set(root, "items", arr);
	set_int_cursor(root, rq->arena, 'r', n > limit, n > limit ? rows[limit - 1].id : 0);
	ans_json(ans, 200, root);
}

static void h_audit(struct api *a, const struct api_request *rq, struct api_answer *ans)
{
	static const char *const allowed[] = {"message_id", "limit", "cursor", NULL};
	struct params p;
	struct store_audit_query q;
	struct store_audit_row *rows;
	size_t n = 0;
	const char *v;
	char err[256];
	int rc;

	memset(&q, 0, sizeof(q));
	if (!query_params(rq, allowed, &p, ans) || !param_limit(&p, &q.limit, ans) ||
	    !param_int_cursor(&p, 'a', &q.before_id, ans))
		return;
	if ((v = param(&p, "message_id")) != NULL) {
		char *id = arena_alloc(rq->arena, 37);
		if (!uuid_of((struct iov){v, strlen(v)}, id)) {
			ans_error(ans, 422, "invalid_parameter", "message_id must be a message id",
			          "message_id");
			return;
		}
		q.message_id = id;
	}
	unsigned limit = q.limit;
	q.limit = limit + 1;
	rc = store_list_audit(a->st, rq->arena, &q, &rows, &n, err, sizeof(err));
	if (rc != 0) {
		ans_store_error(ans, rc, "audit", err);
		return;
	}
	json_t *root = json_object(), *arr = json_array();
	for (size_t i = 0; i < n && i < limit; i++) {
		const struct store_audit_row *r = &rows[i];
		json_t *o = json_object();
		set(o, "id", json_integer(r->id));
		set(o, "at", jstr(r->at));
		set(o, "actor", jstr(r->actor));
		set(o, "actor_role", jstr(r->actor_role));
		set(o, "action", jstr(r->action));
		set(o, "message_id", jstr(r->message_id));
		set(o, "review_id", r->review_id ? json_integer(r->review_id) : json_null());
		set(o, "reason", jstr(r->reason));
		json_array_append_new(arr, o);
	}
	set(root, "entries", arr);
	set_int_cursor(root, rq->arena, 'a', n > limit, n > limit ? rows[limit - 1].id : 0);
	ans_json(ans, 200, root);
}

/* GET /v1/stats: counts per group over messages created in [since, until).
 * Percentiles of callback latency are not computed: SQLite has no
 * percentile aggregate, and ranking every message of a 31-day window on a
 * read connection is not cheap. */
static void h_stats(struct api *a, const struct api_request *rq, struct api_answer *ans)
{
	static const char *const allowed[] = {"since",    "until",   "group_by", "provider",
	                                      "use_case", "country", NULL};
	static const struct {
		const char *name;
		enum store_stats_group g;
	} groups[] = {
	    {"country", STORE_STATS_COUNTRY},
	    {"provider", STORE_STATS_PROVIDER},
	    {"use_case", STORE_STATS_USE_CASE},
	    {"sender_identity", STORE_STATS_SENDER_IDENTITY},
	    {"template_key", STORE_STATS_TEMPLATE_KEY},
	};
	struct params p;
	struct store_stats_query q;
	struct store_stats_row *rows;
	size_t n = 0, gi = 0;
	const char *v;
	char err[256];
	int64_t since_ms, until_ms = rq->now_ms;
	int rc;

	memset(&q, 0, sizeof(q));
	if (!query_params(rq, allowed, &p, ans))
		return;
	if ((v = param(&p, "group_by")) != NULL) {
		for (gi = 0; gi < ARRAY_LEN(groups) && strcmp(v, groups[gi].name) != 0; gi++)
			;
		if (gi == ARRAY_LEN(groups)) {
			ans_error(ans, 422, "invalid_parameter",
			          "group_by must be country, provider, use_case, sender_identity or"
			          " template_key",
			          "group_by");
			return;
		}
	}
	q.group_by = groups[gi].g;
	if (!param_ms(&p, "until", &until_ms, ans))
		return;
	since_ms = until_ms - API_STATS_DEFAULT;
	if (!param_ms(&p, "since", &since_ms, ans) || !time_in_range(since_ms, "since", ans))
		return;
	if (until_ms <= since_ms) {
		ans_error(ans, 422, "invalid_parameter", "until must be later than since",
		          param(&p, "until") ? "until" : "since");
		return;
	}
	if (until_ms - since_ms > API_STATS_SPAN_MS) {
		ans_error(ans, 422, "invalid_parameter", "since to until must span at most 31 days",
		          "since");
		return;
	}
	char *since = arena_alloc(rq->arena, 25), *until = arena_alloc(rq->arena, 25);
	util_rfc3339(since_ms, since);
	util_rfc3339(until_ms, until);
	q.since = since;
	q.until = until;
	q.provider = param(&p, "provider");
	q.use_case = param(&p, "use_case");
	if (!param_country(rq->arena, &p, &q.country, ans))
		return;
	q.limit = API_STATS_GROUPS + 1; /* one more tells whether groups were cut */
	rc = store_stats(a->st, rq->arena, &q, &rows, &n, err, sizeof(err));
	if (rc != 0) {
		ans_store_error(ans, rc, "stats", err);
		return;
	}
	json_t *root = json_object(), *arr = json_array();
	for (size_t i = 0; i < n && i < API_STATS_GROUPS; i++) {
		const struct store_stats_row *r = &rows[i];
		json_t *o = json_object(), *by = json_object();
		set(o, "key", jstr(r->key));
		set(o, "count", json_integer(r->count));
		for (int k = 0; k < ST__COUNT; k++)
			set(by, status_name((enum dlr_status)k), json_integer(r->by_status[k]));
		set(o, "statuses", by);
		set(o, "final", json_integer(r->final_count));
		set(o, "delivery_rate",
		    r->final_count > 0
		        ? json_real((double)r->by_status[ST_DELIVERED] / (double)r->final_count)
		        : json_null());
		json_array_append_new(arr, o);
	}
	set(root, "since", json_string(since));
	set(root, "until", json_string(until));
	set(root, "group_by", json_string(groups[gi].name));
	set(root, "groups", arr);
	set(root, "truncated", json_boolean(n > API_STATS_GROUPS));
	ans_json(ans, 200, root);
}

/* ---- the three steps ---- */

bool api_begin(struct api *a, const struct api_request *rq, struct api_state **state,
               struct api_answer *ans)
{
	struct api_state *s = arena_alloc(rq->arena, sizeof(*s));
	const struct route *rt = NULL;
	char *allow = arena_alloc(rq->arena, 64);
	size_t an = 0;
	bool path_ok = false;

	memset(s, 0, sizeof(*s));
	s->arena = rq->arena;
	*state = s;
	ans_init(ans);
	allow[0] = '\0';
	for (size_t i = 0; i < ARRAY_LEN(routes); i++) {
		struct iov id = {NULL, 0};
		if (!match(routes[i].pattern, rq->path, &id))
			continue;
		path_ok = true;
		an += util_fmt(allow + an, 64 - an, "%s%s", an ? ", " : "", routes[i].method);
		if (strcmp(routes[i].method, rq->method) == 0) {
			rt = &routes[i];
			s->id = id;
		}
	}
	if (!path_ok) {
		ans_error(ans, 404, "not_found", "no such endpoint; see GET /openapi.json", NULL);
		return true;
	}
	if (!rt) {
		ans_error(ans, 405, "method_not_allowed", "this endpoint does not take this method",
		          NULL);
		ans_header(ans, "Allow", allow);
		return true;
	}
	s->route = rt;
	if (rt->role != AUTH_NONE) {
		const char *h = rq->header(rq->hctx, "Authorization");
		if (auth_check(a->auth, h, &s->who) != 0) {
			unsigned dropped;
			if (log_limit_take(&a->denied_log, &dropped))
				LOG_I("api_denied", "route=%s status=401 reason=%s suppressed=%u",
				      rt->name, h ? "unknown_token" : "no_token", dropped);
			ans_error(ans, 401, "unauthorized",
			          "a valid token is needed: Authorization: Bearer <token>", NULL);
			return true;
		}
		memcpy(s->actor, s->who.hash, AUTH_ID_LEN);
		s->actor[AUTH_ID_LEN] = '\0';
		if (!auth_allows(s->who.role, rt->role)) {
			char msg[96];
			LOG_I("api_denied", "route=%s status=403 token=%s role=%s", rt->name,
			      s->actor, auth_role_name(s->who.role));
			util_fmt(msg, sizeof(msg), "this endpoint needs the %s role",
			         auth_role_name(rt->role));
			ans_error(ans, 403, "forbidden", msg, NULL);
			return true;
		}
	}
	if (rq->content_length > 0 && (uint64_t)rq->content_length > rq->max_body) {
		ans_error(ans, 413, "body_too_large", "the body is larger than the server accepts",
		          NULL);
		return true;
	}
	return false;
}

void api_dispatch(struct api *a, struct api_state *s, const struct api_request *rq,
                  struct api_answer *ans)
{
	ans_init(ans);
	switch (s->route->id) {
	case R_OPENAPI:
		h_openapi(ans);
		break;
	case R_MSG_CREATE:
		h_send(a, s, rq, ans);
		break;
	case R_MSG_LIST:
		h_search(a, rq, ans);
		break;
	case R_MSG_GET:
		h_get(a, s, rq, ans);
		break;
	case R_MSG_PATCH:
		h_patch(a, s, rq, ans);
		break;
	case R_MSG_TIMELINE:
		h_timeline(a, s, rq, ans);
		break;
	case R_MSG_REVEAL:
		h_reveal(a, s, rq, ans);
		break;
	case R_REVIEW_LIST:
		h_review(a, rq, ans);
		break;
	case R_REVIEW_RESOLVE:
		h_resolve(a, s, rq, ans);
		break;
	case R_AUDIT_LIST:
		h_audit(a, rq, ans);
		break;
	case R_STATS:
		h_stats(a, rq, ans);
		break;
	}
}

static const char *outcome_name(enum store_outcome o)
{
	static const char *const names[] = {
	    [STORE_DONE] = "done",
	    [STORE_REPLAYED] = "replayed",
	    [STORE_KEY_REUSED] = "key_reused",
	    [STORE_OPTED_OUT] = "opted_out",
	    [STORE_PMID_TAKEN] = "provider_message_id_taken",
	    [STORE_PMID_SET] = "provider_message_id_already_set",
	    [STORE_NOT_FOUND] = "not_found",
	    [STORE_NO_RECIPIENT] = "no_recipient",
	    [STORE_UNDECRYPTABLE] = "undecryptable",
	    [STORE_ALREADY_RESOLVED] = "already_resolved",
	};
	return (unsigned)o < ARRAY_LEN(names) && names[o] ? names[o] : "unknown";
}

/* The stored answer of a send or provider id update. */
static void ans_resp(struct api_answer *ans, unsigned status, const struct store_op *op)
{
	char *b = xmalloc(op->resp_len + 1);
	memcpy(b, op->resp, op->resp_len);
	b[op->resp_len] = '\0';
	ans->status = status;
	ans->body = b;
	ans->len = op->resp_len;
	ans->body_static = false;
}

/* Location: the recorded message. */
static void ans_location(struct api_answer *ans, struct arena *ar, const char *id)
{
	size_t cap = sizeof("/v1/messages/") + strlen(id);
	char *loc = arena_alloc(ar, cap);
	util_fmt(loc, cap, "/v1/messages/%s", id);
	ans_header(ans, "Location", loc);
}

void api_finish(struct api *a, struct api_state *s, const struct commit_item *item,
                struct api_answer *ans)
{
	struct store_op *op = &s->op;

	(void)a;
	ans_init(ans);
	if (item->result != 0) {
		/* A reveal's writer may have decrypted the number before the
		 * batch failed (SQLite decrypts inside the transaction, and the
		 * sync comes after it): it never leaves, and is not kept. */
		explicit_bzero(op->number, sizeof(op->number));
		/* Not "nothing was written": after a failed sync, or a COMMIT
		 * whose outcome PostgreSQL never reported, it may have been.
		 * A retry with the same Idempotency-Key is safe either way. */
		ans_error(ans, 503, "storage_unavailable",
		          "storage failed; the write may or may not have been applied: retry"
		          " (a send: with the same Idempotency-Key)",
		          NULL);
		return;
	}
	if (op->kind == STORE_OP_SEND && op->send.replay_only && op->outcome != STORE_REPLAYED) {
		ans_error(ans, 422, s->refused.code, s->refused.message, s->refused.field);
		return;
	}
	/* what was written to: the message (a send, PATCH, a reveal) or the
	 * review item; ids only, never a number or a reason's text */
	char target[40] = "-";
	if (op->row.id[0])
		util_strlcpy(target, op->row.id, sizeof(target));
	else if (op->message_id)
		util_strlcpy(target, op->message_id, sizeof(target));
	else if (op->review_id > 0)
		util_fmt(target, sizeof(target), "review-%lld", (long long)op->review_id);
	LOG_I("api_write", "route=%s outcome=%s id=%s token=%s role=%s", s->route->name,
	      outcome_name(op->outcome), target, s->actor, auth_role_name(s->who.role));
	switch (op->outcome) {
	case STORE_DONE:
		break;
	case STORE_REPLAYED:
		/* the first answer again, its Location included */
		ans_resp(ans, (unsigned)op->resp_status, op);
		ans_header(ans, "Idempotent-Replayed", "true");
		if (op->row.id[0])
			ans_location(ans, s->arena, op->row.id);
		return;
	case STORE_KEY_REUSED:
		ans_error(ans, 409, "idempotency_key_reused",
		          "this Idempotency-Key was used with a different request",
		          "Idempotency-Key");
		return;
	case STORE_OPTED_OUT:
		ans_error(ans, 409, "recipient_opted_out",
		          "the recipient opted out of messages from this sender (STOP); the use"
		          " case is not exempt",
		          "to");
		return;
	case STORE_PMID_TAKEN:
		ans_error(ans, 409, "provider_message_id_taken",
		          "another recorded send has this provider message id",
		          "provider_message_id");
		return;
	case STORE_PMID_SET:
		ans_error(ans, 409, "provider_message_id_already_set",
		          "the message already has a different provider message id",
		          "provider_message_id");
		return;
	case STORE_NOT_FOUND:
		if (op->kind == STORE_OP_RESOLVE_REVIEW)
			ans_error(ans, 404, "review_item_not_found", "no review item with this id",
			          NULL);
		else
			ans_error(ans, 404, "message_not_found", "no message with this id", NULL);
		return;
	case STORE_NO_RECIPIENT:
		ans_error(ans, 404, "recipient_not_stored",
		          "dlrd holds no number for this message (it was not recorded through"
		          " POST /v1/messages)",
		          NULL);
		return;
	case STORE_UNDECRYPTABLE:
		ans_error(ans, 500, "recipient_undecryptable",
		          "the number's encryption key is not in privacy.encryption_keys", NULL);
		return;
	case STORE_ALREADY_RESOLVED:
		ans_error(ans, 409, "review_item_already_resolved", "the item was resolved before",
		          NULL);
		return;
	}
	switch (op->kind) {
	case STORE_OP_SEND:
		ans_resp(ans, 201, op);
		ans_location(ans, s->arena, op->row.id);
		return;
	case STORE_OP_SET_PROVIDER_ID:
		ans_resp(ans, 200, op);
		return;
	case STORE_OP_REVEAL: {
		json_t *o = json_pack("{s:s, s:s, s:I}", "id", op->message_id, "to", op->number,
		                      "audit_id", (json_int_t)op->audit_id);
		explicit_bzero(op->number, sizeof(op->number));
		ans_json(ans, 200, o);
		return;
	}
	case STORE_OP_RESOLVE_REVIEW: {
		json_t *o = json_object();
		set(o, "id", json_integer(op->review_id));
		set(o, "resolved_at", json_string(op->resolved_at));
		set(o, "resolved_by", json_string(op->actor));
		set(o, "resolution", jstr(op->text));
		set(o, "audit_id", json_integer(op->audit_id));
		ans_json(ans, 200, o);
		return;
	}
	}
}

/* ---- set-up ---- */

int api_check_config(const struct config *cfg, char *err, size_t errlen)
{
	struct auth *auth = NULL;
	int rc = auth_new(config_get(cfg, "api", "tokens"), &auth, err, errlen);
	size_t n;
	char **exempt;

	auth_free(auth);
	if (rc != 0)
		return rc;
	/* each item is compared with a send's use_case, which is a slug: an
	 * item that cannot be one would exempt nothing, without a word */
	exempt = config_list(config_get(cfg, "api", "optout_exempt_use_cases"), &n);
	for (size_t i = 0; i < n && rc == 0; i++) {
		size_t len = strlen(exempt[i]);
		if (len > API_SLUG_MAX || !slug(exempt[i], len)) {
			util_fmt(err, errlen,
			         "config: api.optout_exempt_use_cases: item %zu is not a use case"
			         " (1 to %d letters, digits and _ . : / -)",
			         i + 1, API_SLUG_MAX);
			rc = DLRD_ECONFIG;
		}
	}
	config_list_free(exempt);
	return rc;
}

int api_new(const struct config *cfg, struct commitq *q, const struct pii_keyring *kr,
            struct api **out, char *err, size_t errlen)
{
	struct api *a = xcalloc(1, sizeof(*a));
	int rc;

	a->cfg = cfg;
	a->q = q;
	a->kr = kr;
	a->st = commitq_store(q);
	a->tz = tz_db_new(NULL);
	a->exempt = config_list(config_get(cfg, "api", "optout_exempt_use_cases"), &a->n_exempt);
	if ((rc = auth_new(config_get(cfg, "api", "tokens"), &a->auth, err, errlen)) != 0)
		goto fail;
	if (auth_count(a->auth) == 0)
		LOG_I("api_disabled", "note=\"no api.tokens configured: every /v1/ request gets"
		                      " 401; create one with: dlrd token new --role admin\"");
	else
		LOG_I("api_enabled", "tokens=%zu encryption_key=%s backend_writes=%s",
		      auth_count(a->auth), pii_keyring_current(a->kr),
		      store_api_writes(a->st) ? "yes" : "no");
	*out = a;
	return 0;
fail:
	api_free(a);
	return rc;
}

void api_free(struct api *a)
{
	if (!a)
		return;
	auth_free(a->auth);
	tz_db_free(a->tz);
	config_list_free(a->exempt);
	free(a);
}
