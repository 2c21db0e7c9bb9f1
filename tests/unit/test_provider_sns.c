/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/providers/sns.c (AWS End User Messaging SMS events via
 * Amazon SNS).  The file is included so the tests reach the certificate
 * cache: certificates are injected into it directly, which keeps these
 * tests off the network (tests/integration/test_provider_sns.c fetches
 * them over HTTPS from a loopback server).
 *
 * Covered: four real SNS messages signed by AWS (SignatureVersion 1 and 2,
 * with and without Subject; the fixtures and AWS's certificate are from
 * aws/aws-php-sns-message-validator tests/FunctionalValidationsTest.php),
 * envelopes signed here with a key and certificate made at run time,
 * every event type, isFinal, the canonical strings of the three message
 * types, the TopicArn allow-list, the Timestamp window, raw delivery,
 * certificate URL rules (AWS's host pattern included), certificates out of
 * their validity period, the bounded LRU cache, a certificate fetch that
 * fails for a temporary reason (503, nothing stored), failed fetches
 * remembered (answered without fetching again until SNS_FAIL_TEMP_MS or
 * SNS_FAIL_REFUSED_MS have passed, counted at a loopback listener, in a
 * bounded LRU table), and subscription confirmations that cannot be
 * confirmed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "../../src/providers/sns.c"
#include "provider_test.h"

/* ---- AWS's own fixtures ---- */

#define AWS_CERT_URL                                                                               \
	"https://sns.us-east-2.amazonaws.com/"                                                     \
	"SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem"
#define AWS_ARN_PREFIX "arn:aws:sns:us-east-2:295079676684:publish-and-verify-"
#define AWS_UNSUB_PREFIX                                                                           \
	"https://sns.us-east-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=" AWS_ARN_PREFIX

static const char aws_cert[] = "-----BEGIN CERTIFICATE-----\n"
                               "MIIF1zCCBL+gAwIBAgIQB9pYWG3Mi7xej22g9pobJTANBgkqhkiG9w0BAQsFADBG\n"
                               "MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRUwEwYDVQQLEwxTZXJ2ZXIg\n"
                               "Q0EgMUIxDzANBgNVBAMTBkFtYXpvbjAeFw0yMTA5MDcwMDAwMDBaFw0yMjA4MTcy\n"
                               "MzU5NTlaMBwxGjAYBgNVBAMTEXNucy5hbWF6b25hd3MuY29tMIIBIjANBgkqhkiG\n"
                               "9w0BAQEFAAOCAQ8AMIIBCgKCAQEAutFqueT3XgP13udzxE6UpbdjOtVO5DwoMpSM\n"
                               "iDNMnGzF1TYH5/R2LPUOBeTB0SkKnR4kpNcUZhicpGD4aKciz/GEZ6wu65xncfT9\n"
                               "H/KBOQwoXYTuClHwp6fYpGzcGFaFoEYMnijL/o4qmTSd+ukglQUgKpsDw4ofw6rU\n"
                               "m2CttJo+GQSNQ9NfGR1h/0J+zsApkeSYrXRx5wNlu87z8os1C/6PBrUHwt3xXeaf\n"
                               "Xzfwut8aRRYsS8BySOA9DAgLfNHlfdQCjKPXKrG/ussgReyWD6n/HH+j7Uha3xos\n"
                               "TzQqJifcxlTq6MxWdPR6fDaJNvqw6DOE7UjUNxHguXHlVfxhlQIDAQABo4IC6TCC\n"
                               "AuUwHwYDVR0jBBgwFoAUWaRmBlKge5WSPKOUByeWdFv5PdAwHQYDVR0OBBYEFAqz\n"
                               "C+vyouneE7mWWLbi9i0UsWUbMBwGA1UdEQQVMBOCEXNucy5hbWF6b25hd3MuY29t\n"
                               "MA4GA1UdDwEB/wQEAwIFoDAdBgNVHSUEFjAUBggrBgEFBQcDAQYIKwYBBQUHAwIw\n"
                               "OwYDVR0fBDQwMjAwoC6gLIYqaHR0cDovL2NybC5zY2ExYi5hbWF6b250cnVzdC5j\n"
                               "b20vc2NhMWIuY3JsMBMGA1UdIAQMMAowCAYGZ4EMAQIBMHUGCCsGAQUFBwEBBGkw\n"
                               "ZzAtBggrBgEFBQcwAYYhaHR0cDovL29jc3Auc2NhMWIuYW1hem9udHJ1c3QuY29t\n"
                               "MDYGCCsGAQUFBzAChipodHRwOi8vY3J0LnNjYTFiLmFtYXpvbnRydXN0LmNvbS9z\n"
                               "Y2ExYi5jcnQwDAYDVR0TAQH/BAIwADCCAX0GCisGAQQB1nkCBAIEggFtBIIBaQFn\n"
                               "AHYAKXm+8J45OSHwVnOfY6V35b5XfZxgCvj5TV0mXCVdx4QAAAF7vfDVkQAABAMA\n"
                               "RzBFAiEA2XfHuy36aqRFiaL8c3md2mH451go8707+fRE0pEdSRACIE/g5FXTUXUZ\n"
                               "PFcmOhm9TZ+uMY1i4CIQ/CKVWln6C3t+AHYAUaOw9f0BeZxWbbg3eI8MpHrMGyfL\n"
                               "956IQpoN/tSLBeUAAAF7vfDVjAAABAMARzBFAiBF1MhhFP0+FQt3daDFfMYoWwnr\n"
                               "muTInrjNpwfzlvQBugIhAPYadFzr+LaxSJoiZEbEHBvTts7bT0M3eCQONA2O7w6n\n"
                               "AHUAQcjKsd8iRkoQxqE6CUKHXk4xixsD6+tLx2jwkGKWBvYAAAF7vfDVdAAABAMA\n"
                               "RjBEAiAtPapmFAuA71ih4NoSd5hJelzAltNQpxDMcDfDyHyU8gIgWxmaa6+2KbBu\n"
                               "9xdv379zvnJACFR7jc+4asl08Dn4aagwDQYJKoZIhvcNAQELBQADggEBAA54QX0u\n"
                               "oFWXfMmv02CGZv4NWo5TapyeeixQ2kKpZHRdVZjxZrw+hoF6HD7P3kGjH8ztyJll\n"
                               "tDxB0qgMltbPhQdScwhA6iTgoaBYqEUC/VHKd4PmmPT6yIsM36NBZVmkGlzl5uNo\n"
                               "/dBgBaG0SsVJnhr5zro3c2quC7n6fVGEZhf/UgQwRnnvThnvbNKguglDMq4uEqv8\n"
                               "njKyleht+glkcmXO0m9qLKt6BOS0amy6U2GlAwRn0Wx02ndJtnRCSC6kPuRWK/SQ\n"
                               "FEjB7gCK4hdKaAOuWdZpI55vF6ifOeM8toC3g7ofO8qLTnJupAG+ZitY5J3cvHWr\n"
                               "HqOUdKigPDHYLRo=\n"
                               "-----END CERTIFICATE-----\n";

static const struct {
	const char *message_id, *topic_suffix, *subject, *timestamp, *version, *signature,
	    *unsub_suffix;
} aws_vectors[] = {
    {"792cda85-518f-5dd3-9163-81d851212f3a", "892f85fe-4836-424d-8188-ab85bef0f362", NULL,
     "2022-07-28T21:23:58.317Z", "1",
     "ghtf+deOBAzHJJZ6s6CdRLfTQAlcGzq9naoFM1wi0CJiq//uVRuZnamrkWNF0fhouMFvuLVRwcz8PZLUMSfnmd5Vp"
     "dTKpTyiKmy1qJAZXma0w+yi7G+I33hD1Jyk1Nbym2n0kqp3fVu2aoooiN2ZeLAT2bH0/BtjLSfN1yAOKNoprco4q"
     "V9gGUZinXJdj9a1YdNhDR2jKi33ldlsVtEXAtiaDklGEk7DgRKX38GerBPiLg3FdtgY6KC7cdeGpU/dGK+4hjc83"
     "Ive1HoFkAwqhpgInM2sMytBosoiXfCmOKmU4xeGD0gHDNZTlJUJQDlzw8Eag0H9f/5zXF9d3uy0YQ==",
     "892f85fe-4836-424d-8188-ab85bef0f362:2296bc94-7992-4be1-b15f-b97229b5c1d8"},
    {"17dea24b-55c2-540b-8362-f916557af765", "62674b1d-4295-426b-88e7-5fb75652a04e", NULL,
     "2022-07-28T21:24:08.324Z", "2",
     "CXVqp9PfZAL+4JHS3Zxo1PFbQsvnOjvmYhtIf17TWpwc+iIVas8kZ8GopuzVzVMdatE7rCl/O4P91Zp05Dwz8lk8d"
     "Lhfp8gSu3Njlzxlyrmzo9x3va3Jb7zFnedgS2GKnZWHGBdwTXho+TosNUE+3e10OMSlwN5XGDwX7+R3WL+rn+AX"
     "mFAqp3alg27sYa55h1dLE9cGszGPjScPdtF3BmZsUDMx9wSdNKsCk+vSvE8yBjnCmUl7laSFj3LzPVrlSwgNYCF3"
     "kYnNAkah7NplK4SFhJYLwS0HCVCQJKa8rVbQLf9cBTu60U402mrgy0bN8xWoyimzbYbrOMJjalqkUg==",
     "62674b1d-4295-426b-88e7-5fb75652a04e:ad7d16e3-0a7c-46aa-b23e-ffaf02250cbe"},
    {"11405cc3-9ac7-56d5-b45d-079e8f7a8edf", "6e11fed2-fcdf-4c52-9dc4-36ef43f37f84", "Hello world",
     "2022-07-28T22:53:49.654Z", "1",
     "AItkS26d8yvnIKJevdirIPW7eM/yKbZy3/CF2EreCHmXWB3etWaV5Fb7SYpGABMpugpDZzNyGY1wCVWaopDoQ+7Q/"
     "kI2TpDu8bw1eExbi8U3kduvc/2m2fIrI4gDEY8/v3nzoLcr8pPodqMzrX6SzQou4klfaqbNK+rFmH0LVf2Q1VyOR"
     "OODoSXmo4jg2Yu12jfxccBl96Drr/ihq4MJ4OcrWh6UzXXlVYjJHx2Ui4anNwNEb+Z4C2CAF1DjQUbhDtaoajDBP"
     "Y+4d9C1OwbqwQpXsd6tyVcI9nFyEsVK8lfnAV+/3GZQcdXHbIUYBRGcBa4X5TlWJku5nDH2ERtHHw==",
     "6e11fed2-fcdf-4c52-9dc4-36ef43f37f84:adb318c3-2234-4c56-905d-c324cf0df874"},
    {"4504e649-d933-5aa9-8199-bd14ccf05f0b", "530b26da-0687-4fe4-9f71-780bad3181e2", "Hello world",
     "2022-07-28T22:53:55.086Z", "2",
     "cETcSvmmkt+My05qCLKexyl0+RyG83mSryKPqTfS+tYcxDJWVcjPJAr+qdpElzVaBl1aTGYVWMY64i9JqZ/JES8py"
     "lNj8LGvdhuNQKO59/WCoIimZAsNhn0xEgOeeDU+W/0BU4sdpCGMNjo0S/FuIiWaRe4E0YWRVrxeQevaQ70euDdfW"
     "gd5v1eCKQz8b367b9XBmMztL/CWUFI6YaKK/MV21eyvJe3Y7CtVYiOKEYiAZnAEkynK7gUGO5TsgDjGNYhj6U3xY"
     "sWgI03bmioSl7kdFSUj+AZ7ugas5fghqxgoDsdfqsjMYKRm5KKHQWsgzI619yIzpNKUiSMHxdZXpQ==",
     "530b26da-0687-4fe4-9f71-780bad3181e2:db0ad2ad-03d1-48ca-a5da-51f317800a57"},
};

/* ---- our own signer ---- */

#define TOPIC    "arn:aws:sns:us-east-1:123456789012:dlrd-sms-events"
#define CERT_URL "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem"
#define NOW_MS   1700000000000LL
#define NOW_TS   "2023-11-14T22:13:20.000Z"

struct fx {
	struct config cfg;
	struct sns *s;
	EVP_PKEY *key;
	char *pem;
	struct arena a;
	char block[32768];
	struct pt_headers hdr;
	struct provider_request req;
	struct provider_result res;
	char err[256];
	char *body;
};

/* A fresh RSA key and a self-signed certificate valid from now+from_s to
 * now+to_s; the PEM is heap (free it). */
static EVP_PKEY *make_cert(long from_s, long to_s, char **pem)
{
	EVP_PKEY *k = EVP_RSA_gen(2048);
	X509 *x = X509_new();
	BIO *b = BIO_new(BIO_s_mem());
	X509_NAME *name;
	char *p;
	long n;

	assert_non_null(k);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), from_s);
	X509_gmtime_adj(X509_getm_notAfter(x), to_s);
	X509_set_pubkey(x, k);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"sns.test", -1,
	                           -1, 0);
	X509_set_issuer_name(x, name);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	PEM_write_bio_X509(b, x);
	n = BIO_get_mem_data(b, &p);
	*pem = strndup(p, (size_t)n);
	BIO_free(b);
	X509_free(x);
	return k;
}

