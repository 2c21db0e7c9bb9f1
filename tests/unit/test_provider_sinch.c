/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/providers/sinch.c through its provider table entry:
 * the HMAC vector of providers.md 6.3 (confirmed with Sinch's SDK), forged,
 * missing and stale signatures, the algorithm header, secret rotation, batch
 * reports with several recipients (one event each, distinct ids holding a
 * keyed tag, never the number) and the rewriting of ids stored before, summary
 * reports, recipient reports with times, every status, MO messages.
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

extern const struct provider provider_sinch;

#define SECRET "sinch-secret"
#define NONCE  "01FJA8B4A7BM43YGWSG9GBV067"
#define TS     "1634579353"
#define NOW_MS 1634579353000LL
#define VEC_BODY                                                                                   \
	"{\"type\":\"recipient_delivery_report_sms\",\"batch_id\":\"01FC66621XXXXX119Z8PMV1QPQ\"," \
	"\"recipient\":\"15551231234\",\"code\":0,\"status\":\"Delivered\","                       \
	"\"at\":\"2022-08-30T08:16:08.930Z\"}"
#define VEC_SIG "DIgjydzK5fVpZ3enwX/hPZp/gBqjl0SJwF/hhTpwW8A="

struct fx {
	struct config cfg;
	void *state;
	struct arena a;
	char block[16384];
	struct pt_headers hdr;
	struct provider_result res;
	char err[256];
	char sig[128];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	setenv("DLRD_SINCH_SECRETS", "old-secret," SECRET, 1);
	unsetenv("DLRD_SINCH_TOLERANCE_SECONDS");
	if (pt_start(&provider_sinch, &f->cfg, &f->state, true, &f->a, f->block,
	             sizeof(f->block)) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	pt_stop(&provider_sinch, &f->cfg, f->state, &f->a);
	free(f);
	return 0;
}

static void sign(const char *secret, const char *body, const char *nonce, const char *ts,
                 char out[128])
{
	uint8_t mac[32];
	struct crypto_piece pc[] = {
	    {body, strlen(body)}, {".", 1}, {nonce, strlen(nonce)}, {".", 1}, {ts, strlen(ts)}};
	crypto_hmac(CRYPTO_SHA256, secret, strlen(secret), pc, 5, mac);
	crypto_b64_encode(mac, sizeof(mac), out);
}

static int run_full(struct fx *f, const char *sig, const char *nonce, const char *ts,
                    const char *alg, const char *body, int64_t now_ms)
{
	struct provider_request r;

	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "X-Sinch-Webhook-Signature", sig);
	pt_header_add(&f->hdr, "X-Sinch-Webhook-Signature-Nonce", nonce);
	pt_header_add(&f->hdr, "X-Sinch-Webhook-Signature-Timestamp", ts);
	pt_header_add(&f->hdr, "X-Sinch-Webhook-Signature-Algorithm", alg);
	pt_request(&r, &f->a,
	           &(struct pt_call){.target = "/webhooks/sinch/status",
	                             .ctype = "application/json",
	                             .body = body,
	                             .now_ms = now_ms,
	                             .headers = &f->hdr});
	return pt_run(&provider_sinch, f->state, &r, &f->res, f->err, sizeof(f->err), NULL);
}

static int run(struct fx *f, const char *body)
{
	sign(SECRET, body, NONCE, TS, f->sig);
	return run_full(f, f->sig, NONCE, TS, "HmacSHA256", body, NOW_MS);
}

static void test_vector(void **state)
{
	struct fx *f = *state;
	assert_int_equal(run_full(f, VEC_SIG, NONCE, TS, NULL, VEC_BODY, NOW_MS), 0);
	assert_int_equal(f->res.n_events, 1);
	const struct dlr_event *ev = &f->res.events[0];
	assert_int_equal(ev->kind, EV_STATUS);
	assert_string_equal(ev->provider_message_id, "01FC66621XXXXX119Z8PMV1QPQ");
	/* the recipient tag (test_privacy.c has the vectors), never the number */
	assert_string_equal(ev->provider_event_id,
	                    "01FC66621XXXXX119Z8PMV1QPQ/rcpt-7a06a826959d6170/Delivered/0");
	assert_null(strstr(ev->provider_event_id, "5551231234"));
	assert_int_equal(ev->status, ST_DELIVERED);
	assert_string_equal(ev->raw_status, "Delivered");
	assert_string_equal(ev->error_code, "0");
	assert_int_equal(ev->occurred_ms, 1661847368930LL);
	assert_string_equal(ev->destination_country, "US");
	assert_non_null(ev->recipient_hash);
}

static void test_rejections(void **state)
{
	struct fx *f = *state;
	char body[] = VEC_BODY;
	body[3] = 'T';
	assert_int_equal(run_full(f, VEC_SIG, NONCE, TS, NULL, body, NOW_MS), DLRD_EAUTH);
	assert_int_equal(
	    run_full(f, VEC_SIG, "01FJA8B4A7BM43YGWSG9GBV068", TS, NULL, VEC_BODY, NOW_MS),
	    DLRD_EAUTH);
	assert_int_equal(run_full(f, NULL, NONCE, TS, NULL, VEC_BODY, NOW_MS), DLRD_EAUTH);
	assert_int_equal(run_full(f, VEC_SIG, NULL, TS, NULL, VEC_BODY, NOW_MS), DLRD_EAUTH);
	assert_int_equal(run_full(f, VEC_SIG, NONCE, NULL, NULL, VEC_BODY, NOW_MS), DLRD_EAUTH);
	assert_int_equal(run_full(f, VEC_SIG, NONCE, TS, "HmacMD5", VEC_BODY, NOW_MS), DLRD_EAUTH);
	/* a SHA-256 signature announced as SHA-512 */
	assert_int_equal(run_full(f, VEC_SIG, NONCE, TS, "HmacSHA512", VEC_BODY, NOW_MS),
	                 DLRD_EAUTH);
	assert_int_equal(run_full(f, VEC_SIG, NONCE, TS, "hmacsha256", VEC_BODY, NOW_MS), 0);
	/* the signature is compared whole: a prefix of it verifies nothing */
	{
		char prefix[sizeof(VEC_SIG)];
		util_strlcpy(prefix, VEC_SIG, sizeof(prefix) - 1); /* no '=' */
		assert_int_equal(run_full(f, prefix, NONCE, TS, NULL, VEC_BODY, NOW_MS),
		                 DLRD_EAUTH);
		util_strlcpy(prefix, VEC_SIG, 9);
		assert_int_equal(run_full(f, prefix, NONCE, TS, NULL, VEC_BODY, NOW_MS),
		                 DLRD_EAUTH);
	}
	/* stale and future, 300 s default */
	assert_int_equal(run_full(f, VEC_SIG, NONCE, TS, NULL, VEC_BODY, NOW_MS + 300000), 0);
	assert_int_equal(run_full(f, VEC_SIG, NONCE, TS, NULL, VEC_BODY, NOW_MS + 300001),
	                 DLRD_ESTALE);
	assert_int_equal(run_full(f, VEC_SIG, NONCE, TS, NULL, VEC_BODY, NOW_MS - 300001),
	                 DLRD_ESTALE);
}

static void test_sha512_and_rotation(void **state)
{
	struct fx *f = *state;
	uint8_t mac[64];
	struct crypto_piece pc[] = {{VEC_BODY, sizeof(VEC_BODY) - 1},
	                            {"." NONCE "." TS, 2 + 26 + 10}};
	crypto_hmac(CRYPTO_SHA512, "old-secret", 10, pc, 2, mac);
	crypto_b64_encode(mac, sizeof(mac), f->sig);
	assert_int_equal(run_full(f, f->sig, NONCE, TS, "HmacSHA512", VEC_BODY, NOW_MS), 0);
}

static void test_batch(void **state)
{
	struct fx *f = *state;
	const char *body =
	    "{\"type\":\"delivery_report_sms\",\"batch_id\":\"01fc66621xxxxx119z8pmv1qpq\","
	    "\"total_message_count\":3,\"client_reference\":\"r\",\"statuses\":["
	    "{\"code\":0,\"status\":\"Delivered\",\"count\":2,"
	    "\"recipients\":[\"15551231234\",\"447700900123\"]},"
	    "{\"code\":402,\"status\":\"Aborted\",\"count\":1,\"recipients\":[\"15551231235\"],"
	    "\"new\":true}],\"extra\":{}}";
	assert_int_equal(run(f, body), 0);
	assert_int_equal(f->res.n_events, 3);
	const struct dlr_event *e = f->res.events;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(e[i].kind, EV_STATUS);
		assert_string_equal(e[i].provider_message_id, "01FC66621XXXXX119Z8PMV1QPQ");
		assert_int_equal(e[i].occurred_ms, -1);
	}
	assert_string_equal(e[0].provider_event_id,
	                    "01FC66621XXXXX119Z8PMV1QPQ/rcpt-7a06a826959d6170/Delivered/0");
	assert_null(strstr(e[1].provider_event_id, "7700900123"));
	assert_null(strstr(e[2].provider_event_id, "5551231235"));
	assert_string_equal(e[1].destination_country, "GB");
	assert_int_equal(e[2].status, ST_FAILED);
	assert_string_equal(e[2].error_code, "402");
	assert_string_not_equal(e[0].dedup_key, e[1].dedup_key);
}

