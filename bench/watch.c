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

#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>

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

/* ---- WatchResponse, read in place ----
 * Only what this workload looks at (created, canceled with its reason, and
 * each event's type and the first bytes of its value) is taken from the
 * packed message, without unpacking it into allocated structs: the
 * receive loop handles one message per event. Malformed: false. */

struct wmsg {
	const uint8_t *p, *end;
};

static bool rd_varint(struct wmsg *m, uint64_t *v)
{
	uint64_t r = 0;
	for (int shift = 0; shift < 64 && m->p < m->end; shift += 7) {
		uint8_t b = *m->p++;
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = r;
			return true;
		}
	}
	return false;
}

/* The next field: its number, wire type and, for length-delimited ones,
 * the bytes (in *sub); other fields are read past. */
static bool rd_field(struct wmsg *m, uint32_t *num, uint32_t *wt, uint64_t *val, struct wmsg *sub)
{
	uint64_t tag;
	if (!rd_varint(m, &tag) || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX)
		return false;
	*num = (uint32_t)(tag >> 3);
	*wt = tag & 7;
	*val = 0;
	switch (*wt) {
	case 0:
		return rd_varint(m, val);
	case 1:
	case 5: {
		size_t n = *wt == 1 ? 8 : 4;
		if ((size_t)(m->end - m->p) < n)
			return false;
		m->p += n;
		return true;
	}
	case 2:
		if (!rd_varint(m, val) || *val > (uint64_t)(m->end - m->p))
			return false;
		sub->p = m->p;
		sub->end = m->p + *val;
		m->p += *val;
		return true;
	default:
		return false;
	}
}

/* mvccpb.Event: type (1, PUT = 0), kv (2) with value (5). The put's send
 * time in the value's first 8 bytes (little endian) into *sent; false when
 * the event is not such a put. *bad on malformed input. */
static bool event_sent(struct wmsg ev, uint64_t *sent, bool *bad)
{
	uint64_t type = 0, v;
	uint32_t num, wt;
	struct wmsg sub, kv = {NULL, NULL}, value = {NULL, NULL};
	bool has_kv = false;

	while (ev.p < ev.end) {
		if (!rd_field(&ev, &num, &wt, &v, &sub))
			return !(*bad = true);
		if (num == 1 && wt == 0)
			type = v;
		else if (num == 2 && wt == 2)
			kv = sub, has_kv = true;
	}
	while (has_kv && kv.p < kv.end) {
		if (!rd_field(&kv, &num, &wt, &v, &sub))
			return !(*bad = true);
		if (num == 5 && wt == 2)
			value = sub;
	}
	if (type != MVCCPB__EVENT__EVENT_TYPE__PUT || !has_kv || value.end - value.p < 8)
		return false;
	*sent = 0;
	for (int k = 0; k < 8; k++)
		*sent |= (uint64_t)value.p[k] << (8 * k);
	return true;
}

/* One WatchResponse (buf, len): false when malformed. */
static bool on_response(struct bb_worker *w, const uint8_t *buf, size_t len)
{
	struct bench *b = w->b;
	struct bb_series *se = &w->s[0];
	struct wmsg m = {buf, buf + len}, sub, reason = {NULL, NULL};
	uint64_t now = bb_now_ns(), n = 0, v;
	uint32_t num, wt;
	bool created = false, canceled = false, bad = false;

	while (m.p < m.end) {
		uint64_t sent;
		if (!rd_field(&m, &num, &wt, &v, &sub))
			return false;
		if (num == 3 && wt == 0)
			created = v != 0;
		else if (num == 4 && wt == 0)
			canceled = v != 0;
		else if (num == 6 && wt == 2)
			reason = sub;
		else if (num == 11 && wt == 2 && event_sent(sub, &sent, &bad)) {
			if (sent > now || sent < b->t_go)
				continue;     /* not one of this run's puts */
			bb_samples_add(&se->lat, now - sent);
			se->ok++;
			if (!se->first_ns || sent < se->first_ns)
				se->first_ns = sent;
			se->last_ns = now;
			n++;
		}
		if (bad)
			return false;
	}
	if (created)
		atomic_fetch_add(&b->progress2, 1);
	if (canceled) {
		char text[200];
		snprintf(text, sizeof(text), "watch canceled: %.*s", (int)(reason.end - reason.p),
		         (const char *)reason.p);
		bb_record_error(w, 0, BB_NSTATUS, text);
	}
	if (n)
		atomic_fetch_add(&b->progress, n);
	return true;
}

/* The received message's bytes: in place when gRPC holds them in one
 * slice (the usual case), else copied into *copy. */
static bool recv_bytes(grpc_byte_buffer *bb, grpc_slice *copy, const uint8_t **p, size_t *len)
{
	grpc_byte_buffer_reader rd;

	if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
	    bb->data.raw.slice_buffer.count == 1) {
		*p = GRPC_SLICE_START_PTR(bb->data.raw.slice_buffer.slices[0]);
		*len = GRPC_SLICE_LENGTH(bb->data.raw.slice_buffer.slices[0]);
		return true;
	}
	if (!grpc_byte_buffer_reader_init(&rd, bb))
		return false;
	*copy = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	*p = GRPC_SLICE_START_PTR(*copy);
	*len = GRPC_SLICE_LENGTH(*copy);
	return true;
}

static void on_recv(struct bb_worker *w, struct bb_tag *t, bool ok)
{
	struct wstream *s = CONTAINER(t, struct wstream, recv_tag);
	grpc_slice copy = grpc_empty_slice();
	const uint8_t *p;
	size_t len;

	if (!ok || !s->st.recv) {
		s->ended = true;
		return;
	}
	if (!recv_bytes(s->st.recv, &copy, &p, &len) || !on_response(w, p, len))
		bb_record_error(w, 0, BB_NSTATUS, "watch: malformed WatchResponse");
	grpc_slice_unref(copy);
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
		if (ww)
			free(ww->streams);
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
