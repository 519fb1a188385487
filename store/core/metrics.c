/* metrics.c - lock-free histograms and counters of a store member and their
 * Prometheus text rendering (see metrics.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"

void metrics_bounds_exponential(struct metrics_bounds *b, double start, double factor, size_t n)
{
	double v = start;
	if (n > METRICS_MAX_BOUNDS)
		n = METRICS_MAX_BOUNDS;
	b->n = n;
	for (size_t i = 0; i < n; i++, v *= factor) {
		b->le[i] = v;
		b->le_ns[i] = (uint64_t)(v * 1e9 + 0.5);
	}
}

void metrics_hist_init(struct metrics_hist *h, const struct metrics_bounds *b)
{
	memset(h, 0, sizeof(*h));
	h->b = b;
}

void metrics_hist_observe_ns(struct metrics_hist *h, uint64_t ns)
{
	size_t i = 0, n = h->b->n;
	while (i < n && ns > h->b->le_ns[i])
		i++;
	metrics_add(&h->count[i], 1);
	metrics_add(&h->sum_ns, ns);
}

static const char *const stage_names[METRICS_STAGE_COUNT_] = {
	"queue", "forward", "append_fsync", "replicate_quorum", "apply", "respond",
};

const char *metrics_stage_name(enum metrics_stage s)
{
	return (unsigned)s < METRICS_STAGE_COUNT_ ? stage_names[s] : "unknown";
}

void store_metrics_init(struct store_metrics *m)
{
	memset(m, 0, sizeof(*m));
	metrics_bounds_exponential(&m->disk_bounds, 0.001, 2, 14);
	metrics_bounds_exponential(&m->stage_bounds, 0.000025, 2, 20);
	metrics_hist_init(&m->wal_fsync, &m->disk_bounds);
	metrics_hist_init(&m->backend_commit, &m->disk_bounds);
	for (size_t i = 0; i < METRICS_STAGE_COUNT_; i++)
		metrics_hist_init(&m->stage[i], &m->stage_bounds);
	metrics_hist_init(&m->request, &m->stage_bounds);
}

/* ------------------------------------------------------------ rendering */

