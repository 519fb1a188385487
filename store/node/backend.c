/* backend.c - the LMDB environment of a node: opening it, swapping its file
 * (defragmentation, snapshot restore), sizes, the whole-database hash and
 * consistent copies for snapshots.
 *
 * Durability: the environment is opened MDB_NOSYNC. The raft log (written
 * with O_DSYNC by raft's libuv backend) is the durability point: a reply is
 * sent only after the entry is durable in the log AND applied to LMDB in a
 * transaction that also records the entry's raft index
 * (mvcc_set_applied_index), committed (not necessarily synced) or still
 * open (fsm.c commit_may_wait: a crash loses it, and the log replays it).
 * After a process crash the page cache still holds every committed LMDB
 * transaction. After a power
 * loss the kernel may have written LMDB's meta page before the pages it
 * names, or pages later commits reused: checkpoint.c keeps a state of LMDB
 * that is whole on disk (its pages synced and pinned by a read transaction
 * until a newer one is durable, its meta saved in a side file), puts it
 * back at open, and the raft log replays from its applied index (entries at
 * or below it are skipped, so nothing is applied twice). The one rule that
 * makes this safe is that raft may only drop log entries at or below a
 * checkpoint: the FSM snapshot callback makes its state a checkpoint before
 * raft writes the snapshot and truncates the log (fsm.c). Checkpoints are
 * also taken every --backend-batch-interval and every few commits
 * (checkpoint.c: node_ckpt_committed), around a swap of the file and
 * at close (then nothing is replayed at the next open).
 *
 * Not MDB_WRITEMAP: a write transaction builds its pages in memory LMDB
 * keeps for reuse and its commit pwrite()s them; the map is read-only. With
 * the pages written through a shared writable map, every write to a page
 * the last checkpoint's fdatasync had cleaned (or a release had dropped)
 * took a page fault, and while the checkpoint's pin holds LMDB writes fresh
 * pages: at 10 clients 1.6-1.9 faults and 80-88 us of server CPU per put,
 * at one client 11 faults and 430 us, against 0.1-0.6 faults and 33-53 us,
 * 0.9 faults and 200-240 us with
 * the write calls (faults are dear in a VM). The database's size is its
 * last page (node_db_size); the file grows as pages are written. A full
 * disk fails a commit (ENOSPC), which stops the member.
 *
 * MDB_NORDAHEAD (LMDB's madvise(MADV_RANDOM) on the map): a page fault on
 * the map then brings in one page, not a readahead window. Kernels whose
 * ext4 caches files in large folios (6.16 on) otherwise fill the map with
 * folios of up to a readahead window, holes at the file's end included,
 * and a write to one 4 KiB page of a clean folio dirties all of it
 * (block_page_mkwrite): each checkpoint's fdatasync (checkpoint.c) then
 * wrote back whole folios for the few pages a commit changed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "core/errors.h"
#include "core/fdio.h"
#include "core/etcdsnap.h"
#include "node/log.h"
#include "raftcmd.pb-c.h"
#include "node/node_int.h"

#define NODE_EXTRA_DBS 8 /* named databases beyond mvcc's (alarms, leases, ...) */
#define ENV_FLAGS (MDB_NOTLS | MDB_NOSYNC | MDB_NORDAHEAD) /* see the top */
#define ENV_RELEASE_MS 100 /* how often node_env_release_tick looks */

int node_mkdirs(const char *path, char *errbuf, size_t errlen)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len >= sizeof(buf)) {
		snprintf(errbuf, errlen, "path too long: %s", path);
		return -ENAMETOOLONG;
	}
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(buf, 0700) < 0 && errno != EEXIST) {
				int e = errno;
				snprintf(errbuf, errlen, "cannot create %s: %s", buf, strerror(e));
				return -e;
			}
			*p = c;
			if (c == '\0')
				break;
		}
	}
	return 0;
}

static void *env_map_address(MDB_env *env);

