/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: dlrd's own JSON format (provider "generic") as the HTTP front
 * drives it: authenticate() with the Standard Webhooks signature check, then
 * parse() with its strict validation, then the central enrichment.
 *
 * Input: one flags byte, then parts separated by 0x1e:
 *   body 0x1e webhook-id 0x1e webhook-timestamp 0x1e webhook-signature 0x1e content-type
 * Flags: 1 signs id.timestamp.body correctly (with the first secret, or the
 * second with flag 16) at the fixed time FGN_TS, so parse() gets the
 * fuzzer's JSON (the id part is still the fuzzer's); otherwise the
 * timestamp and signature parts are sent as is.  2 posts to the inbound
 * hook, 4 uses GET, 8 moves our clock 301 s away from the signed time.  The
 * content-type part, when present, replaces application/json.
 *
 * Properties: authenticate() returns 0 or a documented code and never puts
 * a secret in its message; a correctly signed POST of application/json with
 * a valid id is accepted inside the window and DLRD_ESTALE outside it;
 * parse() returns 0 or DLRD_EINVAL with a message, and makes exactly one
 * bounded, NUL-terminated event with a hex dedup key whose event id is the
 * webhook-id.
 */
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

#define FGN_SECRET1 "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define FGN_SECRET2 "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
#define FGN_TS      "1700000000"
#define FGN_NOW     1700000000000LL

static const struct provider *fgn_prov;
static void *fgn_state;
static struct config fgn_cfg;

static void fgn_init(void)
{
	char err[256];
	static const uint8_t key[32] = {1, 2, 3};

	setenv("DLRD_GENERIC_SECRETS", FGN_SECRET1 "," FGN_SECRET2, 1);
	unsetenv("DLRD_GENERIC_TOLERANCE_SECONDS");
	FZ_CHECK(config_load(NULL, &fgn_cfg, err, sizeof(err)) == 0);
	fgn_prov = provider_find("generic", 7);
	FZ_CHECK(fgn_prov != NULL);
	FZ_CHECK(fgn_prov->init(&fgn_cfg, &fgn_state, err, sizeof(err)) == 0 && fgn_state);
	privacy_set_hash_key(key, sizeof(key));
}

struct fgn_headers {
	const char *id, *ts, *sig;
};

static const char *fgn_header(void *hctx, const char *name)
{
	const struct fgn_headers *h = hctx;
	if (strcasecmp(name, "webhook-id") == 0)
		return h->id;
	if (strcasecmp(name, "webhook-timestamp") == 0)
		return h->ts;
	if (strcasecmp(name, "webhook-signature") == 0)
		return h->sig;
	return NULL;
}

/* "v1,<base64 HMAC-SHA256(key, id.ts.body)>" */
static void fgn_sign(const char *secret, const char *id, struct iov body, char out[64])
{
	uint8_t key[64], mac[32];
	size_t kl = 0;
	const struct crypto_piece pieces[] = {
	    {id, strlen(id)}, {".", 1}, {FGN_TS, strlen(FGN_TS)}, {".", 1}, {body.p, body.n},
	};

	FZ_CHECK(crypto_b64_decode(secret + 6, strlen(secret) - 6, key, &kl) == 0);
	crypto_hmac(CRYPTO_SHA256, key, kl, pieces, ARRAY_LEN(pieces), mac);
	memcpy(out, "v1,", 3);
	crypto_b64_encode(mac, sizeof(mac), out + 3);
}

