/* test_watch_hub.c - the watch hub (store/core/watch_hub.c) against real
 * MVCC history in LMDB, with fake streams that decode what they are sent
 * and can refuse (a full send queue) or die. */
#include <stdlib.h>
#include <string.h>

#include "core/watch_hub.h"
#include "fixture.h"
#include "unit.h"

/* ------------------------------------------------------------ fakes */

struct fstream {
	Etcdserverpb__WatchResponse **r;
	size_t n, cap;
	size_t limit;    /* refuse unforced sends while this many are unread */
	size_t read;     /* consumed by the "client" */
	bool dead;
	struct watch_stream *ws;
	size_t unflushed; /* sent since the last flush */
	size_t flushes;
};

/* An event response the hub says may be merged: its prefix is the header
 * and watch_id alone, the rest its events alone. */
static void check_events_at(const uint8_t *buf, size_t len, int64_t watch_id, size_t at)
{
	Etcdserverpb__WatchResponse *p, *e;
	REQUIRE(at > 0 && at < len);
	p = etcdserverpb__watch_response__unpack(NULL, at, buf);
	e = etcdserverpb__watch_response__unpack(NULL, len - at, buf + at);
	REQUIRE(p != NULL && e != NULL);
	CHECK(p->header != NULL && p->header->revision > 0);
	CHECK_INT(p->watch_id, watch_id);
	CHECK_INT(p->n_events, 0);
	CHECK(!p->created && !p->canceled && !p->fragment && p->compact_revision == 0);
	CHECK(e->header == NULL && e->watch_id == 0 && e->n_events > 0);
	etcdserverpb__watch_response__free_unpacked(p, NULL);
	etcdserverpb__watch_response__free_unpacked(e, NULL);
}

static int f_send(void *ud, uint8_t *buf, size_t len, bool force, int64_t watch_id,
                  size_t events_at)
{
	struct fstream *s = ud;
	if (events_at > 0)
		check_events_at(buf, len, watch_id, events_at);
	if (s->dead) {
		free(buf);
		return WATCH_DEAD;
	}
	if (!force && s->limit && s->n - s->read >= s->limit)
		return WATCH_FULL;
	Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(NULL, len, buf);
	free(buf);
	if (r == NULL)
		abort();
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16;
		s->r = realloc(s->r, s->cap * sizeof(*s->r));
	}
	s->r[s->n++] = r;
	s->unflushed++;
	return WATCH_SENT;
}

static bool f_writable(void *ud)
{
	struct fstream *s = ud;
	return !s->dead && (!s->limit || s->n - s->read < s->limit);
}

static void f_flush(void *ud)
{
	struct fstream *s = ud;
	CHECK(s->unflushed > 0); /* only streams sent to are flushed */
	s->unflushed = 0;
	s->flushes++;
}

static const struct watch_hub_io fio = {f_send, f_writable, NULL};
static const struct watch_hub_io fio_flush = {f_send, f_writable, f_flush};

static void fs_free(struct fstream *s)
{
	for (size_t i = 0; i < s->n; i++)
		etcdserverpb__watch_response__free_unpacked(s->r[i], NULL);
	free(s->r);
}

struct env {
	struct fx f;
	struct watch_hub *h;
};

static void env_open_io(struct env *e, const struct watch_hub_config *cfg,
                        const struct watch_hub_io *io)
{
	fx_open(&e->f);
	e->h = watch_hub_new(io, cfg, fx_rev(&e->f));
	REQUIRE(e->h != NULL);
	watch_hub_set_header(e->h, 7, 9, 1);
}

static void env_open(struct env *e, const struct watch_hub_config *cfg)
{
	env_open_io(e, cfg, &fio);
}

static void env_close(struct env *e)
{
	watch_hub_free(e->h);
	fx_close(&e->f);
}

/* Tell the hub about what was committed, then run sync steps until done
 * (or max steps). */
static void pump(struct env *e, int max_steps)
{
	MDB_txn *t = fx_rtxn(&e->f);
	REQUIRE_INT(watch_hub_notify(e->h, &e->f.m, t, mvcc_current_rev(&e->f.m, t)), 0);
	for (int i = 0; i < max_steps && watch_hub_unsynced(e->h) > 0; i++)
		REQUIRE(watch_hub_sync(e->h, &e->f.m, t) >= 0);
	mdb_txn_abort(t);
}

static void open_stream(struct env *e, struct fstream *s)
{
	memset(s, 0, sizeof(*s));
	s->ws = watch_hub_stream_open(e->h, s);
	REQUIRE(s->ws != NULL);
}

struct wopt {
	const char *end;   /* NULL: single key; "\\0" -> from key */
	bool from_key;
	int64_t start, id;
	bool prev_kv, noput, nodelete, progress, fragment;
};

