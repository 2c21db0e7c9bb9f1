/* SPDX-License-Identifier: MIT */
/*
 * The two storage backends against each other: the same random workload,
 * cut into the same batches, is applied to a fresh SQLite store and a fresh
 * PostgreSQL store, and everything dlrd can read back must be equal.
 *
 * A workload (one per seed) has a few dozen lifecycles under two providers
 * (pairs share a provider message id: across the providers, two messages;
 * under one provider, one message of both lifecycles), each realistic:
 * accepted/sent/delivered, undelivered or failed with error codes, a late
 * "sent", two conflicting finals, a raw status dlrd cannot map; events with
 * and without provider event ids (one id reused across messages, as a
 * provider bug would) and provider times; about 20% provider retries (the
 * same event again); events shuffled with some locality and grouped 1-3 to
 * a request (a request of several keeps its payload once); API sends for some of the messages,
 * before or after their callbacks (joins), with replays and reused keys; inbound STOP/START from
 * some recipients, which refuse later sends.  Batches are 1-12 requests.
 *
 * Compared: each request's outcome (new, duplicate and review counts; an
 * API write's outcome, status, origin, final flag and merge: sends, and
 * provider ids set later for sends recorded without one, which merges a
 * callback-created message into the send); then every
 * message's summary (all fields but the generated id), its timeline as a
 * set of events, the review queue and the stats by country.  Then support's
 * writes, which name rows by id: every second open review item resolved and
 * every third recorded send's number revealed, in one batch, the rows taken
 * in an order both backends share; their outcomes, the review items'
 * resolutions and the audit log are compared too.  What has no read method
 * (inbound messages, opt-out state and history) is compared straight from
 * each database.  So are 17 message searches with filters, read page by
 * page, as sets of keys.  Normalized,
 * because they legitimately differ: message ids (UUIDv7 made at insert:
 * messages are matched by provider, provider message id and action id),
 * event and review ids (numbers from each database's own sequence), and
 * the order of a timeline's events within one batch (PostgreSQL applies a
 * batch's events sorted by message for its lock order, so event ids, the
 * timeline's order, follow that).
 *
 * DLRD_DIFF_SEED=N runs that seed only (DLRD_DIFF_SHOW=1 also prints what
 * was compared); DLRD_DIFF_SEEDS=N sets how many (default 20, about 9 s on
 * a 2-CPU machine).  Needs $DLRD_TEST_PG_URL (scripts/pg-test.sh), else 77.
 *
 * It found one difference when written: SQLite kept the first and the last
 * written receipt time (first_callback_at, final_at, updated_at) where
 * PostgreSQL keeps the earliest and the latest, so requests of a batch
 * whose received_ms were not in queue order gave different rows (seeds 2-8,
 * and 24 and 57 for the API's writes, which stay in the default run).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "../pgtest.h"
#include "arena.h"
#include "commitq.h"
#include "config.h"
#include "optout.h"
#include "status.h"
#include "store.h"
#include "util.h"

#define N_MSG       24
#define MAX_EV      ((N_MSG * 4 + 8) * 3) /* the originals, then up to 2 copies each */
#define MAX_ITEMS   (MAX_EV + N_MSG * 3 + 16)
#define SEND_CAP    512
#define KEY_LEN     96
#define LINE_LEN    1024
#define BASE_MS     1700000000000LL
#define T_SENDER    "+15005550006"
#define T_ENC_LEN   4
#define MAX_REPORTS 12

static const uint8_t t_enc[T_ENC_LEN] = {0x01, 0x02, 0x03, 0x04};

struct backend {
	char dir[64], url[512], pgdb[96];
	struct config cfg;
	struct store *st;
};

/* One request of the workload: a callback (1-3 events) or an API send. */
struct req {
	struct commit_item it;
	struct store_op op;
	char resp[SEND_CAP];
	char idem[32], reqh[32], pmid[32], action_id[40];
	/* a send: the message id each backend gave it; a set provider id:
	 * its send's index, and the id of that send on the backend at hand */
	char row_id[2][37];
	long send_of;
	char msg_id[37];
	/* outputs of the first backend, for the comparison */
	uint32_t n_new, n_dup, n_review;
	enum store_outcome outcome;
	int resp_status;
	char origin[12], status[16];
	bool is_final, merged;
};

struct workload {
	uint64_t x;
	struct dlr_event ev[MAX_EV];
	size_t n_ev;
	char strs[MAX_EV][32]; /* provider event ids */
	char pmids[N_MSG][32], rhs[N_MSG][16];
	char raws[MAX_ITEMS][32]; /* each request's payload, its own bytes */
	struct req rq[MAX_ITEMS];
	size_t n_rq;
	size_t cut[MAX_ITEMS + 1]; /* batch boundaries */
	size_t n_cut;
};

