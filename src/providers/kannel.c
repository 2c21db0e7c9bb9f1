/* SPDX-License-Identifier: MIT */
/*
 * Kannel delivery reports, fetched by Kannel's smsbox from the dlr-url of a
 * sent message.  Kannel cannot sign requests or add headers to them, so the
 * format is dlrd's own: a GET whose query string carries a shared token and
 * Kannel's escape codes.  Set in the sendsms request (or the sendsms-user
 * group):
 *
 *   dlr-url = https://dlrd.example.com/webhooks/kannel/status?token=SECRET
 *             &type=%d&smsc=%i&id=%F&to=%P&from=%p&ts=%T&answer=%A
 *
 * (one line; the dlr-url CGI variable must be URL-encoded once more).
 *
 * | param  | Kannel | meaning                                              | required |
 * |--------|--------|------------------------------------------------------|----------|
 * | token  |        | one of [kannel] tokens (constant-time comparison)    | yes      |
 * | type   | %d     | DLR type bitmask, decimal                            | yes      |
 * | id     | %F     | the message id (SMSC's id), or the app's own id      | yes      |
 * | to     | %P     | the recipient (Kannel's "receiver")                  | no       |
 * | from   | %p     | our sender id (Kannel's "sender")                    | no       |
 * | ts     | %T     | when Kannel got the DLR, Unix seconds                | no       |
 * | answer | %A     | the SMSC's DLR text ("... stat:DELIVRD err:000 ...") | no       |
 * | smsc   | %i     | smsc-id, kept in the raw payload only                | no       |
 *
 * answer= may hold any bytes (kannel_decode()); the others must be UTF-8.
 * Any other parameter (an app's own correlation id, say) is accepted and
 * kept in the raw payload.  An app that sends through several SMSCs whose
 * ids may collide should put its own id in id= instead of %F.
 *
 * Status: Kannel's bits are 1 delivered to phone, 2 not delivered to phone,
 * 4 queued on the SMSC (buffered), 8 accepted by the SMSC, 16 rejected by
 * the SMSC; Kannel 1.5 adds DLR_EXPIRED = 0x20|2 = 34 (what its SMPP module
 * reports for message_state EXPIRED) and DLR_UNKNOWN = 0x40|2 = 66 (gw/dlr.h).
 * One DLR carries one value in practice; a combination is decided by its
 * most significant final bit (16 > 32 > 64 > 2 > 1), so a failure bit always
 * outweighs a success bit; with no final bit, 8 or 4 is sent.  Mapping:
 * 1 delivered, 2 undelivered (refined by the SMPP "stat:" in answer:
 * EXPIRED expired, REJECTD rejected, UNKNOWN unknown), 4 and 8 sent,
 * 16 rejected, 34 expired, 66 unknown.  0, 32 or 64 without the bit 2 they
 * come with, both, or a bit above 64 is unknown and goes to review.
 *
 * error_code is the "err:" value of answer (the SMSC's code, typically 3
 * digits; all zeros means no error and is dropped), or the command_status
 * of a "NACK/<code>/..." answer.  occurred_ms is ts: Kannel stamps a DLR
 * when it receives it, and a retried dlr-url fetch repeats the same ts, so
 * events deduplicate on (id, type, err, ts).  There is no event id.
 *
 * What Kannel does not tell: the carrier's own event time (the SMPP "done
 * date" in answer has no time zone, so it stays in the raw payload), and an
 * error catalogue (err: codes are SMSC-specific).
 *
 * The token is a bearer secret in the query string: the front never logs
 * the request-target, and parse() replaces the token's value with
 * "REDACTED" in the raw payload it stores.  Serve dlrd over HTTPS (Kannel
 * fetches https dlr-urls when built with OpenSSL) and keep query strings
 * out of any proxy's access log.
 */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"
#include "dlrd_limits.h"
#include "form.h"
#include "provider.h"

#define KANNEL_TOKEN_MIN 16u
#define KANNEL_TS_MAX    253402300799ull /* 9999-12-31T23:59:59Z */
#define KANNEL_CODE_MAX  16u
/* Kannel 1.5's DLR_EXPIRED and DLR_UNKNOWN carry these bits with bit 2 */
#define KANNEL_DLR_EXPIRED 0x20u
#define KANNEL_DLR_UNKNOWN 0x40u

/* Read-only after init; any thread. */
struct kannel {
	uint8_t (*digests)[CRYPTO_SHA256_LEN]; /* SHA-256 of each token */
	size_t n_tokens;
};

/* One request's decoded query (authenticate() to parse(), in the arena). */
struct kannel_req {
	struct form form;                /* every pair but answer= */
	const struct form_field *answer; /* the first answer=, as bytes; NULL if none */
	struct form_field answer_field;
};

