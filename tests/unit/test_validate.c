/* test_validate.c - etcd's pre-raft request checks (v3rpc/key.go). */
#include "core/validate.h"
#include "fixture.h"
#include "unit.h"

#define NONE ((ProtobufCBinaryData){0, NULL})

/* The builders need an arena; no LMDB is opened here. */
static struct fx *fx_new(void)
{
	static struct fx f; /* test-local: each test runs in its own process */
	arena_init(&f.a, 4096);
	return &f;
}

static Etcdserverpb__RequestOp *put_lease(struct fx *f, const char *k, int64_t lease)
{
	Etcdserverpb__RequestOp *op = op_put(f, k, "v");
	op->request_put->lease = lease;
	return op;
}

TEST(simple_requests)
{
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	CHECK_INT(validate_range(&r), BOLLARD_EEMPTY_KEY);
	r.range_end = FROM_KEY; /* a range_end does not make up for the key */
	CHECK_INT(validate_range(&r), BOLLARD_EEMPTY_KEY);
	r.key = FROM_KEY;
	CHECK_INT(validate_range(&r), 0);

	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	CHECK_INT(validate_delete_range(&d), BOLLARD_EEMPTY_KEY);
	d.key = B("k");
	CHECK_INT(validate_delete_range(&d), 0);

	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	CHECK_INT(validate_put(&p), BOLLARD_EEMPTY_KEY);
	p.key = B("k");
	CHECK_INT(validate_put(&p), 0);
	p.ignore_value = 1;
	CHECK_INT(validate_put(&p), 0);
	p.value = B("v");
	CHECK_INT(validate_put(&p), BOLLARD_EVALUE_PROVIDED);
	p.ignore_value = 0;
	p.ignore_lease = 1;
	CHECK_INT(validate_put(&p), 0);
	p.lease = 5;
	CHECK_INT(validate_put(&p), BOLLARD_ELEASE_PROVIDED);
	p.ignore_lease = 0;
	CHECK_INT(validate_put(&p), 0);
	/* Beyond etcd: keys longer than the store holds are refused early. */
	char big[MVCC_MAX_KEY_LEN + 2];
	memset(big, 'k', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	p.key = B(big);
	CHECK_INT(validate_put(&p), BOLLARD_EKEY_TOO_LONG);
	big[MVCC_MAX_KEY_LEN] = 0;
	p.key = B(big);
	CHECK_INT(validate_put(&p), 0);
}

TEST(txn_ops_checked_recursively)
{
	struct fx *f = fx_new();
	CHECK_INT(validate_txn(mk_txn(f, NULL, NULL, NULL), 128), 0);
	/* empty keys in compares and ops of either branch */
	Etcdserverpb__Compare *c[] = {cmp_val(f, "", NONE, 0, "x"), NULL};
	CHECK_INT(validate_txn(mk_txn(f, c, NULL, NULL), 128), BOLLARD_EEMPTY_KEY);
	Etcdserverpb__RequestOp *s1[] = {op_range(f, "", NONE), NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, s1, NULL), 128), BOLLARD_EEMPTY_KEY);
	Etcdserverpb__RequestOp *s2[] = {op_del(f, "", NONE), NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, NULL, s2), 128), BOLLARD_EEMPTY_KEY);
	Etcdserverpb__RequestOp *s3[] = {op_put(f, "a", "v"), NULL};
	s3[0]->request_put->ignore_value = 1;
	CHECK_INT(validate_txn(mk_txn(f, NULL, s3, NULL), 128), BOLLARD_EVALUE_PROVIDED);
	Etcdserverpb__RequestOp *s4[] = {put_lease(f, "a", 3), NULL};
	s4[0]->request_put->ignore_lease = 1;
	Etcdserverpb__RequestOp *nest[] = {op_txn(f, mk_txn(f, NULL, NULL, s4)), NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, nest, NULL), 128), BOLLARD_ELEASE_PROVIDED);
	/* an empty op is refused with etcd's "key not found" */
	Etcdserverpb__RequestOp empty = ETCDSERVERPB__REQUEST_OP__INIT;
	Etcdserverpb__RequestOp *s5[] = {&empty, NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, s5, NULL), 128), BOLLARD_EKEY_NOT_FOUND);
}

TEST(too_many_ops)
{
	struct fx *f = fx_new();
	Etcdserverpb__RequestOp *ops[6];
	const char *keys[] = {"a", "b", "c", "d", "e"};
	for (int i = 0; i < 5; i++)
		ops[i] = op_range(f, keys[i], NONE);
	ops[5] = NULL;
	CHECK_INT(validate_txn(mk_txn(f, NULL, ops, NULL), 5), 0);
	CHECK_INT(validate_txn(mk_txn(f, NULL, ops, NULL), 4), BOLLARD_ETOO_MANY_OPS);
	CHECK_INT(validate_txn(mk_txn(f, NULL, NULL, ops), 4), BOLLARD_ETOO_MANY_OPS);
	Etcdserverpb__Compare *c[6];
	for (int i = 0; i < 5; i++)
		c[i] = cmp_val(f, keys[i], NONE, 0, "x");
	c[5] = NULL;
	CHECK_INT(validate_txn(mk_txn(f, c, NULL, NULL), 4), BOLLARD_ETOO_MANY_OPS);
	/* the maximum of compares, success and failure counts, not their sum */
	CHECK_INT(validate_txn(mk_txn(f, c, ops, ops), 5), 0);
	/* nested txns get what the outer level leaves: 2 outer ops of 4 leave 2 */
	Etcdserverpb__RequestOp *three[] = {ops[0], ops[1], ops[2], NULL};
	Etcdserverpb__RequestOp *outer[] = {op_txn(f, mk_txn(f, NULL, three, NULL)), ops[3], NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, outer, NULL), 4), BOLLARD_ETOO_MANY_OPS);
	CHECK_INT(validate_txn(mk_txn(f, NULL, outer, NULL), 5), 0);
}

