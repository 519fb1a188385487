/* watch.c - a watch over one gRPC Watch stream of its own. It remembers the
 * revision up to which it has delivered every event (last_rev); after the
 * stream breaks (a member died or restarted) it recreates the watch from
 * last_rev + 1 on whatever endpoint is reachable, and drops any event at or
 * below last_rev, so the caller sees every event exactly once.
 * Loop thread only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"

#define RECONNECT_MS 100

struct bc_watch {
	struct bc_live live;
	struct bc_stream s;
	struct bc_watch_core k;
};

#define OF_STREAM(sp) ((struct bc_watch *)(void *)((char *)(sp) - offsetof(struct bc_watch, s)))

/* ---- shared with the embedded back end ---- */

int bc_watch_core_init(struct bc_watch_core *k, struct bollard_watch *w, const void *key,
                       size_t key_len, const struct bollard_watch_options *opts,
                       bollard_watch_cb cb)
{
	ProtobufCBinaryData end;
	uint8_t *buf = malloc(key_len + 1);

	memset(k, 0, sizeof(*k));
	k->key = malloc(key_len + 1);
	if (!buf || !k->key) {
		free(buf);
		free(k->key);
		k->key = NULL;
		return -ENOMEM;
	}
	if (opts)
		k->o = *opts;
	if (key_len)
		memcpy(k->key, key, key_len);
	k->key_len = key_len;
	bc_range_end(key, key_len, k->o.prefix, k->o.range_end, k->o.range_end_len, buf, &end);
	k->end_len = end.len;
	k->end = malloc(end.len + 1);
	if (!k->end) {
		free(buf);
		free(k->key);
		k->key = NULL;
		return -ENOMEM;
	}
	if (end.len)
		memcpy(k->end, end.data, end.len);
	free(buf);
	k->o.range_end = NULL;
	k->last_rev = k->o.start_revision > 0 ? k->o.start_revision - 1 : -1;
	k->w = w;
	k->cb = cb;
	return 0;
}

void bc_watch_core_free(struct bc_watch_core *k)
{
	free(k->key);
	free(k->end);
	k->key = k->end = NULL;
}

