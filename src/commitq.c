/* SPDX-License-Identifier: MIT */
/*
 * Group commit.  Many HTTP threads push parked requests; one writer thread
 * takes everything queued at once, applies it in one transaction and
 * commits; a syncer thread then makes the commit durable (store_sync(): one
 * fdatasync for the whole batch) and only then completes
 * every item.  While a batch waits on the disk, the writer already builds the
 * next one, and new requests pile up to form the one after, so the batch size
 * grows with load by itself and no request waits for an fsync of its own.
 * See src/README.md.
 *
 * A failed commit completes its batch at once with an error (nothing of it
 * is visible).  A failed sync completes everything it covered with an error
 * and is final: from then on every batch fails without being applied and
 * /healthz says 503, until dlrd is restarted (see store_sync()).
 *
 * Ownership: the queue fields are guarded by mu, the syncer's list by smu.
 * An item belongs to the writer from push until it is handed to the syncer
 * or completed, then to the syncer until its complete() call.
 */
#include "commitq.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "store.h"

#define PROBE_INTERVAL_MS 1000 /* after a failure */
#define IDLE_PROBE_MS     5000 /* while healthy and idle */
/* A transaction or a sync that has not returned after this long makes
 * /healthz 503 (and is logged once) until it returns: a hung disk or a
 * database that stopped answering would otherwise look healthy while every
 * request waits.  Above SQLite's busy timeout (2 s), below PostgreSQL's
 * statement_timeout (10 s). */
#define STALL_MS 5000
struct synced_batch {
	struct commit_item *head; /* the batch's items, linked by next */
	size_t n;
	uint64_t t0; /* when the writer began the transaction */
};

struct commitq {
	struct store *st;
	unsigned capacity;
	unsigned max_batch;
	unsigned max_events; /* events per batch; its first item always goes */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct commit_item *head, *tail; /* queued, guarded by mu */
	size_t reserved;                 /* reserved + queued, guarded by mu */
	size_t inflight;                 /* reserved until answered, guarded by mu */
	bool stopping;                   /* guarded by mu */
	bool started;
	atomic_bool healthy;
	atomic_bool sync_failed; /* sticky, see the top of the file */
	/* when the running store_apply()/store_sync() began (monotonic ns), 0
	 * while none runs; and whether its stall was logged */
	_Atomic uint64_t apply_t0, sync_t0;
	atomic_bool stall_logged;
	/* pairs each storage_stalled line with one storage_unstalled line:
	 * held while stall_logged changes (stalled_ms(), stage_end()) */
	pthread_mutex_t stall_mu;
	atomic_size_t depth;
	pthread_t thread;
	struct commit_item **batch; /* writer-owned scratch */
	/* the committed batch waiting for the syncer to take it */
	pthread_t syncer;
	pthread_mutex_t smu;
	pthread_cond_t scv;
	struct synced_batch pending; /* guarded by smu */
	bool has_pending;            /* guarded by smu */
	bool writer_done;            /* guarded by smu */
};

/* n items were answered: their slots count against the capacity no longer.
 * Until then they do, wherever they wait (queued, in the writer's
 * transaction or in the syncer's fsync), so the capacity bounds the parked
 * requests, and with it the connections they hold. */
static void release(struct commitq *q, size_t n)
{
	pthread_mutex_lock(&q->mu);
	q->inflight -= n;
	pthread_mutex_unlock(&q->mu);
}

static void complete_all(struct commitq *q, struct commit_item **items, size_t n, int result)
{
	for (size_t i = 0; i < n; i++) {
		items[i]->result = result;
		items[i]->complete(items[i]);
	}
	release(q, n);
}

/* Writer and syncer: around store_apply() and store_sync(). */
static void stage_begin(_Atomic uint64_t *t0)
{
	atomic_store(t0, util_mono_ns());
}

static void stage_end(struct commitq *q, _Atomic uint64_t *t0, const char *stage)
{
	uint64_t began = atomic_exchange(t0, 0);

	/* t0 is cleared before the flag is read, and stalled_ms() sets the
	 * flag before it reads t0 again: if this sees no stall logged, that
	 * one sees the stage over and logs none (all seq_cst). */
	if (!atomic_load(&q->stall_logged))
		return;
	pthread_mutex_lock(&q->stall_mu);
	if (atomic_load(&q->stall_logged) && atomic_load(&q->apply_t0) == 0 &&
	    atomic_load(&q->sync_t0) == 0) {
		atomic_store(&q->stall_logged, false);
		LOG_I("storage_unstalled", "stage=%s took_ms=%llu", stage,
		      (unsigned long long)((util_mono_ns() - began) / 1000000));
	}
	pthread_mutex_unlock(&q->stall_mu);
}

