/* http.c - etcd's plain HTTP endpoints, served by libh2o on a thread and
 * libuv loop of its own, so a scrape never waits for the member's loop and
 * the loop never waits for a scrape:
 *   - the --listen-metrics-urls listener: GET /metrics (Prometheus text
 *     format 0.0.4, node_metrics_render) and GET /health (etcd's
 *     {"health":"true"}, or {"health":"false"} with 503);
 *   - HTTP/1.x on the client URLs, as etcd's client port serves beside gRPC
 *     (its cmux): the h2 transport hands over each connection whose first
 *     bytes are not the HTTP/2 preface (etcd_http_adopt), and this serves
 *     /health, /metrics, GET /version ({"etcdserver":"3.4.23",
 *     "etcdcluster":"3.4.0"}) and the gRPC gateway's /v3/ (gateway.c).
 *
 * Listeners are bound on the starting thread (so a bad URL or a port in use
 * stops the server at start); the thread runs only the loop. Stopping closes
 * the listeners, asks h2o to close its connections and gives them a moment. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <h2o.h>

#include "core/metrics.h"
#include "node/ids.h"
#include "node/node.h"
#include "server/gateway.h"
#include "server/httpreply.h"
#include "server/server.h"

#define HTTP_MAX_LISTENERS 8
#define HTTP_STOP_GRACE_MS 1000

struct etcd_http {
	struct node *node;
	uv_loop_t loop;
	uv_async_t stop;
	uv_timer_t grace;
	uv_tcp_t listeners[HTTP_MAX_LISTENERS];
	size_t n_listeners;
	h2o_globalconf_t config;
	h2o_context_t ctx;
	h2o_accept_ctx_t accept_ctx;
	size_t n_conns;   /* open connections (loop thread) */
	bool stopping;
	/* etcd_http_adopt's connections, for the loop (on_adopt) */
	uv_async_t adopt;
	pthread_mutex_t adopt_mu;
	int *adopted;
	size_t n_adopted, cap_adopted;
	bool adopt_closed; /* stopping: what comes is closed */
	struct gateway *gw; /* the client URLs' /v3/ (NULL: none, or closed) */
	pthread_t thread;
	bool thread_started;
};

/* h2o's handler, with a way back to us. */
struct http_handler {
	h2o_handler_t super;
	struct etcd_http *h;
};

static bool is_get(h2o_req_t *req)
{
	return h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
	       h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
}

static int on_metrics(h2o_handler_t *self, h2o_req_t *req)
{
	struct http_handler *hh = (struct http_handler *)self;
	struct metrics_buf b = {0};

	if (!is_get(req))
		return -1;
	if (node_metrics_render(hh->h->node, &b) != 0) {
		metrics_buf_free(&b);
		h2o_send_error_generic(req, 500, "Internal Server Error", "out of memory", 0);
		return 0;
	}
	http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
	metrics_buf_free(&b);
	return 0;
}

/* etcd's answer to another method than GET on /health and /version. */
static int method_not_allowed(h2o_req_t *req)
{
	static const char body[] = "Method Not Allowed\n";

	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET"));
	http_reply(req, 405, "text/plain; charset=utf-8", body, sizeof(body) - 1);
	return 0;
}

static int on_health(h2o_handler_t *self, h2o_req_t *req)
{
	struct http_handler *hh = (struct http_handler *)self;
	static const char ok[] = "{\"health\":\"true\"}", bad[] = "{\"health\":\"false\"}";

	if (!is_get(req))
		return method_not_allowed(req);
	if (node_healthy(hh->h->node))
		http_reply(req, 200, "text/plain; charset=utf-8", ok, sizeof(ok) - 1);
	else
		http_reply(req, 503, "text/plain; charset=utf-8", bad, sizeof(bad) - 1);
	return 0;
}

static int on_version(h2o_handler_t *self, h2o_req_t *req)
{
	static const char body[] =
		"{\"etcdserver\":\"" NODE_VERSION "\",\"etcdcluster\":\"" NODE_CLUSTER_VERSION "\"}";

	(void)self;
	if (!is_get(req))
		return method_not_allowed(req);
	http_reply(req, 200, "application/json", body, sizeof(body) - 1);
	return 0;
}

static void add_handler(struct etcd_http *h, h2o_hostconf_t *host, const char *path,
                        int (*fn)(h2o_handler_t *, h2o_req_t *))
{
	h2o_pathconf_t *pc = h2o_config_register_path(host, path, 0);
	struct http_handler *hh = (struct http_handler *)h2o_create_handler(pc, sizeof(*hh));
	hh->super.on_req = fn;
	hh->h = h;
}

/* A client connection: h2o owns handle.data, so we keep ours beside it. */
struct http_conn {
	uv_tcp_t tcp; /* first: the handle h2o closes is the struct */
	struct etcd_http *h;
};

