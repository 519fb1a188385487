/* test_etcdimport.c - etcd 3.4 bbolt snapshot -> LMDB store (issue 8, import):
 * a Bollard store exported with etcdsnap_export and imported again is the same
 * store, byte for byte (revisions, key index, tombstones, leases and their keys,
 * current and compacted revision), with applied index 0; a real etcd 3.4
 * snapshot (bbolt_mksnap.py) imports with etcd's revisions; malformed entries
 * are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bbolt.h"
#include "core/bbolt_etcd.h"
#include "core/be64.h"
#include "core/auth.h"
#include "core/etcdimport.h"
#include "core/etcdsnap.h"
#include "core/leasedb.h"
#include "fixture.h"
#include "unit.h"

static void load(struct fx *f)
{
	REQUIRE_INT(fx_put(f, "a", "1", NULL), 0);                     /* 2 */
	REQUIRE_INT(fx_put(f, "b", "2", NULL), 0);                     /* 3 */
	Etcdserverpb__RequestOp *ops[] = {op_put(f, "c", "3"), op_put(f, "d", "4"), NULL};
	REQUIRE_INT(fx_txn(f, mk_txn(f, NULL, ops, NULL), NULL), 0);   /* 4.0, 4.1 */
	REQUIRE_INT(fx_put(f, "a", "1b", NULL), 0);                    /* 5 */
	REQUIRE_INT(fx_del(f, "b", (ProtobufCBinaryData){0, NULL}, false, NULL), 0); /* 6 't' */
	REQUIRE_INT(fx_compact(f, 5), 0);
	REQUIRE_INT(fx_put(f, "a", "1c", NULL), 0);                    /* 7 */
	MDB_txn *txn = fx_wtxn(f);
	Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	struct lease_rec r;
	g.id = 0x1234;
	g.ttl = 600;
	REQUIRE_INT(leasedb_grant(&f->m, txn, &g, 2, &r), 0);
	REQUIRE_INT(leasedb_checkpoint(&f->m, txn, 0x1234, 300), 0);
	g.id = 0x99;
	g.ttl = 60;
	REQUIRE_INT(leasedb_grant(&f->m, txn, &g, 2, &r), 0);
	REQUIRE_INT(mvcc_set_applied_index(&f->m, txn, 42, 3), 0);
	fx_commit(txn);
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = B("leased");
	p.value = B("L");
	p.lease = 0x1234;
	REQUIRE_INT(fx_put_req(f, &p, NULL), 0);                       /* 8 */
	p.key = B("moved");
	REQUIRE_INT(fx_put_req(f, &p, NULL), 0);                       /* 9 */
	p.lease = 0x99;
	REQUIRE_INT(fx_put_req(f, &p, NULL), 0);                       /* 10: moved to 0x99 */
	p.key = B("gone");
	REQUIRE_INT(fx_put_req(f, &p, NULL), 0);                       /* 11 */
	REQUIRE_INT(fx_del(f, "gone", (ProtobufCBinaryData){0, NULL}, false, NULL), 0); /* 12 */
}