TEST(duplicate_keys)
{
	struct fx *f = fx_new();
	Etcdserverpb__RequestOp *d1[] = {op_put(f, "a", "1"), op_put(f, "a", "2"), NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, d1, NULL), 128), BOLLARD_EDUPLICATE_KEY);
	CHECK_INT(validate_txn(mk_txn(f, NULL, NULL, d1), 128), BOLLARD_EDUPLICATE_KEY);
	/* the same key in success and failure is fine */
	Etcdserverpb__RequestOp *p1[] = {op_put(f, "a", "1"), NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, p1, p1), 128), 0);
	/* a put and a delete of the same key */
	Etcdserverpb__RequestOp *d2[] = {op_del(f, "a", NONE), op_put(f, "a", "2"), NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, d2, NULL), 128), BOLLARD_EDUPLICATE_KEY);
	Etcdserverpb__RequestOp *d3[] = {op_put(f, "b", "2"), op_del(f, "a", B("c")), NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, d3, NULL), 128), BOLLARD_EDUPLICATE_KEY);
	Etcdserverpb__RequestOp *ok1[] = {op_put(f, "c", "2"), op_del(f, "a", B("c")), NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, ok1, NULL), 128), 0);
	/* two deletes, and reads, may overlap anything */
	Etcdserverpb__RequestOp *ok2[] = {op_del(f, "a", B("z")), op_del(f, "b", NONE),
	                                  op_range(f, "a", NONE), op_put(f, "zz", "1"), NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, ok2, NULL), 128), 0);
	/* as in etcd, the from-key form "\0" is taken literally: no overlap */
	Etcdserverpb__RequestOp *ok3[] = {op_del(f, "a", FROM_KEY), op_put(f, "b", "1"), NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, ok3, NULL), 128), 0);
}

TEST(duplicate_keys_nested)
{
	struct fx *f = fx_new();
	/* a nested put against an outer put */
	Etcdserverpb__RequestOp *in1[] = {op_put(f, "a", "1"), NULL};
	Etcdserverpb__RequestOp *o1[] = {op_txn(f, mk_txn(f, NULL, in1, NULL)), op_put(f, "a", "2"),
	                                 NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, o1, NULL), 128), BOLLARD_EDUPLICATE_KEY);
	/* a nested put inside an outer delete */
	Etcdserverpb__RequestOp *o2[] = {op_del(f, "a", B("b")), op_txn(f, mk_txn(f, NULL, NULL, in1)),
	                                 NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, o2, NULL), 128), BOLLARD_EDUPLICATE_KEY);
	/* an outer put inside a nested delete */
	Etcdserverpb__RequestOp *ind[] = {op_del(f, "a", NONE), NULL};
	Etcdserverpb__RequestOp *o3[] = {op_txn(f, mk_txn(f, NULL, ind, NULL)), op_put(f, "a", "2"),
	                                 NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, o3, NULL), 128), BOLLARD_EDUPLICATE_KEY);
	/* then/else of one nested txn may put the same key */
	Etcdserverpb__RequestOp *o4[] = {op_txn(f, mk_txn(f, NULL, in1, in1)), NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, o4, NULL), 128), 0);
	/* two nested txns putting the same key */
	Etcdserverpb__RequestOp *o5[] = {op_txn(f, mk_txn(f, NULL, in1, NULL)),
	                                 op_txn(f, mk_txn(f, NULL, NULL, in1)), NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, o5, NULL), 128), BOLLARD_EDUPLICATE_KEY);
	/* deep nesting */
	Etcdserverpb__RequestOp *lvl2[] = {op_txn(f, mk_txn(f, NULL, in1, NULL)), NULL};
	Etcdserverpb__RequestOp *o6[] = {op_txn(f, mk_txn(f, NULL, lvl2, NULL)), op_put(f, "a", "x"),
	                                 NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, o6, NULL), 128), BOLLARD_EDUPLICATE_KEY);
	/* outer success vs nested in failure: different branches, fine */
	Etcdserverpb__RequestOp *o7[] = {op_txn(f, mk_txn(f, NULL, in1, NULL)), NULL};
	CHECK_INT(validate_txn(mk_txn(f, NULL, in1, o7), 128), 0);
}

UNIT_MAIN(TEST_ENTRY(simple_requests), TEST_ENTRY(txn_ops_checked_recursively),
          TEST_ENTRY(too_many_ops), TEST_ENTRY(duplicate_keys), TEST_ENTRY(duplicate_keys_nested))
