/* SPDX-License-Identifier: MIT */
/*
 * Vonage Messages API: message status and inbound message webhooks (SMS,
 * MMS, RCS, WhatsApp, Viber, Messenger alike).
 *
 * Transport: POST application/json to the Vonage application's Status URL
 * (<public_url>/webhooks/vonage-messages/status) and Inbound URL
 * (<public_url>/webhooks/vonage-messages/inbound).  Either path takes both
 * kinds and routes by payload: a status has `status`, an inbound message
 * has `message_type`/`text` and no `status`.
 *
 * Signature (Vonage "signed webhooks", on by default for this API):
 * `Authorization: Bearer <JWT>`, HS256 under the account's signature secret
 * (jwt.c; several secrets for rotation or several accounts).  Claims
 * checked: `iat` within tolerance_seconds of our clock either way (the
 * token has no `exp`), and `payload_hash`, the hex SHA-256 of the body,
 * required whenever the body is not empty.  Vonage does not say whether it
 * hashes the raw bytes or a compact re-serialization; the raw body is
 * tried first, then jansson's compact serialization of the parsed body
 * (a judgment call, see providers.md 3.3).  `jti` is per attempt and never
 * used.
 *
 * Status mapping: submitted -> sent, delivered -> delivered, read ->
 * delivered with the read flag, undeliverable -> failed (Vonage could not
 * reach the channel provider), rejected -> refined by the error code
 * (refine_rejected below).  The error code is read from error.code (2021
 * schema), else error.title or the "#NNNN" of error.type (current RFC
 * 7807-like schema).
 *
 * What Vonage does not tell: no event id (dedup on message_uuid, status,
 * error code and the event `timestamp`); the SMS sub-objects' names
 * (destination.network_code, sms.count_total) are not stable in the docs,
 * so they are only kept in the raw payload.  Vonage may, on a rare internal
 * error, send an unsigned callback: dlrd answers 401 and Vonage retries
 * (its docs suggest a 5xx; a 401 is retried the same way per its retry
 * article, which retries every non-2xx).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"
#include "dlrd_limits.h"
#include "json.h"
#include "jwt.h"
#include "provider.h"

/* Read-only after init; shared by every HTTP thread. */
struct vmsg {
	char **secrets;
	size_t n_secrets;
	int64_t tolerance_s;
};

static const struct {
	const char *raw;
	enum dlr_status st;
	bool read;
} status_map[] = {
    {"submitted", ST_SENT, false},
    {"delivered", ST_DELIVERED, false},
    /* a read receipt comes after delivery: delivered plus the flag */
    {"read", ST_DELIVERED, true},
    /* "unable to connect to the messaging provider": nothing left Vonage */
    {"undeliverable", ST_FAILED, false},
    {"rejected", ST_REJECTED, false},
};

/*
 * Messages API error codes (Nexmo/api-specification messages-olympus.yml
 * x-errors; titles as Vonage words them).  The reasons are our judgment of
 * what support should say.
 */
