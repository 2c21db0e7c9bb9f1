/* SPDX-License-Identifier: MIT */
/*
 * Phone numbers: E.164 validation and normalization, destination country by
 * longest-prefix match on ITU calling codes (North American area codes split
 * into their countries), masking for display, and the keyed recipient hash.
 * Pure functions over read-only tables; any thread.
 */
#ifndef DLRD_PHONE_H
#define DLRD_PHONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PHONE_E164_MAX 16 /* '+' and up to 15 digits */

/* Normalizes p[0..n) to "+<digits>" in out (PHONE_E164_MAX+1 bytes).
 * Accepts a leading '+' or none (Vonage sends digits only), and ignores
 * spaces, '-', '.', '(' and ')'.  Requires 7..15 digits in all with a '+'
 * (8..15 without) and a first digit that is not 0.  Returns 0 or DLRD_EINVAL (not a phone number,
 * e.g. an alphanumeric sender id). */
int phone_normalize(const char *p, size_t n, char out[PHONE_E164_MAX + 1]);

/* ISO 3166-1 alpha-2 country for an E.164 number ("+14155550100" -> "US",
 * "+16135550100" -> "CA", "+447700900000" -> "GB"), or NULL when the calling
 * code is unassigned or non-geographic (+800, +882, ...). */
const char *phone_country(const char *e164);

/* Whether the two bytes at cc are an upper-case country code: one ISO
 * 3166-1 assigns officially, or a region phone_country() may return (XK
 * Kosovo, AC Ascension, TA Tristan da Cunha).  "UK" and "ZZ" are not. */
bool phone_country_known(const char cc[2]);

/* The calling code of an E.164 number ("1", "44", "1264" is not one: "1").
 * Writes it to out (4 bytes) and returns its length, or 0 when unknown. */
size_t phone_calling_code(const char *e164, char out[4]);

/* Masks for display: country calling code and the last 2 digits
 * ("+447700900123" -> "+44********23").  out needs PHONE_E164_MAX+1 bytes. */
void phone_mask(const char *e164, char out[PHONE_E164_MAX + 1]);

/* Hex HMAC-SHA256 of the E.164 number under key; out needs 65 bytes. */
void phone_hash(const uint8_t *key, size_t keylen, const char *e164, char out[65]);

#endif
