/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the Vonage SMS API adapter (src/providers/vonage.c),
 * driven through its provider table entry with a fake request and a real
 * config loaded from the environment.
 *
 * Signature vectors: providers.md 2.4 (md5hash and SHA256-HMAC confirmed
 * with @vonage/sms verifySignature); the MD5/SHA1/SHA512-HMAC values follow
 * the same documented string and were computed independently (Python
 * hashlib/hmac).  Other signatures are computed here with OpenSSL directly,
 * not with the adapter's code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "config.h"
#include "phone.h"
#include "provider.h"
#include "provider_test.h"
#include "util.h"

extern const struct provider provider_vonage;
#define P (&provider_vonage)

#define SECRET "mySignatureSecret"
#define NOW_MS 1582650446000LL /* the vector's timestamp */

/* The documented vector, in a query string (values percent-encoded). */
#define VECTOR_Q                                                                                   \
	"api-key=abcd1234&client-ref=my-ref&err-code=0&message-timestamp=2020-01-01+12%3A00%3A00"  \
	"&messageId=0A0000001234567B&msisdn=447700900000&network-code=23410"                       \
	"&nonce=ec11dd3e-1e7f-4db5-9467-82b02cd223b9&price=0.03330000&scts=2001011400"             \
	"&status=delivered&timestamp=1582650446&to=Acme%26Co%3D1"
#define VECTOR_JSON                                                                                \
	"{\"msisdn\":\"447700900000\",\"to\":\"Acme&Co=1\",\"network-code\":\"23410\","            \
	"\"messageId\":\"0A0000001234567B\",\"price\":\"0.03330000\",\"status\":\"delivered\","    \
	"\"scts\":\"2001011400\",\"err-code\":\"0\",\"api-key\":\"abcd1234\","                     \
	"\"client-ref\":\"my-ref\",\"message-timestamp\":\"2020-01-01 12:00:00\","                 \
	"\"timestamp\":\"1582650446\",\"nonce\":\"ec11dd3e-1e7f-4db5-9467-82b02cd223b9\","         \
	"\"sig\":\"%s\"}"

static const struct {
	const char *method;
	const char *sig;
} vectors[] = {
    {"md5hash", "eb8333335e63329a9d1ea01cb2745ba0"},
    {"md5", "f9fd84d1c6d4ca78673046a13ef5943d"},
    {"sha1", "7530e6b0a8b970786445675fb7e0a3720c0157cb"},
    {"sha256", "63BE144D75D0DC35B7F3409852E33462E9F41E23801258C541559ECFA1954324"},
    {"sha512", "cbffe4b62ff83920d7766b1f43206b1df3352b04bb894e7e07d1835226bb508e3ecb6dfeebb74e0"
               "a5e3610008d9430fd7a0ce486b76e846a29f99e1f402b509b"},
};

/* ---- fake request ---- */

struct fx {
	void *state;
	struct arena a;
	char block[16384];
	struct provider_request req;
	struct provider_result res;
	char err[256];
	char target[4096];
	char body[16400]; /* test_json_size_bound: up to 16385 bytes */
};

static struct fx *fx_new(const char *method_name, const char *secrets, const char *tol)
{
	struct fx *f = calloc(1, sizeof(*f));
	char e1[256], e2[64], e3[64];
	const char *env[4] = {e1, e2, e3, NULL};

	assert_non_null(f);
	util_fmt(e1, sizeof(e1), "DLRD_VONAGE_SIGNATURE_SECRETS=%s", secrets);
	util_fmt(e2, sizeof(e2), "DLRD_VONAGE_SIGNATURE_METHOD=%s", method_name);
	util_fmt(e3, sizeof(e3), "DLRD_VONAGE_TOLERANCE_SECONDS=%s", tol ? tol : "300");
	assert_int_equal(pt_load(P, env, &f->state, f->err, sizeof(f->err)), 0);
	assert_non_null(f->state);
	arena_init(&f->a, f->block, sizeof(f->block));
	return f;
}

