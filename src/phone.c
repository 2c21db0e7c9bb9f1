/* SPDX-License-Identifier: MIT */
/*
 * Phone numbers (see phone.h): E.164 normalization of what providers send,
 * destination country from the calling-code tables in phone_table.c, masking
 * for display and the keyed recipient hash.
 *
 * The country lookup is two binary searches over static arrays and allocates
 * nothing.  First the calling code: the codes are prefix-free, so of the
 * number's first one, two and three digits at most one is a code.  Then, for
 * a code that regions share, the leading digits of the national number within
 * that code's slice of phone__subs: the slice is sorted and prefix-free, so
 * the only entry that can begin the national number is the greatest one not
 * above it.  A number no entry matches belongs to the code's main region.
 *
 * The functions that take an E.164 string want what phone_normalize() writes:
 * '+' and 1..15 digits, the first not 0, NUL-terminated within
 * PHONE_E164_MAX+1 bytes (they read no further).  Anything else is unknown:
 * no country, no calling code, an empty mask.
 *
 * Pure functions over read-only tables; any thread.
 */
#include "phone.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include "crypto.h"
#include "phone_table.h"
#include "util.h"

/* Raw input longer than this is not a phone number: 15 digits, a separator
 * after each and a '+' fit with room to spare. */
#define PHONE_INPUT_MAX 40
/* The shortest E.164 numbers have 7 digits (Niue +683 4xxx, Tokelau +690
 * xxxx).  Without a '+' (Vonage's form), 7 digits are more likely a
 * national number or a long short code than one of those: 8 then. */
#define PHONE_DIGITS_MIN      7
#define PHONE_DIGITS_MIN_BARE 8
#define PHONE_DIGITS_MAX      (PHONE_E164_MAX - 1)

/* phone_mask() shows the last MASK_SHOW digits only when the national number
 * has at least MASK_MIN_NATIONAL digits, so that more stay hidden than show. */
#define MASK_SHOW         2
#define MASK_MIN_NATIONAL 6

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_separator(char c)
{
	return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')';
}

int phone_normalize(const char *p, size_t n, char out[PHONE_E164_MAX + 1])
{
	char buf[PHONE_E164_MAX + 1];
	size_t d = 0;
	bool plus = false;

	if (!p || n == 0 || n > PHONE_INPUT_MAX)
		return DLRD_EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (is_digit(c)) {
			if (d == PHONE_DIGITS_MAX || (d == 0 && c == '0'))
				return DLRD_EINVAL;
			buf[1 + d++] = c;
		} else if (c == '+' && !plus && d == 0) {
			plus = true;
		} else if (!is_separator(c)) {
			return DLRD_EINVAL;
		}
	}
	if (d < (plus ? PHONE_DIGITS_MIN : PHONE_DIGITS_MIN_BARE))
		return DLRD_EINVAL;
	buf[0] = '+';
	buf[1 + d] = '\0';
	memcpy(out, buf, d + 2);
	return 0;
}

/* The number of digits of a well-formed E.164 string, or 0. */
static size_t e164_len(const char *e164)
{
	size_t n;

	if (!e164 || e164[0] != '+')
		return 0;
	n = strnlen(e164 + 1, PHONE_DIGITS_MAX + 1);
	if (n == 0 || n > PHONE_DIGITS_MAX || e164[1] == '0')
		return 0;
	for (size_t i = 1; i <= n; i++)
		if (!is_digit(e164[i]))
			return 0;
	return n;
}

/* The calling code that begins the n digits d (d[0] is not '0'), or NULL. */
static const struct phone__cc *find_code(const char *d, size_t n)
{
	unsigned code = 0;

	for (size_t k = 0; k < 3 && k < n; k++) {
		size_t lo = 0, hi = phone__nccs;

		code = code * 10 + (unsigned)(d[k] - '0');
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (phone__ccs[mid].code < code)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < phone__nccs && phone__ccs[lo].code == code)
			return &phone__ccs[lo];
	}
	return NULL;
}