static int env_open(struct node *n, char *errbuf, size_t errlen)
{
	MDB_txn *txn;
	int rc;

	if ((rc = node_ckpt_recover(n, errbuf, errlen)) < 0)
		return rc;
	if ((rc = mdb_env_create(&n->env)) != 0)
		goto fail;
	if ((rc = mdb_env_set_maxdbs(n->env, MVCC_MAX_DBS + NODE_EXTRA_DBS)) != 0 ||
	    (rc = mdb_env_set_mapsize(n->env, n->map_size)) != 0 ||
	    (rc = mdb_env_open(n->env, n->db_dir, ENV_FLAGS, 0600)) != 0) {
		mdb_env_close(n->env);
		n->env = NULL;
		goto fail;
	}
	/* found once per open: valid as long as the map is never resized
	 * while open (n->map_size is set only here; a resize would have to
	 * find it again under env_lock, or the release worker's madvise would
	 * hit whatever then lies at the old address) */
	n->env_map = env_map_address(n->env);
	n->env_prefilled = 0; /* a new file (node_env_prefill) */
	if ((rc = mvcc_open(&n->mvcc, n->env)) != 0) {
		mdb_env_close(n->env);
		n->env = NULL;
		goto fail;
	}
	n->mvcc.key_log = &n->key_log; /* empty: no write txn is open here */
	if ((rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn)) != 0) {
		mdb_env_close(n->env);
		n->env = NULL;
		goto fail;
	}
	n->applied_index = mvcc_applied_index(&n->mvcc, txn);
	mdb_txn_abort(txn);
	/* A new file, or one the side file does not name yet: checkpointed
	 * before its first write (checkpoint.c). */
	n->ckpt.gen++;
	if ((rc = node_ckpt_now(n)) != 0) {
		node_ckpt_release_all(n);
		mdb_env_close(n->env);
		n->env = NULL;
		goto fail;
	}
	return 0;
fail:
	/* A truncated message is still a useful one. */
	if (snprintf(errbuf, errlen, "cannot open database in %s: %s", n->db_dir,
	             bollard_strerror(rc)) >= (int)errlen)
		errbuf[errlen - 1] = '\0';
	return rc;
}

int node_env_open(struct node *n, char *errbuf, size_t errlen)
{
	int rc;
	/* Room above the quota: once the NOSPACE alarm is raised, deletes and
	 * compactions still need fresh pages (LMDB is copy-on-write). The map
	 * is address space only. */
	uint64_t quota = (uint64_t)n->cfg.quota_backend_bytes;
	n->map_size = (size_t)(quota * 2 + (256u << 20));
	pthread_rwlock_wrlock(&n->env_lock);
	rc = env_open(n, errbuf, errlen);
	pthread_rwlock_unlock(&n->env_lock);
	return rc;
}

/* Where LMDB mapped the data file (LMDB does not say, unless the map is
 * fixed): its entry in /proc/self/maps, by device and inode. */
static void *env_map_address(MDB_env *env)
{
	struct stat st;
	char line[4096];
	void *addr = NULL;
	mdb_filehandle_t fd;
	FILE *f;

	if (mdb_env_get_fd(env, &fd) != 0 || fstat(fd, &st) != 0 ||
	    (f = fopen("/proc/self/maps", "re")) == NULL)
		return NULL;
	while (addr == NULL && fgets(line, sizeof(line), f) != NULL) {
		unsigned long long start, end, off, ino;
		unsigned maj, min;
		if (sscanf(line, "%llx-%llx %*s %llx %x:%x %llu", &start, &end, &off, &maj, &min,
		           &ino) == 6 &&
		    ino == (unsigned long long)st.st_ino && maj == major(st.st_dev) &&
		    min == minor(st.st_dev) && off == 0)
			addr = (void *)(uintptr_t)start;
	}
	fclose(f);
	return addr;
}

void node_env_release_pages(struct node *n)
{
	MDB_envinfo info;
	MDB_stat st;
	size_t len;
	void *addr;

	if (n->env == NULL || (addr = n->env_map) == NULL || mdb_env_info(n->env, &info) != 0 ||
	    mdb_env_stat(n->env, &st) != 0)
		return;
	len = ((size_t)info.me_last_pgno + 1) * st.ms_psize;
	if (len > info.me_mapsize)
		len = info.me_mapsize;
	/* A read-only shared file mapping: dropping its pages from the process
	 * loses nothing (they stay in the page cache). */
	madvise(addr, len, MADV_DONTNEED);
}

