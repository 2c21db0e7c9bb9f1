/* SPDX-License-Identifier: MIT */
/*
 * dlrd's own event format, for in-house gateways and SMPP bridges that have
 * no webhook format of their own.  One JSON event per request, signed the
 * Standard Webhooks way (standardwebhooks.com, spec v1.0.0):
 *
 *   POST /webhooks/generic/status   (or /webhooks/generic/inbound; both
 *                                    accept both types, the type decides)
 *   Content-Type: application/json
 *   webhook-id: <unique per event, stable across retries>
 *   webhook-timestamp: <Unix seconds of this attempt>
 *   webhook-signature: v1,<base64 HMAC-SHA256(key, id "." timestamp "." body)>
 *
 *   {"type": "message.status", "timestamp": "<RFC 3339>",
 *    "data": {"message_id": "...", "status": "<a dlrd status>",
 *             "raw_status": "...", "error_code": "...",
 *             "occurred_at": "<RFC 3339>", "to": "+...", "from": "..."}}
 *
 *   {"type": "message.inbound", "timestamp": "<RFC 3339>",
 *    "data": {"message_id": "...", "from": "+...", "to": "...",
 *             "body": "...", "occurred_at": "<RFC 3339>"}}
 *
 * The key is the secret's base64 after "whsec_"; webhook-signature may list
 * several space-separated "v1,<sig>" entries (key rotation on the sender's
 * side) and [generic] secrets several secrets (rotation on ours): a request
 * passes when any pair matches.  Other signature versions (v1a) are
 * skipped.  webhook-timestamp must be within tolerance_seconds (default 300)
 * of our clock in either direction.
 *
 * Validation is strict, since the sender is code the operator controls: a
 * missing or mistyped field is a 400 whose message names the field.  A
 * status that is a string but not one of dlrd's names is stored as unknown
 * and goes to the review queue.  Unknown extra fields are accepted (the raw
 * body keeps them).  The webhook-id is the event id: a retry with the same
 * id is a duplicate.
 */
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "dlrd_limits.h"
#include "json.h"
#include "provider.h"

#define GEN_TOLERANCE_DEFAULT 300u
#define GEN_KEY_MIN           16u /* bytes; the spec asks for 24..64 */
#define GEN_KEY_MAX           256u
#define GEN_SIG_ENTRIES_MAX   16u /* "v1,..." entries looked at per request */
#define GEN_SIG_B64_LEN       44u /* base64 of 32 bytes */
#define GEN_TS_DIGITS_MAX     12u

struct gen_key {
	uint8_t k[GEN_KEY_MAX];
	size_t n;
};

/* Read-only after init; any thread. */
struct generic {
	struct gen_key *keys;
	size_t n_keys;
	int64_t tolerance_ms;
};

static const struct config_key generic_keys[] = {
    {"secrets", "comma-separated Standard Webhooks secrets (whsec_<base64>); any may verify"},
    {"tolerance_seconds", "accepted clock difference for webhook-timestamp (default 300)"},
    {NULL, NULL},
};

static void generic_fini(void *state)
{
	struct generic *g = state;
	if (!g)
		return;
	OPENSSL_cleanse(g->keys, g->n_keys * sizeof(*g->keys));
	free(g->keys);
	free(g);
}

