/* SPDX-License-Identifier: MIT */
/*
 * Integration: recording sends (POST /v1/messages) and setting provider ids
 * (PATCH).  The exact 201 answer and stored row (hash = HMAC of the E.164
 * number computed independently, number encrypted and masked, never in
 * clear); every invalid input answers 400/422 naming the field and writes
 * nothing (a destination_country no country has, a spare calling code), a
 * 7-digit E.164 number (Niue, Tokelau) is taken; idempotency: same key and
 * body -> the same answer (replayed), same key and another body -> 409, the
 * key is per token, 8 concurrent requests with one key -> one message, a
 * key of other than printable ASCII -> 422 on both backends (PostgreSQL
 * answered 503 and failed its batch); a STOP from the recipient -> 409
 * recipient_opted_out (also when the app writes our number another way)
 * unless the use case is exempt; PATCH conflicts, and PATCH of a message
 * callbacks alone made; a provider message id with a space around it ->
 * 422; a send recorded before such a check refused it is still replayed
 * under its key; a Content-Length one byte over max_body_bytes -> 413
 * before any body is sent.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/hmac.h>

#include "api_helpers.h"
#include "crypto.h"
#include "dlrd_limits.h"
#include "privacy.h"

static int setup(void **state)
{
	const char *env[] = {api_tokens_env(), "DLRD_API_OPTOUT_EXEMPT_USE_CASES=security_alert",
	                     NULL};
	return h_fixture_start(state, env);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

static void expected_hash(const char *e164, char out[65])
{
	unsigned char md[32];
	unsigned int len = sizeof(md);
	HMAC(EVP_sha256(), H_HASH_KEY, (int)strlen(H_HASH_KEY), (const unsigned char *)e164,
	     strlen(e164), md, &len);
	for (unsigned i = 0; i < 32; i++)
		util_fmt(out + 2 * i, 3, "%02x", md[i]);
}

static void test_record_send(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char body[1024], buf[1024], hash[65];

	api_send_body(body, sizeof(body), N_TO, NULL, "otp", "Europe/Berlin");
	assert_int_equal(api_send(d, T_APP, "k-1", body, &r), 201);
	json_t *j = api_json(&r);
	const char *id = jpath_s(j, "id");
	assert_int_equal(strlen(id), 36);
	assert_int_equal(id[14], '7'); /* UUIDv7 */
	assert_string_equal(jpath_s(j, "origin"), "send");
	assert_string_equal(jpath_s(j, "provider"), "twilio");
	assert_true(json_is_null(jpath(j, "provider_message_id")));
	assert_string_equal(jpath_s(j, "status"), "accepted");
	assert_true(json_is_false(jpath(j, "is_final")));
	assert_string_equal(jpath_s(j, "recipient"), "+1********23");
	assert_string_equal(jpath_s(j, "destination_country"), "US");
	assert_true(json_is_false(jpath(j, "joined_callbacks")));
	assert_null(strstr(r.body, N_TO_DIGITS));

	/* the row */
	expected_hash(N_TO, hash);
	h_sql_str(d, buf, sizeof(buf),
	          "SELECT provider||'|'||coalesce(provider_message_id,'-')||'|'||origin||'|'||"
	          "current_status||'|'||is_final||'|'||status_mask||'|'||event_count||'|'||"
	          "recipient_hash||'|'||recipient_masked||'|'||destination_country||'|'||"
	          "country_source||'|'||sender_identity||'|'||template_key||'|'||use_case||'|'||"
	          "action_type||'|'||action_id||'|'||metadata||'|'||recipient_timezone||'|'||"
	          "recipient_key_id||'|'||length(recipient_enc)||'|'||(sent_recorded_at ="
	          " created_at)||'|'||length(recorded_by) FROM sms_messages WHERE id = %Q",
	          id);
	char want[1024];
	util_fmt(want, sizeof(want),
	         "twilio|-|send|accepted|0|0|0|%s|+1********23|US|number|" N_SENDER
	         "|login_code|otp|login|user-42|{\"attempt\":1,\"locale\":\"en-US\"}|Europe/Berlin|"
	         "k1|%d|1|12",
	         hash, 12 + 28);
	assert_string_equal(buf, want);
	/* nowhere in the database in clear, in any table */
	assert_int_equal(
	    h_sql_int(d,
	              "SELECT count(*) FROM sms_messages WHERE instr(CAST("
	              "recipient_enc AS TEXT), %Q) > 0 OR instr(coalesce(metadata,''), %Q) > 0",
	              N_TO_DIGITS, N_TO_DIGITS),
	    0);
	assert_int_equal(h_sql_int(d,
	                           "SELECT count(*) FROM api_idempotency WHERE instr(body, %Q) > 0",
	                           N_TO_DIGITS),
	                 0);
	/* the idempotency row keeps the answer, scoped to the token's hash */
	assert_int_equal(h_sql_int(d,
	                           "SELECT count(*) FROM api_idempotency WHERE idem_key = 'k-1'"
	                           " AND message_id = %Q AND status = 201 AND length(token_hash) ="
	                           " 64",
	                           id),
	                 1);
	/* Location names the message */
	json_decref(j);
}

