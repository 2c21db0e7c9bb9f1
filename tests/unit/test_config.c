/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/config.c: defaults, the INI file (inline comments,
 * indentation, long lines, duplicates), environment overrides, the exact
 * error messages for unknown keys and bad values, and list splitting; every
 * provider key checked even while the provider is unconfigured; and the keys
 * dlrd.conf.example and README.md name against the keys dlrd knows.
 *
 * Provider keys are exercised through twilio.auth_tokens, which the real
 * provider table has; a provider whose name contains '-' is tested when the
 * table has one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "dlrd_limits.h"
#include "provider.h"
#include "util.h"

extern char **environ;

static char conf_path[64];

/* Removes every DLRD_* variable so the tests see only what they set. */
static void clear_env(void)
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
		assert_true(n < sizeof(name));
		memcpy(name, environ[i], n);
		name[n] = '\0';
		unsetenv(name);
	}
}

static int setup(void **state)
{
	(void)state;
	clear_env();
	util_strlcpy(conf_path, "/tmp/dlrd-test-config-XXXXXX", sizeof(conf_path));
	int fd = mkstemp(conf_path);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(conf_path);
	clear_env();
	return 0;
}

static void write_conf(const char *text)
{
	FILE *f = fopen(conf_path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

/* Loads text as the config file; expects success. */
static void load_ok(const char *text, struct config *cfg)
{
	char err[256] = "";

	write_conf(text);
	int rc = config_load(conf_path, cfg, err, sizeof(err));
	if (rc != 0)
		fail_msg("config_load failed: %s", err);
}

/* Loads text as the config file; expects DLRD_ECONFIG with exactly want. */
static void load_err(const char *text, const char *want)
{
	struct config cfg;
	char err[256] = "";

	write_conf(text);
	assert_int_equal(config_load(conf_path, &cfg, err, sizeof(err)), DLRD_ECONFIG);
	assert_string_equal(err, want);
	/* A failed load leaves nothing to free. */
	assert_null(cfg.entries);
	assert_null(cfg.listen);
	config_fini(&cfg);
}

static void test_defaults(void **state)
{
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.listen, "127.0.0.1:8080");
	assert_string_equal(cfg.listen_host, "127.0.0.1");
	assert_int_equal(cfg.listen_port, 8080);
	assert_string_equal(cfg.public_url, "");
	assert_int_equal(cfg.max_body_bytes, LIM_BODY_BYTES_DEFAULT);
	assert_int_equal(cfg.max_connections, LIM_CONNECTIONS_DEFAULT);
	assert_int_equal(cfg.request_timeout_ms, LIM_REQUEST_MS_DEFAULT);
	assert_int_equal(cfg.idle_timeout_s, LIM_IDLE_S_DEFAULT);
	assert_int_equal(cfg.threads, 0);
	assert_string_equal(cfg.data_dir, "var");
	assert_int_equal(cfg.log_level, LOG_INFO);
	assert_string_equal(cfg.storage_url, "sqlite:var/dlrd.db");
	assert_int_equal(cfg.synchronous, SYNC_FULL);
	assert_int_equal(cfg.queue_capacity, LIM_QUEUE_DEFAULT(LIM_CONNECTIONS_DEFAULT));
	assert_int_equal(cfg.max_batch, LIM_BATCH_DEFAULT);
	assert_int_equal(cfg.max_batch_events, LIM_BATCH_EVENTS_DEFAULT);
	assert_null(cfg.hash_key);

	/* Resolved defaults are visible through config_get; optional keys and
	 * unconfigured providers are not. */
	assert_string_equal(config_get(&cfg, "server", "listen"), "127.0.0.1:8080");
	assert_string_equal(config_get(&cfg, "server", "max_body_bytes"), "65536");
	assert_string_equal(config_get(&cfg, "server", "data_dir"), "var");
	assert_string_equal(config_get(&cfg, "storage", "synchronous"), "full");
	assert_string_equal(config_get(&cfg, "storage", "queue_capacity"), "768");
	assert_null(config_get(&cfg, "server", "public_url"));
	assert_null(config_get(&cfg, "privacy", "hash_key"));
	assert_null(config_get(&cfg, "twilio", "auth_tokens"));
	assert_null(config_get(&cfg, "server", "nonsense"));
	for (size_t i = 0; i < cfg.n_entries; i++)
		assert_false(cfg.entries[i].from_env);
	config_fini(&cfg);
	config_fini(&cfg); /* fini twice is harmless */
}

/* The queue's default follows max_connections (3/4 of it), so that the
 * queue fills before the connections run out; a set value stands. */
static void test_queue_follows_connections(void **state)
{
	struct config cfg;

	(void)state;
	load_ok("[server]\nmax_connections = 100\n", &cfg);
	assert_int_equal(cfg.queue_capacity, 75);
	assert_string_equal(config_get(&cfg, "storage", "queue_capacity"), "75");
	config_fini(&cfg);
	load_ok("[server]\nmax_connections = 16\n", &cfg);
	assert_int_equal(cfg.queue_capacity, 12);
	config_fini(&cfg);
	load_ok("[server]\nmax_connections = 100\n[storage]\nqueue_capacity = 5000\n", &cfg);
	assert_int_equal(cfg.queue_capacity, 5000);
	config_fini(&cfg);
}

static void test_file(void **state)
{
	struct config cfg;

	(void)state;
	load_ok("; dlrd test\n"
	        "# hash comment\n"
	        "[server]\n"
	        "listen = [::1]:9090\n"
	        "public_url = https://sms.example.com/   ; signatures use this\n"
	        "  max_body_bytes = 1024\n" /* indented: an ordinary key */
	        "max_connections=16\n"
	        "request_timeout_ms = 600000\r\n"
	        "idle_timeout_s = 1\n"
	        "threads = 256\n"
	        "log_level = debug\n"
	        "\n"
	        "[storage]\n"
	        "url = sqlite:/srv/dlrd/data/dlrd.db\n"
	        "synchronous = normal\n"
	        "queue_capacity = 1\n"
	        "max_batch = 100000\n"
	        "max_batch_events = 50\n"
	        "[twilio]\n"
	        "auth_tokens = tok1, tok2 ; rotation\n"
	        "[privacy]\n"
	        "hash_key = 0123456789abcdef0123456789abcdef\n",
	        &cfg);
	assert_string_equal(cfg.listen, "[::1]:9090");
	assert_string_equal(cfg.listen_host, "::1");
	assert_int_equal(cfg.listen_port, 9090);
	assert_string_equal(cfg.public_url, "https://sms.example.com");
	assert_string_equal(config_get(&cfg, "server", "public_url"), "https://sms.example.com");
	assert_int_equal(cfg.max_body_bytes, 1024);
	assert_int_equal(cfg.max_connections, 16);
	assert_int_equal(cfg.request_timeout_ms, 600000);
	assert_int_equal(cfg.idle_timeout_s, 1);
	assert_int_equal(cfg.threads, 256);
	assert_int_equal(cfg.log_level, LOG_DEBUG);
	assert_string_equal(cfg.storage_url, "sqlite:/srv/dlrd/data/dlrd.db");
	assert_string_equal(cfg.data_dir, "/srv/dlrd/data");
	assert_int_equal(cfg.synchronous, SYNC_NORMAL);
	assert_int_equal(cfg.queue_capacity, 1);
	assert_int_equal(cfg.max_batch, 100000);
	assert_int_equal(cfg.max_batch_events, 50);
	assert_string_equal(cfg.hash_key, "0123456789abcdef0123456789abcdef");
	assert_string_equal(config_get(&cfg, "twilio", "auth_tokens"), "tok1, tok2");
	assert_string_equal(config_get(&cfg, "privacy", "hash_key"),
	                    "0123456789abcdef0123456789abcdef");
	config_fini(&cfg);
}

/* Debian's inih 55: ';' starts a comment only after whitespace; '#' only at
 * the start of a line. */
static void test_inline_comments(void **state)
{
	struct config cfg;

	(void)state;
	load_ok("[server]\n"
	        "data_dir = d;x # y\t; the comment\n"
	        "[twilio]\n"
	        "auth_tokens = a;b , c;d ;comment\n",
	        &cfg);
	assert_string_equal(cfg.data_dir, "d;x # y");
	assert_string_equal(config_get(&cfg, "twilio", "auth_tokens"), "a;b , c;d");
	config_fini(&cfg);

	/* A UTF-8 byte-order mark, and no newline at the end. */
	load_ok("\xef\xbb\xbf[server]\nthreads = 4 ; four", &cfg);
	assert_int_equal(cfg.threads, 4);
	config_fini(&cfg);
}

static void test_empty_means_unset(void **state)
{
	struct config cfg;

	(void)state;
	load_ok("[server]\nlisten =\npublic_url = \n[twilio]\nauth_tokens = ; none yet\n"
	        "[privacy]\nhash_key =\n",
	        &cfg);
	assert_string_equal(cfg.listen, "127.0.0.1:8080");
	assert_string_equal(cfg.public_url, "");
	assert_null(config_get(&cfg, "server", "public_url"));
	assert_null(config_get(&cfg, "twilio", "auth_tokens"));
	assert_null(cfg.hash_key);
	config_fini(&cfg);
}

static void test_env_wins(void **state)
{
	struct config cfg;
	const struct config_entry *e = NULL;

	(void)state;
	setenv("DLRD_STORAGE_URL", "postgresql://dlrd@db/dlrd", 1);
	setenv("DLRD_SERVER_MAX_BODY_BYTES", " 2048 ", 1);
	setenv("DLRD_TWILIO_AUTH_TOKENS", "envtok", 1);
	setenv("DLRD_SERVER_THREADS", "", 1); /* empty: the file's value stays */
	setenv("DLRD_TEST_HOOK", "whatever", 1);
	setenv("DLRD_NOT_A_KEY", "ignored", 1);
	load_ok("[server]\nmax_body_bytes = 100\nthreads = 3\n"
	        "[storage]\nurl = sqlite:file.db\n"
	        "[twilio]\nauth_tokens = filetok\n",
	        &cfg);
	assert_string_equal(cfg.storage_url, "postgresql://dlrd@db/dlrd");
	assert_string_equal(cfg.data_dir, "var"); /* not SQLite: the fixed default */
	assert_int_equal(cfg.max_body_bytes, 2048);
	assert_int_equal(cfg.threads, 3);
	assert_string_equal(config_get(&cfg, "twilio", "auth_tokens"), "envtok");
	for (size_t i = 0; i < cfg.n_entries; i++)
		if (strcmp(cfg.entries[i].section, "twilio") == 0 &&
		    strcmp(cfg.entries[i].key, "auth_tokens") == 0)
			e = &cfg.entries[i];
	assert_non_null(e);
	assert_true(e->from_env);
	config_fini(&cfg);

	/* The environment alone, without a file. */
	char err[256];
	setenv("DLRD_SERVER_LISTEN", "0.0.0.0:80", 1);
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.listen_host, "0.0.0.0");
	assert_int_equal(cfg.listen_port, 80);
	assert_string_equal(config_get(&cfg, "twilio", "auth_tokens"), "envtok");
	config_fini(&cfg);
}

