/* report.c - bollard-bench's report (see report.h). */
#include "stages.h"
#include "report.h"

#include <string.h>

static const char *const status_names[BB_NSTATUS + 1] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED", "CLIENT",
};

const char *bb_status_name(int code)
{
	return code >= 0 && code <= BB_NSTATUS ? status_names[code] : "?";
}

void bb_report_build(struct bench *b, struct bb_report *r)
{
	memset(r, 0, sizeof(*r));
	for (int k = 0; k < BB_NSERIES && b->ops->series_name[k]; k++) {
		struct bb_report_series *s = &r->s[k];
		uint64_t last = 0;

		s->name = b->ops->series_name[k];
		bb_samples_init(&s->lat);
		for (int i = 0; i < b->n_w; i++) {
			const struct bb_series *ws = &b->w[i].s[k];
			bb_samples_merge(&s->lat, &ws->lat);
			s->ok += ws->ok;
			for (int c = 0; c <= BB_NSTATUS; c++)
				s->errors[c] += ws->errors[c];
			if (ws->last_ns > last)
				last = ws->last_ns;
		}
		for (int c = 0; c <= BB_NSTATUS; c++)
			s->n_errors += s->errors[c];
		r->n_errors += s->n_errors;
		s->elapsed_s = last > b->t_go ? (double)(last - b->t_go) / 1e9 : 0;
		s->throughput = s->elapsed_s > 0 ? (double)s->ok / s->elapsed_s : 0;
		bb_samples_sort(&s->lat);
		bb_summarize(s->lat.v, s->lat.n, &s->sum);
		bb_hist_build(s->lat.v, s->lat.n, &s->hist);
		r->n = k + 1;
	}
}

void bb_report_free(struct bb_report *r)
{
	for (int k = 0; k < r->n; k++)
		bb_samples_free(&r->s[k].lat);
}

static double ms(double ns)
{
	return ns / 1e6;
}

/* "512us", "1ms", "1.02s": a bucket bound for the histogram's labels. */
static void fmt_bound(char *buf, size_t n, uint64_t ns)
{
	if (ns == UINT64_MAX)
		snprintf(buf, n, "inf");
	else if (ns < 1000000)
		snprintf(buf, n, "%lluus", (unsigned long long)(ns / 1000));
	else if (ns < 1000000000)
		snprintf(buf, n, "%.3gms", (double)ns / 1e6);
	else
		snprintf(buf, n, "%.3gs", (double)ns / 1e9);
}

static void text_histogram(FILE *f, const struct bb_report_series *s)
{
	int lo = 0, hi = BB_HIST_BUCKETS - 1;
	uint64_t max = 0;

	while (lo < hi && s->hist.count[lo] == 0)
		lo++;
	while (hi > lo && s->hist.count[hi] == 0)
		hi--;
	for (int i = lo; i <= hi; i++)
		if (s->hist.count[i] > max)
			max = s->hist.count[i];
	fprintf(f, "  Latency histogram (log2 buckets):\n");
	for (int i = lo; i <= hi; i++) {
		char a[16], z[16];
		int bar = max ? (int)((s->hist.count[i] * 40 + max - 1) / max) : 0;
		fmt_bound(a, sizeof(a), bb_hist_lower_ns(i));
		fmt_bound(z, sizeof(z), bb_hist_upper_ns(i));
		fprintf(f, "  %7s - %-7s %9llu |%.*s\n", a, z, (unsigned long long)s->hist.count[i], bar,
		        "########################################");
	}
}

