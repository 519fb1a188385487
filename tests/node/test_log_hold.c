/* test_log_hold.c - how a leader's raft log writes pace its entries. It
 * holds new writes while its own log write is in flight (node.c
 * node_log_busy): a single member makes them one entry when the write ends;
 * a leader with followers proposes them once the write is
 * NODE_LOG_BUSY_MAX_NS old even if it never ends. Disks are made to stall
 * by a fault-injecting raft I/O: it wraps the append of each member's libuv
 * I/O (below metrics.c's timing wrapper) and, while armed,
 * withholds the completions of the writes from raft until the test releases
 * them (the bytes do reach the disk). */
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "node/node_int.h"
#include "tcluster.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------- the stalling raft I/O */

#define MAX_SEEN 64

typedef int (*append_fn)(struct raft_io *io, struct raft_io_append *req,
                         const struct raft_entry entries[], unsigned n, raft_io_append_cb cb);

struct held_append {
	struct raft_io_append inner; /* what the real I/O completes */
	struct raft_io_append *req;  /* raft's (metrics.c's) request */
	raft_io_append_cb cb;
	struct stall *st;
	bool withheld;               /* issued while armed */
	uint64_t upto;               /* the log's last index when issued: its last entry */
	bool written;                /* the real I/O completed it */
	int status;
	struct held_append *next;
};

struct stall {
	struct node *n;
	append_fn real;
	atomic_bool armed;
	atomic_uint in_flight;  /* issued, not completed by the real I/O */
	atomic_uint issued;     /* appends issued while armed */
	atomic_uint completed;  /* ... whose real write ended (withheld) */
	_Atomic uint64_t last_upto; /* the last entry of the latest append, armed or not */
	uint64_t issued_ns[MAX_SEEN];
	unsigned n_entries[MAX_SEEN];
	struct held_append *head, *tail; /* withheld, in order (loop thread) */
	uint64_t release_upto;           /* withheld ones up to here go once written */
};

#define MAX_STALLS 3
static struct stall *stalls[MAX_STALLS];

static struct stall *stall_of(struct raft_io *io)
{
	for (int i = 0; i < MAX_STALLS; i++)
		if (stalls[i] != NULL && &stalls[i]->n->io == io)
			return stalls[i];
	th_abort();
}

/* Raft hears of the withheld writes, in order, that are written and whose
 * entries end at or before release_upto. */
static void stall_drain(struct stall *st)
{
	while (st->head != NULL && st->head->written && st->head->upto <= st->release_upto) {
		struct held_append *h = st->head;
		st->head = h->next;
		if (st->head == NULL)
			st->tail = NULL;
		h->cb(h->req, h->status);
		free(h);
	}
}

static void stall_cb(struct raft_io_append *inner, int status)
{
	struct held_append *h = inner->data;
	struct stall *st = h->st;
	atomic_fetch_sub(&st->in_flight, 1);
	if (!h->withheld) {
		h->cb(h->req, status);
		free(h);
		return;
	}
	h->status = status;
	h->written = true;
	atomic_fetch_add(&st->completed, 1);
	stall_drain(st);
}

static int stall_append(struct raft_io *io, struct raft_io_append *req,
                        const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
	struct stall *st = stall_of(io);
	struct held_append *h = calloc(1, sizeof(*h));
	int rv;
	REQUIRE(h != NULL);
	h->inner.data = h;
	h->req = req;
	h->cb = cb;
	h->st = st;
	/* behind withheld ones too: raft hears of its writes in order */
	h->withheld = atomic_load(&st->armed) || st->head != NULL;
	h->upto = raft_last_index(&st->n->raft); /* raft appends to memory first */
	atomic_store(&st->last_upto, h->upto);
	atomic_fetch_add(&st->in_flight, 1);
	if ((rv = st->real(io, &h->inner, entries, n, stall_cb)) != 0) {
		atomic_fetch_sub(&st->in_flight, 1);
		free(h);
		return rv;
	}
	if (h->withheld) {
		unsigned i = atomic_load(&st->issued);
		if (i < MAX_SEEN) {
			st->issued_ns[i] = now_ns();
			st->n_entries[i] = n;
		}
		if (st->tail)
			st->tail->next = h;
		else
			st->head = h;
		st->tail = h;
		atomic_fetch_add(&st->issued, 1); /* after the records above */
	}
	return 0;
}

/* Before the node's loop runs: its appends go through st from now on. */
static void stall_install(struct stall *st, struct node *n, int slot)
{
	memset(st, 0, sizeof(*st));
	st->n = n;
	st->real = n->io_append;
	n->io_append = stall_append;
	stalls[slot] = st;
}

