/* SPDX-License-Identifier: MIT */
/*
 * Integration: Vonage SMS API callbacks against the real daemon.  A signed
 * GET delivery receipt stores exact rows (canonical id, status, carrier
 * time from scts, the query string as raw payload); the same receipt again
 * (a retry: new timestamp, nonce and sig) adds only a retry-log row; a late
 * `accepted` does not move the summary back; POST form and POST JSON work
 * too; forged, unsigned and stale requests answer 401 and write nothing; an
 * inbound STOP stores an inbound row and an opt-out, which refuses a send
 * (POST /v1/messages) from our number however the app writes it (Vonage
 * writes numbers without '+'); an unconfigured dlrd answers 404.
 * Signatures are computed here with OpenSSL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "api_helpers.h"

#define SECRET "vonage-it-signature-secret"
#define ID     "0B00000127FDBC63"

static int setup(void **state)
{
	const char *env[] = {"DLRD_VONAGE_SIGNATURE_SECRETS=old-secret," SECRET,
	                     "DLRD_VONAGE_SIGNATURE_METHOD=sha256", api_tokens_env(), NULL};
	return h_fixture_start(state, env);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

struct kv {
	const char *k, *v;
};

static int kv_cmp(const void *a, const void *b)
{
	return strcmp(((const struct kv *)a)->k, ((const struct kv *)b)->k);
}

/* Vonage's documented string, HMAC-SHA256 hex. */
static void vsign(struct kv *kv, size_t n, char out[65])
{
	char s[4096];
	size_t at = 0;
	unsigned char m[32];
	unsigned ml = 0;

	qsort(kv, n, sizeof(*kv), kv_cmp);
	for (size_t i = 0; i < n; i++) {
		at += util_fmt(s + at, sizeof(s) - at, "&%s=", kv[i].k);
		for (const char *c = kv[i].v; *c; c++)
			s[at++] = (*c == '&' || *c == '=') ? '_' : *c;
		s[at] = '\0';
	}
	HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)s, at, m, &ml);
	for (unsigned i = 0; i < ml; i++)
		snprintf(out + 2 * i, 3, "%02x", m[i]);
}

static void pct(const char *v, char *out, size_t cap)
{
	size_t o = 0;
	for (; *v && o + 4 < cap; v++) {
		unsigned char c = (unsigned char)*v;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, cap - o, "%%%02X", c);
	}
	out[o] = '\0';
}

/* A signed form/query string of kv plus timestamp (seconds from now). */
static void signed_form(struct kv *kv, size_t n, long skew_s, const char *nonce, char *out,
                        size_t cap)
{
	char ts[32], sig[65], enc[512];
	struct kv all[32];
	size_t at = 0, m = 0;

	util_fmt(ts, sizeof(ts), "%lld", (long long)time(NULL) + skew_s);
	for (size_t i = 0; i < n; i++)
		all[m++] = kv[i];
	all[m++] = (struct kv){"timestamp", ts};
	all[m++] = (struct kv){"nonce", nonce};
	vsign(all, m, sig);
	for (size_t i = 0; i < m; i++) {
		pct(all[i].v, enc, sizeof(enc));
		at += util_fmt(out + at, cap - at, "%s%s=%s", i ? "&" : "", all[i].k, enc);
	}
	util_fmt(out + at, cap - at, "&sig=%s", sig);
}

static void receipt(char *out, size_t cap, const char *status, const char *err, long skew_s,
                    const char *nonce)
{
	struct kv kv[] = {
	    {"msisdn", "447700900123"}, {"to", "AcmeInc"},
	    {"network-code", "23410"},  {"messageId", ID},
	    {"price", "0.03330000"},    {"status", status},
	    {"scts", "2001011400"},     {"err-code", err},
	    {"api-key", "abcd1234"},    {"message-timestamp", "2020-01-01 14:00:05"},
	};
	signed_form(kv, ARRAY_LEN(kv), skew_s, nonce, out, cap);
}

static long get(struct dlrd *d, const char *path, const char *q, struct h_resp *r)
{
	char target[4096];
	util_fmt(target, sizeof(target), "%s?%s", path, q);
	h_request(d, "GET", target, NULL, NULL, 0, r);
	return r->status;
}

