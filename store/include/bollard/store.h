/* bollard/store.h - Bollard's C client API: one interface to a Bollard (or
 * etcd v3) store, embedded in this process or remote over gRPC.
 *
 * A client is opened with bollard_connect() (remote endpoints) or
 * bollard_open_embedded() (a store member inside this process, over a data
 * dir), and then every call works the same for both back ends: the same
 * arguments, results, error codes and callbacks.
 *
 * ASYNCHRONOUS CALLS run on a libuv loop the caller owns and passes to
 * bollard_connect(). Like uv_fs_t, the request structs (struct bollard_req,
 * struct bollard_watch, struct bollard_keepalive) are allocated and owned by
 * the caller; each carries a `void *data` for the caller and must stay valid
 * and untouched until its final callback ran. Every argument (keys, values,
 * option structs, txn arrays) is copied before the call returns: the caller
 * may free or reuse them at once. Callbacks run on the loop thread, from
 * uv_run(), never from inside the call that started the request.
 *
 * BLOCKING CALLS (bollard_*_sync) need no loop: they run the request on the
 * calling thread and return when it is done. A client opened with loop ==
 * NULL offers only those.
 *
 * THREADS. Blocking calls may be made from any number of threads at once.
 * Asynchronous calls, watches, keep-alives and bollard_close() must be made
 * on the loop's thread (the thread running uv_run on that loop). A blocking
 * call made on the loop thread blocks the loop for its duration. Both back
 * ends run threads of their own that never call the caller's code: remote,
 * gRPC's completion-queue thread; embedded, the member's thread (its own
 * libuv loop: raft, LMDB writes, watch fan-out), which blocks every signal.
 * Every callback runs on the caller's loop thread.
 *
 * ERRORS. Every fallible function returns 0, a negative errno value, or one
 * of the BOLLARD_E* codes below (etcd's errors, mapped back from the gRPC
 * status and message the server sent). bollard_strerror() gives etcd's text,
 * byte for byte, for a BOLLARD_E* code and strerror()'s for -errno. Codes the
 * client itself produces:
 *   -EINVAL     bad arguments (also: an asynchronous call on a client without
 *               a loop)
 *   -ENOMEM     out of memory
 *   -ENOTCONN   no endpoint could be reached before the deadline; nothing was
 *               sent, so the request was certainly NOT applied
 *   -ECONNRESET the connection was lost after a write (put, delete, txn) was
 *               sent: it may or may not have been applied (check with a read)
 *   -ETIMEDOUT  the request timeout passed; for a write the outcome is unknown
 *   -ECANCELED  the request, watch or keep-alive was cancelled, or the client
 *               is closing
 *   -EPROTO     the server sent something this client cannot decode
 *
 * RETRIES AND FAILOVER (remote). The client talks to one endpoint at a time.
 * When the endpoint cannot be reached it moves to the next one. Following
 * etcd's clientv3, only idempotent calls are retried after they were sent:
 * range, status, lease grant and lease revoke are retried (on the next
 * endpoint) when they fail with gRPC UNAVAILABLE; put, delete and txn are
 * retried only when they were never sent (no connection was ready), and
 * otherwise fail with -ECONNRESET or the server's error. Watches and lease
 * keep-alives reconnect by themselves: a watch resumes from the revision after
 * the last one it delivered, so no event is lost or delivered twice.
 *
 * RESULTS. A struct bollard_result filled by the library owns its memory; all
 * pointers in it (kvs, keys, values, txn responses, strings) stay valid until
 * bollard_result_free(). Watch event batches are borrowed: valid only during
 * the callback (copy what you keep).
 *
 * Keys, values and range ends are byte strings (pointer + length, not NUL
 * terminated; the library adds a NUL after each returned key and value for
 * convenience). The library keeps no global state. */
#ifndef BOLLARD_STORE_H
#define BOLLARD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(BOLLARD_STORE_BUILDING) && defined(__GNUC__)
#define BOLLARD_API __attribute__((visibility("default")))
#else
#define BOLLARD_API
#endif

/* ---- errors ---- */

/* X(name, value): etcd's errors as stable numbers (the store's internal
 * error table, store/core/errors.h, uses the same values; a build-time check
 * keeps them equal). New codes are only ever appended. */
