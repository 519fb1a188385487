/* watch_hub.c - watchers, their index, event matching, catch-up and the
 * WatchResponse encoding (see watch_hub.h).
 *
 * Index (a "group"): single-key watchers sit in a chained hash table by
 * key; range watchers (prefix, [key, end), from-key) in a treap ordered by
 * start key and augmented with the largest end of each subtree, so the
 * watchers whose range holds a key are found without visiting the others.
 * The synced watchers form one group; each sync step builds a temporary
 * group of the watchers it catches up (etcd's watcherGroup, the same idea).
 *
 * Matching one batch of events: each matched watcher gets a slot (epoch
 * stamped, so nothing is cleared between batches) and every (slot, event)
 * pair is recorded; a stable bucket pass then gives each watcher its events
 * in revision order, and one response per run of whole revisions up to
 * max_response_bytes (a notify's commit batch, or a catch-up step's read)
 * is encoded and offered.
 *
 * Per-watcher memory: struct watcher (80 bytes on LP64) + its key and range
 * end + the allocator's header, + one slot of its stream's id table. */
#include "core/watch_hub.h"
#include "core/openaddr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define W_FROM_KEY 0x01 /* range end is +infinity */
#define W_NOPUT 0x02
#define W_NODELETE 0x04
#define W_PREV_KV 0x08
#define W_PROGRESS 0x10
#define W_FRAGMENT 0x20
#define W_HAD_EVENTS 0x40 /* sent events since the last progress tick */
#define W_REFUSED 0x80    /* a catch-up response was refused this step */

enum { S_SYNCED, S_UNSYNCED, S_CATCHUP };

struct watcher {
	int64_t id;
	struct watch_stream *st;
	int64_t next_rev; /* first revision not yet sent */
	union {
		struct watcher *hnext;                 /* key hash chain */
		struct {
			struct watcher *l, *r, *maxend;   /* treap; maxend: widest end below */
		} t;
		struct {
			struct watcher *prev, *next;      /* unsynced list */
		} u;
	} link;
	uint32_t epoch, slot; /* matching scratch */
	uint32_t key_len, end_len;
	uint32_t prio;
	uint8_t flags, state;
	uint8_t bytes[]; /* key, then range end */
};

struct group {
	struct watcher **buckets;
	size_t nbuckets, nkeyed;
	struct watcher *root;
	size_t nranged;
};

struct watch_stream {
	void *ud;
	struct watch_stream *prev, *next;
	struct watcher **tab; /* open addressing by id, linear probing */
	size_t cap, n;
	int64_t next_id;
	size_t n_unsynced;
	struct watch_stream *dnext; /* in the hub's list of streams sent to */
	bool dirty;
};

/* An event of the batch being matched (pointers into the read txn). */
struct hev {
	int64_t main;
	const uint8_t *key;
	size_t key_len;
	const uint8_t *kv, *prev;
	size_t kv_len, prev_len;
	bool is_delete;
};

struct pair {
	uint32_t slot, ev;
};

struct watch_hub {
	struct watch_hub_io io;
	struct watch_hub_config cfg;
	int64_t cur;
	uint64_t cluster_id, member_id, raft_term;
	struct group synced, catchup;
	struct watcher *u_head, *u_tail; /* unsynced, round-robin order */
	size_t n_unsynced, n_watchers, n_prev, n_streams;
	struct watch_stream *streams;
	struct watch_stream *dirty; /* sent to since the last flush */
	uint32_t epoch;
	uint32_t rng;
	/* per-batch scratch */
	struct hev *evs;
	size_t nevs, cap_evs;
	struct pair *pairs, *sorted;
	size_t npairs, cap_pairs, cap_sorted;
	struct watcher **matched;
	size_t nmatched, cap_matched;
	uint32_t *counts;
	size_t cap_counts;
	struct watch_hub_stats stats;
};

/* ------------------------------------------------------------ helpers */

static int bcmp_(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	size_t n = al < bl ? al : bl;
	int c = n ? memcmp(a, b, n) : 0;
	return c ? c : (al < bl ? -1 : al > bl);
}

static const uint8_t *w_key(const struct watcher *w)
{
	return w->bytes;
}

static const uint8_t *w_end(const struct watcher *w)
{
	return w->bytes + w->key_len;
}

static bool w_ranged(const struct watcher *w)
{
	return w->end_len > 0 || (w->flags & W_FROM_KEY);
}

/* Compare the range ends of two range watchers (from-key is largest). */
static int end_cmp(const struct watcher *a, const struct watcher *b)
{
	bool ai = a->flags & W_FROM_KEY, bi = b->flags & W_FROM_KEY;
	if (ai || bi)
		return ai == bi ? 0 : (ai ? 1 : -1);
	return bcmp_(w_end(a), a->end_len, w_end(b), b->end_len);
}

/* Whether key k lies below w's range end. */
static bool below_end(const struct watcher *w, const uint8_t *k, size_t kl)
{
	return (w->flags & W_FROM_KEY) || bcmp_(k, kl, w_end(w), w->end_len) < 0;
}

static uint64_t hash_key(const uint8_t *k, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ k[i]) * 1099511628211ull;
	return h ^ (h >> 29);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 64;
	while (c < need)
		c *= 2;
	void *q = realloc(*p, c * elem);
	if (q == NULL)
		return -ENOMEM;
	*p = q;
	*cap = c;
	return 0;
}

