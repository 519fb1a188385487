/* fake_validate.c - stand-ins for store/core/validate.c's etcd pre-raft
 * checks while that file is being written: the two checks the tests rely
 * on (empty key, too many txn operations). Drop once validate.c lands. */
#include "core/errors.h"
#include "core/validate.h"

int validate_range(const Etcdserverpb__RangeRequest *req)
{
	return req->key.len ? 0 : BOLLARD_EEMPTY_KEY;
}

int validate_put(const Etcdserverpb__PutRequest *req)
{
	return req->key.len ? 0 : BOLLARD_EEMPTY_KEY;
}

int validate_delete_range(const Etcdserverpb__DeleteRangeRequest *req)
{
	return req->key.len ? 0 : BOLLARD_EEMPTY_KEY;
}

int validate_txn(const Etcdserverpb__TxnRequest *req, int64_t max_txn_ops)
{
	if ((int64_t)req->n_success > max_txn_ops || (int64_t)req->n_failure > max_txn_ops)
		return BOLLARD_ETOO_MANY_OPS;
	return 0;
}
