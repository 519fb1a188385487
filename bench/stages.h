/* stages.h - the consensus latency breakdown in bollard-bench's report:
 * Bollard's per-stage histograms (bollard_request_stage_duration_seconds,
 * bollard_request_duration_seconds) scraped from members' /metrics before
 * and after a run (--metrics URL,...), differenced and summarised.
 *
 * The parsing and the arithmetic are pure (tested by test_stats.c); only
 * bb_stages_scrape does I/O (a plain HTTP/1.0 GET). */
#ifndef BOLLARD_BENCH_STAGES_H
#define BOLLARD_BENCH_STAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define BB_STAGE_MAX 8       /* the stages, then "total" */
#define BB_STAGE_BUCKETS 32

struct bb_stage {
	char name[24];           /* "queue", ..., "total" (bollard_request_duration_seconds) */
	size_t n;                /* buckets, without +Inf */
	double le[BB_STAGE_BUCKETS];
	double cum[BB_STAGE_BUCKETS + 1]; /* cumulative counts; [n] is +Inf */
	double sum, count;
};

struct bb_stages {
	struct bb_stage s[BB_STAGE_MAX];
	size_t n;
};

/* Adds the histograms in a /metrics page to out (summing members: call it
 * once per page). Returns the number of histogram lines used (0: the page
 * has none, e.g. etcd's). */
int bb_stages_parse(const char *text, struct bb_stages *out);
/* after - before, stage by stage (stages missing from before count 0). */
void bb_stages_delta(const struct bb_stages *after, const struct bb_stages *before,
                     struct bb_stages *out);
/* Prometheus' histogram_quantile: linear interpolation inside the bucket
 * holding rank q*count; the highest finite bound if it falls in +Inf; 0
 * for an empty histogram. Seconds. */
double bb_stage_quantile(const struct bb_stage *s, double q);

/* GET url (http://host:port/path; path default /metrics) into a malloc'ed,
 * NUL-terminated body. Returns 0, or -1 with a message in err. */
int bb_stages_scrape(const char *url, char **body, char *err, size_t errlen);

/* The breakdown as a text table / as a JSON value ("stages":...). */
void bb_stages_text(FILE *f, const struct bb_stages *d);
void bb_stages_json(FILE *f, const struct bb_stages *d);

#endif
