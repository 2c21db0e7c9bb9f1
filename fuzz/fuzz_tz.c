/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the TZif reader (tz.c), which turns the files of
 * /usr/share/zoneinfo into the local times the API shows.  Those files are
 * not hostile, but one may be truncated or corrupt (a half-done package
 * upgrade, a bad mirror), and a recipient_timezone naming it must then be
 * an unknown zone, never a crash or a wrong time.
 *
 * src/tz.c is included so the bytes go straight to parse_tzif(), without a
 * file (tz_lookup() reads the whole file and hands it over the same way).
 *
 * Input: the bytes of a TZif file.
 *
 * Properties, for a file that parses: at instants from 1900 to 2100, every
 * local time tz_format() writes is 29 bytes of the RFC 3339 shape with an
 * offset within RFC 8536's range (-25:00 to +26:00, exclusive), and when
 * the offset is whole minutes (and under 24 hours, as RFC 3339 wants) it
 * reads back (util_parse_rfc3339) as the same instant; the offset tz_at()
 * gives is the one printed.
 */
#include "../src/tz.c"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Instants to look at: around the epoch, DST switches, the 32-bit limit. */
static const int64_t ftz_at[] = {
    -2208988800000LL, /* 1900-01-01 */
    -1LL,
    0,
    1679792399000LL, /* 2023-03-26T00:59:59Z, before the EU switch */
    1679792400000LL,
    1698541199999LL, /* 2023-10-29T00:59:59.999Z */
    1700000000123LL,
    2147483647000LL, /* 2038-01-19T03:14:07Z */
    2147483648000LL,
    4102444799999LL, /* 2099-12-31T23:59:59.999Z */
};

static bool ftz_digits(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = (uint8_t *)fz_exact((struct iov){(const char *)data, size});
	struct tz_zone *z = xcalloc(1, sizeof(*z));

	util_strlcpy(z->name, "Fuzz/Zone", sizeof(z->name));
	if (parse_tzif(copy ? copy : (const uint8_t *)"", size, z) == 0) {
		for (size_t i = 0; i < ARRAY_LEN(ftz_at); i++) {
			char buf[TZ_FMT_LEN];
			struct tz_local info, at;
			int64_t back;

			tz_format(z, ftz_at[i], buf, &info);
			tz_at(z, ftz_at[i], &at);
			FZ_CHECK(info.offset_s == at.offset_s && info.is_dst == at.is_dst);
			FZ_CHECK(info.offset_s > -25 * 3600 && info.offset_s < 26 * 3600);
			FZ_CHECK(strlen(info.abbrev) < TZ_ABBR_MAX);
			FZ_CHECK(buf[TZ_FMT_LEN - 1] == '\0' && strlen(buf) == 29);
			FZ_CHECK(
			    ftz_digits(buf, 4) && buf[4] == '-' && ftz_digits(buf + 5, 2) &&
			    buf[7] == '-' && ftz_digits(buf + 8, 2) && buf[10] == 'T' &&
			    ftz_digits(buf + 11, 2) && buf[13] == ':' && ftz_digits(buf + 14, 2) &&
			    buf[16] == ':' && ftz_digits(buf + 17, 2) && buf[19] == '.' &&
			    ftz_digits(buf + 20, 3) && (buf[23] == '+' || buf[23] == '-') &&
			    ftz_digits(buf + 24, 2) && buf[26] == ':' && ftz_digits(buf + 27, 2));
			if (info.offset_s % 60 == 0 && info.offset_s > -24 * 3600 &&
			    info.offset_s < 24 * 3600) {
				FZ_CHECK(util_parse_rfc3339(buf, 29, &back) == 0);
				FZ_CHECK(back == ftz_at[i]);
			}
		}
	}
	zone_free(z);
	free(copy);
	return 0;
}
