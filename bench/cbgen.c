/* SPDX-License-Identifier: MIT */
/*
 * The benchmark's callback generator (see cbgen.h).  Each request is signed
 * the way Twilio signs it: the body is decoded with the daemon's own form
 * decoder and signed with sig_twilio_sign() over public_url + path, so a
 * signature mismatch in the benchmark means the daemon disagrees with itself,
 * not with a second implementation.
 */
#include "cbgen.h"

#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "form.h"
#include "dlrd_limits.h"
#include "sig.h"
#include "util.h"

#define MAX_STEPS         5
#define BODY_MAX          1024
#define TICKS_PER_MESSAGE 10.0 /* a new message every 10 ticks */

enum outcome { OUT_DELIVERED, OUT_UNDELIVERED, OUT_FAILED };
enum kind { K_EVENT, K_DUP, K_FORGED, K_MALFORMED };

struct msg {
	char sid[35];
	char to[12]; /* digits after "+", NANP */
	unsigned from;
	enum outcome outcome;
	const char *error_code; /* NULL unless undelivered / failed */
	unsigned nsteps;
	double t[MAX_STEPS];
	bool seen; /* a request for it was emitted (new_msg) */
};

struct item {
	double t;
	size_t seq; /* creation order, breaks ties so the sort is deterministic */
	size_t msg; /* index into the chunk's messages, or into the bad ones */
	unsigned step;
	enum kind kind;
};

static const char *const from_numbers[] = {"12025550143", "13125550178", "14155550109",
                                           "16465550194"};
static const char *const undelivered_codes[] = {"30003", "30005", "30007"};
static const char *const failed_codes[] = {"30008", "21610"};
static const char account_sid[] = "AC0123456789abcdef0123456789abcdef";
static const char service_sid[] = "MG89abcdef0123456789abcdef01234567";

/* splitmix64: small, fast, and good enough to shuffle a benchmark. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

static double rng_range(uint64_t *s, double lo, double hi)
{
	return lo + (hi - lo) * rng_unit(s);
}

static void rng_sid(uint64_t *s, const char prefix[2], char out[35])
{
	static const char hex[] = "0123456789abcdef";
	uint64_t a = rng_next(s), b = rng_next(s);
	out[0] = prefix[0];
	out[1] = prefix[1];
	for (int i = 0; i < 16; i++) {
		out[2 + i] = hex[(a >> (4 * i)) & 15];
		out[18 + i] = hex[(b >> (4 * i)) & 15];
	}
	out[34] = '\0';
}

/* A North American number: NXX NXX XXXX with N in 2..9. */
static void rng_phone(uint64_t *s, char out[12])
{
	out[0] = '1';
	for (int i = 1; i < 11; i++) {
		unsigned d = (unsigned)(rng_next(s) % 10);
		if ((i == 1 || i == 4) && d < 2)
			d += 2;
		out[i] = (char)('0' + d);
	}
	out[11] = '\0';
}

static void msg_init(struct msg *m, uint64_t *rng)
{
	double r = rng_unit(rng);
	memset(m, 0, sizeof(*m));
	rng_sid(rng, "SM", m->sid);
	rng_phone(rng, m->to);
	m->from = (unsigned)(rng_next(rng) % ARRAY_LEN(from_numbers));
	if (r < 0.85) {
		m->outcome = OUT_DELIVERED;
	} else if (r < 0.95) {
		m->outcome = OUT_UNDELIVERED;
		m->error_code = undelivered_codes[rng_next(rng) % ARRAY_LEN(undelivered_codes)];
	} else {
		m->outcome = OUT_FAILED;
		m->error_code = failed_codes[rng_next(rng) % ARRAY_LEN(failed_codes)];
	}
	m->nsteps = m->outcome == OUT_FAILED ? 3 : 5;
}

/* Raw MessageStatus of step i of m's lifecycle. */
static const char *step_status(const struct msg *m, unsigned i)
{
	static const char *const normal[] = {"accepted", "queued", "sending", "sent"};
	if (m->outcome == OUT_FAILED)
		return i < 2 ? normal[i] : "failed";
	if (i < 4)
		return normal[i];
	return m->outcome == OUT_DELIVERED ? "delivered" : "undelivered";
}

