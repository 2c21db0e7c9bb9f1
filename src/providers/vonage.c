/* SPDX-License-Identifier: MIT */
/*
 * Vonage SMS API (the legacy "SMS API", ex-Nexmo): delivery receipts and
 * inbound SMS.
 *
 * Transport: Vonage calls the account's (or the message's `callback`) URL
 * with GET (query string), POST application/x-www-form-urlencoded or POST
 * application/json, as set in the dashboard.  Configure
 * <public_url>/webhooks/vonage/status as the delivery receipt URL and
 * <public_url>/webhooks/vonage/inbound as the inbound URL; both paths take
 * both kinds and route by payload (a receipt has `status`, an inbound
 * message has `text`/`type`), so one URL for both works too.
 *
 * Signature: the `sig` parameter (Vonage "signed webhooks", which Vonage
 * support must enable for the account; dlrd never accepts an unsigned
 * callback).  Every parameter but `sig`, sorted by name, as "&name=value"
 * with '&' and '=' in values replaced by '_'; then md5hash:
 * hex(MD5(string + secret)), or hex(HMAC-{MD5,SHA1,SHA256,SHA512}(secret,
 * string)), per [vonage] signature_method (as @vonage/sms
 * SMS.verifySignature computes it).  Hex is compared case-insensitively in
 * constant time.  The signed `timestamp` (Unix seconds) must lie within
 * tolerance_seconds of our clock, either way.  That timestamp is
 * message-timestamp, when Vonage *started* to push the callback (@vonage/sms
 * DeliveryReceipt type, Vonage's inbound SMS guide), so every retry repeats
 * the first attempt's; Vonage retries an inbound SMS for 24 h and a receipt
 * for 72 h (providers.md 2.5), so the default covers 73 h rather than
 * minutes, which would turn every retry after a short outage into a 401
 * until Vonage gives up.  A replay inside the window is a
 * duplicate of the event it copies (same messageId, status, err-code,
 * scts), so it stores nothing.  JSON bodies: the top-level
 * members are the parameters (strings as they are, integers in decimal,
 * true/false as words; a judgment call, since Vonage documents string
 * values only).
 *
 * What Vonage does not tell: no event id (receipts deduplicate on
 * messageId, status, err-code and scts); `scts` has minute precision only;
 * `message-timestamp` is when Vonage started pushing the webhook, not when
 * anything happened, so a receipt keeps it in the raw payload only.  An
 * inbound message has no other time, and Vonage starts pushing it when it
 * arrives, in the order the user sent them, and repeats that time in every
 * retry for 24 h: it is the inbound message's provider time, so that the
 * opt-out state follows the order the user wrote STOP and START in, not the
 * order the retries of a failed push got through; a concatenated SMS
 * has one messageId per part and each part's receipt is its own message in
 * dlrd (an application that sent a long SMS gets one summary row per part);
 * a multipart inbound SMS arrives as one webhook per part (concat-ref,
 * concat-part), each stored as its own inbound message, and never read as
 * an opt-out keyword: the last part of a long message may be a lone "stop"
 * or "yes" that is not what the user sent.
 */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "dlrd_limits.h"
#include "form.h"
#include "json.h"
#include "provider.h"

/* Receipts are retried for 72 h with the first attempt's timestamp (see the
 * top), plus an hour. */
/* Values a JSON body may hold: its LIM_FORM_FIELDS members and what small
 * arrays or objects they carry (Vonage sends a flat object of scalars). */
#define VONAGE_JSON_VALUES (4u * LIM_FORM_FIELDS)
/* The largest JSON body taken.  Every signed value is a member, so the body
 * is parsed before the signature can be checked, at about 20 ns a byte
 * (bench/forged: 1.7-1.9 ms for a forged 64 KiB body); Vonage's own are a
 * flat object of a dozen short scalars, under 2 KiB (an inbound part's
 * text is at most 70 characters written as \u escapes). */
#define VONAGE_JSON_MAX_BYTES    16384u
#define VONAGE_TOLERANCE_DEFAULT (73u * 3600u)

enum vonage_method { VM_MD5HASH = 0, VM_MD5, VM_SHA1, VM_SHA256, VM_SHA512 };