static void test_receipt_retry_and_order(void **state)
{
	struct dlrd *d = *state;
	char q[4096], q2[4096], late[4096], buf[512];
	struct h_resp r;

	receipt(q, sizeof(q), "delivered", "0", 0, "nonce-1");
	assert_int_equal(get(d, "/webhooks/vonage/status", q, &r), 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider_message_id||'|'||current_status||'|'||"
	              "destination_country||'|'||sender_identity||'|'||is_final FROM sms_messages"),
	    "0b00000127fdbc63|delivered|GB|AcmeInc|1");
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT status||'|'||raw_status||'|'||error_code||'|'||"
	                              "provider_occurred_at||'|'||changed_summary FROM "
	                              "sms_message_events"),
	                    "delivered|delivered|0|2020-01-01T14:00:00.000Z|1");
	/* the raw payload is the query string, byte for byte */
	assert_string_equal(
	    h_payload_str(d, buf, sizeof(buf), "SELECT raw_payload FROM sms_message_events"), q);
	assert_int_equal(h_sql_int(d, "SELECT length(recipient_hash) FROM sms_messages"), 64);

	/* a retry: new timestamp, nonce and signature; the other hook path */
	receipt(q2, sizeof(q2), "delivered", "0", -5, "nonce-2");
	assert_int_equal(get(d, "/webhooks/vonage/inbound", q2, &r), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_int_equal(h_count(d, "sms_callback_log"), 2);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_callback_log WHERE duplicate=1"),
	                 1);

	/* a late intermediate receipt is stored but does not move the summary */
	receipt(late, sizeof(late), "accepted", "0", 0, "nonce-3");
	assert_int_equal(get(d, "/webhooks/vonage/status", late, &r), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 2);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT status||'|'||changed_summary FROM sms_message_events"
	                              " WHERE raw_status='accepted'"),
	                    "sent|0");
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT current_status FROM sms_messages"), "delivered");
	assert_int_equal(h_count(d, "review_queue"), 0);
}

