/* SPDX-License-Identifier: MIT */
/*
 * Personal data at rest: AES-256-GCM against published known-answer vectors
 * (McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 14
 * and 16), tamper and wrong-key detection, the key ring (parse errors that
 * never show a key, rotation: the first key encrypts, every key decrypts
 * its own blobs), and the key file dlrd creates once with mode 0600, which
 * processes starting at the same moment never read half-written, and which
 * is read back only while private to dlrd's user.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "arena.h"
#include "pii.h"
#include "racing.h"
#include "util.h"

static void unhex(const char *h, uint8_t *out)
{
	for (size_t i = 0; h[2 * i]; i++) {
		unsigned v;
		char b[3] = {h[2 * i], h[2 * i + 1], 0};
		v = (unsigned)strtoul(b, NULL, 16);
		out[i] = (uint8_t)v;
	}
}

static void test_known_answers(void **state)
{
	uint8_t key[32], iv[12], pt[64], aad[20], ct[64], tag[16], want_ct[64], want_tag[16],
	    back[64];
	(void)state;

	/* test case 14: zero key, zero IV, 16 zero bytes */
	memset(key, 0, sizeof(key));
	memset(iv, 0, sizeof(iv));
	memset(pt, 0, 16);
	assert_int_equal(pii_gcm_seal(key, iv, NULL, 0, pt, 16, ct, tag), 0);
	unhex("cea7403d4d606b6e074ec5d3baf39d18", want_ct);
	unhex("d0d1c8a799996bf0265b98b5d48ab919", want_tag);
	assert_memory_equal(ct, want_ct, 16);
	assert_memory_equal(tag, want_tag, 16);

	/* test case 16: 60 bytes with 20 bytes of AAD */
	unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", key);
	unhex("cafebabefacedbaddecaf888", iv);
	unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf"
	      "0e2449a6b525b16aedf5aa0de657ba637b39",
	      pt);
	unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad);
	assert_int_equal(pii_gcm_seal(key, iv, aad, 20, pt, 60, ct, tag), 0);
	unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b0"
	      "8b1056828838c5f61e6393ba7a0abcc9f662",
	      want_ct);
	unhex("76fc6ece0f4e1768cddf8853bb2d551b", want_tag);
	assert_memory_equal(ct, want_ct, 60);
	assert_memory_equal(tag, want_tag, 16);
	assert_int_equal(pii_gcm_open(key, iv, aad, 20, ct, 60, tag, back), 0);
	assert_memory_equal(back, pt, 60);

	/* one flipped bit anywhere fails, and leaves no plaintext behind */
	ct[7] ^= 1;
	assert_int_equal(pii_gcm_open(key, iv, aad, 20, ct, 60, tag, back), DLRD_EAUTH);
	for (size_t i = 0; i < 60; i++)
		assert_int_equal(back[i], 0);
	ct[7] ^= 1;
	aad[0] ^= 1;
	assert_int_equal(pii_gcm_open(key, iv, aad, 20, ct, 60, tag, back), DLRD_EAUTH);
	aad[0] ^= 1;
	tag[15] ^= 0x80;
	assert_int_equal(pii_gcm_open(key, iv, aad, 20, ct, 60, tag, back), DLRD_EAUTH);
}

/* 32 bytes 0x00.., 0x01.., as base64 */
#define K0 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
#define K1 "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="

static void test_ring_rotation(void **state)
{
	struct pii_keyring *old = NULL, *both = NULL;
	char err[256];
	uint8_t blob[64];
	char out[32];
	size_t n = 0, m = 0;
	const char *kid;
	(void)state;

	assert_int_equal(pii_keyring_parse("old:" K0, &old, err, sizeof(err)), 0);
	assert_int_equal(pii_encrypt(old, "+14155550123", 12, blob, sizeof(blob), &n, &kid), 0);
	assert_string_equal(kid, "old");
	assert_int_equal(n, 12 + PII_OVERHEAD);
	assert_null(memmem(blob, n, "4155550123", 10));

	/* a new key first: it encrypts, the old one still decrypts */
	assert_int_equal(pii_keyring_parse(" new:" K1 " , old:" K0, &both, err, sizeof(err)), 0);
	assert_string_equal(pii_keyring_current(both), "new");
	assert_int_equal(pii_decrypt(both, "old", blob, n, out, sizeof(out), &m), 0);
	assert_int_equal(m, 12);
	assert_memory_equal(out, "+14155550123", 12);
	/* the key id is authenticated: the blob is not valid under "new" */
	assert_int_equal(pii_decrypt(both, "new", blob, n, out, sizeof(out), &m), DLRD_EAUTH);
	assert_int_equal(pii_decrypt(both, "gone", blob, n, out, sizeof(out), &m), DLRD_ENOTFOUND);
	assert_int_equal(pii_decrypt(both, "old", blob, 10, out, sizeof(out), &m), DLRD_EINVAL);
	/* two encryptions of the same number differ (random nonce) */
	uint8_t b2[64], b3[64];
	size_t n2, n3;
	assert_int_equal(pii_encrypt(both, "+14155550123", 12, b2, sizeof(b2), &n2, &kid), 0);
	assert_string_equal(kid, "new");
	assert_int_equal(pii_encrypt(both, "+14155550123", 12, b3, sizeof(b3), &n3, &kid), 0);
	assert_memory_not_equal(b2, b3, n2);
	assert_int_equal(pii_encrypt(both, "+14155550123", 12, b3, 20, &n3, &kid), DLRD_ENOMEM);
	pii_keyring_free(old);
	pii_keyring_free(both);
}

