/* kv.c - etcd's KV service (Range, Put, DeleteRange, Txn, Compact): etcd's
 * pre-raft checks, then the node. Ranges that need no read round
 * (serializable, or linearizable on a single member) are served on the
 * completion-queue thread from a read transaction (node_read); everything
 * else goes through the node's loop. */
#include "core/validate.h"
#include "rpc.pb-c.h"
#include "server/server_int.h"

static int check_range(struct srv_call *c, const ProtobufCMessage *msg)
{
	(void)c;
	return validate_range((const Etcdserverpb__RangeRequest *)msg);
}

static int check_put(struct srv_call *c, const ProtobufCMessage *msg)
{
	(void)c;
	return validate_put((const Etcdserverpb__PutRequest *)msg);
}

static int check_delete_range(struct srv_call *c, const ProtobufCMessage *msg)
{
	(void)c;
	return validate_delete_range((const Etcdserverpb__DeleteRangeRequest *)msg);
}

static int check_txn(struct srv_call *c, const ProtobufCMessage *msg)
{
	return validate_txn((const Etcdserverpb__TxnRequest *)msg, node_max_txn_ops(c->node));
}

static void start_range(struct srv_call *c)
{
	srv_call_submit(c, NODE_RANGE, 1);
}

const struct srv_method srv_kv_methods[] = {
	{"/etcdserverpb.KV/Range", &etcdserverpb__range_request__descriptor, NODE_RANGE, 0, 16,
	 check_range, start_range},
	{"/etcdserverpb.KV/Put", &etcdserverpb__put_request__descriptor, NODE_PUT, 1, 16, check_put,
	 NULL},
	{"/etcdserverpb.KV/DeleteRange", &etcdserverpb__delete_range_request__descriptor,
	 NODE_DELETE_RANGE, 1, 4, check_delete_range, NULL},
	{"/etcdserverpb.KV/Txn", &etcdserverpb__txn_request__descriptor, NODE_TXN, 1, 8, check_txn,
	 NULL},
	{"/etcdserverpb.KV/Compact", &etcdserverpb__compaction_request__descriptor, NODE_COMPACT, 1,
	 2, NULL, NULL},
	{NULL, NULL, NODE_OP_COUNT_, 0, 0, NULL, NULL},
};