static void on_conn_closed(uv_handle_t *handle)
{
	struct http_conn *conn = (struct http_conn *)(void *)handle;
	struct etcd_http *h = conn->h;
	free(conn);
	if (--h->n_conns == 0 && h->stopping)
		uv_stop(&h->loop);
}

static void conn_serve(struct etcd_http *h, struct http_conn *conn)
{
	h->n_conns++;
	h2o_accept(&h->accept_ctx, h2o_uv_socket_create((uv_stream_t *)&conn->tcp, on_conn_closed));
}

static void on_accept(uv_stream_t *listener, int status)
{
	struct etcd_http *h = listener->data;
	struct http_conn *conn;

	if (status != 0 || (conn = malloc(sizeof(*conn))) == NULL)
		return;
	conn->h = h;
	uv_tcp_init(listener->loop, &conn->tcp);
	if (uv_accept(listener, (uv_stream_t *)&conn->tcp) != 0) {
		uv_close((uv_handle_t *)&conn->tcp, (uv_close_cb)free);
		return;
	}
	conn_serve(h, conn);
}

/* The connections etcd_http_adopt queued: served from their first byte
 * (the h2 thread only peeked at them). */
static void on_adopt(uv_async_t *a)
{
	struct etcd_http *h = a->data;
	int *fds;
	size_t n;

	pthread_mutex_lock(&h->adopt_mu);
	fds = h->adopted;
	n = h->n_adopted;
	h->adopted = NULL;
	h->n_adopted = h->cap_adopted = 0;
	pthread_mutex_unlock(&h->adopt_mu);
	for (size_t i = 0; i < n; i++) {
		struct http_conn *conn = malloc(sizeof(*conn));
		if (conn == NULL) {
			close(fds[i]);
			continue;
		}
		conn->h = h;
		uv_tcp_init(&h->loop, &conn->tcp);
		if (uv_tcp_open(&conn->tcp, fds[i]) != 0) {
			close(fds[i]);
			uv_close((uv_handle_t *)&conn->tcp, (uv_close_cb)free);
			continue;
		}
		conn_serve(h, conn);
	}
	free(fds);
}

void etcd_http_adopt(struct etcd_http *h, int fd)
{
	bool queued = false;

	pthread_mutex_lock(&h->adopt_mu);
	if (!h->adopt_closed && h->n_adopted == h->cap_adopted) {
		size_t cap = h->cap_adopted ? 2 * h->cap_adopted : 16;
		int *a = realloc(h->adopted, cap * sizeof(*a));
		if (a != NULL) {
			h->adopted = a;
			h->cap_adopted = cap;
		}
	}
	if (!h->adopt_closed && h->n_adopted < h->cap_adopted) {
		h->adopted[h->n_adopted++] = fd;
		queued = true;
	}
	pthread_mutex_unlock(&h->adopt_mu);
	if (queued)
		uv_async_send(&h->adopt);
	else
		close(fd);
}

static int listen_url(struct etcd_http *h, const char *url, char *err, size_t errlen)
{
	char host[256], port[16];
	struct sockaddr_storage ss;
	uv_tcp_t *l;
	int rc;

	if (strncmp(url, "http://", 7) != 0) {
		snprintf(err, errlen, "--listen-metrics-urls: %s: only http URLs are supported", url);
		return -EINVAL;
	}
	if (h->n_listeners == HTTP_MAX_LISTENERS) {
		snprintf(err, errlen, "--listen-metrics-urls: more than %d URLs", HTTP_MAX_LISTENERS);
		return -EINVAL;
	}
	if (ids_url_host_port(url, host, sizeof(host), port, sizeof(port)) < 0 ||
	    (uv_ip4_addr(strcmp(host, "localhost") ? host : "127.0.0.1", atoi(port),
	                 (struct sockaddr_in *)&ss) != 0 &&
	     uv_ip6_addr(host, atoi(port), (struct sockaddr_in6 *)&ss) != 0)) {
		snprintf(err, errlen, "--listen-metrics-urls: bad URL %s (numeric address and port)", url);
		return -EINVAL;
	}
	l = &h->listeners[h->n_listeners];
	uv_tcp_init(&h->loop, l);
	l->data = h;
	h->n_listeners++;
	if ((rc = uv_tcp_bind(l, (struct sockaddr *)&ss, 0)) != 0 ||
	    (rc = uv_listen((uv_stream_t *)l, 128, on_accept)) != 0) {
		snprintf(err, errlen, "--listen-metrics-urls: listen %s: %s", url, uv_strerror(rc));
		return rc;
	}
	return 0;
}

static void close_walk(uv_handle_t *handle, void *arg)
{
	(void)arg;
	if (!uv_is_closing(handle))
		uv_close(handle, NULL);
}

static void on_grace(uv_timer_t *t)
{
	uv_stop(t->loop);
}

