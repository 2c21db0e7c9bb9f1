/* SPDX-License-Identifier: MIT */
/*
 * Phone numbers (see phone.h): E.164 normalization, destination country by
 * longest-prefix match on ITU-T calling codes (North American area codes
 * split into their countries), masking, and the keyed recipient hash.
 */
#include "phone.h"

#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "util.h"

int phone_normalize(const char *p, size_t n, char out[PHONE_E164_MAX + 1])
{
	size_t d = 0;
	size_t i = 0;

	if (!p || n == 0 || n > 32)
		return DLRD_EINVAL;
	if (p[0] == '+')
		i = 1;
	out[0] = '+';
	for (; i < n; i++) {
		char c = p[i];
		if (c >= '0' && c <= '9') {
			if (d == 15)
				return DLRD_EINVAL;
			out[1 + d++] = c;
		} else if (c != ' ' && c != '-' && c != '.' && c != '(' && c != ')') {
			return DLRD_EINVAL;
		}
	}
	if (d < 8 || out[1] == '0')
		return DLRD_EINVAL;
	out[1 + d] = '\0';
	return 0;
}

/* Calling code (or calling code + leading digits) -> region, sorted by
 * prefix.  Where a code is shared, the main region comes first and the
 * longer prefixes of the other regions win by longest match. */
