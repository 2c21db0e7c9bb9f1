/* SPDX-License-Identifier: MIT */
/*
 * MessageBird (legacy SMS API) status reports.
 *
 * Transport: MessageBird calls the account's status report URL,
 * <public_url>/webhooks/messagebird/status, with GET and the report in the
 * query string (only for messages sent with a `reference`).  A POST with a
 * form body is read the same way.
 *
 * Signature: header MessageBird-Signature-JWT, a JWT signed with the
 * account's signing key (messagebird-nodejs lib/webhook-signature-jwt.js):
 * HS256, HS384 or HS512 (the SDK accepts all three and its reference
 * vectors use them); claims iss = "MessageBird", a jti, nbf and exp (exp is
 * required: it is what bounds a replay), url_hash = hex SHA-256 of the full
 * URL MessageBird called (public_url + the raw request-target, query
 * included), payload_hash = hex SHA-256 of the body, required when the body
 * is not empty and checked when present.  nbf and exp are checked with
 * tolerance_seconds of clock skew either way (the SDK allows 5 s; dlrd's
 * default is 300).  jti is per request and never used.
 *
 * Mapping: scheduled -> accepted, sent and buffered -> sent, delivered,
 * expired, delivery_failed -> undelivered; refined by statusReason where
 * MessageBird's SMS status reasons say more (refine() below).
 *
 * What MessageBird does not tell: no event id, so dedup is on id, status,
 * statusErrorCode, statusDatetime and the recipient's tag (privacy.h; one
 * message may have several recipients, each reported on its own, and two in
 * the same state in the same second are two events, not a retry).  dlrd
 * before the tag left the recipient out, so a retry of a report stored
 * before the upgrade is stored once more (MessageBird retries only a report
 * that got no 2xx).  The retry policy is undocumented.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"
#include "dlrd_limits.h"
#include "form.h"
#include "jwt.h"
#include "privacy.h"
#include "provider.h"

/* Read-only after init; shared by every HTTP thread. */
struct mbird {
	char **keys;
	size_t n_keys;
	int64_t tolerance_s;
};

static const struct {
	const char *raw;
	enum dlr_status st;
} status_map[] = {
    {"scheduled", ST_ACCEPTED},  {"sent", ST_SENT},       {"buffered", ST_SENT},
    {"delivered", ST_DELIVERED}, {"expired", ST_EXPIRED}, {"delivery_failed", ST_UNDELIVERED},
};

/*
 * statusErrorCode: MessageBird's extended SMS error codes, as far as its
 * "SMS Platform Extended Error Codes" page lists them (partial; unlisted
 * codes classify from the status).  Reasons are our judgment.
 */
static const struct provider_error mbird_errors[] = {
    {"1", ER_INVALID_NUMBER, "EC_UNKNOWN_SUBSCRIBER"},
    {"2", ER_INVALID_NUMBER, "EC_UNKNOWN_BASE_STATION"},
    {"3", ER_INVALID_NUMBER, "EC_UNKOWN_MSC"},
    {"5", ER_INVALID_NUMBER, "EC_UNIDENTIFIED_SUBSCRIBER"},
    {"9", ER_INVALID_NUMBER, "EC_ILLEGAL_SUBSCRIBER"},
    {"10", ER_LANDLINE, "EC_BEARERSERVICE_NOT_PROVISIONED"},
    {"11", ER_LANDLINE, "EC_TELESERVICE_NOT_PROVISIONED"},
    {"12", ER_CARRIER_FILTERED, "EC_CALL_BARRED"},
    {"34", ER_PROVIDER_ERROR, "system failure"},
    {NULL, ER_NONE, NULL},
};

/*
 * statusReason refinements (MessageBird "SMS Status Reasons"); judgment
 * calls:
 * - expired + "DLR not received": sent to the operator, no receipt before
 *   the validity ended: final but inconclusive -> unknown;
 * - delivery_failed + a policy reason ("carrier rejected", "opted out") ->
 *   rejected.
 */
static enum dlr_status refine(enum dlr_status st, const char *reason)
{
	if (!reason)
		return st;
	if (st == ST_EXPIRED && strcasecmp(reason, "DLR not received") == 0)
		return ST_UNKNOWN;
	if (st == ST_UNDELIVERED &&
	    (strcasecmp(reason, "carrier rejected") == 0 || strcasecmp(reason, "opted out") == 0))
		return ST_REJECTED;
	return st;
}

static const struct config_key mbird_keys[] = {
    {"signing_keys", "comma-separated signing keys (Developers > API access); a request "
                     "passes if any verifies"},
    {"tolerance_seconds", "clock skew allowed on the token's nbf and exp (default 300)"},
    {NULL, NULL},
};

static void mbird_fini(void *state)
{
	struct mbird *m = state;
	if (!m)
		return;
	config_list_free(m->keys);
	free(m);
}

