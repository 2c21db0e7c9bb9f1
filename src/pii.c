/* SPDX-License-Identifier: MIT */
/*
 * AES-256-GCM over OpenSSL's EVP interface, and the key ring for personal
 * data at rest (see pii.h).  Key material is wiped before it is freed and
 * never appears in an error message: a bad entry is named by its position.
 */
#include "pii.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "config.h"
#include "crypto.h"
#include "keyfile.h"
#include "util.h"

#define KEY_FILE_MAX 8192
#define AAD_PREFIX   "dlrd:recipient:v1:"

struct pii_key {
	char id[PII_KEY_ID_MAX + 1];
	uint8_t key[PII_KEY_LEN];
};

struct pii_keyring {
	struct pii_key keys[PII_KEYS_MAX];
	size_t n;
};

/* Sealing runs once per callback (every raw payload is stored sealed), so
 * each thread keeps one encryption context keyed with the last key it used:
 * a seal then only sets its nonce, instead of fetching the cipher and
 * expanding the key again.  The cache is wiped and freed when its thread
 * exits. */
struct seal_ctx {
	EVP_CIPHER_CTX *c;
	uint8_t key[PII_KEY_LEN];
	bool keyed;
};

static pthread_key_t seal_tls;
static pthread_once_t seal_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *seal_cipher;

static void seal_ctx_free(void *p)
{
	struct seal_ctx *s = p;
	EVP_CIPHER_CTX_free(s->c);
	OPENSSL_cleanse(s->key, sizeof(s->key));
	free(s);
}

static void seal_init(void)
{
	if (pthread_key_create(&seal_tls, seal_ctx_free) == 0)
		seal_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

/* This thread's context, keyed with key; NULL on an OpenSSL failure. */
static EVP_CIPHER_CTX *seal_ctx_get(const uint8_t key[PII_KEY_LEN])
{
	struct seal_ctx *s;

	pthread_once(&seal_once, seal_init);
	if (!seal_cipher)
		return NULL;
	s = pthread_getspecific(seal_tls);
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->c = EVP_CIPHER_CTX_new();
		if (!s->c || pthread_setspecific(seal_tls, s) != 0) {
			seal_ctx_free(s);
			return NULL;
		}
	}
	if (!s->keyed || CRYPTO_memcmp(s->key, key, PII_KEY_LEN) != 0) {
		s->keyed = false;
		if (EVP_EncryptInit_ex(s->c, seal_cipher, NULL, NULL, NULL) != 1 ||
		    EVP_CIPHER_CTX_ctrl(s->c, EVP_CTRL_GCM_SET_IVLEN, PII_NONCE_LEN, NULL) != 1 ||
		    EVP_EncryptInit_ex(s->c, NULL, NULL, key, NULL) != 1)
			return NULL;
		memcpy(s->key, key, PII_KEY_LEN);
		s->keyed = true;
	}
	return s->c;
}

int pii_gcm_seal(const uint8_t key[PII_KEY_LEN], const uint8_t nonce[PII_NONCE_LEN],
                 const void *aad, size_t aadlen, const void *pt, size_t n, uint8_t *ct,
                 uint8_t tag[PII_TAG_LEN])
{
	EVP_CIPHER_CTX *c;
	int len = 0;

	if (n > INT32_MAX || aadlen > INT32_MAX || !(c = seal_ctx_get(key)))
		return DLRD_EIO;
	if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, nonce) != 1)
		return DLRD_EIO;
	if (aadlen && EVP_EncryptUpdate(c, NULL, &len, aad, (int)aadlen) != 1)
		return DLRD_EIO;
	if (n && EVP_EncryptUpdate(c, ct, &len, pt, (int)n) != 1)
		return DLRD_EIO;
	if (EVP_EncryptFinal_ex(c, ct + (n ? (size_t)len : 0), &len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, PII_TAG_LEN, tag) != 1)
		return DLRD_EIO;
	return 0;
}

