/* fsm.c - the raft state machine of a node: applying committed entries to
 * LMDB, raft's snapshots for its log compaction, and the full snapshots a
 * leader sends to a follower.
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
 * SNAP_TRAILING_REQS requests, etcd's 5000 catch-up entries). As etcd's, a
 * raft snapshot holds no database: LMDB is the state, and the snapshot
 * raft stores is a 32-byte header (its applied index). `snapshot` runs on
 * the loop thread, commits LMDB and pins that state; `snapshot_async` runs
 * on a libuv worker and makes it a durable checkpoint (checkpoint.c: raft
 * drops the log entries behind the snapshot only after storing it, so the
 * database can be brought back to at least its index after a power loss),
 * then makes the header.
 *
 * A follower that needs entries the log no longer holds gets a full
 * snapshot: raft calls its I/O's snapshot_get only to send one, and
 * node_fsm_wrap_io makes that return the stored snapshot's metadata with a
 * compact copy of LMDB as it is at that moment, made on a worker into an
 * unlinked file raft sends from a mapping (spool.c; etcd sends its bbolt
 * file the same way). The copy may hold entries after the
 * snapshot's index: harmless, its header carries its own applied index and
 * replays of entries LMDB holds are skipped.
 *
 * raft calls `restore` with the latest stored snapshot at every start, and
 * with one a leader sent: nothing to do when LMDB already holds its index;
 * a full one replaces LMDB; a header-only one with LMDB behind it means the
 * database was lost (the log cannot rebuild it), and the member refuses to
 * start, as etcd does without its db file. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/errors.h"
#include "core/fdio.h"
#include "core/watch_hub.h"
#include "node/log.h"
#include "node/node_int.h"
#include "node/spool.h"

/* A snapshot's data: magic[8] version:u32 flags:u32 applied_index:u64
 * reserved:u64, little-endian. Version 1: a compact LMDB data file follows
 * (what a leader sends, and what releases before this one stored). Version
 * 2: flags say whether one follows; the snapshots raft stores locally are
 * SNAP_FLAG_NO_DB, the header alone. */
#define SNAP_MAGIC "BOLLSNAP"
#define SNAP_VERSION_DB 1
#define SNAP_VERSION 2
#define SNAP_FLAG_NO_DB 1u
#define SNAP_HEADER_LEN 32
#define SNAP_TRAILING_REQS 5000

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
	size_t stack[64], *sizes = stack, n, len;
	unsigned char *p = NULL;

	if (batch->n_requests > sizeof(stack) / sizeof(stack[0]) &&
	    (sizes = malloc(batch->n_requests * sizeof(*sizes))) == NULL)
		return -ENOMEM;
	n = apply_batch_size(batch, sizes);
	len = (ENTRY_HEADER_LEN + n + 7) & ~(size_t)7;
	if (n <= UINT32_MAX && (p = raft_malloc(len)) != NULL) {
		node_put_le(p, ENTRY_FORMAT, 4);
		node_put_le(p + 4, n, 4);
		apply_batch_pack(batch, sizes, p + ENTRY_HEADER_LEN);
		memset(p + ENTRY_HEADER_LEN + n, 0, len - ENTRY_HEADER_LEN - n); /* the padding */
		out->base = p;
		out->len = len;
	}
	if (sizes != stack)
		free(sizes);
	if (n > UINT32_MAX)
		return BOLLARD_EREQUEST_TOO_LARGE;
	return p ? 0 : -ENOMEM;
}