static int start(struct fx **out, const char *topics, const char *hosts, const char *tolerance)
{
	struct fx *f = calloc(1, sizeof(*f));
	void *st = NULL;

	setenv("DLRD_SNS_TOPIC_ARNS", topics, 1);
	pt_setenv("DLRD_SNS_CERT_HOSTS", hosts);
	pt_setenv("DLRD_SNS_TOLERANCE_SECONDS", tolerance);
	unsetenv("DLRD_SNS_CA_FILE");
	if (pt_start(&provider_sns, &f->cfg, &st, true, &f->a, f->block, sizeof(f->block)) != 0)
		return -1;
	f->s = st;
	*out = f;
	return 0;
}

static int setup(void **state)
{
	struct fx *f = NULL;
	EVP_PKEY *k;

	if (start(&f, TOPIC ", arn:aws:sns:eu-west-1:123456789012:other", "aws, 127.0.0.1", NULL) !=
	    0)
		return -1;
	f->key = make_cert(-3600, 86400, &f->pem);
	k = sns_cache_put(f->s, CERT_URL, f->pem, strlen(f->pem), util_now_ms(), true);
	assert_non_null(k);
	EVP_PKEY_free(k);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	pt_stop(&provider_sns, &f->cfg, f->s, &f->a);
	EVP_PKEY_free(f->key);
	free(f->pem);
	free(f->body);
	free(f);
	return 0;
}

/* The canonical string of env (as AWS builds it) signed with key. */
static void sign_env(EVP_PKEY *key, json_t *env)
{
	static const char *const notif[] = {"Message",  "MessageId", "Subject", "Timestamp",
	                                    "TopicArn", "Type",      NULL};
	static const char *const conf[] = {"Message", "MessageId", "SubscribeURL", "Timestamp",
	                                   "Token",   "TopicArn",  "Type",         NULL};
	const char *type = json_string_value(json_object_get(env, "Type"));
	const char *ver = json_string_value(json_object_get(env, "SignatureVersion"));
	const char *const *keys = strcmp(type, "Notification") == 0 ? notif : conf;
	char buf[16384], b64[1024];
	size_t at = 0, sl = sizeof(buf);
	uint8_t sig[1024];
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	for (size_t i = 0; keys[i]; i++) {
		json_t *v = json_object_get(env, keys[i]);
		if (!v || !json_is_string(v))
			continue;
		at += (size_t)snprintf(buf + at, sizeof(buf) - at, "%s\n%s\n", keys[i],
		                       json_string_value(v));
	}
	sl = sizeof(sig);
	assert_int_equal(
	    EVP_DigestSignInit(c, NULL, ver[0] == '2' ? EVP_sha256() : EVP_sha1(), NULL, key), 1);
	assert_int_equal(EVP_DigestSign(c, sig, &sl, (uint8_t *)buf, at), 1);
	EVP_MD_CTX_free(c);
	crypto_b64_encode(sig, sl, b64);
	json_object_set_new(env, "Signature", json_string(b64));
}

