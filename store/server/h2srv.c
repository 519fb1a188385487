/* h2srv.c - etcd's gRPC services over our own HTTP/2 (libnghttp2),
 * bypassing the gRPC C core (h2srv.h): the transport only.
 * What a call does (decode, joining-member and login waits, checks,
 * identity, the node, the answer) is dispatch.c's, and what a stream does
 * is its adapter's (watch.c, lease.c, maintenance.c), with the same method
 * tables as the gRPC port; this file is their transport (struct
 * srv_transport, streams included).
 *
 * One thread runs an epoll loop over the listeners (one per address of
 * each URL), the client connections and an eventfd. Each connection has an
 * nghttp2 server session fed with what read() returned (on https://, what
 * SSL_read returned: h2tls.c, OpenSSL on the non-blocking socket, its
 * handshake driven by the same events); a stream's request message is
 * decoded as it arrives, and once the request ended (END_STREAM) the call
 * goes to dispatch.c (writes reach the node with node_submit_quiet, one
 * node_wake per loop iteration; Ranges through node_read). The answer
 * (given on the node's loop thread, or on this thread for a Range served
 * in place or a refused request) is queued for this thread, which is woken
 * once per run of answers through the eventfd; it then submits HEADERS,
 * DATA and the trailers of each answered stream and, at the end of the
 * iteration, writes everything nghttp2 has for a connection at once (one
 * send(), or one SSL_write per TLS record of it).
 *
 * A call with a grpc-timeout is ended at its deadline with
 * DEADLINE_EXCEEDED, as the gRPC C core does, unless answered first (the
 * node drops what expired before it started it; a late answer is
 * dropped): calls sit on a list in deadline order (clients tend to send
 * the same timeout, so a new one usually goes last) and the epoll wait
 * ends at the first deadline.
 *
 * Streams (Watch and LeaseKeepAlive, bidirectional; Snapshot, server
 * streaming): a bidi call goes to its adapter when its HEADERS end, each
 * request message is decoded as it arrives and handed over on this thread
 * (in order; kept while the adapter has not taken the stream yet, and past
 * H2_PEND_MAX bytes of those the stream's window is held: data_consumed),
 * the client's END_STREAM is its half-close. Responses are queued by any
 * thread in a core/sendq.h queue under the stream's lock, within the
 * producer's limits (srv_offer), and taken by the stream's nghttp2 data
 * provider only as the client's HTTP/2 flow-control windows allow: a
 * watcher that does not read fills its queue, and the watch hub then falls
 * back to catching up from history, as with the gRPC port. The status goes
 * in the trailers after the last message (trailers only when nothing was
 * sent), followed by RST_STREAM NO_ERROR when the client had not ended its
 * side, as the gRPC C core does (so does every status, refusals included);
 * a graceful stop ends open streams with etcd's "server stopped"
 * (Unavailable). Such a status, or a deadline's, goes at once, cutting a
 * message half sent to a client that does not read (strm_abort).
 *
 * Liveness as the gRPC port's (core/h2keepalive.c): a PING after 2 h
 * without input, closed without its ACK in 20 s, a TLS handshake closed
 * after 120 s; clients' PINGs are always answered (nghttp2 ACKs them).
 *
 * References on a call (srv_call.refs): one while its HTTP/2 stream is
 * open, one from its dispatch until its answer was taken (or, for a
 * stream the adapter took, until the HTTP/2 stream is gone), one while it
 * waits on a kick list, and the adapters' own. A call the node still
 * holds outlives its stream (and its connection). Only this thread frees
 * calls: a last reference dropped elsewhere hands the call over. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <nghttp2/nghttp2.h>
#include <zlib.h>

#include "core/errors.h"
#include "core/grpcframe.h"
#include "core/h2keepalive.h"
#include "core/hostport.h"
#include "core/metrics.h"
#include "node/node.h"
#include "server/h2srv.h"
#include "server/h2tls.h"
#include "server/listenurl.h"
#include "server/server_int.h"

#define H2_READ_BUF (64 * 1024)
#define H2_MAX_STREAMS 4096
#define H2_STREAM_WINDOW (1 << 20)
#define H2_CONN_WINDOW (16 << 20)
#define H2_EXTRA_MSG_BYTES (512 * 1024) /* over --max-request-bytes, as server.c */
#define H2_POOL_MAX 4096
#define H2_OUT_MAX (1 << 20) /* frames serialized ahead of the socket */
#define H2_DRAIN_MS 10000    /* a graceful stop waits this long for open calls */
/* Request bytes of a bidi stream kept for an adapter that has not taken
 * the stream yet (a joining member's wait) before its window is held. */
#define H2_PEND_MAX H2_STREAM_WINDOW

enum h2_kind { H2_LISTENER, H2_BELL, H2_CONN };

struct h2_conn;

struct h2_call {
	struct etcd_h2 *h;
	struct h2_conn *conn;       /* NULL once the stream or connection is gone */
	int32_t stream_id;
	char *path;                 /* unknown methods only */
	struct grpcframe_rd rd;
	int encoding;               /* grpc-encoding: 0 identity, MAX_WBITS + 16 gzip, MAX_WBITS deflate */
	bool have_msg;              /* a message arrived */
	int fail_code;              /* != 0: a gRPC status decided before dispatch.c */
	char fail_msg[160];
	uint64_t deadline_ns;       /* grpc-timeout on the node's clock, 0: none */
	bool req_ended;             /* the client's END_STREAM came */
	bool dispatched;
	bool answered;              /* its reply (or its deadline's) was given to nghttp2 */
	bool timed;                 /* on the deadline list */
	bool rst_after;             /* RST_STREAM once the status went out */
	struct h2_call *tprev, *tnext;
	/* the answer (h2_reply) */
	int code;
	const char *status_msg;
	char *status_copy;          /* status_msg when it had to be copied */
	uint8_t *resp;
	size_t resp_len, sent;      /* sent: bytes of prefix+resp given to nghttp2 */
	uint8_t prefix[GRPCFRAME_PREFIX];
	struct h2_call *next;       /* answer queue, or the pool */
	struct h2_call *cprev, *cnext; /* the connection's calls */
	struct h2_strm *st;         /* streaming methods only */
	/* Last: its inline request buffer needs no zeroing. */
	struct srv_call base;
};

struct h2_listener {
	enum h2_kind kind;          /* H2_LISTENER: the epoll data */
	int fd;
	bool tls;                   /* https:// */
	struct h2_listener *next;
};

#define H2_CALL_HEAD_SIZE (offsetof(struct h2_call, base) + offsetof(struct srv_call, pb_buf))

struct h2_conn {
	enum h2_kind kind;
	struct etcd_h2 *h;
	int fd;
	bool is_tls;
	bool sniff;                 /* plain text, nothing read yet: HTTP/2 or 1.x? */
	struct h2tls tls;           /* is_tls only */
	bool reread;                /* on the reread list: TLS holds read bytes */
	struct h2ka ka;             /* keepalive pings, handshake deadline */
	struct h2_conn *reread_next;
	/* conn_feed's place in the client's frames: bytes of the preface or
	 * of the current frame left to pass on (skip) or to drop (drop), and a
	 * frame header split across reads (hdr, have). */
	uint32_t skip, drop;
	uint8_t hdr[9];
	uint8_t have;
	nghttp2_session *sess;
	struct h2_call *calls;      /* every call of a stream still open */
	uint8_t *out;               /* serialized frames not yet written */
	size_t out_len, out_off, out_cap;
	bool dirty;                 /* on the flush list */
	bool want_out;              /* EPOLLOUT armed */
	bool closing;
	struct h2_conn *dirty_next;
	struct h2_conn *prev, *next; /* every connection */
};

struct etcd_h2 {
	struct node *node;
	const char *flag;           /* prefix of start errors ("" on the client URLs) */
	int epfd, bell_fd;
	enum h2_kind bkind;         /* epoll data of the bell */
	struct h2_listener *listeners;
	SSL_CTX *ssl_ctx;           /* NULL: no TLS configured */
	struct etcd_http *http1;    /* plain-text HTTP/1.x goes there (NULL: closed) */
	bool client_cert_auth, log_client_cn;
	pthread_t thread;
	bool started;
	int stop;                   /* under mu */
	void (*drain_cb)(void *);   /* under mu: etcd_h2_shutdown's */
	void *drain_arg;
	bool draining, drained;     /* this thread: GOAWAY sent / drain_cb called */
	uint64_t drain_end_ns;
	uint64_t ka_next_ns;        /* the earliest h2ka_next of a connection */
	int64_t max_request_bytes;
	nghttp2_session_callbacks *cbs;
	/* No HTTP semantics checks: grpc-go (etcdctl's --cluster endpoints)
	 * sends the whole URL, "http://host:port", as :authority, which
	 * nghttp2 resets (PROTOCOL_ERROR) while the gRPC C core and etcd
	 * accept it; every header read here is checked here. */
	nghttp2_option *opt;
	struct srv_registered *regs; /* the methods served */
	size_t *path_len;           /* strlen of each one's path */
	size_t nregs;
	/* answers, stream kicks and calls to free from other threads */
	pthread_mutex_t mu;
	pthread_cond_t freed;       /* etcd_h2_stop waits here for the last calls */
	struct h2_call *ans_head, **ans_tail;
	struct h2_call *kicks, *frees;
	bool rung;
	/* this thread only */
	struct h2_call *local_head, **local_tail; /* answers given on this thread */
	struct h2_call *local_kicks;
	size_t ncalls;              /* calls out of the pool */
	struct h2_conn *dirty;
	struct h2_conn *rereads;
	struct h2_conn *conns;
	struct h2_call *pool;
	size_t pool_n;
	struct h2_call *thead, *ttail; /* calls with a deadline, earliest first */
	bool wake_owed;
	uint8_t rbuf[H2_READ_BUF];
};

/* ------------------------------------------------------------ methods */

/* The client services' methods, from the same tables as the gRPC port's
 * (bollard.Internal is the gRPC port's only). */
static int methods_init(struct etcd_h2 *h)
{
	size_t n = 0;

	for (const struct srv_method *const *t = srv_client_services; *t; t++)
		for (const struct srv_method *m = *t; m->path; m++)
			n++;
	if ((h->regs = calloc(n, sizeof(*h->regs))) == NULL ||
	    (h->path_len = calloc(n, sizeof(*h->path_len))) == NULL)
		return -1;
	for (const struct srv_method *const *t = srv_client_services; *t; t++)
		for (const struct srv_method *m = *t; m->path; m++) {
			h->path_len[h->nregs] = strlen(m->path);
			h->regs[h->nregs++].m = m;
		}
	return 0;
}

