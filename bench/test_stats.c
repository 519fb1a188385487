/* test_stats.c - the benchmark's report arithmetic on known samples:
 * nearest-rank percentiles, min/avg/max/stddev, histogram buckets and the
 * sample array. Ends with "N passed, N failed". */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages.h"
#include "stats.h"

static int passed, failed;

#define CHECK_EQ(what, got, want)                                                      \
	do {                                                                           \
		uint64_t g_ = (uint64_t)(got), w_ = (uint64_t)(want);                  \
		if (g_ == w_) {                                                        \
			passed++;                                                      \
		} else {                                                               \
			failed++;                                                      \
			printf("FAIL %s:%d %s: got %" PRIu64 ", want %" PRIu64 "\n",   \
			       __FILE__, __LINE__, what, g_, w_);                      \
		}                                                                      \
	} while (0)

#define CHECK_NEAR(what, got, want)                                                    \
	do {                                                                           \
		double g_ = (got), w_ = (want);                                        \
		if (g_ - w_ < 1e-6 && w_ - g_ < 1e-6) {                                \
			passed++;                                                      \
		} else {                                                               \
			failed++;                                                      \
			printf("FAIL %s:%d %s: got %.9f, want %.9f\n", __FILE__,       \
			       __LINE__, what, g_, w_);                                \
		}                                                                      \
	} while (0)

/* 1..100: every percentile is its own rank. */
static void test_percentiles_1_to_100(void)
{
	uint64_t v[100];
	struct bb_summary s;

	for (int i = 0; i < 100; i++)
		v[i] = (uint64_t)i + 1;
	bb_summarize(v, 100, &s);
	CHECK_EQ("n", s.n, 100);
	CHECK_EQ("min", s.min, 1);
	CHECK_EQ("max", s.max, 100);
	CHECK_NEAR("avg", s.avg, 50.5);
	CHECK_NEAR("stddev", s.stddev, 28.866070047722118);   /* sqrt((100^2-1)/12) */
	CHECK_EQ("p50", s.p50, 50);
	CHECK_EQ("p90", s.p90, 90);
	CHECK_EQ("p99", s.p99, 99);
	CHECK_EQ("p99.9", s.p999, 100);
	CHECK_EQ("p1", bb_percentile(v, 100, 1), 1);
	CHECK_EQ("p0.5", bb_percentile(v, 100, 0.5), 1);
	CHECK_EQ("p100", bb_percentile(v, 100, 100), 100);
	CHECK_EQ("p0", bb_percentile(v, 100, 0), 1);
}

/* 1000 samples: p99.9 is rank 999 exactly (no float round-up to 1000). */
static void test_percentiles_1000(void)
{
	uint64_t *v = malloc(1000 * sizeof(*v));
	struct bb_summary s;

	for (int i = 0; i < 1000; i++)
		v[i] = (uint64_t)(i + 1) * 10;
	bb_summarize(v, 1000, &s);
	CHECK_EQ("p50", s.p50, 5000);
	CHECK_EQ("p90", s.p90, 9000);
	CHECK_EQ("p99", s.p99, 9900);
	CHECK_EQ("p99.9", s.p999, 9990);
	CHECK_NEAR("avg", s.avg, 5005);
	free(v);
}

/* Small and odd sizes: nearest rank never interpolates. */
static void test_percentiles_small(void)
{
	uint64_t one[] = {42};
	uint64_t four[] = {10, 20, 30, 40};
	uint64_t five[] = {1, 2, 3, 4, 1000};
	struct bb_summary s;

	bb_summarize(one, 1, &s);
	CHECK_EQ("one min", s.min, 42);
	CHECK_EQ("one p50", s.p50, 42);
	CHECK_EQ("one p999", s.p999, 42);
	CHECK_NEAR("one stddev", s.stddev, 0);

	CHECK_EQ("four p25", bb_percentile(four, 4, 25), 10);
	CHECK_EQ("four p26", bb_percentile(four, 4, 26), 20);
	CHECK_EQ("four p50", bb_percentile(four, 4, 50), 20);
	CHECK_EQ("four p75", bb_percentile(four, 4, 75), 30);
	CHECK_EQ("four p90", bb_percentile(four, 4, 90), 40);

	bb_summarize(five, 5, &s);
	CHECK_EQ("five p50", s.p50, 3);
	CHECK_EQ("five p90", s.p90, 1000);
	CHECK_NEAR("five avg", s.avg, 202);
	CHECK_NEAR("five stddev", s.stddev, 399.0012531);   /* sqrt(159201.2) */
}

