/* h2srv.c - EXPERIMENTAL: unary etcd KV calls (Put, Range) over our own
 * HTTP/2 (libnghttp2), bypassing the gRPC C core (h2srv.h).
 *
 * One thread runs an epoll loop over the listener, the client connections
 * and an eventfd. Each connection has an nghttp2 server session fed with
 * what read() returned; a stream whose request ended (END_STREAM) is
 * decoded (protobuf-c), checked as kv.c checks it (core/validate.h), and
 * handed to the node as the gRPC server hands it (node_submit_quiet, one
 * node_wake per loop iteration; Ranges through node_read). The node's
 * answer (on its loop thread, or on this thread for a Range served in
 * place) is queued for this thread, which is woken once per run of answers
 * through the eventfd; it then submits HEADERS, DATA and the trailers of
 * each answered stream and, at the end of the iteration, writes everything
 * nghttp2 has for a connection with one send().
 *
 * Not done here (calls.c does them for the gRPC port): waiting for a login
 * entry not yet applied (NODE_AUTH_WAIT) or for a joining member's ID
 * (NODE_JOIN_WAIT), client certificates, metrics.
 *
 * Calls live until both the node answered and the stream closed: a call
 * the node still holds outlives its stream (and its connection) and is
 * freed when its answer arrives. Only this thread frees calls. */
#include <errno.h>
#include <fcntl.h>
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
#include <unistd.h>

#include <arpa/inet.h>
#include <nghttp2/nghttp2.h>

#include "core/errors.h"
#include "core/grpcframe.h"
#include "core/hostport.h"
#include "core/validate.h"
#include "node/node.h"
#include "rpc.pb-c.h"
#include "server/h2srv.h"

#define H2_READ_BUF (64 * 1024)
#define H2_MAX_STREAMS 4096
#define H2_STREAM_WINDOW (1 << 20)
#define H2_CONN_WINDOW (16 << 20)
#define H2_EXTRA_MSG_BYTES (512 * 1024) /* over --max-request-bytes, as server.c */
#define H2_PB_INLINE 1024
#define H2_PB_ALIGN 16
#define H2_POOL_MAX 4096
#define H2_OUT_MAX (1 << 20) /* frames serialized ahead of the socket */

enum h2_kind { H2_LISTENER, H2_BELL, H2_CONN };

struct h2_method {
	const char *path;
	const ProtobufCMessageDescriptor *req_desc;
	enum node_op op;
	bool via_raft; /* enforce --max-request-bytes */
	int (*check)(const ProtobufCMessage *msg);
};

struct h2_conn;

struct h2_call {
	struct etcd_h2 *h;
	struct h2_conn *conn;       /* NULL once the stream or connection is gone */
	int32_t stream_id;
	const struct h2_method *m;  /* NULL: unknown method (path kept) */
	char *path;                 /* unknown methods only */
	struct grpcframe_rd rd;
	ProtobufCMessage *msg;      /* the decoded request */
	bool have_msg;              /* a message arrived */
	int fail_code;              /* != 0: a gRPC status decided before the node */
	char fail_msg[160];
	char *token;                /* "token" metadata */
	uint64_t timeout_ns;        /* grpc-timeout, 0: none */
	char *auth_user;
	struct node_req req;
	bool at_node;               /* submitted, not answered yet */
	bool dispatched;
	/* the answer */
	int err;
	uint8_t *resp;
	size_t resp_len, sent;      /* sent: bytes of prefix+resp given to nghttp2 */
	uint8_t prefix[GRPCFRAME_PREFIX];
	struct h2_call *next;       /* answer queue, or the pool */
	struct h2_call *cprev, *cnext; /* the connection's calls */
	size_t pb_used;
	_Alignas(H2_PB_ALIGN) unsigned char pb_buf[H2_PB_INLINE];
};

