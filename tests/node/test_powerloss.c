/* test_powerloss.c - LMDB's pinned checkpoints (store/node/checkpoint.c) on a
 * real node: the worst data file a power loss can leave (metas as the
 * killed process left them, every other page as of the last checkpoint)
 * serves every acknowledged write; the side file never names a state ahead
 * of the last completed fdatasync of data.mdb (this binary wraps
 * fdatasync); raft's log is never truncated past the checkpointed applied
 * index; a clean close leaves nothing to replay; a checkpoint of another
 * inode is not applied. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "node/node_int.h"

#define NEVER_MS 3600000u

/* A node whose checkpoints come only at open, snapshots and close: no timer
 * (an interval no test outlives) and no commit count. */
static void config_no_periodic_checkpoints(struct tnode *t)
{
	tnode_config(t, th_tmpdir());
	t->cfg.backend_batch_interval_ms = NEVER_MS;
	t->cfg.checkpoint_commits = UINT_MAX;
	t->cfg.commit_delay_ms = 0; /* a commit per put: past the checkpoint, in the file */
}

/* The newest txnid of the two LMDB metas at the start of the file fd. */
static uint64_t newest_txnid(int fd)
{
	uint64_t a = 0, b = 0;
	long ps = sysconf(_SC_PAGESIZE);
	if (pread(fd, &a, 8, 16 + 128) != 8 || pread(fd, &b, 8, ps + 16 + 128) != 8)
		return 0;
	return a > b ? a : b;
}

static uint64_t file_newest_txnid(const char *path)
{
	int fd = open(path, O_RDONLY);
	uint64_t t;
	REQUIRE(fd >= 0);
	t = newest_txnid(fd);
	close(fd);
	return t;
}

/* ------------------------------------------------- the power-loss image */

/* db as a power loss may leave it: its two meta pages as they are now (the
 * kernel may write those first), every other page as in saved (the data
 * file when the last checkpoint was made), in db's own inode. */
static void power_loss_image(const char *db, const char *saved)
{
	static unsigned char metas[2 * 65536];
	long ps = sysconf(_SC_PAGESIZE);
	int fd = open(db, O_RDONLY);

	REQUIRE(fd >= 0 && ps <= 65536 && pread(fd, metas, 2 * (size_t)ps, 0) == 2 * ps);
	close(fd);
	th_copy_file(saved, db);
	fd = open(db, O_WRONLY);
	REQUIRE(fd >= 0 && pwrite(fd, metas, 2 * (size_t)ps, 0) == 2 * ps);
	close(fd);
}

/* A member's 40 writes and a clean stop: a checkpoint of its final state S.
 * dbdir (400 bytes) and db (440): its member/db directory and data file. */
static void writes_checkpointed(struct tnode *t, char *dbdir, char *db)
{
	config_no_periodic_checkpoints(t);
	tnode_open(t);
	tnode_put_n(t, "k", 0, 40);
	tnode_close(t);
	snprintf(dbdir, 400, "%s/member/db", t->data_dir);
	snprintf(db, 440, "%s/data.mdb", dbdir);
}

/* Then 160 more acknowledged writes (in the raft log, O_DSYNC) by the member
 * in a child process killed (SIGKILL) with no checkpoint since S. */
static void more_writes_then_killed(struct tnode *t)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		tnode_open(t);
		tnode_put_n(t, "k", 40, 200);
		kill(getpid(), SIGKILL);
		_exit(1);
	}
	REQUIRE(waitpid(pid, &status, 0) == pid);
	REQUIRE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/* Writes are made and the member stopped cleanly (a checkpoint of its final
 * state S); a copy of data.mdb is taken (S's pages, all on disk). Then a
 * member makes more acknowledged writes with no checkpoint and is killed
 * (SIGKILL). The image: that copy, with the two meta pages the killed
 * process left (the kernel may write those first), the side file as it is.
 * Without the checkpoint LMDB follows those metas to pages never written
 * (a wrong or corrupt tree); with it the member goes back to S and replays
 * the raft log: every acknowledged write is served. */
