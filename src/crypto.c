/* SPDX-License-Identifier: MIT */
/*
 * Cryptographic primitives over OpenSSL 3 libcrypto.  Digests and HMAC run on
 * every request, so the algorithm objects (EVP_MD, EVP_MAC) are fetched once
 * per process under pthread_once and shared read-only by all threads; a call
 * then only creates and frees its own context (the legacy EVP_sha256() style
 * would repeat an implicit fetch on every call).  Base64 is done by hand: OpenSSL's
 * EVP_DecodeBlock skips whitespace and cannot tell missing from wrong padding,
 * and a signature parser must reject both.
 */
#include "crypto.h"

#include <limits.h>
#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "util.h"

/* Indexed by enum crypto_md. */
static const char *const md_names[] = {"MD5", "SHA1", "SHA256", "SHA512"};
static const size_t md_lens[] = {16, 20, 32, 64};

/* Fetched once by crypto_init_once(), read-only afterwards (any thread). */
static EVP_MD *g_md[ARRAY_LEN(md_names)];
static EVP_MAC *g_hmac;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void fatal(const char *what)
{
	fprintf(stderr, "dlrd: libcrypto: %s failed\n", what);
	abort();
}

static void crypto_init_once(void)
{
	for (size_t i = 0; i < ARRAY_LEN(md_names); i++)
		g_md[i] = EVP_MD_fetch(NULL, md_names[i], NULL); /* MD5 may be absent (FIPS) */
	g_hmac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
	if (!g_hmac)
		fatal("EVP_MAC_fetch(HMAC)");
}

static const EVP_MD *md_get(enum crypto_md md)
{
	assert((size_t)md < ARRAY_LEN(md_names));
	pthread_once(&g_once, crypto_init_once);
	if (!g_md[md])
		fatal(md_names[md]);
	return g_md[md];
}

/* Digest length in bytes of md. */
size_t crypto_md_len(enum crypto_md md)
{
	assert((size_t)md < ARRAY_LEN(md_lens));
	return md_lens[md];
}

/* SHA-256 of p[0..n) into out; aborts if libcrypto fails. */
void crypto_sha256(const void *p, size_t n, uint8_t out[CRYPTO_SHA256_LEN])
{
	unsigned int len = 0;

	if (!EVP_Digest(p, n, out, &len, md_get(CRYPTO_SHA256), NULL) || len != CRYPTO_SHA256_LEN)
		fatal("EVP_Digest");
}

void crypto_sha256_pieces(const struct crypto_piece *pieces, size_t npieces,
                          uint8_t out[CRYPTO_SHA256_LEN])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int len = 0;

	if (!c || !EVP_DigestInit_ex(c, md_get(CRYPTO_SHA256), NULL))
		fatal("EVP_DigestInit_ex");
	for (size_t i = 0; i < npieces; i++)
		if (!EVP_DigestUpdate(c, pieces[i].p, pieces[i].n))
			fatal("EVP_DigestUpdate");
	if (!EVP_DigestFinal_ex(c, out, &len) || len != CRYPTO_SHA256_LEN)
		fatal("EVP_DigestFinal_ex");
	EVP_MD_CTX_free(c);
}

/*
 * The streaming context is the EVP_MAC_CTX itself: struct crypto_hmac_ctx is
 * never defined, the pointer is only converted back here.  That spares one
 * allocation per MAC.
 */
static EVP_MAC_CTX *hmac_ctx(struct crypto_hmac_ctx *c)
{
	return (EVP_MAC_CTX *)(void *)c;
}

/* Keyed contexts kept per thread: setting a key costs a fresh context, the
 * digest's lookup by name and two compression rounds; re-initializing a
 * context that holds it costs none of that (0.42 against 1.05 us a MAC,
 * measured for SHA-1 and SHA-256 over 400 bytes).  Every callback runs one
 * or two HMACs with the same few configured keys (its signature, the
 * recipient hash).  A slot is taken while a MAC is in progress, so nested
 * MACs with one key get a fresh context; longer keys are never kept.  The
 * keys kept are the caller's own secrets, compared in constant time anyway,
 * and wiped when the thread ends. */
