/* SPDX-License-Identifier: MIT */
/*
 * Integration: crash consistency.  dlrd runs under a steady load of signed
 * Twilio status callbacks from a few client threads and is killed with
 * SIGKILL at random moments (by default 24 times; a quarter of them while it
 * is still starting up), then restarted on the same database (under
 * PostgreSQL the server keeps running throughout).  After every restart,
 * with the load paused, in one snapshot of the database:
 *
 * - SQLite: PRAGMA integrity_check says "ok" and foreign_key_check finds
 *   nothing;
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
 * A second test does the same under a mixed load (test_sigkill_mixed_load,
 * see "the mixed load" below): Infobip batches whose payload is kept once
 * in sms_payloads, with unknown statuses and unusable results (review
 * items); inbound batches of STOP and START (opt-out state and history);
 * API sends with an Idempotency-Key, joined with callbacks that came first,
 * replayed after every restart.
 *
 * DLRD_CRASH_SEED and DLRD_CRASH_ROUNDS reproduce or lengthen a run (both
 * tests); the seed is printed.
 */
#include <errno.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <openssl/evp.h>

#include "api_helpers.h"
#include "crypto.h"
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

/*
 * Every check of a round reads one snapshot (h_snap): under PostgreSQL the
 * server may still be finishing, and then committing, the batch whose round
 * trip the kill cut off (dlrd sends BEGIN, the events and COMMIT at once),
 * so separate reads could see it half of the time.  What such a late commit
 * stores was sent and never answered, which the checks allow.
 */

/* A query's first row (two columns at most, NULL as "(null)"), to say what
 * failed. */
struct first_row {
	char col[2][128];
};

static int first_row(void *arg, const char *const *col, int n_col)
{
	struct first_row *f = arg;

	for (int i = 0; i < 2; i++)
		util_strlcpy(f->col[i], i < n_col && col[i] ? col[i] : "(null)", sizeof(f->col[i]));
	return 1;
}

/* SQLite's own checks of the file: b-trees, indexes, foreign keys. */
static void check_integrity(struct h_snap *s, unsigned round)
{
	struct first_row f = {{"", ""}};
	long n;

	if (h_snap_rows(s, first_row, &f, "PRAGMA integrity_check") != 1 ||
	    strcmp(f.col[0], "ok") != 0)
		fail_msg("round %u: integrity_check: %s", round, f.col[0]);
	n = h_snap_rows(s, first_row, &f, "PRAGMA foreign_key_check");
	if (n != 0)
		fail_msg("round %u: foreign_key_check: %ld (table %s row %s)", round, n, f.col[0],
		         f.col[1]);
}

/* Each query counts rows that break one invariant of a whole transaction.
 * They join grouped counts rather than run a subquery per row: under
 * PostgreSQL the compatibility layer reads ids as text, which no index
 * serves, and a correlated subquery per message made a check quadratic
 * (seconds per round at a few thousand messages). */
#define EVENTS_PER_MESSAGE                                                                         \
	"(SELECT message_id, count(*) AS n FROM sms_message_events GROUP BY message_id)"
#define LOGS_PER_MESSAGE                                                                           \
	"(SELECT e.message_id, count(*) AS n,"                                                     \
	" count(CASE WHEN l.duplicate = 1 THEN 1 END) AS dup FROM sms_callback_log l"              \
	" JOIN sms_message_events e ON l.event_id = e.id GROUP BY e.message_id)"
static const struct {
	const char *what;
	const char *sql;
} half_applied[] = {
    {"messages without an event",
     "SELECT count(*) FROM sms_messages m LEFT JOIN " EVENTS_PER_MESSAGE
     " c ON c.message_id = m.id WHERE c.message_id IS NULL AND m.origin = 'callback'"},
    {"event_count differs from the events stored",
     "SELECT count(*) FROM sms_messages m LEFT JOIN " EVENTS_PER_MESSAGE
     " c ON c.message_id = m.id WHERE m.event_count != coalesce(c.n, 0)"},
    {"callback_count differs from the log rows",
     "SELECT count(*) FROM sms_messages m LEFT JOIN " LOGS_PER_MESSAGE
     " c ON c.message_id = m.id WHERE m.callback_count != coalesce(c.n, 0)"},
    {"duplicate_count differs from the duplicate log rows",
     "SELECT count(*) FROM sms_messages m LEFT JOIN " LOGS_PER_MESSAGE
     " c ON c.message_id = m.id WHERE m.duplicate_count != coalesce(c.dup, 0)"},
    {"events without exactly one first-arrival log row",
     "SELECT count(*) FROM sms_message_events e LEFT JOIN (SELECT event_id, count(*) AS n"
     " FROM sms_callback_log WHERE duplicate = 0 GROUP BY event_id) c ON c.event_id = e.id"
     " WHERE coalesce(c.n, 0) != 1"},
    {"log rows of no event", "SELECT count(*) FROM sms_callback_log l WHERE NOT EXISTS"
                             " (SELECT 1 FROM sms_message_events e WHERE e.id = l.event_id)"},
    {"events of no message", "SELECT count(*) FROM sms_message_events e WHERE NOT EXISTS"
                             " (SELECT 1 FROM sms_messages m WHERE m.id = e.message_id)"},
    {"events whose message has another provider id",
     "SELECT count(*) FROM sms_message_events e JOIN sms_messages m ON m.id = e.message_id"
     " WHERE m.provider_message_id != e.provider_message_id"},
    /* the Twilio load writes none; the mixed load's are checked by
     * mixed_rules */
    {"review rows", "SELECT count(*) FROM review_queue"},
};

static void check_transactions(struct h_snap *s, unsigned round, bool reviews)
{
	for (size_t i = 0; i < ARRAY_LEN(half_applied) - reviews; i++) {
		int64_t n = h_snap_int(s, "%s", half_applied[i].sql);
		if (n == H_SQL_ERR)
			fail_msg("round %u: the query for %s failed", round, half_applied[i].what);
		if (n != 0)
			fail_msg("round %u: %lld %s", round, (long long)n, half_applied[i].what);
	}
}

/* The summary columns check_folds compares, in its query's order from
 * FOLD_SUMMARY on. */
enum { SUM_STATUS, SUM_RAW, SUM_CODE, SUM_FINAL, SUM_MASK, SUM_READ, SUM_CONFLICT, SUM_MS, SUM_N };
#define FOLD_SUMMARY 6

/* check_folds' state across the rows of its query (one per event, grouped
 * by message). */
struct fold {
	int64_t n_msgs;
	char id[64]; /* the message being folded; "" before the first row */
	struct status_summary sum;
	/* the strings of the winning event and of the one being folded, copied
	 * out of the row (which is gone when the row callback returns) */
	char codes[2][64], raws[2][64];
	char stored[SUM_N][64]; /* the message's summary as stored, NULL as "(null)" */
	char err[2048];         /* the first mismatch */
};

