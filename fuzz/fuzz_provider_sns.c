/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: AWS End User Messaging SMS events via Amazon SNS (provider
 * "sns") as the HTTP front drives them: authenticate() (envelope JSON, the
 * TopicArn and Timestamp checks, certificate URL rules, the canonical string
 * and the RSA signature), parse() (the event inside Message, confirmations),
 * then the central enrichment.
 *
 * src/providers/sns.c is included so the target can put a certificate in
 * the cache (an RSA key and self-signed certificate made at start-up), and
 * libcurl's curl_easy_perform is replaced by a stub that fails to connect:
 * the fuzzer never touches the network, and every certificate miss or
 * subscription confirmation takes the "temporarily unavailable" (503) path.
 *
 * Input: one flags byte, then parts separated by 0x1e.  Flags & 3:
 *   0  part 1 is the whole body, sent as is;
 *   1  part 1 is the Message and part 2 the MessageId of a Notification the
 *      target builds and signs correctly (so parse() gets the fuzzer's
 *      event); flag 8 makes it a SubscriptionConfirmation, flag 16 an
 *      UnsubscribeConfirmation;
 *   2  part 1 is an envelope the target re-signs: when it is a JSON object,
 *      SigningCertURL is set to the cached certificate and Signature to a
 *      correct signature over whatever string members it has (other members
 *      and types stay as the fuzzer made them);
 *   3  as 1, with SignatureVersion 1 (SHA1withRSA).
 * Flag 4 sends GET; flag 32 moves our clock an hour and a half away; flag 64
 * sends the x-amz-sns-rawdelivery header; flag 128 uses an uncached
 * certificate URL on an allowed host (fetch stub: 503).
 *
 * Properties: authenticate() returns 0 or a documented code; a correctly
 * signed Notification or confirmation of an allowed topic within the window
 * is accepted (DLRD_ESTALE outside it); parse() never fails; an answer
 * without events is a confirmation (200 or 503) or an unavailable
 * certificate (503); events are bounded, NUL-terminated, with a hex dedup
 * key, and a Notification's event id is its MessageId.
 */
#include <curl/curl.h>

static CURLcode fsns_no_network(CURL *c);
#define curl_easy_perform(c) fsns_no_network(c)
#include "../src/providers/sns.c"
#undef curl_easy_perform

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "optout.h"
#include "privacy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FSNS_TOPIC    "arn:aws:sns:us-east-1:123456789012:fuzz-events"
#define FSNS_CERT_URL "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-fuzz.pem"
#define FSNS_MISS_URL "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-miss.pem"
#define FSNS_TS       "2023-11-14T22:13:20.000Z"
#define FSNS_NOW      1700000000000LL
#define FSNS_SUB_URL  "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=t"

static struct sns *fsns_state;
static struct config fsns_cfg;
static EVP_PKEY *fsns_key;

static CURLcode fsns_no_network(CURL *c)
{
	(void)c;
	return CURLE_COULDNT_CONNECT;
}

static void fsns_init(void)
{
	char err[256], *pem;
	static const uint8_t hk[32] = {1, 2, 3};
	void *st = NULL;
	X509 *x = X509_new();
	BIO *b = BIO_new(BIO_s_mem());
	X509_NAME *name;
	EVP_PKEY *k;
	long n;

	setenv("DLRD_SNS_TOPIC_ARNS", FSNS_TOPIC, 1);
	unsetenv("DLRD_SNS_CERT_HOSTS");
	unsetenv("DLRD_SNS_CA_FILE");
	unsetenv("DLRD_SNS_TOLERANCE_SECONDS");
	FZ_CHECK(config_load(NULL, &fsns_cfg, err, sizeof(err)) == 0);
	FZ_CHECK(provider_sns.init(&fsns_cfg, &st, err, sizeof(err)) == 0 && st);
	fsns_state = st;
	privacy_set_hash_key(hk, sizeof(hk));
	/* 1024 bits: signing every input must stay cheap */
	fsns_key = EVP_RSA_gen(1024);
	FZ_CHECK(fsns_key != NULL);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, fsns_key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz", -1, -1,
	                           0);
	X509_set_issuer_name(x, name);
	FZ_CHECK(X509_sign(x, fsns_key, EVP_sha256()) > 0);
	PEM_write_bio_X509(b, x);
	n = BIO_get_mem_data(b, &pem);
	k = sns_cache_put(fsns_state, FSNS_CERT_URL, pem, (size_t)n, util_now_ms(), false);
	FZ_CHECK(k != NULL);
	EVP_PKEY_free(k);
	BIO_free(b);
	X509_free(x);
}