/* An envelope of type with message, unsigned. */
static json_t *envelope(const char *type, const char *message, const char *mid, const char *ts,
                        const char *version)
{
	json_t *e = json_object();
	json_object_set_new(e, "Type", json_string(type));
	json_object_set_new(e, "MessageId", json_string(mid));
	json_object_set_new(e, "TopicArn", json_string(TOPIC));
	json_object_set_new(e, "Message", json_string(message));
	json_object_set_new(e, "Timestamp", json_string(ts));
	json_object_set_new(e, "SignatureVersion", json_string(version));
	json_object_set_new(e, "SigningCertURL", json_string(CERT_URL));
	json_object_set_new(e, "UnsubscribeURL",
	                    json_string("https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
	                                "&SubscriptionArn=" TOPIC ":0d1e"));
	if (strcmp(type, "Notification") != 0) {
		json_object_set_new(e, "Token", json_string("2336412f37fb687f5d51e6e2425c464d"));
		json_object_set_new(
		    e, "SubscribeURL",
		    json_string("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
		                "&TopicArn=" TOPIC "&Token=2336412f37fb687f5d51e6e2425c464d"));
	}
	return e;
}

/* Runs authenticate (and parse when it passes) on body. */
static int run_body(struct fx *f, const char *body, int64_t now_ms, int *parse_rc)
{
	pt_request(&f->req, &f->a,
	           &(struct pt_call){.target = "/webhooks/sns/status",
	                             .ctype = "text/plain",
	                             .body = body,
	                             .now_ms = now_ms,
	                             .headers = &f->hdr});
	return pt_run(&provider_sns, f->s, &f->req, &f->res, f->err, sizeof(f->err), parse_rc);
}

/* Serializes env (taking it) and runs it at NOW. */
static int run_env(struct fx *f, json_t *env, int *parse_rc)
{
	free(f->body);
	f->body = json_dumps(env, JSON_COMPACT);
	json_decref(env);
	return run_body(f, f->body, NOW_MS, parse_rc);
}

/* A signed notification carrying an AWS End User Messaging event. */
static const struct dlr_event *notify(struct fx *f, const char *event, const char *mid,
                                      const char *version)
{
	json_t *e = envelope("Notification", event, mid, NOW_TS, version);
	int prc;

	sign_env(f->key, e);
	assert_int_equal(run_env(f, e, &prc), 0);
	assert_int_equal(prc, 0);
	assert_int_equal(f->res.n_events, 1);
	return &f->res.events[0];
}

#define EVENT(type, final)                                                                         \
	"{\"eventType\":\"" type "\",\"eventVersion\":\"1.0\",\"eventTimestamp\":1686975103470,"   \
	"\"isFinal\":" final ",\"originationPhoneNumber\":\"+12065550152\","                       \
	"\"destinationPhoneNumber\":\"+14255550156\",\"isInternationalSend\":false,"               \
	"\"mcc\":\"310\",\"mnc\":\"800\",\"messageId\":\"862A8790-60C0-4430-9B2B-658BDE0AB1E2\","  \
	"\"messageRequestTimestamp\":1686975103170,\"messageEncoding\":\"GSM\","                   \
	"\"messageType\":\"PROMOTIONAL\",\"messageStatus\":\"SUCCESSFUL\","                        \
	"\"messageStatusDescription\":\"Message has been accepted by phone carrier\","             \
	"\"context\":{\"account\":\"bar\"},\"totalMessageParts\":1,"                               \
	"\"totalMessagePrice\":0.09582,\"totalCarrierFee\":0.0}"

/* ---- tests ---- */

static void test_aws_vectors(void **state)
{
	struct fx *f = NULL;
	char topics[2048] = "", url_buf[512];
	size_t at = 0;
	int prc;
	EVP_PKEY *k;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(aws_vectors); i++)
		at += (size_t)snprintf(topics + at, sizeof(topics) - at, "%s%s%s", i ? "," : "",
		                       AWS_ARN_PREFIX, aws_vectors[i].topic_suffix);
	assert_int_equal(start(&f, topics, NULL, NULL), 0);
	/* AWS's certificate expired in 2022: inject it without the date check */
	k = sns_cache_put(f->s, AWS_CERT_URL, aws_cert, strlen(aws_cert), util_now_ms(), false);
	assert_non_null(k);
	EVP_PKEY_free(k);
	for (size_t i = 0; i < ARRAY_LEN(aws_vectors); i++) {
		int64_t ts;
		json_t *e = json_object();
		assert_int_equal(util_parse_rfc3339(aws_vectors[i].timestamp,
		                                    strlen(aws_vectors[i].timestamp), &ts),
		                 0);
		json_object_set_new(e, "Type", json_string("Notification"));
		json_object_set_new(e, "MessageId", json_string(aws_vectors[i].message_id));
		snprintf(url_buf, sizeof(url_buf), "%s%s", AWS_ARN_PREFIX,
		         aws_vectors[i].topic_suffix);
		json_object_set_new(e, "TopicArn", json_string(url_buf));
		if (aws_vectors[i].subject)
			json_object_set_new(e, "Subject", json_string(aws_vectors[i].subject));
		json_object_set_new(e, "Message", json_string("Hello world"));
		json_object_set_new(e, "Timestamp", json_string(aws_vectors[i].timestamp));
		json_object_set_new(e, "SignatureVersion", json_string(aws_vectors[i].version));
		json_object_set_new(e, "Signature", json_string(aws_vectors[i].signature));
		json_object_set_new(e, "SigningCertURL", json_string(AWS_CERT_URL));
		snprintf(url_buf, sizeof(url_buf), "%s%s", AWS_UNSUB_PREFIX,
		         aws_vectors[i].unsub_suffix);
		json_object_set_new(e, "UnsubscribeURL", json_string(url_buf));
		free(f->body);
		f->body = json_dumps(e, JSON_COMPACT);
		assert_int_equal(run_body(f, f->body, ts + 1000, &prc), 0);
		/* authentic; "Hello world" is no SMS event: a review row */
		assert_int_equal(prc, 0);
		assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
		assert_string_equal(f->res.events[0].provider_event_id, aws_vectors[i].message_id);
		/* a changed Message, or a dropped Subject, fails */
		json_object_set_new(e, "Message", json_string("Hello World"));
		free(f->body);
		f->body = json_dumps(e, JSON_COMPACT);
		assert_int_equal(run_body(f, f->body, ts + 1000, &prc), DLRD_EAUTH);
		assert_string_equal(f->err, "signature mismatch");
		json_object_set_new(e, "Message", json_string("Hello world"));
		if (aws_vectors[i].subject) {
			json_object_del(e, "Subject");
			free(f->body);
			f->body = json_dumps(e, JSON_COMPACT);
			assert_int_equal(run_body(f, f->body, ts + 1000, &prc), DLRD_EAUTH);
		}
		/* Lambda-style SigningCertUrl is read too */
		json_object_del(e, "SigningCertURL");
		json_object_set_new(e, "SigningCertUrl", json_string(AWS_CERT_URL));
		if (aws_vectors[i].subject)
			json_object_set_new(e, "Subject", json_string(aws_vectors[i].subject));
		free(f->body);
		f->body = json_dumps(e, JSON_COMPACT);
		assert_int_equal(run_body(f, f->body, ts + 1000, &prc), 0);
		json_decref(e);
	}
	teardown((void **)&f);
}

