/* test_apply.c - apply_batch/apply_range/apply_encode_batch: one revision
 * per request, failures isolated per request, the NOSPACE alarm, leases. */
#include <stdlib.h>

#include "core/apply.h"
#include "fixture.h"
#include "unit.h"

#define NONE ((ProtobufCBinaryData){0, NULL})

static const struct apply_header HDR = {.cluster_id = 11, .member_id = 22, .raft_term = 33};

/* A batch built in the fixture's arena. */
struct batch {
	Bollard__Batch b;
	Bollard__Request *reqs[16];
	struct apply_result res[16];
};

static void batch_init(struct batch *b)
{
	memset(b, 0, sizeof(*b));
	b->b = (Bollard__Batch)BOLLARD__BATCH__INIT;
	b->b.requests = b->reqs;
}

static Bollard__Request *add(struct fx *f, struct batch *b)
{
	Bollard__Request *r = arena_calloc(&f->a, 1, sizeof(*r));
	REQUIRE(r != NULL);
	*r = (Bollard__Request)BOLLARD__REQUEST__INIT;
	r->id = 100 + b->b.n_requests;
	b->reqs[b->b.n_requests++] = r;
	return r;
}

static void add_put(struct fx *f, struct batch *b, const char *k, const char *v)
{
	Bollard__Request *r = add(f, b);
	r->op_case = BOLLARD__REQUEST__OP_PUT;
	r->put = op_put(f, k, v)->request_put;
}

static void add_del(struct fx *f, struct batch *b, const char *k, ProtobufCBinaryData end)
{
	Bollard__Request *r = add(f, b);
	r->op_case = BOLLARD__REQUEST__OP_DELETE_RANGE;
	r->delete_range = op_del(f, k, end)->request_delete_range;
}

static void add_txn(struct fx *f, struct batch *b, Etcdserverpb__TxnRequest *t)
{
	Bollard__Request *r = add(f, b);
	r->op_case = BOLLARD__REQUEST__OP_TXN;
	r->txn = t;
}

static void add_compact(struct fx *f, struct batch *b, int64_t rev)
{
	Bollard__Request *r = add(f, b);
	Etcdserverpb__CompactionRequest *c = arena_calloc(&f->a, 1, sizeof(*c));
	*c = (Etcdserverpb__CompactionRequest)ETCDSERVERPB__COMPACTION_REQUEST__INIT;
	c->revision = rev;
	r->op_case = BOLLARD__REQUEST__OP_COMPACTION;
	r->compaction = c;
}

static void add_alarm(struct fx *f, struct batch *b, Etcdserverpb__AlarmRequest__AlarmAction act,
                      uint64_t member, Etcdserverpb__AlarmType type)
{
	Bollard__Request *r = add(f, b);
	Etcdserverpb__AlarmRequest *a = arena_calloc(&f->a, 1, sizeof(*a));
	*a = (Etcdserverpb__AlarmRequest)ETCDSERVERPB__ALARM_REQUEST__INIT;
	a->action = act;
	a->memberid = member;
	a->alarm = type;
	r->op_case = BOLLARD__REQUEST__OP_ALARM;
	r->alarm = a;
}

static int run(struct fx *f, struct batch *b)
{
	MDB_txn *t = fx_wtxn(f);
	int rc = apply_batch(&f->m, t, &HDR, &b->b, b->res);
	if (rc == 0)
		fx_commit(t);
	else
		mdb_txn_abort(t);
	return rc;
}

static void free_results(struct batch *b)
{
	for (size_t i = 0; i < b->b.n_requests; i++)
		free(b->res[i].resp);
}

static void check_header(const Etcdserverpb__ResponseHeader *h, int64_t rev)
{
	REQUIRE(h != NULL);
	CHECK_INT(h->cluster_id, 11);
	CHECK_INT(h->member_id, 22);
	CHECK_INT(h->raft_term, 33);
	CHECK_INT(h->revision, rev);
}