/* Each page a read maps (a put's path through the tree, a range's keys)
 * stays in our RSS until dropped: a workload touching a large database
 * would map all of it. Dropping pages costs the hot ones a fault each when
 * next read, so they go only once the file pages mapped in this process grew
 * by cfg.map_release_bytes (a working set smaller than that is never
 * dropped: dropping the pages every 100 ms cost a put at 10 clients 0.3-0.5
 * faults and 10-25 us of CPU; 16 MiB still 0.35-0.45 faults, as a commit
 * writes fresh pages while the checkpoint's pin holds), and at most once
 * per cfg.map_release_gap_ms, or after a walk of the whole database.
 * The gap: the pages a busy write load reads are not a small hot set. Each
 * commit writes its pages to pages freed earlier (or new ones at the end),
 * which the next commits read, so the set cycles through the whole file
 * and grows the map at the write rate; after a release every one of them
 * faults back in. Put 10/100 on 1000 keys after 30 s of the same load
 * (data file 270-600 MB), one member, release build: the map grew 64 MiB
 * every 100-300 ms, 2.4 faults and 140 us of server CPU per put, 8k req/s;
 * with a 5 s gap 0.18 faults, 61 us, 15.1k; 10 s 0.14 faults, 53-56 us,
 * 15.8-16.6k; never 0.08 faults, 49-51 us, 17.2-17.9k. The RSS of the
 * 100k- and 1M-key loads (bench/compare) stays 58 MB (peak 94 and 226 MB).
 * madvise takes 0.6 ms (3 ms at the 90th
 * percentile on a loaded box): on a worker, not the loop. */
static long mapped_file_pages(void)
{
	long size, resident, shared = -1;
	FILE *f = fopen("/proc/self/statm", "re");

	if (f == NULL)
		return -1;
	if (fscanf(f, "%ld %ld %ld", &size, &resident, &shared) != 3)
		shared = -1;
	fclose(f);
	return shared; /* resident file-backed and shared memory pages */
}

static void release_work(uv_work_t *w)
{
	struct node *n = w->data;
	pthread_rwlock_rdlock(&n->env_lock);
	node_env_release_pages(n);
	pthread_rwlock_unlock(&n->env_lock);
	/* the next release's baseline (read by the loop after release_done) */
	n->env_released_pages = mapped_file_pages();
}

static void release_done(uv_work_t *w, int status)
{
	struct node *n = w->data;
	(void)status;
	n->env_releasing = false;
	n->env_released_ms = uv_now(n->loop);
	node_handle_release(n); /* last: it may complete node_close */
}

void node_env_release_tick(struct node *n)
{
	uint64_t now = uv_now(n->loop);
	long pages, page = sysconf(_SC_PAGESIZE);

	if (n->env_releasing || n->closing || now - n->env_checked_ms < ENV_RELEASE_MS ||
	    n->env == NULL)
		return;
	n->env_checked_ms = now;
	if (!__atomic_load_n(&n->env_walked, __ATOMIC_RELAXED)) {
		uint64_t grown;
		if ((pages = mapped_file_pages()) < 0)
			return;
		grown = (uint64_t)(pages - n->env_released_pages) * (uint64_t)page;
		if (grown < n->cfg.map_release_bytes ||
		    now - n->env_released_ms < n->cfg.map_release_gap_ms)
			return;
	}
	__atomic_store_n(&n->env_walked, false, __ATOMIC_RELAXED);
	n->env_release_work.data = n;
	n->env_releasing = true;
	n->open_handles++; /* node_close waits for it */
	if (uv_queue_work(n->loop, &n->env_release_work, release_work, release_done) != 0) {
		n->env_releasing = false;
		node_handle_release(n);
	}
}

/* The file's end ahead of LMDB, allocated (fallocate: unwritten extents,
 * read as zeros) and brought into the page cache by POSIX_FADV_WILLNEED,
 * which caches a file in single-page folios. LMDB's commit pwrite()s each
 * run of adjacent dirty pages in one call, and a write past the cached
 * pages creates page cache folios as large as the write (kernels whose ext4
 * caches files in large folios: 6.16 on); every later 4 KiB write into such
 * a folio walks all its blocks (ext4_block_write_begin: 15% of the loop
 * thread's samples at put 10/100 on a grown file). On one member, put
 * 10/100 after 12 s of the same load, pairs: 39.5-40.1 us of server CPU per
 * put with the file growing by LMDB's writes, 31.7-33.8 with it written
 * ahead in 4 KiB writes, 48.8-49.3 in 1 MiB writes. Neither call touches
 * data LMDB wrote (fallocate allocates only holes and never shrinks the
 * file), so the worker needs no ordering with commits. */
