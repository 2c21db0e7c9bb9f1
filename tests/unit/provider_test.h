/* SPDX-License-Identifier: MIT */
/*
 * Scaffolding shared by the provider unit tests (test_provider_*.c): the
 * environment and config a provider's init() reads, a fake header table,
 * and a fake provider_request run through authenticate() and parse() the
 * way the HTTP front runs them.  The tests keep their own fixtures and
 * assertions; only the plumbing lives here.
 *
 * Static inline functions, so each test binary (tests/CMakeLists.txt builds
 * every test_*.c alone) takes what it uses.  Single-threaded, like cmocka.
 */
#ifndef DLRD_TESTS_PROVIDER_TEST_H
#define DLRD_TESTS_PROVIDER_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "arena.h"
#include "config.h"
#include "phone.h"
#include "privacy.h"
#include "provider.h"
#include "util.h"

extern char **environ;

#define PT_PUBLIC_URL  "https://sms.example.com"
#define PT_HASH_KEY    "unit-test-hash-key"
#define PT_HEADERS_MAX 8

/* ---- the recipient hash ---- */

/* Sets the recipient-hash key every provider test uses. */
static inline void pt_set_hash_key(void)
{
	privacy_set_hash_key((const uint8_t *)PT_HASH_KEY, sizeof(PT_HASH_KEY) - 1);
}

/* The recipient hash dlrd should store for an E.164 number, under that key
 * (a static buffer, overwritten by the next call). */
static inline const char *pt_hash_of(const char *e164)
{
	static char out[65];
	phone_hash((const uint8_t *)PT_HASH_KEY, sizeof(PT_HASH_KEY) - 1, e164, out);
	return out;
}

/* ---- environment and config ---- */

/* Sets the environment variable name to value; unsets it when value is
 * NULL. */
static inline void pt_setenv(const char *name, const char *value)
{
	if (value)
		setenv(name, value, 1);
	else
		unsetenv(name);
}

/* Unsets every DLRD_ variable, so a test sees only the settings it makes. */
static inline void pt_clearenv(void)
{
	for (;;) {
		char name[256];
		size_t i;
		for (i = 0; environ[i]; i++)
			if (strncmp(environ[i], "DLRD_", 5) == 0)
				break;
		if (!environ[i])
			return;
		const char *eq = strchr(environ[i], '=');
		size_t n = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		util_fmt(name, sizeof(name), "%.*s", (int)n, environ[i]);
		unsetenv(name);
	}
}

/* Loads the config from the environment and runs p->init() over it, as
 * main does.  Returns 0, or the failing call's code with err set; cfg needs
 * config_fini() once config_load() passed. */
static inline int pt_init(const struct provider *p, struct config *cfg, void **state, char *err,
                          size_t errlen)
{
	int rc = config_load(NULL, cfg, err, errlen);
	return rc != 0 ? rc : p->init(cfg, state, err, errlen);
}

/* pt_init() over exactly the settings in env, a NULL-terminated list of
 * "DLRD_..._KEY=VALUE" (NULL: none): every other DLRD_ variable is unset
 * first, and the config is dropped once init() has read it. */
static inline int pt_load(const struct provider *p, const char *const *env, void **state, char *err,
                          size_t errlen)
{
	struct config cfg;
	int rc;

	pt_clearenv();
	for (size_t i = 0; env && env[i]; i++) {
		char k[128];
		const char *eq = strchr(env[i], '=');
		util_fmt(k, sizeof(k), "%.*s", (int)(eq - env[i]), env[i]);
		setenv(k, eq + 1, 1);
	}
	if ((rc = config_load(NULL, &cfg, err, errlen)) != 0)
		return rc;
	rc = p->init(&cfg, state, err, errlen);
	config_fini(&cfg);
	return rc;
}

/* A fixture's setup: pt_init() with the environment as it is, the hash key,
 * and an arena over block.  Returns 0, or -1 when the config or init()
 * fails, or when need_state and init() left the provider unconfigured. */