void bb_report_text(FILE *f, const struct bench *b, const struct bb_report *r)
{
	const struct bb_options *o = b->o;

	fprintf(f, "bollard-bench %s: %d endpoint(s) %s%s, %d conns, %d clients", o->workload_name,
	        o->n_endpoints, o->endpoints[0], o->n_endpoints > 1 ? ",..." : "", o->conns,
	        o->clients);
	if (o->workload == BB_WATCH || o->workload == BB_WATCH_LATENCY)
		fprintf(f, ", %d watchers on %d keys over %d streams (created in %.2f s)", o->watchers,
		        o->watch_keys, o->streams, b->setup_s);
	fprintf(f, "\n");
	for (int k = 0; k < r->n; k++) {
		const struct bb_report_series *s = &r->s[k];
		const struct bb_summary *m = &s->sum;

		fprintf(f, "\n%s: %llu ok in %.3f s: %.1f/s\n", s->name, (unsigned long long)s->ok,
		        s->elapsed_s, s->throughput);
		if (m->n) {
			fprintf(f, "  Latency (ms): min %.3f  avg %.3f  stddev %.3f  max %.3f\n",
			        ms((double)m->min), ms(m->avg), ms(m->stddev), ms((double)m->max));
			fprintf(f, "  Percentiles (ms): p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f\n",
			        ms((double)m->p50), ms((double)m->p90), ms((double)m->p99),
			        ms((double)m->p999));
			if (!o->no_histogram)
				text_histogram(f, s);
		}
		if (s->n_errors) {
			fprintf(f, "  Errors: %llu:", (unsigned long long)s->n_errors);
			for (int c = 0; c <= BB_NSTATUS; c++)
				if (s->errors[c])
					fprintf(f, " %s %llu", bb_status_name(c),
					        (unsigned long long)s->errors[c]);
			fprintf(f, "\n");
		}
	}
	if (o->workload == BB_WATCH || o->workload == BB_WATCH_LATENCY)
		fprintf(f, "\nevents due %llu, delivered %llu in %llu responses, missing %llu\n",
		        (unsigned long long)atomic_load(&((struct bench *)b)->expected),
		        (unsigned long long)atomic_load(&((struct bench *)b)->progress),
		        (unsigned long long)atomic_load(&((struct bench *)b)->responses),
		        (unsigned long long)b->missing);
	if (b->first_error[0])
		fprintf(f, "first error: %s\n", b->first_error);
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void json_series(FILE *f, const struct bb_report_series *s)
{
	const struct bb_summary *m = &s->sum;
	int first = 1;

	fprintf(f, "{\"name\":");
	json_string(f, s->name);
	fprintf(f, ",\"ok\":%llu,\"elapsed_s\":%.6f,\"throughput\":%.3f,", (unsigned long long)s->ok,
	        s->elapsed_s, s->throughput);
	fprintf(f,
	        "\"latency_ms\":{\"min\":%.6f,\"avg\":%.6f,\"stddev\":%.6f,\"p50\":%.6f,\"p90\":%.6f,"
	        "\"p99\":%.6f,\"p99.9\":%.6f,\"max\":%.6f},",
	        ms((double)m->min), ms(m->avg), ms(m->stddev), ms((double)m->p50), ms((double)m->p90),
	        ms((double)m->p99), ms((double)m->p999), ms((double)m->max));
	fprintf(f, "\"histogram\":[");
	for (int i = 0; i < BB_HIST_BUCKETS; i++) {
		if (!s->hist.count[i])
			continue;
		fprintf(f, "%s{\"lower_ms\":%.3f,\"upper_ms\":", first ? "" : ",",
		        ms((double)bb_hist_lower_ns(i)));
		if (bb_hist_upper_ns(i) == UINT64_MAX)
			fprintf(f, "null");
		else
			fprintf(f, "%.3f", ms((double)bb_hist_upper_ns(i)));
		fprintf(f, ",\"count\":%llu}", (unsigned long long)s->hist.count[i]);
		first = 0;
	}
	fprintf(f, "],\"errors\":{");
	first = 1;
	for (int c = 0; c <= BB_NSTATUS; c++) {
		if (!s->errors[c])
			continue;
		fprintf(f, "%s\"%s\":%llu", first ? "" : ",", bb_status_name(c),
		        (unsigned long long)s->errors[c]);
		first = 0;
	}
	fprintf(f, "}}");
}

void bb_report_json(FILE *f, const struct bench *b, const struct bb_report *r)
{
	const struct bb_options *o = b->o;
	struct bench *mb = (struct bench *)b;

	fprintf(f, "{\"command\":");
	json_string(f, o->workload_name);
	fprintf(f, ",\"endpoints\":[");
	for (int i = 0; i < o->n_endpoints; i++) {
		fprintf(f, "%s", i ? "," : "");
		json_string(f, o->endpoints[i]);
	}
	fprintf(f, "],\"conns\":%d,\"clients\":%d,\"key_size\":%d,\"val_size\":%d,", o->conns,
	        o->clients, o->key_size, o->val_size);
	if (o->workload == BB_WATCH || o->workload == BB_WATCH_LATENCY)
		fprintf(f,
		        "\"watchers\":%d,\"watch_keys\":%d,\"streams\":%d,\"watch_setup_s\":%.6f,"
		        "\"events_due\":%llu,\"events_delivered\":%llu,\"event_responses\":%llu,"
		        "\"events_missing\":%llu,",
		        o->watchers, o->watch_keys, o->streams, b->setup_s,
		        (unsigned long long)atomic_load(&mb->expected),
		        (unsigned long long)atomic_load(&mb->progress),
		        (unsigned long long)atomic_load(&mb->responses), (unsigned long long)b->missing);
	fprintf(f, "\"errors\":%llu,\"series\":[", (unsigned long long)r->n_errors);
	for (int k = 0; k < r->n; k++) {
		fprintf(f, "%s", k ? "," : "");
		json_series(f, &r->s[k]);
	}
	fprintf(f, "],\"first_error\":");
	if (b->first_error[0])
		json_string(f, b->first_error);
	else
		fprintf(f, "null");
	if (b->stages) {
		fprintf(f, ",\"stages\":");
		bb_stages_json(f, b->stages);
	}
	fprintf(f, "}\n");
}
