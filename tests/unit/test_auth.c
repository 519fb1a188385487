/* test_auth.c - the auth store (core/auth.c) through apply_batch_ex as raft
 * applies it: etcd 3.4's root rules, admin checks, key-range permissions of
 * every KV op (txns refused whole), stale auth revisions, logins; bcrypt
 * hashes; the simple-token table (core/authtoken.c). */
#include <crypt.h>
#include <stdlib.h>

#include "core/apply.h"
#include "core/auth.h"
#include "core/authtoken.h"
#include "fixture.h"
#include "unit.h"

static const struct apply_header HDR = {.cluster_id = 1, .member_id = 2, .raft_term = 3};

struct seen {
	struct auth_event last;
	char token_user[64];
	int events;
};

static void on_auth(void *ud, const struct auth_event *ev)
{
	struct seen *s = ud;
	s->last = *ev;
	s->token_user[0] = 0;
	if (ev->token_user)
		snprintf(s->token_user, sizeof(s->token_user), "%s", ev->token_user);
	s->events++;
}

static struct seen seen;

/* Apply one request as user (rev: its auth revision); returns its error and
 * unpacks a successful response with desc into *out (may be NULL). */
static int run(struct fx *f, Bollard__Request *r, const char *user, uint64_t rev,
               const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
	Bollard__Request *rp = r;
	Bollard__Batch b = BOLLARD__BATCH__INIT;
	struct apply_result res;
	struct apply_opts o = {.min_lease_ttl = 2, .index = 77, .auth_applied = on_auth,
	                       .ud = &seen};
	r->auth_user = (char *)user;
	r->auth_revision = rev;
	b.requests = &rp;
	b.n_requests = 1;
	MDB_txn *txn = fx_wtxn(f);
	REQUIRE(apply_batch_ex(&f->m, txn, &HDR, &b, &res, &o) == 0);
	fx_commit(txn);
	if (out)
		*out = NULL;
	if (res.err == 0 && desc && out)
		*out = protobuf_c_message_unpack(desc, NULL, res.len, res.resp);
	free(res.resp);
	return res.err;
}

static Bollard__Request *areq(struct fx *f, Bollard__AuthRequest **a)
{
	Bollard__Request *r = arena_calloc(&f->a, 1, sizeof(*r));
	*r = (Bollard__Request)BOLLARD__REQUEST__INIT;
	*a = arena_calloc(&f->a, 1, sizeof(**a));
	**a = (Bollard__AuthRequest)BOLLARD__AUTH_REQUEST__INIT;
	r->op_case = BOLLARD__REQUEST__OP_AUTH;
	r->auth = *a;
	return r;
}

static int user_add(struct fx *f, const char *name, const char *pw, const char *as, uint64_t rev)
{
	Bollard__AuthRequest *a;
	Bollard__Request *r = areq(f, &a);
	Etcdserverpb__AuthUserAddRequest *q = arena_calloc(&f->a, 1, sizeof(*q));
	*q = (Etcdserverpb__AuthUserAddRequest)ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
	q->name = (char *)name;
	a->op_case = BOLLARD__AUTH_REQUEST__OP_USER_ADD;
	a->user_add = q;
	char *h = arena_alloc(&f->a, AUTH_HASH_MAX);
	REQUIRE(auth_hash_password(pw, strlen(pw), h) == 0);
	a->hashed_password = B(h);
	return run(f, r, as, rev, NULL, NULL);
}

static int role_add(struct fx *f, const char *name, const char *as, uint64_t rev)
{
	Bollard__AuthRequest *a;
	Bollard__Request *r = areq(f, &a);
	Etcdserverpb__AuthRoleAddRequest *q = arena_calloc(&f->a, 1, sizeof(*q));
	*q = (Etcdserverpb__AuthRoleAddRequest)ETCDSERVERPB__AUTH_ROLE_ADD_REQUEST__INIT;
	q->name = (char *)name;
	a->op_case = BOLLARD__AUTH_REQUEST__OP_ROLE_ADD;
	a->role_add = q;
	return run(f, r, as, rev, NULL, NULL);
}

