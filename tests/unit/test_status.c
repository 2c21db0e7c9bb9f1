/* SPDX-License-Identifier: MIT */
/*
 * The precedence fold: the summary must be a pure function of the set of
 * events.  Checked exhaustively over every permutation of realistic event
 * sets of up to 6 events (duplicates included), and over random sets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "status.h"
#include "util.h"

struct ev {
	struct status_key k;
	bool read;
};

#define E(st, raw)                                                                                 \
	{                                                                                          \
		{(st), -1, NULL, (raw)}, false                                                     \
	}
#define EC(st, raw, code)                                                                          \
	{                                                                                          \
		{(st), -1, (code), (raw)}, false                                                   \
	}
#define ET(st, raw, ms)                                                                            \
	{                                                                                          \
		{(st), (ms), NULL, (raw)}, false                                                   \
	}

static struct status_summary fold(const struct ev *evs, const int *order, int n)
{
	struct status_summary s;
	memset(&s, 0, sizeof(s));
	for (int i = 0; i < n; i++)
		status_fold(&s, &evs[order[i]].k, evs[order[i]].read);
	return s;
}

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void assert_same(const struct status_summary *a, const struct status_summary *b)
{
	assert_int_equal(a->top.status, b->top.status);
	assert_int_equal(a->top.occurred_ms, b->top.occurred_ms);
	assert_true(str_eq(a->top.error_code, b->top.error_code));
	assert_true(str_eq(a->top.raw_status, b->top.raw_status));
	assert_int_equal(a->mask, b->mask);
	assert_int_equal(a->read, b->read);
}

/* Heap's algorithm over every permutation; each must fold to ref. */
static int check_all_orders(const struct ev *evs, int n, struct status_summary *ref)
{
	int order[8], c[8] = {0}, count = 1;
	for (int i = 0; i < n; i++)
		order[i] = i;
	*ref = fold(evs, order, n);
	for (int i = 1; i < n;) {
		if (c[i] < i) {
			int j = (i % 2) ? c[i] : 0;
			int t = order[j];
			order[j] = order[i];
			order[i] = t;
			struct status_summary s = fold(evs, order, n);
			assert_same(&s, ref);
			count++;
			c[i]++;
			i = 1;
		} else {
			c[i] = 0;
			i++;
		}
	}
	return count;
}

static void test_happy_path_all_orders(void **state)
{
	(void)state;
	const struct ev evs[] = {
	    E(ST_ACCEPTED, "queued"),     E(ST_ACCEPTED, "sending"),
	    E(ST_SENT, "sent"),           E(ST_SENT, "sent"), /* duplicate */
	    E(ST_DELIVERED, "delivered"), E(ST_DELIVERED, "delivered"),
	};
	struct status_summary ref;
	assert_int_equal(check_all_orders(evs, 6, &ref), 720);
	assert_int_equal(ref.top.status, ST_DELIVERED);
	assert_string_equal(ref.top.raw_status, "delivered");
	assert_true(status_is_final(ref.top.status));
	assert_false(status_mask_conflict(ref.mask));
}

static void test_failure_with_code_all_orders(void **state)
{
	(void)state;
	const struct ev evs[] = {
	    E(ST_ACCEPTED, "queued"),
	    E(ST_SENT, "sent"),
	    EC(ST_UNDELIVERED, "undelivered", "30003"),
	    EC(ST_UNDELIVERED, "undelivered", "30003"),
	    E(ST_SENT, "sent"),
	};
	struct status_summary ref;
	assert_int_equal(check_all_orders(evs, 5, &ref), 120);
	assert_int_equal(ref.top.status, ST_UNDELIVERED);
	assert_string_equal(ref.top.error_code, "30003");
}

