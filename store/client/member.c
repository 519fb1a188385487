/* member.c - a store member inside the library (member.h): start-up (TLS
 * checks, the data dir lock, the member's thread and loop), the hand-off of
 * answers to the caller's loop, and the ordered stop. bollard_open_embedded
 * (its options -> a member configuration) and bc_member_open (bollard-store)
 * both end in member_open.
 *
 * Threads. The member runs on a private thread with its own libuv loop
 * (raft, LMDB commits and the watch hub must not wait for the caller's loop,
 * and blocking calls must work from any thread, the loop thread included).
 * Answers the caller's loop must handle are put on a locked FIFO and the
 * loop woken (uv_async_t), so callbacks run there in the order the member
 * answered.
 *
 * Close: embedded.c cancels every live request, watch and keep-alive; once
 * none is left, the member's thread is woken to stop (server shutdown, then
 * node_close, then its loop ends); the caller's loop joins it and frees
 * everything. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* core/errors.h first: bollard/store.h then skips its copy of the enum. */
#include "core/errors.h"
#include "client_int.h"
#include "member.h"
#include "node/log.h"
#include "server/h2srv.h"

struct bc_emb {
	struct bollard_client *c;
	struct bc_member_config mc; /* strings borrowed or in strs[] */
	char *strs[20];
	size_t n_strs;
	/* the member's thread */
	pthread_t thread;
	uv_loop_t nloop;
	uv_async_t stop_async;
	uv_async_t h2_async;    /* an h2 listener drained (etcd_h2_shutdown) */
	atomic_int h2_drained;  /* how many, not yet counted off fronts */
	int fronts;             /* client listeners still stopping */
	struct node *node;
	struct etcd_server *srv;
	struct etcd_http *http; /* --listen-metrics-urls */
	struct etcd_http *http1; /* the h2 URLs' HTTP/1.x (/health, /version...) */
	struct etcd_h2 *h2;     /* listen_client_urls on h2 (the default) */
	struct etcd_h2 *h2x;    /* --experimental-listen-h2-url */
	int lock_fd; /* flock on the data dir: one member per data dir */
	/* start-up handshake */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool started;
	int start_rc;
	char err[512];
	/* caller side (c->loop != NULL) */
	uv_async_t async;
	struct bc_emb_item *head, **tail; /* under mu */
	bool node_down;                   /* under mu: the member's loop ended */
	bool stop_sent;
};

/* The member's thread's own client: etcd_server_shutdown's callback has no
 * user data. One per thread, so no process-wide state. */
static __thread struct bc_emb *tls_emb;

void bc_emb_post(struct bollard_client *c, struct bc_emb_item *it)
{
	struct bc_emb *e = c->emb;

	it->next = NULL;
	pthread_mutex_lock(&e->mu);
	*e->tail = it;
	e->tail = &it->next;
	pthread_mutex_unlock(&e->mu);
	uv_async_send(&e->async);
}

struct node *bc_emb_node(const struct bollard_client *c)
{
	return c->emb->node;
}

/* ---- the member's thread ---- */

static void node_closed(struct node *n)
{
	struct bc_emb *e = tls_emb;
	(void)n;
	uv_close((uv_handle_t *)&e->stop_async, NULL);
	uv_close((uv_handle_t *)&e->h2_async, NULL);
}

/* One client listener finished its graceful stop; the last closes the node. */
static void front_stopped(struct bc_emb *e)
{
	if (--e->fronts > 0)
		return;
	blog(BLOG_INFO, e->mc.log_tag, "client API stopped; closing the member");
	node_close(e->node, node_closed);
}

static void server_stopped(struct etcd_server *s)
{
	(void)s;
	front_stopped(tls_emb);
}

/* Each h2 listener's thread; two (the client URLs and the experimental
 * URL) may tell at once, and uv_async_send coalesces: the count says how
 * many drained (one callback for both left the member open for ever). */
static void h2_drained(void *arg)
{
	struct bc_emb *e = arg;
	atomic_fetch_add(&e->h2_drained, 1);
	uv_async_send(&e->h2_async);
}

