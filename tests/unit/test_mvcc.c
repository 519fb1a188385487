/* test_mvcc.c - MVCC on LMDB: ranges, puts, deletes, generations, txns,
 * compaction, hashing and persistence, each on a fresh environment. */
#include <stdlib.h>

#include "fixture.h"
#include "unit.h"

#define NONE ((ProtobufCBinaryData){0, NULL})
#define EQ ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL
#define NE ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL
#define GT ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER
#define LT ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS
#define T_VERSION ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION
#define T_CREATE ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE
#define T_MOD ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD
#define T_LEASE ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE

/* Keys of a range response joined by ',' (arena-free: a static buffer per call site is
 * not allowed by the rules, so the caller passes one). */
static const char *keys_of(const Etcdserverpb__RangeResponse *r, char *buf, size_t cap)
{
	size_t off = 0;
	buf[0] = 0;
	for (size_t i = 0; i < r->n_kvs; i++) {
		int n = snprintf(buf + off, cap - off, "%s%.*s", i ? "," : "",
		                 (int)r->kvs[i]->key.len, (const char *)r->kvs[i]->key.data);
		if (n < 0 || (size_t)n >= cap - off)
			break;
		off += (size_t)n;
	}
	return buf;
}

#define CHECK_KEYS(resp, expect)                                                         \
	do {                                                                              \
		char kb_[512];                                                                \
		const char *got_ = keys_of(&(resp), kb_, sizeof(kb_));                        \
		if (strcmp(got_, (expect)) != 0)                                              \
			unit_fail(__FILE__, __LINE__, "keys \"%s\", expected \"%s\"", got_,      \
			          (expect));                                                  \
	} while (0)

TEST(empty_store)
{
	struct fx f;
	fx_open(&f);
	CHECK_INT(fx_rev(&f), 1);
	CHECK_INT(fx_compacted(&f), 0);
	Etcdserverpb__RangeRequest rq = fx_rq("a", FROM_KEY);
	Etcdserverpb__RangeResponse rr;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_INT(rr.count, 0);
	CHECK_INT(rr.n_kvs, 0);
	CHECK_INT(rr.header->revision, 1);
	CHECK(!rr.more);
	fx_close(&f);
}

TEST(put_and_get)
{
	struct fx f;
	Etcdserverpb__PutResponse pr;
	fx_open(&f);
	REQUIRE_INT(fx_put(&f, "foo", "bar", &pr), 0);
	CHECK_INT(pr.header->revision, 2);
	CHECK(pr.prev_kv == NULL);
	Mvccpb__KeyValue *kv = fx_get(&f, "foo", 0);
	REQUIRE(kv != NULL);
	CHECK_BYTES(kv->key, "foo");
	CHECK_BYTES(kv->value, "bar");
	CHECK_INT(kv->create_revision, 2);
	CHECK_INT(kv->mod_revision, 2);
	CHECK_INT(kv->version, 1);
	CHECK_INT(kv->lease, 0);
	REQUIRE_INT(fx_put(&f, "foo", "baz", &pr), 0);
	CHECK_INT(pr.header->revision, 3);
	kv = fx_get(&f, "foo", 0);
	REQUIRE(kv != NULL);
	CHECK_BYTES(kv->value, "baz");
	CHECK_INT(kv->create_revision, 2);
	CHECK_INT(kv->mod_revision, 3);
	CHECK_INT(kv->version, 2);
	CHECK_INT(fx_rev(&f), 3);
	/* An empty value is a value. */
	REQUIRE_INT(fx_put(&f, "empty", "", NULL), 0);
	kv = fx_get(&f, "empty", 0);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->value.len, 0);
	fx_close(&f);
}

TEST(put_prev_kv_ignore_value_ignore_lease)
{
	struct fx f;
	Etcdserverpb__PutResponse pr;
	Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
	fx_open(&f);
	/* ignore_value / ignore_lease need an existing key. */
	req.key = B("k");
	req.ignore_value = 1;
	CHECK_INT(fx_put_req(&f, &req, &pr), BOLLARD_EKEY_NOT_FOUND);
	req.ignore_value = 0;
	req.ignore_lease = 1;
	CHECK_INT(fx_put_req(&f, &req, &pr), BOLLARD_EKEY_NOT_FOUND);
	CHECK_INT(fx_rev(&f), 1);

	/* Plain mvcc accepts any lease (apply checks leases). */
	req = (Etcdserverpb__PutRequest)ETCDSERVERPB__PUT_REQUEST__INIT;
	req.key = B("k");
	req.value = B("v1");
	req.lease = 42;
	req.prev_kv = 1;
	REQUIRE_INT(fx_put_req(&f, &req, &pr), 0);
	CHECK(pr.prev_kv == NULL);

	/* ignore_value keeps the value, takes the new lease. */
	req = (Etcdserverpb__PutRequest)ETCDSERVERPB__PUT_REQUEST__INIT;
	req.key = B("k");
	req.ignore_value = 1;
	req.lease = 7;
	req.prev_kv = 1;
	REQUIRE_INT(fx_put_req(&f, &req, &pr), 0);
	REQUIRE(pr.prev_kv != NULL);
	CHECK_BYTES(pr.prev_kv->value, "v1");
	CHECK_INT(pr.prev_kv->lease, 42);
	CHECK_INT(pr.prev_kv->version, 1);
	Mvccpb__KeyValue *kv = fx_get(&f, "k", 0);
	REQUIRE(kv != NULL);
	CHECK_BYTES(kv->value, "v1");
	CHECK_INT(kv->lease, 7);
	CHECK_INT(kv->version, 2);

	/* ignore_lease keeps the lease, takes the new value. */
	req = (Etcdserverpb__PutRequest)ETCDSERVERPB__PUT_REQUEST__INIT;
	req.key = B("k");
	req.value = B("v2");
	req.ignore_lease = 1;
	REQUIRE_INT(fx_put_req(&f, &req, &pr), 0);
	CHECK(pr.prev_kv == NULL);
	kv = fx_get(&f, "k", 0);
	REQUIRE(kv != NULL);
	CHECK_BYTES(kv->value, "v2");
	CHECK_INT(kv->lease, 7);
	CHECK_INT(kv->version, 3);
	CHECK_INT(kv->mod_revision, 4);
	fx_close(&f);
}

TEST(key_limits)
{
	struct fx f;
	char big[600];
	fx_open(&f);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	CHECK_INT(fx_put(&f, big, "v", NULL), BOLLARD_EKEY_TOO_LONG);
	big[511] = 0;
	CHECK_INT(fx_put(&f, big, "v", NULL), 0);
	big[511] = 'x';
	/* A range from a key longer than any stored key finds nothing. */
	Etcdserverpb__RangeRequest rq = fx_rq(big, FROM_KEY);
	Etcdserverpb__RangeResponse rr;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_INT(rr.count, 0);
	rq = fx_rq(big, NONE);
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_INT(rr.count, 0);
	rq = fx_rq("x", FROM_KEY);
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_INT(rr.count, 1);
	CHECK_INT(fx_put(&f, "", "v", NULL), BOLLARD_EEMPTY_KEY);
	fx_close(&f);
}

static void put_abc(struct fx *f)
{
	/* a=2 ab=3 abc=4 b=5 c=6 */
	REQUIRE_INT(fx_put(f, "a", "1", NULL), 0);
	REQUIRE_INT(fx_put(f, "ab", "2", NULL), 0);
	REQUIRE_INT(fx_put(f, "abc", "3", NULL), 0);
	REQUIRE_INT(fx_put(f, "b", "4", NULL), 0);
	REQUIRE_INT(fx_put(f, "c", "5", NULL), 0);
}

TEST(range_forms)
{
	struct fx f;
	Etcdserverpb__RangeRequest rq;
	Etcdserverpb__RangeResponse rr;
	fx_open(&f);
	put_abc(&f);

	rq = fx_rq("ab", NONE);
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "ab");
	CHECK_INT(rr.count, 1);
	CHECK_INT(rr.header->revision, 6);

	rq = fx_rq("zz", NONE);
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "");
	CHECK_INT(rr.count, 0);

	rq = fx_rq("a", B("b")); /* prefix "a" */
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "a,ab,abc");
	CHECK_INT(rr.count, 3);

	rq = fx_rq("ab", B("b"));
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "ab,abc");

	rq = fx_rq("b", FROM_KEY);
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "b,c");

	rq = (Etcdserverpb__RangeRequest)ETCDSERVERPB__RANGE_REQUEST__INIT;
	rq.key = FROM_KEY;
	rq.range_end = FROM_KEY; /* every key */
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "a,ab,abc,b,c");
	CHECK_INT(rr.count, 5);

	rq = fx_rq("c", B("a")); /* end before key: nothing */
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_INT(rr.count, 0);

	rq = fx_rq("b", B("b")); /* empty interval */
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_INT(rr.count, 0);

	rq = fx_rq("aa", B("ac"));
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "ab,abc");
	fx_close(&f);
}

