/* SPDX-License-Identifier: MIT */
/*
 * Integration: two dlrd nodes on one PostgreSQL database, fed the same
 * callbacks at the same time.  Every distinct event goes to both nodes, some
 * a third time, each node's list shuffled and sent in concurrent waves, so
 * the same event regularly reaches both nodes within the same millisecond.
 * Afterwards: exactly one stored event per distinct event, one retry-log row
 * per request (the duplicates marked), per-message counters that add up, and
 * every summary and review count equal to what a single SQLite node computes
 * from the same events sent once each.
 *
 * Needs $DLRD_TEST_PG_URL (scripts/pg-test.sh); skipped with a message
 * otherwise.  Each node has its own folder (data_dir) and the harness's
 * common privacy.hash_key, so recipient hashes agree across nodes.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../pgtest.h"
#include "harness.h"
#include "util.h"

#define MESSAGES 150
#define WAVE     24 /* concurrent requests per node at a time */
#define INBOUND  6

/* Twilio statuses with their error codes: each message gets a random subset
 * (several definitive finals make conflicts; "mystery" is unmapped). */
static const struct {
	const char *status, *code;
} kinds[] = {
    {"queued", NULL},    {"sending", NULL},        {"sent", NULL},
    {"delivered", NULL}, {"undelivered", "30003"}, {"undelivered", "30005"},
    {"failed", "30008"}, {"read", NULL},           {"partially_delivered", NULL},
    {"mystery", NULL},
};

struct req {
	char body[1024];
	bool inbound;
	int msg; /* message index, -1 for inbound */
};

struct sender {
	struct dlrd *d;
	struct req *reqs;
	size_t n;
	size_t ok, bad;
	long bad_status;
};

struct env {
	char db[96];
	char url[512];
	char env_url[600];
	struct dlrd a, b, ref;
	PGconn *c;
};

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void shuffle(struct req *r, size_t n, uint64_t *x)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)(rnd(x) % i);
		struct req t = r[i - 1];
		r[i - 1] = r[j];
		r[j] = t;
	}
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
	if (h_setup(&e->a, env) != 0 || h_start(&e->a) != 0 || h_setup(&e->b, env) != 0 ||
	    h_start(&e->b) != 0 || h_setup(&e->ref, NULL) != 0 || h_start(&e->ref) != 0) {
		char *log = h_read_file(e->a.log_path, NULL);
		fprintf(stderr, "test_pg_nodes: a node did not start; node a said:\n%s\n",
		        log ? log : "");
		free(log);
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
	h_teardown(&e->a);
	h_teardown(&e->b);
	h_teardown(&e->ref);
	if (e->c)
		PQfinish(e->c);
	pgt_drop_db(e->db);
	free(e);
	return 0;
}

static void inbound_body(char *buf, size_t cap, unsigned n, const char *text)
{
	char sid[35];
	h_sid(sid, 0x1b, n);
	util_fmt(buf, cap,
	         "ToCountry=US&SmsMessageSid=%s&NumMedia=0&SmsSid=%s&SmsStatus=received"
	         "&Body=%s&To=%%2B%s&NumSegments=1&MessageSid=%s"
	         "&AccountSid=AC0123456789abcdef0123456789abcdef&From=%%2B1415555%04u"
	         "&ApiVersion=2010-04-01",
	         sid, sid, text, &H_FROM[1], sid, n);
}

/* Sends s->reqs in waves of WAVE concurrent requests. */
static void *sender_main(void *arg)
{
	struct sender *s = arg;
	const char *bodies[WAVE];
	struct h_multi out[WAVE];
	struct h_resp *r = malloc(sizeof(*r));

	for (size_t off = 0; off < s->n;) {
		size_t k = 0;
		/* inbound messages go one by one (h_post_concurrent posts status
		 * callbacks) */
		if (s->reqs[off].inbound) {
			long st = h_post_twilio(s->d, "/webhooks/twilio/inbound", H_TOKEN1,
			                        s->reqs[off].body, NULL, r);
			if (st == 200) {
				s->ok++;
			} else {
				s->bad++;
				s->bad_status = st;
			}
			off++;
			continue;
		}
		while (off + k < s->n && k < WAVE && !s->reqs[off + k].inbound) {
			bodies[k] = s->reqs[off + k].body;
			k++;
		}
		if (h_post_concurrent(s->d, bodies, k, 0, NULL, NULL, out, 30000) != 0) {
			s->bad += k;
			s->bad_status = -1;
		} else {
			for (size_t i = 0; i < k; i++) {
				if (out[i].status == 200) {
					s->ok++;
				} else {
					s->bad++;
					s->bad_status = out[i].status;
				}
			}
		}
		off += k;
	}
	free(r);
	return NULL;
}

