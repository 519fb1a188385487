/* dispatch.c - what a unary call does whatever transport brought it (the
 * gRPC C core in calls.c, our own HTTP/2 in h2srv.c): decoding the request
 * into the call's own memory, waiting for a joining member and for a
 * token's login entry, the method's checks, the caller's identity, handing
 * it to the node with its deadline, and ending it through the transport's
 * reply (struct srv_transport). Also the single place where internal
 * errors become gRPC statuses (srv_status_of). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/errors.h"
#include "core/metrics.h"
#include "server/server_int.h"

/* ------------------------------------------------------------------ errors */

void srv_status_of(int err, grpc_status_code *code, const char **msg)
{
	if (err == 0) {
		*code = GRPC_STATUS_OK;
		*msg = "";
		return;
	}
	/* etcd's status code and text, byte for byte (clientv3 matches text). */
	*code = (grpc_status_code)bollard_err_grpc_code(err);
	*msg = bollard_strerror(err);
}

/* ---------------------------------------------------------------- methods */

const struct srv_method *const srv_client_services[] = {
	srv_kv_methods,    srv_maintenance_methods, srv_cluster_methods, srv_auth_methods,
	srv_lease_methods, srv_watch_methods,       srv_health_methods,  NULL,
};

const struct srv_method *srv_client_method(const char *path)
{
	for (const struct srv_method *const *t = srv_client_services; *t; t++)
		for (const struct srv_method *m = *t; m->path; m++)
			if (strcmp(m->path, path) == 0)
				return m;
	return NULL;
}

/* ----------------------------------------------------------------- replies */

static void call_end(struct srv_call *c, uint8_t *resp, size_t len, int code, const char *msg,
                     bool copy)
{
	srv_call_free_msg(c); /* the node is done with it */
	c->tp->reply(c, resp, len, code, msg, copy);
}

void srv_call_reply(struct srv_call *c, uint8_t *resp, size_t len)
{
	metrics_add(&node_metrics(c->node)->grpc_sent_bytes, len);
	call_end(c, resp, len, 0, "", false);
}

void srv_call_reply_err(struct srv_call *c, int err)
{
	grpc_status_code code;
	const char *msg;

	srv_status_of(err, &code, &msg);
	call_end(c, NULL, 0, (int)code, msg, false);
}

void srv_call_reply_status(struct srv_call *c, grpc_status_code code, const char *details)
{
	call_end(c, NULL, 0, (int)code, details, true);
}

void srv_call_node_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct srv_call *c = req->data;

	if (c->reg && c->reg->m->via_raft && c->t_start_ns != 0)
		c->t_answer_ns = node_clock_ns();
	if (err) {
		free(resp);
		srv_call_reply_err(c, err);
	} else {
		srv_call_reply(c, resp, len);
	}
}

void srv_call_observe_sent(struct srv_call *c)
{
	if (c->t_answer_ns != 0) { /* a write the node answered: its last stage */
		struct store_metrics *m = node_metrics(c->node);
		uint64_t now = node_clock_ns();
		metrics_hist_observe_ns(&m->stage[METRICS_STAGE_RESPOND], now - c->t_answer_ns);
		metrics_hist_observe_ns(&m->request, now - c->t_start_ns);
	}
}

/* ---------------------------------------------------------------- decoding */

/* The decoded request lives in the call: small ones entirely in its
 * inline buffer (no malloc), bigger pieces in malloc'ed blocks. */
static void *pb_call_alloc(void *ud, size_t n)
{
	struct srv_call *c = ud;
	size_t a = (n + SRV_PB_ALIGN - 1) & ~(size_t)(SRV_PB_ALIGN - 1);

	if (a <= sizeof(c->pb_buf) - c->pb_used) {
		void *p = c->pb_buf + c->pb_used;
		c->pb_used += a;
		return p;
	}
	return malloc(n ? n : 1);
}

static void pb_call_free(void *ud, void *p)
{
	struct srv_call *c = ud;
	uintptr_t q = (uintptr_t)p, b = (uintptr_t)c->pb_buf;

	if (q >= b && q < b + sizeof(c->pb_buf))
		return; /* goes with the call */
	free(p);
}

