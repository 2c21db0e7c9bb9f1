/* SPDX-License-Identifier: MIT */
/*
 * Per-request memory: one arena per request, freed whole when the request
 * completes (h2o's request pool).  The first block is provided by the caller
 * (usually inline in the request struct), so a typical callback makes no heap
 * allocation at all; larger requests chain heap blocks.
 */
#ifndef DLRD_ARENA_H
#define DLRD_ARENA_H

#include <stddef.h>

struct arena_block;

struct arena {
	char *base; /* the caller's first block */
	size_t base_size;
	char *cur;                /* next free byte in the current block */
	char *end;                /* end of the current block */
	struct arena_block *heap; /* chained heap blocks, freed by arena_fini */
	size_t total;             /* bytes handed out, for limits */
};

/* Starts an arena over the caller's buffer (may be NULL/0). */
void arena_init(struct arena *a, void *buf, size_t size);
/* Frees the heap blocks; the arena may be reused after arena_init. */
void arena_fini(struct arena *a);
/* Returns size bytes aligned for any type; never NULL (aborts on OOM). */
void *arena_alloc(struct arena *a, size_t size);
/* Copies n bytes and appends a NUL. */
char *arena_strndup(struct arena *a, const char *s, size_t n);
/* Drops everything allocated, keeps the first (caller's) block. */
void arena_reset(struct arena *a);

#endif
