/* SPDX-License-Identifier: MIT */
/*
 * Request signature schemes, one function per scheme, exactly as the
 * providers compute them.  Several providers share a scheme (HMAC JWTs,
 * Standard Webhooks), so schemes live here and provider files call them.
 * Every comparison is constant time; no secret is ever written to err.
 * Pure functions; any thread.
 */
#ifndef DLRD_SIG_H
#define DLRD_SIG_H

#include <stdbool.h>
#include <stddef.h>
#include "form.h"
#include "util.h"

/*
 * Twilio X-Twilio-Signature: base64(HMAC-SHA1(auth_token, url + params)),
 * where url is the URL Twilio requested (public_url + raw request-target)
 * and params is every POST parameter sorted by name (UTF-16 code unit order,
 * as JavaScript sorts), each emitted as name+value; a repeated name has its
 * values de-duplicated and sorted, each emitted as name+value.
 *
 * JSON bodies: when the query string carries bodySHA256, the HMAC covers the
 * URL alone and the lower-case hex SHA-256 of the raw body must equal the
 * bodySHA256 value.
 *
 * As Twilio's validator does, the URL is tried without and with the scheme's
 * default port (https :443, http :80).  A request passes when any token
 * verifies.
 *
 * tokens: ntokens NUL-terminated auth tokens.  public_url: no trailing slash.
 * target: raw request-target as received ("/path?query").  params: the
 * decoded POST form, or NULL for GET and JSON requests.  body: the raw body
 * (used for bodySHA256).  signature: the header value.
 * Returns 0, or DLRD_EAUTH with a reason (never a secret) in err.
 */
int sig_twilio_verify(char *const *tokens, size_t ntokens, const char *public_url,
                      struct iov target, const struct form *params, struct iov body,
                      struct iov signature, char *err, size_t errlen);

/* Computes the Twilio signature for url + params under token (used by tests
 * and the benchmark's request generator).  out needs 29 bytes. */
void sig_twilio_sign(const char *token, struct iov url, const struct form *params, char out[29]);

#endif
