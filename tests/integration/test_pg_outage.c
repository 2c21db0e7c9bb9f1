/* SPDX-License-Identifier: MIT */
/*
 * Integration: PostgreSQL stops in the middle of a load and starts again.
 * Two dlrd nodes share the database; a sender per node posts new events in
 * concurrent waves without pause.  The server is stopped (first with
 * "immediate", a crash: no shutdown checkpoint, crash recovery on start; then
 * with "fast"), kept down for a moment and started again, while the load
 * goes on.  Checked: callbacks are answered 503 with Retry-After and
 * /healthz 503 while it is down; both nodes become healthy again by
 * themselves, same processes; every event answered 2xx before, during or
 * after the outage is stored, and stored once; after the providers' retries
 * (every event not yet acknowledged is sent again until it is) each event is
 * stored exactly once, with one retry-log row per acknowledged request at
 * least.  Then, on one node: the primary turns read-only while the node is
 * idle, and /healthz must say so before any callback fails; and a COMMIT
 * whose wait for a synchronous standby is cancelled is not acknowledged.
 *
 * Runs when $DLRD_TEST_PG_URL is set (PostgreSQL tests enabled, see
 * scripts/pg-test.sh), skipped with a message otherwise.  Since it stops the
 * server, it does not use that shared one (other tests may be running on it
 * in parallel) but starts a private throwaway cluster of its own with
 * scripts/pg-test.sh, and removes it at the end.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../pgtest.h"
#include "harness.h"
#include "util.h"

#define WAVE       8
#define MAX_EVENTS 200000

struct sent {
	uint32_t n; /* event number: message n / 2, "sent" or "delivered" */
	long status;
};

struct sender {
	struct dlrd *d;
	unsigned tag;
	atomic_bool stop;
	char bodies[WAVE][1024];
	struct sent *log; /* one entry per distinct event, last answer */
	size_t n;         /* events started */
	atomic_size_t acked, unavailable, other;
};

struct env {
	char db[96];
	char url[512];
	char env_url[600];
	struct dlrd node[2];
	struct sender s[2];
	pthread_t t[2];
	PGconn *c;
};

/* The private cluster: scripts/pg-test.sh start's output, and its folder. */
static char cluster_dir[512];

/* "<repository>/scripts/pg-test.sh", from this file's path. */
static void script_path(char *out, size_t cap)
{
	const char *me = __FILE__, *t = strstr(me, "tests/integration/");
	util_fmt(out, cap, "%.*sscripts/pg-test.sh", t ? (int)(t - me) : 0, me);
}

/* Starts the private cluster and points DLRD_TEST_PG_URL / _CTL at it. */
static int cluster_start(void)
{
	char script[600], cmd[700], line[1024];
	FILE *p;
	int n = 0;

	script_path(script, sizeof(script));
	util_fmt(cmd, sizeof(cmd), "'%s' start", script);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (fgets(line, sizeof(line), p)) {
		/* export NAME='value' */
		char *eq = strchr(line, '='), *q1, *q2;
		if (strncmp(line, "export ", 7) != 0 || !eq || !(q1 = strchr(eq, '\'')) ||
		    !(q2 = strrchr(q1 + 1, '\'')))
			continue;
		*eq = '\0';
		*q2 = '\0';
		setenv(line + 7, q1 + 1, 1);
		if (!strcmp(line + 7, "DLRD_TEST_PG_DIR"))
			util_strlcpy(cluster_dir, q1 + 1, sizeof(cluster_dir));
		n++;
	}
	return pclose(p) == 0 && n == 3 ? 0 : -1;
}

static void cluster_stop(void)
{
	char script[600], cmd[1300];

	if (!cluster_dir[0])
		return;
	script_path(script, sizeof(script));
	util_fmt(cmd, sizeof(cmd), "'%s' stop '%s'", script, cluster_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "test_pg_outage: could not remove %s\n", cluster_dir);
	cluster_dir[0] = '\0';
}