static const struct srv_registered *method_find(struct etcd_h2 *h, const uint8_t *path,
                                                size_t len)
{
	for (size_t i = 0; i < h->nregs; i++)
		if (h->path_len[i] == len && memcmp(h->regs[i].m->path, path, len) == 0)
			return &h->regs[i];
	return NULL;
}

/* ------------------------------------------------------------- calls */

static const struct srv_transport h2_transport;
static void timer_del(struct etcd_h2 *h, struct h2_call *c);
static void strm_free(struct h2_strm *st);
static void strm_gone(struct h2_call *c);

/* The listener whose thread-only state this thread owns: its h2 thread's
 * (h2_main), then, once etcd_h2_stop joined that thread, the stopping
 * thread's, which ends what is left. Not pthread_equal with h->thread: a
 * joined thread's ID means nothing (comparing it is undefined), and glibc
 * gives it to the next thread created, which would then free calls and
 * run lists beside the stopping thread. */
static __thread const struct etcd_h2 *h2_owned;

static bool on_h2_thread(const struct etcd_h2 *h)
{
	return h2_owned == h;
}

static bool is_stream(const struct srv_registered *reg)
{
	return reg && (reg->m->bidi || reg->m->server_stream);
}

static bool is_bidi(const struct h2_call *c)
{
	return c->base.reg && c->base.reg->m->bidi;
}

