/* test_node.c - a real node (raft + LMDB, no gRPC) on a loop in-process:
 * requests through node_submit and node_read, restarts on the same data dir, replay of
 * the raft log, group commit, snapshots and log truncation, maintenance
 * requests, quota, the data file's pages out of RSS, shutdown. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "core/bbolt.h"
#include "core/errors.h"
#include "core/metrics.h"
#include "core/watch_hub.h"
#include "harness.h"
#include "node/ids.h"
#include "node/node_int.h"
#include "raftcmd.pb-c.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------ ids */

TEST(ids_match_etcd)
{
	struct initial_cluster c;
	char err[128];
	int64_t ms;

	/* etcd's well-known IDs of a default single member. */
	REQUIRE(ids_parse_initial_cluster("default=http://localhost:2380", "etcd-cluster", &c, err,
	                                  sizeof(err)) == 0);
	CHECK_INT(c.n, 1);
	CHECK(c.members[0].id == 0x8e9e05c52164694dull);
	CHECK(c.cluster_id == 0xcdf818194e3a8c32ull);
	initial_cluster_free(&c);

	/* Several URLs per member, grouped by name, sorted before hashing. */
	REQUIRE(ids_parse_initial_cluster("a=http://10.0.0.1:2380,b=http://10.0.0.2:2380,"
	                                  "a=http://10.0.0.9:2380",
	                                  "tok", &c, err, sizeof(err)) == 0);
	CHECK_INT(c.n, 2);
	const struct cluster_member *a = initial_cluster_find(&c, "a");
	REQUIRE(a != NULL);
	CHECK_INT(a->peer_urls.n, 2);
	struct url_list l;
	REQUIRE(ids_parse_urls("http://10.0.0.9:2380,http://10.0.0.1:2380", &l, err, sizeof(err)) == 0);
	CHECK(ids_member_id(&l, "tok") == a->id);
	url_list_free(&l);
	initial_cluster_free(&c);

	CHECK(ids_parse_urls("http://h:1/path", &l, err, sizeof(err)) < 0);
	CHECK(ids_parse_urls("ftp://h:1", &l, err, sizeof(err)) < 0);
	CHECK(ids_parse_urls("http://h", &l, err, sizeof(err)) < 0);

	CHECK(node_parse_duration_ms("5m", &ms) == 0 && ms == 300000);
	CHECK(node_parse_duration_ms("1h30m", &ms) == 0 && ms == 5400000);
	CHECK(node_parse_duration_ms("1.5s", &ms) == 0 && ms == 1500);
	CHECK(node_parse_duration_ms("10x", &ms) < 0);
}

/* ------------------------------------------------------------- requests */

TEST(put_range_txn_delete)
{
	struct tnode t;
	char val[64];
	int64_t rev, rev2;
	uint8_t *resp;
	size_t len;

	tnode_config(&t, th_tmpdir());
	tnode_open(&t);
	CHECK(node_member_id(t.node) != 0 && node_cluster_id(t.node) != 0);

	CHECK_INT(tnode_put(&t, "a", "1", &rev), 0);
	CHECK_INT(rev, 2);
	CHECK_INT(tnode_get(&t, "a", val, sizeof(val), &rev2), 1);
	CHECK(strcmp(val, "1") == 0);
	CHECK_INT(rev2, 2);

	/* txn: if version(a) > 0 then put b=2 else put c=3 */
	Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT, *cmps[] = {&cmp};
	cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER;
	cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
	cmp.key.data = (uint8_t *)"a";
	cmp.key.len = 1;
	cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
	cmp.version = 0;
	Etcdserverpb__PutRequest pb = ETCDSERVERPB__PUT_REQUEST__INIT, pc = ETCDSERVERPB__PUT_REQUEST__INIT;
	pb.key = (ProtobufCBinaryData){1, (uint8_t *)"b"};
	pb.value = (ProtobufCBinaryData){1, (uint8_t *)"2"};
	pc.key = (ProtobufCBinaryData){1, (uint8_t *)"c"};
	pc.value = (ProtobufCBinaryData){1, (uint8_t *)"3"};
	Etcdserverpb__RequestOp ob = ETCDSERVERPB__REQUEST_OP__INIT, oc = ETCDSERVERPB__REQUEST_OP__INIT;
	ob.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	ob.request_put = &pb;
	oc.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	oc.request_put = &pc;
	Etcdserverpb__RequestOp *succ[] = {&ob}, *fail[] = {&oc};
	Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
	txn.n_compare = 1;
	txn.compare = cmps;
	txn.n_success = 1;
	txn.success = succ;
	txn.n_failure = 1;
	txn.failure = fail;
	REQUIRE(tnode_do(&t, NODE_TXN, &txn.base, &resp, &len) == 0);
	Etcdserverpb__TxnResponse *tr = etcdserverpb__txn_response__unpack(NULL, len, resp);
	REQUIRE(tr != NULL);
	CHECK(tr->succeeded);
	CHECK_INT(tr->header->revision, 3);
	CHECK(tr->header->cluster_id == node_cluster_id(t.node));
	CHECK(tr->header->member_id == node_member_id(t.node));
	CHECK(tr->header->raft_term >= 1);
	etcdserverpb__txn_response__free_unpacked(tr, NULL);
	free(resp);
	CHECK_INT(tnode_get(&t, "b", val, sizeof(val), NULL), 1);
	CHECK(strcmp(val, "2") == 0);
	CHECK_INT(tnode_get(&t, "c", val, sizeof(val), NULL), 0);

	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	d.key = (ProtobufCBinaryData){1, (uint8_t *)"a"};
	REQUIRE(tnode_do(&t, NODE_DELETE_RANGE, &d.base, &resp, &len) == 0);
	Etcdserverpb__DeleteRangeResponse *dr =
		etcdserverpb__delete_range_response__unpack(NULL, len, resp);
	REQUIRE(dr != NULL);
	CHECK_INT(dr->deleted, 1);
	etcdserverpb__delete_range_response__free_unpacked(dr, NULL);
	free(resp);
	CHECK_INT(tnode_get(&t, "a", val, sizeof(val), NULL), 0);

	/* Errors that never reach raft. */
	Etcdserverpb__PutRequest empty = ETCDSERVERPB__PUT_REQUEST__INIT;
	CHECK_INT(tnode_do(&t, NODE_PUT, &empty.base, NULL, NULL), BOLLARD_EEMPTY_KEY);
	/* Apply-time error: compaction in the future. */
	Etcdserverpb__CompactionRequest cr = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
	cr.revision = 100;
	CHECK_INT(tnode_do(&t, NODE_COMPACT, &cr.base, NULL, NULL), BOLLARD_EFUTURE_REV);
	cr.revision = 3;
	CHECK_INT(tnode_do(&t, NODE_COMPACT, &cr.base, NULL, NULL), 0);
	tnode_close(&t);
}

/* ---------------------------------------------------------- restart/replay */

TEST(restart_keeps_data_without_reapplying)
{
	struct tnode t;
	struct node_stats st;
	uint64_t applied;
	int64_t rev;
	char val[32];

	tnode_config(&t, th_tmpdir());
	tnode_open(&t);
	tnode_put_n(&t, "k", 0, 50);
	applied = node_applied_index(t.node);
	CHECK(applied >= 51); /* index 1 is the bootstrap configuration */
	tnode_close(&t);

	tnode_open(&t);
	node_get_stats(t.node, &st);
	CHECK_INT(node_applied_index(t.node), applied);
	tnode_check_n(&t, "k", 0, 50);
	CHECK_INT(tnode_get(&t, "k0049", val, sizeof(val), &rev), 1);
	CHECK_INT(rev, 51);
	CHECK_INT(tnode_put(&t, "after", "x", &rev), 0);
	CHECK_INT(rev, 52); /* nothing applied twice */
	node_get_stats(t.node, &st);
	/* Every old entry was skipped, only the new put was applied. */
	CHECK_INT(st.applied_entries, 1);
	tnode_close(&t);
}

/* FIEMAP of fd: *unwritten = some extent is allocated but unwritten, *mapped =
 * bytes in extents. False where the file system cannot say (tmpfs). */
static bool extents_of(int fd, bool *unwritten, uint64_t *mapped)
{
	union {
		struct fiemap fm;
		char buf[sizeof(struct fiemap) + 64 * sizeof(struct fiemap_extent)];
	} u;
	uint64_t start = 0;
	*unwritten = false;
	*mapped = 0;
	for (;;) {
		memset(&u, 0, sizeof(u));
		u.fm.fm_start = start;
		u.fm.fm_length = FIEMAP_MAX_OFFSET;
		u.fm.fm_flags = FIEMAP_FLAG_SYNC;
		u.fm.fm_extent_count = 64;
		if (ioctl(fd, FS_IOC_FIEMAP, &u.fm) != 0)
			return false;
		if (u.fm.fm_mapped_extents == 0)
			return true;
		for (unsigned i = 0; i < u.fm.fm_mapped_extents; i++) {
			const struct fiemap_extent *e = &u.fm.fm_extents[i];
			*unwritten |= (e->fe_flags & FIEMAP_EXTENT_UNWRITTEN) != 0;
			*mapped += e->fe_length;
			start = e->fe_logical + e->fe_length;
			if (e->fe_flags & FIEMAP_EXTENT_LAST)
				return true;
		}
	}
}

