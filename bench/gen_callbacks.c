/* SPDX-License-Identifier: MIT */
/*
 * gen_callbacks: writes the benchmark's pre-signed Twilio callbacks for wrk,
 * and afterwards checks the database against what was sent.
 *
 *   gen_callbacks gen --out PREFIX --slices T --messages N --token TOKEN
 *                     --url PUBLIC_URL [--seed S] [--dup 0.10] [--ooo 0.05]
 *                     [--bad 0]
 *     Writes PREFIX.0 .. PREFIX.<T-1>, one slice per wrk thread, messages
 *     split between slices so every event of a message goes through the same
 *     thread.  One request per line: "expect \t first \t signature \t body"
 *     (expect: the status the daemon must answer; first: 1 on the first
 *     request of each distinct event).  Prints one key=value summary line.
 *
 *   gen_callbacks verify --db FILE [--acked A] [--max-log I]
 *                        [--events E [--events-min E0]] [--messages M]
 *                        [SLICE:ISSUED ...]
 *     Each SLICE:ISSUED says that the first ISSUED requests of that slice
 *     file were sent (cycling: ISSUED may exceed the line count).  The set of
 *     distinct events they carry must be exactly the set stored in
 *     sms_message_events; every message's summary must be the fold of its
 *     sent events; the retry log must hold one row per accepted request, at
 *     least A (requests answered 2xx) and at most I (requests sent).  Without
 *     slices, --events (or the range --events-min..--events) and --messages
 *     give the expected counts (the soak test, whose requests are generated
 *     on the fly).  Exit status 0 only
 *     when every check passes.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "cbgen.h"
#include "form.h"
#include "dlrd_limits.h"
#include "util.h"

#define MAX_SLICES 256

static int usage(void)
{
	fputs("usage: gen_callbacks gen --out PREFIX --slices T --messages N --token TOKEN\n"
	      "                         --url PUBLIC_URL [--seed S] [--dup F] [--ooo F] [--bad F]\n"
	      "       gen_callbacks verify --db FILE [--acked A] [--max-log I] [--events E]\n"
	      "                            [--events-min E0] [--messages M] [SLICE:ISSUED ...]\n",
	      stderr);
	return 2;
}

static int arg_u64(const char *opt, const char *v, uint64_t *out)
{
	if (!v || util_parse_u64(v, strlen(v), out) != 0) {
		fprintf(stderr, "gen_callbacks: %s needs a non-negative integer\n", opt);
		return -1;
	}
	return 0;
}

static int arg_frac(const char *opt, const char *v, double *out)
{
	char *end = NULL;
	if (!v)
		goto bad;
	errno = 0;
	*out = strtod(v, &end);
	if (errno || end == v || *end || *out < 0 || *out >= 1)
		goto bad;
	return 0;
bad:
	fprintf(stderr, "gen_callbacks: %s needs a fraction in [0, 1)\n", opt);
	return -1;
}

/* ---- gen ---- */