static void test_ring_errors(void **state)
{
	static const char *const bad[] = {
	    "",
	    "k1",
	    "k1:",
	    "k1:short",
	    "k 1:" K0,
	    "k1:" K0 ",k1:" K1,
	    "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 36 bytes */
	};
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct pii_keyring *kr = NULL;
		char err[256] = "";
		assert_int_equal(pii_keyring_parse(bad[i], &kr, err, sizeof(err)), DLRD_ECONFIG);
		assert_null(kr);
		assert_non_null(strstr(err, "privacy.encryption_keys"));
		assert_null(strstr(err, "AAAAAAAA")); /* never the key */
		assert_null(strstr(err, "AQEBAQEB"));
	}
}

static void test_key_file(void **state)
{
	char dir[] = "/tmp/dlrd-pii-XXXXXX", path[128], *content;
	struct pii_keyring *a = NULL, *b = NULL;
	struct stat sb;
	char err[256];
	int created = 0;
	uint8_t blob[64];
	char out[32];
	size_t n, m;
	const char *kid;
	(void)state;

	assert_non_null(mkdtemp(dir));
	assert_int_equal(pii_keyring_load_file(dir, &a, &created, err, sizeof(err)), 0);
	assert_int_equal(created, 1);
	util_fmt(path, sizeof(path), "%s/%s", dir, PII_KEY_FILE);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	content = calloc(1, 256);
	assert_true(fread(content, 1, 255, f) > 0);
	fclose(f);
	assert_int_equal(strncmp(content, "k1:", 3), 0);
	assert_int_equal(strlen(content), 3 + 44 + 1);
	free(content);

	/* loaded again, not re-created: the same key */
	assert_int_equal(pii_encrypt(a, "+447700900123", 13, blob, sizeof(blob), &n, &kid), 0);
	assert_int_equal(pii_keyring_load_file(dir, &b, &created, err, sizeof(err)), 0);
	assert_int_equal(created, 0);
	assert_int_equal(pii_decrypt(b, kid, blob, n, out, sizeof(out), &m), 0);
	assert_memory_equal(out, "+447700900123", 13);
	pii_keyring_free(a);
	pii_keyring_free(b);

	/* the size limit (8192 bytes, comments included) is inclusive: an
	 * operator's file of exactly that size loads, one byte more does not */
	for (size_t size = 8192; size <= 8193; size++) {
		const char *key = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
		f = fopen(path, "w");
		assert_non_null(f);
		fputs(key, f);
		for (size_t i = strlen(key); i + 1 < size; i++)
			fputc('#', f);
		fputc('\n', f);
		fclose(f);
		b = NULL;
		int rc = pii_keyring_load_file(dir, &b, &created, err, sizeof(err));
		if (size == 8192 && rc != 0)
			fail_msg("8192 bytes: %s", err);
		if (size == 8193)
			assert_int_not_equal(rc, 0);
		pii_keyring_free(b);
	}
	unlink(path);
	rmdir(dir);
}

/* An existing key file that group or others may read or write is refused
 * with a message naming it, its mode and the fix; 0600 and 0400 load.
 * Before the fix a 0644 or 0640 file loaded silently. */
