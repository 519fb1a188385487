/* fake_server.c - the real gRPC server (store/server) in front of the fake
 * in-memory node (fake_node.c), for driving the server with real clients.
 *
 *   fake-server LISTEN_URLS      serve until SIGTERM/SIGINT, then shut down
 *                                gracefully; exit 0 only on a clean shutdown.
 * Prints "ready" on stdout once serving, "start failed: <why>" and exit 2 if
 * etcd_server_start fails. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node.h"
#include "server/server.h"

struct app {
	uv_loop_t *loop;
	struct node *node;
	struct etcd_server *server;
	uv_signal_t sigterm, sigint;
	int stopping;
};

static struct app *app_of_loop(uv_loop_t *loop)
{
	return loop->data;
}

static void on_node_closed(struct node *n)
{
	(void)n;
}

static void on_server_down(struct etcd_server *s)
{
	struct app *a = app_of_loop(uv_default_loop());
	etcd_server_destroy(s);
	a->server = NULL;
	fprintf(stderr, "fake-server: server shut down\n");
	node_close(a->node, on_node_closed);
	uv_close((uv_handle_t *)&a->sigterm, NULL);
	uv_close((uv_handle_t *)&a->sigint, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct app *a = h->data;
	(void)signum;
	if (a->stopping)
		return;
	a->stopping = 1;
	fprintf(stderr, "fake-server: shutting down\n");
	etcd_server_shutdown(a->server, on_server_down);
}

int main(int argc, char **argv)
{
	struct app a;
	struct node_config cfg;
	char err[512];
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: %s LISTEN_CLIENT_URLS\n", argv[0]);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	memset(&a, 0, sizeof(a));
	a.loop = uv_default_loop();
	a.loop->data = &a;
	node_config_init(&cfg);
	if (getenv("FAKE_MAX_REQUEST_BYTES"))
		cfg.max_request_bytes = strtoll(getenv("FAKE_MAX_REQUEST_BYTES"), NULL, 10);
	cfg.advertise_client_urls = argv[1];
	if (node_create(&a.node, a.loop, &cfg, err, sizeof(err)) != 0 || node_start(a.node) != 0) {
		fprintf(stderr, "node: %s\n", err);
		return 1;
	}
	if ((rc = etcd_server_start(&a.server, a.loop, a.node, argv[1], err, sizeof(err))) != 0) {
		printf("start failed: %s\n", err);
		fflush(stdout);
		node_close(a.node, on_node_closed);
		uv_run(a.loop, UV_RUN_DEFAULT);
		node_destroy(a.node);
		uv_loop_close(a.loop);
		return 2;
	}
	uv_signal_init(a.loop, &a.sigterm);
	uv_signal_init(a.loop, &a.sigint);
	a.sigterm.data = a.sigint.data = &a;
	uv_signal_start(&a.sigterm, on_signal, SIGTERM);
	uv_signal_start(&a.sigint, on_signal, SIGINT);
	printf("ready\n");
	fflush(stdout);
	uv_run(a.loop, UV_RUN_DEFAULT);
	node_destroy(a.node);
	rc = uv_loop_close(a.loop);
	fprintf(stderr, "fake-server: clean exit (loop close %d)\n", rc);
	return rc == 0 ? 0 : 3;
}
