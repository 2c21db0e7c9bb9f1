/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the Vonage SMS API adapter as the HTTP front drives it
 * (authenticate, then parse, then the central enrichment), `sig`
 * verification included.
 *
 * Input: one flags byte, then parts separated by 0x1e:
 *   params 0x1e sig 0x1e content-type
 * params is a query string (GET), or the body (POST).  Flags: 1 appends
 * "&timestamp=<ours>&sig=<valid SHA256-HMAC>" computed here, independently
 * of the adapter, over the decoded params, so parse() gets the fuzzer's
 * fields; otherwise "&sig=<sig part>" is appended as is.  2 uses the
 * inbound hook, 4 POSTs the params as a form body, 8 POSTs them as the
 * body under the content-type part (default application/json), 16 moves
 * our clock 400 s past the largest tolerance (PROVIDER_TOLERANCE_MAX) away
 * from the signed timestamp.
 *
 * Properties: authenticate() returns 0 or a documented code; a correctly
 * signed GET whose params decode, have no repeated name and no sig or
 * timestamp of their own is accepted (or DLRD_ESTALE with flag 16);
 * parse() never fails and makes one bounded event with a hex dedup key.
 */
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dlrd_limits.h"
#include "form.h"
#include "fuzz.h"
#include "optout.h"
#include "privacy.h"
#include "provider.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FVG_SECRET "fuzz-vonage-signature-secret"
#define FVG_TS     "1700000000"
#define FVG_NOW    1700000000000LL

static const struct provider *fvg_prov;
static void *fvg_state;
static struct config fvg_cfg;

static void fvg_init(void)
{
	char err[256];
	static const uint8_t key[32] = {7, 7, 7};

	setenv("DLRD_VONAGE_SIGNATURE_SECRETS", FVG_SECRET, 1);
	setenv("DLRD_VONAGE_SIGNATURE_METHOD", "sha256", 1);
	FZ_CHECK(config_load(NULL, &fvg_cfg, err, sizeof(err)) == 0);
	fvg_prov = provider_find("vonage", 6);
	FZ_CHECK(fvg_prov != NULL);
	FZ_CHECK(fvg_prov->init(&fvg_cfg, &fvg_state, err, sizeof(err)) == 0 && fvg_state);
	privacy_set_hash_key(key, sizeof(key));
}

