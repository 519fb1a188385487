/* lease-keepalive: each client grants a lease (LeaseGrant, --lease-ttl),
 * opens its own LeaseKeepAlive stream and sends keep-alives one at a time,
 * timing each request->response round trip (series 0). --rate is not
 * applied here. */
#include "bench.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/support/alloc.h>

#include "rpc.pb-c.h"

#define CONTAINER(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

struct lclient {
	struct bb_tag grant_tag, send_tag, recv_tag, status_tag;
	struct bb_rpc grant;
	struct bb_stream st;
	int64_t id;
	uint64_t t0, seq;
	int idx, waiting;          /* completions (send, recv) still due */
	bool done, recv_ok;
};

struct lworker {
	struct lclient *c;
	int n;
};

static void client_finished(struct bb_worker *w, struct lclient *c)
{
	if (c->done)
		return;
	c->done = true;
	if (c->st.call)
		grpc_call_cancel(c->st.call, NULL);
	bb_client_done(w->b);
}

static void keepalive_next(struct bb_worker *w, struct lclient *c)
{
	Etcdserverpb__LeaseKeepAliveRequest r = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;

	if (!bb_claim(w->b, &c->seq)) {
		client_finished(w, c);
		return;
	}
	r.id = c->id;
	c->t0 = bb_now_ns();
	c->waiting = 2;
	c->recv_ok = false;
	if (bb_stream_send(w, &c->st, grpc_wire_pack(&r.base), &c->send_tag) != 0) {
		bb_record_error(w, 0, BB_NSTATUS, "lease: could not send a keep-alive");
		client_finished(w, c);
		return;
	}
	if (bb_stream_recv(w, &c->st, &c->recv_tag) != 0)
		c->waiting = 1;   /* recorded as a failure when the send completes */
}

static void keepalive_step(struct bb_worker *w, struct lclient *c)
{
	if (--c->waiting > 0)
		return;
	if (c->recv_ok) {
		bb_record(w, 0, c->t0, GRPC_STATUS_OK, grpc_empty_slice());
		keepalive_next(w, c);
	} else {
		/* The stream ended: its status says why (on_status records it). */
		client_finished(w, c);
	}
}

static void on_send(struct bb_worker *w, struct bb_tag *t, bool ok)
{
	(void)ok;
	keepalive_step(w, CONTAINER(t, struct lclient, send_tag));
}

static void on_recv(struct bb_worker *w, struct bb_tag *t, bool ok)
{
	struct lclient *c = CONTAINER(t, struct lclient, recv_tag);
	Etcdserverpb__LeaseKeepAliveResponse *r = NULL;

	if (ok && c->st.recv)
		r = (Etcdserverpb__LeaseKeepAliveResponse *)grpc_wire_unpack(
		    c->st.recv, &etcdserverpb__lease_keep_alive_response__descriptor);
	if (r && r->ttl > 0) {
		c->recv_ok = true;
	} else if (r) {
		bb_record_error(w, 0, BB_NSTATUS, "lease: keep-alive answered TTL <= 0 (lease expired)");
		c->recv_ok = false;
	}
	if (r)
		protobuf_c_message_free_unpacked(&r->base, NULL);
	keepalive_step(w, c);
}

static void on_status(struct bb_worker *w, struct bb_tag *t, bool ok)
{
	struct lclient *c = CONTAINER(t, struct lclient, status_tag);

	(void)ok;
	c->st.status_done = true;
	if (!c->done && !w->shut) {
		char *d = grpc_slice_to_c_string(c->st.details), text[256];
		snprintf(text, sizeof(text), "lease stream ended: status %d: %s", (int)c->st.status, d);
		gpr_free(d);
		bb_record_error(w, 0, (int)c->st.status, text);
	}
}

static void on_granted(struct bb_worker *w, struct bb_tag *t, bool ok)
{
	struct lclient *c = CONTAINER(t, struct lclient, grant_tag);
	grpc_status_code st = ok ? c->grant.u.status : GRPC_STATUS_UNKNOWN;
	Etcdserverpb__LeaseGrantResponse *r = NULL;

	if (st == GRPC_STATUS_OK)
		r = (Etcdserverpb__LeaseGrantResponse *)grpc_wire_unpack(
		    c->grant.u.recv, &etcdserverpb__lease_grant_response__descriptor);
	if (!r || r->id == 0) {
		if (st == GRPC_STATUS_OK)
			bb_record_error(w, 0, BB_NSTATUS, "lease: bad LeaseGrant response");
		else
			bb_record(w, 0, bb_now_ns(), st, c->grant.u.details);
		bb_rpc_finish(&c->grant);
		if (r)
			protobuf_c_message_free_unpacked(&r->base, NULL);
		client_finished(w, c);
		return;
	}
	c->id = r->id;
	protobuf_c_message_free_unpacked(&r->base, NULL);
	bb_rpc_finish(&c->grant);
	if (bb_stream_open(w, &c->st, bb_channel(w->b, c->idx), "/etcdserverpb.Lease/LeaseKeepAlive",
	                   &c->status_tag) != 0) {
		bb_record_error(w, 0, BB_NSTATUS, "lease: could not open a stream");
		client_finished(w, c);
		return;
	}
	keepalive_next(w, c);
}

static void lease_go(struct bb_worker *w)
{
	struct bench *b = w->b;
	struct lworker *lw = calloc(1, sizeof(*lw));

	w->wl = lw;
	for (int i = w->id; i < b->n_clients; i += b->n_w)
		lw->n++;
	lw->c = calloc((size_t)lw->n, sizeof(*lw->c));
	for (int k = 0; k < lw->n; k++) {
		struct lclient *c = &lw->c[k];
		Etcdserverpb__LeaseGrantRequest r = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;

		c->idx = w->id + k * b->n_w;
		c->grant_tag.done = on_granted;
		c->send_tag.done = on_send;
		c->recv_tag.done = on_recv;
		c->status_tag.done = on_status;
		r.ttl = b->o->lease_ttl;
		if (bb_rpc_start(w, &c->grant, bb_channel(b, c->idx), "/etcdserverpb.Lease/LeaseGrant",
		                 grpc_wire_pack(&r.base), &c->grant_tag) != 0) {
			bb_record_error(w, 0, BB_NSTATUS, "lease: could not start LeaseGrant");
			bb_rpc_finish(&c->grant);
			client_finished(w, c);
		}
	}
}

static void lease_shutdown(struct bb_worker *w)
{
	struct lworker *lw = w->wl;

	for (int k = 0; lw && k < lw->n; k++)
		if (lw->c[k].st.call)
			grpc_call_cancel(lw->c[k].st.call, NULL);
}

static int lease_setup(struct bench *b)
{
	b->n_clients = b->o->clients;
	return 0;
}

static void lease_teardown(struct bench *b)
{
	for (int i = 0; i < b->n_w; i++) {
		struct lworker *lw = b->w[i].wl;
		for (int k = 0; lw && k < lw->n; k++)
			bb_stream_release(&lw->c[k].st);
		if (lw)
			free(lw->c);
		free(lw);
		b->w[i].wl = NULL;
	}
}

const struct bb_workload_ops bb_lease_ops = {
	.series_name = {"keepalive", NULL},
	.setup = lease_setup,
	.worker_go = lease_go,
	.worker_shutdown = lease_shutdown,
	.run = bb_unary_run,
	.teardown = lease_teardown,
};
