/* SPDX-License-Identifier: MIT */
/*
 * The HTTP front: libmicrohttpd with its internal epoll thread pool.  Reads
 * each body raw (with a hard cap), rejects conflicting framing, enforces a
 * whole-request deadline, routes /webhooks/<provider>/<kind> to the provider
 * table, parks authenticated callbacks on the commit queue (suspend) and
 * answers once their transaction is durable (resume).  Also serves /healthz
 * and /metrics.
 */
#ifndef DLRD_HTTP_H
#define DLRD_HTTP_H

#include "config.h"

struct http;
struct commitq;
struct pii_keyring;

/* Starts listening.  The provider states array is indexed like
 * provider_table (NULL for unconfigured providers).  kr (borrowed, must
 * outlive h) seals every callback's raw payload before it is queued, and
 * opens them again for the JSON API.  Returns 0 or DLRD_EIO
 * with err set (for example the port is taken). */
int http_start(const struct config *cfg, struct commitq *q, void *const *provider_states,
               const struct pii_keyring *kr, struct http **out, char *err, size_t errlen);
/* Stops accepting: new connections are closed at once (the listening socket
 * stays open until http_stop); requests in flight continue. */
void http_quiesce(struct http *h);
/* Waits (up to timeout_ms) until no request is parked, then stops every
 * thread and closes every connection. */
void http_stop(struct http *h, unsigned timeout_ms);

#endif
