/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the Plivo adapter as the HTTP front drives it (authenticate
 * with the V3/V2 signature schemes and form decoding, then parse, then the
 * central enrichment).
 *
 * Input: one flags byte, then parts separated by 0x1e:
 *   query 0x1e body 0x1e signature 0x1e nonce 0x1e content-type
 * Flags: 1 signs with V2 (URL without query + nonce: the body is not covered,
 * so parse() gets the fuzzer's fields whatever they are); otherwise the
 * signature part goes in X-Plivo-Signature-V3 (2: in -Ma-V3, 4: in -V2).
 * 8 uses GET (fields from the query), 16 posts to the inbound hook.
 *
 * Properties: authenticate() returns 0 or a documented code; a V2-signed
 * POST of a form body that decodes is accepted (GET: a query that decodes);
 * parse() never fails on an accepted request and makes one bounded event.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "arena.h"
#include "config.h"
#include "crypto.h"
#include "dlrd_limits.h"
#include "form.h"
#include "fuzz.h"
#include "optout.h"
#include "privacy.h"
#include "provider.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FPL_TOKEN "fuzz-plivo-token-0123456789"
#define FPL_URL   "https://sms.example.com"

static const struct provider *fpl_prov;
static void *fpl_state;
static struct config fpl_cfg;

static void fpl_init(void)
{
	char err[256];
	static const uint8_t key[32] = {1, 2, 3};

	setenv("DLRD_PLIVO_AUTH_TOKENS", FPL_TOKEN, 1);
	setenv("DLRD_PLIVO_MAIN_AUTH_TOKENS", "fuzz-main-token", 1);
	FZ_CHECK(config_load(NULL, &fpl_cfg, err, sizeof(err)) == 0);
	fpl_prov = provider_find("plivo", 5);
	FZ_CHECK(fpl_prov != NULL);
	FZ_CHECK(fpl_prov->init(&fpl_cfg, &fpl_state, err, sizeof(err)) == 0 && fpl_state);
	privacy_set_hash_key(key, sizeof(key));
}

struct fpl_headers {
	const char *names[3];
	const char *values[3];
};

static const char *fpl_header(void *hctx, const char *name)
{
	const struct fpl_headers *h = hctx;
	for (int i = 0; i < 3; i++)
		if (h->names[i] && strcasecmp(name, h->names[i]) == 0)
			return h->values[i];
	return NULL;
}

static int fpl_decodes(struct iov v)
{
	struct arena a;
	struct form f;
	char err[128];
	int ok;
	arena_init(&a, NULL, 0);
	ok = form_decode(&a, v.p, v.n, LIM_FORM_FIELDS, &f, err, sizeof(err)) == 0;
	arena_fini(&a);
	return ok;
}

static void fpl_check_text(const char *s, size_t max)
{
	if (!s)
		return;
	size_t n = strnlen(s, max + 1);
	FZ_CHECK(n <= max);
	for (size_t i = 0; i < n; i++)
		FZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t flags = fz_byte(&in);
	int more = 0;
	struct iov query = fz_part(&in, &more);
	struct iov bodyv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	struct iov sigv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	struct iov noncev = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	int has_ct = more;
	struct iov ctv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	const char *path = flags & 16 ? "/webhooks/plivo/inbound" : "/webhooks/plivo/status";
	char *body = fz_exact(bodyv), *sig, *nonce = fz_cstr(noncev), *ctype, *target;
	char err[256], buf[6144], v2[64];
	bool get = flags & 8;
	struct fpl_headers h = {{NULL}, {NULL}};
	struct provider_request pr;
	struct provider_result res;
	struct arena a;
	size_t tl;
	int rc;

	if (!fpl_prov)
		fpl_init();
	tl = strlen(path);
	target = xmalloc(tl + 1 + query.n + 1);
	memcpy(target, path, tl);
	if (query.n) {
		target[tl] = '?';
		memcpy(target + tl + 1, query.p, query.n);
	}
	if (flags & 1) {
		uint8_t mac[32];
		struct crypto_piece pc[] = {
		    {FPL_URL, strlen(FPL_URL)}, {path, tl}, {nonce, strlen(nonce)}};
		crypto_hmac(CRYPTO_SHA256, FPL_TOKEN, strlen(FPL_TOKEN), pc, 3, mac);
		crypto_b64_encode(mac, sizeof(mac), v2);
		sig = xstrdup(v2);
		h.names[0] = "X-Plivo-Signature-V2";
		h.names[1] = "X-Plivo-Signature-V2-Nonce";
	} else {
		sig = fz_cstr(sigv);
		h.names[0] = flags & 2   ? "X-Plivo-Signature-Ma-V3"
		             : flags & 4 ? "X-Plivo-Signature-V2"
		                         : "X-Plivo-Signature-V3";
		h.names[1] =
		    flags & 4 ? "X-Plivo-Signature-V2-Nonce" : "X-Plivo-Signature-V3-Nonce";
	}
	h.values[0] = sig;
	h.values[1] = nonce;
	ctype = has_ct ? fz_cstr(ctv) : xstrdup(get ? "" : "application/x-www-form-urlencoded");

	arena_init(&a, buf, sizeof(buf));
	memset(&pr, 0, sizeof(pr));
	pr.method = get ? "GET" : "POST";
	pr.kind = flags & 16 ? HOOK_INBOUND : HOOK_STATUS;
	pr.target = (struct iov){target, tl + (query.n ? 1 + query.n : 0)};
	pr.path = (struct iov){target, tl};
	pr.query = query.n ? (struct iov){target + tl + 1, query.n} : (struct iov){"", 0};
	pr.body = (struct iov){body, bodyv.n};
	pr.content_type = ctype;
	pr.public_url = FPL_URL;
	pr.now_ms = 1700000000000LL;
	pr.arena = &a;
	pr.header = fpl_header;
	pr.hctx = &h;
	rc = fpl_prov->authenticate(fpl_state, &pr, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == DLRD_EAUTH || rc == DLRD_EMETHOD || rc == DLRD_EUNSUPP ||
	         rc == DLRD_EINVAL);
	FZ_CHECK(!strstr(err, FPL_TOKEN));
	if ((flags & 1) && *nonce && fpl_decodes(query) && (get || (!has_ct && fpl_decodes(bodyv))))
		FZ_CHECK(rc == 0);
	if (rc == 0) {
		memset(&res, 0, sizeof(res));
		res.http_status = 200;
		FZ_CHECK(fpl_prov->parse(fpl_state, &pr, &res, err, sizeof(err)) == 0);
		FZ_CHECK(res.n_events == 1);
		const struct dlr_event *ev = &res.events[0];
		FZ_CHECK(ev->kind == EV_UNUSABLE || ev->provider_message_id);
		fpl_check_text(ev->provider_message_id, LIM_ID_BYTES);
		fpl_check_text(ev->raw_status, LIM_STATUS_BYTES);
		fpl_check_text(ev->error_code, LIM_STATUS_BYTES);
		fpl_check_text(ev->sender_identity, LIM_ID_BYTES);
		FZ_CHECK(strlen(ev->dedup_key) == 64);
		if (ev->kind == EV_STATUS) {
			const char *title = NULL;
			(void)errcat_classify(fpl_prov->errors, ev->error_code, ev->status, &title);
		} else if (ev->kind == EV_INBOUND) {
			FZ_CHECK(strlen(ev->text) == ev->text_len);
			(void)optout_classify(ev->text, ev->text_len);
		}
	}
	arena_fini(&a);
	free(target);
	free(body);
	free(sig);
	free(nonce);
	free(ctype);
	return 0;
}
