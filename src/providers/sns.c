/* SPDX-License-Identifier: MIT */
/*
 * AWS End User Messaging SMS (formerly Pinpoint SMS) delivery events, as an
 * Amazon SNS topic delivers them to an HTTPS subscription:
 *
 *   POST /webhooks/sns/status, Content-Type text/plain (SNS's default) or
 *   application/json, body = the SNS envelope (JSON) whose Message is the
 *   event (JSON in a string).
 *
 * Authentication is the SNS message signature, checked as AWS documents
 * ("Verifying the signatures of Amazon SNS messages") and as AWS's own
 * validators do (aws-js-sns-message-validator, aws-php-sns-message-validator):
 *
 * - the string to sign is "<key>\n<value>\n" for each key present, in this
 *   order: Notification: Message, MessageId, Subject, Timestamp, TopicArn,
 *   Type; SubscriptionConfirmation and UnsubscribeConfirmation: Message,
 *   MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type (values are
 *   the JSON-unescaped strings);
 * - SignatureVersion 1 is SHA1withRSA, 2 is SHA256withRSA, Signature is
 *   base64;
 * - the public key is the certificate at SigningCertURL, which must be
 *   https, on an allowed host ([sns] cert_hosts; by default AWS's
 *   "sns.<region>.amazonaws.com[.cn]", see aws_host_ok), with a path ending
 *   in ".pem" and no query, fragment or user info.  It is fetched with
 *   libcurl, the TLS peer verified against the system trust store or
 *   [sns] ca_file alone when set (a private trust anchor for private
 *   deployments and tests), and it must be within its validity period.
 *   Certificates are cached by URL (16 entries, least recently used out,
 *   re-fetched after a day or at their expiry).  At most one fetch runs
 *   at a time: a cache miss while another fetch is in flight is answered
 *   503 at once (SNS retries), so requests naming fresh certificate URLs
 *   (the host is checked, the path is anyone's choice) can hold at most one
 *   HTTP thread, never all of them.  A failed fetch is remembered too, in
 *   a second table of 16 URLs (least recently used out), so that requests
 *   repeating a failing URL (sent by anyone: the signature cannot be
 *   checked without the certificate) neither fetch again nor take the
 *   fetch slot from genuine messages: a refused URL (below) is answered
 *   401 without fetching for SNS_FAIL_REFUSED_MS (60 s), a temporary
 *   failure 503 for SNS_FAIL_TEMP_MS (5 s), short so that one lost
 *   connection delays AWS's own certificate only by a few seconds.  A
 *   request naming a fresh URL still costs one fetch (one at a time);
 * - TopicArn must be one of [sns] topic_arns;
 * - Timestamp must be within tolerance_seconds (default 4200) of our clock,
 *   either way.  SNS retries an HTTP/S delivery with the original MessageId
 *   and Timestamp for up to 3600 s (a hard cap on any delivery policy), so
 *   the default is that hour plus ten minutes for the time before the first
 *   attempt and clock skew.  Replays inside the window are harmless: the
 *   SNS MessageId is the event id, so a replay is a duplicate.
 *
 * Raw message delivery (a subscription attribute) sends the bare event with
 * no envelope, so nothing can be verified: such a request is refused with
 * 401 ("x-amz-sns-rawdelivery: true", or no Type/Signature/SigningCertURL in
 * the body).  Disable RawMessageDelivery on the subscription.
 *
 * When the certificate cannot be fetched for a temporary reason (connection,
 * timeout, 5xx), nothing is stored and the answer is 503, so SNS retries;
 * a certificate that is refused (TLS verification, 4xx, not a certificate,
 * expired) is a 401.  Either answer is repeated without fetching while the
 * failure is remembered (see above).
 *
 * Message types:
 * - SubscriptionConfirmation: verified like any message, then confirmed by
 *   fetching SubscribeURL (https, allowed host) and answered 200 with
 *   nothing stored (a log line records it).  A SubscribeURL on a host that
 *   is not allowed, or refused by SNS (4xx: the token expires after three
 *   days), becomes a review row; a temporary failure is a 503 so SNS sends
 *   the confirmation again.
 * - UnsubscribeConfirmation: a review row (the endpoint was unsubscribed, so
 *   events stop), SubscribeURL not visited.
 * - Notification: one event from the Message (below).
 *
 * The event (AWS "Messaging events"): eventType is the raw status, mapped
 * as in status_map; messageId (the message's id from SendTextMessage,
 * lower-cased when hex) is the message; the SNS MessageId is the event id;
 * eventTimestamp (ms) the event time; destinationPhoneNumber the
 * recipient, isoCountryCode (when present) its country; originationPhoneNumber
 * our sender.  For failure event types the eventType is also the error code
 * (see sns_errors).  isFinal is trusted: a failure type with isFinal false
 * (AWS may still retry) is stored as sent, keeping its error code.
 * TEXT_SUCCESSFUL means the recipient's carrier accepted the message: it is
 * sent even with isFinal true (AWS then expects nothing more, but it is not
 * a handset receipt); a TEXT_DELIVERED, where the country has one, wins.
 * A Message that is not an SMS event (MMS, voice, registration events on the
 * same topic) becomes a review row: send only TEXT_* events to this topic.
 *
 * What AWS does not tell: an event id stable across re-publication (the SNS
 * MessageId is per SNS message), and the carrier's error code.
 *
 * Threads: the state is read-only after init except the certificate cache
 * and the table of failed fetches, which one mutex guards.  A cache miss
 * (one at a time) and a subscription confirmation (signed messages only)
 * block the calling HTTP thread for at most SNS_FETCH_TIMEOUT_MS.
 */
#include <assert.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "crypto.h"
#include "dlrd_limits.h"
#include "json.h"
#include "log.h"
#include "provider.h"

#ifndef DLRD_VERSION
#define DLRD_VERSION "dev"
#endif

