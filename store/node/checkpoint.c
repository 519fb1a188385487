/* checkpoint.c - pinned checkpoints of the LMDB environment: what makes the
 * database repairable by the raft log after a power loss.
 *
 * LMDB runs MDB_NOSYNC (backend.c): a commit pwrite()s its pages into the
 * page cache and the kernel writes them back in any order, the meta page
 * (pages 0 and 1) included. After a power loss the
 * newest meta on disk may name a tree whose pages never reached the disk
 * (or were reused by later commits), which the raft log cannot repair. A
 * checkpoint is a state S of LMDB known to be whole on disk:
 *
 *  1. the loop opens a read transaction on the latest committed state S.
 *     While it is open LMDB reuses no page S needs (a reader pins its
 *     snapshot), and the loop copies S's meta (the meta slot whose txnid is
 *     S's: the loop is the only writer, no commit can overwrite it now);
 *  2. a worker fdatasync()s data.mdb: every page of S, written before S
 *     committed, is on disk;
 *  3. the worker writes S's meta, its txnid and applied raft index and the
 *     data file's identity to the side file "checkpoint" (two slots written
 *     in turn, each checksummed, fdatasync'd: a torn write leaves the
 *     other);
 *  4. only then does the loop end the read transaction of the previous
 *     checkpoint: S's pages stay untouched until a newer one is durable.
 *
 * At open, before LMDB reads the file (node_ckpt_recover): the newest valid
 * slot's meta is written into both meta pages of data.mdb, which then is
 * exactly S, and raft replays its log from S's applied index (entries at or
 * below it are skipped, fsm.c). raft may drop only entries at or below a
 * checkpoint's applied index: the raft snapshot is itself a checkpoint
 * (fsm.c), so raft stores it, and truncates, only once its state is.
 * Checkpoints are taken every --backend-batch-interval (skipped when nothing
 * was committed since the last) and after every few commits
 * (node_ckpt_committed), at each raft snapshot, when the data file
 * is replaced (defragmentation, a snapshot from the leader: the new file is
 * checkpointed before the first write to it) and at close (the side file
 * then names the final state: nothing to replay).
 *
 * The slot is used only if it names this data file (device and inode: a
 * file swapped in by defragmentation or restore is a new inode, whole on
 * disk before the rename) and the file's own metas are not older than it
 * (a data file rolled back by hand keeps its own). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/errors.h"
#include "core/fdio.h"
#include "node/log.h"
#include "node/node_int.h"

/* LMDB 0.9's data file (mdb.c, 64-bit): meta pages 0 and 1, each a 16-byte
 * page header (flags at 10, P_META 0x08) then MDB_meta: magic u32, version
 * u32, address, mapsize, two MDB_db of 48 bytes (the first's md_pad is the
 * page size), last page, txnid. */
#define LMDB_PAGEHDR 16
#define LMDB_PFLAGS_OFF 10
#define LMDB_P_META 0x08
#define LMDB_MAGIC 0xBEEFC0DEu
#define LMDB_VERSION 1
#define LMDB_PSIZE_OFF 24
#define LMDB_TXNID_OFF 128
_Static_assert(sizeof(size_t) == 8 && sizeof(void *) == 8, "LMDB's 64-bit meta layout");

/* A slot: magic[8] version:u32 meta_len:u32 seq:u64 dev:u64 ino:u64
 * txnid:u64 applied:u64 psize:u32 reserved:u32 meta[meta_len] crc32c:u32,
 * little-endian; slot i at offset i * CKPT_SLOT_SPACE. */
#define CKPT_FILE "checkpoint"
#define CKPT_MAGIC "BOLLCKPT"
#define CKPT_VERSION 1
#define CKPT_FIXED 64
#define CKPT_SLOT_LEN (CKPT_FIXED + NODE_CKPT_META_LEN + 4)
#define CKPT_SLOT_SPACE 4096

