/* SPDX-License-Identifier: MIT */
/*
 * Configuration loading.  Every key dlrd knows is declared in a table: the
 * core keys below, and each provider's keys in its provider_table entry (the
 * provider's name is its section).  Loading happens in four steps:
 *
 *   1. the INI file (optional) is read into memory and parsed with inih; every
 *      key must be a known one and may appear only once;
 *   2. for every known key, the environment variable DLRD_<SECTION>_<KEY>
 *      (upper-cased, '-' as '_') replaces the file's value;
 *   3. the core keys are checked and converted into struct config fields;
 *   4. every key that has a value, core defaults included, is listed in
 *      cfg->entries for config_get().
 *
 * Rules an operator sees: an empty value (in the file or the environment)
 * counts as unset, so the default applies; values are trimmed of surrounding
 * blanks; ';' after a blank starts a comment ("a;b" keeps its ';'); a line may
 * hold at most 198 bytes (inih's fixed line buffer; longer values go in the
 * environment), and indentation is ignored rather than read as a continuation
 * line.  Provider values are not interpreted here: each provider's init()
 * reads them with config_get() and config_list().
 *
 * Error messages name the key and where its value came from ("line 4" or
 * "from DLRD_SERVER_LISTEN").  They never include a value, since several keys
 * hold secrets (provider tokens, the hash key, a database password inside the
 * storage URL).  Loading runs once on the main thread before any other thread
 * starts; the result is read-only afterwards.
 */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlrd_limits.h"
#include "provider.h"
#include "util.h"

#define CONFIG_FILE_MAX (1u << 20) /* a config file larger than this is a mistake */
#define ENV_NAME_MAX    128

enum key_type { T_STR, T_UINT };

/* A core key.  Integer keys carry their range and default; string keys a
 * default string or NULL (unset unless configured). */
struct core_key {
	const char *section;
	const char *key;
	enum key_type type;
	const char *def;
	unsigned long def_num, min, max;
};

enum core_id {
	K_LISTEN,
	K_PUBLIC_URL,
	K_MAX_BODY_BYTES,
	K_MAX_CONNECTIONS,
	K_REQUEST_TIMEOUT_MS,
	K_IDLE_TIMEOUT_S,
	K_THREADS,
	K_DATA_DIR,
	K_LOG_LEVEL,
	K_STORAGE_URL,
	K_SYNCHRONOUS,
	K_QUEUE_CAPACITY,
	K_MAX_BATCH,
	K_MAX_BATCH_EVENTS,
	K_HASH_KEY,
	K_READ_POOL_SIZE,
	K_ENCRYPTION_KEYS,
	K_API_TOKENS,
	K_API_OPTOUT_EXEMPT,
	K__COUNT
};

static const struct core_key core_keys[K__COUNT] = {
    [K_LISTEN] = {"server", "listen", T_STR, "127.0.0.1:8080", 0, 0, 0},
    [K_PUBLIC_URL] = {"server", "public_url", T_STR, NULL, 0, 0, 0},
    [K_MAX_BODY_BYTES] = {"server", "max_body_bytes", T_UINT, NULL, LIM_BODY_BYTES_DEFAULT, 1,
                          LIM_BODY_BYTES_MAX},
    [K_MAX_CONNECTIONS] = {"server", "max_connections", T_UINT, NULL, LIM_CONNECTIONS_DEFAULT, 16,
                           LIM_CONNECTIONS_MAX},
    [K_REQUEST_TIMEOUT_MS] = {"server", "request_timeout_ms", T_UINT, NULL, LIM_REQUEST_MS_DEFAULT,
                              100, 600000},
    [K_IDLE_TIMEOUT_S] = {"server", "idle_timeout_s", T_UINT, NULL, LIM_IDLE_S_DEFAULT, 1, 3600},
    [K_THREADS] = {"server", "threads", T_UINT, NULL, 0, 0, 256},
    [K_DATA_DIR] = {"server", "data_dir", T_STR, NULL, 0, 0, 0},
    [K_LOG_LEVEL] = {"server", "log_level", T_STR, "info", 0, 0, 0},
    [K_STORAGE_URL] = {"storage", "url", T_STR, "sqlite:var/dlrd.db", 0, 0, 0},
    [K_SYNCHRONOUS] = {"storage", "synchronous", T_STR, "full", 0, 0, 0},
    [K_QUEUE_CAPACITY] = {"storage", "queue_capacity", T_UINT, NULL, 0, 1, 1000000},
    [K_MAX_BATCH] = {"storage", "max_batch", T_UINT, NULL, LIM_BATCH_DEFAULT, 1, 100000},
    [K_MAX_BATCH_EVENTS] = {"storage", "max_batch_events", T_UINT, NULL, LIM_BATCH_EVENTS_DEFAULT,
                            1, 10000000},
    [K_HASH_KEY] = {"privacy", "hash_key", T_STR, NULL, 0, 0, 0},
    /* The JSON API (api.c reads these with config_get) */
    [K_READ_POOL_SIZE] = {"storage", "read_pool_size", T_UINT, NULL, 4, 1, 64},
    [K_ENCRYPTION_KEYS] = {"privacy", "encryption_keys", T_STR, NULL, 0, 0, 0},
    [K_API_TOKENS] = {"api", "tokens", T_STR, NULL, 0, 0, 0},
    [K_API_OPTOUT_EXEMPT] = {"api", "optout_exempt_use_cases", T_STR, NULL, 0, 0, 0},
};

