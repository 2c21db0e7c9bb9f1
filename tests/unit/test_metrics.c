/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/metrics.c: the exact exposition lines after known
 * increments, cumulative histogram buckets, HTTP status grouping, gauges, the
 * shape of the text format, and that concurrent increments are not lost.
 * The module is included so each test can start from zeroed counters.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/metrics.c"

static size_t twilio_idx;
static size_t n_providers;

static void zero(counter_t *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		atomic_store(&c[i], 0);
}

static int setup(void **state)
{
	(void)state;
	while (provider_table[n_providers])
		n_providers++;
	twilio_idx = n_providers;
	for (size_t i = 0; i < n_providers; i++)
		if (strcmp(provider_table[i]->name, "twilio") == 0)
			twilio_idx = i;
	if (twilio_idx == n_providers)
		return -1;
	metrics_init(n_providers);
	metrics_init(n_providers); /* a second call keeps the arrays */
	return 0;
}

static int reset(void **state)
{
	(void)state;
	zero(&m.callbacks[0][0], m.n_providers * CB__COUNT);
	zero(m.duplicates, m.n_providers);
	zero(m.review, m.n_providers);
	zero(m.batch, BATCH_BUCKETS);
	zero(&m.batch_sum, 1);
	zero(m.latency, LATENCY_BUCKETS);
	zero(&m.latency_sum_ns, 1);
	zero(&m.commit_failures, 1);
	zero(m.http, HTTP_SLOTS);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(m.callbacks);
	free(m.duplicates);
	free(m.review);
	return 0;
}

/* Asserts that text holds line as one whole line. */
static void has_line_(const char *text, const char *line, const char *file, int lineno)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return;
	_fail(file, lineno);
	/* not reached; cmocka prints the failure location */
}
#define has_line(text, line)                                                                       \
	do {                                                                                       \
		if (!strstr(text, line))                                                           \
			print_error("missing line: %s\n", line);                                   \
		has_line_(text, line, __FILE__, __LINE__);                                         \
	} while (0)

static char *render_parked(size_t depth, size_t parked, bool healthy)
{
	size_t len = 0;
	char *text = metrics_render(depth, parked, healthy, &len);

	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	assert_true(len > 0 && text[len - 1] == '\n');
	return text;
}

static char *render(size_t depth, bool healthy)
{
	return render_parked(depth, 0, healthy);
}

static void test_zero(void **state)
{
	char *t;

	(void)state;
	t = render(0, true);
	has_line(t, "# HELP dlrd_callbacks_total Webhook callbacks by provider and outcome.");
	has_line(t, "# TYPE dlrd_callbacks_total counter");
	for (size_t i = 0; i < n_providers; i++) {
		char line[256];
		for (size_t o = 0; o < CB__COUNT; o++) {
			util_fmt(line, sizeof(line),
			         "dlrd_callbacks_total{provider=\"%s\",outcome=\"%s\"} 0",
			         provider_table[i]->name, outcome_names[o]);
			has_line(t, line);
		}
		util_fmt(line, sizeof(line), "dlrd_duplicate_events_total{provider=\"%s\"} 0",
		         provider_table[i]->name);
		has_line(t, line);
	}
	has_line(t, "# TYPE dlrd_commit_batch_size histogram");
	has_line(t, "dlrd_commit_batch_size_bucket{le=\"+Inf\"} 0");
	has_line(t, "dlrd_commit_batch_size_count 0");
	has_line(t, "dlrd_commit_duration_seconds_sum 0.000000000");
	has_line(t, "dlrd_commit_failures_total 0");
	has_line(t, "dlrd_http_responses_total{code=\"200\"} 0");
	has_line(t, "# TYPE dlrd_queue_depth gauge");
	has_line(t, "dlrd_queue_depth 0");
	has_line(t, "dlrd_storage_healthy 1");
	free(t);
}

