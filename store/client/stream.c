/* stream.c - a bidirectional gRPC stream on the client's completion queue
 * whose owner (watch.c, lease.c) reconnects it: bc_stream_open waits for a
 * READY endpoint (rotating past unreachable ones, in short slices so that a
 * stop is noticed quickly), creates the call and reports opened(); received
 * messages go to message(); when the call is over and every operation on it
 * completed, ended() reports why. Loop thread only. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/support/time.h>

#include "client_int.h"

#define SLICE_MS 200

#define OWNER(t, field) ((struct bc_stream *)(void *)((char *)(t) - offsetof(struct bc_stream, field)))

static void try_open(struct bc_stream *s);
static void arm_recv(struct bc_stream *s);

static void maybe_end(struct bc_stream *s)
{
	int err;
	grpc_status_code st;

	if (!s->status_seen || s->inflight > 0)
		return;
	st = s->status;
	err = s->stopping ? -ECANCELED : bc_status_to_err(st, s->details, true);
	if (s->recv_bb)
		grpc_byte_buffer_destroy(s->recv_bb);
	if (s->send_bb)
		grpc_byte_buffer_destroy(s->send_bb);
	s->recv_bb = s->send_bb = NULL;
	grpc_slice_unref(s->details);
	s->details = grpc_empty_slice();
	grpc_metadata_array_destroy(&s->init_md);
	grpc_metadata_array_destroy(&s->trail_md);
	grpc_call_unref(s->call);
	s->call = NULL;
	s->send_busy = false;
	if (st == GRPC_STATUS_UNAVAILABLE)
		s->ep = bc_next_ep(s->c, s->ep);
	s->ops->ended(s, err, st);
}

static void md_sent(struct bc_tag *t, bool ok)
{
	struct bc_stream *s = OWNER(t, wait_tag);

	(void)ok;
	s->inflight--;
	maybe_end(s);
}

static void status_done(struct bc_tag *t, bool ok)
{
	struct bc_stream *s = OWNER(t, status_tag);

	(void)ok;
	s->inflight--;
	s->status_seen = true;
	maybe_end(s);
}

static void recv_done(struct bc_tag *t, bool ok)
{
	struct bc_stream *s = OWNER(t, recv_tag);
	grpc_byte_buffer *bb = s->recv_bb;

	s->inflight--;
	s->recv_bb = NULL;
	if (ok && bb) {
		if (!s->stopping)
			s->ops->message(s, bb);
		grpc_byte_buffer_destroy(bb);
		if (!s->stopping) {
			arm_recv(s);
			return;
		}
	} else if (bb) {
		grpc_byte_buffer_destroy(bb);
	}
	maybe_end(s);
}

static void send_done(struct bc_tag *t, bool ok)
{
	struct bc_stream *s = OWNER(t, send_tag);

	(void)ok;
	s->inflight--;
	s->send_busy = false;
	if (s->send_bb)
		grpc_byte_buffer_destroy(s->send_bb);
	s->send_bb = NULL;
	if (!s->stopping && !s->status_seen && s->ops->sent)
		s->ops->sent(s);
	maybe_end(s);
}

static int start(struct bc_stream *s, const grpc_op *ops, size_t n, struct bc_tag *t)
{
	if (grpc_call_start_batch(s->call, ops, n, t, NULL) != GRPC_CALL_OK)
		return -1;
	s->inflight++;
	bc_op_started(s->c);
	return 0;
}

static void arm_recv(struct bc_stream *s)
{
	grpc_op op;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &s->recv_bb;
	s->recv_tag.done = recv_done;
	if (start(s, &op, 1, &s->recv_tag) != 0)
		grpc_call_cancel(s->call, NULL);
}

static void wait_done(struct bc_tag *t, bool ok)
{
	struct bc_stream *s = OWNER(t, wait_tag);

	(void)ok;
	try_open(s);
}

static void create_call(struct bc_stream *s)
{
	grpc_op ops[2];

	s->waiting = false;
	s->status_seen = false;
	s->details = grpc_empty_slice();
	grpc_metadata_array_init(&s->init_md);
	grpc_metadata_array_init(&s->trail_md);
	s->call = grpc_channel_create_call(s->c->ch[s->ep], NULL, GRPC_PROPAGATE_DEFAULTS, s->c->cq,
	                                   grpc_slice_from_static_string(s->method), NULL,
	                                   gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &s->trail_md;
	ops[0].data.recv_status_on_client.status = &s->status;
	ops[0].data.recv_status_on_client.status_details = &s->details;
	s->status_tag.done = status_done;
	if (start(s, ops, 1, &s->status_tag) != 0) {
		/* Cannot happen on a fresh call; end it as a failed one. */
		s->status = GRPC_STATUS_INTERNAL;
		s->status_seen = true;
		maybe_end(s);
		return;
	}
	/* etcd ends streams that require a leader when there is none. */
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = 1;
	ops[0].data.send_initial_metadata.metadata = &s->hasleader;
	s->wait_tag.done = md_sent;
	if (start(s, ops, 1, &s->wait_tag) != 0)
		grpc_call_cancel(s->call, NULL);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[0].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
	ops[1].op = GRPC_OP_RECV_MESSAGE;
	ops[1].data.recv_message.recv_message = &s->recv_bb;
	s->recv_tag.done = recv_done;
	if (start(s, ops, 2, &s->recv_tag) != 0)
		grpc_call_cancel(s->call, NULL);
	s->ops->opened(s);
}

