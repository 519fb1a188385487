/* lease.c - etcd's Lease service: LeaseGrant and LeaseRevoke go through raft,
 * LeaseTimeToLive and LeaseLeases are answered by the node's lessor, and
 * LeaseKeepAlive is a bidirectional stream (srv_bidi_start) whose every request
 * becomes one keep-alive on the node's loop. As etcd (v3rpc/lease.go), a
 * keep-alive of an unknown or expired lease answers TTL 0 instead of failing
 * the stream; other errors end the stream with etcd's status. A client that
 * half-closes still gets the answers to what it sent before (python-etcd3's
 * Lease.refresh sends one request and half-closes): the stream ends once
 * the last keep-alive in flight is answered. A stream whose client requires
 * a leader (clientv3's lessor does) is held on the node (NODE_LEADER_HOLD)
 * and ended with "etcdserver: no leader" once its member has known no
 * leader for 3 election timeouts, as etcd's stream interceptor does, so
 * that the client moves to another member before its leases expire. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/errors.h"
#include "rpc.pb-c.h"
#include "server/server_int.h"

/* Per-stream state (c->user). */
struct ka_stream {
	pthread_mutex_t mu;
	int inflight; /* keep-alives at the node, and the hold while it is there */
	int ended;    /* no more requests will arrive */
	struct srv_call *c;
	bool held;    /* a NODE_LEADER_HOLD went: a release must follow */
	struct node_leader_stream lead;
	struct node_leader_req hold; /* NODE_LEADER_HOLD, then NODE_LEADER_RELEASE */
};

static void ka_free(struct srv_call *c, struct ka_stream *ks)
{
	c->user = NULL;
	pthread_mutex_destroy(&ks->mu);
	free(ks);
	srv_stream_finish(c, 0); /* harmless on a dead or finished call */
}

static void release_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct ka_stream *ks = req->data;
	struct srv_call *c = ks->c;
	(void)err;
	(void)len;
	free(resp);
	ka_free(c, ks); /* the node will not end it any more */
	srv_call_unref(c); /* the hold's */
}

/* Count one keep-alive in (+1) or out (-1), or the end of requests (0);
 * the last of those ends the stream and frees the state (after the
 * node released a held stream). */
static void ka_account(struct srv_call *c, int delta)
{
	struct ka_stream *ks = c->user;
	int last;
	pthread_mutex_lock(&ks->mu);
	if (delta == 0)
		ks->ended = 1;
	ks->inflight += delta;
	last = ks->ended && ks->inflight == 0;
	pthread_mutex_unlock(&ks->mu);
	if (!last)
		return;
	if (!ks->held) {
		ka_free(c, ks);
		return;
	}
	ks->hold.req.op = NODE_LEADER_RELEASE;
	ks->hold.req.cb = release_done;
	node_submit(c->node, &ks->hold.req);
}

/* The node's end of a held stream (loop thread): no leader for too long. */
static void ka_no_leader(struct node_leader_stream *s, int err)
{
	struct ka_stream *ks = SRV_CONTAINER_OF(s, struct ka_stream, lead);
	srv_stream_finish(ks->c, err);
}

static void hold_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct ka_stream *ks = req->data;
	struct srv_call *c = ks->c;
	(void)len;
	free(resp);
	if (err != 0)
		srv_stream_finish(c, err); /* no leader at the start */
	ka_account(c, -1);
}

/* One keep-alive request travelling to the node and back. */
struct keepalive {
	struct node_req req;
	struct srv_call *c;
	Etcdserverpb__LeaseKeepAliveRequest *msg;
};