static void prefill_work(uv_work_t *w)
{
	struct node *n = w->data;
	mdb_filehandle_t fd;
	struct stat st;
	off_t from = (off_t)n->env_prefill_from, len = (off_t)(n->env_prefill_to - n->env_prefill_from);

	pthread_rwlock_rdlock(&n->env_lock);
	/* A file swapped in meanwhile (node_env_replace) may be far shorter:
	 * left alone, env_open started its own count. */
	n->env_prefill_skipped = n->env == NULL || mdb_env_get_fd(n->env, &fd) != 0 ||
	                         fstat(fd, &st) != 0 || st.st_size + len < from;
	if (!n->env_prefill_skipped && fallocate(fd, 0, from, len) == 0)
		posix_fadvise(fd, from, len, POSIX_FADV_WILLNEED);
	pthread_rwlock_unlock(&n->env_lock);
}

static void prefill_done(uv_work_t *w, int status)
{
	struct node *n = w->data;
	(void)status;
	n->env_prefilling = false;
	if (!n->env_prefill_skipped) /* done or failed: not tried again at once */
		n->env_prefilled = n->env_prefill_to;
	node_handle_release(n);
}

void node_env_prefill(struct node *n)
{
	MDB_envinfo info;
	MDB_stat st;
	uint64_t used;

	if (n->env_prefilling || n->closing || n->env == NULL || mdb_env_info(n->env, &info) != 0 ||
	    mdb_env_stat(n->env, &st) != 0)
		return;
	used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
	if (used + NODE_PREFILL_BYTES / 2 <= n->env_prefilled)
		return;
	n->env_prefill_from = used > n->env_prefilled ? used : n->env_prefilled;
	n->env_prefill_to = used + NODE_PREFILL_BYTES;
	if (n->env_prefill_to > info.me_mapsize)
		n->env_prefill_to = info.me_mapsize;
	if (n->env_prefill_to <= n->env_prefill_from)
		return;
	n->env_prefill_work.data = n;
	n->env_prefilling = true;
	n->open_handles++; /* node_close waits for it */
	if (uv_queue_work(n->loop, &n->env_prefill_work, prefill_work, prefill_done) != 0) {
		n->env_prefilling = false;
		node_handle_release(n);
	}
}

void node_env_release_soon(struct node *n)
{
	__atomic_store_n(&n->env_walked, true, __ATOMIC_RELAXED);
}

void node_env_close(struct node *n)
{
	pthread_rwlock_wrlock(&n->env_lock);
	if (n->env != NULL) {
		/* The side file names the final state: no replay at the next open. */
		if (node_ckpt_now(n) != 0)
			mdb_env_sync(n->env, 1);
		node_ckpt_release_all(n);
		mdb_env_close(n->env);
		n->env = NULL;
		n->env_map = NULL;
	}
	pthread_rwlock_unlock(&n->env_lock);
}

int node_fsync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	int rc = 0;
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int node_env_replace(struct node *n, const char *path)
{
	char dst[PATH_MAX + 16], errbuf[256];
	int rc;

	if ((rc = node_fsync_path(path, O_RDONLY)) < 0)
		return rc;
	snprintf(dst, sizeof(dst), "%s/data.mdb", n->db_dir);
	pthread_rwlock_wrlock(&n->env_lock);
	/* The side file names the old file (its inode) until env_open
	 * checkpoints the new one, which is whole on disk from the rename on. */
	node_ckpt_release_all(n);
	mdb_env_close(n->env);
	n->env = NULL;
	n->env_map = NULL;
	if (rename(path, dst) < 0) {
		rc = -errno;
		blog(BLOG_ERROR, "backend", "cannot move %s to %s: %s", path, dst, strerror(errno));
	} else {
		node_fsync_path(n->db_dir, O_RDONLY | O_DIRECTORY);
	}
	/* Reopen whatever is there now: the new file, or the old one. */
	if (env_open(n, errbuf, sizeof(errbuf)) != 0) {
		blog(BLOG_FATAL, "backend", "%s", errbuf);
		abort();
	}
	pthread_rwlock_unlock(&n->env_lock);
	return rc;
}

int64_t node_db_size(struct node *n)
{
	MDB_envinfo info;
	MDB_stat st;
	if (mdb_env_info(n->env, &info) != 0 || mdb_env_stat(n->env, &st) != 0)
		return 0;
	return (int64_t)(info.me_last_pgno + 1) * st.ms_psize;
}

