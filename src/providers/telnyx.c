/* SPDX-License-Identifier: MIT */
/*
 * Telnyx Messaging (API v2) webhooks: message.sent, message.finalized
 * (delivery status) and message.received (inbound SMS).
 *
 * Transport: POST application/json to the messaging profile's webhook URL
 * (or the per-message webhook_url).  Telnyx sends status and inbound events
 * to the same URL, so both /webhooks/telnyx/status and /webhooks/telnyx/inbound
 * accept both and route by data.event_type.
 *
 * Authenticity: Ed25519 over `telnyx-timestamp + "|" + raw body` with the
 * account's public key (header telnyx-signature-ed25519, base64 of 64
 * bytes), as team-telnyx/telnyx-node src/lib/webhooks.ts verifies it.  The
 * timestamp (unix seconds) must be within tolerance_seconds of our clock in
 * both directions (DLRD_ESTALE), in whole seconds as telnyx-node compares it
 * (|floor(now) - timestamp| <= tolerance).  Keys are parsed once at init.
 *
 * One event per recipient: Telnyx reports a status per entry of
 * data.payload.to[] (and cc[] for group MMS).  Each recipient's event gets
 * provider_event_id = data.id + ":" + the recipient tag of its number
 * ("rcpt-" and 16 hex digits of an HMAC under the privacy key over the
 * number's raw text, privacy.h), or ":#<index>" when an entry has no number,
 * so the recipients of one webhook never collapse into one event while a
 * retried webhook (same data.id) still deduplicates.  The id is stored in
 * clear and shown in every timeline, so it never holds the number itself:
 * dlrd before the tag wrote data.id + ":" + the number, and the store's data
 * migration rewrites such ids with telnyx_upgrade_event_id() below.
 * provider_message_id is data.payload.id, lower-cased.  An inbound
 * message.received keeps data.id as its event id (so a retried webhook is
 * one inbound row).  Its payload.autoresponse_type ("stop", "start" or
 * "help", any case; null for other messages) says which of the messaging
 * profile's keyword lists, custom ones included, the message matched, and
 * Telnyx makes or lifts its block rule by it (Telnyx "Advanced Opt-In/Out
 * Management"): it decides the keyword; otherwise the text does, centrally.
 *
 * What Telnyx does not tell: errors[] belong to the whole message, not to a
 * recipient; dlrd attaches the first error code to every recipient whose
 * status is not a success or pending one (judgment call).
 */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"
#include "dlrd_limits.h"
#include "json.h"
#include "privacy.h"
#include "provider.h"

#define TELNYX_KEY_LEN           32
#define TELNYX_SIG_LEN           64
#define TELNYX_TOLERANCE_DEFAULT 300u

struct telnyx {
	EVP_PKEY *keys[LIM_SECRETS];
	size_t n_keys;
	int64_t tolerance_s;
};

/* Telnyx to[].status -> normalized (providers.md 4.2). */
static const struct {
	const char *raw;
	enum dlr_status st;
} status_map[] = {
    {"scheduled", ST_ACCEPTED},
    {"queued", ST_ACCEPTED},
    {"sending", ST_ACCEPTED},
    {"sent", ST_SENT},
    {"delivered", ST_DELIVERED},
    {"sending_failed", ST_FAILED},
    {"delivery_failed", ST_UNDELIVERED},
    /* final but inconclusive: no receipt came from the carrier */
    {"delivery_unconfirmed", ST_UNKNOWN},
    {"expired", ST_EXPIRED},
    /* a scheduled message cancelled before it left Telnyx */
    {"cancelled", ST_FAILED},
};

/* Telnyx delivery errors (40xxx), titles from Telnyx's messaging error code
 * reference.  The reason is our judgment of what support should tell. */
