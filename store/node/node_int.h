/* node_int.h - the insides of struct node, shared by the files of
 * store/node/ (node.c: queue, dispatch, proposals and lifecycle; fsm.c: the
 * raft state machine and the per-iteration LMDB write transaction;
 * backend.c: the LMDB environment; maint.c: maintenance and cluster
 * requests; compactor.c: auto-compaction). Not a public header. */
#ifndef BOLLARD_NODE_INT_H
#define BOLLARD_NODE_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>

#include <lmdb.h>
#include <raft.h>
#include <raft/uv.h>

#include "core/apply.h"
#include "core/authtoken.h"
#include "core/jwt.h"
#include "core/lease.h"
#include "core/metrics.h"
#include "core/mvcc.h"
#include "node/ids.h"
#include "node/node.h"

/* A request whose outcome is known, waiting for the LMDB commit that makes
 * it durable before its callback runs. */
struct node_done {
	struct node_req *req;
	int err;
	uint8_t *resp;
	size_t len;
};

/* One raft entry in flight: the requests group-committed into it. */
struct node_proposal {
	struct raft_apply apply; /* apply.index: the entry's raft index */
	struct node *n;
	uint64_t t_ns;           /* node_clock_ns() when proposed */
	size_t n_fwd;            /* of reqs, followers' (answered at append, reqs[i] NULL) */
	size_t n_reqs;
	struct node_req *reqs[];
};

/* A list of requests (node.c's helpers). */
struct req_list {
	struct node_req *head, *tail;
	size_t n;
};
void node_list_push(struct req_list *l, struct node_req *r);
/* Append src's requests to dst, in order; src is left empty. */
void node_list_splice(struct req_list *dst, struct req_list *src);
void node_list_fail(struct node *n, struct req_list *l, int err);

/* forward.c: requests waiting until the local applied index reaches index
 * (forwarded writes, reads after a ReadIndex), checked after each commit. */
struct node_await {
	struct node_await *next;
	uint64_t index;
	bool raft_index; /* index is raft's applied index (configuration changes too) */
	uint64_t deadline_ms; /* 0, or node_now_ms() after which fn runs anyway */
	void (*fn)(struct node *n, struct node_await *w); /* runs once, frees w */
};

struct fwd_call; /* forward.c */

struct node_compactor {
	bool periodic;       /* else revision mode */
	int64_t retention;   /* periodic: milliseconds; revision: revisions to keep */
	uint64_t period_ms;  /* how often to compact */
	uint64_t start_ms;
	uint64_t last_ms;    /* last compaction attempt */
	int64_t last_rev;    /* last revision compacted to */
	/* periodic: (time, revision) samples of the last retention window */
	size_t n_samples, cap_samples;
	uint64_t *sample_ms;
	int64_t *sample_rev;
	bool in_flight;
	struct node_req req;
	Etcdserverpb__CompactionRequest msg;
};

