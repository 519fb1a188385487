/* compactor.c - etcd's auto-compaction (etcdserver/api/v3compactor) as a
 * timer on the node's loop:
 *   periodic: --auto-compaction-retention is hours ("1") or a duration
 *     ("30m"); every retention/10 (at most 6 min) the current revision is
 *     sampled, and every min(retention, 1h) the store is compacted to the
 *     revision sampled one retention ago (the first time after a whole
 *     retention has passed);
 *   revision: every 5 minutes, compact to current revision - retention.
 * Compactions are ordinary CompactionRequests through raft. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/duration.h"
#include "core/errors.h"
#include "node/log.h"
#include "node/node_int.h"

#define REVISION_INTERVAL_MS (5 * 60 * 1000)
#define HOUR_MS (60 * 60 * 1000ll)

int node_parse_duration_ms(const char *s, int64_t *ms)
{
	char why[160];
	uint64_t v;

	if (duration_parse_ms(s, &v, why, sizeof(why)) != 0 || v > INT64_MAX)
		return -EINVAL;
	*ms = (int64_t)v;
	return 0;
}

int node_compactor_init(struct node *n, char *errbuf, size_t errlen)
{
	struct node_compactor *c = &n->compactor;
	const char *mode = n->cfg.auto_compaction_mode;
	const char *ret = n->cfg.auto_compaction_retention;
	char *end;

	memset(c, 0, sizeof(*c));
	if (strcmp(mode, "periodic") == 0) {
		long long h = strtoll(ret, &end, 10);
		c->periodic = true;
		if (*ret != '\0' && *end == '\0') {
			c->retention = h * HOUR_MS;
		} else if (node_parse_duration_ms(ret, &c->retention) < 0) {
			snprintf(errbuf, errlen, "invalid --auto-compaction-retention \"%s\"", ret);
			return -EINVAL;
		}
	} else if (strcmp(mode, "revision") == 0) {
		c->retention = strtoll(ret, &end, 10);
		if (*ret == '\0' || *end != '\0' || c->retention < 0) {
			snprintf(errbuf, errlen, "invalid --auto-compaction-retention \"%s\"", ret);
			return -EINVAL;
		}
	} else {
		snprintf(errbuf, errlen, "unknown auto-compaction-mode %s", mode);
		return -EINVAL;
	}
	if (c->retention < 0) {
		snprintf(errbuf, errlen, "invalid --auto-compaction-retention \"%s\"", ret);
		return -EINVAL;
	}
	if (c->periodic && c->retention > 0) {
		int64_t itv = c->retention < HOUR_MS ? c->retention : HOUR_MS;
		c->period_ms = (uint64_t)itv;
		c->cap_samples = (size_t)(c->retention / (itv / 10 ? itv / 10 : 1)) + 1;
		c->sample_rev = calloc(c->cap_samples, sizeof(*c->sample_rev));
		if (c->sample_rev == NULL)
			return -ENOMEM;
	}
	return 0;
}

static int64_t current_rev(struct node *n)
{
	MDB_txn *txn;
	int64_t rev = 0;
	if (mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn) == 0) {
		rev = mvcc_current_rev(&n->mvcc, txn);
		mdb_txn_abort(txn);
	}
	return rev;
}

static void sample(struct node_compactor *c, int64_t rev)
{
	if (c->n_samples == c->cap_samples) {
		memmove(c->sample_rev, c->sample_rev + 1, (c->n_samples - 1) * sizeof(*c->sample_rev));
		c->n_samples--;
	}
	c->sample_rev[c->n_samples++] = rev;
}

static void compacted(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct node *n = req->data;
	struct node_compactor *c = &n->compactor;
	(void)len;
	free(resp);
	c->in_flight = false;
	if (err == 0 || err == BOLLARD_ECOMPACTED) {
		c->last_rev = c->msg.revision;
		c->last_ms = node_now_ms(n); /* etcd: lastSuccess */
		blog(BLOG_INFO, "compactor", "compacted at revision %lld", (long long)c->msg.revision);
	} else {
		blog(BLOG_WARN, "compactor", "compaction at revision %lld failed: %s",
		     (long long)c->msg.revision, bollard_strerror(err));
	}
}

static void propose_compaction(struct node *n, int64_t rev)
{
	struct node_compactor *c = &n->compactor;
	etcdserverpb__compaction_request__init(&c->msg);
	c->msg.revision = rev;
	memset(&c->req, 0, sizeof(c->req));
	c->req.data = n;
	c->req.op = NODE_COMPACT;
	c->req.msg = &c->msg.base;
	c->req.cb = compacted;
	c->in_flight = true;
	node_submit(n, &c->req);
}

static void tick(uv_timer_t *t)
{
	struct node *n = t->data;
	struct node_compactor *c = &n->compactor;
	uint64_t now = node_now_ms(n);
	int64_t rev;

	if (n->refusing || c->in_flight)
		return;
	if (!c->periodic) {
		rev = current_rev(n) - c->retention;
		if (rev > 0 && rev != c->last_rev)
			propose_compaction(n, rev);
		return;
	}
	/* The first compaction waits one whole retention, later ones one
	 * compaction interval (etcd's baseInterval). */
	uint64_t wait = c->last_rev == 0 && c->last_ms == c->start_ms ? (uint64_t)c->retention
	                                                               : c->period_ms;
	if (now - c->last_ms >= wait && c->n_samples > 0 && c->sample_rev[0] > c->last_rev)
		propose_compaction(n, c->sample_rev[0]);
	sample(c, current_rev(n));
}

void node_compactor_start(struct node *n)
{
	struct node_compactor *c = &n->compactor;
	uint64_t every;

	if (c->retention == 0)
		return;
	if (c->periodic) {
		every = c->period_ms / 10 ? c->period_ms / 10 : 1;
		c->start_ms = c->last_ms = node_now_ms(n);
		sample(c, current_rev(n));
		blog(BLOG_INFO, "compactor", "periodic auto-compaction: retention %lld ms",
		     (long long)c->retention);
	} else {
		every = REVISION_INTERVAL_MS;
		blog(BLOG_INFO, "compactor", "revision auto-compaction: keep %lld revisions",
		     (long long)c->retention);
	}
	uv_timer_start(&n->compact_timer, tick, every, every);
}

void node_compactor_free(struct node *n)
{
	free(n->compactor.sample_rev);
	n->compactor.sample_rev = NULL;
}