/* DLRD_<SECTION>_<KEY>: upper case, '-' becomes '_'. */
static void test_env_dash(void **state)
{
	const struct provider *p = NULL;
	char name[128], err[256];
	struct config cfg;

	(void)state;
	for (size_t i = 0; provider_table[i]; i++)
		if (strchr(provider_table[i]->name, '-') && provider_table[i]->keys[0].key)
			p = provider_table[i];
	if (!p)
		skip();
	size_t n = util_fmt(name, sizeof(name), "DLRD_%s_%s", p->name, p->keys[0].key);
	for (size_t i = 0; i < n; i++)
		name[i] = name[i] == '-'
		              ? '_'
		              : (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
	setenv(name, "s1,s2", 1);
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_string_equal(config_get(&cfg, p->name, p->keys[0].key), "s1,s2");
	config_fini(&cfg);
}

/* The annotated example at the repository root loads, and says what the
 * defaults are. */
static void test_example_file(void **state)
{
	const char *suffix = "tests/unit/test_config.c";
	const char *file = __FILE__;
	size_t n = strlen(file), sn = strlen(suffix);
	char path[1024], err[256];
	struct config cfg;

	(void)state;
	if (n < sn || strcmp(file + n - sn, suffix) != 0)
		skip();
	util_fmt(path, sizeof(path), "%.*sdlrd.conf.example", (int)(n - sn), file);
	if (access(path, R_OK) != 0)
		skip();
	if (config_load(path, &cfg, err, sizeof(err)) != 0)
		fail_msg("%s: %s", path, err);
	assert_string_equal(cfg.listen, "127.0.0.1:8080");
	assert_int_equal(cfg.max_body_bytes, LIM_BODY_BYTES_DEFAULT);
	assert_string_equal(cfg.storage_url, "sqlite:var/dlrd.db");
	assert_int_equal(cfg.synchronous, SYNC_FULL);
	assert_int_equal(cfg.queue_capacity, LIM_QUEUE_DEFAULT(LIM_CONNECTIONS_DEFAULT));
	assert_int_equal(cfg.max_batch, LIM_BATCH_DEFAULT);
	assert_null(config_get(&cfg, "twilio", "auth_tokens"));
	config_fini(&cfg);
}

static void test_unknown(void **state)
{
	(void)state;
	load_err("[server]\nlisten = 127.0.0.1:1\nlistn = 1\n",
	         "config: unknown key 'server.listn' (line 3)");
	load_err("\n[twilo]\nauth_tokens = x\n",
	         "config: unknown key 'twilo.auth_tokens' (line 3): there is no section [twilo]");
	load_err("[twilio]\nauth_token = x\n", "config: unknown key 'twilio.auth_token' (line 2)");
	load_err("threads = 1\n", "config: key 'threads' is outside any section (line 1)");
	/* A provider key is not valid in a core section, and the reverse. */
	load_err("[server]\nauth_tokens = x\n",
	         "config: unknown key 'server.auth_tokens' (line 2)");
	load_err("[twilio]\nlisten = x\n", "config: unknown key 'twilio.listen' (line 2)");
	/* Section names are case-sensitive. */
	load_err("[Server]\nthreads = 1\n",
	         "config: unknown key 'Server.threads' (line 2): there is no section [Server]");
}

static void test_file_errors(void **state)
{
	struct config cfg;
	char err[256], line[400], a[200];

	(void)state;
	load_err("[server]\nthreads = 1\nthreads = 2\n",
	         "config: server.threads: set twice (lines 2 and 3)");
	load_err("[server]\nthis is not ini\n",
	         "config: syntax error (line 2): expected [section] or key = value");
	load_err("[server\nthreads = 1\n",
	         "config: syntax error (line 1): expected [section] or key = value");

	/* inih's line buffer is 200 bytes: a longer line is an error, never a
	 * silently shortened value. */
	memset(a, 'a', sizeof(a));
	util_fmt(line, sizeof(line), "[twilio]\n\nauth_tokens = %.*s\n", 185, a);
	load_err(line, "config: line 3 is longer than 198 bytes");
	util_fmt(line, sizeof(line), "[twilio]\nauth_tokens = %.*s\n", 184, a);
	load_ok(line, &cfg); /* exactly 198 bytes */
	assert_int_equal(strlen(config_get(&cfg, "twilio", "auth_tokens")), 184);
	config_fini(&cfg);

	FILE *f = fopen(conf_path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite("[server]\nthreads = 1\0\n", 1, 23, f), 23);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(config_load(conf_path, &cfg, err, sizeof(err)), DLRD_ECONFIG);
	assert_non_null(strstr(err, " contains a NUL byte"));

	assert_int_equal(config_load("/nonexistent/dlrd.conf", &cfg, err, sizeof(err)),
	                 DLRD_ECONFIG);
	assert_string_equal(err, "config: cannot read /nonexistent/dlrd.conf: No such file or "
	                         "directory");
}

struct bad {
	const char *text;
	const char *want;
};

static void test_bad_values(void **state)
{
	static const struct bad cases[] = {
	    {"[server]\nmax_body_bytes = 0\n",
	     "config: server.max_body_bytes: must be an integer in 1..16777216 (line 2)"},
	    {"[server]\nmax_body_bytes = 16777217\n",
	     "config: server.max_body_bytes: must be an integer in 1..16777216 (line 2)"},
	    {"[server]\nmax_body_bytes = 12k\n",
	     "config: server.max_body_bytes: must be an integer in 1..16777216 (line 2)"},
	    {"[server]\nmax_connections = 15\n",
	     "config: server.max_connections: must be an integer in 16..30000 (line 2)"},
	    {"[server]\nrequest_timeout_ms = 99\n",
	     "config: server.request_timeout_ms: must be an integer in 100..600000 (line 2)"},
	    {"[server]\nidle_timeout_s = 3601\n",
	     "config: server.idle_timeout_s: must be an integer in 1..3600 (line 2)"},
	    {"[server]\nthreads = -1\n",
	     "config: server.threads: must be an integer in 0..256 (line 2)"},
	    {"[storage]\nqueue_capacity = 0\n",
	     "config: storage.queue_capacity: must be an integer in 1..1000000 (line 2)"},
	    {"[storage]\nmax_batch = 100001\n",
	     "config: storage.max_batch: must be an integer in 1..100000 (line 2)"},
	    {"[storage]\nmax_batch_events = 0\n",
	     "config: storage.max_batch_events: must be an integer in 1..10000000 (line 2)"},
	    {"[storage]\nsynchronous = off\n",
	     "config: storage.synchronous: must be full or normal (line 2)"},
	    {"[server]\nlog_level = verbose\n",
	     "config: server.log_level: must be debug, info, warn or error (line 2)"},
	    {"[privacy]\nhash_key = short-secret-value\n",
	     "config: privacy.hash_key: must be at least 32 characters (for example 64 hex "
	     "digits) (line 2)"},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		load_err(cases[i].text, cases[i].want);
}

static void test_bad_listen(void **state)
{
	static const char *const bad[] = {
	    "127.0.0.1",     "127.0.0.1:", "127.0.0.1:0",    "127.0.0.1:65536",
	    "localhost",     "local:8080", "::1:8080",       "[::1]8080",
	    "[::1]:",        "[::1",       "1.2.3:80",       ":8080",
	    "127.0.0.1:+80", "[]:80",      "127.0.0.1:80 x", "[1.2.3.4]:80",
	};
	const char *want =
	    "config: server.listen: must be IPV4:PORT, [IPV6]:PORT or localhost:PORT, "
	    "with PORT in 1..65535 (line 2)";
	char text[128];
	struct config cfg;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		util_fmt(text, sizeof(text), "[server]\nlisten = %s\n", bad[i]);
		load_err(text, want);
	}
	load_ok("[server]\nlisten = 0.0.0.0:65535\n", &cfg);
	assert_int_equal(cfg.listen_port, 65535);
	config_fini(&cfg);
	load_ok("[server]\nlisten = localhost:8080\n", &cfg);
	assert_string_equal(cfg.listen_host, "localhost");
	assert_int_equal(cfg.listen_port, 8080);
	config_fini(&cfg);
	load_ok("[server]\nlisten = [::]:1\n", &cfg);
	assert_string_equal(cfg.listen_host, "::");
	assert_int_equal(cfg.listen_port, 1);
	config_fini(&cfg);
}

static void test_public_url(void **state)
{
	static const char *const bad[] = {
	    "sms.example.com", "ftp://sms.example.com", "https://",      "https:///path",
	    "https://x/?a=1",  "https://x/#frag",       "https://x/a b", "HTTPS://x",
	    "https://:443",
	};
	const char *want = "config: server.public_url: must be an http:// or https:// URL with a "
	                   "host and no query or fragment (line 2)";
	char text[128];
	struct config cfg;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		util_fmt(text, sizeof(text), "[server]\npublic_url = %s\n", bad[i]);
		load_err(text, want);
	}
	load_ok("[server]\npublic_url = http://10.0.0.1:8080/dlr/\n", &cfg);
	assert_string_equal(cfg.public_url, "http://10.0.0.1:8080/dlr");
	config_fini(&cfg);
	load_ok("[server]\npublic_url = https://sms.example.com\n", &cfg);
	assert_string_equal(cfg.public_url, "https://sms.example.com");
	config_fini(&cfg);
}

