/* SPDX-License-Identifier: MIT */
/*
 * Integration: AWS End User Messaging SMS events via Amazon SNS (provider
 * "sns") against the real daemon, with the signing certificate fetched over
 * real HTTPS.  The test makes two RSA keys and self-signed certificates with
 * the openssl command (a TLS server certificate for 127.0.0.1, and the
 * "SNS" signing certificate), serves the directory with `openssl s_server
 * -WWW` on a loopback port, and runs dlrd with [sns] cert_hosts = 127.0.0.1
 * and ca_file = the server certificate.  Envelopes are signed here with
 * OpenSSL as SNS signs them.
 *
 * Covered: a signed notification stores exactly one event (SNS MessageId as
 * the event id, eventTimestamp as the time); the same SNS message again is a
 * duplicate; a late TEXT_SUCCESSFUL does not move a delivered summary back;
 * forged, stale and unknown-topic messages are 401 and write nothing; a
 * certificate that cannot be fetched is 503 and writes nothing, one whose
 * TLS peer does not verify is 401; a certificate fetch that hangs holds at
 * most one HTTP thread, also with server.threads = 1 (dlrd then runs two);
 * a certificate URL whose fetch failed is not fetched again for a while
 * (refused: 401, temporary: 503; connections counted at a loopback
 * listener, which hangs up or relays to the HTTPS server); an
 * UnsubscribeConfirmation goes to review; a SubscriptionConfirmation is confirmed by fetching
 * SubscribeURL and stores nothing.  Skipped when no openssl command is on PATH.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "crypto.h"
#include "harness.h"
#include "util.h"

#define TOPIC   "arn:aws:sns:us-east-1:123456789012:dlrd-it-events"
#define PATH    "/webhooks/sns/status"
#define CONFIRM "confirm.txt?Action=ConfirmSubscription&TopicArn=x&Token=2336412f37fb"

/* The HTTPS server and its files, shared by the tests of this file. */
static struct {
	char dir[256];
	char log[300];
	uint16_t port;
	pid_t pid;
	EVP_PKEY *key; /* the signing key */
	bool ready;
} tls;

static int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static uint16_t free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	uint16_t port = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* Starts s_server on a free port.  The port was free when picked; another
 * test may bind it before s_server does, and then s_server exits: a new
 * port and another try. */