static void test_empty(void)
{
	struct bb_summary s;
	struct bb_hist h;

	bb_summarize(NULL, 0, &s);
	CHECK_EQ("empty n", s.n, 0);
	CHECK_EQ("empty max", s.max, 0);
	CHECK_NEAR("empty avg", s.avg, 0);
	CHECK_EQ("empty percentile", bb_percentile(NULL, 0, 50), 0);
	bb_hist_build(NULL, 0, &h);
	for (int i = 0; i < BB_HIST_BUCKETS; i++)
		CHECK_EQ("empty bucket", h.count[i], 0);
}

/* Sorting and merging per-thread arrays gives the same figures as one array. */
static void test_samples_merge_sort(void)
{
	struct bb_samples a, b;
	struct bb_summary s;

	bb_samples_init(&a);
	bb_samples_init(&b);
	for (uint64_t i = 0; i < 5000; i++)           /* 5000 samples, > initial capacity */
		bb_samples_add(i % 2 ? &a : &b, 10000 - i * 2);  /* 10000, 9998, ..., 2 */
	CHECK_EQ("a n", a.n, 2500);
	CHECK_EQ("merge rc", bb_samples_merge(&a, &b), 0);
	CHECK_EQ("merged n", a.n, 5000);
	bb_samples_sort(&a);
	CHECK_EQ("sorted first", a.v[0], 2);
	CHECK_EQ("sorted last", a.v[4999], 10000);
	bb_summarize(a.v, a.n, &s);
	CHECK_EQ("merged p50", s.p50, 5000);
	CHECK_EQ("merged p99", s.p99, 9900);
	CHECK_NEAR("merged avg", s.avg, 5001);
	CHECK_EQ("oom", a.oom, 0);
	bb_samples_free(&a);
	bb_samples_free(&b);
}

static void test_hist_buckets(void)
{
	/* Bucket bounds in ns: 0:[0,1us) 1:[1,2us) 2:[2,4us) ... 11:[1024,2048us) */
	CHECK_EQ("bucket 0ns", bb_hist_bucket(0), 0);
	CHECK_EQ("bucket 999ns", bb_hist_bucket(999), 0);
	CHECK_EQ("bucket 1us", bb_hist_bucket(1000), 1);
	CHECK_EQ("bucket 1.999us", bb_hist_bucket(1999), 1);
	CHECK_EQ("bucket 2us", bb_hist_bucket(2000), 2);
	CHECK_EQ("bucket 3.9us", bb_hist_bucket(3999), 2);
	CHECK_EQ("bucket 4us", bb_hist_bucket(4000), 3);
	CHECK_EQ("bucket 1ms", bb_hist_bucket(1000000), 10);        /* 1000us in [512,1024) */
	CHECK_EQ("bucket 1.024ms", bb_hist_bucket(1024000), 11);
	CHECK_EQ("bucket huge", bb_hist_bucket(UINT64_MAX), BB_HIST_BUCKETS - 1);
	CHECK_EQ("lower 0", bb_hist_lower_ns(0), 0);
	CHECK_EQ("upper 0", bb_hist_upper_ns(0), 1000);
	CHECK_EQ("lower 11", bb_hist_lower_ns(11), 1024000);
	CHECK_EQ("upper 11", bb_hist_upper_ns(11), 2048000);
	CHECK_EQ("upper last", bb_hist_upper_ns(BB_HIST_BUCKETS - 1), UINT64_MAX);
	/* Every bucket's bounds contain exactly the samples it is given. */
	for (int i = 1; i < BB_HIST_BUCKETS - 1; i++) {
		CHECK_EQ("lower in", bb_hist_bucket(bb_hist_lower_ns(i)), i);
		CHECK_EQ("upper out", bb_hist_bucket(bb_hist_upper_ns(i)), i + 1);
	}
}

static void test_hist_counts(void)
{
	/* 100 samples at 500 ns, 1.5 us, 3 us, 3.5 us, 700 us, 1 s. */
	uint64_t v[] = {500, 1500, 3000, 3500, 700000, 1000000000};
	uint64_t total = 0;
	struct bb_hist h;

	bb_hist_build(v, 6, &h);
	CHECK_EQ("b0", h.count[0], 1);
	CHECK_EQ("b1", h.count[1], 1);
	CHECK_EQ("b2", h.count[2], 2);
	CHECK_EQ("b10 (512-1024us)", h.count[10], 1);
	CHECK_EQ("b20 (~0.52-1.05s)", h.count[20], 1);
	for (int i = 0; i < BB_HIST_BUCKETS; i++)
		total += h.count[i];
	CHECK_EQ("total", total, 6);
}