static void test_storage_url(void **state)
{
	static const struct {
		const char *url, *data_dir;
	} good[] = {
	    {"sqlite:var/dlrd.db", "var"},
	    {"sqlite:dlrd.db", "."},
	    {"sqlite:/dlrd.db", "/"},
	    {"sqlite:/var/lib/dlrd/dlrd.db", "/var/lib/dlrd"},
	    {"postgresql://dlrd:pw@db:5432/dlrd", "var"},
	    {"postgres://db/dlrd", "var"},
	    {"host=db dbname=dlrd", "var"},
	    {"dbname=dlrd", "var"},
	};
	static const char *const bad[] = {"sqlite:", "sqlite://x.db", "mysql://db/x", "var/dlrd.db",
	                                  "user=x"};
	const char *want = "config: storage.url: must be sqlite:PATH, postgresql://... or a libpq "
	                   "\"host=... dbname=...\" string (line 2)";
	char text[128];
	struct config cfg;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		util_fmt(text, sizeof(text), "[storage]\nurl = %s\n", good[i].url);
		load_ok(text, &cfg);
		assert_string_equal(cfg.storage_url, good[i].url);
		assert_string_equal(cfg.data_dir, good[i].data_dir);
		config_fini(&cfg);
	}
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		util_fmt(text, sizeof(text), "[storage]\nurl = %s\n", bad[i]);
		load_err(text, want);
	}
	/* An explicit data_dir wins over the derived one. */
	load_ok("[server]\ndata_dir = /keys\n[storage]\nurl = sqlite:/db/x.db\n", &cfg);
	assert_string_equal(cfg.data_dir, "/keys");
	config_fini(&cfg);
}

