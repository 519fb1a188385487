/* wire.c - protobuf messages <-> gRPC byte buffers, and the arena that
 * holds a public result's memory (struct bollard_result.internal_). */
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include "client_int.h"

/* Chunks: [next pointer][used][data...]. */
struct chunk {
	struct chunk *next;
	size_t used, size;
	_Alignas(16) unsigned char data[];
};

void *bc_arena_alloc(void **arena, size_t size)
{
	struct chunk *ch = *arena;

	size = (size + 15) & ~(size_t)15;
	if (!ch || ch->size - ch->used < size) {
		size_t cap = size > 4000 ? size : 4000;
		struct chunk *n = malloc(sizeof(*n) + cap);
		if (!n)
			abort(); /* results are small; out of memory here is fatal */
		n->next = ch;
		n->used = 0;
		n->size = cap;
		*arena = ch = n;
	}
	void *p = ch->data + ch->used;
	ch->used += size;
	memset(p, 0, size);
	return p;
}

char *bc_arena_dup(void **arena, const void *p, size_t len)
{
	char *d = bc_arena_alloc(arena, len + 1);

	if (len)
		memcpy(d, p, len);
	d[len] = 0;
	return d;
}

void bollard_result_free(struct bollard_result *r)
{
	struct chunk *ch;

	if (!r)
		return;
	ch = r->internal_;
	while (ch) {
		struct chunk *next = ch->next;
		free(ch);
		ch = next;
	}
	memset(r, 0, sizeof(*r));
}

void bc_copy_header(struct bollard_header *h, const Etcdserverpb__ResponseHeader *ph)
{
	memset(h, 0, sizeof(*h));
	if (!ph)
		return;
	h->cluster_id = ph->cluster_id;
	h->member_id = ph->member_id;
	h->revision = ph->revision;
	h->raft_term = ph->raft_term;
}

void bc_copy_kv(void **arena, struct bollard_kv *kv, const Mvccpb__KeyValue *p)
{
	kv->key = bc_arena_dup(arena, p->key.data, p->key.len);
	kv->key_len = p->key.len;
	kv->value = bc_arena_dup(arena, p->value.data, p->value.len);
	kv->value_len = p->value.len;
	kv->create_revision = p->create_revision;
	kv->mod_revision = p->mod_revision;
	kv->version = p->version;
	kv->lease = p->lease;
}

void bc_range_end(const void *key, size_t key_len, bool prefix, const void *range_end,
                  size_t range_end_len, void *buf, ProtobufCBinaryData *out)
{
	if (!prefix) {
		out->data = (uint8_t *)range_end;
		out->len = range_end ? range_end_len : 0;
		return;
	}
	/* etcd's GetPrefixRangeEnd: increment the last byte below 0xff and cut
	 * there; all 0xff (or empty): every key ("\0"). buf holds key_len
	 * bytes at least. */
	uint8_t *b = buf;
	memcpy(b, key, key_len);
	for (size_t i = key_len; i-- > 0;) {
		if (b[i] < 0xff) {
			b[i]++;
			out->data = b;
			out->len = i + 1;
			return;
		}
	}
	b[0] = 0;
	out->data = b;
	out->len = 1;
}
