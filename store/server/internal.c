/* internal.c - bollard.Internal, the members' own service, and its client
 * side: the node's forwarder (node.h struct node_forwarder) that sends a
 * follower's writes (Propose, a bollard.Batch) and read rounds (ReadIndex)
 * to the leader. Its calls complete on the server's completion queue (one
 * polling thread for both sides); one channel per target.
 *
 * Where members talk: over the peer port, as etcd keeps member traffic there;
 * the client port never serves bollard.Internal (its requests state their
 * user and auth revision, which the leader trusts). The server takes such
 * connections from the node's hook (srv_peer_grpc_conn); the node's peer
 * transport hands them over. With http peer URLs the forwarder dials the
 * leader's raft address with gRPC's own TCP (one channel per address, kept
 * for the process's life). With peer TLS (https peer URLs), inside the
 * peer TLS: it dials with node_peer_dial and makes a channel over that
 * socket (calls wait while it dials; a channel whose connection ended is
 * dialed again). */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "core/errors.h"
#include "raftcmd.pb-c.h"
#include "rpc.pb-c.h"
#include "server/server_int.h"
#include "wire/grpc_unary.h"

#define FWD_DEADLINE_MS 5000
#define FWD_MAX_CHANNELS 16

/* peer_only: served only to connections from the peer port. */
#define INTERNAL(path, desc, op, via_raft, armed) {path, desc, op, via_raft, armed, NULL, NULL, 0, 1}
const struct srv_method srv_internal_methods[] = {
	INTERNAL("/bollard.Internal/Propose", &bollard__batch__descriptor, NODE_PROPOSE_BATCH, 1, 8),
	INTERNAL("/bollard.Internal/ReadIndex", &bollard__read_index_request__descriptor,
	         NODE_READ_INDEX, 0, 8),
	/* A follower's lease requests, for this member's lessor if it leads. */
	INTERNAL("/bollard.Internal/LeaseKeepAlive", &etcdserverpb__lease_keep_alive_request__descriptor,
	         NODE_INT_LEASE_KEEPALIVE, 0, 4),
	INTERNAL("/bollard.Internal/LeaseTimeToLive",
	         &etcdserverpb__lease_time_to_live_request__descriptor, NODE_INT_LEASE_TTL, 0, 4),
	INTERNAL("/bollard.Internal/LeaseLeases", &etcdserverpb__lease_leases_request__descriptor,
	         NODE_INT_LEASE_LEASES, 0, 2),
	/* A follower's membership calls; a member asking whether it was removed. */
	INTERNAL("/bollard.Internal/Member", &bollard__member_call__descriptor, NODE_INT_MEMBER, 0, 1),
	INTERNAL("/bollard.Internal/MemberStatus", &bollard__member_status_request__descriptor,
	         NODE_MEMBER_STATUS, 0, 2),
	{NULL, NULL, NODE_OP_COUNT_, 0, 0, NULL, NULL, 0, 0},
};
#undef INTERNAL

void srv_peer_grpc_conn(void *data, int fd)
{
	struct etcd_server *s = data;
	grpc_server_credentials *cr = grpc_insecure_server_credentials_create();
	/* from node/peer_tcp.c, or node/peer.c once TLS ended: plaintext HTTP/2 */
	grpc_server_add_channel_from_fd(s->server, fd, cr);
	grpc_server_credentials_release(cr);
}

bool srv_call_from_peer_port(struct srv_call *c)
{
	char *peer = grpc_call_get_peer(c->call);
	bool yes = peer && strncmp(peer, "fd:", 3) == 0;
	gpr_free(peer);
	return yes;
}

struct fwd_rpc;

struct fwd_chan {
	struct srv_fwd *f;
	char *target;
	grpc_channel *ch;         /* NULL while dialing (peer TLS) */
	unsigned gen;             /* bumped with each new ch */
	bool dialing;
	struct fwd_rpc *waiting;  /* calls waiting for the dial */
};

struct srv_fwd {
	struct node_forwarder ops;
	struct node *node;
	bool peer;                /* peer TLS: dial members' peer ports */
	grpc_completion_queue *cq; /* the server's: its CQ thread runs our tags */
	pthread_mutex_t mu;
	struct fwd_chan chans[FWD_MAX_CHANNELS];
	size_t n_chans;
	struct fwd_rpc *live;
	int stopping;
};

struct fwd_rpc {
	struct srv_tag tag;
	struct srv_fwd *f;
	struct fwd_rpc *prev, *next;
	void *ctx;
	char path[64];
	struct fwd_chan *chan;    /* the channel it went out on: chan->ch of */
	unsigned gen;             /* generation gen */
	gpr_timespec deadline;
	grpc_byte_buffer *send;
	struct grpc_wire_unary u; /* zeroed until started */
};

/* The error of a failed call, as node.h's struct node_forwarder wants it:
 * the target's own answer (etcd's text, mapped back to its code), or what
 * the transport says about whether the request may have been delivered. */
