/* arena.h - a bump allocator for per-request scratch memory.
 *
 * Response messages are built from many small pieces (KeyValue structs,
 * pointer arrays) that all die together once the response is packed; an
 * arena makes that one free instead of hundreds. Not thread-safe: one arena
 * belongs to one request at a time. */
#ifndef BOLLARD_CORE_ARENA_H
#define BOLLARD_CORE_ARENA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

struct arena_chunk;

struct arena {
	struct arena_chunk *head; /* newest chunk first */
	size_t chunk_size;        /* default size of new chunks */
};

/* Initialise an empty arena; nothing is allocated until the first alloc. */
void arena_init(struct arena *a, size_t chunk_size);

/* Allocate size bytes aligned for any type; NULL only when malloc fails. */
void *arena_alloc(struct arena *a, size_t size);

/* Like arena_alloc, zero-filled. */
void *arena_calloc(struct arena *a, size_t n, size_t size);

/* Copy size bytes into the arena. */
void *arena_memdup(struct arena *a, const void *p, size_t size);

/* Free all chunks but the first, and make the arena empty for reuse. */
void arena_reset(struct arena *a);

/* A protobuf-c allocator over a: unpacked messages live in the arena and
 * go with it (its free does nothing). */
ProtobufCAllocator arena_protobuf_allocator(struct arena *a);

/* Free everything. The arena may be initialised again afterwards. */
void arena_free(struct arena *a);

#endif
