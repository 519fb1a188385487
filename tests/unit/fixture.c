/* fixture.c - test environment and request builders (see fixture.h). */
#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "unit.h"

#define LMDB_CHECK(call)                                                                 \
	do {                                                                              \
		int rc_ = (call);                                                             \
		if (rc_ != 0) {                                                               \
			unit_fail(__FILE__, __LINE__, "%s: %s", #call, mdb_strerror(rc_));       \
			unit_abort_test();                                                        \
		}                                                                             \
	} while (0)

static void env_open(struct fx *f)
{
	LMDB_CHECK(mdb_env_create(&f->env));
	LMDB_CHECK(mdb_env_set_maxdbs(f->env, MVCC_MAX_DBS));
	LMDB_CHECK(mdb_env_set_mapsize(f->env, (size_t)256 << 20));
	/* As a node opens it (store/node/backend.c): no nested transactions. */
	LMDB_CHECK(mdb_env_open(f->env, f->dir, MDB_NOSYNC | MDB_WRITEMAP, 0600));
	int rc = mvcc_open(&f->m, f->env);
	if (rc != 0) {
		unit_fail(__FILE__, __LINE__, "mvcc_open: %s", bollard_strerror(rc));
		unit_abort_test();
	}
}

void fx_open(struct fx *f)
{
	snprintf(f->dir, sizeof(f->dir), "%s/bollard-unit-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(f->dir) == NULL) {
		unit_fail(__FILE__, __LINE__, "mkdtemp failed");
		unit_abort_test();
	}
	arena_init(&f->a, 65536);
	env_open(f);
}

void fx_reopen(struct fx *f)
{
	mdb_env_close(f->env);
	env_open(f);
}

void fx_close(struct fx *f)
{
	char path[PATH_MAX + 16];
	mdb_env_close(f->env);
	snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", f->dir);
	unlink(path);
	rmdir(f->dir);
	arena_free(&f->a);
}

MDB_txn *fx_wtxn(struct fx *f)
{
	MDB_txn *t;
	LMDB_CHECK(mdb_txn_begin(f->env, NULL, 0, &t));
	return t;
}

MDB_txn *fx_rtxn(struct fx *f)
{
	MDB_txn *t;
	LMDB_CHECK(mdb_txn_begin(f->env, NULL, MDB_RDONLY, &t));
	return t;
}

void fx_commit(MDB_txn *txn)
{
	LMDB_CHECK(mdb_txn_commit(txn));
}

static int finish(MDB_txn *t, int rc)
{
	if (rc == 0)
		fx_commit(t);
	else
		mdb_txn_abort(t);
	return rc;
}

int fx_put_req(struct fx *f, const Etcdserverpb__PutRequest *req, Etcdserverpb__PutResponse *resp)
{
	Etcdserverpb__PutResponse tmp;
	MDB_txn *t = fx_wtxn(f);
	return finish(t, mvcc_put(&f->m, t, &f->a, req, resp ? resp : &tmp));
}

int fx_put(struct fx *f, const char *key, const char *val, Etcdserverpb__PutResponse *resp)
{
	Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
	req.key = B(key);
	req.value = B(val);
	return fx_put_req(f, &req, resp);
}

int fx_del(struct fx *f, const char *key, ProtobufCBinaryData end, bool prev_kv,
           Etcdserverpb__DeleteRangeResponse *resp)
{
	Etcdserverpb__DeleteRangeRequest req = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	Etcdserverpb__DeleteRangeResponse tmp;
	req.key = B(key);
	req.range_end = end;
	req.prev_kv = prev_kv;
	MDB_txn *t = fx_wtxn(f);
	return finish(t, mvcc_delete_range(&f->m, t, &f->a, &req, resp ? resp : &tmp));
}

int fx_txn(struct fx *f, const Etcdserverpb__TxnRequest *req, Etcdserverpb__TxnResponse *resp)
{
	Etcdserverpb__TxnResponse tmp;
	MDB_txn *t = fx_wtxn(f);
	return finish(t, mvcc_txn(&f->m, t, &f->a, req, resp ? resp : &tmp));
}

int fx_compact(struct fx *f, int64_t rev)
{
	MDB_txn *t = fx_wtxn(f);
	return finish(t, mvcc_compact(&f->m, t, rev));
}

static void copy_bin(struct arena *a, ProtobufCBinaryData *b)
{
	if (b->len)
		b->data = arena_memdup(a, b->data, b->len);
}

int fx_range(struct fx *f, const Etcdserverpb__RangeRequest *req,
             Etcdserverpb__RangeResponse *resp)
{
	MDB_txn *t = fx_rtxn(f);
	int rc = mvcc_range(&f->m, t, &f->a, req, resp);
	if (rc == 0)
		for (size_t i = 0; i < resp->n_kvs; i++) {
			copy_bin(&f->a, &resp->kvs[i]->key);
			copy_bin(&f->a, &resp->kvs[i]->value);
		}
	mdb_txn_abort(t);
	return rc;
}

Etcdserverpb__RangeRequest fx_rq(const char *key, ProtobufCBinaryData end)
{
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	r.key = B(key);
	r.range_end = end;
	return r;
}

Mvccpb__KeyValue *fx_get(struct fx *f, const char *key, int64_t rev)
{
	Etcdserverpb__RangeRequest r = fx_rq(key, B(""));
	Etcdserverpb__RangeResponse resp;
	r.revision = rev;
	if (fx_range(f, &r, &resp) != 0 || resp.n_kvs == 0)
		return NULL;
	return resp.kvs[0];
}

int64_t fx_rev(struct fx *f)
{
	MDB_txn *t = fx_rtxn(f);
	int64_t r = mvcc_current_rev(&f->m, t);
	mdb_txn_abort(t);
	return r;
}

int64_t fx_compacted(struct fx *f)
{
	MDB_txn *t = fx_rtxn(f);
	int64_t r = mvcc_compact_rev(&f->m, t);
	mdb_txn_abort(t);
	return r;
}

static size_t entries(struct fx *f, MDB_dbi dbi)
{
	MDB_stat st;
	MDB_txn *t = fx_rtxn(f);
	LMDB_CHECK(mdb_stat(t, dbi, &st));
	mdb_txn_abort(t);
	return st.ms_entries;
}

size_t fx_rev_entries(struct fx *f)
{
	return entries(f, f->m.rev_db);
}

size_t fx_key_entries(struct fx *f)
{
	return entries(f, f->m.key_db);
}

static void *fx_alloc(struct fx *f, size_t n)
{
	void *p = arena_calloc(&f->a, 1, n);
	if (p == NULL)
		unit_abort_test();
	return p;
}

Etcdserverpb__RequestOp *op_put(struct fx *f, const char *key, const char *val)
{
	Etcdserverpb__RequestOp *op = fx_alloc(f, sizeof(*op));
	Etcdserverpb__PutRequest *p = fx_alloc(f, sizeof(*p));
	*op = (Etcdserverpb__RequestOp)ETCDSERVERPB__REQUEST_OP__INIT;
	*p = (Etcdserverpb__PutRequest)ETCDSERVERPB__PUT_REQUEST__INIT;
	p->key = B(key);
	p->value = B(val);
	op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	op->request_put = p;
	return op;
}

Etcdserverpb__RequestOp *op_del(struct fx *f, const char *key, ProtobufCBinaryData end)
{
	Etcdserverpb__RequestOp *op = fx_alloc(f, sizeof(*op));
	Etcdserverpb__DeleteRangeRequest *d = fx_alloc(f, sizeof(*d));
	*op = (Etcdserverpb__RequestOp)ETCDSERVERPB__REQUEST_OP__INIT;
	*d = (Etcdserverpb__DeleteRangeRequest)ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	d->key = B(key);
	d->range_end = end;
	op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
	op->request_delete_range = d;
	return op;
}

Etcdserverpb__RequestOp *op_range(struct fx *f, const char *key, ProtobufCBinaryData end)
{
	Etcdserverpb__RequestOp *op = fx_alloc(f, sizeof(*op));
	Etcdserverpb__RangeRequest *r = fx_alloc(f, sizeof(*r));
	*op = (Etcdserverpb__RequestOp)ETCDSERVERPB__REQUEST_OP__INIT;
	*r = fx_rq(key, end);
	op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	op->request_range = r;
	return op;
}

Etcdserverpb__RequestOp *op_txn(struct fx *f, Etcdserverpb__TxnRequest *t)
{
	Etcdserverpb__RequestOp *op = fx_alloc(f, sizeof(*op));
	*op = (Etcdserverpb__RequestOp)ETCDSERVERPB__REQUEST_OP__INIT;
	op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
	op->request_txn = t;
	return op;
}

static Etcdserverpb__Compare *cmp_new(struct fx *f, const char *key, ProtobufCBinaryData end,
                                      Etcdserverpb__Compare__CompareResult result)
{
	Etcdserverpb__Compare *c = fx_alloc(f, sizeof(*c));
	*c = (Etcdserverpb__Compare)ETCDSERVERPB__COMPARE__INIT;
	c->key = B(key);
	c->range_end = end;
	c->result = result;
	return c;
}

Etcdserverpb__Compare *cmp_int(struct fx *f, const char *key, ProtobufCBinaryData end,
                               Etcdserverpb__Compare__CompareTarget target,
                               Etcdserverpb__Compare__CompareResult result, int64_t v)
{
	Etcdserverpb__Compare *c = cmp_new(f, key, end, result);
	c->target = target;
	switch (target) {
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
		c->version = v;
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
		c->create_revision = v;
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
		c->mod_revision = v;
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
		c->lease = v;
		break;
	default:
		break;
	}
	return c;
}

Etcdserverpb__Compare *cmp_val(struct fx *f, const char *key, ProtobufCBinaryData end,
                               Etcdserverpb__Compare__CompareResult result, const char *v)
{
	Etcdserverpb__Compare *c = cmp_new(f, key, end, result);
	c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
	c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
	c->value = B(v);
	return c;
}

static size_t count_null(void **v)
{
	size_t n = 0;
	while (v != NULL && v[n] != NULL)
		n++;
	return n;
}

/* A copy of n pointers in the arena (NULL for none). */
static void *arr_dup(struct fx *f, void *v, size_t n)
{
	return n ? arena_memdup(&f->a, v, n * sizeof(void *)) : NULL;
}

Etcdserverpb__TxnRequest *mk_txn(struct fx *f, Etcdserverpb__Compare **cmps,
                                 Etcdserverpb__RequestOp **success,
                                 Etcdserverpb__RequestOp **failure)
{
	Etcdserverpb__TxnRequest *t = fx_alloc(f, sizeof(*t));
	*t = (Etcdserverpb__TxnRequest)ETCDSERVERPB__TXN_REQUEST__INIT;
	t->n_compare = count_null((void **)cmps);
	t->compare = arr_dup(f, cmps, t->n_compare);
	t->n_success = count_null((void **)success);
	t->success = arr_dup(f, success, t->n_success);
	t->n_failure = count_null((void **)failure);
	t->failure = arr_dup(f, failure, t->n_failure);
	return t;
}

/* Every entry of one database of f, as one byte string. */
static void db_dump(struct fx *f, MDB_dbi dbi, uint8_t **out, size_t *len)
{
	MDB_txn *t = fx_rtxn(f);
	MDB_cursor *c;
	MDB_val k, v;
	size_t cap = 4096, n = 0;
	uint8_t *p = malloc(cap);
	REQUIRE(p != NULL && mdb_cursor_open(t, dbi, &c) == 0);
	for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		size_t need = 2 * sizeof(size_t) + k.mv_size + v.mv_size;
		while (cap - n < need)
			REQUIRE((p = realloc(p, cap *= 2)) != NULL);
		memcpy(p + n, &k.mv_size, sizeof(size_t));
		memcpy(p + n + sizeof(size_t), k.mv_data, k.mv_size);
		n += sizeof(size_t) + k.mv_size;
		memcpy(p + n, &v.mv_size, sizeof(size_t));
		memcpy(p + n + sizeof(size_t), v.mv_data, v.mv_size);
		n += sizeof(size_t) + v.mv_size;
	}
	mdb_cursor_close(c);
	mdb_txn_abort(t);
	*out = p;
	*len = n;
}

bool fx_same_databases(struct fx *x, struct fx *y)
{
	const char *names[] = {"rev", "key", "live", "meta", "lease", "lease_key"};
	MDB_dbi dx[] = {x->m.rev_db,  x->m.key_db,   x->m.live_db,
	                x->m.meta_db, x->m.lease_db, x->m.lease_key_db};
	MDB_dbi dy[] = {y->m.rev_db,  y->m.key_db,   y->m.live_db,
	                y->m.meta_db, y->m.lease_db, y->m.lease_key_db};
	bool same = true;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		uint8_t *px, *py;
		size_t nx, ny;
		db_dump(x, dx[i], &px, &nx);
		db_dump(y, dy[i], &py, &ny);
		if (nx != ny || memcmp(px, py, nx) != 0) {
			unit_fail(__FILE__, __LINE__, "database %s differs (%zu vs %zu bytes)",
			          names[i], nx, ny);
			same = false;
		}
		free(px);
		free(py);
	}
	return same;
}
