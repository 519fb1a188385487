/* bbolt_etcd.h - how etcd 3.4 lays its data out in bbolt (issue 8).
 *
 * Buckets (all top-level):
 *   key              revision key -> mvccpb.KeyValue (a tombstone is a KeyValue with
 *                    only the key set, under a revision key marked with 't')
 *   meta             consistent_index -> u64 BE; scheduledCompactRev and
 *                    finishedCompactRev -> a 17-byte revision key (main only)
 *   lease            u64 BE lease id -> leasepb.Lease {1: ID, 2: TTL, 3: RemainingTTL}
 *   auth             authEnabled -> 1 byte; authRevision -> u64 BE
 *   authUsers        name -> authpb.User;  authRoles: name -> authpb.Role
 *   members          member id (hex text) -> JSON {id, peerURLs, isLearner}
 *   members_removed  member id (hex text) -> "removed"
 *   cluster          clusterVersion -> "3.4.0"
 *   alarm            etcdserverpb.AlarmMember bytes -> empty
 * A revision key is 8 bytes BE main, '_', 8 bytes BE sub, plus 't' for a deletion. */
#ifndef BOLLARD_CORE_BBOLT_ETCD_H
#define BOLLARD_CORE_BBOLT_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/be64.h"

#define ETCD_REVKEY_LEN 17
#define ETCD_REVKEY_MARKED_LEN 18
#define ETCD_TOMBSTONE_MARK 't'

/* Writes the revision key of (main, sub); 18 bytes if tombstone, else 17.
 * Returns its length. buf holds at least ETCD_REVKEY_MARKED_LEN bytes. */
static inline size_t etcd_revkey_put(uint8_t *buf, int64_t main_rev, int64_t sub_rev,
                                     bool tombstone)
{
	be64_put(buf, (uint64_t)main_rev);
	buf[8] = '_';
	be64_put(buf + 9, (uint64_t)sub_rev);
	if (!tombstone)
		return ETCD_REVKEY_LEN;
	buf[ETCD_REVKEY_LEN] = ETCD_TOMBSTONE_MARK;
	return ETCD_REVKEY_MARKED_LEN;
}

/* Parses a revision key: 0, or -1 if it is not one. */
static inline int etcd_revkey_get(const uint8_t *key, size_t len, int64_t *main_rev,
                                  int64_t *sub_rev, bool *tombstone)
{
	if ((len != ETCD_REVKEY_LEN && len != ETCD_REVKEY_MARKED_LEN) || key[8] != '_')
		return -1;
	if (len == ETCD_REVKEY_MARKED_LEN && key[ETCD_REVKEY_LEN] != ETCD_TOMBSTONE_MARK)
		return -1;
	*main_rev = (int64_t)be64_get(key);
	*sub_rev = (int64_t)be64_get(key + 9);
	*tombstone = len == ETCD_REVKEY_MARKED_LEN;
	return 0;
}

#endif
