/* gateway.c - etcd's gRPC gateway: the HTTP/JSON API under /v3/ (and
 * /v3beta/, which etcd 3.4 still takes) on the client URLs' HTTP/1.x
 * (http.c). A POST of a request's JSON to a method's path (rpc.proto's
 * google.api.http bindings, as etcd 3.4 registers them) becomes a call of
 * that method through dispatch.c, with everything a gRPC call gets there
 * (checks, auth from the Authorization header, learner and joining waits),
 * and its answer the response message's JSON (gwjson.c), or grpc-gateway's
 * error object {"error","message","code"} with the HTTP status grpc-gateway
 * 1.6 gives the gRPC code (the version Debian's etcd 3.4.23 is built with).
 * Watch, LeaseKeepAlive and Snapshot (streams) are not served here: 501.
 *
 * Threads: the HTTP thread (h2o's, on its libuv loop) owns the requests and
 * the links between them and the calls; a call may be answered on any
 * thread (mostly the node's loop), and comes back through an async handle.
 * A call the node still holds when the HTTP thread stops (gateway_close)
 * is freed by whoever answers it; the gateway goes with the last of its
 * calls. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o.h>
#include <jansson.h>

#include "core/errors.h"
#include "core/gwjson.h"
#include "rpc.pb-c.h"
#include "server/gateway.h"
#include "server/httpreply.h"
#include "server/server_int.h"

/* rpc.proto's HTTP bindings of etcd 3.4.23: path -> gRPC method. Hash and
 * HashKV share /v3/maintenance/hash, where etcd answers Hash. */
static const struct gw_route {
	const char *http, *grpc;
} gw_routes[] = {
	{"/v3/kv/range", "/etcdserverpb.KV/Range"},
	{"/v3/kv/put", "/etcdserverpb.KV/Put"},
	{"/v3/kv/deleterange", "/etcdserverpb.KV/DeleteRange"},
	{"/v3/kv/txn", "/etcdserverpb.KV/Txn"},
	{"/v3/kv/compaction", "/etcdserverpb.KV/Compact"},
	{"/v3/watch", "/etcdserverpb.Watch/Watch"},
	{"/v3/lease/grant", "/etcdserverpb.Lease/LeaseGrant"},
	{"/v3/lease/revoke", "/etcdserverpb.Lease/LeaseRevoke"},
	{"/v3/kv/lease/revoke", "/etcdserverpb.Lease/LeaseRevoke"},
	{"/v3/lease/keepalive", "/etcdserverpb.Lease/LeaseKeepAlive"},
	{"/v3/lease/timetolive", "/etcdserverpb.Lease/LeaseTimeToLive"},
	{"/v3/kv/lease/timetolive", "/etcdserverpb.Lease/LeaseTimeToLive"},
	{"/v3/lease/leases", "/etcdserverpb.Lease/LeaseLeases"},
	{"/v3/kv/lease/leases", "/etcdserverpb.Lease/LeaseLeases"},
	{"/v3/cluster/member/add", "/etcdserverpb.Cluster/MemberAdd"},
	{"/v3/cluster/member/remove", "/etcdserverpb.Cluster/MemberRemove"},
	{"/v3/cluster/member/update", "/etcdserverpb.Cluster/MemberUpdate"},
	{"/v3/cluster/member/list", "/etcdserverpb.Cluster/MemberList"},
	{"/v3/cluster/member/promote", "/etcdserverpb.Cluster/MemberPromote"},
	{"/v3/maintenance/alarm", "/etcdserverpb.Maintenance/Alarm"},
	{"/v3/maintenance/status", "/etcdserverpb.Maintenance/Status"},
	{"/v3/maintenance/defragment", "/etcdserverpb.Maintenance/Defragment"},
	{"/v3/maintenance/hash", "/etcdserverpb.Maintenance/Hash"},
	{"/v3/maintenance/snapshot", "/etcdserverpb.Maintenance/Snapshot"},
	{"/v3/maintenance/transfer-leadership", "/etcdserverpb.Maintenance/MoveLeader"},
	{"/v3/auth/enable", "/etcdserverpb.Auth/AuthEnable"},
	{"/v3/auth/disable", "/etcdserverpb.Auth/AuthDisable"},
	{"/v3/auth/authenticate", "/etcdserverpb.Auth/Authenticate"},
	{"/v3/auth/user/add", "/etcdserverpb.Auth/UserAdd"},
	{"/v3/auth/user/get", "/etcdserverpb.Auth/UserGet"},
	{"/v3/auth/user/list", "/etcdserverpb.Auth/UserList"},
	{"/v3/auth/user/delete", "/etcdserverpb.Auth/UserDelete"},
	{"/v3/auth/user/changepw", "/etcdserverpb.Auth/UserChangePassword"},
	{"/v3/auth/user/grant", "/etcdserverpb.Auth/UserGrantRole"},
	{"/v3/auth/user/revoke", "/etcdserverpb.Auth/UserRevokeRole"},
	{"/v3/auth/role/add", "/etcdserverpb.Auth/RoleAdd"},
	{"/v3/auth/role/get", "/etcdserverpb.Auth/RoleGet"},
	{"/v3/auth/role/list", "/etcdserverpb.Auth/RoleList"},
	{"/v3/auth/role/delete", "/etcdserverpb.Auth/RoleDelete"},
	{"/v3/auth/role/grant", "/etcdserverpb.Auth/RoleGrantPermission"},
	{"/v3/auth/role/revoke", "/etcdserverpb.Auth/RoleRevokePermission"},
};
#define GW_NROUTES (sizeof(gw_routes) / sizeof(gw_routes[0]))

