/* SPDX-License-Identifier: MIT */
/*
 * Integration: storage faults.  While the fault file exists every SQLite
 * write and sync in dlrd fails (an I/O error, or a full disk when the file
 * starts with 'f'); callbacks must then be refused with 503 and Retry-After,
 * /healthz must say 503, and nothing may be written.  Once the fault is
 * gone, /healthz recovers by itself (the writer probes every second) and the
 * same callbacks are stored exactly once.  A failed fsync of the WAL alone
 * is different: final until a restart.  A full commit queue is also 503
 * with Retry-After, and what it refused is not stored; a client that leaves
 * while its request is parked gives its queue slot back all the same.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "util.h"

#define UNAVAILABLE "dlrd_callbacks_total{provider=\"twilio\",outcome=\"unavailable\"}"
#define STORED      "dlrd_callbacks_total{provider=\"twilio\",outcome=\"stored\"}"
#define N_FAILED    3

static int setup(void **state)
{
	return h_fixture_start(state, NULL);
}

/* Starts dlrd with the extra settings given as the test's initial state. */
static int setup_env(void **state)
{
	const char *const *env = *state;
	return h_fixture_start(state, env);
}

static const char *const small_queue[] = {"DLRD_STORAGE_QUEUE_CAPACITY=1", NULL};
static const char *const queue_of_two[] = {"DLRD_STORAGE_QUEUE_CAPACITY=2", NULL};

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

static void body_for(char *body, size_t cap, unsigned tag, unsigned n, const char *status)
{
	char sid[35];
	h_sid(sid, tag, n);
	assert_true(h_twilio_body(body, cap, sid, status, NULL) > 0);
}

/* Table counts as "messages/events/log/review". */
static const char *counts(struct dlrd *d, char *buf, size_t cap)
{
	util_fmt(buf, cap, "%lld/%lld/%lld/%lld", (long long)h_count(d, "sms_messages"),
	         (long long)h_count(d, "sms_message_events"),
	         (long long)h_count(d, "sms_callback_log"), (long long)h_count(d, "review_queue"));
	return buf;
}

static void storage_failure(struct dlrd *d, const char *fault, unsigned tag)
{
	char base[1024], body[N_FAILED][1024], buf[64], sid[35];
	struct h_resp r;
	int64_t t0, recovered_ms;

	/* a stored baseline */
	body_for(base, sizeof(base), tag, 0, "sent");
	assert_int_equal(h_post_status(d, base, &r), 200);
	assert_string_equal(counts(d, buf, sizeof(buf)), "1/1/1/0");

	/* the fault: every callback, new or duplicate, is refused */
	assert_int_equal(h_write_file(d->fault_path, fault), 0);
	for (unsigned i = 0; i < N_FAILED; i++) {
		body_for(body[i], sizeof(body[i]), tag, i + 1, "delivered");
		assert_int_equal(h_post_status(d, body[i], &r), 503);
		assert_string_equal(r.retry_after, "1");
		assert_string_equal(r.body, "temporarily unavailable, retry\n");
	}
	assert_int_equal(h_post_status(d, base, &r), 503);
	assert_string_equal(r.retry_after, "1");
	assert_int_equal(h_get(d, "/healthz", &r), 503);
	assert_string_equal(r.body, "storage unavailable\n");
	assert_string_equal(counts(d, buf, sizeof(buf)), "1/1/1/0");
	assert_int_equal(h_metric(d, UNAVAILABLE), N_FAILED + 1);
	assert_int_equal(h_metric(d, "dlrd_commit_failures_total"), N_FAILED + 1);
	assert_int_equal(h_metric(d, "dlrd_storage_healthy"), 0);
	/* it stays unhealthy while the fault lasts (the probe fails too) */
	h_sleep_ms(1200);
	assert_int_equal(h_get(d, "/healthz", &r), 503);
	assert_string_equal(counts(d, buf, sizeof(buf)), "1/1/1/0");

	/* the fault goes away: healthy again without any traffic */
	assert_int_equal(unlink(d->fault_path), 0);
	t0 = h_now_ms();
	while (h_get(d, "/healthz", &r) != 200 && h_now_ms() - t0 < 5000)
		h_sleep_ms(50);
	recovered_ms = h_now_ms() - t0;
	assert_int_equal(r.status, 200);
	if (recovered_ms > 3000)
		fail_msg("/healthz took %lld ms to recover", (long long)recovered_ms);
	assert_int_equal(h_metric(d, "dlrd_storage_healthy"), 1);

	/* the same callbacks again: stored exactly once */
	for (unsigned i = 0; i < N_FAILED; i++)
		assert_int_equal(h_post_status(d, body[i], &r), 200);
	assert_int_equal(h_post_status(d, base, &r), 200);
	assert_string_equal(counts(d, buf, sizeof(buf)), "4/4/5/0");
	for (unsigned i = 0; i <= N_FAILED; i++) {
		h_sid(sid, tag, i);
		assert_int_equal(h_sql_int(d,
		                           "SELECT count(*) FROM sms_message_events WHERE"
		                           " provider_message_id = %Q",
		                           sid),
		                 1);
	}
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_messages WHERE"
	                              " current_status = 'delivered'"),
	                 N_FAILED);
	/* and a later retry is a duplicate */
	assert_int_equal(h_post_status(d, body[0], &r), 200);
	assert_string_equal(counts(d, buf, sizeof(buf)), "4/4/6/0");
	assert_true(h_log_contains(d, "event=commit_failed"));
	assert_true(h_log_contains(d, "event=storage_recovered"));
}