static const struct {
	const char *prefix;
	const char *cc;
} codes[] = {
	{"1", "US"},	{"20", "EG"},	{"211", "SS"},	{"212", "MA"},	{"213", "DZ"},
	{"216", "TN"},	{"218", "LY"},	{"220", "GM"},	{"221", "SN"},	{"222", "MR"},
	{"223", "ML"},	{"224", "GN"},	{"225", "CI"},	{"226", "BF"},	{"227", "NE"},
	{"228", "TG"},	{"229", "BJ"},	{"230", "MU"},	{"231", "LR"},	{"232", "SL"},
	{"233", "GH"},	{"234", "NG"},	{"235", "TD"},	{"236", "CF"},	{"237", "CM"},
	{"238", "CV"},	{"239", "ST"},	{"240", "GQ"},	{"241", "GA"},	{"242", "CG"},
	{"243", "CD"},	{"244", "AO"},	{"245", "GW"},	{"246", "IO"},	{"247", "AC"},
	{"248", "SC"},	{"249", "SD"},	{"250", "RW"},	{"251", "ET"},	{"252", "SO"},
	{"253", "DJ"},	{"254", "KE"},	{"255", "TZ"},	{"256", "UG"},	{"257", "BI"},
	{"258", "MZ"},	{"260", "ZM"},	{"261", "MG"},	{"262", "RE"},	{"262269", "YT"},
	{"262639", "YT"}, {"263", "ZW"}, {"264", "NA"},	{"265", "MW"},	{"266", "LS"},
	{"267", "BW"},	{"268", "SZ"},	{"269", "KM"},	{"27", "ZA"},	{"290", "SH"},
	{"291", "ER"},	{"297", "AW"},	{"298", "FO"},	{"299", "GL"},	{"30", "GR"},
	{"31", "NL"},	{"32", "BE"},	{"33", "FR"},	{"34", "ES"},	{"350", "GI"},
	{"351", "PT"},	{"352", "LU"},	{"353", "IE"},	{"354", "IS"},	{"355", "AL"},
	{"356", "MT"},	{"357", "CY"},	{"358", "FI"},	{"35818", "AX"}, {"359", "BG"},
	{"36", "HU"},	{"370", "LT"},	{"371", "LV"},	{"372", "EE"},	{"373", "MD"},
	{"374", "AM"},	{"375", "BY"},	{"376", "AD"},	{"377", "MC"},	{"378", "SM"},
	{"380", "UA"},	{"381", "RS"},	{"382", "ME"},	{"383", "XK"},	{"385", "HR"},
	{"386", "SI"},	{"387", "BA"},	{"389", "MK"},	{"39", "IT"},	{"40", "RO"},
	{"41", "CH"},	{"420", "CZ"},	{"421", "SK"},	{"423", "LI"},	{"43", "AT"},
	{"44", "GB"},	{"441481", "GG"}, {"441534", "JE"}, {"441624", "IM"}, {"447781", "GG"},
	{"447797", "JE"}, {"447624", "IM"}, {"45", "DK"}, {"46", "SE"},	{"47", "NO"},
	{"4779", "SJ"}, {"48", "PL"},	{"49", "DE"},	{"500", "FK"},	{"501", "BZ"},
	{"502", "GT"},	{"503", "SV"},	{"504", "HN"},	{"505", "NI"},	{"506", "CR"},
	{"507", "PA"},	{"508", "PM"},	{"509", "HT"},	{"51", "PE"},	{"52", "MX"},
	{"53", "CU"},	{"54", "AR"},	{"55", "BR"},	{"56", "CL"},	{"57", "CO"},
	{"58", "VE"},	{"590", "GP"},	{"591", "BO"},	{"592", "GY"},	{"593", "EC"},
	{"594", "GF"},	{"595", "PY"},	{"596", "MQ"},	{"597", "SR"},	{"598", "UY"},
	{"599", "CW"},	{"5997", "BQ"}, {"60", "MY"},	{"61", "AU"},	{"62", "ID"},
	{"63", "PH"},	{"64", "NZ"},	{"65", "SG"},	{"66", "TH"},	{"670", "TL"},
	{"672", "NF"},	{"673", "BN"},	{"674", "NR"},	{"675", "PG"},	{"676", "TO"},
	{"677", "SB"},	{"678", "VU"},	{"679", "FJ"},	{"680", "PW"},	{"681", "WF"},
	{"682", "CK"},	{"683", "NU"},	{"685", "WS"},	{"686", "KI"},	{"687", "NC"},
	{"688", "TV"},	{"689", "PF"},	{"690", "TK"},	{"691", "FM"},	{"692", "MH"},
	{"7", "RU"},	{"76", "KZ"},	{"77", "KZ"},	{"81", "JP"},	{"82", "KR"},
	{"84", "VN"},	{"850", "KP"},	{"852", "HK"},	{"853", "MO"},	{"855", "KH"},
	{"856", "LA"},	{"86", "CN"},	{"880", "BD"},	{"886", "TW"},	{"90", "TR"},
	{"91", "IN"},	{"92", "PK"},	{"93", "AF"},	{"94", "LK"},	{"95", "MM"},
	{"960", "MV"},	{"961", "LB"},	{"962", "JO"},	{"963", "SY"},	{"964", "IQ"},
	{"965", "KW"},	{"966", "SA"},	{"967", "YE"},	{"968", "OM"},	{"970", "PS"},
	{"971", "AE"},	{"972", "IL"},	{"973", "BH"},	{"974", "QA"},	{"975", "BT"},
	{"976", "MN"},	{"977", "NP"},	{"98", "IR"},	{"992", "TJ"},	{"993", "TM"},
	{"994", "AZ"},	{"995", "GE"},	{"996", "KG"},	{"998", "UZ"},
};

/* NANP area codes outside the US (Canada and the Caribbean / Pacific
 * members), by area code. */
