/* forward.c - what makes any member of a cluster serve any request.
 *
 * Writes on a follower: the writes of one wake-up become one bollard.Batch
 * (group commit kept) sent to the leader's bollard.Internal/Propose through
 * the server layer's forwarder (struct node_forwarder: the node never calls
 * gRPC). Each request carries an id of this member's and this member's raft
 * ID (bollard.Request.origin) and waits here by its id (node.c's waiters),
 * as etcd's members wait on their own apply. The leader submits each
 * request as its own (in one raft entry with the other writes of its
 * wake-up), keeping id and origin, and answers the call as soon as raft
 * took them: each one's raft index, or the error that kept it out of the
 * log (NOSPACE, a bad request, not leader). The follower answers its client
 * when it applies that entry itself (fsm.c: the apply is deterministic, so
 * its response is the leader's), after its own LMDB commit, so a client
 * that reads this member next sees its write. A request whose index this
 * member applied with another entry there was lost with the leadership that
 * appended it ("leader changed"); one whose entry came inside a leader's
 * snapshot cannot be answered ("request timed out", as etcd's waiter that
 * is never triggered); one not applied within etcd's request timeout times
 * out. A leader of an earlier release ignores the origin and answers once
 * all are applied, with every outcome (ProposeResponse.appended unset).
 *
 * Linearizable reads on a follower: one bollard.Internal/ReadIndex call per
 * batch of reads (those arriving while one is out wait for the next); the
 * leader answers its applied index after a raft barrier of its own, and the
 * reads are served here once the local applied index reaches it.
 *
 * Calls go to the leader's peer port (its raft address; node.h). Members'
 * client URLs: each member publishes a MemberAttributes entry (name, client
 * URLs) through raft once per start, stored in the meta database under
 * "member/<id>", for MemberList. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth.h"
#include "core/errors.h"
#include "node/log.h"
#include "node/node_int.h"
#include "node/peer_pick.h"

#define PUBLISH_RETRY_MS 500
/* Propose calls a follower has out at once (writes_out: until their
 * writes are applied here): the writes arriving meanwhile wait in n->wnext
 * and go as one call when one is done, so a busy follower
 * sends few large batches rather than one small call per wake-up (each call
 * costs both members a gRPC round of their CPU: the cluster's bottleneck).
 * One, not two: a second call sent while the first is out mostly lands while
 * the leader's log write is in flight and is held into the same next entry
 * (node.c node_log_busy) as it would have been a call later, so it only
 * added a gRPC round and the wake-ups on both members. */
#define FWD_WRITES_MAX 1
/* How often forwarded writes are checked against their request timeout
 * (writes_expire). */
#define FWD_EXPIRE_EVERY_MS 20

enum fwd_kind { FWD_WRITE, FWD_READ, FWD_LEASE, FWD_MEMBER, FWD_STATUS, FWD_PROBE };

/* A forwarded write waiting here by its id: the raft index of its entry
 * once the leader appended it, and when it times out (node_now_ms: etcd's
 * request timeout from when it came). */
struct fwd_id {
	uint64_t id, index, deadline_ms;
};

/* One forwarded call, from the follower's side. A call whose target stopped
 * leading is abandoned: its requests are failed or routed again at once and
 * its answer, whenever it comes, is dropped. */
struct fwd_call {
	struct node_req req; /* op NODE_FORWARD_DONE, submitted by node_forward_done */
	struct node *n;
	struct fwd_call *prev, *next; /* n->fcalls */
	enum fwd_kind kind;
	uint64_t leader_id;           /* the member it went to */
	uint64_t peer;                /* FWD_PROBE: raft ID of the member probed */
	uint64_t to;                  /* raft ID of the member called (0: not known) */
	char to_addr[64];             /* the address it was called at (peer_pick.h) */
	unsigned tries;               /* FWD_PROBE, FWD_STATUS: its peer URLs tried */
	uint64_t t_sent_ns;           /* node_clock_ns() when sent (metrics) */
	struct fwd_id *ids;           /* FWD_WRITE: its requests, waiting by these ids */
	size_t n_ids;
	uint64_t deadline_ms;         /* FWD_WRITE: the first of its ids' (0: none left) */
	bool abandoned;
	int err;
	uint8_t *resp;
	size_t len;
	struct req_list reqs;
};

/* Forwarded writes or reads waiting for the local applied index. */
struct fwd_await {
	struct node_await w;
	struct req_list reqs;
	Bollard__ProposeResponse *pr; /* an earlier leader's: the outcomes, in ids' order */
	Bollard__MemberCallResponse *mr; /* a membership call: its answer */
	uint64_t leader_id;           /* writes: the leader that appended them */
	size_t n_ids;                 /* writes (node.c's waiters, by id) */
	struct fwd_id ids[];          /* pr: index and deadline unused */
};

void node_set_forwarder(struct node *n, const struct node_forwarder *ops)
{
	n->fwd = ops;
}

/* ------------------------------------------------------- member attributes */

static void attr_key(uint64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "member/%016llx", (unsigned long long)id);
}

static int member_index(const struct node *n, uint64_t id)
{
	for (size_t i = 0; i < n->cluster.n; i++)
		if (n->cluster.members[i].id == id)
			return (int)i;
	return -1;
}

static int load_attrs(struct node *n)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return bollard_err_from_lmdb(rc);
	for (size_t i = 0; i < n->cluster.n; i++) {
		char key[40];
		MDB_val k, d;
		attr_key(n->cluster.members[i].id, key, sizeof(key));
		k.mv_data = key;
		k.mv_size = strlen(key);
		if (n->attrs[i])
			bollard__member_attributes__free_unpacked(n->attrs[i], NULL);
		n->attrs[i] = NULL;
		if (mdb_get(txn, n->mvcc.meta_db, &k, &d) != 0)
			continue;
		n->attrs[i] = bollard__member_attributes__unpack(NULL, d.mv_size, d.mv_data);
	}
	mdb_txn_abort(txn);
	return 0;
}

int node_forward_init(struct node *n)
{
	n->attrs = calloc(n->cluster.n, sizeof(*n->attrs));
	if (n->attrs == NULL)
		return -ENOMEM;
	return load_attrs(n);
}

int node_forward_reload(struct node *n)
{
	return n->attrs ? load_attrs(n) : 0;
}

void node_forward_free(struct node *n)
{
	for (size_t i = 0; n->attrs && i < n->cluster.n; i++)
		if (n->attrs[i])
			bollard__member_attributes__free_unpacked(n->attrs[i], NULL);
	free(n->attrs);
	n->attrs = NULL;
}

