/* peer.c - raft's transport between members. For https peer URLs it is our
 * own struct raft_uv_transport over TLS (canonical/raft's TCP transport has
 * none): each connection is a tls/conn.h pump, and raft gets the plain end
 * of its socketpair as a uv_pipe_t, after the same handshake preamble raft's
 * TCP transport uses (protocol 1, server ID, padded address; little-endian
 * 64-bit words; peer_port.h), which travels inside TLS. For http peer URLs,
 * peer_tcp.c's plain transport. Also the peer TLS flags: loading, checks,
 * --peer-auto-tls.
 *
 * With peer TLS, members' own gRPC (bollard.Internal: forwarded writes,
 * ReadIndex, leases) also travels over the peer port, inside the same TLS:
 * an accepted connection whose plaintext starts with HTTP/2's preface goes
 * to the server layer's hook (node_set_peer_grpc), and node_peer_dial gives
 * the forwarder a plain socket to a member's peer port. etcd too serves
 * member-to-member traffic on the peer port only (peer_tcp.c does the same
 * without TLS).
 *
 * Refused handshakes (untrusted or missing certificate, wrong IP SAN, plain
 * text) are logged with the peer's address and OpenSSL's reason. Raft's
 * dial of a member tries its peer URLs in turn (peer_pick.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "node/log.h"
#include "node/node_int.h"
#include "node/peer_port.h"
#include "node/peer_pick.h"
#include "tls/certs.h"
#include "tls/conn.h"

#define PEER_HANDSHAKE_MS 5000

struct peer_conn;

struct peer_transport {
	struct peer_port p;      /* first */
	SSL_CTX *server_ctx, *client_ctx;
	bool check_ip;           /* dialing: the certificate must name the IP */
	struct peer_conn *conns;
	const char *allowed_cn, *allowed_host; /* --peer-cert-allowed-cn/-hostname */
};

struct peer_conn {
	struct tls_conn tc;
	struct peer_transport *t;
	struct peer_conn *prev, *next;
	struct raft_uv_connect *req; /* outgoing, until answered */
	raft_id target;
	unsigned tries;              /* raft's dial: the target's URLs dialed so far */
	char address[300];           /* outgoing: the address dialed */
	bool handed;                 /* raft (or gRPC) has the plain end */
	bool outgoing;               /* we dialed */
	node_peer_dial_cb dial_cb;   /* node_peer_dial, until answered */
	void *dial_data;
};

static bool dial_next(struct peer_conn *pc);

static void conn_closed(struct tls_conn *tc)
{
	struct peer_conn *pc = tc->data;
	struct peer_transport *t = pc->t;

	/* a failure after the handshake (e.g. the server refused our
	 * certificate: TLS 1.3 says so after the client's handshake ends) */
	if (pc->handed && tc->errmsg[0])
		blog(BLOG_WARN, "peer", "connection with %s (%s) failed: %s", tc->peer,
		     pc->outgoing ? "outgoing" : "incoming", tc->errmsg);
	if (pc->req && !dial_next(pc)) {
		struct raft_uv_connect *req = pc->req;
		pc->req = NULL;
		req->cb(req, NULL, t->p.closing ? RAFT_CANCELED : RAFT_NOCONNECTION);
	}
	if (pc->dial_cb) {
		node_peer_dial_cb cb = pc->dial_cb;
		pc->dial_cb = NULL;
		cb(pc->dial_data, -1, tc->errmsg[0] ? tc->errmsg : "connection closed");
	}
	if (pc->prev)
		pc->prev->next = pc->next;
	else
		t->conns = pc->next;
	if (pc->next)
		pc->next->prev = pc->prev;
	free(pc);
	t->p.pending--;
	peer_port_maybe_closed(&t->p);
}

static struct peer_conn *conn_new(struct peer_transport *t)
{
	struct peer_conn *pc = calloc(1, sizeof(*pc));
	if (!pc)
		return NULL;
	pc->t = t;
	pc->tc.data = pc;
	return pc;
}

static void conn_link(struct peer_transport *t, struct peer_conn *pc)
{
	pc->next = t->conns;
	if (t->conns)
		t->conns->prev = pc;
	t->conns = pc;
	t->p.pending++;
}

