/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/providers/plivo.c through its provider table entry.
 * Signature vectors: V2 and V3 from providers.md 5.3 (confirmed with
 * plivo-node); the GET and query-string vectors were computed with an
 * independent Python implementation of v3Security.js (blank query values
 * kept, as plivo-node does) and of signature_v3.py (dropped, as parse_qs
 * does).  Also: V3-before-V2 precedence, main-account headers checked with
 * main_auth_tokens and auth_tokens, every status, inbound routing,
 * canonical ids and times.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "crypto.h"
#include "provider.h"
#include "provider_test.h"

extern const struct provider provider_plivo;

#define TOKEN      "MAXXXXXXXXXXXXXXXXXX"
#define MAIN_TOKEN "MAIN-TOKEN-0123456789"
#define NONCE      "05429567804466091622"
#define UUID       "2f0b4c4e-1e3a-11ee-8a3b-0242ac110002"
/* providers.md 5.3 */
#define V2_SIG  "DVYM+O5gBKUDisLnS9C46jzRdbFXFXeggz3a1y1u15E="
#define V3_SIG  "UDbqq/OMRljUttSXes8XYnMDq58M8Z7P7DSaLjn7ZUQ="
#define V3_BODY "To=14155550100&From=14155550199&Status=delivered&MessageUUID=" UUID
/* GET to https://sms.example.com/webhooks/plivo/status with GET_QUERY */
#define GET_QUERY                                                                                  \
	"To=14155550100&From=14155550199&MessageUUID=" UUID "&Status=sent&ErrorCode=&Units=1"
#define GET_SIG_NODE "nsQJfPnKtPtp0SnIPtZuEeogX/bzDWbJzsqNXdkoW8k="
#define GET_SIG_PY   "STAIBTX65vMngBvIZGeVkqSuuAScI1HbbvTYdAWUHvw="
/* POST to .../status?tenant=a+b with QBODY */
#define QBODY "From=14155550199&MessageUUID=" UUID "&Status=delivered&To=14155550100&Text=a+b"
#define QSIG  "kF8bN1QnnSCxJpwzzx+8rp9ZM8pzGmBghL2UO6GLmng="

struct fx {
	struct config cfg;
	void *state;
	struct arena a;
	char block[8192];
	struct pt_headers hdr;
	struct provider_result res;
	char err[256];
	char sig[64];
};

static int start(void **state, const char *main_tokens)
{
	struct fx *f = calloc(1, sizeof(*f));

	setenv("DLRD_PLIVO_AUTH_TOKENS", "other-token, " TOKEN, 1);
	pt_setenv("DLRD_PLIVO_MAIN_AUTH_TOKENS", main_tokens);
	if (pt_start(&provider_plivo, &f->cfg, &f->state, true, &f->a, f->block,
	             sizeof(f->block)) != 0)
		return -1;
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return start(state, NULL);
}

static int setup_main(void **state)
{
	return start(state, MAIN_TOKEN);
}

static int setup_v3_only(void **state)
{
	int rc;
	setenv("DLRD_PLIVO_ACCEPT_V2", "false", 1);
	rc = start(state, NULL);
	unsetenv("DLRD_PLIVO_ACCEPT_V2");
	return rc;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	pt_stop(&provider_plivo, &f->cfg, f->state, &f->a);
	free(f);
	return 0;
}

/* Runs authenticate (then parse) for a request to public_url + target. */
static int run_req(struct fx *f, const char *method, const char *target, const char *ctype,
                   const char *body)
{
	struct provider_request r;

	pt_request(&r, &f->a,
	           &(struct pt_call){.method = method,
	                             .target = target,
	                             .ctype = ctype,
	                             .body = body,
	                             .now_ms = 1700000000000LL,
	                             .headers = &f->hdr});
	return pt_run(&provider_plivo, f->state, &r, &f->res, f->err, sizeof(f->err), NULL);
}

/* The V3 signature of a POST body to public_url + path (no query), made
 * with dlrd's crypto over the string v3Security.js builds. */
static void sign_post(struct fx *f, const char *path, const char *sorted_concat)
{
	uint8_t mac[32];
	char s[2048];
	snprintf(s, sizeof(s), "https://sms.example.com%s?%s.%s", path, sorted_concat, NONCE);
	struct crypto_piece pc = {s, strlen(s)};
	crypto_hmac(CRYPTO_SHA256, TOKEN, strlen(TOKEN), &pc, 1, mac);
	crypto_b64_encode(mac, sizeof(mac), f->sig);
}