static void test_batch_and_recipient_dedup(void **state)
{
	struct fx *f = *state;
	char k[65];
	assert_int_equal(run(f, "{\"type\":\"delivery_report_sms\",\"batch_id\":"
	                        "\"01FC66621XXXXX119Z8PMV1QPQ\",\"statuses\":[{\"code\":0,"
	                        "\"status\":\"Delivered\",\"count\":1,\"recipients\":"
	                        "[\"15551231234\"]}]}"),
	                 0);
	memcpy(k, f->res.events[0].dedup_key, 65);
	assert_int_equal(run_full(f, VEC_SIG, NONCE, TS, NULL, VEC_BODY, NOW_MS), 0);
	assert_string_equal(f->res.events[0].dedup_key, k);
}

/* A recipient entry that is not a number's text goes to review: it must not
 * become a status without a recipient, where two such entries (or a summary
 * report) would be one event. */
static void test_bad_recipient_entries_reviewed(void **state)
{
	struct fx *f = *state;
	const struct dlr_event *e;

	assert_int_equal(run(f, "{\"type\":\"delivery_report_sms\",\"batch_id\":\"B1\","
	                        "\"statuses\":[{\"code\":0,\"status\":\"Delivered\",\"count\":3,"
	                        "\"recipients\":[\"15551231234\",{\"x\":1},[\"y\"]]}]}"),
	                 0);
	assert_int_equal(f->res.n_events, 3);
	e = f->res.events;
	assert_int_equal(e[0].kind, EV_STATUS);
	assert_int_equal(e[0].status, ST_DELIVERED);
	assert_int_equal(e[1].kind, EV_UNUSABLE);
	assert_int_equal(e[1].review, REVIEW_UNUSABLE);
	assert_int_equal(e[2].kind, EV_UNUSABLE);
}

