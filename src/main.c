/* SPDX-License-Identifier: MIT */
/*
 * dlrd's entry point: the command line, start-up in dependency order
 * (config, keys, providers, storage, commit queue, HTTP) and the orderly
 * shutdown on SIGTERM/SIGINT (stop accepting, commit and answer everything
 * queued, close the database, exit 0); and `dlrd token new`, which makes an
 * API token and the config entry that holds only its hash.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth.h"
#include "commitq.h"
#include "config.h"
#include "crypto.h"
#include "http.h"
#include "keyfile.h"
#include "log.h"
#include "metrics.h"
#include "pii.h"
#include "privacy.h"
#include "provider.h"
#include "store.h"

#define HASH_KEY_BYTES   32
#define DRAIN_TIMEOUT_MS 5000

static void usage(FILE *f)
{
	fputs("usage: dlrd serve [--config FILE]   run the server\n"
	      "       dlrd token new --role ROLE   make an API token (ROLE: app, viewer,\n"
	      "                                    support or admin) and its config entry\n"
	      "       dlrd version                 print the version\n"
	      "       dlrd --help                  this text\n"
	      "\n"
	      "Settings come from the INI file and from environment variables\n"
	      "DLRD_<SECTION>_<KEY> (for example DLRD_STORAGE_URL), which win.\n"
	      "See dlrd.conf.example.\n",
	      f);
}

/* The key ring for personal data at rest (pii.h), API or not: every
 * callback's raw payload is stored sealed under it.  From
 * privacy.encryption_keys, else from the key file in the data directory,
 * created once.  Several nodes on one database must share the keys: set
 * privacy.encryption_keys to the same value on every node. */
static int load_keyring(const struct config *cfg, struct pii_keyring **kr, char *err, size_t errlen)
{
	const char *keys = config_get(cfg, "privacy", "encryption_keys");
	int created = 0, rc;

	if (keys)
		return pii_keyring_parse(keys, kr, err, errlen);
	rc = pii_keyring_load_file(cfg->data_dir, kr, &created, err, errlen);
	if (rc == 0 && created) {
		char path[4096], q[1024];
		size_t n = util_fmt(path, sizeof(path), "%s/%s", cfg->data_dir, PII_KEY_FILE);
		LOG_I("encryption_keys_created",
		      "path=%s note=\"privacy.encryption_keys unset; created once, mode"
		      " 0600; back it up: stored payloads and phone numbers cannot be read"
		      " without it\"",
		      log_quote(q, sizeof(q), path, n));
	}
	return rc;
}

