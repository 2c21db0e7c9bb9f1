/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/sig.c, Twilio scheme.  Vectors come from twilio-node's
 * spec/validation.spec.js (and /work/shared/reference/providers.md 1.4); the
 * UTF-16 ordering vectors were computed with a reference implementation that
 * sorts like JavaScript.  Every test asserts exact signatures or exact
 * outcomes, so a wrong sort, port rule or concatenation fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"
#include "form.h"
#include "dlrd_limits.h"
#include "sig.h"
#include "util.h"

#define TOKEN  "12345"
#define URL    "https://mycompany.com/myapp.php?foo=1&bar=2"
#define BASE   "https://mycompany.com"
#define TARGET "/myapp.php?foo=1&bar=2"
/* defaultParams of twilio-node's spec, form-encoded */
#define PARAMS                                                                                     \
	"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&"         \
	"To=%2B18005551212"
#define SIG_DEFAULT  "RSOYDt4T1cUTdK1PDd93/VVr8B8="
#define SIG_PORT443  "kvajT1Ptam85bY51eRf/AJRuM3w="
#define SIG_URL_ONLY "zYQTYrRWXE7LtzbG4PfP7/bkkGo=" /* URL, no params */
#define JSON_BODY    "{\"property\": \"value\", \"boolean\": true}"
#define JSON_SHA     "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
#define EMPTY_SHA    "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

struct fixture {
	struct arena a;
	char block[4096];
	char err[128];
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	arena_init(&fx->a, fx->block, sizeof(fx->block));
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	arena_fini(&fx->a);
	free(fx);
	return 0;
}

static struct form parse(struct fixture *fx, const char *body)
{
	struct form f;

	assert_int_equal(
	    form_decode(&fx->a, body, strlen(body), LIM_FORM_FIELDS, &f, fx->err, sizeof(fx->err)),
	    0);
	return f;
}

static struct iov iov(const char *s)
{
	return (struct iov){s, strlen(s)};
}

/* sig_twilio_verify with one token; err is left in fx->err. */
static int verify1(struct fixture *fx, const char *token, const char *base, const char *target,
                   const struct form *params, const char *body, const char *sig)
{
	char *tokens[] = {(char *)token};

	memset(fx->err, 'X', sizeof(fx->err) - 1);
	fx->err[sizeof(fx->err) - 1] = '\0';
	return sig_twilio_verify(tokens, 1, base, iov(target), params, iov(body), iov(sig), fx->err,
	                         sizeof(fx->err));
}

static void assert_sign(const char *token, const char *url, const struct form *params,
                        const char *want)
{
	char out[29];

	memset(out, 'X', sizeof(out));
	sig_twilio_sign(token, iov(url), params, out);
	assert_string_equal(out, want);
}

static void test_sign_vectors(void **state)
{
	struct fixture *fx = *state;
	struct form p = parse(fx, PARAMS);
	struct form p10 = parse(fx, "CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&"
	                            "From=%2B14158675310&To=%2B18005551212");
	struct form shuffled = parse(fx, "To=%2B18005551212&Digits=1234&From=%2B14158675309&"
	                                 "CallSid=CA1234567890ABCDE&Caller=%2B14158675309");

	assert_sign(TOKEN, URL, &p, SIG_DEFAULT);
	assert_sign(TOKEN, URL, &shuffled, SIG_DEFAULT);
	assert_sign(TOKEN, URL, &p10, "GvWf1cFY/Q7PnoempGyD5oXAezc=");
	assert_sign(TOKEN, "https://mycompany.com:443/myapp.php?foo=1&bar=2", &p, SIG_PORT443);
	assert_sign(TOKEN, URL "&bodySHA256=" JSON_SHA, NULL, "a9nBmqA0ju/hNViExpshrM61xv4=");
	assert_sign(TOKEN, "https://mycompany.com/myapp.php?bodySHA256=" JSON_SHA, NULL,
	            "y77kIzt2vzLz71DgmJGsen2scGs=");
	assert_sign(TOKEN, URL, &(struct form){NULL, 0}, SIG_URL_ONLY);
}