static int generic_init(const struct config *cfg, void **state, char *err, size_t errlen)
{
	int64_t tol_s;
	struct generic *g = NULL;
	char **list = NULL;
	size_t n;
	int rc;

	*state = NULL;
	/* checked even without secrets: a bad value stops start-up either way */
	rc = provider_config_tolerance(cfg, "generic", GEN_TOLERANCE_DEFAULT, &tol_s, err, errlen);
	if (rc != 0)
		return rc;
	rc = provider_config_list(cfg, "generic", "secrets", "secrets", 0, &list, &n, err, errlen);
	if (rc != 0 || n == 0)
		return rc;
	g = xcalloc(1, sizeof(*g));
	g->keys = xcalloc(n, sizeof(*g->keys));
	g->tolerance_ms = tol_s * 1000;
	for (size_t i = 0; i < n; i++) {
		const char *s = list[i];
		size_t sl = strlen(s);
		uint8_t *buf;
		size_t klen = 0;
		int drc;

		if (sl <= 6 || memcmp(s, "whsec_", 6) != 0) {
			util_fmt(err, errlen,
			         "config: generic.secrets: item %zu does not start with whsec_",
			         i + 1);
			rc = DLRD_ECONFIG;
			goto out;
		}
		buf = xmalloc(3 * ((sl - 6) / 4) + 3);
		drc = crypto_b64_decode(s + 6, sl - 6, buf, &klen);
		if (drc == 0 && klen >= GEN_KEY_MIN && klen <= GEN_KEY_MAX)
			memcpy(g->keys[i].k, buf, klen);
		OPENSSL_cleanse(buf, 3 * ((sl - 6) / 4) + 3);
		free(buf);
		if (drc != 0 || klen < GEN_KEY_MIN || klen > GEN_KEY_MAX) {
			util_fmt(err, errlen,
			         "config: generic.secrets: item %zu is not whsec_ followed by the "
			         "base64 of %u to %u bytes",
			         i + 1, GEN_KEY_MIN, GEN_KEY_MAX);
			rc = DLRD_ECONFIG;
			goto out;
		}
		g->keys[i].n = klen;
		g->n_keys++;
	}
	*state = g;
	g = NULL;
out:
	generic_fini(g);
	config_list_free(list);
	return rc;
}

/* A header value as a view; empty when absent. */
static struct iov hdr(const struct provider_request *req, const char *name)
{
	const char *v = req->header(req->hctx, name);
	return v ? (struct iov){v, strlen(v)} : (struct iov){"", 0};
}

/* The webhook-id: 1..LIM_ID_BYTES printable ASCII, no '.' (the spec
 * forbids it, since '.' separates the signed parts). */
static bool id_ok(struct iov id)
{
	if (id.n == 0 || id.n > LIM_ID_BYTES)
		return false;
	for (size_t i = 0; i < id.n; i++) {
		unsigned char c = (unsigned char)id.p[i];
		if (c <= 0x20 || c >= 0x7f || c == '.')
			return false;
	}
	return true;
}

static int generic_authenticate(const void *state, struct provider_request *req, char *err,
                                size_t errlen)
{
	const struct generic *g = state;
	struct iov id, ts, sig;
	uint64_t ts_s;
	int64_t ts_ms, skew;
	char expect[LIM_SECRETS][GEN_SIG_B64_LEN + 1];
	bool ok = false;
	size_t entries = 0;

	if (strcmp(req->method, "POST") != 0) {
		util_fmt(err, errlen, "generic events are POST");
		return DLRD_EMETHOD;
	}
	if (strcmp(req->content_type, "application/json") != 0) {
		util_fmt(err, errlen, "content type must be application/json");
		return DLRD_EUNSUPP;
	}
	id = hdr(req, "webhook-id");
	ts = hdr(req, "webhook-timestamp");
	sig = hdr(req, "webhook-signature");
	if (!id.n || !ts.n || !sig.n) {
		util_fmt(err, errlen, "missing webhook-id, webhook-timestamp or webhook-signature");
		return DLRD_EAUTH;
	}
	if (!id_ok(id)) {
		util_fmt(err, errlen, "malformed webhook-id");
		return DLRD_EAUTH;
	}
	if (ts.n > GEN_TS_DIGITS_MAX || util_parse_u64(ts.p, ts.n, &ts_s) != 0) {
		util_fmt(err, errlen, "malformed webhook-timestamp");
		return DLRD_EAUTH;
	}
	ts_ms = (int64_t)ts_s * 1000;
	skew = req->now_ms - ts_ms;
	if (skew > g->tolerance_ms || -skew > g->tolerance_ms) {
		util_fmt(err, errlen, "webhook-timestamp outside the tolerance");
		return DLRD_ESTALE;
	}

	/* One MAC per secret, then every v1 entry against each. */
	for (size_t k = 0; k < g->n_keys; k++) {
		const struct crypto_piece pieces[] = {
		    {id.p, id.n}, {".", 1}, {ts.p, ts.n}, {".", 1}, {req->body.p, req->body.n},
		};
		uint8_t mac[CRYPTO_SHA256_LEN];
		crypto_hmac(CRYPTO_SHA256, g->keys[k].k, g->keys[k].n, pieces, ARRAY_LEN(pieces),
		            mac);
		crypto_b64_encode(mac, sizeof(mac), expect[k]);
	}
	for (const char *p = sig.p, *end = sig.p + sig.n;
	     p < end && entries < GEN_SIG_ENTRIES_MAX;) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		const char *e = sp ? sp : end;
		size_t n = (size_t)(e - p);
		if (n > 3 && memcmp(p, "v1,", 3) == 0) {
			entries++;
			for (size_t k = 0; k < g->n_keys; k++)
				ok |= crypto_ct_eq(expect[k], GEN_SIG_B64_LEN, p + 3, n - 3);
		}
		p = e + 1;
	}
	OPENSSL_cleanse(expect, sizeof(expect));
	if (!ok) {
		util_fmt(err, errlen, entries ? "signature mismatch" : "no v1 signature");
		return DLRD_EAUTH;
	}
	req->scratch = arena_strndup(req->arena, id.p, id.n); /* checked by id_ok() */
	return 0;
}