int node_member_attr_apply(struct node *n, MDB_txn *txn, const Bollard__MemberAttributes *a)
{
	int i = member_index(n, a->id);
	size_t len = bollard__member_attributes__get_packed_size(a);
	char key[40];
	MDB_val k, d;
	int rc;

	if (i < 0) {
		node_members_sync(n); /* added since (members.c) */
		if ((i = member_index(n, a->id)) < 0)
			return 0; /* not a member */
	}
	attr_key(a->id, key, sizeof(key));
	k.mv_data = key;
	k.mv_size = strlen(key);
	d.mv_size = len;
	if ((rc = mdb_put(txn, n->mvcc.meta_db, &k, &d, MDB_RESERVE)) != 0)
		return bollard_err_from_lmdb(rc);
	bollard__member_attributes__pack(a, d.mv_data);
	if (n->attrs[i])
		bollard__member_attributes__free_unpacked(n->attrs[i], NULL);
	n->attrs[i] = bollard__member_attributes__unpack(NULL, d.mv_size, d.mv_data);
	return 0;
}

static uint64_t leader_id(struct node *n)
{
	raft_id id = 0;
	const char *addr = NULL;
	raft_leader(&n->raft, &id, &addr);
	return id;
}

const char *node_leader_target(struct node *n)
{
	raft_id id = 0;
	const char *addr = NULL;
	raft_leader(&n->raft, &id, &addr);
	if (id == 0 || id == n->raft_id)
		return NULL;
	/* over the peer port (node.h), at the peer URL that works (raft's
	 * address of the leader is its first) */
	return node_peer_pick(n, id, addr);
}

static void publish_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct node *n = req->data;
	(void)len;
	free(resp);
	n->pub_in_flight = false;
	if (err == 0) {
		n->published = true;
		blog(BLOG_INFO, "cluster", "published member attributes");
	} else {
		n->pub_next_ms = node_now_ms(n) + PUBLISH_RETRY_MS;
	}
}

static void publish(struct node *n)
{
	struct req_list l = {0};
	if (n->published || n->pub_in_flight || n->refusing || n->cluster.n < 2 ||
	    node_now_ms(n) < n->pub_next_ms)
		return;
	if (raft_state(&n->raft) != RAFT_LEADER && node_leader_target(n) == NULL)
		return;
	bollard__member_attributes__init(&n->pub_msg);
	n->pub_msg.id = n->raft_id; /* attributes are kept by raft ID */
	n->pub_msg.name = (char *)n->cfg.name;
	n->pub_msg.n_client_urls = n->client_urls.n;
	n->pub_msg.client_urls = n->client_urls.v;
	n->pub_req = (struct node_req){.data = n, .op = NODE_MEMBER_ATTR,
	                               .msg = &n->pub_msg.base, .cb = publish_done};
	n->pub_in_flight = true;
	node_list_push(&l, &n->pub_req);
	node_propose(n, &l);
}

/* ---------------------------------------------------------------- awaits */

static void await_add(struct node *n, struct node_await *w)
{
	w->next = n->awaits;
	n->awaits = w;
}

static void check_leader_change(struct node *n);
static void route_waiting(struct node *n);
static void nudge_now(struct node *n);
static void writes_next(struct node *n);
static void writes_expire(struct node *n);

void node_forward_tick(struct node *n)
{
	struct node_await **pp = &n->awaits;
	while (*pp != NULL) {
		struct node_await *w = *pp;
		uint64_t at = w->raft_index ? raft_last_applied(&n->raft) : n->applied_index;
		if (w->index <= at || (w->deadline_ms && node_now_ms(n) >= w->deadline_ms)) {
			/* what it waited for, a read then sees: readers off the loop
			 * go through it while the txn is open (reads_ready and the
			 * others that read here commit first) */
			node_mark_unflushed(n);
			*pp = w->next;
			w->fn(n, w);
		} else {
			pp = &w->next;
		}
	}
	if (!n->closing) {
		writes_expire(n);
		check_leader_change(n);
		route_waiting(n);
		writes_next(n);
	}
	publish(n);
	node_members_tick(n);
	node_contact_tick(n);
	node_watch_tick(n);
	nudge_now(n);
}

/* etcd reports the member that served the client: a forwarded answer's
 * header gets this member's ID (unpack, set, repack; answers are small). */
static const ProtobufCMessageDescriptor *resp_desc(const struct node_req *r)
{
	switch (r->op) {
	case NODE_AUTH: /* by the Auth request it carries */
		return r->msg->descriptor == &bollard__auth_request__descriptor
		               ? auth_response_descriptor((const void *)r->msg)
		               : NULL;
	case NODE_PUT: return &etcdserverpb__put_response__descriptor;
	case NODE_DELETE_RANGE: return &etcdserverpb__delete_range_response__descriptor;
	case NODE_TXN: return &etcdserverpb__txn_response__descriptor;
	case NODE_COMPACT: return &etcdserverpb__compaction_response__descriptor;
	case NODE_ALARM: return &etcdserverpb__alarm_response__descriptor;
	case NODE_LEASE_GRANT: return &etcdserverpb__lease_grant_response__descriptor;
	case NODE_LEASE_REVOKE: return &etcdserverpb__lease_revoke_response__descriptor;
	case NODE_LEASE_KEEPALIVE: return &etcdserverpb__lease_keep_alive_response__descriptor;
	case NODE_LEASE_TTL: return &etcdserverpb__lease_time_to_live_response__descriptor;
	case NODE_LEASE_LEASES: return &etcdserverpb__lease_leases_response__descriptor;
	case NODE_MEMBER_ADD: return &etcdserverpb__member_add_response__descriptor;
	case NODE_MEMBER_REMOVE: return &etcdserverpb__member_remove_response__descriptor;
	case NODE_MEMBER_UPDATE: return &etcdserverpb__member_update_response__descriptor;
	case NODE_MEMBER_PROMOTE: return &etcdserverpb__member_promote_response__descriptor;
	default: return NULL;
	}
}

static void set_member_id(struct node *n, const struct node_req *r, uint8_t **buf, size_t *len)
{
	const ProtobufCMessageDescriptor *d = resp_desc(r);
	const ProtobufCFieldDescriptor *f;
	ProtobufCMessage *m;
	Etcdserverpb__ResponseHeader *h;

	if (d == NULL || *buf == NULL ||
	    (f = protobuf_c_message_descriptor_get_field_by_name(d, "header")) == NULL ||
	    (m = protobuf_c_message_unpack(d, NULL, *len, *buf)) == NULL)
		return;
	h = *(Etcdserverpb__ResponseHeader **)(void *)((char *)m + f->offset);
	if (h != NULL && h->member_id != n->member_id) {
		size_t nl;
		uint8_t *nb;
		h->member_id = n->member_id;
		nl = protobuf_c_message_get_packed_size(m);
		if ((nb = malloc(nl ? nl : 1)) != NULL) {
			protobuf_c_message_pack(m, nb);
			free(*buf);
			*buf = nb;
			*len = nl;
		}
	}
	protobuf_c_message_free_unpacked(m, NULL);
}

