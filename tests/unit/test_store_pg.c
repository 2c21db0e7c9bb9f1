/* SPDX-License-Identifier: MIT */
/*
 * The PostgreSQL backend through the storage interface, on a fresh database
 * per test ($DLRD_TEST_PG_URL; skipped with a message when unset, see
 * scripts/pg-test.sh).  The same scenarios as test_store_sqlite.c (exact rows
 * for new events, duplicates and review items; one summary for every arrival
 * order; a batch is all or nothing; inbound and opt-outs; error reasons),
 * then what only a shared database has: the SQL fold equals status.c's on
 * every status and on random keys, migrations run once when several nodes
 * start together, two writers applying events of the same messages
 * concurrently (different ones, and the same) end with one stored event each
 * and the summary the set of events determines, a
 * forced deadlock is retried, a connection killed by the server is replaced.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../pgtest.h"
#include "commitq.h"
#include "config.h"
#include "optout.h"
#include "status.h"
#include "store.h"
#include "util.h"

struct fixture {
	char db[96];
	char url[512];
	struct config cfg;
	struct store *st;
	PGconn *c; /* the test's own connection, for checks */
};

static void done(struct commit_item *it)
{
	(void)it;
}

static int open_store(struct fixture *f, struct store **out)
{
	char err[512] = "";
	int rc = store_open(&f->cfg, out, err, sizeof(err));
	if (rc)
		fprintf(stderr, "store_open: %s\n", err);
	return rc;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_int_equal(pgt_create_db(f->db, sizeof(f->db), f->url, sizeof(f->url)), 0);
	f->cfg.storage_url = f->url;
	f->cfg.synchronous = SYNC_FULL;
	assert_int_equal(open_store(f, &f->st), 0);
	f->c = pgt_connect(f->url);
	assert_non_null(f->c);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	store_close(f->st);
	PQfinish(f->c);
	pgt_drop_db(f->db);
	free(f);
	return 0;
}

static struct dlr_event mk(const char *sid, enum dlr_status st, const char *raw, const char *code)
{
	struct dlr_event e;
	memset(&e, 0, sizeof(e));
	e.kind = EV_STATUS;
	e.provider = "twilio";
	e.provider_message_id = sid;
	e.status = st;
	e.raw_status = raw;
	e.error_code = code;
	e.occurred_ms = -1;
	e.recipient_hash = "abc";
	e.destination_country = "US";
	e.sender_identity = "+15005550006";
	event_finish(&e);
	return e;
}

static void item_init(struct commit_item *it, struct dlr_event *e, size_t n)
{
	memset(it, 0, sizeof(*it));
	it->provider = "twilio";
	it->events = e;
	it->n_events = n;
	it->raw_payload = (struct iov){"raw=1", 5};
	it->received_ms = 1700000000000;
	it->complete = done;
}

static int apply_on(struct store *st, struct dlr_event *e, struct commit_item *it)
{
	char err[512] = "";
	item_init(it, e, 1);
	struct commit_item *items[1] = {it};
	int rc = store_apply(st, items, 1, err, sizeof(err));
	if (rc)
		fprintf(stderr, "store_apply: %s\n", err);
	return rc;
}

static int apply1(struct fixture *f, struct dlr_event *e, struct commit_item *it)
{
	return apply_on(f->st, e, it);
}

#define Q(f, ...) pgt_int((f)->c, __VA_ARGS__)

/* The order-independent part of a summary row, as one string (the same
 * expression as test_store_sqlite.c). */
static void summary(struct fixture *f, const char *sid, char *out, size_t n)
{
	pgt_str(f->c, out, n,
	        "SELECT current_status || '|' || coalesce(current_raw_status,'-') || '|' ||"
	        " coalesce(current_error_code,'-') || '|' || is_final || '|' || status_mask ||"
	        " '|' || final_conflict || '|' || event_count FROM sms_messages"
	        " WHERE provider_message_id = '%s'",
	        sid);
}

/* ---- the scenarios of test_store_sqlite.c ---- */

