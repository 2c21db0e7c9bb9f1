/* SPDX-License-Identifier: MIT */
/*
 * The PostgreSQL backend through the storage interface, on a fresh database
 * per test ($DLRD_TEST_PG_URL; skipped with a message when unset, see
 * scripts/pg-test.sh).  The same scenarios as test_store_sqlite.c (exact rows
 * for new events, duplicates and review items; one summary for every arrival
 * order; a batch is all or nothing; inbound and opt-outs; error reasons),
 * then what only a shared database has: the SQL fold equals status.c's on
 * every status and on random keys, migrations run once when several nodes
 * start together, migration 5 rewrites the
 * ids and fingerprints an older dlrd stored, an old node's review insert
 * still works after migration 9, two writers applying events of the same messages
 * concurrently (different ones, and the same) end with one stored event each
 * and the summary the set of events determines, a
 * forced deadlock is retried, a lock_timeout of the database does not fail
 * a batch that waits for a row, a connection killed by the server is
 * replaced.
 * Then the JSON API at store level: sends (replay, reused key, opt-out),
 * adopting and merging callback-created rows, reveal and resolve with their
 * audit rows, API items mixed with callbacks in one batch, every read method
 * (times as SQLite's text) and the read pool (replaced connections, 503 when
 * full), and two nodes racing on the same idempotency keys, provider ids
 * and review items.
 */
#include <fcntl.h>
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

#include "../logfmt.h"
#include "../pgtest.h"
#include "arena.h"
#include "commitq.h"
#include "config.h"
#include "crypto.h"
#include "metrics.h"
#include "optout.h"
#include "privacy.h"
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
	assert_int_equal(Q(f, "SELECT count(*) FROM schema_migrations"), 12);
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
	                      "'userhash' AND sender_identity='15005550006'"),
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
	assert_int_equal(pgt_int(c, "SELECT count(*) FROM schema_migrations"), 12);
	assert_int_equal(pgt_int(c, "SELECT max(version) FROM schema_migrations"), 12);
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

/* Once the schema is up to date, a node needs no CREATE privilege
 * (deployment.md: "the first time, and when a new version adds a
 * migration"): a role with only the privileges to use the tables and
 * functions (schema_migrations only read) opens the store, stores
 * callbacks and passes the health probe. */
static void test_open_without_create_privilege(void **state)
{
	struct fixture *f = *state;
	struct fixture g;
	struct commit_item it;
	char role[64], err[512] = "";
	struct store *st = NULL;

	util_fmt(role, sizeof(role), "%s_app", f->db);
	assert_int_equal(pgt_exec(f->c, "CREATE ROLE %s LOGIN", role), 0);
	assert_int_equal(pgt_exec(f->c, "REVOKE CREATE ON SCHEMA public FROM PUBLIC"), 0);
	assert_int_equal(pgt_exec(f->c, "GRANT USAGE ON SCHEMA public TO %s", role), 0);
	assert_int_equal(pgt_exec(f->c,
	                          "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA"
	                          " public TO %s",
	                          role),
	                 0);
	assert_int_equal(
	    pgt_exec(f->c, "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %s", role), 0);
	/* the list of migrations is only read */
	assert_int_equal(
	    pgt_exec(f->c, "REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM %s", role), 0);
	memset(&g, 0, sizeof(g));
	util_fmt(g.url, sizeof(g.url), "%s user=%s", f->url, role);
	g.cfg.storage_url = g.url;
	g.cfg.synchronous = SYNC_FULL;
	int rc = store_open(&g.cfg, &st, err, sizeof(err));
	if (rc == 0) {
		struct dlr_event e = mk("SMrole", ST_SENT, "sent", NULL);
		rc = apply_on(st, &e, &it);
		/* and /healthz's probe passes */
		if (rc == 0 && (rc = store_probe(st, err, sizeof(err))) != 0)
			fprintf(stderr, "store_probe: %s\n", err);
		store_close(st);
	}
	pgt_exec(f->c, "DROP OWNED BY %s", role);
	pgt_exec(f->c, "DROP ROLE %s", role);
	if (rc)
		fail_msg("a node without CREATE privilege failed: %s", err);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events"), 1);
}

#define TEST_HASH_KEY "store-test-hash-key"

/* Migration 5 (SQLite's 7): a database an older dlrd wrote (numbers in
 * Telnyx and Sinch event ids, unkeyed idempotency fingerprints) is
 * rewritten at open, more rows than one read of the migration takes, under
 * the unique (provider, dedup_key); it needs the hash key and rolls back
 * whole without it; it runs once; a version this dlrd does not know is
 * refused. */
static void test_migration_5_privacy_ids(void **state)
{
	struct fixture *f = *state;
	char err[512] = "", want[256], got[256], h[65], old[65], tag[PRIVACY_TAG_LEN + 1];
	uint8_t md[CRYPTO_SHA256_LEN];

	store_close(f->st);
	f->st = NULL;
	assert_int_equal(
	    pgt_exec(f->c,
	             "INSERT INTO sms_messages (id, provider, provider_message_id, origin,"
	             " current_status, created_at, updated_at) VALUES"
	             " ('00000000-0000-7000-8000-000000000001', 'telnyx', 'pm1', 'callback',"
	             " 'delivered', now(), now()),"
	             " ('00000000-0000-7000-8000-000000000002', 'sinch', 'B/1', 'callback',"
	             " 'delivered', now(), now());"
	             /* 600 Telnyx recipients: two reads of 512 */
	             "INSERT INTO sms_message_events (message_id, provider, provider_message_id,"
	             " provider_event_id, dedup_key, status, is_final, changed_summary,"
	             " raw_payload, received_at) SELECT '00000000-0000-7000-8000-000000000001',"
	             " 'telnyx', 'pm1', 'ev:+4477009' || lpad(i::text, 5, '0'), 'old' || i,"
	             " 'delivered', 1, 1, '\\x00', now() FROM generate_series(1, 600) AS i;"
	             "INSERT INTO sms_message_events (message_id, provider, provider_message_id,"
	             " provider_event_id, dedup_key, status, raw_status, error_code, is_final,"
	             " changed_summary, raw_payload, received_at) VALUES"
	             " ('00000000-0000-7000-8000-000000000001', 'telnyx', 'pm1', 'ev:#1', 'k1',"
	             "  'delivered', NULL, NULL, 1, 1, '\\x00', now()),"
	             " ('00000000-0000-7000-8000-000000000002', 'sinch', 'B/1',"
	             "  'B/1/15551231234/Deliv/ered/0', 'k2', 'delivered', 'Deliv/ered', '0', 1, 1,"
	             "  '\\x00', now()),"
	             " ('00000000-0000-7000-8000-000000000002', 'sinch', 'B/1',"
	             "  'B/1//Deliv/ered/0', 'k3', 'delivered', 'Deliv/ered', '0', 1, 1, '\\x00',"
	             "  now()),"
	             " ('00000000-0000-7000-8000-000000000002', 'generic', 'B/1',"
	             "  'msg_+14155550100', 'k4', 'delivered', NULL, NULL, 1, 1, '\\x00', now());"
	             "DELETE FROM schema_migrations WHERE version = 5"),
	    0);
	crypto_sha256("{\"to\":\"+14155550100\"}", 21, md);
	crypto_hex(md, sizeof(md), old);
	assert_int_equal(pgt_exec(f->c,
	                          "INSERT INTO api_idempotency (token_hash, idem_key, request_hash,"
	                          " status, body, created_at) VALUES ('tok', 'k1', '%s', 201, '{}',"
	                          " now()), ('tok', 'k2', 'not-a-digest', 201, '{}', now())",
	                          old),
	                 0);

	/* without the key: refused, and nothing changed */
	privacy_set_hash_key(NULL, 0);
	assert_int_equal(store_open(&f->cfg, &f->st, err, sizeof(err)), DLRD_EIO);
	assert_non_null(strstr(err, "migration 5 needs privacy.hash_key"));
	f->st = NULL;
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events WHERE provider_event_id"
	                      " LIKE '%%rcpt-%%'"),
	                 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM schema_migrations WHERE version = 5"), 0);

	privacy_set_hash_key((const uint8_t *)TEST_HASH_KEY, sizeof(TEST_HASH_KEY) - 1);
	assert_int_equal(open_store(f, &f->st), 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events WHERE provider = 'telnyx'"
	                      " AND provider_event_id LIKE 'ev:rcpt-%%'"),
	                 600);
	assert_int_equal(Q(f, "SELECT count(DISTINCT dedup_key) FROM sms_message_events"), 604);
	for (int i = 1; i <= 600; i += 599) {
		char raw[32];
		struct dlr_event e;
		util_fmt(raw, sizeof(raw), "+4477009%05d", i);
		privacy_tag(raw, strlen(raw), tag);
		util_fmt(want, sizeof(want), "ev:%s", tag);
		memset(&e, 0, sizeof(e));
		e.kind = EV_STATUS;
		e.provider = "telnyx";
		e.provider_event_id = want;
		event_finish(&e);
		util_fmt(want + strlen(want), sizeof(want) - strlen(want), " %s", e.dedup_key);
		assert_string_equal(pgt_str(f->c, got, sizeof(got),
		                            "SELECT provider_event_id || ' ' || dedup_key FROM"
		                            " sms_message_events WHERE provider_event_id LIKE"
		                            " 'ev:rcpt-%%' ORDER BY id OFFSET %d LIMIT 1",
		                            i - 1),
		                    want);
	}
	privacy_tag("15551231234", 11, tag);
	util_fmt(want, sizeof(want), "B/1/%s/Deliv/ered/0", tag);
	assert_string_equal(pgt_str(f->c, got, sizeof(got),
	                            "SELECT provider_event_id FROM sms_message_events WHERE"
	                            " provider = 'sinch' AND dedup_key <> 'k3'"),
	                    want);
	/* ids without a number, and other providers, stay */
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events WHERE"
	                      " (provider_event_id = 'ev:#1' AND dedup_key = 'k1') OR"
	                      " (provider_event_id = 'B/1//Deliv/ered/0' AND dedup_key = 'k3') OR"
	                      " (provider_event_id = 'msg_+14155550100' AND dedup_key = 'k4')"),
	                 3);
	/* the fingerprint is keyed; what was not a digest stays */
	assert_int_equal(privacy_request_hash_rekey(old, h), 0);
	assert_string_equal(
	    pgt_str(f->c, got, sizeof(got),
	            "SELECT request_hash FROM api_idempotency WHERE idem_key = 'k1'"),
	    h);
	assert_string_equal(
	    pgt_str(f->c, got, sizeof(got),
	            "SELECT request_hash FROM api_idempotency WHERE idem_key = 'k2'"),
	    "not-a-digest");

	/* once: a second open changes nothing */
	store_close(f->st);
	assert_int_equal(open_store(f, &f->st), 0);
	assert_string_equal(
	    pgt_str(f->c, got, sizeof(got),
	            "SELECT request_hash FROM api_idempotency WHERE idem_key = 'k1'"),
	    h);
	assert_int_equal(Q(f, "SELECT count(*) FROM schema_migrations WHERE version = 5"), 1);

	/* a version this dlrd does not know is refused */
	store_close(f->st);
	f->st = NULL;
	assert_int_equal(pgt_exec(f->c, "INSERT INTO schema_migrations (version, name)"
	                                " VALUES (99, 'from the future')"),
	                 0);
	assert_int_equal(store_open(&f->cfg, &f->st, err, sizeof(err)), DLRD_EIO);
	assert_non_null(strstr(err, "schema version 99 is newer than this dlrd"));
	f->st = NULL;
	assert_int_equal(pgt_exec(f->c, "DELETE FROM schema_migrations WHERE version = 99"), 0);
	assert_int_equal(open_store(f, &f->st), 0);
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

/* Two writers apply the same requests of several events, each keeping
 * its payload once, in different orders and batches, on messages the
 * requests share: the payload rows come last in a batch, in id order, so
 * neither waits for the other in a cycle (a deadlock retried past
 * PG_MAX_ATTEMPTS would fail a writer); every payload is stored once and
 * every event reads its own request's bytes. */
#define PW_REQUESTS 48
#define PW_BATCH    6

struct pay_writer {
	struct store *st;
	struct commit_item *its;
	size_t order[PW_REQUESTS];
	int rc;
	char err[256];
};

static void *pay_writer_main(void *arg)
{
	struct pay_writer *w = arg;
	struct commit_item *items[PW_BATCH];

	for (size_t off = 0; off < PW_REQUESTS && w->rc == 0; off += PW_BATCH) {
		for (size_t i = 0; i < PW_BATCH; i++)
			items[i] = &w->its[w->order[off + i]];
		w->rc = store_apply(w->st, items, PW_BATCH, w->err, sizeof(w->err));
	}
	return NULL;
}

static void test_two_writers_payloads(void **state)
{
	struct fixture *f = *state;
	static char sids[10][16], eids[PW_REQUESTS][3][24], bodies[PW_REQUESTS][24];
	static struct dlr_event ev[2][PW_REQUESTS][3];
	static struct commit_item its[2][PW_REQUESTS];
	struct pay_writer w[2];
	pthread_t t[2];
	uint64_t x = 0x5eed5eed12345678ull;
	char got[64];

	for (int m = 0; m < 10; m++)
		util_fmt(sids[m], sizeof(sids[m]), "SMpw%02d", m);
	memset(w, 0, sizeof(w));
	for (int r = 0; r < PW_REQUESTS; r++) {
		util_fmt(bodies[r], sizeof(bodies[r]), "body-%d", r);
		for (int j = 0; j < 3; j++)
			util_fmt(eids[r][j], sizeof(eids[r][j]), "ev-%d-%d", r, j);
		for (int c = 0; c < 2; c++) {
			for (int j = 0; j < 3; j++) {
				struct dlr_event *e = &ev[c][r][j];
				*e = mk(sids[(r * 3 + j * 7) % 10], j == 2 ? ST_DELIVERED : ST_SENT,
				        j == 2 ? "delivered" : "sent", NULL);
				e->provider_event_id = eids[r][j];
				event_finish(e);
			}
			item_init(&its[c][r], ev[c][r], 3);
			its[c][r].raw_payload = (struct iov){bodies[r], strlen(bodies[r])};
			util_fmt(its[c][r].payload_id, sizeof(its[c][r].payload_id), "%064x",
			         (unsigned)(r * 2654435761u));
		}
	}
	for (int c = 0; c < 2; c++) {
		w[c].its = its[c];
		for (size_t i = 0; i < PW_REQUESTS; i++)
			w[c].order[i] = i;
		for (size_t i = PW_REQUESTS; i > 1; i--) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			size_t k = (size_t)(x % i), tmp = w[c].order[i - 1];
			w[c].order[i - 1] = w[c].order[k];
			w[c].order[k] = tmp;
		}
	}
	w[0].st = f->st;
	assert_int_equal(open_store(f, &w[1].st), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, pay_writer_main, &w[i]), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		if (w[i].rc)
			fail_msg("writer %d: %s", i, w[i].err);
	}
	store_close(w[1].st);

	assert_int_equal(Q(f, "SELECT count(*) FROM sms_payloads"), PW_REQUESTS);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events"), PW_REQUESTS * 3);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events e JOIN sms_payloads p"
	                      " ON p.id = e.payload_id WHERE convert_from(p.raw_payload, 'UTF8') ="
	                      " 'body-' || split_part(e.provider_event_id, '-', 2)"),
	                 PW_REQUESTS * 3);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_callback_log WHERE duplicate = 1"),
	                 PW_REQUESTS * 3);
	pgt_str(
	    f->c, got, sizeof(got),
	    "SELECT convert_from(p.raw_payload, 'UTF8') FROM sms_payloads p JOIN"
	    " sms_message_events e ON e.payload_id = p.id WHERE e.provider_event_id = 'ev-5-1'");
	assert_string_equal(got, "body-5");
}

