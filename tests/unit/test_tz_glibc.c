/* SPDX-License-Identifier: MIT */
/*
 * dlrd's own TZif reader (src/tz.c) against glibc, which reads the same
 * files: for every zone in the system tz database, at every transition of
 * the zone's table and one second either side, at both changes of the
 * footer's DST rule in sample years from 2038 to 9998, and at a fixed pseudo-random
 * sample of instants from 1900 to 9999 (most of them past 2037, where only
 * the footer's POSIX rule applies), tz_at() and tz_format() must give the
 * offset, the DST flag, the abbreviation and the local date and time that
 * localtime_r() gives under TZ=":<zone>".
 *
 * One documented difference is allowed: before a zone's first transition,
 * RFC 8536 (3.2) says time type 0 applies, which dlrd follows, while glibc
 * takes the first type that is not DST.  zic writes type 0 as a standard
 * time, so the two agree unless a file says otherwise; such instants are
 * counted and reported, not failed, and only when type 0 is a DST type.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "tz.c"

#define MAX_ZONES   2000
#define N_SAMPLES   300
#define MAX_REPORTS 20

struct diff_run {
	struct tz_db *db;
	size_t zones, instants, mismatches, before_first_dst;
	size_t unloadable;
	uint64_t rng;
};

static uint64_t next_rand(uint64_t *s)
{
	/* splitmix64: the sample is the same on every run */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static bool is_tzif(const char *path)
{
	char magic[4];
	FILE *f = fopen(path, "rb");
	bool ok = f && fread(magic, 1, 4, f) == 4 && memcmp(magic, "TZif", 4) == 0;
	if (f)
		fclose(f);
	return ok;
}

/* One instant of one zone; returns false on a mismatch (and reports the
 * first few). */
static bool compare_at(struct diff_run *r, const struct tz_zone *z, int64_t t)
{
	struct tz_local l;
	struct tm tm;
	char buf[TZ_FMT_LEN], want[64];
	time_t tt = (time_t)t;

	r->instants++;
	if (!localtime_r(&tt, &tm))
		return true; /* outside glibc's range: nothing to compare */
	tz_format(z, t * 1000, buf, &l);
	snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (l.offset_s == tm.tm_gmtoff && l.is_dst == (tm.tm_isdst > 0) &&
	    strcmp(l.abbrev, tm.tm_zone) == 0 && memcmp(buf, want, 19) == 0)
		return true;
	if (z->n_times > 0 && t < z->times[0] && z->types[0].dst) {
		r->before_first_dst++;
		return true;
	}
	if (r->mismatches++ < MAX_REPORTS)
		print_message(
		    "mismatch %s at %lld: dlrd %.19s %+d dst=%d %s, glibc %s %+ld dst=%d %s\n",
		    z->name, (long long)t, buf, l.offset_s, l.is_dst, l.abbrev, want, tm.tm_gmtoff,
		    tm.tm_isdst, tm.tm_zone);
	return false;
}

static void compare_zone(struct diff_run *r, const char *name)
{
	const struct tz_zone *z = NULL;
	char tzvar[TZ_NAME_MAX + 2];

	if (tz_lookup(r->db, name, strlen(name), &z) != 0) {
		/* glibc would fall back to UTC for a file it cannot use; dlrd
		 * says the zone is unknown.  Every shipped zone must load. */
		print_message("dlrd cannot load zone %s\n", name);
		r->unloadable++;
		return;
	}
	snprintf(tzvar, sizeof(tzvar), ":%s", name);
	setenv("TZ", tzvar, 1);
	tzset();
	r->zones++;
	for (size_t i = 0; i < z->n_times; i++)
		for (int64_t d = -1; d <= 1; d++)
			compare_at(r, z, z->times[i] + d);
	/* past the table, the footer's rule: both changes of sample years,
	 * one second either side (found with dlrd's own rule arithmetic;
	 * glibc says on which side each instant falls) */
	static const int64_t years[] = {2038, 2039, 2040, 2044, 2100, 2400, 2401, 5000, 9998};
	if (z->rule.valid && z->rule.has_dst)
		for (size_t i = 0; i < sizeof(years) / sizeof(years[0]); i++) {
			int64_t s = rdate_local(&z->rule.start, years[i]) - z->rule.std.off;
			int64_t e = rdate_local(&z->rule.end, years[i]) - z->rule.dst.off;
			for (int64_t d = -1; d <= 1; d++) {
				compare_at(r, z, s + d);
				compare_at(r, z, e + d);
			}
		}
	/* 1900..2200, then a few up to 9999 (provider and API times may be
	 * that far out) */
	for (int i = 0; i < N_SAMPLES; i++) {
		int64_t lo = -2208988800LL, span = 9467280000LL; /* 1900 + 300 years */
		if (i % 10 == 9) {
			lo = 7258118400LL;     /* 2200 */
			span = 246144182400LL; /* .. 9999-12-31T23:59:59 */
		}
		compare_at(r, z, lo + (int64_t)(next_rand(&r->rng) % (uint64_t)span));
	}
}

/* Zone names: every TZif file under TZ_DIR, except the posix/ and right/
 * copies (right/ has leap seconds, which dlrd refuses on purpose) and the
 * "localtime"/"posixrules" aliases. */
static void walk(struct diff_run *r, const char *dir, const char *prefix, int depth)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		char path[1024], name[TZ_NAME_MAX + 1];
		if (e->d_name[0] == '.')
			continue;
		if (depth == 0 &&
		    (strcmp(e->d_name, "posix") == 0 || strcmp(e->d_name, "right") == 0 ||
		     strcmp(e->d_name, "localtime") == 0 || strcmp(e->d_name, "posixrules") == 0))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if ((size_t)snprintf(name, sizeof(name), "%s%s", prefix, e->d_name) >= sizeof(name))
			continue;
		struct stat sb;
		if (stat(path, &sb) != 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			char sub[TZ_NAME_MAX + 2];
			snprintf(sub, sizeof(sub), "%s/", name);
			if (depth < 3)
				walk(r, path, sub, depth + 1);
		} else if (S_ISREG(sb.st_mode) && is_tzif(path) && r->zones < MAX_ZONES) {
			compare_zone(r, name);
		}
	}
	closedir(d);
}

static void test_every_zone_matches_glibc(void **state)
{
	struct diff_run r = {.db = tz_db_new(NULL), .rng = 20261129};
	(void)state;

	walk(&r, TZ_DIR, "", 0);
	print_message("%zu zones, %zu instants, %zu mismatches, %zu before a first transition"
	              " whose type 0 is DST (allowed), %zu zones dlrd could not load\n",
	              r.zones, r.instants, r.mismatches, r.before_first_dst, r.unloadable);
	tz_db_free(r.db);
	if (r.zones == 0) /* no tzdata: tzdata is a build dependency (deps.sh) */
		fail_msg("no zones found under %s", TZ_DIR);
	assert_true(r.zones >= 300);
	assert_int_equal(r.unloadable, 0);
	assert_int_equal(r.mismatches, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_zone_matches_glibc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