static void test_post_form_and_json(void **state)
{
	struct dlrd *d = *state;
	char body[4096], sig[65], ts[32], buf[256];
	const char *form_hdr[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
	const char *json_hdr[] = {"Content-Type: application/json", NULL};
	struct h_resp r;

	receipt(body, sizeof(body), "rejected", "6", 0, "n-form");
	assert_int_equal(
	    h_request(d, "POST", "/webhooks/vonage/status", form_hdr, body, strlen(body), &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT status||'|'||error_code||'|'||error_reason FROM sms_message_events"),
	    "rejected|6|carrier_filtered");

	util_fmt(ts, sizeof(ts), "%lld", (long long)time(NULL));
	struct kv kv[] = {
	    {"messageId", "0C00000000000001"}, {"status", "expired"}, {"err-code", "1"},
	    {"msisdn", "14155550123"},         {"timestamp", ts},     {"nonce", "n-json"}};
	vsign(kv, ARRAY_LEN(kv), sig);
	util_fmt(body, sizeof(body),
	         "{\"messageId\":\"0C00000000000001\",\"status\":\"expired\",\"err-code\":\"1\","
	         "\"msisdn\":\"14155550123\",\"timestamp\":\"%s\",\"nonce\":\"n-json\","
	         "\"sig\":\"%s\"}",
	         ts, sig);
	assert_int_equal(
	    h_request(d, "POST", "/webhooks/vonage/status", json_hdr, body, strlen(body), &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT current_status||'|'||destination_country FROM "
	                              "sms_messages WHERE provider_message_id='0c00000000000001'"),
	                    "expired|US");
	assert_string_equal(h_payload_str(d, buf, sizeof(buf),
	                                  "SELECT raw_payload FROM sms_message_events WHERE "
	                                  "raw_status='expired'"),
	                    body);
}

static void test_rejected_write_nothing(void **state)
{
	struct dlrd *d = *state;
	char q[4096], bad[4096];
	struct h_resp r;

	receipt(q, sizeof(q), "delivered", "0", 0, "n");
	/* forged: last hex digit changed */
	util_strlcpy(bad, q, sizeof(bad));
	bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == '0' ? '1' : '0';
	assert_int_equal(get(d, "/webhooks/vonage/status", bad, &r), 401);
	/* unsigned */
	util_strlcpy(bad, q, sizeof(bad));
	*strstr(bad, "&sig=") = '\0';
	assert_int_equal(get(d, "/webhooks/vonage/status", bad, &r), 401);
	/* tampered after signing */
	util_strlcpy(bad, q, sizeof(bad));
	memcpy(strstr(bad, "status=delivered"), "status=deliverex", 16);
	assert_int_equal(get(d, "/webhooks/vonage/status", bad, &r), 401);
	/* signed more than 73 hours ago / in the future (a retry repeats the
	 * first attempt's timestamp, and receipts are retried for 72 hours) */
	receipt(bad, sizeof(bad), "delivered", "0", -262860, "n");
	assert_int_equal(get(d, "/webhooks/vonage/status", bad, &r), 401);
	receipt(bad, sizeof(bad), "delivered", "0", 262860, "n");
	assert_int_equal(get(d, "/webhooks/vonage/status", bad, &r), 401);
	/* unsupported method and media type */
	h_request(d, "POST", "/webhooks/vonage/status",
	          (const char *const[]){"Content-Type: text/plain", NULL}, q, strlen(q), &r);
	assert_int_equal(r.status, 415);
	assert_int_equal(h_count_data(d), 0);
	assert_int_equal(h_count(d, "sms_inbound_messages"), 0);
	assert_int_equal(h_metric(d, "dlrd_callbacks_total{provider=\"vonage\","
	                             "outcome=\"unauthorized\"}"),
	                 5);
}

static void test_inbound_stop(void **state)
{
	struct dlrd *d = *state;
	char body[4096], buf[512];
	const char *hdr[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
	struct kv kv[] = {
	    {"msisdn", "447700900123"},
	    {"to", "447700900000"},
	    {"messageId", "0A0000000123ABCD"},
	    {"text", "Stop"},
	    {"type", "text"},
	    {"keyword", "STOP"},
	    {"api-key", "abcd1234"},
	    {"message-timestamp", "2020-01-01 12:00:00"},
	};
	struct h_resp r;

	signed_form(kv, ARRAY_LEN(kv), 0, "n-in", body, sizeof(body));
	assert_int_equal(
	    h_request(d, "POST", "/webhooks/vonage/inbound", hdr, body, strlen(body), &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider_message_id||'|'||body||'|'||keyword||'|'||"
	              "to_identity||'|'||sender_country||'|'||"
	              "coalesce(provider_occurred_at,'-') FROM sms_inbound_messages"),
	    "0a0000000123abcd|Stop|opt_out|447700900000|GB|2020-01-01T12:00:00.000Z");
	assert_int_equal(h_sql_int(d, "SELECT opted_out FROM sms_opt_outs WHERE "
	                              "sender_identity='447700900000'"),
	                 1);
	assert_int_equal(h_count(d, "sms_message_events"), 0);
	/* the same message again (Vonage retried it) is a duplicate */
	signed_form(kv, ARRAY_LEN(kv), 0, "n-in-2", body, sizeof(body));
	assert_int_equal(
	    h_request(d, "POST", "/webhooks/vonage/status", hdr, body, strlen(body), &r), 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(h_count(d, "sms_inbound_messages"), 1);
	assert_int_equal(h_sql_int(d, "SELECT retry_count FROM sms_inbound_messages"), 1);
}

/* The reviewer's reproduction: Vonage reports the STOP as sent to
 * "447520650000"; the app records sends from "+447520650000".  One sender,
 * so the send is refused (409), however it is written, and START lifts it;
 * the inbound row keeps the number as Vonage wrote it. */
static void vonage_inbound(struct dlrd *d, const char *id, const char *text, const char *nonce)
{
	char body[4096];
	const char *hdr[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
	struct kv kv[] = {
	    {"msisdn", "447700900555"}, {"to", "447520650000"},  {"messageId", id}, {"text", text},
	    {"type", "text"},           {"api-key", "abcd1234"},
	};
	struct h_resp r;

	signed_form(kv, ARRAY_LEN(kv), 0, nonce, body, sizeof(body));
	assert_int_equal(
	    h_request(d, "POST", "/webhooks/vonage/inbound", hdr, body, strlen(body), &r), 0);
	assert_int_equal(r.status, 200);
}

static long send_from(struct dlrd *d, const char *key, const char *sender, struct h_resp *r)
{
	char body[512];
	util_fmt(body, sizeof(body),
	         "{\"to\":\"+447700900555\",\"provider\":\"vonage\",\"use_case\":\"otp\","
	         "\"template_key\":\"login_code\",\"sender_identity\":\"%s\","
	         "\"action\":{\"type\":\"login\",\"id\":\"u-1\"}}",
	         sender);
	return api_send(d, T_APP, key, body, r);
}

static void test_stop_refuses_send_however_written(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[128];

	vonage_inbound(d, "0A00000000000001", "STOP", "n-stop");
	assert_string_equal(h_sql_str(d, buf, sizeof(buf),
	                              "SELECT sender_identity||'|'||opted_out FROM sms_opt_outs"),
	                    "447520650000|1");
	assert_int_equal(send_from(d, "s-1", "+447520650000", &r), 409);
	json_t *j = api_json(&r);
	assert_string_equal(jpath_s(j, "error.code"), "recipient_opted_out");
	json_decref(j);
	assert_int_equal(send_from(d, "s-2", "447520650000", &r), 409);
	assert_int_equal(send_from(d, "s-3", "+44 7520 650000", &r), 409);
	assert_int_equal(h_count(d, "sms_messages"), 0);
	/* another of our numbers is not affected; its sender shows as given */
	assert_int_equal(send_from(d, "s-4", "+44 7520 650001", &r), 201);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT sender_identity FROM sms_messages"),
	    "+44 7520 650001");
	/* START opts back in */
	vonage_inbound(d, "0A00000000000002", "START", "n-start");
	assert_int_equal(send_from(d, "s-1", "+447520650000", &r), 201);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_inbound_messages WHERE"
	                              " to_identity = '447520650000'"),
	                 2);
}

/* Vonage delivers a long (concatenated) inbound SMS as one webhook per part
 * (concat, concat-ref, concat-total, concat-part).  A part is not the whole
 * message, so it is never a keyword, even when it happens to be one word:
 * here a user who opted out writes a two-part message whose second part,
 * split by the handset after 153 characters, is "yes".  Read as the whole
 * message that part opted the user back in, and the app could text them
 * again.  Both parts are stored, as parts. */
static void vonage_part(struct dlrd *d, const char *id, const char *text, const char *part,
                        const char *nonce)
{
	char body[4096];
	const char *hdr[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
	struct kv kv[] = {
	    {"msisdn", "447700900555"}, {"to", "447520650000"},
	    {"messageId", id},          {"text", text},
	    {"type", "text"},           {"api-key", "abcd1234"},
	    {"concat", "true"},         {"concat-ref", "108"},
	    {"concat-total", "2"},      {"concat-part", part},
	};
	struct h_resp r;

	signed_form(kv, ARRAY_LEN(kv), 0, nonce, body, sizeof(body));
	assert_int_equal(
	    h_request(d, "POST", "/webhooks/vonage/inbound", hdr, body, strlen(body), &r), 0);
	assert_int_equal(r.status, 200);
}

static void test_multipart_part_is_no_keyword(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char part1[160];

	vonage_inbound(d, "0A00000000000011", "STOP", "n-stop");
	assert_int_equal(send_from(d, "m-1", "+447520650000", &r), 409);
	/* 153 characters, the first part of a concatenated GSM-7 SMS */
	memset(part1, 'x', 153);
	memcpy(part1, "I asked you to stop. Did I ever say ", 36);
	part1[152] = ' ';
	part1[153] = '\0';
	vonage_part(d, "0A00000000000012", part1, "1", "n-p1");
	vonage_part(d, "0A00000000000013", "yes", "2", "n-p2");
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_inbound_messages WHERE"
	                              " keyword = 'none'"),
	                 2);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_inbound_messages WHERE"
	                              " body = 'yes'"),
	                 1);
	assert_int_equal(h_sql_int(d, "SELECT opted_out FROM sms_opt_outs"), 1);
	assert_int_equal(h_count(d, "sms_opt_out_history"), 1);
	assert_int_equal(send_from(d, "m-2", "+447520650000", &r), 409);
	/* a one-part message (concat-total 1) is whole: START still opts in */
	vonage_inbound(d, "0A00000000000014", "START", "n-start");
	assert_int_equal(send_from(d, "m-3", "+447520650000", &r), 201);
}