/* An error from the environment says so; no error ever carries a value. */
static void test_env_errors(void **state)
{
	struct config cfg;
	char err[256];

	(void)state;
	setenv("DLRD_SERVER_THREADS", "many", 1);
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), DLRD_ECONFIG);
	assert_string_equal(err, "config: server.threads: must be an integer in 0..256 (from "
	                         "DLRD_SERVER_THREADS)");
	unsetenv("DLRD_SERVER_THREADS");

	setenv("DLRD_PRIVACY_HASH_KEY", "hunter2-secret", 1);
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), DLRD_ECONFIG);
	assert_null(strstr(err, "hunter2"));
	assert_non_null(strstr(err, "privacy.hash_key"));
	assert_non_null(strstr(err, "(from DLRD_PRIVACY_HASH_KEY)"));
	unsetenv("DLRD_PRIVACY_HASH_KEY");

	setenv("DLRD_STORAGE_URL", "mysql://user:topsecret@db/x", 1);
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), DLRD_ECONFIG);
	assert_null(strstr(err, "topsecret"));

	/* A short error buffer is cut, never overrun. */
	char small[16];
	memset(small, 'Z', sizeof(small));
	assert_int_equal(config_load(NULL, &cfg, small, 10), DLRD_ECONFIG);
	assert_int_equal(strlen(small), 9);
	assert_int_equal(small[10], 'Z');
}