static int server_start(void)
{
	char accept[32];
	int64_t deadline;

	for (int attempt = 0; attempt < 5; attempt++) {
		tls.port = free_port();
		snprintf(accept, sizeof(accept), "127.0.0.1:%u", tls.port);
		tls.pid = fork();
		if (tls.pid < 0)
			return -1;
		if (tls.pid == 0) {
			int fd = open(tls.log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (fd < 0 || chdir(tls.dir) != 0)
				_exit(127);
			dup2(fd, 1);
			dup2(fd, 2);
			execlp("openssl", "openssl", "s_server", "-accept", accept, "-cert",
			       "srv.pem", "-key", "srv.key", "-WWW", (char *)NULL);
			_exit(127);
		}
		deadline = h_now_ms() + 5000;
		while (h_now_ms() < deadline) {
			if (waitpid(tls.pid, NULL, WNOHANG) == tls.pid) {
				tls.pid = 0; /* exited: the port was taken */
				break;
			}
			/* s_server prints ACCEPT once it listens */
			char *log = h_read_file(tls.log, NULL);
			bool up = log && strstr(log, "ACCEPT");
			free(log);
			if (up)
				return 0;
			h_sleep_ms(20);
		}
		if (tls.pid > 0)
			return -1; /* runs, but never listened */
	}
	return -1;
}

/* Stops s_server; its log is complete afterwards. */
static void server_stop(void)
{
	if (tls.pid > 0) {
		kill(tls.pid, SIGTERM);
		waitpid(tls.pid, NULL, 0);
		tls.pid = 0;
	}
}

static int group_setup(void **state)
{
	char tmpl[] = "/tmp/dlrd-sns-XXXXXX", path[400];
	FILE *fp;

	(void)state;
	if (sh("openssl version > /dev/null 2>&1") != 0)
		return 0; /* tests skip */
	if (!mkdtemp(tmpl))
		return -1;
	snprintf(tls.dir, sizeof(tls.dir), "%s", tmpl);
	snprintf(tls.log, sizeof(tls.log), "%s/s_server.log", tls.dir);
	if (sh("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout srv.key -out srv.pem "
	       "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -days 2 > /dev/null 2>&1 "
	       "&& openssl req -x509 -newkey rsa:2048 -nodes -keyout sign.key -out signing.pem "
	       "-subj /CN=sns.amazonaws.com -days 2 > /dev/null 2>&1",
	       tls.dir) != 0)
		return -1;
	/* what SubscribeURL answers; s_server -WWW serves the query as part
	 * of the file name */
	snprintf(path, sizeof(path), "%s/" CONFIRM, tls.dir);
	if (h_write_file(path, "<ConfirmSubscriptionResponse/>") != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/sign.key", tls.dir);
	fp = fopen(path, "r");
	if (!fp)
		return -1;
	tls.key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	if (!tls.key || server_start() != 0)
		return -1;
	tls.ready = true;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	server_stop();
	EVP_PKEY_free(tls.key);
	if (tls.dir[0])
		sh("rm -rf %s", tls.dir);
	return 0;
}

/* threads: DLRD_SERVER_THREADS ("" leaves the harness's 2). */
static int setup_threads(void **state, const char *threads)
{
	char e1[300], e2[300], e3[64];
	const char *env[] = {"DLRD_SNS_TOPIC_ARNS=" TOPIC,
	                     "DLRD_SNS_CERT_HOSTS=127.0.0.1,localhost",
	                     e1,
	                     e2,
	                     e3,
	                     NULL};

	if (!tls.ready) {
		*state = NULL;
		return 0;
	}
	snprintf(e1, sizeof(e1), "DLRD_SNS_CA_FILE=%s/srv.pem", tls.dir);
	snprintf(e2, sizeof(e2), "DLRD_SERVER_LOG_LEVEL=info");
	if (*threads)
		snprintf(e3, sizeof(e3), "DLRD_SERVER_THREADS=%s", threads);
	else
		env[4] = NULL;
	return h_fixture_start(state, env);
}

static int setup(void **state)
{
	return setup_threads(state, "");
}

/* server.threads = 1 (the default on a one-CPU machine): a hanging
 * certificate fetch must still leave a thread for everyone else. */
static int setup_one_thread(void **state)
{
	return setup_threads(state, "1");
}

static int teardown(void **state)
{
	return *state ? h_fixture_stop(state) : 0;
}

#define SKIP_WITHOUT_OPENSSL()                                                                     \
	do {                                                                                       \
		if (!tls.ready)                                                                    \
			skip();                                                                    \
	} while (0)

/* The SNS envelope of type around message, signed with the signing key.
 * cert_url NULL: the loopback server's signing.pem. */
static char *envelope(const char *type, const char *mid, const char *message, long skew_s,
                      const char *topic, const char *cert_url, const char *version,
                      const char *sub_url)
{
	char ts[32], url[256], buf[16384], b64[1024];
	time_t now = time(NULL) + skew_s;
	struct tm tm;
	json_t *e = json_object();
	size_t at = 0, sl;
	uint8_t sig[1024];
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	bool notif = strcmp(type, "Notification") == 0;
	char *out;

	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
	if (!cert_url) {
		snprintf(url, sizeof(url), "https://127.0.0.1:%u/signing.pem", tls.port);
		cert_url = url;
	}
	/* the string to sign, in AWS's key order */
	at += (size_t)snprintf(buf + at, sizeof(buf) - at, "Message\n%s\nMessageId\n%s\n", message,
	                       mid);
	if (!notif)
		at += (size_t)snprintf(buf + at, sizeof(buf) - at, "SubscribeURL\n%s\n", sub_url);
	at += (size_t)snprintf(buf + at, sizeof(buf) - at, "Timestamp\n%s\n", ts);
	if (!notif)
		at += (size_t)snprintf(buf + at, sizeof(buf) - at, "Token\n2336412f37fb\n");
	at += (size_t)snprintf(buf + at, sizeof(buf) - at, "TopicArn\n%s\nType\n%s\n", topic, type);
	sl = sizeof(sig);
	assert_int_equal(EVP_DigestSignInit(c, NULL, version[0] == '2' ? EVP_sha256() : EVP_sha1(),
	                                    NULL, tls.key),
	                 1);
	assert_int_equal(EVP_DigestSign(c, sig, &sl, (uint8_t *)buf, at), 1);
	EVP_MD_CTX_free(c);
	crypto_b64_encode(sig, sl, b64);

	json_object_set_new(e, "Type", json_string(type));
	json_object_set_new(e, "MessageId", json_string(mid));
	if (!notif) {
		json_object_set_new(e, "Token", json_string("2336412f37fb"));
		json_object_set_new(e, "SubscribeURL", json_string(sub_url));
	}
	json_object_set_new(e, "TopicArn", json_string(topic));
	json_object_set_new(e, "Message", json_string(message));
	json_object_set_new(e, "Timestamp", json_string(ts));
	json_object_set_new(e, "SignatureVersion", json_string(version));
	json_object_set_new(e, "Signature", json_string(b64));
	json_object_set_new(e, "SigningCertURL", json_string(cert_url));
	json_object_set_new(e, "UnsubscribeURL",
	                    json_string("https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"));
	out = json_dumps(e, JSON_INDENT(2));
	json_decref(e);
	return out;
}

/* POSTs an envelope (taking it) as SNS does. */
static long post(const struct dlrd *d, char *body, const char *type, struct h_resp *r)
{
	char h[96];
	const char *hdrs[] = {"Content-Type: text/plain; charset=UTF-8", h,
	                      "User-Agent: Amazon Simple Notification Service Agent", NULL};

	snprintf(h, sizeof(h), "x-amz-sns-message-type: %s", type);
	h_request(d, "POST", PATH, hdrs, body, strlen(body), r);
	free(body);
	return r->status;
}

#define EVENT(type, mid)                                                                           \
	"{\"eventType\":\"" type "\",\"eventVersion\":\"1.0\",\"eventTimestamp\":1795792200123,"   \
	"\"isFinal\":true,\"originationPhoneNumber\":\"+12065550152\","                            \
	"\"destinationPhoneNumber\":\"+447700900123\",\"isInternationalSend\":true,"               \
	"\"mcc\":\"234\",\"mnc\":\"15\",\"messageId\":\"" mid "\","                                \
	"\"messageRequestTimestamp\":1795792199000,\"messageEncoding\":\"GSM\","                   \
	"\"messageType\":\"TRANSACTIONAL\",\"messageStatus\":\"DELIVERED\","                       \
	"\"messageStatusDescription\":\"Message has been delivered\",\"context\":{},"              \
	"\"totalMessageParts\":1,\"totalMessagePrice\":0.0456,\"totalCarrierFee\":0.0}"

static void expect_nothing_written(struct dlrd *d)
{
	assert_int_equal(h_count_data(d), 0);
}

static void test_notification_stored_and_deduped(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[8192];
	char *body;

	SKIP_WITHOUT_OPENSSL();
	body = envelope("Notification", "4f6a7c3e-0b1d-5e2f-8a9b-0c1d2e3f4a5b",
	                EVENT("TEXT_DELIVERED", "7B2D0F4A-9C1E-4F6A-8B3D-2E5F7A9C1D0E"), 0, TOPIC,
	                NULL, "2", NULL);
	assert_int_equal(post(d, strdup(body), "Notification", &r), 200);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT provider||'|'||provider_message_id||'|'||provider_event_id||'|'||"
	              "status||'|'||raw_status||'|'||coalesce(error_code,'-')||'|'||"
	              "provider_occurred_at||'|'||is_final FROM sms_message_events"),
	    "sns|7b2d0f4a-9c1e-4f6a-8b3d-2e5f7a9c1d0e|4f6a7c3e-0b1d-5e2f-8a9b-0c1d2e3f4a5b|"
	    "delivered|TEXT_DELIVERED|-|2026-11-27T15:10:00.123Z|1");
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_string_equal(
	    h_payload_str(d, buf, sizeof(buf), "SELECT raw_payload FROM sms_message_events"), body);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT current_status||'|'||destination_country||'|'||"
	              "sender_identity||'|'||length(recipient_hash) FROM sms_messages"),
	    "delivered|GB|+12065550152|64");
	/* SNS retries the same message (same MessageId and body) */
	assert_int_equal(post(d, body, "Notification", &r), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
	assert_int_equal(h_count(d, "sms_callback_log"), 2);
	/* a late TEXT_SUCCESSFUL (signature version 1) arrives after */
	body = envelope("Notification", "9a8b7c6d-0000-5e2f-8a9b-0c1d2e3f4a5b",
	                EVENT("TEXT_SUCCESSFUL", "7b2d0f4a-9c1e-4f6a-8b3d-2e5f7a9c1d0e"), 0, TOPIC,
	                NULL, "1", NULL);
	assert_int_equal(post(d, body, "Notification", &r), 200);
	assert_int_equal(h_count(d, "sms_message_events"), 2);
	assert_string_equal(
	    h_sql_str(d, buf, sizeof(buf),
	              "SELECT current_status||'|'||event_count||'|'||callback_count "
	              "FROM sms_messages"),
	    "delivered|2|3");
}

