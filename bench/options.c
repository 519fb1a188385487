/* options.c - bollard-bench's command line (see options.h). */
#include "options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct {
	const char *name;
	enum bb_workload w;
} workloads[] = {
	{"put", BB_PUT},
	{"range", BB_RANGE},
	{"txn-put", BB_TXN_PUT},
	{"mixed", BB_MIXED},
	{"watch", BB_WATCH},
	{"watch-latency", BB_WATCH_LATENCY},
	{"lease-keepalive", BB_LEASE_KEEPALIVE},
};

void bb_usage(FILE *f)
{
	fprintf(f,
	        "usage: bollard-bench <put|range|txn-put|mixed|watch|watch-latency|lease-keepalive>\n"
	        "                     [range: KEY [END]] [flags]\n"
	        "Speaks the etcd v3 gRPC API (etcd and Bollard alike). Flags (--flag value or --flag=value):\n"
	        "  --endpoints H:P[,H:P...]  servers (default 127.0.0.1:2379); connections round-robin\n"
	        "  --conns N                 gRPC connections (default 1)\n"
	        "  --cacert FILE             TLS: verify the servers with this CA (ordinary gRPC\n"
	        "                            channels, not direct ones: more client CPU per call)\n"
	        "  --clients N               concurrent clients, one request in flight each (default 1)\n"
	        "  --threads N               completion-queue threads (default: CPUs, at most clients)\n"
	        "  --total N                 requests (default 10000; watch: puts)\n"
	        "  --duration SECS           run for a time instead of --total\n"
	        "  --key-size N              key bytes (default 8)\n"
	        "  --val-size N              value bytes (default 8; watch: at least 16)\n"
	        "  --key-space-size N        distinct keys (default 1)\n"
	        "  --sequential-keys         keys 0,1,2,... instead of random\n"
	        "  --rate R                  requests/s over all clients (default 0: unlimited)\n"
	        "  --consistency l|s         range: linearizable or serializable (default l)\n"
	        "  --txn-ops N               txn-put: puts per txn (default 1)\n"
	        "  --read-ratio F            mixed: fraction of ranges (default 0.5)\n"
	        "  --watchers N              watch: watchers (default 1000; watch-latency 100)\n"
	        "  --streams N               watch: watch streams (default 10)\n"
	        "  --watch-keys N            watch: keys watched and put (default 100; watch-latency 1)\n"
	        "  --lease-ttl S             lease-keepalive: TTL of each client's lease (default 60)\n"
	        "  --timeout SECS            per-call deadline (default 30)\n"
	        "  --json                    one JSON object on stdout instead of the text report\n"
	        "  --no-histogram            text report without the histogram\n"
	        "  --metrics URL[,URL...]    Bollard members' /metrics (http://H:P/metrics): scrape\n"
	        "                            before and after, print the consensus stage breakdown\n");
}