static int grant_role(struct fx *f, const char *user, const char *role, const char *as,
                      uint64_t rev)
{
	Bollard__AuthRequest *a;
	Bollard__Request *r = areq(f, &a);
	Etcdserverpb__AuthUserGrantRoleRequest *q = arena_calloc(&f->a, 1, sizeof(*q));
	*q = (Etcdserverpb__AuthUserGrantRoleRequest)ETCDSERVERPB__AUTH_USER_GRANT_ROLE_REQUEST__INIT;
	q->user = (char *)user;
	q->role = (char *)role;
	a->op_case = BOLLARD__AUTH_REQUEST__OP_USER_GRANT_ROLE;
	a->user_grant_role = q;
	return run(f, r, as, rev, NULL, NULL);
}

static int grant_perm(struct fx *f, const char *role, Authpb__Permission__Type t, const char *key,
                      ProtobufCBinaryData end, const char *as, uint64_t rev)
{
	Bollard__AuthRequest *a;
	Bollard__Request *r = areq(f, &a);
	Etcdserverpb__AuthRoleGrantPermissionRequest *q = arena_calloc(&f->a, 1, sizeof(*q));
	Authpb__Permission *p = arena_calloc(&f->a, 1, sizeof(*p));
	*q = (Etcdserverpb__AuthRoleGrantPermissionRequest)
		ETCDSERVERPB__AUTH_ROLE_GRANT_PERMISSION_REQUEST__INIT;
	*p = (Authpb__Permission)AUTHPB__PERMISSION__INIT;
	p->permtype = t;
	p->key = B(key);
	p->range_end = end;
	q->name = (char *)role;
	q->perm = p;
	a->op_case = BOLLARD__AUTH_REQUEST__OP_ROLE_GRANT_PERMISSION;
	a->role_grant_permission = q;
	return run(f, r, as, rev, NULL, NULL);
}

static int simple(struct fx *f, Bollard__AuthRequest__OpCase c, const char *as, uint64_t rev)
{
	static Etcdserverpb__AuthEnableRequest en = ETCDSERVERPB__AUTH_ENABLE_REQUEST__INIT;
	static Etcdserverpb__AuthDisableRequest dis = ETCDSERVERPB__AUTH_DISABLE_REQUEST__INIT;
	static Etcdserverpb__AuthUserListRequest ul = ETCDSERVERPB__AUTH_USER_LIST_REQUEST__INIT;
	Bollard__AuthRequest *a;
	Bollard__Request *r = areq(f, &a);
	a->op_case = c;
	if (c == BOLLARD__AUTH_REQUEST__OP_ENABLE)
		a->enable = &en;
	else if (c == BOLLARD__AUTH_REQUEST__OP_DISABLE)
		a->disable = &dis;
	else
		a->user_list = &ul;
	return run(f, r, as, rev, NULL, NULL);
}

static uint64_t arev(struct fx *f)
{
	MDB_txn *t = fx_rtxn(f);
	uint64_t r = auth_revision(&f->m, t);
	mdb_txn_abort(t);
	return r;
}

static Bollard__Request *kv(struct fx *f, Etcdserverpb__RequestOp *op)
{
	Bollard__Request *r = arena_calloc(&f->a, 1, sizeof(*r));
	*r = (Bollard__Request)BOLLARD__REQUEST__INIT;
	switch (op->request_case) {
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
		r->op_case = BOLLARD__REQUEST__OP_PUT;
		r->put = op->request_put;
		break;
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
		r->op_case = BOLLARD__REQUEST__OP_DELETE_RANGE;
		r->delete_range = op->request_delete_range;
		break;
	default:
		r->op_case = BOLLARD__REQUEST__OP_TXN;
		r->txn = op->request_txn;
		break;
	}
	return r;
}

/* root (with the root role) and alice (role app: readwrite on prefix
 * /app/, read on key "ro"), auth enabled. */