static int write_slice(const char *path, const struct cbgen_chunk *c)
{
	FILE *f = fopen(path, "w");
	static char buf[1 << 20];
	if (!f) {
		fprintf(stderr, "gen_callbacks: cannot create %s: %s\n", path, strerror(errno));
		return -1;
	}
	setvbuf(f, buf, _IOFBF, sizeof(buf));
	for (size_t i = 0; i < c->n; i++) {
		const struct cbgen_req *r = &c->reqs[i];
		fprintf(f, "%u\t%d\t%s\t%.*s\n", r->expect, r->first ? 1 : 0, r->sig,
		        (int)r->body_len, r->body);
	}
	if (fclose(f) != 0) {
		fprintf(stderr, "gen_callbacks: writing %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int cmd_gen(int argc, char **argv)
{
	struct cbgen_params p = {.seed = 1, .dup_rate = 0.10, .ooo_rate = 0.05};
	const char *prefix = NULL;
	uint64_t slices = 1, messages = 0;
	size_t tot_req = 0, tot_ev = 0, tot_dup = 0, tot_ooo = 0, tot_bad = 0;

	for (int i = 2; i < argc; i += 2) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int rc = 0;
		if (!strcmp(o, "--out"))
			prefix = v;
		else if (!strcmp(o, "--token"))
			p.token = v;
		else if (!strcmp(o, "--url"))
			p.public_url = v;
		else if (!strcmp(o, "--slices"))
			rc = arg_u64(o, v, &slices);
		else if (!strcmp(o, "--messages"))
			rc = arg_u64(o, v, &messages);
		else if (!strcmp(o, "--seed"))
			rc = arg_u64(o, v, &p.seed);
		else if (!strcmp(o, "--dup"))
			rc = arg_frac(o, v, &p.dup_rate);
		else if (!strcmp(o, "--ooo"))
			rc = arg_frac(o, v, &p.ooo_rate);
		else if (!strcmp(o, "--bad"))
			rc = arg_frac(o, v, &p.bad_rate);
		else
			return usage();
		if (rc || !v)
			return rc ? 2 : usage();
	}
	if (!prefix || !p.token || !p.public_url || !messages || !slices || slices > MAX_SLICES ||
	    messages < slices)
		return usage();

	for (uint64_t s = 0; s < slices; s++) {
		struct cbgen_chunk *c = NULL;
		char path[4096];
		size_t n = (size_t)(messages / slices + (s < messages % slices ? 1 : 0));
		if (util_fmt(path, sizeof(path), "%s.%u", prefix, (unsigned)s) >=
		    sizeof(path) - 1) {
			fprintf(stderr, "gen_callbacks: --out is too long\n");
			return 2;
		}
		if (cbgen_chunk_new(&p, s, n, &c) != 0) {
			fprintf(stderr, "gen_callbacks: bad generator parameters\n");
			return 2;
		}
		int rc = write_slice(path, c);
		tot_req += c->n;
		tot_ev += c->n_events;
		tot_dup += c->n_dups;
		tot_ooo += c->n_ooo;
		tot_bad += c->n_bad;
		cbgen_chunk_free(c);
		if (rc)
			return 1;
	}
	printf("messages=%llu requests=%zu events=%zu duplicates=%zu out_of_order=%zu bad=%zu "
	       "dup_pct=%.1f ooo_pct=%.1f events_per_message=%.2f\n",
	       (unsigned long long)messages, tot_req, tot_ev, tot_dup, tot_ooo, tot_bad,
	       100.0 * (double)tot_dup / (double)tot_req, 100.0 * (double)tot_ooo / (double)tot_ev,
	       (double)tot_ev / (double)messages);
	return 0;
}

/* ---- verify ---- */

struct verifier {
	sqlite3 *db;
	sqlite3_stmt *ins;
	size_t lines_read, sent_ok;
	int failures;
};

static int sql_exec(struct verifier *v, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(v->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "gen_callbacks: sqlite: %s\n", msg ? msg : sqlite3_errmsg(v->db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* The single integer a query returns, or -1 on error. */
static long long sql_count(struct verifier *v, const char *sql)
{
	sqlite3_stmt *st = NULL;
	long long n = -1;
	if (sqlite3_prepare_v2(v->db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "gen_callbacks: sqlite: %s\n", sqlite3_errmsg(v->db));
		return -1;
	}
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

static void check(struct verifier *v, const char *what, long long got, long long want_lo,
                  long long want_hi)
{
	bool ok = got >= want_lo && got <= want_hi && got >= 0;
	if (want_lo == want_hi)
		printf("  %-34s %12lld   want %lld%s\n", what, got, want_lo, ok ? "" : "   FAIL");
	else
		printf("  %-34s %12lld   want %lld..%lld%s\n", what, got, want_lo, want_hi,
		       ok ? "" : "   FAIL");
	if (!ok)
		v->failures++;
}

static void field_iov(const struct form *f, const char *name, const char **p, size_t *n)
{
	const struct form_field *x = form_get(f, name);
	*p = x ? x->value : "";
	*n = x ? x->value_len : 0;
}

/* Adds the events of the first `issued` requests of one slice file. */
static int load_slice(struct verifier *v, const char *path, uint64_t issued)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	uint64_t k = 0;
	int rc = -1;

	if (!f) {
		fprintf(stderr, "gen_callbacks: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	/* Past the end of the file the sender cycled: nothing new. */
	while (k < issued && (len = getline(&line, &cap, f)) > 0) {
		char abuf[8192], err[128];
		struct arena a;
		struct form form;
		const char *fields[4], *p = line, *end = line + len;
		const char *sid, *st, *ec;
		size_t sid_n, st_n, ec_n;

		k++;
		v->lines_read++;
		if (end > p && end[-1] == '\n')
			end--;
		for (int i = 0; i < 3; i++) {
			const char *tab = memchr(p, '\t', (size_t)(end - p));
			if (!tab) {
				fprintf(stderr, "gen_callbacks: %s: malformed line %llu\n", path,
				        (unsigned long long)k);
				goto out;
			}
			fields[i] = p;
			p = tab + 1;
		}
		fields[3] = p;
		if (strncmp(fields[0], "200\t", 4) != 0)
			continue; /* a bad request: nothing may be stored for it */
		v->sent_ok++;
		arena_init(&a, abuf, sizeof(abuf));
		if (form_decode(&a, fields[3], (size_t)(end - fields[3]), LIM_FORM_FIELDS, &form,
		                err, sizeof(err)) != 0) {
			fprintf(stderr, "gen_callbacks: %s: line %llu: %s\n", path,
			        (unsigned long long)k, err);
			arena_fini(&a);
			goto out;
		}
		field_iov(&form, "MessageSid", &sid, &sid_n);
		field_iov(&form, "MessageStatus", &st, &st_n);
		field_iov(&form, "ErrorCode", &ec, &ec_n);
		sqlite3_bind_text(v->ins, 1, sid, (int)sid_n, SQLITE_TRANSIENT);
		sqlite3_bind_text(v->ins, 2, st, (int)st_n, SQLITE_TRANSIENT);
		sqlite3_bind_text(v->ins, 3, ec, (int)ec_n, SQLITE_TRANSIENT);
		int src = sqlite3_step(v->ins);
		sqlite3_reset(v->ins);
		arena_fini(&a);
		if (src != SQLITE_DONE) {
			fprintf(stderr, "gen_callbacks: sqlite: %s\n", sqlite3_errmsg(v->db));
			goto out;
		}
	}
	rc = 0;
out:
	free(line);
	fclose(f);
	return rc;
}

/* The normalized status of a raw Twilio status, as its rank: precedence as
 * src/status.h documents it, restated here so the check is independent. */
#define RANK_SQL(col)                                                                              \
	"CASE " col " WHEN 'delivered' THEN 8 WHEN 'undelivered' THEN 7 WHEN 'failed' THEN 4"      \
	" WHEN 'sent' THEN 2 ELSE 1 END"

static int cmd_verify(int argc, char **argv)
{
	struct verifier v = {0};
	const char *dbpath = NULL;
	uint64_t acked = 0, max_log = UINT64_MAX, events = UINT64_MAX, events_min = UINT64_MAX;
	uint64_t messages = UINT64_MAX;
	const char *slices[MAX_SLICES];
	uint64_t issued[MAX_SLICES];
	size_t nslices = 0;
	int rc = 1;

	for (int i = 2; i < argc;) {
		char *o = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		int r = 0;
		if (!strcmp(o, "--db")) {
			dbpath = val;
		} else if (!strcmp(o, "--acked")) {
			r = arg_u64(o, val, &acked);
		} else if (!strcmp(o, "--max-log")) {
			r = arg_u64(o, val, &max_log);
		} else if (!strcmp(o, "--events")) {
			r = arg_u64(o, val, &events);
		} else if (!strcmp(o, "--events-min")) {
			r = arg_u64(o, val, &events_min);
		} else if (!strcmp(o, "--messages")) {
			r = arg_u64(o, val, &messages);
		} else {
			char *colon = strrchr(o, ':');
			if (!colon || nslices == MAX_SLICES)
				return usage();
			*colon = '\0';
			if (arg_u64("SLICE:ISSUED", colon + 1, &issued[nslices]) != 0)
				return 2;
			slices[nslices++] = o;
			i++;
			continue;
		}
		if (r || !val)
			return r ? 2 : usage();
		i += 2;
	}
	if (!dbpath || (nslices == 0 && events == UINT64_MAX))
		return usage();

	if (sqlite3_open_v2(dbpath, &v.db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		fprintf(stderr, "gen_callbacks: cannot open %s: %s\n", dbpath,
		        v.db ? sqlite3_errmsg(v.db) : "out of memory");
		goto out;
	}
	if (sql_exec(&v, "PRAGMA temp_store=MEMORY;"
	                 "CREATE TEMP TABLE exp (sid TEXT, st TEXT, ec TEXT,"
	                 " PRIMARY KEY (sid, st, ec)) WITHOUT ROWID;"
	                 "CREATE TEMP TABLE got (sid TEXT, st TEXT, ec TEXT,"
	                 " PRIMARY KEY (sid, st, ec)) WITHOUT ROWID;"
	                 "INSERT OR IGNORE INTO got SELECT provider_message_id, raw_status,"
	                 " coalesce(error_code, '') FROM main.sms_message_events"
	                 " WHERE provider = 'twilio';"
	                 "BEGIN") != 0)
		goto out;
	if (sqlite3_prepare_v2(v.db, "INSERT OR IGNORE INTO exp VALUES (?1, ?2, ?3)", -1, &v.ins,
	                       NULL) != SQLITE_OK) {
		fprintf(stderr, "gen_callbacks: sqlite: %s\n", sqlite3_errmsg(v.db));
		goto out;
	}
	for (size_t i = 0; i < nslices; i++)
		if (load_slice(&v, slices[i], issued[i]) != 0)
			goto out;
	if (sql_exec(&v, "COMMIT") != 0)
		goto out;

	long long rows = sql_count(&v, "SELECT count(*) FROM main.sms_message_events");
	long long log_rows = sql_count(&v, "SELECT count(*) FROM main.sms_callback_log");
	printf("verify %s\n", dbpath);
	if (nslices) {
		long long n_exp = sql_count(&v, "SELECT count(*) FROM exp");
		long long n_msg = sql_count(&v, "SELECT count(DISTINCT sid) FROM exp");
		printf("  %-34s %12zu\n", "good requests sent", v.sent_ok);
		check(&v, "stored events", rows, n_exp, n_exp);
		check(&v, "sent events not stored",
		      sql_count(&v, "SELECT count(*) FROM exp e WHERE NOT EXISTS (SELECT 1 FROM"
		                    " got g WHERE g.sid = e.sid AND g.st = e.st AND g.ec = e.ec)"),
		      0, 0);
		check(&v, "stored events never sent",
		      sql_count(&v, "SELECT count(*) FROM got g WHERE NOT EXISTS (SELECT 1 FROM"
		                    " exp e WHERE g.sid = e.sid AND g.st = e.st AND g.ec = e.ec)"),
		      0, 0);
		check(&v, "events stored twice", rows - sql_count(&v, "SELECT count(*) FROM got"),
		      0, 0);
		check(&v, "messages", sql_count(&v, "SELECT count(*) FROM main.sms_messages"),
		      n_msg, n_msg);
		check(&v, "messages with a wrong summary",
		      sql_count(
		          &v,
		          "WITH r AS (SELECT sid, st, ec, " RANK_SQL(
		              "st") " AS rank FROM exp),"
		                    " top AS (SELECT sid, max(rank) AS rank, count(*) AS n FROM r"
		                    "  GROUP BY sid)"
		                    " SELECT count(*) FROM top LEFT JOIN main.sms_messages m"
		                    "  ON m.provider = 'twilio' AND m.provider_message_id = top.sid"
		                    " WHERE m.id IS NULL OR m.event_count <> top.n"
		                    "  OR " RANK_SQL(
		                        "m.current_status") " <> top.rank"
		                                            "  OR m.current_status NOT IN "
		                                            "('accepted', 'sent', 'failed',"
		                                            "   'undelivered', 'delivered')"
		                                            "  OR m.is_final <> (top.rank >= 4)"
		                                            "  OR coalesce(m.current_error_code, "
		                                            "'') <> (SELECT r.ec FROM r"
		                                            "   WHERE r.sid = top.sid AND r.rank = "
		                                            "top.rank LIMIT 1)"),
		      0, 0);
		if (max_log == UINT64_MAX) {
			max_log = 0;
			for (size_t i = 0; i < nslices; i++)
				max_log += issued[i];
		}
	} else {
		if (events_min > events)
			events_min = events;
		check(&v, "stored events", rows, (long long)events_min, (long long)events);
		if (messages != UINT64_MAX)
			check(&v, "messages",
			      sql_count(&v, "SELECT count(*) FROM main.sms_messages"),
			      (long long)messages, (long long)messages);
	}
	check(&v, "review queue rows", sql_count(&v, "SELECT count(*) FROM main.review_queue"), 0,
	      0);
	check(&v, "first-delivery log rows",
	      sql_count(&v, "SELECT count(*) FROM main.sms_callback_log WHERE duplicate = 0"), rows,
	      rows);
	check(&v, "sum(sms_messages.event_count)",
	      sql_count(&v, "SELECT coalesce(sum(event_count), 0) FROM main.sms_messages"), rows,
	      rows);
	check(&v, "sum(sms_messages.callback_count)",
	      sql_count(&v, "SELECT coalesce(sum(callback_count), 0) FROM main.sms_messages"),
	      log_rows, log_rows);
	check(&v, "callback log rows (accepted reqs)", log_rows, (long long)acked,
	      max_log == UINT64_MAX ? (long long)INT64_MAX : (long long)max_log);
	printf("verify: %s\n", v.failures ? "FAIL" : "PASS");
	rc = v.failures ? 1 : 0;
out:
	sqlite3_finalize(v.ins);
	sqlite3_close(v.db);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (!strcmp(argv[1], "gen"))
		return cmd_gen(argc, argv);
	if (!strcmp(argv[1], "verify"))
		return cmd_verify(argc, argv);
	return usage();
}