/* The answers of a leader of an earlier release, once applied here. */
static void writes_ready(struct node *n, struct node_await *w)
{
	struct fwd_await *a = (struct fwd_await *)w;
	uint64_t now = node_clock_ns();
	for (size_t i = 0; i < a->n_ids; i++) {
		Bollard__ProposeResult *res = a->pr->results[i];
		struct node_req *r = node_waiter_take_forwarded(n, a->ids[i].id);
		uint8_t *buf = NULL;
		size_t len = res->resp.len;
		if (r == NULL)
			continue;
		node_metrics_flushed(n, r, now); /* the local apply */
		if (res->err == 0 && (buf = malloc(len ? len : 1)) != NULL) {
			if (len) /* an empty response has no data pointer */
				memcpy(buf, res->resp.data, len);
			set_member_id(n, r, &buf, &len);
		}
		node_complete(n, r, res->err ? res->err : buf ? 0 : -ENOMEM, buf, len);
	}
	bollard__propose_response__free_unpacked(a->pr, NULL);
	free(a);
}

/* The await's trigger: its last entry, or its first deadline. */
static void appended_arm(struct fwd_await *a)
{
	a->w.index = 0;
	a->w.deadline_ms = UINT64_MAX;
	for (size_t i = 0; i < a->n_ids; i++) {
		if (a->ids[i].index > a->w.index)
			a->w.index = a->ids[i].index;
		if (a->ids[i].deadline_ms < a->w.deadline_ms)
			a->w.deadline_ms = a->ids[i].deadline_ms;
	}
}

/* Writes the leader appended, still waiting once this member's applied
 * index passed their entries (another entry was applied at that index, or
 * a snapshot brought them) or etcd's request timeout passed. Those whose
 * entry is not applied yet and whose own timeout has not passed wait on. */
static void appended_ready(struct node *n, struct node_await *w)
{
	struct fwd_await *a = (struct fwd_await *)w;
	uint64_t now = node_now_ms(n);
	size_t k = 0;
	for (size_t i = 0; i < a->n_ids; i++) {
		uint64_t at = a->ids[i].index;
		struct node_req *r;
		int err;
		if (at <= n->restored_index)
			err = BOLLARD_ETIMEOUT; /* in a snapshot: no apply of ours answers it */
		else if (at <= n->applied_index)
			err = BOLLARD_ELEADER_CHANGED;
		else if (now >= a->ids[i].deadline_ms)
			err = BOLLARD_ETIMEOUT;
		else {
			a->ids[k++] = a->ids[i];
			continue;
		}
		if ((r = node_waiter_take_forwarded(n, a->ids[i].id)) != NULL)
			node_complete(n, r, err, NULL, 0);
	}
	if (k == 0) {
		free(a);
		return;
	}
	a->n_ids = k;
	appended_arm(a);
	await_add(n, &a->w);
}

/* The requests of a write call still waiting here, in l. */
static void call_take(struct node *n, struct fwd_call *c, struct req_list *l)
{
	for (size_t i = 0; i < c->n_ids; i++) {
		struct node_req *r = node_waiter_take_forwarded(n, c->ids[i].id);
		if (r != NULL)
			node_list_push(l, r);
	}
	c->n_ids = 0;
}

/* Fail every request of c still waiting here (a write call's waiters
 * too) with err. */
static void call_fail(struct node *n, struct fwd_call *c, int err)
{
	call_take(n, c, &c->reqs);
	node_list_fail(n, &c->reqs, err);
}

static void call_free(struct fwd_call *c)
{
	free(c->resp);
	free(c->ids);
	free(c);
}

static void member_ready(struct node *n, struct node_await *w)
{
	struct fwd_await *a = (struct fwd_await *)w;
	struct node_req *r = a->reqs.head;
	size_t len = a->mr->resp.len;
	uint8_t *buf = malloc(len ? len : 1);
	node_commit(n); /* the member records, read off the loop */
	if (buf != NULL) {
		if (len)
			memcpy(buf, a->mr->resp.data, len);
		set_member_id(n, r, &buf, &len);
	}
	node_complete(n, r, buf ? 0 : -ENOMEM, buf, len);
	bollard__member_call_response__free_unpacked(a->mr, NULL);
	free(a);
}

static void index_ready(struct node *n, struct node_await *w)
{
	struct fwd_await *a = (struct fwd_await *)w;
	node_commit(n); /* the auth state its caller reads off the loop */
	for (struct node_req *r = a->reqs.head, *next; r != NULL; r = next) {
		next = r->next_;
		node_complete(n, r, 0, NULL, 0);
	}
	free(a);
}

void node_await_index(struct node *n, uint64_t index, uint64_t deadline_ms, struct node_req *req)
{
	struct fwd_await *a = calloc(1, sizeof(*a));
	if (a == NULL) {
		node_complete(n, req, -ENOMEM, NULL, 0);
		return;
	}
	node_list_push(&a->reqs, req);
	a->w.index = index;
	a->w.deadline_ms = deadline_ms;
	a->w.fn = index_ready;
	await_add(n, &a->w);
}

static void reads_ready(struct node *n, struct node_await *w)
{
	struct fwd_await *a = (struct fwd_await *)w;
	node_serve_reads_now(n, &a->reqs);
	free(a);
}

/* ------------------------------------------------------------- followers */

static void call_unlink(struct node *n, struct fwd_call *c)
{
	if (c->prev) c->prev->next = c->next; else if (n->fcalls == c) n->fcalls = c->next;
	if (c->next) c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

/* Only when the answer cannot be handled (the node is closing or closed). */
static void fwd_submit_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct fwd_call *c = req->data;
	(void)resp;
	(void)len;
	c->n->fwd_in_flight--;
	call_unlink(c->n, c);
	call_fail(c->n, c, err ? err : BOLLARD_ESTOPPED);
	call_free(c);
}

static struct fwd_call *send_call_to(struct node *n, const char *target, enum fwd_kind kind,
                                     const char *method, struct req_list *l, uint8_t *buf,
                                     size_t len, uint64_t peer, unsigned tries,
                                     uint64_t timeout_ms)
{
	struct fwd_call *c;
	if (target == NULL || n->fwd == NULL || (c = calloc(1, sizeof(*c))) == NULL) {
		free(buf);
		return NULL;
	}
	c->n = n;
	c->kind = kind;
	c->leader_id = leader_id(n);
	c->peer = peer;
	c->to = peer ? peer : c->leader_id;
	c->tries = tries;
	snprintf(c->to_addr, sizeof(c->to_addr), "%s", target);
	c->reqs = *l;
	*l = (struct req_list){0};
	c->req.op = NODE_FORWARD_DONE;
	c->req.data = c;
	c->req.cb = fwd_submit_done;
	c->next = n->fcalls;
	if (n->fcalls)
		n->fcalls->prev = c;
	n->fcalls = c;
	n->fwd_in_flight++;
	c->t_sent_ns = node_clock_ns();
	n->fwd->call(n->fwd->data, target, method, buf, len, timeout_ms, c);
	return c;
}