#define BOLLARD_ERROR_CODES(X)                                                                   \
	X(EMPTY_KEY, -9999)                                                                         \
	X(KEY_NOT_FOUND, -9998)                                                                     \
	X(VALUE_PROVIDED, -9997)                                                                    \
	X(LEASE_PROVIDED, -9996)                                                                    \
	X(TOO_MANY_OPS, -9995)                                                                      \
	X(DUPLICATE_KEY, -9994)                                                                     \
	X(COMPACTED, -9993)                                                                         \
	X(FUTURE_REV, -9992)                                                                        \
	X(NO_SPACE, -9991)                                                                          \
	X(LEASE_NOT_FOUND, -9990)                                                                   \
	X(LEASE_EXIST, -9989)                                                                       \
	X(LEASE_TTL_TOO_LARGE, -9988)                                                               \
	X(WATCH_CANCELED, -9987)                                                                    \
	X(MEMBER_EXIST, -9986)                                                                      \
	X(PEER_URL_EXIST, -9985)                                                                    \
	X(MEMBER_NOT_ENOUGH_STARTED, -9984)                                                         \
	X(MEMBER_BAD_URLS, -9983)                                                                   \
	X(MEMBER_NOT_FOUND, -9982)                                                                  \
	X(MEMBER_NOT_LEARNER, -9981)                                                                \
	X(LEARNER_NOT_READY, -9980)                                                                 \
	X(TOO_MANY_LEARNERS, -9979)                                                                 \
	X(REQUEST_TOO_LARGE, -9978)                                                                 \
	X(TOO_MANY_REQUESTS, -9977)                                                                 \
	X(ROOT_USER_NOT_EXIST, -9976)                                                               \
	X(ROOT_ROLE_NOT_EXIST, -9975)                                                               \
	X(USER_ALREADY_EXIST, -9974)                                                                \
	X(USER_EMPTY, -9973)                                                                        \
	X(USER_NOT_FOUND, -9972)                                                                    \
	X(ROLE_ALREADY_EXIST, -9971)                                                                \
	X(ROLE_NOT_FOUND, -9970)                                                                    \
	X(ROLE_EMPTY, -9969)                                                                        \
	X(AUTH_FAILED, -9968)                                                                       \
	X(PERMISSION_DENIED, -9967)                                                                 \
	X(ROLE_NOT_GRANTED, -9966)                                                                  \
	X(PERMISSION_NOT_GRANTED, -9965)                                                            \
	X(AUTH_NOT_ENABLED, -9964)                                                                  \
	X(INVALID_AUTH_TOKEN, -9963)                                                                \
	X(INVALID_AUTH_MGMT, -9962)                                                                 \
	X(AUTH_OLD_REVISION, -9961)                                                                 \
	X(NO_LEADER, -9960)                                                                         \
	X(NOT_LEADER, -9959)                                                                        \
	X(LEADER_CHANGED, -9958)                                                                    \
	X(NOT_CAPABLE, -9957)                                                                       \
	X(STOPPED, -9956)                                                                           \
	X(TIMEOUT, -9955)                                                                           \
	X(TIMEOUT_LEADER_FAIL, -9954)                                                               \
	X(TIMEOUT_CONNECTION_LOST, -9953)                                                           \
	X(UNHEALTHY, -9952)                                                                         \
	X(CORRUPT, -9951)                                                                           \
	X(NOT_SUPPORTED_FOR_LEARNER, -9950)                                                         \
	X(BAD_LEADER_TRANSFEREE, -9949)                                                             \
	X(KEY_TOO_LONG, -9948)                                                                      \
	X(BAD_REQUEST, -9947)                                                                       \
	X(INTERNAL, -9946)                                                                          \
	X(NO_PASSWORD_USER, -9945)                                                                  \
	X(RAW_PERMISSION_DENIED, -9944)                                                             \
	X(RAW_USER_EMPTY, -9943)                                                                    \
	X(RAW_USER_NOT_FOUND, -9942)                                                                \
	X(RAW_INVALID_AUTH_TOKEN, -9941)                                                            \
	X(CTX_DEADLINE, -9940)                                                                      \
	X(JWT_VERIFY_ONLY, -9939)

/* The store's own sources define the same enum in store/core/errors.h (a
 * source including both includes that one first). */
#ifndef BOLLARD_CORE_ERRORS_H
enum bollard_err {
	BOLLARD_OK = 0,
#define BOLLARD_ERR_PUBLIC_(name, value) BOLLARD_E##name = (value),
	BOLLARD_ERROR_CODES(BOLLARD_ERR_PUBLIC_)
#undef BOLLARD_ERR_PUBLIC_
};
#endif

