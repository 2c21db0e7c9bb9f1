/* SPDX-License-Identifier: MIT */
/*
 * Sinch SMS REST API (XMS) callbacks: delivery reports and inbound (MO)
 * messages, JSON.
 *
 * Transport: POST application/json to the batch's callback_url or the
 * service plan's default.  Delivery reports and MO messages may share one
 * URL, so both /webhooks/sinch/status and /webhooks/sinch/inbound accept
 * both and route by the `type` member:
 * - delivery_report_sms / _mms (batch report): statuses[] {code, status,
 *   count, recipients[]}; one event per recipient (one per status entry
 *   when a summary report lists no recipients);
 * - recipient_delivery_report_sms / _mms: one recipient's status, with `at`
 *   (when Sinch made the report) and `operator_status_at` (the carrier's
 *   time, preferred as occurred_ms);
 * - mo_text / mo_binary / mo_media: an inbound message.
 *
 * Authenticity (sinch/sinch-sdk-node packages/sdk-client/src/utils/
 * authorization.helper.ts, validateWebhookSignature): header
 * x-sinch-webhook-signature = base64(HMAC-SHA256(secret, raw body + "." +
 * x-sinch-webhook-signature-nonce + "." + x-sinch-webhook-signature-timestamp)),
 * the secret used as UTF-8 bytes.  x-sinch-webhook-signature-algorithm, when
 * sent, must be HmacSHA256 or HmacSHA512 (the latter as Sinch's .NET SDK
 * accepts it).  The timestamp (unix seconds) must lie within
 * tolerance_seconds of our clock, both ways (the SDK checks none).
 *
 * What Sinch does not tell: there is no event id.  dlrd gives each
 * recipient's status a synthetic provider_event_id
 * "<batch_id>/<recipient tag>/<status>/<code>" (stable across retries, and
 * the same in a batch report and a recipient report of that state), because
 * without it two recipients of one batch in the same state would look like
 * one event.  The recipient tag is "rcpt-" and 16 hex digits of an HMAC
 * under the privacy key over the recipient's raw text (privacy.h): the id
 * is stored in clear and shown in every timeline, so it never holds the
 * number itself (a summary report without recipients gives
 * "<batch_id>//<status>/<code>").  dlrd before the tag put the number there;
 * the store's data migration rewrites such ids with
 * sinch_upgrade_event_id() below.  Batch reports carry no time.  The message id is the batch id
 * (upper-case: Sinch ids are ULID-like base32), as the send API returned it.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"
#include "dlrd_limits.h"
#include "json.h"
#include "privacy.h"
#include "provider.h"

#define SINCH_TOLERANCE_DEFAULT 300u
#define SINCH_HDR_MAX           256u

struct sinch {
	char **secrets;
	size_t n_secrets;
	int64_t tolerance_ms;
};

/* Sinch delivery report statuses (providers.md 6.2). */
static const struct {
	const char *raw;
	enum dlr_status st;
} status_map[] = {
    {"Queued", ST_ACCEPTED},     {"Dispatched", ST_SENT},    {"Aborted", ST_FAILED},
    {"Cancelled", ST_FAILED},    {"Rejected", ST_REJECTED},  {"Deleted", ST_UNDELIVERED},
    {"Delivered", ST_DELIVERED}, {"Failed", ST_UNDELIVERED}, {"Expired", ST_EXPIRED},
    {"Unknown", ST_UNKNOWN},
};

/* Sinch `code` values.  400..412 from Sinch's delivery report reference;
 * the 10DLC codes are seen in reports but not confirmed (providers.md 6.5).
 * Codes of pending states are not errors. */
