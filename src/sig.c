/* SPDX-License-Identifier: MIT */
/*
 * Request signature schemes.  Each scheme reproduces what the provider's own
 * validator computes, byte for byte, and compares in constant time.
 *
 * Twilio (X-Twilio-Signature), after twilio-node src/webhooks/webhooks.ts and
 * twilio-python twilio/request_validator.py:
 *
 *   base64(HMAC-SHA1(token, url + for each name in sort(names):
 *                                   for each v in sort(unique(values)): name + v))
 *
 * The sort is JavaScript's default sort, which orders UTF-16 code units; our
 * strings are UTF-8, so utf16_cmp() compares code points except that a code
 * point >= U+10000 (a surrogate pair, 0xD800..) sorts before U+E000..U+FFFF.
 * Sorting the (name, value) pairs together and skipping exact repeats gives
 * the same sequence as grouping values per name, de-duplicating and sorting.
 *
 * The URL is the public URL plus the raw request-target, i.e. the bytes
 * Twilio put on the wire, which is also what Twilio signs (twilio-node's
 * spec vector for "...&Body=It's+amazing" only verifies over the URL exactly
 * as received).  Like the SDKs we try it as given and with its port toggled:
 * a URL without a port gets the scheme's default one (":443" for https,
 * ":80" otherwise), a URL with a port loses it; the SDKs strip any port
 * there, not only the default one (spec: "should validate https urls with
 * ports by stripping them", port 1234), and so do we.
 *
 * Deliberately left out: twilio-node's "legacy querystring" candidates.  twilio-node
 * also normalizes the URL with WHATWG `new URL()` (which escapes "'" and
 * more) and then re-serializes the query through Node's querystring module
 * (parse + stringify), to undo differences that its own normalization
 * introduced (twilio-node #1059, #1183).  We never normalize, so there is
 * nothing to undo, and reproducing it in C is neither small nor well defined:
 * it needs the WHATWG serializer (host lower-casing and IDNA, dot segments,
 * per-component escape sets) plus Node's querystring quirks (repeated names
 * regrouped at their first position, integer-like names moved to the front by
 * JavaScript's object key order, lenient decoding with U+FFFD substitution).
 * Each of those would only widen the set of query strings one signature is
 * accepted for.
 *
 * Every function here is pure and may run on any thread.
 */
#include "sig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"
#include "dlrd_limits.h"

#define TWILIO_SIG_B64_LEN 28 /* base64 of a 20-byte HMAC-SHA1 */

static void seterr(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		util_strlcpy(err, msg, errlen);
}

/*
 * Sort key of the UTF-8 sequence at s[0..n) (n >= 1), ordered as its first
 * UTF-16 code unit, then (for surrogate pairs) its second: BMP code points
 * map to cp << 10, supplementary ones to high << 10 | (low & 0x3ff).  Bytes
 * that do not start a well-formed sequence sort after everything; form_decode
 * never lets them through, this only keeps the order total.
 */
static uint32_t utf16_key(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t len;
	unsigned char c = s[0];

	if (c < 0x80)
		return (uint32_t)c << 10;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0x4000000u + c;
	}
	if (n < len)
		return 0x4000000u + c;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0x4000000u + c;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < 0x10000)
		return cp << 10;
	cp -= 0x10000;
	return (0xd800u + (cp >> 10)) << 10 | (cp & 0x3ff);
}

/* Compares two UTF-8 strings in UTF-16 code unit order (JavaScript's). */
static int utf16_cmp(const char *a, size_t an, const char *b, size_t bn)
{
	const unsigned char *ua = (const unsigned char *)a, *ub = (const unsigned char *)b;
	size_t m = an < bn ? an : bn, i = 0;
	uint32_t ka, kb;

	/* The shared prefix eight bytes at a time: a forged form of 256
	 * values sharing a 250-byte prefix spent 350 us here a byte at a
	 * time (the sort makes about 2000 comparisons). */
	for (uint64_t x, y; m - i >= 8; i += 8) {
		memcpy(&x, ua + i, 8);
		memcpy(&y, ub + i, 8);
		if (x != y)
			break;
	}
	while (i < m && ua[i] == ub[i])
		i++;
	if (i == m)
		return an < bn ? -1 : an > bn;
	/* Back up to the start of the code point holding the first difference;
	 * the shared prefix puts both strings on the same boundary. */
	while (i > 0 && (ua[i] & 0xc0) == 0x80)
		i--;
	ka = utf16_key(ua + i, an - i);
	kb = utf16_key(ub + i, bn - i);
	if (ka != kb)
		return ka < kb ? -1 : 1;
	/* Equal keys with different bytes only happen for malformed input. */
	return ua[i] < ub[i] ? -1 : ua[i] > ub[i];
}

static int field_cmp(const struct form_field *x, const struct form_field *y)
{
	int c = utf16_cmp(x->name, x->name_len, y->name, y->name_len);
	return c ? c : utf16_cmp(x->value, x->value_len, y->value, y->value_len);
}

