/* embedded.c - the calls of the embedded back end: requests, watches and
 * keep-alives handed to the store member this process runs (member.c),
 * driven the way store/server drives it, without gRPC.
 *
 * Requests go in with node_submit() (thread-safe); the node answers on its
 * thread and the answer is handed to the caller's loop (bc_emb_post), so
 * every callback runs on the caller's loop thread, in the order the node
 * answered. A blocking call waits on a condition variable instead.
 * Serializable ranges are read on the calling thread
 * (node_read_serializable).
 *
 * Results are the node's packed responses, unpacked and decoded by the
 * remote client's decoders (ops.c's struct bc_method); watch responses go
 * through watch.c's bc_watch_response, so both back ends deliver the same. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* core/errors.h first: bollard/store.h then skips its copy of the enum. */
#include "core/errors.h"
#include "client_int.h"
#include "core/validate.h"
#include "member.h"

#define WATCH_MAX_QUEUED 256 /* responses in flight to the caller per watch */

/* ---- unary requests ---- */

struct emb_call {
	struct bc_live live;
	struct node_req nreq;
	struct bc_emb_item item;
	struct bollard_client *c;
	const struct bc_method *m;
	ProtobufCMessage *msg; /* owned copy */
	int err;
	uint8_t *resp;
	size_t len;
	/* asynchronous */
	struct bollard_req *req;
	bollard_req_cb cb;
	bool cancelled;
	bool timed_out; /* req got -ETIMEDOUT; the node's answer is dropped */
	uv_timer_t timer; /* the request timeout (caller's loop) */
	/* blocking */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool fin;
	bool abandoned; /* the caller gave up (-ETIMEDOUT): call_done frees */
};

static int decode(const struct bc_method *m, int err, const uint8_t *resp, size_t len,
                  struct bollard_result *res)
{
	ProtobufCMessage *pm;

	memset(res, 0, sizeof(*res));
	if (err)
		return err;
	pm = protobuf_c_message_unpack(m->resp, NULL, len, resp);
	err = bc_method_decode(m, pm, res);
	if (pm)
		protobuf_c_message_free_unpacked(pm, NULL);
	return err;
}

static void call_free(struct emb_call *k)
{
	free(k->resp);
	if (k->msg)
		protobuf_c_message_free_unpacked(k->msg, NULL);
	free(k);
}

static void timer_closed(uv_handle_t *h)
{
	call_free(h->data);
}

/* Caller's loop: the request timeout passed before the node answered. The
 * caller hears -ETIMEDOUT now (a write's outcome is unknown); the call stays
 * live until the node's answer, which is dropped. */
static void call_timeout(uv_timer_t *t)
{
	struct emb_call *k = t->data;
	struct bollard_req *req = k->req;

	k->timed_out = true;
	memset(&req->result, 0, sizeof(req->result));
	req->internal_ = NULL;
	k->cb(req, -ETIMEDOUT);
}

/* Caller's loop: the answer of an asynchronous request. */
static void call_item(struct bc_emb_item *it)
{
	struct emb_call *k = (struct emb_call *)((char *)it - offsetof(struct emb_call, item));
	struct bollard_client *c = k->c;
	struct bollard_req *req = k->req;
	bollard_req_cb cb = k->cb;
	bool timed_out = k->timed_out;
	int rc = 0;

	if (timed_out) {
		/* answered already */
	} else if (k->cancelled || c->closing) {
		memset(&req->result, 0, sizeof(req->result));
		rc = -ECANCELED;
	} else {
		rc = decode(k->m, k->err, k->resp, k->len, &req->result);
	}
	bc_live_remove(c, &k->live);
	uv_close((uv_handle_t *)&k->timer, timer_closed); /* frees k */
	if (!timed_out) {
		req->internal_ = NULL;
		cb(req, rc);
	}
}

/* The member's thread (or the calling thread, for serializable reads and
 * after the member stopped). */
static void call_done(struct node_req *nr, int err, uint8_t *resp, size_t len)
{
	struct emb_call *k = nr->data;

	k->err = err;
	k->resp = resp;
	k->len = len;
	if (k->req) {
		k->item.fn = call_item;
		bc_emb_post(k->c, &k->item);
		return;
	}
	pthread_mutex_lock(&k->mu);
	if (k->abandoned) {
		pthread_mutex_unlock(&k->mu);
		pthread_mutex_destroy(&k->mu);
		pthread_cond_destroy(&k->cv);
		call_free(k);
		return;
	}
	k->fin = true;
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->mu);
}

/* Wait for the node's answer until the request timeout: true if it came
 * (else the call is left to call_done to free). */
