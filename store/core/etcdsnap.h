/* etcdsnap.h - LMDB store <-> etcd 3.4 bbolt layout (issue 8: migrate from etcd
 * to Bollard and back). Pure functions over an LMDB transaction and a bbolt
 * writer or reader: no sockets, no threads, no clocks.
 *
 * Export writes what etcd 3.4's backend would hold for the same data (the buckets
 * in bbolt_etcd.h, in key order, so the bbolt writer can build the file in one pass):
 *
 *   alarm            each raised alarm: packed etcdserverpb.AlarmMember -> ""
 *   auth             authRevision -> BE64 1 (what a fresh etcd auth store commits);
 *                    Bollard has no auth data yet, so authUsers/authRoles are empty
 *   authRoles, authUsers  empty
 *   cluster          clusterVersion -> "3.4.0"
 *   key              every revision rev_db keeps: main BE64 '_' sub BE64 [+ 't'] ->
 *                    the packed mvccpb.KeyValue; a tombstone's value is re-packed as
 *                    etcd writes it (kvstore_txn.go delete: KeyValue{Key: key} only)
 *   lease            lease ID BE64 -> leasepb.Lease {1: ID, 2: TTL, 3: RemainingTTL}
 *                    (zero fields omitted, as gogoproto marshals proto3)
 *   members          hex member ID (strconv.FormatUint(id, 16)) -> the JSON
 *                    encoding/json gives membership.Member:
 *                    {"id":N,"peerURLs":[..],"name":"..","clientURLs":[..]}
 *                    (name and clientURLs omitted when empty)
 *   members_removed  empty
 *   meta             consistent_index -> BE64 applied raft index; when the store was
 *                    compacted, finishedCompactRev and scheduledCompactRev -> the
 *                    17-byte revision key {compact, 0} (kvstore.go)
 */
#ifndef BOLLARD_CORE_ETCDSNAP_H
#define BOLLARD_CORE_ETCDSNAP_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "core/bbolt.h"
#include "core/mvcc.h"

struct etcdsnap_member {
	uint64_t id;
	const char *name; /* NULL or "": omitted */
	const char *const *peer_urls;
	size_t n_peer_urls;
	const char *const *client_urls; /* may be empty: omitted */
	size_t n_client_urls;
};

struct etcdsnap_export_opts {
	const struct etcdsnap_member *members;
	size_t n_members;
};

/* Figures of an export or an import. */
struct etcdsnap_stats {
	uint64_t revisions;  /* entries of the key bucket */
	uint64_t tombstones;
	uint64_t leases;
	int64_t current_rev;
	int64_t compact_rev;
	uint64_t consistent_index;
};

/* Writes the store as of txn into w (freshly initialised, fd or memory) and
 * finishes the file (meta pages); the caller appends a trailer if it wants one.
 * 0 or a negative error (w->err or a BOLLARD_E code). stats may be NULL. */
int etcdsnap_export(const struct mvcc *m, MDB_txn *txn, const struct etcdsnap_export_opts *o,
                    struct bbolt_writer *w, struct etcdsnap_stats *stats);

#endif
