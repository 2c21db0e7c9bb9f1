/* SPDX-License-Identifier: MIT */
/*
 * The privacy hash key and the keyed digests made with it (see privacy.h
 * for what each covers and why).
 */
#include "privacy.h"

#include <assert.h>
#include <string.h>

#include "phone.h"
#include "util.h"

#define LABEL_TAG     "dlrd-tag/v1:"
#define LABEL_REQUEST "dlrd-request/v1:"

/* Set once by main before any thread starts; read-only afterwards. */
static const uint8_t *hash_key;
static size_t hash_key_len;

void privacy_set_hash_key(const uint8_t *key, size_t len)
{
	hash_key = key;
	hash_key_len = len;
}

bool privacy_has_key(void)
{
	return hash_key != NULL;
}

bool privacy_recipient_hash(const char *e164, char out[65])
{
	if (!hash_key)
		return false;
	phone_hash(hash_key, hash_key_len, e164, out);
	return true;
}

void privacy_tag(const char *raw, size_t n, char out[PRIVACY_TAG_LEN + 1])
{
	const struct crypto_piece pieces[] = {{LABEL_TAG, sizeof(LABEL_TAG) - 1}, {raw, n}};
	uint8_t mac[CRYPTO_SHA256_LEN];
	char hex[2 * CRYPTO_SHA256_LEN + 1];

	assert(hash_key);
	crypto_hmac(CRYPTO_SHA256, hash_key, hash_key_len, pieces, ARRAY_LEN(pieces), mac);
	crypto_hex(mac, sizeof(mac), hex);
	memcpy(out, PRIVACY_TAG_PREFIX, PRIVACY_TAG_PREFIX_LEN);
	memcpy(out + PRIVACY_TAG_PREFIX_LEN, hex, PRIVACY_TAG_HEX);
	out[PRIVACY_TAG_LEN] = '\0';
}

bool privacy_is_tag(const char *p, size_t n)
{
	if (n != PRIVACY_TAG_LEN || memcmp(p, PRIVACY_TAG_PREFIX, PRIVACY_TAG_PREFIX_LEN) != 0)
		return false;
	for (size_t i = PRIVACY_TAG_PREFIX_LEN; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

void privacy_request_hash(const uint8_t digest[CRYPTO_SHA256_LEN], char out[65])
{
	const struct crypto_piece pieces[] = {{LABEL_REQUEST, sizeof(LABEL_REQUEST) - 1},
	                                      {digest, CRYPTO_SHA256_LEN}};
	uint8_t mac[CRYPTO_SHA256_LEN];

	assert(hash_key);
	crypto_hmac(CRYPTO_SHA256, hash_key, hash_key_len, pieces, ARRAY_LEN(pieces), mac);
	crypto_hex(mac, sizeof(mac), out);
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int privacy_request_hash_rekey(const char *old_hex, char out[65])
{
	uint8_t digest[CRYPTO_SHA256_LEN];

	if (!old_hex || strlen(old_hex) != 2 * CRYPTO_SHA256_LEN)
		return DLRD_EINVAL;
	for (size_t i = 0; i < CRYPTO_SHA256_LEN; i++) {
		int hi = hex_value(old_hex[2 * i]), lo = hex_value(old_hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return DLRD_EINVAL;
		digest[i] = (uint8_t)(hi << 4 | lo);
	}
	privacy_request_hash(digest, out);
	return 0;
}