static const struct {
	const char *name;
	enum vonage_method m;
} methods[] = {
    {"md5hash", VM_MD5HASH}, {"md5", VM_MD5},       {"sha1", VM_SHA1},
    {"sha256", VM_SHA256},   {"sha512", VM_SHA512},
};

/* Read-only after init; shared by every HTTP thread. */
struct vonage {
	char **secrets;
	size_t n_secrets;
	enum vonage_method method;
	int64_t tolerance_s;
};

/* Vonage DLR `status` -> normalized (providers.md 2.3; Vonage documents
 * both `failed` and `undelivered`). */
static const struct {
	const char *raw;
	enum dlr_status st;
} status_map[] = {
    /* "the target carrier has accepted to send this SMS": with the carrier */
    {"accepted", ST_SENT},
    /* "in the process of being delivered" (intermediate) */
    {"buffered", ST_SENT},
    {"delivered", ST_DELIVERED},
    /* carrier expiry, or Vonage's own after 72 h without a final receipt */
    {"expired", ST_EXPIRED},
    /* "the target carrier failed to deliver this message": carrier-level */
    {"failed", ST_UNDELIVERED},
    {"undelivered", ST_UNDELIVERED},
    {"rejected", ST_REJECTED},
    /* "the carrier returned an undocumented status code": final, inconclusive */
    {"unknown", ST_UNKNOWN},
};

/* DLR err-code (Vonage delivery receipts guide; titles as Vonage words
 * them).  The reasons are our judgment of what support should say. */
static const struct provider_error vonage_errors[] = {
    {"1", ER_UNKNOWN, "Unknown"},
    {"2", ER_UNREACHABLE, "Absent Subscriber Temporary"},
    {"3", ER_INVALID_NUMBER, "Absent Subscriber Permanent"},
    /* the subscriber barred SMS at the carrier: the number cannot take them */
    {"4", ER_LANDLINE, "Call barred by user"},
    {"5", ER_PROVIDER_ERROR, "Portability Error"},
    {"6", ER_CARRIER_FILTERED, "Anti-Spam Rejection"},
    {"7", ER_UNREACHABLE, "Handset Busy"},
    {"8", ER_PROVIDER_ERROR, "Network Error"},
    {"9", ER_OPTED_OUT, "Illegal Number"},
    {"10", ER_UNKNOWN, "Invalid Message"},
    {"11", ER_PROVIDER_ERROR, "Unroutable"},
    {"12", ER_UNREACHABLE, "Destination unreachable"},
    {"13", ER_CARRIER_FILTERED, "Subscriber Age Restriction"},
    {"14", ER_CARRIER_FILTERED, "Number Blocked by Carrier"},
    {"15", ER_UNREACHABLE, "Pre-Paid - Insufficient funds"},
    {"99", ER_PROVIDER_ERROR, "General Error"},
    {NULL, ER_NONE, NULL},
};

static const struct config_key vonage_keys[] = {
    {"signature_secrets", "comma-separated signature secrets (not the API secret); a "
                          "request passes if any verifies"},
    {"signature_method", "md5hash (Vonage's default), md5, sha1, sha256 or sha512: as set "
                         "in the Vonage dashboard"},
    {"tolerance_seconds", "how far the signed timestamp (the first attempt's, repeated by "
                          "every retry) may be from our clock (default 262800: 73 h)"},
    {NULL, NULL},
};

static void vonage_fini(void *state)
{
	struct vonage *v = state;
	if (!v)
		return;
	config_list_free(v->secrets);
	free(v);
}

