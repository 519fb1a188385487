/* test_sendq.c - the merging send queue (store/core/sendq.c): FIFO order,
 * merges of one key's messages (newest prefix, bodies in order), barriers,
 * the size limit, and a randomized run checked against what a reader of
 * the popped messages must see. */
#include <stdlib.h>
#include <string.h>

#include "core/sendq.h"
#include "unit.h"

static struct sendq_msg *msg(int64_t key, const char *prefix, const char *body)
{
	struct sendq_msg *m = calloc(1, sizeof(*m));
	size_t pl = strlen(prefix), bl = strlen(body);
	REQUIRE(m != NULL);
	m->data = malloc(pl + bl + 1);
	REQUIRE(m->data != NULL);
	memcpy(m->data, prefix, pl);
	memcpy(m->data + pl, body, bl);
	m->len = pl + bl;
	m->prefix = pl;
	m->key = key;
	return m;
}

/* Push; free m if it was merged. */
static int push(struct sendq *q, struct sendq_msg *m, size_t max)
{
	int rc = sendq_push(q, m, max);
	if (rc == SENDQ_MERGED) {
		CHECK(m->data == NULL);
		free(m);
	}
	return rc;
}

/* Pop the next message and compare it with want; NULL: queue empty. */
static void pop_is(struct sendq *q, const char *want)
{
	struct sendq_msg *m = sendq_pop(q);
	if (want == NULL) {
		CHECK(m == NULL);
		return;
	}
	REQUIRE(m != NULL);
	if (m->len != strlen(want) || memcmp(m->data, want, m->len) != 0)
		unit_fail(__FILE__, __LINE__, "popped %.*s, expected %s", (int)m->len,
		          (const char *)m->data, want);
	free(m->data);
	free(m);
}

TEST(fifo_and_merge)
{
	struct sendq q;
	sendq_init(&q);
	CHECK_INT(push(&q, msg(1, "A1", "a"), 1024), SENDQ_QUEUED);
	CHECK_INT(push(&q, msg(2, "B1", "b"), 1024), SENDQ_QUEUED);
	CHECK_INT(push(&q, msg(1, "A22", "cd"), 1024), SENDQ_MERGED);
	CHECK_INT(push(&q, msg(1, "A3", "e"), 1024), SENDQ_MERGED);
	CHECK_INT(q.n, 2);
	CHECK_INT(q.bytes, strlen("A3acde") + strlen("B1b"));
	CHECK_INT(q.merged, 2);
	pop_is(&q, "A3acde");
	/* the popped message is out of the index: key 1 starts afresh */
	CHECK_INT(push(&q, msg(1, "A4", "f"), 1024), SENDQ_QUEUED);
	pop_is(&q, "B1b");
	pop_is(&q, "A4f");
	pop_is(&q, NULL);
	CHECK_INT(q.bytes, 0);
	sendq_fini(&q);
}

TEST(unmergeable_is_a_barrier)
{
	struct sendq q;
	sendq_init(&q);
	push(&q, msg(1, "A1", "a"), 1024);
	struct sendq_msg *ctl = msg(9, "", "CTL"); /* prefix 0: unmergeable */
	CHECK_INT(push(&q, ctl, 1024), SENDQ_QUEUED);
	/* key 1's new message may not jump over the barrier into A1 */
	CHECK_INT(push(&q, msg(1, "A2", "b"), 1024), SENDQ_QUEUED);
	CHECK_INT(push(&q, msg(1, "A3", "c"), 1024), SENDQ_MERGED);
	/* a message without data (a status) is a barrier too */
	struct sendq_msg *st = calloc(1, sizeof(*st));
	REQUIRE(st != NULL);
	st->key = 1;
	st->prefix = 2;
	CHECK_INT(push(&q, st, 1024), SENDQ_QUEUED);
	CHECK_INT(push(&q, msg(1, "A4", "d"), 1024), SENDQ_QUEUED);
	pop_is(&q, "A1a");
	pop_is(&q, "CTL");
	pop_is(&q, "A3bc");
	struct sendq_msg *m = sendq_pop(&q);
	CHECK(m == st && m->data == NULL);
	free(m);
	pop_is(&q, "A4d");
	sendq_fini(&q);
}