TEST(range_limit_more_count)
{
	struct fx f;
	Etcdserverpb__RangeRequest rq;
	Etcdserverpb__RangeResponse rr;
	fx_open(&f);
	put_abc(&f);
	rq = fx_rq("a", FROM_KEY);
	rq.limit = 2;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "a,ab");
	CHECK(rr.more);
	CHECK_INT(rr.count, 5);
	rq.limit = 5;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_INT(rr.n_kvs, 5);
	CHECK(!rr.more);
	CHECK_INT(rr.count, 5);
	rq.limit = 4;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_INT(rr.n_kvs, 4);
	CHECK(rr.more);
	rq.limit = 0;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_INT(rr.n_kvs, 5);
	CHECK(!rr.more);
	rq.limit = 100;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_INT(rr.n_kvs, 5);
	CHECK(!rr.more);
	/* count_only with a limit: no kvs, full count, no "more". */
	rq.limit = 1;
	rq.count_only = 1;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_INT(rr.n_kvs, 0);
	CHECK_INT(rr.count, 5);
	CHECK(!rr.more);
	fx_close(&f);
}

TEST(range_keys_only)
{
	struct fx f;
	Etcdserverpb__RangeRequest rq;
	Etcdserverpb__RangeResponse rr;
	fx_open(&f);
	put_abc(&f);
	rq = fx_rq("a", B("b"));
	rq.keys_only = 1;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "a,ab,abc");
	for (size_t i = 0; i < rr.n_kvs; i++) {
		CHECK_INT(rr.kvs[i]->value.len, 0);
		CHECK_INT(rr.kvs[i]->version, 1);
	}
	CHECK_INT(rr.kvs[1]->mod_revision, 3);
	fx_close(&f);
}

TEST(range_sort)
{
	struct fx f;
	Etcdserverpb__RangeRequest rq;
	Etcdserverpb__RangeResponse rr;
	fx_open(&f);
	/* a: ver 3, create 2, mod 7, value "m"; b: ver 1, create 3, mod 3, "z";
	 * c: ver 2, create 4, mod 6, "a" */
	REQUIRE_INT(fx_put(&f, "a", "x", NULL), 0); /* 2 */
	REQUIRE_INT(fx_put(&f, "b", "z", NULL), 0); /* 3 */
	REQUIRE_INT(fx_put(&f, "c", "q", NULL), 0); /* 4 */
	REQUIRE_INT(fx_put(&f, "a", "y", NULL), 0); /* 5 */
	REQUIRE_INT(fx_put(&f, "c", "a", NULL), 0); /* 6 */
	REQUIRE_INT(fx_put(&f, "a", "m", NULL), 0); /* 7 */
	rq = fx_rq("a", FROM_KEY);

	struct {
		Etcdserverpb__RangeRequest__SortTarget t;
		Etcdserverpb__RangeRequest__SortOrder o;
		const char *keys;
	} cases[] = {
		{ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE, "a,b,c"},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND, "a,b,c"},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, "c,b,a"},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND, "b,c,a"},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, "a,c,b"},
		/* target != KEY with order NONE sorts ascending, as etcd */
		{ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE, "b,c,a"},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND, "a,b,c"},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, "c,b,a"},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND, "b,c,a"},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, "a,c,b"},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE, "b,c,a"},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND, "c,a,b"},
		{ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND, "b,a,c"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rq.sort_target = cases[i].t;
		rq.sort_order = cases[i].o;
		REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
		CHECK_KEYS(rr, cases[i].keys);
		CHECK_INT(rr.count, 3);
	}
	/* Ties keep ascending key order in both directions (etcd's sort is
	 * stable on small inputs): d and e both have version 1 like b. */
	REQUIRE_INT(fx_put(&f, "e", "v", NULL), 0);
	REQUIRE_INT(fx_put(&f, "d", "v", NULL), 0);
	rq.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION;
	rq.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "a,c,b,d,e");
	rq.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "b,d,e,c,a");
	REQUIRE_INT(fx_del(&f, "d", (ProtobufCBinaryData){0, NULL}, false, NULL), 0);
	REQUIRE_INT(fx_del(&f, "e", (ProtobufCBinaryData){0, NULL}, false, NULL), 0);
	/* Sorting fetches everything, then truncates to the limit. */
	rq.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD;
	rq.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
	rq.limit = 2;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "a,c");
	CHECK(rr.more);
	CHECK_INT(rr.count, 3);
	rq.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY;
	rq.limit = 1;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "c");
	CHECK(rr.more);
	fx_close(&f);
}

TEST(range_min_max_filters)
{
	struct fx f;
	Etcdserverpb__RangeRequest rq;
	Etcdserverpb__RangeResponse rr;
	fx_open(&f);
	put_abc(&f);                                  /* a=2 ab=3 abc=4 b=5 c=6 */
	REQUIRE_INT(fx_put(&f, "a", "1b", NULL), 0); /* a: create 2, mod 7 */
	rq = fx_rq("a", FROM_KEY);
	rq.min_mod_revision = 4;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "a,abc,b,c");
	CHECK_INT(rr.count, 5); /* count ignores the filters, as etcd */
	rq.max_mod_revision = 5;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "abc,b");
	rq = fx_rq("a", FROM_KEY);
	rq.max_create_revision = 3;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "a,ab");
	rq.min_create_revision = 3;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "ab");
	/* filters with a limit: filter first, then truncate */
	rq = fx_rq("a", FROM_KEY);
	rq.min_mod_revision = 4;
	rq.limit = 2;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "a,abc");
	CHECK(rr.more);
	rq.limit = 4;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_INT(rr.n_kvs, 4);
	CHECK(!rr.more);
	fx_close(&f);
}

TEST(historic_reads)
{
	struct fx f;
	Etcdserverpb__RangeRequest rq;
	Etcdserverpb__RangeResponse rr;
	fx_open(&f);
	REQUIRE_INT(fx_put(&f, "k", "v1", NULL), 0); /* 2 */
	REQUIRE_INT(fx_put(&f, "j", "w1", NULL), 0); /* 3 */
	REQUIRE_INT(fx_put(&f, "k", "v2", NULL), 0); /* 4 */
	REQUIRE_INT(fx_del(&f, "j", NONE, false, NULL), 0); /* 5 */
	REQUIRE_INT(fx_put(&f, "k", "v3", NULL), 0); /* 6 */

	Mvccpb__KeyValue *kv = fx_get(&f, "k", 1);
	CHECK(kv == NULL);
	kv = fx_get(&f, "k", 2);
	REQUIRE(kv != NULL);
	CHECK_BYTES(kv->value, "v1");
	CHECK_INT(kv->version, 1);
	kv = fx_get(&f, "k", 3);
	REQUIRE(kv != NULL);
	CHECK_BYTES(kv->value, "v1");
	kv = fx_get(&f, "k", 5);
	REQUIRE(kv != NULL);
	CHECK_BYTES(kv->value, "v2");
	CHECK_INT(kv->version, 2);
	CHECK_INT(kv->mod_revision, 4);
	kv = fx_get(&f, "k", 6);
	REQUIRE(kv != NULL);
	CHECK_BYTES(kv->value, "v3");

	rq = fx_rq("a", FROM_KEY);
	rq.revision = 3;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "j,k");
	CHECK_INT(rr.header->revision, 6); /* the current revision */
	rq.revision = 4;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "j,k");
	rq.revision = 5;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "k");
	CHECK_INT(rr.count, 1);
	rq.revision = 2;
	rq.limit = 1;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "k");
	CHECK(!rr.more);
	rq.revision = 7;
	CHECK_INT(fx_range(&f, &rq, &rr), BOLLARD_EFUTURE_REV);
	rq.revision = -1; /* <= 0: current */
	rq.limit = 0;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "k");
	fx_close(&f);
}

TEST(tombstones_and_generations)
{
	struct fx f;
	fx_open(&f);
	REQUIRE_INT(fx_put(&f, "k", "a", NULL), 0); /* 2 */
	REQUIRE_INT(fx_put(&f, "k", "b", NULL), 0); /* 3 */
	Etcdserverpb__DeleteRangeResponse dr;
	REQUIRE_INT(fx_del(&f, "k", NONE, false, &dr), 0); /* 4 */
	CHECK_INT(dr.deleted, 1);
	CHECK_INT(dr.header->revision, 4);
	CHECK(fx_get(&f, "k", 0) == NULL);
	CHECK(fx_get(&f, "k", 4) == NULL);
	REQUIRE_INT(fx_put(&f, "k", "c", NULL), 0); /* 5 */
	Mvccpb__KeyValue *kv = fx_get(&f, "k", 0);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->version, 1);
	CHECK_INT(kv->create_revision, 5);
	CHECK_INT(kv->mod_revision, 5);
	kv = fx_get(&f, "k", 3);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->version, 2);
	CHECK_INT(kv->create_revision, 2);
	/* Deleting a missing key changes nothing, not even the revision. */
	REQUIRE_INT(fx_del(&f, "nope", NONE, false, &dr), 0);
	CHECK_INT(dr.deleted, 0);
	CHECK_INT(dr.header->revision, 5);
	CHECK_INT(fx_rev(&f), 5);
	/* Deleting a deleted key neither. */
	REQUIRE_INT(fx_del(&f, "k", NONE, false, NULL), 0); /* 6 */
	REQUIRE_INT(fx_del(&f, "k", NONE, false, &dr), 0);
	CHECK_INT(dr.deleted, 0);
	CHECK_INT(fx_rev(&f), 6);
	fx_close(&f);
}

