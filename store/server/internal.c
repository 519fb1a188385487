/* internal.c - bollard.Internal, the members' own service on the client
 * port, and its client side: the node's forwarder (node.h struct
 * node_forwarder) that sends a follower's writes (Propose, a bollard.Batch)
 * and read rounds (ReadIndex) to the leader. The client has a completion
 * queue and thread of its own and one channel per target, kept for the
 * process's life. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "core/errors.h"
#include "raftcmd.pb-c.h"
#include "rpc.pb-c.h"
#include "server/server_int.h"

#define FWD_DEADLINE_MS 5000
#define FWD_MAX_CHANNELS 16

const struct srv_method srv_internal_methods[] = {
	{"/bollard.Internal/Propose", &bollard__batch__descriptor, NODE_PROPOSE_BATCH, 1, 8, NULL,
	 NULL, 0},
	{"/bollard.Internal/ReadIndex", &bollard__read_index_request__descriptor, NODE_READ_INDEX, 0,
	 8, NULL, NULL, 0},
	/* A follower's lease requests, for this member's lessor if it leads. */
	{"/bollard.Internal/LeaseKeepAlive", &etcdserverpb__lease_keep_alive_request__descriptor,
	 NODE_INT_LEASE_KEEPALIVE, 0, 4, NULL, NULL, 0},
	{"/bollard.Internal/LeaseTimeToLive", &etcdserverpb__lease_time_to_live_request__descriptor,
	 NODE_INT_LEASE_TTL, 0, 4, NULL, NULL, 0},
	{"/bollard.Internal/LeaseLeases", &etcdserverpb__lease_leases_request__descriptor,
	 NODE_INT_LEASE_LEASES, 0, 2, NULL, NULL, 0},
	{NULL, NULL, NODE_OP_COUNT_, 0, 0, NULL, NULL, 0},
};

struct srv_fwd {
	struct node_forwarder ops;
	struct node *node;
	grpc_completion_queue *cq;
	pthread_t th;
	pthread_mutex_t mu;
	struct { char *target; grpc_channel *ch; } chans[FWD_MAX_CHANNELS];
	size_t n_chans;
	struct fwd_rpc *live;
	int stopping;
};

struct fwd_rpc {
	struct srv_tag tag;
	struct srv_fwd *f;
	struct fwd_rpc *prev, *next;
	void *ctx;
	grpc_call *call;
	grpc_metadata_array md_init, md_trail;
	grpc_byte_buffer *send, *recv;
	grpc_status_code status;
	grpc_slice details;
};

static void *fwd_thread(void *arg)
{
	struct srv_fwd *f = arg;
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(f->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			return NULL;
		if (ev.type == GRPC_OP_COMPLETE) {
			struct srv_tag *t = ev.tag;
			t->fn(t, ev.success);
		}
	}
}

/* The error of a failed call, as node.h's struct node_forwarder wants it:
 * the target's own answer (etcd's text, mapped back to its code), or what
 * the transport says about whether the request may have been delivered. */
static int call_error(struct fwd_rpc *r, int ok)
{
	char *details;
	int err = -ECONNRESET;
	if (!ok)
		return -ECONNRESET;
	if (r->status == GRPC_STATUS_DEADLINE_EXCEEDED)
		return BOLLARD_ETIMEOUT;
	details = grpc_slice_to_c_string(r->details);
	for (int e = BOLLARD_ERR_BASE_ + 1; e < BOLLARD_ERR_END_; e++) {
		if (strcmp(details, bollard_strerror(e)) == 0) {
			err = e;
			goto out;
		}
	}
	/* No connection could be made: gRPC never sent the request. */
	if (r->status == GRPC_STATUS_UNAVAILABLE &&
	    (strstr(details, "ailed to connect") != NULL || strstr(details, "onnection refused") != NULL))
		err = -ECONNREFUSED;
out:
	gpr_free(details);
	return err;
}