static void test_new_and_duplicate(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	struct dlr_event e = mk("SMaaaa", ST_SENT, "sent", NULL);
	assert_int_equal(apply1(f, &e, &it), 0);
	assert_int_equal(it.n_new, 1);
	assert_int_equal(it.n_dup, 0);
	struct dlr_event d = mk("SMaaaa", ST_SENT, "sent", NULL);
	assert_int_equal(apply1(f, &d, &it), 0);
	assert_int_equal(it.n_new, 0);
	assert_int_equal(it.n_dup, 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events"), 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_callback_log"), 2);
	assert_int_equal(Q(f, "SELECT sum(duplicate) FROM sms_callback_log"), 1);
	assert_int_equal(Q(f, "SELECT duplicate_count FROM sms_messages"), 1);
	assert_int_equal(Q(f, "SELECT callback_count FROM sms_messages"), 2);
	assert_int_equal(Q(f, "SELECT count(*) FROM review_queue"), 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM schema_migrations"), 2);
	/* times are the item's receipt time, exactly */
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events WHERE received_at ="
	                      " '2023-11-14T22:13:20.000Z'"),
	                 1);
	/* the raw payload byte for byte; a form body is not JSON */
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events WHERE raw_payload ="
	                      " 'raw=1'::bytea AND payload_json IS NULL"),
	                 1);
}

static void test_every_order_same_summary(void **state)
{
	struct fixture *f = *state;
	/* 5 events incl. a duplicate and a conflicting final: 120 orders */
	const struct {
		enum dlr_status st;
		const char *raw, *code;
	} set[] = {
	    {ST_ACCEPTED, "queued", NULL},
	    {ST_SENT, "sent", NULL},
	    {ST_UNDELIVERED, "undelivered", "30003"},
	    {ST_SENT, "sent", NULL},
	    {ST_DELIVERED, "delivered", NULL},
	};
	int order[5] = {0, 1, 2, 3, 4}, c[5] = {0};
	char ref[256] = "", got[256], sid[32];
	int perm = 0;
	for (int i = 1;;) {
		util_fmt(sid, sizeof(sid), "SMperm%03d", perm);
		for (int k = 0; k < 5; k++) {
			struct commit_item it;
			struct dlr_event e =
			    mk(sid, set[order[k]].st, set[order[k]].raw, set[order[k]].code);
			assert_int_equal(apply1(f, &e, &it), 0);
		}
		summary(f, sid, got, sizeof(got));
		if (perm == 0)
			util_strlcpy(ref, got, sizeof(ref));
		assert_string_equal(got, ref);
		perm++;
		while (i < 5 && c[i] >= i) {
			c[i] = 0;
			i++;
		}
		if (i >= 5)
			break;
		int j = (i % 2) ? c[i] : 0;
		int t = order[j];
		order[j] = order[i];
		order[i] = t;
		c[i]++;
		i = 1;
	}
	assert_int_equal(perm, 120);
	assert_string_equal(ref, "delivered|delivered|-|1|15|1|4");
	assert_int_equal(Q(f, "SELECT count(*) FROM review_queue WHERE reason='final_conflict'"),
	                 120);
	assert_int_equal(Q(f, "SELECT count(DISTINCT message_id) FROM review_queue"), 120);
}