/* The plain end of a connection as the stream raft takes (raft frees it
 * with raft_free after uv_close). */
static uv_stream_t *conn_stream(struct peer_conn *pc)
{
	uv_pipe_t *p;
	int fd;

	if (tls_conn_splice(&pc->tc, &fd) != 0)
		return NULL;
	if (!(p = raft_malloc(sizeof(*p)))) {
		close(fd);
		return NULL;
	}
	uv_pipe_init(pc->t->p.loop, p, 0);
	if (uv_pipe_open(p, fd) != 0) {
		close(fd);
		uv_close((uv_handle_t *)p, (uv_close_cb)raft_free);
		return NULL;
	}
	pc->handed = true;
	return (uv_stream_t *)p;
}

/* ------------------------------------------------------------- accepting */

static void in_handshake(struct tls_conn *tc, int status)
{
	if (status != 0)
		blog(BLOG_WARN, "peer", "rejected connection from \"%s\" (error \"%s\")", tc->peer,
		     tc->errmsg);
}

/* The raft preamble, inside TLS: then raft gets the stream. */
static void in_data(struct tls_conn *tc)
{
	struct peer_conn *pc = tc->data;
	struct peer_transport *t = pc->t;
	char address[PEER_HELLO_MAX_ADDRESS + 1], why[96];
	uint64_t id = 0;
	size_t len, used = 0;
	const uint8_t *p = tls_conn_pending(tc, &len);
	uv_stream_t *s;
	int fd;

	switch (peer_hello_parse(p, len, &id, address, &used, why, sizeof(why))) {
	case PEER_HELLO_MORE:
		return;
	case PEER_HELLO_GRPC: /* a member's gRPC: bollard.Internal */
		if (!t->p.n->peer_grpc_cb || t->p.closing || tls_conn_splice(tc, &fd) != 0) {
			tls_conn_close(tc);
			return;
		}
		pc->handed = true;
		t->p.n->peer_grpc_cb(t->p.n->peer_grpc_data, fd); /* the preface is still in the stream */
		return;
	case PEER_HELLO_BAD:
		blog(BLOG_WARN, "peer", "rejected connection from \"%s\" (error \"%s\")", tc->peer, why);
		tls_conn_close(tc);
		return;
	case PEER_HELLO_RAFT:
		break;
	}
	tls_conn_consume(tc, used);
	if (t->p.closing || !(s = conn_stream(pc))) {
		tls_conn_close(tc);
		return;
	}
	blog(BLOG_DEBUG, "peer", "accepted raft connection from member %016llx at %s",
	     (unsigned long long)id, tc->peer);
	t->p.accept_cb(t->p.rt, id, address, s);
}

static const struct tls_conn_ops in_ops = {in_handshake, in_data, conn_closed};

static void listen_cb(uv_stream_t *l, int status)
{
	struct peer_transport *t = l->data;
	struct peer_conn *pc;
	int rc;

	if (status < 0 || t->p.closing)
		return;
	if (!(pc = conn_new(t)))
		return;
	if ((rc = tls_conn_accept(&pc->tc, &in_ops, t->p.loop, l, t->server_ctx,
	                          PEER_HANDSHAKE_MS)) != 0) {
		blog(BLOG_WARN, "peer", "accept: %s", uv_strerror(rc));
		free(pc);
		return;
	}
	conn_link(t, pc);
}

/* --------------------------------------------------------------- dialing */

static void out_handshake(struct tls_conn *tc, int status)
{
	struct peer_conn *pc = tc->data;
	struct peer_transport *t = pc->t;
	uint8_t hs[PEER_HELLO_MAX];
	size_t len;
	uv_stream_t *s;

	if (status != 0) {
		/* a member that is down is normal: raft retries every second */
		int lvl = strncmp(tc->errmsg, "dial tcp", 8) == 0 ? BLOG_DEBUG : BLOG_WARN;
		blog(lvl, "peer", "cannot connect to member %016llx at %s: %s", /* etcd's ID */
		     (unsigned long long)node_member_id_of(t->p.n, pc->target), pc->address,
		     tc->errmsg);
		return; /* conn_closed answers raft */
	}
	len = peer_hello_encode(hs, t->p.id, t->p.address);
	if (len == 0 || tls_conn_write(tc, hs, len) != 0 || !(s = conn_stream(pc))) {
		tls_conn_close(tc);
		return;
	}
	struct raft_uv_connect *req = pc->req;
	pc->req = NULL;
	req->cb(req, s, 0);
}

