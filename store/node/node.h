/* node.h - one store member: the libuv loop thread that owns raft, the LMDB
 * environment, the MVCC state and every write.
 *
 * Other threads (the gRPC completion-queue thread) never touch that state:
 * they hand requests over with node_submit(), which queues them and wakes
 * the loop with uv_async_send(). The loop batches all writes queued in one
 * wake-up into one raft entry (group commit), applies committed entries to
 * LMDB in one write transaction per loop iteration, commits it, and only
 * then answers (durable before reply). Ranges that need no read round are
 * served on the caller's thread from an LMDB read transaction instead
 * (node_read(), node_read_serializable()). */
#ifndef BOLLARD_NODE_H
#define BOLLARD_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>
#include <uv.h>

struct node;

/* Settings of a member: etcd's flags with etcd's defaults (see
 * node_config_init). Strings are borrowed: they must outlive the node. */
struct node_config {
	const char *name;                  /* --name, "default" */
	const char *data_dir;              /* --data-dir, "<name>.etcd" */
	const char *initial_cluster;       /* --initial-cluster, "<name>=<first advertise peer url>" */
	const char *initial_cluster_state; /* --initial-cluster-state, "new" */
	const char *initial_cluster_token; /* --initial-cluster-token, "etcd-cluster" */
	const char *listen_peer_urls;      /* --listen-peer-urls, "http://localhost:2380" */
	const char *initial_advertise_peer_urls; /* "http://localhost:2380" */
	const char *advertise_client_urls; /* --advertise-client-urls, "http://localhost:2379" */
	int64_t quota_backend_bytes;       /* --quota-backend-bytes, 0 = 2 GiB default */
	int64_t max_request_bytes;         /* --max-request-bytes, 1.5 MiB */
	int64_t max_txn_ops;               /* --max-txn-ops, 128 */
	int64_t snapshot_count;            /* --snapshot-count, 100000 */
	unsigned heartbeat_ms;             /* --heartbeat-interval, 100 */
	unsigned election_ms;              /* --election-timeout, 1000 */
	/* --backend-batch-interval: at most this long before LMDB's state is
	 * a durable checkpoint (node/checkpoint.c); NODE_CHECKPOINT_INTERVAL_MS */
	unsigned backend_batch_interval_ms;
	/* and after this many commits if the file has grown since (UINT_MAX:
	 * never); NODE_CHECKPOINT_COMMITS */
	unsigned checkpoint_commits;
	/* Applied KV writes may wait this long in an open LMDB transaction,
	 * answered, before it commits (fsm.c commit_may_wait says why; 0: commit
	 * at the end of every loop phase); NODE_COMMIT_DELAY_MS */
	unsigned commit_delay_ms;
	/* ... unless they wrote this many revisions (events) or raft entry
	 * bytes since it began (LMDB's write txn holds a bounded number of
	 * dirty pages); NODE_COMMIT_MAX_EVENTS, NODE_COMMIT_MAX_BYTES */
	uint64_t commit_max_events, commit_max_bytes;
	/* The data file's pages that reads mapped leave our RSS once they grew
	 * by this much (node_env_release_tick); NODE_MAP_RELEASE_BYTES */
	uint64_t map_release_bytes;
	/* and at most once per this long (backend.c says why);
	 * NODE_MAP_RELEASE_GAP_MS */
	unsigned map_release_gap_ms;
	const char *auto_compaction_mode;  /* --auto-compaction-mode, "periodic" */
	const char *auto_compaction_retention; /* --auto-compaction-retention, "0" (off) */
	int log_level;                     /* 0 debug, 1 info, 2 warn, 3 error */
	unsigned watch_progress_ms;        /* progress_notify interval, 0 = 10 min (etcd) */
	/* Peer TLS, used when --listen-peer-urls is https (peer.c): etcd's
	 * --peer-cert-file, --peer-key-file, --peer-trusted-ca-file,
	 * --peer-client-cert-auth, --peer-auto-tls. Checked by node_create. */
	struct {
		const char *cert_file, *key_file, *trusted_ca_file;
		bool client_cert_auth, auto_tls;
		const char *allowed_cn;       /* --peer-cert-allowed-cn */
		const char *allowed_hostname; /* --peer-cert-allowed-hostname */
	} peer_tls;
	int64_t auth_token_ttl_s;          /* --auth-token-ttl, 300 (simple tokens) */
	const char *auth_token;            /* --auth-token: "simple" (NULL too) or etcd's
	                                      "jwt,sign-method=..,pub-key=..,priv-key=..,ttl=.." */
	bool force_new_cluster;            /* --force-new-cluster: this member alone */
	bool strict_reconfig_check;        /* --strict-reconfig-check, true (core/reconfig.h) */
	/* Called (loop thread) once this member learns it was removed from the
	 * cluster; the owner should stop it, as etcd exits. NULL: only logged. */
	void (*on_removed)(void *arg);
	void *on_removed_arg;
};