static void test_parse_uint(void **state)
{
	unsigned long v = 7;
	char err[128];

	(void)state;
	assert_int_equal(config_parse_uint("a", "b", "42", 1, 42, &v, err, sizeof(err)), 0);
	assert_int_equal(v, 42);
	assert_int_equal(config_parse_uint("a", "b", "0", 0, 1, &v, err, sizeof(err)), 0);
	assert_int_equal(v, 0);
	static const char *const bad[] = {
	    "43", "", " 1", "1 ", "+1", "-1", "0x10", "1e3", "99999999999999999999"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		v = 7;
		assert_int_equal(
		    config_parse_uint("twilio", "max_age_s", bad[i], 1, 42, &v, err, sizeof(err)),
		    DLRD_ECONFIG);
		assert_string_equal(err, "config: twilio.max_age_s: must be an integer in 1..42");
		assert_int_equal(v, 7);
	}
	assert_int_equal(config_parse_uint("a", "b", NULL, 0, 1, &v, err, sizeof(err)),
	                 DLRD_ECONFIG);
}

static void test_list(void **state)
{
	size_t n = 99;
	char **l;

	(void)state;
	l = config_list(" tok1 , tok2,,\ttok3\t, ", &n);
	assert_int_equal(n, 3);
	assert_string_equal(l[0], "tok1");
	assert_string_equal(l[1], "tok2");
	assert_string_equal(l[2], "tok3");
	assert_null(l[3]);
	config_list_free(l);

	l = config_list("single", &n);
	assert_int_equal(n, 1);
	assert_string_equal(l[0], "single");
	assert_null(l[1]);
	config_list_free(l);

	l = config_list("a b,c", &n); /* inner blanks stay */
	assert_int_equal(n, 2);
	assert_string_equal(l[0], "a b");
	config_list_free(l);

	static const char *const empty[] = {"", " ", ",", " , ,, "};
	for (size_t i = 0; i < ARRAY_LEN(empty); i++) {
		l = config_list(empty[i], &n);
		assert_int_equal(n, 0);
		assert_null(l[0]);
		config_list_free(l);
	}
	l = config_list(NULL, &n);
	assert_int_equal(n, 0);
	assert_null(l[0]);
	config_list_free(l);
	config_list_free(NULL);
}