static bool step_is_final(const struct msg *m, unsigned i)
{
	return i + 1 == m->nsteps;
}

/* The form body Twilio posts, fields in Twilio's order. */
static size_t format_body(const struct msg *m, unsigned step, bool malformed, char *buf,
                          size_t size)
{
	const char *st = step_status(m, step);
	bool final = step_is_final(m, step);
	size_t n = util_fmt(buf, size,
	                    "SmsSid=%s&SmsStatus=%s&MessageStatus=%s%s&To=%%2B%s"
	                    "&MessagingServiceSid=%s&MessageSid=%s&AccountSid=%s&From=%%2B%s"
	                    "&ApiVersion=2010-04-01",
	                    m->sid, st, st, malformed ? "%ZZ" : "", m->to, service_sid, m->sid,
	                    account_sid, from_numbers[m->from]);
	if (final && m->error_code)
		n += util_fmt(buf + n, size - n, "&ErrorCode=%s", m->error_code);
	if (final && m->outcome != OUT_FAILED)
		n += util_fmt(buf + n, size - n, "&RawDlrDoneDate=2611271510");
	return n;
}

static void sign(const char *token, const char *url, const char *body, size_t n, char sig[29])
{
	char abuf[8192], err[128];
	struct arena a;
	struct form f;

	arena_init(&a, abuf, sizeof(abuf));
	if (form_decode(&a, body, n, LIM_FORM_FIELDS, &f, err, sizeof(err)) != 0)
		f = (struct form){NULL, 0}; /* malformed on purpose: any signature will do */
	sig_twilio_sign(token, (struct iov){url, strlen(url)}, &f, sig);
	arena_fini(&a);
}

