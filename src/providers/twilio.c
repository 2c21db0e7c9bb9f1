/* SPDX-License-Identifier: MIT */
/*
 * Twilio Programmable Messaging status callbacks.
 *
 * Transport: POST application/x-www-form-urlencoded, signed with
 * X-Twilio-Signature (sig_twilio_verify).  Twilio's JSON-body variant
 * (bodySHA256 in the query) is accepted too; its top-level string and number
 * members are read like form fields.
 *
 * What Twilio does not tell: there is no event time in a status callback
 * (RawDlrDoneDate is a carrier "done date" without a time zone, so it is kept
 * in the raw payload and never guessed into UTC), and no event id, so events
 * deduplicate on (MessageSid, MessageStatus, ErrorCode).
 *
 * Inbound messages (/webhooks/twilio/inbound, the number's "A message comes
 * in" webhook): POST form, or GET when the webhook is set to HTTP GET (the
 * parameters are then in the query string, and the signature covers the URL
 * with no POST parameters).  MessageSid is the inbound message's id, From
 * the user who wrote (hashed; FromCountry is Twilio's geo-lookup of it), To
 * our number, Body the text.  The answer is an empty TwiML document, so
 * Twilio sends no reply.  Inbound messages have no event time either.
 * OptOutType (STOP, START or HELP), sent when the number's Messaging Service
 * has Advanced Opt-Out, says which of its keyword lists the whole body
 * matched, custom and localized words included ("ALTO", "ARRET"), and Twilio
 * blocks or unblocks the user by it: it decides the keyword (Twilio support
 * article 31560110671259); without it the body is classified centrally.
 *
 * Both URLs route by payload, so a webhook pointed at the wrong one still
 * lands right: SmsStatus/MessageStatus "received" (or "receiving"), or a
 * Body with no status at all, is an inbound message; anything else is a
 * status callback.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "form.h"
#include "dlrd_limits.h"
#include "json.h"
#include "provider.h"
#include "sig.h"

struct twilio {
	char **tokens;
	size_t n_tokens;
};

/* Twilio MessageStatus -> normalized.  Judgment calls are marked. */
static const struct {
	const char *raw;
	enum dlr_status st;
	bool read;
} status_map[] = {
    {"accepted", ST_ACCEPTED, false},
    {"scheduled", ST_ACCEPTED, false},
    {"queued", ST_ACCEPTED, false},
    {"sending", ST_ACCEPTED, false},
    {"sent", ST_SENT, false},
    {"delivered", ST_DELIVERED, false},
    {"undelivered", ST_UNDELIVERED, false},
    {"failed", ST_FAILED, false},
    /* read receipts (WhatsApp/RCS) come after delivered: delivered + flag */
    {"read", ST_DELIVERED, true},
    /* a scheduled message canceled through the API never left Twilio */
    {"canceled", ST_FAILED, false},
    /* judgment call: Twilio does not document it; final but inconclusive */
    {"partially_delivered", ST_UNKNOWN, false},
};

/* Twilio error codes on status callbacks (titles from Twilio's error
 * dictionary; the reason is our judgment of what support should tell). */
static const struct provider_error twilio_errors[] = {
    {"30001", ER_RATE_LIMITED, "Queue overflow"},
    {"30002", ER_OUT_OF_CREDIT, "Account suspended"},
    {"30003", ER_UNREACHABLE, "Unreachable destination handset"},
    {"30004", ER_CARRIER_FILTERED, "Message blocked"},
    {"30005", ER_INVALID_NUMBER, "Unknown destination handset"},
    {"30006", ER_LANDLINE, "Landline or unreachable carrier"},
    {"30007", ER_CARRIER_FILTERED, "Message filtered"},
    {"30008", ER_UNKNOWN, "Unknown error"},
    {"30009", ER_PROVIDER_ERROR, "Missing segment"},
    {"30010", ER_OUT_OF_CREDIT, "Message price exceeds max price"},
    {"30017", ER_RATE_LIMITED, "Carrier network congestion"},
    {"30018", ER_SENDER_NOT_REGISTERED, "Destination carrier requires sender ID pre-registration"},
    {"30021", ER_PROVIDER_ERROR, "Internal failure with messaging service orchestrator"},
    {"30022", ER_RATE_LIMITED, "US A2P 10DLC rate limits exceeded"},
    {"30023", ER_RATE_LIMITED, "US A2P 10DLC daily cap reached"},
    {"30024", ER_SENDER_NOT_REGISTERED, "Numeric sender ID not provisioned on carrier"},
    {"30027", ER_RATE_LIMITED, "US A2P 10DLC T-Mobile daily message limit reached"},
    {"30032", ER_SENDER_NOT_REGISTERED, "Toll-free number has not been verified"},
    {"30034", ER_SENDER_NOT_REGISTERED, "US A2P 10DLC message from an unregistered number"},
    {"30500", ER_PROVIDER_ERROR, "Twilio internal error"},
    {"21211", ER_INVALID_NUMBER, "Invalid 'To' phone number"},
    {"21408", ER_SENDER_NOT_REGISTERED,
     "Permission to send an SMS has not been enabled for the region"},
    {"21610", ER_OPTED_OUT, "Attempt to send to unsubscribed recipient"},
    {"21612", ER_INVALID_NUMBER, "The 'To' phone number is not currently reachable"},
    {"21614", ER_LANDLINE, "'To' number is not a valid mobile number"},
    {NULL, ER_NONE, NULL},
};