static void try_open(struct bc_stream *s)
{
	struct bollard_client *c = s->c;

	if (s->stopping || c->closing) {
		s->waiting = false;
		s->ops->ended(s, -ECANCELED, GRPC_STATUS_CANCELLED);
		return;
	}
	for (size_t tried = 0;; tried++) {
		grpc_connectivity_state st = bc_ep_state(c, s->ep);
		if (st == GRPC_CHANNEL_READY) {
			create_call(s);
			return;
		}
		if ((st == GRPC_CHANNEL_TRANSIENT_FAILURE || st == GRPC_CHANNEL_SHUTDOWN) &&
		    tried + 1 < c->n_ep) {
			s->ep = bc_next_ep(c, s->ep);
			continue;
		}
		if (st == GRPC_CHANNEL_TRANSIENT_FAILURE || st == GRPC_CHANNEL_SHUTDOWN)
			s->ep = bc_next_ep(c, s->ep);
		s->wait_tag.done = wait_done;
		bc_wait(c, c->cq, s->ep, SLICE_MS, &s->wait_tag);
		return;
	}
}

void bc_stream_init(struct bc_stream *s, struct bollard_client *c, const char *method,
                    const struct bc_stream_ops *ops)
{
	memset(s, 0, sizeof(*s));
	s->c = c;
	s->method = method;
	s->ops = ops;
	s->ep = atomic_load(&c->cur);
	s->details = grpc_empty_slice();
	s->hasleader.key = grpc_slice_from_static_string("hasleader");
	s->hasleader.value = grpc_slice_from_static_string("true");
}

void bc_stream_open(struct bc_stream *s, unsigned delay_ms)
{
	s->waiting = true;
	s->ep = atomic_load(&s->c->cur);
	s->wait_tag.done = wait_done;
	/* Always through the queue: opened()/ended() never run inside the
	 * caller's call. */
	bc_wait(s->c, s->c->cq, s->ep, delay_ms ? delay_ms : 1, &s->wait_tag);
}

int bc_stream_send(struct bc_stream *s, grpc_byte_buffer *bb)
{
	grpc_op op;

	if (!s->call || s->status_seen || s->stopping) {
		grpc_byte_buffer_destroy(bb);
		return -ENOTCONN;
	}
	if (s->send_busy) {
		grpc_byte_buffer_destroy(bb);
		return -EBUSY;
	}
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = bb;
	s->send_bb = bb;
	s->send_busy = true;
	s->send_tag.done = send_done;
	if (start(s, &op, 1, &s->send_tag) != 0) {
		s->send_busy = false;
		s->send_bb = NULL;
		grpc_byte_buffer_destroy(bb);
		return -EPROTO;
	}
	return 0;
}

void bc_stream_stop(struct bc_stream *s)
{
	s->stopping = true;
	if (s->call)
		grpc_call_cancel(s->call, NULL);
}

bool bc_stream_busy(const struct bc_stream *s)
{
	return s->call != NULL || s->waiting;
}
