/* SPDX-License-Identifier: MIT */
/*
 * What a forged callback costs dlrd before it is refused, per provider, in
 * process: each provider's authenticate() (then parse(), as the HTTP front
 * does, should it pass) over a request with a wrong signature and a body
 * of the worst shape for that provider (one huge field, many tiny ones,
 * repeated keys, deep nesting, escapes), at two body sizes, so that cost
 * that grows faster than the body shows as a ratio above 4.
 *
 *   bench/forged [PROVIDER [SHAPE]]   (from the build folder: bench/forged)
 *
 * Every other header a scheme checks before its signature is made to pass
 * (a fresh timestamp, a well-formed signature of the right length, the SNS
 * TopicArn and a certificate URL already in the cache), so the number is
 * what an attacker who knows everything but the secret makes dlrd spend.
 * BENCH_SECRETS=n configures n secrets per provider (default 1; rotation
 * allows up to 16).  Prints the median of 7 rounds, microseconds per
 * request.  The file includes sns.c, as its unit test does, to put a
 * certificate in the cache without the network.
 */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../src/providers/sns.c"

#define SNS_TOPIC    "arn:aws:sns:us-east-1:123456789012:dlrd-sms-events"
#define SNS_CERT_URL "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem"
#define ROUNDS       7
#define MAX_HDRS     8

struct hdrs {
	const char *name[MAX_HDRS];
	const char *value[MAX_HDRS];
	size_t n;
};

static const char *hget(void *ctx, const char *name)
{
	const struct hdrs *h = ctx;
	for (size_t i = 0; i < h->n; i++)
		if (strcasecmp(h->name[i], name) == 0)
			return h->value[i];
	return NULL;
}

static void hadd(struct hdrs *h, const char *name, const char *value)
{
	h->name[h->n] = name;
	h->value[h->n++] = value;
}

/* ---- growing buffer ---- */

struct buf {
	char *p;
	size_t n, cap;
};

