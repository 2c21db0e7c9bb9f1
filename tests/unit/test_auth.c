/* SPDX-License-Identifier: MIT */
/*
 * Bearer tokens and roles: the config holds hashes only (entries checked,
 * errors by position), a presented token matches its own hash and no
 * other, header parsing (scheme case, missing, empty, too long), the role
 * lattice (admin everything, support over viewer, app only its own), and
 * `dlrd token new`'s format and config entry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"
#include "crypto.h"
#include "util.h"

static void entry_for(const char *role, const char *token, char *out, size_t cap)
{
	uint8_t h[32];
	char hex[65];
	crypto_sha256(token, strlen(token), h);
	crypto_hex(h, sizeof(h), hex);
	util_fmt(out, cap, "%s:sha256:%s", role, hex);
}

static void test_check(void **state)
{
	char cfg[1024], e1[100], e2[100], e3[100];
	struct auth *a = NULL;
	struct auth_principal who;
	char err[256];
	(void)state;

	entry_for("app", "tok-app", e1, sizeof(e1));
	entry_for("viewer", "tok-viewer", e2, sizeof(e2));
	entry_for("admin", "tok-admin", e3, sizeof(e3));
	util_fmt(cfg, sizeof(cfg), "%s, %s,%s", e1, e2, e3);
	assert_int_equal(auth_new(cfg, &a, err, sizeof(err)), 0);
	assert_int_equal(auth_count(a), 3);

	assert_int_equal(auth_check(a, "Bearer tok-app", &who), 0);
	assert_int_equal(who.role, AUTH_APP);
	assert_int_equal(strlen(who.hash), 64);
	assert_int_equal(strncmp(who.hash, e1 + strlen("app:sha256:"), 64), 0);
	assert_int_equal(auth_check(a, "bearer tok-viewer", &who), 0);
	assert_int_equal(who.role, AUTH_VIEWER);
	assert_int_equal(auth_check(a, "BEARER  tok-admin ", &who), 0);
	assert_int_equal(who.role, AUTH_ADMIN);

	static const char *const bad[] = {
	    NULL,
	    "",
	    "Bearer",
	    "Bearer ",
	    "Bearer tok-ap",
	    "Bearer tok-app2",
	    "Basic tok-app",
	    "tok-app",
	    "Bearer TOK-APP",
	    "Token tok-admin",
	    /* seven characters before the token, but not the Bearer scheme */
	    "Digest tok-app",
	    "Bearer:tok-app",
	    "Bearer\ttok-app",
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		assert_int_equal(auth_check(a, bad[i], &who), DLRD_EAUTH);
		assert_int_equal(who.role, AUTH_NONE);
	}
	char longtok[400];
	memset(longtok, 'x', sizeof(longtok));
	memcpy(longtok, "Bearer ", 7);
	longtok[sizeof(longtok) - 1] = '\0';
	assert_int_equal(auth_check(a, longtok, &who), DLRD_EAUTH);
	auth_free(a);

	/* no tokens: everything is refused */
	assert_int_equal(auth_new(NULL, &a, err, sizeof(err)), 0);
	assert_int_equal(auth_count(a), 0);
	assert_int_equal(auth_check(a, "Bearer tok-app", &who), DLRD_EAUTH);
	auth_free(a);
}

static void test_config_errors(void **state)
{
	char e1[100], cfg[300], err[256];
	struct auth *a = NULL;
	static const char *const bad[] = {
	    "root:sha256:0000000000000000000000000000000000000000000000000000000000000000",
	    "admin:sha1:0000000000000000000000000000000000000000",
	    "admin:sha256:00",
	    "admin:sha256:zz00000000000000000000000000000000000000000000000000000000000000",
	    "admin:tok-admin",
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		assert_int_equal(auth_new(bad[i], &a, err, sizeof(err)), DLRD_ECONFIG);
		assert_non_null(strstr(err, "api.tokens: entry 1"));
		assert_null(strstr(err, "sha256:0")); /* the value is not repeated */
	}
	entry_for("admin", "t", e1, sizeof(e1));
	util_fmt(cfg, sizeof(cfg), "%s,%s", e1, e1);
	assert_int_equal(auth_new(cfg, &a, err, sizeof(err)), DLRD_ECONFIG);
	assert_non_null(strstr(err, "entry 2 repeats entry 1"));
}

static void test_roles(void **state)
{
	(void)state;
	/* rows: have; columns: need app, viewer, support, admin */
	static const struct {
		enum auth_role have;
		bool app, viewer, support, admin;
	} m[] = {
	    {AUTH_APP, true, false, false, false},    {AUTH_VIEWER, false, true, false, false},
	    {AUTH_SUPPORT, false, true, true, false}, {AUTH_ADMIN, true, true, true, true},
	    {AUTH_NONE, false, false, false, false},
	};
	for (size_t i = 0; i < ARRAY_LEN(m); i++) {
		assert_int_equal(auth_allows(m[i].have, AUTH_APP), m[i].app);
		assert_int_equal(auth_allows(m[i].have, AUTH_VIEWER), m[i].viewer);
		assert_int_equal(auth_allows(m[i].have, AUTH_SUPPORT), m[i].support);
		assert_int_equal(auth_allows(m[i].have, AUTH_ADMIN), m[i].admin);
	}
	enum auth_role r;
	assert_int_equal(auth_role_parse("support", 7, &r), 0);
	assert_int_equal(r, AUTH_SUPPORT);
	assert_int_equal(auth_role_parse("none", 4, &r), DLRD_EINVAL);
	assert_int_equal(auth_role_parse("admins", 6, &r), DLRD_EINVAL);
	assert_string_equal(auth_role_name(AUTH_VIEWER), "viewer");
}

static void test_token_new(void **state)
{
	char t1[AUTH_NEW_TOKEN_LEN + 1], t2[AUTH_NEW_TOKEN_LEN + 1], entry[128], err[256];
	struct auth *a = NULL;
	struct auth_principal who;
	char hdr[128];
	(void)state;

	auth_token_new(t1);
	auth_token_new(t2);
	assert_int_equal(strlen(t1), AUTH_NEW_TOKEN_LEN);
	assert_int_equal(strncmp(t1, "dlrd_", 5), 0);
	for (const char *p = t1 + 5; *p; p++)
		assert_non_null(
		    strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p));
	assert_string_not_equal(t1, t2);
	auth_token_entry(AUTH_SUPPORT, t1, entry, sizeof(entry));
	assert_int_equal(strncmp(entry, "support:sha256:", 15), 0);
	assert_null(strstr(entry, t1 + 5));
	assert_int_equal(auth_new(entry, &a, err, sizeof(err)), 0);
	util_fmt(hdr, sizeof(hdr), "Bearer %s", t1);
	assert_int_equal(auth_check(a, hdr, &who), 0);
	assert_int_equal(who.role, AUTH_SUPPORT);
	util_fmt(hdr, sizeof(hdr), "Bearer %s", t2);
	assert_int_equal(auth_check(a, hdr, &who), DLRD_EAUTH);
	auth_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_check),
	    cmocka_unit_test(test_config_errors),
	    cmocka_unit_test(test_roles),
	    cmocka_unit_test(test_token_new),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
