/* lease.c - the lessor (see lease.h): a chained hash table by lease ID and
 * a binary min-heap of the same entries by due time. */
#include "core/lease.h"

#include <errno.h>
#include <stdlib.h>

#include "core/errors.h"

int lease_clamp_ttl(int64_t ttl, int64_t min_ttl, int64_t *out)
{
	if (ttl > LEASE_MAX_TTL)
		return BOLLARD_ELEASE_TTL_TOO_LARGE;
	*out = ttl < min_ttl ? min_ttl : ttl;
	return 0;
}

int64_t lease_min_ttl(unsigned election_ms, unsigned heartbeat_ms)
{
	unsigned ticks = heartbeat_ms ? election_ms / heartbeat_ms : 0;
	uint64_t ms = (uint64_t)(3 * ticks / 2) * heartbeat_ms;
	return (int64_t)((ms + 999) / 1000);
}

/* ---- hash ------------------------------------------------------------------ */

static size_t bucket_of(const struct lessor *l, int64_t id)
{
	return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 17) & (l->n_buckets - 1);
}

static struct lease_ent *find(const struct lessor *l, int64_t id)
{
	if (l->n_buckets == 0)
		return NULL;
	for (struct lease_ent *e = l->buckets[bucket_of(l, id)]; e != NULL; e = e->next)
		if (e->id == id)
			return e;
	return NULL;
}

static int grow(struct lessor *l)
{
	size_t nb = l->n_buckets ? l->n_buckets * 2 : 64;
	struct lease_ent **b = calloc(nb, sizeof(*b));
	if (b == NULL)
		return -ENOMEM;
	struct lease_ent **old = l->buckets;
	size_t on = l->n_buckets;
	l->buckets = b;
	l->n_buckets = nb;
	for (size_t i = 0; i < on; i++)
		for (struct lease_ent *e = old[i], *next; e != NULL; e = next) {
			next = e->next;
			size_t k = bucket_of(l, e->id);
			e->next = b[k];
			b[k] = e;
		}
	free(old);
	return 0;
}

/* ---- heap ------------------------------------------------------------------ */

static void heap_set(struct lessor *l, size_t i, struct lease_ent *e)
{
	l->heap[i] = e;
	e->heap_idx = i;
}

static void sift_up(struct lessor *l, size_t i)
{
	struct lease_ent *e = l->heap[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (l->heap[p]->due_ms <= e->due_ms)
			break;
		heap_set(l, i, l->heap[p]);
		i = p;
	}
	heap_set(l, i, e);
}

static void sift_down(struct lessor *l, size_t i)
{
	struct lease_ent *e = l->heap[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= l->heap_len)
			break;
		if (c + 1 < l->heap_len && l->heap[c + 1]->due_ms < l->heap[c]->due_ms)
			c++;
		if (l->heap[c]->due_ms >= e->due_ms)
			break;
		heap_set(l, i, l->heap[c]);
		i = c;
	}
	heap_set(l, i, e);
}

static void heap_fix(struct lessor *l, struct lease_ent *e)
{
	sift_up(l, e->heap_idx);
	sift_down(l, e->heap_idx);
}

static void heap_remove(struct lessor *l, struct lease_ent *e)
{
	size_t i = e->heap_idx;
	struct lease_ent *last = l->heap[--l->heap_len];
	if (last != e) {
		heap_set(l, i, last);
		heap_fix(l, last);
	}
}

/* ---- table ----------------------------------------------------------------- */

void lessor_init(struct lessor *l)
{
	*l = (struct lessor){0};
}

void lessor_free(struct lessor *l)
{
	for (size_t i = 0; i < l->heap_len; i++)
		free(l->heap[i]);
	free(l->heap);
	free(l->buckets);
	*l = (struct lessor){0};
}

static int64_t remaining_or_ttl(const struct lease_ent *e)
{
	return e->remaining_ttl > 0 ? e->remaining_ttl : e->ttl;
}

