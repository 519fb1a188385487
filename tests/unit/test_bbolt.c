/* test_bbolt.c - the bbolt reader and writer (store/core/bbolt.c) against files
 * written by real etcd 3.4 at test time (bbolt_mksnap.py starts Debian's etcd on
 * free loopback ports, loads a known data set, `etcdctl snapshot save`), against
 * etcd's own tooling reading the writer's output (`etcdctl snapshot status`,
 * `snapshot restore` + a real etcd serving the restored keys), and against
 * corrupt input (truncation, flipped bytes, hash mismatch). etcd is a required
 * test dependency (tools/test.sh installs it). */
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/bbolt.h"
#include "core/bbolt_etcd.h"
#include "kv.pb-c.h"
#include "unit.h"

#ifndef BBOLT_MKSNAP
#define BBOLT_MKSNAP "tests/unit/bbolt_mksnap.py"
#endif

/* ---- helpers ---------------------------------------------------------------- */

static char tmpdir[256];

static void cleanup_tmp(void)
{
	if (tmpdir[0]) {
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
}

static const char *mktmp(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/bollard-bbolt-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	REQUIRE(mkdtemp(tmpdir) != NULL);
	atexit(cleanup_tmp);
	return tmpdir;
}

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	REQUIRE(f != NULL);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *buf = malloc((size_t)n + 1);
	REQUIRE(buf != NULL);
	REQUIRE(fread(buf, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void spit(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	REQUIRE(f != NULL);
	REQUIRE(fwrite(buf, 1, len, f) == len);
	REQUIRE(fclose(f) == 0);
}

/* The expectations bbolt_mksnap.py wrote ("name value" lines). */
struct expect {
	long txn_first, txn_last, single_first, big_first, del_rev, leased_rev, compact_rev,
		final_rev;
};

/* Makes DIR/etcd.snap with real etcd; returns DIR. */
static const char *make_etcd_snapshot(struct expect *e)
{
	const char *dir = mktmp();
	const char *script = getenv("BOLLARD_BBOLT_MKSNAP") ? getenv("BOLLARD_BBOLT_MKSNAP")
	                                                    : BBOLT_MKSNAP;
	int rc = run("/usr/bin/python3 '%s' '%s'", script, dir);
	if (rc != 0) {
		unit_fail(__FILE__, __LINE__, "bbolt_mksnap.py failed (%d): is etcd installed?", rc);
		run("tail -20 '%s/etcd.log' >&2", dir);
		unit_abort_test();
	}
	char path[300];
	snprintf(path, sizeof(path), "%s/expect.txt", dir);
	FILE *f = fopen(path, "r");
	REQUIRE(f != NULL);
	char name[64];
	long v;
	memset(e, 0, sizeof(*e));
	while (fscanf(f, "%63s %ld", name, &v) == 2) {
#define X(n)                          \
	if (strcmp(name, #n) == 0)        \
		e->n = v;
		X(txn_first) X(txn_last) X(single_first) X(big_first) X(del_rev) X(leased_rev)
			X(compact_rev) X(final_rev)
#undef X
	}
	fclose(f);
	REQUIRE(e->final_rev > 0);
	return dir;
}

/* crc32c, as etcdctl snapshot status hashes (Go's crc32.Castagnoli). */
static uint32_t crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
	}
	return ~crc;
}

struct status {
	uint32_t hash;
	long revision, total_key, total_size;
};

/* What `etcdctl snapshot status` computes, from our reader. */
static void our_status(struct bbolt_db *db, struct status *s)
{
	struct bbolt_bucket root, b;
	struct bbolt_cursor c, cb;
	struct bbolt_kv kv, kvb;
	memset(s, 0, sizeof(*s));
	s->total_size = (long)(db->meta.pgid * db->meta.page_size);
	bbolt_root_bucket(db, &root);
	bbolt_cursor_init(&c, &root);
	int rc;
	for (rc = bbolt_cursor_first(&c, &kv); rc == 1; rc = bbolt_cursor_next(&c, &kv)) {
		REQUIRE(kv.is_bucket);
		REQUIRE_INT(bbolt_bucket_from_kv(db, &kv, &b), 0);
		s->hash = crc32c(s->hash, kv.key, kv.klen);
		bool iskey = kv.klen == 3 && memcmp(kv.key, "key", 3) == 0;
		bbolt_cursor_init(&cb, &b);
		int rb;
		for (rb = bbolt_cursor_first(&cb, &kvb); rb == 1; rb = bbolt_cursor_next(&cb, &kvb)) {
			s->hash = crc32c(s->hash, kvb.key, kvb.klen);
			s->hash = crc32c(s->hash, kvb.val, kvb.vlen);
			if (iskey && kvb.klen >= 8)
				s->revision = (long)be64_get(kvb.key);
			s->total_key++;
		}
		REQUIRE_INT(rb, 0);
	}
	REQUIRE_INT(rc, 0);
}

/* `etcdctl snapshot status -w json FILE`: 0, or -1 if etcdctl refused the file. */
static int etcdctl_status(const char *path, struct status *s)
{
	char cmd[512], out[1024] = {0};
	snprintf(cmd, sizeof(cmd), "ETCDCTL_API=3 etcdctl snapshot status -w json '%s' 2>&1", path);
	FILE *p = popen(cmd, "r");
	REQUIRE(p != NULL);
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	int st = pclose(p);
	memset(s, 0, sizeof(*s));
	if (st != 0 || sscanf(out, "{\"hash\":%u,\"revision\":%ld,\"totalKey\":%ld,\"totalSize\":%ld}",
	                      &s->hash, &s->revision, &s->total_key, &s->total_size) != 4) {
		fprintf(stderr, "    etcdctl snapshot status: %s\n", out);
		return -1;
	}
	return 0;
}

static void check_status_matches(const char *path, struct bbolt_db *db)
{
	struct status ours, theirs;
	our_status(db, &ours);
	REQUIRE_INT(etcdctl_status(path, &theirs), 0);
	CHECK_INT(theirs.hash, ours.hash);
	CHECK_INT(theirs.revision, ours.revision);
	CHECK_INT(theirs.total_key, ours.total_key);
	CHECK_INT(theirs.total_size, ours.total_size);
}

/* Counts a bucket's pairs (and tombstone revision keys). */
static long count_bucket(struct bbolt_bucket *b, long *tombstones)
{
	struct bbolt_cursor c;
	struct bbolt_kv kv;
	long n = 0;
	int rc;
	bbolt_cursor_init(&c, b);
	for (rc = bbolt_cursor_first(&c, &kv); rc == 1; rc = bbolt_cursor_next(&c, &kv)) {
		n++;
		if (tombstones && kv.klen == ETCD_REVKEY_MARKED_LEN)
			(*tombstones)++;
	}
	REQUIRE_INT(rc, 0);
	return n;
}

/* The value of key in b (NULL if absent). */
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

static Mvccpb__KeyValue *get_rev(struct bbolt_bucket *keyb, long main_rev, long sub_rev,
                                 bool tomb)
{
	uint8_t k[ETCD_REVKEY_MARKED_LEN];
	size_t kl = etcd_revkey_put(k, main_rev, sub_rev, tomb), vl;
	const uint8_t *v = get(keyb, k, kl, &vl);
	if (!v)
		return NULL;
	Mvccpb__KeyValue *kv = mvccpb__key_value__unpack(NULL, vl, v);
	REQUIRE(kv != NULL);
	return kv;
}

/* A digest of a whole tree: every bucket name, key, value and nesting, in order. */
static void tree_digest_rec(struct bbolt_db *db, struct bbolt_bucket *b, int depth, uint32_t *h,
                            long *n)
{
	struct bbolt_cursor *c = malloc(sizeof(*c));
	struct bbolt_kv kv;
	int rc;
	REQUIRE(c != NULL);
	bbolt_cursor_init(c, b);
	for (rc = bbolt_cursor_first(c, &kv); rc == 1; rc = bbolt_cursor_next(c, &kv)) {
		uint8_t tag[2] = {(uint8_t)depth, kv.is_bucket};
		*h = crc32c(*h, tag, 2);
		*h = crc32c(*h, kv.key, kv.klen);
		(*n)++;
		if (kv.is_bucket) {
			struct bbolt_bucket child;
			REQUIRE_INT(bbolt_bucket_from_kv(db, &kv, &child), 0);
			tree_digest_rec(db, &child, depth + 1, h, n);
		} else {
			uint32_t l = (uint32_t)kv.vlen;
			*h = crc32c(*h, (const uint8_t *)&l, 4);
			*h = crc32c(*h, kv.val, kv.vlen);
		}
	}
	REQUIRE_INT(rc, 0);
	free(c);
}

static uint32_t tree_digest(struct bbolt_db *db, long *n)
{
	struct bbolt_bucket root;
	uint32_t h = 0;
	*n = 0;
	bbolt_root_bucket(db, &root);
	tree_digest_rec(db, &root, 0, &h, n);
	return h;
}

/* Copies bucket b's content into the writer's open bucket, recursively. */
static void copy_bucket(struct bbolt_writer *w, struct bbolt_db *db, struct bbolt_bucket *b)
{
	struct bbolt_cursor *c = malloc(sizeof(*c));
	struct bbolt_kv kv;
	int rc;
	REQUIRE(c != NULL);
	bbolt_cursor_init(c, b);
	for (rc = bbolt_cursor_first(c, &kv); rc == 1; rc = bbolt_cursor_next(c, &kv)) {
		if (kv.is_bucket) {
			struct bbolt_bucket child;
			REQUIRE_INT(bbolt_bucket_from_kv(db, &kv, &child), 0);
			REQUIRE_INT(bbolt_writer_begin_bucket(w, kv.key, kv.klen), 0);
			copy_bucket(w, db, &child);
			REQUIRE_INT(bbolt_writer_end_bucket(w, child.sequence), 0);
		} else {
			REQUIRE_INT(bbolt_writer_put(w, kv.key, kv.klen, kv.val, kv.vlen), 0);
		}
	}
	REQUIRE_INT(rc, 0);
	free(c);
}

/* ---- files written by real etcd ------------------------------------------------ */

static const char *const ETCD_BUCKETS[] = {"alarm",   "auth",          "authRoles", "authUsers",
                                           "cluster", "key",           "lease",     "members",
                                           "members_removed", "meta"};

TEST(etcd_snapshot_read)
{
	struct expect e;
	const char *dir = make_etcd_snapshot(&e);
	char path[300];
	snprintf(path, sizeof(path), "%s/etcd.snap", dir);
	struct bbolt_db db;
	int rc = bbolt_open_file(&db, path, BBOLT_TRAILER_REQUIRE);
	if (rc)
		fprintf(stderr, "    %s\n", db.err);
	REQUIRE_INT(rc, 0);
	CHECK(db.has_trailer);
	CHECK_INT(db.meta.page_size, 4096);
	CHECK_INT(db.meta.index, 0);
	struct bbolt_stats st;
	rc = bbolt_check(&db, &st);
	if (rc)
		fprintf(stderr, "    %s\n", db.err);
	REQUIRE_INT(rc, 0);
	fprintf(stderr, "    etcd snapshot: %" PRIu64 " pages, %" PRIu64 " buckets (%" PRIu64
	                " inline), %" PRIu64 " keys, %" PRIu64 " branch, %" PRIu64 " leaf, %" PRIu64
	                " overflow, %" PRIu64 " free pages, depth %" PRIu64 "\n",
	        db.meta.pgid, st.buckets, st.inline_buckets, st.keys, st.branch_pages, st.leaf_pages,
	        st.overflow_pages, st.free_pages, st.max_depth);
	CHECK(st.branch_pages >= 1); /* 5000+ revisions need several leaves */
	CHECK(st.overflow_pages >= 3 * 4); /* three 20 KB values */
	CHECK(st.max_depth >= 2);

	/* The top-level buckets, in order. */
	struct bbolt_bucket root, b;
	struct bbolt_cursor c;
	struct bbolt_kv kv;
	bbolt_root_bucket(&db, &root);
	bbolt_cursor_init(&c, &root);
	size_t i = 0;
	for (rc = bbolt_cursor_first(&c, &kv); rc == 1; rc = bbolt_cursor_next(&c, &kv), i++) {
		REQUIRE(i < sizeof(ETCD_BUCKETS) / sizeof(ETCD_BUCKETS[0]));
		CHECK(kv.is_bucket);
		CHECK(kv.klen == strlen(ETCD_BUCKETS[i]) && memcmp(kv.key, ETCD_BUCKETS[i], kv.klen) == 0);
	}
	CHECK_INT(rc, 0);
	CHECK_INT(i, sizeof(ETCD_BUCKETS) / sizeof(ETCD_BUCKETS[0]));

	/* key: 5000 txn puts + 20 overwrites + 3 big + 10 tombstones + 1 leased,
	 * less the 9 revisions the compaction removed. */
	struct bbolt_bucket keyb;
	REQUIRE_INT(bbolt_bucket_open(&root, "key", 3, &keyb), 0);
	CHECK(keyb.root != 0);
	long tombs = 0;
	CHECK_INT(count_bucket(&keyb, &tombs), 5000 + 20 + 3 + 10 + 1 - 9);
	CHECK_INT(tombs, 10);

	/* Revision keys are in order and decode to KeyValues whose mod_revision is
	 * the key's main revision. */
	bbolt_cursor_init(&c, &keyb);
	int64_t last_main = 0, mr, sr;
	bool tomb;
	long decoded = 0;
	for (rc = bbolt_cursor_first(&c, &kv); rc == 1; rc = bbolt_cursor_next(&c, &kv)) {
		REQUIRE_INT(etcd_revkey_get(kv.key, kv.klen, &mr, &sr, &tomb), 0);
		CHECK(mr >= last_main);
		last_main = mr;
		Mvccpb__KeyValue *m = mvccpb__key_value__unpack(NULL, kv.vlen, kv.val);
		REQUIRE(m != NULL);
		if (!tomb)
			CHECK_INT(m->mod_revision, mr);
		decoded++;
		mvccpb__key_value__free_unpacked(m, NULL);
	}
	CHECK_INT(rc, 0);
	CHECK_INT(last_main, e.final_rev);
	CHECK_INT(decoded, 5025);

	/* k/00150: the 2nd txn, sub 50, untouched since. */
	Mvccpb__KeyValue *m = get_rev(&keyb, e.txn_first + 1, 50, false);
	REQUIRE(m != NULL);
	CHECK_BYTES(m->key, "k/00150");
	CHECK_BYTES(m->value, "v-00150-................................");
	CHECK_INT(m->create_revision, e.txn_first + 1);
	CHECK_INT(m->version, 1);
	mvccpb__key_value__free_unpacked(m, NULL);
	/* k/00005 overwritten at single_first + 5; its first version was compacted away. */
	m = get_rev(&keyb, e.single_first + 5, 0, false);
	REQUIRE(m != NULL);
	CHECK_BYTES(m->key, "k/00005");
	CHECK_BYTES(m->value, "v2-00005");
	CHECK_INT(m->create_revision, e.txn_first);
	CHECK_INT(m->version, 2);
	mvccpb__key_value__free_unpacked(m, NULL);
	CHECK(get_rev(&keyb, e.txn_first, 5, false) == NULL);
	/* k/00015's first version is above the compaction point: kept. */
	m = get_rev(&keyb, e.txn_first, 15, false);
	REQUIRE(m != NULL);
	CHECK_BYTES(m->key, "k/00015");
	mvccpb__key_value__free_unpacked(m, NULL);
	/* A 20 KB value on overflow pages. */
	m = get_rev(&keyb, e.big_first + 1, 0, false);
	REQUIRE(m != NULL);
	CHECK_BYTES(m->key, "big/1");
	REQUIRE_INT(m->value.len, 20000);
	bool pattern = true;
	for (size_t j = 0; j < 20000; j++)
		pattern &= m->value.data[j] == (uint8_t)('a' + (1 + j) % 26);
	CHECK(pattern);
	mvccpb__key_value__free_unpacked(m, NULL);
	/* A tombstone: only the key. */
	m = get_rev(&keyb, e.del_rev, 3, true);
	REQUIRE(m != NULL);
	CHECK_BYTES(m->key, "k/00023");
	CHECK_INT(m->mod_revision, 0);
	mvccpb__key_value__free_unpacked(m, NULL);
	m = get_rev(&keyb, e.leased_rev, 0, false);
	REQUIRE(m != NULL);
	CHECK_BYTES(m->key, "leased");
	CHECK_INT(m->lease, 0x1234);
	mvccpb__key_value__free_unpacked(m, NULL);

	/* meta: the compaction and the consistent index. */
	REQUIRE_INT(bbolt_bucket_open(&root, "meta", 4, &b), 0);
	size_t vl;
	const uint8_t *v = get(&b, "finishedCompactRev", 18, &vl);
	REQUIRE(v != NULL);
	REQUIRE_INT(vl, ETCD_REVKEY_LEN);
	CHECK_INT(be64_get(v), e.compact_rev);
	v = get(&b, "scheduledCompactRev", 19, &vl);
	REQUIRE(v != NULL);
	CHECK_INT(be64_get(v), e.compact_rev);
	v = get(&b, "consistent_index", 16, &vl);
	REQUIRE(v != NULL);
	REQUIRE_INT(vl, 8);
	CHECK(be64_get(v) > 50);

	/* lease: 8-byte BE id -> leasepb.Lease {1: ID, 2: TTL}. */
	REQUIRE_INT(bbolt_bucket_open(&root, "lease", 5, &b), 0);
	uint8_t lid[8];
	be64_put(lid, 0x1234);
	v = get(&b, lid, 8, &vl);
	REQUIRE(v != NULL);
	/* 0x08 varint(0x1234) 0x10 varint(600) */
	static const uint8_t lease_pb[] = {0x08, 0xb4, 0x24, 0x10, 0xd8, 0x04};
	CHECK(vl == sizeof(lease_pb) && memcmp(v, lease_pb, vl) == 0);

	/* auth data, and the single member. */
	REQUIRE_INT(bbolt_bucket_open(&root, "authUsers", 9, &b), 0);
	CHECK(get(&b, "alice", 5, &vl) != NULL);
	REQUIRE_INT(bbolt_bucket_open(&root, "authRoles", 9, &b), 0);
	CHECK(get(&b, "reader", 6, &vl) != NULL);
	REQUIRE_INT(bbolt_bucket_open(&root, "members", 7, &b), 0);
	CHECK_INT(count_bucket(&b, NULL), 1);
	REQUIRE_INT(bbolt_bucket_open(&root, "cluster", 7, &b), 0);
	v = get(&b, "clusterVersion", 14, &vl);
	CHECK(v != NULL && vl == 5 && memcmp(v, "3.4.0", 5) == 0);
	CHECK_INT(bbolt_bucket_open(&root, "nope", 4, &b), -ENOENT);
	struct bbolt_bucket meta;
	REQUIRE_INT(bbolt_bucket_open(&root, "meta", 4, &meta), 0);
	CHECK_INT(bbolt_bucket_open(&meta, "consistent_index", 16, &b), -ENOTDIR);

	/* Our reading of the file agrees with etcdctl's: hash, revision, key count, size. */
	check_status_matches(path, &db);
	bbolt_close(&db);
}

/* The writer re-creates etcd's snapshot (same content, our page layout); etcd's
 * tools agree it holds the same data; `snapshot restore` of it starts a real etcd
 * that serves the keys. */
TEST(etcd_snapshot_rewrite)
{
	struct expect e;
	const char *dir = make_etcd_snapshot(&e);
	char path[300], copy[300];
	snprintf(path, sizeof(path), "%s/etcd.snap", dir);
	snprintf(copy, sizeof(copy), "%s/copy.snap", dir);
	struct bbolt_db db, db2;
	REQUIRE_INT(bbolt_open_file(&db, path, BBOLT_TRAILER_REQUIRE), 0);
	struct bbolt_writer w;
	int fd = open(copy, O_RDWR | O_CREAT | O_TRUNC, 0600);
	REQUIRE(fd >= 0);
	REQUIRE_INT(bbolt_writer_init_fd(&w, fd, 0), 0);
	struct bbolt_bucket root;
	bbolt_root_bucket(&db, &root);
	copy_bucket(&w, &db, &root);
	REQUIRE_INT(bbolt_writer_finish(&w, db.meta.txid), 0);
	REQUIRE_INT(bbolt_writer_append_trailer(&w), 0);
	bbolt_writer_free(&w);
	close(fd);

	int rc = bbolt_open_file(&db2, copy, BBOLT_TRAILER_REQUIRE);
	if (rc)
		fprintf(stderr, "    %s\n", db2.err);
	REQUIRE_INT(rc, 0);
	struct bbolt_stats st;
	rc = bbolt_check(&db2, &st);
	if (rc)
		fprintf(stderr, "    %s\n", db2.err);
	REQUIRE_INT(rc, 0);
	fprintf(stderr, "    rewritten: %" PRIu64 " pages (etcd's: %" PRIu64 "), %" PRIu64
	                " inline buckets, %" PRIu64 " branch pages, %" PRIu64 " overflow\n",
	        db2.meta.pgid, db.meta.pgid, st.inline_buckets, st.branch_pages, st.overflow_pages);
	long n1, n2;
	CHECK_INT(tree_digest(&db2, &n2), tree_digest(&db, &n1));
	CHECK_INT(n2, n1);

	struct status s1, s2;
	REQUIRE_INT(etcdctl_status(path, &s1), 0);
	REQUIRE_INT(etcdctl_status(copy, &s2), 0);
	CHECK_INT(s2.hash, s1.hash);
	CHECK_INT(s2.revision, s1.revision);
	CHECK_INT(s2.total_key, s1.total_key);
	check_status_matches(copy, &db2);
	bbolt_close(&db);
	bbolt_close(&db2);

	/* etcdctl snapshot restore (hash checked) + etcd on the result. */
	REQUIRE_INT(run("cd '%s' && ETCDCTL_API=3 etcdctl snapshot restore copy.snap --name r "
	                "--data-dir restored --initial-cluster r=http://127.0.0.1:1 "
	                "--initial-advertise-peer-urls http://127.0.0.1:1 >restore.log 2>&1",
	                dir),
	            0);
	REQUIRE_INT(run("cd '%s' && python3 - <<'EOF'\n"
	                "import socket, subprocess, time, os, signal\n"
	                "def fp():\n"
	                "    s = socket.socket(); s.bind(('127.0.0.1', 0)); p = s.getsockname()[1]; "
	                "s.close(); return p\n"
	                "c, p = fp(), fp()\n"
	                "cu, pu = 'http://127.0.0.1:%%d' %% c, 'http://127.0.0.1:%%d' %% p\n"
	                "log = open('restored.log', 'w')\n"
	                "e = subprocess.Popen(['etcd', '--name', 'r', '--data-dir', 'restored', "
	                "'--listen-client-urls', cu, '--advertise-client-urls', cu, "
	                "'--listen-peer-urls', pu, '--initial-advertise-peer-urls', pu, "
	                "'--initial-cluster', 'r=' + pu], stdout=log, stderr=log)\n"
	                "env = dict(os.environ, ETCDCTL_API='3')\n"
	                "try:\n"
	                "    for i in range(100):\n"
	                "        r = subprocess.run(['etcdctl', '--endpoints', cu, 'get', 'k/00150', "
	                "'--print-value-only'], env=env, capture_output=True, text=True)\n"
	                "        if r.returncode == 0: break\n"
	                "        time.sleep(0.1)\n"
	                "    assert r.stdout.strip() == 'v-00150-' + '.' * 32, r\n"
	                "    r = subprocess.run(['etcdctl', '--endpoints', cu, 'get', 'k/', "
	                "'--prefix', '--keys-only', '-w', 'json'], env=env, capture_output=True, "
	                "text=True)\n"
	                "    assert '\"count\":4990' in r.stdout, r\n"
	                "    r = subprocess.run(['etcdctl', '--endpoints', cu, 'get', 'k/00015', "
	                "'--rev', '%ld', '--print-value-only'], env=env, capture_output=True, "
	                "text=True)\n"
	                "    assert r.stdout.strip() == 'v-00015-' + '.' * 32, r\n"
	                "    r = subprocess.run(['etcdctl', '--endpoints', cu, 'lease', 'list'], "
	                "env=env, capture_output=True, text=True)\n"
	                "    assert '1234' in r.stdout, r\n"
	                "finally:\n"
	                "    e.send_signal(signal.SIGTERM); e.wait(20)\n"
	                "EOF\n",
	                dir, e.compact_rev),
	            0);
}

/* ---- the writer on its own ------------------------------------------------------ */

/* Writes a file with nested, empty, inline, multi-level and overflow buckets;
 * reads it back equal. */
static void write_sample(struct bbolt_writer *w, const uint8_t *bigv)
{
	char k[64], v[256];
	REQUIRE_INT(bbolt_writer_init_mem(w, 0), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(w, "a-empty", 7), 0);
	REQUIRE_INT(bbolt_writer_end_bucket(w, 0), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(w, "b-big", 5), 0);
	for (int i = 0; i < 20000; i++) {
		int kl = snprintf(k, sizeof(k), "key-%08d", i);
		if (i % 5000 == 17)
			REQUIRE_INT(bbolt_writer_put(w, k, (size_t)kl, bigv, 100000), 0);
		else {
			int vl = snprintf(v, sizeof(v), "value %d %*s", i, i % 100, "");
			REQUIRE_INT(bbolt_writer_put(w, k, (size_t)kl, v, (size_t)vl), 0);
		}
	}
	REQUIRE_INT(bbolt_writer_end_bucket(w, 7), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(w, "c-nest", 6), 0);
	REQUIRE_INT(bbolt_writer_put(w, "a", 1, "1", 1), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(w, "b", 1), 0);
	REQUIRE_INT(bbolt_writer_put(w, "x", 1, "", 0), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(w, "y", 1), 0);
	REQUIRE_INT(bbolt_writer_put(w, "deep", 4, "est", 3), 0);
	REQUIRE_INT(bbolt_writer_end_bucket(w, 0), 0);
	REQUIRE_INT(bbolt_writer_end_bucket(w, 3), 0);
	REQUIRE_INT(bbolt_writer_put(w, "c", 1, "3", 1), 0);
	REQUIRE_INT(bbolt_writer_end_bucket(w, 0), 0);
	CHECK_INT(bbolt_writer_end_bucket(w, 0), -EINVAL); /* only the root is open */
	bbolt_writer_free(w);

	REQUIRE_INT(bbolt_writer_init_mem(w, 0), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(w, "a-empty", 7), 0);
	REQUIRE_INT(bbolt_writer_end_bucket(w, 0), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(w, "b-big", 5), 0);
	for (int i = 0; i < 20000; i++) {
		int kl = snprintf(k, sizeof(k), "key-%08d", i);
		if (i % 5000 == 17)
			REQUIRE_INT(bbolt_writer_put(w, k, (size_t)kl, bigv, 100000), 0);
		else {
			int vl = snprintf(v, sizeof(v), "value %d %*s", i, i % 100, "");
			REQUIRE_INT(bbolt_writer_put(w, k, (size_t)kl, v, (size_t)vl), 0);
		}
	}
	REQUIRE_INT(bbolt_writer_end_bucket(w, 7), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(w, "c-nest", 6), 0);
	REQUIRE_INT(bbolt_writer_put(w, "a", 1, "1", 1), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(w, "b", 1), 0);
	REQUIRE_INT(bbolt_writer_put(w, "x", 1, "", 0), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(w, "y", 1), 0);
	REQUIRE_INT(bbolt_writer_put(w, "deep", 4, "est", 3), 0);
	REQUIRE_INT(bbolt_writer_end_bucket(w, 0), 0);
	REQUIRE_INT(bbolt_writer_end_bucket(w, 3), 0);
	REQUIRE_INT(bbolt_writer_put(w, "c", 1, "3", 1), 0);
	REQUIRE_INT(bbolt_writer_end_bucket(w, 0), 0);
}

TEST(writer_round_trip)
{
	struct bbolt_writer w;
	char k[64], v[256];
	uint8_t *bigv = malloc(100000);
	REQUIRE(bigv != NULL);
	for (int i = 0; i < 100000; i++)
		bigv[i] = (uint8_t)(i * 7);

	/* Misuse is refused, and the refusal is sticky. */
	REQUIRE_INT(bbolt_writer_init_mem(&w, 0), 0);
	CHECK_INT(bbolt_writer_put(&w, "a", 1, "1", 1), -EINVAL); /* the root holds buckets */
	bbolt_writer_free(&w);
	REQUIRE_INT(bbolt_writer_init_mem(&w, 0), 0);
	CHECK_INT(bbolt_writer_end_bucket(&w, 0), -EINVAL);
	bbolt_writer_free(&w);
	REQUIRE_INT(bbolt_writer_init_mem(&w, 0), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(&w, "b", 1), 0);
	REQUIRE_INT(bbolt_writer_put(&w, "b", 1, "1", 1), 0);
	CHECK_INT(bbolt_writer_put(&w, "b", 1, "1", 1), -EINVAL); /* duplicate */
	CHECK_INT(bbolt_writer_put(&w, "c", 1, "1", 1), -EINVAL); /* sticky */
	bbolt_writer_free(&w);
	REQUIRE_INT(bbolt_writer_init_mem(&w, 0), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(&w, "b", 1), 0);
	CHECK_INT(bbolt_writer_put(&w, "", 0, "1", 1), -EINVAL); /* empty key */
	bbolt_writer_free(&w);
	REQUIRE_INT(bbolt_writer_init_mem(&w, 0), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(&w, "b", 1), 0);
	REQUIRE_INT(bbolt_writer_end_bucket(&w, 0), 0);
	CHECK_INT(bbolt_writer_begin_bucket(&w, "a", 1), -EINVAL); /* out of order */
	bbolt_writer_free(&w);
	REQUIRE_INT(bbolt_writer_init_mem(&w, 0), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(&w, "b", 1), 0);
	CHECK_INT(bbolt_writer_finish(&w, 1), -EINVAL); /* a bucket still open */
	bbolt_writer_free(&w);

	write_sample(&w, bigv);
	REQUIRE_INT(bbolt_writer_finish(&w, 9), 0);
	CHECK_INT(bbolt_writer_put(&w, "z", 1, "", 0), -EALREADY);
	REQUIRE_INT(w.buf_len % 4096, 0);

	struct bbolt_db db;
	int rc = bbolt_open_mem(&db, w.buf, w.buf_len, BBOLT_TRAILER_AUTO);
	if (rc)
		fprintf(stderr, "    %s\n", db.err);
	REQUIRE_INT(rc, 0);
	CHECK(!db.has_trailer);
	CHECK_INT(db.meta.txid, 9);
	CHECK_INT(db.meta.index, 0);
	struct bbolt_stats st;
	rc = bbolt_check(&db, &st);
	if (rc)
		fprintf(stderr, "    %s\n", db.err);
	REQUIRE_INT(rc, 0);
	fprintf(stderr, "    written: %" PRIu64 " pages, %" PRIu64 " branch, %" PRIu64 " leaf, %" PRIu64
	                " overflow, depth %" PRIu64 ", %" PRIu64 " inline buckets\n",
	        db.meta.pgid, st.branch_pages, st.leaf_pages, st.overflow_pages, st.max_depth,
	        st.inline_buckets);
	CHECK_INT(st.buckets, 5);
	CHECK_INT(st.inline_buckets, 2); /* a-empty and y */
	CHECK_INT(st.keys, 20000 + 4);
	CHECK(st.max_depth >= 3);
	CHECK_INT(st.overflow_pages, 4 * 24); /* 100000 bytes + header: 25 pages each */

	struct bbolt_bucket root, b, b2;
	bbolt_root_bucket(&db, &root);
	REQUIRE_INT(bbolt_bucket_open(&root, "b-big", 5, &b), 0);
	CHECK_INT(b.sequence, 7);
	struct bbolt_cursor c;
	struct bbolt_kv kv;
	bbolt_cursor_init(&c, &b);
	int i = 0;
	for (rc = bbolt_cursor_first(&c, &kv); rc == 1; rc = bbolt_cursor_next(&c, &kv), i++) {
		int kl = snprintf(k, sizeof(k), "key-%08d", i);
		CHECK(kv.klen == (size_t)kl && memcmp(kv.key, k, (size_t)kl) == 0);
		if (i % 5000 == 17) {
			CHECK(kv.vlen == 100000 && memcmp(kv.val, bigv, 100000) == 0);
		} else {
			int vl = snprintf(v, sizeof(v), "value %d %*s", i, i % 100, "");
			CHECK(kv.vlen == (size_t)vl && memcmp(kv.val, v, (size_t)vl) == 0);
		}
	}
	CHECK_INT(rc, 0);
	CHECK_INT(i, 20000);
	REQUIRE_INT(bbolt_bucket_open(&root, "c-nest", 6, &b), 0);
	REQUIRE_INT(bbolt_bucket_open(&b, "b", 1, &b2), 0);
	CHECK_INT(b2.sequence, 3);
	REQUIRE_INT(bbolt_bucket_open(&b2, "y", 1, &b), 0);
	CHECK_INT(b.root, 0);
	size_t vl;
	const uint8_t *val = get(&b, "deep", 4, &vl);
	CHECK(val != NULL && vl == 3 && memcmp(val, "est", 3) == 0);
	REQUIRE_INT(bbolt_bucket_open(&root, "a-empty", 7, &b), 0);
	CHECK_INT(count_bucket(&b, NULL), 0);

	/* With a trailer. */
	REQUIRE_INT(bbolt_writer_append_trailer(&w), 0);
	REQUIRE_INT(bbolt_open_mem(&db, w.buf, w.buf_len, BBOLT_TRAILER_REQUIRE), 0);
	CHECK(db.has_trailer);
	long n;
	CHECK(tree_digest(&db, &n) != 0);
	CHECK_INT(n, 20000 + 4 + 5); /* pairs + buckets */
	bbolt_close(&db);
	bbolt_writer_free(&w);
	free(bigv);
}

/* An etcd-layout file written from scratch: etcdctl snapshot status reads the
 * revision and key count we meant. */
TEST(writer_etcd_layout_status)
{
	const char *dir = mktmp();
	char path[300];
	snprintf(path, sizeof(path), "%s/w.snap", dir);
	struct bbolt_writer w;
	REQUIRE_INT(bbolt_writer_init_mem(&w, 0), 0);
	static const char *const empty[] = {"alarm", "auth", "authRoles", "authUsers", "cluster"};
	for (size_t i = 0; i < 5; i++) {
		REQUIRE_INT(bbolt_writer_begin_bucket(&w, empty[i], strlen(empty[i])), 0);
		REQUIRE_INT(bbolt_writer_end_bucket(&w, 0), 0);
	}
	REQUIRE_INT(bbolt_writer_begin_bucket(&w, "key", 3), 0);
	/* rev 2 foo=bar; rev 3 foo=baz; rev 4 other=x (+ sub 1 k2=y); rev 5 delete foo. */
	struct {
		long rev, sub;
		const char *k, *v;
		long create, ver;
		bool tomb;
	} revs[] = {{2, 0, "foo", "bar", 2, 1, false},
	            {3, 0, "foo", "baz", 2, 2, false},
	            {4, 0, "other", "x", 4, 1, false},
	            {4, 1, "k2", "y", 4, 1, false},
	            {5, 0, "foo", NULL, 0, 0, true}};
	for (size_t i = 0; i < 5; i++) {
		Mvccpb__KeyValue m = MVCCPB__KEY_VALUE__INIT;
		m.key.data = (uint8_t *)revs[i].k;
		m.key.len = strlen(revs[i].k);
		if (!revs[i].tomb) {
			m.value.data = (uint8_t *)revs[i].v;
			m.value.len = strlen(revs[i].v);
			m.create_revision = revs[i].create;
			m.mod_revision = revs[i].rev;
			m.version = revs[i].ver;
		}
		uint8_t buf[128], key[ETCD_REVKEY_MARKED_LEN];
		size_t n = mvccpb__key_value__pack(&m, buf);
		size_t kl = etcd_revkey_put(key, revs[i].rev, revs[i].sub, revs[i].tomb);
		REQUIRE_INT(bbolt_writer_put(&w, key, kl, buf, n), 0);
	}
	REQUIRE_INT(bbolt_writer_end_bucket(&w, 0), 0);
	static const char *const empty2[] = {"lease", "members", "members_removed"};
	for (size_t i = 0; i < 3; i++) {
		REQUIRE_INT(bbolt_writer_begin_bucket(&w, empty2[i], strlen(empty2[i])), 0);
		REQUIRE_INT(bbolt_writer_end_bucket(&w, 0), 0);
	}
	REQUIRE_INT(bbolt_writer_begin_bucket(&w, "meta", 4), 0);
	uint8_t ci[8];
	be64_put(ci, 10);
	REQUIRE_INT(bbolt_writer_put(&w, "consistent_index", 16, ci, 8), 0);
	REQUIRE_INT(bbolt_writer_end_bucket(&w, 0), 0);
	REQUIRE_INT(bbolt_writer_finish(&w, 1), 0);
	REQUIRE_INT(bbolt_writer_append_trailer(&w), 0);
	spit(path, w.buf, w.buf_len);
	bbolt_writer_free(&w);

	struct status s;
	REQUIRE_INT(etcdctl_status(path, &s), 0);
	CHECK_INT(s.revision, 5);
	CHECK_INT(s.total_key, 6);
	CHECK_INT(s.total_size, 4096 * 4); /* metas, freelist, root; every bucket inline */
	struct bbolt_db db;
	REQUIRE_INT(bbolt_open_file(&db, path, BBOLT_TRAILER_REQUIRE), 0);
	REQUIRE_INT(bbolt_check(&db, NULL), 0);
	check_status_matches(path, &db);
	bbolt_close(&db);

	/* Regular (not inline) buckets are accepted too. */
	REQUIRE_INT(bbolt_writer_init_mem(&w, 0), 0);
	w.allow_inline = false;
	REQUIRE_INT(bbolt_writer_begin_bucket(&w, "key", 3), 0);
	uint8_t key[ETCD_REVKEY_MARKED_LEN];
	size_t kl = etcd_revkey_put(key, 42, 0, false);
	REQUIRE_INT(bbolt_writer_put(&w, key, kl, "", 0), 0);
	REQUIRE_INT(bbolt_writer_end_bucket(&w, 0), 0);
	REQUIRE_INT(bbolt_writer_begin_bucket(&w, "meta", 4), 0);
	REQUIRE_INT(bbolt_writer_end_bucket(&w, 0), 0);
	REQUIRE_INT(bbolt_writer_finish(&w, 1), 0);
	spit(path, w.buf, w.buf_len);
	bbolt_writer_free(&w);
	REQUIRE_INT(etcdctl_status(path, &s), 0);
	CHECK_INT(s.revision, 42);
	CHECK_INT(s.total_key, 1);
	CHECK_INT(s.total_size, 4096 * 6);
}

/* ---- corrupt input -------------------------------------------------------------- */

static int open_and_walk(const uint8_t *buf, size_t len, enum bbolt_trailer mode, char *err)
{
	struct bbolt_db db;
	int rc = bbolt_open_mem(&db, buf, len, mode);
	if (rc == 0)
		rc = bbolt_check(&db, NULL);
	if (rc == 0) {
		long n;
		tree_digest(&db, &n);
	}
	if (err)
		snprintf(err, 256, "%s", db.err);
	bbolt_close(&db);
	return rc;
}

TEST(corrupt_input)
{
	struct expect e;
	const char *dir = make_etcd_snapshot(&e);
	char path[300], err[256];
	snprintf(path, sizeof(path), "%s/etcd.snap", dir);
	size_t len;
	uint8_t *orig = slurp(path, &len);
	uint8_t *buf = malloc(len);
	REQUIRE(buf != NULL);
	REQUIRE_INT(open_and_walk(orig, len, BBOLT_TRAILER_REQUIRE, NULL), 0);
	size_t dblen = len - 32, pages = dblen / 4096;

	/* Truncated: mid-page, at a page boundary (trailer gone), one page short. */
	CHECK_INT(open_and_walk(orig, len / 2, BBOLT_TRAILER_AUTO, err), BBOLT_ECORRUPT);
	fprintf(stderr, "    truncated at half: %s\n", err);
	CHECK_INT(open_and_walk(orig, len - 32, BBOLT_TRAILER_REQUIRE, err), BBOLT_ECORRUPT);
	fprintf(stderr, "    no trailer: %s\n", err);
	CHECK_INT(open_and_walk(orig, dblen - 4096, BBOLT_TRAILER_NONE, err), BBOLT_ECORRUPT);
	fprintf(stderr, "    one page short: %s\n", err);
	CHECK_INT(open_and_walk(orig, 100, BBOLT_TRAILER_NONE, NULL), BBOLT_ECORRUPT);
	CHECK_INT(open_and_walk(orig, 0, BBOLT_TRAILER_AUTO, NULL), BBOLT_ECORRUPT);

	/* One flipped byte in the middle: the trailer catches it. */
	memcpy(buf, orig, len);
	buf[dblen / 2 + 123] ^= 0x40;
	CHECK_INT(open_and_walk(buf, len, BBOLT_TRAILER_AUTO, err), BBOLT_EHASH);
	fprintf(stderr, "    flipped byte: %s\n", err);

	/* Without the trailer check: a flipped page header byte (id, flags, count) of
	 * every leaf/branch page is caught by the walk. */
	int caught = 0, tried = 0;
	for (size_t p = 2; p < pages; p++) {
		uint16_t flags = (uint16_t)(orig[p * 4096 + 8] | orig[p * 4096 + 9] << 8);
		if (flags != BBOLT_FLAG_LEAF && flags != BBOLT_FLAG_BRANCH)
			continue;
		static const size_t offs[] = {0, 8, 10, 11};
		for (size_t o = 0; o < 4; o++) {
			memcpy(buf, orig, dblen);
			buf[p * 4096 + offs[o]] ^= 0x04;
			tried++;
			if (open_and_walk(buf, dblen, BBOLT_TRAILER_NONE, NULL) == BBOLT_ECORRUPT)
				caught++;
		}
	}
	fprintf(stderr, "    page header flips caught: %d of %d\n", caught, tried);
	CHECK(tried > 100);
	/* A lower count only hides elements (not detectable without the trailer): at
	 * least every id, flags and count-increase flip is caught. */
	CHECK(caught >= tried * 3 / 4);

	/* Meta: a flipped byte in meta 0 falls back to meta 1 (etcd writes txid - 1
	 * there); both flipped is refused. */
	memcpy(buf, orig, dblen);
	buf[16 + 20] ^= 0x01; /* meta 0's root */
	struct bbolt_db db;
	REQUIRE_INT(bbolt_open_mem(&db, buf, dblen, BBOLT_TRAILER_NONE), 0);
	CHECK_INT(db.meta.index, 1);
	CHECK_INT(bbolt_check(&db, NULL), 0);
	bbolt_close(&db);
	buf[4096 + 16 + 1] ^= 0x01; /* meta 1's magic */
	CHECK_INT(bbolt_open_mem(&db, buf, dblen, BBOLT_TRAILER_NONE), BBOLT_ECORRUPT);
	fprintf(stderr, "    both metas: %s\n", db.err);
	/* With the trailer, any flip in a meta is a hash mismatch. */
	memcpy(buf, orig, len);
	buf[16 + 40] ^= 0x01;
	CHECK_INT(bbolt_open_mem(&db, buf, len, BBOLT_TRAILER_AUTO), BBOLT_EHASH);
	/* The trailer itself flipped. */
	memcpy(buf, orig, len);
	buf[len - 1] ^= 0x80;
	CHECK_INT(bbolt_open_mem(&db, buf, len, BBOLT_TRAILER_AUTO), BBOLT_EHASH);
	free(buf);
	free(orig);
}

/* Random damage (a deterministic mini-fuzz): flipped bytes and truncations of a
 * writer file and of etcd's never crash or read out of bounds (ASan), and
 * damaged files come back as errors or as readable trees. */
TEST(random_damage)
{
	struct expect e;
	const char *dir = make_etcd_snapshot(&e);
	char path[300];
	snprintf(path, sizeof(path), "%s/etcd.snap", dir);
	size_t len;
	uint8_t *orig = slurp(path, &len);
	len -= 32;
	uint8_t *buf = malloc(len);
	REQUIRE(buf != NULL);
	uint64_t x = 88172645463325252ull;
	int errors = 0, iters = 3000;
	for (int i = 0; i < iters; i++) {
		memcpy(buf, orig, len);
		int flips = 1 + (int)(i % 4);
		for (int f = 0; f < flips; f++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			/* Mostly in page headers and element arrays, where it matters. */
			size_t page = (size_t)(x % (len / 4096));
			size_t off = (x >> 32) % (i % 2 ? 4096 : 256);
			buf[page * 4096 + off] ^= (uint8_t)(1u << ((x >> 20) % 8));
		}
		size_t l = len;
		if (i % 10 == 0)
			l = (size_t)((x >> 8) % len);
		if (open_and_walk(buf, l, BBOLT_TRAILER_NONE, NULL) != 0)
			errors++;
	}
	fprintf(stderr, "    %d of %d damaged files refused\n", errors, iters);
	CHECK(errors > iters / 3);
	free(buf);
	free(orig);
}

TEST(revkey)
{
	uint8_t k[ETCD_REVKEY_MARKED_LEN];
	int64_t m = 0, s = 0;
	bool t;
	CHECK_INT(etcd_revkey_put(k, 0x0102030405060708, 9, false), 17);
	CHECK(k[0] == 1 && k[7] == 8 && k[8] == '_' && k[16] == 9);
	CHECK_INT(etcd_revkey_get(k, 17, &m, &s, &t), 0);
	CHECK_INT(m, 0x0102030405060708);
	CHECK_INT(s, 9);
	CHECK(!t);
	CHECK_INT(etcd_revkey_put(k, 5, 0, true), 18);
	CHECK_INT(etcd_revkey_get(k, 18, &m, &s, &t), 0);
	CHECK(t);
	k[17] = 'x';
	CHECK_INT(etcd_revkey_get(k, 18, &m, &s, &t), -1);
	CHECK_INT(etcd_revkey_get(k, 16, &m, &s, &t), -1);
}

UNIT_MAIN(TEST_ENTRY(etcd_snapshot_read), TEST_ENTRY(etcd_snapshot_rewrite),
          TEST_ENTRY(writer_round_trip), TEST_ENTRY(writer_etcd_layout_status),
          TEST_ENTRY(corrupt_input), TEST_ENTRY(random_damage), TEST_ENTRY(revkey))
