/* SPDX-License-Identifier: MIT */
/*
 * Infobip SMS delivery reports and inbound messages, JSON.
 *
 * Transport: POST application/json to the notifyUrl of the message (or a
 * Subscriptions API subscription) for delivery reports, and to the number's
 * forwarding URL for inbound messages.  Both are batched: {"results": [...]}
 * with up to 100 entries by default.  Either path accepts both kinds and
 * routes each entry by its content: an entry with a `status` object is a
 * delivery report, one with `text`/`receivedAt` and no status is an inbound
 * message.
 *
 * Authenticity: Infobip does not sign SMS webhooks.  dlrd requires HTTP Basic
 * credentials, configured at Infobip as part of the URL or the subscription's
 * authentication (`[infobip] basic_auth`, "user:password" items).  The whole
 * decoded "user:password" is compared in constant time: both sides are
 * hashed with SHA-256 first, so neither the length nor the content of a
 * configured credential shows in the timing.  A password cannot contain a
 * comma (the list separator).
 *
 * Status: mapped by name, then by group (providers.md 8).  DELIVERED_TO_OPERATOR
 * is in Infobip's DELIVERED group but is not a handset delivery: it is
 * normalized to sent (not final).  The error object's id is the error code;
 * its `permanent` flag (whether a retry of the same message can ever work)
 * is shown in the error titles below and decides between reasons where the
 * name alone does not.
 *
 * What Infobip does not tell: no event id (events deduplicate on messageId,
 * status name, error id and doneAt) and no signature.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"
#include "dlrd_limits.h"
#include "json.h"
#include "provider.h"

#define INFOBIP_AUTH_MAX 1024u

struct infobip {
	uint8_t creds[LIM_SECRETS][CRYPTO_SHA256_LEN]; /* SHA-256 of "user:password" */
	size_t n_creds;
};

/* By status name; names not listed fall back on the group. */
static const struct {
	const char *name;
	enum dlr_status st;
} name_map[] = {
    {"PENDING_ACCEPTED", ST_ACCEPTED},
    {"PENDING_ENROUTE", ST_SENT},
    {"PENDING_WAITING_DELIVERY", ST_SENT},
    /* intermediate: the operator has it, the handset may not */
    {"DELIVERED_TO_OPERATOR", ST_SENT},
    {"DELIVERED_TO_HANDSET", ST_DELIVERED},
    {"EXPIRED_EXPIRED", ST_EXPIRED},
    /* validity ran out without any receipt: final but inconclusive */
    {"EXPIRED_DLR_UNKNOWN", ST_UNKNOWN},
    {"SIGNALS_BLOCKED", ST_REJECTED},
};

/* Infobip general error ids.  "(permanent)" marks the ones Infobip flags
 * permanent: retrying the same message cannot work. */
static const struct provider_error infobip_errors[] = {
    {"1", ER_INVALID_NUMBER, "EC_UNKNOWN_SUBSCRIBER (permanent)"},
    {"5", ER_UNREACHABLE, "EC_UNIDENTIFIED_SUBSCRIBER"},
    {"6", ER_UNREACHABLE, "EC_ABSENT_SUBSCRIBER_SM"},
    {"9", ER_INVALID_NUMBER, "EC_ILLEGAL_SUBSCRIBER (permanent)"},
    {"11", ER_LANDLINE, "EC_TELESERVICE_NOT_PROVISIONED (permanent)"},
    {"13", ER_UNREACHABLE, "EC_CALL_BARRED"},
    {"27", ER_UNREACHABLE, "EC_ABSENT_SUBSCRIBER"},
    {"31", ER_UNREACHABLE, "EC_SUBSCRIBER_BUSY_FOR_MT_SMS"},
    {"32", ER_UNREACHABLE, "EC_SM_DELIVERY_FAILURE"},
    {"34", ER_PROVIDER_ERROR, "EC_SYSTEM_FAILURE"},
    {"256", ER_UNREACHABLE, "EC_SM_DF_MEMORYCAPACITYEXCEEDED"},
    /* not permanent per Infobip, but a wrong address stays wrong */
    {"351", ER_INVALID_NUMBER, "EC_INVALID_DESTINATION_ADDRESS"},
    {"603", ER_OPTED_OUT, "EC_CONTENT_BLOCKED (permanent)"},
    {"607", ER_SPAM_BLOCKED, "EC_REJECTED_SPAM_BY_OPERATOR (permanent)"},
    {"2052", ER_SPAM_BLOCKED, "EC_BLACKLISTED_DESTINATIONADDRESS (permanent)"},
    {"4101", ER_EXPIRED, "EC_VALIDITY_EXPIRED (permanent)"},
    {"4103", ER_RATE_LIMITED, "EC_DESTINATION_FLOODING (permanent)"},
    {NULL, ER_NONE, NULL},
};

