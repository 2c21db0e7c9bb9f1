/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the JSON API's request validation (api.c), without HTTP: the
 * handlers of POST /v1/messages (a send record), PATCH /v1/messages/{id},
 * POST .../reveal, POST /v1/review/{id}/resolve, and the query strings of
 * GET /v1/messages, /v1/review, /v1/audit and /v1/stats.
 *
 * src/api.c is included, with the store's entry points replaced by stubs
 * that keep the query they are given and answer "not supported" (501), and
 * store_api_writes() answering false, so an accepted write ends in park()'s
 * 501 before any queue is touched.  A 501 "not_implemented" is therefore
 * "the request was valid".
 *
 * Input: one flags byte, then parts separated by 0x1e:
 *   body-or-query 0x1e Idempotency-Key-or-{id} 0x1e Content-Type
 * Flags % 8 picks the handler: 0 send, 1 patch, 2 search, 3 review list,
 * 4 audit list, 5 stats, 6 reveal, 7 resolve.  For patch, reveal and
 * resolve an empty second part means a valid id.  Flag 8 gives no
 * Content-Type header at all; flags >> 4 picks the provider of the message a
 * PATCH names.
 *
 * Properties:
 * - every answer is one of the documented statuses with a JSON body; an
 *   error's body is {"error":{"code":...,"message":...}} with a "field"
 *   for every 422 but an unnamed unknown member or parameter;
 * - a send whose members keep to the documented limits on their sizes
 *   (metadata at most 4096 bytes as compact JSON, 8 deep) is never refused
 *   as invalid JSON (too many values);
 * - an accepted send has its fields within the limits and of their kinds
 *   (slugs, printable text, an assigned country, a known provider, compact
 *   metadata that parses back to the member sent), and the same body with
 *   its members in another order and other white space is the same request
 *   (same request hash), so an idempotent retry is recognized;
 * - a PATCH hands the store a provider message id that is bounded,
 *   printable and canonical for the message's provider;
 * - the list handlers hand the store a limit of 2..501, valid statuses,
 *   canonical times (RFC 3339, UTC, milliseconds, years 0001-9999), an
 *   upper-case country and a canonical cursor, and a stats window of at
 *   most 31 days.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "util.h"

static struct store_query fapi_sq;
static struct store_review_query fapi_rq;
static struct store_audit_query fapi_aq;
static struct store_stats_query fapi_tq;
static int fapi_called; /* which stub ran: 0 none, 1 search ... 4 stats, 5 get */
static const char *fapi_provider = "twilio";

static bool fapi_api_writes(const struct store *st)
{
	(void)st;
	return false;
}

static int fapi_search(struct store *st, struct arena *a, const struct store_query *q,
                       struct store_message **rows, size_t *n, char *err, size_t errlen)
{
	(void)st, (void)a, (void)rows, (void)n, (void)err, (void)errlen;
	fapi_sq = *q;
	fapi_called = 1;
	return DLRD_EUNSUPP;
}

static int fapi_review(struct store *st, struct arena *a, const struct store_review_query *q,
                       struct store_review_item **rows, size_t *n, char *err, size_t errlen)
{
	(void)st, (void)a, (void)rows, (void)n, (void)err, (void)errlen;
	fapi_rq = *q;
	fapi_called = 2;
	return DLRD_EUNSUPP;
}

static int fapi_audit(struct store *st, struct arena *a, const struct store_audit_query *q,
                      struct store_audit_row **rows, size_t *n, char *err, size_t errlen)
{
	(void)st, (void)a, (void)rows, (void)n, (void)err, (void)errlen;
	fapi_aq = *q;
	fapi_called = 3;
	return DLRD_EUNSUPP;
}

static int fapi_stats(struct store *st, struct arena *a, const struct store_stats_query *q,
                      struct store_stats_row **rows, size_t *n, char *err, size_t errlen)
{
	(void)st, (void)a, (void)rows, (void)n, (void)err, (void)errlen;
	fapi_tq = *q;
	fapi_called = 4;
	return DLRD_EUNSUPP;
}

