/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the MessageBird status report adapter as the HTTP front
 * drives it (authenticate, then parse, then the central enrichment), the
 * JWT verifier (jwt.c) and its claim checks included.
 *
 * Input: one flags byte, then parts separated by 0x1e:
 *   query 0x1e body 0x1e token
 * The request-target is "/webhooks/messagebird/status?" + query.  Flags: 1
 * sends a MessageBird-Signature-JWT made here with jwt_sign (HS256, our
 * key, nbf = our clock, exp = nbf + 60, url_hash of public_url + target,
 * payload_hash of the body when there is one), so parse() gets the
 * fuzzer's fields; otherwise the token part is sent as is.  2 uses HS512
 * for the signed token, 4 POSTs the body as a form, 8 moves our clock
 * 400 s past exp.
 *
 * Properties: authenticate() returns 0 or a documented code; a correctly
 * signed GET with an empty body is accepted (or DLRD_EINVAL when the query
 * does not decode), DLRD_ESTALE past exp; parse() never fails and makes one
 * bounded event with a hex dedup key.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "crypto.h"
#include "dlrd_limits.h"
#include "fuzz.h"
#include "jwt.h"
#include "privacy.h"
#include "provider.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FMB_KEY  "fuzz-messagebird-signing-key"
#define FMB_NOW  1700000000LL
#define FMB_BASE "https://sms.example.com"
#define FMB_PATH "/webhooks/messagebird/status"

static const struct provider *fmb_prov;
static void *fmb_state;
static struct config fmb_cfg;

static void fmb_init(void)
{
	char err[256];
	static const uint8_t key[32] = {5, 5, 5};

	setenv("DLRD_MESSAGEBIRD_SIGNING_KEYS", FMB_KEY, 1);
	FZ_CHECK(config_load(NULL, &fmb_cfg, err, sizeof(err)) == 0);
	fmb_prov = provider_find("messagebird", 11);
	FZ_CHECK(fmb_prov != NULL);
	FZ_CHECK(fmb_prov->init(&fmb_cfg, &fmb_state, err, sizeof(err)) == 0 && fmb_state);
	privacy_set_hash_key(key, sizeof(key));
}

static const char *fmb_tok;

static const char *fmb_header(void *hctx, const char *name)
{
	(void)hctx;
	return strcasecmp(name, "MessageBird-Signature-JWT") == 0 ? fmb_tok : NULL;
}

static void fmb_hex256(const void *p, size_t n, char hex[65])
{
	uint8_t md[CRYPTO_SHA256_LEN];
	crypto_sha256(p, n, md);
	crypto_hex(md, sizeof(md), hex);
}

static void fmb_check_text(const char *s, size_t max)
{
	if (!s)
		return;
	size_t n = strnlen(s, max + 1);
	FZ_CHECK(n <= max);
	for (size_t i = 0; i < n; i++)
		FZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

static void fmb_check_events(const struct provider_result *res)
{
	FZ_CHECK(res->n_events == 1);
	const struct dlr_event *ev = &res->events[0];
	FZ_CHECK(ev->kind == EV_STATUS || ev->kind == EV_UNUSABLE);
	FZ_CHECK(ev->status < ST__COUNT);
	FZ_CHECK(strcmp(ev->provider, "messagebird") == 0);
	FZ_CHECK(ev->kind == EV_UNUSABLE || ev->provider_message_id != NULL);
	fmb_check_text(ev->provider_message_id, LIM_ID_BYTES);
	fmb_check_text(ev->raw_status, LIM_STATUS_BYTES);
	fmb_check_text(ev->error_code, LIM_STATUS_BYTES);
	fmb_check_text(ev->sender_identity, LIM_ID_BYTES);
	FZ_CHECK(!ev->recipient_hash || strlen(ev->recipient_hash) == 64);
	FZ_CHECK(strlen(ev->dedup_key) == 64);
	if (ev->kind == EV_STATUS) {
		const char *title = NULL;
		(void)errcat_classify(fmb_prov->errors, ev->error_code, ev->status, &title);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t flags = fz_byte(&in);
	int more = 0;
	struct iov qv = fz_part(&in, &more);
	struct iov bodyv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	struct iov tokv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	size_t tlen = sizeof(FMB_PATH) + qv.n;
	char *target = xmalloc(tlen), *body = fz_exact(bodyv), *tok, err[256], buf[8192];
	struct provider_request pr;
	struct provider_result res;
	struct arena a;
	int rc;

	if (!fmb_prov)
		fmb_init();
	memcpy(target, FMB_PATH "?", sizeof(FMB_PATH));
	if (qv.n)
		memcpy(target + sizeof(FMB_PATH), qv.p, qv.n);
	if (flags & 1) {
		size_t ul = strlen(FMB_BASE);
		char *url = xmalloc(ul + tlen), uh[65], ph[65], claims[512];
		memcpy(url, FMB_BASE, ul);
		memcpy(url + ul, target, tlen);
		fmb_hex256(url, ul + tlen, uh);
		fmb_hex256(bodyv.n ? bodyv.p : "", bodyv.n, ph);
		util_fmt(claims, sizeof(claims),
		         "{\"iss\":\"MessageBird\",\"nbf\":%lld,\"exp\":%lld,\"jti\":\"j\","
		         "\"url_hash\":\"%s\"%s%s%s}",
		         FMB_NOW, FMB_NOW + 60, uh, bodyv.n ? ",\"payload_hash\":\"" : "",
		         bodyv.n ? ph : "", bodyv.n ? "\"" : "");
		tok = xmalloc(2048);
		FZ_CHECK(jwt_sign(flags & 2 ? JWT_HS512 : JWT_HS256, FMB_KEY, claims, tok, 2048) >
		         0);
		free(url);
	} else {
		tok = fz_cstr(tokv);
	}
	fmb_tok = *tok ? tok : NULL;
	arena_init(&a, buf, sizeof(buf));
	memset(&pr, 0, sizeof(pr));
	pr.method = flags & 4 ? "POST" : "GET";
	pr.kind = HOOK_STATUS;
	pr.target = (struct iov){target, tlen};
	pr.path = (struct iov){target, sizeof(FMB_PATH) - 1};
	pr.query = (struct iov){target + sizeof(FMB_PATH), qv.n};
	pr.body = (struct iov){body, bodyv.n};
	pr.content_type = flags & 4 ? "application/x-www-form-urlencoded" : "";
	pr.public_url = FMB_BASE;
	pr.now_ms = FMB_NOW * 1000 + (flags & 8 ? 460000 : 0);
	pr.arena = &a;
	pr.header = fmb_header;
	err[0] = '\0';
	rc = fmb_prov->authenticate(fmb_state, &pr, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == DLRD_EAUTH || rc == DLRD_ESTALE || rc == DLRD_EMETHOD ||
	         rc == DLRD_EUNSUPP || rc == DLRD_EINVAL);
	FZ_CHECK(!strstr(err, FMB_KEY));
	if ((flags & 1) && !(flags & 4) && bodyv.n == 0)
		FZ_CHECK(flags & 8 ? rc == DLRD_ESTALE : (rc == 0 || rc == DLRD_EINVAL));
	if (rc == 0) {
		memset(&res, 0, sizeof(res));
		res.http_status = 200;
		rc = fmb_prov->parse(fmb_state, &pr, &res, err, sizeof(err));
		FZ_CHECK(rc == 0);
		fmb_check_events(&res);
	}
	arena_fini(&a);
	free(target);
	free(body);
	free(tok);
	return 0;
}