/* A field of data: a string, or absent (NULL) when optional.  Sets err and
 * returns DLRD_EINVAL when it is present with another type, or required and
 * absent. */
static int str_field(json_t *obj, const char *name, bool required, const char **out, size_t *len,
                     char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, name);

	*out = NULL;
	*len = 0;
	if (!v || json_is_null(v)) {
		if (!required)
			return 0;
		util_fmt(err, errlen, "data.%s: required", name);
		return DLRD_EINVAL;
	}
	if (!json_is_string(v)) {
		util_fmt(err, errlen, "data.%s: must be a string", name);
		return DLRD_EINVAL;
	}
	*out = json_string_value(v);
	*len = json_string_length(v);
	return 0;
}

/* A short text field (id, status, number): 1..max bytes, no control
 * bytes, copied to the arena. */
static int text_field(struct arena *a, json_t *obj, const char *name, bool required, size_t max,
                      const char **out, char *err, size_t errlen)
{
	const char *s;
	size_t n;

	*out = NULL;
	if (str_field(obj, name, required, &s, &n, err, errlen) != 0)
		return DLRD_EINVAL;
	if (!s)
		return 0;
	*out = provider_text(a, s, n, max);
	if (!*out) {
		util_fmt(err, errlen, "data.%s: must be 1 to %zu bytes without control characters",
		         name, max);
		return DLRD_EINVAL;
	}
	return 0;
}

/* data.occurred_at: RFC 3339, optional; -1 when absent. */
static int time_field(json_t *obj, int64_t *ms, char *err, size_t errlen)
{
	const char *s;
	size_t n;

	*ms = -1;
	if (str_field(obj, "occurred_at", false, &s, &n, err, errlen) != 0)
		return DLRD_EINVAL;
	if (s && util_parse_rfc3339(s, n, ms) != 0) {
		util_fmt(err, errlen, "data.occurred_at: not an RFC 3339 time");
		return DLRD_EINVAL;
	}
	return 0;
}

