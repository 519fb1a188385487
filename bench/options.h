/* options.h - bollard-bench's command line: the subcommand and etcd
 * benchmark's flags (--endpoints, --conns, --clients, --total/--duration,
 * --key-size, --val-size, --key-space-size, --sequential-keys, --rate, ...). */
#ifndef BOLLARD_BENCH_OPTIONS_H
#define BOLLARD_BENCH_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum bb_workload {
	BB_PUT,
	BB_RANGE,
	BB_TXN_PUT,
	BB_MIXED,
	BB_WATCH,
	BB_WATCH_LATENCY,
	BB_LEASE_KEEPALIVE,
};

#define BB_MAX_ENDPOINTS 16

struct bb_options {
	enum bb_workload workload;
	const char *workload_name;
	char *endpoints[BB_MAX_ENDPOINTS];   /* host:port, owned */
	int n_endpoints;
	int conns, clients, threads;
	uint64_t total;              /* requests (0: run for duration_s) */
	double duration_s;
	int key_size, val_size;
	uint64_t key_space_size;
	bool sequential_keys;
	double rate;                 /* requests/s over all clients, 0: unlimited */
	bool linearizable;           /* range --consistency l (default) or s */
	const char *range_key, *range_end;   /* range's positional arguments */
	int txn_ops;                 /* txn-put: puts per txn */
	double read_ratio;           /* mixed: fraction of ranges */
	int watchers, streams, watch_keys;   /* watch, watch-latency */
	int64_t lease_ttl;           /* lease-keepalive */
	double timeout_s;            /* per-call deadline */
	bool json, no_histogram;
	const char *metrics_urls;    /* Bollard members' /metrics: stage breakdown */
	const char *cacert;          /* --cacert: TLS to the servers, verified with this CA */
};

/* Parses argv into o (defaults first). Returns 0, 1 when help was printed
 * (exit 0), or -1 after printing an error to stderr (exit 2). */
int bb_options_parse(struct bb_options *o, int argc, char **argv);
void bb_options_free(struct bb_options *o);
void bb_usage(FILE *f);

#endif