/* "A value that does not parse stops start-up with a message naming the
 * key" (dlrd.conf.example) holds for a provider whose secrets are not set
 * yet: before the fix every provider but plivo returned "not configured"
 * before reading its other keys, so "[sinch] tolerance_seconds = soon" or
 * "[vonage] signature_method = sha3" started without a word, and the same
 * file stopped start-up only once the secret arrived (in production, from
 * the environment). */
static void test_provider_values_checked_without_secrets(void **state)
{
	static const struct {
		const char *section, *key, *value;
	} bad[] = {
	    {"vonage", "signature_method", "sha3"},
	    {"sns", "cert_hosts", "not a host"},
	    {"plivo", "accept_v2", "maybe"},
	};
	char text[256], want[96], err[256];
	size_t checked = 0;

	(void)state;
	for (size_t p = 0; provider_table[p]; p++) {
		const struct provider *pv = provider_table[p];
		for (const struct config_key *k = pv->keys; k && k->key; k++) {
			const char *value = NULL;
			if (strcmp(k->key, "tolerance_seconds") == 0)
				value = "soon";
			for (size_t i = 0; i < ARRAY_LEN(bad); i++)
				if (strcmp(bad[i].section, pv->name) == 0 &&
				    strcmp(bad[i].key, k->key) == 0)
					value = bad[i].value;
			if (!value)
				continue;
			struct config cfg;
			void *st = NULL;
			util_fmt(text, sizeof(text), "[%s]\n%s = %s\n", pv->name, k->key, value);
			load_ok(text, &cfg);
			err[0] = '\0';
			int rc = pv->init(&cfg, &st, err, sizeof(err));
			if (st)
				pv->fini(st);
			config_fini(&cfg);
			util_fmt(want, sizeof(want), "config: %s.%s: ", pv->name, k->key);
			if (rc != DLRD_ECONFIG || strncmp(err, want, strlen(want)) != 0)
				fail_msg("%s.%s = %s without secrets: rc %d, \"%s\"", pv->name,
				         k->key, value, rc, err);
			checked++;
		}
	}
	assert_true(checked == 10); /* seven tolerances and the three above */
}

