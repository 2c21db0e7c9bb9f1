/* SPDX-License-Identifier: MIT */
/*
 * Normalized error reasons with their notes for support (see errcat.h).
 */
#include "errcat.h"

#include <string.h>

static const struct {
	const char *name, *note, *next;
} reasons[ER__COUNT] = {
    [ER_NONE] = {"none", "No error was reported.", "Nothing to do."},
    [ER_INVALID_NUMBER] = {"invalid_number", "The number is not valid or not in service.",
                           "Ask the user to check and re-enter their number."},
    [ER_LANDLINE] = {"landline",
                     "The number cannot receive text messages (a landline or a "
                     "number without SMS).",
                     "Ask the user for a mobile number, or offer a voice call."},
    [ER_UNREACHABLE] = {"unreachable",
                        "The phone could not be reached: switched off, out of coverage "
                        "or roaming without service. This is often temporary.",
                        "Ask the user to check their signal and try again later."},
    [ER_CARRIER_FILTERED] = {"carrier_filtered",
                             "The mobile carrier filtered or blocked the message.",
                             "Check the message content and sender registration; "
                             "contact the provider if it persists."},
    [ER_SPAM_BLOCKED] = {"spam_blocked", "The message was blocked as spam or by policy.",
                         "Review the content and sending pattern with the provider."},
    [ER_OPTED_OUT] = {"opted_out", "The recipient has opted out of messages from this sender.",
                      "Do not resend; the user must text START to opt back in."},
    [ER_SENDER_NOT_REGISTERED] = {"sender_not_registered",
                                  "The sender (number, sender ID or campaign) is not "
                                  "registered for this destination.",
                                  "Complete sender registration with the provider."},
    [ER_EXPIRED] = {"expired", "The message expired before it could be delivered.",
                    "Send a new message if it is still needed."},
    [ER_OUT_OF_CREDIT] = {"out_of_credit",
                          "The provider account has no credit or reached a spending "
                          "limit.",
                          "Top up or raise the limit in the provider account."},
    [ER_RATE_LIMITED] = {"rate_limited", "The message exceeded a sending rate or queue limit.",
                         "Slow down sending and retry later."},
    [ER_PROVIDER_ERROR] = {"provider_error", "The provider or carrier had an internal error.",
                           "Retry; contact the provider if it persists."},
    [ER_UNKNOWN] = {"unknown", "The message failed for a reason the provider did not explain.",
                    "Retry once; if it fails again, check with the provider."},
    [ER_CANCELED] = {"canceled",
                     "The message was canceled before it was sent (a scheduled message "
                     "canceled through the provider's API or console).",
                     "Nothing to do; send a new message if it is still needed."},
};

const char *errcat_name(enum err_reason r)
{
	return (unsigned)r < ER__COUNT ? reasons[r].name : "unknown";
}

const char *errcat_note(enum err_reason r)
{
	return (unsigned)r < ER__COUNT ? reasons[r].note : reasons[ER_UNKNOWN].note;
}

const char *errcat_next_step(enum err_reason r)
{
	return (unsigned)r < ER__COUNT ? reasons[r].next : reasons[ER_UNKNOWN].next;
}

static bool is_failure(enum dlr_status s)
{
	return s == ST_UNDELIVERED || s == ST_FAILED || s == ST_REJECTED || s == ST_EXPIRED;
}

enum err_reason errcat_classify(const struct provider_error *table, const char *code,
                                enum dlr_status status, const char **title)
{
	*title = NULL;
	if (code && *code && strcmp(code, "0") != 0 && table) {
		for (const struct provider_error *e = table; e->code; e++) {
			if (strcmp(e->code, code) == 0) {
				*title = e->title;
				return e->reason;
			}
		}
	}
	if (!is_failure(status))
		return ER_NONE;
	return status == ST_EXPIRED ? ER_EXPIRED : ER_UNKNOWN;
}
