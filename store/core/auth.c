/* auth.c - etcd's auth store on LMDB and its permission checks (see
 * auth.h). Permission ranges follow etcd 3.4's interval semantics exactly
 * (pkg/adt's BytesAffineComparable, where an empty key is above every
 * other, and its Intersects/Contains rules), quirks included, so the same
 * request is allowed or refused as by etcd. Every Auth request reads and
 * checks all it needs before its first write (apply.c relies on it: there
 * is no transaction to roll a refusal back). */
#include "core/auth.h"

#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/be64.h"
#include "core/errors.h"
#include "core/leasedb.h"

static const char K_ENABLED[] = "auth/enabled";
static const char K_REVISION[] = "auth/revision";
static const char P_USER[] = "auth/user/";
static const char P_ROLE[] = "auth/role/";
#define P_LEN 10 /* both prefixes */
#define ROOT "root"

/* ---- storage ------------------------------------------------------------- */

static int rec_key(uint8_t buf[MVCC_MAX_KEY_LEN], enum auth_kind kind, const void *name,
                   size_t nlen, MDB_val *k)
{
	if (P_LEN + nlen > MVCC_MAX_KEY_LEN)
		return BOLLARD_EKEY_TOO_LONG;
	memcpy(buf, kind == AUTH_USERS ? P_USER : P_ROLE, P_LEN);
	if (nlen)
		memcpy(buf + P_LEN, name, nlen);
	*k = (MDB_val){P_LEN + nlen, buf};
	return 0;
}

static int meta_get(const struct mvcc *m, MDB_txn *txn, const char *key, MDB_val *d)
{
	MDB_val k = {strlen(key), (void *)key};
	return mdb_get(txn, m->meta_db, &k, d);
}

static int meta_put(const struct mvcc *m, MDB_txn *txn, const char *key, const void *v,
                    size_t len)
{
	MDB_val k = {strlen(key), (void *)key}, d = {len, (void *)v};
	return bollard_err_from_lmdb(mdb_put(txn, m->meta_db, &k, &d, 0));
}

bool auth_enabled(const struct mvcc *m, MDB_txn *txn)
{
	MDB_val d;
	return meta_get(m, txn, K_ENABLED, &d) == 0 && d.mv_size == 1 &&
	       ((const uint8_t *)d.mv_data)[0] == 1;
}

bool auth_flag_stored(const struct mvcc *m, MDB_txn *txn)
{
	MDB_val d;
	return meta_get(m, txn, K_ENABLED, &d) == 0;
}

uint64_t auth_revision(const struct mvcc *m, MDB_txn *txn)
{
	MDB_val d;
	if (meta_get(m, txn, K_REVISION, &d) != 0 || d.mv_size != 8)
		return 1;
	return be64_get(d.mv_data);
}

static int commit_revision(const struct mvcc *m, MDB_txn *txn, struct auth_event *ev)
{
	uint8_t buf[8];
	uint64_t rev = auth_revision(m, txn) + 1;
	be64_put(buf, rev);
	ev->changed = true;
	ev->revision = rev;
	return meta_put(m, txn, K_REVISION, buf, 8);
}

/* Load a record by name; *out unpacked with alloc. */
static int rec_load(const struct mvcc *m, MDB_txn *txn, enum auth_kind kind, const char *name,
                    ProtobufCAllocator *alloc, ProtobufCMessage **out)
{
	uint8_t buf[MVCC_MAX_KEY_LEN];
	MDB_val k, d;
	int nf = kind == AUTH_USERS ? BOLLARD_EUSER_NOT_FOUND : BOLLARD_EROLE_NOT_FOUND;
	size_t nlen = name ? strlen(name) : 0;
	int rc = rec_key(buf, kind, name, nlen, &k);
	if (rc != 0)
		return nf; /* could never have been stored */
	rc = mdb_get(txn, m->meta_db, &k, &d);
	if (rc == MDB_NOTFOUND)
		return nf;
	if (rc != 0)
		return bollard_err_from_lmdb(rc);
	*out = protobuf_c_message_unpack(kind == AUTH_USERS ? &authpb__user__descriptor
	                                                    : &authpb__role__descriptor,
	                                 alloc, d.mv_size, d.mv_data);
	return *out ? 0 : BOLLARD_EINTERNAL;
}

int auth_user_load(const struct mvcc *m, MDB_txn *txn, const char *name,
                   ProtobufCAllocator *alloc, Authpb__User **out)
{
	return rec_load(m, txn, AUTH_USERS, name, alloc, (ProtobufCMessage **)out);
}

static int role_load(const struct mvcc *m, MDB_txn *txn, const char *name, struct arena *a,
                     Authpb__Role **out)
{
	ProtobufCAllocator al = arena_protobuf_allocator(a);
	return rec_load(m, txn, AUTH_ROLES, name, &al, (ProtobufCMessage **)out);
}

static int user_load_a(const struct mvcc *m, MDB_txn *txn, const char *name, struct arena *a,
                       Authpb__User **out)
{
	ProtobufCAllocator al = arena_protobuf_allocator(a);
	return auth_user_load(m, txn, name, &al, out);
}

static int rec_put(const struct mvcc *m, MDB_txn *txn, enum auth_kind kind,
                   const ProtobufCBinaryData *name, const ProtobufCMessage *msg)
{
	uint8_t buf[MVCC_MAX_KEY_LEN];
	MDB_val k, d;
	int rc = rec_key(buf, kind, name->data, name->len, &k);
	if (rc != 0)
		return rc;
	d.mv_size = protobuf_c_message_get_packed_size(msg);
	if ((rc = mdb_put(txn, m->meta_db, &k, &d, MDB_RESERVE)) != 0)
		return bollard_err_from_lmdb(rc);
	protobuf_c_message_pack(msg, d.mv_data);
	return 0;
}

static int rec_del(const struct mvcc *m, MDB_txn *txn, enum auth_kind kind, const char *name)
{
	uint8_t buf[MVCC_MAX_KEY_LEN];
	MDB_val k;
	int rc = rec_key(buf, kind, name, strlen(name), &k);
	if (rc == 0)
		rc = bollard_err_from_lmdb(mdb_del(txn, m->meta_db, &k, NULL));
	return rc;
}

