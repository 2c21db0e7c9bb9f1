/* SPDX-License-Identifier: MIT */
/*
 * Plivo message status callbacks and inbound messages (message_url).
 *
 * Transport: POST application/x-www-form-urlencoded, or GET with the fields
 * in the query string (the method is chosen per message / per application).
 * Status and inbound URLs are configured separately at Plivo, but either
 * path accepts both and routes by payload: a Status field (other than
 * "received") makes a status callback, otherwise MessageUUID with
 * From/Text/Body makes an inbound message.
 *
 * Authenticity (plivo/plivo-node lib/utils/v3Security.js and security.js,
 * plivo/plivo-python plivo/utils/signature_v3.py):
 * - V3: X-Plivo-Signature-V3 (one or more comma-separated signatures) and
 *   X-Plivo-Signature-V3-Nonce; base64(HMAC-SHA256(auth_token,
 *   url_part + "." + nonce)), where url_part is the URL without its query,
 *   then "?" + the query parameters sorted ("k=v" joined by "&", decoded),
 *   then for POST "." (only when both exist) and the POST parameters sorted,
 *   each as name+value.
 * - V2, only when no V3 header came: X-Plivo-Signature-V2 and
 *   X-Plivo-Signature-V2-Nonce; base64(HMAC-SHA256(auth_token, URL without
 *   query + nonce)).  V2 covers neither the body nor the query: one
 *   captured (nonce, signature) pair lets anyone post any callback to that
 *   path.  Plivo's messaging documentation shows V2 on message callbacks,
 *   so it is accepted by default; [plivo] accept_v2 = false refuses it once
 *   the account's callbacks carry V3.
 * - The main-account headers (X-Plivo-Signature-Ma-V3, -Ma-V2, signed with
 *   the main account's token) are checked with main_auth_tokens and with
 *   auth_tokens: a main account's own token is the main token, and
 *   messaging callbacks carry their signature in Ma-V3, the plain V3 being
 *   "the voice-style value" that need not verify (the Plivo integrations
 *   written by a Plivo engineer, chatwoot's Plivo::SignatureValidator and
 *   openHAB's PlivoSignatureValidator.validateCallback, check Ma-V3 first,
 *   with the account's one Auth Token; activepieces' Plivo piece too).  A
 *   V3-family header present makes V3 decide, as validateCallback does.  A
 *   token dlrd holds verifies whichever header it is in, so this accepts
 *   nothing a forger could make.
 * The URL is [server] public_url + the raw request path, as Plivo requested
 * it.  No timestamp is signed: Plivo's schemes have no replay window.
 *
 * Judgment calls: sorting is by bytes (UTF-8 code point order, as
 * plivo-python sorts; plivo-node sorts UTF-16 code units, which differs only
 * between supplementary characters and U+E000..U+FFFF).  For a URL query with
 * an empty value, plivo-node keeps "k=" while plivo-python's parse_qs drops
 * it; both candidates are tried.
 *
 * What Plivo does not tell: no event id (events deduplicate on MessageUUID,
 * Status, ErrorCode); its times (MessageTime, SentTime, DeliveryReportTime,
 * "YYYY-mm-dd HH:MM:SS.ffffff") carry no time zone, so occurred_ms is set
 * only when a value carries an explicit offset and never guessed.
 * `Sequence` orders the callbacks of one message; it is kept in the raw
 * payload only, since the status precedence already makes arrival order
 * irrelevant and a retry's Sequence is not documented to be stable.  Plivo
 * reports no handset delivery for US and Canadian numbers: "sent" can be the
 * last status there.
 *
 * Inbound: MessageIntent is "optout", "optin" or "help" when the body
 * matched one of Plivo's keyword lists (blank otherwise; Plivo "Handling
 * incoming SMS/MMS"), and Plivo blocks or unblocks the sender by it: it
 * decides the keyword; when blank, the body is classified centrally.
 */
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "dlrd_limits.h"
#include "form.h"
#include "provider.h"