static const struct config_key kannel_keys[] = {
    {"tokens", "comma-separated shared tokens (16+ characters) for token= in the dlr-url"},
    {NULL, NULL},
};

static void kannel_fini(void *state)
{
	struct kannel *k = state;
	if (!k)
		return;
	free(k->digests);
	free(k);
}

static int kannel_init(const struct config *cfg, void **state, char *err, size_t errlen)
{
	char **list;
	size_t n;
	struct kannel *k;

	*state = NULL;
	if (provider_config_list(cfg, "kannel", "tokens", "tokens", KANNEL_TOKEN_MIN, &list, &n,
	                         err, errlen) != 0)
		return DLRD_ECONFIG;
	if (n == 0)
		return 0;
	k = xcalloc(1, sizeof(*k));
	k->digests = xcalloc(n, sizeof(*k->digests));
	for (size_t i = 0; i < n; i++) {
		crypto_sha256(list[i], strlen(list[i]), k->digests[i]);
		OPENSSL_cleanse(list[i], strlen(list[i]));
	}
	k->n_tokens = n;
	config_list_free(list);
	*state = k;
	return 0;
}

/* Whether the raw pair name p[0..n) decodes to want. */
static bool name_is(const char *p, size_t n, const char *want)
{
	size_t wl = strlen(want);
	char name[3 * 8 + 1];

	return n >= wl && n <= 3 * wl && wl <= 8 && form_unescape(p, n, name, 1) == (long)wl &&
	       memcmp(name, want, wl) == 0;
}

/*
 * Decodes the query into kr: every pair strictly (form_decode()) except the
 * first answer=, which is percent-decoded as bytes.  The answer is the
 * SMSC's receipt text, and its "text:" part quotes the message in the
 * SMSC's encoding (GSM 7-bit '@' is the byte 0, Latin-1 is not UTF-8), so
 * a strict decoding would refuse such a DLR (400), every fetch of it alike:
 * it was lost.  Only its ASCII stat: and err: fields are read (answer_field());
 * the stored raw payload is the query as sent.  Later answer= pairs are
 * dropped (only the first is read).
 */
static int kannel_decode(struct arena *a, struct iov q, struct kannel_req *kr, char *err,
                         size_t errlen)
{
	char *rest = arena_alloc(a, q.n + 1);
	size_t o = 0;

	kr->answer = NULL;
	for (const char *p = q.p, *end = q.p + q.n; p < end;) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *e = amp ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(e - p));
		const char *v = eq ? eq + 1 : e;

		if (!name_is(p, (size_t)((eq ? eq : e) - p), "answer")) {
			memcpy(rest + o, p, (size_t)(e - p));
			o += (size_t)(e - p);
			rest[o++] = '&';
		} else if (!kr->answer) {
			char *out = arena_alloc(a, (size_t)(e - v) + 1);
			long m = form_unescape(v, (size_t)(e - v), out, 1);
			if (m < 0) {
				util_fmt(err, errlen, "malformed %%-escape in answer");
				return DLRD_EINVAL;
			}
			kr->answer_field = (struct form_field){"answer", 6, out, (size_t)m};
			kr->answer = &kr->answer_field;
		}
		p = e + 1;
	}
	return form_decode(a, rest, o, LIM_FORM_FIELDS, &kr->form, err, errlen) == 0 ? 0
	                                                                             : DLRD_EINVAL;
}

static int kannel_authenticate(const void *state, struct provider_request *req, char *err,
                               size_t errlen)
{
	const struct kannel *k = state;
	struct kannel_req *kr = arena_alloc(req->arena, sizeof(*kr));
	const struct form *f = &kr->form;
	const struct form_field *tok = NULL;
	uint8_t d[CRYPTO_SHA256_LEN];
	bool ok = false;

	req->scratch = kr;
	if (strcmp(req->method, "GET") != 0) {
		util_fmt(err, errlen, "Kannel dlr-url callbacks are GET");
		return DLRD_EMETHOD;
	}
	if (kannel_decode(req->arena, req->query, kr, err, errlen) != 0)
		return DLRD_EINVAL;
	for (size_t i = 0; i < f->n; i++) {
		if (strcmp(f->fields[i].name, "token") != 0)
			continue;
		if (tok) {
			util_fmt(err, errlen, "token given more than once");
			return DLRD_EAUTH;
		}
		tok = &f->fields[i];
	}
	if (!tok || tok->value_len == 0) {
		util_fmt(err, errlen, "missing token");
		return DLRD_EAUTH;
	}
	/* Comparing digests keeps the time independent of the token's
	 * length as well as of its bytes. */
	crypto_sha256(tok->value, tok->value_len, d);
	for (size_t i = 0; i < k->n_tokens; i++)
		ok |= crypto_ct_eq(d, sizeof(d), k->digests[i], CRYPTO_SHA256_LEN);
	if (!ok) {
		util_fmt(err, errlen, "token mismatch");
		return DLRD_EAUTH;
	}
	return 0;
}

