/* SPDX-License-Identifier: MIT */
/*
 * The integration harness (see harness.h): process control for the real
 * dlrd binary, HTTP over libcurl, raw sockets, read-only database queries
 * (SQLite, or PostgreSQL when DLRD_TEST_BACKEND=postgresql) and log capture.
 * Nothing here is shared between instances: every struct dlrd carries its
 * own folder, port, settings and, under PostgreSQL, database.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../pgtest.h"
#include "arena.h"
#include "form.h"
#include "pii.h"
#include "sig.h"
#include "util.h"

#ifndef DLRD_BINARY
#error "DLRD_BINARY must name the dlrd executable (tests/CMakeLists.txt sets it)"
#endif

#define START_TIMEOUT_MS 10000
#define HTTP_TIMEOUT_MS  10000
#define FORM_FIELDS_MAX  256
#define ACCOUNT_SID      "AC0123456789abcdef0123456789abcdef"
/* pg_type.oid of boolean and of bytea (PostgreSQL's catalog/pg_type_d.h) */
#define BOOL_OID  16
#define BYTEA_OID 17

extern char **environ;

/* ---- the backend ---- */

bool h_pg(void)
{
	const char *b = getenv("DLRD_TEST_BACKEND");
	return b && strcmp(b, "postgresql") == 0;
}

/* Runs before main(): under PostgreSQL without a server the whole binary is
 * a skip (77; 1 under CI, see pgt_not_configured), and a backend name the
 * harness does not know is an error, not a silent SQLite run. */
__attribute__((constructor)) static void check_backend(void)
{
	const char *b = getenv("DLRD_TEST_BACKEND");

	if (b && *b && strcmp(b, "sqlite") != 0 && strcmp(b, "postgresql") != 0) {
		fprintf(stderr, "%s: DLRD_TEST_BACKEND=%s: expected sqlite or postgresql\n",
		        program_invocation_short_name, b);
		exit(2);
	}
	if (h_pg() && !pgt_server()) {
		int rc = pgt_not_configured(program_invocation_short_name);
		fflush(stdout);
		exit(rc);
	}
}

int64_t h_now_ms(void)
{
	return util_mono_ms();
}

void h_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- process control ---- */

/* A port the kernel just handed out for 127.0.0.1, closed again. */
static uint16_t pick_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	uint16_t port = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return 0;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static void set_port(struct dlrd *d, uint16_t port)
{
	d->port = port;
	util_fmt(d->base_url, sizeof(d->base_url), "http://127.0.0.1:%u", (unsigned)port);
}

void h_set_env(struct dlrd *d, const char *kv)
{
	const char *eq = strchr(kv, '=');
	size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);

	for (size_t i = 0; i < d->n_env; i++) {
		if (strncmp(d->env[i], kv, klen) == 0 &&
		    (d->env[i][klen] == '=' || d->env[i][klen] == '\0')) {
			util_strlcpy(d->env[i], kv, sizeof(d->env[i]));
			return;
		}
	}
	if (d->n_env < H_MAX_ENV)
		util_strlcpy(d->env[d->n_env++], kv, sizeof(d->env[0]));
}

int h_setup(struct dlrd *d, const char *const *env)
{
	char tmpl[] = "/tmp/dlrd-it-XXXXXX";

	memset(d, 0, sizeof(*d));
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -1;
	if (!mkdtemp(tmpl)) {
		curl_global_cleanup();
		return -1;
	}
	d->owns_dir = true;
	util_strlcpy(d->dir, tmpl, sizeof(d->dir));
	util_fmt(d->db_path, sizeof(d->db_path), "%s/dlrd.db", d->dir);
	util_fmt(d->log_path, sizeof(d->log_path), "%s/dlrd.log", d->dir);
	util_fmt(d->fault_path, sizeof(d->fault_path), "%s/fault", d->dir);
	if (h_pg() &&
	    pgt_create_db(d->pg_db, sizeof(d->pg_db), d->pg_url, sizeof(d->pg_url)) != 0) {
		h_teardown(d); /* drops what pgt_create_db may have made */
		return -1;
	}
	set_port(d, pick_port());
	for (size_t i = 0; env && env[i]; i++)
		h_set_env(d, env[i]);
	return d->port ? 0 : -1;
}

int h_setup_shared(struct dlrd *out, const struct dlrd *d, const char *log_name,
                   const char *const *env)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -1;
	*out = *d;
	out->pid = 0;
	out->owns_dir = false;
	out->started = false;
	util_fmt(out->log_path, sizeof(out->log_path), "%s/%s", d->dir, log_name);
	set_port(out, pick_port());
	for (size_t i = 0; env && env[i]; i++)
		h_set_env(out, env[i]);
	return out->port ? 0 : -1;
}

/* Appends "name=value" to env (n entries so far), replacing an entry for the
 * same name. */
static size_t env_del(char **env, size_t n, const char *name)
{
	size_t nl = strlen(name);
	for (size_t i = 0; i < n; i++) {
		if (strncmp(env[i], name, nl) == 0 && env[i][nl] == '=') {
			free(env[i]);
			env[i] = env[--n];
			env[n] = NULL;
			return n;
		}
	}
	return n;
}

static size_t env_put(char **env, size_t n, const char *name, const char *value)
{
	size_t nl = strlen(name), len = nl + 1 + strlen(value) + 1;
	char *kv = malloc(len);
	size_t i;

	if (!kv)
		return n;
	util_fmt(kv, len, "%s=%s", name, value);
	for (i = 0; i < n; i++) {
		if (strncmp(env[i], name, nl) == 0 && env[i][nl] == '=') {
			free(env[i]);
			env[i] = kv;
			return n;
		}
	}
	env[n] = kv;
	return n + 1;
}

/* The environment dlrd runs with: the caller's, minus every DLRD_* variable,
 * plus the harness defaults, plus d's settings.  Built before fork() so the
 * child allocates nothing (a test may have threads).  NULL-terminated heap
 * array of heap strings; free with env_free(). */