/* An inbound message from the user of vonage_inbound(), whose webhook Vonage
 * began to push ago_s seconds ago (message-timestamp, which every retry of
 * it repeats). */
static void vonage_inbound_at(struct dlrd *d, const char *id, const char *text, long ago_s,
                              const char *nonce)
{
	char body[4096], mts[32];
	const char *hdr[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
	time_t t = time(NULL) - ago_s;
	struct tm tm;
	struct h_resp r;

	gmtime_r(&t, &tm);
	strftime(mts, sizeof(mts), "%Y-%m-%d %H:%M:%S", &tm);
	struct kv kv[] = {
	    {"msisdn", "447700900555"}, {"to", "447520650000"},
	    {"messageId", id},          {"text", text},
	    {"type", "text"},           {"api-key", "abcd1234"},
	    {"message-timestamp", mts},
	};
	signed_form(kv, ARRAY_LEN(kv), 0, nonce, body, sizeof(body));
	assert_int_equal(
	    h_request(d, "POST", "/webhooks/vonage/inbound", hdr, body, strlen(body), &r), 0);
	assert_int_equal(r.status, 200);
}

/* Vonage retries an inbound message every minute for 24 h until dlrd
 * answers 2xx, repeating the first attempt's message-timestamp.  The user
 * texts STOP, then START; the STOP's first push fails (a restart, a full
 * queue) and its retry lands after the START.  The user's last word is
 * START, so the state is opted in: the opt-out is ordered by when Vonage
 * got the messages (message-timestamp), not by when a retry happened to
 * get through.  Before, Vonage inbound messages had no time, the retried
 * STOP took its receipt time, won, and the user stayed opted out (the
 * reverse order, START retried after a STOP, texted a user who had said
 * STOP). */
static void test_inbound_retry_ordered_by_vonage_time(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[64];

	vonage_inbound_at(d, "0A00000000000021", "START", 60, "n-start");
	vonage_inbound_at(d, "0A00000000000020", "STOP", 120, "n-stop-retry");
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf), "SELECT opted_out||'|'||keyword FROM sms_opt_outs"),
	    "0|START");
	assert_int_equal(h_count(d, "sms_opt_out_history"), 2);
	assert_int_equal(send_from(d, "r-1", "+447520650000", &r), 201);
	/* and the other way round: START retried after a later STOP */
	vonage_inbound_at(d, "0A00000000000023", "STOP", 20, "n-stop2");
	vonage_inbound_at(d, "0A00000000000022", "START", 40, "n-start2-retry");
	assert_int_equal(h_sql_int(d, "SELECT opted_out FROM sms_opt_outs"), 1);
	assert_int_equal(send_from(d, "r-2", "+447520650000", &r), 409);
}

