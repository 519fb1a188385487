/* lease.h - the lessor: the in-memory, clocked half of etcd's leases.
 *
 * Owns, for every lease that exists, its granted TTL, its last checkpointed
 * remaining TTL and its expiry time, plus an expiry queue (a binary min-heap)
 * answering "which leases expired at now?". Pure: no clock and no I/O; every
 * call that needs time takes the caller's monotonic "now" in milliseconds.
 *
 * What is NOT here: existence and TTLs are durable in LMDB (leasedb.h), and
 * the keys attached to a lease are an LMDB index kept by mvcc (leasedb.h,
 * mvcc.c); the node mirrors each applied grant/revoke/checkpoint into this
 * table and rebuilds it from LMDB at open. Only the primary (raft leader)
 * tracks expiry: on other members every lease lives "forever" until the
 * leader's revoke arrives through raft, as in etcd.
 *
 * Not thread-safe: one thread (the node's loop) owns a lessor. */
#ifndef BOLLARD_CORE_LEASE_H
#define BOLLARD_CORE_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* etcd's MaxLeaseTTL (seconds): a grant above it fails with
 * BOLLARD_ELEASE_TTL_TOO_LARGE. */
#define LEASE_MAX_TTL 9000000000ll

/* etcd's leaseRevokeRate: expired leases revoked per second at most. */
#define LEASE_REVOKE_RATE 1000

/* An expired lease whose revoke did not land is offered again after this
 * long (etcd's expiredLeaseRetryInterval). */
#define LEASE_EXPIRED_RETRY_MS 3000

#define LEASE_FOREVER UINT64_MAX

struct lease_ent {
	int64_t id;
	int64_t ttl;           /* granted TTL, seconds */
	int64_t remaining_ttl; /* checkpointed remaining TTL, seconds; 0 = none */
	uint64_t expiry_ms;    /* LEASE_FOREVER when not primary */
	uint64_t due_ms;       /* heap key: when to offer it as expired */
	uint64_t cp_due_ms;    /* next checkpoint (primary), LEASE_FOREVER = none */
	size_t heap_idx;
	struct lease_ent *next; /* hash chain */
};

struct lessor {
	struct lease_ent **buckets;
	size_t n_buckets;
	size_t count;
	struct lease_ent **heap; /* min-heap by due_ms */
	size_t heap_len, heap_cap;
	bool primary;
};

/* etcd's TTL rule at grant: above LEASE_MAX_TTL is an error
 * (BOLLARD_ELEASE_TTL_TOO_LARGE); below min_ttl is raised to min_ttl.
 * Returns 0 and sets *out, or the error. */
int lease_clamp_ttl(int64_t ttl, int64_t min_ttl, int64_t *out);

/* etcd's minimum TTL (seconds) for an election timeout and heartbeat
 * interval: ceil(1.5 election ticks x heartbeat). 2 s for etcd's defaults. */
int64_t lease_min_ttl(unsigned election_ms, unsigned heartbeat_ms);

void lessor_init(struct lessor *l);
void lessor_free(struct lessor *l);

/* Add a granted (or reloaded) lease. Primary: expires at now + remaining
 * (the checkpointed remaining TTL if set, else ttl). Returns 0,
 * BOLLARD_ELEASE_EXIST or -ENOMEM. */
int lessor_add(struct lessor *l, int64_t id, int64_t ttl, int64_t remaining_ttl, uint64_t now);

/* Remove a revoked lease: 0 or BOLLARD_ELEASE_NOT_FOUND. */
int lessor_remove(struct lessor *l, int64_t id);

/* The lease, or NULL. Valid until the next call that changes the table. */
const struct lease_ent *lessor_get(const struct lessor *l, int64_t id);

/* Keep-alive (primary only): expiry = now + ttl, checkpoint cleared; *ttl
 * gets the granted TTL. Returns 0, BOLLARD_ENOT_LEADER when not primary,
 * BOLLARD_ELEASE_NOT_FOUND for an unknown or already expired lease (its
 * revoke is on the way). *had_checkpoint tells whether a checkpoint was set
 * (etcd then proposes a checkpoint of 0 so a later leader forgets it). */
int lessor_renew(struct lessor *l, int64_t id, uint64_t now, int64_t *ttl, bool *had_checkpoint);

/* Remaining TTL in whole seconds as etcd reports it (truncated), or the
 * granted/checkpointed TTL when not primary. */
int64_t lessor_remaining(const struct lessor *l, const struct lease_ent *e, uint64_t now);

/* Record a checkpoint (applied through raft on every member). 0 or
 * BOLLARD_ELEASE_NOT_FOUND. */
int lessor_checkpoint(struct lessor *l, int64_t id, int64_t remaining_ttl);

/* Become primary: every lease expires at now + extend_ms + its remaining
 * TTL (etcd's Promote), and with LEASE_REVOKE_RATE leases or more, expiries
 * that would pile up within a second are spread out so that at most 3/4 of
 * the revoke rate expire per second. */
void lessor_promote(struct lessor *l, uint64_t now, uint64_t extend_ms);

/* Stop being primary: nothing expires any more. */
void lessor_demote(struct lessor *l);

/* Up to max leases expired at now (primary only); each is offered again
 * LEASE_EXPIRED_RETRY_MS later unless removed or renewed before. Returns
 * the number written to ids. */
size_t lessor_expired(struct lessor *l, uint64_t now, int64_t *ids, size_t max);

/* The earliest due time in the queue (LEASE_FOREVER when empty or not
 * primary): when the caller should look again. */
uint64_t lessor_next_due(const struct lessor *l);

/* Checkpoints due at now (primary only): leases whose TTL exceeds
 * interval_ms get their remaining TTL recorded every interval_ms. Writes up
 * to max (id, remaining) pairs, schedules each one's next checkpoint, and
 * returns the count. O(leases) per call: call it every few seconds. */
size_t lessor_checkpoints_due(struct lessor *l, uint64_t now, uint64_t interval_ms, int64_t *ids,
                              int64_t *remaining, size_t max);

/* Visit every lease (any order); fn returns nonzero to stop (returned). */
int lessor_foreach(const struct lessor *l, int (*fn)(void *ud, const struct lease_ent *e),
                   void *ud);

#endif