/* Writer, while idle: store_probe(), a write transaction and a sync.  A
 * disk that hangs on an idle server is met here first, so the probe runs
 * under the commit's stall clock (a stall is logged as stage=commit). */
static int timed_probe(struct commitq *q, char *err, size_t errlen)
{
	stage_begin(&q->apply_t0);
	int rc = store_probe(q->st, err, errlen);
	stage_end(q, &q->apply_t0, "probe");
	return rc;
}

/* How long the oldest running stage (store_apply(), store_sync(), the
 * probe, store_maintain()) has run, in ms (0 when none runs); logs a stall
 * once. */
static uint64_t stalled_ms(const struct commitq *cq)
{
	struct commitq *q = (struct commitq *)cq;
	uint64_t a = atomic_load(&q->apply_t0), s = atomic_load(&q->sync_t0);
	uint64_t t0 = a && s ? (a < s ? a : s) : a ? a : s, now;
	uint64_t ms = t0 && (now = util_mono_ns()) > t0 ? (now - t0) / 1000000 : 0;

	if (ms < STALL_MS || atomic_load(&q->stall_logged))
		return ms < STALL_MS ? 0 : ms;
	/* a and s may be stale: the stage may have returned since, and its
	 * stage_end() found no stall to end.  Set the flag, then look again
	 * (see stage_end()); under stall_mu, so that a stage_end() that did
	 * see the flag waits for the line it ends. */
	pthread_mutex_lock(&q->stall_mu);
	if (!atomic_load(&q->stall_logged)) {
		atomic_store(&q->stall_logged, true);
		if (atomic_load(t0 == a ? &q->apply_t0 : &q->sync_t0) == t0) {
			LOG_E("storage_stalled",
			      "stage=%s for_ms=%llu note=\"until it returns, /healthz and new"
			      " requests get 503; those waiting for it are answered then\"",
			      t0 == a ? "commit" : "sync", (unsigned long long)ms);
		} else {
			atomic_store(&q->stall_logged, false);
			ms = 0; /* it returned (the other stage, if stalled too, is
			         * met at the next call) */
		}
	}
	pthread_mutex_unlock(&q->stall_mu);
	return ms;
}

/* Writer: waits until the syncer has taken the batch handed to it last. */
static void wait_syncer_took(struct commitq *q)
{
	pthread_mutex_lock(&q->smu);
	while (q->has_pending)
		pthread_cond_wait(&q->scv, &q->smu);
	pthread_mutex_unlock(&q->smu);
}

/* Writer: hands a committed batch to the syncer. */
static void hand_to_syncer(struct commitq *q, struct commit_item **items, size_t n, uint64_t t0)
{
	wait_syncer_took(q); /* already so: the writer waits before each batch */
	for (size_t i = 0; i < n; i++)
		items[i]->next = i + 1 < n ? items[i + 1] : NULL;
	pthread_mutex_lock(&q->smu);
	q->pending = (struct synced_batch){items[0], n, t0};
	q->has_pending = true;
	pthread_cond_broadcast(&q->scv);
	pthread_mutex_unlock(&q->smu);
}

/* Whether a batch holds a reveal.  Its answer discloses a number, which
 * cannot be taken back, and the audit row written with it is the only
 * record that it was: it must be durable before the answer leaves, even
 * under storage.synchronous=normal (store_sync()'s force). */
static bool must_be_durable(const struct commit_item *head)
{
	for (const struct commit_item *it = head; it; it = it->next)
		if (it->kind == CI_API && it->op && it->op->kind == STORE_OP_REVEAL)
			return true;
	return false;
}

/* The syncer: one store_sync() for each committed batch, then its answers,
 * with the commit latency measured to that moment. */
