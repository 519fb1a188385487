/* unary.c - unary calls (range, put, delete, txn, lease grant/revoke,
 * status): encoding, the attempt loop with failover and clientv3's retry
 * policy, decoding into struct bollard_result, and the blocking wrappers.
 *
 * An attempt starts only on an endpoint whose channel is READY, so a request
 * that fails before that was never sent and is retried whatever it is. Once
 * sent, a failure with UNAVAILABLE is retried (on the next endpoint) only for
 * repeatable methods: range, status, lease grant, lease revoke. Put, delete
 * and txn then fail (-ECONNRESET or etcd's error): they may have been
 * applied; unless a learner refused them ("rpc not supported for
 * learner"), which it does before anything else. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/support/time.h>

#include "client_int.h"
#include "wire/grpc_unary.h"

#define BC_WAIT_SLICE_MS 200 /* longest single wait: keeps close prompt */
#define BC_RETRY_MS 50       /* pause before retrying a repeatable call */

struct bc_call {
	struct bc_live live;
	struct bollard_client *c;
	const struct bc_method *m;
	grpc_completion_queue *cq; /* c->cq, or the blocking caller's own */
	grpc_byte_buffer *payload;
	/* the current attempt's copy of payload: gRPC may take the slices of
	 * a message it sends, and a retry must send them again */
	grpc_byte_buffer *sending;
	gpr_timespec deadline, dial_deadline;
	size_t ep;
	unsigned tried; /* endpoints found unreachable in a row */
	bool sent_once, cancelled;
	bool starting; /* inside bc_unary: report failures by return value */
	int err; /* last failure, reported at the deadline */

	struct grpc_wire_unary u; /* the current attempt's call */
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
	grpc_byte_buffer_destroy(k->sending);
	k->sending = NULL;
	if (k->u.status == GRPC_STATUS_OK) {
		ProtobufCMessage *m = grpc_wire_unpack(k->u.recv, k->m->resp);
		grpc_wire_unary_release(&k->u);
		err = bc_method_decode(k->m, m, &res);
		if (m)
			protobuf_c_message_free_unpacked(m, NULL);
		finish(k, err, &res);
		return;
	}
	err = bc_status_to_err(k->u.status, k->u.details, true);
	grpc_wire_unary_release(&k->u);
	if (k->cancelled || k->c->closing) {
		finish(k, -ECANCELED, NULL);
		return;
	}
	/* UNAVAILABLE: a transport failure or etcd's "no leader", "leader
	 * changed", "not capable", "server stopped"... */
	if (k->u.status == GRPC_STATUS_UNAVAILABLE) {
		k->ep = bc_next_ep(k->c, k->ep);
		if ((k->m->repeatable || err == BOLLARD_ENOT_SUPPORTED_FOR_LEARNER) &&
		    !past(k->deadline)) {
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
	k->tag.done = call_done;
	k->sending = grpc_byte_buffer_copy(k->payload);
	if (grpc_wire_unary_start(&k->u, k->c->ch[k->ep], k->cq, k->m->path, k->sending,
	                          k->deadline, &k->tag) != GRPC_CALL_OK) {
		grpc_wire_unary_release(&k->u);
		grpc_byte_buffer_destroy(k->sending);
		k->sending = NULL;
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
	if (k->u.call)
		grpc_call_cancel(k->u.call, NULL);
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
	k->u.details = grpc_empty_slice();
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
