/* SPDX-License-Identifier: MIT */
/*
 * TZif reader and local time conversion (see tz.h).
 *
 * A TZif file (RFC 8536) holds a version 1 block with 32-bit transition
 * times and, from version 2 on, a second block with 64-bit times followed by
 * a footer: a POSIX TZ string ("EST5EDT,M3.2.0,M11.1.0") that gives local
 * time after the last transition.  Debian ships "fat" files (transitions up
 * to 2037), but "slim" files stop at the last rule change and rely on the
 * footer, so both are handled.  Files with leap-second records (the
 * "right/" zones) are refused: their times are not POSIX times.
 *
 * Loaded zones live in a list guarded by the handle's mutex (bounded by the
 * number of zone files, a few hundred small tables); a zone is never
 * modified after it is published, so tz_at() needs no lock.
 */
#include "tz.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define TZIF_MAX_BYTES (256u * 1024u)
#define TZIF_MAX_TIMES 4096u
#define TZIF_MAX_TYPES 256u
/* UT offsets RFC 8536 (3.2) allows: -25:00 < utoff < +26:00.  tz_format()
 * prints the hours with two digits, and negates the offset. */
#define TZ_OFF_MIN (-89999)
#define TZ_OFF_MAX 93599

struct tz_type {
	int32_t off;
	bool dst;
	char abbr[TZ_ABBR_MAX];
};

/* A transition date of a POSIX TZ rule. */
struct tz_rdate {
	char kind;    /* 'M' (month.week.day), 'J' (1..365, no Feb 29), 'N' (0..365) */
	int m, w, d;  /* for 'M' */
	int n;        /* for 'J' and 'N' */
	int32_t time; /* seconds after local midnight (may be < 0 or > 24 h) */
};

struct tz_rule {
	bool valid;
	struct tz_type std, dst;
	bool has_dst;
	struct tz_rdate start, end;
};

struct tz_zone {
	struct tz_zone *next; /* cache list, guarded by the db's mutex */
	char name[TZ_NAME_MAX + 1];
	int64_t *times; /* transitions, ascending, seconds since the epoch */
	uint8_t *idx;   /* type index per transition */
	size_t n_times;
	struct tz_type *types;
	size_t n_types;
	struct tz_rule rule; /* after the last transition (footer) */
};

struct tz_db {
	char *dir;
	pthread_mutex_t mu;
	struct tz_zone *zones; /* guarded by mu */
	size_t n_zones;        /* guarded by mu */
};

/* ---- calendar ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = floor_div(y, 400);
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	z += 719468;
	int64_t era = floor_div(z, 146097);
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
	static const int md[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 2 && is_leap(y) ? 29 : md[m - 1];
}

/* ---- POSIX TZ strings (the TZif footer) ---- */

struct cursor {
	const char *p, *end;
};

static bool off_ok(int32_t off)
{
	return off >= TZ_OFF_MIN && off <= TZ_OFF_MAX;
}