static void test_verify_vectors(void **state)
{
	struct fixture *fx = *state;
	struct form p = parse(fx, PARAMS);
	struct form p10 = parse(fx, "CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&"
	                            "From=%2B14158675310&To=%2B18005551212");

	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &p, "", SIG_DEFAULT), 0);
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &p10, "", "GvWf1cFY/Q7PnoempGyD5oXAezc="),
	                 0);
	/* the two vectors are not interchangeable */
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &p10, "", SIG_DEFAULT), DLRD_EAUTH);
	assert_string_equal(fx->err, "signature mismatch");
}

/* Twilio may have signed with or without the default port. */
static void test_ports(void **state)
{
	struct fixture *fx = *state;
	struct form p = parse(fx, PARAMS);

	/* signed with :443, configured without */
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &p, "", SIG_PORT443), 0);
	/* signed without, configured with :443 */
	assert_int_equal(verify1(fx, TOKEN, BASE ":443", TARGET, &p, "", SIG_DEFAULT), 0);
	assert_int_equal(verify1(fx, TOKEN, BASE ":443", TARGET, &p, "", SIG_PORT443), 0);
	/* any port is stripped, as the SDKs do (spec: port 1234) */
	assert_int_equal(verify1(fx, TOKEN, BASE ":1234", TARGET, &p, "", SIG_DEFAULT), 0);
	/* ... but :443 is not added to a URL that has another port */
	assert_int_equal(verify1(fx, TOKEN, BASE ":1234", TARGET, &p, "", SIG_PORT443), DLRD_EAUTH);
	/* http: signed as given with :1234, and with :80 added */
	assert_int_equal(verify1(fx, TOKEN, "http://mycompany.com:1234", TARGET, &p, "",
	                         "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
	                 0);
	assert_int_equal(verify1(fx, TOKEN, "http://mycompany.com", TARGET, &p, "",
	                         "0ZXoZLH/DfblKGATFgpif+LLRf4="),
	                 0);
	/* the https default port means nothing for http */
	assert_int_equal(verify1(fx, TOKEN, "http://mycompany.com", TARGET, &p, "", SIG_PORT443),
	                 DLRD_EAUTH);
	/* the scheme is case-insensitive when choosing the default port */
	assert_int_equal(verify1(fx, TOKEN, "HTTPS://mycompany.com", TARGET, &p, "",
	                         "jJ0oH2Lh3w05DUFZo/uzY+Ojo2g="),
	                 0);
}

static void test_userinfo_and_ipv6(void **state)
{
	struct fixture *fx = *state;
	struct form p = parse(fx, PARAMS);

	assert_int_equal(verify1(fx, TOKEN, "https://user:pass@mycompany.com", TARGET, &p, "",
	                         "CukzLTc1tT5dXEDIHm/tKBanW10="),
	                 0);
	assert_int_equal(verify1(fx, TOKEN, "https://user:pass@mycompany.com", TARGET, &p, "",
	                         "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI="),
	                 0);
	assert_int_equal(verify1(fx, TOKEN, "https://user@mycompany.com", TARGET, &p, "",
	                         "2YRLlVAflCqxaNicjMpJcSTgzSs="),
	                 0);
	/* IPv6 literal: the colons inside the brackets are not a port */
	assert_int_equal(
	    verify1(fx, TOKEN, "https://[::1]", "/x", NULL, "", "pLxLgtKSgIIWGAFTOtNyd5C9LEE="),
	    0); /* signed over https://[::1]:443/x */
	assert_int_equal(verify1(fx, TOKEN, "https://[::1]:8443", "/x", NULL, "",
	                         "zc0aoKHkuUCtes4oOh0dugnL/EE="),
	                 0); /* signed over https://[::1]/x */
}

/* The query is signed exactly as received ("'" and "+" unescaped). */
static void test_special_characters(void **state)
{
	struct fixture *fx = *state;
	struct form p = parse(fx, PARAMS);

	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET "&Body=It's+amazing", &p, "",
	                         "dsq4Ehbj6cs+KdTkpF5sSSplOWw="),
	                 0);
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET "&Body=It%27s+amazing", &p, "",
	                         "dsq4Ehbj6cs+KdTkpF5sSSplOWw="),
	                 DLRD_EAUTH);
}