struct gw_call;

struct gateway {
	struct node *node;
	uv_async_t answered;          /* answers_head has calls */
	pthread_mutex_t mu;           /* answers, closed, live, links */
	struct gw_call *answers_head, **answers_tail;
	bool closed;                  /* the HTTP thread is gone: answers free their call */
	bool async_closed;            /* answered's close callback ran */
	struct gw_call *live;         /* calls not freed yet */
	struct srv_registered regs[GW_NROUTES]; /* .m NULL: not served here */
	const ProtobufCMessageDescriptor *resp[GW_NROUTES];
};

/* In the HTTP request's memory pool: its disposal tells the call (HTTP
 * thread only, as the call's req and link). */
struct gw_link {
	struct gw_call *c; /* NULL once the call no longer needs to hear of it */
};

struct gw_call {
	struct gateway *gw;
	size_t route;
	h2o_req_t *req;        /* NULL once the client went */
	struct gw_link *link;
	struct gw_call *lprev, *lnext; /* gw->live, under gw->mu */
	int code;
	char *msg;             /* malloc'ed status message */
	uint8_t *resp;
	size_t resp_len;
	struct gw_call *next;
	struct srv_call base;  /* last: its pb_buf is the tail */
};

/* --------------------------------------------------------------- replies */

/* grpc-gateway 1.6's runtime.HTTPStatusFromCode. */
static int http_status_of(int code)
{
	static const int status[] = {200, 408, 500, 400, 504, 404, 409, 403, 429,
	                             412, 409, 400, 501, 500, 503, 500, 401};
	return code >= 0 && code < (int)(sizeof(status) / sizeof(status[0])) ? status[code] : 500;
}

/* A JSON body, with etcd's CORS headers. */
static void send_json(h2o_req_t *req, int status, const char *body, size_t len)
{
	/* etcd's client port allows any origin (its default --cors "*") */
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL,
	               H2O_STRLIT("*"));
	h2o_add_header_by_str(&req->pool, &req->res.headers,
	                      H2O_STRLIT("access-control-allow-methods"), 0, NULL,
	                      H2O_STRLIT("POST, GET, OPTIONS, PUT, DELETE"));
	h2o_add_header_by_str(&req->pool, &req->res.headers,
	                      H2O_STRLIT("access-control-allow-headers"), 0, NULL,
	                      H2O_STRLIT("accept, content-type, authorization"));
	http_reply(req, status, "application/json", body, len);
}

/* grpc-gateway's error object for gRPC status code/msg. */
static void send_error(h2o_req_t *req, int code, const char *msg)
{
	static const char fallback[] = "{\"error\": \"failed to marshal error message\"}";
	json_t *o = json_pack("{s:s,s:s,s:i}", "error", msg, "message", msg, "code", code);
	char *body = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	json_decref(o);
	if (body == NULL)
		send_json(req, 500, fallback, sizeof(fallback) - 1);
	else
		send_json(req, http_status_of(code), body, strlen(body));
	free(body);
}

