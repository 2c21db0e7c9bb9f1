/* SPDX-License-Identifier: MIT */
/*
 * The normalized lifecycle and its precedence fold (see status.h for the
 * rule and why it makes the summary independent of arrival order).
 */
#include "status.h"

#include <string.h>

#include "util.h"

static const char *const names[ST__COUNT] = {
    [ST_ACCEPTED] = "accepted",       [ST_SENT] = "sent",       [ST_DELIVERED] = "delivered",
    [ST_UNDELIVERED] = "undelivered", [ST_FAILED] = "failed",   [ST_EXPIRED] = "expired",
    [ST_REJECTED] = "rejected",       [ST_UNKNOWN] = "unknown",
};

/* Higher wins.  Finals all rank above non-finals; unknown is the weakest
 * final; among definitive finals a handset receipt beats carrier-level
 * outcomes, which beat provider-level ones. */
static const int ranks[ST__COUNT] = {
    [ST_ACCEPTED] = 1, [ST_SENT] = 2,    [ST_UNKNOWN] = 3,     [ST_FAILED] = 4,
    [ST_REJECTED] = 5, [ST_EXPIRED] = 6, [ST_UNDELIVERED] = 7, [ST_DELIVERED] = 8,
};

const char *status_name(enum dlr_status s)
{
	return (unsigned)s < ST__COUNT ? names[s] : "unknown";
}

int status_parse(const char *s, size_t n, enum dlr_status *out)
{
	for (int i = 0; i < ST__COUNT; i++) {
		if (strlen(names[i]) == n && memcmp(names[i], s, n) == 0) {
			*out = (enum dlr_status)i;
			return 0;
		}
	}
	return DLRD_EINVAL;
}

bool status_is_final(enum dlr_status s)
{
	return s != ST_ACCEPTED && s != ST_SENT;
}

bool status_is_definitive(enum dlr_status s)
{
	return status_is_final(s) && s != ST_UNKNOWN;
}

int status_rank(enum dlr_status s)
{
	return (unsigned)s < ST__COUNT ? ranks[s] : 0;
}

/* NULL sorts before every string. */
static int strcmp_null(const char *a, const char *b)
{
	if (!a || !b)
		return (a != NULL) - (b != NULL);
	return strcmp(a, b);
}

int status_event_cmp(const struct status_key *a, const struct status_key *b)
{
	int c = status_rank(a->status) - status_rank(b->status);
	if (c)
		return c;
	if (a->occurred_ms != b->occurred_ms)
		return a->occurred_ms < b->occurred_ms ? -1 : 1;
	c = strcmp_null(a->error_code, b->error_code);
	if (c)
		return c;
	return strcmp_null(a->raw_status, b->raw_status);
}

void status_fold(struct status_summary *sum, const struct status_key *ev, bool read)
{
	if (!sum->has_event || status_event_cmp(ev, &sum->top) > 0)
		sum->top = *ev;
	sum->has_event = true;
	sum->mask |= 1u << ev->status;
	sum->read = sum->read || read;
}

bool status_mask_conflict(uint32_t mask)
{
	uint32_t definitive = 0;
	for (int s = 0; s < ST__COUNT; s++)
		if (status_is_definitive((enum dlr_status)s))
			definitive |= 1u << s;
	mask &= definitive;
	return (mask & (mask - 1)) != 0;
}