/* Wake this thread (the eventfd). */
static void bell_ring(struct etcd_h2 *h)
{
	uint64_t one = 1;
	if (write(h->bell_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		perror("bollard: h2 eventfd");
}

static struct h2_call *call_new(struct etcd_h2 *h, struct h2_conn *conn, int32_t stream_id)
{
	struct h2_call *c = h->pool;

	if (c) {
		h->pool = c->next;
		h->pool_n--;
	} else if ((c = malloc(sizeof(*c))) == NULL) {
		return NULL;
	}
	memset(c, 0, H2_CALL_HEAD_SIZE);
	c->h = h;
	c->conn = conn;
	c->stream_id = stream_id;
	c->base.tp = &h2_transport;
	c->base.node = h->node;
	c->base.t_start_ns = node_clock_ns();
	atomic_init(&c->base.refs, 1); /* the HTTP/2 stream's */
	h->ncalls++;
	grpcframe_rd_init(&c->rd, (size_t)h->max_request_bytes + H2_EXTRA_MSG_BYTES);
	c->cnext = conn->calls;
	if (conn->calls)
		conn->calls->cprev = c;
	conn->calls = c;
	return c;
}

static void call_free(struct h2_call *c)
{
	struct etcd_h2 *h = c->h;

	timer_del(h, c);
	if (c->st)
		strm_free(c->st);
	h->ncalls--;
	srv_call_release(&c->base);
	grpcframe_rd_fini(&c->rd);
	free(c->path);
	free(c->status_copy);
	free(c->resp);
	if (h->pool_n < H2_POOL_MAX) {
		c->next = h->pool;
		h->pool = c;
		h->pool_n++;
	} else {
		free(c);
	}
}

/* The stream is gone (closed, or its connection): its reference goes
 * (dispatch.c and a stream's adapter may hold others). */
static void call_detach(struct h2_call *c)
{
	struct h2_conn *conn = c->conn;

	timer_del(c->h, c); /* no stream left to end */
	if (conn) {
		if (c->cprev)
			c->cprev->cnext = c->cnext;
		else
			conn->calls = c->cnext;
		if (c->cnext)
			c->cnext->cprev = c->cprev;
		c->cprev = c->cnext = NULL;
		c->conn = NULL;
	}
	if (c->st)
		strm_gone(c);
	srv_call_unref(&c->base);
}

/* struct srv_transport's release: the last reference went. Freed here
 * on this thread, else handed to it. */
static void h2_release(struct srv_call *sc)
{
	struct h2_call *c = SRV_CONTAINER_OF(sc, struct h2_call, base);
	struct etcd_h2 *h = c->h;
	bool ring;

	if (on_h2_thread(h)) {
		call_free(c);
		return;
	}
	pthread_mutex_lock(&h->mu);
	c->next = h->frees;
	h->frees = c;
	ring = !h->rung;
	h->rung = true;
	pthread_cond_broadcast(&h->freed);
	pthread_mutex_unlock(&h->mu);
	if (ring)
		bell_ring(h);
}

static void conn_mark(struct h2_conn *conn)
{
	if (!conn->dirty) {
		conn->dirty = true;
		conn->dirty_next = conn->h->dirty;
		conn->h->dirty = conn;
	}
}

/* --------------------------------------------------------- deadlines */

static void timer_add(struct etcd_h2 *h, struct h2_call *c)
{
	struct h2_call *after = h->ttail;

	while (after && after->deadline_ns > c->deadline_ns)
		after = after->tprev;
	c->tprev = after;
	c->tnext = after ? after->tnext : h->thead;
	if (c->tnext)
		c->tnext->tprev = c;
	else
		h->ttail = c;
	if (after)
		after->tnext = c;
	else
		h->thead = c;
	c->timed = true;
}

static void timer_del(struct etcd_h2 *h, struct h2_call *c)
{
	if (!c->timed)
		return;
	if (c->tprev)
		c->tprev->tnext = c->tnext;
	else
		h->thead = c->tnext;
	if (c->tnext)
		c->tnext->tprev = c->tprev;
	else
		h->ttail = c->tprev;
	c->tprev = c->tnext = NULL;
	c->timed = false;
}

/* ---------------------------------------------------------- replying */

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, \
	NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE}

static ssize_t data_read(nghttp2_session *sess, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
	struct h2_call *c = src->ptr;
	size_t total = GRPCFRAME_PREFIX + c->resp_len, n = 0;
	static const nghttp2_nv trailers[] = {NV("grpc-status", "0")};
	(void)user;

	while (n < length && c->sent < total) {
		size_t k;
		if (c->sent < GRPCFRAME_PREFIX) {
			k = GRPCFRAME_PREFIX - c->sent;
			if (k > length - n)
				k = length - n;
			memcpy(buf + n, c->prefix + c->sent, k);
		} else {
			k = total - c->sent;
			if (k > length - n)
				k = length - n;
			memcpy(buf + n, c->resp + (c->sent - GRPCFRAME_PREFIX), k);
		}
		n += k;
		c->sent += k;
	}
	if (c->sent == total) {
		*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (nghttp2_submit_trailer(sess, stream_id, trailers, 1) != 0)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return (ssize_t)n;
}

/* A trailers-only response: the status in the one HEADERS frame. */
static void reply_status(struct h2_call *c, int code, const char *msg)
{
	char codebuf[12], enc[512];
	size_t enclen;
	nghttp2_nv nv[4] = {NV(":status", "200"), NV("content-type", "application/grpc")};

	snprintf(codebuf, sizeof(codebuf), "%d", code);
	enclen = grpcframe_pct_encode(msg, enc, sizeof(enc));
	nv[2] = (nghttp2_nv){(uint8_t *)"grpc-status", (uint8_t *)codebuf, 11, strlen(codebuf),
	                     NGHTTP2_NV_FLAG_NO_COPY_NAME};
	nv[3] = (nghttp2_nv){(uint8_t *)"grpc-message", (uint8_t *)enc, 12, enclen,
	                     NGHTTP2_NV_FLAG_NO_COPY_NAME};
	if (nghttp2_submit_response(c->conn->sess, c->stream_id, nv, enclen ? 4 : 3, NULL) != 0)
		nghttp2_submit_rst_stream(c->conn->sess, NGHTTP2_FLAG_NONE, c->stream_id,
		                          NGHTTP2_INTERNAL_ERROR);
	conn_mark(c->conn);
}

/* Answer c with a status and nothing else: a refusal (before dispatch.c or
 * an adapter took it, a bidi call's included), an error, a deadline. As
 * every status: the call is answered, its deadline goes, and RST_STREAM
 * NO_ERROR follows when the client has not ended its side (on_frame_send),
 * as the gRPC C core does. */
static void status_only(struct h2_call *c, int code, const char *msg)
{
	c->answered = true;
	c->rst_after = !c->req_ended;
	timer_del(c->h, c);
	reply_status(c, code, msg);
}

static void reply_answer(struct h2_call *c)
{
	static const nghttp2_nv hdrs[] = {NV(":status", "200"),
	                                  NV("content-type", "application/grpc")};
	nghttp2_data_provider prd;

	if (c->code) {
		status_only(c, c->code, c->status_msg);
		return;
	}
	c->answered = true;
	timer_del(c->h, c);
	grpcframe_prefix(c->prefix, (uint32_t)c->resp_len);
	c->sent = 0;
	prd.source.ptr = c;
	prd.read_callback = data_read;
	if (nghttp2_submit_response(c->conn->sess, c->stream_id, hdrs, 2, &prd) != 0)
		nghttp2_submit_rst_stream(c->conn->sess, NGHTTP2_FLAG_NONE, c->stream_id,
		                          NGHTTP2_INTERNAL_ERROR);
	conn_mark(c->conn);
}

/* struct srv_transport's reply: dispatch.c ends the call, on the node's
 * loop thread or on this one (a Range served in place, a check that
 * failed). The answer waits for this thread's next iteration. */
static void h2_reply(struct srv_call *sc, uint8_t *resp, size_t len, int code, const char *msg,
                     bool copy)
{
	struct h2_call *c = SRV_CONTAINER_OF(sc, struct h2_call, base);
	struct etcd_h2 *h = c->h;
	bool ring;

	c->code = code;
	c->resp = resp;
	c->resp_len = len;
	c->status_msg = msg;
	if (code != 0 && copy) {
		c->status_copy = strdup(msg);
		c->status_msg = c->status_copy ? c->status_copy : "bollard: out of memory";
	}
	c->next = NULL;
	if (on_h2_thread(h)) {
		*h->local_tail = c;
		h->local_tail = &c->next;
		return;
	}
	pthread_mutex_lock(&h->mu);
	*h->ans_tail = c;
	h->ans_tail = &c->next;
	ring = !h->rung;
	h->rung = true;
	pthread_mutex_unlock(&h->mu);
	if (ring)
		bell_ring(h);
}

/* struct srv_transport's submit: on this thread the node is woken once
 * per loop iteration (h2_main); elsewhere (after a wait) at once. */
static void h2_submit(struct srv_call *sc)
{
	struct h2_call *c = SRV_CONTAINER_OF(sc, struct h2_call, base);

	if (on_h2_thread(c->h))
		c->h->wake_owed |= node_submit_quiet(sc->node, &sc->req);
	else
		node_submit(sc->node, &sc->req);
}

static uint64_t h2_deadline_ns(const struct srv_call *sc)
{
	return SRV_CONTAINER_OF(sc, const struct h2_call, base)->deadline_ns;
}

/* ------------------------------------------------------------ streams */

/* A request message that came before the adapter took the stream (a
 * joining member's wait); msg NULL: an undecodable one. */
struct h2_pmsg {
	struct h2_pmsg *next;
	ProtobufCMessage *msg;
	size_t len;                 /* its bytes on the wire */
};

/* A streaming call's state (Watch, LeaseKeepAlive, Snapshot). The queue is
 * filled by any thread (the node's loop, the snapshot worker, this one)
 * and emptied by this thread's data provider (strm_read) as the client's
 * flow-control windows allow. */
struct h2_strm {
	pthread_mutex_t mu;
	pthread_cond_t cv;          /* srv_stream_send waits here for room */
	struct sendq q;
	/* Message holders sent or merged, kept for the next ones: a watch
	 * event then costs no allocation of its own here. */
	struct sendq_msg *spare;
	size_t nspare;
	bool opened;                /* the adapter took the stream */
	const struct srv_bidi_ops *ops; /* a bidi adapter's, set with opened */
	bool finished;              /* the status is set: nothing more is queued */
	bool dead;                  /* the HTTP/2 stream is gone */
	bool kicked;                /* on a kick list */
	int code;                   /* the status, once finished */
	const char *msg;            /* static */
	struct h2_call *kick_next;
	/* this thread only */
	bool seen;                  /* ops (above) taken by this thread */
	bool responded;             /* HEADERS and the data provider submitted */
	bool ended;                 /* ops->on_end ran */
	bool half_closed, told_half_close;
	struct h2_pmsg *pend, **pend_tail;
	size_t pend_bytes;          /* the wire bytes of pend's messages */
	size_t held;                /* DATA bytes not given back to the stream's window */
	struct sendq_msg *cur;      /* what strm_read is sending */
	size_t cur_off;             /* bytes of prefix + cur->data sent */
	uint8_t prefix[GRPCFRAME_PREFIX];
};

static struct h2_strm *strm_new(void)
{
	struct h2_strm *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	pthread_mutex_init(&st->mu, NULL);
	pthread_cond_init(&st->cv, NULL);
	sendq_init(&st->q);
	st->pend_tail = &st->pend;
	return st;
}

#define H2_SPARE_MAX 64

/* Under st->mu: m's data freed, m kept as a spare (or freed). */
static void strm_msg_done(struct h2_strm *st, struct sendq_msg *m)
{
	free(m->data);
	if (st->nspare < H2_SPARE_MAX) {
		m->next = st->spare;
		st->spare = m;
		st->nspare++;
	} else {
		free(m);
	}
}

/* Under st->mu: drop what waits to be sent, waking blocked producers. */
static void strm_drop_locked(struct h2_strm *st)
{
	struct sendq_msg *m;

	while ((m = sendq_pop(&st->q)) != NULL)
		strm_msg_done(st, m);
	pthread_cond_broadcast(&st->cv);
}

static void strm_free(struct h2_strm *st)
{
	strm_drop_locked(st);
	if (st->cur)
		strm_msg_done(st, st->cur);
	while (st->spare) {
		struct sendq_msg *m = st->spare;
		st->spare = m->next;
		free(m);
	}
	sendq_fini(&st->q);
	while (st->pend) {
		struct h2_pmsg *p = st->pend;
		st->pend = p->next;
		if (p->msg)
			protobuf_c_message_free_unpacked(p->msg, NULL);
		free(p);
	}
	pthread_mutex_destroy(&st->mu);
	pthread_cond_destroy(&st->cv);
	free(st);
}

/* Have this thread look at c's stream on its next pass (strm_kicked):
 * what was queued, the status, the adapter's start. Any thread. */
static void strm_kick(struct h2_call *c)
{
	struct h2_strm *st = c->st;
	struct etcd_h2 *h = c->h;
	bool ring;

	pthread_mutex_lock(&st->mu);
	if (st->kicked || st->dead) {
		pthread_mutex_unlock(&st->mu);
		return;
	}
	st->kicked = true;
	pthread_mutex_unlock(&st->mu);
	srv_call_ref(&c->base); /* the kick list's */
	if (on_h2_thread(h)) {
		st->kick_next = h->local_kicks;
		h->local_kicks = c;
		return;
	}
	pthread_mutex_lock(&h->mu);
	st->kick_next = h->kicks;
	h->kicks = c;
	ring = !h->rung;
	h->rung = true;
	pthread_mutex_unlock(&h->mu);
	if (ring)
		bell_ring(h);
}

/* Whether a bidi adapter took the stream (this thread's view). */
static bool strm_seen(struct h2_call *c)
{
	struct h2_strm *st = c->st;

	if (!st->seen) {
		pthread_mutex_lock(&st->mu);
		st->seen = st->ops != NULL;
		pthread_mutex_unlock(&st->mu);
	}
	return st->seen;
}

/* The adapter's on_end, once (nothing if it never took the stream). */
static void strm_end(struct h2_call *c, int cancelled)
{
	struct h2_strm *st = c->st;

	if (st->ended || !strm_seen(c))
		return;
	st->ended = true;
	st->ops->on_end(&c->base, cancelled);
}

/* Hand the adapter what came: the messages kept, then the half-close;
 * the stream's window back once they went (on_data_chunk held it). */
static void strm_pump(struct h2_call *c)
{
	struct h2_strm *st = c->st;

	if (!strm_seen(c))
		return;
	while (st->pend && !st->ended) {
		struct h2_pmsg *p = st->pend;
		if (!(st->pend = p->next))
			st->pend_tail = &st->pend;
		st->pend_bytes -= p->len;
		if (p->msg)
			st->ops->on_msg(&c->base, p->msg);
		else
			strm_end(c, 1);
		free(p);
	}
	if (st->half_closed && !st->told_half_close && !st->ended && !st->pend) {
		st->told_half_close = true;
		if (st->ops->on_half_close)
			st->ops->on_half_close(&c->base);
		else
			strm_end(c, 0);
	}
	if (st->held && st->pend_bytes < H2_PEND_MAX && c->conn) {
		nghttp2_session_consume_stream(c->conn->sess, c->stream_id, st->held);
		st->held = 0;
		conn_mark(c->conn);
	}
}

/* One whole request message of a bidi stream (NULL data/0: empty;
 * bad: one that ended inside its frame). */
static void strm_message(struct h2_call *c, const uint8_t *data, size_t len, bool bad)
{
	struct h2_strm *st = c->st;
	static const uint8_t empty[1];
	ProtobufCMessage *msg = NULL;
	struct h2_pmsg *p;

	if (st->ended)
		return;
	metrics_add(&node_metrics(c->base.node)->grpc_received_bytes, len);
	if (!bad)
		msg = protobuf_c_message_unpack(c->base.reg->m->req_desc, NULL, len,
		                                data ? data : empty);
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		if (msg)
			protobuf_c_message_free_unpacked(msg, NULL);
		return; /* as the gRPC port without memory: the message is lost */
	}
	p->msg = msg; /* NULL: undecodable, the adapter's end (cancelled) */
	p->len = len;
	st->pend_bytes += len;
	*st->pend_tail = p;
	st->pend_tail = &p->next;
	strm_pump(c);
}

/* A responded stream's status (the trailers): the call is answered, its
 * deadline goes, RST_STREAM NO_ERROR follows if the client may still send
 * (on_frame_send). 0, or nghttp2's error. */
static int strm_trailers(struct h2_call *c, int code, const char *msg)
{
	char codebuf[12], enc[512];
	size_t enclen = msg ? grpcframe_pct_encode(msg, enc, sizeof(enc)) : 0;
	nghttp2_nv nv[2] = {
		{(uint8_t *)"grpc-status", (uint8_t *)codebuf, 11, 0, NGHTTP2_NV_FLAG_NO_COPY_NAME},
		{(uint8_t *)"grpc-message", (uint8_t *)enc, 12, enclen, NGHTTP2_NV_FLAG_NO_COPY_NAME},
	};

	nv[0].valuelen = (size_t)snprintf(codebuf, sizeof(codebuf), "%d", code);
	if (nghttp2_submit_trailer(c->conn->sess, c->stream_id, nv, enclen ? 2 : 1) != 0)
		return -1;
	c->answered = true;
	c->rst_after = !c->req_ended;
	timer_del(c->h, c);
	conn_mark(c->conn);
	return 0;
}

/* The data provider: the queued messages, framed, as much as nghttp2 asks
 * for (the windows allow); then the trailers. DEFERRED while nothing
 * waits: strm_kicked resumes it. */
static ssize_t strm_read(nghttp2_session *sess, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
	struct h2_call *c = src->ptr;
	struct h2_strm *st = c->st;
	size_t n = 0, sent_bytes = 0;
	bool popped = false, eof;
	int code;
	const char *msg;
	(void)sess;
	(void)stream_id;
	(void)user;

	if (c->answered) /* strm_abort sent the status: nothing more goes */
		return NGHTTP2_ERR_DEFERRED;
	pthread_mutex_lock(&st->mu);
	while (n < length) {
		size_t total, k;
		if (!st->cur) {
			if ((st->cur = sendq_pop(&st->q)) == NULL)
				break;
			popped = true;
			st->cur_off = 0;
			grpcframe_prefix(st->prefix, (uint32_t)st->cur->len);
			sent_bytes += st->cur->len;
		}
		total = GRPCFRAME_PREFIX + st->cur->len;
		if (st->cur_off < GRPCFRAME_PREFIX) {
			k = GRPCFRAME_PREFIX - st->cur_off;
			if (k > length - n)
				k = length - n;
			memcpy(buf + n, st->prefix + st->cur_off, k);
		} else {
			k = total - st->cur_off;
			if (k > length - n)
				k = length - n;
			memcpy(buf + n, st->cur->data + (st->cur_off - GRPCFRAME_PREFIX), k);
		}
		n += k;
		st->cur_off += k;
		if (st->cur_off == total) {
			strm_msg_done(st, st->cur);
			st->cur = NULL;
		}
	}
	if (popped)
		pthread_cond_broadcast(&st->cv);
	eof = !st->cur && !st->q.head && st->finished;
	code = st->code;
	msg = st->msg;
	pthread_mutex_unlock(&st->mu);
	if (sent_bytes)
		metrics_add(&node_metrics(c->base.node)->grpc_sent_bytes, sent_bytes);
	if (eof) {
		*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (strm_trailers(c, code, msg) != 0)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		return (ssize_t)n;
	}
	return n > 0 ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
}

/* This thread, c's stream open: start or resume sending what is queued
 * (HEADERS with the data provider the first time), or the status alone
 * (trailers only) when it ends with an error before any message. */
static void strm_out(struct h2_call *c)
{
	static const nghttp2_nv hdrs[] = {NV(":status", "200"),
	                                  NV("content-type", "application/grpc")};
	struct h2_strm *st = c->st;
	nghttp2_data_provider prd;
	bool queued, fin;
	int code;
	const char *msg;

	if (c->answered)
		return;
	if (st->responded) {
		nghttp2_session_resume_data(c->conn->sess, c->stream_id); /* if deferred */
		conn_mark(c->conn);
		return;
	}
	pthread_mutex_lock(&st->mu);
	queued = st->q.head != NULL;
	fin = st->finished;
	code = st->code;
	msg = st->msg;
	pthread_mutex_unlock(&st->mu);
	if (!queued && !fin)
		return;
	if (!queued && fin && code != GRPC_STATUS_OK) {
		status_only(c, code, msg);
		return;
	}
	st->responded = true;
	prd.source.ptr = c;
	prd.read_callback = strm_read;
	if (nghttp2_submit_response(c->conn->sess, c->stream_id, hdrs, 2, &prd) != 0)
		nghttp2_submit_rst_stream(c->conn->sess, NGHTTP2_FLAG_NONE, c->stream_id,
		                          NGHTTP2_INTERNAL_ERROR);
	conn_mark(c->conn);
}

/* The kick lists (this thread): each call's stream, then its reference. */
static void kicks_run(struct h2_call *list)
{
	while (list) {
		struct h2_call *c = list;
		list = c->st->kick_next;
		pthread_mutex_lock(&c->st->mu);
		c->st->kicked = false;
		pthread_mutex_unlock(&c->st->mu);
		if (c->conn) {
			strm_pump(c);
			strm_out(c);
		}
		srv_call_unref(&c->base);
	}
}

/* This thread: end the stream with code/msg (static, or the call's own)
 * unless its status went out: what waits is dropped (a deadline, a graceful
 * stop, a request the stream cannot take); an adapter's status not sent yet
 * gives way, as the gRPC C core's does. Once HEADERS went, the status goes
 * at once, not after what the data provider is sending: a message half
 * sent when the client's windows closed is cut there, as the gRPC C core's
 * close_from_api cuts it (its trailers go straight to the wire and the
 * stream is closed for writes), else a client that does not read would
 * keep the status, the stream and its memory for ever. RST_STREAM NO_ERROR
 * follows if the client's side is open; the stream is then gone. */
static void strm_abort(struct h2_call *c, int code, const char *msg)
{
	struct h2_strm *st = c->st;

	c->dispatched = true; /* a request not dispatched yet never will be */
	if (c->answered)
		return;
	pthread_mutex_lock(&st->mu);
	if (!st->dead) {
		st->finished = true;
		st->code = code;
		st->msg = msg;
		strm_drop_locked(st);
	}
	pthread_mutex_unlock(&st->mu);
	if (!c->conn)
		return;
	if (!st->responded)
		strm_out(c); /* trailers only */
	else if (strm_trailers(c, code, msg) != 0)
		nghttp2_submit_rst_stream(c->conn->sess, NGHTTP2_FLAG_NONE, c->stream_id,
		                          NGHTTP2_INTERNAL_ERROR);
}

/* This thread: the HTTP/2 stream is gone (closed after the status, reset
 * by the client, its connection closed). The adapter's end (cancelled:
 * as the gRPC port's once the call is over), and the reference the open
 * stream held. */
static void strm_gone(struct h2_call *c)
{
	struct h2_strm *st = c->st;
	bool opened;

	pthread_mutex_lock(&st->mu);
	st->dead = true;
	opened = st->opened;
	strm_drop_locked(st);
	pthread_mutex_unlock(&st->mu);
	strm_end(c, 1);
	if (opened)
		srv_call_unref(&c->base); /* dispatch's, the open stream's since */
}

/* The adapter takes the stream (ops: a bidi adapter's). Dispatch's
 * reference is the open stream's from now on. 0, or -1 when the stream is
 * gone or ended (by its deadline, say). */
static int strm_open(struct h2_call *c, const struct srv_bidi_ops *ops)
{
	struct h2_strm *st = c->st;
	int rc = -1;

	if (!st)
		return -1;
	pthread_mutex_lock(&st->mu);
	if (!st->dead && !st->finished && !st->opened) {
		st->opened = true;
		st->ops = ops;
		rc = 0;
	}
	pthread_mutex_unlock(&st->mu);
	return rc;
}

static int h2_stream_open(struct srv_call *sc)
{
	return strm_open(SRV_CONTAINER_OF(sc, struct h2_call, base), NULL);
}

static int h2_bidi_start(struct srv_call *sc, const struct srv_bidi_ops *ops)
{
	struct h2_call *c = SRV_CONTAINER_OF(sc, struct h2_call, base);

	if (strm_open(c, ops) != 0) {
		srv_call_reply_err(sc, BOLLARD_EINTERNAL);
		return -1;
	}
	if (on_h2_thread(c->h))
		strm_pump(c);
	else
		strm_kick(c); /* after a wait: what came meanwhile */
	return 0;
}

/* Queue data (or merge it: o's prefix and key); 0, 1 (at o's limits: data
 * stays the caller's) or -1 (dead or finished, or no memory: data freed).
 * blocking: wait for room instead of 1. */
static int strm_enqueue(struct h2_call *c, uint8_t *data, size_t len, const struct srv_offer *o,
                        bool blocking)
{
	struct h2_strm *st = c->st;
	struct sendq_msg *m;

	pthread_mutex_lock(&st->mu);
	while (blocking && !st->dead && !st->finished && srv_offer_full(o, st->q.n, st->q.bytes))
		pthread_cond_wait(&st->cv, &st->mu);
	if (st->dead || st->finished) {
		pthread_mutex_unlock(&st->mu);
		free(data);
		return -1;
	}
	if (srv_offer_full(o, st->q.n, st->q.bytes)) {
		pthread_mutex_unlock(&st->mu);
		return 1;
	}
	if ((m = st->spare) != NULL) {
		st->spare = m->next;
		st->nspare--;
	} else if ((m = malloc(sizeof(*m))) == NULL) {
		pthread_mutex_unlock(&st->mu);
		free(data);
		return -1;
	}
	*m = (struct sendq_msg){.data = data, .len = len, .prefix = o->prefix, .key = o->key};
	if (sendq_push(&st->q, m, o->max_merged) == SENDQ_MERGED)
		strm_msg_done(st, m); /* its data went into the earlier message */
	pthread_mutex_unlock(&st->mu);
	if (!o->defer)
		strm_kick(c);
	return 0;
}

static int h2_stream_send(struct srv_call *sc, uint8_t *data, size_t len, size_t max_queued)
{
	struct h2_call *c = SRV_CONTAINER_OF(sc, struct h2_call, base);
	struct srv_offer o = {.max_queued = max_queued};

	if (!c->st) {
		free(data);
		return -1;
	}
	return strm_enqueue(c, data, len, &o, true);
}

static int h2_stream_offer(struct srv_call *sc, uint8_t *data, size_t len,
                           const struct srv_offer *o)
{
	struct h2_call *c = SRV_CONTAINER_OF(sc, struct h2_call, base);

	if (!c->st || (o->prefix > 0 && (o->prefix > len || data == NULL))) {
		free(data);
		return -1;
	}
	return strm_enqueue(c, data, len, o, false);
}

static void h2_stream_flush(struct srv_call *sc)
{
	struct h2_call *c = SRV_CONTAINER_OF(sc, struct h2_call, base);
	bool queued;

	pthread_mutex_lock(&c->st->mu);
	queued = c->st->q.head != NULL;
	pthread_mutex_unlock(&c->st->mu);
	if (queued)
		strm_kick(c);
}

static bool h2_stream_has_room(struct srv_call *sc, const struct srv_offer *o)
{
	struct h2_strm *st = SRV_CONTAINER_OF(sc, struct h2_call, base)->st;
	bool room;

	pthread_mutex_lock(&st->mu);
	room = !st->dead && !st->finished && !srv_offer_full(o, st->q.n, st->q.bytes);
	pthread_mutex_unlock(&st->mu);
	return room;
}

static void h2_stream_finish(struct srv_call *sc, int err)
{
	struct h2_call *c = SRV_CONTAINER_OF(sc, struct h2_call, base);
	struct h2_strm *st = c->st;
	grpc_status_code code;
	const char *msg;
	bool set = false;

	if (!st)
		return;
	srv_status_of(err, &code, &msg);
	pthread_mutex_lock(&st->mu);
	if (!st->finished && !st->dead) {
		st->finished = true;
		st->code = (int)code;
		st->msg = msg;
		set = true;
	}
	pthread_cond_broadcast(&st->cv);
	pthread_mutex_unlock(&st->mu);
	if (set)
		strm_kick(c);
}

static const struct srv_transport h2_transport = {
	.reply = h2_reply,
	.submit = h2_submit,
	.deadline_ns = h2_deadline_ns,
	.release = h2_release,
	.stream_open = h2_stream_open,
	.bidi_start = h2_bidi_start,
	.stream_send = h2_stream_send,
	.stream_offer = h2_stream_offer,
	.stream_flush = h2_stream_flush,
	.stream_has_room = h2_stream_has_room,
	.stream_finish = h2_stream_finish,
};

static void answers_run(struct h2_call *list)
{
	while (list) {
		struct h2_call *c = list;
		list = c->next;
		c->next = NULL;
		/* the client may have gone; a deadline may have answered */
		if (c->conn && !c->answered)
			reply_answer(c);
		srv_call_unref(&c->base); /* dispatch's */
	}
}

static void frees_run(struct h2_call *list)
{
	while (list) {
		struct h2_call *c = list;
		list = c->next;
		call_free(c);
	}
}

/* What other threads handed over: answers, stream kicks, calls to free. */
static void answers_drain(struct etcd_h2 *h)
{
	struct h2_call *list, *kicks, *frees;

	pthread_mutex_lock(&h->mu);
	list = h->ans_head;
	h->ans_head = NULL;
	h->ans_tail = &h->ans_head;
	kicks = h->kicks;
	frees = h->frees;
	h->kicks = h->frees = NULL;
	h->rung = false;
	pthread_mutex_unlock(&h->mu);
	answers_run(list);
	kicks_run(kicks);
	frees_run(frees);
}

static void answers_local(struct etcd_h2 *h)
{
	while (h->local_head || h->local_kicks) {
		struct h2_call *list = h->local_head, *kicks = h->local_kicks;
		h->local_head = NULL;
		h->local_tail = &h->local_head;
		h->local_kicks = NULL;
		answers_run(list);
		kicks_run(kicks);
	}
}

/* ------------------------------------------------------- dispatching */

/* The request stream ended: answer what the transport refused, else
 * dispatch.c takes the call (it always ends it with h2_reply). */
static void call_dispatch(struct h2_call *c)
{
	const char *cn;
	char msg[256];

	if (c->dispatched)
		return;
	c->dispatched = true;
	if (c->fail_code) {
		status_only(c, c->fail_code, c->fail_msg);
		return;
	}
	if (!c->base.reg) {
		snprintf(msg, sizeof(msg), "bollard: unknown or unimplemented method %s",
		         c->path ? c->path : "(none)");
		status_only(c, GRPC_STATUS_UNIMPLEMENTED, msg);
		return;
	}
	if (!is_bidi(c)) { /* a bidi call's messages come later (strm_message) */
		if (grpcframe_rd_partial(&c->rd)) {
			status_only(c, GRPC_STATUS_INTERNAL,
			            "bollard: the request ended inside a message");
			return;
		}
		if (!c->have_msg)
			srv_call_unpack(&c->base, NULL, 0);
	}
	if ((cn = etcd_h2_conn_peer_cn(c->conn)) != NULL) /* --client-cert-auth */
		c->base.peer_cn = strdup(cn);
	if (c->h->log_client_cn && c->conn->is_tls) /* each call, as the gRPC port logs */
		fprintf(stderr, "bollard: %s from client certificate CN=%s\n", c->base.reg->m->path,
		        cn ? cn : "(none)");
	srv_call_ref(&c->base); /* dispatch's: until its answer, or its stream's end */
	srv_call_start(&c->base);
}

/* One whole request message: decoded now (dispatch.c answers a failure
 * once the request ended); a bidi stream's goes to its adapter. */
static void call_message(struct h2_call *c, const uint8_t *data, size_t len)
{
	if (c->fail_code || !c->base.reg)
		return;
	if (is_bidi(c)) {
		if (c->dispatched && !c->answered)
			strm_message(c, data, len, false);
		return;
	}
	if (c->have_msg) { /* unary: one message only */
		c->fail_code = GRPC_STATUS_UNIMPLEMENTED;
		snprintf(c->fail_msg, sizeof(c->fail_msg),
		         "bollard: a unary call sent more than one message");
		return;
	}
	c->have_msg = true;
	srv_call_unpack(&c->base, data, len);
}

/* A message with the compressed flag (grpc-encoding gzip or deflate):
 * inflated, at most rd.max bytes, then as any other. */
static void call_message_inflate(struct h2_call *c, const uint8_t *data, size_t len)
{
	size_t cap = c->rd.max + 1, n;
	uint8_t *out;
	z_stream z;
	int zrc;

	if (c->fail_code || !c->base.reg)
		return;
	memset(&z, 0, sizeof(z));
	if ((out = malloc(cap)) == NULL || inflateInit2(&z, c->encoding) != Z_OK) {
		free(out);
		c->fail_code = GRPC_STATUS_RESOURCE_EXHAUSTED;
		snprintf(c->fail_msg, sizeof(c->fail_msg), "bollard: out of memory");
		return;
	}
	z.next_in = (Bytef *)data;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	zrc = inflate(&z, Z_FINISH);
	n = cap - z.avail_out;
	inflateEnd(&z);
	if (zrc == Z_STREAM_END && n < cap) {
		call_message(c, out, n);
	} else if (zrc == Z_BUF_ERROR && z.avail_out == 0) { /* the gRPC C core's text */
		c->fail_code = GRPC_STATUS_RESOURCE_EXHAUSTED;
		snprintf(c->fail_msg, sizeof(c->fail_msg),
		         "Received message larger than max (more than %zu bytes)", c->rd.max);
	} else {
		c->fail_code = GRPC_STATUS_INTERNAL;
		snprintf(c->fail_msg, sizeof(c->fail_msg),
		         "Unexpected error decompressing data for algorithm %s",
		         c->encoding == MAX_WBITS ? "deflate" : "gzip");
	}
	free(out);
}

/* ------------------------------------------------- nghttp2 callbacks */

static int on_begin_headers(nghttp2_session *sess, const nghttp2_frame *frame, void *user)
{
	struct h2_conn *conn = user;
	struct h2_call *c;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if ((c = call_new(conn->h, conn, frame->hd.stream_id)) == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	nghttp2_session_set_stream_user_data(sess, frame->hd.stream_id, c);
	return 0;
}

static bool name_is(const uint8_t *name, size_t len, const char *want)
{
	return strlen(want) == len && memcmp(name, want, len) == 0;
}

static int on_header(nghttp2_session *sess, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
	struct h2_call *c;
	(void)flags;
	(void)user;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	c = nghttp2_session_get_stream_user_data(sess, frame->hd.stream_id);
	if (!c)
		return 0;
	if (name_is(name, namelen, ":path")) {
		if ((c->base.reg = method_find(c->h, value, valuelen)) == NULL)
			c->path = strndup((const char *)value, valuelen);
		else if (is_stream(c->base.reg) && !c->st && (c->st = strm_new()) == NULL &&
		         !c->fail_code) {
			c->fail_code = GRPC_STATUS_RESOURCE_EXHAUSTED;
			snprintf(c->fail_msg, sizeof(c->fail_msg), "bollard: out of memory");
		}
	} else if (name_is(name, namelen, "hasleader")) {
		c->base.require_leader = valuelen == 4 && memcmp(value, "true", 4) == 0;
	} else if (name_is(name, namelen, "grpc-timeout")) {
		uint64_t ns;
		if (grpcframe_timeout_parse((const char *)value, valuelen, &ns) == 0 && !c->timed) {
			c->deadline_ns = c->base.t_start_ns + (ns ? ns : 1);
			timer_add(c->h, c);
		}
	} else if (name_is(name, namelen, "token")) {
		free(c->base.token);
		c->base.token = strndup((const char *)value, valuelen);
	} else if (name_is(name, namelen, "grpc-encoding")) {
		/* as the gRPC C core: gzip and deflate messages are inflated */
		if (valuelen == 4 && memcmp(value, "gzip", 4) == 0)
			c->encoding = MAX_WBITS + 16, c->rd.compressed_ok = 1;
		else if (valuelen == 7 && memcmp(value, "deflate", 7) == 0)
			c->encoding = MAX_WBITS, c->rd.compressed_ok = 1;
		else if (!(valuelen == 8 && memcmp(value, "identity", 8) == 0) && !c->fail_code) {
			c->fail_code = GRPC_STATUS_UNIMPLEMENTED;
			snprintf(c->fail_msg, sizeof(c->fail_msg),
			         "bollard: grpc-encoding %.*s is not supported here",
			         (int)(valuelen < 40 ? valuelen : 40), (const char *)value);
		}
	}
	return 0;
}

/* Flow control by hand (no automatic WINDOW_UPDATE: etcd_h2_start): the
 * connection's window is given back at once, so that no stream stalls the
 * others; a stream's too, unless the messages its adapter has not taken
 * yet reach H2_PEND_MAX. Then the stream's window is held until strm_pump
 * hands them over: the client waits (its messages stay within one more
 * window), as it waits for the gRPC C core, which reads one message at a
 * time and held such a client after 4 MiB in test_h2_streams (a client
 * keeps working; failing the stream would end a Watch that only waited
 * for a joining member; unbounded, a client's flood grows our memory). */
static void data_consumed(nghttp2_session *sess, int32_t stream_id, struct h2_call *c,
                          size_t len)
{
	nghttp2_session_consume_connection(sess, len);
	if (c && c->st && c->st->pend_bytes >= H2_PEND_MAX)
		c->st->held += len;
	else
		nghttp2_session_consume_stream(sess, stream_id, len);
}

static int on_data_chunk(nghttp2_session *sess, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user)
{
	struct h2_call *c = nghttp2_session_get_stream_user_data(sess, stream_id);
	size_t got = len;
	(void)flags;
	(void)user;

	if (!c) {
		data_consumed(sess, stream_id, NULL, got);
		return 0;
	}
	bool failed_before = c->fail_code != 0;
	while (len > 0 && !c->fail_code) {
		const uint8_t *msg;
		size_t used, mlen, seen = 0;
		int rc = grpcframe_rd_feed(&c->rd, data, len, &used, &msg, &mlen, &seen);
		data += used;
		len -= used;
		if (rc == GRPCFRAME_MSG && c->rd.compressed) {
			call_message_inflate(c, msg, mlen);
		} else if (rc == GRPCFRAME_MSG) {
			call_message(c, msg, mlen);
		} else if (rc == GRPCFRAME_ETOOBIG) {
			c->fail_code = GRPC_STATUS_RESOURCE_EXHAUSTED; /* gRPC C core's text */
			snprintf(c->fail_msg, sizeof(c->fail_msg),
			         "Received message larger than max (%zu vs. %zu)", seen,
			         c->rd.max);
		} else if (rc == GRPCFRAME_ECOMPRESSED) {
			c->fail_code = GRPC_STATUS_UNIMPLEMENTED;
			snprintf(c->fail_msg, sizeof(c->fail_msg),
			         "bollard: compressed messages are not supported here");
		} else if (rc < 0) {
			c->fail_code = GRPC_STATUS_RESOURCE_EXHAUSTED;
			snprintf(c->fail_msg, sizeof(c->fail_msg), "bollard: out of memory");
		}
	}
	if (!failed_before && c->fail_code && is_bidi(c) && c->st && c->dispatched) {
		/* as the gRPC core fails the receive of an open stream: the
		 * status first (c->fail_msg lives as long as the stream), then
		 * the adapter's end (cancelled). The other way round, an adapter
		 * that finishes on its end (Watch: OK, from the loop thread)
		 * could set the status first: the client saw a clean end. */
		strm_abort(c, c->fail_code, c->fail_msg);
		strm_message(c, NULL, 0, true);
	}
	data_consumed(sess, stream_id, c, got);
	return 0;
}

static int on_frame_recv(nghttp2_session *sess, const nghttp2_frame *frame, void *user)
{
	struct h2_conn *conn = user;
	struct h2_call *c;

	if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK))
		h2ka_acked(&conn->ka, node_clock_ns());
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	c = nghttp2_session_get_stream_user_data(sess, frame->hd.stream_id);
	if (!c || !c->conn)
		return 0;
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		c->req_ended = true;
	/* A bidi call starts with its HEADERS; so does the refusal of an
	 * unknown method, as the gRPC port answers one at once (a client's
	 * stream to it would otherwise wait for a half-close). */
	if (frame->hd.type == NGHTTP2_HEADERS && (is_bidi(c) || !c->base.reg))
		call_dispatch(c);
	if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	if (!is_bidi(c)) {
		call_dispatch(c);
	} else if (c->st && !c->answered && !c->st->half_closed) { /* the client's half-close */
		if (grpcframe_rd_partial(&c->rd)) /* it ended inside a message */
			strm_message(c, NULL, 0, true); /* the adapter's end */
		c->st->half_closed = true;
		strm_pump(c);
	}
	return 0;
}

