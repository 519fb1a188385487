/* reads.c - Range requests served from LMDB read transactions, on any
 * thread.
 *
 * node_read() serves a Range on the calling thread (the gRPC completion-
 * queue thread) when it needs nothing of the loop: a serializable one, or a
 * linearizable one on a single member once it has applied an entry of its
 * own leadership (reads_direct) that reads one key or a few, while every
 * answered write is committed in LMDB (not `unflushed`: fsm.c
 * node_flush_or_keep), so that a read transaction begun after the request
 * arrived is linearizable. Otherwise the loop commits first. Any other
 * linearizable read (a long scan too) goes to the loop
 * for its read round (a barrier on the leader, a ReadIndex on a follower),
 * which serves it once the round's index is applied and committed
 * (node_serve_reads_now). Serving in place costs no thread hand-off: on this
 * machine each one costs more CPU than the read itself.
 *
 * What a read off the loop shares with it: the LMDB environment (under
 * env_lock, held shared), the reads_direct flag and the header's IDs and
 * term (atomics the loop publishes). Everything else a Range needs
 * (current and compacted revisions, auth users and roles) is read from the
 * transaction itself. */
#include <stdlib.h>

#include "core/auth.h"
#include "core/errors.h"
#include "core/validate.h"
#include "node/node_int.h"

/* etcd's IsRangePermitted for a Range, served from txn. */
static int range_permitted(struct node *n, MDB_txn *txn, const struct node_req *r)
{
	const Etcdserverpb__RangeRequest *q = (const void *)r->msg;
	const struct auth_info ai = {r->auth_user, r->auth_rev};
	return auth_check_range(&n->mvcc, txn, &ai, q->key, q->range_end);
}

int node_range_serve(struct node *n, MDB_txn *txn, const struct apply_header *hdr,
                     const struct node_req *r, uint8_t **resp, size_t *len)
{
	int rc = validate_range((const void *)r->msg);
	*resp = NULL;
	*len = 0;
	if (rc == 0)
		rc = range_permitted(n, txn, r);
	if (rc == 0)
		rc = apply_range(&n->mvcc, txn, hdr, (const void *)r->msg, resp, len);
	return rc;
}

/* The response header from the atomics the loop publishes. */
static struct apply_header read_header(struct node *n)
{
	return (struct apply_header){
		.cluster_id = __atomic_load_n(&n->cluster_id, __ATOMIC_RELAXED),
		.member_id = __atomic_load_n(&n->member_id, __ATOMIC_RELAXED),
		.raft_term = __atomic_load_n(&n->term_cache, __ATOMIC_RELAXED),
	};
}

void node_read_serializable(struct node *n, struct node_req *req)
{
	struct apply_header hdr = read_header(n);
	uint8_t *resp = NULL;
	size_t len = 0;
	MDB_txn *txn;
	int rc;

	node_wait_committed(n);
	pthread_rwlock_rdlock(&n->env_lock);
	if (n->env == NULL) {
		rc = BOLLARD_ESTOPPED;
	} else if ((rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn)) == 0) {
		rc = node_range_serve(n, txn, &hdr, req, &resp, &len);
		mdb_txn_abort(txn);
	}
	pthread_rwlock_unlock(&n->env_lock);
	node_complete(n, req, rc, resp, len);
}

/* A read of at most this many keys is served in place; a longer scan
 * (which would hold the gRPC thread, and with it every client's I/O) goes
 * to the loop when it may (linearizable). */
#define READ_IN_PLACE_MAX 256

void node_read(struct node *n, struct node_req *req)
{
	const Etcdserverpb__RangeRequest *q = (const void *)req->msg;
	bool small = q->range_end.len == 0 || (q->limit > 0 && q->limit <= READ_IN_PLACE_MAX);

	if (__atomic_load_n(&n->unflushed, __ATOMIC_SEQ_CST)) {
		/* answered writes not committed yet: the loop commits first, and
		 * for a while commits before it answers (commit_may_wait) */
		__atomic_store_n(&n->read_hopped_ns, node_clock_ns(), __ATOMIC_RELAXED);
		node_submit(n, req);
	} else if (q->serializable || (small && __atomic_load_n(&n->reads_direct, __ATOMIC_ACQUIRE)))
		node_read_serializable(n, req);
	else
		node_submit(n, req);
}