TEST(size_limit_starts_a_new_message)
{
	struct sendq q;
	sendq_init(&q);
	push(&q, msg(5, "P1", "xxxx"), 10);
	CHECK_INT(push(&q, msg(5, "P2", "yyy"), 10), SENDQ_MERGED);     /* P2xxxxyyy: 9 */
	CHECK_INT(push(&q, msg(5, "P3", "zz"), 10), SENDQ_QUEUED);      /* would be 11 */
	CHECK_INT(push(&q, msg(5, "P4", "w"), 10), SENDQ_MERGED);       /* into the newest */
	/* prefixes of other lengths */
	push(&q, msg(6, "Q", "1"), 64);
	CHECK_INT(push(&q, msg(6, "QQQQ", "2"), 64), SENDQ_MERGED);
	CHECK_INT(push(&q, msg(6, "QQ", "3"), 64), SENDQ_MERGED);
	pop_is(&q, "P2xxxxyyy");
	pop_is(&q, "P4zzw");
	pop_is(&q, "QQ123");
	pop_is(&q, NULL);
	sendq_fini(&q);
}

/* Random pushes and pops over many keys: each popped message is split
 * back into records (one byte each: the record's number modulo 251,
 * prefix byte = key); per key, the records come out in push order, each
 * once, and no record comes out on the wrong side of a barrier. */
TEST(randomized_against_model)
{
	enum { KEYS = 300, OPS = 200000 };
	struct sendq q;
	unsigned seed = 12345;
	uint32_t next_rec[KEYS] = {0}, seen_rec[KEYS] = {0};
	uint64_t barriers_pushed = 0, barriers_popped = 0;
	/* per key: the barrier count when its oldest unpopped record was pushed */
	sendq_init(&q);
	for (int op = 0; op < OPS; op++) {
		seed = seed * 1103515245u + 12345u;
		unsigned r = (seed >> 8) % 100;
		if (r < 60) {
			int key = (int)((seed >> 16) % KEYS);
			struct sendq_msg *m = calloc(1, sizeof(*m));
			REQUIRE(m != NULL);
			size_t nrec = 1 + (seed >> 24) % 4;
			m->data = malloc(2 + nrec);
			REQUIRE(m->data != NULL);
			m->data[0] = (uint8_t)(key & 0xff); /* prefix: key and barrier epoch */
			m->data[1] = (uint8_t)(barriers_pushed & 0xff);
			for (size_t i = 0; i < nrec; i++)
				m->data[2 + i] = (uint8_t)(next_rec[key]++ % 251);
			m->len = 2 + nrec;
			m->prefix = 2;
			m->key = key;
			push(&q, m, 2 + 64);
		} else if (r < 62) {
			struct sendq_msg *m = calloc(1, sizeof(*m));
			REQUIRE(m != NULL);
			m->key = -1; /* a barrier: no data */
			barriers_pushed++;
			push(&q, m, 64);
		} else {
			struct sendq_msg *m = sendq_pop(&q);
			if (m == NULL)
				continue;
			if (m->data == NULL) {
				barriers_popped++;
			} else {
				int key = (int)m->key;
				REQUIRE(key >= 0 && key < KEYS);
				CHECK_INT(m->data[0], key & 0xff);
				/* its records were pushed after the last barrier popped
				 * and before the next one: epoch == barriers popped */
				CHECK_INT(m->data[1], barriers_popped & 0xff);
				CHECK(m->len > 2 && m->len <= 66);
				for (size_t i = 2; i < m->len; i++)
					CHECK_INT(m->data[i], seen_rec[key]++ % 251);
				free(m->data);
			}
			free(m);
		}
	}
	size_t n = q.n;
	struct sendq_msg *m;
	while ((m = sendq_pop(&q)) != NULL) {
		if (m->data != NULL) {
			for (size_t i = 2; i < m->len; i++)
				CHECK_INT(m->data[i], seen_rec[m->key]++ % 251);
			free(m->data);
		}
		free(m);
		n--;
	}
	CHECK_INT(n, 0);
	CHECK_INT(q.bytes, 0);
	for (int k = 0; k < KEYS; k++)
		CHECK_INT(seen_rec[k], next_rec[k]);
	CHECK(q.merged > 1000);
	sendq_fini(&q);
}

UNIT_MAIN(TEST_ENTRY(fifo_and_merge), TEST_ENTRY(unmergeable_is_a_barrier),
          TEST_ENTRY(size_limit_starts_a_new_message), TEST_ENTRY(randomized_against_model))