static char **child_env_new(const struct dlrd *d)
{
	char buf[H_PATH_MAX + 16], name[H_PATH_MAX];
	size_t n = 0, cap = 16 + H_MAX_ENV;
	char **env;

	while (environ && environ[n])
		n++;
	cap += n;
	env = calloc(cap + 1, sizeof(*env));
	if (!env)
		return NULL;
	n = 0;
	for (size_t i = 0; environ && environ[i]; i++) {
		if (strncmp(environ[i], "DLRD_", 5) != 0) {
			env[n] = strdup(environ[i]);
			n += env[n] != NULL;
		}
	}
	util_fmt(buf, sizeof(buf), "127.0.0.1:%u", (unsigned)d->port);
	n = env_put(env, n, "DLRD_SERVER_LISTEN", buf);
	n = env_put(env, n, "DLRD_SERVER_PUBLIC_URL", H_PUBLIC_URL);
	if (d->pg_url[0])
		util_strlcpy(buf, d->pg_url, sizeof(buf));
	else
		util_fmt(buf, sizeof(buf), "sqlite:%s", d->db_path);
	n = env_put(env, n, "DLRD_STORAGE_URL", buf);
	n = env_put(env, n, "DLRD_SERVER_DATA_DIR", d->dir);
	n = env_put(env, n, "DLRD_TWILIO_AUTH_TOKENS", H_TOKEN1 "," H_TOKEN2);
	n = env_put(env, n, "DLRD_PRIVACY_HASH_KEY", H_HASH_KEY);
	n = env_put(env, n, "DLRD_PRIVACY_ENCRYPTION_KEYS", H_ENC_KEYS);
	n = env_put(env, n, "DLRD_SERVER_THREADS", "2");
	n = env_put(env, n, "DLRD_TEST_FAULT_FILE", d->fault_path);
	for (size_t i = 0; i < d->n_env; i++) {
		const char *eq = strchr(d->env[i], '=');
		if (!eq) { /* a bare name: leave it unset */
			n = env_del(env, n, d->env[i]);
			continue;
		}
		util_strlcpy(name, d->env[i], (size_t)(eq - d->env[i]) + 1);
		n = env_put(env, n, name, eq + 1);
	}
	env[n] = NULL;
	return env;
}

static void env_free(char **env)
{
	for (size_t i = 0; env && env[i]; i++)
		free(env[i]);
	free(env);
}

int h_spawn(struct dlrd *d)
{
	char *argv[] = {"dlrd", "serve", NULL, NULL, NULL};
	pid_t parent = getpid();
	char **env = child_env_new(d);
	struct stat sb;
	int log_fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	pid_t pid = -1;

	if (d->config_path[0]) {
		argv[2] = "--config";
		argv[3] = d->config_path;
	}
	d->log_off = log_fd >= 0 && fstat(log_fd, &sb) == 0 ? (size_t)sb.st_size : 0;
	if (env && log_fd >= 0)
		pid = fork();
	if (pid == 0) {
		/* only async-signal-safe calls from here on */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(log_fd, STDOUT_FILENO);
		dup2(log_fd, STDERR_FILENO);
		execve(DLRD_BINARY, argv, env);
		_exit(127);
	}
	if (log_fd >= 0)
		close(log_fd);
	env_free(env);
	if (pid < 0)
		return -1;
	d->pid = pid;
	return 0;
}

/* dlrd died of a signal no test sends (SIGABRT from a library's panic,
 * SIGSEGV): what it said last is the only clue, so it goes to stderr. */
static void dump_log_tail(const struct dlrd *d, int sig)
{
	size_t n = 0;
	char *log = h_read_file(d->log_path, &n);
	size_t from = n > d->log_off ? d->log_off : n;

	if (n - from > 4096)
		from = n - 4096;
	fprintf(stderr, "harness: dlrd died of signal %d (%s); the end of its output:\n%.*s\n", sig,
	        strsignal(sig), (int)(n - from), log ? log + from : "");
	free(log);
}

int h_wait_exit(struct dlrd *d, int timeout_ms, int *status)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	if (!d->pid)
		return -1;
	for (;;) {
		int st = 0;
		pid_t r = waitpid(d->pid, &st, WNOHANG);
		if (r == d->pid || (r < 0 && errno == ECHILD)) {
			d->pid = 0;
			if (status)
				*status = r == -1 ? -1 : st;
			if (r > 0 && WIFSIGNALED(st) && WTERMSIG(st) != SIGKILL)
				dump_log_tail(d, WTERMSIG(st));
			return 0;
		}
		if (h_now_ms() >= deadline)
			return -1;
		h_sleep_ms(5);
	}
}

/* Whether the log has s since the last h_spawn. */
static bool log_since_spawn(const struct dlrd *d, const char *s)
{
	size_t n;
	char *log = h_read_file(d->log_path, &n);
	bool hit = log && n > d->log_off && memmem(log + d->log_off, n - d->log_off, s, strlen(s));
	free(log);
	return hit;
}

int h_wait_healthy(struct dlrd *d, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	struct h_resp *r = malloc(sizeof(*r));
	int rc = -1;

	while (r && d->pid) {
		int st;
		if (h_wait_exit(d, 0, &st) == 0)
			break;
		if (log_since_spawn(d, "event=listening") && h_get(d, "/healthz", r) == 200) {
			rc = 0;
			break;
		}
		if (h_now_ms() >= deadline)
			break;
		h_sleep_ms(20);
	}
	free(r);
	return rc;
}

int h_start(struct dlrd *d)
{
	for (int attempt = 0;; attempt++) {
		if (h_spawn(d) != 0)
			return -1;
		if (h_wait_healthy(d, START_TIMEOUT_MS) == 0) {
			d->started = true;
			return 0;
		}
		int st;
		if (d->pid)
			h_stop(d, SIGKILL, 2000, &st);
		if (d->started || attempt == 4 || !log_since_spawn(d, "cannot listen"))
			return -1;
		set_port(d, pick_port());
	}
}

