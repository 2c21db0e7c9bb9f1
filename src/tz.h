/* SPDX-License-Identifier: MIT */
/*
 * Time zones from the system tz database (/usr/share/zoneinfo, Debian's
 * tzdata), read directly from its TZif files (RFC 8536): the transition
 * table, and past its end the POSIX TZ rule in the file's footer.  glibc has
 * no per-call time zone API (localtime_r reads the process-wide TZ), so
 * dlrd converts instants itself instead of touching TZ: nothing in dlrd
 * depends on the TZ variable, and conversions run on any thread at once.
 * Offset rules are never written by hand; they all come from the database.
 *
 * A struct tz_db caches the zones it has loaded; a loaded zone is immutable
 * and lives as long as its database handle.
 */
#ifndef DLRD_TZ_H
#define DLRD_TZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TZ_NAME_MAX 64 /* longest zone name accepted ("America/Argentina/...") */
#define TZ_FMT_LEN  30 /* "2026-03-08T01:59:00.000-05:00" and its NUL */
#define TZ_ABBR_MAX 16
#define TZ_DIR      "/usr/share/zoneinfo"

struct tz_db;
struct tz_zone;

/* The local time facts at one instant. */
struct tz_local {
	int32_t offset_s; /* seconds east of UTC */
	bool is_dst;
	char abbrev[TZ_ABBR_MAX]; /* "EST", "CEST", "+03" */
};

/* Opens the database rooted at dir (NULL: TZ_DIR); nothing is read yet.
 * Never fails (a missing folder shows as unknown zones).  Free with
 * tz_db_free.  Main thread, at start-up. */
struct tz_db *tz_db_new(const char *dir);
/* Frees the handle and every zone it loaded.  Accepts NULL. */
void tz_db_free(struct tz_db *db);

/* True when name has the shape of a zone name: 1..TZ_NAME_MAX bytes of
 * [A-Za-z0-9_+-./], no empty or dot-leading component (so no "..", no
 * absolute path), and not "localtime" or "posixrules" (files of the zone
 * folder that name no zone).  Pure; any thread. */
bool tz_name_valid(const char *name, size_t n);

/* Finds (loading and caching it on first use) the zone called name[0..n).
 * *out is borrowed from db.  Returns 0; DLRD_EINVAL when the name is not a
 * zone name; DLRD_ENOTFOUND when the database has no such zone (or the file
 * is not a usable TZif file).  Any thread. */
int tz_lookup(struct tz_db *db, const char *name, size_t n, const struct tz_zone **out);

/* The zone's name as looked up. */
const char *tz_zone_name(const struct tz_zone *z);

/* Local time facts of z at the UTC instant utc_ms.  Any thread. */
void tz_at(const struct tz_zone *z, int64_t utc_ms, struct tz_local *out);

/* Formats utc_ms as RFC 3339 local time with the zone's offset
 * ("2026-03-08T01:59:00.000-05:00"); info (may be NULL) gets the facts
 * used.  Offsets with seconds (old local mean times) are cut to minutes. */
void tz_format(const struct tz_zone *z, int64_t utc_ms, char buf[TZ_FMT_LEN],
               struct tz_local *info);

#endif