static const struct tls_conn_ops out_ops = {out_handshake, NULL, conn_closed};

/* Dial id at address for req (its cb set): 0, or a raft error with nothing
 * started. */
static int dial(struct peer_transport *t, struct raft_uv_connect *req, raft_id id,
                const char *address, unsigned tries)
{
	struct raft_uv_transport *rt = t->p.rt;
	struct peer_conn *pc;
	struct sockaddr_in sa;
	char ip[64];
	int rc;

	if (peer_address_parse(address, &sa, ip, sizeof(ip)) != 0) {
		snprintf(rt->errmsg, sizeof(rt->errmsg), "bad peer address %.200s", address);
		return RAFT_NOCONNECTION;
	}
	if (!(pc = conn_new(t)))
		return RAFT_NOMEM;
	pc->req = req;
	pc->outgoing = true;
	pc->target = id;
	pc->tries = tries;
	snprintf(pc->address, sizeof(pc->address), "%s", address);
	if ((rc = tls_conn_connect(&pc->tc, &out_ops, t->p.loop, (struct sockaddr *)&sa,
	                           t->client_ctx, t->check_ip ? ip : NULL, PEER_HANDSHAKE_MS)) != 0) {
		snprintf(rt->errmsg, sizeof(rt->errmsg), "connect to %.200s: %s", address, uv_strerror(rc));
		free(pc);
		return RAFT_NOCONNECTION;
	}
	conn_link(t, pc);
	return 0;
}

/* pc's dial failed before raft had it: its request goes on with the target's
 * next peer URL, if one is left untried. */
static bool dial_next(struct peer_conn *pc)
{
	struct peer_transport *t = pc->t;
	char next[sizeof(pc->address)];

	if (pc->handed || t->p.closing ||
	    !node_peer_failed(t->p.n, pc->target, pc->address, pc->tries, next, sizeof(next)) ||
	    dial(t, pc->req, pc->target, next, pc->tries + 1) != 0)
		return false;
	pc->req = NULL;
	return true;
}

static int tr_connect(struct raft_uv_transport *rt, struct raft_uv_connect *req, raft_id id,
                      const char *address, raft_uv_connect_cb cb)
{
	struct peer_transport *t = rt->impl;
	req->cb = cb;
	/* the URL of the member that last worked (raft's address is its first) */
	return dial(t, req, id, node_peer_pick(t->p.n, id, address), 1);
}

/* -------------------------------------------------- member gRPC dialing */

static void dial_handshake(struct tls_conn *tc, int status)
{
	struct peer_conn *pc = tc->data;
	node_peer_dial_cb cb = pc->dial_cb;
	int fd;

	if (status != 0) {
		int lvl = strncmp(tc->errmsg, "dial tcp", 8) == 0 ? BLOG_DEBUG : BLOG_WARN;
		blog(lvl, "peer", "cannot connect to the member at %s: %s", pc->address, tc->errmsg);
		return; /* conn_closed answers */
	}
	if (tls_conn_splice(tc, &fd) != 0) {
		tls_conn_close(tc);
		return;
	}
	pc->handed = true;
	pc->dial_cb = NULL;
	cb(pc->dial_data, fd, NULL);
}

static const struct tls_conn_ops dial_ops = {dial_handshake, NULL, conn_closed};

int node_peer_dial(struct node *n, const char *address, node_peer_dial_cb cb, void *data)
{
	struct peer_transport *t = n->transport.impl;
	struct peer_conn *pc;
	struct sockaddr_in sa;
	char ip[64];
	int rc;

	if (!n->peer_tls || !t || t->p.closing)
		return -ECANCELED;
	if (peer_address_parse(address, &sa, ip, sizeof(ip)) != 0)
		return -EINVAL;
	if (!(pc = conn_new(t)))
		return -ENOMEM;
	pc->dial_cb = cb;
	pc->dial_data = data;
	pc->outgoing = true;
	snprintf(pc->address, sizeof(pc->address), "%s", address);
	if ((rc = tls_conn_connect(&pc->tc, &dial_ops, t->p.loop, (struct sockaddr *)&sa,
	                           t->client_ctx, t->check_ip ? ip : NULL, PEER_HANDSHAKE_MS)) != 0) {
		free(pc);
		return rc;
	}
	conn_link(t, pc);
	return 0;
}