/* etcd's refresh(extend): expiry = now + extend + remaining TTL. */
static void refresh(struct lessor *l, struct lease_ent *e, uint64_t now, uint64_t extend_ms)
{
	if (!l->primary) {
		e->expiry_ms = e->due_ms = LEASE_FOREVER;
	} else {
		e->expiry_ms = now + extend_ms + (uint64_t)remaining_or_ttl(e) * 1000;
		e->due_ms = e->expiry_ms;
	}
	heap_fix(l, e);
}

int lessor_add(struct lessor *l, int64_t id, int64_t ttl, int64_t remaining_ttl, uint64_t now)
{
	if (find(l, id) != NULL)
		return BOLLARD_ELEASE_EXIST;
	if (l->count >= l->n_buckets && grow(l) != 0)
		return -ENOMEM;
	if (l->heap_len == l->heap_cap) {
		size_t cap = l->heap_cap ? l->heap_cap * 2 : 64;
		struct lease_ent **h = realloc(l->heap, cap * sizeof(*h));
		if (h == NULL)
			return -ENOMEM;
		l->heap = h;
		l->heap_cap = cap;
	}
	struct lease_ent *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return -ENOMEM;
	e->id = id;
	e->ttl = ttl;
	e->remaining_ttl = remaining_ttl;
	size_t b = bucket_of(l, id);
	e->next = l->buckets[b];
	l->buckets[b] = e;
	l->count++;
	heap_set(l, l->heap_len++, e);
	refresh(l, e, now, 0);
	return 0;
}

int lessor_remove(struct lessor *l, int64_t id)
{
	if (l->n_buckets == 0)
		return BOLLARD_ELEASE_NOT_FOUND;
	struct lease_ent **pp = &l->buckets[bucket_of(l, id)];
	for (; *pp != NULL; pp = &(*pp)->next) {
		struct lease_ent *e = *pp;
		if (e->id != id)
			continue;
		*pp = e->next;
		heap_remove(l, e);
		l->count--;
		free(e);
		return 0;
	}
	return BOLLARD_ELEASE_NOT_FOUND;
}

const struct lease_ent *lessor_get(const struct lessor *l, int64_t id)
{
	return find(l, id);
}

int lessor_renew(struct lessor *l, int64_t id, uint64_t now, int64_t *ttl, bool *had_checkpoint)
{
	struct lease_ent *e;
	*had_checkpoint = false;
	if (!l->primary)
		return BOLLARD_ENOT_LEADER;
	if ((e = find(l, id)) == NULL || e->expiry_ms <= now)
		return BOLLARD_ELEASE_NOT_FOUND;
	*had_checkpoint = e->remaining_ttl > 0;
	e->remaining_ttl = 0;
	refresh(l, e, now, 0);
	*ttl = e->ttl;
	return 0;
}

int64_t lessor_remaining(const struct lessor *l, const struct lease_ent *e, uint64_t now)
{
	if (!l->primary || e->expiry_ms == LEASE_FOREVER)
		return remaining_or_ttl(e);
	if (e->expiry_ms <= now)
		return -(int64_t)((now - e->expiry_ms) / 1000); /* Go's truncation */
	return (int64_t)((e->expiry_ms - now) / 1000);
}

int lessor_checkpoint(struct lessor *l, int64_t id, int64_t remaining_ttl)
{
	struct lease_ent *e = find(l, id);
	if (e == NULL)
		return BOLLARD_ELEASE_NOT_FOUND;
	e->remaining_ttl = remaining_ttl;
	return 0;
}

static int cmp_expiry(const void *a, const void *b)
{
	const struct lease_ent *x = *(struct lease_ent *const *)a;
	const struct lease_ent *y = *(struct lease_ent *const *)b;
	return x->expiry_ms < y->expiry_ms ? -1 : x->expiry_ms > y->expiry_ms;
}

/* etcd's pile-up avoidance after Promote: walk the leases by expiry in
 * windows of one second; past 3/4 of the revoke rate in a window, push the
 * rest back in proportion. */
