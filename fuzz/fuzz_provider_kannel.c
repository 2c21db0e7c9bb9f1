/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: Kannel dlr-url callbacks (provider "kannel") as the HTTP
 * front drives them: authenticate() (query decoding, the token), parse()
 * (DLR type, the SMSC answer's stat:/err:, ids, numbers, the redacted raw
 * payload), then the central enrichment.
 *
 * Input: one flags byte, then the query string (no '?').  Flags: 1 puts
 * "token=<the configured token>&" in front of the query, so parse() is
 * reached with the fuzzer's parameters; 2 sends POST instead of GET; 4 uses
 * the second configured token.
 *
 * Properties: authenticate() returns 0 or a documented code and never puts
 * the token in its message; with flag 1, GET, and a query that decodes and
 * names no other token, the request is accepted; parse() never fails, makes
 * exactly one bounded, NUL-terminated event with a hex dedup key, and the
 * raw payload it leaves in the request holds a configured token only where
 * the fuzzer's own query has it (as another parameter's value).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dlrd_limits.h"
#include "form.h"
#include "fuzz.h"
#include "privacy.h"
#include "provider.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FKN_TOKEN1 "fuzz-kannel-token-0123456789"
#define FKN_TOKEN2 "fuzz-kannel-token-abcdefghij"

static const struct provider *fkn_prov;
static void *fkn_state;
static struct config fkn_cfg;

static void fkn_init(void)
{
	char err[256];
	static const uint8_t key[32] = {1, 2, 3};

	setenv("DLRD_KANNEL_TOKENS", FKN_TOKEN1 "," FKN_TOKEN2, 1);
	FZ_CHECK(config_load(NULL, &fkn_cfg, err, sizeof(err)) == 0);
	fkn_prov = provider_find("kannel", 6);
	FZ_CHECK(fkn_prov != NULL);
	FZ_CHECK(fkn_prov->init(&fkn_cfg, &fkn_state, err, sizeof(err)) == 0 && fkn_state);
	privacy_set_hash_key(key, sizeof(key));
}

static const char *fkn_header(void *hctx, const char *name)
{
	(void)hctx;
	(void)name;
	return NULL;
}

static void fkn_check_text(const char *s, size_t max)
{
	if (!s)
		return;
	size_t n = strnlen(s, max + 1);
	FZ_CHECK(n <= max);
	for (size_t i = 0; i < n; i++)
		FZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

/* Whether the fuzzer's own query decodes and names no token (then a
 * correct token in front of it must be accepted). */
static int fkn_plain_query(const char *q, size_t n)
{
	char buf[4096], err[64];
	struct arena a;
	struct form f;
	int ok;

	arena_init(&a, buf, sizeof(buf));
	ok = form_decode(&a, q, n, LIM_FORM_FIELDS - 1, &f, err, sizeof(err)) == 0;
	for (size_t i = 0; ok && i < f.n; i++)
		ok = strcmp(f.fields[i].name, "token") != 0;
	arena_fini(&a);
	return ok;
}

static size_t fkn_count(struct iov hay, const char *needle)
{
	size_t n = strlen(needle), c = 0;
	for (size_t i = 0; i + n <= hay.n; i++)
		c += memcmp(hay.p + i, needle, n) == 0;
	return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t flags = fz_byte(&in);
	const char *tok = flags & 4 ? FKN_TOKEN2 : FKN_TOKEN1;
	size_t tl = strlen("token=&") + strlen(tok);
	size_t qn = (flags & 1 ? tl : 0) + in.n;
	char *q = qn ? xmalloc(qn) : NULL, err[256], buf[6144];
	struct provider_request pr;
	struct provider_result res;
	struct arena a;
	int rc, plain;

	if (!fkn_prov)
		fkn_init();
	if (flags & 1) {
		memcpy(q, "token=", 6);
		memcpy(q + 6, tok, strlen(tok));
		q[tl - 1] = '&';
	}
	if (in.n)
		memcpy(q + (flags & 1 ? tl : 0), in.p, in.n);
	plain = fkn_plain_query((const char *)in.p, in.n);
	arena_init(&a, buf, sizeof(buf));
	memset(&pr, 0, sizeof(pr));
	pr.method = flags & 2 ? "POST" : "GET";
	pr.kind = HOOK_STATUS;
	pr.target = IOV_LIT("/webhooks/kannel/status");
	pr.path = pr.target;
	pr.query = (struct iov){q ? q : "", qn};
	pr.body = (struct iov){"", 0};
	pr.content_type = "";
	pr.public_url = "https://sms.example.com";
	pr.now_ms = 1700000000000LL;
	pr.arena = &a;
	pr.header = fkn_header;
	pr.hctx = NULL;
	err[0] = '\0';
	rc = fkn_prov->authenticate(fkn_state, &pr, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == DLRD_EAUTH || rc == DLRD_EMETHOD || rc == DLRD_EINVAL);
	FZ_CHECK(!strstr(err, FKN_TOKEN1) && !strstr(err, FKN_TOKEN2));
	if ((flags & 1) && !(flags & 2) && plain)
		FZ_CHECK(rc == 0);
	if (rc == 0) {
		memset(&res, 0, sizeof(res));
		res.http_status = 200;
		rc = fkn_prov->parse(fkn_state, &pr, &res, err, sizeof(err));
		FZ_CHECK(rc == 0);
		FZ_CHECK(res.n_events == 1);
		/* the stored raw payload holds a token only where the fuzzer
		 * put one in another parameter */
		struct iov own = {(const char *)in.p, in.n};
		FZ_CHECK(res.raw_payload.p != NULL);
		FZ_CHECK(fkn_count(res.raw_payload, FKN_TOKEN1) <= fkn_count(own, FKN_TOKEN1));
		FZ_CHECK(fkn_count(res.raw_payload, FKN_TOKEN2) <= fkn_count(own, FKN_TOKEN2));
		FZ_CHECK(res.raw_payload.n <= qn);
		const struct dlr_event *ev = &res.events[0];
		FZ_CHECK(ev->kind == EV_STATUS || ev->kind == EV_UNUSABLE);
		FZ_CHECK(ev->status < ST__COUNT);
		FZ_CHECK(strcmp(ev->provider, "kannel") == 0);
		FZ_CHECK(ev->kind == EV_UNUSABLE || ev->provider_message_id != NULL);
		FZ_CHECK(ev->kind == EV_UNUSABLE || ev->raw_status != NULL);
		FZ_CHECK(ev->provider_event_id == NULL);
		fkn_check_text(ev->provider_message_id, LIM_ID_BYTES);
		fkn_check_text(ev->raw_status, LIM_STATUS_BYTES);
		fkn_check_text(ev->error_code, 16);
		fkn_check_text(ev->sender_identity, LIM_ID_BYTES);
		FZ_CHECK(!ev->recipient_hash || strlen(ev->recipient_hash) == 64);
		FZ_CHECK(strlen(ev->dedup_key) == 64);
		if (ev->kind == EV_STATUS) {
			const char *title = NULL;
			(void)errcat_classify(fkn_prov->errors, ev->error_code, ev->status, &title);
		}
	}
	arena_fini(&a);
	free(q);
	return 0;
}