/* Every pair of a named database, as text, for comparing two stores. */
static char *dump_db(MDB_env *env, const char *name)
{
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *c;
	MDB_val k, d;
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	REQUIRE_INT(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	REQUIRE_INT(mdb_dbi_open(txn, name, 0, &dbi), 0);
	REQUIRE_INT(mdb_cursor_open(txn, dbi, &c), 0);
	for (int rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (strcmp(name, "meta") == 0 && k.mv_size == 7 && !memcmp(k.mv_data, "applied", 7))
			continue;
		if (strcmp(name, "meta") == 0 && k.mv_size == 9 && !memcmp(k.mv_data, "lease/seq", 9))
			continue;
		for (size_t i = 0; i < k.mv_size; i++)
			fprintf(out, "%02x", ((uint8_t *)k.mv_data)[i]);
		fputc('=', out);
		for (size_t i = 0; i < d.mv_size; i++)
			fprintf(out, "%02x", ((uint8_t *)d.mv_data)[i]);
		fputc('\n', out);
	}
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	fclose(out);
	return buf;
}

static void export_mem(struct fx *f, struct bbolt_writer *w)
{
	REQUIRE_INT(bbolt_writer_init_mem(w, 0), 0);
	MDB_txn *txn = fx_rtxn(f);
	REQUIRE_INT(etcdsnap_export(&f->m, txn, NULL, w, NULL), 0);
	mdb_txn_abort(txn);
	REQUIRE_INT(bbolt_writer_append_trailer(w), 0);
}

static int import_buf(struct fx *g, const void *buf, size_t len, struct etcdimport_stats *st,
                      char *err, size_t errlen)
{
	struct bbolt_db db;
	int rc = bbolt_open_mem(&db, buf, len, BBOLT_TRAILER_AUTO);
	if (rc != 0) {
		snprintf(err, errlen, "%s", db.err);
		return rc;
	}
	if ((rc = bbolt_check(&db, NULL)) != 0) {
		snprintf(err, errlen, "%s", db.err);
		bbolt_close(&db);
		return rc;
	}
	MDB_txn *txn = fx_wtxn(g);
	rc = etcdimport_run(&db, &g->m, txn, st, err, errlen);
	if (rc == 0)
		fx_commit(txn);
	else
		mdb_txn_abort(txn);
	bbolt_close(&db);
	return rc;
}

TEST(round_trip_is_identical)
{
	struct fx f, g;
	struct bbolt_writer w;
	struct etcdimport_stats st;
	char err[256];

	fx_open(&f);
	load(&f);
	export_mem(&f, &w);
	fx_open(&g);
	REQUIRE_INT(import_buf(&g, w.buf, w.buf_len, &st, err, sizeof(err)), 0);
	CHECK_INT(st.current_rev, 12);
	CHECK_INT(st.compact_rev, 5);
	CHECK_INT(st.leases, 2);
	CHECK_INT(st.tombstones, 2);
	static const char *const dbs[] = {"rev", "key", "live", "meta", "lease", "lease_key"};
	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		char *a = dump_db(f.env, dbs[i]), *b = dump_db(g.env, dbs[i]);
		if (strcmp(a, b) != 0)
			unit_fail(__FILE__, __LINE__, "db %s differs:\n%s---\n%s", dbs[i], a, b);
		free(a);
		free(b);
	}
	MDB_txn *txn = fx_rtxn(&g);
	CHECK_INT(mvcc_applied_index(&g.m, txn), 0);
	CHECK_INT(mvcc_current_rev(&g.m, txn), 12);
	CHECK_INT(mvcc_compact_rev(&g.m, txn), 5);
	struct lease_rec r;
	REQUIRE_INT(leasedb_get(&g.m, txn, 0x1234, &r), 0);
	CHECK_INT(r.ttl, 600);
	CHECK_INT(r.remaining_ttl, 300);
	ProtobufCBinaryData *keys;
	size_t n;
	REQUIRE_INT(leasedb_keys(&g.m, txn, &g.a, 0x1234, &keys, &n), 0);
	REQUIRE_INT(n, 1);
	CHECK_BYTES(keys[0], "leased");
	REQUIRE_INT(leasedb_keys(&g.m, txn, &g.a, 0x99, &keys, &n), 0);
	REQUIRE_INT(n, 1);
	CHECK_BYTES(keys[0], "moved");
	mdb_txn_abort(txn);
	/* reads through mvcc, and the store goes on from there */
	Mvccpb__KeyValue *kv = fx_get(&g, "a", 6);
	REQUIRE(kv != NULL);
	CHECK_BYTES(kv->value, "1b");
	CHECK_INT(kv->create_revision, 2);
	CHECK_INT(kv->mod_revision, 5);
	CHECK_INT(kv->version, 2);
	CHECK(fx_get(&g, "b", 0) == NULL);
	REQUIRE_INT(fx_put(&g, "z", "new", NULL), 0);
	CHECK_INT(fx_rev(&g), 13);
	REQUIRE_INT(fx_put(&g, "a", "1d", NULL), 0); /* 14: a's generation goes on */
	kv = fx_get(&g, "a", 0);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->create_revision, 2);
	CHECK_INT(kv->version, 4);
	bbolt_writer_free(&w);
	fx_close(&f);
	fx_close(&g);
}