static void test_validation(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char code[64];
	static const char *const base_fields =
	    "\"provider\":\"twilio\",\"use_case\":\"otp\",\"template_key\":\"t\","
	    "\"sender_identity\":\"ACME\",\"action\":{\"type\":\"login\"}";
	static const struct {
		const char *body; /* %s: the common fields */
		long status;
		const char *code;
		const char *field;
	} cases[] = {
	    {"not json", 400, "invalid_json", NULL},
	    {"[1,2]", 400, "invalid_json", NULL},
	    {"{\"to\":\"+14155550123\",%s,\"to\":\"+1\"}", 400, "invalid_json", NULL},
	    {"{%s}", 422, "missing_field", "to"},
	    {"{\"to\":\"4155550123\",%s}", 422, "invalid_phone_number", "to"},
	    {"{\"to\":\"+1 415 555 0123\",%s}", 422, "invalid_phone_number", "to"},
	    {"{\"to\":\"+04155550123\",%s}", 422, "invalid_phone_number", "to"},
	    {"{\"to\":\"+1415555012345678\",%s}", 422, "invalid_phone_number", "to"},
	    {"{\"to\":14155550123,%s}", 422, "invalid_phone_number", "to"},
	    {"{\"to\":\"+14155550123\",\"provider\":\"carrier-pigeon\",\"use_case\":\"otp\","
	     "\"template_key\":\"t\",\"sender_identity\":\"A\",\"action\":{\"type\":\"x\"}}",
	     422, "unknown_provider", "provider"},
	    {"{\"to\":\"+14155550123\",\"provider\":\"twilio\",\"template_key\":\"t\","
	     "\"sender_identity\":\"A\",\"action\":{\"type\":\"x\"}}",
	     422, "missing_field", "use_case"},
	    {"{\"to\":\"+14155550123\",%s,\"destination_country\":\"USA\"}", 422, "too_long",
	     "destination_country"},
	    {"{\"to\":\"+14155550123\",%s,\"destination_country\":\"1A\"}", 422, "invalid_country",
	     "destination_country"},
	    {"{\"to\":\"+14155550123\",%s,\"recipient_timezone\":\"Mars/Base\"}", 422,
	     "unknown_time_zone", "recipient_timezone"},
	    {"{\"to\":\"+14155550123\",%s,\"recipient_timezone\":\"../../etc/passwd\"}", 422,
	     "unknown_time_zone", "recipient_timezone"},
	    /* files of the zone folder that name no zone: the server's own
	     * zone, and the default rules of POSIX TZ strings */
	    {"{\"to\":\"+14155550123\",%s,\"recipient_timezone\":\"localtime\"}", 422,
	     "unknown_time_zone", "recipient_timezone"},
	    {"{\"to\":\"+14155550123\",%s,\"recipient_timezone\":\"posixrules\"}", 422,
	     "unknown_time_zone", "recipient_timezone"},
	    {"{\"to\":\"+14155550123\",%s,\"metadata\":[1]}", 422, "invalid_field", "metadata"},
	    {"{\"to\":\"+14155550123\",%s,\"colour\":\"red\"}", 422, "unknown_field", "colour"},
	    {"{\"to\":\"+14155550123\",%s,\"provider_message_id\":\"\"}", 422, "invalid_field",
	     "provider_message_id"},
	    {"{\"to\":\"+14155550123\",\"provider\":\"twilio\",\"use_case\":\"otp\","
	     "\"template_key\":\"t\",\"sender_identity\":\"A\",\"action\":{\"id\":\"1\"}}",
	     422, "missing_field", "action.type"},
	    {"{\"to\":\"+14155550123\",\"provider\":\"twilio\",\"use_case\":\"o t p\","
	     "\"template_key\":\"t\",\"sender_identity\":\"A\",\"action\":{\"type\":\"x\"}}",
	     422, "invalid_field", "use_case"},
	};
	char body[8192];

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char key[32];
		/* the pattern holds at most one %s, for the common fields */
		const char *hole = strstr(cases[i].body, "%s");
		if (hole)
			util_fmt(body, sizeof(body), "%.*s%s%s", (int)(hole - cases[i].body),
			         cases[i].body, base_fields, hole + 2);
		else
			util_strlcpy(body, cases[i].body, sizeof(body));
		util_fmt(key, sizeof(key), "v-%zu", i);
		long st = api_send(d, T_APP, key, body, &r);
		if (st != cases[i].status)
			fail_msg("case %zu: %ld, want %ld: %s", i, st, cases[i].status, r.body);
		assert_string_equal(api_error_code(&r, code, sizeof(code)), cases[i].code);
		json_t *j = api_json(&r);
		if (cases[i].field)
			assert_string_equal(jpath_s(j, "error.field"), cases[i].field);
		assert_true(strlen(jpath_s(j, "error.message")) > 0);
		json_decref(j);
		/* an error never quotes the number */
		assert_null(strstr(r.body, "415555"));
	}
	/* too long: a field, and metadata over 4 KiB */
	char big[300];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	util_fmt(body, sizeof(body), "{\"to\":\"+14155550123\",%s,\"provider_message_id\":\"%s\"}",
	         base_fields, big);
	assert_int_equal(api_send(d, T_APP, "v-long", body, &r), 422);
	assert_string_equal(api_error_code(&r, code, sizeof(code)), "too_long");
	char meta[5000];
	memset(meta, 'm', sizeof(meta) - 1);
	meta[sizeof(meta) - 1] = '\0';
	util_fmt(body, sizeof(body), "{\"to\":\"+14155550123\",%s,\"metadata\":{\"m\":\"%s\"}}",
	         base_fields, meta);
	assert_int_equal(api_send(d, T_APP, "v-meta", body, &r), 422);
	json_t *j = api_json(&r);
	assert_string_equal(jpath_s(j, "error.code"), "too_long");
	assert_string_equal(jpath_s(j, "error.field"), "metadata");
	json_decref(j);
	/* no Idempotency-Key; not JSON content type */
	util_fmt(body, sizeof(body), "{\"to\":\"+14155550123\",%s}", base_fields);
	assert_int_equal(api_call(d, "POST", "/v1/messages", T_APP, body, NULL, &r), 400);
	assert_string_equal(api_error_code(&r, code, sizeof(code)), "idempotency_key_required");
	const char *form[] = {"Idempotency-Key: v-ct", "Content-Type: text/plain", NULL};
	h_request(d, "POST", "/v1/messages",
	          (const char *[]){"Authorization: Bearer " T_APP, form[0], form[1], NULL}, body,
	          strlen(body), &r);
	assert_int_equal(r.status, 415);
	/* nothing was written by any of it */
	assert_int_equal(h_count(d, "sms_messages"), 0);
	assert_int_equal(h_count(d, "api_idempotency"), 0);
	/* a refused request may be fixed and retried with its key */
	assert_int_equal(api_send(d, T_APP, "v-4", body, &r), 201);
	/* the most values metadata can hold is accepted; a body of more JSON
	 * values than any request needs is refused before jansson builds
	 * them (64 KB of [1,1,...] would cost it 7 ms) */
	{
		char many[6000];
		/* "1,1,...,1": k values in 2k - 1 bytes */
		for (size_t i = 0; i < sizeof(many); i++)
			many[i] = i % 2 ? ',' : '1';
		many[2 * 2044 - 1] = '\0'; /* {"m":[...]} of 4095 bytes */
		util_fmt(body, sizeof(body),
		         "{\"to\":\"+14155550123\",%s,\"metadata\":{\"m\":[%s]}}", base_fields,
		         many);
		assert_int_equal(api_send(d, T_APP, "v-values", body, &r), 201);
		/* and so are the most bytes that count as values: "[]," is
		 * two of them in three bytes */
		char arrs[4200];
		size_t at = 0;
		for (size_t i = 0; i < 1362; i++)
			at += util_fmt(arrs + at, sizeof(arrs) - at, "%s[]", i ? "," : "");
		util_fmt(body, sizeof(body),
		         "{\"to\":\"+14155550123\",%s,\"metadata\":{\"m\":[%s]}}", base_fields,
		         arrs);
		assert_int_equal(api_send(d, T_APP, "v-values3", body, &r), 201);
		many[2 * 2044 - 1] = ',';
		many[2 * 2999 - 1] = '\0';
		util_fmt(body, sizeof(body), "{\"to\":\"+14155550123\",%s,\"x\":[%s]}", base_fields,
		         many);
		assert_int_equal(api_send(d, T_APP, "v-values2", body, &r), 400);
		j = api_json(&r);
		assert_string_equal(jpath_s(j, "error.code"), "invalid_json");
		assert_string_equal(jpath_s(j, "error.message"),
		                    "the body holds too many JSON values");
		json_decref(j);
	}
}