TEST(batch_revisions_and_isolated_failures)
{
	struct fx f;
	struct batch b;
	fx_open(&f);
	batch_init(&b);
	add_put(&f, &b, "a", "1");                      /* rev 2 */
	add_put(&f, &b, "b", "2");                      /* rev 3 */
	add_put(&f, &b, "c", "");                       /* fails: ignore_value, missing */
	b.reqs[2]->put->ignore_value = 1;
	add_del(&f, &b, "a", NONE);                     /* rev 4 */
	Etcdserverpb__RequestOp *ops[] = {op_put(&f, "t", "1"), op_range(&f, "a", FROM_KEY), NULL};
	add_txn(&f, &b, mk_txn(&f, NULL, ops, NULL));   /* rev 5 */
	add_del(&f, &b, "zzz", NONE);                   /* no change: rev stays 5 */
	Etcdserverpb__RequestOp *bad[] = {op_put(&f, "u", "1"), op_range(&f, "a", NONE), NULL};
	bad[1]->request_range->revision = 99;
	add_txn(&f, &b, mk_txn(&f, NULL, bad, NULL));   /* fails: future revision */
	add_put(&f, &b, "d", "4");                      /* rev 6 */
	Bollard__Request *empty = add(&f, &b);          /* no op */
	(void)empty;
	REQUIRE_INT(run(&f, &b), 0);

	for (size_t i = 0; i < b.b.n_requests; i++)
		CHECK_INT(b.res[i].request_id, 100 + i);
	int64_t put_revs[] = {2, 3};
	for (int i = 0; i < 2; i++) {
		REQUIRE_INT(b.res[i].err, 0);
		Etcdserverpb__PutResponse *pr =
			etcdserverpb__put_response__unpack(NULL, b.res[i].len, b.res[i].resp);
		REQUIRE(pr != NULL);
		check_header(pr->header, put_revs[i]);
		etcdserverpb__put_response__free_unpacked(pr, NULL);
	}
	CHECK_INT(b.res[2].err, BOLLARD_EKEY_NOT_FOUND);
	CHECK(b.res[2].resp == NULL);

	Etcdserverpb__DeleteRangeResponse *dr =
		etcdserverpb__delete_range_response__unpack(NULL, b.res[3].len, b.res[3].resp);
	REQUIRE(dr != NULL);
	check_header(dr->header, 4);
	CHECK_INT(dr->deleted, 1);
	etcdserverpb__delete_range_response__free_unpacked(dr, NULL);

	Etcdserverpb__TxnResponse *tr =
		etcdserverpb__txn_response__unpack(NULL, b.res[4].len, b.res[4].resp);
	REQUIRE(tr != NULL);
	check_header(tr->header, 5);
	REQUIRE_INT(tr->n_responses, 2);
	Etcdserverpb__RangeResponse *rr = tr->responses[1]->response_range;
	REQUIRE(rr != NULL);
	REQUIRE_INT(rr->n_kvs, 2); /* b and t: a deleted at 4 */
	CHECK_BYTES(rr->kvs[0]->key, "b");
	CHECK_BYTES(rr->kvs[1]->key, "t");
	/* sub-responses carry only the revision, as in etcd */
	CHECK_INT(rr->header->cluster_id, 0);
	CHECK_INT(rr->header->revision, 5);
	etcdserverpb__txn_response__free_unpacked(tr, NULL);

	dr = etcdserverpb__delete_range_response__unpack(NULL, b.res[5].len, b.res[5].resp);
	REQUIRE(dr != NULL);
	check_header(dr->header, 5);
	CHECK_INT(dr->deleted, 0);
	etcdserverpb__delete_range_response__free_unpacked(dr, NULL);

	CHECK_INT(b.res[6].err, BOLLARD_EFUTURE_REV);
	CHECK(fx_get(&f, "u", 0) == NULL);

	Etcdserverpb__PutResponse *pr =
		etcdserverpb__put_response__unpack(NULL, b.res[7].len, b.res[7].resp);
	REQUIRE(pr != NULL);
	check_header(pr->header, 6);
	etcdserverpb__put_response__free_unpacked(pr, NULL);
	CHECK_INT(b.res[8].err, BOLLARD_EBAD_REQUEST);

	CHECK_INT(fx_rev(&f), 6);
	CHECK(fx_get(&f, "c", 0) == NULL);
	CHECK(fx_get(&f, "t", 0) != NULL);
	free_results(&b);
	fx_close(&f);
}

/* Plain puts and txns of plain ops run without a nested LMDB transaction:
 * their refusals come before their first write, so nothing is left behind;
 * a txn that can fail after a write (a put with ignore_value after a delete
 * of the same key) is still rolled back as a whole. */