int64_t node_db_size_in_use(struct node *n, MDB_txn *txn)
{
	MDB_cursor *c;
	MDB_val k, v;
	MDB_envinfo info;
	MDB_stat st;
	size_t free_pages = 0;
	int rc;

	if (mdb_env_info(n->env, &info) != 0 || mdb_env_stat(n->env, &st) != 0)
		return 0;
	/* DBI 0 is LMDB's free list: each record is an ID list, count first. */
	if (mdb_cursor_open(txn, 0, &c) == 0) {
		for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			size_t cnt;
			memcpy(&cnt, v.mv_data, sizeof(cnt));
			free_pages += cnt;
		}
		mdb_cursor_close(c);
	}
	if (free_pages > info.me_last_pgno + 1)
		free_pages = info.me_last_pgno + 1;
	return (int64_t)(info.me_last_pgno + 1 - free_pages) * st.ms_psize;
}

/* CRC-32C (Castagnoli), the polynomial etcd's Hash uses. */
static uint32_t crc32c_table[256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc32c_table[i] = c;
	}
}

uint32_t node_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	pthread_once(&crc32c_once, crc32c_init);
	crc = ~crc;
	while (len--)
		crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

int node_db_hash(struct node *n, MDB_txn *txn, uint32_t *hash)
{
	const MDB_dbi dbis[] = {n->mvcc.rev_db, n->mvcc.key_db, n->mvcc.meta_db};
	static const char *const names[] = {"rev", "key", "meta"};
	uint32_t h = 0;

	for (size_t i = 0; i < 3; i++) {
		MDB_cursor *c;
		MDB_val k, v;
		int rc;
		h = node_crc32c(h, names[i], strlen(names[i]));
		if ((rc = mdb_cursor_open(txn, dbis[i], &c)) != 0)
			return rc;
		for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			h = node_crc32c(h, k.mv_data, k.mv_size);
			h = node_crc32c(h, v.mv_data, v.mv_size);
		}
		mdb_cursor_close(c);
		if (rc != MDB_NOTFOUND)
			return rc;
	}
	*hash = h;
	return 0;
}

static void remove_dir(const char *dir)
{
	char p[PATH_MAX + 32];
	if (snprintf(p, sizeof(p), "%s/data.mdb", dir) > 0)
		unlink(p);
	if (snprintf(p, sizeof(p), "%s/lock.mdb", dir) > 0)
		unlink(p);
	rmdir(dir);
}

int node_defragment(struct node *n)
{
	char dir[PATH_MAX + 16], file[PATH_MAX + 32], errbuf[256];
	int64_t before = node_db_size(n);
	int rc;

	node_flush(n);
	snprintf(dir, sizeof(dir), "%s/db.defrag", n->member_dir);
	remove_dir(dir);
	if ((rc = node_mkdirs(dir, errbuf, sizeof(errbuf))) < 0)
		return rc;
	/* Readers on other threads go on meanwhile; no write can happen: the
	 * loop thread, the only writer, is here. */
	if ((rc = mdb_env_copy2(n->env, dir, MDB_CP_COMPACT)) != 0) {
		remove_dir(dir);
		return rc;
	}
	snprintf(file, sizeof(file), "%s/data.mdb", dir);
	rc = node_env_replace(n, file);
	remove_dir(dir);
	blog(BLOG_INFO, "backend", "defragmented: %lld -> %lld bytes", (long long)before,
	     (long long)node_db_size(n));
	return rc;
}

/* The members for the snapshot's "members" bucket: the configured cluster,
 * with the names and client URLs members published (meta "member/<id>",
 * forward.c) as of txn. Strings point into attrs[i], which the caller frees. */