static void test_repeated_keys(void **state)
{
	struct fixture *fx = *state;
	struct form a1 = parse(fx, "MessagingBinding.Address=%2B1325xxxxxxx&"
	                           "MessagingBinding.Address=%2B1415xxxxxxx");
	struct form a2 = parse(fx, "MessagingBinding.Address=%2B1415xxxxxxx&"
	                           "MessagingBinding.Address=%2B1325xxxxxxx");
	struct form m = parse(fx, "Digits=5678&Sid=CA123&Digits=1234&SidAccount=AC123&Digits=1234");
	struct form m_nodup = parse(fx, "Digits=5678&Sid=CA123&Digits=1234&SidAccount=AC123");

	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &a1, "", "83O6e2vORAoJHUNzJjDWN1jz+BA="),
	                 0);
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &a2, "", "83O6e2vORAoJHUNzJjDWN1jz+BA="),
	                 0);
	/* values de-duplicated: the repeated 1234 is signed once */
	assert_sign(TOKEN, URL, &m, "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
	assert_sign(TOKEN, URL, &m_nodup, "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &m, "", "IK+Dwps556ElfBT0I3Rgjkr1wJU="),
	                 0);
}

/* JavaScript's sort: UTF-16 code units, so U+1F600 (D83D DE00) sorts before
 * U+E000, and upper case before lower case. */
static void test_utf16_order(void **state)
{
	struct fixture *fx = *state;
	struct form p = parse(fx, "%EE%80%80=1&%F0%9F%98%80=2&z=3&%C3%A9=4&B=5&a=6");
	struct form v = parse(fx, "k=%EE%80%80&k=%F0%9F%98%80&k=b&k=B&k=b");

	assert_sign("tok", "https://example.com/hook", &p, "Q8lKk8I0V1BMe9LUknc/KMEm2xM=");
	assert_sign("tok", "https://example.com/hook", &v, "gJ6wcUUeMrNfBgUrlLV921HjokM=");
	assert_int_equal(verify1(fx, "tok", "https://example.com", "/hook", &p, "",
	                         "Q8lKk8I0V1BMe9LUknc/KMEm2xM="),
	                 0);
	/* what plain byte order would give must not verify */
	assert_int_equal(verify1(fx, "tok", "https://example.com", "/hook", &p, "",
	                         "rjYBr3rLbLftemwzWzCzmcfb2zk="),
	                 DLRD_EAUTH);
}

/* The same order when the values share a prefix longer than the eight
 * bytes utf16_cmp() skips at a time, with the first difference inside a
 * multi-byte character, past a chunk or across one.  The expected MAC is
 * built here over the pairs in the order written. */
static void test_utf16_order_long_prefix(void **state)
{
	struct fixture *fx = *state;
	struct form f = parse(fx, "k=xxxxxxxxxxxx%EE%80%80&k=xxxxxxxxxxxx%F0%9F%98%80&"
	                          "k=xxxxxxxxxxxxb&k=xxxxxxxxxxxxB&n=abcdefg%C3%AA&n=abcdefg%C3%A9&"
	                          "n=abcdefgh12345678%C3%A9&n=abcdefgh12345678");
	static const char url[] = "https://example.com/hook";
	static const char *const sorted[] = {
	    url,
	    "k",
	    "xxxxxxxxxxxxB",
	    "k",
	    "xxxxxxxxxxxxb",
	    "k",
	    "xxxxxxxxxxxx\xf0\x9f\x98\x80",
	    "k",
	    "xxxxxxxxxxxx\xee\x80\x80",
	    "n",
	    "abcdefgh12345678",
	    "n",
	    "abcdefgh12345678\xc3\xa9",
	    "n",
	    "abcdefg\xc3\xa9", /* U+00E9 after 'h' */
	    "n",
	    "abcdefg\xc3\xaa",
	};
	struct crypto_piece pieces[ARRAY_LEN(sorted)];
	uint8_t mac[CRYPTO_SHA1_LEN];
	char want[29];

	for (size_t i = 0; i < ARRAY_LEN(sorted); i++)
		pieces[i] = (struct crypto_piece){sorted[i], strlen(sorted[i])};
	crypto_hmac(CRYPTO_SHA1, "tok", 3, pieces, ARRAY_LEN(pieces), mac);
	crypto_b64_encode(mac, sizeof(mac), want);
	assert_sign("tok", url, &f, want);
}

