/* SPDX-License-Identifier: MIT */
/*
 * The normalized event: what a provider adapter makes of one callback (or of
 * one element of a callback that carries several), and what the commit queue
 * hands to storage.  Strings are NUL-terminated and live in the request's
 * arena; the event is owned by the HTTP thread until it is queued, then by
 * the writer thread until the request is resumed.
 */
#ifndef DLRD_EVENT_H
#define DLRD_EVENT_H

#include <stdbool.h>
#include <stdint.h>
#include "errcat.h"
#include "optout.h"
#include "status.h"

enum event_kind {
	EV_STATUS = 0, /* a delivery status for an outbound message */
	EV_UNUSABLE,   /* authenticated but unusable: goes to the review queue only */
	EV_INBOUND,    /* an inbound message from an end user (never in a timeline) */
};

/* Why an event also goes to the review queue (none when REVIEW_NONE). */
enum review_reason {
	REVIEW_NONE = 0,
	REVIEW_UNKNOWN_STATUS, /* a raw status dlrd cannot map */
	REVIEW_UNUSABLE,       /* no message id or otherwise unusable payload */
	REVIEW_FINAL_CONFLICT, /* set by storage when two definitive finals meet */
};
const char *review_reason_name(enum review_reason r);

struct dlr_event {
	enum event_kind kind;
	const char *provider;            /* provider name, static */
	const char *provider_message_id; /* canonical form, NULL for EV_UNUSABLE;
	                                  * the inbound message's own id for EV_INBOUND */
	const char *provider_event_id;   /* NULL when the provider has none */
	/* Without an event id: what tells apart the recipients of one message
	 * (a privacy_tag() of the recipient as sent) when the provider reports
	 * each on its own, or NULL. */
	const char *dedup_recipient;
	enum dlr_status status;
	const char *raw_status; /* as the provider sent it */
	const char *error_code; /* provider's own code as text, or NULL */
	int64_t occurred_ms;    /* provider event time, -1 when absent */
	bool read;              /* read receipt */
	/* The end user's side and ours.  Outbound: the recipient, and our
	 * sender id.  Inbound: the user who wrote (recipient_hash is then the
	 * sender's number), and our number or short code they wrote to. */
	const char *recipient_hash;      /* hex HMAC of the user's E.164 number, or NULL */
	const char *recipient_masked;    /* the number masked for display (phone_mask), or NULL */
	const char *destination_country; /* the user's country, ISO 3166 alpha-2, or NULL */
	bool country_from_number;        /* destination_country was derived from the number,
	                                  * not supplied by the provider */
	const char *sender_identity;     /* our number / sender id, or NULL */
	enum err_reason error_reason;    /* set centrally from the catalogue, unless the
	                                  * adapter set it from the raw status (ER_CANCELED
	                                  * for a canceled message, which has no code) */
	const char *error_title;         /* the provider's title for error_code, or NULL */
	/* EV_INBOUND only */
	const char *text; /* message body, NUL-terminated, in the arena */
	size_t text_len;
	enum optout_kind
	    keyword; /* the provider's verdict (optout_verdict()), else centrally from text */
	/* One part of a message the provider delivers in several webhooks
	 * (Vonage's concatenated inbound SMS): stored as it is, but never a
	 * keyword, since a keyword is the whole message (optout.h). */
	bool text_is_part;
	enum review_reason review;
	const char *review_detail; /* short text for the review row, or NULL */
	char dedup_key[65];        /* hex SHA-256, set by event_finish(); for an
	                            * EV_UNUSABLE event http.c replaces it with a
	                            * keyed digest of the request ("" for none) */
};

/* Computes ev->dedup_key: the provider event id when there is one, otherwise
 * (provider, message id, raw status, error code, provider time[, recipient
 * tag when dedup_recipient is set]); for inbound
 * messages (provider, inbound message id).  Per-attempt fields never take
 * part.  Call once the adapter has filled the event.  A provider time
 * outside 1970..9999 (UTC) becomes no time (-1) first, on every backend. */
void event_finish(struct dlr_event *ev);

#endif