static void keepalive_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct keepalive *k = (struct keepalive *)req;
	struct srv_call *c = k->c;

	if (err == BOLLARD_ELEASE_NOT_FOUND) {
		Etcdserverpb__LeaseKeepAliveResponse r = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
		Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
		free(resp);
		h.cluster_id = node_cluster_id(c->node);
		h.member_id = node_member_id(c->node);
		r.header = &h;
		r.id = k->msg->id;
		r.ttl = 0;
		len = etcdserverpb__lease_keep_alive_response__get_packed_size(&r);
		resp = malloc(len ? len : 1);
		if (resp != NULL) {
			etcdserverpb__lease_keep_alive_response__pack(&r, resp);
			err = 0;
		} else {
			err = -ENOMEM;
		}
	}
	if (err != 0) {
		free(resp);
		srv_stream_finish(c, err);
	} else {
		srv_stream_send(c, resp, len, 0);
	}
	protobuf_c_message_free_unpacked(&k->msg->base, NULL);
	free(k);
	ka_account(c, -1);
	srv_call_unref(c);
}

static void keepalive_msg(struct srv_call *c, ProtobufCMessage *msg)
{
	struct keepalive *k = calloc(1, sizeof(*k));
	if (k == NULL) {
		protobuf_c_message_free_unpacked(msg, NULL);
		srv_stream_finish(c, -ENOMEM);
		return;
	}
	k->c = c;
	k->msg = (Etcdserverpb__LeaseKeepAliveRequest *)msg;
	k->req.data = k;
	k->req.op = NODE_LEASE_KEEPALIVE;
	k->req.msg = msg;
	k->req.cb = keepalive_done;
	srv_call_ref(c);
	ka_account(c, +1);
	node_submit(c->node, &k->req);
}

static void keepalive_end(struct srv_call *c, int cancelled)
{
	(void)cancelled;
	ka_account(c, 0);
}

static const struct srv_bidi_ops keepalive_ops = {keepalive_msg, keepalive_end};

static void start_keepalive(struct srv_call *c)
{
	struct ka_stream *ks = calloc(1, sizeof(*ks));
	if (ks == NULL) {
		srv_call_reply_err(c, -ENOMEM);
		return;
	}
	pthread_mutex_init(&ks->mu, NULL);
	ks->c = c;
	c->user = ks;
	/* held across the start: once open, a client that leaves (after a
	 * joining member's wait, on another thread) can end the call before
	 * srv_bidi_start returns */
	srv_call_ref(c);
	/* the hold counts as in flight from here, so the stream's end waits
	 * for it and its release follows it */
	ks->held = c->require_leader;
	ks->inflight = ks->held;
	if (srv_bidi_start(c, &keepalive_ops) != 0) {
		if (c->user == ks) {
			c->user = NULL; /* answered with an error; no callback will come */
			pthread_mutex_destroy(&ks->mu);
			free(ks);
		}
	} else if (ks->held) {
		srv_call_ref(c); /* until the release is done */
		ks->lead.end = ka_no_leader;
		ks->hold.stream = &ks->lead;
		ks->hold.req.data = ks;
		ks->hold.req.op = NODE_LEADER_HOLD;
		ks->hold.req.cb = hold_done;
		node_submit(c->node, &ks->hold.req);
	}
	srv_call_unref(c);
}

const struct srv_method srv_lease_methods[] = {
	{"/etcdserverpb.Lease/LeaseGrant", &etcdserverpb__lease_grant_request__descriptor,
	 NODE_LEASE_GRANT, 1, 4, NULL, NULL, 0},
	{"/etcdserverpb.Lease/LeaseRevoke", &etcdserverpb__lease_revoke_request__descriptor,
	 NODE_LEASE_REVOKE, 1, 4, NULL, NULL, 0},
	{"/etcdserverpb.Lease/LeaseKeepAlive", &etcdserverpb__lease_keep_alive_request__descriptor,
	 NODE_LEASE_KEEPALIVE, 0, 4, NULL, start_keepalive, 1},
	{"/etcdserverpb.Lease/LeaseTimeToLive", &etcdserverpb__lease_time_to_live_request__descriptor,
	 NODE_LEASE_TTL, 0, 4, NULL, NULL, 0},
	{"/etcdserverpb.Lease/LeaseLeases", &etcdserverpb__lease_leases_request__descriptor,
	 NODE_LEASE_LEASES, 0, 2, NULL, NULL, 0},
	{NULL, NULL, NODE_OP_COUNT_, 0, 0, NULL, NULL, 0},
};
