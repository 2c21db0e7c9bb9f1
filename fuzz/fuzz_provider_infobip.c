/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the Infobip adapter as the HTTP front drives it (HTTP Basic
 * credentials, then the batched JSON reader for delivery reports and
 * inbound messages, then the central enrichment).
 *
 * Input: one flags byte, then parts separated by 0x1e:
 *   body 0x1e authorization
 * Flags: 1 sends the configured credentials (so parse() gets the fuzzer's
 * JSON); otherwise the authorization part is the header as is.
 *
 * Properties: authenticate() returns 0 or DLRD_EAUTH and never echoes the
 * credentials; the configured credentials are always accepted; parse()
 * returns 0 or DLRD_EINVAL (too many results) and makes bounded events.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "dlrd_limits.h"
#include "fuzz.h"
#include "optout.h"
#include "privacy.h"
#include "provider.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct provider *fib_prov;
static void *fib_state;
static struct config fib_cfg;

static void fib_init(void)
{
	char err[256];
	static const uint8_t key[32] = {1, 2, 3};

	setenv("DLRD_INFOBIP_BASIC_AUTH", "fuzz:pa55word", 1);
	FZ_CHECK(config_load(NULL, &fib_cfg, err, sizeof(err)) == 0);
	fib_prov = provider_find("infobip", 7);
	FZ_CHECK(fib_prov != NULL);
	FZ_CHECK(fib_prov->init(&fib_cfg, &fib_state, err, sizeof(err)) == 0 && fib_state);
	privacy_set_hash_key(key, sizeof(key));
}

static const char *fib_header(void *hctx, const char *name)
{
	return strcasecmp(name, "Authorization") == 0 ? hctx : NULL;
}

static void fib_check_text(const char *s, size_t max)
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
	struct iov authv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	char *body = fz_exact(bodyv), *auth, err[256], buf[6144];
	struct provider_request pr;
	struct provider_result res;
	struct arena a;
	int rc;

	if (!fib_prov)
		fib_init();
	auth = flags & 1 ? xstrdup("Basic ZnV6ejpwYTU1d29yZA==") : fz_cstr(authv);
	arena_init(&a, buf, sizeof(buf));
	memset(&pr, 0, sizeof(pr));
	pr.method = "POST";
	pr.kind = flags & 2 ? HOOK_INBOUND : HOOK_STATUS;
	pr.target = IOV_LIT("/webhooks/infobip/status");
	pr.path = pr.target;
	pr.body = (struct iov){body, bodyv.n};
	pr.content_type = "application/json";
	pr.public_url = "https://sms.example.com";
	pr.now_ms = 1700000000000LL;
	pr.arena = &a;
	pr.header = fib_header;
	pr.hctx = *auth ? auth : NULL;
	rc = fib_prov->authenticate(fib_state, &pr, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == DLRD_EAUTH);
	FZ_CHECK(!strstr(err, "pa55word"));
	if (flags & 1)
		FZ_CHECK(rc == 0);
	if (rc == 0) {
		memset(&res, 0, sizeof(res));
		res.http_status = 200;
		rc = fib_prov->parse(fib_state, &pr, &res, err, sizeof(err));
		FZ_CHECK(rc == 0 || rc == DLRD_EINVAL);
		if (rc == 0) {
			FZ_CHECK(res.n_events >= 1 && res.n_events <= LIM_EVENTS_PER_REQUEST);
			for (size_t i = 0; i < res.n_events; i++) {
				const struct dlr_event *ev = &res.events[i];
				FZ_CHECK(strcmp(ev->provider, "infobip") == 0);
				FZ_CHECK(ev->kind == EV_UNUSABLE || ev->provider_message_id);
				fib_check_text(ev->provider_message_id, LIM_ID_BYTES);
				fib_check_text(ev->raw_status, LIM_STATUS_BYTES);
				fib_check_text(ev->error_code, LIM_STATUS_BYTES);
				fib_check_text(ev->sender_identity, LIM_ID_BYTES);
				FZ_CHECK(strlen(ev->dedup_key) == 64);
				if (ev->kind == EV_STATUS) {
					const char *title = NULL;
					(void)errcat_classify(fib_prov->errors, ev->error_code,
					                      ev->status, &title);
				} else if (ev->kind == EV_INBOUND) {
					FZ_CHECK(strlen(ev->text) <= ev->text_len);
					(void)optout_classify(ev->text, ev->text_len);
				}
			}
		}
	}
	arena_fini(&a);
	free(body);
	free(auth);
	return 0;
}