static uint64_t rnd(struct workload *w)
{
	uint64_t z = (w->x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned below(struct workload *w, unsigned n)
{
	return (unsigned)(rnd(w) % n);
}

static void done(struct commit_item *it)
{
	(void)it;
}

static size_t t_render(struct store_op *op)
{
	return util_fmt(op->resp, op->resp_cap, "%s|%s", op->row.origin, op->row.status);
}

static int t_open(struct store_op *op, const uint8_t *blob, size_t n, const char *key_id)
{
	if (n != T_ENC_LEN || memcmp(blob, t_enc, n) != 0 || !key_id || strcmp(key_id, "k1") != 0)
		return DLRD_EINVAL;
	util_strlcpy(op->number, "+14155550123", sizeof(op->number));
	return 0;
}

/* ---- the workload ---- */

/* Messages 0 and 1 (4 and 5, ...) share a provider message id under two
 * providers: two messages.  Messages 2 and 3 (6 and 7, ...) share one under
 * the same provider: their lifecycles make one message of up to 8 events. */
static const char *provider_of(int k)
{
	return k % 4 == 1 ? "vonage" : "twilio";
}

struct step {
	enum dlr_status st;
	const char *raw, *code;
};

/* Lifecycles, in the order a provider would send them. */
static const struct step life[][4] = {
    {{ST_ACCEPTED, "accepted", NULL}, {ST_SENT, "sent", NULL}, {ST_DELIVERED, "delivered", NULL}},
    {{ST_ACCEPTED, "queued", NULL},
     {ST_SENT, "sent", NULL},
     {ST_UNDELIVERED, "undelivered", "30003"}},
    {{ST_ACCEPTED, "accepted", NULL}, {ST_FAILED, "failed", "30008"}},
    {{ST_SENT, "sent", NULL}, {ST_DELIVERED, "delivered", NULL}, {ST_FAILED, "failed", "30007"}},
    {{ST_SENT, "sent", NULL}, {ST_UNKNOWN, "warped", NULL}, {ST_DELIVERED, "delivered", NULL}},
    {{ST_ACCEPTED, "accepted", NULL}, {ST_SENT, "sent", NULL}, {ST_EXPIRED, "expired", "30001"}},
    {{ST_DELIVERED, "delivered", NULL}, {ST_SENT, "sent", NULL}, {ST_ACCEPTED, "queued", NULL}},
    {{ST_UNKNOWN, "mystery", NULL}, {ST_REJECTED, "rejected", "21610"}},
};

static void add_event(struct workload *w, int k, int i, const struct step *s)
{
	struct dlr_event *e = &w->ev[w->n_ev];

	memset(e, 0, sizeof(*e));
	e->kind = EV_STATUS;
	e->provider = provider_of(k);
	e->provider_message_id = w->pmids[k];
	e->status = s->st;
	e->raw_status = s->raw;
	e->error_code = s->code;
	e->occurred_ms = below(w, 2) ? BASE_MS + k * 60000 + i * 1000 : -1;
	if (below(w, 3) == 0) {
		util_fmt(w->strs[w->n_ev], sizeof(w->strs[0]), "ev-%s-%d", w->pmids[k], i);
		e->provider_event_id = w->strs[w->n_ev];
		/* a provider that reuses one event id across its messages
		 * (chosen without a draw, so the seeds keep their workloads) */
		if (k % 5 == 3 && i == 1)
			e->provider_event_id = "ev-reused-1";
	}
	if (s->st == ST_UNKNOWN) {
		e->review = REVIEW_UNKNOWN_STATUS;
		e->review_detail = "unmapped status";
	}
	e->recipient_hash = w->rhs[k];
	e->destination_country = k % 4 == 0 ? "GB" : "US";
	e->country_from_number = below(w, 2);
	e->sender_identity = T_SENDER;
	event_finish(e);
	w->n_ev++;
}

static void add_inbound(struct workload *w, int k, const char *text, int i)
{
	struct dlr_event *e = &w->ev[w->n_ev];

	memset(e, 0, sizeof(*e));
	e->kind = EV_INBOUND;
	e->provider = provider_of(k);
	util_fmt(w->strs[w->n_ev], sizeof(w->strs[0]), "in-%s-%d", w->pmids[k], i);
	e->provider_message_id = w->strs[w->n_ev];
	e->recipient_hash = w->rhs[k];
	/* our number as some providers write it, without the '+': the
	 * opt-out must still refuse sends from T_SENDER */
	e->sender_identity = k % 3 ? T_SENDER : T_SENDER + 1;
	e->text = text;
	e->text_len = strlen(text);
	e->keyword = optout_classify(text, e->text_len);
	e->occurred_ms = below(w, 2) ? BASE_MS + i * 500 : -1;
	event_finish(e);
	w->n_ev++;
}

static struct req *new_req(struct workload *w)
{
	assert_true(w->n_rq < MAX_ITEMS);
	struct req *r = &w->rq[w->n_rq++];
	memset(r, 0, sizeof(*r));
	r->send_of = -1;
	r->it.complete = done;
	/* arrival times a little out of order, as requests of one batch
	 * arrive through several HTTP threads */
	r->it.received_ms = BASE_MS + 3600000 + (int64_t)w->n_rq * 10 + below(w, 50) - 25;
	return r;
}

static struct req *new_api(struct workload *w, enum store_op_kind kind)
{
	struct req *r = new_req(w);

	r->it.kind = CI_API;
	r->it.op = &r->op;
	r->it.provider = "api";
	r->op.kind = kind;
	r->op.actor = "tok1abcd";
	r->op.actor_role = "app";
	r->op.render = t_render;
	r->op.open = t_open;
	r->op.ctx = r;
	r->op.resp = r->resp;
	r->op.resp_cap = sizeof(r->resp);
	return r;
}

/* The provider message id of a send recorded without one (the request at
 * index send), which merges the message with its callbacks when they came
 * first. */
static void add_set(struct workload *w, int k, long send)
{
	struct req *r = new_api(w, STORE_OP_SET_PROVIDER_ID);

	r->send_of = send;
	r->op.message_id = r->msg_id;
	util_strlcpy(r->pmid, w->pmids[k], sizeof(r->pmid));
	r->op.text = r->pmid;
}

static long add_send(struct workload *w, int k, const char *req_hash)
{
	struct req *r = new_api(w, STORE_OP_SEND);
	struct store_send *s = &r->op.send;

	util_fmt(r->idem, sizeof(r->idem), "key-%d", k);
	util_strlcpy(r->reqh, req_hash, sizeof(r->reqh));
	util_fmt(r->action_id, sizeof(r->action_id), "act-%d", k);
	s->token_hash = "tokenhash1";
	s->idem_key = r->idem;
	s->request_hash = r->reqh;
	s->provider = provider_of(k);
	if (k % 5 != 4) { /* the rest are sends whose provider id is not known */
		util_strlcpy(r->pmid, w->pmids[k], sizeof(r->pmid));
		s->provider_message_id = r->pmid;
	}
	s->recipient_hash = w->rhs[k];
	s->recipient_masked = "+1********23";
	s->recipient_enc = t_enc;
	s->recipient_enc_len = T_ENC_LEN;
	s->recipient_key_id = "k1";
	s->number_country = "US";
	s->country = k % 7 == 0 ? "CA" : NULL;
	s->recipient_timezone = "America/New_York";
	s->use_case = k % 2 ? "otp" : "alert";
	s->template_key = "tpl";
	s->sender_identity = T_SENDER;
	s->action_type = "login";
	s->action_id = r->action_id;
	s->metadata = "{\"n\":1}";
	s->optout_exempt = k % 6 == 0;
	return (long)(r - w->rq);
}

static void build(struct workload *w, uint64_t seed)
{
	size_t order[MAX_EV], n_order = 0;

	memset(w, 0, sizeof(*w));
	w->x = seed;
	for (int k = 0; k < N_MSG; k++) {
		/* pairs share a provider message id (see provider_of()) */
		util_fmt(w->pmids[k], sizeof(w->pmids[0]), "SM%llx%02d", (unsigned long long)seed,
		         k / 2);
		util_fmt(w->rhs[k], sizeof(w->rhs[0]), "rh%02d", k % 20);
		const struct step *l = life[below(w, sizeof(life) / sizeof(life[0]))];
		for (int i = 0; i < 4 && l[i].raw; i++)
			add_event(w, k, i, &l[i]);
	}
	for (int j = 0; j < 8; j++) {
		int k = (int)below(w, N_MSG);
		add_inbound(w, k, below(w, 2) ? "STOP" : "START", j);
	}
	/* provider retries: ~20% of events again */
	size_t n0 = w->n_ev;
	for (size_t i = 0; i < n0; i++) {
		order[n_order++] = i;
		if (below(w, 5) == 0)
			order[n_order++] = i;
	}
	/* shuffle with locality: swap each with one up to 8 ahead */
	for (size_t i = 0; i + 1 < n_order; i++) {
		size_t j = i + below(w, (unsigned)(n_order - i < 9 ? n_order - i : 9));
		size_t t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	/* requests: 1-3 events each (the same event twice in one request is a
	 * retry inside a request: fine), sends in between */
	int sent[N_MSG] = {0};
	long unset[N_MSG]; /* sends without a provider message id yet */
	int unset_k[N_MSG], n_unset = 0;
	for (size_t i = 0; i < n_order;) {
		if (n_unset > 0 && below(w, 6) == 0) {
			n_unset--;
			add_set(w, unset_k[n_unset], unset[n_unset]);
			continue;
		}
		if (below(w, 4) == 0) {
			int k = (int)below(w, N_MSG);
			if (sent[k] == 0 || below(w, 2) == 0) {
				/* a first send, a replay, or the key reused */
				long at = add_send(w, k,
				                   sent[k] && below(w, 4) == 0 ? "other-request"
				                                               : "request");
				if (!sent[k] && !w->rq[at].op.send.provider_message_id) {
					unset[n_unset] = at;
					unset_k[n_unset++] = k;
				}
				sent[k] = 1;
				continue;
			}
		}
		size_t n = below(w, 7) == 0 ? 1 + below(w, 3) : 1;
		if (n > n_order - i)
			n = n_order - i;
		struct req *r = new_req(w);
		/* copies, so each request owns its events (a retry's too) */
		struct dlr_event *evs = &w->ev[w->n_ev];
		for (size_t j = 0; j < n; j++) {
			assert_true(w->n_ev < MAX_EV);
			w->ev[w->n_ev++] = w->ev[order[i + j]];
		}
		r->it.provider = evs[0].provider;
		r->it.events = evs;
		r->it.n_events = (size_t)(&w->ev[w->n_ev] - evs);
		/* bytes of its own, so that a row showing another request's
		 * payload shows */
		char *raw = w->raws[r - w->rq];
		r->it.raw_payload = (struct iov){
		    raw, (size_t)util_fmt(raw, sizeof(w->raws[0]), "raw=%zu", order[i])};
		/* a request of several events keeps its payload once, named as
		 * http.c names it: here by its first event (and its bytes), so
		 * that a retry of the request names the same row */
		if (r->it.n_events > 1)
			util_fmt(r->it.payload_id, sizeof(r->it.payload_id), "%064zx", order[i]);
		i += n;
	}
	/* batches of 1-12 requests; a set provider id starts a batch when its
	 * send is in the current one (it needs the id the send got) */
	w->cut[w->n_cut++] = 0;
	size_t size = 1 + below(w, 12);
	for (size_t i = 1; i < w->n_rq; i++) {
		size_t start = w->cut[w->n_cut - 1];
		if (i - start >= size ||
		    (w->rq[i].send_of >= 0 && (size_t)w->rq[i].send_of >= start)) {
			w->cut[w->n_cut++] = i;
			size = 1 + below(w, 12);
		}
	}
	w->cut[w->n_cut++] = w->n_rq;
}

/* ---- applying and comparing ---- */

static void reset_outputs(struct req *r)
{
	r->it.result = 0;
	r->it.n_new = r->it.n_dup = r->it.n_review = 0;
	memset(&r->op.row, 0, sizeof(r->op.row));
	r->op.outcome = STORE_DONE;
	r->op.resp_status = 0;
	r->op.resp_len = 0;
}

static void apply_all(struct backend *b, struct workload *w, int which)
{
	struct commit_item *items[MAX_ITEMS];
	char err[512] = "";

	for (size_t c = 0; c + 1 < w->n_cut; c++) {
		size_t n = 0;
		for (size_t i = w->cut[c]; i < w->cut[c + 1]; i++) {
			struct req *r = &w->rq[i];
			reset_outputs(r);
			if (r->send_of >= 0)
				util_strlcpy(r->msg_id, w->rq[r->send_of].row_id[which],
				             sizeof(r->msg_id));
			items[n++] = &r->it;
		}
		if (store_apply(b->st, items, n, err, sizeof(err)) != 0 ||
		    store_sync(b->st, false, err, sizeof(err)) != 0)
			fail_msg("%s: %s", store_backend(b->st), err);
		for (size_t i = w->cut[c]; i < w->cut[c + 1]; i++)
			if (w->rq[i].it.kind == CI_API && w->rq[i].op.kind == STORE_OP_SEND)
				util_strlcpy(w->rq[i].row_id[which], w->rq[i].op.row.id,
				             sizeof(w->rq[i].row_id[0]));
	}
}

/* What a request is, for messages. */
static const char *req_kind(const struct req *r)
{
	return r->it.kind != CI_API ? r->it.provider : r->send_of >= 0 ? "set" : "send";
}

static void save_outputs(struct workload *w)
{
	for (size_t i = 0; i < w->n_rq; i++) {
		struct req *r = &w->rq[i];
		r->n_new = r->it.n_new;
		r->n_dup = r->it.n_dup;
		r->n_review = r->it.n_review;
		r->outcome = r->op.outcome;
		r->resp_status = r->op.resp_status;
		util_strlcpy(r->origin, r->op.row.origin, sizeof(r->origin));
		util_strlcpy(r->status, r->op.row.status, sizeof(r->status));
		r->is_final = r->op.row.is_final;
		r->merged = r->op.row.merged;
	}
}

static size_t compare_outputs(struct workload *w, uint64_t seed)
{
	size_t bad = 0;
	for (size_t i = 0; i < w->n_rq; i++) {
		struct req *r = &w->rq[i];
		if (r->n_new == r->it.n_new && r->n_dup == r->it.n_dup &&
		    r->n_review == r->it.n_review && r->outcome == r->op.outcome &&
		    r->resp_status == r->op.resp_status &&
		    strcmp(r->origin, r->op.row.origin) == 0 &&
		    strcmp(r->status, r->op.row.status) == 0 && r->is_final == r->op.row.is_final &&
		    r->merged == r->op.row.merged)
			continue;
		if (bad++ < MAX_REPORTS)
			print_message(
			    "seed %llu request %zu (%s): sqlite new %u dup %u review %u outcome"
			    " %d status %d %s/%s final %d merged %d; postgresql new %u dup %u"
			    " review %u outcome %d status %d %s/%s final %d merged %d\n",
			    (unsigned long long)seed, i, req_kind(r), r->n_new, r->n_dup,
			    r->n_review, r->outcome, r->resp_status, r->origin, r->status,
			    r->is_final, r->merged, r->it.n_new, r->it.n_dup, r->it.n_review,
			    r->op.outcome, r->op.resp_status, r->op.row.origin, r->op.row.status,
			    r->op.row.is_final, r->op.row.merged);
	}
	return bad;
}

struct lines {
	char (*l)[LINE_LEN];
	size_t n, cap;
};

static void add_line(struct lines *ls, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_line(struct lines *ls, const char *fmt, ...)
{
	va_list ap;
	if (ls->n == ls->cap) {
		ls->cap = ls->cap ? 2 * ls->cap : 256;
		ls->l = realloc(ls->l, ls->cap * sizeof(*ls->l));
		assert_non_null(ls->l);
	}
	va_start(ap, fmt);
	vsnprintf(ls->l[ls->n++], LINE_LEN, fmt, ap);
	va_end(ap);
}

static int cmp_line(const void *a, const void *b)
{
	return strcmp(a, b);
}

#define S(x) ((x) ? (x) : "-")

/* The message's key across backends. */
static void msg_key(const struct store_message *m, char out[KEY_LEN])
{
	util_fmt(out, KEY_LEN, "%s|%s|%s", S(m->provider), S(m->provider_message_id),
	         S(m->action_id));
}

/* The key of the message with this id among rows (read in the same
 * snapshot), or "-": review items and audit rows name messages by id. */
static const char *key_of_id(const struct store_message *rows, size_t n, const char *id,
                             char out[KEY_LEN])
{
	for (size_t j = 0; id && j < n; j++)
		if (strcmp(rows[j].id, id) == 0) {
			msg_key(&rows[j], out);
			return out;
		}
	return "-";
}

/* Everything readable, as sorted lines without generated ids. */
static void table_lines(struct backend *b, struct lines *ls);
static void query_lines(struct backend *b, struct lines *ls);

static void snapshot(struct backend *b, struct lines *ls)
{
	struct arena ar;
	struct store_message *rows;
	struct store_review_item *rv;
	struct store_stats_row *stats;
	size_t n, nr, ns;
	char err[256], key[KEY_LEN];
	struct store_query q = {.final = -1, .limit = 10000};

	arena_init(&ar, NULL, 0);
	assert_int_equal(store_search(b->st, &ar, &q, &rows, &n, err, sizeof(err)), 0);
	for (size_t i = 0; i < n; i++) {
		const struct store_message *m = &rows[i];
		struct store_message tm;
		struct store_event *ev;
		size_t ne;
		msg_key(m, key);
		add_line(ls,
		         "msg %s origin=%s status=%s raw=%s code=%s reason=%s occurred=%s final=%d"
		         " conflict=%d read=%d rcpt=%d masked=%s country=%s/%s sender=%s tpl=%s"
		         " use=%s action=%s meta=%s tz=%s events=%lld callbacks=%lld dups=%lld"
		         " first=%s final_at=%s created=%s updated=%s sent=%s",
		         key, S(m->origin), S(m->status), S(m->raw_status), S(m->error_code),
		         S(m->error_reason), S(m->occurred_at), m->is_final, m->final_conflict,
		         m->read_receipt, m->has_recipient, S(m->recipient_masked),
		         S(m->destination_country), S(m->country_source), S(m->sender_identity),
		         S(m->template_key), S(m->use_case), S(m->action_type), S(m->metadata),
		         S(m->recipient_timezone), (long long)m->event_count,
		         (long long)m->callback_count, (long long)m->duplicate_count,
		         S(m->first_callback_at), S(m->final_at), S(m->created_at),
		         S(m->updated_at), S(m->sent_recorded_at));
		assert_int_equal(
		    store_get_timeline(b->st, &ar, m->id, true, &tm, &ev, &ne, err, sizeof(err)),
		    0);
		for (size_t j = 0; j < ne; j++)
			add_line(
			    ls,
			    "event %s status=%s raw=%s code=%s reason=%s peid=%s final=%d read=%d"
			    " occurred=%s received=%s deliveries=%lld payload=%.*s",
			    key, S(ev[j].status), S(ev[j].raw_status), S(ev[j].error_code),
			    S(ev[j].error_reason), S(ev[j].provider_event_id), ev[j].is_final,
			    ev[j].read_receipt, S(ev[j].provider_occurred_at), S(ev[j].received_at),
			    (long long)ev[j].deliveries, (int)ev[j].raw_payload_len,
			    ev[j].raw_payload ? ev[j].raw_payload : "");
	}
	struct store_review_query rq = {.state = -1, .limit = 10000};
	assert_int_equal(store_list_review(b->st, &ar, &rq, &rv, &nr, err, sizeof(err)), 0);
	for (size_t i = 0; i < nr; i++) {
		const char *mk = key_of_id(rows, n, rv[i].message_id, key);
		add_line(ls,
		         "review %s provider=%s reason=%s detail=%s raw=%s event=%d created=%s"
		         " resolved=%s by=%s resolution=%s payload=%.*s",
		         mk, S(rv[i].provider), S(rv[i].reason), S(rv[i].detail),
		         S(rv[i].raw_status), rv[i].event_id != 0, S(rv[i].created_at),
		         S(rv[i].resolved_at), S(rv[i].resolved_by), S(rv[i].resolution),
		         (int)rv[i].raw_payload_len, rv[i].raw_payload ? rv[i].raw_payload : "");
	}
	struct store_audit_query aq = {.limit = 10000};
	struct store_audit_row *au;
	size_t na;
	assert_int_equal(store_list_audit(b->st, &ar, &aq, &au, &na, err, sizeof(err)), 0);
	for (size_t i = 0; i < na; i++) {
		const char *mk = key_of_id(rows, n, au[i].message_id, key);
		add_line(ls, "audit %s at=%s actor=%s role=%s action=%s reason=%s review=%d", mk,
		         S(au[i].at), S(au[i].actor), S(au[i].actor_role), S(au[i].action),
		         S(au[i].reason), au[i].review_id != 0);
	}
	struct store_stats_query sq = {.group_by = STORE_STATS_COUNTRY,
	                               .since = "2000-01-01T00:00:00.000Z",
	                               .until = "2100-01-01T00:00:00.000Z",
	                               .limit = 100};
	assert_int_equal(store_stats(b->st, &ar, &sq, &stats, &ns, err, sizeof(err)), 0);
	for (size_t i = 0; i < ns; i++) {
		char by[128] = "";
		size_t o = 0;
		for (int s = 0; s < ST__COUNT; s++)
			o += util_fmt(by + o, sizeof(by) - o, " %lld",
			              (long long)stats[i].by_status[s]);
		add_line(ls, "stats %s count=%lld final=%lld by%s", S(stats[i].key),
		         (long long)stats[i].count, (long long)stats[i].final_count, by);
	}
	arena_fini(&ar);
	table_lines(b, ls);
	query_lines(b, ls);
	qsort(ls->l, ls->n, sizeof(*ls->l), cmp_line);
}

static size_t compare_snapshots(const struct lines *a, const struct lines *b, uint64_t seed)
{
	size_t i = 0, j = 0, bad = 0;
	while (i < a->n || j < b->n) {
		int c = i == a->n ? 1 : j == b->n ? -1 : strcmp(a->l[i], b->l[j]);
		if (c == 0) {
			i++, j++;
			continue;
		}
		if (bad++ < MAX_REPORTS)
			print_message("seed %llu: only in %s: %s\n", (unsigned long long)seed,
			              c < 0 ? "sqlite" : "postgresql", c < 0 ? a->l[i] : b->l[j]);
		if (c < 0)
			i++;
		else
			j++;
	}
	return bad;
}

/* ---- the test ---- */

static void open_sqlite(struct backend *b)
{
	char err[512] = "";
	util_strlcpy(b->dir, "/tmp/dlrd-diff-XXXXXX", sizeof(b->dir));
	assert_non_null(mkdtemp(b->dir));
	util_fmt(b->url, sizeof(b->url), "sqlite:%s/t.db", b->dir);
	b->cfg.storage_url = b->url;
	b->cfg.synchronous = SYNC_FULL;
	if (store_open(&b->cfg, &b->st, err, sizeof(err)) != 0)
		fail_msg("sqlite: %s", err);
}

static void open_pg(struct backend *b)
{
	char err[512] = "";
	assert_int_equal(pgt_create_db(b->pgdb, sizeof(b->pgdb), b->url, sizeof(b->url)), 0);
	b->cfg.storage_url = b->url;
	b->cfg.synchronous = SYNC_FULL;
	if (store_open(&b->cfg, &b->st, err, sizeof(err)) != 0)
		fail_msg("postgresql: %s", err);
}

static void close_both(struct backend *s, struct backend *p)
{
	char cmd[128];
	store_close(s->st);
	util_fmt(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
	assert_int_equal(system(cmd), 0);
	store_close(p->st);
	pgt_drop_db(p->pgdb);
}

/* What has no read method (inbound messages, opt-out state and history),
 * straight from each database, ids left out, times as SQLite's text. */
#define PG_T(c) "to_char(" c " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
static const struct {
	const char *sqlite, *pg;
} tables[] = {
    {"SELECT 'inbound ' || provider || ' ' || coalesce(provider_message_id, '-') || ' ' ||"
     " keyword || ' ' || coalesce(sender_hash, '-') || ' ' || coalesce(to_identity, '-') ||"
     " ' ' || coalesce(body, '-') || ' ' || coalesce(provider_occurred_at, '-') || ' ' ||"
     " received_at || ' ' || retry_count FROM sms_inbound_messages",
     "SELECT 'inbound ' || provider || ' ' || coalesce(provider_message_id, '-') || ' ' ||"
     " keyword || ' ' || coalesce(sender_hash, '-') || ' ' || coalesce(to_identity, '-') ||"
     " ' ' || coalesce(body, '-') || ' ' || coalesce(" PG_T(
         "provider_occurred_at") ", '-')"
                                 " || ' ' || " PG_T("received_at") " || ' ' || retry_count FROM "
                                                                   "sms_inbound_messages"},
    {"SELECT 'optout ' || recipient_hash || ' ' || sender_identity || ' ' || opted_out ||"
     " ' ' || coalesce(keyword, '-') || ' ' || effective_at || ' ' || updated_at"
     " FROM sms_opt_outs",
     "SELECT 'optout ' || recipient_hash || ' ' || sender_identity || ' ' || opted_out ||"
     " ' ' || coalesce(keyword, '-') || ' ' || " PG_T("effective_at") " || ' ' || " PG_T(
         "updated_at") " FROM sms_opt_outs"},
    {"SELECT 'history ' || recipient_hash || ' ' || sender_identity || ' ' || action || ' ' ||"
     " coalesce(keyword, '-') || ' ' || effective_at || ' ' || received_at"
     " FROM sms_opt_out_history",
     "SELECT 'history ' || recipient_hash || ' ' || sender_identity || ' ' || action || ' ' ||"
     " coalesce(keyword, '-') || ' ' || " PG_T("effective_at") " || ' ' || " PG_T(
         "received_at") " FROM sms_opt_out_history"},
};

static void table_lines(struct backend *b, struct lines *ls)
{
	if (strcmp(store_backend(b->st), "sqlite") == 0) {
		sqlite3 *db;
		assert_int_equal(
		    sqlite3_open_v2(b->url + strlen("sqlite:"), &db, SQLITE_OPEN_READONLY, NULL),
		    SQLITE_OK);
		for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
			sqlite3_stmt *st;
			assert_int_equal(sqlite3_prepare_v2(db, tables[t].sqlite, -1, &st, NULL),
			                 SQLITE_OK);
			while (sqlite3_step(st) == SQLITE_ROW)
				add_line(ls, "%s", (const char *)sqlite3_column_text(st, 0));
			sqlite3_finalize(st);
		}
		sqlite3_close(db);
		return;
	}
	PGconn *c = pgt_connect(b->url);
	assert_non_null(c);
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
		PGresult *r = PQexec(c, tables[t].pg);
		assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
		for (int i = 0; i < PQntuples(r); i++)
			add_line(ls, "%s", PQgetvalue(r, i, 0));
		PQclear(r);
	}
	PQfinish(c);
}

/* Message search with filters, read page by page (5 rows a page, the next
 * page below the last id), as the set of keys each query finds: the
 * filters and the keyset pagination of both backends must agree.  (Not the
 * order: messages created in the same millisecond may order differently.) */
static const struct store_query queries[] = {
    {.final = -1},
    {.final = 1},
    {.final = 0},
    {.final = -1, .statuses = {"delivered", "failed", "undelivered"}, .n_statuses = 3},
    {.final = -1, .statuses = {"accepted", "sent", "unknown"}, .n_statuses = 3},
    {.final = -1, .provider = "vonage"},
    {.final = -1, .country = "GB"},
    {.final = 1, .country = "US", .provider = "twilio"},
    {.final = -1, .origin = "joined"},
    {.final = -1, .origin = "callback"},
    {.final = -1, .use_case = "otp", .template_key = "tpl"},
    {.final = -1, .sender_identity = T_SENDER, .action_type = "login"},
    {.final = -1, .action_id = "act-3"},
    {.final = -1, .created_from = "2023-11-14T23:13:20.300Z"},
    {.final = -1, .created_to = "2023-11-14T23:13:20.300Z"},
    {.final = -1,
     .updated_from = "2023-11-14T23:13:20.500Z",
     .updated_to = "2023-11-14T23:13:21.000Z"},
    {.final = -1, .stuck_before = "2023-11-14T23:13:20.600Z"},
};

static void query_lines(struct backend *b, struct lines *ls)
{
	for (size_t qi = 0; qi < sizeof(queries) / sizeof(queries[0]); qi++) {
		struct store_query q = queries[qi];
		struct arena ar;
		struct store_message *rows;
		char err[256], key[KEY_LEN], last[40] = "";
		size_t n, pages = 0;

		arena_init(&ar, NULL, 0);
		q.limit = 5;
		do {
			assert_int_equal(store_search(b->st, &ar, &q, &rows, &n, err, sizeof(err)),
			                 0);
			for (size_t i = 0; i < n; i++) {
				msg_key(&rows[i], key);
				add_line(ls, "query %zu %s", qi, key);
			}
			if (n > 0) {
				util_strlcpy(last, rows[n - 1].id, sizeof(last));
				q.before_id = last;
			}
			assert_true(++pages < 1000);
		} while (n == q.limit);
		arena_fini(&ar);
	}
}

/* ---- support's writes, which name rows by id ---- */

struct named {
	char line[LINE_LEN]; /* what the row is, the same on both backends */
	char id[40];         /* its id on this backend */
	int64_t review_id;
};

static int cmp_named(const void *a, const void *b)
{
	return strcmp(((const struct named *)a)->line, ((const struct named *)b)->line);
}

/* Resolves every second open review item and reveals the number of every
 * third recorded send, in one batch, taking the rows in an order both
 * backends share (by what they are, not by id); outcomes go to out[]. */
static size_t support_ops(struct backend *b, int out[], size_t cap)
{
	static struct named nm[2 * MAX_ITEMS];
	static struct req ops[2 * MAX_ITEMS];
	struct commit_item *items[2 * MAX_ITEMS];
	struct arena ar;
	struct store_message *rows;
	struct store_review_item *rv;
	size_t n, nr, k = 0, nn = 0;
	char err[256], key[KEY_LEN];
	struct store_query q = {.final = -1, .limit = 10000};
	struct store_review_query rq = {.state = 0, .limit = 10000};

	arena_init(&ar, NULL, 0);
	assert_int_equal(store_search(b->st, &ar, &q, &rows, &n, err, sizeof(err)), 0);
	assert_int_equal(store_list_review(b->st, &ar, &rq, &rv, &nr, err, sizeof(err)), 0);
	for (size_t i = 0; i < nr && nn < 2 * MAX_ITEMS; i++, nn++) {
		const char *mk = key_of_id(rows, n, rv[i].message_id, key);
		util_fmt(nm[nn].line, LINE_LEN, "1 %s %s %s %s %s", mk, S(rv[i].reason),
		         S(rv[i].raw_status), S(rv[i].detail), S(rv[i].created_at));
		nm[nn].review_id = rv[i].id;
	}
	for (size_t i = 0; i < n && nn < 2 * MAX_ITEMS; i++) {
		if (!rows[i].origin || strcmp(rows[i].origin, "callback") == 0)
			continue;
		msg_key(&rows[i], key);
		util_fmt(nm[nn].line, LINE_LEN, "2 %s", key);
		util_strlcpy(nm[nn].id, rows[i].id, sizeof(nm[nn].id));
		nm[nn++].review_id = 0;
	}
	qsort(nm, nn, sizeof(nm[0]), cmp_named);
	for (size_t i = 0; i < nn; i++) {
		bool review = nm[i].review_id != 0;
		if (i % (review ? 2 : 3) != 0)
			continue;
		struct req *r = &ops[k];
		memset(r, 0, sizeof(*r));
		r->it.kind = CI_API;
		r->it.op = &r->op;
		r->it.provider = "api";
		r->it.complete = done;
		r->it.received_ms = BASE_MS + 7200000 + (int64_t)k;
		r->op.kind = review ? STORE_OP_RESOLVE_REVIEW : STORE_OP_REVEAL;
		r->op.actor = "tok2efgh";
		r->op.actor_role = "support";
		r->op.render = t_render;
		r->op.open = t_open;
		r->op.ctx = r;
		r->op.resp = r->resp;
		r->op.resp_cap = sizeof(r->resp);
		r->op.review_id = nm[i].review_id;
		r->op.message_id = review ? NULL : nm[i].id;
		r->op.text = review ? (k % 2 ? "checked" : NULL) : "ticket 42";
		items[k++] = &r->it;
	}
	if (k && (store_apply(b->st, items, k, err, sizeof(err)) != 0 ||
	          store_sync(b->st, false, err, sizeof(err)) != 0))
		fail_msg("%s: %s", store_backend(b->st), err);
	for (size_t i = 0; i < k && i < cap; i++)
		out[i] = (int)ops[i].op.outcome * 1000 + (ops[i].op.number[0] != 0);
	arena_fini(&ar);
	return k;
}

static size_t run_seed(uint64_t seed)
{
	static struct workload w;
	struct backend s = {0}, p = {0};
	struct lines ls = {0}, lp = {0};
	size_t bad;

	build(&w, seed);
	open_sqlite(&s);
	open_pg(&p);
	apply_all(&s, &w, 0);
	save_outputs(&w);
	apply_all(&p, &w, 1);
	bad = compare_outputs(&w, seed);
	int out_s[2 * MAX_ITEMS], out_p[2 * MAX_ITEMS];
	size_t ks = support_ops(&s, out_s, 2 * MAX_ITEMS);
	size_t kp = support_ops(&p, out_p, 2 * MAX_ITEMS);
	if (ks != kp || memcmp(out_s, out_p, ks * sizeof(int)) != 0) {
		print_message("seed %llu: support's writes differ (%zu and %zu)\n",
		              (unsigned long long)seed, ks, kp);
		bad++;
	}
	snapshot(&s, &ls);
	snapshot(&p, &lp);
	bad += compare_snapshots(&ls, &lp, seed);
	if (getenv("DLRD_DIFF_SHOW")) {
		for (size_t i = 0; i < lp.n; i++)
			print_message("%s\n", lp.l[i]);
		for (size_t i = 0; i < w.n_rq; i++)
			print_message("request %zu %s: new %u dup %u review %u outcome %d status "
			              "%d merged %d\n",
			              i, req_kind(&w.rq[i]), w.rq[i].n_new, w.rq[i].n_dup,
			              w.rq[i].n_review, w.rq[i].outcome, w.rq[i].resp_status,
			              w.rq[i].merged);
	}
	free(ls.l);
	free(lp.l);
	close_both(&s, &p);
	return bad;
}

/* Seeds that once differed, run besides the first 20 (they depend on the
 * generator above: re-find such seeds when it changes).  24 adopts a
 * callback-created row into a send recorded later than the row's last
 * update; 57 merges one into a send by setting its provider id: both moved
 * updated_at back on SQLite before e58ea42. */
static const uint64_t regressions[] = {24, 57};

static void test_backends_agree(void **state)
{
	const char *one = getenv("DLRD_DIFF_SEED"), *many = getenv("DLRD_DIFF_SEEDS");
	uint64_t first = one && *one ? strtoull(one, NULL, 10) : 1;
	uint64_t n = one && *one ? 1 : many && *many ? strtoull(many, NULL, 10) : 20;
	size_t n_reg = one && *one ? 0 : sizeof(regressions) / sizeof(regressions[0]);
	size_t failed = 0;
	(void)state;

	for (uint64_t i = 0; i < n + n_reg; i++) {
		uint64_t seed = i < n ? first + i : regressions[i - n];
		size_t bad = run_seed(seed);
		if (bad) {
			print_message(
			    "seed %llu: %zu differences (DLRD_DIFF_SEED=%llu reruns it)\n",
			    (unsigned long long)seed, bad, (unsigned long long)seed);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

int main(void)
{
	if (!pgt_server())
		return pgt_not_configured("test_store_diff");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_backends_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