struct plivo {
	char **tokens;
	size_t n_tokens;
	char **main_tokens; /* NULL unless main_auth_tokens is configured */
	size_t n_main;
	bool accept_v2;
};

static const struct {
	const char *raw;
	enum dlr_status st;
	bool read;
} status_map[] = {
    {"queued", ST_ACCEPTED, false},
    {"sent", ST_SENT, false},
    {"failed", ST_FAILED, false},
    {"delivered", ST_DELIVERED, false},
    {"undelivered", ST_UNDELIVERED, false},
    {"rejected", ST_REJECTED, false}, /* older documentation */
    {"read", ST_DELIVERED, true},     /* WhatsApp read receipt */
};

/* Plivo messaging error codes (titles from Plivo's error code page; codes
 * from 60 on are not confirmed against it, see providers.md 5.5). */
static const struct provider_error plivo_errors[] = {
    {"10", ER_CARRIER_FILTERED, "Invalid Message"},
    {"20", ER_PROVIDER_ERROR, "Network Error"},
    {"30", ER_SPAM_BLOCKED, "Spam Detected"},
    {"40", ER_SENDER_NOT_REGISTERED, "Invalid Source Number"},
    {"50", ER_INVALID_NUMBER, "Invalid Destination Number"},
    {"60", ER_PROVIDER_ERROR, "Loop Detected"},
    {"70", ER_INVALID_NUMBER, "Destination Permanently Unavailable"},
    {"80", ER_UNREACHABLE, "Destination Temporarily Unavailable"},
    {"90", ER_PROVIDER_ERROR, "No Route Available"},
    {"100", ER_CARRIER_FILTERED, "Prohibited by Carrier"},
    {"110", ER_UNKNOWN, "Message Too Long"},
    {"200", ER_OPTED_OUT, "Source Number Blocked by STOP from Destination Number"},
    {"300", ER_PROVIDER_ERROR, "Failed to Dispatch Message"},
    {"420", ER_EXPIRED, "Message Expired"},
    {"900", ER_OUT_OF_CREDIT, "Insufficient Credit"},
    {"1000", ER_UNKNOWN, "Unknown Error"},
    {NULL, ER_NONE, NULL},
};

static const struct config_key plivo_keys[] = {
    {"auth_tokens", "comma-separated Auth Tokens of the (sub)account; any may verify"},
    {"main_auth_tokens",
     "comma-separated main-account Auth Tokens, for a subaccount's callbacks: the "
     "X-Plivo-Signature-Ma-* headers are checked with these (and with auth_tokens)"},
    {"accept_v2", "true (default) or false: accept X-Plivo-Signature-V2, which signs the URL "
                  "path only"},
    {NULL, NULL},
};

static void plivo_fini(void *state)
{
	struct plivo *p = state;
	if (!p)
		return;
	config_list_free(p->tokens);
	config_list_free(p->main_tokens);
	free(p);
}

static int plivo_init(const struct config *cfg, void **state, char *err, size_t errlen)
{
	struct plivo *p = xcalloc(1, sizeof(*p));
	const char *v2 = config_get(cfg, "plivo", "accept_v2");

	*state = NULL;
	p->accept_v2 = true;
	if (v2 && strcmp(v2, "false") == 0) {
		p->accept_v2 = false;
	} else if (v2 && strcmp(v2, "true") != 0) {
		util_fmt(err, errlen, "config: plivo.accept_v2: must be true or false");
		plivo_fini(p);
		return DLRD_ECONFIG;
	}
	if (provider_config_list(cfg, "plivo", "auth_tokens", "tokens", 0, &p->tokens, &p->n_tokens,
	                         err, errlen) != 0 ||
	    provider_config_list(cfg, "plivo", "main_auth_tokens", "tokens", 0, &p->main_tokens,
	                         &p->n_main, err, errlen) != 0) {
		plivo_fini(p);
		return DLRD_ECONFIG;
	}
	if (p->n_tokens + p->n_main == 0) {
		plivo_fini(p);
		return 0;
	}
	*state = p;
	return 0;
}

