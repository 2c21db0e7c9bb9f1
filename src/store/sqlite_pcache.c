/* SPDX-License-Identifier: MIT */
/*
 * A thin wrapper around SQLite's own page cache (pcache1) that skips the
 * truncations that cannot drop anything.
 *
 * Why: when a b-tree page splits, balance_nonroot() reorders the new pages
 * by moving one of them to a temporary page number for a moment
 * (sqlite3PagerRekey()).  pcache1 remembers the largest key it has ever
 * held (iMaxKey) and only forgets it in xTruncate().  The pager truncates
 * the cache to the database size at every commit, and when the remembered
 * key lies far beyond it, as the temporary number does while the database is
 * smaller than 1 GiB (it is the page past the lock byte), pcache1 walks its
 * whole hash table to find nothing to drop: ~13% of the writer thread under
 * bench/ (found with a gdb watchpoint on iMaxKey).
 *
 * What: every method passes straight through to pcache1, except that the
 * wrapper keeps its own, exact enough account of which page numbers may be
 * in the cache, and xTruncate() is passed on only when one of them is at or
 * past the limit.  The account may name pages that are gone (pcache1
 * recycles pages without telling), never miss one that is there:
 *   - max_fetched: the largest key xFetch() returned a page for since the
 *     last truncation passed on (after it, every key left is below its
 *     limit);
 *   - moved[]: pages xRekey() moved past max_fetched, with their keys,
 *     forgotten when they move again, are discarded, or are truncated.  When
 *     it is full, max_fetched grows instead (correct, only slower).
 * Each cache belongs to one connection and SQLite calls it under that
 * connection's mutex, so the account needs no lock of its own.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "sqlite_int.h"

#define MOVED_MAX 8

struct wcache {
	sqlite3_pcache *inner;
	unsigned max_fetched;
	unsigned n_moved;
	struct {
		sqlite3_pcache_page *page;
		unsigned key;
	} moved[MOVED_MAX];
};

static sqlite3_pcache_methods2 base; /* pcache1, saved at install */
static _Atomic unsigned long n_skipped;

static int w_init(void *arg)
{
	(void)arg;
	return base.xInit ? base.xInit(base.pArg) : SQLITE_OK;
}

static void w_shutdown(void *arg)
{
	(void)arg;
	if (base.xShutdown)
		base.xShutdown(base.pArg);
}

static sqlite3_pcache *w_create(int szPage, int szExtra, int bPurgeable)
{
	struct wcache *w = sqlite3_malloc(sizeof(*w));

	if (!w)
		return NULL;
	w->inner = base.xCreate(szPage, szExtra, bPurgeable);
	if (!w->inner) {
		sqlite3_free(w);
		return NULL;
	}
	w->max_fetched = 0;
	w->n_moved = 0;
	return (sqlite3_pcache *)w;
}

static void w_cachesize(sqlite3_pcache *p, int nCachesize)
{
	base.xCachesize(((struct wcache *)p)->inner, nCachesize);
}

static int w_pagecount(sqlite3_pcache *p)
{
	return base.xPagecount(((struct wcache *)p)->inner);
}

static sqlite3_pcache_page *w_fetch(sqlite3_pcache *p, unsigned key, int createFlag)
{
	struct wcache *w = (struct wcache *)p;
	sqlite3_pcache_page *pg = base.xFetch(w->inner, key, createFlag);

	if (pg && key > w->max_fetched)
		w->max_fetched = key;
	return pg;
}

static void forget_moved(struct wcache *w, const sqlite3_pcache_page *pg)
{
	for (unsigned i = 0; i < w->n_moved; i++) {
		if (w->moved[i].page == pg) {
			w->moved[i] = w->moved[--w->n_moved];
			return;
		}
	}
}

static void w_unpin(sqlite3_pcache *p, sqlite3_pcache_page *pg, int discard)
{
	struct wcache *w = (struct wcache *)p;

	if (discard && w->n_moved)
		forget_moved(w, pg);
	base.xUnpin(w->inner, pg, discard);
}

static void w_rekey(sqlite3_pcache *p, sqlite3_pcache_page *pg, unsigned oldKey, unsigned newKey)
{
	struct wcache *w = (struct wcache *)p;

	if (w->n_moved)
		forget_moved(w, pg);
	if (newKey > w->max_fetched) {
		if (w->n_moved < MOVED_MAX) {
			w->moved[w->n_moved].page = pg;
			w->moved[w->n_moved].key = newKey;
			w->n_moved++;
		} else {
			w->max_fetched = newKey;
		}
	}
	base.xRekey(w->inner, pg, oldKey, newKey);
}

static void w_truncate(sqlite3_pcache *p, unsigned iLimit)
{
	struct wcache *w = (struct wcache *)p;
	bool needed = iLimit == 0 || w->max_fetched >= iLimit;

	for (unsigned i = 0; !needed && i < w->n_moved; i++)
		needed = w->moved[i].key >= iLimit;
	if (!needed) { /* nothing at or past iLimit can be cached */
		atomic_fetch_add_explicit(&n_skipped, 1, memory_order_relaxed);
		return;
	}
	base.xTruncate(w->inner, iLimit);
	if (iLimit == 0 || w->max_fetched >= iLimit)
		w->max_fetched = iLimit ? iLimit - 1 : 0;
	for (unsigned i = 0; i < w->n_moved;) {
		if (w->moved[i].key >= iLimit)
			w->moved[i] = w->moved[--w->n_moved];
		else
			i++;
	}
}

static void w_destroy(sqlite3_pcache *p)
{
	struct wcache *w = (struct wcache *)p;

	base.xDestroy(w->inner);
	sqlite3_free(w);
}

static void w_shrink(sqlite3_pcache *p)
{
	base.xShrink(((struct wcache *)p)->inner);
}

void store__sqlite_pcache_install(void)
{
	static const sqlite3_pcache_methods2 wrapper = {
	    .iVersion = 1,
	    .xInit = w_init,
	    .xShutdown = w_shutdown,
	    .xCreate = w_create,
	    .xCachesize = w_cachesize,
	    .xPagecount = w_pagecount,
	    .xFetch = w_fetch,
	    .xUnpin = w_unpin,
	    .xRekey = w_rekey,
	    .xTruncate = w_truncate,
	    .xDestroy = w_destroy,
	    .xShrink = w_shrink,
	};

	/* Both calls fail harmlessly once SQLite is initialized (a second
	 * store in a test); the cache installed first stays. */
	if (base.xCreate || sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &base) != SQLITE_OK)
		return;
	if (sqlite3_config(SQLITE_CONFIG_PCACHE2, &wrapper) != SQLITE_OK)
		base = (sqlite3_pcache_methods2){0};
}

unsigned long store__sqlite_pcache_skipped(void)
{
	return atomic_load(&n_skipped);
}