static void test_key_file_mode(void **state)
{
	static const struct {
		mode_t mode;
		int ok;
	} cases[] = {{0644, 0}, {0640, 0}, {0604, 0}, {0660, 0}, {0600, 1}, {0400, 1}};
	char dir[] = "/tmp/dlrd-pii-XXXXXX", path[128], want[600], err[512];
	(void)state;

	assert_non_null(mkdtemp(dir));
	util_fmt(path, sizeof(path), "%s/%s", dir, PII_KEY_FILE);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", f);
	fclose(f);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pii_keyring *kr = NULL;
		int created = -1, rc;

		assert_int_equal(chmod(path, cases[i].mode), 0);
		rc = pii_keyring_load_file(dir, &kr, &created, err, sizeof(err));
		if (cases[i].ok) {
			if (rc != 0)
				fail_msg("mode %04o: %s", (unsigned)cases[i].mode, err);
			assert_string_equal(pii_keyring_current(kr), "k1");
		} else {
			assert_int_equal(rc, DLRD_ECONFIG);
			assert_null(kr);
			util_fmt(want, sizeof(want), "key file %s has mode %04o", path,
			         (unsigned)cases[i].mode);
			if (!strstr(err, want))
				fail_msg("mode %04o: err \"%s\"", (unsigned)cases[i].mode, err);
			util_fmt(want, sizeof(want), "chmod 600 %s", path);
			assert_non_null(strstr(err, want));
		}
		assert_int_equal(created, 0);
		pii_keyring_free(kr);
	}
	unlink(path);
	rmdir(dir);
}

/* One racing start: out[0] whether the ring loaded and sealed the test
 * payload, then the sealed blob. */
static void load_ring_and_seal(void *dir, uint8_t *out, size_t len)
{
	struct pii_keyring *kr = NULL;
	const char *kid;
	char err[256];
	size_t n;
	int created;

	if (pii_keyring_load_file(dir, &kr, &created, err, sizeof(err)) == 0 &&
	    pii_encrypt(kr, "+447700900123", 13, out + 1, len - 1, &n, &kid) == 0)
		out[0] = 1;
	else
		fprintf(stderr, "child: %s\n", err);
	pii_keyring_free(kr);
}

/* Processes starting at the same moment on one data directory (two nodes
 * sharing a volume, a restart overlapping the old process) all get the same
 * key ring, and none of them reads the key file before it is whole: before
 * the fix the file was created under its own name and then written, so a
 * process starting just after the creator read it empty ("holds no key")
 * and refused to start, and a crash between the two steps left that empty
 * file behind for every later start. */
static void test_key_file_concurrent_starts_agree(void **state)
{
	enum { ROUNDS = 200, PROCS = 4 };
	(void)state;

	for (int r = 0; r < ROUNDS; r++) {
		char dir[] = "/tmp/dlrd-pii-XXXXXX", path[128];
		/* per process: success, then a blob sealed under the loaded
		 * ring */
		uint8_t res[PROCS][1 + 64];

		assert_non_null(mkdtemp(dir));
		race_procs(PROCS, load_ring_and_seal, dir, &res[0][0], sizeof(res[0]));
		/* every process started, and each one's blob opens under the ring
		 * in the file: they all hold the one key */
		struct pii_keyring *kr = NULL;
		char err[256], out[32];
		int created = -1;
		for (int i = 0; i < PROCS; i++)
			assert_int_equal(res[i][0], 1);
		assert_int_equal(pii_keyring_load_file(dir, &kr, &created, err, sizeof(err)), 0);
		assert_int_equal(created, 0);
		for (int i = 0; i < PROCS; i++) {
			size_t m;
			assert_int_equal(pii_decrypt(kr, "k1", res[i] + 1, 13 + PII_OVERHEAD, out,
			                             sizeof(out), &m),
			                 0);
			assert_memory_equal(out, "+447700900123", 13);
		}
		pii_keyring_free(kr);
		util_fmt(path, sizeof(path), "rm -rf '%s'", dir);
		assert_int_equal(system(path), 0);
	}
}

/* Sealed payloads: "DLRDE1" | id length | id | nonce | ciphertext | tag,
 * the header as AAD.  The vector was made independently (Python's
 * cryptography AESGCM, key 00..1f, id "k1", nonce a0..ab). */
#define SEAL_KEY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define SEAL_PT  "To=%2B15551234567&MessageStatus=delivered"
#define SEAL_KAT                                                                                   \
	"444c52444531026b31a0a1a2a3a4a5a6a7a8a9aaabb27741087789338a5750b6e1344ef5e8478a1475e1c4"   \
	"230bf95d52e70bde063cb6132b96d94721583b594babdf8e69c97d8abcd54b25c37b68"