/* A signed status callback with the given Status and ErrorCode. */
static int post_status(struct fx *f, const char *status, const char *error_code, const char *extra)
{
	char body[1024], concat[1024];
	snprintf(body, sizeof(body),
	         "MessageUUID=" UUID "&To=%%2B14155550100&From=14155550199&Status=%s&ErrorCode=%s"
	         "&Sequence=2&DeliveryReportTime=2024-02-14+15%%3A37%%3A10.123456%s",
	         status, error_code, extra);
	/* sorted: DeliveryReportTime, ErrorCode, From, MessageUUID, [extra], Sequence,
	 * Status, To */
	snprintf(concat, sizeof(concat),
	         "DeliveryReportTime2024-02-14 15:37:10.123456ErrorCode%sFrom14155550199"
	         "MessageUUID" UUID "%sSequence2Status%sTo+14155550100",
	         error_code, *extra ? "NewField1" : "", status);
	sign_post(f, "/webhooks/plivo/status", concat);
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", f->sig);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	return run_req(f, "POST", "/webhooks/plivo/status", "application/x-www-form-urlencoded",
	               body);
}

static void test_v3_vector(void **state)
{
	struct fx *f = *state;
	/* the vector's URL is https://example.com/sms_status */
	struct provider_request r;
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", "AAAA, " V3_SIG);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	pt_request(&r, &f->a,
	           &(struct pt_call){.target = "/sms_status",
	                             .ctype = "application/x-www-form-urlencoded",
	                             .body = V3_BODY,
	                             .public_url = "https://example.com",
	                             .headers = &f->hdr});
	assert_int_equal(provider_plivo.authenticate(f->state, &r, f->err, sizeof(f->err)), 0);
	/* one byte of the body changed */
	r.body = IOV_LIT("To=14155550101&From=14155550199&Status=delivered&MessageUUID=" UUID);
	assert_int_equal(provider_plivo.authenticate(f->state, &r, f->err, sizeof(f->err)),
	                 DLRD_EAUTH);
	/* V2 vector: https://example.com/sms_status/ */
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V2", V2_SIG);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V2-Nonce", NONCE);
	r.target = IOV_LIT("/sms_status/?ignored=1");
	r.path = IOV_LIT("/sms_status/");
	r.query = IOV_LIT("ignored=1");
	assert_int_equal(provider_plivo.authenticate(f->state, &r, f->err, sizeof(f->err)), 0);
	/* V2 is not looked at when a V3 header came */
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", "AAAA");
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	assert_int_equal(provider_plivo.authenticate(f->state, &r, f->err, sizeof(f->err)),
	                 DLRD_EAUTH);
}

static void test_get_blank_values(void **state)
{
	struct fx *f = *state;
	const char *sigs[] = {GET_SIG_NODE, GET_SIG_PY};
	for (size_t i = 0; i < 2; i++) {
		pt_headers_reset(&f->hdr);
		pt_header_add(&f->hdr, "X-Plivo-Signature-V3", sigs[i]);
		pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
		assert_int_equal(run_req(f, "GET", "/webhooks/plivo/status?" GET_QUERY, "", ""), 0);
		assert_int_equal(f->res.n_events, 1);
		assert_int_equal(f->res.events[0].status, ST_SENT);
		assert_null(f->res.events[0].error_code);
	}
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", GET_SIG_NODE);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	assert_int_equal(run_req(f, "GET", "/webhooks/plivo/status?" GET_QUERY "&x=1", "", ""),
	                 DLRD_EAUTH);
}

static void test_post_with_query(void **state)
{
	struct fx *f = *state;
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", QSIG);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	assert_int_equal(run_req(f, "POST", "/webhooks/plivo/status?tenant=a+b",
	                         "application/x-www-form-urlencoded", QBODY),
	                 0);
	assert_int_equal(f->res.events[0].status, ST_DELIVERED);
}

static void test_rejections(void **state)
{
	struct fx *f = *state;
	pt_headers_reset(&f->hdr);
	assert_int_equal(run_req(f, "POST", "/webhooks/plivo/status",
	                         "application/x-www-form-urlencoded", V3_BODY),
	                 DLRD_EAUTH);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", V3_SIG);
	assert_int_equal(run_req(f, "POST", "/webhooks/plivo/status",
	                         "application/x-www-form-urlencoded", V3_BODY),
	                 DLRD_EAUTH); /* no nonce */
	assert_int_equal(run_req(f, "PUT", "/webhooks/plivo/status",
	                         "application/x-www-form-urlencoded", V3_BODY),
	                 DLRD_EMETHOD);
	assert_int_equal(run_req(f, "POST", "/webhooks/plivo/status", "application/json", "{}"),
	                 DLRD_EUNSUPP);
	assert_int_equal(run_req(f, "POST", "/webhooks/plivo/status",
	                         "application/x-www-form-urlencoded", "a=%zz"),
	                 DLRD_EINVAL);
}

