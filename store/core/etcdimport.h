/* etcdimport.h - etcd 3.4 snapshot (bbolt) -> Bollard's LMDB store (issue 8, import).
 *
 * The reverse of etcdsnap_export: reads etcd's buckets from an opened bbolt
 * file and writes them through mvcc/leasedb into the caller's LMDB write
 * transaction:
 *   key   every revision (puts and tombstones) with its revision, version,
 *         create/mod revision and lease, in revision order;
 *   meta  finishedCompactRev -> the compacted revision; the current revision
 *         is the highest main revision in `key` (at least the compacted one,
 *         and 1 on an empty store, as etcd's restore computes it);
 *   lease every lease with its TTL (and checkpointed remaining TTL); the keys
 *         attached to it follow from the keys' own lease fields.
 * The applied raft index stays 0: the new member's raft log starts fresh.
 *   authUsers, authRoles, auth: every user and role as etcd stored them
 *         (bcrypt password hashes included, so logins keep working), the
 *         auth enabled flag and the auth revision.
 * Members, alarms and the cluster version belong to
 * the old cluster and are dropped, as etcdctl snapshot restore does.
 *
 * The caller verifies the file first (bbolt_open_* with the trailer check,
 * then bbolt_check); this walk checks what it decodes again and refuses a
 * malformed entry rather than skipping it. On error the transaction must be
 * aborted. */
#ifndef BOLLARD_CORE_ETCDIMPORT_H
#define BOLLARD_CORE_ETCDIMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "core/bbolt.h"
#include "core/mvcc.h"

struct etcdimport_stats {
	uint64_t revisions;  /* entries of `key`, tombstones included */
	uint64_t tombstones;
	uint64_t leases;
	uint64_t users, roles;
	bool auth_enabled;
	uint64_t auth_revision;
	int64_t current_rev;
	int64_t compact_rev;
};

/* 0, or a negative error with a message in err. */
int etcdimport_run(struct bbolt_db *db, const struct mvcc *m, MDB_txn *txn,
                   struct etcdimport_stats *stats, char *err, size_t errlen);

#endif
