/* fuzz_auth.c - libFuzzer target for request decoding and the auth checks.
 *
 * The input is a raft entry payload (a packed bollard.Batch: any client
 * request with any identity and auth revision, Auth requests included). It is
 * decoded and applied with apply_batch_ex to a store holding users, roles and
 * key-range permissions with auth enabled, inside a write transaction that is
 * aborted afterwards, so every input starts from the same state; each Range
 * of a txn is also checked with auth_check_range and auth_check_admin runs
 * for the request's identity. Any input must end in results or errors, never
 * a crash, a sanitizer report or a hang.
 *
 *   tools/fuzz.sh auth 60      a clang build fuzzing for 60 s
 * The default build runs fuzz-auth-replay (seeds below and their mutations). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>

#include "core/apply.h"
#include "core/auth.h"
#include "core/errors.h"
#include "fuzz.h"

static MDB_env *env;
static struct mvcc mv;
static char dir[64];

static void cleanup(void)
{
	char p[128];
	if (env)
		mdb_env_close(env);
	snprintf(p, sizeof(p), "%s/data.mdb", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/lock.mdb", dir);
	unlink(p);
	rmdir(dir);
}

/* ---- building requests (seeds and the initial state) ---- */

struct b {
	Bollard__Batch batch;
	Bollard__Request *r[16];
	Bollard__Request rq[16];
	Bollard__AuthRequest a[16];
	Etcdserverpb__RequestOp ops[16], *opp[16];
	Etcdserverpb__PutRequest put[16];
	Etcdserverpb__RangeRequest range[16];
	Etcdserverpb__DeleteRangeRequest del[16];
	Etcdserverpb__Compare cmp[4], *cmpp[4];
	Etcdserverpb__TxnRequest txn[2];
	Authpb__Permission perm[4];
	union {
		Etcdserverpb__AuthUserAddRequest ua;
		Etcdserverpb__AuthUserGrantRoleRequest gr;
		Etcdserverpb__AuthRoleAddRequest ra;
		Etcdserverpb__AuthRoleGrantPermissionRequest gp;
		Etcdserverpb__AuthEnableRequest en;
		Etcdserverpb__AuthenticateRequest au;
		Etcdserverpb__AuthUserGetRequest ug;
		Etcdserverpb__AuthRoleGetRequest rg;
		Etcdserverpb__AuthUserDeleteRequest ud;
		Etcdserverpb__LeaseRevokeRequest lr;
	} m[16];
	int nperm;
};

static ProtobufCBinaryData bin(const char *s)
{
	return (ProtobufCBinaryData){strlen(s), (uint8_t *)s};
}

static Bollard__Request *req(struct b *b, const char *user, uint64_t rev)
{
	size_t i = b->batch.n_requests++;
	Bollard__Request *r = &b->rq[i];
	bollard__request__init(r);
	r->id = i + 1;
	r->auth_user = (char *)user;
	r->auth_revision = rev;
	b->r[i] = r;
	b->batch.requests = b->r;
	return r;
}

static Bollard__AuthRequest *areq(struct b *b, const char *user, uint64_t rev)
{
	Bollard__Request *r = req(b, user, rev);
	size_t i = b->batch.n_requests - 1;
	bollard__auth_request__init(&b->a[i]);
	r->op_case = BOLLARD__REQUEST__OP_AUTH;
	r->auth = &b->a[i];
	return &b->a[i];
}

static void user_add(struct b *b, const char *name, const char *as, uint64_t rev)
{
	Bollard__AuthRequest *a = areq(b, as, rev);
	size_t i = b->batch.n_requests - 1;
	etcdserverpb__auth_user_add_request__init(&b->m[i].ua);
	b->m[i].ua.name = (char *)name;
	a->op_case = BOLLARD__AUTH_REQUEST__OP_USER_ADD;
	a->user_add = &b->m[i].ua;
	/* a bcrypt hash of "pw" (cost 4: a fuzz login never verifies it anyway) */
	a->hashed_password = bin("$2b$04$abcdefghijklmnopqrstuu8bZ1F0mjdX3jWrXyD5BGnvzq9qLNWWa");
}

static void grant_role(struct b *b, const char *user, const char *role)
{
	Bollard__AuthRequest *a = areq(b, NULL, AUTH_REV_SYSTEM);
	size_t i = b->batch.n_requests - 1;
	etcdserverpb__auth_user_grant_role_request__init(&b->m[i].gr);
	b->m[i].gr.user = (char *)user;
	b->m[i].gr.role = (char *)role;
	a->op_case = BOLLARD__AUTH_REQUEST__OP_USER_GRANT_ROLE;
	a->user_grant_role = &b->m[i].gr;
}