static void test_body_sha256(void **state)
{
	struct fixture *fx = *state;
	struct form p = parse(fx, PARAMS);
	const char *target = TARGET "&bodySHA256=" JSON_SHA;

	assert_int_equal(
	    verify1(fx, TOKEN, BASE, target, NULL, JSON_BODY, "a9nBmqA0ju/hNViExpshrM61xv4="), 0);
	/* form params are ignored in this mode */
	assert_int_equal(
	    verify1(fx, TOKEN, BASE, target, &p, JSON_BODY, "a9nBmqA0ju/hNViExpshrM61xv4="), 0);
	/* spec: empty-ish body "{}", signed with :443 */
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET "&bodySHA256=" EMPTY_SHA, NULL, "{}",
	                         "Ldidvp12m26NI7eqEvxnEpkd9Hc="),
	                 0);
	/* spec: only the hash parameter */
	assert_int_equal(verify1(fx, TOKEN, BASE, "/myapp.php?bodySHA256=" JSON_SHA, NULL,
	                         JSON_BODY, "y77kIzt2vzLz71DgmJGsen2scGs="),
	                 0);
	/* tampered body: signature fine, hash not */
	assert_int_equal(verify1(fx, TOKEN, BASE, target, NULL, "{\"property\": \"value\"}",
	                         "a9nBmqA0ju/hNViExpshrM61xv4="),
	                 DLRD_EAUTH);
	assert_string_equal(fx->err, "bodySHA256 mismatch");
	/* the hash is compared as lower-case hex, exactly */
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET "&bodySHA256=" EMPTY_SHA, NULL, "{} ",
	                         "Ldidvp12m26NI7eqEvxnEpkd9Hc="),
	                 DLRD_EAUTH);
	assert_string_equal(fx->err, "bodySHA256 mismatch");
	/* tampered hash in the URL: the signature no longer matches */
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET "&bodySHA256=" EMPTY_SHA, NULL, "{}",
	                         "a9nBmqA0ju/hNViExpshrM61xv4="),
	                 DLRD_EAUTH);
	assert_string_equal(fx->err, "signature mismatch");
	/* without bodySHA256 in the query a URL-only signature does not cover
	 * form params, and with no params it verifies (GET) */
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &p, JSON_BODY, SIG_URL_ONLY), DLRD_EAUTH);
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, NULL, JSON_BODY, SIG_URL_ONLY), 0);
	/* a parameter merely named like it does not switch modes: the URL-only
	 * signature verifies and the body is not looked at */
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET "&bodysha256=" JSON_SHA, NULL, "x",
	                         "FXaeHMDpU8jiJZVUGgNue8xeCP4="),
	                 0);
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET "&xbodySHA256=" JSON_SHA, NULL, "",
	                         "a9nBmqA0ju/hNViExpshrM61xv4="),
	                 DLRD_EAUTH);
	/* the name is compared decoded, as URLSearchParams.get() does */
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET "&body%53HA256=" JSON_SHA, NULL, JSON_BODY,
	                         "QtYmtCBfcbEYMuSTR/X6BHJyals="),
	                 0);
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET "&body%53HA256=" JSON_SHA, NULL, "x",
	                         "QtYmtCBfcbEYMuSTR/X6BHJyals="),
	                 DLRD_EAUTH);
	assert_string_equal(fx->err, "bodySHA256 mismatch");
	/* the value is compared decoded too: every digit percent-encoded (192
	 * bytes in the URL, the most a 64-digit hash can take) still matches */
	{
		char tgt[256], url[512], sig[29];
		size_t at = util_fmt(tgt, sizeof(tgt), "%s", "/myapp.php?bodySHA256=");
		for (const char *h = JSON_SHA; *h; h++)
			at += util_fmt(tgt + at, sizeof(tgt) - at, "%%%02X", (unsigned)*h);
		assert_int_equal(at, strlen("/myapp.php?bodySHA256=") + 3 * 64);
		util_fmt(url, sizeof(url), "%s%s", BASE, tgt);
		sig_twilio_sign(TOKEN, iov(url), NULL, sig);
		assert_int_equal(verify1(fx, TOKEN, BASE, tgt, NULL, JSON_BODY, sig), 0);
		assert_int_equal(verify1(fx, TOKEN, BASE, tgt, NULL, "{}", sig), DLRD_EAUTH);
		assert_string_equal(fx->err, "bodySHA256 mismatch");
	}
}