/* etcd's message for a BOLLARD_E* code, strerror()'s text for -errno,
 * "success" for 0. Never NULL; static storage. */
BOLLARD_API const char *bollard_strerror(int err);

/* ---- clients ---- */

struct bollard_client; /* opaque */

struct bollard_remote_options {
	/* Time to wait for a connection to some endpoint before a request
	 * fails with -ENOTCONN. 0: 5000 ms. */
	unsigned dial_timeout_ms;
	/* Deadline of each request (all its retries included). 0: 10000 ms. */
	unsigned request_timeout_ms;
	/* TLS (PEM files, read by bollard_connect). Any of them set, or an
	 * "https://" endpoint, makes every endpoint TLS (etcdctl's --cacert,
	 * --cert, --key). tls_ca_file verifies the servers (NULL: the system's
	 * roots); tls_cert_file + tls_key_file (both or neither) are the
	 * client certificate for servers with --client-cert-auth. */
	const char *tls_ca_file;
	const char *tls_cert_file;
	const char *tls_key_file;
};

/* Connect to a store given as endpoints "host:port" (an etcd-style
 * "http://host:port" or "https://host:port" is accepted too; mixing http://
 * and https:// is -EINVAL). Does not wait for a connection: the first
 * request does (a TLS handshake that fails, e.g. an untrusted server
 * certificate, looks like an unreachable endpoint: -ENOTCONN). loop may be
 * NULL (then only blocking calls can be made). endpoints and opts are
 * copied, the TLS files read; opts may be NULL for defaults. Errors: -EINVAL
 * (bad arguments, a certificate without its key, a file that is not PEM),
 * -errno of a TLS file that cannot be read (-ENOENT, -EACCES). On success
 * *out is a client to release with bollard_close(). */
BOLLARD_API int bollard_connect(struct bollard_client **out, uv_loop_t *loop,
                                const char *const *endpoints, size_t n_endpoints,
                                const struct bollard_remote_options *opts);

struct bollard_embedded_options {
	const char *data_dir; /* required; created if missing */
	/* Everything below is optional (NULL/0: bollard-store's default) and
	 * means what the bollard-store flag of the same name means. */
	const char *name; /* --name, "default" */
	/* A single member (the default) listens for raft peers on an ephemeral
	 * loopback port. A member of a cluster gives initial_cluster,
	 * listen_peer_urls and initial_advertise_peer_urls as the binary does,
	 * and listen_client_urls (required then: members forward requests to
	 * the leader over the client port). */
	const char *initial_cluster;
	const char *initial_cluster_state; /* "new" */
	const char *initial_cluster_token; /* "etcd-cluster" */
	const char *listen_peer_urls;
	const char *initial_advertise_peer_urls;
	/* Also serve etcd's gRPC API on these URLs (remote clients, etcdctl,
	 * other members); NULL: serve nobody but this process. */
	const char *listen_client_urls;
	const char *advertise_client_urls; /* listen_client_urls */
	/* TLS of https:// listen_client_urls (--cert-file, --key-file,
	 * --trusted-ca-file, --client-cert-auth): PEM files, read and checked
	 * when the store opens (a bad file fails the open). */
	const char *tls_cert_file;
	const char *tls_key_file;
	const char *tls_trusted_ca_file; /* verifies client certificates */
	bool tls_client_cert_auth;       /* require a client certificate */
	int64_t max_request_bytes;       /* 1.5 MiB */
	int64_t max_txn_ops;             /* 128 */
	/* Deadline of each request, as bollard_remote_options'
	 * request_timeout_ms: -ETIMEDOUT when the member has not answered by
	 * then (no leader, a stalled disk; for a write the outcome is
	 * unknown). 0: 10000 ms. */
	unsigned request_timeout_ms;
	unsigned heartbeat_ms;             /* 100 */
	unsigned election_ms;              /* 1000 */
	int64_t snapshot_count;            /* 100000 */
	int64_t quota_backend_bytes;       /* 2 GiB */
	const char *auto_compaction_mode;  /* "periodic" */
	const char *auto_compaction_retention; /* "0": off */
	/* The store logs etcd-like lines on stderr. "debug", "info", "warn",
	 * "error": sets the process-wide log threshold (the one piece of
	 * process state the library touches); NULL leaves it as it is
	 * ("info" until someone sets it). */
	const char *log_level;
	/* What serves listen_client_urls (--experimental-client-transport):
	 * "h2" (our own HTTP/2, the default) or "grpc-core" (the gRPC C
	 * core); anything else fails the open with -EINVAL. */
	const char *client_transport;
};

