/* test_etcdsnap.c - the LMDB store -> etcd 3.4 bbolt export (issue 8), read back
 * through the bbolt reader: every bucket, every revision, the exact bytes etcd
 * would hold; and etcdctl snapshot status agreeing on revision, keys and size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alarm.h"
#include "core/bbolt.h"
#include "core/bbolt_etcd.h"
#include "core/be64.h"
#include "core/etcdsnap.h"
#include "core/leasedb.h"
#include "fixture.h"
#include "unit.h"

static const uint8_t *get(struct bbolt_bucket *b, const void *key, size_t klen, size_t *vlen)
{
	struct bbolt_cursor c;
	struct bbolt_kv kv;
	int rc;
	bbolt_cursor_init(&c, b);
	for (rc = bbolt_cursor_first(&c, &kv); rc == 1; rc = bbolt_cursor_next(&c, &kv))
		if (kv.klen == klen && memcmp(kv.key, key, klen) == 0) {
			*vlen = kv.vlen;
			return kv.val;
		}
	REQUIRE_INT(rc, 0);
	return NULL;
}

static size_t count(struct bbolt_bucket *b)
{
	struct bbolt_cursor c;
	struct bbolt_kv kv;
	size_t n = 0;
	int rc;
	bbolt_cursor_init(&c, b);
	for (rc = bbolt_cursor_first(&c, &kv); rc == 1; rc = bbolt_cursor_next(&c, &kv))
		n++;
	REQUIRE_INT(rc, 0);
	return n;
}

/* The data set: puts, a txn of two puts, an overwrite, a delete, a compaction,
 * more writes, a lease with a key, an alarm, an applied index. */
static void load(struct fx *f, int64_t *compact)
{
	REQUIRE_INT(fx_put(f, "a", "1", NULL), 0);                     /* 2 */
	REQUIRE_INT(fx_put(f, "b", "2", NULL), 0);                     /* 3 */
	Etcdserverpb__RequestOp *ops[] = {op_put(f, "c", "3"), op_put(f, "d", "4"), NULL};
	REQUIRE_INT(fx_txn(f, mk_txn(f, NULL, ops, NULL), NULL), 0);   /* 4.0, 4.1 */
	REQUIRE_INT(fx_put(f, "a", "1b", NULL), 0);                    /* 5 */
	REQUIRE_INT(fx_del(f, "b", (ProtobufCBinaryData){0, NULL}, false, NULL), 0); /* 6 't' */
	REQUIRE_INT(fx_compact(f, 5), 0);
	*compact = 5;
	REQUIRE_INT(fx_put(f, "a", "1c", NULL), 0);                    /* 7 */

	MDB_txn *txn = fx_wtxn(f);
	Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	struct lease_rec r;
	bool added;
	g.id = 0x1234;
	g.ttl = 600;
	REQUIRE_INT(leasedb_grant(&f->m, txn, &g, 2, &r), 0);
	REQUIRE_INT(leasedb_checkpoint(&f->m, txn, 0x1234, 300), 0);
	REQUIRE_INT(alarm_activate(&f->m, txn, 7, ETCDSERVERPB__ALARM_TYPE__NOSPACE, &added), 0);
	REQUIRE_INT(mvcc_set_applied_index(&f->m, txn, 42, 3), 0);
	fx_commit(txn);
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = B("leased");
	p.value = B("L");
	p.lease = 0x1234;
	REQUIRE_INT(fx_put_req(f, &p, NULL), 0);                       /* 8 */
}

static const char *const peers1[] = {"http://10.0.0.1:2380"};
static const char *const clients1[] = {"http://10.0.0.1:2379", "http://x<&>\"\\:1"};
static const char *const peers2[] = {"http://10.0.0.2:2380", "http://10.0.0.2:2381"};
static const struct etcdsnap_member members[] = {
	{0xa1b2c3d4e5f60718ull, "n1", peers1, 1, clients1, 2},
	{0x0fedcba9ull, NULL, peers2, 2, NULL, 0},
};

static void export_mem(struct fx *f, struct bbolt_writer *w, struct etcdsnap_stats *st)
{
	struct etcdsnap_export_opts o = {members, 2};
	MDB_txn *txn = fx_rtxn(f);
	REQUIRE_INT(bbolt_writer_init_mem(w, 0), 0);
	REQUIRE_INT(etcdsnap_export(&f->m, txn, &o, w, st), 0);
	mdb_txn_abort(txn);
}

