/* test_forward.c - a follower's writes forwarded to the leader
 * (store/node/forward.c) in a 3-member cluster on 127.0.0.1, each member a
 * real node on a loop thread of its own. Their bollard.Internal calls go
 * through an in-process forwarder instead of the server layer's gRPC one
 * (store/server/internal.c, not linked here): a call becomes a request
 * submitted to the member it names, its answer the caller's
 * node_forward_done. The forwarder can hold the answers to Propose calls,
 * as if the leader became unreachable once it had taken the writes, or the
 * calls themselves (never delivered). Raft's own messages between members
 * are cut with tcluster_cut/tcluster_isolate; the forwarder's calls still
 * go then (a partition of the raft port only). */
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/errors.h"
#include "node/node_int.h"
#include "raftcmd.pb-c.h"
#include "tcluster.h"

/* ------------------------------------------------ the in-process forwarder */

struct fcall {
	struct node_req req;
	ProtobufCMessage *msg;
	struct tmember *from;
	void *ctx;
	bool propose;
	int err;
	uint8_t *resp;
	size_t len;
	struct fcall *next;
};

static struct tcluster C;
static struct node_forwarder F[TCLUSTER_N]; /* each member's */
static atomic_int proposes;          /* Propose calls delivered to a member */
static atomic_int propose_answers;   /* ... answered by it */
static atomic_bool hold_answers;     /* keep those answers from their callers */
static atomic_bool hold_calls;       /* keep Propose calls from their targets */
static atomic_int calls_held;
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fcall *held;           /* answers held */
static struct fcall *held_calls;     /* calls held, never delivered */

static void fcall_answer(struct fcall *c)
{
	node_forward_done(c->from->t.node, c->ctx, c->err, c->resp, c->len);
	free(c);
}

static void fcall_cb(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct fcall *c = (struct fcall *)req;
	protobuf_c_message_free_unpacked(c->msg, NULL);
	c->err = err;
	c->resp = resp;
	c->len = len;
	if (c->propose) {
		atomic_fetch_add(&propose_answers, 1);
		pthread_mutex_lock(&held_lock);
		if (atomic_load(&hold_answers)) {
			c->next = held;
			held = c;
			c = NULL;
		}
		pthread_mutex_unlock(&held_lock);
	}
	if (c != NULL)
		fcall_answer(c);
}

/* From the test's thread: what list holds reaches its callers, and hold
 * stops. Held answers as they were; held calls (never delivered) fail as a
 * call whose deadline passed (the gRPC forwarder's BOLLARD_ETIMEOUT). */
static void release(struct fcall **list, atomic_bool *hold)
{
	pthread_mutex_lock(&held_lock);
	atomic_store(hold, false);
	struct fcall *c = *list;
	*list = NULL;
	pthread_mutex_unlock(&held_lock);
	while (c != NULL) {
		struct fcall *next = c->next;
		if (list == &held_calls) {
			protobuf_c_message_free_unpacked(c->msg, NULL);
			c->err = BOLLARD_ETIMEOUT;
		}
		fcall_answer(c);
		c = next;
	}
}

static void release_answers(void)
{
	release(&held, &hold_answers);
}

static void release_calls(void)
{
	release(&held_calls, &hold_calls);
}

