/* fsm.c - the raft state machine of a node: applying committed entries to
 * LMDB, and snapshots of LMDB for raft's log compaction.
 *
 * Apply: every committed entry is one bollard.Batch. All entries applied in
 * one loop iteration share ONE LMDB write transaction, opened by the first
 * and committed by node_flush() from the loop's prepare/check handles, and
 * only then are the waiting requests answered (durable before reply). The
 * entry's raft index is stored in the same transaction
 * (mvcc_set_applied_index), so an entry at or below the stored index is a
 * replay after a restart and is skipped.
 *
 * raft's apply callback is not told the entry's index: inside it, the index
 * is raft_last_applied() + 1 (raft advances last_applied after each apply)
 * of n->fsm_raft, the node's own raft (or, in tests/node, a fixture's).
 *
 * Snapshots after --snapshot-count requests, as etcd counts (raft counts
 * entries, each a batch of requests, and keeps every entry since the last
 * snapshot in memory: fsm_apply asks raft for a snapshot once that many
 * requests were applied, and the log keeps the entries of the last
 * SNAP_TRAILING_REQS requests, etcd's 5000 catch-up entries): `snapshot`
 * runs on the loop thread, commits and syncs LMDB (the log entries raft is
 * about to drop must be durable in LMDB first); `snapshot_async` runs on a
 * libuv worker thread and makes a compact copy of LMDB into a memory file
 * (memfd) behind a small header, which raft then stores; `snapshot_finalize`
 * unmaps it. The copy may include entries applied after the snapshot's
 * index: harmless, since it carries its own applied index and replays of
 * those entries are skipped. raft calls `restore` with the latest snapshot
 * at every start: it is loaded only when LMDB does not already hold it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/errors.h"
#include "node/log.h"
#include "node/node_int.h"

/* Snapshot payload: header, then a compact LMDB data file. */
#define SNAP_MAGIC "BOLLSNAP"
#define SNAP_VERSION 1
#define SNAP_HEADER_LEN 32 /* magic[8] version:u32 flags:u32 applied_index:u64 reserved:u64 */
#define SNAP_TRAILING_REQS 5000

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
	uint64_t v = 0;
	for (int i = bytes - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* A raft entry's payload: [u32 format = 1][u32 batch length][packed
 * bollard.Batch][zero padding], little-endian, padded to a multiple of 8
 * bytes. The padding is required: raft 0.15's writer pads each entry to 8
 * bytes but its segment loader sums the unpadded lengths, so an entry of
 * another length makes every later entry of the segment unreadable after a
 * restart (found by tests/node). */
#define ENTRY_FORMAT 1
#define ENTRY_HEADER_LEN 8

int node_entry_encode(const Bollard__Batch *batch, struct raft_buffer *out)
{
	size_t n = bollard__batch__get_packed_size(batch);
	size_t len = (ENTRY_HEADER_LEN + n + 7) & ~(size_t)7;
	unsigned char *p;

	if (n > UINT32_MAX)
		return BOLLARD_EREQUEST_TOO_LARGE;
	if ((p = raft_malloc(len)) == NULL)
		return -ENOMEM;
	memset(p, 0, len);
	put_le(p, ENTRY_FORMAT, 4);
	put_le(p + 4, n, 4);
	bollard__batch__pack(batch, p + ENTRY_HEADER_LEN);
	out->base = p;
	out->len = len;
	return 0;
}

/* The entry's batch, unpacked into a (freed with it). */
static Bollard__Batch *entry_decode(const struct raft_buffer *buf, struct arena *a)
{
	ProtobufCAllocator al = arena_protobuf_allocator(a);
	const unsigned char *p = buf->base;
	uint64_t n;
	if (buf->len < ENTRY_HEADER_LEN || get_le(p, 4) != ENTRY_FORMAT)
		return NULL;
	n = get_le(p + 4, 4);
	if (n > buf->len - ENTRY_HEADER_LEN)
		return NULL;
	return bollard__batch__unpack(&al, n, p + ENTRY_HEADER_LEN);
}

static void fatal(const char *what, int rc)
{
	blog(BLOG_FATAL, "node", "%s: %s; state is unrecoverable in-process, aborting", what,
	     bollard_strerror(rc));
	abort();
}