static void test_forged_stale_unknown_topic(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char *body;
	json_t *e;
	json_error_t jerr;

	SKIP_WITHOUT_OPENSSL();
	/* a field changed after signing */
	body = envelope("Notification", "m-1", EVENT("TEXT_DELIVERED", "a1"), 0, TOPIC, NULL, "2",
	                NULL);
	e = json_loads(body, 0, &jerr);
	free(body);
	json_object_set_new(e, "Message", json_string(EVENT("TEXT_DELIVERED", "a2")));
	assert_int_equal(post(d, json_dumps(e, 0), "Notification", &r), 401);
	assert_string_equal(r.body, "unauthorized\n");
	json_decref(e);
	/* stale: more than 4200 s old, or ahead */
	assert_int_equal(post(d,
	                      envelope("Notification", "m-2", EVENT("TEXT_DELIVERED", "a1"), -4300,
	                               TOPIC, NULL, "2", NULL),
	                      "Notification", &r),
	                 401);
	assert_int_equal(post(d,
	                      envelope("Notification", "m-3", EVENT("TEXT_DELIVERED", "a1"), 4300,
	                               TOPIC, NULL, "2", NULL),
	                      "Notification", &r),
	                 401);
	/* a topic not in topic_arns, correctly signed */
	assert_int_equal(
	    post(d,
	         envelope("Notification", "m-4", EVENT("TEXT_DELIVERED", "a1"), 0,
	                  "arn:aws:sns:us-east-1:123456789012:someone-else", NULL, "2", NULL),
	         "Notification", &r),
	    401);
	/* raw message delivery: no envelope */
	assert_int_equal(post(d, strdup(EVENT("TEXT_DELIVERED", "a1")), "Notification", &r), 401);
	expect_nothing_written(d);
	/* a retry from an hour ago is still accepted */
	assert_int_equal(post(d,
	                      envelope("Notification", "m-5", EVENT("TEXT_DELIVERED", "a1"), -3600,
	                               TOPIC, NULL, "2", NULL),
	                      "Notification", &r),
	                 200);
	assert_int_equal(h_count(d, "sms_message_events"), 1);
}