/* The caller's loop thread. target: the member's raft address. */
static void fwd_call(void *data, const char *target, const char *method, uint8_t *buf,
                     size_t len, uint64_t timeout_ms, void *ctx)
{
	struct tmember *from = data, *to = NULL;
	const ProtobufCMessageDescriptor *d = NULL;
	enum node_op op = NODE_OP_COUNT_;
	struct fcall *c;
	(void)timeout_ms;

	for (int i = 0; i < TCLUSTER_N; i++)
		if (strcmp(C.m[i].peer_url + strlen("http://"), target) == 0)
			to = &C.m[i];
	if (strcmp(method, "Propose") == 0) {
		d = &bollard__batch__descriptor;
		op = NODE_PROPOSE_BATCH;
	} else if (strcmp(method, "ReadIndex") == 0) {
		d = &bollard__read_index_request__descriptor;
		op = NODE_READ_INDEX;
	} else if (strcmp(method, "MemberStatus") == 0) {
		d = &bollard__member_status_request__descriptor;
		op = NODE_MEMBER_STATUS;
	}
	if (to == NULL || d == NULL || (c = calloc(1, sizeof(*c))) == NULL) {
		free(buf);
		node_forward_done(from->t.node, ctx, -ECONNREFUSED, NULL, 0);
		return;
	}
	c->msg = protobuf_c_message_unpack(d, NULL, len, buf);
	free(buf);
	REQUIRE(c->msg != NULL);
	c->from = from;
	c->ctx = ctx;
	c->propose = op == NODE_PROPOSE_BATCH;
	if (c->propose) {
		pthread_mutex_lock(&held_lock);
		bool hold = atomic_load(&hold_calls);
		if (hold) {
			c->next = held_calls;
			held_calls = c;
			atomic_fetch_add(&calls_held, 1);
		}
		pthread_mutex_unlock(&held_lock);
		if (hold)
			return;
		atomic_fetch_add(&proposes, 1);
	}
	c->req = (struct node_req){.op = op, .msg = c->msg, .cb = fcall_cb};
	node_submit(to->t.node, &c->req);
}

/* ------------------------------------------------------------- the cluster */

struct call {
	struct node_req req;
	struct {
		Etcdserverpb__PutRequest put;
	} msg;
	char key[32];
	atomic_bool done;
	int err;
	uint8_t *resp;
	size_t len;
};

static void call_cb(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct call *c = (struct call *)req;
	c->err = err;
	c->resp = resp;
	c->len = len;
	atomic_store(&c->done, true);
}

static bool call_done(void *arg)
{
	return atomic_load(&((struct call *)arg)->done);
}

/* Submit a put of key to member i. */
static void put_start(struct call *c, int i, const char *key)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->key, sizeof(c->key), "%s", key);
	etcdserverpb__put_request__init(&c->msg.put);
	c->msg.put.key.data = (uint8_t *)c->key;
	c->msg.put.key.len = strlen(c->key);
	c->msg.put.value.data = (uint8_t *)"v";
	c->msg.put.value.len = 1;
	c->req = (struct node_req){.op = NODE_PUT, .msg = &c->msg.put.base, .cb = call_cb};
	node_submit(C.m[i].t.node, &c->req);
}

/* ... and wait up to ms for its answer. */
static bool put(struct call *c, int i, const char *key, unsigned ms)
{
	put_start(c, i, key);
	return th_wait_for(call_done, c, ms);
}

/* How many times key was written as member i has it (serializable read:
 * its own state): its version, 0 if absent. */
static int64_t version_at(int i, const char *key)
{
	Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
	struct call c = {.req = {.op = NODE_RANGE, .msg = &q.base, .cb = call_cb}};
	Etcdserverpb__RangeResponse *r;
	int64_t v = 0;
	q.key.data = (uint8_t *)key;
	q.key.len = strlen(key);
	q.serializable = true;
	node_read(C.m[i].t.node, &c.req); /* served on this thread */
	REQUIRE(th_wait_for(call_done, &c, 20000));
	REQUIRE(c.err == 0 && (r = etcdserverpb__range_response__unpack(NULL, c.len, c.resp)));
	if (r->n_kvs == 1)
		v = r->kvs[0]->version;
	etcdserverpb__range_response__free_unpacked(r, NULL);
	free(c.resp);
	return v;
}

