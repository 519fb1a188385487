/* auth.h - etcd's auth store on LMDB: users, roles with key-range
 * permissions, the enabled flag and the auth revision; the apply of every
 * Auth request (bollard.AuthRequest) and the permission checks of etcd 3.4
 * (isOpPermitted, IsAdminPermitted, authApplierV3's per-request rules).
 *
 * Pure: every call runs in the caller's LMDB transaction, so auth changes
 * commit atomically with the raft entry that made them and the same log
 * gives the same auth store on every member. No clocks, no sockets.
 *
 * Layout (meta_db, next to mvcc.c's keys):
 *   "auth/enabled"      1 byte, 1 = enabled (absent: disabled)
 *   "auth/revision"     BE64 (absent: 1, a fresh etcd store's revision)
 *   "auth/user/<name>"  packed authpb.User, exactly etcd's authUsers value
 *                       (password: a bcrypt hash, "$2a$"/"$2b$", cost 10)
 *   "auth/role/<name>"  packed authpb.Role, exactly etcd's authRoles value
 * The auth revision grows with every change of users or roles and with
 * AuthDisable (not AuthEnable), as etcd's commitRevision. */
#ifndef BOLLARD_CORE_AUTH_H
#define BOLLARD_CORE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "auth.pb-c.h"
#include "core/arena.h"
#include "core/mvcc.h"
#include "raftcmd.pb-c.h"

/* auth_revision of the member's own requests (lease expiry): allowed
 * everything, as etcd runs them with a root token. */
#define AUTH_REV_SYSTEM UINT64_MAX

/* Who sends a request: etcd's AuthInfo. user NULL or "" with rev 0 = no
 * credentials. */
struct auth_info {
	const char *user;
	uint64_t rev; /* the auth revision the token was resolved at */
};

bool auth_enabled(const struct mvcc *m, MDB_txn *txn);
uint64_t auth_revision(const struct mvcc *m, MDB_txn *txn);

/* A user's record, unpacked with alloc (NULL: malloc; free it with
 * authpb__user__free_unpacked then). 0, BOLLARD_EUSER_NOT_FOUND, or an
 * error. */
int auth_user_load(const struct mvcc *m, MDB_txn *txn, const char *name,
                   ProtobufCAllocator *alloc, Authpb__User **out);

/* etcd's IsAdminPermitted: 0 when auth is off or the user has the root
 * role; BOLLARD_EUSER_EMPTY, BOLLARD_EUSER_NOT_FOUND, BOLLARD_EPERMISSION_DENIED. */
int auth_check_admin(const struct mvcc *m, MDB_txn *txn, const struct auth_info *ai);

/* etcd's IsRangePermitted (end: range_end as in a RangeRequest; empty = the
 * one key): 0, BOLLARD_EUSER_EMPTY, BOLLARD_EAUTH_OLD_REVISION,
 * BOLLARD_EPERMISSION_DENIED. */
int auth_check_range(const struct mvcc *m, MDB_txn *txn, const struct auth_info *ai,
                     ProtobufCBinaryData key, ProtobufCBinaryData end);

/* The apply-time checks of one raft request, as etcd's authApplierV3:
 * Put (write on the key, write on every key of its lease, read for
 * prev_kv), DeleteRange (write, read for prev_kv), Txn (read for each
 * compare and range, write for each put and delete, nested txns too: the
 * whole txn is refused), LeaseRevoke (write on every key of the lease) and
 * the admin rule of Auth requests. 0 or the error the request fails with. */
int auth_check_request(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                       const struct auth_info *ai, const Bollard__Request *req);

/* What an applied Auth request means for the members' in-memory token
 * tables, reported after it applied. */
struct auth_event {
	bool changed;         /* the revision or the enabled flag moved */
	bool enabled;         /* after the request */
	uint64_t revision;    /* after the request */
	bool disabled;        /* AuthDisable turned auth off: drop every token */
	const char *drop_user; /* tokens of this user are invalid (deleted, new
	                          password); points into the request */
	const char *token_user; /* Authenticate: token is this user's */
	char token[64];        /* "<prefix>.<raft index>" */
};

/* Apply one Auth request at raft index `index`; *msg and *hdr get its response
 * (memory from a) and *ev what changed. 0 or an etcd error for the request. */
int auth_apply(const struct mvcc *m, MDB_txn *txn, struct arena *a, const struct auth_info *ai,
               const Bollard__AuthRequest *r, uint64_t index, ProtobufCMessage **msg,
               Etcdserverpb__ResponseHeader **hdr, struct auth_event *ev);

/* The response message type of an Auth request (NULL for none). */
const ProtobufCMessageDescriptor *auth_response_descriptor(const Bollard__AuthRequest *r);

/* ---- passwords (bcrypt through libcrypt; CPU-heavy: not on a loop) ---- */

#define AUTH_HASH_MAX 128

/* Hash pw with a fresh salt: "$2b$10$...", NUL-terminated. 0 or -errno. */
int auth_hash_password(const char *pw, size_t len, char out[AUTH_HASH_MAX]);
/* 0 if pw matches hash (any bcrypt variant: etcd's "$2a$" too), else
 * BOLLARD_EAUTH_FAILED. */
int auth_verify_password(const uint8_t *hash, size_t hlen, const char *pw, size_t len);
/* etcd's simple-token prefix: 16 random letters, NUL-terminated. */
int auth_token_prefix(char out[17]);

/* ---- etcd snapshots (etcdsnap.c, etcdimport.c) ---- */

enum auth_kind { AUTH_USERS, AUTH_ROLES };

/* Visit every user or role in name order with its packed record. */
int auth_foreach(const struct mvcc *m, MDB_txn *txn, enum auth_kind kind,
                 int (*fn)(void *ud, const uint8_t *name, size_t nlen, const uint8_t *rec,
                           size_t rlen),
                 void *ud);
/* Store a packed record as it is (must unpack as its kind). */
int auth_import_record(const struct mvcc *m, MDB_txn *txn, enum auth_kind kind,
                       const uint8_t *name, size_t nlen, const uint8_t *rec, size_t rlen);
/* The enabled flag (-1: leave it unset, as etcd before any AuthEnable) and
 * the revision (not stored when it is the default). */
int auth_import_state(const struct mvcc *m, MDB_txn *txn, int enabled, uint64_t revision);
/* Whether the enabled flag was ever written (etcd writes authEnabled at the
 * first AuthEnable, and keeps it, 0, after AuthDisable). */
bool auth_flag_stored(const struct mvcc *m, MDB_txn *txn);

#endif