/* ---- the documented keys ---- */

struct doc_key {
	char section[32];
	char key[48];
};

struct doc_keys {
	struct doc_key k[128];
	size_t n;
};

static void doc_add(struct doc_keys *d, const char *sec, size_t sl, const char *key, size_t kl)
{
	assert_true(d->n < ARRAY_LEN(d->k));
	assert_true(sl < sizeof(d->k[0].section) && kl < sizeof(d->k[0].key));
	memcpy(d->k[d->n].section, sec, sl);
	d->k[d->n].section[sl] = '\0';
	memcpy(d->k[d->n].key, key, kl);
	d->k[d->n].key[kl] = '\0';
	d->n++;
}

static bool doc_has(const struct doc_keys *d, const char *sec, const char *key)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->k[i].section, sec) == 0 && strcmp(d->k[i].key, key) == 0)
			return true;
	return false;
}

static size_t name_len(const char *p, const char *extra)
{
	size_t n = 0;
	while ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= '0' && p[n] <= '9') || p[n] == '_' ||
	       (p[n] && strchr(extra, p[n])))
		n++;
	return n;
}

/* The repository file rel (relative to the root), NUL-terminated, or NULL
 * when this test does not run from the source tree. */
static char *repo_file(const char *rel)
{
	const char *suffix = "tests/unit/test_config.c", *file = __FILE__;
	size_t n = strlen(file), sn = strlen(suffix);
	char path[1024];
	FILE *f;
	char *buf;
	size_t len;

	if (n < sn || strcmp(file + n - sn, suffix) != 0)
		return NULL;
	util_fmt(path, sizeof(path), "%.*s%s", (int)(n - sn), file, rel);
	if (!(f = fopen(path, "rb")))
		return NULL;
	buf = xmalloc(1u << 20);
	len = fread(buf, 1, (1u << 20) - 1, f);
	fclose(f);
	buf[len] = '\0';
	return buf;
}

/* Whether config_load() knows section.key (an empty value is "unset", an
 * unknown key an error). */
static bool key_known(const char *section, const char *key)
{
	struct config cfg;
	char text[160], err[256];

	util_fmt(text, sizeof(text), "[%s]\n%s =\n", section, key);
	write_conf(text);
	if (config_load(conf_path, &cfg, err, sizeof(err)) != 0)
		return false;
	config_fini(&cfg);
	return true;
}

/* dlrd.conf.example says it holds "every setting dlrd reads", and the
 * README's settings table and provider table name the keys: every key they
 * name is one dlrd knows, every provider key and every core key with a
 * default is in both, and the README's core keys are all in the example.
 * Nothing checked this: a key added to a provider table (or to config.c
 * with a default) without a word in the docs went unnoticed. */