/* destination_country must be a country: an ISO 3166-1 alpha-2 code that
 * is assigned (or one dlrd itself derives from numbers, such as XK), not any
 * two letters.  "UK" (GB's common misspelling) or "ZZ" stored as a country
 * would split per-country stats and searches silently. */
static void test_country_code(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char body[1024], code[64];
	static const char *const bad[] = {"UK", "ZZ", "uk", "AA", "EU", "XX"};
	static const struct {
		const char *given, *stored;
	} good[] = {{"gb", "GB"}, {"US", "US"}, {"XK", "XK"}, {"AQ", "AQ"}, {"zw", "ZW"}};

	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		char key[16];
		util_fmt(body, sizeof(body),
		         "{\"to\":\"" N_TO "\",\"provider\":\"twilio\",\"use_case\":\"otp\","
		         "\"template_key\":\"t\",\"sender_identity\":\"ACME\","
		         "\"action\":{\"type\":\"login\"},\"destination_country\":\"%s\"}",
		         bad[i]);
		util_fmt(key, sizeof(key), "cc-bad-%zu", i);
		long st = api_send(d, T_APP, key, body, &r);
		if (st != 422)
			fail_msg("destination_country %s: %ld, want 422", bad[i], st);
		assert_string_equal(api_error_code(&r, code, sizeof(code)), "invalid_country");
	}
	assert_int_equal(h_count(d, "sms_messages"), 0);
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		char key[16], buf[8];
		util_fmt(body, sizeof(body),
		         "{\"to\":\"" N_TO "\",\"provider\":\"twilio\",\"use_case\":\"otp\","
		         "\"template_key\":\"t\",\"sender_identity\":\"ACME\","
		         "\"action\":{\"type\":\"login\"},\"destination_country\":\"%s\"}",
		         good[i].given);
		util_fmt(key, sizeof(key), "cc-good-%zu", i);
		assert_int_equal(api_send(d, T_APP, key, body, &r), 201);
		json_t *j = api_json(&r);
		assert_string_equal(jpath_s(j, "destination_country"), good[i].stored);
		assert_string_equal(h_sql_str(d, buf, sizeof(buf),
		                              "SELECT destination_country FROM sms_messages WHERE"
		                              " id = %Q",
		                              jpath_s(j, "id")),
		                    good[i].stored);
		json_decref(j);
	}
}