static void test_callbacks(void **state)
{
	char *t;

	(void)state;
	for (int i = 0; i < 3; i++)
		metrics_callback(twilio_idx, CB_STORED);
	metrics_callback(twilio_idx, CB_UNAUTHORIZED);
	metrics_callback(twilio_idx, CB_UNAVAILABLE);
	metrics_callback(twilio_idx, CB_UNAVAILABLE);
	metrics_duplicates(twilio_idx, 5);
	metrics_duplicates(twilio_idx, 2);
	metrics_review(twilio_idx, 1);
	t = render(0, true);
	has_line(t, "dlrd_callbacks_total{provider=\"twilio\",outcome=\"stored\"} 3");
	has_line(t, "dlrd_callbacks_total{provider=\"twilio\",outcome=\"unauthorized\"} 1");
	has_line(t, "dlrd_callbacks_total{provider=\"twilio\",outcome=\"unavailable\"} 2");
	has_line(t, "dlrd_callbacks_total{provider=\"twilio\",outcome=\"duplicate\"} 0");
	has_line(t, "dlrd_callbacks_total{provider=\"twilio\",outcome=\"bad_request\"} 0");
	has_line(t, "dlrd_duplicate_events_total{provider=\"twilio\"} 7");
	has_line(t, "dlrd_review_events_total{provider=\"twilio\"} 1");
	/* Other providers are untouched. */
	for (size_t i = 0; i < n_providers; i++) {
		char line[128];
		if (i == twilio_idx)
			continue;
		util_fmt(line, sizeof(line),
		         "dlrd_callbacks_total{provider=\"%s\",outcome=\"stored\"} 0",
		         provider_table[i]->name);
		has_line(t, line);
	}
	free(t);
}

static void test_batch_histogram(void **state)
{
	char *t;

	(void)state;
	metrics_commit(1, 0, true);
	metrics_commit(1, 0, true);
	metrics_commit(3, 0, true);
	metrics_commit(1024, 0, true);
	metrics_commit(5000, 0, false);
	t = render(0, true);
	has_line(t, "dlrd_commit_batch_size_bucket{le=\"1\"} 2");
	has_line(t, "dlrd_commit_batch_size_bucket{le=\"2\"} 2");
	has_line(t, "dlrd_commit_batch_size_bucket{le=\"4\"} 3");
	has_line(t, "dlrd_commit_batch_size_bucket{le=\"8\"} 3");
	has_line(t, "dlrd_commit_batch_size_bucket{le=\"512\"} 3");
	has_line(t, "dlrd_commit_batch_size_bucket{le=\"1024\"} 4");
	has_line(t, "dlrd_commit_batch_size_bucket{le=\"+Inf\"} 5");
	has_line(t, "dlrd_commit_batch_size_sum 6029");
	has_line(t, "dlrd_commit_batch_size_count 5");
	has_line(t, "dlrd_commit_failures_total 1");
	/* Buckets come in increasing order, +Inf last. */
	const char *b1 = strstr(t, "dlrd_commit_batch_size_bucket{le=\"1\"}");
	const char *b2 = strstr(t, "dlrd_commit_batch_size_bucket{le=\"2\"}");
	const char *inf = strstr(t, "dlrd_commit_batch_size_bucket{le=\"+Inf\"}");
	const char *sum = strstr(t, "dlrd_commit_batch_size_sum");
	assert_true(b1 < b2 && b2 < inf && inf < sum);
	free(t);
}

static void test_latency_histogram(void **state)
{
	char *t;

	(void)state;
	metrics_commit(1, 400000, true);     /* 0.4 ms */
	metrics_commit(1, 500000, true);     /* exactly 0.5 ms: le is inclusive */
	metrics_commit(1, 1500000, true);    /* 1.5 ms */
	metrics_commit(1, 1000000000, true); /* exactly 1 s */
	metrics_commit(1, 2000000000, true); /* 2 s */
	t = render(0, true);
	has_line(t, "dlrd_commit_duration_seconds_bucket{le=\"0.0005\"} 2");
	has_line(t, "dlrd_commit_duration_seconds_bucket{le=\"0.001\"} 2");
	has_line(t, "dlrd_commit_duration_seconds_bucket{le=\"0.002\"} 3");
	has_line(t, "dlrd_commit_duration_seconds_bucket{le=\"0.005\"} 3");
	has_line(t, "dlrd_commit_duration_seconds_bucket{le=\"0.5\"} 3");
	has_line(t, "dlrd_commit_duration_seconds_bucket{le=\"1\"} 4");
	has_line(t, "dlrd_commit_duration_seconds_bucket{le=\"+Inf\"} 5");
	has_line(t, "dlrd_commit_duration_seconds_sum 3.002400000");
	has_line(t, "dlrd_commit_duration_seconds_count 5");
	has_line(t, "dlrd_commit_failures_total 0");
	free(t);
}