static void create(struct env *e, struct fstream *s, const char *key, struct wopt o)
{
	Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
	Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	Etcdserverpb__WatchCreateRequest__FilterType f[2];
	c.key = B(key);
	if (o.from_key)
		c.range_end = FROM_KEY;
	else if (o.end)
		c.range_end = B(o.end);
	c.start_revision = o.start;
	c.watch_id = o.id;
	c.prev_kv = o.prev_kv;
	c.progress_notify = o.progress;
	c.fragment = o.fragment;
	if (o.noput)
		f[c.n_filters++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT;
	if (o.nodelete)
		f[c.n_filters++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE;
	c.filters = f;
	req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	req.create_request = &c;
	REQUIRE_INT(watch_hub_request(e->h, s->ws, &req), 0);
}

static void cancel(struct env *e, struct fstream *s, int64_t id)
{
	Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
	Etcdserverpb__WatchCancelRequest c = ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;
	c.watch_id = id;
	req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
	req.cancel_request = &c;
	REQUIRE_INT(watch_hub_request(e->h, s->ws, &req), 0);
}

static void progress(struct env *e, struct fstream *s)
{
	Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
	Etcdserverpb__WatchProgressRequest p = ETCDSERVERPB__WATCH_PROGRESS_REQUEST__INIT;
	req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST;
	req.progress_request = &p;
	REQUIRE_INT(watch_hub_request(e->h, s->ws, &req), 0);
}

/* Event description "P:key@rev" / "D:key@rev", all events of watch id in
 * the responses of s, joined by spaces. */
static char *events_of(struct fstream *s, int64_t id, char *out, size_t len)
{
	size_t o = 0;
	out[0] = 0;
	for (size_t i = 0; i < s->n; i++) {
		Etcdserverpb__WatchResponse *r = s->r[i];
		if (r->watch_id != id)
			continue;
		for (size_t k = 0; k < r->n_events; k++) {
			Mvccpb__Event *ev = r->events[k];
			o += (size_t)snprintf(out + o, len - o, "%s%c:%.*s@%lld", o ? " " : "",
			                      ev->type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? 'D' : 'P',
			                      (int)ev->kv->key.len, (char *)ev->kv->key.data,
			                      (long long)ev->kv->mod_revision);
			if (o >= len)
				return out;
		}
	}
	return out;
}

#define CHECK_EVENTS(s, id, want)                                                    \
	do {                                                                          \
		char buf_[4096];                                                          \
		const char *got_ = events_of((s), (id), buf_, sizeof(buf_));              \
		if (strcmp(got_, (want)) != 0)                                            \
			unit_fail(__FILE__, __LINE__, "watch %lld got \"%s\", want \"%s\"",  \
			          (long long)(id), got_, (want));                             \
	} while (0)

/* ------------------------------------------------------------ tests */

TEST(create_and_events)
{
	struct env e;
	struct fstream s;
	env_open(&e, NULL);
	open_stream(&e, &s);
	create(&e, &s, "a", (struct wopt){0});
	REQUIRE_INT(s.n, 1);
	CHECK(s.r[0]->created);
	CHECK_INT(s.r[0]->watch_id, 0);
	CHECK_INT(s.r[0]->header->revision, 1);
	CHECK_INT(s.r[0]->header->cluster_id, 7);
	CHECK_INT(s.r[0]->header->member_id, 9);
	fx_put(&e.f, "a", "1", NULL);
	pump(&e, 0);
	REQUIRE_INT(s.n, 2);
	CHECK_INT(s.r[1]->header->revision, 2);
	CHECK_INT(s.r[1]->header->cluster_id, 7);
	fx_put(&e.f, "b", "1", NULL);
	fx_put(&e.f, "a", "2", NULL);
	pump(&e, 0);
	REQUIRE_INT(s.n, 3);
	CHECK_INT(s.r[2]->header->revision, 4);
	CHECK_EVENTS(&s, 0, "P:a@2 P:a@4");
	CHECK_BYTES(s.r[2]->events[0]->kv->value, "2");
	CHECK_INT(s.r[2]->events[0]->kv->version, 2);
	CHECK_INT(s.r[2]->events[0]->kv->create_revision, 2);
	/* A second watch gets the next id. */
	create(&e, &s, "b", (struct wopt){0});
	CHECK_INT(s.r[3]->watch_id, 1);
	CHECK_INT(s.r[3]->header->revision, 4);
	fs_free(&s);
	env_close(&e);
}

/* With io.flush, each call that sends flushes each stream it sent to once,
 * before it returns; a stream sent nothing is not flushed. */
TEST(flush_once_per_stream_and_call)
{
	struct env e;
	struct fstream s1, s2, s3;
	env_open_io(&e, NULL, &fio_flush);
	open_stream(&e, &s1);
	open_stream(&e, &s2);
	open_stream(&e, &s3);
	create(&e, &s1, "a", (struct wopt){0});
	create(&e, &s1, "b", (struct wopt){0});
	create(&e, &s2, "a", (struct wopt){0});
	create(&e, &s3, "z", (struct wopt){0});
	CHECK_INT(s1.flushes, 2);
	CHECK_INT(s2.flushes, 1);
	for (int i = 0; i < 5; i++) {
		fx_put(&e.f, "a", "1", NULL);
		fx_put(&e.f, "b", "1", NULL);
	}
	pump(&e, 0); /* one notify: a response per watcher, 2 to s1, 1 to s2 */
	CHECK_INT(s1.n, 2 + 2);
	CHECK_INT(s2.n, 1 + 1);
	CHECK_INT(s1.flushes, 3);
	CHECK_INT(s2.flushes, 2);
	CHECK_INT(s3.flushes, 1);
	CHECK_INT(s1.unflushed + s2.unflushed + s3.unflushed, 0);
	/* a watcher catching up from history: flushed by the sync step */
	create(&e, &s3, "a", (struct wopt){.start = 2});
	pump(&e, 10);
	CHECK_EVENTS(&s3, 1, "P:a@2 P:a@4 P:a@6 P:a@8 P:a@10");
	CHECK_INT(s3.unflushed, 0);
	CHECK(s3.flushes >= 3);
	progress(&e, &s2);
	CHECK_INT(s2.flushes, 3);
	CHECK_INT(s2.unflushed, 0);
	fs_free(&s1);
	fs_free(&s2);
	fs_free(&s3);
	env_close(&e);
}

TEST(range_prefix_fromkey)
{
	struct env e;
	struct fstream s;
	env_open(&e, NULL);
	open_stream(&e, &s);
	create(&e, &s, "b", (struct wopt){.end = "d"});     /* 0: [b, d) */
	create(&e, &s, "p/", (struct wopt){.end = "p0"});   /* 1: prefix p/ */
	create(&e, &s, "m", (struct wopt){.from_key = true}); /* 2: >= m */
	create(&e, &s, "", (struct wopt){.from_key = true});  /* 3: everything */
	create(&e, &s, "c", (struct wopt){0});              /* 4: c */
	create(&e, &s, "b", (struct wopt){.end = "c"});     /* 5: [b, c) */
	const char *keys[] = {"a", "b", "bz", "c", "d", "p", "p/", "p/x", "p0", "m", "zz"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		fx_put(&e.f, keys[i], "v", NULL);
	pump(&e, 0);
	CHECK_EVENTS(&s, 0, "P:b@3 P:bz@4 P:c@5");
	CHECK_EVENTS(&s, 1, "P:p/@8 P:p/x@9");
	CHECK_EVENTS(&s, 2, "P:p@7 P:p/@8 P:p/x@9 P:p0@10 P:m@11 P:zz@12");
	CHECK_EVENTS(&s, 3, "P:a@2 P:b@3 P:bz@4 P:c@5 P:d@6 P:p@7 P:p/@8 P:p/x@9 P:p0@10 P:m@11 P:zz@12");
	CHECK_EVENTS(&s, 4, "P:c@5");
	CHECK_EVENTS(&s, 5, "P:b@3 P:bz@4");
	fs_free(&s);
	env_close(&e);
}

TEST(filters_prev_kv_deletes)
{
	struct env e;
	struct fstream s;
	env_open(&e, NULL);
	open_stream(&e, &s);
	create(&e, &s, "k", (struct wopt){.noput = true});
	create(&e, &s, "k", (struct wopt){.nodelete = true});
	create(&e, &s, "k", (struct wopt){.prev_kv = true});
	fx_put(&e.f, "k", "1", NULL);
	fx_put(&e.f, "k", "2", NULL);
	fx_del(&e.f, "k", (ProtobufCBinaryData){0, NULL}, false, NULL);
	fx_put(&e.f, "k", "3", NULL);
	pump(&e, 0);
	CHECK_EVENTS(&s, 0, "D:k@4");
	CHECK_EVENTS(&s, 1, "P:k@2 P:k@3 P:k@5");
	CHECK_EVENTS(&s, 2, "P:k@2 P:k@3 D:k@4 P:k@5");
	/* prev_kv: none for a create, the previous version otherwise. */
	size_t seen = 0;
	for (size_t i = 0; i < s.n; i++) {
		Etcdserverpb__WatchResponse *r = s.r[i];
		for (size_t k = 0; r->watch_id == 2 && k < r->n_events; k++) {
			Mvccpb__Event *ev = r->events[k];
			switch (ev->kv->mod_revision) {
			case 2: CHECK(ev->prev_kv == NULL); break;
			case 3: REQUIRE(ev->prev_kv); CHECK_BYTES(ev->prev_kv->value, "1"); break;
			case 4:
				REQUIRE(ev->prev_kv);
				CHECK_BYTES(ev->prev_kv->value, "2");
				CHECK_INT(ev->kv->version, 0);
				CHECK(ev->kv->value.len == 0);
				break;
			case 5: CHECK(ev->prev_kv == NULL); break;
			}
			seen++;
		}
	}
	CHECK_INT(seen, 4);
	/* Watchers without prev_kv get none. */
	for (size_t i = 0; i < s.n; i++)
		for (size_t k = 0; k < s.r[i]->n_events; k++)
			if (s.r[i]->watch_id != 2)
				CHECK(s.r[i]->events[k]->prev_kv == NULL);
	fs_free(&s);
	env_close(&e);
}

TEST(txn_one_response)
{
	struct env e;
	struct fstream s;
	env_open(&e, NULL);
	open_stream(&e, &s);
	create(&e, &s, "t", (struct wopt){.end = "u"});
	Etcdserverpb__RequestOp *ops[] = {op_put(&e.f, "t1", "a"), op_put(&e.f, "t2", "b"),
	                                  op_put(&e.f, "x", "c"), op_put(&e.f, "t3", "d"), NULL};
	REQUIRE_INT(fx_txn(&e.f, mk_txn(&e.f, NULL, ops, NULL), NULL), 0);
	pump(&e, 0);
	REQUIRE_INT(s.n, 2);
	CHECK_INT(s.r[1]->n_events, 3);
	CHECK_EVENTS(&s, 0, "P:t1@2 P:t2@2 P:t3@2");
	fs_free(&s);
	env_close(&e);
}

/* One notify of several revisions: each watcher gets one response with
 * its events of them all, in order, headed by its last event's revision;
 * a watcher with nothing in the batch gets nothing. */
TEST(batch_one_response_per_watcher)
{
	struct env e;
	struct fstream s, s2;
	env_open(&e, NULL);
	open_stream(&e, &s);
	open_stream(&e, &s2);
	create(&e, &s, "a", (struct wopt){0});                 /* 0 */
	create(&e, &s, "b", (struct wopt){0});                 /* 1 */
	create(&e, &s, "a", (struct wopt){.end = "c"});        /* 2: [a, c) */
	create(&e, &s, "z", (struct wopt){0});                 /* 3: nothing */
	create(&e, &s2, "b", (struct wopt){.prev_kv = true});  /* s2 0 */
	fx_put(&e.f, "a", "1", NULL);                          /* 2 */
	fx_put(&e.f, "b", "1", NULL);                          /* 3 */
	fx_put(&e.f, "x", "1", NULL);                          /* 4 */
	fx_put(&e.f, "a", "2", NULL);                          /* 5 */
	fx_del(&e.f, "b", (ProtobufCBinaryData){0, NULL}, false, NULL); /* 6 */
	fx_put(&e.f, "x", "2", NULL);                          /* 7 */
	pump(&e, 0);
	REQUIRE_INT(s.n, 4 + 3);
	REQUIRE_INT(s2.n, 1 + 1);
	for (size_t i = 4; i < s.n; i++) {
		Etcdserverpb__WatchResponse *r = s.r[i];
		REQUIRE(r->header != NULL && r->n_events > 0);
		CHECK_INT(r->header->revision, r->events[r->n_events - 1]->kv->mod_revision);
		CHECK(!r->created && !r->canceled && !r->fragment);
	}
	CHECK_EVENTS(&s, 0, "P:a@2 P:a@5");
	CHECK_EVENTS(&s, 1, "P:b@3 D:b@6");
	CHECK_EVENTS(&s, 2, "P:a@2 P:b@3 P:a@5 D:b@6");
	CHECK_EVENTS(&s, 3, "");
	CHECK_EVENTS(&s2, 0, "P:b@3 D:b@6");
	REQUIRE_INT(s2.r[1]->n_events, 2);
	CHECK(s2.r[1]->events[0]->prev_kv == NULL);
	REQUIRE(s2.r[1]->events[1]->prev_kv != NULL);
	CHECK_BYTES(s2.r[1]->events[1]->prev_kv->value, "1");
	CHECK_INT(s2.r[1]->header->revision, 6);
	fs_free(&s);
	fs_free(&s2);
	env_close(&e);
}

/* A batch past max_response_bytes is cut at revision boundaries: a
 * revision's events never span two responses (without fragment). */
TEST(batch_cut_at_revisions)
{
	struct env e;
	struct fstream s;
	struct watch_hub_config cfg = {.max_response_bytes = 300};
	char val[100];
	env_open(&e, &cfg);
	open_stream(&e, &s);
	create(&e, &s, "k", (struct wopt){.end = "l"});
	memset(val, 'x', sizeof(val) - 1);
	val[sizeof(val) - 1] = 0;
	for (int i = 0; i < 6; i++)
		fx_put(&e.f, i % 2 ? "k1" : "k2", val, NULL);      /* 2..7 */
	Etcdserverpb__RequestOp *ops[] = {op_put(&e.f, "k3", val), op_put(&e.f, "k4", val),
	                                  op_put(&e.f, "k5", val), op_put(&e.f, "k6", val), NULL};
	REQUIRE_INT(fx_txn(&e.f, mk_txn(&e.f, NULL, ops, NULL), NULL), 0); /* 8 */
	fx_put(&e.f, "k1", val, NULL);                          /* 9 */
	pump(&e, 0);
	CHECK_EVENTS(&s, 0, "P:k2@2 P:k1@3 P:k2@4 P:k1@5 P:k2@6 P:k1@7 P:k3@8 P:k4@8 P:k5@8 P:k6@8 P:k1@9");
	CHECK_INT(s.n, 1 + 5); /* 2+3, 4+5, 6+7 (~115 bytes an event), 8 (4 events), 9 */
	int64_t last = 0;
	for (size_t i = 1; i < s.n; i++) {
		Etcdserverpb__WatchResponse *r = s.r[i];
		REQUIRE(r->n_events > 0);
		CHECK(r->events[0]->kv->mod_revision > last); /* no revision split */
		last = r->events[r->n_events - 1]->kv->mod_revision;
		CHECK_INT(r->header->revision, last);
		if (r->events[0]->kv->mod_revision == 8)
			CHECK_INT(r->n_events, 4);
	}
	fs_free(&s);
	env_close(&e);
}

TEST(history_catch_up)
{
	struct env e;
	struct fstream s;
	struct watch_hub_config cfg = {.max_sync_events = 2};
	env_open(&e, &cfg);
	open_stream(&e, &s);
	for (int i = 0; i < 10; i++)
		fx_put(&e.f, i % 2 ? "a" : "b", "v", NULL);
	pump(&e, 0);
	create(&e, &s, "a", (struct wopt){.start = 3});
	CHECK_INT(watch_hub_unsynced(e.h), 1);
	fx_put(&e.f, "a", "new", NULL); /* rev 12, while still behind */
	pump(&e, 100);
	CHECK_INT(watch_hub_unsynced(e.h), 0);
	CHECK_EVENTS(&s, 0, "P:a@3 P:a@5 P:a@7 P:a@9 P:a@11 P:a@12");
	fx_put(&e.f, "a", "newer", NULL);
	pump(&e, 0);
	CHECK_EVENTS(&s, 0, "P:a@3 P:a@5 P:a@7 P:a@9 P:a@11 P:a@12 P:a@13");
	/* A future start revision waits for it. */
	create(&e, &s, "a", (struct wopt){.start = 15});
	fx_put(&e.f, "a", "x", NULL);
	fx_put(&e.f, "a", "y", NULL);
	pump(&e, 10);
	CHECK_EVENTS(&s, 1, "P:a@15");
	fs_free(&s);
	env_close(&e);
}

TEST(compacted_start_cancels)
{
	struct env e;
	struct fstream s;
	env_open(&e, NULL);
	open_stream(&e, &s);
	for (int i = 0; i < 6; i++)
		fx_put(&e.f, "k", "v", NULL);
	REQUIRE_INT(fx_compact(&e.f, 5), 0);
	pump(&e, 0);
	create(&e, &s, "k", (struct wopt){.start = 2});
	create(&e, &s, "k", (struct wopt){.start = 5}); /* at the compaction: fine */
	pump(&e, 10);
	REQUIRE_INT(s.n, 4);
	CHECK(s.r[2]->canceled);
	CHECK_INT(s.r[2]->watch_id, 0);
	CHECK_INT(s.r[2]->compact_revision, 5);
	CHECK_EVENTS(&s, 1, "P:k@5 P:k@6 P:k@7"); /* rev 5 survives compaction at 5 */
	/* The cancelled watch is gone: new puts reach only watch 1. */
	fx_put(&e.f, "k", "v", NULL);
	pump(&e, 0);
	CHECK_EVENTS(&s, 0, "");
	CHECK_EVENTS(&s, 1, "P:k@5 P:k@6 P:k@7 P:k@8");
	fs_free(&s);
	env_close(&e);
}

TEST(cancel_duplicate_empty_range)
{
	struct env e;
	struct fstream s;
	env_open(&e, NULL);
	open_stream(&e, &s);
	create(&e, &s, "a", (struct wopt){.id = 5});
	CHECK_INT(s.r[0]->watch_id, 5);
	create(&e, &s, "a", (struct wopt){.id = 5});
	CHECK(s.r[1]->created && s.r[1]->canceled);
	CHECK_INT(s.r[1]->watch_id, -1);
	CHECK(strcmp(s.r[1]->cancel_reason, "mvcc: duplicate watch ID provided on the WatchStream") == 0);
	create(&e, &s, "b", (struct wopt){.end = "a"});
	CHECK(s.r[2]->created && s.r[2]->canceled);
	CHECK(strcmp(s.r[2]->cancel_reason, "mvcc: watcher range is empty") == 0);
	create(&e, &s, "a", (struct wopt){0});
	CHECK_INT(s.r[3]->watch_id, 0);
	cancel(&e, &s, 5);
	CHECK(s.r[4]->canceled);
	CHECK_INT(s.r[4]->watch_id, 5);
	cancel(&e, &s, 77); /* unknown: no answer */
	CHECK_INT(s.n, 5);
	fx_put(&e.f, "a", "v", NULL);
	pump(&e, 0);
	CHECK_EVENTS(&s, 5, "");
	CHECK_EVENTS(&s, 0, "P:a@2");
	/* Closing the stream drops its watchers. */
	watch_hub_stream_close(e.h, s.ws);
	struct watch_hub_stats st;
	watch_hub_stats(e.h, &st);
	CHECK_INT(st.watchers, 0);
	CHECK_INT(st.streams, 0);
	fs_free(&s);
	env_close(&e);
}

TEST(progress)
{
	struct env e;
	struct fstream s, s2;
	env_open(&e, NULL);
	open_stream(&e, &s);
	open_stream(&e, &s2);
	create(&e, &s, "a", (struct wopt){.progress = true});
	create(&e, &s, "b", (struct wopt){.progress = true});
	fx_put(&e.f, "a", "v", NULL);
	pump(&e, 0);
	size_t n0 = s.n;
	watch_hub_progress_tick(e.h); /* a had an event: elided; b gets one */
	REQUIRE_INT(s.n, n0 + 1);
	CHECK_INT(s.r[n0]->watch_id, 1);
	CHECK_INT(s.r[n0]->header->revision, 2);
	CHECK_INT(s.r[n0]->n_events, 0);
	watch_hub_progress_tick(e.h);
	CHECK_INT(s.n, n0 + 3);
	/* Progress request: answered at once, watch_id -1, the current
	 * revision (etcd 3.4's v3rpc/watch.go: sws.watchStream.Rev() into
	 * the control stream, whether or not the watchers are synced)... */
	progress(&e, &s);
	CHECK_INT(s.r[s.n - 1]->watch_id, -1);
	CHECK_INT(s.r[s.n - 1]->header->revision, 2);
	CHECK_INT(s.r[s.n - 1]->n_events, 0);
	/* ...also with an unsynced watcher on the stream (etcd 3.5 waits
	 * for it; 3.4 does not), and on a stream without watchers. */
	struct fstream s3;
	open_stream(&e, &s3);
	progress(&e, &s3);
	REQUIRE_INT(s3.n, 1);
	CHECK_INT(s3.r[0]->watch_id, -1);
	CHECK_INT(s3.r[0]->header->revision, 2);
	fs_free(&s3);
	create(&e, &s2, "a", (struct wopt){.start = 1});
	size_t before = s2.n;
	progress(&e, &s2);
	REQUIRE_INT(s2.n, before + 1);
	CHECK_INT(s2.r[before]->watch_id, -1);
	CHECK_INT(s2.r[before]->header->revision, 2);
	pump(&e, 10);
	REQUIRE_INT(s2.n, before + 2);
	CHECK_EVENTS(&s2, 0, "P:a@2");
	fs_free(&s);
	fs_free(&s2);
	env_close(&e);
}

TEST(fragment)
{
	struct env e;
	struct fstream s;
	struct watch_hub_config cfg = {.max_response_bytes = 300};
	env_open(&e, &cfg);
	open_stream(&e, &s);
	create(&e, &s, "f", (struct wopt){.end = "g", .fragment = true});
	create(&e, &s, "f", (struct wopt){.end = "g"});
	char val[100];
	memset(val, 'x', sizeof(val) - 1);
	val[sizeof(val) - 1] = 0;
	Etcdserverpb__RequestOp *ops[] = {op_put(&e.f, "f1", val), op_put(&e.f, "f2", val),
	                                  op_put(&e.f, "f3", val), op_put(&e.f, "f4", val),
	                                  op_put(&e.f, "f5", val), NULL};
	REQUIRE_INT(fx_txn(&e.f, mk_txn(&e.f, NULL, ops, NULL), NULL), 0);
	pump(&e, 0);
	size_t frags = 0, whole = 0;
	for (size_t i = 2; i < s.n; i++) {
		if (s.r[i]->watch_id == 0) {
			frags++;
			CHECK(s.r[i]->fragment == (s.r[i]->n_events > 0 && i + 1 < s.n &&
			                           s.r[i + 1]->watch_id == 0));
		} else {
			whole++;
			CHECK_INT(s.r[i]->n_events, 5);
		}
	}
	CHECK(frags >= 2);
	CHECK_INT(whole, 1);
	CHECK_EVENTS(&s, 0, "P:f1@2 P:f2@2 P:f3@2 P:f4@2 P:f5@2");
	fs_free(&s);
	env_close(&e);
}

/* A stream that refuses a fragmented revision partway (its queue fills
 * after the first piece): the client still sees each event exactly once,
 * in order, live and in catch-up, and every fragment run ends with a
 * response whose fragment flag is clear. */
static void check_fragments_once(struct fstream *s, int64_t id, const char *want)
{
	CHECK_EVENTS(s, id, want);
	bool open = false;
	for (size_t i = 0; i < s->n; i++) {
		if (s->r[i]->watch_id != id || s->r[i]->n_events == 0)
			continue;
		open = s->r[i]->fragment;
	}
	CHECK(!open);
}

TEST(fragment_refused_midway)
{
	struct env e;
	struct fstream s;
	struct watch_hub_config cfg = {.max_response_bytes = 300};
	char val[100], want[512] = "";
	size_t o = 0;
	env_open(&e, &cfg);
	open_stream(&e, &s);
	create(&e, &s, "f", (struct wopt){.end = "g", .fragment = true});
	memset(val, 'x', sizeof(val) - 1);
	val[sizeof(val) - 1] = 0;
	/* Live: revision 2 is fragmented; the queue takes one more response. */
	s.limit = 2;
	Etcdserverpb__RequestOp *ops[] = {op_put(&e.f, "f1", val), op_put(&e.f, "f2", val),
	                                  op_put(&e.f, "f3", val), op_put(&e.f, "f4", val),
	                                  op_put(&e.f, "f5", val), NULL};
	REQUIRE_INT(fx_txn(&e.f, mk_txn(&e.f, NULL, ops, NULL), NULL), 0);
	o += (size_t)snprintf(want + o, sizeof(want) - o, "P:f1@2 P:f2@2 P:f3@2 P:f4@2 P:f5@2");
	pump(&e, 0);
	for (int i = 0; i < 50 && watch_hub_unsynced(e.h) > 0; i++) {
		s.read = s.n;
		pump(&e, 1);
	}
	CHECK_INT(watch_hub_unsynced(e.h), 0);
	check_fragments_once(&s, 0, want);
	/* Catch-up: a watcher from revision 2 on a stream that takes one
	 * response per step, two fragmented revisions behind. */
	Etcdserverpb__RequestOp *ops2[] = {op_put(&e.f, "f6", val), op_put(&e.f, "f7", val),
	                                   op_put(&e.f, "f8", val), op_put(&e.f, "f9", val), NULL};
	REQUIRE_INT(fx_txn(&e.f, mk_txn(&e.f, NULL, ops2, NULL), NULL), 0);
	o += (size_t)snprintf(want + o, sizeof(want) - o, " P:f6@3 P:f7@3 P:f8@3 P:f9@3");
	s.read = s.n;
	pump(&e, 0);
	struct fstream s2;
	open_stream(&e, &s2);
	create(&e, &s2, "f", (struct wopt){.end = "g", .fragment = true, .start = 2});
	s2.limit = 1;
	for (int i = 0; i < 50 && watch_hub_unsynced(e.h) > 0; i++) {
		s2.read = s2.n;
		pump(&e, 1);
	}
	CHECK_INT(watch_hub_unsynced(e.h), 0);
	check_fragments_once(&s2, 0, want);
	check_fragments_once(&s, 0, want);
	fs_free(&s);
	fs_free(&s2);
	env_close(&e);
}

TEST(slow_consumer_falls_back_and_catches_up)
{
	struct env e;
	struct fstream fast, slow;
	struct watch_hub_config cfg = {.max_sync_events = 3};
	env_open(&e, &cfg);
	open_stream(&e, &fast);
	open_stream(&e, &slow);
	create(&e, &fast, "k", (struct wopt){.end = "l"});
	create(&e, &slow, "k", (struct wopt){.end = "l"});
	create(&e, &slow, "k1", (struct wopt){0});
	slow.limit = 2;
	char want[4096] = "", want1[4096] = "";
	size_t o = 0, o1 = 0;
	for (int i = 0; i < 40; i++) {
		char k[8];
		snprintf(k, sizeof(k), "k%d", i % 3);
		fx_put(&e.f, k, "v", NULL);
		o += (size_t)snprintf(want + o, sizeof(want) - o, "%sP:%s@%d", o ? " " : "", k, i + 2);
		if (i % 3 == 1)
			o1 += (size_t)snprintf(want1 + o1, sizeof(want1) - o1, "%sP:%s@%d", o1 ? " " : "",
			                       k, i + 2);
		pump(&e, 1);
		if (i % 7 == 0)
			slow.read = slow.n; /* the client reads now and then */
	}
	struct watch_hub_stats st;
	watch_hub_stats(e.h, &st);
	CHECK(st.fallbacks > 0);
	CHECK_EVENTS(&fast, 0, want);
	for (int i = 0; i < 200 && watch_hub_unsynced(e.h) > 0; i++) {
		slow.read = slow.n;
		pump(&e, 1);
	}
	CHECK_INT(watch_hub_unsynced(e.h), 0);
	CHECK_EVENTS(&slow, 0, want);
	CHECK_EVENTS(&slow, 1, want1);
	/* Back to synced: live events flow directly again. */
	slow.read = slow.n;
	fx_put(&e.f, "k1", "z", NULL);
	pump(&e, 0);
	watch_hub_stats(e.h, &st);
	CHECK_INT(st.synced, 3);
	fs_free(&fast);
	fs_free(&slow);
	env_close(&e);
}

/* Randomized: many watchers over several streams with random limits and
 * reads, random puts/deletes/txns; each watcher must see exactly the
 * history's matching events, in order, each revision in one response. */
struct spec {
	char key[8], end[8];
	bool from_key, noput, nodelete;
	int64_t start;
	int stream;
	int64_t id;
};

static bool spec_match(const struct spec *w, const char *k, size_t kl, bool del, int64_t rev)
{
	if (rev < w->start || (del && w->nodelete) || (!del && w->noput))
		return false;
	size_t l = strlen(w->key);
	int c = memcmp(k, w->key, kl < l ? kl : l);
	int ck = c ? c : (kl < l ? -1 : kl > l);
	if (w->from_key)
		return ck >= 0;
	if (!w->end[0])
		return ck == 0;
	size_t el = strlen(w->end);
	int ce = memcmp(k, w->end, kl < el ? kl : el);
	ce = ce ? ce : (kl < el ? -1 : kl > el);
	return ck >= 0 && ce < 0;
}

struct expect {
	char *buf;
	size_t len, cap;
};

static void exp_add(struct expect *x, char type, const uint8_t *k, size_t kl, int64_t rev)
{
	if (x->cap - x->len < kl + 32) {
		x->cap = x->cap * 2 + kl + 4096;
		x->buf = realloc(x->buf, x->cap);
	}
	x->len += (size_t)snprintf(x->buf + x->len, x->cap - x->len, "%s%c:%.*s@%lld",
	                           x->len ? " " : "", type, (int)kl, (const char *)k, (long long)rev);
}

struct brute {
	struct spec *w;
	size_t n;
	struct expect *x;
};

static int brute_ev(void *ud, const struct mvcc_event *ev)
{
	struct brute *b = ud;
	for (size_t i = 0; i < b->n; i++)
		if (spec_match(&b->w[i], (const char *)ev->kv.key.data, ev->kv.key.len, ev->is_delete,
		               ev->main))
			exp_add(&b->x[i], ev->is_delete ? 'D' : 'P', ev->kv.key.data, ev->kv.key.len,
			        ev->main);
	return 0;
}

static void random_run(unsigned seed, size_t nwatch, size_t nstreams, size_t nops)
{
	struct env e;
	struct watch_hub_config cfg = {.max_sync_events = 1 + seed % 7, .max_sync_watchers = 1 + seed % 50};
	env_open(&e, &cfg);
	srand(seed);
	struct fstream *ss = calloc(nstreams, sizeof(*ss));
	for (size_t i = 0; i < nstreams; i++) {
		open_stream(&e, &ss[i]);
		ss[i].limit = (size_t)(rand() % 4 == 0 ? 0 : 1 + rand() % 5);
	}
	struct spec *ws = calloc(nwatch, sizeof(*ws));
	size_t created = 0;
	const char alpha[] = "abcdef";
	for (size_t op = 0; op < nops; op++) {
		/* Create some watchers along the way (some with history). */
		while (created < nwatch && (size_t)rand() % nops < nwatch) {
			struct spec *w = &ws[created++];
			int kind = rand() % 4;
			w->key[0] = alpha[rand() % 6];
			w->key[1] = kind == 0 ? alpha[rand() % 6] : 0;
			if (kind == 1) {
				w->end[0] = (char)(w->key[0] + 1); /* prefix */
			} else if (kind == 2) {
				w->from_key = true;
			} else if (kind == 3) {
				w->end[0] = w->key[0];
				w->end[1] = alpha[rand() % 6];
				if (strcmp(w->end, w->key) <= 0)
					strcpy(w->end, "g");
			}
			w->noput = rand() % 10 == 0;
			w->nodelete = !w->noput && rand() % 10 == 0;
			int64_t cur = fx_rev(&e.f);
			w->start = rand() % 3 == 0 ? 1 + rand() % cur : cur + 1 + (rand() % 3 == 0);
			w->stream = rand() % (int)nstreams;
			struct fstream *s = &ss[w->stream];
			size_t before = s->n;
			create(&e, s, w->key, (struct wopt){.end = w->end[0] ? w->end : NULL,
			                                    .from_key = w->from_key, .start = w->start,
			                                    .noput = w->noput, .nodelete = w->nodelete,
			                                    .prev_kv = rand() % 2});
			REQUIRE_INT(s->n, before + 1);
			w->id = s->r[before]->watch_id;
		}
		char k[3] = {alpha[rand() % 6], rand() % 2 ? alpha[rand() % 6] : 0, 0};
		int r = rand() % 10;
		if (r < 6) {
			fx_put(&e.f, k, "v", NULL);
		} else if (r < 8) {
			char end[3] = {(char)(k[0] + 1), 0, 0};
			fx_del(&e.f, k, rand() % 2 ? B(end) : (ProtobufCBinaryData){0, NULL}, false, NULL);
		} else {
			char k2[3] = {(char)(k[0] == 'f' ? 'a' : k[0] + 1), 0, 0};
			Etcdserverpb__RequestOp *ops[] = {op_put(&e.f, k, "t"), op_put(&e.f, k2, "u"), NULL};
			fx_txn(&e.f, mk_txn(&e.f, NULL, ops, NULL), NULL);
		}
		pump(&e, 1 + rand() % 2);
		for (size_t i = 0; i < nstreams; i++)
			if (rand() % 3 == 0)
				ss[i].read = ss[i].n;
	}
	for (int i = 0; i < 100000 && watch_hub_unsynced(e.h) > 0; i++) {
		for (size_t k = 0; k < nstreams; k++)
			ss[k].read = ss[k].n;
		pump(&e, 1);
	}
	REQUIRE_INT(watch_hub_unsynced(e.h), 0);

	struct brute b = {ws, created, calloc(created ? created : 1, sizeof(struct expect))};
	MDB_txn *t = fx_rtxn(&e.f);
	int64_t next;
	REQUIRE_INT(mvcc_read_events(&e.f.m, t, 1, mvcc_current_rev(&e.f.m, t), 0, false, brute_ev,
	                             &b, &next), 0);
	mdb_txn_abort(t);
	size_t bad = 0;
	for (size_t i = 0; i < created; i++) {
		struct fstream *s = &ss[ws[i].stream];
		static char got[1 << 20];
		events_of(s, ws[i].id, got, sizeof(got));
		const char *want = b.x[i].buf ? b.x[i].buf : "";
		if (strcmp(got, want) != 0 && bad++ < 3)
			unit_fail(__FILE__, __LINE__, "seed %u watcher %zu (%s..%s from %lld): got \"%.200s\" want \"%.200s\"",
			          seed, i, ws[i].key, ws[i].from_key ? "+inf" : ws[i].end,
			          (long long)ws[i].start, got, want);
		free(b.x[i].buf);
	}
	/* Responses never split a revision (no watcher asked for fragments). */
	for (size_t k = 0; k < nstreams; k++) {
		int64_t *last = calloc(nwatch + 16, sizeof(*last));
		for (size_t i = 0; i < ss[k].n; i++) {
			Etcdserverpb__WatchResponse *r = ss[k].r[i];
			if (r->n_events == 0 || r->watch_id < 0 || (size_t)r->watch_id >= nwatch + 16)
				continue;
			CHECK(r->events[0]->kv->mod_revision > last[r->watch_id]);
			last[r->watch_id] = r->events[r->n_events - 1]->kv->mod_revision;
		}
		free(last);
	}
	CHECK_INT(bad, 0);
	free(b.x);
	for (size_t i = 0; i < nstreams; i++)
		fs_free(&ss[i]);
	free(ss);
	free(ws);
	env_close(&e);
}

TEST(random_exactly_once)
{
	for (unsigned seed = 1; seed <= 8; seed++)
		random_run(seed, 60, 5, 300);
}

TEST(many_watchers)
{
	random_run(99, 3000, 40, 600);
}

TEST(memory_per_watcher)
{
	struct env e;
	struct fstream s;
	struct watch_hub_stats st;
	env_open(&e, NULL);
	open_stream(&e, &s);
	for (int i = 0; i < 1000; i++) {
		char k[16];
		snprintf(k, sizeof(k), "key/%04d", i);
		create(&e, &s, k, (struct wopt){0});
	}
	watch_hub_stats(e.h, &st);
	CHECK_INT(st.watchers, 1000);
	CHECK(st.watcher_bytes <= 128);
	printf("hub: ~%zu bytes per idle watcher + key and range end\n", st.watcher_bytes);
	fs_free(&s);
	env_close(&e);
}

UNIT_MAIN(TEST_ENTRY(create_and_events), TEST_ENTRY(flush_once_per_stream_and_call),
          TEST_ENTRY(range_prefix_fromkey),
          TEST_ENTRY(filters_prev_kv_deletes), TEST_ENTRY(txn_one_response),
          TEST_ENTRY(batch_one_response_per_watcher), TEST_ENTRY(batch_cut_at_revisions),
          TEST_ENTRY(history_catch_up), TEST_ENTRY(compacted_start_cancels),
          TEST_ENTRY(cancel_duplicate_empty_range), TEST_ENTRY(progress), TEST_ENTRY(fragment),
          TEST_ENTRY(fragment_refused_midway),
          TEST_ENTRY(slow_consumer_falls_back_and_catches_up), TEST_ENTRY(random_exactly_once),
          TEST_ENTRY(many_watchers), TEST_ENTRY(memory_per_watcher))