/* Little-endian fields of the node's own file formats (fsm.c, checkpoint.c). */
static inline void node_put_le(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint64_t node_get_le(const unsigned char *p, int bytes)
{
	uint64_t v = 0;
	for (int i = bytes - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* checkpoint.c: a checkpoint (the side file's slot), and one being taken. */
#define NODE_CKPT_META_LEN 136 /* LMDB 0.9's MDB_meta, 64-bit */
struct node_ckpt_info {
	uint64_t seq, dev, ino, txnid, applied;
	uint32_t psize;
	unsigned char meta[NODE_CKPT_META_LEN];
};
struct node_ckpt_job {
	MDB_txn *pin;       /* read txn on the state (loop thread begins and ends it) */
	uint64_t gen;       /* the data file's (node_ckpt.gen) */
	uint64_t txnid, applied;
	uint64_t last_pgno; /* the state's last page (node_ckpt_committed) */
	uint32_t psize;
	unsigned char meta[NODE_CKPT_META_LEN];
	bool wrote;         /* it is what the side file names (else a newer one is) */
};
struct node_ckpt {
	struct node_ckpt_job durable;  /* the pin of what the side file names */
	struct node_ckpt_job periodic; /* the timer's, on a worker while busy */
	struct node_ckpt_job snap;     /* a raft snapshot's (fsm.c) */
	bool busy;
	uv_work_t work;
	uv_timer_t timer;
	uint64_t gen;                  /* bumped at each open of the data file */
	pthread_mutex_t io_lock;       /* side file writes and the fields below */
	uint64_t seq;                  /* of the newest slot */
	uint64_t saved_gen, saved_txnid;
};

/* metrics.c: when the local raft log held entries up to upto. */
struct node_stored {
	uint64_t upto, t_ns;
};
#define NODE_STORED_RING 64

struct node {
	uv_loop_t *loop;
	struct node_config cfg; /* defaults filled in; strings borrowed */
	char *owned_data_dir;        /* default "<name>.etcd" */
	char *owned_initial_cluster; /* default "<name>=<advertise peer urls>" */

	/* identity */
	struct initial_cluster cluster;
	const struct cluster_member *self;
	uint64_t raft_id;    /* canonical raft's ID of this member (its data dir keeps it) */
	uint64_t member_id;  /* etcd's member ID (clients see it; atomic) */
	uint64_t cluster_id; /* atomic: learnt from the cluster's record (members.c) */
	struct url_list client_urls;
	char raft_addr[300];
	struct url_list bind_addrs; /* "ip:port" of each --listen-peer-urls */

	/* <data-dir>/member/{raft,db} */
	char member_dir[PATH_MAX];
	char raft_dir[PATH_MAX];
	int segfill_slot;           /* segfill.c registration of raft_dir, or -1 */
	int spool_slot;             /* spool.c registration of member_dir, or -1 */
	uint64_t spool_trimmed_ms;  /* when flush_cb last dropped spooled pages */
	bool syncwrite_on;          /* syncwrite.c attached to the loop thread */
	char db_dir[PATH_MAX];

	/* LMDB. env is replaced (defragment, snapshot restore) only on the loop
	 * thread holding env_lock exclusively; threads other than the loop hold
	 * it shared while they use env. */
	pthread_rwlock_t env_lock;
	MDB_env *env;
	struct mvcc mvcc;
	struct mvcc_key_log key_log; /* mvcc.key_log: bound to wtxn while it is open */
	size_t map_size;
	void *env_map;          /* where env's data file is mapped (set with env) */
	/* node_env_release_tick's: when it last looked, the file pages mapped
	 * after the last release, and its worker (one of open_handles while it
	 * runs) */
	uint64_t env_checked_ms;
	uint64_t env_released_ms; /* when the last release ended */
	long env_released_pages;
	bool env_releasing;
	bool env_walked;        /* node_env_release_soon (atomic: any thread) */
	uv_work_t env_release_work;
	/* node_env_prefill: data.mdb is allocated and cached up to here, a
	 * worker extending it over [from, to) while env_prefilling (one of
	 * open_handles) */
	uint64_t env_prefilled;
	uint64_t env_prefill_from, env_prefill_to;
	bool env_prefilling;
	bool env_prefill_skipped;
	uv_work_t env_prefill_work;
	uint64_t applied_index; /* as of the last apply (maybe uncommitted) */
	MDB_txn *wtxn;          /* the open write txn (applied entries not yet committed) */
	uint64_t wtxn_began_ms; /* uv_now when wtxn began */
	bool wtxn_commit_now;   /* wtxn holds more than KV writes, or much: no commit delay */
	uint64_t wtxn_revs0;    /* revisions stored when wtxn began (mdb_stat) */
	uint64_t wtxn_bytes;    /* raft entry bytes applied in wtxn */
	struct node_done *done; /* outcomes waiting to be answered */
	size_t n_done, cap_done;
	/* Applied writes whose wtxn is not committed yet (cfg.commit_delay_ms),
	 * which a client may have been answered for: readers off the loop then
	 * go through it. Atomic, set before such an answer and whenever a loop
	 * phase ends with the txn open, cleared after the commit. */
	bool unflushed;
	uint64_t commits_seen;  /* atomic: LMDB commits so far (node_wait_committed) */
	bool commit_wanted;     /* atomic: node_wait_committed waits: commit now */
	uint64_t read_hopped_ns; /* atomic: node_clock_ns() when a read last went
	                            to the loop for a commit (0: never) */
	pthread_t loop_thread;  /* set by the loop's first phase end, before any unflushed */
	uv_timer_t commit_timer; /* commits a wtxn kept open once the delay is over */

	/* raft */
	struct raft_uv_transport transport; /* peer_tcp.c's, or peer.c's TLS */
	bool peer_tls;          /* peer.c: https peer URLs */
	node_peer_grpc_cb peer_grpc_cb; /* members' gRPC on the peer port, NULL: refused */
	void *peer_grpc_data;
	char *peer_auto_cert, *peer_auto_key; /* --peer-auto-tls files */
	struct raft_io io;
	struct raft_fsm fsm;
	struct raft raft;
	/* raft 0.15 may call its I/O's close callback once more after raft_close
	 * called back (node.c raft_closed): io.data then points here, a raft
	 * with nothing to free, and io and transport live until node_destroy. */
	struct raft io_tomb;
	bool io_open;           /* io and transport set up (freed by node_destroy) */
	/* The raft instance whose log fsm applies (fsm.c reads its last applied
	 * index and term): &raft; tests/node's raft fixture sets its own. */
	struct raft *fsm_raft;
	bool raft_started;
	uint64_t term_cache;    /* raft term, readable from any thread (atomic) */
	uint64_t snap_index;    /* applied index when the snapshot was asked for */
	uint64_t snap_loop_ns, snap_sync_ns; /* its time on the loop, LMDB's sync */
	/* fsm.c: raft's snapshot_get, wrapped: full snapshots for followers */
	int (*io_snapshot_get)(struct raft_io *io, struct raft_io_snapshot_get *req,
	                       raft_io_snapshot_get_cb cb);
	unsigned snap_sends;    /* of them, not yet handed to raft */
	/* fsm.c: requests and entries applied since the last snapshot (raft
	 * counts entries; --snapshot-count counts requests, as in etcd) */
	uint64_t snap_reqs, snap_entries;
	bool snap_forced;           /* raft's threshold lowered to 1 for it */
	unsigned snap_threshold;    /* raft's own threshold while forced */
	unsigned snap_trailing_max; /* raft's trailing as set up (entries) */
	/* a snapshot let raft drop log entries: give their memory back to the
	 * system (malloc_trim; the entries are small blocks in the middle of
	 * malloc's heaps, which free() keeps) once no entry was applied for
	 * TRIM_QUIET_MS: under load the next entries reuse that memory, and a
	 * trim then costs a TLB shootdown per freed run and a page fault per
	 * page taken again */
	bool trim_wanted;
	uint64_t trim_seen_applied; /* stats.applied_entries when last looked */
	uint64_t trim_quiet_ms;     /* since when it has not changed */

	/* submissions from other threads */
	pthread_mutex_t qlock;
	struct node_req *q_head, *q_tail;
	bool stopped;           /* under qlock: handles closed, complete at once */
	int wake_fd;            /* eventfd: the queue went from empty to not empty */
	uv_poll_t wake;         /* the loop's watch of wake_fd */
	uv_check_t check;
	uv_prepare_t prepare;
	uv_timer_t retry_timer;
	uv_timer_t compact_timer;
	uv_timer_t hold_timer;  /* node_log_busy's limit: held writes go (node.c) */

	/* the write path */
	uint64_t next_id;
	struct node_req **waiters; /* hash by request id, chained via next_ */
	size_t n_buckets, n_waiting;
	size_t n_proposing; /* requests in the raft_apply under way (not yet waiting) */
	struct node_req *parked_head, *parked_tail; /* writes waiting for a leader */
	uint64_t parked_since_ms;
	bool nospace_proposed;
	/* Linearizable reads wait until an entry of this leadership is applied
	 * (raft commits no no-op on election, and after a machine crash LMDB
	 * may lag the log): one raft_barrier, then reads go straight to LMDB. */
	bool read_ready;
	bool barrier_in_flight;
	bool snapshot_in_flight;  /* fsm_snapshot .. snapshot_finalize */
	struct raft_barrier barrier;
	struct node_req *rparked_head, *rparked_tail;
	/* reads.c: linearizable reads need no round here (a single member
	 * whose leadership applied an entry); atomic, set after each commit */
	bool reads_direct;
	struct node_req alarm_req;
	Etcdserverpb__AlarmRequest alarm_msg;
	struct node_compactor compactor;

	/* watch (watch.c): the hub of every watch stream, its catch-up retry
	 * timer (runs while watchers lag) and the progress-notify timer */
	struct watch_hub *hub;
	uv_timer_t watch_timer;
	uv_timer_t progress_timer;
	struct node_leader_stream **rl_streams; /* open ones that require a leader */
	size_t n_rl, cap_rl;
	uint64_t leaderless_since_ms;          /* 0: a leader is known */

	/* leases (lease.c): the lessor mirrors LMDB's leases; the leader's
	 * timer revokes expired ones through raft and proposes checkpoints */
	struct lessor lessor;
	int64_t min_lease_ttl;   /* seconds, from election timeout and heartbeat */
	uv_timer_t lease_timer;
	uint64_t lease_cp_last_ms;
	size_t lease_internal;   /* internal revoke/checkpoint requests in flight */

	/* clusters (forward.c) */
	const struct node_forwarder *fwd;
	Bollard__MemberAttributes **attrs; /* per cluster.members[i], NULL: unknown */
	bool published, pub_in_flight;
	uint64_t pub_next_ms;
	struct node_req pub_req;
	Bollard__MemberAttributes pub_msg;
	struct node_await *awaits;
	size_t fwd_in_flight;           /* forwarded calls not yet answered */
	struct req_list rnext;          /* cluster reads waiting for the next round */
	struct req_list wnext;          /* writes waiting: a follower's for a Propose call,
	                                 * a leader's for its log write (node_log_busy) */
	bool ri_in_flight;              /* follower: a ReadIndex call is out */
	struct fwd_call *fcalls;        /* forwarded calls out, abandoned ones too */
	struct req_list fwait;          /* reads and lease requests to route again */
	uint64_t fwait_next_ms;         /* ... not before this (no busy retry) */
	uint64_t nudge_index;           /* leader: followers to be told this commit (0: none) */
	uint64_t restored_index;        /* fsm.c: the applied index a leader's snapshot brought */
	uint64_t fwd_expire_ms;         /* forward.c writes_expire: next check (node_now_ms) */

	/* auth (auth.c): the simple tokens of logins (auth_lock: any thread
	 * resolves them), and the auth store's flag and revision as of the last
	 * apply, readable from any thread (atomics) */
	pthread_mutex_t auth_lock;
	struct auth_tokens tokens;
	struct jwt_key *jwt;            /* --auth-token jwt: tokens are signed, not kept */
	uint64_t jwt_ttl_ms;
	bool auth_enabled_cache;
	uint64_t auth_rev_cache;

	/* membership (members.c) */
	uint64_t members_term;          /* the leadership whose records were checked */
	uint64_t barrier_term;          /* term of the last barrier applied (node.c) */
	uint64_t leader_seen_ms;        /* last time a leader was known */
	uint64_t status_next_ms;        /* next time to ask peers whether removed */
	bool removed;                   /* removed from the cluster: stopping */
	bool id_known;                  /* this member's own record is applied */
	bool joining;                   /* atomic: --initial-cluster-state existing, no record yet */
	struct req_list join_waiters;   /* NODE_JOIN_WAIT until joined */
	bool join_cancelled;            /* the server stopped: no more waiting */
	bool promo_in_flight;           /* leader: a member added as a voter being made one */
	uint64_t promo_next_ms;         /* ... not again before this after a failure */
	struct req_list member_queue;   /* leader: changes waiting for their turn */
	bool member_busy;               /* leader: a change has its turn */
	bool member_pumping;
	/* contact.c: when each peer was last heard from (raft, probes) */
	struct node_contact *contacts;
	size_t n_contacts;
	int (*io_start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
	                raft_io_recv_cb recv);
	raft_io_recv_cb io_recv;
	raft_io_tick_cb io_tick;
	int (*io_send)(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
	               raft_io_send_cb cb);

	/* lifecycle */
	size_t in_flight;       /* raft_apply calls not yet called back */
	bool refusing;          /* node_stop_requests: new requests fail */
	bool raft_closing;
	bool closing;
	bool drain_expired;     /* closing: stop waiting for raft's work (node.c) */
	/* raft's log writes submitted and not yet called back, a leader's or a
	 * follower's (metrics.c counts, node.c waits before raft_close). */
	size_t appends_in_flight;
	uint64_t append_since_ns; /* node_clock_ns() the oldest of them began (about) */
	int open_handles;
	void (*close_cb)(struct node *n);

	struct node_stats stats;
	struct node_ckpt ckpt;  /* checkpoint.c */

	/* metrics.c */
	struct store_metrics metrics;
	int (*io_append)(struct raft_io *io, struct raft_io_append *req,
	                 const struct raft_entry entries[], unsigned n, raft_io_append_cb cb);
	struct node_stored stored[NODE_STORED_RING]; /* recent local log writes */
	uint64_t stored_next;
	size_t fwd_applied;       /* followers' requests applied since the last commit */
	uint64_t fwd_applied_ns;  /* ... when the first of them was */
	uint64_t last_leader_id;
};

/* node.c */
/* Fill a raft request from a node request: its op and the caller's
 * identity (bollard.Request.auth_user/auth_revision). */
void node_request_fill(Bollard__Request *rq, struct node_req *r);
/* One of open_handles went away (a closed handle, a finished thread-pool
 * job): the last one completes node_close. */
void node_handle_release(struct node *n);
void node_complete(struct node *n, struct node_req *req, int err, uint8_t *resp, size_t len);
/* Complete req with m packed (or -ENOMEM). */
void node_reply_msg(struct node *n, struct node_req *req, const ProtobufCMessage *m);
void node_fail_waiters(struct node *n, int err);
/* The request proposed by this member as id into raft entry index. */
struct node_req *node_waiter_take(struct node *n, uint64_t id, uint64_t index);
/* A write this member forwarded (forward.c) waits by its id (req->seq_)
 * alone: the entry's index is the leader's to choose. */
void node_waiter_add_forwarded(struct node *n, struct node_req *req);
struct node_req *node_waiter_take_forwarded(struct node *n, uint64_t id);
struct apply_header node_header(struct node *n);

void node_dispatch(struct node *n, struct node_req *r);
void node_propose(struct node *n, struct req_list *l);
void node_serve_reads_now(struct node *n, struct req_list *l);
/* A raft barrier of this leadership, if none is out (reads and records). */
void node_start_barrier(struct node *n);
/* Linearizable reads (and NODE_READ_INDEX): by the current role (a barrier
 * round on the leader, a ReadIndex round on a follower), or parked until a
 * leader is known (failing after etcd's request timeout). */
void node_serve_reads(struct node *n, struct req_list *l);
void node_park_reads(struct node *n, struct req_list *l);
/* Writes waiting for a leader, retried every heartbeat. */
void node_park_writes(struct node *n, struct req_list *l);
/* etcd's request timeout: 5 s + 2 election timeouts. */
uint64_t node_request_timeout_ms(struct node *n);
/* A waiting request (seq_: when it came) has waited the request timeout, or
 * its caller's deadline (deadline_ns) has passed: it must not start. */
bool node_req_expired(struct node *n, const struct node_req *r);

/* reads.c: one Range from txn (validation, auth, MVCC), any thread: 0 and
 * the packed response, or an error. */
int node_range_serve(struct node *n, MDB_txn *txn, const struct apply_header *hdr,
                     const struct node_req *r, uint8_t **resp, size_t *len);

/* forward.c */
int node_forward_init(struct node *n);      /* loads member attributes */
void node_forward_free(struct node *n);
void node_forward_close(struct node *n);    /* fail what waits, drop forwarded calls */
/* The client URL of the leader ("host:port") if known, else NULL. */
const char *node_leader_target(struct node *n);
/* Forward writes to the leader: false (l untouched) when none is known. */
bool node_forward_writes(struct node *n, struct req_list *l);
/* Follower linearizable reads: one ReadIndex round per batch. */
void node_forward_reads(struct node *n, struct req_list *l);
/* A leader's log write is in flight: node_propose holds new writes in
 * n->wnext until it ends (node.c), for at most NODE_LOG_BUSY_MAX_NS. */
#define NODE_LOG_BUSY_MAX_NS (10u * 1000000u)
bool node_log_busy(struct node *n);
/* metrics.c: no local log write is in flight any more (it ended, before
 * raft hears of it): the held writes go. */
void node_log_written(struct node *n);
/* Leader: a follower's bollard.Batch (req) as requests of their own, each
 * answered into req's answer; returns them followed by rest, for dispatch
 * with the other requests of the wake-up (one raft entry for all). */
struct node_req *node_serve_propose_batch(struct node *n, struct node_req *req,
                                          struct node_req *rest);
/* Leader: the member whose client waits for r (a request of a follower's
 * batch that names it, bollard.Request.origin; its id is r->seq_), else 0. */
uint64_t node_forward_origin(const struct node_req *r);
/* Leader: such a request is in the log at index (raft_apply took it): its
 * follower is told so, and answers its client from its own apply. */
void node_forward_appended(struct node *n, struct node_req *r, uint64_t index);
/* A member that stopped leading: the followers' requests in l (held for
 * its log write, or parked) fail with BOLLARD_ENOT_LEADER, so that their
 * followers send them again (they are in no log); l keeps the others. */
void node_forward_refuse(struct node *n, struct req_list *l);
void node_forward_handle(struct node *n, struct node_req *req);
/* LeaseKeepAlive/TimeToLive/Leases: served by the leader's lessor, so a
 * follower forwards them (NODE_INT_LEASE_*), waiting for a leader if none
 * is known. Also the NODE_INT_LEASE_* ops themselves. */
void node_serve_lease(struct node *n, struct node_req *req);
/* A membership call on a follower: to the leader (waiting for one). */
void node_forward_member(struct node *n, struct node_req *req);
/* Ask member raft_id (at target, or at the peer URL of it that works:
 * peer_pick.h) whether this one was removed (MemberStatus). */
void node_forward_status(struct node *n, const char *target, uint64_t raft_id);
/* The same call as a contact probe of member raft_id (contact.c): its end
 * goes to node_contact_probed. False if it could not be sent. */
bool node_forward_probe(struct node *n, const char *target, uint64_t raft_id);
/* Reload the member attributes from LMDB (after a snapshot restore). */
int node_forward_reload(struct node *n);
/* Complete req (0, no response) once the applied index reaches index, or
 * (deadline_ms not 0) once node_now_ms() reaches deadline_ms. */
void node_await_index(struct node *n, uint64_t index, uint64_t deadline_ms, struct node_req *req);
/* Leader: make followers learn the commit index now (a barrier entry, at
 * most one outstanding) rather than at the next heartbeat; asked for after
 * answering a forwarded write batch or a ReadIndex (maybe from inside a
 * raft callback), done by node_forward_tick from the loop's flush. */
void node_commit_nudge(struct node *n);
/* After each commit: awaits whose index is applied, publishing. */
void node_forward_tick(struct node *n);
/* Apply a MemberAttributes entry (fsm.c). */
int node_member_attr_apply(struct node *n, MDB_txn *txn, const Bollard__MemberAttributes *a);

/* fsm.c */
void node_fsm_init(struct node *n);
/* io's snapshot_get (raft calls it to send a snapshot) made to hand raft a
 * full snapshot: the stored one's metadata with a copy of LMDB (after
 * raft_uv_init, or on a fixture's I/O). */
void node_fsm_wrap_io(struct node *n, struct raft_io *io);
/* Encode a batch as a raft entry payload (raft_malloc'ed, see fsm.c). */
int node_entry_encode(const Bollard__Batch *batch, struct raft_buffer *out);
/* Begin the write txn if none is open. */
MDB_txn *node_wtxn(struct node *n);
/* Commit the open write txn, if any (aborting the process if that fails:
 * the state would be unrecoverable in-process), and tell the checkpoints
 * and watchers; returns when (node_clock_ns), or 0 if nothing was open.
 * Loop thread; anything that reads LMDB there calls it first. */
uint64_t node_commit(struct node *n);
/* node_commit, then answer every request applied (node_defer). */
void node_flush(struct node *n);
/* The end of a loop phase: node_flush, or, while the write txn holds only
 * KV writes younger than cfg.commit_delay_ms, send watchers their events,
 * answer them and leave it open (their entries are in the raft log already:
 * durable). */
void node_flush_or_keep(struct node *n);
/* Before an answer for a write applied here leaves while the write txn is
 * open: set `unflushed`. */
void node_mark_unflushed(struct node *n);
/* Off the loop: return once every write answered before the call is
 * committed in LMDB (a read transaction begun after sees it). */
void node_wait_committed(struct node *n);
/* Remember an outcome to deliver after the next commit. */
void node_defer(struct node *n, struct node_req *req, int err, uint8_t *resp, size_t len);

/* backend.c */
int node_env_open(struct node *n, char *errbuf, size_t errlen);
void node_env_close(struct node *n);
/* Take the database's pages out of this process's resident set (any
 * thread, env_lock held): they stay in the kernel's page cache and the next
 * read maps them again. After a whole-database walk (a snapshot copy). */
void node_env_release_pages(struct node *n);
/* Loop thread, each iteration: node_env_release_pages on a worker (looking
 * at most every 100 ms) once the file pages mapped in this process grew by
 * cfg.map_release_bytes since the last release and cfg.map_release_gap_ms
 * passed since it, or node_env_release_soon was called. */
void node_env_release_tick(struct node *n);
/* Any thread, after a read that walked much of the database (the free
 * list, every key): its pages go at the next node_env_release_tick
 * whatever their amount. */
void node_env_release_soon(struct node *n);
/* Loop thread, after each commit: keeps NODE_PREFILL_BYTES of data.mdb
 * ahead of LMDB's last page allocated and in the page cache as small folios
 * (backend.c says why), on a worker. */
void node_env_prefill(struct node *n);
/* Replace the database file with the one at path (loop thread, wtxn
 * flushed); reopens the environment. Takes env_lock exclusively. */
int node_env_replace(struct node *n, const char *path);
/* fsync() the file or directory at path (open flags: O_RDONLY, | O_DIRECTORY);
 * 0 or -errno. */
int node_fsync_path(const char *path, int flags);
/* Size of the data (high-water mark) and of the pages in use. */
int64_t node_db_size(struct node *n);
int64_t node_db_size_in_use(struct node *n, MDB_txn *txn);
int node_db_hash(struct node *n, MDB_txn *txn, uint32_t *hash);
int node_defragment(struct node *n);
/* CRC-32C (Castagnoli) of buf, continuing crc (0 to start). */
uint32_t node_crc32c(uint32_t crc, const void *buf, size_t len);

/* checkpoint.c: pinned checkpoints (see its top). node_ckpt_recover: before
 * LMDB opens the file, the side file's state into data.mdb's metas (0, or an
 * error with errbuf set). node_ckpt_prepare (loop): pin the latest committed
 * state and copy its meta; node_ckpt_write (any thread, env_lock held or the
 * loop): fdatasync data.mdb, then save the meta; node_ckpt_done (loop): the
 * pin becomes the durable one or is released. node_ckpt_now: all three on
 * the loop. node_ckpt_release_all: every pin ended, before the env closes. */
int node_ckpt_read(const char *db_dir, struct node_ckpt_info *out);
int node_ckpt_recover(struct node *n, char *errbuf, size_t errlen);
int node_ckpt_prepare(struct node *n, struct node_ckpt_job *j);
int node_ckpt_write(struct node *n, struct node_ckpt_job *j);
void node_ckpt_done(struct node *n, struct node_ckpt_job *j);
int node_ckpt_now(struct node *n);
void node_ckpt_release_all(struct node *n);
void node_ckpt_init(struct node *n);  /* the timer (one of open_handles) */
void node_ckpt_start(struct node *n);
void node_ckpt_committed(struct node *n); /* after each commit (fsm.c) */
void node_ckpt_close(struct node *n, uv_close_cb cb);
/* The applied index of the newest durable checkpoint (any thread). */

/* maint.c: requests answered on the loop thread without raft. */
void node_serve_status(struct node *n, struct node_req *req);
void node_serve_hash(struct node *n, struct node_req *req);
void node_serve_hash_kv(struct node *n, struct node_req *req);
void node_serve_member_list(struct node *n, struct node_req *req);
void node_serve_move_leader(struct node *n, struct node_req *req);
/* members.c */
/* MemberAdd, MemberRemove, MemberPromote, MemberUpdate (req->op says which;
 * req->seq_: when it came): on the leader one after another (a queue), on a
 * follower forwarded to the leader. */
void node_serve_member_change(struct node *n, struct node_req *req);
void node_serve_member_call(struct node *n, struct node_req *req);   /* NODE_INT_MEMBER */
void node_serve_member_status(struct node *n, struct node_req *req); /* NODE_MEMBER_STATUS */
void node_serve_join_wait(struct node *n, struct node_req *req);     /* NODE_JOIN_WAIT */
/* After raft_start: a member joining an existing cluster that has not
 * received its record serves once it has (NODE_JOIN_WAIT). At close: fail
 * what waits for that. */
void node_members_start(struct node *n);
void node_members_close(struct node *n);
void node_members_sync(struct node *n);
bool node_is_learner(struct node *n);
bool node_is_member_raft(struct node *n, uint64_t raft_id);
/* etcd's member ID <-> raft's ID (0: not a member of the configuration). */
uint64_t node_raft_id_of(struct node *n, uint64_t member_id);
uint64_t node_member_id_of(struct node *n, uint64_t raft_id);
/* The data dir's identity (raft ID, kept from the first start) and the
 * replicated member records and cluster ID (LMDB). At create and after a
 * snapshot restore (load). */
int node_members_identity(struct node *n, char *errbuf, size_t errlen);
int node_members_load(struct node *n);
/* raft's configuration addresses from the records (after start, changes). */
void node_members_patch(struct node *n);
/* FSM: a MemberInfo / ClusterInfo entry (fsm.c). */
int node_member_info_apply(struct node *n, MDB_txn *txn, const Bollard__MemberInfo *mi);
int node_cluster_info_apply(struct node *n, MDB_txn *txn, const Bollard__ClusterInfo *ci);
/* Each loop iteration: records a new leader lacks, asking peers whether
 * this member was removed when no leader is heard of. */
void node_members_tick(struct node *n);
/* This member was removed: log as etcd does and tell the owner. */
void node_member_removed(struct node *n);
int node_raft_address(const char *url, char *out, size_t len, char *errbuf, size_t errlen);
void node_serve_defragment(struct node *n, struct node_req *req);

/* auth.c */
void node_auth_init(struct node *n);
/* --auth-token: 0, or a negative error with errbuf set (etcd's words). */
int node_auth_setup(struct node *n, char *errbuf, size_t errlen);
void node_auth_free(struct node *n);
/* Reload the cached auth flag and revision from LMDB and forget every
 * token (at create, after a snapshot restore). */
int node_auth_load(struct node *n);
/* apply_opts.auth_applied */
void node_auth_applied(void *ud, const struct auth_event *ev);
/* NODE_AUTH from a client; NODE_AUTH_WAIT. */
void node_serve_auth(struct node *n, struct node_req *req);
void node_serve_auth_wait(struct node *n, struct node_req *req);

/* lease.c */
/* Load the lessor from LMDB (at create, and after a snapshot restore). */
int node_lease_load(struct node *n);
/* Set up the timer (counted in open_handles by the caller) / start it. */
void node_lease_init(struct node *n);
void node_lease_start(struct node *n);
void node_lease_close(struct node *n, uv_close_cb cb);
void node_lease_free(struct node *n);
/* apply_batch_ex options whose hooks mirror applied leases into the lessor. */
struct apply_opts node_lease_apply_opts(struct node *n);
void node_serve_lease_keepalive(struct node *n, struct node_req *req);
void node_serve_lease_ttl(struct node *n, struct node_req *req);
void node_serve_lease_leases(struct node *n, struct node_req *req);

/* watch.c */
/* Create the hub and init its two timers (the caller counts them in
 * open_handles); start the progress timer; close both; free the hub. */
void node_watch_init(struct node *n);
void node_watch_start(struct node *n);
void node_watch_close(struct node *n, uv_close_cb cb);
void node_watch_free(struct node *n);
/* NODE_WATCH / NODE_WATCH_CLOSE (also while closing). */
void node_watch_dispatch(struct node *n, struct node_req *req);
/* Each loop iteration: end require_leader streams after 3 leaderless
 * election timeouts. */
void node_watch_tick(struct node *n);
/* NODE_LEADER_HOLD and NODE_LEADER_RELEASE (watch.c). */
void node_leader_dispatch(struct node *n, struct node_req *req);
/* After each applied batch and before each LMDB commit: send what was
 * applied to synced watchers (read from the open write txn while there is
 * one). */
void node_watch_applied(struct node *n);

/* peer.c: raft's transport. Load and check the peer TLS configuration
 * (after setup_paths: --peer-auto-tls writes under the data dir); 0 or a
 * negative error with errbuf set. Then init/close the transport: TLS for
 * https peer URLs, else peer_tcp.c's plain one. Close frees it once raft
 * closed it, or if raft never took it (again: nothing). */
int node_peer_setup(struct node *n, char *errbuf, size_t errlen);
int node_transport_init(struct node *n, char *errbuf, size_t errlen);
void node_transport_close(struct node *n);
/* peer_tcp.c: the plain transport (http peer URLs) into n->transport. */
int node_peer_tcp_init(struct node *n, char *errbuf, size_t errlen);
void node_peer_tcp_free(struct node *n);

/* contact.c: wrap raft's receive path (after raft_uv_init, before
 * raft_start); when the current contact with a peer began (node_now_ms), 0
 * if it is out of contact or never heard from. */
void node_contact_init(struct node *n);
uint64_t node_contact_since(struct node *n, uint64_t raft_id);
/* The last raft message from raft_id arrived within an election timeout. */
bool node_contact_raft_recent(struct node *n, uint64_t raft_id);
/* Loop tick: probe each peer of the configuration (forward.c's
 * node_forward_probe) four times per election timeout (at most every
 * 250 ms, at least a heartbeat interval apart), one probe at a time. */
void node_contact_tick(struct node *n);
/* A probe of raft_id ended: err 0 or the peer's answer is contact; a failed
 * connection (-ECONNREFUSED, -ECONNRESET) ends the contact at once unless a
 * raft message came from raft_id meanwhile. */
void node_contact_probed(struct node *n, uint64_t raft_id, int err);
void node_contact_free(struct node *n);
/* Leader: send an empty AppendEntries now to each follower that holds the
 * entries up to index (at most the commit index) and was not yet told that
 * commit index; never from inside a raft callback. True while a follower
 * does not hold them yet: call again after raft heard from it. */
bool node_contact_commit_now(struct node *n, uint64_t index);

/* compactor.c */
int node_compactor_init(struct node *n, char *errbuf, size_t errlen);
void node_compactor_start(struct node *n);
void node_compactor_free(struct node *n);

uint64_t node_now_ms(struct node *n);

/* metrics.c: wrap raft's log writes (after raft_uv_init, before raft_init);
 * the stages of a write; the gauges, once per loop iteration. */
void node_metrics_init(struct node *n);
/* fsm.c: req's entry is committed (now): queue, append_fsync,
 * replicate_quorum; stored is node_metrics_stored_at(entry's index), found
 * once per entry. node_flush: its LMDB transaction committed: apply. */
uint64_t node_metrics_stored_at(struct node *n, uint64_t index);
void node_metrics_committed(struct node *n, struct node_req *req, uint64_t stored, uint64_t now);
void node_metrics_flushed(struct node *n, struct node_req *req, uint64_t now);
/* forward.c: a follower sent req to the leader; the leader answered. */
void node_metrics_forwarded(struct node *n, struct node_req *req, uint64_t now);
void node_metrics_forward_answered(struct node *n, struct node_req *req, uint64_t sent,
                                   uint64_t now);
/* node.c: the leader's stages of a follower's requests, answered at append:
 * queue when proposed; append_fsync and replicate_quorum of the n_fwd of
 * p's entry once applied (propose_cb); apply at the next LMDB commit
 * (node_flush). */
void node_metrics_fwd_proposed(struct node *n, const struct node_req *req,
                               const struct node_proposal *p);
void node_metrics_fwd_committed(struct node *n, const struct node_proposal *p, uint64_t now);
void node_metrics_fwd_flushed(struct node *n, uint64_t now);
void node_metrics_publish(struct node *n);

/* segfill.c: raft's open segments in dir are zero-filled as raft creates
 * them; the slot (or -1: not registered) goes back to unregister. */
int node_segfill_register(const char *dir);
void node_segfill_unregister(int slot);

/* syncwrite.c: on the calling thread, raft's small log writes made while
 * lone(arg) is true are kept and written (O_DSYNC) by syncwrite_run(), not
 * by Linux AIO; detach writes what is kept and stops. */
void syncwrite_attach(bool (*lone)(void *arg), void *arg);
void syncwrite_run(void);
void syncwrite_detach(void);
uint64_t syncwrite_count(void); /* writes syncwrite_run() made, process-wide */

#endif
