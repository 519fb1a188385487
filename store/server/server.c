/* server.c - the gRPC server of a member: listen addresses, channel
 * arguments, method registration, the completion-queue thread, and the
 * shutdown handshake with the node's loop (see server.h). The services'
 * methods are in kv.c, maintenance.c, cluster.c and auth.c; call plumbing in
 * calls.c. */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "core/hostport.h"
#include "server/listenurl.h"
#include "server/server_int.h"
#include "wire/grpc_wire.h"

/* etcd: grpc.MaxRecvMsgSize(MaxRequestBytes + grpcOverheadBytes). */
#define SRV_GRPC_OVERHEAD_BYTES (512 * 1024)
/* Catch-all requests for unknown methods kept armed. */
#define SRV_UNREGISTERED_ARMED 4
/* The most CQ events handled while the node's loop waits for a wake-up it
 * is owed (cq_main): bounds the delay a run of requests adds. */
#define SRV_WAKE_EVENTS_MAX 16

/* ------------------------------------------------------------ live calls */

static void check_done_locked(struct etcd_server *s)
{
	if (s->shutdown_fired && s->live == 0 && !s->done_sent) {
		s->done_sent = 1;
		uv_async_send(s->done_async);
	}
}

/* Finished calls kept for reuse: a call's memory (over 1 KiB, past
 * malloc's per-thread cache) and its metadata array are reused instead of
 * allocated and zeroed per call. Enough for the calls of a busy server.
 *
 * Under AddressSanitizer a pooled call is poisoned (all but its pool link,
 * and its metadata array's room), so a use after its last unref is still
 * reported ("use-after-poison") as it would be after free(). */
#define SRV_POOL_MAX 512

#if defined(__SANITIZE_ADDRESS__)
#define SRV_POOL_POISON 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SRV_POOL_POISON 1
#endif
#endif
#ifdef SRV_POOL_POISON
#include <sanitizer/asan_interface.h>

static void pool_poison(struct srv_call *c, bool poison)
{
	char *p = (char *)c, *link = (char *)&c->out_next, *end = p + sizeof(*c);
	void *md;

	if (poison) {
		if ((md = c->md.metadata) != NULL)
			ASAN_POISON_MEMORY_REGION(md, c->md.capacity * sizeof(*c->md.metadata));
		ASAN_POISON_MEMORY_REGION(p, (size_t)(link - p));
		ASAN_POISON_MEMORY_REGION(link + sizeof(c->out_next),
		                          (size_t)(end - link - sizeof(c->out_next)));
		return;
	}
	ASAN_UNPOISON_MEMORY_REGION(p, sizeof(*c));
	if ((md = c->md.metadata) != NULL)
		ASAN_UNPOISON_MEMORY_REGION(md, c->md.capacity * sizeof(*c->md.metadata));
}
#else
static void pool_poison(struct srv_call *c, bool poison)
{
	(void)c;
	(void)poison;
}
#endif

static struct srv_call *pool_take_locked(struct etcd_server *s)
{
	struct srv_call *c = s->pool;
	if (c) {
		s->pool = c->out_next;
		s->pool_n--;
		pool_poison(c, false);
	}
	return c;
}

struct srv_call *srv_live_add(struct etcd_server *s)
{
	struct srv_call *c;

	pthread_mutex_lock(&s->mu);
	s->live++;
	c = pool_take_locked(s);
	pthread_mutex_unlock(&s->mu);
	return c;
}

struct srv_call *srv_live_drop(struct etcd_server *s, struct srv_call *c)
{
	pthread_mutex_lock(&s->mu);
	s->live--;
	if (c && s->pool_n < SRV_POOL_MAX && !s->shutdown_fired) {
		c->out_next = s->pool;
		s->pool = c;
		s->pool_n++;
		pool_poison(c, true);
		c = NULL;
	}
	check_done_locked(s);
	pthread_mutex_unlock(&s->mu);
	return c;
}

