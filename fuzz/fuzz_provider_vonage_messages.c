/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the Vonage Messages API adapter as the HTTP front drives it
 * (authenticate, then parse, then the central enrichment), the JWT
 * verifier (jwt.c) included.
 *
 * Input: one flags byte, then parts separated by 0x1e:
 *   body 0x1e authorization 0x1e content-type
 * Flags: 1 sends "Bearer <JWT>" made here with jwt_sign (HS256, our
 * secret, iat = our clock, payload_hash = SHA-256 of the body), so parse()
 * gets the fuzzer's JSON; otherwise the authorization part is sent as the
 * header as is (so the fuzzer reaches jwt_verify's parser with arbitrary
 * tokens).  2 uses the inbound hook, 4 uses GET, 8 moves our clock 400 s
 * away from iat.
 *
 * Properties: authenticate() returns 0 or a documented code; a correctly
 * signed POST of application/json within the window is accepted when the
 * body is a JSON object nested at most LIM_JSON_DEPTH deep (DLRD_EINVAL
 * otherwise), DLRD_ESTALE outside it;
 * parse() never fails and makes one bounded event with a hex dedup key.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "crypto.h"
#include "dlrd_limits.h"
#include "fuzz.h"
#include "json.h"
#include "jwt.h"
#include "optout.h"
#include "privacy.h"
#include "provider.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FVM_SECRET "fuzz-vonage-messages-secret"
#define FVM_NOW    1700000000000LL

static const struct provider *fvm_prov;
static void *fvm_state;
static struct config fvm_cfg;

static void fvm_init(void)
{
	char err[256];
	static const uint8_t key[32] = {9, 9, 9};

	setenv("DLRD_VONAGE_MESSAGES_SIGNATURE_SECRETS", FVM_SECRET, 1);
	FZ_CHECK(config_load(NULL, &fvm_cfg, err, sizeof(err)) == 0);
	fvm_prov = provider_find("vonage-messages", 15);
	FZ_CHECK(fvm_prov != NULL);
	FZ_CHECK(fvm_prov->init(&fvm_cfg, &fvm_state, err, sizeof(err)) == 0 && fvm_state);
	privacy_set_hash_key(key, sizeof(key));
}

static const char *fvm_auth;

static const char *fvm_header(void *hctx, const char *name)
{
	(void)hctx;
	return strcasecmp(name, "Authorization") == 0 ? fvm_auth : NULL;
}

static void fvm_check_text(const char *s, size_t max)
{
	if (!s)
		return;
	size_t n = strnlen(s, max + 1);
	FZ_CHECK(n <= max);
	for (size_t i = 0; i < n; i++)
		FZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

static void fvm_check_events(const struct provider_result *res)
{
	FZ_CHECK(res->n_events == 1);
	const struct dlr_event *ev = &res->events[0];
	FZ_CHECK(ev->kind == EV_STATUS || ev->kind == EV_UNUSABLE || ev->kind == EV_INBOUND);
	FZ_CHECK(ev->status < ST__COUNT);
	FZ_CHECK(strcmp(ev->provider, "vonage-messages") == 0);
	FZ_CHECK(ev->kind == EV_UNUSABLE || ev->provider_message_id != NULL);
	fvm_check_text(ev->provider_message_id, LIM_ID_BYTES);
	fvm_check_text(ev->raw_status, LIM_STATUS_BYTES);
	fvm_check_text(ev->error_code, LIM_STATUS_BYTES);
	fvm_check_text(ev->sender_identity, LIM_ID_BYTES);
	FZ_CHECK(!ev->recipient_hash || strlen(ev->recipient_hash) == 64);
	FZ_CHECK(strlen(ev->dedup_key) == 64);
	FZ_CHECK(!ev->read || ev->status == ST_DELIVERED);
	if (ev->kind == EV_STATUS) {
		const char *title = NULL;
		(void)errcat_classify(fvm_prov->errors, ev->error_code, ev->status, &title);
	} else if (ev->kind == EV_INBOUND) {
		(void)optout_classify(ev->text, ev->text_len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t flags = fz_byte(&in);
	int more = 0;
	struct iov bodyv = fz_part(&in, &more);
	struct iov authv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	int has_ct = more;
	struct iov ctv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	char *body = fz_exact(bodyv), *auth, *ctype, err[256], buf[8192];
	struct provider_request pr;
	struct provider_result res;
	struct arena a;
	int rc, is_obj = 0;

	if (!fvm_prov)
		fvm_init();
	if (flags & 1) {
		uint8_t md[CRYPTO_SHA256_LEN];
		char hex[65], claims[256], tok[1024];
		crypto_sha256(bodyv.n ? bodyv.p : "", bodyv.n, md);
		crypto_hex(md, sizeof(md), hex);
		util_fmt(claims, sizeof(claims),
		         "{\"iat\":%lld,\"jti\":\"j\",\"iss\":\"Vonage\",\"payload_hash\":\"%s\"}",
		         FVM_NOW / 1000, hex);
		FZ_CHECK(jwt_sign(JWT_HS256, FVM_SECRET, claims, tok, sizeof(tok)) > 0);
		auth = xmalloc(strlen(tok) + 8);
		util_fmt(auth, strlen(tok) + 8, "Bearer %s", tok);
		json_error_t je;
		json_t *j =
		    json_loadb(bodyv.n ? bodyv.p : "", bodyv.n, JSON_REJECT_DUPLICATES, &je);
		is_obj = j && json_is_object(j) && jsonx_depth_ok(bodyv.p, bodyv.n, LIM_JSON_DEPTH);
		json_decref(j);
	} else {
		auth = fz_cstr(authv);
	}
	ctype = has_ct ? fz_cstr(ctv) : xstrdup("application/json");
	fvm_auth = *auth ? auth : NULL;
	arena_init(&a, buf, sizeof(buf));
	memset(&pr, 0, sizeof(pr));
	pr.method = flags & 4 ? "GET" : "POST";
	pr.kind = flags & 2 ? HOOK_INBOUND : HOOK_STATUS;
	pr.target = flags & 2 ? IOV_LIT("/webhooks/vonage-messages/inbound")
	                      : IOV_LIT("/webhooks/vonage-messages/status");
	pr.path = pr.target;
	pr.body = (struct iov){body, bodyv.n};
	pr.content_type = ctype;
	pr.public_url = "https://sms.example.com";
	pr.now_ms = FVM_NOW + (flags & 8 ? 400000 : 0);
	pr.arena = &a;
	pr.header = fvm_header;
	err[0] = '\0';
	rc = fvm_prov->authenticate(fvm_state, &pr, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == DLRD_EAUTH || rc == DLRD_ESTALE || rc == DLRD_EMETHOD ||
	         rc == DLRD_EUNSUPP || rc == DLRD_EINVAL);
	FZ_CHECK(!strstr(err, FVM_SECRET));
	if ((flags & 1) && !(flags & 4) && strcmp(ctype, "application/json") == 0)
		FZ_CHECK(rc == (flags & 8 ? DLRD_ESTALE : is_obj ? 0 : DLRD_EINVAL));
	if (rc == 0) {
		memset(&res, 0, sizeof(res));
		res.http_status = 200;
		rc = fvm_prov->parse(fvm_state, &pr, &res, err, sizeof(err));
		FZ_CHECK(rc == 0);
		fvm_check_events(&res);
	}
	arena_fini(&a);
	free(body);
	free(auth);
	free(ctype);
	return 0;
}