static const struct provider_error telnyx_errors[] = {
    {"40001", ER_LANDLINE, "Not routable"},
    {"40002", ER_SPAM_BLOCKED, "Blocked as spam - temporary"},
    {"40003", ER_SPAM_BLOCKED, "Blocked as spam - permanent"},
    {"40004", ER_CARRIER_FILTERED, "Rejected by destination"},
    {"40005", ER_EXPIRED, "Message expired during transmission"},
    /* the recipient's carrier server is down (not the handset): retry */
    {"40006", ER_PROVIDER_ERROR, "Recipient server unavailable"},
    {"40007", ER_PROVIDER_ERROR, "Loop detected"},
    {"40008", ER_UNKNOWN, "Undeliverable"},
    {"40009", ER_CARRIER_FILTERED, "Invalid message body"},
    {"40011", ER_RATE_LIMITED, "Too many requests"},
    {"40012", ER_INVALID_NUMBER, "Invalid messaging destination number"},
    {"40013", ER_SENDER_NOT_REGISTERED, "Invalid messaging source number"},
    {"40014", ER_EXPIRED, "Expired in queue"},
    {"40015", ER_SPAM_BLOCKED, "Internal spam filter"},
    {"40300", ER_OPTED_OUT, "Blocked due to STOP message"},
    {NULL, ER_NONE, NULL},
};

static const struct config_key telnyx_keys[] = {
    {"public_keys", "comma-separated base64 Ed25519 public keys (Mission Control > Keys)"},
    {"tolerance_seconds", "accepted clock difference of telnyx-timestamp, both ways (300)"},
    {NULL, NULL},
};

static void telnyx_fini(void *state)
{
	struct telnyx *t = state;
	if (!t)
		return;
	for (size_t i = 0; i < t->n_keys; i++)
		EVP_PKEY_free(t->keys[i]);
	free(t);
}

static int telnyx_init(const struct config *cfg, void **state, char *err, size_t errlen)
{
	int64_t tolerance;
	struct telnyx *t = NULL;
	char **list = NULL;
	size_t n;
	int rc;

	*state = NULL;
	/* checked even without keys: a bad value stops start-up either way */
	rc = provider_config_tolerance(cfg, "telnyx", TELNYX_TOLERANCE_DEFAULT, &tolerance, err,
	                               errlen);
	if (rc != 0)
		return rc;
	rc = provider_config_list(cfg, "telnyx", "public_keys", "keys", 0, &list, &n, err, errlen);
	if (rc != 0 || n == 0)
		return rc;
	t = xcalloc(1, sizeof(*t));
	t->tolerance_s = tolerance;
	for (size_t i = 0; i < n; i++) {
		size_t kl = strlen(list[i]), raw_len = 0;
		uint8_t *raw = xmalloc(3 * (kl / 4) + 3);
		EVP_PKEY *pk = NULL;
		if (crypto_b64_decode(list[i], kl, raw, &raw_len) == 0 && raw_len == TELNYX_KEY_LEN)
			pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, raw_len);
		free(raw);
		if (!pk) {
			util_fmt(err, errlen,
			         "config: telnyx.public_keys: item %zu is not a base64 32-byte "
			         "Ed25519 public key",
			         i + 1);
			rc = DLRD_ECONFIG;
			goto out;
		}
		t->keys[t->n_keys++] = pk;
	}
	*state = t;
	t = NULL;
out:
	telnyx_fini(t);
	config_list_free(list);
	return rc;
}

/* Ed25519 verification of msg under any of the configured keys. */
static bool ed25519_verify_any(const struct telnyx *t, const uint8_t *sig, size_t siglen,
                               const char *msg, size_t msglen)
{
	bool ok = false;
	for (size_t i = 0; i < t->n_keys && !ok; i++) {
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		if (!ctx)
			abort();
		if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, t->keys[i]) == 1 &&
		    EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)msg, msglen) == 1)
			ok = true;
		EVP_MD_CTX_free(ctx);
	}
	return ok;
}