static void *syncer_main(void *arg)
{
	struct commitq *q = arg;
	char err[256];

	pthread_setname_np(pthread_self(), "dlrd-syncer"); /* top -H, perf */
	for (;;) {
		struct synced_batch b;

		pthread_mutex_lock(&q->smu);
		while (!q->has_pending && !q->writer_done)
			pthread_cond_wait(&q->scv, &q->smu);
		if (!q->has_pending) { /* the writer is done and all is answered */
			pthread_mutex_unlock(&q->smu);
			break;
		}
		b = q->pending;
		q->has_pending = false;
		pthread_cond_broadcast(&q->scv); /* the writer may start the next */
		pthread_mutex_unlock(&q->smu);

		int rc = DLRD_EIO;
		if (!atomic_load(&q->sync_failed)) {
			stage_begin(&q->sync_t0);
			rc = store_sync(q->st, must_be_durable(b.head), err, sizeof(err));
			stage_end(q, &q->sync_t0, "sync");
		}
		uint64_t now = util_mono_ns();
		if (rc != 0) {
			if (!atomic_exchange(&q->sync_failed, true)) {
				char qe[300];
				LOG_E("sync_failed",
				      "error=%s note=\"nothing is acknowledged again until"
				      " dlrd restarts\"",
				      log_quote(qe, sizeof(qe), err, strlen(err)));
			}
			atomic_store(&q->healthy, false);
		}
		metrics_commit(b.n, now - b.t0, rc == 0);
		for (struct commit_item *it = b.head, *next; it; it = next) {
			next = it->next;
			it->result = rc;
			it->complete(it);
		}
		release(q, b.n);
	}
	return NULL;
}

static void *writer_main(void *arg)
{
	struct commitq *q = arg;
	char err[256];

	pthread_setname_np(pthread_self(), "dlrd-writer");
	for (;;) {
		size_t n = 0;
		bool stopping;

		/* One batch syncs while the next is written: start a transaction
		 * only once the syncer has taken the last one, so that requests
		 * arriving meanwhile join this batch instead of making many small
		 * commits (each rewrites the hot pages to the WAL). */
		wait_syncer_took(q);

		pthread_mutex_lock(&q->mu);
		/* Leave only when stopping and no reserved slot can still be
		 * pushed: every pushed item must be completed. */
		while (!q->head && !(q->stopping && q->reserved == 0)) {
			/* With nothing to write, probe storage now and then so
			 * /healthz tells the truth without traffic: every second
			 * after a failure until it recovers, every few seconds
			 * while healthy (a database server can go away). */
			bool healthy = atomic_load(&q->healthy);
			struct timespec ts;
			util_deadline(&ts, healthy ? IDLE_PROBE_MS : PROBE_INTERVAL_MS);
			if (pthread_cond_timedwait(&q->cv, &q->mu, &ts) != 0 && !q->head &&
			    !q->stopping) {
				pthread_mutex_unlock(&q->mu);
				if (atomic_load(&q->sync_failed)) {
					/* final; the syncer said why */
				} else if (timed_probe(q, err, sizeof(err)) == 0) {
					if (!atomic_exchange(&q->healthy, true))
						LOG_I("storage_recovered", "backend=%s",
						      store_backend(q->st));
				} else if (atomic_exchange(&q->healthy, false)) {
					char qe[300];
					LOG_E("storage_unavailable", "backend=%s error=%s",
					      store_backend(q->st),
					      log_quote(qe, sizeof(qe), err, strlen(err)));
				}
				pthread_mutex_lock(&q->mu);
			}
		}
		/* up to max_batch items and max_events events: one request may
		 * carry a thousand (dlrd_limits.h) */
		size_t events = 0;
		while (q->head && n < q->max_batch &&
		       (n == 0 || events + q->head->n_events <= q->max_events)) {
			events += q->head->n_events;
			q->batch[n++] = q->head;
			q->head = q->head->next;
		}
		if (!q->head)
			q->tail = NULL;
		q->reserved -= n;
		stopping = q->stopping && q->reserved == 0;
		atomic_store(&q->depth, q->reserved);
		pthread_mutex_unlock(&q->mu);

		if (n && atomic_load(&q->sync_failed)) {
			/* no transaction: nothing to put in the histograms */
			metrics_commit_refused();
			complete_all(q, q->batch, n, DLRD_EIO);
		} else if (n) {
			uint64_t t0 = util_mono_ns();
			stage_begin(&q->apply_t0);
			int rc = store_apply(q->st, q->batch, n, err, sizeof(err));
			stage_end(q, &q->apply_t0, "commit");
			if (rc != 0) {
				metrics_commit(n, util_mono_ns() - t0, false);
				if (atomic_exchange(&q->healthy, false)) {
					char qe[300];
					LOG_E("commit_failed", "batch=%zu error=%s", n,
					      log_quote(qe, sizeof(qe), err, strlen(err)));
				}
				complete_all(q, q->batch, n, rc);
			} else {
				if (!atomic_load(&q->sync_failed) &&
				    !atomic_exchange(&q->healthy, true))
					LOG_I("storage_recovered", "backend=%s",
					      store_backend(q->st));
				hand_to_syncer(q, q->batch, n, t0);
				/* A checkpoint, which may wait for the
				 * checkpointer's: on a slow disk a stall like a
				 * commit's. */
				stage_begin(&q->apply_t0);
				store_maintain(q->st);
				stage_end(q, &q->apply_t0, "maintain");
			}
		}
		if (stopping)
			break;
	}
	return NULL;
}