/* The process's posix_fallocate (segfill.c), not the 64-bit name the C
 * headers redirect a call to. */
int segfill_posix_fallocate(int fd, off_t offset, off_t len) __asm__("posix_fallocate");

/* raft's open segments are written through (segfill.c) so that appends never
 * fall back to raft's thread pool and never convert extents; a file raft
 * did not make as a segment is only allocated. Skipped where the file system
 * does not report extents. */
TEST(open_segments_zero_filled)
{
	struct tnode t;
	char raft_dir[400], path[700];
	int segments = 0;
	bool unwritten;
	uint64_t mapped;
	DIR *d;
	struct dirent *e;

	tnode_config(&t, th_tmpdir());
	tnode_open(&t);
	tnode_put_n(&t, "k", 0, 20);
	snprintf(raft_dir, sizeof(raft_dir), "%s/member/raft", t.data_dir);
	/* Whether this file system leaves fallocated ranges unwritten (ext4,
	 * xfs), from a file outside raft's directory. */
	snprintf(path, sizeof(path), "%s/control-file", th_tmpdir());
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	REQUIRE(fd >= 0);
	CHECK_INT(posix_fallocate(fd, 0, 4 << 20), 0);
	if (!extents_of(fd, &unwritten, &mapped)) {
		printf("  (file system without FIEMAP: extents not checked)\n");
		close(fd);
		tnode_close(&t);
		return;
	}
	bool fs_has_unwritten = unwritten;
	close(fd);
	if (!fs_has_unwritten)
		printf("  (file system without unwritten extents: nothing to tell apart)\n");
	/* In raft's directory, a file not named as an open segment is only
	 * allocated. */
	snprintf(path, sizeof(path), "%s/other-file", raft_dir);
	REQUIRE((fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600)) >= 0);
	CHECK_INT(segfill_posix_fallocate(fd, 0, 4 << 20), 0);
	struct stat st;
	REQUIRE(fstat(fd, &st) == 0);
	CHECK_INT(st.st_size, 4 << 20);
	REQUIRE(extents_of(fd, &unwritten, &mapped));
	CHECK_INT(unwritten, fs_has_unwritten);
	close(fd);
	unlink(path);
	REQUIRE((d = opendir(raft_dir)) != NULL);
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "open-", 5) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", raft_dir, e->d_name);
		REQUIRE((fd = open(path, O_RDONLY)) >= 0);
		/* Only segments raft has begun to write: the others may still be
		 * being prepared on raft's thread pool. */
		uint64_t format = 0;
		if (pread(fd, &format, sizeof(format), 0) != sizeof(format) || format == 0) {
			close(fd);
			continue;
		}
		REQUIRE(fstat(fd, &st) == 0);
		REQUIRE(extents_of(fd, &unwritten, &mapped));
		CHECK(!unwritten);
		CHECK_INT(mapped, st.st_size);
		close(fd);
		segments++;
	}
	closedir(d);
	CHECK(segments >= 1);
	tnode_close(&t);
	/* Zero-filled segments load: the data is there after a restart. */
	tnode_open(&t);
	tnode_check_n(&t, "k", 0, 20);
	tnode_close(&t);
}

uint64_t syncwrite_count(void); /* store/node/syncwrite.c */

TEST(replay_after_lmdb_lost_commits)
{
	struct tnode t;
	struct node_stats st;
	char db[400], saved[400];
	int64_t rev;

	tnode_config(&t, th_tmpdir());
	tnode_open(&t);
	tnode_put_n(&t, "k", 0, 10);
	tnode_close(&t);
	snprintf(db, sizeof(db), "%s/member/db/data.mdb", t.data_dir);
	snprintf(saved, sizeof(saved), "%s/saved.mdb", t.dir);
	th_copy_file(db, saved);

	tnode_open(&t);
	uint64_t written = syncwrite_count();
	tnode_put_n(&t, "k", 10, 20); /* one at a time: the loop writes each (syncwrite.c) */
	CHECK(syncwrite_count() - written >= 10);
	uint64_t applied = node_applied_index(t.node);
	tnode_close(&t);

	/* As after a machine crash with LMDB's last commits unsynced: the
	 * database is older than the raft log, whose last entries the loop
	 * wrote itself. */
	th_copy_file(saved, db);
	tnode_open(&t);
	/* raft commits the replayed entries once leader, with the next write */
	CHECK_INT(tnode_put(&t, "new", "x", &rev), 0);
	node_get_stats(t.node, &st);
	CHECK(st.applied_entries >= 11);
	CHECK_INT(rev, 22); /* 20 puts replayed exactly once, then this one */
	CHECK(node_applied_index(t.node) > applied);
	tnode_check_n(&t, "k", 0, 20);
	tnode_close(&t);
}

/* An open file of this process that is one of raft's finished segments
 * (any name but open-*): raft keeps none open once it moved past them. */
static int closed_segment_fds(const char *raft_dir)
{
	char fdpath[300], target[600];
	size_t dlen = strlen(raft_dir);
	int found = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		ssize_t len;
		snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%s", e->d_name);
		if ((len = readlink(fdpath, target, sizeof(target) - 1)) <= 0)
			continue;
		target[len] = '\0';
		if (strncmp(target, raft_dir, dlen) == 0 && target[dlen] == '/' &&
		    strncmp(target + dlen + 1, "open-", 5) != 0)
			found++;
	}
	closedir(d);
	return found;
}

/* Lone writes go through syncwrite.c's dup()s of each segment's
 * descriptors, made once per raft writer and closed when raft destroys the
 * writer's AIO context: across segment changes every write is still
 * written (and found after a restart), and no descriptor of a finished
 * segment stays open. */
TEST(lone_writes_across_segments)
{
	struct tnode t;
	char raft_dir[400], key[32], got[8192];
	static char val[3000];
	int64_t rev;
	int n = 0, segments = 0;
	DIR *d;
	struct dirent *e;

	tnode_config(&t, th_tmpdir());
	tnode_open(&t);
	snprintf(raft_dir, sizeof(raft_dir), "%s/member/raft", t.data_dir);
	memset(val, 'v', sizeof(val) - 1);
	uint64_t written = syncwrite_count();
	/* each write at most syncwrite.c's 8 KiB: the entry and the block it starts in */
	for (; n < 20000 && segments < 2; n++) {
		snprintf(key, sizeof(key), "seg%05d", n);
		val[0] = (char)('a' + n % 26);
		REQUIRE(tnode_put(&t, key, val, &rev) == 0);
		if (n % 500 == 499) {
			segments = 0;
			REQUIRE((d = opendir(raft_dir)) != NULL);
			while ((e = readdir(d)) != NULL)
				segments += e->d_name[0] >= '0' && e->d_name[0] <= '9';
			closedir(d);
		}
	}
	printf("  %d puts of %zu bytes, %d finished segments, %llu written by the loop\n", n,
	       sizeof(val) - 1, segments, (unsigned long long)(syncwrite_count() - written));
	CHECK(segments >= 2);
	CHECK(syncwrite_count() - written >= (uint64_t)n);
	CHECK_INT(closed_segment_fds(raft_dir), 0);
	tnode_close(&t);
	CHECK_INT(closed_segment_fds(raft_dir), 0);
	tnode_open(&t);
	for (int i = 0; i < n; i += 97) {
		snprintf(key, sizeof(key), "seg%05d", i);
		REQUIRE(tnode_get(&t, key, got, sizeof(got), &rev) == 1);
		CHECK_INT(strlen(got), sizeof(val) - 1);
		CHECK_INT(got[0], 'a' + i % 26);
	}
	tnode_close(&t);
}

/* ----------------------------------------------------------- group commit */

struct flood {
	struct tnode *t;
	int n, base;
	int *completed; /* loop thread only */
	int *errors;
	Etcdserverpb__PutRequest *msgs;
	struct node_req *reqs;
	char (*keys)[16];
};

static void flood_cb(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct flood *f = req->data;
	(void)len;
	free(resp);
	if (err)
		(*f->errors)++;
	(*f->completed)++;
}