/* A response was queued on st: flush it before returning. */
static void mark_sent(struct watch_hub *h, struct watch_stream *st)
{
	if (st->dirty || h->io.flush == NULL)
		return;
	st->dirty = true;
	st->dnext = h->dirty;
	h->dirty = st;
}

/* Hand what was queued to every stream sent to (end of each public call
 * that sends). */
static void flush_sent(struct watch_hub *h)
{
	while (h->dirty) {
		struct watch_stream *st = h->dirty;
		h->dirty = st->dnext;
		st->dirty = false;
		h->io.flush(st->ud);
	}
}

/* ------------------------------------------------------------ groups */

static int group_key_add(struct group *g, struct watcher *w)
{
	if (g->nkeyed + 1 > g->nbuckets) {
		size_t nb = g->nbuckets ? g->nbuckets * 2 : 64;
		struct watcher **b = calloc(nb, sizeof(*b));
		if (b == NULL) {
			if (g->nbuckets == 0)
				return -ENOMEM;
		} else {
			for (size_t i = 0; i < g->nbuckets; i++)
				for (struct watcher *x = g->buckets[i], *nx; x; x = nx) {
					nx = x->link.hnext;
					size_t j = hash_key(w_key(x), x->key_len) & (nb - 1);
					x->link.hnext = b[j];
					b[j] = x;
				}
			free(g->buckets);
			g->buckets = b;
			g->nbuckets = nb;
		}
	}
	size_t j = hash_key(w_key(w), w->key_len) & (g->nbuckets - 1);
	w->link.hnext = g->buckets[j];
	g->buckets[j] = w;
	g->nkeyed++;
	return 0;
}

static void group_key_del(struct group *g, struct watcher *w)
{
	size_t j = hash_key(w_key(w), w->key_len) & (g->nbuckets - 1);
	for (struct watcher **pp = &g->buckets[j]; *pp; pp = &(*pp)->link.hnext)
		if (*pp == w) {
			*pp = w->link.hnext;
			g->nkeyed--;
			return;
		}
}

static void t_fix(struct watcher *n)
{
	struct watcher *m = n;
	if (n->link.t.l && end_cmp(n->link.t.l->link.t.maxend, m) > 0)
		m = n->link.t.l->link.t.maxend;
	if (n->link.t.r && end_cmp(n->link.t.r->link.t.maxend, m) > 0)
		m = n->link.t.r->link.t.maxend;
	n->link.t.maxend = m;
}

/* Treap order: start key, then address (watchers may share a range). */
static int t_cmp(const struct watcher *a, const struct watcher *b)
{
	int c = bcmp_(w_key(a), a->key_len, w_key(b), b->key_len);
	if (c)
		return c;
	return a < b ? -1 : a > b;
}

static struct watcher *t_rot_right(struct watcher *n)
{
	struct watcher *l = n->link.t.l;
	n->link.t.l = l->link.t.r;
	l->link.t.r = n;
	t_fix(n);
	t_fix(l);
	return l;
}

static struct watcher *t_rot_left(struct watcher *n)
{
	struct watcher *r = n->link.t.r;
	n->link.t.r = r->link.t.l;
	r->link.t.l = n;
	t_fix(n);
	t_fix(r);
	return r;
}

static struct watcher *t_insert(struct watcher *root, struct watcher *w)
{
	if (root == NULL) {
		w->link.t.l = w->link.t.r = NULL;
		w->link.t.maxend = w;
		return w;
	}
	if (t_cmp(w, root) < 0) {
		root->link.t.l = t_insert(root->link.t.l, w);
		if (root->link.t.l->prio > root->prio)
			return t_rot_right(root);
	} else {
		root->link.t.r = t_insert(root->link.t.r, w);
		if (root->link.t.r->prio > root->prio)
			return t_rot_left(root);
	}
	t_fix(root);
	return root;
}

static struct watcher *t_delete(struct watcher *root, struct watcher *w)
{
	if (root == NULL)
		return NULL;
	if (root == w) {
		struct watcher *l = w->link.t.l, *r = w->link.t.r;
		if (l == NULL)
			return r;
		if (r == NULL)
			return l;
		if (l->prio > r->prio) {
			root = t_rot_right(w);
			root->link.t.r = t_delete(root->link.t.r, w);
		} else {
			root = t_rot_left(w);
			root->link.t.l = t_delete(root->link.t.l, w);
		}
	} else if (t_cmp(w, root) < 0) {
		root->link.t.l = t_delete(root->link.t.l, w);
	} else {
		root->link.t.r = t_delete(root->link.t.r, w);
	}
	t_fix(root);
	return root;
}

static int group_add(struct watch_hub *h, struct group *g, struct watcher *w)
{
	if (!w_ranged(w))
		return group_key_add(g, w);
	h->rng = h->rng * 1103515245u + 12345u;
	w->prio = h->rng ^ (uint32_t)((uintptr_t)w >> 4);
	g->root = t_insert(g->root, w);
	g->nranged++;
	return 0;
}

