/* client_put.c - bollard-client-put: latency of blocking puts through the C
 * client library (bollard/store.h), embedded or remote, one at a time from
 * one thread (what a controller doing read-modify-write sees).
 *
 *   bollard-client-put --data-dir DIR [--total N] [--val-size B]   embedded
 *   bollard-client-put --endpoints H:P[,H:P] [--total N] ...       remote
 *
 * --async: asynchronous puts on a libuv loop of the caller's, one at a time.
 * Prints one line: back end, count, req/s, and min/p50/p90/p99/max in ms. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bollard/store.h>

#include "stats.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void put_done(struct bollard_req *req, int status)
{
	*(int *)req->data = status == 0 ? 1 : status;
	bollard_result_free(&req->result);
}

/* One put: blocking, or (loop != NULL) asynchronous on the caller's loop,
 * run until its callback. */
static int put_one(struct bollard_client *c, uv_loop_t *loop, const char *key, size_t key_len,
                   const char *val, size_t val_len)
{
	struct bollard_req req;
	int done = 0, rc;

	if (!loop)
		return bollard_put_sync(c, key, key_len, val, val_len, NULL, NULL);
	req.data = &done;
	if ((rc = bollard_put(c, &req, key, key_len, val, val_len, NULL, put_done)) != 0)
		return rc;
	while (!done)
		uv_run(loop, UV_RUN_ONCE);
	return done == 1 ? 0 : done;
}

static void usage(void)
{
	fprintf(stderr, "usage: bollard-client-put (--data-dir DIR | --endpoints H:P[,H:P...]) "
	                "[--total N] [--val-size B] [--warmup N] [--window N] [--async]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *eps = NULL;
	long total = 1000, val_size = 256, warmup = 20, window = 0;
	uv_loop_t loop_s, *loop = NULL;
	struct bollard_client *c = NULL;
	struct bb_samples s;
	struct bb_summary sum;
	char key[32], *val, *epcopy = NULL;
	const char *ep[16];
	size_t n_ep = 0;
	uint64_t t0, t_all;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--async")) {
			loop = &loop_s;
			continue;
		}
		if (i + 1 >= argc)
			usage();
		if (!strcmp(argv[i], "--data-dir"))
			dir = argv[++i];
		else if (!strcmp(argv[i], "--endpoints"))
			eps = argv[++i];
		else if (!strcmp(argv[i], "--total"))
			total = atol(argv[++i]);
		else if (!strcmp(argv[i], "--val-size"))
			val_size = atol(argv[++i]);
		else if (!strcmp(argv[i], "--warmup"))
			warmup = atol(argv[++i]);
		else if (!strcmp(argv[i], "--window"))
			window = atol(argv[++i]);
		else
			usage();
	}
	if ((!dir) == (!eps) || total <= 0 || val_size < 0 || warmup < 0)
		usage();
	if (loop)
		uv_loop_init(loop);
	if (dir) {
		struct bollard_embedded_options o = {.data_dir = dir, .log_level = "warn"};
		rc = bollard_open_embedded(&c, loop, &o);
	} else {
		epcopy = strdup(eps);
		for (char *sp, *t = strtok_r(epcopy, ",", &sp); t && n_ep < 16;
		     t = strtok_r(NULL, ",", &sp))
			ep[n_ep++] = t;
		rc = bollard_connect(&c, loop, ep, n_ep, NULL);
	}
	if (rc != 0) {
		fprintf(stderr, "bollard-client-put: open: %s\n", bollard_strerror(rc));
		return 1;
	}
	val = malloc((size_t)val_size + 1);
	memset(val, 'v', (size_t)val_size);
	bb_samples_init(&s);
	t_all = 0;
	for (long i = 0; i < warmup + total; i++) {
		int n = snprintf(key, sizeof(key), "bench/%08ld", i % 1000);
		t0 = now_ns();
		if ((rc = put_one(c, loop, key, (size_t)n, val, (size_t)val_size)) != 0) {
			fprintf(stderr, "bollard-client-put: put: %s\n", bollard_strerror(rc));
			return 1;
		}
		if (i >= warmup) {
			uint64_t d = now_ns() - t0;
			bb_samples_add(&s, d);
			t_all += d;
		}
		if (window > 0 && (i + 1) % window == 0) {
			/* the median of the last window, in put order */
			uint64_t *w = malloc((size_t)window * sizeof(*w));
			size_t n0 = s.n >= (size_t)window ? s.n - (size_t)window : 0;
			struct bb_samples ws = {w, 0, (size_t)window, 0};
			for (size_t j = n0; j < s.n; j++)
				w[ws.n++] = s.v[j];
			bb_samples_sort(&ws);
			printf("  puts %ld-%ld: p50 %.3f ms\n", i + 1 - window, i, ws.n ? (double)w[ws.n / 2] / 1e6 : 0.0);
			free(w);
		}
	}
	bb_samples_sort(&s);
	bb_summarize(s.v, s.n, &sum);
	printf("%s%s puts=%zu req/s=%.0f min=%.3f p50=%.3f p90=%.3f p99=%.3f max=%.3f ms\n",
	       dir ? "embedded" : "remote", loop ? " async" : "", sum.n, (double)sum.n * 1e9 / (double)t_all,
	       (double)sum.min / 1e6, (double)sum.p50 / 1e6, (double)sum.p90 / 1e6,
	       (double)sum.p99 / 1e6, (double)sum.max / 1e6);
	bb_samples_free(&s);
	free(val);
	free(epcopy);
	bollard_close(c, NULL, NULL);
	if (loop) {
		uv_run(loop, UV_RUN_DEFAULT);
		uv_loop_close(loop);
	}
	return 0;
}