MDB_txn *node_wtxn(struct node *n)
{
	int rc;
	if (n->wtxn == NULL && (rc = mdb_txn_begin(n->env, NULL, 0, &n->wtxn)) != 0)
		fatal("cannot begin LMDB write transaction", rc);
	return n->wtxn;
}

void node_defer(struct node *n, struct node_req *req, int err, uint8_t *resp, size_t len)
{
	if (n->n_done == n->cap_done) {
		size_t cap = n->cap_done ? n->cap_done * 2 : 64;
		struct node_done *d = realloc(n->done, cap * sizeof(*d));
		if (d == NULL)
			fatal("cannot queue a reply", -ENOMEM);
		n->done = d;
		n->cap_done = cap;
	}
	n->done[n->n_done++] = (struct node_done){req, err, resp, len};
}

void node_flush(struct node *n)
{
	uint64_t now = 0;
	if (n->wtxn != NULL) {
		uint64_t t0 = node_clock_ns();
		int rc = mdb_txn_commit(n->wtxn);
		now = node_clock_ns();
		metrics_hist_observe_ns(&n->metrics.backend_commit, now - t0);
		n->wtxn = NULL;
		if (rc != 0)
			fatal("LMDB commit failed", rc);
		n->stats.commits++;
		node_watch_committed(n); /* watchers hear of it before replies go */
	}
	/* Callbacks may submit more requests; those go through the queue, so
	 * n->done only grows between flushes, never during this loop. */
	for (size_t i = 0; i < n->n_done; i++) {
		struct node_done d = n->done[i];
		node_metrics_flushed(n, d.req, now ? now : node_clock_ns());
		node_complete(n, d.req, d.err, d.resp, d.len);
	}
	n->n_done = 0;
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct node *n = fsm->data;
	struct raft *r = n->fsm_raft;
	uint64_t index = raft_last_applied(r) + 1, now;
	struct apply_header hdr;
	struct apply_result *res;
	struct arena arena;
	Bollard__Batch *b;
	MDB_txn *txn;
	int rc;

	*result = NULL;
	blog(BLOG_DEBUG, "fsm", "apply index %llu (database at %llu, %zu bytes)",
	     (unsigned long long)index, (unsigned long long)n->applied_index, buf->len);
	if (index <= n->applied_index) {
		n->stats.skipped_entries++;
		return 0;
	}
	now = node_clock_ns(); /* committed: the apply stage begins */
	/* One block for a usual entry's requests instead of a few mallocs each. */
	arena_init(&arena, buf->len * 2 + 1024);
	b = entry_decode(buf, &arena);
	if (b == NULL)
		fatal("undecodable raft entry", BOLLARD_EBAD_REQUEST);
	res = calloc(b->n_requests ? b->n_requests : 1, sizeof(*res));
	if (res == NULL)
		fatal("apply", -ENOMEM);
	txn = node_wtxn(n);
	hdr = node_header(n);
	hdr.raft_term = r->current_term;
	struct apply_opts opts = node_lease_apply_opts(n);
	opts.index = index;
	opts.auth_applied = node_auth_applied;
	if ((rc = apply_batch_ex(&n->mvcc, txn, &hdr, b, res, &opts)) != 0)
		fatal("apply_batch failed", rc);
	if ((rc = mvcc_set_applied_index(&n->mvcc, txn, index, r->current_term)) != 0)
		fatal("cannot store the applied index", rc);
	for (size_t i = 0; i < b->n_requests; i++) {
		const Bollard__Request *rq = b->requests[i];
		if (rq->op_case == BOLLARD__REQUEST__OP_MEMBER_ATTRIBUTES)
			rc = node_member_attr_apply(n, txn, rq->member_attributes);
		else if (rq->op_case == BOLLARD__REQUEST__OP_MEMBER_INFO && rq->member_info)
			rc = node_member_info_apply(n, txn, rq->member_info);
		else if (rq->op_case == BOLLARD__REQUEST__OP_CLUSTER_INFO && rq->cluster_info)
			rc = node_cluster_info_apply(n, txn, rq->cluster_info);
		else
			continue;
		free(res[i].resp);
		res[i].resp = NULL;
		res[i].len = 0;
		res[i].err = rc;
		if (rc < 0)
			fatal("cannot store member records", rc);
	}
	n->applied_index = index;
	n->stats.applied_entries++;
	n->snap_entries++;
	n->snap_reqs += b->n_requests;
	if (n->snap_reqs >= (uint64_t)n->cfg.snapshot_count && !n->snap_forced) {
		n->snap_forced = true;
		n->snap_threshold = r->snapshot.threshold;
		raft_set_snapshot_threshold(r, 1); /* now (raft checks after this apply) */
	}
	for (size_t i = 0; i < b->n_requests; i++) {
		struct node_req *req = node_waiter_take(n, res[i].request_id, index);
		if (req != NULL) {
			node_metrics_committed(n, req, index, now);
			node_defer(n, req, res[i].err, res[i].resp, res[i].len);
		} else {
			free(res[i].resp); /* proposed by another member, or a replay */
		}
	}
	free(res);
	arena_free(&arena); /* b */
	return 0;
}

