/* metrics.c - where a member measures itself: the timing of raft's log
 * writes (the libuv I/O's append wrapped; it also counts the writes in
 * flight for node.c's close), the stages of each write as it
 * passes through node.c, fsm.c and forward.c, the gauges the loop publishes
 * once per iteration, and the rendering of it all for /metrics and /health.
 *
 * The loop thread records with relaxed atomic adds and stores (core/
 * metrics.h), never a lock; the HTTP thread renders from those, and reads
 * LMDB (size, keys, alarms) in a read transaction of its own. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "core/alarm.h"
#include "core/arena.h"
#include "node/node_int.h"

uint64_t node_clock_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct store_metrics *node_metrics(struct node *n)
{
	return &n->metrics;
}

static void observe(struct node *n, enum metrics_stage s, uint64_t from, uint64_t to)
{
	if (from != 0 && to >= from)
		metrics_hist_observe_ns(&n->metrics.stage[s], to - from);
}

/* ------------------------------------------------------- raft log writes */

/* One append in flight: raft's request and callback, and when it began. */
struct timed_append {
	struct raft_io_append req; /* what the libuv I/O completes */
	struct raft_io_append *orig;
	raft_io_append_cb orig_cb;
	struct node *n;
	uint64_t upto;  /* the log's last index when the append began: its last entry */
	uint64_t start_ns;
};

static void timed_append_cb(struct raft_io_append *req, int status)
{
	struct timed_append *t = req->data;
	struct node *n = t->n;
	uint64_t now = node_clock_ns();
	struct raft_io_append *orig = t->orig;
	raft_io_append_cb cb = t->orig_cb;

	if (status == 0) {
		metrics_hist_observe_ns(&n->metrics.wal_fsync, now - t->start_ns);
		/* Before raft hears of it: raft may commit and apply inside cb. */
		n->stored[n->stored_next % NODE_STORED_RING] =
			(struct node_stored){.upto = t->upto, .t_ns = now};
		n->stored_next++;
	}
	n->appends_in_flight--;
	n->append_since_ns = n->appends_in_flight ? now : 0;
	free(t);
	/* The writes held for this one (node_log_busy) go before raft applies
	 * what it wrote: their disk write overlaps that work. Not after a
	 * failed write, which makes raft truncate its log from this index. */
	if (status == 0 && n->appends_in_flight == 0)
		node_log_written(n);
	cb(orig, status);
}

static int timed_append(struct raft_io *io, struct raft_io_append *req,
                        const struct raft_entry entries[], unsigned n_entries,
                        raft_io_append_cb cb)
{
	struct node *n = (struct node *)(void *)((char *)io - offsetof(struct node, io));
	struct timed_append *t = malloc(sizeof(*t));
	int rv;

	if (t == NULL)
		return RAFT_NOMEM;
	t->req.data = t;
	t->orig = req;
	t->orig_cb = cb;
	t->n = n;
	/* raft appends entries to its in-memory log before writing them. */
	t->upto = raft_last_index(&n->raft);
	t->start_ns = node_clock_ns();
	req->cb = cb;
	if ((rv = n->io_append(io, &t->req, entries, n_entries, timed_append_cb)) != 0)
		free(t);
	else if (n->appends_in_flight++ == 0)
		n->append_since_ns = t->start_ns;
	return rv;
}

void node_metrics_init(struct node *n)
{
	store_metrics_init(&n->metrics);
	n->io_append = n->io.append;
	n->io.append = timed_append;
}

/* When the local log first held index (0: not seen in the recent appends). */
uint64_t node_metrics_stored_at(struct node *n, uint64_t index)
{
	uint64_t first = n->stored_next > NODE_STORED_RING ? n->stored_next - NODE_STORED_RING : 0;
	for (uint64_t i = first; i < n->stored_next; i++) {
		const struct node_stored *s = &n->stored[i % NODE_STORED_RING];
		if (s->upto >= index)
			return s->t_ns;
	}
	return 0;
}

/* ------------------------------------------------------------ the stages */

void node_metrics_committed(struct node *n, struct node_req *req, uint64_t stored, uint64_t now)
{
	const struct node_proposal *p = req->prop_;

	observe(n, METRICS_STAGE_QUEUE, req->t_ns_, p->t_ns);
	if (stored != 0) {
		observe(n, METRICS_STAGE_APPEND_FSYNC, p->t_ns, stored);
		/* A quorum of followers may have had it before our own disk. */
		observe(n, METRICS_STAGE_REPLICATE_QUORUM, stored, now > stored ? now : stored);
	}
	req->t_ns_ = now; /* from here: the apply stage (node_metrics_flushed) */
}

void node_metrics_flushed(struct node *n, struct node_req *req, uint64_t now)
{
	observe(n, METRICS_STAGE_APPLY, req->t_ns_, now);
}

void node_metrics_forwarded(struct node *n, struct node_req *req, uint64_t now)
{
	observe(n, METRICS_STAGE_QUEUE, req->t_ns_, now);
	req->t_ns_ = now; /* from here: the forward stage */
}