static int telnyx_authenticate(const void *state, struct provider_request *req, char *err,
                               size_t errlen)
{
	const struct telnyx *t = state;
	const char *sig = req->header(req->hctx, "telnyx-signature-ed25519");
	const char *ts = req->header(req->hctx, "telnyx-timestamp");
	uint8_t sigbuf[3 * (128 / 4) + 3];
	size_t siglen = 0, tslen;
	uint64_t ts_s;

	if (strcmp(req->method, "POST") != 0) {
		util_fmt(err, errlen, "Telnyx webhooks are POST");
		return DLRD_EMETHOD;
	}
	if (strcmp(req->content_type, "application/json") != 0) {
		util_fmt(err, errlen, "content type must be application/json");
		return DLRD_EUNSUPP;
	}
	if (!sig || !*sig || !ts || !*ts) {
		util_fmt(err, errlen, "missing telnyx-signature-ed25519 or telnyx-timestamp");
		return DLRD_EAUTH;
	}
	tslen = strlen(ts);
	if (tslen > 19 || util_parse_u64(ts, tslen, &ts_s) != 0) {
		util_fmt(err, errlen, "malformed telnyx-timestamp");
		return DLRD_EAUTH;
	}
	if (strlen(sig) > 128 || crypto_b64_decode(sig, strlen(sig), sigbuf, &siglen) != 0 ||
	    siglen != TELNYX_SIG_LEN) {
		util_fmt(err, errlen, "malformed telnyx-signature-ed25519");
		return DLRD_EAUTH;
	}
	/* the signed bytes: timestamp "|" raw body, exactly as received */
	char *msg = arena_alloc(req->arena, tslen + 1 + req->body.n + 1);
	memcpy(msg, ts, tslen);
	msg[tslen] = '|';
	if (req->body.n)
		memcpy(msg + tslen + 1, req->body.p, req->body.n);
	if (!ed25519_verify_any(t, sigbuf, siglen, msg, tslen + 1 + req->body.n)) {
		util_fmt(err, errlen, "telnyx-signature-ed25519 does not verify");
		return DLRD_EAUTH;
	}
	/* checked after the signature, so "stale" always means an authentic
	 * but old (or replayed) request; in whole seconds, as telnyx-node:
	 * milliseconds turned a timestamp exactly tolerance_seconds old
	 * away for all but the first millisecond of that second */
	if (ts_s > (uint64_t)INT64_MAX / 1000 ||
	    llabs((long long)((int64_t)ts_s - req->now_ms / 1000)) > t->tolerance_s) {
		util_fmt(err, errlen, "telnyx-timestamp outside the tolerance");
		return DLRD_ESTALE;
	}
	return 0;
}

/* ---- parse ---- */

static struct dlr_event *new_events(struct provider_request *req, struct provider_result *res,
                                    size_t n)
{
	res->events = provider_events_new(req->arena, "telnyx", n);
	res->n_events = n;
	return res->events;
}

static bool is_success_or_pending(enum dlr_status s)
{
	return s == ST_ACCEPTED || s == ST_SENT || s == ST_DELIVERED;
}

/* Inbound message.received: one EV_INBOUND. */
static void parse_inbound(struct provider_request *req, struct dlr_event *ev, const json_t *data,
                          const json_t *payload)
{
	const json_t *from = json_object_get(payload, "from");
	const json_t *to = json_object_get(payload, "to");
	const json_t *text = json_object_get(payload, "text");
	const char *num, *autoresp;

	ev->kind = EV_INBOUND;
	ev->provider_message_id = jsonx_member_id(req->arena, payload, "id");
	if (!ev->provider_message_id) {
		provider_unusable(ev, "message.received without data.payload.id");
		return;
	}
	ev->provider_event_id = jsonx_member_id(req->arena, data, "id");
	ev->status = ST_DELIVERED;
	ev->raw_status = "message.received";
	ev->occurred_ms = jsonx_member_time(data, "occurred_at");
	if (ev->occurred_ms < 0)
		ev->occurred_ms = jsonx_member_time(payload, "received_at");
	num = jsonx_member_text(req->arena, from, "phone_number", LIM_ID_BYTES);
	if (num)
		provider_set_recipient(ev, req->arena, num, strlen(num));
	if (json_is_array(to) && json_is_object(json_array_get(to, 0)))
		ev->sender_identity = jsonx_member_text(req->arena, json_array_get(to, 0),
		                                        "phone_number", LIM_ID_BYTES);
	if (json_is_string(text)) {
		ev->text =
		    arena_strndup(req->arena, json_string_value(text), json_string_length(text));
		ev->text_len = json_string_length(text);
	} else {
		ev->text = "";
		ev->text_len = 0;
	}
	/* Telnyx's own verdict, by which it makes or lifts its block rule
	 * (see the top); null or another operation: the text decides
	 * centrally */
	autoresp = jsonx_member_string(payload, "autoresponse_type", NULL);
	ev->keyword =
	    optout_verdict(autoresp, (const char *const[]){"stop", "start", "help"}, strcasecmp);
	event_finish(ev);
}