static int parse_status(struct provider_request *req, json_t *data, struct dlr_event *ev, char *err,
                        size_t errlen)
{
	struct arena *a = req->arena;
	const char *status, *raw, *to;
	json_t *ec = json_object_get(data, "error_code");

	if (text_field(a, data, "message_id", true, LIM_ID_BYTES, &ev->provider_message_id, err,
	               errlen) ||
	    text_field(a, data, "status", true, LIM_STATUS_BYTES, &status, err, errlen) ||
	    text_field(a, data, "raw_status", false, LIM_STATUS_BYTES, &raw, err, errlen) ||
	    text_field(a, data, "to", false, LIM_ID_BYTES, &to, err, errlen) ||
	    text_field(a, data, "from", false, LIM_ID_BYTES, &ev->sender_identity, err, errlen) ||
	    time_field(data, &ev->occurred_ms, err, errlen))
		return DLRD_EINVAL;
	/* error_code: a string, or an integer for gateways that pass SMPP or
	 * GSM codes through as numbers. */
	if (json_is_integer(ec)) {
		ev->error_code = jsonx_text(a, ec, LIM_STATUS_BYTES); /* digits: always fit */
	} else if (ec && !json_is_null(ec) && !json_is_string(ec)) {
		util_fmt(err, errlen, "data.error_code: must be a string or an integer");
		return DLRD_EINVAL;
	} else if (text_field(a, data, "error_code", false, LIM_STATUS_BYTES, &ev->error_code, err,
	                      errlen)) {
		return DLRD_EINVAL;
	}
	ev->kind = EV_STATUS;
	ev->raw_status = raw ? raw : status;
	if (status_parse(status, strlen(status), &ev->status) != 0) {
		ev->status = ST_UNKNOWN;
		ev->review = REVIEW_UNKNOWN_STATUS;
		ev->review_detail = "data.status is not one of dlrd's statuses";
	}
	if (to)
		provider_set_recipient(ev, a, to, strlen(to));
	return 0;
}

static int parse_inbound(struct provider_request *req, json_t *data, struct dlr_event *ev,
                         char *err, size_t errlen)
{
	struct arena *a = req->arena;
	const char *from, *body;
	size_t body_len;

	if (text_field(a, data, "message_id", true, LIM_ID_BYTES, &ev->provider_message_id, err,
	               errlen) ||
	    text_field(a, data, "from", true, LIM_ID_BYTES, &from, err, errlen) ||
	    text_field(a, data, "to", false, LIM_ID_BYTES, &ev->sender_identity, err, errlen) ||
	    str_field(data, "body", true, &body, &body_len, err, errlen) ||
	    time_field(data, &ev->occurred_ms, err, errlen))
		return DLRD_EINVAL;
	ev->kind = EV_INBOUND;
	ev->status = ST_UNKNOWN;
	ev->text = arena_strndup(a, body, body_len);
	ev->text_len = body_len;
	provider_set_recipient(ev, a, from, strlen(from));
	return 0;
}

static int generic_parse(const void *state, struct provider_request *req,
                         struct provider_result *res, char *err, size_t errlen)
{
	struct dlr_event *ev = provider_events_new(req->arena, "generic", 1);
	json_t *root, *type, *ts, *data;
	const char *t;
	int64_t ms;
	int rc = DLRD_EINVAL;

	(void)state;
	ev->provider_event_id = req->scratch; /* the webhook-id */

	root = jsonx_load_object(req->body.p, req->body.n, err, errlen);
	if (!root)
		goto out;
	type = json_object_get(root, "type");
	ts = json_object_get(root, "timestamp");
	data = json_object_get(root, "data");
	if (!type || !json_is_string(type)) {
		util_fmt(err, errlen, "type: required string");
		goto out;
	}
	if (!ts || !json_is_string(ts) ||
	    util_parse_rfc3339(json_string_value(ts), json_string_length(ts), &ms) != 0) {
		util_fmt(err, errlen, "timestamp: required RFC 3339 time");
		goto out;
	}
	if (!data || !json_is_object(data)) {
		util_fmt(err, errlen, "data: required object");
		goto out;
	}
	t = json_string_value(type);
	if (strcmp(t, "message.status") == 0)
		rc = parse_status(req, data, ev, err, errlen);
	else if (strcmp(t, "message.inbound") == 0)
		rc = parse_inbound(req, data, ev, err, errlen);
	else
		util_fmt(err, errlen, "type: must be message.status or message.inbound");
	if (rc != 0)
		goto out;
	event_finish(ev);
	res->events = ev;
	res->n_events = 1;
out:
	json_decref(root);
	return rc;
}

const struct provider provider_generic = {
    .name = "generic",
    .hooks = (1u << HOOK_STATUS) | (1u << HOOK_INBOUND),
    .keys = generic_keys,
    .errors = NULL,
    .init = generic_init,
    .fini = generic_fini,
    .authenticate = generic_authenticate,
    .parse = generic_parse,
};