#define SNS_TOLERANCE_DEFAULT  4200u
#define SNS_CACHE_SLOTS        16
#define SNS_CACHE_TTL_MS       (24LL * 3600 * 1000)
#define SNS_FAIL_SLOTS         16
#define SNS_FAIL_REFUSED_MS    (60LL * 1000) /* a refused URL: 401 without fetching */
#define SNS_FAIL_TEMP_MS       (5LL * 1000)  /* a temporary failure: 503 without fetching */
#define SNS_FAIL_REASON_MAX    160u
#define SNS_CERT_MAX           16384u /* bytes of PEM */
#define SNS_CONFIRM_MAX        16384u /* bytes of ConfirmSubscription answer */
#define SNS_URL_MAX            2048u
#define SNS_SIG_B64_MAX        1368u /* base64 of a 8192-bit RSA signature */
#define SNS_CONNECT_TIMEOUT_MS 3000L
#define SNS_FETCH_TIMEOUT_MS   5000L

enum sns_type { SNS_NOTIFICATION, SNS_SUB_CONFIRM, SNS_UNSUB_CONFIRM };

/* One cached signing certificate's key. */
struct sns_cert {
	char *url;          /* heap; NULL when the slot is free */
	EVP_PKEY *key;      /* reference held by the cache */
	int64_t expires_ms; /* re-fetch after this */
	uint64_t used;      /* LRU stamp */
};

/* One certificate URL whose fetch failed, answered without fetching until
 * until_ms. */
struct sns_fail {
	char *url;                        /* heap; NULL when the slot is free */
	int rc;                           /* DLRD_EAUTH (refused) or DLRD_EIO (temporary) */
	int64_t until_ms;                 /* fetch again from then */
	uint64_t used;                    /* LRU stamp */
	char reason[SNS_FAIL_REASON_MAX]; /* the fetch's error, never a secret */
};

struct sns {
	char **topics;
	size_t n_topics;
	char **hosts; /* exact host names, lower case */
	size_t n_hosts;
	bool aws_hosts; /* AWS's own sns.<region>.amazonaws.com[.cn] */
	char *ca_file;  /* NULL: the system trust store */
	int64_t tolerance_ms;
	/* The certificate cache and the failed fetches: the mutable part of
	 * the state, shared by the HTTP threads under mu. */
	pthread_mutex_t mu;
	struct sns_cert cache[SNS_CACHE_SLOTS];
	struct sns_fail failed[SNS_FAIL_SLOTS];
	uint64_t tick; /* LRU stamps of both tables */
	bool fetching; /* a certificate fetch is in flight */
};

/* The verified envelope, in the request arena, for parse(). */
struct sns_msg {
	enum sns_type type;
	bool unavailable; /* the certificate could not be fetched just now */
	const char *message;
	size_t message_len;
	const char *message_id;
	const char *topic;
	const char *subscribe_url;
};

/* eventType -> normalized status. */
static const struct {
	const char *type;
	enum dlr_status st;
} status_map[] = {
    {"TEXT_QUEUED", ST_ACCEPTED},
    {"TEXT_PENDING", ST_SENT},
    /* carrier acceptance, not a handset receipt (see the header) */
    {"TEXT_SUCCESSFUL", ST_SENT},
    {"TEXT_DELIVERED", ST_DELIVERED},
    {"TEXT_BLOCKED", ST_REJECTED},
    {"TEXT_TTL_EXPIRED", ST_EXPIRED},
    {"TEXT_CARRIER_UNREACHABLE", ST_UNDELIVERED},
    {"TEXT_INVALID", ST_REJECTED},
    {"TEXT_INVALID_MESSAGE", ST_REJECTED},
    {"TEXT_CARRIER_BLOCKED", ST_REJECTED},
    {"TEXT_UNREACHABLE", ST_UNDELIVERED},
    {"TEXT_SPAM", ST_REJECTED},
    {"TEXT_UNKNOWN", ST_UNKNOWN},
    {"TEXT_PROTECT_BLOCKED", ST_REJECTED},
};

/* Failure event types, which are also the error code.  Titles are AWS's
 * event names; reasons are our judgment. */
static const struct provider_error sns_errors[] = {
    {"TEXT_BLOCKED", ER_CARRIER_FILTERED, "Blocked by the recipient's device or carrier"},
    {"TEXT_TTL_EXPIRED", ER_EXPIRED, "TTL expired"},
    {"TEXT_CARRIER_UNREACHABLE", ER_PROVIDER_ERROR, "Carrier unreachable (temporary)"},
    {"TEXT_INVALID", ER_INVALID_NUMBER, "Invalid destination phone number"},
    {"TEXT_INVALID_MESSAGE", ER_UNKNOWN, "Invalid message body"},
    {"TEXT_CARRIER_BLOCKED", ER_CARRIER_FILTERED, "Blocked by the recipient's carrier"},
    {"TEXT_UNREACHABLE", ER_UNREACHABLE, "Recipient device unreachable"},
    {"TEXT_SPAM", ER_SPAM_BLOCKED, "Blocked by the carrier as spam"},
    {"TEXT_UNKNOWN", ER_UNKNOWN, "Unknown"},
    {"TEXT_PROTECT_BLOCKED", ER_SPAM_BLOCKED, "Blocked by an SMS Protect configuration"},
    {NULL, ER_NONE, NULL},
};

static const struct config_key sns_keys[] = {
    {"topic_arns", "comma-separated SNS topic ARNs accepted (required to enable sns)"},
    {"cert_hosts", "hosts allowed for SigningCertURL and SubscribeURL: \"aws\" (default) "
                   "and/or exact host names"},
    {"ca_file", "PEM trust anchors for fetching certificates instead of the system store"},
    {"tolerance_seconds", "accepted distance of the envelope Timestamp from now, either way "
                          "(default 4200)"},
    {NULL, NULL},
};

/* ---- configuration ---- */