static void event_body(char *buf, size_t cap, unsigned tag, uint32_t n)
{
	char sid[35];
	h_sid(sid, tag, n / 2);
	assert_true(h_twilio_body(buf, cap, sid, n % 2 ? "delivered" : "sent", NULL) > 0);
}

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	const char *b[WAVE];
	struct h_multi out[WAVE];

	while (!atomic_load(&s->stop) && s->n + WAVE <= MAX_EVENTS) {
		for (size_t i = 0; i < WAVE; i++) {
			s->log[s->n + i].n = (uint32_t)(s->n + i);
			event_body(s->bodies[i], sizeof(s->bodies[i]), s->tag,
			           (uint32_t)(s->n + i));
			b[i] = s->bodies[i];
		}
		h_post_concurrent(s->d, b, WAVE, 0, NULL, NULL, out, 30000);
		bool refused = false;
		for (size_t i = 0; i < WAVE; i++) {
			s->log[s->n + i].status = out[i].status;
			if (out[i].status == 200) {
				atomic_fetch_add(&s->acked, 1);
			} else if (out[i].status == 503) {
				atomic_fetch_add(&s->unavailable, 1);
				refused = true;
			} else {
				atomic_fetch_add(&s->other, 1);
			}
		}
		s->n += WAVE;
		if (refused)
			h_sleep_ms(20); /* as a provider would, only sooner */
	}
	return NULL;
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	const char *env[2];

	*state = e;
	if (pgt_create_db(e->db, sizeof(e->db), e->url, sizeof(e->url)) != 0)
		return -1;
	util_fmt(e->env_url, sizeof(e->env_url), "DLRD_STORAGE_URL=%s", e->url);
	env[0] = e->env_url;
	env[1] = NULL;
	for (int i = 0; i < 2; i++) {
		if (h_setup(&e->node[i], env) != 0 || h_start(&e->node[i]) != 0) {
			char *log = h_read_file(e->node[i].log_path, NULL);
			fprintf(stderr, "test_pg_outage: node %d did not start:\n%s\n", i,
			        log ? log : "");
			free(log);
			return -1;
		}
		e->s[i].d = &e->node[i];
		e->s[i].tag = 0x0a00 + (unsigned)i;
		e->s[i].log = calloc(MAX_EVENTS, sizeof(*e->s[i].log));
		if (!e->s[i].log)
			return -1;
	}
	e->c = pgt_connect(e->url);
	return e->c ? 0 : -1;
}

static int teardown(void **state)
{
	struct env *e = *state;
	if (!e)
		return 0;
	/* whatever happened, the server runs again for the next test */
	pgt_ctl("start");
	for (int i = 0; i < 2; i++) {
		h_teardown(&e->node[i]);
		free(e->s[i].log);
	}
	if (e->c)
		PQfinish(e->c);
	pgt_drop_db(e->db);
	free(e);
	return 0;
}

/* Waits until /healthz answers want on every node. */
static void wait_health(struct env *e, long want, int timeout_ms)
{
	struct h_resp *r = malloc(sizeof(*r));
	int64_t deadline = h_now_ms() + timeout_ms;

	for (int i = 0; i < 2; i++) {
		while (h_get(&e->node[i], "/healthz", r) != want) {
			if (h_now_ms() > deadline)
				fail_msg("node %d: /healthz is %ld, not %ld, after %d ms", i,
				         r->status, want, timeout_ms);
			h_sleep_ms(50);
		}
	}
	free(r);
}

/* The stored (message, status) pairs of one sender, as a bitmap over its
 * event numbers; counts pairs stored more than once into *twice. */
static uint8_t *stored_events(struct env *e, unsigned tag, size_t *twice)
{
	uint8_t *seen = calloc(MAX_EVENTS, 1);
	char prefix[16];
	PGresult *r;

	util_fmt(prefix, sizeof(prefix), "SM%08x", tag);
	r = PQexec(e->c, "SELECT provider_message_id, raw_status FROM sms_message_events");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	*twice = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		const char *sid = PQgetvalue(r, i, 0), *st = PQgetvalue(r, i, 1);
		if (strncmp(sid, prefix, 10) != 0)
			continue;
		uint64_t msg = strtoull(sid + 10, NULL, 16);
		uint64_t n = msg * 2 + (strcmp(st, "delivered") == 0);
		assert_true(n < MAX_EVENTS);
		if (seen[n])
			(*twice)++;
		seen[n] = 1;
	}
	PQclear(r);
	return seen;
}

/* A new connection for the checks: the server's restarts ended the old. */
static void reconnect(struct env *e)
{
	PQfinish(e->c);
	e->c = pgt_connect(e->url);
	assert_non_null(e->c);
}

/* Every event acknowledged so far is stored, and none twice. */
static void check_acked_stored(struct env *e)
{
	reconnect(e);
	for (int i = 0; i < 2; i++) {
		struct sender *s = &e->s[i];
		size_t twice, missing = 0;
		uint8_t *seen = stored_events(e, s->tag, &twice);
		for (size_t k = 0; k < s->n; k++)
			if (s->log[k].status == 200 && !seen[k])
				missing++;
		free(seen);
		if (missing || twice)
			fail_msg("node %d: %zu acknowledged events missing, %zu stored twice", i,
			         missing, twice);
	}
}