static int vonage_init(const struct config *cfg, void **state, char *err, size_t errlen)
{
	const char *method = config_get(cfg, "vonage", "signature_method");
	enum vonage_method m = VM_MD5HASH;
	int64_t tol_s;
	size_t n, i;
	char **list;

	*state = NULL;
	/* The other keys are checked even without secrets: a bad value stops
	 * start-up either way. */
	if (method) {
		for (i = 0; i < ARRAY_LEN(methods); i++)
			if (strcmp(method, methods[i].name) == 0)
				break;
		if (i == ARRAY_LEN(methods)) {
			util_fmt(err, errlen,
			         "config: vonage.signature_method: must be md5hash, md5, sha1, "
			         "sha256 or sha512");
			return DLRD_ECONFIG;
		}
		m = methods[i].m;
	}
	/* retries repeat the first attempt's timestamp (see the top) */
	if (provider_config_tolerance(cfg, "vonage", VONAGE_TOLERANCE_DEFAULT, &tol_s, err,
	                              errlen) != 0)
		return DLRD_ECONFIG;
	if (provider_config_list(cfg, "vonage", "signature_secrets", "secrets", 0, &list, &n, err,
	                         errlen) != 0)
		return DLRD_ECONFIG;
	if (n == 0)
		return 0;
	struct vonage *v = xcalloc(1, sizeof(*v));
	v->secrets = list;
	v->n_secrets = n;
	v->method = m;
	v->tolerance_s = tol_s;
	*state = v;
	return 0;
}

/* Appends one field to f (arena copies). */
static void add_field(struct arena *a, struct form *f, const char *name, size_t nl, const char *val,
                      size_t vl)
{
	struct form_field *x = &f->fields[f->n++];
	x->name = arena_strndup(a, name, nl);
	x->name_len = nl;
	x->value = arena_strndup(a, val, vl);
	x->value_len = vl;
}

/* The top-level members of a JSON object body as parameters; the body is
 * refused (DLRD_EINVAL) when it is not an object, nests deeper than
 * LIM_JSON_DEPTH or holds more than VONAGE_JSON_VALUES values.  It is parsed
 * before the signature (over these parameters) can be checked, so the
 * values are bounded first: 64 KB of [1,1,...] cost jansson 10 ms. */
static int json_params(struct arena *a, struct iov body, struct form *f, char *err, size_t errlen)
{
	json_t *root = jsonx_load_object_max(body.p, body.n, VONAGE_JSON_VALUES, err, errlen), *val;
	const char *key;
	int rc = 0;

	if (!root)
		return DLRD_EINVAL;
	if (json_object_size(root) > LIM_FORM_FIELDS) {
		util_fmt(err, errlen, "too many JSON members");
		rc = DLRD_EINVAL;
		goto out;
	}
	f->n = 0;
	f->fields = arena_alloc(a, (json_object_size(root) + 1) * sizeof(*f->fields));
	json_object_foreach(root, key, val)
	{
		char num[JSONX_NUM_MAX];
		const char *s;
		size_t kl = strlen(key), sl;
		if (kl > LIM_FIELD_BYTES) {
			util_fmt(err, errlen, "JSON member name too long");
			rc = DLRD_EINVAL;
			goto out;
		}
		if (jsonx_scalar(val, num, &s, &sl)) { /* a string, or an integer in decimal */
			if (sl > LIM_FIELD_BYTES) {
				util_fmt(err, errlen, "JSON member too long");
				rc = DLRD_EINVAL;
				goto out;
			}
			add_field(a, f, key, kl, s, sl);
		} else if (json_is_boolean(val)) {
			add_field(a, f, key, kl, json_is_true(val) ? "true" : "false",
			          json_is_true(val) ? 4 : 5);
		} else if (!json_is_null(val)) {
			/* reals, objects, arrays: their compact JSON text */
			char *d = json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY);
			size_t dl = d ? strlen(d) : 0;
			if (!d || dl > LIM_FIELD_BYTES) {
				free(d);
				util_fmt(err, errlen, "JSON member too long");
				rc = DLRD_EINVAL;
				goto out;
			}
			add_field(a, f, key, kl, d, dl);
			free(d);
		}
	}
out:
	json_decref(root);
	return rc;
}