static void test_http(void **state)
{
	static const unsigned codes[] = {200, 200, 404, 418, 599, 600, 99, 503, 302, 102};
	char *t;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(codes); i++)
		metrics_http(codes[i]);
	t = render(0, true);
	has_line(t, "dlrd_http_responses_total{code=\"200\"} 2");
	has_line(t, "dlrd_http_responses_total{code=\"404\"} 1");
	has_line(t, "dlrd_http_responses_total{code=\"503\"} 1");
	has_line(t, "dlrd_http_responses_total{code=\"401\"} 0");
	has_line(t, "dlrd_http_responses_total{code=\"1xx\"} 1");
	has_line(t, "dlrd_http_responses_total{code=\"3xx\"} 1");
	has_line(t, "dlrd_http_responses_total{code=\"4xx\"} 1");
	has_line(t, "dlrd_http_responses_total{code=\"5xx\"} 1");
	has_line(t, "dlrd_http_responses_total{code=\"2xx\"} 0");
	has_line(t, "dlrd_http_responses_total{code=\"other\"} 2");
	free(t);
}

static void test_gauges(void **state)
{
	char *t;

	(void)state;
	t = render_parked(17, 41, false);
	has_line(t, "dlrd_queue_depth 17");
	has_line(t, "# TYPE dlrd_requests_parked gauge");
	has_line(t, "dlrd_requests_parked 41");
	has_line(t, "dlrd_storage_healthy 0");
	free(t);
}

/* Every line is a comment (# HELP / # TYPE) or "name[{labels}] value", and
 * every sample belongs to the family of the last # TYPE line. */
static void test_format(void **state)
{
	char *t, *line, *nl;
	char family[128] = "";
	size_t samples = 0;

	(void)state;
	metrics_commit(2, 3000000, true);
	t = render(3, true);
	for (line = t; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		assert_non_null(nl);
		assert_true(nl > line); /* no empty lines */
		*nl = '\0';
		if (strncmp(line, "# HELP ", 7) == 0)
			continue;
		if (strncmp(line, "# TYPE ", 7) == 0) {
			const char *sp = strchr(line + 7, ' ');
			assert_non_null(sp);
			util_fmt(family, sizeof(family), "%.*s", (int)(sp - (line + 7)), line + 7);
			assert_memory_equal(family, "dlrd_", 5);
			continue;
		}
		assert_true(family[0] != '\0');
		assert_memory_equal(line, family, strlen(family));
		const char *v = strrchr(line, ' ');
		assert_non_null(v);
		for (v++; *v; v++)
			assert_true((*v >= '0' && *v <= '9') || *v == '.');
		samples++;
	}
	assert_true(samples > n_providers * CB__COUNT);
	free(t);
}

#define THREADS    4
#define PER_THREAD 100000

static void *hammer(void *arg)
{
	(void)arg;
	for (int i = 0; i < PER_THREAD; i++) {
		metrics_callback(twilio_idx, CB_STORED);
		metrics_http(200);
		metrics_commit(1, 1, true);
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	pthread_t th[THREADS];
	char *t, line[128];

	(void)state;
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, hammer, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	t = render(0, true);
	util_fmt(line, sizeof(line),
	         "dlrd_callbacks_total{provider=\"twilio\",outcome=\"stored\"} %d",
	         THREADS * PER_THREAD);
	has_line(t, line);
	util_fmt(line, sizeof(line), "dlrd_http_responses_total{code=\"200\"} %d",
	         THREADS * PER_THREAD);
	has_line(t, line);
	util_fmt(line, sizeof(line), "dlrd_commit_batch_size_count %d", THREADS * PER_THREAD);
	has_line(t, line);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_zero, reset),
	    cmocka_unit_test_setup(test_callbacks, reset),
	    cmocka_unit_test_setup(test_batch_histogram, reset),
	    cmocka_unit_test_setup(test_latency_histogram, reset),
	    cmocka_unit_test_setup(test_http, reset),
	    cmocka_unit_test_setup(test_gauges, reset),
	    cmocka_unit_test_setup(test_format, reset),
	    cmocka_unit_test_setup(test_concurrent, reset),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