int auth_foreach(const struct mvcc *m, MDB_txn *txn, enum auth_kind kind,
                 int (*fn)(void *ud, const uint8_t *name, size_t nlen, const uint8_t *rec,
                           size_t rlen),
                 void *ud)
{
	const char *prefix = kind == AUTH_USERS ? P_USER : P_ROLE;
	MDB_val k = {P_LEN, (void *)prefix}, d;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, m->meta_db, &c);
	if (rc != 0)
		return bollard_err_from_lmdb(rc);
	for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size < P_LEN || memcmp(k.mv_data, prefix, P_LEN) != 0)
			break;
		if ((rc = fn(ud, (const uint8_t *)k.mv_data + P_LEN, k.mv_size - P_LEN, d.mv_data,
		             d.mv_size)) != 0)
			break;
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : bollard_err_from_lmdb(rc);
}

int auth_import_record(const struct mvcc *m, MDB_txn *txn, enum auth_kind kind,
                       const uint8_t *name, size_t nlen, const uint8_t *rec, size_t rlen)
{
	uint8_t buf[MVCC_MAX_KEY_LEN];
	MDB_val k, d = {rlen, (void *)rec};
	ProtobufCMessage *msg = protobuf_c_message_unpack(
		kind == AUTH_USERS ? &authpb__user__descriptor : &authpb__role__descriptor, NULL, rlen,
		rec);
	int rc;
	if (msg == NULL)
		return BOLLARD_EINTERNAL;
	protobuf_c_message_free_unpacked(msg, NULL);
	if ((rc = rec_key(buf, kind, name, nlen, &k)) != 0)
		return rc;
	return bollard_err_from_lmdb(mdb_put(txn, m->meta_db, &k, &d, 0));
}

int auth_import_state(const struct mvcc *m, MDB_txn *txn, int enabled, uint64_t revision)
{
	uint8_t on = enabled > 0, buf[8];
	int rc = enabled >= 0 ? meta_put(m, txn, K_ENABLED, &on, 1) : 0;
	if (rc != 0 || revision == auth_revision(m, txn))
		return rc;
	be64_put(buf, revision);
	return meta_put(m, txn, K_REVISION, buf, 8);
}

static bool has_role(const Authpb__User *u, const char *role)
{
	for (size_t i = 0; i < u->n_roles; i++)
		if (strcmp(u->roles[i], role) == 0)
			return true;
	return false;
}

/* ---- permission ranges (etcd's pkg/adt semantics) ------------------------ */

/* BytesAffineComparable: an empty byte string is above every other. */
static int aff_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	if (al == 0)
		return bl == 0 ? 0 : 1;
	if (bl == 0)
		return -1;
	size_t n = al < bl ? al : bl;
	int c = memcmp(a, b, n);
	if (c != 0)
		return c;
	return al < bl ? -1 : al > bl;
}

struct ivl {
	const uint8_t *b, *e;
	size_t bl, el;
};

/* adt's Interval.Compare(x) == 0: iv neither left nor right of x. */
static bool ivl_overlaps(const struct ivl *iv, const struct ivl *x)
{
	if (aff_cmp(iv->b, iv->bl, x->b, x->bl) < 0 && aff_cmp(iv->e, iv->el, x->b, x->bl) <= 0)
		return false;
	return aff_cmp(iv->b, iv->bl, x->e, x->el) < 0;
}

static int ivl_begin_cmp(const void *pa, const void *pb)
{
	const struct ivl *a = pa, *b = pb;
	return aff_cmp(a->b, a->bl, b->b, b->bl);
}

/* A user's permissions merged over its roles (etcd's getMergedPerms): the
 * read and write interval sets, each sorted by begin. */
struct perm_set {
	int err;       /* every check fails with this */
	bool all;      /* every check passes (auth off, root, the member) */
	struct ivl *v[2];
	size_t n[2], cap[2];
};
enum { P_READ, P_WRITE };

