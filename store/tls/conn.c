/* conn.c - a TLS connection on libuv as a pump between TCP (ciphertext) and
 * a socketpair (plaintext); see conn.h. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls/certs.h"
#include "tls/conn.h"

#define HIGH_WATER (4u << 20) /* stop reading the other side above this */
#define LOW_WATER (1u << 20)  /* and resume below this */
#define MAX_PRE (64u << 10)   /* plaintext before the splice */
#define DRAIN_MS 2000         /* flushing before close, at most */

struct wreq {
	uv_write_t w;
	struct tls_conn *c;
	size_t len;
	char data[];
};

static void pump(struct tls_conn *c);
static void close_now(struct tls_conn *c);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void inner_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void handle_closed(uv_handle_t *h)
{
	struct tls_conn *c = h->data;
	if (--c->handles > 0)
		return;
	SSL_free(c->ssl); /* and its BIOs */
	c->ssl = NULL;
	free(c->pre);
	c->pre = NULL;
	if (!c->reported) {
		c->reported = true;
		if (!c->errmsg[0])
			snprintf(c->errmsg, sizeof(c->errmsg), "connection closed");
		c->ops->handshake_cb(c, -1);
	}
	c->ops->close_cb(c);
}

static void close_now(struct tls_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, handle_closed);
	if (!uv_is_closing((uv_handle_t *)&c->timer))
		uv_close((uv_handle_t *)&c->timer, handle_closed);
	if (c->spliced && !uv_is_closing((uv_handle_t *)&c->inner))
		uv_close((uv_handle_t *)&c->inner, handle_closed);
}

void tls_conn_close(struct tls_conn *c)
{
	close_now(c);
}

static void drain_timeout(uv_timer_t *t)
{
	close_now(t->data);
}

static void maybe_drained(struct tls_conn *c)
{
	if (c->draining && c->tcp_writes == 0 && c->inner_writes == 0)
		close_now(c);
}

/* Stop taking input and close once what is queued has been written (so a
 * TLS alert or the last plaintext reaches its reader). */
static void finish(struct tls_conn *c)
{
	if (c->closing || c->draining)
		return;
	c->draining = true;
	if (c->tcp_reading)
		uv_read_stop((uv_stream_t *)&c->tcp);
	c->tcp_reading = false;
	if (c->spliced)
		uv_read_stop((uv_stream_t *)&c->inner);
	uv_timer_start(&c->timer, drain_timeout, DRAIN_MS, 0);
	maybe_drained(c);
}

/* A failure: errmsg gets what + OpenSSL's reason (and the certificate
 * verification result, if that failed). */
static void fail(struct tls_conn *c, const char *what)
{
	char why[256] = "";
	long vr = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
	unsigned long e = ERR_peek_last_error();

	if (e)
		tls_ssl_reason(why, sizeof(why), "");
	ERR_clear_error();
	if (!c->errmsg[0]) {
		if (vr != X509_V_OK && e)
			snprintf(c->errmsg, sizeof(c->errmsg), "%s: %s (%s)", what, why,
			         X509_verify_cert_error_string(vr));
		else
			snprintf(c->errmsg, sizeof(c->errmsg), "%s%s%s", what, why[0] ? ": " : "", why);
	}
	finish(c);
}

static void tcp_write_cb(uv_write_t *w, int status)
{
	struct wreq *r = (struct wreq *)w;
	struct tls_conn *c = r->c;
	free(r);
	c->tcp_writes--;
	if (status < 0 && !c->closing) {
		if (!c->errmsg[0])
			snprintf(c->errmsg, sizeof(c->errmsg), "write: %s", uv_strerror(status));
		close_now(c);
		return;
	}
	if (c->inner_paused && !c->draining && !c->closing &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < LOW_WATER) {
		c->inner_paused = false;
		uv_read_start((uv_stream_t *)&c->inner, alloc_cb, inner_read_cb);
	}
	maybe_drained(c);
}