TEST(power_loss_image_serves_acknowledged_writes)
{
	struct tnode t;
	struct node_stats st;
	struct node_ckpt_info ck;
	char db[440], dbdir[400], saved[400];
	uint64_t s_txnid;
	int64_t rev;

	writes_checkpointed(&t, dbdir, db);
	snprintf(saved, sizeof(saved), "%s/at-checkpoint.mdb", t.dir);
	th_copy_file(db, saved);
	s_txnid = file_newest_txnid(saved);
	more_writes_then_killed(&t);

	power_loss_image(db, saved);
	/* It is a power loss's only if no later state was checkpointed, and
	 * it tests something only if the metas name a later one. */
	REQUIRE(node_ckpt_read(dbdir, &ck) == 0);
	CHECK_INT(ck.txnid, s_txnid);
	CHECK(file_newest_txnid(db) > s_txnid);

	tnode_open(&t);
	node_get_stats(t.node, &st);
	CHECK_INT(st.checkpoints_recovered, 1);
	CHECK_INT(tnode_put(&t, "after", "x", &rev), 0);
	CHECK_INT(rev, 202); /* 200 puts, each applied once, then this one */
	tnode_check_n(&t, "k", 0, 200);
	tnode_close(&t);
}

/* ------------------------------------- never ahead of a completed sync */

/* This binary's fdatasync: of data.mdb, it records the newest LMDB txnid in
 * the file when the sync began once the sync has returned (every commit
 * before it is on disk); of the side file, it checks that the slot about
 * to be made durable names no later txnid. */
static uint64_t synced_txnid, side_checks, side_violations;
static char watch_db_dir[400];

static bool fd_is(int fd, const char *name)
{
	char link[64], path[600];
	ssize_t n;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, path, sizeof(path) - 1)) <= 0)
		return false;
	path[n] = '\0';
	size_t l = strlen(name), pl = (size_t)n;
	return watch_db_dir[0] && pl > l && strcmp(path + pl - l, name) == 0 &&
	       strncmp(path, watch_db_dir, strlen(watch_db_dir)) == 0;
}

int fdatasync(int fd)
{
	static int (*real)(int);
	uint64_t before = 0;
	bool data = false;
	int rc;

	if (real == NULL)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	if (fd_is(fd, "/data.mdb")) {
		data = true;
		before = newest_txnid(fd);
	} else if (fd_is(fd, "/checkpoint")) {
		struct node_ckpt_info ck;
		if (node_ckpt_read(watch_db_dir, &ck) == 0) {
			__atomic_add_fetch(&side_checks, 1, __ATOMIC_SEQ_CST);
			if (ck.txnid > __atomic_load_n(&synced_txnid, __ATOMIC_SEQ_CST))
				__atomic_add_fetch(&side_violations, 1, __ATOMIC_SEQ_CST);
		}
	}
	rc = real(fd);
	if (data && rc == 0 && before > __atomic_load_n(&synced_txnid, __ATOMIC_SEQ_CST))
		__atomic_store_n(&synced_txnid, before, __ATOMIC_SEQ_CST);
	return rc;
}

