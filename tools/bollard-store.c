/* bollard-store - one Bollard store member: etcd's v3 API on gRPC in front
 * of a raft-replicated LMDB store. A drop-in for etcd's common flags, in
 * Go's flag syntax: -flag, --flag, -flag=value, --flag value.
 *
 * A thin main over the library: parse the flags, start the member through
 * store/client/member.h (the node and etcd's gRPC API on the library's
 * member thread, as bollard_open_embedded runs it), wait for a signal,
 * close. SIGTERM/SIGINT (held pending from the start of main until their
 * handlers run, so one that comes while the member starts stops it cleanly
 * once started): bollard_close: the node fails waiting requests → server
 * shutdown → node_close → the member's loop stops → uv_run here returns,
 * status 0. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "client/member.h"
#include "node/log.h"
#include "snapshot_restore.h"

#define BOLLARD_VERSION "0.1.0"
#define ETCD_API_VERSION "3.4.23"
#define WATCH_PROGRESS_MIN_MS 100 /* etcd's minWatchProgressInterval */

struct opts {
	struct node_config cfg;
	const char *listen_client_urls;
	const char *listen_metrics_urls;
	const char *experimental_h2_url;
	const char *client_transport;
	const char *log_level;
	struct etcd_tls_config tls; /* client TLS */
	bool client_cert_auth, auto_tls;
	bool version, help;
};

enum kind { STR, I64, U32, BOOL, DURMS, DUR };

struct flag {
	const char *name;
	enum kind kind;
	size_t off;
	const char *help;
};

