/* SPDX-License-Identifier: MIT */
/*
 * Integration: crash consistency.  dlrd runs under a steady load of signed
 * Twilio status callbacks from a few client threads and is killed with
 * SIGKILL at random moments (by default 24 times; a quarter of them while it
 * is still starting up), then restarted on the same database.  After every
 * restart, with the load paused:
 *
 * - PRAGMA integrity_check says "ok" and foreign_key_check finds nothing;
 * - every event whose request was answered 2xx, in this round or any
 *   earlier one, is stored exactly once; no event is stored that was never
 *   sent; every event has exactly one first-arrival retry-log row, and at
 *   least as many log rows as 2xx answers for it and at most as many as
 *   requests that carried it;
 * - no transaction is half-applied: every message has at least one event,
 *   its event_count, callback_count and duplicate_count equal what its
 *   events and log rows say, every log row and event points at a row that
 *   exists, and the summary's status fields equal status_fold() over its
 *   stored events; nothing landed in the review queue.
 *
 * Each client owns its messages; a message's three events (queued, sent and
 * a final status that depends on the message) are sent in an order that
 * depends on the message, each resent until it gets 2xx (as a provider
 * retries), and now and then an event already answered 2xx is sent again.
 * The clients pause while dlrd is down, so every request they record has a
 * known outcome.
 *
 * DLRD_CRASH_SEED and DLRD_CRASH_ROUNDS reproduce or lengthen a run; the
 * seed is printed.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"
#include "status.h"
#include "util.h"

#define N_CLIENTS           4
#define ROUNDS_DEFAULT      24
#define STAGES              3           /* events per message */
#define CLIENT_TAG          0xc0de0000u /* h_sid() tag: CLIENT_TAG + client id */
#define LOAD_MIN_MS         60
#define LOAD_MAX_MS         700
#define STARTUP_KILL_MAX_MS 40

/* One event a client may send: (client, message, stage). */
struct ev_rec {
	uint32_t attempts; /* requests that carried it (counted before sending) */
	uint32_t acked;    /* of those, answered 2xx */
	uint32_t seen;     /* rows found in the database by the last check */
};

enum phase { PH_PAUSE = 0, PH_RUN, PH_STOP };

struct client {
	pthread_t thread;
	unsigned id;
	const struct dlrd *d;
	_Atomic int *phase;
	atomic_bool idle;
	uint64_t rng;
	/* Owned by the thread while running; read by the main thread only while
	 * every client is idle. */
	struct ev_rec *ev; /* [msg * STAGES + stage] */
	size_t n_msgs;     /* messages begun: msg < n_msgs */
	unsigned cur_stage;
	_Atomic unsigned n_ok; /* read by the main thread while the client runs */
	unsigned n_cut, n_refused, n_other, n_resent;
	long other_status;
};

