/* SPDX-License-Identifier: MIT */
/*
 * Integration test harness: runs the real dlrd binary on a loopback port
 * with a fresh temporary folder and an environment-only configuration, and
 * gives tests what they need to talk to it and to look at what it stored:
 *
 * - process control: start (and wait for /healthz), stop with a signal and
 *   collect the exit status within a deadline, restart on the same folder
 *   and port, spawn a process that is expected to fail at start-up;
 * - HTTP over libcurl (any method, headers, body; status, body and the
 *   response headers tests look at), and Twilio-signed callbacks;
 * - a raw socket for framing libcurl will not produce (pipelining,
 *   conflicting Content-Length / Transfer-Encoding, slow clients);
 * - read-only queries against the daemon's database;
 * - the daemon's captured stderr, for log checks.
 *
 * Two backends.  By default dlrd stores in SQLite (<dir>/dlrd.db).  With
 * DLRD_TEST_BACKEND=postgresql (the integration-pg tests), h_setup creates a
 * fresh database on the server named by DLRD_TEST_PG_URL (pgtest.h) and
 * points dlrd at it, the h_sql_* helpers query it through libpq with a
 * compatibility layer that makes the tests' SQLite-flavoured queries read
 * the same (harness.c), and h_teardown drops it.  Under PostgreSQL without
 * DLRD_TEST_PG_URL the binary exits 77 (a CTest skip; 1 when $CI is set)
 * before main().  Tests that check something only SQLite has skip it with
 * H_SQLITE_ONLY.
 *
 * Every wait is bounded.  The daemon gets PR_SET_PDEATHSIG, so a crashed
 * test binary does not leave it running.  Single-threaded test binaries
 * only (the harness keeps no global state, but PR_SET_PDEATHSIG follows the
 * thread that forked).
 */
#ifndef DLRD_TEST_HARNESS_H
#define DLRD_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What every harness-started dlrd is configured with. */
#define H_PUBLIC_URL  "https://sms.example.com"
#define H_STATUS_PATH "/webhooks/twilio/status"
#define H_TOKEN1      "tok1-4f0d5c1e9a7b2d3c8e6f1a0b9c8d7e6f"
#define H_TOKEN2      "tok2-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
#define H_HASH_KEY    "hk-integration-0123456789abcdef0123456789abcdef"
/* privacy.encryption_keys: raw payloads are stored sealed under it (pii.h);
 * h_sql_payload() opens them.  h_set_env(d, "DLRD_PRIVACY_ENCRYPTION_KEYS")
 * (no '=') leaves it unset, so dlrd makes its key file. */
#define H_ENC_KEYS "k1:SGFybmVzc0tleTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU="
/* The recipient and sender used by h_twilio_body(). */
#define H_TO        "+14155550123"
#define H_TO_DIGITS "4155550123"
#define H_FROM      "+15017122661"

#define H_MAX_ENV  16
#define H_PATH_MAX 512

/* One dlrd instance (and its folder).  Owned by one test; not thread-safe. */
struct dlrd {
	char dir[H_PATH_MAX];        /* the temp folder (mkdtemp) */
	char db_path[H_PATH_MAX];    /* <dir>/dlrd.db */
	char log_path[H_PATH_MAX];   /* <dir>/<log name>: stdout+stderr, appended */
	char fault_path[H_PATH_MAX]; /* <dir>/fault: DLRD_TEST_FAULT_FILE */
	char pg_db[96];              /* PostgreSQL: the database's name, else "" */
	char pg_url[H_PATH_MAX];     /* PostgreSQL: libpq URL of pg_db, else "" */
	char base_url[64];           /* http://127.0.0.1:<port> */
	uint16_t port;
	pid_t pid;      /* 0 when not running */
	bool owns_dir;  /* h_teardown removes dir */
	bool started;   /* h_start succeeded once: the port is the test's now */
	size_t log_off; /* the log's size when the last h_spawn started */
	/* extra "KEY=VALUE" settings applied after the defaults ("KEY=" sets
	 * an empty value, which dlrd reads as unset); copied */
	char env[H_MAX_ENV][H_PATH_MAX];
	size_t n_env;
	/* "" (h_setup): `dlrd serve`; a path: `dlrd serve --config <path>`,
	 * with the environment above still applied (and winning) */
	char config_path[H_PATH_MAX];
};

