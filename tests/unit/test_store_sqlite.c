/* SPDX-License-Identifier: MIT */
/*
 * The SQLite backend through the storage interface: exact rows for new
 * events, duplicates and review items; the summary row is the same for every
 * arrival order (each order in one batch per event, and all in one batch);
 * a batch is all or nothing; migrations run once (a migration whose row is
 * missing is applied, whatever came after it); migration 7 rewrites ids and fingerprints an older
 * dlrd stored; migration 9 keeps the review items of the release before it.
 * A failed sync, of the WAL or of the database by a checkpoint, is final and
 * leaves the WAL for the restart.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "arena.h"
#include "commitq.h"
#include "crypto.h"
#include "optout.h"
#include "config.h"
#include "privacy.h"
#include "store.h"
#include "store/sqlite_int.h"
#include "util.h"

struct fixture {
	char dir[64];
	char url[128];
	char path[128];
	struct config cfg;
	struct store *st;
};

static void done(struct commit_item *it)
{
	(void)it;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	util_strlcpy(f->dir, "/tmp/dlrd-store-XXXXXX", sizeof(f->dir));
	assert_non_null(mkdtemp(f->dir));
	util_fmt(f->path, sizeof(f->path), "%s/t.db", f->dir);
	util_fmt(f->url, sizeof(f->url), "sqlite:%s", f->path);
	f->cfg.storage_url = f->url;
	f->cfg.synchronous = SYNC_FULL;
	char err[256] = "";
	int rc = store_open(&f->cfg, &f->st, err, sizeof(err));
	if (rc)
		fprintf(stderr, "%s\n", err);
	assert_int_equal(rc, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];
	store_close(f->st);
	util_fmt(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
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

static int apply1(struct fixture *f, struct dlr_event *e, struct commit_item *it)
{
	char err[256];
	memset(it, 0, sizeof(*it));
	it->provider = "twilio";
	it->events = e;
	it->n_events = 1;
	it->raw_payload = (struct iov){"raw=1", 5};
	it->received_ms = 1700000000000;
	it->complete = done;
	struct commit_item *items[1] = {it};
	return store_apply(f->st, items, 1, err, sizeof(err));
}

/* One callback item carrying n events. */
static void item_of(struct commit_item *it, struct dlr_event *e, size_t n)
{
	memset(it, 0, sizeof(*it));
	it->provider = "twilio";
	it->events = e;
	it->n_events = n;
	it->raw_payload = (struct iov){"raw=1", 5};
	it->received_ms = 1700000000000;
	it->complete = done;
}

static sqlite3_int64 q_int(struct fixture *f, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	sqlite3_int64 v = -1;
	assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* The one text column sql (with ?1 = sid) selects, into out. */
static void sid_text(struct fixture *f, const char *sql, const char *sid, char *out, size_t n)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, sid, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	util_strlcpy(out, (const char *)sqlite3_column_text(st, 0), n);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* The order-independent part of a summary row, as one string. */
static void summary(struct fixture *f, const char *sid, char *out, size_t n)
{
	sid_text(f,
	         "SELECT current_status || '|' || coalesce(current_raw_status,'-') "
	         "|| '|' || coalesce(current_error_code,'-') || '|' || is_final || "
	         "'|' || status_mask || '|' || final_conflict || '|' || event_count "
	         "FROM sms_messages WHERE provider_message_id = ?1",
	         sid, out, n);
}

/* Heap's algorithm: steps order[0..n) to its next permutation, with c[]
 * (zeroed before the first) as the state; false after the last one. */
static bool next_perm(int *order, int *c, int n)
{
	int i = 1;
	while (i < n && c[i] >= i) {
		c[i] = 0;
		i++;
	}
	if (i >= n)
		return false;
	int j = (i % 2) ? c[i] : 0;
	int t = order[j];
	order[j] = order[i];
	order[i] = t;
	c[i]++;
	return true;
}

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
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_message_events"), 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_callback_log"), 2);
	assert_int_equal(q_int(f, "SELECT sum(duplicate) FROM sms_callback_log"), 1);
	assert_int_equal(q_int(f, "SELECT duplicate_count FROM sms_messages"), 1);
	assert_int_equal(q_int(f, "SELECT callback_count FROM sms_messages"), 2);
	assert_int_equal(q_int(f, "SELECT count(*) FROM review_queue"), 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM schema_migrations"), 13);
}

/* A provider that sends one event id for two of its messages: each message
 * keeps its event (the unique key is per message, as on PostgreSQL), and a
 * retry of either is a duplicate of its own. */
static void test_event_id_reused_across_messages(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	char buf[256], exp[64];
	const char *sids[] = {"SMaaaa", "SMbbbb", "SMaaaa", "SMbbbb"};

	for (int i = 0; i < 4; i++) {
		struct dlr_event e = mk(sids[i], ST_DELIVERED, "delivered", NULL);
		e.provider_event_id = "EV-reused";
		event_finish(&e);
		assert_int_equal(apply1(f, &e, &it), 0);
		assert_int_equal(it.n_new, i < 2 ? 1 : 0);
		assert_int_equal(it.n_dup, i < 2 ? 0 : 1);
	}
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_message_events"), 2);
	assert_int_equal(q_int(f, "SELECT count(DISTINCT message_id) FROM sms_message_events"), 2);
	util_fmt(exp, sizeof(exp), "delivered|delivered|-|1|%u|0|1", 1u << ST_DELIVERED);
	for (int i = 0; i < 2; i++) {
		summary(f, sids[i], buf, sizeof(buf));
		assert_string_equal(buf, exp);
		sid_text(f,
		         "SELECT duplicate_count || '/' || callback_count FROM sms_messages"
		         " WHERE provider_message_id = ?1",
		         sids[i], buf, sizeof(buf));
		assert_string_equal(buf, "1/2");
	}
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
	do {
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
	} while (next_perm(order, c, 5));
	assert_int_equal(perm, 120);
	assert_string_equal(ref, "delivered|delivered|-|1|15|1|4");
	/* one conflict review row per message, however the events arrived */
	assert_int_equal(
	    q_int(f, "SELECT count(*) FROM review_queue WHERE reason='final_conflict'"), 120);
	assert_int_equal(q_int(f, "SELECT count(DISTINCT message_id) FROM review_queue"), 120);
}

/* Every column a summary row's fold and counters touch, as one string. */
static void full_row(struct fixture *f, const char *sid, char *out, size_t n)
{
	sid_text(f,
	         "SELECT quote(current_status) || '|' || quote(current_raw_status) ||"
	         " '|' || quote(current_error_code) || '|' || quote(current_error_reason)"
	         " || '|' || quote(current_occurred_at) || '|' ||"
	         " quote(current_occurred_ms) || '|' || quote(is_final) || '|' ||"
	         " quote(status_mask) || '|' || quote(final_conflict) || '|' ||"
	         " quote(read_receipt) || '|' || quote(event_count) || '|' ||"
	         " quote(callback_count) || '|' || quote(duplicate_count) || '|' ||"
	         " quote(first_callback_at) || '|' || quote(final_at) || '|' ||"
	         " quote(updated_at) || '|' || quote(recipient_hash) || '|' ||"
	         " quote(destination_country) || '|' || quote(country_source) || '|' ||"
	         " quote(sender_identity) || '|' || quote((SELECT count(*) FROM"
	         " review_queue r WHERE r.message_id = m.id)) || '|' || quote((SELECT"
	         " group_concat(changed_summary, '') FROM (SELECT changed_summary FROM"
	         " sms_message_events e WHERE e.message_id = m.id ORDER BY e.id)))"
	         " FROM sms_messages m WHERE provider_message_id = ?1",
	         sid, out, n);
}

/* A batch folds a message's events in memory and writes its summary row
 * once (sqlite.c, struct msg_slot): for every order of a set with a
 * duplicate, a conflict, a late country and error reasons, the row must be
 * exactly what one transaction per event gives. */
static void test_batch_same_as_one_by_one(void **state)
{
	struct fixture *f = *state;
	const struct {
		enum dlr_status st;
		const char *raw, *code;
		int64_t occurred_ms;
	} set[] = {
	    {ST_ACCEPTED, "queued", NULL, 1700000000000},
	    {ST_SENT, "sent", NULL, 1700000001000},
	    {ST_UNDELIVERED, "undelivered", "30003", 1700000002000},
	    {ST_SENT, "sent", NULL, 1700000001000},
	    {ST_DELIVERED, "delivered", NULL, 1700000003000},
	};
	int order[5] = {0, 1, 2, 3, 4}, c[5] = {0};
	char one[512], batch[512], sid1[32], sid2[32], err[256];
	int perm = 0;
	do {
		struct dlr_event ev[5];
		struct commit_item it[5], *items[5];
		util_fmt(sid1, sizeof(sid1), "SMone%03d", perm);
		util_fmt(sid2, sizeof(sid2), "SMbat%03d", perm);
		for (int pass = 0; pass < 2; pass++) {
			for (int k = 0; k < 5; k++) {
				const char *sid = pass ? sid2 : sid1;
				ev[k] = mk(sid, set[order[k]].st, set[order[k]].raw,
				           set[order[k]].code);
				ev[k].occurred_ms = set[order[k]].occurred_ms;
				ev[k].error_reason =
				    set[order[k]].code ? ER_CARRIER_FILTERED : ER_NONE;
				/* countries arrive with the third and fifth events */
				ev[k].destination_country = k == 2 ? "GB" : k == 4 ? "FR" : NULL;
				ev[k].recipient_hash = k == 0 ? NULL : "abc";
				event_finish(&ev[k]);
				memset(&it[k], 0, sizeof(it[k]));
				it[k].provider = "twilio";
				it[k].events = &ev[k];
				it[k].n_events = 1;
				it[k].raw_payload = (struct iov){"raw=1", 5};
				it[k].received_ms = 1700000100000 + k * 1000;
				it[k].complete = done;
				items[k] = &it[k];
				if (!pass)
					assert_int_equal(
					    store_apply(f->st, &items[k], 1, err, sizeof(err)), 0);
			}
			if (pass)
				assert_int_equal(store_apply(f->st, items, 5, err, sizeof(err)), 0);
		}
		full_row(f, sid1, one, sizeof(one));
		full_row(f, sid2, batch, sizeof(batch));
		assert_string_equal(batch, one);
		perm++;
	} while (next_perm(order, c, 5));
	assert_int_equal(perm, 120);
}