static int fapi_get(struct store *st, struct arena *a, const char *id, struct store_message *out,
                    char *err, size_t errlen)
{
	(void)st, (void)a, (void)id, (void)err, (void)errlen;
	memset(out, 0, sizeof(*out));
	out->provider = fapi_provider;
	fapi_called = 5;
	return 0;
}

#define store_api_writes  fapi_api_writes
#define store_search      fapi_search
#define store_list_review fapi_review
#define store_list_audit  fapi_audit
#define store_stats       fapi_stats
#define store_get_message fapi_get
#include "../src/api.c"
#undef store_api_writes
#undef store_search
#undef store_list_review
#undef store_list_audit
#undef store_stats
#undef store_get_message

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAPI_NOW 1700000000000LL /* 2023-11-14T22:13:20Z */
#define FAPI_ID  "0f8fad5b-d9cb-469f-a165-70867728950e"

static struct api fapi_api;
/* the provider of the message a PATCH names (flags >> 4) */
static const char *const fapi_providers[] = {
    "twilio", "vonage", "telnyx",  "sinch",       "plivo",          "infobip",
    "sns",    "kannel", "generic", "messagebird", "vonage-messages"};

static void fapi_init(void)
{
	static const uint8_t hk[32] = {7, 7, 7};
	struct pii_keyring *kr = NULL;
	char err[256];

	if (fapi_api.tz)
		return;
	privacy_set_hash_key(hk, sizeof(hk));
	if (pii_keyring_parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", &kr, err,
	                      sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_api: %s\n", err);
		abort();
	}
	fapi_api.kr = kr;
	fapi_api.tz = tz_db_new(NULL);
}

struct fapi_headers {
	const char *idem, *ctype;
};

static const char *fapi_header(void *hctx, const char *name)
{
	const struct fapi_headers *h = hctx;
	if (strcasecmp(name, "Idempotency-Key") == 0)
		return h->idem;
	if (strcasecmp(name, "Content-Type") == 0)
		return h->ctype;
	return NULL;
}

/* The answer's body: a JSON object; for an error, its code, and the
 * field for a 422 (NULL when absent). */
static void fapi_check_answer(const struct api_answer *ans, const char **code_out)
{
	static const unsigned ok_status[] = {400, 404, 415, 422, 501};
	json_t *root, *err;
	bool known = false;

	*code_out = NULL;
	FZ_CHECK(!ans->park);
	for (size_t i = 0; i < ARRAY_LEN(ok_status); i++)
		known = known || ans->status == ok_status[i];
	FZ_CHECK(known);
	FZ_CHECK(ans->body != NULL && ans->len > 0);
	root = json_loadb(ans->body, ans->len, 0, NULL);
	FZ_CHECK(root != NULL && json_is_object(root));
	err = json_object_get(root, "error");
	FZ_CHECK(json_is_object(err));
	FZ_CHECK(json_is_string(json_object_get(err, "code")));
	FZ_CHECK(json_is_string(json_object_get(err, "message")));
	static char code[64];
	util_strlcpy(code, json_string_value(json_object_get(err, "code")), sizeof(code));
	*code_out = code;
	if (ans->status == 422 && strcmp(code, "unknown_field") != 0 &&
	    strcmp(code, "unknown_parameter") != 0) {
		if (!json_is_string(json_object_get(err, "field")))
			fprintf(stderr, "422 %s without a field\n", code);
		FZ_CHECK(json_is_string(json_object_get(err, "field")));
	}
	json_decref(root);
}

static void fapi_free_answer(struct api_answer *ans)
{
	if (!ans->body_static)
		free(ans->body);
	ans->body = NULL;
}

/* A canonical time as the store is handed it. */
static void fapi_check_time(const char *t)
{
	int64_t ms;
	char again[32];

	if (!t)
		return;
	FZ_CHECK(strlen(t) == 24 && util_parse_rfc3339(t, 24, &ms) == 0);
	FZ_CHECK(ms >= API_TIME_MIN_MS && ms <= API_TIME_MAX_MS);
	util_rfc3339(ms, again);
	FZ_CHECK(strcmp(again, t) == 0);
}