static void test_sealed_payloads(void **state)
{
	struct pii_keyring *kr = NULL, *other = NULL, *rotated = NULL;
	struct arena ar;
	struct iov sealed, plain;
	uint8_t kat[(sizeof(SEAL_KAT) - 1) / 2], bad[(sizeof(SEAL_KAT) - 1) / 2];
	char err[256];
	(void)state;

	arena_init(&ar, NULL, 0);
	assert_int_equal(pii_keyring_parse("k1:" SEAL_KEY, &kr, err, sizeof(err)), 0);
	assert_int_equal(pii_keyring_parse("k1:" K0, &other, err, sizeof(err)), 0);
	assert_int_equal(pii_keyring_parse("k2:" K1 ",k1:" SEAL_KEY, &rotated, err, sizeof(err)),
	                 0);

	/* known answer */
	unhex(SEAL_KAT, kat);
	assert_int_equal(pii_is_sealed(kat, sizeof(kat)), 1);
	assert_int_equal(pii_open_payload(kr, &ar, kat, sizeof(kat), &plain), 0);
	assert_int_equal(plain.n, strlen(SEAL_PT));
	assert_memory_equal(plain.p, SEAL_PT, plain.n);
	assert_int_equal(plain.p[plain.n], '\0');
	/* an older key of a rotated ring still opens it */
	assert_int_equal(pii_open_payload(rotated, &ar, kat, sizeof(kat), &plain), 0);
	assert_memory_equal(plain.p, SEAL_PT, plain.n);

	/* round trip, binary and empty payloads included */
	static const char bin[] = "{\"to\":\"+14155550123\"}\0\xff\x01";
	assert_int_equal(pii_seal_payload(rotated, &ar, bin, sizeof(bin), &sealed), 0);
	assert_int_equal(sealed.n, 6 + 1 + 2 + PII_OVERHEAD + sizeof(bin));
	assert_memory_equal(sealed.p, "DLRDE1\x02k2", 9);
	assert_null(memmem(sealed.p, sealed.n, "4155550123", 10));
	assert_int_equal(pii_open_payload(rotated, &ar, sealed.p, sealed.n, &plain), 0);
	assert_int_equal(plain.n, sizeof(bin));
	assert_memory_equal(plain.p, bin, sizeof(bin));
	assert_int_equal(pii_seal_payload(kr, &ar, "", 0, &sealed), 0);
	assert_int_equal(pii_open_payload(kr, &ar, sealed.p, sealed.n, &plain), 0);
	assert_int_equal(plain.n, 0);
	/* its key is not in the ring: k2 only is in "rotated" */
	assert_int_equal(pii_seal_payload(rotated, &ar, "x", 1, &sealed), 0);
	assert_int_equal(pii_open_payload(kr, &ar, sealed.p, sealed.n, &plain), DLRD_ENOTFOUND);

	/* tampering: any byte of header, nonce, ciphertext or tag */
	for (size_t i = 0; i < sizeof(kat); i++) {
		memcpy(bad, kat, sizeof(kat));
		bad[i] ^= 0x01;
		int rc = pii_open_payload(kr, &ar, bad, sizeof(bad), &plain);
		if (i < 6)
			assert_int_equal(rc, DLRD_EINVAL); /* no longer the format */
		else
			assert_true(rc == DLRD_EAUTH || rc == DLRD_ENOTFOUND || rc == DLRD_EINVAL);
	}
	/* a different key under the same id does not verify */
	assert_int_equal(pii_open_payload(other, &ar, kat, sizeof(kat), &plain), DLRD_EAUTH);
	/* truncated */
	assert_int_equal(pii_open_payload(kr, &ar, kat, sizeof(kat) - 1, &plain), DLRD_EAUTH);
	assert_int_equal(pii_open_payload(kr, &ar, kat, 9 + PII_OVERHEAD - 1, &plain), DLRD_EINVAL);
	assert_int_equal(pii_open_payload(kr, &ar, kat, 8, &plain), DLRD_EINVAL);

	/* payloads stored in clear before sealing are not the format */
	assert_int_equal(pii_open_payload(kr, &ar, SEAL_PT, strlen(SEAL_PT), &plain), DLRD_EINVAL);
	assert_int_equal(pii_open_payload(kr, &ar, "", 0, &plain), DLRD_EINVAL);
	assert_int_equal(pii_open_payload(kr, &ar, "DLRDE1", 6, &plain), DLRD_EINVAL);
	assert_int_equal(pii_is_sealed(SEAL_PT, strlen(SEAL_PT)), 0);

	arena_fini(&ar);
	pii_keyring_free(kr);
	pii_keyring_free(other);
	pii_keyring_free(rotated);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known_answers),
	    cmocka_unit_test(test_ring_rotation),
	    cmocka_unit_test(test_ring_errors),
	    cmocka_unit_test(test_key_file),
	    cmocka_unit_test(test_key_file_mode),
	    cmocka_unit_test(test_key_file_concurrent_starts_agree),
	    cmocka_unit_test(test_sealed_payloads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