/* ---- signatures ---- */

/* The decoded request, kept for parse(). */
struct plivo_req {
	struct form query;         /* URL query parameters */
	struct form params;        /* POST body parameters (empty for GET) */
	const struct form *fields; /* where the callback's fields are */
};

static int pair_cmp(const void *a, const void *b)
{
	const struct form_field *x = *(const struct form_field *const *)a;
	const struct form_field *y = *(const struct form_field *const *)b;
	size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	int c = memcmp(x->name, y->name, n);
	if (c || x->name_len != y->name_len)
		return c ? c : (x->name_len < y->name_len ? -1 : 1);
	n = x->value_len < y->value_len ? x->value_len : y->value_len;
	c = memcmp(x->value, y->value, n);
	if (c || x->value_len != y->value_len)
		return c ? c : (x->value_len < y->value_len ? -1 : 1);
	return 0;
}

/* The fields of f sorted by (name, value), in the arena. */
static const struct form_field **sorted(struct arena *a, const struct form *f)
{
	const struct form_field **s = arena_alloc(a, (f->n ? f->n : 1) * sizeof(*s));
	for (size_t i = 0; i < f->n; i++)
		s[i] = &f->fields[i];
	qsort(s, f->n, sizeof(*s), pair_cmp);
	return s;
}

static char *put(char *w, const char *p, size_t n)
{
	memcpy(w, p, n);
	return w + n;
}

/* Builds the V3 string to sign (without "." + nonce).  drop_blank leaves
 * query parameters with an empty value out (plivo-python's parse_qs). */
static struct iov v3_base(struct arena *a, const char *public_url, struct iov path, bool post,
                          const struct form *query, const struct form *params, bool drop_blank)
{
	size_t cap = strlen(public_url) + path.n + 4;
	const struct form_field **q = sorted(a, query), **pp = sorted(a, params);
	for (size_t i = 0; i < query->n; i++)
		cap += query->fields[i].name_len + query->fields[i].value_len + 2;
	for (size_t i = 0; i < params->n; i++)
		cap += params->fields[i].name_len + params->fields[i].value_len;
	char *buf = arena_alloc(a, cap), *w = buf;
	size_t nq = 0;

	w = put(w, public_url, strlen(public_url));
	w = put(w, path.p, path.n);
	for (size_t i = 0; i < query->n; i++) {
		if (drop_blank && q[i]->value_len == 0)
			continue;
		*w++ = nq++ ? '&' : '?';
		w = put(w, q[i]->name, q[i]->name_len);
		*w++ = '=';
		w = put(w, q[i]->value, q[i]->value_len);
	}
	if (post && params->n) {
		if (nq)
			*w++ = '.';
		else
			*w++ = '?';
		for (size_t i = 0; i < params->n; i++) {
			w = put(w, pp[i]->name, pp[i]->name_len);
			w = put(w, pp[i]->value, pp[i]->value_len);
		}
	}
	return (struct iov){buf, (size_t)(w - buf)};
}

/* true when one of the comma-separated signatures in hdr equals
 * base64(HMAC-SHA256(token, msg + sep + nonce)) for one of the tokens. */
static bool hmac_matches(char *const *tokens, size_t ntokens, struct iov msg, const char *sep,
                         const char *nonce, const char *hdr)
{
	bool ok = false;
	for (size_t t = 0; t < ntokens; t++) {
		uint8_t mac[CRYPTO_SHA256_LEN];
		char b64[4 * ((CRYPTO_SHA256_LEN + 2) / 3) + 1];
		struct crypto_piece pieces[] = {
		    {msg.p, msg.n}, {sep, strlen(sep)}, {nonce, strlen(nonce)}};
		crypto_hmac(CRYPTO_SHA256, tokens[t], strlen(tokens[t]), pieces, ARRAY_LEN(pieces),
		            mac);
		size_t bl = crypto_b64_encode(mac, sizeof(mac), b64);
		const char *p = hdr;
		while (*p) {
			size_t n = strcspn(p, ",");
			const char *s = p, *e = p + n;
			while (s < e && (*s == ' ' || *s == '\t'))
				s++;
			while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			ok |= crypto_ct_eq(s, (size_t)(e - s), b64, bl);
			p += n;
			if (*p == ',')
				p++;
		}
	}
	return ok;
}