static void outage(struct env *e, const char *mode)
{
	struct h_resp *r = malloc(sizeof(*r));
	char body[1024], cmd[32];
	size_t acked0[2], unavail0[2];

	for (int i = 0; i < 2; i++) {
		acked0[i] = atomic_load(&e->s[i].acked);
		unavail0[i] = atomic_load(&e->s[i].unavailable);
	}
	util_fmt(cmd, sizeof(cmd), "stop %s", mode);
	assert_int_equal(pgt_ctl(cmd), 0);

	/* down: callbacks 503 + Retry-After, /healthz 503 */
	wait_health(e, 503, 10000);
	event_body(body, sizeof(body), 0x0bad, 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(h_post_status(&e->node[i], body, r), 503);
		assert_string_equal(r->retry_after, "1");
		assert_int_equal(h_get(&e->node[i], "/healthz", r), 503);
	}
	/* the senders see the outage too */
	for (int64_t w0 = h_now_ms(); h_now_ms() - w0 < 15000;) {
		if (atomic_load(&e->s[0].unavailable) > unavail0[0] &&
		    atomic_load(&e->s[1].unavailable) > unavail0[1])
			break;
		h_sleep_ms(20);
	}
	for (int i = 0; i < 2; i++)
		assert_true(atomic_load(&e->s[i].unavailable) > unavail0[i]);

	/* up again: both nodes recover by themselves, same processes */
	assert_int_equal(pgt_ctl("start"), 0);
	wait_health(e, 200, 15000);
	int64_t t0 = h_now_ms();
	for (int i = 0; i < 2; i++) {
		/* the load goes through again */
		while (atomic_load(&e->s[i].acked) < acked0[i] + 50) {
			if (h_now_ms() - t0 > 15000)
				fail_msg("node %d: no progress after the restart", i);
			h_sleep_ms(20);
		}
		int st;
		assert_true(e->node[i].pid > 0);
		assert_int_equal(h_wait_exit(&e->node[i], 0, &st), -1); /* still running */
	}
	free(r);
}

static void test_database_restarts_under_load(void **state)
{
	struct env *e = *state;
	struct h_resp *r = malloc(sizeof(*r));
	char body[1024];

	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&e->t[i], NULL, sender_main, &e->s[i]), 0);
	for (int64_t w0 = h_now_ms(); h_now_ms() - w0 < 15000;) {
		if (atomic_load(&e->s[0].acked) > 0 && atomic_load(&e->s[1].acked) > 0)
			break;
		h_sleep_ms(20);
	}
	for (int i = 0; i < 2; i++)
		assert_true(atomic_load(&e->s[i].acked) > 0);

	outage(e, "immediate"); /* a crash: recovery from the WAL */
	h_sleep_ms(500);
	outage(e, "fast"); /* a clean restart */
	h_sleep_ms(500);

	for (int i = 0; i < 2; i++) {
		atomic_store(&e->s[i].stop, true);
		pthread_join(e->t[i], NULL);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(atomic_load(&e->s[i].other), 0);
		assert_true(atomic_load(&e->s[i].unavailable) > 0);
	}
	/* the promise: every 2xx is stored, once */
	check_acked_stored(e);

	/* the providers retry what was not acknowledged, on the other node */
	size_t acked = 0, events = 0;
	for (int i = 0; i < 2; i++) {
		struct sender *s = &e->s[i];
		events += s->n;
		for (size_t k = 0; k < s->n; k++) {
			int64_t deadline = h_now_ms() + 10000;
			while (s->log[k].status != 200) {
				assert_true(h_now_ms() < deadline);
				event_body(body, sizeof(body), s->tag, (uint32_t)k);
				s->log[k].status = h_post_status(&e->node[1 - i], body, r);
			}
		}
		acked += atomic_load(&s->acked);
	}
	check_acked_stored(e);
	assert_int_equal(pgt_int(e->c, "SELECT count(*) FROM sms_message_events"), (int64_t)events);
	assert_int_equal(pgt_int(e->c, "SELECT count(*) FROM sms_messages"), (int64_t)(events / 2));
	assert_int_equal(pgt_int(e->c, "SELECT count(*) FROM sms_messages WHERE current_status"
	                               " <> 'delivered' OR event_count <> 2 OR is_final <> 1"),
	                 0);
	/* a retry-log row for every acknowledged request (a batch that committed
	 * just before its answer was lost adds rows for requests answered 503) */
	assert_true(pgt_int(e->c, "SELECT count(*) FROM sms_callback_log") >= (int64_t)acked);
	assert_int_equal(pgt_int(e->c, "SELECT count(*) FROM sms_callback_log WHERE duplicate = 0"),
	                 (int64_t)events);
	for (int i = 0; i < 2; i++) {
		assert_true(h_log_contains(&e->node[i], "event=storage_disconnected"));
		assert_true(h_log_contains(&e->node[i], "event=storage_recovered"));
		/* the password-free description of the database only */
		assert_true(h_log_contains(&e->node[i], "backend=postgresql host="));
	}
	printf("test_pg_outage: %zu events, %zu acknowledged during the load, %zu + %zu refused"
	       " with 503\n",
	       events, acked, atomic_load(&e->s[0].unavailable), atomic_load(&e->s[1].unavailable));
	free(r);
}