static uint64_t rnd(uint64_t *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

/* The order a message's events are sent in: queued, sent, final for most,
 * the final first for some (callbacks overtaking each other). */
static unsigned stage_at(size_t msg, unsigned k)
{
	static const unsigned order[2][STAGES] = {{0, 1, 2}, {2, 0, 1}};
	return order[msg % 5 == 4][k];
}

static const char *raw_status(size_t msg, unsigned stage, const char **error_code)
{
	static const char *const finals[] = {"delivered", "undelivered", "failed", "read"};
	static const char *const codes[] = {NULL, "30003", "30008", NULL};

	*error_code = NULL;
	if (stage == 0)
		return "queued";
	if (stage == 1)
		return "sent";
	*error_code = codes[msg % 4];
	return finals[msg % 4];
}

static struct ev_rec *rec(struct client *c, size_t msg, unsigned stage)
{
	return &c->ev[msg * STAGES + stage];
}

static void ensure_msg(struct client *c, size_t msg)
{
	if (msg < c->n_msgs)
		return;
	c->ev = xrealloc(c->ev, (msg + 1) * STAGES * sizeof(*c->ev));
	memset(c->ev + c->n_msgs * STAGES, 0, (msg + 1 - c->n_msgs) * STAGES * sizeof(*c->ev));
	c->n_msgs = msg + 1;
}

static long send_event(struct client *c, size_t msg, unsigned stage)
{
	char sid[35], body[1024];
	const char *code;
	const char *st = raw_status(msg, stage, &code);
	struct h_resp *r = malloc(sizeof(*r));
	long status;

	/* a client thread: no cmocka assertion here (they are not thread-safe) */
	h_sid(sid, CLIENT_TAG + c->id, (unsigned)msg);
	if (!r || h_twilio_body(body, sizeof(body), sid, st, code) == 0)
		abort();
	rec(c, msg, stage)->attempts++;
	status = h_post_status(c->d, body, r);
	if (status == 200) {
		rec(c, msg, stage)->acked++;
		c->n_ok++;
	} else if (status == 0) {
		/* cut off by the kill (reset, empty reply) or refused while down */
		if (r->curl_code == CURLE_COULDNT_CONNECT)
			c->n_refused++;
		else
			c->n_cut++;
	} else {
		c->n_other++;
		c->other_status = status;
	}
	free(r);
	return status;
}

static void *client_main(void *arg)
{
	struct client *c = arg;

	ensure_msg(c, 0);
	for (;;) {
		int ph = atomic_load(c->phase);
		if (ph == PH_STOP)
			break;
		if (ph == PH_PAUSE) {
			atomic_store(&c->idle, true);
			h_sleep_ms(2);
			continue;
		}
		atomic_store(&c->idle, false);
		if (atomic_load(c->phase) != PH_RUN)
			continue; /* paused meanwhile: go idle first */

		size_t msg = c->n_msgs - 1;
		if (msg > 0 && rnd(&c->rng) % 10 == 0) {
			/* a retry of something already answered 2xx */
			size_t m = rnd(&c->rng) % msg;
			unsigned s = (unsigned)(rnd(&c->rng) % STAGES);
			if (rec(c, m, s)->acked) {
				send_event(c, m, s);
				c->n_resent++;
				continue;
			}
		}
		if (send_event(c, msg, stage_at(msg, c->cur_stage)) == 200) {
			if (++c->cur_stage == STAGES) {
				c->cur_stage = 0;
				ensure_msg(c, msg + 1);
			}
		} else {
			h_sleep_ms(1);
		}
	}
	atomic_store(&c->idle, true);
	return NULL;
}

static void pause_clients(struct client *cl, _Atomic int *phase)
{
	int64_t deadline = h_now_ms() + 30000;

	atomic_store(phase, PH_PAUSE);
	for (unsigned i = 0; i < N_CLIENTS; i++) {
		while (!atomic_load(&cl[i].idle)) {
			if (h_now_ms() > deadline)
				fail_msg("client %u did not pause within 30 s", i);
			h_sleep_ms(2);
		}
	}
}

/* ---- checks ---- */

static sqlite3 *db_open(const struct dlrd *d)
{
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(d->db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		fail_msg("cannot open %s: %s", d->db_path, db ? sqlite3_errmsg(db) : "?");
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	return st;
}

static int64_t scalar(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = prep(db, sql);
	int64_t v = -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static const char *text_or(sqlite3_stmt *st, int col, const char *dflt)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	return t ? (const char *)t : dflt;
}

static void check_integrity(sqlite3 *db, unsigned round)
{
	sqlite3_stmt *st = prep(db, "PRAGMA integrity_check");
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	if (strcmp(text_or(st, 0, ""), "ok") != 0)
		fail_msg("round %u: integrity_check: %s", round, text_or(st, 0, ""));
	sqlite3_finalize(st);
	st = prep(db, "PRAGMA foreign_key_check");
	if (sqlite3_step(st) == SQLITE_ROW)
		fail_msg("round %u: foreign_key_check: table %s row %lld", round,
		         text_or(st, 0, "?"), (long long)sqlite3_column_int64(st, 1));
	sqlite3_finalize(st);
}

/* Each query counts rows that break one invariant of a whole transaction. */
static const struct {
	const char *what;
	const char *sql;
} half_applied[] = {
    {"messages without an event",
     "SELECT count(*) FROM sms_messages m WHERE NOT EXISTS"
     " (SELECT 1 FROM sms_message_events e WHERE e.message_id = m.id)"},
    {"event_count differs from the events stored",
     "SELECT count(*) FROM sms_messages m WHERE event_count !="
     " (SELECT count(*) FROM sms_message_events e WHERE e.message_id = m.id)"},
    {"callback_count differs from the log rows",
     "SELECT count(*) FROM sms_messages m WHERE callback_count !="
     " (SELECT count(*) FROM sms_callback_log l JOIN sms_message_events e"
     " ON l.event_id = e.id WHERE e.message_id = m.id)"},
    {"duplicate_count differs from the duplicate log rows",
     "SELECT count(*) FROM sms_messages m WHERE duplicate_count !="
     " (SELECT count(*) FROM sms_callback_log l JOIN sms_message_events e"
     " ON l.event_id = e.id WHERE e.message_id = m.id AND l.duplicate = 1)"},
    {"events without exactly one first-arrival log row",
     "SELECT count(*) FROM sms_message_events e WHERE (SELECT count(*) FROM"
     " sms_callback_log l WHERE l.event_id = e.id AND l.duplicate = 0) != 1"},
    {"log rows of no event", "SELECT count(*) FROM sms_callback_log l WHERE NOT EXISTS"
                             " (SELECT 1 FROM sms_message_events e WHERE e.id = l.event_id)"},
    {"events of no message", "SELECT count(*) FROM sms_message_events e WHERE NOT EXISTS"
                             " (SELECT 1 FROM sms_messages m WHERE m.id = e.message_id)"},
    {"events whose message has another provider id",
     "SELECT count(*) FROM sms_message_events e JOIN sms_messages m ON m.id = e.message_id"
     " WHERE m.provider_message_id != e.provider_message_id"},
    {"review rows", "SELECT count(*) FROM review_queue"},
};

static void check_transactions(sqlite3 *db, unsigned round)
{
	for (size_t i = 0; i < ARRAY_LEN(half_applied); i++) {
		int64_t n = scalar(db, half_applied[i].sql);
		if (n != 0)
			fail_msg("round %u: %lld %s", round, (long long)n, half_applied[i].what);
	}
}

/* The summary must be the fold of the stored events. */
static void check_folds(sqlite3 *db, unsigned round, int64_t *n_msgs)
{
	sqlite3_stmt *ev =
	    prep(db, "SELECT message_id, status, raw_status, error_code,"
	             " read_receipt FROM sms_message_events ORDER BY message_id, id");
	sqlite3_stmt *msg = prep(db, "SELECT current_status, current_raw_status,"
	                             " current_error_code, is_final, status_mask, read_receipt,"
	                             " final_conflict, current_occurred_ms"
	                             " FROM sms_messages WHERE id = ?1");
	char cur_id[64] = "";
	int rc;

	*n_msgs = 0;
	rc = sqlite3_step(ev);
	while (rc == SQLITE_ROW) {
		struct status_summary sum;
		/* the strings of the winning event and of the one being folded,
		 * copied out of the row (which the next step invalidates) */
		char codes[2][64] = {"", ""}, raws[2][64] = {"", ""};

		memset(&sum, 0, sizeof(sum));
		util_strlcpy(cur_id, text_or(ev, 0, ""), sizeof(cur_id));
		while (rc == SQLITE_ROW && strcmp(text_or(ev, 0, ""), cur_id) == 0) {
			struct status_key k;
			const char *s = text_or(ev, 1, "");
			int slot = sum.has_event && sum.top.raw_status == raws[0];
			util_strlcpy(raws[slot], text_or(ev, 2, ""), sizeof(raws[slot]));
			util_strlcpy(codes[slot], text_or(ev, 3, ""), sizeof(codes[slot]));
			assert_int_equal(status_parse(s, strlen(s), &k.status), 0);
			k.occurred_ms = -1;
			k.raw_status = raws[slot];
			k.error_code =
			    sqlite3_column_type(ev, 3) == SQLITE_NULL ? NULL : codes[slot];
			status_fold(&sum, &k, sqlite3_column_int(ev, 4) != 0);
			rc = sqlite3_step(ev);
		}
		(*n_msgs)++;
		sqlite3_bind_text(msg, 1, cur_id, -1, SQLITE_TRANSIENT);
		assert_int_equal(sqlite3_step(msg), SQLITE_ROW);
		const char *want_code = sum.top.error_code ? sum.top.error_code : "(null)";
		if (strcmp(text_or(msg, 0, ""), status_name(sum.top.status)) != 0 ||
		    strcmp(text_or(msg, 1, "(null)"), sum.top.raw_status) != 0 ||
		    strcmp(text_or(msg, 2, "(null)"), want_code) != 0 ||
		    sqlite3_column_int(msg, 3) != (int)status_is_final(sum.top.status) ||
		    (uint32_t)sqlite3_column_int64(msg, 4) != sum.mask ||
		    sqlite3_column_int(msg, 5) != (int)sum.read ||
		    sqlite3_column_int(msg, 6) != (int)status_mask_conflict(sum.mask) ||
		    sqlite3_column_int64(msg, 7) != -1)
			fail_msg("round %u: message %s: summary %s/%s/%s final=%d mask=%lld read=%d"
			         " conflict=%d, but its events fold to %s/%s/%s mask=%u read=%d",
			         round, cur_id, text_or(msg, 0, ""), text_or(msg, 1, "(null)"),
			         text_or(msg, 2, "(null)"), sqlite3_column_int(msg, 3),
			         (long long)sqlite3_column_int64(msg, 4),
			         sqlite3_column_int(msg, 5), sqlite3_column_int(msg, 6),
			         status_name(sum.top.status), sum.top.raw_status, want_code,
			         sum.mask, (int)sum.read);
		sqlite3_reset(msg);
	}
	assert_int_equal(rc, SQLITE_DONE);
	sqlite3_finalize(ev);
	sqlite3_finalize(msg);
}

/* Parses "SM" + 8 hex (tag) + 24 hex (n), the canonical form of h_sid(). */
static bool parse_sid(const char *sid, unsigned *tag, size_t *n)
{
	uint64_t t = 0, v = 0;

	if (strlen(sid) != 34 || sid[0] != 'S' || sid[1] != 'M')
		return false;
	for (int i = 2; i < 34; i++) {
		int x = sid[i] >= '0' && sid[i] <= '9'   ? sid[i] - '0'
		        : sid[i] >= 'a' && sid[i] <= 'f' ? sid[i] - 'a' + 10
		                                         : -1;
		if (x < 0)
			return false;
		if (i < 10)
			t = t * 16 + (uint64_t)x;
		else
			v = v * 16 + (uint64_t)x;
	}
	*tag = (unsigned)t;
	*n = (size_t)v;
	return true;
}

static int stage_of(const char *raw)
{
	if (strcmp(raw, "queued") == 0)
		return 0;
	if (strcmp(raw, "sent") == 0)
		return 1;
	return 2;
}

/* Every stored event against what the clients sent and were told. */
static void check_events(sqlite3 *db, struct client *cl, unsigned round, int64_t *n_events)
{
	sqlite3_stmt *st =
	    prep(db, "SELECT e.provider_message_id, e.raw_status,"
	             " (SELECT count(*) FROM sms_callback_log l WHERE l.event_id = e.id)"
	             " FROM sms_message_events e");
	uint64_t acked = 0;

	*n_events = 0;
	for (unsigned i = 0; i < N_CLIENTS; i++)
		for (size_t k = 0; k < cl[i].n_msgs * STAGES; k++)
			cl[i].ev[k].seen = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *sid = text_or(st, 0, ""), *raw = text_or(st, 1, "");
		int64_t logs = sqlite3_column_int64(st, 2);
		unsigned tag = 0;
		size_t msg = 0;
		const char *code;
		int stage = stage_of(raw);
		struct ev_rec *r;

		(*n_events)++;
		if (!parse_sid(sid, &tag, &msg) || tag < CLIENT_TAG ||
		    tag >= CLIENT_TAG + N_CLIENTS)
			fail_msg("round %u: stored event for unknown message %s", round, sid);
		struct client *c = &cl[tag - CLIENT_TAG];
		if (msg >= c->n_msgs || strcmp(raw_status(msg, (unsigned)stage, &code), raw) != 0)
			fail_msg("round %u: stored event %s/%s was never sent", round, sid, raw);
		r = rec(c, msg, (unsigned)stage);
		if (r->attempts == 0)
			fail_msg("round %u: stored event %s/%s was never sent", round, sid, raw);
		r->seen++;
		if (logs < (int64_t)r->acked || logs > (int64_t)r->attempts)
			fail_msg("round %u: event %s/%s has %lld log rows; it was sent %u times, %u"
			         " answered 2xx",
			         round, sid, raw, (long long)logs, r->attempts, r->acked);
	}
	sqlite3_finalize(st);
	for (unsigned i = 0; i < N_CLIENTS; i++) {
		for (size_t m = 0; m < cl[i].n_msgs; m++) {
			for (unsigned s = 0; s < STAGES; s++) {
				struct ev_rec *r = rec(&cl[i], m, s);
				const char *code;
				acked += r->acked > 0;
				if (r->seen > 1 || (r->acked && r->seen != 1))
					fail_msg(
					    "round %u: event %u/%zu/%s answered 2xx %u times is"
					    " stored %u times",
					    round, i, m, raw_status(m, s, &code), r->acked,
					    r->seen);
			}
		}
	}
	assert_true((uint64_t)*n_events >= acked);
}

static void check_all(struct dlrd *d, struct client *cl, unsigned round, int64_t *n_events,
                      int64_t *n_msgs)
{
	sqlite3 *db = db_open(d);

	check_integrity(db, round);
	check_transactions(db, round);
	check_events(db, cl, round, n_events);
	check_folds(db, round, n_msgs);
	sqlite3_close(db);
}

static uint64_t seed_from_env(void)
{
	const char *s = getenv("DLRD_CRASH_SEED");
	uint64_t v;

	if (s && util_parse_u64(s, strlen(s), &v) == 0 && v)
		return v;
	return (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)h_now_ms();
}

static unsigned rounds_from_env(void)
{
	const char *s = getenv("DLRD_CRASH_ROUNDS");
	uint64_t v;

	if (s && util_parse_u64(s, strlen(s), &v) == 0 && v >= 1 && v <= 10000)
		return (unsigned)v;
	return ROUNDS_DEFAULT;
}

static unsigned ok_total(struct client *cl)
{
	unsigned n = 0;
	for (unsigned i = 0; i < N_CLIENTS; i++)
		n += atomic_load(&cl[i].n_ok);
	return n;
}

static void test_sigkill_under_load(void **state)
{
	struct dlrd d;
	struct client cl[N_CLIENTS];
	_Atomic int phase = PH_PAUSE;
	uint64_t seed = seed_from_env(), rng = seed;
	unsigned rounds = rounds_from_env(), startup_kills = 0, idle_rounds = 0;
	int64_t t0 = h_now_ms(), n_events = 0, n_msgs = 0;
	unsigned ok = 0, cut = 0, refused = 0, resent = 0;
	int status;

	(void)state;
	print_message("crash: seed %llu (DLRD_CRASH_SEED), %u rounds\n", (unsigned long long)seed,
	              rounds);
	assert_int_equal(h_setup(&d, NULL), 0);
	assert_int_equal(h_start(&d), 0);
	memset(cl, 0, sizeof(cl));
	for (unsigned i = 0; i < N_CLIENTS; i++) {
		cl[i].id = i;
		cl[i].d = &d;
		cl[i].phase = &phase;
		cl[i].rng = seed + 0x9e3779b97f4a7c15ULL * (i + 1);
		atomic_init(&cl[i].idle, true);
		assert_int_equal(pthread_create(&cl[i].thread, NULL, client_main, &cl[i]), 0);
	}

	for (unsigned round = 1; round <= rounds; round++) {
		unsigned before = ok_total(cl);
		atomic_store(&phase, PH_RUN);
		/* the kill lands a random time after the first 2xx of the round,
		 * so that it hits a loaded dlrd however slow the machine */
		for (int64_t w0 = h_now_ms(); ok_total(cl) == before && h_now_ms() - w0 < 10000;)
			h_sleep_ms(5);
		h_sleep_ms(LOAD_MIN_MS + (int)(rnd(&rng) % (LOAD_MAX_MS - LOAD_MIN_MS)));
		assert_int_equal(h_stop(&d, SIGKILL, 5000, &status), 0);
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		pause_clients(cl, &phase);

		if (round % 4 == 0) {
			/* killed again while opening the database and recovering */
			assert_int_equal(h_spawn(&d), 0);
			h_sleep_ms((int)(rnd(&rng) % STARTUP_KILL_MAX_MS));
			h_stop(&d, SIGKILL, 5000, &status);
			startup_kills++;
		}
		if (h_start(&d) != 0) {
			char *log = h_read_file(d.log_path, NULL);
			fail_msg("round %u: dlrd did not come back after SIGKILL; log:\n%s", round,
			         log ? log : "");
		}
		check_all(&d, cl, round, &n_events, &n_msgs);
		idle_rounds += ok_total(cl) == before;
	}

	atomic_store(&phase, PH_STOP);
	for (unsigned i = 0; i < N_CLIENTS; i++) {
		pthread_join(cl[i].thread, NULL);
		ok += cl[i].n_ok;
		cut += cl[i].n_cut;
		refused += cl[i].n_refused;
		resent += cl[i].n_resent;
		if (cl[i].n_other)
			fail_msg("client %u: %u answers neither 2xx nor a dropped connection (last"
			         " %ld)",
			         i, cl[i].n_other, cl[i].other_status);
	}
	print_message("crash: %u kills (%u during start-up), %u answered 2xx, %u cut off by a"
	              " kill, %u refused while down, %u resent; %lld events of %lld messages"
	              " stored; %lld ms\n",
	              rounds + startup_kills, startup_kills, ok, cut, refused, resent,
	              (long long)n_events, (long long)n_msgs, (long long)(h_now_ms() - t0));
	/* the kills must have hit a loaded dlrd and requests in flight, or this
	 * proved little */
	if (idle_rounds > rounds / 4)
		fail_msg("%u of %u rounds saw no 2xx answer: no load", idle_rounds, rounds);
	assert_true(cut > 0);
	assert_true(resent > 0);
	assert_int_equal(h_stop(&d, SIGTERM, 10000, &status), 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* in a sanitizer build: no report from any of the runs */
	assert_false(h_log_contains(&d, "Sanitizer"));
	assert_false(h_log_contains(&d, "runtime error"));
	for (unsigned i = 0; i < N_CLIENTS; i++)
		free(cl[i].ev);
	h_teardown(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sigkill_under_load),
	};
	if (h_pg()) { /* a CTest skip */
		printf("SKIPPED under PostgreSQL: the checks read the SQLite file"
		       " (integrity_check, foreign_key_check)\n");
		return 77;
	}
	return cmocka_run_group_tests_name("integration/crash", tests, NULL, NULL);
}