static void test_io_error(void **state)
{
	H_SQLITE_ONLY("the fault file drives dlrd's SQLite VFS");
	storage_failure(*state, "e", 40);
	assert_true(h_log_contains(*state, "I/O error"));
}

static void test_disk_full(void **state)
{
	H_SQLITE_ONLY("the fault file drives dlrd's SQLite VFS");
	storage_failure(*state, "f", 41);
	assert_true(h_log_contains(*state, "full"));
}

/* The fault arrives while a request is parked for the commit: it is
 * answered 503 (not 200), and nothing of it is stored. */
static void test_fault_during_commit_wait(void **state)
{
	struct dlrd *d = *state;
	char body[1024], buf[64];
	struct h_resp r;
	void *lock;
	struct h_async *a;

	H_SQLITE_ONLY("the fault file drives dlrd's SQLite VFS");
	body_for(body, sizeof(body), 42, 1, "delivered");
	lock = h_db_lock(d);
	assert_non_null(lock);
	a = h_async_post_status(d, body);
	assert_non_null(a);
	h_sleep_ms(300); /* the writer is now waiting for the lock */
	assert_int_equal(h_write_file(d->fault_path, "e"), 0);
	h_db_unlock(lock);
	assert_int_equal(h_async_wait(a, &r), 503);
	assert_string_equal(r.retry_after, "1");
	assert_string_equal(counts(d, buf, sizeof(buf)), "0/0/0/0");
	assert_int_equal(unlink(d->fault_path), 0);
	assert_int_equal(h_wait_healthy(d, 5000), 0);
	assert_int_equal(h_post_status(d, body, &r), 200);
	assert_string_equal(counts(d, buf, sizeof(buf)), "1/1/1/0");
}

/* A failed fsync of the WAL is final: the batch it covered is refused even
 * though SQLite committed it, and so is everything after, with /healthz at
 * 503, until a restart (after a failed fsync the kernel may have dropped
 * pages nobody can name).  After the restart the provider's retry is stored
 * exactly once. */