static void on_h2_drained(uv_async_t *a)
{
	struct bc_emb *e = a->data;
	for (int n = atomic_exchange(&e->h2_drained, 0); n > 0; n--)
		front_stopped(e);
}

/* The order bollard-store always had: server, node, loop. The server's
 * shutdown waits until every call was answered, so the node first fails
 * what would wait (a read on a member catching up waits until it did). */
static void on_stop(uv_async_t *a)
{
	struct bc_emb *e = a->data;

	node_stop_requests(e->node);
	e->fronts = 1 + (e->srv != NULL) + (e->h2 != NULL) + (e->h2x != NULL);
	if (e->h2)
		etcd_h2_shutdown(e->h2, h2_drained, e);
	if (e->h2x)
		etcd_h2_shutdown(e->h2x, h2_drained, e);
	if (e->srv)
		etcd_server_shutdown(e->srv, server_stopped);
	front_stopped(e);
}

static void started(struct bc_emb *e, int rc)
{
	pthread_mutex_lock(&e->mu);
	e->started = true;
	e->start_rc = rc;
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
}

int bc_client_transport_parse(const char *name)
{
	if (!name || !*name)
		return BC_TRANSPORT_DEFAULT;
	if (strcmp(name, "grpc-core") == 0)
		return BC_TRANSPORT_GRPC_CORE;
	if (strcmp(name, "h2") == 0)
		return BC_TRANSPORT_H2;
	return -1;
}

static int member_start(struct bc_emb *e)
{
	const char *urls = e->mc.listen_client_urls;
	bool h2 = (e->mc.client_transport ? e->mc.client_transport : BC_CLIENT_TRANSPORT_DEFAULT) ==
	          BC_TRANSPORT_H2;
	char why[400];
	int rc;

	if ((rc = node_create(&e->node, &e->nloop, &e->mc.cfg, e->err, sizeof(e->err))) != 0)
		return rc;
	if (e->mc.listen_metrics_urls && *e->mc.listen_metrics_urls &&
	    (rc = etcd_http_start(&e->http, e->node, e->mc.listen_metrics_urls, e->err,
	                          sizeof(e->err))) != 0)
		return rc;
	if ((rc = node_start(e->node)) != 0) {
		snprintf(e->err, sizeof(e->err), "cannot start the member");
		return rc;
	}
	/* HTTP/1.x on the URLs our HTTP/2 serves, as etcd's client port */
	if (((h2 && urls) || (e->mc.experimental_h2_url && *e->mc.experimental_h2_url)) &&
	    (rc = etcd_http_start_client(&e->http1, e->node, e->err, sizeof(e->err))) != 0)
		return rc;
	if (e->mc.experimental_h2_url && *e->mc.experimental_h2_url) {
		if ((rc = etcd_h2_start(&e->h2x, e->node, e->mc.experimental_h2_url, &e->mc.tls,
		                        e->http1, "--experimental-listen-h2-url: ", e->err,
		                        sizeof(e->err))) != 0)
			return rc;
		blog(BLOG_WARN, e->mc.log_tag, "EXPERIMENTAL: client API also on %s (own HTTP/2)",
		     e->mc.experimental_h2_url);
	}
	if (!urls)
		return 0;
	/* The client URLs on our own HTTP/2 first: their errors are the
	 * gRPC port's (etcd's) texts, and no gRPC thread is left behind. */
	if (h2 && etcd_h2_start(&e->h2, e->node, urls, &e->mc.tls, e->http1, NULL, why,
	                        sizeof(why)) != 0) {
		snprintf(e->err, sizeof(e->err), "cannot serve clients on %s: %s", urls, why);
		return -EINVAL;
	}
	/* The gRPC C core: the client URLs (grpc-core), or (h2) none, only
	 * members' bollard.Internal calls from the peer port; its queue also
	 * runs the follower's forwarding client. */
	if ((rc = etcd_server_start_tls(&e->srv, &e->nloop, e->node, h2 ? NULL : urls,
	                                h2 ? NULL : &e->mc.tls, why, sizeof(why))) != 0) {
		e->srv = NULL;
		if (h2)
			snprintf(e->err, sizeof(e->err), "cannot start the members' gRPC server: %s",
			         why);
		else
			snprintf(e->err, sizeof(e->err), "cannot serve clients on %s: %s", urls, why);
		return rc;
	}
	blog(BLOG_INFO, e->mc.log_tag, "serving client requests on %s%s", urls,
	     h2 ? "" : " (gRPC C core)");
	return 0;
}

