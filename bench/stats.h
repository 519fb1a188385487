/* stats.h - the benchmark's report arithmetic: latency samples, summary
 * figures (min/avg/percentiles/max) and a log-bucket histogram.
 *
 * Pure: no I/O, no clock, no threads. Samples are latencies in nanoseconds
 * (uint64_t). A bb_samples is owned by one thread while it is filled;
 * bb_samples_merge moves another thread's samples in afterwards. */
#ifndef BOLLARD_BENCH_STATS_H
#define BOLLARD_BENCH_STATS_H

#include <stddef.h>
#include <stdint.h>

struct bb_samples {
	uint64_t *v;
	size_t n, cap;
	int oom;                /* an append could not grow the array */
};

void bb_samples_init(struct bb_samples *s);
void bb_samples_free(struct bb_samples *s);
/* Appends one sample; on allocation failure sets s->oom and drops it. */
void bb_samples_add(struct bb_samples *s, uint64_t ns);
/* Appends all of src to dst; returns 0 or -1 (allocation failure). */
int bb_samples_merge(struct bb_samples *dst, const struct bb_samples *src);
/* Sorts ascending in place; the summary and histogram need sorted input. */
void bb_samples_sort(struct bb_samples *s);

/* The value at percentile p (0 < p <= 100) of n sorted samples, by the
 * nearest-rank method: the smallest sample such that at least p% of the
 * samples are <= it, i.e. v[ceil(p/100 * n) - 1]. 0 for n == 0. */
uint64_t bb_percentile(const uint64_t *sorted, size_t n, double p);

struct bb_summary {
	size_t n;
	uint64_t min, max;
	double avg, stddev;     /* population standard deviation */
	uint64_t p50, p90, p99, p999;
};

/* Summary of n sorted samples; all zero for n == 0. */
void bb_summarize(const uint64_t *sorted, size_t n, struct bb_summary *out);

/* Log-2 buckets over microseconds: bucket 0 holds samples < 1 us, bucket i
 * (1 <= i < BB_HIST_BUCKETS - 1) holds [2^(i-1), 2^i) us, and the last bucket
 * everything from 2^(BB_HIST_BUCKETS-2) us up. */
#define BB_HIST_BUCKETS 40

struct bb_hist {
	uint64_t count[BB_HIST_BUCKETS];
};

/* The bucket a sample of ns nanoseconds falls in. */
int bb_hist_bucket(uint64_t ns);
/* Lower and upper (exclusive) bounds of bucket i in nanoseconds; the last
 * bucket's upper bound is UINT64_MAX. */
uint64_t bb_hist_lower_ns(int i);
uint64_t bb_hist_upper_ns(int i);
/* Counts n samples (sorted or not) into h, which is zeroed first. */
void bb_hist_build(const uint64_t *v, size_t n, struct bb_hist *h);

#endif