/* Compares the stored summary of f->id with the fold of its events. */
static int fold_finish(struct fold *f)
{
	const struct status_key *top = &f->sum.top;
	char want[SUM_N][64];

	util_strlcpy(want[SUM_STATUS], status_name(top->status), sizeof(want[0]));
	util_strlcpy(want[SUM_RAW], top->raw_status ? top->raw_status : "(null)", sizeof(want[0]));
	util_strlcpy(want[SUM_CODE], top->error_code ? top->error_code : "(null)", sizeof(want[0]));
	snprintf(want[SUM_FINAL], sizeof(want[0]), "%d", (int)status_is_final(top->status));
	snprintf(want[SUM_MASK], sizeof(want[0]), "%u", (unsigned)f->sum.mask);
	snprintf(want[SUM_READ], sizeof(want[0]), "%d", (int)f->sum.read);
	snprintf(want[SUM_CONFLICT], sizeof(want[0]), "%d", (int)status_mask_conflict(f->sum.mask));
	snprintf(want[SUM_MS], sizeof(want[0]), "%lld", (long long)top->occurred_ms);
	f->n_msgs++;
	for (int i = 0; i < SUM_N; i++) {
		if (strcmp(f->stored[i], want[i]) == 0)
			continue;
		snprintf(f->err, sizeof(f->err),
		         "message %s: summary %s/%s/%s final=%s mask=%s read=%s conflict=%s"
		         " occurred_ms=%s, but its events fold to %s/%s/%s final=%s mask=%s"
		         " read=%s conflict=%s occurred_ms=%s",
		         f->id, f->stored[0], f->stored[1], f->stored[2], f->stored[3],
		         f->stored[4], f->stored[5], f->stored[6], f->stored[7], want[0], want[1],
		         want[2], want[3], want[4], want[5], want[6], want[7]);
		return 1;
	}
	return 0;
}

static int fold_row(void *arg, const char *const *col, int n_col)
{
	struct fold *f = arg;
	const char *id = col[0] ? col[0] : "", *s = col[1] ? col[1] : "";
	struct status_key k;
	int slot;

	if (n_col != FOLD_SUMMARY + SUM_N) {
		snprintf(f->err, sizeof(f->err), "%d columns", n_col);
		return 1;
	}
	if (strcmp(id, f->id) != 0) {
		if (f->id[0] && fold_finish(f) != 0)
			return 1;
		util_strlcpy(f->id, id, sizeof(f->id));
		memset(&f->sum, 0, sizeof(f->sum));
		for (int i = 0; i < SUM_N; i++)
			util_strlcpy(f->stored[i],
			             col[FOLD_SUMMARY + i] ? col[FOLD_SUMMARY + i] : "(null)",
			             sizeof(f->stored[i]));
	}
	/* the slot the winning event does not hold */
	slot = f->sum.has_event && f->sum.top.raw_status == f->raws[0];
	util_strlcpy(f->raws[slot], col[2] ? col[2] : "", sizeof(f->raws[slot]));
	util_strlcpy(f->codes[slot], col[3] ? col[3] : "", sizeof(f->codes[slot]));
	if (status_parse(s, strlen(s), &k.status) != 0) {
		snprintf(f->err, sizeof(f->err), "message %s: stored status \"%s\"", id, s);
		return 1;
	}
	k.occurred_ms = -1; /* Twilio gives no event time */
	if (col[5] && util_parse_rfc3339(col[5], strlen(col[5]), &k.occurred_ms) != 0) {
		snprintf(f->err, sizeof(f->err), "message %s: event time \"%s\"", id, col[5]);
		return 1;
	}
	k.raw_status = f->raws[slot];
	k.error_code = col[3] ? f->codes[slot] : NULL;
	status_fold(&f->sum, &k, col[4] && strcmp(col[4], "0") != 0);
	return 0;
}