TEST(empty_store)
{
	struct fx f, g;
	struct bbolt_writer w;
	struct etcdimport_stats st;
	char err[256];
	fx_open(&f);
	export_mem(&f, &w);
	fx_open(&g);
	REQUIRE_INT(import_buf(&g, w.buf, w.buf_len, &st, err, sizeof(err)), 0);
	CHECK_INT(st.current_rev, 1);
	CHECK_INT(st.revisions, 0);
	CHECK_INT(fx_rev(&g), 1);
	bbolt_writer_free(&w);
	fx_close(&f);
	fx_close(&g);
}

/* A file with one bucket "key" holding the given pair. */
static void one_pair(struct bbolt_writer *w, const void *k, size_t kl, const void *v, size_t vl)
{
	REQUIRE_INT(bbolt_writer_init_mem(w, 0), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(w, "key", 3), 0);
	REQUIRE_INT(bbolt_writer_put(w, k, kl, v, vl), 0);
	REQUIRE_INT(bbolt_writer_end_bucket(w, 0), 0);
	REQUIRE_INT(bbolt_writer_finish(w, 1), 0);
}

TEST(malformed_refused)
{
	struct fx g;
	struct bbolt_writer w;
	struct etcdimport_stats st;
	char err[256];
	uint8_t rk[ETCD_REVKEY_MARKED_LEN];
	Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
	uint8_t val[64];

	fx_open(&g);
	/* not a revision key */
	one_pair(&w, "hello", 5, "x", 1);
	CHECK(import_buf(&g, w.buf, w.buf_len, &st, err, sizeof(err)) != 0);
	CHECK(strstr(err, "revision key") != NULL);
	bbolt_writer_free(&w);
	/* not a KeyValue */
	size_t n = etcd_revkey_put(rk, 2, 0, false);
	one_pair(&w, rk, n, "\xff\xff\xff", 3);
	CHECK(import_buf(&g, w.buf, w.buf_len, &st, err, sizeof(err)) != 0);
	CHECK(strstr(err, "KeyValue") != NULL);
	bbolt_writer_free(&w);
	/* a key longer than the store takes */
	char longkey[600];
	memset(longkey, 'k', sizeof(longkey));
	kv.key = (ProtobufCBinaryData){sizeof(longkey), (uint8_t *)longkey};
	uint8_t big[700];
	size_t bl = mvccpb__key_value__pack(&kv, big);
	one_pair(&w, rk, n, big, bl);
	CHECK_INT(import_buf(&g, w.buf, w.buf_len, &st, err, sizeof(err)), BOLLARD_EKEY_TOO_LONG);
	bbolt_writer_free(&w);
	/* no key bucket */
	REQUIRE_INT(bbolt_writer_init_mem(&w, 0), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(&w, "meta", 4), 0);
	REQUIRE_INT(bbolt_writer_end_bucket(&w, 0), 0);
	REQUIRE_INT(bbolt_writer_finish(&w, 1), 0);
	CHECK(import_buf(&g, w.buf, w.buf_len, &st, err, sizeof(err)) != 0);
	CHECK(strstr(err, "not an etcd snapshot") != NULL);
	bbolt_writer_free(&w);
	/* nothing was committed */
	CHECK_INT(fx_rev(&g), 1);
	(void)val;
	fx_close(&g);
}