static void role_add(struct b *b, const char *role)
{
	Bollard__AuthRequest *a = areq(b, NULL, AUTH_REV_SYSTEM);
	size_t i = b->batch.n_requests - 1;
	etcdserverpb__auth_role_add_request__init(&b->m[i].ra);
	b->m[i].ra.name = (char *)role;
	a->op_case = BOLLARD__AUTH_REQUEST__OP_ROLE_ADD;
	a->role_add = &b->m[i].ra;
}

static void grant_perm(struct b *b, const char *role, int type, const char *key, const char *end)
{
	Bollard__AuthRequest *a = areq(b, NULL, AUTH_REV_SYSTEM);
	size_t i = b->batch.n_requests - 1;
	Authpb__Permission *p = &b->perm[b->nperm++];
	authpb__permission__init(p);
	p->permtype = type;
	p->key = bin(key);
	p->range_end = (ProtobufCBinaryData){end ? strlen(end) + (end[0] == 0) : 0,
	                                     (uint8_t *)end};
	etcdserverpb__auth_role_grant_permission_request__init(&b->m[i].gp);
	b->m[i].gp.name = (char *)role;
	b->m[i].gp.perm = p;
	a->op_case = BOLLARD__AUTH_REQUEST__OP_ROLE_GRANT_PERMISSION;
	a->role_grant_permission = &b->m[i].gp;
}

static void enable(struct b *b, const char *as, uint64_t rev)
{
	Bollard__AuthRequest *a = areq(b, as, rev);
	size_t i = b->batch.n_requests - 1;
	etcdserverpb__auth_enable_request__init(&b->m[i].en);
	a->op_case = BOLLARD__AUTH_REQUEST__OP_ENABLE;
	a->enable = &b->m[i].en;
}