/* The API's writes go through the same batch: the cache is written before
 * one and read again after it (a send may adopt the callback-created row). */
struct api_item {
	struct commit_item it;
	struct store_op op;
	char resp[512];
};

static size_t t_render(struct store_op *op)
{
	return util_fmt(op->resp, op->resp_cap, "%s|%s|%s", op->row.id, op->row.origin,
	                op->row.status);
}

static void api_send(struct api_item *a, const char *idem, const char *pmid)
{
	static const uint8_t enc[4] = {1, 2, 3, 4};
	memset(a, 0, sizeof(*a));
	a->it.kind = CI_API;
	a->it.op = &a->op;
	a->it.provider = "api";
	a->it.received_ms = 1700000101500;
	a->it.complete = done;
	a->op.kind = STORE_OP_SEND;
	a->op.actor = "tok1abcd";
	a->op.actor_role = "admin";
	a->op.render = t_render;
	a->op.resp = a->resp;
	a->op.resp_cap = sizeof(a->resp);
	a->op.send.token_hash = "tokenhash1";
	a->op.send.idem_key = idem;
	a->op.send.request_hash = idem;
	a->op.send.provider = "twilio";
	a->op.send.provider_message_id = pmid;
	a->op.send.recipient_hash = "abc";
	a->op.send.recipient_masked = "+1********23";
	a->op.send.recipient_enc = enc;
	a->op.send.recipient_enc_len = sizeof(enc);
	a->op.send.recipient_key_id = "k1";
	a->op.send.use_case = "otp";
}

static void test_api_item_inside_a_batch(void **state)
{
	struct fixture *f = *state;
	char err[256], one[512], batch[512], origin[2][64];
	const char *sids[2] = {"SMapione", "SMapibat"};

	for (int pass = 0; pass < 2; pass++) {
		struct dlr_event e1 = mk(sids[pass], ST_SENT, "sent", NULL);
		struct dlr_event e2 = mk(sids[pass], ST_DELIVERED, "delivered", NULL);
		struct commit_item i1, i2;
		struct api_item a;
		memset(&i1, 0, sizeof(i1));
		memset(&i2, 0, sizeof(i2));
		i1.provider = i2.provider = "twilio";
		i1.events = &e1;
		i2.events = &e2;
		i1.n_events = i2.n_events = 1;
		i1.raw_payload = i2.raw_payload = (struct iov){"raw=1", 5};
		i1.received_ms = 1700000100000;
		i2.received_ms = 1700000102000;
		i1.complete = i2.complete = done;
		api_send(&a, pass ? "idem-b" : "idem-a", sids[pass]);
		struct commit_item *items[3] = {&i1, &a.it, &i2};
		if (pass) {
			assert_int_equal(store_apply(f->st, items, 3, err, sizeof(err)), 0);
		} else {
			for (int k = 0; k < 3; k++)
				assert_int_equal(store_apply(f->st, &items[k], 1, err, sizeof(err)),
				                 0);
		}
		assert_int_equal(a.op.outcome, STORE_DONE);
		assert_int_equal(i2.n_new, 1);
		/* the send saw the first callback's summary */
		assert_non_null(strstr(a.resp, "|sent"));
		util_fmt(origin[pass], sizeof(origin[pass]), "%lld",
		         (long long)q_int(f, "SELECT count(*) FROM sms_messages"));
	}
	full_row(f, sids[0], one, sizeof(one));
	full_row(f, sids[1], batch, sizeof(batch));
	assert_string_equal(batch, one);
	assert_string_equal(origin[1], "2"); /* adopted, not a second row */
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_messages WHERE origin = 'joined'"), 2);
}

/* ---- opt-outs per canonical sender, provider countries ---- */

static int apply_api(struct fixture *f, struct api_item *a)
{
	char err[256] = "";
	struct commit_item *items[1] = {&a->it};
	int rc = store_apply(f->st, items, 1, err, sizeof(err));
	if (rc)
		fprintf(stderr, "store_apply: %s\n", err);
	return rc;
}

/* The outcome of a send to "abc" from sender under a fresh key. */
static enum store_outcome send_from(struct fixture *f, const char *sender)
{
	static int n;
	char idem[32];
	struct api_item a;
	util_fmt(idem, sizeof(idem), "from-%d", n++);
	api_send(&a, idem, NULL);
	a.op.send.sender_identity = sender;
	assert_int_equal(apply_api(f, &a), 0);
	return a.op.outcome;
}

/* The fault file of the dlrd VFS ($DLRD_TEST_FAULT_FILE, set in main()
 * before the first store opens): "s" fails every sync, "d" only those of
 * the database file (a checkpoint's last step); absent, no fault. */
static char fault_path[64];

