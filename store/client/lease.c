/* lease.c - lease keep-alive over a LeaseKeepAlive stream of its own: a
 * refresh every ttl/3, the stream reopened on another endpoint when it
 * breaks, and the lease declared lost (-ETIMEDOUT) when no refresh succeeded
 * for a whole TTL, or gone (BOLLARD_ELEASE_NOT_FOUND) when the store answers
 * TTL 0. Loop thread only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"

#define TICK_MS 100
#define RECONNECT_MS 100

struct bc_ka {
	struct bc_live live;
	struct bc_stream s;
	uv_timer_t timer;
	struct bollard_keepalive *ka;
	bollard_keepalive_cb cb;
	int64_t id;
	uint64_t last_ok, next_send; /* uv_now() ms */
	bool stopping, stream_done, timer_closed;
	int final_err;
};

#define OF_STREAM(sp) ((struct bc_ka *)(void *)((char *)(sp) - offsetof(struct bc_ka, s)))

static uint64_t ttl_ms(const struct bc_ka *k)
{
	return k->ka->ttl > 0 ? (uint64_t)k->ka->ttl * 1000 : k->s.c->req_ms;
}

static void maybe_done(struct bc_ka *k)
{
	struct bollard_keepalive *ka = k->ka;
	bollard_keepalive_cb cb = k->cb;
	int err = k->final_err ? k->final_err : -ECANCELED;

	if (!k->stream_done || !k->timer_closed)
		return;
	bc_live_remove(k->s.c, &k->live);
	free(k);
	ka->internal_ = NULL;
	cb(ka, err);
}

static void timer_closed(uv_handle_t *h)
{
	struct bc_ka *k = h->data;

	k->timer_closed = true;
	maybe_done(k);
}

static void stop(struct bc_ka *k, int err)
{
	if (k->stopping)
		return;
	k->stopping = true;
	if (!k->final_err)
		k->final_err = err;
	uv_close((uv_handle_t *)&k->timer, timer_closed);
	bc_stream_stop(&k->s);
}

static void send_refresh(struct bc_ka *k)
{
	Etcdserverpb__LeaseKeepAliveRequest q = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
	uint64_t now = uv_now(k->s.c->loop);
	uint64_t period = ttl_ms(k) / 3;

	q.id = k->id;
	if (bc_stream_send(&k->s, grpc_wire_pack(&q.base)) == 0)
		k->next_send = now + (period > 0 ? period : 1);
}

static void on_tick(uv_timer_t *t)
{
	struct bc_ka *k = t->data;
	uint64_t now = uv_now(k->s.c->loop);

	if (now - k->last_ok > ttl_ms(k)) {
		stop(k, -ETIMEDOUT);
		return;
	}
	if (now >= k->next_send && k->s.call && !k->s.send_busy)
		send_refresh(k);
}

static void on_opened(struct bc_stream *s)
{
	send_refresh(OF_STREAM(s));
}

static void on_message(struct bc_stream *s, grpc_byte_buffer *bb)
{
	struct bc_ka *k = OF_STREAM(s);
	Etcdserverpb__LeaseKeepAliveResponse *r = (Etcdserverpb__LeaseKeepAliveResponse *)grpc_wire_unpack(
		bb, &etcdserverpb__lease_keep_alive_response__descriptor);

	if (!r) {
		stop(k, -EPROTO);
		return;
	}
	if (r->ttl <= 0) {
		stop(k, BOLLARD_ELEASE_NOT_FOUND);
	} else {
		uint64_t now = uv_now(s->c->loop);
		k->ka->ttl = r->ttl;
		k->ka->n_refreshed++;
		k->last_ok = now;
		k->next_send = now + (uint64_t)r->ttl * 1000 / 3;
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void on_ended(struct bc_stream *s, int err, grpc_status_code st)
{
	struct bc_ka *k = OF_STREAM(s);

	(void)err;
	(void)st;
	if (!k->stopping && !s->c->closing) {
		bc_stream_open(s, RECONNECT_MS);
		return;
	}
	k->stream_done = true;
	maybe_done(k);
}

static const struct bc_stream_ops ka_ops = {
	.opened = on_opened,
	.message = on_message,
	.ended = on_ended,
};

static void cancel_live(struct bc_live *l)
{
	stop((struct bc_ka *)l, -ECANCELED);
}

int bollard_keepalive_start(struct bollard_client *c, struct bollard_keepalive *ka, int64_t id,
                            bollard_keepalive_cb cb)
{
	struct bc_ka *k;

	if (!c || !ka || !cb || !c->loop || id <= 0)
		return -EINVAL;
	if (c->closing)
		return -ECANCELED;
	if (c->emb)
		return bc_emb_keepalive_start(c, ka, id, cb);
	if (!(k = calloc(1, sizeof(*k))))
		return -ENOMEM;
	k->ka = ka;
	k->cb = cb;
	k->id = id;
	ka->ttl = 0;
	ka->n_refreshed = 0;
	ka->internal_ = k;
	uv_timer_init(c->loop, &k->timer);
	k->timer.data = k;
	k->last_ok = uv_now(c->loop);
	uv_timer_start(&k->timer, on_tick, TICK_MS, TICK_MS);
	bc_stream_init(&k->s, c, "/etcdserverpb.Lease/LeaseKeepAlive", &ka_ops);
	bc_live_add(c, &k->live, cancel_live);
	bc_stream_open(&k->s, 0);
	return 0;
}

int bollard_keepalive_stop(struct bollard_keepalive *ka)
{
	struct bc_ka *k = ka ? ka->internal_ : NULL;

	if (k && k->live.emb)
		return bc_emb_keepalive_stop(ka);
	if (!k || k->stopping)
		return -EINVAL;
	stop(k, -ECANCELED);
	return 0;
}
