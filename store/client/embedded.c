/* embedded.c - the embedded back end: a store member (store/node) in this
 * process, driven the way store/server drives it, without gRPC.
 *
 * Threads. The member runs on a private thread with its own libuv loop
 * (raft, LMDB commits and the watch hub must not wait for the caller's
 * loop, and blocking calls must work from any thread, the loop thread
 * included). Requests go in with node_submit() (thread-safe); the node
 * answers on its thread, and each answer is put on a locked FIFO and the
 * caller's loop woken (uv_async_t), so every callback runs on the caller's
 * loop thread, in the order the node answered. A blocking call waits on a
 * condition variable instead. Serializable ranges are read on the calling
 * thread (node_read_serializable).
 *
 * Results are the node's packed responses, unpacked and decoded by the
 * remote client's decoders (ops.c's struct bc_method); watch responses go
 * through watch.c's bc_watch_response, so both back ends deliver the same.
 *
 * Close: cancel every live request, watch and keep-alive; once none is
 * left, wake the member's thread to stop (server, then node); when its loop
 * ended, the caller's loop joins it and frees everything. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* core/errors.h first: bollard/store.h then skips its copy of the enum. */
#include "core/errors.h"
#include "client_int.h"
#include "core/validate.h"
#include "node/log.h"
#include "node/node.h"
#include "server/server.h"

#define WATCH_MAX_QUEUED 256 /* responses in flight to the caller per watch */
#define KA_TICK_MS 100

/* Something the caller's loop must handle, queued by the member's thread. */
struct emb_item {
	struct emb_item *next;
	void (*fn)(struct emb_item *it);
};

struct bc_emb {
	struct bollard_client *c;
	/* the member's thread */
	pthread_t thread;
	uv_loop_t nloop;
	uv_async_t stop_async;
	struct node *node;
	struct etcd_server *srv;
	struct node_config cfg;
	char *strs[16];
	size_t n_strs;
	char *listen_client_urls;
	int lock_fd; /* flock on the data dir: one store per data dir */
	/* start-up handshake */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool started;
	int start_rc;
	char err[512];
	/* caller side (c->loop != NULL) */
	uv_async_t async;
	struct emb_item *head, **tail; /* under mu */
	bool node_down;                /* under mu: the member's loop ended */
	bool stop_sent;
};

/* The member's thread's own client: etcd_server_shutdown's callback has no
 * user data. One per thread, so no process-wide state. */
static __thread struct bc_emb *tls_emb;

static void post(struct bc_emb *e, struct emb_item *it)
{
	it->next = NULL;
	pthread_mutex_lock(&e->mu);
	*e->tail = it;
	e->tail = &it->next;
	pthread_mutex_unlock(&e->mu);
	uv_async_send(&e->async);
}

/* ---- the member's thread ---- */

static void node_closed(struct node *n)
{
	struct bc_emb *e = tls_emb;
	(void)n;
	uv_close((uv_handle_t *)&e->stop_async, NULL);
}

static void server_stopped(struct etcd_server *s)
{
	(void)s;
	node_close(tls_emb->node, node_closed);
}

static void on_stop(uv_async_t *a)
{
	struct bc_emb *e = a->data;

	if (e->srv)
		etcd_server_shutdown(e->srv, server_stopped);
	else
		node_close(e->node, node_closed);
}

static void started(struct bc_emb *e, int rc)
{
	pthread_mutex_lock(&e->mu);
	e->started = true;
	e->start_rc = rc;
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
}