static void test_event_types(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *type;
		enum dlr_status st;
		bool error;
	} cases[] = {
	    {"TEXT_QUEUED", ST_ACCEPTED, false},
	    {"TEXT_PENDING", ST_SENT, false},
	    {"TEXT_SUCCESSFUL", ST_SENT, false},
	    {"TEXT_DELIVERED", ST_DELIVERED, false},
	    {"TEXT_BLOCKED", ST_REJECTED, true},
	    {"TEXT_TTL_EXPIRED", ST_EXPIRED, true},
	    {"TEXT_CARRIER_UNREACHABLE", ST_UNDELIVERED, true},
	    {"TEXT_INVALID", ST_REJECTED, true},
	    {"TEXT_INVALID_MESSAGE", ST_REJECTED, true},
	    {"TEXT_CARRIER_BLOCKED", ST_REJECTED, true},
	    {"TEXT_UNREACHABLE", ST_UNDELIVERED, true},
	    {"TEXT_SPAM", ST_REJECTED, true},
	    {"TEXT_UNKNOWN", ST_UNKNOWN, true},
	    {"TEXT_PROTECT_BLOCKED", ST_REJECTED, true},
	};
	char event[2048], mid[64];

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		snprintf(event, sizeof(event),
		         "{\"eventType\":\"%s\",\"isFinal\":true,"
		         "\"messageId\":\"m-%zu\",\"eventTimestamp\":1686975103470,"
		         "\"destinationPhoneNumber\":\"+14255550156\"}",
		         cases[i].type, i);
		snprintf(mid, sizeof(mid), "6b1f0bd6-2f5b-5d39-8a8c-%012zu", i);
		const struct dlr_event *ev = notify(f, event, mid, i % 2 ? "1" : "2");
		assert_int_equal(ev->kind, EV_STATUS);
		assert_int_equal(ev->status, cases[i].st);
		assert_string_equal(ev->raw_status, cases[i].type);
		assert_int_equal(ev->review, REVIEW_NONE);
		if (cases[i].error)
			assert_string_equal(ev->error_code, cases[i].type);
		else
			assert_null(ev->error_code);
		assert_string_equal(ev->provider_event_id, mid);
		assert_int_equal(ev->occurred_ms, 1686975103470LL);
	}
	/* every failure type has a catalogue entry */
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		const char *title;
		if (cases[i].error)
			assert_int_not_equal(
			    errcat_classify(sns_errors, cases[i].type, cases[i].st, &title),
			    ER_NONE);
	}
}

static void test_event_fields(void **state)
{
	struct fx *f = *state;
	const struct dlr_event *ev;
	char key[65];

	ev = notify(f, EVENT("TEXT_SUCCESSFUL", "true"), "a1b2c3d4-0000-5000-8000-000000000001",
	            "1");
	assert_string_equal(ev->provider, "sns");
	assert_string_equal(ev->provider_message_id, "862a8790-60c0-4430-9b2b-658bde0ab1e2");
	assert_string_equal(ev->provider_event_id, "a1b2c3d4-0000-5000-8000-000000000001");
	/* carrier acceptance, even final, is sent */
	assert_int_equal(ev->status, ST_SENT);
	assert_string_equal(ev->raw_status, "TEXT_SUCCESSFUL");
	assert_int_equal(ev->occurred_ms, 1686975103470LL);
	assert_non_null(ev->recipient_hash);
	assert_string_equal(ev->destination_country, "US");
	assert_string_equal(ev->sender_identity, "+12065550152");
	snprintf(key, sizeof(key), "%s", ev->dedup_key);
	/* the same SNS message again (a retry): the same dedup key */
	ev = notify(f, EVENT("TEXT_SUCCESSFUL", "true"), "a1b2c3d4-0000-5000-8000-000000000001",
	            "2");
	assert_string_equal(ev->dedup_key, key);

	/* isoCountryCode, when there, wins over the number */
	ev = notify(f,
	            "{\"eventType\":\"TEXT_DELIVERED\",\"isFinal\":true,\"messageId\":\"x\","
	            "\"destinationPhoneNumber\":\"+14255550156\",\"isoCountryCode\":\"PR\"}",
	            "a1b2c3d4-0000-5000-8000-000000000002", "2");
	assert_string_equal(ev->destination_country, "PR");
	assert_int_equal(ev->occurred_ms, -1);
	assert_string_equal(ev->provider_message_id, "x");

	/* a temporary failure that is not final yet is sent, with its code */
	ev = notify(f, EVENT("TEXT_CARRIER_UNREACHABLE", "false"),
	            "a1b2c3d4-0000-5000-8000-000000000003", "2");
	assert_int_equal(ev->status, ST_SENT);
	assert_string_equal(ev->error_code, "TEXT_CARRIER_UNREACHABLE");
	ev = notify(f, EVENT("TEXT_PENDING", "false"), "a1b2c3d4-0000-5000-8000-000000000004", "2");
	assert_int_equal(ev->status, ST_SENT);

	/* an unknown TEXT_ type: unknown, reviewed */
	ev = notify(f, EVENT("TEXT_SOMETHING_NEW", "true"), "a1b2c3d4-0000-5000-8000-000000000005",
	            "2");
	assert_int_equal(ev->kind, EV_STATUS);
	assert_int_equal(ev->status, ST_UNKNOWN);
	assert_int_equal(ev->review, REVIEW_UNKNOWN_STATUS);

	/* not an SMS event, not JSON, no messageId: review rows */
	ev = notify(f, "{\"eventType\":\"VOICE_COMPLETED\",\"messageId\":\"v\"}",
	            "a1b2c3d4-0000-5000-8000-000000000006", "2");
	assert_int_equal(ev->kind, EV_UNUSABLE);
	assert_int_equal(ev->review, REVIEW_UNUSABLE);
	ev = notify(f, "plain text", "a1b2c3d4-0000-5000-8000-000000000007", "2");
	assert_int_equal(ev->kind, EV_UNUSABLE);
	ev = notify(f, "{\"eventType\":\"TEXT_DELIVERED\"}", "a1b2c3d4-0000-5000-8000-000000000008",
	            "2");
	assert_int_equal(ev->kind, EV_UNUSABLE);
	assert_string_equal(ev->review_detail, "no usable messageId");
}

static void test_rejections(void **state)
{
	struct fx *f = *state;
	json_t *e;
	int prc;

	/* unknown topic (signed correctly) */
	e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");
	json_object_set_new(e, "TopicArn", json_string("arn:aws:sns:us-east-1:123456789012:x"));
	sign_env(f->key, e);
	assert_int_equal(run_env(f, e, &prc), DLRD_EAUTH);
	assert_string_equal(f->err, "TopicArn is not in sns.topic_arns");
	/* SignatureVersion 3 */
	e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");
	sign_env(f->key, e);
	json_object_set_new(e, "SignatureVersion", json_string("3"));
	assert_int_equal(run_env(f, e, &prc), DLRD_EAUTH);
	/* signed as version 1, claimed as 2 */
	e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "1");
	sign_env(f->key, e);
	json_object_set_new(e, "SignatureVersion", json_string("2"));
	assert_int_equal(run_env(f, e, &prc), DLRD_EAUTH);
	/* signed by another key */
	{
		char *pem2;
		EVP_PKEY *k2 = make_cert(-60, 600, &pem2);
		e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");
		sign_env(k2, e);
		assert_int_equal(run_env(f, e, &prc), DLRD_EAUTH);
		EVP_PKEY_free(k2);
		free(pem2);
	}
	/* a field changed after signing: MessageId, Type, Timestamp */
	e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");
	sign_env(f->key, e);
	json_object_set_new(e, "MessageId", json_string("m2"));
	assert_int_equal(run_env(f, e, &prc), DLRD_EAUTH);
	e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");
	sign_env(f->key, e);
	json_object_set_new(e, "Subject", json_string("added"));
	assert_int_equal(run_env(f, e, &prc), DLRD_EAUTH);
	/* malformed signature */
	e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");
	json_object_set_new(e, "Signature", json_string("***"));
	assert_int_equal(run_env(f, e, &prc), DLRD_EAUTH);
	assert_string_equal(f->err, "malformed Signature");
	/* unknown message type */
	e = envelope("Notification", "x", "m1", NOW_TS, "2");
	json_object_set_new(e, "Type", json_string("Announcement"));
	assert_int_equal(run_env(f, e, &prc), DLRD_EAUTH);
	/* raw message delivery: the event alone */
	assert_int_equal(run_body(f, EVENT("TEXT_DELIVERED", "true"), NOW_MS, &prc), DLRD_EAUTH);
	assert_string_equal(f->err,
	                    "no SNS signature envelope (raw message delivery is not supported)");
	pt_header_add(&f->hdr, "x-amz-sns-rawdelivery", "true");
	e = envelope("Notification", "x", "m1", NOW_TS, "2");
	sign_env(f->key, e);
	assert_int_equal(run_env(f, e, &prc), DLRD_EAUTH);
	/* the message-type header must agree with Type */
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "x-amz-sns-message-type", "SubscriptionConfirmation");
	e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");
	sign_env(f->key, e);
	assert_int_equal(run_env(f, e, &prc), DLRD_EAUTH);
	pt_headers_reset(&f->hdr);
	pt_header_add(&f->hdr, "x-amz-sns-message-type", "Notification");
	e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");
	sign_env(f->key, e);
	assert_int_equal(run_env(f, e, &prc), 0);
	pt_headers_reset(&f->hdr);
	/* not JSON at all */
	assert_int_equal(run_body(f, "Type=Notification", NOW_MS, &prc), DLRD_EINVAL);
	assert_int_equal(run_body(f, "[]", NOW_MS, &prc), DLRD_EINVAL);
	/* confirmations need SubscribeURL and Token */
	e = envelope("SubscriptionConfirmation", "x", "m1", NOW_TS, "2");
	json_object_del(e, "Token");
	sign_env(f->key, e);
	assert_int_equal(run_env(f, e, &prc), DLRD_EAUTH);
}