struct srv_call *srv_pool_take(struct etcd_server *s)
{
	struct srv_call *c;

	pthread_mutex_lock(&s->mu);
	c = pool_take_locked(s);
	pthread_mutex_unlock(&s->mu);
	return c;
}

static void on_shutdown(struct srv_tag *t, int ok)
{
	struct etcd_server *s = SRV_CONTAINER_OF(t, struct etcd_server, on_shutdown);
	(void)ok;
	pthread_mutex_lock(&s->mu);
	s->shutdown_fired = 1;
	check_done_locked(s);
	pthread_mutex_unlock(&s->mu);
}

static void free_handle(uv_handle_t *h)
{
	free(h);
}

static void on_async_closed(uv_handle_t *h)
{
	struct etcd_server *s = h->data;
	free(h);
	s->done_async = NULL;
	if (s->shutdown_cb)
		s->shutdown_cb(s);
}

static void on_done_async(uv_async_t *a)
{
	uv_close((uv_handle_t *)a, on_async_closed);
}

/* ------------------------------------------------------------ reply queue */

static void on_reply_cq_down(grpc_completion_queue_functor *f, int ok)
{
	struct etcd_server *s = SRV_CONTAINER_OF(f, struct etcd_server, reply_cq_shutdown);
	(void)ok;
	pthread_mutex_lock(&s->mu);
	s->reply_cq_down = 1;
	pthread_cond_broadcast(&s->reply_cq_cv);
	pthread_mutex_unlock(&s->mu);
}

static void reply_cq_create(struct etcd_server *s)
{
	s->reply_cq_shutdown.functor_run = on_reply_cq_down;
	s->reply_cq_shutdown.inlineable = 0;
	s->reply_cq = grpc_completion_queue_create_for_callback(&s->reply_cq_shutdown, NULL);
}

/* Once every call is gone (no batch can complete any more). */
static void reply_cq_destroy(struct etcd_server *s)
{
	if (!s->reply_cq)
		return;
	grpc_completion_queue_shutdown(s->reply_cq);
	pthread_mutex_lock(&s->mu);
	while (!s->reply_cq_down)
		pthread_cond_wait(&s->reply_cq_cv, &s->mu);
	pthread_mutex_unlock(&s->mu);
	grpc_completion_queue_destroy(s->reply_cq);
	s->reply_cq = NULL;
}

/* ------------------------------------------------------------- CQ thread */

static void on_bell(struct srv_tag *t, int ok)
{
	(void)ok;
	srv_outbox_drain(SRV_CONTAINER_OF(t, struct etcd_server, on_bell));
}