static bool at(const struct cursor *c, char ch)
{
	return c->p < c->end && *c->p == ch;
}

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static int read_num(struct cursor *c, int max, int *out)
{
	int v = 0, n = 0;
	while (c->p < c->end && is_digit(*c->p) && n < 4) {
		v = v * 10 + (*c->p - '0');
		c->p++;
		n++;
	}
	if (n == 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

static int read_abbr(struct cursor *c, char out[TZ_ABBR_MAX])
{
	size_t n = 0;
	if (at(c, '<')) {
		c->p++;
		while (c->p < c->end && *c->p != '>') {
			if (n + 1 < TZ_ABBR_MAX)
				out[n++] = *c->p;
			c->p++;
		}
		if (!at(c, '>'))
			return -1;
		c->p++;
	} else {
		while (c->p < c->end &&
		       ((*c->p >= 'A' && *c->p <= 'Z') || (*c->p >= 'a' && *c->p <= 'z'))) {
			if (n + 1 < TZ_ABBR_MAX)
				out[n++] = *c->p;
			c->p++;
		}
	}
	out[n] = '\0';
	return n >= 1 ? 0 : -1;
}

/* [+-]hh[:mm[:ss]] in seconds; hours up to 167 (TZif version 3). */
static int read_hms(struct cursor *c, int32_t *out)
{
	int sign = 1, h = 0, m = 0, s = 0;
	if (at(c, '+') || at(c, '-')) {
		sign = *c->p == '-' ? -1 : 1;
		c->p++;
	}
	if (read_num(c, 167, &h) != 0)
		return -1;
	if (at(c, ':')) {
		c->p++;
		if (read_num(c, 59, &m) != 0)
			return -1;
		if (at(c, ':')) {
			c->p++;
			if (read_num(c, 59, &s) != 0)
				return -1;
		}
	}
	*out = sign * (h * 3600 + m * 60 + s);
	return 0;
}

static int read_rdate(struct cursor *c, struct tz_rdate *r)
{
	r->time = 2 * 3600;
	if (at(c, 'M')) {
		c->p++;
		r->kind = 'M';
		if (read_num(c, 12, &r->m) != 0 || r->m < 1 || !at(c, '.'))
			return -1;
		c->p++;
		if (read_num(c, 5, &r->w) != 0 || r->w < 1 || !at(c, '.'))
			return -1;
		c->p++;
		if (read_num(c, 6, &r->d) != 0)
			return -1;
	} else if (at(c, 'J')) {
		c->p++;
		r->kind = 'J';
		if (read_num(c, 365, &r->n) != 0 || r->n < 1)
			return -1;
	} else {
		r->kind = 'N';
		if (read_num(c, 365, &r->n) != 0)
			return -1;
	}
	if (at(c, '/')) {
		c->p++;
		if (read_hms(c, &r->time) != 0)
			return -1;
	}
	return 0;
}

/* Parses a POSIX TZ string.  An empty string (a zone with no rule after
 * its last transition) leaves rule->valid false. */
static int parse_rule(const char *s, size_t n, struct tz_rule *rule)
{
	struct cursor c = {s, s + n};
	int32_t off;

	memset(rule, 0, sizeof(*rule));
	if (n == 0)
		return 0;
	if (read_abbr(&c, rule->std.abbr) != 0 || read_hms(&c, &off) != 0)
		return -1;
	rule->std.off = -off; /* POSIX offsets count west of Greenwich */
	if (c.p < c.end) {
		rule->has_dst = true;
		if (read_abbr(&c, rule->dst.abbr) != 0)
			return -1;
		rule->dst.dst = true;
		rule->dst.off = rule->std.off + 3600;
		if (c.p < c.end && !at(&c, ',')) {
			if (read_hms(&c, &off) != 0)
				return -1;
			rule->dst.off = -off;
		}
		if (at(&c, ',')) {
			c.p++;
			if (read_rdate(&c, &rule->start) != 0 || !at(&c, ','))
				return -1;
			c.p++;
			if (read_rdate(&c, &rule->end) != 0)
				return -1;
		} else {
			/* POSIX's default: the US rules */
			rule->start = (struct tz_rdate){'M', 3, 2, 0, 0, 2 * 3600};
			rule->end = (struct tz_rdate){'M', 11, 1, 0, 0, 2 * 3600};
		}
	}
	/* hours up to 167 are for rule times (version 3), not offsets */
	if (c.p != c.end || !off_ok(rule->std.off) || (rule->has_dst && !off_ok(rule->dst.off)))
		return -1;
	rule->valid = true;
	return 0;
}

/* Seconds since the epoch of local midnight (of the rule's date in year y)
 * plus the rule time, in the local time the rule is written in. */
static int64_t rdate_local(const struct tz_rdate *r, int64_t y)
{
	int64_t day;
	if (r->kind == 'M') {
		int64_t first = days_from_civil(y, r->m, 1);
		int wd0 = (int)((first % 7 + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
		int dom = 1 + (r->d - wd0 + 7) % 7 + (r->w - 1) * 7;
		while (dom > month_days(y, r->m))
			dom -= 7;
		day = first + dom - 1;
	} else if (r->kind == 'J') {
		day = days_from_civil(y, 1, 1) + r->n - 1 + (is_leap(y) && r->n >= 60);
	} else {
		day = days_from_civil(y, 1, 1) + r->n;
	}
	return day * 86400 + r->time;
}

static const struct tz_type *rule_type(const struct tz_rule *r, int64_t t)
{
	if (!r->has_dst)
		return &r->std;
	int64_t y;
	int m, d;
	civil_from_days(floor_div(t + r->std.off, 86400), &y, &m, &d);
	int64_t start = rdate_local(&r->start, y) - r->std.off;
	int64_t end = rdate_local(&r->end, y) - r->dst.off;
	bool dst = start < end ? (t >= start && t < end) : !(t >= end && t < start);
	return dst ? &r->dst : &r->std;
}

/* ---- TZif ---- */

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct tzif_hdr {
	char version;
	uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static int read_hdr(const uint8_t *p, size_t n, struct tzif_hdr *h)
{
	if (n < 44 || memcmp(p, "TZif", 4) != 0)
		return -1;
	h->version = (char)p[4];
	h->isutcnt = be32(p + 20);
	h->isstdcnt = be32(p + 24);
	h->leapcnt = be32(p + 28);
	h->timecnt = be32(p + 32);
	h->typecnt = be32(p + 36);
	h->charcnt = be32(p + 40);
	if (h->timecnt > TZIF_MAX_TIMES || h->typecnt == 0 || h->typecnt > TZIF_MAX_TYPES ||
	    h->charcnt > 4096 || h->leapcnt > 1024 || h->isutcnt > TZIF_MAX_TYPES ||
	    h->isstdcnt > TZIF_MAX_TYPES)
		return -1;
	return 0;
}

static size_t block_len(const struct tzif_hdr *h, size_t tsize)
{
	return h->timecnt * tsize + h->timecnt + h->typecnt * 6 + h->charcnt +
	       h->leapcnt * (tsize + 4) + h->isstdcnt + h->isutcnt;
}

/* Parses a whole TZif file into z (times, types, rule). */
static int parse_tzif(const uint8_t *p, size_t n, struct tz_zone *z)
{
	struct tzif_hdr h;
	size_t tsize = 4, off;

	if (read_hdr(p, n, &h) != 0)
		return -1;
	off = 44;
	if (h.version >= '2') {
		size_t v1 = block_len(&h, 4);
		if (v1 > n - off)
			return -1;
		off += v1;
		if (read_hdr(p + off, n - off, &h) != 0)
			return -1;
		off += 44;
		tsize = 8;
	}
	if (h.leapcnt != 0)
		return -1; /* "right/" zones: not POSIX time */
	if (block_len(&h, tsize) > n - off)
		return -1;
	const uint8_t *tp = p + off;
	const uint8_t *ip = tp + h.timecnt * tsize;
	const uint8_t *ty = ip + h.timecnt;
	const uint8_t *ch = ty + h.typecnt * 6;

	z->n_times = h.timecnt;
	z->times = xcalloc(h.timecnt ? h.timecnt : 1, sizeof(*z->times));
	z->idx = xcalloc(h.timecnt ? h.timecnt : 1, 1);
	for (size_t i = 0; i < h.timecnt; i++) {
		z->times[i] = tsize == 8 ? be64(tp + 8 * i) : (int64_t)(int32_t)be32(tp + 4 * i);
		z->idx[i] = ip[i];
		if (ip[i] >= h.typecnt || (i && z->times[i] <= z->times[i - 1]))
			return -1;
	}
	z->n_types = h.typecnt;
	z->types = xcalloc(h.typecnt, sizeof(*z->types));
	for (size_t i = 0; i < h.typecnt; i++) {
		const uint8_t *t = ty + 6 * i;
		size_t ai = t[5], k = 0;
		z->types[i].off = (int32_t)be32(t);
		z->types[i].dst = t[4] != 0;
		if (ai >= h.charcnt || !off_ok(z->types[i].off))
			return -1;
		while (ai + k < h.charcnt && ch[ai + k] && k + 1 < TZ_ABBR_MAX) {
			z->types[i].abbr[k] = (char)ch[ai + k];
			k++;
		}
		z->types[i].abbr[k] = '\0';
	}
	if (tsize == 8) {
		/* footer: "\n" TZ "\n" */
		const uint8_t *f = p + off + block_len(&h, 8), *end = p + n;
		if (f < end && *f == '\n') {
			const uint8_t *nl = memchr(f + 1, '\n', (size_t)(end - f - 1));
			if (!nl ||
			    parse_rule((const char *)f + 1, (size_t)(nl - f - 1), &z->rule) != 0)
				return -1;
		}
	}
	return 0;
}

static void zone_free(struct tz_zone *z)
{
	if (!z)
		return;
	free(z->times);
	free(z->idx);
	free(z->types);
	free(z);
}

static int load_zone(const char *dir, const char *name, struct tz_zone **out)
{
	char path[4096 + TZ_NAME_MAX + 2];
	struct stat sb;
	uint8_t *buf = NULL;
	struct tz_zone *z = NULL;
	size_t got = 0;
	int fd, rc = DLRD_ENOTFOUND;

	util_fmt(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return DLRD_ENOTFOUND;
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 44 ||
	    (uint64_t)sb.st_size > TZIF_MAX_BYTES)
		goto out;
	buf = xmalloc((size_t)sb.st_size);
	while (got < (size_t)sb.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)sb.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			goto out;
		got += (size_t)r;
	}
	z = xcalloc(1, sizeof(*z));
	util_strlcpy(z->name, name, sizeof(z->name));
	if (parse_tzif(buf, got, z) != 0)
		goto out;
	*out = z;
	z = NULL;
	rc = 0;
out:
	zone_free(z);
	free(buf);
	close(fd);
	return rc;
}

/* ---- public ---- */

struct tz_db *tz_db_new(const char *dir)
{
	struct tz_db *db = xcalloc(1, sizeof(*db));
	db->dir = xstrdup(dir ? dir : TZ_DIR);
	pthread_mutex_init(&db->mu, NULL);
	return db;
}

void tz_db_free(struct tz_db *db)
{
	if (!db)
		return;
	while (db->zones) {
		struct tz_zone *z = db->zones;
		db->zones = z->next;
		zone_free(z);
	}
	pthread_mutex_destroy(&db->mu);
	free(db->dir);
	free(db);
}

bool tz_name_valid(const char *name, size_t n)
{
	bool comp_start = true;

	if (n == 0 || n > TZ_NAME_MAX)
		return false;
	/* TZif files of the folder that name no zone: "localtime" is the
	 * server's own zone (a link to /etc/localtime), "posixrules" the
	 * default rules of POSIX TZ strings */
	if ((n == 9 && memcmp(name, "localtime", 9) == 0) ||
	    (n == 10 && memcmp(name, "posixrules", 10) == 0))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) ||
		          c == '_' || c == '+' || c == '-' || c == '.' || c == '/';
		if (!ok)
			return false;
		if (comp_start && (c == '/' || c == '.'))
			return false; /* empty component, absolute path, "..", ".x" */
		comp_start = c == '/';
	}
	return !comp_start;
}

int tz_lookup(struct tz_db *db, const char *name, size_t n, const struct tz_zone **out)
{
	char key[TZ_NAME_MAX + 1];
	struct tz_zone *z, *loaded = NULL;
	int rc;

	if (!tz_name_valid(name, n))
		return DLRD_EINVAL;
	memcpy(key, name, n);
	key[n] = '\0';
	pthread_mutex_lock(&db->mu);
	for (z = db->zones; z; z = z->next)
		if (strcmp(z->name, key) == 0)
			break;
	pthread_mutex_unlock(&db->mu);
	if (z) {
		*out = z;
		return 0;
	}
	/* Read the file without holding the lock; a racing thread may load
	 * the same zone, and the loser's copy is dropped. */
	if ((rc = load_zone(db->dir, key, &loaded)) != 0)
		return rc;
	pthread_mutex_lock(&db->mu);
	for (z = db->zones; z; z = z->next)
		if (strcmp(z->name, key) == 0)
			break;
	if (!z) {
		loaded->next = db->zones;
		db->zones = loaded;
		db->n_zones++;
		z = loaded;
		loaded = NULL;
	}
	pthread_mutex_unlock(&db->mu);
	zone_free(loaded);
	*out = z;
	return 0;
}

const char *tz_zone_name(const struct tz_zone *z)
{
	return z->name;
}

void tz_at(const struct tz_zone *z, int64_t utc_ms, struct tz_local *out)
{
	int64_t t = floor_div(utc_ms, 1000);
	const struct tz_type *ty;

	if (z->n_times == 0 || t < z->times[0]) {
		ty = z->n_times == 0 && z->rule.valid ? rule_type(&z->rule, t) : &z->types[0];
	} else if (t >= z->times[z->n_times - 1] && z->rule.valid) {
		ty = rule_type(&z->rule, t);
	} else {
		size_t lo = 0, hi = z->n_times; /* last i with times[i] <= t */
		while (hi - lo > 1) {
			size_t mid = lo + (hi - lo) / 2;
			if (z->times[mid] <= t)
				lo = mid;
			else
				hi = mid;
		}
		ty = &z->types[z->idx[lo]];
	}
	out->offset_s = ty->off;
	out->is_dst = ty->dst;
	util_strlcpy(out->abbrev, ty->abbr, sizeof(out->abbrev));
}

static void put2(char *p, int v)
{
	p[0] = (char)('0' + v / 10 % 10);
	p[1] = (char)('0' + v % 10);
}

void tz_format(const struct tz_zone *z, int64_t utc_ms, char buf[TZ_FMT_LEN], struct tz_local *info)
{
	struct tz_local l;
	int64_t local_ms, days, y, secs;
	int m, d, ms, off_min;

	tz_at(z, utc_ms, &l);
	local_ms = utc_ms + (int64_t)l.offset_s * 1000;
	days = floor_div(local_ms, 86400000);
	secs = floor_div(local_ms, 1000) - days * 86400;
	ms = (int)(local_ms - floor_div(local_ms, 1000) * 1000);
	civil_from_days(days, &y, &m, &d);
	memcpy(buf, "0000-00-00T00:00:00.000+00:00", TZ_FMT_LEN);
	put2(buf, (int)(y / 100 % 100));
	put2(buf + 2, (int)(y % 100));
	put2(buf + 5, m);
	put2(buf + 8, d);
	put2(buf + 11, (int)(secs / 3600));
	put2(buf + 14, (int)(secs / 60 % 60));
	put2(buf + 17, (int)(secs % 60));
	buf[20] = (char)('0' + ms / 100);
	put2(buf + 21, ms % 100);
	off_min = (l.offset_s < 0 ? -l.offset_s : l.offset_s) / 60;
	buf[23] = l.offset_s < 0 ? '-' : '+';
	put2(buf + 24, off_min / 60);
	put2(buf + 27, off_min % 60);
	if (info)
		*info = l;
}
