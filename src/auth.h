/* SPDX-License-Identifier: MIT */
/*
 * Bearer tokens and roles for the JSON API.  The configuration holds only
 * token hashes, `[api] tokens = ROLE:sha256:HEX, ...`; a presented token is
 * hashed (SHA-256) and compared in constant time against every configured
 * hash, so neither the tokens nor which one matched leak through timing.
 *
 * Roles: app (records sends, sets provider ids), viewer (reads, masked),
 * support (viewer, plus raw payloads and audited reveal) and admin
 * (everything, plus the review queue and the audit log).  A table of tokens
 * is read-only after auth_new(); any thread may check against it.
 */
#ifndef DLRD_AUTH_H
#define DLRD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_TOKENS_MAX    64  /* entries in [api] tokens */
#define AUTH_TOKEN_MAX     256 /* longest token accepted in a header */
#define AUTH_ID_LEN        12  /* hex digits of the hash that name a token */
#define AUTH_TOKEN_PREFIX  "dlrd_"
#define AUTH_NEW_TOKEN_LEN (sizeof(AUTH_TOKEN_PREFIX) - 1 + 43) /* + base64url of 32 bytes */

enum auth_role { AUTH_NONE = 0, AUTH_APP, AUTH_VIEWER, AUTH_SUPPORT, AUTH_ADMIN };

/* Who made a request: the role and the token's identity (hex SHA-256 of the
 * token; its first AUTH_ID_LEN digits name it in audit rows and logs). */
struct auth_principal {
	enum auth_role role;
	char hash[65];
};

struct auth;

/* Parses the [api] tokens value (may be NULL: no token, every request gets
 * 401).  Returns 0 or DLRD_ECONFIG with a message naming the entry by
 * position.  Main thread, at start-up. */
int auth_new(const char *tokens, struct auth **out, char *err, size_t errlen);
void auth_free(struct auth *a);
/* Number of configured tokens. */
size_t auth_count(const struct auth *a);

/* Checks an Authorization header value ("Bearer <token>", scheme
 * case-insensitive).  Returns 0 with *who filled, or DLRD_EAUTH (header
 * missing, malformed, or no configured hash matches).  Any thread. */
int auth_check(const struct auth *a, const char *header, struct auth_principal *who);

/* Whether role have may do what needs role need: admin may do everything,
 * support everything viewer may, app only app's operations. */
bool auth_allows(enum auth_role have, enum auth_role need);

/* "app", "viewer", "support", "admin" ("none" for AUTH_NONE). */
const char *auth_role_name(enum auth_role r);
/* Parses a role name; returns 0 or DLRD_EINVAL. */
int auth_role_parse(const char *s, size_t n, enum auth_role *out);

/* A fresh random token, "dlrd_" + base64url (no padding) of 32 random
 * bytes; out needs AUTH_NEW_TOKEN_LEN + 1 bytes. */
void auth_token_new(char *out);
/* The config entry for a token: "ROLE:sha256:HEX"; out needs 96 bytes. */
void auth_token_entry(enum auth_role role, const char *token, char *out, size_t cap);

#endif