/* Move what the TLS engine produced to TCP. */
static void flush_out(struct tls_conn *c)
{
	size_t n;
	while (!c->closing && (n = BIO_ctrl_pending(c->wbio)) > 0) {
		struct wreq *r = malloc(sizeof(*r) + n);
		uv_buf_t b;
		if (!r) {
			snprintf(c->errmsg, sizeof(c->errmsg), "out of memory");
			close_now(c);
			return;
		}
		r->c = c;
		r->len = (size_t)BIO_read(c->wbio, r->data, (int)n);
		b = uv_buf_init(r->data, (unsigned)r->len);
		if (uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, tcp_write_cb) != 0) {
			free(r);
			close_now(c);
			return;
		}
		c->tcp_writes++;
	}
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct tls_conn *c = h->data;
	(void)suggested;
	*buf = uv_buf_init((char *)c->rbuf, sizeof(c->rbuf));
}

static void inner_write_cb(uv_write_t *w, int status)
{
	struct wreq *r = (struct wreq *)w;
	struct tls_conn *c = r->c;
	c->inner_writes--;
	c->inner_queued -= r->len;
	free(r);
	if (status < 0 && !c->closing) {
		finish(c); /* the plaintext side went away */
		return;
	}
	if (c->tcp_paused && !c->draining && !c->closing && c->inner_queued < LOW_WATER) {
		c->tcp_paused = false;
		pump(c); /* the engine may hold more records already */
	}
	maybe_drained(c);
}

static void tcp_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void tcp_read_start(struct tls_conn *c)
{
	if (!c->tcp_reading && !c->tcp_paused && !c->draining && !c->closing) {
		uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, tcp_read_cb);
		c->tcp_reading = true;
	}
}

static int to_inner(struct tls_conn *c, const uint8_t *p, size_t n)
{
	struct wreq *r = malloc(sizeof(*r) + n);
	uv_buf_t b;
	if (!r)
		return -1;
	r->c = c;
	r->len = n;
	memcpy(r->data, p, n);
	b = uv_buf_init(r->data, (unsigned)n);
	if (uv_write(&r->w, (uv_stream_t *)&c->inner, &b, 1, inner_write_cb) != 0) {
		free(r);
		return -1;
	}
	c->inner_writes++;
	c->inner_queued += n;
	return 0;
}

/* Decrypted bytes: to the socketpair, or kept for the owner before it. */
static int deliver(struct tls_conn *c, const uint8_t *p, size_t n)
{
	if (c->spliced)
		return to_inner(c, p, n);
	if (c->npre + n > MAX_PRE) {
		snprintf(c->errmsg, sizeof(c->errmsg), "too much data before the protocol started");
		return -1;
	}
	if (c->npre + n > c->cappre) {
		size_t cap = c->cappre ? c->cappre * 2 : 4096;
		uint8_t *np;
		while (cap < c->npre + n)
			cap *= 2;
		if (!(np = realloc(c->pre, cap)))
			return -1;
		c->pre = np;
		c->cappre = cap;
	}
	memcpy(c->pre + c->npre, p, n);
	c->npre += n;
	return 0;
}

/* Run the TLS engine on what TCP brought. */
static void pump(struct tls_conn *c)
{
	uint8_t buf[16384];

	if (c->closing || c->draining)
		return;
	if (!c->open) {
		int r = SSL_do_handshake(c->ssl);
		flush_out(c);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return;
			fail(c, "TLS handshake failed");
			return;
		}
		c->open = true;
		c->reported = true;
		c->ops->handshake_cb(c, 0);
		if (c->closing || c->draining)
			return;
	}
	for (;;) {
		int n, e;
		bool got = false;
		if (c->spliced && c->inner_queued >= HIGH_WATER) {
			/* back-pressure: stop reading TCP until the reader drains */
			c->tcp_paused = true;
			if (c->tcp_reading)
				uv_read_stop((uv_stream_t *)&c->tcp);
			c->tcp_reading = false;
			break;
		}
		n = SSL_read(c->ssl, buf, sizeof(buf));
		if (n > 0) {
			if (deliver(c, buf, (size_t)n) != 0) {
				close_now(c);
				return;
			}
			got = true;
		}
		if (got && !c->spliced && c->ops->data_cb) {
			c->ops->data_cb(c);
			if (c->closing || c->draining)
				return;
		}
		if (n > 0)
			continue;
		e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			break;
		if (e == SSL_ERROR_ZERO_RETURN) {
			flush_out(c);
			finish(c); /* the peer closed its side */
			return;
		}
		fail(c, "TLS read failed");
		return;
	}
	flush_out(c);
	tcp_read_start(c);
}