/* The summary fields that depend only on the set of events, as one string;
 * the same SQL on both backends. */
#define SUMMARY_SQL                                                                                \
	"SELECT current_status || '|' || coalesce(current_raw_status, '-') || '|' ||"              \
	" coalesce(current_error_code, '-') || '|' || coalesce(current_error_reason, '-') ||"      \
	" '|' || current_occurred_ms || '|' || is_final || '|' || status_mask || '|' ||"           \
	" final_conflict || '|' || read_receipt || '|' || event_count || '|' ||"                   \
	" coalesce(recipient_hash, '-') || '|' || coalesce(destination_country, '-') ||"           \
	" '|' || coalesce(sender_identity, '-') FROM sms_messages WHERE provider ="                \
	" 'twilio' AND provider_message_id = "

static void test_two_nodes_same_callbacks(void **state)
{
	struct env *e = *state;
	static struct req ra[MESSAGES * ARRAY_LEN(kinds) * 2 + INBOUND * 2];
	static struct req rb[MESSAGES * ARRAY_LEN(kinds) * 2 + INBOUND * 2];
	static struct req once[MESSAGES * ARRAY_LEN(kinds)];
	size_t na = 0, nb = 0, nonce = 0, distinct = 0, requests = 0, inbound_requests = 0;
	unsigned per_msg_requests[MESSAGES] = {0}, per_msg_events[MESSAGES] = {0};
	uint64_t x = 0xdeadbeefcafef00dull;
	struct sender s[2];
	pthread_t t[2];
	struct h_resp *r = malloc(sizeof(*r));
	char sid[35], pg[512], sq[512];

	for (int m = 0; m < MESSAGES; m++) {
		h_sid(sid, 0x70, (unsigned)m);
		/* 3 to 7 of the kinds */
		unsigned want = 3 + (unsigned)(rnd(&x) % 5), have = 0;
		uint32_t set = 0;
		while (have < want) {
			unsigned k = (unsigned)(rnd(&x) % ARRAY_LEN(kinds));
			if (!(set & (1u << k))) {
				set |= 1u << k;
				have++;
			}
		}
		for (unsigned k = 0; k < ARRAY_LEN(kinds); k++) {
			if (!(set & (1u << k)))
				continue;
			struct req q = {.msg = m};
			assert_true(h_twilio_body(q.body, sizeof(q.body), sid, kinds[k].status,
			                          kinds[k].code) > 0);
			ra[na++] = q;
			rb[nb++] = q;
			once[nonce++] = q;
			distinct++;
			requests += 2;
			per_msg_requests[m] += 2;
			per_msg_events[m]++;
			if (rnd(&x) % 3 == 0) {
				if (rnd(&x) & 1)
					ra[na++] = q;
				else
					rb[nb++] = q;
				requests++;
				per_msg_requests[m]++;
			}
		}
	}
	/* a few inbound messages (opt-out keywords among them), to both nodes */
	static const char *texts[INBOUND] = {"STOP", "hello", "START", "stop", "HELP", "thanks"};
	for (unsigned i = 0; i < INBOUND; i++) {
		struct req q = {.inbound = true, .msg = -1};
		inbound_body(q.body, sizeof(q.body), i, texts[i]);
		ra[na++] = q;
		rb[nb++] = q;
		inbound_requests += 2;
	}
	shuffle(ra, na, &x);
	shuffle(rb, nb, &x);
	shuffle(once, nonce, &x);

	memset(s, 0, sizeof(s));
	s[0] = (struct sender){.d = &e->a, .reqs = ra, .n = na};
	s[1] = (struct sender){.d = &e->b, .reqs = rb, .n = nb};
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, sender_main, &s[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 2; i++) {
		if (s[i].bad)
			fail_msg("node %c: %zu requests not answered 200 (last: %ld)", 'a' + i,
			         s[i].bad, s[i].bad_status);
	}
	assert_int_equal(s[0].ok + s[1].ok, requests + inbound_requests);

	/* the single-node reference: every distinct event once, SQLite */
	for (size_t i = 0; i < nonce; i++)
		assert_int_equal(h_post_status(&e->ref, once[i].body, r), 200);

	/* one stored event per distinct event, nothing stored twice */
	assert_int_equal(pgt_int(e->c, "SELECT count(*) FROM sms_message_events"),
	                 (int64_t)distinct);
	assert_int_equal(pgt_int(e->c,
	                         "SELECT count(*) FROM (SELECT 1 FROM sms_message_events GROUP"
	                         " BY provider, provider_message_id, raw_status, error_code"
	                         " HAVING count(*) > 1) t"),
	                 0);
	assert_int_equal(pgt_int(e->c, "SELECT count(*) FROM sms_messages"), MESSAGES);
	/* a retry-log row per request; the first delivery of each event is the
	 * one not marked duplicate */
	assert_int_equal(pgt_int(e->c, "SELECT count(*) FROM sms_callback_log"), (int64_t)requests);
	assert_int_equal(pgt_int(e->c, "SELECT count(*) FROM sms_callback_log WHERE duplicate = 0"),
	                 (int64_t)distinct);
	assert_int_equal(pgt_int(e->c, "SELECT count(*) FROM sms_callback_log l JOIN"
	                               " sms_message_events ev ON ev.id = l.event_id"),
	                 (int64_t)requests);
	/* both nodes stored first deliveries ("review" is a first delivery
	 * that also added a review row) */
	int64_t first[2];
	for (int i = 0; i < 2; i++) {
		struct dlrd *d = i ? &e->b : &e->a;
		first[i] =
		    h_metric(d, "dlrd_callbacks_total{provider=\"twilio\",outcome=\"stored\"}") +
		    h_metric(d, "dlrd_callbacks_total{provider=\"twilio\",outcome=\"review\"}");
	}
	assert_true(first[0] > 0 && first[1] > 0);
	assert_int_equal(first[0] + first[1], (int64_t)(distinct + INBOUND));

	for (int m = 0; m < MESSAGES; m++) {
		h_sid(sid, 0x70, (unsigned)m);
		pgt_str(e->c, pg, sizeof(pg), SUMMARY_SQL "'%s'", sid);
		h_sql_str(&e->ref, sq, sizeof(sq), SUMMARY_SQL "%Q", sid);
		if (strcmp(pg, sq) != 0)
			fail_msg("message %s: two nodes on PostgreSQL: %s; one SQLite node: %s",
			         sid, pg, sq);
		assert_int_equal(pgt_int(e->c,
		                         "SELECT callback_count FROM sms_messages WHERE"
		                         " provider_message_id = '%s'",
		                         sid),
		                 per_msg_requests[m]);
		assert_int_equal(pgt_int(e->c,
		                         "SELECT duplicate_count FROM sms_messages WHERE"
		                         " provider_message_id = '%s'",
		                         sid),
		                 per_msg_requests[m] - per_msg_events[m]);
	}
	/* the same review rows: one per unmapped event, one per conflict */
	static const char *reasons[] = {"unknown_status", "final_conflict", "unusable_payload"};
	for (size_t i = 0; i < ARRAY_LEN(reasons); i++) {
		int64_t want = h_sql_int(
		    &e->ref, "SELECT count(*) FROM review_queue WHERE reason = %Q", reasons[i]);
		assert_int_equal(pgt_int(e->c,
		                         "SELECT count(*) FROM review_queue WHERE reason = '%s'",
		                         reasons[i]),
		                 want);
	}
	assert_true(pgt_int(e->c, "SELECT count(*) FROM sms_messages WHERE final_conflict = 1") >
	            0);

	/* inbound: one row each, the second delivery counted as a retry */
	assert_int_equal(pgt_int(e->c, "SELECT count(*) FROM sms_inbound_messages"), INBOUND);
	assert_int_equal(pgt_int(e->c, "SELECT sum(retry_count) FROM sms_inbound_messages"),
	                 INBOUND);
	assert_int_equal(pgt_int(e->c, "SELECT count(*) FROM sms_opt_out_history"), 3);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_two_nodes_same_callbacks, setup, teardown),
	};
	if (!pgt_server())
		return pgt_not_configured("test_pg_nodes");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