static const struct config_key infobip_keys[] = {
    {"basic_auth", "comma-separated user:password pairs Infobip sends as HTTP Basic auth"},
    {NULL, NULL},
};

static void infobip_fini(void *state)
{
	free(state);
}

static int infobip_init(const struct config *cfg, void **state, char *err, size_t errlen)
{
	struct infobip *ib;
	size_t n;
	char **list;

	*state = NULL;
	if (provider_config_list(cfg, "infobip", "basic_auth", "pairs", 0, &list, &n, err,
	                         errlen) != 0)
		return DLRD_ECONFIG;
	if (n == 0)
		return 0;
	ib = xcalloc(1, sizeof(*ib));
	for (size_t i = 0; i < n; i++) {
		const char *colon = strchr(list[i], ':');
		if (!colon || colon == list[i]) {
			util_fmt(err, errlen,
			         "config: infobip.basic_auth: item %zu is not user:password",
			         i + 1);
			config_list_free(list);
			free(ib);
			return DLRD_ECONFIG;
		}
		crypto_sha256(list[i], strlen(list[i]), ib->creds[i]);
	}
	ib->n_creds = n;
	config_list_free(list);
	*state = ib;
	return 0;
}

static int infobip_authenticate(const void *state, struct provider_request *req, char *err,
                                size_t errlen)
{
	const struct infobip *ib = state;
	const char *auth = req->header(req->hctx, "Authorization");
	uint8_t dec[3 * (INFOBIP_AUTH_MAX / 4) + 3], md[CRYPTO_SHA256_LEN];
	size_t dl = 0, al;
	bool ok = false;

	if (strcmp(req->method, "POST") != 0) {
		util_fmt(err, errlen, "Infobip webhooks are POST");
		return DLRD_EMETHOD;
	}
	if (strcmp(req->content_type, "application/json") != 0) {
		util_fmt(err, errlen, "content type must be application/json");
		return DLRD_EUNSUPP;
	}
	if (!auth || strncasecmp(auth, "Basic ", 6) != 0) {
		util_fmt(err, errlen, "missing Basic Authorization");
		return DLRD_EAUTH;
	}
	auth += 6;
	while (*auth == ' ')
		auth++;
	al = strlen(auth);
	while (al && auth[al - 1] == ' ')
		al--;
	if (al == 0 || al > INFOBIP_AUTH_MAX || crypto_b64_decode(auth, al, dec, &dl) != 0) {
		util_fmt(err, errlen, "malformed Basic Authorization");
		return DLRD_EAUTH;
	}
	crypto_sha256(dec, dl, md);
	for (size_t i = 0; i < ib->n_creds; i++)
		ok |= crypto_ct_eq(md, sizeof(md), ib->creds[i], sizeof(md));
	if (!ok) {
		util_fmt(err, errlen, "Basic credentials do not match");
		return DLRD_EAUTH;
	}
	return 0;
}

/* ---- JSON helpers ---- */

/* Infobip times: "2019-04-09T16:01:56.494-0300" (Java's yyyy-MM-dd'T'HH:mm:ss.SSSZ,
 * offset without a colon); RFC 3339 forms are accepted too. */
static int64_t infobip_time(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);
	char buf[64];
	int64_t ms;
	size_t n;

	if (!json_is_string(v))
		return -1;
	n = json_string_length(v);
	if (n < 20 || n + 2 > sizeof(buf))
		return -1;
	memcpy(buf, json_string_value(v), n);
	if ((buf[n - 5] == '+' || buf[n - 5] == '-') && buf[n - 3] != ':') {
		memmove(buf + n - 1, buf + n - 2, 2);
		buf[n - 2] = ':';
		n++;
	}
	return util_parse_rfc3339(buf, n, &ms) == 0 ? ms : -1;
}

/* ---- parse ---- */

/* Normalized status from the status object; *review set when unmapped. */
static enum dlr_status map_status(const char *name, const json_t *status, const char **detail)
{
	const json_t *g = json_object_get(status, "groupId");
	const char *gname = json_string_value(json_object_get(status, "groupName"));
	long long gid = json_is_integer(g) ? json_integer_value(g) : -1;

	*detail = NULL;
	if (name)
		for (size_t i = 0; i < ARRAY_LEN(name_map); i++)
			if (strcmp(name, name_map[i].name) == 0)
				return name_map[i].st;
	if (gid < 0 && gname) {
		static const char *const groups[] = {"OK",        "PENDING", "UNDELIVERABLE",
		                                     "DELIVERED", "EXPIRED", "REJECTED"};
		for (size_t i = 0; i < ARRAY_LEN(groups); i++)
			if (strcasecmp(gname, groups[i]) == 0)
				gid = (long long)i;
	}
	switch (gid) {
	case 1:
		return ST_SENT; /* PENDING_*: in flight */
	case 2:
		return ST_UNDELIVERED;
	case 4:
		return ST_EXPIRED;
	case 5:
		return ST_REJECTED;
	case 3:
		/* a DELIVERED-group name we do not know: handset or operator? */
		*detail = "Infobip DELIVERED-group status not known to dlrd";
		return ST_UNKNOWN;
	default:
		*detail = "status not in Infobip's vocabulary";
		return ST_UNKNOWN;
	}
}

