/* maint.c - the requests a node answers on its loop thread without a raft
 * entry: Status, Hash, HashKV, Defragment, MemberList and MoveLeader, with
 * etcd 3.4's semantics. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alarm.h"
#include "core/arena.h"
#include "core/errors.h"
#include "node/log.h"
#include "node/node_int.h"

static void fill_header(struct node *n, Etcdserverpb__ResponseHeader *h, int64_t rev)
{
	etcdserverpb__response_header__init(h);
	h->cluster_id = n->cluster_id;
	h->member_id = n->member_id;
	h->revision = rev;
	h->raft_term = n->raft.current_term;
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

static uint64_t leader_id(struct node *n)
{
	raft_id id = 0;
	const char *addr = NULL;
	if (raft_state(&n->raft) == RAFT_LEADER)
		return n->member_id;
	raft_leader(&n->raft, &id, &addr);
	return id ? node_member_id_of(n, id) : 0; /* etcd's ID of raft's leader */
}

/* etcd's Status errors: "etcdserver: no leader", then each raised alarm as
 * its protobuf text form ("memberID:<id> alarm:NOSPACE "). */
static void status_errors(struct node *n, MDB_txn *txn, struct arena *a,
                          Etcdserverpb__StatusResponse *r)
{
	Etcdserverpb__AlarmMember **alarms = NULL;
	size_t n_alarms = 0;
	char **errs;

	if (alarm_list(&n->mvcc, txn, ETCDSERVERPB__ALARM_TYPE__NONE, a, &alarms, &n_alarms) != 0)
		n_alarms = 0;
	errs = arena_calloc(a, n_alarms + 1, sizeof(*errs));
	if (errs == NULL)
		return;
	if (r->leader == 0)
		errs[r->n_errors++] = (char *)bollard_strerror(BOLLARD_ENO_LEADER);
	for (size_t i = 0; i < n_alarms; i++) {
		const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
			&etcdserverpb__alarm_type__descriptor, (int)alarms[i]->alarm);
		char *e = arena_alloc(a, 80);
		if (e == NULL)
			break;
		snprintf(e, 80, "memberID:%llu alarm:%s ", (unsigned long long)alarms[i]->memberid,
		         v ? v->name : "UNKNOWN");
		errs[r->n_errors++] = e;
	}
	r->errors = errs;
}

void node_serve_status(struct node *n, struct node_req *req)
{
	Etcdserverpb__StatusResponse r = ETCDSERVERPB__STATUS_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h;
	struct arena a;
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn)) != 0) {
		node_complete(n, req, rc, NULL, 0);
		return;
	}
	arena_init(&a, 1024);
	fill_header(n, &h, mvcc_current_rev(&n->mvcc, txn));
	r.dbsizeinuse = node_db_size_in_use(n, txn);
	r.leader = leader_id(n);
	status_errors(n, txn, &a, &r);
	mdb_txn_abort(txn);
	node_env_release_soon(n); /* node_db_size_in_use walked the free list */
	r.header = &h;
	r.version = (char *)NODE_VERSION;
	r.dbsize = node_db_size(n);
	r.raftindex = n->raft.commit_index;
	r.raftterm = n->raft.current_term;
	r.raftappliedindex = raft_last_applied(&n->raft);
	r.islearner = node_is_learner(n);
	node_reply_msg(n, req, &r.base);
	arena_free(&a);
}

void node_serve_hash(struct node *n, struct node_req *req)
{
	Etcdserverpb__HashResponse r = ETCDSERVERPB__HASH_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h;
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn)) != 0) {
		node_complete(n, req, rc, NULL, 0);
		return;
	}
	fill_header(n, &h, mvcc_current_rev(&n->mvcc, txn));
	rc = node_db_hash(n, txn, &r.hash);
	mdb_txn_abort(txn);
	if (rc != 0) {
		node_complete(n, req, rc, NULL, 0);
		return;
	}
	r.header = &h;
	node_reply_msg(n, req, &r.base);
}