static void test_sync_failure_is_final(void **state)
{
	struct dlrd *d = *state;
	char base[1024], body[1024], later[1024], sid[35];
	struct h_resp r;
	int status = 0;

	H_SQLITE_ONLY("the fault file drives dlrd's SQLite VFS");
	body_for(base, sizeof(base), 44, 0, "sent");
	body_for(body, sizeof(body), 44, 1, "sent");
	body_for(later, sizeof(later), 44, 2, "sent");
	assert_int_equal(h_post_status(d, base, &r), 200);

	assert_int_equal(h_write_file(d->fault_path, "s"), 0); /* syncs fail, writes pass */
	assert_int_equal(h_post_status(d, body, &r), 503);
	assert_string_equal(r.retry_after, "1");
	assert_true(h_log_contains(d, "event=sync_failed"));
	assert_int_equal(unlink(d->fault_path), 0);
	/* the disk looks fine again, but nothing is acknowledged any more */
	h_sleep_ms(1500);
	assert_int_equal(h_get(d, "/healthz", &r), 503);
	int64_t n_lat = h_metric(d, "dlrd_commit_duration_seconds_count");
	int64_t n_batch = h_metric(d, "dlrd_commit_batch_size_count");
	int64_t n_fail = h_metric(d, "dlrd_commit_failures_total");
	assert_int_equal(h_post_status(d, later, &r), 503);
	assert_int_equal(h_post_status(d, base, &r), 503);
	assert_int_equal(h_metric(d, "dlrd_storage_healthy"), 0);
	/* those two were refused without a transaction: failures, but no
	 * commit took 0 s (before the fix each was observed as one, so the
	 * latency histogram looked fastest exactly while nothing committed) */
	assert_int_equal(h_metric(d, "dlrd_commit_duration_seconds_count"), n_lat);
	assert_int_equal(h_metric(d, "dlrd_commit_batch_size_count"), n_batch);
	assert_int_equal(h_metric(d, "dlrd_commit_failures_total"), n_fail + 2);

	/* a restart recovers from what is on disk; the retries are welcome */
	assert_int_equal(h_stop(d, SIGTERM, 10000, &status), 0);
	assert_int_equal(h_start(d), 0);
	assert_int_equal(h_post_status(d, body, &r), 200);
	assert_int_equal(h_post_status(d, later, &r), 200);
	for (unsigned i = 0; i <= 2; i++) {
		h_sid(sid, 44, i);
		assert_int_equal(h_sql_int(d,
		                           "SELECT count(*) FROM sms_message_events WHERE"
		                           " provider_message_id = %Q",
		                           sid),
		                 1);
	}
	/* what was refused after the failed sync was never applied: base has
	 * only its first delivery and later only the one after the restart
	 * (body's first try was committed, only its sync failed) */
	for (unsigned i = 0; i <= 2; i += 2) {
		h_sid(sid, 44, i);
		assert_int_equal(h_sql_int(d,
		                           "SELECT count(*) FROM sms_callback_log l JOIN"
		                           " sms_message_events e ON e.id = l.event_id"
		                           " WHERE e.provider_message_id = %Q",
		                           sid),
		                 1);
	}
}

/* Runs d under the slow-disk shim (tests/integration/shim/wb_error.c): once
 * the test creates the file whose path is left in arm (shim_arm()), the next
 * fdatasync of the WAL by thread (NULL: the syncer) takes sleep_ms, and
 * fails with EIO at the end unless eio is false. */
static void use_shim(struct dlrd *d, char *arm, size_t cap, const char *thread,
                     const char *sleep_ms, bool eio)
{
	const char *prev = getenv("ASAN_OPTIONS");
	char kv[512];

	util_fmt(arm, cap, "%s/shim.arm", d->dir);
	util_fmt(kv, sizeof(kv), "DLRD_SHIM_ARM=%s", arm);
	h_set_env(d, kv);
	h_set_env(d, "LD_PRELOAD=" DLRD_SHIM_WB_ERROR);
	util_fmt(kv, sizeof(kv), "DLRD_SHIM_SLEEP_MS=%s", sleep_ms);
	h_set_env(d, kv);
	if (thread) {
		util_fmt(kv, sizeof(kv), "DLRD_SHIM_THREAD=%s", thread);
		h_set_env(d, kv);
	}
	if (!eio)
		h_set_env(d, "DLRD_SHIM_EIO=0");
	/* under ASan: the shim is preloaded ahead of the sanitizer's runtime */
	util_fmt(kv, sizeof(kv), "ASAN_OPTIONS=%s%sverify_asan_link_order=0", prev ? prev : "",
	         prev ? ":" : "");
	h_set_env(d, kv);
}

static void shim_arm(const char *arm)
{
	assert_int_equal(h_write_file(arm, "1"), 0);
}

/* A stall as dlrd must show it: /healthz turns 503 within wait_ms, the
 * stall is logged, and a new callback (body) is refused at once with
 * Retry-After instead of waiting behind it.  Returns how long /healthz took
 * to turn. */
static int64_t expect_stall(struct dlrd *d, int64_t wait_ms, const char *body)
{
	struct h_resp r;
	int64_t t0 = h_now_ms(), took;
	long status;

	while ((status = h_get(d, "/healthz", &r)) == 200 && h_now_ms() - t0 < wait_ms)
		h_sleep_ms(100);
	took = h_now_ms() - t0;
	assert_int_equal(status, 503);
	assert_int_equal(h_metric(d, "dlrd_storage_healthy"), 0);
	assert_true(h_log_contains(d, "event=storage_stalled"));
	assert_int_equal(h_post_status(d, body, &r), 503);
	assert_string_equal(r.retry_after, "1");
	assert_non_null(strstr(r.body, "storage is not answering"));
	assert_true(r.elapsed_ms < 1000);
	return took;
}