/* Open a store in this process: a member over data_dir (created or
 * recovered), running on a private thread with its own libuv loop, which
 * owns raft and LMDB. Requests cross to it through a lock-free hand-off and
 * results come back to the caller's loop (an uv_async_t on it), so
 * callbacks still run on the caller's loop thread and the rules above hold
 * unchanged; a blocking call waits on a condition variable. loop may be
 * NULL (blocking calls only). Returns once the member has started (an
 * error, -EINVAL for bad options, or e.g. -EIO / -EBUSY when the data dir
 * cannot be opened); requests made before it has a leader wait for one.
 * The data dir must not be open in another process at the same time.
 * bollard_close() stops the member and waits for LMDB to be closed. */
BOLLARD_API int bollard_open_embedded(struct bollard_client **out, uv_loop_t *loop,
                                      const struct bollard_embedded_options *opts);

typedef void (*bollard_close_cb)(struct bollard_client *c, void *data);

/* Close the client. Outstanding requests, watches and keep-alives get their
 * final callback with -ECANCELED; then close_cb (may be NULL) runs and the
 * client is freed. With a loop: call on the loop thread; callbacks run from
 * uv_run() and close_cb runs last. Without a loop: everything is released
 * before this returns (close_cb, if any, runs from inside). No blocking call
 * may be in progress on another thread. */
BOLLARD_API void bollard_close(struct bollard_client *c, bollard_close_cb close_cb, void *data);

/* ---- data ---- */

struct bollard_header {
	uint64_t cluster_id;
	uint64_t member_id;
	int64_t revision; /* the store's revision when the request was served */
	uint64_t raft_term;
};

struct bollard_kv {
	const char *key; /* NUL-terminated copy; key_len excludes the NUL */
	size_t key_len;
	const char *value; /* NUL-terminated copy; empty with keys_only */
	size_t value_len;
	int64_t create_revision;
	int64_t mod_revision;
	int64_t version;
	int64_t lease; /* 0: none */
};

enum bollard_op_type {
	BOLLARD_OP_RANGE = 0,
	BOLLARD_OP_PUT = 1,
	BOLLARD_OP_DELETE = 2,
};

/* The outcome of a request. Fields not listed for a call are zero. */
struct bollard_result {
	struct bollard_header header;
	enum bollard_op_type type; /* range, put, delete; txn sub-results too */
	/* range: the keys (at most limit); put: the previous kv (n_kvs 0 or 1,
	 * with prev_kv); delete: the deleted kvs (with prev_kv) */
	struct bollard_kv *kvs;
	size_t n_kvs;
	int64_t count; /* range: keys in the range; delete: keys deleted */
	bool more;     /* range: more keys than limit */
	/* txn: whether the compares held, and one result per executed op */
	bool succeeded;
	struct bollard_result *responses;
	size_t n_responses;
	/* lease grant: the id and granted TTL (s) */
	int64_t lease_id;
	int64_t lease_ttl;
	/* status */
	const char *version;
	int64_t db_size;
	uint64_t leader;
	uint64_t raft_index;
	void *internal_; /* owned memory; do not touch */
};

/* Release what a result owns and zero it. Safe on a zeroed result and
 * twice in a row. Txn sub-results are released with their parent. */
BOLLARD_API void bollard_result_free(struct bollard_result *r);

struct bollard_range_options {
	/* The range [key, range_end); range_end "\0" (length 1) means every
	 * key >= key; NULL/0 means the single key. */
	const void *range_end;
	size_t range_end_len;
	bool prefix;          /* every key starting with key (overrides range_end) */
	int64_t limit;        /* 0: no limit */
	int64_t revision;     /* 0: the newest */
	bool serializable;    /* served by the member alone (may be stale) */
	bool keys_only;
	bool count_only;
};

struct bollard_put_options {
	bool prev_kv;      /* return the previous kv */
	int64_t lease;     /* attach to this lease; 0: none */
	bool ignore_value; /* keep the current value (value must be empty) */
	bool ignore_lease; /* keep the current lease (lease must be 0) */
};