/* The V3 vector's request with sig as its X-Plivo-Signature-V3. */
static int v3_with(struct fx *f, const char *sig)
{
	struct provider_request r;
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", sig);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	pt_request(&r, &f->a,
	           &(struct pt_call){.target = "/sms_status",
	                             .ctype = "application/x-www-form-urlencoded",
	                             .body = V3_BODY,
	                             .public_url = "https://example.com",
	                             .headers = &f->hdr});
	return provider_plivo.authenticate(f->state, &r, f->err, sizeof(f->err));
}

/* Each entry of the header is compared whole: a prefix of the right
 * signature, or an empty entry, verifies nothing. */
static void test_v3_partial_signatures(void **state)
{
	struct fx *f = *state;
	char prefix[16];

	assert_int_equal(v3_with(f, V3_SIG), 0);
	util_strlcpy(prefix, V3_SIG, sizeof(prefix));
	assert_int_equal(v3_with(f, prefix), DLRD_EAUTH);
	util_strlcpy(prefix, V3_SIG, 2);
	assert_int_equal(v3_with(f, prefix), DLRD_EAUTH);
	assert_int_equal(v3_with(f, ","), DLRD_EAUTH);
	assert_int_equal(v3_with(f, "AAAA, ,BBBB"), DLRD_EAUTH);
}

/* The main-account header with the main token's signature. */
static int post_ma(struct fx *f)
{
	uint8_t mac[32];
	const char *s = "https://sms.example.com/webhooks/plivo/status?MessageUUID" UUID
	                "Statusdelivered." NONCE;
	struct crypto_piece pc = {s, strlen(s)};
	crypto_hmac(CRYPTO_SHA256, MAIN_TOKEN, strlen(MAIN_TOKEN), &pc, 1, mac);
	crypto_b64_encode(mac, sizeof(mac), f->sig);
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-Ma-V3", f->sig);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	return run_req(f, "POST", "/webhooks/plivo/status", "application/x-www-form-urlencoded",
	               "Status=delivered&MessageUUID=" UUID);
}

/* [plivo] accept_v2 = false: the V2 vector is refused, V3 still passes;
 * any other value stops start-up naming the key. */
static void test_v2_refused_when_configured(void **state)
{
	struct fx *f = *state;
	struct provider_request r;
	struct config cfg;
	void *st = NULL;
	char err[256];

	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V2", V2_SIG);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V2-Nonce", NONCE);
	pt_request(&r, &f->a,
	           &(struct pt_call){.target = "/sms_status/",
	                             .ctype = "application/x-www-form-urlencoded",
	                             .body = V3_BODY,
	                             .public_url = "https://example.com",
	                             .headers = &f->hdr});
	assert_int_equal(provider_plivo.authenticate(f->state, &r, f->err, sizeof(f->err)),
	                 DLRD_EAUTH);
	assert_non_null(strstr(f->err, "accept_v2"));
	assert_int_equal(post_status(f, "delivered", "000", ""), 0);

	setenv("DLRD_PLIVO_ACCEPT_V2", "no", 1);
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(provider_plivo.init(&cfg, &st, err, sizeof(err)), DLRD_ECONFIG);
	assert_non_null(strstr(err, "plivo.accept_v2"));
	assert_null(st);
	config_fini(&cfg);
	unsetenv("DLRD_PLIVO_ACCEPT_V2");
}

static void test_main_ignored(void **state)
{
	assert_int_equal(post_ma(*state), DLRD_EAUTH);
}

static void test_main_configured(void **state)
{
	assert_int_equal(post_ma(*state), 0);
}

/* An inbound message as Plivo's messaging integrations validate it: the
 * Ma-V3 header carries the signature, checked with the account's own Auth
 * Token (a main account's token is the main token), while the plain V3 on
 * the same request does not verify.  With only auth_tokens configured the
 * callback passes; so does Ma-V3 alone, and Ma-V2 alone.  A Ma-V3 made with
 * a token dlrd does not hold still fails. */
