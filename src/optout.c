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
			if (i == n || !is_space(text[i]))
				return 0;
			while (i < n && is_space(text[i]))
				i++;
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
	while (n && is_space(*text)) {
		text++;
		n--;
	}
	while (n && is_space(text[n - 1]))
		n--;
	for (size_t i = 0; i < ARRAY_LEN(keywords); i++)
		if (matches(text, n, keywords[i].word))
			return keywords[i].kind;
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
			out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
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