TEST(delete_range_forms)
{
	struct fx f;
	Etcdserverpb__DeleteRangeResponse dr;
	Etcdserverpb__RangeRequest rq;
	Etcdserverpb__RangeResponse rr;
	fx_open(&f);
	put_abc(&f); /* a=2 ab=3 abc=4 b=5 c=6 */
	REQUIRE_INT(fx_del(&f, "ab", B("b"), true, &dr), 0);
	CHECK_INT(dr.deleted, 2);
	CHECK_INT(dr.header->revision, 7);
	REQUIRE_INT(dr.n_prev_kvs, 2);
	CHECK_BYTES(dr.prev_kvs[0]->key, "ab");
	CHECK_BYTES(dr.prev_kvs[0]->value, "2");
	CHECK_INT(dr.prev_kvs[0]->mod_revision, 3);
	CHECK_BYTES(dr.prev_kvs[1]->key, "abc");
	CHECK_BYTES(dr.prev_kvs[1]->value, "3");
	rq = fx_rq("a", FROM_KEY);
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "a,b,c");

	/* Both deletions share one revision. */
	CHECK_INT(fx_rev(&f), 7);

	REQUIRE_INT(fx_del(&f, "b", FROM_KEY, false, &dr), 0);
	CHECK_INT(dr.deleted, 2);
	CHECK_INT(dr.n_prev_kvs, 0);
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "a");

	REQUIRE_INT(fx_del(&f, "a", NONE, true, &dr), 0);
	CHECK_INT(dr.deleted, 1);
	REQUIRE_INT(dr.n_prev_kvs, 1);
	CHECK_BYTES(dr.prev_kvs[0]->value, "1");
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_INT(rr.count, 0);
	CHECK_INT(fx_rev(&f), 9);

	/* The history is still there. */
	rq.revision = 6;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "a,ab,abc,b,c");
	fx_close(&f);
}

TEST(txn_compares)
{
	struct fx f;
	Etcdserverpb__TxnResponse tr;
	fx_open(&f);
	REQUIRE_INT(fx_put(&f, "k", "v", NULL), 0);  /* 2 */
	REQUIRE_INT(fx_put(&f, "k", "w", NULL), 0);  /* 3: ver 2 create 2 mod 3 */
	Etcdserverpb__PutRequest pl = ETCDSERVERPB__PUT_REQUEST__INIT;
	pl.key = B("l");
	pl.value = B("x");
	pl.lease = 9;
	REQUIRE_INT(fx_put_req(&f, &pl, NULL), 0); /* 4 */

	struct {
		Etcdserverpb__Compare__CompareTarget t;
		Etcdserverpb__Compare__CompareResult r;
		int64_t v;
		bool want;
	} ints[] = {
		{T_VERSION, EQ, 2, true},  {T_VERSION, EQ, 1, false}, {T_VERSION, GT, 1, true},
		{T_VERSION, GT, 2, false}, {T_VERSION, LT, 3, true},  {T_VERSION, LT, 2, false},
		{T_VERSION, NE, 1, true},  {T_VERSION, NE, 2, false}, {T_CREATE, EQ, 2, true},
		{T_CREATE, GT, 2, false},  {T_CREATE, LT, 3, true},   {T_CREATE, NE, 2, false},
		{T_MOD, EQ, 3, true},      {T_MOD, GT, 2, true},      {T_MOD, LT, 3, false},
		{T_MOD, NE, 3, false},     {T_LEASE, EQ, 0, true},    {T_LEASE, GT, 0, false},
	};
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		Etcdserverpb__Compare *c[] = {cmp_int(&f, "k", NONE, ints[i].t, ints[i].r, ints[i].v),
		                              NULL};
		REQUIRE_INT(fx_txn(&f, mk_txn(&f, c, NULL, NULL), &tr), 0);
		if (tr.succeeded != ints[i].want)
			unit_fail(__FILE__, __LINE__, "int compare case %zu: got %d", i,
			          tr.succeeded);
	}
	Etcdserverpb__Compare *cl[] = {cmp_int(&f, "l", NONE, T_LEASE, EQ, 9), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, cl, NULL, NULL), &tr), 0);
	CHECK(tr.succeeded);

	struct {
		Etcdserverpb__Compare__CompareResult r;
		const char *v;
		bool want;
	} vals[] = {
		{EQ, "w", true}, {EQ, "v", false}, {NE, "v", true}, {NE, "w", false},
		{GT, "v", true}, {GT, "w", false}, {LT, "x", true}, {LT, "w", false},
		{GT, "", true},
	};
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		Etcdserverpb__Compare *c[] = {cmp_val(&f, "k", NONE, vals[i].r, vals[i].v), NULL};
		REQUIRE_INT(fx_txn(&f, mk_txn(&f, c, NULL, NULL), &tr), 0);
		if (tr.succeeded != vals[i].want)
			unit_fail(__FILE__, __LINE__, "value compare case %zu: got %d", i,
			          tr.succeeded);
	}
	/* Several compares: all must hold. */
	Etcdserverpb__Compare *two[] = {cmp_val(&f, "k", NONE, EQ, "w"),
	                                cmp_int(&f, "k", NONE, T_VERSION, EQ, 1), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, two, NULL, NULL), &tr), 0);
	CHECK(!tr.succeeded);
	/* Compares of reads change nothing. */
	CHECK_INT(fx_rev(&f), 4);
	CHECK_INT(tr.header->revision, 4);
	fx_close(&f);
}

TEST(txn_compare_missing_and_ranges)
{
	struct fx f;
	Etcdserverpb__TxnResponse tr;
	fx_open(&f);
	/* Missing key: version/create/mod/lease compare against 0. */
	Etcdserverpb__Compare *c1[] = {cmp_int(&f, "m", NONE, T_VERSION, EQ, 0), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, c1, NULL, NULL), &tr), 0);
	CHECK(tr.succeeded);
	Etcdserverpb__Compare *c2[] = {cmp_int(&f, "m", NONE, T_CREATE, EQ, 0), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, c2, NULL, NULL), &tr), 0);
	CHECK(tr.succeeded);
	Etcdserverpb__Compare *c3[] = {cmp_int(&f, "m", NONE, T_MOD, LT, 1), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, c3, NULL, NULL), &tr), 0);
	CHECK(tr.succeeded);
	Etcdserverpb__Compare *c4[] = {cmp_int(&f, "m", NONE, T_VERSION, GT, 0), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, c4, NULL, NULL), &tr), 0);
	CHECK(!tr.succeeded);
	/* A value compare on a missing key always fails. */
	Etcdserverpb__Compare *c5[] = {cmp_val(&f, "m", NONE, NE, "x"), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, c5, NULL, NULL), &tr), 0);
	CHECK(!tr.succeeded);
	Etcdserverpb__Compare *c6[] = {cmp_val(&f, "m", NONE, EQ, ""), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, c6, NULL, NULL), &tr), 0);
	CHECK(!tr.succeeded);

	/* Range compares: every key in the range must satisfy. */
	REQUIRE_INT(fx_put(&f, "p/a", "1", NULL), 0); /* 2 */
	REQUIRE_INT(fx_put(&f, "p/b", "1", NULL), 0); /* 3 */
	REQUIRE_INT(fx_put(&f, "p/c", "2", NULL), 0); /* 4 */
	Etcdserverpb__Compare *r1[] = {cmp_val(&f, "p/", B("p0"), EQ, "1"), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, r1, NULL, NULL), &tr), 0);
	CHECK(!tr.succeeded);
	Etcdserverpb__Compare *r2[] = {cmp_val(&f, "p/a", B("p/c"), EQ, "1"), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, r2, NULL, NULL), &tr), 0);
	CHECK(tr.succeeded);
	Etcdserverpb__Compare *r3[] = {cmp_int(&f, "p/", B("p0"), T_MOD, LT, 5), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, r3, NULL, NULL), &tr), 0);
	CHECK(tr.succeeded);
	Etcdserverpb__Compare *r4[] = {cmp_int(&f, "p/", B("p0"), T_MOD, LT, 4), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, r4, NULL, NULL), &tr), 0);
	CHECK(!tr.succeeded);
	Etcdserverpb__Compare *r5[] = {cmp_int(&f, "p/b", FROM_KEY, T_VERSION, EQ, 1), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, r5, NULL, NULL), &tr), 0);
	CHECK(tr.succeeded);
	/* An empty range compares like a missing key. */
	Etcdserverpb__Compare *r6[] = {cmp_int(&f, "q/", B("q0"), T_CREATE, EQ, 0), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, r6, NULL, NULL), &tr), 0);
	CHECK(tr.succeeded);
	/* A deleted key is missing. */
	REQUIRE_INT(fx_del(&f, "p/c", NONE, false, NULL), 0);
	Etcdserverpb__Compare *r7[] = {cmp_int(&f, "p/c", NONE, T_VERSION, EQ, 0), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, r7, NULL, NULL), &tr), 0);
	CHECK(tr.succeeded);
	fx_close(&f);
}

