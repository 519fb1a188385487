/* calls.c - the life of one gRPC C core call: requesting it, reading its
 * request, its transport for dispatch.c (struct srv_transport: replies,
 * submitting, the deadline; its streams are grpc_stream.c's). What a
 * unary call does with its request is dispatch.c's, shared with h2srv.c.
 *
 * A call holds references: one from the moment it is requested until its
 * last batch completed, plus one per outstanding batch or worker for
 * streams. At zero it is freed and stops counting as live. Calls waiting in
 * the node's queue keep their reference until the node's callback replied
 * and that reply's batch completed, so shutdown never frees state the node
 * still points at. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "core/errors.h"
#include "core/metrics.h"
#include "server/server_int.h"

/* ------------------------------------------------------------------- life */

static void call_free(struct srv_call *c)
{
	struct etcd_server *s = c->s;

	srv_grpc_stream_free(c);
	if (c->payload)
		grpc_byte_buffer_destroy(c->payload);
	if (c->send_buf)
		grpc_byte_buffer_destroy(c->send_buf);
	srv_call_release(c);
	grpc_slice_unref(c->status_details);
	grpc_call_details_destroy(&c->details);
	if (c->call)
		grpc_call_unref(c->call);
	if ((c = srv_live_drop(s, c)) != NULL) { /* the pool is full */
		grpc_metadata_array_destroy(&c->md);
		free(c);
	}
}

void srv_pool_free(struct etcd_server *s)
{
	struct srv_call *c;

	while ((c = srv_pool_take(s)) != NULL) {
		grpc_metadata_array_destroy(&c->md);
		free(c);
	}
}

static void on_new_call(struct srv_tag *t, int ok);

static void tag_run(grpc_completion_queue_functor *f, int ok)
{
	struct srv_tag *t = SRV_CONTAINER_OF(f, struct srv_tag, f);
	t->fn(t, ok);
}

void srv_tag_callback(struct srv_tag *t, void (*fn)(struct srv_tag *t, int ok))
{
	t->f.functor_run = tag_run;
	t->f.inlineable = 1; /* fn is short and takes no lock gRPC may hold */
	t->fn = fn;
}

/* A call's state up to its inline request buffer (which needs no zeroing). */
#define CALL_HEAD_SIZE offsetof(struct srv_call, pb_buf)

int srv_call_arm(struct etcd_server *s, const struct srv_registered *reg)
{
	struct srv_call *c = srv_live_add(s);
	grpc_call_error rc;

	if (c) { /* a finished call's memory: keep its metadata array's room */
		grpc_metadata_array md = c->md;
		memset(c, 0, CALL_HEAD_SIZE);
		c->md = md;
		c->md.count = 0;
	} else {
		if ((c = malloc(sizeof(*c))) == NULL) {
			srv_live_drop(s, NULL);
			return -1;
		}
		memset(c, 0, CALL_HEAD_SIZE);
		grpc_metadata_array_init(&c->md);
	}
	c->tp = &srv_grpc_transport;
	c->node = s->node;
	c->s = s;
	c->reg = reg;
	atomic_init(&c->refs, 1);
	c->on_new.fn = on_new_call;
	c->status_details = grpc_empty_slice();
	grpc_call_details_init(&c->details);
	/* Calls that end with one reply batch complete it on the reply queue;
	 * streams keep every batch on the CQ thread. */
	c->on_reply_cq = !reg || (!reg->m->bidi && !reg->m->server_stream);
	if (reg)
		rc = grpc_server_request_registered_call(
			s->server, reg->handle, &c->call, &c->deadline, &c->md,
			reg->m->bidi ? NULL : &c->payload, c->on_reply_cq ? s->reply_cq : s->cq, s->cq,
			&c->on_new);
	else
		rc = grpc_server_request_call(s->server, &c->call, &c->details, &c->md, s->reply_cq,
		                              s->cq, &c->on_new);
	if (rc != GRPC_CALL_OK) {
		fprintf(stderr, "bollard: grpc request call failed (%d)\n", (int)rc);
		call_free(c);
		return -1;
	}
	return 0;
}

/* ----------------------------------------------------------- unary replies */

static void on_unary_done(struct srv_tag *t, int ok)
{
	struct srv_call *c = SRV_CONTAINER_OF(t, struct srv_call, on_done);
	(void)ok; /* a cancelled call simply has nobody to read the reply */
	srv_call_observe_sent(c);
	srv_call_unref(c);
}

/* Send initial metadata, the reply (c->send_buf, if any), the status, and
 * wait for the close; the call's base reference goes when that batch
 * completes. */