static const struct provider_error sinch_errors[] = {
    {"400", ER_NONE, "Queued"},
    {"401", ER_NONE, "Dispatched"},
    {"402", ER_PROVIDER_ERROR, "Message unroutable"},
    {"403", ER_PROVIDER_ERROR, "Internal error"},
    {"404", ER_UNREACHABLE, "Temporary delivery failure"},
    {"405", ER_UNKNOWN, "Unmatched parameter"},
    {"406", ER_EXPIRED, "Internal expiry"},
    {"407", ER_CANCELED, "Cancelled"},
    {"408", ER_SPAM_BLOCKED, "Internal reject"},
    {"410", ER_SENDER_NOT_REGISTERED, "Unmatched default originator"},
    {"411", ER_UNKNOWN, "Exceeded parts limit"},
    {"412", ER_SENDER_NOT_REGISTERED, "Unprovisioned region"},
    {"15", ER_SPAM_BLOCKED, "Spam detected"},
    {"60", ER_SENDER_NOT_REGISTERED, "Campaign not active"},
    {"62", ER_SPAM_BLOCKED, "Internal spam filter"},
    {"64", ER_RATE_LIMITED, "Quota exceeded"},
    {NULL, ER_NONE, NULL},
};

static const struct config_key sinch_keys[] = {
    {"secrets", "comma-separated webhook HMAC secrets of the service plan"},
    {"tolerance_seconds", "accepted clock difference of the signature timestamp (300)"},
    {NULL, NULL},
};

static void sinch_fini(void *state)
{
	struct sinch *s = state;
	if (!s)
		return;
	config_list_free(s->secrets);
	free(s);
}

static int sinch_init(const struct config *cfg, void **state, char *err, size_t errlen)
{
	int64_t tolerance;
	size_t n;
	char **list;

	*state = NULL;
	/* checked even without secrets: a bad value stops start-up either way */
	if (provider_config_tolerance(cfg, "sinch", SINCH_TOLERANCE_DEFAULT, &tolerance, err,
	                              errlen) != 0)
		return DLRD_ECONFIG;
	if (provider_config_list(cfg, "sinch", "secrets", "secrets", 0, &list, &n, err, errlen))
		return DLRD_ECONFIG;
	if (n == 0)
		return 0;
	struct sinch *s = xcalloc(1, sizeof(*s));
	s->secrets = list;
	s->n_secrets = n;
	s->tolerance_ms = tolerance * 1000;
	*state = s;
	return 0;
}

static int sinch_authenticate(const void *state, struct provider_request *req, char *err,
                              size_t errlen)
{
	const struct sinch *s = state;
	const char *sig = req->header(req->hctx, "x-sinch-webhook-signature");
	const char *nonce = req->header(req->hctx, "x-sinch-webhook-signature-nonce");
	const char *ts = req->header(req->hctx, "x-sinch-webhook-signature-timestamp");
	const char *alg = req->header(req->hctx, "x-sinch-webhook-signature-algorithm");
	enum crypto_md md = CRYPTO_SHA256;
	uint64_t ts_s;
	bool ok = false;

	if (strcmp(req->method, "POST") != 0) {
		util_fmt(err, errlen, "Sinch callbacks are POST");
		return DLRD_EMETHOD;
	}
	if (strcmp(req->content_type, "application/json") != 0) {
		util_fmt(err, errlen, "content type must be application/json");
		return DLRD_EUNSUPP;
	}
	if (!sig || !*sig || !nonce || !*nonce || !ts || !*ts) {
		util_fmt(err, errlen, "missing x-sinch-webhook-signature, -nonce or -timestamp");
		return DLRD_EAUTH;
	}
	if (alg && *alg) {
		if (strcasecmp(alg, "HmacSHA512") == 0) {
			md = CRYPTO_SHA512;
		} else if (strcasecmp(alg, "HmacSHA256") != 0) {
			util_fmt(err, errlen, "unsupported x-sinch-webhook-signature-algorithm");
			return DLRD_EAUTH;
		}
	}
	if (strlen(ts) > 19 || util_parse_u64(ts, strlen(ts), &ts_s) != 0 ||
	    strlen(nonce) > SINCH_HDR_MAX || strlen(sig) > SINCH_HDR_MAX) {
		util_fmt(err, errlen, "malformed x-sinch-webhook-signature headers");
		return DLRD_EAUTH;
	}
	for (size_t i = 0; i < s->n_secrets; i++) {
		uint8_t mac[64];
		char b64[4 * ((64 + 2) / 3) + 1];
		struct crypto_piece pieces[] = {{req->body.p, req->body.n},
		                                {".", 1},
		                                {nonce, strlen(nonce)},
		                                {".", 1},
		                                {ts, strlen(ts)}};
		crypto_hmac(md, s->secrets[i], strlen(s->secrets[i]), pieces, ARRAY_LEN(pieces),
		            mac);
		size_t bl = crypto_b64_encode(mac, crypto_md_len(md), b64);
		ok |= crypto_ct_eq(sig, strlen(sig), b64, bl);
	}
	if (!ok) {
		util_fmt(err, errlen, "x-sinch-webhook-signature does not verify");
		return DLRD_EAUTH;
	}
	if (ts_s > (uint64_t)INT64_MAX / 1000 ||
	    llabs((long long)((int64_t)ts_s * 1000 - req->now_ms)) > s->tolerance_ms) {
		util_fmt(err, errlen, "x-sinch-webhook-signature-timestamp outside the tolerance");
		return DLRD_ESTALE;
	}
	return 0;
}