void bc_watch_create_req(const struct bc_watch_core *x, Etcdserverpb__WatchRequest *rq,
                         Etcdserverpb__WatchCreateRequest *cr,
                         Etcdserverpb__WatchCreateRequest__FilterType filters[2])
{
	cr->key.data = x->key;
	cr->key.len = x->key_len;
	cr->range_end.data = x->end;
	cr->range_end.len = x->end_len;
	cr->start_revision = x->last_rev >= 0 ? x->last_rev + 1 : x->o.start_revision;
	cr->progress_notify = x->o.progress_notify;
	cr->prev_kv = x->o.prev_kv;
	cr->n_filters = 0;
	if (x->o.no_put)
		filters[cr->n_filters++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT;
	if (x->o.no_delete)
		filters[cr->n_filters++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE;
	cr->filters = filters;
	rq->request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	rq->create_request = cr;
}

static void deliver(struct bc_watch_core *x, const Etcdserverpb__WatchResponse *r)
{
	struct bollard_watch_batch b;
	struct bollard_event *ev;
	void *arena = NULL;
	size_t n = 0;
	int64_t last = x->last_rev;

	memset(&b, 0, sizeof(b));
	bc_copy_header(&b.header, r->header);
	ev = r->n_events ? bc_arena_alloc(&arena, r->n_events * sizeof(*ev)) : NULL;
	for (size_t i = 0; i < r->n_events; i++) {
		const Mvccpb__Event *e = r->events[i];
		if (!e->kv || e->kv->mod_revision <= x->last_rev)
			continue; /* already delivered before a reconnect */
		ev[n].type = e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? BOLLARD_EVENT_DELETE
		                                                          : BOLLARD_EVENT_PUT;
		bc_copy_kv(&arena, &ev[n].kv, e->kv);
		if (e->prev_kv) {
			struct bollard_kv *p = bc_arena_alloc(&arena, sizeof(*p));
			bc_copy_kv(&arena, p, e->prev_kv);
			ev[n].prev_kv = p;
		}
		last = e->kv->mod_revision;
		n++;
	}
	if (r->n_events == 0) {
		/* A progress notification: everything up to header.revision. */
		b.progress = true;
		if (r->header && r->header->revision > last)
			last = r->header->revision;
	} else if (n == 0) {
		goto out;
	}
	x->last_rev = last;
	b.events = ev;
	b.n_events = n;
	x->cb(x->w, 0, &b);
out:
	if (arena) {
		struct bollard_result tmp = {.internal_ = arena};
		bollard_result_free(&tmp);
	}
}

bool bc_watch_response(struct bc_watch_core *x, const Etcdserverpb__WatchResponse *r)
{
	if (r->canceled) {
		if (r->compact_revision > 0) {
			x->final_err = BOLLARD_ECOMPACTED;
		} else {
			grpc_slice d = grpc_slice_from_static_string(r->cancel_reason ? r->cancel_reason : "");
			x->final_err = bc_status_to_err(GRPC_STATUS_UNKNOWN, d, true);
			if (x->final_err == -EPROTO)
				x->final_err = BOLLARD_EWATCH_CANCELED;
		}
		return true;
	}
	if (r->created) {
		if (x->last_rev < 0 && r->header)
			x->last_rev = r->header->revision; /* "from now" is now fixed */
	} else if (!x->cancelled) {
		deliver(x, r);
	}
	return false;
}

/* ---- the remote watch ---- */

static void send_create(struct bc_stream *s)
{
	struct bc_watch *x = OF_STREAM(s);
	Etcdserverpb__WatchRequest rq = ETCDSERVERPB__WATCH_REQUEST__INIT;
	Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	Etcdserverpb__WatchCreateRequest__FilterType filters[2];

	bc_watch_create_req(&x->k, &rq, &cr, filters);
	bc_stream_send(s, grpc_wire_pack(&rq.base)); /* the first send: never busy */
}

static void on_message(struct bc_stream *s, grpc_byte_buffer *bb)
{
	struct bc_watch *x = OF_STREAM(s);
	Etcdserverpb__WatchResponse *r =
		(Etcdserverpb__WatchResponse *)grpc_wire_unpack(bb, &etcdserverpb__watch_response__descriptor);

	if (!r) {
		x->k.final_err = -EPROTO;
		bc_stream_stop(s);
		return;
	}
	if (bc_watch_response(&x->k, r))
		bc_stream_stop(s);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void on_ended(struct bc_stream *s, int err, grpc_status_code st)
{
	struct bc_watch *x = OF_STREAM(s);
	struct bollard_watch *w = x->k.w;
	bollard_watch_cb cb = x->k.cb;
	struct bollard_client *c = x->s.c;
	bool transient = st == GRPC_STATUS_UNAVAILABLE || st == GRPC_STATUS_UNKNOWN ||
	                 st == GRPC_STATUS_INTERNAL || st == GRPC_STATUS_CANCELLED ||
	                 st == GRPC_STATUS_DEADLINE_EXCEEDED || st == GRPC_STATUS_OK;

	if (!x->k.cancelled && !x->k.final_err && !c->closing && transient) {
		bc_stream_open(s, RECONNECT_MS);
		return;
	}
	if (x->k.cancelled || c->closing)
		err = -ECANCELED;
	else if (x->k.final_err)
		err = x->k.final_err;
	else if (err == 0)
		err = -ECONNRESET;
	bc_live_remove(c, &x->live);
	bc_watch_core_free(&x->k);
	free(x);
	w->internal_ = NULL;
	cb(w, err, NULL);
}

static const struct bc_stream_ops watch_ops = {
	.opened = send_create,
	.message = on_message,
	.ended = on_ended,
};

static void cancel_live(struct bc_live *l)
{
	struct bc_watch *x = (struct bc_watch *)l;

	x->k.cancelled = true;
	bc_stream_stop(&x->s);
}

int bollard_watch_start(struct bollard_client *c, struct bollard_watch *w, const void *key,
                        size_t key_len, const struct bollard_watch_options *opts,
                        bollard_watch_cb cb)
{
	struct bc_watch *x;
	int rc;

	if (!c || !w || !cb || !c->loop || (key_len && !key))
		return -EINVAL;
	if (c->closing)
		return -ECANCELED;
	if (c->emb)
		return bc_emb_watch_start(c, w, key, key_len, opts, cb);
	if (!(x = calloc(1, sizeof(*x))))
		return -ENOMEM;
	if ((rc = bc_watch_core_init(&x->k, w, key, key_len, opts, cb)) != 0) {
		free(x);
		return rc;
	}
	w->internal_ = x;
	bc_stream_init(&x->s, c, "/etcdserverpb.Watch/Watch", &watch_ops);
	bc_live_add(c, &x->live, cancel_live);
	bc_stream_open(&x->s, 0);
	return 0;
}

int bollard_watch_cancel(struct bollard_watch *w)
{
	struct bc_watch *x = w ? w->internal_ : NULL;

	if (x && x->live.emb)
		return bc_emb_watch_cancel(w);
	if (!x || x->k.cancelled)
		return -EINVAL;
	cancel_live(&x->live);
	return 0;
}