#define HASH_KEY_MIN 32

/* One known key while loading: core keys first (indexed by enum core_id),
 * then every provider's keys in table order. */
struct slot {
	const char *section; /* static, from a key table */
	const char *key;
	char *value; /* heap; NULL when unset or empty */
	bool from_env;
	unsigned line; /* line in the file, 0 when not from the file */
	bool in_file;  /* seen in the file (even empty), for duplicates */
};

/* State of one load, shared by the inih reader and handler. */
struct loader {
	struct slot *slots;
	size_t n_slots;
	/* the file, for the reader */
	const char *buf;
	size_t len, pos;
	unsigned lineno;
	bool stop;         /* an error was recorded: the reader reports EOF */
	unsigned err_line; /* the line of that error */
	char *err;
	size_t errlen;
};

/* Appends printf output to the NUL-terminated text in err. */
static void err_append(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void err_append(char *err, size_t errlen, const char *fmt, ...)
{
	size_t used = strnlen(err, errlen);
	va_list ap;

	if (used + 1 >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + used, errlen - used, fmt, ap);
	va_end(ap);
}

/* Writes the environment variable name for section.key into buf. */
static void env_name(const char *section, const char *key, char *buf, size_t size)
{
	size_t n = util_fmt(buf, size, "DLRD_%s_%s", section, key);

	for (size_t i = 0; i < n; i++) {
		char c = buf[i];
		if (c >= 'a' && c <= 'z')
			buf[i] = (char)(c - 'a' + 'A');
		else if (c == '-')
			buf[i] = '_';
	}
}

/* Appends " (line N)" or " (from DLRD_...)" naming where the value of
 * section.key came from; nothing for a default. */
static void where_append(const char *section, const char *key, bool from_env, unsigned line,
                         char *err, size_t errlen)
{
	char name[ENV_NAME_MAX];

	if (from_env) {
		env_name(section, key, name, sizeof(name));
		err_append(err, errlen, " (from %s)", name);
	} else if (line) {
		err_append(err, errlen, " (line %u)", line);
	}
}

static void err_where(const struct slot *s, char *err, size_t errlen)
{
	where_append(s->section, s->key, s->from_env, s->line, err, errlen);
}

static void slot_err(const struct slot *s, char *err, size_t errlen, const char *what)
{
	if (errlen == 0)
		return;
	util_fmt(err, errlen, "config: %s.%s: %s", s->section, s->key, what);
	err_where(s, err, errlen);
}

/* Returns a trimmed heap copy of v, or NULL when v is blank. */
static char *dup_trimmed(const char *v)
{
	size_t n = strlen(v);

	while (n && (*v == ' ' || *v == '\t')) {
		v++;
		n--;
	}
	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r' || v[n - 1] == '\n'))
		n--;
	return n ? xstrndup(v, n) : NULL;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static struct slot *find_slot(struct loader *ld, const char *section, const char *key,
                              bool *section_known)
{
	*section_known = false;
	for (size_t i = 0; i < ld->n_slots; i++) {
		if (strcmp(ld->slots[i].section, section) != 0)
			continue;
		*section_known = true;
		if (strcmp(ld->slots[i].key, key) == 0)
			return &ld->slots[i];
	}
	return NULL;
}

/*
 * inih reader over the in-memory file.  It exists for two reasons.  inih 55
 * silently drops the rest of a line longer than its buffer, which would cut a
 * secret without a word; here such a line is an error.  And inih reads an
 * indented line as a continuation of the previous value (Python configparser
 * style); here indentation is stripped so "  key = v" is an ordinary key.
 * It also counts lines, so the handler knows where it is.
 */
static char *read_line(char *str, int num, void *stream)
{
	struct loader *ld = stream;
	const char *line, *nl;
	size_t n;

	if (ld->stop || ld->pos >= ld->len || num < 2)
		return NULL;
	line = ld->buf + ld->pos;
	nl = memchr(line, '\n', ld->len - ld->pos);
	n = nl ? (size_t)(nl - line) : ld->len - ld->pos;
	ld->pos += n + (nl ? 1 : 0);
	ld->lineno++;
	while (n && (*line == ' ' || *line == '\t')) {
		line++;
		n--;
	}
	/* The line, a newline (so inih sees it whole) and a NUL must fit. */
	if (n > (size_t)num - 2) {
		util_fmt(ld->err, ld->errlen, "config: line %u is longer than %d bytes", ld->lineno,
		         num - 2);
		ld->stop = true;
		ld->err_line = ld->lineno;
		return NULL;
	}
	memcpy(str, line, n);
	str[n] = '\n';
	str[n + 1] = '\0';
	return str;
}

static int on_key(void *user, const char *section, const char *key, const char *value)
{
	struct loader *ld = user;
	struct slot *s;
	bool section_known;

	if (ld->stop)
		return 0;
	if (section[0] == '\0') {
		util_fmt(ld->err, ld->errlen, "config: key '%s' is outside any section (line %u)",
		         key, ld->lineno);
		goto fail;
	}
	s = find_slot(ld, section, key, &section_known);
	if (!s) {
		util_fmt(ld->err, ld->errlen, "config: unknown key '%s.%s' (line %u)", section, key,
		         ld->lineno);
		if (!section_known)
			err_append(ld->err, ld->errlen, ": there is no section [%s]", section);
		goto fail;
	}
	if (s->in_file) {
		util_fmt(ld->err, ld->errlen, "config: %s.%s: set twice (lines %u and %u)",
		         s->section, s->key, s->line, ld->lineno);
		goto fail;
	}
	s->in_file = true;
	s->line = ld->lineno;
	s->value = dup_trimmed(value);
	return 1;
fail:
	ld->stop = true;
	ld->err_line = ld->lineno;
	return 0;
}

/* Reads the whole file at path into a NUL-terminated heap buffer. */
static int read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
	FILE *f = NULL;
	char *buf = NULL;
	size_t n;
	int rc = DLRD_ECONFIG;

	f = fopen(path, "rb");
	if (!f) {
		util_fmt(err, errlen, "config: cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	buf = xmalloc(CONFIG_FILE_MAX + 1);
	n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
	if (ferror(f)) {
		util_fmt(err, errlen, "config: cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	if (n > CONFIG_FILE_MAX) {
		util_fmt(err, errlen, "config: %s is larger than %u bytes", path, CONFIG_FILE_MAX);
		goto out;
	}
	if (memchr(buf, '\0', n)) {
		util_fmt(err, errlen, "config: %s contains a NUL byte", path);
		goto out;
	}
	buf[n] = '\0';
	*out = buf;
	*outlen = n;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	if (f)
		fclose(f);
	return rc;
}

static int parse_file(struct loader *ld, const char *path)
{
	char *buf = NULL;
	size_t len = 0;
	int rc, line;

	rc = read_file(path, &buf, &len, ld->err, ld->errlen);
	if (rc < 0)
		return rc;
	ld->buf = buf;
	ld->len = len;
	line = ini_parse_stream(read_line, ld, on_key, ld);
	if (line > 0 && (!ld->stop || (unsigned)line < ld->err_line)) {
		/* inih's own complaint, on a line before any of ours: a line that
		 * is neither "[section]" nor "key = value" (the handler was not
		 * called for it; inih goes on after it). */
		util_fmt(ld->err, ld->errlen,
		         "config: syntax error (line %d): expected [section] or key = value", line);
		rc = DLRD_ECONFIG;
	} else if (ld->stop) {
		rc = DLRD_ECONFIG; /* the reader or handler wrote the message */
	}
	ld->buf = NULL;
	free_secret(buf);
	return rc;
}

static void apply_env(struct loader *ld)
{
	char name[ENV_NAME_MAX];

	for (size_t i = 0; i < ld->n_slots; i++) {
		struct slot *s = &ld->slots[i];
		const char *v;
		char *dup;

		env_name(s->section, s->key, name, sizeof(name));
		v = getenv(name);
		if (!v)
			continue;
		dup = dup_trimmed(v);
		if (!dup)
			continue; /* empty counts as unset: the file's value stays */
		free_secret(s->value);
		s->value = dup;
		s->from_env = true;
		s->line = 0;
	}
}

/* Builds the slot array: core keys, then each provider's keys. */
static void make_slots(struct loader *ld)
{
	size_t n = K__COUNT;

	for (size_t p = 0; provider_table[p]; p++)
		for (const struct config_key *k = provider_table[p]->keys; k && k->key; k++)
			n++;
	ld->slots = xcalloc(n, sizeof(*ld->slots));
	for (size_t i = 0; i < K__COUNT; i++) {
		ld->slots[i].section = core_keys[i].section;
		ld->slots[i].key = core_keys[i].key;
	}
	n = K__COUNT;
	for (size_t p = 0; provider_table[p]; p++) {
		for (const struct config_key *k = provider_table[p]->keys; k && k->key; k++) {
			ld->slots[n].section = provider_table[p]->name;
			ld->slots[n].key = k->key;
			n++;
		}
	}
	ld->n_slots = n;
#ifndef NDEBUG
	/* Two keys must never share an environment variable name (a provider
	 * "a-b" with key "c" against a provider "a" with key "b_c"). */
	for (size_t i = 0; i < n; i++) {
		char a[ENV_NAME_MAX], b[ENV_NAME_MAX];
		env_name(ld->slots[i].section, ld->slots[i].key, a, sizeof(a));
		for (size_t j = i + 1; j < n; j++) {
			env_name(ld->slots[j].section, ld->slots[j].key, b, sizeof(b));
			assert(strcmp(a, b) != 0);
		}
	}
#endif
}

static void free_slots(struct loader *ld)
{
	for (size_t i = 0; i < ld->n_slots; i++)
		free_secret(ld->slots[i].value);
	free(ld->slots);
	ld->slots = NULL;
	ld->n_slots = 0;
}

/* Strict decimal in [min, max] (no sign, blanks or suffix).  Any thread; the
 * message is "config: section.key: must be an integer in MIN..MAX", without
 * the value, and callers may append where the value came from. */
int config_parse_uint(const char *section, const char *key, const char *value, unsigned long min,
                      unsigned long max, unsigned long *out, char *err, size_t errlen)
{
	uint64_t v;

	if (!value || util_parse_u64(value, strlen(value), &v) < 0 || v < min || v > max) {
		util_fmt(err, errlen, "config: %s.%s: must be an integer in %lu..%lu", section, key,
		         min, max);
		return DLRD_ECONFIG;
	}
	*out = (unsigned long)v;
	return 0;
}

/* Parses "a.b.c.d:port", "[v6]:port" or "localhost:port" into
 * cfg->listen_host and cfg->listen_port. */
static int parse_listen(const char *v, struct config *cfg)
{
	const char *host, *port;
	size_t hostlen;
	unsigned char addr[16];
	uint64_t p;
	int af;

	if (v[0] == '[') {
		const char *close = strchr(v, ']');
		if (!close || close[1] != ':')
			return DLRD_EINVAL;
		host = v + 1;
		hostlen = (size_t)(close - host);
		port = close + 2;
		af = AF_INET6;
	} else {
		const char *colon = strrchr(v, ':');
		if (!colon)
			return DLRD_EINVAL;
		host = v;
		hostlen = (size_t)(colon - v);
		port = colon + 1;
		af = AF_INET;
	}
	if (hostlen == 0 || hostlen >= sizeof(cfg->listen_host))
		return DLRD_EINVAL;
	memcpy(cfg->listen_host, host, hostlen);
	cfg->listen_host[hostlen] = '\0';
	/* "localhost" is the one name accepted (the HTTP front binds it to
	 * 127.0.0.1); anything else must be an address, never a DNS lookup. */
	if (inet_pton(af, cfg->listen_host, addr) != 1 &&
	    !(af == AF_INET && strcmp(cfg->listen_host, "localhost") == 0))
		return DLRD_EINVAL;
	if (util_parse_u64(port, strlen(port), &p) < 0 || p < 1 || p > 65535)
		return DLRD_EINVAL;
	cfg->listen_port = (uint16_t)p;
	return 0;
}

/* Checks an absolute http(s) base URL and strips one trailing '/' in place. */
static int check_public_url(char *v)
{
	const char *host;
	size_t n = strlen(v);

	if (strncmp(v, "http://", 7) == 0)
		host = v + 7;
	else if (strncmp(v, "https://", 8) == 0)
		host = v + 8;
	else
		return DLRD_EINVAL;
	if (*host == '\0' || *host == '/' || *host == ':' || *host == '@')
		return DLRD_EINVAL;
	for (const char *p = v; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '?' || c == '#' || c <= 0x20 || c == 0x7f)
			return DLRD_EINVAL;
	}
	if (v[n - 1] == '/')
		v[n - 1] = '\0';
	return 0;
}

/* "sqlite:PATH", "postgresql://...", "postgres://..." or a libpq
 * "host=... dbname=..." string. */
static int check_storage_url(const char *v)
{
	if (strncmp(v, "sqlite:", 7) == 0) {
		const char *path = v + 7;
		/* "sqlite://x" would silently mean the absolute path "//x". */
		if (*path == '\0' || strncmp(path, "//", 2) == 0)
			return DLRD_EINVAL;
		return 0;
	}
	if (strncmp(v, "postgresql://", 13) == 0 || strncmp(v, "postgres://", 11) == 0 ||
	    strncmp(v, "host=", 5) == 0 || strncmp(v, "dbname=", 7) == 0)
		return 0;
	return DLRD_EINVAL;
}

/* The folder of the SQLite file named by a "sqlite:PATH" URL, or "var". */
static char *default_data_dir(const char *url)
{
	const char *path, *slash;

	if (strncmp(url, "sqlite:", 7) != 0)
		return xstrdup("var");
	path = url + 7;
	slash = strrchr(path, '/');
	if (!slash)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

static void add_entry(struct config *cfg, const char *section, const char *key, const char *value,
                      bool from_env, unsigned line)
{
	struct config_entry *e;

	cfg->entries = xrealloc(cfg->entries, (cfg->n_entries + 1) * sizeof(*cfg->entries));
	e = &cfg->entries[cfg->n_entries++];
	e->section = xstrdup(section);
	e->key = xstrdup(key);
	e->value = xstrdup(value);
	e->from_env = from_env;
	e->line = line;
}

/* Converts the core slots into cfg fields, applying defaults. */
static int resolve_core(struct loader *ld, struct config *cfg, char *err, size_t errlen)
{
	unsigned long num[K__COUNT] = {0};
	char numbuf[24];
	struct slot *s = ld->slots;
	bool queue_set = s[K_QUEUE_CAPACITY].value != NULL;

	/* Defaults first, so every core slot below has a value unless the key
	 * is optional. */
	for (size_t i = 0; i < K__COUNT; i++) {
		const struct core_key *k = &core_keys[i];
		if (s[i].value)
			continue;
		if (k->type == T_UINT) {
			util_fmt(numbuf, sizeof(numbuf), "%lu", k->def_num);
			s[i].value = xstrdup(numbuf);
		} else if (k->def) {
			s[i].value = xstrdup(k->def);
		}
	}

	for (size_t i = 0; i < K__COUNT; i++) {
		const struct core_key *k = &core_keys[i];
		if (k->type != T_UINT || (i == K_QUEUE_CAPACITY && !queue_set))
			continue;
		if (config_parse_uint(k->section, k->key, s[i].value, k->min, k->max, &num[i], err,
		                      errlen) < 0) {
			err_where(&s[i], err, errlen);
			return DLRD_ECONFIG;
		}
	}
	cfg->max_body_bytes = num[K_MAX_BODY_BYTES];
	cfg->max_connections = (unsigned)num[K_MAX_CONNECTIONS];
	cfg->request_timeout_ms = (unsigned)num[K_REQUEST_TIMEOUT_MS];
	cfg->idle_timeout_s = (unsigned)num[K_IDLE_TIMEOUT_S];
	cfg->threads = (unsigned)num[K_THREADS];
	cfg->queue_capacity = (unsigned)num[K_QUEUE_CAPACITY];
	if (!queue_set) { /* follows max_connections (dlrd_limits.h) */
		cfg->queue_capacity = LIM_QUEUE_DEFAULT(cfg->max_connections);
		util_fmt(numbuf, sizeof(numbuf), "%u", cfg->queue_capacity);
		free(s[K_QUEUE_CAPACITY].value);
		s[K_QUEUE_CAPACITY].value = xstrdup(numbuf);
	}
	cfg->max_batch = (unsigned)num[K_MAX_BATCH];
	cfg->max_batch_events = (unsigned)num[K_MAX_BATCH_EVENTS];

	if (parse_listen(s[K_LISTEN].value, cfg) < 0) {
		slot_err(&s[K_LISTEN], err, errlen,
		         "must be IPV4:PORT, [IPV6]:PORT or localhost:PORT, with PORT in 1..65535");
		return DLRD_ECONFIG;
	}
	cfg->listen = xstrdup(s[K_LISTEN].value);

	if (s[K_PUBLIC_URL].value && check_public_url(s[K_PUBLIC_URL].value) < 0) {
		slot_err(&s[K_PUBLIC_URL], err, errlen,
		         "must be an http:// or https:// URL with a host and no query or "
		         "fragment");
		return DLRD_ECONFIG;
	}
	cfg->public_url = xstrdup(s[K_PUBLIC_URL].value ? s[K_PUBLIC_URL].value : "");

	if (log_parse_level(s[K_LOG_LEVEL].value, &cfg->log_level) < 0) {
		slot_err(&s[K_LOG_LEVEL], err, errlen, "must be debug, info, warn or error");
		return DLRD_ECONFIG;
	}

	if (check_storage_url(s[K_STORAGE_URL].value) < 0) {
		slot_err(&s[K_STORAGE_URL], err, errlen,
		         "must be sqlite:PATH, postgresql://... or a libpq "
		         "\"host=... dbname=...\" string");
		return DLRD_ECONFIG;
	}
	cfg->storage_url = xstrdup(s[K_STORAGE_URL].value);

	if (strcmp(s[K_SYNCHRONOUS].value, "full") == 0) {
		cfg->synchronous = SYNC_FULL;
	} else if (strcmp(s[K_SYNCHRONOUS].value, "normal") == 0) {
		cfg->synchronous = SYNC_NORMAL;
	} else {
		slot_err(&s[K_SYNCHRONOUS], err, errlen, "must be full or normal");
		return DLRD_ECONFIG;
	}

	if (!s[K_DATA_DIR].value)
		s[K_DATA_DIR].value = default_data_dir(cfg->storage_url);
	cfg->data_dir = xstrdup(s[K_DATA_DIR].value);

	if (s[K_HASH_KEY].value) {
		if (strlen(s[K_HASH_KEY].value) < HASH_KEY_MIN) {
			slot_err(&s[K_HASH_KEY], err, errlen,
			         "must be at least 32 characters (for example 64 hex digits)");
			return DLRD_ECONFIG;
		}
		cfg->hash_key = xstrdup(s[K_HASH_KEY].value);
	}
	return 0;
}

/* Main thread, once, before other threads start.  On failure *out is left
 * zeroed (config_fini() on it is harmless) and err names the key. */
int config_load(const char *path, struct config *out, char *err, size_t errlen)
{
	struct loader ld = {.err = err, .errlen = errlen};
	int rc;

	memset(out, 0, sizeof(*out));
	if (errlen)
		err[0] = '\0';
	make_slots(&ld);
	if (path) {
		rc = parse_file(&ld, path);
		if (rc < 0)
			goto out;
	}
	apply_env(&ld);
	rc = resolve_core(&ld, out, err, errlen);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < ld.n_slots; i++)
		if (ld.slots[i].value)
			add_entry(out, ld.slots[i].section, ld.slots[i].key, ld.slots[i].value,
			          ld.slots[i].from_env, ld.slots[i].line);
out:
	free_slots(&ld);
	if (rc < 0)
		config_fini(out);
	return rc;
}

/* Frees everything config_load() allocated, wiping values first (several are
 * secrets), and zeroes *cfg.  Accepts a zeroed struct and NULL. */
void config_fini(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->n_entries; i++) {
		free(cfg->entries[i].section);
		free(cfg->entries[i].key);
		free_secret(cfg->entries[i].value);
	}
	free(cfg->entries);
	free(cfg->listen);
	free(cfg->public_url);
	free(cfg->data_dir);
	free_secret(cfg->storage_url);
	free_secret(cfg->hash_key);
	memset(cfg, 0, sizeof(*cfg));
}

/* Any thread.  The result is borrowed from cfg. */
const char *config_get(const struct config *cfg, const char *section, const char *key)
{
	for (size_t i = 0; i < cfg->n_entries; i++)
		if (strcmp(cfg->entries[i].section, section) == 0 &&
		    strcmp(cfg->entries[i].key, key) == 0)
			return cfg->entries[i].value;
	return NULL;
}

/* Any thread (config.h says what it appends to which message). */
void config_err_where(const struct config *cfg, char *err, size_t errlen)
{
	static const char prefix[] = "config: ";
	const char *name, *dot, *colon;

	if (errlen == 0 || strncmp(err, prefix, sizeof(prefix) - 1) != 0)
		return;
	name = err + sizeof(prefix) - 1;
	colon = name + strcspn(name, ": ");
	dot = memchr(name, '.', (size_t)(colon - name));
	if (*colon != ':' || !dot)
		return;
	for (size_t i = 0; i < cfg->n_entries; i++) {
		const struct config_entry *e = &cfg->entries[i];
		if (strlen(e->section) == (size_t)(dot - name) &&
		    memcmp(e->section, name, (size_t)(dot - name)) == 0 &&
		    strlen(e->key) == (size_t)(colon - dot - 1) &&
		    memcmp(e->key, dot + 1, (size_t)(colon - dot - 1)) == 0) {
			where_append(e->section, e->key, e->from_env, e->line, err, errlen);
			return;
		}
	}
}

/* Any thread.  value may be NULL (an empty list).  The caller owns the result
 * and frees it with config_list_free(), which wipes the items (they are often
 * secrets). */
char **config_list(const char *value, size_t *n)
{
	char **list = xcalloc(1, sizeof(*list));
	size_t count = 0;
	const char *p = value;

	while (p && *p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		const char *q = p;

		while (len && (*q == ' ' || *q == '\t')) {
			q++;
			len--;
		}
		while (len && (q[len - 1] == ' ' || q[len - 1] == '\t'))
			len--;
		if (len) {
			list = xrealloc(list, (count + 2) * sizeof(*list));
			list[count++] = xstrndup(q, len);
			list[count] = NULL;
		}
		p = comma ? comma + 1 : NULL;
	}
	if (n)
		*n = count;
	return list;
}

void config_list_free(char **list)
{
	if (!list)
		return;
	for (size_t i = 0; list[i]; i++)
		free_secret(list[i]);
	free(list);
}
