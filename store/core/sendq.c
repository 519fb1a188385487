/* sendq.c - the outgoing message queue with merging (see sendq.h).
 *
 * The index holds at most one message per key, and only messages queued
 * after the last unmergeable one: queueing an unmergeable message empties
 * it, popping a message takes it out. A merge grows the older message's
 * buffer geometrically, so merging k messages copies each byte O(1) times. */
#include "core/sendq.h"
#include "core/openaddr.h"

#include <stdlib.h>
#include <string.h>

void sendq_init(struct sendq *q)
{
	memset(q, 0, sizeof(*q));
}

void sendq_fini(struct sendq *q)
{
	free(q->tab);
	q->tab = NULL;
	q->tab_cap = q->tab_n = 0;
}

static size_t slot_of(const struct sendq *q, int64_t key)
{
	return (size_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 20) & (q->tab_cap - 1);
}

static struct sendq_msg **tab_find(struct sendq *q, int64_t key)
{
	if (q->tab_n == 0)
		return NULL;
	for (size_t i = slot_of(q, key);; i = (i + 1) & (q->tab_cap - 1)) {
		if (q->tab[i] == NULL)
			return NULL;
		if (q->tab[i]->key == key)
			return &q->tab[i];
	}
}

static void tab_clear(struct sendq *q)
{
	if (q->tab_n > 0)
		memset(q->tab, 0, q->tab_cap * sizeof(*q->tab));
	q->tab_n = 0;
}

/* Remove slot i with backward-shift deletion (no tombstones). */
static void tab_del_at(struct sendq *q, size_t i)
{
	size_t m = q->tab_cap - 1;
	q->tab[i] = NULL;
	for (size_t j = (i + 1) & m; q->tab[j]; j = (j + 1) & m) {
		size_t home = slot_of(q, q->tab[j]->key);
		if (openaddr_shift_back(home, i, j)) {
			q->tab[i] = q->tab[j];
			q->tab[j] = NULL;
			i = j;
		}
	}
	q->tab_n--;
}

/* Index m as its key's newest message (replacing an older one). */
static void tab_set(struct sendq *q, struct sendq_msg *m)
{
	struct sendq_msg **p = tab_find(q, m->key);
	if (p != NULL) {
		*p = m;
		return;
	}
	if ((q->tab_n + 1) * 2 > q->tab_cap) {
		size_t nc = q->tab_cap ? q->tab_cap * 2 : 16;
		struct sendq_msg **t = calloc(nc, sizeof(*t)), **old = q->tab;
		size_t oc = q->tab_cap;
		if (t == NULL)
			return; /* m just cannot be merged into */
		q->tab = t;
		q->tab_cap = nc;
		for (size_t i = 0; i < oc; i++)
			if (old[i] != NULL) {
				size_t j = slot_of(q, old[i]->key);
				while (t[j] != NULL)
					j = (j + 1) & (nc - 1);
				t[j] = old[i];
			}
		free(old);
	}
	size_t j = slot_of(q, m->key);
	while (q->tab[j] != NULL)
		j = (j + 1) & (q->tab_cap - 1);
	q->tab[j] = m;
	q->tab_n++;
}

/* a := m's prefix + a's body + m's body. 0, or -1 (too big, no memory). */
static int merge(struct sendq_msg *a, struct sendq_msg *m, size_t max_merged)
{
	size_t abody = a->len - a->prefix, mbody = m->len - m->prefix;
	size_t len = m->prefix + abody + mbody;
	if (len > max_merged)
		return -1;
	size_t cap = a->cap > a->len ? a->cap : a->len;
	if (len > cap) {
		size_t nc = cap * 2 > len ? cap * 2 : len;
		if (nc > max_merged)
			nc = max_merged;
		uint8_t *d = realloc(a->data, nc);
		if (d == NULL)
			return -1;
		a->data = d;
		a->cap = nc;
	}
	if (m->prefix != a->prefix)
		memmove(a->data + m->prefix, a->data + a->prefix, abody);
	memcpy(a->data, m->data, m->prefix);
	memcpy(a->data + m->prefix + abody, m->data + m->prefix, mbody);
	a->len = len;
	a->prefix = m->prefix;
	return 0;
}

int sendq_push(struct sendq *q, struct sendq_msg *m, size_t max_merged)
{
	if (m->prefix == 0 || m->data == NULL) {
		tab_clear(q); /* nothing queued so far may be merged into any more */
	} else {
		struct sendq_msg **p = tab_find(q, m->key);
		if (p != NULL) {
			size_t before = (*p)->len;
			if (merge(*p, m, max_merged) == 0) {
				q->bytes += (*p)->len - before;
				free(m->data);
				m->data = NULL;
				m->len = 0;
				q->merged++;
				return SENDQ_MERGED;
			}
		}
		tab_set(q, m);
	}
	m->next = NULL;
	if (q->tail)
		q->tail->next = m;
	else
		q->head = m;
	q->tail = m;
	q->n++;
	q->bytes += m->len;
	return SENDQ_QUEUED;
}

struct sendq_msg *sendq_pop(struct sendq *q)
{
	struct sendq_msg *m = q->head;
	if (m == NULL)
		return NULL;
	q->head = m->next;
	if (q->head == NULL)
		q->tail = NULL;
	m->next = NULL;
	q->n--;
	q->bytes -= m->len;
	if (m->prefix > 0 && m->data != NULL && q->tab_n > 0) {
		struct sendq_msg **p = tab_find(q, m->key);
		if (p != NULL && *p == m)
			tab_del_at(q, (size_t)(p - q->tab));
	}
	return m;
}