static void *member_main(void *arg)
{
	struct bc_emb *e = arg;
	sigset_t all;
	int rc;

	/* Signals belong to the application (raft's writes to a vanished
	 * peer then fail with EPIPE instead of raising SIGPIPE). */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	tls_emb = e;
	if ((rc = uv_loop_init(&e->nloop)) != 0) {
		snprintf(e->err, sizeof(e->err), "uv_loop_init: %s", uv_strerror(rc));
		started(e, rc);
		return NULL;
	}
	uv_async_init(&e->nloop, &e->stop_async, on_stop);
	e->stop_async.data = e;
	rc = node_create(&e->node, &e->nloop, &e->cfg, e->err, sizeof(e->err));
	if (rc == 0 && (rc = node_start(e->node)) != 0)
		snprintf(e->err, sizeof(e->err), "cannot start the member");
	if (rc == 0 && e->listen_client_urls &&
	    (rc = etcd_server_start(&e->srv, &e->nloop, e->node, e->listen_client_urls, e->err,
	                            sizeof(e->err))) != 0)
		e->srv = NULL;
	if (rc != 0) {
		/* Undo on this thread, then report (the opener frees). */
		if (e->node)
			node_close(e->node, node_closed);
		else
			uv_close((uv_handle_t *)&e->stop_async, NULL);
		uv_run(&e->nloop, UV_RUN_DEFAULT);
		uv_loop_close(&e->nloop);
		started(e, rc);
		return NULL;
	}
	started(e, 0);
	uv_run(&e->nloop, UV_RUN_DEFAULT);
	uv_loop_close(&e->nloop);
	if (e->c->loop) {
		pthread_mutex_lock(&e->mu);
		e->node_down = true;
		pthread_mutex_unlock(&e->mu);
		uv_async_send(&e->async);
	}
	return NULL;
}

/* ---- open / close ---- */

static const char *keep(struct bc_emb *e, const char *s)
{
	char *d;
	if (!s || e->n_strs == sizeof(e->strs) / sizeof(e->strs[0]))
		return NULL;
	if (!(d = strdup(s)))
		return NULL;
	e->strs[e->n_strs++] = d;
	return d;
}

static void free_emb(struct bollard_client *c)
{
	struct bc_emb *e = c->emb;

	if (e->srv)
		etcd_server_destroy(e->srv);
	node_destroy(e->node);
	for (size_t i = 0; i < e->n_strs; i++)
		free(e->strs[i]);
	free(e->listen_client_urls);
	if (e->lock_fd >= 0)
		close(e->lock_fd);
	pthread_mutex_destroy(&e->mu);
	pthread_cond_destroy(&e->cv);
	free(e);
	free(c);
}

static void async_closed(uv_handle_t *h)
{
	struct bollard_client *c = h->data;
	bollard_close_cb cb = c->close_cb;
	void *data = c->close_data;

	free_emb(c);
	if (cb)
		cb(c, data); /* the pointer is only an identity now */
}

static void on_async(uv_async_t *a)
{
	struct bollard_client *c = a->data;
	struct bc_emb *e = c->emb;
	struct emb_item *list;
	bool down;

	pthread_mutex_lock(&e->mu);
	list = e->head;
	e->head = NULL;
	e->tail = &e->head;
	down = e->node_down;
	pthread_mutex_unlock(&e->mu);
	while (list) {
		struct emb_item *it = list;
		list = it->next;
		it->fn(it);
	}
	if (down) {
		pthread_join(e->thread, NULL);
		uv_close((uv_handle_t *)&e->async, async_closed);
	}
}

static void set_level(const char *s)
{
	int level = s ? blog_parse_level(s) : -1;
	if (level >= 0)
		blog_set_level(level);
}

/* LMDB must not be opened twice by one process, and raft's log by two
 * members: refuse a data dir another embedded store (of any process) has
 * open. flock() locks belong to the open file, so this holds within one
 * process too. (bollard-store itself does not take this lock yet.) */