int h_stop(struct dlrd *d, int sig, int timeout_ms, int *status)
{
	if (!d->pid)
		return -1;
	kill(d->pid, sig);
	if (h_wait_exit(d, timeout_ms, status) == 0)
		return 0;
	kill(d->pid, SIGKILL);
	waitpid(d->pid, NULL, 0);
	d->pid = 0;
	return -1;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void h_teardown(struct dlrd *d)
{
	if (!d)
		return;
	if (d->pid) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
	}
	if (d->owns_dir && d->pg_db[0])
		pgt_drop_db(d->pg_db); /* keeps it under DLRD_TEST_KEEP */
	if (d->owns_dir && d->dir[0] && !getenv("DLRD_TEST_KEEP"))
		nftw(d->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	d->dir[0] = '\0';
	d->pg_db[0] = '\0';
	curl_global_cleanup();
}

int h_fixture_start(void **state, const char *const *env)
{
	struct dlrd *d = calloc(1, sizeof(*d));

	*state = NULL;
	if (!d)
		return -1;
	if (h_setup(d, env) != 0 || h_start(d) != 0) {
		char *log = h_read_file(d->log_path, NULL);
		fprintf(stderr, "harness: dlrd did not start; its output:\n%s\n", log ? log : "");
		free(log);
		h_teardown(d);
		free(d);
		return -1;
	}
	*state = d;
	return 0;
}

int h_fixture_stop(void **state)
{
	h_teardown(*state);
	free(*state);
	*state = NULL;
	return 0;
}

/* ---- HTTP ---- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct h_resp *r = arg;
	size_t len = size * n;
	if (r->body_len < sizeof(r->body) - 1) {
		size_t room = sizeof(r->body) - 1 - r->body_len;
		memcpy(r->body + r->body_len, p, len < room ? len : room);
	}
	r->body_len += len;
	r->body[r->body_len < sizeof(r->body) ? r->body_len : sizeof(r->body) - 1] = '\0';
	return len;
}

/* Keeps the value of a header line if it is one the tests look at. */
static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct h_resp *r = arg;
	size_t len = size * n;
	static const struct {
		const char *name;
		size_t off;
		size_t cap;
	} keep[] = {
	    {"retry-after", offsetof(struct h_resp, retry_after), sizeof(r->retry_after)},
	    {"allow", offsetof(struct h_resp, allow), sizeof(r->allow)},
	    {"connection", offsetof(struct h_resp, connection), sizeof(r->connection)},
	    {"content-type", offsetof(struct h_resp, content_type), sizeof(r->content_type)},
	    {"location", offsetof(struct h_resp, location), sizeof(r->location)},
	    {"idempotent-replayed", offsetof(struct h_resp, replayed), sizeof(r->replayed)},
	};
	const char *colon = memchr(p, ':', len);

	if (!colon)
		return len;
	for (size_t i = 0; i < ARRAY_LEN(keep); i++) {
		size_t nl = strlen(keep[i].name);
		if ((size_t)(colon - p) != nl || strncasecmp(p, keep[i].name, nl) != 0)
			continue;
		const char *v = colon + 1, *end = p + len;
		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
			end--;
		size_t vl = (size_t)(end - v);
		char *dst = (char *)r + keep[i].off;
		if (vl >= keep[i].cap)
			vl = keep[i].cap - 1;
		memcpy(dst, v, vl);
		dst[vl] = '\0';
	}
	return len;
}

int h_request(const struct dlrd *d, const char *method, const char *target,
              const char *const *headers, const char *body, size_t body_len, struct h_resp *out)
{
	char url[H_PATH_MAX + 9000];
	struct curl_slist *hl = NULL;
	CURL *c = curl_easy_init();
	int64_t t0 = h_now_ms();
	CURLcode cc;

	memset(out, 0, sizeof(*out));
	if (!c) {
		out->curl_code = CURLE_FAILED_INIT;
		return -1;
	}
	util_fmt(url, sizeof(url), "%s%s", d->base_url, target);
	hl = curl_slist_append(hl, "Expect:");
	for (size_t i = 0; headers && headers[i]; i++)
		hl = curl_slist_append(hl, headers[i]);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)HTTP_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "GET") != 0 || body) {
		if (strcmp(method, "POST") != 0)
			curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
		if (body || strcmp(method, "POST") == 0) {
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
		}
	}
	cc = curl_easy_perform(c);
	out->curl_code = (int)cc;
	if (cc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	out->elapsed_ms = h_now_ms() - t0;
	curl_easy_cleanup(c);
	curl_slist_free_all(hl);
	return cc == CURLE_OK ? 0 : -1;
}

long h_get(const struct dlrd *d, const char *target, struct h_resp *out)
{
	h_request(d, "GET", target, NULL, NULL, 0, out);
	return out->status;
}

int64_t h_metric(const struct dlrd *d, const char *sample)
{
	struct h_resp *r = malloc(sizeof(*r));
	size_t sl = strlen(sample);
	int64_t v = -1;

	if (!r)
		return -1;
	if (h_get(d, "/metrics", r) == 200 && r->body_len < sizeof(r->body)) {
		const char *p = r->body;
		while (p && *p) {
			if (strncmp(p, sample, sl) == 0 && p[sl] == ' ') {
				uint64_t u;
				const char *e = strchr(p + sl + 1, '\n');
				size_t n = e ? (size_t)(e - (p + sl + 1)) : strlen(p + sl + 1);
				if (util_parse_u64(p + sl + 1, n, &u) == 0)
					v = (int64_t)u;
				break;
			}
			p = strchr(p, '\n');
			if (p)
				p++;
		}
	}
	free(r);
	return v;
}

int h_twilio_sign(const char *token, const char *url, const char *body, size_t body_len,
                  char sig[29])
{
	char buf[4096], err[128];
	struct arena a;
	struct form f;
	int rc;

	arena_init(&a, buf, sizeof(buf));
	rc = form_decode(&a, body, body_len, FORM_FIELDS_MAX, &f, err, sizeof(err));
	if (rc == 0)
		sig_twilio_sign(token, (struct iov){url, strlen(url)}, &f, sig);
	arena_fini(&a);
	return rc == 0 ? 0 : -1;
}

long h_post_twilio(const struct dlrd *d, const char *target, const char *token, const char *body,
                   const char *const *extra, struct h_resp *out)
{
	char url[H_PATH_MAX + 9000], sig[29], sig_hdr[64];
	const char *headers[H_MAX_ENV + 3];
	size_t n = 0;

	bool own_ctype = false;
	for (size_t i = 0; extra && extra[i]; i++)
		own_ctype = own_ctype || strncasecmp(extra[i], "Content-Type", 12) == 0;
	if (!own_ctype)
		headers[n++] = "Content-Type: application/x-www-form-urlencoded";
	if (token) {
		util_fmt(url, sizeof(url), "%s%s", H_PUBLIC_URL, target);
		if (h_twilio_sign(token, url, body, strlen(body), sig) != 0)
			util_strlcpy(sig, "unsignable", sizeof(sig));
		util_fmt(sig_hdr, sizeof(sig_hdr), "X-Twilio-Signature: %s", sig);
		headers[n++] = sig_hdr;
	}
	for (size_t i = 0; extra && extra[i] && n < ARRAY_LEN(headers) - 1; i++)
		headers[n++] = extra[i];
	headers[n] = NULL;
	h_request(d, "POST", target, headers, body, strlen(body), out);
	return out->status;
}

long h_post_status(const struct dlrd *d, const char *body, struct h_resp *out)
{
	return h_post_twilio(d, H_STATUS_PATH, H_TOKEN1, body, NULL, out);
}

size_t h_twilio_body(char *buf, size_t cap, const char *sid, const char *status,
                     const char *error_code)
{
	char ec[64] = "", dlr[40] = "";
	size_t n;

	if (error_code)
		util_fmt(ec, sizeof(ec), "&ErrorCode=%s", error_code);
	/* Twilio adds the carrier's done date to final carrier receipts. */
	if (strcmp(status, "delivered") == 0 || strcmp(status, "undelivered") == 0)
		util_strlcpy(dlr, "&RawDlrDoneDate=2402141537", sizeof(dlr));
	n = util_fmt(
	    buf, cap,
	    "MessageSid=%s&SmsSid=%s&AccountSid=" ACCOUNT_SID
	    "&From=%%2B%s&To=%%2B%s&MessageStatus=%s&SmsStatus=%s%s&ApiVersion=2010-04-01%s",
	    sid, sid, H_FROM + 1, H_TO + 1, status, status, ec, dlr);
	return n + 1 < cap ? n : 0;
}

