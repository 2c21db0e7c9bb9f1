/* SPDX-License-Identifier: MIT */
/*
 * The error catalogue: every provider's error codes mapped onto one small set
 * of normalized reasons, so dashboards can compare failures across
 * providers, and support gets a plain-language note and a next step.  Each
 * provider lists its own codes in its file (struct provider.errors); this
 * module owns the reasons, their notes, and the lookup.  Read-only tables;
 * any thread.
 */
#ifndef DLRD_ERRCAT_H
#define DLRD_ERRCAT_H

#include "status.h"

enum err_reason {
	ER_NONE = 0,              /* no error */
	ER_INVALID_NUMBER,        /* not a valid or assigned number */
	ER_LANDLINE,              /* landline or otherwise not SMS-capable */
	ER_UNREACHABLE,           /* handset off, out of coverage, absent: often temporary */
	ER_CARRIER_FILTERED,      /* the carrier filtered or blocked the content */
	ER_SPAM_BLOCKED,          /* blocked as spam or by the provider's policy */
	ER_OPTED_OUT,             /* the recipient opted out (STOP) */
	ER_SENDER_NOT_REGISTERED, /* sender id / 10DLC / toll-free not registered */
	ER_EXPIRED,               /* validity period ran out before delivery */
	ER_OUT_OF_CREDIT,         /* account balance or limit */
	ER_RATE_LIMITED,          /* throughput or queue limits */
	ER_PROVIDER_ERROR,        /* the provider or carrier failed internally */
	ER_UNKNOWN,               /* a failure the catalogue cannot place */
	ER_CANCELED,              /* canceled on purpose before it was sent (a
	                           * scheduled message canceled through the API) */
	ER__COUNT
};

/* One provider error code.  Provider files keep an array of these, ended by
 * a {NULL} entry. */
struct provider_error {
	const char *code; /* the provider's code as text */
	enum err_reason reason;
	const char *title; /* the provider's own short title */
};

/* "invalid_number", "landline", ... */
const char *errcat_name(enum err_reason r);
/* A plain-language note for support, and the suggested next step. */
const char *errcat_note(enum err_reason r);
const char *errcat_next_step(enum err_reason r);

/* The reason for (code, status) in table (may be NULL).  No code (or "0")
 * on a successful or pending status is ER_NONE; a failure without a known
 * code falls back on the status (expired -> ER_EXPIRED, else ER_UNKNOWN).
 * *title gets the provider's title when the code is known (may be NULL). */
enum err_reason errcat_classify(const struct provider_error *table, const char *code,
                                enum dlr_status status, const char **title);

#endif