struct h2_conn {
	enum h2_kind kind;
	struct etcd_h2 *h;
	int fd;
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
	int epfd, lfd, bell_fd;
	enum h2_kind lkind, bkind;  /* epoll data of the listener and the bell */
	pthread_t thread;
	bool started;
	int stop;                   /* under mu */
	int64_t max_request_bytes;
	nghttp2_session_callbacks *cbs;
	/* answers from other threads */
	pthread_mutex_t mu;
	struct h2_call *ans_head, **ans_tail;
	bool rung;
	/* this thread only */
	struct h2_call *local_head, **local_tail; /* answers given on this thread */
	struct h2_conn *dirty;
	struct h2_conn *conns;
	struct h2_call *pool;
	size_t pool_n;
	bool wake_owed;
	uint8_t rbuf[H2_READ_BUF];
};

/* ------------------------------------------------------------ methods */

static int check_range(const ProtobufCMessage *msg)
{
	return validate_range((const Etcdserverpb__RangeRequest *)msg);
}

static int check_put(const ProtobufCMessage *msg)
{
	return validate_put((const Etcdserverpb__PutRequest *)msg);
}

static const struct h2_method h2_methods[] = {
	{"/etcdserverpb.KV/Range", &etcdserverpb__range_request__descriptor, NODE_RANGE, false,
	 check_range},
	{"/etcdserverpb.KV/Put", &etcdserverpb__put_request__descriptor, NODE_PUT, true, check_put},
};

static const struct h2_method *method_find(const uint8_t *path, size_t len)
{
	for (size_t i = 0; i < sizeof(h2_methods) / sizeof(h2_methods[0]); i++)
		if (strlen(h2_methods[i].path) == len && memcmp(h2_methods[i].path, path, len) == 0)
			return &h2_methods[i];
	return NULL;
}

/* ------------------------------------------------------------- calls */

static void *pb_alloc(void *ud, size_t n)
{
	struct h2_call *c = ud;
	size_t a = (n + H2_PB_ALIGN - 1) & ~(size_t)(H2_PB_ALIGN - 1);

	if (a <= sizeof(c->pb_buf) - c->pb_used) {
		void *p = c->pb_buf + c->pb_used;
		c->pb_used += a;
		return p;
	}
	return malloc(n ? n : 1);
}

static void pb_free(void *ud, void *p)
{
	struct h2_call *c = ud;
	uintptr_t q = (uintptr_t)p, b = (uintptr_t)c->pb_buf;

	if (q >= b && q < b + sizeof(c->pb_buf))
		return;
	free(p);
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
	memset(c, 0, offsetof(struct h2_call, pb_buf));
	c->h = h;
	c->conn = conn;
	c->stream_id = stream_id;
	grpcframe_rd_init(&c->rd, (size_t)h->max_request_bytes + H2_EXTRA_MSG_BYTES);
	c->cnext = conn->calls;
	if (conn->calls)
		conn->calls->cprev = c;
	conn->calls = c;
	return c;
}

static void call_free_msg(struct h2_call *c)
{
	ProtobufCAllocator al = {pb_alloc, pb_free, c};

	if (c->msg) {
		protobuf_c_message_free_unpacked(c->msg, &al);
		c->msg = NULL;
	}
}

static void call_free(struct h2_call *c)
{
	struct etcd_h2 *h = c->h;

	call_free_msg(c);
	grpcframe_rd_fini(&c->rd);
	free(c->path);
	free(c->token);
	free(c->auth_user);
	free(c->resp);
	if (h->pool_n < H2_POOL_MAX) {
		c->next = h->pool;
		h->pool = c;
		h->pool_n++;
	} else {
		free(c);
	}
}

/* The stream is gone (closed, or its connection): free c unless the node
 * still holds it. */
static void call_detach(struct h2_call *c)
{
	struct h2_conn *conn = c->conn;

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
	if (!c->at_node)
		call_free(c);
}