static void *member_main(void *arg)
{
	static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
	struct bc_emb *e = arg;
	sigset_t all;
	int rc;

	/* Signals belong to the application (raft's writes to a vanished
	 * peer then fail with EPIPE instead of raising SIGPIPE). Threads the
	 * member starts (gRPC's, libuv's pool) inherit the mask. Faults stay
	 * deliverable: a blocked SIGSEGV kills the process without running
	 * its handler (a sanitizer's report, a core dump's). */
	sigfillset(&all);
	for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
		sigdelset(&all, faults[i]);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	/* Threads started from here inherit this name: libuv's pool (raft's
	 * disk writes), unless an earlier loop in the process started it. Our
	 * own threads and gRPC's name themselves; this one becomes
	 * bollard-node below. */
	pthread_setname_np(pthread_self(), "bollard-uvpool");
	tls_emb = e;
	if ((rc = uv_loop_init(&e->nloop)) != 0) {
		snprintf(e->err, sizeof(e->err), "uv_loop_init: %s", uv_strerror(rc));
		started(e, rc);
		return NULL;
	}
	uv_async_init(&e->nloop, &e->stop_async, on_stop);
	e->stop_async.data = e;
	uv_async_init(&e->nloop, &e->h2_async, on_h2_drained);
	e->h2_async.data = e;
	if ((rc = member_start(e)) != 0) {
		/* Undo on this thread, then report (the opener frees). */
		if (e->node)
			node_close(e->node, node_closed);
		else {
			uv_close((uv_handle_t *)&e->stop_async, NULL);
			uv_close((uv_handle_t *)&e->h2_async, NULL);
		}
		uv_run(&e->nloop, UV_RUN_DEFAULT);
		uv_loop_close(&e->nloop);
		started(e, rc);
		return NULL;
	}
	pthread_setname_np(pthread_self(), "bollard-node");
	started(e, 0);
	uv_run(&e->nloop, UV_RUN_DEFAULT);
	uv_loop_close(&e->nloop);
	if (e->c->loop) {
		pthread_mutex_lock(&e->mu);
		e->node_down = true;
		pthread_mutex_unlock(&e->mu);
		uv_async_send(&e->async);
	}
	return NULL;
}

/* ---- open / close ---- */

/* An owned string for the configuration (freed with the client). */
static const char *keep_owned(struct bc_emb *e, char *d)
{
	if (!d || e->n_strs == sizeof(e->strs) / sizeof(e->strs[0])) {
		free(d);
		return NULL;
	}
	e->strs[e->n_strs++] = d;
	return d;
}

static const char *keep(struct bc_emb *e, const char *s)
{
	return s ? keep_owned(e, strdup(s)) : NULL;
}

static void free_emb(struct bollard_client *c)
{
	struct bc_emb *e = c->emb;

	etcd_http_stop(e->http); /* it reads the node */
	etcd_h2_stop(e->h2);     /* they too */
	etcd_h2_stop(e->h2x);
	etcd_http_stop(e->http1); /* after them: they hand it connections */
	if (e->srv)
		etcd_server_destroy(e->srv);
	if (e->node)
		node_destroy(e->node);
	for (size_t i = 0; i < e->n_strs; i++)
		free(e->strs[i]);
	if (e->lock_fd >= 0)
		close(e->lock_fd);
	pthread_mutex_destroy(&e->mu);
	pthread_cond_destroy(&e->cv);
	free(e);
	free(c);
}

static void async_closed(uv_handle_t *h)
{
	struct bollard_client *c = h->data;
	bollard_close_cb cb = c->close_cb;
	void *data = c->close_data;

	free_emb(c);
	if (cb)
		cb(c, data); /* the pointer is only an identity now */
}