/* A status sent before the request ended (a deadline): then RST_STREAM
 * NO_ERROR, as the gRPC C core does, so the client stops sending (sent
 * with the status, nghttp2 would put the reset first). */
static int on_frame_send(nghttp2_session *sess, const nghttp2_frame *frame, void *user)
{
	struct h2_call *c;
	(void)user;

	if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	c = nghttp2_session_get_stream_user_data(sess, frame->hd.stream_id);
	if (c && c->rst_after) {
		c->rst_after = false;
		nghttp2_submit_rst_stream(sess, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
		                          NGHTTP2_NO_ERROR);
	}
	return 0;
}

static int on_stream_close(nghttp2_session *sess, int32_t stream_id, uint32_t code, void *user)
{
	struct h2_conn *conn = user;
	struct h2_call *c = nghttp2_session_get_stream_user_data(sess, stream_id);

	if (c && !conn->closing) {
		nghttp2_session_set_stream_user_data(sess, stream_id, NULL);
		if (c->answered && code == NGHTTP2_NO_ERROR)
			srv_call_observe_sent(&c->base);
		call_detach(c);
	}
	return 0;
}

/* -------------------------------------------------------- connections */

static void list_unlink(struct h2_conn **head, struct h2_conn *conn, size_t off)
{
	struct h2_conn **p = head;

	while (*p != conn)
		p = (struct h2_conn **)((char *)*p + off);
	*p = *(struct h2_conn **)((char *)conn + off);
}