void srv_call_free_msg(struct srv_call *c)
{
	ProtobufCAllocator al = {pb_call_alloc, pb_call_free, c};

	if (c->msg) {
		protobuf_c_message_free_unpacked(c->msg, &al);
		c->msg = NULL;
	}
}

void srv_call_release(struct srv_call *c)
{
	srv_call_free_msg(c);
	free(c->peer_cn);
	free(c->token);
	free(c->auth_user);
	c->peer_cn = c->token = c->auth_user = NULL;
}

int srv_call_unpack(struct srv_call *c, const uint8_t *data, size_t len)
{
	const struct srv_method *m = c->reg->m;
	ProtobufCAllocator al = {pb_call_alloc, pb_call_free, c};
	static const uint8_t empty[1];

	metrics_add(&node_metrics(c->node)->grpc_received_bytes, len);
	/* etcd refuses a proposal bigger than --max-request-bytes; the
	 * (uncompressed) request is what we would propose. */
	if (m->via_raft && len > (size_t)node_max_request_bytes(c->node))
		return c->unpack_err = BOLLARD_EREQUEST_TOO_LARGE;
	c->msg = protobuf_c_message_unpack(m->req_desc, &al, len, data ? data : empty);
	if (!c->msg)
		return c->unpack_err = SRV_EMALFORMED;
	return 0;
}

static void reply_unpack_err(struct srv_call *c)
{
	char msg[256];

	if (c->unpack_err != SRV_EMALFORMED) {
		srv_call_reply_err(c, c->unpack_err);
		return;
	}
	snprintf(msg, sizeof(msg), "bollard: malformed request: cannot decode %s",
	         c->reg->m->req_desc->name);
	srv_call_reply_status(c, GRPC_STATUS_INVALID_ARGUMENT, msg);
}

/* ---------------------------------------------------------------- identity */

int srv_call_auth(struct srv_call *c)
{
	if (c->auth_state == 0) {
		int rc = node_auth_resolve(c->node, c->token, c->peer_cn, &c->auth_user,
		                           &c->auth_rev);
		c->auth_state = rc ? rc : 1;
	}
	c->req.auth_user = c->auth_user;
	c->req.auth_rev = c->auth_rev;
	return c->auth_state == 1 ? 0 : c->auth_state;
}

int srv_check_admin(struct srv_call *c, const ProtobufCMessage *msg)
{
	int rc = srv_call_auth(c);
	(void)msg;
	return rc ? rc : node_auth_check_admin(c->node, c->auth_user, c->auth_rev);
}

int srv_check_admin_raw(struct srv_call *c, const ProtobufCMessage *msg)
{
	switch (srv_check_admin(c, msg)) {
	case 0: return 0;
	case BOLLARD_EPERMISSION_DENIED: return BOLLARD_ERAW_PERMISSION_DENIED;
	case BOLLARD_EUSER_EMPTY: return BOLLARD_ERAW_USER_EMPTY;
	case BOLLARD_EUSER_NOT_FOUND: return BOLLARD_ERAW_USER_NOT_FOUND;
	case BOLLARD_EINVALID_AUTH_TOKEN: return BOLLARD_ERAW_INVALID_AUTH_TOKEN;
	default: return BOLLARD_EINTERNAL;
	}
}

/* etcd resolves the caller (and refuses an unknown token) for every call
 * but these, which never ask who it is. */
static int op_ignores_identity(enum node_op op)
{
	return op == NODE_STATUS || op == NODE_MEMBER_LIST || op == NODE_MOVE_LEADER ||
	       op == NODE_LEASE_KEEPALIVE || op == NODE_LEASE_TTL || op == NODE_LEASE_LEASES;
}

/* ------------------------------------------------------------- to the node */

void srv_call_submit(struct srv_call *c, enum node_op op, int read)
{
	int err;
	if (!op_ignores_identity(op) && (err = srv_call_auth(c)) != 0) {
		srv_call_reply_err(c, err);
		return;
	}
	c->req.data = c;
	c->req.op = op;
	c->req.msg = c->msg;
	c->req.cb = srv_call_node_done;
	c->req.deadline_ns = c->tp->deadline_ns(c);
	if (read)
		node_read(c->node, &c->req);
	else
		c->tp->submit(c);
}