static struct fwd_call *send_call(struct node *n, enum fwd_kind kind, const char *method,
                                  struct req_list *l, uint8_t *buf, size_t len)
{
	return send_call_to(n, node_leader_target(n), kind, method, l, buf, len, 0, 1, 0);
}

/* When etcd's request timeout passes for r, a write that came at
 * r->t_ns_ (node_clock_ns; 0: made here, now). */
static uint64_t write_deadline_ms(struct node *n, const struct node_req *r, uint64_t now_ns)
{
	uint64_t timeout = node_request_timeout_ms(n);
	uint64_t age = r->t_ns_ != 0 && r->t_ns_ < now_ns ? (now_ns - r->t_ns_) / 1000000 : 0;
	return node_now_ms(n) + (age < timeout ? timeout - age : 0);
}

/* A write call's first deadline (its ids taken out: 0). */
static void call_arm(struct fwd_call *c)
{
	c->deadline_ms = 0;
	for (size_t i = 0; i < c->n_ids; i++)
		if (c->ids[i].id != 0 && (c->deadline_ms == 0 || c->ids[i].deadline_ms < c->deadline_ms))
			c->deadline_ms = c->ids[i].deadline_ms;
}

/* Forwarded writes not answered within etcd's request timeout fail with
 * its "request timed out", wherever they wait: in wnext for the next
 * Propose call (it may never go: one call at a time, and one whose leader
 * hangs is answered only at its own deadline), or in a call without an
 * answer. One whose call reached the leader may still be applied (as with
 * etcd, the caller is told it timed out, not that it failed). A call whose
 * writes all timed out is abandoned: its answer is dropped, the next call
 * may go. (Writes the leader appended wait in appended_ready; a leader's
 * own wnext waits for its log write, node_log_busy.) */
static void writes_expire(struct node *n)
{
	uint64_t now = node_now_ms(n), now_ns = node_clock_ns();

	if (now < n->fwd_expire_ms) /* a few times per heartbeat, not each iteration */
		return;
	n->fwd_expire_ms = now + FWD_EXPIRE_EVERY_MS;
	if (raft_state(&n->raft) != RAFT_LEADER) {
		struct req_list keep = {0};
		for (struct node_req *r = n->wnext.head, *next; r != NULL; r = next) {
			next = r->next_;
			if (write_deadline_ms(n, r, now_ns) <= now)
				node_complete(n, r, BOLLARD_ETIMEOUT, NULL, 0);
			else
				node_list_push(&keep, r);
		}
		n->wnext = keep;
	}
	for (struct fwd_call *c = n->fcalls; c != NULL; c = c->next) {
		if (c->kind != FWD_WRITE || c->abandoned || c->deadline_ms == 0 || now < c->deadline_ms)
			continue;
		for (size_t i = 0; i < c->n_ids; i++) {
			struct node_req *r;
			if (c->ids[i].id == 0 || now < c->ids[i].deadline_ms)
				continue;
			if ((r = node_waiter_take_forwarded(n, c->ids[i].id)) != NULL)
				node_complete(n, r, BOLLARD_ETIMEOUT, NULL, 0);
			c->ids[i].id = 0; /* its answer, if it comes, is not matched */
		}
		call_arm(c);
		c->abandoned = c->deadline_ms == 0;
	}
}

/* Propose calls out, and those the current leader answered whose writes
 * are not yet applied here: a call's writes are applied here about when
 * the leader's answer came before it answered at append, so calls go at
 * that pace as before, each with what arrived meanwhile. (Not those of an
 * earlier leader: their entries may have been lost, and the next ones may
 * be needed to reach their index.) */
static size_t writes_out(struct node *n)
{
	size_t k = 0;
	uint64_t lid = leader_id(n);
	for (const struct fwd_call *c = n->fcalls; c != NULL; c = c->next)
		k += c->kind == FWD_WRITE && !c->abandoned;
	for (const struct node_await *w = n->awaits; w != NULL; w = w->next)
		k += w->fn == appended_ready && ((const struct fwd_await *)w)->leader_id == lid;
	return k;
}

/* The writes that waited for a Propose call: by the role this member has now. */
static void writes_next(struct node *n)
{
	struct req_list l = n->wnext;
	if (l.head == NULL || writes_out(n) >= FWD_WRITES_MAX || node_log_busy(n))
		return;
	n->wnext = (struct req_list){0};
	node_propose(n, &l); /* callers run it only while not closing */
}

bool node_forward_writes(struct node *n, struct req_list *l)
{
	Bollard__Batch batch = BOLLARD__BATCH__INIT;
	Bollard__Request *rq, **rqp;
	size_t count = 0, i = 0, len;
	struct fwd_id *ids;
	struct fwd_call *c;
	uint8_t *buf;

	if (n->refusing || n->cluster.n < 2 || node_leader_target(n) == NULL || n->fwd == NULL)
		return false;
	node_list_splice(&n->wnext, l); /* writes already waiting go first */
	if (writes_out(n) >= FWD_WRITES_MAX)
		return true;
	*l = n->wnext;
	n->wnext = (struct req_list){0};
	/* other followers' writes held there while this member led go back
	 * to them (ENOT_LEADER: they send them again), never on from here */
	node_forward_refuse(n, l);
	if (l->head == NULL)
		return true;
	for (struct node_req *r = l->head; r != NULL; r = r->next_)
		count++;
	l->n = count; /* lists built by hand (parked writes) leave it 0 */
	rq = calloc(count, sizeof(*rq));
	rqp = calloc(count, sizeof(*rqp));
	ids = calloc(count, sizeof(*ids));
	if (rq == NULL || rqp == NULL || ids == NULL) {
		free(rq);
		free(rqp);
		free(ids);
		node_list_fail(n, l, -ENOMEM);
		return true;
	}
	uint64_t now = node_clock_ns();
	for (struct node_req *r = l->head; r != NULL; r = r->next_, i++) {
		ids[i].deadline_ms = write_deadline_ms(n, r, now); /* before t_ns_ moves on */
		node_metrics_forwarded(n, r, now);
		bollard__request__init(&rq[i]);
		r->seq_ = ids[i].id = n->next_id++;
		rq[i].id = r->seq_;
		rq[i].origin = n->raft_id; /* answered here, from this member's apply */
		node_request_fill(&rq[i], r);
		rqp[i] = &rq[i];
	}
	batch.n_requests = count;
	batch.requests = rqp;
	len = bollard__batch__get_packed_size(&batch);
	if ((buf = malloc(len ? len : 1)) != NULL)
		bollard__batch__pack(&batch, buf);
	free(rq);
	free(rqp);
	struct req_list none = {0};
	if (buf == NULL || (c = send_call(n, FWD_WRITE, "Propose", &none, buf, len)) == NULL) {
		free(ids); /* send_call: checked above, only calloc fails */
		node_list_fail(n, l, -ENOMEM);
		return true;
	}
	c->ids = ids;
	c->n_ids = count;
	call_arm(c);
	for (struct node_req *r = l->head, *next; r != NULL; r = next) {
		next = r->next_;
		node_waiter_add_forwarded(n, r);
	}
	*l = (struct req_list){0};
	return true;
}

