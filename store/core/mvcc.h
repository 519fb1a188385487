/* mvcc.h - etcd's multi-version key-value model on LMDB.
 *
 * Owns the on-disk layout of keys, revisions, tombstones and the current and
 * compacted revisions. Pure: no sockets, no clocks, no threads of its own;
 * every call runs inside an LMDB transaction the caller owns, so reads may
 * run on any thread (read txn) while the loop thread writes (write txn).
 * `struct mvcc` holds DBI handles, fixed after mvcc_open(), and an optional
 * key log (struct mvcc_key_log) its owner sets.
 *
 * Requests and responses are etcd's own protobuf-c messages. Response memory
 * comes from the caller's arena and from LMDB (values point into the
 * transaction's pages), so a response must be packed before the transaction
 * ends and before the arena is reset. Every response gets a header
 * (allocated in the arena) with only `revision` set; the caller fills
 * cluster_id, member_id and raft_term.
 *
 * Write calls (put, delete_range, txn, compact) validate nothing that etcd
 * checks before raft (see validate.h); they return etcd's apply-time errors
 * (compacted / future revision) and -ENOMEM / LMDB errors. A write that
 * changes nothing (a delete that matched no key, a txn of reads) does not
 * advance the revision, as in etcd. */
#ifndef BOLLARD_CORE_MVCC_H
#define BOLLARD_CORE_MVCC_H

#include <stdbool.h>
#include <stdint.h>

#include <lmdb.h>

#include "core/arena.h"
#include "rpc.pb-c.h"

/* LMDB named databases mvcc_open() needs from mdb_env_set_maxdbs(). */
#define MVCC_MAX_DBS 8

/* Longest user key the store takes (LMDB's key size limit); longer keys are
 * refused with BOLLARD_EKEY_TOO_LONG. */
#define MVCC_MAX_KEY_LEN 511

struct mvcc {
	MDB_dbi rev_db;  /* {main,sub}[+'t'] -> mvccpb.KeyValue */
	MDB_dbi key_db;  /* user key -> its revisions (history index) */
	MDB_dbi live_db; /* live user key -> its latest revision's numbers */
	MDB_dbi meta_db; /* current/compacted revision, applied raft index, ... */
	MDB_dbi lease_db;     /* lease ID -> bollard.LeaseRecord (leasedb.c) */
	MDB_dbi lease_key_db; /* lease ID -> each user key attached to it */
	/* NULL (as mvcc_open leaves it), or where writes in the transaction
	 * bound to it leave their key_db appends until mvcc_key_log_flush
	 * (owned by the caller) */
	struct mvcc_key_log *key_log;
};

/* A key's history (key_db) grows by one entry per put or delete of it.
 * Bound to a write transaction, the key log holds those appends back and
 * writes them at mvcc_key_log_flush, each key's in one LMDB insert: a key
 * written k times in the transaction then costs one descent to its history
 * instead of k (those pages are mostly out of the CPU's caches). Calls in
 * this file that read key_db in the bound transaction flush it first (a
 * range, a delete range, compaction, watch events with prev_kv), so reads
 * in it see every write; puts, compares and txns of puts do not read
 * key_db. Reads in other transactions, on any thread, read what is
 * committed and never touch the log. Zero-initialised; buffers kept across
 * transactions, freed by mvcc_key_log_free. */
struct mvcc_key_rec;
struct mvcc_key_log {
	MDB_txn *txn; /* bound to it (set and read atomically), or NULL */
	struct mvcc_key_rec *recs;
	size_t n, cap;
	uint8_t *keys; /* the user keys of recs, back to back */
	size_t keys_len, keys_cap;
	uint8_t *run; /* one key's entries, contiguous (MDB_MULTIPLE) */
	size_t run_cap;
};

/* Hold back key_db appends of writes made in txn, a write transaction,
 * until mvcc_key_log_flush. The log must not be bound. */
void mvcc_key_log_bind(const struct mvcc *m, MDB_txn *txn);
/* Write what the log holds into txn and unbind it: before committing txn.
 * Nothing to do if the log is not bound to txn. On an error the log is
 * emptied and unbound anyway, and txn must be aborted. */
int mvcc_key_log_flush(const struct mvcc *m, MDB_txn *txn);
void mvcc_key_log_free(struct mvcc_key_log *l);

/* Open or create the databases in env (in a write transaction of its own). */
int mvcc_open(struct mvcc *m, MDB_env *env);

/* Current revision (1 on an empty store, as in etcd) and compacted revision
 * (0 if never compacted) as of txn. */
int64_t mvcc_current_rev(const struct mvcc *m, MDB_txn *txn);
int64_t mvcc_compact_rev(const struct mvcc *m, MDB_txn *txn);

/* The raft index whose effects txn contains (0 if none); written by the
 * apply loop in the same transaction as the data, so replays can be skipped. */
uint64_t mvcc_applied_index(const struct mvcc *m, MDB_txn *txn);
int mvcc_set_applied_index(const struct mvcc *m, MDB_txn *txn, uint64_t index, uint64_t term);

/* etcd Range semantics, every option of 3.4 (see RangeRequest). */
int mvcc_range(const struct mvcc *m, MDB_txn *txn, struct arena *a,
               const Etcdserverpb__RangeRequest *req, Etcdserverpb__RangeResponse *resp);

/* Writes (put, delete, txn, compact): an etcd error (BOLLARD_E*, not
 * BOLLARD_EINTERNAL) means the call wrote nothing to txn; any other error
 * may leave txn half-written, and the caller must abort it. */
