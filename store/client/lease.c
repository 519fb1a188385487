/* lease.c - lease keep-alive. The schedule and lifecycle both back ends
 * share (struct bc_ka_core: a refresh every ttl/3, the lease declared lost
 * (-ETIMEDOUT) when no refresh succeeded for a whole TTL, or gone
 * (BOLLARD_ELEASE_NOT_FOUND) when the store answers TTL 0), and the remote
 * transport: a LeaseKeepAlive stream of its own, reopened on another
 * endpoint when it breaks. Loop thread only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"

#define TICK_MS 100
#define RECONNECT_MS 100

/* ---- shared by both back ends ---- */

static uint64_t ttl_ms(const struct bc_ka_core *k)
{
	return k->ka->ttl > 0 ? (uint64_t)k->ka->ttl * 1000 : k->c->req_ms;
}

void bc_ka_core_maybe_done(struct bc_ka_core *k)
{
	struct bollard_keepalive *ka = k->ka;
	bollard_keepalive_cb cb = k->cb;
	int err = k->final_err ? k->final_err : -ECANCELED;

	if (!k->stopping || !k->timer_closed || k->ops->busy(k))
		return;
	bc_live_remove(k->c, &k->live);
	k->ops->free(k);
	ka->internal_ = NULL;
	cb(ka, err);
}

static void timer_closed(uv_handle_t *h)
{
	struct bc_ka_core *k = h->data;

	k->timer_closed = true;
	bc_ka_core_maybe_done(k);
}

void bc_ka_core_stop(struct bc_ka_core *k, int err)
{
	if (k->stopping)
		return;
	k->stopping = true;
	if (!k->final_err)
		k->final_err = err;
	uv_close((uv_handle_t *)&k->timer, timer_closed);
	if (k->ops->stop)
		k->ops->stop(k);
}

void bc_ka_core_sent(struct bc_ka_core *k)
{
	uint64_t period = ttl_ms(k) / 3;

	k->next_send = uv_now(k->c->loop) + (period > 0 ? period : 1);
}

void bc_ka_core_answer(struct bc_ka_core *k, int64_t ttl)
{
	uint64_t now = uv_now(k->c->loop);

	if (ttl <= 0) {
		bc_ka_core_stop(k, BOLLARD_ELEASE_NOT_FOUND);
		return;
	}
	k->ka->ttl = ttl;
	k->ka->n_refreshed++;
	k->last_ok = now;
	k->next_send = now + (uint64_t)ttl * 1000 / 3;
}

static void on_tick(uv_timer_t *t)
{
	struct bc_ka_core *k = t->data;
	uint64_t now = uv_now(k->c->loop);

	if (now - k->last_ok > ttl_ms(k)) {
		bc_ka_core_stop(k, -ETIMEDOUT);
		return;
	}
	if (now >= k->next_send && k->ops->send(k))
		bc_ka_core_sent(k);
}

static void cancel_live(struct bc_live *l)
{
	bc_ka_core_stop((struct bc_ka_core *)l, -ECANCELED);
}

void bc_ka_core_start(struct bc_ka_core *k, struct bollard_client *c,
                      struct bollard_keepalive *ka, int64_t id, bollard_keepalive_cb cb,
                      const struct bc_ka_ops *ops, unsigned first_tick_ms)
{
	k->c = c;
	k->ka = ka;
	k->cb = cb;
	k->ops = ops;
	k->id = id;
	ka->ttl = 0;
	ka->n_refreshed = 0;
	ka->internal_ = k;
	uv_timer_init(c->loop, &k->timer);
	k->timer.data = k;
	k->last_ok = uv_now(c->loop);
	uv_timer_start(&k->timer, on_tick, first_tick_ms, TICK_MS);
	bc_live_add(c, &k->live, cancel_live);
}

/* ---- remote: a LeaseKeepAlive stream ---- */

struct bc_ka {
	struct bc_ka_core k; /* first: ka->internal_ */
	struct bc_stream s;
	bool stream_done;
};

#define OF_STREAM(sp) ((struct bc_ka *)(void *)((char *)(sp) - offsetof(struct bc_ka, s)))

static bool remote_send(struct bc_ka_core *kc)
{
	struct bc_ka *k = (struct bc_ka *)kc;
	Etcdserverpb__LeaseKeepAliveRequest q = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;

	if (!k->s.call || k->s.send_busy)
		return false;
	q.id = kc->id;
	return bc_stream_send(&k->s, grpc_wire_pack(&q.base)) == 0;
}

static void remote_stop(struct bc_ka_core *kc)
{
	bc_stream_stop(&((struct bc_ka *)kc)->s);
}

static bool remote_busy(struct bc_ka_core *kc)
{
	return !((struct bc_ka *)kc)->stream_done;
}

static void remote_free(struct bc_ka_core *kc)
{
	free(kc);
}

static const struct bc_ka_ops remote_ops = {remote_send, remote_stop, remote_busy, remote_free};

static void on_opened(struct bc_stream *s)
{
	struct bc_ka *k = OF_STREAM(s);

	if (remote_send(&k->k))
		bc_ka_core_sent(&k->k);
}

static void on_message(struct bc_stream *s, grpc_byte_buffer *bb)
{
	struct bc_ka *k = OF_STREAM(s);
	Etcdserverpb__LeaseKeepAliveResponse *r = (Etcdserverpb__LeaseKeepAliveResponse *)grpc_wire_unpack(
		bb, &etcdserverpb__lease_keep_alive_response__descriptor);

	if (!r) {
		bc_ka_core_stop(&k->k, -EPROTO);
		return;
	}
	bc_ka_core_answer(&k->k, r->ttl);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void on_ended(struct bc_stream *s, int err, grpc_status_code st)
{
	struct bc_ka *k = OF_STREAM(s);

	(void)err;
	(void)st;
	if (!k->k.stopping && !s->c->closing) {
		bc_stream_open(s, RECONNECT_MS);
		return;
	}
	k->stream_done = true;
	bc_ka_core_maybe_done(&k->k);
}

static const struct bc_stream_ops ka_ops = {
	.opened = on_opened,
	.message = on_message,
	.ended = on_ended,
};

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
	bc_stream_init(&k->s, c, "/etcdserverpb.Lease/LeaseKeepAlive", &ka_ops);
	bc_ka_core_start(&k->k, c, ka, id, cb, &remote_ops, TICK_MS);
	bc_stream_open(&k->s, 0);
	return 0;
}

int bollard_keepalive_stop(struct bollard_keepalive *ka)
{
	struct bc_ka_core *k = ka ? ka->internal_ : NULL;

	if (!k || k->stopping)
		return -EINVAL;
	bc_ka_core_stop(k, -ECANCELED);
	return 0;
}
