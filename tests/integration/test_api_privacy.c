/* SPDX-License-Identifier: MIT */
/*
 * Integration: phone numbers.  The number never shows in clear outside the
 * audited reveal: not in any answer of any role (summaries, timelines for
 * viewers, searches, send answers, replays, errors), not in the log at
 * debug level, not in any stored column but the raw callback payloads.
 * Reveal returns it to support and admin only, with a required reason, and
 * writes the audit row (who, when, which message, why) in the same
 * transaction; a refused reveal writes none.  Keys: created once in the
 * data directory with mode 0600 and logged, kept across restarts; the
 * configured ring rotates (the first key encrypts, older keys still
 * decrypt), and a number whose key is gone cannot be revealed.  The event
 * ids dlrd makes for Telnyx and Sinch recipients hold a keyed tag, never
 * the number; a database whose ids (and idempotency fingerprints) an older
 * dlrd stored with the number is rewritten at start-up so that a provider
 * retry is still a duplicate and a replayed send still matches.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "api_helpers.h"
#include "crypto.h"
#include "event.h"

#define K_OLD "old:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
#define K_NEW "new:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="

static int setup(void **state)
{
	const char *env[] = {api_tokens_env(), "DLRD_SERVER_LOG_LEVEL=debug", NULL};
	return h_fixture_start(state, env);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

static void record(struct dlrd *d, const char *key, const char *to, const char *pmid, char id[40])
{
	char body[1024];
	struct h_resp r;
	api_send_body(body, sizeof(body), to, pmid, "otp", "Europe/London");
	assert_int_equal(api_send(d, T_APP, key, body, &r), 201);
	assert_null(strstr(r.body, to + 2));
	json_t *j = api_json(&r);
	util_strlcpy(id, jpath_s(j, "id"), 40);
	json_decref(j);
}

static void assert_masked(struct h_resp *r, const char *what)
{
	if (strstr(r->body, N_TO_DIGITS) || strstr(r->body, "7700900123"))
		fail_msg("%s shows a number: %s", what, r->body);
}

static void test_masked_everywhere(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char id[40], id2[40], sid[35], form[1024], target[200];
	static const char *const readers[] = {T_VIEWER, T_SUPPORT, T_ADMIN};

	h_sid(sid, 20, 1);
	record(d, "m-1", N_TO, sid, id);
	record(d, "m-2", "+447700900123", NULL, id2);
	assert_true(h_twilio_body(form, sizeof(form), sid, "delivered", NULL) > 0);
	assert_int_equal(h_post_status(d, form, &r), 200);

	for (size_t i = 0; i < ARRAY_LEN(readers); i++) {
		util_fmt(target, sizeof(target), "/v1/messages/%s", id);
		assert_int_equal(api_call(d, "GET", target, readers[i], NULL, NULL, &r), 200);
		assert_masked(&r, "a summary");
		assert_non_null(strstr(r.body, "\"recipient\":\"+1********23\""));
		util_fmt(target, sizeof(target), "/v1/messages/%s", id2);
		assert_int_equal(api_call(d, "GET", target, readers[i], NULL, NULL, &r), 200);
		assert_non_null(strstr(r.body, "\"recipient\":\"+44********23\""));
		assert_masked(&r, "a summary");
		assert_int_equal(api_call(d, "GET", "/v1/messages", readers[i], NULL, NULL, &r),
		                 200);
		assert_masked(&r, "a search");
	}
	util_fmt(target, sizeof(target), "/v1/messages/%s/timeline", id);
	assert_int_equal(api_call(d, "GET", target, T_VIEWER, NULL, NULL, &r), 200);
	assert_masked(&r, "a viewer's timeline");
	/* (support sees raw payloads, which hold what the provider sent) */

	/* replays, errors */
	char body[1024];
	api_send_body(body, sizeof(body), N_TO, sid, "otp", "Europe/London");
	assert_int_equal(api_send(d, T_APP, "m-1", body, &r), 201);
	assert_masked(&r, "a replay");
	assert_int_equal(api_send(d, T_APP, "m-3", body, &r), 409);
	assert_masked(&r, "a conflict");
	api_send_body(body, sizeof(body), "+1415555012x", NULL, "otp", NULL);
	assert_int_equal(api_send(d, T_APP, "m-4", body, &r), 422);
	assert_masked(&r, "a validation error");
	assert_null(strstr(r.body, "415555012"));
	util_fmt(body, sizeof(body), "{\"to\":\"%s\", \"%s\":1}", N_TO, N_TO);
	assert_int_equal(api_send(d, T_APP, "m-5", body, &r), 422);
	assert_masked(&r, "an unknown-field error");
	assert_int_equal(api_send(d, T_APP, "m-6", "{\"to\":\"" N_TO "\" oops", &r), 400);
	assert_masked(&r, "a JSON syntax error");
	assert_int_equal(api_call(d, "GET", "/v1/messages?sender_identity=%2B14155550123&colour=1",
	                          T_VIEWER, NULL, NULL, &r),
	                 422);

	/* stored: only the hash, the masked form and the ciphertext */
	assert_int_equal(h_sql_int(d,
	                           "SELECT count(*) FROM sms_messages WHERE"
	                           " instr(coalesce(recipient_masked,'')||coalesce(metadata,'')||"
	                           "coalesce(recipient_hash,'')||CAST(coalesce(recipient_enc,'') AS"
	                           " TEXT)||coalesce(sender_identity,''), %Q) > 0",
	                           N_TO_DIGITS),
	                 0);
	assert_int_equal(h_sql_int(d,
	                           "SELECT count(*) FROM api_idempotency WHERE instr(body, %Q) > 0"
	                           " OR instr(body, '7700900123') > 0",
	                           N_TO_DIGITS),
	                 0);
	/* callbacks store the masked number too */
	h_sid(sid, 20, 2);
	assert_true(h_twilio_body(form, sizeof(form), sid, "sent", NULL) > 0);
	assert_int_equal(h_post_status(d, form, &r), 200);
	char buf[64];
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT recipient_masked||'|'||country_source FROM sms_messages"
	              " WHERE provider_message_id = %Q",
	              sid),
	    "+1********23|number");

	/* the log, at debug level */
	size_t n;
	char *log = h_read_file(d->log_path, &n);
	assert_non_null(log);
	assert_null(memmem(log, n, N_TO_DIGITS, strlen(N_TO_DIGITS)));
	assert_null(memmem(log, n, "7700900123", 10));
	assert_null(memmem(log, n, T_APP, strlen(T_APP)));
	free(log);
}