static void group_del(struct group *g, struct watcher *w)
{
	if (!w_ranged(w)) {
		group_key_del(g, w);
		return;
	}
	g->root = t_delete(g->root, w);
	g->nranged--;
}

static bool group_empty(const struct group *g)
{
	return g->nkeyed == 0 && g->nranged == 0;
}

/* ------------------------------------------------------------ matching */

static int match_one(struct watch_hub *h, struct watcher *w, uint32_t ev)
{
	const struct hev *e = &h->evs[ev];
	if (e->main < w->next_rev)
		return 0;
	if ((e->is_delete && (w->flags & W_NODELETE)) || (!e->is_delete && (w->flags & W_NOPUT)))
		return 0;
	if (w->epoch != h->epoch) {
		if (grow((void **)&h->matched, &h->cap_matched, h->nmatched + 1, sizeof(*h->matched)))
			return -ENOMEM;
		w->epoch = h->epoch;
		w->slot = (uint32_t)h->nmatched;
		h->matched[h->nmatched++] = w;
	}
	if (grow((void **)&h->pairs, &h->cap_pairs, h->npairs + 1, sizeof(*h->pairs)))
		return -ENOMEM;
	h->pairs[h->npairs++] = (struct pair){w->slot, ev};
	return 0;
}

/* Range watchers of the subtree holding key k ([start, end) contains k). */
static int t_stab(struct watch_hub *h, struct watcher *n, const struct hev *e, uint32_t ev)
{
	while (n != NULL) {
		if (!below_end(n->link.t.maxend, e->key, e->key_len))
			return 0; /* no range below reaches past k */
		int rc = t_stab(h, n->link.t.l, e, ev);
		if (rc)
			return rc;
		if (bcmp_(w_key(n), n->key_len, e->key, e->key_len) > 0)
			return 0; /* n and everything right of it start after k */
		if (below_end(n, e->key, e->key_len) && (rc = match_one(h, n, ev)) != 0)
			return rc;
		n = n->link.t.r;
	}
	return 0;
}

static int group_match(struct watch_hub *h, struct group *g, uint32_t ev)
{
	const struct hev *e = &h->evs[ev];
	int rc;
	if (g->nkeyed) {
		size_t j = hash_key(e->key, e->key_len) & (g->nbuckets - 1);
		for (struct watcher *w = g->buckets[j]; w; w = w->link.hnext)
			if (w->key_len == e->key_len && memcmp(w_key(w), e->key, e->key_len) == 0 &&
			    (rc = match_one(h, w, ev)) != 0)
				return rc;
	}
	return g->root ? t_stab(h, g->root, e, ev) : 0;
}

/* ------------------------------------------------------------ encoding */