static const struct provider_error vmsg_errors[] = {
    {"1000", ER_RATE_LIMITED, "Throttled"},
    {"1010", ER_UNKNOWN, "Missing params"},
    {"1020", ER_UNKNOWN, "Invalid params"},
    {"1021", ER_UNKNOWN, "Invalid tag"},
    {"1022", ER_UNKNOWN, "Invalid template"},
    {"1030", ER_PROVIDER_ERROR, "Internal error"},
    {"1040", ER_INVALID_NUMBER, "Invalid message"},
    {"1050", ER_SPAM_BLOCKED, "Number barred"},
    {"1060", ER_OUT_OF_CREDIT, "Partner account barred"},
    {"1070", ER_OUT_OF_CREDIT, "Partner quota exceeded"},
    {"1080", ER_UNKNOWN, "Account not enabled for REST"},
    {"1090", ER_UNKNOWN, "Message too long"},
    {"1100", ER_PROVIDER_ERROR, "Communication Failed"},
    {"1120", ER_SENDER_NOT_REGISTERED, "Illegal Sender Address - rejected"},
    {"1130", ER_UNKNOWN, "Invalid TTL"},
    {"1140", ER_UNKNOWN, "Facility not allowed"},
    {"1150", ER_UNKNOWN, "Invalid Message class"},
    {"1160", ER_SENDER_NOT_REGISTERED, "Non White-listed Destination"},
    {"1170", ER_INVALID_NUMBER, "Invalid or Missing Msisdn Param"},
    {"1180", ER_UNREACHABLE, "Absent Subscriber Temporary"},
    {"1190", ER_INVALID_NUMBER, "Absent Subscriber Permanent"},
    {"1200", ER_PROVIDER_ERROR, "Portability Error"},
    {"1210", ER_CARRIER_FILTERED, "Anti-Spam Rejection"},
    {"1220", ER_UNREACHABLE, "Handset Busy"},
    {"1230", ER_PROVIDER_ERROR, "Network Error"},
    {"1240", ER_OPTED_OUT, "Illegal Number"},
    {"1241", ER_RATE_LIMITED, "Too many send requests"},
    {"1250", ER_PROVIDER_ERROR, "Unroutable"},
    {"1260", ER_UNREACHABLE, "Destination unreachable"},
    {"1270", ER_CARRIER_FILTERED, "Subscriber Age Restriction"},
    {"1280", ER_CARRIER_FILTERED, "Number Blocked by Carrier"},
    {"1290", ER_UNREACHABLE, "Pre-Paid - Insufficient funds"},
    {"1300", ER_INVALID_NUMBER, "Not part of the provider network"},
    {"1310", ER_LANDLINE, "Not suitable device"},
    {"1320", ER_UNKNOWN, "Message already sent"},
    {"1330", ER_UNKNOWN, "Unknown"},
    {"1331", ER_PROVIDER_ERROR, "Provider error"},
    {"1340", ER_SPAM_BLOCKED, "Outside of the allowed window"},
    {"1350", ER_UNKNOWN, "Phone matching fee not paid"},
    {"1360", ER_EXPIRED, "TTL was activated"},
    {"1370", ER_UNKNOWN, "Expired access Token"},
    {"1380", ER_UNKNOWN, "Invalid resource"},
    {"1381", ER_UNKNOWN, "Resource size is too large"},
    {"1382", ER_UNKNOWN, "Resource type is invalid"},
    {NULL, ER_NONE, NULL},
};

/*
 * `rejected` covers everything from a TTL expiry to a handset that was
 * switched off (Vonage's SMS guide: expired -> rejected with 1360, unknown
 * -> 1330, failed -> rejected).  Refined by code; judgment calls:
 * - 1360 (TTL) -> expired; 1330 (unknown carrier error) -> unknown;
 * - carrier/handset outcomes of an attempted delivery -> undelivered;
 * - Vonage or channel-provider failures -> failed;
 * - everything else (validation, policy, opt-out, barring, filtering, an
 *   unknown code or none) stays rejected.
 */
static enum dlr_status refine_rejected(const char *code)
{
	static const char *const undelivered[] = {"1180", "1190", "1200", "1220",
	                                          "1230", "1260", "1290", "1310"};
	static const char *const failed[] = {"1030", "1100", "1331"};

	if (!code)
		return ST_REJECTED;
	if (strcmp(code, "1360") == 0)
		return ST_EXPIRED;
	if (strcmp(code, "1330") == 0)
		return ST_UNKNOWN;
	for (size_t i = 0; i < ARRAY_LEN(undelivered); i++)
		if (strcmp(code, undelivered[i]) == 0)
			return ST_UNDELIVERED;
	for (size_t i = 0; i < ARRAY_LEN(failed); i++)
		if (strcmp(code, failed[i]) == 0)
			return ST_FAILED;
	return ST_REJECTED;
}

static const struct config_key vmsg_keys[] = {
    {"signature_secrets", "comma-separated signature secrets (the JWT HS256 keys); a "
                          "request passes if any verifies"},
    {"tolerance_seconds", "how far the token's iat may be from our clock (default 300)"},
    {NULL, NULL},
};

static void vmsg_fini(void *state)
{
	struct vmsg *v = state;
	if (!v)
		return;
	config_list_free(v->secrets);
	free(v);
}

