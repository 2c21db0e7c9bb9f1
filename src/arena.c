/* SPDX-License-Identifier: MIT */
/*
 * Bump allocator for per-request memory.  The caller's first block serves
 * typical requests; heap blocks are chained for larger ones and freed
 * together by arena_fini() or arena_reset().
 */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define ARENA_ALIGN     16u
#define ARENA_MIN_BLOCK 8192u

struct arena_block {
	struct arena_block *next;
	max_align_t data[];
};

void arena_init(struct arena *a, void *buf, size_t size)
{
	a->base = buf;
	a->base_size = buf ? size : 0;
	a->cur = buf;
	a->end = buf ? (char *)buf + size : NULL;
	a->heap = NULL;
	a->total = 0;
}

void arena_fini(struct arena *a)
{
	struct arena_block *b = a->heap;
	while (b) {
		struct arena_block *next = b->next;
		free(b);
		b = next;
	}
	a->heap = NULL;
}

void arena_reset(struct arena *a)
{
	arena_fini(a);
	arena_init(a, a->base, a->base_size);
}

void *arena_alloc(struct arena *a, size_t size)
{
	uintptr_t cur = (uintptr_t)a->cur;
	uintptr_t aligned = (cur + (ARENA_ALIGN - 1)) & ~(uintptr_t)(ARENA_ALIGN - 1);

	if (size == 0)
		size = 1;
	if (a->cur && aligned <= (uintptr_t)a->end && size <= (uintptr_t)a->end - aligned) {
		a->cur = (char *)aligned + size;
		a->total += size;
		return (void *)aligned;
	}
	size_t want = size > ARENA_MIN_BLOCK ? size : ARENA_MIN_BLOCK;
	if (want > SIZE_MAX - sizeof(struct arena_block) - ARENA_ALIGN)
		abort();
	struct arena_block *b = xmalloc(sizeof(*b) + want);
	b->next = a->heap;
	a->heap = b;
	char *p = (char *)b->data;
	if (size < want) {
		/* keep the rest of a fresh block for later allocations */
		a->cur = p + size;
		a->end = p + want;
	}
	a->total += size;
	return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}