/* Stored ids of a dlrd before the recipient tag, as the store's data
 * migration rewrites them: to exactly the id and dedup key parse() gives
 * the same callback now, so a retry after the upgrade is a duplicate. */
static int upgrade(struct fx *f, const char *id, const char *pmid, const char *raw,
                   const char *code, const char **nid, char key[65])
{
	return provider_upgrade_event_id(&f->a, "sinch", id, pmid, raw, code, nid, key);
}

static void test_upgrade_event_id(void **state)
{
	struct fx *f = *state;
	const char *nid;
	char key[65], oldid[160];
	struct dlr_event old;

	assert_int_equal(run(f, "{\"type\":\"delivery_report_sms\",\"batch_id\":\"B1\","
	                        "\"statuses\":[{\"code\":0,\"status\":\"Delivered\",\"count\":2,"
	                        "\"recipients\":[\"15551231234\",\"+447700900123\"]},"
	                        "{\"status\":\"Dispatched\",\"count\":1,"
	                        "\"recipients\":[\"a/b/c\"]}]}"),
	                 0);
	assert_int_equal(f->res.n_events, 3);
	for (size_t i = 0; i < 3; i++) {
		const struct dlr_event *e = &f->res.events[i];
		static const char *const rcpt[] = {"15551231234", "+447700900123", "a/b/c"};
		snprintf(oldid, sizeof(oldid), "B1/%s/%s/%s", rcpt[i], e->raw_status,
		         e->error_code ? e->error_code : "");
		memset(&old, 0, sizeof(old));
		old.kind = EV_STATUS;
		old.provider = "sinch";
		old.provider_event_id = oldid;
		event_finish(&old);
		assert_string_not_equal(old.dedup_key, e->dedup_key);
		assert_true(upgrade(f, oldid, "B1", e->raw_status, e->error_code, &nid, key));
		assert_string_equal(nid, e->provider_event_id);
		assert_string_equal(key, e->dedup_key);
		/* idempotent: a rewritten id stays */
		assert_false(upgrade(f, nid, "B1", e->raw_status, e->error_code, &nid, key));
	}
	/* the recipient is what lies between the batch id and the stored
	 * status and code, whatever '/' they hold */
	assert_true(
	    upgrade(f, "B/1/15551231234/Del/ivered/4/0", "B/1", "Del/ivered", "4/0", &nid, key));
	assert_string_equal(nid, "B/1/rcpt-7a06a826959d6170/Del/ivered/4/0");
	assert_true(upgrade(f, "B1/15551231234//", "B1", NULL, NULL, &nid, key));
	assert_string_equal(nid, "B1/rcpt-7a06a826959d6170//");
	/* a summary report's id has no recipient; other shapes are not ours */
	assert_false(upgrade(f, "B1//Delivered/0", "B1", "Delivered", "0", &nid, key));
	assert_false(upgrade(f, "B1/15551231234/Delivered/0", "B2", "Delivered", "0", &nid, key));
	assert_false(upgrade(f, "B1/15551231234/Delivered/0", "B1", "Failed", "0", &nid, key));
	assert_false(upgrade(f, "B1/15551231234/Delivered/0", "B1", "Delivered", "1", &nid, key));
	assert_false(upgrade(f, "B1/15551231234/Delivered/0", "B1", "Delivered", NULL, &nid, key));
	assert_false(upgrade(f, "B1/15551231234/Delivered/0", NULL, "Delivered", "0", &nid, key));
	assert_false(upgrade(f, "B1", "B1", NULL, NULL, &nid, key));
}