static const struct form_field *get(const struct form *f, const char *name)
{
	const struct form_field *x = form_get(f, name);
	return x && x->value_len ? x : NULL;
}

/* The query string with every token value replaced by REDACTED, for the
 * raw payload.  Pairs are copied byte for byte otherwise. */
static struct iov redact_query(struct arena *a, struct iov q)
{
	static const char red[] = "=REDACTED";
	const size_t cap = q.n + sizeof(red);
	char *out = arena_alloc(a, cap + 1);
	size_t o = 0;

	for (const char *p = q.p, *end = q.p + q.n; p < end;) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *e = amp ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(e - p));
		size_t nlen = (size_t)((eq ? eq : e) - p);
		bool is_tok = name_is(p, nlen, "token");
		size_t keep = is_tok ? nlen : (size_t)(e - p);
		size_t add = keep + (is_tok ? sizeof(red) - 1 : 0) + (amp ? 1 : 0);

		/* authenticate() admits one token of 16+ bytes, so the copy
		 * never grows past cap; stop rather than overflow if it did */
		if (add > cap - o)
			break;
		memcpy(out + o, p, keep);
		o += keep;
		if (is_tok) {
			memcpy(out + o, red, sizeof(red) - 1);
			o += sizeof(red) - 1;
		}
		if (amp)
			out[o++] = '&';
		p = e + 1;
	}
	out[o] = '\0';
	return (struct iov){out, o};
}

/* The value after "key:" in an SMSC DLR text, at the start or after a
 * space, case-insensitive; letters and digits only, 1..KANNEL_CODE_MAX.
 * The scan stops at " text:", which is message text, not receipt fields. */
static bool answer_field(const char *s, size_t n, const char *key, const char **val, size_t *vlen)
{
	size_t kl = strlen(key);

	for (size_t i = 0; i + kl <= n; i++) {
		if (i > 0 && s[i - 1] != ' ')
			continue;
		if (n - i >= 5 && strncasecmp(s + i, "text:", 5) == 0)
			return false;
		if (strncasecmp(s + i, key, kl) != 0)
			continue;
		size_t j = i + kl, m = 0;
		while (j + m < n && s[j + m] != ' ')
			m++;
		if (m == 0 || m > KANNEL_CODE_MAX)
			return false;
		for (size_t x = 0; x < m; x++) {
			char c = s[j + x];
			if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			      (c >= 'A' && c <= 'Z')))
				return false;
		}
		*val = s + j;
		*vlen = m;
		return true;
	}
	return false;
}

/* The SMSC's error code from answer: "err:NNN" (dropped when all zeros),
 * or the command_status of "NACK/<code>/<text>".  NULL when none. */
static const char *answer_error(struct arena *a, const struct form_field *ans)
{
	const char *v;
	size_t n;

	if (!ans)
		return NULL;
	if (ans->value_len > 5 && memcmp(ans->value, "NACK/", 5) == 0) {
		const char *c = ans->value + 5;
		size_t m = strcspn(c, "/ ");
		if (m == 0 || m > KANNEL_CODE_MAX)
			return NULL;
		for (size_t i = 0; i < m; i++) {
			char ch = c[i];
			if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
			      (ch >= 'A' && ch <= 'F') || ch == 'x' || ch == 'X'))
				return NULL;
		}
		return provider_text(a, c, m, KANNEL_CODE_MAX);
	}
	if (!answer_field(ans->value, ans->value_len, "err:", &v, &n))
		return NULL;
	bool zero = true;
	for (size_t i = 0; i < n; i++)
		zero = zero && v[i] == '0';
	return zero ? NULL : provider_text(a, v, n, KANNEL_CODE_MAX);
}

/* Normalized status for a DLR type; *known false for 0 or undefined bits.
 * Type 2 is refined by the SMPP stat: of the answer. */
static enum dlr_status map_type(uint64_t type, const struct form_field *ans, bool *known)
{
	const char *st;
	size_t n;