/* Two members' pages (as Bollard's /metrics renders them), summed, then the
 * difference of two scrapes and its quantiles. */
static void test_stages(void)
{
	const char *m1 =
		"# HELP bollard_request_stage_duration_seconds x\n"
		"# TYPE bollard_request_stage_duration_seconds histogram\n"
		"bollard_request_stage_duration_seconds_bucket{stage=\"apply\",le=\"0.001\"} 2\n"
		"bollard_request_stage_duration_seconds_bucket{stage=\"apply\",le=\"0.002\"} 6\n"
		"bollard_request_stage_duration_seconds_bucket{stage=\"apply\",le=\"+Inf\"} 8\n"
		"bollard_request_stage_duration_seconds_sum{stage=\"apply\"} 0.012\n"
		"bollard_request_stage_duration_seconds_count{stage=\"apply\"} 8\n"
		"bollard_request_duration_seconds_bucket{le=\"0.001\"} 0\n"
		"bollard_request_duration_seconds_bucket{le=\"0.002\"} 4\n"
		"bollard_request_duration_seconds_bucket{le=\"+Inf\"} 4\n"
		"bollard_request_duration_seconds_sum 0.006\n"
		"bollard_request_duration_seconds_count 4\n"
		"etcd_server_has_leader 1\n";
	const char *m0 =
		"bollard_request_stage_duration_seconds_bucket{stage=\"apply\",le=\"0.001\"} 1\n"
		"bollard_request_stage_duration_seconds_bucket{stage=\"apply\",le=\"0.002\"} 1\n"
		"bollard_request_stage_duration_seconds_bucket{stage=\"apply\",le=\"+Inf\"} 1\n"
		"bollard_request_stage_duration_seconds_sum{stage=\"apply\"} 0.0005\n"
		"bollard_request_stage_duration_seconds_count{stage=\"apply\"} 1\n";
	struct bb_stages a, b, d;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	CHECK_EQ("lines used", bb_stages_parse(m1, &a), 10);
	CHECK_EQ("etcd page: nothing", bb_stages_parse("etcd_server_has_leader 1\n", &b), 0);
	bb_stages_parse(m1, &a); /* a second member: summed */
	CHECK_EQ("stages", a.n, 2);
	CHECK_EQ("buckets", a.s[0].n, 2);
	CHECK_EQ("apply +Inf summed", a.s[0].cum[2], 16);
	CHECK_EQ("apply le 0.002 summed", a.s[0].cum[1], 12);
	CHECK_NEAR("total sum", a.s[1].sum, 0.012);
	bb_stages_parse(m0, &b);
	bb_stages_delta(&a, &b, &d);
	CHECK_EQ("delta count", d.s[0].count, 15);
	CHECK_EQ("delta le 0.001", d.s[0].cum[0], 3);
	CHECK_EQ("delta +Inf", d.s[0].cum[2], 15);
	CHECK_NEAR("delta sum", d.s[0].sum, 0.0235);
	/* rank 7.5 of 15: bucket (0.001, 0.002] holds ranks 4..11 (8 of them) */
	CHECK_NEAR("p50", bb_stage_quantile(&d.s[0], 0.5), 0.001 + 0.001 * (7.5 - 3) / 8);
	/* rank 0.15 in the first bucket [0, 0.001] of 3 */
	CHECK_NEAR("p1", bb_stage_quantile(&d.s[0], 0.01), 0.001 * 0.15 / 3);
	/* rank 14.85 falls in +Inf: the highest finite bound */
	CHECK_NEAR("p99", bb_stage_quantile(&d.s[0], 0.99), 0.002);
	CHECK_EQ("total untouched by m0", d.s[1].count, 8);
	struct bb_stage empty;
	memset(&empty, 0, sizeof(empty));
	CHECK_NEAR("empty", bb_stage_quantile(&empty, 0.5), 0);
}

int main(void)
{
	test_stages();
	test_percentiles_1_to_100();
	test_percentiles_1000();
	test_percentiles_small();
	test_empty();
	test_samples_merge_sort();
	test_hist_buckets();
	test_hist_counts();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
