/* test_apply.c - apply_batch/apply_range/apply_encode_batch: one revision
 * per request, failures isolated per request, the NOSPACE alarm, leases. */
#include <stdlib.h>

#include "core/apply.h"
#include "core/lease.h"
#include "fixture.h"
#include "unit.h"

#define NONE ((ProtobufCBinaryData){0, NULL})

static const struct apply_header HDR = {.cluster_id = 11, .member_id = 22, .raft_term = 33};

/* A batch built in the fixture's arena. */
struct batch {
	Bollard__Batch b;
	Bollard__Request *reqs[80];
	struct apply_result res[80];
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
	REQUIRE(r != NULL && b->b.n_requests < sizeof(b->reqs) / sizeof(b->reqs[0]));
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

/* Refusals come before a request's first write, so nothing is left behind;
 * a txn whose put with ignore_value follows a delete of the same key is
 * refused before its delete. */
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

/* ---- a failing request of every kind between succeeding ones ------------ */

#define LAST(b) ((b)->reqs[(b)->b.n_requests - 1])

static void *msg_new(struct fx *f, const ProtobufCMessageDescriptor *d)
{
	void *p = arena_calloc(&f->a, 1, d->sizeof_message);
	REQUIRE(p != NULL);
	protobuf_c_message_init(d, p);
	return p;
}

static void add_put_lease(struct fx *f, struct batch *b, const char *k, int64_t lease)
{
	add_put(f, b, k, "v");
	LAST(b)->put->lease = lease;
}

static void add_lease_grant(struct fx *f, struct batch *b, int64_t id, int64_t ttl)
{
	Etcdserverpb__LeaseGrantRequest *q = msg_new(f, &etcdserverpb__lease_grant_request__descriptor);
	Bollard__Request *r = add(f, b);
	q->id = id;
	q->ttl = ttl;
	r->op_case = BOLLARD__REQUEST__OP_LEASE_GRANT;
	r->lease_grant = q;
}

static void add_lease_revoke(struct fx *f, struct batch *b, int64_t id)
{
	Etcdserverpb__LeaseRevokeRequest *q =
		msg_new(f, &etcdserverpb__lease_revoke_request__descriptor);
	Bollard__Request *r = add(f, b);
	q->id = id;
	r->op_case = BOLLARD__REQUEST__OP_LEASE_REVOKE;
	r->lease_revoke = q;
}

/* A checkpoint of two leases, (id1, 10) and (id2, 20). */
static void add_checkpoint(struct fx *f, struct batch *b, int64_t id1, int64_t id2)
{
	Etcdserverpb__LeaseCheckpointRequest *q =
		msg_new(f, &etcdserverpb__lease_checkpoint_request__descriptor);
	Bollard__Request *r = add(f, b);
	q->checkpoints = arena_calloc(&f->a, 2, sizeof(*q->checkpoints));
	REQUIRE(q->checkpoints != NULL);
	for (int i = 0; i < 2; i++) {
		q->checkpoints[i] = msg_new(f, &etcdserverpb__lease_checkpoint__descriptor);
		q->checkpoints[i]->id = i ? id2 : id1;
		q->checkpoints[i]->remaining_ttl = 10 * (i + 1);
	}
	q->n_checkpoints = 2;
	r->op_case = BOLLARD__REQUEST__OP_LEASE_CHECKPOINT;
	r->lease_checkpoint = q;
}

/* An Auth request of kind c with message m (any of the oneof's). */
static Bollard__AuthRequest *add_auth(struct fx *f, struct batch *b,
                                      Bollard__AuthRequest__OpCase c, void *m)
{
	Bollard__AuthRequest *a = msg_new(f, &bollard__auth_request__descriptor);
	Bollard__Request *r = add(f, b);
	a->op_case = c;
	a->enable = m; /* the oneof's pointers share one slot */
	a->hashed_password = B("$2b$10$not.a.real.hash");
	a->simple_token = "tok";
	r->op_case = BOLLARD__REQUEST__OP_AUTH;
	r->auth = a;
	return a;
}

#define AUTH_MSG(f, T, desc) ((T *)msg_new(f, &desc))

static void add_user_add(struct fx *f, struct batch *b, const char *name)
{
	Etcdserverpb__AuthUserAddRequest *q = AUTH_MSG(
		f, Etcdserverpb__AuthUserAddRequest, etcdserverpb__auth_user_add_request__descriptor);
	q->name = (char *)name;
	add_auth(f, b, BOLLARD__AUTH_REQUEST__OP_USER_ADD, q);
}

static void add_user_delete(struct fx *f, struct batch *b, const char *name)
{
	Etcdserverpb__AuthUserDeleteRequest *q =
		AUTH_MSG(f, Etcdserverpb__AuthUserDeleteRequest,
		         etcdserverpb__auth_user_delete_request__descriptor);
	q->name = (char *)name;
	add_auth(f, b, BOLLARD__AUTH_REQUEST__OP_USER_DELETE, q);
}

static void add_user_passwd(struct fx *f, struct batch *b, const char *name)
{
	Etcdserverpb__AuthUserChangePasswordRequest *q =
		AUTH_MSG(f, Etcdserverpb__AuthUserChangePasswordRequest,
		         etcdserverpb__auth_user_change_password_request__descriptor);
	q->name = (char *)name;
	add_auth(f, b, BOLLARD__AUTH_REQUEST__OP_USER_CHANGE_PASSWORD, q);
}

static void add_user_get(struct fx *f, struct batch *b, const char *name)
{
	Etcdserverpb__AuthUserGetRequest *q = AUTH_MSG(
		f, Etcdserverpb__AuthUserGetRequest, etcdserverpb__auth_user_get_request__descriptor);
	q->name = (char *)name;
	add_auth(f, b, BOLLARD__AUTH_REQUEST__OP_USER_GET, q);
}

static void add_grant_role(struct fx *f, struct batch *b, const char *user, const char *role)
{
	Etcdserverpb__AuthUserGrantRoleRequest *q =
		AUTH_MSG(f, Etcdserverpb__AuthUserGrantRoleRequest,
		         etcdserverpb__auth_user_grant_role_request__descriptor);
	q->user = (char *)user;
	q->role = (char *)role;
	add_auth(f, b, BOLLARD__AUTH_REQUEST__OP_USER_GRANT_ROLE, q);
}

static void add_revoke_role(struct fx *f, struct batch *b, const char *user, const char *role)
{
	Etcdserverpb__AuthUserRevokeRoleRequest *q =
		AUTH_MSG(f, Etcdserverpb__AuthUserRevokeRoleRequest,
		         etcdserverpb__auth_user_revoke_role_request__descriptor);
	q->name = (char *)user;
	q->role = (char *)role;
	add_auth(f, b, BOLLARD__AUTH_REQUEST__OP_USER_REVOKE_ROLE, q);
}

static void add_role_add(struct fx *f, struct batch *b, const char *name)
{
	Etcdserverpb__AuthRoleAddRequest *q = AUTH_MSG(
		f, Etcdserverpb__AuthRoleAddRequest, etcdserverpb__auth_role_add_request__descriptor);
	q->name = (char *)name;
	add_auth(f, b, BOLLARD__AUTH_REQUEST__OP_ROLE_ADD, q);
}

static void add_role_delete(struct fx *f, struct batch *b, const char *name)
{
	Etcdserverpb__AuthRoleDeleteRequest *q =
		AUTH_MSG(f, Etcdserverpb__AuthRoleDeleteRequest,
		         etcdserverpb__auth_role_delete_request__descriptor);
	q->role = (char *)name;
	add_auth(f, b, BOLLARD__AUTH_REQUEST__OP_ROLE_DELETE, q);
}

static void add_role_get(struct fx *f, struct batch *b, const char *name)
{
	Etcdserverpb__AuthRoleGetRequest *q = AUTH_MSG(
		f, Etcdserverpb__AuthRoleGetRequest, etcdserverpb__auth_role_get_request__descriptor);
	q->role = (char *)name;
	add_auth(f, b, BOLLARD__AUTH_REQUEST__OP_ROLE_GET, q);
}

static void add_grant_perm(struct fx *f, struct batch *b, const char *role, const char *key,
                           const char *end)
{
	Etcdserverpb__AuthRoleGrantPermissionRequest *q =
		AUTH_MSG(f, Etcdserverpb__AuthRoleGrantPermissionRequest,
		         etcdserverpb__auth_role_grant_permission_request__descriptor);
	Authpb__Permission *p = AUTH_MSG(f, Authpb__Permission, authpb__permission__descriptor);
	p->permtype = AUTHPB__PERMISSION__TYPE__READWRITE;
	p->key = B(key);
	p->range_end = B(end);
	q->name = (char *)role;
	q->perm = p;
	add_auth(f, b, BOLLARD__AUTH_REQUEST__OP_ROLE_GRANT_PERMISSION, q);
}

static void add_revoke_perm(struct fx *f, struct batch *b, const char *role, const char *key,
                            const char *end)
{
	Etcdserverpb__AuthRoleRevokePermissionRequest *q =
		AUTH_MSG(f, Etcdserverpb__AuthRoleRevokePermissionRequest,
		         etcdserverpb__auth_role_revoke_permission_request__descriptor);
	q->role = (char *)role;
	q->key = B(key);
	q->range_end = B(end);
	add_auth(f, b, BOLLARD__AUTH_REQUEST__OP_ROLE_REVOKE_PERMISSION, q);
}

static void add_auth_enable(struct fx *f, struct batch *b, bool on)
{
	if (on)
		add_auth(f, b, BOLLARD__AUTH_REQUEST__OP_ENABLE,
		         msg_new(f, &etcdserverpb__auth_enable_request__descriptor));
	else
		add_auth(f, b, BOLLARD__AUTH_REQUEST__OP_DISABLE,
		         msg_new(f, &etcdserverpb__auth_disable_request__descriptor));
}

static void add_authenticate(struct fx *f, struct batch *b, const char *name)
{
	Etcdserverpb__AuthenticateRequest *q = AUTH_MSG(
		f, Etcdserverpb__AuthenticateRequest, etcdserverpb__authenticate_request__descriptor);
	q->name = (char *)name;
	q->password = "pw";
	add_auth(f, b, BOLLARD__AUTH_REQUEST__OP_AUTHENTICATE, q);
}

/* The same state in every fixture: keys a..c and l, m (on leases 100, 200),
 * compacted at 3; users alice (role r1: /x/ prefix) and bob (role r2). */
static void trace_setup(struct fx *f)
{
	struct batch b;
	batch_init(&b);
	add_put(f, &b, "a", "1"); /* 2 */
	add_put(f, &b, "b", "1"); /* 3 */
	add_put(f, &b, "c", "1"); /* 4 */
	add_put(f, &b, "a", "2"); /* 5 */
	add_compact(f, &b, 3);
	add_lease_grant(f, &b, 100, 60);
	add_lease_grant(f, &b, 200, 60);
	add_put_lease(f, &b, "l", 100); /* 6 */
	add_put_lease(f, &b, "m", 200); /* 7 */
	add_user_add(f, &b, "alice");
	add_user_add(f, &b, "bob");
	add_role_add(f, &b, "r1");
	add_role_add(f, &b, "r2");
	add_grant_role(f, &b, "alice", "r1");
	add_grant_role(f, &b, "bob", "r2");
	add_grant_perm(f, &b, "r1", "/x/", "/x0");
	REQUIRE_INT(run(f, &b), 0);
	for (size_t i = 0; i < b.b.n_requests; i++)
		CHECK_INT(b.res[i].err, 0);
	free_results(&b);
}

/* The batch with every failing request (all) and the same batch without
 * them (ok): what each request of all should get. */
struct trace {
	struct batch all, ok;
	int want[80];
};

/* The request just added to t->all should get err; 0: it goes in ok too. */
static void expect(struct trace *t, int err)
{
	size_t i = t->all.b.n_requests - 1;
	t->want[i] = err;
	if (err == 0)
		t->ok.reqs[t->ok.b.n_requests++] = t->all.reqs[i];
}

/* A request that fails leaves no trace: applying a batch with a failing
 * request of every kind between succeeding ones gives the same databases
 * and, for every succeeding request, the same response byte for byte as the
 * batch without the failing ones. Requests that can fail only after a
 * write (an ignore_value put of a key an earlier op of its txn deleted)
 * are among them. */
TEST(failed_requests_leave_no_trace)
{
	struct fx f, g;
	struct trace t;
	fx_open(&f);
	fx_open(&g);
	trace_setup(&f);
	trace_setup(&g);
	batch_init(&t.all);
	batch_init(&t.ok);
	struct batch *b = &t.all;

	/* KV */
	add_put(&f, b, "p1", "1"); /* 8 */
	expect(&t, 0);
	add_put_lease(&f, b, "p2", 999);
	expect(&t, BOLLARD_ELEASE_NOT_FOUND);
	add_put(&f, b, "nope", "");
	LAST(b)->put->ignore_value = 1;
	expect(&t, BOLLARD_EKEY_NOT_FOUND);
	add_put(&f, b, "b", "");
	LAST(b)->put->ignore_lease = 1;
	LAST(b)->put->lease = 999;
	expect(&t, 0); /* 9: ignore_lease: lease 999 is not looked at */
	add_put(&f, b, "", "1");
	expect(&t, BOLLARD_EEMPTY_KEY);
	add_del(&f, b, "b", NONE); /* 10 */
	expect(&t, 0);
	{
		/* fails after its delete of c */
		Etcdserverpb__RequestOp *ops[] = {op_put(&f, "t1", "1"), op_del(&f, "c", NONE),
		                                  op_put(&f, "c", ""), NULL};
		ops[2]->request_put->ignore_value = 1;
		add_txn(&f, b, mk_txn(&f, NULL, ops, NULL));
		expect(&t, BOLLARD_EKEY_NOT_FOUND);
	}
	{
		/* the same two txn levels down, with ignore_lease and a range delete */
		Etcdserverpb__RequestOp *in[] = {op_put(&f, "a", ""), NULL};
		in[0]->request_put->ignore_lease = 1;
		Etcdserverpb__RequestOp *mid[] = {op_del(&f, "a", B("b")),
		                                  op_txn(&f, mk_txn(&f, NULL, in, NULL)), NULL};
		Etcdserverpb__Compare *cmp[] = {
			cmp_int(&f, "zz", NONE, ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION,
			        ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER, 0),
			NULL}; /* false: the failure branch */
		Etcdserverpb__RequestOp *ops[] = {op_put(&f, "t2", "1"),
		                                  op_txn(&f, mk_txn(&f, cmp, NULL, mid)), NULL};
		add_txn(&f, b, mk_txn(&f, NULL, ops, NULL));
		expect(&t, BOLLARD_EKEY_NOT_FOUND);
	}
	{
		/* a key deleted, put again, then put with ignore_value: fine */
		Etcdserverpb__RequestOp *ops[] = {op_del(&f, "a", NONE), op_put(&f, "a", "3"),
		                                  op_put(&f, "a", ""), op_range(&f, "a", NONE), NULL};
		ops[2]->request_put->ignore_value = 1;
		ops[3]->request_range->revision = 3; /* the compacted revision itself */
		add_txn(&f, b, mk_txn(&f, NULL, ops, NULL)); /* 11 */
		expect(&t, 0);
	}
	{
		Etcdserverpb__RequestOp *ops[] = {op_put(&f, "t3", "1"), op_range(&f, "a", NONE), NULL};
		ops[1]->request_range->revision = 2;
		add_txn(&f, b, mk_txn(&f, NULL, ops, NULL));
		expect(&t, BOLLARD_ECOMPACTED);
	}
	{
		Etcdserverpb__RequestOp *ops[] = {op_put(&f, "t4", "1"), op_range(&f, "a", NONE), NULL};
		ops[1]->request_range->revision = 12; /* the txn's own revision */
		add_txn(&f, b, mk_txn(&f, NULL, ops, NULL));
		expect(&t, BOLLARD_EFUTURE_REV);
	}
	{
		Etcdserverpb__RequestOp *ops[] = {op_put(&f, "t5", "1"), op_put(&f, "t6", "1"), NULL};
		ops[1]->request_put->lease = 999;
		add_txn(&f, b, mk_txn(&f, NULL, ops, NULL));
		expect(&t, BOLLARD_ELEASE_NOT_FOUND);
	}
	add(&f, b); /* no op */
	expect(&t, BOLLARD_EBAD_REQUEST);

	/* compaction, alarms, NOSPACE */
	add_compact(&f, b, 2);
	expect(&t, BOLLARD_ECOMPACTED);
	add_compact(&f, b, 99);
	expect(&t, BOLLARD_EFUTURE_REV);
	add_compact(&f, b, 4);
	expect(&t, 0);
	add_alarm(&f, b, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE, 7,
	          ETCDSERVERPB__ALARM_TYPE__NOSPACE);
	expect(&t, 0);
	add_put(&f, b, "p3", "1");
	expect(&t, BOLLARD_ENO_SPACE);
	{
		Etcdserverpb__RequestOp *ops[] = {op_del(&f, "p1", NONE), op_put(&f, "p3", "1"), NULL};
		add_txn(&f, b, mk_txn(&f, NULL, ops, NULL));
		expect(&t, BOLLARD_ENO_SPACE);
	}
	add_lease_grant(&f, b, 300, 60);
	expect(&t, BOLLARD_ENO_SPACE);
	add_alarm(&f, b, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE, 7,
	          ETCDSERVERPB__ALARM_TYPE__NOSPACE);
	expect(&t, 0);

	/* leases */
	add_lease_grant(&f, b, 100, 60);
	expect(&t, BOLLARD_ELEASE_EXIST);
	add_lease_grant(&f, b, 300, LEASE_MAX_TTL + 1);
	expect(&t, BOLLARD_ELEASE_TTL_TOO_LARGE);
	add_lease_grant(&f, b, -5, 60);
	expect(&t, BOLLARD_ELEASE_NOT_FOUND);
	add_lease_grant(&f, b, 300, 60);
	expect(&t, 0);
	add_lease_grant(&f, b, 0, 60); /* an ID from the counter */
	expect(&t, 0);
	add_lease_revoke(&f, b, 999);
	expect(&t, BOLLARD_ELEASE_NOT_FOUND);
	add_lease_revoke(&f, b, 100); /* 12: deletes l */
	expect(&t, 0);
	add_lease_revoke(&f, b, 100);
	expect(&t, BOLLARD_ELEASE_NOT_FOUND);
	add_checkpoint(&f, b, 999, 200); /* an unknown lease is skipped */
	expect(&t, 0);

	/* auth, disabled */
	add_user_add(&f, b, "alice");
	expect(&t, BOLLARD_EUSER_ALREADY_EXIST);
	add_user_add(&f, b, "");
	expect(&t, BOLLARD_EUSER_EMPTY);
	add_user_add(&f, b, "carol");
	expect(&t, 0);
	add_user_delete(&f, b, "zed");
	expect(&t, BOLLARD_EUSER_NOT_FOUND);
	add_user_passwd(&f, b, "zed");
	expect(&t, BOLLARD_EUSER_NOT_FOUND);
	add_user_passwd(&f, b, "carol");
	expect(&t, 0);
	add_user_get(&f, b, "zed");
	expect(&t, BOLLARD_EUSER_NOT_FOUND);
	add_grant_role(&f, b, "zed", "r1");
	expect(&t, BOLLARD_EUSER_NOT_FOUND);
	add_grant_role(&f, b, "carol", "nor");
	expect(&t, BOLLARD_EROLE_NOT_FOUND);
	add_revoke_role(&f, b, "bob", "r1");
	expect(&t, BOLLARD_EROLE_NOT_GRANTED);
	add_revoke_role(&f, b, "zed", "r1");
	expect(&t, BOLLARD_EUSER_NOT_FOUND);
	add_role_add(&f, b, "r1");
	expect(&t, BOLLARD_EROLE_ALREADY_EXIST);
	add_role_add(&f, b, "");
	expect(&t, BOLLARD_EROLE_EMPTY);
	add_role_add(&f, b, "r3");
	expect(&t, 0);
	add_grant_role(&f, b, "carol", "r3");
	expect(&t, 0);
	add_grant_role(&f, b, "alice", "r3");
	expect(&t, 0);
	add_role_delete(&f, b, "nor");
	expect(&t, BOLLARD_EROLE_NOT_FOUND);
	add_role_get(&f, b, "nor");
	expect(&t, BOLLARD_EROLE_NOT_FOUND);
	add_role_delete(&f, b, "r3"); /* and from carol's and alice's roles */
	expect(&t, 0);
	add_grant_perm(&f, b, "nor", "/y/", "/y0");
	expect(&t, BOLLARD_EROLE_NOT_FOUND);
	add_revoke_perm(&f, b, "r1", "/y/", "/y0");
	expect(&t, BOLLARD_EPERMISSION_NOT_GRANTED);
	add_revoke_perm(&f, b, "nor", "/x/", "/x0");
	expect(&t, BOLLARD_EROLE_NOT_FOUND);
	add_grant_perm(&f, b, "r2", "/y/", "/y0");
	expect(&t, 0);
	add_auth_enable(&f, b, true);
	expect(&t, BOLLARD_EROOT_USER_NOT_EXIST);
	add_authenticate(&f, b, "alice");
	expect(&t, BOLLARD_EAUTH_NOT_ENABLED);
	add_user_add(&f, b, "root");
	expect(&t, 0);
	add_auth_enable(&f, b, true);
	expect(&t, BOLLARD_EROOT_ROLE_NOT_EXIST);
	add_grant_role(&f, b, "root", "root");
	expect(&t, 0);
	add_auth_enable(&f, b, true);
	expect(&t, 0);

	/* auth, enabled: alice may write /x/ only */
	add_put(&f, b, "/x/1", "1"); /* 13 */
	LAST(b)->auth_user = "alice";
	LAST(b)->auth_revision = 1000;
	expect(&t, 0);
	add_put(&f, b, "/q", "1");
	LAST(b)->auth_user = "alice";
	LAST(b)->auth_revision = 1000;
	expect(&t, BOLLARD_EPERMISSION_DENIED);
	add_put(&f, b, "/x/2", "1");
	LAST(b)->auth_user = "alice";
	LAST(b)->auth_revision = 1;
	expect(&t, BOLLARD_EAUTH_OLD_REVISION);
	add_put(&f, b, "/x/2", "1");
	expect(&t, BOLLARD_EUSER_EMPTY);
	{
		Etcdserverpb__RequestOp *ops[] = {op_put(&f, "/x/3", "1"), op_del(&f, "/q", NONE), NULL};
		add_txn(&f, b, mk_txn(&f, NULL, ops, NULL));
		LAST(b)->auth_user = "alice";
		LAST(b)->auth_revision = 1000;
		expect(&t, BOLLARD_EPERMISSION_DENIED);
	}
	add_lease_revoke(&f, b, 200); /* key m is not alice's */
	LAST(b)->auth_user = "alice";
	LAST(b)->auth_revision = 1000;
	expect(&t, BOLLARD_EPERMISSION_DENIED);
	add_user_add(&f, b, "dave");
	LAST(b)->auth_user = "alice";
	LAST(b)->auth_revision = 1000;
	expect(&t, BOLLARD_EPERMISSION_DENIED);
	add_authenticate(&f, b, "zed");
	expect(&t, BOLLARD_EAUTH_FAILED);
	add_authenticate(&f, b, "alice");
	expect(&t, 0);
	for (int i = 0; i < 3; i++) {
		if (i == 0)
			add_user_delete(&f, b, "root");
		else if (i == 1)
			add_revoke_role(&f, b, "root", "root");
		else
			add_role_delete(&f, b, "root");
		LAST(b)->auth_user = "root";
		LAST(b)->auth_revision = 1000;
		expect(&t, BOLLARD_EINVALID_AUTH_MGMT);
	}
	add_user_delete(&f, b, "carol");
	LAST(b)->auth_user = "root";
	LAST(b)->auth_revision = 1000;
	expect(&t, 0);
	add_auth_enable(&f, b, false);
	LAST(b)->auth_user = "root";
	LAST(b)->auth_revision = 1000;
	expect(&t, 0);
	add_put(&f, b, "p4", "1"); /* 14 */
	expect(&t, 0);

	REQUIRE_INT(run(&f, &t.all), 0);
	REQUIRE_INT(run(&g, &t.ok), 0);
	size_t j = 0;
	for (size_t i = 0; i < t.all.b.n_requests; i++) {
		const struct apply_result *r = &t.all.res[i];
		if (r->err != t.want[i])
			unit_fail(__FILE__, __LINE__, "request %zu: error %d (%s), expected %d (%s)", i,
			          r->err, bollard_strerror(r->err), t.want[i],
			          bollard_strerror(t.want[i]));
		if (t.want[i] != 0) {
			CHECK(r->resp == NULL);
			continue;
		}
		const struct apply_result *o = &t.ok.res[j++];
		CHECK_INT(o->request_id, r->request_id);
		CHECK_INT(o->err, 0);
		if (o->len != r->len || memcmp(o->resp, r->resp, r->len) != 0)
			unit_fail(__FILE__, __LINE__, "request %zu: response differs", i);
	}
	CHECK_INT(j, t.ok.b.n_requests);
	CHECK(fx_same_databases(&f, &g));

	/* ... and the succeeding ones did apply. */
	CHECK_INT(fx_rev(&f), 14);
	CHECK_INT(fx_compacted(&f), 4);
	Mvccpb__KeyValue *kv = fx_get(&f, "a", 0);
	REQUIRE(kv != NULL);
	CHECK_BYTES(kv->value, "3");
	CHECK_INT(kv->mod_revision, 11);
	CHECK_INT(kv->version, 2);
	CHECK(fx_get(&f, "l", 0) == NULL);
	CHECK(fx_get(&f, "c", 0) != NULL);
	CHECK(fx_get(&f, "b", 0) == NULL);
	CHECK(fx_get(&f, "p1", 0) != NULL);
	CHECK(fx_get(&f, "t1", 0) == NULL);
	CHECK(fx_get(&f, "/x/1", 0) != NULL);
	CHECK(fx_get(&f, "p4", 0) != NULL);
	free_results(&t.all);
	free_results(&t.ok);
	fx_close(&g);
	fx_close(&f);
}

/* The hand packers give protobuf-c's bytes: the raft entry's batch
 * (apply_batch_pack) and a put's response (apply.c pack_put_plain). */
TEST(hand_packed_bytes)
{
	struct fx f;
	struct batch b;
	fx_open(&f);
	batch_init(&b);
	add_put(&f, &b, "a", "1");
	b.reqs[b.b.n_requests - 1]->id = 0; /* a zero field is left out */
	add_put(&f, &b, "b", "");
	b.reqs[b.b.n_requests - 1]->id = UINT64_MAX;
	b.reqs[b.b.n_requests - 1]->put->prev_kv = true;
	add_del(&f, &b, "a", FROM_KEY);
	add_compact(&f, &b, 2);
	add_alarm(&f, &b, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET, 0,
	          ETCDSERVERPB__ALARM_TYPE__NONE);
	char big[300];
	memset(big, 'v', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	add_put(&f, &b, "c", big); /* a request longer than 127 bytes: 2-byte length */
	/* every field of a put request, in turn and together */
	for (int v = 0; v < 9; v++) {
		add_put(&f, &b, v == 1 ? "" : "k", v == 2 ? "" : "v");
		Bollard__Request *r = b.reqs[b.b.n_requests - 1];
		r->id = v == 3 ? 1u << 20 : (uint64_t)v;
		r->put->lease = v == 4 ? -1 : v == 5 ? 0x7f12345678 : 0;
		r->put->prev_kv = v == 6 || v == 8;
		r->put->ignore_value = v == 7 || v == 8;
		r->put->ignore_lease = v == 8;
		r->auth_user = v == 5 ? "alice" : v == 6 ? (char *)"" : NULL;
		r->auth_revision = v == 5 || v == 8 ? 300 : 0;
		r->origin = v == 7 ? 1 : v == 8 ? UINT64_MAX : 0; /* a forwarded write's member */
	}
	size_t sizes[80];
	size_t n = apply_batch_size(&b.b, sizes);
	CHECK_INT(n, bollard__batch__get_packed_size(&b.b));
	uint8_t *mine = malloc(n + 1), *theirs = malloc(n + 1);
	REQUIRE(mine != NULL && theirs != NULL);
	apply_batch_pack(&b.b, sizes, mine);
	bollard__batch__pack(&b.b, theirs);
	CHECK(memcmp(mine, theirs, n) == 0);
	free(mine);
	free(theirs);

	/* Put responses under headers with zero, small, large and negative
	 * fields: repacked by protobuf-c, the same bytes. */
	const struct apply_header hdrs[] = {
		{.cluster_id = 11, .member_id = 22, .raft_term = 33},
		{.cluster_id = 0, .member_id = UINT64_MAX, .raft_term = 0},
		{.cluster_id = 1u << 31, .member_id = 0, .raft_term = 1},
	};
	for (size_t h = 0; h < sizeof(hdrs) / sizeof(hdrs[0]); h++) {
		batch_init(&b);
		add_put(&f, &b, "k", "v");
		add_put(&f, &b, "k", "w");
		b.reqs[b.b.n_requests - 1]->put->prev_kv = true; /* protobuf-c's packer */
		MDB_txn *t = fx_wtxn(&f);
		REQUIRE_INT(apply_batch(&f.m, t, &hdrs[h], &b.b, b.res), 0);
		fx_commit(t);
		for (size_t i = 0; i < b.b.n_requests; i++) {
			REQUIRE_INT(b.res[i].err, 0);
			Etcdserverpb__PutResponse *pr =
				etcdserverpb__put_response__unpack(NULL, b.res[i].len, b.res[i].resp);
			REQUIRE(pr != NULL && pr->header != NULL);
			CHECK_INT(pr->header->cluster_id, hdrs[h].cluster_id);
			CHECK_INT(pr->header->member_id, hdrs[h].member_id);
			CHECK_INT(pr->header->raft_term, hdrs[h].raft_term);
			CHECK_INT(pr->header->revision, fx_rev(&f) - 1 + (int64_t)i);
			CHECK_INT(pr->prev_kv != NULL, i == 1);
			size_t len = etcdserverpb__put_response__get_packed_size(pr);
			uint8_t *re = malloc(len + 1);
			REQUIRE(re != NULL);
			etcdserverpb__put_response__pack(pr, re);
			CHECK_INT(len, b.res[i].len);
			CHECK(memcmp(re, b.res[i].resp, len) == 0);
			free(re);
			etcdserverpb__put_response__free_unpacked(pr, NULL);
		}
		free_results(&b);
	}
	fx_close(&f);
}

/* A batch gives what its requests give one batch each: the same answers
 * (bytes), the same revision and the same history (HashKV). apply_batch_ex
 * keeps the revision, the NOSPACE alarm and the auth flag across a run of
 * writes and stores the revision once; every other kind of request in
 * between must see and leave them as if each request were alone. */
static void add_mixed(struct fx *f, struct batch *b)
{
	add_put(f, b, "a", "1");
	add_put(f, b, "b", "2");
	add_lease_grant(f, b, 9, 60);
	add_put(f, b, "a", "3");
	b->reqs[b->b.n_requests - 1]->put->lease = 9;
	add_put(f, b, "z", "1");
	b->reqs[b->b.n_requests - 1]->put->lease = 8; /* refused: no lease 8 */
	add_del(f, b, "b", NONE);
	Etcdserverpb__RequestOp *ops[] = {op_put(f, "t", "1"), op_range(f, "a", FROM_KEY), NULL};
	add_txn(f, b, mk_txn(f, NULL, ops, NULL));
	add_put(f, b, "c", "4");
	add_compact(f, b, 3);
	add_put(f, b, "d", "5");
	add_lease_revoke(f, b, 9); /* deletes a */
	add_put(f, b, "e", "6");
	add_alarm(f, b, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE, 7,
	          ETCDSERVERPB__ALARM_TYPE__NOSPACE);
	add_put(f, b, "f", "7"); /* refused: no space */
	add_del(f, b, "c", NONE);
	add_alarm(f, b, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE, 7,
	          ETCDSERVERPB__ALARM_TYPE__NOSPACE);
	add_put(f, b, "g", "8");
	Etcdserverpb__RequestOp *ops2[] = {op_del(f, "d", NONE), op_put(f, "d", "9"), NULL};
	add_txn(f, b, mk_txn(f, NULL, ops2, NULL));
	add_put(f, b, "h", "10");
}

TEST(batch_equals_one_by_one)
{
	struct fx f, g;
	struct batch all, one;
	fx_open(&f);
	fx_open(&g);
	batch_init(&all);
	add_mixed(&f, &all);
	REQUIRE_INT(run(&f, &all), 0);
	batch_init(&one);
	add_mixed(&g, &one);
	size_t n = one.b.n_requests;
	for (size_t i = 0; i < n; i++) {
		struct batch single;
		batch_init(&single);
		single.reqs[0] = one.reqs[i];
		single.b.n_requests = 1;
		REQUIRE_INT(run(&g, &single), 0);
		CHECK_INT(single.res[0].err, all.res[i].err);
		CHECK_INT(single.res[0].len, all.res[i].len);
		CHECK(single.res[0].len == all.res[i].len &&
		      (single.res[0].len == 0 ||
		       memcmp(single.res[0].resp, all.res[i].resp, single.res[0].len) == 0));
		free_results(&single);
	}
	CHECK_INT(all.res[4].err, BOLLARD_ELEASE_NOT_FOUND);
	CHECK_INT(all.res[13].err, BOLLARD_ENO_SPACE);
	CHECK_INT(all.res[17].err, 0);
	CHECK_INT(fx_rev(&f), fx_rev(&g));
	CHECK_INT(fx_rev(&f), 14);
	uint32_t hf, hg;
	int64_t cf, cg, rf, rg;
	MDB_txn *t = fx_rtxn(&f);
	REQUIRE_INT(mvcc_hash_kv(&f.m, t, 0, &hf, &cf, &rf), 0);
	mdb_txn_abort(t);
	t = fx_rtxn(&g);
	REQUIRE_INT(mvcc_hash_kv(&g.m, t, 0, &hg, &cg, &rg), 0);
	mdb_txn_abort(t);
	CHECK_INT(hf, hg);
	CHECK_INT(cf, 3);
	CHECK_INT(rf, rg);
	free_results(&all);
	fx_close(&f);
	fx_close(&g);
}

/* mvcc_kv_pack writes what protobuf-c writes. */
TEST(kv_pack_bytes)
{
	char big[200];
	memset(big, 'x', sizeof(big));
	const int64_t nums[] = {0, 1, 127, 128, -1, INT64_MAX, INT64_MIN};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
		kv.key = (ProtobufCBinaryData){i % 3 == 0 ? 0 : 3, (uint8_t *)"key"};
		kv.value = (ProtobufCBinaryData){i % 2 ? sizeof(big) : i, (uint8_t *)big};
		kv.create_revision = nums[i];
		kv.mod_revision = nums[(i + 1) % 7];
		kv.version = nums[(i + 2) % 7];
		kv.lease = nums[(i + 3) % 7];
		size_t n = mvccpb__key_value__get_packed_size(&kv);
		CHECK_INT(mvcc_kv_packed_size(&kv), n);
		uint8_t mine[400], theirs[400];
		REQUIRE(n <= sizeof(mine));
		CHECK_INT(mvcc_kv_pack(&kv, mine), n);
		mvccpb__key_value__pack(&kv, theirs);
		CHECK(memcmp(mine, theirs, n) == 0);
	}
}

UNIT_MAIN(TEST_ENTRY(batch_revisions_and_isolated_failures),
          TEST_ENTRY(failures_leave_nothing_behind), TEST_ENTRY(leases_not_found_yet),
          TEST_ENTRY(compaction_request), TEST_ENTRY(nospace_alarm),
          TEST_ENTRY(alarm_list_and_types), TEST_ENTRY(apply_range_packs),
          TEST_ENTRY(encode_batch_round_trip), TEST_ENTRY(failed_requests_leave_no_trace),
          TEST_ENTRY(hand_packed_bytes), TEST_ENTRY(batch_equals_one_by_one),
          TEST_ENTRY(kv_pack_bytes))