static void unary_send(struct srv_call *c)
{
	grpc_op ops[4];
	size_t n = 0;
	grpc_call_error rc;

	memset(ops, 0, sizeof(ops));
	ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
	n++;
	if (c->send_buf) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n].data.send_message.send_message = c->send_buf;
		n++;
	}
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = c->status_code;
	ops[n].data.send_status_from_server.status_details = &c->status_details;
	n++;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n].data.recv_close_on_server.cancelled = &c->cancelled;
	n++;

	if (c->on_reply_cq) /* completes inline: nobody is woken for it */
		srv_tag_callback(&c->on_done, on_unary_done);
	else
		c->on_done.fn = on_unary_done;
	rc = grpc_call_start_batch(c->call, ops, n, &c->on_done, NULL);
	if (rc != GRPC_CALL_OK) {
		fprintf(stderr, "bollard: grpc reply failed (%d)\n", (int)rc);
		srv_call_unref(c);
	}
}

/* Send the replies outbox_put queued and start sending on the streams
 * srv_stream_flush listed (first: the node's loop flushes a commit batch's
 * watch responses before its replies): on the CQ thread (woken by the
 * bell), or on the queuing thread if the bell failed. */
void srv_outbox_drain(struct etcd_server *s)
{
	struct srv_call *c, *next;
	struct srv_stream *kick;

	pthread_mutex_lock(&s->out_mu);
	c = s->out_head;
	s->out_head = NULL;
	s->out_tail = &s->out_head;
	kick = s->kick_head;
	s->kick_head = NULL;
	s->out_rung = 0;
	pthread_mutex_unlock(&s->out_mu);
	srv_grpc_stream_kick_listed(kick);
	for (; c != NULL; c = next) {
		next = c->out_next;
		unary_send(c);
	}
}

/* Under out_mu: wake the CQ thread for the outbox unless a wake-up is on
 * its way (an empty batch: gRPC puts its tag on the CQ at once), so a run
 * of replies and stream flushes costs one wake-up. false: it cannot be
 * woken (the caller drains the outbox itself). */
bool srv_bell_ring_locked(struct etcd_server *s)
{
	if (s->out_rung)
		return true;
	s->out_rung = 1;
	return grpc_call_start_batch(s->bell, NULL, 0, &s->on_bell, NULL) == GRPC_CALL_OK;
}

/* Queue c's reply for the CQ thread. */
static void outbox_put(struct srv_call *c)
{
	struct etcd_server *s = c->s;
	bool rung;

	c->out_next = NULL;
	pthread_mutex_lock(&s->out_mu);
	*s->out_tail = c;
	s->out_tail = &c->out_next;
	rung = srv_bell_ring_locked(s);
	pthread_mutex_unlock(&s->out_mu);
	if (!rung) {
		fprintf(stderr, "bollard: cannot wake the gRPC thread; replying from this one\n");
		srv_outbox_drain(s);
	}
}

/* End the call with buf (if any) and the status.
 *
 * Who sends it: while other unary calls are in progress, the CQ thread is
 * busy reading their connections, and a reply sent from another thread
 * (the node's loop) would often find its connection busy with the CQ
 * thread's work: gRPC then hands the rest to its executor threads, and the
 * connection's state moves between cores. So replies from other threads
 * go to the CQ thread (outbox_put), which then starts all work on the
 * client connections. A lone call's reply goes at once: no hand-off, no
 * wake-up, no added latency. */
static void unary_finish(struct srv_call *c, grpc_byte_buffer *buf, grpc_status_code code,
                         grpc_slice details)
{
	struct etcd_server *s = c->s;

	grpc_slice_unref(c->status_details);
	c->status_details = details;
	c->status_code = code;
	c->send_buf = buf;
	if (!c->on_reply_cq) /* a stream refused at its start */
		unary_send(c);
	else if (atomic_fetch_sub(&s->unary_busy, 1) == 1 || s->bell == NULL ||
	         pthread_equal(pthread_self(), s->cq_thread))
		unary_send(c);
	else
		outbox_put(c);
}

static void free_packed(void *p)
{
	free(p);
}

grpc_byte_buffer *srv_grpc_buffer_of(uint8_t *data, size_t len)
{
	grpc_slice slice;
	grpc_byte_buffer *bb;

	if (len == 0) {
		free(data);
		slice = grpc_empty_slice();
	} else {
		slice = grpc_slice_new(data, len, free_packed);
	}
	bb = grpc_raw_byte_buffer_create(&slice, 1);
	grpc_slice_unref(slice);
	return bb;
}

/* struct srv_transport's reply: dispatch.c counted the sent bytes. */
static void grpc_reply(struct srv_call *c, uint8_t *resp, size_t len, int code, const char *msg,
                       bool copy)
{
	if (code == 0) {
		unary_finish(c, srv_grpc_buffer_of(resp, len), GRPC_STATUS_OK, grpc_empty_slice());
		return;
	}
	free(resp);
	unary_finish(c, NULL, (grpc_status_code)code,
	             copy ? grpc_slice_from_copied_string(msg) : grpc_slice_from_static_string(msg));
}

/* ---------------------------------------------------------- new calls */

/* Decode the request payload (NULL = an empty message) with dispatch.c:
 * 0 (decoded, or c->unpack_err set for srv_call_start), or -1 when the
 * payload could not be read (answered). */