/* The summary must be the fold of the stored events. */
static void check_folds(struct h_snap *s, unsigned round, int64_t *n_msgs)
{
	struct fold *f = xmalloc(sizeof(*f));
	long n;

	memset(f, 0, sizeof(*f));
	n = h_snap_rows(
	    s, fold_row, f,
	    "SELECT e.message_id, e.status, e.raw_status, e.error_code,"
	    " e.read_receipt, e.provider_occurred_at, m.current_status, m.current_raw_status,"
	    " m.current_error_code, m.is_final, m.status_mask, m.read_receipt,"
	    " m.final_conflict, m.current_occurred_ms"
	    " FROM sms_message_events e JOIN sms_messages m ON m.id = e.message_id"
	    " ORDER BY e.message_id, e.id");
	if (n >= 0 && !f->err[0] && f->id[0])
		fold_finish(f);
	*n_msgs = f->n_msgs;
	if (n < 0)
		fail_msg("round %u: the events could not be read", round);
	if (f->err[0])
		fail_msg("round %u: %s", round, f->err);
	free(f);
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

/* check_events' state across the rows of its query (one per event). */
struct seen {
	struct client *cl;
	int64_t n_events;
	char err[512]; /* the first stored event that breaks a rule */
};

static int event_row(void *arg, const char *const *col, int n_col)
{
	struct seen *v = arg;
	const char *sid = col[0] ? col[0] : "", *raw = col[1] ? col[1] : "", *code;
	uint64_t logs = 0;
	unsigned tag = 0;
	size_t msg = 0;
	int stage = stage_of(raw);
	struct client *c;
	struct ev_rec *r;

	v->n_events++;
	if (n_col != 3 || !col[2] || util_parse_u64(col[2], strlen(col[2]), &logs) != 0) {
		snprintf(v->err, sizeof(v->err), "event %s/%s: unreadable row", sid, raw);
		return 1;
	}
	if (!parse_sid(sid, &tag, &msg) || tag < CLIENT_TAG || tag >= CLIENT_TAG + N_CLIENTS) {
		snprintf(v->err, sizeof(v->err), "stored event for unknown message %s", sid);
		return 1;
	}
	c = &v->cl[tag - CLIENT_TAG];
	if (msg >= c->n_msgs || strcmp(raw_status(msg, (unsigned)stage, &code), raw) != 0 ||
	    (r = rec(c, msg, (unsigned)stage))->attempts == 0) {
		snprintf(v->err, sizeof(v->err), "stored event %s/%s was never sent", sid, raw);
		return 1;
	}
	r->seen++;
	if (logs < r->acked || logs > r->attempts) {
		snprintf(v->err, sizeof(v->err),
		         "event %s/%s has %llu log rows; it was sent %u times, %u answered 2xx",
		         sid, raw, (unsigned long long)logs, r->attempts, r->acked);
		return 1;
	}
	return 0;
}

/* Every stored event against what the clients sent and were told.  Adds
 * to *unanswered the events stored without a 2xx answer so far (committed,
 * and the answer cut off by the kill). */
static void check_events(struct h_snap *s, struct client *cl, unsigned round, int64_t *n_events,
                         unsigned *unanswered)
{
	struct seen v = {.cl = cl};
	uint64_t acked = 0;
	long n;

	for (unsigned i = 0; i < N_CLIENTS; i++)
		for (size_t k = 0; k < cl[i].n_msgs * STAGES; k++)
			cl[i].ev[k].seen = 0;
	n = h_snap_rows(s, event_row, &v,
	                "SELECT e.provider_message_id, e.raw_status, coalesce(c.n, 0)"
	                " FROM sms_message_events e LEFT JOIN (SELECT event_id, count(*) AS n"
	                " FROM sms_callback_log GROUP BY event_id) c ON c.event_id = e.id");
	if (n < 0)
		fail_msg("round %u: the events could not be read", round);
	if (v.err[0])
		fail_msg("round %u: %s", round, v.err);
	*n_events = v.n_events;
	for (unsigned i = 0; i < N_CLIENTS; i++) {
		for (size_t m = 0; m < cl[i].n_msgs; m++) {
			for (unsigned st = 0; st < STAGES; st++) {
				struct ev_rec *r = rec(&cl[i], m, st);
				const char *code;
				acked += r->acked > 0;
				*unanswered += r->seen && !r->acked;
				if (r->seen > 1 || (r->acked && r->seen != 1))
					fail_msg(
					    "round %u: event %u/%zu/%s answered 2xx %u times is"
					    " stored %u times",
					    round, i, m, raw_status(m, st, &code), r->acked,
					    r->seen);
			}
		}
	}
	assert_true((uint64_t)*n_events >= acked);
}

static void check_all(struct dlrd *d, struct client *cl, unsigned round, int64_t *n_events,
                      int64_t *n_msgs, unsigned *unanswered)
{
	struct h_snap *s = h_snap_open(d);

	if (!s)
		fail_msg("round %u: cannot read the database", round);
	if (!h_pg()) /* PostgreSQL's server was never killed; its checks are its own */
		check_integrity(s, round);
	check_transactions(s, round, false);
	check_events(s, cl, round, n_events, unanswered);
	check_folds(s, round, n_msgs);
	h_snap_close(s);
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
	unsigned ok = 0, cut = 0, refused = 0, resent = 0, unanswered = 0;
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
		check_all(&d, cl, round, &n_events, &n_msgs, &unanswered);
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
	              " stored (%u found stored while still unanswered: committed, answer"
	              " cut off); %lld ms\n",
	              rounds + startup_kills, startup_kills, ok, cut, refused, resent,
	              (long long)n_events, (long long)n_msgs, unanswered,
	              (long long)(h_now_ms() - t0));
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

/* ---- the mixed load: batches, inbound opt-outs, review items, API sends ----
 *
 * Each client works through jobs, each a few requests sent in order, each
 * resent until it gets 2xx (an API send: 201):
 *
 * - J_BATCH: one Infobip status request of several results: two messages
 *   (the first with an operator and a handset receipt), now and then a
 *   result with a status dlrd does not know (an event and a review item)
 *   and one it cannot use (a review item with the request's key): its
 *   payload goes to sms_payloads once;
 * - J_INBOUND: one Infobip inbound request of two or three messages from
 *   the client's own users, each STOP, START or something else, with
 *   distinct provider times (within a request sometimes in reverse order),
 *   so the opt-out state is the latest keyword of its history;
 * - J_TELNYX: a Telnyx message.finalized to two recipients (two events of
 *   one message), whose every resend counts its attempt in the body, as
 *   Telnyx does: other bytes, so another payload id;
 * - J_SEND: a Twilio callback first (half of them; for some of the others
 *   at the same time as the send), then POST /v1/messages with an
 *   Idempotency-Key naming the same provider id (the send adopts the
 *   callback's row), then, for some, a final callback; or a send without
 *   the provider id, callbacks (one with a status dlrd does not know, for
 *   some), then PATCH with the id (a merge of the two rows: events, log
 *   rows and review items move to the send).
 *
 * After every restart, in one snapshot: all or nothing of every request
 * (its events, inbound rows and review items), all of every request
 * answered 2xx; every payload_id names a payload row and every payload row
 * is named; an idempotency row per answered send, naming its message;
 * opt-out state equal to the latest of its history, one history row per
 * keyword; the summaries the fold of their events.  Then a replay of every
 * send answered this round must answer what the first answer did.
 */

#define M_CLIENTS   3
#define M_TAG       0xd1ce0000u /* h_sid() tag of the sends: M_TAG + client */
#define M_MAX_STEPS 4
#define M_USERS     3                                           /* inbound users per client */
#define IB_AUTH     "Authorization: Basic ZGxyZDpwYTU1d29yZA==" /* dlrd:pa55word */

enum job_kind { J_BATCH, J_INBOUND, J_SEND, J_TELNYX, J__COUNT };
enum step_kind { S_INFOBIP_STATUS, S_INFOBIP_INBOUND, S_TWILIO, S_API, S_TELNYX, S_PATCH };

struct step {
	enum step_kind kind;
	char *body;
	uint32_t attempts, acked;
	char *first;  /* S_API: the body of the first 201 */
	char *with;   /* S_API: a callback for the same message sent at the same
	               * time (a client's), so both may share a batch; or NULL */
	char *target; /* S_PATCH: the send's URL, known once it is answered */
};

struct job {
	enum job_kind kind;
	unsigned n_steps;
	struct step step[M_MAX_STEPS];
	/* what the job's requests store when all are applied */
	unsigned want_events;                 /* J_BATCH: events of its status request */
	unsigned want_unknown, want_unusable; /* J_BATCH: review items */
	unsigned want_inbound;                /* J_INBOUND */
	/* found by the last check */
	unsigned seen_events, seen_unknown, seen_inbound, seen_idem;
	bool idem_ok;        /* the idempotency row names this job's message */
	bool replay_pending; /* J_SEND answered 2xx since the last check */
};

struct mclient {
	pthread_t thread;
	unsigned id;
	const struct dlrd *d;
	_Atomic int *phase;
	atomic_bool idle;
	uint64_t rng;
	/* owned by the thread while running; read by the main thread only
	 * while every client is idle */
	struct job *jobs;
	size_t n_jobs, cap_jobs;
	unsigned cur_step;
	int64_t clock_ms; /* the provider times of this client's inbound messages */
	_Atomic unsigned n_ok;
	unsigned n_cut, n_refused, n_other, n_resent, n_replay_bad;
	long other_status;
	char other[256]; /* the first unexpected answer */
};

static char *xstrdup_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xstrdup_fmt(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	if (vasprintf(&p, fmt, ap) < 0)
		abort();
	va_end(ap);
	return p;
}

static void ib_time(int64_t ms, char out[32])
{
	char t[25];
	util_rfc3339(ms, t);
	t[23] = '\0'; /* drop the 'Z' */
	util_fmt(out, 32, "%s+0000", t);
}

#define IB_RESULT                                                                                  \
	"{\"bulkId\":\"b%u\",\"messageId\":\"%s\",\"to\":\"41793026731\",\"doneAt\":\"%s\","       \
	"\"status\":{\"groupId\":%d,\"groupName\":\"X\",\"id\":%d,\"name\":\"%s\"},"               \
	"\"error\":{\"groupId\":0,\"groupName\":\"OK\",\"id\":0,\"name\":\"NO_ERROR\","            \
	"\"permanent\":false}}"

static void new_batch(struct mclient *c, struct job *j, size_t n)
{
	char buf[4096], t0[32], t1[32], id[64];
	size_t len = util_fmt(buf, sizeof(buf), "{\"results\":[");
	int64_t base = 1767225600000LL + (int64_t)n * 1000;

	ib_time(base, t0);
	ib_time(base + 500, t1);
	util_fmt(id, sizeof(id), "mx%u-%zu-0", c->id, n);
	len += util_fmt(buf + len, sizeof(buf) - len, IB_RESULT ",", c->id, id, t0, 3, 2,
	                "DELIVERED_TO_OPERATOR");
	len += util_fmt(buf + len, sizeof(buf) - len, IB_RESULT ",", c->id, id, t1, 3, 5,
	                "DELIVERED_TO_HANDSET");
	util_fmt(id, sizeof(id), "mx%u-%zu-1", c->id, n);
	len += util_fmt(buf + len, sizeof(buf) - len, IB_RESULT, c->id, id, t0, 3, 2,
	                "DELIVERED_TO_OPERATOR");
	j->want_events = 3;
	if (rnd(&c->rng) % 3 == 0) {
		util_fmt(id, sizeof(id), "mx%u-%zu-u", c->id, n);
		len += util_fmt(buf + len, sizeof(buf) - len, "," IB_RESULT, c->id, id, t1, 99, 77,
		                "SOMETHING_NEW");
		j->want_events++;
		j->want_unknown = 1;
	}
	if (rnd(&c->rng) % 3 == 0) {
		len +=
		    util_fmt(buf + len, sizeof(buf) - len, ",{\"bulkId\":\"u%u-%zu\"}", c->id, n);
		j->want_unusable = 1;
	}
	util_fmt(buf + len, sizeof(buf) - len, "]}");
	j->n_steps = 1;
	j->step[0] = (struct step){.kind = S_INFOBIP_STATUS, .body = xstrdup_fmt("%s", buf)};
}

static void new_inbound(struct mclient *c, struct job *j, size_t n)
{
	static const char *const texts[] = {"STOP", "START", "hello", "stop", "Unstop"};
	char buf[4096], t[32];
	unsigned k = 2 + (unsigned)(rnd(&c->rng) % 2);
	size_t len = util_fmt(buf, sizeof(buf), "{\"results\":[");

	/* now and then in the reverse order of their times, so that an older
	 * keyword arrives after a newer one and must not win */
	bool reverse = rnd(&c->rng) % 3 == 0;

	c->clock_ms += 1000 * k;
	for (unsigned i = 0; i < k; i++) {
		ib_time(c->clock_ms - 1000 * (reverse ? i : k - 1 - i), t);
		len +=
		    util_fmt(buf + len, sizeof(buf) - len,
		             "%s{\"messageId\":\"in%u-%zu-%u\",\"from\":\"4179302%u%u01\","
		             "\"to\":\"447860099299\",\"text\":\"%s\",\"receivedAt\":\"%s\"}",
		             i ? "," : "", c->id, n, i, c->id, (unsigned)(rnd(&c->rng) % M_USERS),
		             texts[rnd(&c->rng) % ARRAY_LEN(texts)], t);
	}
	util_fmt(buf + len, sizeof(buf) - len, "],\"messageCount\":%u,\"pendingMessageCount\":0}",
	         k);
	j->want_inbound = k;
	j->n_steps = 1;
	j->step[0] = (struct step){.kind = S_INFOBIP_INBOUND, .body = xstrdup_fmt("%s", buf)};
}

static void new_send(struct mclient *c, struct job *j, size_t n)
{
	char sid[35], buf[1024];

	h_sid(sid, M_TAG + c->id, (unsigned)n);
	j->n_steps = 0;
	if (rnd(&c->rng) % 3 == 0) {
		/* record, callbacks, PATCH: a merge */
		api_send_body(buf, sizeof(buf), N_TO, NULL, "otp", NULL);
		j->step[j->n_steps++] =
		    (struct step){.kind = S_API, .body = xstrdup_fmt("%s", buf)};
		h_twilio_body(buf, sizeof(buf), sid, "sent", NULL);
		j->step[j->n_steps++] =
		    (struct step){.kind = S_TWILIO, .body = xstrdup_fmt("%s", buf)};
		h_twilio_body(buf, sizeof(buf), sid, rnd(&c->rng) % 2 ? "mystery" : "delivered",
		              NULL);
		j->step[j->n_steps++] =
		    (struct step){.kind = S_TWILIO, .body = xstrdup_fmt("%s", buf)};
		j->step[j->n_steps++] = (struct step){
		    .kind = S_PATCH, .body = xstrdup_fmt("{\"provider_message_id\":\"%s\"}", sid)};
		return;
	}
	if (rnd(&c->rng) % 2 == 0) {
		h_twilio_body(buf, sizeof(buf), sid, "sent", NULL);
		j->step[j->n_steps++] =
		    (struct step){.kind = S_TWILIO, .body = xstrdup_fmt("%s", buf)};
	}
	api_send_body(buf, sizeof(buf), N_TO, sid, "otp", NULL);
	j->step[j->n_steps++] = (struct step){.kind = S_API, .body = xstrdup_fmt("%s", buf)};
	if (j->n_steps == 1 && rnd(&c->rng) % 2 == 0) {
		h_twilio_body(buf, sizeof(buf), sid, "sent", NULL);
		j->step[0].with = xstrdup_fmt("%s", buf);
	}
	if (rnd(&c->rng) % 2 == 0) {
		h_twilio_body(buf, sizeof(buf), sid, "delivered", NULL);
		j->step[j->n_steps++] =
		    (struct step){.kind = S_TWILIO, .body = xstrdup_fmt("%s", buf)};
	}
}

/* RFC 8032 TEST 1 key pair (test_provider_telnyx.c) */
static const uint8_t TELNYX_SEED[32] = {
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60};
#define TELNYX_PUB "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
/* The message id of client c's job n: its last 12 hex digits are c and n. */
#define TELNYX_MSG "40385f64-5717-4562-b3fc-%02x%010zx"

/* A client thread: no cmocka assertion. */
static long telnyx_post(const struct dlrd *d, const char *body, struct h_resp *r)
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, TELNYX_SEED, 32);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	char ts[32], sig[128], h1[64], h2[200];
	const char *hdrs[] = {"Content-Type: application/json", h1, h2, NULL};
	size_t tl, bl = strlen(body), sl = 64;
	uint8_t *m, s[64];

	util_fmt(ts, sizeof(ts), "%lld", (long long)time(NULL));
	tl = strlen(ts);
	m = xmalloc(tl + 1 + bl);
	memcpy(m, ts, tl);
	m[tl] = '|';
	memcpy(m + tl + 1, body, bl);
	if (!k || !c || EVP_DigestSignInit(c, NULL, NULL, NULL, k) != 1 ||
	    EVP_DigestSign(c, s, &sl, m, tl + 1 + bl) != 1)
		abort();
	crypto_b64_encode(s, sl, sig);
	free(m);
	EVP_MD_CTX_free(c);
	EVP_PKEY_free(k);
	util_fmt(h1, sizeof(h1), "telnyx-timestamp: %s", ts);
	util_fmt(h2, sizeof(h2), "telnyx-signature-ed25519: %s", sig);
	h_request(d, "POST", "/webhooks/telnyx/status", hdrs, body, bl, r);
	return r->status;
}