static void test_summary(void **state)
{
	struct fx *f = *state;
	assert_int_equal(run(f,
	                     "{\"type\":\"delivery_report_sms\",\"batch_id\":\"B1\","
	                     "\"statuses\":[{\"code\":0,\"status\":\"Delivered\",\"count\":1}]}"),
	                 0);
	assert_int_equal(f->res.n_events, 1);
	assert_null(f->res.events[0].recipient_hash);
	assert_string_equal(f->res.events[0].provider_event_id, "B1//Delivered/0");
}

static void test_vocabulary(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *raw;
		enum dlr_status st;
	} cases[] = {
	    {"Queued", ST_ACCEPTED},     {"Dispatched", ST_SENT},    {"Aborted", ST_FAILED},
	    {"Cancelled", ST_FAILED},    {"Rejected", ST_REJECTED},  {"Deleted", ST_UNDELIVERED},
	    {"Delivered", ST_DELIVERED}, {"Failed", ST_UNDELIVERED}, {"Expired", ST_EXPIRED},
	    {"Unknown", ST_UNKNOWN},
	};
	char body[512];
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		snprintf(body, sizeof(body),
		         "{\"type\":\"recipient_delivery_report_sms\",\"batch_id\":\"B1\","
		         "\"recipient\":\"15551231234\",\"code\":401,\"status\":\"%s\","
		         "\"at\":\"2022-08-30T08:16:08.930Z\","
		         "\"operator_status_at\":\"2022-08-30T08:16:00Z\","
		         "\"applied_originator\":\"12345\"}",
		         cases[i].raw);
		assert_int_equal(run(f, body), 0);
		assert_int_equal(f->res.events[0].status, cases[i].st);
		assert_int_equal(f->res.events[0].review, REVIEW_NONE);
		assert_int_equal(f->res.events[0].occurred_ms, 1661847360000LL);
		assert_string_equal(f->res.events[0].sender_identity, "12345");
	}
	/* Cancelled is a failure on purpose: reason canceled, by status and by
	 * its code 407, never "none" or an unexplained failure */
	const char *title;
	assert_int_equal(run(f, "{\"type\":\"recipient_delivery_report_sms\",\"batch_id\":\"B1\","
	                        "\"recipient\":\"15551231234\",\"status\":\"Cancelled\"}"),
	                 0);
	assert_int_equal(f->res.events[0].error_reason, ER_CANCELED);
	assert_int_equal(errcat_classify(provider_sinch.errors, "407", ST_FAILED, &title),
	                 ER_CANCELED);
	assert_string_equal(title, "Cancelled");
	assert_int_equal(run(f, "{\"type\":\"recipient_delivery_report_sms\",\"batch_id\":\"B1\","
	                        "\"recipient\":\"15551231234\",\"code\":0,\"status\":\"Beamed\"}"),
	                 0);
	assert_int_equal(f->res.events[0].status, ST_UNKNOWN);
	assert_int_equal(f->res.events[0].review, REVIEW_UNKNOWN_STATUS);
}