void node_metrics_forward_answered(struct node *n, struct node_req *req, uint64_t sent,
                                   uint64_t now)
{
	observe(n, METRICS_STAGE_FORWARD, sent, now);
	req->t_ns_ = now; /* from here: the apply stage (the local apply) */
}

void node_metrics_fwd_proposed(struct node *n, const struct node_req *req,
                               const struct node_proposal *p)
{
	observe(n, METRICS_STAGE_QUEUE, req->t_ns_, p->t_ns);
}

void node_metrics_fwd_committed(struct node *n, const struct node_proposal *p, uint64_t now)
{
	uint64_t stored = node_metrics_stored_at(n, p->apply.index);
	for (size_t i = 0; stored != 0 && i < p->n_fwd; i++) {
		observe(n, METRICS_STAGE_APPEND_FSYNC, p->t_ns, stored);
		observe(n, METRICS_STAGE_REPLICATE_QUORUM, stored, now > stored ? now : stored);
	}
	if (n->fwd_applied == 0)
		n->fwd_applied_ns = now;
	n->fwd_applied += p->n_fwd;
}

void node_metrics_fwd_flushed(struct node *n, uint64_t now)
{
	for (; n->fwd_applied > 0; n->fwd_applied--)
		observe(n, METRICS_STAGE_APPLY, n->fwd_applied_ns, now);
}

/* ---------------------------------------------------------------- gauges */

void node_metrics_publish(struct node *n)
{
	struct store_metrics *m = &n->metrics;
	raft_id id = 0;
	const char *addr = NULL;
	bool leader = raft_state(&n->raft) == RAFT_LEADER;

	if (leader)
		id = n->raft_id; /* raft IDs, as raft_leader() gives */
	else
		raft_leader(&n->raft, &id, &addr);
	if (id != n->last_leader_id) {
		if (id != 0)
			metrics_add(&m->leader_changes, 1);
		n->last_leader_id = id;
	}
	metrics_set(&m->leader_id, id);
	metrics_set(&m->is_leader, leader);
	metrics_set(&m->is_learner, node_is_learner(n));
	metrics_set(&m->committed_index, n->raft.commit_index);
	metrics_set(&m->applied_index, raft_last_applied(&n->raft));
	metrics_set(&m->pending, n->in_flight);
}

/* ------------------------------------------------------------- rendering */

int node_metrics_render(struct node *n, struct metrics_buf *b)
{
	int64_t size = 0, in_use = 0, keys = 0;
	MDB_txn *txn;

	store_metrics_render(&n->metrics, b);
	node_wait_committed(n); /* the key count holds every answered write */
	pthread_rwlock_rdlock(&n->env_lock);
	if (n->env != NULL && mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn) == 0) {
		Etcdserverpb__RangeRequest all = ETCDSERVERPB__RANGE_REQUEST__INIT;
		Etcdserverpb__RangeResponse resp;
		struct arena a;
		static const uint8_t zero = 0;
		size = node_db_size(n);
		in_use = node_db_size_in_use(n, txn);
		all.key = (ProtobufCBinaryData){1, (uint8_t *)&zero};
		all.range_end = (ProtobufCBinaryData){1, (uint8_t *)&zero};
		all.count_only = 1;
		arena_init(&a, 1024);
		if (mvcc_range(&n->mvcc, txn, &a, &all, &resp) == 0)
			keys = resp.count;
		arena_free(&a);
		mdb_txn_abort(txn);
		node_env_release_soon(n); /* the walks mapped much of the file */
	}
	pthread_rwlock_unlock(&n->env_lock);
	metrics_write_scalar(b, "etcd_mvcc_db_total_size_in_bytes", "gauge",
	                     "Total size of the underlying database physically allocated in bytes.",
	                     (uint64_t)size);
	metrics_write_scalar(b, "etcd_mvcc_db_total_size_in_use_in_bytes", "gauge",
	                     "Total size of the underlying database logically in use in bytes.",
	                     (uint64_t)in_use);
	metrics_write_scalar(b, "etcd_debugging_mvcc_keys_total", "gauge", "Total number of keys.",
	                     (uint64_t)keys);
	metrics_write_scalar(b, "etcd_server_quota_backend_bytes", "gauge",
	                     "Current backend storage quota size in bytes.",
	                     (uint64_t)n->cfg.quota_backend_bytes);
	return b->err ? -ENOMEM : 0;
}

bool node_leader_known(struct node *n)
{
	return metrics_get(&n->metrics.leader_id) != 0;
}

bool node_learner_known(struct node *n)
{
	return metrics_get(&n->metrics.is_learner) != 0;
}

bool node_healthy(struct node *n)
{
	bool ok = node_leader_known(n);
	MDB_txn *txn;

	pthread_rwlock_rdlock(&n->env_lock);
	if (n->env == NULL) {
		ok = false;
	} else if (ok && mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn) == 0) {
		ok = !alarm_active(&n->mvcc, txn, ETCDSERVERPB__ALARM_TYPE__NOSPACE) &&
		     !alarm_active(&n->mvcc, txn, ETCDSERVERPB__ALARM_TYPE__CORRUPT);
		mdb_txn_abort(txn);
	}
	pthread_rwlock_unlock(&n->env_lock);
	return ok;
}
