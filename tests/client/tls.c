/* tls.c - the remote client over TLS, and an embedded store serving TLS
 * (driven by test_tls.py, which makes the certificates with openssl and
 * starts a bollard-store with --cert-file --key-file --trusted-ca-file
 * --client-cert-auth).
 *
 *   test-tls --endpoint 127.0.0.1:PORT --certs DIR --data-dir DIR
 *
 * DIR holds ca.pem, server.pem/.key, alice.pem/.key (CA-signed client),
 * rogue-ca.pem, mallory.pem/.key (client signed by the rogue CA) and
 * server.ext (not PEM). Prints one line per check group and
 * "N passed, N failed" last. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bollard/store.h>

static const char *certs;
static char paths[16][512];
static int n_paths;
static int passed, failed;

static const char *cert(const char *name)
{
	char *p = paths[n_paths++ % 16];
	snprintf(p, 512, "%s/%s", certs, name);
	return p;
}

#define CHECK_RC(expr, want)                                                                    \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		if (rc_ != (want)) {                                                               \
			printf("FAIL %s:%d: %s = %d (%s), want %d (%s)\n", __FILE__, __LINE__,     \
			       #expr, rc_, bollard_strerror(rc_), (int)(want),                     \
			       bollard_strerror(want));                                            \
			return 1;                                                                  \
		}                                                                                  \
	} while (0)
#define CHECK(cond)                                                                             \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                     \
			return 1;                                                                  \
		}                                                                                  \
	} while (0)

static void run(const char *name, int (*fn)(const char *ep), const char *ep)
{
	if (fn(ep) == 0) {
		passed++;
		printf("ok   %s\n", name);
	} else {
		failed++;
		printf("     (in %s)\n", name);
	}
	fflush(stdout);
}

static int connect_with(struct bollard_client **c, uv_loop_t *loop, const char *ep,
                        const char *ca, const char *crt, const char *key)
{
	struct bollard_remote_options o = {.dial_timeout_ms = 1500, .request_timeout_ms = 5000,
	                                   .tls_ca_file = ca, .tls_cert_file = crt,
	                                   .tls_key_file = key};
	const char *eps[] = {ep};
	return bollard_connect(c, loop, eps, 1, &o);
}

/* put k=v and read it back over one client */
static int put_get(struct bollard_client *c, const char *k, const char *v)
{
	struct bollard_result r;

	CHECK_RC(bollard_put_sync(c, k, strlen(k), v, strlen(v), NULL, NULL), 0);
	CHECK_RC(bollard_range_sync(c, k, strlen(k), NULL, &r), 0);
	CHECK(r.n_kvs == 1 && r.kvs[0].value_len == strlen(v) && !memcmp(r.kvs[0].value, v, strlen(v)));
	bollard_result_free(&r);
	return 0;
}

/* ---- mutual TLS with the CA-signed client certificate ---- */

struct watch_rec {
	struct bollard_watch w;
	int n;
	bool ended;
	char last[64];
};

static void watch_cb(struct bollard_watch *w, int status, const struct bollard_watch_batch *b)
{
	struct watch_rec *r = w->data;
	if (status) {
		r->ended = true;
		return;
	}
	for (size_t i = 0; i < b->n_events; i++) {
		r->n++;
		snprintf(r->last, sizeof(r->last), "%.*s", (int)b->events[i].kv.value_len,
		         b->events[i].kv.value);
	}
}

static void on_tick(uv_timer_t *t)
{
	(void)t;
}

static int t_mtls(const char *ep)
{
	char url[128];
	struct bollard_client *c;
	uv_loop_t loop;
	uv_timer_t tick;
	struct watch_rec r = {.w.data = &r};
	struct bollard_watch_options wo = {0};
	struct bollard_result st;

	snprintf(url, sizeof(url), "https://%s", ep);
	/* https:// endpoint, blocking calls */
	CHECK_RC(connect_with(&c, NULL, url, cert("ca.pem"), cert("alice.pem"), cert("alice.key")), 0);
	if (put_get(c, "tls/a", "1"))
		return 1;
	bollard_close(c, NULL, NULL);
	/* a bare host:port with TLS options is TLS too; a watch stream over it */
	uv_loop_init(&loop);
	CHECK_RC(connect_with(&c, &loop, ep, cert("ca.pem"), cert("alice.pem"), cert("alice.key")), 0);
	CHECK_RC(bollard_status_sync(c, &st), 0);
	wo.start_revision = st.header.revision + 1;
	bollard_result_free(&st);
	CHECK_RC(bollard_watch_start(c, &r.w, "tls/w", 5, &wo, watch_cb), 0);
	CHECK_RC(bollard_put_sync(c, "tls/w", 5, "over-tls", 8, NULL, NULL), 0);
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, on_tick, 20, 20);
	for (int i = 0; i < 500 && r.n < 1; i++)
		uv_run(&loop, UV_RUN_ONCE);
	CHECK(r.n == 1 && !strcmp(r.last, "over-tls"));
	CHECK_RC(bollard_watch_cancel(&r.w), 0);
	while (!r.ended)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&tick, NULL);
	bollard_close(c, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK(uv_loop_close(&loop) == 0);
	return 0;
}

