/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the configuration loader (config.c over inih), which parses
 * an operator's INI file and DLRD_* environment variables.
 *
 * Input: one byte choosing an environment variable (or none), then the INI
 * file's bytes, then (after 0x1e) that variable's value.  The file reaches
 * config_load() through a memfd (/proc/self/fd/N), so no disk is touched.
 * Properties:
 * - the result is 0 or DLRD_ECONFIG, and an error always has a message;
 * - a loaded config has every number inside its documented range, a parsed
 *   listen address, and config_get() finds every entry it lists;
 * - no error message ever contains a value: a marker placed only in value
 *   positions (after the first '=' or ':' of a key line, or in the
 *   environment value) never appears in the message, since several keys
 *   hold secrets.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "dlrd_limits.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The marker the dictionary offers; see fc_marker_only_in_values(). */
#define FC_MARKER "Zq7Secret"

static const char *const fc_env[] = {
    "DLRD_SERVER_LISTEN",          "DLRD_SERVER_PUBLIC_URL", "DLRD_SERVER_MAX_BODY_BYTES",
    "DLRD_SERVER_MAX_CONNECTIONS", "DLRD_STORAGE_URL",       "DLRD_STORAGE_SYNCHRONOUS",
    "DLRD_PRIVACY_HASH_KEY",       "DLRD_SERVER_LOG_LEVEL",  "DLRD_TWILIO_AUTH_TOKENS",
};

static int fc_ready;

/* Nothing from the caller's environment may decide the outcome. */
static void fc_init(void)
{
	extern char **environ;
	char name[128];

	for (size_t i = 0; environ && environ[i];) {
		const char *eq = strchr(environ[i], '=');
		if (strncmp(environ[i], "DLRD_", 5) == 0 && eq &&
		    (size_t)(eq - environ[i]) < sizeof(name)) {
			util_strlcpy(name, environ[i], (size_t)(eq - environ[i]) + 1);
			unsetenv(name);
			continue; /* environ shifted */
		}
		i++;
	}
	fc_ready = 1;
}

/* true when every occurrence of the marker in the file is in a value
 * position: on a line that is not a section header, after the first '=' or
 * ':' (inih's delimiters, so a key never holds one). */
static int fc_marker_only_in_values(const char *p, size_t n)
{
	const size_t ml = sizeof(FC_MARKER) - 1;
	size_t ls = 0;

	while (ls < n) {
		const char *nl = memchr(p + ls, '\n', n - ls);
		size_t le = nl ? (size_t)(nl - p) : n, s = ls, delim;
		while (s < le && (p[s] == ' ' || p[s] == '\t'))
			s++;
		delim = s;
		while (delim < le && p[delim] != '=' && p[delim] != ':')
			delim++;
		for (size_t i = ls; i + ml <= le; i++) {
			if (memcmp(p + i, FC_MARKER, ml) != 0)
				continue;
			if ((s < le && p[s] == '[') || i < delim)
				return 0;
		}
		ls = le + 1;
	}
	return 1;
}

static void fc_check_loaded(const struct config *cfg)
{
	FZ_CHECK(cfg->max_body_bytes >= 1 && cfg->max_body_bytes <= LIM_BODY_BYTES_MAX);
	FZ_CHECK(cfg->max_connections >= 16 && cfg->max_connections <= 1000000);
	FZ_CHECK(cfg->request_timeout_ms >= 100 && cfg->request_timeout_ms <= 600000);
	FZ_CHECK(cfg->idle_timeout_s >= 1 && cfg->idle_timeout_s <= 3600);
	FZ_CHECK(cfg->threads <= 256);
	FZ_CHECK(cfg->queue_capacity >= 1 && cfg->max_batch >= 1);
	FZ_CHECK(cfg->listen && cfg->listen_port >= 1);
	FZ_CHECK(strlen(cfg->listen_host) > 0 &&
	         strlen(cfg->listen_host) < sizeof(cfg->listen_host));
	FZ_CHECK(cfg->public_url && cfg->storage_url && cfg->data_dir);
	FZ_CHECK(!cfg->hash_key || strlen(cfg->hash_key) >= 32);
	for (size_t i = 0; i < cfg->n_entries; i++) {
		const struct config_entry *e = &cfg->entries[i];
		const char *v = config_get(cfg, e->section, e->key);
		FZ_CHECK(v != NULL && e->value[0] != '\0');
	}
	const char *tokens = config_get(cfg, "twilio", "auth_tokens");
	size_t n = 0;
	char **list = config_list(tokens, &n);
	for (size_t i = 0; i < n; i++)
		FZ_CHECK(list[i] && list[i][0] != '\0' && !strchr(list[i], ','));
	FZ_CHECK(list[n] == NULL);
	config_list_free(list);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t pick = fz_byte(&in);
	struct iov file = fz_part(&in, NULL);
	struct iov envv = {(const char *)in.p, in.n};
	const char *env_name = pick < ARRAY_LEN(fc_env) ? fc_env[pick] : NULL;
	char path[64], err[512];
	struct config cfg;
	char *value = NULL;
	int fd, rc;

	if (!fc_ready)
		fc_init();
	fd = memfd_create("dlrd-fuzz-config", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	for (size_t off = 0; off < file.n;) {
		ssize_t w = write(fd, file.p + off, file.n - off);
		if (w <= 0) {
			close(fd);
			return 0;
		}
		off += (size_t)w;
	}
	util_fmt(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (env_name) {
		value = fz_cstr(envv);
		setenv(env_name, value, 1);
	}

	memset(err, 0, sizeof(err));
	rc = config_load(path, &cfg, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == DLRD_ECONFIG);
	if (rc == 0) {
		fc_check_loaded(&cfg);
		config_fini(&cfg);
	} else {
		FZ_CHECK(err[0] != '\0' && strnlen(err, sizeof(err)) < sizeof(err));
		FZ_CHECK(cfg.entries == NULL && cfg.listen == NULL);
		if (fc_marker_only_in_values(file.p, file.n))
			FZ_CHECK(strstr(err, FC_MARKER) == NULL);
	}

	if (env_name)
		unsetenv(env_name);
	free(value);
	close(fd);
	return 0;
}
