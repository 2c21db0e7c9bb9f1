/* SPDX-License-Identifier: MIT */
/*
 * Time zones from the system tz database: local times and offsets on both
 * sides of daylight-saving changes (America/New_York 2026-03-08 and
 * 2026-11-01, Europe/Berlin 2026-03-29 and 2026-10-25, Australia/Sydney in
 * the southern hemisphere), the POSIX rule of a TZif footer past the last
 * transition, zone name validation (no path tricks), unknown zones, and
 * conversions from many threads at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>

#include "tz.c"

static int64_t utc_ms(const char *rfc3339)
{
	int64_t ms = 0;
	assert_int_equal(util_parse_rfc3339(rfc3339, strlen(rfc3339), &ms), 0);
	return ms;
}

static void expect(struct tz_db *db, const char *zone, const char *utc, const char *local,
                   const char *abbr, bool dst)
{
	const struct tz_zone *z = NULL;
	char buf[TZ_FMT_LEN];
	struct tz_local l;

	assert_int_equal(tz_lookup(db, zone, strlen(zone), &z), 0);
	tz_format(z, utc_ms(utc), buf, &l);
	assert_string_equal(buf, local);
	assert_string_equal(l.abbrev, abbr);
	assert_int_equal(l.is_dst, dst);
}

static void test_new_york_dst(void **state)
{
	struct tz_db *db = tz_db_new(NULL);
	(void)state;
	/* spring forward at 2026-03-08 02:00 local (07:00Z) */
	expect(db, "America/New_York", "2026-03-08T06:59:59.999Z", "2026-03-08T01:59:59.999-05:00",
	       "EST", false);
	expect(db, "America/New_York", "2026-03-08T07:00:00.000Z", "2026-03-08T03:00:00.000-04:00",
	       "EDT", true);
	/* fall back at 2026-11-01 02:00 EDT (06:00Z): 01:30 happens twice */
	expect(db, "America/New_York", "2026-11-01T05:30:00.000Z", "2026-11-01T01:30:00.000-04:00",
	       "EDT", true);
	expect(db, "America/New_York", "2026-11-01T06:30:00.000Z", "2026-11-01T01:30:00.000-05:00",
	       "EST", false);
	tz_db_free(db);
}

static void test_berlin_dst(void **state)
{
	struct tz_db *db = tz_db_new(NULL);
	(void)state;
	expect(db, "Europe/Berlin", "2026-03-29T00:59:00.000Z", "2026-03-29T01:59:00.000+01:00",
	       "CET", false);
	expect(db, "Europe/Berlin", "2026-03-29T01:00:00.000Z", "2026-03-29T03:00:00.000+02:00",
	       "CEST", true);
	/* fall back 2026-10-25 03:00 CEST (01:00Z) */
	expect(db, "Europe/Berlin", "2026-10-25T00:59:59.000Z", "2026-10-25T02:59:59.000+02:00",
	       "CEST", true);
	expect(db, "Europe/Berlin", "2026-10-25T01:00:00.000Z", "2026-10-25T02:00:00.000+01:00",
	       "CET", false);
	tz_db_free(db);
}

static void test_southern_and_fixed(void **state)
{
	struct tz_db *db = tz_db_new(NULL);
	(void)state;
	/* Sydney: DST in January, standard time in July */
	expect(db, "Australia/Sydney", "2026-01-15T00:00:00.000Z", "2026-01-15T11:00:00.000+11:00",
	       "AEDT", true);
	expect(db, "Australia/Sydney", "2026-07-15T00:00:00.000Z", "2026-07-15T10:00:00.000+10:00",
	       "AEST", false);
	expect(db, "UTC", "2026-07-15T00:00:00.000Z", "2026-07-15T00:00:00.000+00:00", "UTC",
	       false);
	expect(db, "Asia/Kolkata", "2026-07-15T00:00:00.000Z", "2026-07-15T05:30:00.000+05:30",
	       "IST", false);
	/* far past the file's transitions: the footer's rule decides */
	expect(db, "America/New_York", "2090-07-04T16:00:00.000Z", "2090-07-04T12:00:00.000-04:00",
	       "EDT", true);
	expect(db, "America/New_York", "2090-12-25T17:00:00.000Z", "2090-12-25T12:00:00.000-05:00",
	       "EST", false);
	tz_db_free(db);
}