static void fault(const char *mode)
{
	FILE *fp = fopen(fault_path, "w");
	assert_non_null(fp);
	assert_int_equal(fputs(mode, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

static void no_fault(void)
{
	assert_int_equal(unlink(fault_path), 0);
}

/* n new messages, "SM<tag><i>", in one batch. */
static void apply_new(struct fixture *f, const char *tag, int n)
{
	char err[256];
	char(*sids)[32] = calloc((size_t)n, sizeof(*sids));
	struct dlr_event *ev = calloc((size_t)n, sizeof(*ev));
	struct commit_item *its = calloc((size_t)n, sizeof(*its));
	struct commit_item **items = calloc((size_t)n, sizeof(*items));

	for (int i = 0; i < n; i++) {
		util_fmt(sids[i], sizeof(sids[i]), "SM%s%05d", tag, i);
		ev[i] = mk(sids[i], ST_SENT, "sent", NULL);
		item_of(&its[i], &ev[i], 1);
		items[i] = &its[i];
	}
	assert_int_equal(store_apply(f->st, items, (size_t)n, err, sizeof(err)), 0);
	free(items);
	free(its);
	free(ev);
	free(sids);
}

static int setup_tiny_wal(void **state)
{
	setenv("DLRD_TEST_CKPT_PAGES", "16", 1); /* the smallest cycle */
	int rc = setup(state);
	unsetenv("DLRD_TEST_CKPT_PAGES");
	return rc;
}

/* The WAL is on file, with frames (not only its 32-byte header). */
static void assert_wal_kept(struct fixture *f)
{
	char path[160];
	struct stat sb;
	util_fmt(path, sizeof(path), "%s-wal", f->path);
	assert_int_equal(stat(path, &sb), 0);
	assert_true(sb.st_size > 32);
}

/* Closes the store, checks the WAL was left for recovery, opens it again:
 * every row is there and the new process syncs again. */
static void restart(struct fixture *f, long long messages)
{
	char err[256] = "";
	store_close(f->st);
	f->st = NULL;
	assert_wal_kept(f);
	assert_int_equal(store_open(&f->cfg, &f->st, err, sizeof(err)), 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_messages"), messages);
	assert_int_equal(q_int(f, "SELECT count(*) FROM pragma_integrity_check WHERE"
	                          " integrity_check <> 'ok'"),
	                 0);
	assert_int_equal(store_sync(f->st, false, err, sizeof(err)), 0);
}

/* A checkpoint copies WAL frames into the database and syncs the database
 * only when it has copied them all; the WAL starts over (or is deleted at
 * close) only after that sync succeeded.  When it fails, pages earlier
 * checkpoints wrote may be lost, and a later sync would succeed without
 * them (fsyncgate): the failure must be final like a failed WAL sync, no
 * checkpoint may run again, and the WAL must be left for the restart. */
static void test_checkpoint_sync_failure_is_final(void **state)
{
	struct fixture *f = *state;
	char err[256];

	/* 400 messages take the WAL past 4 cycles of 16 frames: the writer's
	 * next store_maintain() copies it all back itself, and the
	 * database's sync, its last step, fails */
	apply_new(f, "ck", 400);
	assert_int_equal(store_sync(f->st, false, err, sizeof(err)), 0);
	fault("d");
	store_maintain(f->st);
	no_fault();

	/* committed, but never again acknowledged as durable */
	apply_new(f, "ck2", 10);
	assert_int_equal(store_sync(f->st, false, err, sizeof(err)), DLRD_EIO);
	assert_non_null(strstr(err, "restart dlrd"));
	assert_int_equal(store_sync(f->st, true, err, sizeof(err)), DLRD_EIO);
	apply_new(f, "ck3", 200);
	store_maintain(f->st);
	restart(f, 610);
}

/* After a failed fdatasync of the WAL the kernel may have dropped frames:
 * nothing may copy the WAL back or delete it before the restart recovers
 * from what is on file. */
static void test_wal_kept_after_a_failed_wal_sync(void **state)
{
	struct fixture *f = *state;
	char err[256];

	apply_new(f, "ws", 100);
	fault("s");
	assert_int_equal(store_sync(f->st, false, err, sizeof(err)), DLRD_EIO);
	no_fault();
	assert_int_equal(store_sync(f->st, false, err, sizeof(err)), DLRD_EIO);
	restart(f, 100);
}

static struct dlr_event inbound(const char *id, const char *user, const char *text,
                                int64_t occurred_ms);

/* A STOP that a provider reports as sent to our number without '+' (as
 * Vonage, Plivo, Sinch and Infobip write numbers) refuses a send from the
 * same number written with '+', spaces or dashes, and a START sent to
 * "+..." lifts it: one state per canonical sender (optout_sender_key()).
 * Alphanumeric senders compare case-insensitively. */
static void test_opt_out_by_sender_key(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	char buf[64];

	struct dlr_event stop = inbound("SMk1", "abc", "STOP", 1000);
	stop.sender_identity = "447520650000";
	assert_int_equal(apply1(f, &stop, &it), 0);
	sid_text(f, "SELECT sender_identity || '|' || opted_out FROM sms_opt_outs WHERE ?1", "1",
	         buf, sizeof(buf));
	assert_string_equal(buf, "447520650000|1");
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
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_opt_outs"), 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_opt_out_history WHERE"
	                          " sender_identity = '447520650000'"),
	                 2);
	/* the inbound rows keep the sender as the provider wrote it */
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_inbound_messages WHERE to_identity IN"
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

static void exec_rw(struct fixture *f, const char *sql)
{
	sqlite3 *db;
	char *msg = NULL;
	assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fprintf(stderr, "%s: %s\n", sql, msg ? msg : "?");
	sqlite3_free(msg);
	sqlite3_close(db);
	assert_int_equal(rc, SQLITE_OK);
}

/* Migration 6 re-keys the opt-outs a version-5 database holds: rows of one
 * user whose senders share a key become one, the newest by effective time
 * (ties: the later arrival), as the upsert would have kept it. */
/* A send sees the later of the sender's own state and the state kept
 * without a sender; when both have the same effective time, opted out
 * wins, whichever of the two rows says so. */
static void test_opt_out_tie_counts_as_opted_out(void **state)
{
	struct fixture *f = *state;

	exec_rw(f, "INSERT INTO sms_opt_outs VALUES"
	           " ('abc', '447520650000', 0, 'START', 1, '2026-01-01T00:00:00.000Z',"
	           "  '2026-01-01T00:00:00.000Z'),"
	           " ('abc', '', 1, 'STOP', 2, '2026-01-01T00:00:00.000Z',"
	           "  '2026-01-01T00:00:00.000Z')");
	assert_int_equal(send_from(f, "+447520650000"), STORE_OPTED_OUT);
	exec_rw(f, "UPDATE sms_opt_outs SET opted_out = 1 - opted_out");
	assert_int_equal(send_from(f, "+447520650000"), STORE_OPTED_OUT);
	/* no tie: the later one decides */
	exec_rw(f, "UPDATE sms_opt_outs SET effective_at = '2026-01-01T00:00:01.000Z'"
	           " WHERE sender_identity = ''");
	assert_int_equal(send_from(f, "+447520650000"), STORE_DONE);
	assert_int_equal(send_from(f, "OtherSender"), STORE_DONE);
}

static void test_migration_rekeys_opt_outs(void **state)
{
	struct fixture *f = *state;
	char err[256] = "", buf[512];

	store_close(f->st);
	f->st = NULL;
	exec_rw(f, "DELETE FROM schema_migrations WHERE version = 6;"
	           "INSERT INTO sms_opt_outs VALUES"
	           /* u1: three spellings; the START at :02 is the newest */
	           " ('u1', '447520650000', 1, 'STOP', 2, '2026-01-01T00:00:01.000Z',"
	           "  '2026-01-01T00:00:10.000Z'),"
	           " ('u1', '+447520650000', 0, 'START', 1, '2026-01-01T00:00:02.000Z',"
	           "  '2026-01-01T00:00:09.000Z'),"
	           " ('u1', '+44 7520 650000', 1, 'STOP', 3, '2026-01-01T00:00:00.000Z',"
	           "  '2026-01-01T00:00:11.000Z'),"
	           /* u2: one row, only re-keyed; an alphanumeric pair */
	           " ('u2', '+447520650000', 1, 'STOP', 4, '2026-01-01T00:00:00.000Z',"
	           "  '2026-01-01T00:00:00.000Z'),"
	           " ('u2', 'AcmeInc', 0, 'START', 5, '2026-01-01T00:00:00.000Z',"
	           "  '2026-01-01T00:00:00.000Z'),"
	           " ('u2', 'ACMEINC', 1, 'STOP', 6, '2026-01-01T00:00:05.000Z',"
	           "  '2026-01-01T00:00:05.000Z'),"
	           /* u3: the same effective time: the later arrival wins */
	           " ('u3', '15005550006', 0, 'START', 8, '2026-01-01T00:00:00.000Z',"
	           "  '2026-01-01T00:00:06.000Z'),"
	           " ('u3', '+15005550006', 1, 'STOP', 7, '2026-01-01T00:00:00.000Z',"
	           "  '2026-01-01T00:00:05.000Z'),"
	           /* u4: no sender stays '' */
	           " ('u4', '', 1, 'STOP', 9, '2026-01-01T00:00:00.000Z',"
	           "  '2026-01-01T00:00:00.000Z');"
	           "INSERT INTO sms_opt_out_history (recipient_hash, sender_identity, action,"
	           " keyword, inbound_id, effective_at, received_at) VALUES"
	           " ('u1', '+447520650000', 'opt_in', 'START', 1, '2026-01-01T00:00:02.000Z',"
	           "  '2026-01-01T00:00:09.000Z'),"
	           " ('u1', '447520650000', 'opt_out', 'STOP', 2, '2026-01-01T00:00:01.000Z',"
	           "  '2026-01-01T00:00:10.000Z');");
	assert_int_equal(store_open(&f->cfg, &f->st, err, sizeof(err)), 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM schema_migrations"), 13);
	sid_text(f,
	         "SELECT group_concat(r, ' ') FROM (SELECT recipient_hash || ':' ||"
	         " sender_identity || ':' || opted_out || ':' || inbound_id AS r"
	         " FROM sms_opt_outs WHERE ?1 ORDER BY 1)",
	         "1", buf, sizeof(buf));
	assert_string_equal(buf, "u1:447520650000:0:1 u2:447520650000:1:4 u2:acmeinc:1:6 "
	                         "u3:15005550006:0:8 u4::1:9");
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_opt_out_history WHERE"
	                          " sender_identity = '447520650000'"),
	                 2);
	/* and the sends see them */
	assert_int_equal(send_from(f, "+447520650000"), STORE_DONE); /* "abc" never opted out */
	exec_rw(f, "UPDATE sms_opt_outs SET recipient_hash = 'abc' WHERE recipient_hash = 'u2'");
	assert_int_equal(send_from(f, "+44 7520 650000"), STORE_OPTED_OUT);
	assert_int_equal(send_from(f, "Acmeinc"), STORE_OPTED_OUT);
}

/* A country the provider gives replaces one taken from the number, whether
 * the send or the callback came first (or the PATCH joined them), in one
 * batch or several; the app's own country stays. */
static void test_provider_country_either_order(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	struct api_item a;
	char buf[64];
	const char *q = "SELECT destination_country || '|' || country_source FROM sms_messages"
	                " WHERE provider_message_id = ?1";

	/* send first (country from the number), then the callback */
	api_send(&a, "c-1", "SMc1");
	a.op.send.number_country = "US";
	assert_int_equal(apply_api(f, &a), 0);
	sid_text(f, q, "SMc1", buf, sizeof(buf));
	assert_string_equal(buf, "US|number");
	struct dlr_event e1 = mk("SMc1", ST_DELIVERED, "delivered", NULL);
	e1.destination_country = "CA";
	assert_int_equal(apply1(f, &e1, &it), 0);
	sid_text(f, q, "SMc1", buf, sizeof(buf));
	assert_string_equal(buf, "CA|provider");

	/* the callback first, then the send */
	struct dlr_event e2 = mk("SMc2", ST_DELIVERED, "delivered", NULL);
	e2.destination_country = "CA";
	assert_int_equal(apply1(f, &e2, &it), 0);
	api_send(&a, "c-2", "SMc2");
	a.op.send.number_country = "US";
	assert_int_equal(apply_api(f, &a), 0);
	sid_text(f, q, "SMc2", buf, sizeof(buf));
	assert_string_equal(buf, "CA|provider");

	/* a callback-created row with the number's country, then the
	 * provider's, in one batch and in two, in both orders */
	for (int k = 0; k < 4; k++) {
		char sid[16], err[256];
		util_fmt(sid, sizeof(sid), "SMc3%d", k);
		struct dlr_event num = mk(sid, ST_SENT, "sent", NULL);
		num.destination_country = "US";
		num.country_from_number = true;
		struct dlr_event prov = mk(sid, ST_DELIVERED, "delivered", NULL);
		prov.destination_country = "CA";
		struct dlr_event ev[2] = {k & 1 ? prov : num, k & 1 ? num : prov};
		if (k & 2) {
			item_of(&it, ev, 2);
			struct commit_item *items[1] = {&it};
			assert_int_equal(store_apply(f->st, items, 1, err, sizeof(err)), 0);
		} else {
			assert_int_equal(apply1(f, &ev[0], &it), 0);
			assert_int_equal(apply1(f, &ev[1], &it), 0);
		}
		sid_text(f, q, sid, buf, sizeof(buf));
		assert_string_equal(buf, "CA|provider");
	}

	/* the app's country stays */
	api_send(&a, "c-4", "SMc4");
	a.op.send.country = "FR";
	a.op.send.number_country = "US";
	assert_int_equal(apply_api(f, &a), 0);
	struct dlr_event e4 = mk("SMc4", ST_DELIVERED, "delivered", NULL);
	e4.destination_country = "CA";
	assert_int_equal(apply1(f, &e4, &it), 0);
	sid_text(f, q, "SMc4", buf, sizeof(buf));
	assert_string_equal(buf, "FR|app");
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
	assert_int_equal(q_int(f, "SELECT count(*) FROM review_queue WHERE reason='unknown_status'"
	                          " AND raw_status='weird' AND event_id IS NOT NULL"),
	                 1);
	assert_int_equal(q_int(f,
	                       "SELECT count(*) FROM review_queue WHERE "
	                       "reason='unusable_payload' AND raw_payload = CAST('raw=1' AS BLOB)"),
	                 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_message_events WHERE status='unknown'"),
	                 1);
}

static void test_batch_is_atomic(void **state)
{
	struct fixture *f = *state;
	char err[256];
	struct dlr_event a = mk("SMbatch1", ST_SENT, "sent", NULL);
	struct dlr_event b = mk("SMbatch2", ST_SENT, "sent", NULL);
	struct commit_item i1, i2;
	memset(&i1, 0, sizeof(i1));
	memset(&i2, 0, sizeof(i2));
	i1.provider = i2.provider = "twilio";
	i1.events = &a;
	i2.events = &b;
	i1.n_events = i2.n_events = 1;
	i1.raw_payload = i2.raw_payload = (struct iov){"x", 1};
	i1.complete = i2.complete = done;
	/* a second event with an id longer than any column allows cannot fail
	 * in SQLite, so make the second item fail by a NULL provider message id
	 * on a status event (NOT NULL constraint) */
	b.provider_message_id = NULL;
	struct commit_item *items[2] = {&i1, &i2};
	assert_int_equal(store_apply(f->st, items, 2, err, sizeof(err)), DLRD_EIO);
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_messages WHERE provider_message_id = "
	                          "'SMbatch1'"),
	                 0);
	/* the store is usable afterwards */
	items[1] = &i1;
	assert_int_equal(store_apply(f->st, items, 1, err, sizeof(err)), 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_message_events WHERE "
	                          "provider_message_id = 'SMbatch1'"),
	                 1);
}