/* The shortest E.164 numbers have 7 digits (Niue +683 and Tokelau +690
 * have 4-digit national numbers, mobiles among them): a send to one is
 * recorded like any other, with its country from the number, as callbacks
 * for it are; 6 digits is no E.164 number. */
static void test_short_numbers(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char body[1024], code[64];
	static const struct {
		const char *to, *country, *masked;
	} good[] = {{"+6835123", "NU", "+683****"}, {"+6907290", "TK", "+690****"}};

	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		char key[16];
		api_send_body(body, sizeof(body), good[i].to, NULL, "otp", NULL);
		util_fmt(key, sizeof(key), "short-%zu", i);
		long st = api_send(d, T_APP, key, body, &r);
		if (st != 201)
			fail_msg("%s: %ld, want 201: %s", good[i].to, st, r.body);
		json_t *j = api_json(&r);
		assert_string_equal(jpath_s(j, "destination_country"), good[i].country);
		assert_string_equal(jpath_s(j, "recipient"), good[i].masked);
		json_decref(j);
	}
	api_send_body(body, sizeof(body), "+683512", NULL, "otp", NULL);
	assert_int_equal(api_send(d, T_APP, "short-6", body, &r), 422);
	assert_string_equal(api_error_code(&r, code, sizeof(code)), "invalid_phone_number");
	assert_int_equal(h_count(d, "sms_messages"), ARRAY_LEN(good));
}

/* A number whose calling code ITU never assigned (+28x, +83x, +89x, +990,
 * +999: spare) is no E.164 number: recording it would keep a message no
 * callback can belong to, with neither a country nor a usable mask.  The
 * non-geographic codes (+800, +882, +979 ...) are assigned and taken. */
static void test_unassigned_calling_code(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char body[1024], code[64];
	static const char *const bad[] = {"+2812345678", "+8351234567", "+8991234567",
	                                  "+9901234567", "+9991234567"};
	static const char *const good[] = {"+80012345678", "+882345678901", "+97912345678"};

	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		char key[16];
		api_send_body(body, sizeof(body), bad[i], NULL, "otp", NULL);
		util_fmt(key, sizeof(key), "cc-spare-%zu", i);
		long st = api_send(d, T_APP, key, body, &r);
		if (st != 422)
			fail_msg("%s: %ld, want 422", bad[i], st);
		assert_string_equal(api_error_code(&r, code, sizeof(code)), "invalid_phone_number");
		assert_null(strstr(r.body, bad[i] + 4)); /* never echoed */
	}
	assert_int_equal(h_count(d, "sms_messages"), 0);
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		char key[16];
		api_send_body(body, sizeof(body), good[i], NULL, "otp", NULL);
		util_fmt(key, sizeof(key), "cc-ng-%zu", i);
		assert_int_equal(api_send(d, T_APP, key, body, &r), 201);
	}
}