static void sns_fini(void *state)
{
	struct sns *s = state;
	if (!s)
		return;
	for (size_t i = 0; i < SNS_CACHE_SLOTS; i++) {
		free(s->cache[i].url);
		EVP_PKEY_free(s->cache[i].key);
	}
	for (size_t i = 0; i < SNS_FAIL_SLOTS; i++)
		free(s->failed[i].url);
	pthread_mutex_destroy(&s->mu);
	config_list_free(s->topics);
	config_list_free(s->hosts);
	free(s->ca_file);
	free(s);
	curl_global_cleanup();
}

/* A host name or IP literal as an operator would write it. */
static bool host_syntax_ok(const char *h)
{
	if (!*h || strlen(h) > 253)
		return false;
	for (const char *p = h; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789.-:[]", *p))
			return false;
	return true;
}

static int sns_init(const struct config *cfg, void **state, char *err, size_t errlen)
{
	const char *topics = config_get(cfg, "sns", "topic_arns");
	const char *hosts = config_get(cfg, "sns", "cert_hosts");
	const char *ca = config_get(cfg, "sns", "ca_file");
	int64_t tol_s;
	struct sns *s;
	size_t n = 0, n_hosts = 0;
	char **list, **host_list = NULL;
	bool aws_hosts = false;

	*state = NULL;
	/* Every key but topic_arns is checked even while topic_arns is unset:
	 * a bad value stops start-up either way. */
	if (provider_config_tolerance(cfg, "sns", SNS_TOLERANCE_DEFAULT, &tol_s, err, errlen))
		return DLRD_ECONFIG;
	host_list = config_list(hosts ? hosts : "aws", &n_hosts);
	for (size_t i = 0; i < n_hosts; i++) {
		for (char *p = host_list[i]; *p; p++)
			*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
		if (strcmp(host_list[i], "aws") == 0) {
			aws_hosts = true;
			continue;
		}
		if (!host_syntax_ok(host_list[i])) {
			util_fmt(err, errlen, "config: sns.cert_hosts: item %zu is not a host name",
			         i + 1);
			goto refuse;
		}
	}
	if (n_hosts == 0) {
		util_fmt(err, errlen, "config: sns.cert_hosts: no host");
		goto refuse;
	}
	if (ca && access(ca, R_OK) != 0) {
		util_fmt(err, errlen, "config: sns.ca_file: cannot read the file");
		goto refuse;
	}
	/* Not provider_config_list(): topics are not secrets, so there is no
	 * rotation limit on how many one endpoint takes. */
	list = config_list(topics, &n);
	if (n == 0) {
		config_list_free(list);
		config_list_free(host_list);
		return 0;
	}
	s = xcalloc(1, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	curl_global_init(CURL_GLOBAL_DEFAULT); /* main thread, before any other */
	s->topics = list;
	s->n_topics = n;
	s->tolerance_ms = tol_s * 1000;
	s->hosts = host_list;
	s->n_hosts = n_hosts;
	s->aws_hosts = aws_hosts;
	if (ca)
		s->ca_file = xstrdup(ca);
	for (size_t i = 0; i < n; i++) {
		if (strncmp(list[i], "arn:", 4) != 0 || strstr(list[i], ":sns:") == NULL) {
			util_fmt(err, errlen,
			         "config: sns.topic_arns: item %zu is not an SNS topic ARN", i + 1);
			sns_fini(s);
			return DLRD_ECONFIG;
		}
	}
	*state = s;
	return 0;
refuse:
	config_list_free(host_list);
	return DLRD_ECONFIG;
}

/* ---- URLs and fetching ---- */

/* AWS's host rule, stricter than the validators' regular expression
 * ^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$: the middle label must
 * look like a region ("us-east-1", "us-gov-west-1", "cn-north-1": two
 * letters, one or more "-letters", "-digits"), so that S3's legacy
 * bucket hosts such as "sns.s3-us-west-2.amazonaws.com", which the regular
 * expression admits, are not. */
static bool aws_host_ok(const char *h)
{
	size_t n = strlen(h);
	const char *r, *end;
	static const char com[] = ".amazonaws.com", cn[] = ".amazonaws.com.cn";

	if (n < 4 || strncasecmp(h, "sns.", 4) != 0)
		return false;
	if (n > sizeof(cn) - 1 && strcasecmp(h + n - (sizeof(cn) - 1), cn) == 0)
		end = h + n - (sizeof(cn) - 1);
	else if (n > sizeof(com) - 1 && strcasecmp(h + n - (sizeof(com) - 1), com) == 0)
		end = h + n - (sizeof(com) - 1);
	else
		return false;
	r = h + 4;
#define LOWER(c) ((c) >= 'A' && (c) <= 'Z' ? (c) + 32 : (c))
#define ALPHA(c) (LOWER(c) >= 'a' && LOWER(c) <= 'z')
#define DIGIT(c) ((c) >= '0' && (c) <= '9')
	if (end - r < 6 || !ALPHA(r[0]) || !ALPHA(r[1]) || r[2] != '-')
		return false;
	r += 2;
	/* ("-" letters)+ "-" digits */
	size_t words = 0;
	while (r < end && *r == '-' && r + 1 < end && ALPHA(r[1])) {
		r++;
		while (r < end && ALPHA(*r))
			r++;
		words++;
	}
	if (words == 0 || r >= end || *r != '-' || r + 1 >= end)
		return false;
	for (r++; r < end; r++)
		if (!DIGIT(*r))
			return false;
#undef LOWER
#undef ALPHA
#undef DIGIT
	return true;
}

static bool host_allowed(const struct sns *s, const char *host)
{
	if (s->aws_hosts && aws_host_ok(host))
		return true;
	for (size_t i = 0; i < s->n_hosts; i++)
		if (strcasecmp(s->hosts[i], host) == 0)
			return true;
	return false;
}

/* Parses url with libcurl's own parser (so the host checked is the host
 * libcurl will connect to) and checks it: https, an allowed host, no user
 * info or fragment; for a certificate also a path ending in ".pem" and no
 * query.  Returns the parsed handle (free with curl_url_cleanup) or NULL
 * with err set. */
static CURLU *check_url(const struct sns *s, const char *url, bool cert, char *err, size_t errlen)
{
	CURLU *u = NULL;
	char *scheme = NULL, *host = NULL, *path = NULL, *x = NULL;
	size_t n = strlen(url);
	bool ok = false;

	if (n == 0 || n > SNS_URL_MAX)
		goto out;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
			goto out;
	u = curl_url();
	if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    strcasecmp(scheme, "https") != 0)
		goto out;
	if (curl_url_get(u, CURLUPART_USER, &x, 0) != CURLUE_NO_USER)
		goto out;
	if (curl_url_get(u, CURLUPART_FRAGMENT, &x, 0) != CURLUE_NO_FRAGMENT)
		goto out;
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host_allowed(s, host))
		goto out;
	if (cert) {
		size_t pl;
		if (curl_url_get(u, CURLUPART_QUERY, &x, 0) != CURLUE_NO_QUERY)
			goto out;
		if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
			goto out;
		pl = strlen(path);
		if (pl < 5 || strcmp(path + pl - 4, ".pem") != 0)
			goto out;
	}
	ok = true;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(path);
	curl_free(x);
	if (!ok) {
		util_fmt(err, errlen,
		         cert ? "SigningCertURL is not an https .pem URL on an allowed host"
		              : "SubscribeURL is not an https URL on an allowed host");
		curl_url_cleanup(u);
		return NULL;
	}
	return u;
}