static void put(struct buf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void puts_(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* Appends unit repeatedly, with sep between, until the buffer holds about
 * size - tail bytes. */
static void fill(struct buf *b, size_t size, size_t tail, const char *unit, const char *sep)
{
	bool first = true;
	while (b->n + strlen(unit) + strlen(sep) + tail <= size) {
		if (!first)
			puts_(b, sep);
		puts_(b, unit);
		first = false;
	}
}

/* ---- body shapes ---- */

enum shape {
	SH_JSON_HUGE,    /* {"a":"xxxx..."} */
	SH_JSON_ESC,     /* {"a":"\u00e9\u00e9..."} */
	SH_JSON_TINY,    /* {"k0":1,"k1":1,...} */
	SH_JSON_REPEAT,  /* {"a":1,"a":1,...} */
	SH_JSON_DEEP,    /* [[[[...]]]] */
	SH_FORM_HUGE,    /* a=xxxx... (one field) */
	SH_FORM_16K,     /* fields of 16 KiB, the most one may hold */
	SH_FORM_TINY,    /* a=1&a=1&... */
	SH_FORM_SORT,    /* 256 fields sharing a long prefix: the sort's worst */
	SH_FORM_AMP,     /* &&&&... */
	SH_FORM_PCT,     /* a=%41%41... */
	SH_FORM_16K_SIG, /* form-16k with a Vonage sig: verified, not refused early */
	SH_JSON_16K_SIG, /* {"sig":"..","a":"<16 KiB>",...}: members within the limit */
	SH_SNS_HUGE,     /* SNS envelope, Message one huge string */
	SH_SNS_ESC,      /* the same, Message all \u escapes */
	SH_SNS_TOPIC,    /* huge Message, TopicArn not ours */
	SH_SNS_TOPIC_E,  /* the same, Message all \u escapes */
	SH_SNS_STALE,    /* huge Message, Timestamp a day old */
	SH_SNS_ATTRS,    /* 250 MessageAttributes values */
};

static const char *const shape_names[] = {
    "json-huge", "json-esc",      "json-tiny",    "json-repeat", "json-deep",
    "form-huge", "form-16k",      "form-tiny",    "form-sort",   "form-amp",
    "form-pct",  "form-16k-sig",  "json-16k-sig", "sns-huge",    "sns-esc",
    "sns-topic", "sns-topic-esc", "sns-stale",    "sns-attrs",
};

static void sns_envelope(struct buf *b, size_t size, enum shape sh)
{
	char ts[25];
	const char *topic = sh == SH_SNS_TOPIC || sh == SH_SNS_TOPIC_E
	                        ? "arn:aws:sns:us-east-1:123456789012:not-ours"
	                        : SNS_TOPIC;
	char head[1024], sig[345];

	util_rfc3339(util_now_ms() - (sh == SH_SNS_STALE ? 86400000 : 0), ts);
	memset(sig, 'A', 344);
	sig[344] = '\0'; /* base64 of 256 zero bytes: a 2048-bit signature */
	util_fmt(head, sizeof(head),
	         "{\"Type\":\"Notification\",\"MessageId\":\"6b2bd3a8-1b8f-5b0a-9a37-"
	         "0b5d1c7c1a11\",\"TopicArn\":\"%s\",\"Timestamp\":\"%s\","
	         "\"SignatureVersion\":\"2\",\"Signature\":\"%s\",\"SigningCertURL\":\"%s\","
	         "\"UnsubscribeURL\":\"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe\",",
	         topic, ts, sig, SNS_CERT_URL);
	puts_(b, head);
	if (sh == SH_SNS_ATTRS) {
		puts_(b, "\"Message\":\"{}\",\"MessageAttributes\":{");
		for (int i = 0; i < 80; i++) {
			char a[128];
			util_fmt(a, sizeof(a), "%s\"a%d\":{\"Type\":\"String\",\"Value\":\"",
			         i ? "," : "", i);
			puts_(b, a);
			fill(b, b->n + (size - 2000) / 80, 0, "x", "");
			puts_(b, "\"}");
		}
		puts_(b, "}}");
		return;
	}
	puts_(b, "\"Message\":\"");
	fill(b, size, 2, sh == SH_SNS_ESC || sh == SH_SNS_TOPIC_E ? "\\u00e9" : "x", "");
	puts_(b, "\"}");
}

static void make_body(struct buf *b, enum shape sh, size_t size)
{
	b->n = 0;
	put(b, "", 0);
	switch (sh) {
	case SH_JSON_HUGE:
		puts_(b, "{\"a\":\"");
		fill(b, size, 2, "x", "");
		puts_(b, "\"}");
		break;
	case SH_JSON_ESC:
		puts_(b, "{\"a\":\"");
		fill(b, size, 2, "\\u00e9", "");
		puts_(b, "\"}");
		break;
	case SH_JSON_TINY:
		puts_(b, "{");
		for (unsigned i = 0; b->n + 16 < size; i++) {
			char k[32];
			util_fmt(k, sizeof(k), "%s\"k%u\":1", i ? "," : "", i);
			puts_(b, k);
		}
		puts_(b, "}");
		break;
	case SH_JSON_REPEAT:
		puts_(b, "{");
		fill(b, size, 1, "\"a\":1", ",");
		puts_(b, "}");
		break;
	case SH_JSON_DEEP:
		fill(b, size / 2, 0, "[", "");
		fill(b, size, 0, "]", "");
		break;
	case SH_FORM_HUGE:
		puts_(b, "a=");
		fill(b, size, 0, "x", "");
		break;
	case SH_FORM_16K:
		while (b->n + 16 < size) {
			size_t end = b->n + 16384 < size ? b->n + 16384 : size;
			puts_(b, b->n ? "&a=" : "a=");
			fill(b, end, 0, "x", "");
		}
		break;
	case SH_FORM_TINY:
		fill(b, size, 0, "a=1", "&");
		break;
	case SH_FORM_SORT:
		for (unsigned i = 0; i < 256; i++) {
			char k[32];
			size_t end = b->n + size / 256 - 8;
			puts_(b, i ? "&a=" : "a=");
			fill(b, end, 0, "x", "");
			util_fmt(k, sizeof(k), "%u", i);
			puts_(b, k);
		}
		break;
	case SH_FORM_AMP:
		fill(b, size, 0, "&", "");
		break;
	case SH_FORM_PCT:
		while (b->n + 16 < size) {
			size_t end = b->n + 3 * 5000 < size ? b->n + 3 * 5000 : size;
			puts_(b, b->n ? "&a=" : "a=");
			fill(b, end, 0, "%41", "");
		}
		break;
	case SH_FORM_16K_SIG: /* names a, b, c...: Vonage refuses repeats */
		puts_(b, "sig=00000000000000000000000000000000000000000000000000000000000000"
		         "00&timestamp=1");
		for (char k = 'a'; b->n + 16 < size; k++) {
			char m[8];
			size_t end = b->n + 16000 < size ? b->n + 16000 : size;
			util_fmt(m, sizeof(m), "&%c=", k);
			puts_(b, m);
			fill(b, end, 0, "x", "");
		}
		break;
	case SH_JSON_16K_SIG:
		puts_(b, "{\"sig\":\"00\",\"timestamp\":\"1\"");
		for (char k = 'a'; b->n + 32 < size; k++) {
			char m[8];
			size_t end = b->n + 16000 < size - 2 ? b->n + 16000 : size - 2;
			util_fmt(m, sizeof(m), ",\"%c\":\"", k);
			puts_(b, m);
			fill(b, end, 1, "x", "");
			puts_(b, "\"");
		}
		puts_(b, "}");
		break;
	default:
		sns_envelope(b, size, sh);
		break;
	}
}

/* ---- one case ---- */

struct kase {
	const char *prov;
	enum shape shape;
	const char *method;
	const char *ctype;
	const char *target;
	void (*headers)(struct hdrs *h, const char *now_s);
};

static void h_twilio(struct hdrs *h, const char *now_s)
{
	(void)now_s;
	hadd(h, "X-Twilio-Signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
}

static void h_telnyx(struct hdrs *h, const char *now_s)
{
	static char sig[89];
	memset(sig, 'A', 86);
	memcpy(sig + 86, "==", 3);
	hadd(h, "telnyx-signature-ed25519", sig);
	hadd(h, "telnyx-timestamp", now_s);
}

static void h_plivo(struct hdrs *h, const char *now_s)
{
	(void)now_s;
	hadd(h, "X-Plivo-Signature-V3", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
	hadd(h, "X-Plivo-Signature-Ma-V3", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
	hadd(h, "X-Plivo-Signature-V3-Nonce", "12345678901234567890");
}

static void h_none(struct hdrs *h, const char *now_s)
{
	(void)h;
	(void)now_s;
}

static void h_vmsg(struct hdrs *h, const char *now_s)
{
	(void)now_s;
	/* {"alg":"HS256","typ":"JWT"}.{"iat":1}.<32 zero bytes> */
	hadd(h, "Authorization",
	     "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjF9."
	     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
}

static void h_sinch(struct hdrs *h, const char *now_s)
{
	hadd(h, "x-sinch-webhook-signature",
	     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
	hadd(h, "x-sinch-webhook-signature-nonce", "01FJA8B4A7BM43YGWSG9GBV067");
	hadd(h, "x-sinch-webhook-signature-timestamp", now_s);
	hadd(h, "x-sinch-webhook-signature-algorithm", "HmacSHA512");
}

static void h_infobip(struct hdrs *h, const char *now_s)
{
	(void)now_s;
	hadd(h, "Authorization", "Basic ZGxyZDp3cm9uZw==");
}

static void h_mbird(struct hdrs *h, const char *now_s)
{
	(void)now_s;
	hadd(h, "MessageBird-Signature-JWT",
	     "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJNZXNzYWdlQmlyZCJ9."
	     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
}

static void h_generic(struct hdrs *h, const char *now_s)
{
	hadd(h, "webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W");
	hadd(h, "webhook-timestamp", now_s);
	hadd(h, "webhook-signature", "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
}

static void h_sns(struct hdrs *h, const char *now_s)
{
	(void)now_s;
	hadd(h, "x-amz-sns-message-type", "Notification");
}

#define FORM "application/x-www-form-urlencoded"
#define JSON "application/json"

static const struct kase cases[] = {
    {"twilio", SH_FORM_16K, "POST", FORM, "/webhooks/twilio/status", h_twilio},
    {"twilio", SH_FORM_TINY, "POST", FORM, "/webhooks/twilio/status", h_twilio},
    {"twilio", SH_FORM_SORT, "POST", FORM, "/webhooks/twilio/status", h_twilio},
    {"twilio", SH_FORM_AMP, "POST", FORM, "/webhooks/twilio/status", h_twilio},
    {"twilio", SH_FORM_PCT, "POST", FORM, "/webhooks/twilio/status", h_twilio},
    {"twilio", SH_JSON_HUGE, "POST", JSON,
     "/webhooks/twilio/status?bodySHA256="
     "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620",
     h_twilio},
    {"telnyx", SH_JSON_HUGE, "POST", JSON, "/webhooks/telnyx/status", h_telnyx},
    {"telnyx", SH_JSON_TINY, "POST", JSON, "/webhooks/telnyx/status", h_telnyx},
    {"plivo", SH_FORM_16K, "POST", FORM, "/webhooks/plivo/status?a=", h_plivo},
    {"plivo", SH_FORM_SORT, "POST", FORM, "/webhooks/plivo/status?a=", h_plivo},
    {"plivo", SH_FORM_TINY, "POST", FORM, "/webhooks/plivo/status?a=", h_plivo},
    {"vonage", SH_FORM_16K, "POST", FORM, "/webhooks/vonage/status", h_none},
    {"vonage", SH_FORM_SORT, "POST", FORM, "/webhooks/vonage/status", h_none},
    {"vonage", SH_FORM_16K_SIG, "POST", FORM, "/webhooks/vonage/status", h_none},
    {"vonage", SH_JSON_16K_SIG, "POST", JSON, "/webhooks/vonage/status", h_none},
    {"vonage", SH_JSON_HUGE, "POST", JSON, "/webhooks/vonage/status", h_none},
    {"vonage", SH_JSON_ESC, "POST", JSON, "/webhooks/vonage/status", h_none},
    {"vonage", SH_JSON_TINY, "POST", JSON, "/webhooks/vonage/status", h_none},
    {"vonage", SH_JSON_REPEAT, "POST", JSON, "/webhooks/vonage/status", h_none},
    {"vonage", SH_JSON_DEEP, "POST", JSON, "/webhooks/vonage/status", h_none},
    {"vonage-messages", SH_JSON_HUGE, "POST", JSON, "/webhooks/vonage-messages/status", h_vmsg},
    {"sinch", SH_JSON_HUGE, "POST", JSON, "/webhooks/sinch/status", h_sinch},
    {"infobip", SH_JSON_HUGE, "POST", JSON, "/webhooks/infobip/status", h_infobip},
    {"messagebird", SH_FORM_16K, "POST", FORM, "/webhooks/messagebird/status", h_mbird},
    {"generic", SH_JSON_HUGE, "POST", JSON, "/webhooks/generic/status", h_generic},
    {"sns", SH_SNS_HUGE, "POST", "text/plain", "/webhooks/sns/status", h_sns},
    {"sns", SH_SNS_ESC, "POST", "text/plain", "/webhooks/sns/status", h_sns},
    {"sns", SH_SNS_ATTRS, "POST", "text/plain", "/webhooks/sns/status", h_sns},
    {"sns", SH_SNS_TOPIC, "POST", "text/plain", "/webhooks/sns/status", h_sns},
    {"sns", SH_SNS_TOPIC_E, "POST", "text/plain", "/webhooks/sns/status", h_sns},
    {"sns", SH_SNS_STALE, "POST", "text/plain", "/webhooks/sns/status", h_sns},
    {"sns", SH_JSON_TINY, "POST", "text/plain", "/webhooks/sns/status", h_sns},
    {"sns", SH_JSON_DEEP, "POST", "text/plain", "/webhooks/sns/status", h_sns},
};

/* Kannel signs nothing but a token in the query (at most LIM_TARGET_BYTES),
 * so its case is the query, built in main(). */

static void *states[32];
static char block[1 << 16];

static int64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Median over ROUNDS of the ns per request; *rc gets authenticate()'s. */
static double run(const struct provider *p, const void *st, const struct kase *k,
                  const char *target, const struct buf *body, int *rc, char *why, size_t wl)
{
	struct arena a;
	struct hdrs h = {0};
	char now_s[24];
	int64_t r[ROUNDS];
	unsigned iters = 1;

	util_fmt(now_s, sizeof(now_s), "%lld", (long long)(util_now_ms() / 1000));
	k->headers(&h, now_s);
	arena_init(&a, block, sizeof(block));
	for (int round = -1; round < ROUNDS; round++) {
		int64_t t0 = now_ns();
		for (unsigned i = 0; i < iters; i++) {
			struct provider_request req;
			struct provider_result res;
			const char *qm = strchr(target, '?');

			arena_reset(&a);
			memset(&req, 0, sizeof(req));
			req.method = k->method;
			req.kind = HOOK_STATUS;
			req.target = (struct iov){target, strlen(target)};
			req.path =
			    (struct iov){target, qm ? (size_t)(qm - target) : strlen(target)};
			req.query = qm ? (struct iov){qm + 1, strlen(qm + 1)} : (struct iov){"", 0};
			req.body = (struct iov){body->p, body->n};
			req.content_type = k->ctype;
			req.public_url = "https://sms.example.com";
			req.now_ms = util_now_ms();
			req.arena = &a;
			req.header = hget;
			req.hctx = &h;
			why[0] = '\0';
			*rc = p->authenticate(st, &req, why, wl);
			if (*rc == 0) {
				memset(&res, 0, sizeof(res));
				p->parse(st, &req, &res, why, wl);
			}
		}
		int64_t dt = now_ns() - t0;
		if (round < 0) { /* calibrate: about 30 ms a round */
			iters = dt > 0 ? (unsigned)(30000000 / dt) : 1000;
			if (iters < 3)
				iters = 3;
			continue;
		}
		r[round] = dt / iters;
	}
	arena_fini(&a);
	qsort(r, ROUNDS, sizeof(r[0]), cmp_i64);
	return (double)r[ROUNDS / 2];
}

static void setenv_n(const char *name, const char *one, int n)
{
	struct buf b = {0};
	for (int i = 0; i < n; i++) {
		char item[256];
		/* distinct secrets: a suffix on all but the first */
		if (i == 0)
			util_fmt(item, sizeof(item), "%s", one);
		else
			util_fmt(item, sizeof(item), ",%s%d", one, i);
		puts_(&b, item);
	}
	setenv(name, b.p, 1);
	free(b.p);
}

static void configure(int n)
{
	setenv_n("DLRD_TWILIO_AUTH_TOKENS", "bench-twilio-token-0123456789", n);
	setenv("DLRD_TELNYX_PUBLIC_KEYS", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", 1);
	setenv_n("DLRD_PLIVO_AUTH_TOKENS", "MAXXXXXXXXXXXXXXXXXX", n);
	setenv_n("DLRD_PLIVO_MAIN_AUTH_TOKENS", "MAYYYYYYYYYYYYYYYYYY", n);
	setenv_n("DLRD_VONAGE_SIGNATURE_SECRETS", "bench-vonage-secret", n);
	setenv("DLRD_VONAGE_SIGNATURE_METHOD", "sha256", 1);
	setenv_n("DLRD_VONAGE_MESSAGES_SIGNATURE_SECRETS", "bench-vms-secret-0123456789", n);
	setenv_n("DLRD_SINCH_SECRETS", "bench-sinch-secret", n);
	setenv_n("DLRD_INFOBIP_BASIC_AUTH", "dlrd:s3cret", n);
	setenv_n("DLRD_MESSAGEBIRD_SIGNING_KEYS", "bench-mbird-key", n);
	setenv_n("DLRD_KANNEL_TOKENS", "bench-kannel-token-0123456789", n);
	setenv("DLRD_GENERIC_SECRETS", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1);
	setenv("DLRD_SNS_TOPIC_ARNS", SNS_TOPIC, 1);
}

static EVP_PKEY *make_cert(char **pem)
{
	EVP_PKEY *k = EVP_RSA_gen(2048);
	X509 *x = X509_new();
	BIO *b = BIO_new(BIO_s_mem());
	X509_NAME *name;
	char *p;
	long n;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, k);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"sns.test", -1,
	                           -1, 0);
	X509_set_issuer_name(x, name);
	X509_sign(x, k, EVP_sha256());
	PEM_write_bio_X509(b, x);
	n = BIO_get_mem_data(b, &p);
	*pem = xstrndup(p, (size_t)n);
	BIO_free(b);
	X509_free(x);
	return k;
}

static void report(const char *prov, const char *shape, const struct provider *p, const void *st,
                   const struct kase *k, const char *t16, const char *t64, const struct buf *b16,
                   const struct buf *b64)
{
	char why16[256], why64[256];
	int rc16, rc64;
	double u16 = run(p, st, k, t16, b16, &rc16, why16, sizeof(why16)) / 1000.0;
	double u64 = run(p, st, k, t64, b64, &rc64, why64, sizeof(why64)) / 1000.0;

	printf("%-16s %-12s %9.1f %9.1f %6.2f  %d %s\n", prov, shape, u16, u64, u64 / u16, rc64,
	       why64);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const char *only_p = argc > 1 ? argv[1] : NULL, *only_s = argc > 2 ? argv[2] : NULL;
	const char *ns = getenv("BENCH_SECRETS");
	uint64_t nsec_u = 1;
	int nsec;
	struct config cfg;
	char err[256];
	char *pem;
	EVP_PKEY *key;

	if (ns && (util_parse_u64(ns, strlen(ns), &nsec_u) != 0 || nsec_u < 1 || nsec_u > 16)) {
		fprintf(stderr, "BENCH_SECRETS: 1..16\n");
		return 2;
	}
	nsec = (int)nsec_u;
	configure(nsec);
	if (config_load(NULL, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "config: %s\n", err);
		return 1;
	}
	for (size_t i = 0; provider_table[i]; i++) {
		if (provider_table[i]->init(&cfg, &states[i], err, sizeof(err)) != 0 ||
		    !states[i]) {
			fprintf(stderr, "%s: not configured: %s\n", provider_table[i]->name, err);
			return 1;
		}
	}
	key = make_cert(&pem);
	EVP_PKEY_free(sns_cache_put(states[provider_index(&provider_sns)], SNS_CERT_URL, pem,
	                            strlen(pem), util_now_ms(), true));
	EVP_PKEY_free(key);
	free(pem);

	printf("forged requests, %d secret(s) each; us per request (median of %d)\n", nsec, ROUNDS);
	printf("%-16s %-12s %9s %9s %6s  %s\n", "provider", "shape", "16 KiB", "64 KiB", "x",
	       "rc reason (64 KiB)");
	for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
		const struct kase *k = &cases[c];
		const struct provider *p = provider_find(k->prov, strlen(k->prov));
		struct buf b16 = {0}, b64 = {0};
		if ((only_p && strcmp(only_p, k->prov) != 0) ||
		    (only_s && strcmp(only_s, shape_names[k->shape]) != 0))
			continue;
		make_body(&b16, k->shape, 16384);
		make_body(&b64, k->shape, 65536);
		report(k->prov, shape_names[k->shape], p, states[provider_index(p)], k, k->target,
		       k->target, &b16, &b64);
		free(b16.p);
		free(b64.p);
	}
	if (!only_p || strcmp(only_p, "kannel") == 0) {
		/* the query is all Kannel reads: 2 and 8 KiB of tiny fields */
		static const struct kase kk = {"kannel", SH_FORM_TINY, "GET", "", NULL, h_none};
		const struct provider *p = provider_find("kannel", 6);
		struct buf t2 = {0}, t8 = {0}, empty = {0};
		puts_(&t2, "/webhooks/kannel/status?");
		fill(&t2, 2048, 0, "token=1", "&");
		puts_(&t8, "/webhooks/kannel/status?");
		fill(&t8, 8000, 0, "a=1", "&");
		puts_(&t8, "&token=x");
		put(&empty, "", 0);
		printf("(kannel: 2 KiB and 8 KiB queries, no body)\n");
		report("kannel", "query-tiny", p, states[provider_index(p)], &kk, t2.p, t8.p,
		       &empty, &empty);
		free(t2.p);
		free(t8.p);
		free(empty.p);
	}
	for (size_t i = 0; provider_table[i]; i++)
		provider_table[i]->fini(states[i]);
	config_fini(&cfg);
	return 0;
}