TEST(checkpoint_never_ahead_of_sync)
{
	struct tnode t;
	struct node_stats st;
	struct node_ckpt_info ck;
	char dbdir[400];
	uint64_t applied;
	int i = 0;

	tnode_config(&t, th_tmpdir());
	t.cfg.backend_batch_interval_ms = 20; /* many checkpoints under the writes */
	snprintf(dbdir, sizeof(dbdir), "%s/member/db", t.data_dir);
	snprintf(watch_db_dir, sizeof(watch_db_dir), "%s", dbdir);
	tnode_open(&t);
	/* Until a few periodic checkpoints were written under writes (bounded:
	 * a loaded machine takes longer, not differently). */
	for (; i < 20000; i++) {
		tnode_put_n(&t, "w", i, i + 1);
		node_get_stats(t.node, &st);
		if (st.checkpoints >= 8 && i >= 200)
			break;
	}
	node_get_stats(t.node, &st);
	printf("    %d puts, %llu checkpoints, %llu side file syncs checked\n", i + 1,
	       (unsigned long long)st.checkpoints, (unsigned long long)side_checks);
	CHECK(st.checkpoints >= 8);
	CHECK(side_checks >= st.checkpoints);
	CHECK_INT(side_violations, 0);
	applied = node_applied_index(t.node);
	tnode_close(&t);
	/* Clean close: the side file names the final state. */
	REQUIRE(node_ckpt_read(dbdir, &ck) == 0);
	CHECK_INT(ck.applied, applied);
	CHECK_INT(side_violations, 0);
	watch_db_dir[0] = '\0';
}

/* ---------------------------------------------------- log truncation */

static void wait_snapshots(struct tnode *t, uint64_t n)
{
	struct node_stats st;
	for (int i = 0; i < 6000; i++) {
		node_get_stats(t->node, &st);
		if (st.snapshots >= n)
			return;
		bool never = false;
		tnode_run_until(t, &never, 10);
	}
}

/* The lowest first index of raft's closed segments ("<first>-<last>") and
 * the highest raft snapshot index ("snapshot-<term>-<index>-<time>"). */
static void raft_files(const char *dir, unsigned long long *first, unsigned long long *snap)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	*first = ~0ull;
	*snap = 0;
	REQUIRE(d != NULL);
	while ((e = readdir(d)) != NULL) {
		unsigned long long a, b, c;
		if (sscanf(e->d_name, "snapshot-%llu-%llu-%llu", &a, &b, &c) == 3 && b > *snap)
			*snap = b;
		else if (sscanf(e->d_name, "%llu-%llu", &a, &b) == 2 && a < *first)
			*first = a;
	}
	closedir(d);
}

/* With no periodic checkpoint, raft snapshots alone must keep the side
 * file at or past every index raft dropped from its log. */
TEST(log_truncation_behind_checkpoint)
{
	struct tnode t;
	struct node_stats st;
	struct node_ckpt_info ck;
	char raft_dir[400], dbdir[400], *big = malloc(64 * 1024 + 1);
	unsigned long long first, snap;

	memset(big, 'x', 64 * 1024);
	big[64 * 1024] = '\0';
	config_no_periodic_checkpoints(&t);
	t.cfg.snapshot_count = 64;
	tnode_open(&t);
	snprintf(raft_dir, sizeof(raft_dir), "%s/member/raft", t.data_dir);
	snprintf(dbdir, sizeof(dbdir), "%s/member/db", t.data_dir);
	for (int i = 0; i < 600; i++) {
		char k[32];
		snprintf(k, sizeof(k), "big%d", i % 50);
		REQUIRE(tnode_put(&t, k, big, NULL) == 0);
		if (i % 100 == 99) {
			/* what is on disk now: raft's files, then the side file
			 * (which only moves forward) */
			raft_files(raft_dir, &first, &snap);
			REQUIRE(node_ckpt_read(dbdir, &ck) == 0);
			if (snap > 0)
				CHECK(ck.applied >= snap);
			if (first != ~0ull)
				CHECK(ck.applied + 1 >= first);
		}
	}
	wait_snapshots(&t, 2);
	node_get_stats(t.node, &st);
	raft_files(raft_dir, &first, &snap);
	REQUIRE(node_ckpt_read(dbdir, &ck) == 0);
	printf("    %llu snapshots, newest at %llu; oldest segment from %llu; checkpoint at "
	       "applied index %llu\n", (unsigned long long)st.snapshots, snap, first,
	       (unsigned long long)ck.applied);
	CHECK(st.snapshots >= 2);
	CHECK(first > 1); /* raft did drop entries */
	CHECK(snap > 0 && ck.applied >= snap);
	CHECK(ck.applied + 1 >= first);
	tnode_close(&t);
	free(big);
}