static void test_mo(void **state)
{
	struct fx *f = *state;
	assert_int_equal(
	    run(f, "{\"type\":\"mo_text\",\"id\":\"01fja8b4a7bm43ygwsg9gbv067\","
	           "\"from\":\"15551231234\",\"to\":\"12345\",\"body\":\"Hello\","
	           "\"received_at\":\"2016-10-02T09:34:28.542Z\",\"operator_id\":\"31\"}"),
	    0);
	const struct dlr_event *ev = &f->res.events[0];
	assert_int_equal(ev->kind, EV_INBOUND);
	assert_string_equal(ev->provider_message_id, "01FJA8B4A7BM43YGWSG9GBV067");
	assert_string_equal(ev->sender_identity, "12345");
	assert_string_equal(ev->destination_country, "US");
	assert_string_equal(ev->text, "Hello");
	assert_int_equal(ev->text_len, 5);
	assert_int_equal(ev->occurred_ms, 1475400868542LL);
	assert_int_equal(run(f, "{\"type\":\"mo_binary\",\"id\":\"X1\",\"from\":\"15551231234\","
	                        "\"to\":\"12345\",\"body\":\"AAEC\",\"udh\":\"00\"}"),
	                 0);
	assert_int_equal(f->res.events[0].kind, EV_INBOUND);
	assert_null(f->res.events[0].text);
	assert_int_equal(
	    run(f, "{\"type\":\"mo_media\",\"id\":\"X2\",\"from\":\"15551231234\","
	           "\"to\":\"12345\",\"body\":{\"url\":\"https://x\",\"message\":\"hi\"}}"),
	    0);
	assert_string_equal(f->res.events[0].text, "hi");
}

static void test_unusable(void **state)
{
	struct fx *f = *state;
	static const char *const bodies[] = {
	    "nope",
	    "{\"batch_id\":\"B1\"}",
	    "{\"type\":\"something_new\"}",
	    "{\"type\":\"delivery_report_sms\",\"statuses\":[]}",
	    "{\"type\":\"delivery_report_sms\",\"batch_id\":\"B1\",\"statuses\":[]}",
	    "{\"type\":\"mo_text\",\"from\":\"1\"}",
	};
	for (size_t i = 0; i < ARRAY_LEN(bodies); i++) {
		assert_int_equal(run(f, bodies[i]), 0);
		assert_int_equal(f->res.n_events, 1);
		assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
	}
}

static void test_not_configured(void **state)
{
	struct config cfg;
	void *st = (void *)1;
	char err[256];
	(void)state;
	unsetenv("DLRD_SINCH_SECRETS");
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(provider_sinch.init(&cfg, &st, err, sizeof(err)), 0);
	assert_null(st);
	config_fini(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_vector, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rejections, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sha512_and_rotation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_and_recipient_dedup, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_recipient_entries_reviewed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_upgrade_event_id, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_summary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vocabulary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mo, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unusable, setup, teardown),
	    cmocka_unit_test(test_not_configured),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