void node_set_peer_grpc(struct node *n, node_peer_grpc_cb cb, void *data)
{
	n->peer_grpc_cb = cb; /* for either transport */
	n->peer_grpc_data = data;
}

bool node_peer_tls(const struct node *n)
{
	return n->peer_tls;
}

/* ------------------------------------------------------------- transport */

static int tr_listen(struct raft_uv_transport *rt, raft_uv_accept_cb cb)
{
	return peer_port_listen(rt, cb, listen_cb);
}

static void tr_close(struct raft_uv_transport *rt, raft_uv_transport_close_cb cb)
{
	struct peer_transport *t = rt->impl;
	peer_port_close(&t->p, cb);
	for (struct peer_conn *pc = t->conns; pc; pc = pc->next)
		tls_conn_close(&pc->tc);
	peer_port_maybe_closed(&t->p);
}

static void transport_free(struct peer_transport *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->server_ctx);
	SSL_CTX_free(t->client_ctx);
	free(t);
}

/* ---------------------------------------------------------------- config */

/* --peer-cert-allowed-cn / --peer-cert-allowed-hostname: as etcd (both ends
 * of a peer connection), the verified certificate of the other member must
 * carry that CommonName, or name that host. */
static int verify_allowed(int ok, X509_STORE_CTX *ctx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(ctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct peer_transport *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	X509 *x = X509_STORE_CTX_get_current_cert(ctx);
	char cn[256] = "", why[400];

	if (!ok || X509_STORE_CTX_get_error_depth(ctx) != 0 || !x)
		return ok;
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
	if (t->allowed_cn && strcmp(cn, t->allowed_cn) != 0) {
		snprintf(why, sizeof(why), "certificate CommonName '%s' is not the allowed '%s'", cn,
		         t->allowed_cn);
		return tls_conn_refuse_cert(ctx, why);
	}
	if (t->allowed_host && X509_check_host(x, t->allowed_host, 0, 0, NULL) != 1) {
		snprintf(why, sizeof(why), "certificate (CN '%s') is not valid for the allowed "
		         "hostname '%s'", cn, t->allowed_host);
		return tls_conn_refuse_cert(ctx, why);
	}
	return ok;
}

static bool empty(const char *s)
{
	return !s || !*s;
}

int node_peer_setup(struct node *n, char *errbuf, size_t errlen)
{
	struct node_config *c = &n->cfg;
	const char *cert = c->peer_tls.cert_file, *key = c->peer_tls.key_file;
	const char *ca = c->peer_tls.trusted_ca_file, *u;
	bool given = !empty(cert) || !empty(key), selfsigned = false;
	struct tls_pem pem;
	struct peer_transport *t;
	size_t ulen = tls_first_https(c->listen_peer_urls, &u);

	/* the member listens on the first listen peer URL (node.c) */
	n->peer_tls = strncmp(c->listen_peer_urls, "https://", 8) == 0;
	if (!n->peer_tls) {
		if (ulen) {
			snprintf(errbuf, errlen, "--listen-peer-urls mixes http and https (%.*s): not "
			         "supported", (int)ulen, u);
			return -EINVAL;
		}
		if (given || c->peer_tls.auto_tls)
			blog(BLOG_WARN, "peer", "scheme is HTTP while key and cert files are present; "
			     "ignoring key and cert files (peer URLs %s)", c->listen_peer_urls);
		return 0;
	}
	if (given && c->peer_tls.auto_tls)
		blog(BLOG_WARN, "peer", "ignoring peer auto TLS since certs given");
	if (!given && c->peer_tls.auto_tls) {
		char dir[PATH_MAX + 32];
		snprintf(dir, sizeof(dir), "%s/fixtures/peer", c->data_dir);
		if (tls_auto_cert("--peer-auto-tls", dir, c->listen_peer_urls, &n->peer_auto_cert,
		                  &n->peer_auto_key, errbuf, errlen) != 0)
			return -EINVAL;
		cert = n->peer_auto_cert;
		key = n->peer_auto_key;
		ca = NULL;
		selfsigned = true;
		blog(BLOG_INFO, "peer", "--peer-auto-tls: peer traffic encrypted with the self-signed "
		     "%s; peers are not authenticated", cert);
	} else if (!given) {
		/* etcd 3.4's words, and the flags that fix it */
		snprintf(errbuf, errlen, "cannot listen on TLS for %s: KeyFile and CertFile are not "
		         "presented (--peer-cert-file, --peer-key-file or --peer-auto-tls)",
		         n->bind_addrs.v[0]);
		return -EINVAL;
	}
	if (!empty(c->peer_tls.allowed_cn) && !empty(c->peer_tls.allowed_hostname)) {
		snprintf(errbuf, errlen, "AllowedCN and AllowedHostname are mutually exclusive "
		         "(cn=%s, hostname=%s)", c->peer_tls.allowed_cn, c->peer_tls.allowed_hostname);
		return -EINVAL;
	}
	if (!selfsigned && c->peer_tls.client_cert_auth && empty(ca)) {
		snprintf(errbuf, errlen, "--peer-client-cert-auth needs --peer-trusted-ca-file (the CA "
		         "that signs peer certificates)");
		return -EINVAL;
	}
	blog(BLOG_INFO, "peer", "peerTLS: cert = %s, key = %s, trusted-ca = %s, client-cert-auth = %s",
	     cert, key, empty(ca) ? "" : ca, c->peer_tls.client_cert_auth ? "true" : "false");
	if (tls_pem_load(&pem, "peer-", cert, key, ca, errbuf, errlen) != 0)
		return -EINVAL;
	if (!(t = calloc(1, sizeof(*t)))) {
		tls_pem_free(&pem);
		return -ENOMEM;
	}
	peer_port_setup(&t->p, n, n->loop, n->bind_addrs.v, n->bind_addrs.n, &n->transport, t);
	t->check_ip = !selfsigned;
	t->server_ctx = tls_ctx_new(&pem, true, errbuf, errlen);
	t->client_ctx = t->server_ctx ? tls_ctx_new(&pem, false, errbuf, errlen) : NULL;
	tls_pem_free(&pem);
	if (!t->client_ctx) {
		transport_free(t);
		return -EINVAL;
	}
	/* Dialing: verify the member's certificate and its IP SAN (as etcd,
	 * whose Go TLS client checks the dialed host), except etcd's
	 * self-signed auto TLS. Accepting: with --peer-client-cert-auth, a
	 * certificate from the trusted CA is required. */
	t->allowed_cn = empty(c->peer_tls.allowed_cn) ? NULL : c->peer_tls.allowed_cn;
	t->allowed_host = empty(c->peer_tls.allowed_hostname) ? NULL : c->peer_tls.allowed_hostname;
	SSL_CTX_set_app_data(t->server_ctx, t);
	SSL_CTX_set_app_data(t->client_ctx, t);
	SSL_CTX_set_verify(t->client_ctx, selfsigned ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
	                   verify_allowed);
	if (selfsigned && c->peer_tls.client_cert_auth)
		blog(BLOG_WARN, "peer", "--peer-client-cert-auth has no CA to verify against with "
		     "--peer-auto-tls; peer certificates are not verified");
	SSL_CTX_set_verify(t->server_ctx,
	                   !selfsigned && c->peer_tls.client_cert_auth
	                           ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
	                           : SSL_VERIFY_NONE,
	                   verify_allowed);
	if (!selfsigned && !c->peer_tls.client_cert_auth)
		blog(BLOG_WARN, "peer", "peer TLS without --peer-client-cert-auth: connecting "
		     "members are not authenticated");
	return 0;
}

int node_transport_init(struct node *n, char *errbuf, size_t errlen)
{
	struct raft_uv_transport *rt = &n->transport;

	if (n->peer_tls) {
		rt->init = peer_port_init;
		rt->listen = tr_listen;
		rt->connect = tr_connect;
		rt->close = tr_close;
		return 0;
	}
	return node_peer_tcp_init(n, errbuf, errlen);
}

void node_transport_close(struct node *n)
{
	if (n->peer_tls) {
		transport_free(n->transport.impl);
		n->transport.impl = NULL;
	} else {
		node_peer_tcp_free(n);
	}
}