static void test_every_order_one_batch(void **state)
{
	struct fixture *f = *state;
	/* The same five events in one batch, in a few orders and interleaved
	 * with another message: the same summary. */
	const struct {
		enum dlr_status st;
		const char *raw, *code;
	} set[] = {
	    {ST_ACCEPTED, "queued", NULL},
	    {ST_SENT, "sent", NULL},
	    {ST_UNDELIVERED, "undelivered", "30003"},
	    {ST_SENT, "sent", NULL},
	    {ST_DELIVERED, "delivered", NULL},
	};
	static const int orders[4][5] = {
	    {0, 1, 2, 3, 4}, {4, 3, 2, 1, 0}, {2, 4, 0, 3, 1}, {3, 0, 4, 1, 2}};
	char got[256], sid[32], err[256];
	for (int o = 0; o < 4; o++) {
		struct dlr_event ev[10];
		struct commit_item its[10], *items[10];
		util_fmt(sid, sizeof(sid), "SMbatch%d", o);
		for (int k = 0; k < 5; k++) {
			const int x = orders[o][k];
			ev[2 * k] = mk(sid, set[x].st, set[x].raw, set[x].code);
			ev[2 * k + 1] = mk("SMother", set[x].st, set[x].raw, set[x].code);
		}
		for (int k = 0; k < 10; k++) {
			item_init(&its[k], &ev[k], 1);
			items[k] = &its[k];
		}
		assert_int_equal(store_apply(f->st, items, 10, err, sizeof(err)), 0);
		/* the second "sent" of each message is the duplicate, whatever
		 * the order; every other event is new */
		uint32_t dup = 0, news = 0;
		for (int k = 0; k < 10; k++) {
			dup += its[k].n_dup;
			news += its[k].n_new;
		}
		assert_int_equal(news, o == 0 ? 8 : 4);
		assert_int_equal(dup, o == 0 ? 2 : 6);
		summary(f, sid, got, sizeof(got));
		assert_string_equal(got, "delivered|delivered|-|1|15|1|4");
	}
	summary(f, "SMother", got, sizeof(got));
	assert_string_equal(got, "delivered|delivered|-|1|15|1|4");
	assert_int_equal(Q(f, "SELECT count(*) FROM review_queue WHERE reason='final_conflict'"),
	                 5);
}

static void test_unknown_and_unusable_go_to_review(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	struct dlr_event e = mk("SMu", ST_UNKNOWN, "weird", NULL);
	e.review = REVIEW_UNKNOWN_STATUS;
	assert_int_equal(apply1(f, &e, &it), 0);
	assert_int_equal(it.n_review, 1);
	struct dlr_event u;
	memset(&u, 0, sizeof(u));
	u.kind = EV_UNUSABLE;
	u.provider = "twilio";
	u.review = REVIEW_UNUSABLE;
	u.review_detail = "no usable MessageSid";
	u.occurred_ms = -1;
	event_finish(&u);
	assert_int_equal(apply1(f, &u, &it), 0);
	assert_int_equal(it.n_review, 1);
	assert_int_equal(it.n_new + it.n_dup, 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM review_queue WHERE reason='unknown_status'"
	                      " AND raw_status='weird' AND event_id IS NOT NULL"),
	                 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM review_queue WHERE "
	                      "reason='unusable_payload' AND raw_payload = 'raw=1'::bytea"
	                      " AND detail = 'no usable MessageSid' AND message_id IS NULL"),
	                 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events WHERE status='unknown'"), 1);
}

static void test_batch_is_atomic(void **state)
{
	struct fixture *f = *state;
	char err[256];
	struct dlr_event a = mk("SMbatch1", ST_SENT, "sent", NULL);
	struct dlr_event b = mk("SMbatch2", ST_SENT, "sent", NULL);
	struct commit_item i1, i2;
	item_init(&i1, &a, 1);
	item_init(&i2, &b, 1);
	/* a status event without a message id violates NOT NULL */
	b.provider_message_id = NULL;
	struct commit_item *items[2] = {&i1, &i2};
	assert_int_equal(store_apply(f->st, items, 2, err, sizeof(err)), DLRD_EIO);
	assert_non_null(strstr(err, "postgresql"));
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages"), 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_callback_log"), 0);
	/* the store is usable afterwards, on the same connection */
	items[1] = &i1;
	assert_int_equal(store_apply(f->st, items, 1, err, sizeof(err)), 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events WHERE "
	                      "provider_message_id = 'SMbatch1'"),
	                 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
	                      " 'dlrd' AND datname = current_database()"),
	                 1);
}

static struct dlr_event inbound(const char *id, const char *user, const char *text,
                                int64_t occurred_ms)
{
	struct dlr_event e;
	memset(&e, 0, sizeof(e));
	e.kind = EV_INBOUND;
	e.provider = "twilio";
	e.provider_message_id = id;
	e.recipient_hash = user;
	e.sender_identity = "+15005550006";
	e.text = text;
	e.text_len = strlen(text);
	e.keyword = optout_classify(text, strlen(text));
	e.occurred_ms = occurred_ms;
	event_finish(&e);
	return e;
}

