/* peer_tcp.c - raft's transport between members for http peer URLs: plain
 * TCP with canonical/raft's own wire handshake (peer_port.h), on a listener
 * of ours rather than raft's TCP transport, so that the peer port also takes
 * members' gRPC (bollard.Internal: forwarded writes stating their user,
 * ReadIndex, leases, membership calls) and the client port need not.
 *
 * An accepted connection is classified by peeking at its first bytes
 * (recv MSG_PEEK, nothing consumed): HTTP/2's preface goes, preface
 * included, to the server layer's hook (node_set_peer_grpc) as a socket of
 * its own; a raft handshake is consumed and raft gets the TCP handle itself
 * (no copy in between, as with raft's own transport). Members dial a
 * member's peer port for gRPC with gRPC's own TCP (internal.c). Raft's
 * dial of a member tries its peer URLs in turn (peer_pick.h) before it
 * reports the member unreachable.
 *
 * The peer port trusts whoever reaches it, as raft's TCP transport and
 * etcd's plain peer port do: with http peer URLs it must be reachable only
 * by members (README, security); https peer URLs authenticate members. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "node/log.h"
#include "node/node_int.h"
#include "node/peer_port.h"
#include "node/peer_pick.h"

#define HELLO_MS 5000 /* to connect and say hello, or to hear one */
#define RETRY_MS 2    /* a hello cut in parts: look again */

struct tcp_conn;

struct tcp_transport {
	struct peer_port p; /* first */
	struct tcp_conn *conns;
};

/* A connection until raft or gRPC has it. */
struct tcp_conn {
	struct tcp_transport *t;
	struct tcp_conn *prev, *next;
	uv_tcp_t *tcp;               /* raft_malloc'ed: raft frees what it takes */
	uv_timer_t timer;
	uv_connect_t creq;
	uv_write_t wreq;
	struct raft_uv_connect *req; /* outgoing, until answered */
	raft_id target;
	unsigned tries;              /* outgoing: the target's URLs dialed so far */
	uint64_t deadline;           /* uv_now */
	int handles;
	bool closing;
	char address[300];           /* outgoing: the target's; incoming: the peer's */
	uint8_t buf[PEER_HELLO_MAX];
};

static void handle_closed(uv_handle_t *h)
{
	struct tcp_conn *c = h->data;
	struct tcp_transport *t = c->t;

	if (h != (uv_handle_t *)&c->timer)
		raft_free(h);
	if (--c->handles > 0)
		return;
	if (c->req) {
		struct raft_uv_connect *req = c->req;
		c->req = NULL;
		req->cb(req, NULL, t->p.closing ? RAFT_CANCELED : RAFT_NOCONNECTION);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		t->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
	t->p.pending--;
	peer_port_maybe_closed(&t->p);
}

static void conn_close(struct tcp_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->tcp) /* not handed over */
		uv_close((uv_handle_t *)c->tcp, handle_closed);
	uv_close((uv_handle_t *)&c->timer, handle_closed);
}

/* A conn with its TCP handle (raft_malloc'ed) and its timer, both counted. */
static struct tcp_conn *conn_new(struct tcp_transport *t)
{
	struct tcp_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	if (!(c->tcp = raft_malloc(sizeof(*c->tcp)))) {
		free(c);
		return NULL;
	}
	c->t = t;
	uv_tcp_init(t->p.loop, c->tcp);
	uv_timer_init(t->p.loop, &c->timer);
	c->tcp->data = c;
	c->timer.data = c;
	c->handles = 2;
	c->deadline = uv_now(t->p.loop) + HELLO_MS;
	c->next = t->conns;
	if (t->conns)
		t->conns->prev = c;
	t->conns = c;
	t->p.pending++;
	return c;
}

/* The TCP handle leaves the conn (to raft); the conn then closes. */
static uv_stream_t *conn_hand(struct tcp_conn *c)
{
	uv_stream_t *s = (uv_stream_t *)c->tcp;
	c->tcp = NULL;
	c->handles--;
	s->data = NULL;
	conn_close(c);
	return s;
}

static bool dial_next(struct tcp_conn *c);

/* ------------------------------------------------------------- accepting */

static void peek_start(struct tcp_conn *c);