static void test_certificate_problems(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char url[256];

	SKIP_WITHOUT_OPENSSL();
	/* dlrd's log budget counts per second of CLOCK_REALTIME (log.c): the
	 * seconds touched from before the first request to after the last.
	 * (Counted with time(), the coarse clock, which lags by up to a tick,
	 * and from after the first request, a stretch that ended just past a
	 * second looked like "0 s", and CI saw 13 lines for that.) */
	int64_t t0 = util_now_ms();
	/* nothing listens there: temporary, 503 so SNS retries */
	snprintf(url, sizeof(url), "https://127.0.0.1:%u/signing.pem", (unsigned)free_port());
	assert_int_equal(post(d,
	                      envelope("Notification", "m-1", EVENT("TEXT_DELIVERED", "a1"), 0,
	                               TOPIC, url, "2", NULL),
	                      "Notification", &r),
	                 503);
	assert_string_equal(r.body, "signing certificate unavailable, retry later\n");
	expect_nothing_written(d);
	assert_true(h_log_contains(d, "sns_cert_unavailable"));
	/* counted like any other 503 answer to a callback */
	assert_int_equal(
	    h_metric(d, "dlrd_callbacks_total{provider=\"sns\",outcome=\"unavailable\"}"), 1);
	/* anyone can name a certificate that fails, before any signature is
	 * checked: a flood is told by at most 10 lines a second (log.h) */
	for (int i = 0; i < 40; i++)
		assert_int_equal(post(d,
		                      envelope("Notification", "m-1", EVENT("TEXT_DELIVERED", "a1"),
		                               0, TOPIC, url, "2", NULL),
		                      "Notification", &r),
		                 503);
	long long seconds = util_now_ms() / 1000 - t0 / 1000 + 1;
	size_t n;
	char *log = h_read_file(d->log_path, &n);
	unsigned lines = 0;
	assert_non_null(log);
	for (const char *p = log;
	     (p = memmem(p, (size_t)(log + n - p), "event=sns_cert_unavailable", 26)) != NULL; p++)
		lines++;
	free(log);
	if (lines > 10 * (unsigned)seconds)
		fail_msg("%u sns_cert_unavailable lines for 41 requests in %lld s", lines, seconds);
	/* the TLS peer does not verify for that name: refused */
	snprintf(url, sizeof(url), "https://localhost:%u/signing.pem", tls.port);
	assert_int_equal(post(d,
	                      envelope("Notification", "m-2", EVENT("TEXT_DELIVERED", "a1"), 0,
	                               TOPIC, url, "2", NULL),
	                      "Notification", &r),
	                 401);
	/* a host that is not allowed, and a path that is no .pem */
	snprintf(url, sizeof(url), "https://127.0.0.2:%u/signing.pem", tls.port);
	assert_int_equal(post(d,
	                      envelope("Notification", "m-3", EVENT("TEXT_DELIVERED", "a1"), 0,
	                               TOPIC, url, "2", NULL),
	                      "Notification", &r),
	                 401);
	snprintf(url, sizeof(url), "https://127.0.0.1:%u/srv.key", tls.port);
	assert_int_equal(post(d,
	                      envelope("Notification", "m-4", EVENT("TEXT_DELIVERED", "a1"), 0,
	                               TOPIC, url, "2", NULL),
	                      "Notification", &r),
	                 401);
	/* served, but not a certificate */
	snprintf(url, sizeof(url), "https://127.0.0.1:%u/missing.pem", tls.port);
	assert_int_equal(post(d,
	                      envelope("Notification", "m-5", EVENT("TEXT_DELIVERED", "a1"), 0,
	                               TOPIC, url, "2", NULL),
	                      "Notification", &r),
	                 401);
	expect_nothing_written(d);
}