void node_config_init(struct node_config *cfg);
/* The etcd release whose API a member serves (Status.version, /version),
 * and the cluster version etcd 3.4 members agree on. */
#define NODE_VERSION "3.4.23"
#define NODE_CLUSTER_VERSION "3.4.0"
#define NODE_CHECKPOINT_INTERVAL_MS 1000 /* checkpoint.c says why */
#define NODE_CHECKPOINT_COMMITS 8 /* checkpoint.c says why */
#define NODE_COMMIT_DELAY_MS 200 /* fsm.c commit_may_wait says why */
/* LMDB's limit is 131071 dirty pages (MDB_TXN_FULL, fatal here), and it
 * keeps their memory for its next transactions: an event dirties at most a
 * few pages that others have not (a key's leaf, its revision's), and bytes
 * of values one page per 4 KiB. */
#define NODE_COMMIT_MAX_EVENTS 8192
#define NODE_COMMIT_MAX_BYTES (64ull << 20)
#define NODE_MAP_RELEASE_BYTES (64u << 20) /* backend.c says why */
#define NODE_MAP_RELEASE_GAP_MS 10000 /* backend.c says why */
#define NODE_PREFILL_BYTES (8u << 20) /* backend.c node_env_prefill says why */

/* What a node_req asks for. The request message type is in brackets. */
enum node_op {
	NODE_RANGE,          /* Etcdserverpb__RangeRequest (linearizable) */
	NODE_PUT,            /* Etcdserverpb__PutRequest */
	NODE_DELETE_RANGE,   /* Etcdserverpb__DeleteRangeRequest */
	NODE_TXN,            /* Etcdserverpb__TxnRequest */
	NODE_COMPACT,        /* Etcdserverpb__CompactionRequest */
	NODE_STATUS,         /* Etcdserverpb__StatusRequest */
	NODE_HASH,           /* Etcdserverpb__HashRequest */
	NODE_HASH_KV,        /* Etcdserverpb__HashKVRequest */
	NODE_DEFRAGMENT,     /* Etcdserverpb__DefragmentRequest */
	NODE_ALARM,          /* Etcdserverpb__AlarmRequest */
	NODE_MEMBER_LIST,    /* Etcdserverpb__MemberListRequest */
	NODE_MOVE_LEADER,    /* Etcdserverpb__MoveLeaderRequest */
	/* Watch streams (node/watch.c): a struct node_watch_req. */
	NODE_WATCH,          /* Etcdserverpb__WatchRequest of one stream */
	NODE_WATCH_CLOSE,    /* msg NULL: the stream ended; drop its watchers */
	/* Leases (node/lease.c). Grant and revoke go through raft; the others
	 * are answered by the leader's lessor on the loop thread. Keep-alive
	 * answers BOLLARD_ELEASE_NOT_FOUND for an unknown or expired lease;
	 * TimeToLive answers TTL -1 for an unknown one, as etcd. */
	NODE_LEASE_GRANT,     /* Etcdserverpb__LeaseGrantRequest */
	NODE_LEASE_REVOKE,    /* Etcdserverpb__LeaseRevokeRequest */
	NODE_LEASE_KEEPALIVE, /* Etcdserverpb__LeaseKeepAliveRequest */
	NODE_LEASE_TTL,       /* Etcdserverpb__LeaseTimeToLiveRequest */
	NODE_LEASE_LEASES,    /* Etcdserverpb__LeaseLeasesRequest */
	NODE_LEASE_CHECKPOINT, /* Etcdserverpb__LeaseCheckpointRequest (the node's own) */
	/* Clusters (node/forward.c). */
	NODE_MEMBER_ATTR,     /* Bollard__MemberAttributes (the node's own publish) */
	NODE_PROPOSE_BATCH,   /* Bollard__Batch forwarded by another member: answers a
	                         packed Bollard__ProposeResponse once applied here */
	NODE_READ_INDEX,      /* Bollard__ReadIndexRequest: answers a packed
	                         Bollard__ReadIndexResponse after a read barrier */
	NODE_FORWARD_DONE,    /* internal: a forwarded call's answer (node_forward_done) */
	/* Lease requests forwarded by another member (its LeaseKeepAlive,
	 * LeaseTimeToLive, LeaseLeases): answered by this member's lessor if
	 * it leads, else BOLLARD_ENOT_LEADER (never forwarded again). */
	NODE_INT_LEASE_KEEPALIVE, /* Etcdserverpb__LeaseKeepAliveRequest */
	NODE_INT_LEASE_TTL,       /* Etcdserverpb__LeaseTimeToLiveRequest */
	NODE_INT_LEASE_LEASES,    /* Etcdserverpb__LeaseLeasesRequest */
	/* Membership (node/members.c), on the leader. */
	NODE_MEMBER_ADD,     /* Etcdserverpb__MemberAddRequest */
	NODE_MEMBER_REMOVE,  /* Etcdserverpb__MemberRemoveRequest */
	NODE_MEMBER_PROMOTE, /* Etcdserverpb__MemberPromoteRequest */
	/* Auth (node/auth.c): any etcdserverpb Auth*Request (its descriptor
	 * says which), answered with its Auth*Response once applied. */
	NODE_AUTH,
	NODE_MEMBER_UPDATE,  /* Etcdserverpb__MemberUpdateRequest */
	NODE_MEMBER_INFO,    /* Bollard__MemberInfo (internal: the leader's record) */
	NODE_CLUSTER_INFO,   /* Bollard__ClusterInfo (internal: the leader's record) */
	NODE_INT_MEMBER,     /* Bollard__MemberCall forwarded by another member: answers
	                        a packed Bollard__MemberCallResponse (leader only) */
	NODE_MEMBER_STATUS,  /* Bollard__MemberStatusRequest of another member */
	/* Bollard__ReadIndexResponse: answered (0, no response) once the login
	 * entry at index is applied here, or after the request timeout: etcd
	 * waits so before judging a token. */
	NODE_AUTH_WAIT,
	/* msg NULL: answered (0, no response) once this member serves: at once,
	 * or, for one joining with --initial-cluster-state existing, once it has
	 * applied the cluster's record of it (so its member ID, as etcd's
	 * joining member learns it from its peers before it serves). */
	NODE_JOIN_WAIT,
	/* A struct node_leader_req: a stream other than Watch that requires a
	 * leader is held (refused with BOLLARD_ENO_LEADER if this member knows
	 * none) or released (never refused; after it, end is not called). */
	NODE_LEADER_HOLD,
	NODE_LEADER_RELEASE,
	NODE_OP_COUNT_
};

