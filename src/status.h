/* SPDX-License-Identifier: MIT */
/*
 * The normalized delivery lifecycle and the precedence rule that folds a set
 * of events into a message's summary.
 *
 * The summary is a pure function of the *set* of events stored for a message:
 * status_fold() is commutative, associative and idempotent, so any arrival
 * order of the same callbacks, duplicates included, gives the same summary.
 * It works by ranking every event with a total order (status_event_cmp) and
 * keeping the maximum, plus the union (bitmask) of statuses seen.
 *
 * Precedence (status_rank):
 *   accepted < sent < unknown < failed < rejected < expired < undelivered < delivered
 * - a final state is never replaced by a non-final one;
 * - sent is never replaced by accepted;
 * - unknown (final but inconclusive) yields to any definitive final state;
 * - two different definitive final states are a conflict: the summary keeps the
 *   higher-ranked one (a positive handset receipt is the strongest evidence,
 *   then carrier-level outcomes before provider-level ones), sets the conflict
 *   flag, and the writer puts a row in the review queue.
 * Ties between events of the same status are broken by provider time, then
 * error code, then raw status (byte order), so the choice never depends on
 * arrival order.
 */
#ifndef DLRD_STATUS_H
#define DLRD_STATUS_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

enum dlr_status {
	ST_ACCEPTED = 0,
	ST_SENT,
	ST_DELIVERED,
	ST_UNDELIVERED,
	ST_FAILED,
	ST_EXPIRED,
	ST_REJECTED,
	ST_UNKNOWN,
	ST__COUNT
};

/* "accepted", "sent", ... */
const char *status_name(enum dlr_status s);
/* Parses a normalized status name; returns 0 or DLRD_EINVAL. */
int status_parse(const char *s, size_t n, enum dlr_status *out);
bool status_is_final(enum dlr_status s);
/* A final state other than unknown. */
bool status_is_definitive(enum dlr_status s);
/* Precedence rank: higher wins. */
int status_rank(enum dlr_status s);

/* The part of an event that decides precedence. Strings may be NULL. */
struct status_key {
	enum dlr_status status;
	int64_t occurred_ms; /* provider time, -1 when the provider gave none */
	const char *error_code;
	const char *raw_status;
};

/* Total order on events for precedence: <0, 0, >0. */
int status_event_cmp(const struct status_key *a, const struct status_key *b);

/* The summary fields that depend only on the set of events. */
struct status_summary {
	bool has_event;
	struct status_key top; /* the winning event (strings borrowed) */
	uint32_t mask;         /* bit (1 << status) for every status seen */
	bool read;             /* some event carried a read receipt */
};

/* Folds one event into the summary (commutative, idempotent). */
void status_fold(struct status_summary *sum, const struct status_key *ev, bool read);
/* True when the mask holds two or more different definitive final states. */
bool status_mask_conflict(uint32_t mask);

#endif
