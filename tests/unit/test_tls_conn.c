/* test_tls_conn.c - store/tls/conn.c, the TLS pump, over loopback on a real
 * libuv loop: handshakes (verified, refused, with plain text), the preamble
 * API, 8 MiB each way at once through the socketpairs whose readers wait
 * until their pump stopped reading TCP (it must resume), EOF
 * and close_notify propagation, and closing during a handshake or a
 * connect. Every test ends with every handle closed (uv_loop_close == 0)
 * and, under ASan, no leak. Certificates: tls_auto_cert pairs. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "tls/certs.h"
#include "tls/conn.h"
#include "unit.h"

#define BULK (8u << 20)

struct end {
	struct tls_conn tc;
	int hs;              /* handshake status; 1 = not yet */
	bool closed;         /* close_cb ran */
	bool splice_at_once; /* splice in handshake_cb */
	uv_pipe_t plain;     /* our side of the socketpair */
	bool plain_open, plain_eof;
	size_t got, sent;    /* plaintext bytes received / written (acked) */
	int side;            /* pattern seed of what the other end writes */
	int wside;           /* and of what this end writes */
	bool bad_byte;
	char first[16];      /* the first bytes received */
	size_t nfirst;
	uint8_t *out;
	uv_write_t w;
	size_t send_len;
	uv_timer_t later;    /* bulk: the reader starts late, so the pump must hold back */
	int waited;
	bool was_paused;     /* the pump had stopped reading TCP */
};

struct world {
	uv_loop_t loop;
	uv_tcp_t listener;
	struct sockaddr_in addr;
	SSL_CTX *srv_ctx, *cli_ctx, *rogue_ctx;
	struct end srv, cli;
	bool close_on_accept; /* close both ends right after the accept */
	char dir[64];
};

static uint8_t pattern(int side, size_t i)
{
	return (uint8_t)((i * 31u + (unsigned)side * 7u) & 0xff);
}

static void plain_closed(uv_handle_t *h)
{
	(void)h;
}

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
	(void)h;
	b->base = malloc(sz);
	b->len = b->base ? sz : 0;
}

static void plain_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct end *e = s->data;
	for (ssize_t i = 0; i < n; i++) {
		if (e->nfirst < sizeof(e->first))
			e->first[e->nfirst++] = b->base[i];
		if ((uint8_t)b->base[i] != pattern(e->side, e->got + (size_t)i) && e->send_len)
			e->bad_byte = true;
	}
	if (n > 0)
		e->got += (size_t)n;
	free(b->base);
	if (n < 0) { /* the other side finished: close ours */
		e->plain_eof = true;
		uv_close((uv_handle_t *)&e->plain, plain_closed);
		return;
	}
	/* bulk: done with both directions -> end our side */
	if (e->send_len && e->got == BULK && e->sent == e->send_len &&
	    !uv_is_closing((uv_handle_t *)&e->plain))
		uv_close((uv_handle_t *)&e->plain, plain_closed);
}

static void plain_written(uv_write_t *w, int status)
{
	struct end *e = w->data;
	if (status == 0)
		e->sent = e->send_len;
	free(e->out);
	e->out = NULL;
	if (e->got == BULK && !uv_is_closing((uv_handle_t *)&e->plain))
		uv_close((uv_handle_t *)&e->plain, plain_closed);
}

/* The bulk reader starts once its pump stopped reading TCP because the
 * socketpair is full (or after 10 s: then the test fails). */
static void start_reading(uv_timer_t *t)
{
	struct end *e = t->data;
	if (!e->tc.tcp_paused && ++e->waited < 1000)
		return;
	e->was_paused = e->tc.tcp_paused;
	uv_read_start((uv_stream_t *)&e->plain, alloc_cb, plain_read);
	uv_close((uv_handle_t *)t, NULL);
}

static void open_plain(struct end *e, size_t send_len)
{
	int fd;
	REQUIRE_INT(tls_conn_splice(&e->tc, &fd), 0);
	uv_pipe_init(e->tc.loop, &e->plain, 0);
	REQUIRE_INT(uv_pipe_open(&e->plain, fd), 0);
	e->plain.data = e;
	e->plain_open = true;
	if (send_len) {
		uv_timer_init(e->tc.loop, &e->later);
		e->later.data = e;
		uv_timer_start(&e->later, start_reading, 10, 10);
	} else {
		uv_read_start((uv_stream_t *)&e->plain, alloc_cb, plain_read);
	}
	e->send_len = send_len;
	if (send_len) {
		uv_buf_t b;
		e->out = malloc(send_len);
		REQUIRE(e->out);
		for (size_t i = 0; i < send_len; i++)
			e->out[i] = pattern(e->wside, i);
		b = uv_buf_init((char *)e->out, (unsigned)send_len);
		e->w.data = e;
		REQUIRE_INT(uv_write(&e->w, (uv_stream_t *)&e->plain, &b, 1, plain_written), 0);
	}
}