/* The WAL's checkpoint sequence number (its header, bytes 12-15): one more
 * each time the WAL starts over. */
static unsigned wal_cycles(struct fixture *f)
{
	char path[160];
	unsigned char h[16];
	util_fmt(path, sizeof(path), "%s-wal", f->path);
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	assert_int_equal(fread(h, 1, sizeof(h), fp), sizeof(h));
	fclose(fp);
	return (unsigned)h[12] << 24 | (unsigned)h[13] << 16 | (unsigned)h[14] << 8 | h[15];
}

static int setup_short_wal(void **state)
{
	setenv("DLRD_TEST_CKPT_PAGES", "1600", 1);
	int rc = setup(state);
	unsetenv("DLRD_TEST_CKPT_PAGES");
	return rc;
}

static int setup_short_wal_slow_disk(void **state)
{
	setenv("DLRD_TEST_CKPT_DELAY_MS", "40", 1);
	int rc = setup_short_wal(state);
	unsetenv("DLRD_TEST_CKPT_DELAY_MS");
	return rc;
}

/* Writes without a pause: 800 batches of 40 new messages, each batch
 * followed by store_maintain() as the writer does.  Returns how often the
 * WAL started over, and checks that nothing was lost on the way. */
static unsigned constant_load(struct fixture *f)
{
	char err[256], sids[40][32];
	struct dlr_event ev[40];
	struct commit_item its[40], *items[40];
	unsigned first = 0;

	for (int b = 0; b < 800; b++) {
		for (int i = 0; i < 40; i++) {
			util_fmt(sids[i], sizeof(sids[i]), "SMwal%05d%02d", b, i);
			ev[i] = mk(sids[i], ST_SENT, "sent", NULL);
			memset(&its[i], 0, sizeof(its[i]));
			its[i].provider = "twilio";
			its[i].events = &ev[i];
			its[i].n_events = 1;
			its[i].raw_payload = (struct iov){"raw=1", 5};
			its[i].received_ms = 1700000000000;
			its[i].complete = done;
			items[i] = &its[i];
		}
		assert_int_equal(store_apply(f->st, items, 40, err, sizeof(err)), 0);
		store_maintain(f->st); /* as the writer does, after each batch */
		if (b == 0)
			first = wal_cycles(f);
	}
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_message_events"), 800 * 40);
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_messages"), 800 * 40);
	assert_int_equal(q_int(f, "SELECT count(*) FROM pragma_integrity_check WHERE"
	                          " integrity_check <> 'ok'"),
	                 0);
	return wal_cycles(f) - first;
}

/* Under writes without a pause the WAL still starts over again and again
 * (the checkpointer copies most of it, the writer the rest between
 * batches). */
static void test_wal_starts_over_under_constant_load(void **state)
{
	assert_true(constant_load(*state) >= 2);
}

/* The same when the checkpointer is slower than the writer (a slow disk:
 * each checkpoint takes 40 ms more): it must not chase the writer for ever,
 * and the WAL must not grow without bound. */
static void test_wal_starts_over_with_a_slow_checkpointer(void **state)
{
	struct fixture *f = *state;
	char path[160];
	struct stat sb;

	assert_true(constant_load(f) >= 2);
	/* the WAL file keeps the largest size it had: at most 4 cycles' worth
	 * (the writer copies it all then) plus a batch */
	util_fmt(path, sizeof(path), "%s-wal", f->path);
	assert_int_equal(stat(path, &sb), 0);
	assert_true(sb.st_size <= 32 + (4 * 1600 + 200) * (24 + 4096));
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

/* A STOP and a START with the same effective time in one batch: the later
 * arrival decides, in either order (test_store_pg.c checks PostgreSQL gives
 * the same answer). */
static void test_opt_out_same_time_later_arrival_wins(void **state)
{
	struct fixture *f = *state;
	static const char *const users[2] = {"same-a", "same-b"};
	char err[256];

	for (int order = 0; order < 2; order++) {
		static const char *const ids[2][2] = {{"SMst1", "SMst2"}, {"SMst3", "SMst4"}};
		struct dlr_event stop = inbound(ids[order][0], users[order], "STOP", 5000);
		struct dlr_event start = inbound(ids[order][1], users[order], "START", 5000);
		struct commit_item it[2];
		struct dlr_event *ev[2] = {order ? &start : &stop, order ? &stop : &start};
		struct commit_item *items[2] = {&it[0], &it[1]};
		for (int i = 0; i < 2; i++) {
			memset(&it[i], 0, sizeof(it[i]));
			it[i].provider = "twilio";
			it[i].events = ev[i];
			it[i].n_events = 1;
			it[i].raw_payload = (struct iov){"raw=1", 5};
			it[i].received_ms = 1700000000000;
			it[i].complete = done;
		}
		assert_int_equal(store_apply(f->st, items, 2, err, sizeof(err)), 0);
	}
	/* STOP then START: opted in; START then STOP: opted out */
	assert_int_equal(q_int(f, "SELECT opted_out FROM sms_opt_outs WHERE recipient_hash ="
	                          " 'same-a'"),
	                 0);
	assert_int_equal(q_int(f, "SELECT opted_out FROM sms_opt_outs WHERE recipient_hash ="
	                          " 'same-b'"),
	                 1);
	/* the same through two providers (test_store_pg.c checks PostgreSQL
	 * gives this too) */
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
		struct dlr_event *ev[2] = {order ? &start : &stop, order ? &stop : &start};
		struct commit_item *items[2] = {&it[0], &it[1]};
		for (int i = 0; i < 2; i++) {
			memset(&it[i], 0, sizeof(it[i]));
			it[i].provider = ev[i]->provider;
			it[i].events = ev[i];
			it[i].n_events = 1;
			it[i].raw_payload = (struct iov){"raw=1", 5};
			it[i].received_ms = 1700000000000;
			it[i].complete = done;
		}
		assert_int_equal(store_apply(f->st, items, 2, err, sizeof(err)), 0);
	}
	assert_int_equal(q_int(f, "SELECT opted_out FROM sms_opt_outs WHERE recipient_hash ="
	                          " 'same-c'"),
	                 0);
	assert_int_equal(q_int(f, "SELECT opted_out FROM sms_opt_outs WHERE recipient_hash ="
	                          " 'same-d'"),
	                 1);
}