static void test_inbound_and_opt_out(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	char buf[128];
	/* START at t=2000 arrives before STOP at t=1000: the later action wins */
	struct dlr_event start = inbound("SMin2", "userhash", " start\n", 2000);
	struct dlr_event stop = inbound("SMin1", "userhash", "STOP", 1000);
	struct dlr_event stop_dup = inbound("SMin1", "userhash", "STOP", 1000);
	struct dlr_event hello = inbound("SMin3", "userhash", "please stop texting me", 3000);
	assert_int_equal(apply1(f, &start, &it), 0);
	assert_int_equal(it.n_new, 1);
	assert_int_equal(apply1(f, &stop, &it), 0);
	assert_int_equal(apply1(f, &stop_dup, &it), 0);
	assert_int_equal(it.n_dup, 1);
	assert_int_equal(apply1(f, &hello, &it), 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_inbound_messages"), 3);
	assert_int_equal(Q(f, "SELECT retry_count FROM sms_inbound_messages WHERE "
	                      "provider_message_id='SMin1'"),
	                 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_inbound_messages WHERE keyword='none'"), 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_opt_out_history"), 2);
	assert_int_equal(Q(f, "SELECT opted_out FROM sms_opt_outs WHERE recipient_hash="
	                      "'userhash' AND sender_identity='+15005550006'"),
	                 0);
	assert_string_equal(pgt_str(f->c, buf, sizeof(buf),
	                            "SELECT keyword || ' ' || inbound_id || ' ' ||"
	                            " to_char(effective_at AT TIME ZONE 'UTC',"
	                            " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS') FROM sms_opt_outs"),
	                    "START 1 1970-01-01T00:00:02.000");
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_inbound_messages WHERE body = ' start\n'"),
	                 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events"), 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages"), 0);
}

static void test_error_reason_stored(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	struct dlr_event e = mk("SMerr", ST_UNDELIVERED, "undelivered", "30003");
	e.error_reason = ER_UNREACHABLE;
	e.occurred_ms = 1700000000123;
	event_finish(&e);
	assert_int_equal(apply1(f, &e, &it), 0);
	struct dlr_event late = mk("SMerr", ST_SENT, "sent", NULL);
	assert_int_equal(apply1(f, &late, &it), 0);
	assert_int_equal(Q(f,
	                   "SELECT count(*) FROM sms_messages WHERE current_status="
	                   "'undelivered' AND current_error_reason='unreachable'"
	                   " AND current_occurred_ms = 1700000000123 AND current_occurred_at ="
	                   " '2023-11-14T22:13:20.123Z' AND is_final = 1 AND final_at IS NOT NULL"),
	                 1);
	assert_int_equal(Q(f, "SELECT changed_summary FROM sms_message_events WHERE "
	                      "status='sent'"),
	                 0);
}

/* ---- PostgreSQL only ---- */

static void test_json_payload(void **state)
{
	struct fixture *f = *state;
	char err[256], buf[128];
	static const char *payloads[] = {"{\"a\": [1, 2], \"b\": \"x\"}", "{\"broken\": ", "[]",
	                                 "MessageSid=SM1"};
	for (size_t i = 0; i < ARRAY_LEN(payloads); i++) {
		char sid[16];
		struct commit_item it;
		util_fmt(sid, sizeof(sid), "SMjson%zu", i);
		struct dlr_event e = mk(sid, ST_SENT, "sent", NULL);
		item_init(&it, &e, 1);
		it.raw_payload = (struct iov){payloads[i], strlen(payloads[i])};
		struct commit_item *items[1] = {&it};
		assert_int_equal(store_apply(f->st, items, 1, err, sizeof(err)), 0);
	}
	assert_string_equal(pgt_str(f->c, buf, sizeof(buf),
	                            "SELECT payload_json->>'b' FROM sms_message_events WHERE"
	                            " provider_message_id = 'SMjson0'"),
	                    "x");
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events WHERE payload_json IS NULL"),
	                 2);
	/* bytes as sent, JSON or not */
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events WHERE raw_payload ="
	                      " convert_to('{\"broken\": ', 'UTF8')"),
	                 1);
}

/* The SQL fold against status.c: every status's rank and bit, the conflict
 * test on every mask, and status_event_cmp on many key pairs. */
