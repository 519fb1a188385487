/* conn.h - one TLS connection on a libuv loop, as a pump: ciphertext on a
 * TCP handle outside, plaintext on a socketpair inside.
 *
 * OpenSSL runs on memory BIOs: bytes read from TCP go into the TLS engine,
 * what it produces is written back to TCP. Once the handshake completed
 * (the SSL_CTX decides what is verified), the owner may look at the first
 * plaintext bytes (tls_conn_pending: a protocol preamble), write some of its
 * own (tls_conn_write), then splice: the pump creates a socketpair, keeps one
 * end and hands the other, a plain connected stream socket, to whoever
 * speaks the protocol (raft, gRPC). From then on it copies both ways, with
 * back-pressure, until either side ends; then it flushes what is queued and
 * closes, so the other side sees EOF.
 *
 * Caller-owned: the struct stays valid until close_cb. Loop thread only. */
#ifndef BOLLARD_TLS_CONN_H
#define BOLLARD_TLS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

struct tls_conn;

struct tls_conn_ops {
	/* Once per connection: status 0 when the handshake completed (the
	 * owner may now splice, write, or wait for data_cb), or -1 when it
	 * failed or the connection ended before (errmsg says why; close_cb
	 * follows). Never called from inside tls_conn_accept/connect. */
	void (*handshake_cb)(struct tls_conn *c, int status);
	/* Plaintext arrived before the splice (see tls_conn_pending). May be
	 * NULL. */
	void (*data_cb)(struct tls_conn *c);
	/* Every handle is closed and c may be freed. */
	void (*close_cb)(struct tls_conn *c);
};

struct tls_conn {
	void *data;                     /* the owner's (kept by accept/connect) */
	const struct tls_conn_ops *ops;
	char peer[64];                  /* the other end, "ip:port" */
	char errmsg[320];               /* why it failed (OpenSSL's reason) */
	/* private */
	uv_loop_t *loop;
	uv_tcp_t tcp;
	uv_pipe_t inner;
	uv_timer_t timer;
	uv_connect_t creq;
	SSL *ssl;
	BIO *rbio, *wbio;
	uint8_t *pre;                   /* plaintext before the splice */
	size_t npre, cappre;
	int handles;                    /* open handles */
	int tcp_writes, inner_writes;   /* writes in flight */
	size_t inner_queued;            /* bytes queued to inner */
	bool open, reported, spliced, draining, closing, tcp_paused, inner_paused, tcp_reading;
	uint8_t rbuf[16384];
};

/* Accept a connection pending on listener and start the server handshake;
 * it must complete within timeout_ms, and the splice follow within the same
 * time. 0, or a negative uv error with nothing to clean up (no callback). */
int tls_conn_accept(struct tls_conn *c, const struct tls_conn_ops *ops, uv_loop_t *loop,
                    uv_stream_t *listener, SSL_CTX *ctx, unsigned timeout_ms);

/* Dial addr and run the client handshake. verify_ip, if not NULL, is the IP
 * address the server's certificate must name (with the context's
 * SSL_VERIFY_PEER). Same contract as tls_conn_accept. */
int tls_conn_connect(struct tls_conn *c, const struct tls_conn_ops *ops, uv_loop_t *loop,
                     const struct sockaddr *addr, SSL_CTX *ctx, const char *verify_ip,
                     unsigned timeout_ms);

/* Plaintext received so far and not consumed (before the splice). */
const uint8_t *tls_conn_pending(const struct tls_conn *c, size_t *len);
void tls_conn_consume(struct tls_conn *c, size_t n);

/* Send plaintext to the peer (after the handshake). 0 or -1. */
int tls_conn_write(struct tls_conn *c, const void *buf, size_t len);

/* After the handshake: make the socketpair; *fd is the caller's end (a
 * connected AF_UNIX stream socket, non-blocking, close-on-exec). Unconsumed pending bytes
 * are its first input. 0 or a negative errno. */
int tls_conn_splice(struct tls_conn *c, int *fd);

/* Close now (idempotent); handshake_cb(-1) if it had not run, then close_cb. */
void tls_conn_close(struct tls_conn *c);

/* From an SSL_CTX verify callback: refuse the certificate being verified
 * with why as the connection's reason (errmsg). Returns 0 for the callback
 * to return. */
int tls_conn_refuse_cert(X509_STORE_CTX *ctx, const char *why);

/* The CommonName of the peer's certificate, or "" (after the handshake). */
void tls_conn_peer_cn(const struct tls_conn *c, char *buf, size_t len);

#endif
