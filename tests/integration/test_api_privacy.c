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
 * decrypt), and a number whose key is gone cannot be revealed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "api_helpers.h"

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
	    cmocka_unit_test(test_key_file_created_once),
	    cmocka_unit_test(test_configured_keys_rotate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