static int cmp_field(const void *a, const void *b)
{
	const struct form_field *x = *(const struct form_field *const *)a;
	const struct form_field *y = *(const struct form_field *const *)b;
	size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	int c = memcmp(x->name, y->name, n);
	if (c)
		return c;
	return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

/*
 * The signed string: "&name=value" for every parameter but sig, sorted by
 * name (byte order, which is JavaScript's order for the ASCII names Vonage
 * uses), '&' and '=' in values replaced by '_'.  Returns NULL when a name
 * repeats (the SDK's object model cannot represent that, so neither can a
 * signature over it).
 */
static char *signed_string(struct arena *a, const struct form *f, size_t *len)
{
	const struct form_field **sorted = arena_alloc(a, (f->n + 1) * sizeof(*sorted));
	size_t n = 0, total = 0, at = 0;
	char *s;

	for (size_t i = 0; i < f->n; i++) {
		if (f->fields[i].name_len == 3 && memcmp(f->fields[i].name, "sig", 3) == 0)
			continue;
		sorted[n++] = &f->fields[i];
		total += 2 + f->fields[i].name_len + f->fields[i].value_len;
	}
	qsort(sorted, n, sizeof(*sorted), cmp_field);
	for (size_t i = 1; i < n; i++)
		if (cmp_field(&sorted[i - 1], &sorted[i]) == 0)
			return NULL;
	s = arena_alloc(a, total + 1);
	for (size_t i = 0; i < n; i++) {
		const struct form_field *x = sorted[i];
		s[at++] = '&';
		memcpy(s + at, x->name, x->name_len);
		at += x->name_len;
		s[at++] = '=';
		for (size_t k = 0; k < x->value_len; k++) {
			char c = x->value[k];
			s[at++] = (c == '&' || c == '=') ? '_' : c;
		}
	}
	s[at] = '\0';
	*len = at;
	return s;
}

/* hex digest of the signed string under one secret; returns the hex length. */
static size_t sign_one(enum vonage_method m, const char *secret, const char *s, size_t n,
                       char hex[2 * 64 + 1])
{
	uint8_t md[64];
	size_t mdlen;
	struct crypto_piece piece = {s, n};
	static const enum crypto_md hm[] = {
	    [VM_MD5] = CRYPTO_MD5,
	    [VM_SHA1] = CRYPTO_SHA1,
	    [VM_SHA256] = CRYPTO_SHA256,
	    [VM_SHA512] = CRYPTO_SHA512,
	};

	if (m == VM_MD5HASH) {
		/* plain MD5 over string + secret: not an HMAC, so not in crypto.h */
		EVP_MD_CTX *c = EVP_MD_CTX_new();
		unsigned len = 0;
		if (!c || !EVP_DigestInit_ex(c, EVP_md5(), NULL) || !EVP_DigestUpdate(c, s, n) ||
		    !EVP_DigestUpdate(c, secret, strlen(secret)) ||
		    !EVP_DigestFinal_ex(c, md, &len)) {
			EVP_MD_CTX_free(c);
			hex[0] = '\0';
			return 0;
		}
		EVP_MD_CTX_free(c);
		mdlen = len;
	} else {
		crypto_hmac(hm[m], secret, strlen(secret), &piece, 1, md);
		mdlen = crypto_md_len(hm[m]);
	}
	crypto_hex(md, mdlen, hex);
	return 2 * mdlen;
}

/* Scratch between authenticate() and parse(). */
struct vonage_req {
	struct form params;
};

static int vonage_authenticate(const void *state, struct provider_request *req, char *err,
                               size_t errlen)
{
	const struct vonage *v = state;
	struct vonage_req *vr = arena_alloc(req->arena, sizeof(*vr));
	const struct form_field *sig, *ts;
	char *s;
	size_t slen;
	uint64_t t;
	int64_t now_s = req->now_ms / 1000;
	bool ok = false;
	int rc;

	memset(vr, 0, sizeof(*vr));
	req->scratch = vr;
	if (strcmp(req->method, "GET") == 0) {
		rc = form_decode(req->arena, req->query.p, req->query.n, LIM_FORM_FIELDS,
		                 &vr->params, err, errlen);
	} else if (strcmp(req->method, "POST") == 0) {
		if (strcmp(req->content_type, "application/x-www-form-urlencoded") == 0) {
			rc = form_decode(req->arena, req->body.p, req->body.n, LIM_FORM_FIELDS,
			                 &vr->params, err, errlen);
		} else if (strcmp(req->content_type, "application/json") == 0) {
			if (req->body.n > VONAGE_JSON_MAX_BYTES) {
				util_fmt(err, errlen, "JSON body over %u bytes",
				         VONAGE_JSON_MAX_BYTES);
				return DLRD_ETOOBIG;
			}
			rc = json_params(req->arena, req->body, &vr->params, err, errlen);
		} else {
			util_fmt(err, errlen,
			         "content type must be application/json or "
			         "application/x-www-form-urlencoded");
			return DLRD_EUNSUPP;
		}
	} else {
		util_fmt(err, errlen, "Vonage callbacks are GET or POST");
		return DLRD_EMETHOD;
	}
	if (rc != 0)
		return DLRD_EINVAL;

	sig = form_get(&vr->params, "sig");
	if (!sig || sig->value_len == 0) {
		util_fmt(err, errlen, "missing sig (signed webhooks not enabled?)");
		return DLRD_EAUTH;
	}
	s = signed_string(req->arena, &vr->params, &slen);
	if (!s) {
		util_fmt(err, errlen, "a parameter is repeated");
		return DLRD_EINVAL;
	}
	for (size_t i = 0; i < v->n_secrets; i++) {
		char hex[2 * 64 + 1];
		size_t hl = sign_one(v->method, v->secrets[i], s, slen, hex);
		ok |= hl > 0 && crypto_ct_eq_nocase(hex, hl, sig->value, sig->value_len);
	}
	if (!ok) {
		util_fmt(err, errlen, "sig does not verify");
		return DLRD_EAUTH;
	}
	/* timestamp is signed: checked only once the signature holds */
	ts = form_get(&vr->params, "timestamp");
	if (!ts || util_parse_u64(ts->value, ts->value_len, &t) != 0 ||
	    t > (uint64_t)INT64_MAX / 1000) {
		util_fmt(err, errlen, "missing or malformed timestamp");
		return DLRD_EAUTH;
	}
	if ((int64_t)t < now_s - v->tolerance_s || (int64_t)t > now_s + v->tolerance_s) {
		util_fmt(err, errlen, "timestamp outside the tolerance");
		return DLRD_ESTALE;
	}
	return 0;
}

static const struct form_field *field(const struct form *f, const char *name)
{
	const struct form_field *x = form_get(f, name);
	return x && x->value_len ? x : NULL;
}

/*
 * scts: YYMMDDHHMM (Vonage also documents none with seconds, but a 12-digit
 * YYMMDDHHMMSS is accepted).  Vonage's SMS API reference gives no zone;
 * Vonage's US short code receipt reference and its Java SDK
 * (DeliveryReceiptRequest.getScts) state UTC, so it is read as UTC.
 * Returns -1 when absent or malformed.
 */
static int64_t parse_scts(const struct form_field *x)
{
	char buf[32];
	int64_t ms;

	if (!x || (x->value_len != 10 && x->value_len != 12))
		return -1;
	for (size_t i = 0; i < x->value_len; i++)
		if (x->value[i] < '0' || x->value[i] > '9')
			return -1;
	const char *p = x->value;
	util_fmt(buf, sizeof(buf), "20%.2s-%.2s-%.2sT%.2s:%.2s:%.2sZ", p, p + 2, p + 4, p + 6,
	         p + 8, x->value_len == 12 ? p + 10 : "00");
	if (util_parse_rfc3339(buf, strlen(buf), &ms) != 0)
		return -1;
	return ms;
}

static void parse_receipt(struct arena *a, const struct form *f, struct dlr_event *ev,
                          const struct form_field *id)
{
	const struct form_field *st = field(f, "status"), *ec = field(f, "err-code"),
	                        *to = field(f, "msisdn"), *from = field(f, "to");

	/* hex ids ("0A0000001234567B") and UUIDs lower-cased, others as sent */
	ev->provider_message_id = provider_hex_id(a, id->value, id->value_len);
	ev->raw_status = st ? provider_text(a, st->value, st->value_len, LIM_STATUS_BYTES) : NULL;
	if (!ev->provider_message_id || !ev->raw_status) {
		provider_unusable(ev, !ev->provider_message_id ? "no usable messageId"
		                                               : "no usable status");
		return;
	}
	ev->kind = EV_STATUS;
	ev->status = ST_UNKNOWN;
	ev->review = REVIEW_UNKNOWN_STATUS;
	ev->review_detail = "status not in Vonage's DLR vocabulary";
	for (size_t i = 0; i < ARRAY_LEN(status_map); i++) {
		if (strcmp(ev->raw_status, status_map[i].raw) == 0) {
			ev->status = status_map[i].st;
			ev->review = REVIEW_NONE;
			ev->review_detail = NULL;
			break;
		}
	}
	if (ec)
		ev->error_code = provider_text(a, ec->value, ec->value_len, LIM_STATUS_BYTES);
	ev->occurred_ms = parse_scts(field(f, "scts"));
	if (to)
		provider_set_recipient(ev, a, to->value, to->value_len);
	if (from)
		ev->sender_identity = provider_text(a, from->value, from->value_len, LIM_ID_BYTES);
	event_finish(ev);
}

/* Whether an inbound message is one part of a concatenated SMS: `concat`
 * "true" (JSON true reads the same), or a `concat-total` above 1. */
static bool is_part(const struct form *f)
{
	const struct form_field *c = field(f, "concat"), *t = field(f, "concat-total");
	unsigned total = 0;

	if (c && c->value_len == 4 && memcmp(c->value, "true", 4) == 0)
		return true;
	for (size_t i = 0; t && i < t->value_len && total <= 255; i++) {
		if (t->value[i] < '0' || t->value[i] > '9')
			return false;
		total = total * 10 + (unsigned)(t->value[i] - '0');
	}
	return total > 1;
}

/*
 * message-timestamp: "YYYY-MM-DD HH:MM:SS", UTC (Vonage's inbound SMS
 * guide).  Returns -1 when absent or malformed.
 */
static int64_t parse_message_timestamp(const struct form_field *x)
{
	char buf[24];
	int64_t ms;

	if (!x || x->value_len != 19 || x->value[10] != ' ')
		return -1;
	memcpy(buf, x->value, 19);
	buf[19] = 'Z';
	return util_parse_rfc3339(buf, 20, &ms) == 0 ? ms : -1;
}

static void parse_inbound(struct arena *a, const struct form *f, struct dlr_event *ev,
                          const struct form_field *id)
{
	const struct form_field *text = form_get(f, "text"), *user = field(f, "msisdn"),
	                        *ours = field(f, "to");

	ev->provider_message_id = provider_hex_id(a, id->value, id->value_len);
	if (!ev->provider_message_id) {
		provider_unusable(ev, "no usable messageId");
		return;
	}
	ev->kind = EV_INBOUND;
	ev->occurred_ms = parse_message_timestamp(field(f, "message-timestamp"));
	if (user)
		provider_set_recipient(ev, a, user->value, user->value_len);
	if (ours)
		ev->sender_identity = provider_text(a, ours->value, ours->value_len, LIM_ID_BYTES);
	/* binary messages carry data/udh instead of text */
	if (text) {
		ev->text = arena_strndup(a, text->value, text->value_len);
		ev->text_len = text->value_len;
	}
	ev->text_is_part = is_part(f);
	event_finish(ev);
}

static int vonage_parse(const void *state, struct provider_request *req,
                        struct provider_result *res, char *err, size_t errlen)
{
	const struct vonage_req *vr = req->scratch;
	const struct form *f = &vr->params;
	struct dlr_event *ev = provider_events_new(req->arena, "vonage", 1);
	const struct form_field *id = field(f, "messageId");

	(void)state;
	(void)err;
	(void)errlen;
	res->events = ev;
	res->n_events = 1;

	if (!id) {
		provider_unusable(ev, "no messageId");
	} else if (form_get(f, "status") || form_get(f, "err-code") || form_get(f, "scts")) {
		parse_receipt(req->arena, f, ev, id);
	} else if (form_get(f, "text") || form_get(f, "type") || form_get(f, "keyword")) {
		parse_inbound(req->arena, f, ev, id);
	} else {
		provider_unusable(ev, "neither a delivery receipt nor an inbound message");
	}
	return 0;
}

const struct provider provider_vonage = {
    .name = "vonage",
    .hooks = 1u << HOOK_STATUS | 1u << HOOK_INBOUND,
    .get_hooks = (1u << HOOK_STATUS) | (1u << HOOK_INBOUND),
    .keys = vonage_keys,
    .errors = vonage_errors,
    .canonical_id = provider_hex_id,
    .init = vonage_init,
    .fini = vonage_fini,
    .authenticate = vonage_authenticate,
    .parse = vonage_parse,
};