struct fetch_buf {
	char *p;
	size_t n, max;
};

static size_t fetch_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct fetch_buf *b = arg;
	size_t n = size * nmemb;
	if (n > b->max - b->n)
		return 0; /* too big: libcurl fails with CURLE_WRITE_ERROR */
	memcpy(b->p + b->n, data, n);
	b->n += n;
	return n;
}

/* GETs u (ownership stays with the caller) into a heap buffer of at most
 * max bytes (NUL-terminated; free it).  Returns 0 for a 2xx answer;
 * DLRD_EIO for a failure worth retrying (connection, timeout, 5xx);
 * DLRD_EAUTH for a refusal (TLS verification, 4xx or other status, too
 * big).  err gets a reason without secrets. */
static int fetch(const struct sns *s, CURLU *u, size_t max, char **out, size_t *outlen, char *err,
                 size_t errlen)
{
	struct fetch_buf b = {xmalloc(max + 1), 0, max};
	CURL *c = curl_easy_init();
	CURLcode cc;
	long status = 0;
	int rc;

	*out = NULL;
	*outlen = 0;
	if (!c) {
		free(b.p);
		util_fmt(err, errlen, "libcurl: cannot make a handle");
		return DLRD_EIO;
	}
	curl_easy_setopt(c, CURLOPT_CURLU, u);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, SNS_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, SNS_FETCH_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (s->ca_file) {
		curl_easy_setopt(c, CURLOPT_CAINFO, s->ca_file);
		curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
	}
	curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "dlrd/" DLRD_VERSION);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fetch_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);

	switch (cc) {
	case CURLE_OK:
		if (status >= 200 && status < 300) {
			b.p[b.n] = '\0';
			*out = b.p;
			*outlen = b.n;
			return 0;
		}
		util_fmt(err, errlen, "HTTP status %ld", status);
		rc = status >= 500 ? DLRD_EIO : DLRD_EAUTH;
		break;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_WRITE_ERROR:
	case CURLE_FILESIZE_EXCEEDED:
	case CURLE_URL_MALFORMAT:
		util_fmt(err, errlen, "refused: %s", curl_easy_strerror(cc));
		rc = DLRD_EAUTH;
		break;
	default:
		util_fmt(err, errlen, "%s", curl_easy_strerror(cc));
		rc = DLRD_EIO;
		break;
	}
	free(b.p);
	return rc;
}

/* ---- the certificate cache ---- */

/* The public key of a PEM certificate, or NULL.  With check_dates, the
 * certificate must be valid now; *expires_ms gets when to drop it. */
static EVP_PKEY *cert_key(const char *pem, size_t n, bool check_dates, int64_t now_ms,
                          int64_t *expires_ms)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)n);
	X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	EVP_PKEY *key = NULL;
	int day = 0, sec = 0;

	*expires_ms = now_ms + SNS_CACHE_TTL_MS;
	if (!x)
		goto out;
	if (check_dates) {
		if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0 ||
		    X509_cmp_current_time(X509_get0_notAfter(x)) <= 0)
			goto out;
		if (ASN1_TIME_diff(&day, &sec, NULL, X509_get0_notAfter(x))) {
			int64_t left = ((int64_t)day * 86400 + sec) * 1000;
			if (left < SNS_CACHE_TTL_MS)
				*expires_ms = now_ms + left;
		}
	}
	key = X509_get_pubkey(x);
out:
	X509_free(x);
	BIO_free(bio);
	return key;
}

/* Puts url -> key in the cache (taking a reference to key) in the slot
 * already holding url, else a free slot, else an expired one, else the
 * least recently used.  Caller holds s->mu. */
static void cache_insert_locked(struct sns *s, const char *url, EVP_PKEY *key, int64_t expires_ms,
                                int64_t now_ms)
{
	struct sns_cert *victim = NULL;

	for (size_t i = 0; i < SNS_CACHE_SLOTS && !victim; i++)
		if (s->cache[i].url && strcmp(s->cache[i].url, url) == 0)
			victim = &s->cache[i];
	for (size_t i = 0; i < SNS_CACHE_SLOTS && !victim; i++)
		if (!s->cache[i].url)
			victim = &s->cache[i];
	for (size_t i = 0; i < SNS_CACHE_SLOTS && !victim; i++)
		if (s->cache[i].expires_ms <= now_ms)
			victim = &s->cache[i];
	if (!victim) {
		victim = &s->cache[0];
		for (size_t i = 1; i < SNS_CACHE_SLOTS; i++)
			if (s->cache[i].used < victim->used)
				victim = &s->cache[i];
	}
	free(victim->url);
	EVP_PKEY_free(victim->key);
	EVP_PKEY_up_ref(key);
	victim->url = xstrdup(url);
	victim->key = key;
	victim->expires_ms = expires_ms;
	victim->used = ++s->tick;
}

