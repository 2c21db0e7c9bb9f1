/* SPDX-License-Identifier: MIT */
/*
 * The privacy hash key ([privacy] hash_key) and every keyed digest dlrd
 * makes with it.  Anything derived from a phone number that is stored or
 * shown outside the encrypted copy goes through here, so that nothing
 * derived from a number is ever a plain, brute-forcible hash of it: a phone
 * number has so few possible values that SHA-256 of it, or of a text whose
 * only unknown part is the number, is reversed by trying them all.
 *
 * Three digests, all HMAC-SHA256 under the one key, kept apart by what they
 * cover (so no value of one can ever equal a value of another):
 *
 * - recipient hash: HMAC of the E.164 number ("+..."), nothing else;
 *   64 hex digits;
 * - recipient tag: HMAC of "dlrd-tag/v1:" + the number's raw text as the
 *   provider sent it; "rcpt-" + 16 hex digits;
 * - request hash: HMAC of "dlrd-request/v1:" + the SHA-256 (32 bytes) of
 *   the canonical request; 64 hex digits.
 *
 * An E.164 number starts with '+', the labels with a letter and differ at
 * their sixth byte, and a label is a fixed prefix, so the three messages
 * never coincide.  The recipient hash (sms_messages.recipient_hash,
 * opt-outs) is HMAC(key, number) without a label because that is what
 * dlrd has always stored.
 *
 * The recipient tag replaces the number inside a provider event id that
 * dlrd builds itself (Telnyx and Sinch report one status per recipient and
 * their ids would otherwise hold the number, see those adapters).  It
 * covers the raw text, not the normalized number, so two raw strings that
 * made two distinct ids before still do.  64 bits are plenty to keep the
 * recipients of one webhook apart; what matters is that without the key the
 * tag tells nothing about the number.
 *
 * The request hash is the API's idempotency fingerprint of a recorded send
 * (api_idempotency.request_hash): the body holds the recipient's number and
 * every other field of it is stored in clear, so its plain SHA-256 would
 * give the number away.  Keying the SHA-256 (instead of hashing the body
 * under the key) lets the data migration rekey a stored fingerprint without
 * the body: privacy_request_hash_rekey().
 *
 * The key is set once by main (or a test) before any other thread runs and
 * is read-only afterwards; the functions may be called from any thread.
 */
#ifndef DLRD_PRIVACY_H
#define DLRD_PRIVACY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"

#define PRIVACY_TAG_PREFIX     "rcpt-"
#define PRIVACY_TAG_PREFIX_LEN 5
#define PRIVACY_TAG_HEX        16
#define PRIVACY_TAG_LEN        (PRIVACY_TAG_PREFIX_LEN + PRIVACY_TAG_HEX)

/* Sets the key (borrowed: it must outlive every use).  Main thread, before
 * other threads start. */
void privacy_set_hash_key(const uint8_t *key, size_t len);

/* Whether a key has been set. */
bool privacy_has_key(void);

/* The recipient hash of an E.164 number (phone_hash() under the key) into
 * out, NUL-terminated.  Returns false, out untouched, when no key is set. */
bool privacy_recipient_hash(const char *e164, char out[65]);

/* The recipient tag of raw[0..n) (any bytes, as the provider sent them)
 * into out: "rcpt-" and the first 16 hex digits of HMAC-SHA256(key,
 * "dlrd-tag/v1:" + raw), NUL-terminated.  The key must be set. */
void privacy_tag(const char *raw, size_t n, char out[PRIVACY_TAG_LEN + 1]);

/* Whether p[0..n) is a recipient tag in the form privacy_tag() writes. */
bool privacy_is_tag(const char *p, size_t n);

/* The request hash of a request whose plain SHA-256 is digest, into out:
 * the hex of HMAC-SHA256(key, "dlrd-request/v1:" + digest).  The key must
 * be set. */
void privacy_request_hash(const uint8_t digest[CRYPTO_SHA256_LEN], char out[65]);

/* For the data migration: the request hash of the request whose plain
 * SHA-256 an older dlrd stored as old_hex (64 hex digits, either case).
 * Returns 0, or DLRD_EINVAL (out untouched) when old_hex is not such a
 * value.  The key must be set. */
int privacy_request_hash_rekey(const char *old_hex, char out[65]);

#endif