static void test_reveal_audited(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char id[40], target[200], code[64];

	record(d, "r-1", "+447700900123", NULL, id);
	util_fmt(target, sizeof(target), "/v1/messages/%s/reveal", id);
	/* a reason is required, non-blank, bounded */
	assert_int_equal(api_call(d, "POST", target, T_SUPPORT, "{}", NULL, &r), 422);
	assert_string_equal(api_error_code(&r, code, sizeof(code)), "missing_field");
	assert_int_equal(api_call(d, "POST", target, T_SUPPORT, "{\"reason\":\"   \"}", NULL, &r),
	                 422);
	char big[700];
	util_fmt(big, sizeof(big), "{\"reason\":\"%0600d\"}", 0);
	assert_int_equal(api_call(d, "POST", target, T_SUPPORT, big, NULL, &r), 422);
	assert_int_equal(api_call(d, "POST", target, T_VIEWER, "{\"reason\":\"x\"}", NULL, &r),
	                 403);
	assert_int_equal(api_call(d, "POST", target, T_APP, "{\"reason\":\"x\"}", NULL, &r), 403);
	assert_int_equal(h_count(d, "audit_log"), 0);

	assert_int_equal(api_call(d, "POST", target, T_SUPPORT,
	                          "{\"reason\":\"  user called: code did not arrive  \"}", NULL,
	                          &r),
	                 200);
	json_t *j = api_json(&r);
	assert_string_equal(jpath_s(j, "to"), "+447700900123");
	assert_string_equal(jpath_s(j, "id"), id);
	long long audit_id = jpath_i(j, "audit_id");
	json_decref(j);
	char buf[512], want[512];
	/* the log names the message revealed (an id, never the number) */
	util_fmt(want, sizeof(want), "event=api_write route=reveal outcome=done id=%s ", id);
	assert_true(h_log_contains(d, want));
	util_fmt(want, sizeof(want), "%lld|support|reveal|%s|user called: code did not arrive|1",
	         audit_id, id);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT id||'|'||actor_role||'|'||action||'|'||message_id||'|'||"
	              "reason||'|'||(length(actor) = 12 AND at IS NOT NULL) FROM"
	              " audit_log"),
	    want);
	/* the audit log lists it for admin */
	j = NULL;
	assert_int_equal(api_call(d, "GET", "/v1/audit", T_ADMIN, NULL, NULL, &r), 200);
	j = api_json(&r);
	json_t *e = json_array_get(jpath(j, "entries"), 0);
	assert_string_equal(jpath_s(e, "action"), "reveal");
	assert_string_equal(jpath_s(e, "message_id"), id);
	assert_string_equal(jpath_s(e, "actor_role"), "support");
	assert_string_equal(jpath_s(e, "reason"), "user called: code did not arrive");
	assert_masked(&r, "the audit log");
	json_decref(j);
	util_fmt(target, sizeof(target), "/v1/audit?message_id=%s", id);
	assert_int_equal(api_call(d, "GET", target, T_ADMIN, NULL, NULL, &r), 200);
	assert_non_null(strstr(r.body, id));
	assert_int_equal(api_call(d, "GET", "/v1/audit", T_SUPPORT, NULL, NULL, &r), 403);

	/* a message with no recorded number: 404, and no audit row */
	char sid[35], form[1024], cb_id[40];
	h_sid(sid, 21, 1);
	assert_true(h_twilio_body(form, sizeof(form), sid, "sent", NULL) > 0);
	assert_int_equal(h_post_status(d, form, &r), 200);
	h_sql_str(d, cb_id, sizeof(cb_id), "SELECT id FROM sms_messages WHERE origin = 'callback'");
	util_fmt(target, sizeof(target), "/v1/messages/%s/reveal", cb_id);
	assert_int_equal(api_call(d, "POST", target, T_ADMIN, "{\"reason\":\"x\"}", NULL, &r), 404);
	assert_string_equal(api_error_code(&r, code, sizeof(code)), "recipient_not_stored");
	assert_int_equal(api_call(d, "POST",
	                          "/v1/messages/01a21dbe-10c7-77c1-8add-78a55b904a2a/reveal",
	                          T_ADMIN, "{\"reason\":\"x\"}", NULL, &r),
	                 404);
	assert_int_equal(h_count(d, "audit_log"), 1);
	/* the log says a reveal happened, not what was revealed */
	assert_true(h_log_contains(d, "event=api_write route=reveal outcome=done"));
	assert_false(h_log_contains(d, "7700900123"));
}