static void fx_free(struct fx *f)
{
	P->fini(f->state);
	arena_fini(&f->a);
	free(f);
}

/* Runs authenticate (and parse when it passes) on one request. */
static int run(struct fx *f, const char *method, enum webhook_kind kind, const char *ctype,
               const char *query, const char *body, int64_t now_ms)
{
	int rc, prc;

	util_fmt(f->target, sizeof(f->target), "/webhooks/vonage/%s%s%s",
	         kind == HOOK_STATUS ? "status" : "inbound", query && *query ? "?" : "",
	         query ? query : "");
	util_strlcpy(f->body, body ? body : "", sizeof(f->body));
	pt_request(&f->req, &f->a,
	           &(struct pt_call){.method = method,
	                             .kind = kind,
	                             .target = f->target,
	                             .ctype = ctype,
	                             .body = f->body,
	                             .now_ms = now_ms});
	rc = pt_run(P, f->state, &f->req, &f->res, f->err, sizeof(f->err), &prc);
	return rc != 0 ? rc : prc;
}

/* ---- signing, independent of the adapter ---- */

struct kv {
	const char *k, *v;
};

static int kv_cmp(const void *a, const void *b)
{
	return strcmp(((const struct kv *)a)->k, ((const struct kv *)b)->k);
}

static void hexify(const unsigned char *m, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", m[i]);
}

/* Vonage's documented algorithm over pairs (sig excluded by the caller). */
static void vsign(const char *method, const char *secret, struct kv *pairs, size_t n, char *out)
{
	char s[4096];
	size_t at = 0;
	unsigned char m[64];
	unsigned mlen = 0;

	qsort(pairs, n, sizeof(*pairs), kv_cmp);
	for (size_t i = 0; i < n; i++) {
		at += util_fmt(s + at, sizeof(s) - at, "&%s=", pairs[i].k);
		for (const char *c = pairs[i].v; *c; c++)
			s[at++] = (*c == '&' || *c == '=') ? '_' : *c;
		s[at] = '\0';
	}
	if (strcmp(method, "md5hash") == 0) {
		EVP_MD_CTX *c = EVP_MD_CTX_new();
		EVP_DigestInit_ex(c, EVP_md5(), NULL);
		EVP_DigestUpdate(c, s, at);
		EVP_DigestUpdate(c, secret, strlen(secret));
		EVP_DigestFinal_ex(c, m, &mlen);
		EVP_MD_CTX_free(c);
	} else {
		const EVP_MD *md = strcmp(method, "md5") == 0      ? EVP_md5()
		                   : strcmp(method, "sha1") == 0   ? EVP_sha1()
		                   : strcmp(method, "sha256") == 0 ? EVP_sha256()
		                                                   : EVP_sha512();
		HMAC(md, secret, (int)strlen(secret), (const unsigned char *)s, at, m, &mlen);
	}
	hexify(m, mlen, out);
}

static void pct(const char *v, char *out, size_t cap)
{
	size_t o = 0;
	for (; *v && o + 4 < cap; v++) {
		unsigned char c = (unsigned char)*v;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, cap - o, "%%%02X", c);
	}
	out[o] = '\0';
}

/* A signed query string for pairs under secret/method. */
static void signed_query(const char *method, const char *secret, struct kv *pairs, size_t n,
                         char *out, size_t cap)
{
	char sig[129], enc[1024];
	size_t at = 0;

	vsign(method, secret, pairs, n, sig);
	for (size_t i = 0; i < n; i++) {
		pct(pairs[i].v, enc, sizeof(enc));
		at += util_fmt(out + at, cap - at, "%s%s=%s", i ? "&" : "", pairs[i].k, enc);
	}
	util_fmt(out + at, cap - at, "&sig=%s", sig);
}