/* ------------------------------------------------------- clean close */

TEST(clean_close_needs_no_replay)
{
	struct tnode t;
	struct node_stats st;
	struct node_ckpt_info ck;
	char dbdir[400], db[440];
	uint64_t applied;
	int64_t rev;

	config_no_periodic_checkpoints(&t);
	tnode_open(&t);
	tnode_put_n(&t, "k", 0, 50);
	applied = node_applied_index(t.node);
	tnode_close(&t);
	snprintf(dbdir, sizeof(dbdir), "%s/member/db", t.data_dir);
	snprintf(db, sizeof(db), "%s/data.mdb", dbdir);
	REQUIRE(node_ckpt_read(dbdir, &ck) == 0);
	CHECK_INT(ck.applied, applied);
	CHECK_INT(ck.txnid, file_newest_txnid(db));

	tnode_open(&t);
	node_get_stats(t.node, &st);
	CHECK_INT(st.checkpoints_recovered, 0);
	CHECK_INT(node_applied_index(t.node), applied);
	CHECK_INT(tnode_put(&t, "after", "x", &rev), 0);
	CHECK_INT(rev, 52);
	node_get_stats(t.node, &st);
	CHECK_INT(st.applied_entries, 1); /* nothing replayed */
	tnode_check_n(&t, "k", 0, 50);
	tnode_close(&t);
}

/* Defragmentation swaps the data file: the new one is checkpointed before
 * its first write, and a power-loss image of it (metas of later writes,
 * pages as swapped in) still serves every acknowledged write. */
TEST(power_loss_after_defragment)
{
	struct tnode t;
	struct node_ckpt_info ck;
	char db[440], dbdir[400], saved[400];
	int64_t rev;
	int status;
	pid_t pid;

	config_no_periodic_checkpoints(&t);
	snprintf(dbdir, sizeof(dbdir), "%s/member/db", t.data_dir);
	snprintf(db, sizeof(db), "%s/data.mdb", dbdir);
	snprintf(saved, sizeof(saved), "%s/at-defrag.mdb", t.dir);
	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		Etcdserverpb__DefragmentRequest d = ETCDSERVERPB__DEFRAGMENT_REQUEST__INIT;
		uint8_t *resp = NULL;
		size_t len;
		tnode_open(&t);
		tnode_put_n(&t, "k", 0, 60);
		REQUIRE(tnode_do(&t, NODE_DEFRAGMENT, &d.base, &resp, &len) == 0);
		free(resp);
		th_copy_file(db, saved); /* nothing written since the swap */
		tnode_put_n(&t, "k", 60, 160);
		kill(getpid(), SIGKILL);
		_exit(1);
	}
	REQUIRE(waitpid(pid, &status, 0) == pid);
	REQUIRE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	REQUIRE(node_ckpt_read(dbdir, &ck) == 0);
	CHECK_INT(ck.txnid, file_newest_txnid(saved));
	power_loss_image(db, saved);
	CHECK(file_newest_txnid(db) > ck.txnid);

	tnode_open(&t);
	CHECK_INT(tnode_put(&t, "after", "x", &rev), 0);
	CHECK_INT(rev, 162);
	tnode_check_n(&t, "k", 0, 160);
	tnode_close(&t);
}

/* The side file's slot names the data file by device and inode. A data.mdb
 * that is another file (here: the same bytes copied into a new inode and
 * renamed over it, as a hand-made restore would) is not touched at open:
 * its metas, newer than the checkpoint, are its own, and it serves what
 * they name. The same file in its own inode goes back to the checkpoint
 * (power_loss_image_serves_acknowledged_writes). */
