/* grpc_stream.c - the gRPC C core's side of streams (struct srv_transport's
 * stream entries for calls.c's calls): the send queue of server-streaming
 * and bidirectional calls (one SEND_MESSAGE outstanding at a time, the
 * rest in a core/sendq.h queue under the stream's lock) and the receive
 * loop of bidirectional ones (Watch, LeaseKeepAlive), which decodes one
 * request message at a time and hands it to the service adapter,
 * independently of the send side.
 *
 * References: the receive loop holds one reference on the call while a
 * RECV_MESSAGE batch is outstanding; srv_grpc_stream_open()'s close watcher
 * holds the call's base reference; each send batch holds one. on_end runs
 * exactly once: when the receive loop stops (client half-close,
 * cancellation, a decode error), or, for adapters with on_half_close, when
 * the call itself ends. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include "core/errors.h"
#include "core/metrics.h"
#include "server/server_int.h"

/* ------------------------------------------------------------ sending */

static void qitem_free(struct srv_qitem *it)
{
	if (it->buf)
		grpc_byte_buffer_destroy(it->buf);
	free(it->msg.data);
	grpc_slice_unref(it->details);
	free(it);
}

static void stream_drop_queue_locked(struct srv_stream *st)
{
	struct sendq_msg *m;
	while ((m = sendq_pop(&st->q)) != NULL)
		qitem_free(SRV_CONTAINER_OF(m, struct srv_qitem, msg));
}

/* What one stream batch sends (stream_take_locked -> stream_send). */
struct stream_take {
	struct srv_qitem *it;
	bool initial_md; /* the batch carries the initial metadata */
	bool more;       /* more was queued behind it */
};

/* Under st->mu: take the head of the queue for sending if nothing is
 * outstanding (it becomes st->cur; a reference on the call is taken for
 * its batch). The batch itself is started by stream_send() after the lock
 * is released: gRPC may write to the socket inside grpc_call_start_batch,
 * and the node's loop must not wait for that to queue its next response.
 * While inflight is set nobody else takes, so batches stay in order. */
static bool stream_take_locked(struct srv_call *c, struct stream_take *tk)
{
	struct srv_stream *st = c->stream;

	if (st->inflight || st->dead || st->q.head == NULL)
		return false;
	tk->it = SRV_CONTAINER_OF(sendq_pop(&st->q), struct srv_qitem, msg);
	tk->initial_md = !st->sent_initial_md;
	tk->more = st->q.head != NULL;
	st->sent_initial_md = 1;
	st->cur = tk->it;
	st->inflight = 1;
	srv_call_ref(c);
	return true;
}

/* Not under st->mu: start the batch of what stream_take_locked took.
 * Returns the number of references the caller must drop. */
static int stream_send(struct srv_call *c, const struct stream_take *tk)
{
	struct srv_stream *st = c->stream;
	struct srv_qitem *it = tk->it;
	grpc_op ops[2];
	size_t n = 0;
	grpc_call_error rc;

	memset(ops, 0, sizeof(ops));
	if (tk->initial_md) {
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		n++;
	}
	if (!it->status) {
		metrics_add(&node_metrics(c->node)->grpc_sent_bytes, it->msg.len);
		it->buf = srv_grpc_buffer_of(it->msg.data, it->msg.len);
		it->msg.data = NULL;
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n].data.send_message.send_message = it->buf;
		/* More are queued: let the transport hold this one and write
		 * it with the next (one write for the run; the last message
		 * of a run, queued alone, is written at once). Not with the
		 * initial metadata: that batch completes only once the
		 * headers are written, which a held message never starts. */
		if (tk->more && n == 0)
			ops[n].flags = GRPC_WRITE_BUFFER_HINT;
	} else {
		ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
		ops[n].data.send_status_from_server.status = it->code;
		ops[n].data.send_status_from_server.status_details = &it->details;
	}
	n++;
	rc = grpc_call_start_batch(c->call, ops, n, &st->on_sent, NULL);
	if (rc == GRPC_CALL_OK)
		return 0;
	fprintf(stderr, "bollard: grpc stream send failed (%d)\n", (int)rc);
	pthread_mutex_lock(&st->mu);
	st->cur = NULL;
	st->inflight = 0;
	st->dead = 1;
	stream_drop_queue_locked(st);
	pthread_cond_broadcast(&st->cv);
	pthread_mutex_unlock(&st->mu);
	qitem_free(it);
	return 1;
}