static void send_answer(struct gw_call *c)
{
	struct gateway *gw = c->gw;
	ProtobufCMessage *m;
	char *json;
	size_t len;

	if (c->code != 0) {
		send_error(c->req, c->code, c->msg ? c->msg : "bollard: out of memory");
		return;
	}
	m = protobuf_c_message_unpack(gw->resp[c->route], NULL, c->resp_len,
	                              c->resp ? c->resp : (const uint8_t *)"");
	json = m ? gwjson_from_message(m, &len) : NULL;
	if (m)
		protobuf_c_message_free_unpacked(m, NULL);
	if (json == NULL) {
		send_error(c->req, GRPC_STATUS_INTERNAL, "bollard: cannot encode the response");
		return;
	}
	send_json(c->req, 200, json, len);
	free(json);
}

/* ------------------------------------------------------------- the calls */

static void gw_free_if_done(struct gateway *gw); /* under gw->mu, which it releases */

static void call_free(struct gw_call *c)
{
	srv_call_release(&c->base);
	free(c->msg);
	free(c->resp);
	free(c);
}

/* struct srv_transport's release: the gateway holds the only reference,
 * dropped once the answer went out (on_answered) or, after the HTTP
 * thread stopped, by the answer itself (gw_reply). */
static void gw_release(struct srv_call *sc)
{
	struct gw_call *c = SRV_CONTAINER_OF(sc, struct gw_call, base);
	struct gateway *gw = c->gw;

	pthread_mutex_lock(&gw->mu);
	if (c->lprev)
		c->lprev->lnext = c->lnext;
	else
		gw->live = c->lnext;
	if (c->lnext)
		c->lnext->lprev = c->lprev;
	call_free(c);
	gw_free_if_done(gw);
}

static void gw_reply(struct srv_call *sc, uint8_t *resp, size_t len, int code, const char *msg,
                     bool copy)
{
	struct gw_call *c = SRV_CONTAINER_OF(sc, struct gw_call, base);
	struct gateway *gw = c->gw;

	(void)copy; /* always copied: the answer goes out on another thread */
	c->code = code;
	c->resp = resp;
	c->resp_len = len;
	if (code != 0)
		c->msg = strdup(msg ? msg : "");
	pthread_mutex_lock(&gw->mu);
	if (gw->closed) { /* gateway_close cut it from its request */
		pthread_mutex_unlock(&gw->mu);
		srv_call_unref(&c->base);
		return;
	}
	c->next = NULL;
	*gw->answers_tail = c;
	gw->answers_tail = &c->next;
	uv_async_send(&gw->answered); /* under mu: the handle closes only after closed is set */
	pthread_mutex_unlock(&gw->mu);
}

static void gw_submit(struct srv_call *sc)
{
	node_submit(sc->node, &sc->req);
}

static uint64_t gw_deadline_ns(const struct srv_call *sc)
{
	(void)sc;
	return 0; /* as grpc-gateway without a Grpc-Timeout header */
}

/* Streams never reach here (refused before a call is made). */
static int gw_no_stream(struct srv_call *c)
{
	(void)c;
	return -1;
}
static int gw_no_bidi(struct srv_call *c, const struct srv_bidi_ops *ops)
{
	(void)c, (void)ops;
	return -1;
}
static int gw_no_send(struct srv_call *c, uint8_t *data, size_t len, size_t max_queued)
{
	(void)c, (void)len, (void)max_queued;
	free(data);
	return -1;
}
static int gw_no_offer(struct srv_call *c, uint8_t *data, size_t len, const struct srv_offer *o)
{
	(void)c, (void)len, (void)o;
	free(data);
	return -1;
}
static void gw_no_flush(struct srv_call *c)
{
	(void)c;
}
static bool gw_no_room(struct srv_call *c, const struct srv_offer *o)
{
	(void)c, (void)o;
	return false;
}
static void gw_no_finish(struct srv_call *c, int err)
{
	(void)c, (void)err;
}

static const struct srv_transport gw_transport = {
	.reply = gw_reply,
	.submit = gw_submit,
	.deadline_ns = gw_deadline_ns,
	.release = gw_release,
	.stream_open = gw_no_stream,
	.bidi_start = gw_no_bidi,
	.stream_send = gw_no_send,
	.stream_offer = gw_no_offer,
	.stream_flush = gw_no_flush,
	.stream_has_room = gw_no_room,
	.stream_finish = gw_no_finish,
};