static void test_ma_with_account_token(void **state)
{
	struct fx *f = *state;
	const char *body = "From=14155550199&To=14155550100&Type=sms&Text=hi&MessageUUID=" UUID;
	char good[64];

	sign_post(f, "/webhooks/plivo/inbound",
	          "From14155550199MessageUUID" UUID "TexthiTo14155550100Typesms");
	util_strlcpy(good, f->sig, sizeof(good));

	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", V3_SIG);
	pt_header_add(&f->hdr, "X-Plivo-Signature-Ma-V3", good);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	assert_int_equal(run_req(f, "POST", "/webhooks/plivo/inbound",
	                         "application/x-www-form-urlencoded", body),
	                 0);
	assert_int_equal(f->res.n_events, 1);
	assert_int_equal(f->res.events[0].kind, EV_INBOUND);

	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-Ma-V3", good);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	assert_int_equal(run_req(f, "POST", "/webhooks/plivo/inbound",
	                         "application/x-www-form-urlencoded", body),
	                 0);

	/* V2: the providers.md vector (account token over URL + nonce) in Ma-V2 */
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-Ma-V2", V2_SIG);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V2-Nonce", NONCE);
	{
		struct provider_request r;
		pt_request(&r, &f->a,
		           &(struct pt_call){.target = "/sms_status/",
		                             .ctype = "application/x-www-form-urlencoded",
		                             .body = V3_BODY,
		                             .public_url = "https://example.com",
		                             .headers = &f->hdr});
		assert_int_equal(provider_plivo.authenticate(f->state, &r, f->err, sizeof(f->err)),
		                 0);
	}

	/* made with the main token, which is not configured here */
	assert_int_equal(post_ma(f), DLRD_EAUTH);
}

/* Both headers on one request share its strings to sign (built once):
 * a wrong V3 tries both forms of a query with a blank value, then a
 * Ma-V3 over the form without it (plivo-python's) still verifies. */
static void test_main_after_wrong_v3(void **state)
{
	struct fx *f = *state;
	const char *base = "https://sms.example.com/webhooks/plivo/status?From=14155550199&"
	                   "MessageUUID=" UUID "&Status=sent&To=14155550100&Units=1." NONCE;
	struct crypto_piece pc = {base, strlen(base)};
	uint8_t mac[32];
	char sub[64];

	/* the string is the one GET_SIG_PY signs with the subaccount token */
	crypto_hmac(CRYPTO_SHA256, TOKEN, strlen(TOKEN), &pc, 1, mac);
	crypto_b64_encode(mac, sizeof(mac), sub);
	assert_string_equal(sub, GET_SIG_PY);
	crypto_hmac(CRYPTO_SHA256, MAIN_TOKEN, strlen(MAIN_TOKEN), &pc, 1, mac);
	crypto_b64_encode(mac, sizeof(mac), f->sig);
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", GET_SIG_NODE "x");
	pt_header_add(&f->hdr, "X-Plivo-Signature-Ma-V3", f->sig);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	assert_int_equal(run_req(f, "GET", "/webhooks/plivo/status?" GET_QUERY, "", ""), 0);
	assert_int_equal(f->res.n_events, 1);
	/* and a right V3 with a wrong Ma-V3 */
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", GET_SIG_NODE);
	pt_header_add(&f->hdr, "X-Plivo-Signature-Ma-V3", "AAAA");
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	assert_int_equal(run_req(f, "GET", "/webhooks/plivo/status?" GET_QUERY, "", ""), 0);
	/* a Ma-V3 made with the (sub)account token verifies too: Ma-V3 is
	 * checked with auth_tokens as well (test_ma_with_account_token) */
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", GET_SIG_NODE "x");
	pt_header_add(&f->hdr, "X-Plivo-Signature-Ma-V3", GET_SIG_PY);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	assert_int_equal(run_req(f, "GET", "/webhooks/plivo/status?" GET_QUERY, "", ""), 0);
	/* both wrong (the V2 vector is no V3 signature under any token) */
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", GET_SIG_NODE "x");
	pt_header_add(&f->hdr, "X-Plivo-Signature-Ma-V3", V2_SIG);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	assert_int_equal(run_req(f, "GET", "/webhooks/plivo/status?" GET_QUERY, "", ""),
	                 DLRD_EAUTH);
}