static void fapi_check_text(const char *s, size_t max, enum text_kind kind)
{
	size_t n;

	if (!s)
		return;
	n = strlen(s);
	FZ_CHECK(n >= 1 && n <= max);
	FZ_CHECK(kind != TX_SLUG || slug(s, n));
	FZ_CHECK(kind != TX_PRINTABLE || printable(s, n));
}

/* Runs one handler on a NUL-terminated copy of p1 (as the front hands a
 * body over); second is the Idempotency-Key of a send, else the {id}. */
static void fapi_run(unsigned route, struct iov p1, const char *second, const char *ctype,
                     struct arena *ar, struct api_state *s, struct api_answer *ans)
{
	struct fapi_headers h = {second, ctype};
	struct api_request rq;
	char *copy = xmalloc(p1.n + 1);

	if (p1.n)
		memcpy(copy, p1.p, p1.n);
	copy[p1.n] = '\0';
	memset(&rq, 0, sizeof(rq));
	rq.method = "GET";
	rq.body = (struct iov){copy, p1.n};
	rq.query = (struct iov){copy, p1.n};
	rq.content_length = (int64_t)p1.n;
	rq.max_body = 1 << 20;
	rq.header = fapi_header;
	rq.hctx = &h;
	rq.arena = ar;
	rq.item = arena_alloc(ar, sizeof(*rq.item));
	memset(rq.item, 0, sizeof(*rq.item));
	rq.now_ms = FAPI_NOW;
	memset(s, 0, sizeof(*s));
	s->arena = ar;
	s->who.role = AUTH_ADMIN;
	memset(s->who.hash, 'a', 64);
	memcpy(s->actor, s->who.hash, AUTH_ID_LEN);
	if (second)
		s->id = (struct iov){second, strlen(second)};
	else
		s->id = route == 7 ? (struct iov){"17", 2} : (struct iov){FAPI_ID, 36};
	ans_init(ans);
	fapi_called = 0;
	switch (route) {
	case 0:
		h_send(&fapi_api, s, &rq, ans);
		break;
	case 1:
		h_patch(&fapi_api, s, &rq, ans);
		break;
	case 2:
		h_search(&fapi_api, &rq, ans);
		break;
	case 3:
		h_review(&fapi_api, &rq, ans);
		break;
	case 4:
		h_audit(&fapi_api, &rq, ans);
		break;
	case 5:
		h_stats(&fapi_api, &rq, ans);
		break;
	case 6:
		h_reveal(&fapi_api, s, &rq, ans);
		break;
	default:
		h_resolve(&fapi_api, s, &rq, ans);
		break;
	}
	free(copy);
}

/* An accepted send: what it hands the store. */
static void fapi_check_send(const struct store_send *sd, const char *body, size_t n,
                            const char *idem)
{
	json_t *root = json_loadb(body, n, JSON_REJECT_DUPLICATES, NULL);

	FZ_CHECK(root != NULL);
	FZ_CHECK(sd->idem_key && strcmp(sd->idem_key, idem) == 0);
	FZ_CHECK(sd->request_hash && strlen(sd->request_hash) == 64);
	if (sd->replay_only) {
		json_decref(root);
		return;
	}
	FZ_CHECK(provider_find(sd->provider, strlen(sd->provider)) != NULL);
	fapi_check_text(sd->use_case, API_SLUG_MAX, TX_SLUG);
	fapi_check_text(sd->template_key, API_SLUG_MAX, TX_SLUG);
	fapi_check_text(sd->sender_identity, API_TEXT_MAX, TX_PRINTABLE);
	fapi_check_text(sd->action_type, API_SLUG_MAX, TX_SLUG);
	fapi_check_text(sd->action_id, API_TEXT_MAX, TX_PRINTABLE);
	FZ_CHECK(sd->use_case && sd->template_key && sd->sender_identity && sd->action_type);
	FZ_CHECK(strcmp(sd->use_case, json_string_value(json_object_get(root, "use_case"))) == 0);
	FZ_CHECK(strcmp(sd->sender_identity,
	                json_string_value(json_object_get(root, "sender_identity"))) == 0);
	if (sd->country)
		FZ_CHECK(strlen(sd->country) == 2 && phone_country_known(sd->country));
	FZ_CHECK(sd->recipient_hash && sd->recipient_masked && sd->recipient_enc);
	if (sd->provider_message_id) {
		size_t m = strlen(sd->provider_message_id);
		FZ_CHECK(m >= 1 && sd->provider_message_id[0] != ' ');
	}
	if (sd->metadata) {
		json_t *back = json_loads(sd->metadata, 0, NULL);
		FZ_CHECK(strlen(sd->metadata) <= API_METADATA_MAX);
		FZ_CHECK(back && json_equal(back, json_object_get(root, "metadata")));
		json_decref(back);
	}
	json_decref(root);
}