static int fvg_cmp(const void *a, const void *b)
{
	const struct form_field *x = *(const struct form_field *const *)a;
	const struct form_field *y = *(const struct form_field *const *)b;
	size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	int c = memcmp(x->name, y->name, n);
	return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* Vonage's documented string over f (plus our timestamp), HMAC-SHA256 hex.
 * Returns 0 when the fields qualify for a valid signature (no repeated
 * name, no sig/timestamp of their own). */
static int fvg_sign(const struct form *f, char hex[65])
{
	const struct form_field **s = xcalloc(f->n + 2, sizeof(*s));
	struct form_field ts = {"timestamp", 9, FVG_TS, strlen(FVG_TS)};
	size_t n = 0, cap = 16, at = 0;
	unsigned char m[32];
	unsigned ml = 0;
	char *str;
	int ok = 0;

	for (size_t i = 0; i < f->n; i++) {
		if ((f->fields[i].name_len == 3 && !memcmp(f->fields[i].name, "sig", 3)) ||
		    (f->fields[i].name_len == 9 && !memcmp(f->fields[i].name, "timestamp", 9)))
			ok = -1;
		s[n++] = &f->fields[i];
		cap += 2 + f->fields[i].name_len + f->fields[i].value_len;
	}
	s[n++] = &ts;
	cap += 2 + 9 + strlen(FVG_TS);
	qsort(s, n, sizeof(*s), fvg_cmp);
	for (size_t i = 1; i < n; i++)
		if (fvg_cmp(&s[i - 1], &s[i]) == 0)
			ok = -1;
	str = xmalloc(cap);
	for (size_t i = 0; i < n; i++) {
		str[at++] = '&';
		memcpy(str + at, s[i]->name, s[i]->name_len);
		at += s[i]->name_len;
		str[at++] = '=';
		for (size_t k = 0; k < s[i]->value_len; k++) {
			char c = s[i]->value[k];
			str[at++] = c == '&' || c == '=' ? '_' : c;
		}
	}
	HMAC(EVP_sha256(), FVG_SECRET, (int)strlen(FVG_SECRET), (unsigned char *)str, at, m, &ml);
	for (unsigned i = 0; i < ml; i++) {
		static const char hx[] = "0123456789abcdef";
		hex[2 * i] = hx[m[i] >> 4];
		hex[2 * i + 1] = hx[m[i] & 15];
	}
	hex[64] = '\0';
	free(str);
	free(s);
	return ok;
}

static void fvg_check_text(const char *s, size_t max)
{
	if (!s)
		return;
	size_t n = strnlen(s, max + 1);
	FZ_CHECK(n <= max);
	for (size_t i = 0; i < n; i++)
		FZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

static void fvg_check_events(const struct provider_result *res)
{
	FZ_CHECK(res->n_events == 1);
	const struct dlr_event *ev = &res->events[0];
	FZ_CHECK(ev->kind == EV_STATUS || ev->kind == EV_UNUSABLE || ev->kind == EV_INBOUND);
	FZ_CHECK(ev->status < ST__COUNT);
	FZ_CHECK(strcmp(ev->provider, "vonage") == 0);
	FZ_CHECK(ev->kind == EV_UNUSABLE || ev->provider_message_id != NULL);
	FZ_CHECK(ev->kind != EV_STATUS || ev->raw_status != NULL);
	fvg_check_text(ev->provider_message_id, LIM_ID_BYTES);
	fvg_check_text(ev->raw_status, LIM_STATUS_BYTES);
	fvg_check_text(ev->error_code, LIM_STATUS_BYTES);
	fvg_check_text(ev->sender_identity, LIM_ID_BYTES);
	FZ_CHECK(!ev->recipient_hash || strlen(ev->recipient_hash) == 64);
	FZ_CHECK(strlen(ev->dedup_key) == 64);
	FZ_CHECK(ev->occurred_ms >= -1);
	FZ_CHECK(ev->kind != EV_INBOUND || !ev->text || strlen(ev->text) <= ev->text_len);
	if (ev->kind == EV_STATUS) {
		const char *title = NULL;
		(void)errcat_classify(fvg_prov->errors, ev->error_code, ev->status, &title);
	} else if (ev->kind == EV_INBOUND) {
		(void)optout_classify(ev->text, ev->text_len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t flags = fz_byte(&in);
	int more = 0, qualifies = -1;
	struct iov pv = fz_part(&in, &more);
	struct iov sigv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	int has_ct = more;
	struct iov ctv = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	char *sig = fz_cstr(sigv), *ctype, *params, hex[65], err[256], buf[8192], dbuf[8192];
	struct provider_request pr;
	struct provider_result res;
	struct arena a, da;
	struct form f;
	size_t plen;
	int rc;

	if (!fvg_prov)
		fvg_init();
	/* params + "&timestamp=..&sig=.." */
	plen = pv.n + 96 + strlen(sig);
	params = xmalloc(plen);
	memcpy(params, pv.p ? pv.p : "", pv.n);
	if (flags & 1) {
		arena_init(&da, dbuf, sizeof(dbuf));
		if (form_decode(&da, pv.p ? pv.p : "", pv.n, LIM_FORM_FIELDS, &f, err,
		                sizeof(err)) == 0)
			qualifies = fvg_sign(&f, hex);
		else
			memset(hex, '0', 64), hex[64] = '\0';
		arena_fini(&da);
		plen = pv.n + util_fmt(params + pv.n, 96, "%stimestamp=" FVG_TS "&sig=%s",
		                       pv.n ? "&" : "", hex);
	} else {
		plen = pv.n + util_fmt(params + pv.n, 96 + strlen(sig), "&sig=%s", sig);
	}
	ctype = has_ct ? fz_cstr(ctv) : xstrdup("application/json");
	arena_init(&a, buf, sizeof(buf));
	memset(&pr, 0, sizeof(pr));
	pr.kind = flags & 2 ? HOOK_INBOUND : HOOK_STATUS;
	pr.target =
	    flags & 2 ? IOV_LIT("/webhooks/vonage/inbound") : IOV_LIT("/webhooks/vonage/status");
	pr.path = pr.target;
	if (flags & (4 | 8)) {
		pr.method = "POST";
		pr.body = (struct iov){params, plen};
		pr.content_type = flags & 4 ? "application/x-www-form-urlencoded" : ctype;
	} else {
		pr.method = "GET";
		pr.query = (struct iov){params, plen};
		pr.content_type = "";
	}
	pr.public_url = "https://sms.example.com";
	pr.now_ms = FVG_NOW + (flags & 16 ? ((int64_t)PROVIDER_TOLERANCE_MAX + 400) * 1000 : 0);
	pr.arena = &a;
	pr.header = NULL;
	err[0] = '\0';
	rc = fvg_prov->authenticate(fvg_state, &pr, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == DLRD_EAUTH || rc == DLRD_ESTALE || rc == DLRD_EMETHOD ||
	         rc == DLRD_EUNSUPP || rc == DLRD_EINVAL);
	FZ_CHECK(!strstr(err, FVG_SECRET));
	if ((flags & 1) && !(flags & (4 | 8)) && qualifies == 0)
		FZ_CHECK(rc == (flags & 16 ? DLRD_ESTALE : 0));
	if (rc == 0) {
		memset(&res, 0, sizeof(res));
		res.http_status = 200;
		rc = fvg_prov->parse(fvg_state, &pr, &res, err, sizeof(err));
		FZ_CHECK(rc == 0);
		fvg_check_events(&res);
	}
	arena_fini(&a);
	free(params);
	free(sig);
	free(ctype);
	return 0;
}