#define F(name, kind, field, help) {name, kind, offsetof(struct opts, field), help}
static const struct flag flags[] = {
	F("name", STR, cfg.name, "human-readable name for this member (default \"default\")"),
	F("data-dir", STR, cfg.data_dir, "path to the data directory (default \"<name>.etcd\")"),
	F("listen-client-urls", STR, listen_client_urls,
	  "URLs to listen on for client traffic (default \"http://localhost:2379\")"),
	F("listen-metrics-urls", STR, listen_metrics_urls,
	  "URLs to serve /metrics and /health on (http only; default: none)"),
	F("experimental-listen-h2-url", STR, experimental_h2_url,
	  "EXPERIMENTAL: more URLs serving the client API on our own HTTP/2 (URLs as above)"),
	F("experimental-client-transport", STR, client_transport,
	  "EXPERIMENTAL: what serves --listen-client-urls: \"h2\" (our own HTTP/2, the default) "
	  "or \"grpc-core\" (the gRPC C core)"),
	F("advertise-client-urls", STR, cfg.advertise_client_urls,
	  "client URLs of this member to advertise (default \"http://localhost:2379\")"),
	F("listen-peer-urls", STR, cfg.listen_peer_urls,
	  "URLs to listen on for peer traffic (default \"http://localhost:2380\")"),
	F("initial-advertise-peer-urls", STR, cfg.initial_advertise_peer_urls,
	  "peer URLs of this member to advertise (default \"http://localhost:2380\")"),
	F("initial-cluster", STR, cfg.initial_cluster,
	  "initial cluster configuration for bootstrapping (default \"<name>=<peer urls>\")"),
	F("initial-cluster-state", STR, cfg.initial_cluster_state,
	  "initial cluster state: \"new\" or \"existing\" (default \"new\")"),
	F("force-new-cluster", BOOL, cfg.force_new_cluster,
	  "force to create a new one member cluster from this member's data"),
	F("strict-reconfig-check", BOOL, cfg.strict_reconfig_check,
	  "reject reconfiguration requests that would cause quorum loss (default true)"),
	F("initial-cluster-token", STR, cfg.initial_cluster_token,
	  "initial cluster token (default \"etcd-cluster\")"),
	F("quota-backend-bytes", I64, cfg.quota_backend_bytes,
	  "raise an alarm when the backend exceeds this size (0: 2 GiB)"),
	F("max-request-bytes", I64, cfg.max_request_bytes,
	  "maximum client request size in bytes (default 1572864)"),
	F("max-txn-ops", I64, cfg.max_txn_ops, "maximum operations per txn (default 128)"),
	F("snapshot-count", I64, cfg.snapshot_count,
	  "committed raft entries that trigger a snapshot (default 100000)"),
	F("heartbeat-interval", U32, cfg.heartbeat_ms, "heartbeat interval in ms (default 100)"),
	F("backend-batch-interval", DUR, cfg.backend_batch_interval_ms,
	  "longest time before the backend's state is durable on its own (default \"1s\")"),
	F("election-timeout", U32, cfg.election_ms, "election timeout in ms (default 1000)"),
	F("auto-compaction-mode", STR, cfg.auto_compaction_mode,
	  "\"periodic\" or \"revision\" (default \"periodic\")"),
	F("auto-compaction-retention", STR, cfg.auto_compaction_retention,
	  "periodic: hours or a duration (\"5m\"); revision: revisions to keep (default \"0\": off)"),
	F("experimental-watch-progress-notify-interval", DURMS, cfg.watch_progress_ms,
	  "duration of periodic watch progress notifications (default \"10m\"; at least 100ms)"),
	F("cert-file", STR, tls.cert_file, "path to the client server TLS cert file"),
	F("key-file", STR, tls.key_file, "path to the client server TLS key file"),
	F("trusted-ca-file", STR, tls.trusted_ca_file,
	  "path to the client server TLS trusted CA cert file (verifies client certificates)"),
	F("client-cert-auth", BOOL, client_cert_auth, "enable client cert authentication"),
	F("auto-tls", BOOL, auto_tls,
	  "client TLS using generated certificates (in <data-dir>/fixtures/client)"),
	F("peer-cert-file", STR, cfg.peer_tls.cert_file, "path to the peer server TLS cert file"),
	F("peer-key-file", STR, cfg.peer_tls.key_file, "path to the peer server TLS key file"),
	F("peer-trusted-ca-file", STR, cfg.peer_tls.trusted_ca_file,
	  "path to the peer server TLS trusted CA file"),
	F("peer-client-cert-auth", BOOL, cfg.peer_tls.client_cert_auth,
	  "enable peer client cert authentication"),
	F("peer-cert-allowed-cn", STR, cfg.peer_tls.allowed_cn,
	  "required CN for certificates of members connecting (and connected to)"),
	F("peer-cert-allowed-hostname", STR, cfg.peer_tls.allowed_hostname,
	  "allowed TLS hostname (SAN) for inter peer authentication"),
	F("peer-auto-tls", BOOL, cfg.peer_tls.auto_tls,
	  "peer TLS using self-generated certificates (in <data-dir>/fixtures/peer)"),
	F("auth-token", STR, cfg.auth_token, "auth token type: \"simple\" (default) or \"jwt,"
	  "sign-method=RS256,pub-key=FILE,priv-key=FILE,ttl=5m\" (etcd's)"),
	F("auth-token-ttl", I64, cfg.auth_token_ttl_s,
	  "seconds a simple token lives after its last use (default 300)"),
	F("log-level", STR, log_level, "debug, info, warn or error (default \"info\")"),
	F("version", BOOL, version, "print the version and exit"),
	F("help", BOOL, help, "show this help"),
	F("h", BOOL, help, "show this help"),
};
#undef F

static void usage(FILE *f)
{
	fprintf(f, "usage: bollard-store [flags]\n");
}

static void help(void)
{
	usage(stdout);
	printf("\nAn etcd v3-compatible store member. Flags (Go syntax: -flag, --flag, "
	       "--flag=value, --flag value):\n");
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (strcmp(flags[i].name, "h") != 0)
			printf("  --%s\n      %s\n", flags[i].name, flags[i].help);
}