static int call_error(struct fwd_rpc *r, int ok)
{
	char *details;
	int err = -ECONNRESET;
	if (!ok)
		return -ECONNRESET;
	if (r->u.status == GRPC_STATUS_DEADLINE_EXCEEDED)
		return BOLLARD_ETIMEOUT;
	details = grpc_slice_to_c_string(r->u.details);
	for (int e = BOLLARD_ERR_BASE_ + 1; e < BOLLARD_ERR_END_; e++) {
		if (strcmp(details, bollard_strerror(e)) == 0) {
			err = e;
			goto out;
		}
	}
	/* No connection could be made: gRPC never sent the request. */
	if (r->u.status == GRPC_STATUS_UNAVAILABLE &&
	    (strstr(details, "ailed to connect") != NULL || strstr(details, "onnection refused") != NULL))
		err = -ECONNREFUSED;
out:
	gpr_free(details);
	return err;
}

static void rpc_free(struct fwd_rpc *r);

static void rpc_done(struct srv_tag *t, int ok)
{
	struct fwd_rpc *r = SRV_CONTAINER_OF(t, struct fwd_rpc, tag);
	struct srv_fwd *f = r->f;
	uint8_t *buf = NULL;
	size_t len = 0;
	int err = 0;

	if (!ok || r->u.status != GRPC_STATUS_OK || r->u.recv == NULL) {
		err = call_error(r, ok);
	} else {
		grpc_byte_buffer_reader rd;
		if (grpc_byte_buffer_reader_init(&rd, r->u.recv)) {
			grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
			len = GRPC_SLICE_LENGTH(s);
			if ((buf = malloc(len ? len : 1)) != NULL)
				memcpy(buf, GRPC_SLICE_START_PTR(s), len);
			else
				err = -ENOMEM;
			grpc_slice_unref(s);
			grpc_byte_buffer_reader_destroy(&rd);
		} else {
			err = BOLLARD_EINTERNAL;
		}
	}
	pthread_mutex_lock(&f->mu);
	if (r->prev) r->prev->next = r->next; else f->live = r->next;
	if (r->next) r->next->prev = r->prev;
	if (f->peer && (err == -ECONNRESET || err == -ECONNREFUSED)) {
		/* a channel over one connection: once it failed, dial again */
		if (r->chan->ch && r->chan->gen == r->gen) {
			grpc_channel_destroy(r->chan->ch);
			r->chan->ch = NULL;
		}
	}
	pthread_mutex_unlock(&f->mu);
	node_forward_done(f->node, r->ctx, err, buf, len);
	rpc_free(r);
}

static void rpc_free(struct fwd_rpc *r)
{
	if (r->send) grpc_byte_buffer_destroy(r->send);
	grpc_wire_unary_release(&r->u);
	free(r);
}

/* A call that never left: the node may send it again. */
static void rpc_never_sent(struct srv_fwd *f, struct fwd_rpc *r)
{
	void *ctx = r->ctx;
	rpc_free(r);
	node_forward_done(f->node, ctx, -ECONNREFUSED, NULL, 0);
}

/* Under f->mu: the call goes out on c's channel. */
static void rpc_start_locked(struct srv_fwd *f, struct fwd_rpc *r, struct fwd_chan *c)
{
	r->chan = c;
	r->gen = c->gen;
	r->next = f->live;
	r->prev = NULL;
	if (f->live) f->live->prev = r;
	f->live = r;
	/* Under f->mu: srv_fwd_stop cancels every live call. */
	if (grpc_wire_unary_start(&r->u, c->ch, f->cq, r->path, r->send, r->deadline,
	                          &r->tag) != GRPC_CALL_OK) {
		/* the completion never comes: finish it here (unlocks around) */
		r->u.status = GRPC_STATUS_INTERNAL;
		pthread_mutex_unlock(&f->mu);
		rpc_done(&r->tag, 0);
		pthread_mutex_lock(&f->mu);
	}
}

static struct fwd_chan *chan_find(struct srv_fwd *f, const char *target)
{
	for (size_t i = 0; i < f->n_chans; i++)
		if (strcmp(f->chans[i].target, target) == 0)
			return &f->chans[i];
	if (f->n_chans == FWD_MAX_CHANNELS)
		return NULL;
	struct fwd_chan *c = &f->chans[f->n_chans];
	if (!(c->target = strdup(target)))
		return NULL;
	c->f = f;
	f->n_chans++;
	return c;
}