/* Answered calls c, c->next...: their answers out, the calls freed. */
static void answer_all(struct gw_call *c)
{
	struct gw_call *next;

	for (; c != NULL; c = next) {
		next = c->next;
		if (c->link)
			c->link->c = NULL; /* the request no longer needs to tell the call */
		if (c->req != NULL) {
			send_answer(c);
			srv_call_observe_sent(&c->base); /* a write's respond stage, as the others */
		}
		srv_call_unref(&c->base);
	}
}

/* The answers, on the HTTP thread. */
static void on_answered(uv_async_t *a)
{
	struct gateway *gw = a->data;
	struct gw_call *c;

	pthread_mutex_lock(&gw->mu);
	c = gw->answers_head;
	gw->answers_head = NULL;
	gw->answers_tail = &gw->answers_head;
	pthread_mutex_unlock(&gw->mu);
	answer_all(c);
}

/* The request's pool is going (answered, or its connection closed). */
static void on_req_dispose(void *p)
{
	struct gw_link *l = p;

	if (l->c != NULL) {
		l->c->req = NULL;
		l->c->link = NULL;
	}
}

/* ----------------------------------------------------------- the handler */

struct gw_handler {
	h2o_handler_t super;
	struct gateway *gw;
};

static void send_text(h2o_req_t *req, int status, const char *text)
{
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0,
	                      NULL, H2O_STRLIT("nosniff"));
	http_reply(req, status, "text/plain; charset=utf-8", text, strlen(text));
}

static int route_of(const h2o_req_t *req)
{
	h2o_iovec_t p = req->path_normalized;
	char path[64];

	if (p.len >= 8 && memcmp(p.base, "/v3beta/", 8) == 0) /* etcd 3.4 takes it for /v3/ */
		snprintf(path, sizeof(path), "/v3/%.*s", (int)(p.len - 8), p.base + 8);
	else
		snprintf(path, sizeof(path), "%.*s", (int)p.len, p.base);
	for (size_t i = 0; i < GW_NROUTES; i++)
		if (strcmp(path, gw_routes[i].http) == 0)
			return (int)i;
	return -1;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
	struct gateway *gw = ((struct gw_handler *)self)->gw;
	struct gwjson_buf wire = {0};
	char err[256];
	int route = route_of(req), rc;
	struct gw_call *c;
	ssize_t auth;

	if (route < 0) {
		send_text(req, 404, "Not Found\n");
		return 0;
	}
	if (gw->closed) { /* stopping (this thread set it) */
		send_error(req, GRPC_STATUS_UNAVAILABLE, bollard_strerror(BOLLARD_ESTOPPED));
		return 0;
	}
	if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
		send_text(req, 405, "Method Not Allowed\n");
		return 0;
	}
	if (gw->regs[route].m == NULL) {
		send_error(req, GRPC_STATUS_UNIMPLEMENTED,
		           "bollard: streams (Watch, LeaseKeepAlive, Snapshot) are not served by the "
		           "HTTP gateway");
		return 0;
	}
	rc = gwjson_to_wire(gw->regs[route].m->req_desc, req->entity.base, req->entity.len, &wire,
	                    err, sizeof(err));
	if (rc != 0) {
		free(wire.p);
		send_error(req, rc == -ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INVALID_ARGUMENT,
		           rc == -ENOMEM ? "bollard: out of memory" : err);
		return 0;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		free(wire.p);
		send_error(req, GRPC_STATUS_RESOURCE_EXHAUSTED, "bollard: out of memory");
		return 0;
	}
	c->gw = gw;
	c->route = (size_t)route;
	c->req = req;
	c->link = h2o_mem_alloc_shared(&req->pool, sizeof(*c->link), on_req_dispose);
	c->link->c = c;
	c->base.tp = &gw_transport;
	c->base.node = gw->node;
	c->base.reg = &gw->regs[route];
	c->base.t_start_ns = node_clock_ns();
	atomic_init(&c->base.refs, 1); /* the gateway's, until the answer went */
	/* grpc-gateway passes Authorization on as metadata, which etcd reads
	 * as the token */
	if ((auth = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1)) >= 0)
		c->base.token = strndup(req->headers.entries[auth].value.base,
		                        req->headers.entries[auth].value.len);
	pthread_mutex_lock(&gw->mu);
	c->lnext = gw->live;
	if (gw->live)
		gw->live->lprev = c;
	gw->live = c;
	pthread_mutex_unlock(&gw->mu);
	srv_call_unpack(&c->base, wire.p, wire.len);
	free(wire.p);
	srv_call_start(&c->base);
	return 0;
}