static int serve(const char *config_path)
{
	struct config cfg;
	char err[512], lq[1024]; /* lq: a quoted log value (a path, an error) */
	uint8_t hash_key[HASH_KEY_BYTES];
	const uint8_t *hk;
	size_t hk_len;
	void **states = NULL;
	struct store *st = NULL;
	struct commitq *q = NULL;
	struct http *h = NULL;
	struct pii_keyring *kr = NULL;
	sigset_t sigs;
	int sig, rc = 1;

	memset(&cfg, 0, sizeof(cfg));
	if (config_load(config_path, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "dlrd: %s\n", err);
		return 2;
	}
	log_set_level(cfg.log_level);
	LOG_I("starting", "version=%s config=%s", DLRD_VERSION,
	      config_path ? log_quote(lq, sizeof(lq), config_path, strlen(config_path)) : "(none)");

	/* Every setting is checked before anything is written: a refused
	 * start leaves no key file and no migrated database behind. */
	states = xcalloc(provider_count() + 1, sizeof(*states));
	for (size_t i = 0; provider_table[i]; i++) {
		if (provider_table[i]->init(&cfg, &states[i], err, sizeof(err)) != 0) {
			config_err_where(&cfg, err, sizeof(err));
			fprintf(stderr, "dlrd: %s\n", err);
			rc = 2;
			goto out;
		}
		if (states[i])
			LOG_I("provider_enabled", "provider=%s", provider_table[i]->name);
	}
	if (api_check_config(&cfg, err, sizeof(err)) != 0) {
		config_err_where(&cfg, err, sizeof(err));
		LOG_E("startup_failed", "error=%s", log_quote(lq, sizeof(lq), err, strlen(err)));
		fprintf(stderr, "dlrd: %s\n", err);
		rc = 2;
		goto out;
	}
	if (load_keyring(&cfg, &kr, err, sizeof(err)) != 0) {
		config_err_where(&cfg, err, sizeof(err));
		LOG_E("startup_failed", "error=%s", log_quote(lq, sizeof(lq), err, strlen(err)));
		fprintf(stderr, "dlrd: %s\n", err);
		rc = 2;
		goto out;
	}

	if (cfg.hash_key) {
		hk = (const uint8_t *)cfg.hash_key;
		hk_len = strlen(cfg.hash_key);
	} else {
		int created = 0;
		if (keyfile_load(cfg.data_dir, "hash.key", hash_key, sizeof(hash_key), &created,
		                 err, sizeof(err)) != 0) {
			LOG_E("startup_failed", "error=%s",
			      log_quote(lq, sizeof(lq), err, strlen(err)));
			fprintf(stderr, "dlrd: %s\n", err);
			rc = 2;
			goto out;
		}
		if (created) {
			char path[4096];
			size_t n = util_fmt(path, sizeof(path), "%s/hash.key", cfg.data_dir);
			LOG_I("hash_key_created",
			      "path=%s note=\"privacy.hash_key unset; "
			      "created once, mode 0600\"",
			      log_quote(lq, sizeof(lq), path, n));
		}
		hk = hash_key;
		hk_len = sizeof(hash_key);
	}
	privacy_set_hash_key(hk, hk_len);

	metrics_init(provider_count());

	/* Signals are taken by sigwait() below; every thread started from here
	 * on inherits the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (store_open(&cfg, &st, err, sizeof(err)) != 0) {
		config_err_where(&cfg, err, sizeof(err));
		LOG_E("startup_failed", "error=%s", log_quote(lq, sizeof(lq), err, strlen(err)));
		fprintf(stderr, "dlrd: %s\n", err);
		goto out;
	}
	/* Several nodes on one database must hash and seal alike; a key file
	 * is this node's own (docs/deployment.md).  One node on PostgreSQL is
	 * fine, so this warns rather than refuses. */
	if (strcmp(store_backend(st), "postgresql") == 0 &&
	    (!cfg.hash_key || !config_get(&cfg, "privacy", "encryption_keys")))
		LOG_W("node_key_files",
		      "hash_key=%s encryption_keys=%s note=\"a shared database: every node"
		      " needs the same privacy.hash_key and privacy.encryption_keys; this node"
		      " uses its own key files, so a callback retried to another node may be"
		      " stored twice and its payload sealed under a key the others lack\"",
		      cfg.hash_key ? "config" : "file",
		      config_get(&cfg, "privacy", "encryption_keys") ? "config" : "file");
	if (cfg.queue_capacity >= cfg.max_connections)
		LOG_W("queue_above_connections",
		      "queue_capacity=%u max_connections=%u note=\"with storage stalled the"
		      " connections run out before the queue is full: new connections are"
		      " closed unanswered instead of getting 503\"",
		      cfg.queue_capacity, cfg.max_connections);
	if (commitq_new(st, cfg.queue_capacity, cfg.max_batch, cfg.max_batch_events, &q) != 0) {
		LOG_E("startup_failed", "error=\"cannot start the writer thread\"");
		goto out;
	}
	if (http_start(&cfg, q, states, kr, &h, err, sizeof(err)) != 0) {
		config_err_where(&cfg, err, sizeof(err));
		LOG_E("startup_failed", "error=%s", log_quote(lq, sizeof(lq), err, strlen(err)));
		fprintf(stderr, "dlrd: %s\n", err);
		goto out;
	}

	/* SIGHUP (a closed terminal, a reload command) stops nothing: dlrd
	 * has nothing to reload, and a restart drains. */
	for (;;) {
		if (sigwait(&sigs, &sig) != 0) {
			sig = SIGTERM;
			break;
		}
		if (sig != SIGHUP)
			break;
		LOG_I("signal_ignored", "signal=SIGHUP note=\"dlrd reloads nothing; restart it"
		                        " (SIGTERM drains) to apply a new configuration\"");
	}
	LOG_I("stopping", "signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
	http_quiesce(h);
	commitq_stop(q); /* commits and answers everything queued */
	rc = 0;
out:
	http_stop(h, DRAIN_TIMEOUT_MS);
	commitq_free(q);
	store_close(st);
	if (states)
		for (size_t i = 0; provider_table[i]; i++)
			if (states[i])
				provider_table[i]->fini(states[i]);
	free(states);
	pii_keyring_free(kr);
	if (rc == 0)
		LOG_I("stopped", "clean=true");
	config_fini(&cfg);
	return rc;
}

/* `dlrd token new --role ROLE`: a fresh token on stdout, with the [api]
 * tokens entry that holds its hash.  dlrd never stores the token itself. */
static int token_cmd(int argc, char **argv)
{
	char token[AUTH_NEW_TOKEN_LEN + 1], entry[128];
	enum auth_role role = AUTH_NONE;

	if (argc < 3 || strcmp(argv[2], "new") != 0) {
		fprintf(stderr, "dlrd: usage: dlrd token new --role app|viewer|support|admin\n");
		return 2;
	}
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--role") && i + 1 < argc &&
		    auth_role_parse(argv[i + 1], strlen(argv[i + 1]), &role) == 0) {
			i++;
		} else {
			fprintf(stderr,
			        "dlrd: usage: dlrd token new --role app|viewer|support|admin\n");
			return 2;
		}
	}
	if (role == AUTH_NONE) {
		fprintf(stderr, "dlrd: --role is required (app, viewer, support or admin)\n");
		return 2;
	}
	auth_token_new(token);
	auth_token_entry(role, token, entry, sizeof(entry));
	printf("token:  %s\n", token);
	printf("config: %s\n", entry);
	fputs("Give the token to its user; it is shown only now.  Add the config entry to\n"
	      "[api] tokens in dlrd.conf (entries are comma-separated) or to\n"
	      "DLRD_API_TOKENS, then restart dlrd.\n",
	      stderr);
	explicit_bzero(token, sizeof(token));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "token"))
		return token_cmd(argc, argv);
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("dlrd %s\n", DLRD_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "serve")) {
		const char *config = NULL;
		for (int i = 2; i < argc; i++) {
			if (!strcmp(argv[i], "--config") && i + 1 < argc) {
				config = argv[++i];
			} else {
				fprintf(stderr, "dlrd: unknown argument '%s'\n", argv[i]);
				usage(stderr);
				return 2;
			}
		}
		return serve(config);
	}
	fprintf(stderr, "dlrd: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