static const struct config_key twilio_keys[] = {
    {"auth_tokens", "comma-separated Auth Tokens; a request passes if any verifies"},
    {NULL, NULL},
};

static int twilio_init(const struct config *cfg, void **state, char *err, size_t errlen)
{
	size_t n;
	char **list;

	*state = NULL;
	if (provider_config_list(cfg, "twilio", "auth_tokens", "tokens", 0, &list, &n, err,
	                         errlen) != 0)
		return DLRD_ECONFIG;
	if (n == 0)
		return 0;
	struct twilio *t = xcalloc(1, sizeof(*t));
	t->tokens = list;
	t->n_tokens = n;
	*state = t;
	return 0;
}

static void twilio_fini(void *state)
{
	struct twilio *t = state;
	if (!t)
		return;
	config_list_free(t->tokens);
	free(t);
}

/* The request's fields, from the form body or from a JSON body. */
struct twilio_req {
	struct form form;
	bool json;
	bool get; /* inbound GET: the fields came from the query string */
};

static bool query_has(struct iov q, const char *name)
{
	size_t n = strlen(name);
	const char *p = q.p, *end = q.p + q.n;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *e = amp ? amp : end;
		if ((size_t)(e - p) > n && memcmp(p, name, n) == 0 && p[n] == '=')
			return true;
		p = e + 1;
	}
	return false;
}

/* Reads a JSON object's top-level string and integer members as fields;
 * the body is refused (DLRD_EINVAL) when it is not an object or nests
 * deeper than LIM_JSON_DEPTH. */
static int json_fields(struct arena *a, struct iov body, struct form *f, char *err, size_t errlen)
{
	json_t *root = jsonx_load_object(body.p, body.n, err, errlen);
	const char *key;
	json_t *val;
	size_t i = 0;

	if (!root)
		return DLRD_EINVAL;
	size_t n = json_object_size(root);
	if (n > LIM_FORM_FIELDS) {
		json_decref(root);
		util_fmt(err, errlen, "too many JSON members");
		return DLRD_EINVAL;
	}
	f->fields = arena_alloc(a, (n ? n : 1) * sizeof(*f->fields));
	json_object_foreach(root, key, val)
	{
		char num[JSONX_NUM_MAX];
		const char *s;
		size_t sl;
		if (!jsonx_scalar(val, num, &s, &sl))
			continue;
		f->fields[i].name = arena_strndup(a, key, strlen(key));
		f->fields[i].name_len = strlen(key);
		f->fields[i].value = arena_strndup(a, s, sl);
		f->fields[i].value_len = sl;
		i++;
	}
	f->n = i;
	json_decref(root);
	return 0;
}