static void *flood_thread(void *arg)
{
	struct flood *f = arg;
	for (int i = 0; i < f->n; i++) {
		Etcdserverpb__PutRequest *p = &f->msgs[i];
		etcdserverpb__put_request__init(p);
		snprintf(f->keys[i], sizeof(f->keys[i]), "g%06d", f->base + i);
		p->key = (ProtobufCBinaryData){strlen(f->keys[i]), (uint8_t *)f->keys[i]};
		p->value = (ProtobufCBinaryData){5, (uint8_t *)"value"};
		f->reqs[i] = (struct node_req){.data = f, .op = NODE_PUT, .msg = &p->base, .cb = flood_cb};
		node_submit(f->t->node, &f->reqs[i]);
	}
	return NULL;
}

struct done_flag {
	int *completed;
	int want;
	bool *flag;
};

static void poll_done(uv_check_t *h)
{
	struct done_flag *d = h->data;
	if (*d->completed >= d->want)
		*d->flag = true;
}

static void wait_snapshot(struct tnode *t);

/* Also: --snapshot-count counts requests, as etcd's does, not raft entries
 * (each a batch of them). */
TEST(group_commit)
{
	enum { THREADS = 4, PER = 2000 };
	struct tnode t;
	struct flood f[THREADS];
	pthread_t th[THREADS];
	int completed = 0, errors = 0;
	bool all = false;
	struct node_stats st0, st;
	uv_check_t chk;

	tnode_config(&t, th_tmpdir());
	t.cfg.snapshot_count = 2000;
	tnode_open(&t);
	tnode_put_n(&t, "warm", 0, 1);
	node_get_stats(t.node, &st0);
	double t0 = now_s();
	for (int i = 0; i < THREADS; i++) {
		f[i] = (struct flood){&t, PER, i * PER, &completed, &errors,
		                      calloc(PER, sizeof(Etcdserverpb__PutRequest)),
		                      calloc(PER, sizeof(struct node_req)), calloc(PER, 16)};
		pthread_create(&th[i], NULL, flood_thread, &f[i]);
	}
	struct done_flag d = {&completed, THREADS * PER, &all};
	uv_check_init(&t.loop, &chk);
	chk.data = &d;
	uv_check_start(&chk, poll_done);
	CHECK(tnode_run_until(&t, &all, 60000));
	uv_close((uv_handle_t *)&chk, NULL);
	double el = now_s() - t0;
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	node_get_stats(t.node, &st);
	uint64_t props = st.proposals - st0.proposals;
	printf("    %d puts from %d threads in %.3f s (%.0f/s): %llu raft entries, %llu LMDB "
	       "commits\n",
	       THREADS * PER, THREADS, el, THREADS * PER / el, (unsigned long long)props,
	       (unsigned long long)(st.commits - st0.commits));
	CHECK_INT(errors, 0);
	CHECK_INT(st.proposed_requests - st0.proposed_requests, THREADS * PER);
	CHECK(props * 10 < THREADS * PER); /* at least 10 requests per entry on average */
	wait_snapshot(&t);
	node_get_stats(t.node, &st);
	CHECK(props < 2000 && st.snapshots >= 1); /* 8000 requests in fewer than 2000 entries */
	char got[32];
	CHECK_INT(tnode_get(&t, "g000000", got, sizeof(got), NULL), 1);
	CHECK_INT(tnode_get(&t, "g007999", got, sizeof(got), NULL), 1);
	for (int i = 0; i < THREADS; i++) {
		free(f[i].msgs);
		free(f[i].reqs);
		free(f[i].keys);
	}
	tnode_close(&t);
}

/* --------------------------------------------------------------- snapshots */

static int count_files(const char *dir, const char *prefix, char *first_segment, size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	unsigned long long lowest = ~0ull;
	REQUIRE(d != NULL);
	while ((e = readdir(d)) != NULL) {
		unsigned long long a, b;
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
			n++;
		if (first_segment && sscanf(e->d_name, "%llu-%llu", &a, &b) == 2 && a < lowest) {
			lowest = a;
			snprintf(first_segment, len, "%s", e->d_name);
		}
	}
	closedir(d);
	return n;
}

static void wait_snapshot(struct tnode *t)
{
	struct node_stats st;
	for (int i = 0; i < 500; i++) {
		node_get_stats(t->node, &st);
		if (st.snapshots > 0)
			return;
		bool never = false;
		tnode_run_until(t, &never, 10);
	}
}

static void snapshot_setup(struct tnode *t, int keys)
{
	struct node_stats st;
	char raft_dir[400], first[256] = "";

	tnode_config(t, th_tmpdir());
	t->cfg.snapshot_count = 32;
	/* a smaller segment size would show truncation sooner; raft's 8 MiB
	 * segments hold all these entries, so check the snapshot files and the
	 * restore paths instead */
	tnode_open(t);
	tnode_put_n(t, "s", 0, keys);
	wait_snapshot(t);
	node_get_stats(t->node, &st);
	CHECK(st.snapshots >= 1);
	snprintf(raft_dir, sizeof(raft_dir), "%s/member/raft", t->data_dir);
	CHECK(count_files(raft_dir, "snapshot-", first, sizeof(first)) >= 2); /* data + .meta */
	tnode_close(t);
}

/* After a raft snapshot frees the log it covered, the heap goes back to
 * the system (malloc_trim) only once no entry was applied for 200 ms
 * (node.c trim_when_quiet): under load the freed memory is reused anyway,
 * and each trim's page returns cost TLB shootdowns. One trim for all the
 * snapshots of a burst, none while the puts go on, none without a new
 * snapshot. */
TEST(heap_trim_waits_for_quiet)
{
	struct tnode t;
	struct node_stats st;
	double slowest = 0;
	bool never = false;

	tnode_config(&t, th_tmpdir());
	t.cfg.snapshot_count = 32;
	tnode_open(&t);
	for (int i = 0; i < 400; i++) {
		char key[16];
		int64_t rev;
		double t0 = now_s();
		snprintf(key, sizeof(key), "h%d", i);
		REQUIRE(tnode_put(&t, key, "v", &rev) == 0);
		if (now_s() - t0 > slowest)
			slowest = now_s() - t0;
	}
	node_get_stats(t.node, &st);
	CHECK(st.snapshots >= 5);
	/* The loop runs inside each put only, so its quiet time is one put's. */
	if (slowest < 0.15)
		CHECK_INT(st.heap_trims, 0);
	else
		printf("  a put took %.0f ms: a trim during the puts was allowed\n", slowest * 1e3);
	tnode_run_until(&t, &never, 600);
	node_get_stats(t.node, &st);
	CHECK_INT(st.heap_trims, 1);
	uint64_t snapshots = st.snapshots;
	CHECK_INT(tnode_put(&t, "after", "v", NULL), 0);
	tnode_run_until(&t, &never, 400);
	node_get_stats(t.node, &st);
	CHECK_INT(st.snapshots, snapshots);
	CHECK_INT(st.heap_trims, 1);
	tnode_close(&t);
}

/* The newest snapshot's data file in raft_dir (not its .meta): its path and
 * size; -1 if none. */
static off_t snapshot_data_file(const char *raft_dir, char *path, size_t len)
{
	DIR *d = opendir(raft_dir);
	struct dirent *e;
	unsigned long long best_index = 0;
	off_t size = -1;
	REQUIRE(d != NULL);
	while ((e = readdir(d)) != NULL) {
		unsigned long long term, index, ts;
		struct stat st;
		char p[700];
		int used = 0;
		if (sscanf(e->d_name, "snapshot-%llu-%llu-%llu%n", &term, &index, &ts, &used) != 3 ||
		    e->d_name[used] != '\0' || (size >= 0 && index <= best_index))
			continue;
		snprintf(p, sizeof(p), "%s/%s", raft_dir, e->d_name);
		REQUIRE(stat(p, &st) == 0);
		best_index = index;
		size = st.st_size;
		snprintf(path, len, "%s", p);
	}
	closedir(d);
	return size;
}

TEST(snapshot_then_restart)
{
	struct tnode t;
	struct node_stats st;
	char raft_dir[400], snap[800];
	int64_t rev;

	snapshot_setup(&t, 300);
	/* raft's snapshot is the header alone (as etcd's holds no database):
	 * LMDB is the state */
	snprintf(raft_dir, sizeof(raft_dir), "%s/member/raft", t.data_dir);
	off_t size = snapshot_data_file(raft_dir, snap, sizeof(snap));
	CHECK(size > 0 && size < 128);
	tnode_open(&t);
	node_get_stats(t.node, &st);
	CHECK_INT(st.restores_skipped, 1); /* LMDB already held the snapshot */
	CHECK_INT(st.restores_loaded, 0);
	tnode_check_n(&t, "s", 0, 300);
	CHECK_INT(tnode_put(&t, "next", "x", &rev), 0);
	CHECK_INT(rev, 302);
	tnode_close(&t);
}