static void on_stream_sent(struct srv_tag *t, int ok)
{
	struct srv_stream *st = SRV_CONTAINER_OF(t, struct srv_stream, on_sent);
	struct srv_call *c = st->call;
	int drops = 1; /* the finished batch's reference */
	struct srv_qitem *sent;
	struct stream_take tk;
	bool took = false;

	pthread_mutex_lock(&st->mu);
	sent = st->cur;
	st->cur = NULL;
	st->inflight = 0;
	if (!ok) {
		st->dead = 1;
		stream_drop_queue_locked(st);
	} else {
		took = stream_take_locked(c, &tk);
	}
	pthread_cond_broadcast(&st->cv);
	pthread_mutex_unlock(&st->mu);
	qitem_free(sent);
	if (took)
		drops += stream_send(c, &tk);
	while (drops--)
		srv_call_unref(c);
}

/* RECV_CLOSE_ON_SERVER completes when the call is over: after our status,
 * or early when the client cancelled or went away. */
static void on_stream_close(struct srv_tag *t, int ok)
{
	struct srv_stream *st = SRV_CONTAINER_OF(t, struct srv_stream, on_close);
	struct srv_call *c = st->call;

	int died = !ok || st->close_cancelled;

	pthread_mutex_lock(&st->mu);
	if (died) {
		st->dead = 1;
		stream_drop_queue_locked(st);
	}
	pthread_cond_broadcast(&st->cv);
	pthread_mutex_unlock(&st->mu);
	if (st->on_over)
		st->on_over(c);
	srv_call_unref(c);
}

int srv_grpc_stream_open(struct srv_call *c)
{
	struct srv_stream *st = calloc(1, sizeof(*st));
	grpc_op op;

	if (c->on_reply_cq) { /* a method that streams must say so (server_stream) */
		fprintf(stderr, "bollard: %s streams but is not registered as a stream\n",
		        c->reg ? c->reg->m->path : "?");
		free(st);
		return -1;
	}
	if (!st)
		return -1;
	pthread_mutex_init(&st->mu, NULL);
	pthread_cond_init(&st->cv, NULL);
	sendq_init(&st->q);
	st->call = c;
	st->on_sent.fn = on_stream_sent;
	st->on_close.fn = on_stream_close;
	c->stream = st;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &st->close_cancelled;
	/* The call's base reference now belongs to this batch: it completes
	 * last, once the status went out or the call died. */
	if (grpc_call_start_batch(c->call, &op, 1, &st->on_close, NULL) != GRPC_CALL_OK)
		return -1;
	return 0;
}

static bool full_locked(const struct srv_stream *st, const struct srv_offer *o)
{
	return srv_offer_full(o, st->q.n, st->q.bytes);
}

/* Queue (or merge) it; 0, 1 (full under o: it kept), or -1 (dead: it
 * freed). blocking: wait for room instead of answering 1. */
static int stream_enqueue(struct srv_call *c, struct srv_qitem *it, const struct srv_offer *o,
                          bool blocking, int last)
{
	struct srv_stream *st = c->stream;
	struct stream_take tk;
	int drops = 0, merged;
	bool took;

	pthread_mutex_lock(&st->mu);
	while (blocking && !st->dead && !st->finished && full_locked(st, o))
		pthread_cond_wait(&st->cv, &st->mu);
	if (st->dead || st->finished) {
		pthread_mutex_unlock(&st->mu);
		qitem_free(it);
		return -1;
	}
	if (full_locked(st, o)) {
		pthread_mutex_unlock(&st->mu);
		return 1;
	}
	merged = sendq_push(&st->q, &it->msg, o->max_merged) == SENDQ_MERGED;
	if (last)
		st->finished = 1;
	took = !o->defer && stream_take_locked(c, &tk);
	pthread_mutex_unlock(&st->mu);
	if (merged)
		qitem_free(it);
	if (took)
		drops = stream_send(c, &tk);
	while (drops--)
		srv_call_unref(c);
	return 0;
}

static struct srv_qitem *qitem_new(uint8_t *data, size_t len)
{
	struct srv_qitem *it = calloc(1, sizeof(*it));

	if (!it) {
		free(data);
		return NULL;
	}
	it->msg.data = data;
	it->msg.len = len;
	it->details = grpc_empty_slice();
	return it;
}

int srv_grpc_stream_send(struct srv_call *c, uint8_t *data, size_t len, size_t max_queued)
{
	struct srv_qitem *it = qitem_new(data, len);
	struct srv_offer o = {.max_queued = max_queued};

	if (!it)
		return -1;
	return stream_enqueue(c, it, &o, true, 0);
}

