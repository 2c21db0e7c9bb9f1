/* SPDX-License-Identifier: MIT */
/*
 * The commit queue: group commit between many HTTP threads and the single
 * writer thread that owns the database.  See src/README.md for the protocol.
 *
 * HTTP thread:  commitq_reserve()  -> 503 at once when full
 *               suspend the connection, commitq_push(item)
 * Writer:       takes everything queued (up to max_batch requests and
 *               max_events events), store_apply() in
 *               one transaction, commits, hands the batch to the syncer.
 * Syncer:       store_sync() once for every batch handed to it so far, then
 *               calls item->complete() for each item, which resumes its
 *               connection with the answer.
 *
 * Every pushed item gets exactly one complete() call, whatever happens to
 * storage, and only after its transaction is durable (result 0), rolled back,
 * or not known to be durable (result < 0).
 */
#ifndef DLRD_COMMITQ_H
#define DLRD_COMMITQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "event.h"
#include "util.h"

struct store;
struct store_op;
struct commitq;

/* What a commit item carries: a callback's events (the ingest path), or
 * one write of the JSON API (struct store_op, store.h), applied by the
 * writer in the same batch transaction. */
enum commit_kind { CI_CALLBACK = 0, CI_API };

/* One request on its way to disk.  Owned by the HTTP layer; the
 * writer reads the input fields and writes the output fields between push and
 * complete, and nobody else touches it meanwhile. */
struct commit_item {
	/* input, set before push */
	const char *provider;
	struct dlr_event *events;
	size_t n_events;
	struct iov raw_payload; /* body, or the query string for GET */
	/* When a request carries several events: the keyed digest (64 hex
	 * characters) under which the backend keeps raw_payload once, in
	 * sms_payloads, each row naming it; "" keeps it in each row */
	char payload_id[65];
	int64_t received_ms;
	enum commit_kind kind; /* CI_CALLBACK (0) unless set */
	struct store_op *op;   /* CI_API: the operation, its input and output */
	/* output, set by the writer before complete() */
	int result;        /* 0 durable, <0 rolled back */
	uint32_t n_new;    /* events stored for the first time */
	uint32_t n_dup;    /* duplicates (retry-log row only) */
	uint32_t n_review; /* review-queue rows added */
	/* completion, called once, on the syncer thread (the writer's when the
	 * batch failed) */
	void (*complete)(struct commit_item *it);
	struct commit_item *next; /* queue link, writer-owned */
};

/* Starts the writer thread over st (borrowed; must outlive the queue). */
int commitq_new(struct store *st, unsigned capacity, unsigned max_batch, unsigned max_events,
                struct commitq **out);
/* Takes a slot for one item; DLRD_EFULL when capacity is reached or the
 * queue is stopping, DLRD_EBUSY while a commit or a sync has not returned
 * for 5 s (a stall, see commitq_healthy()).  A slot is held until the
 * item's complete() call has returned, wherever the item waits meanwhile,
 * so capacity bounds the requests parked at once.  Any thread. */
int commitq_reserve(struct commitq *q);
/* Gives a reserved slot back without pushing. */
void commitq_unreserve(struct commitq *q);
/* Queues it into a reserved slot.  Any thread. */
void commitq_push(struct commitq *q, struct commit_item *it);
/* Refuses new reservations, commits everything queued, stops the writer. */
void commitq_stop(struct commitq *q);
/* Stops (if not yet) and frees. */
void commitq_free(struct commitq *q);
/* Items queued or reserved right now. */
size_t commitq_depth(const struct commitq *q);
/* False after a failed commit until a later transaction succeeds, after a
 * failed sync for good, and while a commit, a sync, the writer's idle probe
 * or its store_maintain() has run for over 5 s (logged once:
 * event=storage_stalled). */
bool commitq_healthy(const struct commitq *q);
/* The store the writer applies batches to (borrowed), for readers that run
 * beside the writer (the JSON API's read methods). */
struct store *commitq_store(const struct commitq *q);

#endif