/* ---- deadlock and connection loss ---- */

/* dlrd_storage_retries_total as GET /metrics shows it. */
static uint64_t storage_retries(void)
{
	char *text = metrics_render(0, 0, true, NULL);
	const char *p = strstr(text, "\ndlrd_storage_retries_total ");
	uint64_t v;
	assert_non_null(p);
	v = strtoull(p + strlen("\ndlrd_storage_retries_total "), NULL, 10);
	free(text);
	return v;
}

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
	int64_t deadline = util_mono_ms() + 10000;

	assert_true(Q(f, "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM"
	                 " pg_stat_activity WHERE application_name = 'dlrd' AND datname ="
	                 " current_database()) t") >= 0);
	while (Q(f, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dlrd' AND"
	            " datname = current_database()") != 0) {
		assert_true(util_mono_ms() < deadline);
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
	uint64_t retries = storage_retries();
	assert_int_equal(pthread_create(&t, NULL, bg_apply_main, &b), 0);
	/* wait until dlrd's session waits for a lock */
	int64_t deadline = util_mono_ms() + 10000;
	while (Q(f, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dlrd' AND"
	            " datname = current_database() AND wait_event_type = 'Lock'") != 1) {
		assert_true(util_mono_ms() < deadline);
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
	/* and the retry is counted (GET /metrics) */
	assert_true(storage_retries() > retries);
	assert_int_equal(b.its[0].n_new + b.its[1].n_new, 2);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages WHERE current_status ="
	                      " 'delivered'"),
	                 2);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events"), 4);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_callback_log"), 4);
	PQfinish(x);
}

/* A lock_timeout set for dlrd's role or database (a common guard against
 * DDL blocking applications) must not turn the ordinary wait for another
 * node's summary row into a failed batch: dlrd bounds its waits itself
 * (statement_timeout, the batch deadline), so a batch that waits a little
 * longer than that lock_timeout still commits. */
static void test_lock_timeout_of_the_database(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	struct bg_apply b;
	pthread_t t;
	PGconn *x = pgt_connect(f->url);

	assert_non_null(x);
	assert_int_equal(pgt_exec(f->c, "ALTER DATABASE %s SET lock_timeout = '50ms'", f->db), 0);
	terminate_dlrd(f); /* the next batch reconnects with it */
	struct dlr_event e1 = mk("SMlt1", ST_SENT, "sent", NULL);
	assert_int_equal(apply1(f, &e1, &it), 0);

	/* another node's transaction holds the summary row */
	assert_int_equal(pgt_exec(x, "BEGIN"), 0);
	assert_int_equal(pgt_exec(x, "SELECT 1 FROM sms_messages WHERE provider_message_id ="
	                             " 'SMlt1' FOR UPDATE"),
	                 0);
	memset(&b, 0, sizeof(b));
	b.st = f->st;
	b.ev[0] = mk("SMlt1", ST_DELIVERED, "delivered", NULL);
	b.ev[1] = mk("SMlt2", ST_SENT, "sent", NULL);
	b.rc = 1;
	assert_int_equal(pthread_create(&t, NULL, bg_apply_main, &b), 0);
	/* until dlrd has waited for the row four times that lock_timeout, or
	 * its batch has ended */
	int64_t deadline = util_mono_ms() + 10000;
	while (Q(f, "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
	            " WHERE a.application_name = 'dlrd' AND a.datname = current_database()"
	            " AND NOT l.granted AND l.waitstart < clock_timestamp() - interval '200 ms'") <
	           1 &&
	       Q(f, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dlrd' AND"
	            " datname = current_database() AND state = 'idle'") != 1) {
		assert_true(util_mono_ms() < deadline);
		usleep(10000);
	}
	assert_int_equal(pgt_exec(x, "COMMIT"), 0);
	pthread_join(t, NULL);
	if (b.rc)
		fail_msg("the batch failed while it waited for a row lock: %s", b.err);
	assert_int_equal(b.its[0].n_new + b.its[1].n_new, 2);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events"), 3);
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

/* ---- the JSON API's operations ---- */

#define API_RESP_CAP 512
#define T_SENDER     "+15005550006" /* mk()'s sender */
#define T_ENC_LEN    12
static const uint8_t t_enc[T_ENC_LEN] = {0x01, 0x00, 0xff, 's',  'e',  'c',
                                         'r',  'e',  't',  0x80, 0x00, 0x7f};

/* One API write with its own buffers, as api.c builds it. */
struct api_item {
	struct commit_item it;
	struct store_op op;
	char resp[API_RESP_CAP];
	char idem[32], req[32], pmid[40], action_id[32];
	bool open_fails;
	int renders;
};

/* render(): the row as "id|origin|pmid|status|masked|country|created|sent". */
static size_t t_render(struct store_op *op)
{
	struct api_item *a = op->ctx;
	const struct store_op_row *r = &op->row;
	a->renders++;
	return util_fmt(op->resp, op->resp_cap, "%s|%s|%s|%s|%s|%s|%s|%s|%d", r->id, r->origin,
	                r->provider_message_id, r->status, r->recipient_masked,
	                r->destination_country, r->created_at, r->sent_recorded_at, r->merged);
}

/* open(): the "decryption" checks the stored bytes and gives a number. */
static int t_open(struct store_op *op, const uint8_t *blob, size_t n, const char *key_id)
{
	struct api_item *a = op->ctx;
	if (a->open_fails || n != T_ENC_LEN || memcmp(blob, t_enc, n) != 0 || !key_id ||
	    strcmp(key_id, "k1") != 0)
		return DLRD_EINVAL;
	util_strlcpy(op->number, "+14155550123", sizeof(op->number));
	return 0;
}

static void api_init(struct api_item *a, enum store_op_kind kind)
{
	memset(a, 0, sizeof(*a));
	a->it.kind = CI_API;
	a->it.op = &a->op;
	a->it.provider = "api";
	a->it.received_ms = 1700000100000;
	a->it.complete = done;
	a->op.kind = kind;
	a->op.actor = "tok1abcd";
	a->op.actor_role = "admin";
	a->op.render = t_render;
	a->op.open = t_open;
	a->op.ctx = a;
	a->op.resp = a->resp;
	a->op.resp_cap = sizeof(a->resp);
}

/* A send of the test's recipient ("abc", as mk()'s callbacks) under key
 * idem; req stands for the request's hash; pmid may be NULL. */
static void api_send(struct api_item *a, const char *idem, const char *req, const char *pmid)
{
	struct store_send *s = &a->op.send;
	api_init(a, STORE_OP_SEND);
	util_strlcpy(a->idem, idem, sizeof(a->idem));
	util_strlcpy(a->req, req, sizeof(a->req));
	s->token_hash = "tokenhash1";
	s->idem_key = a->idem;
	s->request_hash = a->req;
	s->provider = "twilio";
	if (pmid) {
		util_strlcpy(a->pmid, pmid, sizeof(a->pmid));
		s->provider_message_id = a->pmid;
	}
	s->recipient_hash = "abc";
	s->recipient_masked = "+1********23";
	s->recipient_enc = t_enc;
	s->recipient_enc_len = T_ENC_LEN;
	s->recipient_key_id = "k1";
	s->number_country = "US";
	s->recipient_timezone = "Europe/Berlin";
	s->use_case = "otp";
	s->template_key = "login_code";
	s->sender_identity = T_SENDER;
	s->action_type = "login";
	util_fmt(a->action_id, sizeof(a->action_id), "u-%s", idem);
	s->action_id = a->action_id;
	s->metadata = "{\"attempt\":1}";
}

static void api_set(struct api_item *a, const char *id, const char *pmid)
{
	api_init(a, STORE_OP_SET_PROVIDER_ID);
	a->op.message_id = id;
	util_strlcpy(a->pmid, pmid, sizeof(a->pmid));
	a->op.text = a->pmid;
}

static void api_reveal(struct api_item *a, const char *id, const char *reason)
{
	api_init(a, STORE_OP_REVEAL);
	a->op.message_id = id;
	a->op.text = reason;
	a->op.actor_role = "support";
}

static void api_resolve(struct api_item *a, int64_t review_id, const char *note)
{
	api_init(a, STORE_OP_RESOLVE_REVIEW);
	a->op.review_id = review_id;
	a->op.text = note;
}

static int apply_items(struct store *st, struct commit_item **items, size_t n)
{
	char err[512] = "";
	int rc = store_apply(st, items, n, err, sizeof(err));
	if (rc)
		fprintf(stderr, "store_apply: %s\n", err);
	return rc;
}

static int apply_api(struct store *st, struct api_item *a)
{
	struct commit_item *items[1] = {&a->it};
	return apply_items(st, items, 1);
}

static bool is_rfc3339_ms(const char *s)
{
	int64_t ms;
	char back[25];
	if (!s || strlen(s) != 24 || util_parse_rfc3339(s, 24, &ms) != 0)
		return false;
	util_rfc3339(ms, back);
	return strcmp(back, s) == 0;
}

static void test_api_send_replay_refusals(void **state)
{
	struct fixture *f = *state;
	struct api_item a, b;
	char want[API_RESP_CAP], buf[512];

	/* recorded: the row, the answer rendered once and kept with the key */
	api_send(&a, "k-1", "req-1", NULL);
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_DONE);
	assert_int_equal(a.op.resp_status, 201);
	assert_int_equal(a.renders, 1);
	assert_int_equal(strlen(a.op.row.id), 36);
	assert_int_equal(a.op.row.id[14], '7');
	assert_string_equal(a.op.row.origin, "send");
	assert_string_equal(a.op.row.provider, "twilio");
	assert_string_equal(a.op.row.provider_message_id, "");
	assert_string_equal(a.op.row.status, "accepted");
	assert_false(a.op.row.is_final);
	assert_string_equal(a.op.row.recipient_masked, "+1********23");
	assert_string_equal(a.op.row.destination_country, "US");
	assert_string_equal(a.op.row.created_at, "2023-11-14T22:15:00.000Z");
	assert_string_equal(a.op.row.sent_recorded_at, "2023-11-14T22:15:00.000Z");
	assert_int_equal(a.op.resp_len, strlen(a.resp));
	util_strlcpy(want, a.resp, sizeof(want));
	pgt_str(f->c, buf, sizeof(buf),
	        "SELECT origin || '|' || current_status || '|' || recipient_hash || '|' ||"
	        " recipient_masked || '|' || destination_country || '|' || country_source || '|'"
	        " || sender_identity || '|' || template_key || '|' || use_case || '|' ||"
	        " action_type || '|' || action_id || '|' || metadata || '|' || recipient_timezone"
	        " || '|' || recipient_key_id || '|' || encode(recipient_enc, 'hex') || '|' ||"
	        " recorded_by || '|' || (sent_recorded_at = created_at) FROM sms_messages"
	        " WHERE id = '%s'",
	        a.op.row.id);
	assert_string_equal(buf, "send|accepted|abc|+1********23|US|number|" T_SENDER
	                         "|login_code|otp|login|u-k-1|{\"attempt\":1}|Europe/Berlin|k1|"
	                         "0100ff73656372657480007f|tok1abcd|true");
	assert_int_equal(Q(f,
	                   "SELECT count(*) FROM api_idempotency WHERE token_hash = 'tokenhash1'"
	                   " AND idem_key = 'k-1' AND request_hash = 'req-1' AND status = 201"
	                   " AND body = '%s' AND message_id = '%s'",
	                   want, a.op.row.id),
	                 1);

	/* the same key and request: the first answer, not rendered again */
	api_send(&b, "k-1", "req-1", NULL);
	assert_int_equal(apply_api(f->st, &b), 0);
	assert_int_equal(b.op.outcome, STORE_REPLAYED);
	assert_int_equal(b.op.resp_status, 201);
	assert_string_equal(b.resp, want);
	assert_int_equal(b.op.resp_len, strlen(want));
	assert_string_equal(b.op.row.id, a.op.row.id);
	assert_int_equal(b.renders, 0);
	/* the same key, another request */
	api_send(&b, "k-1", "req-2", NULL);
	assert_int_equal(apply_api(f->st, &b), 0);
	assert_int_equal(b.op.outcome, STORE_KEY_REUSED);
	/* the key belongs to the token */
	api_send(&b, "k-1", "req-2", NULL);
	b.op.send.token_hash = "tokenhash2";
	assert_int_equal(apply_api(f->st, &b), 0);
	assert_int_equal(b.op.outcome, STORE_DONE);
	assert_string_not_equal(b.op.row.id, a.op.row.id);

	/* a STOP from the recipient to this sender: refused, nothing kept, so
	 * the key can be used again; an exempt use case goes through */
	struct commit_item it;
	struct dlr_event stop = inbound("SMstop", "abc", "STOP", 1000);
	assert_int_equal(apply1(f, &stop, &it), 0);
	api_send(&b, "k-2", "req-3", NULL);
	assert_int_equal(apply_api(f->st, &b), 0);
	assert_int_equal(b.op.outcome, STORE_OPTED_OUT);
	assert_int_equal(b.renders, 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM api_idempotency WHERE idem_key = 'k-2'"), 0);
	api_send(&b, "k-2", "req-3", NULL);
	b.op.send.optout_exempt = true;
	assert_int_equal(apply_api(f->st, &b), 0);
	assert_int_equal(b.op.outcome, STORE_DONE);
	/* opted out of another sender only: fine; opted out with no sender
	 * known: refused for every sender */
	api_send(&b, "k-3", "req-4", NULL);
	b.op.send.sender_identity = "ACME";
	assert_int_equal(apply_api(f->st, &b), 0);
	assert_int_equal(b.op.outcome, STORE_DONE);
	assert_int_equal(pgt_exec(f->c, "INSERT INTO sms_opt_outs VALUES ('abc', '', 1, 'STOP', 1,"
	                                " now(), now())"),
	                 0);
	api_send(&b, "k-4", "req-5", NULL);
	b.op.send.sender_identity = "ACME";
	assert_int_equal(apply_api(f->st, &b), 0);
	assert_int_equal(b.op.outcome, STORE_OPTED_OUT);

	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages"), 4);
	assert_int_equal(Q(f, "SELECT count(*) FROM api_idempotency"), 4);
	assert_int_equal(Q(f, "SELECT count(*) FROM api_idempotency WHERE status <> 201"), 0);
}

/* Callbacks first, then the send names their provider id: the send adopts
 * the row (its id, its events).  A second send with that id is refused. */
static void test_api_send_adopts_callbacks(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	struct api_item a;
	char buf[256], id[40];

	struct dlr_event e1 = mk("SMadopt", ST_SENT, "sent", NULL);
	e1.destination_country = "CA"; /* the provider's */
	struct dlr_event e2 = mk("SMadopt", ST_DELIVERED, "delivered", NULL);
	e2.destination_country = "CA";
	assert_int_equal(apply1(f, &e1, &it), 0);
	assert_int_equal(apply1(f, &e2, &it), 0);
	pgt_str(f->c, id, sizeof(id), "SELECT id FROM sms_messages");
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages WHERE origin = 'callback' AND"
	                      " country_source = 'provider' AND recipient_masked IS NULL"),
	                 1);

	api_send(&a, "k-a", "req-a", "SMadopt");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_DONE);
	assert_string_equal(a.op.row.id, id);
	assert_string_equal(a.op.row.origin, "joined");
	assert_string_equal(a.op.row.status, "delivered");
	assert_true(a.op.row.is_final);
	assert_string_equal(a.op.row.provider_message_id, "SMadopt");
	/* the provider's country stays (no app country given) */
	assert_string_equal(a.op.row.destination_country, "CA");
	pgt_str(f->c, buf, sizeof(buf),
	        "SELECT origin || '|' || event_count || '|' || callback_count || '|' ||"
	        " country_source || '|' || recipient_masked || '|' || use_case || '|' ||"
	        " (sent_recorded_at > created_at) FROM sms_messages");
	assert_string_equal(buf, "joined|2|2|provider|+1********23|otp|true");

	/* the id is taken now: refused, and the key left free */
	api_send(&a, "k-b", "req-b", "SMadopt");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_PMID_TAKEN);
	assert_int_equal(Q(f, "SELECT count(*) FROM api_idempotency WHERE idem_key = 'k-b'"), 0);
	/* a send first, then its callbacks: they find it */
	api_send(&a, "k-c", "req-c", "SMfirst");
	a.op.send.country = "GB"; /* the app's */
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_DONE);
	assert_string_equal(a.op.row.origin, "send");
	struct dlr_event e3 = mk("SMfirst", ST_DELIVERED, "delivered", NULL);
	assert_int_equal(apply1(f, &e3, &it), 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages WHERE provider_message_id ="
	                      " 'SMfirst' AND origin = 'send' AND event_count = 1 AND"
	                      " destination_country = 'GB' AND country_source = 'app' AND"
	                      " current_status = 'delivered'"),
	                 1);
	/* and the callback path itself fills the masked number and the source */
	struct dlr_event e4 = mk("SMcb", ST_SENT, "sent", NULL);
	e4.recipient_masked = "+1********99";
	e4.country_from_number = true;
	assert_int_equal(apply1(f, &e4, &it), 0);
	assert_string_equal(pgt_str(f->c, buf, sizeof(buf),
	                            "SELECT recipient_masked || '|' || country_source FROM"
	                            " sms_messages WHERE provider_message_id = 'SMcb'"),
	                    "+1********99|number");
}

