/* test_mvcc_history.c - MVCC with deep per-key history: a key with 10k
 * revisions (several generations, lease changes, neighbours) read at old
 * revisions, compacted in the middle, caught up by a watcher, checked against
 * a model at every step. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"
#include "unit.h"

#define NONE ((ProtobufCBinaryData){0, NULL})
#define NOPS 10000 /* writes; revision of write i is 2 + i */
#define NKEYS 3

static const char *const names[NKEYS] = {"dee", "deep", "deeq"};

/* One key's state as of one revision (version 0: absent). */
struct kstate {
	int64_t create, mod, version, lease;
	int val;
};

/* hist[rev][k]: the model after each revision. */
typedef struct kstate hist_t[NKEYS];

/* The write at index i: which key, and whether it is a delete. Mostly "deep";
 * every 500th write goes to a neighbour; "deep" is deleted every 2500. */
static int op_key(int i)
{
	if (i % 500 == 250)
		return (i / 500) % 2 ? 2 : 0;
	return 1;
}

static bool op_is_delete(int i)
{
	return i % 2500 == 2499;
}

static int64_t op_lease(int i)
{
	return (i / 700) % 3 == 1 ? 7 : 0;
}

/* Apply the writes [from, to) to the store (one LMDB txn) and the model. */
static void write_ops(struct fx *f, hist_t *hist, int from, int to)
{
	MDB_txn *t = fx_wtxn(f);
	for (int i = from; i < to; i++) {
		int k = op_key(i);
		int64_t rev = 2 + i;
		char val[16];
		memcpy(hist[rev], hist[rev - 1], sizeof(hist_t));
		struct kstate *s = &hist[rev][k];
		if (op_is_delete(i)) {
			Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
			Etcdserverpb__DeleteRangeResponse dr;
			d.key = B(names[k]);
			REQUIRE_INT(mvcc_delete_range(&f->m, t, &f->a, &d, &dr), 0);
			REQUIRE_INT(dr.deleted, 1);
			*s = (struct kstate){0};
		} else {
			Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
			Etcdserverpb__PutResponse pr;
			snprintf(val, sizeof(val), "v%d", i);
			p.key = B(names[k]);
			p.value = B(val);
			p.lease = op_lease(i);
			REQUIRE_INT(mvcc_put(&f->m, t, &f->a, &p, &pr), 0);
			REQUIRE_INT(pr.header->revision, rev);
			if (s->version == 0)
				s->create = rev;
			s->version++;
			s->mod = rev;
			s->lease = p.lease;
			s->val = i;
		}
		arena_reset(&f->a);
	}
	fx_commit(t);
}

static void check_kv(const Mvccpb__KeyValue *kv, int k, const struct kstate *s)
{
	char val[16];
	snprintf(val, sizeof(val), "v%d", s->val);
	CHECK_BYTES(kv->key, names[k]);
	CHECK_BYTES(kv->value, val);
	CHECK_INT(kv->create_revision, s->create);
	CHECK_INT(kv->mod_revision, s->mod);
	CHECK_INT(kv->version, s->version);
	CHECK_INT(kv->lease, s->lease);
}