TEST(txn_branches_one_revision)
{
	struct fx f;
	Etcdserverpb__TxnResponse tr;
	fx_open(&f);
	REQUIRE_INT(fx_put(&f, "k", "v", NULL), 0); /* 2 */
	Etcdserverpb__Compare *c[] = {cmp_val(&f, "k", NONE, EQ, "v"), NULL};
	Etcdserverpb__RequestOp *succ[] = {op_put(&f, "a", "1"), op_put(&f, "b", "2"),
	                                   op_del(&f, "k", NONE), op_range(&f, "a", FROM_KEY),
	                                   NULL};
	Etcdserverpb__RequestOp *fail[] = {op_put(&f, "f", "1"), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, c, succ, fail), &tr), 0);
	CHECK(tr.succeeded);
	CHECK_INT(tr.header->revision, 3);
	CHECK_INT(fx_rev(&f), 3);
	REQUIRE_INT(tr.n_responses, 4);
	CHECK_INT(tr.responses[0]->response_case, ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT);
	CHECK_INT(tr.responses[0]->response_put->header->revision, 3);
	CHECK_INT(tr.responses[2]->response_delete_range->deleted, 1);
	CHECK_INT(tr.responses[2]->response_delete_range->header->revision, 3);
	/* Reads inside the txn see its earlier writes. */
	Etcdserverpb__RangeResponse *rr = tr.responses[3]->response_range;
	CHECK_KEYS(*rr, "a,b");
	CHECK_INT(rr->header->revision, 3);
	CHECK_INT(rr->kvs[0]->mod_revision, 3);
	CHECK_INT(rr->kvs[1]->mod_revision, 3);
	CHECK(fx_get(&f, "f", 0) == NULL);
	CHECK(fx_get(&f, "k", 0) == NULL);
	/* History: k still readable at 2. */
	CHECK(fx_get(&f, "k", 2) != NULL);

	/* The failure branch. */
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, c, succ, fail), &tr), 0);
	CHECK(!tr.succeeded);
	CHECK_INT(tr.n_responses, 1);
	CHECK_INT(tr.header->revision, 4);
	Mvccpb__KeyValue *kv = fx_get(&f, "f", 0);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->mod_revision, 4);

	/* A txn that changes nothing keeps the revision. */
	Etcdserverpb__RequestOp *ro[] = {op_range(&f, "a", NONE), op_del(&f, "zzz", NONE), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, NULL, ro, NULL), &tr), 0);
	CHECK(tr.succeeded);
	CHECK_INT(tr.header->revision, 4);
	CHECK_INT(tr.responses[1]->response_delete_range->header->revision, 4);
	CHECK_INT(fx_rev(&f), 4);
	/* An empty txn too. */
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, NULL, NULL, NULL), &tr), 0);
	CHECK(tr.succeeded);
	CHECK_INT(tr.n_responses, 0);
	CHECK_INT(fx_rev(&f), 4);

	/* Puts of one txn update a key's version once per put. */
	Etcdserverpb__RequestOp *up[] = {op_put(&f, "a", "x"), op_range(&f, "a", NONE), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, NULL, up, NULL), &tr), 0);
	rr = tr.responses[1]->response_range;
	REQUIRE_INT(rr->n_kvs, 1);
	CHECK_INT(rr->kvs[0]->version, 2);
	CHECK_BYTES(rr->kvs[0]->value, "x");
	fx_close(&f);
}

TEST(txn_nested)
{
	struct fx f;
	Etcdserverpb__TxnResponse tr;
	fx_open(&f);
	REQUIRE_INT(fx_put(&f, "k", "v", NULL), 0); /* 2 */
	/* Inner compares see the state before the outer txn's writes: the
	 * outer put of "k" does not change the inner compare's outcome. */
	Etcdserverpb__Compare *ic[] = {cmp_val(&f, "k", NONE, EQ, "v"), NULL};
	Etcdserverpb__RequestOp *is[] = {op_put(&f, "in", "yes"), NULL};
	Etcdserverpb__RequestOp *ifl[] = {op_put(&f, "in", "no"), NULL};
	Etcdserverpb__TxnRequest *inner = mk_txn(&f, ic, is, ifl);
	Etcdserverpb__Compare *oc[] = {cmp_int(&f, "k", NONE, T_VERSION, EQ, 1), NULL};
	Etcdserverpb__RequestOp *os[] = {op_put(&f, "k", "changed"), op_txn(&f, inner),
	                                 op_range(&f, "in", NONE), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, oc, os, NULL), &tr), 0);
	CHECK(tr.succeeded);
	CHECK_INT(tr.header->revision, 3);
	REQUIRE_INT(tr.n_responses, 3);
	REQUIRE_INT(tr.responses[1]->response_case, ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN);
	Etcdserverpb__TxnResponse *it = tr.responses[1]->response_txn;
	CHECK(it->succeeded);
	REQUIRE_INT(it->n_responses, 1);
	CHECK_INT(it->responses[0]->response_put->header->revision, 3);
	Etcdserverpb__RangeResponse *rr = tr.responses[2]->response_range;
	REQUIRE_INT(rr->n_kvs, 1);
	CHECK_BYTES(rr->kvs[0]->value, "yes");
	Mvccpb__KeyValue *kv = fx_get(&f, "in", 0);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->mod_revision, 3);
	kv = fx_get(&f, "k", 0);
	REQUIRE(kv != NULL);
	CHECK_BYTES(kv->value, "changed");
	CHECK_INT(kv->mod_revision, 3);

	/* Two levels deep, inner failure branch. */
	Etcdserverpb__Compare *dc[] = {cmp_val(&f, "k", NONE, EQ, "nope"), NULL};
	Etcdserverpb__RequestOp *df[] = {op_put(&f, "deep", "1"), NULL};
	Etcdserverpb__RequestOp *mid[] = {op_txn(&f, mk_txn(&f, dc, NULL, df)), NULL};
	Etcdserverpb__RequestOp *top[] = {op_txn(&f, mk_txn(&f, NULL, mid, NULL)), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, NULL, top, NULL), &tr), 0);
	CHECK_INT(tr.header->revision, 4);
	Etcdserverpb__TxnResponse *t1 = tr.responses[0]->response_txn;
	REQUIRE(t1 != NULL && t1->n_responses == 1);
	Etcdserverpb__TxnResponse *t2 = t1->responses[0]->response_txn;
	REQUIRE(t2 != NULL);
	CHECK(!t2->succeeded);
	CHECK(fx_get(&f, "deep", 0) != NULL);
	fx_close(&f);
}

TEST(txn_errors_leave_nothing)
{
	struct fx f;
	Etcdserverpb__TxnResponse tr;
	fx_open(&f);
	REQUIRE_INT(fx_put(&f, "k", "v", NULL), 0); /* 2 */
	/* A range at a future revision fails the txn before any write. */
	Etcdserverpb__RequestOp *ops[] = {op_put(&f, "a", "1"), op_range(&f, "k", NONE), NULL};
	ops[1]->request_range->revision = 3;
	MDB_txn *t = fx_wtxn(&f);
	CHECK_INT(mvcc_txn(&f.m, t, &f.a, mk_txn(&f, NULL, ops, NULL), &tr), BOLLARD_EFUTURE_REV);
	CHECK_INT(mvcc_current_rev(&f.m, t), 2);
	fx_commit(t);
	CHECK(fx_get(&f, "a", 0) == NULL);
	/* ignore_value on a missing key likewise. */
	Etcdserverpb__RequestOp *o2[] = {op_put(&f, "a", "1"), op_put(&f, "b", ""), NULL};
	o2[1]->request_put->ignore_value = 1;
	t = fx_wtxn(&f);
	CHECK_INT(mvcc_txn(&f.m, t, &f.a, mk_txn(&f, NULL, o2, NULL), &tr), BOLLARD_EKEY_NOT_FOUND);
	fx_commit(t);
	CHECK(fx_get(&f, "a", 0) == NULL);
	CHECK_INT(fx_rev(&f), 2);
	/* Checks apply to the taken branch only. */
	Etcdserverpb__Compare *c[] = {cmp_val(&f, "k", NONE, EQ, "v"), NULL};
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, c, (Etcdserverpb__RequestOp *[]){op_put(&f, "a", "1"), NULL}, o2), &tr), 0);
	CHECK(tr.succeeded);
	CHECK(fx_get(&f, "a", 0) != NULL);
	fx_close(&f);
}