/* Sets Signature on env: the canonical string of its string members (as
 * authenticate() will build it) signed with the cached certificate's key. */
static void fsns_sign(json_t *env)
{
	static const char *const notif[] = {"Message",  "MessageId", "Subject", "Timestamp",
	                                    "TopicArn", "Type",      NULL};
	static const char *const conf[] = {"Message", "MessageId", "SubscribeURL", "Timestamp",
	                                   "Token",   "TopicArn",  "Type",         NULL};
	json_t *t = json_object_get(env, "Type"), *v = json_object_get(env, "SignatureVersion");
	bool sha256 = !(v && json_is_string(v) && strcmp(json_string_value(v), "1") == 0);
	const char *const *keys =
	    t && json_is_string(t) && strcmp(json_string_value(t), "Notification") != 0 ? conf
	                                                                                : notif;
	size_t cap = 256, at = 0, sl = 512;
	char *buf;
	uint8_t sig[512];
	char b64[700];
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	for (size_t i = 0; keys[i]; i++) {
		json_t *m = json_object_get(env, keys[i]);
		if (m && json_is_string(m))
			cap += strlen(keys[i]) + json_string_length(m) + 2;
	}
	buf = xmalloc(cap);
	for (size_t i = 0; keys[i]; i++) {
		json_t *m = json_object_get(env, keys[i]);
		if (!m || !json_is_string(m))
			continue;
		sign_add(buf, &at, keys[i], json_string_value(m), json_string_length(m));
	}
	FZ_CHECK(EVP_DigestSignInit(c, NULL, sha256 ? EVP_sha256() : EVP_sha1(), NULL, fsns_key) ==
	         1);
	FZ_CHECK(EVP_DigestSign(c, sig, &sl, (uint8_t *)buf, at) == 1);
	EVP_MD_CTX_free(c);
	free(buf);
	crypto_b64_encode(sig, sl, b64);
	json_object_set_new(env, "Signature", json_string(b64));
}

static const char *fsns_header(void *hctx, const char *name)
{
	const uint8_t *flags = hctx;
	if ((*flags & 64) && strcasecmp(name, "x-amz-sns-rawdelivery") == 0)
		return "true";
	return NULL;
}