void node_serve_hash_kv(struct node *n, struct node_req *req)
{
	const Etcdserverpb__HashKVRequest *q = (const void *)req->msg;
	Etcdserverpb__HashKVResponse r = ETCDSERVERPB__HASH_KVRESPONSE__INIT;
	Etcdserverpb__ResponseHeader h;
	int64_t compact_rev = 0, hash_rev = 0;
	uint32_t hash = 0;
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn)) != 0) {
		node_complete(n, req, rc, NULL, 0);
		return;
	}
	rc = mvcc_hash_kv(&n->mvcc, txn, q->revision, &hash, &compact_rev, &hash_rev);
	mdb_txn_abort(txn);
	if (rc != 0) {
		node_complete(n, req, rc, NULL, 0);
		return;
	}
	fill_header(n, &h, hash_rev); /* etcd: the revision hashed */
	r.header = &h;
	r.hash = hash;
	r.compact_revision = compact_rev;
	node_reply_msg(n, req, &r.base);
}

void node_serve_defragment(struct node *n, struct node_req *req)
{
	Etcdserverpb__DefragmentResponse r = ETCDSERVERPB__DEFRAGMENT_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h;
	int rc = node_defragment(n);
	if (rc != 0) {
		blog(BLOG_ERROR, "node", "defragment failed: %s", bollard_strerror(rc));
		node_complete(n, req, rc, NULL, 0);
		return;
	}
	fill_header(n, &h, current_rev(n));
	r.header = &h;
	node_reply_msg(n, req, &r.base);
}

struct move_leader {
	struct raft_transfer t;
	struct node *n;
	struct node_req *req;
	uint64_t target;
};

static void move_leader_done(struct raft_transfer *t)
{
	struct move_leader *ml = t->data;
	struct node *n = ml->n;
	if (leader_id(n) == ml->target) {
		Etcdserverpb__MoveLeaderResponse r = ETCDSERVERPB__MOVE_LEADER_RESPONSE__INIT;
		Etcdserverpb__ResponseHeader h;
		fill_header(n, &h, current_rev(n));
		r.header = &h;
		node_reply_msg(n, ml->req, &r.base);
	} else {
		node_complete(n, ml->req, BOLLARD_ETIMEOUT, NULL, 0);
	}
	free(ml);
}

void node_serve_move_leader(struct node *n, struct node_req *req)
{
	const Etcdserverpb__MoveLeaderRequest *q = (const void *)req->msg;
	Etcdserverpb__MoveLeaderResponse r = ETCDSERVERPB__MOVE_LEADER_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h;
	bool known = false;

	if (raft_state(&n->raft) != RAFT_LEADER) {
		node_complete(n, req, BOLLARD_ENOT_LEADER, NULL, 0);
		return;
	}
	uint64_t target = node_raft_id_of(n, q->targetid);
	known = target != 0;
	if (!known) {
		node_complete(n, req, BOLLARD_EBAD_LEADER_TRANSFEREE, NULL, 0);
		return;
	}
	if (q->targetid != n->member_id) {
		struct move_leader *ml = calloc(1, sizeof(*ml));
		int rc;
		if (ml == NULL) {
			node_complete(n, req, -ENOMEM, NULL, 0);
			return;
		}
		ml->n = n;
		ml->req = req;
		ml->target = q->targetid;
		ml->t.data = ml;
		if ((rc = raft_transfer(&n->raft, &ml->t, target, move_leader_done)) != 0) {
			free(ml);
			node_complete(n, req, rc == RAFT_NOTLEADER ? BOLLARD_ENOT_LEADER
			                                           : BOLLARD_EBAD_LEADER_TRANSFEREE,
			              NULL, 0);
		}
		return;
	}
	/* etcd: moving to the current leader is a no-op that succeeds. */
	fill_header(n, &h, current_rev(n));
	r.header = &h;
	node_reply_msg(n, req, &r.base);
}