static int vmsg_init(const struct config *cfg, void **state, char *err, size_t errlen)
{
	int64_t tol_s;
	size_t n;
	char **list;

	*state = NULL;
	/* checked even without secrets: a bad value stops start-up either way */
	if (provider_config_tolerance(cfg, "vonage-messages", 300, &tol_s, err, errlen) != 0)
		return DLRD_ECONFIG;
	if (provider_config_list(cfg, "vonage-messages", "signature_secrets", "secrets", 0, &list,
	                         &n, err, errlen) != 0)
		return DLRD_ECONFIG;
	if (n == 0)
		return 0;
	struct vmsg *v = xcalloc(1, sizeof(*v));
	v->secrets = list;
	v->n_secrets = n;
	v->tolerance_s = tol_s;
	*state = v;
	return 0;
}

/* Scratch between authenticate() and parse(): the parsed body.  The
 * reference is dropped in parse() (or by the arena's owner never: parse()
 * always runs after a successful authenticate()). */
struct vmsg_req {
	json_t *body;
};

/* payload_hash over the compact re-serialization of the parsed body. */
static bool hash_matches_compact(const json_t *claims, const json_t *body)
{
	char *s = json_dumps(body, JSON_COMPACT);
	bool ok = s && jwt_claim_sha256(claims, "payload_hash", s, strlen(s));
	free(s);
	return ok;
}

static int vmsg_authenticate(const void *state, struct provider_request *req, char *err,
                             size_t errlen)
{
	const struct vmsg *v = state;
	struct vmsg_req *vr = arena_alloc(req->arena, sizeof(*vr));
	const char *auth, *tok;
	json_t *claims = NULL, *body = NULL;
	char jerr[64];
	int64_t iat, now_s = req->now_ms / 1000;
	int rc = DLRD_EAUTH;

	vr->body = NULL;
	req->scratch = vr;
	if (strcmp(req->method, "POST") != 0) {
		util_fmt(err, errlen, "Messages API webhooks are POST");
		return DLRD_EMETHOD;
	}
	if (strcmp(req->content_type, "application/json") != 0) {
		util_fmt(err, errlen, "content type must be application/json");
		return DLRD_EUNSUPP;
	}
	auth = req->header(req->hctx, "Authorization");
	if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) {
		util_fmt(err, errlen, "missing Authorization: Bearer token");
		return DLRD_EAUTH;
	}
	for (tok = auth + 7; *tok == ' '; tok++)
		;
	if (jwt_verify(tok, strlen(tok), JWT_HS256, v->secrets, v->n_secrets, &claims, err,
	               errlen) != 0)
		return DLRD_EAUTH;
	if (jwt_claim_time(claims, "iat", &iat) != 0) {
		util_fmt(err, errlen, "token has no valid iat");
		goto out;
	}
	if (iat < now_s - v->tolerance_s || iat > now_s + v->tolerance_s) {
		util_fmt(err, errlen, "token iat outside the tolerance");
		rc = DLRD_ESTALE;
		goto out;
	}
	/* any JSON value, so the compact form below is tried for a body that
	 * is JSON but not an object (answered 400 once it verifies) */
	body = jsonx_load(req->body.p, req->body.n, jerr, sizeof(jerr));
	if (req->body.n && !jwt_claim_sha256(claims, "payload_hash", req->body.p, req->body.n) &&
	    !(body && hash_matches_compact(claims, body))) {
		util_fmt(err, errlen, "payload_hash missing or does not match the body");
		goto out;
	}
	if (!json_is_object(body)) {
		util_fmt(err, errlen, "%s", body ? "body is not a JSON object" : jerr);
		rc = DLRD_EINVAL;
		goto out;
	}
	vr->body = body;
	body = NULL;
	rc = 0;
out:
	json_decref(body);
	json_decref(claims);
	return rc;
}

/* `to` / `from`: a string in the current API, an object {type, number|id}
 * in the 2021 schema. */
static const char *party(struct arena *a, const json_t *body, const char *name)
{
	const json_t *v = json_object_get(body, name);

	if (json_is_object(v)) {
		const char *s = jsonx_member_text(a, v, "number", LIM_ID_BYTES);
		return s ? s : jsonx_member_text(a, v, "id", LIM_ID_BYTES);
	}
	return jsonx_member_text(a, body, name, LIM_ID_BYTES);
}