/* The call whose empty batches wake the CQ thread for the outbox. */
static void bell_create(struct etcd_server *s)
{
	s->out_tail = &s->out_head;
	s->on_bell.fn = on_bell;
	s->bell_channel = grpc_lame_client_channel_create(NULL, GRPC_STATUS_UNAVAILABLE,
	                                                  "bollard: reply doorbell");
	if (s->bell_channel)
		s->bell = grpc_channel_create_call(s->bell_channel, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq,
		                                   grpc_slice_from_static_string("/bollard.Doorbell/Ring"),
		                                   NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

static void bell_destroy(struct etcd_server *s)
{
	if (s->bell)
		grpc_call_unref(s->bell);
	if (s->bell_channel)
		grpc_channel_destroy(s->bell_channel);
	s->bell = NULL;
	s->bell_channel = NULL;
}

static void *cq_main(void *arg)
{
	struct etcd_server *s = arg;

	int owed_events = 0;

	pthread_setname_np(pthread_self(), "bollard-grpc");
	for (;;) {
		/* Owing the node's loop a wake-up (requests queued quietly,
		 * calls.c): take what is ready without sleeping, and wake the
		 * loop once nothing is (or after SRV_WAKE_EVENTS_MAX events):
		 * one wake-up for a run of requests. */
		grpc_event ev = grpc_completion_queue_next(
			s->cq, s->node_wake_owed ? gpr_inf_past(GPR_CLOCK_MONOTONIC)
			                         : gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (s->node_wake_owed &&
		    (ev.type != GRPC_OP_COMPLETE || ++owed_events >= SRV_WAKE_EVENTS_MAX)) {
			s->node_wake_owed = 0;
			owed_events = 0;
			node_wake(s->node);
		}
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE) {
			struct srv_tag *t = ev.tag;
			t->fn(t, ev.success);
		}
	}
	return NULL;
}

/* ------------------------------------------------------------- addresses */

/* A listen URL as the gRPC core's address: "http://127.0.0.1:2379" ->
 * "127.0.0.1:2379"; "http://:2379" -> "[::]:2379" (every address, as etcd
 * and the h2 listener); "unix://p" -> "unix:p". Returns a malloc'ed string
 * or NULL with errbuf set. */
static char *grpc_addr_of_url(const struct srv_url *u, char *errbuf, size_t errlen)
{
	bool any = u->kind == SRV_URL_TCP && !u->host[0]; /* ":2379" or "[]:2379" */
	size_t n = (any ? 6 + strlen(u->port) : 5 + u->addrlen) + 1;
	char *out = malloc(n);

	if (!out) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	if (any)
		snprintf(out, n, "[::]:%s", u->port);
	else
		snprintf(out, n, "%s%.*s", u->kind == SRV_URL_UNIX ? "unix:" : "", (int)u->addrlen,
		         u->addr);
	return out;
}

/* gRPC only says "no": find out why by binding the address ourselves. */
static void explain_listen_failure(const char *addr, char *errbuf, size_t errlen)
{
	char host[256], port[16];
	struct addrinfo hints, *res = NULL;
	const char *why = "cannot listen there";
	int err = 0;

	if (strncmp(addr, "unix:", 5) != 0 &&
	    hostport_split(addr, strlen(addr), host, sizeof(host), port, sizeof(port)) == 0) {
		memset(&hints, 0, sizeof(hints));
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE;
		if ((err = getaddrinfo(host, port, &hints, &res)) != 0) {
			why = gai_strerror(err);
		} else {
			for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
				int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
				if (fd < 0)
					continue;
				if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
					why = strerror(errno);
					close(fd);
					break;
				}
				close(fd);
			}
			freeaddrinfo(res);
		}
	}
	snprintf(errbuf, errlen, "listen on %s: %s", addr, why);
}

static int add_listeners(struct etcd_server *s, const char *urls, char *errbuf, size_t errlen)
{
	const char *pos = urls, *p;
	size_t len;
	int n = 0;

	while (hostport_list_next(&pos, &p, &len)) {
		if (len) {
			struct srv_url u;
			char *addr;
			grpc_server_credentials *creds;
			int port;
			if (srv_url_split(p, len, s->tls != NULL, "", &u, errbuf, errlen) != 0 ||
			    !(addr = grpc_addr_of_url(&u, errbuf, errlen)))
				return -1;
			creds = u.tls ? srv_tls_credentials(s->tls)
			              : grpc_insecure_server_credentials_create();
			port = grpc_server_add_http2_port(s->server, addr, creds);
			grpc_server_credentials_release(creds);
			if (port == 0) {
				explain_listen_failure(addr, errbuf, errlen);
				free(addr);
				return -1;
			}
			free(addr);
			n++;
		}
	}
	return n == 0 ? srv_url_none("", errbuf, errlen) : 0;
}

/* ------------------------------------------------------------- methods */