/* The entry's batch, unpacked into a (freed with it). */
static Bollard__Batch *entry_decode(const struct raft_buffer *buf, struct arena *a)
{
	ProtobufCAllocator al = arena_protobuf_allocator(a);
	const unsigned char *p = buf->base;
	uint64_t n;
	if (buf->len < ENTRY_HEADER_LEN || node_get_le(p, 4) != ENTRY_FORMAT)
		return NULL;
	n = node_get_le(p + 4, 4);
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

/* Revisions (events) stored as of the write txn. */
static uint64_t wtxn_revs(struct node *n)
{
	MDB_stat st;
	int rc = mdb_stat(n->wtxn, n->mvcc.rev_db, &st);
	if (rc != 0)
		fatal("cannot count revisions", rc);
	return st.ms_entries;
}

MDB_txn *node_wtxn(struct node *n)
{
	int rc;
	if (n->wtxn != NULL)
		return n->wtxn;
	if ((rc = mdb_txn_begin(n->env, NULL, 0, &n->wtxn)) != 0)
		fatal("cannot begin LMDB write transaction", rc);
	mvcc_key_log_bind(&n->mvcc, n->wtxn);
	n->wtxn_began_ms = n->loop != NULL ? uv_now(n->loop) : 0;
	n->wtxn_commit_now = false;
	n->wtxn_revs0 = wtxn_revs(n);
	n->wtxn_bytes = 0;
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

uint64_t node_commit(struct node *n)
{
	uint64_t t0, now;
	int rc;

	if (n->wtxn == NULL)
		return 0;
	if ((rc = mvcc_key_log_flush(&n->mvcc, n->wtxn)) != 0)
		fatal("cannot write the key history", rc);
	/* watchers hear of it before replies go; read from the txn itself
	 * (no read txn of its own after the commit) */
	node_watch_applied(n);
	t0 = node_clock_ns();
	rc = mdb_txn_commit(n->wtxn);
	now = node_clock_ns();
	metrics_hist_observe_ns(&n->metrics.backend_commit, now - t0);
	n->wtxn = NULL;
	if (rc != 0)
		fatal("LMDB commit failed", rc);
	n->stats.commits++;
	__atomic_store_n(&n->commits_seen, n->stats.commits, __ATOMIC_RELEASE);
	__atomic_store_n(&n->unflushed, false, __ATOMIC_RELEASE);
	__atomic_store_n(&n->commit_wanted, false, __ATOMIC_RELEASE);
	if (n->loop != NULL && uv_is_active((uv_handle_t *)&n->commit_timer))
		uv_timer_stop(&n->commit_timer);
	node_ckpt_committed(n);
	node_env_prefill(n);
	node_metrics_fwd_flushed(n, now);
	return now;
}

/* Answer every request applied since the last answers. Callbacks may
 * submit more requests; those go through the queue, so n->done only grows
 * between flushes, never during this loop. */
static void answer_applied(struct node *n, uint64_t now)
{
	for (size_t i = 0; i < n->n_done; i++) {
		struct node_done d = n->done[i];
		node_metrics_flushed(n, d.req, now ? now : node_clock_ns());
		node_complete(n, d.req, d.err, d.resp, d.len);
	}
	n->n_done = 0;
}

void node_flush(struct node *n)
{
	answer_applied(n, node_commit(n));
}

static void commit_timer_cb(uv_timer_t *t)
{
	node_flush(t->data);
}

#define COMMIT_DELAY_OFF_AFTER_READ_MS 1000

/* Why keep the write txn open: each commit writes the path from every
 * touched leaf to the root anew (LMDB copies on write, and the durable
 * checkpoint's pin keeps it from reusing pages), about 10 pages for a lone
 * put and 90 for a batch of 30 on 1000 keys; one commit per loop phase
 * wrote 360 MB/s at put 10/100, and every raft log sync then waited on that
 * writeback. A commit of many puts on 1000 keys still rewrites each key's
 * history leaf (about 2000 pages), so the delay is long: 200 ms wrote 88
 * MB/s there, 50 ms 145-160. Answering before the commit is safe: the entries are in the
 * raft log (a crash replays them at the same revisions), reads off the
 * loop see `unflushed` and go through the loop, which commits before any
 * read (node_dispatch), and watchers are sent the events from the open txn
 * (node_watch_applied). */
static bool commit_may_wait(struct node *n)
{
	uint64_t now = uv_now(n->loop), age = now - n->wtxn_began_ms;
	/* Reads come too: each would go through the loop while writes wait, so
	 * writes commit before their answers again (reads in place) for a while. */
	uint64_t hopped = __atomic_load_n(&n->read_hopped_ns, __ATOMIC_RELAXED);
	if (hopped != 0 && node_clock_ns() - hopped < COMMIT_DELAY_OFF_AFTER_READ_MS * 1000000ull)
		return false;
	return n->cfg.commit_delay_ms > 0 && !n->wtxn_commit_now && !n->closing &&
	       !__atomic_exchange_n(&n->commit_wanted, false, __ATOMIC_SEQ_CST) &&
	       age < n->cfg.commit_delay_ms;
}

void node_flush_or_keep(struct node *n)
{
	if (n->wtxn == NULL || !commit_may_wait(n)) {
		node_flush(n);
		return;
	}
	if (!uv_is_active((uv_handle_t *)&n->commit_timer))
		uv_timer_start(&n->commit_timer, commit_timer_cb,
		               n->cfg.commit_delay_ms - (uv_now(n->loop) - n->wtxn_began_ms), 0);
	node_metrics_fwd_flushed(n, node_clock_ns()); /* applied: the apply stage ends */
	node_watch_applied(n); /* from the open txn, before the answers */
	/* Also with no answer here: a follower's or another member's client
	 * may have been answered for these entries. */
	node_mark_unflushed(n);
	answer_applied(n, node_clock_ns());
}

void node_mark_unflushed(struct node *n)
{
	if (n->wtxn != NULL)
		__atomic_store_n(&n->unflushed, true, __ATOMIC_SEQ_CST);
}

void node_wait_committed(struct node *n)
{
	uint64_t seen;
	if (!__atomic_load_n(&n->unflushed, __ATOMIC_SEQ_CST))
		return;
	if (pthread_equal(pthread_self(), n->loop_thread)) {
		node_commit(n); /* a caller on the loop (tests/node, embedders) */
		return;
	}
	/* The loop commits at the end of its next phase (node_flush_or_keep);
	 * commit_timer would within cfg.commit_delay_ms anyway. */
	seen = __atomic_load_n(&n->commits_seen, __ATOMIC_ACQUIRE);
	__atomic_store_n(&n->commit_wanted, true, __ATOMIC_SEQ_CST);
	node_wake(n);
	while (__atomic_load_n(&n->unflushed, __ATOMIC_SEQ_CST) &&
	       __atomic_load_n(&n->commits_seen, __ATOMIC_ACQUIRE) == seen)
		usleep(100);
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
		if (rq->op_case != BOLLARD__REQUEST__OP_PUT &&
		    rq->op_case != BOLLARD__REQUEST__OP_DELETE_RANGE &&
		    rq->op_case != BOLLARD__REQUEST__OP_TXN)
			n->wtxn_commit_now = true; /* leases, auth, members: read off the loop */
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
	n->wtxn_bytes += buf->len;
	uint64_t revs = wtxn_revs(n); /* fewer after a compaction: committed anyway */
	if (n->wtxn_bytes >= n->cfg.commit_max_bytes ||
	    (revs > n->wtxn_revs0 && revs - n->wtxn_revs0 >= n->cfg.commit_max_events))
		n->wtxn_commit_now = true; /* its dirty pages are bounded */
	n->applied_index = index;
	n->stats.applied_entries++;
	n->snap_entries++;
	n->snap_reqs += b->n_requests;
	if (n->snap_reqs >= (uint64_t)n->cfg.snapshot_count && !n->snap_forced) {
		n->snap_forced = true;
		n->snap_threshold = r->snapshot.threshold;
		raft_set_snapshot_threshold(r, 1); /* now (raft checks after this apply) */
	}
	uint64_t stored = UINT64_MAX; /* not looked up yet */
	for (size_t i = 0; i < b->n_requests; i++) {
		uint64_t origin = b->requests[i]->origin;
		struct node_req *req = NULL;
		if (origin == 0) {
			if ((req = node_waiter_take(n, res[i].request_id, index)) != NULL) {
				if (stored == UINT64_MAX)
					stored = node_metrics_stored_at(n, index);
				node_metrics_committed(n, req, stored, now);
			}
		} else if (origin == n->raft_id) {
			/* forwarded from here: the same response as the leader's */
			if ((req = node_waiter_take_forwarded(n, res[i].request_id)) != NULL)
				node_metrics_forward_answered(n, req, req->t_ns_, now);
		} else if (raft_state(&n->raft) == RAFT_LEADER) {
			node_commit_nudge(n); /* its member answers once it hears of the commit */
		}
		if (req != NULL)
			node_defer(n, req, res[i].err, res[i].resp, res[i].len);
		else
			free(res[i].resp); /* proposed by another member, or a replay */
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

static void snapshot_header(unsigned char *p, uint32_t version, uint32_t flags, uint64_t index)
{
	memset(p, 0, SNAP_HEADER_LEN);
	memcpy(p, SNAP_MAGIC, 8);
	node_put_le(p + 8, version, 4);
	node_put_le(p + 12, flags, 4);
	node_put_le(p + 16, index, 8);
}

/* The header of a snapshot's data: 0, or RAFT_CORRUPT for an unknown format.
 * *has_db: a compact LMDB file follows it. */
static int snapshot_parse(const struct raft_buffer *buf, uint64_t *index, bool *has_db)
{
	const unsigned char *p = buf->base;
	uint64_t version, flags;

	if (buf->len < SNAP_HEADER_LEN || memcmp(p, SNAP_MAGIC, 8) != 0)
		return RAFT_CORRUPT;
	version = node_get_le(p + 8, 4);
	flags = node_get_le(p + 12, 4);
	if (version != SNAP_VERSION_DB && version != SNAP_VERSION)
		return RAFT_CORRUPT;
	*index = node_get_le(p + 16, 8);
	*has_db = version == SNAP_VERSION_DB || !(flags & SNAP_FLAG_NO_DB);
	return 0;
}

/* Loop thread: the entries up to the applied index go into LMDB's committed
 * state; raft stores the snapshot once fsm_snapshot_async made it durable. */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct node *n = fsm->data;
	uint64_t t0 = node_clock_ns();

	*bufs = NULL;
	*n_bufs = 0;
	node_flush(n);
	/* The snapshot is a checkpoint of this state (checkpoint.c): raft may
	 * drop the log behind it only once the database can be brought back
	 * to it after a power loss. */
	if (node_ckpt_prepare(n, &n->ckpt.snap) != 0)
		return RAFT_IOERR;
	n->snap_index = n->applied_index;
	n->snapshot_in_flight = true; /* until snapshot_finalize */
	snapshot_policy_reset(n);
	n->snap_loop_ns = node_clock_ns() - t0;
	return 0;
}

/* A libuv worker: the snapshot's state checkpointed (raft drops the log
 * entries behind the snapshot once it has stored this), then the
 * header-only snapshot. */
static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct node *n = fsm->data;
	struct raft_buffer *b;
	uint64_t t0 = node_clock_ns();
	int rc;

	pthread_rwlock_rdlock(&n->env_lock);
	rc = n->env ? node_ckpt_write(n, &n->ckpt.snap) : BOLLARD_ESTOPPED;
	pthread_rwlock_unlock(&n->env_lock);
	if (rc != 0) {
		blog(BLOG_ERROR, "node", "cannot checkpoint LMDB for a snapshot: %s",
		     bollard_strerror(rc));
		return RAFT_IOERR;
	}
	n->snap_sync_ns = node_clock_ns() - t0;
	if ((b = raft_malloc(sizeof(*b) + SNAP_HEADER_LEN)) == NULL)
		return RAFT_NOMEM;
	b->base = b + 1;
	b->len = SNAP_HEADER_LEN;
	snapshot_header(b->base, SNAP_VERSION, SNAP_FLAG_NO_DB, n->snap_index);
	*bufs = b;
	*n_bufs = 1;
	return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                                 unsigned *n_bufs)
{
	struct node *n = fsm->data;
	n->snapshot_in_flight = false;
	node_ckpt_done(n, &n->ckpt.snap);
	if (*bufs != NULL) {
		raft_free(*bufs); /* and the header behind it */
		n->stats.snapshots++;
		n->trim_wanted = true;
		blog(BLOG_INFO, "node", "snapshot at applied index %llu done (loop %.3f ms, LMDB sync %.1f ms)",
		     (unsigned long long)n->snap_index, n->snap_loop_ns / 1e6, n->snap_sync_ns / 1e6);
	}
	*bufs = NULL;
	*n_bufs = 0;
	return 0;
}

/* ---- the full snapshot a leader sends ------------------------------------ */

/* Worker thread: a compact copy of LMDB as it is now behind a version 1
 * header (what every release loads), as one buffer raft frees once sent:
 * the copy is an unlinked file in member_dir mapped read-only behind the
 * header (spool.c; raft_free unmaps it), not a heap allocation the size of
 * the database. The header's index is read just before the copy: the copy
 * holds at least it, and so at least the stored snapshot's (min: the FSM's
 * applied index when it was taken, not raft's index of it, which may be a
 * later barrier or configuration entry that LMDB never records). */
static int snapshot_copy_db(struct node *n, uint64_t min, struct raft_buffer *out)
{
	uint64_t index = 0;
	void *p = NULL;
	MDB_txn *txn;
	off_t size = -1;
	int fd = -1, rc;

	pthread_rwlock_rdlock(&n->env_lock);
	if (n->env == NULL)
		rc = BOLLARD_ESTOPPED;
	else if ((fd = node_spool_tmpfile(n->member_dir)) < 0)
		rc = fd;
	else if ((rc = bollard_err_from_lmdb(mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn))) == 0) {
		index = mvcc_applied_index(&n->mvcc, txn);
		mdb_txn_abort(txn);
		rc = bollard_err_from_lmdb(mdb_env_copyfd2(n->env, fd, MDB_CP_COMPACT));
		node_env_release_pages(n); /* the copy read every page through our map */
	}
	pthread_rwlock_unlock(&n->env_lock);
	if (rc == 0 && index < min)
		rc = BOLLARD_ECORRUPT;
	if (rc == 0 && (size = lseek(fd, 0, SEEK_END)) < 0)
		rc = -errno;
	if (rc == 0)
		rc = node_spool_map_file(fd, (size_t)size, SNAP_HEADER_LEN, &p);
	if (fd >= 0)
		close(fd);
	if (rc != 0) {
		blog(BLOG_ERROR, "node", "cannot copy the database for a snapshot: %s",
		     bollard_strerror(rc));
		return rc == -ENOMEM ? RAFT_NOMEM : RAFT_IOERR;
	}
	snapshot_header(p, SNAP_VERSION_DB, 0, index);
	out->base = p;
	out->len = SNAP_HEADER_LEN + (size_t)size;
	return 0;
}

/* One snapshot raft asked for to send to a follower. */
struct snap_send {
	struct raft_io_snapshot_get get;  /* ours, to the I/O's snapshot_get */
	struct raft_io_async_work work;   /* the copy of LMDB */
	struct raft_io_snapshot_get *req; /* raft's */
	struct raft_io *io;
	struct node *n;
	struct raft_snapshot *snapshot;   /* the stored one (metadata, header) */
	uint64_t applied;                 /* its header's: the FSM's applied index */
	struct raft_buffer db;            /* its replacement: header + LMDB */
	uint64_t t0;
};

static void snap_send_done(struct snap_send *s, struct raft_snapshot *snapshot, int status)
{
	struct raft_io_snapshot_get *req = s->req;
	s->n->snap_sends--;
	free(s);
	req->cb(req, snapshot, status);
}

/* Raft frees what it is handed with raft_free (snapshotClose); on an error
 * it takes nothing. */
static void snap_send_drop(struct raft_snapshot *snapshot)
{
	raft_configuration_close(&snapshot->configuration);
	for (unsigned i = 0; i < snapshot->n_bufs; i++)
		raft_free(snapshot->bufs[i].base);
	raft_free(snapshot->bufs);
	raft_free(snapshot);
}

/* The request's snap_send (the I/O may use a request's data field: raft's
 * fixture sets async work's). */
#define SNAP_SEND_OF(p, field) \
	((struct snap_send *)(void *)((char *)(p) - offsetof(struct snap_send, field)))

static int snap_send_copy(struct raft_io_async_work *work)
{
	struct snap_send *s = SNAP_SEND_OF(work, work);
	return snapshot_copy_db(s->n, s->applied, &s->db);
}

static void snap_send_copied(struct raft_io_async_work *work, int status)
{
	struct snap_send *s = SNAP_SEND_OF(work, work);
	struct raft_snapshot *snapshot = s->snapshot;

	if (status != 0) {
		snap_send_drop(snapshot);
		snap_send_done(s, NULL, status);
		return;
	}
	blog(BLOG_INFO, "node", "sending snapshot at raft index %llu: database copy at applied "
	     "index %llu, %zu bytes%s, made in %.1f ms",
	     (unsigned long long)snapshot->index, (unsigned long long)node_get_le(s->db.base + 16, 8),
	     s->db.len, node_spool_holds(s->db.base) ? " (a mapped file)" : "",
	     (node_clock_ns() - s->t0) / 1e6);
	raft_free(snapshot->bufs[0].base);
	snapshot->bufs[0] = s->db;
	s->n->stats.snapshots_sent++;
	snap_send_done(s, snapshot, 0);
}

/* The I/O loaded the stored snapshot: header only (this release's), so a
 * copy of LMDB replaces its data, off the loop thread. One stored with its
 * database (an older release's, one received from a leader) goes as it is. */
static void snap_send_got(struct raft_io_snapshot_get *get, struct raft_snapshot *snapshot,
                          int status)
{
	struct snap_send *s = SNAP_SEND_OF(get, get);
	uint64_t index;
	bool has_db;
	int rv;

	if (status != 0 || snapshot->n_bufs != 1 ||
	    snapshot_parse(&snapshot->bufs[0], &index, &has_db) != 0 || has_db ||
	    s->n->raft_closing) {
		snap_send_done(s, snapshot, status); /* raft drops it when closing */
		return;
	}
	s->snapshot = snapshot;
	s->applied = index;
	s->work.work = snap_send_copy;
	if ((rv = s->io->async_work(s->io, &s->work, snap_send_copied)) != 0) {
		snap_send_drop(snapshot);
		snap_send_done(s, NULL, rv);
	}
}

/* raft_io.snapshot_get, which raft calls only to send a snapshot. */
static int snap_send_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                         raft_io_snapshot_get_cb cb)
{
	struct raft *r = io->data;
	struct node *n = r->fsm->data;
	struct snap_send *s = calloc(1, sizeof(*s));
	int rv;

	if (s == NULL)
		return RAFT_NOMEM;
	s->req = req;
	s->io = io;
	s->n = n;
	s->t0 = node_clock_ns();
	req->cb = cb;
	n->snap_sends++;
	if ((rv = n->io_snapshot_get(io, &s->get, snap_send_got)) != 0) {
		n->snap_sends--;
		free(s);
	}
	return rv;
}