struct node_req;

/* Completion: err is 0 or a code for bollard_strerror()/bollard_err_grpc_code().
 * On success resp/len hold the packed response message (malloc'ed; the
 * callee owns it and frees it with free()). Called exactly once per
 * submitted request, on the loop thread (or, for node_read_serializable, on
 * the calling thread before it returns; node_read: either). */
typedef void (*node_req_cb)(struct node_req *req, int err, uint8_t *resp, size_t len);

struct node_req {
	void *data;                  /* for the submitter */
	enum node_op op;
	const ProtobufCMessage *msg; /* decoded request, owned by the submitter;
	                                valid until cb runs */
	node_req_cb cb;
	/* Who sent it (auth), from node_auth_resolve(): the user its token or
	 * client certificate names (NULL: none; borrowed, valid until cb) and
	 * the auth revision it was resolved at (0: none). Checked against the
	 * user's permissions where etcd checks them (reads when served, writes
	 * at apply). Zero for requests without credentials. */
	const char *auth_user;
	uint64_t auth_rev;
	/* node_clock_ns() at which the caller gives up (its gRPC deadline), 0:
	 * none. A request that waits (membership calls queued on the leader,
	 * calls waiting for a leader) is failed then, never started after. */
	uint64_t deadline_ns;
	/* private to the node */
	struct node_req *next_;
	uint64_t seq_;
	void *prop_;
	uint64_t t_ns_; /* node_clock_ns() of the current stage's start (metrics.c) */
};