void h_sid(char out[35], unsigned tag, unsigned n)
{
	util_fmt(out, 35, "SM%08x%024x", tag, n);
}

struct h_async {
	pthread_t thread;
	const struct dlrd *d;
	char *body;
	struct h_resp resp;
};

static void *async_main(void *arg)
{
	struct h_async *a = arg;
	h_post_status(a->d, a->body, &a->resp);
	return NULL;
}

struct h_async *h_async_post_status(const struct dlrd *d, const char *body)
{
	struct h_async *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->d = d;
	a->body = strdup(body);
	if (!a->body || pthread_create(&a->thread, NULL, async_main, a) != 0) {
		free(a->body);
		free(a);
		return NULL;
	}
	return a;
}

long h_async_wait(struct h_async *a, struct h_resp *out)
{
	long status;

	if (!a)
		return 0;
	pthread_join(a->thread, NULL);
	status = a->resp.status;
	if (out)
		*out = a->resp;
	free(a->body);
	free(a);
	return status;
}

/* Per-transfer state of h_post_concurrent. */
struct multi_slot {
	struct h_multi *out;
	struct curl_slist *headers;
	char sig_hdr[64];
};

static size_t discard_body(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

static size_t multi_header(char *p, size_t size, size_t n, void *arg)
{
	struct h_multi *m = arg;
	size_t len = size * n;
	static const char name[] = "retry-after:";

	if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
		const char *v = p + sizeof(name) - 1, *end = p + len;
		while (v < end && *v == ' ')
			v++;
		while (end > v && (end[-1] == '\r' || end[-1] == '\n'))
			end--;
		size_t vl = (size_t)(end - v);
		if (vl >= sizeof(m->retry_after))
			vl = sizeof(m->retry_after) - 1;
		memcpy(m->retry_after, v, vl);
		m->retry_after[vl] = '\0';
	}
	return len;
}

static CURL *multi_easy(const struct dlrd *d, const char *body, struct multi_slot *s,
                        const char *url)
{
	char sig[29];
	CURL *c = curl_easy_init();

	if (!c)
		return NULL;
	if (h_twilio_sign(H_TOKEN1, H_PUBLIC_URL H_STATUS_PATH, body, strlen(body), sig) != 0)
		util_strlcpy(sig, "unsignable", sizeof(sig));
	util_fmt(s->sig_hdr, sizeof(s->sig_hdr), "X-Twilio-Signature: %s", sig);
	s->headers = curl_slist_append(NULL, "Expect:");
	s->headers =
	    curl_slist_append(s->headers, "Content-Type: application/x-www-form-urlencoded");
	s->headers = curl_slist_append(s->headers, s->sig_hdr);
	(void)d;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)HTTP_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, s->headers);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, multi_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, s->out);
	curl_easy_setopt(c, CURLOPT_PRIVATE, (void *)s);
	curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
	return c;
}

int h_post_concurrent(const struct dlrd *d, const char *const *bodies, size_t n, size_t first_wave,
                      void (*tick)(void *arg, size_t done, size_t added), void *arg,
                      struct h_multi *out, int timeout_ms)
{
	char url[H_PATH_MAX];
	CURLM *m = curl_multi_init();
	CURL **easy = calloc(n, sizeof(*easy));
	struct multi_slot *slots = calloc(n, sizeof(*slots));
	int64_t deadline = h_now_ms() + timeout_ms;
	size_t added = 0, done = 0;
	int rc = -1;

	if (!m || !easy || !slots)
		goto out;
	util_fmt(url, sizeof(url), "%s%s", d->base_url, H_STATUS_PATH);
	curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
	for (size_t i = 0; i < n; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		slots[i].out = &out[i];
		easy[i] = multi_easy(d, bodies[i], &slots[i], url);
		if (!easy[i])
			goto out;
	}
	if (first_wave == 0 || first_wave > n)
		first_wave = n;
	for (; added < first_wave; added++)
		curl_multi_add_handle(m, easy[added]);
	while (done < n && h_now_ms() < deadline) {
		int running = 0, left = 0;
		CURLMsg *msg;

		curl_multi_perform(m, &running);
		while ((msg = curl_multi_info_read(m, &left))) {
			struct multi_slot *s = NULL;
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
			s->out->curl_code = (int)msg->data.result;
			if (msg->data.result == CURLE_OK)
				curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE,
				                  &s->out->status);
			s->out->done = true;
			done++;
		}
		if (done > 0 && added < n) {
			for (; added < n; added++)
				curl_multi_add_handle(m, easy[added]);
			curl_multi_perform(m, &running);
		}
		if (tick)
			tick(arg, done, added);
		curl_multi_poll(m, NULL, 0, 20, NULL);
	}
	rc = done == n ? 0 : -1;
out:
	for (size_t i = 0; easy && i < n; i++) {
		if (!easy[i])
			continue;
		if (i < added)
			curl_multi_remove_handle(m, easy[i]);
		curl_easy_cleanup(easy[i]);
		curl_slist_free_all(slots[i].headers);
	}
	free(easy);
	free(slots);
	if (m)
		curl_multi_cleanup(m);
	return rc;
}

/* ---- raw sockets ---- */

int h_connect(uint16_t port)
{
	struct sockaddr_in sa;
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int h_send_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

size_t h_recv_all(int fd, char *buf, size_t cap, int timeout_ms, bool *closed)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	size_t got = 0;

	*closed = false;
	buf[0] = '\0';
	for (;;) {
		int64_t left = deadline - h_now_ms();
		struct pollfd pfd = {fd, POLLIN, 0};
		if (left <= 0)
			break;
		int pr = poll(&pfd, 1, (int)left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			break;
		char scratch[4096];
		char *dst = got + 1 < cap ? buf + got : scratch;
		size_t room = got + 1 < cap ? cap - 1 - got : sizeof(scratch);
		ssize_t r = recv(fd, dst, room, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			*closed = true;
			break;
		}
		if (dst != scratch) {
			got += (size_t)r;
			buf[got] = '\0';
		}
	}
	return got;
}

size_t h_raw(const struct dlrd *d, const char *req, size_t n, char *buf, size_t cap, int timeout_ms,
             bool *closed)
{
	int fd = h_connect(d->port);
	size_t got;

	*closed = false;
	if (fd < 0)
		return (size_t)-1;
	/* A failed send is not an error here: dlrd may answer and close
	 * before it has read everything. */
	h_send_all(fd, req, n);
	got = h_recv_all(fd, buf, cap, timeout_ms, closed);
	close(fd);
	return got;
}

/* The value of header name in the response head [p, end), or NULL. */
static const char *head_value(const char *p, const char *end, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);

	while (p < end) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (!eol)
			eol = end;
		if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*vlen = (size_t)(eol - v);
			return v;
		}
		p = eol + 2;
	}
	return NULL;
}