/* storage.synchronous=normal may lose the last acknowledged callbacks on
 * power loss; a reveal is different: its answer discloses a number, which
 * cannot be taken back, and the audit row is the only record that it was.
 * So a reveal's batch is made durable whatever the setting, before the
 * number leaves: with the WAL's fdatasync failing, the reveal is refused
 * (503, no number), while a callback is still acknowledged as configured. */
static void test_reveal_durable_under_normal_sync(void **state)
{
	struct dlrd d;
	struct h_resp r;
	char id[40], target[200], form[1024], sid[35];
	const char *env[] = {api_tokens_env(), "DLRD_STORAGE_SYNCHRONOUS=normal", NULL};
	(void)state;

	assert_int_equal(h_setup(&d, env), 0);
	assert_int_equal(h_start(&d), 0);
	record(&d, "dn-1", "+447700900123", NULL, id);
	util_fmt(target, sizeof(target), "/v1/messages/%s/reveal", id);
	/* (under PostgreSQL: the reveal's transaction commits synchronously) */
	assert_int_equal(
	    api_call(&d, "POST", target, T_SUPPORT, "{\"reason\":\"user called\"}", NULL, &r), 200);
	assert_non_null(strstr(r.body, "+447700900123"));
	assert_int_equal(h_count(&d, "audit_log"), 1);
	if (h_pg()) {
		h_teardown(&d);
		return;
	}

	assert_int_equal(h_write_file(d.fault_path, "s"), 0); /* syncs fail, writes pass */
	h_sid(sid, 22, 1);
	assert_true(h_twilio_body(form, sizeof(form), sid, "sent", NULL) > 0);
	assert_int_equal(h_post_status(&d, form, &r), 200); /* normal: not synced */
	assert_int_equal(
	    api_call(&d, "POST", target, T_SUPPORT, "{\"reason\":\"again\"}", NULL, &r), 503);
	assert_null(strstr(r.body, "7700900123"));
	/* openapi.json: a 503 says when to retry, like a callback's */
	assert_string_equal(r.retry_after, "1");
	h_teardown(&d);
}