static int cmp_item(const void *pa, const void *pb)
{
	const struct item *a = pa, *b = pb;
	if (a->t != b->t)
		return a->t < b->t ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

int cbgen_chunk_new(const struct cbgen_params *p, uint64_t chunk_id, size_t n_messages,
                    struct cbgen_chunk **out)
{
	struct cbgen_chunk *c = NULL;
	struct msg *msgs = NULL, *bad = NULL;
	struct item *items = NULL;
	char *url = NULL;
	size_t *offs = NULL;
	size_t n_items = 0, cap, n_bad = 0, text_len = 0, text_cap;
	uint64_t rng = p->seed ^ (chunk_id * 0xd1b54a32d192ed03u);
	/* An event can be swapped only with a predecessor that was not swapped
	 * already, and the first event of a message has none; this makes the
	 * share of out-of-order events come out close to ooo_rate. */
	double swap_p = p->ooo_rate * 1.32;
	double dup_p = p->dup_rate < 1 ? p->dup_rate / (1 - p->dup_rate) : 0;
	double tmax = (double)n_messages * TICKS_PER_MESSAGE;
	int rc = DLRD_EINVAL;

	*out = NULL;
	if (!p->token || !p->public_url || n_messages == 0 || n_messages > 10000000 ||
	    p->dup_rate < 0 || p->dup_rate >= 0.9 || p->ooo_rate < 0 || p->ooo_rate > 0.3 ||
	    p->bad_rate < 0 || p->bad_rate >= 0.5)
		goto out;
	rng_next(&rng);

	c = xcalloc(1, sizeof(*c));
	msgs = xcalloc(n_messages, sizeof(*msgs));
	cap = n_messages * MAX_STEPS * 2 + 16;
	items = xmalloc(cap * sizeof(*items));

	for (size_t i = 0; i < n_messages; i++) {
		struct msg *m = &msgs[i];
		double t0 = (double)i * TICKS_PER_MESSAGE + rng_range(&rng, 0, TICKS_PER_MESSAGE);
		msg_init(m, &rng);
		m->t[0] = t0;
		m->t[1] = m->t[0] + rng_range(&rng, 0.5, 2);
		if (m->outcome == OUT_FAILED) {
			m->t[2] = m->t[1] + rng_range(&rng, 1, 50);
		} else {
			m->t[2] = m->t[1] + rng_range(&rng, 0.5, 3);
			m->t[3] = m->t[2] + rng_range(&rng, 2, 20);
			m->t[4] = m->t[3] + rng_range(&rng, 20, 3000);
		}
		/* out of order: step k arrives before step k-1 */
		bool swapped_prev = false;
		for (unsigned k = 1; k < m->nsteps; k++) {
			if (!swapped_prev && rng_unit(&rng) < swap_p) {
				double t = m->t[k];
				m->t[k] = m->t[k - 1];
				m->t[k - 1] = t;
				c->n_ooo++;
				swapped_prev = true;
			} else {
				swapped_prev = false;
			}
		}
		for (unsigned k = 0; k < m->nsteps; k++) {
			items[n_items] = (struct item){m->t[k], n_items, i, k, K_EVENT};
			n_items++;
			c->n_events++;
			/* exact duplicate: Twilio retrying after a timeout */
			if (rng_unit(&rng) < dup_p) {
				double t = m->t[k] + rng_range(&rng, 1, 300);
				items[n_items] = (struct item){t, n_items, i, k, K_DUP};
				n_items++;
				c->n_dups++;
			}
		}
	}
	if (p->bad_rate > 0) {
		n_bad = (size_t)((double)n_items * p->bad_rate / (1 - p->bad_rate) + 0.5);
		bad = xcalloc(n_bad ? n_bad : 1, sizeof(*bad));
		items = xrealloc(items, (n_items + n_bad) * sizeof(*items));
		for (size_t i = 0; i < n_bad; i++) {
			msg_init(&bad[i], &rng);
			unsigned step = (unsigned)(rng_next(&rng) % bad[i].nsteps);
			items[n_items] = (struct item){rng_range(&rng, 0, tmax), n_items, i, step,
			                               i % 2 ? K_MALFORMED : K_FORGED};
			n_items++;
		}
		c->n_bad = n_bad;
	}
	qsort(items, n_items, sizeof(*items), cmp_item);

	size_t url_len = strlen(p->public_url) + sizeof(CBGEN_PATH);
	url = xmalloc(url_len);
	util_fmt(url, url_len, "%s%s", p->public_url, CBGEN_PATH);
	c->reqs = xcalloc(n_items, sizeof(*c->reqs));
	offs = xmalloc(n_items * sizeof(*offs));
	text_cap = n_items * 400 + BODY_MAX;
	c->text = xmalloc(text_cap);
	for (size_t i = 0; i < n_items; i++) {
		const struct item *it = &items[i];
		struct cbgen_req *r = &c->reqs[i];
		bool is_bad = it->kind == K_FORGED || it->kind == K_MALFORMED;
		struct msg *m = is_bad ? &bad[it->msg] : &msgs[it->msg];

		if (text_cap - text_len < BODY_MAX) {
			text_cap *= 2;
			c->text = xrealloc(c->text, text_cap);
		}
		r->body_len =
		    format_body(m, it->step, it->kind == K_MALFORMED, c->text + text_len, BODY_MAX);
		if (it->kind == K_MALFORMED) {
			memset(r->sig, 'A', 27);
			r->sig[27] = '=';
			r->sig[28] = '\0';
		} else {
			sign(it->kind == K_FORGED ? "not-the-auth-token" : p->token, url,
			     c->text + text_len, r->body_len, r->sig);
		}
		offs[i] = text_len; /* the text may still move: pointers at the end */
		text_len += r->body_len;
		r->expect = it->kind == K_FORGED ? 401 : it->kind == K_MALFORMED ? 400 : 200;
		r->first = it->kind == K_EVENT;
		r->new_msg = !is_bad && !m->seen;
		if (!is_bad)
			m->seen = true;
	}
	for (size_t i = 0; i < n_items; i++)
		c->reqs[i].body = c->text + offs[i];
	c->n = n_items;
	c->n_messages = n_messages;
	*out = c;
	c = NULL;
	rc = 0;
out:
	free(offs);
	free(url);
	free(items);
	free(bad);
	free(msgs);
	cbgen_chunk_free(c);
	return rc;
}

void cbgen_chunk_free(struct cbgen_chunk *c)
{
	if (!c)
		return;
	free(c->reqs);
	free(c->text);
	free(c);
}