static void test_fold_matches_c(void **state)
{
	struct fixture *f = *state;
	static const char *strs[] = {NULL,    "",      "a",        "b",         "ab", "B",
	                             "30003", "30007", "\xc3\xa4", "z\xc3\xa4", "~"};
	static const int64_t times[] = {-1, 0, 5, 1700000000000};
	char sql[1024];
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (int s = 0; s < ST__COUNT; s++) {
		const char *n = status_name((enum dlr_status)s);
		assert_int_equal(Q(f, "SELECT dlrd_status_rank('%s')", n), status_rank(s));
		assert_int_equal(Q(f, "SELECT dlrd_status_bit('%s')", n), 1 << s);
	}
	assert_int_equal(Q(f, "SELECT dlrd_status_rank('bogus')"), 0);
	for (uint32_t m = 0; m < (1u << ST__COUNT); m++)
		assert_int_equal(Q(f, "SELECT dlrd_mask_conflict(%u)::int", m),
		                 status_mask_conflict(m));

	/* 3000 random pairs, in one query each way */
	PGresult *r;
	for (int round = 0; round < 3000; round++) {
		struct status_key k[2];
		char lit[2][4][64];
		for (int j = 0; j < 2; j++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			k[j].status = (enum dlr_status)(x % ST__COUNT);
			k[j].occurred_ms = times[(x >> 8) % ARRAY_LEN(times)];
			k[j].error_code = strs[(x >> 16) % ARRAY_LEN(strs)];
			k[j].raw_status = strs[(x >> 24) % ARRAY_LEN(strs)];
			/* the same key on both sides now and then */
			if (j == 1 && (x >> 32) % 5 == 0)
				k[1] = k[0];
			util_fmt(lit[j][0], 64, "'%s'", status_name(k[j].status));
			util_fmt(lit[j][1], 64, "%lld", (long long)k[j].occurred_ms);
			util_fmt(lit[j][2], 64, k[j].error_code ? "'%s'" : "NULL",
			         k[j].error_code ? k[j].error_code : "");
			util_fmt(lit[j][3], 64, k[j].raw_status ? "'%s'" : "NULL",
			         k[j].raw_status ? k[j].raw_status : "");
		}
		util_fmt(sql, sizeof(sql),
		         "SELECT dlrd_event_gt(%s, %s, %s, %s, %s, %s, %s, %s)::int,"
		         " dlrd_event_gt(%s, %s, %s, %s, %s, %s, %s, %s)::int",
		         lit[0][0], lit[0][1], lit[0][2], lit[0][3], lit[1][0], lit[1][1],
		         lit[1][2], lit[1][3], lit[1][0], lit[1][1], lit[1][2], lit[1][3],
		         lit[0][0], lit[0][1], lit[0][2], lit[0][3]);
		r = PQexec(f->c, sql);
		assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
		int c = status_event_cmp(&k[0], &k[1]);
		if ((PQgetvalue(r, 0, 0)[0] == '1') != (c > 0) ||
		    (PQgetvalue(r, 0, 1)[0] == '1') != (c < 0))
			fail_msg("fold differs from status_event_cmp (%d): %s", c, sql);
		PQclear(r);
	}
}

/* Several nodes starting at once on an empty database: every one opens, and
 * each migration is applied exactly once. */
struct opener {
	struct fixture *f;
	struct store *st;
	int rc;
};

static void *open_main(void *arg)
{
	struct opener *o = arg;
	o->rc = open_store(o->f, &o->st);
	return NULL;
}