TEST(txn_historic_range)
{
	struct fx f;
	Etcdserverpb__TxnResponse tr;
	fx_open(&f);
	REQUIRE_INT(fx_put(&f, "k", "v1", NULL), 0); /* 2 */
	REQUIRE_INT(fx_put(&f, "k", "v2", NULL), 0); /* 3 */
	Etcdserverpb__RequestOp *ops[] = {op_put(&f, "k", "v3"), op_range(&f, "k", NONE), NULL};
	ops[1]->request_range->revision = 2;
	REQUIRE_INT(fx_txn(&f, mk_txn(&f, NULL, ops, NULL), &tr), 0);
	Etcdserverpb__RangeResponse *rr = tr.responses[1]->response_range;
	REQUIRE_INT(rr->n_kvs, 1);
	CHECK_BYTES(rr->kvs[0]->value, "v1");
	CHECK_INT(rr->header->revision, 4);
	REQUIRE_INT(fx_compact(&f, 3), 0);
	ops[1]->request_range->revision = 2;
	CHECK_INT(fx_txn(&f, mk_txn(&f, NULL, ops, NULL), &tr), BOLLARD_ECOMPACTED);
	CHECK_INT(fx_rev(&f), 4);
	fx_close(&f);
}

TEST(compaction_rules)
{
	struct fx f;
	Etcdserverpb__RangeRequest rq;
	Etcdserverpb__RangeResponse rr;
	fx_open(&f);
	CHECK_INT(fx_compact(&f, 1), 0); /* compacting the empty store's revision */
	CHECK_INT(fx_compact(&f, 1), BOLLARD_ECOMPACTED);
	CHECK_INT(fx_compact(&f, 2), BOLLARD_EFUTURE_REV);
	REQUIRE_INT(fx_put(&f, "k", "v1", NULL), 0); /* 2 */
	REQUIRE_INT(fx_put(&f, "k", "v2", NULL), 0); /* 3 */
	REQUIRE_INT(fx_put(&f, "k", "v3", NULL), 0); /* 4 */
	REQUIRE_INT(fx_compact(&f, 3), 0);
	CHECK_INT(fx_compacted(&f), 3);
	CHECK_INT(fx_rev(&f), 4); /* compaction writes no revision */
	CHECK_INT(fx_compact(&f, 3), BOLLARD_ECOMPACTED);
	CHECK_INT(fx_compact(&f, 2), BOLLARD_ECOMPACTED);
	CHECK_INT(fx_compact(&f, 5), BOLLARD_EFUTURE_REV);
	rq = fx_rq("k", NONE);
	rq.revision = 2;
	CHECK_INT(fx_range(&f, &rq, &rr), BOLLARD_ECOMPACTED);
	rq.revision = 3; /* the compacted revision itself is readable */
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	REQUIRE_INT(rr.n_kvs, 1);
	CHECK_BYTES(rr.kvs[0]->value, "v2");
	CHECK_INT(rr.kvs[0]->version, 2);
	CHECK_INT(rr.kvs[0]->create_revision, 2);
	rq.revision = 4;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_BYTES(rr.kvs[0]->value, "v3");
	CHECK_INT(fx_rev_entries(&f), 2); /* v2 kept at 3, v3 */
	/* Compact at the current revision. */
	REQUIRE_INT(fx_compact(&f, 4), 0);
	CHECK_INT(fx_rev_entries(&f), 1);
	CHECK_INT(fx_key_entries(&f), 1);
	Mvccpb__KeyValue *kv = fx_get(&f, "k", 0);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->version, 3);
	CHECK_INT(kv->create_revision, 2);
	/* The generation goes on after compaction. */
	REQUIRE_INT(fx_put(&f, "k", "v4", NULL), 0); /* 5 */
	kv = fx_get(&f, "k", 0);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->version, 4);
	CHECK_INT(kv->create_revision, 2);
	/* An entry kept by an earlier compaction goes once superseded. */
	REQUIRE_INT(fx_compact(&f, 5), 0);
	CHECK_INT(fx_rev_entries(&f), 1);
	fx_close(&f);
}

TEST(compaction_tombstones)
{
	struct fx f;
	Etcdserverpb__RangeRequest rq;
	Etcdserverpb__RangeResponse rr;
	fx_open(&f);
	REQUIRE_INT(fx_put(&f, "a", "1", NULL), 0); /* 2 */
	REQUIRE_INT(fx_put(&f, "b", "1", NULL), 0); /* 3 */
	REQUIRE_INT(fx_del(&f, "a", NONE, false, NULL), 0); /* 4 */
	REQUIRE_INT(fx_put(&f, "c", "1", NULL), 0); /* 5 */
	REQUIRE_INT(fx_del(&f, "c", NONE, false, NULL), 0); /* 6 */
	REQUIRE_INT(fx_put(&f, "c", "2", NULL), 0); /* 7 */
	/* Compact at 5: a's tombstone (4) goes with a's history; c's put at 5 stays. */
	REQUIRE_INT(fx_compact(&f, 5), 0);
	CHECK_INT(fx_rev_entries(&f), 4); /* b@3 c@5 c-tomb@6 c@7 */
	CHECK_INT(fx_key_entries(&f), 4);
	rq = fx_rq("a", FROM_KEY);
	rq.revision = 5;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "b,c");
	rq.revision = 6;
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "b");
	/* Compact at 6: c's tombstone and its earlier generation go. */
	REQUIRE_INT(fx_compact(&f, 6), 0);
	CHECK_INT(fx_rev_entries(&f), 2); /* b@3 c@7 */
	Mvccpb__KeyValue *kv = fx_get(&f, "c", 0);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->version, 1);
	CHECK_INT(kv->create_revision, 7);
	/* Compacting a key deleted for good removes it from the index. */
	REQUIRE_INT(fx_del(&f, "c", NONE, false, NULL), 0); /* 8 */
	REQUIRE_INT(fx_compact(&f, 8), 0);
	CHECK_INT(fx_rev_entries(&f), 1);
	CHECK_INT(fx_key_entries(&f), 1);
	rq = fx_rq("a", FROM_KEY);
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_KEYS(rr, "b");
	fx_close(&f);
}

TEST(compaction_many_revisions)
{
	struct fx f;
	char key[16], val[16];
	fx_open(&f);
	/* More revisions than one compaction chunk, over a few keys. */
	MDB_txn *t = fx_wtxn(&f);
	for (int i = 0; i < 3000; i++) {
		Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
		Etcdserverpb__PutResponse resp;
		snprintf(key, sizeof(key), "k%02d", i % 10);
		snprintf(val, sizeof(val), "%d", i);
		req.key = B(key);
		req.value = B(val);
		REQUIRE_INT(mvcc_put(&f.m, t, &f.a, &req, &resp), 0);
		if (i % 7 == 0) {
			Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
			Etcdserverpb__DeleteRangeResponse dr;
			d.key = B(key);
			REQUIRE_INT(mvcc_delete_range(&f.m, t, &f.a, &d, &dr), 0);
		}
		arena_reset(&f.a);
	}
	fx_commit(t);
	int64_t cur = fx_rev(&f);
	CHECK_INT(cur, 1 + 3000 + 429);
	Etcdserverpb__RangeRequest rq = fx_rq("k", FROM_KEY);
	Etcdserverpb__RangeResponse before, after;
	rq.revision = cur - 100;
	REQUIRE_INT(fx_range(&f, &rq, &before), 0);
	REQUIRE_INT(fx_compact(&f, cur - 100), 0);
	REQUIRE_INT(fx_range(&f, &rq, &after), 0);
	REQUIRE_INT(after.n_kvs, before.n_kvs);
	for (size_t i = 0; i < after.n_kvs; i++) {
		CHECK_INT(after.kvs[i]->mod_revision, before.kvs[i]->mod_revision);
		CHECK_INT(after.kvs[i]->version, before.kvs[i]->version);
	}
	CHECK(fx_rev_entries(&f) <= 10 + 100);
	REQUIRE_INT(fx_compact(&f, cur), 0);
	rq.revision = 0;
	REQUIRE_INT(fx_range(&f, &rq, &after), 0);
	CHECK_INT(fx_rev_entries(&f), after.count);
	CHECK_INT(fx_key_entries(&f), after.count);
	fx_close(&f);
}

static uint32_t hash_at(struct fx *f, int64_t rev, int *err)
{
	uint32_t h;
	int64_t c, hr;
	MDB_txn *t = fx_rtxn(f);
	*err = mvcc_hash_kv(&f->m, t, rev, &h, &c, &hr);
	mdb_txn_abort(t);
	return h;
}