static bool call_wait(struct emb_call *k, unsigned ms)
{
	struct timespec dl;
	bool fin;

	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += ms / 1000;
	dl.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&k->mu);
	while (!k->fin && pthread_cond_timedwait(&k->cv, &k->mu, &dl) != ETIMEDOUT)
		;
	fin = k->fin;
	if (!fin)
		k->abandoned = true;
	pthread_mutex_unlock(&k->mu);
	return fin;
}

static void cancel_call(struct bc_live *l)
{
	((struct emb_call *)l)->cancelled = true; /* answered -ECANCELED when the node is done */
}

/* etcd's checks before raft, as store/server's adapters make them. */
static int precheck(struct node *node, const struct bc_method *m, const ProtobufCMessage *msg,
                    size_t packed)
{
	if (m->via_raft && packed > (size_t)node_max_request_bytes(node))
		return BOLLARD_EREQUEST_TOO_LARGE;
	switch (m->node_op) {
	case NODE_RANGE:
		return validate_range((const Etcdserverpb__RangeRequest *)msg);
	case NODE_PUT:
		return validate_put((const Etcdserverpb__PutRequest *)msg);
	case NODE_DELETE_RANGE:
		return validate_delete_range((const Etcdserverpb__DeleteRangeRequest *)msg);
	case NODE_TXN:
		return validate_txn((const Etcdserverpb__TxnRequest *)msg, node_max_txn_ops(node));
	default:
		return 0;
	}
}

int bc_emb_unary(struct bollard_client *c, const struct bc_method *m, const ProtobufCMessage *msg,
                 struct bollard_req *req, bollard_req_cb cb, struct bollard_result *out)
{
	struct node *node = bc_emb_node(c);
	struct emb_call *k;
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf;
	int err;

