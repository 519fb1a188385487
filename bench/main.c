/* bollard-bench: an etcd v3 gRPC load generator with etcd benchmark's
 * vocabulary (put, range, txn-put, mixed, watch, watch-latency,
 * lease-keepalive). Runs against etcd and Bollard alike.
 *
 * Exit status: 0 all calls succeeded, 1 some failed (the report says which),
 * 2 usage, 3 the run could not start (connect, watch setup). */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "options.h"
#include "report.h"

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
	rc = bb_run(&b);
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
	fflush(stdout);
	status = rc != 0 ? 3 : r.n_errors || b.missing ? 1 : 0;
	bb_report_free(&r);
	bb_free(&b);
	bb_options_free(&o);
	return status;
}