/* The body without its "meta" (the attempt, added as it is sent). */
static void new_telnyx(struct mclient *c, struct job *j, size_t n)
{
	static const char *const st[] = {"delivered", "delivery_failed", "sent"};
	char buf[2048];

	util_fmt(buf, sizeof(buf),
	         "{\"data\":{\"event_type\":\"message.finalized\",\"id\":"
	         "\"5ee8c3a6-4995-4309-a3c6-%02x%010zx\",\"occurred_at\":"
	         "\"2026-01-01T00:00:%02zu.148+00:00\",\"record_type\":\"event\","
	         "\"payload\":{\"id\":\"" TELNYX_MSG "\",\"direction\":\"outbound\","
	         "\"type\":\"SMS\",\"from\":{\"phone_number\":\"+18445550001\"},"
	         "\"to\":[{\"phone_number\":\"+14155550123\",\"status\":\"%s\"},"
	         "{\"phone_number\":\"+14155550124\",\"status\":\"%s\"}],"
	         "\"errors\":[{\"code\":\"40008\",\"title\":\"Undeliverable\"}]}},",
	         c->id, n, n % 60, c->id, n, st[rnd(&c->rng) % 3], st[rnd(&c->rng) % 3]);
	j->want_events = 2;
	j->n_steps = 1;
	j->step[0] = (struct step){.kind = S_TELNYX, .body = xstrdup_fmt("%s", buf)};
}