struct bg_post {
	const struct dlrd *d;
	char *body;
	struct h_resp r;
	long status;
};

static void *bg_post_main(void *arg)
{
	struct bg_post *b = arg;
	b->status = post(b->d, b->body, "Notification", &b->r);
	return NULL;
}

/* A certificate fetch that hangs holds one HTTP thread at most: a request
 * naming another new certificate URL meanwhile is answered 503 at once,
 * and other callbacks are still served.  (The path is the sender's choice
 * once the host is allowed, so without the bound a few such requests
 * would hold every HTTP thread for the whole fetch timeout.) */
static void test_one_certificate_fetch_at_a_time(void **state)
{
	struct dlrd *d = *state;
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	struct pollfd pfd;
	struct bg_post bg = {.d = d};
	struct h_resp r;
	pthread_t t;
	char url[256], body[2048], sid[35];
	int lfd, cfd;
	long st2, st3;
	int64_t ms2, ms3;
	bool in_flight, retry_after, second_conn;

	SKIP_WITHOUT_OPENSSL();
	/* a "certificate host" that accepts connections and never answers */
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 8), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);

	snprintf(url, sizeof(url), "https://127.0.0.1:%u/slow-1.pem", ntohs(sa.sin_port));
	bg.body = envelope("Notification", "m-slow-1", EVENT("TEXT_DELIVERED", "a1"), 0, TOPIC, url,
	                   "2", NULL);
	assert_int_equal(pthread_create(&t, NULL, bg_post_main, &bg), 0);
	/* No assertion until the thread is joined: it uses this frame. */
	pfd = (struct pollfd){.fd = lfd, .events = POLLIN};
	in_flight = poll(&pfd, 1, 5000) == 1; /* the first fetch is in flight */
	cfd = in_flight ? accept(lfd, NULL, NULL) : -1;

	/* another new certificate URL: 503 at once, no second connection */
	snprintf(url, sizeof(url), "https://127.0.0.1:%u/slow-2.pem", ntohs(sa.sin_port));
	st2 = post(d,
	           envelope("Notification", "m-slow-2", EVENT("TEXT_DELIVERED", "a2"), 0, TOPIC,
	                    url, "2", NULL),
	           "Notification", &r);
	ms2 = r.elapsed_ms;
	retry_after = r.retry_after[0] != '\0';
	/* the other HTTP thread still serves other callbacks */
	h_sid(sid, 72, 1);
	h_twilio_body(body, sizeof(body), sid, "delivered", NULL);
	st3 = h_post_status(d, body, &r);
	ms3 = r.elapsed_ms;
	pfd.revents = 0;
	second_conn = poll(&pfd, 1, 0) != 0;

	/* the hanging host hangs up: the first request is a 503 too */
	if (cfd >= 0)
		close(cfd);
	pthread_join(t, NULL);
	assert_true(in_flight);
	assert_true(cfd >= 0);
	assert_int_equal(st2, 503);
	assert_true(ms2 < 2500);
	assert_true(retry_after);
	assert_int_equal(st3, 200);
	assert_true(ms3 < 2500);
	assert_false(second_conn);
	assert_int_equal(bg.status, 503);
	close(lfd);
	assert_int_equal(h_count(d, "sms_message_events"), 1); /* the Twilio one */

	/* the fetch slot is free again: the real certificate is fetched */
	assert_int_equal(post(d,
	                      envelope("Notification", "m-ok", EVENT("TEXT_DELIVERED", "a3"), 0,
	                               TOPIC, NULL, "2", NULL),
	                      "Notification", &r),
	                 200);
	assert_int_equal(h_count(d, "sms_message_events"), 2);
}

