/* metrics.h - a store member's Prometheus metrics: fixed-bucket histograms
 * and counters, and their rendering in the Prometheus text format 0.0.4.
 *
 * Recording is lock-free: every update is one relaxed atomic add, so the
 * loop thread, the gRPC thread and the HTTP thread that renders may all
 * touch the same struct. A rendering is not a consistent snapshot across
 * metrics, but each histogram's +Inf bucket and _count are computed from
 * the same bucket reads, so they agree. Pure: no clock, no I/O; callers pass
 * durations in nanoseconds. */
#ifndef BOLLARD_CORE_METRICS_H
#define BOLLARD_CORE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_BOUNDS 20

/* Upper bounds of a histogram's buckets, in seconds, ascending. */
struct metrics_bounds {
	size_t n;
	double le[METRICS_MAX_BOUNDS];
	uint64_t le_ns[METRICS_MAX_BOUNDS];
};

/* n bounds start, start*factor, ... (prometheus.ExponentialBuckets). */
void metrics_bounds_exponential(struct metrics_bounds *b, double start, double factor, size_t n);

struct metrics_hist {
	const struct metrics_bounds *b;
	uint64_t count[METRICS_MAX_BOUNDS + 1]; /* per bucket, not cumulative; last: +Inf */
	uint64_t sum_ns;
};

void metrics_hist_init(struct metrics_hist *h, const struct metrics_bounds *b);
/* Any thread. */
void metrics_hist_observe_ns(struct metrics_hist *h, uint64_t ns);

static inline void metrics_add(uint64_t *c, uint64_t v)
{
	__atomic_fetch_add(c, v, __ATOMIC_RELAXED);
}
static inline void metrics_set(uint64_t *c, uint64_t v)
{
	__atomic_store_n(c, v, __ATOMIC_RELAXED);
}
static inline uint64_t metrics_get(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* Stages of a write, for bollard_request_stage_duration_seconds{stage}:
 *   queue            arrival at the member -> proposed to raft (or sent to the leader)
 *   forward          a follower: sent to the leader -> the leader's answer
 *   append_fsync     proposed -> the entry written and synced to the local raft log
 *   replicate_quorum stored locally -> committed (a quorum has it)
 *   apply            committed (follower: the leader answered) -> applied here and
 *                    the LMDB transaction holding it committed
 *   respond          answered by the member -> gRPC finished sending the reply */
enum metrics_stage {
	METRICS_STAGE_QUEUE,
	METRICS_STAGE_FORWARD,
	METRICS_STAGE_APPEND_FSYNC,
	METRICS_STAGE_REPLICATE_QUORUM,
	METRICS_STAGE_APPLY,
	METRICS_STAGE_RESPOND,
	METRICS_STAGE_COUNT_
};
const char *metrics_stage_name(enum metrics_stage s);

/* Everything a member exports. Counters and histograms are updated where
 * the event happens; the gauges are published by the loop thread (set). */
struct store_metrics {
	struct metrics_bounds disk_bounds;  /* etcd's: 1 ms x 2^k, 14 buckets */
	struct metrics_bounds stage_bounds; /* 25 us x 2^k, 20 buckets */
	struct metrics_hist wal_fsync;      /* etcd_disk_wal_fsync_duration_seconds */
	struct metrics_hist backend_commit; /* etcd_disk_backend_commit_duration_seconds */
	struct metrics_hist stage[METRICS_STAGE_COUNT_];
	struct metrics_hist request;        /* bollard_request_duration_seconds (writes) */

	uint64_t proposals_failed;          /* etcd_server_proposals_failed_total */
	uint64_t leader_changes;            /* etcd_server_leader_changes_seen_total */
	uint64_t grpc_received_bytes;       /* etcd_network_client_grpc_received_bytes_total */
	uint64_t grpc_sent_bytes;           /* etcd_network_client_grpc_sent_bytes_total */

	/* gauges, set by the loop thread */
	uint64_t committed_index;           /* etcd_server_proposals_committed_total */
	uint64_t applied_index;             /* etcd_server_proposals_applied_total */
	uint64_t pending;                   /* etcd_server_proposals_pending */
	uint64_t leader_id;                 /* 0: none known */
	uint64_t is_leader, is_learner;
	uint64_t watch_streams;             /* etcd_debugging_mvcc_watch_stream_total */
	uint64_t watchers;                  /* etcd_debugging_mvcc_watcher_total */
	uint64_t slow_watchers;             /* etcd_debugging_mvcc_slow_watcher_total (unsynced) */
	uint64_t watch_events;              /* etcd_debugging_mvcc_events_total (a counter) */
};

void store_metrics_init(struct store_metrics *m);

/* A growing text buffer; err is set (and text dropped) when out of memory. */
struct metrics_buf {
	char *p;
	size_t len, cap;
	bool err;
};
void metrics_buf_printf(struct metrics_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void metrics_buf_free(struct metrics_buf *b);

/* "# HELP name help\n# TYPE name type\n" */
void metrics_write_family(struct metrics_buf *b, const char *name, const char *type,
                          const char *help);
/* A family of one unlabelled value: its HELP and TYPE lines, then the value. */
void metrics_write_scalar(struct metrics_buf *b, const char *name, const char *type,
                          const char *help, uint64_t v);
/* "name{labels} value\n"; labels is NULL or e.g. "stage=\"apply\"". */
void metrics_write_u64(struct metrics_buf *b, const char *name, const char *labels, uint64_t v);
void metrics_write_double(struct metrics_buf *b, const char *name, const char *labels, double v);
/* The _bucket (cumulative, le), _sum and _count lines of h. */
void metrics_write_hist(struct metrics_buf *b, const char *name, const char *labels,
                        const struct metrics_hist *h);

/* The histograms and counters of m (the gauges that need LMDB are the
 * caller's: store/node/metrics.c). */
void store_metrics_render(const struct store_metrics *m, struct metrics_buf *b);

#endif
