/* SPDX-License-Identifier: MIT */
/*
 * Integration: what dlrd writes to stderr.  After a run at debug level with
 * every kind of callback (stored, duplicate, unknown status, unusable,
 * forged, malformed, oversized, refused during a storage fault), the log
 * must contain neither an auth token, nor the hash key, nor the digits of
 * the recipient's number; and a configuration error names the key, never
 * its value.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../logfmt.h"
#include "harness.h"
#include "util.h"

static const char *const debug_env[] = {"DLRD_SERVER_LOG_LEVEL=debug",
                                        "DLRD_SERVER_MAX_BODY_BYTES=1024", NULL};

static int setup(void **state)
{
	return h_fixture_start(state, debug_env);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

static void assert_log_clean(struct dlrd *d)
{
	static const char *const secrets[] = {
	    H_TOKEN1, H_TOKEN2, H_HASH_KEY, H_TO_DIGITS, "tok1-4f0d", /* a prefix of a token */
	};
	size_t n;
	char *log = h_read_file(d->log_path, &n);

	assert_non_null(log);
	for (size_t i = 0; i < ARRAY_LEN(secrets); i++) {
		const char *hit = memmem(log, n, secrets[i], strlen(secrets[i]));
		if (hit) {
			const char *ls = hit, *le = strchr(hit, '\n');
			while (ls > log && ls[-1] != '\n')
				ls--;
			fail_msg("the log contains \"%s\" in: %.*s", secrets[i],
			         (int)(le ? le - ls : (long)strlen(ls)), ls);
		}
	}
	free(log);
}