/* A send without a provider id, callbacks under that id, then PATCH: one
 * message, the callbacks' events and review rows moved, the summaries
 * folded, the callback row gone. */
static void test_api_set_provider_id_merges(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	struct api_item a, s2;
	char id[40], buf[512];

	api_send(&a, "k-m", "req-m", NULL);
	assert_int_equal(apply_api(f->st, &a), 0);
	util_strlcpy(id, a.op.row.id, sizeof(id));
	struct dlr_event e1 = mk("SMmerge", ST_UNDELIVERED, "undelivered", "30003");
	struct dlr_event e1d = mk("SMmerge", ST_UNDELIVERED, "undelivered", "30003");
	struct dlr_event e2 = mk("SMmerge", ST_DELIVERED, "delivered", NULL);
	struct dlr_event e3 = mk("SMmerge", ST_UNKNOWN, "weird", NULL);
	e3.review = REVIEW_UNKNOWN_STATUS;
	assert_int_equal(apply1(f, &e1, &it), 0);
	assert_int_equal(apply1(f, &e1d, &it), 0);
	assert_int_equal(apply1(f, &e2, &it), 0);
	assert_int_equal(apply1(f, &e3, &it), 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages"), 2);
	assert_int_equal(Q(f, "SELECT count(*) FROM review_queue"), 2); /* unknown, conflict */

	api_set(&a, id, "SMmerge");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_DONE);
	assert_int_equal(a.op.resp_status, 200);
	assert_true(a.op.row.merged);
	assert_string_equal(a.op.row.id, id);
	assert_string_equal(a.op.row.origin, "send");
	assert_string_equal(a.op.row.provider_message_id, "SMmerge");
	assert_string_equal(a.op.row.status, "delivered");
	assert_true(a.op.row.is_final);
	assert_int_equal(a.renders, 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages"), 1);
	pgt_str(f->c, buf, sizeof(buf),
	        "SELECT provider_message_id || '|' || current_status || '|' || status_mask || '|'"
	        " || final_conflict || '|' || event_count || '|' || callback_count || '|' ||"
	        " duplicate_count || '|' || (first_callback_at IS NOT NULL) || '|' ||"
	        " (final_at IS NOT NULL) || '|' || recipient_masked || '|' || country_source"
	        " FROM sms_messages WHERE id = '%s'",
	        id);
	/* the provider's country wins over the number's, as in sqlite_api.c */
	assert_string_equal(buf, "SMmerge|delivered|140|1|3|4|1|true|true|+1********23|provider");
	assert_int_equal(
	    Q(f, "SELECT count(*) FROM sms_message_events WHERE message_id = '%s'", id), 3);
	assert_int_equal(Q(f, "SELECT count(*) FROM review_queue WHERE message_id = '%s'", id), 2);
	/* the conflict was already reviewed on the callback row: no new row */
	assert_int_equal(Q(f, "SELECT count(*) FROM review_queue"), 2);
	assert_int_equal(Q(f,
	                   "SELECT count(*) FROM sms_callback_log l JOIN sms_message_events e"
	                   " ON e.id = l.event_id WHERE e.message_id = '%s'",
	                   id),
	                 4);
	/* later callbacks find the one message */
	struct dlr_event e4 = mk("SMmerge", ST_SENT, "sent", NULL);
	assert_int_equal(apply1(f, &e4, &it), 0);
	assert_int_equal(Q(f, "SELECT event_count FROM sms_messages WHERE id = '%s'", id), 4);

	/* the same id again: no change; another: refused; a message that does
	 * not exist, or an id that is not one */
	api_set(&a, id, "SMmerge");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_DONE);
	assert_false(a.op.row.merged);
	api_set(&a, id, "SMother");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_PMID_SET);
	api_set(&a, "01900000-0000-7000-8000-000000000000", "SMx");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_NOT_FOUND);
	api_set(&a, "not-a-uuid", "SMx");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_NOT_FOUND);
	/* another send's provider id: taken */
	api_send(&s2, "k-m2", "req-m2", NULL);
	assert_int_equal(apply_api(f->st, &s2), 0);
	api_set(&a, s2.op.row.id, "SMmerge");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_PMID_TAKEN);
	/* a plain set, and a merge that makes a conflict appear */
	api_set(&a, s2.op.row.id, "SMplain");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_DONE);
	assert_false(a.op.row.merged);
	assert_string_equal(a.op.row.provider_message_id, "SMplain");
	struct api_item s3;
	api_send(&s3, "k-m3", "req-m3", NULL);
	assert_int_equal(apply_api(f->st, &s3), 0);
	struct dlr_event e5 = mk("SMconf", ST_FAILED, "failed", "30008");
	assert_int_equal(apply1(f, &e5, &it), 0);
	assert_int_equal(pgt_exec(f->c,
	                          "UPDATE sms_messages SET status_mask = 4, current_status ="
	                          " 'delivered', is_final = 1 WHERE id = '%s'",
	                          s3.op.row.id),
	                 0);
	api_set(&a, s3.op.row.id, "SMconf");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_true(a.op.row.merged);
	assert_int_equal(Q(f,
	                   "SELECT count(*) FROM review_queue WHERE message_id = '%s' AND"
	                   " reason = 'final_conflict' AND detail LIKE '%%joined send%%' AND"
	                   " raw_payload = ''::bytea",
	                   s3.op.row.id),
	                 1);
}

static void test_api_reveal_and_resolve(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	struct api_item s, a;
	char buf[256];

	api_send(&s, "k-r", "req-r", NULL);
	assert_int_equal(apply_api(f->st, &s), 0);
	api_reveal(&a, s.op.row.id, "customer called");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_DONE);
	assert_string_equal(a.op.number, "+14155550123");
	assert_true(a.op.audit_id > 0);
	pgt_str(f->c, buf, sizeof(buf),
	        "SELECT actor || '|' || actor_role || '|' || action || '|' || message_id || '|' ||"
	        " reason || '|' || (review_id IS NULL) || '|' || to_char(at AT TIME ZONE 'UTC',"
	        " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS') FROM audit_log WHERE id = %lld",
	        (long long)a.op.audit_id);
	char want[256];
	util_fmt(want, sizeof(want),
	         "tok1abcd|support|reveal|%s|customer called|true|"
	         "2023-11-14T22:15:00.000",
	         s.op.row.id);
	assert_string_equal(buf, want);
	/* refusals write nothing */
	api_reveal(&a, "01900000-0000-7000-8000-000000000000", "x");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_NOT_FOUND);
	api_reveal(&a, "nope", "x");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_NOT_FOUND);
	api_reveal(&a, s.op.row.id, "x");
	a.open_fails = true;
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_UNDECRYPTABLE);
	assert_int_equal(a.op.audit_id, 0);
	struct dlr_event e = mk("SMrev", ST_UNKNOWN, "weird", NULL);
	e.review = REVIEW_UNKNOWN_STATUS;
	assert_int_equal(apply1(f, &e, &it), 0);
	pgt_str(f->c, buf, sizeof(buf), "SELECT id FROM sms_messages WHERE origin = 'callback'");
	api_reveal(&a, buf, "x");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_NO_RECIPIENT);
	assert_int_equal(Q(f, "SELECT count(*) FROM audit_log"), 1);

	/* resolve */
	int64_t rid = Q(f, "SELECT id FROM review_queue");
	api_resolve(&a, rid + 100, "n");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_NOT_FOUND);
	api_resolve(&a, rid, "checked with the carrier");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_DONE);
	assert_string_equal(a.op.resolved_at, "2023-11-14T22:15:00.000Z");
	assert_true(a.op.audit_id > 0);
	assert_int_equal(Q(f,
	                   "SELECT count(*) FROM review_queue WHERE resolved_by = 'tok1abcd' AND"
	                   " resolution = 'checked with the carrier' AND resolved_at IS NOT NULL"),
	                 1);
	assert_int_equal(Q(f,
	                   "SELECT count(*) FROM audit_log WHERE action = 'review_resolve' AND"
	                   " review_id = %lld AND reason = 'checked with the carrier' AND"
	                   " message_id IS NOT NULL",
	                   (long long)rid),
	                 1);
	api_resolve(&a, rid, NULL);
	a.it.received_ms += 5000;
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(a.op.outcome, STORE_ALREADY_RESOLVED);
	assert_string_equal(a.op.resolved_at, "2023-11-14T22:15:00.000Z");
	assert_int_equal(Q(f, "SELECT count(*) FROM audit_log"), 2);
}

/* API items and callbacks in one batch apply in queue order, in one
 * transaction: a callback before a send is adopted by it, a send after
 * another with the same key replays its answer, a refusal undoes only its
 * own item, and a failing statement anywhere undoes the whole batch. */
