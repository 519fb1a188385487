/* unary.c - unary calls (range, put, delete, txn, lease grant/revoke,
 * status): encoding, the attempt loop with failover and clientv3's retry
 * policy, decoding into struct bollard_result, and the blocking wrappers.
 *
 * An attempt starts only on an endpoint whose channel is READY, so a request
 * that fails before that was never sent and is retried whatever it is. Once
 * sent, a failure with UNAVAILABLE is retried (on the next endpoint) only for
 * repeatable methods: range, status, lease grant, lease revoke. Put, delete
 * and txn then fail (-ECONNRESET or etcd's error): they may have been
 * applied. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/support/time.h>

#include "client_int.h"

#define BC_WAIT_SLICE_MS 200 /* longest single wait: keeps close prompt */
#define BC_RETRY_MS 50       /* pause before retrying a repeatable call */

struct bc_call {
	struct bc_live live;
	struct bollard_client *c;
	const struct bc_method *m;
	grpc_completion_queue *cq; /* c->cq, or the blocking caller's own */
	grpc_byte_buffer *payload;
	gpr_timespec deadline, dial_deadline;
	size_t ep;
	unsigned tried; /* endpoints found unreachable in a row */
	bool sent_once, cancelled;
	bool starting; /* inside bc_unary: report failures by return value */
	int err; /* last failure, reported at the deadline */

	grpc_call *call;
	grpc_byte_buffer *recv;
	grpc_metadata_array init_md, trail_md;
	grpc_status_code status;
	grpc_slice details;
	struct bc_tag tag;

	struct bollard_req *req; /* async */
	bollard_req_cb cb;
	struct bollard_result *out; /* blocking */
	int rc;
	bool done;
};

static void attempt(struct bc_call *k);
static void wait_done(struct bc_tag *t, bool ok);

static void finish(struct bc_call *k, int rc, struct bollard_result *res)
{
	k->done = true;
	k->rc = rc;
	if (k->req && !k->starting) {
		struct bollard_req *req = k->req;
		bollard_req_cb cb = k->cb;
		struct bollard_client *c = k->c;
		if (rc == 0)
			req->result = *res;
		else
			memset(&req->result, 0, sizeof(req->result));
		req->internal_ = NULL;
		grpc_byte_buffer_destroy(k->payload);
		bc_live_remove(c, &k->live); /* may not finish closing: we still count */
		free(k);
		cb(req, rc);
		return;
	}
	if (k->req) {
		if (rc == 0)
			bollard_result_free(res);
	} else if (k->out) {
		if (rc == 0)
			*k->out = *res;
		else
			memset(k->out, 0, sizeof(*k->out));
	} else if (rc == 0) {
		bollard_result_free(res);
	}
}

static void release_call(struct bc_call *k)
{
	if (k->recv)
		grpc_byte_buffer_destroy(k->recv);
	k->recv = NULL;
	grpc_slice_unref(k->details);
	k->details = grpc_empty_slice();
	grpc_metadata_array_destroy(&k->init_md);
	grpc_metadata_array_destroy(&k->trail_md);
	grpc_call_unref(k->call);
	k->call = NULL;
}

static bool past(gpr_timespec t)
{
	return gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), t) >= 0;
}

static void call_done(struct bc_tag *t, bool ok)
{
	struct bc_call *k = (struct bc_call *)((char *)t - offsetof(struct bc_call, tag));
	struct bollard_result res;
	int err;

	(void)ok;
	if (k->status == GRPC_STATUS_OK) {
		ProtobufCMessage *m = grpc_wire_unpack(k->recv, k->m->resp);
		release_call(k);
		memset(&res, 0, sizeof(res));
		err = m ? k->m->decode(m, &res) : -EPROTO;
		if (m)
			protobuf_c_message_free_unpacked(m, NULL);
		finish(k, err, &res);
		return;
	}
	err = bc_status_to_err(k->status, k->details, true);
	release_call(k);
	if (k->cancelled || k->c->closing) {
		finish(k, -ECANCELED, NULL);
		return;
	}
	/* UNAVAILABLE: a transport failure or etcd's "no leader", "leader
	 * changed", "not capable", "server stopped"... */
	if (k->status == GRPC_STATUS_UNAVAILABLE) {
		k->ep = bc_next_ep(k->c, k->ep);
		if (k->m->repeatable && !past(k->deadline)) {
			/* Back off a little: a member without a leader answers at
			 * once, and a retry must not spin. */
			k->err = err;
			k->tried = 0;
			k->tag.done = wait_done;
			bc_wait(k->c, k->cq, k->ep, BC_RETRY_MS, &k->tag);
			return;
		}
	}
	finish(k, err, NULL);
}

static void wait_done(struct bc_tag *t, bool ok)
{
	struct bc_call *k = (struct bc_call *)((char *)t - offsetof(struct bc_call, tag));

	(void)ok;
	attempt(k);
}

static unsigned ms_until(gpr_timespec t)
{
	gpr_timespec d = gpr_time_sub(t, gpr_now(GPR_CLOCK_MONOTONIC));
	int64_t ms = gpr_time_to_millis(d);

	return ms <= 0 ? 1 : ms > BC_WAIT_SLICE_MS ? BC_WAIT_SLICE_MS : (unsigned)ms;
}