/* A failing disk: the syncer's fdatasync of the WAL hangs for 7 s, and the
 * writeback error that covers the batch is reported (once, as Linux does
 * per open file) to whichever fdatasync of that descriptor returns first.
 * With no other traffic the writer's idle probe (every 5 s) syncs the WAL
 * meanwhile; whoever collects the error, the batch must get 503, never 200.
 * The failing disk is the LD_PRELOAD shim tests/integration/shim/wb_error.c. */
static void test_sync_error_reported_to_the_probe(void **state)
{
	struct dlrd d;
	char arm[300], body[1024];
	struct h_resp r;

	(void)state;
	H_SQLITE_ONLY("the shim fails the SQLite WAL's fdatasync");
	assert_int_equal(h_setup(&d, NULL), 0);
	use_shim(&d, arm, sizeof(arm), NULL, "7000", true);
	assert_int_equal(h_start(&d), 0);

	shim_arm(arm);
	body_for(body, sizeof(body), 45, 0, "delivered");
	assert_int_equal(h_post_status(&d, body, &r), 503);
	assert_true(r.elapsed_ms >= 6000); /* the probe ran during the slow sync */
	assert_int_equal(h_get(&d, "/healthz", &r), 503);
	h_teardown(&d);
}

/* Storage that stops answering without failing (a disk whose fdatasync
 * hangs, a database table locked by someone else) makes /healthz 503 once
 * a commit or a sync has run for 5 s, and logs it; a new request then gets
 * 503 at once; the request waiting for it is answered when storage returns,
 * and /healthz recovers.  The stall:
 * under SQLite the shim's 8 s fdatasync without an error, under PostgreSQL
 * the tables locked by the test (dlrd's statement_timeout is 10 s). */
static void test_stalled_storage_unhealthy(void **state)
{
	struct dlrd d;
	char arm[300], body[1024], later[1024];
	struct h_resp r;
	struct h_async *a;
	void *lock = NULL;

	(void)state;
	assert_int_equal(h_setup(&d, NULL), 0);
	if (!h_pg())
		use_shim(&d, arm, sizeof(arm), NULL, "8000", false);
	assert_int_equal(h_start(&d), 0);
	if (h_pg()) {
		lock = h_db_lock(&d);
		assert_non_null(lock);
	} else {
		shim_arm(arm);
	}

	body_for(body, sizeof(body), 47, 0, "delivered");
	a = h_async_post_status(&d, body);
	assert_non_null(a);
	/* not before the 5 s; meanwhile a new callback is refused at once */
	body_for(later, sizeof(later), 47, 1, "delivered");
	assert_true(expect_stall(&d, 12000, later) >= 4500);
	h_db_unlock(lock);
	assert_int_equal(h_async_wait(a, &r), 200);
	assert_int_equal(h_wait_healthy(&d, 5000), 0);
	/* written when the last running stage ends, which may be a moment
	 * after /healthz recovers (the probe, say, waiting behind the sync) */
	assert_true(h_wait_log(&d, "event=storage_unstalled", 5000));
	assert_int_equal(h_count(&d, "sms_message_events"), 1);
	assert_int_equal(h_post_status(&d, later, &r), 200); /* the retry is welcome */
	assert_int_equal(h_count(&d, "sms_message_events"), 2);
	h_teardown(&d);
}

/* The same stall met first by the writer's idle probe (a write transaction
 * and an fdatasync of the WAL, every 5 s without traffic), which is where a
 * disk that hangs on an idle server is met: /healthz must turn 503 once it
 * has run for 5 s, and a new callback must get 503 at once instead of
 * waiting behind it.  Before the fix only a batch's commit and the syncer's
 * fdatasync were watched: /healthz said 200 for as long as the probe hung,
 * and every new callback was parked behind it. */