static void test_inbound_and_opt_out(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
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
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_inbound_messages"), 3);
	assert_int_equal(q_int(f, "SELECT retry_count FROM sms_inbound_messages WHERE "
	                          "provider_message_id='SMin1'"),
	                 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_inbound_messages WHERE keyword='none'"),
	                 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_opt_out_history"), 2);
	/* kept under the sender's canonical key (optout_sender_key()) */
	assert_int_equal(q_int(f, "SELECT opted_out FROM sms_opt_outs WHERE recipient_hash="
	                          "'userhash' AND sender_identity='15005550006'"),
	                 0);
	/* inbound never enters a delivery timeline */
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_message_events"), 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_messages"), 0);
}

static void test_error_reason_stored(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	struct dlr_event e = mk("SMerr", ST_UNDELIVERED, "undelivered", "30003");
	e.error_reason = ER_UNREACHABLE;
	assert_int_equal(apply1(f, &e, &it), 0);
	struct dlr_event late = mk("SMerr", ST_SENT, "sent", NULL);
	assert_int_equal(apply1(f, &late, &it), 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_messages WHERE current_status="
	                          "'undelivered' AND current_error_reason='unreachable'"),
	                 1);
	assert_int_equal(q_int(f, "SELECT changed_summary FROM sms_message_events WHERE "
	                          "status='sent'"),
	                 0);
}

/* Runs sql on a read-write connection of the test's own. */
static void q_exec(struct fixture *f, const char *sql)
{
	sqlite3 *db;
	char *e = NULL;
	assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, &e) != SQLITE_OK)
		fail_msg("%s: %s", sql, e);
	sqlite3_close(db);
}

#define TEST_HASH_KEY "store-test-hash-key"

/* The id and dedup key the current dlrd gives a Telnyx status event of
 * recipient raw under webhook event_id. */
static void telnyx_now(const char *event_id, const char *raw, char *id, size_t cap, char key[65])
{
	char tag[PRIVACY_TAG_LEN + 1];
	struct dlr_event e;
	privacy_tag(raw, strlen(raw), tag);
	util_fmt(id, cap, "%s:%s", event_id, tag);
	memset(&e, 0, sizeof(e));
	e.kind = EV_STATUS;
	e.provider = "telnyx";
	e.provider_event_id = id;
	event_finish(&e);
	memcpy(key, e.dedup_key, 65);
}

/* first_callback_at|final_at|updated_at of message SMrt is want. */
static void expect_receipt_times(struct fixture *f, const char *want)
{
	char got[128];
	sid_text(f,
	         "SELECT first_callback_at || '|' || final_at || '|' || updated_at"
	         " FROM sms_messages WHERE provider_message_id = ?1",
	         "SMrt", got, sizeof(got));
	assert_string_equal(got, want);
}

/* Receipt times do not follow the order in which a batch's requests are
 * applied (which only roughly follows their received_ms), as on PostgreSQL:
 * first_callback_at and final_at are the earliest, updated_at the latest.
 * Before, SQLite kept the first applied and the last applied. */
/* A search by provider message id alone (support has the id a provider
 * gave, not always which provider) finds its row through the (provider,
 * provider_message_id) index, not by reading every message newest first
 * until the oldest: that took 1.6 s per 2 million messages. */