	/* 0x20 and 0x40 exist only as DLR_EXPIRED and DLR_UNKNOWN, with bit 2 */
	uint64_t ext = type & (KANNEL_DLR_EXPIRED | KANNEL_DLR_UNKNOWN);
	*known = type != 0 && type <= 0x7f && (ext == 0 || ((type & 2) && ext != 0x60));
	if (!*known)
		return ST_UNKNOWN;
	if (type & 16)
		return ST_REJECTED;
	if (type & KANNEL_DLR_EXPIRED)
		return ST_EXPIRED;
	if (type & KANNEL_DLR_UNKNOWN)
		return ST_UNKNOWN; /* final but inconclusive */
	if (type & 2) {
		if (ans && answer_field(ans->value, ans->value_len, "stat:", &st, &n)) {
			if (n == 7 && strncasecmp(st, "EXPIRED", 7) == 0)
				return ST_EXPIRED;
			if (n == 7 && strncasecmp(st, "REJECTD", 7) == 0)
				return ST_REJECTED;
			if (n == 7 && strncasecmp(st, "UNKNOWN", 7) == 0)
				return ST_UNKNOWN;
		}
		return ST_UNDELIVERED;
	}
	if (type & 1)
		return ST_DELIVERED;
	return ST_SENT; /* 8 accepted by the SMSC, 4 buffered */
}

static int kannel_parse(const void *state, struct provider_request *req,
                        struct provider_result *res, char *err, size_t errlen)
{
	const struct kannel_req *kr = req->scratch;
	const struct form *f = &kr->form;
	struct dlr_event *ev = provider_events_new(req->arena, "kannel", 1);
	const struct form_field *type = get(f, "type"), *id = get(f, "id"), *to = get(f, "to");
	const struct form_field *from = get(f, "from"), *ts = get(f, "ts");
	const struct form_field *ans = kr->answer && kr->answer->value_len ? kr->answer : NULL;
	uint64_t t = 0, secs;
	bool known;

	(void)state;
	(void)err;
	(void)errlen;
	/* The raw payload is the query string minus the token's value. */
	res->raw_payload = redact_query(req->arena, req->query);

	res->events = ev;
	res->n_events = 1;

	/* Kannel ids are opaque: an SMPP hex id or a UUID is lower-cased, any
	 * other id kept exactly as sent */
	ev->provider_message_id = id ? provider_hex_id(req->arena, id->value, id->value_len) : NULL;
	ev->raw_status =
	    type ? provider_text(req->arena, type->value, type->value_len, LIM_STATUS_BYTES) : NULL;
	if (!ev->provider_message_id || !ev->raw_status ||
	    util_parse_u64(type->value, type->value_len, &t) != 0) {
		/* not provider_unusable(): the review row keeps the id when
		 * only the type is unusable */
		ev->kind = EV_UNUSABLE;
		ev->review = REVIEW_UNUSABLE;
		ev->review_detail = !ev->provider_message_id ? "no usable id (Kannel %F)"
		                                             : "no usable type (Kannel %d)";
		ev->status = ST_UNKNOWN;
		event_finish(ev);
		return 0;
	}
	ev->kind = EV_STATUS;
	ev->status = map_type(t, ans, &known);
	if (!known) {
		ev->review = REVIEW_UNKNOWN_STATUS;
		ev->review_detail = "DLR type is not one Kannel defines (1, 2, 4, 8, 16, 34, 66)";
	}
	ev->error_code = answer_error(req->arena, ans);
	if (ts && util_parse_u64(ts->value, ts->value_len, &secs) == 0 && secs > 0 &&
	    secs <= KANNEL_TS_MAX)
		ev->occurred_ms = (int64_t)secs * 1000;
	if (to) {
		/* Kannel passes numbers as the SMSC gave them; an international
		 * "00" prefix becomes "+" (what Kannel's own %Q does). */
		if (to->value_len > 2 && memcmp(to->value, "00", 2) == 0) {
			char *e = arena_alloc(req->arena, to->value_len);
			e[0] = '+';
			memcpy(e + 1, to->value + 2, to->value_len - 2);
			provider_set_recipient(ev, req->arena, e, to->value_len - 1);
		} else {
			provider_set_recipient(ev, req->arena, to->value, to->value_len);
		}
	}
	if (from)
		ev->sender_identity =
		    provider_text(req->arena, from->value, from->value_len, LIM_ID_BYTES);
	event_finish(ev);
	return 0;
}

const struct provider provider_kannel = {
    .name = "kannel",
    .hooks = 1u << HOOK_STATUS,
    .get_hooks = 1u << HOOK_STATUS,
    .get_only_hooks = 1u << HOOK_STATUS, /* the dlr-url is fetched, never posted */
    .keys = kannel_keys,
    .errors = NULL,
    .canonical_id = provider_hex_id,
    .init = kannel_init,
    .fini = kannel_fini,
    .authenticate = kannel_authenticate,
    .parse = kannel_parse,
};