static int mbird_init(const struct config *cfg, void **state, char *err, size_t errlen)
{
	const char *tol = config_get(cfg, "messagebird", "tolerance_seconds");
	unsigned long tol_s = 300;
	size_t n;
	char **list;

	*state = NULL;
	/* Not provider_config_tolerance(): here the tolerance is clock skew
	 * added to the token's own nbf..exp window, not the whole replay
	 * window, so 0 (no skew allowed) is a valid setting.  Checked even
	 * without keys: a bad value stops start-up either way. */
	if (tol && config_parse_uint("messagebird", "tolerance_seconds", tol, 0,
	                             PROVIDER_TOLERANCE_MAX, &tol_s, err, errlen) != 0)
		return DLRD_ECONFIG;
	if (provider_config_list(cfg, "messagebird", "signing_keys", "keys", 0, &list, &n, err,
	                         errlen) != 0)
		return DLRD_ECONFIG;
	if (n == 0)
		return 0;
	struct mbird *m = xcalloc(1, sizeof(*m));
	m->keys = list;
	m->n_keys = n;
	m->tolerance_s = (int64_t)tol_s;
	*state = m;
	return 0;
}

struct mbird_req {
	struct form params;
};

/* The claims after the signature: issuer, jti, time window, URL and body
 * hashes.  Returns 0, DLRD_EAUTH or DLRD_ESTALE. */
static int check_claims(const struct mbird *m, const json_t *claims, struct provider_request *req,
                        char *err, size_t errlen)
{
	const json_t *iss = json_object_get(claims, "iss"), *jti = json_object_get(claims, "jti");
	int64_t exp, nbf, iat, now_s = req->now_ms / 1000;
	size_t ul = strlen(req->public_url);
	char *url;

	if (!json_is_string(iss) || strcmp(json_string_value(iss), "MessageBird") != 0) {
		util_fmt(err, errlen, "token issuer is not MessageBird");
		return DLRD_EAUTH;
	}
	if (!json_is_string(jti) || json_string_length(jti) == 0) {
		util_fmt(err, errlen, "token has no jti");
		return DLRD_EAUTH;
	}
	if (jwt_claim_time(claims, "exp", &exp) != 0) {
		util_fmt(err, errlen, "token has no valid exp");
		return DLRD_EAUTH;
	}
	if (now_s > exp + m->tolerance_s) {
		util_fmt(err, errlen, "token expired");
		return DLRD_ESTALE;
	}
	switch (jwt_claim_time(claims, "nbf", &nbf)) {
	case 0:
		if (now_s < nbf - m->tolerance_s) {
			util_fmt(err, errlen, "token not valid yet (nbf)");
			return DLRD_ESTALE;
		}
		break;
	case DLRD_ENOTFOUND:
		break;
	default:
		util_fmt(err, errlen, "token nbf malformed");
		return DLRD_EAUTH;
	}
	switch (jwt_claim_time(claims, "iat", &iat)) {
	case 0:
		if (now_s < iat - m->tolerance_s) {
			util_fmt(err, errlen, "token issued in the future (iat)");
			return DLRD_ESTALE;
		}
		break;
	case DLRD_ENOTFOUND:
		break;
	default:
		util_fmt(err, errlen, "token iat malformed");
		return DLRD_EAUTH;
	}
	/* url_hash over the URL MessageBird requested: our public URL, never
	 * the Host header, plus the raw request-target */
	url = arena_alloc(req->arena, ul + req->target.n + 1);
	memcpy(url, req->public_url, ul);
	memcpy(url + ul, req->target.p, req->target.n);
	if (!jwt_claim_sha256(claims, "url_hash", url, ul + req->target.n)) {
		util_fmt(err, errlen, "url_hash missing or does not match the URL");
		return DLRD_EAUTH;
	}
	if (json_object_get(claims, "payload_hash")) {
		if (!jwt_claim_sha256(claims, "payload_hash", req->body.p, req->body.n)) {
			util_fmt(err, errlen, "payload_hash does not match the body");
			return DLRD_EAUTH;
		}
	} else if (req->body.n) {
		util_fmt(err, errlen, "body present but no payload_hash");
		return DLRD_EAUTH;
	}
	return 0;
}

static int mbird_authenticate(const void *state, struct provider_request *req, char *err,
                              size_t errlen)
{
	const struct mbird *m = state;
	struct mbird_req *mr = arena_alloc(req->arena, sizeof(*mr));
	const char *tok;
	json_t *claims = NULL;
	struct iov src;
	int rc;

	memset(mr, 0, sizeof(*mr));
	req->scratch = mr;
	if (strcmp(req->method, "GET") == 0) {
		src = req->query;
	} else if (strcmp(req->method, "POST") == 0) {
		if (strcmp(req->content_type, "application/x-www-form-urlencoded") != 0) {
			util_fmt(err, errlen,
			         "content type must be "
			         "application/x-www-form-urlencoded");
			return DLRD_EUNSUPP;
		}
		src = req->body;
	} else {
		util_fmt(err, errlen, "status reports are GET");
		return DLRD_EMETHOD;
	}
	tok = req->header(req->hctx, "MessageBird-Signature-JWT");
	if (!tok || !*tok) {
		util_fmt(err, errlen, "missing MessageBird-Signature-JWT");
		return DLRD_EAUTH;
	}
	if (jwt_verify(tok, strlen(tok), JWT_HS256 | JWT_HS384 | JWT_HS512, m->keys, m->n_keys,
	               &claims, err, errlen) != 0)
		return DLRD_EAUTH;
	rc = check_claims(m, claims, req, err, errlen);
	json_decref(claims);
	if (rc != 0)
		return rc;
	if (form_decode(req->arena, src.p, src.n, LIM_FORM_FIELDS, &mr->params, err, errlen) != 0)
		return DLRD_EINVAL;
	return 0;
}