static void spread(struct lessor *l, uint64_t now, uint64_t extend_ms)
{
	size_t n = l->heap_len;
	struct lease_ent **v = malloc(n * sizeof(*v));
	if (v == NULL)
		return; /* best effort: the revoke rate limit still applies */
	for (size_t i = 0; i < n; i++)
		v[i] = l->heap[i];
	qsort(v, n, sizeof(*v), cmp_expiry);
	const int64_t target = (3 * LEASE_REVOKE_RATE) / 4;
	int64_t base = (int64_t)(v[0]->expiry_ms - now), next = base + 1000, expires = 0;
	for (size_t i = 0; i < n; i++) {
		struct lease_ent *e = v[i];
		int64_t remaining = (int64_t)(e->expiry_ms - now);
		if (remaining > next) {
			base = remaining;
			next = base + 1000;
			expires = 1;
			continue;
		}
		if (++expires <= target)
			continue;
		int64_t delay = 1000 * expires / target - (remaining - base);
		if (delay < 0)
			delay = 0;
		next = base + delay;
		e->expiry_ms = now + extend_ms + (uint64_t)delay + (uint64_t)remaining_or_ttl(e) * 1000;
		e->due_ms = e->expiry_ms;
		heap_fix(l, e);
	}
	free(v);
}

void lessor_promote(struct lessor *l, uint64_t now, uint64_t extend_ms)
{
	l->primary = true;
	for (size_t i = 0; i < l->heap_len; i++) {
		struct lease_ent *e = l->heap[i];
		e->expiry_ms = now + extend_ms + (uint64_t)remaining_or_ttl(e) * 1000;
		e->due_ms = e->expiry_ms;
		e->cp_due_ms = 0;
	}
	/* Every key changed: rebuild the heap bottom-up. */
	for (size_t i = l->heap_len / 2; i-- > 0;)
		sift_down(l, i);
	if (l->count >= LEASE_REVOKE_RATE)
		spread(l, now, extend_ms);
}

void lessor_demote(struct lessor *l)
{
	l->primary = false;
	for (size_t i = 0; i < l->heap_len; i++) {
		l->heap[i]->expiry_ms = l->heap[i]->due_ms = LEASE_FOREVER;
		l->heap[i]->cp_due_ms = 0;
	}
}

size_t lessor_expired(struct lessor *l, uint64_t now, int64_t *ids, size_t max)
{
	size_t n = 0;
	if (!l->primary)
		return 0;
	while (n < max && l->heap_len > 0 && l->heap[0]->due_ms <= now) {
		struct lease_ent *e = l->heap[0];
		ids[n++] = e->id;
		e->due_ms = now + LEASE_EXPIRED_RETRY_MS;
		sift_down(l, 0);
	}
	return n;
}

uint64_t lessor_next_due(const struct lessor *l)
{
	if (!l->primary || l->heap_len == 0)
		return LEASE_FOREVER;
	return l->heap[0]->due_ms;
}

size_t lessor_checkpoints_due(struct lessor *l, uint64_t now, uint64_t interval_ms, int64_t *ids,
                              int64_t *remaining, size_t max)
{
	size_t n = 0;
	if (!l->primary)
		return 0;
	for (size_t i = 0; i < l->heap_len && n < max; i++) {
		struct lease_ent *e = l->heap[i];
		if ((uint64_t)e->ttl * 1000 <= interval_ms || e->expiry_ms <= now)
			continue;
		if (e->cp_due_ms == 0) {
			e->cp_due_ms = now + interval_ms;
			continue;
		}
		if (e->cp_due_ms > now)
			continue;
		ids[n] = e->id;
		remaining[n] = (int64_t)((e->expiry_ms - now + 999) / 1000);
		n++;
		e->cp_due_ms = now + interval_ms;
	}
	return n;
}

int lessor_foreach(const struct lessor *l, int (*fn)(void *ud, const struct lease_ent *e),
                   void *ud)
{
	for (size_t i = 0; i < l->heap_len; i++) {
		int rc = fn(ud, l->heap[i]);
		if (rc != 0)
			return rc;
	}
	return 0;
}
