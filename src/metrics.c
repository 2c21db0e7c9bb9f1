/* SPDX-License-Identifier: MIT */
/*
 * Prometheus metrics.  Every counter is a C11 atomic updated with relaxed
 * ordering: increments from any thread never block and never lose a count,
 * and a scrape sees each counter's value at some recent instant (the set of
 * counters is not a consistent snapshot, which Prometheus does not expect).
 *
 * Histograms keep one non-cumulative count per bucket; rendering adds them up,
 * so the exposed buckets are cumulative and the +Inf bucket always equals
 * _count.  Commit latency is kept in nanoseconds and rendered in seconds.
 *
 * Per-provider arrays are allocated once by metrics_init() on the main thread
 * before other threads start, indexed like provider_table; they live until
 * the process exits.  The output is text exposition format 0.0.4.
 */
#include "metrics.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "provider.h"
#include "util.h"

typedef _Atomic uint64_t counter_t;

static const char *const outcome_names[CB__COUNT] = {
    [CB_STORED] = "stored",           [CB_DUPLICATE] = "duplicate",
    [CB_REVIEW] = "review",           [CB_UNAUTHORIZED] = "unauthorized",
    [CB_BAD_REQUEST] = "bad_request", [CB_TOO_LARGE] = "too_large",
    [CB_UNSUPPORTED] = "unsupported", [CB_UNAVAILABLE] = "unavailable",
    [CB_HANDSHAKE] = "handshake",
};

/* Commit batch sizes: upper bounds of the finite buckets. */
static const uint64_t batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
#define BATCH_BUCKETS (ARRAY_LEN(batch_bounds) + 1) /* and +Inf */

/* Commit latency bounds in nanoseconds, and their "le" labels in seconds. */
static const uint64_t latency_bounds[] = {500000,    1000000,   2000000,   5000000,
                                          10000000,  20000000,  50000000,  100000000,
                                          250000000, 500000000, 1000000000};
static const char *const latency_labels[] = {"0.0005", "0.001", "0.002", "0.005", "0.01", "0.02",
                                             "0.05",   "0.1",   "0.25",  "0.5",   "1"};
#define LATENCY_BUCKETS (ARRAY_LEN(latency_bounds) + 1)
_Static_assert(ARRAY_LEN(latency_bounds) == ARRAY_LEN(latency_labels), "one label per bound");

/* HTTP status codes counted on their own; any other code is counted under its
 * class ("4xx"), and anything outside 100..599 under "other". */
static const unsigned http_codes[] = {200, 204, 400, 401, 403, 404, 405, 408,
                                      411, 413, 414, 415, 429, 431, 500, 503};
#define HTTP_CLASSES 5 /* 1xx .. 5xx */
#define HTTP_SLOTS   (ARRAY_LEN(http_codes) + HTTP_CLASSES + 1)

static struct {
	size_t n_providers;
	counter_t (*callbacks)[CB__COUNT]; /* [provider][outcome] */
	counter_t *duplicates;             /* [provider] */
	counter_t *review;                 /* [provider] */
	counter_t batch[BATCH_BUCKETS];
	counter_t batch_sum;
	counter_t latency[LATENCY_BUCKETS];
	counter_t latency_sum_ns;
	counter_t commit_failures;
	counter_t storage_retries;
	counter_t http[HTTP_SLOTS];
	counter_t deadlines[2]; /* [idle] */
} m;

/* Main thread, before any other metrics_ call and before threads start. */
void metrics_init(size_t n_providers)
{
	/* Once per process; a repeated call (tests) keeps the counters. */
	if (m.callbacks) {
		assert(n_providers == m.n_providers);
		return;
	}
	m.n_providers = n_providers;
	m.callbacks = xcalloc(n_providers ? n_providers : 1, sizeof(*m.callbacks));
	m.duplicates = xcalloc(n_providers ? n_providers : 1, sizeof(*m.duplicates));
	m.review = xcalloc(n_providers ? n_providers : 1, sizeof(*m.review));
}

