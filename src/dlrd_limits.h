/* SPDX-License-Identifier: MIT */
/*
 * Every hard limit dlrd applies to outside input lives here, so a reader can
 * see at one glance how much any peer can make us hold.  Limits that an
 * operator may tune have a config setting whose default is the value here.
 */
#ifndef DLRD_DLRD_LIMITS_H
#define DLRD_DLRD_LIMITS_H

#define LIM_BODY_BYTES_DEFAULT 65536u /* [server] max_body_bytes */
#define LIM_BODY_BYTES_MAX     (16u << 20)
#define LIM_TARGET_BYTES       8192u  /* request-target (path + query) */
#define LIM_HEADER_BYTES       16384u /* all request headers together */
#define LIM_HEADERS            100u   /* number of request headers */
#define LIM_FORM_FIELDS        256u   /* fields in one form body or query */
#define LIM_FIELD_BYTES        16384u /* one decoded form name or value */
#define LIM_JSON_DEPTH         32u    /* nesting of JSON bodies */
/* JSON values in a text parsed before its signature is checked: the SNS
 * envelope (a dozen string members and at most 10 MessageAttributes of
 * three values each) and a JWT's header (alg, typ, kid) */
#define LIM_JSON_UNAUTH_VALUES 256u
#define LIM_EVENTS_PER_REQUEST 1000u /* events one callback may carry */
#define LIM_ID_BYTES           256u  /* provider message / event ids */
#define LIM_STATUS_BYTES       128u  /* raw provider status text */
#define LIM_SECRETS            16u   /* secrets per provider (rotation) */

#define LIM_CONNECTIONS_DEFAULT 1024u /* [server] max_connections */
/* Its maximum: at most 125 connections per HTTP thread (http.c,
 * threads_for_connections()), and at most 256 threads. */
#define LIM_CONNECTIONS_MAX    30000u
#define LIM_REQUEST_MS_DEFAULT 10000u /* [server] request_timeout_ms: whole request */
#define LIM_IDLE_S_DEFAULT     30u    /* [server] idle_timeout_s: keep-alive idle */
/* [storage] queue_capacity: parked requests.  By default 3/4 of the
 * connections, so that with storage stalled the queue fills (503 with
 * Retry-After) while connections are left for /healthz, /metrics and the
 * answers themselves. */
#define LIM_QUEUE_DEFAULT(conns) ((conns) - (conns) / 4u)
#define LIM_BATCH_DEFAULT        1024u /* [storage] max_batch: requests per transaction */
/* [storage] max_batch_events: events per transaction.  One request may
 * carry LIM_EVENTS_PER_REQUEST events (Infobip, Sinch and Telnyx batch
 * them), so max_batch such requests would make one transaction of a million
 * events: on PostgreSQL (about 0.3 ms per event) far past its statement
 * timeout, failing every callback in the batch, again on each retry. */
#define LIM_BATCH_EVENTS_DEFAULT 8192u

#endif
