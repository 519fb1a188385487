/* apply.h - the raft state machine's pure half: decode one committed log
 * entry (a bollard.Batch of client requests) and apply each request to MVCC
 * inside the caller's LMDB write transaction, producing each request's packed
 * response or error. Permissions are checked here, at apply, against the
 * auth store of that moment with the identity each request carries
 * (bollard.Request.auth_user/auth_revision), as etcd's authApplierV3 does.
 * No I/O of its own. */
#ifndef BOLLARD_CORE_APPLY_H
#define BOLLARD_CORE_APPLY_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "core/mvcc.h"
#include "raftcmd.pb-c.h"

struct auth_event; /* core/auth.h */

/* Fields of every ResponseHeader besides the revision. */
struct apply_header {
	uint64_t cluster_id;
	uint64_t member_id;
	uint64_t raft_term;
};

/* The outcome of one request of a batch. */
struct apply_result {
	uint64_t request_id; /* bollard.Request.id, to find the waiting client */
	int err;             /* 0 or an error code (errors.h) */
	uint8_t *resp;       /* packed response (malloc'ed), NULL on error */
	size_t len;
};

/* Apply every request of batch in txn; results[i] receives request i's
 * outcome (results has batch->n_requests slots). A request refused with an
 * etcd error wrote nothing. Returns 0, or a fatal error (LMDB failure,
 * BOLLARD_EINTERNAL, memory: txn may be half-written; the caller must abort
 * the transaction and stop). No nested transactions: txn may belong to an
 * MDB_WRITEMAP environment. */
int apply_batch(const struct mvcc *m, MDB_txn *txn, const struct apply_header *hdr,
                const Bollard__Batch *batch, struct apply_result *results);

/* etcd's minimum lease TTL for its default election timeout and heartbeat. */
#define APPLY_DEFAULT_MIN_LEASE_TTL 2

/* Lease settings and observers of apply_batch_ex (leases live durably in
 * LMDB, see leasedb.h; the node mirrors them into its lessor through these
 * hooks). Each hook runs after its request applied successfully, on the
 * applying thread; every hook may be NULL. */
struct apply_opts {
	int64_t min_lease_ttl; /* seconds; every member must use the same */
	void (*lease_granted)(void *ud, int64_t id, int64_t ttl);
	void (*lease_revoked)(void *ud, int64_t id);
	void (*lease_checkpointed)(void *ud, int64_t id, int64_t remaining_ttl);
	/* Auth: the raft index of the entry (simple tokens carry it), and what
	 * each applied Auth request changed (tokens to register or drop). */
	uint64_t index;
	void (*auth_applied)(void *ud, const struct auth_event *ev);
	void *ud;
};

/* apply_batch with lease settings and hooks (opts NULL: defaults, no hooks). */
int apply_batch_ex(const struct mvcc *m, MDB_txn *txn, const struct apply_header *hdr,
                   const Bollard__Batch *batch, struct apply_result *results,
                   const struct apply_opts *opts);

/* Serve a Range (linearizable or serializable: the caller decides which
 * transaction to read from) and pack its response; *resp is malloc'ed. */
int apply_range(const struct mvcc *m, MDB_txn *txn, const struct apply_header *hdr,
                const Etcdserverpb__RangeRequest *req, uint8_t **resp, size_t *len);

/* Encode a batch as a raft entry payload; *out is malloc'ed via alloc_fn
 * (raft needs raft_malloc'ed buffers). */
int apply_encode_batch(const Bollard__Batch *batch, void *(*alloc_fn)(size_t),
                       uint8_t **out, size_t *len);

/* A batch packed in one pass over its requests instead of protobuf-c's
 * three (the size of the batch, then of each request again while packing):
 * apply_batch_size returns the packed size and fills sizes[i] (one slot per
 * request) for apply_batch_pack, which writes exactly the bytes of
 * bollard__batch__pack. Batches built here carry no unknown fields. */
size_t apply_batch_size(const Bollard__Batch *batch, size_t *sizes);
void apply_batch_pack(const Bollard__Batch *batch, const size_t *sizes, uint8_t *out);

#endif