	if (out)
		memset(out, 0, sizeof(*out));
	if (req && (!c->loop || !cb))
		return -EINVAL;
	if (req && c->closing)
		return -ECANCELED;
	if (!(k = calloc(1, sizeof(*k))))
		return -ENOMEM;
	/* The node reads the request until it answers: an owned copy. */
	if (!(buf = malloc(len ? len : 1))) {
		free(k);
		return -ENOMEM;
	}
	protobuf_c_message_pack(msg, buf);
	k->msg = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
	free(buf);
	if (!k->msg) {
		free(k);
		return -ENOMEM;
	}
	k->c = c;
	k->m = m;
	k->nreq.data = k;
	k->nreq.op = (enum node_op)m->node_op;
	k->nreq.msg = k->msg;
	k->nreq.cb = call_done;
	err = precheck(node, m, k->msg, len);
	if (req) {
		memset(&req->result, 0, sizeof(req->result));
		req->internal_ = k;
		k->req = req;
		k->cb = cb;
		bc_live_add(c, &k->live, cancel_call);
		k->live.ends_with_member = true;
		uv_timer_init(c->loop, &k->timer);
		k->timer.data = k;
		uv_timer_start(&k->timer, call_timeout, c->req_ms, 0);
	} else {
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_mutex_init(&k->mu, NULL);
		pthread_cond_init(&k->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (err)
		call_done(&k->nreq, err, NULL, 0); /* answered like the store's own errors */
	else if (m->node_op == NODE_RANGE && ((const Etcdserverpb__RangeRequest *)k->msg)->serializable)
		node_read_serializable(node, &k->nreq);
	else
		node_submit(node, &k->nreq);
	if (req)
		return 0;
	if (!call_wait(k, c->req_ms))
		return -ETIMEDOUT; /* out stays zeroed */
	pthread_mutex_destroy(&k->mu);
	pthread_cond_destroy(&k->cv);
	{
		struct bollard_result tmp;
		err = decode(m, k->err, k->resp, k->len, out ? out : &tmp);
		if (!out && err == 0)
			bollard_result_free(&tmp);
	}
	call_free(k);
	return err;
}

/* ---- watches: one node watch stream per watch ---- */

struct emb_watch {
	struct bc_live live;
	struct node_watch_stream nws;
	struct node_watch_req create_req, close_req;
	struct bc_emb_item create_item, close_item;
	struct bollard_client *c;
	struct bc_watch_core k;
	ProtobufCMessage *create_msg;
	atomic_int queued; /* responses posted, not yet handled */
	int create_err;
	bool close_sent;
};

struct emb_msg {
	struct bc_emb_item item;
	struct emb_watch *x;
	uint8_t *buf;
	size_t len;
};

static void watch_close(struct emb_watch *x)
{
	if (x->close_sent)
		return;
	x->close_sent = true;
	node_submit(bc_emb_node(x->c), &x->close_req.req);
}

/* Caller's loop: one WatchResponse. */
static void msg_item(struct bc_emb_item *it)
{
	struct emb_msg *mm = (struct emb_msg *)it;
	struct emb_watch *x = mm->x;
	Etcdserverpb__WatchResponse *r;

	atomic_fetch_sub(&x->queued, 1);
	if (!x->close_sent && !x->k.cancelled) {
		r = (Etcdserverpb__WatchResponse *)protobuf_c_message_unpack(
			&etcdserverpb__watch_response__descriptor, NULL, mm->len, mm->buf);
		if (!r) {
			x->k.final_err = -EPROTO;
			watch_close(x);
		} else {
			if (bc_watch_response(&x->k, r))
				watch_close(x);
			protobuf_c_message_free_unpacked(&r->base, NULL);
		}
	}
	free(mm->buf);
	free(mm);
}

/* The member's thread: never blocks. */
static int ws_send(struct node_watch_stream *ws, uint8_t *buf, size_t len, bool force,
                   int64_t watch_id, size_t events_at)
{
	struct emb_watch *x = (struct emb_watch *)((char *)ws - offsetof(struct emb_watch, nws));
	struct emb_msg *mm;

	(void)watch_id; /* each response is handed over as it comes */
	(void)events_at;
	if (!force && atomic_load(&x->queued) >= WATCH_MAX_QUEUED)
		return 1; /* the hub catches this watch up later */
	if (!(mm = malloc(sizeof(*mm))))
		return 1;
	mm->item.fn = msg_item;
	mm->x = x;
	mm->buf = buf;
	mm->len = len;
	atomic_fetch_add(&x->queued, 1);
	bc_emb_post(x->c, &mm->item);
	return 0;
}

static bool ws_writable(struct node_watch_stream *ws)
{
	struct emb_watch *x = (struct emb_watch *)((char *)ws - offsetof(struct emb_watch, nws));
	return atomic_load(&x->queued) < WATCH_MAX_QUEUED;
}

static void create_item(struct bc_emb_item *it)
{
	struct emb_watch *x = (struct emb_watch *)((char *)it - offsetof(struct emb_watch, create_item));

	if (x->create_err && !x->k.final_err)
		x->k.final_err = x->create_err;
	if (x->create_err)
		watch_close(x);
}

static void create_done(struct node_req *nr, int err, uint8_t *resp, size_t len)
{
	struct emb_watch *x = nr->data;
	(void)len;
	free(resp);
	x->create_err = err;
	x->create_item.fn = create_item;
	bc_emb_post(x->c, &x->create_item);
}

/* Caller's loop: the node will send nothing more; the last callback. */
static void close_item(struct bc_emb_item *it)
{
	struct emb_watch *x = (struct emb_watch *)((char *)it - offsetof(struct emb_watch, close_item));
	struct bollard_client *c = x->c;
	struct bollard_watch *w = x->k.w;
	bollard_watch_cb cb = x->k.cb;
	int err = x->k.cancelled || c->closing ? -ECANCELED
	          : x->k.final_err             ? x->k.final_err
	                                       : -ECONNRESET;

	bc_live_remove(c, &x->live);
	bc_watch_core_free(&x->k);
	protobuf_c_message_free_unpacked(x->create_msg, NULL);
	free(x);
	w->internal_ = NULL;
	cb(w, err, NULL);
}

static void close_done(struct node_req *nr, int err, uint8_t *resp, size_t len)
{
	struct emb_watch *x = nr->data;
	(void)err;
	(void)len;
	free(resp);
	x->close_item.fn = close_item;
	bc_emb_post(x->c, &x->close_item);
}

static void cancel_watch(struct bc_live *l)
{
	struct emb_watch *x = (struct emb_watch *)l;

	x->k.cancelled = true;
	watch_close(x);
}

int bc_emb_watch_start(struct bollard_client *c, struct bollard_watch *w, const void *key,
                       size_t key_len, const struct bollard_watch_options *opts,
                       bollard_watch_cb cb)
{
	struct emb_watch *x = calloc(1, sizeof(*x));
	Etcdserverpb__WatchRequest rq = ETCDSERVERPB__WATCH_REQUEST__INIT;
	Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	Etcdserverpb__WatchCreateRequest__FilterType filters[2];
	uint8_t *buf;
	size_t len;
	int rc;

	if (!x)
		return -ENOMEM;
	if ((rc = bc_watch_core_init(&x->k, w, key, key_len, opts, cb)) != 0) {
		free(x);
		return rc;
	}
	bc_watch_create_req(&x->k, &rq, &cr, filters);
	len = protobuf_c_message_get_packed_size(&rq.base);
	if ((buf = malloc(len ? len : 1)) != NULL) {
		protobuf_c_message_pack(&rq.base, buf);
		x->create_msg = protobuf_c_message_unpack(&etcdserverpb__watch_request__descriptor, NULL,
		                                          len, buf);
		free(buf);
	}
	if (!x->create_msg) {
		bc_watch_core_free(&x->k);
		free(x);
		return -ENOMEM;
	}
	x->c = c;
	x->nws.send = ws_send;
	x->nws.writable = ws_writable;
	x->create_req.stream = x->close_req.stream = &x->nws;
	x->create_req.req.data = x->close_req.req.data = x;
	x->create_req.req.op = NODE_WATCH;
	x->create_req.req.msg = x->create_msg;
	x->create_req.req.cb = create_done;
	x->close_req.req.op = NODE_WATCH_CLOSE;
	x->close_req.req.cb = close_done;
	w->internal_ = x;
	bc_live_add(c, &x->live, cancel_watch);
	node_submit(bc_emb_node(c), &x->create_req.req);
	return 0;
}

int bc_emb_watch_cancel(struct bollard_watch *w)
{
	struct emb_watch *x = w->internal_;

	if (x->k.cancelled)
		return -EINVAL;
	cancel_watch(&x->live);
	return 0;
}

/* ---- lease keep-alive: one NODE_LEASE_KEEPALIVE per refresh (lease.c's
 * schedule) ---- */

struct emb_ka {
	struct bc_ka_core k; /* first: ka->internal_ */
	struct node_req nreq;
	Etcdserverpb__LeaseKeepAliveRequest msg;
	struct bc_emb_item item;
	int err;
	uint8_t *resp;
	size_t len;
	bool inflight;
};

static bool ka_send(struct bc_ka_core *kc)
{
	struct emb_ka *k = (struct emb_ka *)kc;

	if (k->inflight)
		return false;
	k->inflight = true;
	node_submit(bc_emb_node(kc->c), &k->nreq);
	return true;
}

static bool ka_busy(struct bc_ka_core *kc)
{
	return ((struct emb_ka *)kc)->inflight;
}

static void ka_free(struct bc_ka_core *kc)
{
	free(kc);
}

static const struct bc_ka_ops ka_ops = {ka_send, NULL, ka_busy, ka_free};

/* Caller's loop: the node's answer. */
static void ka_item(struct bc_emb_item *it)
{
	struct emb_ka *k = (struct emb_ka *)((char *)it - offsetof(struct emb_ka, item));
	Etcdserverpb__LeaseKeepAliveResponse *r = NULL;

	k->inflight = false;
	if (!k->k.stopping) {
		if (k->err == 0)
			r = (Etcdserverpb__LeaseKeepAliveResponse *)protobuf_c_message_unpack(
				&etcdserverpb__lease_keep_alive_response__descriptor, NULL, k->len, k->resp);
		if (k->err == BOLLARD_ELEASE_NOT_FOUND)
			bc_ka_core_stop(&k->k, BOLLARD_ELEASE_NOT_FOUND);
		else if (r)
			bc_ka_core_answer(&k->k, r->ttl);
		/* other errors (no leader yet, ...): the next tick tries again */
	}
	if (r)
		protobuf_c_message_free_unpacked(&r->base, NULL);
	free(k->resp);
	k->resp = NULL;
	bc_ka_core_maybe_done(&k->k);
}

static void ka_done(struct node_req *nr, int err, uint8_t *resp, size_t len)
{
	struct emb_ka *k = nr->data;
	k->err = err;
	k->resp = resp;
	k->len = len;
	k->item.fn = ka_item;
	bc_emb_post(k->k.c, &k->item);
}

int bc_emb_keepalive_start(struct bollard_client *c, struct bollard_keepalive *ka, int64_t id,
                           bollard_keepalive_cb cb)
{
	struct emb_ka *k = calloc(1, sizeof(*k));

	if (!k)
		return -ENOMEM;
	etcdserverpb__lease_keep_alive_request__init(&k->msg);
	k->msg.id = id;
	k->nreq.data = k;
	k->nreq.op = NODE_LEASE_KEEPALIVE;
	k->nreq.msg = &k->msg.base;
	k->nreq.cb = ka_done;
	bc_ka_core_start(&k->k, c, ka, id, cb, &ka_ops, 0);
	return 0;
}