static void rpc_done(struct srv_tag *t, int ok)
{
	struct fwd_rpc *r = SRV_CONTAINER_OF(t, struct fwd_rpc, tag);
	struct srv_fwd *f = r->f;
	uint8_t *buf = NULL;
	size_t len = 0;
	int err = 0;

	if (!ok || r->status != GRPC_STATUS_OK || r->recv == NULL) {
		err = call_error(r, ok);
	} else {
		grpc_byte_buffer_reader rd;
		if (grpc_byte_buffer_reader_init(&rd, r->recv)) {
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
	pthread_mutex_unlock(&f->mu);
	node_forward_done(f->node, r->ctx, err, buf, len);
	if (r->send) grpc_byte_buffer_destroy(r->send);
	if (r->recv) grpc_byte_buffer_destroy(r->recv);
	grpc_metadata_array_destroy(&r->md_init);
	grpc_metadata_array_destroy(&r->md_trail);
	grpc_slice_unref(r->details);
	grpc_call_unref(r->call);
	free(r);
}

static grpc_channel *channel_for(struct srv_fwd *f, const char *target)
{
	for (size_t i = 0; i < f->n_chans; i++)
		if (strcmp(f->chans[i].target, target) == 0)
			return f->chans[i].ch;
	if (f->n_chans == FWD_MAX_CHANNELS)
		return NULL;
	grpc_channel_credentials *cr = grpc_insecure_credentials_create();
	grpc_channel *ch = grpc_channel_create(target, cr, NULL);
	grpc_channel_credentials_release(cr);
	f->chans[f->n_chans].target = strdup(target);
	f->chans[f->n_chans].ch = ch;
	f->n_chans++;
	return ch;
}

static void fwd_call(void *data, const char *url, const char *method, uint8_t *req, size_t len,
                     void *ctx)
{
	struct srv_fwd *f = data;
	struct fwd_rpc *r = calloc(1, sizeof(*r));
	char path[64];
	grpc_op ops[6];
	grpc_channel *ch;
	const char *target = strstr(url, "://") ? strstr(url, "://") + 3 : url;

	pthread_mutex_lock(&f->mu);
	ch = (r && !f->stopping) ? channel_for(f, target) : NULL;
	if (ch == NULL) {
		pthread_mutex_unlock(&f->mu);
		free(r);
		free(req);
		node_forward_done(f->node, ctx, -ECONNREFUSED, NULL, 0); /* never sent */
		return;
	}
	snprintf(path, sizeof(path), "/bollard.Internal/%s", method);
	grpc_slice m = grpc_slice_from_copied_string(path);
	r->f = f;
	r->ctx = ctx;
	r->tag.fn = rpc_done;
	r->details = grpc_empty_slice();
	grpc_metadata_array_init(&r->md_init);
	grpc_metadata_array_init(&r->md_trail);
	r->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, f->cq, m, NULL,
	                                   gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
	                                                gpr_time_from_millis(FWD_DEADLINE_MS, GPR_TIMESPAN)),
	                                   NULL);
	grpc_slice_unref(m);
	grpc_slice s = grpc_slice_from_copied_buffer((const char *)req, len);
	free(req);
	r->send = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	r->next = f->live;
	if (f->live) f->live->prev = r;
	f->live = r;
	pthread_mutex_unlock(&f->mu);

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = r->send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &r->md_init;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &r->recv;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &r->md_trail;
	ops[5].data.recv_status_on_client.status = &r->status;
	ops[5].data.recv_status_on_client.status_details = &r->details;
	if (grpc_call_start_batch(r->call, ops, 6, &r->tag, NULL) != GRPC_CALL_OK) {
		r->status = GRPC_STATUS_INTERNAL;
		rpc_done(&r->tag, 0);
	}
}

struct srv_fwd *srv_fwd_start(struct node *node)
{
	struct srv_fwd *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return NULL;
	f->node = node;
	f->ops.data = f;
	f->ops.call = fwd_call;
	pthread_mutex_init(&f->mu, NULL);
	f->cq = grpc_completion_queue_create_for_next(NULL);
	if (pthread_create(&f->th, NULL, fwd_thread, f) != 0) {
		grpc_completion_queue_destroy(f->cq);
		free(f);
		return NULL;
	}
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
		grpc_call_cancel(r->call, NULL);
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
		grpc_channel_destroy(f->chans[i].ch);
		free(f->chans[i].target);
	}
	grpc_completion_queue_shutdown(f->cq);
	pthread_join(f->th, NULL);
	grpc_completion_queue_destroy(f->cq);
	pthread_mutex_destroy(&f->mu);
	free(f);
}