/* A delivery receipt with status/err-code, signed for now. */
static void receipt(char *q, size_t cap, const char *id, const char *status, const char *err,
                    const char *scts, const char *ts, const char *nonce)
{
	struct kv kv[] = {
	    {"msisdn", "447700900000"},
	    {"to", "AcmeInc"},
	    {"network-code", "23410"},
	    {"messageId", id},
	    {"price", "0.03330000"},
	    {"status", status},
	    {"scts", scts},
	    {"err-code", err},
	    {"api-key", "abcd1234"},
	    {"message-timestamp", "2020-02-25 17:07:26"},
	    {"timestamp", ts},
	    {"nonce", nonce},
	};
	signed_query("sha256", SECRET, kv, ARRAY_LEN(kv), q, cap);
}

/* ---- tests ---- */

static int setup(void **state)
{
	pt_set_hash_key();
	*state = NULL;
	return 0;
}

static void expect_vector_event(struct fx *f)
{
	const struct dlr_event *ev = &f->res.events[0];

	assert_int_equal(f->res.n_events, 1);
	assert_int_equal(ev->kind, EV_STATUS);
	assert_string_equal(ev->provider, "vonage");
	assert_string_equal(ev->provider_message_id, "0a0000001234567b");
	assert_string_equal(ev->raw_status, "delivered");
	assert_int_equal(ev->status, ST_DELIVERED);
	assert_string_equal(ev->error_code, "0");
	assert_int_equal(ev->occurred_ms, 1577887200000LL); /* 2020-01-01T14:00:00Z */
	assert_string_equal(ev->sender_identity, "Acme&Co=1");
	assert_string_equal(ev->recipient_hash, pt_hash_of("+447700900000"));
	assert_string_equal(ev->destination_country, "GB");
	assert_int_equal(ev->review, REVIEW_NONE);
	assert_false(ev->read);
	assert_int_equal(strlen(ev->dedup_key), 64);
}

static void test_reference_vectors(void **state)
{
	char q[2048], body[2048];

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(vectors); i++) {
		struct fx *f = fx_new(vectors[i].method, SECRET, NULL);
		util_fmt(q, sizeof(q), "%s&sig=%s", VECTOR_Q, vectors[i].sig);
		assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), 0);
		expect_vector_event(f);
		/* POST form */
		assert_int_equal(run(f, "POST", HOOK_STATUS, "application/x-www-form-urlencoded",
		                     NULL, q, NOW_MS),
		                 0);
		expect_vector_event(f);
		/* POST JSON, members in another order */
		util_fmt(body, sizeof(body), VECTOR_JSON, vectors[i].sig);
		assert_int_equal(
		    run(f, "POST", HOOK_STATUS, "application/json", NULL, body, NOW_MS), 0);
		expect_vector_event(f);
		/* another method's signature does not pass */
		util_fmt(q, sizeof(q), "%s&sig=%s", VECTOR_Q, vectors[(i + 1) % 5].sig);
		assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), DLRD_EAUTH);
		fx_free(f);
	}
}

/* providers.md 2.4's "trap": for api_key=12345, timestamp=10907902800 and
 * secret ABCDE, the documented webhook string "&api_key=12345&timestamp=..."
 * gives md5hash cef8064b..., while @vonage/auth createSignatureHash (for
 * outgoing API requests, separators replaced too) gives d7f81394..., which
 * must not verify. */
static void test_signature_hash_trap(void **state)
{
	struct fx *f = fx_new("md5hash", "ABCDE", NULL);
	const int64_t now = 10907902800000LL;

	(void)state;
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL,
	                     "api_key=12345&timestamp=10907902800"
	                     "&sig=cef8064b08b4d1e571219bde9aa85421",
	                     NULL, now),
	                 0);
	assert_int_equal(f->res.events[0].kind, EV_UNUSABLE); /* no messageId */
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL,
	                     "api_key=12345&timestamp=10907902800"
	                     "&sig=d7f81394898d98c876e782b3c98391b8",
	                     NULL, now),
	                 DLRD_EAUTH);
	fx_free(f);
}