static void test_idempotency(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r1, r2;
	char body[1024], other[1024], reordered[1024], code[64];

	api_send_body(body, sizeof(body), N_TO, NULL, "otp", NULL);
	assert_int_equal(api_send(d, T_APP, "same-key", body, &r1), 201);
	assert_string_equal(r1.replayed, "");
	/* same key, same body: the first answer, byte for byte, and its
	 * Location, marked Idempotent-Replayed: true (README, openapi.json) */
	assert_int_equal(api_send(d, T_APP, "same-key", body, &r2), 201);
	assert_int_equal(r1.body_len, r2.body_len);
	assert_memory_equal(r1.body, r2.body, r1.body_len);
	assert_true(strncmp(r1.location, "/v1/messages/", 13) == 0);
	assert_string_equal(r2.location, r1.location);
	assert_string_equal(r2.replayed, "true");
	/* the same request written differently (order, spaces) is the same */
	util_fmt(reordered, sizeof(reordered),
	         "{ \"metadata\": {\"locale\":\"en-US\", \"attempt\":1}, \"provider\":\"twilio\","
	         " \"to\":\"" N_TO "\", \"use_case\":\"otp\", \"template_key\":\"login_code\","
	         " \"sender_identity\":\"" N_SENDER "\", \"action\":{\"id\":\"user-42\","
	         " \"type\":\"login\"} }");
	assert_int_equal(api_send(d, T_APP, "same-key", reordered, &r2), 201);
	assert_memory_equal(r1.body, r2.body, r1.body_len);
	/* same key, another body: 409 */
	api_send_body(other, sizeof(other), "+447700900123", NULL, "otp", NULL);
	assert_int_equal(api_send(d, T_APP, "same-key", other, &r2), 409);
	assert_string_equal(api_error_code(&r2, code, sizeof(code)), "idempotency_key_reused");
	/* the key belongs to the token: another app token makes its own */
	assert_int_equal(api_send(d, T_APP2, "same-key", body, &r2), 201);
	json_t *a = api_json(&r1), *b = api_json(&r2);
	assert_string_not_equal(jpath_s(a, "id"), jpath_s(b, "id"));
	json_decref(a);
	json_decref(b);
	assert_int_equal(h_count(d, "sms_messages"), 2);
	assert_int_equal(h_count(d, "api_idempotency"), 2);
}

/* An Idempotency-Key is a Structured Field string (printable ASCII): a key
 * with other bytes is refused by both backends alike, and never reaches a
 * batch (PostgreSQL rejects text that is not UTF-8, which would fail the
 * whole batch and every request in it). */
static void test_idempotency_key_bytes(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char body[1024], code[64];

	api_send_body(body, sizeof(body), N_TO, NULL, "otp", NULL);
	assert_int_equal(api_send(d, T_APP, "k-\xff\xfe", body, &r), 422);
	assert_string_equal(api_error_code(&r, code, sizeof(code)), "invalid_idempotency_key");
	assert_int_equal(api_send(d, T_APP, "k-\xc3\xa9", body, &r), 422);
	assert_int_equal(h_count(d, "sms_messages"), 0);
	assert_int_equal(h_count(d, "api_idempotency"), 0);
	/* the storage stayed healthy: a valid key goes through */
	assert_int_equal(api_send(d, T_APP, "k-ascii", body, &r), 201);
}

struct racer {
	struct dlrd *d;
	const char *body;
	struct h_resp r;
};

static void *race(void *arg)
{
	struct racer *x = arg;
	api_send(x->d, T_APP, "race-key", x->body, &x->r);
	return NULL;
}

static void test_concurrent_same_key(void **state)
{
	struct dlrd *d = *state;
	char body[1024];
	struct racer *x = calloc(8, sizeof(*x));
	pthread_t th[8];

	api_send_body(body, sizeof(body), N_TO, NULL, "otp", NULL);
	for (int i = 0; i < 8; i++) {
		x[i].d = d;
		x[i].body = body;
		assert_int_equal(pthread_create(&th[i], NULL, race, &x[i]), 0);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(x[i].r.status, 201);
		assert_memory_equal(x[i].r.body, x[0].r.body, x[0].r.body_len);
	}
	assert_int_equal(h_count(d, "sms_messages"), 1);
	assert_int_equal(h_count(d, "api_idempotency"), 1);
	free(x);
}