TEST(failures_leave_nothing_behind)
{
	struct fx f;
	struct batch b;
	fx_open(&f);
	batch_init(&b);
	add_put(&f, &b, "a", "1");                      /* rev 2 */
	add_put(&f, &b, "b", "1");                      /* fails: lease 7 not found */
	b.reqs[1]->put->lease = 7;
	add_put(&f, &b, "", "1");                       /* fails: empty key */
	Etcdserverpb__RequestOp *ops[] = {op_del(&f, "a", NONE), op_put(&f, "a", ""), NULL};
	ops[1]->request_put->ignore_value = 1;
	add_txn(&f, &b, mk_txn(&f, NULL, ops, NULL));   /* fails after its delete */
	Etcdserverpb__RequestOp *ops2[] = {op_put(&f, "c", "1"), op_put(&f, "d", "1"), NULL};
	ops2[1]->request_put->lease = 7;
	add_txn(&f, &b, mk_txn(&f, NULL, ops2, NULL));  /* fails: lease, before any put */
	add_put(&f, &b, "e", "1");                      /* rev 3 */
	REQUIRE_INT(run(&f, &b), 0);
	CHECK_INT(b.res[0].err, 0);
	CHECK_INT(b.res[1].err, BOLLARD_ELEASE_NOT_FOUND);
	CHECK_INT(b.res[2].err, BOLLARD_EEMPTY_KEY);
	CHECK_INT(b.res[3].err, BOLLARD_EKEY_NOT_FOUND);
	CHECK_INT(b.res[4].err, BOLLARD_ELEASE_NOT_FOUND);
	CHECK_INT(b.res[5].err, 0);
	CHECK_INT(fx_rev(&f), 3);
	Mvccpb__KeyValue *kv = fx_get(&f, "a", 0);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->mod_revision, 2);
	CHECK(fx_get(&f, "b", 0) == NULL);
	CHECK(fx_get(&f, "c", 0) == NULL);
	CHECK(fx_get(&f, "d", 0) == NULL);
	kv = fx_get(&f, "e", 0);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->mod_revision, 3);
	free_results(&b);
	fx_close(&f);
}

TEST(leases_not_found_yet)
{
	struct fx f;
	struct batch b;
	fx_open(&f);
	batch_init(&b);
	add_put(&f, &b, "a", "1");
	b.reqs[0]->put->lease = 5;
	Etcdserverpb__RequestOp *ops[] = {op_put(&f, "x", "1"), op_put(&f, "y", "1"), NULL};
	ops[1]->request_put->lease = 5;
	add_txn(&f, &b, mk_txn(&f, NULL, ops, NULL));
	add_put(&f, &b, "b", "1"); /* lease 0: fine */
	REQUIRE_INT(run(&f, &b), 0);
	CHECK_INT(b.res[0].err, BOLLARD_ELEASE_NOT_FOUND);
	CHECK_INT(b.res[1].err, BOLLARD_ELEASE_NOT_FOUND);
	CHECK_INT(b.res[2].err, 0);
	CHECK(fx_get(&f, "x", 0) == NULL);
	CHECK_INT(fx_rev(&f), 2);
	free_results(&b);
	fx_close(&f);
}

TEST(compaction_request)
{
	struct fx f;
	struct batch b;
	fx_open(&f);
	batch_init(&b);
	add_put(&f, &b, "a", "1"); /* 2 */
	add_put(&f, &b, "a", "2"); /* 3 */
	add_compact(&f, &b, 2);
	add_compact(&f, &b, 2);    /* already compacted */
	add_compact(&f, &b, 9);    /* future */
	REQUIRE_INT(run(&f, &b), 0);
	REQUIRE_INT(b.res[2].err, 0);
	Etcdserverpb__CompactionResponse *cr =
		etcdserverpb__compaction_response__unpack(NULL, b.res[2].len, b.res[2].resp);
	REQUIRE(cr != NULL);
	check_header(cr->header, 3);
	etcdserverpb__compaction_response__free_unpacked(cr, NULL);
	CHECK_INT(b.res[3].err, BOLLARD_ECOMPACTED);
	CHECK_INT(b.res[4].err, BOLLARD_EFUTURE_REV);
	CHECK_INT(fx_compacted(&f), 2);
	free_results(&b);
	fx_close(&f);
}

static Etcdserverpb__AlarmResponse *alarm_resp(struct batch *b, size_t i)
{
	if (b->res[i].err != 0 || b->res[i].resp == NULL)
		return NULL;
	return etcdserverpb__alarm_response__unpack(NULL, b->res[i].len, b->res[i].resp);
}