static void read_round(struct node *n)
{
	Bollard__ReadIndexRequest q = BOLLARD__READ_INDEX_REQUEST__INIT;
	size_t len = bollard__read_index_request__get_packed_size(&q);
	uint8_t *buf;
	if (n->ri_in_flight || n->rnext.head == NULL)
		return;
	if ((buf = malloc(len ? len : 1)) == NULL)
		return;
	bollard__read_index_request__pack(&q, buf);
	struct req_list l = n->rnext;
	n->rnext = (struct req_list){0};
	if (send_call(n, FWD_READ, "ReadIndex", &l, buf, len))
		n->ri_in_flight = true;
	else /* no leader known (any more): wait for one, with the request timeout */
		node_park_reads(n, &l);
}

void node_forward_reads(struct node *n, struct req_list *l)
{
	if (l->head == NULL)
		return;
	node_list_splice(&n->rnext, l);
	read_round(n);
}

/* ----------------------------------------------- leases, routing again */

static const char *lease_method(enum node_op op)
{
	return op == NODE_LEASE_KEEPALIVE ? "LeaseKeepAlive"
	       : op == NODE_LEASE_TTL     ? "LeaseTimeToLive"
	                                  : "LeaseLeases";
}

static void fwait_push(struct node *n, struct req_list *l)
{
	if (l->head == NULL)
		return;
	if (n->fwait.head == NULL)
		n->fwait_next_ms = node_now_ms(n) + n->cfg.heartbeat_ms;
	node_list_splice(&n->fwait, l);
}

void node_serve_lease(struct node *n, struct node_req *req)
{
	enum node_op op = req->op;
	bool internal = op == NODE_INT_LEASE_KEEPALIVE || op == NODE_INT_LEASE_TTL ||
	                op == NODE_INT_LEASE_LEASES;
	bool local = n->cluster.n < 2 || raft_state(&n->raft) == RAFT_LEADER;

	if (internal && !local) {
		node_complete(n, req, BOLLARD_ENOT_LEADER, NULL, 0);
		return;
	}
	if (local) {
		switch (op) {
		case NODE_LEASE_KEEPALIVE:
		case NODE_INT_LEASE_KEEPALIVE: node_serve_lease_keepalive(n, req); break;
		case NODE_LEASE_TTL:
		case NODE_INT_LEASE_TTL: node_serve_lease_ttl(n, req); break;
		default: node_serve_lease_leases(n, req); break;
		}
		return;
	}
	/* A follower: the leader's lessor answers (etcd forwards these too). */
	struct req_list l = {0};
	size_t len = protobuf_c_message_get_packed_size(req->msg);
	uint8_t *buf = malloc(len ? len : 1);
	node_list_push(&l, req);
	if (buf == NULL) {
		node_list_fail(n, &l, -ENOMEM);
		return;
	}
	protobuf_c_message_pack(req->msg, buf);
	if (!send_call(n, FWD_LEASE, lease_method(op), &l, buf, len))
		fwait_push(n, &l); /* no leader known: again after a heartbeat */
}

/* A forwarded membership call tells the leader its caller's time left, less
 * this allowance for the hop: the leader counts from when it reads the call,
 * so without it a change could start just after its caller was told it
 * failed. The follower then holds the leader's "timed out" until the
 * caller's own deadline (hold_until_deadline): the caller sees its deadline
 * pass, as with etcd, not an early error. The follower's own call to the
 * leader lasts as long as its caller waits (a caller without a deadline:
 * twice the request timeout, which the leader's queue never waits past), and
 * at least the forwarder's 5 s: a change that waits longer than 5 s behind
 * others still answers its caller, who was told "request timed out" at 5 s
 * while the leader went on to make it; and a call that reached a leader that
 * hung for less than 5 s is read by it when it runs again, as etcd's leader
 * reads a forwarded proposal then (the call is not withdrawn before). */
#define MEMBER_CALL_MIN_MS 5000
#define MEMBER_HOP_MS 250

static void deadline_passed(struct node *n, struct node_await *w)
{
	struct fwd_await *a = (struct fwd_await *)w;
	node_list_fail(n, &a->reqs, BOLLARD_ETIMEOUT);
	free(a);
}

/* Membership calls the leader gave up on at their shortened deadline: each
 * fails at its caller's deadline if that is near; others fail now (the
 * leader's own request timeout). */
static void hold_until_deadline(struct node *n, struct req_list *l)
{
	uint64_t now = node_clock_ns();
	for (struct node_req *r = l->head, *next; r != NULL; r = next) {
		struct fwd_await *a;
		next = r->next_;
		r->next_ = NULL;
		if (r->deadline_ns == 0 || r->deadline_ns <= now ||
		    r->deadline_ns - now > 2 * MEMBER_HOP_MS * 1000000ull ||
		    (a = calloc(1, sizeof(*a))) == NULL) {
			node_complete(n, r, BOLLARD_ETIMEOUT, NULL, 0);
			continue;
		}
		node_list_push(&a->reqs, r);
		a->w.index = UINT64_MAX;
		a->w.deadline_ms = node_now_ms(n) + (r->deadline_ns - now) / 1000000 + 1;
		a->w.fn = deadline_passed;
		await_add(n, &a->w);
	}
	*l = (struct req_list){0};
}