TEST(export_layout)
{
	struct fx f;
	struct bbolt_writer w;
	struct etcdsnap_stats st;
	struct bbolt_db db;
	struct bbolt_stats bs;
	struct bbolt_bucket root, b;
	int64_t compact;
	size_t vl;
	const uint8_t *v;

	fx_open(&f);
	load(&f, &compact);
	export_mem(&f, &w, &st);
	CHECK_INT(st.current_rev, 8);
	CHECK_INT(st.compact_rev, 5);
	CHECK_INT(st.consistent_index, 42);
	CHECK_INT(st.leases, 1);
	REQUIRE_INT(bbolt_open_mem(&db, w.buf, w.buf_len, BBOLT_TRAILER_NONE), 0);
	REQUIRE_INT(bbolt_check(&db, &bs), 0);
	bbolt_root_bucket(&db, &root);

	/* The top-level buckets, in order. */
	static const char *const names[] = {"alarm",  "auth",  "authRoles", "authUsers",
	                                    "cluster", "key",  "lease",     "members",
	                                    "members_removed", "meta"};
	struct bbolt_cursor c;
	struct bbolt_kv kv;
	size_t i = 0;
	int rc;
	bbolt_cursor_init(&c, &root);
	for (rc = bbolt_cursor_first(&c, &kv); rc == 1; rc = bbolt_cursor_next(&c, &kv), i++) {
		REQUIRE(i < 10);
		CHECK(kv.is_bucket);
		CHECK(kv.klen == strlen(names[i]) && memcmp(kv.key, names[i], kv.klen) == 0);
	}
	CHECK_INT(rc, 0);
	CHECK_INT(i, 10);

	/* key: exactly rev_db, in etcd's encoding. */
	REQUIRE_INT(bbolt_bucket_open(&root, "key", 3, &b), 0);
	CHECK_INT(count(&b), fx_rev_entries(&f));
	CHECK_INT(st.revisions, fx_rev_entries(&f));
	MDB_txn *txn = fx_rtxn(&f);
	MDB_cursor *mc;
	MDB_val k, d;
	size_t tombs = 0;
	REQUIRE_INT(mdb_cursor_open(txn, f.m.rev_db, &mc), 0);
	bbolt_cursor_init(&c, &b);
	rc = bbolt_cursor_first(&c, &kv);
	for (int op = MDB_FIRST; mdb_cursor_get(mc, &k, &d, op) == 0; op = MDB_NEXT) {
		REQUIRE_INT(rc, 1);
		int64_t mr, sr;
		bool tomb;
		REQUIRE_INT(etcd_revkey_get(kv.key, kv.klen, &mr, &sr, &tomb), 0);
		CHECK_INT(mr, (int64_t)be64_get(k.mv_data));
		CHECK_INT(sr, (int64_t)be64_get((uint8_t *)k.mv_data + 8));
		CHECK_INT(tomb, k.mv_size == 17);
		if (!tomb) {
			CHECK(kv.vlen == d.mv_size && memcmp(kv.val, d.mv_data, d.mv_size) == 0);
		} else {
			/* etcd's tombstone: KeyValue{Key: key}, nothing else */
			Mvccpb__KeyValue *t = mvccpb__key_value__unpack(NULL, kv.vlen, kv.val);
			REQUIRE(t != NULL);
			CHECK_BYTES(t->key, "b");
			CHECK_INT(t->mod_revision, 0);
			CHECK_INT(t->create_revision, 0);
			CHECK_INT(kv.vlen, 3);
			mvccpb__key_value__free_unpacked(t, NULL);
			tombs++;
		}
		rc = bbolt_cursor_next(&c, &kv);
	}
	CHECK_INT(rc, 0);
	CHECK_INT(tombs, 1);
	CHECK_INT(st.tombstones, 1);
	mdb_cursor_close(mc);
	mdb_txn_abort(txn);

	/* meta */
	REQUIRE_INT(bbolt_bucket_open(&root, "meta", 4, &b), 0);
	CHECK_INT(count(&b), 3);
	v = get(&b, "consistent_index", 16, &vl);
	REQUIRE(v != NULL && vl == 8);
	CHECK_INT(be64_get(v), 42);
	static const char *const crk[] = {"finishedCompactRev", "scheduledCompactRev"};
	for (i = 0; i < 2; i++) {
		v = get(&b, crk[i], strlen(crk[i]), &vl);
		REQUIRE(v != NULL);
		int64_t mr, sr;
		bool tomb;
		REQUIRE_INT(etcd_revkey_get(v, vl, &mr, &sr, &tomb), 0);
		CHECK_INT(mr, compact);
		CHECK_INT(sr, 0);
		CHECK(!tomb);
	}

	/* lease: leasepb.Lease{ID: 0x1234, TTL: 600, RemainingTTL: 300} */
	REQUIRE_INT(bbolt_bucket_open(&root, "lease", 5, &b), 0);
	CHECK_INT(count(&b), 1);
	uint8_t lid[8];
	be64_put(lid, 0x1234);
	v = get(&b, lid, 8, &vl);
	static const uint8_t lease_pb[] = {0x08, 0xb4, 0x24, 0x10, 0xd8, 0x04, 0x18, 0xac, 0x02};
	CHECK(v != NULL && vl == sizeof(lease_pb) && memcmp(v, lease_pb, vl) == 0);

	/* members: hex id -> encoding/json of membership.Member */
	REQUIRE_INT(bbolt_bucket_open(&root, "members", 7, &b), 0);
	CHECK_INT(count(&b), 2);
	const char *j1 = "{\"id\":11651590505119483672,\"peerURLs\":[\"http://10.0.0.1:2380\"],"
	                 "\"name\":\"n1\",\"clientURLs\":[\"http://10.0.0.1:2379\","
	                 "\"http://x\\u003c\\u0026\\u003e\\\"\\\\:1\"]}";
	const char *j2 = "{\"id\":267242409,\"peerURLs\":[\"http://10.0.0.2:2380\","
	                 "\"http://10.0.0.2:2381\"]}";
	v = get(&b, "a1b2c3d4e5f60718", 16, &vl);
	CHECK(v != NULL && vl == strlen(j1) && memcmp(v, j1, vl) == 0);
	v = get(&b, "fedcba9", 7, &vl);
	CHECK(v != NULL && vl == strlen(j2) && memcmp(v, j2, vl) == 0);
	REQUIRE_INT(bbolt_bucket_open(&root, "members_removed", 15, &b), 0);
	CHECK_INT(count(&b), 0);

	/* auth as a fresh etcd initialises it; cluster version; the alarm */
	REQUIRE_INT(bbolt_bucket_open(&root, "auth", 4, &b), 0);
	CHECK_INT(count(&b), 1);
	v = get(&b, "authRevision", 12, &vl);
	REQUIRE(v != NULL && vl == 8);
	CHECK_INT(be64_get(v), 1);
	REQUIRE_INT(bbolt_bucket_open(&root, "authUsers", 9, &b), 0);
	CHECK_INT(count(&b), 0);
	REQUIRE_INT(bbolt_bucket_open(&root, "authRoles", 9, &b), 0);
	CHECK_INT(count(&b), 0);
	REQUIRE_INT(bbolt_bucket_open(&root, "cluster", 7, &b), 0);
	v = get(&b, "clusterVersion", 14, &vl);
	CHECK(v != NULL && vl == 5 && memcmp(v, "3.4.0", 5) == 0);
	REQUIRE_INT(bbolt_bucket_open(&root, "alarm", 5, &b), 0);
	static const uint8_t alarm_pb[] = {0x08, 0x07, 0x10, 0x01}; /* memberID 7, NOSPACE */
	v = get(&b, alarm_pb, sizeof(alarm_pb), &vl);
	CHECK(v != NULL && vl == 0);
	CHECK_INT(count(&b), 1);
	bbolt_close(&db);

	/* With the trailer: what etcdctl snapshot status reads. */
	REQUIRE_INT(bbolt_writer_append_trailer(&w), 0);
	REQUIRE_INT(bbolt_open_mem(&db, w.buf, w.buf_len, BBOLT_TRAILER_REQUIRE), 0);
	CHECK(db.has_trailer);
	bbolt_close(&db);
	if (access("/usr/bin/etcdctl", X_OK) == 0) {
		char path[PATH_MAX + 16], cmd[2 * PATH_MAX], out[512] = {0};
		snprintf(path, sizeof(path), "%s/x.snap", f.dir);
		FILE *fp = fopen(path, "wb");
		REQUIRE(fp != NULL);
		REQUIRE(fwrite(w.buf, 1, w.buf_len, fp) == w.buf_len);
		fclose(fp);
		snprintf(cmd, sizeof(cmd),
		         "ETCDCTL_API=3 /usr/bin/etcdctl snapshot status %s -w json 2>&1", path);
		fp = popen(cmd, "r");
		REQUIRE(fp != NULL);
		size_t n = fread(out, 1, sizeof(out) - 1, fp);
		CHECK_INT(pclose(fp), 0);
		out[n] = 0;
		long long hash, rev, keys, size;
		REQUIRE_INT(sscanf(out, "{\"hash\":%lld,\"revision\":%lld,\"totalKey\":%lld,"
		                        "\"totalSize\":%lld}", &hash, &rev, &keys, &size), 4);
		CHECK_INT(rev, 8);
		/* revisions + alarm + authRevision + clusterVersion + lease + 2 members + 3 meta */
		CHECK_INT(keys, (long long)st.revisions + 9);
		CHECK_INT(size, (long long)w.buf_len - 32);
	}
	bbolt_writer_free(&w);
	fx_close(&f);
}

/* The same store exports to the same bytes; an empty store exports a valid file. */
TEST(export_deterministic_and_empty)
{
	struct fx f;
	struct bbolt_writer w1, w2;
	struct etcdsnap_stats st;
	struct bbolt_db db;
	int64_t compact;

	fx_open(&f);
	export_mem(&f, &w1, &st);
	CHECK_INT(st.revisions, 0);
	CHECK_INT(st.current_rev, 1);
	REQUIRE_INT(bbolt_open_mem(&db, w1.buf, w1.buf_len, BBOLT_TRAILER_NONE), 0);
	CHECK_INT(bbolt_check(&db, NULL), 0);
	bbolt_close(&db);
	bbolt_writer_free(&w1);

	load(&f, &compact);
	export_mem(&f, &w1, &st);
	export_mem(&f, &w2, &st);
	CHECK(w1.buf_len == w2.buf_len && memcmp(w1.buf, w2.buf, w1.buf_len) == 0);
	bbolt_writer_free(&w1);
	bbolt_writer_free(&w2);
	fx_close(&f);
}

UNIT_MAIN(TEST_ENTRY(export_layout), TEST_ENTRY(export_deterministic_and_empty))
