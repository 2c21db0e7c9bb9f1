/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/crypto.c: HMAC against the RFC 4231 and RFC 2202
 * vectors (one-shot and streaming), SHA-256, the strict base64 decoder
 * (RFC 4648 vectors, both alphabets, every malformation it must reject),
 * hex, constant-time comparison and the random source.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypto.h"
#include "util.h"

static void assert_hex(const uint8_t *p, size_t n, const char *want)
{
	char hex[2 * 64 + 1];

	assert_true(n <= 64);
	crypto_hex(p, n, hex);
	assert_string_equal(hex, want);
}

static void hmac_hex(enum crypto_md md, const void *key, size_t keylen, const char *msg,
                     const char *want)
{
	uint8_t out[64];
	struct crypto_piece piece = {msg, strlen(msg)};

	crypto_hmac(md, key, keylen, &piece, 1, out);
	assert_hex(out, crypto_md_len(md), want);
}

static void test_md_len(void **state)
{
	(void)state;
	assert_int_equal(crypto_md_len(CRYPTO_MD5), 16);
	assert_int_equal(crypto_md_len(CRYPTO_SHA1), 20);
	assert_int_equal(crypto_md_len(CRYPTO_SHA256), 32);
	assert_int_equal(crypto_md_len(CRYPTO_SHA512), 64);
}

