/* leasedb.c - lease records in LMDB and the apply-time lease operations
 * (see leasedb.h). */
#include "core/leasedb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/be64.h"
#include "core/errors.h"
#include "core/mix64.h"
#include "core/lease.h"
#include "raftcmd.pb-c.h"

static const uint8_t META_SEQ[] = "lease/seq";


static int rec_decode(const MDB_val *d, struct lease_rec *out)
{
	Bollard__LeaseRecord *r = bollard__lease_record__unpack(NULL, d->mv_size, d->mv_data);
	if (r == NULL)
		return BOLLARD_EINTERNAL;
	*out = (struct lease_rec){r->id, r->ttl, r->remaining_ttl};
	bollard__lease_record__free_unpacked(r, NULL);
	return 0;
}

static int rec_put(const struct mvcc *m, MDB_txn *txn, const struct lease_rec *r)
{
	Bollard__LeaseRecord pb = BOLLARD__LEASE_RECORD__INIT;
	uint8_t id[8], buf[40];
	pb.id = r->id;
	pb.ttl = r->ttl;
	pb.remaining_ttl = r->remaining_ttl;
	size_t n = bollard__lease_record__get_packed_size(&pb);
	if (n > sizeof(buf))
		return BOLLARD_EINTERNAL;
	bollard__lease_record__pack(&pb, buf);
	be64_put(id, (uint64_t)r->id);
	MDB_val k = {8, id}, d = {n, buf};
	return bollard_err_from_lmdb(mdb_put(txn, m->lease_db, &k, &d, 0));
}

int leasedb_get(const struct mvcc *m, MDB_txn *txn, int64_t id, struct lease_rec *out)
{
	uint8_t buf[8];
	be64_put(buf, (uint64_t)id);
	MDB_val k = {8, buf}, d;
	int rc = mdb_get(txn, m->lease_db, &k, &d);
	if (rc == MDB_NOTFOUND)
		return BOLLARD_ELEASE_NOT_FOUND;
	if (rc != 0)
		return bollard_err_from_lmdb(rc);
	struct lease_rec tmp;
	return rec_decode(&d, out ? out : &tmp);
}

/* The next server-assigned ID: a scrambled counter (IDs look like etcd's,
 * large and unordered), positive, nonzero and unused. */
static int next_id(const struct mvcc *m, MDB_txn *txn, int64_t *out)
{
	MDB_val k = {sizeof(META_SEQ) - 1, (void *)META_SEQ}, d;
	uint64_t seq = 0;
	uint8_t buf[8];
	int rc = mdb_get(txn, m->meta_db, &k, &d);
	if (rc == 0 && d.mv_size == 8)
		seq = be64_get(d.mv_data);
	else if (rc != 0 && rc != MDB_NOTFOUND)
		return bollard_err_from_lmdb(rc);
	for (;;) {
		int64_t id = (int64_t)(mix64(++seq) & INT64_MAX);
		if (id == 0)
			continue;
		rc = leasedb_get(m, txn, id, NULL);
		if (rc == 0)
			continue;
		if (rc != BOLLARD_ELEASE_NOT_FOUND)
			return rc;
		*out = id;
		break;
	}
	be64_put(buf, seq);
	d = (MDB_val){8, buf};
	return bollard_err_from_lmdb(mdb_put(txn, m->meta_db, &k, &d, 0));
}

int leasedb_grant(const struct mvcc *m, MDB_txn *txn, const Etcdserverpb__LeaseGrantRequest *req,
                  int64_t min_ttl, struct lease_rec *out)
{
	struct lease_rec r = {.id = req->id};
	int rc = lease_clamp_ttl(req->ttl, min_ttl, &r.ttl);
	if (rc != 0)
		return rc;
	if (r.id < 0)
		return BOLLARD_ELEASE_NOT_FOUND; /* never a valid lease ID */
	if (r.id == 0)
		rc = next_id(m, txn, &r.id);
	else if ((rc = leasedb_get(m, txn, r.id, NULL)) == 0)
		rc = BOLLARD_ELEASE_EXIST;
	else if (rc == BOLLARD_ELEASE_NOT_FOUND)
		rc = 0;
	if (rc == 0)
		rc = rec_put(m, txn, &r);
	if (rc == 0)
		*out = r;
	return rc;
}