/* ---- what must not get in ---- */

static int refused(const char *ep, const char *ca, const char *crt, const char *key)
{
	struct bollard_client *c;

	CHECK_RC(connect_with(&c, NULL, ep, ca, crt, key), 0);
	/* the handshake fails: the endpoint is never usable */
	CHECK_RC(bollard_put_sync(c, "tls/x", 5, "no", 2, NULL, NULL), -ENOTCONN);
	bollard_close(c, NULL, NULL);
	return 0;
}

static int t_refused(const char *ep)
{
	char url[128], plain[128];

	snprintf(url, sizeof(url), "https://%s", ep);
	snprintf(plain, sizeof(plain), "http://%s", ep);
	/* no client certificate, to a --client-cert-auth server */
	if (refused(url, cert("ca.pem"), NULL, NULL) ||
	    /* the server's certificate is not from the CA we trust */
	    refused(url, cert("rogue-ca.pem"), cert("alice.pem"), cert("alice.key")) ||
	    /* a client certificate from another CA */
	    refused(url, cert("ca.pem"), cert("mallory.pem"), cert("mallory.key")) ||
	    /* plain text to the TLS port */
	    refused(plain, NULL, NULL, NULL))
		return 1;
	return 0;
}

static int t_bad_options(const char *ep)
{
	struct bollard_client *c = NULL;
	char url[128], plain[128];
	const char *mixed[2];
	struct bollard_remote_options o = {.tls_ca_file = NULL};

	snprintf(url, sizeof(url), "https://%s", ep);
	snprintf(plain, sizeof(plain), "http://%s", ep);
	CHECK_RC(connect_with(&c, NULL, url, cert("nope.pem"), NULL, NULL), -ENOENT);
	CHECK(c == NULL);
	CHECK_RC(connect_with(&c, NULL, url, cert("ca.pem"), cert("alice.pem"), NULL), -EINVAL);
	CHECK_RC(connect_with(&c, NULL, url, cert("ca.pem"), NULL, cert("alice.key")), -EINVAL);
	CHECK_RC(connect_with(&c, NULL, url, cert("server.ext"), NULL, NULL), -EINVAL);
	CHECK_RC(connect_with(&c, NULL, plain, cert("ca.pem"), NULL, NULL), -EINVAL);
	mixed[0] = url;
	mixed[1] = plain;
	CHECK_RC(bollard_connect(&c, NULL, mixed, 2, &o), -EINVAL);
	CHECK(c == NULL);
	return 0;
}

/* ---- an embedded store serving etcd's API over TLS ---- */

static const char *data_dir;

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &len);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static int t_embedded_serves_tls(const char *unused)
{
	char url[96], ep[64];
	struct bollard_embedded_options o = {.data_dir = data_dir, .log_level = "error",
	                                      .listen_client_urls = url,
	                                      .tls_cert_file = cert("server.pem"),
	                                      .tls_key_file = cert("server.key"),
	                                      .tls_trusted_ca_file = cert("ca.pem"),
	                                      .tls_client_cert_auth = true};
	struct bollard_client *emb = NULL, *c;
	(void)unused;

	snprintf(ep, sizeof(ep), "127.0.0.1:%d", free_port());
	snprintf(url, sizeof(url), "https://%s", ep);
	/* a key that does not match: the open fails, nothing is left running */
	o.tls_key_file = cert("other.key");
	CHECK(bollard_open_embedded(&emb, NULL, &o) < 0 && emb == NULL);
	o.tls_key_file = cert("server.key");
	CHECK_RC(bollard_open_embedded(&emb, NULL, &o), 0);
	if (put_get(emb, "tls/emb", "in-process"))
		return 1;
	/* another client over TLS to the same store */
	CHECK_RC(connect_with(&c, NULL, url, cert("ca.pem"), cert("alice.pem"), cert("alice.key")), 0);
	if (put_get(c, "tls/emb", "over-tls"))
		return 1;
	bollard_close(c, NULL, NULL);
	if (refused(url, cert("ca.pem"), NULL, NULL))
		return 1;
	bollard_close(emb, NULL, NULL);
	return 0;
}

int main(int argc, char **argv)
{
	const char *ep = NULL;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--endpoint"))
			ep = argv[i + 1];
		else if (!strcmp(argv[i], "--certs"))
			certs = argv[i + 1];
		else if (!strcmp(argv[i], "--data-dir"))
			data_dir = argv[i + 1];
	}
	if (!ep || !certs || !data_dir) {
		fprintf(stderr, "usage: test-tls --endpoint H:P --certs DIR --data-dir DIR\n");
		return 2;
	}
	run("remote mutual TLS: https:// and host:port, blocking and watch", t_mtls, ep);
	run("refused: no client cert, untrusted server, rogue client cert, plain text", t_refused,
	    ep);
	run("bad TLS options fail at connect", t_bad_options, ep);
	run("embedded store serving TLS", t_embedded_serves_tls, ep);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