/* A provider clock ahead of ours: a STOP stamped an hour in the future
 * must not outrank the START the user sends after it.  An inbound time
 * later than its receipt is taken as the receipt time (http.c). */
static void test_inbound_time_ahead_of_receipt(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;

	vonage_inbound_at(d, "0A00000000000030", "STOP", -3600, "n-stop-ahead");
	assert_int_equal(h_sql_int(d, "SELECT opted_out FROM sms_opt_outs"), 1);
	/* stamped 2 s ahead as well (the same skew): both are taken at their
	 * receipt, so the later receipt wins */
	vonage_inbound_at(d, "0A00000000000031", "START", -2, "n-start-now");
	assert_int_equal(h_sql_int(d, "SELECT opted_out FROM sms_opt_outs"), 0);
	assert_int_equal(send_from(d, "r-3", "+447520650000", &r), 201);
}

static void test_unconfigured_404(void **state)
{
	struct dlrd d;
	struct h_resp r;

	(void)state;
	assert_int_equal(h_setup(&d, NULL), 0);
	assert_int_equal(h_start(&d), 0);
	assert_int_equal(h_get(&d, "/webhooks/vonage/status?messageId=1", &r), 404);
	assert_int_equal(h_get(&d, "/webhooks/vonage/inbound?messageId=1", &r), 404);
	h_teardown(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_receipt_retry_and_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_post_form_and_json, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rejected_write_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound_stop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_refuses_send_however_written, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_multipart_part_is_no_keyword, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound_retry_ordered_by_vonage_time, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_inbound_time_ahead_of_receipt, setup, teardown),
	    cmocka_unit_test(test_unconfigured_404),
	};
	return cmocka_run_group_tests_name("integration/provider_vonage", tests, NULL, NULL);
}