static int parse_u64(const char *name, const char *s, uint64_t min, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min) {
		fprintf(stderr, "bollard-bench: --%s: want an integer >= %llu, got \"%s\"\n", name,
		        (unsigned long long)min, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_int(const char *name, const char *s, int min, int *out)
{
	uint64_t v;

	if (parse_u64(name, s, (uint64_t)min, &v) != 0)
		return -1;
	if (v > 1000000000) {
		fprintf(stderr, "bollard-bench: --%s: %s is too large\n", name, s);
		return -1;
	}
	*out = (int)v;
	return 0;
}

static int parse_double(const char *name, const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min && v <= max)) {
		fprintf(stderr, "bollard-bench: --%s: want a number in [%g, %g], got \"%s\"\n", name,
		        min, max, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_endpoints(struct bb_options *o, const char *list)
{
	char *copy = strdup(list), *save = NULL, *tok;

	bb_options_free(o);
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		const char *hp = strstr(tok, "://") ? strstr(tok, "://") + 3 : tok;
		if (o->n_endpoints == BB_MAX_ENDPOINTS) {
			fprintf(stderr, "bollard-bench: at most %d endpoints\n", BB_MAX_ENDPOINTS);
			free(copy);
			return -1;
		}
		o->endpoints[o->n_endpoints++] = strdup(hp);
	}
	free(copy);
	if (o->n_endpoints == 0) {
		fprintf(stderr, "bollard-bench: --endpoints is empty\n");
		return -1;
	}
	return 0;
}

static void defaults(struct bb_options *o)
{
	memset(o, 0, sizeof(*o));
	o->conns = 1;
	o->clients = 1;
	o->total = 10000;
	o->key_size = 8;
	o->val_size = 8;
	o->key_space_size = 1;
	o->linearizable = true;
	o->txn_ops = 1;
	o->read_ratio = 0.5;
	o->watchers = -1;
	o->streams = 10;
	o->watch_keys = -1;
	o->lease_ttl = 60;
	o->timeout_s = 30;
}

/* One flag with its value; returns 0 or -1. */
static int apply_flag(struct bb_options *o, const char *name, const char *val, int *total_set)
{
	uint64_t u = 0;
	int rc = 0;

	if (!strcmp(name, "endpoints"))
		rc = parse_endpoints(o, val);
	else if (!strcmp(name, "conns"))
		rc = parse_int(name, val, 1, &o->conns);
	else if (!strcmp(name, "clients"))
		rc = parse_int(name, val, 1, &o->clients);
	else if (!strcmp(name, "threads"))
		rc = parse_int(name, val, 1, &o->threads);
	else if (!strcmp(name, "total")) {
		rc = parse_u64(name, val, 1, &o->total);
		*total_set = 1;
	} else if (!strcmp(name, "duration"))
		rc = parse_double(name, val, 0.001, 1e6, &o->duration_s);
	else if (!strcmp(name, "key-size"))
		rc = parse_int(name, val, 1, &o->key_size);
	else if (!strcmp(name, "val-size"))
		rc = parse_int(name, val, 0, &o->val_size);
	else if (!strcmp(name, "key-space-size"))
		rc = parse_u64(name, val, 1, &o->key_space_size);
	else if (!strcmp(name, "rate"))
		rc = parse_double(name, val, 0, 1e9, &o->rate);
	else if (!strcmp(name, "consistency")) {
		if (!strcmp(val, "l") || !strcmp(val, "s"))
			o->linearizable = val[0] == 'l';
		else {
			fprintf(stderr, "bollard-bench: --consistency: l or s, got \"%s\"\n", val);
			rc = -1;
		}
	} else if (!strcmp(name, "txn-ops"))
		rc = parse_int(name, val, 1, &o->txn_ops);
	else if (!strcmp(name, "read-ratio"))
		rc = parse_double(name, val, 0, 1, &o->read_ratio);
	else if (!strcmp(name, "watchers"))
		rc = parse_int(name, val, 1, &o->watchers);
	else if (!strcmp(name, "streams"))
		rc = parse_int(name, val, 1, &o->streams);
	else if (!strcmp(name, "watch-keys"))
		rc = parse_int(name, val, 1, &o->watch_keys);
	else if (!strcmp(name, "lease-ttl")) {
		rc = parse_u64(name, val, 1, &u);
		o->lease_ttl = (int64_t)u;
	} else if (!strcmp(name, "metrics"))
		o->metrics_urls = val;
	else if (!strcmp(name, "cacert"))
		o->cacert = val;
	else if (!strcmp(name, "timeout"))
		rc = parse_double(name, val, 0.001, 1e6, &o->timeout_s);
	else {
		fprintf(stderr, "bollard-bench: unknown flag --%s\n", name);
		rc = -1;
	}
	return rc;
}

static int is_bool_flag(const char *name)
{
	return !strcmp(name, "json") || !strcmp(name, "no-histogram") ||
	       !strcmp(name, "sequential-keys") || !strcmp(name, "help") || !strcmp(name, "h");
}

int bb_options_parse(struct bb_options *o, int argc, char **argv)
{
	int total_set = 0, npos = 0;
	long ncpu;

	defaults(o);
	if (argc < 2) {
		bb_usage(stderr);
		return -1;
	}
	for (int i = 1; i < argc; i++) {
		char *a = argv[i], name[64];
		const char *val = NULL, *eq;

		if (a[0] != '-' || !a[1]) {
			if (npos == 0) {
				size_t k;
				for (k = 0; k < sizeof(workloads) / sizeof(workloads[0]); k++)
					if (!strcmp(a, workloads[k].name))
						break;
				if (k == sizeof(workloads) / sizeof(workloads[0])) {
					fprintf(stderr, "bollard-bench: unknown command \"%s\"\n", a);
					bb_usage(stderr);
					return -1;
				}
				o->workload = workloads[k].w;
				o->workload_name = workloads[k].name;
			} else if (o->workload == BB_RANGE && npos == 1) {
				o->range_key = a;
			} else if (o->workload == BB_RANGE && npos == 2) {
				o->range_end = a;
			} else {
				fprintf(stderr, "bollard-bench: unexpected argument \"%s\"\n", a);
				return -1;
			}
			npos++;
			continue;
		}
		a += a[1] == '-' ? 2 : 1;
		eq = strchr(a, '=');
		if (strlen(a) >= sizeof(name) - 1) {
			fprintf(stderr, "bollard-bench: unknown flag %s\n", argv[i]);
			return -1;
		}
		snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
		if (is_bool_flag(name)) {
			if (eq) {
				fprintf(stderr, "bollard-bench: --%s takes no value\n", name);
				return -1;
			}
			if (!strcmp(name, "help") || !strcmp(name, "h")) {
				bb_usage(stdout);
				return 1;
			}
			if (!strcmp(name, "json"))
				o->json = true;
			else if (!strcmp(name, "no-histogram"))
				o->no_histogram = true;
			else
				o->sequential_keys = true;
			continue;
		}
		if (eq)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		else {
			fprintf(stderr, "bollard-bench: --%s needs a value\n", name);
			return -1;
		}
		if (apply_flag(o, name, val, &total_set) != 0)
			return -1;
	}
	if (npos == 0) {
		fprintf(stderr, "bollard-bench: no command\n");
		bb_usage(stderr);
		return -1;
	}
	if (o->n_endpoints == 0 && parse_endpoints(o, "127.0.0.1:2379") != 0)
		return -1;
	if (o->duration_s > 0 && !total_set)
		o->total = 0;
	if (o->watchers < 0)
		o->watchers = o->workload == BB_WATCH_LATENCY ? 100 : 1000;
	if (o->watch_keys < 0)
		o->watch_keys = o->workload == BB_WATCH_LATENCY ? 1 : 100;
	if (o->workload == BB_WATCH_LATENCY && !total_set && o->duration_s <= 0)
		o->total = 1000;
	if (o->workload == BB_WATCH_LATENCY && o->rate <= 0)
		o->rate = 100;
	if (o->workload == BB_WATCH || o->workload == BB_WATCH_LATENCY) {
		if (o->val_size < 16)
			o->val_size = 16;     /* the put's send time travels in the value */
		if (o->streams > o->watchers)
			o->streams = o->watchers;
	}
	if (o->conns > o->clients && o->workload != BB_WATCH && o->workload != BB_WATCH_LATENCY)
		o->conns = o->clients;
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	/* One thread per CPU. One thread in all costs less per call (gRPC's
	 * pollers hand off to each other with a futex wake-up: 0.3-0.5 per
	 * call with two threads), but on a loaded machine it gets one
	 * thread's share of the CPUs: range 10/100 ran at a third of the
	 * two-thread rate at load 20. */
	if (o->threads == 0)
		o->threads = ncpu > 0 ? (int)ncpu : 1;
	if (o->threads > o->clients && o->workload != BB_WATCH && o->workload != BB_WATCH_LATENCY)
		o->threads = o->clients;
	return 0;
}

void bb_options_free(struct bb_options *o)
{
	for (int i = 0; i < o->n_endpoints; i++)
		free(o->endpoints[i]);
	o->n_endpoints = 0;
}