/* Parses HTTP/1.1 responses one after the other, as a client would: the
 * status line, the head, then a body framed by Content-Length or chunks.
 * Stops at the first thing that is not a response. */
size_t h_statuses(const char *buf, size_t n, int *codes, size_t max)
{
	const char *p = buf, *end = buf + n;
	size_t found = 0;

	while (found < max && end - p >= 12 && memcmp(p, "HTTP/1.", 7) == 0 && p[8] == ' ') {
		const char *head_end = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
		const char *v;
		size_t vlen;
		uint64_t cl = 0;
		int code = 0;

		for (int i = 9; i < 12; i++) {
			if (p[i] < '0' || p[i] > '9')
				return found;
			code = code * 10 + (p[i] - '0');
		}
		codes[found++] = code;
		if (!head_end)
			break;
		v = head_value(p, head_end, "Transfer-Encoding", &vlen);
		if (v && vlen == 7 && strncasecmp(v, "chunked", 7) == 0) {
			const char *c = head_end + 4;
			for (;;) {
				const char *eol = memmem(c, (size_t)(end - c), "\r\n", 2);
				size_t sz = 0, digits = 0;
				if (!eol)
					return found;
				for (const char *h = c; h < eol && digits < 8; h++, digits++) {
					int x = *h >= '0' && *h <= '9'   ? *h - '0'
					        : *h >= 'a' && *h <= 'f' ? *h - 'a' + 10
					        : *h >= 'A' && *h <= 'F' ? *h - 'A' + 10
					                                 : -1;
					if (x < 0)
						break;
					sz = sz * 16 + (size_t)x;
				}
				if (!digits || sz + 4 > (size_t)(end - eol))
					return found;
				c = eol + 2 + sz + 2;
				if (sz == 0)
					break;
			}
			p = c;
			continue;
		}
		v = head_value(p, head_end, "Content-Length", &vlen);
		if (v && util_parse_u64(v, vlen, &cl) != 0)
			break;
		if (cl > (uint64_t)(end - (head_end + 4)))
			break;
		p = head_end + 4 + cl;
	}
	return found;
}

unsigned h_count_status(const char *buf, size_t n, int code)
{
	int codes[64];
	size_t k = h_statuses(buf, n, codes, ARRAY_LEN(codes));
	unsigned c = 0;
	for (size_t i = 0; i < k; i++)
		c += codes[i] == code;
	return c;
}

size_t h_raw_status_post(char *buf, size_t cap, const char *body, bool close_conn)
{
	char sig[29];
	size_t n;

	if (h_twilio_sign(H_TOKEN1, H_PUBLIC_URL H_STATUS_PATH, body, strlen(body), sig) != 0)
		return 0;
	n = util_fmt(buf, cap,
	             "POST " H_STATUS_PATH " HTTP/1.1\r\n"
	             "Host: sms.example.com\r\n"
	             "Content-Type: application/x-www-form-urlencoded\r\n"
	             "X-Twilio-Signature: %s\r\n"
	             "Content-Length: %zu\r\n"
	             "%s"
	             "\r\n%s",
	             sig, strlen(body), close_conn ? "Connection: close\r\n" : "", body);
	return n + 1 < cap ? n : 0;
}

/* ---- the database ---- */

/*
 * Under PostgreSQL the tests' SQL, written for SQLite, runs against a
 * compatibility layer in schema "h", which comes first on the search path of
 * the harness's connections:
 *
 * - a view per table of "public", with the table's name and columns, where
 *   timestamptz columns read as the RFC 3339 text dlrd stores in SQLite
 *   (util_rfc3339: 2024-02-14T15:37:00.123Z), uuid columns as text, and text
 *   compares bytewise (COLLATE "C", as in SQLite; the test databases have a
 *   linguistic default collation, see pgt_create_db).  bytea reads as text,
 *   so that CAST(raw_payload AS TEXT) = '...' and raw_payload || '|' mean
 *   what they mean in SQLite: valid UTF-8 (every payload) as the text it
 *   is, anything else (ciphertext) one character per byte, U+0001 to
 *   U+00FF (NUL as U+0001), so that length() still counts its bytes and an
 *   ASCII run in it can still be found;
 * - instr() and group_concat() (one or two arguments, NULLs skipped), as in
 *   SQLite;
 * - boolean || text and text || boolean, which read a comparison as 1 or 0
 *   where PostgreSQL would write "true": in SQLite a comparison is an
 *   integer.
 *
 * It is built on the first query after the tables change (dlrd's
 * migrations), under an advisory lock, and remembers the columns it was
 * built for as the schema's comment, so every other query pays one catalog
 * look-up.  What it cannot cover the tests write portably: an alias for every
 * subquery in FROM, CAST(x AS TEXT) before an integer meets text in
 * coalesce(), "instr(...) > 0" where a condition is wanted (an integer is
 * not a boolean in PostgreSQL).
 */
