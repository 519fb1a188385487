/* h2tls.h - TLS for the h2 listener (h2srv.c), with OpenSSL: the server
 * context made from etcd's client TLS flags as the gRPC port makes its
 * credentials (TLS 1.2 or later; ALPN "h2" or the connection is closed
 * after the handshake, as the gRPC C core does; --client-cert-auth: a client
 * certificate signed by --trusted-ca-file is required), and one connection's
 * non-blocking TLS on its socket for an epoll loop (no thread of its own, no
 * timers). The files are read once, at start: like the gRPC port, no reload. */
#ifndef BOLLARD_SERVER_H2TLS_H
#define BOLLARD_SERVER_H2TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

struct etcd_tls_config;

/* The server context for cfg (server.h), or *out NULL and 0 when cfg names
 * no certificate. The files are read and checked once, as the gRPC port's
 * (srv_tls_load). 0 or -1 with err set. */
int h2tls_ctx_new(SSL_CTX **out, const struct etcd_tls_config *cfg, char *err, size_t errlen);

/* One accepted connection. Caller-owned; h2tls_fini frees what init made. */
struct h2tls {
	SSL *ssl;
	bool open;           /* handshake done, ALPN h2 */
	bool read_want_out;  /* the last read (or handshake) waits for the socket to take data */
	bool write_want_in;  /* the last write waits for data from the peer */
	bool client_cert;    /* --client-cert-auth: keep the client's CommonName */
	char *peer_cn;       /* ... here (malloc'ed), NULL if none */
};

/* Start the server side of a handshake on fd (non-blocking, connected).
 * 0 or -1. */
int h2tls_init(struct h2tls *t, SSL_CTX *ctx, int fd, bool client_cert);

/* Plaintext from the peer, running the handshake first: > 0 bytes, 0 the
 * peer closed (or refused the handshake, or did not negotiate h2), -EAGAIN
 * nothing now (see read_want_out), -EIO failed. */
ssize_t h2tls_read(struct h2tls *t, void *buf, size_t len);

/* Bytes the TLS engine holds that read() on the socket will not announce. */
bool h2tls_pending(const struct h2tls *t);

/* Send plaintext: > 0 bytes taken (at least one record; call again with the
 * rest, at the same or a moved address, never fewer bytes after -EAGAIN),
 * -EAGAIN not now (write_want_in says which way), -EIO failed. Before the
 * handshake completed: -EAGAIN. */
ssize_t h2tls_write(struct h2tls *t, const void *buf, size_t len);

/* A close_notify, best effort, and free everything. */
void h2tls_fini(struct h2tls *t);

#endif