static void test_concurrent_start(void **state)
{
	struct fixture *f = *state;
	struct fixture g;
	struct opener o[6];
	pthread_t t[6];

	/* a second, empty database for this test */
	memset(&g, 0, sizeof(g));
	assert_int_equal(pgt_create_db(g.db, sizeof(g.db), g.url, sizeof(g.url)), 0);
	g.cfg.storage_url = g.url;
	g.cfg.synchronous = SYNC_FULL;
	for (int i = 0; i < 6; i++) {
		o[i] = (struct opener){.f = &g};
		assert_int_equal(pthread_create(&t[i], NULL, open_main, &o[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(o[i].rc, 0);
	}
	PGconn *c = pgt_connect(g.url);
	assert_non_null(c);
	assert_int_equal(pgt_int(c, "SELECT count(*) FROM schema_migrations"), 2);
	assert_int_equal(pgt_int(c, "SELECT max(version) FROM schema_migrations"), 2);
	PQfinish(c);
	for (int i = 0; i < 6; i++)
		store_close(o[i].st);
	pgt_drop_db(g.db);

	/* and a database newer than this binary is refused */
	assert_int_equal(pgt_exec(f->c, "INSERT INTO schema_migrations (version, name)"
	                                " VALUES (99, 'from the future')"),
	                 0);
	struct store *st = NULL;
	char err[512] = "";
	assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), DLRD_EIO);
	assert_non_null(strstr(err, "newer than this dlrd"));
}

/* ---- two writers on the same messages ---- */

#define CW_MESSAGES 40
#define CW_EVENTS   6  /* distinct events per message */
#define CW_ROUNDS   12 /* batches per writer */

static const struct {
	enum dlr_status st;
	const char *raw, *code;
	int64_t occ;
} cw_set[] = {
    {ST_ACCEPTED, "queued", NULL, -1},           {ST_SENT, "sent", NULL, -1},
    {ST_UNDELIVERED, "undelivered", "30003", 5}, {ST_DELIVERED, "delivered", NULL, 7},
    {ST_FAILED, "failed", "30008", 3},           {ST_UNKNOWN, "weird", NULL, -1},
    {ST_DELIVERED, "delivered", NULL, 9},        {ST_UNDELIVERED, "undelivered", "30005", 5},
};

struct writer {
	struct store *st;
	struct dlr_event *ev;
	size_t n;
	int rc;
	char err[256];
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	size_t per = (w->n + CW_ROUNDS - 1) / CW_ROUNDS;
	struct commit_item *its = calloc(w->n, sizeof(*its));
	struct commit_item **items = calloc(w->n, sizeof(*items));

	for (size_t off = 0; off < w->n && w->rc == 0; off += per) {
		size_t k = w->n - off < per ? w->n - off : per;
		for (size_t i = 0; i < k; i++) {
			item_init(&its[off + i], &w->ev[off + i], 1);
			items[i] = &its[off + i];
		}
		w->rc = store_apply(w->st, items, k, w->err, sizeof(w->err));
	}
	free(its);
	free(items);
	return NULL;
}

static void shuffle(struct dlr_event *ev, size_t n, uint64_t *x)
{
	for (size_t i = n; i > 1; i--) {
		*x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
		size_t j = (size_t)(*x % i);
		struct dlr_event t = ev[i - 1];
		ev[i - 1] = ev[j];
		ev[j] = t;
	}
}

static void test_two_writers(void **state)
{
	struct fixture *f = *state;
	static char sids[CW_MESSAGES][16];
	struct dlr_event *a = calloc(CW_MESSAGES * CW_EVENTS * 2, sizeof(*a));
	struct dlr_event *b = calloc(CW_MESSAGES * CW_EVENTS * 2, sizeof(*b));
	struct status_summary expect[CW_MESSAGES];
	uint32_t pick[CW_MESSAGES];
	size_t na = 0, nb = 0, distinct = 0, sent = 0;
	uint64_t x = 0x1234567887654321ull;
	struct writer w[2];
	pthread_t t[2];
	char buf[256];

	memset(expect, 0, sizeof(expect));
	for (int m = 0; m < CW_MESSAGES; m++) {
		util_fmt(sids[m], sizeof(sids[m]), "SMcw%04d", m);
		/* a random subset of CW_EVENTS of the 8 kinds */
		uint32_t set = 0;
		while (__builtin_popcount(set) < CW_EVENTS) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			set |= 1u << (x % ARRAY_LEN(cw_set));
		}
		pick[m] = set;
		for (unsigned k = 0; k < ARRAY_LEN(cw_set); k++) {
			if (!(set & (1u << k)))
				continue;
			struct dlr_event e =
			    mk(sids[m], cw_set[k].st, cw_set[k].raw, cw_set[k].code);
			e.occurred_ms = cw_set[k].occ;
			event_finish(&e);
			struct status_key key = {e.status, e.occurred_ms, e.error_code,
			                         e.raw_status};
			status_fold(&expect[m], &key, false);
			distinct++;
			/* different events of one message to the two writers,
			 * half of them to both */
			if ((k + (unsigned)m) % 2)
				a[na++] = e;
			else
				b[nb++] = e;
			sent++;
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			if ((x >> 5) & 1) {
				if ((k + (unsigned)m) % 2)
					b[nb++] = e;
				else
					a[na++] = e;
				sent++;
			}
		}
	}
	shuffle(a, na, &x);
	shuffle(b, nb, &x);

	memset(w, 0, sizeof(w));
	w[0] = (struct writer){.ev = a, .n = na};
	w[1] = (struct writer){.ev = b, .n = nb};
	assert_int_equal(open_store(f, &w[1].st), 0);
	w[0].st = f->st;
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		if (w[i].rc)
			fail_msg("writer %d: %s", i, w[i].err);
	}
	store_close(w[1].st);

	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events"), (int64_t)distinct);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages"), CW_MESSAGES);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_callback_log"), (int64_t)sent);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_callback_log WHERE duplicate = 0"),
	                 (int64_t)distinct);
	assert_int_equal(Q(f, "SELECT sum(callback_count) FROM sms_messages"), (int64_t)sent);
	assert_int_equal(Q(f, "SELECT sum(duplicate_count) FROM sms_messages"),
	                 (int64_t)(sent - distinct));
	int conflicts = 0;
	for (int m = 0; m < CW_MESSAGES; m++) {
		char want[256];
		bool conflict = status_mask_conflict(expect[m].mask);
		conflicts += conflict;
		util_fmt(want, sizeof(want), "%s|%s|%s|%lld|%d|%u|%d|%d",
		         status_name(expect[m].top.status),
		         expect[m].top.raw_status ? expect[m].top.raw_status : "-",
		         expect[m].top.error_code ? expect[m].top.error_code : "-",
		         (long long)expect[m].top.occurred_ms,
		         status_is_final(expect[m].top.status), expect[m].mask, conflict,
		         __builtin_popcount(pick[m]));
		pgt_str(f->c, buf, sizeof(buf),
		        "SELECT current_status || '|' || coalesce(current_raw_status,'-') || '|' ||"
		        " coalesce(current_error_code,'-') || '|' || current_occurred_ms || '|' ||"
		        " is_final || '|' || status_mask || '|' || final_conflict || '|' ||"
		        " event_count FROM sms_messages WHERE provider_message_id = '%s'",
		        sids[m]);
		assert_string_equal(buf, want);
		/* exactly one conflict row when the conflict exists */
		assert_int_equal(Q(f,
		                   "SELECT count(*) FROM review_queue r JOIN sms_messages m ON"
		                   " m.id = r.message_id WHERE r.reason = 'final_conflict' AND"
		                   " m.provider_message_id = '%s'",
		                   sids[m]),
		                 conflict);
	}
	assert_true(conflicts > 0);
	free(a);
	free(b);
}