static void conn_mark(struct h2_conn *conn)
{
	if (!conn->dirty) {
		conn->dirty = true;
		conn->dirty_next = conn->h->dirty;
		conn->h->dirty = conn;
	}
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

static void reply_answer(struct h2_call *c)
{
	static const nghttp2_nv hdrs[] = {NV(":status", "200"),
	                                  NV("content-type", "application/grpc")};
	nghttp2_data_provider prd;

	if (c->err) {
		reply_status(c, bollard_err_grpc_code(c->err), bollard_strerror(c->err));
		return;
	}
	grpcframe_prefix(c->prefix, (uint32_t)c->resp_len);
	c->sent = 0;
	prd.source.ptr = c;
	prd.read_callback = data_read;
	if (nghttp2_submit_response(c->conn->sess, c->stream_id, hdrs, 2, &prd) != 0)
		nghttp2_submit_rst_stream(c->conn->sess, NGHTTP2_FLAG_NONE, c->stream_id,
		                          NGHTTP2_INTERNAL_ERROR);
	conn_mark(c->conn);
}

/* The node's answer: on the node's loop thread, or on this thread (a Range
 * served in place). */
static void on_node_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct h2_call *c = req->data;
	struct etcd_h2 *h = c->h;
	bool ring;

	c->err = err;
	if (err) {
		free(resp);
		resp = NULL;
		len = 0;
	}
	c->resp = resp;
	c->resp_len = len;
	c->next = NULL;
	if (pthread_equal(pthread_self(), h->thread)) {
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
	if (ring) {
		uint64_t one = 1;
		if (write(h->bell_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			perror("bollard: h2 eventfd");
	}
}

static void answers_run(struct h2_call *list)
{
	while (list) {
		struct h2_call *c = list;
		list = c->next;
		c->next = NULL;
		c->at_node = false;
		call_free_msg(c);
		free(c->auth_user);
		c->auth_user = NULL;
		if (c->conn == NULL) /* the client went away meanwhile */
			call_free(c);
		else
			reply_answer(c);
	}
}

static void answers_drain(struct etcd_h2 *h)
{
	struct h2_call *list;

	pthread_mutex_lock(&h->mu);
	list = h->ans_head;
	h->ans_head = NULL;
	h->ans_tail = &h->ans_head;
	h->rung = false;
	pthread_mutex_unlock(&h->mu);
	answers_run(list);
}

static void answers_local(struct etcd_h2 *h)
{
	while (h->local_head) {
		struct h2_call *list = h->local_head;
		h->local_head = NULL;
		h->local_tail = &h->local_head;
		answers_run(list);
	}
}

/* ------------------------------------------------------- dispatching */

/* etcd resolves the caller for Range and Put (auth); then the node. */
static void call_submit(struct h2_call *c)
{
	struct etcd_h2 *h = c->h;
	uint64_t rev = 0;
	int err;

	if ((err = node_auth_resolve(h->node, c->token, NULL, &c->auth_user, &rev)) != 0) {
		reply_status(c, bollard_err_grpc_code(err), bollard_strerror(err));
		return;
	}
	c->req.data = c;
	c->req.op = c->m->op;
	c->req.msg = c->msg;
	c->req.cb = on_node_done;
	c->req.auth_user = c->auth_user;
	c->req.auth_rev = rev;
	c->req.deadline_ns = c->timeout_ns ? node_clock_ns() + c->timeout_ns : 0;
	c->at_node = true;
	if (c->m->op == NODE_RANGE)
		node_read(h->node, &c->req);
	else
		h->wake_owed |= node_submit_quiet(h->node, &c->req);
}

/* The request stream ended: answer what failed already, else check and
 * submit. */
static void call_dispatch(struct h2_call *c)
{
	ProtobufCAllocator al = {pb_alloc, pb_free, c};
	static const uint8_t empty[1];
	char msg[256];
	int err;

	if (c->dispatched)
		return;
	c->dispatched = true;
	if (c->fail_code) {
		reply_status(c, c->fail_code, c->fail_msg);
		return;
	}
	if (!c->m) {
		snprintf(msg, sizeof(msg), "bollard: unknown or unimplemented method %s",
		         c->path ? c->path : "(none)");
		reply_status(c, 12 /* UNIMPLEMENTED */, msg);
		return;
	}
	if (grpcframe_rd_partial(&c->rd)) {
		reply_status(c, 13 /* INTERNAL */, "bollard: the request ended inside a message");
		return;
	}
	if (!c->have_msg)
		c->msg = protobuf_c_message_unpack(c->m->req_desc, &al, 0, empty);
	if (!c->msg) {
		snprintf(msg, sizeof(msg), "bollard: malformed request: cannot decode %s",
		         c->m->req_desc->name);
		reply_status(c, 3 /* INVALID_ARGUMENT */, msg);
		return;
	}
	if ((err = c->m->check(c->msg)) != 0) {
		reply_status(c, bollard_err_grpc_code(err), bollard_strerror(err));
		return;
	}
	call_submit(c);
}

/* One whole request message. */
static void call_message(struct h2_call *c, const uint8_t *data, size_t len)
{
	ProtobufCAllocator al = {pb_alloc, pb_free, c};

	if (c->fail_code || !c->m)
		return;
	if (c->have_msg) { /* unary: one message only */
		c->fail_code = 12;
		snprintf(c->fail_msg, sizeof(c->fail_msg),
		         "bollard: a unary call sent more than one message");
		return;
	}
	c->have_msg = true;
	if (c->m->via_raft && len > (size_t)c->h->max_request_bytes) {
		c->fail_code = bollard_err_grpc_code(BOLLARD_EREQUEST_TOO_LARGE);
		snprintf(c->fail_msg, sizeof(c->fail_msg), "%s",
		         bollard_strerror(BOLLARD_EREQUEST_TOO_LARGE));
		return;
	}
	c->msg = protobuf_c_message_unpack(c->m->req_desc, &al, len, data);
	if (!c->msg) {
		c->fail_code = 3;
		snprintf(c->fail_msg, sizeof(c->fail_msg),
		         "bollard: malformed request: cannot decode %s", c->m->req_desc->name);
	}
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
		if ((c->m = method_find(value, valuelen)) == NULL)
			c->path = strndup((const char *)value, valuelen);
	} else if (name_is(name, namelen, "grpc-timeout")) {
		if (grpcframe_timeout_parse((const char *)value, valuelen, &c->timeout_ns) != 0)
			c->timeout_ns = 0;
	} else if (name_is(name, namelen, "token")) {
		free(c->token);
		c->token = strndup((const char *)value, valuelen);
	} else if (name_is(name, namelen, "grpc-encoding")) {
		if (!(valuelen == 8 && memcmp(value, "identity", 8) == 0) && !c->fail_code) {
			c->fail_code = 12;
			snprintf(c->fail_msg, sizeof(c->fail_msg),
			         "bollard: grpc-encoding %.*s is not supported here",
			         (int)(valuelen < 40 ? valuelen : 40), (const char *)value);
		}
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *sess, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user)
{
	struct h2_call *c = nghttp2_session_get_stream_user_data(sess, stream_id);
	(void)flags;
	(void)user;

	if (!c)
		return 0;
	while (len > 0 && !c->fail_code) {
		const uint8_t *msg;
		size_t used, mlen, seen = 0;
		int rc = grpcframe_rd_feed(&c->rd, data, len, &used, &msg, &mlen, &seen);
		data += used;
		len -= used;
		if (rc == GRPCFRAME_MSG) {
			call_message(c, msg, mlen);
		} else if (rc == GRPCFRAME_ETOOBIG) {
			c->fail_code = 8; /* RESOURCE_EXHAUSTED, gRPC C core's text */
			snprintf(c->fail_msg, sizeof(c->fail_msg),
			         "Received message larger than max (%zu vs. %zu)", seen,
			         c->rd.max);
		} else if (rc == GRPCFRAME_ECOMPRESSED) {
			c->fail_code = 12;
			snprintf(c->fail_msg, sizeof(c->fail_msg),
			         "bollard: compressed messages are not supported here");
		} else if (rc < 0) {
			c->fail_code = 8;
			snprintf(c->fail_msg, sizeof(c->fail_msg), "bollard: out of memory");
		}
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *sess, const nghttp2_frame *frame, void *user)
{
	struct h2_call *c;
	(void)user;

	if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
	    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	c = nghttp2_session_get_stream_user_data(sess, frame->hd.stream_id);
	if (c && c->conn)
		call_dispatch(c);
	return 0;
}

static int on_stream_close(nghttp2_session *sess, int32_t stream_id, uint32_t code, void *user)
{
	struct h2_conn *conn = user;
	struct h2_call *c = nghttp2_session_get_stream_user_data(sess, stream_id);
	(void)code;

	if (c && !conn->closing) {
		nghttp2_session_set_stream_user_data(sess, stream_id, NULL);
		call_detach(c);
	}
	return 0;
}

/* -------------------------------------------------------- connections */

static void conn_close(struct h2_conn *conn)
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
	close(conn->fd);
	nghttp2_session_del(conn->sess);
	free(conn->out);
	if (conn->dirty) { /* off the flush list */
		struct h2_conn **p = &h->dirty;
		while (*p != conn)
			p = &(*p)->dirty_next;
		*p = conn->dirty_next;
	}
	free(conn);
}

static int conn_want(struct h2_conn *conn, bool out)
{
	struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = conn};

	conn->want_out = out;
	return epoll_ctl(conn->h->epfd, EPOLL_CTL_MOD, conn->fd, &ev);
}

/* Serialize what nghttp2 has and write it with one send(); what the
 * socket does not take waits for EPOLLOUT. false: close the connection. */
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
			n = send(conn->fd, conn->out + conn->out_off, conn->out_len - conn->out_off,
			         MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				return false;
			if (n > 0)
				conn->out_off += (size_t)n;
		}
		if (conn->out_off == conn->out_len)
			conn->out_off = conn->out_len = 0;
	} while (capped && conn->out_len == 0); /* all went: serialize more */
	if (conn->out_len == 0 && conn->want_out)
		conn_want(conn, false);
	else if (conn->out_len > 0 && !conn->want_out)
		conn_want(conn, true);
	return conn->out_len > 0 || nghttp2_session_want_read(conn->sess) ||
	       nghttp2_session_want_write(conn->sess);
}

