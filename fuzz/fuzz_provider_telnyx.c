/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the Telnyx adapter as the HTTP front drives it (authenticate,
 * then parse, then the central enrichment), Ed25519 verification included.
 *
 * Input: one flags byte, then parts separated by 0x1e:
 *   body 0x1e signature 0x1e timestamp 0x1e content-type
 * Flags: 1 signs the body correctly (key: the RFC 8032 TEST 1 seed) at a
 * fixed timestamp, so parse() gets the fuzzer's JSON; otherwise the
 * signature and timestamp parts are sent as is.  2 posts to the inbound
 * hook, 4 uses GET, 8 moves our clock 400 s away from the signed time.
 *
 * Properties: authenticate() returns 0 or a documented code; a correctly
 * signed POST of application/json within the window is accepted, and one
 * outside it is DLRD_ESTALE; parse() never fails on an accepted request and
 * makes bounded, NUL-terminated events with a hex dedup key.
 */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "crypto.h"
#include "dlrd_limits.h"
#include "fuzz.h"
#include "optout.h"
#include "privacy.h"
#include "provider.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FTX_TS  "1700000000"
#define FTX_NOW 1700000000000LL

static const uint8_t ftx_seed[32] = {
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60};
static const struct provider *ftx_prov;
static void *ftx_state;
static struct config ftx_cfg;
static EVP_PKEY *ftx_key;

static void ftx_init(void)
{
	char err[256];
	static const uint8_t key[32] = {1, 2, 3};

	setenv("DLRD_TELNYX_PUBLIC_KEYS", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", 1);
	FZ_CHECK(config_load(NULL, &ftx_cfg, err, sizeof(err)) == 0);
	ftx_prov = provider_find("telnyx", 6);
	FZ_CHECK(ftx_prov != NULL);
	FZ_CHECK(ftx_prov->init(&ftx_cfg, &ftx_state, err, sizeof(err)) == 0 && ftx_state);
	ftx_key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, ftx_seed, 32);
	FZ_CHECK(ftx_key != NULL);
	privacy_set_hash_key(key, sizeof(key));
}

struct ftx_headers {
	const char *sig, *ts;
};

static const char *ftx_header(void *hctx, const char *name)
{
	const struct ftx_headers *h = hctx;
	if (strcasecmp(name, "telnyx-signature-ed25519") == 0)
		return h->sig;
	if (strcasecmp(name, "telnyx-timestamp") == 0)
		return h->ts;
	return NULL;
}

static void ftx_sign(struct iov body, char out[100])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	size_t tl = strlen(FTX_TS), sl = 64;
	uint8_t *m = xmalloc(tl + 1 + body.n), s[64];
	memcpy(m, FTX_TS, tl);
	m[tl] = '|';
	if (body.n)
		memcpy(m + tl + 1, body.p, body.n);
	FZ_CHECK(EVP_DigestSignInit(c, NULL, NULL, NULL, ftx_key) == 1);
	FZ_CHECK(EVP_DigestSign(c, s, &sl, m, tl + 1 + body.n) == 1);
	crypto_b64_encode(s, sl, out);
	free(m);
	EVP_MD_CTX_free(c);
}

static void ftx_check_text(const char *s, size_t max)
{
	if (!s)
		return;
	size_t n = strnlen(s, max + 1);
	FZ_CHECK(n <= max);
	for (size_t i = 0; i < n; i++)
		FZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

static void ftx_check_events(const struct provider_result *res)
{
	FZ_CHECK(res->n_events >= 1 && res->n_events <= LIM_EVENTS_PER_REQUEST);
	for (size_t i = 0; i < res->n_events; i++) {
		const struct dlr_event *ev = &res->events[i];
		FZ_CHECK(ev->kind == EV_STATUS || ev->kind == EV_UNUSABLE ||
		         ev->kind == EV_INBOUND);
		FZ_CHECK(ev->status < ST__COUNT);
		FZ_CHECK(strcmp(ev->provider, "telnyx") == 0);
		FZ_CHECK(ev->kind == EV_UNUSABLE || ev->provider_message_id != NULL);
		ftx_check_text(ev->provider_message_id, LIM_ID_BYTES);
		ftx_check_text(ev->provider_event_id, 2 * LIM_ID_BYTES + 2);
		ftx_check_text(ev->raw_status, LIM_STATUS_BYTES);
		ftx_check_text(ev->error_code, LIM_STATUS_BYTES);
		ftx_check_text(ev->sender_identity, LIM_ID_BYTES);
		FZ_CHECK(!ev->recipient_hash || strlen(ev->recipient_hash) == 64);
		FZ_CHECK(strlen(ev->dedup_key) == 64);
		FZ_CHECK(ev->kind != EV_INBOUND || !ev->text || strlen(ev->text) <= ev->text_len);
		if (ev->kind == EV_STATUS) {
			const char *title = NULL;
			(void)errcat_classify(ftx_prov->errors, ev->error_code, ev->status, &title);
		} else if (ev->kind == EV_INBOUND) {
			(void)optout_classify(ev->text, ev->text_len);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t flags = fz_byte(&in);
	int more = 0;
	struct iov bodyv = fz_part(&in, &more);
	struct iov sigv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	struct iov tsv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	int has_ct = more;
	struct iov ctv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	char *body = fz_exact(bodyv), *sig, *ts, *ctype, signed_sig[100], err[256], buf[6144];
	struct ftx_headers h;
	struct provider_request pr;
	struct provider_result res;
	struct arena a;
	int rc;

	if (!ftx_prov)
		ftx_init();
	if (flags & 1) {
		ftx_sign(bodyv, signed_sig);
		sig = xstrdup(signed_sig);
		ts = xstrdup(FTX_TS);
	} else {
		sig = fz_cstr(sigv);
		ts = fz_cstr(tsv);
	}
	ctype = has_ct ? fz_cstr(ctv) : xstrdup("application/json");
	h.sig = *sig ? sig : NULL;
	h.ts = *ts ? ts : NULL;
	arena_init(&a, buf, sizeof(buf));
	memset(&pr, 0, sizeof(pr));
	pr.method = flags & 4 ? "GET" : "POST";
	pr.kind = flags & 2 ? HOOK_INBOUND : HOOK_STATUS;
	pr.target =
	    flags & 2 ? IOV_LIT("/webhooks/telnyx/inbound") : IOV_LIT("/webhooks/telnyx/status");
	pr.path = pr.target;
	pr.body = (struct iov){body, bodyv.n};
	pr.content_type = ctype;
	pr.public_url = "https://sms.example.com";
	pr.now_ms = FTX_NOW + (flags & 8 ? 400000 : 0);
	pr.arena = &a;
	pr.header = ftx_header;
	pr.hctx = &h;
	err[0] = '\0';
	rc = ftx_prov->authenticate(ftx_state, &pr, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == DLRD_EAUTH || rc == DLRD_ESTALE || rc == DLRD_EMETHOD ||
	         rc == DLRD_EUNSUPP || rc == DLRD_EINVAL);
	if ((flags & 1) && !(flags & 4) && strcmp(ctype, "application/json") == 0)
		FZ_CHECK(rc == (flags & 8 ? DLRD_ESTALE : 0));
	if (rc == 0) {
		memset(&res, 0, sizeof(res));
		res.http_status = 200;
		rc = ftx_prov->parse(ftx_state, &pr, &res, err, sizeof(err));
		FZ_CHECK(rc == 0 || rc == DLRD_EINVAL);
		if (rc == 0)
			ftx_check_events(&res);
	}
	arena_fini(&a);
	free(body);
	free(sig);
	free(ts);
	free(ctype);
	return 0;
}