static int set_flag(struct opts *o, const struct flag *f, const char *val)
{
	void *p = (char *)o + f->off;
	char *end;
	errno = 0;
	switch (f->kind) {
	case STR:
		*(const char **)p = val;
		return 0;
	case I64: {
		long long v = strtoll(val, &end, 0);
		if (errno || *val == '\0' || *end != '\0')
			return -1;
		*(int64_t *)p = v;
		return 0;
	}
	case U32: {
		unsigned long long v = strtoull(val, &end, 0);
		if (errno || *val == '\0' || *end != '\0' || v > UINT_MAX || val[0] == '-')
			return -1;
		*(unsigned *)p = (unsigned)v;
		return 0;
	}
	case DUR: { /* a Go duration, at least 1ms; not positive: the default */
		int64_t ms;
		const char *d = val + (val[0] == '-' || val[0] == '+');
		if (node_parse_duration_ms(d, &ms) < 0)
			return -1;
		if (val[0] == '-' || strpbrk(d, "123456789") == NULL)
			ms = 0;
		else if (ms < 1)
			ms = 1;
		*(unsigned *)p = ms > UINT_MAX ? UINT_MAX : (unsigned)ms;
		return 0;
	}
	case DURMS: {
		/* A Go duration ("100ms", "5s", "10m", "1h30m"). As etcd: a
		 * positive one below 100 ms becomes 100 ms, zero or a negative
		 * one keeps the default (0 here: node/watch.c's 10 minutes). */
		int64_t ms;
		bool neg = val[0] == '-';
		const char *d = val + (val[0] == '-' || val[0] == '+');
		if (node_parse_duration_ms(d, &ms) < 0)
			return -1;
		if (neg || strpbrk(d, "123456789") == NULL)
			ms = 0; /* not positive: "-5s", "0s", "0.0m" */
		else if (ms < WATCH_PROGRESS_MIN_MS)
			ms = WATCH_PROGRESS_MIN_MS;
		*(unsigned *)p = ms > UINT_MAX ? UINT_MAX : (unsigned)ms;
		return 0;
	}
	case BOOL:
		if (!strcmp(val, "true") || !strcmp(val, "1") || !strcmp(val, "t") ||
		    !strcmp(val, "TRUE") || !strcmp(val, "True") || !strcmp(val, "T"))
			*(bool *)p = true;
		else if (!strcmp(val, "false") || !strcmp(val, "0") || !strcmp(val, "f") ||
		         !strcmp(val, "FALSE") || !strcmp(val, "False") || !strcmp(val, "F"))
			*(bool *)p = false;
		else
			return -1;
		return 0;
	}
	return -1;
}

/* Go's flag package rules. Returns 0, or 2 after printing an error. */
static int parse_args(struct opts *o, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *name, *eq, *val = NULL;
		const struct flag *f = NULL;
		size_t nlen;

		if (a[0] != '-' || a[1] == '\0') {
			fprintf(stderr, "bollard-store: '%s' is not a valid flag\n", a);
			usage(stderr);
			return 2;
		}
		if (!strcmp(a, "--"))
			break;
		name = a + 1 + (a[1] == '-');
		eq = strchr(name, '=');
		nlen = eq ? (size_t)(eq - name) : strlen(name);
		for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++)
			if (strlen(flags[k].name) == nlen && !strncmp(flags[k].name, name, nlen))
				f = &flags[k];
		if (f == NULL) {
			fprintf(stderr, "bollard-store: flag provided but not defined: -%.*s\n", (int)nlen,
			        name);
			usage(stderr);
			return 2;
		}
		if (eq)
			val = eq + 1;
		else if (f->kind == BOOL)
			val = "true";
		else if (i + 1 < argc)
			val = argv[++i];
		else {
			fprintf(stderr, "bollard-store: flag needs an argument: -%s\n", f->name);
			usage(stderr);
			return 2;
		}
		if (set_flag(o, f, val) < 0) {
			fprintf(stderr, "bollard-store: invalid value \"%s\" for flag -%s\n", val, f->name);
			usage(stderr);
			return 2;
		}
	}
	return 0;
}

/* Everything the signal path needs, owned by main's stack. */
struct app {
	uv_loop_t *loop;
	struct bollard_client *member;
	uv_signal_t sigterm, sigint;
	uv_async_t removed; /* the member learnt it was removed (node thread) */
	bool stopping;
};

static void member_closed(struct bollard_client *c, void *data)
{
	(void)c;
	(void)data;
	/* Server, node and the member's loop are down: uv_run returns now. */
}

static void stop(struct app *app)
{
	app->stopping = true;
	uv_close((uv_handle_t *)&app->sigterm, NULL);
	uv_close((uv_handle_t *)&app->sigint, NULL);
	uv_close((uv_handle_t *)&app->removed, NULL);
	/* server shutdown -> node close -> the member's loop stops */
	bollard_close(app->member, member_closed, app);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct app *app = h->data;
	if (app->stopping) {
		blog(BLOG_WARN, "bollard-store", "received %s again; still stopping",
		     strsignal(signum));
		return;
	}
	blog(BLOG_INFO, "bollard-store", "received %s, shutting down", strsignal(signum));
	stop(app);
}

/* etcd exits (status 0) once it learns it was removed from the cluster. */
static void on_removed_async(uv_async_t *h)
{
	struct app *app = h->data;
	if (app->stopping)
		return;
	blog(BLOG_INFO, "bollard-store", "removed from the cluster, shutting down");
	stop(app);
}