static const char pg_compat_sql[] =
    "DO $compat$ DECLARE t record; cols text; stamp text; BEGIN"
    " PERFORM pg_advisory_xact_lock(7301417);"
    " SELECT md5(coalesce(string_agg(c.relname || '.' || a.attname || ':' || a.atttypid::text,"
    "  ',' ORDER BY c.relname, a.attnum), '')) INTO stamp"
    "  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
    "  WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')"
    "  AND a.attnum > 0 AND NOT a.attisdropped;"
    " IF obj_description(to_regnamespace('h'), 'pg_namespace') IS NOT DISTINCT FROM stamp THEN"
    "  RETURN;"
    " END IF;"
    " DROP SCHEMA IF EXISTS h CASCADE;"
    " CREATE SCHEMA h;"
    " CREATE FUNCTION h.blob_text(b bytea) RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT"
    "  AS 'BEGIN RETURN convert_from(b, ''UTF8'');"
    "  EXCEPTION WHEN character_not_in_repertoire THEN"
    "  RETURN (SELECT string_agg(chr(greatest(get_byte(b, i), 1)), '''' ORDER BY i)"
    "  FROM generate_series(0, length(b) - 1) AS i); END';"
    " FOR t IN SELECT c.oid, c.relname FROM pg_class c"
    "  WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') LOOP"
    "  SELECT string_agg(CASE"
    "   WHEN a.atttypid = 'timestamptz'::regtype THEN format('to_char(%1$I AT TIME ZONE ''UTC'',"
    " ''YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'') COLLATE \"C\" AS %1$I', a.attname)"
    "   WHEN a.atttypid = 'uuid'::regtype THEN format('%1$I::text COLLATE \"C\" AS %1$I',"
    " a.attname)"
    "   WHEN a.atttypid = 'text'::regtype THEN format('%1$I COLLATE \"C\" AS %1$I', a.attname)"
    "   WHEN a.atttypid = 'bytea'::regtype THEN format('h.blob_text(%1$I) COLLATE \"C\" AS %1$I',"
    " a.attname)"
    "   ELSE format('%I', a.attname) END, ', ' ORDER BY a.attnum) INTO cols"
    "   FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped;"
    "  EXECUTE format('CREATE VIEW h.%I AS SELECT %s FROM public.%I', t.relname, cols,"
    " t.relname);"
    " END LOOP;"
    " CREATE FUNCTION h.instr(text, text) RETURNS integer LANGUAGE sql IMMUTABLE"
    "  AS 'SELECT strpos($1, $2)';"
    " CREATE FUNCTION h.gc_step(text, text, text) RETURNS text LANGUAGE sql IMMUTABLE"
    "  AS 'SELECT CASE WHEN $2 IS NULL THEN $1 WHEN $1 IS NULL THEN $2 ELSE $1 || $3 || $2 END';"
    " CREATE FUNCTION h.gc_step(text, text) RETURNS text LANGUAGE sql IMMUTABLE"
    "  AS 'SELECT h.gc_step($1, $2, '','')';"
    " CREATE AGGREGATE h.group_concat(text, text) (SFUNC = h.gc_step, STYPE = text);"
    " CREATE AGGREGATE h.group_concat(text) (SFUNC = h.gc_step, STYPE = text);"
    " CREATE FUNCTION h.cat(boolean, text) RETURNS text LANGUAGE sql IMMUTABLE"
    "  AS 'SELECT $1::integer || $2';"
    " CREATE FUNCTION h.cat(text, boolean) RETURNS text LANGUAGE sql IMMUTABLE"
    "  AS 'SELECT $1 || $2::integer';"
    " CREATE OPERATOR h.|| (LEFTARG = boolean, RIGHTARG = text, FUNCTION = h.cat);"
    " CREATE OPERATOR h.|| (LEFTARG = text, RIGHTARG = boolean, FUNCTION = h.cat);"
    " EXECUTE format('COMMENT ON SCHEMA h IS %L', stamp);"
    " END $compat$;"
    " SET search_path = h, public;"
    " SET default_transaction_read_only = on";

/* The tables dlrd's writer writes (h_db_lock). */
#define PG_WRITE_TABLES                                                                            \
	"public.sms_messages, public.sms_message_events, public.sms_callback_log,"                 \
	" public.review_queue, public.sms_inbound_messages, public.sms_opt_outs,"                  \
	" public.sms_opt_out_history, public.sms_payloads"

/* Under SQLite: BEGIN IMMEDIATE, so dlrd's writer waits in its busy handler.
 * Under PostgreSQL: the write tables locked IN EXCLUSIVE MODE (reads go on),
 * so dlrd's writer waits for the lock in its first statement. */
