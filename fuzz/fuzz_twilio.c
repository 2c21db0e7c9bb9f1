/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the Twilio adapter as the HTTP front drives it, through the
 * provider table (authenticate, then parse, then the central enrichment),
 * with sig_twilio_verify() underneath.
 *
 * Input: one flags byte, then parts separated by 0x1e:
 *   query 0x1e body 0x1e signature 0x1e content-type 0x1e public_url
 * The request-target is /webhooks/twilio/status, plus "?query" when the
 * query is not empty.  Flags & 3 pick how the request is signed:
 *   0  the signature part is sent as is (forged, truncated, not base64...);
 *   1  the form body is signed correctly, so parse() is reached with the
 *      fuzzer's fields;
 *   2  the JSON variant: bodySHA256=<hex SHA-256 of the body> is appended to
 *      the query and the URL is signed, so the JSON reader gets the fuzzer's
 *      body;
 *   3  as 1, but signed for the URL with the default port (":443"), which
 *      Twilio's validator also accepts.
 * Flag 4 sends GET instead of POST (signed over the URL alone, as Twilio
 * signs GET webhooks), flag 8 signs with the second token, flag 16 takes
 * public_url from the input instead of the configured one, flag 32 posts to
 * the inbound hook (/webhooks/twilio/inbound) instead of the status hook.
 * The content-type part, when present, replaces the default media type.
 *
 * Properties: authenticate() returns 0 or one of its documented codes and
 * never puts a token in its message; a request signed correctly (modes 1
 * and 3 with a form that decodes, mode 2) with the right method and type is
 * accepted (mode 2: or refused as 400 when the body is no JSON object), and
 * so is an inbound GET whose query decodes; a signature computed for
 * another public URL is refused; parse() makes at most
 * LIM_EVENTS_PER_REQUEST events whose strings are bounded, NUL-terminated
 * and free of control bytes, with a 64-hex-digit dedup key.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "config.h"
#include "crypto.h"
#include "dlrd_limits.h"
#include "form.h"
#include "fuzz.h"
#include "optout.h"
#include "privacy.h"
#include "provider.h"
#include "sig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FT_PUBLIC_URL "https://sms.example.com"
#define FT_PATH       "/webhooks/twilio/status"
#define FT_PATH_IN    "/webhooks/twilio/inbound"
#define FT_TOKEN1     "fuzz-token-one-0123456789abcdef0"
#define FT_TOKEN2     "fuzz-token-two-fedcba9876543210f"
#define FT_ARENA      6144 /* as the HTTP front's inline request arena */

static const struct provider *ft_prov;
static void *ft_state;
static struct config ft_cfg;

static void ft_init(void)
{
	char err[256];
	static const uint8_t key[32] = {1, 2, 3};

	setenv("DLRD_TWILIO_AUTH_TOKENS", FT_TOKEN1 "," FT_TOKEN2, 1);
	FZ_CHECK(config_load(NULL, &ft_cfg, err, sizeof(err)) == 0);
	ft_prov = provider_find("twilio", 6);
	FZ_CHECK(ft_prov != NULL);
	FZ_CHECK(ft_prov->init(&ft_cfg, &ft_state, err, sizeof(err)) == 0 && ft_state);
	privacy_set_hash_key(key, sizeof(key));
}

/* The request's headers: only the signature. */
struct ft_headers {
	const char *sig;
};

static const char *ft_header(void *hctx, const char *name)
{
	const struct ft_headers *h = hctx;
	return strcmp(name, "X-Twilio-Signature") == 0 ? h->sig : NULL;
}

/* As http.c's media_type(): leading blanks skipped, parameters dropped,
 * lower-cased. */