static void setup(struct fx *f)
{
	fx_open(f);
	CHECK_INT(user_add(f, "root", "rootpw", NULL, 0), 0);
	CHECK_INT(simple(f, BOLLARD__AUTH_REQUEST__OP_ENABLE, NULL, 0), BOLLARD_EROOT_ROLE_NOT_EXIST);
	CHECK_INT(grant_role(f, "root", "root", NULL, 0), 0); /* root needs no role record */
	CHECK_INT(user_add(f, "alice", "apw", NULL, 0), 0);
	CHECK_INT(role_add(f, "app", NULL, 0), 0);
	CHECK_INT(grant_perm(f, "app", AUTHPB__PERMISSION__TYPE__READWRITE, "/app/", B("/app0"), NULL,
	                     0),
	          0);
	CHECK_INT(grant_perm(f, "app", AUTHPB__PERMISSION__TYPE__READ, "ro", B(""), NULL, 0), 0);
	CHECK_INT(grant_role(f, "alice", "app", NULL, 0), 0);
	uint64_t before = arev(f);
	CHECK_INT(simple(f, BOLLARD__AUTH_REQUEST__OP_ENABLE, NULL, 0), 0);
	CHECK_INT(arev(f), before); /* enabling does not move the revision */
	CHECK(seen.last.enabled);
	CHECK_INT(seen.last.revision, before); /* what the members cache */
}

TEST(enable_needs_root)
{
	struct fx f;
	fx_open(&f);
	CHECK_INT(simple(&f, BOLLARD__AUTH_REQUEST__OP_ENABLE, NULL, 0), BOLLARD_EROOT_USER_NOT_EXIST);
	CHECK_INT(arev(&f), 1);
	fx_close(&f);
}

