/* SPDX-License-Identifier: MIT */
/*
 * The calling-code tables behind phone.c, generated into phone_table.c by
 * scripts/gen_phone_table.py from libphonenumber's metadata.  Internal to
 * phone.c and its unit test; read-only, so any thread.
 *
 * phone__ccs lists every assigned ITU-T E.164 calling code, sorted by code.
 * The codes are prefix-free (no code's digits begin another's), so the first
 * one to three digits of a number match at most one of them.  A code that
 * regions share has a slice of phone__subs: leading digits of the national
 * number (what follows the calling code), sorted and prefix-free within the
 * slice, each naming the region that takes numbers starting so; a number no
 * entry matches belongs to the code's main region.  For +1 the entries are
 * the non-US area codes.
 */
#ifndef DLRD_PHONE_TABLE_H
#define DLRD_PHONE_TABLE_H

#include <stddef.h>
#include <stdint.h>

#define PHONE__SUB_DIGITS 7 /* longest leading-digit entry */

struct phone__cc {
	uint16_t code;  /* 1..999 */
	char region[3]; /* ISO 3166-1 alpha-2 main region; "" when non-geographic */
	uint16_t sub;   /* first entry of this code in phone__subs */
	uint16_t nsub;  /* number of entries there, 0 when not shared */
};

struct phone__sub {
	char digits[PHONE__SUB_DIGITS + 1]; /* leading digits of the national number */
	char region[3];
};

extern const struct phone__cc phone__ccs[];
extern const size_t phone__nccs;
extern const struct phone__sub phone__subs[];
extern const size_t phone__nsubs;

#endif