int mvcc_put(const struct mvcc *m, MDB_txn *txn, struct arena *a,
             const Etcdserverpb__PutRequest *req, Etcdserverpb__PutResponse *resp);

int mvcc_delete_range(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                      const Etcdserverpb__DeleteRangeRequest *req,
                      Etcdserverpb__DeleteRangeResponse *resp);

/* Compares, then the chosen branch (nested txns included) at one revision. */
int mvcc_txn(const struct mvcc *m, MDB_txn *txn, struct arena *a,
             const Etcdserverpb__TxnRequest *req, Etcdserverpb__TxnResponse *resp);

/* Drop every revision superseded at or before rev (keeping each key's
 * latest version at rev unless it is a tombstone). */
int mvcc_compact(const struct mvcc *m, MDB_txn *txn, int64_t rev);

/* etcd's HashKV: a CRC-32C over every stored revision at or before rev
 * (rev 0 = current): those in (compacted, rev] and the ones compaction kept.
 * Sets *hash, *compact_rev and *hash_rev (rev resolved). Same history and
 * compactions -> same hash; later writes do not change the hash of rev. */
int mvcc_hash_kv(const struct mvcc *m, MDB_txn *txn, int64_t rev, uint32_t *hash,
                 int64_t *compact_rev, int64_t *hash_rev);

/* Hooks for the write calls beyond etcd's request fields (all optional). */
struct mvcc_write_opts {
	/* Called for every put that attaches a lease (nonzero lease, not
	 * ignore_lease) before anything is written; returns 0 or an error such
	 * as BOLLARD_ELEASE_NOT_FOUND, which fails the whole request. NULL: any
	 * lease is accepted. */
	int (*lease_check)(void *ud, int64_t lease);
	void *ud;
	/* NULL, or the current revision shared by a run of write calls in one
	 * transaction (see struct mvcc_rev_cache). */
	struct mvcc_rev_cache *rev_cache;
};

/* A run of put and txn calls (mvcc_put_ex, mvcc_txn_ex) in one write
 * transaction reads the current revision once and stores it once: each call
 * takes it from here (rev 0: read it from the database) and leaves its new
 * revision here (dirty) instead of in the database. The caller must call
 * mvcc_rev_cache_flush, which stores a dirty revision and forgets it, before
 * anything else in the transaction reads or writes the current revision
 * (every other mvcc call, and the commit). Starts as {0, false}. */
struct mvcc_rev_cache {
	int64_t rev;
	bool dirty;
};
int mvcc_rev_cache_flush(const struct mvcc *m, MDB_txn *txn, struct mvcc_rev_cache *c);

/* A KeyValue packed as protobuf-c packs it (unknown fields aside): the
 * bytes the "rev" database holds. */
size_t mvcc_kv_packed_size(const Mvccpb__KeyValue *kv);
size_t mvcc_kv_pack(const Mvccpb__KeyValue *kv, uint8_t *out);

/* mvcc_put / mvcc_txn with hooks (opts may be NULL). */
int mvcc_put_ex(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                const Etcdserverpb__PutRequest *req, Etcdserverpb__PutResponse *resp,
                const struct mvcc_write_opts *opts);
int mvcc_txn_ex(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                const Etcdserverpb__TxnRequest *req, Etcdserverpb__TxnResponse *resp,
                const struct mvcc_write_opts *opts);

/* One change of the revision history, as the watch hub reads it. Pointers
 * are into LMDB pages: valid until the read transaction ends. */
struct mvcc_event {
	bool is_delete;
	int64_t main, sub;
	Mvccpb__KeyValue kv;        /* decoded, bytes borrowed (a delete: key and
	                               mod_revision only, as etcd sends it) */
	const uint8_t *kv_raw;      /* the packed KeyValue as stored */
	size_t kv_len;
	const uint8_t *prev_raw;    /* packed KeyValue of the key before this
	                               change (want_prev and not a create), or NULL */
	size_t prev_len;
};

/* Called for each event in revision order; return 0 to go on, < 0 to stop
 * with that error. */
typedef int (*mvcc_event_fn)(void *ud, const struct mvcc_event *ev);

/* Read the events of revisions [from, to] from rev_db in txn. After the
 * revision in which max_events (0 = no limit) is reached it stops, never
 * splitting a revision; *next gets the first revision not read (to + 1 when
 * everything was read). With want_prev each event that is not a key's
 * creation gets the key's previous KeyValue (the entry at main - 1). Reads
 * below the compacted revision return BOLLARD_ECOMPACTED. */
int mvcc_read_events(const struct mvcc *m, MDB_txn *txn, int64_t from, int64_t to,
                     size_t max_events, bool want_prev, mvcc_event_fn fn, void *ud,
                     int64_t *next);

/* ---- import (etcd snapshot restore, etcdimport.c) ---------------------------- */

/* Stores one revision of the history exactly as given: packed is a
 * mvccpb.KeyValue (a tombstone needs only its key; it is stored with
 * mod_revision = main, as the write path does). Entries must come in
 * increasing (main, sub) order; the lease index follows each key's newest
 * entry. The current and compacted revisions are not touched (see
 * mvcc_import_set_revs). 0, BOLLARD_EKEY_TOO_LONG, BOLLARD_EINTERNAL (not a
 * KeyValue, or no key), or an LMDB error. */
int mvcc_import_entry(const struct mvcc *m, MDB_txn *txn, int64_t main, int64_t sub, bool tomb,
                      const uint8_t *packed, size_t len);
/* Sets the current and compacted revisions of an imported store. */
int mvcc_import_set_revs(const struct mvcc *m, MDB_txn *txn, int64_t current, int64_t compact);

#endif
