/* stats.c - the benchmark's report arithmetic (see stats.h). */
#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void bb_samples_init(struct bb_samples *s)
{
	memset(s, 0, sizeof(*s));
}

void bb_samples_free(struct bb_samples *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static int reserve(struct bb_samples *s, size_t want)
{
	size_t cap = s->cap ? s->cap : 1024;
	uint64_t *v;

	if (want <= s->cap)
		return 0;
	while (cap < want)
		cap *= 2;
	v = realloc(s->v, cap * sizeof(*v));
	if (!v)
		return -1;
	s->v = v;
	s->cap = cap;
	return 0;
}

void bb_samples_add(struct bb_samples *s, uint64_t ns)
{
	if (s->n == s->cap && reserve(s, s->n + 1) != 0) {
		s->oom = 1;
		return;
	}
	s->v[s->n++] = ns;
}

int bb_samples_merge(struct bb_samples *dst, const struct bb_samples *src)
{
	if (src->n == 0)
		return 0;
	if (reserve(dst, dst->n + src->n) != 0)
		return -1;
	memcpy(dst->v + dst->n, src->v, src->n * sizeof(*src->v));
	dst->n += src->n;
	dst->oom |= src->oom;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

void bb_samples_sort(struct bb_samples *s)
{
	if (s->n > 1)
		qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
}

uint64_t bb_percentile(const uint64_t *sorted, size_t n, double p)
{
	double rank;
	size_t i;

	if (n == 0)
		return 0;
	if (p <= 0)
		return sorted[0];
	/* ceil(p/100 * n); the small epsilon keeps products that are whole
	 * numbers in decimal (99.9% of 1000 = 999) from rounding up a rank
	 * through binary floating-point error. */
	rank = ceil(p * (double)n / 100.0 - 1e-9);
	i = rank < 1 ? 0 : (size_t)rank - 1;
	return sorted[i < n ? i : n - 1];
}

void bb_summarize(const uint64_t *sorted, size_t n, struct bb_summary *out)
{
	double sum = 0, var = 0;

	memset(out, 0, sizeof(*out));
	if (n == 0)
		return;
	out->n = n;
	out->min = sorted[0];
	out->max = sorted[n - 1];
	for (size_t i = 0; i < n; i++)
		sum += (double)sorted[i];
	out->avg = sum / (double)n;
	for (size_t i = 0; i < n; i++) {
		double d = (double)sorted[i] - out->avg;
		var += d * d;
	}
	out->stddev = sqrt(var / (double)n);
	out->p50 = bb_percentile(sorted, n, 50);
	out->p90 = bb_percentile(sorted, n, 90);
	out->p99 = bb_percentile(sorted, n, 99);
	out->p999 = bb_percentile(sorted, n, 99.9);
}

int bb_hist_bucket(uint64_t ns)
{
	uint64_t us = ns / 1000;
	int b = 0;

	while (us > 0 && b < BB_HIST_BUCKETS - 1) {   /* b = bit length of us */
		us >>= 1;
		b++;
	}
	return b;
}

uint64_t bb_hist_lower_ns(int i)
{
	return i <= 0 ? 0 : ((uint64_t)1 << (i - 1)) * 1000;
}

uint64_t bb_hist_upper_ns(int i)
{
	return i >= BB_HIST_BUCKETS - 1 ? UINT64_MAX : ((uint64_t)1 << i) * 1000;
}

void bb_hist_build(const uint64_t *v, size_t n, struct bb_hist *h)
{
	memset(h, 0, sizeof(*h));
	for (size_t i = 0; i < n; i++)
		h->count[bb_hist_bucket(v[i])]++;
}