/* node_start with stderr into a file, whose text goes to out. */
static int start_logged(struct tnode *t, char *out, size_t len)
{
	char path[400];
	int saved, fd, rc;
	ssize_t r;

	snprintf(path, sizeof(path), "%s/start.log", t->dir);
	REQUIRE(uv_loop_init(&t->loop) == 0);
	REQUIRE(node_create(&t->node, &t->loop, &t->cfg, out, len) == 0);
	fflush(stderr);
	saved = dup(2);
	REQUIRE((fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) >= 0 && dup2(fd, 2) == 2);
	rc = node_start(t->node);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	r = pread(fd, out, len - 1, 0);
	out[r > 0 ? r : 0] = '\0';
	close(fd);
	fputs(out, stderr);
	t->closed = false;
	return rc;
}

/* A raft snapshot holds no database, and raft's log before it is gone: a
 * member whose LMDB was lost, or rolled back behind the snapshot, cannot be
 * rebuilt from its own data dir and must not start on an empty or old
 * state (etcd 3.4 refuses too: "failed to find database snapshot file"). */
TEST(snapshot_lost_database_fails_start)
{
	struct tnode t;
	char p[500], early[400], db_dir[400], log[8192];

	/* before any snapshot: this database is behind the one to come */
	tnode_config(&t, th_tmpdir());
	t.cfg.snapshot_count = 32;
	tnode_open(&t);
	tnode_put_n(&t, "e", 0, 5);
	tnode_close(&t);
	snprintf(db_dir, sizeof(db_dir), "%s/member/db", t.data_dir);
	snprintf(p, sizeof(p), "%s/data.mdb", db_dir);
	snprintf(early, sizeof(early), "%s/early.mdb", t.dir);
	th_copy_file(p, early);
	tnode_open(&t);
	tnode_put_n(&t, "s", 0, 300);
	wait_snapshot(&t);
	tnode_close(&t);

	/* rolled back */
	th_copy_file(early, p);
	CHECK(start_logged(&t, log, sizeof(log)) != 0);
	CHECK(strstr(log, "cannot start: the database in") != NULL);
	CHECK(strstr(log, db_dir) != NULL);
	CHECK(strstr(log, "raft's log was compacted up to index") != NULL);
	CHECK(strstr(log, "holds applied index 0,") == NULL);
	tnode_close(&t);

	/* lost */
	REQUIRE(unlink(p) == 0);
	snprintf(p, sizeof(p), "%s/lock.mdb", db_dir);
	unlink(p);
	CHECK(start_logged(&t, log, sizeof(log)) != 0);
	CHECK(strstr(log, db_dir) != NULL);
	CHECK(strstr(log, "holds applied index 0,") != NULL);
	tnode_close(&t);
}

/* Releases before snapshots without a database stored a compact LMDB copy
 * behind a version 1 header (magic "BOLLSNAP", u32 version 1, u32 flags 0,
 * u64 applied index, u64 0). Such a snapshot on disk still loads: skipped
 * while LMDB holds it, loaded when LMDB was lost. */
TEST(old_format_snapshot_loads)
{
	struct tnode t;
	struct node_stats st;
	char raft_dir[400], snap[800], db[400], copy[400];
	unsigned char hdr[32] = "BOLLSNAP";
	MDB_env *env;
	struct stat sb;
	int64_t rev;
	int in, out;

	snapshot_setup(&t, 300);
	snprintf(raft_dir, sizeof(raft_dir), "%s/member/raft", t.data_dir);
	REQUIRE(snapshot_data_file(raft_dir, snap, sizeof(snap)) > 0);
	/* the old format from this LMDB, written over raft's snapshot data file
	 * (its .meta holds raft's configuration, checksummed apart) */
	snprintf(db, sizeof(db), "%s/member/db", t.data_dir);
	snprintf(copy, sizeof(copy), "%s/copy.mdb", t.dir);
	REQUIRE(mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 64) == 0);
	REQUIRE(mdb_env_open(env, db, MDB_RDONLY, 0600) == 0);
	REQUIRE((out = open(copy, O_RDWR | O_CREAT | O_TRUNC, 0600)) >= 0);
	REQUIRE(mdb_env_copyfd2(env, out, MDB_CP_COMPACT) == 0);
	mdb_env_close(env);
	/* the old header's index: the raft snapshot's, as in its file name */
	unsigned long long term, applied = 0, ts;
	REQUIRE(sscanf(strrchr(snap, '/') + 1, "snapshot-%llu-%llu-%llu", &term, &applied, &ts) == 3);
	CHECK(applied > 32);
	hdr[8] = 1;
	for (int i = 0; i < 8; i++)
		hdr[16 + i] = (unsigned char)(applied >> (8 * i));
	REQUIRE((in = open(snap, O_WRONLY | O_TRUNC)) >= 0 && write(in, hdr, 32) == 32);
	REQUIRE(fstat(out, &sb) == 0 && lseek(out, 0, SEEK_SET) == 0);
	for (off_t done = 0; done < sb.st_size;) {
		char buf[65536];
		ssize_t r = read(out, buf, sizeof(buf));
		REQUIRE(r > 0 && write(in, buf, (size_t)r) == r);
		done += r;
	}
	close(in);
	close(out);

	t.cfg.snapshot_count = 100000; /* no newer snapshot from here on */
	tnode_open(&t); /* LMDB holds it */
	node_get_stats(t.node, &st);
	CHECK_INT(st.restores_skipped, 1);
	CHECK_INT(st.restores_loaded, 0);
	tnode_check_n(&t, "s", 0, 300);
	tnode_close(&t);

	snprintf(db, sizeof(db), "%s/member/db/data.mdb", t.data_dir);
	REQUIRE(unlink(db) == 0);
	tnode_open(&t); /* LMDB lost: the old snapshot's copy is loaded */
	node_get_stats(t.node, &st);
	CHECK_INT(st.restores_loaded, 1);
	CHECK_INT(tnode_put(&t, "next", "x", &rev), 0);
	CHECK_INT(rev, 302);
	tnode_check_n(&t, "s", 0, 300);
	tnode_close(&t);
}

TEST(log_truncation)
{
	/* Many entries with big values so raft's 8 MiB segments fill up and
	 * the snapshot lets raft delete the oldest ones. */
	struct tnode t;
	char raft_dir[400], first[256] = "", *big = malloc(64 * 1024 + 1);
	struct node_stats st;
	unsigned long long a = 0, b = 0;

	memset(big, 'x', 64 * 1024);
	big[64 * 1024] = '\0';
	tnode_config(&t, th_tmpdir());
	t.cfg.snapshot_count = 64;
	tnode_open(&t);
	for (int i = 0; i < 600; i++) {
		char k[32];
		snprintf(k, sizeof(k), "big%d", i % 50);
		REQUIRE(tnode_put(&t, k, big, NULL) == 0);
	}
	wait_snapshot(&t);
	node_get_stats(t.node, &st);
	CHECK(st.snapshots >= 1);
	snprintf(raft_dir, sizeof(raft_dir), "%s/member/raft", t.data_dir);
	count_files(raft_dir, "snapshot-", first, sizeof(first));
	CHECK(sscanf(first, "%llu-%llu", &a, &b) == 2);
	printf("    %llu snapshots; oldest closed segment now %s\n",
	       (unsigned long long)st.snapshots, first);
	CHECK(a > 1); /* the segment holding entry 1 is gone */
	tnode_close(&t);
	tnode_open(&t);
	char got[16];
	CHECK_INT(tnode_get(&t, "big49", got, sizeof(got), NULL), 1);
	tnode_close(&t);
	free(big);
}

/* ------------------------------------------------------------- node_read */

struct read_req {
	struct node_req req;
	bool done;
	int err;
	char val[16];
};

static void read_cb(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct read_req *r = (struct read_req *)req;
	Etcdserverpb__RangeResponse *rr = err ? NULL : etcdserverpb__range_response__unpack(NULL, len, resp);
	r->err = err;
	r->val[0] = 0;
	if (rr != NULL && rr->n_kvs == 1)
		snprintf(r->val, sizeof(r->val), "%.*s", (int)rr->kvs[0]->value.len,
		         (char *)rr->kvs[0]->value.data);
	if (rr)
		etcdserverpb__range_response__free_unpacked(rr, NULL);
	free(resp);
	r->done = true;
}

/* node_read of q into r (done at once when served in place). */
static void read_start(struct tnode *t, const Etcdserverpb__RangeRequest *q, struct read_req *r)
{
	*r = (struct read_req){.req = {.op = NODE_RANGE, .msg = &q->base, .cb = read_cb}};
	node_read(t->node, &r->req);
}