static void test_stalled_probe_unhealthy(void **state)
{
	struct dlrd d;
	char arm[300], body[1024];
	struct h_resp r;

	(void)state;
	H_SQLITE_ONLY("the shim hangs the SQLite WAL's fdatasync");
	assert_int_equal(h_setup(&d, NULL), 0);
	/* the probe's fdatasync */
	use_shim(&d, arm, sizeof(arm), "dlrd-writer", "10000", false);
	assert_int_equal(h_start(&d), 0);
	shim_arm(arm);

	/* no traffic: the probe starts within 5 s and hangs for 10 s; 5 s
	 * into it is a stall */
	body_for(body, sizeof(body), 48, 0, "delivered");
	expect_stall(&d, 12500, body);
	/* the probe returns: healthy again, and the callback is stored */
	assert_int_equal(h_wait_healthy(&d, 10000), 0);
	/* written when the last running stage ends, which may be a moment
	 * after /healthz recovers (the probe, say, waiting behind the sync) */
	assert_true(h_wait_log(&d, "event=storage_unstalled", 5000));
	assert_int_equal(h_post_status(&d, body, &r), 200);
	assert_int_equal(h_count(&d, "sms_message_events"), 1);
	h_teardown(&d);
}

/* The writer's end-of-cycle checkpoint (store_maintain()) on a slow disk:
 * once the WAL holds CKPT_LIMIT cycles, the writer waits for the
 * checkpointer's checkpoint to end before it copies the rest.  A wait of
 * over 5 s is a stall like a commit's: /healthz 503 and new callbacks 503
 * at once, until it ends.  Before the fix the wait was not watched:
 * /healthz said 200 and new callbacks were parked behind it.  The slow disk:
 * a checkpoint cycle of 16 pages and a checkpointer that takes 9 s
 * (DLRD_TEST_CKPT_PAGES, DLRD_TEST_CKPT_DELAY_MS, store/sqlite.c). */
static void test_stalled_checkpoint_unhealthy(void **state)
{
	struct dlrd d;
	char body[1024];
	struct h_resp r;
	struct h_async *a;
	int64_t t0;
	unsigned i;

	(void)state;
	H_SQLITE_ONLY("the SQLite checkpointer");
	assert_int_equal(h_setup(&d, NULL), 0);
	h_set_env(&d, "DLRD_TEST_CKPT_PAGES=16");
	h_set_env(&d, "DLRD_TEST_CKPT_DELAY_MS=9000");
	assert_int_equal(h_start(&d), 0);

	/* callbacks one after the other until one waits for the checkpoint */
	t0 = h_now_ms();
	for (i = 0;; i++) {
		int64_t t1, stored = h_metric(&d, STORED);
		assert_true(h_now_ms() - t0 < 20000);
		body_for(body, sizeof(body), 49, i, "delivered");
		a = h_async_post_status(&d, body);
		assert_non_null(a);
		t1 = h_now_ms();
		while (h_metric(&d, STORED) == stored && h_now_ms() - t1 < 1000)
			h_sleep_ms(20);
		if (h_metric(&d, STORED) == stored)
			break; /* parked behind the writer's wait */
		assert_int_equal(h_async_wait(a, NULL), 200);
	}
	/* once the wait has lasted 5 s it is a stall */
	body_for(body, sizeof(body), 49, 1000, "delivered");
	expect_stall(&d, 7000, body);
	assert_int_equal(h_async_wait(a, NULL), 200); /* answered when it ends */
	assert_int_equal(h_wait_healthy(&d, 10000), 0);
	assert_int_equal(h_post_status(&d, body, &r), 200);
	h_teardown(&d);
}

/* A transaction takes at most storage.max_batch_events events (one request
 * may carry a thousand), however many requests wait.  Here the cap is 3 and
 * each callback one event: while the syncer's fdatasync hangs for 3 s (the
 * shim; under the 5 s that makes a stall), the writer commits the first
 * callbacks and then waits to hand the syncer the next batch, and ten more
 * pile up in the queue.  Once the sync returns, they must go in
 * transactions of 3 at most: no batch above the histogram's "4" bucket.
 * Before the cap they went in one. */
static void test_batch_events_bounded(void **state)
{
	struct dlrd d;
	char arm[300], body[1024];
	struct h_async *a[13];
	unsigned i;

	(void)state;
	H_SQLITE_ONLY("the shim hangs the SQLite WAL's fdatasync");
	assert_int_equal(h_setup(&d, NULL), 0);
	h_set_env(&d, "DLRD_STORAGE_MAX_BATCH_EVENTS=3");
	use_shim(&d, arm, sizeof(arm), NULL, "3000", false);
	assert_int_equal(h_start(&d), 0);
	shim_arm(arm);

	for (i = 0; i < 13; i++) {
		body_for(body, sizeof(body), 50, i, "delivered");
		a[i] = h_async_post_status(&d, body);
		assert_non_null(a[i]);
		if (i < 3) /* the first ones alone: synced, handed over, waiting */
			h_sleep_ms(300);
	}
	for (i = 0; i < 13; i++)
		assert_int_equal(h_async_wait(a[i], NULL), 200);
	assert_int_equal(h_count(&d, "sms_message_events"), 13);
	assert_int_equal(h_metric(&d, "dlrd_commit_batch_size_bucket{le=\"4\"}"),
	                 h_metric(&d, "dlrd_commit_batch_size_count"));
	assert_true(h_metric(&d, "dlrd_commit_batch_size_count") >= 5); /* 13 / 3 */
	h_teardown(&d);
}