static void test_api_mixed_batch(void **state)
{
	struct fixture *f = *state;
	struct api_item a[6];
	struct commit_item cb[3], *items[9];
	struct dlr_event e[3];
	char err[256];

	e[0] = mk("SMmix", ST_SENT, "sent", NULL);
	e[1] = mk("SMmix2", ST_SENT, "sent", NULL);
	e[2] = mk("SMmix", ST_DELIVERED, "delivered", NULL);
	for (int i = 0; i < 3; i++)
		item_init(&cb[i], &e[i], 1);
	api_send(&a[0], "k-x", "req-x", "SMmix");  /* after cb[0]: adopts */
	api_send(&a[1], "k-y", "req-y", NULL);     /* a plain send */
	api_send(&a[2], "k-y", "req-y", NULL);     /* replays a[1] */
	api_send(&a[3], "k-z", "req-z", "SMmix");  /* taken by a[0] */
	api_send(&a[4], "k-y", "req-other", NULL); /* key reused */
	api_send(&a[5], "k-w", "req-w", "SMmix2"); /* before cb[1]: a send row */
	items[0] = &cb[0];
	items[1] = &a[0].it;
	items[2] = &a[1].it;
	items[3] = &a[2].it;
	items[4] = &a[3].it;
	items[5] = &a[4].it;
	items[6] = &a[5].it;
	items[7] = &cb[1];
	items[8] = &cb[2];
	assert_int_equal(apply_items(f->st, items, 9), 0);
	assert_int_equal(a[0].op.outcome, STORE_DONE);
	assert_string_equal(a[0].op.row.origin, "joined");
	assert_int_equal(a[1].op.outcome, STORE_DONE);
	assert_int_equal(a[2].op.outcome, STORE_REPLAYED);
	assert_string_equal(a[2].resp, a[1].resp);
	assert_string_equal(a[2].op.row.id, a[1].op.row.id);
	assert_int_equal(a[3].op.outcome, STORE_PMID_TAKEN);
	assert_int_equal(a[4].op.outcome, STORE_KEY_REUSED);
	assert_int_equal(a[5].op.outcome, STORE_DONE);
	assert_string_equal(a[5].op.row.origin, "send");
	assert_int_equal(cb[0].n_new + cb[1].n_new + cb[2].n_new, 3);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages"), 3);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages WHERE origin = 'joined' AND"
	                      " event_count = 2 AND current_status = 'delivered'"),
	                 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages WHERE origin = 'send' AND"
	                      " provider_message_id = 'SMmix2' AND event_count = 1"),
	                 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM api_idempotency"), 3);

	/* all or nothing: a status event without a message id fails the batch */
	api_send(&a[0], "k-v", "req-v", NULL);
	e[0] = mk("SMmix3", ST_SENT, "sent", NULL);
	e[0].provider_message_id = NULL;
	item_init(&cb[0], &e[0], 1);
	items[0] = &a[0].it;
	items[1] = &cb[0];
	assert_int_equal(store_apply(f->st, items, 2, err, sizeof(err)), DLRD_EIO);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages"), 3);
	assert_int_equal(Q(f, "SELECT count(*) FROM api_idempotency"), 3);
	/* and the store goes on */
	assert_int_equal(apply_api(f->st, &a[0]), 0);
	assert_int_equal(a[0].op.outcome, STORE_DONE);
}

/* ---- the read methods ---- */