static void test_hex_case_insensitive(void **state)
{
	struct fx *f = fx_new("sha256", SECRET, NULL);
	char q[2048];

	(void)state;
	util_fmt(q, sizeof(q), "%s&sig=%s", VECTOR_Q,
	         "63be144d75d0dc35b7f3409852e33462e9f41e23801258c541559ecfa1954324");
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), 0);
	fx_free(f);
}

static void test_rejections(void **state)
{
	struct fx *f = fx_new("sha256", SECRET, NULL);
	char q[2048];
	const char *good = vectors[3].sig;

	(void)state;
	/* forged: one hex digit changed */
	util_fmt(q, sizeof(q), "%s&sig=%.63s5", VECTOR_Q, good);
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), DLRD_EAUTH);
	/* truncated */
	util_fmt(q, sizeof(q), "%s&sig=%.62s", VECTOR_Q, good);
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), DLRD_EAUTH);
	/* missing, empty */
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, VECTOR_Q, NULL, NOW_MS), DLRD_EAUTH);
	assert_non_null(strstr(f->err, "missing sig"));
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, VECTOR_Q "&sig=", NULL, NOW_MS),
	                 DLRD_EAUTH);
	/* tampered: the status changed after signing */
	util_fmt(q, sizeof(q), "%s&sig=%s", VECTOR_Q, good);
	char *st = strstr(q, "status=delivered");
	memcpy(st, "status=rejected", 15);
	memmove(st + 15, st + 16, strlen(st + 16) + 1);
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), DLRD_EAUTH);
	/* a parameter added */
	util_fmt(q, sizeof(q), "%s&sig=%s&extra=1", VECTOR_Q, good);
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), DLRD_EAUTH);
	/* repeated parameter */
	util_fmt(q, sizeof(q), "%s&status=failed&sig=%s", VECTOR_Q, good);
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), DLRD_EINVAL);
	/* stale and future timestamps (tolerance 300 s) */
	util_fmt(q, sizeof(q), "%s&sig=%s", VECTOR_Q, good);
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS + 300000), 0);
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS + 301000), DLRD_ESTALE);
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS - 300000), 0);
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS - 301000), DLRD_ESTALE);
	/* method and media type */
	assert_int_equal(run(f, "PUT", HOOK_STATUS, "application/json", NULL, "{}", NOW_MS),
	                 DLRD_EMETHOD);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "text/plain", NULL, q, NOW_MS), DLRD_EUNSUPP);
	/* malformed bodies */
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", NULL, "[1]", NOW_MS),
	                 DLRD_EINVAL);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", NULL,
	                     "{\"a\":\"1\",\"a\":\"2\"}", NOW_MS),
	                 DLRD_EINVAL);
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, "a=%zz", NULL, NOW_MS), DLRD_EINVAL);
	/* the secret never appears in err */
	assert_null(strstr(f->err, SECRET));
	fx_free(f);

	/* a signed request without timestamp */
	f = fx_new("sha256", SECRET, NULL);
	struct kv kv[] = {{"messageId", "0A00000012345678"}, {"status", "delivered"}};
	signed_query("sha256", SECRET, kv, 2, q, sizeof(q));
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), DLRD_EAUTH);
	assert_non_null(strstr(f->err, "timestamp"));
	fx_free(f);
}

/*
 * The signed `timestamp` is "a Unix timestamp representation of
 * messageTimestamp", the time Vonage *started* to push the callback
 * (@vonage/sms types/Responses/DeliveryReceipt.ts; the inbound SMS guide says
 * the same), so every retry carries the first attempt's timestamp.  Vonage
 * retries a receipt every minute for 72 h and an inbound SMS for 24 h: with
 * no tolerance_seconds set, a retry after a short outage must still pass,
 * and it is the same event as the first attempt (a duplicate, so the wide
 * window lets nothing new in).
 */