static void timer_cb(uv_timer_t *tm)
{
	struct tcp_conn *c = tm->data;
	if (uv_now(c->t->p.loop) < c->deadline) { /* a retry after a partial hello */
		peek_start(c);
		return;
	}
	if (c->req) {
		blog(BLOG_DEBUG, "peer", "cannot connect to member %016llx at %s: timed out",
		     (unsigned long long)node_member_id_of(c->t->p.n, c->target), c->address);
		dial_next(c);
	} else {
		blog(BLOG_WARN, "peer", "rejected connection from \"%s\" (error \"no raft handshake "
		     "or HTTP/2 preface within %d ms\")", c->address, HELLO_MS);
	}
	conn_close(c);
}

/* Readable, nothing read (a zero-length buffer: libuv answers UV_ENOBUFS). */
static void alloc_none(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	(void)h;
	(void)size;
	*buf = uv_buf_init(NULL, 0);
}

static void to_grpc(struct tcp_conn *c)
{
	struct tcp_transport *t = c->t;
	uv_os_fd_t fd;
	int own;

	if (!t->p.n->peer_grpc_cb || uv_fileno((uv_handle_t *)c->tcp, &fd) != 0 ||
	    (own = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		conn_close(c);
		return;
	}
	conn_close(c); /* closes libuv's descriptor; own keeps the socket */
	t->p.n->peer_grpc_cb(t->p.n->peer_grpc_data, own);
}

static void peek_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct tcp_conn *c = s->data;
	struct tcp_transport *t = c->t;
	char address[PEER_HELLO_MAX_ADDRESS + 1], why[96];
	uint64_t id = 0;
	size_t used = 0;
	uv_os_fd_t fd;
	ssize_t n;

	(void)buf;
	if (nread != UV_ENOBUFS || t->p.closing || uv_fileno((uv_handle_t *)s, &fd) != 0) {
		conn_close(c); /* an error or EOF */
		return;
	}
	n = recv(fd, c->buf, sizeof(c->buf), MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	switch (peer_hello_parse(c->buf, (size_t)n, &id, address, &used, why, sizeof(why))) {
	case PEER_HELLO_MORE: /* level-triggered: wait a little rather than spin */
		uv_read_stop(s);
		uv_timer_start(&c->timer, timer_cb, RETRY_MS, 0);
		return;
	case PEER_HELLO_GRPC:
		uv_read_stop(s);
		to_grpc(c);
		return;
	case PEER_HELLO_BAD:
		blog(BLOG_WARN, "peer", "rejected connection from \"%s\" (error \"%s\")", c->address,
		     why);
		conn_close(c);
		return;
	case PEER_HELLO_RAFT:
		break;
	}
	uv_read_stop(s);
	if (recv(fd, c->buf, used, 0) != (ssize_t)used) { /* it is there: just peeked */
		conn_close(c);
		return;
	}
	blog(BLOG_DEBUG, "peer", "accepted raft connection from member %016llx at %s",
	     (unsigned long long)id, c->address);
	t->p.accept_cb(t->p.rt, id, address, conn_hand(c));
}

static void peek_start(struct tcp_conn *c)
{
	uv_timer_start(&c->timer, timer_cb, c->deadline - uv_now(c->t->p.loop), 0);
	if (uv_read_start((uv_stream_t *)c->tcp, alloc_none, peek_cb) != 0)
		conn_close(c);
}

static void listen_cb(uv_stream_t *l, int status)
{
	struct tcp_transport *t = l->data; /* its peer_port, first */
	struct tcp_conn *c;
	struct sockaddr_storage sa;
	int len = sizeof(sa);

	if (status < 0 || t->p.closing || !(c = conn_new(t)))
		return;
	if (uv_accept(l, (uv_stream_t *)c->tcp) != 0) {
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(c->tcp, 1);
	if (uv_tcp_getpeername(c->tcp, (struct sockaddr *)&sa, &len) == 0 &&
	    sa.ss_family == AF_INET) {
		char ip[64] = "";
		uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof(ip));
		snprintf(c->address, sizeof(c->address), "%s:%d", ip,
		         ntohs(((struct sockaddr_in *)&sa)->sin_port));
	}
	peek_start(c);
}

/* --------------------------------------------------------------- dialing */

static void hello_written(uv_write_t *w, int status)
{
	struct tcp_conn *c = w->data;
	struct raft_uv_connect *req;

	if (c->closing)
		return;
	if (status != 0) {
		blog(BLOG_DEBUG, "peer", "cannot connect to member %016llx at %s: %s",
		     (unsigned long long)node_member_id_of(c->t->p.n, c->target), c->address,
		     uv_strerror(status));
		dial_next(c);
		conn_close(c);
		return;
	}
	req = c->req;
	c->req = NULL;
	req->cb(req, conn_hand(c), 0);
}

static void connected(uv_connect_t *cr, int status)
{
	struct tcp_conn *c = cr->data;
	uv_buf_t b;

	if (c->closing)
		return;
	b.base = (char *)c->buf;
	b.len = peer_hello_encode(c->buf, c->t->p.id, c->t->p.address);
	c->wreq.data = c;
	if (status != 0 || b.len == 0 ||
	    uv_write(&c->wreq, (uv_stream_t *)c->tcp, &b, 1, hello_written) != 0) {
		/* a member that is down is normal: raft retries every second */
		blog(BLOG_DEBUG, "peer", "cannot connect to member %016llx at %s: %s",
		     (unsigned long long)node_member_id_of(c->t->p.n, c->target), c->address,
		     status ? uv_strerror(status) : "handshake");
		dial_next(c);
		conn_close(c);
	}
}

/* Dial id at address for req (its cb set): 0, or a raft error with nothing
 * started. */
static int dial(struct tcp_transport *t, struct raft_uv_connect *req, raft_id id,
                const char *address, unsigned tries)
{
	struct raft_uv_transport *rt = t->p.rt;
	struct tcp_conn *c;
	struct sockaddr_in sa;
	char ip[64];

	if (peer_address_parse(address, &sa, ip, sizeof(ip)) != 0) {
		snprintf(rt->errmsg, sizeof(rt->errmsg), "bad peer address %.200s", address);
		return RAFT_NOCONNECTION;
	}
	if (!(c = conn_new(t)))
		return RAFT_NOMEM;
	c->target = id;
	c->tries = tries;
	snprintf(c->address, sizeof(c->address), "%s", address);
	c->creq.data = c;
	uv_tcp_nodelay(c->tcp, 1);
	if (uv_tcp_connect(&c->creq, c->tcp, (struct sockaddr *)&sa, connected) != 0) {
		snprintf(rt->errmsg, sizeof(rt->errmsg), "connect to %.200s failed", address);
		conn_close(c); /* no callback for raft: req is not set yet */
		return RAFT_NOCONNECTION;
	}
	c->req = req;
	uv_timer_start(&c->timer, timer_cb, HELLO_MS, 0);
	return 0;
}

/* c's dial failed: its request goes on with the target's next peer URL, if
 * one is left untried (c then closes without answering raft). */
static bool dial_next(struct tcp_conn *c)
{
	struct tcp_transport *t = c->t;
	struct raft_uv_connect *req = c->req;
	char next[sizeof(c->address)];

	if (req == NULL || t->p.closing ||
	    !node_peer_failed(t->p.n, c->target, c->address, c->tries, next, sizeof(next)))
		return false;
	c->req = NULL;
	if (dial(t, req, c->target, next, c->tries + 1) != 0) {
		c->req = req;
		return false;
	}
	return true;
}

static int tr_connect(struct raft_uv_transport *rt, struct raft_uv_connect *req, raft_id id,
                      const char *address, raft_uv_connect_cb cb)
{
	struct tcp_transport *t = rt->impl;
	req->cb = cb;
	/* the URL of the member that last worked (raft's address is its first) */
	return dial(t, req, id, node_peer_pick(t->p.n, id, address), 1);
}

/* ------------------------------------------------------------- transport */

static int tr_listen(struct raft_uv_transport *rt, raft_uv_accept_cb cb)
{
	return peer_port_listen(rt, cb, listen_cb);
}

static void tr_close(struct raft_uv_transport *rt, raft_uv_transport_close_cb cb)
{
	struct tcp_transport *t = rt->impl;
	peer_port_close(&t->p, cb);
	for (struct tcp_conn *c = t->conns; c; c = c->next)
		conn_close(c);
	peer_port_maybe_closed(&t->p);
}

int node_peer_tcp_init(struct node *n, char *errbuf, size_t errlen)
{
	struct raft_uv_transport *rt = &n->transport;
	struct tcp_transport *t = calloc(1, sizeof(*t));

	if (!t) {
		snprintf(errbuf, errlen, "raft transport: out of memory");
		return -ENOMEM;
	}
	peer_port_setup(&t->p, n, n->loop, n->bind_addrs.v, n->bind_addrs.n, rt, t);
	rt->init = peer_port_init;
	rt->listen = tr_listen;
	rt->connect = tr_connect;
	rt->close = tr_close;
	return 0;
}

void node_peer_tcp_free(struct node *n)
{
	free(n->transport.impl);
	n->transport.impl = NULL;
}