int srv_grpc_stream_offer(struct srv_call *c, uint8_t *data, size_t len, const struct srv_offer *o)
{
	struct srv_qitem *it;
	int rc;

	if (o->prefix > 0 && (o->prefix > len || data == NULL)) {
		free(data);
		return -1;
	}
	if ((it = qitem_new(data, len)) == NULL)
		return -1;
	it->msg.prefix = o->prefix;
	it->msg.key = o->key;
	rc = stream_enqueue(c, it, o, false, 0);
	if (rc == 1) { /* full: the data stays the caller's */
		it->msg.data = NULL;
		qitem_free(it);
	}
	return rc;
}

/* Start sending on each stream of list (srv_outbox_drain's), dropping the
 * list's references. */
void srv_grpc_stream_kick_listed(struct srv_stream *list)
{
	while (list != NULL) {
		struct srv_stream *st = list;
		struct srv_call *c = st->call;
		int drops = 1; /* the list's reference */
		struct stream_take tk;
		bool took;
		list = st->kick_next;
		pthread_mutex_lock(&st->mu);
		st->kick_listed = 0;
		took = stream_take_locked(c, &tk);
		pthread_mutex_unlock(&st->mu);
		if (took)
			drops += stream_send(c, &tk);
		while (drops--)
			srv_call_unref(c);
	}
}

/* The sending itself (grpc_call_start_batch, and the transport work it
 * does inline) is left to the CQ thread, which continues it from each
 * send's completion anyway: the caller (the node's loop thread, once per
 * stream and commit batch) only lists the stream in the server's outbox,
 * whose bell wakes the CQ thread once for every stream flushed and reply
 * queued before it runs. */
void srv_grpc_stream_flush(struct srv_call *c)
{
	struct srv_stream *st = c->stream;
	struct etcd_server *s = c->s;
	struct stream_take tk;
	bool list, rung;
	int drops = 0;

	pthread_mutex_lock(&st->mu);
	if (s->bell == NULL) { /* no bell: send from here */
		bool took = stream_take_locked(c, &tk);
		pthread_mutex_unlock(&st->mu);
		if (took)
			drops = stream_send(c, &tk);
		while (drops--)
			srv_call_unref(c);
		return;
	}
	list = !st->inflight && !st->dead && st->q.head != NULL && !st->kick_listed;
	if (list)
		st->kick_listed = 1;
	pthread_mutex_unlock(&st->mu);
	if (!list)
		return;
	srv_call_ref(c); /* the list's */
	pthread_mutex_lock(&s->out_mu);
	st->kick_next = s->kick_head;
	s->kick_head = st;
	rung = srv_bell_ring_locked(s);
	pthread_mutex_unlock(&s->out_mu);
	if (!rung)
		srv_outbox_drain(s);
}

bool srv_grpc_stream_has_room(struct srv_call *c, const struct srv_offer *o)
{
	struct srv_stream *st = c->stream;
	bool room;

	pthread_mutex_lock(&st->mu);
	room = !st->dead && !st->finished && !full_locked(st, o);
	pthread_mutex_unlock(&st->mu);
	return room;
}

void srv_grpc_stream_finish(struct srv_call *c, int err)
{
	struct srv_qitem *it = calloc(1, sizeof(*it));
	const char *msg;
	struct srv_offer o = {0};

	if (!it)
		abort(); /* nothing sensible left to do */
	it->status = 1;
	srv_status_of(err, &it->code, &msg);
	it->details = grpc_slice_from_static_string(msg);
	stream_enqueue(c, it, &o, false, 1);
}

/* ------------------------------------------------------------ receiving */

struct srv_bidi {
	struct srv_call *c;
	const struct srv_bidi_ops *ops;
	struct srv_tag on_recv;
	grpc_byte_buffer *buf;
	int ended;
};

static void bidi_free(struct srv_bidi *b)
{
	if (b->buf)
		grpc_byte_buffer_destroy(b->buf);
	free(b);
}

void srv_grpc_stream_free(struct srv_call *c)
{
	struct srv_stream *st = c->stream;

	if (st) {
		stream_drop_queue_locked(st);
		sendq_fini(&st->q);
		pthread_mutex_destroy(&st->mu);
		pthread_cond_destroy(&st->cv);
		free(st);
	}
	if (c->bidi)
		bidi_free(c->bidi);
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

int srv_grpc_bidi_start(struct srv_call *c, const struct srv_bidi_ops *ops)
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
	if (srv_grpc_stream_open(c) != 0) {
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

bool srv_grpc_metadata_is(struct srv_call *c, const char *key, const char *value)
{
	const grpc_metadata *m = metadata_find(c, key);
	return m != NULL && GRPC_SLICE_LENGTH(m->value) == strlen(value) &&
	       memcmp(GRPC_SLICE_START_PTR(m->value), value, strlen(value)) == 0;
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