static void test_default_tolerance_covers_retries(void **state)
{
	const char *env[] = {"DLRD_VONAGE_SIGNATURE_SECRETS=" SECRET,
	                     "DLRD_VONAGE_SIGNATURE_METHOD=sha256", NULL};
	struct fx *f = calloc(1, sizeof(*f));
	char q[2048], first[65];

	(void)state;
	assert_non_null(f);
	assert_int_equal(pt_load(P, env, &f->state, f->err, sizeof(f->err)), 0);
	assert_non_null(f->state);
	arena_init(&f->a, f->block, sizeof(f->block));
	util_fmt(q, sizeof(q), "%s&sig=%s", VECTOR_Q, vectors[3].sig);

	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), 0);
	util_strlcpy(first, f->res.events[0].dedup_key, sizeof(first));
	/* retries 10 minutes, 6 hours and 72 hours after the first attempt */
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS + 600000), 0);
	assert_string_equal(f->res.events[0].dedup_key, first);
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS + 6 * 3600000LL), 0);
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS + 72 * 3600000LL), 0);
	/* there is still a window, both ways */
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS + 73 * 3600000LL + 1000),
	                 DLRD_ESTALE);
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS - 73 * 3600000LL - 1000),
	                 DLRD_ESTALE);
	fx_free(f);
	pt_clearenv();
}

static void test_rotation(void **state)
{
	struct fx *f = fx_new("md5hash", "old-secret, " SECRET ",third", NULL);
	struct fx *g = fx_new("md5hash", "old-secret,third", NULL);
	char q[2048];

	(void)state;
	util_fmt(q, sizeof(q), "%s&sig=%s", VECTOR_Q, vectors[0].sig);
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), 0);
	assert_int_equal(run(g, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), DLRD_EAUTH);
	fx_free(f);
	fx_free(g);
}

static void test_status_vocabulary(void **state)
{
	static const struct {
		const char *raw;
		enum dlr_status st;
	} cases[] = {
	    {"accepted", ST_SENT},     {"buffered", ST_SENT},      {"delivered", ST_DELIVERED},
	    {"expired", ST_EXPIRED},   {"failed", ST_UNDELIVERED}, {"undelivered", ST_UNDELIVERED},
	    {"rejected", ST_REJECTED}, {"unknown", ST_UNKNOWN},
	};
	struct fx *f = fx_new("sha256", SECRET, NULL);
	char q[2048];

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		receipt(q, sizeof(q), "0B00000127FDBC63", cases[i].raw, "0", "2001011400",
		        "1582650446", "n1");
		assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), 0);
		assert_int_equal(f->res.events[0].kind, EV_STATUS);
		assert_string_equal(f->res.events[0].raw_status, cases[i].raw);
		assert_int_equal(f->res.events[0].status, cases[i].st);
		assert_int_equal(f->res.events[0].review, REVIEW_NONE);
	}
	/* not in the vocabulary: unknown, to the review queue */
	receipt(q, sizeof(q), "0B00000127FDBC63", "deleted", "0", "2001011400", "1582650446", "n");
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), 0);
	assert_int_equal(f->res.events[0].status, ST_UNKNOWN);
	assert_int_equal(f->res.events[0].review, REVIEW_UNKNOWN_STATUS);
	assert_non_null(f->res.events[0].review_detail);
	fx_free(f);
}

static void test_error_catalogue(void **state)
{
	const char *title = NULL;

	(void)state;
	assert_int_equal(errcat_classify(P->errors, "2", ST_UNDELIVERED, &title), ER_UNREACHABLE);
	assert_string_equal(title, "Absent Subscriber Temporary");
	assert_int_equal(errcat_classify(P->errors, "9", ST_REJECTED, &title), ER_OPTED_OUT);
	assert_int_equal(errcat_classify(P->errors, "0", ST_DELIVERED, &title), ER_NONE);
	assert_int_equal(errcat_classify(P->errors, "4242", ST_REJECTED, &title), ER_UNKNOWN);
}