/* Loop thread: raft hears of the withheld writes whose entries end at or
 * before upto, in order, as they are written (UINT64_MAX: all, and no more
 * are withheld). */
static void stall_release(struct stall *st, uint64_t upto)
{
	if (upto == UINT64_MAX)
		atomic_store(&st->armed, false);
	if (upto > st->release_upto)
		st->release_upto = upto;
	stall_drain(st);
}

/* --------------------------------------------------------------- requests */

struct put {
	struct node_req req;
	Etcdserverpb__PutRequest msg;
	char key[32];
	atomic_bool done;
	int err;
};

static void put_cb(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct put *p = (struct put *)req;
	(void)len;
	free(resp);
	p->err = err;
	atomic_store(&p->done, true);
}

static void put_submit(struct node *n, struct put *p, const char *key)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->key, sizeof(p->key), "%s", key);
	etcdserverpb__put_request__init(&p->msg);
	p->msg.key.data = (uint8_t *)p->key;
	p->msg.key.len = strlen(p->key);
	p->msg.value.data = (uint8_t *)"v";
	p->msg.value.len = 1;
	p->req = (struct node_req){.op = NODE_PUT, .msg = &p->msg.base, .cb = put_cb};
	node_submit(n, &p->req);
}

/* ----------------------------------------------------------- single member */

/* Run t's loop until cond(arg) or 10 s (cond is checked after each
 * iteration's phases; this thread is the loop's). */
static bool run_until(struct tnode *t, bool (*cond)(void *), void *arg)
{
	uint64_t end = now_ns() + 10000000000ull;
	while (!cond(arg) && now_ns() < end)
		uv_run(&t->loop, UV_RUN_NOWAIT);
	return cond(arg);
}

static bool issued_1(void *arg)
{
	return atomic_load(&((struct stall *)arg)->issued) >= 1;
}

static bool issued_2(void *arg)
{
	return atomic_load(&((struct stall *)arg)->issued) >= 2;
}

static bool completed_1(void *arg)
{
	return atomic_load(&((struct stall *)arg)->completed) >= 1;
}

static bool wnext_2(void *arg)
{
	return ((struct node *)arg)->wnext.n >= 2;
}

static bool all_done(void *arg)
{
	struct put *p = arg;
	return atomic_load(&p[0].done) && atomic_load(&p[1].done) && atomic_load(&p[2].done);
}

/* While a single member's log write is in flight, the writes of later
 * wake-ups are held, however long it takes, and become one raft entry when
 * it ends. */
TEST(single_member_one_entry_per_log_write)
{
	struct tnode t;
	struct stall st;
	struct put p[3];
	char buf[8];

	tnode_config(&t, th_tmpdir());
	tnode_open(&t);
	stall_install(&st, t.node, 0);
	CHECK_INT(tnode_put(&t, "warm", "1", NULL), 0);

	atomic_store(&st.armed, true);
	put_submit(t.node, &p[0], "a");
	REQUIRE(run_until(&t, issued_1, &st));
	uint64_t last = raft_last_index(&t.node->raft);
	put_submit(t.node, &p[1], "b");
	put_submit(t.node, &p[2], "c");
	/* Two wake-ups or one: both held, nothing proposed. The write itself
	 * reached the disk; raft has not heard of it. */
	REQUIRE(run_until(&t, wnext_2, t.node));
	REQUIRE(run_until(&t, completed_1, &st));
	for (int i = 0; i < 20; i++)
		uv_run(&t.loop, UV_RUN_NOWAIT);
	CHECK_INT(atomic_load(&st.issued), 1);
	CHECK_INT(raft_last_index(&t.node->raft), last);
	CHECK(!atomic_load(&p[0].done) && !atomic_load(&p[1].done) && !atomic_load(&p[2].done));

	stall_release(&st, UINT64_MAX);
	REQUIRE(run_until(&t, all_done, p));
	for (int i = 0; i < 3; i++)
		CHECK_INT(p[i].err, 0);
	/* b and c went as one entry, proposed when a's write ended */
	CHECK_INT(raft_last_index(&t.node->raft), last + 1);
	CHECK(tnode_get(&t, "c", buf, sizeof(buf), NULL) == 1 && strcmp(buf, "v") == 0);
	tnode_close(&t);
}

/* ------------------------------------------------------------ 3 members */

/* Each member's stall (tmember.data) and what the test asked its loop. */
struct member {
	struct stall st;
	_Atomic uint64_t release_upto; /* 0: none asked */
};