static void post_stop(struct dlrd *d, const char *from, const char *text, unsigned n)
{
	char form[512], sid[35];
	struct h_resp r;
	h_sid(sid, 900, n);
	util_fmt(form, sizeof(form),
	         "MessageSid=%s&AccountSid=AC0123456789abcdef0123456789abcdef"
	         "&From=%%2B%s&To=%%2B%s&Body=%s",
	         sid, from + 1, N_SENDER + 1, text);
	assert_int_equal(h_post_twilio(d, "/webhooks/twilio/inbound", H_TOKEN1, form, NULL, &r),
	                 200);
}

static void test_opted_out(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char body[1024], code[64];

	post_stop(d, N_TO, "STOP", 1);
	api_send_body(body, sizeof(body), N_TO, NULL, "otp", NULL);
	assert_int_equal(api_send(d, T_APP, "o-1", body, &r), 409);
	json_t *j = api_json(&r);
	assert_string_equal(jpath_s(j, "error.code"), "recipient_opted_out");
	assert_string_equal(jpath_s(j, "error.field"), "to");
	json_decref(j);
	assert_int_equal(h_count(d, "sms_messages"), 0);
	/* the same sender written without '+' or with separators: the same
	 * sender (Twilio wrote the STOP's To as +15017122661) */
	static const char *const spellings[] = {"15017122661", "+1 501-712-2661",
	                                        "(1) 501.712.2661"};
	for (size_t i = 0; i < ARRAY_LEN(spellings); i++) {
		char key[16];
		util_fmt(body, sizeof(body),
		         "{\"to\":\"" N_TO "\",\"provider\":\"twilio\",\"use_case\":\"otp\","
		         "\"template_key\":\"login_code\",\"sender_identity\":\"%s\","
		         "\"action\":{\"type\":\"login\",\"id\":\"user-42\"}}",
		         spellings[i]);
		util_fmt(key, sizeof(key), "o-s%zu", i);
		assert_int_equal(api_send(d, T_APP, key, body, &r), 409);
	}
	assert_int_equal(h_count(d, "sms_messages"), 0);
	/* an exempt use case goes through */
	api_send_body(body, sizeof(body), N_TO, NULL, "security_alert", NULL);
	assert_int_equal(api_send(d, T_APP, "o-2", body, &r), 201);
	/* another recipient is not affected */
	api_send_body(body, sizeof(body), "+14155550999", NULL, "otp", NULL);
	assert_int_equal(api_send(d, T_APP, "o-3", body, &r), 201);
	/* START opts back in; the refused key was not kept, so it works now */
	post_stop(d, N_TO, "START", 2);
	api_send_body(body, sizeof(body), N_TO, NULL, "otp", NULL);
	assert_int_equal(api_send(d, T_APP, "o-1", body, &r), 201);
	(void)code;
}

static void test_patch(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char body[1024], target[128], code[64], id1[40], id2[40];
	const char *sid = "SM0000000000000000000000000000abcd";

	api_send_body(body, sizeof(body), N_TO, NULL, "otp", NULL);
	assert_int_equal(api_send(d, T_APP, "p-1", body, &r), 201);
	json_t *j = api_json(&r);
	util_strlcpy(id1, jpath_s(j, "id"), sizeof(id1));
	json_decref(j);
	assert_int_equal(api_send(d, T_APP, "p-2", body, &r), 201);
	j = api_json(&r);
	util_strlcpy(id2, jpath_s(j, "id"), sizeof(id2));
	json_decref(j);

	util_fmt(target, sizeof(target), "/v1/messages/%s", id1);
	/* the SID in another case is canonicalized like the Twilio adapter does */
	assert_int_equal(
	    api_call(d, "PATCH", target, T_APP,
	             "{\"provider_message_id\":\"sm0000000000000000000000000000ABCD\"}", NULL, &r),
	    200);
	j = api_json(&r);
	assert_string_equal(jpath_s(j, "provider_message_id"), sid);
	assert_string_equal(jpath_s(j, "id"), id1);
	json_decref(j);
	/* again: a no-op */
	assert_int_equal(
	    api_call(d, "PATCH", target, T_APP,
	             "{\"provider_message_id\":\"SM0000000000000000000000000000abcd\"}", NULL, &r),
	    200);
	/* another id: 409 */
	assert_int_equal(
	    api_call(d, "PATCH", target, T_APP,
	             "{\"provider_message_id\":\"SM0000000000000000000000000000ffff\"}", NULL, &r),
	    409);
	assert_string_equal(api_error_code(&r, code, sizeof(code)),
	                    "provider_message_id_already_set");
	/* the id of another recorded send: 409 */
	util_fmt(target, sizeof(target), "/v1/messages/%s", id2);
	assert_int_equal(
	    api_call(d, "PATCH", target, T_APP,
	             "{\"provider_message_id\":\"SM0000000000000000000000000000ABCD\"}", NULL, &r),
	    409);
	assert_string_equal(api_error_code(&r, code, sizeof(code)), "provider_message_id_taken");
	/* a send recorded with that id: 409 too */
	api_send_body(body, sizeof(body), N_TO, sid, "otp", NULL);
	assert_int_equal(api_send(d, T_APP, "p-3", body, &r), 409);
	assert_string_equal(api_error_code(&r, code, sizeof(code)), "provider_message_id_taken");
	/* bad bodies, unknown message */
	assert_int_equal(api_call(d, "PATCH", target, T_APP, "{}", NULL, &r), 422);
	assert_int_equal(
	    api_call(d, "PATCH", target, T_APP, "{\"provider_message_id\":7}", NULL, &r), 422);
	assert_int_equal(api_call(d, "PATCH", "/v1/messages/01a21dbe-10c7-77c1-8add-78a55b904a2a",
	                          T_APP, "{\"provider_message_id\":\"x\"}", NULL, &r),
	                 404);
	assert_int_equal(h_sql_int(d,
	                           "SELECT count(*) FROM sms_messages WHERE provider_message_id"
	                           " = %Q",
	                           sid),
	                 1);
}