static const struct {
	unsigned short npa;
	const char *cc;
} nanp[] = {
	{204, "CA"}, {226, "CA"}, {236, "CA"}, {242, "BS"}, {246, "BB"}, {249, "CA"},
	{250, "CA"}, {257, "CA"}, {263, "CA"}, {264, "AI"}, {268, "AG"}, {284, "VG"},
	{289, "CA"}, {306, "CA"}, {340, "VI"}, {343, "CA"}, {345, "KY"}, {354, "CA"},
	{365, "CA"}, {367, "CA"}, {368, "CA"}, {382, "CA"}, {403, "CA"}, {416, "CA"},
	{418, "CA"}, {428, "CA"}, {431, "CA"}, {437, "CA"}, {438, "CA"}, {441, "BM"},
	{450, "CA"}, {460, "CA"}, {468, "CA"}, {473, "GD"}, {474, "CA"}, {506, "CA"},
	{514, "CA"}, {519, "CA"}, {548, "CA"}, {579, "CA"}, {581, "CA"}, {584, "CA"},
	{587, "CA"}, {604, "CA"}, {613, "CA"}, {639, "CA"}, {647, "CA"}, {649, "TC"},
	{658, "JM"}, {664, "MS"}, {670, "MP"}, {671, "GU"}, {672, "CA"}, {683, "CA"},
	{684, "AS"}, {705, "CA"}, {709, "CA"}, {721, "SX"}, {742, "CA"}, {753, "CA"},
	{758, "LC"}, {767, "DM"}, {778, "CA"}, {780, "CA"}, {782, "CA"}, {784, "VC"},
	{787, "PR"}, {807, "CA"}, {809, "DO"}, {819, "CA"}, {825, "CA"}, {829, "DO"},
	{849, "DO"}, {867, "CA"}, {868, "TT"}, {869, "KN"}, {873, "CA"}, {876, "JM"},
	{879, "CA"}, {902, "CA"}, {905, "CA"}, {939, "PR"},
};

static int nanp_cmp(const void *key, const void *elem)
{
	unsigned k = *(const unsigned *)key;
	unsigned e = ((const unsigned short *)elem)[0];
	return (k > e) - (k < e);
}

const char *phone_country(const char *e164)
{
	const char *digits = e164 && e164[0] == '+' ? e164 + 1 : e164;
	const char *best = NULL;
	size_t best_len = 0;

	if (!digits || !*digits)
		return NULL;
	if (digits[0] == '1') {
		size_t n = strlen(digits);
		if (n < 4)
			return "US";
		unsigned npa = (unsigned)(digits[1] - '0') * 100 + (unsigned)(digits[2] - '0') * 10 +
			       (unsigned)(digits[3] - '0');
		const void *hit = bsearch(&npa, nanp, ARRAY_LEN(nanp), sizeof(nanp[0]), nanp_cmp);
		return hit ? ((const __typeof__(nanp[0]) *)hit)->cc : "US";
	}
	for (size_t i = 0; i < ARRAY_LEN(codes); i++) {
		size_t pl = strlen(codes[i].prefix);
		if (pl > best_len && strncmp(digits, codes[i].prefix, pl) == 0) {
			best = codes[i].cc;
			best_len = pl;
		}
	}
	return best;
}

size_t phone_calling_code(const char *e164, char out[4])
{
	const char *digits = e164 && e164[0] == '+' ? e164 + 1 : e164;
	size_t best = 0;

	out[0] = '\0';
	if (!digits)
		return 0;
	for (size_t i = 0; i < ARRAY_LEN(codes); i++) {
		size_t pl = strlen(codes[i].prefix);
		if (pl <= 3 && pl > best && strncmp(digits, codes[i].prefix, pl) == 0)
			best = pl;
	}
	memcpy(out, digits, best);
	out[best] = '\0';
	return best;
}

void phone_mask(const char *e164, char out[PHONE_E164_MAX + 1])
{
	char cc[4];
	size_t ccl = phone_calling_code(e164, cc);
	const char *digits = e164[0] == '+' ? e164 + 1 : e164;
	size_t n = strlen(digits), o = 0;

	if (n > PHONE_E164_MAX - 1)
		n = PHONE_E164_MAX - 1;
	out[o++] = '+';
	for (size_t i = 0; i < n; i++) {
		bool keep = i < ccl || (n - i <= 2 && n - ccl > 4);
		out[o++] = keep ? digits[i] : '*';
	}
	out[o] = '\0';
}

void phone_hash(const uint8_t *key, size_t keylen, const char *e164, char out[65])
{
	uint8_t mac[CRYPTO_SHA256_LEN];
	struct crypto_piece piece = {e164, strlen(e164)};
	crypto_hmac(CRYPTO_SHA256, key, keylen, &piece, 1, mac);
	crypto_hex(mac, sizeof(mac), out);
}
