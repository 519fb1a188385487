/* test_metrics.c - core/metrics.c: bucket bounds, observations, and the
 * Prometheus text the /metrics endpoint serves. */
#include <pthread.h>
#include <stdlib.h>

#include "core/metrics.h"
#include "unit.h"

TEST(exponential_bounds_like_etcd)
{
	struct metrics_bounds b;
	metrics_bounds_exponential(&b, 0.001, 2, 14); /* etcd's WAL fsync buckets */
	CHECK_INT(b.n, 14);
	CHECK(b.le[0] == 0.001);
	CHECK(b.le[13] > 8.191 && b.le[13] < 8.193);
	CHECK_INT(b.le_ns[0], 1000000);
	CHECK_INT(b.le_ns[3], 8000000);
	metrics_bounds_exponential(&b, 1, 2, 100);
	CHECK_INT(b.n, METRICS_MAX_BOUNDS);
}

TEST(observe_buckets_inclusive_upper_bound)
{
	struct metrics_bounds b;
	struct metrics_hist h;
	metrics_bounds_exponential(&b, 0.001, 10, 3); /* 1 ms, 10 ms, 100 ms */
	metrics_hist_init(&h, &b);
	metrics_hist_observe_ns(&h, 0);
	metrics_hist_observe_ns(&h, 1000000);     /* le 0.001: the bound is inclusive */
	metrics_hist_observe_ns(&h, 1000001);     /* next bucket */
	metrics_hist_observe_ns(&h, 100000000);   /* le 0.1 */
	metrics_hist_observe_ns(&h, 5000000000u); /* +Inf */
	CHECK_INT(h.count[0], 2);
	CHECK_INT(h.count[1], 1);
	CHECK_INT(h.count[2], 1);
	CHECK_INT(h.count[3], 1);
	CHECK_INT(h.sum_ns, 0 + 1000000 + 1000001 + 100000000 + 5000000000ull);
}

TEST(histogram_text)
{
	struct metrics_bounds b;
	struct metrics_hist h;
	struct metrics_buf out = {0};
	metrics_bounds_exponential(&b, 0.001, 2, 2); /* 1 ms, 2 ms */
	metrics_hist_init(&h, &b);
	metrics_hist_observe_ns(&h, 500000);
	metrics_hist_observe_ns(&h, 1500000);
	metrics_hist_observe_ns(&h, 3000000);
	metrics_write_family(&out, "x_seconds", "histogram", "Help text.");
	metrics_write_hist(&out, "x_seconds", "stage=\"apply\"", &h);
	metrics_write_hist(&out, "y_seconds", NULL, &h);
	metrics_write_u64(&out, "z_total", NULL, 42);
	REQUIRE(!out.err);
	const char *want =
		"# HELP x_seconds Help text.\n"
		"# TYPE x_seconds histogram\n"
		"x_seconds_bucket{stage=\"apply\",le=\"0.001\"} 1\n"
		"x_seconds_bucket{stage=\"apply\",le=\"0.002\"} 2\n"
		"x_seconds_bucket{stage=\"apply\",le=\"+Inf\"} 3\n"
		"x_seconds_sum{stage=\"apply\"} 0.005\n"
		"x_seconds_count{stage=\"apply\"} 3\n"
		"y_seconds_bucket{le=\"0.001\"} 1\n"
		"y_seconds_bucket{le=\"0.002\"} 2\n"
		"y_seconds_bucket{le=\"+Inf\"} 3\n"
		"y_seconds_sum 0.005\n"
		"y_seconds_count 3\n"
		"z_total 42\n";
	CHECK(out.len == strlen(want) && memcmp(out.p, want, out.len) == 0);
	if (out.len != strlen(want) || memcmp(out.p, want, out.len) != 0)
		fprintf(stderr, "got:\n%.*s", (int)out.len, out.p);
	metrics_buf_free(&out);
}

TEST(buffer_grows)
{
	struct metrics_buf out = {0};
	for (int i = 0; i < 10000; i++)
		metrics_buf_printf(&out, "line %d\n", i);
	REQUIRE(!out.err);
	CHECK(out.len > 60000);
	CHECK(memcmp(out.p + out.len - 10, "line 9999\n", 10) == 0);
	metrics_buf_free(&out);
}

static struct metrics_hist shared;

static void *observer(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100000; i++)
		metrics_hist_observe_ns(&shared, (uint64_t)(i % 7) * 1000000);
	return NULL;
}

/* Concurrent writers lose no observation (atomic adds, no lock). */
TEST(concurrent_observers)
{
	struct metrics_bounds b;
	pthread_t t[4];
	uint64_t total = 0;
	metrics_bounds_exponential(&b, 0.001, 2, 3);
	metrics_hist_init(&shared, &b);
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, observer, NULL);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (size_t i = 0; i <= b.n; i++)
		total += shared.count[i];
	CHECK_INT(total, 400000);
}

TEST(store_metrics_names)
{
	struct store_metrics m;
	struct metrics_buf out = {0};
	store_metrics_init(&m);
	metrics_hist_observe_ns(&m.stage[METRICS_STAGE_APPLY], 30000);
	metrics_add(&m.grpc_received_bytes, 6);
	metrics_set(&m.leader_id, 7);
	store_metrics_render(&m, &out);
	REQUIRE(!out.err);
	metrics_buf_printf(&out, "%c", '\0');
	CHECK(strstr(out.p, "\netcd_network_client_grpc_received_bytes_total 6\n") != NULL);
	CHECK(strstr(out.p, "\netcd_server_has_leader 1\n") != NULL);
	CHECK(strstr(out.p, "# TYPE etcd_server_proposals_committed_total gauge\n") != NULL);
	CHECK(strstr(out.p, "\netcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"} 0\n") != NULL);
	CHECK(strstr(out.p, "bollard_request_stage_duration_seconds_bucket{stage=\"apply\",le=\"5e-05\"} 1\n") != NULL);
	CHECK(strstr(out.p, "bollard_request_stage_duration_seconds_count{stage=\"forward\"} 0\n") != NULL);
	CHECK_INT(strcmp(metrics_stage_name(METRICS_STAGE_REPLICATE_QUORUM), "replicate_quorum"), 0);
	metrics_buf_free(&out);
}

UNIT_MAIN(TEST_ENTRY(exponential_bounds_like_etcd), TEST_ENTRY(observe_buckets_inclusive_upper_bound),
          TEST_ENTRY(histogram_text), TEST_ENTRY(buffer_grows), TEST_ENTRY(concurrent_observers),
          TEST_ENTRY(store_metrics_names))