static bool has_blank(const struct form *f)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->fields[i].value_len == 0)
			return true;
	return false;
}

/* The two V3 strings to sign of one request (as sent, and without blank
 * query values), each built at most once: a request may carry both
 * X-Plivo-Signature-V3 and -Ma-V3, and building one copies and sorts the
 * whole body (a forged 64 KiB form paid that four times). */
struct v3_bases {
	struct iov m[2]; /* [drop_blank]; p NULL until built */
};

static struct iov v3_get(struct provider_request *req, const struct plivo_req *pr,
                         struct v3_bases *b, bool drop_blank)
{
	struct iov *m = &b->m[drop_blank];
	if (!m->p)
		*m = v3_base(req->arena, req->public_url, req->path,
		             strcmp(req->method, "POST") == 0, &pr->query, &pr->params, drop_blank);
	return *m;
}

static bool v3_ok(struct provider_request *req, const struct plivo_req *pr, struct v3_bases *b,
                  char *const *tokens, size_t ntokens, const char *nonce, const char *hdr)
{
	if (hmac_matches(tokens, ntokens, v3_get(req, pr, b, false), ".", nonce, hdr))
		return true;
	if (!has_blank(&pr->query))
		return false;
	return hmac_matches(tokens, ntokens, v3_get(req, pr, b, true), ".", nonce, hdr);
}

static bool v2_ok(struct provider_request *req, char *const *tokens, size_t ntokens,
                  const char *nonce, const char *hdr)
{
	size_t ul = strlen(req->public_url);
	char *url = arena_alloc(req->arena, ul + req->path.n + 1);
	memcpy(url, req->public_url, ul);
	memcpy(url + ul, req->path.p, req->path.n);
	return hmac_matches(tokens, ntokens, (struct iov){url, ul + req->path.n}, "", nonce, hdr);
}

static const char *hdr(struct provider_request *req, const char *name)
{
	const char *v = req->header(req->hctx, name);
	return v && *v ? v : NULL;
}