static int lock_dir(struct bc_emb *e, const char *dir)
{
	char path[4096];

	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/embedded.lock", dir);
	if ((e->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return -errno;
	if (flock(e->lock_fd, LOCK_EX | LOCK_NB) != 0)
		return errno == EWOULDBLOCK ? -EBUSY : -errno;
	return 0;
}

int bollard_open_embedded(struct bollard_client **out, uv_loop_t *loop,
                          const struct bollard_embedded_options *o)
{
	struct bollard_client *c;
	struct bc_emb *e;
	struct node_config *cfg;
	int rc;

	if (out)
		*out = NULL;
	if (!out || !o || !o->data_dir || !o->data_dir[0])
		return -EINVAL;
	if (o->log_level && blog_parse_level(o->log_level) < 0)
		return -EINVAL;
	/* Cluster members forward to the leader over the client port. */
	if (o->initial_cluster && !o->listen_client_urls)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	e = calloc(1, sizeof(*e));
	if (!c || !e) {
		free(c);
		free(e);
		return -ENOMEM;
	}
	c->emb = e;
	e->lock_fd = -1;
	c->loop = loop;
	c->live.next = c->live.prev = &c->live;
	e->c = c;
	e->tail = &e->head;
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	cfg = &e->cfg;
	node_config_init(cfg);
#define STR(field, def)                                                                          \
	do {                                                                                       \
		const char *v_ = o->field ? o->field : (def);                                      \
		if (v_ && !(cfg->field = keep(e, v_)))                                             \
			goto nomem;                                                                \
	} while (0)
	STR(data_dir, NULL);
	STR(name, NULL);
	STR(initial_cluster, NULL);
	STR(initial_cluster_state, NULL);
	STR(initial_cluster_token, NULL);
	/* A single member needs no well-known peer port: an ephemeral one on
	 * loopback keeps several embedded stores (and a bollard-store on 2380)
	 * out of each other's way. */
	STR(listen_peer_urls, o->initial_cluster ? NULL : "http://127.0.0.1:0");
	STR(initial_advertise_peer_urls,
	    o->initial_cluster ? NULL : o->listen_peer_urls ? o->listen_peer_urls : "http://127.0.0.1:0");
	STR(advertise_client_urls, o->listen_client_urls);
	STR(auto_compaction_mode, NULL);
	STR(auto_compaction_retention, NULL);
#undef STR
	if (!o->initial_cluster) {
		/* "<name>=<advertised peer url>", as the binary's default. */
		char ic[600];
		snprintf(ic, sizeof(ic), "%s=%s", cfg->name, cfg->initial_advertise_peer_urls);
		if (!(cfg->initial_cluster = keep(e, ic)))
			goto nomem;
	}
	if (o->listen_client_urls && !(e->listen_client_urls = strdup(o->listen_client_urls)))
		goto nomem;
	if (o->heartbeat_ms)
		cfg->heartbeat_ms = o->heartbeat_ms;
	if (o->election_ms)
		cfg->election_ms = o->election_ms;
	if (o->snapshot_count)
		cfg->snapshot_count = o->snapshot_count;
	if (o->quota_backend_bytes)
		cfg->quota_backend_bytes = o->quota_backend_bytes;
	set_level(o->log_level);
	cfg->log_level = blog_level();
	if ((rc = lock_dir(e, o->data_dir)) != 0)
		goto fail;

	if ((rc = -pthread_create(&e->thread, NULL, member_main, e)) != 0)
		goto fail;
	pthread_mutex_lock(&e->mu);
	while (!e->started)
		pthread_cond_wait(&e->cv, &e->mu);
	rc = e->start_rc;
	pthread_mutex_unlock(&e->mu);
	if (rc != 0) {
		blog(BLOG_ERROR, "bollard", "cannot open the embedded store: %s", e->err);
		pthread_join(e->thread, NULL);
		goto fail;
	}
	/* On the caller's loop thread (the rule for opening with a loop). */
	if (loop && (rc = uv_async_init(loop, &e->async, on_async)) != 0) {
		uv_async_send(&e->stop_async);
		pthread_join(e->thread, NULL);
		goto fail;
	}
	e->async.data = c;
	*out = c;
	return 0;
nomem:
	rc = -ENOMEM;
fail:
	free_emb(c);
	return rc;
}

void bc_emb_maybe_finish_close(struct bollard_client *c)
{
	struct bc_emb *e = c->emb;

	if (!c->closing || c->live.next != &c->live || e->stop_sent)
		return;
	e->stop_sent = true;
	uv_async_send(&e->stop_async); /* the member's loop; node_down follows */
}

void bc_emb_close(struct bollard_client *c, bollard_close_cb close_cb, void *data)
{
	struct bc_emb *e = c->emb;

	if (c->closing)
		return;
	c->closing = true;
	c->close_cb = close_cb;
	c->close_data = data;
	if (!c->loop) {
		e->stop_sent = true;
		uv_async_send(&e->stop_async);
		pthread_join(e->thread, NULL);
		free_emb(c);
		if (close_cb)
			close_cb(c, data);
		return;
	}
	for (struct bc_live *l = c->live.next, *next; l != &c->live; l = next) {
		next = l->next;
		l->cancel(l);
	}
	bc_emb_maybe_finish_close(c);
}

/* ---- unary requests ---- */

struct emb_call {
	struct bc_live live;
	struct node_req nreq;
	struct emb_item item;
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
	/* blocking */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool fin;
};

static int decode(const struct bc_method *m, int err, const uint8_t *resp, size_t len,
                  struct bollard_result *res)
{
	ProtobufCMessage *pm;

	memset(res, 0, sizeof(*res));
	if (err)
		return err;
	if (!(pm = protobuf_c_message_unpack(m->resp, NULL, len, resp)))
		return -EPROTO;
	err = m->decode(pm, res);
	protobuf_c_message_free_unpacked(pm, NULL);
	if (err)
		bollard_result_free(res);
	return err;
}

static void call_free(struct emb_call *k)
{
	free(k->resp);
	if (k->msg)
		protobuf_c_message_free_unpacked(k->msg, NULL);
	free(k);
}

/* Caller's loop: the answer of an asynchronous request. */
static void call_item(struct emb_item *it)
{
	struct emb_call *k = (struct emb_call *)((char *)it - offsetof(struct emb_call, item));
	struct bollard_client *c = k->c;
	struct bollard_req *req = k->req;
	bollard_req_cb cb = k->cb;
	int rc;

	if (k->cancelled || c->closing) {
		memset(&req->result, 0, sizeof(req->result));
		rc = -ECANCELED;
	} else {
		rc = decode(k->m, k->err, k->resp, k->len, &req->result);
	}
	req->internal_ = NULL;
	bc_live_remove(c, &k->live);
	call_free(k);
	cb(req, rc);
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
		post(k->c->emb, &k->item);
		return;
	}
	pthread_mutex_lock(&k->mu);
	k->fin = true;
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->mu);
}