/* ---- Telnyx and Sinch callbacks for one recipient, N_TO ---- */

/* RFC 8032 TEST 1 key pair, as in test_provider_telnyx.c */
static const uint8_t TX_SEED[32] = {
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60};
#define TX_PUB   "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
#define TX_EVENT "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be"
#define TX_BODY                                                                                    \
	"{\"data\":{\"event_type\":\"message.finalized\",\"id\":\"" TX_EVENT "\","                 \
	"\"occurred_at\":\"2026-11-27T15:10:00.000+00:00\",\"payload\":{\"id\":"                   \
	"\"40385f64-5717-4562-b3fc-2c963f66afa6\",\"from\":{\"phone_number\":\"" N_SENDER "\"},"   \
	"\"to\":[{\"phone_number\":\"" N_TO "\",\"status\":\"delivered\"}]}}}"
#define SN_SECRET "sinch-privacy-secret"
#define SN_BATCH  "01FC66621XXXXX119Z8PMV1QPQ"
#define SN_BODY                                                                                    \
	"{\"type\":\"recipient_delivery_report_sms\",\"batch_id\":\"" SN_BATCH "\","               \
	"\"recipient\":\"14155550123\",\"code\":0,\"status\":\"Delivered\","                       \
	"\"at\":\"2026-11-27T15:10:00.000Z\"}"
/* the ids a dlrd before the recipient tag stored for them */
#define TX_OLD_ID TX_EVENT ":" N_TO
#define SN_OLD_ID SN_BATCH "/14155550123/Delivered/0"

static long post_telnyx(const struct dlrd *d, struct h_resp *r)
{
	char ts[32], sig[128], h1[64], h2[200];
	const char *hdrs[] = {"Content-Type: application/json", h1, h2, NULL};
	size_t tl, bl = strlen(TX_BODY), sl = 64;
	uint8_t m[2048], s64[64];
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, TX_SEED, 32);
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	util_fmt(ts, sizeof(ts), "%lld", (long long)time(NULL));
	tl = strlen(ts);
	memcpy(m, ts, tl);
	m[tl] = '|';
	memcpy(m + tl + 1, TX_BODY, bl);
	assert_int_equal(EVP_DigestSignInit(c, NULL, NULL, NULL, k), 1);
	assert_int_equal(EVP_DigestSign(c, s64, &sl, m, tl + 1 + bl), 1);
	crypto_b64_encode(s64, sl, sig);
	EVP_MD_CTX_free(c);
	EVP_PKEY_free(k);
	util_fmt(h1, sizeof(h1), "telnyx-timestamp: %s", ts);
	util_fmt(h2, sizeof(h2), "telnyx-signature-ed25519: %s", sig);
	assert_int_equal(h_request(d, "POST", "/webhooks/telnyx/status", hdrs, TX_BODY, bl, r), 0);
	return r->status;
}

