/* SPDX-License-Identifier: MIT */
/*
 * Integration: the process lifecycle.  A SIGTERM restart keeps every row and
 * duplicate detection; a SIGKILL followed by an immediate restart on the same
 * port and database keeps everything that was acknowledged; SIGTERM while
 * ~200 callbacks are in flight exits 0 within 5 s, and every 200 answered is
 * stored; while it drains, /healthz and a kept-alive callback say it is
 * stopping; SIGHUP is logged and ignored; a second dlrd on the same database, a database another
 * process holds locked, a database file dlrd may not write, or a database path that cannot be
 * created, stops start-up with a non-zero exit and a message.  The command line: --help, version,
 * and `serve --config FILE` with the environment winning over the file.
 */
#include <fcntl.h>
#include <linux/fs.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "status.h"
#include "util.h"

#define SUMMARY                                                                                    \
	"SELECT current_status||'|'||coalesce(current_error_code,'-')||'|'||is_final||'|'||"       \
	"status_mask||'|'||event_count||'|'||callback_count||'|'||duplicate_count"                 \
	" FROM sms_messages WHERE provider_message_id = %Q"
#define MIGRATIONS                                                                                 \
	"SELECT group_concat(version||':'||name||':'||applied_at, ',') FROM (SELECT * FROM"        \
	" schema_migrations ORDER BY version) AS s"
#define N_DRAIN 200