void *h_db_lock(const struct dlrd *d)
{
	sqlite3 *db = NULL;

	if (h_pg()) {
		PGconn *c = pgt_connect(d->pg_url);
		if (c && pgt_exec(c, "SET lock_timeout = '5s'; BEGIN;"
		                     " LOCK TABLE " PG_WRITE_TABLES " IN EXCLUSIVE MODE") != 0) {
			PQfinish(c);
			c = NULL;
		}
		return c;
	}
	if (sqlite3_open_v2(d->db_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
	    sqlite3_busy_timeout(db, 5000) != SQLITE_OK ||
	    sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

void h_db_unlock(void *lock)
{
	if (!lock)
		return;
	if (h_pg()) {
		pgt_exec(lock, "ROLLBACK");
		PQfinish(lock);
		return;
	}
	sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(lock);
}

/* Runs the query (formatted by sqlite3_vmprintf, as under SQLite) on a new
 * connection to d's PostgreSQL database, on the compatibility layer.
 * Returns the result when it has a row (the caller PQclear()s it), else
 * NULL; either way the caller PQfinish()es *c (NULL allowed). */
static PGresult *pg_first_on(const struct dlrd *d, PGconn **c, bool compat, const char *fmt,
                             va_list ap);

static PGresult *pg_first(const struct dlrd *d, PGconn **c, const char *fmt, va_list ap)
{
	return pg_first_on(d, c, true, fmt, ap);
}

/* pg_first, on the compatibility layer or on dlrd's tables themselves. */
static PGresult *pg_first_on(const struct dlrd *d, PGconn **c, bool compat, const char *fmt,
                             va_list ap)
{
	char *sql = sqlite3_vmprintf(fmt, ap);
	PGresult *r = NULL;

	*c = NULL;
	if (!sql || !(*c = pgt_connect(d->pg_url)))
		goto out;
	r = PQexec(*c, compat ? pg_compat_sql : "SET default_transaction_read_only = on");
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "harness: the PostgreSQL compatibility layer: %s",
		        PQerrorMessage(*c));
		goto fail;
	}
	PQclear(r);
	r = PQexec(*c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fprintf(stderr, "harness: %s: %s", sql, PQerrorMessage(*c));
	else if (PQntuples(r) > 0)
		goto out;
fail:
	PQclear(r);
	r = NULL;
out:
	sqlite3_free(sql);
	return r;
}

/* h_sql_int under PostgreSQL: a boolean reads as 1 or 0 (as a SQLite
 * comparison does); anything else must be an integer. */
static int64_t pg_int(const struct dlrd *d, const char *fmt, va_list ap)
{
	PGconn *c;
	PGresult *r = pg_first(d, &c, fmt, ap);
	int64_t v = H_SQL_ERR;

	if (r && !PQgetisnull(r, 0, 0)) {
		const char *s = PQgetvalue(r, 0, 0);
		char *end;
		long long x;

		if (PQftype(r, 0) == BOOL_OID) {
			v = s[0] == 't';
		} else {
			errno = 0;
			x = strtoll(s, &end, 10);
			if (end != s && *end == '\0' && errno == 0)
				v = x;
			else
				fprintf(stderr, "harness: h_sql_int: \"%s\" is not an integer\n",
				        s);
		}
	}
	PQclear(r);
	PQfinish(c);
	return v;
}

/* sql_vtext under PostgreSQL: text as it is, bytea as its bytes. */
static long pg_vtext_on(const struct dlrd *d, bool compat, char *out, size_t cap, const char *fmt,
                        va_list ap)
{
	PGconn *c;
	PGresult *r = pg_first_on(d, &c, compat, fmt, ap);
	unsigned char *bytes = NULL;
	long rc = -1;

	if (r && PQgetisnull(r, 0, 0)) {
		rc = -2;
	} else if (r) {
		const char *p = PQgetvalue(r, 0, 0);
		size_t n = (size_t)PQgetlength(r, 0, 0);
		if (PQftype(r, 0) == BYTEA_OID) {
			bytes = PQunescapeBytea((const unsigned char *)p, &n);
			p = (const char *)bytes;
		}
		if (p) {
			if (n >= cap)
				n = cap - 1;
			if (n)
				memcpy(out, p, n);
			out[n] = '\0';
			rc = (long)n;
		}
	}
	PQfreemem(bytes);
	PQclear(r);
	PQfinish(c);
	return rc;
}

static long pg_vtext(const struct dlrd *d, char *out, size_t cap, const char *fmt, va_list ap)
{
	return pg_vtext_on(d, true, out, cap, fmt, ap);
}

static int sql_first(const struct dlrd *d, sqlite3 **db, sqlite3_stmt **st, const char *fmt,
                     va_list ap)
{
	char *sql = sqlite3_vmprintf(fmt, ap);
	int rc = -1;

	*db = NULL;
	*st = NULL;
	if (!sql)
		return -1;
	if (sqlite3_open_v2(d->db_path, db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		goto out;
	sqlite3_busy_timeout(*db, 5000);
	if (sqlite3_prepare_v2(*db, sql, -1, st, NULL) != SQLITE_OK) {
		fprintf(stderr, "harness: %s: %s\n", sql, sqlite3_errmsg(*db));
		goto out;
	}
	if (sqlite3_step(*st) == SQLITE_ROW)
		rc = 0;
out:
	sqlite3_free(sql);
	return rc;
}

static void sql_done(sqlite3 *db, sqlite3_stmt *st)
{
	sqlite3_finalize(st);
	sqlite3_close(db);
}

int64_t h_sql_int(const struct dlrd *d, const char *fmt, ...)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t v = H_SQL_ERR;
	va_list ap;

	va_start(ap, fmt);
	if (h_pg()) {
		v = pg_int(d, fmt, ap);
		va_end(ap);
		return v;
	}
	if (sql_first(d, &db, &st, fmt, ap) == 0 && sqlite3_column_type(st, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(st, 0);
	va_end(ap);
	sql_done(db, st);
	return v;
}

static long sql_vtext(const struct dlrd *d, char *out, size_t cap, const char *fmt, va_list ap)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	long rc = -1;

	out[0] = '\0';
	if (h_pg())
		return pg_vtext(d, out, cap, fmt, ap);
	if (sql_first(d, &db, &st, fmt, ap) == 0) {
		if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
			rc = -2;
		} else {
			const void *p = sqlite3_column_blob(st, 0);
			size_t n = (size_t)sqlite3_column_bytes(st, 0);
			if (n >= cap)
				n = cap - 1;
			if (n)
				memcpy(out, p, n);
			out[n] = '\0';
			rc = (long)n;
		}
	}
	sql_done(db, st);
	return rc;
}

/* The key ring d's dlrd runs with (see H_ENC_KEYS). */
static struct pii_keyring *d_keyring(const struct dlrd *d)
{
	const char *name = "DLRD_PRIVACY_ENCRYPTION_KEYS", *keys = H_ENC_KEYS;
	size_t nl = strlen(name);
	struct pii_keyring *kr = NULL;
	char err[256];
	int created;

	for (size_t i = 0; i < d->n_env; i++) {
		if (strncmp(d->env[i], name, nl) != 0)
			continue;
		if (d->env[i][nl] == '=') {
			keys = d->env[i] + nl + 1;
		} else if (d->env[i][nl] == '\0') {
			if (pii_keyring_load_file(d->dir, &kr, &created, err, sizeof(err)) != 0)
				fprintf(stderr, "harness: %s\n", err);
			return kr;
		}
	}
	if (pii_keyring_parse(keys, &kr, err, sizeof(err)) != 0)
		fprintf(stderr, "harness: %s\n", err);
	return kr;
}

static long payload_v(const struct dlrd *d, char *out, size_t cap, const char *fmt, va_list ap);

long h_sql_payload(const struct dlrd *d, char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	long rc;

	va_start(ap, fmt);
	rc = payload_v(d, out, cap, fmt, ap);
	va_end(ap);
	return rc;
}

const char *h_payload_str(const struct dlrd *d, char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;
	long rc;

	va_start(ap, fmt);
	rc = payload_v(d, buf, cap, fmt, ap);
	va_end(ap);
	return rc >= 0 ? buf : rc == -2 ? "(null)" : rc == -3 ? "(not sealed)" : "(no row)";
}

static long payload_v(const struct dlrd *d, char *out, size_t cap, const char *fmt, va_list ap)
{
	size_t bcap = cap + 128;
	char *blob = malloc(bcap);
	struct pii_keyring *kr = d_keyring(d);
	struct arena ar;
	struct iov plain;
	long rc, n;

	arena_init(&ar, NULL, 0);
	out[0] = '\0';
	n = !blob    ? -1
	    : h_pg() ? pg_vtext_on(d, false, blob, bcap, fmt, ap)
	             : sql_vtext(d, blob, bcap, fmt, ap);
	rc = n;
	if (n >= 0) {
		int orc = kr ? pii_open_payload(kr, &ar, blob, (size_t)n, &plain) : DLRD_ENOTFOUND;
		if (orc != 0) {
			fprintf(stderr, "harness: h_sql_payload: %s (%d)\n",
			        orc == DLRD_EINVAL ? "the payload is not sealed" : "cannot open",
			        orc);
			rc = -3;
		} else {
			size_t m = plain.n < cap ? plain.n : cap - 1;
			if (m)
				memcpy(out, plain.p, m);
			out[m] = '\0';
			rc = (long)m;
		}
	}
	arena_fini(&ar);
	pii_keyring_free(kr);
	free(blob);
	return rc;
}

long h_sql_text(const struct dlrd *d, char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	long rc;

	va_start(ap, fmt);
	rc = sql_vtext(d, out, cap, fmt, ap);
	va_end(ap);
	return rc;
}

const char *h_sql_str(const struct dlrd *d, char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;
	long rc;

	va_start(ap, fmt);
	rc = sql_vtext(d, buf, cap, fmt, ap);
	va_end(ap);
	if (rc == -2)
		return "(null)";
	if (rc < 0)
		return "(no row)";
	return buf;
}

int h_sql_exec(const struct dlrd *d, const char *fmt, ...)
{
	sqlite3 *db = NULL;
	PGconn *c = NULL;
	char *sql, *err = NULL;
	va_list ap;
	int rc = -1;

	va_start(ap, fmt);
	sql = sqlite3_vmprintf(fmt, ap);
	va_end(ap);
	if (!sql)
		return -1;
	if (h_pg()) {
		if ((c = pgt_connect(d->pg_url)))
			rc = pgt_exec(c, "%s", sql); /* says what failed */
		PQfinish(c);
	} else if (sqlite3_open_v2(d->db_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		fprintf(stderr, "harness: %s: %s\n", d->db_path, sqlite3_errmsg(db));
	} else {
		sqlite3_busy_timeout(db, 5000);
		rc = sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK ? 0 : -1;
		if (rc != 0)
			fprintf(stderr, "harness: %s: %s\n", sql, err ? err : sqlite3_errmsg(db));
		sqlite3_free(err);
	}
	sqlite3_close(db);
	sqlite3_free(sql);
	return rc;
}

int64_t h_count(const struct dlrd *d, const char *table)
{
	return h_sql_int(d, "SELECT count(*) FROM \"%w\"", table);
}

int64_t h_count_data(const struct dlrd *d)
{
	return h_sql_int(d, "SELECT (SELECT count(*) FROM sms_messages)"
	                    " + (SELECT count(*) FROM sms_message_events)"
	                    " + (SELECT count(*) FROM sms_callback_log)"
	                    " + (SELECT count(*) FROM review_queue)");
}

struct h_snap {
	sqlite3 *db; /* SQLite, else NULL */
	PGconn *pg;  /* PostgreSQL, else NULL */
};

struct h_snap *h_snap_open(const struct dlrd *d)
{
	struct h_snap *s = calloc(1, sizeof(*s));
	PGresult *r = NULL;

	if (!s)
		return NULL;
	if (h_pg()) {
		if (!(s->pg = pgt_connect(d->pg_url)))
			goto fail;
		r = PQexec(s->pg, pg_compat_sql);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			fprintf(stderr, "harness: the PostgreSQL compatibility layer: %s",
			        PQerrorMessage(s->pg));
			goto fail;
		}
		if (pgt_exec(s->pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") != 0)
			goto fail;
	} else {
		if (sqlite3_open_v2(d->db_path, &s->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
			fprintf(stderr, "harness: %s: %s\n", d->db_path,
			        s->db ? sqlite3_errmsg(s->db) : "out of memory");
			goto fail;
		}
		sqlite3_busy_timeout(s->db, 5000);
		if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
			fprintf(stderr, "harness: BEGIN: %s\n", sqlite3_errmsg(s->db));
			goto fail;
		}
	}
	PQclear(r);
	return s;
fail:
	PQclear(r);
	h_snap_close(s);
	return NULL;
}

static long snap_rows_pg(struct h_snap *s, h_row_fn *row, void *arg, const char *sql)
{
	PGresult *r = PQexec(s->pg, sql);
	int nc = PQnfields(r), nr = PQntuples(r);
	const char **col = NULL;
	long n = -1;

	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "harness: %s: %s", sql, PQerrorMessage(s->pg));
		goto out;
	}
	col = xmalloc((size_t)(nc ? nc : 1) * sizeof(*col));
	for (n = 0; n < nr;) {
		int k = (int)n++;
		for (int i = 0; i < nc; i++) {
			const char *v = PQgetisnull(r, k, i) ? NULL : PQgetvalue(r, k, i);
			if (v && PQftype(r, i) == BOOL_OID)
				v = v[0] == 't' ? "1" : "0";
			col[i] = v;
		}
		if (row(arg, col, nc) != 0)
			break;
	}
out:
	free(col);
	PQclear(r);
	return n;
}

static long snap_rows_sqlite(struct h_snap *s, h_row_fn *row, void *arg, const char *sql)
{
	sqlite3_stmt *st = NULL;
	const char **col = NULL;
	long n = 0;
	int nc, rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "harness: %s: %s\n", sql, sqlite3_errmsg(s->db));
		return -1;
	}
	nc = sqlite3_column_count(st);
	col = xmalloc((size_t)(nc ? nc : 1) * sizeof(*col));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		for (int i = 0; i < nc; i++)
			col[i] = (const char *)sqlite3_column_text(st, i);
		n++;
		if (row(arg, col, nc) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "harness: %s: %s\n", sql, sqlite3_errmsg(s->db));
		n = -1;
	}
	free(col);
	sqlite3_finalize(st);
	return n;
}

