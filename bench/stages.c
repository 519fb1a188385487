/* stages.c - bollard-bench's consensus latency breakdown from Bollard's
 * /metrics (see stages.h). */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "stages.h"

#define STAGE_FAMILY "bollard_request_stage_duration_seconds"
#define TOTAL_FAMILY "bollard_request_duration_seconds"

static struct bb_stage *stage_get(struct bb_stages *st, const char *name, size_t len)
{
	for (size_t i = 0; i < st->n; i++)
		if (strlen(st->s[i].name) == len && memcmp(st->s[i].name, name, len) == 0)
			return &st->s[i];
	if (st->n == BB_STAGE_MAX || len >= sizeof(st->s[0].name))
		return NULL;
	struct bb_stage *s = &st->s[st->n++];
	memset(s, 0, sizeof(*s));
	memcpy(s->name, name, len);
	return s;
}

/* The value of label key in a "{a=\"x\",b=\"y\"}" list: pointer and length. */
static const char *label(const char *labels, const char *end, const char *key, size_t *len)
{
	size_t kl = strlen(key);
	for (const char *p = labels; p && p < end; p++) {
		if ((p == labels || p[-1] == '{' || p[-1] == ',') && (size_t)(end - p) > kl + 2 &&
		    memcmp(p, key, kl) == 0 && p[kl] == '=' && p[kl + 1] == '"') {
			const char *v = p + kl + 2, *q = memchr(v, '"', (size_t)(end - v));
			if (q == NULL)
				return NULL;
			*len = (size_t)(q - v);
			return v;
		}
	}
	return NULL;
}

static int parse_line(const char *line, const char *eol, struct bb_stages *out)
{
	const char *suffix, *labels = NULL, *lend = NULL, *val, *name;
	size_t nlen;
	struct bb_stage *s;
	char *end;
	double v;

	if (strncmp(line, STAGE_FAMILY "_", sizeof(STAGE_FAMILY)) == 0) {
		suffix = line + sizeof(STAGE_FAMILY);
		name = NULL;
	} else if (strncmp(line, TOTAL_FAMILY "_", sizeof(TOTAL_FAMILY)) == 0) {
		suffix = line + sizeof(TOTAL_FAMILY);
		name = "total";
	} else {
		return 0;
	}
	val = memchr(line, ' ', (size_t)(eol - line));
	if (val == NULL)
		return 0;
	if ((labels = memchr(line, '{', (size_t)(val - line))) != NULL) {
		lend = memchr(labels, '}', (size_t)(eol - labels));
		if (lend == NULL)
			return 0;
		val = lend + 1;
	}
	v = strtod(val, &end);
	if (end == val)
		return 0;
	if (name == NULL) {
		if ((name = label(labels, lend, "stage", &nlen)) == NULL)
			return 0;
	} else {
		nlen = strlen(name);
	}
	if ((s = stage_get(out, name, nlen)) == NULL)
		return 0;
	if (strncmp(suffix, "sum", 3) == 0 && (suffix[3] == ' ' || suffix[3] == '{')) {
		s->sum += v;
	} else if (strncmp(suffix, "count", 5) == 0 && (suffix[5] == ' ' || suffix[5] == '{')) {
		s->count += v;
	} else if (strncmp(suffix, "bucket{", 7) == 0) {
		size_t ll;
		const char *le = label(labels, lend, "le", &ll);
		if (le == NULL)
			return 0;
		if (ll == 4 && memcmp(le, "+Inf", 4) == 0) {
			s->cum[s->n] += v; /* +Inf comes last */
			return 1;
		}
		double b = strtod(le, NULL);
		size_t i;
		for (i = 0; i < s->n && s->le[i] != b; i++)
			;
		if (i == s->n) {
			if (s->n == BB_STAGE_BUCKETS)
				return 0;
			s->le[s->n] = b;
			s->cum[s->n + 1] = s->cum[s->n]; /* keep +Inf's slot after the buckets */
			s->cum[s->n] = 0;
			s->n++;
		}
		s->cum[i] += v;
	} else {
		return 0;
	}
	return 1;
}

int bb_stages_parse(const char *text, struct bb_stages *out)
{
	int used = 0;
	for (const char *p = text; *p;) {
		const char *eol = strchr(p, '\n');
		if (eol == NULL)
			eol = p + strlen(p);
		if (*p != '#')
			used += parse_line(p, eol, out);
		p = *eol ? eol + 1 : eol;
	}
	return used;
}

void bb_stages_delta(const struct bb_stages *after, const struct bb_stages *before,
                     struct bb_stages *out)
{
	*out = *after;
	for (size_t i = 0; i < out->n; i++) {
		struct bb_stage *s = &out->s[i];
		for (size_t j = 0; j < before->n; j++) {
			const struct bb_stage *b = &before->s[j];
			if (strcmp(b->name, s->name) != 0 || b->n != s->n)
				continue;
			for (size_t k = 0; k <= s->n; k++)
				s->cum[k] -= b->cum[k];
			s->sum -= b->sum;
			s->count -= b->count;
		}
	}
}