static void test_wrong_token_and_rotation(void **state)
{
	struct fixture *fx = *state;
	struct form p = parse(fx, PARAMS);
	char *two[] = {"54321", TOKEN};
	char *wrong[] = {"54321", "1234", "123456"};

	assert_int_equal(verify1(fx, "54321", BASE, TARGET, &p, "", SIG_DEFAULT), DLRD_EAUTH);
	assert_string_equal(fx->err, "signature mismatch");
	assert_int_equal(sig_twilio_verify(two, 2, BASE, iov(TARGET), &p, iov(""), iov(SIG_DEFAULT),
	                                   fx->err, sizeof(fx->err)),
	                 0);
	assert_int_equal(sig_twilio_verify(two, 2, BASE, iov(TARGET), &p, iov(""), iov(SIG_PORT443),
	                                   fx->err, sizeof(fx->err)),
	                 0);
	assert_int_equal(sig_twilio_verify(wrong, 3, BASE, iov(TARGET), &p, iov(""),
	                                   iov(SIG_DEFAULT), fx->err, sizeof(fx->err)),
	                 DLRD_EAUTH);
	assert_string_equal(fx->err, "signature mismatch");
	assert_int_equal(sig_twilio_verify(two, 0, BASE, iov(TARGET), &p, iov(""), iov(SIG_DEFAULT),
	                                   fx->err, sizeof(fx->err)),
	                 DLRD_EAUTH);
	assert_string_equal(fx->err, "no auth token configured");
}

static void test_tampering(void **state)
{
	struct fixture *fx = *state;
	struct form digits =
	    parse(fx, "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1235&"
	              "From=%2B14158675309&To=%2B18005551212");
	struct form extra = parse(fx, PARAMS "&Extra=");
	struct form missing = parse(fx, "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&"
	                                "Digits=1234&From=%2B14158675309");
	struct form p = parse(fx, PARAMS);

	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &digits, "", SIG_DEFAULT), DLRD_EAUTH);
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &extra, "", SIG_DEFAULT), DLRD_EAUTH);
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &missing, "", SIG_DEFAULT), DLRD_EAUTH);
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET "&x=1", &p, "", SIG_DEFAULT), DLRD_EAUTH);
	assert_int_equal(verify1(fx, TOKEN, BASE, "/myapp.php?foo=1&bar=3", &p, "", SIG_DEFAULT),
	                 DLRD_EAUTH);
	assert_int_equal(verify1(fx, TOKEN, "https://mycompany.co", TARGET, &p, "", SIG_DEFAULT),
	                 DLRD_EAUTH);
	assert_int_equal(verify1(fx, TOKEN, "http://mycompany.com", TARGET, &p, "", SIG_DEFAULT),
	                 DLRD_EAUTH);
	assert_string_equal(fx->err, "signature mismatch");
}