static void cancel_call(struct bc_live *l)
{
	((struct emb_call *)l)->cancelled = true; /* answered -ECANCELED when the node is done */
}

/* etcd's checks before raft, as store/server's adapters make them. */
static int precheck(struct bc_emb *e, const struct bc_method *m, const ProtobufCMessage *msg,
                    size_t packed)
{
	if (m->via_raft && packed > (size_t)node_max_request_bytes(e->node))
		return BOLLARD_EREQUEST_TOO_LARGE;
	switch (m->node_op) {
	case NODE_RANGE:
		return validate_range((const Etcdserverpb__RangeRequest *)msg);
	case NODE_PUT:
		return validate_put((const Etcdserverpb__PutRequest *)msg);
	case NODE_DELETE_RANGE:
		return validate_delete_range((const Etcdserverpb__DeleteRangeRequest *)msg);
	case NODE_TXN:
		return validate_txn((const Etcdserverpb__TxnRequest *)msg, node_max_txn_ops(e->node));
	default:
		return 0;
	}
}

int bc_emb_unary(struct bollard_client *c, const struct bc_method *m, const ProtobufCMessage *msg,
                 struct bollard_req *req, bollard_req_cb cb, struct bollard_result *out)
{
	struct bc_emb *e = c->emb;
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
	err = precheck(e, m, k->msg, len);
	if (req) {
		memset(&req->result, 0, sizeof(req->result));
		req->internal_ = k;
		k->req = req;
		k->cb = cb;
		bc_live_add(c, &k->live, cancel_call);
	} else {
		pthread_mutex_init(&k->mu, NULL);
		pthread_cond_init(&k->cv, NULL);
	}
	if (err)
		call_done(&k->nreq, err, NULL, 0); /* answered like the store's own errors */
	else if (m->node_op == NODE_RANGE && ((const Etcdserverpb__RangeRequest *)k->msg)->serializable)
		node_read_serializable(e->node, &k->nreq);
	else
		node_submit(e->node, &k->nreq);
	if (req)
		return 0;
	pthread_mutex_lock(&k->mu);
	while (!k->fin)
		pthread_cond_wait(&k->cv, &k->mu);
	pthread_mutex_unlock(&k->mu);
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
	struct emb_item create_item, close_item;
	struct bollard_client *c;
	struct bc_watch_core k;
	ProtobufCMessage *create_msg;
	atomic_int queued; /* responses posted, not yet handled */
	int create_err;
	bool close_sent;
};