static void test_sha256(void **state)
{
	uint8_t out[CRYPTO_SHA256_LEN];

	(void)state;
	crypto_sha256("abc", 3, out);
	assert_hex(out, sizeof(out),
	           "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	crypto_sha256("", 0, out);
	assert_hex(out, sizeof(out),
	           "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	/* in pieces: the digest of their concatenation, empty pieces included */
	crypto_sha256_pieces((const struct crypto_piece[]){{"a", 1}, {NULL, 0}, {"bc", 2}}, 3, out);
	assert_hex(out, sizeof(out),
	           "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	crypto_sha256_pieces(NULL, 0, out);
	assert_hex(out, sizeof(out),
	           "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

/* RFC 4231 test cases 1, 2 and 6 (key longer than the block). */
static void test_hmac_sha256_rfc4231(void **state)
{
	uint8_t key1[20], key6[131];

	(void)state;
	memset(key1, 0x0b, sizeof(key1));
	memset(key6, 0xaa, sizeof(key6));
	hmac_hex(CRYPTO_SHA256, key1, sizeof(key1), "Hi There",
	         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
	hmac_hex(CRYPTO_SHA256, "Jefe", 4, "what do ya want for nothing?",
	         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	hmac_hex(CRYPTO_SHA256, key6, sizeof(key6),
	         "Test Using Larger Than Block-Size Key - Hash Key First",
	         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
	hmac_hex(CRYPTO_SHA512, "Jefe", 4, "what do ya want for nothing?",
	         "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
	         "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737");
}

/* RFC 2202 test cases 1 and 2 for HMAC-SHA1 and HMAC-MD5. */
static void test_hmac_sha1_rfc2202(void **state)
{
	uint8_t key1[20];

	(void)state;
	memset(key1, 0x0b, sizeof(key1));
	hmac_hex(CRYPTO_SHA1, key1, sizeof(key1), "Hi There",
	         "b617318655057264e28bc0b6fb378c8ef146be00");
	hmac_hex(CRYPTO_SHA1, "Jefe", 4, "what do ya want for nothing?",
	         "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
	hmac_hex(CRYPTO_MD5, "Jefe", 4, "what do ya want for nothing?",
	         "750c783e6ab0b503eaa86e310a5db738");
}

static void test_hmac_empty_key(void **state)
{
	(void)state;
	hmac_hex(CRYPTO_SHA256, "", 0, "",
	         "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
	hmac_hex(CRYPTO_SHA256, NULL, 0, "",
	         "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

/* Pieces and the streaming context give the same MAC as one buffer. */
static void test_hmac_pieces_and_stream(void **state)
{
	const char *msg = "what do ya want for nothing?";
	struct crypto_piece pieces[] = {{msg, 4}, {msg + 4, 0}, {msg + 4, 10}, {msg + 14, 14}};
	uint8_t out[CRYPTO_SHA256_LEN];
	struct crypto_hmac_ctx *c;

	(void)state;
	crypto_hmac(CRYPTO_SHA256, "Jefe", 4, pieces, ARRAY_LEN(pieces), out);
	assert_hex(out, sizeof(out),
	           "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

	c = crypto_hmac_new(CRYPTO_SHA1, "Jefe", 4);
	for (size_t i = 0; msg[i]; i++)
		crypto_hmac_update(c, msg + i, 1);
	crypto_hmac_final(c, out);
	assert_hex(out, CRYPTO_SHA1_LEN, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
}

/* The per-thread keyed contexts: the same answers when a key is used again,
 * with more keys than slots, with nested MACs under one key, on a thread
 * that ends (its contexts freed: the sanitizer build checks for leaks). */
static void kept_keys_round(void)
{
	uint8_t key1[20], key6[131], out1[64], out2[64], out3[64];
	const char *msg = "what do ya want for nothing?";

	memset(key1, 0x0b, sizeof(key1));
	memset(key6, 0xaa, sizeof(key6));
	for (int round = 0; round < 3; round++) {
		hmac_hex(CRYPTO_SHA256, "Jefe", 4, msg,
		         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
		hmac_hex(CRYPTO_SHA1, "Jefe", 4, msg, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
		hmac_hex(CRYPTO_MD5, "Jefe", 4, msg, "750c783e6ab0b503eaa86e310a5db738");
		hmac_hex(CRYPTO_SHA1, key1, sizeof(key1), "Hi There",
		         "b617318655057264e28bc0b6fb378c8ef146be00");
		hmac_hex(CRYPTO_SHA256, key1, sizeof(key1), "Hi There",
		         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
		hmac_hex(CRYPTO_SHA256, key6, sizeof(key6),
		         "Test Using Larger Than Block-Size Key - Hash Key First",
		         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
		hmac_hex(CRYPTO_SHA256, "", 0, "",
		         "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
	}
	/* three MACs under one key at once, finished in another order */
	struct crypto_hmac_ctx *a = crypto_hmac_new(CRYPTO_SHA256, "Jefe", 4);
	struct crypto_hmac_ctx *b = crypto_hmac_new(CRYPTO_SHA256, "Jefe", 4);
	crypto_hmac_update(a, msg, 10);
	struct crypto_hmac_ctx *c = crypto_hmac_new(CRYPTO_SHA256, "Jefe", 4);
	crypto_hmac_update(c, msg, strlen(msg));
	crypto_hmac_update(b, msg, 3);
	crypto_hmac_update(a, msg + 10, strlen(msg) - 10);
	crypto_hmac_update(b, msg + 3, strlen(msg) - 3);
	crypto_hmac_final(b, out2);
	crypto_hmac_final(a, out1);
	crypto_hmac_final(c, out3);
	assert_hex(out1, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	assert_hex(out2, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	assert_hex(out3, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	/* a MAC left half-done must not leak into the next with its key */
	a = crypto_hmac_new(CRYPTO_SHA1, "Jefe", 4);
	crypto_hmac_update(a, "junk", 4);
	crypto_hmac_final(a, out1);
	hmac_hex(CRYPTO_SHA1, "Jefe", 4, msg, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
}

static void *kept_keys_thread(void *arg)
{
	(void)arg;
	kept_keys_round();
	return NULL;
}

static void test_hmac_kept_keys(void **state)
{
	pthread_t t;

	(void)state;
	kept_keys_round();
	assert_int_equal(pthread_create(&t, NULL, kept_keys_thread, NULL), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	kept_keys_round();
}

struct b64_vec {
	const char *raw;
	const char *enc;
};

/* RFC 4648 section 10. */
static const struct b64_vec rfc4648[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void test_b64_encode(void **state)
{
	char out[16];

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(rfc4648); i++) {
		const struct b64_vec *v = &rfc4648[i];
		size_t n = crypto_b64_encode((const uint8_t *)v->raw, strlen(v->raw), out);
		assert_int_equal(n, strlen(v->enc));
		assert_string_equal(out, v->enc);
	}
	{
		const uint8_t hi[] = {0xfb, 0xff, 0xbf};
		assert_int_equal(crypto_b64_encode(hi, 3, out), 4);
		assert_string_equal(out, "+/+/");
	}
}

static void assert_decodes(const char *enc, const void *want, size_t wantlen)
{
	uint8_t out[64];
	size_t n = 999;
	size_t len = strlen(enc);

	assert_true(3 * (len / 4) + 3 <= sizeof(out));
	assert_int_equal(crypto_b64_decode(enc, len, out, &n), 0);
	assert_int_equal(n, wantlen);
	assert_memory_equal(out, want, wantlen);
}

static void assert_rejects(const char *enc)
{
	uint8_t out[64];
	size_t n = 999;

	assert_int_equal(crypto_b64_decode(enc, strlen(enc), out, &n), DLRD_EINVAL);
	assert_int_equal(n, 0);
}

static void test_b64_decode(void **state)
{
	const uint8_t hi[] = {0xfb, 0xff, 0xbf, 0xfb, 0xff};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(rfc4648); i++)
		assert_decodes(rfc4648[i].enc, rfc4648[i].raw, strlen(rfc4648[i].raw));
	/* padding is optional */
	assert_decodes("Zg", "f", 1);
	assert_decodes("Zm8", "fo", 2);
	assert_decodes("Zm9vYmE", "fooba", 5);
	/* both alphabets */
	assert_decodes("+/+/+/8=", hi, 5);
	assert_decodes("+/+/+/8", hi, 5);
	assert_decodes("-_-_-_8=", hi, 5);
	assert_decodes("-_-_-_8", hi, 5);
}

static void test_b64_rejects(void **state)
{
	(void)state;
	assert_rejects("Z");     /* 6 bits cannot be a byte */
	assert_rejects("Zm9vY"); /* same after a full quantum */
	assert_rejects("Zg=");   /* padding present but short */
	assert_rejects("Zg==="); /* too much padding */
	assert_rejects("Zm8=="); /* wrong amount for the remainder */
	assert_rejects("Zm9v="); /* padding after a full quantum */
	assert_rejects("====");
	assert_rejects("=");
	assert_rejects("Zg==Zg=="); /* padding in the middle */
	assert_rejects("Zm=v");
	assert_rejects("Zm9v\n"); /* no whitespace */
	assert_rejects("Zm 9v");
	assert_rejects(" Zm9v");
	assert_rejects("Zm9v!A==");
	assert_rejects("Zh=="); /* non-zero unused bits */
	assert_rejects("Zm9=");
	assert_rejects("+_+_"); /* mixed alphabets */
	assert_rejects("-/8=");
	{
		uint8_t out[8];
		size_t n = 1;
		/* an embedded NUL is not base64 either */
		assert_int_equal(crypto_b64_decode("Zm\0v", 4, out, &n), DLRD_EINVAL);
	}
}

static void test_b64_round_trip(void **state)
{
	uint8_t raw[200], back[200];
	char enc[4 * ((sizeof(raw) + 2) / 3) + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (uint8_t)(i * 37 + 11);
	for (size_t n = 0; n <= 100; n++) {
		size_t len = crypto_b64_encode(raw + n, n, enc), got = 0;
		assert_int_equal(len, 4 * ((n + 2) / 3));
		assert_int_equal(strlen(enc), len);
		assert_int_equal(crypto_b64_decode(enc, len, back, &got), 0);
		assert_int_equal(got, n);
		assert_memory_equal(back, raw + n, n);
	}
}

static void test_hex(void **state)
{
	const uint8_t b[] = {0x00, 0x01, 0xab, 0xff, 0x7f};
	char out[11];

	(void)state;
	crypto_hex(b, sizeof(b), out);
	assert_string_equal(out, "0001abff7f");
	crypto_hex(b, 0, out);
	assert_string_equal(out, "");
}

static void test_ct_eq(void **state)
{
	(void)state;
	assert_true(crypto_ct_eq("abcdef", 6, "abcdef", 6));
	assert_true(crypto_ct_eq("", 0, "", 0));
	assert_true(crypto_ct_eq("a\0b", 3, "a\0b", 3));
	assert_false(crypto_ct_eq("abcdef", 6, "abcdeg", 6));
	assert_false(crypto_ct_eq("abcdef", 6, "bbcdef", 6));
	assert_false(crypto_ct_eq("a\0b", 3, "a\0c", 3));
	assert_false(crypto_ct_eq("abcdef", 6, "abcde", 5));
	assert_false(crypto_ct_eq("abc", 3, "abcdef", 6));
	assert_false(crypto_ct_eq("", 0, "a", 1));
}

static void test_ct_eq_nocase(void **state)
{
	(void)state;
	assert_true(crypto_ct_eq_nocase("0a1FF7", 6, "0A1ff7", 6));
	assert_true(crypto_ct_eq_nocase("AZaz", 4, "azAZ", 4));
	assert_false(crypto_ct_eq_nocase("0a1ff7", 6, "0a1ff8", 6));
	assert_false(crypto_ct_eq_nocase("abc", 3, "abcd", 4));
	/* only letters fold: these differ by 0x20 but are not letters */
	assert_false(crypto_ct_eq_nocase("@", 1, "`", 1));
	assert_false(crypto_ct_eq_nocase("[", 1, "{", 1));
	assert_false(crypto_ct_eq_nocase("\x10", 1, "0", 1));
	assert_false(crypto_ct_eq_nocase("\xc1", 1, "\xe1", 1));
}

static void test_random(void **state)
{
	uint8_t a[32], b[32], zero[32] = {0};

	(void)state;
	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	crypto_random(a, sizeof(a));
	crypto_random(b, sizeof(b));
	assert_memory_not_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, zero, sizeof(a));
	crypto_random(a, 0);
}

/* Public random values: never repeated, across buffer refills and across a
 * fork (the child must not reuse what its parent will hand out next). */
static void test_random_public(void **state)
{
	(void)state;
	enum { N = 400 }; /* several refills of the 1 KiB buffer */
	static uint8_t seen[N][12];
	for (int i = 0; i < N; i++) {
		crypto_random_public(seen[i], 12);
		for (int j = 0; j < i; j++)
			assert_memory_not_equal(seen[i], seen[j], 12);
	}
	uint8_t mine[12], childs[12];
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		crypto_random_public(childs, sizeof(childs));
		_exit(write(fds[1], childs, sizeof(childs)) == (ssize_t)sizeof(childs) ? 0 : 1);
	}
	crypto_random_public(mine, sizeof(mine));
	assert_int_equal(read(fds[0], childs, sizeof(childs)), (ssize_t)sizeof(childs));
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_memory_not_equal(mine, childs, sizeof(mine));
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_md_len),
	    cmocka_unit_test(test_sha256),
	    cmocka_unit_test(test_hmac_sha256_rfc4231),
	    cmocka_unit_test(test_hmac_sha1_rfc2202),
	    cmocka_unit_test(test_hmac_empty_key),
	    cmocka_unit_test(test_hmac_pieces_and_stream),
	    cmocka_unit_test(test_hmac_kept_keys),
	    cmocka_unit_test(test_b64_encode),
	    cmocka_unit_test(test_b64_decode),
	    cmocka_unit_test(test_b64_rejects),
	    cmocka_unit_test(test_b64_round_trip),
	    cmocka_unit_test(test_hex),
	    cmocka_unit_test(test_ct_eq),
	    cmocka_unit_test(test_ct_eq_nocase),
	    cmocka_unit_test(test_random),
	    cmocka_unit_test(test_random_public),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