/* A snapshot written by real etcd 3.4 (bbolt_mksnap.py; skipped without etcd). */
TEST(real_etcd_snapshot)
{
	const char *script = getenv("BOLLARD_BBOLT_MKSNAP");
	char dir[] = "/tmp/bollard-etcdimport-XXXXXX", cmd[600], path[300];
	if (script == NULL || access("/usr/bin/etcd", X_OK) != 0) {
		printf("  (skipped: no etcd or BOLLARD_BBOLT_MKSNAP)\n");
		return;
	}
	REQUIRE(mkdtemp(dir) != NULL);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' '%s' >/dev/null", script, dir);
	REQUIRE_INT(system(cmd), 0);
	long compact_rev = 0, final_rev = 0, single_first = 0, del_rev = 0, v;
	char name[64];
	snprintf(path, sizeof(path), "%s/expect.txt", dir);
	FILE *e = fopen(path, "r");
	REQUIRE(e != NULL);
	while (fscanf(e, "%63s %ld", name, &v) == 2) {
		if (!strcmp(name, "compact_rev")) compact_rev = v;
		if (!strcmp(name, "final_rev")) final_rev = v;
		if (!strcmp(name, "single_first")) single_first = v;
		if (!strcmp(name, "del_rev")) del_rev = v;
	}
	fclose(e);
	snprintf(path, sizeof(path), "%s/etcd.snap", dir);
	struct bbolt_db db;
	REQUIRE_INT(bbolt_open_file(&db, path, BBOLT_TRAILER_REQUIRE), 0);
	REQUIRE_INT(bbolt_check(&db, NULL), 0);
	struct fx g;
	struct etcdimport_stats st;
	char err[256];
	fx_open(&g);
	MDB_txn *txn = fx_wtxn(&g);
	int rc = etcdimport_run(&db, &g.m, txn, &st, err, sizeof(err));
	if (rc != 0)
		unit_fail(__FILE__, __LINE__, "import: %s", err);
	fx_commit(txn);
	bbolt_close(&db);
	CHECK_INT(st.current_rev, final_rev);
	CHECK_INT(st.compact_rev, compact_rev);
	CHECK_INT(st.leases, 1);
	CHECK_INT(st.tombstones, 10);
	CHECK_INT(st.users, 1);
	CHECK_INT(st.roles, 1);
	CHECK(!st.auth_enabled);
	{
		/* the user etcd made, with its bcrypt hash: the password still works */
		MDB_txn *at = fx_rtxn(&g);
		Authpb__User *u;
		REQUIRE_INT(auth_user_load(&g.m, at, "alice", NULL, &u), 0);
		REQUIRE_INT(u->n_roles, 1);
		CHECK(strcmp(u->roles[0], "reader") == 0);
		CHECK(u->password.len > 7 && memcmp(u->password.data, "$2a$10$", 7) == 0);
		CHECK_INT(auth_verify_password(u->password.data, u->password.len, "pw", 2), 0);
		CHECK_INT(auth_verify_password(u->password.data, u->password.len, "px", 2),
		          BOLLARD_EAUTH_FAILED);
		authpb__user__free_unpacked(u, NULL);
		CHECK(!auth_enabled(&g.m, at));
		CHECK(auth_revision(&g.m, at) == st.auth_revision && st.auth_revision > 1);
		mdb_txn_abort(at);
	}
	Mvccpb__KeyValue *kv = fx_get(&g, "k/00000", 0);
	REQUIRE(kv != NULL);
	CHECK_BYTES(kv->value, "v2-00000");
	CHECK_INT(kv->mod_revision, single_first);
	CHECK_INT(kv->version, 2);
	CHECK(fx_get(&g, "k/00025", 0) == NULL);
	CHECK(fx_get(&g, "k/00025", del_rev - 1) != NULL);
	kv = fx_get(&g, "leased", 0);
	REQUIRE(kv != NULL);
	CHECK_INT(kv->lease, 0x1234);
	txn = fx_rtxn(&g);
	ProtobufCBinaryData *keys;
	size_t n;
	REQUIRE_INT(leasedb_keys(&g.m, txn, &g.a, 0x1234, &keys, &n), 0);
	REQUIRE_INT(n, 1);
	CHECK_BYTES(keys[0], "leased");
	struct lease_rec r;
	REQUIRE_INT(leasedb_get(&g.m, txn, 0x1234, &r), 0);
	CHECK_INT(r.ttl, 600);
	mdb_txn_abort(txn);
	fx_close(&g);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("  (could not remove %s)\n", dir);
}

UNIT_MAIN(TEST_ENTRY(round_trip_is_identical), TEST_ENTRY(empty_store),
          TEST_ENTRY(malformed_refused), TEST_ENTRY(real_etcd_snapshot))