#define HMAC_SLOTS   4
#define HMAC_KEY_MAX 128

struct hmac_slot {
	EVP_MAC_CTX *ctx; /* NULL: free */
	bool busy;
	enum crypto_md md;
	size_t keylen;
	unsigned char key[HMAC_KEY_MAX];
};

struct hmac_cache {
	struct hmac_slot slot[HMAC_SLOTS];
	unsigned next; /* round-robin victim */
};

static pthread_key_t hmac_key;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_cache_free(void *p)
{
	struct hmac_cache *hc = p;

	for (size_t i = 0; i < HMAC_SLOTS; i++)
		EVP_MAC_CTX_free(hc->slot[i].ctx);
	OPENSSL_cleanse(hc, sizeof(*hc));
	free(hc);
}

static void hmac_cache_init(void)
{
	if (pthread_key_create(&hmac_key, hmac_cache_free) != 0)
		fatal("pthread_key_create");
}

static struct hmac_cache *hmac_cache(void)
{
	pthread_once(&hmac_once, hmac_cache_init);
	struct hmac_cache *hc = pthread_getspecific(hmac_key);
	if (!hc) {
		hc = calloc(1, sizeof(*hc));
		if (!hc || pthread_setspecific(hmac_key, hc) != 0) {
			free(hc);
			return NULL; /* works, uncached */
		}
	}
	return hc;
}

static EVP_MAC_CTX *hmac_keyed(enum crypto_md md, const void *key, size_t keylen)
{
	static const unsigned char empty_key[1];
	OSSL_PARAM params[2];
	EVP_MAC_CTX *c = EVP_MAC_CTX_new(g_hmac);

	if (!c)
		fatal("EVP_MAC_CTX_new");
	/* The provider resolves the digest name through its method cache. */
	params[0] =
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)md_names[md], 0);
	params[1] = OSSL_PARAM_construct_end();
	/* A NULL key would mean "keep the previous key"; HMAC allows an empty one. */
	if (!EVP_MAC_init(c, key ? key : empty_key, key ? keylen : 0, params))
		fatal("EVP_MAC_init");
	return c;
}

/* A slot of this thread's holding md keyed with key, reset and taken; NULL
 * when the key is not kept (too long, no cache, every slot in use). */
static struct hmac_slot *hmac_take(enum crypto_md md, const void *key, size_t keylen)
{
	struct hmac_cache *hc;
	struct hmac_slot *s = NULL;

	if (!key || keylen > HMAC_KEY_MAX || !(hc = hmac_cache()))
		return NULL;
	for (size_t i = 0; i < HMAC_SLOTS; i++) {
		struct hmac_slot *t = &hc->slot[i];
		if (t->ctx && !t->busy && t->md == md &&
		    crypto_ct_eq(t->key, t->keylen, key, keylen)) {
			if (!EVP_MAC_init(t->ctx, NULL, 0, NULL)) /* same key, fresh state */
				fatal("EVP_MAC_init");
			t->busy = true;
			return t;
		}
		if (!t->ctx && !s)
			s = t;
	}
	for (size_t n = 0; !s && n < HMAC_SLOTS; n++) { /* else replace one not in use */
		struct hmac_slot *t = &hc->slot[hc->next++ % HMAC_SLOTS];
		if (!t->busy) {
			EVP_MAC_CTX_free(t->ctx);
			OPENSSL_cleanse(t, sizeof(*t));
			s = t;
		}
	}
	if (s) {
		*s = (struct hmac_slot){hmac_keyed(md, key, keylen), true, md, keylen, {0}};
		memcpy(s->key, key, keylen);
	}
	return s;
}

/* Creates an HMAC context for md keyed with key; never NULL. */
struct crypto_hmac_ctx *crypto_hmac_new(enum crypto_md md, const void *key, size_t keylen)
{
	(void)md_get(md); /* runs the once-init, checks md is available */
	struct hmac_slot *s = hmac_take(md, key, keylen);
	EVP_MAC_CTX *c = s ? s->ctx : hmac_keyed(md, key, keylen);
	return (struct crypto_hmac_ctx *)(void *)c;
}

