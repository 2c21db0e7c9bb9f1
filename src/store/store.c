/* SPDX-License-Identifier: MIT */
/*
 * The storage interface: picks the backend by the URL scheme and forwards.
 * Backends live one per file next to this one (sqlite.c; postgresql.c next).
 */
#include "store.h"

#include <stdlib.h>

#include "store_int.h"
#include "util.h"

struct store {
	const struct store_ops *ops;
	void *be;
};

static const struct store_ops *const backends[] = {
    &store__sqlite_ops,
    &store__pg_ops,
    NULL,
};

int store_open(const struct config *cfg, struct store **out, char *err, size_t errlen)
{
	const char *url = cfg->storage_url;

	for (size_t i = 0; backends[i]; i++) {
		if (!backends[i]->accepts(url))
			continue;
		void *be = NULL;
		int rc = backends[i]->open(cfg, &be, err, errlen);
		if (rc != 0)
			return rc;
		struct store *st = xcalloc(1, sizeof(*st));
		st->ops = backends[i];
		st->be = be;
		*out = st;
		return 0;
	}
	util_fmt(err, errlen, "config: storage.url: no backend for this URL (sqlite:PATH)");
	return DLRD_ECONFIG;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	st->ops->close(st->be);
	free(st);
}

int store_apply(struct store *st, struct commit_item **items, size_t n, char *err, size_t errlen)
{
	return st->ops->apply(st->be, items, n, err, errlen);
}

int store_sync(struct store *st, bool force, char *err, size_t errlen)
{
	return st->ops->sync ? st->ops->sync(st->be, force, err, errlen) : 0;
}

void store_maintain(struct store *st)
{
	if (st->ops->maintain)
		st->ops->maintain(st->be);
}

int store_probe(struct store *st, char *err, size_t errlen)
{
	return st->ops->probe(st->be, err, errlen);
}

const char *store_backend(const struct store *st)
{
	return st->ops->name;
}

bool store_api_writes(const struct store *st)
{
	return st->ops->api_writes;
}

int store_get_message(struct store *st, struct arena *a, const char *id, struct store_message *out,
                      char *err, size_t errlen)
{
	if (!st->ops->get_message)
		return DLRD_EUNSUPP;
	return st->ops->get_message(st->be, a, id, out, err, errlen);
}

int store_get_timeline(struct store *st, struct arena *a, const char *id, bool payloads,
                       struct store_message *msg, struct store_event **events, size_t *n, char *err,
                       size_t errlen)
{
	if (!st->ops->get_timeline)
		return DLRD_EUNSUPP;
	return st->ops->get_timeline(st->be, a, id, payloads, msg, events, n, err, errlen);
}

int store_search(struct store *st, struct arena *a, const struct store_query *q,
                 struct store_message **rows, size_t *n, char *err, size_t errlen)
{
	if (!st->ops->search)
		return DLRD_EUNSUPP;
	return st->ops->search(st->be, a, q, rows, n, err, errlen);
}

int store_list_review(struct store *st, struct arena *a, const struct store_review_query *q,
                      struct store_review_item **rows, size_t *n, char *err, size_t errlen)
{
	if (!st->ops->list_review)
		return DLRD_EUNSUPP;
	return st->ops->list_review(st->be, a, q, rows, n, err, errlen);
}

int store_list_audit(struct store *st, struct arena *a, const struct store_audit_query *q,
                     struct store_audit_row **rows, size_t *n, char *err, size_t errlen)
{
	if (!st->ops->list_audit)
		return DLRD_EUNSUPP;
	return st->ops->list_audit(st->be, a, q, rows, n, err, errlen);
}

int store_stats(struct store *st, struct arena *a, const struct store_stats_query *q,
                struct store_stats_row **rows, size_t *n, char *err, size_t errlen)
{
	if (!st->ops->stats)
		return DLRD_EUNSUPP;
	return st->ops->stats(st->be, a, q, rows, n, err, errlen);
}

const char *store__stats_column(enum store_stats_group g)
{
	switch (g) {
	case STORE_STATS_PROVIDER:
		return "provider";
	case STORE_STATS_USE_CASE:
		return "use_case";
	case STORE_STATS_SENDER_IDENTITY:
		return "sender_identity";
	case STORE_STATS_TEMPLATE_KEY:
		return "template_key";
	case STORE_STATS_COUNTRY:
	default:
		return "destination_country";
	}
}