/* Every form of range over the three keys at rev agrees with the model. */
static void check_at(struct fx *f, hist_t *hist, int64_t rev)
{
	const struct kstate *st = hist[rev];
	int live = 0;
	for (int k = 0; k < NKEYS; k++)
		live += st[k].version != 0;

	/* Single keys. */
	for (int k = 0; k < NKEYS; k++) {
		Mvccpb__KeyValue *kv = fx_get(f, names[k], rev);
		if (st[k].version == 0)
			CHECK(kv == NULL);
		else if (kv == NULL)
			unit_fail(__FILE__, __LINE__, "%s missing", names[k]);
		else
			check_kv(kv, k, &st[k]);
	}
	/* The prefix, in key order. */
	Etcdserverpb__RangeRequest rq = fx_rq("dee", B("def"));
	Etcdserverpb__RangeResponse rr;
	rq.revision = rev;
	REQUIRE_INT(fx_range(f, &rq, &rr), 0);
	CHECK_INT(rr.count, live);
	REQUIRE_INT(rr.n_kvs, live);
	for (int k = 0, j = 0; k < NKEYS; k++)
		if (st[k].version != 0)
			check_kv(rr.kvs[j++], k, &st[k]);
	/* count_only, keys_only, limit. */
	rq.count_only = 1;
	REQUIRE_INT(fx_range(f, &rq, &rr), 0);
	CHECK_INT(rr.count, live);
	CHECK_INT(rr.n_kvs, 0);
	rq.count_only = 0;
	rq.keys_only = 1;
	rq.limit = 1;
	REQUIRE_INT(fx_range(f, &rq, &rr), 0);
	CHECK_INT(rr.count, live);
	CHECK_INT(rr.n_kvs, live ? 1 : 0);
	CHECK_INT(rr.more, live > 1);
	if (rr.n_kvs == 1)
		CHECK_INT(rr.kvs[0]->value.len, 0);
	/* Sorted by version, descending: "deep" (the most versions) first
	 * whenever it is live and ahead. */
	rq.keys_only = 0;
	rq.limit = 0;
	rq.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION;
	rq.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
	REQUIRE_INT(fx_range(f, &rq, &rr), 0);
	REQUIRE_INT(rr.n_kvs, live);
	for (size_t j = 1; j < rr.n_kvs; j++)
		CHECK(rr.kvs[j - 1]->version >= rr.kvs[j]->version);
	if (unit_failures) {
		fprintf(stderr, "    (at revision %" PRId64 ")\n", rev);
		unit_abort_test();
	}
}

/* Revisions the model says are stored after compacting at rev: every write
 * after rev, plus each key's entry visible at rev unless it is absent. */
static size_t entries_after_compact(hist_t *hist, int64_t rev, int64_t cur)
{
	size_t n = (size_t)(cur - rev);
	for (int k = 0; k < NKEYS; k++)
		n += hist[rev][k].version != 0;
	return n;
}

struct ev_check {
	hist_t *hist;
	int64_t expect_main;
	size_t n, with_prev;
};

static int ev_visit(void *ud, const struct mvcc_event *ev)
{
	struct ev_check *c = ud;
	int k = op_key((int)(ev->main - 2));
	const struct kstate *prev = &c->hist[ev->main - 1][k];
	CHECK_INT(ev->main, c->expect_main);
	CHECK_INT(ev->is_delete, op_is_delete((int)(ev->main - 2)));
	CHECK_BYTES(ev->kv.key, names[k]);
	if (!ev->is_delete)
		check_kv(&ev->kv, k, &c->hist[ev->main][k]);
	/* prev_kv: the key's KeyValue at main - 1, unless this put created it. */
	bool create = !ev->is_delete && ev->kv.create_revision == ev->main;
	if (create || prev->version == 0) {
		CHECK(ev->prev_raw == NULL);
	} else {
		REQUIRE(ev->prev_raw != NULL);
		Mvccpb__KeyValue *p = mvccpb__key_value__unpack(NULL, ev->prev_len, ev->prev_raw);
		REQUIRE(p != NULL);
		check_kv(p, k, prev);
		mvccpb__key_value__free_unpacked(p, NULL);
		c->with_prev++;
	}
	c->expect_main++;
	c->n++;
	return unit_failures ? -1 : 0;
}