/* A client stream that requires a leader (the metadata "hasleader: true",
 * etcd's WithRequireLeader): end (loop thread) ends it with
 * BOLLARD_ENO_LEADER once this member has known no leader for 3 election
 * timeouts, as etcd's stream interceptor cancels such streams, and then
 * forgets it. A Watch stream is held so through its require_leader; others
 * with NODE_LEADER_HOLD and NODE_LEADER_RELEASE. */
struct node_leader_stream {
	void (*end)(struct node_leader_stream *s, int err);
};

struct node_leader_req {
	struct node_req req; /* op NODE_LEADER_HOLD or NODE_LEADER_RELEASE, msg NULL */
	struct node_leader_stream *stream;
};

/* A watch stream of a client (etcdserverpb.Watch/Watch), owned by the
 * submitter. The node's loop thread calls send/writable until the stream's
 * NODE_WATCH_CLOSE request completed; both must never block. send queues a
 * malloc'ed packed WatchResponse and returns WATCH_SENT (0, buf taken),
 * WATCH_FULL (1, buf not taken: the node catches the watchers up later)
 * or WATCH_DEAD (-1, buf freed); force is set for control responses
 * (created, canceled, progress) that must not be refused. */
struct node_watch_stream {
	int (*send)(struct node_watch_stream *ws, uint8_t *buf, size_t len, bool force,
	            int64_t watch_id, size_t events_at); /* watch_hub_io.send's */
	bool (*writable)(struct node_watch_stream *ws);
	/* Optional (NULL: send hands each response over at once): send may
	 * hold responses until flush, called after each batch of sends. */
	void (*flush)(struct node_watch_stream *ws);
	/* The client sent the metadata "hasleader: true" (etcd's
	 * WithRequireLeader): the stream's first request fails with
	 * BOLLARD_ENO_LEADER while this member knows no leader. Set before
	 * the first request is submitted. */
	bool require_leader;
	/* Ends the stream with err (loop thread): BOLLARD_ENO_LEADER once this
	 * member has known no leader for 3 election timeouts, for a stream with
	 * require_leader (etcd's interceptor cancels those). The submitter still
	 * sends NODE_WATCH_CLOSE when the stream is over. NULL: never ended. */
	void (*end)(struct node_watch_stream *ws, int err);
	void *hub_; /* private to the node */
	struct node_leader_stream held_; /* private to the node */
};

/* A request of a watch stream: req.op NODE_WATCH (req.msg the
 * WatchRequest; control responses are sent before req.cb runs) or
 * NODE_WATCH_CLOSE (req.msg NULL; after req.cb nothing more is sent).
 * Requests of one stream are handled in submission order. */
struct node_watch_req {
	struct node_req req;
	struct node_watch_stream *stream;
	/* A create whose caller could not be identified (node_auth_resolve's
	 * error): refused with it. Else req.auth_user/auth_rev are checked. */
	int auth_err;
};

/* Forwarding to the leader, implemented by the server layer (the node never
 * calls gRPC itself). call sends the packed request req/len (ownership
 * passes) to method ("Propose", "ReadIndex", "LeaseKeepAlive",
 * "LeaseTimeToLive", "LeaseLeases", "Member" or "MemberStatus" of
 * bollard.Internal) of the member at raft address target ("ip:port", its peer
 * port, see below), and must eventually call
 * node_forward_done(n, ctx, ...) exactly once, from any thread, with 0 and the packed response (malloc'ed,
 * ownership passes) or an error: -ECONNREFUSED when the request certainly
 * never left (no connection: the node may send it again), BOLLARD_ETIMEOUT
 * when the deadline passed, -ECONNRESET for any other transport failure
 * (it may have been delivered), or the target's own BOLLARD_E* answer. The
 * deadline is timeout_ms from the call (0: the forwarder's own, 5 s). */
struct node_forwarder {
	void *data;
	void (*call)(void *data, const char *target, const char *method, uint8_t *req, size_t len,
	             uint64_t timeout_ms, void *ctx);
};