/* ---- JSON helpers ---- */

/* Sinch ids (batch ids, MO ids) are ULID-like Crockford base32: the
 * canonical form is upper-case (an id with other characters is kept). */
static const char *sinch_upper(char *s)
{
	if (!s)
		return NULL;
	for (char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= 'A' && *p <= 'Z')))
			return s;
	for (char *p = s; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 32);
	return s;
}

static const char *canonical_text(struct arena *a, const char *p, size_t n)
{
	return sinch_upper((char *)provider_text(a, p, n, LIM_ID_BYTES));
}

static const char *canonical_id(struct arena *a, const json_t *obj, const char *key)
{
	return sinch_upper((char *)jsonx_member_text(a, obj, key, LIM_ID_BYTES));
}

/* ---- parse ---- */

static struct dlr_event *new_events(struct provider_request *req, struct provider_result *res,
                                    size_t n)
{
	res->events = provider_events_new(req->arena, "sinch", n);
	res->n_events = n;
	return res->events;
}

/* The synthetic event id of one recipient's status:
 * "<batch_id>/<recipient tag>/<status>/<code>", the tag of recipient's raw
 * text, or nothing for it when recipient is NULL (summary reports); NULL
 * status and code as "". */
static const char *status_event_id(struct arena *a, const char *batch_id, const char *recipient,
                                   const char *raw_status, const char *code)
{
	char tag[PRIVACY_TAG_LEN + 1] = "";
	size_t cap = strlen(batch_id) + PRIVACY_TAG_LEN + (raw_status ? strlen(raw_status) : 0) +
	             (code ? strlen(code) : 0) + 4;
	char *id = arena_alloc(a, cap);

	if (recipient)
		privacy_tag(recipient, strlen(recipient), tag);
	util_fmt(id, cap, "%s/%s/%s/%s", batch_id, tag, raw_status ? raw_status : "",
	         code ? code : "");
	return id;
}

/* struct provider's upgrade_event_id: dlrd before the recipient tag made
 * "<batch_id>/<recipient as sent>/<status>/<code>" with the very batch id,
 * status and code it stored in the event's columns, so the recipient is
 * exactly what lies between "<pmid>/" and "/<raw_status>/<error_code>"
 * (whatever '/' any of them holds).  An id of another shape, with nothing
 * there (a summary report) or with a tag there (already rewritten) needs no
 * change. */
static const char *sinch_upgrade_event_id(struct arena *a, const char *id, const char *pmid,
                                          const char *raw_status, const char *error_code)
{
	const char *rs = raw_status ? raw_status : "", *ec = error_code ? error_code : "";
	size_t n = strlen(id), np, ns = strlen(rs) + strlen(ec) + 2, nr;
	const char *rcpt;

	if (!pmid)
		return NULL;
	np = strlen(pmid) + 1;
	if (n <= np + ns || memcmp(id, pmid, np - 1) != 0 || id[np - 1] != '/')
		return NULL;
	rcpt = id + np;
	nr = n - np - ns;
	if (rcpt[nr] != '/' || memcmp(rcpt + nr + 1, rs, strlen(rs)) != 0 ||
	    rcpt[nr + 1 + strlen(rs)] != '/' || strcmp(rcpt + nr + 2 + strlen(rs), ec) != 0)
		return NULL;
	if (privacy_is_tag(rcpt, nr))
		return NULL;
	return status_event_id(a, pmid, arena_strndup(a, rcpt, nr), raw_status, error_code);
}