TEST(deep_history)
{
	struct fx f;
	hist_t *hist = calloc(NOPS + 2, sizeof(*hist));
	REQUIRE(hist != NULL);
	fx_open(&f);
	for (int i = 0; i < NOPS; i += 500)
		write_ops(&f, hist, i, i + 500);
	int64_t cur = 1 + NOPS;
	REQUIRE_INT(fx_rev(&f), cur);
	CHECK_INT(fx_rev_entries(&f), NOPS);
	CHECK_INT(fx_key_entries(&f), NOPS);

	/* The latest state, and old revisions all through the history
	 * (generation starts and ends included). */
	check_at(&f, hist, cur);
	for (int64_t r = 1; r <= cur; r += 37)
		check_at(&f, hist, r);
	for (int g = 1; g <= 4; g++) {
		int64_t end = 2 + 2500 * g - 1; /* the tombstone */
		check_at(&f, hist, end - 1);
		check_at(&f, hist, end);
		if (end + 1 <= cur)
			check_at(&f, hist, end + 1);
	}

	/* A txn's compare reads the latest version. */
	Etcdserverpb__Compare *cmps[] = {
		cmp_int(&f, "deep", NONE, ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION,
		        ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL, hist[cur][1].version),
		NULL};
	Etcdserverpb__RequestOp *ok[] = {op_range(&f, "deep", NONE), NULL};
	Etcdserverpb__TxnResponse tr;
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, cmps, ok, NULL), &tr), 0);
	CHECK(tr.succeeded);

	/* Compact in the middle of a generation of "deep". */
	int64_t mid = 2 + 6000 + 123;
	REQUIRE(hist[mid][1].version != 0 && hist[mid][1].create < mid);
	REQUIRE_INT(fx_compact(&f, mid), 0);
	CHECK_INT(fx_rev_entries(&f), entries_after_compact(hist, mid, cur));
	CHECK_INT(fx_key_entries(&f), entries_after_compact(hist, mid, cur));
	Etcdserverpb__RangeRequest rq = fx_rq("deep", NONE);
	Etcdserverpb__RangeResponse rr;
	rq.revision = mid - 1;
	CHECK_INT(fx_range(&f, &rq, &rr), BOLLARD_ECOMPACTED);
	check_at(&f, hist, mid);
	for (int64_t r = mid + 1; r <= cur; r += 29)
		check_at(&f, hist, r);
	check_at(&f, hist, cur);

	/* A watcher catching up from the compacted revision sees every event
	 * with the right previous KeyValue. */
	struct ev_check ec = {.hist = hist, .expect_main = mid + 1};
	int64_t next;
	MDB_txn *t = fx_rtxn(&f);
	CHECK_INT(mvcc_read_events(&f.m, t, mid - 1, cur, 0, true, ev_visit, &ec, &next),
	          BOLLARD_ECOMPACTED);
	REQUIRE_INT(mvcc_read_events(&f.m, t, mid + 1, cur, 0, true, ev_visit, &ec, &next), 0);
	mdb_txn_abort(t);
	CHECK_INT(ec.n, cur - mid);
	CHECK_INT(next, cur + 1);
	CHECK(ec.with_prev > 3000);

	/* After a reopen: the same hash; the next put continues the key's
	 * state (here deleted by the last write: a new generation). */
	REQUIRE(hist[cur][1].version == 0 && hist[cur - 1][1].version > 1);
	uint32_t h1, h2;
	int64_t cr, hr;
	t = fx_rtxn(&f);
	REQUIRE_INT(mvcc_hash_kv(&f.m, t, 0, &h1, &cr, &hr), 0);
	mdb_txn_abort(t);
	fx_reopen(&f);
	t = fx_rtxn(&f);
	REQUIRE_INT(mvcc_hash_kv(&f.m, t, 0, &h2, &cr, &hr), 0);
	mdb_txn_abort(t);
	CHECK_INT(h2, h1);
	CHECK_INT(cr, mid);
	Etcdserverpb__PutResponse pr;
	REQUIRE_INT(fx_put(&f, "deep", "after", &pr), 0);
	Mvccpb__KeyValue *kv = fx_get(&f, "deep", 0);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->version, 1);
	CHECK_INT(kv->create_revision, cur + 1);
	CHECK_INT(kv->mod_revision, cur + 1);

	/* Deleted and compacted for good: gone from the index. */
	REQUIRE_INT(fx_del(&f, "dee", B("def"), false, NULL), 0);
	REQUIRE_INT(fx_compact(&f, cur + 2), 0);
	CHECK_INT(fx_rev_entries(&f), 0);
	CHECK_INT(fx_key_entries(&f), 0);
	rq = fx_rq("dee", B("def"));
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_INT(rr.count, 0);
	free(hist);
	fx_close(&f);
}

UNIT_MAIN(TEST_ENTRY(deep_history))