static void test_inbound(void **state)
{
	struct fx *f = fx_new("sha256", SECRET, NULL);
	struct kv kv[] = {
	    {"msisdn", "447700900001"},
	    {"to", "447700900000"},
	    {"messageId", "0A0000000123ABCD1"},
	    {"text", "STOP"},
	    {"type", "text"},
	    {"keyword", "STOP"},
	    {"api-key", "abcd1234"},
	    {"message-timestamp", "2020-01-01 12:00:00"},
	    {"timestamp", "1582650446"},
	    {"nonce", "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"},
	    {"concat", "false"},
	    {"added-later", "kept"},
	};
	char q[2048];

	(void)state;
	signed_query("sha256", SECRET, kv, ARRAY_LEN(kv), q, sizeof(q));
	for (int k = 0; k < 2; k++) {
		/* the inbound path, and the status path: routed by payload */
		assert_int_equal(
		    run(f, "GET", k ? HOOK_STATUS : HOOK_INBOUND, NULL, q, NULL, NOW_MS), 0);
		const struct dlr_event *ev = &f->res.events[0];
		assert_int_equal(f->res.n_events, 1);
		assert_int_equal(ev->kind, EV_INBOUND);
		assert_string_equal(ev->provider_message_id, "0a0000000123abcd1");
		assert_string_equal(ev->text, "STOP");
		assert_int_equal(ev->text_len, 4);
		assert_string_equal(ev->sender_identity, "447700900000");
		assert_string_equal(ev->recipient_hash, pt_hash_of("+447700900001"));
		assert_string_equal(ev->destination_country, "GB");
		/* message-timestamp, when Vonage began to push it (UTC, repeated
		 * by every retry), is an inbound message's only time */
		assert_int_equal(ev->occurred_ms, 1577880000000LL);
	}
	fx_free(f);
}

static void test_unusable_and_extra_fields(void **state)
{
	struct fx *f = fx_new("sha256", SECRET, NULL);
	char q[2048];
	struct kv no_id[] = {{"status", "delivered"}, {"timestamp", "1582650446"}};
	struct kv neither[] = {{"messageId", "0A00"}, {"timestamp", "1582650446"}};
	struct kv extra[] = {{"messageId", "0A00"},
	                     {"status", "delivered"},
	                     {"timestamp", "1582650446"},
	                     {"new-field", "x&y=z"},
	                     {"scts", "2001011400"}};

	(void)state;
	signed_query("sha256", SECRET, no_id, 2, q, sizeof(q));
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), 0);
	assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
	assert_int_equal(f->res.events[0].review, REVIEW_UNUSABLE);
	assert_null(f->res.events[0].provider_message_id);
	signed_query("sha256", SECRET, neither, 2, q, sizeof(q));
	assert_int_equal(run(f, "GET", HOOK_INBOUND, NULL, q, NULL, NOW_MS), 0);
	assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
	signed_query("sha256", SECRET, extra, ARRAY_LEN(extra), q, sizeof(q));
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), 0);
	assert_int_equal(f->res.events[0].kind, EV_STATUS);
	assert_string_equal(f->res.events[0].provider_message_id, "0a00");
	fx_free(f);
}

