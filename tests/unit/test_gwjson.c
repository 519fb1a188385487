/* test_gwjson.c - core/gwjson.c: the gRPC gateway's JSON of etcd's
 * messages, in and out, against what etcd 3.4's gateway (grpc-gateway's
 * jsonpb with OrigName) takes and writes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/gwjson.h"
#include "rpc.pb-c.h"
#include "unit.h"

/* json decoded as a message of type d (NULL if refused; err says why). */
static ProtobufCMessage *decode(const ProtobufCMessageDescriptor *d, const char *json, int *rc,
                                char *err, size_t errlen)
{
	struct gwjson_buf b = {0};
	ProtobufCMessage *m = NULL;

	*rc = gwjson_to_wire(d, json, strlen(json), &b, err, errlen);
	if (*rc == 0)
		m = protobuf_c_message_unpack(d, NULL, b.len, b.p ? b.p : (const uint8_t *)"");
	free(b.p);
	return m;
}

TEST(range_request_names_and_values)
{
	char err[200];
	int rc;
	/* proto names and jsonpb's lowerCamel ones, 64-bit integers as strings
	 * or numbers, enums by name or number, unknown fields and nulls skipped */
	Etcdserverpb__RangeRequest *r = (Etcdserverpb__RangeRequest *)decode(
		&etcdserverpb__range_request__descriptor,
		"{\"key\":\"Zm9v\",\"rangeEnd\":\"AA==\",\"limit\":\"5\",\"revision\":-3,"
		"\"keys_only\":true,\"sort_order\":\"DESCEND\",\"sortTarget\":2,\"nope\":[1],"
		"\"count_only\":null,\"min_mod_revision\":\"9223372036854775807\"}",
		&rc, err, sizeof(err));

	REQUIRE_INT(rc, 0);
	REQUIRE(r != NULL);
	CHECK_BYTES(r->key, "foo");
	CHECK(r->range_end.len == 1 && r->range_end.data[0] == 0);
	CHECK_INT(r->limit, 5);
	CHECK_INT(r->revision, -3);
	CHECK(r->keys_only && !r->count_only);
	CHECK_INT(r->sort_order, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND);
	CHECK_INT(r->sort_target, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE);
	CHECK(r->min_mod_revision == INT64_MAX);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

TEST(base64_forms)
{
	char err[200];
	int rc;
	/* URL-safe and unpadded base64 too (bytes 0xfb 0xff: "+/8=" / "-_8") */
	Etcdserverpb__PutRequest *p = (Etcdserverpb__PutRequest *)decode(
		&etcdserverpb__put_request__descriptor, "{\"key\":\"-_8\",\"value\":\"+/8=\",\"lease\":1}",
		&rc, err, sizeof(err));

	REQUIRE(p != NULL);
	CHECK(p->key.len == 2 && p->key.data[0] == 0xfb && p->key.data[1] == 0xff);
	CHECK(p->value.len == 2 && p->value.data[0] == 0xfb && p->value.data[1] == 0xff);
	protobuf_c_message_free_unpacked(&p->base, NULL);
}

TEST(txn_nested_and_oneofs)
{
	char err[200];
	int rc;
	Etcdserverpb__TxnRequest *t = (Etcdserverpb__TxnRequest *)decode(
		&etcdserverpb__txn_request__descriptor,
		"{\"compare\":[{\"target\":\"VALUE\",\"key\":\"Zm9v\",\"result\":\"EQUAL\","
		"\"value\":\"YmFy\"},{\"target\":\"VERSION\",\"key\":\"Zm9v\",\"version\":\"0\"}],"
		"\"success\":[{\"request_put\":{\"key\":\"Zm9v\",\"value\":\"YmF6\"}}],"
		"\"failure\":[{\"requestRange\":{\"key\":\"Zm9v\"}}]}",
		&rc, err, sizeof(err));

	REQUIRE(t != NULL);
	REQUIRE_INT(t->n_compare, 2);
	CHECK_INT(t->compare[0]->target, ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE);
	CHECK_INT(t->compare[0]->target_union_case, ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE);
	CHECK_BYTES(t->compare[0]->value, "bar");
	/* a oneof member at its default is still set */
	CHECK_INT(t->compare[1]->target_union_case, ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION);
	REQUIRE_INT(t->n_success, 1);
	REQUIRE_INT(t->success[0]->request_case, ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT);
	CHECK_BYTES(t->success[0]->request_put->value, "baz");
	REQUIRE_INT(t->n_failure, 1);
	CHECK_INT(t->failure[0]->request_case, ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE);
	protobuf_c_message_free_unpacked(&t->base, NULL);
}

TEST(empty_body_is_the_empty_message)
{
	struct gwjson_buf b = {0};
	char err[100];

	CHECK_INT(gwjson_to_wire(&etcdserverpb__range_request__descriptor, "", 0, &b, err,
	                         sizeof(err)), 0);
	CHECK_INT(gwjson_to_wire(&etcdserverpb__range_request__descriptor, " \n", 2, &b, err,
	                         sizeof(err)), 0);
	CHECK_INT(gwjson_to_wire(&etcdserverpb__range_request__descriptor, "{}", 2, &b, err,
	                         sizeof(err)), 0);
	CHECK_INT(b.len, 0);
	free(b.p);
}

TEST(refused)
{
	static const char *const bad[] = {
		"{\"limit\":\"x\"}",     "{\"limit\":1.5}",      "{\"key\":5}",
		"{\"key\":\"@@\"}",      "{\"keys_only\":1}",    "{\"sort_order\":\"UP\"}",
		"{\"key\":\"Zm9v\"",     "[1]",                  "{bad json",
		"{\"limit\":\"99999999999999999999\"}", "{\"key\":\"Zm9v=\"}",
		"{\"key\":\"Zg===\"}", "{\"key\":\"Z\"}", "{\"key\":\"Zm 9v\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct gwjson_buf b = {0};
		char err[200] = "";
		CHECK_INT(gwjson_to_wire(&etcdserverpb__range_request__descriptor, bad[i],
		                         strlen(bad[i]), &b, err, sizeof(err)), -EINVAL);
		CHECK(err[0] != '\0');
		free(b.p);
	}
	/* an enum number out of int32's range */
	{
		struct gwjson_buf b = {0};
		char err[200];
		const char *j = "{\"target\":4294967296}";
		CHECK_INT(gwjson_to_wire(&etcdserverpb__compare__descriptor, j, strlen(j), &b, err,
		                         sizeof(err)), -EINVAL);
		free(b.p);
	}
}

/* m's JSON equals want, byte for byte. */
static void check_json(const ProtobufCMessage *m, const char *want)
{
	size_t len = 0;
	char *got = gwjson_from_message(m, &len);

	REQUIRE(got != NULL);
	if (strcmp(got, want) != 0 || len != strlen(want))
		unit_fail(__FILE__, __LINE__, "got %s\nwant %s", got, want);
	free(got);
}

TEST(range_response_as_etcd_writes_it)
{
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT, *kvs[] = {&kv};
	Etcdserverpb__RangeResponse r = ETCDSERVERPB__RANGE_RESPONSE__INIT;

	h.cluster_id = 324952591200643719ull;
	h.member_id = 3319814642761637952ull;
	h.revision = 2;
	h.raft_term = 2;
	kv.key = (ProtobufCBinaryData){3, (uint8_t *)"foo"};
	kv.value = (ProtobufCBinaryData){3, (uint8_t *)"bar"};
	kv.create_revision = kv.mod_revision = 2;
	kv.version = 1;
	r.header = &h;
	r.kvs = kvs;
	r.n_kvs = 1;
	r.count = 1;
	/* etcd 3.4.23's gateway, byte for byte */
	check_json(&r.base, "{\"header\":{\"cluster_id\":\"324952591200643719\",\"member_id\":"
	                    "\"3319814642761637952\",\"revision\":\"2\",\"raft_term\":\"2\"},"
	                    "\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":\"2\",\"mod_revision\":"
	                    "\"2\",\"version\":\"1\",\"value\":\"YmFy\"}],\"count\":\"1\"}");
	r.n_kvs = 0;
	r.count = 0;
	h.revision = 0;
	check_json(&r.base, "{\"header\":{\"cluster_id\":\"324952591200643719\",\"member_id\":"
	                    "\"3319814642761637952\",\"raft_term\":\"2\"}}");
}

TEST(oneofs_enums_and_camel_names_out)
{
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	Etcdserverpb__PutResponse put = ETCDSERVERPB__PUT_RESPONSE__INIT;
	Etcdserverpb__ResponseOp op = ETCDSERVERPB__RESPONSE_OP__INIT, *ops[] = {&op};
	Etcdserverpb__TxnResponse t = ETCDSERVERPB__TXN_RESPONSE__INIT;
	Etcdserverpb__StatusResponse st = ETCDSERVERPB__STATUS_RESPONSE__INIT;
	Etcdserverpb__HashKVResponse hk = ETCDSERVERPB__HASH_KVRESPONSE__INIT;

	h.revision = 3;
	put.header = &h;
	op.response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
	op.response_put = &put;
	t.succeeded = 1;
	t.responses = ops;
	t.n_responses = 1;
	check_json(&t.base, "{\"succeeded\":true,\"responses\":[{\"response_put\":{\"header\":"
	                    "{\"revision\":\"3\"}}}]}");
	st.version = "3.4.23";
	st.dbsize = 20480;
	st.raftindex = 11;
	st.errors = (char *[]){"etcdserver: mvcc: database space exceeded"};
	st.n_errors = 1;
	check_json(&st.base, "{\"version\":\"3.4.23\",\"dbSize\":\"20480\",\"raftIndex\":\"11\","
	                     "\"errors\":[\"etcdserver: mvcc: database space exceeded\"]}");
	hk.hash = 2020292994u;
	hk.compact_revision = -1;
	check_json(&hk.base, "{\"hash\":2020292994,\"compact_revision\":\"-1\"}");
}

UNIT_MAIN(TEST_ENTRY(range_request_names_and_values), TEST_ENTRY(base64_forms),
          TEST_ENTRY(txn_nested_and_oneofs), TEST_ENTRY(empty_body_is_the_empty_message),
          TEST_ENTRY(refused), TEST_ENTRY(range_response_as_etcd_writes_it),
          TEST_ENTRY(oneofs_enums_and_camel_names_out))
