/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the tests that run against PostgreSQL (unit and integration):
 * a fresh database per test on the server named by $DLRD_TEST_PG_URL (a
 * superuser URL; scripts/pg-test.sh starts a throwaway cluster and exports
 * it), queries that return one value, and the server's control script
 * ($DLRD_TEST_PG_CTL) for the outage test.  Header-only so that both test
 * folders can use it without a library of their own; single-threaded use
 * per connection.
 */
#ifndef DLRD_TEST_PGTEST_H
#define DLRD_TEST_PGTEST_H

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PGT_UNUSED __attribute__((unused))
#define PGT_ERR    INT64_MIN

/* The server URL, or NULL when PostgreSQL tests are not configured. */
PGT_UNUSED static const char *pgt_server(void)
{
	const char *u = getenv("DLRD_TEST_PG_URL");
	return u && *u ? u : NULL;
}

/* The exit status of a PostgreSQL test binary run without a server: a skip
 * that CTest shows (77), but a failure under CI, which always provides one. */
PGT_UNUSED static int pgt_not_configured(const char *name)
{
	const char *ci = getenv("CI");
	printf("%s: DLRD_TEST_PG_URL is not set; run under\n"
	       "  scripts/pg-test.sh run ctest ...   (a throwaway PostgreSQL cluster)\n",
	       name);
	return ci && *ci ? 1 : 77;
}

static void pgt_quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* Connects (blocking); NULL on failure, with the reason on stderr. */
PGT_UNUSED static PGconn *pgt_connect(const char *url)
{
	PGconn *c = PQconnectdb(url);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "pgtest: cannot connect: %s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, pgt_quiet, NULL);
	return c;
}

/* Runs a statement that returns no rows; 0 or -1 (message on stderr). */
PGT_UNUSED static int pgt_exec(PGconn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
PGT_UNUSED static int pgt_exec(PGconn *c, const char *fmt, ...)
{
	char sql[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok)
		fprintf(stderr, "pgtest: %s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	return ok ? 0 : -1;
}

/* The first column of the first row as text into out; returns out, or
 * "(null)" / "(no row)" / "(error)". */
PGT_UNUSED static const char *pgt_str(PGconn *c, char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
PGT_UNUSED static const char *pgt_str(PGconn *c, char *out, size_t cap, const char *fmt, ...)
{
	char sql[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	PGresult *r = PQexec(c, sql);
	const char *v;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "pgtest: %s: %s", sql, PQerrorMessage(c));
		v = "(error)";
	} else if (PQntuples(r) < 1) {
		v = "(no row)";
	} else if (PQgetisnull(r, 0, 0)) {
		v = "(null)";
	} else {
		v = PQgetvalue(r, 0, 0);
	}
	snprintf(out, cap, "%s", v);
	PQclear(r);
	return out;
}

/* The first column of the first row as an integer; PGT_ERR when the query
 * fails, has no row, or the value is NULL or not an integer. */
PGT_UNUSED static int64_t pgt_int(PGconn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
PGT_UNUSED static int64_t pgt_int(PGconn *c, const char *fmt, ...)
{
	char sql[8192], *end;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	PGresult *r = PQexec(c, sql);
	int64_t v = PGT_ERR;
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fprintf(stderr, "pgtest: %s: %s", sql, PQerrorMessage(c));
	else if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
		long long x = strtoll(PQgetvalue(r, 0, 0), &end, 10);
		if (*end == '\0')
			v = x;
	}
	PQclear(r);
	return v;
}

/* A fresh, empty database on the test server: its name into name and a
 * libpq "host=... dbname=..." URL for it into url.  Returns 0 or -1. */
PGT_UNUSED static int pgt_create_db(char *name, size_t name_cap, char *url, size_t url_cap)
{
	static unsigned seq;
	const char *server = pgt_server();
	PQconninfoOption *opts;
	const char *host = NULL, *port = NULL, *user = NULL, *pass = NULL;
	PGconn *c;
	struct timespec ts;
	size_t n;

	if (!server || !(c = pgt_connect(server)))
		return -1;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(name, name_cap, "dlrd_t_%ld_%u_%ld", (long)getpid(), seq++,
	         (long)(ts.tv_nsec / 1000));
	/* A linguistic default collation (ICU en-US sorts "a" before "B"), as
	 * production databases often have, so that any comparison that must be
	 * bytewise shows whether it really is.  Plain when the server has no
	 * ICU. */
	PGresult *r = PQexec(c, "SELECT 1 FROM pg_collation WHERE collprovider = 'i' LIMIT 1");
	int icu = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
	PQclear(r);
	if ((icu ? pgt_exec(c,
	                    "CREATE DATABASE %s TEMPLATE template0 ENCODING 'UTF8'"
	                    " LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'",
	                    name)
	         : pgt_exec(c, "CREATE DATABASE %s", name)) != 0) {
		PQfinish(c);
		return -1;
	}
	PQfinish(c);
	opts = PQconninfoParse(server, NULL);
	for (PQconninfoOption *o = opts; o && o->keyword; o++) {
		if (!o->val || !*o->val)
			continue;
		if (!strcmp(o->keyword, "host"))
			host = o->val;
		else if (!strcmp(o->keyword, "port"))
			port = o->val;
		else if (!strcmp(o->keyword, "user"))
			user = o->val;
		else if (!strcmp(o->keyword, "password"))
			pass = o->val;
	}
	n = (size_t)snprintf(url, url_cap, "%s%s dbname=%s", host ? "host=" : "", host ? host : "",
	                     name);
	if (port && n < url_cap)
		n += (size_t)snprintf(url + n, url_cap - n, " port=%s", port);
	if (user && n < url_cap)
		n += (size_t)snprintf(url + n, url_cap - n, " user=%s", user);
	if (pass && n < url_cap)
		n += (size_t)snprintf(url + n, url_cap - n, " password=%s", pass);
	PQconninfoFree(opts);
	/* "dbname=..." must come first when there is no host */
	if (!host)
		memmove(url, url + 1, strlen(url));
	return n < url_cap ? 0 : -1;
}

/* Drops a database made by pgt_create_db (closing its sessions first). */
PGT_UNUSED static void pgt_drop_db(const char *name)
{
	const char *server = pgt_server();
	PGconn *c;

	if (!server || !name[0] || getenv("DLRD_TEST_KEEP") || !(c = pgt_connect(server)))
		return;
	pgt_exec(c, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
	PQfinish(c);
}

/* Runs "$DLRD_TEST_PG_CTL arg..." (stop fast|immediate, start): 0 or -1. */
PGT_UNUSED static int pgt_ctl(const char *args)
{
	const char *ctl = getenv("DLRD_TEST_PG_CTL");
	char cmd[1024];

	if (!ctl || !*ctl)
		return -1;
	snprintf(cmd, sizeof(cmd), "'%s' %s >/dev/null 2>&1", ctl, args);
	return system(cmd) == 0 ? 0 : -1;
}

#endif