double bb_stage_quantile(const struct bb_stage *s, double q)
{
	double total = s->cum[s->n], rank, lo = 0, prev = 0;
	if (total <= 0 || s->n == 0)
		return 0;
	rank = q * total;
	for (size_t i = 0; i < s->n; i++) {
		if (s->cum[i] >= rank) {
			double in = s->cum[i] - prev;
			return in > 0 ? lo + (s->le[i] - lo) * (rank - prev) / in : s->le[i];
		}
		lo = s->le[i];
		prev = s->cum[i];
	}
	return s->le[s->n - 1];
}

int bb_stages_scrape(const char *url, char **body, char *err, size_t errlen)
{
	char host[256], port[16], req[512];
	const char *p = url, *path;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	struct timeval tv = {.tv_sec = 10};
	size_t hl, len = 0, cap = 1 << 16;
	char *buf = NULL, *hdr_end;
	int fd = -1, rc;

	*body = NULL;
	if (strncmp(p, "http://", 7) == 0)
		p += 7;
	path = strchr(p, '/');
	hl = path ? (size_t)(path - p) : strlen(p);
	const char *colon = memchr(p, ':', hl);
	if (colon == NULL || (size_t)(colon - p) >= sizeof(host) || hl - (size_t)(colon - p) > sizeof(port)) {
		snprintf(err, errlen, "%s: want http://host:port[/path]", url);
		return -1;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - p), p);
	snprintf(port, sizeof(port), "%.*s", (int)(hl - (size_t)(colon - p) - 1), colon + 1);
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s:%s\r\n\r\n", path ? path : "/metrics",
	         host, port);
	if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0) {
		snprintf(err, errlen, "%s: %s", url, gai_strerror(rc));
		return -1;
	}
	if ((fd = socket(ai->ai_family, SOCK_STREAM, 0)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
	    connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
	    write(fd, req, strlen(req)) != (ssize_t)strlen(req) || (buf = malloc(cap)) == NULL)
		goto fail;
	for (;;) {
		ssize_t n;
		if (len + 1 == cap) {
			char *nb = realloc(buf, cap * 2);
			if (nb == NULL)
				goto fail;
			buf = nb;
			cap *= 2;
		}
		if ((n = read(fd, buf + len, cap - len - 1)) < 0)
			goto fail;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(fd);
	freeaddrinfo(ai);
	if (strncmp(buf, "HTTP/1.", 7) != 0 || strncmp(buf + 8, " 200", 4) != 0 ||
	    (hdr_end = strstr(buf, "\r\n\r\n")) == NULL) {
		snprintf(err, errlen, "%s: %.40s", url, buf);
		free(buf);
		return -1;
	}
	memmove(buf, hdr_end + 4, len - (size_t)(hdr_end + 4 - buf) + 1);
	*body = buf;
	return 0;
fail:
	snprintf(err, errlen, "%s: %s", url, strerror(errno));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	free(buf);
	return -1;
}

void bb_stages_text(FILE *f, const struct bb_stages *d)
{
	double total_mean = 0;
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->s[i].name, "total") == 0 && d->s[i].count > 0)
			total_mean = d->s[i].sum / d->s[i].count;
	fprintf(f, "\nConsensus latency breakdown (server side, from /metrics; writes):\n");
	fprintf(f, "  %-17s %10s %10s %10s %10s %8s\n", "stage", "count", "avg ms", "p50 ms", "p99 ms",
	        "of total");
	for (size_t i = 0; i < d->n; i++) {
		const struct bb_stage *s = &d->s[i];
		double avg = s->count > 0 ? s->sum / s->count : 0;
		fprintf(f, "  %-17s %10.0f %10.3f %10.3f %10.3f", s->name, s->count, avg * 1e3,
		        bb_stage_quantile(s, 0.5) * 1e3, bb_stage_quantile(s, 0.99) * 1e3);
		if (total_mean > 0 && s->count > 0)
			fprintf(f, " %7.1f%%", 100 * avg / total_mean);
		fprintf(f, "\n");
	}
	fprintf(f, "  (p50/p99 interpolated in the server's histogram buckets; a stage's share is its\n"
	           "   mean over the total's mean: forward and the leader-side stages of one write\n"
	           "   are counted on different members)\n");
}

void bb_stages_json(FILE *f, const struct bb_stages *d)
{
	fprintf(f, "{");
	for (size_t i = 0; i < d->n; i++) {
		const struct bb_stage *s = &d->s[i];
		fprintf(f, "%s\"%s\":{\"count\":%.0f,\"avg_ms\":%.6f,\"p50_ms\":%.6f,\"p99_ms\":%.6f}",
		        i ? "," : "", s->name, s->count, s->count > 0 ? s->sum / s->count * 1e3 : 0,
		        bb_stage_quantile(s, 0.5) * 1e3, bb_stage_quantile(s, 0.99) * 1e3);
	}
	fprintf(f, "}");
}