/* ---- deadlock and connection loss ---- */

struct bg_apply {
	struct store *st;
	struct dlr_event ev[2];
	struct commit_item its[2];
	int rc;
	char err[256];
};

static void *bg_apply_main(void *arg)
{
	struct bg_apply *b = arg;
	struct commit_item *items[2] = {&b->its[0], &b->its[1]};
	item_init(&b->its[0], &b->ev[0], 1);
	item_init(&b->its[1], &b->ev[1], 1);
	b->rc = store_apply(b->st, items, 2, b->err, sizeof(b->err));
	return NULL;
}

/* Ends dlrd's session from the server side and waits until it is gone (its
 * termination message and EOF are then on their way). */
static void terminate_dlrd(struct fixture *f)
{
	int64_t deadline = util_now_ms() + 10000;

	assert_true(Q(f, "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM"
	                 " pg_stat_activity WHERE application_name = 'dlrd' AND datname ="
	                 " current_database()) t") >= 0);
	while (Q(f, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dlrd' AND"
	            " datname = current_database()") != 0) {
		assert_true(util_now_ms() < deadline);
		usleep(10000);
	}
	usleep(50000);
}

/* dlrd's batch locks SMdl1 and then waits for SMdl2, which the test holds;
 * the test then asks for SMdl1: a deadlock.  The server aborts dlrd's
 * transaction (its wait began first), dlrd retries the batch, and once the
 * test commits the retry succeeds: both events stored once. */