static int plivo_authenticate(const void *state, struct provider_request *req, char *err,
                              size_t errlen)
{
	const struct plivo *p = state;
	struct plivo_req *pr = arena_alloc(req->arena, sizeof(*pr));
	bool post = strcmp(req->method, "POST") == 0;
	const char *v3, *ma3, *v2, *ma2, *nonce;
	struct v3_bases bases = {{{NULL, 0}, {NULL, 0}}};
	bool ok = false;

	memset(pr, 0, sizeof(*pr));
	req->scratch = pr;
	if (!post && strcmp(req->method, "GET") != 0) {
		util_fmt(err, errlen, "Plivo callbacks are POST or GET");
		return DLRD_EMETHOD;
	}
	if (post && strcmp(req->content_type, "application/x-www-form-urlencoded") != 0) {
		util_fmt(err, errlen, "content type must be application/x-www-form-urlencoded");
		return DLRD_EUNSUPP;
	}
	if (form_decode(req->arena, req->query.p, req->query.n, LIM_FORM_FIELDS, &pr->query, err,
	                errlen) != 0)
		return DLRD_EINVAL;
	if (post && form_decode(req->arena, req->body.p, req->body.n, LIM_FORM_FIELDS, &pr->params,
	                        err, errlen) != 0)
		return DLRD_EINVAL;
	pr->fields = post ? &pr->params : &pr->query;

	v3 = hdr(req, "X-Plivo-Signature-V3");
	ma3 = hdr(req, "X-Plivo-Signature-Ma-V3");
	v2 = hdr(req, "X-Plivo-Signature-V2");
	ma2 = hdr(req, "X-Plivo-Signature-Ma-V2");
	if (v3 || ma3) {
		nonce = hdr(req, "X-Plivo-Signature-V3-Nonce");
		if (!nonce) {
			util_fmt(err, errlen, "missing X-Plivo-Signature-V3-Nonce");
			return DLRD_EAUTH;
		}
		if (v3 && p->n_tokens)
			ok = v3_ok(req, pr, &bases, p->tokens, p->n_tokens, nonce, v3);
		if (!ok && ma3 && p->n_main)
			ok = v3_ok(req, pr, &bases, p->main_tokens, p->n_main, nonce, ma3);
		if (!ok && ma3 && p->n_tokens)
			ok = v3_ok(req, pr, &bases, p->tokens, p->n_tokens, nonce, ma3);
		if (!ok) {
			util_fmt(err, errlen, "X-Plivo-Signature-V3 does not verify");
			return DLRD_EAUTH;
		}
		return 0;
	}
	if ((v2 || ma2) && !p->accept_v2) {
		util_fmt(err, errlen, "X-Plivo-Signature-V2 refused (plivo.accept_v2 = false)");
		return DLRD_EAUTH;
	}
	if (v2 || ma2) {
		nonce = hdr(req, "X-Plivo-Signature-V2-Nonce");
		if (!nonce) {
			util_fmt(err, errlen, "missing X-Plivo-Signature-V2-Nonce");
			return DLRD_EAUTH;
		}
		if (v2 && p->n_tokens)
			ok = v2_ok(req, p->tokens, p->n_tokens, nonce, v2);
		if (!ok && ma2 && p->n_main)
			ok = v2_ok(req, p->main_tokens, p->n_main, nonce, ma2);
		if (!ok && ma2 && p->n_tokens)
			ok = v2_ok(req, p->tokens, p->n_tokens, nonce, ma2);
		if (!ok) {
			util_fmt(err, errlen, "X-Plivo-Signature-V2 does not verify");
			return DLRD_EAUTH;
		}
		return 0;
	}
	util_fmt(err, errlen, "missing X-Plivo-Signature-V3 (or -V2)");
	return DLRD_EAUTH;
}

/* ---- parse ---- */

static const struct form_field *field(const struct form *f, const char *name)
{
	const struct form_field *x = form_get(f, name);
	return x && x->value_len ? x : NULL;
}

static const char *text_of(struct arena *a, const struct form *f, const char *name, size_t max)
{
	const struct form_field *x = field(f, name);
	return x ? provider_text(a, x->value, x->value_len, max) : NULL;
}

/* Plivo message UUIDs, lower-cased (they are sent lower-case; an app may
 * have stored them upper-case). */
static const char *canonical_uuid(struct arena *a, const struct form *f)
{
	const struct form_field *x = field(f, "MessageUUID");
	return x ? provider_hex_id(a, x->value, x->value_len) : NULL;
}

/* A Plivo time, only when it carries an explicit zone (see the top). */
static int64_t plivo_time(const struct form *f, const char *name)
{
	const struct form_field *x = field(f, name);
	int64_t ms;
	if (x && util_parse_rfc3339(x->value, x->value_len, &ms) == 0)
		return ms;
	return -1;
}

static void parse_inbound(struct provider_request *req, const struct form *f, struct dlr_event *ev)
{
	const struct form_field *from = field(f, "From"), *text = field(f, "Text"), *intent;

	ev->kind = EV_INBOUND;
	ev->provider_message_id = canonical_uuid(req->arena, f);
	ev->raw_status = "received";
	ev->status = ST_DELIVERED;
	ev->occurred_ms = plivo_time(f, "MessageTime");
	if (!ev->provider_message_id) {
		provider_unusable(ev, "inbound message without MessageUUID");
		return;
	}
	if (from)
		provider_set_recipient(ev, req->arena, from->value, from->value_len);
	ev->sender_identity = text_of(req->arena, f, "To", LIM_ID_BYTES);
	if (!text)
		text = field(f, "Body"); /* MMS and WhatsApp */
	ev->text = text ? arena_strndup(req->arena, text->value, text->value_len) : "";
	ev->text_len = text ? text->value_len : 0;
	/* Plivo's own verdict, by which it blocks or unblocks the sender (see
	 * the top); blank: the body decides centrally */
	intent = field(f, "MessageIntent");
	ev->keyword = optout_verdict(intent ? intent->value : NULL,
	                             (const char *const[]){"optout", "optin", "help"}, strcmp);
	event_finish(ev);
}