static void fsns_check_text(const char *s, size_t max)
{
	if (!s)
		return;
	size_t n = strnlen(s, max + 1);
	FZ_CHECK(n <= max);
	for (size_t i = 0; i < n; i++)
		FZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

/* The body for modes 1 and 3 (a built envelope); NULL when the parts are
 * not strings jansson takes (invalid UTF-8), *expect_ok when every checked
 * field is right. */
static char *fsns_build(uint8_t flags, struct iov msg, struct iov mid, bool *expect_ok)
{
	const char *type = flags & 8    ? "SubscriptionConfirmation"
	                   : flags & 16 ? "UnsubscribeConfirmation"
	                                : "Notification";
	json_t *e = json_object(), *m = json_stringn(msg.p ? msg.p : "", msg.n);
	json_t *id = json_stringn(mid.p ? mid.p : "", mid.n);
	char *out = NULL;

	if (!m || !id) {
		json_decref(m);
		json_decref(id);
		json_decref(e);
		return NULL;
	}
	json_object_set_new(e, "Type", json_string(type));
	json_object_set_new(e, "MessageId", id);
	json_object_set_new(e, "TopicArn", json_string(FSNS_TOPIC));
	json_object_set_new(e, "Message", m);
	json_object_set_new(e, "Timestamp", json_string(FSNS_TS));
	json_object_set_new(e, "SignatureVersion", json_string((flags & 3) == 3 ? "1" : "2"));
	json_object_set_new(e, "SigningCertURL",
	                    json_string(flags & 128 ? FSNS_MISS_URL : FSNS_CERT_URL));
	if (strcmp(type, "Notification") != 0) {
		json_object_set_new(e, "Token", json_string("t"));
		json_object_set_new(e, "SubscribeURL", json_string(FSNS_SUB_URL));
	}
	fsns_sign(e);
	out = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(e);
	/* jansson accepts a NUL inside a string it is given, but the body
	 * it writes then cannot be read back (no JSON_ALLOW_NUL) */
	*expect_ok = out && !memchr(msg.p ? msg.p : "", '\0', msg.n) &&
	             !memchr(mid.p ? mid.p : "", '\0', mid.n);
	return out;
}

/* Mode 2: the fuzzer's envelope, re-signed. */
static char *fsns_resign(struct iov body)
{
	json_error_t jerr;
	json_t *e = json_loadb(body.p ? body.p : "", body.n, 0, &jerr);
	char *out = NULL;

	if (e && json_is_object(e)) {
		json_object_set_new(e, "SigningCertURL", json_string(FSNS_CERT_URL));
		fsns_sign(e);
		out = json_dumps(e, JSON_COMPACT);
	}
	json_decref(e);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t flags = fz_byte(&in);
	int more = 0;
	struct iov p1 = fz_part(&in, &more);
	struct iov p2 = more ? fz_part(&in, &more) : (struct iov){NULL, 0};
	bool expect_ok = false;
	char *body = NULL, err[256], buf[6144];
	size_t body_n = 0;
	struct provider_request pr;
	struct provider_result res;
	struct arena a;
	int rc;

	if (!fsns_state)
		fsns_init();
	switch (flags & 3) {
	case 0:
		body = fz_exact(p1);
		body_n = p1.n;
		break;
	case 2:
		body = fsns_resign(p1);
		break;
	default:
		body = fsns_build(flags, p1, p2, &expect_ok);
		break;
	}
	if ((flags & 3) && !body)
		return 0;
	if ((flags & 3) && body)
		body_n = strlen(body);
	arena_init(&a, buf, sizeof(buf));
	memset(&pr, 0, sizeof(pr));
	pr.method = flags & 4 ? "GET" : "POST";
	pr.kind = HOOK_STATUS;
	pr.target = IOV_LIT("/webhooks/sns/status");
	pr.path = pr.target;
	pr.query = (struct iov){"", 0};
	pr.body = (struct iov){body ? body : "", body_n};
	pr.content_type = "text/plain";
	pr.public_url = "https://sms.example.com";
	pr.now_ms = FSNS_NOW + (flags & 32 ? 5400000 : 0);
	pr.arena = &a;
	pr.header = fsns_header;
	pr.hctx = &flags;
	err[0] = '\0';
	rc = provider_sns.authenticate(fsns_state, &pr, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == DLRD_EAUTH || rc == DLRD_ESTALE || rc == DLRD_EMETHOD ||
	         rc == DLRD_EUNSUPP || rc == DLRD_EINVAL);
	if (expect_ok && !(flags & (4 | 64)))
		FZ_CHECK(rc == (flags & 32 ? DLRD_ESTALE : 0));
	if (rc == 0) {
		memset(&res, 0, sizeof(res));
		res.http_status = 200;
		rc = provider_sns.parse(fsns_state, &pr, &res, err, sizeof(err));
		FZ_CHECK(rc == 0);
		if (res.n_events == 0) {
			const struct sns_msg *m = pr.scratch;
			FZ_CHECK(res.http_status == 503 ||
			         (m->type == SNS_SUB_CONFIRM && res.http_status == 200));
		} else {
			FZ_CHECK(res.n_events == 1);
			const struct dlr_event *ev = &res.events[0];
			const struct sns_msg *m = pr.scratch;
			FZ_CHECK(ev->kind == EV_STATUS || ev->kind == EV_UNUSABLE);
			FZ_CHECK(ev->status < ST__COUNT);
			FZ_CHECK(strcmp(ev->provider, "sns") == 0);
			FZ_CHECK(ev->kind == EV_UNUSABLE ||
			         (ev->provider_message_id && ev->raw_status));
			if (m->type == SNS_NOTIFICATION)
				FZ_CHECK(ev->provider_event_id == m->message_id);
			fsns_check_text(ev->provider_message_id, LIM_ID_BYTES);
			fsns_check_text(ev->provider_event_id, LIM_ID_BYTES);
			fsns_check_text(ev->raw_status, LIM_STATUS_BYTES);
			fsns_check_text(ev->error_code, LIM_STATUS_BYTES);
			fsns_check_text(ev->sender_identity, LIM_ID_BYTES);
			fsns_check_text(ev->destination_country, 2);
			FZ_CHECK(!ev->recipient_hash || strlen(ev->recipient_hash) == 64);
			FZ_CHECK(strlen(ev->dedup_key) == 64);
			if (ev->kind == EV_STATUS) {
				const char *title = NULL;
				(void)errcat_classify(provider_sns.errors, ev->error_code,
				                      ev->status, &title);
			}
		}
	}
	arena_fini(&a);
	free(body);
	return 0;
}
