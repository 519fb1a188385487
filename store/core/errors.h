/* errors.h - Bollard's error codes and the etcd error each one stands for.
 *
 * Every fallible function returns 0, a negative errno, or one of the
 * negative BOLLARD_E* codes below. The server maps a code to etcd's gRPC
 * status code and message text (byte for byte what etcd 3.4 sends, because
 * clientv3 matches errors by their text) with bollard_err_grpc_code() and
 * bollard_strerror(). */
#ifndef BOLLARD_CORE_ERRORS_H
#define BOLLARD_CORE_ERRORS_H

/* X(name, grpc status code, message) */
#define BOLLARD_ERRORS(X)                                                                       \
	X(EMPTY_KEY, 3, "etcdserver: key is not provided")                                         \
	X(KEY_NOT_FOUND, 3, "etcdserver: key not found")                                           \
	X(VALUE_PROVIDED, 3, "etcdserver: value is provided")                                      \
	X(LEASE_PROVIDED, 3, "etcdserver: lease is provided")                                      \
	X(TOO_MANY_OPS, 3, "etcdserver: too many operations in txn request")                       \
	X(DUPLICATE_KEY, 3, "etcdserver: duplicate key given in txn request")                      \
	X(COMPACTED, 11, "etcdserver: mvcc: required revision has been compacted")                 \
	X(FUTURE_REV, 11, "etcdserver: mvcc: required revision is a future revision")              \
	X(NO_SPACE, 8, "etcdserver: mvcc: database space exceeded")                                \
	X(LEASE_NOT_FOUND, 5, "etcdserver: requested lease not found")                             \
	X(LEASE_EXIST, 9, "etcdserver: lease already exists")                                      \
	X(LEASE_TTL_TOO_LARGE, 11, "etcdserver: too large lease TTL")                              \
	X(WATCH_CANCELED, 1, "etcdserver: watch canceled")                                         \
	X(MEMBER_EXIST, 9, "etcdserver: member ID already exist")                                  \
	X(PEER_URL_EXIST, 9, "etcdserver: Peer URLs already exists")                               \
	/* Unknown: etcd 3.4's v3rpc maps it to rpctypes' client-side error, not a gRPC status */ \
	X(MEMBER_NOT_ENOUGH_STARTED, 2,                                                            \
	  "etcdserver: re-configuration failed due to not enough started members")                 \
	X(MEMBER_BAD_URLS, 3, "etcdserver: given member URLs are invalid")                         \
	X(MEMBER_NOT_FOUND, 5, "etcdserver: member not found")                                     \
	X(MEMBER_NOT_LEARNER, 9, "etcdserver: can only promote a learner member")                  \
	X(LEARNER_NOT_READY, 9,                                                                    \
	  "etcdserver: can only promote a learner member which is in sync with leader")            \
	X(TOO_MANY_LEARNERS, 9, "etcdserver: too many learner members in cluster")                 \
	X(REQUEST_TOO_LARGE, 3, "etcdserver: request is too large")                                \
	X(TOO_MANY_REQUESTS, 8, "etcdserver: too many requests")                                   \
	X(ROOT_USER_NOT_EXIST, 9, "etcdserver: root user does not exist")                          \
	X(ROOT_ROLE_NOT_EXIST, 9, "etcdserver: root user does not have root role")                 \
	X(USER_ALREADY_EXIST, 9, "etcdserver: user name already exists")                           \
	X(USER_EMPTY, 3, "etcdserver: user name is empty")                                         \
	X(USER_NOT_FOUND, 9, "etcdserver: user name not found")                                    \
	X(ROLE_ALREADY_EXIST, 9, "etcdserver: role name already exists")                           \
	X(ROLE_NOT_FOUND, 9, "etcdserver: role name not found")                                    \
	X(ROLE_EMPTY, 3, "etcdserver: role name is empty")                                         \
	X(AUTH_FAILED, 3, "etcdserver: authentication failed, invalid user ID or password")        \
	X(PERMISSION_DENIED, 7, "etcdserver: permission denied")                                   \
	X(ROLE_NOT_GRANTED, 9, "etcdserver: role is not granted to the user")                      \
	X(PERMISSION_NOT_GRANTED, 9, "etcdserver: permission is not granted to the role")          \
	X(AUTH_NOT_ENABLED, 9, "etcdserver: authentication is not enabled")                        \
	X(INVALID_AUTH_TOKEN, 16, "etcdserver: invalid auth token")                                \
	X(INVALID_AUTH_MGMT, 3, "etcdserver: invalid auth management")                             \
	X(AUTH_OLD_REVISION, 3, "etcdserver: revision of auth store is old")                       \
	X(NO_LEADER, 14, "etcdserver: no leader")                                                  \
	X(NOT_LEADER, 9, "etcdserver: not leader")                                                 \
	X(LEADER_CHANGED, 14, "etcdserver: leader changed")                                        \
	X(NOT_CAPABLE, 14, "etcdserver: not capable")                                              \
	X(STOPPED, 14, "etcdserver: server stopped")                                               \
	X(TIMEOUT, 14, "etcdserver: request timed out")                                            \
	X(TIMEOUT_LEADER_FAIL, 14,                                                                 \
	  "etcdserver: request timed out, possibly due to previous leader failure")                \
	X(TIMEOUT_CONNECTION_LOST, 14,                                                             \
	  "etcdserver: request timed out, possibly due to connection lost")                        \
	X(UNHEALTHY, 14, "etcdserver: unhealthy cluster")                                          \
	X(CORRUPT, 15, "etcdserver: corrupt cluster")                                              \
	X(NOT_SUPPORTED_FOR_LEARNER, 14, "etcdserver: rpc not supported for learner")              \
	X(BAD_LEADER_TRANSFEREE, 9, "etcdserver: bad leader transferee")                           \
	X(KEY_TOO_LONG, 3, "bollard: key is longer than the store's limit")                        \
	X(BAD_REQUEST, 3, "bollard: malformed request")                                            \
	X(INTERNAL, 13, "bollard: internal error")                                               \
	X(NO_PASSWORD_USER, 2,                                                                     \
	  "auth: authentication failed, password was given for no password user")                  \
	/* etcd's Maintenance admin check passes auth's errors on unconverted */                  \
	X(RAW_PERMISSION_DENIED, 2, "auth: permission denied")                                     \
	X(RAW_USER_EMPTY, 2, "auth: user name is empty")                                           \
	X(RAW_USER_NOT_FOUND, 2, "auth: user not found")                                           \
	X(RAW_INVALID_AUTH_TOKEN, 2, "auth: invalid auth token")                                   \
	/* a write on a member that knew no leader for etcd's whole request timeout: etcd's raft \
	 * takes no proposal then, and the server passes the context's error on unconverted */  \
	X(CTX_DEADLINE, 2, "context deadline exceeded")                                         \
	/* Authenticate on a member whose JWT key is public only (etcd: Unknown) */               \
	X(JWT_VERIFY_ONLY, 2, "auth: token signing attempted with verify-only key")