/* The event id of one recipient's status: data.id, ':', and the recipient
 * tag of num (its raw text) or, when the entry has no number, '#' and the
 * entry's index in to[] + cc[]. */
static const char *recipient_event_id(struct arena *a, const char *event_id, const char *num,
                                      size_t index)
{
	size_t cap = strlen(event_id) + PRIVACY_TAG_LEN + 24;
	char *id = arena_alloc(a, cap);

	if (num) {
		char tag[PRIVACY_TAG_LEN + 1];
		privacy_tag(num, strlen(num), tag);
		util_fmt(id, cap, "%s:%s", event_id, tag);
	} else {
		util_fmt(id, cap, "%s:#%zu", event_id, index);
	}
	return id;
}

/* struct provider's upgrade_event_id: dlrd before the recipient tag made
 * "<data.id>:<number as sent>" and "<data.id>:#<index>".  data.id is a
 * UUID, so the number is everything after the first ':'; it becomes its
 * tag, as recipient_event_id() makes it.  Ids without a ':', with nothing
 * after it, with '#' and digits after it (no number) or with a tag after it
 * (already rewritten) need no change. */
static const char *telnyx_upgrade_event_id(struct arena *a, const char *id, const char *pmid,
                                           const char *raw_status, const char *error_code)
{
	const char *colon = strchr(id, ':'), *num;
	size_t n;

	(void)pmid;
	(void)raw_status;
	(void)error_code;
	if (!colon || !colon[1])
		return NULL;
	num = colon + 1;
	n = strlen(num);
	if (privacy_is_tag(num, n))
		return NULL;
	if (num[0] == '#' && n > 1 && strspn(num + 1, "0123456789") == n - 1)
		return NULL;
	return recipient_event_id(a, arena_strndup(a, id, (size_t)(colon - id)), num, 0);
}

/* Fills one recipient's status event. */
static void fill_recipient(struct provider_request *req, struct dlr_event *ev, const char *msg_id,
                           const char *event_id, const json_t *rcpt, size_t index,
                           const char *error_code, const char *sender, int64_t occurred)
{
	const char *num = jsonx_member_text(req->arena, rcpt, "phone_number", LIM_ID_BYTES);
	const char *st = jsonx_member_text(req->arena, rcpt, "status", LIM_STATUS_BYTES);

	ev->kind = EV_STATUS;
	ev->provider_message_id = msg_id;
	ev->occurred_ms = occurred;
	ev->sender_identity = sender;
	if (event_id)
		ev->provider_event_id = recipient_event_id(req->arena, event_id, num, index);
	if (num)
		provider_set_recipient(ev, req->arena, num, strlen(num));
	if (!st) {
		/* judgment call: a recipient entry without a status is kept for
		 * review rather than dropped */
		ev->raw_status = NULL;
		ev->status = ST_UNKNOWN;
		ev->review = REVIEW_UNKNOWN_STATUS;
		ev->review_detail = "Telnyx recipient entry without a status";
		event_finish(ev);
		return;
	}
	ev->raw_status = st;
	ev->status = ST_UNKNOWN;
	ev->review = REVIEW_UNKNOWN_STATUS;
	ev->review_detail = "status not in Telnyx's vocabulary";
	for (size_t i = 0; i < ARRAY_LEN(status_map); i++) {
		if (strcmp(st, status_map[i].raw) == 0) {
			ev->status = status_map[i].st;
			ev->review = REVIEW_NONE;
			ev->review_detail = NULL;
			break;
		}
	}
	if (ev->review == REVIEW_NONE && !is_success_or_pending(ev->status))
		ev->error_code = error_code;
	/* failed on purpose, not for a reason to retry (providers.md 4.2) */
	if (strcmp(st, "cancelled") == 0)
		ev->error_reason = ER_CANCELED;
	/* judgment call (providers.md 4.2): a delivery failure caused by spam
	 * blocking or an opt-out is a policy rejection, not a network one */
	if (ev->status == ST_UNDELIVERED && error_code &&
	    (strcmp(error_code, "40002") == 0 || strcmp(error_code, "40003") == 0 ||
	     strcmp(error_code, "40015") == 0 || strcmp(error_code, "40300") == 0))
		ev->status = ST_REJECTED;
	event_finish(ev);
}