/* The envelope is parsed before its signature is checked, so the values
 * jansson may build from it are bounded first (LIM_JSON_UNAUTH_VALUES):
 * 64 KiB of "1," would otherwise cost about 150 normal callbacks. */
static void test_envelope_values(void **state)
{
	struct fx *f = *state;
	json_t *e, *attrs, *pad;
	char name[16];
	int prc;

	/* SNS's most: 10 MessageAttributes; commas in strings do not count */
	e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");
	attrs = json_object();
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "attr%d", i);
		json_object_set_new(
		    attrs, name, json_pack("{s:s,s:s}", "Type", "String", "Value", ",,,[[[{{{,,,"));
	}
	json_object_set_new(e, "MessageAttributes", attrs);
	sign_env(f->key, e);
	assert_int_equal(run_env(f, e, &prc), 0);
	assert_int_equal(prc, 0);
	assert_int_equal(f->res.n_events, 1);

	/* a signed envelope padded past the bound is refused unparsed */
	e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");
	pad = json_array();
	for (unsigned i = 0; i < LIM_JSON_UNAUTH_VALUES; i++)
		json_array_append_new(pad, json_integer(1));
	json_object_set_new(e, "Padding", pad);
	sign_env(f->key, e);
	assert_int_equal(run_env(f, e, &prc), DLRD_EINVAL);
	assert_string_equal(f->err, "body has more than 256 JSON values");
	assert_int_equal(run_body(f, "{\"a\":[{},{},{}]}", NOW_MS, &prc), DLRD_EAUTH);

	/* the count itself: 1 + commas + opening brackets outside strings */
	assert_true(jsonx_values_ok("{\"a\":[1,2]}", 11, 4));
	assert_false(jsonx_values_ok("{\"a\":[1,2]}", 11, 3));
	assert_true(jsonx_values_ok("[\"\\\",[{,\"]", 10, 2));
	assert_false(jsonx_values_ok("[\"\\\",[{,\"]", 10, 1));
}

static void test_timestamp_window(void **state)
{
	struct fx *f = *state;
	json_t *e;
	int prc;

	e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");
	sign_env(f->key, e);
	free(f->body);
	f->body = json_dumps(e, JSON_COMPACT);
	json_decref(e);
	/* default 4200 s either way */
	assert_int_equal(run_body(f, f->body, NOW_MS + 4200000, &prc), 0);
	assert_int_equal(run_body(f, f->body, NOW_MS - 4200000, &prc), 0);
	assert_int_equal(run_body(f, f->body, NOW_MS + 4201000, &prc), DLRD_ESTALE);
	assert_int_equal(run_body(f, f->body, NOW_MS - 4201000, &prc), DLRD_ESTALE);
	e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", "yesterday", "2");
	sign_env(f->key, e);
	assert_int_equal(run_env(f, e, &prc), DLRD_EAUTH);
	assert_string_equal(f->err, "malformed Timestamp");
}

/* jansson's allocations, counted while a test sets count_json_allocs. */
static size_t json_allocs;

static void *count_malloc(size_t n)
{
	json_allocs++;
	return malloc(n);
}

/* Runs body at now_ms and returns authenticate()'s code; *allocs gets how
 * many allocations jansson made meanwhile. */
static int run_counted(struct fx *f, const char *body, int64_t now_ms, size_t *allocs)
{
	int prc, rc;

	json_allocs = 0;
	json_set_alloc_funcs(count_malloc, free);
	rc = run_body(f, body, now_ms, &prc);
	json_set_alloc_funcs(malloc, free);
	*allocs = json_allocs;
	return rc;
}

/* A forged envelope with a TopicArn that is not ours, or a Timestamp out
 * of the window, is refused before jansson parses it: 64 KiB of Message
 * would cost jansson over a millisecond.  The answers are those of the
 * checks after parsing. */
static void test_refused_before_parsing(void **state)
{
	struct fx *f = *state;
	char *big = malloc(60001);
	json_t *e, *attrs;
	size_t allocs;
	int prc;

	memset(big, 'x', 60000);
	big[60000] = '\0';
	/* not our topic: no jansson allocation at all */
	e = envelope("Notification", big, "m1", NOW_TS, "2");
	json_object_set_new(e, "TopicArn", json_string("arn:aws:sns:us-east-1:123456789012:x"));
	json_object_set_new(e, "Signature", json_string("AAAA"));
	free(f->body);
	f->body = json_dumps(e, JSON_COMPACT);
	json_decref(e);
	assert_int_equal(run_counted(f, f->body, NOW_MS, &allocs), DLRD_EAUTH);
	assert_string_equal(f->err, "TopicArn is not in sns.topic_arns");
	assert_int_equal(allocs, 0);
	/* out of the window either way */
	e = envelope("Notification", big, "m1", NOW_TS, "2");
	json_object_set_new(e, "Signature", json_string("AAAA"));
	free(f->body);
	f->body = json_dumps(e, JSON_COMPACT);
	json_decref(e);
	assert_int_equal(run_counted(f, f->body, NOW_MS + 4201000, &allocs), DLRD_ESTALE);
	assert_string_equal(f->err, "Timestamp outside the tolerance");
	assert_int_equal(allocs, 0);
	assert_int_equal(run_counted(f, f->body, NOW_MS - 4201000, &allocs), DLRD_ESTALE);
	assert_int_equal(allocs, 0);
	/* in the window, forged: parsed, refused by the signature */
	assert_int_equal(run_counted(f, f->body, NOW_MS, &allocs), DLRD_EAUTH);
	assert_string_equal(f->err, "signature mismatch");
	assert_true(allocs > 0);
	free(big);

	/* what the scan cannot be sure of is left to the parse: a TopicArn
	 * written with escapes (signed, so it passes) */
	e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");
	sign_env(f->key, e);
	free(f->body);
	f->body = json_dumps(e, JSON_COMPACT | JSON_ESCAPE_SLASH);
	json_decref(e);
	{
		char *t = strstr(f->body, "\"TopicArn\":\"arn:");
		assert_non_null(t);
		/* "arn:" -> "arn\u003a": same string once decoded */
		size_t at = (size_t)(t - f->body) + strlen("\"TopicArn\":\"arn");
		char *b2 = malloc(strlen(f->body) + 6);
		memcpy(b2, f->body, at);
		memcpy(b2 + at, "\\u003a", 6);
		memcpy(b2 + at + 6, f->body + at + 1, strlen(f->body + at + 1) + 1);
		free(f->body);
		f->body = b2;
	}
	assert_int_equal(run_body(f, f->body, NOW_MS, &prc), 0);
	assert_int_equal(prc, 0);
	assert_int_equal(f->res.n_events, 1);
	/* another TopicArn deeper down (in a MessageAttribute) is not the
	 * envelope's */
	e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");
	attrs = json_object();
	json_object_set_new(attrs, "TopicArn",
	                    json_pack("{s:s,s:s}", "Type", "String", "Value", "not-ours"));
	json_object_set_new(attrs, "Timestamp", json_pack("{s:s}", "TopicArn", "not-ours"));
	json_object_set_new(e, "MessageAttributes", attrs);
	sign_env(f->key, e);
	assert_int_equal(run_env(f, e, &prc), 0);
	assert_int_equal(prc, 0);
	/* a TopicArn twice: jansson's answer (a duplicate key), not the scan's */
	assert_int_equal(run_body(f,
	                          "{\"TopicArn\":\"x\",\"TopicArn\":\"" TOPIC "\","
	                          "\"Type\":\"Notification\"}",
	                          NOW_MS, &prc),
	                 DLRD_EINVAL);
}