TEST(nospace_alarm)
{
	struct fx f;
	struct batch b;
	fx_open(&f);
	batch_init(&b);
	add_put(&f, &b, "a", "1"); /* 2 */
	add_put(&f, &b, "b", "1"); /* 3 */
	add_alarm(&f, &b, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE, 7,
	          ETCDSERVERPB__ALARM_TYPE__NOSPACE);
	add_put(&f, &b, "c", "1"); /* no space */
	Etcdserverpb__RequestOp *wp[] = {op_put(&f, "d", "1"), NULL};
	add_txn(&f, &b, mk_txn(&f, NULL, NULL, wp)); /* a put in any branch: no space */
	Etcdserverpb__RequestOp *np[] = {op_txn(&f, mk_txn(&f, NULL, wp, NULL)), NULL};
	add_txn(&f, &b, mk_txn(&f, NULL, np, NULL)); /* nested put: no space */
	Etcdserverpb__RequestOp *rd[] = {op_range(&f, "a", NONE), op_del(&f, "a", NONE), NULL};
	add_txn(&f, &b, mk_txn(&f, NULL, rd, NULL)); /* reads and deletes work: 4 */
	add_del(&f, &b, "b", NONE);                  /* 5 */
	add_compact(&f, &b, 4);
	REQUIRE_INT(run(&f, &b), 0);
	Etcdserverpb__AlarmResponse *ar = alarm_resp(&b, 2);
	REQUIRE(ar != NULL);
	check_header(ar->header, 3);
	REQUIRE_INT(ar->n_alarms, 1);
	CHECK_INT(ar->alarms[0]->memberid, 7);
	CHECK_INT(ar->alarms[0]->alarm, ETCDSERVERPB__ALARM_TYPE__NOSPACE);
	etcdserverpb__alarm_response__free_unpacked(ar, NULL);
	CHECK_INT(b.res[3].err, BOLLARD_ENO_SPACE);
	CHECK_INT(b.res[4].err, BOLLARD_ENO_SPACE);
	CHECK_INT(b.res[5].err, BOLLARD_ENO_SPACE);
	CHECK_INT(b.res[6].err, 0);
	CHECK_INT(b.res[7].err, 0);
	CHECK_INT(b.res[8].err, 0);
	CHECK_INT(fx_rev(&f), 5);
	free_results(&b);

	/* The alarm survives a restart. */
	fx_reopen(&f);
	batch_init(&b);
	add_put(&f, &b, "e", "1");
	add_alarm(&f, &b, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET, 0,
	          ETCDSERVERPB__ALARM_TYPE__NONE);
	add_alarm(&f, &b, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE, 7,
	          ETCDSERVERPB__ALARM_TYPE__NOSPACE);
	add_put(&f, &b, "e", "1"); /* 6 */
	add_alarm(&f, &b, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE, 7,
	          ETCDSERVERPB__ALARM_TYPE__NOSPACE);
	REQUIRE_INT(run(&f, &b), 0);
	CHECK_INT(b.res[0].err, BOLLARD_ENO_SPACE);
	ar = alarm_resp(&b, 1);
	REQUIRE(ar != NULL);
	REQUIRE_INT(ar->n_alarms, 1);
	CHECK_INT(ar->alarms[0]->memberid, 7);
	etcdserverpb__alarm_response__free_unpacked(ar, NULL);
	ar = alarm_resp(&b, 2);
	REQUIRE(ar != NULL);
	CHECK_INT(ar->n_alarms, 1);
	etcdserverpb__alarm_response__free_unpacked(ar, NULL);
	CHECK_INT(b.res[3].err, 0);
	ar = alarm_resp(&b, 4); /* deactivating again: nothing to report */
	REQUIRE(ar != NULL);
	CHECK_INT(ar->n_alarms, 0);
	etcdserverpb__alarm_response__free_unpacked(ar, NULL);
	CHECK_INT(fx_rev(&f), 6);
	free_results(&b);
	fx_close(&f);
}

TEST(alarm_list_and_types)
{
	struct fx f;
	struct batch b;
	fx_open(&f);
	batch_init(&b);
	add_alarm(&f, &b, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE, 2,
	          ETCDSERVERPB__ALARM_TYPE__CORRUPT);
	add_alarm(&f, &b, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE, 1,
	          ETCDSERVERPB__ALARM_TYPE__NOSPACE);
	add_alarm(&f, &b, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE, 1,
	          ETCDSERVERPB__ALARM_TYPE__NOSPACE); /* again: reported, not doubled */
	add_alarm(&f, &b, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET, 0,
	          ETCDSERVERPB__ALARM_TYPE__NONE);
	add_alarm(&f, &b, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET, 0,
	          ETCDSERVERPB__ALARM_TYPE__CORRUPT);
	add_put(&f, &b, "a", "1"); /* CORRUPT does not cap puts here */
	REQUIRE_INT(run(&f, &b), 0);
	Etcdserverpb__AlarmResponse *ar = alarm_resp(&b, 2);
	REQUIRE(ar != NULL);
	CHECK_INT(ar->n_alarms, 1);
	etcdserverpb__alarm_response__free_unpacked(ar, NULL);
	ar = alarm_resp(&b, 3);
	REQUIRE(ar != NULL);
	REQUIRE_INT(ar->n_alarms, 2);
	CHECK_INT(ar->alarms[0]->alarm, ETCDSERVERPB__ALARM_TYPE__NOSPACE);
	CHECK_INT(ar->alarms[0]->memberid, 1);
	CHECK_INT(ar->alarms[1]->alarm, ETCDSERVERPB__ALARM_TYPE__CORRUPT);
	CHECK_INT(ar->alarms[1]->memberid, 2);
	etcdserverpb__alarm_response__free_unpacked(ar, NULL);
	ar = alarm_resp(&b, 4);
	REQUIRE(ar != NULL);
	REQUIRE_INT(ar->n_alarms, 1);
	CHECK_INT(ar->alarms[0]->memberid, 2);
	etcdserverpb__alarm_response__free_unpacked(ar, NULL);
	free_results(&b);
	fx_close(&f);
}

