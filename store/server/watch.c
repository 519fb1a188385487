/* watch.c - etcd's Watch service: one bidirectional stream per client
 * carrying any number of watches. Requests (create, cancel, progress) go to
 * the node in order as NODE_WATCH requests; the node's loop thread (the
 * watch hub) sends responses through this stream's non-blocking send
 * queue. When the stream ends, a NODE_WATCH_CLOSE drops its watchers; the
 * call's status goes out once the node confirmed it will send no more.
 *
 * A create whose token names a login this member has not applied yet (a
 * token from another member, this one lagging) waits for that login's entry
 * first, as etcd's simple tokens do; what the client sends meanwhile waits
 * behind it, so the node sees the stream's requests in order.
 *
 * References on the call: one for the node's registration of the stream
 * (dropped when NODE_WATCH_CLOSE completed), one per request in the node. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/errors.h"
#include "rpc.pb-c.h"
#include "server/server_int.h"

/* A stream's send queue is full at WATCH_MAX_QUEUED responses or
 * WATCH_MAX_QUEUED_BYTES bytes: the node's watchers then fall back to
 * catching up from history (etcd's per-stream channel holds 128
 * responses). While a send is outstanding, a watcher's event responses
 * merge into its unsent one, up to WATCH_MAX_MERGED bytes (etcd too sends
 * a watcher that fell behind several revisions per response). */
#define WATCH_MAX_QUEUED 256
#define WATCH_MAX_QUEUED_BYTES (1u << 20)
#define WATCH_MAX_MERGED (256u << 10)

static const struct srv_offer watch_room = {
	.max_queued = WATCH_MAX_QUEUED,
	.max_bytes = WATCH_MAX_QUEUED_BYTES,
};

struct wpending {
	struct wpending *next;
	ProtobufCMessage *msg; /* NULL: the stream's end */
};

struct wstream {
	struct node_watch_stream nws;
	struct srv_call *c;
	struct node_watch_req close_req;
	int ended_cancelled;
	/* the wait for a login (CQ thread and loop thread: mu) */
	pthread_mutex_t mu;
	bool waiting, waited;
	struct wpending *pend_head, *pend_tail;
	struct node_req wait_req;
	Bollard__ReadIndexResponse wait_msg;
};

struct wreq {
	struct node_watch_req wr;
	struct srv_call *c;
	char *auth_user; /* creates: who asks, resolved from the stream's token */
};

static int ws_send(struct node_watch_stream *nws, uint8_t *buf, size_t len, bool force,
                   int64_t watch_id, size_t events_at)
{
	struct wstream *w = (struct wstream *)(void *)nws;
	struct srv_offer o = {.prefix = events_at, .max_merged = WATCH_MAX_MERGED, .key = watch_id,
	                      .defer = true};
	if (!force) {
		o.max_queued = watch_room.max_queued;
		o.max_bytes = watch_room.max_bytes;
	}
	/* 0 sent, 1 full (buf kept), -1 dead: node.h's values */
	return srv_stream_offer(w->c, buf, len, &o);
}

/* The node's batch of sends is over: start sending (one hand-off to the
 * CQ thread for the batch; the rest follows from the send completions). */
static void ws_flush(struct node_watch_stream *nws)
{
	struct wstream *w = (struct wstream *)(void *)nws;
	srv_stream_flush(w->c);
}

static void ws_end(struct node_watch_stream *nws, int err)
{
	struct wstream *w = (struct wstream *)(void *)nws;
	srv_stream_finish(w->c, err); /* etcd: Unavailable "etcdserver: no leader" */
}

static bool ws_writable(struct node_watch_stream *nws)
{
	struct wstream *w = (struct wstream *)(void *)nws;
	return srv_stream_has_room(w->c, &watch_room);
}

static void req_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct wreq *r = (struct wreq *)(void *)req;
	struct srv_call *c = r->c;
	/* ENO_LEADER: the client required a leader (etcd ends the stream with
	 * "etcdserver: no leader", Unavailable; close_done's later OK status
	 * is then dropped). STOPPED: the stream is ending with the server. */
	if (err == BOLLARD_ENO_LEADER)
		srv_stream_finish(c, err);
	(void)len;
	free(resp);
	protobuf_c_message_free_unpacked((ProtobufCMessage *)req->msg, NULL);
	free(r->auth_user);
	free(r);
	srv_call_unref(c);
}

static void submit_close(struct srv_call *c);

/* Under w->mu: keep msg (NULL: the end) until the wait is over. false: no
 * memory (the message is dropped, as when a request cannot be allocated). */
static bool pend_locked(struct wstream *w, ProtobufCMessage *msg)
{
	struct wpending *p = calloc(1, sizeof(*p));
	if (!p)
		return false;
	p->msg = msg;
	if (w->pend_tail)
		w->pend_tail->next = p;
	else
		w->pend_head = p;
	w->pend_tail = p;
	return true;
}

static void submit_msg(struct srv_call *c, ProtobufCMessage *msg);

/* The login's entry is applied (or the wait timed out): what waited goes to
 * the node in order; the create's token is resolved again. */