static void new_job(struct mclient *c)
{
	struct job *j;
	size_t n = c->n_jobs;

	if (c->n_jobs == c->cap_jobs) {
		c->cap_jobs = c->cap_jobs ? 2 * c->cap_jobs : 64;
		c->jobs = xrealloc(c->jobs, c->cap_jobs * sizeof(*c->jobs));
	}
	j = &c->jobs[c->n_jobs++];
	memset(j, 0, sizeof(*j));
	j->kind = (enum job_kind)(rnd(&c->rng) % J__COUNT);
	if (j->kind == J_TELNYX)
		new_telnyx(c, j, n);
	else if (j->kind == J_BATCH)
		new_batch(c, j, n);
	else if (j->kind == J_INBOUND)
		new_inbound(c, j, n);
	else
		new_send(c, j, n);
	c->cur_step = 0;
}

/* The Idempotency-Key of client c's job n. */
static void idem_key(char out[32], unsigned c, size_t n)
{
	util_fmt(out, 32, "crash-%u-%zu", c, n);
}

/* Sends one step (a client thread, or the main thread's replays while the
 * clients are idle); returns the status. */
static long send_step(const struct dlrd *d, unsigned client, size_t n, const struct step *s,
                      struct h_resp *r)
{
	const char *hdrs[] = {"Content-Type: application/json", IB_AUTH, NULL};
	char key[32];

	switch (s->kind) {
	case S_INFOBIP_STATUS:
		h_request(d, "POST", "/webhooks/infobip/status", hdrs, s->body, strlen(s->body), r);
		return r->status;
	case S_INFOBIP_INBOUND:
		h_request(d, "POST", "/webhooks/infobip/inbound", hdrs, s->body, strlen(s->body),
		          r);
		return r->status;
	case S_TWILIO:
		return h_post_status(d, s->body, r);
	case S_API:
		idem_key(key, client, n);
		return api_send(d, T_APP, key, s->body, r);
	case S_PATCH:
		return api_call(d, "PATCH", s->target, T_APP, s->body, NULL, r);
	case S_TELNYX: {
		char *b = xstrdup_fmt("%s\"meta\":{\"attempt\":%u}}", s->body, s->attempts);
		long status = telnyx_post(d, b, r);
		free(b);
		return status;
	}
	}
	abort();
}

/* One request of job n, step k; true when answered 2xx. */
static bool mc_send(struct mclient *c, size_t n, unsigned k)
{
	struct job *j = &c->jobs[n];
	struct step *s = &j->step[k];
	struct h_resp *r = xmalloc(sizeof(*r));
	struct h_async *with = NULL;
	long status;
	bool ok;

	s->attempts++;
	if (s->with && !s->acked && !(with = h_async_post_status(c->d, s->with)))
		abort();
	status = send_step(c->d, c->id, n, s, r);
	if (with)
		h_async_wait(with, NULL); /* its outcome: the checks of every event */
	ok = s->kind == S_API ? status == 201 : status == 200;
	if (ok) {
		s->acked++;
		c->n_ok++;
		if (s->kind == S_API) {
			j->replay_pending = true;
			if (!s->first) {
				s->first = xstrdup_fmt("%s", r->body);
				json_t *a = api_json(r);
				for (unsigned i = 0; i < j->n_steps; i++)
					if (j->step[i].kind == S_PATCH)
						j->step[i].target = xstrdup_fmt("/v1/messages/%s",
						                                jpath_s(a, "id"));
				json_decref(a);
			} else if (strcmp(s->first, r->body) != 0 && !c->n_replay_bad++)
				util_fmt(c->other, sizeof(c->other),
				         "send %zu answered %.100s, then %.100s", n, s->first,
				         r->body);
		}
	} else if (status == 0) {
		if (r->curl_code == CURLE_COULDNT_CONNECT)
			c->n_refused++;
		else
			c->n_cut++;
	} else {
		if (!c->n_other++)
			util_fmt(c->other, sizeof(c->other), "job %zu step %u: %ld %.150s", n, k,
			         status, r->body);
		c->other_status = status;
	}
	free(r);
	return ok;
}

static void *mclient_main(void *arg)
{
	struct mclient *c = arg;

	new_job(c);
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
			continue;

		size_t n = c->n_jobs - 1;
		if (n > 0 && rnd(&c->rng) % 8 == 0) {
			/* a resend of something already answered 2xx */
			size_t m = rnd(&c->rng) % n;
			unsigned k = (unsigned)(rnd(&c->rng) % c->jobs[m].n_steps);
			if (c->jobs[m].step[k].acked) {
				mc_send(c, m, k);
				c->n_resent++;
				continue;
			}
		}
		if (mc_send(c, n, c->cur_step)) {
			if (++c->cur_step == c->jobs[n].n_steps)
				new_job(c);
		} else {
			h_sleep_ms(1);
		}
	}
	atomic_store(&c->idle, true);
	return NULL;
}

static void mpause(struct mclient *cl, _Atomic int *phase)
{
	int64_t deadline = h_now_ms() + 30000;

	atomic_store(phase, PH_PAUSE);
	for (unsigned i = 0; i < M_CLIENTS; i++) {
		while (!atomic_load(&cl[i].idle)) {
			if (h_now_ms() > deadline)
				fail_msg("client %u did not pause within 30 s", i);
			h_sleep_ms(2);
		}
	}
}