void node_forward_member(struct node *n, struct node_req *req)
{
	Bollard__MemberCall mc = BOLLARD__MEMBER_CALL__INIT;
	struct req_list l = {0};
	void *m = (void *)req->msg; /* packed only */
	size_t len;
	uint8_t *buf;

	switch (req->op) {
	case NODE_MEMBER_ADD: mc.call_case = BOLLARD__MEMBER_CALL__CALL_ADD; mc.add = m; break;
	case NODE_MEMBER_REMOVE: mc.call_case = BOLLARD__MEMBER_CALL__CALL_REMOVE; mc.remove = m; break;
	case NODE_MEMBER_UPDATE: mc.call_case = BOLLARD__MEMBER_CALL__CALL_UPDATE; mc.update = m; break;
	default: mc.call_case = BOLLARD__MEMBER_CALL__CALL_PROMOTE; mc.promote = m; break;
	}
	uint64_t timeout_ms = 2 * node_request_timeout_ms(n);
	if (req->deadline_ns != 0) { /* the leader keeps it no longer than its caller */
		uint64_t now = node_clock_ns(), left_ms;
		if (now >= req->deadline_ns) {
			node_complete(n, req, BOLLARD_ETIMEOUT, NULL, 0);
			return;
		}
		left_ms = (req->deadline_ns - now) / 1000000;
		mc.timeout_ms = left_ms > 2 * MEMBER_HOP_MS ? left_ms - MEMBER_HOP_MS
		                                            : left_ms / 2 + 1;
		timeout_ms = left_ms + 1 > MEMBER_CALL_MIN_MS ? left_ms + 1 : MEMBER_CALL_MIN_MS;
	}
	node_list_push(&l, req);
	len = bollard__member_call__get_packed_size(&mc);
	if ((buf = malloc(len ? len : 1)) == NULL) {
		node_list_fail(n, &l, -ENOMEM);
		return;
	}
	bollard__member_call__pack(&mc, buf);
	if (n->cluster.n < 2 || !send_call_to(n, node_leader_target(n), FWD_MEMBER, "Member", &l,
	                                      buf, len, 0, 1, timeout_ms))
		fwait_push(n, &l); /* no leader known: again after a heartbeat */
}

static bool send_status(struct node *n, const char *target, enum fwd_kind kind, uint64_t peer,
                        unsigned tries)
{
	Bollard__MemberStatusRequest q = BOLLARD__MEMBER_STATUS_REQUEST__INIT;
	struct req_list l = {0};
	size_t len;
	uint8_t *buf;
	q.raft_id = n->raft_id;
	q.id = n->member_id;
	len = bollard__member_status_request__get_packed_size(&q);
	if ((buf = malloc(len ? len : 1)) == NULL)
		return false;
	bollard__member_status_request__pack(&q, buf);
	return send_call_to(n, target, kind, "MemberStatus", &l, buf, len, peer, tries, 0);
}

void node_forward_status(struct node *n, const char *target, uint64_t raft_id)
{
	send_status(n, node_peer_pick(n, raft_id, target), FWD_STATUS, raft_id, 1);
}

bool node_forward_probe(struct node *n, const char *target, uint64_t raft_id)
{
	return send_status(n, node_peer_pick(n, raft_id, target), FWD_PROBE, raft_id, 1);
}

/* A call refused by its target's port: the target's next peer URL is picked
 * (what was refused is sent again as before, by the role this member has
 * then). A probe or status question goes at once to the next URL not tried
 * (true: it went). */
static bool call_refused(struct node *n, struct fwd_call *c)
{
	char next[sizeof(c->to_addr)];
	if (c->to == 0 || !node_peer_failed(n, c->to, c->to_addr, c->tries, next, sizeof(next)))
		return false;
	return (c->kind == FWD_PROBE || c->kind == FWD_STATUS) &&
	       send_status(n, next, c->kind, c->peer, c->tries + 1);
}

/* Reads and lease requests whose call failed or whose target stopped
 * leading: by the current role again (they have no effect, so sending them
 * twice is harmless), unless etcd's request timeout has passed. */
static void route_again(struct node *n, struct req_list *l)
{
	struct req_list reads = {0};
	for (struct node_req *r = l->head, *next; r != NULL; r = next) {
		next = r->next_;
		r->next_ = NULL;
		if (node_req_expired(n, r)) {
			node_complete(n, r, BOLLARD_ETIMEOUT, NULL, 0);
		} else if (r->op == NODE_RANGE || r->op == NODE_READ_INDEX) {
			node_list_push(&reads, r);
		} else if (r->op >= NODE_MEMBER_ADD && r->op <= NODE_MEMBER_UPDATE) {
			node_serve_member_change(n, r); /* by the role it has now */
		} else {
			node_serve_lease(n, r);
		}
	}
	*l = (struct req_list){0};
	node_serve_reads(n, &reads);
}

static void route_waiting(struct node *n)
{
	struct req_list l;
	if (n->fwait.head == NULL || node_now_ms(n) < n->fwait_next_ms)
		return;
	l = n->fwait;
	n->fwait = (struct req_list){0};
	route_again(n, &l);
}

/* A member learnt of a new leader: what went to the old one is rerouted
 * (reads, leases) or failed with etcd's "leader changed" (writes: they may
 * have reached it and may yet be applied, so never sent twice). */
static void check_leader_change(struct node *n)
{
	uint64_t lid;
	struct req_list again = {0};
	if (n->fcalls == NULL || (lid = leader_id(n)) == 0)
		return;
	for (struct fwd_call *c = n->fcalls; c != NULL; c = c->next) {
		if (c->abandoned || c->leader_id == lid || c->kind == FWD_PROBE)
			continue;
		c->abandoned = true;
		if (c->kind == FWD_READ)
			n->ri_in_flight = false;
		if (c->kind == FWD_WRITE || c->kind == FWD_MEMBER) {
			call_fail(n, c, BOLLARD_ELEADER_CHANGED);
		} else {
			node_list_splice(&again, &c->reqs);
		}
		c->reqs = (struct req_list){0};
	}
	route_again(n, &again);
	read_round(n);
}

/* A failed call: what is safe to send again is routed again (after a
 * heartbeat, so a refused target is not retried in a busy loop). */
static void call_failed(struct node *n, struct fwd_call *c, int err)
{
	bool transport = err == -ECONNREFUSED || err == -ECONNRESET || err == BOLLARD_ETIMEOUT;
	if (c->kind == FWD_STATUS)
		return;
	if (c->kind == FWD_MEMBER) { /* not idempotent: sent again only if it never left */
		if (err == -ECONNREFUSED || err == BOLLARD_ENOT_LEADER)
			fwait_push(n, &c->reqs);
		else if (err == BOLLARD_ETIMEOUT)
			hold_until_deadline(n, &c->reqs);
		else
			node_list_fail(n, &c->reqs, transport ? BOLLARD_ETIMEOUT : err);
		return;
	}
	if (c->kind == FWD_WRITE) {
		call_take(n, c, &c->reqs);
		if (err == -ECONNREFUSED) /* never left: safe to send again */
			node_park_writes(n, &c->reqs);
		else
			node_list_fail(n, &c->reqs, transport ? BOLLARD_ETIMEOUT : err);
		return;
	}
	if (transport || err == BOLLARD_ENO_LEADER || err == BOLLARD_ENOT_LEADER ||
	    err == BOLLARD_ELEADER_CHANGED || err == BOLLARD_ESTOPPED)
		fwait_push(n, &c->reqs);
	else
		node_list_fail(n, &c->reqs, err);
}

/* The leader's answer to a Propose call: the requests it kept out of its log
 * fail (or, refused by a member that stopped leading, wait for the next
 * leader: they are in no log), the others wait here for their entries. */