/* A loopback "certificate host" that counts the connections made to it:
 * it hangs up at once (relay_port 0), or relays each connection to
 * 127.0.0.1:relay_port (the HTTPS server).  A connection is counted when
 * accepted, before it is answered, so a fetch that returned was counted. */
struct counter {
	int fd;
	uint16_t port, relay_port;
	atomic_int accepted;
	atomic_bool stop;
	pthread_t t;
};

static void relay(int c, uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int s = socket(AF_INET, SOCK_STREAM, 0);
	char buf[16384];

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		goto out;
	for (;;) {
		struct pollfd p[2] = {{.fd = c, .events = POLLIN}, {.fd = s, .events = POLLIN}};
		if (poll(p, 2, 5000) <= 0)
			break;
		for (int i = 0; i < 2; i++) {
			if (!p[i].revents)
				continue;
			ssize_t n = read(p[i].fd, buf, sizeof(buf));
			if (n <= 0 || write(p[1 - i].fd, buf, (size_t)n) != n)
				goto out;
		}
	}
out:
	if (s >= 0)
		close(s);
}

static void *counter_main(void *arg)
{
	struct counter *k = arg;

	while (!atomic_load(&k->stop)) {
		struct pollfd p = {.fd = k->fd, .events = POLLIN};
		if (poll(&p, 1, 20) != 1)
			continue;
		int c = accept(k->fd, NULL, NULL);
		if (c < 0)
			continue;
		atomic_fetch_add(&k->accepted, 1);
		if (k->relay_port)
			relay(c, k->relay_port);
		close(c);
	}
	return NULL;
}