static size_t vlen(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *vput(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static size_t field_len(size_t len)
{
	return 1 + vlen(len) + len;
}

static size_t ev_len(const struct hev *e, bool prev)
{
	return (e->is_delete ? 2 : 0) + field_len(e->kv_len) +
	       (prev && e->prev ? field_len(e->prev_len) : 0);
}

static uint8_t *ev_put(uint8_t *p, const struct hev *e, bool prev)
{
	if (e->is_delete) {
		*p++ = 0x08; /* type = DELETE */
		*p++ = 0x01;
	}
	*p++ = 0x12; /* kv */
	p = vput(p, e->kv_len);
	memcpy(p, e->kv, e->kv_len);
	p += e->kv_len;
	if (prev && e->prev) {
		*p++ = 0x1a; /* prev_kv */
		p = vput(p, e->prev_len);
		memcpy(p, e->prev, e->prev_len);
		p += e->prev_len;
	}
	return p;
}

struct resp {
	int64_t rev, watch_id, compact_rev;
	bool created, canceled, fragment;
	const char *reason;
};

static size_t hdr_len(const struct watch_hub *h, int64_t rev)
{
	size_t n = 0;
	if (h->cluster_id)
		n += 1 + vlen(h->cluster_id);
	if (h->member_id)
		n += 1 + vlen(h->member_id);
	if (rev)
		n += 1 + vlen((uint64_t)rev);
	if (h->raft_term)
		n += 1 + vlen(h->raft_term);
	return n;
}

static size_t resp_fixed_len(const struct watch_hub *h, const struct resp *r)
{
	size_t n = field_len(hdr_len(h, r->rev));
	if (r->watch_id)
		n += 1 + vlen((uint64_t)r->watch_id);
	n += (r->created ? 2 : 0) + (r->canceled ? 2 : 0) + (r->fragment ? 2 : 0);
	if (r->compact_rev)
		n += 1 + vlen((uint64_t)r->compact_rev);
	if (r->reason && *r->reason)
		n += field_len(strlen(r->reason));
	return n;
}

static uint8_t *resp_put_fixed(const struct watch_hub *h, uint8_t *p, const struct resp *r)
{
	*p++ = 0x0a;
	p = vput(p, hdr_len(h, r->rev));
	if (h->cluster_id) {
		*p++ = 0x08;
		p = vput(p, h->cluster_id);
	}
	if (h->member_id) {
		*p++ = 0x10;
		p = vput(p, h->member_id);
	}
	if (r->rev) {
		*p++ = 0x18;
		p = vput(p, (uint64_t)r->rev);
	}
	if (h->raft_term) {
		*p++ = 0x20;
		p = vput(p, h->raft_term);
	}
	if (r->watch_id) {
		*p++ = 0x10;
		p = vput(p, (uint64_t)r->watch_id);
	}
	if (r->created) {
		*p++ = 0x18;
		*p++ = 1;
	}
	if (r->canceled) {
		*p++ = 0x20;
		*p++ = 1;
	}
	if (r->compact_rev) {
		*p++ = 0x28;
		p = vput(p, (uint64_t)r->compact_rev);
	}
	if (r->reason && *r->reason) {
		size_t l = strlen(r->reason);
		*p++ = 0x32;
		p = vput(p, l);
		memcpy(p, r->reason, l);
		p += l;
	}
	if (r->fragment) {
		*p++ = 0x38;
		*p++ = 1;
	}
	return p;
}

/* A control response (no events). */
static int send_ctl(struct watch_hub *h, struct watch_stream *st, const struct resp *r, bool force)
{
	size_t n = resp_fixed_len(h, r);
	uint8_t *b = malloc(n ? n : 1);
	if (b == NULL)
		return -ENOMEM;
	resp_put_fixed(h, b, r);
	int rc = h->io.send(st->ud, b, n, force, r->watch_id, 0);
	if (rc == WATCH_FULL)
		free(b);
	else if (rc == WATCH_SENT)
		mark_sent(h, st);
	return rc;
}

/* Send events evs[idx[0..n)] (ascending) to w: one response per run of
 * whole revisions up to max_response_bytes; the
 * last response's header says hdr_rev. Returns WATCH_SENT, WATCH_FULL (w's
 * next_rev is the first revision not queued), WATCH_DEAD, or -ENOMEM. */
static int deliver(struct watch_hub *h, struct watcher *w, const uint32_t *idx, size_t n,
                   int64_t hdr_rev)
{
	bool prev = w->flags & W_PREV_KV;
	size_t max = h->cfg.max_response_bytes;
	size_t i = 0;
	while (i < n) {
		/* Choose the events [i, j) of this response: whole revisions. */
		size_t j = i, bytes = 0;
		while (j < n) {
			int64_t rev = h->evs[idx[j]].main;
			size_t k = j, rb = 0;
			while (k < n && h->evs[idx[k]].main == rev)
				rb += field_len(ev_len(&h->evs[idx[k]], prev)), k++;
			if (j > i && bytes + rb > max)
				break;
			bytes += rb;
			j = k;
		}
		int64_t last_rev = h->evs[idx[j - 1]].main;
		struct resp r = {.rev = j == n ? hdr_rev : last_rev, .watch_id = w->id};
		/* Fragments: etcd splits only for watchers that asked, and only
		 * a response of several events past the limit. */
		size_t f = i;
		do {
			size_t g = j;
			r.fragment = false;
			if ((w->flags & W_FRAGMENT) && bytes >= max && j - f > 1) {
				size_t fb = 0;
				for (g = f; g < j; g++) {
					size_t eb = field_len(ev_len(&h->evs[idx[g]], prev));
					if (g > f && fb + eb >= max)
						break;
					fb += eb;
				}
				r.fragment = g < j;
			}
			size_t fixed = resp_fixed_len(h, &r), len = fixed;
			for (size_t k = f; k < g; k++)
				len += field_len(ev_len(&h->evs[idx[k]], prev));
			uint8_t *b = malloc(len), *p;
			if (b == NULL)
				return -ENOMEM;
			p = resp_put_fixed(h, b, &r);
			for (size_t k = f; k < g; k++) {
				const struct hev *e = &h->evs[idx[k]];
				*p++ = 0x5a; /* events */
				p = vput(p, ev_len(e, prev));
				p = ev_put(p, e, prev);
			}
			/* Once the first piece of a fragmented response is
			 * queued, the rest are forced: next_rev only moves past
			 * whole responses, so a piece refused midway would make
			 * catch-up resend the pieces already queued. The queue
			 * overshoots its limit by one response at most. */
			bool whole = f == i && g == j; /* not a fragment */
			int rc = h->io.send(w->st->ud, b, len, f > i, w->id, whole ? fixed : 0);
			if (rc == WATCH_FULL) {
				free(b);
				return rc;
			}
			if (rc != WATCH_SENT)
				return rc;
			mark_sent(h, w->st);
			h->stats.responses++;
			h->stats.events += g - f;
			f = g;
		} while (f < j);
		w->flags |= W_HAD_EVENTS;
		w->next_rev = last_rev + 1;
		i = j;
	}
	return WATCH_SENT;
}

/* ------------------------------------------------------------ states */

static void unsynced_push(struct watch_hub *h, struct watcher *w)
{
	w->state = S_UNSYNCED;
	w->link.u.next = NULL;
	w->link.u.prev = h->u_tail;
	if (h->u_tail)
		h->u_tail->link.u.next = w;
	else
		h->u_head = w;
	h->u_tail = w;
	h->n_unsynced++;
	w->st->n_unsynced++;
}

static void unsynced_del(struct watch_hub *h, struct watcher *w)
{
	if (w->link.u.prev)
		w->link.u.prev->link.u.next = w->link.u.next;
	else
		h->u_head = w->link.u.next;
	if (w->link.u.next)
		w->link.u.next->link.u.prev = w->link.u.prev;
	else
		h->u_tail = w->link.u.prev;
	h->n_unsynced--;
	w->st->n_unsynced--;
}

/* Into the synced group; if that fails (no memory for the index), the
 * watcher stays unsynced and is retried by the next sync step. */
static void make_synced(struct watch_hub *h, struct watcher *w)
{
	if (group_add(h, &h->synced, w) == 0)
		w->state = S_SYNCED;
	else
		unsynced_push(h, w);
}

static void detach(struct watch_hub *h, struct watcher *w)
{
	switch (w->state) {
	case S_SYNCED:
		group_del(&h->synced, w);
		break;
	case S_UNSYNCED:
		unsynced_del(h, w);
		break;
	default:
		group_del(&h->catchup, w);
		break;
	}
}

/* ------------------------------------------------------------ streams */

static size_t tab_slot(const struct watch_stream *st, int64_t id)
{
	return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 17) & (st->cap - 1);
}

static struct watcher *tab_get(const struct watch_stream *st, int64_t id)
{
	if (st->cap == 0)
		return NULL;
	for (size_t i = tab_slot(st, id);; i = (i + 1) & (st->cap - 1)) {
		if (st->tab[i] == NULL)
			return NULL;
		if (st->tab[i]->id == id)
			return st->tab[i];
	}
}

static int tab_put(struct watch_stream *st, struct watcher *w)
{
	if ((st->n + 1) * 4 > st->cap * 3) {
		size_t nc = st->cap ? st->cap * 2 : 4;
		struct watcher **t = calloc(nc, sizeof(*t)), **old = st->tab;
		size_t oc = st->cap;
		if (t == NULL)
			return -ENOMEM;
		st->tab = t;
		st->cap = nc;
		for (size_t i = 0; i < oc; i++)
			if (old[i]) {
				size_t j = tab_slot(st, old[i]->id);
				while (t[j])
					j = (j + 1) & (nc - 1);
				t[j] = old[i];
			}
		free(old);
	}
	size_t j = tab_slot(st, w->id);
	while (st->tab[j])
		j = (j + 1) & (st->cap - 1);
	st->tab[j] = w;
	st->n++;
	return 0;
}

/* Remove with backward-shift deletion (no tombstones). */
static void tab_del(struct watch_stream *st, struct watcher *w)
{
	size_t i = tab_slot(st, w->id), m = st->cap - 1;
	while (st->tab[i] != w)
		i = (i + 1) & m;
	st->tab[i] = NULL;
	for (size_t j = (i + 1) & m; st->tab[j]; j = (j + 1) & m) {
		size_t home = tab_slot(st, st->tab[j]->id);
		if (openaddr_shift_back(home, i, j)) {
			st->tab[i] = st->tab[j];
			st->tab[j] = NULL;
			i = j;
		}
	}
	st->n--;
}

static void watcher_free(struct watch_hub *h, struct watcher *w, bool detach_it)
{
	if (detach_it)
		detach(h, w);
	if (w->flags & W_PREV_KV)
		h->n_prev--;
	h->n_watchers--;
	free(w);
}

struct watch_stream *watch_hub_stream_open(struct watch_hub *h, void *ud)
{
	struct watch_stream *st = calloc(1, sizeof(*st));
	if (st == NULL)
		return NULL;
	st->ud = ud;
	st->next = h->streams;
	if (h->streams)
		h->streams->prev = st;
	h->streams = st;
	h->n_streams++;
	return st;
}

void watch_hub_stream_close(struct watch_hub *h, struct watch_stream *st)
{
	/* Never in the list of streams sent to: each call that sends empties it. */
	for (size_t i = 0; i < st->cap; i++)
		if (st->tab[i])
			watcher_free(h, st->tab[i], true);
	free(st->tab);
	if (st->prev)
		st->prev->next = st->next;
	else
		h->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	h->n_streams--;
	free(st);
}

/* ------------------------------------------------------------ requests */

static int progress_answer(struct watch_hub *h, struct watch_stream *st)
{
	struct resp r = {.rev = h->cur, .watch_id = -1};
	int rc = send_ctl(h, st, &r, true);
	return rc == -ENOMEM ? rc : 0;
}

static int create(struct watch_hub *h, struct watch_stream *st, const Etcdserverpb__WatchCreateRequest *c)
{
	static const uint8_t zero = 0;
	const uint8_t *key = c->key.len ? c->key.data : &zero; /* "\0": the smallest key */
	size_t klen = c->key.len ? c->key.len : 1;
	bool from_key = c->range_end.len == 1 && c->range_end.data[0] == 0;
	size_t elen = from_key ? 0 : c->range_end.len;
	struct resp r = {.rev = h->cur, .created = true};
	int64_t id = c->watch_id;

	if (elen && bcmp_(key, klen, c->range_end.data, elen) >= 0) {
		r.watch_id = -1;
		r.canceled = true;
		r.reason = "mvcc: watcher range is empty";
	} else if (id != 0 && tab_get(st, id) != NULL) {
		r.watch_id = -1;
		r.canceled = true;
		r.reason = "mvcc: duplicate watch ID provided on the WatchStream";
	}
	if (r.canceled) {
		int rc = send_ctl(h, st, &r, true);
		return rc == -ENOMEM ? rc : 0;
	}
	if (klen > UINT32_MAX || elen > UINT32_MAX)
		return -EINVAL;
	struct watcher *w = calloc(1, sizeof(*w) + klen + elen);
	if (w == NULL)
		return -ENOMEM;
	if (id == 0) { /* etcd's AutoWatchID: the next id free on this stream */
		while (tab_get(st, st->next_id) != NULL)
			st->next_id++;
		id = st->next_id++;
	}
	w->id = id;
	w->st = st;
	w->key_len = (uint32_t)klen;
	w->end_len = (uint32_t)elen;
	memcpy(w->bytes, key, klen);
	if (elen)
		memcpy(w->bytes + klen, c->range_end.data, elen);
	w->flags = (from_key ? W_FROM_KEY : 0) | (c->prev_kv ? W_PREV_KV : 0) |
	           (c->progress_notify ? W_PROGRESS : 0) | (c->fragment ? W_FRAGMENT : 0);
	for (size_t i = 0; i < c->n_filters; i++)
		w->flags |= c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT
		                    ? W_NOPUT
		                    : W_NODELETE;
	w->next_rev = c->start_revision > 0 ? c->start_revision : h->cur + 1;
	w->epoch = h->epoch - 1;
	if (tab_put(st, w) != 0) {
		free(w);
		return -ENOMEM;
	}
	h->n_watchers++;
	if (w->flags & W_PREV_KV)
		h->n_prev++;
	r.watch_id = id;
	/* The created response goes first: events only ever follow it. */
	int rc = send_ctl(h, st, &r, true);
	if (w->next_rev <= h->cur)
		unsynced_push(h, w);
	else
		make_synced(h, w);
	return rc == -ENOMEM ? rc : 0;
}

static int cancel(struct watch_hub *h, struct watch_stream *st, int64_t id)
{
	struct watcher *w = tab_get(st, id);
	if (w == NULL)
		return 0; /* etcd answers nothing */
	tab_del(st, w);
	watcher_free(h, w, true);
	struct resp r = {.rev = h->cur, .watch_id = id, .canceled = true};
	int rc = send_ctl(h, st, &r, true);
	return rc == -ENOMEM ? rc : 0;
}

static int refuse(struct watch_hub *h, struct watch_stream *st, const char *reason)
{
	struct resp r = {.rev = h->cur, .watch_id = -1, .created = true, .canceled = true,
	                 .reason = reason};
	int rc = send_ctl(h, st, &r, true);
	return rc == -ENOMEM ? rc : 0;
}

static int request(struct watch_hub *h, struct watch_stream *st,
                   const Etcdserverpb__WatchRequest *req)
{
	switch (req->request_union_case) {
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST:
		return req->create_request ? create(h, st, req->create_request) : 0;
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST:
		return req->cancel_request ? cancel(h, st, req->cancel_request->watch_id) : 0;
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST:
		/* etcd 3.4 (v3rpc/watch.go) answers at once with the
		 * current revision and watch_id -1, whether or not the
		 * stream's watchers are synced (3.5 waits until they are). */
		return progress_answer(h, st);
	default:
		return 0;
	}
}

/* ------------------------------------------------------------ batches */

static int collect(void *ud, const struct mvcc_event *e)
{
	struct watch_hub *h = ud;
	if (grow((void **)&h->evs, &h->cap_evs, h->nevs + 1, sizeof(*h->evs)))
		return -ENOMEM;
	h->evs[h->nevs++] = (struct hev){
		.main = e->main, .key = e->kv.key.data, .key_len = e->kv.key.len,
		.kv = e->kv_raw, .kv_len = e->kv_len, .prev = e->prev_raw, .prev_len = e->prev_len,
		.is_delete = e->is_delete,
	};
	return 0;
}

static void batch_reset(struct watch_hub *h)
{
	h->epoch++;
	h->npairs = 0;
	h->nmatched = 0;
}

/* Bucket the pairs by slot (stable: each watcher's events stay in order). */
static int batch_sort(struct watch_hub *h)
{
	if (grow((void **)&h->counts, &h->cap_counts, h->nmatched + 1, sizeof(*h->counts)) ||
	    grow((void **)&h->sorted, &h->cap_sorted, h->npairs, sizeof(*h->sorted)))
		return -ENOMEM;
	memset(h->counts, 0, (h->nmatched + 1) * sizeof(*h->counts));
	for (size_t i = 0; i < h->npairs; i++)
		h->counts[h->pairs[i].slot + 1]++;
	for (size_t s = 0; s < h->nmatched; s++)
		h->counts[s + 1] += h->counts[s];
	for (size_t i = 0; i < h->npairs; i++)
		h->sorted[h->counts[h->pairs[i].slot]++] = h->pairs[i];
	/* counts[s] is now the end of slot s; its start is counts[s-1]. */
	return 0;
}

/* Event indexes of slot s after batch_sort, into a scratch array. */
static const uint32_t *slot_events(struct watch_hub *h, size_t s, size_t *n, uint32_t *scratch)
{
	size_t b = s ? h->counts[s - 1] : 0, e = h->counts[s];
	for (size_t i = b; i < e; i++)
		scratch[i - b] = h->sorted[i].ev;
	*n = e - b;
	return scratch;
}

/* Match the batch h->evs against the synced group and send each matched
 * watcher its events: one response per run of whole revisions (all of the
 * batch unless past max_response_bytes), headed by its last event's
 * revision. A watcher whose key changed at several revisions of one commit
 * batch gets them together, as etcd sends a catching-up watcher (and as
 * the stream's queue would merge them anyway): one message per watcher and
 * batch, not per revision. */
static int notify_batch(struct watch_hub *h, uint32_t *scratch)
{
	int rc;
	batch_reset(h);
	for (size_t i = 0; i < h->nevs; i++)
		if ((rc = group_match(h, &h->synced, (uint32_t)i)) != 0)
			return rc;
	if (h->nmatched == 0)
		return 0;
	if ((rc = batch_sort(h)) != 0)
		return rc;
	for (size_t s = 0; s < h->nmatched; s++) {
		struct watcher *w = h->matched[s];
		size_t n;
		const uint32_t *idx = slot_events(h, s, &n, scratch);
		rc = deliver(h, w, idx, n, h->evs[idx[n - 1]].main);
		if (rc == -ENOMEM)
			return rc;
		if (rc != WATCH_SENT) {
			/* Slow (or gone) stream: catch up later from MVCC. */
			group_del(&h->synced, w);
			unsynced_push(h, w);
			h->stats.fallbacks++;
		}
	}
	return 0;
}

static int notify(struct watch_hub *h, const struct mvcc *m, MDB_txn *txn, int64_t new_rev)
{
	int rc = 0;
	if (new_rev <= h->cur)
		return 0;
	if (!group_empty(&h->synced)) {
		int64_t next;
		h->nevs = 0;
		rc = mvcc_read_events(m, txn, h->cur + 1, new_rev, 0, h->n_prev > 0, collect, h, &next);
		uint32_t *scratch = NULL;
		if (rc == 0 && h->nevs > 0 && (scratch = malloc(h->nevs * sizeof(*scratch))) == NULL)
			rc = -ENOMEM;
		if (rc == 0 && h->nevs > 0)
			rc = notify_batch(h, scratch);
		free(scratch);
		h->nevs = 0;
	}
	h->cur = new_rev;
	return rc;
}

/* ------------------------------------------------------------ catch-up */

static int sync_step(struct watch_hub *h, const struct mvcc *m, MDB_txn *txn)
{
	int64_t compacted = mvcc_compact_rev(m, txn), min_rev = INT64_MAX;
	size_t chosen = 0, scanned = 0, total = h->n_unsynced;
	struct watcher *caught = NULL; /* the chosen ones, chained via u.next */
	int rc = 0;

	h->stats.sync_steps++;
	/* Choose: visit each unsynced watcher at most once per step. */
	for (struct watcher *w = h->u_head, *nx; w && scanned < total &&
	     chosen < h->cfg.max_sync_watchers; w = nx) {
		nx = w->link.u.next;
		scanned++;
		struct watch_stream *st = w->st;
		if (!h->io.writable(st->ud))
			continue;
		if (w->next_rev > h->cur) {
			unsynced_del(h, w);
			make_synced(h, w);
			continue;
		}
		if (w->next_rev < compacted) {
			/* etcd: the watch ends with compact_revision set. */
			struct resp r = {.watch_id = w->id, .compact_rev = compacted, .canceled = true};
			int s = send_ctl(h, st, &r, false);
			if (s == -ENOMEM)
				return s;
			if (s == WATCH_FULL)
				continue;
			tab_del(st, w);
			watcher_free(h, w, true);
			continue;
		}
		unsynced_del(h, w);
		w->state = S_CATCHUP;
		if (group_add(h, &h->catchup, w) != 0) {
			unsynced_push(h, w);
			continue;
		}
		if (w->next_rev < min_rev)
			min_rev = w->next_rev;
		chosen++;
	}
	if (chosen > 0) {
		/* The group's links now hold the catch-up index: remember the
		 * chosen watchers through the matched array instead. */
		int64_t next = min_rev;
		h->nevs = 0;
		batch_reset(h);
		rc = mvcc_read_events(m, txn, min_rev, h->cur, h->cfg.max_sync_events, h->n_prev > 0,
		                      collect, h, &next);
		for (size_t i = 0; rc == 0 && i < h->nevs; i++)
			rc = group_match(h, &h->catchup, (uint32_t)i);
		uint32_t *scratch = NULL;
		if (rc == 0 && h->nevs > 0 && (scratch = malloc(h->nevs * sizeof(*scratch))) == NULL)
			rc = -ENOMEM;
		if (rc == 0 && h->nmatched > 0)
			rc = batch_sort(h);
		for (size_t s = 0; rc == 0 && s < h->nmatched; s++) {
			struct watcher *w = h->matched[s];
			size_t n;
			const uint32_t *idx = slot_events(h, s, &n, scratch);
			int d = deliver(h, w, idx, n, next - 1);
			if (d == -ENOMEM)
				rc = d;
			else if (d != WATCH_SENT)
				w->flags |= W_REFUSED; /* stays behind */
		}
		free(scratch);
		h->nevs = 0;
		/* Take every chosen watcher out of the catch-up index (its links
		 * are the only list of them), chaining them through u.prev. */
		while (h->catchup.root) {
			struct watcher *w = h->catchup.root;
			group_del(&h->catchup, w);
			w->link.u.prev = caught;
			caught = w;
		}
		for (size_t b = 0; b < h->catchup.nbuckets && h->catchup.nkeyed; b++)
			while (h->catchup.buckets[b]) {
				struct watcher *w = h->catchup.buckets[b];
				h->catchup.buckets[b] = w->link.hnext;
				h->catchup.nkeyed--;
				w->link.u.prev = caught;
				caught = w;
			}
		while (caught) {
			struct watcher *w = caught;
			caught = w->link.u.prev;
			bool refused = w->flags & W_REFUSED;
			w->flags &= (uint8_t)~W_REFUSED;
			if (rc == 0 && !refused && w->next_rev < next)
				w->next_rev = next; /* nothing of its own in what was read */
			if (rc == 0 && !refused && w->next_rev > h->cur)
				make_synced(h, w);
			else
				unsynced_push(h, w);
		}
	}
	return rc < 0 ? rc : (int)(h->n_unsynced > INT32_MAX ? INT32_MAX : h->n_unsynced);
}

/* ------------------------------------------------------------ progress */

static void progress_tick(struct watch_hub *h)
{
	for (struct watch_stream *st = h->streams; st; st = st->next)
		for (size_t i = 0; i < st->cap; i++) {
			struct watcher *w = st->tab[i];
			if (w == NULL || !(w->flags & W_PROGRESS))
				continue;
			if (w->state == S_SYNCED && !(w->flags & W_HAD_EVENTS)) {
				struct resp r = {.rev = h->cur, .watch_id = w->id};
				send_ctl(h, st, &r, false);
			}
			w->flags &= (uint8_t)~W_HAD_EVENTS;
		}
}

/* ------------------------------------------------------------ entry points */

/* Each public call that may send flushes the streams it sent to. */

int watch_hub_refuse(struct watch_hub *h, struct watch_stream *st, const char *reason)
{
	int rc = refuse(h, st, reason);
	flush_sent(h);
	return rc;
}

int watch_hub_request(struct watch_hub *h, struct watch_stream *st,
                      const Etcdserverpb__WatchRequest *req)
{
	int rc = request(h, st, req);
	flush_sent(h);
	return rc;
}

int watch_hub_notify(struct watch_hub *h, const struct mvcc *m, MDB_txn *txn, int64_t new_rev)
{
	int rc = notify(h, m, txn, new_rev);
	flush_sent(h);
	return rc;
}

int watch_hub_sync(struct watch_hub *h, const struct mvcc *m, MDB_txn *txn)
{
	int rc = sync_step(h, m, txn);
	flush_sent(h);
	return rc;
}

void watch_hub_progress_tick(struct watch_hub *h)
{
	progress_tick(h);
	flush_sent(h);
}

/* ------------------------------------------------------------ lifecycle */

struct watch_hub *watch_hub_new(const struct watch_hub_io *io, const struct watch_hub_config *cfg,
                                int64_t cur_rev)
{
	struct watch_hub *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	h->io = *io;
	h->cfg.max_sync_watchers = 512;
	h->cfg.max_sync_events = 1000;
	h->cfg.max_response_bytes = 1536 * 1024;
	if (cfg) {
		if (cfg->max_sync_watchers)
			h->cfg.max_sync_watchers = cfg->max_sync_watchers;
		if (cfg->max_sync_events)
			h->cfg.max_sync_events = cfg->max_sync_events;
		if (cfg->max_response_bytes)
			h->cfg.max_response_bytes = cfg->max_response_bytes;
	}
	h->cur = cur_rev;
	h->epoch = 1;
	h->rng = 2463534242u;
	return h;
}

void watch_hub_free(struct watch_hub *h)
{
	if (h == NULL)
		return;
	while (h->streams)
		watch_hub_stream_close(h, h->streams);
	free(h->synced.buckets);
	free(h->catchup.buckets);
	free(h->evs);
	free(h->pairs);
	free(h->sorted);
	free(h->matched);
	free(h->counts);
	free(h);
}

void watch_hub_set_header(struct watch_hub *h, uint64_t cluster_id, uint64_t member_id,
                          uint64_t raft_term)
{
	h->cluster_id = cluster_id;
	h->member_id = member_id;
	h->raft_term = raft_term;
}

int64_t watch_hub_rev(const struct watch_hub *h)
{
	return h->cur;
}

size_t watch_hub_watchers(const struct watch_hub *h)
{
	return h->n_watchers;
}

size_t watch_hub_unsynced(const struct watch_hub *h)
{
	return h->n_unsynced;
}

void watch_hub_stats(const struct watch_hub *h, struct watch_hub_stats *out)
{
	*out = h->stats;
	out->streams = h->n_streams;
	out->watchers = h->n_watchers;
	out->unsynced = h->n_unsynced;
	out->synced = h->synced.nkeyed + h->synced.nranged;
	out->watcher_bytes = sizeof(struct watcher) + 16 /* malloc header */ +
	                     2 * sizeof(struct watcher *) /* id table at <= 3/4 load */;
}