/* Waits (10 s at most) until metric has the value; returns the last one. */
static long long wait_metric(struct dlrd *d, const char *metric, long long want)
{
	int64_t t0 = h_now_ms();
	long long v;

	while ((v = h_metric(d, metric)) != want && h_now_ms() - t0 < 10000)
		h_sleep_ms(5);
	return v;
}

/* With a queue of one, a second request while the writer is stuck (here: on
 * a database lock held by the test) finds the queue full: the first one's
 * slot counts until it is answered, also once the writer has taken it. */
static void test_queue_full(void **state)
{
	struct dlrd *d = *state;
	char a_body[1024], b_body[1024], buf[64], sid[35];
	struct h_resp r;
	struct h_async *a;
	void *lock;

	body_for(a_body, sizeof(a_body), 43, 1, "sent");
	body_for(b_body, sizeof(b_body), 43, 2, "sent");

	lock = h_db_lock(d);
	assert_non_null(lock);
	a = h_async_post_status(d, a_body); /* taken by the writer, which waits */
	assert_non_null(a);
	/* parked, and no longer in the queue: in the writer */
	assert_int_equal(wait_metric(d, "dlrd_requests_parked", 1), 1);
	assert_int_equal(wait_metric(d, "dlrd_queue_depth", 0), 0);
	assert_int_equal(h_post_status(d, b_body, &r), 503);
	assert_string_equal(r.retry_after, "1");
	assert_non_null(strstr(r.body, "queue is full"));
	/* refused at once, not parked (parked, it would wait for the lock: the
	 * writer gives up on it after 2 s) */
	assert_true(r.elapsed_ms < 1900);
	h_db_unlock(lock);
	assert_int_equal(h_async_wait(a, NULL), 200);

	assert_string_equal(counts(d, buf, sizeof(buf)), "1/1/1/0");
	h_sid(sid, 43, 2);
	assert_int_equal(h_sql_int(d,
	                           "SELECT count(*) FROM sms_messages WHERE"
	                           " provider_message_id = %Q",
	                           sid),
	                 0);
	assert_int_equal(h_get(d, "/healthz", &r), 200);
	assert_int_equal(h_metric(d, "dlrd_queue_depth"), 0);
	assert_int_equal(h_metric(d, "dlrd_requests_parked"), 0);
	/* the refused one is welcome now */
	assert_int_equal(h_post_status(d, b_body, &r), 200);
	assert_string_equal(counts(d, buf, sizeof(buf)), "2/2/2/0");
}

/* Clients that leave while their callback waits for its transaction (the
 * database locked by the test): two close their sockets while parked.  No
 * crash; each parked request is still resumed once storage answers and its
 * queue slot given back (with a queue of two, two new callbacks at once are
 * both accepted afterwards); the callbacks that reached the writer are
 * stored whole, once, and their resends are duplicates. */
