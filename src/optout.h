/* SPDX-License-Identifier: MIT */
/*
 * Opt-out keywords in inbound messages.  A keyword counts only as the whole
 * message, trimmed of white space (ASCII, and in UTF-8 the no-break and
 * other Unicode spaces, the zero-width space and a byte-order mark),
 * compared case-insensitively (ASCII), as carriers and Twilio's Advanced
 * Opt-Out do: "STOP" and " stop\n" opt out, "please stop texting me" does
 * not.  The one two-word keyword, Telnyx's "STOP ALL", matches with any run
 * of white space between its words.  Pure; any thread.
 */
#ifndef DLRD_OPTOUT_H
#define DLRD_OPTOUT_H

#include <stddef.h>

enum optout_kind { KW_NONE = 0, KW_OPT_OUT, KW_OPT_IN, KW_HELP };

/* Classifies an inbound message body. */
enum optout_kind optout_classify(const char *text, size_t n);
/* "none", "opt_out", "opt_in", "help" */
const char *optout_kind_name(enum optout_kind k);
/* A provider's own verdict on an inbound message, by which it blocks or
 * unblocks the sender itself (Twilio's OptOutType, Plivo's MessageIntent,
 * Telnyx's autoresponse_type): KW_OPT_OUT, KW_OPT_IN or KW_HELP when v
 * equals names[0], [1] or [2] under cmp (strcmp or strcasecmp), KW_NONE
 * otherwise and for NULL (then the body decides, optout_classify()). */
enum optout_kind optout_verdict(const char *v, const char *const names[3],
                                int (*cmp)(const char *, const char *));

/* The bytes a stored keyword may take, its NUL included. */
#define OPTOUT_WORD_MAX 32
/* The keyword as stored with an opt-out: the letters of the n bytes at
 * text, upper-cased ("stop all" -> "STOPALL"), at most OPTOUT_WORD_MAX - 1
 * of them.  A keyword is letters and white space (Unicode spaces included),
 * so this is the word without any of them, and never a cut UTF-8 sequence,
 * which PostgreSQL would refuse as text.  Both backends store it.  Returns
 * out; any thread. */
char *optout_keyword_word(const char *text, size_t n, char out[OPTOUT_WORD_MAX]);

/* The key under which an opt-out is recorded and looked up for a sender
 * identity (the number or sender id a STOP was sent to, or a send's
 * sender_identity), so that one sender written two ways is one sender:
 * providers report "our number" as "447520650000" where the app writes
 * "+447520650000".  The n bytes at sender (NULL: none) are trimmed of
 * ASCII blanks (space, tab, CR, LF); then
 *   - when they look like a phone number (an optional leading '+', then
 *     only digits, spaces, '-', '.', '(' and ')', with 6 to 15 digits), the
 *     key is the digits alone: "+44 7520 650000" -> "447520650000";
 *   - otherwise (an alphanumeric sender id, a short code of fewer than 6
 *     digits) the key is the text with ASCII letters lower-cased, so an
 *     alphanumeric id compares case-insensitively ("AcmeInc" = "ACMEINC"):
 *     for a STOP, wrongly merging two ids only withholds a message, while
 *     wrongly telling them apart sends to someone who opted out.
 * No sender, or only blanks, gives "" (the row of a STOP whose provider did
 * not say which of our numbers it reached).  The key is never longer than
 * the input; out must hold n + 1 bytes and gets the NUL-terminated key,
 * whose length is returned.  Applying it to a key gives the key back.
 * PostgreSQL has the same rule in SQL, dlrd_sender_key() (postgresql.c,
 * migration 4); test_store_pg checks the two agree.  Pure; any thread. */
size_t optout_sender_key(const char *sender, size_t n, char *out);
/* optout_sender_key() of the NUL-terminated sender (NULL: none) in a new
 * heap string, which the caller frees.  Any thread. */
char *optout_sender_key_dup(const char *sender);

#endif