void metrics_buf_printf(struct metrics_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->err)
		return;
	for (;;) {
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->err = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap : 4096;
		while (cap - b->len <= (size_t)n)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->err = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

void metrics_buf_free(struct metrics_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void metrics_write_family(struct metrics_buf *b, const char *name, const char *type,
                          const char *help)
{
	metrics_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_write_scalar(struct metrics_buf *b, const char *name, const char *type,
                          const char *help, uint64_t v)
{
	metrics_write_family(b, name, type, help);
	metrics_write_u64(b, name, NULL, v);
}

void metrics_write_u64(struct metrics_buf *b, const char *name, const char *labels, uint64_t v)
{
	metrics_buf_printf(b, "%s%s%s%s %llu\n", name, labels ? "{" : "", labels ? labels : "",
	                   labels ? "}" : "", (unsigned long long)v);
}

void metrics_write_double(struct metrics_buf *b, const char *name, const char *labels, double v)
{
	metrics_buf_printf(b, "%s%s%s%s %.17g\n", name, labels ? "{" : "", labels ? labels : "",
	                   labels ? "}" : "", v);
}

void metrics_write_hist(struct metrics_buf *b, const char *name, const char *labels,
                        const struct metrics_hist *h)
{
	const char *sep = labels ? "," : "";
	uint64_t cum = 0;

	if (labels == NULL)
		labels = "";
	for (size_t i = 0; i <= h->b->n; i++) {
		cum += metrics_get(&h->count[i]);
		if (i < h->b->n)
			metrics_buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
			                   h->b->le[i], (unsigned long long)cum);
		else
			metrics_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
			                   (unsigned long long)cum);
	}
	const char *lo = *labels ? "{" : "", *lc = *labels ? "}" : "";
	metrics_buf_printf(b, "%s_sum%s%s%s %.9g\n", name, lo, labels, lc,
	                   (double)metrics_get(&h->sum_ns) / 1e9);
	metrics_buf_printf(b, "%s_count%s%s%s %llu\n", name, lo, labels, lc, (unsigned long long)cum);
}

/* The counters and gauges of struct store_metrics: etcd 3.4's name, type
 * and help, and where the value is (has_leader: leader_id != 0). */
static const struct {
	const char *name, *type, *help;
	size_t off;
	bool nonzero;
} scalars[] = {
	{"etcd_debugging_mvcc_events_total", "counter", "Total number of events sent by this member.",
	 offsetof(struct store_metrics, watch_events), false},
	{"etcd_debugging_mvcc_slow_watcher_total", "gauge", "Total number of unsynced slow watchers.",
	 offsetof(struct store_metrics, slow_watchers), false},
	{"etcd_debugging_mvcc_watch_stream_total", "gauge", "Total number of watch streams.",
	 offsetof(struct store_metrics, watch_streams), false},
	{"etcd_debugging_mvcc_watcher_total", "gauge", "Total number of watchers.",
	 offsetof(struct store_metrics, watchers), false},
	{"etcd_network_client_grpc_received_bytes_total", "counter",
	 "The total number of bytes received from grpc clients.",
	 offsetof(struct store_metrics, grpc_received_bytes), false},
	{"etcd_network_client_grpc_sent_bytes_total", "counter",
	 "The total number of bytes sent to grpc clients.",
	 offsetof(struct store_metrics, grpc_sent_bytes), false},
	{"etcd_server_has_leader", "gauge", "Whether or not a leader exists. 1 is existence, 0 is not.",
	 offsetof(struct store_metrics, leader_id), true},
	{"etcd_server_is_leader", "gauge", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
	 offsetof(struct store_metrics, is_leader), false},
	{"etcd_server_is_learner", "gauge",
	 "Whether or not this member is a learner. 1 if is, 0 otherwise.",
	 offsetof(struct store_metrics, is_learner), false},
	{"etcd_server_leader_changes_seen_total", "counter", "The number of leader changes seen.",
	 offsetof(struct store_metrics, leader_changes), false},
	{"etcd_server_proposals_applied_total", "gauge",
	 "The total number of consensus proposals applied.",
	 offsetof(struct store_metrics, applied_index), false},
	{"etcd_server_proposals_committed_total", "gauge",
	 "The total number of consensus proposals committed.",
	 offsetof(struct store_metrics, committed_index), false},
	{"etcd_server_proposals_failed_total", "counter", "The total number of failed proposals seen.",
	 offsetof(struct store_metrics, proposals_failed), false},
	{"etcd_server_proposals_pending", "gauge", "The current number of pending proposals to commit.",
	 offsetof(struct store_metrics, pending), false},
};

void store_metrics_render(const struct store_metrics *m, struct metrics_buf *b)
{
	char labels[64];

	metrics_write_family(b, "etcd_disk_wal_fsync_duration_seconds", "histogram",
	                     "The latency distributions of fsync called by WAL.");
	metrics_write_hist(b, "etcd_disk_wal_fsync_duration_seconds", NULL, &m->wal_fsync);
	metrics_write_family(b, "etcd_disk_backend_commit_duration_seconds", "histogram",
	                     "The latency distributions of commit called by backend.");
	metrics_write_hist(b, "etcd_disk_backend_commit_duration_seconds", NULL, &m->backend_commit);
	for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
		uint64_t v = metrics_get((const uint64_t *)(const void *)((const char *)m + scalars[i].off));
		metrics_write_scalar(b, scalars[i].name, scalars[i].type, scalars[i].help,
		                     scalars[i].nonzero ? v != 0 : v);
	}

	metrics_write_family(b, "bollard_request_stage_duration_seconds", "histogram",
	                     "Time a write spent in each stage on this member: queue, forward "
	                     "(follower to leader and back), append_fsync (local raft log write "
	                     "and sync), replicate_quorum, apply (to LMDB, committed), respond "
	                     "(gRPC reply sent).");
	for (size_t i = 0; i < METRICS_STAGE_COUNT_; i++) {
		snprintf(labels, sizeof(labels), "stage=\"%s\"", metrics_stage_name((enum metrics_stage)i));
		metrics_write_hist(b, "bollard_request_stage_duration_seconds", labels, &m->stage[i]);
	}
	metrics_write_family(b, "bollard_request_duration_seconds", "histogram",
	                     "Time from a write's arrival over gRPC to its reply being sent.");
	metrics_write_hist(b, "bollard_request_duration_seconds", NULL, &m->request);
}
