/* test_forward.c - a follower's writes forwarded to the leader
 * (store/node/forward.c) in a 3-member cluster on 127.0.0.1, each member a
 * real node on a loop thread of its own. Their bollard.Internal calls go
 * through an in-process forwarder instead of the server layer's gRPC one
 * (store/server/internal.c, not linked here): a call becomes a request
 * submitted to the member it names, its answer the caller's
 * node_forward_done. The forwarder can hold the answers to Propose calls,
 * as if the leader became unreachable once it had taken the writes. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/errors.h"
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
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fcall *held;

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

/* The held answers reach their callers (from the test's thread). */
static void release_answers(void)
{
	pthread_mutex_lock(&held_lock);
	atomic_store(&hold_answers, false);
	struct fcall *c = held;
	held = NULL;
	pthread_mutex_unlock(&held_lock);
	while (c != NULL) {
		struct fcall *next = c->next;
		fcall_answer(c);
		c = next;
	}
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
	if (c->propose)
		atomic_fetch_add(&proposes, 1);
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

/* Submit a put of key to member i and wait up to ms for its answer. */
static bool put(struct call *c, int i, const char *key, unsigned ms)
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
	return th_wait_for(call_done, c, ms);
}

static void set_forwarder(struct tmember *m)
{
	F[m->index] = (struct node_forwarder){.data = m, .call = fwd_call};
	node_set_forwarder(m->t.node, &F[m->index]);
}

/* Three members (quota[i]: --quota-backend-bytes of each, 0: etcd's
 * default), a leader elected; returns its index. */
static int cluster_open(const int64_t *quota)
{
	atomic_store(&proposes, 0);
	atomic_store(&propose_answers, 0);
	tcluster_config(&C);
	for (int i = 0; quota && i < TCLUSTER_N; i++)
		if (quota[i])
			C.m[i].t.cfg.quota_backend_bytes = quota[i];
	C.on_create = set_forwarder;
	return tcluster_start(&C);
}

static void cluster_close(void)
{
	release_answers();
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

int main(int argc, char **argv)
{
	static const struct th_test tests[] = {
		TEST_ENTRY(follower_answers_from_its_own_apply),
		TEST_ENTRY(follower_gets_the_leaders_refusal),
	};
	return th_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