static bool slot_decode(const unsigned char *p, struct node_ckpt_info *out)
{
	if (memcmp(p, CKPT_MAGIC, 8) != 0 || node_get_le(p + 8, 4) != CKPT_VERSION ||
	    node_get_le(p + 12, 4) != NODE_CKPT_META_LEN ||
	    node_get_le(p + CKPT_SLOT_LEN - 4, 4) != node_crc32c(0, p, CKPT_SLOT_LEN - 4))
		return false;
	out->seq = node_get_le(p + 16, 8);
	out->dev = node_get_le(p + 24, 8);
	out->ino = node_get_le(p + 32, 8);
	out->txnid = node_get_le(p + 40, 8);
	out->applied = node_get_le(p + 48, 8);
	out->psize = (uint32_t)node_get_le(p + 56, 4);
	memcpy(out->meta, p + CKPT_FIXED, NODE_CKPT_META_LEN);
	return out->psize >= 512 && out->psize <= 65536 &&
	       node_get_le(out->meta + LMDB_TXNID_OFF, 8) == out->txnid;
}

int node_ckpt_read(const char *db_dir, struct node_ckpt_info *out)
{
	char path[PATH_MAX + 16];
	unsigned char buf[2][CKPT_SLOT_LEN];
	struct node_ckpt_info s[2];
	bool ok[2];
	int fd;

	snprintf(path, sizeof(path), "%s/" CKPT_FILE, db_dir);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	for (int i = 0; i < 2; i++)
		ok[i] = fdio_pread_full(fd, buf[i], CKPT_SLOT_LEN, (off_t)i * CKPT_SLOT_SPACE) == 0 &&
		        slot_decode(buf[i], &s[i]);
	close(fd);
	if (!ok[0] && !ok[1])
		return -ENOENT;
	*out = s[ok[1] && (!ok[0] || s[1].seq > s[0].seq)];
	return 0;
}

/* The file's two metas into m (2 * NODE_CKPT_META_LEN) and their txnids;
 * -EINVAL when either is not an LMDB meta page of that page size. */
static int metas_read(int fd, uint32_t psize, unsigned char *m, uint64_t txnid[2])
{
	unsigned char hdr[LMDB_PAGEHDR];
	int rc;

	for (int i = 0; i < 2; i++) {
		unsigned char *mi = m + i * NODE_CKPT_META_LEN;
		if ((rc = fdio_pread_full(fd, hdr, sizeof(hdr), (off_t)i * psize)) < 0 ||
		    (rc = fdio_pread_full(fd, mi, NODE_CKPT_META_LEN, (off_t)i * psize + LMDB_PAGEHDR)) < 0)
			return rc;
		if (!(node_get_le(hdr + LMDB_PFLAGS_OFF, 2) & LMDB_P_META) ||
		    node_get_le(mi, 4) != LMDB_MAGIC || node_get_le(mi + 4, 4) != LMDB_VERSION ||
		    node_get_le(mi + LMDB_PSIZE_OFF, 4) != psize)
			return -EINVAL;
		txnid[i] = node_get_le(mi + LMDB_TXNID_OFF, 8);
	}
	return 0;
}

