/* arena.c - bump allocator (see arena.h). */
#include "core/arena.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

struct arena_chunk {
	struct arena_chunk *next;
	size_t size;
	size_t used;
	alignas(max_align_t) unsigned char data[];
};

void arena_init(struct arena *a, size_t chunk_size)
{
	a->head = NULL;
	a->chunk_size = chunk_size ? chunk_size : 4096;
}

void *arena_alloc(struct arena *a, size_t size)
{
	const size_t align = alignof(max_align_t);
	struct arena_chunk *c = a->head;
	size = (size + align - 1) & ~(align - 1);
	if (c == NULL || c->size - c->used < size) {
		size_t want = size > a->chunk_size ? size : a->chunk_size;
		c = malloc(sizeof(*c) + want);
		if (c == NULL)
			return NULL;
		c->size = want;
		c->used = 0;
		if (a->head != NULL && size > a->chunk_size) {
			/* A big one-off block goes behind the head so the head's
			 * free space stays usable for the small ones. */
			c->next = a->head->next;
			a->head->next = c;
			c->used = size;
			return c->data;
		}
		c->next = a->head;
		a->head = c;
	}
	void *p = c->data + c->used;
	c->used += size;
	return p;
}

void *arena_calloc(struct arena *a, size_t n, size_t size)
{
	if (size != 0 && n > (size_t)-1 / size)
		return NULL;
	void *p = arena_alloc(a, n * size);
	if (p != NULL)
		memset(p, 0, n * size);
	return p;
}

void *arena_memdup(struct arena *a, const void *p, size_t size)
{
	void *q = arena_alloc(a, size ? size : 1);
	if (q != NULL && size)
		memcpy(q, p, size);
	return q;
}

void arena_reset(struct arena *a)
{
	struct arena_chunk *c = a->head;
	if (c == NULL)
		return;
	struct arena_chunk *rest = c->next;
	while (rest != NULL) {
		struct arena_chunk *next = rest->next;
		free(rest);
		rest = next;
	}
	c->next = NULL;
	c->used = 0;
}

void arena_free(struct arena *a)
{
	while (a->head != NULL) {
		struct arena_chunk *next = a->head->next;
		free(a->head);
		a->head = next;
	}
}

static void *pb_alloc(void *ud, size_t n)
{
	return arena_alloc(ud, n ? n : 1);
}

static void pb_free(void *ud, void *p)
{
	(void)ud;
	(void)p;
}

ProtobufCAllocator arena_protobuf_allocator(struct arena *a)
{
	return (ProtobufCAllocator){pb_alloc, pb_free, a};
}