TEST(admin_rules)
{
	struct fx f;
	setup(&f);
	uint64_t rev = arev(&f);
	CHECK_INT(user_add(&f, "bob", "x", NULL, 0), BOLLARD_EUSER_EMPTY);
	CHECK_INT(user_add(&f, "bob", "x", "alice", rev), BOLLARD_EPERMISSION_DENIED);
	CHECK_INT(user_add(&f, "bob", "x", "ghost", rev), BOLLARD_EUSER_NOT_FOUND);
	CHECK_INT(user_add(&f, "bob", "x", "root", rev), 0);
	CHECK_INT(user_add(&f, "bob", "x", "root", rev), BOLLARD_EUSER_ALREADY_EXIST);
	CHECK_INT(user_add(&f, "", "x", "root", rev), BOLLARD_EUSER_EMPTY);
	CHECK_INT(role_add(&f, "", "root", rev), BOLLARD_EROLE_EMPTY);
	CHECK_INT(role_add(&f, "app", "root", rev), BOLLARD_EROLE_ALREADY_EXIST);
	CHECK_INT(grant_role(&f, "bob", "nope", "root", rev), BOLLARD_EROLE_NOT_FOUND);
	CHECK_INT(grant_role(&f, "nobody", "app", "root", rev), BOLLARD_EUSER_NOT_FOUND);
	CHECK_INT(simple(&f, BOLLARD__AUTH_REQUEST__OP_USER_LIST, "alice", rev),
	          BOLLARD_EPERMISSION_DENIED);
	CHECK_INT(simple(&f, BOLLARD__AUTH_REQUEST__OP_DISABLE, "alice", rev),
	          BOLLARD_EPERMISSION_DENIED);

	/* a user may read itself, not others */
	Bollard__AuthRequest *a;
	Bollard__Request *r = areq(&f, &a);
	Etcdserverpb__AuthUserGetRequest g = ETCDSERVERPB__AUTH_USER_GET_REQUEST__INIT;
	ProtobufCMessage *out;
	g.name = "alice";
	a->op_case = BOLLARD__AUTH_REQUEST__OP_USER_GET;
	a->user_get = &g;
	CHECK_INT(run(&f, r, "alice", rev, &etcdserverpb__auth_user_get_response__descriptor, &out),
	          0);
	REQUIRE(out != NULL);
	Etcdserverpb__AuthUserGetResponse *ur = (void *)out;
	CHECK_INT(ur->n_roles, 1);
	CHECK(strcmp(ur->roles[0], "app") == 0);
	protobuf_c_message_free_unpacked(out, NULL);
	g.name = "root";
	CHECK_INT(run(&f, r, "alice", rev, NULL, NULL), BOLLARD_EPERMISSION_DENIED);

	/* root's rules while enabled */
	Etcdserverpb__AuthUserDeleteRequest d = ETCDSERVERPB__AUTH_USER_DELETE_REQUEST__INIT;
	d.name = "root";
	a->op_case = BOLLARD__AUTH_REQUEST__OP_USER_DELETE;
	a->user_delete = &d;
	rev = arev(&f);
	CHECK_INT(run(&f, r, "root", rev, NULL, NULL), BOLLARD_EINVALID_AUTH_MGMT);
	Etcdserverpb__AuthUserRevokeRoleRequest rr = ETCDSERVERPB__AUTH_USER_REVOKE_ROLE_REQUEST__INIT;
	rr.name = "root";
	rr.role = "root";
	a->op_case = BOLLARD__AUTH_REQUEST__OP_USER_REVOKE_ROLE;
	a->user_revoke_role = &rr;
	CHECK_INT(run(&f, r, "root", rev, NULL, NULL), BOLLARD_EINVALID_AUTH_MGMT);
	rr.name = "alice";
	CHECK_INT(run(&f, r, "root", rev, NULL, NULL), BOLLARD_EROLE_NOT_GRANTED);
	CHECK_INT(role_add(&f, "extra", "root", rev), 0);
	CHECK_INT(grant_role(&f, "alice", "extra", "root", arev(&f)), 0);
	rr.role = "extra";
	CHECK_INT(run(&f, r, "root", arev(&f), NULL, NULL), 0);
	CHECK_INT(run(&f, r, "root", arev(&f), NULL, NULL), BOLLARD_EROLE_NOT_GRANTED);
	/* deleting a role takes it from its users */
	CHECK_INT(grant_role(&f, "alice", "extra", "root", arev(&f)), 0);
	Etcdserverpb__AuthRoleDeleteRequest del = ETCDSERVERPB__AUTH_ROLE_DELETE_REQUEST__INIT;
	del.role = "extra";
	a->op_case = BOLLARD__AUTH_REQUEST__OP_ROLE_DELETE;
	a->role_delete = &del;
	CHECK_INT(run(&f, r, "root", arev(&f), NULL, NULL), 0);
	{
		MDB_txn *t = fx_rtxn(&f);
		Authpb__User *u;
		REQUIRE(auth_user_load(&f.m, t, "alice", NULL, &u) == 0);
		CHECK_INT(u->n_roles, 1);
		CHECK(strcmp(u->roles[0], "app") == 0);
		authpb__user__free_unpacked(u, NULL);
		mdb_txn_abort(t);
	}
	rev = arev(&f);
	Etcdserverpb__AuthRoleDeleteRequest rd = ETCDSERVERPB__AUTH_ROLE_DELETE_REQUEST__INIT;
	rd.role = "root";
	a->op_case = BOLLARD__AUTH_REQUEST__OP_ROLE_DELETE;
	a->role_delete = &rd;
	CHECK_INT(run(&f, r, "root", rev, NULL, NULL), BOLLARD_EINVALID_AUTH_MGMT);

	/* disabling moves the revision and says so */
	CHECK_INT(simple(&f, BOLLARD__AUTH_REQUEST__OP_DISABLE, "root", rev), 0);
	CHECK(seen.last.disabled);
	CHECK_INT(arev(&f), rev + 1);
	fx_close(&f);
}