static size_t count_status_entries(const json_t *arr)
{
	return json_is_array(arr) ? json_array_size(arr) : 0;
}

static int telnyx_parse(const void *state, struct provider_request *req,
                        struct provider_result *res, char *err, size_t errlen)
{
	json_t *root;
	const json_t *data, *payload, *to, *cc, *errors;
	const char *type, *msg_id, *event_id, *error_code = NULL, *sender = NULL;
	struct dlr_event *evs;
	size_t n_to, n_cc, k = 0;
	bool bad = false;
	int64_t occurred;

	(void)state;
	root = jsonx_load_object(req->body.p, req->body.n, NULL, 0);
	if (!root) {
		provider_unusable(new_events(req, res, 1), "body is not a JSON object");
		return 0;
	}
	data = json_object_get(root, "data");
	payload = json_is_object(data) ? json_object_get(data, "payload") : NULL;
	type = jsonx_member_text(req->arena, data, "event_type", LIM_STATUS_BYTES);
	if (!json_is_object(payload) || !type) {
		provider_unusable(new_events(req, res, 1), "no data.event_type or data.payload");
		goto out;
	}
	if (strcmp(type, "message.received") == 0) {
		parse_inbound(req, new_events(req, res, 1), data, payload);
		goto out;
	}
	if (strcmp(type, "message.sent") != 0 && strcmp(type, "message.finalized") != 0) {
		provider_unusable(new_events(req, res, 1),
		                  "Telnyx event type dlrd does not handle");
		goto out;
	}
	/* a UUID, lower-cased: one message has one id whatever case an app stored */
	msg_id = jsonx_member_id(req->arena, payload, "id");
	to = json_object_get(payload, "to");
	cc = json_object_get(payload, "cc");
	n_to = count_status_entries(to);
	n_cc = count_status_entries(cc);
	if (!msg_id || n_to + n_cc == 0) {
		provider_unusable(new_events(req, res, 1),
		                  !msg_id ? "no usable data.payload.id"
		                          : "no recipients in data.payload.to");
		goto out;
	}
	if (n_to + n_cc > LIM_EVENTS_PER_REQUEST) {
		util_fmt(err, errlen, "more than %u recipients", LIM_EVENTS_PER_REQUEST);
		json_decref(root);
		return DLRD_EINVAL;
	}
	event_id = jsonx_member_id(req->arena, data, "id");
	occurred = jsonx_member_time(data, "occurred_at");
	errors = json_object_get(payload, "errors");
	if (json_is_array(errors) && json_is_object(json_array_get(errors, 0)))
		error_code = jsonx_member_text(req->arena, json_array_get(errors, 0), "code",
		                               LIM_STATUS_BYTES);
	if (json_is_object(json_object_get(payload, "from")))
		sender = jsonx_member_text(req->arena, json_object_get(payload, "from"),
		                           "phone_number", LIM_ID_BYTES);
	evs = new_events(req, res, n_to + n_cc);
	for (size_t i = 0; i < n_to + n_cc; i++) {
		const json_t *r = i < n_to ? json_array_get(to, i) : json_array_get(cc, i - n_to);
		if (!json_is_object(r)) {
			bad = true;
			continue;
		}
		fill_recipient(req, &evs[k++], msg_id, event_id, r, i, error_code, sender,
		               occurred);
	}
	/* entries that are not objects are never dropped: one review event for
	 * them (there is room, since at least one slot went unused) */
	if (bad)
		provider_unusable(&evs[k++], "recipient entries are not objects");
	res->n_events = k;
out:
	json_decref(root);
	return 0;
}

const struct provider provider_telnyx = {
    .name = "telnyx",
    .hooks = (1u << HOOK_STATUS) | (1u << HOOK_INBOUND),
    .keys = telnyx_keys,
    .errors = telnyx_errors,
    .canonical_id = provider_hex_id,
    .upgrade_event_id = telnyx_upgrade_event_id,
    .init = telnyx_init,
    .fini = telnyx_fini,
    .authenticate = telnyx_authenticate,
    .parse = telnyx_parse,
};