/* The dial of a member's peer port ended (loop thread). */
static void peer_dialed(void *data, int fd, const char *why)
{
	struct fwd_chan *c = data;
	struct srv_fwd *f = c->f;
	struct fwd_rpc *w, *failed = NULL;

	pthread_mutex_lock(&f->mu);
	c->dialing = false;
	w = c->waiting;
	c->waiting = NULL;
	if (fd >= 0 && !f->stopping) {
		grpc_channel_credentials *cr = grpc_insecure_credentials_create();
		c->ch = grpc_channel_create_from_fd(c->target, fd, cr, NULL);
		c->gen++;
		grpc_channel_credentials_release(cr);
		while (w) {
			struct fwd_rpc *next = w->next;
			rpc_start_locked(f, w, c);
			w = next;
		}
	} else {
		if (fd >= 0)
			close(fd);
		failed = w;
	}
	pthread_mutex_unlock(&f->mu);
	(void)why; /* node/peer.c logged it */
	while (failed) {
		struct fwd_rpc *next = failed->next;
		rpc_never_sent(f, failed);
		failed = next;
	}
}

/* Under f->mu: the channel for target, or NULL when r was queued behind a
 * dial (peer TLS) or cannot be sent (*never set). */
static struct fwd_chan *channel_for_locked(struct srv_fwd *f, const char *target,
                                           struct fwd_rpc *r, bool *never)
{
	struct fwd_chan *c = chan_find(f, target);

	*never = c == NULL;
	if (!c)
		return NULL;
	if (!f->peer) {
		if (!c->ch) {
			grpc_channel_credentials *cr = grpc_insecure_credentials_create();
			c->ch = grpc_channel_create(target, cr, NULL);
			grpc_channel_credentials_release(cr);
		}
		return c;
	}
	/* (a channel from an fd has no connectivity state: a failed call
	 * drops it, see rpc_done) */
	if (c->ch)
		return c;
	r->next = c->waiting;
	c->waiting = r;
	if (!c->dialing) {
		c->dialing = true;
		if (node_peer_dial(f->node, target, peer_dialed, c) != 0) {
			c->dialing = false;
			c->waiting = r->next;
			*never = true;
		}
	}
	return NULL;
}

static void fwd_call(void *data, const char *url, const char *method, uint8_t *req, size_t len,
                     uint64_t timeout_ms, void *ctx)
{
	struct srv_fwd *f = data;
	struct fwd_rpc *r = calloc(1, sizeof(*r));
	struct fwd_chan *ch;
	bool never = true;
	const char *target = strstr(url, "://") ? strstr(url, "://") + 3 : url;

	if (r == NULL) {
		free(req);
		node_forward_done(f->node, ctx, -ECONNREFUSED, NULL, 0); /* never sent */
		return;
	}
	r->f = f;
	r->ctx = ctx;
	r->tag.fn = rpc_done;
	/* from now, also for a call that waits for its channel's dial */
	r->deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
	                           gpr_time_from_millis(timeout_ms ? (int64_t)timeout_ms
	                                                           : FWD_DEADLINE_MS,
	                                                GPR_TIMESPAN));
	snprintf(r->path, sizeof(r->path), "/bollard.Internal/%s", method);
	grpc_slice s = grpc_slice_from_copied_buffer((const char *)req, len);
	free(req);
	r->send = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);

	pthread_mutex_lock(&f->mu);
	ch = f->stopping ? NULL : channel_for_locked(f, target, r, &never);
	if (ch)
		rpc_start_locked(f, r, ch);
	pthread_mutex_unlock(&f->mu);
	if (!ch && never)
		rpc_never_sent(f, r);
}

struct srv_fwd *srv_fwd_start(struct node *node, grpc_completion_queue *cq)
{
	struct srv_fwd *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return NULL;
	f->node = node;
	f->peer = node_peer_tls(node);
	f->ops.data = f;
	f->ops.call = fwd_call;
	pthread_mutex_init(&f->mu, NULL);
	f->cq = cq;
	node_set_forwarder(node, &f->ops);
	return f;
}

static void srv_fwd_stop(struct srv_fwd *f)
{
	if (f == NULL)
		return;
	pthread_mutex_lock(&f->mu);
	f->stopping = 1;
	for (struct fwd_rpc *r = f->live; r != NULL; r = r->next)
		grpc_call_cancel(r->u.call, NULL);
	pthread_mutex_unlock(&f->mu);
}

void srv_fwd_destroy(struct srv_fwd *f)
{
	if (f == NULL)
		return;
	srv_fwd_stop(f);
	for (;;) { /* cancelled calls complete promptly */
		pthread_mutex_lock(&f->mu);
		int busy = f->live != NULL;
		pthread_mutex_unlock(&f->mu);
		if (!busy)
			break;
		gpr_sleep_until(gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
		                             gpr_time_from_millis(5, GPR_TIMESPAN)));
	}
	for (size_t i = 0; i < f->n_chans; i++) {
		while (f->chans[i].waiting) { /* a dial the closed node never answered */
			struct fwd_rpc *r = f->chans[i].waiting;
			f->chans[i].waiting = r->next;
			rpc_never_sent(f, r);
		}
		if (f->chans[i].ch)
			grpc_channel_destroy(f->chans[i].ch);
		free(f->chans[i].target);
	}
	pthread_mutex_destroy(&f->mu);
	free(f);
}