TEST(kv_permissions)
{
	struct fx f;
	setup(&f);
	uint64_t rev = arev(&f);
	CHECK_INT(run(&f, kv(&f, op_put(&f, "/app/a", "1")), "alice", rev, NULL, NULL), 0);
	CHECK_INT(run(&f, kv(&f, op_put(&f, "/other", "1")), "alice", rev, NULL, NULL),
	          BOLLARD_EPERMISSION_DENIED);
	CHECK_INT(run(&f, kv(&f, op_put(&f, "ro", "1")), "alice", rev, NULL, NULL),
	          BOLLARD_EPERMISSION_DENIED);
	CHECK_INT(run(&f, kv(&f, op_put(&f, "/other", "1")), NULL, 0, NULL, NULL),
	          BOLLARD_EUSER_EMPTY);
	CHECK_INT(run(&f, kv(&f, op_put(&f, "/other", "1")), "root", rev, NULL, NULL), 0);
	CHECK_INT(run(&f, kv(&f, op_put(&f, "/other", "2")), NULL, AUTH_REV_SYSTEM, NULL, NULL), 0);
	/* deletes: the whole range must be covered */
	CHECK_INT(run(&f, kv(&f, op_del(&f, "/app/", B("/app0"))), "alice", rev, NULL, NULL), 0);
	CHECK_INT(run(&f, kv(&f, op_del(&f, "/app/", B("/apq"))), "alice", rev, NULL, NULL),
	          BOLLARD_EPERMISSION_DENIED);
	CHECK_INT(run(&f, kv(&f, op_del(&f, "/app/", FROM_KEY)), "alice", rev, NULL, NULL),
	          BOLLARD_EPERMISSION_DENIED);

	/* a txn with one forbidden op is refused whole: nothing is written */
	int64_t before = fx_rev(&f);
	Etcdserverpb__RequestOp *ops[] = {op_put(&f, "/app/t1", "x"), op_put(&f, "/other", "x"),
	                                  NULL};
	Etcdserverpb__TxnRequest *t = mk_txn(&f, NULL, ops, NULL);
	CHECK_INT(run(&f, kv(&f, op_txn(&f, t)), "alice", rev, NULL, NULL),
	          BOLLARD_EPERMISSION_DENIED);
	CHECK_INT(fx_rev(&f), before);
	CHECK(fx_get(&f, "/app/t1", 0) == NULL);
	/* a forbidden compare, a forbidden op in the failure branch, a nested txn */
	Etcdserverpb__Compare *cmps[] = {cmp_val(&f, "/other", B(""), ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL, "x"), NULL};
	Etcdserverpb__RequestOp *okops[] = {op_put(&f, "/app/t2", "x"), NULL};
	t = mk_txn(&f, cmps, okops, NULL);
	CHECK_INT(run(&f, kv(&f, op_txn(&f, t)), "alice", rev, NULL, NULL),
	          BOLLARD_EPERMISSION_DENIED);
	Etcdserverpb__RequestOp *bad[] = {op_range(&f, "/other", B("")), NULL};
	t = mk_txn(&f, NULL, okops, bad);
	CHECK_INT(run(&f, kv(&f, op_txn(&f, t)), "alice", rev, NULL, NULL),
	          BOLLARD_EPERMISSION_DENIED);
	Etcdserverpb__RequestOp *inner_ops[] = {op_put(&f, "/other", "n"), NULL};
	Etcdserverpb__RequestOp *nested[] = {op_txn(&f, mk_txn(&f, NULL, inner_ops, NULL)), NULL};
	t = mk_txn(&f, NULL, nested, NULL);
	CHECK_INT(run(&f, kv(&f, op_txn(&f, t)), "alice", rev, NULL, NULL),
	          BOLLARD_EPERMISSION_DENIED);
	t = mk_txn(&f, NULL, okops, NULL);
	CHECK_INT(run(&f, kv(&f, op_txn(&f, t)), "alice", rev, NULL, NULL), 0);

	/* a token resolved before the auth store changed is stale */
	CHECK_INT(role_add(&f, "other", "root", rev), 0);
	CHECK_INT(run(&f, kv(&f, op_put(&f, "/app/b", "1")), "alice", rev, NULL, NULL),
	          BOLLARD_EAUTH_OLD_REVISION);
	CHECK_INT(run(&f, kv(&f, op_put(&f, "/app/b", "1")), "alice", arev(&f), NULL, NULL), 0);
	fx_close(&f);
}