/* Puts a PEM certificate in the cache for url: what a fetch does, and how
 * tests inject a certificate.  Returns the key (a reference for the
 * caller; EVP_PKEY_free it), or NULL when pem is not a certificate, or
 * (with check_dates) is outside its validity period. */
static EVP_PKEY *sns_cache_put(struct sns *s, const char *url, const char *pem, size_t n,
                               int64_t now_ms, bool check_dates)
{
	int64_t expires;
	EVP_PKEY *key = cert_key(pem, n, check_dates, now_ms, &expires);

	if (!key)
		return NULL;
	pthread_mutex_lock(&s->mu);
	cache_insert_locked(s, url, key, expires, now_ms);
	pthread_mutex_unlock(&s->mu);
	return key;
}

/* The remembered failure of url that is still in force, or NULL.  Caller
 * holds s->mu. */
static struct sns_fail *fail_find_locked(struct sns *s, const char *url, int64_t now_ms)
{
	for (size_t i = 0; i < SNS_FAIL_SLOTS; i++) {
		struct sns_fail *f = &s->failed[i];
		if (f->url && f->until_ms > now_ms && strcmp(f->url, url) == 0)
			return f;
	}
	return NULL;
}

/* Remembers that fetching url failed at now_ms with rc (DLRD_EAUTH or
 * DLRD_EIO) and reason, in the slot already holding url, else a free slot, else an
 * expired one, else the least recently used.  Caller holds s->mu. */
static void fail_insert_locked(struct sns *s, const char *url, int rc, const char *reason,
                               int64_t now_ms)
{
	struct sns_fail *victim = NULL;

	assert(rc == DLRD_EAUTH || rc == DLRD_EIO);
	for (size_t i = 0; i < SNS_FAIL_SLOTS && !victim; i++)
		if (s->failed[i].url && strcmp(s->failed[i].url, url) == 0)
			victim = &s->failed[i];
	for (size_t i = 0; i < SNS_FAIL_SLOTS && !victim; i++)
		if (!s->failed[i].url)
			victim = &s->failed[i];
	for (size_t i = 0; i < SNS_FAIL_SLOTS && !victim; i++)
		if (s->failed[i].until_ms <= now_ms)
			victim = &s->failed[i];
	if (!victim) {
		victim = &s->failed[0];
		for (size_t i = 1; i < SNS_FAIL_SLOTS; i++)
			if (s->failed[i].used < victim->used)
				victim = &s->failed[i];
	}
	if (!victim->url || strcmp(victim->url, url) != 0) {
		free(victim->url);
		victim->url = xstrdup(url);
	}
	victim->rc = rc;
	victim->until_ms = now_ms + (rc == DLRD_EAUTH ? SNS_FAIL_REFUSED_MS : SNS_FAIL_TEMP_MS);
	victim->used = ++s->tick;
	util_fmt(victim->reason, sizeof(victim->reason), "%s", reason);
}

/* Forgets a failure of url (its certificate is cached now).  Caller holds
 * s->mu. */
static void fail_remove_locked(struct sns *s, const char *url)
{
	for (size_t i = 0; i < SNS_FAIL_SLOTS; i++) {
		struct sns_fail *f = &s->failed[i];
		if (f->url && strcmp(f->url, url) == 0) {
			free(f->url);
			memset(f, 0, sizeof(*f));
		}
	}
}

/* The key for a certificate URL: from the cache, else refused while an
 * earlier fetch's failure is remembered, else fetched (and cached, or its
 * failure remembered).  Returns 0 with a reference in *key (EVP_PKEY_free
 * it), DLRD_EIO (temporary), DLRD_EAUTH (refused) or DLRD_EBUSY (another
 * fetch is in flight), with err set.  Any HTTP thread. */
static int cert_get(const struct sns *cs, CURLU *u, const char *url, int64_t now_ms, EVP_PKEY **key,
                    char *err, size_t errlen)
{
	/* The cache is the mutable part of the state; its mutex guards it. */
	struct sns *s = (struct sns *)cs;
	struct sns_fail *f;
	char *pem = NULL;
	size_t n;
	int64_t t0;
	int rc = 0;
	bool fetch_now = false;

	*key = NULL;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < SNS_CACHE_SLOTS; i++) {
		struct sns_cert *c = &s->cache[i];
		if (c->url && c->expires_ms > now_ms && strcmp(c->url, url) == 0) {
			EVP_PKEY_up_ref(c->key);
			*key = c->key;
			c->used = ++s->tick;
			break;
		}
	}
	if (*key) {
		/* a hit */
	} else if ((f = fail_find_locked(s, url, now_ms)) != NULL) {
		f->used = ++s->tick;
		rc = f->rc;
		util_fmt(err, errlen, "%s (remembered, not fetched again for %lld s)", f->reason,
		         (long long)((f->until_ms - now_ms + 999) / 1000));
	} else if (s->fetching) {
		util_fmt(err, errlen, "another certificate fetch is in flight");
		rc = DLRD_EBUSY;
	} else {
		s->fetching = true;
		fetch_now = true;
	}
	pthread_mutex_unlock(&s->mu);
	if (!fetch_now)
		return rc;

	t0 = util_mono_ms();
	rc = fetch(s, u, SNS_CERT_MAX, &pem, &n, err, errlen);
	if (rc == 0) {
		*key = sns_cache_put(s, url, pem, n, now_ms, true);
		if (!*key) {
			util_fmt(err, errlen, "SigningCertURL is not a certificate valid now");
			rc = DLRD_EAUTH;
		}
	}
	free(pem);
	/* The failure is remembered before the fetch slot is free, so no other
	 * request fetches the same URL again in between, and from the end of
	 * the fetch: one that timed out is not tried again at once. */
	pthread_mutex_lock(&s->mu);
	if (rc != 0)
		fail_insert_locked(s, url, rc, err, now_ms + (util_mono_ms() - t0));
	else
		fail_remove_locked(s, url);
	s->fetching = false;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* ---- authentication ---- */