/* ------------------------------------------------------------- lifetime */

static const ProtobufCServiceDescriptor *const gw_services[] = {
	&etcdserverpb__kv__descriptor,      &etcdserverpb__watch__descriptor,
	&etcdserverpb__lease__descriptor,   &etcdserverpb__cluster__descriptor,
	&etcdserverpb__maintenance__descriptor, &etcdserverpb__auth__descriptor,
};

/* The unary method of gRPC path grpc (NULL for a stream), and its response
 * type from rpc.proto's services. */
static const struct srv_method *method_of(const char *grpc, const ProtobufCMessageDescriptor **resp)
{
	const struct srv_method *m = srv_client_method(grpc);
	const char *slash = strrchr(grpc, '/');

	*resp = NULL;
	for (size_t s = 0; s < sizeof(gw_services) / sizeof(gw_services[0]); s++) {
		const ProtobufCServiceDescriptor *sd = gw_services[s];
		size_t n = strlen(sd->name);
		if ((size_t)(slash - grpc - 1) == n && memcmp(grpc + 1, sd->name, n) == 0) {
			const ProtobufCMethodDescriptor *md =
				protobuf_c_service_descriptor_get_method_by_name(sd, slash + 1);
			*resp = md ? md->output : NULL;
		}
	}
	return m == NULL || m->bidi || m->server_stream || *resp == NULL ? NULL : m;
}

struct gateway *gateway_new(struct node *node, uv_loop_t *loop, h2o_hostconf_t *host)
{
	struct gateway *gw = calloc(1, sizeof(*gw));
	const char *const prefixes[] = {"/v3/", "/v3beta/"};

	if (gw == NULL)
		return NULL;
	gw->node = node;
	pthread_mutex_init(&gw->mu, NULL);
	gw->answers_tail = &gw->answers_head;
	for (size_t i = 0; i < GW_NROUTES; i++)
		gw->regs[i].m = method_of(gw_routes[i].grpc, &gw->resp[i]);
	uv_async_init(loop, &gw->answered, on_answered);
	gw->answered.data = gw;
	for (size_t i = 0; i < 2; i++) {
		h2o_pathconf_t *pc = h2o_config_register_path(host, prefixes[i], 0);
		struct gw_handler *gh = (struct gw_handler *)h2o_create_handler(pc, sizeof(*gh));
		gh->super.on_req = on_req;
		gh->gw = gw;
	}
	return gw;
}

/* Under gw->mu, which it releases: the gateway goes once the HTTP thread
 * closed it and its last call was freed. */
static void gw_free_if_done(struct gateway *gw)
{
	bool done = gw->closed && gw->async_closed && gw->live == NULL;

	pthread_mutex_unlock(&gw->mu);
	if (done) {
		pthread_mutex_destroy(&gw->mu);
		free(gw);
	}
}

static void on_async_closed(uv_handle_t *h)
{
	struct gateway *gw = h->data;

	pthread_mutex_lock(&gw->mu);
	gw->async_closed = true;
	gw_free_if_done(gw);
}

void gateway_close(struct gateway *gw)
{
	struct gw_call *answered;

	if (gw == NULL)
		return;
	pthread_mutex_lock(&gw->mu);
	gw->closed = true;
	answered = gw->answers_head;
	gw->answers_head = NULL;
	gw->answers_tail = &gw->answers_head;
	pthread_mutex_unlock(&gw->mu);
	answer_all(answered); /* what came before: answered now */
	/* the rest are answered after this thread is gone: cut them from
	 * their requests (their answers free them, gw_reply) */
	pthread_mutex_lock(&gw->mu);
	for (struct gw_call *c = gw->live; c != NULL; c = c->lnext) {
		if (c->link)
			c->link->c = NULL;
		c->link = NULL;
		c->req = NULL;
	}
	pthread_mutex_unlock(&gw->mu);
	uv_close((uv_handle_t *)&gw->answered, on_async_closed);
}