TEST(range_checks)
{
	struct fx f;
	setup(&f);
	uint64_t rev = arev(&f);
	const struct auth_info ai = {"alice", rev}, none = {NULL, 0};
	MDB_txn *t = fx_rtxn(&f);
	CHECK_INT(auth_check_range(&f.m, t, &ai, B("/app/x"), B("")), 0);
	CHECK_INT(auth_check_range(&f.m, t, &ai, B("/app/"), B("/app0")), 0);
	CHECK_INT(auth_check_range(&f.m, t, &ai, B("/app/a"), B("/app/b")), 0);
	CHECK_INT(auth_check_range(&f.m, t, &ai, B("/ap"), B("/app0")), BOLLARD_EPERMISSION_DENIED);
	CHECK_INT(auth_check_range(&f.m, t, &ai, B("ro"), B("")), 0);
	CHECK_INT(auth_check_range(&f.m, t, &ai, B("ro"), B("rp")), BOLLARD_EPERMISSION_DENIED);
	/* etcd 3.4: an empty key compares above every key, so "" --prefix is
	 * never covered for a non-root user */
	CHECK_INT(auth_check_range(&f.m, t, &ai, B(""), FROM_KEY), BOLLARD_EPERMISSION_DENIED);
	CHECK_INT(auth_check_range(&f.m, t, &none, B("/app/x"), B("")), BOLLARD_EUSER_EMPTY);
	const struct auth_info root = {"root", rev};
	CHECK_INT(auth_check_range(&f.m, t, &root, B(""), FROM_KEY), 0);
	CHECK_INT(auth_check_admin(&f.m, t, &ai), BOLLARD_EPERMISSION_DENIED);
	CHECK_INT(auth_check_admin(&f.m, t, &root), 0);
	CHECK_INT(auth_check_admin(&f.m, t, &none), BOLLARD_EUSER_EMPTY);
	mdb_txn_abort(t);
	fx_close(&f);
}

TEST(login_and_passwords)
{
	struct fx f;
	setup(&f);
	Bollard__AuthRequest *a;
	Bollard__Request *r = areq(&f, &a);
	Etcdserverpb__AuthenticateRequest q = ETCDSERVERPB__AUTHENTICATE_REQUEST__INIT;
	ProtobufCMessage *out;
	q.name = "alice";
	a->op_case = BOLLARD__AUTH_REQUEST__OP_AUTHENTICATE;
	a->authenticate = &q;
	a->simple_token = "abcdefghijklmnop";
	CHECK_INT(run(&f, r, NULL, 0, &etcdserverpb__authenticate_response__descriptor, &out), 0);
	REQUIRE(out != NULL);
	CHECK(strcmp(((Etcdserverpb__AuthenticateResponse *)out)->token, "abcdefghijklmnop.77") == 0);
	CHECK(strcmp(seen.token_user, "alice") == 0);
	protobuf_c_message_free_unpacked(out, NULL);
	q.name = "ghost";
	CHECK_INT(run(&f, r, NULL, 0, NULL, NULL), BOLLARD_EAUTH_FAILED);

	/* the stored hash verifies; bcrypt "$2a$" hashes (etcd's) verify too */
	MDB_txn *t = fx_rtxn(&f);
	Authpb__User *u;
	REQUIRE(auth_user_load(&f.m, t, "alice", NULL, &u) == 0);
	CHECK(u->password.len > 7 && memcmp(u->password.data, "$2b$10$", 7) == 0);
	CHECK_INT(auth_verify_password(u->password.data, u->password.len, "apw", 3), 0);
	CHECK_INT(auth_verify_password(u->password.data, u->password.len, "apx", 3),
	          BOLLARD_EAUTH_FAILED);
	authpb__user__free_unpacked(u, NULL);
	mdb_txn_abort(t);
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data cd;
	memset(&cd, 0, sizeof(cd));
	REQUIRE(crypt_gensalt_rn("$2a$", 10, NULL, 0, salt, sizeof(salt)) != NULL);
	const char *h = crypt_r("secret", salt, &cd);
	REQUIRE(h != NULL && strncmp(h, "$2a$10$", 7) == 0);
	CHECK_INT(auth_verify_password((const uint8_t *)h, strlen(h), "secret", 6), 0);
	CHECK_INT(auth_verify_password((const uint8_t *)h, strlen(h), "secreT", 6),
	          BOLLARD_EAUTH_FAILED);
	CHECK_INT(auth_verify_password((const uint8_t *)"", 0, "", 0), BOLLARD_EAUTH_FAILED);
	CHECK_INT(auth_verify_password((const uint8_t *)"ab", 2, "x", 1), BOLLARD_EAUTH_FAILED);
	fx_close(&f);
}

