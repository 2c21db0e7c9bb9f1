/* SPDX-License-Identifier: MIT */
/*
 * The SQLite backend through the storage interface: exact rows for new
 * events, duplicates and review items; the summary row is the same for every
 * arrival order (each order in one batch per event, and all in one batch);
 * a batch is all or nothing; migrations run once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "commitq.h"
#include "optout.h"
#include "config.h"
#include "store.h"
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

/* The order-independent part of a summary row, as one string. */
static void summary(struct fixture *f, const char *sid, char *out, size_t n)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(
	    sqlite3_prepare_v2(db,
	                       "SELECT current_status || '|' || coalesce(current_raw_status,'-') "
	                       "|| '|' || coalesce(current_error_code,'-') || '|' || is_final || "
	                       "'|' || status_mask || '|' || final_conflict || '|' || event_count "
	                       "FROM sms_messages WHERE provider_message_id = ?1",
	                       -1, &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_text(st, 1, sid, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	util_strlcpy(out, (const char *)sqlite3_column_text(st, 0), n);
	sqlite3_finalize(st);
	sqlite3_close(db);
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
	assert_int_equal(q_int(f, "SELECT count(*) FROM schema_migrations"), 5);
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
		/* next permutation (Heap's algorithm) */
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
	/* one conflict review row per message, however the events arrived */
	assert_int_equal(
	    q_int(f, "SELECT count(*) FROM review_queue WHERE reason='final_conflict'"), 120);
	assert_int_equal(q_int(f, "SELECT count(DISTINCT message_id) FROM review_queue"), 120);
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
	assert_int_equal(q_int(f, "SELECT opted_out FROM sms_opt_outs WHERE recipient_hash="
	                          "'userhash' AND sender_identity='+15005550006'"),
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_new_and_duplicate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_every_order_same_summary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_and_unusable_go_to_review, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_batch_is_atomic, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inbound_and_opt_out, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_error_reason_stored, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