static void test_tolerance_setting(void **state)
{
	struct fx *f = NULL;
	json_t *e;
	int prc;
	EVP_PKEY *k;

	(void)state;
	assert_int_equal(start(&f, TOPIC, NULL, "60"), 0);
	f->key = make_cert(-60, 600, &f->pem);
	k = sns_cache_put(f->s, CERT_URL, f->pem, strlen(f->pem), util_now_ms(), true);
	EVP_PKEY_free(k);
	e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");
	sign_env(f->key, e);
	free(f->body);
	f->body = json_dumps(e, JSON_COMPACT);
	json_decref(e);
	assert_int_equal(run_body(f, f->body, NOW_MS + 60000, &prc), 0);
	assert_int_equal(run_body(f, f->body, NOW_MS + 61000, &prc), DLRD_ESTALE);
	teardown((void **)&f);
}

static void test_aws_hosts(void **state)
{
	static const char *const good[] = {
	    "sns.us-east-1.amazonaws.com",     "sns.us-gov-west-1.amazonaws.com",
	    "sns.cn-north-1.amazonaws.com.cn", "sns.ap-southeast-2.amazonaws.com",
	    "SNS.EU-CENTRAL-1.AMAZONAWS.COM",  "sns.us-isob-east-1.amazonaws.com",
	};
	static const char *const bad[] = {
	    "sns.amazonaws.com",
	    "sns.s3-us-west-2.amazonaws.com", /* an S3 bucket named "sns" */
	    "sns.s3-website-us-east-1.amazonaws.com",
	    "sns.s3.amazonaws.com",
	    "sns.us-east-1.amazonaws.com.evil.example",
	    "evil.sns.us-east-1.amazonaws.com",
	    "sns.us-east-1.amazonaws.co",
	    "sns.us-east.amazonaws.com",
	    "sns.us-east-1a.amazonaws.com",
	    "sns.us-east-1-.amazonaws.com",
	    "sns.us--east-1.amazonaws.com",
	    "sns.u-east-1.amazonaws.com",
	    "sns..amazonaws.com",
	    "sns.us-east-1.amazonaws.com.",
	    "sqs.us-east-1.amazonaws.com",
	    "",
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(good); i++)
		assert_true(aws_host_ok(good[i]));
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		if (aws_host_ok(bad[i]))
			fail_msg("accepted %s", bad[i]);
	}
}

static void test_cert_urls(void **state)
{
	struct fx *f = *state;
	static const char *const good[] = {
	    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
	    "https://SNS.us-east-1.amazonaws.com/a/b.pem",
	    "https://127.0.0.1:8443/cert.pem",
	};
	static const char *const bad[] = {
	    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
	    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem?x=1",
	    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem#x",
	    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.txt",
	    "https://sns.us-east-1.amazonaws.com/",
	    "https://user@sns.us-east-1.amazonaws.com/a.pem",
	    "https://evil.example@sns.us-east-1.amazonaws.com/a.pem",
	    "https://sns.us-east-1.amazonaws.com@evil.example/a.pem",
	    "https://sns.us-east-1.amazonaws.com\\@evil.example/a.pem",
	    "https://evil.example/sns.us-east-1.amazonaws.com/a.pem",
	    "https://127.0.0.2/cert.pem",
	    "https://localhost/cert.pem",
	    "ftp://sns.us-east-1.amazonaws.com/a.pem",
	    "https://sns.us-east-1.amazonaws.com/a .pem",
	    "//sns.us-east-1.amazonaws.com/a.pem",
	    "sns.us-east-1.amazonaws.com/a.pem",
	    "",
	};
	char err[128];

	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		CURLU *u = check_url(f->s, good[i], true, err, sizeof(err));
		if (!u)
			fail_msg("refused %s", good[i]);
		curl_url_cleanup(u);
	}
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		CURLU *u = check_url(f->s, bad[i], true, err, sizeof(err));
		if (u)
			fail_msg("accepted %s", bad[i]);
		assert_string_equal(err,
		                    "SigningCertURL is not an https .pem URL on an allowed host");
	}
	/* SubscribeURL: a query is fine, the host rule the same */
	CURLU *u =
	    check_url(f->s, "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&T=1",
	              false, err, sizeof(err));
	assert_non_null(u);
	curl_url_cleanup(u);
	assert_null(check_url(f->s, "https://example.com/?Action=ConfirmSubscription", false, err,
	                      sizeof(err)));
}

static void test_cert_dates(void **state)
{
	struct fx *f = *state;
	char *pem;
	EVP_PKEY *k = make_cert(-7200, -3600, &pem); /* expired an hour ago */

	assert_null(sns_cache_put(f->s, "https://sns.us-east-1.amazonaws.com/old.pem", pem,
	                          strlen(pem), util_now_ms(), true));
	EVP_PKEY_free(k);
	free(pem);
	k = make_cert(3600, 7200, &pem); /* not valid yet */
	assert_null(sns_cache_put(f->s, "https://sns.us-east-1.amazonaws.com/new.pem", pem,
	                          strlen(pem), util_now_ms(), true));
	EVP_PKEY_free(k);
	free(pem);
	assert_null(sns_cache_put(f->s, "https://sns.us-east-1.amazonaws.com/x.pem", "junk", 4,
	                          util_now_ms(), false));
}

static void test_cache_lru(void **state)
{
	struct fx *f = *state;
	char url[128];
	int64_t now = util_now_ms();
	EVP_PKEY *k;

	/* the setup's CERT_URL is slot one; fill the rest, then keep using it */
	for (int i = 0; i < SNS_CACHE_SLOTS + 4; i++) {
		snprintf(url, sizeof(url), "https://sns.us-east-1.amazonaws.com/c%d.pem", i);
		k = sns_cache_put(f->s, url, f->pem, strlen(f->pem), now, true);
		assert_non_null(k);
		EVP_PKEY_free(k);
		/* a hit refreshes CERT_URL's place */
		assert_int_equal(cert_get(f->s, NULL, CERT_URL, now, &k, f->err, sizeof(f->err)),
		                 0);
		EVP_PKEY_free(k);
	}
	size_t used = 0;
	bool has_cert_url = false, has_c0 = false, has_last = false;
	for (size_t i = 0; i < SNS_CACHE_SLOTS; i++) {
		if (!f->s->cache[i].url)
			continue;
		used++;
		has_cert_url |= strcmp(f->s->cache[i].url, CERT_URL) == 0;
		has_c0 |=
		    strcmp(f->s->cache[i].url, "https://sns.us-east-1.amazonaws.com/c0.pem") == 0;
		has_last |= strcmp(f->s->cache[i].url, url) == 0;
	}
	assert_int_equal(used, SNS_CACHE_SLOTS);
	assert_true(has_cert_url);
	assert_false(has_c0); /* the least recently used went first */
	assert_true(has_last);
	/* putting a URL again replaces its own slot */
	k = sns_cache_put(f->s, url, f->pem, strlen(f->pem), now, true);
	EVP_PKEY_free(k);
	used = 0;
	for (size_t i = 0; i < SNS_CACHE_SLOTS; i++)
		used += f->s->cache[i].url && strcmp(f->s->cache[i].url, url) == 0;
	assert_int_equal(used, 1);
}