TEST(hash_kv)
{
	struct fx f, g;
	int err;
	fx_open(&f);
	fx_open(&g);
	for (int i = 0; i < 2; i++) {
		struct fx *x = i ? &g : &f;
		REQUIRE_INT(fx_put(x, "a", "1", NULL), 0);
		REQUIRE_INT(fx_put(x, "b", "2", NULL), 0);
		REQUIRE_INT(fx_del(x, "a", NONE, false, NULL), 0);
	}
	uint32_t h1 = hash_at(&f, 0, &err);
	CHECK_INT(err, 0);
	CHECK_INT(hash_at(&g, 0, &err), h1);
	uint32_t h3 = hash_at(&f, 3, &err);
	CHECK(h3 != h1);
	REQUIRE_INT(fx_put(&f, "c", "3", NULL), 0);
	CHECK(hash_at(&f, 0, &err) != h1);
	CHECK_INT(hash_at(&f, 4, &err), h1); /* later writes do not change a past hash */
	CHECK_INT(hash_at(&f, 3, &err), h3);
	hash_at(&f, 6, &err);
	CHECK_INT(err, BOLLARD_EFUTURE_REV);
	REQUIRE_INT(fx_compact(&f, 3), 0);
	hash_at(&f, 3, &err);
	CHECK_INT(err, BOLLARD_ECOMPACTED);
	hash_at(&f, 4, &err);
	CHECK_INT(err, 0);
	uint32_t hc;
	int64_t c, hr;
	MDB_txn *t = fx_rtxn(&f);
	CHECK_INT(mvcc_hash_kv(&f.m, t, 0, &hc, &c, &hr), 0);
	CHECK_INT(c, 3);
	CHECK_INT(hr, 5);
	mdb_txn_abort(t);
	fx_close(&f);
	fx_close(&g);
}

TEST(persistence)
{
	struct fx f;
	fx_open(&f);
	REQUIRE_INT(fx_put(&f, "a", "1", NULL), 0); /* 2 */
	REQUIRE_INT(fx_put(&f, "a", "2", NULL), 0); /* 3 */
	REQUIRE_INT(fx_del(&f, "a", NONE, false, NULL), 0); /* 4 */
	REQUIRE_INT(fx_put(&f, "b", "1", NULL), 0); /* 5 */
	REQUIRE_INT(fx_compact(&f, 3), 0);
	MDB_txn *t = fx_wtxn(&f);
	REQUIRE_INT(mvcc_set_applied_index(&f.m, t, 77, 3), 0);
	fx_commit(t);
	fx_reopen(&f);
	CHECK_INT(fx_rev(&f), 5);
	CHECK_INT(fx_compacted(&f), 3);
	t = fx_rtxn(&f);
	CHECK_INT(mvcc_applied_index(&f.m, t), 77);
	mdb_txn_abort(t);
	CHECK(fx_get(&f, "a", 0) == NULL);
	Mvccpb__KeyValue *kv = fx_get(&f, "a", 3);
	REQUIRE(kv != NULL);
	CHECK_BYTES(kv->value, "2");
	REQUIRE_INT(fx_put(&f, "a", "3", NULL), 0);
	kv = fx_get(&f, "a", 0);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->mod_revision, 6);
	CHECK_INT(kv->create_revision, 6);
	CHECK_INT(kv->version, 1);
	fx_close(&f);
}

TEST(values_point_into_pages)
{
	/* A range in a read txn borrows LMDB memory: large values arrive intact. */
	struct fx f;
	fx_open(&f);
	size_t n = 100000;
	char *big = malloc(n + 1);
	REQUIRE(big != NULL);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)('a' + i % 26);
	big[n] = 0;
	REQUIRE_INT(fx_put(&f, "big", big, NULL), 0);
	Mvccpb__KeyValue *kv = fx_get(&f, "big", 0);
	REQUIRE(kv != NULL);
	REQUIRE_INT(kv->value.len, n);
	CHECK(memcmp(kv->value.data, big, n) == 0);
	/* prev_kv of an overwrite survives the write that follows the read. */
	Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__PutResponse pr;
	req.key = B("big");
	req.value = B("small");
	req.prev_kv = 1;
	REQUIRE_INT(fx_put_req(&f, &req, &pr), 0);
	REQUIRE(pr.prev_kv != NULL);
	REQUIRE_INT(pr.prev_kv->value.len, n);
	CHECK(memcmp(pr.prev_kv->value.data, big, n) == 0);
	free(big);
	fx_close(&f);
}

/* ---- randomized check against a model ------------------------------------ */

#define MK 8      /* keys k0..k7 */
#define MOPS 400  /* operations per run */

struct mstate {
	int64_t create[MK], mod[MK], version[MK];
	int val[MK];
};

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Compare the store at rev with the model's state at rev. */
static void check_state(struct fx *f, const struct mstate *st, int64_t rev)
{
	Etcdserverpb__RangeRequest rq = fx_rq("k", B("l"));
	Etcdserverpb__RangeResponse rr;
	rq.revision = rev;
	REQUIRE_INT(fx_range(f, &rq, &rr), 0);
	size_t j = 0;
	for (int k = 0; k < MK; k++) {
		if (st->version[k] == 0)
			continue;
		REQUIRE(j < rr.n_kvs);
		char name[8], val[16];
		snprintf(name, sizeof(name), "k%d", k);
		snprintf(val, sizeof(val), "%d", st->val[k]);
		const Mvccpb__KeyValue *kv = rr.kvs[j++];
		CHECK_BYTES(kv->key, name);
		CHECK_BYTES(kv->value, val);
		CHECK_INT(kv->create_revision, st->create[k]);
		CHECK_INT(kv->mod_revision, st->mod[k]);
		CHECK_INT(kv->version, st->version[k]);
	}
	CHECK_INT(rr.n_kvs, j);
	if (unit_failures) {
		fprintf(stderr, "    (state at revision %" PRId64 ")\n", rev);
		unit_abort_test();
	}
}

static void model_run(uint64_t seed)
{
	struct fx f;
	struct mstate *hist = calloc(MOPS * 2 + 2, sizeof(*hist)); /* index: revision */
	REQUIRE(hist != NULL);
	fx_open(&f);
	int64_t cur = 1, compacted = 0;
	for (int i = 0; i < MOPS; i++) {
		int op = (int)(rnd(&seed) % 10), k = (int)(rnd(&seed) % MK);
		char name[8], val[16];
		snprintf(name, sizeof(name), "k%d", k);
		snprintf(val, sizeof(val), "%d", i);
		struct mstate next = hist[cur];
		bool changed = false;
		if (op < 5) { /* put */
			REQUIRE_INT(fx_put(&f, name, val, NULL), 0);
			changed = true;
			if (next.version[k] == 0)
				next.create[k] = cur + 1;
			next.version[k]++;
			next.mod[k] = cur + 1;
			next.val[k] = i;
		} else if (op < 7) { /* delete k..k+1 */
			char end[8];
			snprintf(end, sizeof(end), "k%d", k + 2);
			REQUIRE_INT(fx_del(&f, name, B(end), false, NULL), 0);
			for (int x = k; x < k + 2 && x < MK; x++)
				if (next.version[x] != 0) {
					changed = true;
					next.version[x] = next.create[x] = next.mod[x] = 0;
				}
		} else if (op < 9) { /* txn: put k and k+1 if k exists, else put k+1 */
			int k2 = (k + 1) % MK;
			char name2[8];
			snprintf(name2, sizeof(name2), "k%d", k2);
			Etcdserverpb__Compare *c[] = {cmp_int(&f, name, NONE, T_VERSION, GT, 0), NULL};
			Etcdserverpb__RequestOp *s1[] = {op_put(&f, name, val), op_put(&f, name2, val), NULL};
			Etcdserverpb__RequestOp *s2[] = {op_put(&f, name2, val), NULL};
			bool exists = next.version[k] != 0;
			REQUIRE_INT(fx_txn(&f, mk_txn(&f, c, s1, s2), NULL), 0);
			changed = true;
			for (int x = 0; x < MK; x++) {
				if (!(x == k2 || (exists && x == k)))
					continue;
				if (next.version[x] == 0)
					next.create[x] = cur + 1;
				next.version[x]++;
				next.mod[x] = cur + 1;
				next.val[x] = i;
			}
		} else if (cur > compacted) { /* compact somewhere in (compacted, cur] */
			int64_t to = compacted + 1 + (int64_t)(rnd(&seed) % (uint64_t)(cur - compacted));
			if (to <= cur && to > compacted) {
				REQUIRE_INT(fx_compact(&f, to), 0);
				compacted = to;
			}
		}
		if (changed)
			hist[++cur] = next;
		REQUIRE_INT(fx_rev(&f), cur);
		/* Check the current state and one random readable revision. */
		check_state(&f, &hist[cur], 0);
		int64_t lo = compacted > 1 ? compacted : 1;
		int64_t r = lo + (int64_t)(rnd(&seed) % (uint64_t)(cur - lo + 1));
		check_state(&f, &hist[r], r);
		if (compacted > 1) {
			Etcdserverpb__RangeRequest rq = fx_rq("k", B("l"));
			Etcdserverpb__RangeResponse rr;
			rq.revision = compacted - 1;
			CHECK_INT(fx_range(&f, &rq, &rr), BOLLARD_ECOMPACTED);
		}
	}
	/* Everything readable from the compacted revision on is intact. */
	for (int64_t r = compacted > 1 ? compacted : 1; r <= cur; r++)
		check_state(&f, &hist[r], r);
	/* Compacting at the current revision leaves one entry per live key. */
	if (compacted < cur)
		REQUIRE_INT(fx_compact(&f, cur), 0);
	size_t live = 0;
	for (int k = 0; k < MK; k++)
		live += hist[cur].version[k] != 0;
	CHECK_INT(fx_rev_entries(&f), live);
	CHECK_INT(fx_key_entries(&f), live);
	check_state(&f, &hist[cur], cur);
	free(hist);
	fx_close(&f);
}