static void tcp_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct tls_conn *c = s->data;
	(void)buf;
	if (nread == 0)
		return;
	if (nread < 0) {
		if (!c->open && !c->errmsg[0])
			snprintf(c->errmsg, sizeof(c->errmsg), "TLS handshake failed: %s",
			         nread == UV_EOF ? "connection closed by the peer" : uv_strerror((int)nread));
		finish(c);
		return;
	}
	if (BIO_write(c->rbio, c->rbuf, (int)nread) != (int)nread) {
		snprintf(c->errmsg, sizeof(c->errmsg), "out of memory");
		close_now(c);
		return;
	}
	pump(c);
}

static void inner_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct tls_conn *c = s->data;
	(void)buf;
	if (nread == 0)
		return;
	if (nread < 0) {
		SSL_shutdown(c->ssl); /* close_notify */
		flush_out(c);
		finish(c);
		return;
	}
	if (tls_conn_write(c, c->rbuf, (size_t)nread) != 0)
		return;
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) >= HIGH_WATER) {
		c->inner_paused = true;
		uv_read_stop((uv_stream_t *)&c->inner);
	}
}

static void handshake_timeout(uv_timer_t *t)
{
	struct tls_conn *c = t->data;
	snprintf(c->errmsg, sizeof(c->errmsg), "%s",
	         c->open ? "no protocol preamble in time" : "TLS handshake timed out");
	close_now(c);
}

static int init_common(struct tls_conn *c, const struct tls_conn_ops *ops, uv_loop_t *loop,
                       SSL_CTX *ctx)
{
	void *data = c->data;
	memset(c, 0, offsetof(struct tls_conn, rbuf));
	c->data = data;
	c->ops = ops;
	c->loop = loop;
	if (!(c->ssl = SSL_new(ctx)) || !(c->rbio = BIO_new(BIO_s_mem())) ||
	    !(c->wbio = BIO_new(BIO_s_mem()))) {
		BIO_free(c->rbio);
		SSL_free(c->ssl);
		ERR_clear_error();
		return UV_ENOMEM;
	}
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	SSL_set_app_data(c->ssl, c); /* for tls_conn_refuse_cert */
	uv_tcp_init(loop, &c->tcp);
	uv_timer_init(loop, &c->timer);
	c->tcp.data = c->timer.data = c->inner.data = c;
	c->handles = 2;
	return 0;
}

/* Undo init_common synchronously impossible with libuv: close the handles
 * without callbacks to the owner. */
static void abort_closed(uv_handle_t *h)
{
	struct tls_conn *c = h->data;
	if (--c->handles == 0)
		SSL_free(c->ssl);
}

static void abort_init(struct tls_conn *c)
{
	uv_close((uv_handle_t *)&c->tcp, abort_closed);
	uv_close((uv_handle_t *)&c->timer, abort_closed);
}

static void set_peer(struct tls_conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char ip[64] = "?";
	int port = 0;
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
	}
	snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
}