static void test_deadlock_is_retried(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	struct bg_apply b;
	pthread_t t;
	PGconn *x = pgt_connect(f->url);

	assert_non_null(x);
	/* dlrd must be the victim, whatever the machine's load: its session
	 * checks for deadlocks after 3 s of waiting (the test's request comes
	 * long before), the test's own session only after a minute.  The
	 * store's next batch reconnects with the new setting. */
	assert_int_equal(pgt_exec(f->c, "ALTER DATABASE %s SET deadlock_timeout = '3s'", f->db), 0);
	assert_int_equal(pgt_exec(x, "SET deadlock_timeout = '60s'"), 0);
	terminate_dlrd(f);
	struct dlr_event e1 = mk("SMdl1", ST_SENT, "sent", NULL);
	struct dlr_event e2 = mk("SMdl2", ST_SENT, "sent", NULL);
	assert_int_equal(apply1(f, &e1, &it), 0);
	assert_int_equal(apply1(f, &e2, &it), 0);

	assert_int_equal(pgt_exec(x, "BEGIN"), 0);
	assert_int_equal(pgt_exec(x, "SELECT 1 FROM sms_messages WHERE provider_message_id ="
	                             " 'SMdl2' FOR UPDATE"),
	                 0);
	memset(&b, 0, sizeof(b));
	b.st = f->st;
	b.ev[0] = mk("SMdl2", ST_DELIVERED, "delivered", NULL);
	b.ev[1] = mk("SMdl1", ST_DELIVERED, "delivered", NULL);
	assert_int_equal(pthread_create(&t, NULL, bg_apply_main, &b), 0);
	/* wait until dlrd's session waits for a lock */
	int64_t deadline = util_now_ms() + 10000;
	while (Q(f, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dlrd' AND"
	            " datname = current_database() AND wait_event_type = 'Lock'") != 1) {
		assert_true(util_now_ms() < deadline);
		usleep(20000);
	}
	/* now the cycle: this blocks until the server breaks it */
	assert_int_equal(pgt_exec(x, "SELECT 1 FROM sms_messages WHERE provider_message_id ="
	                             " 'SMdl1' FOR UPDATE"),
	                 0);
	usleep(100000);
	assert_int_equal(pgt_exec(x, "COMMIT"), 0);
	pthread_join(t, NULL);
	if (b.rc)
		fail_msg("the batch was not retried: %s", b.err);
	assert_int_equal(b.its[0].n_new + b.its[1].n_new, 2);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages WHERE current_status ="
	                      " 'delivered'"),
	                 2);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events"), 4);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_callback_log"), 4);
	PQfinish(x);
}

static void test_reconnects(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	char err[256];

	struct dlr_event e1 = mk("SMrc", ST_SENT, "sent", NULL);
	assert_int_equal(apply1(f, &e1, &it), 0);
	/* the server ends dlrd's session while it is idle (a restart, an
	 * administrator): the next batch reconnects first and succeeds */
	terminate_dlrd(f);
	struct dlr_event e2 = mk("SMrc", ST_DELIVERED, "delivered", NULL);
	assert_int_equal(apply1(f, &e2, &it), 0);
	assert_int_equal(it.n_new, 1);
	/* again, then the probe reconnects */
	terminate_dlrd(f);
	assert_int_equal(store_probe(f->st, err, sizeof(err)), 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events"), 2);
	assert_int_equal(Q(f, "SELECT (current_status = 'delivered')::int FROM sms_messages"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_new_and_duplicate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_every_order_same_summary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_every_order_one_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_and_unusable_go_to_review, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_batch_is_atomic, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound_and_opt_out, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_error_reason_stored, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_json_payload, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fold_matches_c, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_start, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_writers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deadlock_is_retried, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reconnects, setup, teardown),
	};
	if (!pgt_server())
		return pgt_not_configured("test_store_pg");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