/* Forget conn; its socket closed, or (!close_fd) left to whoever took it. */
static void conn_drop(struct h2_conn *conn, bool close_fd)
{
	struct etcd_h2 *h = conn->h;

	conn->closing = true;
	if (conn->prev)
		conn->prev->next = conn->next;
	else
		h->conns = conn->next;
	if (conn->next)
		conn->next->prev = conn->prev;
	while (conn->calls)
		call_detach(conn->calls);
	epoll_ctl(h->epfd, EPOLL_CTL_DEL, conn->fd, NULL);
	if (conn->is_tls)
		h2tls_fini(&conn->tls);
	if (close_fd)
		close(conn->fd);
	nghttp2_session_del(conn->sess);
	free(conn->out);
	if (conn->dirty) /* off the flush list */
		list_unlink(&h->dirty, conn, offsetof(struct h2_conn, dirty_next));
	if (conn->reread)
		list_unlink(&h->rereads, conn, offsetof(struct h2_conn, reread_next));
	free(conn);
}

static void conn_close(struct h2_conn *conn)
{
	conn_drop(conn, true);
}

/* EPOLLOUT when frames wait for the socket, or TLS does (a handshake or
 * read that has to write first). */
static int conn_want(struct h2_conn *conn)
{
	bool out = conn->out_len > 0;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = conn};

	if (conn->is_tls && (!conn->tls.open || conn->tls.write_want_in))
		out = false; /* the frames wait for the handshake or for input */
	if (conn->is_tls && conn->tls.read_want_out)
		out = true;
	if (out == conn->want_out)
		return 0;
	conn->want_out = out;
	ev.events |= out ? EPOLLOUT : 0;
	return epoll_ctl(conn->h->epfd, EPOLL_CTL_MOD, conn->fd, &ev);
}