/* A certificate on an allowed host that cannot be reached: 503, nothing
 * stored, so SNS retries. */
static void test_cert_unavailable(void **state)
{
	struct fx *f = *state;
	json_t *e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");
	int prc;

	json_object_set_new(e, "SigningCertURL", json_string("https://127.0.0.1:1/cert.pem"));
	sign_env(f->key, e);
	assert_int_equal(run_env(f, e, &prc), 0);
	assert_int_equal(prc, 0);
	assert_int_equal(f->res.n_events, 0);
	assert_int_equal(f->res.http_status, 503);
	assert_string_equal(f->res.body, "signing certificate unavailable, retry later\n");
}

/* ---- failed fetches ---- */

/* A loopback "certificate host" that counts the connections made to it.
 * Active, a thread accepts each and closes it at once, so every fetch from
 * it fails for a temporary reason when the TLS handshake finds no peer.
 * Passive, nobody accepts: for fetches that give up right after connecting
 * (and would not wait for the thread), acceptor_count() drains the queue,
 * where the kernel keeps each connection made. */
struct acceptor {
	int fd;
	uint16_t port;
	bool active;
	int delay_ms; /* active: how long to hold a connection before closing */
	atomic_int accepted;
	atomic_bool stop;
	pthread_t t;
};

static void *acceptor_main(void *arg)
{
	struct acceptor *a = arg;

	while (!atomic_load(&a->stop)) {
		struct pollfd p = {.fd = a->fd, .events = POLLIN};
		if (poll(&p, 1, 20) == 1) {
			int c = accept(a->fd, NULL, NULL);
			if (c >= 0) {
				atomic_fetch_add(&a->accepted, 1);
				if (a->delay_ms)
					usleep((useconds_t)a->delay_ms * 1000);
				close(c);
			}
		}
	}
	return NULL;
}

static void acceptor_start(struct acceptor *a, bool active, int delay_ms)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);

	a->delay_ms = delay_ms;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(a->fd >= 0);
	assert_int_equal(bind(a->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(a->fd, 16), 0);
	assert_int_equal(getsockname(a->fd, (struct sockaddr *)&sa, &len), 0);
	a->port = ntohs(sa.sin_port);
	atomic_init(&a->accepted, 0);
	atomic_init(&a->stop, false);
	a->active = active;
	if (active)
		assert_int_equal(pthread_create(&a->t, NULL, acceptor_main, a), 0);
}

/* The connections made so far.  Active, a connection is counted before it
 * is closed, so a fetch that returned has been counted. */
static int acceptor_count(struct acceptor *a)
{
	struct pollfd p = {.fd = a->fd, .events = POLLIN};

	while (!a->active && poll(&p, 1, 0) == 1) {
		int c = accept(a->fd, NULL, NULL);
		assert_true(c >= 0);
		atomic_fetch_add(&a->accepted, 1);
		close(c);
	}
	return atomic_load(&a->accepted);
}

static void acceptor_stop(struct acceptor *a)
{
	if (a->active) {
		atomic_store(&a->stop, true);
		pthread_join(a->t, NULL);
	}
	close(a->fd);
}

/* A signed notification naming url as its SigningCertURL, run at now_ms.
 * Returns authenticate()'s code. */
static int run_cert_url(struct fx *f, const char *url, int64_t now_ms, int *parse_rc)
{
	json_t *e = envelope("Notification", EVENT("TEXT_DELIVERED", "true"), "m1", NOW_TS, "2");

	json_object_set_new(e, "SigningCertURL", json_string(url));
	sign_env(f->key, e);
	free(f->body);
	f->body = json_dumps(e, JSON_COMPACT);
	json_decref(e);
	return run_body(f, f->body, now_ms, parse_rc);
}

/* A certificate host that fails for a temporary reason is asked once: the
 * requests naming it in the next SNS_FAIL_TEMP_MS are answered 503 without
 * a fetch, and then it is asked again. */
static void test_temporary_failure_remembered(void **state)
{
	struct fx *f = *state;
	struct acceptor a;
	char url[128];
	int prc;
	static const int64_t at[] = {0, 1, 1000, SNS_FAIL_TEMP_MS - 1};

	acceptor_start(&a, true, 0);
	snprintf(url, sizeof(url), "https://127.0.0.1:%u/gone.pem", a.port);
	for (size_t i = 0; i < ARRAY_LEN(at); i++) {
		assert_int_equal(run_cert_url(f, url, NOW_MS + at[i], &prc), 0);
		assert_int_equal(prc, 0);
		assert_int_equal(f->res.http_status, 503);
		assert_int_equal(f->res.n_events, 0);
		assert_int_equal(acceptor_count(&a), 1);
	}
	/* the fetch slot is free: other certificates still work meanwhile */
	assert_int_equal(notify(f, EVENT("TEXT_DELIVERED", "true"), "m2", "2")->status,
	                 ST_DELIVERED);
	/* after SNS_FAIL_TEMP_MS (from the end of the fetch, which took less
	 * than a second): asked again, and remembered again */
	assert_int_equal(run_cert_url(f, url, NOW_MS + SNS_FAIL_TEMP_MS + 1000, &prc), 0);
	assert_int_equal(f->res.http_status, 503);
	assert_int_equal(acceptor_count(&a), 2);
	assert_int_equal(run_cert_url(f, url, NOW_MS + SNS_FAIL_TEMP_MS + 1001, &prc), 0);
	assert_int_equal(f->res.http_status, 503);
	assert_int_equal(acceptor_count(&a), 2);
	acceptor_stop(&a);
}

/* A failure is remembered from the end of its fetch: one that took long
 * (a host that times out) is not tried again as soon as it returns. */
static void test_slow_failure_remembered_from_its_end(void **state)
{
	struct fx *f = *state;
	struct acceptor a;
	char url[128];
	int prc;

	acceptor_start(&a, true, 400);
	snprintf(url, sizeof(url), "https://127.0.0.1:%u/slow.pem", a.port);
	assert_int_equal(run_cert_url(f, url, NOW_MS, &prc), 0);
	assert_int_equal(f->res.http_status, 503);
	assert_int_equal(acceptor_count(&a), 1);
	/* SNS_FAIL_TEMP_MS after the request began, but not after the fetch */
	assert_int_equal(run_cert_url(f, url, NOW_MS + SNS_FAIL_TEMP_MS, &prc), 0);
	assert_int_equal(f->res.http_status, 503);
	assert_int_equal(acceptor_count(&a), 1);
	assert_int_equal(run_cert_url(f, url, NOW_MS + 2 * SNS_FAIL_TEMP_MS, &prc), 0);
	assert_int_equal(acceptor_count(&a), 2);
	acceptor_stop(&a);
}

/* A refused certificate URL is fetched once: the requests naming it in the
 * next SNS_FAIL_REFUSED_MS are 401 without a fetch, then it is fetched
 * again.  (Trust anchors that cannot be loaded make libcurl refuse every
 * fetch after connecting, which the listener counts.) */
static void test_refused_fetch_remembered(void **state)
{
	struct fx *f = *state;
	struct acceptor a;
	char url[128];
	int prc;
	static const int64_t at[] = {0, 1, SNS_FAIL_TEMP_MS, SNS_FAIL_REFUSED_MS - 1};

	free(f->s->ca_file);
	f->s->ca_file = xstrdup("/nonexistent/dlrd-test-ca.pem");
	acceptor_start(&a, false, 0);
	snprintf(url, sizeof(url), "https://127.0.0.1:%u/refused.pem", a.port);
	for (size_t i = 0; i < ARRAY_LEN(at); i++) {
		assert_int_equal(run_cert_url(f, url, NOW_MS + at[i], &prc), DLRD_EAUTH);
		assert_non_null(strstr(f->err, "refused: "));
		assert_int_equal(acceptor_count(&a), 1);
	}
	assert_non_null(strstr(f->err, "remembered"));
	assert_int_equal(run_cert_url(f, url, NOW_MS + SNS_FAIL_REFUSED_MS + 1000, &prc),
	                 DLRD_EAUTH);
	assert_int_equal(acceptor_count(&a), 2);
	assert_null(strstr(f->err, "remembered"));
	acceptor_stop(&a);
}