static int twilio_authenticate(const void *state, struct provider_request *req, char *err,
                               size_t errlen)
{
	const struct twilio *t = state;
	struct twilio_req *tr = arena_alloc(req->arena, sizeof(*tr));
	const char *sig;
	int rc;

	memset(tr, 0, sizeof(*tr));
	req->scratch = tr;
	if (req->kind == HOOK_INBOUND && strcmp(req->method, "GET") == 0) {
		/* inbound webhook set to HTTP GET: fields in the query, the
		 * signature over the URL alone */
		rc = form_decode(req->arena, req->query.p, req->query.n, LIM_FORM_FIELDS, &tr->form,
		                 err, errlen);
		if (rc != 0)
			return DLRD_EINVAL;
		tr->get = true;
	} else if (strcmp(req->method, "POST") != 0) {
		util_fmt(err, errlen,
		         req->kind == HOOK_INBOUND ? "inbound webhooks are POST or GET"
		                                   : "status callbacks are POST");
		return DLRD_EMETHOD;
	} else if (strcmp(req->content_type, "application/x-www-form-urlencoded") == 0) {
		rc = form_decode(req->arena, req->body.p, req->body.n, LIM_FORM_FIELDS, &tr->form,
		                 err, errlen);
		if (rc != 0)
			return DLRD_EINVAL;
	} else if (strcmp(req->content_type, "application/json") == 0 &&
	           query_has(req->query, "bodySHA256")) {
		tr->json = true;
	} else {
		util_fmt(err, errlen, "content type must be application/x-www-form-urlencoded");
		return DLRD_EUNSUPP;
	}
	sig = req->header(req->hctx, "X-Twilio-Signature");
	if (!sig || !*sig) {
		util_fmt(err, errlen, "missing X-Twilio-Signature");
		return DLRD_EAUTH;
	}
	rc = sig_twilio_verify(t->tokens, t->n_tokens, req->public_url, req->target,
	                       tr->json || tr->get ? NULL : &tr->form, req->body,
	                       (struct iov){sig, strlen(sig)}, err, errlen);
	if (rc != 0)
		return DLRD_EAUTH;
	if (tr->json && json_fields(req->arena, req->body, &tr->form, err, errlen) != 0)
		return DLRD_EINVAL;
	return 0;
}

static const struct form_field *field(const struct form *f, const char *a, const char *b)
{
	const struct form_field *x = form_get(f, a);
	if ((!x || !x->value_len) && b)
		x = form_get(f, b);
	return x && x->value_len ? x : NULL;
}

/* Twilio SIDs are two letters and 32 hex digits; the canonical form has the
 * prefix upper-case and the hex lower-case, so a receipt matches whatever
 * case an app stored the SID in. */