/* Bytes to the peer: send(), or one SSL_write per TLS record. */
static ssize_t conn_send(struct h2_conn *conn, const uint8_t *p, size_t len)
{
	ssize_t n, total = 0;

	if (!conn->is_tls) {
		n = send(conn->fd, p, len, MSG_NOSIGNAL);
		return n < 0 ? -errno : n;
	}
	while ((size_t)total < len) {
		n = h2tls_write(&conn->tls, p + total, len - (size_t)total);
		if (n < 0)
			return total > 0 ? total : n;
		total += n;
	}
	return total;
}

/* Serialize what nghttp2 has and write it at once; what the socket does
 * not take waits for EPOLLOUT. false: close the connection. */
static bool conn_flush(struct h2_conn *conn)
{
	const uint8_t *p;
	ssize_t n;
	bool capped;

	do {
		if (conn->out_off > 0 && conn->out_off < conn->out_len) { /* the rest in front */
			memmove(conn->out, conn->out + conn->out_off, conn->out_len - conn->out_off);
			conn->out_len -= conn->out_off;
			conn->out_off = 0;
		}
		/* A client that does not read gets no more frames serialized
		 * until it does (nghttp2 keeps them). */
		n = 0;
		while (conn->out_len < H2_OUT_MAX &&
		       (n = nghttp2_session_mem_send(conn->sess, &p)) > 0) {
			if (conn->out_len + (size_t)n > conn->out_cap) {
				size_t cap = conn->out_cap ? conn->out_cap : 16384;
				uint8_t *b;
				while (cap < conn->out_len + (size_t)n)
					cap *= 2;
				if ((b = realloc(conn->out, cap)) == NULL)
					return false;
				conn->out = b;
				conn->out_cap = cap;
			}
			memcpy(conn->out + conn->out_len, p, (size_t)n);
			conn->out_len += (size_t)n;
		}
		if (n < 0)
			return false;
		capped = conn->out_len >= H2_OUT_MAX;
		if (conn->out_off < conn->out_len) {
			n = conn_send(conn, conn->out + conn->out_off, conn->out_len - conn->out_off);
			if (n < 0 && n != -EAGAIN && n != -EINTR)
				return false;
			if (n > 0)
				conn->out_off += (size_t)n;
		}
		if (conn->out_off == conn->out_len)
			conn->out_off = conn->out_len = 0;
	} while (capped && conn->out_len == 0); /* all went: serialize more */
	conn_want(conn);
	return conn->out_len > 0 || nghttp2_session_want_read(conn->sess) ||
	       nghttp2_session_want_write(conn->sess);
}

/* Bytes from the peer: read(), or TLS (which runs the handshake first). */
static ssize_t conn_recv(struct h2_conn *conn, uint8_t *buf, size_t len)
{
	ssize_t n;

	if (conn->is_tls)
		return h2tls_read(&conn->tls, buf, len);
	n = read(conn->fd, buf, len);
	return n < 0 ? -errno : n;
}

/* A client's RST_STREAM for a stream it never opened (grpcio sends one
 * when a call is cancelled after its stream ID was taken but before its
 * HEADERS went out) is a connection error to nghttp2 (RFC 9113 5.1, idle
 * stream), which would fail every other call on the connection; the gRPC
 * C core ignores it, and so do we: such frames are dropped before nghttp2
 * sees them. Everything else goes to nghttp2 in as few calls as the frame
 * boundaries allow (split only at a RST_STREAM, after which nghttp2 knows
 * the streams before it). 0, or <0: close the connection. */
/* A frame header hd: its payload length, and whether it is a RST_STREAM
 * for a stream nghttp2 never saw opened (dropped; what came before it must
 * have been fed to nghttp2 first). */
static bool frame_unopened_rst(const struct h2_conn *conn, const uint8_t *hd, uint32_t *len)
{
	uint32_t sid;

	*len = (uint32_t)hd[0] << 16 | (uint32_t)hd[1] << 8 | hd[2];
	if (hd[3] != NGHTTP2_RST_STREAM)
		return false;
	sid = ((uint32_t)hd[5] << 24 | (uint32_t)hd[6] << 16 | (uint32_t)hd[7] << 8 | hd[8]) &
	      0x7fffffffu;
	return sid > (uint32_t)nghttp2_session_get_last_proc_stream_id(conn->sess);
}