static const struct form_field *field(const struct form *f, const char *name)
{
	const struct form_field *x = form_get(f, name);
	return x && x->value_len ? x : NULL;
}

/* MessageBird ids are 32 hex digits; lower-cased.  Other ids as sent: not
 * provider_hex_id(), which would also lower-case an id with a '-'. */
static const char *canonical_id(struct arena *a, const char *p, size_t n)
{
	char *s = (char *)provider_text(a, p, n, LIM_ID_BYTES);
	bool hex = s != NULL;

	for (size_t i = 0; hex && i < n; i++)
		hex = strchr("0123456789abcdefABCDEF", s[i]) != NULL;
	for (size_t i = 0; hex && i < n; i++)
		if (s[i] >= 'A' && s[i] <= 'F')
			s[i] = (char)(s[i] + 32);
	return s;
}

/* statusDatetime is RFC 3339 ("2016-05-03T08:58:10+00:00").  When the
 * '+' of the offset was not percent-encoded it arrives decoded as a space
 * (the SDK's own verifier works around the same thing): put it back. */
static int64_t parse_datetime(struct arena *a, const struct form_field *x)
{
	int64_t ms;
	char *s;

	if (!x)
		return -1;
	if (util_parse_rfc3339(x->value, x->value_len, &ms) == 0)
		return ms;
	if (x->value_len < 6 || x->value[x->value_len - 6] != ' ')
		return -1;
	s = arena_strndup(a, x->value, x->value_len);
	s[x->value_len - 6] = '+';
	return util_parse_rfc3339(s, x->value_len, &ms) == 0 ? ms : -1;
}

static int mbird_parse(const void *state, struct provider_request *req, struct provider_result *res,
                       char *err, size_t errlen)
{
	const struct mbird_req *mr = req->scratch;
	const struct form *f = &mr->params;
	struct arena *a = req->arena;
	struct dlr_event *ev = provider_events_new(a, "messagebird", 1);
	const struct form_field *id = field(f, "id"), *st = field(f, "status"),
	                        *ec = field(f, "statusErrorCode"),
	                        *reason = field(f, "statusReason"), *to = field(f, "recipient"),
	                        *from = field(f, "originator");

	(void)state;
	(void)err;
	(void)errlen;
	res->events = ev;
	res->n_events = 1;

	ev->provider_message_id = id ? canonical_id(a, id->value, id->value_len) : NULL;
	ev->raw_status = st ? provider_text(a, st->value, st->value_len, LIM_STATUS_BYTES) : NULL;
	if (!ev->provider_message_id || !ev->raw_status) {
		provider_unusable(ev,
		                  !ev->provider_message_id ? "no usable id" : "no usable status");
		return 0;
	}
	ev->kind = EV_STATUS;
	ev->status = ST_UNKNOWN;
	ev->review = REVIEW_UNKNOWN_STATUS;
	ev->review_detail = "status not in MessageBird's vocabulary";
	for (size_t i = 0; i < ARRAY_LEN(status_map); i++) {
		if (strcmp(ev->raw_status, status_map[i].raw) == 0) {
			ev->status = status_map[i].st;
			ev->review = REVIEW_NONE;
			ev->review_detail = NULL;
			break;
		}
	}
	if (ev->review == REVIEW_NONE)
		ev->status =
		    refine(ev->status, reason ? provider_text(a, reason->value, reason->value_len,
		                                              LIM_STATUS_BYTES)
		                              : NULL);
	if (ec)
		ev->error_code = provider_text(a, ec->value, ec->value_len, LIM_STATUS_BYTES);
	ev->occurred_ms = parse_datetime(a, field(f, "statusDatetime"));
	if (to) {
		char *tag = arena_alloc(a, PRIVACY_TAG_LEN + 1);
		privacy_tag(to->value, to->value_len, tag);
		ev->dedup_recipient = tag;
		provider_set_recipient(ev, a, to->value, to->value_len);
	}
	if (from)
		ev->sender_identity = provider_text(a, from->value, from->value_len, LIM_ID_BYTES);
	event_finish(ev);
	return 0;
}

const struct provider provider_messagebird = {
    .name = "messagebird",
    .hooks = 1u << HOOK_STATUS,
    .get_hooks = 1u << HOOK_STATUS,
    .keys = mbird_keys,
    .errors = mbird_errors,
    .canonical_id = canonical_id,
    .init = mbird_init,
    .fini = mbird_fini,
    .authenticate = mbird_authenticate,
    .parse = mbird_parse,
};