static Etcdserverpb__RequestOp *op_put(struct b *b, int i, const char *k)
{
	etcdserverpb__put_request__init(&b->put[i]);
	b->put[i].key = bin(k);
	b->put[i].value = bin("v");
	b->put[i].prev_kv = i & 1;
	etcdserverpb__request_op__init(&b->ops[i]);
	b->ops[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	b->ops[i].request_put = &b->put[i];
	return b->opp[i] = &b->ops[i];
}

static Etcdserverpb__RequestOp *op_range(struct b *b, int i, const char *k, const char *end)
{
	etcdserverpb__range_request__init(&b->range[i]);
	b->range[i].key = bin(k);
	b->range[i].range_end = (ProtobufCBinaryData){end[0] ? strlen(end) : 1, (uint8_t *)end};
	etcdserverpb__request_op__init(&b->ops[i]);
	b->ops[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	b->ops[i].request_range = &b->range[i];
	return b->opp[i] = &b->ops[i];
}

static Etcdserverpb__RequestOp *op_del(struct b *b, int i, const char *k, const char *end)
{
	etcdserverpb__delete_range_request__init(&b->del[i]);
	b->del[i].key = bin(k);
	b->del[i].range_end = bin(end);
	b->del[i].prev_kv = 1;
	etcdserverpb__request_op__init(&b->ops[i]);
	b->ops[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
	b->ops[i].request_delete_range = &b->del[i];
	return b->opp[i] = &b->ops[i];
}

static int pack(struct b *b, uint8_t **out, size_t *len)
{
	*len = bollard__batch__get_packed_size(&b->batch);
	if ((*out = malloc(*len ? *len : 1)) == NULL)
		return -1;
	bollard__batch__pack(&b->batch, *out);
	return 0;
}

static void batch_init(struct b *b)
{
	memset(b, 0, sizeof(*b));
	bollard__batch__init(&b->batch);
}

/* root and alice (role app: readwrite /app/ prefix, read key cfg, write
 * [w1, w5), read from z), auth enabled. */
static void setup_state(struct b *b)
{
	batch_init(b);
	user_add(b, "root", NULL, AUTH_REV_SYSTEM);
	grant_role(b, "root", "root");
	user_add(b, "alice", NULL, AUTH_REV_SYSTEM);
	role_add(b, "app");
	grant_perm(b, "app", AUTHPB__PERMISSION__TYPE__READWRITE, "/app/", "/app0");
	grant_perm(b, "app", AUTHPB__PERMISSION__TYPE__READ, "cfg", NULL);
	grant_perm(b, "app", AUTHPB__PERMISSION__TYPE__WRITE, "w1", "w5");
	grant_perm(b, "app", AUTHPB__PERMISSION__TYPE__READ, "z", "");
	grant_role(b, "alice", "app");
	enable(b, NULL, AUTH_REV_SYSTEM);
}

static int open_store(void)
{
	struct b *b = malloc(sizeof(*b));
	struct apply_result res[16];
	MDB_txn *txn;
	snprintf(dir, sizeof(dir), "/tmp/bollard-fuzz-auth-XXXXXX");
	if (b == NULL || mkdtemp(dir) == NULL || mdb_env_create(&env) ||
	    mdb_env_set_maxdbs(env, MVCC_MAX_DBS) || mdb_env_set_mapsize(env, 64u << 20) ||
	    mdb_env_open(env, dir, MDB_NOSYNC | MDB_WRITEMAP, 0600) || mvcc_open(&mv, env))
		abort();
	atexit(cleanup);
	setup_state(b);
	if (mdb_txn_begin(env, NULL, 0, &txn) ||
	    apply_batch(&mv, txn, &(struct apply_header){0}, &b->batch, res))
		abort();
	for (size_t i = 0; i < b->batch.n_requests; i++) {
		if (res[i].err != 0)
			abort(); /* the seeded state must be what the seeds expect */
		free(res[i].resp);
	}
	if (mdb_txn_commit(txn))
		abort();
	free(b);
	return 0;
}

/* ---- the target ---- */

static void check_ranges(MDB_txn *txn, const struct auth_info *ai,
                         const Etcdserverpb__TxnRequest *t, int depth)
{
	if (t == NULL || depth > 4)
		return;
	for (int br = 0; br < 2; br++) {
		size_t n = br ? t->n_failure : t->n_success;
		Etcdserverpb__RequestOp **ops = br ? t->failure : t->success;
		for (size_t i = 0; i < n; i++) {
			if (ops[i] == NULL)
				continue;
			if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE &&
			    ops[i]->request_range)
				(void)auth_check_range(&mv, txn, ai, ops[i]->request_range->key,
				                       ops[i]->request_range->range_end);
			if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN)
				check_ranges(txn, ai, ops[i]->request_txn, depth + 1);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int opened;
	Bollard__Batch *batch;
	struct apply_result *res;
	struct apply_opts o = {.min_lease_ttl = 2, .index = 42};
	MDB_txn *txn;

	if (!opened)
		opened = !open_store();
	batch = bollard__batch__unpack(NULL, size, data);
	if (batch == NULL)
		return 0;
	res = calloc(batch->n_requests ? batch->n_requests : 1, sizeof(*res));
	if (res == NULL || mdb_txn_begin(env, NULL, 0, &txn) != 0)
		abort();
	for (size_t i = 0; i < batch->n_requests; i++) {
		const Bollard__Request *r = batch->requests[i];
		const struct auth_info ai = {r->auth_user, r->auth_revision};
		(void)auth_check_admin(&mv, txn, &ai);
		if (r->op_case == BOLLARD__REQUEST__OP_TXN)
			check_ranges(txn, &ai, r->txn, 0);
	}
	if (apply_batch_ex(&mv, txn, &(struct apply_header){0}, batch, res, &o) == 0)
		for (size_t i = 0; i < batch->n_requests; i++) {
			if (getenv("FUZZ_AUTH_VERBOSE")) /* what each request came to */
				fprintf(stderr, "request %zu (op %d, user %s): %s\n", i,
				        (int)batch->requests[i]->op_case, batch->requests[i]->auth_user,
				        bollard_strerror(res[i].err));
			free(res[i].resp);
		}
	mdb_txn_abort(txn);
	free(res);
	bollard__batch__free_unpacked(batch, NULL);
	return 0;
}

/* ---- seeds and mutations for replay.c ---- */

const int FUZZ_NSEEDS = 4;
const int FUZZ_MUTATIONS = 1500; /* each apply costs LMDB child txns: ~2.5 ms under ASan */

int fuzz_seed(int which, uint8_t **out, size_t *len)
{
	struct b *b = malloc(sizeof(*b));
	int rc;
	if (b == NULL)
		return -1;
	batch_init(b);
	switch (which) {
	case 0: /* KV requests of a limited user, allowed and not */ {
		Bollard__Request *r = req(b, "alice", 1000);
		r->op_case = BOLLARD__REQUEST__OP_PUT;
		r->put = op_put(b, 0, "/app/a")->request_put;
		r = req(b, "alice", 1000);
		r->op_case = BOLLARD__REQUEST__OP_DELETE_RANGE;
		r->delete_range = op_del(b, 1, "w1", "w4")->request_delete_range;
		r = req(b, "alice", 1000);
		etcdserverpb__txn_request__init(&b->txn[1]);
		b->txn[1].success = &b->opp[4];
		b->txn[1].n_success = 1;
		op_put(b, 4, "/secret");
		etcdserverpb__txn_request__init(&b->txn[0]);
		etcdserverpb__compare__init(&b->cmp[0]);
		b->cmp[0].key = bin("cfg");
		b->cmp[0].target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
		b->cmpp[0] = &b->cmp[0];
		b->txn[0].compare = b->cmpp;
		b->txn[0].n_compare = 1;
		op_put(b, 2, "/app/b");
		op_range(b, 3, "z", "");
		etcdserverpb__request_op__init(&b->ops[5]);
		b->ops[5].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
		b->ops[5].request_txn = &b->txn[1];
		b->opp[5] = &b->ops[5];
		b->txn[0].success = &b->opp[2];
		b->txn[0].n_success = 2;
		b->txn[0].failure = &b->opp[5];
		b->txn[0].n_failure = 1;
		r->op_case = BOLLARD__REQUEST__OP_TXN;
		r->txn = &b->txn[0];
		r = req(b, "alice", 1000);
		etcdserverpb__lease_revoke_request__init(&b->m[3].lr);
		b->m[3].lr.id = 7;
		r->op_case = BOLLARD__REQUEST__OP_LEASE_REVOKE;
		r->lease_revoke = &b->m[3].lr;
		break;
	}
	case 1: /* the auth store set up from scratch by root */
		setup_state(b);
		for (size_t i = 0; i < b->batch.n_requests; i++) {
			b->rq[i].auth_user = "root";
			b->rq[i].auth_revision = 1000;
		}
		break;
	case 2: { /* logins and reads of users and roles */
		Bollard__AuthRequest *a = areq(b, NULL, 0);
		etcdserverpb__authenticate_request__init(&b->m[0].au);
		b->m[0].au.name = "alice";
		a->op_case = BOLLARD__AUTH_REQUEST__OP_AUTHENTICATE;
		a->authenticate = &b->m[0].au;
		a->simple_token = "abcdefghijklmnop";
		a = areq(b, "alice", 1000);
		etcdserverpb__auth_user_get_request__init(&b->m[1].ug);
		b->m[1].ug.name = "alice";
		a->op_case = BOLLARD__AUTH_REQUEST__OP_USER_GET;
		a->user_get = &b->m[1].ug;
		a = areq(b, "alice", 1000);
		etcdserverpb__auth_role_get_request__init(&b->m[2].rg);
		b->m[2].rg.role = "app";
		a->op_case = BOLLARD__AUTH_REQUEST__OP_ROLE_GET;
		a->role_get = &b->m[2].rg;
		a = areq(b, "root", 1000);
		etcdserverpb__auth_user_delete_request__init(&b->m[3].ud);
		b->m[3].ud.name = "root";
		a->op_case = BOLLARD__AUTH_REQUEST__OP_USER_DELETE;
		a->user_delete = &b->m[3].ud;
		break;
	}
	default: { /* no credentials, a stale revision, an unknown user */
		Bollard__Request *r = req(b, NULL, 0);
		r->op_case = BOLLARD__REQUEST__OP_PUT;
		r->put = op_put(b, 0, "/app/a")->request_put;
		r = req(b, "alice", 1);
		r->op_case = BOLLARD__REQUEST__OP_PUT;
		r->put = op_put(b, 1, "/app/a")->request_put;
		r = req(b, "mallory", 1000);
		r->op_case = BOLLARD__REQUEST__OP_DELETE_RANGE;
		r->delete_range = op_del(b, 2, "", "\0")->request_delete_range;
		user_add(b, "eve", "alice", 1000);
		break;
	}
	}
	rc = pack(b, out, len);
	free(b);
	return rc;
}

/* Flipped bits, overwritten bytes and truncations: most
 * mutants still decode as protobuf, with other fields, lengths and tags. */
size_t fuzz_mutate(int s, int i, uint8_t *buf, size_t len, uint64_t *rng)
{
	uint64_t x = *rng;
	(void)s;
	if (len == 0)
		return 0;
	for (int f = 0; f < 1 + i % 4; f++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t off = (size_t)(x % len);
		if (i % 3 == 0)
			buf[off] = (uint8_t)(x >> 40);
		else
			buf[off] ^= (uint8_t)(1u << ((x >> 24) % 8));
	}
	*rng = x;
	if (i % 11 == 0)
		return (size_t)((x >> 16) % len);
	return len;
}