static char *ft_media_type(struct iov ct)
{
	char *s = fz_cstr(ct), *p = s;
	while (*p == ' ' || *p == '\t')
		p++;
	size_t n = strcspn(p, "; \t");
	for (size_t i = 0; i < n; i++)
		s[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
	s[n] = '\0';
	return s;
}

/* true when the query decodes as a form without a field named bodySHA256 */
static int ft_query_plain(struct iov q)
{
	struct arena a;
	struct form f;
	char err[128];
	int ok;

	if (q.n == 0)
		return 1;
	arena_init(&a, NULL, 0);
	ok = form_decode(&a, q.p, q.n, LIM_FORM_FIELDS, &f, err, sizeof(err)) == 0 &&
	     !form_get(&f, "bodySHA256");
	arena_fini(&a);
	return ok;
}

static void ft_check_text(const char *s, size_t max)
{
	if (!s)
		return;
	size_t n = strnlen(s, max + 1);
	FZ_CHECK(n <= max);
	for (size_t i = 0; i < n; i++)
		FZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

static void ft_check_events(const struct provider_result *res)
{
	FZ_CHECK(res->n_events <= LIM_EVENTS_PER_REQUEST);
	FZ_CHECK(res->n_events == 0 || res->events != NULL);
	FZ_CHECK(res->http_status >= 200 && res->http_status < 600);
	FZ_CHECK(!res->body || strlen(res->body) < 65536);
	for (size_t i = 0; i < res->n_events; i++) {
		const struct dlr_event *ev = &res->events[i];
		FZ_CHECK(ev->kind == EV_STATUS || ev->kind == EV_UNUSABLE ||
		         ev->kind == EV_INBOUND);
		FZ_CHECK(ev->status < ST__COUNT);
		FZ_CHECK(ev->provider && strcmp(ev->provider, "twilio") == 0);
		FZ_CHECK(ev->kind == EV_UNUSABLE || ev->provider_message_id != NULL);
		FZ_CHECK(ev->kind != EV_UNUSABLE || ev->review == REVIEW_UNUSABLE);
		ft_check_text(ev->provider_message_id, LIM_ID_BYTES);
		ft_check_text(ev->provider_event_id, LIM_ID_BYTES);
		ft_check_text(ev->raw_status, LIM_STATUS_BYTES);
		ft_check_text(ev->error_code, LIM_STATUS_BYTES);
		ft_check_text(ev->sender_identity, LIM_ID_BYTES);
		FZ_CHECK(!ev->recipient_hash || strlen(ev->recipient_hash) == 64);
		FZ_CHECK(strlen(ev->dedup_key) == 64);
		for (size_t k = 0; k < 64; k++)
			FZ_CHECK(strchr("0123456789abcdef", ev->dedup_key[k]) != NULL);
		FZ_CHECK(ev->kind != EV_INBOUND || !ev->text || strlen(ev->text) == ev->text_len);
		/* the central enrichment the HTTP front applies */
		if (ev->kind == EV_STATUS) {
			const char *title = NULL;
			(void)errcat_classify(ft_prov->errors, ev->error_code, ev->status, &title);
		} else if (ev->kind == EV_INBOUND) {
			(void)optout_classify(ev->text, ev->text_len);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t flags = fz_byte(&in);
	int mode = flags & 3, more = 0;
	struct iov query = fz_part(&in, &more);
	struct iov bodyv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	struct iov sigv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	int has_ct = more;
	struct iov ctv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	struct iov urlv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	const char *token = flags & 8 ? FT_TOKEN2 : FT_TOKEN1;
	char *body = fz_exact(bodyv), *sig = NULL, *ctype = NULL, *public_url = NULL;
	char *target = NULL, *url = NULL, err[256], arena_buf[FT_ARENA];
	size_t tlen, ulen;
	struct provider_request pr;
	struct provider_result res;
	struct ft_headers hdr = {NULL};
	struct arena a;
	int rc, form_ok = 0;

	if (!ft_prov)
		ft_init();
	public_url = flags & 16 ? fz_cstr(urlv) : xstrdup(FT_PUBLIC_URL);
	if (has_ct)
		ctype = ft_media_type(ctv);
	else
		ctype =
		    xstrdup(mode == 2 ? "application/json" : "application/x-www-form-urlencoded");

	/* the request-target */
	const char *path = flags & 32 ? FT_PATH_IN : FT_PATH;
	tlen = strlen(path) + query.n + 2 + sizeof("&bodySHA256=") + 64;
	target = xmalloc(tlen);
	tlen = strlen(path);
	memcpy(target, path, tlen);
	if (query.n || mode == 2)
		target[tlen++] = '?';
	if (query.n) {
		memcpy(target + tlen, query.p, query.n);
		tlen += query.n;
	}
	if (mode == 2) {
		uint8_t md[CRYPTO_SHA256_LEN];
		char hex[2 * CRYPTO_SHA256_LEN + 1];
		crypto_sha256(body ? body : "", bodyv.n, md);
		crypto_hex(md, sizeof(md), hex);
		tlen +=
		    util_fmt(target + tlen, 14 + 64, "%sbodySHA256=%s", query.n ? "&" : "", hex);
	}

	/* the signature */
	arena_init(&a, arena_buf, sizeof(arena_buf));
	ulen = strlen(public_url) + tlen + 4;
	url = xmalloc(ulen + 1);
	if (mode == 0) {
		sig = fz_cstr(sigv);
	} else {
		struct form f = {NULL, 0};
		struct arena sa;
		char sbuf[29];
		const char *port = mode == 3 ? ":443" : "";
		size_t n = util_fmt(url, ulen + 1, "%s%s", public_url, port);
		memcpy(url + n, target, tlen);
		arena_init(&sa, NULL, 0);
		if (mode != 2 && !(flags & 4))
			form_ok = form_decode(&sa, body, bodyv.n, LIM_FORM_FIELDS, &f, err,
			                      sizeof(err)) == 0;
		sig_twilio_sign(token, (struct iov){url, n + tlen},
		                mode == 2 || (flags & 4) ? NULL : &f, sbuf);
		sig = xstrdup(sbuf);
		arena_fini(&sa);
	}
	hdr.sig = sig;

	memset(&pr, 0, sizeof(pr));
	pr.method = flags & 4 ? "GET" : "POST";
	pr.kind = flags & 32 ? HOOK_INBOUND : HOOK_STATUS;
	pr.target = (struct iov){target, tlen};
	const char *qm = memchr(target, '?', tlen);
	pr.path = (struct iov){target, qm ? (size_t)(qm - target) : tlen};
	pr.query =
	    qm ? (struct iov){qm + 1, tlen - (size_t)(qm - target) - 1} : (struct iov){"", 0};
	pr.body = (struct iov){body, bodyv.n};
	pr.content_type = ctype;
	pr.public_url = public_url;
	pr.now_ms = 1764255600000;
	pr.arena = &a;
	pr.header = ft_header;
	pr.hctx = &hdr;

	err[0] = '\0';
	rc = ft_prov->authenticate(ft_state, &pr, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == DLRD_EAUTH || rc == DLRD_EINVAL || rc == DLRD_EUNSUPP ||
	         rc == DLRD_EMETHOD || rc == DLRD_ESTALE);
	FZ_CHECK(rc == 0 || err[0] != '\0');
	FZ_CHECK(!strstr(err, FT_TOKEN1) && !strstr(err, FT_TOKEN2));
	/* Correctly signed, with the right method and type: must pass.  (Not
	 * when the fuzzer's own query names a bodySHA256 parameter, which turns
	 * the request into the JSON variant, or does not decode, when it might.) */
	int plain = !(flags & 16) && !has_ct && ft_query_plain(query);
	if (plain && !(flags & 4) && (mode == 1 || mode == 3) && form_ok)
		FZ_CHECK(rc == 0);
	if (plain && (flags & 4) && (flags & 32) && (mode == 1 || mode == 3))
		FZ_CHECK(rc == 0);
	if (plain && !(flags & 4) && mode == 2) {
		/* the JSON variant authenticates, then reads the body: only a body
		 * that is not a usable JSON object may fail, and as 400 */
		FZ_CHECK(rc == 0 || rc == DLRD_EINVAL);
	}
	if (rc == 0) {
		memset(&res, 0, sizeof(res));
		res.http_status = 200;
		rc = ft_prov->parse(ft_state, &pr, &res, err, sizeof(err));
		FZ_CHECK(rc == 0 || rc == DLRD_EINVAL);
		if (rc == 0)
			ft_check_events(&res);
	}
	/* the same request signed for another host is always refused */
	if (mode != 0 && !(flags & 16)) {
		char other[29];
		struct form f = {NULL, 0};
		struct arena sa;
		static const char evil[] = "https://evil.example.net";
		size_t n = util_fmt(url, ulen + 1, "%s", evil);
		if (n + tlen <= ulen) {
			memcpy(url + n, target, tlen);
			arena_init(&sa, NULL, 0);
			if (mode == 2 || form_decode(&sa, body, bodyv.n, LIM_FORM_FIELDS, &f, err,
			                             sizeof(err)) == 0) {
				sig_twilio_sign(token, (struct iov){url, n + tlen},
				                mode == 2 ? NULL : &f, other);
				rc = sig_twilio_verify(
				    (char *const[]){FT_TOKEN1, FT_TOKEN2}, 2, public_url,
				    (struct iov){target, tlen}, mode == 2 ? NULL : &f,
				    (struct iov){body, bodyv.n}, (struct iov){other, strlen(other)},
				    err, sizeof(err));
				FZ_CHECK(rc == DLRD_EAUTH);
			}
			arena_fini(&sa);
		}
	}

	arena_fini(&a);
	free(url);
	free(target);
	free(sig);
	free(ctype);
	free(public_url);
	free(body);
	return 0;
}
