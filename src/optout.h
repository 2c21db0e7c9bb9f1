/* SPDX-License-Identifier: MIT */
/*
 * Opt-out keywords in inbound messages.  A keyword counts only as the whole
 * message, trimmed of white space, compared case-insensitively (ASCII), as
 * carriers and Twilio's Advanced Opt-Out do: "STOP" and " stop\n" opt out,
 * "please stop texting me" does not.  Pure; any thread.
 */
#ifndef DLRD_OPTOUT_H
#define DLRD_OPTOUT_H

#include <stddef.h>

enum optout_kind { KW_NONE = 0, KW_OPT_OUT, KW_OPT_IN, KW_HELP };

/* Classifies an inbound message body. */
enum optout_kind optout_classify(const char *text, size_t n);
/* "none", "opt_out", "opt_in", "help" */
const char *optout_kind_name(enum optout_kind k);

#endif
