/* bollard-bench: an etcd v3 gRPC load generator with etcd benchmark's
 * vocabulary (put, range, txn-put, mixed, watch, watch-latency,
 * lease-keepalive). Runs against etcd and Bollard alike.
 *
 * Exit status: 0 all calls succeeded, 1 some failed (the report says which),
 * 2 usage, 3 the run could not start (connect, watch setup). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "options.h"
#include "report.h"
#include "stages.h"

/* Sum of the stage histograms of every member in urls (comma-separated). */
static int scrape_all(const char *urls, struct bb_stages *out)
{
	char url[512], err[600];
	memset(out, 0, sizeof(*out));
	for (const char *p = urls; *p;) {
		size_t len = strcspn(p, ",");
		char *body;
		snprintf(url, sizeof(url), "%.*s", (int)len, p);
		p += len + (p[len] == ',');
		if (bb_stages_scrape(url, &body, err, sizeof(err)) != 0) {
			fprintf(stderr, "bollard-bench: --metrics: %s\n", err);
			return -1;
		}
		if (bb_stages_parse(body, out) == 0)
			fprintf(stderr, "bollard-bench: --metrics: %s has no Bollard stage histograms\n", url);
		free(body);
	}
	return 0;
}

static const struct bb_workload_ops *ops_for(enum bb_workload w)
{
	switch (w) {
	case BB_PUT: return &bb_put_ops;
	case BB_RANGE: return &bb_range_ops;
	case BB_TXN_PUT: return &bb_txn_put_ops;
	case BB_MIXED: return &bb_mixed_ops;
	case BB_WATCH:
	case BB_WATCH_LATENCY: return &bb_watch_ops;
	case BB_LEASE_KEEPALIVE: return &bb_lease_ops;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct bb_options o;
	struct bench b;
	struct bb_report r;
	int rc = bb_options_parse(&o, argc, argv), status;

	if (rc != 0) {
		bb_options_free(&o);
		return rc > 0 ? 0 : 2;
	}
	memset(&b, 0, sizeof(b));
	b.o = &o;
	b.ops = ops_for(o.workload);
	struct bb_stages before, after, delta;
	bool scraped = o.metrics_urls && scrape_all(o.metrics_urls, &before) == 0;
	rc = bb_run(&b);
	if (scraped && scrape_all(o.metrics_urls, &after) == 0) {
		bb_stages_delta(&after, &before, &delta);
		b.stages = &delta;
	}
	if (rc != 0) {
		fprintf(stderr, "bollard-bench: %s\n", b.errmsg[0] ? b.errmsg : "the run failed");
		if (b.first_error[0])
			fprintf(stderr, "bollard-bench: first error: %s\n", b.first_error);
	}
	bb_report_build(&b, &r);
	if (o.json)
		bb_report_json(stdout, &b, &r);
	else
		bb_report_text(stdout, &b, &r);
	if (!o.json && b.stages)
		bb_stages_text(stdout, b.stages);
	fflush(stdout);
	status = rc != 0 ? 3 : r.n_errors || b.missing ? 1 : 0;
	bb_report_free(&r);
	bb_free(&b);
	bb_options_free(&o);
	return status;
}