void node_fsm_wrap_io(struct node *n, struct raft_io *io)
{
	n->io_snapshot_get = io->snapshot_get;
	io->snapshot_get = snap_send_get;
}

/* ---- restore ------------------------------------------------------------- */

/* The database behind a received snapshot's header into path: from the
 * file the buffer lives in when raft's heap spooled it (spool.c; the copy
 * stays in the kernel), else from memory. */
static int restore_write(struct node *n, const struct raft_buffer *buf, const char *path)
{
	size_t len = buf->len - SNAP_HEADER_LEN;
	loff_t off = SNAP_HEADER_LEN;
	int fd, src, rc = 0;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		return -errno;
	if ((src = node_spool_file_of(buf->base)) >= 0) {
		while (len > 0) {
			ssize_t w = copy_file_range(src, &off, fd, NULL, len, 0);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break; /* the rest from memory */
			len -= (size_t)w;
		}
		close(src);
		n->stats.restores_spooled += len == 0;
	}
	if (len > 0)
		rc = fdio_write_full(fd, (const unsigned char *)buf->base + buf->len - len, len);
	close(fd);
	return rc;
}

/* At every start with the latest stored snapshot, and with one a leader
 * sent: LMDB holds it already (nothing to do: raft replays the log behind
 * it, entries LMDB holds are skipped), or its database replaces LMDB. */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct node *n = fsm->data;
	char path[PATH_MAX + 32];
	uint64_t index;
	bool has_db;
	int rc;

	if (snapshot_parse(buf, &index, &has_db) != 0) {
		blog(BLOG_ERROR, "node", "snapshot has an unknown format");
		return RAFT_CORRUPT;
	}
	if (n->applied_index >= index) {
		blog(BLOG_INFO, "node", "snapshot at index %llu already in the database (at %llu)",
		     (unsigned long long)index, (unsigned long long)n->applied_index);
		n->stats.restores_skipped++;
		raft_free(buf->base);
		return 0;
	}
	if (!has_db) {
		blog(BLOG_FATAL, "node", "cannot start: the database in %s holds applied index %llu, "
		     "but raft's log was compacted up to index %llu, and raft snapshots hold no "
		     "database (as etcd's): the database was lost or rolled back. Restore this "
		     "member's data dir from a backup, or remove the member and add it back with an "
		     "empty data dir",
		     n->db_dir, (unsigned long long)n->applied_index, (unsigned long long)index);
		return RAFT_CORRUPT;
	}
	node_flush(n);
	snprintf(path, sizeof(path), "%s/db.restore", n->member_dir);
	rc = restore_write(n, buf, path);
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
	n->restored_index = n->applied_index; /* forwarded writes it passed: forward.c */
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
