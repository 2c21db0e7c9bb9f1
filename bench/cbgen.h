/* SPDX-License-Identifier: MIT */
/*
 * The benchmark's callback generator: deterministic streams of signed Twilio
 * status callbacks, shared by gen_callbacks (which writes them to files for
 * wrk) and loadgen (which generates them on the fly for the soak test).
 *
 * A chunk is n_messages messages with their whole lifecycles (accepted,
 * queued, sending, sent, then delivered / undelivered with an ErrorCode, or
 * accepted, queued, failed), about 4.9 events per message.  Events of
 * different messages interleave as they would in time; a fraction of events is
 * swapped with the previous event of the same message (out of order), a
 * fraction is repeated byte for byte a little later (exact duplicates, as a
 * Twilio retry), and optionally a fraction of bad requests (forged signature,
 * undecodable body) is mixed in.  The same parameters and chunk id always
 * give the same bytes.  Any thread; chunks share nothing.
 */
#ifndef DLRD_BENCH_CBGEN_H
#define DLRD_BENCH_CBGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CBGEN_PATH "/webhooks/twilio/status"

struct cbgen_params {
	const char *token;      /* Twilio auth token the daemon is configured with */
	const char *public_url; /* the daemon's server.public_url, no trailing slash */
	uint64_t seed;
	double dup_rate; /* fraction of good requests that are exact repeats */
	double ooo_rate; /* fraction of events delivered before their predecessor */
	double bad_rate; /* fraction of all requests that are bad (401 / 400) */
};

struct cbgen_req {
	unsigned expect;  /* the status the daemon must answer: 200, 401 or 400 */
	bool first;       /* first request carrying this (good) event */
	bool new_msg;     /* first request carrying this message */
	char sig[29];     /* X-Twilio-Signature */
	const char *body; /* in the chunk's text, not NUL-terminated */
	size_t body_len;
};

struct cbgen_chunk {
	struct cbgen_req *reqs; /* in sending order */
	size_t n;
	size_t n_messages, n_events, n_dups, n_ooo, n_bad;
	char *text; /* every body, back to back */
};

/* Generates chunk chunk_id (any number; different ids give different message
 * SIDs) of n_messages messages into a new chunk owned by the caller.  Returns
 * 0, or DLRD_EINVAL when a parameter is out of range. */
int cbgen_chunk_new(const struct cbgen_params *p, uint64_t chunk_id, size_t n_messages,
                    struct cbgen_chunk **out);
/* Frees a chunk; NULL is fine. */
void cbgen_chunk_free(struct cbgen_chunk *c);

#endif
