/* SPDX-License-Identifier: MIT */
/*
 * Configuration: an optional INI file (inih) overlaid by environment
 * variables DLRD_<SECTION>_<KEY> (section and key upper-cased, '-' as '_'),
 * which win.  Every key is declared in a table (the core keys in config.c,
 * each provider's keys in its provider table entry); an unknown section or
 * key, or a value that does not parse, stops start-up with a message naming
 * the key.  After config_load() the struct is read-only and shared by every
 * thread.
 */
#ifndef DLRD_CONFIG_H
#define DLRD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "log.h"

enum sync_mode { SYNC_FULL = 0, SYNC_NORMAL };

/* One resolved key: where it came from matters for error messages. */
struct config_entry {
	char *section;
	char *key;
	char *value;
	bool from_env;
	unsigned line; /* its line in the file; 0 when from the environment or a default */
};

struct config {
	/* [server] */
	char *listen;         /* "127.0.0.1:8080" as given */
	char listen_host[64]; /* parsed host (IPv4 or IPv6 literal) */
	uint16_t listen_port;
	char *public_url; /* no trailing slash; "" when unset */
	size_t max_body_bytes;
	unsigned max_connections;
	unsigned request_timeout_ms;
	unsigned idle_timeout_s;
	unsigned threads; /* HTTP worker threads; 0 = number of CPUs */
	char *data_dir;   /* key files; default: the SQLite file's folder or "var" */
	enum log_level log_level;
	/* [storage] */
	char *storage_url; /* "sqlite:var/dlrd.db" or "postgresql://..." */
	enum sync_mode synchronous;
	unsigned queue_capacity;
	unsigned max_batch;
	unsigned max_batch_events; /* a batch's first request always goes in */
	/* [privacy] */
	char *hash_key; /* as configured (NULL: use/create the key file) */

	/* Every key as resolved, core and provider sections alike. */
	struct config_entry *entries;
	size_t n_entries;
};

/* A key a provider accepts in its section, for validation and env lookup. */
struct config_key {
	const char *key;
	const char *help;
};

/* Loads path (may be NULL for defaults + environment) into *out.
 * Returns 0, or DLRD_ECONFIG with a message naming the key in err. */
int config_load(const char *path, struct config *out, char *err, size_t errlen);
void config_fini(struct config *cfg);

/* The resolved value of section.key, or NULL when unset. */
const char *config_get(const struct config *cfg, const char *section, const char *key);

/* For a message in err about a value config_load() accepted but a module
 * refused later ("config: SECTION.KEY: ...", the form every such message
 * takes), appends where that value came from, as config_load()'s own
 * messages say it: " (line N)" or " (from DLRD_...)".  Any other message,
 * and one about a default, is left as it is.  Any thread. */
void config_err_where(const struct config *cfg, char *err, size_t errlen);

/* Splits a comma-separated list (items trimmed, empty items dropped) into a
 * NULL-terminated heap array of heap strings; *n gets the count.  Free with
 * config_list_free. */
char **config_list(const char *value, size_t *n);
void config_list_free(char **list);

/* Parses "123" into [min, max]; on failure writes "section.key: ..." to err. */
int config_parse_uint(const char *section, const char *key, const char *value, unsigned long min,
                      unsigned long max, unsigned long *out, char *err, size_t errlen);

#endif