static size_t code_len(const struct phone__cc *c)
{
	return c->code >= 100 ? 3 : c->code >= 10 ? 2 : 1;
}

/* The region for national number nat (NUL-terminated digits) under code c. */
static const char *find_region(const struct phone__cc *c, const char *nat)
{
	const struct phone__sub *s = phone__subs + c->sub;
	size_t lo = 0, hi = c->nsub;

	/* lo ends one past the greatest entry <= nat */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(s[mid].digits, nat) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0) {
		const struct phone__sub *e = &s[lo - 1];
		if (strncmp(e->digits, nat, strlen(e->digits)) == 0)
			return e->region;
	}
	return c->region[0] ? c->region : NULL;
}

const char *phone_country(const char *e164)
{
	size_t n = e164_len(e164);
	const struct phone__cc *c = n ? find_code(e164 + 1, n) : NULL;

	if (!c)
		return NULL;
	return find_region(c, e164 + 1 + code_len(c));
}

/* ISO 3166-1 alpha-2, officially assigned (iso-codes 4.x, 249 codes), and
 * the three codes outside it that the calling-code table uses; sorted. */
static const char known_countries[] = "ACADAEAFAGAIALAMAOAQARASATAUAWAXAZBABBBDBEBFBGBH"
                                      "BIBJBLBMBNBOBQBRBSBTBVBWBYBZCACCCDCFCGCHCICKCLCM"
                                      "CNCOCRCUCVCWCXCYCZDEDJDKDMDODZECEEEGEHERESETFIFJ"
                                      "FKFMFOFRGAGBGDGEGFGGGHGIGLGMGNGPGQGRGSGTGUGWGYHK"
                                      "HMHNHRHTHUIDIEILIMINIOIQIRISITJEJMJOJPKEKGKHKIKM"
                                      "KNKPKRKWKYKZLALBLCLILKLRLSLTLULVLYMAMCMDMEMFMGMH"
                                      "MKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZNANCNENFNGNINLNO"
                                      "NPNRNUNZOMPAPEPFPGPHPKPLPMPNPRPSPTPWPYQARERORSRU"
                                      "RWSASBSCSDSESGSHSISJSKSLSMSNSOSRSSSTSVSXSYSZTATC"
                                      "TDTFTGTHTJTKTLTMTNTOTRTTTVTWTZUAUGUMUSUYUZVAVCVE"
                                      "VGVIVNVUWFWSXKYEYTZAZMZW";

bool phone_country_known(const char cc[2])
{
	size_t lo = 0, hi = (sizeof(known_countries) - 1) / 2;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(known_countries + 2 * mid, cc, 2);
		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

size_t phone_calling_code(const char *e164, char out[4])
{
	size_t n = e164_len(e164);
	const struct phone__cc *c = n ? find_code(e164 + 1, n) : NULL;
	size_t len;

	out[0] = '\0';
	if (!c)
		return 0;
	len = code_len(c);
	memcpy(out, e164 + 1, len);
	out[len] = '\0';
	return len;
}

/* An unknown calling code shows nothing: all digits count as national. */
void phone_mask(const char *e164, char out[PHONE_E164_MAX + 1])
{
	size_t n = e164_len(e164);
	const struct phone__cc *c = n ? find_code(e164 + 1, n) : NULL;
	size_t keep = c ? code_len(c) : 0;
	size_t show_from = n - keep >= MASK_MIN_NATIONAL ? n - MASK_SHOW : n;

	out[0] = '\0';
	if (!n)
		return;
	out[0] = '+';
	for (size_t i = 0; i < n; i++)
		out[1 + i] = i < keep || i >= show_from ? e164[1 + i] : '*';
	out[1 + n] = '\0';
}

void phone_hash(const uint8_t *key, size_t keylen, const char *e164, char out[65])
{
	uint8_t mac[CRYPTO_SHA256_LEN];
	struct crypto_piece piece;

	assert(e164);
	piece.p = e164;
	piece.n = strlen(e164);
	crypto_hmac(CRYPTO_SHA256, key, keylen, &piece, 1, mac);
	crypto_hex(mac, sizeof(mac), out);
}