static void wait_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct wstream *w = SRV_CONTAINER_OF(req, struct wstream, wait_req);
	struct srv_call *c = w->c;
	(void)err;
	(void)len;
	free(resp);
	pthread_mutex_lock(&w->mu);
	while (w->pend_head) {
		struct wpending *p = w->pend_head;
		if (!(w->pend_head = p->next))
			w->pend_tail = NULL;
		pthread_mutex_unlock(&w->mu);
		if (p->msg)
			submit_msg(c, p->msg);
		else
			submit_close(c);
		free(p);
		pthread_mutex_lock(&w->mu);
	}
	w->waiting = false;
	pthread_mutex_unlock(&w->mu);
	srv_call_unref(c);
}

static void on_msg(struct srv_call *c, ProtobufCMessage *msg)
{
	struct wstream *w = c->user;
	bool create = ((Etcdserverpb__WatchRequest *)msg)->request_union_case ==
	              ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	uint64_t idx;

	pthread_mutex_lock(&w->mu);
	if (w->waiting) {
		if (!pend_locked(w, msg))
			protobuf_c_message_free_unpacked(msg, NULL);
		pthread_mutex_unlock(&w->mu);
		return;
	}
	/* once per stream (its token is the call's): a token this member does
	 * not know that names a login entry */
	if (create && !w->waited && (idx = srv_token_login_index(c->token)) != 0) {
		char *user = NULL;
		uint64_t rev;
		int rc = node_auth_resolve(c->node, c->token, c->peer_cn, &user, &rev);
		free(user);
		if (rc == BOLLARD_EINVALID_AUTH_TOKEN && pend_locked(w, msg)) {
			w->waited = w->waiting = true;
			pthread_mutex_unlock(&w->mu);
			bollard__read_index_response__init(&w->wait_msg);
			w->wait_msg.index = idx;
			w->wait_req = (struct node_req){.data = w, .op = NODE_AUTH_WAIT,
			                                .msg = &w->wait_msg.base, .cb = wait_done};
			srv_call_ref(c);
			node_submit(c->node, &w->wait_req);
			return;
		}
	}
	pthread_mutex_unlock(&w->mu);
	submit_msg(c, msg);
}

static void submit_msg(struct srv_call *c, ProtobufCMessage *msg)
{
	struct wstream *w = c->user;
	struct wreq *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		protobuf_c_message_free_unpacked(msg, NULL);
		return;
	}
	r->c = c;
	r->wr.stream = &w->nws;
	r->wr.req.op = NODE_WATCH;
	r->wr.req.msg = msg;
	r->wr.req.cb = req_done;
	/* etcd checks a watch's range when it is created, with the stream's
	 * credentials of that moment. */
	if (((Etcdserverpb__WatchRequest *)msg)->request_union_case ==
	    ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST)
		r->wr.auth_err = node_auth_resolve(c->node, c->token, c->peer_cn, &r->auth_user,
		                                   &r->wr.req.auth_rev);
	r->wr.req.auth_user = r->auth_user;
	srv_call_ref(c);
	node_submit(c->node, &r->wr.req);
}

static void close_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct wstream *w = SRV_CONTAINER_OF(req, struct wstream, close_req.req);
	struct srv_call *c = w->c;
	(void)err;
	(void)len;
	free(resp);
	/* Nothing is sent by the node any more: end the call. A client that
	 * half-closed gets OK; a cancelled call has nobody to tell. */
	srv_stream_finish(c, 0);
	c->user = NULL;
	pthread_mutex_destroy(&w->mu);
	free(w);
	srv_call_unref(c);
}

static void on_end(struct srv_call *c, int cancelled)
{
	struct wstream *w = c->user;
	w->ended_cancelled = cancelled;
	pthread_mutex_lock(&w->mu);
	if (w->waiting && pend_locked(w, NULL)) { /* after what waits */
		pthread_mutex_unlock(&w->mu);
		return;
	}
	pthread_mutex_unlock(&w->mu);
	submit_close(c);
}

static void submit_close(struct srv_call *c)
{
	struct wstream *w = c->user;
	w->close_req.stream = &w->nws;
	w->close_req.req.op = NODE_WATCH_CLOSE;
	w->close_req.req.msg = NULL;
	w->close_req.req.cb = close_done;
	node_submit(c->node, &w->close_req.req);
}

/* etcd keeps a watch stream the client half-closed: its watches go on
 * delivering until the client cancels the call or goes away. */
static void on_half_close(struct srv_call *c)
{
	(void)c;
}

static const struct srv_bidi_ops watch_ops = {on_msg, on_end, on_half_close};

static void start_watch(struct srv_call *c)
{
	struct wstream *w = calloc(1, sizeof(*w));

	if (w == NULL) {
		srv_call_reply_err(c, -ENOMEM);
		return;
	}
	w->c = c;
	pthread_mutex_init(&w->mu, NULL);
	w->nws.send = ws_send;
	w->nws.writable = ws_writable;
	w->nws.flush = ws_flush;
	w->nws.end = ws_end;
	w->nws.require_leader = c->require_leader;
	c->user = w;
	srv_call_ref(c); /* the node's registration, until close_done */
	if (srv_bidi_start(c, &watch_ops) != 0) {
		c->user = NULL;
		pthread_mutex_destroy(&w->mu);
		free(w);
		srv_call_unref(c);
	}
}

const struct srv_method srv_watch_methods[] = {
	{"/etcdserverpb.Watch/Watch", &etcdserverpb__watch_request__descriptor, NODE_OP_COUNT_, 0, 4,
	 NULL, start_watch, 1},
	{NULL, NULL, NODE_OP_COUNT_, 0, 0, NULL, NULL, 0},
};