/* cert_get() on url at now_ms, through check_url() as authenticate()
 * calls it; the key, if any, is dropped. */
static int get_cert(struct fx *f, const char *url, int64_t now_ms)
{
	CURLU *u = check_url(f->s, url, true, f->err, sizeof(f->err));
	EVP_PKEY *k = NULL;
	int rc;

	assert_non_null(u);
	rc = cert_get(f->s, u, url, now_ms, &k, f->err, sizeof(f->err));
	EVP_PKEY_free(k);
	curl_url_cleanup(u);
	return rc;
}

/* The failures are kept in SNS_FAIL_SLOTS slots, least recently used out. */
static void test_failed_fetches_bounded(void **state)
{
	struct fx *f = *state;
	struct acceptor a;
	char first[128], second[128], url[128];
	size_t used = 0;
	bool has_first = false, has_second = false, has_last = false;

	acceptor_start(&a, true, 0);
	snprintf(first, sizeof(first), "https://127.0.0.1:%u/f0.pem", a.port);
	snprintf(second, sizeof(second), "https://127.0.0.1:%u/f1.pem", a.port);
	for (int i = 0; i < SNS_FAIL_SLOTS + 4; i++) {
		snprintf(url, sizeof(url), "https://127.0.0.1:%u/f%d.pem", a.port, i);
		assert_int_equal(get_cert(f, url, NOW_MS), DLRD_EIO);
		assert_int_equal(acceptor_count(&a), i + 1);
		/* a remembered failure is used, which keeps it */
		assert_int_equal(get_cert(f, first, NOW_MS), DLRD_EIO);
		assert_int_equal(acceptor_count(&a), i + 1);
	}
	for (size_t i = 0; i < SNS_FAIL_SLOTS; i++) {
		const char *u = f->s->failed[i].url;
		if (!u)
			continue;
		used++;
		has_first |= strcmp(u, first) == 0;
		has_second |= strcmp(u, second) == 0;
		has_last |= strcmp(u, url) == 0;
	}
	assert_int_equal(used, SNS_FAIL_SLOTS);
	assert_true(has_first);
	assert_false(has_second); /* the least recently used went first */
	assert_true(has_last);
	/* what went out is fetched again */
	assert_int_equal(get_cert(f, second, NOW_MS), DLRD_EIO);
	assert_int_equal(acceptor_count(&a), SNS_FAIL_SLOTS + 5);
	acceptor_stop(&a);
}

static void test_confirmations(void **state)
{
	struct fx *f = *state;
	json_t *e;
	int prc;

	/* the SubscribeURL is on a host that is not allowed: a review row */
	e = envelope("SubscriptionConfirmation", "You have chosen to subscribe...", "c1", NOW_TS,
	             "1");
	json_object_set_new(e, "SubscribeURL",
	                    json_string("https://evil.example/?Action=ConfirmSubscription"));
	sign_env(f->key, e);
	assert_int_equal(run_env(f, e, &prc), 0);
	assert_int_equal(prc, 0);
	assert_int_equal(f->res.n_events, 1);
	assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
	assert_int_equal(f->res.http_status, 200);
	/* SNS cannot be reached: 503, SNS sends it again */
	e = envelope("SubscriptionConfirmation", "You have chosen to subscribe...", "c2", NOW_TS,
	             "2");
	json_object_set_new(e, "SubscribeURL",
	                    json_string("https://127.0.0.1:1/?Action=ConfirmSubscription"));
	sign_env(f->key, e);
	assert_int_equal(run_env(f, e, &prc), 0);
	assert_int_equal(f->res.n_events, 0);
	assert_int_equal(f->res.http_status, 503);
	/* the confirmation's own fields are signed: a changed Token fails */
	e = envelope("SubscriptionConfirmation", "x", "c3", NOW_TS, "2");
	sign_env(f->key, e);
	json_object_set_new(e, "Token", json_string("other"));
	assert_int_equal(run_env(f, e, &prc), DLRD_EAUTH);
	/* UnsubscribeConfirmation: verified, then a review row */
	e = envelope("UnsubscribeConfirmation", "You have chosen to deactivate...", "u1", NOW_TS,
	             "2");
	sign_env(f->key, e);
	assert_int_equal(run_env(f, e, &prc), 0);
	assert_int_equal(f->res.n_events, 1);
	assert_int_equal(f->res.events[0].kind, EV_UNUSABLE);
	assert_int_equal(f->res.events[0].review, REVIEW_UNUSABLE);
	assert_non_null(strstr(f->res.events[0].review_detail, "unsubscribed"));
}

static void test_method_and_type(void **state)
{
	struct fx *f = *state;
	struct provider_request req;

	pt_request(&req, &f->a,
	           &(struct pt_call){.method = "GET", .target = "/webhooks/sns/status"});
	assert_int_equal(provider_sns.authenticate(f->s, &req, f->err, sizeof(f->err)),
	                 DLRD_EMETHOD);
	req.method = "POST";
	req.content_type = "application/x-www-form-urlencoded";
	assert_int_equal(provider_sns.authenticate(f->s, &req, f->err, sizeof(f->err)),
	                 DLRD_EUNSUPP);
}

static void test_config(void **state)
{
	struct config cfg;
	void *st = (void *)1;
	char err[256];

	(void)state;
	unsetenv("DLRD_SNS_TOPIC_ARNS");
	unsetenv("DLRD_SNS_CERT_HOSTS");
	unsetenv("DLRD_SNS_TOLERANCE_SECONDS");
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(provider_sns.init(&cfg, &st, err, sizeof(err)), 0);
	assert_null(st); /* no topic: not enabled */
	config_fini(&cfg);
	setenv("DLRD_SNS_TOPIC_ARNS", "my-topic", 1);
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(provider_sns.init(&cfg, &st, err, sizeof(err)), DLRD_ECONFIG);
	assert_string_equal(err, "config: sns.topic_arns: item 1 is not an SNS topic ARN");
	config_fini(&cfg);
	setenv("DLRD_SNS_TOPIC_ARNS", TOPIC, 1);
	setenv("DLRD_SNS_CERT_HOSTS", "aws, bad host", 1);
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(provider_sns.init(&cfg, &st, err, sizeof(err)), DLRD_ECONFIG);
	assert_string_equal(err, "config: sns.cert_hosts: item 2 is not a host name");
	config_fini(&cfg);
	unsetenv("DLRD_SNS_CERT_HOSTS");
	setenv("DLRD_SNS_CA_FILE", "/nonexistent/ca.pem", 1);
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(provider_sns.init(&cfg, &st, err, sizeof(err)), DLRD_ECONFIG);
	assert_string_equal(err, "config: sns.ca_file: cannot read the file");
	config_fini(&cfg);
	unsetenv("DLRD_SNS_CA_FILE");
	unsetenv("DLRD_SNS_TOPIC_ARNS");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_aws_vectors),
	    cmocka_unit_test_setup_teardown(test_event_types, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_event_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rejections, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_envelope_values, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timestamp_window, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused_before_parsing, setup, teardown),
	    cmocka_unit_test(test_tolerance_setting),
	    cmocka_unit_test(test_aws_hosts),
	    cmocka_unit_test_setup_teardown(test_cert_urls, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cert_dates, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cache_lru, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cert_unavailable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_temporary_failure_remembered, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slow_failure_remembered_from_its_end, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_refused_fetch_remembered, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_fetches_bounded, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_confirmations, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_method_and_type, setup, teardown),
	    cmocka_unit_test(test_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