static long post_sinch(const struct dlrd *d, struct h_resp *r)
{
	char ts[32], m[2048], h1[128], h2[96], sig[64];
	unsigned char md[32];
	unsigned int len = sizeof(md);
	const char *hdrs[] = {"Content-Type: application/json", h1,
	                      "x-sinch-webhook-signature-nonce: 01FJA8B4A7BM43YGWSG9GBV067", h2,
	                      NULL};

	util_fmt(ts, sizeof(ts), "%lld", (long long)time(NULL));
	util_fmt(m, sizeof(m), "%s.01FJA8B4A7BM43YGWSG9GBV067.%s", SN_BODY, ts);
	HMAC(EVP_sha256(), SN_SECRET, (int)strlen(SN_SECRET), (const unsigned char *)m, strlen(m),
	     md, &len);
	crypto_b64_encode(md, len, sig);
	util_fmt(h1, sizeof(h1), "x-sinch-webhook-signature: %s", sig);
	util_fmt(h2, sizeof(h2), "x-sinch-webhook-signature-timestamp: %s", ts);
	assert_int_equal(
	    h_request(d, "POST", "/webhooks/sinch/status", hdrs, SN_BODY, strlen(SN_BODY), r), 0);
	return r->status;
}

static int setup_providers(void **state)
{
	const char *env[] = {api_tokens_env(), "DLRD_TELNYX_PUBLIC_KEYS=" TX_PUB,
	                     "DLRD_SINCH_SECRETS=" SN_SECRET, NULL};
	return h_fixture_start(state, env);
}

/* Fails when s holds 7 digits in a row of the number (14155550123). */
static void assert_no_digits(const char *s, const char *what)
{
	static const char digits[] = "14155550123";
	for (size_t i = 0; i + 7 <= sizeof(digits) - 1; i++) {
		char w[8];
		memcpy(w, digits + i, 7);
		w[7] = '\0';
		if (strstr(s, w))
			fail_msg("%s holds digits of the number (%s): %s", what, w, s);
	}
}

/* The viewer's timeline of the provider's one message: no digits of the
 * number anywhere, and each event id in its tagged form. */
static void check_viewer_timeline(struct dlrd *d, const char *provider)
{
	char id[40], target[128];
	struct h_resp r;

	assert_non_null(h_sql_str(d, id, sizeof(id),
	                          "SELECT id FROM sms_messages WHERE provider = %Q", provider));
	util_fmt(target, sizeof(target), "/v1/messages/%s/timeline", id);
	assert_int_equal(api_call(d, "GET", target, T_VIEWER, NULL, NULL, &r), 200);
	assert_no_digits(r.body, "a viewer's timeline");
	json_t *j = api_json(&r);
	json_t *evs = jpath(j, "events");
	assert_int_equal(json_array_size(evs), 1);
	const char *eid = jpath_s(json_array_get(evs, 0), "provider_event_id");
	assert_non_null(strstr(eid, "rcpt-"));
	json_decref(j);
}

static void test_provider_event_ids_hold_no_number(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[4096];

	assert_int_equal(post_telnyx(d, &r), 200);
	assert_int_equal(post_sinch(d, &r), 200);
	check_viewer_timeline(d, "telnyx");
	check_viewer_timeline(d, "sinch");
	/* nor in any stored id or key (the raw payloads are sealed) */
	assert_no_digits(h_sql_str(d, buf, sizeof(buf),
	                           "SELECT group_concat(provider_event_id || ' ' || dedup_key, ' ')"
	                           " FROM sms_message_events"),
	                 "the stored event ids");
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_message_events WHERE"
	                              " provider_event_id LIKE '%%rcpt-%%'"),
	                 2);
}

/* The upgrade: a database whose Telnyx and Sinch event ids, dedup keys and
 * idempotency fingerprints an older dlrd wrote (the number in the ids, an
 * unkeyed SHA-256 of the send's canonical JSON) is rewritten at start-up
 * (SQLite migration 7, PostgreSQL 5): the ids and keys become what this
 * dlrd computes, so the providers' retries are duplicates, and a replayed
 * send with the same key and body gets its first answer back. */