static void parse_status(struct provider_request *req, const struct form *f, struct dlr_event *ev)
{
	const struct form_field *st = field(f, "Status"), *to = field(f, "To");
	const char *time_field = "MessageTime";

	ev->kind = EV_STATUS;
	ev->provider_message_id = canonical_uuid(req->arena, f);
	ev->raw_status = provider_text(req->arena, st->value, st->value_len, LIM_STATUS_BYTES);
	if (!ev->provider_message_id || !ev->raw_status) {
		/* not provider_unusable(): the review row keeps the MessageUUID
		 * when only the status is unusable */
		ev->kind = EV_UNUSABLE;
		ev->review = REVIEW_UNUSABLE;
		ev->review_detail =
		    !ev->provider_message_id ? "no usable MessageUUID" : "no usable Status";
		ev->status = ST_UNKNOWN;
		event_finish(ev);
		return;
	}
	ev->status = ST_UNKNOWN;
	ev->review = REVIEW_UNKNOWN_STATUS;
	ev->review_detail = "status not in Plivo's vocabulary";
	for (size_t i = 0; i < ARRAY_LEN(status_map); i++) {
		if (strcmp(ev->raw_status, status_map[i].raw) == 0) {
			ev->status = status_map[i].st;
			ev->read = status_map[i].read;
			ev->review = REVIEW_NONE;
			ev->review_detail = NULL;
			break;
		}
	}
	if (ev->status == ST_DELIVERED || ev->status == ST_UNDELIVERED)
		time_field = "DeliveryReportTime";
	else if (ev->status == ST_SENT)
		time_field = "SentTime";
	else if (ev->status == ST_ACCEPTED)
		time_field = "QueuedTime";
	ev->occurred_ms = plivo_time(f, time_field);
	ev->error_code = text_of(req->arena, f, "ErrorCode", LIM_STATUS_BYTES);
	if (to)
		provider_set_recipient(ev, req->arena, to->value, to->value_len);
	ev->sender_identity = text_of(req->arena, f, "From", LIM_ID_BYTES);
	event_finish(ev);
}

static int plivo_parse(const void *state, struct provider_request *req, struct provider_result *res,
                       char *err, size_t errlen)
{
	const struct plivo_req *pr = req->scratch;
	const struct form *f = pr->fields;
	const struct form_field *st = field(f, "Status");
	struct dlr_event *ev = provider_events_new(req->arena, "plivo", 1);

	(void)state;
	(void)err;
	(void)errlen;
	res->events = ev;
	res->n_events = 1;
	if (st && !(st->value_len == 8 && memcmp(st->value, "received", 8) == 0)) {
		parse_status(req, f, ev);
		return 0;
	}
	if (field(f, "MessageUUID") && (field(f, "From") || field(f, "Text") || field(f, "Body"))) {
		/* Plivo expects Plivo XML back from a message_url; an empty
		 * Response sends no reply. */
		res->content_type = "application/xml";
		res->body = "<Response></Response>";
		parse_inbound(req, f, ev);
		return 0;
	}
	provider_unusable(ev, "neither a status callback nor an inbound message");
	return 0;
}

const struct provider provider_plivo = {
    .name = "plivo",
    .hooks = (1u << HOOK_STATUS) | (1u << HOOK_INBOUND),
    .get_hooks = (1u << HOOK_STATUS) | (1u << HOOK_INBOUND),
    .keys = plivo_keys,
    .errors = plivo_errors,
    .canonical_id = provider_hex_id,
    .init = plivo_init,
    .fini = plivo_fini,
    .authenticate = plivo_authenticate,
    .parse = plivo_parse,
};