static int register_methods(struct etcd_server *s)
{
	const struct srv_method *tables[8];
	size_t n = 0, i = 0, nt = 0;

	for (const struct srv_method *const *t = srv_client_services; *t; t++)
		tables[nt++] = *t;
	tables[nt++] = srv_internal_methods; /* the peer port's too */
	for (size_t t = 0; t < nt; t++)
		for (const struct srv_method *m = tables[t]; m->path; m++)
			n++;
	s->regs = calloc(n, sizeof(*s->regs));
	if (!s->regs)
		return -1;
	for (size_t t = 0; t < nt; t++) {
		for (const struct srv_method *m = tables[t]; m->path; m++) {
			/* Unary and server-streaming methods take one request
			 * message: read it with the call. Bidi streams read their
			 * own (grpc_stream.c). */
			s->regs[i].m = m;
			s->regs[i].handle = grpc_server_register_method(
				s->server, m->path, NULL,
				m->bidi ? GRPC_SRM_PAYLOAD_NONE : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
			if (!s->regs[i].handle)
				return -1;
			i++;
		}
	}
	s->nregs = n;
	return 0;
}

static int arm_all(struct etcd_server *s)
{
	for (size_t i = 0; i < s->nregs; i++)
		for (int k = 0; k < s->regs[i].m->armed; k++)
			if (srv_call_arm(s, &s->regs[i]) != 0)
				return -1;
	for (int k = 0; k < SRV_UNREGISTERED_ARMED; k++)
		if (srv_call_arm(s, NULL) != 0)
			return -1;
	return 0;
}

/* ------------------------------------------------------------ lifecycle */

static grpc_arg int_arg(const char *key, int value)
{
	grpc_arg a;
	memset(&a, 0, sizeof(a));
	a.type = GRPC_ARG_INTEGER;
	a.key = (char *)key;
	a.value.integer = value;
	return a;
}

/* Tear down a server that never started serving (no call was armed). */
static void abort_start(struct etcd_server *s)
{
	if (s->server) {
		grpc_server_shutdown_and_notify(s->server, s->cq, &s->on_shutdown);
		for (;;) {
			grpc_event ev =
				grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
			if (ev.type == GRPC_OP_COMPLETE && ev.tag == &s->on_shutdown)
				break;
		}
		grpc_server_destroy(s->server);
	}
	if (s->cq) {
		grpc_completion_queue_shutdown(s->cq);
		while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
		       GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(s->cq);
	}
	bell_destroy(s);
	reply_cq_destroy(s);
	pthread_cond_destroy(&s->reply_cq_cv);
	pthread_mutex_destroy(&s->out_mu);
	pthread_mutex_destroy(&s->mu);
	srv_tls_free(s->tls);
	free(s->regs);
	srv_pool_free(s);
	free(s);
	grpc_shutdown();
}

int etcd_server_start(struct etcd_server **out, uv_loop_t *loop, struct node *node,
                      const char *listen_client_urls, char *errbuf, size_t errlen)
{
	return etcd_server_start_tls(out, loop, node, listen_client_urls, NULL, errbuf, errlen);
}

int etcd_server_start_tls(struct etcd_server **out, uv_loop_t *loop, struct node *node,
                          const char *listen_client_urls, const struct etcd_tls_config *tls,
                          char *errbuf, size_t errlen)
{
	struct etcd_server *s;
	struct srv_tls *stls;
	int64_t max_recv;
	grpc_arg args[8];
	grpc_channel_args chargs;
	size_t nargs = 0;

	*out = NULL;
	if (srv_tls_load(&stls, tls, errbuf, errlen) != 0)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s) {
		srv_tls_free(stls);
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	s->tls = stls;
	s->loop = loop;
	s->node = node;
	s->max_request_bytes = node_max_request_bytes(node);
	s->on_shutdown.fn = on_shutdown;
	atomic_init(&s->shutting_down, 0);
	atomic_init(&s->unary_busy, 0);
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->out_mu, NULL);
	pthread_cond_init(&s->reply_cq_cv, NULL);
	grpc_wire_init();

	max_recv = s->max_request_bytes + SRV_GRPC_OVERHEAD_BYTES;
	if (max_recv > INT_MAX)
		max_recv = INT_MAX;
	args[nargs++] = int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int)max_recv);
	args[nargs++] = int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, -1);
	/* etcd's --grpc-keepalive-min-time (5 s); never GOAWAY pinging clients. */
	args[nargs++] = int_arg(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
	args[nargs++] = int_arg(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
	args[nargs++] = int_arg(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
	/* etcd's --grpc-keepalive-interval 2 h and --grpc-keepalive-timeout 20 s. */
	args[nargs++] = int_arg(GRPC_ARG_KEEPALIVE_TIME_MS, 2 * 3600 * 1000);
	args[nargs++] = int_arg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20 * 1000);
	/* Two servers on one port must be an error, not a silent share. */
	args[nargs++] = int_arg(GRPC_ARG_ALLOW_REUSEPORT, 0);
	chargs.num_args = nargs;
	chargs.args = args;

	s->server = grpc_server_create(&chargs, NULL);
	s->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(s->server, s->cq, NULL);
	reply_cq_create(s);
	bell_create(s);
	if (register_methods(s) != 0) {
		snprintf(errbuf, errlen, "cannot register the gRPC methods");
		abort_start(s);
		return -ENOMEM;
	}
	/* NULL: no client listener, the peer port's Internal calls only. */
	if (listen_client_urls && add_listeners(s, listen_client_urls, errbuf, errlen) != 0) {
		abort_start(s);
		return -EINVAL;
	}
	s->done_async = malloc(sizeof(*s->done_async));
	if (!s->done_async || uv_async_init(loop, s->done_async, on_done_async) != 0) {
		free(s->done_async);
		snprintf(errbuf, errlen, "cannot create the shutdown notifier");
		abort_start(s);
		return -ENOMEM;
	}
	s->done_async->data = s;
	if (pthread_create(&s->cq_thread, NULL, cq_main, s) != 0) {
		uv_close((uv_handle_t *)s->done_async, free_handle);
		snprintf(errbuf, errlen, "cannot create the gRPC polling thread");
		abort_start(s);
		return -EAGAIN;
	}
	grpc_server_start(s->server);
	/* Only memory can run short here; fewer armed calls still serve. */
	if (arm_all(s) != 0)
		fprintf(stderr, "bollard: could not arm every gRPC call (out of memory)\n");
	s->cq_thread_started = 1;
	/* Followers forward writes and read rounds to the leader. */
	if ((s->fwd = srv_fwd_start(node, s->cq)) == NULL)
		fprintf(stderr, "bollard: cannot start the forwarding client\n");
	/* Members' gRPC comes in through the peer port only. */
	node_set_peer_grpc(node, srv_peer_grpc_conn, s);
	*out = s;
	return 0;
}

void etcd_server_shutdown(struct etcd_server *s, void (*cb)(struct etcd_server *s))
{
	s->shutdown_cb = cb;
	atomic_store(&s->shutting_down, 1);
	node_set_peer_grpc(s->node, NULL, NULL); /* no new member connections */
	node_join_waits_cancel(s->node);          /* calls waiting for a joiner to serve */
	grpc_server_shutdown_and_notify(s->server, s->cq, &s->on_shutdown);
	/* Open streams would hold the shutdown forever. */
	grpc_server_cancel_all_calls(s->server);
}

void etcd_server_destroy(struct etcd_server *s)
{
	if (!s)
		return;
	srv_fwd_destroy(s->fwd);
	grpc_server_destroy(s->server);
	grpc_completion_queue_shutdown(s->cq);
	if (s->cq_thread_started)
		pthread_join(s->cq_thread, NULL);
	bell_destroy(s);
	grpc_completion_queue_destroy(s->cq);
	reply_cq_destroy(s);
	pthread_cond_destroy(&s->reply_cq_cv);
	pthread_mutex_destroy(&s->out_mu);
	pthread_mutex_destroy(&s->mu);
	srv_tls_free(s->tls);
	free(s->regs);
	srv_pool_free(s);
	free(s);
	grpc_shutdown();
}