static void test_client_leaves_while_parked(void **state)
{
	struct dlrd *d = *state;
	char body[2][1024], later[2][1024], req[4096], buf[64];
	struct h_async *a[2];
	struct h_resp r;
	void *lock;
	int fd[2];

	for (unsigned i = 0; i < 2; i++) {
		body_for(body[i], sizeof(body[i]), 53, i, "delivered");
		body_for(later[i], sizeof(later[i]), 53, i + 2, "delivered");
	}
	lock = h_db_lock(d);
	assert_non_null(lock);
	for (int i = 0; i < 2; i++) {
		size_t n = h_raw_status_post(req, sizeof(req), body[i], false);
		assert_true(n > 0);
		fd[i] = h_connect(d->port);
		assert_true(fd[i] >= 0);
		assert_int_equal(h_send_all(fd[i], req, n), 0);
	}
	assert_int_equal(wait_metric(d, "dlrd_requests_parked", 2), 2);
	close(fd[0]);
	close(fd[1]);
	/* both slots are taken: a third callback is refused */
	assert_int_equal(h_post_status(d, later[0], &r), 503);
	assert_non_null(strstr(r.body, "queue is full"));
	h_db_unlock(lock);

	assert_int_equal(wait_metric(d, "dlrd_requests_parked", 0), 0);
	assert_int_equal(h_metric(d, "dlrd_queue_depth"), 0);
	assert_string_equal(counts(d, buf, sizeof(buf)), "2/2/2/0");
	/* both slots are back */
	a[0] = h_async_post_status(d, later[0]);
	a[1] = h_async_post_status(d, later[1]);
	assert_non_null(a[0]);
	assert_non_null(a[1]);
	assert_int_equal(h_async_wait(a[0], NULL), 200);
	assert_int_equal(h_async_wait(a[1], NULL), 200);
	assert_string_equal(counts(d, buf, sizeof(buf)), "4/4/4/0");
	/* the provider, which got no answer, sends them again */
	assert_int_equal(h_post_status(d, body[0], &r), 200);
	assert_int_equal(h_post_status(d, body[1], &r), 200);
	assert_string_equal(counts(d, buf, sizeof(buf)), "4/4/6/0");
	assert_int_equal(h_get(d, "/healthz", &r), 200);
}

/* With defaults, the queue fills before the connections run out: with 16
 * connections, 12 requests may wait for a stuck database; the 13th gets
 * 503 with Retry-After at once, and /healthz and /metrics are still
 * answered (with the queue above the connection limit, new connections
 * were closed unanswered instead). */
#define FEW_CONNS  16
#define FEW_QUEUED 12 /* 3/4 of FEW_CONNS */
static void test_queue_fills_before_connections(void **state)
{
	struct dlrd *d = *state;
	char body[1024], buf[64];
	struct h_async *a[FEW_QUEUED];
	struct h_resp r;
	void *lock;

	lock = h_db_lock(d);
	assert_non_null(lock);
	for (unsigned i = 0; i < FEW_QUEUED; i++) {
		body_for(body, sizeof(body), 46, i, "sent");
		a[i] = h_async_post_status(d, body);
		assert_non_null(a[i]);
	}
	assert_int_equal(wait_metric(d, "dlrd_requests_parked", FEW_QUEUED), FEW_QUEUED);
	body_for(body, sizeof(body), 46, FEW_QUEUED, "sent");
	assert_int_equal(h_post_status(d, body, &r), 503);
	assert_string_equal(r.retry_after, "1");
	assert_non_null(strstr(r.body, "queue is full"));
	assert_true(r.elapsed_ms < 1900);
	assert_int_equal(h_get(d, "/healthz", &r), 200);
	assert_int_equal(h_metric(d, "dlrd_requests_parked"), FEW_QUEUED);
	h_db_unlock(lock);
	for (unsigned i = 0; i < FEW_QUEUED; i++)
		assert_int_equal(h_async_wait(a[i], NULL), 200);
	assert_string_equal(counts(d, buf, sizeof(buf)), "12/12/12/0");
	assert_int_equal(h_post_status(d, body, &r), 200);
	assert_int_equal(h_metric(d, "dlrd_requests_parked"), 0);
}

static const char *const few_connections[] = {"DLRD_SERVER_MAX_CONNECTIONS=16", NULL};

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_io_error, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fault_during_commit_wait, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sync_failure_is_final, setup, teardown),
	    cmocka_unit_test(test_sync_error_reported_to_the_probe),
	    cmocka_unit_test(test_stalled_storage_unhealthy),
	    cmocka_unit_test(test_stalled_probe_unhealthy),
	    cmocka_unit_test(test_stalled_checkpoint_unhealthy),
	    cmocka_unit_test(test_batch_events_bounded),
	    cmocka_unit_test_prestate_setup_teardown(test_queue_full, setup_env, teardown,
	                                             (void *)small_queue),
	    cmocka_unit_test_prestate_setup_teardown(test_client_leaves_while_parked, setup_env,
	                                             teardown, (void *)queue_of_two),
	    cmocka_unit_test_prestate_setup_teardown(test_queue_fills_before_connections, setup_env,
	                                             teardown, (void *)few_connections),
	};
	return cmocka_run_group_tests_name("integration/faults", tests, NULL, NULL);
}