int pii_gcm_open(const uint8_t key[PII_KEY_LEN], const uint8_t nonce[PII_NONCE_LEN],
                 const void *aad, size_t aadlen, const uint8_t *ct, size_t n,
                 const uint8_t tag[PII_TAG_LEN], void *pt)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	uint8_t tagcopy[PII_TAG_LEN];
	int len = 0, rc = DLRD_EIO;

	memcpy(tagcopy, tag, sizeof(tagcopy));
	if (!c || n > INT32_MAX || aadlen > INT32_MAX)
		goto out;
	if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, PII_NONCE_LEN, NULL) != 1 ||
	    EVP_DecryptInit_ex(c, NULL, NULL, key, nonce) != 1)
		goto out;
	if (aadlen && EVP_DecryptUpdate(c, NULL, &len, aad, (int)aadlen) != 1)
		goto out;
	if (n && EVP_DecryptUpdate(c, pt, &len, ct, (int)n) != 1)
		goto out;
	if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, PII_TAG_LEN, tagcopy) != 1)
		goto out;
	rc = EVP_DecryptFinal_ex(c, (uint8_t *)pt + (n ? (size_t)len : 0), &len) == 1 ? 0
	                                                                              : DLRD_EAUTH;
out:
	if (rc != 0 && n)
		explicit_bzero(pt, n);
	EVP_CIPHER_CTX_free(c);
	return rc;
}

