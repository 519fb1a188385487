/* validate.h - the checks etcd makes on a request before it reaches raft
 * (empty key, too many txn ops, duplicate keys in a txn, ...), so a bad
 * request is refused with etcd's error without costing a log entry. */
#ifndef BOLLARD_CORE_VALIDATE_H
#define BOLLARD_CORE_VALIDATE_H

#include <stdint.h>

#include "rpc.pb-c.h"

int validate_range(const Etcdserverpb__RangeRequest *req);
int validate_put(const Etcdserverpb__PutRequest *req);
int validate_delete_range(const Etcdserverpb__DeleteRangeRequest *req);
int validate_txn(const Etcdserverpb__TxnRequest *req, int64_t max_txn_ops);

#endif