/* A linearizable node_read on a single member: through the loop until its
 * leadership applied an entry (the barrier), then on the calling thread
 * before node_read returns, seeing every acknowledged write (each committed
 * before its answer here: no commit delay); long scans still through the
 * loop. */
TEST(node_read_linearizable_single_member)
{
	struct tnode t;
	Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
	struct read_req r;

	tnode_config(&t, th_tmpdir());
	t.cfg.commit_delay_ms = 0;
	tnode_open(&t);
	q.key = (ProtobufCBinaryData){1, (uint8_t *)"k"};
	CHECK_INT(tnode_put(&t, "k", "v1", NULL), 0);
	read_start(&t, &q, &r);
	REQUIRE(tnode_run_until(&t, &r.done, 20000));
	CHECK_INT(r.err, 0);
	CHECK(strcmp(r.val, "v1") == 0);
	for (int i = 2; i <= 4; i++) {
		char v[8];
		snprintf(v, sizeof(v), "v%d", i);
		CHECK_INT(tnode_put(&t, "k", v, NULL), 0);
		read_start(&t, &q, &r);
		CHECK(r.done); /* no round: served in place */
		CHECK_INT(r.err, 0);
		CHECK(strcmp(r.val, v) == 0);
	}
	/* a scan without a small limit goes to the loop (not this thread) */
	q.range_end = (ProtobufCBinaryData){1, (uint8_t *)"l"};
	read_start(&t, &q, &r);
	CHECK(!r.done);
	REQUIRE(tnode_run_until(&t, &r.done, 20000));
	CHECK(r.err == 0 && strcmp(r.val, "v4") == 0);
	q.limit = 10;
	read_start(&t, &q, &r);
	CHECK(r.done && r.err == 0 && strcmp(r.val, "v4") == 0);
	tnode_close(&t);
}

/* ------------------------------------------------------------ maintenance */

struct reader {
	struct node *node;
	volatile bool stop;
	int ok, failed;
};

static void reader_cb(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct reader *r = req->data;
	Etcdserverpb__RangeResponse *rr = err ? NULL : etcdserverpb__range_response__unpack(NULL, len, resp);
	if (rr != NULL && rr->count == 1)
		r->ok++;
	else
		r->failed++;
	if (rr)
		etcdserverpb__range_response__free_unpacked(rr, NULL);
	free(resp);
}

static void *reader_thread(void *arg)
{
	struct reader *r = arg;
	Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
	q.key = (ProtobufCBinaryData){5, (uint8_t *)"k0001"};
	q.serializable = 1;
	while (!r->stop) {
		struct node_req req = {.data = r, .op = NODE_RANGE, .msg = &q.base, .cb = reader_cb};
		node_read_serializable(r->node, &req);
	}
	return NULL;
}

TEST(maintenance)
{
	struct tnode t;
	uint8_t *resp;
	size_t len;

	tnode_config(&t, th_tmpdir());
	tnode_open(&t);
	tnode_put_n(&t, "k", 0, 100);

	Etcdserverpb__StatusRequest sq = ETCDSERVERPB__STATUS_REQUEST__INIT;
	REQUIRE(tnode_do(&t, NODE_STATUS, &sq.base, &resp, &len) == 0);
	Etcdserverpb__StatusResponse *s = etcdserverpb__status_response__unpack(NULL, len, resp);
	REQUIRE(s != NULL);
	CHECK(strcmp(s->version, "3.4.23") == 0);
	CHECK(s->leader == node_member_id(t.node));
	CHECK_INT(s->header->revision, 101);
	CHECK(s->raftindex >= 101 && s->raftappliedindex == s->raftindex);
	CHECK(s->raftterm >= 1);
	CHECK(s->dbsize > 0 && s->dbsizeinuse > 0 && s->dbsizeinuse <= s->dbsize);
	etcdserverpb__status_response__free_unpacked(s, NULL);
	free(resp);

	Etcdserverpb__HashRequest hq = ETCDSERVERPB__HASH_REQUEST__INIT;
	uint32_t h1, h2;
	REQUIRE(tnode_do(&t, NODE_HASH, &hq.base, &resp, &len) == 0);
	Etcdserverpb__HashResponse *hr = etcdserverpb__hash_response__unpack(NULL, len, resp);
	h1 = hr->hash;
	etcdserverpb__hash_response__free_unpacked(hr, NULL);
	free(resp);
	REQUIRE(tnode_do(&t, NODE_HASH, &hq.base, &resp, &len) == 0);
	hr = etcdserverpb__hash_response__unpack(NULL, len, resp);
	h2 = hr->hash;
	etcdserverpb__hash_response__free_unpacked(hr, NULL);
	free(resp);
	CHECK(h1 == h2 && h1 != 0);

	Etcdserverpb__HashKVRequest hk = ETCDSERVERPB__HASH_KVREQUEST__INIT;
	REQUIRE(tnode_do(&t, NODE_HASH_KV, &hk.base, &resp, &len) == 0);
	Etcdserverpb__HashKVResponse *hkr = etcdserverpb__hash_kvresponse__unpack(NULL, len, resp);
	REQUIRE(hkr != NULL);
	CHECK_INT(hkr->header->revision, 101);
	etcdserverpb__hash_kvresponse__free_unpacked(hkr, NULL);
	free(resp);

	Etcdserverpb__MemberListRequest mq = ETCDSERVERPB__MEMBER_LIST_REQUEST__INIT;
	REQUIRE(tnode_do(&t, NODE_MEMBER_LIST, &mq.base, &resp, &len) == 0);
	Etcdserverpb__MemberListResponse *ml = etcdserverpb__member_list_response__unpack(NULL, len, resp);
	REQUIRE(ml != NULL && ml->n_members == 1);
	CHECK(ml->members[0]->id == node_member_id(t.node));
	CHECK(strcmp(ml->members[0]->name, "default") == 0);
	CHECK(ml->members[0]->n_peerurls == 1 &&
	      strcmp(ml->members[0]->peerurls[0], "http://127.0.0.1:2380") == 0);
	CHECK(ml->members[0]->n_clienturls == 1 &&
	      strcmp(ml->members[0]->clienturls[0], "http://localhost:2379") == 0);
	etcdserverpb__member_list_response__free_unpacked(ml, NULL);
	free(resp);

	Etcdserverpb__MoveLeaderRequest mv = ETCDSERVERPB__MOVE_LEADER_REQUEST__INIT;
	mv.targetid = node_member_id(t.node);
	CHECK_INT(tnode_do(&t, NODE_MOVE_LEADER, &mv.base, NULL, NULL), 0);
	mv.targetid = 12345;
	CHECK_INT(tnode_do(&t, NODE_MOVE_LEADER, &mv.base, NULL, NULL), BOLLARD_EBAD_LEADER_TRANSFEREE);

	/* Defragment while another thread reads serializably. */
	struct reader rd = {.node = t.node};
	pthread_t th;
	pthread_create(&th, NULL, reader_thread, &rd);
	Etcdserverpb__DefragmentRequest dq = ETCDSERVERPB__DEFRAGMENT_REQUEST__INIT;
	for (int i = 0; i < 5; i++) {
		tnode_put_n(&t, "k", 0, 20);
		CHECK_INT(tnode_do(&t, NODE_DEFRAGMENT, &dq.base, NULL, NULL), 0);
	}
	rd.stop = true;
	pthread_join(th, NULL);
	CHECK_INT(rd.failed, 0);
	CHECK(rd.ok > 0);
	tnode_check_n(&t, "k", 0, 100);

	/* A consistent copy for the Snapshot RPC, to a file and to a pipe. */
	char snap[400];
	uint64_t size = 0, psize = 0;
	snprintf(snap, sizeof(snap), "%s/snap.db", t.dir);
	int fd = open(snap, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	REQUIRE(fd >= 0);
	CHECK_INT(node_snapshot_to_fd(t.node, fd, &size), 0);
	close(fd);
	struct stat sb;
	CHECK(stat(snap, &sb) == 0 && (uint64_t)sb.st_size == size && size > 0);
	/* etcd 3.4's bbolt layout (issue 8): a valid bbolt file holding the 100 keys. */
	struct bbolt_db db;
	struct bbolt_stats bs;
	REQUIRE(bbolt_open_file(&db, snap, BBOLT_TRAILER_NONE) == 0);
	CHECK_INT(bbolt_check(&db, &bs), 0);
	CHECK(bs.keys >= 100);
	bbolt_close(&db);
	int pfd[2];
	REQUIRE(pipe(pfd) == 0);
	if (fork() == 0) { /* drain the pipe */
		char b[4096];
		close(pfd[1]);
		while (read(pfd[0], b, sizeof(b)) > 0)
			;
		_exit(0);
	}
	close(pfd[0]);
	CHECK_INT(node_snapshot_to_fd(t.node, pfd[1], &psize), 0);
	close(pfd[1]);
	CHECK(psize == size);
	tnode_close(&t);
}

/* ------------------------------------------------------------------ quota */

TEST(quota_nospace)
{
	struct tnode t;
	char *big = malloc(16 * 1024 + 1);
	int rc = 0, i;

	memset(big, 'q', 16 * 1024);
	big[16 * 1024] = '\0';
	tnode_config(&t, th_tmpdir());
	t.cfg.quota_backend_bytes = 256 * 1024;
	tnode_open(&t);
	for (i = 0; i < 200 && rc == 0; i++) {
		char k[16];
		snprintf(k, sizeof(k), "q%d", i);
		rc = tnode_put(&t, k, big, NULL);
	}
	CHECK_INT(rc, BOLLARD_ENO_SPACE);
	CHECK(i > 5);
	/* The alarm was proposed; give it a moment to apply. */
	bool never = false;
	tnode_run_until(&t, &never, 100);
	Etcdserverpb__AlarmRequest aq = ETCDSERVERPB__ALARM_REQUEST__INIT;
	uint8_t *resp;
	size_t len;
	aq.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET;
	REQUIRE(tnode_do(&t, NODE_ALARM, &aq.base, &resp, &len) == 0);
	Etcdserverpb__AlarmResponse *ar = etcdserverpb__alarm_response__unpack(NULL, len, resp);
	REQUIRE(ar != NULL);
	CHECK_INT(ar->n_alarms, 1);
	if (ar->n_alarms == 1) {
		CHECK(ar->alarms[0]->alarm == ETCDSERVERPB__ALARM_TYPE__NOSPACE);
		CHECK(ar->alarms[0]->memberid == node_member_id(t.node));
	}
	etcdserverpb__alarm_response__free_unpacked(ar, NULL);
	free(resp);
	/* Status lists the alarm as etcd does. */
	Etcdserverpb__StatusRequest sq = ETCDSERVERPB__STATUS_REQUEST__INIT;
	REQUIRE(tnode_do(&t, NODE_STATUS, &sq.base, &resp, &len) == 0);
	Etcdserverpb__StatusResponse *s = etcdserverpb__status_response__unpack(NULL, len, resp);
	REQUIRE(s != NULL);
	char want[80];
	snprintf(want, sizeof(want), "memberID:%llu alarm:NOSPACE ",
	         (unsigned long long)node_member_id(t.node));
	CHECK(s->n_errors == 1 && strcmp(s->errors[0], want) == 0);
	etcdserverpb__status_response__free_unpacked(s, NULL);
	free(resp);
	/* Deletes still work in capped mode. */
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	d.key = (ProtobufCBinaryData){2, (uint8_t *)"q0"};
	CHECK_INT(tnode_do(&t, NODE_DELETE_RANGE, &d.base, NULL, NULL), 0);
	tnode_close(&t);
	free(big);
}

/* ---------------------------------------------------------- auto-compaction */

TEST(periodic_auto_compaction)
{
	struct tnode t;
	bool never = false;

	tnode_config(&t, th_tmpdir());
	t.cfg.auto_compaction_mode = "periodic";
	t.cfg.auto_compaction_retention = "500ms";
	tnode_open(&t);
	tnode_put_n(&t, "a", 0, 10); /* revisions 2..11 */
	tnode_run_until(&t, &never, 1500);
	tnode_put_n(&t, "b", 0, 1);
	tnode_run_until(&t, &never, 300);
	/* Revision 1 is gone: the compactor compacted to a revision sampled
	 * one retention ago (>= 11). */
	Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
	q.key = (ProtobufCBinaryData){5, (uint8_t *)"a0000"};
	q.revision = 2;
	CHECK_INT(tnode_do(&t, NODE_RANGE, &q.base, NULL, NULL), BOLLARD_ECOMPACTED);
	tnode_close(&t);

	/* Bad settings are refused. */
	char err[128];
	struct node *n;
	uv_loop_t loop;
	uv_loop_init(&loop);
	t.cfg.auto_compaction_retention = "soon";
	CHECK(node_create(&n, &loop, &t.cfg, err, sizeof(err)) < 0);
	t.cfg.auto_compaction_mode = "sometimes";
	t.cfg.auto_compaction_retention = "1";
	CHECK(node_create(&n, &loop, &t.cfg, err, sizeof(err)) < 0);
	uv_loop_close(&loop);
}

/* ------------------------------------------------------------------ memory */

/* Resident kB of the mappings of path in this process (/proc/self/smaps). */
static long mapping_rss_kb(const char *path)
{
	char line[4096];
	size_t plen = strlen(path);
	bool in = false;
	unsigned long from, to;
	long kb, total = 0;
	FILE *f = fopen("/proc/self/smaps", "re");

	REQUIRE(f != NULL);
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t len = strcspn(line, "\n");
		if (sscanf(line, "%lx-%lx ", &from, &to) == 2) /* a mapping's first line */
			in = len >= plen && memcmp(line + len - plen, path, plen) == 0;
		else if (in && sscanf(line, "Rss: %ld kB", &kb) == 1)
			total += kb;
	}
	fclose(f);
	return total;
}