static bool field_same(const struct form_field *x, const struct form_field *y)
{
	return x->name_len == y->name_len && x->value_len == y->value_len &&
	       memcmp(x->name, y->name, x->name_len) == 0 &&
	       memcmp(x->value, y->value, x->value_len) == 0;
}

/* The form's fields in signing order.  Lives on the caller's stack; only a
 * form larger than LIM_FORM_FIELDS spills to the heap. */
struct sorted {
	const struct form_field **v;
	size_t n;
	const struct form_field **heap;
	const struct form_field *stack[2 * LIM_FORM_FIELDS];
};

/* Bottom-up merge sort: stable, O(n log n), no recursion.  Our own rather
 * than qsort(), which older glibc could make write out of bounds when a
 * comparator is not a strict weak order (as on malformed UTF-8 it might not
 * be). */
static void sort_fields(const struct form_field **v, const struct form_field **tmp, size_t n)
{
	const struct form_field **src = v, **dst = tmp, **t;

	for (size_t w = 1; w < n; w *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * w) {
			size_t mid = lo + w < n ? lo + w : n;
			size_t hi = mid + w < n ? mid + w : n;
			size_t i = lo, j = mid, k = lo;
			while (i < mid && j < hi)
				dst[k++] = field_cmp(src[j], src[i]) < 0 ? src[j++] : src[i++];
			while (i < mid)
				dst[k++] = src[i++];
			while (j < hi)
				dst[k++] = src[j++];
		}
		t = src;
		src = dst;
		dst = t;
	}
	if (src != v)
		memcpy(v, src, n * sizeof(*v));
}

static void sorted_init(struct sorted *s, const struct form *params)
{
	const struct form_field **tmp;

	s->n = params ? params->n : 0;
	s->heap = NULL;
	if (s->n <= LIM_FORM_FIELDS) {
		s->v = s->stack;
		tmp = s->stack + LIM_FORM_FIELDS;
	} else {
		if (s->n > SIZE_MAX / (2 * sizeof(*s->heap)))
			abort();
		s->heap = xmalloc(2 * s->n * sizeof(*s->heap));
		s->v = s->heap;
		tmp = s->heap + s->n;
	}
	for (size_t i = 0; i < s->n; i++)
		s->v[i] = &params->fields[i];
	sort_fields(s->v, tmp, s->n);
}

static void sorted_fini(struct sorted *s)
{
	free(s->heap);
}

/* A candidate URL as up to four pieces (no copying). */
struct url {
	struct iov part[4];
	size_t n;
};

/* HMAC-SHA1 over url + params under token, base64 into out (29 bytes). */
static void twilio_sig(const char *token, const struct url *u, const struct sorted *s,
                       char out[TWILIO_SIG_B64_LEN + 1])
{
	struct crypto_hmac_ctx *c = crypto_hmac_new(CRYPTO_SHA1, token, strlen(token));
	uint8_t mac[CRYPTO_SHA1_LEN];

	for (size_t i = 0; i < u->n; i++)
		crypto_hmac_update(c, u->part[i].p, u->part[i].n);
	for (size_t i = 0; i < s->n; i++) {
		const struct form_field *f = s->v[i];
		if (i > 0 && field_same(s->v[i - 1], f))
			continue;
		crypto_hmac_update(c, f->name, f->name_len);
		crypto_hmac_update(c, f->value, f->value_len);
	}
	crypto_hmac_final(c, mac);
	crypto_b64_encode(mac, sizeof(mac), out);
}

/*
 * Builds the port-toggled variant of public_url + target into alt.  Returns
 * false when public_url has no "scheme://" to find an authority in.
 */
static bool url_port_variant(const char *public_url, struct iov target, struct url *alt)
{
	size_t len = strlen(public_url);
	const char *sep = strstr(public_url, "://");
	const char *auth, *auth_end, *host, *colon, *at;
	bool https;

	if (!sep)
		return false;
	https = (size_t)(sep - public_url) == 5 && strncasecmp(public_url, "https", 5) == 0;
	auth = sep + 3;
	auth_end = auth + strcspn(auth, "/?#");
	host = auth;
	while ((at = memchr(host, '@', (size_t)(auth_end - host))))
		host = at + 1;
	if (*host == '[') { /* IPv6 literal: the port follows the ']' */
		const char *rb = memchr(host, ']', (size_t)(auth_end - host));
		colon = rb && rb + 1 < auth_end && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(host, ':', (size_t)(auth_end - host));
	}
	alt->n = 0;
	alt->part[alt->n++] =
	    (struct iov){public_url, (size_t)((colon ? colon : auth_end) - public_url)};
	if (!colon)
		alt->part[alt->n++] = https ? IOV_LIT(":443") : IOV_LIT(":80");
	alt->part[alt->n++] = (struct iov){auth_end, (size_t)(public_url + len - auth_end)};
	alt->part[alt->n++] = target;
	return true;
}