/* The query plan of a search (EXPLAIN QUERY PLAN), "; "-separated. */
static void search_plan(struct fixture *f, const struct store_query *q, char *plan, size_t size)
{
	char sql[4096], explain[4200];
	size_t pn = 0;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	plan[0] = '\0';
	assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(store__sqlite_search_sql(db, q, sql, sizeof(sql)), 0);
	util_fmt(explain, sizeof(explain), "EXPLAIN QUERY PLAN %s", sql);
	assert_int_equal(sqlite3_prepare_v2(db, explain, -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW)
		pn += util_fmt(plan + pn, size - pn, "%s; ",
		               (const char *)sqlite3_column_text(st, 3));
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void test_search_by_pmid_uses_an_index(void **state)
{
	struct fixture *f = *state;
	struct store_query q;
	char plan[2048];

	memset(&q, 0, sizeof(q));
	q.final = -1;
	q.limit = 51;
	q.provider_message_id = "SM0123456789abcdef0123456789abcdef";
	search_plan(f, &q, plan, sizeof(plan));
	if (!strstr(plan, "USING INDEX sms_messages_provider_id") ||
	    strstr(plan, "SCAN sms_messages"))
		fail_msg("search by provider message id: %s", plan);

	/* the product action's id alone (a user or order id, its type not
	 * given): an index of its own, not a read of every message */
	memset(&q, 0, sizeof(q));
	q.final = -1;
	q.limit = 51;
	q.action_id = "user-42";
	search_plan(f, &q, plan, sizeof(plan));
	if (!strstr(plan, "USING INDEX sms_messages_action_id") ||
	    strstr(plan, "SCAN sms_messages"))
		fail_msg("search by action id: %s", plan);
}

/* A search by provider, the commonest filter, reads the newest messages
 * through the id and stops after a page.  It used to look the provider up
 * in the (provider, provider_message_id) index and sort all of that
 * provider's messages for every page: 0.6 s per 300,000 messages, minutes
 * on a production database, for the first page and every next one.  A
 * provider of few messages is still read through that index (search_index():
 * the id's order would read every message to find there are no more). */
static void test_search_by_provider_reads_a_page(void **state)
{
	struct fixture *f = *state;
	struct store_query q;
	char plan[2048];

	memset(&q, 0, sizeof(q));
	q.final = -1;
	q.limit = 51;
	q.provider = "twilio";
	search_plan(f, &q, plan, sizeof(plan));
	if (!strstr(plan, "USING INDEX sms_messages_provider_id (provider=?)"))
		fail_msg("search by a provider of few messages: %s", plan);

	exec_rw(f, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
	           " WHERE i < 10000) INSERT INTO sms_messages (id, provider,"
	           " provider_message_id, origin, current_status, created_at, updated_at)"
	           " SELECT printf('01900000-0000-7000-8000-%012d', i), 'twilio', 'SM' || i,"
	           " 'callback', 'delivered', '2026-11-27T15:10:00.000Z',"
	           " '2026-11-27T15:10:00.000Z' FROM n");
	search_plan(f, &q, plan, sizeof(plan));
	if (strstr(plan, "TEMP B-TREE") || !strstr(plan, "sqlite_autoindex_sms_messages_1"))
		fail_msg("search by provider: %s", plan);

	/* the next page, and with another filter */
	q.before_id = "01900000-0000-7000-8000-000000000000";
	q.template_key = "login_code";
	search_plan(f, &q, plan, sizeof(plan));
	if (strstr(plan, "TEMP B-TREE") || !strstr(plan, "sqlite_autoindex_sms_messages_1"))
		fail_msg("search by provider, next page: %s", plan);

	/* with a provider message id the unique index still finds the row */
	memset(&q, 0, sizeof(q));
	q.final = -1;
	q.limit = 51;
	q.provider = "twilio";
	q.provider_message_id = "SM0123456789abcdef0123456789abcdef";
	search_plan(f, &q, plan, sizeof(plan));
	if (!strstr(plan, "USING INDEX sms_messages_provider_id") ||
	    strstr(plan, "SCAN sms_messages"))
		fail_msg("search by provider and provider message id: %s", plan);
}

/* "Stuck without a final state" (stuck_for) and final=false read the open
 * messages alone, newest first, and stop after a page.  They used to read
 * every message newest first and skip the final ones: most messages are
 * final, so a page of stuck ones read a hundred or a thousand times its
 * size, and the last page the whole table; the open-messages index was
 * keyed by created_at, which cannot give the id order without a sort. */
static void test_search_open_reads_open_messages(void **state)
{
	struct fixture *f = *state;
	struct store_query q;
	char plan[2048];

	memset(&q, 0, sizeof(q));
	q.final = -1;
	q.limit = 51;
	q.stuck_before = "2026-11-27T14:10:00.000Z";
	search_plan(f, &q, plan, sizeof(plan));
	if (!strstr(plan, "USING INDEX sms_messages_open") || strstr(plan, "TEMP B-TREE"))
		fail_msg("stuck search: %s", plan);

	q.before_id = "01900000-0000-7000-8000-000000000000"; /* the next page */
	q.country = "GB";
	search_plan(f, &q, plan, sizeof(plan));
	if (!strstr(plan, "USING INDEX sms_messages_open") || strstr(plan, "TEMP B-TREE"))
		fail_msg("stuck search, next page: %s", plan);

	memset(&q, 0, sizeof(q));
	q.final = 0;
	q.limit = 51;
	search_plan(f, &q, plan, sizeof(plan));
	if (!strstr(plan, "USING INDEX sms_messages_open") || strstr(plan, "TEMP B-TREE"))
		fail_msg("final=false search: %s", plan);
}

/* The join of a callback-created message into its send (PATCH, the
 * writer's W_MOVE_REVIEW in sqlite_api.c) moves the message's review
 * items, and migration 8's trigger their audit rows: both found through
 * an index.  Review items had none by message, so every such PATCH read
 * the whole review queue inside the writer's transaction while callbacks
 * waited.  Counted as rows stepped through by full scans. */
static void test_join_moves_review_items_by_index(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	exec_rw(f, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
	           " WHERE i < 2000) INSERT INTO review_queue (created_at, provider, reason,"
	           " message_id, raw_payload) SELECT '2026-11-27T15:10:00.000Z', 'twilio',"
	           " 'unknown_status', printf('01900000-0000-7000-8000-%012d', i % 100), x''"
	           " FROM n;"
	           "INSERT INTO audit_log (at, actor, actor_role, action, message_id, review_id,"
	           " reason) SELECT created_at, 'a', 'admin', 'review_resolve', message_id, id,"
	           " 'seen' FROM review_queue;");
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "UPDATE review_queue SET message_id = ?2"
	                                    " WHERE message_id = ?1",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	sqlite3_bind_text(st, 1, "01900000-0000-7000-8000-000000000007", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, "01900000-0000-7000-8000-000000000999", -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	assert_int_equal(sqlite3_changes(db), 20);
	int scanned = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_FULLSCAN_STEP, 0);
	sqlite3_finalize(st);
	/* the trigger's statement (its steps are not counted above) */
	char plan[512] = "";
	assert_int_equal(
	    sqlite3_prepare_v2(db,
	                       "EXPLAIN QUERY PLAN UPDATE audit_log SET message_id = ?1"
	                       " WHERE review_id = ?2 AND message_id IS ?3",
	                       -1, &st, NULL),
	    SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW)
		util_strlcpy(plan, (const char *)sqlite3_column_text(st, 3), sizeof(plan));
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (!strstr(plan, "SEARCH audit_log USING INDEX"))
		fail_msg("the trigger moves audit rows: %s", plan);
	/* the audit rows followed their items */
	assert_int_equal(q_int(f, "SELECT count(*) FROM audit_log WHERE message_id ="
	                          " '01900000-0000-7000-8000-000000000999'"),
	                 20);
	if (scanned != 0)
		fail_msg("moving 20 review items stepped through %d rows of full scans", scanned);
}

/* Messages created (or updated) since a time: newest first is the id's
 * order, so SQLite read the id index and skipped the rows out of range;
 * when the range holds less than a page (the last hour's messages of a
 * quiet provider, or the last page of any range) nothing told it to stop,
 * and it read every older message, the whole table.  A range that holds
 * few rows is read through its time index and sorted; a big one keeps the
 * id's order (a sort of the whole range for every page costs more). */
static void test_search_recent_reads_the_range(void **state)
{
	struct fixture *f = *state;
	struct store_query q;
	char plan[2048];

	/* 12,000 messages an hour apart before the range, 20 in it */
	exec_rw(f, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
	           " WHERE i < 12020) INSERT INTO sms_messages (id, provider,"
	           " provider_message_id, origin, current_status, created_at, updated_at)"
	           " SELECT printf('01900000-0000-7000-8000-%012d', i), 'twilio', 'SM' || i,"
	           " 'callback', 'delivered', t, t FROM (SELECT i, strftime('%Y-%m-%dT%H:%M:%fZ',"
	           " 1700000000 + i * 3600, 'unixepoch') AS t FROM n)");
	memset(&q, 0, sizeof(q));
	q.final = -1;
	q.limit = 51;
	q.created_from = "2025-03-28T22:30:00.000Z"; /* after the 12,000th */
	search_plan(f, &q, plan, sizeof(plan));
	if (!strstr(plan, "USING INDEX sms_messages_created (created_at>?)"))
		fail_msg("messages created since: %s", plan);

	memset(&q, 0, sizeof(q));
	q.final = -1;
	q.limit = 51;
	q.updated_from = "2025-03-28T22:30:00.000Z";
	q.provider = "twilio";
	search_plan(f, &q, plan, sizeof(plan));
	if (!strstr(plan, "USING INDEX sms_messages_updated (updated_at>?)"))
		fail_msg("messages updated since: %s", plan);

	/* a range of more rows than that keeps the id's order */
	memset(&q, 0, sizeof(q));
	q.final = -1;
	q.limit = 51;
	q.created_from = "2023-01-01T00:00:00.000Z";
	search_plan(f, &q, plan, sizeof(plan));
	if (strstr(plan, "TEMP B-TREE"))
		fail_msg("messages created since, a big range: %s", plan);

	/* and the answer is the range's, newest first */
	struct arena ar;
	struct store_message *rows;
	size_t n;
	char err[256];
	arena_init(&ar, NULL, 0);
	q.created_from = "2025-03-28T22:30:00.000Z";
	q.limit = 50;
	assert_int_equal(store_search(f->st, &ar, &q, &rows, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 20);
	assert_string_equal(rows[0].id, "01900000-0000-7000-8000-000000012020");
	assert_string_equal(rows[19].id, "01900000-0000-7000-8000-000000012001");
	q.before_id = rows[9].id;
	assert_int_equal(store_search(f->st, &ar, &q, &rows, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 10);
	assert_string_equal(rows[0].id, "01900000-0000-7000-8000-000000012010");
	arena_fini(&ar);
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
	exec_rw(f, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6)"
	           " INSERT INTO review_queue (created_at, provider, reason, raw_payload)"
	           " SELECT '2026-11-27T15:10:00.000Z', 'twilio', 'unusable_payload',"
	           " zeroblob(1048576) FROM n");
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
	exec_rw(f, "INSERT INTO sms_messages (id, provider, provider_message_id, origin,"
	           " current_status, created_at, updated_at) VALUES"
	           " ('01900000-0000-7000-8000-00000000abcd', 'twilio', 'SMbig', 'callback',"
	           " 'sent', '2026-11-27T15:10:00.000Z', '2026-11-27T15:10:00.000Z');"
	           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6)"
	           " INSERT INTO sms_message_events (message_id, provider, provider_message_id,"
	           " dedup_key, status, is_final, changed_summary, raw_payload, received_at)"
	           " SELECT '01900000-0000-7000-8000-00000000abcd', 'twilio', 'SMbig', 'k' || i,"
	           " 'sent', 0, 1, zeroblob(1048576), '2026-11-27T15:10:00.000Z' FROM n");
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

static void test_receipt_times_any_order(void **state)
{
	struct fixture *f = *state;
	struct dlr_event sent = mk("SMrt", ST_SENT, "sent", NULL);
	struct dlr_event dlvd = mk("SMrt", ST_DELIVERED, "delivered", NULL);
	struct dlr_event sent2 = sent;
	struct dlr_event queued = mk("SMrt", ST_ACCEPTED, "queued", NULL);
	struct commit_item a, b;
	struct commit_item *items[2] = {&a, &b};
	char err[256];

	/* one batch: "sent" received at .500 applied before "delivered"
	 * received at .300 */
	item_of(&a, &sent, 1);
	a.received_ms = 1700000000500;
	item_of(&b, &dlvd, 1);
	b.received_ms = 1700000000300;
	assert_int_equal(store_apply(f->st, items, 2, err, sizeof(err)), 0);
	expect_receipt_times(f, "2023-11-14T22:13:20.300Z|2023-11-14T22:13:20.300Z|"
	                        "2023-11-14T22:13:20.500Z");
	/* a retry whose clock reads earlier moves nothing back */
	item_of(&a, &sent2, 1);
	a.received_ms = 1700000000100;
	assert_int_equal(store_apply(f->st, items, 1, err, sizeof(err)), 0);
	assert_int_equal(a.n_dup, 1);
	expect_receipt_times(f, "2023-11-14T22:13:20.300Z|2023-11-14T22:13:20.300Z|"
	                        "2023-11-14T22:13:20.500Z");
	/* a new event received earlier still is the first callback */
	item_of(&a, &queued, 1);
	a.received_ms = 1700000000200;
	assert_int_equal(store_apply(f->st, items, 1, err, sizeof(err)), 0);
	expect_receipt_times(f, "2023-11-14T22:13:20.200Z|2023-11-14T22:13:20.300Z|"
	                        "2023-11-14T22:13:20.500Z");
	/* a later batch moves updated_at forward, with a new event and with a
	 * duplicate alike */
	struct dlr_event accepted = mk("SMrt", ST_ACCEPTED, "accepted", NULL);
	struct dlr_event sent3 = sent;
	item_of(&a, &accepted, 1);
	a.received_ms = 1700000000900;
	assert_int_equal(store_apply(f->st, items, 1, err, sizeof(err)), 0);
	assert_int_equal(a.n_new, 1);
	expect_receipt_times(f, "2023-11-14T22:13:20.200Z|2023-11-14T22:13:20.300Z|"
	                        "2023-11-14T22:13:20.900Z");
	item_of(&a, &sent3, 1);
	a.received_ms = 1700000000950;
	assert_int_equal(store_apply(f->st, items, 1, err, sizeof(err)), 0);
	assert_int_equal(a.n_dup, 1);
	expect_receipt_times(f, "2023-11-14T22:13:20.200Z|2023-11-14T22:13:20.300Z|"
	                        "2023-11-14T22:13:20.950Z");
}

/* Migration 8: an audit row whose review item moved to a joined send
 * before the trigger existed is mended; later moves carry it along. */
static void test_migration_8_audit_follows_review(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";

	store_close(f->st);
	f->st = NULL;
	exec_rw(f, "DROP TRIGGER review_queue_moved;"
	           "DELETE FROM schema_migrations WHERE version = 8;"
	           "INSERT INTO review_queue (id, created_at, provider, reason, message_id)"
	           " VALUES (1, 't', 'twilio', 'unknown_status', 'send-1'),"
	           " (2, 't', 'twilio', 'unknown_status', 'other');"
	           "INSERT INTO audit_log (at, actor, actor_role, action, message_id, review_id,"
	           " reason) VALUES ('t', 'a', 'admin', 'review_resolve', 'gone-1', 1, 'x'),"
	           " ('t', 'a', 'admin', 'review_resolve', 'other', 2, 'x'),"
	           " ('t', 'a', 'admin', 'reveal', 'gone-1', NULL, 'x');");
	assert_int_equal(store_open(&f->cfg, &f->st, err, sizeof(err)), 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM audit_log WHERE message_id = 'send-1'"), 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM audit_log WHERE message_id = 'other'"), 1);
	/* a reveal is not a review item's: left as it was */
	assert_int_equal(q_int(f, "SELECT count(*) FROM audit_log WHERE message_id = 'gone-1'"), 1);
	exec_rw(f, "UPDATE review_queue SET message_id = 'send-2' WHERE id = 2");
	assert_int_equal(q_int(f, "SELECT count(*) FROM audit_log WHERE message_id = 'send-2'"), 1);
}

/* Migration 9 on a database the release before it wrote (893c4a0: review
 * items without dedup_key or retry_count): the items stay as they were,
 * counted 0 times resent and keyless; an unusable payload from then on is
 * one keyed item however often it is resent, and a keyless one (no hash
 * key) is an item each time, as before.  A second open changes nothing. */
static void test_migration_9_review_dedup(void **state)
{
	struct fixture *f = *state;
	struct commit_item it;
	struct dlr_event u;
	char err[256] = "";

	store_close(f->st);
	f->st = NULL;
	exec_rw(f, "DROP INDEX review_queue_dedup;"
	           "ALTER TABLE review_queue DROP COLUMN retry_count;"
	           "ALTER TABLE review_queue DROP COLUMN dedup_key;"
	           "DELETE FROM schema_migrations WHERE version = 9;"
	           "INSERT INTO review_queue (id, created_at, provider, reason, detail,"
	           " raw_payload, resolved_at) VALUES"
	           " (1, 't1', 'twilio', 'unusable_payload', 'no usable MessageSid',"
	           " CAST('raw=1' AS BLOB), NULL),"
	           " (2, 't2', 'twilio', 'unusable_payload', 'no usable MessageSid',"
	           " CAST('raw=1' AS BLOB), 't3');");
	assert_int_equal(store_open(&f->cfg, &f->st, err, sizeof(err)), 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM schema_migrations WHERE version = 9"), 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM review_queue WHERE dedup_key IS NULL"
	                          " AND retry_count = 0 AND raw_payload = CAST('raw=1' AS BLOB)"),
	                 2);
	assert_int_equal(q_int(f, "SELECT count(*) FROM review_queue WHERE id = 2"
	                          " AND resolved_at = 't3'"),
	                 1);

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
	u.dedup_key[0] = '\0';
	assert_int_equal(apply1(f, &u, &it), 0);
	assert_int_equal(it.n_review, 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM review_queue"), 4);
	assert_int_equal(q_int(f, "SELECT retry_count FROM review_queue"
	                          " WHERE dedup_key = 'k-after-upgrade'"),
	                 2);

	store_close(f->st);
	f->st = NULL;
	assert_int_equal(store_open(&f->cfg, &f->st, err, sizeof(err)), 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM schema_migrations"), 13);
	assert_int_equal(q_int(f, "SELECT count(*) FROM review_queue"), 4);
}

/* Migration 7: a database an older dlrd wrote (numbers in Telnyx and Sinch
 * event ids, unkeyed idempotency fingerprints) is rewritten at open, more
 * rows than one read of the migration takes; it needs the hash key and
 * rolls back whole without it; it runs once; a recorded version this dlrd
 * does not know is refused. */
static void test_migration_7_privacy_ids(void **state)
{
	struct fixture *f = *state;
	char err[256] = "", want[128], key[65], sql[512], h[65], old[65];
	uint8_t md[CRYPTO_SHA256_LEN];

	store_close(f->st);
	f->st = NULL;
	q_exec(f, "INSERT INTO sms_messages (id, provider, provider_message_id, origin,"
	          " current_status, created_at, updated_at) VALUES"
	          " ('m1', 'telnyx', 'pm1', 'callback', 'delivered', 't', 't'),"
	          " ('m2', 'sinch', 'B/1', 'callback', 'delivered', 't', 't')");
	/* 1100 Telnyx recipients: three reads of 512 */
	q_exec(f, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1100)"
	          " INSERT INTO sms_message_events (message_id, provider, provider_message_id,"
	          " provider_event_id, dedup_key, status, is_final, changed_summary, raw_payload,"
	          " received_at) SELECT 'm1', 'telnyx', 'pm1', 'ev:+4477009' || printf('%05d', i),"
	          " 'old' || i, 'delivered', 1, 1, x'00', 't' FROM n");
	q_exec(f,
	       "INSERT INTO sms_message_events (message_id, provider, provider_message_id,"
	       " provider_event_id, dedup_key, status, raw_status, error_code, is_final,"
	       " changed_summary, raw_payload, received_at) VALUES"
	       " ('m1', 'telnyx', 'pm1', 'ev:#1', 'k1', 'delivered', NULL, NULL, 1, 1, x'00', 't'),"
	       " ('m2', 'sinch', 'B/1', 'B/1/15551231234/Deliv/ered/0', 'k2', 'delivered',"
	       "  'Deliv/ered', '0', 1, 1, x'00', 't'),"
	       " ('m2', 'sinch', 'B/1', 'B/1//Deliv/ered/0', 'k3', 'delivered', 'Deliv/ered',"
	       "  '0', 1, 1, x'00', 't'),"
	       " ('m2', 'generic', 'B/1', 'msg_+14155550100', 'k4', 'delivered', NULL, NULL, 1,"
	       "  1, x'00', 't'),"
	       " ('m2', 'twilio', 'B/1', NULL, 'k5', 'delivered', NULL, NULL, 1, 1, x'00', 't')");
	crypto_sha256("{\"to\":\"+14155550100\"}", 21, md);
	crypto_hex(md, sizeof(md), old);
	util_fmt(sql, sizeof(sql),
	         "INSERT INTO api_idempotency VALUES ('tok', 'k1', '%s', 201, '{}', NULL, 't'),"
	         " ('tok', 'k2', 'not-a-digest', 201, '{}', NULL, 't')",
	         old);
	q_exec(f, sql);
	q_exec(f, "DELETE FROM schema_migrations WHERE version = 7");

	/* without the key: refused, and nothing changed */
	privacy_set_hash_key(NULL, 0);
	assert_int_equal(store_open(&f->cfg, &f->st, err, sizeof(err)), DLRD_ECONFIG);
	assert_non_null(strstr(err, "privacy.hash_key"));
	f->st = NULL;
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_message_events WHERE"
	                          " provider_event_id LIKE '%rcpt-%'"),
	                 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM schema_migrations WHERE version = 7"), 0);

	privacy_set_hash_key((const uint8_t *)TEST_HASH_KEY, sizeof(TEST_HASH_KEY) - 1);
	assert_int_equal(store_open(&f->cfg, &f->st, err, sizeof(err)), 0);
	/* every number is gone from the ids, each one tagged as dlrd tags now */
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_message_events WHERE provider ="
	                          " 'telnyx' AND provider_event_id LIKE 'ev:rcpt-%'"),
	                 1100);
	assert_int_equal(q_int(f, "SELECT count(DISTINCT dedup_key) FROM sms_message_events"),
	                 1105);
	for (int i = 1; i <= 1100; i += 549) {
		char raw[32], got[128];
		util_fmt(raw, sizeof(raw), "+4477009%05d", i);
		telnyx_now("ev", raw, want, sizeof(want), key);
		util_fmt(sql, sizeof(sql),
		         "SELECT provider_event_id || ' ' || dedup_key FROM sms_message_events"
		         " WHERE id = %d",
		         i);
		sid_text(f, sql, NULL, got, sizeof(got));
		util_fmt(sql, sizeof(sql), "%s %s", want, key);
		assert_string_equal(got, sql);
	}
	char tag[PRIVACY_TAG_LEN + 1], got[128];
	privacy_tag("15551231234", 11, tag);
	util_fmt(want, sizeof(want), "B/1/%s/Deliv/ered/0", tag);
	sid_text(f,
	         "SELECT provider_event_id FROM sms_message_events WHERE dedup_key NOT IN"
	         " ('k1', 'k3', 'k4', 'k5') AND provider = 'sinch'",
	         NULL, got, sizeof(got));
	assert_string_equal(got, want);
	/* ids without a number, and other providers, stay */
	assert_int_equal(q_int(f,
	                       "SELECT count(*) FROM sms_message_events WHERE"
	                       " (provider_event_id = 'ev:#1' AND dedup_key = 'k1') OR"
	                       " (provider_event_id = 'B/1//Deliv/ered/0' AND dedup_key = 'k3')"
	                       " OR (provider_event_id = 'msg_+14155550100' AND dedup_key = 'k4')"
	                       " OR (provider_event_id IS NULL AND dedup_key = 'k5')"),
	                 4);
	/* the fingerprint is keyed; what was not a digest stays */
	assert_int_equal(privacy_request_hash_rekey(old, h), 0);
	sid_text(f, "SELECT request_hash FROM api_idempotency WHERE idem_key = 'k1'", NULL, got,
	         sizeof(got));
	assert_string_equal(got, h);
	sid_text(f, "SELECT request_hash FROM api_idempotency WHERE idem_key = 'k2'", NULL, got,
	         sizeof(got));
	assert_string_equal(got, "not-a-digest");

	/* once: a second open changes nothing */
	store_close(f->st);
	assert_int_equal(store_open(&f->cfg, &f->st, err, sizeof(err)), 0);
	sid_text(f, "SELECT request_hash FROM api_idempotency WHERE idem_key = 'k1'", NULL, got,
	         sizeof(got));
	assert_string_equal(got, h);
	assert_int_equal(q_int(f, "SELECT count(*) FROM schema_migrations WHERE version = 7"), 1);

	/* a version this dlrd does not know is refused */
	store_close(f->st);
	f->st = NULL;
	q_exec(f, "INSERT INTO schema_migrations VALUES (99, 'from the future', 't')");
	assert_int_equal(store_open(&f->cfg, &f->st, err, sizeof(err)), DLRD_EIO);
	assert_non_null(strstr(err, "schema version 99 is newer than this dlrd"));
	f->st = NULL;
	q_exec(f, "DELETE FROM schema_migrations WHERE version = 99");
	assert_int_equal(store_open(&f->cfg, &f->st, err, sizeof(err)), 0);
}