/* Set before node_start(); ops must outlive the node. */
void node_set_forwarder(struct node *n, const struct node_forwarder *ops);

/* Members' own gRPC travels over the peer port, never to the client URL:
 * incoming member gRPC connections are handed to the node_set_peer_grpc hook
 * (node/peer_tcp.c for http peer URLs, node/peer.c for https). With peer
 * TLS, the forwarder dials a target with node_peer_dial (inside the peer
 * TLS); without, with plain TCP. The hook runs on the loop thread. */
bool node_peer_tls(const struct node *n);
/* fd: a connected plaintext socket carrying a member's HTTP/2 (its preface
 * first); the callee owns it. NULL cb: such connections are refused. */
typedef void (*node_peer_grpc_cb)(void *data, int fd);
void node_set_peer_grpc(struct node *n, node_peer_grpc_cb cb, void *data);
/* Dial the member at address over TLS: cb(data, fd, NULL) once the
 * handshake completed (fd plaintext, the callee's), or cb(data, -1, why)
 * (also when the node closes). cb runs later, on the loop thread. 0 or a
 * negative errno (no cb). */
typedef void (*node_peer_dial_cb)(void *data, int fd, const char *err);
int node_peer_dial(struct node *n, const char *address, node_peer_dial_cb cb, void *data);
/* The answer of a forwarded call (thread-safe). */
void node_forward_done(struct node *n, void *ctx, int err, uint8_t *resp, size_t len);

/* Create the node: open (or create) the data dir, LMDB and raft, compute
 * member and cluster IDs from the flags as etcd does. Does not start serving.
 * Returns 0 or an error, with a message in errbuf. */
int node_create(struct node **out, uv_loop_t *loop, const struct node_config *cfg,
                char *errbuf, size_t errlen);

/* Start raft (bootstraps a new single member) and begin processing requests. */
int node_start(struct node *n);

/* Queue a request for the loop thread. Thread-safe, never blocks. After
 * node_stop_requests() or node_close() began, requests complete with
 * BOLLARD_ESTOPPED (once the node is closed, on the calling thread, before
 * node_submit returns). Writes are validated again here (validate.h) and
 * checked against the quota. */
void node_submit(struct node *n, struct node_req *req);
/* node_submit without waking the loop: true when the caller owes it a
 * node_wake(), which it must send before it next sleeps (a thread taking
 * several requests in a row wakes the loop once for them all). */
bool node_submit_quiet(struct node *n, struct node_req *req);
void node_wake(struct node *n);

/* Serve a Range (req->op NODE_RANGE): as node_read_serializable when it
 * needs no read round (serializable, or linearizable of a key or a few on a
 * single member that leads) and no answered write waits for its commit,
 * else as node_submit (req->cb on the loop thread after the round or the
 * commit). Thread-safe, never blocks. */
void node_read(struct node *n, struct node_req *req);

/* Serve a serializable Range on the calling thread from an LMDB read
 * transaction; calls req->cb before returning. Thread-safe; off the loop
 * it may wait for the commit of answered writes (one loop phase). */
void node_read_serializable(struct node *n, struct node_req *req);

/* Write a consistent copy of the whole database to fd (blocking; run it on a
 * thread of its own, not on the loop or a gRPC polling thread). Sets *size
 * to the bytes written. Thread-safe. The copy is an LMDB data file (compacted,
 * so smaller than dbSize). A Defragment waits until running copies end. */
int node_snapshot_to_fd(struct node *n, int fd, uint64_t *size);

/* Auth (node/auth.c). Thread-safe. The identity of a caller with the
 * "token" metadata value token (NULL: none) and, with --client-cert-auth,
 * the client certificate's CommonName cert_cn (NULL: none), as etcd's
 * AuthInfoFromCtx: *user gets a malloc'ed copy of the user name (NULL for
 * no credentials) and *rev the auth revision. 0, or
 * BOLLARD_EINVALID_AUTH_TOKEN for an unknown or expired token. */
int node_auth_resolve(struct node *n, const char *token, const char *cert_cn, char **user,
                      uint64_t *rev);
/* etcd's IsAdminPermitted for an identity (Maintenance and membership
 * calls): 0 when auth is off or user has the root role. Thread-safe. */
int node_auth_check_admin(struct node *n, const char *user, uint64_t rev);