static int ivl_push(struct arena *a, struct perm_set *ps, int t, struct ivl iv)
{
	if (ps->n[t] == ps->cap[t]) {
		size_t nc = ps->cap[t] ? ps->cap[t] * 2 : 8;
		struct ivl *nv = arena_alloc(a, nc * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		if (ps->n[t])
			memcpy(nv, ps->v[t], ps->n[t] * sizeof(*nv));
		ps->v[t] = nv;
		ps->cap[t] = nc;
	}
	ps->v[t][ps->n[t]++] = iv;
	return 0;
}

/* The point interval [key, key+"\0"). */
static int point_ivl(struct arena *a, ProtobufCBinaryData key, struct ivl *out)
{
	uint8_t *e = arena_alloc(a, key.len + 1);
	if (e == NULL)
		return -ENOMEM;
	if (key.len)
		memcpy(e, key.data, key.len);
	e[key.len] = 0;
	*out = (struct ivl){key.data, e, key.len, key.len + 1};
	return 0;
}

static int perms_add_role(struct arena *a, struct perm_set *ps, const Authpb__Role *role)
{
	for (size_t i = 0; i < role->n_keypermission; i++) {
		const Authpb__Permission *p = role->keypermission[i];
		struct ivl iv;
		int rc;
		if (p->range_end.len != 0) {
			iv = (struct ivl){p->key.data, p->range_end.data, p->key.len, p->range_end.len};
			if (p->range_end.len == 1 && p->range_end.data[0] == 0)
				iv.el = 0; /* from key: open-ended */
		} else if ((rc = point_ivl(a, p->key, &iv)) != 0) {
			return rc;
		}
		rc = 0;
		if (p->permtype == AUTHPB__PERMISSION__TYPE__READ ||
		    p->permtype == AUTHPB__PERMISSION__TYPE__READWRITE)
			rc = ivl_push(a, ps, P_READ, iv);
		if (rc == 0 && (p->permtype == AUTHPB__PERMISSION__TYPE__WRITE ||
		                p->permtype == AUTHPB__PERMISSION__TYPE__READWRITE))
			rc = ivl_push(a, ps, P_WRITE, iv);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* etcd's isOpPermitted up to the range test, once per request. Returns 0
 * (ps says what every check yields) or a fatal error. */
static int perms_load(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                      const struct auth_info *ai, struct perm_set *ps)
{
	Authpb__User *u;
	int rc;
	memset(ps, 0, sizeof(*ps));
	if (!auth_enabled(m, txn) || ai->rev == AUTH_REV_SYSTEM) {
		ps->all = true;
		return 0;
	}
	if (ai->rev == 0) {
		ps->err = BOLLARD_EUSER_EMPTY;
		return 0;
	}
	if (ai->rev < auth_revision(m, txn)) {
		ps->err = BOLLARD_EAUTH_OLD_REVISION;
		return 0;
	}
	rc = user_load_a(m, txn, ai->user ? ai->user : "", a, &u);
	if (rc == BOLLARD_EUSER_NOT_FOUND) {
		ps->err = BOLLARD_EPERMISSION_DENIED;
		return 0;
	}
	if (rc != 0)
		return rc;
	if (has_role(u, ROOT)) {
		ps->all = true;
		return 0;
	}
	for (size_t i = 0; i < u->n_roles; i++) {
		Authpb__Role *role;
		rc = role_load(m, txn, u->roles[i], a, &role);
		if (rc == BOLLARD_EROLE_NOT_FOUND)
			continue;
		if (rc != 0 || (rc = perms_add_role(a, ps, role)) != 0)
			return rc;
	}
	for (int t = 0; t < 2; t++)
		if (ps->n[t] > 1)
			qsort(ps->v[t], ps->n[t], sizeof(struct ivl), ivl_begin_cmp);
	return 0;
}

/* adt's Contains: the overlapping intervals, in begin order, cover iv
 * without a gap. */
static bool ivls_contain(const struct ivl *v, size_t n, const struct ivl *iv)
{
	const struct ivl *first = NULL;
	const uint8_t *maxe = NULL;
	size_t maxel = 0;
	for (size_t i = 0; i < n; i++) {
		if (!ivl_overlaps(iv, &v[i]))
			continue;
		if (first == NULL) {
			first = &v[i];
			maxe = v[i].e;
			maxel = v[i].el;
			continue;
		}
		if (aff_cmp(maxe, maxel, v[i].b, v[i].bl) < 0)
			return false;
		if (aff_cmp(v[i].e, v[i].el, maxe, maxel) > 0) {
			maxe = v[i].e;
			maxel = v[i].el;
		}
	}
	return first != NULL && aff_cmp(maxe, maxel, iv->e, iv->el) >= 0 &&
	       aff_cmp(first->b, first->bl, iv->b, iv->bl) <= 0;
}

/* etcd's isRangeOpPermitted for one key or range. */
static int perms_check(struct arena *a, const struct perm_set *ps, int t, ProtobufCBinaryData key,
                       ProtobufCBinaryData end)
{
	struct ivl iv;
	if (ps->err)
		return ps->err;
	if (ps->all)
		return 0;
	if (end.len == 0) {
		int rc = point_ivl(a, key, &iv);
		if (rc != 0)
			return rc;
		for (size_t i = 0; i < ps->n[t]; i++)
			if (ivl_overlaps(&iv, &ps->v[t][i]))
				return 0;
		return BOLLARD_EPERMISSION_DENIED;
	}
	iv = (struct ivl){key.data, end.data, key.len, end.len};
	if (end.len == 1 && end.data[0] == 0)
		iv.el = 0;
	return ivls_contain(ps->v[t], ps->n[t], &iv) ? 0 : BOLLARD_EPERMISSION_DENIED;
}

int auth_check_range(const struct mvcc *m, MDB_txn *txn, const struct auth_info *ai,
                     ProtobufCBinaryData key, ProtobufCBinaryData end)
{
	struct arena a;
	struct perm_set ps;
	arena_init(&a, 4096);
	int rc = perms_load(m, txn, &a, ai, &ps);
	if (rc == 0)
		rc = perms_check(&a, &ps, P_READ, key, end);
	arena_free(&a);
	return rc;
}

int auth_check_admin(const struct mvcc *m, MDB_txn *txn, const struct auth_info *ai)
{
	Authpb__User *u;
	int rc;
	if (!auth_enabled(m, txn) || ai->rev == AUTH_REV_SYSTEM)
		return 0;
	if (ai->user == NULL || ai->user[0] == 0)
		return BOLLARD_EUSER_EMPTY;
	if ((rc = auth_user_load(m, txn, ai->user, NULL, &u)) != 0)
		return rc;
	rc = has_role(u, ROOT) ? 0 : BOLLARD_EPERMISSION_DENIED;
	authpb__user__free_unpacked(u, NULL);
	return rc;
}

static const ProtobufCBinaryData NO_END = {0, NULL};

/* etcd's checkLeasePuts: write permission on every key of the lease. */
static int check_lease_puts(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                            const struct perm_set *ps, int64_t lease)
{
	ProtobufCBinaryData *keys;
	size_t n;
	int rc;
	if (lease == 0 || ps->all)
		return ps->err;
	if ((rc = leasedb_keys(m, txn, a, lease, &keys, &n)) != 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = perms_check(a, ps, P_WRITE, keys[i], NO_END);
	return rc;
}

static int check_ops(struct arena *a, const struct perm_set *ps, Etcdserverpb__RequestOp **ops,
                     size_t n);

/* etcd's checkTxnAuth; nested txns are checked as well (etcd 3.4 lets
 * their ops through unchecked). */
static int check_txn(struct arena *a, const struct perm_set *ps, const Etcdserverpb__TxnRequest *t)
{
	int rc = 0;
	for (size_t i = 0; i < t->n_compare && rc == 0; i++)
		if (t->compare[i] != NULL)
			rc = perms_check(a, ps, P_READ, t->compare[i]->key, t->compare[i]->range_end);
	if (rc == 0)
		rc = check_ops(a, ps, t->success, t->n_success);
	if (rc == 0)
		rc = check_ops(a, ps, t->failure, t->n_failure);
	return rc;
}

static int check_ops(struct arena *a, const struct perm_set *ps, Etcdserverpb__RequestOp **ops,
                     size_t n)
{
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const Etcdserverpb__RequestOp *op = ops[i];
		if (op == NULL)
			continue;
		switch (op->request_case) {
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
			if (op->request_range)
				rc = perms_check(a, ps, P_READ, op->request_range->key,
				                 op->request_range->range_end);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
			if (op->request_put)
				rc = perms_check(a, ps, P_WRITE, op->request_put->key, NO_END);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE: {
			const Etcdserverpb__DeleteRangeRequest *d = op->request_delete_range;
			if (d == NULL)
				break;
			if (d->prev_kv)
				rc = perms_check(a, ps, P_READ, d->key, d->range_end);
			if (rc == 0)
				rc = perms_check(a, ps, P_WRITE, d->key, d->range_end);
			break;
		}
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
			if (op->request_txn)
				rc = check_txn(a, ps, op->request_txn);
			break;
		default:
			break;
		}
	}
	return rc;
}

/* The Auth requests etcd's needAdminPermission lists, and the UserGet /
 * RoleGet rules (a user may read itself and its own roles). */
static int check_auth_request(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                              const struct auth_info *ai, const Bollard__AuthRequest *r)
{
	int rc;
	switch (r->op_case) {
	case BOLLARD__AUTH_REQUEST__OP_AUTHENTICATE:
		return 0;
	case BOLLARD__AUTH_REQUEST__OP_USER_GET:
		rc = auth_check_admin(m, txn, ai);
		if (rc != 0 && ai->user != NULL && strcmp(r->user_get->name, ai->user) == 0)
			rc = 0;
		return rc;
	case BOLLARD__AUTH_REQUEST__OP_ROLE_GET: {
		Authpb__User *u;
		rc = auth_check_admin(m, txn, ai);
		if (rc != 0 && ai->user != NULL && user_load_a(m, txn, ai->user, a, &u) == 0 &&
		    has_role(u, r->role_get->role))
			rc = 0;
		return rc;
	}
	default:
		return auth_check_admin(m, txn, ai);
	}
}

int auth_check_request(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                       const struct auth_info *ai, const Bollard__Request *req)
{
	struct perm_set ps;
	int rc;
	if (ai->rev == AUTH_REV_SYSTEM || !auth_enabled(m, txn))
		return 0;
	switch (req->op_case) {
	case BOLLARD__REQUEST__OP_AUTH:
		return check_auth_request(m, txn, a, ai, req->auth);
	case BOLLARD__REQUEST__OP_PUT:
	case BOLLARD__REQUEST__OP_DELETE_RANGE:
	case BOLLARD__REQUEST__OP_TXN:
	case BOLLARD__REQUEST__OP_LEASE_REVOKE:
		break;
	default:
		return 0;
	}
	if ((rc = perms_load(m, txn, a, ai, &ps)) != 0)
		return rc;
	switch (req->op_case) {
	case BOLLARD__REQUEST__OP_PUT: {
		const Etcdserverpb__PutRequest *p = req->put;
		rc = perms_check(a, &ps, P_WRITE, p->key, NO_END);
		if (rc == 0)
			rc = check_lease_puts(m, txn, a, &ps, p->lease);
		if (rc == 0 && p->prev_kv)
			rc = perms_check(a, &ps, P_READ, p->key, NO_END);
		return rc;
	}
	case BOLLARD__REQUEST__OP_DELETE_RANGE: {
		const Etcdserverpb__DeleteRangeRequest *d = req->delete_range;
		rc = perms_check(a, &ps, P_WRITE, d->key, d->range_end);
		if (rc == 0 && d->prev_kv)
			rc = perms_check(a, &ps, P_READ, d->key, d->range_end);
		return rc;
	}
	case BOLLARD__REQUEST__OP_TXN:
		return check_txn(a, &ps, req->txn);
	default:
		return check_lease_puts(m, txn, a, &ps, req->lease_revoke->id);
	}
}

/* ---- apply ----------------------------------------------------------------- */

union auth_resp {
	Etcdserverpb__AuthEnableResponse enable;
	Etcdserverpb__AuthDisableResponse disable;
	Etcdserverpb__AuthenticateResponse authenticate;
	Etcdserverpb__AuthUserAddResponse user_add;
	Etcdserverpb__AuthUserGetResponse user_get;
	Etcdserverpb__AuthUserListResponse user_list;
	Etcdserverpb__AuthUserDeleteResponse user_delete;
	Etcdserverpb__AuthUserChangePasswordResponse user_change_password;
	Etcdserverpb__AuthUserGrantRoleResponse user_grant_role;
	Etcdserverpb__AuthUserRevokeRoleResponse user_revoke_role;
	Etcdserverpb__AuthRoleAddResponse role_add;
	Etcdserverpb__AuthRoleGetResponse role_get;
	Etcdserverpb__AuthRoleListResponse role_list;
	Etcdserverpb__AuthRoleDeleteResponse role_delete;
	Etcdserverpb__AuthRoleGrantPermissionResponse role_grant_permission;
	Etcdserverpb__AuthRoleRevokePermissionResponse role_revoke_permission;
};

static ProtobufCBinaryData bin_of(const char *s)
{
	return (ProtobufCBinaryData){strlen(s), (uint8_t *)s};
}

struct name_list {
	struct arena *a;
	char **v;
	size_t n, cap;
};

static int name_collect(void *ud, const uint8_t *name, size_t nlen, const uint8_t *rec,
                        size_t rlen)
{
	struct name_list *l = ud;
	char *s;
	(void)rec;
	(void)rlen;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 16;
		char **nv = arena_alloc(l->a, nc * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		if (l->n)
			memcpy(nv, l->v, l->n * sizeof(*nv));
		l->v = nv;
		l->cap = nc;
	}
	if ((s = arena_alloc(l->a, nlen + 1)) == NULL)
		return -ENOMEM;
	memcpy(s, name, nlen);
	s[nlen] = 0;
	l->v[l->n++] = s;
	return 0;
}

/* Roles of u without role (NULL when it had none of it). */
static bool roles_without(struct arena *a, const Authpb__User *u, const char *role, char ***out,
                          size_t *n)
{
	char **v = arena_alloc(a, (u->n_roles ? u->n_roles : 1) * sizeof(*v));
	size_t k = 0;
	if (v == NULL)
		return false;
	for (size_t i = 0; i < u->n_roles; i++)
		if (strcmp(u->roles[i], role) != 0)
			v[k++] = u->roles[i];
	bool removed = k != u->n_roles;
	*out = v;
	*n = k; /* may be &u->n_roles */
	return removed;
}

static int apply_user_add(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                          const Bollard__AuthRequest *r, struct auth_event *ev)
{
	const Etcdserverpb__AuthUserAddRequest *q = r->user_add;
	Authpb__User *old, u = AUTHPB__USER__INIT;
	Authpb__UserAddOptions opts = AUTHPB__USER_ADD_OPTIONS__INIT;
	int rc;
	if (q->name[0] == 0)
		return BOLLARD_EUSER_EMPTY;
	rc = user_load_a(m, txn, q->name, a, &old);
	if (rc == 0)
		return BOLLARD_EUSER_ALREADY_EXIST;
	if (rc != BOLLARD_EUSER_NOT_FOUND)
		return rc;
	u.name = bin_of(q->name);
	if (q->options)
		opts.no_password = q->options->no_password;
	u.options = &opts;
	if (!opts.no_password)
		u.password = r->hashed_password;
	if ((rc = rec_put(m, txn, AUTH_USERS, &u.name, &u.base)) != 0)
		return rc;
	return commit_revision(m, txn, ev);
}

static int apply_user_change(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                             const Bollard__AuthRequest *r, struct auth_event *ev)
{
	const Etcdserverpb__AuthUserChangePasswordRequest *q = r->user_change_password;
	Authpb__User *u;
	int rc = user_load_a(m, txn, q->name, a, &u);
	if (rc != 0)
		return rc;
	u->password = r->hashed_password;
	if ((rc = rec_put(m, txn, AUTH_USERS, &u->name, &u->base)) != 0)
		return rc;
	ev->drop_user = q->name;
	return commit_revision(m, txn, ev);
}

static int apply_grant_role(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                            const Etcdserverpb__AuthUserGrantRoleRequest *q, struct auth_event *ev)
{
	Authpb__User *u;
	Authpb__Role *role;
	size_t pos;
	char **v;
	int rc = user_load_a(m, txn, q->user, a, &u);
	if (rc != 0)
		return rc;
	if (strcmp(q->role, ROOT) != 0 && (rc = role_load(m, txn, q->role, a, &role)) != 0)
		return rc;
	if (has_role(u, q->role))
		return 0; /* etcd ignores it */
	if ((v = arena_alloc(a, (u->n_roles + 1) * sizeof(*v))) == NULL)
		return -ENOMEM;
	for (pos = 0; pos < u->n_roles && strcmp(u->roles[pos], q->role) < 0; pos++)
		v[pos] = u->roles[pos];
	v[pos] = q->role;
	for (size_t i = pos; i < u->n_roles; i++)
		v[i + 1] = u->roles[i];
	u->roles = v;
	u->n_roles++;
	if ((rc = rec_put(m, txn, AUTH_USERS, &u->name, &u->base)) != 0)
		return rc;
	return commit_revision(m, txn, ev);
}

static int apply_revoke_role(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                             const Etcdserverpb__AuthUserRevokeRoleRequest *q,
                             struct auth_event *ev)
{
	Authpb__User *u;
	int rc;
	if (auth_enabled(m, txn) && strcmp(q->name, ROOT) == 0 && strcmp(q->role, ROOT) == 0)
		return BOLLARD_EINVALID_AUTH_MGMT;
	if ((rc = user_load_a(m, txn, q->name, a, &u)) != 0)
		return rc;
	if (!roles_without(a, u, q->role, &u->roles, &u->n_roles))
		return BOLLARD_EROLE_NOT_GRANTED;
	if ((rc = rec_put(m, txn, AUTH_USERS, &u->name, &u->base)) != 0)
		return rc;
	return commit_revision(m, txn, ev);
}

static int apply_role_delete(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                             const char *name, struct auth_event *ev)
{
	Authpb__Role *role;
	struct name_list users = {.a = a};
	Authpb__User **holders;
	size_t n = 0;
	int rc;
	if (auth_enabled(m, txn) && strcmp(name, ROOT) == 0)
		return BOLLARD_EINVALID_AUTH_MGMT;
	if ((rc = role_load(m, txn, name, a, &role)) != 0)
		return rc;
	/* Every read before the first write: nothing can refuse it after. */
	if ((rc = auth_foreach(m, txn, AUTH_USERS, name_collect, &users)) != 0)
		return rc;
	if ((holders = arena_alloc(a, (users.n ? users.n : 1) * sizeof(*holders))) == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < users.n; i++) {
		Authpb__User *u;
		if ((rc = user_load_a(m, txn, users.v[i], a, &u)) != 0)
			return rc;
		if (roles_without(a, u, name, &u->roles, &u->n_roles))
			holders[n++] = u;
	}
	if ((rc = rec_del(m, txn, AUTH_ROLES, name)) != 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		if ((rc = rec_put(m, txn, AUTH_USERS, &holders[i]->name, &holders[i]->base)) != 0)
			return rc;
	return commit_revision(m, txn, ev);
}

static int apply_grant_perm(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                            const Etcdserverpb__AuthRoleGrantPermissionRequest *q,
                            struct auth_event *ev)
{
	Authpb__Role *role;
	const Authpb__Permission *np = q->perm;
	size_t idx = 0, n;
	int rc = role_load(m, txn, q->name, a, &role);
	if (rc != 0)
		return rc;
	if (np == NULL)
		return BOLLARD_EBAD_REQUEST; /* etcd dereferences it */
	n = role->n_keypermission;
	/* sort.Search with bytes.Compare (plain byte order: "" first). */
	while (idx < n) {
		const ProtobufCBinaryData *k = &role->keypermission[idx]->key;
		size_t l = k->len < np->key.len ? k->len : np->key.len;
		int c = l ? memcmp(k->data, np->key.data, l) : 0;
		if (c > 0 || (c == 0 && k->len >= np->key.len))
			break;
		idx++;
	}
	if (idx < n) {
		Authpb__Permission *p = role->keypermission[idx];
		if (p->key.len == np->key.len && p->range_end.len == np->range_end.len &&
		    (p->key.len == 0 || memcmp(p->key.data, np->key.data, p->key.len) == 0) &&
		    (p->range_end.len == 0 ||
		     memcmp(p->range_end.data, np->range_end.data, p->range_end.len) == 0)) {
			p->permtype = np->permtype;
			goto store;
		}
	}
	{
		/* Appended, then sorted by key: lands after every equal key. */
		Authpb__Permission **v = arena_alloc(a, (n + 1) * sizeof(*v));
		Authpb__Permission *p = arena_alloc(a, sizeof(*p));
		size_t pos = idx;
		if (v == NULL || p == NULL)
			return -ENOMEM;
		*p = (Authpb__Permission)AUTHPB__PERMISSION__INIT;
		p->permtype = np->permtype;
		p->key = np->key;
		p->range_end = np->range_end;
		while (pos < n && role->keypermission[pos]->key.len == np->key.len &&
		       (np->key.len == 0 ||
		        memcmp(role->keypermission[pos]->key.data, np->key.data, np->key.len) == 0))
			pos++;
		for (size_t i = 0; i < pos; i++)
			v[i] = role->keypermission[i];
		v[pos] = p;
		for (size_t i = pos; i < n; i++)
			v[i + 1] = role->keypermission[i];
		role->keypermission = v;
		role->n_keypermission = n + 1;
	}
store:
	if ((rc = rec_put(m, txn, AUTH_ROLES, &role->name, &role->base)) != 0)
		return rc;
	return commit_revision(m, txn, ev);
}

static bool bin_eq(ProtobufCBinaryData a, ProtobufCBinaryData b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static int apply_revoke_perm(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                             const Etcdserverpb__AuthRoleRevokePermissionRequest *q,
                             struct auth_event *ev)
{
	Authpb__Role *role;
	size_t k = 0;
	int rc = role_load(m, txn, q->role, a, &role);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < role->n_keypermission; i++) {
		Authpb__Permission *p = role->keypermission[i];
		if (!bin_eq(p->key, q->key) || !bin_eq(p->range_end, q->range_end))
			role->keypermission[k++] = p;
	}
	if (k == role->n_keypermission)
		return BOLLARD_EPERMISSION_NOT_GRANTED;
	role->n_keypermission = k;
	if ((rc = rec_put(m, txn, AUTH_ROLES, &role->name, &role->base)) != 0)
		return rc;
	return commit_revision(m, txn, ev);
}

static int apply_enable(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                        struct auth_event *ev)
{
	Authpb__User *root;
	uint8_t on = 1;
	int rc;
	if (auth_enabled(m, txn))
		return 0;
	rc = user_load_a(m, txn, ROOT, a, &root);
	if (rc == BOLLARD_EUSER_NOT_FOUND)
		return BOLLARD_EROOT_USER_NOT_EXIST;
	if (rc != 0)
		return rc;
	if (!has_role(root, ROOT))
		return BOLLARD_EROOT_ROLE_NOT_EXIST;
	ev->changed = true;
	return meta_put(m, txn, K_ENABLED, &on, 1);
}

static int apply_disable(const struct mvcc *m, MDB_txn *txn, struct auth_event *ev)
{
	uint8_t off = 0;
	int rc;
	if (!auth_enabled(m, txn))
		return 0;
	if ((rc = meta_put(m, txn, K_ENABLED, &off, 1)) != 0)
		return rc;
	ev->disabled = true;
	return commit_revision(m, txn, ev);
}

static int apply_authenticate(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                              const Bollard__AuthRequest *r, uint64_t index,
                              Etcdserverpb__AuthenticateResponse *resp, struct auth_event *ev)
{
	Authpb__User *u;
	int rc;
	if (!auth_enabled(m, txn))
		return BOLLARD_EAUTH_NOT_ENABLED;
	rc = user_load_a(m, txn, r->authenticate->name, a, &u);
	if (rc == BOLLARD_EUSER_NOT_FOUND)
		return BOLLARD_EAUTH_FAILED;
	if (rc != 0)
		return rc;
	if (u->options && u->options->no_password)
		return BOLLARD_EAUTH_FAILED;
	if (strlen(r->simple_token) > 32)
		return BOLLARD_EBAD_REQUEST;
	snprintf(ev->token, sizeof(ev->token), "%s.%llu", r->simple_token,
	         (unsigned long long)index);
	ev->token_user = r->authenticate->name;
	resp->token = ev->token;
	return 0;
}

#define RESP(field, INIT)                                                                          \
	do {                                                                                       \
		R->field = (typeof(R->field))INIT;                                                 \
		*msg = &R->field.base;                                                             \
		hp = &R->field.header;                                                             \
	} while (0)

int auth_apply(const struct mvcc *m, MDB_txn *txn, struct arena *a, const struct auth_info *ai,
               const Bollard__AuthRequest *r, uint64_t index, ProtobufCMessage **msg,
               Etcdserverpb__ResponseHeader **hdr, struct auth_event *ev)
{
	union auth_resp *R = arena_calloc(a, 1, sizeof(*R));
	Etcdserverpb__ResponseHeader **hp = NULL, *h;
	struct name_list names = {.a = a};
	int rc = 0;

	(void)ai;
	memset(ev, 0, sizeof(*ev));
	if (R == NULL)
		return -ENOMEM;
	if (r->op_case != BOLLARD__AUTH_REQUEST__OP__NOT_SET && r->enable == NULL)
		return BOLLARD_EBAD_REQUEST; /* every op is a message pointer */
	switch (r->op_case) {
	case BOLLARD__AUTH_REQUEST__OP_ENABLE:
		RESP(enable, ETCDSERVERPB__AUTH_ENABLE_RESPONSE__INIT);
		rc = apply_enable(m, txn, a, ev);
		break;
	case BOLLARD__AUTH_REQUEST__OP_DISABLE:
		RESP(disable, ETCDSERVERPB__AUTH_DISABLE_RESPONSE__INIT);
		rc = apply_disable(m, txn, ev);
		break;
	case BOLLARD__AUTH_REQUEST__OP_AUTHENTICATE:
		RESP(authenticate, ETCDSERVERPB__AUTHENTICATE_RESPONSE__INIT);
		rc = apply_authenticate(m, txn, a, r, index, &R->authenticate, ev);
		break;
	case BOLLARD__AUTH_REQUEST__OP_USER_ADD:
		RESP(user_add, ETCDSERVERPB__AUTH_USER_ADD_RESPONSE__INIT);
		rc = apply_user_add(m, txn, a, r, ev);
		break;
	case BOLLARD__AUTH_REQUEST__OP_USER_GET: {
		Authpb__User *u;
		RESP(user_get, ETCDSERVERPB__AUTH_USER_GET_RESPONSE__INIT);
		if ((rc = user_load_a(m, txn, r->user_get->name, a, &u)) == 0) {
			R->user_get.roles = u->roles;
			R->user_get.n_roles = u->n_roles;
		}
		break;
	}
	case BOLLARD__AUTH_REQUEST__OP_USER_LIST:
		RESP(user_list, ETCDSERVERPB__AUTH_USER_LIST_RESPONSE__INIT);
		rc = auth_foreach(m, txn, AUTH_USERS, name_collect, &names);
		R->user_list.users = names.v;
		R->user_list.n_users = names.n;
		break;
	case BOLLARD__AUTH_REQUEST__OP_USER_DELETE: {
		Authpb__User *u;
		const char *name = r->user_delete->name;
		RESP(user_delete, ETCDSERVERPB__AUTH_USER_DELETE_RESPONSE__INIT);
		if (auth_enabled(m, txn) && strcmp(name, ROOT) == 0)
			rc = BOLLARD_EINVALID_AUTH_MGMT;
		else if ((rc = user_load_a(m, txn, name, a, &u)) == 0 &&
		         (rc = rec_del(m, txn, AUTH_USERS, name)) == 0) {
			ev->drop_user = name;
			rc = commit_revision(m, txn, ev);
		}
		break;
	}
	case BOLLARD__AUTH_REQUEST__OP_USER_CHANGE_PASSWORD:
		RESP(user_change_password, ETCDSERVERPB__AUTH_USER_CHANGE_PASSWORD_RESPONSE__INIT);
		rc = apply_user_change(m, txn, a, r, ev);
		break;
	case BOLLARD__AUTH_REQUEST__OP_USER_GRANT_ROLE:
		RESP(user_grant_role, ETCDSERVERPB__AUTH_USER_GRANT_ROLE_RESPONSE__INIT);
		rc = apply_grant_role(m, txn, a, r->user_grant_role, ev);
		break;
	case BOLLARD__AUTH_REQUEST__OP_USER_REVOKE_ROLE:
		RESP(user_revoke_role, ETCDSERVERPB__AUTH_USER_REVOKE_ROLE_RESPONSE__INIT);
		rc = apply_revoke_role(m, txn, a, r->user_revoke_role, ev);
		break;
	case BOLLARD__AUTH_REQUEST__OP_ROLE_ADD: {
		Authpb__Role *old, role = AUTHPB__ROLE__INIT;
		const char *name = r->role_add->name;
		RESP(role_add, ETCDSERVERPB__AUTH_ROLE_ADD_RESPONSE__INIT);
		if (name[0] == 0) {
			rc = BOLLARD_EROLE_EMPTY;
			break;
		}
		rc = role_load(m, txn, name, a, &old);
		if (rc == 0) {
			rc = BOLLARD_EROLE_ALREADY_EXIST;
			break;
		}
		if (rc != BOLLARD_EROLE_NOT_FOUND)
			break;
		role.name = bin_of(name);
		if ((rc = rec_put(m, txn, AUTH_ROLES, &role.name, &role.base)) == 0)
			rc = commit_revision(m, txn, ev);
		break;
	}
	case BOLLARD__AUTH_REQUEST__OP_ROLE_GET: {
		Authpb__Role *role;
		RESP(role_get, ETCDSERVERPB__AUTH_ROLE_GET_RESPONSE__INIT);
		if ((rc = role_load(m, txn, r->role_get->role, a, &role)) == 0) {
			R->role_get.perm = role->keypermission;
			R->role_get.n_perm = role->n_keypermission;
		}
		break;
	}
	case BOLLARD__AUTH_REQUEST__OP_ROLE_LIST:
		RESP(role_list, ETCDSERVERPB__AUTH_ROLE_LIST_RESPONSE__INIT);
		rc = auth_foreach(m, txn, AUTH_ROLES, name_collect, &names);
		R->role_list.roles = names.v;
		R->role_list.n_roles = names.n;
		break;
	case BOLLARD__AUTH_REQUEST__OP_ROLE_DELETE:
		RESP(role_delete, ETCDSERVERPB__AUTH_ROLE_DELETE_RESPONSE__INIT);
		rc = apply_role_delete(m, txn, a, r->role_delete->role, ev);
		break;
	case BOLLARD__AUTH_REQUEST__OP_ROLE_GRANT_PERMISSION:
		RESP(role_grant_permission, ETCDSERVERPB__AUTH_ROLE_GRANT_PERMISSION_RESPONSE__INIT);
		rc = apply_grant_perm(m, txn, a, r->role_grant_permission, ev);
		break;
	case BOLLARD__AUTH_REQUEST__OP_ROLE_REVOKE_PERMISSION:
		RESP(role_revoke_permission, ETCDSERVERPB__AUTH_ROLE_REVOKE_PERMISSION_RESPONSE__INIT);
		rc = apply_revoke_perm(m, txn, a, r->role_revoke_permission, ev);
		break;
	default:
		return BOLLARD_EBAD_REQUEST;
	}
	if (rc != 0)
		return rc;
	if ((h = arena_alloc(a, sizeof(*h))) == NULL)
		return -ENOMEM;
	*h = (Etcdserverpb__ResponseHeader)ETCDSERVERPB__RESPONSE_HEADER__INIT;
	h->revision = mvcc_current_rev(m, txn);
	*hp = h;
	*hdr = h;
	ev->enabled = auth_enabled(m, txn);
	ev->revision = auth_revision(m, txn);
	return 0;
}

const ProtobufCMessageDescriptor *auth_response_descriptor(const Bollard__AuthRequest *r)
{
	switch (r->op_case) {
	case BOLLARD__AUTH_REQUEST__OP_ENABLE: return &etcdserverpb__auth_enable_response__descriptor;
	case BOLLARD__AUTH_REQUEST__OP_DISABLE: return &etcdserverpb__auth_disable_response__descriptor;
	case BOLLARD__AUTH_REQUEST__OP_AUTHENTICATE: return &etcdserverpb__authenticate_response__descriptor;
	case BOLLARD__AUTH_REQUEST__OP_USER_ADD: return &etcdserverpb__auth_user_add_response__descriptor;
	case BOLLARD__AUTH_REQUEST__OP_USER_GET: return &etcdserverpb__auth_user_get_response__descriptor;
	case BOLLARD__AUTH_REQUEST__OP_USER_LIST: return &etcdserverpb__auth_user_list_response__descriptor;
	case BOLLARD__AUTH_REQUEST__OP_USER_DELETE:
		return &etcdserverpb__auth_user_delete_response__descriptor;
	case BOLLARD__AUTH_REQUEST__OP_USER_CHANGE_PASSWORD:
		return &etcdserverpb__auth_user_change_password_response__descriptor;
	case BOLLARD__AUTH_REQUEST__OP_USER_GRANT_ROLE:
		return &etcdserverpb__auth_user_grant_role_response__descriptor;
	case BOLLARD__AUTH_REQUEST__OP_USER_REVOKE_ROLE:
		return &etcdserverpb__auth_user_revoke_role_response__descriptor;
	case BOLLARD__AUTH_REQUEST__OP_ROLE_ADD: return &etcdserverpb__auth_role_add_response__descriptor;
	case BOLLARD__AUTH_REQUEST__OP_ROLE_GET: return &etcdserverpb__auth_role_get_response__descriptor;
	case BOLLARD__AUTH_REQUEST__OP_ROLE_LIST: return &etcdserverpb__auth_role_list_response__descriptor;
	case BOLLARD__AUTH_REQUEST__OP_ROLE_DELETE:
		return &etcdserverpb__auth_role_delete_response__descriptor;
	case BOLLARD__AUTH_REQUEST__OP_ROLE_GRANT_PERMISSION:
		return &etcdserverpb__auth_role_grant_permission_response__descriptor;
	case BOLLARD__AUTH_REQUEST__OP_ROLE_REVOKE_PERMISSION:
		return &etcdserverpb__auth_role_revoke_permission_response__descriptor;
	default: return NULL;
	}
}

/* ---- passwords ------------------------------------------------------------ */

int auth_hash_password(const char *pw, size_t len, char out[AUTH_HASH_MAX])
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	char *pwz;
	int rc = 0;
	if (crypt_gensalt_rn("$2b$", 10, NULL, 0, salt, sizeof(salt)) == NULL)
		return -errno ? -errno : -EINVAL;
	cd = calloc(1, sizeof(*cd));
	pwz = malloc(len + 1);
	if (cd == NULL || pwz == NULL) {
		free(cd);
		free(pwz);
		return -ENOMEM;
	}
	memcpy(pwz, pw, len);
	pwz[len] = 0;
	const char *h = crypt_r(pwz, salt, cd);
	if (h == NULL || h[0] == '*' || strlen(h) >= AUTH_HASH_MAX)
		rc = -EINVAL;
	else
		strcpy(out, h);
	explicit_bzero(pwz, len);
	free(pwz);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return rc;
}

int auth_verify_password(const uint8_t *hash, size_t hlen, const char *pw, size_t len)
{
	struct crypt_data *cd;
	char *pwz, *hz;
	int rc = BOLLARD_EAUTH_FAILED;
	/* bcrypt only (etcd's only scheme): never a DES or plain setting. */
	if (hlen < 7 || hlen >= CRYPT_OUTPUT_SIZE || hash[0] != '$' || hash[1] != '2')
		return BOLLARD_EAUTH_FAILED;
	cd = calloc(1, sizeof(*cd));
	pwz = malloc(len + 1);
	hz = malloc(hlen + 1);
	if (cd == NULL || pwz == NULL || hz == NULL) {
		free(cd);
		free(pwz);
		free(hz);
		return -ENOMEM;
	}
	memcpy(pwz, pw, len);
	pwz[len] = 0;
	memcpy(hz, hash, hlen);
	hz[hlen] = 0;
	const char *h = crypt_r(pwz, hz, cd);
	if (h != NULL && h[0] != '*' && strlen(h) == hlen) {
		unsigned char diff = 0;
		for (size_t i = 0; i < hlen; i++)
			diff |= (unsigned char)(h[i] ^ hz[i]);
		if (diff == 0)
			rc = 0;
	}
	explicit_bzero(pwz, len);
	free(pwz);
	free(hz);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return rc;
}

int auth_token_prefix(char out[17])
{
	static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	uint8_t r[16];
	size_t got = 0;
	while (got < sizeof(r)) {
		ssize_t n = getrandom(r + got, sizeof(r) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	for (int i = 0; i < 16; i++)
		out[i] = letters[r[i] % 52]; /* 256 % 52 != 0: a slight bias, as good as etcd's */
	out[16] = 0;
	return 0;
}
