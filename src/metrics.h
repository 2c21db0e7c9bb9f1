/* SPDX-License-Identifier: MIT */
/*
 * Prometheus metrics: lock-free atomic counters and fixed-bucket histograms,
 * rendered as text for GET /metrics.  Any thread.
 */
#ifndef DLRD_METRICS_H
#define DLRD_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

enum cb_outcome {
	CB_STORED = 0,   /* at least one new event stored */
	CB_DUPLICATE,    /* every event was a duplicate */
	CB_REVIEW,       /* stored, and went to the review queue */
	CB_UNAUTHORIZED, /* signature missing, wrong or stale */
	CB_BAD_REQUEST,  /* malformed: 400 */
	CB_TOO_LARGE,    /* 413 */
	CB_UNSUPPORTED,  /* 405 / 415 */
	CB_UNAVAILABLE,  /* 503: queue full, storage failed, or a provider's "try later" */
	CB_HANDSHAKE,    /* verified, answered, nothing to store (SNS subscription) */
	CB__COUNT
};

void metrics_init(size_t n_providers);
void metrics_callback(size_t provider_idx, enum cb_outcome o);
void metrics_duplicates(size_t provider_idx, unsigned n);
void metrics_review(size_t provider_idx, unsigned n);
void metrics_commit(size_t batch_size, uint64_t latency_ns, bool ok);
/* A batch refused without a transaction (after a failed sync, see
 * commitq.c): a failure, but no observation in either histogram. */
void metrics_commit_refused(void);
/* A storage transaction attempt rolled back and tried again inside the same
 * batch (PostgreSQL: a deadlock or serialization failure between nodes);
 * the batch's outcome is counted by metrics_commit() as usual. */
void metrics_storage_retry(void);
/* HTTP requests by status class, for all paths. */
void metrics_http(unsigned status);
/* A connection cut off at its deadline (http.c's watchdog, logged as
 * request_deadline at most 10 times a second): idle false for a request
 * that did not arrive, or an answer not taken, within
 * server.request_timeout_ms; true for a request line dribbled past
 * idle_timeout_s plus that. */
void metrics_deadline(bool idle);

/* Renders every metric; queue_depth, parked and healthy are sampled by the
 * caller.
 * Returns a heap string the caller frees; *len gets its length. */
char *metrics_render(size_t queue_depth, size_t parked, bool healthy, size_t *len);

#endif