/* One recipient's status.  recipient may be NULL (summary reports). */
static void fill_status(struct provider_request *req, struct dlr_event *ev, const char *batch_id,
                        const char *recipient, const char *raw_status, const char *code,
                        int64_t occurred, const char *sender)
{
	ev->kind = EV_STATUS;
	ev->provider_message_id = batch_id;
	ev->raw_status = raw_status;
	ev->error_code = code;
	ev->occurred_ms = occurred;
	ev->sender_identity = sender;
	ev->provider_event_id = status_event_id(req->arena, batch_id, recipient, raw_status, code);
	if (recipient)
		provider_set_recipient(ev, req->arena, recipient, strlen(recipient));
	ev->status = ST_UNKNOWN;
	if (!raw_status) {
		ev->review = REVIEW_UNKNOWN_STATUS;
		ev->review_detail = "Sinch delivery report without a status";
	} else {
		ev->review = REVIEW_UNKNOWN_STATUS;
		ev->review_detail = "status not in Sinch's vocabulary";
		for (size_t i = 0; i < ARRAY_LEN(status_map); i++) {
			if (strcmp(raw_status, status_map[i].raw) == 0) {
				ev->status = status_map[i].st;
				/* failed on purpose, whatever the code (providers.md 6.2) */
				if (strcmp(raw_status, "Cancelled") == 0)
					ev->error_reason = ER_CANCELED;
				ev->review = REVIEW_NONE;
				ev->review_detail = NULL;
				break;
			}
		}
	}
	event_finish(ev);
}

static int parse_batch(struct provider_request *req, struct provider_result *res,
                       const json_t *root, char *err, size_t errlen)
{
	const char *batch_id = canonical_id(req->arena, root, "batch_id");
	const json_t *statuses = json_object_get(root, "statuses");
	size_t total = 0, k = 0, i, j;
	const json_t *st, *r;
	struct dlr_event *evs;

	if (!batch_id || !json_is_array(statuses) || json_array_size(statuses) == 0) {
		provider_unusable(new_events(req, res, 1), !batch_id
		                                               ? "no usable batch_id"
		                                               : "no statuses in the batch report");
		return 0;
	}
	json_array_foreach(statuses, i, st)
	{
		const json_t *rc = json_object_get(st, "recipients");
		size_t n = json_is_array(rc) ? json_array_size(rc) : 0;
		total += n ? n : 1;
		if (total > LIM_EVENTS_PER_REQUEST) {
			util_fmt(err, errlen, "more than %u recipients", LIM_EVENTS_PER_REQUEST);
			return DLRD_EINVAL;
		}
	}
	evs = new_events(req, res, total);
	json_array_foreach(statuses, i, st)
	{
		const json_t *rc = json_object_get(st, "recipients");
		const char *raw, *code;
		if (!json_is_object(st)) {
			provider_unusable(&evs[k++], "status entry is not an object");
			continue;
		}
		raw = jsonx_member_text(req->arena, st, "status", LIM_STATUS_BYTES);
		code = jsonx_member_text(req->arena, st, "code", LIM_STATUS_BYTES);
		if (!json_is_array(rc) || json_array_size(rc) == 0) {
			fill_status(req, &evs[k++], batch_id, NULL, raw, code, -1, NULL);
			continue;
		}
		json_array_foreach(rc, j, r)
		{
			const char *num = jsonx_text(req->arena, r, LIM_ID_BYTES);
			/* not a number's text: to review, never a status without a
			 * recipient (its event id would be a summary report's, and
			 * two such entries one event) */
			if (!num)
				provider_unusable(&evs[k++],
				                  "batch report recipient is not a text");
			else
				fill_status(req, &evs[k++], batch_id, num, raw, code, -1, NULL);
		}
	}
	res->n_events = k;
	return 0;
}

