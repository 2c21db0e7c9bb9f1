/* SPDX-License-Identifier: MIT */
/*
 * Bearer token checks for the JSON API (see auth.h).  The table holds the
 * configured SHA-256 hashes; a check hashes the presented token once and
 * compares it with every entry, without stopping at a match, so the time
 * taken does not depend on which entry (if any) matched.
 */
#include "auth.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "crypto.h"
#include "util.h"

struct auth_entry {
	enum auth_role role;
	uint8_t hash[CRYPTO_SHA256_LEN];
};

struct auth {
	struct auth_entry *e;
	size_t n;
};

static const char *const role_names[] = {
    [AUTH_NONE] = "none",       [AUTH_APP] = "app",     [AUTH_VIEWER] = "viewer",
    [AUTH_SUPPORT] = "support", [AUTH_ADMIN] = "admin",
};

const char *auth_role_name(enum auth_role r)
{
	return (unsigned)r < ARRAY_LEN(role_names) ? role_names[r] : "none";
}

int auth_role_parse(const char *s, size_t n, enum auth_role *out)
{
	for (size_t i = AUTH_APP; i < ARRAY_LEN(role_names); i++) {
		if (strlen(role_names[i]) == n && memcmp(role_names[i], s, n) == 0) {
			*out = (enum auth_role)i;
			return 0;
		}
	}
	return DLRD_EINVAL;
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int parse_entry(const char *item, struct auth_entry *e)
{
	static const char alg[] = ":sha256:";
	const char *colon = strchr(item, ':');
	const char *hex;

	if (!colon || auth_role_parse(item, (size_t)(colon - item), &e->role) != 0)
		return DLRD_EINVAL;
	if (strncmp(colon, alg, sizeof(alg) - 1) != 0)
		return DLRD_EINVAL;
	hex = colon + sizeof(alg) - 1;
	if (strlen(hex) != 2 * CRYPTO_SHA256_LEN)
		return DLRD_EINVAL;
	for (size_t i = 0; i < CRYPTO_SHA256_LEN; i++) {
		int hi = unhex(hex[2 * i]), lo = unhex(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return DLRD_EINVAL;
		e->hash[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int auth_new(const char *tokens, struct auth **out, char *err, size_t errlen)
{
	struct auth *a = xcalloc(1, sizeof(*a));
	size_t n = 0;
	char **list = config_list(tokens, &n);
	int rc = 0;

	if (n > AUTH_TOKENS_MAX) {
		util_fmt(err, errlen, "config: api.tokens: at most %u tokens", AUTH_TOKENS_MAX);
		rc = DLRD_ECONFIG;
		goto out;
	}
	a->e = xcalloc(n ? n : 1, sizeof(*a->e));
	for (size_t i = 0; i < n; i++) {
		if (parse_entry(list[i], &a->e[i]) != 0) {
			util_fmt(err, errlen,
			         "config: api.tokens: entry %zu must be ROLE:sha256:HEX with ROLE"
			         " app, viewer, support or admin and 64 hex digits (see dlrd token"
			         " new)",
			         i + 1);
			rc = DLRD_ECONFIG;
			goto out;
		}
		for (size_t j = 0; j < i; j++) {
			if (memcmp(a->e[j].hash, a->e[i].hash, CRYPTO_SHA256_LEN) == 0) {
				util_fmt(err, errlen,
				         "config: api.tokens: entry %zu repeats entry %zu", i + 1,
				         j + 1);
				rc = DLRD_ECONFIG;
				goto out;
			}
		}
	}
	a->n = n;
out:
	config_list_free(list);
	if (rc != 0) {
		auth_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	free(a->e);
	free(a);
}

size_t auth_count(const struct auth *a)
{
	return a ? a->n : 0;
}

int auth_check(const struct auth *a, const char *header, struct auth_principal *who)
{
	uint8_t h[CRYPTO_SHA256_LEN];
	enum auth_role role = AUTH_NONE;
	const char *tok;
	size_t n;

	memset(who, 0, sizeof(*who));
	if (!a || !header || strncasecmp(header, "Bearer ", 7) != 0)
		return DLRD_EAUTH;
	tok = header + 7;
	while (*tok == ' ')
		tok++;
	n = strlen(tok);
	while (n && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
		n--;
	if (n == 0 || n > AUTH_TOKEN_MAX)
		return DLRD_EAUTH;
	crypto_sha256(tok, n, h);
	for (size_t i = 0; i < a->n; i++) {
		/* no early exit: every entry is compared */
		bool eq = crypto_ct_eq(h, sizeof(h), a->e[i].hash, sizeof(h));
		role = eq ? a->e[i].role : role;
	}
	if (role == AUTH_NONE)
		return DLRD_EAUTH;
	who->role = role;
	crypto_hex(h, sizeof(h), who->hash);
	return 0;
}

bool auth_allows(enum auth_role have, enum auth_role need)
{
	switch (need) {
	case AUTH_APP:
		return have == AUTH_APP || have == AUTH_ADMIN;
	case AUTH_VIEWER:
		return have == AUTH_VIEWER || have == AUTH_SUPPORT || have == AUTH_ADMIN;
	case AUTH_SUPPORT:
		return have == AUTH_SUPPORT || have == AUTH_ADMIN;
	case AUTH_ADMIN:
		return have == AUTH_ADMIN;
	case AUTH_NONE:
		return true;
	}
	return false;
}

void auth_token_new(char *out)
{
	uint8_t raw[32];
	char b64[4 * ((sizeof(raw) + 2) / 3) + 1];
	size_t n, o;

	crypto_random(raw, sizeof(raw));
	n = crypto_b64_encode(raw, sizeof(raw), b64);
	explicit_bzero(raw, sizeof(raw));
	o = util_strlcpy(out, AUTH_TOKEN_PREFIX, AUTH_NEW_TOKEN_LEN + 1);
	for (size_t i = 0; i < n && b64[i] != '='; i++)
		out[o++] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	out[o] = '\0';
	explicit_bzero(b64, sizeof(b64));
}

void auth_token_entry(enum auth_role role, const char *token, char *out, size_t cap)
{
	uint8_t h[CRYPTO_SHA256_LEN];
	char hex[2 * CRYPTO_SHA256_LEN + 1];

	crypto_sha256(token, strlen(token), h);
	crypto_hex(h, sizeof(h), hex);
	util_fmt(out, cap, "%s:sha256:%s", auth_role_name(role), hex);
}