struct bollard_delete_options {
	const void *range_end; /* as in bollard_range_options */
	size_t range_end_len;
	bool prefix;
	bool prev_kv; /* return the deleted kvs */
};

enum bollard_compare_target {
	BOLLARD_CMP_VERSION = 0,
	BOLLARD_CMP_CREATE = 1, /* create_revision */
	BOLLARD_CMP_MOD = 2,    /* mod_revision */
	BOLLARD_CMP_VALUE = 3,
	BOLLARD_CMP_LEASE = 4,
};

enum bollard_compare_op {
	BOLLARD_CMP_EQUAL = 0,
	BOLLARD_CMP_GREATER = 1,
	BOLLARD_CMP_LESS = 2,
	BOLLARD_CMP_NOT_EQUAL = 3,
};

/* "target(key) op operand". A missing key has version, create and mod
 * revision 0 (so CREATE == 0 means "does not exist"). */
struct bollard_compare {
	const void *key;
	size_t key_len;
	const void *range_end; /* optional: compare every key in the range */
	size_t range_end_len;
	enum bollard_compare_target target;
	enum bollard_compare_op op;
	int64_t number;    /* VERSION, CREATE, MOD, LEASE */
	const void *value; /* VALUE */
	size_t value_len;
};

struct bollard_op {
	enum bollard_op_type type;
	const void *key;
	size_t key_len;
	const void *value; /* put */
	size_t value_len;
	struct bollard_range_options range; /* range */
	struct bollard_put_options put;     /* put */
	struct bollard_delete_options del;  /* delete */
};

/* If every compare holds, the success ops run, else the failure ops; all in
 * one revision, atomically. */
struct bollard_txn {
	const struct bollard_compare *compares;
	size_t n_compares;
	const struct bollard_op *success;
	size_t n_success;
	const struct bollard_op *failure;
	size_t n_failure;
};

/* ---- asynchronous requests ---- */

struct bollard_req;
/* status: 0 or an error; on 0, req->result holds the outcome (the caller
 * owns it from now on: bollard_result_free). The callback may free req. */
typedef void (*bollard_req_cb)(struct bollard_req *req, int status);

struct bollard_req {
	void *data; /* the caller's */
	struct bollard_result result;
	void *internal_; /* do not touch */
};

/* Each returns 0 when the request was started (cb will run exactly once),
 * or an error (cb will not run). opts may be NULL for defaults. */
BOLLARD_API int bollard_range(struct bollard_client *c, struct bollard_req *req, const void *key,
                              size_t key_len, const struct bollard_range_options *opts,
                              bollard_req_cb cb);
BOLLARD_API int bollard_put(struct bollard_client *c, struct bollard_req *req, const void *key,
                            size_t key_len, const void *value, size_t value_len,
                            const struct bollard_put_options *opts, bollard_req_cb cb);
BOLLARD_API int bollard_delete(struct bollard_client *c, struct bollard_req *req, const void *key,
                               size_t key_len, const struct bollard_delete_options *opts,
                               bollard_req_cb cb);
BOLLARD_API int bollard_txn(struct bollard_client *c, struct bollard_req *req,
                            const struct bollard_txn *txn, bollard_req_cb cb);
/* ttl in seconds; id 0: the store picks one. result.lease_id/lease_ttl. */
BOLLARD_API int bollard_lease_grant(struct bollard_client *c, struct bollard_req *req, int64_t ttl,
                                    int64_t id, bollard_req_cb cb);
/* Revoke: the lease's keys are deleted. */
BOLLARD_API int bollard_lease_revoke(struct bollard_client *c, struct bollard_req *req, int64_t id,
                                     bollard_req_cb cb);
/* The connected member's status: result.version, db_size, leader,
 * raft_index, header.member_id, header.raft_term. */
BOLLARD_API int bollard_status(struct bollard_client *c, struct bollard_req *req, bollard_req_cb cb);

/* ---- blocking requests ---- */

/* The same calls, blocking. out may be NULL; when given it is filled on
 * success (free with bollard_result_free) and zeroed on error. */
BOLLARD_API int bollard_range_sync(struct bollard_client *c, const void *key, size_t key_len,
                                   const struct bollard_range_options *opts,
                                   struct bollard_result *out);