/* One node for the tests below: env's node[0], on a database of its own. */
static int setup1(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	const char *env[2];

	*state = e;
	if (pgt_create_db(e->db, sizeof(e->db), e->url, sizeof(e->url)) != 0)
		return -1;
	util_fmt(e->env_url, sizeof(e->env_url), "DLRD_STORAGE_URL=%s", e->url);
	env[0] = e->env_url;
	env[1] = NULL;
	if (h_setup(&e->node[0], env) != 0 || h_start(&e->node[0]) != 0)
		return -1;
	e->c = pgt_connect(e->url);
	return e->c ? 0 : -1;
}

static int teardown1(void **state)
{
	struct env *e = *state;
	if (!e)
		return 0;
	/* the cluster is this file's own: put back what a test changed */
	if (e->c) {
		pgt_exec(e->c, "ALTER SYSTEM RESET default_transaction_read_only");
		pgt_exec(e->c, "ALTER SYSTEM RESET synchronous_standby_names");
		pgt_exec(e->c, "SELECT pg_reload_conf()");
		PQfinish(e->c);
	}
	h_teardown(&e->node[0]);
	pgt_drop_db(e->db);
	free(e);
	return 0;
}

/* Waits until node 0's /healthz answers want; false after timeout_ms. */
static bool health_is(struct env *e, long want, int timeout_ms)
{
	struct h_resp *r = malloc(sizeof(*r));
	int64_t deadline = h_now_ms() + timeout_ms;
	bool ok;

	while (!(ok = h_get(&e->node[0], "/healthz", r) == want) && h_now_ms() < deadline)
		h_sleep_ms(50);
	free(r);
	return ok;
}

/*
 * The primary turns read-only while dlrd is idle (default_transaction_read_only
 * set and reloaded, as a fencing script or a managed service whose disk is
 * nearly full does): every batch would fail with SQLSTATE 25006, so /healthz
 * must say 503 without waiting for a callback to fail first, callbacks get
 * 503, and all is well again once the server is writable.
 */
static void test_read_only_primary(void **state)
{
	struct env *e = *state;
	struct h_resp *r = malloc(sizeof(*r));
	char body[1024], sid[35];

	h_sid(sid, 0x0c00, 1);
	assert_true(h_twilio_body(body, sizeof(body), sid, "sent", NULL) > 0);
	assert_int_equal(h_post_status(&e->node[0], body, r), 200);
	assert_true(health_is(e, 200, 5000));

	assert_int_equal(pgt_exec(e->c, "ALTER SYSTEM SET default_transaction_read_only = on"), 0);
	assert_int_equal(pgt_exec(e->c, "SELECT pg_reload_conf()"), 0);
	/* idle: the probe (every 5 s while healthy) must find out by itself */
	if (!health_is(e, 503, 12000))
		fail_msg("/healthz still 200 on a read-only server");
	h_twilio_body(body, sizeof(body), sid, "delivered", NULL);
	assert_int_equal(h_post_status(&e->node[0], body, r), 503);
	assert_string_equal(r->retry_after, "1");

	assert_int_equal(pgt_exec(e->c, "ALTER SYSTEM RESET default_transaction_read_only"), 0);
	assert_int_equal(pgt_exec(e->c, "SELECT pg_reload_conf()"), 0);
	assert_true(health_is(e, 200, 10000));
	assert_int_equal(h_post_status(&e->node[0], body, r), 200);
	assert_int_equal(pgt_int(e->c, "SELECT count(*) FROM sms_message_events"), 2);
	free(r);
}