static int snapshot_members(struct node *n, MDB_txn *txn, struct etcdsnap_member *mb,
                            Bollard__MemberAttributes **attrs)
{
	for (size_t i = 0; i < n->cluster.n; i++) {
		const struct cluster_member *c = &n->cluster.members[i];
		char key[40];
		MDB_val k, d;

		mb[i].id = c->member_id; /* etcd's ID */
		mb[i].name = c->name;
		mb[i].peer_urls = (const char *const *)c->peer_urls.v;
		mb[i].n_peer_urls = c->peer_urls.n;
		snprintf(key, sizeof(key), "member/%016llx", (unsigned long long)c->id);
		k.mv_data = key;
		k.mv_size = strlen(key);
		if (mdb_get(txn, n->mvcc.meta_db, &k, &d) != 0)
			continue;
		attrs[i] = bollard__member_attributes__unpack(NULL, d.mv_size, d.mv_data);
		if (attrs[i] == NULL)
			continue;
		if (attrs[i]->name && *attrs[i]->name)
			mb[i].name = attrs[i]->name;
		mb[i].client_urls = (const char *const *)attrs[i]->client_urls;
		mb[i].n_client_urls = attrs[i]->n_client_urls;
	}
	return 0;
}

/* Write the etcd 3.4 bbolt file of the store (no trailer) into fd, a regular
 * file at offset 0; *size = its length. env_lock held shared. */
static int export_to_file(struct node *n, int fd, uint64_t *size)
{
	struct etcdsnap_member *mb = calloc(n->cluster.n + 1, sizeof(*mb));
	Bollard__MemberAttributes **attrs = calloc(n->cluster.n + 1, sizeof(*attrs));
	struct etcdsnap_export_opts o = {mb, n->cluster.n};
	struct etcdsnap_stats st;
	struct bbolt_writer w;
	struct stat sb;
	MDB_txn *txn = NULL;
	int rc;

	if (mb == NULL || attrs == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn)) != 0) {
		rc = bollard_err_from_lmdb(rc);
		txn = NULL;
		goto out;
	}
	snapshot_members(n, txn, mb, attrs);
	if ((rc = bbolt_writer_init_fd(&w, fd, 0)) != 0)
		goto out;
	rc = etcdsnap_export(&n->mvcc, txn, &o, &w, &st);
	if (rc != 0)
		blog(BLOG_WARN, "backend", "snapshot export: %s", w.err[0] ? w.err : bollard_strerror(rc));
	bbolt_writer_free(&w);
	if (rc == 0 && fstat(fd, &sb) != 0)
		rc = -errno;
	if (rc == 0) {
		*size = (uint64_t)sb.st_size;
		blog(BLOG_INFO, "backend",
		     "snapshot: %llu bytes, %llu revisions, %llu leases, revision %lld, compacted %lld",
		     (unsigned long long)*size, (unsigned long long)st.revisions,
		     (unsigned long long)st.leases, (long long)st.current_rev,
		     (long long)st.compact_rev);
	}
out:
	if (txn)
		mdb_txn_abort(txn);
	for (size_t i = 0; attrs && i < n->cluster.n; i++)
		if (attrs[i])
			bollard__member_attributes__free_unpacked(attrs[i], NULL);
	free(attrs);
	free(mb);
	return rc;
}

/* The snapshot into fd; *size = bytes written. env_lock held shared. */
static int copy_to_fd(struct node *n, int fd, uint64_t *size)
{
	struct stat st;
	int rc;

	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0 &&
	    lseek(fd, 0, SEEK_CUR) == 0) {
		if ((rc = export_to_file(n, fd, size)) != 0)
			return rc;
		return lseek(fd, (off_t)*size, SEEK_SET) < 0 ? -errno : 0;
	}
	/* Anything else: build it in an unnamed temporary file, then copy. */
	int tmp = open(n->member_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (tmp < 0)
		return -errno;
	if ((rc = export_to_file(n, tmp, size)) != 0)
		goto out;
	if (lseek(tmp, 0, SEEK_SET) < 0) {
		rc = -errno;
		goto out;
	}
	*size = 0;
	for (;;) {
		char buf[65536];
		ssize_t r = read(tmp, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto out;
		}
		if (r == 0)
			break;
		if ((rc = fdio_write_full(fd, buf, (size_t)r)) != 0)
			goto out;
		*size += (uint64_t)r;
	}
out:
	close(tmp);
	return rc;
}

int node_snapshot_to_fd(struct node *n, int fd, uint64_t *size)
{
	int rc;
	*size = 0;
	node_wait_committed(n); /* etcd's ForceCommit: the copy holds every answered write */
	pthread_rwlock_rdlock(&n->env_lock);
	rc = n->env == NULL ? BOLLARD_ESTOPPED : copy_to_fd(n, fd, size);
	pthread_rwlock_unlock(&n->env_lock);
	return rc;
}
