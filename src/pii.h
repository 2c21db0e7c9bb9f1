/* SPDX-License-Identifier: MIT */
/*
 * Personal data at rest: the recipient's phone number, stored only encrypted
 * with AES-256-GCM under a key ring that can rotate.  A ring is a list of
 * (key id, 32-byte key); the first key is the current one and encrypts, any
 * key decrypts what it encrypted (the key id is stored next to the
 * ciphertext).  Keys come from [privacy] encryption_keys ("ID:BASE64KEY,
 * ...") or, when that is unset, from a key file dlrd creates once in its
 * data directory (mode 0600, same "ID:BASE64KEY" lines).
 *
 * Stored form: nonce (12 random bytes) | ciphertext | tag (16 bytes), with
 * the key id as additional authenticated data, so a blob cannot be passed
 * off as encrypted under another key.  A ring is read-only after loading and
 * may be used from any thread.
 */
#ifndef DLRD_PII_H
#define DLRD_PII_H

#include <stddef.h>
#include <stdint.h>

#define PII_KEY_LEN    32
#define PII_NONCE_LEN  12
#define PII_TAG_LEN    16
#define PII_OVERHEAD   (PII_NONCE_LEN + PII_TAG_LEN)
#define PII_KEY_ID_MAX 32 /* [A-Za-z0-9_.-], 1..32 bytes */
#define PII_KEYS_MAX   16
#define PII_KEY_FILE   "encryption.keys"

struct pii_keyring;

/* AES-256-GCM with a 96-bit nonce, one shot.  ct gets n bytes, tag 16.
 * Returns 0 or DLRD_EIO (the library failed).  Any thread. */
int pii_gcm_seal(const uint8_t key[PII_KEY_LEN], const uint8_t nonce[PII_NONCE_LEN],
                 const void *aad, size_t aadlen, const void *pt, size_t n, uint8_t *ct,
                 uint8_t tag[PII_TAG_LEN]);
/* The inverse: pt gets n bytes.  Returns 0, or DLRD_EAUTH when the tag does
 * not verify (wrong key, altered bytes); pt is then zeroed. */
int pii_gcm_open(const uint8_t key[PII_KEY_LEN], const uint8_t nonce[PII_NONCE_LEN],
                 const void *aad, size_t aadlen, const uint8_t *ct, size_t n,
                 const uint8_t tag[PII_TAG_LEN], void *pt);

/* Parses "ID:BASE64KEY, ..." (standard or URL-safe base64 of 32 bytes; ids
 * unique).  Returns 0 or DLRD_ECONFIG with a message that names the
 * position of the bad entry, never a key.  Main thread, at start-up. */
int pii_keyring_parse(const char *value, struct pii_keyring **out, char *err, size_t errlen);

/* Loads dir/PII_KEY_FILE, creating it with one fresh random key (id "k1")
 * when absent (written and fsynced under a temporary name, 0600, then linked
 * into place and the folder fsynced: never seen half-written).  *created tells
 * whether it was made now.  An existing file must pass keyfile_open()'s
 * checks (private to dlrd's user: keyfile.h).  Returns 0, DLRD_EIO or
 * DLRD_ECONFIG with err set.  Main thread, at start-up. */
int pii_keyring_load_file(const char *dir, struct pii_keyring **out, int *created, char *err,
                          size_t errlen);

/* Wipes the keys and frees the ring.  Accepts NULL. */
void pii_keyring_free(struct pii_keyring *kr);

/* The current key's id (borrowed). */
const char *pii_keyring_current(const struct pii_keyring *kr);

/* Encrypts pt[0..n) under the current key into out (n + PII_OVERHEAD bytes
 * of cap needed); *outlen gets the length and *key_id the key's id
 * (borrowed from kr).  Returns 0, DLRD_ENOMEM (cap too small) or DLRD_EIO. */
int pii_encrypt(const struct pii_keyring *kr, const void *pt, size_t n, uint8_t *out, size_t cap,
                size_t *outlen, const char **key_id);

/* Decrypts a blob made by pii_encrypt under key_id into out (cap bytes);
 * *outlen gets the length.  Returns 0; DLRD_ENOTFOUND when the ring has no
 * such key; DLRD_EAUTH when the blob does not verify; DLRD_EINVAL when it
 * is too short; DLRD_ENOMEM when cap is too small. */
int pii_decrypt(const struct pii_keyring *kr, const char *key_id, const uint8_t *blob, size_t n,
                void *out, size_t cap, size_t *outlen);

/*
 * Sealed payloads: a callback's raw provider payload (which holds phone
 * numbers) is stored encrypted byte for byte, in a self-describing form:
 *
 *   "DLRDE1" | key-id length (1 byte) | key id | nonce (12) | ciphertext | tag (16)
 *
 * under AES-256-GCM with everything before the nonce (magic, length, key
 * id) as additional authenticated data.  The plaintext is the payload
 * exactly as received; the ciphertext has its length.
 */
#define PII_SEAL_MAGIC     "DLRDE1"
#define PII_SEAL_MAGIC_LEN 6

struct arena;
struct iov;

/* Seals plain[0..n) under the ring's current key into memory from ar;
 * *out gets the sealed bytes.  Returns 0 or DLRD_EIO.  Any thread. */
int pii_seal_payload(const struct pii_keyring *kr, struct arena *ar, const void *plain, size_t n,
                     struct iov *out);

/* Opens a sealed payload into memory from ar (NUL-terminated, not
 * counted); *out gets the payload.  Returns 0; DLRD_EINVAL when blob is not
 * in the sealed form (a payload stored in clear before payloads were
 * sealed: the caller uses it as it is); DLRD_ENOTFOUND when the ring lacks
 * its key; DLRD_EAUTH when it does not verify.  Any thread. */
int pii_open_payload(const struct pii_keyring *kr, struct arena *ar, const void *blob, size_t n,
                     struct iov *out);

/* True when blob[0..n) starts like a sealed payload. */
int pii_is_sealed(const void *blob, size_t n);

#endif