/*
 * A synchronous standby is configured but does not answer, so dlrd's COMMIT
 * waits for it; an administrator (or a tool) cancels the wait.  PostgreSQL
 * then ends the COMMIT successfully, with a WARNING that the transaction
 * committed locally but may not have reached the standby: the promise of a
 * 2xx (it survives the loss of the primary, deployment.md) does not hold,
 * so the callback must get 503 and its resend be counted as a duplicate.
 */
static void test_sync_standby_wait_cancelled(void **state)
{
	struct env *e = *state;
	struct h_resp *r = malloc(sizeof(*r));
	char body[1024], sid[35];
	int64_t pid = PGT_ERR;

	assert_true(health_is(e, 200, 5000));
	/* warnings not sent to clients by default, as some roles have it:
	 * dlrd's session must still hear this one (its next batch reconnects) */
	assert_int_equal(pgt_exec(e->c, "ALTER DATABASE %s SET client_min_messages = error", e->db),
	                 0);
	int64_t t_us = pgt_int(e->c, "SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::int8");
	assert_true(t_us != PGT_ERR);
	assert_true(pgt_int(e->c,
	                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
	                    " WHERE application_name = 'dlrd' AND datname = current_database()") >=
	            0);
	/* pg_terminate_backend() only signals: wait until those backends are
	 * gone, or the callback's batch may still find its connection open and
	 * lose it mid-way (503 at once, and no COMMIT to wait) */
	for (int64_t deadline = h_now_ms() + 10000;;) {
		int64_t left =
		    pgt_int(e->c,
		            "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
		            " 'dlrd' AND datname = current_database() AND backend_start <="
		            " to_timestamp(%lld / 1e6)",
		            (long long)t_us);
		if (left == 0)
			break;
		assert_true(h_now_ms() < deadline);
		h_sleep_ms(20);
	}
	assert_int_equal(pgt_exec(e->c, "ALTER SYSTEM SET synchronous_standby_names = 'ghost'"), 0);
	assert_int_equal(pgt_exec(e->c, "SELECT pg_reload_conf()"), 0);
	h_sid(sid, 0x0c01, 1);
	assert_true(h_twilio_body(body, sizeof(body), sid, "delivered", NULL) > 0);
	struct h_async *a = h_async_post_status(&e->node[0], body);
	/* dlrd's COMMIT waits for the standby (after an idle probe that may be
	 * waiting for it too, 5 s at most); cancel that wait */
	for (int64_t deadline = h_now_ms() + 20000; pid == PGT_ERR;) {
		pid =
		    pgt_int(e->c, "SELECT pid FROM pg_stat_activity WHERE application_name = 'dlrd'"
		                  " AND wait_event = 'SyncRep' AND query = 'COMMIT' LIMIT 1");
		assert_true(h_now_ms() < deadline);
		if (pid == PGT_ERR)
			h_sleep_ms(20);
	}
	assert_int_equal(pgt_int(e->c, "SELECT pg_cancel_backend(%lld)::int", (long long)pid), 1);
	long st = h_async_wait(a, r);
	if (st != 503)
		fail_msg("a commit that may not have reached the standby was answered %ld", st);

	assert_int_equal(pgt_exec(e->c, "ALTER SYSTEM RESET synchronous_standby_names"), 0);
	assert_int_equal(pgt_exec(e->c, "SELECT pg_reload_conf()"), 0);
	assert_true(health_is(e, 200, 15000));
	/* the provider's retry: the event was committed, the retry is a duplicate */
	assert_int_equal(h_post_status(&e->node[0], body, r), 200);
	assert_int_equal(pgt_int(e->c, "SELECT count(*) FROM sms_message_events"), 1);
	assert_int_equal(pgt_int(e->c, "SELECT count(*) FROM sms_callback_log WHERE duplicate = 1"),
	                 1);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_database_restarts_under_load, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_only_primary, setup1, teardown1),
	    cmocka_unit_test_setup_teardown(test_sync_standby_wait_cancelled, setup1, teardown1),
	};
	int rc;

	if (!pgt_server())
		return pgt_not_configured("test_pg_outage");
	signal(SIGPIPE, SIG_IGN);
	if (cluster_start() != 0) {
		fprintf(stderr, "test_pg_outage: scripts/pg-test.sh start failed\n");
		cluster_stop();
		return 1;
	}
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	cluster_stop();
	return rc;
}