/* Appends "key\nvalue\n" to the string to sign. */
static void sign_add(char *buf, size_t *at, const char *key, const char *val, size_t vlen)
{
	size_t kl = strlen(key);
	memcpy(buf + *at, key, kl);
	buf[*at + kl] = '\n';
	memcpy(buf + *at + kl + 1, val, vlen);
	buf[*at + kl + 1 + vlen] = '\n';
	*at += kl + vlen + 2;
}

static bool rsa_verify(EVP_PKEY *key, bool sha256, const char *msg, size_t n, const uint8_t *sig,
                       size_t sl)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	bool ok =
	    c &&
	    EVP_DigestVerifyInit(c, NULL, sha256 ? EVP_sha256() : EVP_sha1(), NULL, key) == 1 &&
	    EVP_DigestVerify(c, sig, sl, (const unsigned char *)msg, n) == 1;
	EVP_MD_CTX_free(c);
	return ok;
}

/* Whether the n bytes at topic are one of [sns] topic_arns. */
static bool topic_allowed(const struct sns *s, const char *topic, size_t n)
{
	bool ok = false;
	for (size_t i = 0; i < s->n_topics; i++)
		ok |= strlen(s->topics[i]) == n && memcmp(s->topics[i], topic, n) == 0;
	return ok;
}

/* Whether a Timestamp of ts_ms is within tolerance_seconds of now_ms. */
static bool ts_in_window(const struct sns *s, int64_t now_ms, int64_t ts_ms)
{
	int64_t skew = now_ms - ts_ms;
	return skew <= s->tolerance_ms && -skew <= s->tolerance_ms;
}