int node_ckpt_recover(struct node *n, char *errbuf, size_t errlen)
{
	char path[PATH_MAX + 16];
	unsigned char m[2 * NODE_CKPT_META_LEN];
	struct node_ckpt_info c;
	uint64_t txnid[2], newest;
	struct stat st;
	int fd, rc;

	if ((rc = node_ckpt_read(n->db_dir, &c)) < 0) {
		if (rc != -ENOENT)
			blog(BLOG_WARN, "backend", "cannot read %s/" CKPT_FILE ": %s", n->db_dir,
			     strerror(-rc));
		return 0; /* none yet: a new member, or an older release's */
	}
	n->ckpt.seq = c.seq;
	snprintf(path, sizeof(path), "%s/data.mdb", n->db_dir);
	if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
		return 0; /* no data file: LMDB makes a new one */
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_dev != c.dev || (uint64_t)st.st_ino != c.ino) {
		blog(BLOG_INFO, "backend", "%s/" CKPT_FILE " names another data file: not used",
		     n->db_dir);
		close(fd);
		return 0;
	}
	if ((rc = metas_read(fd, c.psize, m, txnid)) < 0) {
		blog(BLOG_WARN, "backend", "%s: meta pages unreadable (%s): checkpoint not used",
		     path, strerror(-rc));
		close(fd);
		return 0;
	}
	newest = txnid[0] > txnid[1] ? txnid[0] : txnid[1];
	if (newest < c.txnid || (txnid[c.txnid & 1] == c.txnid &&
	                         memcmp(m + (c.txnid & 1) * NODE_CKPT_META_LEN, c.meta,
	                                NODE_CKPT_META_LEN) != 0)) {
		blog(BLOG_WARN, "backend", "%s is not the file checkpointed at its transaction "
		     "%" PRIu64 " (its newest is %" PRIu64 "): checkpoint not used",
		     path, c.txnid, newest);
		close(fd);
		return 0;
	}
	if (newest == c.txnid) { /* a clean close: the file opens at S already */
		close(fd);
		return 0;
	}
	/* Both slots: LMDB opens the one with the larger txnid, the first of
	 * equals; the next commit overwrites one of them. */
	for (int i = 0; i < 2 && rc == 0; i++)
		rc = fdio_pwrite_full(fd, c.meta, NODE_CKPT_META_LEN, (off_t)i * c.psize + LMDB_PAGEHDR);
	if (rc == 0 && fdatasync(fd) != 0)
		rc = -errno;
	close(fd);
	if (rc < 0) {
		snprintf(errbuf, errlen, "cannot write the checkpoint's meta into %s: %s", path,
		         strerror(-rc));
		return rc;
	}
	blog(BLOG_INFO, "backend", "database back at its checkpoint: LMDB transaction %" PRIu64
	     " (applied index %" PRIu64 ") instead of %" PRIu64 ", which may not be whole on "
	     "disk; the raft log replays the rest", c.txnid, c.applied, newest);
	n->stats.checkpoints_recovered++;
	return 0;
}

/* ---- taking one ----------------------------------------------------------- */

static void job_release(struct node_ckpt_job *j)
{
	if (j->pin != NULL)
		mdb_txn_abort(j->pin);
	j->pin = NULL;
}

int node_ckpt_prepare(struct node *n, struct node_ckpt_job *j)
{
	unsigned char m[2 * NODE_CKPT_META_LEN];
	uint64_t txnid[2];
	mdb_filehandle_t fd;
	MDB_stat ms;
	int rc, slot;

	job_release(j);
	j->wrote = false;
	if (n->env == NULL)
		return BOLLARD_ESTOPPED;
	if ((rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &j->pin)) != 0) {
		j->pin = NULL;
		return bollard_err_from_lmdb(rc);
	}
	j->txnid = mdb_txn_id(j->pin);
	j->applied = mvcc_applied_index(&n->mvcc, j->pin);
	j->gen = n->ckpt.gen;
	if ((rc = mdb_env_stat(n->env, &ms)) != 0 || (rc = mdb_env_get_fd(n->env, &fd)) != 0) {
		rc = bollard_err_from_lmdb(rc);
		goto fail;
	}
	j->psize = ms.ms_psize;
	{
		MDB_envinfo info;
		j->last_pgno = mdb_env_info(n->env, &info) == 0 ? info.me_last_pgno : 0;
	}
	/* The page cache's view of the metas: the loop is the only writer. */
	if ((rc = metas_read(fd, j->psize, m, txnid)) < 0)
		goto fail;
	slot = (int)(j->txnid & 1);
	if (txnid[slot] != j->txnid) {
		rc = BOLLARD_ECORRUPT;
		goto fail;
	}
	memcpy(j->meta, m + slot * NODE_CKPT_META_LEN, NODE_CKPT_META_LEN);
	return 0;
fail:
	blog(BLOG_ERROR, "backend", "cannot take a checkpoint of transaction %" PRIu64 ": %s",
	     j->txnid, bollard_strerror(rc));
	job_release(j);
	return rc;
}

/* The side file's slot for seq, fdatasync'd; created with its directory
 * entry made durable the first time. */