static void test_dedup_key(void **state)
{
	struct fx *f = fx_new("sha256", SECRET, NULL);
	char q[2048], k1[65], k2[65];

	(void)state;
	receipt(q, sizeof(q), "0B00000127FDBC63", "delivered", "0", "2001011400", "1582650446",
	        "nonce-1");
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), 0);
	util_strlcpy(k1, f->res.events[0].dedup_key, sizeof(k1));
	/* a retry: new timestamp, nonce and sig, same receipt */
	receipt(q, sizeof(q), "0b00000127fdbc63", "delivered", "0", "2001011400", "1582650506",
	        "nonce-2");
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS + 60000), 0);
	util_strlcpy(k2, f->res.events[0].dedup_key, sizeof(k2));
	assert_string_equal(k1, k2);
	/* another error code or carrier time is another event */
	receipt(q, sizeof(q), "0B00000127FDBC63", "delivered", "1", "2001011400", "1582650446",
	        "nonce-1");
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), 0);
	assert_string_not_equal(k1, f->res.events[0].dedup_key);
	receipt(q, sizeof(q), "0B00000127FDBC63", "delivered", "0", "2001011401", "1582650446",
	        "nonce-1");
	assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), 0);
	assert_string_not_equal(k1, f->res.events[0].dedup_key);
	fx_free(f);
}

static void test_scts(void **state)
{
	static const struct {
		const char *scts;
		int64_t ms;
	} cases[] = {
	    {"2001011400", 1577887200000LL},   /* 2020-01-01T14:00Z */
	    {"240229235959", 1709251199000LL}, /* with seconds, leap day */
	    {"2302291200", -1},                /* 2023-02-29 does not exist */
	    {"2013011400", -1},                /* month 13 */
	    {"200101140", -1},                 /* short */
	    {"20010114a0", -1},
	};
	struct fx *f = fx_new("sha256", SECRET, NULL);
	char q[2048];

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		receipt(q, sizeof(q), "0B00000127FDBC63", "delivered", "0", cases[i].scts,
		        "1582650446", "n");
		assert_int_equal(run(f, "GET", HOOK_STATUS, NULL, q, NULL, NOW_MS), 0);
		assert_int_equal(f->res.events[0].occurred_ms, cases[i].ms);
	}
	fx_free(f);
}

static void test_json_value_types(void **state)
{
	struct fx *f = fx_new("sha256", SECRET, NULL);
	struct kv kv[] = {{"messageId", "0A00"},       {"status", "delivered"},
	                  {"timestamp", "1582650446"}, {"concat", "true"},
	                  {"concat-part", "2"},        {"price", "0.0333"}};
	char sig[129], body[1024];

	(void)state;
	vsign("sha256", SECRET, kv, ARRAY_LEN(kv), sig);
	util_fmt(body, sizeof(body),
	         "{\"messageId\":\"0A00\",\"status\":\"delivered\",\"timestamp\":1582650446,"
	         "\"concat\":true,\"concat-part\":2,\"price\":\"0.0333\",\"nothing\":null,"
	         "\"sig\":\"%s\"}",
	         sig);
	assert_int_equal(run(f, "POST", HOOK_STATUS, "application/json", NULL, body, NOW_MS), 0);
	assert_int_equal(f->res.events[0].status, ST_DELIVERED);
	fx_free(f);
}

/* A JSON body is parsed before its signature can be checked, so the values
 * jansson may build are bounded first (VONAGE_JSON_VALUES): 64 KB of
 * [1,1,...] would cost 10 ms, 250 normal callbacks. */
static void test_json_values_bound(void **state)
{
	struct fx *f = fx_new("sha256", SECRET, NULL);
	char body[4096];
	size_t at;

	(void)state;
	/* 1 + '{' + '[' + (k - 1) commas: k = 1022 is 1024 values */
	for (unsigned k = 1022; k <= 1023; k++) {
		at = (size_t)snprintf(body, sizeof(body), "{\"a\":[1");
		for (unsigned i = 1; i < k; i++)
			at += (size_t)snprintf(body + at, sizeof(body) - at, ",1");
		snprintf(body + at, sizeof(body) - at, "]}");
		if (k == 1022) {
			assert_int_equal(
			    run(f, "POST", HOOK_STATUS, "application/json", NULL, body, NOW_MS),
			    DLRD_EAUTH);
		} else {
			assert_int_equal(
			    run(f, "POST", HOOK_STATUS, "application/json", NULL, body, NOW_MS),
			    DLRD_EINVAL);
			assert_string_equal(f->err, "body has more than 1024 JSON values");
		}
	}
	fx_free(f);
}