static void test_vocabulary(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *raw;
		enum dlr_status st;
		bool read;
	} cases[] = {
	    {"queued", ST_ACCEPTED, false},         {"sent", ST_SENT, false},
	    {"failed", ST_FAILED, false},           {"delivered", ST_DELIVERED, false},
	    {"undelivered", ST_UNDELIVERED, false}, {"rejected", ST_REJECTED, false},
	    {"read", ST_DELIVERED, true},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		assert_int_equal(post_status(f, cases[i].raw, "", ""), 0);
		const struct dlr_event *ev = &f->res.events[0];
		assert_int_equal(ev->kind, EV_STATUS);
		assert_int_equal(ev->status, cases[i].st);
		assert_int_equal(ev->read, cases[i].read);
		assert_int_equal(ev->review, REVIEW_NONE);
		assert_string_equal(ev->raw_status, cases[i].raw);
	}
	assert_int_equal(post_status(f, "bouncing", "", ""), 0);
	assert_int_equal(f->res.events[0].status, ST_UNKNOWN);
	assert_int_equal(f->res.events[0].review, REVIEW_UNKNOWN_STATUS);
}

static void test_status_fields(void **state)
{
	struct fx *f = *state;
	assert_int_equal(post_status(f, "undelivered", "30", "&NewField=1"), 0);
	const struct dlr_event *ev = &f->res.events[0];
	assert_string_equal(ev->provider, "plivo");
	assert_string_equal(ev->provider_message_id, UUID);
	assert_null(ev->provider_event_id);
	assert_string_equal(ev->error_code, "30");
	assert_string_equal(ev->sender_identity, "14155550199");
	assert_string_equal(ev->destination_country, "US");
	assert_non_null(ev->recipient_hash);
	/* Plivo's times carry no zone: never guessed */
	assert_int_equal(ev->occurred_ms, -1);
	assert_null(f->res.body);
}

static void test_canonical_and_time(void **state)
{
	struct fx *f = *state;
	char concat[512];
	const char *body = "MessageUUID=2F0B4C4E-1E3A-11EE-8A3B-0242AC110002&Status=delivered"
	                   "&DeliveryReportTime=2024-02-14+15%3A37%3A10.123456%2B00%3A00";
	snprintf(concat, sizeof(concat),
	         "DeliveryReportTime2024-02-14 15:37:10.123456+00:00"
	         "MessageUUID2F0B4C4E-1E3A-11EE-8A3B-0242AC110002Statusdelivered");
	sign_post(f, "/webhooks/plivo/status", concat);
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", f->sig);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	assert_int_equal(
	    run_req(f, "POST", "/webhooks/plivo/status", "application/x-www-form-urlencoded", body),
	    0);
	assert_string_equal(f->res.events[0].provider_message_id, UUID);
	assert_int_equal(f->res.events[0].occurred_ms, 1707925030123LL);
}

static void test_inbound(void **state)
{
	struct fx *f = *state;
	const char *body = "From=14155550100&To=14155550199&Type=sms&Text=STOP&MessageUUID=" UUID
	                   "&Units=1&TotalRate=0&TotalAmount=0&MessageIntent=optout";
	sign_post(f, "/webhooks/plivo/inbound",
	          "From14155550100MessageIntentoptoutMessageUUID" UUID
	          "TextSTOPTo14155550199TotalAmount0TotalRate0TypesmsUnits1");
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", f->sig);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	assert_int_equal(run_req(f, "POST", "/webhooks/plivo/inbound",
	                         "application/x-www-form-urlencoded", body),
	                 0);
	const struct dlr_event *ev = &f->res.events[0];
	assert_int_equal(ev->kind, EV_INBOUND);
	assert_string_equal(ev->provider_message_id, UUID);
	assert_string_equal(ev->sender_identity, "14155550199");
	assert_string_equal(ev->destination_country, "US");
	assert_non_null(ev->recipient_hash);
	assert_int_equal(ev->text_len, 4);
	assert_string_equal(ev->text, "STOP");
	assert_string_equal(f->res.content_type, "application/xml");
	assert_string_equal(f->res.body, "<Response></Response>");
}

/* MessageIntent (Plivo "Handling incoming SMS/MMS": "optout" when the body
 * matches one of Plivo's opt-out keywords, "optin", "help", blank
 * otherwise): Plivo blocks or unblocks the sender by its own keyword list,
 * so its verdict decides the keyword, a word dlrd's list lacks included.
 * Before, such a message was a plain one and the sender stayed opted in at
 * dlrd while Plivo refused every send to them. */
