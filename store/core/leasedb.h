/* leasedb.h - the durable half of leases: lease records in LMDB and the
 * apply-time operations on them (grant, revoke, checkpoint, lookups).
 *
 * Layout (documented with the rest atop mvcc.c): "lease" maps a lease ID
 * (BE64) to a packed bollard.LeaseRecord {id, ttl, remaining_ttl};
 * "lease_key" (DUPSORT) maps a lease ID to each key attached to it, kept by
 * mvcc's write path in the same transaction as the key itself; meta
 * "lease/seq" counts server-assigned IDs. Everything runs in the caller's
 * LMDB transaction, so a lease changes atomically with the data, and the
 * same log yields the same leases (and IDs) on every member.
 *
 * Expiry is not here: it is the lessor's (lease.h), on the leader's clock. */
#ifndef BOLLARD_CORE_LEASEDB_H
#define BOLLARD_CORE_LEASEDB_H

#include <stdint.h>

#include <lmdb.h>

#include "core/arena.h"
#include "core/mvcc.h"
#include "rpc.pb-c.h"

struct lease_rec {
	int64_t id;
	int64_t ttl;           /* seconds, after the minimum rule */
	int64_t remaining_ttl; /* checkpointed, seconds; 0 = none */
};

/* 0 and *out, BOLLARD_ELEASE_NOT_FOUND, or an LMDB error. out may be NULL. */
int leasedb_get(const struct mvcc *m, MDB_txn *txn, int64_t id, struct lease_rec *out);

/* Apply a LeaseGrant: ID 0 gets the next free ID of a deterministic
 * sequence (positive, nonzero, stored in meta "lease/seq"); the TTL follows
 * lease_clamp_ttl(min_ttl). Returns 0 and the granted record in *out,
 * BOLLARD_ELEASE_EXIST, BOLLARD_ELEASE_TTL_TOO_LARGE, or an LMDB error. */
int leasedb_grant(const struct mvcc *m, MDB_txn *txn, const Etcdserverpb__LeaseGrantRequest *req,
                  int64_t min_ttl, struct lease_rec *out);

/* Apply a LeaseRevoke: delete every attached key in ONE revision (none if
 * no key is attached), then the lease. *rev gets the store's revision after
 * it. 0, BOLLARD_ELEASE_NOT_FOUND, or an error. */
int leasedb_revoke(const struct mvcc *m, MDB_txn *txn, struct arena *a, int64_t id,
                   int64_t *rev);

/* Apply one checkpoint: record remaining_ttl of a lease (unknown leases are
 * skipped, as in etcd). */
int leasedb_checkpoint(const struct mvcc *m, MDB_txn *txn, int64_t id, int64_t remaining_ttl);

/* The keys attached to lease id, copied into the arena (sorted bytewise). */
int leasedb_keys(const struct mvcc *m, MDB_txn *txn, struct arena *a, int64_t id,
                 ProtobufCBinaryData **keys, size_t *n);

/* Visit every lease record in ID order; fn returns nonzero to stop. */
int leasedb_foreach(const struct mvcc *m, MDB_txn *txn,
                    int (*fn)(void *ud, const struct lease_rec *r), void *ud);

/* Store a lease record as it is (etcd snapshot import): 0 or an LMDB error. */
int leasedb_put(const struct mvcc *m, MDB_txn *txn, const struct lease_rec *r);

#endif