/* A JSON body over 16 KiB is refused before it is parsed (413): a forged
 * 64 KiB one cost 1.7-1.9 ms of jansson (bench/forged); Vonage's own are
 * under 2 KiB.  One of exactly the bound is parsed and its signature
 * checked. */
static void test_json_size_bound(void **state)
{
	struct fx *f = fx_new("sha256", SECRET, NULL);
	static char body[16386];

	(void)state;
	for (size_t n = 16384; n <= 16385; n++) {
		size_t at = (size_t)snprintf(body, sizeof(body), "{\"text\":\"");
		memset(body + at, 'a', n - at - 2);
		memcpy(body + n - 2, "\"}", 3);
		assert_int_equal(strlen(body), n);
		int rc = run(f, "POST", HOOK_STATUS, "application/json", NULL, body, NOW_MS);
		if (n == 16384) {
			assert_int_equal(rc, DLRD_EAUTH); /* parsed: no sig */
		} else {
			assert_int_equal(rc, DLRD_ETOOBIG);
			assert_string_equal(f->err, "JSON body over 16384 bytes");
		}
	}
	fx_free(f);
}

static void test_config(void **state)
{
	char err[256];
	void *st = (void *)1;
	const char *none[] = {NULL};
	const char *empty[] = {"DLRD_VONAGE_SIGNATURE_SECRETS= , ", NULL};
	const char *bad_method[] = {"DLRD_VONAGE_SIGNATURE_SECRETS=s",
	                            "DLRD_VONAGE_SIGNATURE_METHOD=sha384", NULL};
	const char *bad_tol[] = {"DLRD_VONAGE_SIGNATURE_SECRETS=s",
	                         "DLRD_VONAGE_TOLERANCE_SECONDS=0", NULL};
	const char *many[] = {"DLRD_VONAGE_SIGNATURE_SECRETS=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,"
	                      "16,17",
	                      NULL};

	(void)state;
	assert_int_equal(pt_load(P, none, &st, err, sizeof(err)), 0);
	assert_null(st);
	st = (void *)1;
	assert_int_equal(pt_load(P, empty, &st, err, sizeof(err)), 0);
	assert_null(st);
	assert_int_equal(pt_load(P, bad_method, &st, err, sizeof(err)), DLRD_ECONFIG);
	assert_non_null(strstr(err, "vonage.signature_method"));
	assert_int_equal(pt_load(P, bad_tol, &st, err, sizeof(err)), DLRD_ECONFIG);
	assert_non_null(strstr(err, "vonage.tolerance_seconds"));
	assert_int_equal(pt_load(P, many, &st, err, sizeof(err)), DLRD_ECONFIG);
	pt_clearenv();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reference_vectors),
	    cmocka_unit_test(test_signature_hash_trap),
	    cmocka_unit_test(test_hex_case_insensitive),
	    cmocka_unit_test(test_rejections),
	    cmocka_unit_test(test_default_tolerance_covers_retries),
	    cmocka_unit_test(test_rotation),
	    cmocka_unit_test(test_status_vocabulary),
	    cmocka_unit_test(test_error_catalogue),
	    cmocka_unit_test(test_inbound),
	    cmocka_unit_test(test_unusable_and_extra_fields),
	    cmocka_unit_test(test_dedup_key),
	    cmocka_unit_test(test_scts),
	    cmocka_unit_test(test_json_value_types),
	    cmocka_unit_test(test_json_values_bound),
	    cmocka_unit_test(test_json_size_bound),
	    cmocka_unit_test(test_config),
	};
	return cmocka_run_group_tests_name("provider_vonage", tests, setup, NULL);
}