static void test_api_reads(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	struct api_item s, a;
	struct arena ar;
	struct store_message m, *rows;
	struct store_event *ev;
	struct store_review_item *rv;
	struct store_audit_row *au;
	size_t n;
	char err[256], id[40];

	arena_init(&ar, NULL, 0);
	api_send(&s, "k-read", "req-read", "SMread");
	assert_int_equal(apply_api(f->st, &s), 0);
	util_strlcpy(id, s.op.row.id, sizeof(id));
	struct dlr_event e1 = mk("SMread", ST_SENT, "sent", NULL);
	e1.occurred_ms = 1700000100123;
	event_finish(&e1);
	struct dlr_event e2 = mk("SMread", ST_DELIVERED, "delivered", NULL);
	e2.occurred_ms = 1700000101000;
	event_finish(&e2);
	struct dlr_event e2d = e2;
	assert_int_equal(apply1(f, &e1, &it), 0);
	item_init(&it, &e2, 1);
	it.raw_payload = (struct iov){"{\"s\":\"d\\u00e9\"}\x00\xff", 18};
	it.received_ms = 1700000102456;
	struct commit_item *items[1] = {&it};
	assert_int_equal(apply_items(f->st, items, 1), 0);
	item_init(&it, &e2d, 1);
	it.received_ms = 1700000103000;
	assert_int_equal(apply_items(f->st, items, 1), 0);

	/* one message, times exactly as SQLite's text */
	assert_int_equal(store_get_message(f->st, &ar, id, &m, err, sizeof(err)), 0);
	assert_string_equal(m.id, id);
	assert_string_equal(m.provider, "twilio");
	assert_string_equal(m.provider_message_id, "SMread");
	assert_string_equal(m.origin, "send");
	assert_string_equal(m.status, "delivered");
	assert_string_equal(m.raw_status, "delivered");
	assert_null(m.error_code);
	assert_string_equal(m.occurred_at, "2023-11-14T22:15:01.000Z");
	assert_true(m.is_final);
	assert_false(m.final_conflict);
	assert_true(m.has_recipient);
	assert_string_equal(m.recipient_masked, "+1********23");
	assert_string_equal(m.destination_country, "US");
	/* mk()'s callbacks carry a country from the provider, which is
	 * preferred to the number's the send recorded */
	assert_string_equal(m.country_source, "provider");
	assert_string_equal(m.sender_identity, T_SENDER);
	assert_string_equal(m.template_key, "login_code");
	assert_string_equal(m.use_case, "otp");
	assert_string_equal(m.action_type, "login");
	assert_string_equal(m.action_id, "u-k-read");
	assert_string_equal(m.metadata, "{\"attempt\":1}");
	assert_string_equal(m.recipient_timezone, "Europe/Berlin");
	assert_int_equal(m.event_count, 2);
	assert_int_equal(m.callback_count, 3);
	assert_int_equal(m.duplicate_count, 1);
	assert_string_equal(m.first_callback_at, "2023-11-14T22:13:20.000Z");
	assert_string_equal(m.final_at, "2023-11-14T22:15:02.456Z");
	assert_string_equal(m.created_at, "2023-11-14T22:15:00.000Z");
	assert_string_equal(m.updated_at, "2023-11-14T22:15:03.000Z");
	assert_string_equal(m.sent_recorded_at, "2023-11-14T22:15:00.000Z");
	assert_true(is_rfc3339_ms(m.updated_at));
	assert_int_equal(store_get_message(f->st, &ar, "01900000-0000-7000-8000-000000000000", &m,
	                                   err, sizeof(err)),
	                 DLRD_ENOTFOUND);
	assert_int_equal(
	    store_get_message(f->st, &ar, "x'; DROP TABLE sms_messages; --", &m, err, sizeof(err)),
	    DLRD_ENOTFOUND);

	/* the timeline: events in order, retry counts, payloads on request */
	assert_int_equal(store_get_timeline(f->st, &ar, id, false, &m, &ev, &n, err, sizeof(err)),
	                 0);
	assert_int_equal(n, 2);
	assert_string_equal(ev[0].status, "sent");
	assert_string_equal(ev[0].provider_occurred_at, "2023-11-14T22:15:00.123Z");
	assert_string_equal(ev[0].received_at, "2023-11-14T22:13:20.000Z");
	assert_int_equal(ev[0].deliveries, 1);
	assert_true(ev[0].changed_summary);
	assert_null(ev[0].raw_payload);
	assert_string_equal(ev[1].status, "delivered");
	assert_true(ev[1].is_final);
	assert_int_equal(ev[1].deliveries, 2);
	assert_true(ev[1].id > ev[0].id);
	assert_int_equal(store_get_timeline(f->st, &ar, id, true, &m, &ev, &n, err, sizeof(err)),
	                 0);
	assert_int_equal(ev[0].raw_payload_len, 5);
	assert_memory_equal(ev[0].raw_payload, "raw=1", 5);
	assert_int_equal(ev[1].raw_payload_len, 18);
	assert_memory_equal(ev[1].raw_payload, "{\"s\":\"d\\u00e9\"}\x00\xff", 18);
	assert_int_equal(store_get_timeline(f->st, &ar, "01900000-0000-7000-8000-000000000000",
	                                    true, &m, &ev, &n, err, sizeof(err)),
	                 DLRD_ENOTFOUND);

	/* search: every filter, newest first, the keyset cursor */
	for (int i = 0; i < 5; i++) {
		char key[16];
		util_fmt(key, sizeof(key), "k-s%d", i);
		api_send(&a, key, key, NULL);
		if (i % 2)
			a.op.send.use_case = "alert";
		a.it.received_ms += 1000 * (i + 1);
		assert_int_equal(apply_api(f->st, &a), 0);
	}
	struct store_query q;
	memset(&q, 0, sizeof(q));
	q.final = -1;
	q.limit = 100;
	assert_int_equal(store_search(f->st, &ar, &q, &rows, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 6);
	for (size_t i = 1; i < n; i++)
		assert_true(strcmp(rows[i - 1].id, rows[i].id) > 0);
	q.limit = 2;
	q.before_id = rows[1].id;
	const char *third = rows[2].id;
	assert_int_equal(store_search(f->st, &ar, &q, &rows, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].id, third);
	memset(&q, 0, sizeof(q));
	q.final = -1;
	q.limit = 100;
	q.use_case = "alert";
	assert_int_equal(store_search(f->st, &ar, &q, &rows, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	q.use_case = NULL;
	q.statuses[0] = "delivered";
	q.statuses[1] = "failed";
	q.n_statuses = 2;
	q.final = 1;
	q.provider = "twilio";
	q.country = "US";
	q.sender_identity = T_SENDER;
	q.template_key = "login_code";
	q.provider_message_id = "SMread";
	q.action_type = "login";
	q.action_id = "u-k-read";
	q.origin = "send";
	q.created_from = "2023-11-14T22:15:00.000Z";
	q.created_to = "2023-11-14T22:15:00.001Z";
	q.updated_from = "2023-11-14T22:15:03.000Z";
	q.updated_to = "2023-11-14T22:15:03.001Z";
	assert_int_equal(store_search(f->st, &ar, &q, &rows, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].id, id);
	q.created_to = "2023-11-14T22:15:00.000Z"; /* the upper bound is exclusive */
	assert_int_equal(store_search(f->st, &ar, &q, &rows, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	memset(&q, 0, sizeof(q));
	q.final = 0;
	q.limit = 100;
	q.stuck_before = "2023-11-14T22:15:03.000Z"; /* not final, created before */
	assert_int_equal(store_search(f->st, &ar, &q, &rows, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	q.stuck_before = NULL;
	q.sender_identity = "\xff\xfe"; /* not UTF-8: matches nothing */
	assert_int_equal(store_search(f->st, &ar, &q, &rows, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);

	/* review and audit lists */
	struct dlr_event u = mk("SMrv", ST_UNKNOWN, "weird", NULL);
	u.review = REVIEW_UNKNOWN_STATUS;
	assert_int_equal(apply1(f, &u, &it), 0);
	struct store_review_query rq = {.state = 0, .limit = 10};
	assert_int_equal(store_list_review(f->st, &ar, &rq, &rv, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rv[0].reason, "unknown_status");
	assert_string_equal(rv[0].raw_status, "weird");
	assert_int_equal(rv[0].raw_payload_len, 5);
	assert_true(rv[0].event_id > 0);
	assert_true(is_rfc3339_ms(rv[0].created_at));
	assert_null(rv[0].resolved_at);
	api_resolve(&a, rv[0].id, "ok");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_int_equal(store_list_review(f->st, &ar, &rq, &rv, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	rq.state = 1;
	assert_int_equal(store_list_review(f->st, &ar, &rq, &rv, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rv[0].resolved_at, "2023-11-14T22:15:00.000Z");
	assert_string_equal(rv[0].resolved_by, "tok1abcd");
	assert_string_equal(rv[0].resolution, "ok");
	api_reveal(&a, id, "why");
	assert_int_equal(apply_api(f->st, &a), 0);
	struct store_audit_query aq = {.limit = 10};
	assert_int_equal(store_list_audit(f->st, &ar, &aq, &au, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_string_equal(au[0].action, "reveal");
	assert_string_equal(au[0].message_id, id);
	assert_string_equal(au[0].at, "2023-11-14T22:15:00.000Z");
	assert_int_equal(au[0].review_id, 0);
	assert_string_equal(au[1].action, "review_resolve");
	aq.message_id = id;
	assert_int_equal(store_list_audit(f->st, &ar, &aq, &au, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	aq.message_id = NULL;
	aq.before_id = au[0].id;
	assert_int_equal(store_list_audit(f->st, &ar, &aq, &au, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_string_equal(au[0].action, "review_resolve");

	/* the read connections are not the writer's, and one the server ended
	 * while idle is replaced */
	assert_int_equal(Q(f, "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
	                      " 'dlrd' AND datname = current_database()"),
	                 2);
	terminate_dlrd(f);
	assert_int_equal(store_get_message(f->st, &ar, id, &m, err, sizeof(err)), 0);
	assert_string_equal(m.id, id);
	arena_fini(&ar);
}

/* A pool of one: a second reader waits PG_READ_WAIT_MS, then DLRD_EFULL. */
struct bg_read {
	struct store *st;
	const char *id;
	int rc;
};

static void *bg_read_main(void *arg)
{
	struct bg_read *b = arg;
	struct arena ar;
	struct store_message m;
	char err[256];
	arena_init(&ar, NULL, 0);
	b->rc = store_get_message(b->st, &ar, b->id, &m, err, sizeof(err));
	arena_fini(&ar);
	return NULL;
}

static void test_api_read_pool_full(void **state)
{
	struct fixture *f = *state;
	char key[] = "storage", name[] = "read_pool_size", one[] = "1", err[256];
	struct config_entry ent = {key, name, one, false, 0};
	struct store *st;
	struct api_item s;
	struct bg_read b;
	struct arena ar;
	struct store_message m;
	pthread_t t;
	PGconn *x = pgt_connect(f->url);

	assert_non_null(x);
	f->cfg.entries = &ent;
	f->cfg.n_entries = 1;
	assert_int_equal(open_store(f, &st), 0);
	f->cfg.entries = NULL;
	f->cfg.n_entries = 0;
	api_send(&s, "k-full", "req-full", NULL);
	assert_int_equal(apply_api(st, &s), 0);
	/* the only read connection waits for a table lock */
	assert_int_equal(pgt_exec(x, "BEGIN; LOCK TABLE sms_messages IN ACCESS EXCLUSIVE MODE"), 0);
	b = (struct bg_read){.st = st, .id = s.op.row.id, .rc = 1};
	assert_int_equal(pthread_create(&t, NULL, bg_read_main, &b), 0);
	int64_t deadline = util_mono_ms() + 10000;
	while (Q(f, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dlrd' AND"
	            " datname = current_database() AND wait_event_type = 'Lock'") != 1) {
		assert_true(util_mono_ms() < deadline);
		usleep(20000);
	}
	arena_init(&ar, NULL, 0);
	int64_t t0 = util_mono_ms();
	assert_int_equal(store_get_message(st, &ar, s.op.row.id, &m, err, sizeof(err)), DLRD_EFULL);
	assert_true(util_mono_ms() - t0 >= 1900);
	assert_int_equal(pgt_exec(x, "COMMIT"), 0);
	pthread_join(t, NULL);
	assert_int_equal(b.rc, 0);
	/* free again */
	assert_int_equal(store_get_message(st, &ar, s.op.row.id, &m, err, sizeof(err)), 0);
	arena_fini(&ar);
	store_close(st);
	PQfinish(x);
}

/* ---- two nodes, the same API requests ---- */

#define CN_KEYS   24
#define CN_ROUNDS 6

struct node {
	struct store *st;
	struct api_item *a;
	size_t n, per;
	int rc;
};

static void *node_main(void *arg)
{
	struct node *nd = arg;
	struct commit_item *items[CN_KEYS * 2];
	for (size_t off = 0; off < nd->n && nd->rc == 0; off += nd->per) {
		size_t k = nd->n - off < nd->per ? nd->n - off : nd->per;
		for (size_t i = 0; i < k; i++)
			items[i] = &nd->a[off + i].it;
		nd->rc = apply_items(nd->st, items, k);
	}
	return NULL;
}

static void run_nodes(struct fixture *f, struct api_item *a0, size_t n0, struct api_item *a1,
                      size_t n1, size_t per)
{
	struct node nd[2] = {{.st = f->st, .a = a0, .n = n0, .per = per},
	                     {.a = a1, .n = n1, .per = per}};
	pthread_t t[2];
	assert_int_equal(open_store(f, &nd[1].st), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, node_main, &nd[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	store_close(nd[1].st);
	assert_int_equal(nd[0].rc, 0);
	assert_int_equal(nd[1].rc, 0);
}

static void shuffle_api(struct api_item *a, size_t n, uint64_t *x)
{
	for (size_t i = n; i > 1; i--) {
		*x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
		size_t j = (size_t)(*x % i);
		struct api_item t = a[i - 1];
		a[i - 1] = a[j];
		a[j] = t;
	}
	/* the items point into themselves */
	for (size_t i = 0; i < n; i++) {
		a[i].it.op = &a[i].op;
		a[i].op.ctx = &a[i];
		a[i].op.resp = a[i].resp;
		a[i].op.send.idem_key = a[i].idem;
		a[i].op.send.request_hash = a[i].req;
		a[i].op.send.action_id = a[i].action_id;
		if (a[i].op.send.provider_message_id)
			a[i].op.send.provider_message_id = a[i].pmid;
	}
}

/* Both nodes send every key (shuffled, several per batch, so two batches
 * also lock keys in opposite orders): one message per key; one node's
 * request recorded it and the other's replays that very answer, or is
 * refused as a reused key when its request differs. */
static void test_two_nodes_same_keys(void **state)
{
	struct fixture *f = *state;
	static struct api_item a0[CN_KEYS], a1[CN_KEYS];
	uint64_t x = 0x243f6a8885a308d3ull;

	for (int round = 0; round < CN_ROUNDS; round++) {
		bool differ = round % 3 == 2;
		for (int k = 0; k < CN_KEYS; k++) {
			char key[24], req[24];
			util_fmt(key, sizeof(key), "r%d-k%d", round, k);
			util_fmt(req, sizeof(req), "req-%d-%d", round, k);
			api_send(&a0[k], key, req, NULL);
			if (differ)
				util_fmt(req, sizeof(req), "other-%d-%d", round, k);
			api_send(&a1[k], key, req, NULL);
		}
		shuffle_api(a0, CN_KEYS, &x);
		shuffle_api(a1, CN_KEYS, &x);
		run_nodes(f, a0, CN_KEYS, a1, CN_KEYS, 1 + (size_t)round % 4);
		for (int k = 0; k < CN_KEYS; k++) {
			const struct api_item *p = &a0[k], *q = NULL;
			for (int j = 0; j < CN_KEYS; j++)
				if (!strcmp(a1[j].idem, p->idem))
					q = &a1[j];
			assert_non_null(q);
			const struct api_item *first = p->op.outcome == STORE_DONE ? p : q;
			const struct api_item *second = first == p ? q : p;
			assert_int_equal(first->op.outcome, STORE_DONE);
			if (differ) {
				assert_int_equal(second->op.outcome, STORE_KEY_REUSED);
			} else {
				assert_int_equal(second->op.outcome, STORE_REPLAYED);
				assert_int_equal(second->op.resp_status, 201);
				assert_string_equal(second->resp, first->resp);
				assert_string_equal(second->op.row.id, first->op.row.id);
			}
		}
		assert_int_equal(Q(f,
		                   "SELECT count(*) FROM sms_messages WHERE action_id LIKE"
		                   " 'u-r%d-%%'",
		                   round),
		                 CN_KEYS);
	}
	assert_int_equal(Q(f, "SELECT count(*) FROM api_idempotency"), CN_KEYS * CN_ROUNDS);
	assert_int_equal(Q(f, "SELECT count(*) FROM api_idempotency a JOIN sms_messages m ON"
	                      " m.id = a.message_id WHERE a.status = 201 AND a.body LIKE m.id ||"
	                      " '|send|%%'"),
	                 CN_KEYS * CN_ROUNDS);
}

/* One node records sends with provider ids (or sets them by PATCH) while
 * the other applies callbacks for those ids: whatever interleaving, one
 * message per id, every event on it once, no callback row left behind;
 * and of two resolutions of one review item on two nodes, exactly one. */
static void test_two_nodes_join(void **state)
{
	struct fixture *f = *state;
	static struct api_item a0[CN_KEYS];
	static struct api_item a1[CN_KEYS];
	struct dlr_event ev[CN_KEYS][3];
	struct commit_item cb[CN_KEYS][3];
	char sid[CN_KEYS][16];
	struct node nd;
	pthread_t t;

	for (int round = 0; round < 4; round++) {
		/* mode 0: POST with the id; mode 1: POST without, then PATCH */
		int mode = round % 2;
		for (int k = 0; k < CN_KEYS; k++) {
			char key[24];
			util_fmt(sid[k], sizeof(sid[k]), "SMj%d_%02d", round, k);
			util_fmt(key, sizeof(key), "j%d-%d", round, k);
			if (mode == 0) {
				api_send(&a0[k], key, key, sid[k]);
			} else {
				api_send(&a1[k], key, key, NULL);
				assert_int_equal(apply_api(f->st, &a1[k]), 0);
				api_set(&a0[k], a1[k].op.row.id, sid[k]);
			}
			ev[k][0] = mk(sid[k], ST_SENT, "sent", NULL);
			ev[k][1] = mk(sid[k], ST_DELIVERED, "delivered", NULL);
			ev[k][2] = mk(sid[k], ST_SENT, "sent", NULL); /* a retry */
			for (int e = 0; e < 3; e++)
				item_init(&cb[k][e], &ev[k][e], 1);
		}
		nd = (struct node){.st = f->st, .a = a0, .n = CN_KEYS, .per = 3};
		struct store *other;
		assert_int_equal(open_store(f, &other), 0);
		assert_int_equal(pthread_create(&t, NULL, node_main, &nd), 0);
		for (int k = 0; k < CN_KEYS; k += 2) {
			struct commit_item *items[6];
			for (int e = 0; e < 3; e++) {
				items[e] = &cb[k][e];
				items[3 + e] = &cb[k + 1][e];
			}
			assert_int_equal(apply_items(other, items, 6), 0);
		}
		pthread_join(t, NULL);
		store_close(other);
		assert_int_equal(nd.rc, 0);
		for (int k = 0; k < CN_KEYS; k++) {
			char buf[256];
			assert_int_equal(a0[k].op.outcome, STORE_DONE);
			pgt_str(f->c, buf, sizeof(buf),
			        "SELECT count(*) || '|' || min(event_count) || '|' ||"
			        " min(callback_count) || '|' || min(duplicate_count) || '|' ||"
			        " min(current_status) || '|' || min(id::text) FROM sms_messages"
			        " WHERE provider_message_id = '%s'",
			        sid[k]);
			char want[256];
			util_fmt(want, sizeof(want), "1|2|3|1|delivered|%s", a0[k].op.row.id);
			assert_string_equal(buf, want);
			assert_int_equal(Q(f,
			                   "SELECT count(*) FROM sms_message_events WHERE"
			                   " provider_message_id = '%s' AND message_id = '%s'",
			                   sid[k], a0[k].op.row.id),
			                 2);
			if (mode == 1)
				assert_string_equal(a0[k].op.row.id, a1[k].op.row.id);
		}
		assert_int_equal(
		    Q(f, "SELECT count(*) FROM sms_messages WHERE origin = 'callback'"), 0);
	}

	/* two nodes resolve the same review items */
	for (int k = 0; k < CN_KEYS; k++) {
		struct commit_item it;
		struct dlr_event u = mk(sid[k], ST_UNKNOWN, "weird", NULL);
		u.review = REVIEW_UNKNOWN_STATUS;
		assert_int_equal(apply1(f, &u, &it), 0);
	}
	PGresult *r = PQexec(f->c, "SELECT id FROM review_queue WHERE reason = 'unknown_status'"
	                           " ORDER BY id");
	assert_int_equal(PQntuples(r), CN_KEYS);
	for (int k = 0; k < CN_KEYS; k++) {
		int64_t rid = strtoll(PQgetvalue(r, k, 0), NULL, 10);
		api_resolve(&a0[k], rid, "node 0");
		api_resolve(&a1[CN_KEYS - 1 - k], rid, "node 1");
	}
	PQclear(r);
	run_nodes(f, a0, CN_KEYS, a1, CN_KEYS, 4);
	for (int k = 0; k < CN_KEYS; k++) {
		const struct store_op *p = &a0[k].op, *q = &a1[CN_KEYS - 1 - k].op;
		assert_true((p->outcome == STORE_DONE && q->outcome == STORE_ALREADY_RESOLVED) ||
		            (q->outcome == STORE_DONE && p->outcome == STORE_ALREADY_RESOLVED));
		assert_string_equal(p->resolved_at, q->resolved_at);
	}
	assert_int_equal(Q(f, "SELECT count(*) FROM audit_log WHERE action = 'review_resolve'"),
	                 CN_KEYS);
}

/* The races of test_two_nodes_join, made certain: the test holds a row lock
 * that stops one node's batch after it created (or claimed) something and
 * before it commits, lets the other node's operation run into that, then
 * lets go.  Each time the outcome is the one of the two in sequence. */
struct bg_batch {
	struct store *st;
	struct commit_item *items[4];
	size_t n;
	int rc;
};

static void *bg_batch_main(void *arg)
{
	struct bg_batch *b = arg;
	b->rc = apply_items(b->st, b->items, b->n);
	return NULL;
}

static void wait_lock_waiters(struct fixture *f, int n)
{
	int64_t deadline = util_mono_ms() + 10000;
	while (Q(f, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dlrd' AND"
	            " datname = current_database() AND wait_event_type = 'Lock'") != n) {
		assert_true(util_mono_ms() < deadline);
		usleep(10000);
	}
}

/* Locks the summary row of sid from the test's second connection x. */
static void hold_row(struct fixture *f, PGconn *x, const char *sid)
{
	struct commit_item it;
	struct dlr_event e = mk(sid, ST_SENT, "sent", NULL);
	assert_int_equal(apply1(f, &e, &it), 0);
	assert_int_equal(pgt_exec(x,
	                          "BEGIN; SELECT 1 FROM sms_messages WHERE provider_message_id ="
	                          " '%s' FOR UPDATE",
	                          sid),
	                 0);
}

static void test_two_nodes_races(void **state)
{
	struct fixture *f = *state;
	struct store *st2;
	struct api_item a, b, s;
	struct dlr_event ev[2];
	struct commit_item cb[2];
	struct bg_batch ba, bb;
	pthread_t ta, tb;
	PGconn *x = pgt_connect(f->url);

	assert_non_null(x);
	assert_int_equal(open_store(f, &st2), 0);

	/* 1. the same idempotency key: node A claimed it and waits; node B's
	 * request waits for A, then replays A's answer */
	hold_row(f, x, "SMzb1");
	api_send(&a, "k-race", "req-race", NULL);
	ev[0] = mk("SMzb1", ST_DELIVERED, "delivered", NULL);
	item_init(&cb[0], &ev[0], 1);
	ba = (struct bg_batch){.st = f->st, .items = {&a.it, &cb[0]}, .n = 2};
	assert_int_equal(pthread_create(&ta, NULL, bg_batch_main, &ba), 0);
	wait_lock_waiters(f, 1);
	api_send(&b, "k-race", "req-race", NULL);
	bb = (struct bg_batch){.st = st2, .items = {&b.it}, .n = 1};
	assert_int_equal(pthread_create(&tb, NULL, bg_batch_main, &bb), 0);
	wait_lock_waiters(f, 2);
	assert_int_equal(pgt_exec(x, "COMMIT"), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_int_equal(ba.rc, 0);
	assert_int_equal(bb.rc, 0);
	assert_int_equal(a.op.outcome, STORE_DONE);
	assert_int_equal(b.op.outcome, STORE_REPLAYED);
	assert_string_equal(b.resp, a.resp);
	assert_string_equal(b.op.row.id, a.op.row.id);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages WHERE origin = 'send'"), 1);

	/* 2. a send with a provider id that node B's callback is creating:
	 * A's insert waits for B, then A adopts B's row */
	hold_row(f, x, "SMzb2");
	ev[0] = mk("SMrace2", ST_SENT, "sent", NULL);
	ev[1] = mk("SMzb2", ST_DELIVERED, "delivered", NULL);
	item_init(&cb[0], &ev[0], 1);
	item_init(&cb[1], &ev[1], 1);
	bb = (struct bg_batch){.st = st2, .items = {&cb[0], &cb[1]}, .n = 2};
	assert_int_equal(pthread_create(&tb, NULL, bg_batch_main, &bb), 0);
	wait_lock_waiters(f, 1);
	api_send(&a, "k-race2", "req-race2", "SMrace2");
	ba = (struct bg_batch){.st = f->st, .items = {&a.it}, .n = 1};
	assert_int_equal(pthread_create(&ta, NULL, bg_batch_main, &ba), 0);
	wait_lock_waiters(f, 2);
	assert_int_equal(pgt_exec(x, "COMMIT"), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_int_equal(ba.rc, 0);
	assert_int_equal(bb.rc, 0);
	assert_int_equal(a.op.outcome, STORE_DONE);
	assert_string_equal(a.op.row.origin, "joined");
	assert_int_equal(Q(f,
	                   "SELECT count(*) FROM sms_messages WHERE provider_message_id ="
	                   " 'SMrace2' AND id = '%s' AND origin = 'joined' AND event_count = 1",
	                   a.op.row.id),
	                 1);

	/* 3. PATCH to a provider id that node B's callback is creating: A's
	 * update meets B's row on the unique key once B commits, and merges
	 * it */
	api_send(&s, "k-race3", "req-race3", NULL);
	assert_int_equal(apply_api(f->st, &s), 0);
	hold_row(f, x, "SMzb3");
	ev[0] = mk("SMrace3", ST_DELIVERED, "delivered", NULL);
	ev[1] = mk("SMzb3", ST_DELIVERED, "delivered", NULL);
	item_init(&cb[0], &ev[0], 1);
	item_init(&cb[1], &ev[1], 1);
	bb = (struct bg_batch){.st = st2, .items = {&cb[0], &cb[1]}, .n = 2};
	assert_int_equal(pthread_create(&tb, NULL, bg_batch_main, &bb), 0);
	wait_lock_waiters(f, 1);
	api_set(&a, s.op.row.id, "SMrace3");
	ba = (struct bg_batch){.st = f->st, .items = {&a.it}, .n = 1};
	assert_int_equal(pthread_create(&ta, NULL, bg_batch_main, &ba), 0);
	wait_lock_waiters(f, 2);
	assert_int_equal(pgt_exec(x, "COMMIT"), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_int_equal(ba.rc, 0);
	assert_int_equal(bb.rc, 0);
	assert_int_equal(a.op.outcome, STORE_DONE);
	assert_true(a.op.row.merged);
	assert_string_equal(a.op.row.status, "delivered");
	assert_int_equal(Q(f,
	                   "SELECT count(*) FROM sms_messages WHERE provider_message_id ="
	                   " 'SMrace3' AND id = '%s' AND origin = 'send' AND event_count = 1",
	                   s.op.row.id),
	                 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages WHERE origin = 'callback' AND"
	                      " provider_message_id LIKE 'SMrace%%'"),
	                 0);

	/* 4. two reveals of one message at once: both, each with its row */
	api_reveal(&a, s.op.row.id, "node a");
	api_reveal(&b, s.op.row.id, "node b");
	ba = (struct bg_batch){.st = f->st, .items = {&a.it}, .n = 1};
	bb = (struct bg_batch){.st = st2, .items = {&b.it}, .n = 1};
	assert_int_equal(pthread_create(&ta, NULL, bg_batch_main, &ba), 0);
	assert_int_equal(pthread_create(&tb, NULL, bg_batch_main, &bb), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_int_equal(a.op.outcome, STORE_DONE);
	assert_int_equal(b.op.outcome, STORE_DONE);
	assert_true(a.op.audit_id != b.op.audit_id);
	assert_int_equal(Q(f,
	                   "SELECT count(*) FROM audit_log WHERE action = 'reveal' AND"
	                   " message_id = '%s'",
	                   s.op.row.id),
	                 2);

	store_close(st2);
	PQfinish(x);
}

/* ---- opt-outs per canonical sender, provider countries ---- */

/* dlrd_sender_key() (SQL, migration 4) gives optout_sender_key()'s answer
 * (C) on edge cases and on random strings over the characters the rule
 * looks at. */
static void test_sender_key_matches_c(void **state)
{
	struct fixture *f = *state;
	static const char *const fixed[] = {
	    "+447520650000",
	    "447520650000",
	    "+44 7520 650000",
	    "+1 (415) 555-0123",
	    "415.555.0123",
	    " +447520650000\r\n",
	    "123456",
	    "12345",
	    "123456789012345",
	    "1234567890123456",
	    "AcmeInc",
	    " ACME Bank ",
	    "++447520650000",
	    "44+7520650000",
	    "tel:+447520650000",
	    "\xc3\x89TAT",
	    "+",
	    "()",
	    "",
	    " \t\r\n",
	    "+ 1 2 3 4 5 6",
	};
	static const char *const alphabet[] = {"0", "1", "9",  " ",  "+",  "-", ".", "(",       ")",
	                                       "a", "Z", "\t", "\r", "\n", "/", "x", "\xc3\x89"};
	uint64_t x = 0x9e3779b97f4a7c15u;
	char in[128], key[128];

	for (int i = 0; i < 1500; i++) {
		if (i < (int)ARRAY_LEN(fixed)) {
			util_strlcpy(in, fixed[i], sizeof(in));
		} else {
			size_t n = 0, len;
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			len = (size_t)(x % 20);
			for (size_t k = 0; k < len; k++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				/* mostly digits, so that phone-like strings are common */
				const char *c = x % 3 ? alphabet[x % 3] : alphabet[(x >> 8) % 17];
				n += util_strlcpy(in + n, c, sizeof(in) - n);
			}
		}
		optout_sender_key(in, strlen(in), key);
		const char *params[1] = {in};
		PGresult *r = PQexecParams(f->c, "SELECT dlrd_sender_key($1)", 1, NULL, params,
		                           NULL, NULL, 0);
		assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
		if (strcmp(PQgetvalue(r, 0, 0), key) != 0)
			fprintf(stderr, "input \"%s\": SQL \"%s\", C \"%s\"\n", in,
			        PQgetvalue(r, 0, 0), key);
		assert_string_equal(PQgetvalue(r, 0, 0), key);
		PQclear(r);
	}
	assert_int_equal(Q(f, "SELECT (dlrd_sender_key(NULL) = '')::int"), 1);
}

/* The outcome of a send to "abc" from sender under a fresh key. */
static enum store_outcome send_from(struct fixture *f, const char *sender)
{
	static int n;
	char idem[32];
	struct api_item a;
	util_fmt(idem, sizeof(idem), "from-%d", n++);
	api_send(&a, idem, idem, NULL);
	a.op.send.sender_identity = sender;
	assert_int_equal(apply_api(f->st, &a), 0);
	return a.op.outcome;
}

/* test_store_sqlite.c's test of the same name: one opt-out state per
 * canonical sender, so a STOP reported as sent to "447520650000" refuses a
 * send from "+447520650000". */
static void test_opt_out_by_sender_key(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	char buf[64];

	struct dlr_event stop = inbound("SMk1", "abc", "STOP", 1000);
	stop.sender_identity = "447520650000";
	assert_int_equal(apply1(f, &stop, &it), 0);
	assert_string_equal(pgt_str(f->c, buf, sizeof(buf),
	                            "SELECT sender_identity || '|' || opted_out FROM sms_opt_outs"),
	                    "447520650000|1");
	assert_int_equal(send_from(f, "+447520650000"), STORE_OPTED_OUT);
	assert_int_equal(send_from(f, "447520650000"), STORE_OPTED_OUT);
	assert_int_equal(send_from(f, "+44 7520-650000"), STORE_OPTED_OUT);
	assert_int_equal(send_from(f, "(44) 7520.650000"), STORE_OPTED_OUT);
	assert_int_equal(send_from(f, "+447520650001"), STORE_DONE);
	assert_int_equal(send_from(f, "AcmeInc"), STORE_DONE);

	struct dlr_event start = inbound("SMk2", "abc", "START", 2000);
	start.sender_identity = "+44 7520 650000";
	assert_int_equal(apply1(f, &start, &it), 0);
	assert_int_equal(send_from(f, "+447520650000"), STORE_DONE);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_opt_outs"), 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_opt_out_history WHERE"
	                      " sender_identity = '447520650000'"),
	                 2);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_inbound_messages WHERE to_identity IN"
	                      " ('447520650000', '+44 7520 650000')"),
	                 2);

	struct dlr_event alnum = inbound("SMk3", "abc", "stop", 3000);
	alnum.sender_identity = "AcmeInc";
	assert_int_equal(apply1(f, &alnum, &it), 0);
	assert_int_equal(send_from(f, "ACMEINC"), STORE_OPTED_OUT);
	assert_int_equal(send_from(f, " acmeinc "), STORE_OPTED_OUT);
	assert_int_equal(send_from(f, "Acme"), STORE_DONE);
	assert_int_equal(send_from(f, "447520650000"), STORE_DONE);
}

/* A STOP and a START with the same effective time in one batch: the later
 * arrival decides, in either order, as on SQLite (test_store_sqlite.c).
 * The batch sorts inbound events by user and canonical sender for its row
 * locks; among those, arrival order must stay. */
static void test_opt_out_same_time_later_arrival_wins(void **state)
{
	struct fixture *f = *state;
	static const char *const users[2] = {"same-a", "same-b"};

	for (int order = 0; order < 2; order++) {
		static const char *const ids[2][2] = {{"SMst1", "SMst2"}, {"SMst3", "SMst4"}};
		struct dlr_event stop = inbound(ids[order][0], users[order], "STOP", 5000);
		struct dlr_event start = inbound(ids[order][1], users[order], "START", 5000);
		struct commit_item it[2];
		struct commit_item *items[2] = {&it[0], &it[1]};
		item_init(&it[0], order ? &start : &stop, 1);
		item_init(&it[1], order ? &stop : &start, 1);
		assert_int_equal(apply_items(f->st, items, 2), 0);
	}
	assert_int_equal(Q(f, "SELECT opted_out::int FROM sms_opt_outs WHERE recipient_hash ="
	                      " 'same-a'"),
	                 0);
	assert_int_equal(Q(f, "SELECT opted_out::int FROM sms_opt_outs WHERE recipient_hash ="
	                      " 'same-b'"),
	                 1);
	/* the same through two providers (one number of ours moving between
	 * them): the opt-out row is the user's and the sender's, whichever
	 * provider reported the keyword, so the provider must not reorder them */
	for (int order = 0; order < 2; order++) {
		static const char *const ids[2][2] = {{"SMst5", "SMst6"}, {"SMst7", "SMst8"}};
		static const char *const users2[2] = {"same-c", "same-d"};
		struct dlr_event stop = inbound(ids[order][0], users2[order], "STOP", 5000);
		struct dlr_event start = inbound(ids[order][1], users2[order], "START", 5000);
		stop.provider = order ? "telnyx" : "twilio";
		start.provider = order ? "twilio" : "telnyx";
		event_finish(&stop);
		event_finish(&start);
		struct commit_item it[2];
		struct commit_item *items[2] = {&it[0], &it[1]};
		item_init(&it[0], order ? &start : &stop, 1);
		item_init(&it[1], order ? &stop : &start, 1);
		it[0].provider = it[0].events[0].provider;
		it[1].provider = it[1].events[0].provider;
		assert_int_equal(apply_items(f->st, items, 2), 0);
	}
	assert_int_equal(Q(f, "SELECT opted_out::int FROM sms_opt_outs WHERE recipient_hash ="
	                      " 'same-c'"),
	                 0);
	assert_int_equal(Q(f, "SELECT opted_out::int FROM sms_opt_outs WHERE recipient_hash ="
	                      " 'same-d'"),
	                 1);
}

/* Migration 4 re-keys the opt-outs a version-3 database holds, as SQLite's
 * migration 6 does (test_store_sqlite.c, the same rows and answer). */
/* Migration 6: an audit row whose review item moved to a joined send
 * before the trigger existed is mended; later moves carry it along. */
/* A review item that moves with a joined send (the join in
 * dlrd_api_set_provider_id) takes its audit rows along (migration 6's
 * trigger, dlrd_review_moved()), found by review id through an index.
 * The trigger's "message_id IS NOT DISTINCT FROM" cannot use
 * audit_log_message, and nothing indexed review_id: each item moved read
 * the whole audit log (every reveal and resolution ever made) inside the
 * writer's transaction.  The plan with sequential scans priced out still
 * scanned the table. */
static void test_moved_review_finds_audit_rows_by_index(void **state)
{
	struct fixture *f = *state;
	char plan[8192];

	assert_int_equal(pgt_exec(f->c, "SET enable_seqscan = off"), 0);
	pgt_str(f->c, plan, sizeof(plan),
	        "EXPLAIN (FORMAT JSON) UPDATE audit_log"
	        " SET message_id = '01a21dbe-10c7-77c1-8add-78a55b904a02'"
	        " WHERE review_id = 7"
	        " AND message_id IS NOT DISTINCT FROM '01a21dbe-10c7-77c1-8add-78a55b904a01'");
	if (!strstr(plan, "\"Index Name\": \"audit_log_review\""))
		fail_msg("moving a review item's audit rows: %s", plan);
}

/* A review list reads at most STORE_PAYLOAD_BUDGET (4 MiB) of raw payloads
 * in all, the newest items' first; an item past it comes without (its size
 * kept).  The API answered with at most that much, but the store read every
 * item's payload: 500 items of max_body_bytes (up to 16 MiB) each, or 500
 * unusable events of one big batch sharing its payload, made one read of
 * gigabytes, in memory at once, where an allocation that fails aborts. */
static void test_review_payloads_within_budget(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(pgt_exec(f->c, "INSERT INTO review_queue (created_at, provider, reason,"
	                                " raw_payload) SELECT now(), 'twilio', 'unusable_payload',"
	                                " decode(repeat('00', 1048576), 'hex')"
	                                " FROM generate_series(1, 6)"),
	                 0);
	struct arena ar;
	struct store_review_item *rv;
	struct store_review_query rq = {.state = -1, .limit = 10};
	size_t n, total = 0;
	char err[256];

	arena_init(&ar, NULL, 0);
	assert_int_equal(store_list_review(f->st, &ar, &rq, &rv, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 6);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(rv[i].raw_payload_len, 1u << 20);
		if (rv[i].raw_payload)
			total += rv[i].raw_payload_len;
		/* newest first, while they fit: the four newest */
		assert_true((rv[i].raw_payload != NULL) == (i < 4));
	}
	if (total > STORE_PAYLOAD_BUDGET)
		fail_msg("a review list read %zu bytes of payloads", total);
	arena_fini(&ar);
}

/* A timeline reads at most STORE_PAYLOAD_BUDGET (4 MiB) of raw payloads, as
 * a review list does; an event past it comes without (its size kept).  It
 * read all of its up to STORE_TIMELINE_EVENTS events' payloads, each up to
 * max_body_bytes (a batch's, shared by its events), in memory at once. */
static void test_timeline_payloads_within_budget(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(
	    pgt_exec(f->c,
	             "INSERT INTO sms_messages (id, provider, provider_message_id, origin,"
	             " current_status, created_at, updated_at) VALUES"
	             " ('01900000-0000-7000-8000-00000000abcd', 'twilio', 'SMbig', 'callback',"
	             " 'sent', now(), now());"
	             "INSERT INTO sms_message_events (message_id, provider, provider_message_id,"
	             " dedup_key, status, is_final, changed_summary, raw_payload, received_at)"
	             " SELECT '01900000-0000-7000-8000-00000000abcd', 'twilio', 'SMbig', 'k' || i,"
	             " 'sent', 0, 1, decode(repeat('00', 1048576), 'hex'), now()"
	             " FROM generate_series(1, 6) i"),
	    0);
	struct arena ar;
	struct store_message m;
	struct store_event *ev;
	size_t n, total = 0;
	char err[256];

	arena_init(&ar, NULL, 0);
	assert_int_equal(store_get_timeline(f->st, &ar, "01900000-0000-7000-8000-00000000abcd",
	                                    true, &m, &ev, &n, err, sizeof(err)),
	                 0);
	assert_int_equal(n, 6);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(ev[i].raw_payload_len, 1u << 20);
		if (ev[i].raw_payload)
			total += ev[i].raw_payload_len;
		/* oldest first, while they fit: the four oldest */
		assert_true((ev[i].raw_payload != NULL) == (i < 4));
	}
	if (total > (4u << 20))
		fail_msg("a timeline read %zu bytes of payloads", total);
	arena_fini(&ar);
}

static void test_migration_6_audit_follows_review(void **state)
{
	struct fixture *f = *state;
	static const char s1[] = "01a21dbe-10c7-77c1-8add-78a55b904a01",
	                  s2[] = "01a21dbe-10c7-77c1-8add-78a55b904a02",
	                  gone[] = "01a21dbe-10c7-77c1-8add-78a55b904a03",
	                  other[] = "01a21dbe-10c7-77c1-8add-78a55b904a04";

	store_close(f->st);
	f->st = NULL;
	assert_int_equal(
	    pgt_exec(f->c,
	             "DROP TRIGGER review_queue_moved ON review_queue;"
	             "DROP FUNCTION dlrd_review_moved();"
	             "DELETE FROM schema_migrations WHERE version = 6;"
	             "INSERT INTO review_queue (id, created_at, provider, reason, message_id)"
	             " VALUES (1, now(), 'twilio', 'unknown_status', '%s'),"
	             " (2, now(), 'twilio', 'unknown_status', '%s');"
	             "INSERT INTO audit_log (at, actor, actor_role, action, message_id,"
	             " review_id, reason) VALUES"
	             " (now(), 'a', 'admin', 'review_resolve', '%s', 1, 'x'),"
	             " (now(), 'a', 'admin', 'review_resolve', '%s', 2, 'x'),"
	             " (now(), 'a', 'admin', 'reveal', '%s', NULL, 'x')",
	             s1, other, gone, other, gone),
	    0);
	assert_int_equal(open_store(f, &f->st), 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM audit_log WHERE message_id = '%s'", s1), 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM audit_log WHERE message_id = '%s'", other), 1);
	/* a reveal is not a review item's: left as it was */
	assert_int_equal(Q(f, "SELECT count(*) FROM audit_log WHERE message_id = '%s'", gone), 1);
	assert_int_equal(
	    pgt_exec(f->c, "UPDATE review_queue SET message_id = '%s' WHERE id = 2", s2), 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM audit_log WHERE message_id = '%s'", s2), 1);
}

/* Migration 9 during a rolling upgrade: the review items of the release
 * before it (893c4a0) stay keyless and counted 0 times resent; an old node
 * still running inserts with its own statement (verbatim below, prepared
 * before the migration as a running node has it), an item each time; this
 * node's keyed unusable payload is one item however often it is resent. */
static void test_migration_9_rolling_upgrade(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	struct dlr_event u;

	store_close(f->st);
	f->st = NULL;
	assert_int_equal(pgt_exec(f->c,
	                          "DROP INDEX review_queue_dedup;"
	                          "ALTER TABLE review_queue DROP COLUMN dedup_key,"
	                          " DROP COLUMN retry_count;"
	                          "DELETE FROM schema_migrations WHERE version = 9;"
	                          "INSERT INTO review_queue (created_at, provider, reason,"
	                          " detail, raw_payload, resolved_at) VALUES"
	                          " (now(), 'twilio', 'unusable_payload', 'x', 'raw=1', NULL),"
	                          " (now(), 'twilio', 'unusable_payload', 'x', 'raw=1', now())"),
	                 0);
	PGresult *r =
	    PQprepare(f->c, "dlrd_unusable",
	              "INSERT INTO review_queue (created_at, provider, reason, detail, raw_status,"
	              " raw_payload, payload_json) VALUES ($1, $2, $3, $4, $5, $6,"
	              " CASE WHEN $7 THEN convert_from($6, 'UTF8')::jsonb END)",
	              7, (const Oid[]){1184, 25, 25, 25, 25, 17, 16});
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);

	assert_int_equal(open_store(f, &f->st), 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM schema_migrations WHERE version = 9"), 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM review_queue WHERE dedup_key IS NULL"
	                      " AND retry_count = 0"),
	                 2);
	for (int i = 0; i < 2; i++) {
		const char *v[7] = {
		    "2026-11-29T10:00:00Z", "twilio", "unusable_payload", "x", NULL, "raw=1", "f"};
		r = PQexecPrepared(f->c, "dlrd_unusable", 7, v, NULL, NULL, 0);
		assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
		PQclear(r);
	}
	assert_int_equal(Q(f, "SELECT count(*) FROM review_queue WHERE dedup_key IS NULL"
	                      " AND retry_count = 0"),
	                 4);

	memset(&u, 0, sizeof(u));
	u.kind = EV_UNUSABLE;
	u.provider = "twilio";
	u.review = REVIEW_UNUSABLE;
	u.review_detail = "no usable MessageSid";
	u.occurred_ms = -1;
	util_strlcpy(u.dedup_key, "k-after-upgrade", sizeof(u.dedup_key));
	for (int i = 0; i < 3; i++) {
		assert_int_equal(apply1(f, &u, &it), 0);
		assert_int_equal(it.n_review, i == 0);
		assert_int_equal(it.n_dup, i > 0);
	}
	assert_int_equal(Q(f, "SELECT count(*) FROM review_queue"), 5);
	assert_int_equal(
	    Q(f, "SELECT retry_count FROM review_queue WHERE dedup_key = 'k-after-upgrade'"), 2);
}

/* Migration 7: events unique per message, as on SQLite.  A provider that
 * sends one event id for two of its messages gets the event stored on
 * both; a retry of either is still a duplicate of its own. */
static void test_migration_7_event_id_per_message(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	char buf[256];

	store_close(f->st);
	f->st = NULL;
	assert_int_equal(pgt_exec(f->c, "ALTER TABLE sms_message_events DROP CONSTRAINT"
	                                " sms_message_events_dedup;"
	                                "ALTER TABLE sms_message_events ADD CONSTRAINT"
	                                " sms_message_events_dedup UNIQUE (provider, dedup_key);"
	                                "DELETE FROM schema_migrations WHERE version = 7"),
	                 0);
	assert_int_equal(open_store(f, &f->st), 0);
	assert_string_equal(pgt_str(f->c, buf, sizeof(buf),
	                            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
	                            " WHERE conname = 'sms_message_events_dedup'"),
	                    "UNIQUE (message_id, dedup_key)");
	assert_int_equal(Q(f, "SELECT count(*) FROM schema_migrations"), 12);

	const char *sids[] = {"SMaaaa", "SMbbbb", "SMaaaa", "SMbbbb"};
	for (int i = 0; i < 4; i++) {
		struct dlr_event e = mk(sids[i], ST_DELIVERED, "delivered", NULL);
		e.provider_event_id = "EV-reused";
		event_finish(&e);
		assert_int_equal(apply1(f, &e, &it), 0);
		assert_int_equal(it.n_new, i < 2 ? 1 : 0);
		assert_int_equal(it.n_dup, i < 2 ? 0 : 1);
	}
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_message_events"), 2);
	assert_int_equal(Q(f, "SELECT count(DISTINCT message_id) FROM sms_message_events"), 2);
	for (int i = 0; i < 2; i++) {
		char exp[64];
		util_fmt(exp, sizeof(exp), "delivered|delivered|-|1|%u|0|1", 1u << ST_DELIVERED);
		summary(f, sids[i], buf, sizeof(buf));
		assert_string_equal(buf, exp);
		assert_int_equal(Q(f,
		                   "SELECT duplicate_count * 10 + callback_count FROM sms_messages"
		                   " WHERE provider_message_id = '%s'",
		                   sids[i]),
		                 12);
	}
	/* each retry-log row names its own message's event */
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_callback_log l JOIN sms_message_events e"
	                      " ON e.id = l.event_id JOIN sms_messages m ON m.id = e.message_id"
	                      " GROUP BY m.id ORDER BY 1 LIMIT 1"),
	                 2);
}

static void test_migration_rekeys_opt_outs(void **state)
{
	struct fixture *f = *state;
	char buf[512];

	store_close(f->st);
	f->st = NULL;
	assert_int_equal(
	    pgt_exec(f->c,
	             "DELETE FROM schema_migrations WHERE version = 4;"
	             "INSERT INTO sms_opt_outs VALUES"
	             " ('u1', '447520650000', 1, 'STOP', 2, '2026-01-01T00:00:01.000Z',"
	             "  '2026-01-01T00:00:10.000Z'),"
	             " ('u1', '+447520650000', 0, 'START', 1, '2026-01-01T00:00:02.000Z',"
	             "  '2026-01-01T00:00:09.000Z'),"
	             " ('u1', '+44 7520 650000', 1, 'STOP', 3, '2026-01-01T00:00:00.000Z',"
	             "  '2026-01-01T00:00:11.000Z'),"
	             " ('u2', '+447520650000', 1, 'STOP', 4, '2026-01-01T00:00:00.000Z',"
	             "  '2026-01-01T00:00:00.000Z'),"
	             " ('u2', 'AcmeInc', 0, 'START', 5, '2026-01-01T00:00:00.000Z',"
	             "  '2026-01-01T00:00:00.000Z'),"
	             " ('u2', 'ACMEINC', 1, 'STOP', 6, '2026-01-01T00:00:05.000Z',"
	             "  '2026-01-01T00:00:05.000Z'),"
	             " ('u3', '15005550006', 0, 'START', 8, '2026-01-01T00:00:00.000Z',"
	             "  '2026-01-01T00:00:06.000Z'),"
	             " ('u3', '+15005550006', 1, 'STOP', 7, '2026-01-01T00:00:00.000Z',"
	             "  '2026-01-01T00:00:05.000Z'),"
	             " ('u4', '', 1, 'STOP', 9, '2026-01-01T00:00:00.000Z',"
	             "  '2026-01-01T00:00:00.000Z');"
	             "INSERT INTO sms_opt_out_history (recipient_hash, sender_identity, action,"
	             " keyword, inbound_id, effective_at, received_at) VALUES"
	             " ('u1', '+447520650000', 'opt_in', 'START', 1, '2026-01-01T00:00:02.000Z',"
	             "  '2026-01-01T00:00:09.000Z'),"
	             " ('u1', '447520650000', 'opt_out', 'STOP', 2, '2026-01-01T00:00:01.000Z',"
	             "  '2026-01-01T00:00:10.000Z')"),
	    0);
	assert_int_equal(open_store(f, &f->st), 0);
	assert_int_equal(Q(f, "SELECT count(*) FROM schema_migrations"), 12);
	assert_string_equal(pgt_str(f->c, buf, sizeof(buf),
	                            "SELECT string_agg(r, ' ' ORDER BY r COLLATE \"C\") FROM"
	                            " (SELECT recipient_hash || ':' || sender_identity || ':' ||"
	                            " opted_out || ':' || inbound_id AS r FROM sms_opt_outs) x"),
	                    "u1:447520650000:0:1 u2:447520650000:1:4 u2:acmeinc:1:6 "
	                    "u3:15005550006:0:8 u4::1:9");
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_opt_out_history WHERE"
	                      " sender_identity = '447520650000'"),
	                 2);
	assert_int_equal(send_from(f, "+447520650000"), STORE_DONE);
	assert_int_equal(
	    pgt_exec(f->c,
	             "UPDATE sms_opt_outs SET recipient_hash = 'abc' WHERE recipient_hash = 'u2'"),
	    0);
	assert_int_equal(send_from(f, "+44 7520 650000"), STORE_OPTED_OUT);
	assert_int_equal(send_from(f, "Acmeinc"), STORE_OPTED_OUT);
}

/* test_store_sqlite.c's test of the same name: a provider's country
 * replaces the number's whichever came first; the app's stays. */
static void test_provider_country_either_order(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	struct api_item a;
	char buf[64];
#define CTRY(sid)                                                                                  \
	pgt_str(f->c, buf, sizeof(buf),                                                            \
	        "SELECT destination_country || '|' || country_source FROM sms_messages"            \
	        " WHERE provider_message_id = '%s'",                                               \
	        sid)

	api_send(&a, "c-1", "c-1", "SMc1");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_string_equal(CTRY("SMc1"), "US|number");
	struct dlr_event e1 = mk("SMc1", ST_DELIVERED, "delivered", NULL);
	e1.destination_country = "CA";
	assert_int_equal(apply1(f, &e1, &it), 0);
	assert_string_equal(CTRY("SMc1"), "CA|provider");

	struct dlr_event e2 = mk("SMc2", ST_DELIVERED, "delivered", NULL);
	e2.destination_country = "CA";
	assert_int_equal(apply1(f, &e2, &it), 0);
	api_send(&a, "c-2", "c-2", "SMc2");
	assert_int_equal(apply_api(f->st, &a), 0);
	assert_string_equal(CTRY("SMc2"), "CA|provider");

	for (int k = 0; k < 4; k++) {
		char sid[16];
		util_fmt(sid, sizeof(sid), "SMc3%d", k);
		struct dlr_event num = mk(sid, ST_SENT, "sent", NULL);
		num.destination_country = "US";
		num.country_from_number = true;
		struct dlr_event prov = mk(sid, ST_DELIVERED, "delivered", NULL);
		prov.destination_country = "CA";
		struct dlr_event ev[2] = {k & 1 ? prov : num, k & 1 ? num : prov};
		if (k & 2) {
			item_init(&it, ev, 2);
			struct commit_item *items[1] = {&it};
			assert_int_equal(apply_items(f->st, items, 1), 0);
		} else {
			assert_int_equal(apply1(f, &ev[0], &it), 0);
			assert_int_equal(apply1(f, &ev[1], &it), 0);
		}
		assert_string_equal(CTRY(sid), "CA|provider");
	}

	api_send(&a, "c-4", "c-4", "SMc4");
	a.op.send.country = "FR";
	assert_int_equal(apply_api(f->st, &a), 0);
	struct dlr_event e4 = mk("SMc4", ST_DELIVERED, "delivered", NULL);
	e4.destination_country = "CA";
	assert_int_equal(apply1(f, &e4, &it), 0);
	assert_string_equal(CTRY("SMc4"), "FR|app");
#undef CTRY
}

/* The connection is described in log lines (storage_open, _disconnected,
 * _reconnected) as "host=... port=... db=... user=...".  A database name
 * (or a user, or a socket directory) may hold blanks: the line must stay
 * logfmt.  Before the fix "db=dlrd log test" put "log" and "test" in the
 * line as keys without values. */
static void test_connection_described_as_logfmt(void **state)
{
	struct fixture *f = *state;
	PQconninfoOption *opts = PQconninfoParse(pgt_server(), NULL);
	const char *host = "127.0.0.1", *port = "5432", *user = "dlrd";
	char db[64], url[512], buf[16384];
	struct config cfg;
	struct store *st = NULL;
	int p[2], saved;
	ssize_t n;
	size_t got = 0;

	assert_non_null(opts);
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val || !*o->val)
			continue;
		if (!strcmp(o->keyword, "host"))
			host = o->val;
		else if (!strcmp(o->keyword, "port"))
			port = o->val;
		else if (!strcmp(o->keyword, "user"))
			user = o->val;
	}
	snprintf(db, sizeof(db), "dlrd log test %ld", (long)getpid());
	assert_int_equal(pgt_exec(f->c, "CREATE DATABASE \"%s\"", db), 0);
	snprintf(url, sizeof(url), "host=%s port=%s user=%s dbname='%s'", host, port, user, db);
	PQconninfoFree(opts);
	memset(&cfg, 0, sizeof(cfg));
	cfg.storage_url = url;
	cfg.synchronous = SYNC_FULL;

	assert_int_equal(pipe(p), 0);
	assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	saved = dup(2);
	assert_true(saved >= 0);
	assert_int_equal(dup2(p[1], 2), 2);
	close(p[1]);
	int rc = open_store(&(struct fixture){.cfg = cfg}, &st);
	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	while (got + 1 < sizeof(buf) && (n = read(p[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	close(p[0]);
	store_close(st);
	pgt_exec(f->c, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", db);
	assert_int_equal(rc, 0);

	assert_non_null(strstr(buf, "event=storage_open"));
	for (char *l = buf, *nl; *l; l = nl + 1) {
		if (!(nl = strchr(l, '\n')))
			break;
		if (strncmp(l, "ts=", 3) == 0 && !logfmt_ok(l, nl))
			fail_msg("not logfmt: %.*s", (int)(nl - l), l);
	}
}

/* One callback item of several events whose payload is kept once, under
 * the id c repeated (as http.c names it: the same bytes, the same id). */
static void payload_item(struct commit_item *it, struct dlr_event *e, size_t n, char c,
                         const char *body)
{
	item_init(it, e, n);
	it->raw_payload = (struct iov){body, strlen(body)};
	memset(it->payload_id, c, 64);
	it->payload_id[64] = '\0';
}

/* The raw payloads of message pmid's events, oldest first, "|" between. */
static void timeline_payloads(struct fixture *f, const char *pmid, char *out, size_t cap)
{
	struct arena ar;
	struct store_message *rows, m;
	struct store_event *ev;
	size_t n, k = 0;
	char err[256];
	struct store_query q = {.final = -1, .limit = 10};

	arena_init(&ar, NULL, 0);
	q.provider = "twilio";
	q.provider_message_id = pmid;
	assert_int_equal(store_search(f->st, &ar, &q, &rows, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(
	    store_get_timeline(f->st, &ar, rows[0].id, true, &m, &ev, &n, err, sizeof(err)), 0);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		k += util_fmt(out + k, cap - k, "%s%.*s", i ? "|" : "", (int)ev[i].raw_payload_len,
		              ev[i].raw_payload);
	arena_fini(&ar);
}

static int line_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* The open review items as "reason=payload", sorted, " " between. */
static void review_payloads(struct fixture *f, char *out, size_t cap)
{
	struct arena ar;
	struct store_review_item *rv;
	size_t n, k = 0;
	char err[256], line[8][64];
	struct store_review_query rq = {.state = 0, .limit = 8};

	arena_init(&ar, NULL, 0);
	assert_int_equal(store_list_review(f->st, &ar, &rq, &rv, &n, err, sizeof(err)), 0);
	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++)
		util_fmt(line[i], sizeof(line[i]), "%s=%.*s", rv[i].reason,
		         (int)rv[i].raw_payload_len, rv[i].raw_payload);
	qsort(line, n, sizeof(line[0]), line_cmp);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		k += util_fmt(out + k, cap - k, "%s%s", i ? " " : "", line[i]);
	arena_fini(&ar);
}

/* test_store_sqlite.c's test of that name, on PostgreSQL: a batch mixing
 * requests that keep their payload once with one that does not; every row
 * (status events, an inbound message, review items for an unknown status,
 * an unusable result and a conflict) reads back its own request's bytes; a
 * second item with the same payload in the batch, and a resend later (in
 * the same bytes or others), are duplicates and add no copy; a batch that fails leaves no payload
 * row. */
static void test_payload_kept_once_mixed_batch(void **state)
{
	struct fixture *f = *state;
	char err[256], got[256];
	struct dlr_event a[4], b[4], c[1], d[2], x[2];
	struct commit_item ia, ib, ic, id, ix, iy;

	a[0] = mk("SMpa", ST_DELIVERED, "delivered", NULL);
	a[1] = mk("SMpu", ST_UNKNOWN, "weird", NULL);
	a[1].review = REVIEW_UNKNOWN_STATUS;
	a[2] = inbound("IMpa", "u1", "hello", -1);
	memset(&a[3], 0, sizeof(a[3]));
	a[3].kind = EV_UNUSABLE;
	a[3].provider = "twilio";
	a[3].review = REVIEW_UNUSABLE;
	a[3].review_detail = "no usable MessageSid";
	a[3].occurred_ms = -1;
	util_strlcpy(a[3].dedup_key, "unusable-a", sizeof(a[3].dedup_key));
	memcpy(b, a, sizeof(a));
	c[0] = mk("SMpa", ST_SENT, "sent", NULL);
	d[0] = mk("SMpd", ST_SENT, "sent", NULL);
	d[1] = mk("SMpa", ST_UNDELIVERED, "undelivered", "30003");
	payload_item(&ia, a, 4, 'a', "body-A");
	payload_item(&ib, b, 4, 'a', "body-A");
	item_init(&ic, c, 1);
	ic.raw_payload = (struct iov){"body-C", 6};
	payload_item(&id, d, 2, 'd', "body-D");
	struct commit_item *items[4] = {&ia, &ib, &ic, &id};
	assert_int_equal(store_apply(f->st, items, 4, err, sizeof(err)), 0);
	assert_int_equal(ia.n_new, 3);
	assert_int_equal(ia.n_review, 2);
	assert_int_equal(ia.n_dup, 0);
	assert_int_equal(ib.n_new + ib.n_review, 0);
	assert_int_equal(ib.n_dup, 4);
	assert_int_equal(ic.n_new, 1);
	assert_int_equal(id.n_new, 2);
	assert_int_equal(id.n_review, 1);

	assert_int_equal(Q(f, "SELECT count(*) FROM sms_payloads"), 2);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_payloads WHERE provider = 'twilio' AND"
	                      " (id = repeat('a', 64) AND raw_payload = 'body-A'::bytea OR"
	                      " id = repeat('d', 64) AND raw_payload = 'body-D'::bytea)"),
	                 2);
	/* the rows that name a payload hold none of their own */
	assert_int_equal(Q(f, "SELECT (SELECT count(*) FROM sms_message_events WHERE"
	                      " length(raw_payload) = 0 AND payload_id IS NOT NULL) + (SELECT"
	                      " count(*) FROM sms_inbound_messages WHERE length(raw_payload) ="
	                      " 0 AND payload_id = repeat('a', 64)) + (SELECT count(*)"
	                      " FROM review_queue WHERE length(raw_payload) = 0 AND payload_id"
	                      " IS NOT NULL)"),
	                 4 + 1 + 3);
	timeline_payloads(f, "SMpa", got, sizeof(got));
	assert_string_equal(got, "body-A|body-C|body-D");
	timeline_payloads(f, "SMpu", got, sizeof(got));
	assert_string_equal(got, "body-A");
	timeline_payloads(f, "SMpd", got, sizeof(got));
	assert_string_equal(got, "body-D");
	review_payloads(f, got, sizeof(got));
	assert_string_equal(got, "final_conflict=body-D unknown_status=body-A"
	                         " unusable_payload=body-A");

	/* a resend of the first request: duplicates only, no second copy */
	memcpy(b, a, sizeof(a));
	payload_item(&ib, b, 4, 'a', "body-A");
	items[0] = &ib;
	assert_int_equal(store_apply(f->st, items, 1, err, sizeof(err)), 0);
	assert_int_equal(ib.n_dup, 4);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_payloads"), 2);
	/* the same events again in other bytes (a Telnyx retry counts its
	 * attempt in the body): duplicates, and no copy that no row names */
	memcpy(b, a, sizeof(a));
	payload_item(&ib, b, 4, 'b', "body-A, attempt 2");
	assert_int_equal(store_apply(f->st, items, 1, err, sizeof(err)), 0);
	assert_int_equal(ib.n_dup, 4);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_payloads"), 2);
	timeline_payloads(f, "SMpu", got, sizeof(got));
	assert_string_equal(got, "body-A");

	/* a failed batch keeps nothing, its payload row included */
	x[0] = mk("SMpx", ST_SENT, "sent", NULL);
	x[1] = mk("SMpy", ST_SENT, "sent", NULL);
	payload_item(&ix, x, 2, 'e', "body-E");
	struct dlr_event bad = mk("SMbad", ST_SENT, "sent", NULL);
	bad.provider_message_id = NULL;
	item_init(&iy, &bad, 1);
	items[0] = &ix;
	items[1] = &iy;
	assert_int_equal(store_apply(f->st, items, 2, err, sizeof(err)), DLRD_EIO);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_payloads"), 2);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_messages WHERE provider_message_id"
	                      " IN ('SMpx', 'SMpy')"),
	                 0);
	/* and the same request alone, later, is stored whole */
	payload_item(&ix, x, 2, 'e', "body-E");
	assert_int_equal(store_apply(f->st, items, 1, err, sizeof(err)), 0);
	timeline_payloads(f, "SMpy", got, sizeof(got));
	assert_string_equal(got, "body-E");
}

/* The payload row of a request is written whenever a row of it names it,
 * whichever kind: inbound messages alone, unusable results alone (with a
 * resend key or, without a hash key, none), status events under message
 * ids that need quoting, or empty ones. */
static void test_payload_row_when_named(void **state)
{
	struct fixture *f = *state;
	char err[256], got[256];
	struct dlr_event in[2], un[2], kl[2], st[2], em[2];
	struct commit_item ii, iu, ik, is, ie;

	in[0] = inbound("IMn1", "u1", "one", -1);
	in[1] = inbound("IMn2", "u1", "two", -1);
	for (int i = 0; i < 2; i++) {
		memset(&un[i], 0, sizeof(un[i]));
		un[i].kind = EV_UNUSABLE;
		un[i].provider = "twilio";
		un[i].review = REVIEW_UNUSABLE;
		un[i].review_detail = "no usable MessageSid";
		un[i].occurred_ms = -1;
		util_fmt(un[i].dedup_key, sizeof(un[i].dedup_key), "unusable-%d", i);
	}
	/* a status already stored, and an unusable result without a key */
	kl[0] = mk("SMkl", ST_SENT, "sent", NULL);
	assert_int_equal(apply1(f, &kl[0], &ii), 0);
	kl[0] = mk("SMkl", ST_SENT, "sent", NULL);
	kl[1] = un[0];
	kl[1].dedup_key[0] = '\0';
	st[0] = mk("SM\"q\\,{x}", ST_SENT, "sent", NULL);
	st[1] = mk("SM\"q\\,{x}", ST_DELIVERED, "delivered", NULL);
	em[0] = mk("", ST_SENT, "sent", NULL);
	em[1] = mk("", ST_DELIVERED, "delivered", NULL);

	payload_item(&ii, in, 2, 'i', "body-I");
	payload_item(&iu, un, 2, 'u', "body-U");
	payload_item(&ik, kl, 2, 'k', "body-K");
	payload_item(&is, st, 2, 's', "body-S");
	payload_item(&ie, em, 2, 'z', "body-Z");
	struct commit_item *items[5] = {&ii, &iu, &ik, &is, &ie};
	assert_int_equal(store_apply(f->st, items, 5, err, sizeof(err)), 0);
	assert_int_equal(ik.n_dup, 1);
	assert_int_equal(ik.n_review, 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_payloads WHERE id = repeat('i', 64)"), 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_payloads WHERE id = repeat('u', 64)"), 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_payloads WHERE id = repeat('k', 64)"), 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_payloads WHERE id = repeat('s', 64)"), 1);
	assert_int_equal(Q(f, "SELECT count(*) FROM sms_payloads WHERE id = repeat('z', 64)"), 1);
	timeline_payloads(f, "SM\"q\\,{x}", got, sizeof(got));
	assert_string_equal(got, "body-S|body-S");
	review_payloads(f, got, sizeof(got));
	assert_string_equal(got, "unusable_payload=body-K unusable_payload=body-U"
	                         " unusable_payload=body-U");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_connection_described_as_logfmt, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_new_and_duplicate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_every_order_same_summary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_every_order_one_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_and_unusable_go_to_review, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_batch_is_atomic, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_payload_kept_once_mixed_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_payload_row_when_named, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound_and_opt_out, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_error_reason_stored, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_json_payload, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fold_matches_c, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_start, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_without_create_privilege, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_5_privacy_ids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_writers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_writers_payloads, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deadlock_is_retried, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lock_timeout_of_the_database, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reconnects, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_api_send_replay_refusals, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_api_send_adopts_callbacks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_api_set_provider_id_merges, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_api_reveal_and_resolve, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_api_mixed_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_api_reads, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_api_read_pool_full, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_nodes_same_keys, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_nodes_join, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_nodes_races, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sender_key_matches_c, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_opt_out_by_sender_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_rekeys_opt_outs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_6_audit_follows_review, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_review_payloads_within_budget, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timeline_payloads_within_budget, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_moved_review_finds_audit_rows_by_index, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_migration_7_event_id_per_message, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_9_rolling_upgrade, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_opt_out_same_time_later_arrival_wins, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_provider_country_either_order, setup, teardown),
	};
	if (!pgt_server())
		return pgt_not_configured("test_store_pg");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