static void test_conflicting_finals_all_orders(void **state)
{
	(void)state;
	const struct ev evs[] = {
	    E(ST_SENT, "sent"),
	    EC(ST_UNDELIVERED, "undelivered", "30005"),
	    E(ST_DELIVERED, "delivered"),
	    E(ST_UNKNOWN, "partially_delivered"),
	    EC(ST_FAILED, "failed", "30008"),
	    E(ST_ACCEPTED, "queued"),
	};
	struct status_summary ref;
	check_all_orders(evs, 6, &ref);
	/* documented rule: a handset receipt wins, the conflict stays visible */
	assert_int_equal(ref.top.status, ST_DELIVERED);
	assert_true(status_mask_conflict(ref.mask));
}

static void test_unknown_yields_to_definitive(void **state)
{
	(void)state;
	const struct ev evs[] = {E(ST_UNKNOWN, "unknown"), E(ST_EXPIRED, "expired"),
	                         E(ST_SENT, "buffered")};
	struct status_summary ref;
	check_all_orders(evs, 3, &ref);
	assert_int_equal(ref.top.status, ST_EXPIRED);
	assert_false(status_mask_conflict(ref.mask)); /* unknown is not definitive */
}

static void test_unknown_is_final_over_sent(void **state)
{
	(void)state;
	const struct ev evs[] = {E(ST_SENT, "sent"), E(ST_UNKNOWN, "mystery"),
	                         E(ST_ACCEPTED, "queued")};
	struct status_summary ref;
	check_all_orders(evs, 3, &ref);
	assert_int_equal(ref.top.status, ST_UNKNOWN);
	assert_string_equal(ref.top.raw_status, "mystery");
}

static void test_same_status_tiebreak(void **state)
{
	(void)state;
	/* two undelivered receipts with different codes and times: the later
	 * provider time wins, whatever the arrival order */
	const struct ev evs[] = {
	    {{ST_UNDELIVERED, 1000, "1", "undelivered"}, false},
	    {{ST_UNDELIVERED, 2000, "2", "undelivered"}, false},
	    {{ST_UNDELIVERED, -1, "3", "undelivered"}, false},
	    E(ST_SENT, "sent"),
	};
	struct status_summary ref;
	check_all_orders(evs, 4, &ref);
	assert_int_equal(ref.top.occurred_ms, 2000);
	assert_string_equal(ref.top.error_code, "2");
}

/* Same status and provider time, one receipt with an error code and one
 * without: the one with the code wins (no code sorts first, status.h), so
 * the summary keeps the carrier's reason whatever the arrival order. */
static void test_missing_error_code_sorts_first(void **state)
{
	(void)state;
	const struct ev evs[] = {
	    E(ST_UNDELIVERED, "undelivered"),
	    EC(ST_UNDELIVERED, "undelivered", "30003"),
	    E(ST_SENT, "sent"),
	};
	struct status_summary ref;
	assert_int_equal(check_all_orders(evs, 3, &ref), 6);
	assert_int_equal(ref.top.status, ST_UNDELIVERED);
	assert_non_null(ref.top.error_code);
	assert_string_equal(ref.top.error_code, "30003");
	assert_true(status_event_cmp(&evs[0].k, &evs[1].k) < 0);
	assert_true(status_event_cmp(&evs[1].k, &evs[0].k) > 0);
}

static void test_read_flag(void **state)
{
	(void)state;
	struct ev evs[] = {E(ST_DELIVERED, "delivered"), E(ST_DELIVERED, "read"),
	                   E(ST_SENT, "sent")};
	evs[1].read = true;
	struct status_summary ref;
	check_all_orders(evs, 3, &ref);
	assert_true(ref.read);
	assert_int_equal(ref.top.status, ST_DELIVERED);
	/* "read" > "delivered" bytewise, so the read event is the top one */
	assert_string_equal(ref.top.raw_status, "read");
}