/* One callback item of several events whose payload is kept once, under
 * the id c repeated (as http.c names it: the same bytes, the same id). */
static void payload_item(struct commit_item *it, struct dlr_event *e, size_t n, char c,
                         const char *body)
{
	item_of(it, e, n);
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

static int setup_no_read_time(void **state)
{
	setenv("DLRD_TEST_READ_TIMEOUT_MS", "0", 1); /* every read past its time */
	int rc = setup(state);
	unsetenv("DLRD_TEST_READ_TIMEOUT_MS");
	return rc;
}

/* A read has a time limit, as PostgreSQL's statement_timeout gives the
 * PostgreSQL backend's: a search that reads the whole table (a rare country,
 * newest first) ran for as long as it took, holding a read connection of
 * the pool and a snapshot that keeps the WAL from starting over, so the WAL
 * grew for as long.  With no time left, a long read is cut and fails
 * (the API answers 503); a short one still answers. */
static void test_read_time_limit(void **state)
{
	struct fixture *f = *state;
	struct arena ar;
	struct store_message *rows, m;
	size_t n;
	char err[256] = "";
	sqlite3 *db = NULL;
	struct store_query q = {.final = -1, .limit = 51};

	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(
	        db,
	        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
	        " WHERE i < 5000) INSERT INTO sms_messages (id, provider,"
	        " provider_message_id, destination_country, origin, current_status,"
	        " created_at, updated_at) SELECT printf('01900000-0000-7000-8000-%012d', i),"
	        " 'twilio', 'SM' || i, 'US', 'callback', 'delivered',"
	        " '2026-11-27T15:10:00.000Z', '2026-11-27T15:10:00.000Z' FROM n",
	        NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);

	arena_init(&ar, NULL, 0);
	q.country = "FR"; /* none: every message is read */
	assert_int_equal(store_search(f->st, &ar, &q, &rows, &n, err, sizeof(err)), DLRD_EIO);
	if (!strstr(err, "interrupt"))
		fail_msg("search: %s", err);
	/* the connection is whole again: a short read answers */
	assert_int_equal(store_get_message(f->st, &ar, "01900000-0000-7000-8000-000000000007", &m,
	                                   err, sizeof(err)),
	                 0);
	assert_string_equal(m.provider_message_id, "SM7");
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

/* A batch mixing requests that keep their payload once with one that does
 * not: every row (status events, an inbound message, review items for an
 * unknown status, an unusable result and a conflict) reads back its own
 * request's bytes; a second item with the same payload in the batch, and a
 * resend later (in the same bytes or others), are duplicates and add no
 * copy; a batch that fails leaves no payload row behind.  test_store_pg.c runs the same on
 * PostgreSQL. */
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
	item_of(&ic, c, 1);
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

	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_payloads"), 2);
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_payloads WHERE provider = 'twilio' AND"
	                          " (id = printf('%.64c', 'a') AND raw_payload = CAST('body-A' AS"
	                          " BLOB) OR id = printf('%.64c', 'd') AND raw_payload ="
	                          " CAST('body-D' AS BLOB))"),
	                 2);
	/* the rows that name a payload hold none of their own */
	assert_int_equal(q_int(f, "SELECT (SELECT count(*) FROM sms_message_events WHERE"
	                          " length(raw_payload) = 0 AND payload_id IS NOT NULL) + (SELECT"
	                          " count(*) FROM sms_inbound_messages WHERE length(raw_payload) ="
	                          " 0 AND payload_id = printf('%.64c', 'a')) + (SELECT count(*)"
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
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_payloads"), 2);
	/* the same events again in other bytes (a Telnyx retry counts its
	 * attempt in the body): duplicates, and no copy that no row names */
	memcpy(b, a, sizeof(a));
	payload_item(&ib, b, 4, 'b', "body-A, attempt 2");
	assert_int_equal(store_apply(f->st, items, 1, err, sizeof(err)), 0);
	assert_int_equal(ib.n_dup, 4);
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_payloads"), 2);
	timeline_payloads(f, "SMpu", got, sizeof(got));
	assert_string_equal(got, "body-A");

	/* a failed batch keeps nothing, its payload row included */
	x[0] = mk("SMpx", ST_SENT, "sent", NULL);
	x[1] = mk("SMpy", ST_SENT, "sent", NULL);
	payload_item(&ix, x, 2, 'e', "body-E");
	struct dlr_event bad = mk("SMbad", ST_SENT, "sent", NULL);
	bad.provider_message_id = NULL;
	item_of(&iy, &bad, 1);
	items[0] = &ix;
	items[1] = &iy;
	assert_int_equal(store_apply(f->st, items, 2, err, sizeof(err)), DLRD_EIO);
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_payloads"), 2);
	assert_int_equal(q_int(f, "SELECT count(*) FROM sms_messages WHERE provider_message_id"
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
	assert_int_equal(
	    q_int(f, "SELECT count(*) FROM sms_payloads WHERE id = printf('%.64c', 'i')"), 1);
	assert_int_equal(
	    q_int(f, "SELECT count(*) FROM sms_payloads WHERE id = printf('%.64c', 'u')"), 1);
	assert_int_equal(
	    q_int(f, "SELECT count(*) FROM sms_payloads WHERE id = printf('%.64c', 'k')"), 1);
	assert_int_equal(
	    q_int(f, "SELECT count(*) FROM sms_payloads WHERE id = printf('%.64c', 's')"), 1);
	assert_int_equal(
	    q_int(f, "SELECT count(*) FROM sms_payloads WHERE id = printf('%.64c', 'z')"), 1);
	timeline_payloads(f, "SM\"q\\,{x}", got, sizeof(got));
	assert_string_equal(got, "body-S|body-S");
	review_payloads(f, got, sizeof(got));
	assert_string_equal(got, "unusable_payload=body-K unusable_payload=body-U"
	                         " unusable_payload=body-U");
}

int main(void)
{
	util_fmt(fault_path, sizeof(fault_path), "/tmp/dlrd-store-fault-%ld", (long)getpid());
	unlink(fault_path);
	setenv("DLRD_TEST_FAULT_FILE", fault_path, 1);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_checkpoint_sync_failure_is_final, setup_tiny_wal,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_wal_kept_after_a_failed_wal_sync, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_new_and_duplicate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_every_order_same_summary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_event_id_reused_across_messages, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_and_unusable_go_to_review, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_batch_is_atomic, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wal_starts_over_under_constant_load,
	                                    setup_short_wal, teardown),
	    cmocka_unit_test_setup_teardown(test_wal_starts_over_with_a_slow_checkpointer,
	                                    setup_short_wal_slow_disk, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_same_as_one_by_one, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_api_item_inside_a_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound_and_opt_out, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_error_reason_stored, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_opt_out_by_sender_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_opt_out_same_time_later_arrival_wins, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_opt_out_tie_counts_as_opted_out, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_rekeys_opt_outs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_provider_country_either_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_7_privacy_ids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_8_audit_follows_review, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_9_review_dedup, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_search_by_pmid_uses_an_index, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_search_by_provider_reads_a_page, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_search_open_reads_open_messages, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_search_recent_reads_the_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_review_payloads_within_budget, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timeline_payloads_within_budget, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_join_moves_review_items_by_index, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_time_limit, setup_no_read_time, teardown),
	    cmocka_unit_test_setup_teardown(test_receipt_times_any_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_payload_kept_once_mixed_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_payload_row_when_named, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