/* A snapshot begins: count again, raft's own (entry) threshold back, and
 * behind the snapshot the entries that hold the last SNAP_TRAILING_REQS
 * requests (at most raft's trailing as set up). */
static void snapshot_policy_reset(struct node *n)
{
	struct raft *r = n->fsm_raft;
	uint64_t trailing = SNAP_TRAILING_REQS;

	if (n->snap_trailing_max == 0)
		n->snap_trailing_max = r->snapshot.trailing;
	if (n->snap_reqs > 0)
		trailing = (SNAP_TRAILING_REQS * n->snap_entries + n->snap_reqs - 1) / n->snap_reqs;
	if (trailing > n->snap_trailing_max)
		trailing = n->snap_trailing_max;
	if (n->snap_forced)
		raft_set_snapshot_threshold(r, n->snap_threshold);
	raft_set_snapshot_trailing(r, (unsigned)(trailing ? trailing : 1));
	n->snap_forced = false;
	n->snap_reqs = n->snap_entries = 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct node *n = fsm->data;
	int rc;

	*bufs = NULL;
	*n_bufs = 0;
	node_flush(n);
	if ((rc = mdb_env_sync(n->env, 1)) != 0) {
		blog(BLOG_ERROR, "node", "cannot sync LMDB before a snapshot: %s", mdb_strerror(rc));
		return RAFT_IOERR;
	}
	n->snap_index = n->applied_index;
	n->snapshot_in_flight = true; /* until snapshot_finalize */
	snapshot_policy_reset(n);
	return 0;
}

/* The file the snapshot's copy of LMDB goes to, unlinked. In memory (a
 * memfd) while the database takes at most a quarter of the free memory:
 * raft compresses the copy and writes a file of its own, and a file on the
 * data disk costs twice the CPU to fill, and its dirty pages may be written
 * out before it is dropped. Otherwise (or without memfd_create) a file in
 * member_dir, which the kernel can write out under memory pressure. Called
 * with env_lock held. */
static int snapshot_tmpfile(struct node *n)
{
	char path[PATH_MAX + 32];
	long free_pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	int fd;

	if (n->env != NULL && free_pages > 0 && page > 0 &&
	    node_db_size(n) <= (int64_t)(free_pages / 4) * page &&
	    (fd = memfd_create("bollard-snapshot", MFD_CLOEXEC)) >= 0)
		return fd;
	snprintf(path, sizeof(path), "%s/snapshot.tmp.XXXXXX", n->member_dir);
	if ((fd = mkostemp(path, O_CLOEXEC)) >= 0)
		unlink(path); /* the mapping made of it keeps the data alive */
	return fd;
}

