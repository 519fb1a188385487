/* report.h - bollard-bench's report: per series throughput, latency summary,
 * log-bucket histogram and errors by gRPC status, as text or JSON. */
#ifndef BOLLARD_BENCH_REPORT_H
#define BOLLARD_BENCH_REPORT_H

#include <stdio.h>

#include "bench.h"

struct bb_report_series {
	const char *name;
	struct bb_samples lat;      /* merged over workers, sorted */
	uint64_t ok, errors[BB_NSTATUS + 1], n_errors;
	double elapsed_s, throughput;
	struct bb_summary sum;
	struct bb_hist hist;
};

struct bb_report {
	struct bb_report_series s[BB_NSERIES];
	int n;
	uint64_t n_errors;
};

/* Merges the workers' series of a finished run (b's workers still allocated). */
void bb_report_build(struct bench *b, struct bb_report *r);
void bb_report_free(struct bb_report *r);
void bb_report_text(FILE *f, const struct bench *b, const struct bb_report *r);
void bb_report_json(FILE *f, const struct bench *b, const struct bb_report *r);
/* The gRPC status name ("UNAVAILABLE"); code BB_NSTATUS: "CLIENT" (local failure). */
const char *bb_status_name(int code);

#endif