static void test_upgrade_rewrites_stored_ids(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r, first;
	char body[1024], tx_new[256], sn_new[256], buf[4096], old_hash[65], other[1024];
	uint8_t md[CRYPTO_SHA256_LEN];
	int status;

	api_send_body(body, sizeof(body), N_TO, NULL, "otp", NULL);
	assert_int_equal(api_send(d, T_APP, "upgrade-key", body, &first), 201);
	assert_int_equal(post_telnyx(d, &r), 200);
	assert_int_equal(post_sinch(d, &r), 200);
	h_sql_str(d, tx_new, sizeof(tx_new),
	          "SELECT provider_event_id FROM sms_message_events WHERE provider = 'telnyx'");
	h_sql_str(d, sn_new, sizeof(sn_new),
	          "SELECT provider_event_id FROM sms_message_events WHERE provider = 'sinch'");
	assert_int_equal(h_stop(d, SIGTERM, 10000, &status), 0);

	/* what the older dlrd had stored */
	const struct {
		const char *provider, *id;
	} old[] = {{"telnyx", TX_OLD_ID}, {"sinch", SN_OLD_ID}};
	for (size_t i = 0; i < 2; i++) {
		struct dlr_event e;
		memset(&e, 0, sizeof(e));
		e.kind = EV_STATUS;
		e.provider = old[i].provider;
		e.provider_event_id = old[i].id;
		e.occurred_ms = -1;
		event_finish(&e);
		assert_int_equal(h_sql_exec(d,
		                            "UPDATE sms_message_events SET provider_event_id = %Q,"
		                            " dedup_key = %Q WHERE provider = %Q",
		                            old[i].id, e.dedup_key, old[i].provider),
		                 0);
	}
	json_t *canon = json_loads(body, 0, NULL);
	char *c = json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS);
	crypto_sha256(c, strlen(c), md);
	crypto_hex(md, sizeof(md), old_hash);
	free(c);
	json_decref(canon);
	assert_int_equal(h_sql_exec(d, "UPDATE api_idempotency SET request_hash = %Q", old_hash),
	                 0);
	assert_int_equal(
	    h_sql_exec(d, "DELETE FROM schema_migrations WHERE version = %d", h_pg() ? 5 : 7), 0);

	assert_int_equal(h_start(d), 0);
	assert_true(h_log_contains(d, "event=privacy_ids_migrated"));
	assert_true(h_log_contains(d, "events=2 request_hashes=1"));
	/* the ids and keys are this dlrd's own again */
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider_event_id FROM sms_message_events WHERE provider = 'telnyx'"),
	    tx_new);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider_event_id FROM sms_message_events WHERE provider = 'sinch'"),
	    sn_new);
	assert_no_digits(h_sql_str(d, buf, sizeof(buf),
	                           "SELECT group_concat(provider_event_id || ' ' || dedup_key, ' ')"
	                           " FROM sms_message_events"),
	                 "the stored event ids");
	assert_string_not_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT request_hash FROM api_idempotency"), old_hash);
	/* the providers retry: duplicates, nothing new */
	assert_int_equal(post_telnyx(d, &r), 200);
	assert_int_equal(post_sinch(d, &r), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 2);
	assert_int_equal(h_sql_int(d, "SELECT sum(duplicate_count) FROM sms_messages"), 2);
	check_viewer_timeline(d, "telnyx");
	check_viewer_timeline(d, "sinch");
	/* the app retries its send: the first answer; another body: 409 */
	assert_int_equal(api_send(d, T_APP, "upgrade-key", body, &r), 201);
	assert_int_equal(r.body_len, first.body_len);
	assert_memory_equal(r.body, first.body, first.body_len);
	api_send_body(other, sizeof(other), "+447700900123", NULL, "otp", NULL);
	assert_int_equal(api_send(d, T_APP, "upgrade-key", other, &r), 409);
	/* a restart does not rewrite anything again */
	h_sql_str(d, buf, sizeof(buf), "SELECT request_hash FROM api_idempotency");
	assert_int_equal(h_stop(d, SIGTERM, 10000, &status), 0);
	assert_int_equal(h_start(d), 0);
	assert_int_equal(api_send(d, T_APP, "upgrade-key", body, &r), 201);
	assert_memory_equal(r.body, first.body, first.body_len);
}

