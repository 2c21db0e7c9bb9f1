/* SPDX-License-Identifier: MIT */
/*
 * Group commit.  Many HTTP threads push parked requests; one writer thread
 * takes everything queued at once, applies it in one transaction, commits
 * (one fsync for the whole batch), and only then completes every item.  While
 * the writer waits on the disk, new requests pile up and form the next batch,
 * so the batch size grows with load by itself and no request waits for an
 * fsync of its own.  See src/README.md.
 *
 * Ownership: the queue fields are guarded by mu.  An item belongs to the
 * writer from push until its complete() call.
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

struct commitq {
	struct store *st;
	unsigned capacity;
	unsigned max_batch;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct commit_item *head, *tail; /* queued, guarded by mu */
	size_t reserved;                 /* reserved + queued, guarded by mu */
	bool stopping;                   /* guarded by mu */
	bool started;
	atomic_bool healthy;
	atomic_size_t depth;
	pthread_t thread;
	struct commit_item **batch; /* writer-owned scratch */
};

static void complete_all(struct commit_item **items, size_t n, int result)
{
	for (size_t i = 0; i < n; i++) {
		items[i]->result = result;
		items[i]->complete(items[i]);
	}
}

static void *writer_main(void *arg)
{
	struct commitq *q = arg;
	char err[256];

	for (;;) {
		size_t n = 0;
		bool stopping;

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
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += (healthy ? IDLE_PROBE_MS : PROBE_INTERVAL_MS) / 1000;
			if (pthread_cond_timedwait(&q->cv, &q->mu, &ts) != 0 && !q->head &&
			    !q->stopping) {
				pthread_mutex_unlock(&q->mu);
				if (store_probe(q->st, err, sizeof(err)) == 0) {
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
		while (q->head && n < q->max_batch) {
			q->batch[n++] = q->head;
			q->head = q->head->next;
		}
		if (!q->head)
			q->tail = NULL;
		q->reserved -= n;
		stopping = q->stopping && q->reserved == 0;
		atomic_store(&q->depth, q->reserved);
		pthread_mutex_unlock(&q->mu);

		if (n) {
			uint64_t t0 = util_mono_ns();
			int rc = store_apply(q->st, q->batch, n, err, sizeof(err));
			uint64_t dt = util_mono_ns() - t0;
			metrics_commit(n, dt, rc == 0);
			if (rc != 0) {
				if (atomic_exchange(&q->healthy, false)) {
					char qe[300];
					LOG_E("commit_failed", "batch=%zu error=%s", n,
					      log_quote(qe, sizeof(qe), err, strlen(err)));
				}
				complete_all(q->batch, n, rc);
			} else {
				if (!atomic_exchange(&q->healthy, true))
					LOG_I("storage_recovered", "backend=%s",
					      store_backend(q->st));
				complete_all(q->batch, n, 0);
			}
		}
		if (stopping)
			break;
	}
	return NULL;
}

int commitq_new(struct store *st, unsigned capacity, unsigned max_batch, struct commitq **out)
{
	struct commitq *q = xcalloc(1, sizeof(*q));

	q->st = st;
	q->capacity = capacity;
	q->max_batch = max_batch;
	q->batch = xcalloc(max_batch, sizeof(*q->batch));
	atomic_init(&q->healthy, true);
	atomic_init(&q->depth, 0);
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	if (pthread_create(&q->thread, NULL, writer_main, q) != 0) {
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
	pthread_mutex_lock(&q->mu);
	if (q->stopping || q->reserved >= q->capacity)
		rc = DLRD_EFULL;
	else
		q->reserved++;
	pthread_mutex_unlock(&q->mu);
	return rc;
}

void commitq_unreserve(struct commitq *q)
{
	pthread_mutex_lock(&q->mu);
	q->reserved--;
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
	q->started = false;
}

void commitq_free(struct commitq *q)
{
	if (!q)
		return;
	commitq_stop(q);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	free(q->batch);
	free(q);
}

size_t commitq_depth(const struct commitq *q)
{
	return atomic_load(&((struct commitq *)q)->depth);
}

bool commitq_healthy(const struct commitq *q)
{
	return atomic_load(&((struct commitq *)q)->healthy);
}

struct store *commitq_store(const struct commitq *q)
{
	return q->st;
}