/* key's KeyValue at rev (0: now) continues the generation created at
 * create, at its version-th put. */
static void check_generation(struct fx *f, const char *key, int64_t rev, int64_t create,
                             int64_t version)
{
	Mvccpb__KeyValue *kv = fx_get(f, key, rev);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->create_revision, create);
	CHECK_INT(kv->version, version);
}

/* A store written before the "live" index existed (simulated by dropping it
 * and meta "live_rev") gets it built at open: puts then continue each key's generation, with its
 * lease, and a deleted key starts a new one. */
TEST(live_index_rebuilt_for_an_older_store)
{
	struct fx f;
	fx_open(&f);
	Etcdserverpb__PutRequest leased = ETCDSERVERPB__PUT_REQUEST__INIT;
	leased.key = B("k");
	leased.value = B("1");
	leased.lease = 42;
	REQUIRE_INT(fx_put_req(&f, &leased, NULL), 0); /* 2 */
	REQUIRE_INT(fx_put(&f, "k", "2", NULL), 0); /* 3: lease 0 */
	REQUIRE_INT(fx_put_req(&f, &leased, NULL), 0); /* 4: lease 42 again */
	REQUIRE_INT(fx_put(&f, "gone", "1", NULL), 0); /* 5 */
	REQUIRE_INT(fx_del(&f, "gone", NONE, false, NULL), 0); /* 6 */
	MDB_txn *t = fx_wtxn(&f);
	MDB_dbi live, meta;
	MDB_val lr = {8, "live_rev"};
	REQUIRE_INT(mdb_dbi_open(t, "live", 0, &live), 0);
	REQUIRE_INT(mdb_drop(t, live, 1), 0);
	REQUIRE_INT(mdb_dbi_open(t, "meta", 0, &meta), 0);
	REQUIRE_INT(mdb_del(t, meta, &lr, NULL), 0);
	fx_commit(t);
	fx_reopen(&f);

	Etcdserverpb__PutRequest again = ETCDSERVERPB__PUT_REQUEST__INIT;
	again.key = B("k");
	again.ignore_value = true;
	again.ignore_lease = true;
	again.prev_kv = true;
	Etcdserverpb__PutResponse resp;
	REQUIRE_INT(fx_put_req(&f, &again, &resp), 0); /* 7 */
	REQUIRE(resp.prev_kv != NULL);
	CHECK_INT(resp.prev_kv->mod_revision, 4);
	CHECK_INT(resp.prev_kv->version, 3);
	CHECK_BYTES(resp.prev_kv->value, "1");
	Mvccpb__KeyValue *kv = fx_get(&f, "k", 0);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->create_revision, 2);
	CHECK_INT(kv->mod_revision, 7);
	CHECK_INT(kv->version, 4);
	CHECK_INT(kv->lease, 42);
	CHECK_BYTES(kv->value, "1");
	Etcdserverpb__PutRequest missing = ETCDSERVERPB__PUT_REQUEST__INIT;
	missing.key = B("gone");
	missing.ignore_value = true;
	CHECK_INT(fx_put_req(&f, &missing, NULL), BOLLARD_EKEY_NOT_FOUND);
	REQUIRE_INT(fx_put(&f, "gone", "2", NULL), 0); /* 8 */
	check_generation(&f, "gone", 0, 8, 1);
	fx_close(&f);
}

/* A store that a build without the "live" index wrote to since (it moved
 * "rev" on and left "live" and "live_rev" behind) gets the index rebuilt at
 * open, not trusted. The build's put is played here: a put, then "live" and
 * "live_rev" set back to what they were before it. */
TEST(live_index_rebuilt_after_writes_without_it)
{
	struct fx f;
	fx_open(&f);
	REQUIRE_INT(fx_put(&f, "k", "1", NULL), 0); /* 2 */
	MDB_txn *t = fx_wtxn(&f);
	MDB_dbi live, meta;
	MDB_val k = {1, "k"}, lr = {8, "live_rev"}, d;
	REQUIRE_INT(mdb_dbi_open(t, "live", 0, &live), 0);
	REQUIRE_INT(mdb_dbi_open(t, "meta", 0, &meta), 0);
	REQUIRE_INT(mdb_get(t, live, &k, &d), 0);
	uint8_t row[64], rev[8];
	size_t row_len = d.mv_size;
	REQUIRE(row_len <= sizeof(row));
	memcpy(row, d.mv_data, row_len);
	REQUIRE_INT(mdb_get(t, meta, &lr, &d), 0);
	REQUIRE_INT(d.mv_size, 8);
	memcpy(rev, d.mv_data, 8);
	mdb_txn_abort(t);
	REQUIRE_INT(fx_put(&f, "k", "2", NULL), 0); /* 3, as the other build wrote it */
	t = fx_wtxn(&f);
	d = (MDB_val){row_len, row};
	REQUIRE_INT(mdb_put(t, live, &k, &d, 0), 0);
	d = (MDB_val){8, rev};
	REQUIRE_INT(mdb_put(t, meta, &lr, &d, 0), 0);
	fx_commit(t);
	fx_reopen(&f);

	REQUIRE_INT(fx_put(&f, "k", "3", NULL), 0); /* 4 */
	check_generation(&f, "k", 0, 2, 3);
	fx_close(&f);
}

/* ---- key log (struct mvcc_key_log) ----------------------------------------- */

/* A new store whose key log is bound to a write transaction, returned. */
static MDB_txn *klog_begin(struct fx *f, struct mvcc_key_log *log)
{
	fx_open(f);
	f->m.key_log = log;
	MDB_txn *t = fx_wtxn(f);
	mvcc_key_log_bind(&f->m, t);
	return t;
}

static void klog_put(struct fx *f, MDB_txn *t, const char *key)
{
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__PutResponse pr;
	p.key = B(key);
	p.value = B("v");
	REQUIRE_INT(mvcc_put(&f->m, t, &f->a, &p, &pr), 0);
}

/* Puts leave their key_db appends in the log until something reads key_db
 * in the same transaction (here a range) or the log is flushed; reads in
 * other transactions see the committed store and leave the log alone. */
TEST(key_log_holds_appends_until_a_read)
{
	struct fx f;
	struct mvcc_key_log log = {0};
	MDB_txn *t = klog_begin(&f, &log);
	const char *keys[] = {"k0", "k0", "k1", "k0"};
	for (int i = 0; i < 4; i++)
		klog_put(&f, t, keys[i]);
	CHECK_INT(log.n, 4);
	Etcdserverpb__RangeRequest rq = fx_rq("k", B("l"));
	Etcdserverpb__RangeResponse rr;
	/* another transaction: nothing committed yet, the log untouched */
	REQUIRE_INT(fx_range(&f, &rq, &rr), 0);
	CHECK_INT(rr.n_kvs, 0);
	CHECK_INT(log.n, 4);
	CHECK(log.txn == t);
	/* the bound transaction: the log goes in first */
	REQUIRE_INT(mvcc_range(&f.m, t, &f.a, &rq, &rr), 0);
	CHECK_INT(log.n, 0);
	REQUIRE_INT(rr.n_kvs, 2);
	CHECK_INT(rr.kvs[0]->version, 3);
	CHECK_INT(rr.kvs[0]->create_revision, 2);
	CHECK_INT(rr.kvs[1]->version, 1);
	klog_put(&f, t, "k1");
	CHECK_INT(log.n, 1);
	REQUIRE_INT(mvcc_key_log_flush(&f.m, t), 0);
	CHECK(log.txn == NULL);
	CHECK_INT(log.n, 0);
	fx_commit(t);
	CHECK_INT(fx_key_entries(&f), 5);
	check_generation(&f, "k1", 0, 4, 2);
	check_generation(&f, "k0", 3, 2, 2); /* history: k0's second put */
	/* a transaction it is not bound to writes key_db at once */
	REQUIRE_INT(fx_put(&f, "k1", "w", NULL), 0);
	CHECK_INT(log.n, 0);
	CHECK_INT(fx_key_entries(&f), 6);
	mvcc_key_log_free(&log);
	fx_close(&f);
}

/* More appends than the log holds (KEY_LOG_MAX, 65536) in one transaction:
 * the full log is written and starts again. */