static void inc(counter_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t get(counter_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* Any thread, like every counter update below: one relaxed atomic add. */
void metrics_callback(size_t provider_idx, enum cb_outcome o)
{
	assert(m.callbacks && provider_idx < m.n_providers && (unsigned)o < CB__COUNT);
	inc(&m.callbacks[provider_idx][o], 1);
}

void metrics_duplicates(size_t provider_idx, unsigned n)
{
	assert(m.duplicates && provider_idx < m.n_providers);
	inc(&m.duplicates[provider_idx], n);
}

void metrics_review(size_t provider_idx, unsigned n)
{
	assert(m.review && provider_idx < m.n_providers);
	inc(&m.review[provider_idx], n);
}

static size_t bucket_of(const uint64_t *bounds, size_t n_bounds, uint64_t v)
{
	size_t i = 0;

	while (i < n_bounds && v > bounds[i])
		i++;
	return i; /* n_bounds is the +Inf bucket */
}

/* Writer thread.  Every transaction attempt goes into both histograms; ok
 * false also counts a failure. */
void metrics_commit(size_t batch_size, uint64_t latency_ns, bool ok)
{
	inc(&m.batch[bucket_of(batch_bounds, ARRAY_LEN(batch_bounds), batch_size)], 1);
	inc(&m.batch_sum, batch_size);
	inc(&m.latency[bucket_of(latency_bounds, ARRAY_LEN(latency_bounds), latency_ns)], 1);
	inc(&m.latency_sum_ns, latency_ns);
	if (!ok)
		inc(&m.commit_failures, 1);
}

/* Writer thread. */
void metrics_commit_refused(void)
{
	inc(&m.commit_failures, 1);
}

/* Writer thread. */
void metrics_storage_retry(void)
{
	inc(&m.storage_retries, 1);
}

/* Any thread; status is the HTTP status code sent. */
void metrics_http(unsigned status)
{
	size_t slot = HTTP_SLOTS - 1; /* "other" */

	if (status >= 100 && status <= 599) {
		slot = ARRAY_LEN(http_codes) + status / 100 - 1;
		for (size_t i = 0; i < ARRAY_LEN(http_codes); i++) {
			if (http_codes[i] == status) {
				slot = i;
				break;
			}
		}
	}
	inc(&m.http[slot], 1);
}

/* Any thread (the HTTP watchdog). */
void metrics_deadline(bool idle)
{
	inc(&m.deadlines[idle], 1);
}

/* A growing output buffer; allocation aborts on out-of-memory. */
struct out {
	char *p;
	size_t len, cap;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		assert(n >= 0);
		if ((size_t)n < o->cap - o->len)
			break;
		o->cap = o->cap * 2 + (size_t)n;
		o->p = xrealloc(o->p, o->cap);
	}
	o->len += (size_t)n;
}

static void put_header(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *provider_name(size_t i)
{
	const char *name = provider_table[i]->name;

	/* Names come from our own table; they must be safe label values. */
	assert(!strpbrk(name, "\"\\\n"));
	return name;
}

/* Any thread.  The result is a heap string the caller frees; counters are read
 * one by one, so a scrape racing with updates may mix old and new values. */
char *metrics_render(size_t queue_depth, size_t parked, bool healthy, size_t *len)
{
	struct out o = {xmalloc(8192), 0, 8192};
	uint64_t cum;

	put_header(&o, "dlrd_callbacks_total", "counter",
	           "Webhook callbacks by provider and outcome.");
	for (size_t i = 0; i < m.n_providers; i++)
		for (size_t j = 0; j < CB__COUNT; j++)
			put(&o,
			    "dlrd_callbacks_total{provider=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
			    provider_name(i), outcome_names[j], get(&m.callbacks[i][j]));

	put_header(&o, "dlrd_duplicate_events_total", "counter",
	           "Events received again and not stored twice, by provider.");
	for (size_t i = 0; i < m.n_providers; i++)
		put(&o, "dlrd_duplicate_events_total{provider=\"%s\"} %" PRIu64 "\n",
		    provider_name(i), get(&m.duplicates[i]));

	put_header(&o, "dlrd_review_events_total", "counter",
	           "Rows added to the review queue, by provider.");
	for (size_t i = 0; i < m.n_providers; i++)
		put(&o, "dlrd_review_events_total{provider=\"%s\"} %" PRIu64 "\n", provider_name(i),
		    get(&m.review[i]));

	put_header(&o, "dlrd_commit_batch_size", "histogram",
	           "Requests (callbacks and API writes) per storage transaction, every attempt.");
	cum = 0;
	for (size_t i = 0; i < BATCH_BUCKETS; i++) {
		cum += get(&m.batch[i]);
		if (i < ARRAY_LEN(batch_bounds))
			put(&o, "dlrd_commit_batch_size_bucket{le=\"%" PRIu64 "\"} %" PRIu64 "\n",
			    batch_bounds[i], cum);
		else
			put(&o, "dlrd_commit_batch_size_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
	}
	put(&o, "dlrd_commit_batch_size_sum %" PRIu64 "\n", get(&m.batch_sum));
	put(&o, "dlrd_commit_batch_size_count %" PRIu64 "\n", cum);

	put_header(&o, "dlrd_commit_duration_seconds", "histogram",
	           "Time from BEGIN until one storage transaction is durable (applied, committed "
	           "and synced; a failed one until it failed), every attempt.");
	cum = 0;
	for (size_t i = 0; i < LATENCY_BUCKETS; i++) {
		cum += get(&m.latency[i]);
		put(&o, "dlrd_commit_duration_seconds_bucket{le=\"%s\"} %" PRIu64 "\n",
		    i < ARRAY_LEN(latency_labels) ? latency_labels[i] : "+Inf", cum);
	}
	{
		uint64_t ns = get(&m.latency_sum_ns);
		put(&o, "dlrd_commit_duration_seconds_sum %" PRIu64 ".%09" PRIu64 "\n",
		    ns / 1000000000u, ns % 1000000000u);
	}
	put(&o, "dlrd_commit_duration_seconds_count %" PRIu64 "\n", cum);

	put_header(&o, "dlrd_commit_failures_total", "counter",
	           "Storage transactions that failed, and batches refused without one "
	           "after a failed sync.");
	put(&o, "dlrd_commit_failures_total %" PRIu64 "\n", get(&m.commit_failures));

	put_header(&o, "dlrd_storage_retries_total", "counter",
	           "Storage transaction attempts rolled back and retried within their batch "
	           "(PostgreSQL deadlocks and serialization failures between nodes).");
	put(&o, "dlrd_storage_retries_total %" PRIu64 "\n", get(&m.storage_retries));

	put_header(&o, "dlrd_http_responses_total", "counter",
	           "HTTP responses by status code; other codes by class (\"4xx\").");
	for (size_t i = 0; i < HTTP_SLOTS; i++) {
		char code[8];
		if (i < ARRAY_LEN(http_codes))
			util_fmt(code, sizeof(code), "%u", http_codes[i]);
		else if (i < HTTP_SLOTS - 1)
			util_fmt(code, sizeof(code), "%zuxx", i - ARRAY_LEN(http_codes) + 1);
		else
			util_strlcpy(code, "other", sizeof(code));
		put(&o, "dlrd_http_responses_total{code=\"%s\"} %" PRIu64 "\n", code,
		    get(&m.http[i]));
	}

	put_header(&o, "dlrd_request_deadlines_total", "counter",
	           "Connections cut off at their deadline: a request that did not arrive, or "
	           "an answer not taken, within server.request_timeout_ms (state \"request\"), "
	           "or a request line dribbled past idle_timeout_s plus that (\"idle\").");
	put(&o, "dlrd_request_deadlines_total{state=\"request\"} %" PRIu64 "\n",
	    get(&m.deadlines[0]));
	put(&o, "dlrd_request_deadlines_total{state=\"idle\"} %" PRIu64 "\n", get(&m.deadlines[1]));

	put_header(&o, "dlrd_queue_depth", "gauge",
	           "Requests (callbacks and API writes) waiting in the commit queue (queued or "
	           "reserved).");
	put(&o, "dlrd_queue_depth %zu\n", queue_depth);

	put_header(&o, "dlrd_requests_parked", "gauge",
	           "Requests waiting for their transaction to be durable (queued, being "
	           "written or synced).");
	put(&o, "dlrd_requests_parked %zu\n", parked);

	put_header(&o, "dlrd_storage_healthy", "gauge",
	           "1 when the last storage transaction succeeded, 0 after a failure.");
	put(&o, "dlrd_storage_healthy %d\n", healthy ? 1 : 0);

	if (len)
		*len = o.len;
	return o.p;
}