static void on_handshake(struct tls_conn *tc, int status)
{
	struct end *e = tc->data;
	e->hs = status;
	if (status == 0 && e->splice_at_once)
		open_plain(e, BULK);
}

static void on_closed(struct tls_conn *tc)
{
	struct end *e = tc->data;
	e->closed = true;
}

static void on_data(struct tls_conn *tc)
{
	struct end *e = tc->data;
	size_t len;
	const uint8_t *p = tls_conn_pending(tc, &len);
	if (len < 6)
		return;
	CHECK(memcmp(p, "abcdef", 6) == 0);
	tls_conn_consume(tc, 3);
	open_plain(e, 0);
}

static const struct tls_conn_ops ops = {on_handshake, NULL, on_closed};
static const struct tls_conn_ops ops_data = {on_handshake, on_data, on_closed};

static void on_accept(uv_stream_t *l, int status)
{
	struct world *w = l->data;
	REQUIRE_INT(status, 0);
	REQUIRE_INT(tls_conn_accept(&w->srv.tc, w->srv.splice_at_once ? &ops : &ops_data, &w->loop,
	                            l, w->srv_ctx, 5000),
	            0);
	if (w->close_on_accept) {
		tls_conn_close(&w->srv.tc);
		tls_conn_close(&w->cli.tc);
	}
}

static SSL_CTX *ctx_from(const char *dir, bool server)
{
	char *cert, *key, err[256];
	struct tls_pem pem;
	SSL_CTX *ctx;
	REQUIRE_INT(tls_auto_cert("--auto-tls", dir, "https://127.0.0.1:1", &cert, &key, err,
	                          sizeof(err)),
	            0);
	/* the self-signed certificate is its own CA */
	REQUIRE_INT(tls_pem_load(&pem, "", cert, key, cert, err, sizeof(err)), 0);
	ctx = tls_ctx_new(&pem, server, err, sizeof(err));
	REQUIRE(ctx);
	SSL_CTX_set_verify(ctx, server ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
	tls_pem_free(&pem);
	free(cert);
	free(key);
	return ctx;
}

static void world_init(struct world *w)
{
	char sub[128];
	int len = sizeof(w->addr);
	memset(w, 0, sizeof(*w));
	snprintf(w->dir, sizeof(w->dir), "/tmp/bollard-tlsconn-XXXXXX");
	REQUIRE(mkdtemp(w->dir));
	snprintf(sub, sizeof(sub), "%s/a", w->dir);
	w->srv_ctx = ctx_from(sub, true);
	w->cli_ctx = ctx_from(sub, false);
	snprintf(sub, sizeof(sub), "%s/rogue", w->dir);
	w->rogue_ctx = ctx_from(sub, false);
	uv_loop_init(&w->loop);
	uv_tcp_init(&w->loop, &w->listener);
	w->listener.data = w;
	uv_ip4_addr("127.0.0.1", 0, &w->addr);
	REQUIRE_INT(uv_tcp_bind(&w->listener, (struct sockaddr *)&w->addr, 0), 0);
	REQUIRE_INT(uv_tcp_getsockname(&w->listener, (struct sockaddr *)&w->addr, &len), 0);
	REQUIRE_INT(uv_listen((uv_stream_t *)&w->listener, 8, on_accept), 0);
	w->srv.tc.data = &w->srv;
	w->cli.tc.data = &w->cli;
	w->srv.hs = w->cli.hs = 1;
	w->srv.side = w->cli.wside = 2; /* what the client writes */
	w->cli.side = w->srv.wside = 1;
}

static void tick(uv_timer_t *t)
{
	(void)t;
}

/* Run until both connections closed (at most 30 s), then close everything. */
static void world_finish(struct world *w, bool with_server)
{
	uv_timer_t ticker; /* so that a stuck pump fails the test, not hangs it */
	uint64_t deadline = uv_now(&w->loop) + 30000;
	uv_timer_init(&w->loop, &ticker);
	uv_timer_start(&ticker, tick, 50, 50);
	while (!(w->cli.closed && (!with_server || w->srv.closed)) && uv_now(&w->loop) < deadline)
		uv_run(&w->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&ticker, NULL);
	CHECK(w->cli.closed);
	CHECK(!with_server || w->srv.closed);
	if (!w->cli.closed || (with_server && !w->srv.closed)) { /* stuck: tear down */
		struct end *ends[2] = {&w->cli, &w->srv};
		for (int i = 0; i < 2; i++) {
			if (ends[i]->hs != 1 || ends[i] == &w->cli)
				tls_conn_close(&ends[i]->tc);
			if (ends[i]->plain_open && !uv_is_closing((uv_handle_t *)&ends[i]->plain))
				uv_close((uv_handle_t *)&ends[i]->plain, plain_closed);
		}
	}
	uv_close((uv_handle_t *)&w->listener, NULL);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&w->loop), 0);
	SSL_CTX_free(w->srv_ctx);
	SSL_CTX_free(w->cli_ctx);
	SSL_CTX_free(w->rogue_ctx);
	{
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", w->dir);
		CHECK_INT(system(cmd), 0);
	}
}