static int slot_write(struct node *n, const struct node_ckpt_job *j, const struct stat *st,
                      uint64_t seq)
{
	char path[PATH_MAX + 16];
	unsigned char p[CKPT_SLOT_LEN];
	bool created = false;
	int fd, rc;

	memset(p, 0, sizeof(p));
	memcpy(p, CKPT_MAGIC, 8);
	node_put_le(p + 8, CKPT_VERSION, 4);
	node_put_le(p + 12, NODE_CKPT_META_LEN, 4);
	node_put_le(p + 16, seq, 8);
	node_put_le(p + 24, (uint64_t)st->st_dev, 8);
	node_put_le(p + 32, (uint64_t)st->st_ino, 8);
	node_put_le(p + 40, j->txnid, 8);
	node_put_le(p + 48, j->applied, 8);
	node_put_le(p + 56, j->psize, 4);
	memcpy(p + CKPT_FIXED, j->meta, NODE_CKPT_META_LEN);
	node_put_le(p + CKPT_SLOT_LEN - 4, node_crc32c(0, p, CKPT_SLOT_LEN - 4), 4);

	snprintf(path, sizeof(path), "%s/" CKPT_FILE, n->db_dir);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0 && errno == ENOENT) {
		fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		created = true;
	}
	if (fd < 0)
		return -errno;
	rc = fdio_pwrite_full(fd, p, sizeof(p), (off_t)(seq & 1) * CKPT_SLOT_SPACE);
	if (rc == 0 && fdatasync(fd) != 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && created)
		rc = node_fsync_path(n->db_dir, O_RDONLY | O_DIRECTORY);
	return rc;
}

int node_ckpt_write(struct node *n, struct node_ckpt_job *j)
{
	mdb_filehandle_t fd;
	struct stat st;
	int rc = 0;

	pthread_mutex_lock(&n->ckpt.io_lock);
	j->wrote = false;
	if (n->env == NULL || j->gen != n->ckpt.gen) {
		rc = BOLLARD_ESTOPPED; /* the file it pinned was replaced */
	} else if (n->ckpt.saved_gen == j->gen && n->ckpt.saved_txnid >= j->txnid) {
		rc = 0; /* a newer one is durable already */
	} else if (mdb_env_get_fd(n->env, &fd) != 0 || fstat(fd, &st) != 0) {
		rc = -EBADF;
	} else if (fdatasync(fd) != 0) {
		rc = -errno;
	} else if ((rc = slot_write(n, j, &st, n->ckpt.seq + 1)) == 0) {
		n->ckpt.seq++;
		n->ckpt.saved_gen = j->gen;
		n->ckpt.saved_txnid = j->txnid;
		j->wrote = true;
	}
	pthread_mutex_unlock(&n->ckpt.io_lock);
	if (rc != 0 && rc != BOLLARD_ESTOPPED)
		blog(BLOG_ERROR, "backend", "checkpoint of transaction %" PRIu64 " failed: %s",
		     j->txnid, bollard_strerror(rc));
	return rc;
}

void node_ckpt_done(struct node *n, struct node_ckpt_job *j)
{
	struct node_ckpt_job *d = &n->ckpt.durable;

	if (j->wrote)
		n->stats.checkpoints++;
	if (j->wrote && j->pin != NULL &&
	    (d->pin == NULL || d->gen != j->gen || j->txnid > d->txnid)) {
		job_release(d); /* the side file names j's state now */
		d->pin = j->pin;
		d->gen = j->gen;
		d->txnid = j->txnid;
		d->applied = j->applied;
		d->last_pgno = j->last_pgno;
		j->pin = NULL;
	}
	job_release(j);
}

int node_ckpt_now(struct node *n)
{
	struct node_ckpt_job j = {0};
	int rc;

	if ((rc = node_ckpt_prepare(n, &j)) == 0 && (rc = node_ckpt_write(n, &j)) == 0)
		node_ckpt_done(n, &j);
	job_release(&j);
	return rc;
}

void node_ckpt_release_all(struct node *n)
{
	job_release(&n->ckpt.durable);
	job_release(&n->ckpt.periodic);
	job_release(&n->ckpt.snap);
}

/* ---- the periodic one ------------------------------------------------------ */