/* All digits, 1..8 of them. */
static bool is_code(const char *s, size_t n)
{
	if (n == 0 || n > 8)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* The error code of a status: error.code, else error.title when it is a
 * number, else the digits after '#' in error.type. */
static const char *error_code(struct arena *a, const json_t *body)
{
	const json_t *e = json_object_get(body, "error");
	const char *s;

	if (!json_is_object(e))
		return NULL;
	if ((s = jsonx_member_text(a, e, "code", LIM_STATUS_BYTES)))
		return s;
	if ((s = jsonx_member_text(a, e, "title", LIM_STATUS_BYTES)) && is_code(s, strlen(s)))
		return s;
	s = jsonx_member_text(a, e, "type", 1024);
	if (s) {
		const char *h = strrchr(s, '#');
		if (h && is_code(h + 1, strlen(h + 1)))
			return h + 1;
	}
	return NULL;
}

static void parse_status(struct arena *a, const json_t *body, struct dlr_event *ev)
{
	const char *to, *from;

	/* message_uuid, lower-cased when it is a UUID (or any hex id) */
	ev->provider_message_id = jsonx_member_id(a, body, "message_uuid");
	ev->raw_status = jsonx_member_text(a, body, "status", LIM_STATUS_BYTES);
	if (!ev->provider_message_id || !ev->raw_status) {
		provider_unusable(ev, !ev->provider_message_id ? "no usable message_uuid"
		                                               : "no usable status");
		return;
	}
	ev->kind = EV_STATUS;
	ev->error_code = error_code(a, body);
	ev->occurred_ms = jsonx_member_time(body, "timestamp");
	ev->status = ST_UNKNOWN;
	ev->review = REVIEW_UNKNOWN_STATUS;
	ev->review_detail = "status not in the Messages API vocabulary";
	for (size_t i = 0; i < ARRAY_LEN(status_map); i++) {
		if (strcmp(ev->raw_status, status_map[i].raw) == 0) {
			ev->status = status_map[i].st;
			ev->read = status_map[i].read;
			ev->review = REVIEW_NONE;
			ev->review_detail = NULL;
			break;
		}
	}
	if (ev->status == ST_REJECTED)
		ev->status = refine_rejected(ev->error_code);
	to = party(a, body, "to");
	if (to)
		provider_set_recipient(ev, a, to, strlen(to));
	from = party(a, body, "from");
	if (from)
		ev->sender_identity = from;
	event_finish(ev);
}

static void parse_inbound(struct arena *a, const json_t *body, struct dlr_event *ev)
{
	const char *user, *ours;
	const json_t *text = json_object_get(body, "text");

	ev->provider_message_id = jsonx_member_id(a, body, "message_uuid");
	if (!ev->provider_message_id) {
		provider_unusable(ev, "no usable message_uuid");
		return;
	}
	ev->kind = EV_INBOUND;
	ev->occurred_ms = jsonx_member_time(body, "timestamp");
	user = party(a, body, "from");
	if (user)
		provider_set_recipient(ev, a, user, strlen(user));
	ours = party(a, body, "to");
	if (ours)
		ev->sender_identity = ours;
	/* only text messages have a body; media, locations etc. keep theirs in
	 * the raw payload */
	if (json_is_string(text)) {
		ev->text = arena_strndup(a, json_string_value(text), json_string_length(text));
		ev->text_len = json_string_length(text);
	}
	event_finish(ev);
}

static int vmsg_parse(const void *state, struct provider_request *req, struct provider_result *res,
                      char *err, size_t errlen)
{
	struct vmsg_req *vr = req->scratch;
	json_t *body = vr->body;
	struct dlr_event *ev = provider_events_new(req->arena, "vonage-messages", 1);

	(void)state;
	(void)err;
	(void)errlen;
	res->events = ev;
	res->n_events = 1;

	if (json_object_get(body, "status"))
		parse_status(req->arena, body, ev);
	else if (json_object_get(body, "message_type") || json_object_get(body, "text"))
		parse_inbound(req->arena, body, ev);
	else
		provider_unusable(ev, "neither a status nor an inbound message");
	json_decref(body);
	vr->body = NULL;
	return 0;
}

const struct provider provider_vonage_messages = {
    .name = "vonage-messages",
    .hooks = 1u << HOOK_STATUS | 1u << HOOK_INBOUND,
    .keys = vmsg_keys,
    .errors = vmsg_errors,
    .canonical_id = provider_hex_id,
    .init = vmsg_init,
    .fini = vmsg_fini,
    .authenticate = vmsg_authenticate,
    .parse = vmsg_parse,
};