static void parse_report(struct provider_request *req, struct dlr_event *ev, const json_t *r)
{
	const json_t *status = json_object_get(r, "status");
	const json_t *error = json_object_get(r, "error");
	const char *to = jsonx_member_text(req->arena, r, "to", LIM_ID_BYTES);
	const char *detail;

	ev->kind = EV_STATUS;
	/* Infobip message ids are UUIDs or hex-and-dash strings: lower-cased */
	ev->provider_message_id = jsonx_member_id(req->arena, r, "messageId");
	if (!ev->provider_message_id) {
		provider_unusable(ev, "delivery report without a usable messageId");
		return;
	}
	ev->raw_status = jsonx_member_text(req->arena, status, "name", LIM_STATUS_BYTES);
	if (!ev->raw_status) /* keep the numeric id rather than nothing */
		ev->raw_status = jsonx_member_text(req->arena, status, "id", LIM_STATUS_BYTES);
	ev->status = map_status(ev->raw_status, status, &detail);
	if (detail) {
		ev->review = REVIEW_UNKNOWN_STATUS;
		ev->review_detail = detail;
	}
	if (json_is_object(error))
		ev->error_code = jsonx_member_text(req->arena, error, "id", LIM_STATUS_BYTES);
	ev->occurred_ms = infobip_time(r, "doneAt");
	if (to)
		provider_set_recipient(ev, req->arena, to, strlen(to));
	ev->sender_identity = jsonx_member_text(req->arena, r, "from", LIM_ID_BYTES);
	event_finish(ev);
}

static void parse_inbound(struct provider_request *req, struct dlr_event *ev, const json_t *r)
{
	const char *from = jsonx_member_text(req->arena, r, "from", LIM_ID_BYTES);
	const json_t *text = json_object_get(r, "text");

	ev->kind = EV_INBOUND;
	ev->provider_message_id = jsonx_member_id(req->arena, r, "messageId");
	if (!ev->provider_message_id) {
		provider_unusable(ev, "inbound message without a usable messageId");
		return;
	}
	ev->raw_status = "received";
	ev->status = ST_DELIVERED;
	ev->occurred_ms = infobip_time(r, "receivedAt");
	if (from)
		provider_set_recipient(ev, req->arena, from, strlen(from));
	ev->sender_identity = jsonx_member_text(req->arena, r, "to", LIM_ID_BYTES);
	if (json_is_string(text)) {
		ev->text =
		    arena_strndup(req->arena, json_string_value(text), json_string_length(text));
		ev->text_len = json_string_length(text);
	} else {
		ev->text = "";
	}
	event_finish(ev);
}

static int infobip_parse(const void *state, struct provider_request *req,
                         struct provider_result *res, char *err, size_t errlen)
{
	json_t *root = jsonx_load_object(req->body.p, req->body.n, NULL, 0);
	const json_t *results = NULL, *r;
	struct dlr_event *evs;
	size_t n = 0, i;

	(void)state;
	if (root)
		results = json_object_get(root, "results");
	n = json_is_array(results) ? json_array_size(results) : 0;
	if (n > LIM_EVENTS_PER_REQUEST) {
		json_decref(root);
		util_fmt(err, errlen, "more than %u results", LIM_EVENTS_PER_REQUEST);
		return DLRD_EINVAL;
	}
	evs = provider_events_new(req->arena, "infobip", n);
	res->events = evs;
	res->n_events = n ? n : 1;
	if (n == 0) {
		provider_unusable(evs,
		                  !root ? "body is not a JSON object" : "no results in the body");
		goto out;
	}
	json_array_foreach(results, i, r)
	{
		if (!json_is_object(r))
			provider_unusable(&evs[i], "result is not an object");
		else if (json_is_object(json_object_get(r, "status")))
			parse_report(req, &evs[i], r);
		else if (json_object_get(r, "text") || json_object_get(r, "receivedAt"))
			parse_inbound(req, &evs[i], r);
		else
			provider_unusable(&evs[i],
			                  "result is neither a delivery report nor a message");
	}
out:
	json_decref(root);
	return 0;
}

const struct provider provider_infobip = {
    .name = "infobip",
    .hooks = (1u << HOOK_STATUS) | (1u << HOOK_INBOUND),
    .keys = infobip_keys,
    .errors = infobip_errors,
    .canonical_id = provider_hex_id,
    .init = infobip_init,
    .fini = infobip_fini,
    .authenticate = infobip_authenticate,
    .parse = infobip_parse,
};