TEST(key_log_writes_when_full)
{
	struct fx f;
	struct mvcc_key_log log = {0};
	MDB_txn *t = klog_begin(&f, &log);
	char name[16];
	for (int i = 0; i < 70000; i++) {
		snprintf(name, sizeof(name), "k%d", i % 1000);
		klog_put(&f, t, name);
		arena_reset(&f.a);
	}
	CHECK_INT(log.n, 70000 - 65536);
	REQUIRE_INT(mvcc_key_log_flush(&f.m, t), 0);
	fx_commit(t);
	CHECK_INT(fx_key_entries(&f), 70000);
	Mvccpb__KeyValue *kv = fx_get(&f, "k999", 0);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->version, 70);
	CHECK_INT(kv->mod_revision, 70001);
	mvcc_key_log_free(&log);
	fx_close(&f);
}

struct ev_list {
	char buf[16384];
	size_t len;
};

static int ev_collect(void *ud, const struct mvcc_event *ev)
{
	struct ev_list *l = ud;
	int n = snprintf(l->buf + l->len, sizeof(l->buf) - l->len, "%lld.%lld%c%zu/%zu;",
	                 (long long)ev->main, (long long)ev->sub, ev->is_delete ? 'd' : 'p',
	                 ev->kv_len, ev->prev_raw ? ev->prev_len : 0);
	if (n > 0 && (size_t)n < sizeof(l->buf) - l->len)
		l->len += (size_t)n;
	return 0;
}

/* One random call on both stores in their open write transactions: a
 * writes key_db at once, b through its log. Reads must answer alike. */
static void klog_step(struct fx *a, MDB_txn *ta, struct fx *b, MDB_txn *tb, uint64_t *seed,
                      int i, int64_t *compacted)
{
	int op = (int)(rnd(seed) % 20), k = (int)(rnd(seed) % MK);
	char name[8], name2[8], val[16];
	snprintf(name, sizeof(name), "k%d", k);
	snprintf(name2, sizeof(name2), "k%d", (k + 2) % (MK + 1));
	snprintf(val, sizeof(val), "%d", i);
	struct fx *fs[2] = {a, b};
	MDB_txn *ts[2] = {ta, tb};
	if (op < 11) {
		Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
		Etcdserverpb__PutResponse pr[2];
		p.key = B(name);
		p.value = B(val);
		p.prev_kv = op < 3;
		for (int x = 0; x < 2; x++)
			REQUIRE_INT(mvcc_put(&fs[x]->m, ts[x], &fs[x]->a, &p, &pr[x]), 0);
		CHECK_INT(pr[0].header->revision, pr[1].header->revision);
		CHECK(!pr[0].prev_kv == !pr[1].prev_kv);
		if (pr[0].prev_kv && pr[1].prev_kv)
			CHECK_INT(pr[0].prev_kv->version, pr[1].prev_kv->version);
	} else if (op < 13) {
		Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
		Etcdserverpb__DeleteRangeResponse dr[2];
		d.key = B(name);
		d.range_end = B(name2);
		for (int x = 0; x < 2; x++)
			REQUIRE_INT(mvcc_delete_range(&fs[x]->m, ts[x], &fs[x]->a, &d, &dr[x]), 0);
		CHECK_INT(dr[0].deleted, dr[1].deleted);
	} else if (op < 15) {
		Etcdserverpb__TxnResponse tr[2];
		for (int x = 0; x < 2; x++) {
			Etcdserverpb__Compare *c[] = {cmp_int(fs[x], name, NONE, T_VERSION, GT, 0), NULL};
			Etcdserverpb__RequestOp *s1[] = {op_put(fs[x], name, val),
			                                 op_put(fs[x], name2, val), NULL};
			Etcdserverpb__RequestOp *s2[] = {op_put(fs[x], name2, val), NULL};
			REQUIRE_INT(mvcc_txn(&fs[x]->m, ts[x], &fs[x]->a, mk_txn(fs[x], c, s1, s2), &tr[x]),
			            0);
		}
		CHECK_INT(tr[0].succeeded, tr[1].succeeded);
	} else if (op < 18) {
		Etcdserverpb__RangeRequest rq = fx_rq("k", B("l"));
		Etcdserverpb__RangeResponse rr[2];
		int64_t cur = mvcc_current_rev(&a->m, ta);
		rq.revision = op == 17 && cur > *compacted + 1 ? cur - 1 : 0;
		for (int x = 0; x < 2; x++)
			REQUIRE_INT(mvcc_range(&fs[x]->m, ts[x], &fs[x]->a, &rq, &rr[x]), 0);
		REQUIRE_INT(rr[0].n_kvs, rr[1].n_kvs);
		for (size_t j = 0; j < rr[0].n_kvs; j++) {
			CHECK(rr[0].kvs[j]->key.len == rr[1].kvs[j]->key.len &&
			      memcmp(rr[0].kvs[j]->key.data, rr[1].kvs[j]->key.data,
			             rr[0].kvs[j]->key.len) == 0);
			CHECK_INT(rr[0].kvs[j]->mod_revision, rr[1].kvs[j]->mod_revision);
			CHECK_INT(rr[0].kvs[j]->create_revision, rr[1].kvs[j]->create_revision);
			CHECK_INT(rr[0].kvs[j]->version, rr[1].kvs[j]->version);
		}
	} else if (op < 19) {
		/* watch events with prev_kv (key_db read for each event's key) */
		int64_t cur = mvcc_current_rev(&a->m, ta), from = cur - 6, next[2];
		if (from <= *compacted)
			from = *compacted + 1;
		static struct ev_list ev[2];
		for (int x = 0; x < 2; x++) {
			ev[x].len = 0;
			REQUIRE_INT(mvcc_read_events(&fs[x]->m, ts[x], from, cur, 0, true, ev_collect,
			                             &ev[x], &next[x]),
			            0);
		}
		CHECK_INT(next[0], next[1]);
		CHECK(ev[0].len == ev[1].len && memcmp(ev[0].buf, ev[1].buf, ev[0].len) == 0);
	} else {
		int64_t cur = mvcc_current_rev(&a->m, ta);
		if (cur - 3 > *compacted) {
			for (int x = 0; x < 2; x++)
				REQUIRE_INT(mvcc_compact(&fs[x]->m, ts[x], cur - 3), 0);
			*compacted = cur - 3;
		}
	}
}

/* Random puts (some with prev_kv), range deletes, txns, ranges (current and
 * historic), watch reads with prev_kv and compactions, 40 to a
 * transaction, on a store without a key log and on one with it: every
 * database the same after each commit, every read the same before. */
TEST(key_log_matches_direct_writes)
{
	for (uint64_t seed = 1; seed <= 8; seed++) {
		uint64_t s = seed * 0x9E3779B97F4A7C15ull;
		struct fx a, b;
		struct mvcc_key_log log = {0};
		int64_t compacted = 0;
		fx_open(&a);
		fx_open(&b);
		b.m.key_log = &log;
		for (int batch = 0; batch < 10; batch++) {
			MDB_txn *ta = fx_wtxn(&a), *tb = fx_wtxn(&b);
			mvcc_key_log_bind(&b.m, tb);
			for (int i = 0; i < 40; i++)
				klog_step(&a, ta, &b, tb, &s, batch * 40 + i, &compacted);
			REQUIRE_INT(mvcc_key_log_flush(&b.m, tb), 0);
			fx_commit(ta);
			fx_commit(tb);
			REQUIRE(fx_same_databases(&a, &b));
			arena_reset(&a.a);
			arena_reset(&b.a);
		}
		mvcc_key_log_free(&log);
		fx_close(&a);
		fx_close(&b);
	}
}

TEST(random_ops_match_model)
{
	for (uint64_t seed = 1; seed <= 8; seed++)
		model_run(seed * 0x9E3779B97F4A7C15ull);
}

UNIT_MAIN(TEST_ENTRY(empty_store), TEST_ENTRY(put_and_get),
          TEST_ENTRY(put_prev_kv_ignore_value_ignore_lease), TEST_ENTRY(key_limits),
          TEST_ENTRY(range_forms), TEST_ENTRY(range_limit_more_count),
          TEST_ENTRY(range_keys_only), TEST_ENTRY(range_sort),
          TEST_ENTRY(range_min_max_filters), TEST_ENTRY(historic_reads),
          TEST_ENTRY(tombstones_and_generations), TEST_ENTRY(delete_range_forms),
          TEST_ENTRY(txn_compares), TEST_ENTRY(txn_compare_missing_and_ranges),
          TEST_ENTRY(txn_branches_one_revision), TEST_ENTRY(txn_nested),
          TEST_ENTRY(txn_errors_leave_nothing), TEST_ENTRY(txn_historic_range),
          TEST_ENTRY(compaction_rules), TEST_ENTRY(compaction_tombstones),
          TEST_ENTRY(compaction_many_revisions), TEST_ENTRY(hash_kv),
          TEST_ENTRY(persistence), TEST_ENTRY(values_point_into_pages),
          TEST_ENTRY(live_index_rebuilt_for_an_older_store),
          TEST_ENTRY(live_index_rebuilt_after_writes_without_it),
          TEST_ENTRY(key_log_holds_appends_until_a_read), TEST_ENTRY(key_log_writes_when_full),
          TEST_ENTRY(key_log_matches_direct_writes), TEST_ENTRY(random_ops_match_model))