static void on_async(uv_async_t *a)
{
	struct bollard_client *c = a->data;
	struct bc_emb *e = c->emb;
	struct bc_emb_item *list;
	bool down;

	pthread_mutex_lock(&e->mu);
	list = e->head;
	e->head = NULL;
	e->tail = &e->head;
	down = e->node_down;
	pthread_mutex_unlock(&e->mu);
	while (list) {
		struct bc_emb_item *it = list;
		list = it->next;
		it->fn(it);
	}
	if (down) {
		pthread_join(e->thread, NULL);
		uv_close((uv_handle_t *)&e->async, async_closed);
	}
}

/* LMDB must not be opened twice by one process, and raft's log by two
 * members: refuse a data dir another member (embedded or bollard-store, in
 * any process) has open. flock() locks belong to the open file, so this
 * holds within one process too. */
static int lock_dir(struct bc_emb *e, const char *dir)
{
	char path[4096];

	if (node_mkdirs(dir, e->err, sizeof(e->err)) != 0)
		return -EIO;
	snprintf(path, sizeof(path), "%s/bollard.lock", dir);
	if ((e->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		int rc = -errno;
		snprintf(e->err, sizeof(e->err), "cannot open %.400s: %s", path, strerror(-rc));
		return rc;
	}
	if (flock(e->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		int rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		snprintf(e->err, sizeof(e->err), "data dir %.400s is in use by another member (%s)", dir,
		         strerror(-rc));
		return rc;
	}
	return 0;
}

/* --auto-tls as etcd: a self-signed pair in <data-dir>/fixtures/client
 * unless cert/key files are given (then it is ignored, with a warning). */
static int setup_auto_tls(struct bc_emb *e)
{
	struct bc_member_config *mc = &e->mc;
	char dir[4096], *cert = NULL, *key = NULL;

	if (!mc->auto_tls)
		return 0;
	if ((mc->tls.cert_file && *mc->tls.cert_file) || (mc->tls.key_file && *mc->tls.key_file)) {
		blog(BLOG_WARN, mc->log_tag,
		     "ignoring --auto-tls since --cert-file/--key-file are given");
		return 0;
	}
	snprintf(dir, sizeof(dir), "%s/fixtures/client", mc->cfg.data_dir);
	if (etcd_tls_auto_cert(dir, mc->listen_client_urls, &cert, &key, e->err, sizeof(e->err)) != 0)
		return -EINVAL;
	mc->tls.cert_file = keep_owned(e, cert);
	mc->tls.key_file = keep_owned(e, key);
	if (!mc->tls.cert_file || !mc->tls.key_file)
		return -ENOMEM;
	blog(BLOG_INFO, mc->log_tag, "--auto-tls: serving with the self-signed %s", mc->tls.cert_file);
	return 0;
}

static struct bollard_client *client_new(uv_loop_t *loop)
{
	struct bollard_client *c = calloc(1, sizeof(*c));
	struct bc_emb *e = calloc(1, sizeof(*e));

	if (!c || !e) {
		free(c);
		free(e);
		return NULL;
	}
	c->emb = e;
	c->loop = loop;
	c->req_ms = 10000; /* the remote client's default */
	c->live.next = c->live.prev = &c->live;
	e->c = c;
	atomic_init(&e->h2_drained, 0);
	e->lock_fd = -1;
	e->tail = &e->head;
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	return c;
}

/* Start the member of c->emb->mc; on error free c (err set). */
static int member_open(struct bollard_client *c, struct bollard_client **out)
{
	struct bc_emb *e = c->emb;
	struct bc_member_config *mc = &e->mc;
	uv_loop_t *loop = c->loop;
	char *dd;
	int rc;

	if (!mc->log_tag)
		mc->log_tag = "bollard";
	if (!mc->cfg.data_dir || !mc->cfg.data_dir[0]) {
		/* etcd's default, "<name>.etcd", needed here for the lock */
		if (asprintf(&dd, "%s.etcd", mc->cfg.name ? mc->cfg.name : "default") < 0)
			dd = NULL;
		if (!(mc->cfg.data_dir = keep_owned(e, dd))) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	/* TLS misconfigurations stop us before the member starts. */
	if ((rc = setup_auto_tls(e)) != 0)
		goto fail;
	if (mc->listen_client_urls &&
	    etcd_tls_check(&mc->tls, mc->listen_client_urls, e->err, sizeof(e->err)) != 0) {
		rc = -EINVAL;
		goto fail;
	}
	if ((rc = lock_dir(e, mc->cfg.data_dir)) != 0)
		goto fail;
	if ((rc = -pthread_create(&e->thread, NULL, member_main, e)) != 0) {
		snprintf(e->err, sizeof(e->err), "pthread_create: %s", strerror(-rc));
		goto fail;
	}
	pthread_mutex_lock(&e->mu);
	while (!e->started)
		pthread_cond_wait(&e->cv, &e->mu);
	rc = e->start_rc;
	pthread_mutex_unlock(&e->mu);
	if (rc != 0) {
		pthread_join(e->thread, NULL);
		goto fail;
	}
	/* On the caller's loop thread (the rule for opening with a loop). */
	if (loop && (rc = uv_async_init(loop, &e->async, on_async)) != 0) {
		snprintf(e->err, sizeof(e->err), "uv_async_init: %s", uv_strerror(rc));
		uv_async_send(&e->stop_async);
		pthread_join(e->thread, NULL);
		goto fail;
	}
	e->async.data = c;
	*out = c;
	return 0;
fail:
	return rc;
}

int bc_member_open(struct bollard_client **out, uv_loop_t *loop, const struct bc_member_config *mc,
                   char *errbuf, size_t errlen)
{
	struct bollard_client *c;
	int rc;

	if (out)
		*out = NULL;
	if (!out || !mc) {
		snprintf(errbuf, errlen, "bad arguments");
		return -EINVAL;
	}
	if (!(c = client_new(loop))) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	c->emb->mc = *mc;
	if ((rc = member_open(c, out)) != 0) {
		snprintf(errbuf, errlen, "%s", c->emb->err[0] ? c->emb->err : bollard_strerror(rc));
		free_emb(c);
	}
	return rc;
}

/* ---- bollard_open_embedded: options -> a member configuration ---- */

static void set_level(const char *s)
{
	int level = s ? blog_parse_level(s) : -1;
	if (level >= 0)
		blog_set_level(level);
}

/* The options' strings, copied (the caller may free them at once). */
static int embedded_config(struct bc_emb *e, const struct bollard_embedded_options *o)
{
	struct bc_member_config *mc = &e->mc;
	struct node_config *cfg = &mc->cfg;
	int rc;

	node_config_init(cfg);
#define STR(dst, val)                                                                            \
	do {                                                                                       \
		const char *v_ = (val);                                                            \
		if (v_ && !((dst) = keep(e, v_)))                                                  \
			return -ENOMEM;                                                            \
	} while (0)
	STR(cfg->data_dir, o->data_dir);
	STR(cfg->name, o->name);
	STR(cfg->initial_cluster, o->initial_cluster);
	STR(cfg->initial_cluster_state, o->initial_cluster_state);
	STR(cfg->initial_cluster_token, o->initial_cluster_token);
	/* A single member needs no well-known peer port: an ephemeral one on
	 * loopback keeps several embedded stores (and a bollard-store on 2380)
	 * out of each other's way. */
	STR(cfg->listen_peer_urls,
	    o->listen_peer_urls ? o->listen_peer_urls : o->initial_cluster ? NULL : "http://127.0.0.1:0");
	STR(cfg->initial_advertise_peer_urls,
	    o->initial_advertise_peer_urls ? o->initial_advertise_peer_urls
	    : o->initial_cluster           ? NULL
	    : o->listen_peer_urls          ? o->listen_peer_urls
	                                   : "http://127.0.0.1:0");
	STR(cfg->advertise_client_urls,
	    o->advertise_client_urls ? o->advertise_client_urls : o->listen_client_urls);
	STR(cfg->auto_compaction_mode, o->auto_compaction_mode);
	STR(cfg->auto_compaction_retention, o->auto_compaction_retention);
	STR(mc->listen_client_urls, o->listen_client_urls);
	if ((rc = bc_client_transport_parse(o->client_transport)) < 0)
		return -EINVAL;
	mc->client_transport = rc;
	STR(mc->tls.cert_file, o->tls_cert_file);
	STR(mc->tls.key_file, o->tls_key_file);
	STR(mc->tls.trusted_ca_file, o->tls_trusted_ca_file);
#undef STR
	mc->tls.client_cert_auth = o->tls_client_cert_auth;
	if (!o->initial_cluster) {
		/* "<name>=<advertised peer url>", as the binary's default. */
		char ic[600];
		snprintf(ic, sizeof(ic), "%s=%s", cfg->name, cfg->initial_advertise_peer_urls);
		if (!(cfg->initial_cluster = keep(e, ic)))
			return -ENOMEM;
	}
	if (o->heartbeat_ms)
		cfg->heartbeat_ms = o->heartbeat_ms;
	if (o->election_ms)
		cfg->election_ms = o->election_ms;
	if (o->snapshot_count)
		cfg->snapshot_count = o->snapshot_count;
	if (o->quota_backend_bytes)
		cfg->quota_backend_bytes = o->quota_backend_bytes;
	if (o->max_request_bytes)
		cfg->max_request_bytes = o->max_request_bytes;
	if (o->max_txn_ops)
		cfg->max_txn_ops = o->max_txn_ops;
	set_level(o->log_level);
	cfg->log_level = blog_level();
	mc->tls.log_client_cn = cfg->log_level <= BLOG_DEBUG;
	mc->log_tag = "bollard";
	return 0;
}

int bollard_open_embedded(struct bollard_client **out, uv_loop_t *loop,
                          const struct bollard_embedded_options *o)
{
	struct bollard_client *c;
	int rc;

	if (out)
		*out = NULL;
	if (!out || !o || !o->data_dir || !o->data_dir[0])
		return -EINVAL;
	if (o->log_level && blog_parse_level(o->log_level) < 0)
		return -EINVAL;
	/* Cluster members forward to the leader over the client port. */
	if (o->initial_cluster && !o->listen_client_urls)
		return -EINVAL;
	if (!(c = client_new(loop)))
		return -ENOMEM;
	if (o->request_timeout_ms)
		c->req_ms = o->request_timeout_ms;
	if ((rc = embedded_config(c->emb, o)) == 0 && (rc = member_open(c, out)) != 0)
		blog(BLOG_ERROR, "bollard", "cannot open the embedded store: %s", c->emb->err);
	if (rc != 0)
		free_emb(c);
	return rc;
}

void bc_emb_maybe_finish_close(struct bollard_client *c)
{
	struct bc_emb *e = c->emb;

	if (!c->closing || e->stop_sent)
		return;
	/* Watches and keep-alives end before the member stops; unary calls
	 * still in the node (no leader, ...) are answered by its stop. */
	for (struct bc_live *l = c->live.next; l != &c->live; l = l->next)
		if (!l->ends_with_member)
			return;
	e->stop_sent = true;
	uv_async_send(&e->stop_async); /* the member's loop; node_down follows */
}

void bc_emb_close(struct bollard_client *c, bollard_close_cb close_cb, void *data)
{
	struct bc_emb *e = c->emb;

	if (c->closing)
		return;
	c->closing = true;
	c->close_cb = close_cb;
	c->close_data = data;
	if (!c->loop) {
		e->stop_sent = true;
		uv_async_send(&e->stop_async);
		pthread_join(e->thread, NULL);
		free_emb(c);
		if (close_cb)
			close_cb(c, data);
		return;
	}
	for (struct bc_live *l = c->live.next, *next; l != &c->live; l = next) {
		next = l->next;
		l->cancel(l);
	}
	bc_emb_maybe_finish_close(c);
}