static void on_stop(uv_async_t *a)
{
	struct etcd_http *h = a->data;
	for (size_t i = 0; i < h->n_listeners; i++)
		uv_close((uv_handle_t *)&h->listeners[i], NULL);
	uv_close((uv_handle_t *)&h->stop, NULL);
	pthread_mutex_lock(&h->adopt_mu);
	h->adopt_closed = true;
	for (size_t i = 0; i < h->n_adopted; i++)
		close(h->adopted[i]);
	h->n_adopted = 0;
	pthread_mutex_unlock(&h->adopt_mu);
	uv_close((uv_handle_t *)&h->adopt, NULL);
	gateway_close(h->gw);
	h->gw = NULL;
	h->stopping = true;
	if (h->n_conns == 0) {
		uv_stop(&h->loop);
		return;
	}
	h2o_context_request_shutdown(&h->ctx);
	/* Connections a client keeps open: closed below after the grace. */
	uv_timer_start(&h->grace, on_grace, HTTP_STOP_GRACE_MS, 0);
	uv_unref((uv_handle_t *)&h->grace);
}

static void *http_thread(void *arg)
{
	struct etcd_http *h = arg;
	pthread_setname_np(pthread_self(), "bollard-metrics");
	uv_run(&h->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* libh2o keeps per-thread caches of freed memory (its pool chunks and
 * socket buffers, in __thread lists it never empties), which become
 * unreachable when our HTTP thread ends: tell LeakSanitizer (sanitized
 * builds only; a no-op otherwise) that those allocations are h2o's. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:h2o_mem_alloc_recycle\n";
}

/* After the loop stopped: h2o's context, then whatever handles remain. */
static void teardown(struct etcd_http *h)
{
	gateway_close(h->gw); /* never started: nothing in flight */
	h->gw = NULL;
	h2o_context_dispose(&h->ctx);
	uv_walk(&h->loop, close_walk, NULL);
	uv_run(&h->loop, UV_RUN_DEFAULT);
	uv_loop_close(&h->loop);
	h2o_config_dispose(&h->config);
	for (size_t i = 0; i < h->n_adopted; i++)
		close(h->adopted[i]);
	free(h->adopted);
	pthread_mutex_destroy(&h->adopt_mu);
	free(h);
}

/* An instance with its loop and h2o context, not running yet: the metrics
 * listener's handlers, or (client_port) those of the client URLs. */
static struct etcd_http *http_new(struct node *node, bool client_port)
{
	struct etcd_http *h = calloc(1, sizeof(*h));
	h2o_hostconf_t *host;

	if (h == NULL)
		return NULL;
	h->node = node;
	uv_loop_init(&h->loop);
	pthread_mutex_init(&h->adopt_mu, NULL);
	h2o_config_init(&h->config);
	host = h2o_config_register_host(&h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
	add_handler(h, host, "/metrics", on_metrics);
	add_handler(h, host, "/health", on_health);
	if (client_port) {
		add_handler(h, host, "/version", on_version);
		h->gw = gateway_new(node, &h->loop, host);
	}
	h2o_context_init(&h->ctx, &h->loop, &h->config);
	h->accept_ctx.ctx = &h->ctx;
	h->accept_ctx.hosts = h->config.hosts;
	uv_async_init(&h->loop, &h->stop, on_stop);
	h->stop.data = h;
	uv_async_init(&h->loop, &h->adopt, on_adopt);
	h->adopt.data = h;
	uv_timer_init(&h->loop, &h->grace);
	return h;
}

/* Its thread started (*out set), or an error and h freed. */
static int http_run(struct etcd_http *h, struct etcd_http **out, char *err, size_t errlen)
{
	int rc = -pthread_create(&h->thread, NULL, http_thread, h);

	if (rc != 0) {
		snprintf(err, errlen, "cannot start the HTTP thread: %s", strerror(-rc));
		teardown(h);
		return rc;
	}
	h->thread_started = true;
	*out = h;
	return 0;
}

int etcd_http_start(struct etcd_http **out, struct node *node, const char *urls, char *err,
                    size_t errlen)
{
	struct etcd_http *h = http_new(node, false);
	int rc = 0;

	*out = NULL;
	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (const char *p = urls; rc == 0 && *p;) {
		char url[512];
		size_t len = strcspn(p, ",");
		if (len == 0 || len >= sizeof(url)) {
			snprintf(err, errlen, "--listen-metrics-urls: bad URL list \"%s\"", urls);
			rc = -EINVAL;
			break;
		}
		memcpy(url, p, len);
		url[len] = '\0';
		rc = listen_url(h, url, err, errlen);
		p += len + (p[len] == ',');
	}
	if (rc != 0) {
		teardown(h);
		return rc;
	}
	return http_run(h, out, err, errlen);
}

int etcd_http_start_client(struct etcd_http **out, struct node *node, char *err, size_t errlen)
{
	struct etcd_http *h = http_new(node, true);

	*out = NULL;
	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return http_run(h, out, err, errlen);
}

void etcd_http_stop(struct etcd_http *h)
{
	if (h == NULL)
		return;
	uv_async_send(&h->stop);
	pthread_join(h->thread, NULL);
	teardown(h);
}