/* Check, then the method's start or the node. */
static void proceed(struct srv_call *c)
{
	const struct srv_method *m = c->reg->m;
	int err;

	if (m->check && (err = m->check(c, c->msg)) != 0) {
		srv_call_reply_err(c, err);
		return;
	}
	if (m->start)
		m->start(c);
	else
		srv_call_submit(c, m->op, 0);
}

static void token_wait_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct srv_call *c = req->data;
	(void)err;
	(void)len;
	free(resp);
	c->auth_state = 0; /* resolve again: the login may be known now */
	proceed(c);
}

uint64_t srv_token_login_index(const char *token)
{
	const char *dot = token ? strrchr(token, '.') : NULL;
	char *end;
	unsigned long long idx;

	if (dot == NULL || dot[1] == 0)
		return 0;
	idx = strtoull(dot + 1, &end, 10);
	return *end == 0 ? idx : 0;
}

/* A login's token ("<16 letters>.<raft index>") is registered on each member
 * when that member applies the login's entry. etcd waits for that before it
 * judges a token it does not know; so do we, once per call: 1 when waiting
 * (the call goes on in token_wait_done), 0 to go on now. */
static int wait_for_token(struct srv_call *c)
{
	uint64_t idx = srv_token_login_index(c->token);

	if (idx == 0 || c->auth_waited || srv_call_auth(c) != BOLLARD_EINVALID_AUTH_TOKEN)
		return 0;
	c->auth_waited = 1;
	bollard__read_index_response__init(&c->auth_wait);
	c->auth_wait.index = idx;
	c->req.data = c;
	c->req.op = NODE_AUTH_WAIT;
	c->req.msg = &c->auth_wait.base;
	c->req.cb = token_wait_done;
	node_submit(c->node, &c->req);
	return 1;
}

static void join_wait_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct srv_call *c = req->data;
	(void)len;
	free(resp);
	if (err != 0)
		srv_call_reply_err(c, err);
	else
		srv_call_start(c);
}

/* A member joining an existing cluster answers clients only once it knows
 * its member ID (node.h NODE_JOIN_WAIT), as etcd serves clients only once
 * it has joined: 1 when waiting (the call goes on in join_wait_done). */
static int wait_for_join(struct srv_call *c)
{
	if (c->join_waited || c->reg->m->peer_only || !node_joining(c->node))
		return 0;
	c->join_waited = 1;
	c->req.data = c;
	c->req.op = NODE_JOIN_WAIT;
	c->req.msg = NULL;
	c->req.cb = join_wait_done;
	node_submit(c->node, &c->req);
	return 1;
}

/* etcd 3.4's interceptors (isRPCSupportedForLearner): a learner serves its
 * clients Status and serializable Range only, no other call and no stream.
 * Member-to-member calls are not its clients'. */
static bool learner_may_serve(const struct srv_call *c)
{
	const struct srv_method *m = c->reg->m;

	if (m->peer_only || !node_learner_known(c->node))
		return true;
	if (m->bidi) /* no request decoded yet, and no stream is a learner's */
		return false;
	if (m->req_desc == &etcdserverpb__status_request__descriptor)
		return true;
	return m->req_desc == &etcdserverpb__range_request__descriptor &&
	       ((const Etcdserverpb__RangeRequest *)c->msg)->serializable;
}

void srv_call_start(struct srv_call *c)
{
	const struct srv_method *m = c->reg->m;

	if (wait_for_join(c))
		return;
	if (m->bidi) { /* requests come one by one through the transport */
		if (!learner_may_serve(c))
			srv_call_reply_err(c, BOLLARD_ENOT_SUPPORTED_FOR_LEARNER);
		else
			m->start(c);
		return;
	}
	if (c->unpack_err) {
		reply_unpack_err(c);
		return;
	}
	/* etcd's unary and stream interceptors, after the request is decoded
	 * and before its handler (bidirectional streams ask the node: Watch in
	 * node/watch.c, LeaseKeepAlive with NODE_LEADER_HOLD, lease.c) */
	if (!learner_may_serve(c)) {
		srv_call_reply_err(c, BOLLARD_ENOT_SUPPORTED_FOR_LEARNER);
		return;
	}
	if (c->require_leader && !node_leader_known(c->node)) {
		srv_call_reply_err(c, BOLLARD_ENO_LEADER);
		return;
	}
	if (wait_for_token(c))
		return;
	proceed(c);
}