static int sns_authenticate(const void *state, struct provider_request *req, char *err,
                            size_t errlen)
{
	const struct sns *s = state;
	struct sns_msg *m = arena_alloc(req->arena, sizeof(*m));
	json_t *root = NULL;
	const char *type, *sigb64, *cert_url, *msg, *mid, *topic, *ts, *ver, *subject = NULL;
	const char *sub_url = NULL, *token = NULL, *hdr;
	size_t type_n, msg_n, mid_n, topic_n, ts_n, sig_n, subject_n = 0, sub_n = 0, token_n = 0;
	int64_t ts_ms;
	uint8_t *sig = NULL;
	size_t sig_len, at = 0;
	char *tosign;
	EVP_PKEY *key = NULL;
	CURLU *u = NULL;
	int rc = DLRD_EAUTH;

	memset(m, 0, sizeof(*m));
	req->scratch = m;
	if (strcmp(req->method, "POST") != 0) {
		util_fmt(err, errlen, "SNS deliveries are POST");
		return DLRD_EMETHOD;
	}
	if (strcmp(req->content_type, "text/plain") != 0 &&
	    strcmp(req->content_type, "application/json") != 0) {
		util_fmt(err, errlen, "content type must be text/plain or application/json");
		return DLRD_EUNSUPP;
	}
	hdr = req->header(req->hctx, "x-amz-sns-rawdelivery");
	if (hdr && strcasecmp(hdr, "true") == 0) {
		util_fmt(err, errlen, "raw message delivery cannot be verified; disable it");
		return DLRD_EAUTH;
	}
	/* What a forgery costs: jansson spends about 20 ns a byte of the
	 * envelope (over 1 ms for 64 KiB), so once the values are counted
	 * (a scan that stops at the first one too many), an envelope whose
	 * TopicArn is not ours, or whose Timestamp is outside the window, is
	 * refused from one more scan of the raw bytes, before anything is
	 * parsed: the checks below, in the same order, with the same answers,
	 * for any envelope whose two members are plain strings. */
	if (!jsonx_values_ok(req->body.p, req->body.n, LIM_JSON_UNAUTH_VALUES)) {
		util_fmt(err, errlen, "body has more than %u JSON values", LIM_JSON_UNAUTH_VALUES);
		return DLRD_EINVAL;
	}
	{
		static const char *const peek[] = {"TopicArn", "Timestamp"};
		struct iov pv[ARRAY_LEN(peek)];
		jsonx_peek_strings(req->body.p, req->body.n, peek, ARRAY_LEN(peek), pv);
		if (pv[0].p && !topic_allowed(s, pv[0].p, pv[0].n)) {
			util_fmt(err, errlen, "TopicArn is not in sns.topic_arns");
			return DLRD_EAUTH;
		}
		if (pv[1].p && util_parse_rfc3339(pv[1].p, pv[1].n, &ts_ms) == 0 &&
		    !ts_in_window(s, req->now_ms, ts_ms)) {
			util_fmt(err, errlen, "Timestamp outside the tolerance");
			return DLRD_ESTALE;
		}
	}
	root = jsonx_load_object(req->body.p, req->body.n, err, errlen);
	if (!root) {
		rc = DLRD_EINVAL;
		goto out;
	}
	type = jsonx_member_string(root, "Type", &type_n);
	sigb64 = jsonx_member_string(root, "Signature", &sig_n);
	cert_url = jsonx_member_string(root, "SigningCertURL", NULL);
	if (!cert_url)
		cert_url = jsonx_member_string(root, "SigningCertUrl", NULL);
	if (!type || !sigb64 || !cert_url) {
		util_fmt(err, errlen,
		         "no SNS signature envelope (raw message delivery is not "
		         "supported)");
		goto out;
	}
	if (strcmp(type, "Notification") == 0) {
		m->type = SNS_NOTIFICATION;
	} else if (strcmp(type, "SubscriptionConfirmation") == 0) {
		m->type = SNS_SUB_CONFIRM;
	} else if (strcmp(type, "UnsubscribeConfirmation") == 0) {
		m->type = SNS_UNSUB_CONFIRM;
	} else {
		util_fmt(err, errlen, "unknown SNS message Type");
		goto out;
	}
	hdr = req->header(req->hctx, "x-amz-sns-message-type");
	if (hdr && strcmp(hdr, type) != 0) {
		util_fmt(err, errlen, "x-amz-sns-message-type does not match Type");
		goto out;
	}
	msg = jsonx_member_string(root, "Message", &msg_n);
	mid = jsonx_member_string(root, "MessageId", &mid_n);
	topic = jsonx_member_string(root, "TopicArn", &topic_n);
	ts = jsonx_member_string(root, "Timestamp", &ts_n);
	ver = jsonx_member_string(root, "SignatureVersion", NULL);
	if (m->type == SNS_NOTIFICATION) {
		json_t *sj = json_object_get(root, "Subject");
		if (sj && !json_is_null(sj)) {
			subject = jsonx_member_string(root, "Subject", &subject_n);
			if (!subject) {
				util_fmt(err, errlen, "Subject is not a string");
				goto out;
			}
		}
	} else {
		sub_url = jsonx_member_string(root, "SubscribeURL", &sub_n);
		token = jsonx_member_string(root, "Token", &token_n);
		if (!sub_url || !token) {
			util_fmt(err, errlen, "confirmation without SubscribeURL or Token");
			goto out;
		}
	}
	if (!msg || !mid || !topic || !ts || !ver) {
		util_fmt(err, errlen,
		         "envelope lacks Message, MessageId, TopicArn, Timestamp or "
		         "SignatureVersion");
		goto out;
	}
	if (!topic_allowed(s, topic, topic_n)) {
		util_fmt(err, errlen, "TopicArn is not in sns.topic_arns");
		goto out;
	}
	if (util_parse_rfc3339(ts, ts_n, &ts_ms) != 0) {
		util_fmt(err, errlen, "malformed Timestamp");
		goto out;
	}
	if (!ts_in_window(s, req->now_ms, ts_ms)) {
		util_fmt(err, errlen, "Timestamp outside the tolerance");
		rc = DLRD_ESTALE;
		goto out;
	}
	if (strcmp(ver, "1") != 0 && strcmp(ver, "2") != 0) {
		util_fmt(err, errlen, "unsupported SignatureVersion");
		goto out;
	}
	sig = arena_alloc(req->arena, 3 * (SNS_SIG_B64_MAX / 4) + 3);
	if (sig_n == 0 || sig_n > SNS_SIG_B64_MAX ||
	    crypto_b64_decode(sigb64, sig_n, sig, &sig_len) != 0) {
		util_fmt(err, errlen, "malformed Signature");
		goto out;
	}
	u = check_url(s, cert_url, true, err, errlen);
	if (!u)
		goto out;

	/* The string to sign (see the header comment). */
	tosign = arena_alloc(req->arena, msg_n + mid_n + subject_n + sub_n + ts_n + token_n +
	                                     topic_n + type_n + 128);
	sign_add(tosign, &at, "Message", msg, msg_n);
	sign_add(tosign, &at, "MessageId", mid, mid_n);
	if (subject)
		sign_add(tosign, &at, "Subject", subject, subject_n);
	if (sub_url)
		sign_add(tosign, &at, "SubscribeURL", sub_url, sub_n);
	sign_add(tosign, &at, "Timestamp", ts, ts_n);
	if (token)
		sign_add(tosign, &at, "Token", token, token_n);
	sign_add(tosign, &at, "TopicArn", topic, topic_n);
	sign_add(tosign, &at, "Type", type, type_n);

	rc = cert_get(s, u, cert_url, req->now_ms, &key, err, errlen);
	if (rc == DLRD_EBUSY) {
		char q[256];
		LOG_D("sns_cert_busy", "url=%s",
		      log_quote(q, sizeof(q), cert_url, strlen(cert_url)));
		m->unavailable = true; /* 503, nothing stored: SNS retries */
		rc = 0;
		goto out;
	}
	if (rc == DLRD_EIO) {
		/* before the signature is checked: anyone can name a certificate
		 * that fails, so a flood is told by a few lines a second */
		static struct log_limit cert_log;
		char q[256], e[200];
		unsigned dropped;
		if (log_limit_take(&cert_log, &dropped))
			LOG_W("sns_cert_unavailable", "url=%s error=%s suppressed=%u",
			      log_quote(q, sizeof(q), cert_url, strlen(cert_url)),
			      log_quote(e, sizeof(e), err, strlen(err)), dropped);
		m->unavailable = true; /* parse() answers 503 and stores nothing */
		rc = 0;
		goto out;
	}
	if (rc != 0)
		goto out;
	if (!rsa_verify(key, ver[0] == '2', tosign, at, sig, sig_len)) {
		util_fmt(err, errlen, "signature mismatch");
		rc = DLRD_EAUTH;
		goto out;
	}
	m->message = arena_strndup(req->arena, msg, msg_n);
	m->message_len = msg_n;
	m->message_id = provider_text(req->arena, mid, mid_n, LIM_ID_BYTES);
	m->topic = arena_strndup(req->arena, topic, topic_n);
	m->subscribe_url = sub_url ? arena_strndup(req->arena, sub_url, sub_n) : NULL;
	rc = 0;
out:
	EVP_PKEY_free(key);
	curl_url_cleanup(u);
	json_decref(root);
	return rc;
}

/* ---- parsing ---- */

static const char unavailable_body[] = "signing certificate unavailable, retry later\n";
static const char unconfirmed_body[] = "subscription not confirmed, retry later\n";