static bool id_valid(const char *p, size_t n)
{
	if (n == 0 || n > PII_KEY_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

/* Adds "ID:BASE64KEY" (item, trimmed) to kr; what names the source. */
static int add_entry(struct pii_keyring *kr, const char *item, size_t pos, const char *what,
                     char *err, size_t errlen)
{
	const char *colon = strchr(item, ':');
	uint8_t key[3 * 64 / 4 + 3];
	size_t idlen, klen = 0;

	if (kr->n >= PII_KEYS_MAX) {
		util_fmt(err, errlen, "%s: at most %u keys", what, PII_KEYS_MAX);
		return DLRD_ECONFIG;
	}
	idlen = colon ? (size_t)(colon - item) : 0;
	if (!colon || !id_valid(item, idlen)) {
		util_fmt(err, errlen,
		         "%s: entry %zu must be ID:BASE64KEY with an ID of 1..%u letters, digits,"
		         " '_', '-' or '.'",
		         what, pos, PII_KEY_ID_MAX);
		return DLRD_ECONFIG;
	}
	size_t b64len = strlen(colon + 1);
	if (b64len > 64 || crypto_b64_decode(colon + 1, b64len, key, &klen) != 0 ||
	    klen != PII_KEY_LEN) {
		explicit_bzero(key, sizeof(key));
		util_fmt(err, errlen, "%s: entry %zu: the key must be the base64 of 32 bytes", what,
		         pos);
		return DLRD_ECONFIG;
	}
	for (size_t i = 0; i < kr->n; i++) {
		if (strlen(kr->keys[i].id) == idlen && memcmp(kr->keys[i].id, item, idlen) == 0) {
			explicit_bzero(key, sizeof(key));
			util_fmt(err, errlen, "%s: entry %zu: key id used twice", what, pos);
			return DLRD_ECONFIG;
		}
	}
	memcpy(kr->keys[kr->n].id, item, idlen);
	kr->keys[kr->n].id[idlen] = '\0';
	memcpy(kr->keys[kr->n].key, key, PII_KEY_LEN);
	explicit_bzero(key, sizeof(key));
	kr->n++;
	return 0;
}

int pii_keyring_parse(const char *value, struct pii_keyring **out, char *err, size_t errlen)
{
	struct pii_keyring *kr = xcalloc(1, sizeof(*kr));
	size_t n = 0;
	char **list = config_list(value, &n);
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++)
		rc = add_entry(kr, list[i], i + 1, "config: privacy.encryption_keys", err, errlen);
	config_list_free(list);
	if (rc == 0 && kr->n == 0) {
		util_fmt(err, errlen, "config: privacy.encryption_keys: no key");
		rc = DLRD_ECONFIG;
	}
	if (rc != 0) {
		pii_keyring_free(kr);
		return rc;
	}
	*out = kr;
	return 0;
}

/* Reads "ID:BASE64KEY" lines ('#' comments and blank lines skipped). */
static int read_key_file(const char *path, struct pii_keyring **out, char *err, size_t errlen)
{
	char buf[KEY_FILE_MAX + 2]; /* one byte more tells a file over the limit */
	struct pii_keyring *kr = NULL;
	size_t got = 0, line = 0;
	int fd, rc = keyfile_open(path, &fd, err, errlen);

	if (rc != 0)
		return rc; /* missing, or open to others (keyfile.h) */
	rc = DLRD_ECONFIG;
	for (;;) {
		ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
		if (got == sizeof(buf) - 1)
			break;
	}
	close(fd);
	if (got > KEY_FILE_MAX) {
		util_fmt(err, errlen, "key file %s is larger than %u bytes", path, KEY_FILE_MAX);
		goto out;
	}
	buf[got] = '\0';
	kr = xcalloc(1, sizeof(*kr));
	for (char *p = buf; *p;) {
		char *nl = strchr(p, '\n');
		char *end = nl ? nl : p + strlen(p);
		char *next = nl ? nl + 1 : end;
		line++;
		while (end > p && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
			end--;
		*end = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p && *p != '#') {
			char what[4200];
			util_fmt(what, sizeof(what), "key file %s (line %zu)", path, line);
			if ((rc = add_entry(kr, p, 1, what, err, errlen)) != 0)
				goto out;
		}
		p = next;
	}
	if (kr->n == 0) {
		util_fmt(err, errlen, "key file %s holds no key", path);
		rc = DLRD_ECONFIG;
		goto out;
	}
	*out = kr;
	kr = NULL;
	rc = 0;
out:
	explicit_bzero(buf, sizeof(buf));
	pii_keyring_free(kr);
	return rc;
}

int pii_keyring_load_file(const char *dir, struct pii_keyring **out, int *created, char *err,
                          size_t errlen)
{
	char path[4096], line[PII_KEY_ID_MAX + 64];
	uint8_t key[PII_KEY_LEN];
	size_t n;
	int rc;

	*created = 0;
	util_fmt(path, sizeof(path), "%s/%s", dir, PII_KEY_FILE);
	if (access(path, F_OK) == 0)
		return read_key_file(path, out, err, errlen);
	crypto_random(key, sizeof(key));
	n = util_fmt(line, sizeof(line), "k1:");
	n += crypto_b64_encode(key, sizeof(key), line + n);
	line[n++] = '\n';
	explicit_bzero(key, sizeof(key));
	/* whole or not at all, and of processes starting at once exactly one
	 * key wins (keyfile.c) */
	rc = keyfile_create(dir, PII_KEY_FILE, line, n, err, errlen);
	explicit_bzero(line, sizeof(line));
	if (rc < 0)
		return rc;
	*created = rc == 0;
	return read_key_file(path, out, err, errlen);
}

void pii_keyring_free(struct pii_keyring *kr)
{
	if (!kr)
		return;
	explicit_bzero(kr, sizeof(*kr));
	free(kr);
}

const char *pii_keyring_current(const struct pii_keyring *kr)
{
	return kr->keys[0].id;
}

static size_t make_aad(const char *key_id, char *aad, size_t cap)
{
	return util_fmt(aad, cap, AAD_PREFIX "%s", key_id);
}

int pii_encrypt(const struct pii_keyring *kr, const void *pt, size_t n, uint8_t *out, size_t cap,
                size_t *outlen, const char **key_id)
{
	const struct pii_key *k = &kr->keys[0];
	char aad[sizeof(AAD_PREFIX) + PII_KEY_ID_MAX];
	size_t aadlen = make_aad(k->id, aad, sizeof(aad));
	int rc;

	if (n > SIZE_MAX - PII_OVERHEAD || cap < n + PII_OVERHEAD)
		return DLRD_ENOMEM;
	crypto_random_public(out, PII_NONCE_LEN);
	rc = pii_gcm_seal(k->key, out, aad, aadlen, pt, n, out + PII_NONCE_LEN,
	                  out + PII_NONCE_LEN + n);
	if (rc != 0)
		return rc;
	*outlen = n + PII_OVERHEAD;
	*key_id = k->id;
	return 0;
}

int pii_decrypt(const struct pii_keyring *kr, const char *key_id, const uint8_t *blob, size_t n,
                void *out, size_t cap, size_t *outlen)
{
	char aad[sizeof(AAD_PREFIX) + PII_KEY_ID_MAX];
	const struct pii_key *k = NULL;

	for (size_t i = 0; i < kr->n && key_id; i++)
		if (strcmp(kr->keys[i].id, key_id) == 0)
			k = &kr->keys[i];
	if (!k)
		return DLRD_ENOTFOUND;
	if (n < PII_OVERHEAD)
		return DLRD_EINVAL;
	if (cap < n - PII_OVERHEAD)
		return DLRD_ENOMEM;
	size_t aadlen = make_aad(k->id, aad, sizeof(aad));
	int rc = pii_gcm_open(k->key, blob, aad, aadlen, blob + PII_NONCE_LEN, n - PII_OVERHEAD,
	                      blob + n - PII_TAG_LEN, out);
	if (rc == 0)
		*outlen = n - PII_OVERHEAD;
	return rc;
}

/* ---- sealed payloads ---- */

int pii_is_sealed(const void *blob, size_t n)
{
	const uint8_t *b = blob;
	return b && n >= PII_SEAL_MAGIC_LEN + 1 &&
	       memcmp(b, PII_SEAL_MAGIC, PII_SEAL_MAGIC_LEN) == 0;
}

int pii_seal_payload(const struct pii_keyring *kr, struct arena *ar, const void *plain, size_t n,
                     struct iov *out)
{
	const struct pii_key *k = &kr->keys[0];
	size_t idlen = strlen(k->id), hdr = PII_SEAL_MAGIC_LEN + 1 + idlen;
	uint8_t *b;
	int rc;

	if (n > SIZE_MAX - hdr - PII_OVERHEAD)
		return DLRD_EIO;
	b = arena_alloc(ar, hdr + PII_OVERHEAD + n);
	memcpy(b, PII_SEAL_MAGIC, PII_SEAL_MAGIC_LEN);
	b[PII_SEAL_MAGIC_LEN] = (uint8_t)idlen;
	memcpy(b + PII_SEAL_MAGIC_LEN + 1, k->id, idlen);
	crypto_random_public(b + hdr, PII_NONCE_LEN);
	rc = pii_gcm_seal(k->key, b + hdr, b, hdr, plain, n, b + hdr + PII_NONCE_LEN,
	                  b + hdr + PII_NONCE_LEN + n);
	if (rc != 0)
		return rc;
	out->p = (const char *)b;
	out->n = hdr + PII_OVERHEAD + n;
	return 0;
}

int pii_open_payload(const struct pii_keyring *kr, struct arena *ar, const void *blob, size_t n,
                     struct iov *out)
{
	const uint8_t *b = blob;
	const struct pii_key *k = NULL;
	size_t idlen, hdr, ctlen;
	char *pt;
	int rc;

	if (!pii_is_sealed(blob, n))
		return DLRD_EINVAL;
	idlen = b[PII_SEAL_MAGIC_LEN];
	hdr = PII_SEAL_MAGIC_LEN + 1 + idlen;
	if (!id_valid((const char *)b + PII_SEAL_MAGIC_LEN + 1, idlen) || n < hdr + PII_OVERHEAD)
		return DLRD_EINVAL;
	for (size_t i = 0; kr && i < kr->n; i++)
		if (strlen(kr->keys[i].id) == idlen &&
		    memcmp(kr->keys[i].id, b + PII_SEAL_MAGIC_LEN + 1, idlen) == 0)
			k = &kr->keys[i];
	if (!k)
		return DLRD_ENOTFOUND;
	ctlen = n - hdr - PII_OVERHEAD;
	pt = arena_alloc(ar, ctlen + 1);
	rc = pii_gcm_open(k->key, b + hdr, b, hdr, b + hdr + PII_NONCE_LEN, ctlen,
	                  b + n - PII_TAG_LEN, pt);
	if (rc != 0)
		return rc;
	pt[ctlen] = '\0';
	out->p = pt;
	out->n = ctlen;
	return 0;
}
