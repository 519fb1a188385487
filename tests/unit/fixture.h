/* fixture.h - a fresh LMDB environment with MVCC in a mkdtemp directory, and
 * shorthands for building etcd requests in tests. */
#ifndef BOLLARD_TESTS_FIXTURE_H
#define BOLLARD_TESTS_FIXTURE_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <lmdb.h>

#include "core/arena.h"
#include "core/errors.h"
#include "core/mvcc.h"
#include "rpc.pb-c.h"

struct fx {
	char dir[PATH_MAX];
	MDB_env *env;
	struct mvcc m;
	struct arena a; /* responses of helpers live here until fx_close */
};

void fx_open(struct fx *f);
/* Close and reopen the same directory (persistence tests). */
void fx_reopen(struct fx *f);
void fx_close(struct fx *f);

MDB_txn *fx_wtxn(struct fx *f);
MDB_txn *fx_rtxn(struct fx *f);
void fx_commit(MDB_txn *txn);

/* A C string as protobuf bytes (borrowed). */
static inline ProtobufCBinaryData B(const char *s)
{
	return (ProtobufCBinaryData){strlen(s), (uint8_t *)s};
}

/* "\0": the range_end of the from-key form. */
#define FROM_KEY ((ProtobufCBinaryData){1, (uint8_t *)"\0"})

/* Write calls, each in a committed write txn of its own; they return 0 or
 * the error and fill *resp (may be NULL) with arena memory. */
int fx_put(struct fx *f, const char *key, const char *val, Etcdserverpb__PutResponse *resp);
int fx_put_req(struct fx *f, const Etcdserverpb__PutRequest *req, Etcdserverpb__PutResponse *resp);
int fx_del(struct fx *f, const char *key, ProtobufCBinaryData end, bool prev_kv,
           Etcdserverpb__DeleteRangeResponse *resp);
int fx_txn(struct fx *f, const Etcdserverpb__TxnRequest *req, Etcdserverpb__TxnResponse *resp);
int fx_compact(struct fx *f, int64_t rev);

/* A range in a read txn; the response is deep-copied into the arena. */
int fx_range(struct fx *f, const Etcdserverpb__RangeRequest *req,
             Etcdserverpb__RangeResponse *resp);
/* Range request over [key, end) (end "" = single key). */
Etcdserverpb__RangeRequest fx_rq(const char *key, ProtobufCBinaryData end);
/* The live KeyValue of key at rev (0 = current), or NULL. */
Mvccpb__KeyValue *fx_get(struct fx *f, const char *key, int64_t rev);

int64_t fx_rev(struct fx *f);
/* Every database of x and y holds the same entries (a difference is
 * reported as a test failure naming the database). */
bool fx_same_databases(struct fx *x, struct fx *y);
int64_t fx_compacted(struct fx *f);
/* Entries in the rev and key databases (to see what compaction removed). */
size_t fx_rev_entries(struct fx *f);
size_t fx_key_entries(struct fx *f);

/* Request-op builders for txns (arena memory). */
Etcdserverpb__RequestOp *op_put(struct fx *f, const char *key, const char *val);
Etcdserverpb__RequestOp *op_del(struct fx *f, const char *key, ProtobufCBinaryData end);
Etcdserverpb__RequestOp *op_range(struct fx *f, const char *key, ProtobufCBinaryData end);
Etcdserverpb__RequestOp *op_txn(struct fx *f, Etcdserverpb__TxnRequest *t);
Etcdserverpb__Compare *cmp_int(struct fx *f, const char *key, ProtobufCBinaryData end,
                               Etcdserverpb__Compare__CompareTarget target,
                               Etcdserverpb__Compare__CompareResult result, int64_t v);
Etcdserverpb__Compare *cmp_val(struct fx *f, const char *key, ProtobufCBinaryData end,
                               Etcdserverpb__Compare__CompareResult result, const char *v);
/* A txn from NULL-terminated arrays (each may be NULL; copied). */
Etcdserverpb__TxnRequest *mk_txn(struct fx *f, Etcdserverpb__Compare **cmps,
                                 Etcdserverpb__RequestOp **success,
                                 Etcdserverpb__RequestOp **failure);

#endif