/* Limits the gRPC layer enforces before submitting (etcd checks them there). */
int64_t node_max_request_bytes(const struct node *n);
int64_t node_max_txn_ops(const struct node *n);

/* IDs as etcd computes them from the same flags (a member added later: the
 * ID the cluster gave it, once it learnt it; the cluster's ID as its first
 * members recorded it). Thread-safe. */
uint64_t node_member_id(const struct node *n);
/* Joining an existing cluster and not yet knowing its member ID (any thread). */
bool node_joining(const struct node *n);
/* The server is stopping (loop thread): fail the NODE_JOIN_WAITs now, or its
 * shutdown would wait for them. */
void node_join_waits_cancel(struct node *n);
uint64_t node_cluster_id(const struct node *n);

/* The first step of a stop (etcd's "server stopped"): every request still
 * waiting (for a leader, a read round, this member to catch up with the
 * leader, a forwarded call's answer) fails with BOLLARD_ESTOPPED now, and so
 * does every later one but a watch's close and a serializable Range (served
 * in place while LMDB is open); raft keeps running until node_close. A server shutting down waits for its calls' answers, so call
 * this first: a member that lags its leader must not hold a SIGTERM until
 * it caught up. Loop thread; idempotent. */
void node_stop_requests(struct node *n);

/* Stop raft, fail queued requests with BOLLARD_ESTOPPED (node_stop_requests
 * first if not done), close LMDB; cb runs on the loop thread when everything
 * is closed. Free the node with node_destroy() once the loop has ended
 * (uv_run returned): raft's I/O may still close a file after cb. */
void node_close(struct node *n, void (*cb)(struct node *n));
void node_destroy(struct node *n);

/* Counters for tests and debugging. Read on the loop thread. */
struct node_stats {
	uint64_t proposals;         /* raft entries proposed (raft_apply calls) */
	uint64_t proposed_requests; /* client requests carried by them */
	uint64_t applied_entries;   /* entries applied to LMDB */
	uint64_t skipped_entries;   /* entries skipped: already in LMDB (replay) */
	uint64_t commits;           /* LMDB write transactions committed */
	uint64_t snapshots;         /* raft snapshots taken */
	uint64_t restores_loaded;   /* snapshots loaded into LMDB */
	uint64_t restores_spooled;  /* of them, copied from the file raft received into */
	uint64_t restores_skipped;  /* snapshots LMDB already contained */
	uint64_t snapshots_sent;    /* full snapshots made for followers */
	uint64_t checkpoints;       /* LMDB checkpoints made durable (checkpoint.c) */
	uint64_t checkpoints_recovered; /* opens that went back to the checkpoint */
	uint64_t heap_trims;        /* malloc_trim()s after snapshots, each once quiet */
};
void node_get_stats(const struct node *n, struct node_stats *out);

/* Metrics (metrics.c). node_metrics: the member's counters and histograms,
 * which the server layer updates too (gRPC bytes, the respond stage);
 * node_metrics_render appends the Prometheus text of everything to b
 * (thread-safe: reads atomics and LMDB); node_healthy: a leader is known
 * and no alarm is raised (thread-safe). node_clock_ns: the clock the
 * stages are measured with (CLOCK_MONOTONIC). */
struct store_metrics;
struct metrics_buf;
struct store_metrics *node_metrics(struct node *n);
int node_metrics_render(struct node *n, struct metrics_buf *b);
bool node_healthy(struct node *n);
/* A leader is known, as of the loop's last iteration (thread-safe). */
bool node_leader_known(struct node *n);
/* This member is a learner in its configuration, as of the loop's last
 * iteration (thread-safe): etcd 3.4 answers such a member's clients with
 * Status and serializable reads only. */
bool node_learner_known(struct node *n);
uint64_t node_clock_ns(void);

/* The raft index of the last entry applied to LMDB. Loop thread. */
uint64_t node_applied_index(const struct node *n);

/* mkdir -p path (mode 0700); 0 or an error with errbuf set. */
int node_mkdirs(const char *path, char *errbuf, size_t errlen);

/* Parse an etcd/Go duration ("90s", "1h30m", "500ms") into milliseconds.
 * Returns 0 or -EINVAL. */
int node_parse_duration_ms(const char *s, int64_t *ms);

#endif