static void test_key_file_created_once(void **state)
{
	struct dlrd d;
	struct h_resp r;
	char path[H_PATH_MAX + 32], id[40], target[200];
	struct stat sb;
	int st;
	/* privacy.encryption_keys left unset (the harness sets it otherwise) */
	const char *env[] = {api_tokens_env(), "DLRD_PRIVACY_ENCRYPTION_KEYS", NULL};
	(void)state;

	assert_int_equal(h_setup(&d, env), 0);
	assert_int_equal(h_start(&d), 0);
	util_fmt(path, sizeof(path), "%s/encryption.keys", d.dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_true(h_log_contains(&d, "event=encryption_keys_created"));
	char *k1 = h_read_file(path, NULL);
	assert_non_null(k1);
	record(&d, "kf-1", N_TO, NULL, id);
	assert_int_equal(h_stop(&d, SIGTERM, 15000, &st), 0);

	/* restart: the same key, not a new one; the old number still opens */
	assert_int_equal(h_start(&d), 0);
	char *k2 = h_read_file(path, NULL);
	assert_string_equal(k1, k2);
	free(k1);
	free(k2);
	util_fmt(target, sizeof(target), "/v1/messages/%s/reveal", id);
	assert_int_equal(
	    api_call(&d, "POST", target, T_ADMIN, "{\"reason\":\"after restart\"}", NULL, &r), 200);
	assert_non_null(strstr(r.body, N_TO));
	/* the key never reaches the log */
	size_t n;
	char *log = h_read_file(d.log_path, &n), *key = h_read_file(path, NULL);
	assert_null(memmem(log, n, key + 3, 20));
	free(log);
	free(key);
	h_teardown(&d);
}

static void test_configured_keys_rotate(void **state)
{
	struct dlrd d;
	struct h_resp r;
	char old_id[40], new_id[40], target[200], buf[64], code[64];
	int st;
	(void)state;

	const char *env[] = {api_tokens_env(), "DLRD_PRIVACY_ENCRYPTION_KEYS=" K_OLD, NULL};
	assert_int_equal(h_setup(&d, env), 0);
	assert_int_equal(h_start(&d), 0);
	record(&d, "rot-1", N_TO, NULL, old_id);
	/* a callback, its raw payload sealed under "old" */
	char sid[35], body[1024], cb_target[200];
	h_sid(sid, 31, 1);
	assert_true(h_twilio_body(body, sizeof(body), sid, "delivered", NULL) > 0);
	assert_int_equal(h_post_status(&d, body, &r), 200);
	assert_string_equal(h_sql_str(&d, buf, sizeof(buf),
	                              "SELECT recipient_key_id FROM"
	                              " sms_messages WHERE id = %Q",
	                              old_id),
	                    "old");
	/* no key file when keys are configured */
	char path[H_PATH_MAX + 32];
	util_fmt(path, sizeof(path), "%s/encryption.keys", d.dir);
	assert_int_not_equal(access(path, F_OK), 0);
	assert_int_equal(h_stop(&d, SIGTERM, 15000, &st), 0);

	/* a new current key; the old one stays to decrypt */
	h_set_env(&d, "DLRD_PRIVACY_ENCRYPTION_KEYS=" K_NEW "," K_OLD);
	assert_int_equal(h_start(&d), 0);
	record(&d, "rot-2", N_TO, NULL, new_id);
	assert_string_equal(h_sql_str(&d, buf, sizeof(buf),
	                              "SELECT recipient_key_id FROM"
	                              " sms_messages WHERE id = %Q",
	                              new_id),
	                    "new");
	util_fmt(target, sizeof(target), "/v1/messages/%s/reveal", old_id);
	assert_int_equal(
	    api_call(&d, "POST", target, T_SUPPORT, "{\"reason\":\"rotation\"}", NULL, &r), 200);
	assert_non_null(strstr(r.body, N_TO));
	assert_int_equal(h_stop(&d, SIGTERM, 15000, &st), 0);

	/* the old key dropped: its numbers cannot be revealed, and no audit
	 * row claims they were */
	h_set_env(&d, "DLRD_PRIVACY_ENCRYPTION_KEYS=" K_NEW);
	assert_int_equal(h_start(&d), 0);
	/* nor can the payloads sealed under it be read: the timeline still
	 * answers, the payload null with the reason */
	h_sql_str(&d, buf, sizeof(buf),
	          "SELECT id FROM sms_messages WHERE provider_message_id = %Q", sid);
	util_fmt(cb_target, sizeof(cb_target), "/v1/messages/%s/timeline", buf);
	assert_int_equal(api_call(&d, "GET", cb_target, T_SUPPORT, NULL, NULL, &r), 200);
	json_t *tl = api_json(&r), *ev0 = json_array_get(jpath(tl, "events"), 0);
	assert_non_null(ev0);
	assert_non_null(json_object_get(ev0, "raw_payload"));
	assert_true(json_is_null(json_object_get(ev0, "raw_payload")));
	assert_string_equal(jpath_s(ev0, "raw_payload_unavailable"), "encryption_key_missing");
	json_decref(tl);
	/* a payload sealed under a key of the ring that does not verify (its
	 * tag altered at rest): null, "payload_does_not_verify" (openapi.json),
	 * never the bytes, and the rest of the timeline stands */
#define SEALED_BAD                                                                                 \
	"444C52444531" /* DLRDE1 */ "03" /* "new" */ "6E6577" /* nonce */ "0000000000000000000000" \
	"00"                                                                                       \
	"78" /* tag */ "00000000000000000000000000000000"
	assert_int_equal(h_sql_exec(&d,
	                            h_pg() ? "UPDATE sms_message_events SET raw_payload ="
	                                     " '\\x" SEALED_BAD "'::bytea WHERE message_id = %Q"
	                                   : "UPDATE sms_message_events SET raw_payload ="
	                                     " X'" SEALED_BAD "' WHERE message_id = %Q",
	                            buf),
	                 0);
#undef SEALED_BAD
	assert_int_equal(api_call(&d, "GET", cb_target, T_SUPPORT, NULL, NULL, &r), 200);
	tl = api_json(&r);
	ev0 = json_array_get(jpath(tl, "events"), 0);
	assert_non_null(ev0);
	assert_true(json_is_null(json_object_get(ev0, "raw_payload")));
	assert_null(json_object_get(ev0, "raw_payload_base64"));
	assert_string_equal(jpath_s(ev0, "raw_payload_unavailable"), "payload_does_not_verify");
	assert_string_equal(jpath_s(ev0, "status"), "delivered");
	json_decref(tl);
	int64_t audits = h_count(&d, "audit_log");
	assert_int_equal(api_call(&d, "POST", target, T_SUPPORT, "{\"reason\":\"gone\"}", NULL, &r),
	                 500);
	assert_string_equal(api_error_code(&r, code, sizeof(code)), "recipient_undecryptable");
	assert_int_equal(h_count(&d, "audit_log"), audits);
	util_fmt(target, sizeof(target), "/v1/messages/%s/reveal", new_id);
	assert_int_equal(api_call(&d, "POST", target, T_SUPPORT, "{\"reason\":\"new\"}", NULL, &r),
	                 200);
	assert_int_equal(h_stop(&d, SIGTERM, 15000, &st), 0);

	/* a malformed ring stops start-up, naming the key, not its value */
	h_set_env(&d, "DLRD_PRIVACY_ENCRYPTION_KEYS=k1:c2hvcnQ=");
	assert_int_equal(h_spawn(&d), 0);
	assert_int_equal(h_wait_exit(&d, 10000, &st), 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
	assert_true(h_log_contains(&d, "privacy.encryption_keys: entry 1"));
	assert_false(h_log_contains(&d, "c2hvcnQ"));
	h_teardown(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_masked_everywhere, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reveal_audited, setup, teardown),
	    cmocka_unit_test(test_reveal_durable_under_normal_sync),
	    cmocka_unit_test_setup_teardown(test_provider_event_ids_hold_no_number, setup_providers,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_upgrade_rewrites_stored_ids, setup_providers,
	                                    teardown),
	    cmocka_unit_test(test_key_file_created_once),
	    cmocka_unit_test(test_configured_keys_rotate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