static void periodic_work(uv_work_t *w)
{
	struct node *n = w->data;
	pthread_rwlock_rdlock(&n->env_lock);
	node_ckpt_write(n, &n->ckpt.periodic);
	pthread_rwlock_unlock(&n->env_lock);
}

static void periodic_done(uv_work_t *w, int status)
{
	struct node *n = w->data;
	(void)status;
	n->ckpt.busy = false;
	node_ckpt_done(n, &n->ckpt.periodic);
	node_ckpt_committed(n); /* commits while it ran may call for the next */
	node_handle_release(n); /* last: it may complete node_close */
}

/* Start the periodic checkpoint on a worker (the caller checked that none
 * runs and that the node is open). */
static void periodic_start(struct node *n)
{
	if (node_ckpt_prepare(n, &n->ckpt.periodic) != 0)
		return;
	n->ckpt.work.data = n;
	n->ckpt.busy = true;
	n->open_handles++; /* node_close waits for it */
	if (uv_queue_work(n->loop, &n->ckpt.work, periodic_work, periodic_done) != 0) {
		n->ckpt.busy = false;
		job_release(&n->ckpt.periodic);
		node_handle_release(n);
	}
}

static void periodic_tick(uv_timer_t *t)
{
	struct node *n = t->data;
	MDB_envinfo info;

	if (n->ckpt.busy || n->closing || n->env == NULL || mdb_env_info(n->env, &info) != 0)
		return;
	if (n->ckpt.durable.pin != NULL && n->ckpt.durable.gen == n->ckpt.gen &&
	    info.me_last_txnid == n->ckpt.durable.txnid)
		return; /* nothing committed since */
	periodic_start(n);
}

/* LMDB reuses a page freed by transaction T only once no reader is at a
 * state before T (mdb_page_alloc takes free-list records older than the
 * oldest reader, mdb_find_oldest): while the durable checkpoint's pin is
 * held, the pages each commit frees (~6 for a put) wait for a newer
 * checkpoint, and commits take fresh pages at the end of the file once the
 * older free pages are used up. With 1 ms puts and only the 100 ms timer a
 * 1 MiB file filled after ~60 puts of 1 kB. So a checkpoint also starts
 * after cfg.checkpoint_commits commits once the file has grown past the
 * durable checkpoint's last page (the free pages no longer serve them).
 * Without that growth test the checkpoint came every 8 commits under load
 * too, and every fdatasync leaves the pages it wrote clean, so the next
 * write to each faults: on one release member, same-run pairs, put 10/100
 * cost 47.6-64.7 us of server CPU per put against 49.7/50.4 us with the
 * growth test and a 1 s timer (NODE_CHECKPOINT_INTERVAL_MS: etcd's 100 ms
 * is its bbolt commit interval; here it only bounds the replay after a
 * power loss, and a short one costs CPU per put). 1 kB puts before NOSPACE
 * at a 1 MiB quota: 51-56 with the 100 ms timer alone, 283 (100 ms) and
 * 355 (1 s) with the growth test, 479-489 without it. */
void node_ckpt_committed(struct node *n)
{
	MDB_envinfo info;
	if (n->ckpt.busy || n->closing || n->env == NULL || n->ckpt.durable.pin == NULL ||
	    n->ckpt.durable.gen != n->ckpt.gen || mdb_env_info(n->env, &info) != 0 ||
	    info.me_last_txnid - n->ckpt.durable.txnid < n->cfg.checkpoint_commits ||
	    info.me_last_pgno <= n->ckpt.durable.last_pgno)
		return; /* few commits, or the free pages still serve them */
	periodic_start(n);
}

void node_ckpt_init(struct node *n)
{
	uv_timer_init(n->loop, &n->ckpt.timer);
	n->ckpt.timer.data = n;
	n->open_handles++;
}

void node_ckpt_start(struct node *n)
{
	uint64_t ms = n->cfg.backend_batch_interval_ms;
	uv_timer_start(&n->ckpt.timer, periodic_tick, ms, ms);
}

void node_ckpt_close(struct node *n, uv_close_cb cb)
{
	uv_close((uv_handle_t *)&n->ckpt.timer, cb);
}