int leasedb_keys(const struct mvcc *m, MDB_txn *txn, struct arena *a, int64_t id,
                 ProtobufCBinaryData **keys, size_t *n)
{
	uint8_t buf[8];
	MDB_val k = {8, buf}, d;
	MDB_cursor *c;
	size_t cap = 0;
	ProtobufCBinaryData *v = NULL;
	int rc;

	*keys = NULL;
	*n = 0;
	be64_put(buf, (uint64_t)id);
	if ((rc = mdb_cursor_open(txn, m->lease_key_db, &c)) != 0)
		return bollard_err_from_lmdb(rc);
	rc = mdb_cursor_get(c, &k, &d, MDB_SET);
	while (rc == 0) {
		if (*n == cap) {
			size_t nc = cap ? cap * 2 : 8;
			ProtobufCBinaryData *nv = arena_alloc(a, nc * sizeof(*nv));
			if (nv == NULL) {
				rc = -ENOMEM;
				break;
			}
			if (*n)
				memcpy(nv, v, *n * sizeof(*nv));
			v = nv;
			cap = nc;
		}
		void *p = arena_memdup(a, d.mv_data, d.mv_size);
		if (p == NULL && d.mv_size > 0) {
			rc = -ENOMEM;
			break;
		}
		v[(*n)++] = (ProtobufCBinaryData){d.mv_size, p};
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT_DUP);
	}
	mdb_cursor_close(c);
	if (rc != MDB_NOTFOUND)
		return bollard_err_from_lmdb(rc);
	*keys = v;
	return 0;
}

int leasedb_revoke(const struct mvcc *m, MDB_txn *txn, struct arena *a, int64_t id,
                   int64_t *rev)
{
	ProtobufCBinaryData *keys;
	size_t n;
	int rc = leasedb_get(m, txn, id, NULL);
	if (rc == 0)
		rc = leasedb_keys(m, txn, a, id, &keys, &n);
	if (rc != 0)
		return rc;
	if (n > 0) {
		/* One txn of single-key deletes: one revision for all of them
		 * (deleting also drops each key from the lease_key index). */
		Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
		Etcdserverpb__TxnResponse tr;
		Etcdserverpb__RequestOp **ops = arena_alloc(a, n * sizeof(*ops));
		Etcdserverpb__RequestOp *opv = arena_alloc(a, n * sizeof(*opv));
		Etcdserverpb__DeleteRangeRequest *dv = arena_alloc(a, n * sizeof(*dv));
		if (ops == NULL || opv == NULL || dv == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			dv[i] = (Etcdserverpb__DeleteRangeRequest)ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
			dv[i].key = keys[i];
			opv[i] = (Etcdserverpb__RequestOp)ETCDSERVERPB__REQUEST_OP__INIT;
			opv[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
			opv[i].request_delete_range = &dv[i];
			ops[i] = &opv[i];
		}
		t.success = ops;
		t.n_success = n;
		if ((rc = mvcc_txn(m, txn, a, &t, &tr)) != 0)
			return rc;
	}
	uint8_t buf[8];
	be64_put(buf, (uint64_t)id);
	MDB_val k = {8, buf};
	rc = mdb_del(txn, m->lease_db, &k, NULL);
	if (rc == 0) {
		rc = mdb_del(txn, m->lease_key_db, &k, NULL); /* nothing left, normally */
		if (rc == MDB_NOTFOUND)
			rc = 0;
	}
	if (rc != 0)
		return bollard_err_from_lmdb(rc);
	*rev = mvcc_current_rev(m, txn);
	return 0;
}

int leasedb_checkpoint(const struct mvcc *m, MDB_txn *txn, int64_t id, int64_t remaining_ttl)
{
	struct lease_rec r;
	int rc = leasedb_get(m, txn, id, &r);
	if (rc == BOLLARD_ELEASE_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	r.remaining_ttl = remaining_ttl;
	return rec_put(m, txn, &r);
}

int leasedb_foreach(const struct mvcc *m, MDB_txn *txn,
                    int (*fn)(void *ud, const struct lease_rec *r), void *ud)
{
	MDB_cursor *c;
	MDB_val k, d;
	int rc = mdb_cursor_open(txn, m->lease_db, &c);
	if (rc != 0)
		return bollard_err_from_lmdb(rc);
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		struct lease_rec r;
		if ((rc = rec_decode(&d, &r)) != 0 || (rc = fn(ud, &r)) != 0)
			break;
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : bollard_err_from_lmdb(rc);
}

int leasedb_put(const struct mvcc *m, MDB_txn *txn, const struct lease_rec *r)
{
	return rec_put(m, txn, r);
}