/* Whether body is a send within every documented limit on its size: a
 * JSON object of the send's members only, strings or null but for an
 * action of string members type and id, and metadata (an object) at most
 * API_METADATA_MAX bytes as compact JSON and API_METADATA_DEPTH deep.
 * Such a body may be refused for its values, never as invalid JSON. */
static bool fapi_send_in_limits(const char *body, size_t n)
{
	static const char *const names[] = {"to",
	                                    "provider",
	                                    "provider_message_id",
	                                    "use_case",
	                                    "template_key",
	                                    "sender_identity",
	                                    "destination_country",
	                                    "recipient_timezone",
	                                    NULL};
	json_t *root = json_loadb(body, n, JSON_REJECT_DUPLICATES, NULL), *v;
	const char *key;
	bool ok = root && json_is_object(root);

	json_object_foreach(ok ? root : NULL, key, v)
	{
		bool plain = false;
		for (size_t i = 0; names[i]; i++)
			plain = plain || strcmp(key, names[i]) == 0;
		if (plain) {
			ok = ok && (json_is_string(v) || json_is_null(v));
		} else if (strcmp(key, "action") == 0) {
			const char *k2;
			json_t *v2;
			ok = ok && json_is_object(v);
			json_object_foreach(ok ? v : NULL, k2, v2) ok =
			    ok && (strcmp(k2, "type") == 0 || strcmp(k2, "id") == 0) &&
			    json_is_string(v2);
		} else if (strcmp(key, "metadata") == 0) {
			char *m = json_is_object(v) ? json_dumps(v, JSON_COMPACT) : NULL;
			ok = ok && m && strlen(m) <= API_METADATA_MAX &&
			     json_depth(v, API_METADATA_DEPTH + 1) <= API_METADATA_DEPTH;
			free(m);
		} else {
			ok = false;
		}
	}
	json_decref(root);
	return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t flags = fz_byte(&in);
	unsigned route = flags % 8;
	struct iov p1 = fz_part(&in, NULL);
	int more = 0;
	struct iov p2 = fz_part(&in, &more);
	char *second = more || p2.n ? fz_cstr(p2) : NULL;
	char *ctype = (flags & 8) ? NULL : fz_cstr(fz_part(&in, NULL));
	struct arena ar;
	struct api_state s;
	struct api_answer ans;
	const char *code;

	fapi_init();
	fapi_provider = fapi_providers[(flags >> 4) % ARRAY_LEN(fapi_providers)];
	if (ctype && !*ctype) {
		free(ctype);
		ctype = xstrdup("application/json");
	}
	if (route == 0 && !second)
		second = xstrdup("key-1");
	if (route != 0 && second && !*second) {
		free(second);
		second = NULL;
	}
	arena_init(&ar, NULL, 0);
	fapi_run(route, p1, second, ctype, &ar, &s, &ans);
	fapi_check_answer(&ans, &code);
	if (route == 0 && ans.status != 415 && strcmp(code, "invalid_json") == 0 &&
	    fapi_send_in_limits(p1.p, p1.n))
		fprintf(stderr, "a send within the limits refused: %.*s\n", (int)ans.len, ans.body);
	FZ_CHECK(route != 0 || strcmp(code, "invalid_json") != 0 ||
	         !fapi_send_in_limits(p1.p, p1.n));

	if (strcmp(code, "not_implemented") == 0) {
		switch (route) {
		case 0: {
			/* accepted: the same request, reordered and re-spaced, is the
			 * same request */
			char hash[65];
			json_t *root = json_loadb(p1.p, p1.n, JSON_REJECT_DUPLICATES, NULL);
			char *again;
			struct arena ar2;
			struct api_state s2;
			struct api_answer ans2;
			const char *code2;

			fapi_check_send(&s.op.send, p1.p, p1.n, second);
			util_strlcpy(hash, s.op.send.request_hash, sizeof(hash));
			again = json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS);
			FZ_CHECK(again != NULL);
			arena_init(&ar2, NULL, 0);
			fapi_run(route, (struct iov){again, strlen(again)}, second, ctype, &ar2,
			         &s2, &ans2);
			fapi_check_answer(&ans2, &code2);
			FZ_CHECK(strcmp(code2, "not_implemented") == 0);
			FZ_CHECK(strcmp(s2.op.send.request_hash, hash) == 0);
			fapi_free_answer(&ans2);
			arena_fini(&ar2);
			free(again);
			json_decref(root);
			break;
		}
		case 1: {
			/* the id as the provider's callbacks will name it: bounded,
			 * printable, and already canonical (a callback canonicalizes
			 * its id the same way and must meet this one) */
			size_t m = s.op.text ? strlen(s.op.text) : 0;
			FZ_CHECK(m >= 1 && m <= LIM_ID_BYTES && printable(s.op.text, m));
			FZ_CHECK(strcmp(canonical_pmid(&ar, fapi_provider, s.op.text, m),
			                s.op.text) == 0);
			FZ_CHECK(strlen(s.op.message_id) == 36);
			break;
		}
		case 2:
			FZ_CHECK(fapi_called == 1);
			FZ_CHECK(fapi_sq.limit >= 2 && fapi_sq.limit <= API_LIMIT_MAX + 1);
			FZ_CHECK(fapi_sq.n_statuses <= ST__COUNT);
			for (size_t i = 0; i < fapi_sq.n_statuses; i++) {
				enum dlr_status st;
				FZ_CHECK(status_parse(fapi_sq.statuses[i],
				                      strlen(fapi_sq.statuses[i]), &st) == 0);
			}
			fapi_check_time(fapi_sq.created_from);
			fapi_check_time(fapi_sq.created_to);
			fapi_check_time(fapi_sq.updated_from);
			fapi_check_time(fapi_sq.updated_to);
			fapi_check_time(fapi_sq.stuck_before);
			if (fapi_sq.country)
				FZ_CHECK(strlen(fapi_sq.country) == 2 &&
				         fapi_sq.country[0] >= 'A' && fapi_sq.country[0] <= 'Z' &&
				         fapi_sq.country[1] >= 'A' && fapi_sq.country[1] <= 'Z');
			if (fapi_sq.before_id) {
				char id[37];
				FZ_CHECK(uuid_of((struct iov){fapi_sq.before_id, 36}, id) &&
				         strlen(fapi_sq.before_id) == 36);
			}
			break;
		case 3:
			FZ_CHECK(fapi_called == 2);
			FZ_CHECK(fapi_rq.limit >= 2 && fapi_rq.limit <= API_LIMIT_MAX + 1);
			FZ_CHECK(fapi_rq.before_id >= 0);
			FZ_CHECK(fapi_rq.state >= -1 && fapi_rq.state <= 1);
			break;
		case 4:
			FZ_CHECK(fapi_called == 3);
			FZ_CHECK(fapi_aq.limit >= 2 && fapi_aq.limit <= API_LIMIT_MAX + 1);
			FZ_CHECK(fapi_aq.before_id >= 0);
			if (fapi_aq.message_id)
				FZ_CHECK(strlen(fapi_aq.message_id) == 36);
			break;
		case 5: {
			int64_t a, b;
			FZ_CHECK(fapi_called == 4);
			fapi_check_time(fapi_tq.since);
			fapi_check_time(fapi_tq.until);
			FZ_CHECK(util_parse_rfc3339(fapi_tq.since, 24, &a) == 0 &&
			         util_parse_rfc3339(fapi_tq.until, 24, &b) == 0);
			FZ_CHECK(a < b && b - a <= API_STATS_SPAN_MS);
			break;
		}
		default:
			break;
		}
	}
	fapi_free_answer(&ans);
	arena_fini(&ar);
	free(ctype);
	free(second);
	return 0;
}
