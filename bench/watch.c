/* watch.c - the watch and watch-latency workloads: --watchers watchers on
 * --watch-keys keys over --streams Watch streams, then a put load on those
 * keys. Each put carries its send time in its value, so every delivered
 * event gives one put->event latency sample (series 0, "event"); the puts
 * themselves are series 1. Events due are counted exactly from the
 * successful puts and the watchers on each key. */
#include "bench.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/support/alloc.h>

#include "core/arena.h"
#include "rpc.pb-c.h"

struct wstream {
	struct bb_tag send_tag, recv_tag, status_tag;
	struct bb_stream st;
	int index, n_watchers, sent;
	bool ended;
};

struct wworker {
	struct wstream *streams;
	int n;
	struct arena scratch;      /* the WatchResponse being read */
};

struct wshared {
	uint64_t *watchers_on;     /* watchers per key index */
};

#define CONTAINER(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

static grpc_byte_buffer *create_request(struct bb_worker *w, struct wstream *s)
{
	const struct bb_options *o = w->b->o;
	Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
	Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	uint64_t j = (uint64_t)s->index + (uint64_t)o->streams * (uint64_t)s->sent;   /* global watcher */
	uint8_t key[o->key_size];

	c.key.data = key;
	c.key.len = bb_key(o, j % (uint64_t)o->watch_keys, key);
	r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	r.create_request = &c;
	return grpc_wire_pack(&r.base);
}

static void send_next(struct bb_worker *w, struct wstream *s)
{
	if (s->sent >= s->n_watchers || s->ended)
		return;
	if (bb_stream_send(w, &s->st, create_request(w, s), &s->send_tag) != 0)
		bb_record_error(w, 0, BB_NSTATUS, "watch: could not send a create request");
	s->sent++;
}

static void on_sent(struct bb_worker *w, struct bb_tag *t, bool ok)
{
	struct wstream *s = CONTAINER(t, struct wstream, send_tag);

	if (ok)
		send_next(w, s);
}

/* One WatchResponse: count this run's put events with their latency (the
 * put's send time is in the value's first 8 bytes, little endian). */
static void on_response(struct bb_worker *w, const Etcdserverpb__WatchResponse *r)
{
	struct bench *b = w->b;
	struct bb_series *se = &w->s[0];
	uint64_t now = bb_now_ns(), n = 0;

	if (r->created)
		atomic_fetch_add(&b->progress2, 1);
	if (r->canceled) {
		char text[200];
		snprintf(text, sizeof(text), "watch canceled: %s", r->cancel_reason);
		bb_record_error(w, 0, BB_NSTATUS, text);
	}
	for (size_t i = 0; i < r->n_events; i++) {
		const Mvccpb__Event *e = r->events[i];
		uint64_t sent = 0;

		if (e->type != MVCCPB__EVENT__EVENT_TYPE__PUT || !e->kv || e->kv->value.len < 8)
			continue;
		for (int k = 0; k < 8; k++)
			sent |= (uint64_t)e->kv->value.data[k] << (8 * k);
		if (sent > now || sent < b->t_go)
			continue;     /* not one of this run's puts */
		bb_samples_add(&se->lat, now - sent);
		se->ok++;
		if (!se->first_ns || sent < se->first_ns)
			se->first_ns = sent;
		se->last_ns = now;
		n++;
	}
	if (n) {
		atomic_fetch_add(&b->progress, n);
		atomic_fetch_add(&b->responses, 1);
	}
}

static void on_recv(struct bb_worker *w, struct bb_tag *t, bool ok)
{
	struct wstream *s = CONTAINER(t, struct wstream, recv_tag);
	struct wworker *ww = w->wl;
	ProtobufCAllocator alloc = arena_protobuf_allocator(&ww->scratch);
	ProtobufCMessage *m;

	if (!ok || !s->st.recv) {
		s->ended = true;
		return;
	}
	/* One message per event at fan-out: unpacked into the worker's arena,
	 * dropped at once, so no malloc/free per field. */
	m = grpc_wire_unpack_with(s->st.recv, &etcdserverpb__watch_response__descriptor, &alloc);
	if (!m)
		bb_record_error(w, 0, BB_NSTATUS, "watch: malformed WatchResponse");
	else
		on_response(w, (const Etcdserverpb__WatchResponse *)m);
	arena_reset(&ww->scratch);
	if (bb_stream_recv(w, &s->st, &s->recv_tag) != 0)
		s->ended = true;
}

