/* calls.c - the life of one gRPC C core call: requesting it, reading its
 * request, its transport for dispatch.c (struct srv_transport: replies,
 * submitting, the deadline), and the server-streaming send queue. What a
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

static void stream_drop_queue_locked(struct srv_stream *st);

static void call_free(struct srv_call *c)
{
	struct etcd_server *s = c->s;
	struct srv_stream *st = c->stream;

	if (st) {
		stream_drop_queue_locked(st);
		sendq_fini(&st->q);
		pthread_mutex_destroy(&st->mu);
		pthread_cond_destroy(&st->cv);
		free(st);
	}
	if (c->bidi)
		srv_bidi_free(c->bidi);
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

void srv_call_ref(struct srv_call *c)
{
	atomic_fetch_add(&c->refs, 1);
}

void srv_call_unref(struct srv_call *c)
{
	if (atomic_fetch_sub(&c->refs, 1) == 1)
		call_free(c);
}

static void on_new_call(struct srv_tag *t, int ok);
static const struct srv_transport grpc_transport;

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
	c->tp = &grpc_transport;
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

static void stream_kick_listed(struct srv_stream *list);

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
	stream_kick_listed(kick);
	for (; c != NULL; c = next) {
		next = c->out_next;
		unary_send(c);
	}
}

/* Under out_mu: wake the CQ thread for the outbox unless a wake-up is on
 * its way (an empty batch: gRPC puts its tag on the CQ at once), so a run
 * of replies and stream flushes costs one wake-up. false: it cannot be
 * woken (the caller drains the outbox itself). */
static bool bell_ring_locked(struct etcd_server *s)
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
	rung = bell_ring_locked(s);
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

/* A byte buffer over malloc'ed bytes (ownership taken). */
static grpc_byte_buffer *buffer_of(uint8_t *data, size_t len)
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
		unary_finish(c, buffer_of(resp, len), GRPC_STATUS_OK, grpc_empty_slice());
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
	if (atomic_load(&c->s->unary_busy) > 1 && pthread_equal(pthread_self(), c->s->cq_thread))
		/* Other calls in flight: the CQ thread likely holds more
		 * requests; it wakes the loop once it has none (cq_main). A
		 * lone call wakes it at once. */
		c->s->node_wake_owed |= node_submit_quiet(c->node, &c->req);
	else
		node_submit(c->node, &c->req);
}

static const struct srv_transport grpc_transport = {grpc_reply, grpc_submit, grpc_deadline_ns};

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

/* ------------------------------------------------------ server streaming */

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
		it->buf = buffer_of(it->msg.data, it->msg.len);
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

int srv_stream_open(struct srv_call *c)
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
	return (o->max_queued && st->q.n >= o->max_queued) ||
	       (o->max_bytes && st->q.bytes >= o->max_bytes);
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

int srv_stream_send(struct srv_call *c, uint8_t *data, size_t len, size_t max_queued)
{
	struct srv_qitem *it = qitem_new(data, len);
	struct srv_offer o = {.max_queued = max_queued};

	if (!it)
		return -1;
	return stream_enqueue(c, it, &o, true, 0);
}

int srv_stream_offer(struct srv_call *c, uint8_t *data, size_t len, const struct srv_offer *o)
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
static void stream_kick_listed(struct srv_stream *list)
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
void srv_stream_flush(struct srv_call *c)
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
	rung = bell_ring_locked(s);
	pthread_mutex_unlock(&s->out_mu);
	if (!rung)
		srv_outbox_drain(s);
}

bool srv_stream_has_room(struct srv_call *c, const struct srv_offer *o)
{
	struct srv_stream *st = c->stream;
	bool room;

	pthread_mutex_lock(&st->mu);
	room = !st->dead && !st->finished && !full_locked(st, o);
	pthread_mutex_unlock(&st->mu);
	return room;
}

void srv_stream_finish(struct srv_call *c, int err)
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
