/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the Sinch adapter as the HTTP front drives it (HMAC
 * signature with nonce and timestamp, then the JSON reader for batch and
 * recipient delivery reports and MO messages, then the central enrichment).
 *
 * Input: one flags byte, then parts separated by 0x1e:
 *   body 0x1e signature 0x1e nonce 0x1e timestamp 0x1e algorithm
 * Flags: 1 signs body.nonce.timestamp correctly (timestamp fixed, nonce from
 * the input), so parse() gets the fuzzer's JSON; 2 sends the algorithm part
 * as x-sinch-webhook-signature-algorithm; 4 moves our clock 400 s away.
 *
 * Properties: authenticate() returns 0 or a documented code; a correctly
 * signed request (no algorithm header) within the window is accepted, and
 * outside it is DLRD_ESTALE; parse() returns 0 or DLRD_EINVAL (too many
 * recipients) and makes bounded events with hex dedup keys.
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

#define FSN_SECRET "fuzz-sinch-secret"
#define FSN_TS     "1700000000"

static const struct provider *fsn_prov;
static void *fsn_state;
static struct config fsn_cfg;

static void fsn_init(void)
{
	char err[256];
	static const uint8_t key[32] = {1, 2, 3};

	setenv("DLRD_SINCH_SECRETS", FSN_SECRET, 1);
	FZ_CHECK(config_load(NULL, &fsn_cfg, err, sizeof(err)) == 0);
	fsn_prov = provider_find("sinch", 5);
	FZ_CHECK(fsn_prov != NULL);
	FZ_CHECK(fsn_prov->init(&fsn_cfg, &fsn_state, err, sizeof(err)) == 0 && fsn_state);
	privacy_set_hash_key(key, sizeof(key));
}

struct fsn_headers {
	const char *sig, *nonce, *ts, *alg;
};

static const char *fsn_header(void *hctx, const char *name)
{
	const struct fsn_headers *h = hctx;
	const char *v = NULL;
	if (strcasecmp(name, "x-sinch-webhook-signature") == 0)
		v = h->sig;
	else if (strcasecmp(name, "x-sinch-webhook-signature-nonce") == 0)
		v = h->nonce;
	else if (strcasecmp(name, "x-sinch-webhook-signature-timestamp") == 0)
		v = h->ts;
	else if (strcasecmp(name, "x-sinch-webhook-signature-algorithm") == 0)
		v = h->alg;
	return v;
}

static void fsn_check_text(const char *s, size_t max)
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
	struct iov bodyv = fz_part(&in, &more);
	struct iov sigv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	struct iov noncev = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	struct iov tsv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	struct iov algv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	char *body = fz_exact(bodyv), *sig, *nonce = fz_cstr(noncev), *ts, *alg = fz_cstr(algv);
	char err[256], buf[6144], good[64];
	struct fsn_headers h;
	struct provider_request pr;
	struct provider_result res;
	struct arena a;
	int rc;

	if (!fsn_prov)
		fsn_init();
	if (flags & 1) {
		uint8_t mac[32];
		struct crypto_piece pc[] = {{bodyv.p, bodyv.n},
		                            {".", 1},
		                            {nonce, strlen(nonce)},
		                            {".", 1},
		                            {FSN_TS, strlen(FSN_TS)}};
		crypto_hmac(CRYPTO_SHA256, FSN_SECRET, strlen(FSN_SECRET), pc, 5, mac);
		crypto_b64_encode(mac, sizeof(mac), good);
		sig = xstrdup(good);
		ts = xstrdup(FSN_TS);
	} else {
		sig = fz_cstr(sigv);
		ts = fz_cstr(tsv);
	}
	h.sig = sig;
	h.nonce = nonce;
	h.ts = ts;
	h.alg = flags & 2 ? alg : NULL;
	arena_init(&a, buf, sizeof(buf));
	memset(&pr, 0, sizeof(pr));
	pr.method = "POST";
	pr.kind = HOOK_STATUS;
	pr.target = IOV_LIT("/webhooks/sinch/status");
	pr.path = pr.target;
	pr.body = (struct iov){body, bodyv.n};
	pr.content_type = "application/json";
	pr.public_url = "https://sms.example.com";
	pr.now_ms = 1700000000000LL + (flags & 4 ? 400000 : 0);
	pr.arena = &a;
	pr.header = fsn_header;
	pr.hctx = &h;
	rc = fsn_prov->authenticate(fsn_state, &pr, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == DLRD_EAUTH || rc == DLRD_ESTALE);
	FZ_CHECK(!strstr(err, FSN_SECRET));
	if ((flags & 3) == 1 && *nonce && strlen(nonce) <= 256)
		FZ_CHECK(rc == (flags & 4 ? DLRD_ESTALE : 0));
	if (rc == 0) {
		memset(&res, 0, sizeof(res));
		res.http_status = 200;
		rc = fsn_prov->parse(fsn_state, &pr, &res, err, sizeof(err));
		FZ_CHECK(rc == 0 || rc == DLRD_EINVAL);
		if (rc == 0) {
			FZ_CHECK(res.n_events >= 1 && res.n_events <= LIM_EVENTS_PER_REQUEST);
			for (size_t i = 0; i < res.n_events; i++) {
				const struct dlr_event *ev = &res.events[i];
				FZ_CHECK(ev->kind == EV_UNUSABLE || ev->provider_message_id);
				fsn_check_text(ev->provider_message_id, LIM_ID_BYTES);
				fsn_check_text(ev->provider_event_id,
				               2 * LIM_ID_BYTES + 2 * LIM_STATUS_BYTES + 3);
				fsn_check_text(ev->raw_status, LIM_STATUS_BYTES);
				fsn_check_text(ev->error_code, LIM_STATUS_BYTES);
				fsn_check_text(ev->sender_identity, LIM_ID_BYTES);
				FZ_CHECK(strlen(ev->dedup_key) == 64);
				if (ev->kind == EV_STATUS) {
					const char *title = NULL;
					(void)errcat_classify(fsn_prov->errors, ev->error_code,
					                      ev->status, &title);
				} else if (ev->kind == EV_INBOUND) {
					FZ_CHECK(!ev->text || strlen(ev->text) <= ev->text_len);
					(void)optout_classify(ev->text, ev->text_len);
				}
			}
		}
	}
	arena_fini(&a);
	free(body);
	free(sig);
	free(nonce);
	free(ts);
	free(alg);
	return 0;
}