int tls_conn_accept(struct tls_conn *c, const struct tls_conn_ops *ops, uv_loop_t *loop,
                    uv_stream_t *listener, SSL_CTX *ctx, unsigned timeout_ms)
{
	int rc = init_common(c, ops, loop, ctx);
	if (rc != 0)
		return rc;
	if ((rc = uv_accept(listener, (uv_stream_t *)&c->tcp)) != 0) {
		abort_init(c);
		return rc;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	set_peer(c);
	SSL_set_accept_state(c->ssl);
	uv_timer_start(&c->timer, handshake_timeout, timeout_ms, 0);
	tcp_read_start(c);
	return 0;
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct tls_conn *c = req->data;
	if (c->closing)
		return;
	if (status < 0) {
		snprintf(c->errmsg, sizeof(c->errmsg), "dial tcp %s: %s", c->peer, uv_strerror(status));
		close_now(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	tcp_read_start(c);
	pump(c); /* the ClientHello */
}

int tls_conn_connect(struct tls_conn *c, const struct tls_conn_ops *ops, uv_loop_t *loop,
                     const struct sockaddr *addr, SSL_CTX *ctx, const char *verify_ip,
                     unsigned timeout_ms)
{
	char ip[64] = "?";
	int rc = init_common(c, ops, loop, ctx);
	if (rc != 0)
		return rc;
	if (addr->sa_family == AF_INET) {
		uv_ip4_name((const struct sockaddr_in *)addr, ip, sizeof(ip));
		snprintf(c->peer, sizeof(c->peer), "%s:%d", ip,
		         ntohs(((const struct sockaddr_in *)addr)->sin_port));
	}
	if (verify_ip && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), verify_ip) != 1) {
		ERR_clear_error();
		abort_init(c);
		return UV_EINVAL;
	}
	SSL_set_connect_state(c->ssl);
	c->creq.data = c;
	if ((rc = uv_tcp_connect(&c->creq, &c->tcp, addr, connect_cb)) != 0) {
		abort_init(c);
		return rc;
	}
	uv_timer_start(&c->timer, handshake_timeout, timeout_ms, 0);
	return 0;
}

const uint8_t *tls_conn_pending(const struct tls_conn *c, size_t *len)
{
	*len = c->npre;
	return c->pre;
}

void tls_conn_consume(struct tls_conn *c, size_t n)
{
	if (n > c->npre)
		n = c->npre;
	memmove(c->pre, c->pre + n, c->npre - n);
	c->npre -= n;
}

int tls_conn_write(struct tls_conn *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	if (c->closing || c->draining || !c->open)
		return -1;
	while (len > 0) {
		int n = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
		if (n <= 0) {
			fail(c, "TLS write failed");
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	flush_out(c);
	return c->closing ? -1 : 0;
}

int tls_conn_splice(struct tls_conn *c, int *fd)
{
	int fds[2];
	if (c->closing || c->draining || !c->open || c->spliced)
		return -EINVAL;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) != 0)
		return -errno;
	uv_pipe_init(c->loop, &c->inner, 0);
	c->inner.data = c;
	c->handles++;
	if (uv_pipe_open(&c->inner, fds[0]) != 0) {
		close(fds[0]);
		close(fds[1]);
		uv_close((uv_handle_t *)&c->inner, handle_closed);
		close_now(c);
		return -EIO;
	}
	c->spliced = true;
	uv_timer_stop(&c->timer);
	if (c->npre > 0 && to_inner(c, c->pre, c->npre) != 0) {
		close(fds[1]);
		close_now(c);
		return -ENOMEM;
	}
	c->npre = 0;
	uv_read_start((uv_stream_t *)&c->inner, alloc_cb, inner_read_cb);
	*fd = fds[1];
	return 0;
}

int tls_conn_refuse_cert(X509_STORE_CTX *ctx, const char *why)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(ctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
	if (c && !c->errmsg[0])
		snprintf(c->errmsg, sizeof(c->errmsg), "TLS handshake failed: %s", why);
	X509_STORE_CTX_set_error(ctx, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

void tls_conn_peer_cn(const struct tls_conn *c, char *buf, size_t len)
{
	tls_ssl_peer_cn(c->ssl, buf, len);
}