static void on_removed(void *arg) /* the member's node thread */
{
	uv_async_send(&((struct app *)arg)->removed);
}

int main(int argc, char **argv)
{
	struct opts o = {0};
	struct app app = {0};
	struct bc_member_config mc;
	sigset_t stop_signals;
	char err[640];
	int rc, level, transport;

	if (argc > 1 && strcmp(argv[1], "snapshot") == 0) /* snapshot restore (issue 8) */
		return snapshot_main(argc - 1, argv + 1);
	/* SIGTERM/SIGINT wait (pending) until their handlers are installed:
	 * from here on a stop signal always means a clean stop (status 0). */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	node_config_init(&o.cfg);
	o.listen_client_urls = "http://localhost:2379";
	o.log_level = "info";
	o.cfg.auth_token = "simple";
	if ((rc = parse_args(&o, argc, argv)) != 0)
		return rc;
	if (o.help) {
		help();
		return 0;
	}
	if (o.version) {
		printf("bollard-store Version: %s\netcd API Version: %s\n", BOLLARD_VERSION,
		       ETCD_API_VERSION);
		return 0;
	}
	if ((level = blog_parse_level(o.log_level)) < 0) {
		fprintf(stderr, "bollard-store: unknown log level \"%s\"\n", o.log_level);
		usage(stderr);
		return 2;
	}
	blog_set_level(level);
	o.cfg.log_level = level;
	if (o.cfg.auth_token_ttl_s <= 0) { /* --auth-token is checked by the node */
		fprintf(stderr, "bollard-store: --auth-token-ttl %lld: must be positive\n",
		        (long long)o.cfg.auth_token_ttl_s);
		return 2;
	}
	if ((transport = bc_client_transport_parse(o.client_transport)) < 0) {
		fprintf(stderr, "bollard-store: --experimental-client-transport \"%s\": want "
		        "\"h2\" or \"grpc-core\"\n", o.client_transport);
		usage(stderr);
		return 2;
	}
	/* raft's TCP writes to a vanished peer must not kill us. */
	signal(SIGPIPE, SIG_IGN);

	app.loop = uv_default_loop();
	blog(BLOG_INFO, "bollard-store", "bollard-store %s (etcd API %s) starting", BOLLARD_VERSION,
	     ETCD_API_VERSION);
	uv_async_init(app.loop, &app.removed, on_removed_async);
	app.removed.data = &app;
	o.cfg.on_removed = on_removed;
	o.cfg.on_removed_arg = &app;
	memset(&mc, 0, sizeof(mc));
	mc.cfg = o.cfg;
	mc.listen_client_urls = o.listen_client_urls;
	mc.listen_metrics_urls = o.listen_metrics_urls;
	mc.experimental_h2_url = o.experimental_h2_url;
	mc.client_transport = transport;
	mc.tls = o.tls;
	mc.tls.client_cert_auth = o.client_cert_auth;
	mc.tls.log_client_cn = level <= BLOG_DEBUG;
	mc.auto_tls = o.auto_tls;
	mc.log_tag = "bollard-store";
	/* Handlers first: the member serves clients before bc_member_open
	 * returns, and a SIGTERM then must still stop it cleanly (it is
	 * handled once the loop runs). */
	uv_signal_init(app.loop, &app.sigterm);
	uv_signal_init(app.loop, &app.sigint);
	app.sigterm.data = app.sigint.data = &app;
	uv_signal_start(&app.sigterm, on_signal, SIGTERM);
	uv_signal_start(&app.sigint, on_signal, SIGINT);
	pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
	if ((rc = bc_member_open(&app.member, app.loop, &mc, err, sizeof(err))) != 0) {
		blog(BLOG_FATAL, "bollard-store", "%s", err);
		uv_close((uv_handle_t *)&app.removed, NULL);
		uv_close((uv_handle_t *)&app.sigterm, NULL);
		uv_close((uv_handle_t *)&app.sigint, NULL);
		uv_run(app.loop, UV_RUN_DEFAULT);
		uv_loop_close(app.loop);
		return 1;
	}

	uv_run(app.loop, UV_RUN_DEFAULT);

	uv_loop_close(app.loop);
	blog(BLOG_INFO, "bollard-store", "stopped");
	return 0;
}