/* PATCH of a message that only callbacks made (found through search) with
 * its own provider id is a no-op whose answer names that origin. */
static void test_patch_callback_row(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char form[1024], sid[35], id[40], target[128], body[128];

	h_sid(sid, 0x77, 1);
	assert_true(h_twilio_body(form, sizeof(form), sid, "delivered", NULL) > 0);
	assert_int_equal(h_post_status(d, form, &r), 200);
	h_sql_str(d, id, sizeof(id), "SELECT id FROM sms_messages");
	util_fmt(target, sizeof(target), "/v1/messages/%s", id);
	util_fmt(body, sizeof(body), "{\"provider_message_id\":\"%s\"}", sid);
	assert_int_equal(api_call(d, "PATCH", target, T_APP, body, NULL, &r), 200);
	json_t *j = api_json(&r);
	assert_string_equal(jpath_s(j, "origin"), "callback");
	assert_string_equal(jpath_s(j, "status"), "delivered");
	json_decref(j);
	assert_int_equal(h_count(d, "sms_messages"), 1);
}

/* A provider message id with a space before or after it is an app's
 * mistake no provider's callback repeats: recorded, it would never join its
 * callbacks (they would make a message of their own), silently.  Both POST
 * and PATCH refuse it, naming the field. */
static void test_pmid_spaces(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char body[1024], target[128], code[64], id[40];
	static const char *const bad[] = {"SM0000000000000000000000000000abcd ",
	                                  " SM0000000000000000000000000000abcd", " "};

	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		char key[16];
		api_send_body(body, sizeof(body), N_TO, bad[i], "otp", NULL);
		util_fmt(key, sizeof(key), "sp-%zu", i);
		long st = api_send(d, T_APP, key, body, &r);
		if (st != 422)
			fail_msg("provider_message_id \"%s\": %ld, want 422", bad[i], st);
		json_t *j = api_json(&r);
		assert_string_equal(jpath_s(j, "error.code"), "invalid_field");
		assert_string_equal(jpath_s(j, "error.field"), "provider_message_id");
		json_decref(j);
	}
	assert_int_equal(h_count(d, "sms_messages"), 0);
	api_send_body(body, sizeof(body), N_TO, NULL, "otp", NULL);
	assert_int_equal(api_send(d, T_APP, "sp-ok", body, &r), 201);
	json_t *j = api_json(&r);
	util_strlcpy(id, jpath_s(j, "id"), sizeof(id));
	json_decref(j);
	util_fmt(target, sizeof(target), "/v1/messages/%s", id);
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		util_fmt(body, sizeof(body), "{\"provider_message_id\":\"%s\"}", bad[i]);
		assert_int_equal(api_call(d, "PATCH", target, T_APP, body, NULL, &r), 422);
		assert_string_equal(api_error_code(&r, code, sizeof(code)), "invalid_field");
	}
	assert_int_equal(
	    h_sql_int(d, "SELECT count(*) FROM sms_messages WHERE provider_message_id IS NULL"), 1);
}

/* A send recorded before a check that refuses it now (an older dlrd took a
 * spare calling code, an unassigned destination_country, a provider id with
 * a space, the time zone "localtime") is still replayed under its key: an application retrying
 * across the upgrade gets its 201 again, not a 422 for a message that is recorded. The older dlrd's
 * record is made by giving a valid send's key the request hash of the refused body.  A new key, or
 * another request's, is 422 and writes nothing. */