static void connect_client(struct world *w, SSL_CTX *ctx, const char *verify_ip)
{
	REQUIRE_INT(tls_conn_connect(&w->cli.tc, w->srv.splice_at_once ? &ops : &ops_data, &w->loop,
	                             (struct sockaddr *)&w->addr, ctx, verify_ip, 5000),
	            0);
}

TEST(bulk_both_ways)
{
	static struct world w;
	world_init(&w);
	w.srv.splice_at_once = w.cli.splice_at_once = true;
	connect_client(&w, w.cli_ctx, "127.0.0.1");
	world_finish(&w, true);
	CHECK_INT(w.cli.hs, 0);
	CHECK_INT(w.srv.hs, 0);
	CHECK_INT(w.srv.got, BULK);
	CHECK_INT(w.cli.got, BULK);
	CHECK(!w.srv.bad_byte);
	CHECK(!w.cli.bad_byte);
	CHECK(w.srv.was_paused);
	CHECK(w.cli.was_paused);
}

TEST(preamble_then_splice)
{
	static struct world w;
	world_init(&w);
	connect_client(&w, w.cli_ctx, "127.0.0.1");
	while (w.cli.hs == 1)
		uv_run(&w.loop, UV_RUN_ONCE);
	REQUIRE_INT(w.cli.hs, 0);
	REQUIRE_INT(tls_conn_write(&w.cli.tc, "abcdef", 6), 0);
	while (w.srv.nfirst < 3)
		uv_run(&w.loop, UV_RUN_ONCE);
	CHECK(memcmp(w.srv.first, "def", 3) == 0);
	tls_conn_close(&w.cli.tc); /* the server sees EOF, then so does its plain end */
	world_finish(&w, true);
	CHECK(w.srv.plain_eof);
}

TEST(untrusted_server_refused)
{
	static struct world w;
	world_init(&w);
	w.srv.splice_at_once = true;
	connect_client(&w, w.rogue_ctx, "127.0.0.1");
	world_finish(&w, true);
	CHECK_INT(w.cli.hs, -1);
	CHECK(strstr(w.cli.tc.errmsg, "certificate verify failed") != NULL);
	CHECK_INT(w.srv.hs, -1); /* the client's alert */
	CHECK(strstr(w.srv.tc.errmsg, "TLS handshake failed") != NULL);
}

TEST(wrong_ip_refused)
{
	static struct world w;
	world_init(&w);
	w.srv.splice_at_once = true;
	connect_client(&w, w.cli_ctx, "127.0.0.2");
	world_finish(&w, true);
	CHECK_INT(w.cli.hs, -1);
	CHECK(strstr(w.cli.tc.errmsg, "IP address mismatch") != NULL);
}

TEST(close_during_handshake)
{
	static struct world w;
	world_init(&w);
	w.close_on_accept = true;
	connect_client(&w, w.cli_ctx, "127.0.0.1");
	world_finish(&w, true);
	CHECK_INT(w.cli.hs, -1);
	CHECK_INT(w.srv.hs, -1);
}

TEST(close_during_connect)
{
	static struct world w;
	world_init(&w);
	connect_client(&w, w.cli_ctx, "127.0.0.1");
	tls_conn_close(&w.cli.tc); /* the TCP connect is still pending */
	world_finish(&w, false); /* (a server side it accepted meanwhile closes too) */
	CHECK_INT(w.cli.hs, -1);
}

TEST(plain_text_refused)
{
	static struct world w;
	uv_tcp_t raw;
	uv_connect_t creq;
	world_init(&w);
	uv_tcp_init(&w.loop, &raw);
	REQUIRE_INT(uv_tcp_connect(&creq, &raw, (struct sockaddr *)&w.addr, NULL), 0);
	while (w.srv.hs == 1 && !uv_is_closing((uv_handle_t *)&raw)) {
		uv_run(&w.loop, UV_RUN_ONCE);
		if (uv_is_writable((uv_stream_t *)&raw)) {
			uv_buf_t b = uv_buf_init((char *)"\x01\0\0\0\0\0\0\0GET / HTTP/1.1\r\n\r\n", 26);
			uv_try_write((uv_stream_t *)&raw, &b, 1);
			uv_close((uv_handle_t *)&raw, NULL);
		}
	}
	w.cli.closed = true; /* no client conn in this test */
	world_finish(&w, true);
	CHECK_INT(w.srv.hs, -1);
	CHECK(strstr(w.srv.tc.errmsg, "TLS handshake failed") != NULL);
}

UNIT_MAIN(TEST_ENTRY(bulk_both_ways), TEST_ENTRY(preamble_then_splice),
          TEST_ENTRY(untrusted_server_refused), TEST_ENTRY(wrong_ip_refused),
          TEST_ENTRY(close_during_handshake), TEST_ENTRY(close_during_connect),
          TEST_ENTRY(plain_text_refused))