static void counter_start(struct counter *k, uint16_t relay_port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	k->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(k->fd >= 0);
	assert_int_equal(bind(k->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(k->fd, 16), 0);
	assert_int_equal(getsockname(k->fd, (struct sockaddr *)&sa, &len), 0);
	k->port = ntohs(sa.sin_port);
	k->relay_port = relay_port;
	atomic_init(&k->accepted, 0);
	atomic_init(&k->stop, false);
	assert_int_equal(pthread_create(&k->t, NULL, counter_main, k), 0);
}

static void counter_stop(struct counter *k)
{
	atomic_store(&k->stop, true);
	pthread_join(k->t, NULL);
	close(k->fd);
}

/* Posts a notification naming url as its SigningCertURL n times; each
 * answer must be status.  mid_base makes the MessageIds. */
static void post_n(const struct dlrd *d, const char *url, const char *mid_base, int n, long status)
{
	struct h_resp r;
	char mid[64];

	for (int i = 0; i < n; i++) {
		snprintf(mid, sizeof(mid), "%s-%d", mid_base, i);
		assert_int_equal(post(d,
		                      envelope("Notification", mid, EVENT("TEXT_DELIVERED", "a1"),
		                               0, TOPIC, url, "2", NULL),
		                      "Notification", &r),
		                 status);
	}
}

/* Anyone can name a certificate URL that fails (the signature cannot be
 * checked without it): it is fetched once, and the requests repeating it
 * are answered without fetching (401 refused, 503 temporary) instead of
 * keeping dlrd fetching and the fetch slot from genuine messages.  A
 * temporary failure is remembered for 5 s only (SNS_FAIL_TEMP_MS). */
static void test_failed_certificate_not_refetched(void **state)
{
	struct dlrd *d = *state;
	struct counter down, proxy;
	char gone[256], url[256];

	SKIP_WITHOUT_OPENSSL();
	counter_start(&down, 0);
	counter_start(&proxy, tls.port);
	/* temporary: the host hangs up */
	snprintf(gone, sizeof(gone), "https://127.0.0.1:%u/signing.pem", down.port);
	post_n(d, gone, "t", 5, 503);
	assert_int_equal(atomic_load(&down.accepted), 1);
	/* refused: the TLS peer does not verify for that name */
	snprintf(url, sizeof(url), "https://localhost:%u/signing.pem", proxy.port);
	post_n(d, url, "r", 5, 401);
	assert_int_equal(atomic_load(&proxy.accepted), 1);
	/* refused: served, but not a certificate */
	snprintf(url, sizeof(url), "https://127.0.0.1:%u/missing.pem", proxy.port);
	post_n(d, url, "m", 3, 401);
	assert_int_equal(atomic_load(&proxy.accepted), 2);
	expect_nothing_written(d);
	/* the same host's real certificate: fetched once, then cached */
	snprintf(url, sizeof(url), "https://127.0.0.1:%u/signing.pem", proxy.port);
	post_n(d, url, "ok", 2, 200);
	assert_int_equal(atomic_load(&proxy.accepted), 3);
	assert_int_equal(h_count(d, "sms_message_events"), 2);
	/* a temporary failure is not remembered for long */
	h_sleep_ms(5300);
	post_n(d, gone, "t2", 2, 503);
	assert_int_equal(atomic_load(&down.accepted), 2);
	counter_stop(&proxy);
	counter_stop(&down);
}

static void test_unsubscribe_reviewed(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char buf[512];

	SKIP_WITHOUT_OPENSSL();
	assert_int_equal(
	    post(d,
	         envelope("UnsubscribeConfirmation", "u-1",
	                  "You have chosen to deactivate subscription", 0, TOPIC, NULL, "2",
	                  "https://sns.us-east-1.amazonaws.com/?Action=Subscribe"),
	         "UnsubscribeConfirmation", &r),
	    200);
	assert_string_equal(h_sql_str(d, buf, sizeof(buf), "SELECT reason FROM review_queue"),
	                    "unusable_payload");
	assert_int_equal(h_count(d, "sms_messages"), 0);
}

/* Last: it stops the HTTPS server to read its complete log. */
static void test_subscription_confirmed(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char url[256], *log;

	SKIP_WITHOUT_OPENSSL();
	snprintf(url, sizeof(url), "https://127.0.0.1:%u/" CONFIRM, tls.port);
	assert_int_equal(
	    post(d,
	         envelope("SubscriptionConfirmation", "s-1",
	                  "You have chosen to subscribe to the topic", 0, TOPIC, NULL, "1", url),
	         "SubscriptionConfirmation", &r),
	    200);
	expect_nothing_written(d);
	assert_true(h_log_contains(d, "sns_subscription_confirmed"));
	assert_int_equal(
	    h_metric(d, "dlrd_callbacks_total{provider=\"sns\",outcome=\"handshake\"}"), 1);
	server_stop();
	log = h_read_file(tls.log, NULL);
	assert_non_null(log);
	assert_non_null(strstr(log, "FILE:" CONFIRM));
	free(log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_notification_stored_and_deduped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_forged_stale_unknown_topic, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_certificate_problems, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_one_certificate_fetch_at_a_time, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_one_certificate_fetch_at_a_time, setup_one_thread,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_failed_certificate_not_refetched, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unsubscribe_reviewed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_subscription_confirmed, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
