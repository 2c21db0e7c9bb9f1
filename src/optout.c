/* SPDX-License-Identifier: MIT */
/*
 * Opt-out keyword recognition (see optout.h).  The lists follow the CTIA
 * short-code handbook, Twilio's default Advanced Opt-Out keywords and
 * Telnyx's default opt-out keywords (which add the two-word "STOP ALL").
 */
#include "optout.h"

#include <string.h>

#include "util.h"

static const struct {
	const char *word;
	enum optout_kind kind;
} keywords[] = {
    {"STOP", KW_OPT_OUT},        {"STOPALL", KW_OPT_OUT}, {"STOP ALL", KW_OPT_OUT},
    {"UNSUBSCRIBE", KW_OPT_OUT}, {"CANCEL", KW_OPT_OUT},  {"END", KW_OPT_OUT},
    {"QUIT", KW_OPT_OUT},        {"OPTOUT", KW_OPT_OUT},  {"REVOKE", KW_OPT_OUT},
    {"START", KW_OPT_IN},        {"UNSTOP", KW_OPT_IN},   {"YES", KW_OPT_IN},
    {"HELP", KW_HELP},           {"INFO", KW_HELP},
};

/* The phone-number test of optout_sender_key() (see optout.h). */
#define SENDER_PHONE_MIN_DIGITS 6
#define SENDER_PHONE_MAX_DIGITS 15

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* The length of the white space character that starts the n bytes at p
 * (space_at) or ends them (space_before), 0 when there is none: ASCII
 * white space, and in UTF-8 the no-break and typographic spaces (Unicode's
 * Zs), NEL, the line and paragraph separators, the zero-width space and the
 * byte-order mark, which keyboards, input methods and UCS-2 gateways leave
 * around a word the user sees as just "STOP". */
static const char *const unicode_spaces[] = {
    "\xc2\x85",     "\xc2\xa0",     "\xe1\x9a\x80", "\xe2\x80\x80", "\xe2\x80\x81", "\xe2\x80\x82",
    "\xe2\x80\x83", "\xe2\x80\x84", "\xe2\x80\x85", "\xe2\x80\x86", "\xe2\x80\x87", "\xe2\x80\x88",
    "\xe2\x80\x89", "\xe2\x80\x8a", "\xe2\x80\x8b", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xaf",
    "\xe2\x81\x9f", "\xe3\x80\x80", "\xef\xbb\xbf",
};

static size_t space_at(const char *p, size_t n)
{
	if (n && is_space(p[0]))
		return 1;
	for (size_t i = 0; i < ARRAY_LEN(unicode_spaces); i++) {
		size_t l = strlen(unicode_spaces[i]);
		if (l <= n && memcmp(p, unicode_spaces[i], l) == 0)
			return l;
	}
	return 0;
}

static size_t space_before(const char *p, size_t n)
{
	if (n && is_space(p[n - 1]))
		return 1;
	for (size_t i = 0; i < ARRAY_LEN(unicode_spaces); i++) {
		size_t l = strlen(unicode_spaces[i]);
		if (l <= n && memcmp(p + n - l, unicode_spaces[i], l) == 0)
			return l;
	}
	return 0;
}

static char tolower_ascii(char c)
{
	return (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
}

/* Whether the n bytes at text (trimmed) are the keyword word: ASCII letters
 * compared case-insensitively, and a space in the keyword standing for any
 * run of white space in the text ("STOP ALL" = "stop \t all"). */
static int matches(const char *text, size_t n, const char *word)
{
	size_t i = 0;

	for (; *word; word++) {
		if (*word == ' ') {
			size_t l = space_at(text + i, n - i);
			if (l == 0)
				return 0;
			do
				i += l;
			while ((l = space_at(text + i, n - i)) != 0);
			continue;
		}
		if (i == n || tolower_ascii(text[i]) != tolower_ascii(*word))
			return 0;
		i++;
	}
	return i == n;
}

enum optout_kind optout_classify(const char *text, size_t n)
{
	if (!text)
		return KW_NONE;
	for (size_t l; (l = space_at(text, n)) != 0; n -= l)
		text += l;
	for (size_t l; (l = space_before(text, n)) != 0;)
		n -= l;
	for (size_t i = 0; i < ARRAY_LEN(keywords); i++)
		if (matches(text, n, keywords[i].word))
			return keywords[i].kind;
	return KW_NONE;
}

enum optout_kind optout_verdict(const char *v, const char *const names[3],
                                int (*cmp)(const char *, const char *))
{
	static const enum optout_kind kinds[3] = {KW_OPT_OUT, KW_OPT_IN, KW_HELP};

	for (size_t i = 0; v && i < 3; i++)
		if (cmp(v, names[i]) == 0)
			return kinds[i];
	return KW_NONE;
}

const char *optout_kind_name(enum optout_kind k)
{
	switch (k) {
	case KW_OPT_OUT:
		return "opt_out";
	case KW_OPT_IN:
		return "opt_in";
	case KW_HELP:
		return "help";
	case KW_NONE:
		break;
	}
	return "none";
}

char *optout_keyword_word(const char *text, size_t n, char out[OPTOUT_WORD_MAX])
{
	size_t wl = 0;

	for (size_t i = 0; i < n && wl + 1 < OPTOUT_WORD_MAX; i++)
		if ((text[i] >= 'a' && text[i] <= 'z') || (text[i] >= 'A' && text[i] <= 'Z'))
			out[wl++] = (char)(text[i] >= 'a' ? text[i] - ('a' - 'A') : text[i]);
	out[wl] = '\0';
	return out;
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

size_t optout_sender_key(const char *sender, size_t n, char *out)
{
	size_t digits = 0, o = 0, i = 0;
	int phone = 1;

	if (!sender)
		n = 0;
	while (n && is_blank(*sender)) {
		sender++;
		n--;
	}
	while (n && is_blank(sender[n - 1]))
		n--;
	if (n && sender[0] == '+')
		i = 1;
	for (; i < n; i++) {
		char c = sender[i];
		if (is_digit(c))
			digits++;
		else if (c != ' ' && c != '-' && c != '.' && c != '(' && c != ')')
			phone = 0;
	}
	phone = phone && digits >= SENDER_PHONE_MIN_DIGITS && digits <= SENDER_PHONE_MAX_DIGITS;
	for (i = 0; i < n; i++) {
		char c = sender[i];
		if (phone) {
			if (is_digit(c))
				out[o++] = c;
		} else {
			out[o++] = tolower_ascii(c);
		}
	}
	out[o] = '\0';
	return o;
}

char *optout_sender_key_dup(const char *sender)
{
	size_t n = sender ? strlen(sender) : 0;
	char *out = xmalloc(n + 1);
	optout_sender_key(sender, n, out);
	return out;
}