static void test_documented_keys(void **state)
{
	struct doc_keys ex = {.n = 0}, rd = {.n = 0};
	char *example = repo_file("dlrd.conf.example"), *readme = repo_file("README.md");
	char sec[32] = "";
	struct config cfg;
	char err[256];

	(void)state;
	if (!example || !readme) {
		free(example);
		free(readme);
		skip();
	}
	/* the example: "[section]" and "key = value" lines, commented out or not */
	for (char *line = example, *nl; *line; line = nl + 1) {
		char *p = line;
		nl = strchr(line, '\n');
		if (!nl)
			nl = line + strlen(line);
		if (*p == ';')
			p++;
		if (*p == '[') {
			size_t n = name_len(p + 1, "-");
			if (p[1 + n] == ']' && n < sizeof(sec)) {
				memcpy(sec, p + 1, n);
				sec[n] = '\0';
			}
		} else if (sec[0]) {
			size_t n = name_len(p, "");
			if (n && (strncmp(p + n, " =", 2) == 0 || p[n] == '='))
				doc_add(&ex, sec, strlen(sec), p, n);
		}
		if (!*nl)
			break;
	}
	/* the README: "| `section.key` |" rows, and the provider table's
	 * "| `name` | `key`, `key` (...) |" rows */
	for (char *line = readme, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!nl)
			nl = line + strlen(line);
		if (strncmp(line, "| `", 3) == 0) {
			char *name = line + 3;
			size_t n = name_len(name, "-.");
			char *dot = memchr(name, '.', n);
			if (name[n] == '`' && dot) {
				doc_add(&rd, name, (size_t)(dot - name), dot + 1,
				        n - (size_t)(dot - name) - 1);
			} else if (name[n] == '`' && provider_find(name, n)) {
				char *col = strstr(name + n, " | "), *end;
				end = col ? strstr(col + 3, " |") : NULL;
				for (char *q = col;
				     q && q < end && (q = strchr(q, '`')) && q < end;) {
					size_t kl = name_len(q + 1, "");
					if (kl && q[1 + kl] == '`')
						doc_add(&rd, name, n, q + 1, kl);
					q = strchr(q + 1, '`');
					q = q ? q + 1 : NULL;
				}
			}
		}
		if (!*nl)
			break;
	}
	assert_true(ex.n >= 30);
	for (size_t i = 0; i < ex.n; i++)
		if (!key_known(ex.k[i].section, ex.k[i].key))
			fail_msg("dlrd.conf.example names %s.%s, which dlrd does not know",
			         ex.k[i].section, ex.k[i].key);
	for (size_t i = 0; i < rd.n; i++) {
		if (!key_known(rd.k[i].section, rd.k[i].key))
			fail_msg("README.md names %s.%s, which dlrd does not know", rd.k[i].section,
			         rd.k[i].key);
		if (!doc_has(&ex, rd.k[i].section, rd.k[i].key))
			fail_msg("README.md names %s.%s, dlrd.conf.example does not",
			         rd.k[i].section, rd.k[i].key);
	}
	for (size_t p = 0; provider_table[p]; p++)
		for (const struct config_key *k = provider_table[p]->keys; k && k->key; k++)
			if (!doc_has(&ex, provider_table[p]->name, k->key) ||
			    !doc_has(&rd, provider_table[p]->name, k->key))
				fail_msg("%s.%s is missing from %s", provider_table[p]->name,
				         k->key,
				         doc_has(&ex, provider_table[p]->name, k->key)
				             ? "README.md"
				             : "dlrd.conf.example");
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_true(cfg.n_entries >= 10);
	for (size_t i = 0; i < cfg.n_entries; i++)
		if (!doc_has(&ex, cfg.entries[i].section, cfg.entries[i].key) ||
		    !doc_has(&rd, cfg.entries[i].section, cfg.entries[i].key))
			fail_msg("%s.%s (default %s) is missing from the docs",
			         cfg.entries[i].section, cfg.entries[i].key, cfg.entries[i].value);
	config_fini(&cfg);
	free(example);
	free(readme);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_queue_follows_connections, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inline_comments, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_means_unset, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_env_wins, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_env_dash, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_example_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_listen, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_public_url, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_storage_url, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_env_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_provider_values_checked_without_secrets, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_documented_keys, setup, teardown),
	    cmocka_unit_test(test_parse_uint),
	    cmocka_unit_test(test_list),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