static void on_status(struct bb_worker *w, struct bb_tag *t, bool ok)
{
	struct wstream *s = CONTAINER(t, struct wstream, status_tag);

	(void)ok;
	s->ended = true;
	if (!w->shut) {      /* the server ended a stream before the run did */
		char *d = grpc_slice_to_c_string(s->st.details), text[256];
		snprintf(text, sizeof(text), "watch stream ended: status %d: %s", (int)s->st.status, d);
		gpr_free(d);
		bb_record_error(w, 0, (int)s->st.status, text);
	}
	s->st.status_done = true;
}

static void watch_worker_init(struct bb_worker *w)
{
	struct bench *b = w->b;
	const struct bb_options *o = b->o;
	struct wworker *ww = calloc(1, sizeof(*ww));

	w->wl = ww;
	arena_init(&ww->scratch, 16 * 1024);
	for (int i = w->id; i < o->streams; i += b->n_w)
		ww->n++;
	ww->streams = calloc((size_t)ww->n, sizeof(*ww->streams));
	for (int k = 0; k < ww->n; k++) {
		struct wstream *s = &ww->streams[k];
		s->index = w->id + k * b->n_w;
		s->n_watchers = o->watchers / o->streams + (s->index < o->watchers % o->streams);
		s->send_tag.done = on_sent;
		s->recv_tag.done = on_recv;
		s->status_tag.done = on_status;
		if (bb_stream_open(w, &s->st, bb_channel(b, s->index), "/etcdserverpb.Watch/Watch",
		                   &s->status_tag) != 0 ||
		    bb_stream_recv(w, &s->st, &s->recv_tag) != 0) {
			bb_record_error(w, 0, BB_NSTATUS, "watch: could not open a stream");
			continue;
		}
		send_next(w, s);
	}
}

static void watch_worker_shutdown(struct bb_worker *w)
{
	struct wworker *ww = w->wl;

	for (int k = 0; ww && k < ww->n; k++)
		if (ww->streams[k].st.call)
			grpc_call_cancel(ww->streams[k].st.call, NULL);
}

static void put_ok(struct bb_worker *w, uint64_t key)
{
	struct wshared *sh = w->b->wl;

	atomic_fetch_add(&w->b->expected, sh->watchers_on[key]);
}

static int watch_setup(struct bench *b)
{
	const struct bb_options *o = b->o;
	struct wshared *sh = calloc(1, sizeof(*sh));

	b->wl = sh;
	sh->watchers_on = calloc((size_t)o->watch_keys, sizeof(*sh->watchers_on));
	for (int j = 0; j < o->watchers; j++)
		sh->watchers_on[j % o->watch_keys]++;
	b->unary_ok = put_ok;
	return bb_unary_setup(b);
}

static int watch_run(struct bench *b)
{
	const struct bb_options *o = b->o;
	uint64_t t0 = bb_now_ns();

	if (!bb_wait_counter(&b->progress2, (uint64_t)o->watchers, 60)) {
		snprintf(b->errmsg, sizeof(b->errmsg), "only %llu of %d watchers created within 60 s",
		         (unsigned long long)atomic_load(&b->progress2), o->watchers);
		return -1;
	}
	b->setup_s = (double)(bb_now_ns() - t0) / 1e9;
	bb_unary_run(b);               /* the put load */
	/* Deliveries still in flight: wait for every event due, at most 10 s more. */
	if (!bb_wait_counter(&b->progress, atomic_load(&b->expected), 10))
		b->missing = atomic_load(&b->expected) - atomic_load(&b->progress);
	return 0;
}

static void watch_teardown(struct bench *b)
{
	struct wshared *sh = b->wl;

	for (int i = 0; i < b->n_w; i++) {
		struct wworker *ww = b->w[i].wl;
		for (int k = 0; ww && k < ww->n; k++)
			bb_stream_release(&ww->streams[k].st);
		if (ww) {
			free(ww->streams);
			arena_free(&ww->scratch);
		}
		free(ww);
		b->w[i].wl = NULL;
	}
	if (sh)
		free(sh->watchers_on);
	free(sh);
	b->wl = NULL;
}

const struct bb_workload_ops bb_watch_ops = {
	.series_name = {"event", "put"},
	.setup = watch_setup,
	.worker_init = watch_worker_init,
	.worker_go = bb_unary_go,
	.worker_shutdown = watch_worker_shutdown,
	.run = watch_run,
	.teardown = watch_teardown,
};