/* Rules of the mixed load's whole-database state: each query counts rows
 * that break one. */
static const struct {
	const char *what;
	const char *sql;
} mixed_rules[] = {
    {"events naming no payload row",
     "SELECT count(*) FROM sms_message_events e WHERE e.payload_id IS NOT NULL AND NOT EXISTS"
     " (SELECT 1 FROM sms_payloads p WHERE p.id = e.payload_id)"},
    {"inbound messages naming no payload row",
     "SELECT count(*) FROM sms_inbound_messages i WHERE i.payload_id IS NOT NULL AND NOT EXISTS"
     " (SELECT 1 FROM sms_payloads p WHERE p.id = i.payload_id)"},
    {"review items naming no payload row",
     "SELECT count(*) FROM review_queue r WHERE r.payload_id IS NOT NULL AND NOT EXISTS"
     " (SELECT 1 FROM sms_payloads p WHERE p.id = r.payload_id)"},
    /* src/store/README.md: written only when a row of the request names it */
    {"payload rows no row names",
     "SELECT count(*) FROM (SELECT id FROM sms_payloads EXCEPT SELECT payload_id FROM"
     " sms_message_events EXCEPT SELECT payload_id FROM sms_inbound_messages EXCEPT SELECT"
     " payload_id FROM review_queue) AS o"},
    {"rows of a batch without a payload_id",
     "SELECT (SELECT count(*) FROM sms_message_events WHERE provider IN ('infobip', 'telnyx')"
     " AND (payload_id IS NULL OR length(raw_payload) != 0)) + (SELECT count(*) FROM"
     " sms_inbound_messages WHERE payload_id IS NULL OR length(raw_payload) != 0) +"
     " (SELECT count(*) FROM review_queue WHERE provider != 'twilio' AND (payload_id IS NULL"
     " OR length(raw_payload) != 0))"},
    {"review items of no known cause",
     "SELECT count(*) FROM review_queue WHERE NOT (reason = 'unknown_status' AND"
     " message_id IS NOT NULL AND event_id IS NOT NULL) AND NOT (reason = 'unusable_payload'"
     " AND dedup_key IS NOT NULL) AND NOT (reason = 'final_conflict' AND message_id IS NOT"
     " NULL)"},
    {"conflicts without exactly one review item",
     "SELECT count(*) FROM sms_messages m LEFT JOIN (SELECT message_id, count(*) AS n FROM"
     " review_queue WHERE reason = 'final_conflict' GROUP BY message_id) r"
     " ON r.message_id = m.id WHERE coalesce(r.n, 0) != CASE WHEN m.final_conflict = 1"
     " THEN 1 ELSE 0 END"},
    {"unknown-status review items of no event",
     "SELECT count(*) FROM review_queue r WHERE r.reason = 'unknown_status' AND NOT EXISTS"
     " (SELECT 1 FROM sms_message_events e WHERE e.id = r.event_id"
     " AND e.message_id = r.message_id AND e.status = 'unknown')"},
    {"unknown-status events without exactly one review item",
     "SELECT count(*) FROM sms_message_events e LEFT JOIN (SELECT event_id, count(*) AS n FROM"
     " review_queue WHERE reason = 'unknown_status' GROUP BY event_id) r ON r.event_id = e.id"
     " WHERE e.status = 'unknown' AND coalesce(r.n, 0) != 1"},
    {"idempotency rows naming no send",
     "SELECT count(*) FROM api_idempotency i WHERE NOT EXISTS (SELECT 1 FROM sms_messages m"
     " WHERE m.id = i.message_id AND m.origin != 'callback')"},
    {"sends without exactly one idempotency row",
     "SELECT count(*) FROM sms_messages m LEFT JOIN (SELECT message_id, count(*) AS n FROM"
     " api_idempotency GROUP BY message_id) i ON i.message_id = m.id"
     " WHERE m.origin != 'callback' AND coalesce(i.n, 0) != 1"},
    {"opt-out states that are not the latest of their history",
     "SELECT count(*) FROM sms_opt_outs o WHERE CASE WHEN o.opted_out = 1 THEN 'opt_out'"
     " ELSE 'opt_in' END != coalesce((SELECT h.action FROM sms_opt_out_history h"
     " WHERE h.recipient_hash = o.recipient_hash AND h.sender_identity = o.sender_identity"
     " ORDER BY h.effective_at DESC, h.id DESC LIMIT 1), '')"},
    {"opt-out states not as of their history's latest time",
     "SELECT count(*) FROM sms_opt_outs o WHERE o.effective_at != coalesce((SELECT"
     " max(h.effective_at) FROM sms_opt_out_history h WHERE h.recipient_hash ="
     " o.recipient_hash AND h.sender_identity = o.sender_identity), '')"},
    {"opt-out histories without a state",
     "SELECT count(*) FROM sms_opt_out_history h WHERE NOT EXISTS (SELECT 1 FROM"
     " sms_opt_outs o WHERE o.recipient_hash = h.recipient_hash"
     " AND o.sender_identity = h.sender_identity)"},
    {"keywords without exactly one history row",
     "SELECT count(*) FROM sms_inbound_messages i LEFT JOIN (SELECT inbound_id, count(*) AS n"
     " FROM sms_opt_out_history GROUP BY inbound_id) h ON h.inbound_id = i.id"
     " WHERE i.keyword IN ('opt_out', 'opt_in') AND coalesce(h.n, 0) != 1"},
    {"history rows of no keyword",
     "SELECT count(*) FROM sms_opt_out_history h WHERE NOT EXISTS (SELECT 1 FROM"
     " sms_inbound_messages i WHERE i.id = h.inbound_id AND i.keyword IN ('opt_out', 'opt_in'))"},
};

/* "<prefix><client>-<job>-..." -> the job (*client, *job_n) */
static struct job *job_of(struct mclient *cl, const char *s, const char *prefix, unsigned *client,
                          size_t *job_n, char *err, size_t errlen)
{
	size_t pl = strlen(prefix), i = pl;
	uint64_t c = 0, n = 0;

	if (!s || strncmp(s, prefix, pl) != 0)
		goto bad;
	for (; s[i] >= '0' && s[i] <= '9'; i++)
		c = c * 10 + (uint64_t)(s[i] - '0');
	if (i == pl || s[i++] != '-')
		goto bad;
	for (; s[i] >= '0' && s[i] <= '9'; i++)
		n = n * 10 + (uint64_t)(s[i] - '0');
	if (c >= M_CLIENTS || n >= cl[c].n_jobs)
		goto bad;
	*client = (unsigned)c;
	*job_n = (size_t)n;
	return &cl[c].jobs[n];
bad:
	util_fmt(err, errlen, "a stored row of no request sent: %s", s ? s : "(null)");
	return NULL;
}

struct mseen {
	struct mclient *cl;
	int what; /* 0 events, 1 inbound, 2 idempotency */
	char err[512];
};