static void test_rules(void **state)
{
	(void)state;
	/* a final state is never replaced by a non-final one */
	for (int f = 0; f < ST__COUNT; f++) {
		for (int nf = 0; nf < ST__COUNT; nf++) {
			if (!status_is_final((enum dlr_status)f) ||
			    status_is_final((enum dlr_status)nf))
				continue;
			assert_true(status_rank((enum dlr_status)f) >
			            status_rank((enum dlr_status)nf));
		}
	}
	assert_true(status_rank(ST_SENT) > status_rank(ST_ACCEPTED));
	for (int d = 0; d < ST__COUNT; d++)
		if (status_is_definitive((enum dlr_status)d))
			assert_true(status_rank((enum dlr_status)d) > status_rank(ST_UNKNOWN));
	assert_false(status_is_final(ST_SENT));
	assert_true(status_is_final(ST_UNKNOWN));
	assert_false(status_is_definitive(ST_UNKNOWN));
	assert_false(status_mask_conflict((1u << ST_DELIVERED) | (1u << ST_UNKNOWN)));
	assert_true(status_mask_conflict((1u << ST_DELIVERED) | (1u << ST_FAILED)));
}

static void test_names_round_trip(void **state)
{
	(void)state;
	for (int s = 0; s < ST__COUNT; s++) {
		enum dlr_status out;
		const char *n = status_name((enum dlr_status)s);
		assert_int_equal(status_parse(n, strlen(n), &out), 0);
		assert_int_equal(out, s);
	}
	enum dlr_status out;
	assert_int_equal(status_parse("deliver", 7, &out), DLRD_EINVAL);
}

/* Random sets from a realistic pool, random orders with duplicates. */
static void test_randomized(void **state)
{
	(void)state;
	static const char *codes[] = {NULL, "30003", "30005", "1"};
	static const char *raws[] = {"a", "b", "c"};
	unsigned seed = 12345;
	for (int iter = 0; iter < 20000; iter++) {
		struct ev evs[12];
		int n = 1 + (int)(rand_r(&seed) % 8);
		for (int i = 0; i < n; i++) {
			evs[i].k.status = (enum dlr_status)(rand_r(&seed) % ST__COUNT);
			evs[i].k.occurred_ms =
			    (rand_r(&seed) % 3) ? -1 : (int64_t)(rand_r(&seed) % 5);
			evs[i].k.error_code = codes[rand_r(&seed) % 4];
			evs[i].k.raw_status = raws[rand_r(&seed) % 3];
			evs[i].read = rand_r(&seed) % 7 == 0;
		}
		/* add duplicates of random members */
		int m = n;
		while (m < 12 && rand_r(&seed) % 2)
			evs[m++] = evs[rand_r(&seed) % (unsigned)n];
		int order[12];
		for (int i = 0; i < m; i++)
			order[i] = i;
		struct status_summary ref = fold(evs, order, m);
		for (int t = 0; t < 4; t++) {
			for (int i = m - 1; i > 0; i--) {
				int j = (int)(rand_r(&seed) % (unsigned)(i + 1));
				int x = order[i];
				order[i] = order[j];
				order[j] = x;
			}
			struct status_summary s = fold(evs, order, m);
			assert_same(&s, &ref);
		}
		/* the winner is the maximum of the set */
		for (int i = 0; i < m; i++)
			assert_true(status_event_cmp(&evs[i].k, &ref.top) <= 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_happy_path_all_orders),
	    cmocka_unit_test(test_failure_with_code_all_orders),
	    cmocka_unit_test(test_conflicting_finals_all_orders),
	    cmocka_unit_test(test_unknown_yields_to_definitive),
	    cmocka_unit_test(test_unknown_is_final_over_sent),
	    cmocka_unit_test(test_same_status_tiebreak),
	    cmocka_unit_test(test_missing_error_code_sorts_first),
	    cmocka_unit_test(test_read_flag),
	    cmocka_unit_test(test_rules),
	    cmocka_unit_test(test_names_round_trip),
	    cmocka_unit_test(test_randomized),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