static void test_replay_of_send_refused_now(void **state)
{
	struct dlrd *d = *state;
	static const char *const refused[][2] = {
	    {"{\"to\":\"+2801234567\",\"provider\":\"twilio\",\"use_case\":\"otp\","
	     "\"template_key\":\"t\",\"sender_identity\":\"" N_SENDER "\","
	     "\"action\":{\"type\":\"login\",\"id\":\"u1\"}}",
	     "invalid_phone_number"},
	    {"{\"to\":\"" N_TO "\",\"provider\":\"twilio\",\"destination_country\":\"ZZ\","
	     "\"use_case\":\"otp\",\"template_key\":\"t\",\"sender_identity\":\"" N_SENDER "\","
	     "\"action\":{\"type\":\"login\",\"id\":\"u1\"}}",
	     "invalid_country"},
	    {"{\"to\":\"" N_TO "\",\"provider\":\"twilio\",\"provider_message_id\":\"SMabc \","
	     "\"use_case\":\"otp\",\"template_key\":\"t\",\"sender_identity\":\"" N_SENDER "\","
	     "\"action\":{\"type\":\"login\",\"id\":\"u1\"}}",
	     "invalid_field"},
	    {"{\"to\":\"" N_TO "\",\"provider\":\"twilio\",\"recipient_timezone\":\"localtime\","
	     "\"use_case\":\"otp\",\"template_key\":\"t\",\"sender_identity\":\"" N_SENDER "\","
	     "\"action\":{\"type\":\"login\",\"id\":\"u1\"}}",
	     "unknown_time_zone"},
	};
	struct h_resp first, r;
	char body[1024], key[16], hash[65], code[64];
	uint8_t md[CRYPTO_SHA256_LEN];

	privacy_set_hash_key((const uint8_t *)H_HASH_KEY, strlen(H_HASH_KEY));
	for (size_t i = 0; i < ARRAY_LEN(refused); i++) {
		/* what the older dlrd recorded */
		util_fmt(key, sizeof(key), "old-%zu", i);
		api_send_body(body, sizeof(body), N_TO, NULL, "otp", NULL);
		assert_int_equal(api_send(d, T_APP, key, body, &first), 201);
		json_t *canon = json_loads(refused[i][0], 0, NULL);
		assert_non_null(canon);
		char *c = json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS);
		crypto_sha256(c, strlen(c), md);
		privacy_request_hash(md, hash);
		free(c);
		json_decref(canon);
		assert_int_equal(h_sql_exec(d,
		                            "UPDATE api_idempotency SET request_hash = %Q"
		                            " WHERE idem_key = %Q",
		                            hash, key),
		                 0);

		/* the application's retry after the upgrade: the first answer */
		if (api_send(d, T_APP, key, refused[i][0], &r) != 201)
			fail_msg("replay of refused body %zu: %ld %s", i, r.status, r.body);
		assert_string_equal(r.body, first.body);
		/* not a replay: refused, nothing written */
		util_fmt(key, sizeof(key), "new-%zu", i);
		assert_int_equal(api_send(d, T_APP, key, refused[i][0], &r), 422);
		assert_string_equal(api_error_code(&r, code, sizeof(code)), refused[i][1]);
		assert_int_equal(api_send(d, T_APP, i ? "old-0" : "old-1", refused[i][0], &r), 422);
		assert_string_equal(api_error_code(&r, code, sizeof(code)), refused[i][1]);
	}
	assert_int_equal(h_count(d, "sms_messages"), ARRAY_LEN(refused));
	assert_int_equal(h_count(d, "api_idempotency"), ARRAY_LEN(refused));
}

/* A send announcing one byte more than max_body_bytes is refused from its
 * head alone: no body is waited for. */
static void test_body_limit_announced(void **state)
{
	struct dlrd *d = *state;
	char req[1024], buf[4096];
	bool closed = false;
	int codes[2];

	util_fmt(req, sizeof(req),
	         "POST /v1/messages HTTP/1.1\r\nHost: sms.example.com\r\n"
	         "Authorization: Bearer " T_APP "\r\nIdempotency-Key: big-1\r\n"
	         "Content-Type: application/json\r\nContent-Length: %u\r\n\r\n",
	         LIM_BODY_BYTES_DEFAULT + 1);
	int64_t t0 = h_now_ms();
	size_t n = h_raw(d, req, strlen(req), buf, sizeof(buf), 3000, &closed);
	assert_true(n != (size_t)-1);
	assert_int_equal(h_statuses(buf, n, codes, 2), 1);
	assert_int_equal(codes[0], 413);
	assert_non_null(strstr(buf, "body_too_large"));
	assert_true(h_now_ms() - t0 < 2000);
	assert_int_equal(h_count(d, "sms_messages"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_record_send, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_country_code, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_short_numbers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unassigned_calling_code, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_idempotency_key_bytes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_same_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_opted_out, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_patch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_patch_callback_row, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pmid_spaces, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replay_of_send_refused_now, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_body_limit_announced, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