/* Feeds n bytes at p into c. */
void crypto_hmac_update(struct crypto_hmac_ctx *c, const void *p, size_t n)
{
	if (n && !EVP_MAC_update(hmac_ctx(c), p, n))
		fatal("EVP_MAC_update");
}

/* Writes crypto_md_len() bytes to out and frees c (or gives its slot back). */
void crypto_hmac_final(struct crypto_hmac_ctx *c, uint8_t *out)
{
	EVP_MAC_CTX *m = hmac_ctx(c);
	struct hmac_cache *hc;
	size_t len = 0;
	size_t want = EVP_MAC_CTX_get_mac_size(m);

	if (!EVP_MAC_final(m, out, &len, want) || len != want)
		fatal("EVP_MAC_final");
	pthread_once(&hmac_once, hmac_cache_init);
	hc = pthread_getspecific(hmac_key);
	for (size_t i = 0; hc && i < HMAC_SLOTS; i++) {
		if (hc->slot[i].ctx == m) {
			hc->slot[i].busy = false;
			return;
		}
	}
	EVP_MAC_CTX_free(m);
}

/* One-shot HMAC over the concatenation of pieces. */
void crypto_hmac(enum crypto_md md, const void *key, size_t keylen,
                 const struct crypto_piece *pieces, size_t npieces, uint8_t *out)
{
	struct crypto_hmac_ctx *c = crypto_hmac_new(md, key, keylen);

	for (size_t i = 0; i < npieces; i++)
		crypto_hmac_update(c, pieces[i].p, pieces[i].n);
	crypto_hmac_final(c, out);
}

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard padded base64 of p[0..n) into out, NUL-terminated; returns the
 * length written. */
size_t crypto_b64_encode(const uint8_t *p, size_t n, char *out)
{
	char *o = out;
	size_t i = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*o++ = b64_std[v >> 18];
		*o++ = b64_std[(v >> 12) & 63];
		*o++ = b64_std[(v >> 6) & 63];
		*o++ = b64_std[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		*o++ = b64_std[v >> 18];
		*o++ = b64_std[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		*o++ = b64_std[v >> 18];
		*o++ = b64_std[(v >> 12) & 63];
		*o++ = b64_std[(v >> 6) & 63];
		*o++ = '=';
	}
	*o = '\0';
	return (size_t)(o - out);
}

/* Alphabet classes for the decoder. */
enum { B64_STD = 1, B64_URL = 2 };

/* Value of c in either alphabet (0..63) or -1; *cls says which alphabet a
 * character unique to one of them belongs to. */
static int b64_val(unsigned char c, int *cls)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	switch (c) {
	case '+':
		*cls |= B64_STD;
		return 62;
	case '/':
		*cls |= B64_STD;
		return 63;
	case '-':
		*cls |= B64_URL;
		return 62;
	case '_':
		*cls |= B64_URL;
		return 63;
	default:
		return -1;
	}
}

/*
 * Strict decoder: one alphabet per string (standard or URL-safe, not mixed),
 * no whitespace, padding either absent or exactly right, and the unused low
 * bits of the last character zero, so every byte string has exactly one
 * accepted encoding per alphabet and padding choice.
 */