/*
 * Finds the first query parameter whose decoded name is bodySHA256 (what
 * URLSearchParams.get() and parse_qs() look at) and returns its raw value.
 */
static bool find_body_sha256(struct iov target, struct iov *val)
{
	const char *q = target.n ? memchr(target.p, '?', target.n) : NULL;
	const char *end;

	if (!q)
		return false;
	end = target.p + target.n;
	for (const char *s = q + 1; s < end;) {
		const char *amp = memchr(s, '&', (size_t)(end - s));
		const char *e = amp ? amp : end;
		const char *eq = memchr(s, '=', (size_t)(e - s));
		size_t nlen = (size_t)((eq ? eq : e) - s);
		char name[3 * 10 + 1];

		if (nlen >= 10 && nlen <= 3 * 10 && form_unescape(s, nlen, name, 1) == 10 &&
		    memcmp(name, "bodySHA256", 10) == 0) {
			*val = eq ? (struct iov){eq + 1, (size_t)(e - eq - 1)} : (struct iov){e, 0};
			return true;
		}
		s = e + 1;
	}
	return false;
}

/* Whether the lower-case hex SHA-256 of body equals the (percent-encoded)
 * bodySHA256 value; constant time in the hash. */
static bool body_sha256_ok(struct iov body, struct iov raw)
{
	uint8_t digest[CRYPTO_SHA256_LEN];
	char hex[2 * CRYPTO_SHA256_LEN + 1];
	char want[3 * 2 * CRYPTO_SHA256_LEN + 1];
	long n;

	crypto_sha256(body.p, body.n, digest);
	crypto_hex(digest, sizeof(digest), hex);
	if (raw.n > 3 * 2 * CRYPTO_SHA256_LEN)
		return false; /* decodes to more than 64 bytes */
	n = form_unescape(raw.p, raw.n, want, 1);
	if (n < 0)
		return false;
	return crypto_ct_eq(want, (size_t)n, hex, 2 * CRYPTO_SHA256_LEN);
}

/* Verifies X-Twilio-Signature against every token and both URL forms; see
 * sig.h.  No heap allocation unless params has more than LIM_FORM_FIELDS
 * fields (beyond OpenSSL's own per-MAC context).  Any thread. */
int sig_twilio_verify(char *const *tokens, size_t ntokens, const char *public_url,
                      struct iov target, const struct form *params, struct iov body,
                      struct iov signature, char *err, size_t errlen)
{
	struct url cand[2];
	size_t ncand = 0;
	struct iov body_sha = {NULL, 0};
	bool json, ok = false;
	uint8_t raw[3 * (TWILIO_SIG_B64_LEN / 4) + 3];
	size_t rawlen;
	struct sorted s;

	if (signature.n == 0) {
		seterr(err, errlen, "missing signature");
		return DLRD_EAUTH;
	}
	if (signature.n > TWILIO_SIG_B64_LEN ||
	    crypto_b64_decode(signature.p, signature.n, raw, &rawlen) != 0 ||
	    rawlen != CRYPTO_SHA1_LEN) {
		seterr(err, errlen, "malformed signature");
		return DLRD_EAUTH;
	}
	if (ntokens == 0) {
		seterr(err, errlen, "no auth token configured");
		return DLRD_EAUTH;
	}

	/* JSON bodies: the URL alone is signed, the body via its hash. */
	json = find_body_sha256(target, &body_sha);
	if (json)
		params = NULL;

	cand[ncand++] = (struct url){{{public_url, strlen(public_url)}, target}, 2};
	if (url_port_variant(public_url, target, &cand[ncand]))
		ncand++;

	sorted_init(&s, params);
	for (size_t t = 0; t < ntokens && !ok; t++) {
		for (size_t c = 0; c < ncand && !ok; c++) {
			char expect[TWILIO_SIG_B64_LEN + 1];
			twilio_sig(tokens[t], &cand[c], &s, expect);
			ok = crypto_ct_eq(expect, TWILIO_SIG_B64_LEN, signature.p, signature.n);
		}
	}
	sorted_fini(&s);

	if (!ok) {
		seterr(err, errlen, "signature mismatch");
		return DLRD_EAUTH;
	}
	if (json && !body_sha256_ok(body, body_sha)) {
		seterr(err, errlen, "bodySHA256 mismatch");
		return DLRD_EAUTH;
	}
	return 0;
}

/* Computes the Twilio signature of url + params under token into out
 * (NUL-terminated base64).  Any thread. */
void sig_twilio_sign(const char *token, struct iov url, const struct form *params, char out[29])
{
	struct url u = {{url}, 1};
	struct sorted s;

	sorted_init(&s, params);
	twilio_sig(token, &u, &s, out);
	sorted_fini(&s);
}