TEST(apply_range_packs)
{
	struct fx f;
	fx_open(&f);
	REQUIRE_INT(fx_put(&f, "a", "1", NULL), 0);
	REQUIRE_INT(fx_put(&f, "b", "2", NULL), 0);
	Etcdserverpb__RangeRequest rq = fx_rq("a", FROM_KEY);
	uint8_t *buf;
	size_t len;
	MDB_txn *t = fx_rtxn(&f);
	REQUIRE_INT(apply_range(&f.m, t, &HDR, &rq, &buf, &len), 0);
	mdb_txn_abort(t);
	Etcdserverpb__RangeResponse *rr = etcdserverpb__range_response__unpack(NULL, len, buf);
	REQUIRE(rr != NULL);
	check_header(rr->header, 3);
	REQUIRE_INT(rr->n_kvs, 2);
	CHECK_BYTES(rr->kvs[1]->value, "2");
	CHECK_INT(rr->count, 2);
	etcdserverpb__range_response__free_unpacked(rr, NULL);
	free(buf);
	rq.revision = 10;
	t = fx_rtxn(&f);
	CHECK_INT(apply_range(&f.m, t, &HDR, &rq, &buf, &len), BOLLARD_EFUTURE_REV);
	mdb_txn_abort(t);
	fx_close(&f);
}

TEST(encode_batch_round_trip)
{
	struct fx f;
	struct batch b;
	fx_open(&f);
	batch_init(&b);
	add_put(&f, &b, "a", "1");
	add_del(&f, &b, "a", FROM_KEY);
	uint8_t *buf;
	size_t len;
	REQUIRE_INT(apply_encode_batch(&b.b, malloc, &buf, &len), 0);
	Bollard__Batch *back = bollard__batch__unpack(NULL, len, buf);
	REQUIRE(back != NULL);
	REQUIRE_INT(back->n_requests, 2);
	CHECK_INT(back->requests[0]->id, 100);
	CHECK_INT(back->requests[0]->op_case, BOLLARD__REQUEST__OP_PUT);
	CHECK_BYTES(back->requests[0]->put->key, "a");
	CHECK_INT(back->requests[1]->op_case, BOLLARD__REQUEST__OP_DELETE_RANGE);
	CHECK_INT(back->requests[1]->delete_range->range_end.len, 1);
	/* Applying the decoded batch works like the original. */
	struct apply_result res[2];
	MDB_txn *t = fx_wtxn(&f);
	REQUIRE_INT(apply_batch(&f.m, t, &HDR, back, res), 0);
	fx_commit(t);
	CHECK_INT(res[0].err, 0);
	CHECK_INT(res[1].err, 0);
	CHECK_INT(fx_rev(&f), 3);
	free(res[0].resp);
	free(res[1].resp);
	bollard__batch__free_unpacked(back, NULL);
	free(buf);
	/* An empty batch encodes and applies too. */
	batch_init(&b);
	REQUIRE_INT(apply_encode_batch(&b.b, malloc, &buf, &len), 0);
	CHECK_INT(len, 0);
	free(buf);
	fx_close(&f);
}

UNIT_MAIN(TEST_ENTRY(batch_revisions_and_isolated_failures),
          TEST_ENTRY(failures_leave_nothing_behind), TEST_ENTRY(leases_not_found_yet),
          TEST_ENTRY(compaction_request), TEST_ENTRY(nospace_alarm),
          TEST_ENTRY(alarm_list_and_types), TEST_ENTRY(apply_range_packs),
          TEST_ENTRY(encode_batch_round_trip))