int crypto_b64_decode(const char *p, size_t n, uint8_t *out, size_t *outlen)
{
	size_t pad = 0, full, rem, o = 0;
	int cls = 0;
	uint32_t acc = 0;

	*outlen = 0;
	if (n >= 1 && p[n - 1] == '=') {
		pad = (n >= 2 && p[n - 2] == '=') ? 2 : 1;
		if (n % 4 != 0)
			return DLRD_EINVAL;
	}
	n -= pad;
	rem = n % 4; /* with padding, 3 or 2 by construction */
	if (rem == 1)
		return DLRD_EINVAL;
	full = n - rem;
	for (size_t i = 0; i < full; i += 4) {
		acc = 0;
		for (size_t j = 0; j < 4; j++) {
			int v = b64_val((unsigned char)p[i + j], &cls);
			if (v < 0)
				return DLRD_EINVAL;
			acc = acc << 6 | (uint32_t)v;
		}
		out[o++] = (uint8_t)(acc >> 16);
		out[o++] = (uint8_t)(acc >> 8);
		out[o++] = (uint8_t)acc;
	}
	if (rem) {
		acc = 0;
		for (size_t j = 0; j < rem; j++) {
			int v = b64_val((unsigned char)p[full + j], &cls);
			if (v < 0)
				return DLRD_EINVAL;
			acc = acc << 6 | (uint32_t)v;
		}
		if (rem == 2) {
			if (acc & 0xf) /* 12 bits carry 8 */
				return DLRD_EINVAL;
			out[o++] = (uint8_t)(acc >> 4);
		} else {
			if (acc & 0x3) /* 18 bits carry 16 */
				return DLRD_EINVAL;
			out[o++] = (uint8_t)(acc >> 10);
			out[o++] = (uint8_t)(acc >> 2);
		}
	}
	if (cls == (B64_STD | B64_URL))
		return DLRD_EINVAL;
	*outlen = o;
	return 0;
}

/* Lower-case hex of p[0..n) into out (2n+1 bytes). */
void crypto_hex(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Constant-time equality; only the lengths may show in the timing. */
bool crypto_ct_eq(const void *a, size_t alen, const void *b, size_t blen)
{
	if (alen != blen)
		return false;
	return CRYPTO_memcmp(a, b, alen) == 0;
}

/* Branch-free ASCII lower-casing: adds 0x20 only to 'A'..'Z'. */
static unsigned ct_lower(unsigned char c)
{
	uint32_t d = (uint32_t)c - 'A';
	uint32_t upper = ((d - 26) >> 31) & (~d >> 31) & 1u;
	return c | (upper << 5);
}

/* Constant-time equality folding ASCII letters only. */
bool crypto_ct_eq_nocase(const char *a, size_t alen, const char *b, size_t blen)
{
	unsigned diff = 0;

	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		diff |= ct_lower((unsigned char)a[i]) ^ ct_lower((unsigned char)b[i]);
	return diff == 0;
}

/* Public random values (nonces, the random bits of ids) are drawn from a
 * per-thread buffer of CSPRNG output, refilled 1 KiB at a time: one
 * RAND_bytes call, with its locks and fork check, per ~80 callbacks instead
 * of one or two per callback.  Secrets never come from here. */
#define PUBLIC_POOL 1024

static _Thread_local unsigned char public_pool[PUBLIC_POOL];
static _Thread_local size_t public_left;
static pthread_once_t public_once = PTHREAD_ONCE_INIT;

/* A forked child must not hand out its parent's nonces again; only the
 * forking thread exists in the child, and this empties its buffer. */
static void public_forget(void)
{
	public_left = 0;
}

static void public_init(void)
{
	pthread_atfork(NULL, NULL, public_forget);
}

void crypto_random_public(void *buf, size_t n)
{
	unsigned char *pool = public_pool;
	unsigned char *p = buf;

	pthread_once(&public_once, public_init);
	if (n > PUBLIC_POOL / 4) {
		crypto_random(buf, n);
		return;
	}
	if (public_left < n) {
		crypto_random(pool, PUBLIC_POOL);
		public_left = PUBLIC_POOL;
	}
	memcpy(p, pool + PUBLIC_POOL - public_left, n);
	public_left -= n;
}

/* Cryptographically secure random bytes; aborts on failure. */
void crypto_random(void *buf, size_t n)
{
	unsigned char *p = buf;

	while (n) {
		/* RAND_bytes takes an int */
		int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
		if (RAND_bytes(p, chunk) != 1)
			fatal("RAND_bytes");
		p += chunk;
		n -= (size_t)chunk;
	}
}