static int decode(struct srv_call *c)
{
	grpc_byte_buffer_reader reader;
	grpc_slice slice;
	grpc_byte_buffer *bb = c->payload;

	if (!bb) {
		srv_call_unpack(c, NULL, 0);
		return 0;
	}
	if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
	    bb->data.raw.slice_buffer.count == 1) {
		/* The usual case: one uncompressed slice, read in place. */
		slice = grpc_slice_ref(bb->data.raw.slice_buffer.slices[0]);
	} else {
		if (!grpc_byte_buffer_reader_init(&reader, bb)) {
			srv_call_reply_status(c, GRPC_STATUS_INVALID_ARGUMENT,
			                      "bollard: cannot read the request message");
			return -1;
		}
		slice = grpc_byte_buffer_reader_readall(&reader);
		grpc_byte_buffer_reader_destroy(&reader);
	}
	grpc_byte_buffer_destroy(c->payload);
	c->payload = NULL;
	srv_call_unpack(c, GRPC_SLICE_START_PTR(slice), GRPC_SLICE_LENGTH(slice));
	grpc_slice_unref(slice);
	return 0;
}

/* The call's deadline on the node's clock (node_clock_ns), 0: none. */
static uint64_t grpc_deadline_ns(const struct srv_call *c)
{
	gpr_timespec left;
	int64_t ns;

	if (gpr_time_cmp(c->deadline, gpr_inf_future(c->deadline.clock_type)) == 0)
		return 0;
	left = gpr_time_sub(c->deadline, gpr_now(c->deadline.clock_type));
	ns = left.tv_sec * 1000000000 + left.tv_nsec;
	return node_clock_ns() + (uint64_t)(ns > 0 ? ns : 1);
}

static void grpc_submit(struct srv_call *c)
{
	struct etcd_server *s = c->s; /* c may be answered and freed once submitted */

	if (atomic_load(&s->unary_busy) > 1 && pthread_equal(pthread_self(), s->cq_thread))
		/* Other calls in flight: the CQ thread likely holds more
		 * requests; it wakes the loop once it has none (cq_main). A
		 * lone call wakes it at once. */
		s->node_wake_owed |= node_submit_quiet(c->node, &c->req);
	else
		node_submit(c->node, &c->req);
}

static void grpc_release(struct srv_call *c)
{
	call_free(c);
}

const struct srv_transport srv_grpc_transport = {
	.reply = grpc_reply,
	.submit = grpc_submit,
	.deadline_ns = grpc_deadline_ns,
	.release = grpc_release,
	.stream_open = srv_grpc_stream_open,
	.bidi_start = srv_grpc_bidi_start,
	.stream_send = srv_grpc_stream_send,
	.stream_offer = srv_grpc_stream_offer,
	.stream_flush = srv_grpc_stream_flush,
	.stream_has_room = srv_grpc_stream_has_room,
	.stream_finish = srv_grpc_stream_finish,
};

static void start_unregistered(struct srv_call *c);

static void start_registered(struct srv_call *c)
{
	const struct srv_method *m = c->reg->m;

	if (m->peer_only && !srv_call_from_peer_port(c)) {
		start_unregistered(c); /* not on the client port */
		return;
	}
	if (!m->bidi && decode(c) != 0)
		return;
	srv_call_start(c);
}

static void start_unregistered(struct srv_call *c)
{
	char *path = grpc_slice_to_c_string(c->details.method);
	char msg[512];

	snprintf(msg, sizeof(msg), "bollard: unknown or unimplemented method %s", path);
	gpr_free(path);
	srv_call_reply_status(c, GRPC_STATUS_UNIMPLEMENTED, msg);
}

static void on_new_call(struct srv_tag *t, int ok)
{
	struct srv_call *c = SRV_CONTAINER_OF(t, struct srv_call, on_new);
	struct etcd_server *s = c->s;

	if (!ok) { /* the server is shutting down: the request was never matched */
		srv_call_unref(c);
		return;
	}
	c->t_start_ns = node_clock_ns();
	if (c->on_reply_cq) /* a unary call: answered once, by unary_finish */
		atomic_fetch_add(&s->unary_busy, 1);
	/* Keep the same number of calls armed: re-arm first. */
	if (!atomic_load(&s->shutting_down))
		srv_call_arm(s, c->reg);
	c->token = srv_call_metadata_dup(c, "token");
	c->require_leader = srv_grpc_metadata_is(c, "hasleader", "true");
	if (s->tls && s->tls->client_cert_auth) {
		c->peer_cn = srv_tls_peer_cn(c->call);
		if (s->tls->log_client_cn)
			fprintf(stderr, "bollard: %s from client certificate CN=%s\n",
			        c->reg ? c->reg->m->path : "unregistered method",
			        c->peer_cn ? c->peer_cn : "(none)");
	}
	if (c->reg)
		start_registered(c);
	else
		start_unregistered(c);
}