/* A node releasing its map's pages after 1 MiB and gap_ms, then 3000 puts
 * of 1 kB values on distinct keys; the data file's (path) resident pages
 * looked at every 20 puts: the most seen and how often they fell. */
static void put_watching_map(struct tnode *t, unsigned gap_ms, char *path, size_t plen,
                             long *most_kb, int *drops)
{
	char key[16], val[1025];
	long rss_kb, last_kb = 0;
	int64_t rev;

	tnode_config(t, th_tmpdir());
	t->cfg.map_release_bytes = 1 << 20;
	t->cfg.map_release_gap_ms = gap_ms;
	t->cfg.commit_delay_ms = 0; /* each put commits: fresh pages to map */
	tnode_open(t);
	snprintf(path, plen, "%s/member/db/data.mdb", t->data_dir);
	memset(val, 'v', 1024);
	val[1024] = '\0';
	*most_kb = 0;
	*drops = 0;
	for (int i = 0; i < 3000; i++) {
		snprintf(key, sizeof(key), "m%04d", i);
		CHECK_INT(tnode_put(t, key, val, &rev), 0);
		if (i % 20 == 19) {
			rss_kb = mapping_rss_kb(path);
			*drops += rss_kb < last_kb;
			*most_kb = rss_kb > *most_kb ? rss_kb : *most_kb;
			last_kb = rss_kb;
		}
	}
}

/* Each page of the data file that a read maps (puts read their path
 * through the tree, and each commit writes its pages anew) counts in the
 * process's RSS until dropped from the map (store/node/backend.c
 * node_env_release_tick): once the pages mapped grew by map_release_bytes
 * (and map_release_gap_ms passed since the last release) they go, while
 * the writes go on and once they stop. */
TEST(mapped_pages_leave_rss)
{
	struct tnode t;
	char path[400];
	bool never = false;
	int64_t size;
	struct stat st;
	long rss_kb, most_kb;
	int drops;

	put_watching_map(&t, 1, path, sizeof(path), &most_kb, &drops);
	REQUIRE(stat(path, &st) == 0);
	size = (int64_t)st.st_blocks * 512; /* the pages ever written */
	/* Idle: a release looks every 100 ms, on a worker. */
	for (int i = 0; i < 50 && (rss_kb = mapping_rss_kb(path)) > 1024 + 512; i++)
		tnode_run_until(&t, &never, 100);
	printf("    data file %lld kB on disk; its map's resident pages: at most %ld kB and "
	       "dropped %d times while written, %ld kB after\n", (long long)size / 1024, most_kb,
	       drops, rss_kb);
	CHECK(size > (3 << 20));
	CHECK(most_kb > 0);
	CHECK(drops >= 2); /* (with no release the map only grows) */
	CHECK(rss_kb <= 1024 + 512);

	/* A metrics render walks the free list and every key: those pages go
	 * too, with nothing committed (node_env_release_soon). */
	struct metrics_buf b = {0};
	long before = rss_kb, walked;
	REQUIRE(node_metrics_render(t.node, &b) == 0);
	metrics_buf_free(&b);
	walked = mapping_rss_kb(path);
	/* (a few pages may be mapped again meanwhile without a commit, e.g.
	 * by the periodic checkpoint's read: 192 kB were seen in CI, so the
	 * bound is a share of what the walk mapped) */
	for (int i = 0; i < 50 && (rss_kb = mapping_rss_kb(path)) * 4 > walked; i++)
		tnode_run_until(&t, &never, 100);
	printf("    a metrics render: %ld kB resident -> %ld kB, then %ld kB\n", before, walked,
	       rss_kb);
	CHECK(walked > before + 64);
	CHECK(rss_kb * 4 <= walked);
	tnode_close(&t);
}