static int conn_feed(struct h2_conn *conn, const uint8_t *p, size_t n)
{
	const uint8_t *run = p;
	size_t i = 0;
	uint32_t len;

	if (conn->have > 0) { /* finish a header the last read cut */
		size_t want = 9u - (size_t)conn->have, k = want < n ? want : n;
		memcpy(conn->hdr + conn->have, p, k);
		conn->have = (uint8_t)(conn->have + k);
		i = k;
		run = p + i;
		if (conn->have < 9)
			return 0;
		conn->have = 0;
		/* everything before this frame went to nghttp2 with the last read */
		if (frame_unopened_rst(conn, conn->hdr, &len)) {
			conn->drop = len;
		} else {
			if (nghttp2_session_mem_recv(conn->sess, conn->hdr, 9) < 0)
				return -1;
			conn->skip = len;
		}
	}
	while (i < n) {
		const uint8_t *hd = p + i;
		if (conn->drop > 0 || conn->skip > 0) {
			uint32_t *left = conn->drop > 0 ? &conn->drop : &conn->skip;
			size_t k = *left < n - i ? *left : n - i;
			i += k;
			*left -= (uint32_t)k;
			if (left == &conn->drop)
				run = p + i;
			continue;
		}
		if (n - i < 9) { /* a header cut by this read: keep it for the next */
			memcpy(conn->hdr, hd, n - i);
			conn->have = (uint8_t)(n - i);
			n = i;
			break;
		}
		if (hd[3] == NGHTTP2_RST_STREAM) {
			/* what came before first: then nghttp2 knows its streams */
			if (p + i > run && nghttp2_session_mem_recv(conn->sess, run, (size_t)(p + i - run)) < 0)
				return -1;
			run = p + i;
		}
		if (frame_unopened_rst(conn, hd, &len))
			conn->drop = 9 + len;
		else
			conn->skip = 9 + len;
	}
	if (p + n > run && nghttp2_session_mem_recv(conn->sess, run, (size_t)(p + n - run)) < 0)
		return -1;
	return 0;
}

/* Plain-text client URLs take HTTP/1.x too, as etcd's (its cmux): a
 * connection whose first bytes are not those of the HTTP/2 preface ("PRI ")
 * goes to http.c, which reads it from the start (this only peeks). 0:
 * HTTP/2, read on; 1: handed over, or nothing to read yet. */
static int conn_sniff(struct h2_conn *conn)
{
	static const char pri[4] = "PRI ";
	struct etcd_h2 *h = conn->h;
	char b[sizeof(pri)];
	ssize_t n = recv(conn->fd, b, sizeof(b), MSG_PEEK);
	int fd = conn->fd;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 1;
	conn->sniff = false;
	if (n <= 0 || memcmp(b, pri, (size_t)n) == 0)
		return 0; /* the preface or its start; an end or error read() will see */
	conn_drop(conn, false);
	etcd_http_adopt(h->http1, fd);
	return 1;
}

static void conn_read(struct h2_conn *conn)
{
	struct etcd_h2 *h = conn->h;
	bool was_open = conn->is_tls && conn->tls.open;
	size_t got = 0;

	if (conn->sniff && conn_sniff(conn) != 0)
		return;
	for (int i = 0; i < 64; i++) {
		ssize_t n = conn_recv(conn, h->rbuf, sizeof(h->rbuf));
		if (n == -EAGAIN || n == -EINTR)
			break;
		if (n <= 0 || conn_feed(conn, h->rbuf, (size_t)n) < 0) {
			conn_close(conn);
			return;
		}
		got += (size_t)n;
		if (i == 0)
			h2ka_rx(&conn->ka, node_clock_ns());
		/* a short read, or TLS holding nothing more: the socket is
		 * empty, most likely (level-triggered epoll says if not) */
		if (!conn->is_tls ? (size_t)n < sizeof(h->rbuf) : !h2tls_pending(&conn->tls))
			break;
		if (got >= H2_OUT_MAX)
			break; /* others' turn */
	}
	if (conn->is_tls && !was_open && conn->tls.open) {
		h2ka_open(&conn->ka, node_clock_ns());
		if (h->log_client_cn)
			fprintf(stderr, "bollard: h2 connection from client certificate CN=%s\n",
			        conn->tls.peer_cn ? conn->tls.peer_cn : "(none)");
	}
	/* TLS may hold decrypted bytes epoll will not announce: read again
	 * after this pass. */
	if (conn->is_tls && !conn->reread && h2tls_pending(&conn->tls)) {
		conn->reread = true;
		conn->reread_next = h->rereads;
		h->rereads = conn;
	}
	if (conn->is_tls)
		conn_want(conn);
	conn_mark(conn);
}

static void conn_accept(struct etcd_h2 *h, struct h2_listener *l)
{
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
	};

	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		struct h2_conn *conn;
		struct epoll_event ev = {.events = EPOLLIN};

		if (fd < 0)
			return;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* not for unix:// */
		if ((conn = calloc(1, sizeof(*conn))) == NULL) {
			close(fd);
			continue;
		}
		conn->kind = H2_CONN;
		conn->h = h;
		conn->fd = fd;
		conn->skip = sizeof(NGHTTP2_CLIENT_MAGIC) - 1; /* the preface */
		ev.data.ptr = conn;
		if (l->tls) {
			if (h2tls_init(&conn->tls, h->ssl_ctx, fd, h->client_cert_auth) != 0) {
				free(conn);
				close(fd);
				continue;
			}
			conn->is_tls = true;
		}
		conn->sniff = !conn->is_tls && h->http1 != NULL;
		if (nghttp2_session_server_new2(&conn->sess, h->cbs, conn, h->opt) != 0) {
			if (conn->is_tls)
				h2tls_fini(&conn->tls);
			free(conn);
			close(fd);
			continue;
		}
		nghttp2_submit_settings(conn->sess, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
		nghttp2_session_set_local_window_size(conn->sess, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW);
		if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			if (conn->is_tls)
				h2tls_fini(&conn->tls);
			nghttp2_session_del(conn->sess);
			free(conn);
			close(fd);
			continue;
		}
		conn->next = h->conns;
		if (h->conns)
			h->conns->prev = conn;
		h->conns = conn;
		h2ka_init(&conn->ka, H2KA_INTERVAL_NS, H2KA_TIMEOUT_NS, H2KA_HANDSHAKE_NS,
		          node_clock_ns(), !conn->is_tls);
		if (h2ka_next(&conn->ka) < h->ka_next_ns)
			h->ka_next_ns = h2ka_next(&conn->ka);
		if (conn->is_tls)
			conn_read(conn); /* the ClientHello may be here already */
		else if (!conn->sniff)
			conn_mark(conn); /* our SETTINGS (a sniffed one's once it is HTTP/2) */
	}
}

const char *etcd_h2_conn_peer_cn(const struct h2_conn *conn)
{
	return conn && conn->is_tls ? conn->tls.peer_cn : NULL;
}

/* ---------------------------------------------------------- keepalive */

/* When a connection's keepalive or handshake deadline came: PING it or
 * close it; then the next time to look. */
static void keepalive_sweep(struct etcd_h2 *h)
{
	uint64_t now = node_clock_ns();

	if (now < h->ka_next_ns)
		return;
	h->ka_next_ns = UINT64_MAX;
	for (struct h2_conn *conn = h->conns, *next; conn; conn = next) {
		next = conn->next;
		switch (h2ka_tick(&conn->ka, now)) {
		case H2KA_CLOSE:
			conn_close(conn);
			continue;
		case H2KA_PING:
			if (nghttp2_submit_ping(conn->sess, NGHTTP2_FLAG_NONE, NULL) != 0) {
				conn_close(conn);
				continue;
			}
			conn_mark(conn);
			break;
		case H2KA_NONE:
			break;
		}
		if (h2ka_next(&conn->ka) < h->ka_next_ns)
			h->ka_next_ns = h2ka_next(&conn->ka);
	}
}

/* ------------------------------------------------------ graceful stop */

/* No new connections; GOAWAY on each (the last stream it took is served,
 * later ones the client retries elsewhere); conn_flush closes a connection
 * once nghttp2 has nothing open or to send. */
static void drain_start(struct etcd_h2 *h)
{
	h->draining = true;
	h->drain_end_ns = node_clock_ns() + (uint64_t)H2_DRAIN_MS * 1000000;
	for (struct h2_listener *l = h->listeners; l; l = l->next) {
		if (l->fd >= 0) {
			epoll_ctl(h->epfd, EPOLL_CTL_DEL, l->fd, NULL);
			close(l->fd);
			l->fd = -1;
		}
	}
	for (struct h2_conn *conn = h->conns, *next; conn; conn = next) {
		next = conn->next;
		if (conn->is_tls && !conn->tls.open) {
			conn_close(conn); /* nothing asked yet */
			continue;
		}
		nghttp2_submit_goaway(conn->sess, NGHTTP2_FLAG_NONE,
		                      nghttp2_session_get_last_proc_stream_id(conn->sess),
		                      NGHTTP2_NO_ERROR, NULL, 0);
		/* open streams end, as the gRPC port cancels its calls */
		for (struct h2_call *c = conn->calls; c; c = c->cnext)
			if (c->st)
				strm_abort(c, GRPC_STATUS_UNAVAILABLE, bollard_strerror(BOLLARD_ESTOPPED));
		conn_mark(conn);
	}
}

/* After each pass while draining: past the deadline, close what is left;
 * with nothing left, tell etcd_h2_shutdown's caller (once). */
static void drain_check(struct etcd_h2 *h)
{
	void (*cb)(void *);
	void *arg;

	if (h->conns && node_clock_ns() >= h->drain_end_ns)
		while (h->conns)
			conn_close(h->conns);
	if (h->conns || h->drained)
		return;
	h->drained = true;
	pthread_mutex_lock(&h->mu);
	cb = h->drain_cb;
	arg = h->drain_arg;
	pthread_mutex_unlock(&h->mu);
	cb(arg);
}

/* epoll_wait's timeout: until the drain deadline, the next keepalive look
 * or the first call's deadline, whichever comes first; -1: none. */
static int wait_ms(const struct etcd_h2 *h)
{
	uint64_t now, until = h->ka_next_ns, ms;

	if (h->draining && !h->drained && h->drain_end_ns < until)
		until = h->drain_end_ns;
	if (h->thead && h->thead->deadline_ns < until)
		until = h->thead->deadline_ns;
	if (until == UINT64_MAX)
		return -1;
	now = node_clock_ns();
	if (now >= until)
		return 0;
	ms = (until - now) / 1000000 + 1;
	return ms > 3600 * 1000 ? 3600 * 1000 : (int)ms;
}

/* --------------------------------------------------------- the thread */

/* End the calls whose deadline passed unanswered, as the gRPC C core does
 * (its status and text); what the node answers later is dropped. */
