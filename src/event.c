/* SPDX-License-Identifier: MIT */
/*
 * The deduplication key of a normalized event.
 *
 * With a provider event id the key is that id.  Without one it is the tuple
 * (provider, message id, raw status, error code, provider time), plus the
 * recipient's tag where one message id covers several recipients reported
 * one by one (dedup_recipient): the fields a provider repeats verbatim when
 * it retries, and nothing per attempt (no timestamps of the request, nonces,
 * JWT ids or attempt counters).  Fields are length-prefixed before hashing
 * so no two tuples collide by concatenation (nor a tuple with the tag with
 * one without).
 */
#include "event.h"

#include <stdio.h>
#include <string.h>

#include "crypto.h"
#include "util.h"

const char *review_reason_name(enum review_reason r)
{
	switch (r) {
	case REVIEW_UNKNOWN_STATUS:
		return "unknown_status";
	case REVIEW_UNUSABLE:
		return "unusable_payload";
	case REVIEW_FINAL_CONFLICT:
		return "final_conflict";
	case REVIEW_NONE:
		break;
	}
	return "none";
}

static size_t put_field(char *buf, size_t at, size_t cap, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	/* 0xffffffff marks NULL, so NULL and "" differ */
	uint32_t len = s ? (uint32_t)n : 0xffffffffu;
	if (at + 4 > cap)
		return at; /* cannot happen: adapters cap ids far below */
	if (n > cap - at - 4)
		n = cap - at - 4;
	memcpy(buf + at, &len, 4);
	memcpy(buf + at + 4, s ? s : "", n);
	return at + 4 + n;
}

void event_finish(struct dlr_event *ev)
{
	char buf[2048];
	size_t at = 0;
	uint8_t md[CRYPTO_SHA256_LEN];

	/* SQLite's text has four-digit years and PostgreSQL's timestamptz ends
	 * there too; before 1970 is no provider's clock, and -1 means none. */
	if (ev->occurred_ms < 0 || ev->occurred_ms > UTIL_TIME_MAX_MS)
		ev->occurred_ms = -1;
	if (ev->kind == EV_INBOUND) {
		buf[at++] = 'I';
		at = put_field(buf, at, sizeof(buf), ev->provider);
		at = put_field(buf, at, sizeof(buf),
		               ev->provider_event_id ? ev->provider_event_id
		                                     : ev->provider_message_id);
	} else if (ev->provider_event_id) {
		buf[at++] = 'E';
		at = put_field(buf, at, sizeof(buf), ev->provider);
		at = put_field(buf, at, sizeof(buf), ev->provider_event_id);
	} else {
		char ts[24] = "";
		if (ev->occurred_ms >= 0)
			snprintf(ts, sizeof(ts), "%lld", (long long)ev->occurred_ms);
		buf[at++] = 'K';
		at = put_field(buf, at, sizeof(buf), ev->provider);
		at = put_field(buf, at, sizeof(buf), ev->provider_message_id);
		at = put_field(buf, at, sizeof(buf), ev->raw_status);
		at = put_field(buf, at, sizeof(buf), ev->error_code);
		at = put_field(buf, at, sizeof(buf), ev->occurred_ms >= 0 ? ts : NULL);
		if (ev->dedup_recipient)
			at = put_field(buf, at, sizeof(buf), ev->dedup_recipient);
	}
	crypto_sha256(buf, at, md);
	crypto_hex(md, sizeof(md), ev->dedup_key);
}