static void test_bad_signature_header(void **state)
{
	struct fixture *fx = *state;
	struct form p = parse(fx, PARAMS);
	char *tokens[] = {TOKEN};

	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &p, "", ""), DLRD_EAUTH);
	assert_string_equal(fx->err, "missing signature");
	assert_int_equal(sig_twilio_verify(tokens, 1, BASE, iov(TARGET), &p, iov(""),
	                                   (struct iov){NULL, 0}, fx->err, sizeof(fx->err)),
	                 DLRD_EAUTH);
	assert_string_equal(fx->err, "missing signature");
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &p, "", "not base64!"), DLRD_EAUTH);
	assert_string_equal(fx->err, "malformed signature");
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &p, "", "RSOYDt4T1cUTdK1PDd93/VVr"),
	                 DLRD_EAUTH); /* truncated: 18 bytes */
	assert_string_equal(fx->err, "malformed signature");
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &p, "", SIG_DEFAULT "A"), DLRD_EAUTH);
	assert_string_equal(fx->err, "malformed signature");
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &p, "", " " SIG_DEFAULT), DLRD_EAUTH);
	assert_string_equal(fx->err, "malformed signature");
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &p, "", "WRONG_SIGNATURE"), DLRD_EAUTH);
	/* well-formed but not Twilio's exact text: no padding, URL-safe alphabet */
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &p, "", "RSOYDt4T1cUTdK1PDd93/VVr8B8"),
	                 DLRD_EAUTH);
	assert_string_equal(fx->err, "signature mismatch");
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &p, "", "RSOYDt4T1cUTdK1PDd93_VVr8B8="),
	                 DLRD_EAUTH);
	assert_string_equal(fx->err, "signature mismatch");
	/* non-canonical: the unused low bits of the last character are set */
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &p, "", "RSOYDt4T1cUTdK1PDd93/VVr8B9="),
	                 DLRD_EAUTH);
	assert_string_equal(fx->err, "malformed signature");
	/* one flipped character */
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &p, "", "RSOYDt4T1cUTdK1PDd93/VVr8B4="),
	                 DLRD_EAUTH);
	assert_string_equal(fx->err, "signature mismatch");
}

/* The reason never carries a secret or the expected signature. */
static void test_err_has_no_secret(void **state)
{
	struct fixture *fx = *state;
	struct form p = parse(fx, PARAMS);
	char *tokens[] = {"54321"};
	char err[256];

	memset(err, 0, sizeof(err));
	assert_int_equal(sig_twilio_verify(tokens, 1, BASE, iov(TARGET), &p, iov(""),
	                                   iov("RSOYDt4T1cUTdK1PDd93/VVr8B4="), err, sizeof(err)),
	                 DLRD_EAUTH);
	assert_null(strstr(err, "54321"));
	assert_null(strstr(err, SIG_DEFAULT));
	assert_string_equal(err, "signature mismatch");
	/* a tiny or absent buffer is fine */
	assert_int_equal(
	    sig_twilio_verify(tokens, 1, BASE, iov(TARGET), &p, iov(""), iov(SIG_DEFAULT), err, 4),
	    DLRD_EAUTH);
	assert_string_equal(err, "sig");
	assert_int_equal(
	    sig_twilio_verify(tokens, 1, BASE, iov(TARGET), &p, iov(""), iov(SIG_DEFAULT), NULL, 0),
	    DLRD_EAUTH);
}

/* Forms larger than LIM_FORM_FIELDS take the heap path and still sort. */
static void test_large_form(void **state)
{
	struct fixture *fx = *state;
	size_t nf = LIM_FORM_FIELDS + 44, cap = nf * 16, n = 0;
	char *body = xmalloc(cap), *rev = xmalloc(cap);
	struct form f, r;
	char a[29], b[29];

	for (size_t i = 0; i < nf; i++)
		n += util_fmt(body + n, cap - n, "%sk%03zu=%zu", i ? "&" : "", i, i % 7);
	assert_int_equal(form_decode(&fx->a, body, n, nf, &f, NULL, 0), 0);
	n = 0;
	for (size_t i = nf; i-- > 0;)
		n += util_fmt(rev + n, cap - n, "%sk%03zu=%zu", i + 1 < nf ? "&" : "", i, i % 7);
	assert_int_equal(form_decode(&fx->a, rev, n, nf, &r, NULL, 0), 0);
	assert_int_equal(f.n, nf);
	sig_twilio_sign(TOKEN, iov(URL), &f, a);
	sig_twilio_sign(TOKEN, iov(URL), &r, b);
	assert_string_equal(a, b);
	assert_string_equal(a, "0x03zaiq3s1/Gt0ejkH5g0bY7es=");
	assert_int_equal(verify1(fx, TOKEN, BASE, TARGET, &r, "", a), 0);
	free(body);
	free(rev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_sign_vectors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_verify_vectors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ports, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_userinfo_and_ipv6, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_special_characters, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_repeated_keys, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_utf16_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_utf16_order_long_prefix, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_body_sha256, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_token_and_rotation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tampering, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_signature_header, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_err_has_no_secret, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_large_form, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