/* true when the tests run dlrd on PostgreSQL (DLRD_TEST_BACKEND=postgresql). */
bool h_pg(void);
/* In a cmocka test: under PostgreSQL, prints why the rest of the test is
 * SQLite-only and skips it. */
#define H_SQLITE_ONLY(why)                                                                         \
	do {                                                                                       \
		if (h_pg()) {                                                                      \
			print_message("SKIPPED under PostgreSQL: %s\n", why);                      \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

/* Makes a fresh temp folder (and, under PostgreSQL, a fresh database),
 * picks a free port and fills d.  env: NULL or a NULL-terminated list of
 * extra "KEY=VALUE" settings.  Does not start dlrd.  Returns 0 or -1. */
int h_setup(struct dlrd *d, const char *const *env);
/* A second instance on d's folder and database, with its own port and log
 * file (log_name under the folder) and the same settings plus env.  It
 * does not own them: its h_teardown leaves them to d's. */
int h_setup_shared(struct dlrd *out, const struct dlrd *d, const char *log_name,
                   const char *const *env);
/* Adds or replaces one "KEY=VALUE" setting for the next start. */
void h_set_env(struct dlrd *d, const char *kv);

/* Starts dlrd and waits (up to 10 s) for GET /healthz to answer 200.
 * Returns 0, or -1 when it exited or never became healthy (then it is
 * killed).  On the first start only, a port taken meanwhile (another test
 * may have bound the free port picked at set-up) means a new port and
 * another try. */
int h_start(struct dlrd *d);
/* Starts dlrd without waiting for anything. Returns 0 or -1. */
int h_spawn(struct dlrd *d);
/* Waits up to timeout_ms for /healthz to answer 200, from this dlrd (it
 * logged event=listening since it was spawned, so not another process on
 * the port); -1 if dlrd exits or the time runs out. */
int h_wait_healthy(struct dlrd *d, int timeout_ms);
/* Waits up to timeout_ms for dlrd to exit; *status gets the waitpid status.
 * Returns 0, or -1 on timeout (dlrd keeps running). */
int h_wait_exit(struct dlrd *d, int timeout_ms, int *status);
/* Sends sig and waits up to timeout_ms for the exit.  Returns 0 with the
 * waitpid status in *status, or -1 on timeout (then dlrd is SIGKILLed). */
int h_stop(struct dlrd *d, int sig, int timeout_ms, int *status);
/* Kills dlrd if it still runs, removes the folder (and drops the PostgreSQL
 * database) when d owns it; DLRD_TEST_KEEP=1 keeps both. */
void h_teardown(struct dlrd *d);
/* cmocka fixtures: *state gets a heap struct dlrd started with env (NULL
 * or extra "KEY=VALUE" settings); the stop fixture tears it down. */
int h_fixture_start(void **state, const char *const *env);
int h_fixture_stop(void **state);
/* Milliseconds on a monotonic clock. */
int64_t h_now_ms(void);
void h_sleep_ms(int ms);

/* ---- HTTP over libcurl ---- */

#define H_BODY_CAP 32768

struct h_resp {
	long status;           /* 0 when the transfer failed */
	int curl_code;         /* CURLcode */
	char body[H_BODY_CAP]; /* NUL-terminated, truncated to fit */
	size_t body_len;       /* full length received */
	char retry_after[64];  /* "" when absent */
	char allow[64];
	char connection[64];
	char content_type[128];
	char location[128];
	char replayed[16]; /* Idempotent-Replayed */
	int64_t elapsed_ms;
};

/* One request on a new connection.  target: "/path?query".  headers: NULL or
 * a NULL-terminated list of "Name: value" lines ("Name;" sends an empty
 * header, "Name:" removes one libcurl adds).  body may be NULL.  Bounded by
 * 10 s.  Returns 0 when an answer arrived, -1 otherwise (out->curl_code). */
int h_request(const struct dlrd *d, const char *method, const char *target,
              const char *const *headers, const char *body, size_t body_len, struct h_resp *out);
/* GET target; returns the status, 0 on transport failure. */
long h_get(const struct dlrd *d, const char *target, struct h_resp *out);

/* The value of one sample in GET /metrics, named exactly as rendered
 * ("dlrd_callbacks_total{provider=\"twilio\",outcome=\"stored\"}"), or -1
 * when the scrape fails or the sample is absent. */
int64_t h_metric(const struct dlrd *d, const char *sample);

/* Twilio's signature of a form body for url, with token (dlrd's own
 * sig_twilio_sign over the decoded body).  Returns 0, or -1 when the body
 * does not decode. */
int h_twilio_sign(const char *token, const char *url, const char *body, size_t body_len,
                  char sig[29]);
/* POSTs a form body to target, signed with token for H_PUBLIC_URL + target
 * (no X-Twilio-Signature header when token is NULL).  extra: NULL or more
 * header lines; a Content-Type among them replaces the form type.  Returns the status (0 on
 * transport failure). */
long h_post_twilio(const struct dlrd *d, const char *target, const char *token, const char *body,
                   const char *const *extra, struct h_resp *out);
/* h_post_twilio(d, H_STATUS_PATH, H_TOKEN1, body, NULL, out). */
long h_post_status(const struct dlrd *d, const char *body, struct h_resp *out);

/* A realistic status callback body (fields in Twilio's order).  error_code
 * may be NULL.  Returns the length, or 0 when it does not fit. */
size_t h_twilio_body(char *buf, size_t cap, const char *sid, const char *status,
                     const char *error_code);
/* A Twilio message SID "SM" + 32 lower-case hex digits, unique per (tag, n). */
void h_sid(char out[35], unsigned tag, unsigned n);

/* A signed status callback running on its own thread. */
struct h_async;
/* Starts h_post_status(d, body) in the background (body is copied). */
struct h_async *h_async_post_status(const struct dlrd *d, const char *body);
/* Waits for it (bounded by the request timeout), copies the answer to out
 * (may be NULL), frees a and returns the status (0: no answer). */
long h_async_wait(struct h_async *a, struct h_resp *out);

/* The outcome of one request of h_post_concurrent. */
struct h_multi {
	bool done;
	long status; /* 0: no answer (refused, reset, timed out) */
	int curl_code;
	char retry_after[16];
};

/* Sends n signed status callbacks (bodies[i]) at once, one connection each,
 * over curl multi.  first_wave of them start at once (0: all); the rest
 * start as soon as the first answer arrives.  tick, if not NULL, is called
 * after every round with how many have completed and how many have
 * started.  out[i] gets request i's outcome.  Returns 0 when every request
 * completed (answered or failed) within timeout_ms, else -1. */
int h_post_concurrent(const struct dlrd *d, const char *const *bodies, size_t n, size_t first_wave,
                      void (*tick)(void *arg, size_t done, size_t added), void *arg,
                      struct h_multi *out, int timeout_ms);

/* ---- raw sockets ---- */

/* A blocking TCP connection to 127.0.0.1:port with TCP_NODELAY; -1 on
 * failure. */
int h_connect(uint16_t port);
/* Writes all n bytes; 0 or -1. */
int h_send_all(int fd, const void *p, size_t n);
/* Reads into buf (NUL-terminated; cap includes the NUL) until the peer
 * closes, an error, or timeout_ms passes.  *closed tells whether the peer
 * closed (EOF or reset).  Returns the bytes read. */
size_t h_recv_all(int fd, char *buf, size_t cap, int timeout_ms, bool *closed);
/* Connects, sends req, reads until close or timeout_ms.  Returns bytes read,
 * or (size_t)-1 when the connection failed. */
size_t h_raw(const struct dlrd *d, const char *req, size_t n, char *buf, size_t cap, int timeout_ms,
             bool *closed);
/* How many of the responses in buf[0..n) (see h_statuses) have code. */
unsigned h_count_status(const char *buf, size_t n, int code);
/* The status codes of the HTTP responses in buf, in order, parsed as a
 * client would (each body skipped by its Content-Length or chunks); stops
 * at anything that is not a response.  Returns how many. */
size_t h_statuses(const char *buf, size_t n, int *codes, size_t max);
/* A complete signed raw POST to H_STATUS_PATH for body ("Connection: close"
 * added when close is true).  Returns the length, or 0 when it does not fit. */
size_t h_raw_status_post(char *buf, size_t cap, const char *body, bool close);

/* ---- the database (read-only, a new connection per call) ---- */

#define H_SQL_ERR INT64_MIN

/* The first column of the first row of an SQL query built with
 * sqlite3_mprintf (so %q, %Q and %w are available), on either backend.
 * Returns H_SQL_ERR when the query fails, has no row, or the value is NULL
 * (under PostgreSQL also when it is not an integer; a boolean reads 1/0). */
int64_t h_sql_int(const struct dlrd *d, const char *fmt, ...);
/* Same for text (blobs as bytes): copies into out (NUL-terminated) and
 * returns the length, or -1 (no row, error) or -2 (NULL). */
long h_sql_text(const struct dlrd *d, char *out, size_t cap, const char *fmt, ...);
/* Like h_sql_text for a raw_payload column: the first column of the first
 * row, read as the stored bytes (under PostgreSQL the query runs on the
 * tables themselves, not the compatibility layer) and opened with the keys
 * d runs with (H_ENC_KEYS, DLRD_PRIVACY_ENCRYPTION_KEYS, or its key file).
 * Returns the payload's length, -1 (no row, error), -2 (NULL) or -3 (not
 * sealed, or it does not open). */
long h_sql_payload(const struct dlrd *d, char *out, size_t cap, const char *fmt, ...);
/* h_sql_payload for assertions: returns buf, or "(null)", "(no row)" or
 * "(not sealed)"; for payloads without NUL bytes. */
const char *h_payload_str(const struct dlrd *d, char *buf, size_t cap, const char *fmt, ...);
/* Same, for assertions: returns buf, or "(null)" for NULL, or "(no row)"
 * when the query fails or has no row. */
const char *h_sql_str(const struct dlrd *d, char *buf, size_t cap, const char *fmt, ...);
/* Runs SQL that changes the database (a test-only edit, such as back-dating
 * a stored time), built like h_sql_int's, on a separate read-write
 * connection.  Under PostgreSQL it runs on dlrd's tables themselves, without
 * the compatibility layer: a time is written as RFC 3339 text, which
 * PostgreSQL reads as timestamptz.  Returns 0, or -1 (the error on
 * stderr). */
int h_sql_exec(const struct dlrd *d, const char *fmt, ...);
/* SELECT count(*) FROM table. */
int64_t h_count(const struct dlrd *d, const char *table);
/* Rows in the four data tables together. */
int64_t h_count_data(const struct dlrd *d);

/* A read-only connection to d's database that holds one snapshot, so that
 * several queries see the same state even while a write is still landing:
 * under PostgreSQL the server finishes, and may commit, the batch of a dlrd
 * killed in the middle of its round trip, after that dlrd is gone.  SQLite:
 * a read transaction (BEGIN; the snapshot is taken by the first query).
 * PostgreSQL: BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY on the
 * compatibility layer, so the SQL is the same as for h_sql_int.  Returns
 * NULL on failure (the reason on stderr). */
struct h_snap;
struct h_snap *h_snap_open(const struct dlrd *d);
/* Called once per row: col[0..n_col) as text (NULL for SQL NULL; integers
 * in decimal, a PostgreSQL boolean as "1" or "0"), valid until it returns.
 * A non-zero return stops the query. */
typedef int h_row_fn(void *arg, const char *const *col, int n_col);
/* Runs a query built like h_sql_int's on s and calls row for each row.
 * Returns the rows passed to row (counting one that stopped it), or -1
 * when the query fails (the error on stderr). */
long h_snap_rows(struct h_snap *s, h_row_fn *row, void *arg, const char *fmt, ...);
/* h_sql_int on s. */
int64_t h_snap_int(struct h_snap *s, const char *fmt, ...);
/* Ends the snapshot and closes the connection; NULL is allowed. */
void h_snap_close(struct h_snap *s);

/* Takes the database's write lock from a separate connection (so dlrd's
 * writer waits: in its busy handler under SQLite, for the table locks under
 * PostgreSQL) and returns a handle for h_db_unlock, or NULL. */
void *h_db_lock(const struct dlrd *d);
void h_db_unlock(void *lock);

/* ---- files ---- */

/* Reads a whole file into a NUL-terminated heap buffer (free() it); NULL on
 * failure. */
char *h_read_file(const char *path, size_t *len);
/* true when d's captured stderr contains s. */
bool h_log_contains(const struct dlrd *d, const char *s);
/* The same, waiting up to ms for a line that dlrd may write a moment after
 * what the test saw (another thread's). */
bool h_wait_log(const struct dlrd *d, const char *s, int ms);
/* Creates (or overwrites) path with content. Returns 0 or -1. */
int h_write_file(const char *path, const char *content);

#endif