static void conn_read(struct h2_conn *conn)
{
	struct etcd_h2 *h = conn->h;

	for (int i = 0; i < 16; i++) {
		ssize_t n = read(conn->fd, h->rbuf, sizeof(h->rbuf));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n <= 0 || nghttp2_session_mem_recv(conn->sess, h->rbuf, (size_t)n) < 0) {
			conn_close(conn);
			return;
		}
		if ((size_t)n < sizeof(h->rbuf))
			break;
	}
	conn_mark(conn);
}

static void conn_accept(struct etcd_h2 *h)
{
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
	};

	for (;;) {
		int fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		struct h2_conn *conn;
		struct epoll_event ev = {.events = EPOLLIN};

		if (fd < 0)
			return;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if ((conn = calloc(1, sizeof(*conn))) == NULL) {
			close(fd);
			continue;
		}
		conn->kind = H2_CONN;
		conn->h = h;
		conn->fd = fd;
		ev.data.ptr = conn;
		if (nghttp2_session_server_new(&conn->sess, h->cbs, conn) != 0) {
			free(conn);
			close(fd);
			continue;
		}
		nghttp2_submit_settings(conn->sess, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
		nghttp2_session_set_local_window_size(conn->sess, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW);
		if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			nghttp2_session_del(conn->sess);
			free(conn);
			close(fd);
			continue;
		}
		conn->next = h->conns;
		if (h->conns)
			h->conns->prev = conn;
		h->conns = conn;
		conn_mark(conn);
	}
}