struct emb_msg {
	struct emb_item item;
	struct emb_watch *x;
	uint8_t *buf;
	size_t len;
};

static void watch_close(struct emb_watch *x)
{
	if (x->close_sent)
		return;
	x->close_sent = true;
	node_submit(x->c->emb->node, &x->close_req.req);
}

/* Caller's loop: one WatchResponse. */
static void msg_item(struct emb_item *it)
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
static int ws_send(struct node_watch_stream *ws, uint8_t *buf, size_t len, bool force)
{
	struct emb_watch *x = (struct emb_watch *)((char *)ws - offsetof(struct emb_watch, nws));
	struct emb_msg *mm;

	if (!force && atomic_load(&x->queued) >= WATCH_MAX_QUEUED)
		return 1; /* the hub catches this watch up later */
	if (!(mm = malloc(sizeof(*mm))))
		return 1;
	mm->item.fn = msg_item;
	mm->x = x;
	mm->buf = buf;
	mm->len = len;
	atomic_fetch_add(&x->queued, 1);
	post(x->c->emb, &mm->item);
	return 0;
}

static bool ws_writable(struct node_watch_stream *ws)
{
	struct emb_watch *x = (struct emb_watch *)((char *)ws - offsetof(struct emb_watch, nws));
	return atomic_load(&x->queued) < WATCH_MAX_QUEUED;
}

static void create_item(struct emb_item *it)
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
	post(x->c->emb, &x->create_item);
}

/* Caller's loop: the node will send nothing more; the last callback. */
static void close_item(struct emb_item *it)
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
	post(x->c->emb, &x->close_item);
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
	node_submit(c->emb->node, &x->create_req.req);
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

/* ---- lease keep-alive: one NODE_LEASE_KEEPALIVE every ttl/3 ---- */

struct emb_ka {
	struct bc_live live;
	struct bollard_client *c;
	struct bollard_keepalive *ka;
	bollard_keepalive_cb cb;
	uv_timer_t timer;
	struct node_req nreq;
	Etcdserverpb__LeaseKeepAliveRequest msg;
	struct emb_item item;
	int err;
	uint8_t *resp;
	size_t len;
	uint64_t last_ok, next_send;
	bool inflight, stopping, timer_closed;
	int final_err;
};

static void ka_maybe_done(struct emb_ka *k)
{
	struct bollard_keepalive *ka = k->ka;
	bollard_keepalive_cb cb = k->cb;
	int err = k->final_err ? k->final_err : -ECANCELED;

	if (!k->stopping || k->inflight || !k->timer_closed)
		return;
	bc_live_remove(k->c, &k->live);
	free(k);
	ka->internal_ = NULL;
	cb(ka, err);
}

static void ka_timer_closed(uv_handle_t *h)
{
	struct emb_ka *k = h->data;
	k->timer_closed = true;
	ka_maybe_done(k);
}