static void parse_event(struct provider_request *req, const struct sns_msg *m, struct dlr_event *ev)
{
	struct arena *a = req->arena;
	json_t *e = jsonx_load_object(m->message, m->message_len, NULL, 0);
	json_t *v;
	const char *type, *mid, *s;
	size_t type_n, mid_n, n;
	bool mapped = false;

	if (!e) {
		provider_unusable(
		    ev, "SNS Message is not an AWS End User Messaging event (JSON object)");
		goto out;
	}
	type = jsonx_member_string(e, "eventType", &type_n);
	mid = jsonx_member_string(e, "messageId", &mid_n);
	if (!type || type_n < 5 || memcmp(type, "TEXT_", 5) != 0) {
		provider_unusable(
		    ev, "not an SMS event (eventType TEXT_*): send only SMS events to this "
		        "topic");
		goto out;
	}
	ev->raw_status = provider_text(a, type, type_n, LIM_STATUS_BYTES);
	/* AWS message ids are UUID-like: lower-cased when hex */
	ev->provider_message_id = mid ? provider_hex_id(a, mid, mid_n) : NULL;
	if (!ev->raw_status || !ev->provider_message_id) {
		provider_unusable(ev,
		                  !ev->raw_status ? "unusable eventType" : "no usable messageId");
		goto out;
	}
	ev->kind = EV_STATUS;
	ev->status = ST_UNKNOWN;
	for (size_t i = 0; i < ARRAY_LEN(status_map); i++) {
		if (strcmp(ev->raw_status, status_map[i].type) == 0) {
			ev->status = status_map[i].st;
			mapped = true;
			break;
		}
	}
	if (!mapped) {
		ev->review = REVIEW_UNKNOWN_STATUS;
		ev->review_detail = "eventType not in AWS's SMS event types";
	}
	for (size_t i = 0; sns_errors[i].code; i++)
		if (strcmp(ev->raw_status, sns_errors[i].code) == 0)
			ev->error_code = sns_errors[i].code;
	/* isFinal false on a final type: AWS may still retry, so not final */
	v = json_object_get(e, "isFinal");
	if (mapped && v && json_is_false(v) && status_is_final(ev->status))
		ev->status = ST_SENT;
	v = json_object_get(e, "eventTimestamp");
	if (v && json_is_integer(v) && json_integer_value(v) > 0)
		ev->occurred_ms = (int64_t)json_integer_value(v);
	s = jsonx_member_string(e, "isoCountryCode", &n);
	if (s && n == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z')
		ev->destination_country = arena_strndup(a, s, 2);
	s = jsonx_member_string(e, "destinationPhoneNumber", &n);
	if (s)
		provider_set_recipient(ev, a, s, n);
	s = jsonx_member_string(e, "originationPhoneNumber", &n);
	if (s)
		ev->sender_identity = provider_text(a, s, n, LIM_ID_BYTES);
	event_finish(ev);
out:
	json_decref(e);
}

/* Confirms a subscription by fetching SubscribeURL.  Fills res: no event
 * and 200 when confirmed; a review row when the URL is not allowed or SNS
 * refused; 503 when worth retrying. */
static void confirm(const struct sns *s, const struct sns_msg *m, struct provider_result *res,
                    struct dlr_event *ev)
{
	char err[160], q[300], eq[200];
	CURLU *u = check_url(s, m->subscribe_url, false, err, sizeof(err));
	char *answer = NULL;
	size_t n;
	int rc;

	if (!u) {
		provider_unusable(
		    ev, "SubscriptionConfirmation: SubscribeURL is not on an allowed host; "
		        "not confirmed");
		res->events = ev;
		res->n_events = 1;
		return;
	}
	rc = fetch(s, u, SNS_CONFIRM_MAX, &answer, &n, err, sizeof(err));
	curl_url_cleanup(u);
	free(answer);
	log_quote(q, sizeof(q), m->topic, strlen(m->topic));
	if (rc == 0) {
		LOG_I("sns_subscription_confirmed", "topic=%s", q);
		return; /* 200, nothing stored */
	}
	LOG_W("sns_subscription_not_confirmed", "topic=%s error=%s", q,
	      log_quote(eq, sizeof(eq), err, strlen(err)));
	if (rc == DLRD_EIO) {
		res->http_status = 503;
		res->body = unconfirmed_body;
		return;
	}
	provider_unusable(ev, "SubscriptionConfirmation: SNS refused the confirmation (an expired "
	                      "token?); subscribe again");
	res->events = ev;
	res->n_events = 1;
}

static int sns_parse(const void *state, struct provider_request *req, struct provider_result *res,
                     char *err, size_t errlen)
{
	const struct sns *s = state;
	const struct sns_msg *m = req->scratch;
	struct dlr_event *ev = provider_events_new(req->arena, "sns", 1);

	(void)err;
	(void)errlen;
	if (m->unavailable) {
		res->http_status = 503;
		res->body = unavailable_body;
		return 0;
	}
	switch (m->type) {
	case SNS_SUB_CONFIRM:
		confirm(s, m, res, ev);
		return 0;
	case SNS_UNSUB_CONFIRM:
		provider_unusable(
		    ev, "UnsubscribeConfirmation: this endpoint was unsubscribed from the "
		        "topic; events stop until it is subscribed again");
		break;
	case SNS_NOTIFICATION:
		ev->provider_event_id = m->message_id;
		parse_event(req, m, ev);
		break;
	}
	res->events = ev;
	res->n_events = 1;
	return 0;
}

const struct provider provider_sns = {
    .name = "sns",
    .hooks = 1u << HOOK_STATUS,
    .keys = sns_keys,
    .errors = sns_errors,
    .canonical_id = provider_hex_id,
    .init = sns_init,
    .fini = sns_fini,
    .authenticate = sns_authenticate,
    .parse = sns_parse,
};