static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct node *n = fsm->data;
	unsigned char hdr[SNAP_HEADER_LEN] = SNAP_MAGIC;
	void *map;
	off_t size;
	int fd, rc;

	put_le(hdr + 8, SNAP_VERSION, 4);
	put_le(hdr + 16, n->snap_index, 8);
	pthread_rwlock_rdlock(&n->env_lock);
	if ((fd = snapshot_tmpfile(n)) < 0 ||
	    write(fd, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr)) {
		pthread_rwlock_unlock(&n->env_lock);
		if (fd >= 0)
			close(fd);
		return RAFT_IOERR;
	}
	rc = n->env ? mdb_env_copyfd2(n->env, fd, MDB_CP_COMPACT) : BOLLARD_ESTOPPED;
	node_env_release_pages(n); /* the copy read every page through our map */
	pthread_rwlock_unlock(&n->env_lock);
	if (rc != 0 || (size = lseek(fd, 0, SEEK_END)) < 0) {
		blog(BLOG_ERROR, "node", "snapshot copy failed: %s", bollard_strerror(rc));
		close(fd);
		return RAFT_IOERR;
	}
	map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return RAFT_IOERR;
	if ((*bufs = raft_malloc(sizeof(**bufs))) == NULL) {
		munmap(map, (size_t)size);
		return RAFT_NOMEM;
	}
	(*bufs)[0].base = map;
	(*bufs)[0].len = (size_t)size;
	*n_bufs = 1;
	return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                                 unsigned *n_bufs)
{
	struct node *n = fsm->data;
	n->snapshot_in_flight = false;
	if (*bufs != NULL) {
		for (unsigned i = 0; i < *n_bufs; i++)
			munmap((*bufs)[i].base, (*bufs)[i].len);
		raft_free(*bufs);
		n->stats.snapshots++;
		n->trim_wanted = true;
		blog(BLOG_INFO, "node", "snapshot at applied index %llu done",
		     (unsigned long long)n->snap_index);
	}
	*bufs = NULL;
	*n_bufs = 0;
	return 0;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct node *n = fsm->data;
	const unsigned char *p = buf->base;
	char path[PATH_MAX + 32];
	uint64_t index;
	int fd, rc;

	if (buf->len < SNAP_HEADER_LEN || memcmp(p, SNAP_MAGIC, 8) != 0 ||
	    get_le(p + 8, 4) != SNAP_VERSION) {
		blog(BLOG_ERROR, "node", "snapshot has an unknown format");
		return RAFT_CORRUPT;
	}
	index = get_le(p + 16, 8);
	if (n->applied_index >= index) {
		blog(BLOG_INFO, "node", "snapshot at index %llu already in the database (at %llu)",
		     (unsigned long long)index, (unsigned long long)n->applied_index);
		n->stats.restores_skipped++;
		raft_free(buf->base);
		return 0;
	}
	node_flush(n);
	snprintf(path, sizeof(path), "%s/db.restore", n->member_dir);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		return RAFT_IOERR;
	rc = write_all(fd, p + SNAP_HEADER_LEN, buf->len - SNAP_HEADER_LEN);
	close(fd);
	if (rc == 0)
		rc = node_env_replace(n, path);
	if (rc != 0) {
		unlink(path);
		blog(BLOG_ERROR, "node", "cannot restore snapshot: %s", bollard_strerror(rc));
		return RAFT_IOERR;
	}
	if (n->applied_index < index) {
		blog(BLOG_ERROR, "node", "restored snapshot holds index %llu, expected %llu",
		     (unsigned long long)n->applied_index, (unsigned long long)index);
		return RAFT_CORRUPT;
	}
	if ((rc = node_lease_load(n)) != 0)
		blog(BLOG_ERROR, "node", "cannot reload leases after a restore: %s",
		     bollard_strerror(rc));
	if ((rc = node_auth_load(n)) != 0)
		blog(BLOG_ERROR, "node", "cannot reload the auth store after a restore: %s",
		     bollard_strerror(rc));
	if ((rc = node_forward_reload(n)) != 0 || /* forwarding targets */
	    (rc = node_members_load(n)) != 0)   /* member records, cluster ID */
		blog(BLOG_ERROR, "node", "cannot reload members after a restore: %s",
		     bollard_strerror(rc));
	blog(BLOG_INFO, "node", "restored snapshot at applied index %llu",
	     (unsigned long long)n->applied_index);
	n->stats.restores_loaded++;
	raft_free(buf->base);
	return 0;
}

void node_fsm_init(struct node *n)
{
	n->fsm.version = 3;
	n->fsm.data = n;
	n->fsm.apply = fsm_apply;
	n->fsm.snapshot = fsm_snapshot;
	n->fsm.restore = fsm_restore;
	n->fsm.snapshot_finalize = fsm_snapshot_finalize;
	n->fsm.snapshot_async = fsm_snapshot_async;
}