static int mseen_row(void *arg, const char *const *col, int n_col)
{
	struct mseen *v = arg;
	struct job *j;
	unsigned c;
	size_t n;

	(void)n_col;
	if (v->what == 0) {
		if (!(j = job_of(v->cl, col[0], "mx", &c, &n, v->err, sizeof(v->err))))
			return 1;
		j->seen_events++;
		j->seen_unknown += col[1] && strcmp(col[1], "1") == 0;
	} else if (v->what == 1) {
		if (!(j = job_of(v->cl, col[0], "in", &c, &n, v->err, sizeof(v->err))))
			return 1;
		j->seen_inbound++;
	} else if (v->what == 3) {
		char want[64];
		const char *pm = col[0] ? col[0] : "";
		size_t pl = strlen(pm);
		uint64_t x = 0;
		for (size_t i = pl > 12 ? pl - 12 : 0; i < pl; i++)
			x = x * 16 + (uint64_t)(pm[i] <= '9' ? pm[i] - '0' : pm[i] - 'a' + 10);
		c = (unsigned)(x >> 40);
		n = (size_t)(x & 0xffffffffffULL);
		if (c < M_CLIENTS && n < v->cl[c].n_jobs)
			util_fmt(want, sizeof(want), TELNYX_MSG, c, n);
		if (c >= M_CLIENTS || n >= v->cl[c].n_jobs || strcmp(want, pm) != 0 ||
		    v->cl[c].jobs[n].kind != J_TELNYX) {
			util_fmt(v->err, sizeof(v->err), "a stored row of no request sent: %s", pm);
			return 1;
		}
		v->cl[c].jobs[n].seen_events++;
	} else {
		char sid[35];
		if (!(j = job_of(v->cl, col[0], "crash-", &c, &n, v->err, sizeof(v->err))))
			return 1;
		h_sid(sid, M_TAG + c, (unsigned)n);
		j->seen_idem++;
		/* a send recorded without the id has it once PATCH was answered */
		const struct step *last = &j->step[j->n_steps - 1];
		j->idem_ok =
		    col[1] ? strcmp(col[1], sid) == 0 : last->kind == S_PATCH && !last->acked;
	}
	return 0;
}

/* Every request's rows against what was sent and answered. */
static void check_jobs(struct h_snap *s, struct mclient *cl, unsigned round, int64_t *n_unusable)
{
	static const char *const q[] = {
	    "SELECT provider_message_id, CAST(status = 'unknown' AS INTEGER) FROM"
	    " sms_message_events WHERE provider = 'infobip'",
	    "SELECT provider_message_id FROM sms_inbound_messages",
	    "SELECT i.idem_key, m.provider_message_id FROM api_idempotency i LEFT JOIN"
	    " sms_messages m ON m.id = i.message_id",
	    "SELECT provider_message_id FROM sms_message_events WHERE provider = 'telnyx'",
	};
	struct mseen v = {.cl = cl};
	int64_t unusable_min = 0, unusable_max = 0;

	for (unsigned c = 0; c < M_CLIENTS; c++)
		for (size_t n = 0; n < cl[c].n_jobs; n++) {
			struct job *j = &cl[c].jobs[n];
			j->seen_events = j->seen_unknown = j->seen_inbound = j->seen_idem = 0;
			j->idem_ok = false;
		}
	for (v.what = 0; v.what < (int)ARRAY_LEN(q); v.what++) {
		if (h_snap_rows(s, mseen_row, &v, "%s", q[v.what]) < 0)
			fail_msg("round %u: the query %s failed", round, q[v.what]);
		if (v.err[0])
			fail_msg("round %u: %s", round, v.err);
	}
	for (unsigned c = 0; c < M_CLIENTS; c++) {
		for (size_t n = 0; n < cl[c].n_jobs; n++) {
			struct job *j = &cl[c].jobs[n];
			bool acked = false, sent = false;
			for (unsigned k = 0; k < j->n_steps; k++) {
				if (j->step[k].kind != S_TWILIO && j->step[k].kind != S_PATCH) {
					acked = j->step[k].acked > 0;
					sent = j->step[k].attempts > 0;
				}
			}
			if (j->kind == J_TELNYX) {
				if ((j->seen_events != 0 || acked) &&
				    j->seen_events != j->want_events)
					fail_msg("round %u: Telnyx request %u/%zu (answered 2xx %u"
					         " times) has %u of its %u events",
					         round, c, n, j->step[0].acked, j->seen_events,
					         j->want_events);
			} else if (j->kind == J_BATCH) {
				unusable_min += acked && j->want_unusable;
				unusable_max += sent && j->want_unusable;
				/* one request: all of it or nothing */
				if ((j->seen_events != 0 || acked) &&
				    (j->seen_events != j->want_events ||
				     j->seen_unknown != j->want_unknown))
					fail_msg("round %u: batch %u/%zu (answered 2xx %u times)"
					         " has %u of its %u events, %u of %u unknown",
					         round, c, n, j->step[0].acked, j->seen_events,
					         j->want_events, j->seen_unknown, j->want_unknown);
			} else if (j->kind == J_INBOUND) {
				if ((j->seen_inbound != 0 || acked) &&
				    j->seen_inbound != j->want_inbound)
					fail_msg("round %u: inbound request %u/%zu (answered 2xx %u"
					         " times) has %u of its %u messages",
					         round, c, n, j->step[0].acked, j->seen_inbound,
					         j->want_inbound);
			} else if (j->seen_idem > 1 || (acked && j->seen_idem != 1) ||
			           (j->seen_idem && !j->idem_ok)) {
				fail_msg(
				    "round %u: send %u/%zu (answered 201 %s) has %u idempotency"
				    " rows%s",
				    round, c, n, acked ? "yes" : "no", j->seen_idem,
				    j->seen_idem && !j->idem_ok ? ", naming another message" : "");
			}
		}
	}
	*n_unusable = h_snap_int(s, "SELECT count(*) FROM review_queue WHERE reason ="
	                            " 'unusable_payload'");
	if (*n_unusable < unusable_min || *n_unusable > unusable_max)
		fail_msg("round %u: %lld unusable-payload items; %lld such requests answered 2xx,"
		         " %lld sent",
		         round, (long long)*n_unusable, (long long)unusable_min,
		         (long long)unusable_max);
}

/* A send answered 201 before the kill, replayed after it: the same answer
 * (up to M_REPLAYS of the round's sends, the latest first: those the kill
 * may have caught before the sync). */
#define M_REPLAYS 24
static unsigned check_replays(struct dlrd *d, struct mclient *cl, unsigned round)
{
	struct h_resp *r = xmalloc(sizeof(*r));
	unsigned n_replayed = 0;

	for (unsigned c = 0; c < M_CLIENTS; c++) {
		unsigned budget = M_REPLAYS / M_CLIENTS;
		for (size_t n = cl[c].n_jobs; n-- > 0;) {
			struct job *j = &cl[c].jobs[n];
			if (!j->replay_pending)
				continue;
			j->replay_pending = false;
			if (!budget)
				continue;
			budget--;
			for (unsigned k = 0; k < j->n_steps; k++) {
				struct step *st = &j->step[k];
				if (st->kind != S_API || !st->first)
					continue;
				long status = send_step(d, c, n, st, r);
				if (status != 201 || strcmp(r->body, st->first) != 0)
					fail_msg("round %u: send %u/%zu answered 201 %s before the"
					         " kill, and %ld %s after it",
					         round, c, n, st->first, status, r->body);
				n_replayed++;
			}
		}
	}
	free(r);
	return n_replayed;
}

