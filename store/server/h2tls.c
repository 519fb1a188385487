/* h2tls.c - the h2 listener's TLS: server context and one connection's
 * non-blocking OpenSSL on its socket (see h2tls.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "server/h2tls.h"
#include "server/server_int.h"
#include "tls/certs.h"

/* ALPN: h2 if the client offers it; else none is selected, the handshake
 * completes and h2tls_read closes (the gRPC C core's behaviour). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	for (unsigned int i = 0; i < inlen;) {
		unsigned int n = in[i];
		if (i + 1 + n > inlen)
			break;
		if (n == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
			*out = in + i + 1;
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	return SSL_TLSEXT_ERR_NOACK;
}

int h2tls_ctx_new(SSL_CTX **out, const struct etcd_tls_config *cfg, char *err, size_t errlen)
{
	struct srv_tls *t;
	SSL_CTX *ctx;

	*out = NULL;
	if (srv_tls_load(&t, cfg, err, errlen) != 0) /* the gRPC port's checks, one read */
		return -1;
	if (!t)
		return 0; /* no TLS */
	ctx = tls_ctx_new(&t->pem, true, err, errlen);
	srv_tls_free(t);
	if (!ctx)
		return -1;
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	SSL_CTX_set_verify(ctx,
	                   cfg->client_cert_auth ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
	                                         : SSL_VERIFY_NONE,
	                   NULL);
	*out = ctx;
	return 0;
}

int h2tls_init(struct h2tls *t, SSL_CTX *ctx, int fd, bool client_cert)
{
	memset(t, 0, sizeof(*t));
	t->client_cert = client_cert;
	if (!(t->ssl = SSL_new(ctx)) || SSL_set_fd(t->ssl, fd) != 1) {
		SSL_free(t->ssl);
		t->ssl = NULL;
		ERR_clear_error();
		return -1;
	}
	SSL_set_accept_state(t->ssl);
	return 0;
}

/* An SSL call's result: -EAGAIN (with the direction noted) or -EIO / 0. */
static ssize_t ssl_result(struct h2tls *t, int r, bool *want_other)
{
	int e = SSL_get_error(t->ssl, r);

	*want_other = false;
	switch (e) {
	case SSL_ERROR_WANT_READ:
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*want_other = true;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		ERR_clear_error();
		return 0;
	default: /* no close_notify after a fatal error */
		ERR_clear_error();
		t->open = false;
		return -EIO;
	}
}

static ssize_t handshake(struct h2tls *t)
{
	const unsigned char *proto = NULL;
	unsigned int plen = 0;
	int r = SSL_do_handshake(t->ssl);

	if (r != 1) {
		ssize_t rc = ssl_result(t, r, &t->read_want_out);
		return rc == -EAGAIN ? rc : 0; /* a refused handshake: as a close */
	}
	SSL_get0_alpn_selected(t->ssl, &proto, &plen);
	if (plen != 2 || memcmp(proto, "h2", 2) != 0)
		return 0;
	t->open = true;
	if (t->client_cert) {
		char cn[256];
		tls_ssl_peer_cn(t->ssl, cn, sizeof(cn));
		if (cn[0] && (t->peer_cn = strdup(cn)) == NULL)
			return -EIO;
	}
	return 1;
}

ssize_t h2tls_read(struct h2tls *t, void *buf, size_t len)
{
	int r;
	bool want_out = false;
	ssize_t rc;

	t->read_want_out = false;
	if (!t->open && (rc = handshake(t)) <= 0)
		return rc;
	r = SSL_read(t->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	if (r > 0)
		return r;
	rc = ssl_result(t, r, &want_out);
	t->read_want_out = want_out;
	return rc;
}

bool h2tls_pending(const struct h2tls *t)
{
	return t->open && SSL_has_pending(t->ssl);
}

ssize_t h2tls_write(struct h2tls *t, const void *buf, size_t len)
{
	int r;
	bool want_out = false;
	ssize_t rc;

	t->write_want_in = false;
	if (!t->open)
		return -EAGAIN;
	r = SSL_write(t->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	if (r > 0)
		return r;
	rc = ssl_result(t, r, &want_out);
	t->write_want_in = rc == -EAGAIN && !want_out;
	return rc == 0 ? -EIO : rc;
}

void h2tls_fini(struct h2tls *t)
{
	if (t->ssl) {
		if (t->open)
			SSL_shutdown(t->ssl); /* close_notify; no waiting for the peer's */
		SSL_free(t->ssl);
		ERR_clear_error();
	}
	free(t->peer_cn);
	memset(t, 0, sizeof(*t));
}