static void timers_run(struct etcd_h2 *h)
{
	uint64_t now;

	if (!h->thead)
		return;
	now = node_clock_ns();
	while (h->thead && h->thead->deadline_ns <= now) {
		struct h2_call *c = h->thead;
		timer_del(h, c);
		if (c->st) { /* trailers after what was sent, and RST_STREAM */
			strm_abort(c, GRPC_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded");
			continue;
		}
		c->dispatched = true; /* nor will it be dispatched */
		status_only(c, GRPC_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded");
	}
}

static void *h2_main(void *arg)
{
	struct etcd_h2 *h = arg;
	struct epoll_event evs[64];

	pthread_setname_np(pthread_self(), "bollard-h2");
	h2_owned = h;
	for (;;) {
		int n = epoll_wait(h->epfd, evs, 64, h->rereads ? 0 : wait_ms(h));
		bool bell = false;

		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			enum h2_kind *k = evs[i].data.ptr;
			if (*k == H2_LISTENER) {
				conn_accept(h, (struct h2_listener *)k);
			} else if (*k == H2_BELL) {
				bell = true; /* edge-triggered: nothing to read */
			} else {
				struct h2_conn *conn = (struct h2_conn *)k;
				if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ||
				    (conn->is_tls && conn->tls.read_want_out))
					conn_read(conn); /* may close it: nothing after */
				else
					conn_mark(conn);
			}
		}
		/* once per pass each: conn_read may put a connection back on
		 * h->rereads, for the next pass (taken off it once, here) */
		struct h2_conn *list = h->rereads, *rc;
		h->rereads = NULL;
		while ((rc = list) != NULL) {
			list = rc->reread_next;
			rc->reread = false;
			conn_read(rc);
		}
		if (bell) {
			pthread_mutex_lock(&h->mu);
			int stop = h->stop;
			bool drain = h->drain_cb != NULL;
			pthread_mutex_unlock(&h->mu);
			if (stop)
				break;
			if (drain && !h->draining)
				drain_start(h);
			answers_drain(h);
		}
		if (h->wake_owed) {
			h->wake_owed = false;
			node_wake(h->node);
		}
		answers_local(h);
		keepalive_sweep(h); /* before the flush: its PINGs go now */
		timers_run(h);
		while (h->dirty) {
			struct h2_conn *conn = h->dirty;
			h->dirty = conn->dirty_next;
			conn->dirty = false;
			if (!conn_flush(conn))
				conn_close(conn);
		}
		if (h->draining)
			drain_check(h);
	}
	return NULL;
}

/* ------------------------------------------------------------ listeners */


static int listener_add(struct etcd_h2 *h, int family, const struct sockaddr *sa,
                        socklen_t salen, bool tls, const char *what, char *err, size_t errlen)
{
	struct h2_listener *l = calloc(1, sizeof(*l));
	struct epoll_event ev = {.events = EPOLLIN};
	int one = 1;

	if (!l) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	l->kind = H2_LISTENER;
	l->tls = tls;
	l->fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	l->next = h->listeners;
	h->listeners = l;
	if (family == AF_INET6) /* [::]:port is IPv6 only; 0.0.0.0:port may be given too */
		setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (l->fd < 0 ||
	    (family != AF_UNIX &&
	     setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) ||
	    bind(l->fd, sa, salen) != 0 || listen(l->fd, 1024) != 0) {
		snprintf(err, errlen, "%slisten on %s: %s", h->flag, what, strerror(errno));
		return -1;
	}
	ev.data.ptr = l;
	if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, l->fd, &ev) != 0) {
		snprintf(err, errlen, "%sepoll: %s", h->flag, strerror(errno));
		return -1;
	}
	return 0;
}

/* unix://path (srv_url_split has checked it fits): a stale socket file is
 * replaced, as the gRPC C core does. */
static int listen_unix(struct etcd_h2 *h, const char *path, size_t len, char *err,
                       size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;

	memcpy(sa.sun_path, path, len);
	if (stat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(sa.sun_path);
	return listener_add(h, AF_UNIX, (struct sockaddr *)&sa, sizeof(sa), false, sa.sun_path,
	                    err, errlen);
}

/* One URL: http://host:port, https://host:port (every address host
 * resolves to, as the gRPC port binds them), unix://path. */
static int listen_url(struct etcd_h2 *h, const char *url, size_t len, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	struct srv_url u;
	char what[300];
	int rc;

	if (srv_url_split(url, len, h->ssl_ctx != NULL, h->flag, &u, err, errlen) != 0)
		return -1;
	if (u.kind == SRV_URL_UNIX)
		return listen_unix(h, u.addr, u.addrlen, err, errlen);
	snprintf(what, sizeof(what), "%.*s", (int)u.addrlen, u.addr);
	if ((rc = getaddrinfo(u.host[0] ? u.host : NULL, u.port, &hints, &res)) != 0) {
		snprintf(err, errlen, "%slisten on %s: %s", h->flag, what, gai_strerror(rc));
		return -1;
	}
	rc = 0;
	for (struct addrinfo *ai = res; ai && rc == 0; ai = ai->ai_next)
		rc = listener_add(h, ai->ai_family, ai->ai_addr, ai->ai_addrlen, u.tls, what, err,
		                  errlen);
	freeaddrinfo(res);
	return rc;
}

/* etcd's comma-separated list. */
static int listen_urls(struct etcd_h2 *h, const char *urls, char *err, size_t errlen)
{
	const char *pos = urls, *p;
	size_t len;
	int n = 0;

	while (hostport_list_next(&pos, &p, &len)) {
		if (len) {
			if (listen_url(h, p, len, err, errlen) != 0)
				return -1;
			n++;
		}
	}
	return n == 0 ? srv_url_none(h->flag, err, errlen) : 0;
}

static void h2_free(struct etcd_h2 *h)
{
	while (h->listeners) {
		struct h2_listener *l = h->listeners;
		h->listeners = l->next;
		if (l->fd >= 0)
			close(l->fd);
		free(l);
	}
	if (h->epfd >= 0)
		close(h->epfd);
	if (h->bell_fd >= 0)
		close(h->bell_fd);
	if (h->cbs)
		nghttp2_session_callbacks_del(h->cbs);
	if (h->opt)
		nghttp2_option_del(h->opt);
	SSL_CTX_free(h->ssl_ctx);
	free(h->regs);
	free(h->path_len);
	while (h->pool) {
		struct h2_call *c = h->pool;
		h->pool = c->next;
		free(c);
	}
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->freed);
	free(h);
}

int etcd_h2_start(struct etcd_h2 **out, struct node *node, const char *urls,
                  const struct etcd_tls_config *tls, struct etcd_http *http1, const char *flag,
                  char *err, size_t errlen)
{
	struct etcd_h2 *h = calloc(1, sizeof(*h));
	struct epoll_event ev = {.events = EPOLLIN};

	*out = NULL;
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	h->node = node;
	h->http1 = http1;
	h->flag = flag ? flag : "";
	h->epfd = h->bell_fd = -1;
	h->bkind = H2_BELL;
	h->ka_next_ns = UINT64_MAX;
	h->max_request_bytes = node_max_request_bytes(node);
	h->ans_tail = &h->ans_head;
	h->local_tail = &h->local_head;
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->freed, NULL);
	if (methods_init(h) != 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (h2tls_ctx_new(&h->ssl_ctx, tls, err, errlen) != 0)
		goto fail;
	if (h->ssl_ctx) {
		h->client_cert_auth = tls->client_cert_auth;
		h->log_client_cn = tls->client_cert_auth && tls->log_client_cn;
	}
	if ((h->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (h->bell_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		snprintf(err, errlen, "epoll/eventfd: %s", strerror(errno));
		goto fail;
	}
	if (listen_urls(h, urls, err, errlen) != 0)
		goto fail;
	/* Edge-triggered: every write() of the eventfd is an edge, so the
	 * thread never read()s it back (a system call per answered run fewer;
	 * the counter cannot reach its 2^64 - 2 limit in practice). */
	ev.events = EPOLLIN | EPOLLET;
	ev.data.ptr = &h->bkind;
	epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->bell_fd, &ev);
	if (nghttp2_option_new(&h->opt) != 0 || nghttp2_session_callbacks_new(&h->cbs) != 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	nghttp2_option_set_no_http_messaging(h->opt, 1);
	nghttp2_option_set_no_auto_window_update(h->opt, 1); /* data_consumed */
	nghttp2_session_callbacks_set_on_begin_headers_callback(h->cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(h->cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(h->cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(h->cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(h->cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(h->cbs, on_frame_send);
	if (pthread_create(&h->thread, NULL, h2_main, h) != 0) {
		snprintf(err, errlen, "cannot start the h2 thread");
		goto fail;
	}
	h->started = true;
	*out = h;
	return 0;
fail:
	h2_free(h);
	return -1;
}

void etcd_h2_shutdown(struct etcd_h2 *h, void (*cb)(void *arg), void *arg)
{
	uint64_t one = 1;

	pthread_mutex_lock(&h->mu);
	h->drain_cb = cb;
	h->drain_arg = arg;
	pthread_mutex_unlock(&h->mu);
	if (write(h->bell_fd, &one, sizeof(one)) < 0)
		perror("bollard: h2 eventfd");
}

void etcd_h2_stop(struct etcd_h2 *h)
{
	uint64_t one = 1;

	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->stop = 1;
	pthread_mutex_unlock(&h->mu);
	if (write(h->bell_fd, &one, sizeof(one)) < 0)
		perror("bollard: h2 eventfd");
	pthread_join(h->thread, NULL);
	h2_owned = h; /* this thread ends the rest (on_h2_thread) */
	/* The node is done: every answer is queued by now. */
	answers_drain(h);
	answers_local(h);
	while (h->conns)
		conn_close(h->conns);
	/* Calls still referenced elsewhere (a snapshot worker leaving, the
	 * node's last stream callbacks) come back through h->frees. */
	for (int i = 0; i < 100; i++) {
		answers_drain(h);
		answers_local(h);
		if (h->ncalls == 0)
			break;
		pthread_mutex_lock(&h->mu);
		if (!h->frees && !h->kicks && !h->ans_head) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&h->freed, &h->mu, &ts);
		}
		pthread_mutex_unlock(&h->mu);
	}
	h2_owned = NULL; /* a later listener may get h's address */
	if (h->ncalls != 0) { /* leaked rather than freed under someone */
		fprintf(stderr, "bollard: h2 listener stopped with %zu calls held\n", h->ncalls);
		return;
	}
	h2_free(h);
}