static void ka_stop(struct emb_ka *k, int err)
{
	if (k->stopping)
		return;
	k->stopping = true;
	if (!k->final_err)
		k->final_err = err;
	uv_close((uv_handle_t *)&k->timer, ka_timer_closed);
}

static uint64_t ka_ttl_ms(const struct emb_ka *k)
{
	return k->ka->ttl > 0 ? (uint64_t)k->ka->ttl * 1000 : 10000;
}

static void ka_item(struct emb_item *it)
{
	struct emb_ka *k = (struct emb_ka *)((char *)it - offsetof(struct emb_ka, item));
	Etcdserverpb__LeaseKeepAliveResponse *r = NULL;

	k->inflight = false;
	if (!k->stopping) {
		if (k->err == 0)
			r = (Etcdserverpb__LeaseKeepAliveResponse *)protobuf_c_message_unpack(
				&etcdserverpb__lease_keep_alive_response__descriptor, NULL, k->len, k->resp);
		if (k->err == BOLLARD_ELEASE_NOT_FOUND || (r && r->ttl <= 0)) {
			ka_stop(k, BOLLARD_ELEASE_NOT_FOUND);
		} else if (r) {
			uint64_t now = uv_now(k->c->loop);
			k->ka->ttl = r->ttl;
			k->ka->n_refreshed++;
			k->last_ok = now;
			k->next_send = now + (uint64_t)r->ttl * 1000 / 3;
		}
		/* other errors (no leader yet, ...): the next tick tries again */
	}
	if (r)
		protobuf_c_message_free_unpacked(&r->base, NULL);
	free(k->resp);
	k->resp = NULL;
	ka_maybe_done(k);
}

static void ka_done(struct node_req *nr, int err, uint8_t *resp, size_t len)
{
	struct emb_ka *k = nr->data;
	k->err = err;
	k->resp = resp;
	k->len = len;
	k->item.fn = ka_item;
	post(k->c->emb, &k->item);
}

static void ka_tick(uv_timer_t *t)
{
	struct emb_ka *k = t->data;
	uint64_t now = uv_now(k->c->loop);

	if (now - k->last_ok > ka_ttl_ms(k)) {
		ka_stop(k, -ETIMEDOUT);
		return;
	}
	if (now >= k->next_send && !k->inflight) {
		uint64_t period = ka_ttl_ms(k) / 3;
		k->inflight = true;
		k->next_send = now + (period > 0 ? period : 1);
		node_submit(k->c->emb->node, &k->nreq);
	}
}

static void cancel_ka(struct bc_live *l)
{
	ka_stop((struct emb_ka *)l, -ECANCELED);
}

int bc_emb_keepalive_start(struct bollard_client *c, struct bollard_keepalive *ka, int64_t id,
                           bollard_keepalive_cb cb)
{
	struct emb_ka *k = calloc(1, sizeof(*k));

	if (!k)
		return -ENOMEM;
	k->c = c;
	k->ka = ka;
	k->cb = cb;
	etcdserverpb__lease_keep_alive_request__init(&k->msg);
	k->msg.id = id;
	k->nreq.data = k;
	k->nreq.op = NODE_LEASE_KEEPALIVE;
	k->nreq.msg = &k->msg.base;
	k->nreq.cb = ka_done;
	ka->ttl = 0;
	ka->n_refreshed = 0;
	ka->internal_ = k;
	uv_timer_init(c->loop, &k->timer);
	k->timer.data = k;
	k->last_ok = uv_now(c->loop);
	uv_timer_start(&k->timer, ka_tick, 0, KA_TICK_MS);
	bc_live_add(c, &k->live, cancel_ka);
	return 0;
}

int bc_emb_keepalive_stop(struct bollard_keepalive *ka)
{
	struct emb_ka *k = ka->internal_;

	if (k->stopping)
		return -EINVAL;
	ka_stop(k, -ECANCELED);
	return 0;
}