static struct member M[TCLUSTER_N];

/* tmember.on_ctl: the release the test asked for (tcluster_close asks for
 * all of it first). */
static void ctl_cb(struct tmember *tm)
{
	struct member *m = tm->data;
	uint64_t upto = atomic_exchange(&m->release_upto, 0);
	if (upto != 0)
		stall_release(&m->st, upto);
}

static bool put_done(void *arg)
{
	return atomic_load(&((struct put *)arg)->done);
}

static bool quiet(void *arg)
{
	return atomic_load(&((struct stall *)arg)->in_flight) == 0;
}

static bool withheld_written(void *arg)
{
	struct stall *st = arg;
	return atomic_load(&st->completed) == atomic_load(&st->issued);
}

/* Ask m's loop to release its withheld writes up to upto. */
static void release(struct tmember *tm, uint64_t upto)
{
	struct member *m = tm->data;
	atomic_store(&m->release_upto, upto);
	tcluster_ctl(tm);
}

static void stall_member(struct tmember *tm)
{
	memset(&M[tm->index], 0, sizeof(M[tm->index]));
	tm->data = &M[tm->index];
	tm->on_ctl = ctl_cb;
	stall_install(&M[tm->index].st, tm->t.node, tm->index);
}

/* Three members with stalling I/O, a leader elected and a first put
 * through it answered; returns the leader's index. */
static int cluster_open(struct tcluster *c)
{
	struct put w;
	int l;

	tcluster_config(c);
	c->on_create = stall_member;
	l = tcluster_start(c);
	put_submit(c->m[l].t.node, &w, "warm");
	REQUIRE(th_wait_for(put_done, &w, 20000));
	CHECK_INT(w.err, 0);
	return l;
}

static void cluster_close(struct tcluster *c)
{
	for (int i = 0; i < TCLUSTER_N; i++)
		atomic_store(&M[i].release_upto, UINT64_MAX);
	tcluster_close(c);
}

/* A leader whose log write does not end holds the writes that come after
 * it for NODE_LOG_BUSY_MAX_NS, then proposes them (they go to the
 * followers, which store them meanwhile; raft 0.15 commits no further than
 * the leader's own log, so they are answered once its writes end). */
TEST(leader_proposes_held_writes_after_limit)
{
	static struct tcluster cl;
	int l = cluster_open(&cl);
	struct stall *st = &M[l].st;
	struct node *n = cl.m[l].t.node;
	struct put a, b, c;

	/* No write of the leader's in flight from t0 on but the ones that
	 * began after it: each later write waits for the first to be
	 * NODE_LOG_BUSY_MAX_NS old (the clock reads may differ by a few us). */
	uint64_t t0 = now_ns();
	for (int k = 0; k < 20000 && !quiet(st); k++) {
		usleep(1000);
		t0 = now_ns();
	}
	REQUIRE(quiet(st));
	atomic_store(&st->armed, true);
	put_submit(n, &a, "a");
	REQUIRE(th_wait_for(issued_1, st, 20000));
	put_submit(n, &b, "b");
	/* b is proposed though the first write has not ended: no later write
	 * before that one is NODE_LOG_BUSY_MAX_NS old */
	REQUIRE(th_wait_for(issued_2, st, 20000));
	unsigned issued = atomic_load(&st->issued);
	for (unsigned i = 1; i < issued && i < MAX_SEEN; i++)
		if (st->issued_ns[i] < t0 + NODE_LOG_BUSY_MAX_NS - 1000000u)
			th_fail(__FILE__, __LINE__, "write %u began %.3f ms after the first", i,
			        (double)(st->issued_ns[i] - st->issued_ns[0]) / 1e6);

	/* The leader's writes end: a and b are answered, and it goes on. */
	REQUIRE(th_wait_for(withheld_written, st, 20000));
	release(&cl.m[l], UINT64_MAX);
	REQUIRE(th_wait_for(put_done, &a, 20000));
	REQUIRE(th_wait_for(put_done, &b, 20000));
	CHECK_INT(a.err, 0);
	CHECK_INT(b.err, 0);
	put_submit(n, &c, "c");
	REQUIRE(th_wait_for(put_done, &c, 20000));
	CHECK_INT(c.err, 0);
	cluster_close(&cl);
}

int main(int argc, char **argv)
{
	static const struct th_test tests[] = {
		TEST_ENTRY(single_member_one_entry_per_log_write),
		TEST_ENTRY(leader_proposes_held_writes_after_limit),
	};
	return th_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