static void parse_recipient(struct provider_request *req, struct provider_result *res,
                            const json_t *root)
{
	struct dlr_event *ev = new_events(req, res, 1);
	const char *batch_id = canonical_id(req->arena, root, "batch_id");
	int64_t occurred = jsonx_member_time(root, "operator_status_at");

	if (!batch_id) {
		provider_unusable(ev, "no usable batch_id");
		return;
	}
	if (occurred < 0)
		occurred = jsonx_member_time(root, "at");
	fill_status(req, ev, batch_id,
	            jsonx_member_text(req->arena, root, "recipient", LIM_ID_BYTES),
	            jsonx_member_text(req->arena, root, "status", LIM_STATUS_BYTES),
	            jsonx_member_text(req->arena, root, "code", LIM_STATUS_BYTES), occurred,
	            jsonx_member_text(req->arena, root, "applied_originator", LIM_ID_BYTES));
}

static void parse_mo(struct provider_request *req, struct provider_result *res, const json_t *root,
                     const char *type)
{
	struct dlr_event *ev = new_events(req, res, 1);
	const char *from = jsonx_member_text(req->arena, root, "from", LIM_ID_BYTES);
	const json_t *body = json_object_get(root, "body");

	ev->kind = EV_INBOUND;
	ev->provider_message_id = canonical_id(req->arena, root, "id");
	if (!ev->provider_message_id) {
		provider_unusable(ev, "MO message without an id");
		return;
	}
	ev->raw_status = type;
	ev->status = ST_DELIVERED;
	ev->occurred_ms = jsonx_member_time(root, "received_at");
	if (from)
		provider_set_recipient(ev, req->arena, from, strlen(from));
	ev->sender_identity = jsonx_member_text(req->arena, root, "to", LIM_ID_BYTES);
	/* mo_text: body is the text; mo_media: body.message; mo_binary: body is
	 * base64 data, not text (kept in the raw payload only) */
	if (strcmp(type, "mo_media") == 0 && json_is_object(body))
		body = json_object_get(body, "message");
	if (strcmp(type, "mo_binary") != 0 && json_is_string(body)) {
		ev->text =
		    arena_strndup(req->arena, json_string_value(body), json_string_length(body));
		ev->text_len = json_string_length(body);
	}
	event_finish(ev);
}

static int sinch_parse(const void *state, struct provider_request *req, struct provider_result *res,
                       char *err, size_t errlen)
{
	json_t *root = jsonx_load_object(req->body.p, req->body.n, NULL, 0);
	const char *type;
	int rc = 0;

	(void)state;
	if (!root) {
		provider_unusable(new_events(req, res, 1), "body is not a JSON object");
		goto out;
	}
	type = jsonx_member_text(req->arena, root, "type", LIM_STATUS_BYTES);
	if (!type) {
		provider_unusable(new_events(req, res, 1), "no type member");
	} else if (strcmp(type, "delivery_report_sms") == 0 ||
	           strcmp(type, "delivery_report_mms") == 0) {
		rc = parse_batch(req, res, root, err, errlen);
	} else if (strcmp(type, "recipient_delivery_report_sms") == 0 ||
	           strcmp(type, "recipient_delivery_report_mms") == 0) {
		parse_recipient(req, res, root);
	} else if (strcmp(type, "mo_text") == 0 || strcmp(type, "mo_binary") == 0 ||
	           strcmp(type, "mo_media") == 0) {
		parse_mo(req, res, root, type);
	} else {
		provider_unusable(new_events(req, res, 1),
		                  "Sinch callback type dlrd does not handle");
	}
out:
	json_decref(root);
	return rc;
}

const struct provider provider_sinch = {
    .name = "sinch",
    .hooks = (1u << HOOK_STATUS) | (1u << HOOK_INBOUND),
    .keys = sinch_keys,
    .errors = sinch_errors,
    .canonical_id = canonical_text,
    .upgrade_event_id = sinch_upgrade_event_id,
    .init = sinch_init,
    .fini = sinch_fini,
    .authenticate = sinch_authenticate,
    .parse = sinch_parse,
};