TEST(grant_permission_order)
{
	struct fx f;
	setup(&f);
	uint64_t rev = arev(&f);
	CHECK_INT(grant_perm(&f, "app", AUTHPB__PERMISSION__TYPE__READ, "a", B(""), "root", rev), 0);
	CHECK_INT(grant_perm(&f, "app", AUTHPB__PERMISSION__TYPE__WRITE, "a", B("b"), "root", rev), 0);
	/* the same key and range: updated in place */
	CHECK_INT(grant_perm(&f, "app", AUTHPB__PERMISSION__TYPE__READWRITE, "a", B(""), "root", rev),
	          0);
	Bollard__AuthRequest *a;
	Bollard__Request *r = areq(&f, &a);
	Etcdserverpb__AuthRoleGetRequest g = ETCDSERVERPB__AUTH_ROLE_GET_REQUEST__INIT;
	ProtobufCMessage *out;
	g.role = "app";
	a->op_case = BOLLARD__AUTH_REQUEST__OP_ROLE_GET;
	a->role_get = &g;
	/* alice has role app: she may read it */
	CHECK_INT(run(&f, r, "alice", arev(&f), &etcdserverpb__auth_role_get_response__descriptor,
	              &out),
	          0);
	REQUIRE(out != NULL);
	Etcdserverpb__AuthRoleGetResponse *rg = (void *)out;
	REQUIRE(rg->n_perm == 4);
	CHECK_BYTES(rg->perm[0]->key, "/app/");
	CHECK_BYTES(rg->perm[1]->key, "a");
	CHECK_INT(rg->perm[1]->permtype, AUTHPB__PERMISSION__TYPE__READWRITE);
	CHECK_BYTES(rg->perm[2]->key, "a");
	CHECK_BYTES(rg->perm[2]->range_end, "b");
	CHECK_BYTES(rg->perm[3]->key, "ro");
	protobuf_c_message_free_unpacked(out, NULL);

	Etcdserverpb__AuthRoleRevokePermissionRequest rp =
		ETCDSERVERPB__AUTH_ROLE_REVOKE_PERMISSION_REQUEST__INIT;
	rp.role = "app";
	rp.key = B("zz");
	a->op_case = BOLLARD__AUTH_REQUEST__OP_ROLE_REVOKE_PERMISSION;
	a->role_revoke_permission = &rp;
	CHECK_INT(run(&f, r, "root", arev(&f), NULL, NULL), BOLLARD_EPERMISSION_NOT_GRANTED);
	rp.key = B("ro");
	CHECK_INT(run(&f, r, "root", arev(&f), NULL, NULL), 0);
	fx_close(&f);
}

TEST(token_table)
{
	struct auth_tokens t;
	char *u;
	auth_tokens_init(&t, 300000);
	CHECK_INT(auth_tokens_add(&t, "tok.1", "alice", 1000), 0);
	CHECK_INT(auth_tokens_add(&t, "tok.2", "bob", 1000), 0);
	CHECK(auth_tokens_lookup(&t, "tok.1", 200000, &u));
	CHECK(u && strcmp(u, "alice") == 0);
	free(u);
	/* each use extends the token's life */
	CHECK(auth_tokens_lookup(&t, "tok.1", 450000, &u));
	free(u);
	CHECK(!auth_tokens_lookup(&t, "tok.2", 450000, &u)); /* expired at 301000 */
	CHECK(!auth_tokens_lookup(&t, "nope", 450000, &u));
	auth_tokens_drop_user(&t, "alice");
	CHECK(!auth_tokens_lookup(&t, "tok.1", 450001, &u));
	CHECK_INT(auth_tokens_add(&t, "tok.3", "carol", 500000), 0);
	auth_tokens_clear(&t);
	CHECK_INT(t.n, 0);
	auth_tokens_free(&t);
}

UNIT_MAIN(TEST_ENTRY(enable_needs_root), TEST_ENTRY(admin_rules), TEST_ENTRY(kv_permissions),
          TEST_ENTRY(range_checks), TEST_ENTRY(login_and_passwords),
          TEST_ENTRY(grant_permission_order), TEST_ENTRY(token_table))