static void start_call(struct bc_call *k)
{
	grpc_op ops[6];
	grpc_slice method = grpc_slice_from_static_string(k->m->path);
	grpc_call_error e;

	grpc_metadata_array_init(&k->init_md);
	grpc_metadata_array_init(&k->trail_md);
	k->details = grpc_empty_slice();
	k->call = grpc_channel_create_call(k->c->ch[k->ep], NULL, GRPC_PROPAGATE_DEFAULTS, k->cq,
	                                   method, NULL, k->deadline, NULL);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = k->payload;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &k->init_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &k->recv;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &k->trail_md;
	ops[5].data.recv_status_on_client.status = &k->status;
	ops[5].data.recv_status_on_client.status_details = &k->details;
	k->tag.done = call_done;
	e = grpc_call_start_batch(k->call, ops, 6, &k->tag, NULL);
	if (e != GRPC_CALL_OK) {
		release_call(k);
		finish(k, -EPROTO, NULL);
		return;
	}
	k->sent_once = true;
	if (k->cq == k->c->cq)
		bc_op_started(k->c);
}

/* Find a READY endpoint (rotating past unreachable ones, waiting in slices)
 * and start the call there; or give up at the deadlines. */
static void attempt(struct bc_call *k)
{
	struct bollard_client *c = k->c;

	if (k->cancelled || c->closing) {
		finish(k, -ECANCELED, NULL);
		return;
	}
	for (;;) {
		grpc_connectivity_state st = bc_ep_state(c, k->ep);
		if (st == GRPC_CHANNEL_READY) {
			start_call(k);
			return;
		}
		if (past(k->deadline) || (!k->sent_once && past(k->dial_deadline))) {
			finish(k, k->err ? k->err : k->sent_once ? -ETIMEDOUT : -ENOTCONN, NULL);
			return;
		}
		if (st == GRPC_CHANNEL_TRANSIENT_FAILURE || st == GRPC_CHANNEL_SHUTDOWN) {
			k->err = 0;
			if (++k->tried < c->n_ep) {
				k->ep = bc_next_ep(c, k->ep);
				continue;
			}
			/* Every endpoint failed: wait a little on the next one. */
			k->tried = 0;
			k->ep = bc_next_ep(c, k->ep);
			k->tag.done = wait_done;
			bc_wait(c, k->cq, k->ep, ms_until(k->dial_deadline), &k->tag);
			return;
		}
		/* IDLE or CONNECTING: wait for the change. */
		k->tag.done = wait_done;
		bc_wait(c, k->cq, k->ep, ms_until(k->sent_once ? k->deadline : k->dial_deadline),
		        &k->tag);
		return;
	}
}

static void cancel_live(struct bc_live *l)
{
	struct bc_call *k = (struct bc_call *)l;

	k->cancelled = true;
	if (k->call)
		grpc_call_cancel(k->call, NULL);
}

int bc_unary(struct bollard_client *c, const struct bc_method *m, grpc_byte_buffer *payload,
             struct bollard_req *req, bollard_req_cb cb, struct bollard_result *out)
{
	struct bc_call *k;
	int rc;

	if (out)
		memset(out, 0, sizeof(*out));
	if (req && (!c->loop || !cb || c->closing)) {
		grpc_byte_buffer_destroy(payload);
		return c->closing ? -ECANCELED : -EINVAL;
	}
	k = calloc(1, sizeof(*k));
	if (!k) {
		grpc_byte_buffer_destroy(payload);
		return -ENOMEM;
	}
	k->c = c;
	k->m = m;
	k->payload = payload;
	k->ep = atomic_load(&c->cur);
	k->deadline = bc_in_ms(c->req_ms);
	k->dial_deadline = bc_in_ms(c->dial_ms < c->req_ms ? c->dial_ms : c->req_ms);
	k->details = grpc_empty_slice();
	if (req) {
		memset(&req->result, 0, sizeof(req->result));
		req->internal_ = k;
		k->req = req;
		k->cb = cb;
		k->cq = c->cq;
		bc_live_add(c, &k->live, cancel_live);
		k->starting = true;
		attempt(k);
		k->starting = false;
		if (!k->done)
			return 0;
		/* Failed at once: no callback (the caller gets the error). */
		rc = k->rc;
		req->internal_ = NULL;
		grpc_byte_buffer_destroy(k->payload);
		bc_live_remove(c, &k->live);
		free(k);
		return rc;
	}
	/* Blocking: drive a private queue on this thread. */
	k->out = out;
	k->cq = grpc_completion_queue_create_for_next(NULL);
	attempt(k);
	while (!k->done) {
		grpc_event ev = grpc_completion_queue_next(k->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
		                                           NULL);
		if (ev.type == GRPC_OP_COMPLETE) {
			struct bc_tag *t = ev.tag;
			t->done(t, ev.success != 0);
		}
	}
	grpc_completion_queue_shutdown(k->cq);
	while (grpc_completion_queue_next(k->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(k->cq);
	grpc_byte_buffer_destroy(k->payload);
	rc = k->rc;
	free(k);
	return rc;
}