/* Wait up to ms for member i's version of key to be want. */
static bool version_becomes(int i, const char *key, int64_t want, unsigned ms)
{
	for (unsigned k = 0; k < ms / 10; k++) {
		if (version_at(i, key) == want)
			return true;
		usleep(10000);
	}
	return version_at(i, key) == want;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void set_forwarder(struct tmember *m)
{
	F[m->index] = (struct node_forwarder){.data = m, .call = fwd_call};
	node_set_forwarder(m->t.node, &F[m->index]);
}

/* --snapshot-count of every member (0: the default) */
static int64_t snapshot_count;
/* cfg.commit_delay_ms of every member (0: the default) */
static unsigned commit_delay_ms;

/* Three members (quota[i]: --quota-backend-bytes of each, 0: etcd's
 * default), a leader elected; returns its index. */
static int cluster_open(const int64_t *quota)
{
	atomic_store(&proposes, 0);
	atomic_store(&propose_answers, 0);
	atomic_store(&calls_held, 0);
	tcluster_config(&C);
	for (int i = 0; quota && i < TCLUSTER_N; i++)
		if (quota[i])
			C.m[i].t.cfg.quota_backend_bytes = quota[i];
	for (int i = 0; snapshot_count && i < TCLUSTER_N; i++)
		C.m[i].t.cfg.snapshot_count = snapshot_count;
	for (int i = 0; commit_delay_ms && i < TCLUSTER_N; i++)
		C.m[i].t.cfg.commit_delay_ms = commit_delay_ms;
	C.on_create = set_forwarder;
	return tcluster_start(&C);
}

static void cluster_close(void)
{
	release_answers();
	release_calls();
	tcluster_close(&C);
}

static Etcdserverpb__PutResponse *put_response(struct call *c)
{
	Etcdserverpb__PutResponse *r = etcdserverpb__put_response__unpack(NULL, c->len, c->resp);
	REQUIRE(r != NULL && r->header != NULL);
	return r;
}

/* ------------------------------------------------------------------ tests */

/* The leader takes a follower's write and answers the Propose call, but the
 * answer never reaches the follower (held here): the follower answers its
 * client from its own apply of the entry, with the response the leader's
 * apply computed (the revision) under its own member ID. */
TEST(follower_answers_from_its_own_apply)
{
	int l = cluster_open(NULL), f = (l + 1) % 3;
	struct call a, b, c;
	Etcdserverpb__PutResponse *ra, *rb, *rc;

	REQUIRE(put(&a, l, "a", 20000));
	CHECK_INT(a.err, 0);
	atomic_store(&hold_answers, true);
	REQUIRE(put(&b, f, "b", 20000)); /* waited for the held answer before */
	CHECK_INT(b.err, 0);
	CHECK(atomic_load(&proposes) >= 1);
	pthread_mutex_lock(&held_lock);
	CHECK(held != NULL); /* the leader's answer: not delivered */
	pthread_mutex_unlock(&held_lock);
	release_answers();
	REQUIRE(put(&c, l, "c", 20000));
	CHECK_INT(c.err, 0);
	ra = put_response(&a);
	rb = put_response(&b);
	rc = put_response(&c);
	CHECK_INT(rb->header->revision, ra->header->revision + 1);
	CHECK_INT(rc->header->revision, rb->header->revision + 1);
	CHECK(rb->header->member_id == node_member_id(C.m[f].t.node));
	CHECK(ra->header->member_id == node_member_id(C.m[l].t.node));
	CHECK(rb->header->cluster_id == ra->header->cluster_id);
	etcdserverpb__put_response__free_unpacked(ra, NULL);
	etcdserverpb__put_response__free_unpacked(rb, NULL);
	etcdserverpb__put_response__free_unpacked(rc, NULL);
	free(a.resp);
	free(b.resp);
	free(c.resp);
	cluster_close();
}

/* Leadership to member i (etcd's MoveLeader through the current leader l). */
static void move_leader(int l, int i)
{
	struct call c = {.req = {.op = NODE_MOVE_LEADER, .cb = call_cb}};
	Etcdserverpb__MoveLeaderRequest q = ETCDSERVERPB__MOVE_LEADER_REQUEST__INIT;
	if (l == i)
		return;
	q.targetid = node_member_id(C.m[i].t.node);
	c.req.msg = &q.base;
	node_submit(C.m[l].t.node, &c.req);
	REQUIRE(th_wait_for(call_done, &c, 20000));
	CHECK_INT(c.err, 0);
	free(c.resp);
	for (int k = 0; k < 300 && tcluster_leader(&C) != i; k++)
		usleep(100000);
	REQUIRE(tcluster_leader(&C) == i);
}

/* A write the leader keeps out of its log (its quota is exceeded; the
 * follower's own is not) fails on the follower with the leader's error,
 * and so does the next (refused by the leader, or at apply once the
 * NOSPACE alarm the leader raised is applied). */
TEST(follower_gets_the_leaders_refusal)
{
	/* A fresh member's database is above 1 byte, below 1 GiB. */
	static const int64_t quota[3] = {1, (int64_t)1 << 30, (int64_t)1 << 30};
	struct call a, b;

	move_leader(cluster_open(quota), 0);
	REQUIRE(put(&a, 1, "a", 20000));
	CHECK_INT(a.err, BOLLARD_ENO_SPACE);
	CHECK(atomic_load(&proposes) >= 1);
	free(a.resp);
	REQUIRE(put(&b, 2, "b", 20000));
	CHECK_INT(b.err, BOLLARD_ENO_SPACE);
	free(b.resp);
	cluster_close();
}

/* etcd's request timeout at the members' --election-timeout (1000 ms) */
#define REQUEST_TIMEOUT_MS (5000 + 2 * 1000)

static bool calls_held_1(void *arg)
{
	(void)arg;
	return atomic_load(&calls_held) >= 1;
}

static bool answers_over(void *arg)
{
	return atomic_load(&propose_answers) > *(int *)arg;
}

/* A write of f's, answered on f: the cluster is up to date there. */
static void warm(int f)
{
	struct call w;
	REQUIRE(put(&w, f, "warm", 20000));
	CHECK_INT(w.err, 0);
	free(w.resp);
}

/* A follower's Propose call gets no answer (it never reached the leader,
 * as when the leader hangs): its writes, and those that came meanwhile and
 * wait for the next call (wnext), fail with etcd's "request timed out"
 * within the request timeout of their own, not never or after another
 * call's deadline. */
TEST(writes_without_an_answer_time_out)
{
	int l = cluster_open(NULL), f = (l + 1) % 3;
	struct call a, b;
	uint64_t t0;

	warm(f);
	atomic_store(&hold_calls, true);
	t0 = now_ms();
	put_start(&a, f, "a");
	REQUIRE(th_wait_for(calls_held_1, NULL, 20000));
	put_start(&b, f, "b"); /* a's call is out: b waits for the next */
	REQUIRE(th_wait_for(call_done, &a, REQUEST_TIMEOUT_MS + 3000));
	REQUIRE(th_wait_for(call_done, &b, REQUEST_TIMEOUT_MS + 3000));
	CHECK(now_ms() - t0 <= REQUEST_TIMEOUT_MS + 1500);
	CHECK_INT(a.err, BOLLARD_ETIMEOUT);
	CHECK_INT(b.err, BOLLARD_ETIMEOUT);
	release_calls();
	CHECK_INT(version_at(l, "a"), 0); /* never sent */
	CHECK_INT(version_at(l, "b"), 0);
	/* the follower goes on */
	warm(f);
	cluster_close();
}

/* parked_writes_refused_once_not_leading's l and g: l's messages to g are
 * lost but its TimeoutNow */
static int lose_l = -1, lose_g = -1;

static bool lose_but_timeout_now(int i, int j, const struct raft_message *m)
{
	return i == lose_l && j == lose_g && m->type != RAFT_IO_TIMEOUT_NOW;
}

/* A leader parks a follower's write while it transfers its leadership (it
 * takes no proposal then). The transferee's election makes it step down,
 * and no one wins (the transferee hears no vote: l's messages to it are
 * lost but the TimeoutNow, and f is cut off from both). The old leader,
 * now knowing no leader, refuses the write at once (ENOT_LEADER) rather
 * than holding it until the request timeout: it is in no log, and f sends
 * it to the next leader, f and g's once they hear from each other. */
TEST(parked_writes_refused_once_not_leading)
{
	int l = cluster_open(NULL), f = (l + 1) % 3, g = (l + 2) % 3;
	Etcdserverpb__MoveLeaderRequest q = ETCDSERVERPB__MOVE_LEADER_REQUEST__INIT;
	struct call mv = {.req = {.op = NODE_MOVE_LEADER, .msg = &q.base, .cb = call_cb}}, x;
	int answers;

	warm(f);
	answers = atomic_load(&propose_answers);
	tcluster_cut(&C, l, f, true);
	tcluster_cut(&C, f, g, true);
	lose_l = l;
	lose_g = g;
	C.lose = lose_but_timeout_now;
	q.targetid = node_member_id(C.m[g].t.node);
	node_submit(C.m[l].t.node, &mv.req);
	put_start(&x, f, "x"); /* to l, after the transfer began (the forwarder still reaches it) */
	REQUIRE(th_wait_for(answers_over, &answers, 4000));
	tcluster_cut(&C, f, g, false);
	REQUIRE(th_wait_for(call_done, &x, 20000));
	CHECK_INT(x.err, 0);
	REQUIRE(th_wait_for(call_done, &mv, 20000));
	free(mv.resp);
	CHECK_INT(version_at(f, "x"), 1);
	C.lose = NULL;
	tcluster_isolate(&C, l, false);
	CHECK(version_becomes(l, "x", 1, 20000));
	CHECK(version_becomes(g, "x", 1, 20000));
	free(x.resp);
	cluster_close();
}

/* A leader cut off from the others appends a follower's write and answers
 * with its index; the next leader puts another entry there. The follower
 * applies that one and fails its write with etcd's "leader changed" (lost
 * with the leadership that appended it), at once, not at the timeout. */
TEST(write_whose_index_holds_another_entry_fails_leader_changed)
{
	int l = cluster_open(NULL), f = (l + 1) % 3, g = (l + 2) % 3, n = -1;
	struct call x, y;
	int answers;
	uint64_t t0;

	warm(f);
	answers = atomic_load(&propose_answers);
	tcluster_isolate(&C, l, true);
	t0 = now_ms();
	put_start(&x, f, "x"); /* to l (the forwarder still reaches it) */
	REQUIRE(th_wait_for(answers_over, &answers, 4000)); /* appended */
	for (int k = 0; k < 300 && n != f && n != g; k++) {
		usleep(100000);
		n = tcluster_leader(&C);
	}
	REQUIRE(n == f || n == g);
	REQUIRE(put(&y, f, "y", 20000)); /* from the next leader: x's index or later */
	CHECK_INT(y.err, 0);
	REQUIRE(th_wait_for(call_done, &x, 20000));
	CHECK_INT(x.err, BOLLARD_ELEADER_CHANGED);
	free(x.resp);
	CHECK(now_ms() - t0 < REQUEST_TIMEOUT_MS);
	tcluster_isolate(&C, l, false);
	CHECK(version_becomes(l, "y", 1, 20000));
	for (int i = 0; i < TCLUSTER_N; i++)
		CHECK_INT(version_at(i, "x"), 0);
	free(y.resp);
	cluster_close();
}

/* A follower cut off from the others sends a write to the leader (the
 * forwarder still reaches it), which commits it with the third member and
 * then takes a snapshot past it (--snapshot-count 10). The follower gets
 * the write inside the snapshot: applied, but by no apply of its own, so
 * it fails with etcd's "request timed out" (etcd's waiter, never
 * triggered by a snapshot) as soon as the snapshot is in. */
TEST(write_brought_by_a_snapshot_times_out)
{
	int l, f, answers;
	struct call x;
	uint64_t t0;

	snapshot_count = 10;
	l = cluster_open(NULL);
	f = (l + 1) % 3;
	warm(f);
	answers = atomic_load(&propose_answers);
	tcluster_isolate(&C, f, true);
	t0 = now_ms();
	put_start(&x, f, "x");
	REQUIRE(th_wait_for(answers_over, &answers, 4000)); /* appended */
	for (int i = 0; i < 40; i++) {
		struct call p;
		char key[16];
		snprintf(key, sizeof(key), "k%02d", i);
		REQUIRE(put(&p, l, key, 20000));
		CHECK_INT(p.err, 0);
		free(p.resp);
	}
	CHECK_INT(version_at(l, "x"), 1);
	CHECK(!atomic_load(&x.done));
	tcluster_isolate(&C, f, false);
	REQUIRE(th_wait_for(call_done, &x, 20000));
	CHECK_INT(x.err, BOLLARD_ETIMEOUT);
	CHECK(now_ms() - t0 < REQUEST_TIMEOUT_MS);
	CHECK_INT(version_at(f, "x"), 1); /* once, by the snapshot */
	CHECK_INT(version_at(f, "k39"), 1);
	cluster_close();
}

/* A follower that hears from no one (its own messages still go) sends a
 * write the leader and the third member commit; it never applies it, and
 * fails it with etcd's "request timed out" at the request timeout. Once it
 * hears from them again it has the write, once. */
TEST(write_not_applied_in_time_times_out)
{
	int l = cluster_open(NULL), f = (l + 1) % 3, g = (l + 2) % 3;
	struct call x;
	int answers;
	uint64_t t0, took;

	warm(f);
	answers = atomic_load(&propose_answers);
	atomic_store(&C.cut[l][f], true);
	atomic_store(&C.cut[g][f], true);
	t0 = now_ms();
	put_start(&x, f, "x");
	REQUIRE(th_wait_for(answers_over, &answers, 4000)); /* appended */
	CHECK(version_becomes(l, "x", 1, 5000));
	REQUIRE(th_wait_for(call_done, &x, REQUEST_TIMEOUT_MS + 3000));
	took = now_ms() - t0;
	CHECK_INT(x.err, BOLLARD_ETIMEOUT);
	CHECK(took + 200 >= REQUEST_TIMEOUT_MS && took <= REQUEST_TIMEOUT_MS + 1500);
	CHECK_INT(version_at(f, "x"), 0);
	tcluster_isolate(&C, f, false);
	CHECK(version_becomes(f, "x", 1, 20000));
	CHECK_INT(version_at(g, "x"), 1);
	cluster_close();
}

/* A follower answers a forwarded write once it applied it, without waiting
 * for its LMDB commit (the commit delay, store/node/fsm.c, holds on a
 * follower too); a read on it afterwards still sees the write. */
TEST(follower_answers_before_its_commit)
{
	int l, f;
	uint64_t before;
	struct call b;

	commit_delay_ms = 60000;
	l = cluster_open(NULL);
	f = (l + 1) % 3;
	warm(f);
	CHECK_INT(version_at(f, "warm"), 1);
	usleep(1100 * 1000); /* past the while a read turns the delay off */
	before = __atomic_load_n(&C.m[f].t.node->commits_seen, __ATOMIC_ACQUIRE);
	REQUIRE(put(&b, f, "b", 20000));
	CHECK_INT(b.err, 0);
	free(b.resp);
	CHECK_INT(__atomic_load_n(&C.m[f].t.node->commits_seen, __ATOMIC_ACQUIRE) - before, 0);
	CHECK_INT(version_at(f, "b"), 1);
	CHECK_INT(version_at(l, "b"), 1);
	cluster_close();
	commit_delay_ms = 0;
}

int main(int argc, char **argv)
{
	static const struct th_test tests[] = {
		TEST_ENTRY(follower_answers_from_its_own_apply),
		TEST_ENTRY(follower_answers_before_its_commit),
		TEST_ENTRY(follower_gets_the_leaders_refusal),
		TEST_ENTRY(writes_without_an_answer_time_out),
		TEST_ENTRY(parked_writes_refused_once_not_leading),
		TEST_ENTRY(write_whose_index_holds_another_entry_fails_leader_changed),
		TEST_ENTRY(write_brought_by_a_snapshot_times_out),
		TEST_ENTRY(write_not_applied_in_time_times_out),
	};
	return th_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