static const char *canonical_sid(struct arena *a, const char *p, size_t n)
{
	char *s = (char *)provider_text(a, p, n, LIM_ID_BYTES);
	if (!s)
		return NULL;
	if (n == 34) {
		bool hex = true;
		for (size_t i = 2; i < n; i++)
			hex = hex && strchr("0123456789abcdefABCDEF", s[i]) != NULL;
		if (hex) {
			for (size_t i = 0; i < 2; i++)
				s[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
			for (size_t i = 2; i < n; i++)
				s[i] = (char)(s[i] >= 'A' && s[i] <= 'F' ? s[i] + 32 : s[i]);
		}
	}
	return s;
}

/* What Twilio expects back from an inbound webhook: TwiML that sends no
 * reply. */
static const char twiml_empty[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

/* Whether the fields are an inbound message rather than a status callback
 * (see the header comment). */
static bool is_inbound(const struct form *f)
{
	const struct form_field *st = field(f, "SmsStatus", "MessageStatus");
	if (st)
		return strcmp(st->value, "received") == 0 || strcmp(st->value, "receiving") == 0;
	return form_get(f, "Body") != NULL;
}

/* An inbound message: one EV_INBOUND event, answered with empty TwiML. */
static void parse_inbound(struct provider_request *req, const struct form *f,
                          struct provider_result *res, struct dlr_event *ev)
{
	const struct form_field *sid, *from, *to, *body, *country, *opt;

	res->content_type = "text/xml";
	res->body = twiml_empty;
	sid = field(f, "MessageSid", "SmsMessageSid");
	if (!sid)
		sid = field(f, "SmsSid", NULL);
	ev->provider_message_id =
	    sid ? canonical_sid(req->arena, sid->value, sid->value_len) : NULL;
	if (!ev->provider_message_id) {
		provider_unusable(ev, "inbound message without a usable MessageSid");
		return;
	}
	ev->kind = EV_INBOUND;
	ev->status = ST_UNKNOWN;
	/* FromCountry is Twilio's ISO 3166 alpha-2 for the sender; it wins
	 * over the calling-code guess when it looks like one. */
	country = field(f, "FromCountry", NULL);
	if (country && country->value_len == 2 && country->value[0] >= 'A' &&
	    country->value[0] <= 'Z' && country->value[1] >= 'A' && country->value[1] <= 'Z')
		ev->destination_country = arena_strndup(req->arena, country->value, 2);
	from = field(f, "From", NULL);
	if (from)
		provider_set_recipient(ev, req->arena, from->value, from->value_len);
	to = field(f, "To", NULL);
	if (to)
		ev->sender_identity =
		    provider_text(req->arena, to->value, to->value_len, LIM_ID_BYTES);
	body = form_get(f, "Body");
	ev->text = body ? body->value : arena_strndup(req->arena, "", 0);
	ev->text_len = body ? body->value_len : 0;
	/* Advanced Opt-Out: Twilio names the keyword list the body matched,
	 * custom words included (see the top); without it, the body decides
	 * centrally. */
	opt = field(f, "OptOutType", NULL);
	ev->keyword = optout_verdict(opt ? opt->value : NULL,
	                             (const char *const[]){"STOP", "START", "HELP"}, strcasecmp);
	event_finish(ev);
}

static int twilio_parse(const void *state, struct provider_request *req,
                        struct provider_result *res, char *err, size_t errlen)
{
	const struct twilio_req *tr = req->scratch;
	const struct form *f = &tr->form;
	struct dlr_event *ev = provider_events_new(req->arena, "twilio", 1);
	const struct form_field *sid, *st, *ec, *to, *from;

	(void)state;
	(void)err;
	(void)errlen;
	res->events = ev;
	res->n_events = 1;

	if (is_inbound(f)) {
		parse_inbound(req, f, res, ev);
		return 0;
	}
	sid = field(f, "MessageSid", "SmsSid");
	st = field(f, "MessageStatus", "SmsStatus");
	ev->provider_message_id =
	    sid ? canonical_sid(req->arena, sid->value, sid->value_len) : NULL;
	ev->raw_status =
	    st ? provider_text(req->arena, st->value, st->value_len, LIM_STATUS_BYTES) : NULL;
	if (!ev->provider_message_id || !ev->raw_status) {
		/* not provider_unusable(): the review row keeps the MessageSid
		 * when only the status is missing */
		ev->kind = EV_UNUSABLE;
		ev->review = REVIEW_UNUSABLE;
		ev->review_detail =
		    !ev->provider_message_id ? "no usable MessageSid" : "no usable MessageStatus";
		ev->status = ST_UNKNOWN;
		event_finish(ev);
		return 0;
	}
	ev->kind = EV_STATUS;
	ev->status = ST_UNKNOWN;
	ev->review = REVIEW_UNKNOWN_STATUS;
	for (size_t i = 0; i < ARRAY_LEN(status_map); i++) {
		if (strcmp(ev->raw_status, status_map[i].raw) == 0) {
			ev->status = status_map[i].st;
			ev->read = status_map[i].read;
			ev->review = REVIEW_NONE;
			break;
		}
	}
	if (ev->review == REVIEW_UNKNOWN_STATUS)
		ev->review_detail = "status not in Twilio's vocabulary";
	/* failed on purpose, not for a reason to retry (providers.md 1.3) */
	if (strcmp(ev->raw_status, "canceled") == 0)
		ev->error_reason = ER_CANCELED;
	ec = field(f, "ErrorCode", NULL);
	if (ec)
		ev->error_code =
		    provider_text(req->arena, ec->value, ec->value_len, LIM_STATUS_BYTES);
	to = field(f, "To", NULL);
	if (to)
		provider_set_recipient(ev, req->arena, to->value, to->value_len);
	from = field(f, "From", NULL);
	if (from)
		ev->sender_identity =
		    provider_text(req->arena, from->value, from->value_len, LIM_ID_BYTES);
	event_finish(ev);
	return 0;
}

const struct provider provider_twilio = {
    .name = "twilio",
    .hooks = (1u << HOOK_STATUS) | (1u << HOOK_INBOUND),
    .get_hooks = 1u << HOOK_INBOUND,
    .keys = twilio_keys,
    .errors = twilio_errors,
    .canonical_id = canonical_sid,
    .init = twilio_init,
    .fini = twilio_fini,
    .authenticate = twilio_authenticate,
    .parse = twilio_parse,
};