static long snap_vrows(struct h_snap *s, h_row_fn *row, void *arg, const char *fmt, va_list ap)
{
	char *sql = sqlite3_vmprintf(fmt, ap);
	long n = -1;

	if (sql)
		n = s->pg ? snap_rows_pg(s, row, arg, sql) : snap_rows_sqlite(s, row, arg, sql);
	sqlite3_free(sql);
	return n;
}

long h_snap_rows(struct h_snap *s, h_row_fn *row, void *arg, const char *fmt, ...)
{
	va_list ap;
	long n;

	va_start(ap, fmt);
	n = snap_vrows(s, row, arg, fmt, ap);
	va_end(ap);
	return n;
}

/* h_snap_int's row: the first column of the first row as an integer. */
static int snap_int_row(void *arg, const char *const *col, int n_col)
{
	int64_t *v = arg;
	char *end;
	long long x;

	if (n_col < 1 || !col[0])
		return 1;
	errno = 0;
	x = strtoll(col[0], &end, 10);
	if (end != col[0] && *end == '\0' && errno == 0)
		*v = x;
	else
		fprintf(stderr, "harness: h_snap_int: \"%s\" is not an integer\n", col[0]);
	return 1;
}

int64_t h_snap_int(struct h_snap *s, const char *fmt, ...)
{
	int64_t v = H_SQL_ERR;
	va_list ap;

	va_start(ap, fmt);
	snap_vrows(s, snap_int_row, &v, fmt, ap);
	va_end(ap);
	return v;
}

void h_snap_close(struct h_snap *s)
{
	if (!s)
		return;
	if (s->pg) {
		PQclear(PQexec(s->pg, "ROLLBACK"));
		PQfinish(s->pg);
	}
	if (s->db) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		sqlite3_close(s->db);
	}
	free(s);
}

/* ---- files ---- */

char *h_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;

	if (!f)
		return NULL;
	for (;;) {
		if (cap - n < 4096) {
			cap = cap ? cap * 2 : 65536;
			char *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

bool h_log_contains(const struct dlrd *d, const char *s)
{
	size_t n;
	char *log = h_read_file(d->log_path, &n);
	bool hit = log && memmem(log, n, s, strlen(s)) != NULL;
	free(log);
	return hit;
}

bool h_wait_log(const struct dlrd *d, const char *s, int ms)
{
	int64_t t0 = h_now_ms();

	while (!h_log_contains(d, s)) {
		if (h_now_ms() - t0 >= ms)
			return false;
		h_sleep_ms(50);
	}
	return true;
}

int h_write_file(const char *path, const char *content)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t n = strlen(content);
	int rc = 0;

	if (fd < 0)
		return -1;
	while (n && rc == 0) {
		ssize_t w = write(fd, content, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			rc = -1;
		else {
			content += w;
			n -= (size_t)w;
		}
	}
	close(fd);
	return rc;
}