static void test_inbound_message_intent(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *text, *intent;
		enum optout_kind kw;
	} cases[] = {
	    {"ARRET", "optout", KW_OPT_OUT},
	    {"Stop.", "optout", KW_OPT_OUT},
	    {"Rejoindre", "optin", KW_OPT_IN},
	    {"Aide", "help", KW_HELP},
	    {"Hello", "", KW_NONE},
	    {"Hello", "other", KW_NONE},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char body[512], concat[512];
		snprintf(body, sizeof(body),
		         "From=14155550100&To=14155550199&Type=sms&Text=%s&MessageUUID=" UUID
		         "&Units=1&TotalRate=0&TotalAmount=0&MessageIntent=%s",
		         cases[i].text, cases[i].intent);
		snprintf(concat, sizeof(concat),
		         "From14155550100MessageIntent%sMessageUUID" UUID
		         "Text%sTo14155550199TotalAmount0TotalRate0TypesmsUnits1",
		         cases[i].intent, cases[i].text);
		sign_post(f, "/webhooks/plivo/inbound", concat);
		pt_headers_reset(&f->hdr);
		pt_header_add(&f->hdr, "X-Plivo-Signature-V3", f->sig);
		pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
		assert_int_equal(run_req(f, "POST", "/webhooks/plivo/inbound",
		                         "application/x-www-form-urlencoded", body),
		                 0);
		assert_int_equal(f->res.events[0].kind, EV_INBOUND);
		assert_string_equal(f->res.events[0].text, cases[i].text);
		assert_int_equal(f->res.events[0].keyword, cases[i].kw);
	}
}

static void test_inbound_mms_body(void **state)
{
	struct fx *f = *state;
	const char *body = "From=14155550100&To=14155550199&Type=mms&Body=hi&MessageUUID=" UUID;
	sign_post(f, "/webhooks/plivo/status",
	          "Bodyhi"
	          "From14155550100MessageUUID" UUID "To14155550199Typemms");
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", f->sig);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	/* an inbound message on the status path is routed by payload */
	assert_int_equal(
	    run_req(f, "POST", "/webhooks/plivo/status", "application/x-www-form-urlencoded", body),
	    0);
	assert_int_equal(f->res.events[0].kind, EV_INBOUND);
	assert_string_equal(f->res.events[0].text, "hi");
}

static void test_unusable(void **state)
{
	struct fx *f = *state;
	sign_post(f, "/webhooks/plivo/status", "Foobar");
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", f->sig);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	assert_int_equal(run_req(f, "POST", "/webhooks/plivo/status",
	                         "application/x-www-form-urlencoded", "Foo=bar"),
	                 0);
	assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
	sign_post(f, "/webhooks/plivo/status", "Statusdelivered");
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3", f->sig);
	pt_header_add(&f->hdr, "X-Plivo-Signature-V3-Nonce", NONCE);
	assert_int_equal(run_req(f, "POST", "/webhooks/plivo/status",
	                         "application/x-www-form-urlencoded", "Status=delivered"),
	                 0);
	assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
}

static void test_dedup(void **state)
{
	struct fx *f = *state;
	char k1[65];
	assert_int_equal(post_status(f, "delivered", "", ""), 0);
	memcpy(k1, f->res.events[0].dedup_key, 65);
	/* an extra field (or another Sequence) does not change the event */
	assert_int_equal(post_status(f, "delivered", "", "&NewField=1"), 0);
	assert_string_equal(f->res.events[0].dedup_key, k1);
	assert_int_equal(post_status(f, "sent", "", ""), 0);
	assert_string_not_equal(f->res.events[0].dedup_key, k1);
}

static void test_not_configured(void **state)
{
	struct config cfg;
	void *st = (void *)1;
	char err[256];
	(void)state;
	unsetenv("DLRD_PLIVO_AUTH_TOKENS");
	unsetenv("DLRD_PLIVO_MAIN_AUTH_TOKENS");
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(provider_plivo.init(&cfg, &st, err, sizeof(err)), 0);
	assert_null(st);
	config_fini(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_v3_vector, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get_blank_values, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_post_with_query, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rejections, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v3_partial_signatures, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v2_refused_when_configured, setup_v3_only,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_main_ignored, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_main_configured, setup_main, teardown),
	    cmocka_unit_test_setup_teardown(test_ma_with_account_token, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_main_after_wrong_v3, setup_main, teardown),
	    cmocka_unit_test_setup_teardown(test_vocabulary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_status_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_canonical_and_time, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound_mms_body, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound_message_intent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unusable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
	    cmocka_unit_test(test_not_configured),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
