/* stream.c - bidirectional gRPC streams (Watch, LeaseKeepAlive): a receive
 * loop that decodes one request message at a time and hands it to the
 * service adapter, running independently of the send side, which is the
 * per-call send queue of calls.c (one SEND_MESSAGE outstanding at a time).
 *
 * References: the receive loop holds one reference on the call while a
 * RECV_MESSAGE batch is outstanding; srv_stream_open()'s close watcher holds
 * the call's base reference. on_end runs exactly once: when the receive loop
 * stops (client half-close, cancellation, a decode error), or, for adapters
 * with on_half_close, when the call itself ends. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include "core/errors.h"
#include "core/metrics.h"
#include "server/server_int.h"

struct srv_bidi {
	struct srv_call *c;
	const struct srv_bidi_ops *ops;
	struct srv_tag on_recv;
	grpc_byte_buffer *buf;
	int ended;
};

void srv_bidi_free(struct srv_bidi *b)
{
	if (b->buf)
		grpc_byte_buffer_destroy(b->buf);
	free(b);
}

static int recv_next(struct srv_bidi *b)
{
	grpc_op op;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &b->buf;
	srv_call_ref(b->c);
	if (grpc_call_start_batch(b->c->call, &op, 1, &b->on_recv, NULL) != GRPC_CALL_OK) {
		srv_call_unref(b->c);
		return -1;
	}
	return 0;
}

static void end(struct srv_bidi *b, int cancelled)
{
	if (b->ended)
		return;
	b->ended = 1;
	b->ops->on_end(b->c, cancelled);
}

static ProtobufCMessage *decode(struct srv_bidi *b)
{
	grpc_byte_buffer_reader reader;
	grpc_slice slice;
	ProtobufCMessage *msg;

	if (!grpc_byte_buffer_reader_init(&reader, b->buf))
		return NULL;
	slice = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	metrics_add(&node_metrics(b->c->node)->grpc_received_bytes, GRPC_SLICE_LENGTH(slice));
	msg = protobuf_c_message_unpack(b->c->reg->m->req_desc, NULL, GRPC_SLICE_LENGTH(slice),
	                                GRPC_SLICE_START_PTR(slice));
	grpc_slice_unref(slice);
	return msg;
}

static void on_recv(struct srv_tag *t, int ok)
{
	struct srv_bidi *b = SRV_CONTAINER_OF(t, struct srv_bidi, on_recv);
	struct srv_call *c = b->c;

	if (ok && b->buf == NULL && b->ops->on_half_close) {
		/* The client half-closed; the stream lives on until the call ends
		 * (on_over below). */
		b->ops->on_half_close(c);
	} else if (!ok || b->buf == NULL) { /* cancelled, or the client half-closed */
		end(b, !ok);
	} else {
		ProtobufCMessage *msg = decode(b);
		grpc_byte_buffer_destroy(b->buf);
		b->buf = NULL;
		if (msg == NULL) {
			end(b, 1);
		} else {
			b->ops->on_msg(c, msg);
			if (recv_next(b) != 0)
				end(b, 1);
		}
	}
	srv_call_unref(c);
}

/* The call is over: end the adapter's work if the receive loop did not
 * (a half-closed stream, or one we finished ourselves). */
static void on_over(struct srv_call *c)
{
	if (c->bidi)
		end(c->bidi, 1);
}

int srv_bidi_start(struct srv_call *c, const struct srv_bidi_ops *ops)
{
	struct srv_bidi *b = calloc(1, sizeof(*b));

	if (b == NULL) {
		srv_call_reply_err(c, -ENOMEM);
		return -1;
	}
	b->c = c;
	b->ops = ops;
	b->on_recv.fn = on_recv;
	c->bidi = b;
	if (srv_stream_open(c) != 0) {
		srv_call_reply_err(c, BOLLARD_EINTERNAL);
		return -1;
	}
	c->stream->on_over = on_over;
	if (recv_next(b) != 0) {
		end(b, 1);
		return 0;
	}
	return 0;
}

static const grpc_metadata *metadata_find(struct srv_call *c, const char *key)
{
	for (size_t i = 0; i < c->md.count; i++) {
		const grpc_metadata *m = &c->md.metadata[i];
		size_t kl = GRPC_SLICE_LENGTH(m->key);
		if (kl == strlen(key) && memcmp(GRPC_SLICE_START_PTR(m->key), key, kl) == 0)
			return m;
	}
	return NULL;
}

int srv_call_metadata(struct srv_call *c, const char *key, char *out, size_t len)
{
	const grpc_metadata *m = metadata_find(c, key);
	size_t vl;
	if (m == NULL)
		return 0;
	vl = GRPC_SLICE_LENGTH(m->value);
	if (len > 0) {
		if (vl > len - 1)
			vl = len - 1;
		memcpy(out, GRPC_SLICE_START_PTR(m->value), vl);
		out[vl] = '\0';
	}
	return 1;
}

char *srv_call_metadata_dup(struct srv_call *c, const char *key)
{
	const grpc_metadata *m = metadata_find(c, key);
	size_t vl;
	char *v;
	if (m == NULL)
		return NULL;
	vl = GRPC_SLICE_LENGTH(m->value);
	if ((v = malloc(vl + 1)) != NULL) {
		memcpy(v, GRPC_SLICE_START_PTR(m->value), vl);
		v[vl] = 0;
	}
	return v;
}