static void writes_answered(struct node *n, struct fwd_call *c)
{
	Bollard__ProposeResponse *pr = bollard__propose_response__unpack(NULL, c->len, c->resp);
	struct req_list park = {0};
	struct fwd_await *a;
	size_t k = 0;

	if (pr == NULL || pr->n_results != c->n_ids ||
	    (a = calloc(1, sizeof(*a) + c->n_ids * sizeof(a->ids[0]))) == NULL) {
		call_fail(n, c, pr == NULL || pr->n_results != c->n_ids ? BOLLARD_EINTERNAL : -ENOMEM);
		if (pr)
			bollard__propose_response__free_unpacked(pr, NULL);
		return;
	}
	if (!pr->appended) { /* a leader of an earlier release: its answers, once applied here */
		for (size_t i = 0; i < c->n_ids; i++)
			a->ids[i].id = c->ids[i].id;
		a->n_ids = c->n_ids;
		a->pr = pr;
		a->w.index = pr->index;
		a->w.fn = writes_ready;
		await_add(n, &a->w);
		node_forward_tick(n);
		return;
	}
	for (size_t i = 0; i < c->n_ids; i++) {
		const Bollard__ProposeResult *res = pr->results[i];
		struct node_req *r;
		if (c->ids[i].id == 0) /* timed out meanwhile */
			continue;
		if (res->err == 0 && res->index != 0) {
			a->ids[k] = c->ids[i];
			a->ids[k++].index = res->index;
		} else if ((r = node_waiter_take_forwarded(n, c->ids[i].id)) != NULL) {
			if (res->err == BOLLARD_ENOT_LEADER)
				node_list_push(&park, r);
			else /* no error and no index: not appended by that leader */
				node_complete(n, r, res->err ? res->err : BOLLARD_ELEADER_CHANGED,
				              NULL, 0);
		}
	}
	bollard__propose_response__free_unpacked(pr, NULL);
	node_park_writes(n, &park);
	if (k == 0) {
		free(a);
		return;
	}
	a->n_ids = k;
	a->leader_id = c->leader_id;
	appended_arm(a);
	a->w.fn = appended_ready;
	await_add(n, &a->w);
	node_forward_tick(n);
}

void node_forward_done(struct node *n, void *ctx, int err, uint8_t *resp, size_t len)
{
	struct fwd_call *c = ctx;
	c->err = err;
	c->resp = resp;
	c->len = len;
	node_submit(n, &c->req);
}

void node_forward_handle(struct node *n, struct node_req *req)
{
	struct fwd_call *c = req->data;
	struct fwd_await *a;
	int err = c->err;

	n->fwd_in_flight--;
	call_unlink(n, c);
	if (c->abandoned) { /* already failed or routed again */
		call_free(c);
		return;
	}
	if (c->kind == FWD_READ)
		n->ri_in_flight = false;
	if (err == -ECONNREFUSED && !n->closing && call_refused(n, c))
		goto out;
	if (c->kind == FWD_PROBE) { /* its answer (whether removed) is not used */
		node_contact_probed(n, c->peer, err);
		goto out;
	}
	if (n->closing) {
		call_fail(n, c, BOLLARD_ESTOPPED);
		goto out;
	}
	if (err != 0) {
		call_failed(n, c, err);
		goto out;
	}
	if (c->kind == FWD_WRITE) {
		writes_answered(n, c);
		goto out;
	}
	if (c->kind == FWD_STATUS) {
		Bollard__MemberStatusResponse *st =
			bollard__member_status_response__unpack(NULL, c->len, c->resp);
		if (st != NULL && st->removed)
			node_member_removed(n);
		if (st != NULL)
			bollard__member_status_response__free_unpacked(st, NULL);
		goto out;
	}
	if (c->kind == FWD_LEASE) {
		struct node_req *r = c->reqs.head;
		set_member_id(n, r, &c->resp, &c->len);
		node_complete(n, r, 0, c->resp, c->len);
		c->resp = NULL;
		goto out;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		node_list_fail(n, &c->reqs, -ENOMEM);
		goto out;
	}
	a->reqs = c->reqs;
	if (c->kind == FWD_MEMBER) {
		a->mr = bollard__member_call_response__unpack(NULL, c->len, c->resp);
		if (a->mr == NULL) {
			free(a);
			node_list_fail(n, &c->reqs, BOLLARD_EINTERNAL);
			goto out;
		}
		a->w.index = a->mr->index;
		a->w.raft_index = true; /* a configuration change is no FSM entry */
		a->w.fn = member_ready;
	} else {
		Bollard__ReadIndexResponse *ri =
			bollard__read_index_response__unpack(NULL, c->len, c->resp);
		if (ri == NULL) {
			free(a);
			node_list_fail(n, &c->reqs, BOLLARD_EINTERNAL);
			goto out;
		}
		a->w.index = ri->index;
		a->w.fn = reads_ready;
		bollard__read_index_response__free_unpacked(ri, NULL);
	}
	await_add(n, &a->w);
	call_free(c);
	node_forward_tick(n);
	read_round(n);
	return;
out:
	call_free(c);
	read_round(n);
	if (!n->closing)
		writes_next(n);
}

void node_forward_close(struct node *n)
{
	/* Forwarded calls: their requests fail now, their answers (or the
	 * forwarder's cancellation) are dropped when they come. */
	for (struct fwd_call *c = n->fcalls; c != NULL; c = c->next) {
		if (c->abandoned)
			continue;
		c->abandoned = true;
		call_fail(n, c, BOLLARD_ESTOPPED);
	}
	n->ri_in_flight = false;
	node_list_fail(n, &n->rnext, BOLLARD_ESTOPPED);
	node_list_fail(n, &n->wnext, BOLLARD_ESTOPPED);
	node_list_fail(n, &n->fwait, BOLLARD_ESTOPPED);
	while (n->awaits != NULL) {
		struct fwd_await *a = (struct fwd_await *)n->awaits;
		n->awaits = a->w.next;
		for (size_t i = 0; i < a->n_ids; i++) {
			struct node_req *r = node_waiter_take_forwarded(n, a->ids[i].id);
			if (r != NULL)
				node_list_push(&a->reqs, r);
		}
		node_list_fail(n, &a->reqs, BOLLARD_ESTOPPED);
		if (a->pr)
			bollard__propose_response__free_unpacked(a->pr, NULL);
		if (a->mr)
			bollard__member_call_response__free_unpacked(a->mr, NULL);
		free(a);
	}
}

/* ---------------------------------------------------------------- leader */

/* A follower's batch on the leader. Requests naming their origin are
 * answered at append (node_forward_appended: the index), the others once
 * applied here (their response). */
struct batch_in {
	struct node *n;
	struct node_req *outer;
	size_t count, pending;
	bool appended;
	struct batch_sub {
		struct node_req req;
		struct batch_in *in;
		uint64_t origin; /* bollard.Request.origin (its id: req.seq_) */
		uint64_t index;  /* the raft index of its entry, once appended */
		int err;
		uint8_t *resp;
		size_t len;
	} subs[];
};