/* data.mdb is allocated NODE_PREFILL_BYTES ahead of LMDB's last page
 * (store/node/backend.c node_env_prefill), which leaves LMDB's data alone:
 * everything written reads back after a reopen, and the file grows on. */
TEST(data_file_prefilled_ahead)
{
	struct tnode t;
	char path[400];
	bool never = false;
	struct stat st;
	int64_t used = 0;

	tnode_config(&t, th_tmpdir());
	tnode_open(&t);
	snprintf(path, sizeof(path), "%s/member/db/data.mdb", t.data_dir);
	for (int round = 0; round < 3; round++) {
		tnode_put_n(&t, "p", round * 2000, (round + 1) * 2000);
		used = node_db_size(t.node);
		for (int i = 0; i < 50; i++) {
			REQUIRE(stat(path, &st) == 0);
			if (st.st_size >= used + (int64_t)NODE_PREFILL_BYTES / 2)
				break;
			tnode_run_until(&t, &never, 20);
		}
		printf("    round %d: LMDB's pages %lld kB, the file %lld kB\n", round,
		       (long long)used / 1024, (long long)st.st_size / 1024);
		CHECK(st.st_size >= used + (int64_t)NODE_PREFILL_BYTES / 2);
	}
	tnode_close(&t);
	tnode_open(&t);
	tnode_check_n(&t, "p", 0, 6000);
	tnode_close(&t);
}

/* A release makes every page the next commits read fault back in, and a
 * busy write load reads pages all over the file (each commit writes its
 * pages to pages freed earlier, which the next one reads): releases come at
 * most once per map_release_gap_ms however fast the map grows. */
TEST(mapped_pages_leave_at_most_once_per_gap)
{
	struct tnode t;
	char path[400];
	long most_kb;
	int drops;

	put_watching_map(&t, 600000, path, sizeof(path), &most_kb, &drops);
	printf("    with a 600 s gap: at most %ld kB resident, dropped %d times\n", most_kb, drops);
	CHECK(most_kb > 3 << 10); /* grew by 3 release thresholds at least */
	CHECK(drops <= 1);        /* the first release may come at once */
	tnode_close(&t);
}

/* --------------------------------------------------------------- shutdown */

static void count_cb(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	int *c = req->data;
	(void)len;
	free(resp);
	c[err == 0 ? 0 : err == BOLLARD_ESTOPPED ? 1 : 2]++;
}

TEST(close_completes_everything)
{
	enum { N = 300 };
	struct tnode t;
	static Etcdserverpb__PutRequest msgs[N];
	static struct node_req reqs[N];
	int counts[3] = {0, 0, 0};
	char keys[N][16];

	tnode_config(&t, th_tmpdir());
	tnode_open(&t);
	for (int i = 0; i < N; i++) {
		etcdserverpb__put_request__init(&msgs[i]);
		snprintf(keys[i], sizeof(keys[i]), "c%d", i);
		msgs[i].key = (ProtobufCBinaryData){strlen(keys[i]), (uint8_t *)keys[i]};
		reqs[i] = (struct node_req){.data = counts, .op = NODE_PUT, .msg = &msgs[i].base,
		                            .cb = count_cb};
		node_submit(t.node, &reqs[i]);
		if (i == N / 2) /* half get proposed, half are still queued */
			uv_run(&t.loop, UV_RUN_NOWAIT);
	}
	struct node *n = t.node;
	node_close(n, NULL);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	CHECK_INT(counts[0] + counts[1], N);
	CHECK_INT(counts[2], 0);
	printf("    at close: %d applied, %d stopped\n", counts[0], counts[1]);
	/* After close, submissions fail at once. */
	struct node_req late = {.data = counts, .op = NODE_PUT, .msg = &msgs[0].base, .cb = count_cb};
	node_submit(n, &late);
	CHECK_INT(counts[1] + counts[0], N + 1);
	node_destroy(n);
	uv_loop_close(&t.loop);

	/* Whatever was acknowledged survived. */
	tnode_open(&t);
	char got[16];
	int present = 0;
	for (int i = 0; i < N; i++)
		present += tnode_get(&t, keys[i], got, sizeof(got), NULL) == 1;
	CHECK(present >= counts[0]);
	tnode_close(&t);
}

/* This binary's getrandom (the node's calls resolve here): the kernel's,
 * or, while getrandom_fails is set, a failure as without entropy. */
static atomic_bool getrandom_fails;

ssize_t getrandom(void *buf, size_t len, unsigned int flags)
{
	if (atomic_load(&getrandom_fails)) {
		errno = EAGAIN;
		return -1;
	}
	return syscall(SYS_getrandom, buf, len, flags);
}

/* Without the kernel's randomness a member still starts its request ids
 * at a point of its own at each start, even twice within a second: a
 * forwarded write's entry of the last run (matched by id and origin) must
 * not answer a request of this one. */
TEST(request_ids_without_getrandom)
{
	struct tnode t;
	uint64_t first, second;

	atomic_store(&getrandom_fails, true);
	tnode_config(&t, th_tmpdir());
	tnode_open(&t);
	first = t.node->next_id;
	CHECK_INT(tnode_put(&t, "a", "1", NULL), 0);
	tnode_close(&t);
	tnode_open(&t);
	second = t.node->next_id;
	CHECK_INT(tnode_put(&t, "b", "1", NULL), 0);
	tnode_close(&t);
	atomic_store(&getrandom_fails, false);
	CHECK(first != 0 && second != 0);
	/* far apart: no run's ids reach the other's */
	CHECK((first > second ? first - second : second - first) > (1ull << 32));
}

static uint64_t node_commits(struct tnode *t)
{
	struct node_stats st;
	node_get_stats(t->node, &st);
	return st.commits;
}

/* A node whose open write txn commits after delay_ms, or at max_events
 * revisions or max_bytes of entries (0: the defaults), that wrote key a0
 * (its leadership's own writes committed); returns its commits so far. */
static uint64_t open_delayed(struct tnode *t, unsigned delay_ms, uint64_t max_events,
                             uint64_t max_bytes)
{
	tnode_config(t, th_tmpdir());
	t->cfg.commit_delay_ms = delay_ms;
	if (max_events)
		t->cfg.commit_max_events = max_events;
	if (max_bytes)
		t->cfg.commit_max_bytes = max_bytes;
	tnode_open(t);
	tnode_put_n(t, "a", 0, 1);
	return node_commits(t);
}

/* Puts answered while a commit delay lasts share one LMDB commit (each
 * commit rewrites its tree paths: fsm.c commit_may_wait); without a delay
 * each loop phase commits. The timer commits once the delay is over. */
TEST(answered_writes_wait_for_one_commit)
{
	struct tnode t;
	uint64_t before, delayed, each;

	before = open_delayed(&t, 60000, 0, 0);
	tnode_put_n(&t, "a", 1, 101);
	{ /* nor does a peer's probe (it reads member records: committed at once) */
		Bollard__MemberStatusRequest probe = BOLLARD__MEMBER_STATUS_REQUEST__INIT;
		probe.id = 12345;
		CHECK_INT(tnode_do(&t, NODE_MEMBER_STATUS, &probe.base, NULL, NULL), 0);
	}
	delayed = node_commits(&t) - before;
	CHECK(t.node->wtxn != NULL);
	tnode_close(&t);

	before = open_delayed(&t, 0, 0, 0);
	tnode_put_n(&t, "a", 1, 101);
	each = node_commits(&t) - before;
	CHECK(t.node->wtxn == NULL);
	tnode_close(&t);
	printf("    100 puts one after another: %llu commits with a 60 s delay, %llu without\n",
	       (unsigned long long)delayed, (unsigned long long)each);
	CHECK_INT(delayed, 0);
	CHECK(each >= 100);

	before = open_delayed(&t, 20, 0, 0);
	tnode_put_n(&t, "a", 1, 2);
	CHECK(t.node->wtxn != NULL);
	for (int i = 0; i < 500 && t.node->wtxn != NULL; i++) /* the timer: 20 ms */
		uv_run(&t.loop, UV_RUN_ONCE);
	CHECK(t.node->wtxn == NULL);
	CHECK_INT(node_commits(&t) - before, 1);
	tnode_close(&t);
}

/* However long the delay, the open txn commits once it holds
 * cfg.commit_max_events revisions or cfg.commit_max_bytes of entries
 * (LMDB's write txn holds a bounded number of dirty pages). */