/* The footer rule alone (a "slim" file has nothing else), against the
 * table of the same zone. */
static void test_rule_matches_table(void **state)
{
	struct tz_rule r;
	const struct tz_zone *z = NULL;
	struct tz_db *db = tz_db_new(NULL);
	const char *rule = "EST5EDT,M3.2.0,M11.1.0";
	(void)state;

	assert_int_equal(parse_rule(rule, strlen(rule), &r), 0);
	assert_int_equal(tz_lookup(db, "America/New_York", 16, &z), 0);
	for (int64_t t = utc_ms("2026-01-01T00:00:00Z") / 1000;
	     t < utc_ms("2028-01-01T00:00:00Z") / 1000; t += 1800) {
		struct tz_local l;
		tz_at(z, t * 1000, &l);
		assert_int_equal(rule_type(&r, t)->off, l.offset_s);
	}
	rule = "<+0330>-3:30";
	assert_int_equal(parse_rule(rule, strlen(rule), &r), 0);
	assert_int_equal(rule_type(&r, 0)->off, 3 * 3600 + 1800);
	assert_string_equal(rule_type(&r, 0)->abbr, "+0330");
	assert_int_not_equal(parse_rule("EST5EDT,M13.1.0,M11.1.0", 23, &r), 0);
	tz_db_free(db);
}

static void test_names(void **state)
{
	struct tz_db *db = tz_db_new(NULL);
	const struct tz_zone *z = NULL;
	static const char *const bad[] = {
	    "",
	    "/etc/passwd",
	    "../../etc/passwd",
	    "America/../../etc/passwd",
	    "America//New_York",
	    "America/",
	    ".hidden",
	    "America/New York",
	    "Europe/Berlin\n",
	    "a123456789a123456789a123456789a123456789a123456789a123456789a12345",
	    "localtime",  /* the server's zone, whatever it is */
	    "posixrules", /* not a zone: POSIX TZ strings' default rules */
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		assert_int_equal(tz_lookup(db, bad[i], strlen(bad[i]), &z), DLRD_EINVAL);
	assert_int_equal(tz_lookup(db, "Mars/Olympus_Mons", 17, &z), DLRD_ENOTFOUND);
	assert_int_equal(tz_lookup(db, "America", 7, &z), DLRD_ENOTFOUND); /* a folder */
	assert_int_equal(tz_lookup(db, "Europe/Berlin", 13, &z), 0);
	assert_string_equal(tz_zone_name(z), "Europe/Berlin");
	const struct tz_zone *z2;
	assert_int_equal(tz_lookup(db, "Europe/Berlin", 13, &z2), 0);
	assert_ptr_equal(z, z2); /* cached */
	tz_db_free(db);
}

struct worker {
	struct tz_db *db;
	int failures;
};

static void *convert_many(void *arg)
{
	struct worker *w = arg;
	static const char *const zones[] = {"America/New_York", "Europe/Berlin", "Asia/Tokyo",
	                                    "Australia/Sydney"};
	static const int32_t jan[] = {-5 * 3600, 3600, 9 * 3600, 11 * 3600};
	int64_t t = 1767225600000; /* 2026-01-01T00:00:00Z */
	for (int i = 0; i < 20000; i++) {
		const struct tz_zone *z = NULL;
		struct tz_local l;
		size_t k = (size_t)i % 4;
		if (tz_lookup(w->db, zones[k], strlen(zones[k]), &z) != 0) {
			w->failures++;
			continue;
		}
		tz_at(z, t, &l);
		w->failures += l.offset_s != jan[k];
	}
	return NULL;
}

static void test_threads(void **state)
{
	pthread_t th[8];
	struct worker w[8];
	struct tz_db *db = tz_db_new(NULL);
	(void)state;
	for (int i = 0; i < 8; i++) {
		w[i] = (struct worker){db, 0};
		assert_int_equal(pthread_create(&th[i], NULL, convert_many, &w[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
	tz_db_free(db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_york_dst),
	    cmocka_unit_test(test_berlin_dst),
	    cmocka_unit_test(test_southern_and_fixed),
	    cmocka_unit_test(test_rule_matches_table),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