enum bollard_err {
	BOLLARD_OK = 0,
	BOLLARD_ERR_BASE_ = -10000, /* below every errno */
#define BOLLARD_ERR_ENUM_(name, code, msg) BOLLARD_E##name,
	BOLLARD_ERRORS(BOLLARD_ERR_ENUM_)
#undef BOLLARD_ERR_ENUM_
	BOLLARD_ERR_END_
};

/* LMDB reports its own errors as negative codes and errno values as
 * positive ones: make both fit "0 or negative". */
static inline int bollard_err_from_lmdb(int rc)
{
	return rc > 0 ? -rc : rc;
}

/* An error that refuses one request, the same way on every member (an etcd
 * error), as opposed to a failure of the store itself (LMDB, memory,
 * BOLLARD_EINTERNAL), which stops the apply loop. */
static inline int bollard_err_is_request(int rc)
{
	return rc > BOLLARD_ERR_BASE_ && rc < BOLLARD_ERR_END_ && rc != BOLLARD_EINTERNAL;
}

/* etcd's message for a BOLLARD_E* code; strerror()'s text for -errno;
 * LMDB's text for an LMDB code. Never NULL. */
const char *bollard_strerror(int err);

/* The gRPC status code (grpc_status_code's numeric value) clients expect for
 * err: etcd's for BOLLARD_E* codes, UNKNOWN (2) for anything else, 0 for 0. */
int bollard_err_grpc_code(int err);

#endif