static void mcheck_all(struct dlrd *d, struct mclient *cl, unsigned round, int64_t *n_msgs,
                       int64_t *n_unusable)
{
	struct h_snap *s = h_snap_open(d);

	if (!s)
		fail_msg("round %u: cannot read the database", round);
	if (!h_pg())
		check_integrity(s, round);
	check_transactions(s, round, true);
	for (size_t i = 0; i < ARRAY_LEN(mixed_rules); i++) {
		int64_t n = h_snap_int(s, "%s", mixed_rules[i].sql);
		if (n == H_SQL_ERR)
			fail_msg("round %u: the query for %s failed", round, mixed_rules[i].what);
		if (n != 0)
			fail_msg("round %u: %lld %s", round, (long long)n, mixed_rules[i].what);
	}
	check_jobs(s, cl, round, n_unusable);
	check_folds(s, round, n_msgs);
	h_snap_close(s);
}

static unsigned mok_total(struct mclient *cl)
{
	unsigned n = 0;
	for (unsigned i = 0; i < M_CLIENTS; i++)
		n += atomic_load(&cl[i].n_ok);
	return n;
}

static void test_sigkill_mixed_load(void **state)
{
	const char *env[] = {"DLRD_INFOBIP_BASIC_AUTH=dlrd:pa55word",
	                     "DLRD_TELNYX_PUBLIC_KEYS=" TELNYX_PUB, api_tokens_env(), NULL};
	struct dlrd d;
	struct mclient cl[M_CLIENTS];
	_Atomic int phase = PH_PAUSE;
	uint64_t seed = seed_from_env(), rng = seed;
	unsigned rounds = rounds_from_env(), startup_kills = 0, idle_rounds = 0, replays = 0;
	unsigned migrations = 0; /* applied before the first complete start */
	int64_t t0 = h_now_ms(), n_msgs = 0, n_unusable = 0;
	unsigned ok = 0, cut = 0, refused = 0, resent = 0;
	size_t jobs = 0;
	int status;

	(void)state;
	print_message("crash (mixed): seed %llu (DLRD_CRASH_SEED), %u rounds\n",
	              (unsigned long long)seed, rounds);
	assert_int_equal(h_setup(&d, env), 0);
	/* killed while creating the schema (migrations) on an empty database */
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(h_spawn(&d), 0);
		h_sleep_ms(
		    (int)(rnd(&rng) % (h_pg() ? 4 * STARTUP_KILL_MAX_MS : STARTUP_KILL_MAX_MS)));
		h_stop(&d, SIGKILL, 5000, &status);
		startup_kills++;
	}
	char *first_log = h_read_file(d.log_path, NULL);
	for (const char *p = first_log; p && (p = strstr(p, "migration_applied")); p++)
		migrations++;
	free(first_log);
	assert_int_equal(h_start(&d), 0);
	memset(cl, 0, sizeof(cl));
	for (unsigned i = 0; i < M_CLIENTS; i++) {
		cl[i].id = i;
		cl[i].d = &d;
		cl[i].phase = &phase;
		cl[i].rng = seed + 0x9e3779b97f4a7c15ULL * (i + 11);
		cl[i].clock_ms = 1767225600000LL;
		atomic_init(&cl[i].idle, true);
		assert_int_equal(pthread_create(&cl[i].thread, NULL, mclient_main, &cl[i]), 0);
	}

	for (unsigned round = 1; round <= rounds; round++) {
		unsigned before = mok_total(cl);
		atomic_store(&phase, PH_RUN);
		for (int64_t w0 = h_now_ms(); mok_total(cl) == before && h_now_ms() - w0 < 10000;)
			h_sleep_ms(5);
		h_sleep_ms(LOAD_MIN_MS + (int)(rnd(&rng) % (LOAD_MAX_MS - LOAD_MIN_MS)));
		assert_int_equal(h_stop(&d, SIGKILL, 5000, &status), 0);
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		mpause(cl, &phase);

		if (round % 4 == 0) {
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
		mcheck_all(&d, cl, round, &n_msgs, &n_unusable);
		replays += check_replays(&d, cl, round);
		idle_rounds += mok_total(cl) == before;
	}

	atomic_store(&phase, PH_STOP);
	for (unsigned i = 0; i < M_CLIENTS; i++) {
		pthread_join(cl[i].thread, NULL);
		ok += cl[i].n_ok;
		cut += cl[i].n_cut;
		refused += cl[i].n_refused;
		resent += cl[i].n_resent;
		jobs += cl[i].n_jobs;
		if (cl[i].n_other || cl[i].n_replay_bad)
			fail_msg("client %u: %u unexpected answers, %u replays that differ: %s", i,
			         cl[i].n_other, cl[i].n_replay_bad, cl[i].other);
	}
	print_message("crash (mixed): %u migrations applied by starts killed before the first"
	              " that completed\n",
	              migrations);
	print_message("crash (mixed): %u kills (%u during start-up), %u answered 2xx, %u cut off"
	              " by a kill, %u refused while down, %u resent, %u sends replayed after"
	              " a restart; %zu requests begun, %lld messages, %lld unusable items;"
	              " %lld ms\n",
	              rounds + startup_kills, startup_kills, ok, cut, refused, resent, replays,
	              jobs, (long long)n_msgs, (long long)n_unusable, (long long)(h_now_ms() - t0));
	if (idle_rounds > rounds / 4)
		fail_msg("%u of %u rounds saw no 2xx answer: no load", idle_rounds, rounds);
	assert_true(cut > 0);
	assert_true(resent > 0);
	assert_true(replays > 0);
	assert_int_equal(h_stop(&d, SIGTERM, 10000, &status), 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_false(h_log_contains(&d, "Sanitizer"));
	assert_false(h_log_contains(&d, "runtime error"));
	for (unsigned i = 0; i < M_CLIENTS; i++) {
		for (size_t n = 0; n < cl[i].n_jobs; n++)
			for (unsigned k = 0; k < cl[i].jobs[n].n_steps; k++) {
				free(cl[i].jobs[n].step[k].body);
				free(cl[i].jobs[n].step[k].first);
				free(cl[i].jobs[n].step[k].with);
				free(cl[i].jobs[n].step[k].target);
			}
		free(cl[i].jobs);
	}
	h_teardown(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sigkill_under_load),
	    cmocka_unit_test(test_sigkill_mixed_load),
	};
	return cmocka_run_group_tests_name(h_pg() ? "integration-pg/crash" : "integration/crash",
	                                   tests, NULL, NULL);
}