BOLLARD_API int bollard_put_sync(struct bollard_client *c, const void *key, size_t key_len,
                                 const void *value, size_t value_len,
                                 const struct bollard_put_options *opts, struct bollard_result *out);
BOLLARD_API int bollard_delete_sync(struct bollard_client *c, const void *key, size_t key_len,
                                    const struct bollard_delete_options *opts,
                                    struct bollard_result *out);
BOLLARD_API int bollard_txn_sync(struct bollard_client *c, const struct bollard_txn *txn,
                                 struct bollard_result *out);
BOLLARD_API int bollard_lease_grant_sync(struct bollard_client *c, int64_t ttl, int64_t id,
                                         struct bollard_result *out);
BOLLARD_API int bollard_lease_revoke_sync(struct bollard_client *c, int64_t id,
                                          struct bollard_result *out);
BOLLARD_API int bollard_status_sync(struct bollard_client *c, struct bollard_result *out);

/* ---- watches (loop only) ---- */

enum bollard_event_type {
	BOLLARD_EVENT_PUT = 0,
	BOLLARD_EVENT_DELETE = 1,
};

struct bollard_event {
	enum bollard_event_type type;
	struct bollard_kv kv;            /* for a delete: key and mod_revision */
	const struct bollard_kv *prev_kv; /* with prev_kv, when there was one */
};

struct bollard_watch_batch {
	struct bollard_header header;
	const struct bollard_event *events; /* in revision order */
	size_t n_events;
	/* A progress notification (no events): every change up to
	 * header.revision has been delivered. */
	bool progress;
};

struct bollard_watch_options {
	const void *range_end; /* as in bollard_range_options */
	size_t range_end_len;
	bool prefix;
	int64_t start_revision; /* 0: changes after now */
	bool prev_kv;
	bool progress_notify; /* ask for periodic progress notifications */
	bool no_put;          /* filter out puts */
	bool no_delete;       /* filter out deletes */
};

struct bollard_watch;
/* status 0: batch holds events or a progress notification (borrowed: valid
 * during the call). status != 0: the watch is over and this is its last
 * callback (batch NULL): -ECANCELED after bollard_watch_cancel() or
 * bollard_close(), BOLLARD_ECOMPACTED when start_revision (or the resume
 * point after a reconnect) was compacted, or a server error. The watch struct
 * may be freed from its last callback. */
typedef void (*bollard_watch_cb)(struct bollard_watch *w, int status,
                                 const struct bollard_watch_batch *batch);

struct bollard_watch {
	void *data; /* the caller's */
	void *internal_; /* do not touch */
};

/* Start watching [key, range_end). Events arrive in batches, in revision
 * order, exactly once, across reconnects. Returns 0 (cb runs until the last
 * call with status != 0) or an error (cb never runs). */
BOLLARD_API int bollard_watch_start(struct bollard_client *c, struct bollard_watch *w,
                                    const void *key, size_t key_len,
                                    const struct bollard_watch_options *opts, bollard_watch_cb cb);
/* Stop: the last callback (-ECANCELED) follows from the loop. No event
 * callbacks run after this returns. Returns -EINVAL if already stopping. */
BOLLARD_API int bollard_watch_cancel(struct bollard_watch *w);

/* ---- lease keep-alive (loop only) ---- */

struct bollard_keepalive;
/* Runs once, when the keep-alive ends: -ECANCELED after
 * bollard_keepalive_stop() or bollard_close(); BOLLARD_ELEASE_NOT_FOUND when
 * the lease expired or was revoked; -ETIMEDOUT when no refresh succeeded
 * within the lease's TTL (the lease must be presumed lost). The struct may be
 * freed from the callback. */
typedef void (*bollard_keepalive_cb)(struct bollard_keepalive *ka, int status);

struct bollard_keepalive {
	void *data;           /* the caller's */
	int64_t ttl;          /* the TTL the store reported with the last refresh */
	uint64_t n_refreshed; /* successful refreshes so far */
	void *internal_;      /* do not touch */
};

/* Refresh lease id every ttl/3 s, over reconnects and failover, until
 * stopped or lost. */
BOLLARD_API int bollard_keepalive_start(struct bollard_client *c, struct bollard_keepalive *ka,
                                        int64_t id, bollard_keepalive_cb cb);
BOLLARD_API int bollard_keepalive_stop(struct bollard_keepalive *ka);

#ifdef __cplusplus
}
#endif
#endif