static void fgn_check_text(const char *s, size_t max)
{
	if (!s)
		return;
	size_t n = strnlen(s, max + 1);
	FZ_CHECK(n <= max);
	for (size_t i = 0; i < n; i++)
		FZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

/* The id authenticate() accepts: 1..256 printable ASCII bytes, no '.'. */
static int fgn_id_ok(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > LIM_ID_BYTES)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)id[i] <= 0x20 || (unsigned char)id[i] >= 0x7f || id[i] == '.')
			return 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t flags = fz_byte(&in);
	int more = 0;
	struct iov bodyv = fz_part(&in, &more);
	struct iov idv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	struct iov tsv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	struct iov sigv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	int has_ct = more;
	struct iov ctv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	char *body = fz_exact(bodyv), *id = fz_cstr(idv), *ts, *sig, *ctype, signed_sig[64];
	char err[256], buf[6144];
	struct fgn_headers h;
	struct provider_request pr;
	struct provider_result res;
	struct arena a;
	int rc;

	if (!fgn_prov)
		fgn_init();
	if (flags & 1) {
		fgn_sign(flags & 16 ? FGN_SECRET2 : FGN_SECRET1, id, bodyv, signed_sig);
		sig = xstrdup(signed_sig);
		ts = xstrdup(FGN_TS);
	} else {
		ts = fz_cstr(tsv);
		sig = fz_cstr(sigv);
	}
	ctype = has_ct ? fz_cstr(ctv) : xstrdup("application/json");
	h.id = *id ? id : NULL;
	h.ts = *ts ? ts : NULL;
	h.sig = *sig ? sig : NULL;
	arena_init(&a, buf, sizeof(buf));
	memset(&pr, 0, sizeof(pr));
	pr.method = flags & 4 ? "GET" : "POST";
	pr.kind = flags & 2 ? HOOK_INBOUND : HOOK_STATUS;
	pr.target =
	    flags & 2 ? IOV_LIT("/webhooks/generic/inbound") : IOV_LIT("/webhooks/generic/status");
	pr.path = pr.target;
	pr.query = (struct iov){"", 0};
	pr.body = (struct iov){body, bodyv.n};
	pr.content_type = ctype;
	pr.public_url = "https://sms.example.com";
	pr.now_ms = FGN_NOW + (flags & 8 ? 301000 : 0);
	pr.arena = &a;
	pr.header = fgn_header;
	pr.hctx = &h;
	err[0] = '\0';
	rc = fgn_prov->authenticate(fgn_state, &pr, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == DLRD_EAUTH || rc == DLRD_ESTALE || rc == DLRD_EMETHOD ||
	         rc == DLRD_EUNSUPP);
	FZ_CHECK(!strstr(err, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
	if ((flags & 1) && !(flags & 4) && strcmp(ctype, "application/json") == 0 && fgn_id_ok(id))
		FZ_CHECK(rc == (flags & 8 ? DLRD_ESTALE : 0));
	if (rc == 0) {
		memset(&res, 0, sizeof(res));
		res.http_status = 200;
		rc = fgn_prov->parse(fgn_state, &pr, &res, err, sizeof(err));
		FZ_CHECK(rc == 0 || rc == DLRD_EINVAL);
		if (rc != 0) {
			FZ_CHECK(err[0] != '\0');
		} else {
			const struct dlr_event *ev = &res.events[0];
			FZ_CHECK(res.n_events == 1);
			FZ_CHECK(ev->kind == EV_STATUS || ev->kind == EV_INBOUND);
			FZ_CHECK(ev->status < ST__COUNT);
			FZ_CHECK(strcmp(ev->provider, "generic") == 0);
			FZ_CHECK(ev->provider_event_id && strcmp(ev->provider_event_id, id) == 0);
			fgn_check_text(ev->provider_message_id, LIM_ID_BYTES);
			FZ_CHECK(ev->provider_message_id != NULL);
			fgn_check_text(ev->raw_status, LIM_STATUS_BYTES);
			fgn_check_text(ev->error_code, LIM_STATUS_BYTES);
			fgn_check_text(ev->sender_identity, LIM_ID_BYTES);
			FZ_CHECK(!ev->recipient_hash || strlen(ev->recipient_hash) == 64);
			FZ_CHECK(strlen(ev->dedup_key) == 64);
			if (ev->kind == EV_STATUS) {
				const char *title = NULL;
				FZ_CHECK(ev->raw_status != NULL);
				(void)errcat_classify(fgn_prov->errors, ev->error_code, ev->status,
				                      &title);
			} else {
				FZ_CHECK(ev->text != NULL && strlen(ev->text) <= ev->text_len);
				(void)optout_classify(ev->text, ev->text_len);
			}
		}
	}
	arena_fini(&a);
	free(body);
	free(id);
	free(ts);
	free(sig);
	free(ctype);
	return 0;
}