/* --------------------------------------------------------- the thread */

static void *h2_main(void *arg)
{
	struct etcd_h2 *h = arg;
	struct epoll_event evs[64];

	pthread_setname_np(pthread_self(), "bollard-h2");
	for (;;) {
		int n = epoll_wait(h->epfd, evs, 64, -1);
		bool bell = false;

		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			enum h2_kind *k = evs[i].data.ptr;
			if (*k == H2_LISTENER) {
				conn_accept(h);
			} else if (*k == H2_BELL) {
				uint64_t v;
				if (read(h->bell_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					perror("bollard: h2 eventfd");
				bell = true;
			} else {
				struct h2_conn *conn = (struct h2_conn *)k;
				if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
					conn_read(conn); /* may close it: nothing after */
				else
					conn_mark(conn);
			}
		}
		if (bell) {
			pthread_mutex_lock(&h->mu);
			int stop = h->stop;
			pthread_mutex_unlock(&h->mu);
			if (stop)
				break;
			answers_drain(h);
		}
		if (h->wake_owed) {
			h->wake_owed = false;
			node_wake(h->node);
		}
		answers_local(h);
		while (h->dirty) {
			struct h2_conn *conn = h->dirty;
			h->dirty = conn->dirty_next;
			conn->dirty = false;
			if (!conn_flush(conn))
				conn_close(conn);
		}
	}
	return NULL;
}

static int listen_url(struct etcd_h2 *h, const char *url, char *err, size_t errlen)
{
	char host[64], port[16];
	struct sockaddr_in sa = {.sin_family = AF_INET};
	int one = 1;
	char *end;
	unsigned long p;

	if (strncmp(url, "http://", 7) != 0 ||
	    hostport_split(url + 7, strlen(url + 7), host, sizeof(host), port, sizeof(port)) != 0 ||
	    inet_pton(AF_INET, host, &sa.sin_addr) != 1 || (p = strtoul(port, &end, 10)) > 65535 ||
	    *end) {
		snprintf(err, errlen, "--experimental-listen-h2-url: %s: want http://IPv4:PORT", url);
		return -1;
	}
	sa.sin_port = htons((uint16_t)p);
	h->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->lfd < 0 || setsockopt(h->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(h->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(h->lfd, 1024) != 0) {
		snprintf(err, errlen, "--experimental-listen-h2-url: listen %s: %s", url,
		         strerror(errno));
		return -1;
	}
	return 0;
}

static void h2_free(struct etcd_h2 *h)
{
	if (h->epfd >= 0)
		close(h->epfd);
	if (h->lfd >= 0)
		close(h->lfd);
	if (h->bell_fd >= 0)
		close(h->bell_fd);
	if (h->cbs)
		nghttp2_session_callbacks_del(h->cbs);
	while (h->pool) {
		struct h2_call *c = h->pool;
		h->pool = c->next;
		free(c);
	}
	pthread_mutex_destroy(&h->mu);
	free(h);
}

int etcd_h2_start(struct etcd_h2 **out, struct node *node, const char *url, char *err,
                  size_t errlen)
{
	struct etcd_h2 *h = calloc(1, sizeof(*h));
	struct epoll_event ev = {.events = EPOLLIN};

	*out = NULL;
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	h->node = node;
	h->epfd = h->lfd = h->bell_fd = -1;
	h->lkind = H2_LISTENER;
	h->bkind = H2_BELL;
	h->max_request_bytes = node_max_request_bytes(node);
	h->ans_tail = &h->ans_head;
	h->local_tail = &h->local_head;
	pthread_mutex_init(&h->mu, NULL);
	if (listen_url(h, url, err, errlen) != 0)
		goto fail;
	if ((h->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (h->bell_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		snprintf(err, errlen, "epoll/eventfd: %s", strerror(errno));
		goto fail;
	}
	ev.data.ptr = &h->lkind;
	epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->lfd, &ev);
	ev.data.ptr = &h->bkind;
	epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->bell_fd, &ev);
	if (nghttp2_session_callbacks_new(&h->cbs) != 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	nghttp2_session_callbacks_set_on_begin_headers_callback(h->cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(h->cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(h->cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(h->cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(h->cbs, on_stream_close);
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
	/* The node is done: every answer is queued by now. */
	answers_drain(h);
	answers_local(h);
	while (h->conns)
		conn_close(h->conns);
	h2_free(h);
}