TEST(open_txn_commits_at_its_caps)
{
	struct tnode t;
	uint64_t before;
	char big[5000];

	before = open_delayed(&t, 60000, 10, 0);
	tnode_put_n(&t, "a", 1, 26); /* 25 puts */
	CHECK_INT(node_commits(&t) - before, 2);
	CHECK(t.node->wtxn != NULL); /* the last 5 */
	tnode_close(&t);

	before = open_delayed(&t, 60000, 0, 20000);
	memset(big, 'v', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (int i = 0; i < 3; i++)
		CHECK_INT(tnode_put(&t, "big", big, NULL), 0);
	CHECK_INT(node_commits(&t) - before, 0);
	CHECK_INT(tnode_put(&t, "big", big, NULL), 0); /* past 20000 bytes */
	CHECK_INT(node_commits(&t) - before, 1);
	tnode_close(&t);
}

/* As if no read had gone through the loop for a while (commit_may_wait). */
static void forget_reads(struct tnode *t)
{
	t->node->read_hopped_ns = 0;
}

/* A write answered but not yet committed is seen by every read that starts
 * after the answer: node_read (in place otherwise) and serializable reads go
 * through the loop, which commits first, and then commits before answering
 * for a while, so that reads among writes stay in place; a snapshot copy
 * waits for the commit. */
TEST(reads_see_answered_uncommitted_writes)
{
	struct tnode t;
	Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
	struct read_req r;
	char path[400];
	uint64_t size;
	int fd;

	tnode_config(&t, th_tmpdir());
	t.cfg.commit_delay_ms = 60000;
	tnode_open(&t);
	q.key = (ProtobufCBinaryData){1, (uint8_t *)"k"};
	CHECK_INT(tnode_put(&t, "k", "v1", NULL), 0);
	read_start(&t, &q, &r); /* the first: after the leadership's barrier */
	REQUIRE(tnode_run_until(&t, &r.done, 20000));
	CHECK(r.err == 0 && strcmp(r.val, "v1") == 0);
	forget_reads(&t);

	CHECK_INT(tnode_put(&t, "k", "v2", NULL), 0);
	CHECK(t.node->wtxn != NULL);
	read_start(&t, &q, &r);
	CHECK(!r.done); /* not in place: v2 is not committed */
	REQUIRE(tnode_run_until(&t, &r.done, 20000));
	CHECK(r.err == 0 && strcmp(r.val, "v2") == 0);
	CHECK(t.node->wtxn == NULL);
	/* reads come: for a while each write commits before its answer */
	CHECK_INT(tnode_put(&t, "k", "v2b", NULL), 0);
	CHECK(t.node->wtxn == NULL);
	read_start(&t, &q, &r);
	CHECK(r.done && r.err == 0 && strcmp(r.val, "v2b") == 0); /* in place */
	forget_reads(&t); /* that while is over */

	CHECK_INT(tnode_put(&t, "k", "v3", NULL), 0);
	CHECK(t.node->wtxn != NULL);
	q.serializable = true;
	read_start(&t, &q, &r);
	CHECK(!r.done);
	REQUIRE(tnode_run_until(&t, &r.done, 20000));
	CHECK(r.err == 0 && strcmp(r.val, "v3") == 0);
	read_start(&t, &q, &r);
	CHECK(r.done); /* nothing uncommitted: in place again */
	CHECK(r.err == 0 && strcmp(r.val, "v3") == 0);
	forget_reads(&t);

	CHECK_INT(tnode_put(&t, "k", "v4", NULL), 0);
	CHECK(t.node->wtxn != NULL);
	snprintf(path, sizeof(path), "%s/copy.db", t.dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0);
	CHECK_INT(node_snapshot_to_fd(t.node, fd, &size), 0);
	close(fd);
	CHECK(t.node->wtxn == NULL); /* committed before the copy */
	tnode_close(&t);
}

/* Answered writes still in the open transaction when the process dies are
 * in the raft log: the next start replays them. */
TEST(answered_uncommitted_writes_survive_kill)
{
	struct tnode t;
	int status;
	pid_t pid;

	tnode_config(&t, th_tmpdir());
	t.cfg.commit_delay_ms = 60000;
	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		tnode_open(&t);
		tnode_put_n(&t, "k", 0, 50);
		if (t.node->wtxn == NULL)
			_exit(2); /* the writes were committed: nothing tested */
		kill(getpid(), SIGKILL);
		_exit(1);
	}
	REQUIRE(waitpid(pid, &status, 0) == pid);
	REQUIRE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	tnode_open(&t);
	tnode_check_n(&t, "k", 0, 50);
	tnode_close(&t);
}

/* A watch stream that records the events it is sent (loop thread). */
struct event_log {
	struct node_watch_stream ws;
	int64_t revs[16];
	int n;
};

static int log_send(struct node_watch_stream *ws, uint8_t *buf, size_t len, bool force,
                    int64_t watch_id, size_t events_at)
{
	struct event_log *l = (struct event_log *)(void *)ws;
	Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(NULL, len, buf);
	(void)force, (void)watch_id, (void)events_at;
	REQUIRE(r != NULL);
	for (size_t i = 0; i < r->n_events && l->n < 16; i++)
		l->revs[l->n++] = r->events[i]->kv->mod_revision;
	etcdserverpb__watch_response__free_unpacked(r, NULL);
	free(buf);
	return WATCH_SENT;
}

static bool log_writable(struct node_watch_stream *ws)
{
	(void)ws;
	return true;
}

static void done_cb(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	(void)len;
	free(resp);
	CHECK_INT(err, 0);
	*(bool *)req->data = true;
}

/* A watcher does not turn the commit delay off: the hub reads each applied
 * batch from the open write transaction, so a watcher hears of a put
 * before its answer, and the put still waits for the shared commit. */
TEST(watchers_hear_answered_uncommitted_writes)
{
	Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	Etcdserverpb__WatchRequest q = ETCDSERVERPB__WATCH_REQUEST__INIT;
	struct event_log l = {.ws = {.send = log_send, .writable = log_writable}};
	struct node_watch_req wr = {.req = {.op = NODE_WATCH, .msg = &q.base, .cb = done_cb},
	                            .stream = &l.ws};
	struct node_watch_req close_req = {.req = {.op = NODE_WATCH_CLOSE, .cb = done_cb},
	                                   .stream = &l.ws};
	struct tnode t;
	uint64_t before;
	int64_t rev;
	bool done = false;

	tnode_config(&t, th_tmpdir());
	t.cfg.commit_delay_ms = 60000;
	tnode_open(&t);
	CHECK_INT(tnode_put(&t, "w", "0", NULL), 0);
	c.key = (ProtobufCBinaryData){1, (uint8_t *)"w"};
	q.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	q.create_request = &c;
	wr.req.data = &done;
	node_submit(t.node, &wr.req);
	REQUIRE(tnode_run_until(&t, &done, 20000));
	CHECK_INT(l.n, 0);

	before = node_commits(&t);
	for (int i = 1; i <= 3; i++) {
		CHECK_INT(tnode_put(&t, "w", "v", &rev), 0);
		CHECK_INT(l.n, i); /* sent before the answer */
		CHECK_INT(l.revs[l.n - 1], rev);
	}
	CHECK(t.node->wtxn != NULL);
	CHECK_INT(node_commits(&t) - before, 0);

	done = false;
	close_req.req.data = &done;
	node_submit(t.node, &close_req.req);
	REQUIRE(tnode_run_until(&t, &done, 20000));
	tnode_close(&t);
}

static const struct th_test tests[] = {
	TEST_ENTRY(ids_match_etcd),
	TEST_ENTRY(put_range_txn_delete),
	TEST_ENTRY(restart_keeps_data_without_reapplying),
	TEST_ENTRY(open_segments_zero_filled),
	TEST_ENTRY(replay_after_lmdb_lost_commits),
	TEST_ENTRY(lone_writes_across_segments),
	TEST_ENTRY(group_commit),
	TEST_ENTRY(heap_trim_waits_for_quiet),
	TEST_ENTRY(snapshot_then_restart),
	TEST_ENTRY(snapshot_lost_database_fails_start),
	TEST_ENTRY(old_format_snapshot_loads),
	TEST_ENTRY(log_truncation),
	TEST_ENTRY(node_read_linearizable_single_member),
	TEST_ENTRY(answered_writes_wait_for_one_commit),
	TEST_ENTRY(open_txn_commits_at_its_caps),
	TEST_ENTRY(reads_see_answered_uncommitted_writes),
	TEST_ENTRY(answered_uncommitted_writes_survive_kill),
	TEST_ENTRY(watchers_hear_answered_uncommitted_writes),
	TEST_ENTRY(maintenance),
	TEST_ENTRY(quota_nospace),
	TEST_ENTRY(periodic_auto_compaction),
	TEST_ENTRY(mapped_pages_leave_rss),
	TEST_ENTRY(mapped_pages_leave_at_most_once_per_gap),
	TEST_ENTRY(data_file_prefilled_ahead),
	TEST_ENTRY(close_completes_everything),
	TEST_ENTRY(request_ids_without_getrandom),
};

int main(int argc, char **argv)
{
	return th_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