static void test_no_secrets_or_numbers(void **state)
{
	struct dlrd *d = *state;
	char sid[35], body[2048];
	const char *sig_bad[] = {"Content-Type: application/x-www-form-urlencoded",
	                         "X-Twilio-Signature: AAAAAAAAAAAAAAAAAAAAAAAAAAA=", NULL};
	struct h_resp r;
	int st = 0;

	/* stored, duplicate, unknown status */
	h_sid(sid, 70, 1);
	assert_true(h_twilio_body(body, sizeof(body), sid, "delivered", NULL) > 0);
	assert_int_equal(h_post_status(d, body, &r), 200);
	assert_int_equal(h_post_status(d, body, &r), 200);
	assert_true(h_twilio_body(body, sizeof(body), sid, "undelivered", "30003") > 0);
	assert_int_equal(h_post_status(d, body, &r), 200);
	h_sid(sid, 70, 2);
	assert_true(h_twilio_body(body, sizeof(body), sid, "teleported", NULL) > 0);
	assert_int_equal(h_post_status(d, body, &r), 200);
	/* unusable: no MessageSid */
	assert_int_equal(h_post_status(d, "To=%2B14155550123&MessageStatus=sent", &r), 200);
	/* forged, with the number in the body */
	assert_int_equal(h_request(d, "POST", H_STATUS_PATH, sig_bad, body, strlen(body), &r), 0);
	assert_int_equal(r.status, 401);
	/* malformed, right next to the number */
	static const char bad_form[] = "To=%2B14155550123%ZZ&MessageStatus=sent";
	assert_int_equal(
	    h_request(d, "POST", H_STATUS_PATH, sig_bad, bad_form, strlen(bad_form), &r), 0);
	assert_int_equal(r.status, 400);
	/* not a phone number at all, but number-like digits in a field name */
	static const char odd[] = "To%2B14155550123=x&MessageStatus=sent";
	assert_int_equal(h_request(d, "POST", H_STATUS_PATH, sig_bad, odd, strlen(odd), &r), 0);
	assert_int_equal(r.status, 401);
	/* oversized */
	size_t n = strlen(body);
	while (n < 1500)
		body[n++] = '1';
	body[n] = '\0';
	assert_int_equal(h_post_status(d, body, &r), 413);
	/* refused during a storage fault */
	if (h_pg()) {
		print_message("SKIPPED under PostgreSQL: the storage-fault part (the fault file"
		              " drives dlrd's SQLite VFS)\n");
	} else {
		assert_int_equal(h_write_file(d->fault_path, "e"), 0);
		h_sid(sid, 70, 3);
		assert_true(h_twilio_body(body, sizeof(body), sid, "sent", NULL) > 0);
		assert_int_equal(h_post_status(d, body, &r), 503);
		assert_int_equal(unlink(d->fault_path), 0);
		assert_int_equal(h_wait_healthy(d, 5000), 0);
	}

	assert_int_equal(h_stop(d, SIGTERM, 15000, &st), 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* the log is there and says something... */
	assert_true(h_log_contains(d, "event=listening"));
	assert_true(h_log_contains(d, "event=callback_rejected"));
	if (!h_pg())
		assert_true(h_log_contains(d, "event=commit_failed"));
	/* ...but nothing it must not */
	assert_log_clean(d);
}

/* A public_url with HTTP Basic credentials (Twilio signs the URL with them)
 * verifies callbacks, and its password never reaches the log. */
static void test_public_url_password_hidden(void **state)
{
#define CRED_URL "https://twuser:S3cretPassw0rd@sms.example.com"
	static const char *const env[] = {"DLRD_SERVER_PUBLIC_URL=" CRED_URL, NULL};
	struct dlrd d;
	struct h_resp r;
	char sid[35], body[2048], sig[29], sig_hdr[64];
	const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded", sig_hdr, NULL};
	size_t n;

	(void)state;
	assert_int_equal(h_setup(&d, env), 0);
	assert_int_equal(h_start(&d), 0);
	h_sid(sid, 71, 1);
	n = h_twilio_body(body, sizeof(body), sid, "delivered", NULL);
	assert_true(n > 0);
	assert_int_equal(h_twilio_sign(H_TOKEN1, CRED_URL H_STATUS_PATH, body, n, sig), 0);
	util_fmt(sig_hdr, sizeof(sig_hdr), "X-Twilio-Signature: %s", sig);
	assert_int_equal(h_request(&d, "POST", H_STATUS_PATH, hdrs, body, n, &r), 0);
	assert_int_equal(r.status, 200);
	assert_true(h_log_contains(&d, "public_url=\"https://twuser:***@sms.example.com\""));
	assert_false(h_log_contains(&d, "S3cretPassw0rd"));
	h_teardown(&d);
#undef CRED_URL
}

/* A value that fails validation is never echoed, secret or not. */
static void test_config_error_hides_value(void **state)
{
	static const char *const env[] = {"DLRD_PRIVACY_HASH_KEY=short-but-secret-value", NULL};
	struct dlrd d;
	int st = 0;

	(void)state;
	assert_int_equal(h_setup(&d, env), 0);
	assert_int_equal(h_spawn(&d), 0);
	assert_int_equal(h_wait_exit(&d, 5000, &st), 0);
	assert_true(WIFEXITED(st));
	assert_int_not_equal(WEXITSTATUS(st), 0);
	assert_true(h_log_contains(&d, "privacy.hash_key"));
	assert_true(h_log_contains(&d, "DLRD_PRIVACY_HASH_KEY"));
	assert_false(h_log_contains(&d, "short-but-secret-value"));
	h_teardown(&d);
}

/* Runs dlrd with conf as its config file (NULL: none) and kv as one more
 * setting (NULL: none), which must stop start-up; true when its output holds
 * every string of want and none of unwanted. */
static bool config_error_says(const char *conf, const char *kv, const char *const *want,
                              const char *const *unwanted)
{
	struct dlrd d;
	bool ok = true;
	int st = 0;

	assert_int_equal(h_setup(&d, NULL), 0);
	if (conf) {
		util_fmt(d.config_path, sizeof(d.config_path), "%s/dlrd.conf", d.dir);
		assert_int_equal(h_write_file(d.config_path, conf), 0);
	}
	if (kv)
		h_set_env(&d, kv);
	assert_int_equal(h_spawn(&d), 0);
	assert_int_equal(h_wait_exit(&d, 5000, &st), 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
	for (size_t i = 0; want[i]; i++)
		if (!h_log_contains(&d, want[i])) {
			print_message("no \"%s\" in the output\n", want[i]);
			ok = false;
		}
	for (size_t i = 0; unwanted && unwanted[i]; i++)
		if (h_log_contains(&d, unwanted[i])) {
			print_message("\"%s\" in the output\n", unwanted[i]);
			ok = false;
		}
	h_teardown(&d);
	return ok;
}

/* dlrd.conf.example: a value that does not parse stops start-up "with a
 * message naming the key and its line".  Before the fix only [server] and
 * [storage] keys and privacy.hash_key said where their value came from; a
 * provider's key, api.tokens and privacy.encryption_keys did not, and
 * plivo.accept_v2 named its environment variable even when the value came
 * from the file. */
static void test_config_error_names_where(void **state)
{
	(void)state;
	assert_true(config_error_says(
	    "[server]\nlog_level = info\n\n[sinch]\nsecrets = s3cret\ntolerance_seconds = soon\n",
	    NULL, (const char *const[]){"sinch.tolerance_seconds: ", " (line 6)", NULL}, NULL));
	assert_true(config_error_says("[plivo]\nauth_tokens = t0ken\naccept_v2 = maybe\n", NULL,
	                              (const char *const[]){"plivo.accept_v2: ", " (line 3)", NULL},
	                              (const char *const[]){"DLRD_PLIVO_ACCEPT_V2", NULL}));
	assert_true(config_error_says(
	    NULL, "DLRD_KANNEL_TOKENS=short",
	    (const char *const[]){"kannel.tokens: ", " (from DLRD_KANNEL_TOKENS)", NULL}, NULL));
	assert_true(config_error_says("[api]\ntokens = app:sha256:00\n", NULL,
	                              (const char *const[]){"api.tokens: ", " (line 2)", NULL},
	                              NULL));
	assert_true(config_error_says(
	    NULL, "DLRD_PRIVACY_ENCRYPTION_KEYS=k1:bm90IGEga2V5",
	    (const char *const[]){
	        "privacy.encryption_keys: ", " (from DLRD_PRIVACY_ENCRYPTION_KEYS)", NULL},
	    NULL));
}

/* A start-up refused for a setting leaves nothing behind: every setting is
 * checked before a key file is created or the database is opened (and
 * migrated), and the exit status is 2 for all of them.  Before the fix a
 * provider's or the API's bad value was found after hash.key and
 * encryption.keys were created, and api.tokens only after the migrations
 * ran, with status 1. */
static void test_config_error_writes_nothing(void **state)
{
	static const char *const confs[] = {
	    "[sinch]\nsecrets = s3cret\ntolerance_seconds = soon\n",
	    "[api]\ntokens = app:sha256:00\n",
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(confs); i++) {
		static const char *const env[] = {
		    "DLRD_PRIVACY_HASH_KEY=", "DLRD_PRIVACY_ENCRYPTION_KEYS=", NULL};
		struct dlrd d;
		char path[H_PATH_MAX + 32];
		int st = 0;

		assert_int_equal(h_setup(&d, env), 0);
		util_fmt(d.config_path, sizeof(d.config_path), "%s/dlrd.conf", d.dir);
		assert_int_equal(h_write_file(d.config_path, confs[i]), 0);
		assert_int_equal(h_spawn(&d), 0);
		assert_int_equal(h_wait_exit(&d, 5000, &st), 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 2)
			fail_msg("config %zu: exit status %d, want 2", i,
			         WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		for (const char *const *f =
		         (const char *const[]){"hash.key", "encryption.keys", "dlrd.db", NULL};
		     *f; f++) {
			util_fmt(path, sizeof(path), "%s/%s", d.dir, *f);
			if (access(path, F_OK) == 0)
				fail_msg("config %zu: %s was created", i, *f);
		}
		h_teardown(&d);
	}
}

/* Paths an operator chose (the config file, the data directory, the SQLite
 * file) may hold blanks and quotes; every line stays one set of key=value
 * pairs.  Before the fix they were written bare ("config=/srv/my conf.ini"),
 * or inside quotes without escaping (error="... \"x\" ..."), so a logfmt
 * parser read a stray key or cut the value. */
static void test_operator_paths_quoted(void **state)
{
	static const char *const env[] = {
	    "DLRD_PRIVACY_HASH_KEY=", "DLRD_PRIVACY_ENCRYPTION_KEYS=", NULL};
	struct dlrd d;
	char kv[H_PATH_MAX + 64], want[H_PATH_MAX + 64];
	size_t n;
	int st = 0;

	(void)state;
	assert_int_equal(h_setup(&d, env), 0);
	util_fmt(kv, sizeof(kv), "DLRD_SERVER_DATA_DIR=%s/my \"keys\"", d.dir);
	h_set_env(&d, kv);
	if (!h_pg()) {
		util_fmt(kv, sizeof(kv), "DLRD_STORAGE_URL=sqlite:%s/my db/dlrd.db", d.dir);
		h_set_env(&d, kv);
	}
	util_fmt(d.config_path, sizeof(d.config_path), "%s/my conf.ini", d.dir);
	assert_int_equal(h_write_file(d.config_path, "[server]\n"), 0);
	assert_int_equal(h_start(&d), 0);
	assert_int_equal(h_stop(&d, SIGTERM, 5000, &st), 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* a start that fails on a path: the error names it, still quoted */
	util_fmt(kv, sizeof(kv), "DLRD_SERVER_DATA_DIR=%s/my conf.ini/\"sub\"", d.dir);
	h_set_env(&d, kv);
	assert_int_equal(h_spawn(&d), 0);
	assert_int_equal(h_wait_exit(&d, 5000, &st), 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);

	char *log = h_read_file(d.log_path, &n);
	assert_non_null(log);
	for (const char *p = log, *nl; p < log + n; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(log + n - p));
		if (!nl)
			nl = log + n;
		if (strncmp(p, "ts=", 3) != 0)
			continue; /* "dlrd: ..." on stderr, not a log line */
		if (!logfmt_ok(p, nl))
			fail_msg("not logfmt: %.*s", (int)(nl - p), p);
	}
	util_fmt(want, sizeof(want), "config=\"%s/my conf.ini\"", d.dir);
	assert_non_null(memmem(log, n, want, strlen(want)));
	util_fmt(want, sizeof(want), "path=\"%s/my \\\"keys\\\"/hash.key\"", d.dir);
	assert_non_null(memmem(log, n, want, strlen(want)));
	free(log);
	h_teardown(&d);
}

/* Nodes sharing PostgreSQL must share their keys; one using its own key
 * files is warned about (main.c).  SQLite is one node: no warning. */
static void test_node_key_files_warned(void **state)
{
	static const char *const env[] = {
	    "DLRD_PRIVACY_HASH_KEY=", "DLRD_PRIVACY_ENCRYPTION_KEYS=", NULL};
	struct dlrd d;
	int st = 0;

	(void)state;
	assert_int_equal(h_setup(&d, env), 0);
	assert_int_equal(h_start(&d), 0);
	assert_int_equal(h_stop(&d, SIGTERM, 5000, &st), 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if (h_pg())
		assert_true(
		    h_log_contains(&d, "event=node_key_files hash_key=file encryption_keys=file"));
	else
		assert_false(h_log_contains(&d, "node_key_files"));

	/* both keys configured, as on a real cluster: no warning */
	assert_int_equal(unlink(d.log_path), 0);
	h_set_env(&d, "DLRD_PRIVACY_HASH_KEY=" H_HASH_KEY);
	h_set_env(&d, "DLRD_PRIVACY_ENCRYPTION_KEYS=" H_ENC_KEYS);
	assert_int_equal(h_start(&d), 0);
	assert_int_equal(h_stop(&d, SIGTERM, 5000, &st), 0);
	assert_false(h_log_contains(&d, "node_key_files"));
	h_teardown(&d);
}

/* A key file in the data directory that group or others may read or write
 * stops start-up (exit 2) with a message naming the file, its mode and the
 * fix, on stderr and in the startup_failed log line; 0600 and 0400 start.
 * Before the fix dlrd started on a 0644 or 0640 key file without a word
 * (and a bad hash.key exited 1, with nothing on stderr). */
static void test_key_file_open_to_others_refused(void **state)
{
	static const char *const env[] = {
	    "DLRD_PRIVACY_HASH_KEY=", "DLRD_PRIVACY_ENCRYPTION_KEYS=", NULL};
	static const char *const files[] = {"hash.key", "encryption.keys"};
	static const mode_t bad[] = {0644, 0640};
	static const mode_t good[] = {0600, 0400};
	struct dlrd d;
	char path[H_PATH_MAX + 32], want[2 * H_PATH_MAX + 128];
	int st = 0;

	(void)state;
	assert_int_equal(h_setup(&d, env), 0);
	assert_int_equal(h_start(&d), 0); /* makes both key files, 0600 */
	assert_int_equal(h_stop(&d, SIGTERM, 5000, &st), 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	for (size_t f = 0; f < ARRAY_LEN(files); f++) {
		util_fmt(path, sizeof(path), "%s/%s", d.dir, files[f]);
		for (size_t m = 0; m < ARRAY_LEN(bad); m++) {
			assert_int_equal(chmod(path, bad[m]), 0);
			assert_int_equal(unlink(d.log_path), 0);
			assert_int_equal(h_spawn(&d), 0);
			if (h_wait_exit(&d, 5000, &st) != 0)
				fail_msg("%s mode %04o: dlrd started", files[f], (unsigned)bad[m]);
			assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
			util_fmt(want, sizeof(want),
			         "dlrd: key file %s has mode %04o: group or others may read or"
			         " write it (fix: chmod 600 %s)\n",
			         path, (unsigned)bad[m], path);
			if (!h_log_contains(&d, want))
				fail_msg("no \"%s\" in the output", want);
			assert_true(h_log_contains(&d, "event=startup_failed"));
		}
		for (size_t m = 0; m < ARRAY_LEN(good); m++) {
			assert_int_equal(chmod(path, good[m]), 0);
			if (h_start(&d) != 0)
				fail_msg("%s mode %04o: dlrd did not start", files[f],
				         (unsigned)good[m]);
			assert_int_equal(h_stop(&d, SIGTERM, 5000, &st), 0);
			assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		}
	}
	h_teardown(&d);
}

/* The lines of the log holding needle; *suppressed gets the sum of their
 * "suppressed=N" fields. */
static unsigned count_lines(const char *log, size_t n, const char *needle, unsigned *suppressed)
{
	unsigned lines = 0;

	*suppressed = 0;
	for (const char *p = log, *nl; p < log + n; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(log + n - p));
		if (!nl)
			nl = log + n;
		const char *hit = memmem(p, (size_t)(nl - p), needle, strlen(needle));
		if (!hit)
			continue;
		lines++;
		const char *sp = memmem(p, (size_t)(nl - p), " suppressed=", 12);
		if (sp)
			*suppressed += (unsigned)strtoul(sp + 12, NULL, 10);
	}
	return lines;
}

/* Anyone can send forged callbacks and /v1/ requests without a token, as
 * fast as they like.  At the default level, a flood of them must not write
 * a line each (the log is on the disk dlrd commits to, and a log collector
 * pays per line): a few lines a second, each saying how many were left out,
 * and every one still counted in /metrics.  Before the fix: one
 * callback_rejected or api_denied line per request, 300 and 100 here. */
static void test_flood_is_not_logged_line_by_line(void **state)
{
#define N_FORGED   300
#define N_NO_TOKEN 100
	static const char *const env[] = {NULL};
	const char *sig_bad[] = {"Content-Type: application/x-www-form-urlencoded",
	                         "X-Twilio-Signature: AAAAAAAAAAAAAAAAAAAAAAAAAAA=", NULL};
	static struct h_resp r;
	char sid[35], body[2048];
	struct dlrd d;
	unsigned lines, suppressed;
	size_t n;
	int st = 0;

	(void)state;
	assert_int_equal(h_setup(&d, env), 0);
	assert_int_equal(h_start(&d), 0);
	h_sid(sid, 71, 1);
	assert_true(h_twilio_body(body, sizeof(body), sid, "delivered", NULL) > 0);
	int64_t t0 = h_now_ms();
	for (int i = 0; i < N_FORGED; i++) {
		assert_int_equal(
		    h_request(&d, "POST", H_STATUS_PATH, sig_bad, body, strlen(body), &r), 0);
		assert_int_equal(r.status, 401);
	}
	for (int i = 0; i < N_NO_TOKEN; i++)
		assert_int_equal(h_get(&d, "/v1/messages", &r), 401);
	int64_t took_s = (h_now_ms() - t0) / 1000 + 1;
	/* a second later, the next refusal is logged again, with the count of
	 * those left out */
	h_sleep_ms(1100);
	assert_int_equal(h_request(&d, "POST", H_STATUS_PATH, sig_bad, body, strlen(body), &r), 0);
	assert_int_equal(r.status, 401);
	assert_int_equal(
	    h_metric(&d, "dlrd_callbacks_total{provider=\"twilio\",outcome=\"unauthorized\"}"),
	    N_FORGED + 1);
	/* a valid callback still gets through */
	assert_int_equal(h_post_status(&d, body, &r), 200);
	assert_int_equal(h_stop(&d, SIGTERM, 15000, &st), 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	char *log = h_read_file(d.log_path, &n);
	assert_non_null(log);
	/* 10 lines a second per kind; one second more for the edges, one for
	 * the late refusal */
	lines = count_lines(log, n, " event=callback_rejected ", &suppressed);
	if (lines < 2 || lines > 10 * ((unsigned)took_s + 1) + 1)
		fail_msg("%u callback_rejected lines for %d forged callbacks in %lld s", lines,
		         N_FORGED, (long long)took_s);
	/* every refusal shows up: as a line, or in a later line's count (the
	 * ones after the last line are only in /metrics) */
	assert_int_equal(lines + suppressed, N_FORGED + 1);
	lines = count_lines(log, n, " event=api_denied ", &suppressed);
	if (lines < 1 || lines > 10 * ((unsigned)took_s + 1))
		fail_msg("%u api_denied lines for %d requests in %lld s", lines, N_NO_TOKEN,
		         (long long)took_s);
	free(log);
	h_teardown(&d);
#undef N_FORGED
#undef N_NO_TOKEN
}
int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_no_secrets_or_numbers, setup, teardown),
	    cmocka_unit_test(test_config_error_hides_value),
	    cmocka_unit_test(test_config_error_names_where),
	    cmocka_unit_test(test_config_error_writes_nothing),
	    cmocka_unit_test(test_public_url_password_hidden),
	    cmocka_unit_test(test_operator_paths_quoted),
	    cmocka_unit_test(test_node_key_files_warned),
	    cmocka_unit_test(test_key_file_open_to_others_refused),
	    cmocka_unit_test(test_flood_is_not_logged_line_by_line),
	};
	return cmocka_run_group_tests_name("integration/logs", tests, NULL, NULL);
}