int commitq_new(struct store *st, unsigned capacity, unsigned max_batch, unsigned max_events,
                struct commitq **out)
{
	struct commitq *q = xcalloc(1, sizeof(*q));

	q->st = st;
	q->capacity = capacity;
	q->max_batch = max_batch;
	q->max_events = max_events;
	q->batch = xcalloc(max_batch, sizeof(*q->batch));
	atomic_init(&q->healthy, true);
	atomic_init(&q->sync_failed, false);
	atomic_init(&q->depth, 0);
	atomic_init(&q->apply_t0, 0);
	atomic_init(&q->sync_t0, 0);
	atomic_init(&q->stall_logged, false);
	pthread_mutex_init(&q->mu, NULL);
	util_cond_init(&q->cv);
	pthread_mutex_init(&q->smu, NULL);
	pthread_cond_init(&q->scv, NULL);
	pthread_mutex_init(&q->stall_mu, NULL);
	if (pthread_create(&q->syncer, NULL, syncer_main, q) != 0) {
		free(q->batch);
		free(q);
		return DLRD_EIO;
	}
	if (pthread_create(&q->thread, NULL, writer_main, q) != 0) {
		pthread_mutex_lock(&q->smu);
		q->writer_done = true;
		pthread_cond_broadcast(&q->scv);
		pthread_mutex_unlock(&q->smu);
		pthread_join(q->syncer, NULL);
		free(q->batch);
		free(q);
		return DLRD_EIO;
	}
	q->started = true;
	*out = q;
	return 0;
}

int commitq_reserve(struct commitq *q)
{
	int rc = 0;

	/* Storage that has not answered for STALL_MS: a new request would only
	 * wait behind it, holding a connection, with no answer to expect. */
	if (stalled_ms(q) != 0)
		return DLRD_EBUSY;
	pthread_mutex_lock(&q->mu);
	if (q->stopping || q->inflight >= q->capacity) {
		rc = DLRD_EFULL;
	} else {
		q->reserved++;
		q->inflight++;
	}
	pthread_mutex_unlock(&q->mu);
	return rc;
}

void commitq_unreserve(struct commitq *q)
{
	pthread_mutex_lock(&q->mu);
	q->reserved--;
	q->inflight--;
	atomic_store(&q->depth, q->reserved);
	if (q->stopping)
		pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

void commitq_push(struct commitq *q, struct commit_item *it)
{
	bool wake;

	it->next = NULL;
	pthread_mutex_lock(&q->mu);
	wake = q->head == NULL || q->stopping;
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	atomic_store(&q->depth, q->reserved);
	pthread_mutex_unlock(&q->mu);
	/* The writer only sleeps on an empty queue; while it commits, pushes
	 * join the next batch without a wake-up. */
	if (wake)
		pthread_cond_signal(&q->cv);
}

void commitq_stop(struct commitq *q)
{
	if (!q->started)
		return;
	pthread_mutex_lock(&q->mu);
	q->stopping = true;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	pthread_join(q->thread, NULL);
	/* the syncer answers what the writer handed it, then leaves */
	pthread_mutex_lock(&q->smu);
	q->writer_done = true;
	pthread_cond_broadcast(&q->scv);
	pthread_mutex_unlock(&q->smu);
	pthread_join(q->syncer, NULL);
	q->started = false;
}

void commitq_free(struct commitq *q)
{
	if (!q)
		return;
	commitq_stop(q);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->smu);
	pthread_cond_destroy(&q->scv);
	pthread_mutex_destroy(&q->stall_mu);
	free(q->batch);
	free(q);
}

size_t commitq_depth(const struct commitq *q)
{
	return atomic_load(&((struct commitq *)q)->depth);
}

bool commitq_healthy(const struct commitq *q)
{
	struct commitq *w = (struct commitq *)q;
	/* sync_failed too: the writer may set healthy after a commit just as
	 * the syncer's failure clears it, and a failed sync is final. */
	return atomic_load(&w->healthy) && !atomic_load(&w->sync_failed) && stalled_ms(w) == 0;
}

struct store *commitq_store(const struct commitq *q)
{
	return q->st;
}