static inline int pt_start(const struct provider *p, struct config *cfg, void **state,
                           bool need_state, struct arena *a, void *block, size_t size)
{
	char err[256];

	if (pt_init(p, cfg, state, err, sizeof(err)) != 0 || (need_state && !*state))
		return -1;
	pt_set_hash_key();
	arena_init(a, block, size);
	return 0;
}

/* A fixture's teardown, for one made by pt_start(). */
static inline void pt_stop(const struct provider *p, struct config *cfg, void *state,
                           struct arena *a)
{
	p->fini(state);
	config_fini(cfg);
	arena_fini(a);
}

/* ---- fake requests ---- */

struct pt_hdr {
	const char *name;
	const char *value;
};

/* The request headers a fake request carries. */
struct pt_headers {
	struct pt_hdr h[PT_HEADERS_MAX];
	size_t n;
};

static inline void pt_headers_reset(struct pt_headers *t)
{
	t->n = 0;
}

/* Adds "name: value"; nothing when value is NULL (the header is absent). */
static inline void pt_header_add(struct pt_headers *t, const char *name, const char *value)
{
	if (!value)
		return;
	assert_true(t->n < PT_HEADERS_MAX);
	t->h[t->n++] = (struct pt_hdr){name, value};
}

/* provider_request.header over a struct pt_headers (hctx; NULL: no
 * headers): case-insensitive names, the first match wins. */
static inline const char *pt_header(void *hctx, const char *name)
{
	const struct pt_headers *t = hctx;
	for (size_t i = 0; t && i < t->n; i++)
		if (strcasecmp(t->h[i].name, name) == 0)
			return t->h[i].value;
	return NULL;
}

/* What a fake request is made of; members left 0 take the defaults. */
struct pt_call {
	const char *method;     /* "POST" */
	enum webhook_kind kind; /* HOOK_STATUS */
	const char *target;     /* path, then "?query" if any */
	const char *query;      /* when set: the query, target the path alone */
	const char *ctype;      /* "" */
	const char *body;       /* "" */
	const char *public_url; /* PT_PUBLIC_URL */
	int64_t now_ms;
	struct pt_headers *headers; /* NULL: none */
};

/* Fills r from c, over arena a, which is reset first (it must have been
 * started with arena_init()).  The strings stay the caller's. */
static inline void pt_request(struct provider_request *r, struct arena *a, const struct pt_call *c)
{
	const char *qm = c->query ? NULL : strchr(c->target, '?');
	const char *body = c->body ? c->body : "";

	arena_reset(a);
	memset(r, 0, sizeof(*r));
	r->method = c->method ? c->method : "POST";
	r->kind = c->kind;
	r->target = (struct iov){c->target, strlen(c->target)};
	r->path = (struct iov){c->target, qm ? (size_t)(qm - c->target) : strlen(c->target)};
	if (c->query)
		r->query = (struct iov){c->query, strlen(c->query)};
	else
		r->query = qm ? (struct iov){qm + 1, strlen(qm + 1)} : (struct iov){"", 0};
	r->body = (struct iov){body, strlen(body)};
	r->content_type = c->ctype ? c->ctype : "";
	r->public_url = c->public_url ? c->public_url : PT_PUBLIC_URL;
	r->now_ms = c->now_ms;
	r->arena = a;
	r->header = pt_header;
	r->hctx = c->headers;
}

/* Runs r through p as the HTTP front does: res emptied with http_status
 * 200 and err emptied, authenticate(), then parse() when it passed.
 * Returns authenticate()'s code.  *parse_rc gets parse()'s, or -100 when it
 * did not run; with parse_rc NULL, parse() must return 0 (asserted). */
static inline int pt_run(const struct provider *p, const void *state, struct provider_request *r,
                         struct provider_result *res, char *err, size_t errlen, int *parse_rc)
{
	int rc, prc = -100;

	memset(res, 0, sizeof(*res));
	res->http_status = 200;
	err[0] = '\0';
	rc = p->authenticate(state, r, err, errlen);
	if (rc == 0)
		prc = p->parse(state, r, res, err, errlen);
	if (parse_rc)
		*parse_rc = prc;
	else if (rc == 0)
		assert_int_equal(prc, 0);
	return rc;
}

#endif