static int setup(void **state)
{
	return h_fixture_start(state, NULL);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

static void post(struct dlrd *d, const char *sid, const char *status, const char *ec)
{
	char body[1024];
	struct h_resp r;

	assert_true(h_twilio_body(body, sizeof(body), sid, status, ec) > 0);
	assert_int_equal(h_post_status(d, body, &r), 200);
}

static const char *counts(struct dlrd *d, char *buf, size_t cap)
{
	util_fmt(buf, cap, "%lld/%lld/%lld/%lld", (long long)h_count(d, "sms_messages"),
	         (long long)h_count(d, "sms_message_events"),
	         (long long)h_count(d, "sms_callback_log"), (long long)h_count(d, "review_queue"));
	return buf;
}

static void expect_clean_exit(struct dlrd *d, int sig)
{
	int st = 0;
	assert_int_equal(h_stop(d, sig, 15000, &st), 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("dlrd did not exit 0 on signal %d (wait status 0x%x)", sig, st);
}

static void test_sigterm_restart(void **state)
{
	struct dlrd *d = *state;
	char a[35], b[35], buf[256], exp[256], migrations[256];

	h_sid(a, 60, 1);
	h_sid(b, 60, 2);
	post(d, a, "queued", NULL);
	post(d, a, "sent", NULL);
	post(d, a, "undelivered", "30003");
	post(d, b, "sent", NULL);
	post(d, b, "teleported", NULL); /* a review row too */
	assert_string_equal(counts(d, buf, sizeof(buf)), "2/5/5/1");
	assert_true(h_sql_text(d, migrations, sizeof(migrations), MIGRATIONS) > 0);

	expect_clean_exit(d, SIGTERM);
	assert_true(h_log_contains(d, "event=stopped clean=true"));
	assert_string_equal(counts(d, buf, sizeof(buf)), "2/5/5/1");

	assert_int_equal(h_start(d), 0);
	assert_string_equal(counts(d, buf, sizeof(buf)), "2/5/5/1");
	util_fmt(exp, sizeof(exp), "undelivered|30003|1|%u|3|3|0",
	         (1u << ST_ACCEPTED) | (1u << ST_SENT) | (1u << ST_UNDELIVERED));
	assert_string_equal(h_sql_str(d, buf, sizeof(buf), SUMMARY, a), exp);
	/* every migration ran once, the first time only */
	assert_string_equal(h_sql_str(d, buf, sizeof(buf), MIGRATIONS), migrations);
	/* each backend's versions */
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT group_concat(version || '', ',') FROM (SELECT version FROM"
	              " schema_migrations ORDER BY version) AS s"),
	    h_pg() ? "1,2,3,4,5,6,7,8,9,10,11,12" : "1,2,3,4,5,6,7,8,9,10,11,12,13");

	/* duplicates are still recognised across the restart */
	post(d, a, "sent", NULL);
	post(d, a, "undelivered", "30003");
	assert_string_equal(counts(d, buf, sizeof(buf)), "2/5/7/1");
	util_fmt(exp, sizeof(exp), "undelivered|30003|1|%u|3|5|2",
	         (1u << ST_ACCEPTED) | (1u << ST_SENT) | (1u << ST_UNDELIVERED));
	assert_string_equal(h_sql_str(d, buf, sizeof(buf), SUMMARY, a), exp);
	post(d, b, "delivered", NULL);
	assert_string_equal(counts(d, buf, sizeof(buf)), "2/6/8/1");
	expect_clean_exit(d, SIGTERM);
}

static void test_sigkill_restart(void **state)
{
	struct dlrd *d = *state;
	char sid[35], buf[256];
	int st = 0;

	for (unsigned i = 0; i < 20; i++) {
		h_sid(sid, 61, i);
		post(d, sid, "delivered", NULL);
	}
	assert_int_equal(h_stop(d, SIGKILL, 5000, &st), 0);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

	/* at once, same port, same database */
	assert_int_equal(h_start(d), 0);
	assert_string_equal(counts(d, buf, sizeof(buf)), "20/20/20/0");
	for (unsigned i = 0; i < 20; i++) {
		h_sid(sid, 61, i);
		assert_int_equal(h_sql_int(d,
		                           "SELECT count(*) FROM sms_message_events WHERE"
		                           " provider_message_id = %Q AND status = 'delivered'",
		                           sid),
		                 1);
	}
	h_sid(sid, 61, 7);
	post(d, sid, "delivered", NULL);
	assert_string_equal(counts(d, buf, sizeof(buf)), "20/20/21/0");
	h_sid(sid, 61, 100);
	post(d, sid, "sent", NULL);
	assert_string_equal(counts(d, buf, sizeof(buf)), "21/21/22/0");
	expect_clean_exit(d, SIGTERM);
}

struct drain {
	struct dlrd *d;
	size_t done_at_signal;
	int64_t signal_ms;
	int64_t exit_ms; /* when the exit was seen, 0 until then */
	int status;
};

static void drain_tick(void *arg, size_t done, size_t added)
{
	struct drain *dr = arg;
	if (dr->signal_ms && !dr->exit_ms && h_wait_exit(dr->d, 0, &dr->status) == 0)
		dr->exit_ms = h_now_ms();
	/* the signal goes as soon as the second wave is on its way, while
	 * most of the first wave's answers are still to be read */
	if (dr->signal_ms || added < N_DRAIN)
		return;
	dr->done_at_signal = done;
	dr->signal_ms = h_now_ms();
	kill(dr->d->pid, SIGTERM);
}

static void test_sigterm_drain(void **state)
{
	struct dlrd *d = *state;
	static char bodies[N_DRAIN][1024];
	const char *ptrs[N_DRAIN];
	static struct h_multi out[N_DRAIN];
	struct drain dr = {d, 0, 0, 0, 0};
	char sid[35];
	unsigned n200 = 0, n503 = 0, nnone = 0, stored_unanswered = 0;

	for (unsigned i = 0; i < N_DRAIN; i++) {
		h_sid(sid, 62, i);
		assert_true(h_twilio_body(bodies[i], sizeof(bodies[i]), sid, "delivered", NULL) >
		            0);
		ptrs[i] = bodies[i];
	}
	assert_int_equal(
	    h_post_concurrent(d, ptrs, N_DRAIN, N_DRAIN / 2, drain_tick, &dr, out, 20000), 0);
	assert_true(dr.signal_ms > 0);
	assert_true(dr.done_at_signal < N_DRAIN); /* the signal came mid-flight */

	/* "within seconds": dlrd gives its drain 5 s (main.c), then closes */
	if (!dr.exit_ms) {
		int64_t left = 10000 - (h_now_ms() - dr.signal_ms);
		if (h_wait_exit(d, left > 0 ? (int)left : 0, &dr.status) == 0)
			dr.exit_ms = h_now_ms();
	}
	if (!dr.exit_ms || dr.exit_ms - dr.signal_ms > 10000)
		fail_msg("dlrd still ran %lld ms after SIGTERM",
		         (long long)(h_now_ms() - dr.signal_ms));
	if (!WIFEXITED(dr.status) || WEXITSTATUS(dr.status) != 0)
		fail_msg("dlrd did not exit 0 after SIGTERM (wait status 0x%x)", dr.status);

	for (unsigned i = 0; i < N_DRAIN; i++) {
		int64_t stored;
		h_sid(sid, 62, i);
		stored = h_sql_int(d,
		                   "SELECT count(*) FROM sms_message_events WHERE"
		                   " provider_message_id = %Q",
		                   sid);
		switch (out[i].status) {
		case 200:
			n200++;
			if (stored != 1)
				fail_msg("request %u got 200 but is stored %lld times", i,
				         (long long)stored);
			break;
		case 503:
			n503++;
			assert_string_equal(out[i].retry_after, "1");
			if (stored != 0)
				fail_msg("request %u got 503 but is stored", i);
			break;
		case 0:
			nnone++;
			stored_unanswered += stored == 1;
			break;
		default:
			fail_msg("request %u got %ld", i, out[i].status);
		}
	}
	print_message("drain: %u x 200, %u x 503, %u unanswered (%u of them stored), %zu done"
	              " at SIGTERM\n",
	              n200, n503, nnone, stored_unanswered, dr.done_at_signal);
	/* a committed request is always answered before the exit */
	assert_int_equal(stored_unanswered, 0);
	assert_true(n200 >= dr.done_at_signal);
	assert_int_equal(h_count(d, "sms_message_events"), (int64_t)(n200 + stored_unanswered));
	assert_true(h_log_contains(d, "event=stopped clean=true"));
}

/* SIGHUP (a closed terminal, or a `systemctl reload` that sends it) is
 * not a reason to stop: dlrd reloads nothing, so it logs that and goes on
 * (before: the default action killed it, with no drain). */
static void test_sighup_ignored(void **state)
{
	struct dlrd *d = *state;
	char sid[35];

	assert_int_equal(kill(d->pid, SIGHUP), 0);
	assert_true(h_wait_log(d, "event=signal_ignored signal=SIGHUP", 5000));
	h_sid(sid, 63, 1);
	post(d, sid, "delivered", NULL);
	expect_clean_exit(d, SIGTERM);
	assert_true(h_log_contains(d, "event=stopped clean=true"));
}

/* While a SIGTERM drains (here: a callback parked on a database lock the
 * test holds), a kept-alive connection's /healthz answers 503 "stopping",
 * so a load balancer stops sending, and a new callback 503 that says dlrd
 * is stopping (not "the queue is full"), with Retry-After and the
 * connection closed.  The parked callback is still committed and answered. */
static void test_stopping_answers(void **state)
{
	struct dlrd *d = *state;
	char body[1024], req[4096], buf[4096], sid[35];
	struct h_async *a;
	bool closed;
	void *lock;
	size_t n;
	int fd, st = 0;
	static const char health[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";

	fd = h_connect(d->port);
	assert_true(fd >= 0);
	assert_int_equal(h_send_all(fd, health, sizeof(health) - 1), 0);
	h_recv_all(fd, buf, sizeof(buf), 300, &closed);
	assert_non_null(strstr(buf, "HTTP/1.1 200"));
	assert_false(closed);

	lock = h_db_lock(d);
	assert_non_null(lock);
	h_sid(sid, 63, 2);
	assert_true(h_twilio_body(body, sizeof(body), sid, "delivered", NULL) > 0);
	a = h_async_post_status(d, body);
	assert_non_null(a);
	h_sleep_ms(100); /* parked behind the lock */
	assert_int_equal(kill(d->pid, SIGTERM), 0);
	assert_true(h_wait_log(d, "event=stopping", 2000));

	assert_int_equal(h_send_all(fd, health, sizeof(health) - 1), 0);
	h_recv_all(fd, buf, sizeof(buf), 300, &closed);
	assert_non_null(strstr(buf, "HTTP/1.1 503"));
	assert_non_null(strstr(buf, "stopping"));

	h_sid(sid, 63, 3);
	assert_true(h_twilio_body(body, sizeof(body), sid, "delivered", NULL) > 0);
	n = h_raw_status_post(req, sizeof(req), body, false);
	assert_true(n > 0);
	assert_int_equal(h_send_all(fd, req, n), 0);
	h_recv_all(fd, buf, sizeof(buf), 1000, &closed);
	assert_non_null(strstr(buf, "HTTP/1.1 503"));
	assert_non_null(strstr(buf, "dlrd is stopping"));
	assert_non_null(strcasestr(buf, "Retry-After: 1"));
	assert_non_null(strcasestr(buf, "Connection: close"));
	assert_true(closed);
	close(fd);

	h_db_unlock(lock);
	assert_int_equal(h_async_wait(a, NULL), 200);
	assert_int_equal(h_wait_exit(d, 10000, &st), 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(h_sql_int(d,
	                           "SELECT count(*) FROM sms_message_events WHERE"
	                           " provider_message_id = %Q",
	                           sid),
	                 0);
}

static void test_second_instance_refused(void **state)
{
	struct dlrd *d = *state;
	struct dlrd two;
	char sid[35], msg[H_PATH_MAX + 64];
	int st = 0;

	H_SQLITE_ONLY("SQLite's lock on the database file; several nodes on one PostgreSQL"
	              " database are intended (test_pg_nodes)");
	assert_int_equal(h_setup_shared(&two, d, "second.log", NULL), 0);
	assert_int_equal(h_spawn(&two), 0);
	if (h_wait_exit(&two, 5000, &st) != 0) {
		h_teardown(&two);
		fail_msg("a second dlrd on the same database kept running");
	}
	assert_true(WIFEXITED(st));
	assert_int_not_equal(WEXITSTATUS(st), 0);
	util_fmt(msg, sizeof(msg), "%s is in use by another dlrd process", d->db_path);
	assert_true(h_log_contains(&two, msg));
	h_teardown(&two);

	/* the first one is untouched */
	h_sid(sid, 63, 1);
	post(d, sid, "sent", NULL);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	expect_clean_exit(d, SIGTERM);
}

/* issue 6: a database locked by another process at start-up is a clear
 * error and a non-zero exit, not a server that listens and then answers 503
 * to everything.  The other process here is not a dlrd (no flock on
 * "<db>.lock"): a SQLite client holding the write lock, as a backup or a
 * manual session would. */
static void test_locked_database_refused(void **state)
{
	struct dlrd *d = *state;
	char sid[35];
	int st = 0;

	H_SQLITE_ONLY("SQLite's write lock held by another process at start-up");
	h_sid(sid, 64, 1);
	post(d, sid, "sent", NULL);
	expect_clean_exit(d, SIGTERM);

	void *lock = h_db_lock(d);
	assert_non_null(lock);
	assert_int_equal(h_spawn(d), 0);
	int exited = h_wait_exit(d, 8000, &st);
	h_db_unlock(lock);
	if (exited != 0)
		fail_msg("dlrd started on a database another process holds locked");
	assert_true(WIFEXITED(st));
	assert_int_not_equal(WEXITSTATUS(st), 0);
	assert_true(h_log_contains(d, "locked"));

	/* once the lock is gone, it starts and keeps what it had */
	assert_int_equal(h_start(d), 0);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	expect_clean_exit(d, SIGTERM);
}

/* Makes path unwritable for this process and its children (mode 0444 and,
 * for root, whom modes do not stop, the immutable flag), or writable again.
 * Returns whether the file then cannot be opened for writing. */
static bool set_unwritable(const char *path, bool on)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int flags = 0;

	if (fd >= 0 && ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
		flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
		(void)ioctl(fd, FS_IOC_SETFLAGS, &flags);
	}
	if (fd >= 0)
		close(fd);
	(void)chmod(path, on ? 0444 : 0644);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd >= 0)
		close(fd);
	return fd < 0;
}

/* issue 6: a database file dlrd may not write at start-up is a clear error
 * and a non-zero exit.  SQLite opens such a file read-only without a word,
 * and in WAL mode even BEGIN IMMEDIATE succeeds on it: only the first real
 * write fails, so dlrd used to listen and answer 503 to every callback. */
static void test_readonly_database_refused(void **state)
{
	struct dlrd *d = *state;
	char sid[35];
	int st = 0;

	H_SQLITE_ONLY("a SQLite database file's permissions");
	h_sid(sid, 65, 1);
	post(d, sid, "sent", NULL);
	expect_clean_exit(d, SIGTERM);

	if (!set_unwritable(d->db_path, true)) {
		set_unwritable(d->db_path, false);
		print_message("skipped: %s stays writable (no immutable flag here)\n", d->db_path);
		skip();
	}
	assert_int_equal(h_spawn(d), 0);
	int exited = h_wait_exit(d, 8000, &st);
	if (exited != 0)
		h_stop(d, SIGKILL, 5000, &st);
	set_unwritable(d->db_path, false);
	if (exited != 0)
		fail_msg("dlrd started on a database file it cannot write");
	assert_true(WIFEXITED(st));
	assert_int_not_equal(WEXITSTATUS(st), 0);
	assert_true(h_log_contains(d, d->db_path));
	assert_true(h_log_contains(d, "read-only"));

	/* writable again: it starts and keeps what it had */
	assert_int_equal(h_start(d), 0);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	expect_clean_exit(d, SIGTERM);
}

static void test_uncreatable_database(void **state)
{
	struct dlrd d;
	char path[H_PATH_MAX], kv[H_PATH_MAX + 32];
	int st = 0;

	(void)state;
	H_SQLITE_ONLY("a SQLite database path");
	assert_int_equal(h_setup(&d, NULL), 0);
	/* a regular file where the database's folder should be */
	util_fmt(path, sizeof(path), "%s/file", d.dir);
	assert_int_equal(h_write_file(path, "not a folder\n"), 0);
	util_fmt(kv, sizeof(kv), "DLRD_STORAGE_URL=sqlite:%s/file/dlrd.db", d.dir);
	h_set_env(&d, kv);
	assert_int_equal(h_spawn(&d), 0);
	if (h_wait_exit(&d, 5000, &st) != 0) {
		h_teardown(&d);
		fail_msg("dlrd kept running with an uncreatable database path");
	}
	assert_true(WIFEXITED(st));
	assert_int_not_equal(WEXITSTATUS(st), 0);
	util_fmt(path, sizeof(path), "%s/file/dlrd.db", d.dir);
	assert_true(h_log_contains(&d, path));
	assert_true(h_log_contains(&d, "dlrd: "));
	h_teardown(&d);
}

/* Runs `dlrd <args>` and returns its exit status;
 * out gets what it printed on stdout. */
static int run_cli(const char *args, char *out, size_t cap)
{
	char cmd[H_PATH_MAX + 64];
	size_t n = 0, got;
	FILE *p;

	util_fmt(cmd, sizeof(cmd), "'%s' %s 2>/dev/null", DLRD_BINARY, args);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (n + 1 < cap && (got = fread(out + n, 1, cap - 1 - n, p)) > 0)
		n += got;
	out[n] = '\0';
	int st = pclose(p);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* The command line of issue 2: `dlrd --help` and `dlrd version` answer and
 * exit 0; `dlrd serve --config FILE` reads the file, and every
 * DLRD_<SECTION>_<KEY> in the environment wins over it. */
static void test_command_line_and_config_file(void **state)
{
	struct dlrd d;
	struct h_resp r;
	char out[4096], path[H_PATH_MAX], unused_db[H_PATH_MAX], conf[2 * H_PATH_MAX + 512];
	char body[1024], big[1024];
	int st = 0;

	(void)state;
	assert_int_equal(run_cli("--help", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "dlrd serve [--config FILE]"));
	assert_non_null(strstr(out, "dlrd version"));
	assert_non_null(strstr(out, "DLRD_<SECTION>_<KEY>"));
	assert_int_equal(run_cli("version", out, sizeof(out)), 0);
	assert_int_equal(strncmp(out, "dlrd ", 5), 0);
	assert_true(strlen(out) > 6 && out[strlen(out) - 1] == '\n');
	assert_int_equal(run_cli("frobnicate", out, sizeof(out)), 2);
	assert_int_equal(run_cli("serve --config", out, sizeof(out)), 2);

	assert_int_equal(h_setup(&d, NULL), 0);
	/* The file sets what the environment leaves alone (max_body_bytes,
	 * Twilio's token, which the environment no longer sets) and what the
	 * environment overrides (listen, log level, storage): had the file
	 * won, dlrd would listen on [::1], log only errors (h_start waits for
	 * event=listening) and create unused.db. */
	util_fmt(unused_db, sizeof(unused_db), "%s/unused.db", d.dir);
	util_fmt(conf, sizeof(conf),
	         "[server]\n"
	         "listen = [::1]:%u          ; DLRD_SERVER_LISTEN wins\n"
	         "max_body_bytes = 400\n"
	         "log_level = error           ; DLRD_SERVER_LOG_LEVEL wins\n"
	         "[storage]\n"
	         "url = sqlite:%s\n"
	         "[twilio]\n"
	         "auth_tokens = %s\n",
	         (unsigned)d.port, unused_db, H_TOKEN2);
	util_fmt(path, sizeof(path), "%s/dlrd.conf", d.dir);
	assert_int_equal(h_write_file(path, conf), 0);
	util_strlcpy(d.config_path, path, sizeof(d.config_path));
	h_set_env(&d, "DLRD_TWILIO_AUTH_TOKENS"); /* unset: the file's token */
	h_set_env(&d, "DLRD_SERVER_LOG_LEVEL=info");
	if (h_start(&d) != 0) {
		h_teardown(&d);
		fail_msg("dlrd serve --config did not start with the environment's settings");
	}
	assert_true(h_log_contains(&d, "config="));
	assert_true(h_log_contains(&d, path));
	assert_int_equal(access(unused_db, F_OK), -1);

	/* the file's token verifies, the environment's old one is gone */
	assert_true(h_twilio_body(body, sizeof(body), "SM00000000000000000000000000000c11", "sent",
	                          NULL) > 0);
	assert_int_equal(h_post_twilio(&d, H_STATUS_PATH, H_TOKEN1, body, NULL, &r), 401);
	assert_int_equal(h_post_twilio(&d, H_STATUS_PATH, H_TOKEN2, body, NULL, &r), 200);
	/* the file's max_body_bytes */
	size_t n =
	    h_twilio_body(big, sizeof(big), "SM00000000000000000000000000000c12", "sent", NULL);
	assert_true(n > 0 && n < 400);
	util_strlcpy(big + n, "&Pad=", sizeof(big) - n);
	while (strlen(big) < 401)
		util_strlcpy(big + strlen(big), "x", sizeof(big) - strlen(big));
	assert_int_equal(h_post_twilio(&d, H_STATUS_PATH, H_TOKEN2, big, NULL, &r), 413);
	assert_int_equal(h_count(&d, "sms_message_events"), 1);
	assert_int_equal(h_stop(&d, SIGTERM, 5000, &st), 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	h_teardown(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_sigterm_restart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sigkill_restart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sigterm_drain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sighup_ignored, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stopping_answers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_second_instance_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_locked_database_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_readonly_database_refused, setup, teardown),
	    cmocka_unit_test(test_uncreatable_database),
	    cmocka_unit_test(test_command_line_and_config_file),
	};
	return cmocka_run_group_tests_name("integration/lifecycle", tests, NULL, NULL);
}