static void batch_sub_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct batch_sub *s = req->data;
	struct batch_in *in = s->in;
	Bollard__ProposeResponse pr = BOLLARD__PROPOSE_RESPONSE__INIT;
	Bollard__ProposeResult *res, **resp_;
	uint8_t *buf;
	size_t blen;

	s->err = err;
	s->resp = resp;
	s->len = len;
	if (--in->pending > 0)
		return;
	res = calloc(in->count, sizeof(*res));
	resp_ = calloc(in->count, sizeof(*resp_));
	pr.index = in->n->applied_index;
	pr.n_results = in->count;
	pr.results = resp_;
	pr.appended = in->appended;
	for (size_t i = 0; res && resp_ && i < in->count; i++) {
		bollard__propose_result__init(&res[i]);
		res[i].err = in->subs[i].err;
		if (in->appended) {
			res[i].index = in->subs[i].err ? 0 : in->subs[i].index;
		} else {
			res[i].resp.data = in->subs[i].resp;
			res[i].resp.len = in->subs[i].resp ? in->subs[i].len : 0;
		}
		resp_[i] = &res[i];
	}
	blen = bollard__propose_response__get_packed_size(&pr);
	buf = res && resp_ ? malloc(blen ? blen : 1) : NULL;
	if (buf)
		bollard__propose_response__pack(&pr, buf);
	for (size_t i = 0; i < in->count; i++)
		free(in->subs[i].resp);
	free(res);
	free(resp_);
	node_complete(in->n, in->outer, buf ? 0 : -ENOMEM, buf, blen);
	if (!in->appended) /* else when applied (fsm.c) */
		node_commit_nudge(in->n);
	free(in);
}

uint64_t node_forward_origin(const struct node_req *r)
{
	return r->cb == batch_sub_done ? ((const struct batch_sub *)r->data)->origin : 0;
}

void node_forward_appended(struct node *n, struct node_req *r, uint64_t index)
{
	((struct batch_sub *)r->data)->index = index;
	node_complete(n, r, 0, NULL, 0);
}

void node_forward_refuse(struct node *n, struct req_list *l)
{
	struct req_list keep = {0};
	for (struct node_req *r = l->head, *next; r != NULL; r = next) {
		next = r->next_;
		if (node_forward_origin(r) != 0)
			node_complete(n, r, BOLLARD_ENOT_LEADER, NULL, 0);
		else
			node_list_push(&keep, r);
	}
	*l = keep;
}

/* canonical/raft 0.15 tells followers a new commit index only with its next
 * AppendEntries: new entries, or the heartbeat. A follower that forwarded a
 * write (or asked a ReadIndex) answers once it applied up to the leader's
 * index, so with no other traffic each such request waited for a heartbeat:
 * one client writing through a follower did 6 writes/s at --heartbeat-interval
 * 100 ms. So the leader sends an empty AppendEntries at once to the followers
 * not yet sent its commit index (contact.c), as etcd's leader broadcasts a
 * new commit; no log entry, so no disk write on any member. */
void node_commit_nudge(struct node *n)
{
	n->nudge_index = n->raft.commit_index;
}

/* From the loop's flush, never inside a raft callback: raft's tick must not
 * run inside raft's own code. */
static void nudge_now(struct node *n)
{
	if (n->nudge_index == 0)
		return;
	if (n->closing || n->raft.configuration.n < 2 || !node_contact_commit_now(n, n->nudge_index))
		n->nudge_index = 0;
}

static enum node_op op_of(const Bollard__Request *r)
{
	switch (r->op_case) {
	case BOLLARD__REQUEST__OP_PUT: return NODE_PUT;
	case BOLLARD__REQUEST__OP_DELETE_RANGE: return NODE_DELETE_RANGE;
	case BOLLARD__REQUEST__OP_TXN: return NODE_TXN;
	case BOLLARD__REQUEST__OP_COMPACTION: return NODE_COMPACT;
	case BOLLARD__REQUEST__OP_ALARM: return NODE_ALARM;
	case BOLLARD__REQUEST__OP_LEASE_GRANT: return NODE_LEASE_GRANT;
	case BOLLARD__REQUEST__OP_LEASE_REVOKE: return NODE_LEASE_REVOKE;
	case BOLLARD__REQUEST__OP_LEASE_CHECKPOINT: return NODE_LEASE_CHECKPOINT;
	case BOLLARD__REQUEST__OP_MEMBER_ATTRIBUTES: return NODE_MEMBER_ATTR;
	case BOLLARD__REQUEST__OP_AUTH: return NODE_AUTH;
	case BOLLARD__REQUEST__OP_MEMBER_INFO: return NODE_MEMBER_INFO;
	case BOLLARD__REQUEST__OP_CLUSTER_INFO: return NODE_CLUSTER_INFO;
	default: return NODE_OP_COUNT_;
	}
}

struct node_req *node_serve_propose_batch(struct node *n, struct node_req *req,
                                          struct node_req *rest)
{
	const Bollard__Batch *b = (const void *)req->msg;
	struct batch_in *in;
	struct node_req *head = NULL, **tail = &head;

	if (b->n_requests == 0) {
		node_complete(n, req, BOLLARD_EBAD_REQUEST, NULL, 0);
		return rest;
	}
	in = calloc(1, sizeof(*in) + b->n_requests * sizeof(in->subs[0]));
	if (in == NULL) {
		node_complete(n, req, -ENOMEM, NULL, 0);
		return rest;
	}
	in->n = n;
	in->outer = req;
	in->count = in->pending = b->n_requests;
	in->appended = true; /* if every request names its origin */
	for (size_t i = 0; i < b->n_requests; i++)
		in->appended = in->appended && b->requests[i]->origin != 0;
	for (size_t i = 0; i < b->n_requests; i++) {
		struct batch_sub *s = &in->subs[i];
		const Bollard__Request *r = b->requests[i];
		s->in = in;
		if (in->appended) {
			s->origin = r->origin;
			s->req.seq_ = r->id;
		}
		s->req.data = s;
		s->req.op = op_of(r);
		s->req.msg = r->put ? (const ProtobufCMessage *)(const void *)r->put : NULL;
		s->req.cb = batch_sub_done;
		s->req.next_ = NULL;
		s->req.t_ns_ = req->t_ns_;
		/* The sender's caller, resolved there (tokens are on every
		 * member); never the member's own exemption from another. */
		s->req.auth_user = r->auth_user;
		s->req.auth_rev = r->auth_revision == AUTH_REV_SYSTEM ? 0 : r->auth_revision;
		if (s->req.msg == NULL)
			s->req.op = NODE_OP_COUNT_; /* answered BAD_REQUEST by dispatch */
		*tail = &s->req;
		tail = &s->req.next_;
	}
	*tail = rest;
	return head;
}