TEST(checkpoint_of_another_inode_ignored)
{
	struct tnode t;
	struct node_stats st;
	struct node_ckpt_info ck;
	struct stat before, after;
	char db[440], dbdir[400], copy[440];
	int64_t rev;

	writes_checkpointed(&t, dbdir, db);
	more_writes_then_killed(&t);
	snprintf(copy, sizeof(copy), "%s/data.mdb.copy", dbdir);
	/* The slot names this file and an older state than its metas: in its
	 * own inode the file would be taken back to the checkpoint. */
	REQUIRE(node_ckpt_read(dbdir, &ck) == 0);
	REQUIRE(stat(db, &before) == 0);
	CHECK_INT(ck.ino, (uint64_t)before.st_ino);
	CHECK_INT(ck.dev, (uint64_t)before.st_dev);
	CHECK(file_newest_txnid(db) > ck.txnid);

	th_copy_file(db, copy);
	REQUIRE(rename(copy, db) == 0);
	REQUIRE(stat(db, &after) == 0);
	REQUIRE(after.st_ino != before.st_ino);

	tnode_open(&t);
	node_get_stats(t.node, &st);
	CHECK_INT(st.checkpoints_recovered, 0);
	CHECK_INT(tnode_put(&t, "after", "x", &rev), 0);
	CHECK_INT(rev, 202);
	tnode_check_n(&t, "k", 0, 200);
	tnode_close(&t);
}

/* Overwrites of one key by one client, with no timer: returns the data
 * file's size after them and the checkpoints they caused. */
static int64_t overwrite_one_key(unsigned checkpoint_commits, uint64_t *checkpoints)
{
	struct tnode t;
	struct node_stats st;
	uint64_t before;
	int64_t rev, size;
	char val[101];

	memset(val, 'v', 100);
	val[100] = '\0';
	config_no_periodic_checkpoints(&t);
	t.cfg.checkpoint_commits = checkpoint_commits;
	tnode_open(&t);
	node_get_stats(t.node, &st);
	before = st.checkpoints; /* the one at open */
	for (int i = 0; i < 300; i++) {
		CHECK_INT(tnode_put(&t, "k", val, &rev), 0);
		/* a checkpoint that put started ends before the next commit:
		 * how far the file grows then depends on the trigger alone, not
		 * on how fast this machine's fdatasync keeps up */
		while (t.node->ckpt.busy)
			uv_run(&t.loop, UV_RUN_ONCE);
	}
	node_get_stats(t.node, &st);
	*checkpoints = st.checkpoints - before;
	size = node_db_size(t.node);
	tnode_close(&t);
	return size;
}

/* While the durable checkpoint's pin is held LMDB reuses no page freed
 * since: without checkpoints after commits, 300 lone commits each take
 * fresh pages; with them (cfg.checkpoint_commits, once the file grows) the
 * freed pages are reused and the file stays small. */
TEST(commit_checkpoints_bound_file_growth)
{
	uint64_t with_ckpts, without_ckpts;
	int64_t with_size = overwrite_one_key(NODE_CHECKPOINT_COMMITS, &with_ckpts);
	int64_t without_size = overwrite_one_key(UINT_MAX, &without_ckpts);

	printf("    300 overwrites: %lld bytes, %llu checkpoints; without: %lld bytes, %llu\n",
	       (long long)with_size, (unsigned long long)with_ckpts, (long long)without_size,
	       (unsigned long long)without_ckpts);
	CHECK_INT(without_ckpts, 0);
	CHECK(with_ckpts > 0);
	CHECK(with_size * 3 < without_size);
}

int main(int argc, char **argv)
{
	static const struct th_test tests[] = {
		TEST_ENTRY(power_loss_image_serves_acknowledged_writes),
		TEST_ENTRY(checkpoint_never_ahead_of_sync),
		TEST_ENTRY(log_truncation_behind_checkpoint),
		TEST_ENTRY(clean_close_needs_no_replay),
		TEST_ENTRY(power_loss_after_defragment),
		TEST_ENTRY(checkpoint_of_another_inode_ignored),
		TEST_ENTRY(commit_checkpoints_bound_file_growth),
	};
	return th_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
