/* node.c - one store member's loop side: the submission queue, dispatch of
 * requests, group commit of writes into raft entries, the waiters of
 * proposed requests, and the node's lifecycle (create, start, close).
 *
 * Request path. Other threads call node_submit(): the request is appended
 * to a locked list and, if the list was empty, the loop is woken through an
 * eventfd (written after the lock is released; not uv_async_send, whose
 * receiving side spins and then sched_yield()s while the sender is still in
 * its write: seen in 13% of lone puts). Each wake-up drains the whole list:
 * reads are served at once from one LMDB read transaction; the writes of
 * the wake-up become ONE bollard.Batch and ONE raft entry (group commit),
 * or, while the leader's log write is in flight, wait for it to end and
 * join the writes of the wake-ups since (node_log_busy). Each write gets a
 * unique id and waits in a hash by id until the FSM (fsm.c) applies its
 * entry, and is answered after the LMDB commit at the end of that loop
 * iteration. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <netdb.h>
#include <arpa/inet.h>

#include "core/auth.h"
#include "core/errors.h"
#include "core/mix64.h"
#include "core/validate.h"
#include "node/log.h"
#include "node/node_int.h"
#include "node/peer_port.h"
#include "node/spool.h"

/* A raft entry holds at most this many request bytes (more are split into
 * further entries of the same wake-up); raft's segments are sized from it. */
#define NODE_MAX_ENTRY_BYTES (4u << 20)

void node_config_init(struct node_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->name = "default";
	cfg->initial_cluster_state = "new";
	cfg->initial_cluster_token = "etcd-cluster";
	cfg->listen_peer_urls = "http://localhost:2380";
	cfg->initial_advertise_peer_urls = "http://localhost:2380";
	cfg->advertise_client_urls = "http://localhost:2379";
	cfg->quota_backend_bytes = 0;
	cfg->max_request_bytes = 1536 * 1024;
	cfg->max_txn_ops = 128;
	cfg->snapshot_count = 100000;
	cfg->heartbeat_ms = 100;
	cfg->backend_batch_interval_ms = NODE_CHECKPOINT_INTERVAL_MS;
	cfg->checkpoint_commits = NODE_CHECKPOINT_COMMITS;
	cfg->commit_delay_ms = NODE_COMMIT_DELAY_MS;
	cfg->commit_max_events = NODE_COMMIT_MAX_EVENTS;
	cfg->commit_max_bytes = NODE_COMMIT_MAX_BYTES;
	cfg->map_release_bytes = NODE_MAP_RELEASE_BYTES;
	cfg->map_release_gap_ms = NODE_MAP_RELEASE_GAP_MS;
	cfg->election_ms = 1000;
	cfg->auto_compaction_mode = "periodic";
	cfg->auto_compaction_retention = "0";
	cfg->log_level = BLOG_INFO;
	cfg->auth_token_ttl_s = 300;
	cfg->strict_reconfig_check = true;
}

uint64_t node_now_ms(struct node *n)
{
	return uv_now(n->loop);
}

struct apply_header node_header(struct node *n)
{
	return (struct apply_header){
		.cluster_id = n->cluster_id,
		.member_id = n->member_id,
		.raft_term = n->raft.current_term,
	};
}

/* ------------------------------------------------------------ completion */

void node_complete(struct node *n, struct node_req *req, int err, uint8_t *resp, size_t len)
{
	(void)n;
	if (err != 0) {
		free(resp);
		resp = NULL;
		len = 0;
	}
	req->cb(req, err, resp, len);
}

void node_reply_msg(struct node *n, struct node_req *req, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	if (buf == NULL) {
		node_complete(n, req, -ENOMEM, NULL, 0);
		return;
	}
	protobuf_c_message_pack(m, buf);
	node_complete(n, req, 0, buf, len);
}

static int raft_err(struct node *n, int rv)
{
	if (n->closing || rv == RAFT_SHUTDOWN)
		return BOLLARD_ESTOPPED;
	switch (rv) {
	case RAFT_NOTLEADER:
		return BOLLARD_ENOT_LEADER;
	case RAFT_LEADERSHIPLOST:
		return BOLLARD_ELEADER_CHANGED;
	case RAFT_NOMEM:
		return -ENOMEM;
	case RAFT_TOOBIG:
		return BOLLARD_EREQUEST_TOO_LARGE;
	default:
		return BOLLARD_EINTERNAL;
	}
}

/* --------------------------------------------------------------- waiters */

static size_t waiter_bucket(const struct node *n, uint64_t id)
{
	return (size_t)(id * 0x9E3779B97F4A7C15ull >> 20) & (n->n_buckets - 1);
}

static void waiter_insert(struct node *n, struct node_req *req)
{
	if (n->n_waiting >= 2 * n->n_buckets) {
		size_t old = n->n_buckets;
		struct node_req **ob = n->waiters;
		struct node_req **nb = calloc(old * 2, sizeof(*nb));
		if (nb != NULL) {
			n->waiters = nb;
			n->n_buckets = old * 2;
			for (size_t i = 0; i < old; i++)
				for (struct node_req *r = ob[i], *next; r != NULL; r = next) {
					size_t b = waiter_bucket(n, r->seq_);
					next = r->next_;
					r->next_ = nb[b];
					nb[b] = r;
				}
			free(ob);
		}
	}
	size_t b = waiter_bucket(n, req->seq_);
	req->next_ = n->waiters[b];
	n->waiters[b] = req;
	n->n_waiting++;
}

/* The request waiting for id whose proposal went into raft entry index:
 * the index check makes a replayed entry (ids of an earlier run) or another
 * member's entry unable to complete the wrong request. A write forwarded to
 * the leader (prop_ NULL) is matched by id only, in entries that name this
 * member as its origin (fsm.c): ids start at a random number at each start
 * (node_create), so an entry of an earlier run matches none. */
static struct node_req *waiter_take(struct node *n, uint64_t id, const void *fwd,
                                    uint64_t index)
{
	struct node_req **pp = &n->waiters[waiter_bucket(n, id)];
	for (; *pp != NULL; pp = &(*pp)->next_) {
		struct node_req *r = *pp;
		const struct node_proposal *p = r->prop_;
		if (r->seq_ == id && (fwd ? p == NULL : p != NULL && p->apply.index == index)) {
			*pp = r->next_;
			r->next_ = NULL;
			n->n_waiting--;
			return r;
		}
	}
	return NULL;
}

struct node_req *node_waiter_take(struct node *n, uint64_t id, uint64_t index)
{
	return waiter_take(n, id, NULL, index);
}

void node_waiter_add_forwarded(struct node *n, struct node_req *req)
{
	req->prop_ = NULL;
	waiter_insert(n, req);
}

struct node_req *node_waiter_take_forwarded(struct node *n, uint64_t id)
{
	return waiter_take(n, id, n, 0);
}

void node_fail_waiters(struct node *n, int err)
{
	for (size_t i = 0; i < n->n_buckets; i++) {
		struct node_req *r = n->waiters[i];
		n->waiters[i] = NULL;
		while (r != NULL) {
			struct node_req *next = r->next_;
			n->n_waiting--;
			node_complete(n, r, err, NULL, 0);
			r = next;
		}
	}
}

/* ---------------------------------------------------------------- writes */

static void retry_cb(uv_timer_t *t);
static void maybe_close_raft(struct node *n);

void node_list_push(struct req_list *l, struct node_req *r)
{
	r->next_ = NULL;
	if (l->tail)
		l->tail->next_ = r;
	else
		l->head = r;
	l->tail = r;
	l->n++;
}

void node_list_splice(struct req_list *dst, struct req_list *src)
{
	if (src->head == NULL)
		return;
	if (dst->head == NULL) {
		*dst = *src;
	} else {
		dst->tail->next_ = src->head;
		dst->tail = src->tail;
		dst->n += src->n;
	}
	*src = (struct req_list){0};
}

void node_list_fail(struct node *n, struct req_list *l, int err)
{
	struct node_req *r = l->head;
	*l = (struct req_list){0};
	while (r != NULL) {
		struct node_req *next = r->next_;
		node_complete(n, r, err, NULL, 0);
		r = next;
	}
}

static void propose_cb(struct raft_apply *a, int status, void *result)
{
	struct node_proposal *p = a->data;
	struct node *n = p->n;
	(void)result;
	if (status != 0)
		metrics_add(&n->metrics.proposals_failed, 1);
	else if (p->n_fwd > 0)
		node_metrics_fwd_committed(n, p, node_clock_ns());
	blog(BLOG_DEBUG, "node", "entry %llu of %zu request(s): status %d",
	     (unsigned long long)p->apply.index, p->n_reqs, status);
	/* On success the FSM already took every waiter of this entry. What is
	 * left failed (leadership lost, shutdown) or, defensively, was never
	 * matched. */
	for (size_t i = 0; i < p->n_reqs; i++) {
		struct node_req *r = p->reqs[i] ? /* NULL: a follower's, answered at append */
			node_waiter_take(n, p->reqs[i]->seq_, p->apply.index) : NULL;
		if (r != NULL)
			node_complete(n, r, status ? raft_err(n, status) : BOLLARD_EINTERNAL, NULL, 0);
	}
	free(p);
	n->in_flight--;
}

void node_park_writes(struct node *n, struct req_list *l)
{
	if (l->head == NULL)
		return;
	if (n->parked_head == NULL) {
		n->parked_head = l->head;
		n->parked_since_ms = node_now_ms(n);
		uv_timer_start(&n->retry_timer, retry_cb, n->cfg.heartbeat_ms, n->cfg.heartbeat_ms);
	} else {
		n->parked_tail->next_ = l->head;
	}
	n->parked_tail = l->tail;
	*l = (struct req_list){0};
}

void node_request_fill(Bollard__Request *rq, struct node_req *r)
{
	void *m = (void *)r->msg; /* packed only, never modified */
	rq->auth_user = (char *)r->auth_user;
	rq->auth_revision = r->auth_rev;
	switch (r->op) {
	case NODE_PUT:
		rq->op_case = BOLLARD__REQUEST__OP_PUT;
		rq->put = m;
		break;
	case NODE_DELETE_RANGE:
		rq->op_case = BOLLARD__REQUEST__OP_DELETE_RANGE;
		rq->delete_range = m;
		break;
	case NODE_TXN:
		rq->op_case = BOLLARD__REQUEST__OP_TXN;
		rq->txn = m;
		break;
	case NODE_COMPACT:
		rq->op_case = BOLLARD__REQUEST__OP_COMPACTION;
		rq->compaction = m;
		break;
	case NODE_LEASE_GRANT:
		rq->op_case = BOLLARD__REQUEST__OP_LEASE_GRANT;
		rq->lease_grant = m;
		break;
	case NODE_LEASE_REVOKE:
		rq->op_case = BOLLARD__REQUEST__OP_LEASE_REVOKE;
		rq->lease_revoke = m;
		break;
	case NODE_LEASE_CHECKPOINT:
		rq->op_case = BOLLARD__REQUEST__OP_LEASE_CHECKPOINT;
		rq->lease_checkpoint = m;
		break;
	case NODE_MEMBER_ATTR:
		rq->op_case = BOLLARD__REQUEST__OP_MEMBER_ATTRIBUTES;
		rq->member_attributes = m;
		break;
	case NODE_AUTH: /* a bollard.AuthRequest (auth.c) */
		rq->op_case = BOLLARD__REQUEST__OP_AUTH;
		rq->auth = m;
		break;
	case NODE_MEMBER_INFO:
		rq->op_case = BOLLARD__REQUEST__OP_MEMBER_INFO;
		rq->member_info = m;
		break;
	case NODE_CLUSTER_INFO:
		rq->op_case = BOLLARD__REQUEST__OP_CLUSTER_INFO;
		rq->cluster_info = m;
		break;
	default:
		rq->op_case = BOLLARD__REQUEST__OP_ALARM;
		rq->alarm = m;
		break;
	}
}

/* Propose the first count requests of l as one raft entry. */
static void propose_one(struct node *n, struct req_list *l, size_t count)
{
	struct req_list mine = {0};
	struct node_proposal *p;
	Bollard__Request *rq;
	Bollard__Request **rqp;
	Bollard__Batch batch = BOLLARD__BATCH__INIT;
	struct raft_buffer buf;
	int rc;

	for (size_t i = 0; i < count; i++) {
		struct node_req *r = l->head;
		l->head = r->next_;
		l->n--;
		node_list_push(&mine, r);
	}
	if (l->head == NULL)
		l->tail = NULL;

	p = malloc(sizeof(*p) + count * sizeof(p->reqs[0]));
	rq = calloc(count, sizeof(*rq));
	rqp = calloc(count, sizeof(*rqp));
	if (p == NULL || rq == NULL || rqp == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	p->n = n;
	p->n_fwd = 0;
	p->n_reqs = count;
	p->apply.data = p;
	size_t i = 0;
	for (struct node_req *r = mine.head; r != NULL; r = r->next_, i++) {
		bollard__request__init(&rq[i]);
		/* a follower's request keeps its id: the follower waits for it */
		if ((rq[i].origin = node_forward_origin(r)) == 0)
			r->seq_ = n->next_id++;
		else
			p->n_fwd++;
		rq[i].id = r->seq_;
		node_request_fill(&rq[i], r);
		rqp[i] = &rq[i];
		p->reqs[i] = r;
	}
	batch.n_requests = count;
	batch.requests = rqp;
	rc = node_entry_encode(&batch, &buf);
	free(rq);
	free(rqp);
	rq = NULL;
	rqp = NULL;
	if (rc != 0)
		goto fail;
	p->t_ns = node_clock_ns();
	n->n_proposing = count;
	rc = raft_apply(&n->raft, &p->apply, &buf, 1, propose_cb);
	n->n_proposing = 0;
	if (rc != 0) {
		metrics_add(&n->metrics.proposals_failed, 1);
		raft_free(buf.base);
		if (rc == RAFT_NOTLEADER && !n->closing) {
			free(p);
			node_park_writes(n, &mine);
			return;
		}
		blog(BLOG_WARN, "node", "raft_apply: %s", raft_errmsg(&n->raft));
		rc = raft_err(n, rc);
		goto fail;
	}
	n->in_flight++;
	n->stats.proposals++;
	n->stats.proposed_requests += count;
	/* Ours wait, taken out again by the FSM (fsm.c) or by propose_cb. A
	 * follower's request is answered now (its follower waits for its own
	 * apply). */
	for (size_t j = 0; j < count; j++) {
		struct node_req *r = p->reqs[j];
		if (node_forward_origin(r) == 0) {
			r->prop_ = p;
			waiter_insert(n, r);
			continue;
		}
		node_metrics_fwd_proposed(n, r, p);
		p->reqs[j] = NULL; /* gone once answered */
		node_forward_appended(n, r, p->apply.index);
	}
	return;
fail:
	free(p);
	free(rq);
	free(rqp);
	node_list_fail(n, &mine, rc);
}

/* A leader proposes no entry while its own log write is in flight: the
 * writes arriving meanwhile (its clients' and the followers' batches) wait
 * in n->wnext and go as one entry when it ends (node_log_written, from the
 * write's completion), as etcd's leader batches what comes during its
 * fsync. raft 0.15's libuv I/O would not start their write before that one
 * ended anyway, but it takes an entry (and, with followers, a round of
 * AppendEntries) per raft_apply: this saves entries, messages, and the FSM
 * and follower work per entry, not durability or order; a single member
 * makes one entry per disk write. A lone write finds no write in flight and
 * goes at once. With followers, not once that write is older than
 * NODE_LOG_BUSY_MAX_NS (the shared disk stalls now and then): entries go to
 * them meanwhile (hold_timer), so they have stored them by the time the
 * leader's write ends (raft 0.15 commits nothing past the leader's own log:
 * replicationQuorum at its last_stored, changed upstream in 0.17.1). A
 * single member would gain nothing by proposing early. */
static uint64_t hold_left_ns(struct node *n)
{
	uint64_t age;
	if (n->appends_in_flight == 0 || n->closing || raft_state(&n->raft) != RAFT_LEADER)
		return 0;
	if (n->raft.configuration.n == 1)
		return UINT64_MAX;
	age = node_clock_ns() - n->append_since_ns;
	return age < NODE_LOG_BUSY_MAX_NS ? NODE_LOG_BUSY_MAX_NS - age : 0;
}

bool node_log_busy(struct node *n)
{
	return hold_left_ns(n) > 0;
}

static void hold_cb(uv_timer_t *t);

/* Writes held for the log write go, unless it is still busy; then the
 * hold timer fires when the limit is reached. */
static void propose_held(struct node *n)
{
	struct req_list l = {0};
	uint64_t left;
	if (n->wnext.head == NULL || n->closing || raft_state(&n->raft) != RAFT_LEADER)
		return;
	if ((left = hold_left_ns(n)) > 0) {
		if (left != UINT64_MAX && !uv_is_active((uv_handle_t *)&n->hold_timer))
			uv_timer_start(&n->hold_timer, hold_cb, left / 1000000u + 1, 0);
		return;
	}
	uv_timer_stop(&n->hold_timer);
	l = n->wnext;
	n->wnext = (struct req_list){0};
	node_propose(n, &l);
}

static void hold_cb(uv_timer_t *t)
{
	propose_held(t->data);
}

void node_log_written(struct node *n)
{
	propose_held(n);
}

void node_propose(struct node *n, struct req_list *l)
{
	if (l->head == NULL)
		return;
	if (raft_state(&n->raft) != RAFT_LEADER) {
		/* To the leader (forward.c), or wait for one; a follower's writes
		 * held here while this member led go back to it. */
		node_forward_refuse(n, l);
		if (!node_forward_writes(n, l))
			node_park_writes(n, l);
		return;
	}
	node_list_splice(&n->wnext, l); /* writes already waiting go first */
	if (node_log_busy(n)) {
		propose_held(n); /* arms the hold timer */
		return;
	}
	uv_timer_stop(&n->hold_timer);
	*l = n->wnext;
	n->wnext = (struct req_list){0};
	while (l->head != NULL) {
		size_t count = 0, bytes = 0;
		for (struct node_req *r = l->head; r != NULL; r = r->next_) {
			size_t sz = protobuf_c_message_get_packed_size(r->msg) + 16;
			if (count > 0 && bytes + sz > NODE_MAX_ENTRY_BYTES)
				break;
			bytes += sz;
			count++;
		}
		propose_one(n, l, count);
	}
}

static void retry_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	struct req_list l = {n->parked_head, n->parked_tail, 0};
	struct req_list r = {n->rparked_head, n->rparked_tail, 0};
	uint64_t timeout = node_request_timeout_ms(n);
	bool expired = node_now_ms(n) - n->parked_since_ms >= timeout;

	if (n->closing) { /* the drain before raft_close took too long */
		blog(BLOG_WARN, "node", "closing with %zu raft entries still being written%s",
		     n->in_flight, n->raft.snapshot.put.data ? " and a snapshot being stored" : "");
		uv_timer_stop(t);
		n->drain_expired = true;
		return; /* the check handle closes raft */
	}

	if (l.head != NULL && raft_state(&n->raft) != RAFT_LEADER) {
		/* Followers' writes parked while this member led (raft took no
		 * proposal during a leadership transfer) go back to them now,
		 * leader known or not: they are in no log, and their followers
		 * send them to the next leader (ENOT_LEADER). */
		node_forward_refuse(n, &l);
		n->parked_head = l.head;
		n->parked_tail = l.tail;
	}
	if (l.head == NULL && (r.head == NULL || n->barrier_in_flight)) {
		if (r.head == NULL)
			uv_timer_stop(t);
		return;
	}
	if (raft_state(&n->raft) == RAFT_LEADER) {
		n->parked_head = n->parked_tail = NULL;
		node_propose(n, &l);
		node_start_barrier(n);
	} else if (n->cluster.n > 1 && node_leader_target(n) != NULL) {
		n->parked_head = n->parked_tail = NULL;
		n->rparked_head = n->rparked_tail = NULL;
		if (!n->barrier_in_flight)
			node_forward_reads(n, &r);
		node_propose(n, &l);
		if (r.head) { n->rparked_head = r.head; n->rparked_tail = r.tail; }
	} else if (expired) {
		n->parked_head = n->parked_tail = NULL;
		n->rparked_head = n->rparked_tail = NULL;
		uv_timer_stop(t);
		/* no leader all along: etcd's raft took no proposal, and etcd answers
		 * the writes with the bare context error */
		node_list_fail(n, &l, BOLLARD_ECTX_DEADLINE);
		node_list_fail(n, &r, BOLLARD_ETIMEOUT);
	}
}

static void internal_alarm_cb(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct node *n = req->data;
	(void)len;
	free(resp);
	if (err != 0) {
		blog(BLOG_WARN, "node", "cannot raise the NOSPACE alarm: %s", bollard_strerror(err));
		n->nospace_proposed = false;
	} else {
		blog(BLOG_WARN, "node", "database space exceeded: NOSPACE alarm raised");
	}
}

/* etcd's quota check (etcdserver/quota.go): refuse a write that would take
 * the database past --quota-backend-bytes, and raise the NOSPACE alarm. */
static int check_quota(struct node *n, struct node_req *req, struct req_list *writes)
{
	int64_t cost = 0;
	if (n->cfg.quota_backend_bytes <= 0)
		return 0;
	if (req->op == NODE_PUT) {
		const Etcdserverpb__PutRequest *p = (const void *)req->msg;
		cost = 256 + (int64_t)p->key.len + (int64_t)p->value.len;
	} else if (req->op == NODE_TXN) {
		cost = (int64_t)protobuf_c_message_get_packed_size(req->msg);
	} else {
		return 0;
	}
	/* the open write txn's growth is not in the file's size yet: its
	 * entries' bytes stand for it */
	if (node_db_size(n) + (n->wtxn ? (int64_t)n->wtxn_bytes : 0) + cost <
	    n->cfg.quota_backend_bytes)
		return 0;
	if (!n->nospace_proposed) {
		n->nospace_proposed = true;
		etcdserverpb__alarm_request__init(&n->alarm_msg);
		n->alarm_msg.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE;
		n->alarm_msg.memberid = n->member_id;
		n->alarm_msg.alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
		n->alarm_req.data = n;
		n->alarm_req.op = NODE_ALARM;
		n->alarm_req.msg = &n->alarm_msg.base;
		n->alarm_req.cb = internal_alarm_cb;
		node_list_push(writes, &n->alarm_req);
	}
	return BOLLARD_ENO_SPACE;
}

static int check_write(struct node *n, struct node_req *req, struct req_list *writes)
{
	int rc = 0;
	switch (req->op) {
	case NODE_PUT:
		rc = validate_put((const void *)req->msg);
		break;
	case NODE_DELETE_RANGE:
		rc = validate_delete_range((const void *)req->msg);
		break;
	case NODE_TXN:
		rc = validate_txn((const void *)req->msg, n->cfg.max_txn_ops);
		break;
	case NODE_ALARM: {
		const Etcdserverpb__AlarmRequest *a = (const void *)req->msg;
		if (a->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE)
			n->nospace_proposed = false; /* may be raised again */
		break;
	}
	default:
		break;
	}
	if (rc == 0)
		rc = check_quota(n, req, writes);
	return rc;
}

/* ----------------------------------------------------------------- reads */

/* Linearizable reads. Once this leader has applied an entry of its own
 * (the barrier below), a read transaction begun after the open write txn is
 * committed (here, first) sees every acknowledged write, so it is
 * linearizable on a single member. With several members this is the place for a per-batch read
 * barrier (one shared raft_barrier, or a ReadIndex-like leader check). */
void node_serve_reads_now(struct node *n, struct req_list *l)
{
	struct apply_header hdr = node_header(n);
	MDB_txn *txn;
	int rc;

	if (l->head == NULL)
		return;
	node_commit(n); /* what was answered, a read sees */
	if ((rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn)) != 0) {
		node_list_fail(n, l, rc);
		return;
	}
	for (struct node_req *r = l->head, *next; r != NULL; r = next) {
		uint8_t *resp = NULL;
		size_t len = 0;
		next = r->next_;
		if (r->op == NODE_READ_INDEX) {
			Bollard__ReadIndexResponse ri = BOLLARD__READ_INDEX_RESPONSE__INIT;
			ri.index = n->applied_index;
			len = bollard__read_index_response__get_packed_size(&ri);
			resp = malloc(len ? len : 1);
			if (resp != NULL)
				bollard__read_index_response__pack(&ri, resp);
			node_complete(n, r, resp ? 0 : -ENOMEM, resp, len);
			node_commit_nudge(n); /* the follower waits for the barrier's commit */
			continue;
		}
		rc = node_range_serve(n, txn, &hdr, r, &resp, &len);
		node_complete(n, r, rc, resp, len);
	}
	mdb_txn_abort(txn);
	*l = (struct req_list){0};
}

static void barrier_cb(struct raft_barrier *b, int status)
{
	struct node *n = b->data;
	struct req_list l = {n->rparked_head, n->rparked_tail, 0};

	n->barrier_in_flight = false;
	if (n->closing) {
		n->rparked_head = n->rparked_tail = NULL;
		node_list_fail(n, &l, BOLLARD_ESTOPPED);
		return;
	}
	if (status != 0) {
		n->rparked_head = n->rparked_tail = NULL;
		node_list_fail(n, &l, raft_err(n, status));
		return;
	}
	n->read_ready = true;
	n->barrier_term = n->raft.current_term;
	n->rparked_head = n->rparked_tail = NULL;
	node_flush(n); /* the entries before the barrier are applied, not yet committed */
	node_serve_reads_now(n, &l);
	if (n->rnext.head != NULL) { /* reads that came during this round: the next */
		n->rparked_head = n->rnext.head;
		n->rparked_tail = n->rnext.tail;
		n->rnext = (struct req_list){0};
		node_start_barrier(n);
	}
}

void node_start_barrier(struct node *n)
{
	int rc;
	if (n->closing || n->barrier_in_flight || (n->read_ready && n->cluster.n == 1) ||
	    raft_state(&n->raft) != RAFT_LEADER)
		return;
	n->barrier.data = n;
	if ((rc = raft_barrier(&n->raft, &n->barrier, barrier_cb)) != 0) {
		blog(BLOG_WARN, "node", "raft_barrier: %s", raft_errmsg(&n->raft));
		return; /* retried by the retry timer */
	}
	n->barrier_in_flight = true;
}

void node_serve_reads(struct node *n, struct req_list *l)
{
	if (l->head == NULL)
		return;
	if (n->cluster.n > 1) {
		/* Every batch of reads needs its own round: a barrier entry on
		 * the leader, a ReadIndex call to it on a follower. Reads that
		 * come while a round is out wait for the next. */
		if (raft_state(&n->raft) != RAFT_LEADER && node_leader_target(n) != NULL) {
			node_forward_reads(n, l);
			return;
		}
		if (n->barrier_in_flight) {
			if (n->rnext.head == NULL)
				n->rnext = *l;
			else {
				n->rnext.tail->next_ = l->head;
				n->rnext.tail = l->tail;
			}
			*l = (struct req_list){0};
			return;
		}
	} else if (n->read_ready) {
		node_serve_reads_now(n, l);
		return;
	}
	node_park_reads(n, l);
}

/* Until a barrier of this leadership is applied, or a leader is known; the
 * retry timer fails them after the request timeout. */
void node_park_reads(struct node *n, struct req_list *l)
{
	if (l->head == NULL)
		return;
	if (n->rparked_head == NULL) {
		n->rparked_head = l->head;
		n->parked_since_ms = node_now_ms(n);
		uv_timer_start(&n->retry_timer, retry_cb, n->cfg.heartbeat_ms, n->cfg.heartbeat_ms);
	} else {
		n->rparked_tail->next_ = l->head;
	}
	n->rparked_tail = l->tail;
	*l = (struct req_list){0};
	node_start_barrier(n);
}

uint64_t node_request_timeout_ms(struct node *n)
{
	return 5000 + 2 * (uint64_t)n->cfg.election_ms; /* etcd's request timeout */
}

bool node_req_expired(struct node *n, const struct node_req *r)
{
	return node_now_ms(n) - r->seq_ >= node_request_timeout_ms(n) ||
	       (r->deadline_ns != 0 && node_clock_ns() >= r->deadline_ns);
}

/* -------------------------------------------------------------- dispatch */

/* A client's write: proposed to raft (node_propose) once check_write
 * passes. */
static bool is_write(enum node_op op)
{
	switch (op) {
	case NODE_PUT:
	case NODE_DELETE_RANGE:
	case NODE_TXN:
	case NODE_COMPACT:
	case NODE_ALARM:
	case NODE_LEASE_GRANT:
	case NODE_LEASE_REVOKE:
	case NODE_LEASE_CHECKPOINT:
	case NODE_MEMBER_ATTR:
	case NODE_MEMBER_INFO:
	case NODE_CLUSTER_INFO:
		return true;
	default:
		return false;
	}
}

/* Anything but a write reads LMDB (or state a read then meets), so it
 * must see every write answered before (node_flush_or_keep): the loop
 * commits before it. Not needed for a follower's writes or the answers to
 * this member's calls to the leader (forward.c commits where they lead to
 * a read); a peer's probe, 8 a second, reads only member records, which
 * the txn holds only until the end of the phase that applied them. */
static bool needs_commit(const struct node *n, enum node_op op)
{
	switch (op) {
	case NODE_PROPOSE_BATCH:
	case NODE_FORWARD_DONE:
		return false;
	case NODE_MEMBER_STATUS:
		return n->wtxn_commit_now;
	default:
		return true;
	}
}

void node_dispatch(struct node *n, struct node_req *r)
{
	struct req_list writes = {0}, reads = {0}, sreads = {0};

	for (struct node_req *next; r != NULL; r = next) {
		int rc;
		next = r->next_;
		if (n->refusing && r->op != NODE_WATCH_CLOSE && r->op != NODE_LEADER_RELEASE) {
			node_complete(n, r, BOLLARD_ESTOPPED, NULL, 0);
			continue;
		}
		if (is_write(r->op)) {
			if ((rc = check_write(n, r, &writes)) != 0)
				node_complete(n, r, rc, NULL, 0);
			else
				node_list_push(&writes, r);
			continue;
		}
		if (needs_commit(n, r->op))
			node_commit(n);
		switch (r->op) {
		case NODE_AUTH:
			if (r->msg->descriptor == &bollard__auth_request__descriptor) {
				node_list_push(&writes, r); /* forwarded by another member */
				break;
			}
			node_serve_auth(n, r);
			break;
		case NODE_AUTH_WAIT:
			node_serve_auth_wait(n, r);
			break;
		case NODE_JOIN_WAIT:
			node_serve_join_wait(n, r);
			break;
		case NODE_RANGE:
			if (((const Etcdserverpb__RangeRequest *)r->msg)->serializable) {
				node_list_push(&sreads, r); /* sent here by unflushed */
				break;
			}
			/* fall through */
		case NODE_READ_INDEX:
			r->seq_ = node_now_ms(n); /* reads: when it came (forward.c) */
			node_list_push(&reads, r);
			break;
		case NODE_PROPOSE_BATCH:
			next = node_serve_propose_batch(n, r, next);
			break;
		case NODE_FORWARD_DONE:
			node_forward_handle(n, r);
			break;
		case NODE_STATUS:
			node_serve_status(n, r);
			break;
		case NODE_HASH:
			node_serve_hash(n, r);
			break;
		case NODE_HASH_KV:
			node_serve_hash_kv(n, r);
			break;
		case NODE_DEFRAGMENT:
			node_serve_defragment(n, r);
			break;
		case NODE_MEMBER_LIST:
			node_serve_member_list(n, r);
			break;
		case NODE_MOVE_LEADER:
			node_serve_move_leader(n, r);
			break;
		case NODE_MEMBER_ADD:
		case NODE_MEMBER_REMOVE:
		case NODE_MEMBER_PROMOTE:
		case NODE_MEMBER_UPDATE:
			r->seq_ = node_now_ms(n); /* when it came (forward.c, members.c) */
			node_serve_member_change(n, r);
			break;
		case NODE_INT_MEMBER:
			node_serve_member_call(n, r);
			break;
		case NODE_MEMBER_STATUS:
			node_serve_member_status(n, r);
			break;
		case NODE_WATCH:
		case NODE_WATCH_CLOSE:
			node_watch_dispatch(n, r);
			break;
		case NODE_LEADER_HOLD:
		case NODE_LEADER_RELEASE:
			node_leader_dispatch(n, r);
			break;
		case NODE_LEASE_KEEPALIVE:
		case NODE_LEASE_TTL:
		case NODE_LEASE_LEASES:
		case NODE_INT_LEASE_KEEPALIVE:
		case NODE_INT_LEASE_TTL:
		case NODE_INT_LEASE_LEASES:
			r->seq_ = node_now_ms(n); /* when it came (forward.c) */
			node_serve_lease(n, r);
			break;
		default:
			node_complete(n, r, BOLLARD_EBAD_REQUEST, NULL, 0);
			break;
		}
	}
	node_serve_reads_now(n, &sreads);
	node_serve_reads(n, &reads);
	node_propose(n, &writes);
}

static void wake_cb(uv_poll_t *h, int status, int events)
{
	struct node *n = h->data;
	struct node_req *head;
	uint64_t count;

	(void)status;
	(void)events;
	/* Reset first: a request queued after this read wakes the loop again. */
	if (read(n->wake_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		blog(BLOG_WARN, "node", "wake-up read: %s", strerror(errno));
	pthread_mutex_lock(&n->qlock);
	head = n->q_head;
	n->q_head = n->q_tail = NULL;
	pthread_mutex_unlock(&n->qlock);
	node_dispatch(n, head);
}

bool node_submit_quiet(struct node *n, struct node_req *req)
{
	req->next_ = NULL;
	req->t_ns_ = node_clock_ns();
	pthread_mutex_lock(&n->qlock);
	if (n->stopped) {
		pthread_mutex_unlock(&n->qlock);
		req->cb(req, BOLLARD_ESTOPPED, NULL, 0);
		return false;
	}
	bool was_empty = n->q_head == NULL;
	if (n->q_tail)
		n->q_tail->next_ = req;
	else
		n->q_head = req;
	n->q_tail = req;
	pthread_mutex_unlock(&n->qlock);
	/* A list that was not empty is drained by a wake-up already due (or
	 * owed by a node_submit_quiet caller). */
	return was_empty;
}

void node_wake(struct node *n)
{
	/* The descriptor stays open until node_destroy, so a write racing
	 * the close finds no one and no other file. */
	uint64_t one = 1;
	if (write(n->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		blog(BLOG_WARN, "node", "wake-up write: %s", strerror(errno));
}

void node_submit(struct node *n, struct node_req *req)
{
	if (node_submit_quiet(n, req))
		node_wake(n);
}

/* syncwrite.c: a single member's log write is lone when it holds at most
 * one request and no other waits to be answered (the loop has nothing to
 * do while it is written). */
static bool write_lone(void *arg)
{
	struct node *n = arg;
	return n->raft.configuration.n == 1 && n->n_waiting + n->n_proposing <= 1 && !n->closing;
}

/* glibc's malloc_trim sets up glibc's allocator on its first use without a
 * lock. Where malloc is another's (ASan's, in our test builds) nothing did
 * before, and members of one process (tests/node's clusters) that took
 * their first snapshots at once raced in it: one walked an arena's bins
 * before they were set (SEGV in mtrim, 1 run in about 40 of node-forward's
 * write_brought_by_a_snapshot_times_out). The first call is made once. */
static pthread_once_t trim_once = PTHREAD_ONCE_INIT;

static void trim_first(void)
{
	malloc_trim(0);
}

/* raft's tick timer runs the loop at least every heartbeat, so a quiet
 * loop still gets here. */
#define TRIM_QUIET_MS 200

static void trim_when_quiet(struct node *n)
{
	uint64_t now = uv_now(n->loop);

	if (n->stats.applied_entries != n->trim_seen_applied) {
		n->trim_seen_applied = n->stats.applied_entries;
		n->trim_quiet_ms = now;
		return;
	}
	if (now - n->trim_quiet_ms < TRIM_QUIET_MS)
		return;
	n->trim_wanted = false;
	pthread_once(&trim_once, trim_first);
	malloc_trim(0);
	n->stats.heap_trims++;
}

/* End of every loop phase that may have applied entries: commit (or keep
 * the txn open: node_flush_or_keep), answer, then write a kept lone log
 * write (syncwrite.c). Both handles, so
 * nothing waits across a poll. */
static void flush_cb(struct node *n)
{
	if (!n->syncwrite_on) {
		syncwrite_attach(write_lone, n);
		n->syncwrite_on = true;
		n->loop_thread = pthread_self();
	}
	node_flush_or_keep(n);
	node_env_release_tick(n);
	node_forward_tick(n);
	if (n->closing)
		maybe_close_raft(n); /* here: never from inside a raft callback */
	/* A snapshot being copied, sent or received: its pages (spool.c) and
	 * those the copy reads through LMDB's map out of our RSS every 100 ms
	 * (they stay in the page cache). */
	if ((n->snap_sends > 0 || node_spool_count() > 0) &&
	    uv_now(n->loop) - n->spool_trimmed_ms >= 100) {
		n->spool_trimmed_ms = uv_now(n->loop);
		node_spool_trim();
		if (n->snap_sends > 0)
			node_env_release_pages(n);
	}
	if (n->trim_wanted && !n->snapshot_in_flight)
		trim_when_quiet(n);
	__atomic_store_n(&n->term_cache, n->raft.current_term, __ATOMIC_RELAXED);
	/* After the commit above: what made read_ready true is in LMDB. */
	__atomic_store_n(&n->reads_direct, n->read_ready && n->cluster.n == 1 && !n->refusing,
	                 __ATOMIC_RELEASE);
	node_metrics_publish(n);
	syncwrite_run();
}

static void prepare_cb(uv_prepare_t *h)
{
	flush_cb(h->data);
}

static void check_cb(uv_check_t *h)
{
	flush_cb(h->data);
}

/* ------------------------------------------------------------- lifecycle */

/* Resolve host to a numeric IPv4 address: raft's libuv transport only
 * parses dotted quads. */
int node_raft_address(const char *url, char *out, size_t len, char *errbuf, size_t errlen)
{
	char host[256], port[16];
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
	struct in_addr a;

	if (ids_url_host_port(url, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(errbuf, errlen, "bad peer URL %s", url);
		return -EINVAL;
	}
	if (inet_pton(AF_INET, host, &a) != 1) {
		int rc = getaddrinfo(host, NULL, &hints, &ai);
		if (rc != 0) {
			snprintf(errbuf, errlen, "cannot resolve %s (peer URL %s): %s (raft needs IPv4)",
			         host, url, gai_strerror(rc));
			return -EINVAL;
		}
		a = ((struct sockaddr_in *)ai->ai_addr)->sin_addr;
		freeaddrinfo(ai);
		inet_ntop(AF_INET, &a, host, sizeof(host));
	}
	snprintf(out, len, "%s:%s", host, port);
	return 0;
}

static int setup_identity(struct node *n, char *errbuf, size_t errlen)
{
	struct node_config *c = &n->cfg;
	struct url_list apurls;
	int rc;

	if (c->initial_cluster == NULL || c->initial_cluster[0] == '\0') {
		/* etcd: "<name>=<each initial advertise peer URL>" */
		size_t len = 1;
		const char *p = c->initial_advertise_peer_urls;
		for (const char *q = p;; q++) {
			len += strlen(c->name) + 2;
			if (!(q = strchr(q, ',')))
				break;
		}
		len += strlen(p);
		n->owned_initial_cluster = malloc(len);
		if (n->owned_initial_cluster == NULL)
			return -ENOMEM;
		char *o = n->owned_initial_cluster;
		*o = '\0';
		for (;;) {
			size_t l = strcspn(p, ",");
			o += sprintf(o, "%s%s=%.*s", o == n->owned_initial_cluster ? "" : ",", c->name,
			             (int)l, p);
			if (p[l] == '\0')
				break;
			p += l + 1;
		}
		c->initial_cluster = n->owned_initial_cluster;
	}
	if ((rc = ids_parse_initial_cluster(c->initial_cluster, c->initial_cluster_token,
	                                    &n->cluster, errbuf, errlen)) < 0)
		return rc;
	n->self = initial_cluster_find(&n->cluster, c->name);
	if (n->self == NULL) {
		snprintf(errbuf, errlen,
		         "couldn't find local name \"%s\" in the initial cluster configuration", c->name);
		return -EINVAL;
	}
	if ((rc = ids_parse_urls(c->initial_advertise_peer_urls, &apurls, errbuf, errlen)) < 0)
		return rc;
	bool same = apurls.n == n->self->peer_urls.n;
	for (size_t i = 0; same && i < apurls.n; i++)
		same = strcmp(apurls.v[i], n->self->peer_urls.v[i]) == 0;
	url_list_free(&apurls);
	if (!same) {
		snprintf(errbuf, errlen,
		         "--initial-cluster has %s but missing from --initial-advertise-peer-urls=%s",
		         c->name, c->initial_advertise_peer_urls);
		return -EINVAL;
	}
	n->member_id = n->raft_id = n->self->id;
	n->cluster_id = n->cluster.cluster_id;
	if ((rc = ids_parse_urls(c->advertise_client_urls, &n->client_urls, errbuf, errlen)) < 0)
		return rc;
	if ((rc = node_raft_address(n->self->peer_urls.v[0], n->raft_addr, sizeof(n->raft_addr), errbuf,
	                       errlen)) < 0)
		return rc;
	/* the addresses to listen on: each of --listen-peer-urls, as etcd */
	if ((rc = ids_parse_urls(c->listen_peer_urls, &n->bind_addrs, errbuf, errlen)) < 0)
		return rc;
	if (n->bind_addrs.n > PEER_PORT_MAX_LISTEN) {
		snprintf(errbuf, errlen, "--listen-peer-urls: at most %d URLs", PEER_PORT_MAX_LISTEN);
		return -EINVAL;
	}
	for (size_t i = 0; i < n->bind_addrs.n; i++) {
		char addr[300];
		if ((rc = node_raft_address(n->bind_addrs.v[i], addr, sizeof(addr), errbuf, errlen)) < 0)
			return rc;
		free(n->bind_addrs.v[i]);
		if ((n->bind_addrs.v[i] = strdup(addr)) == NULL)
			return -ENOMEM;
	}
	return 0;
}

static int check_config(struct node *n, char *errbuf, size_t errlen)
{
	struct node_config *c = &n->cfg;
	if (c->heartbeat_ms == 0 || 5 * c->heartbeat_ms > c->election_ms) {
		snprintf(errbuf, errlen,
		         "--election-timeout[%ums] should be at least as 5 times as "
		         "--heartbeat-interval[%ums]",
		         c->election_ms, c->heartbeat_ms);
		return -EINVAL;
	}
	if (c->election_ms > 50000) {
		snprintf(errbuf, errlen, "--election-timeout[%ums] is too long, and should be set less "
		         "than 50 seconds", c->election_ms);
		return -EINVAL;
	}
	if (c->snapshot_count <= 0) {
		snprintf(errbuf, errlen, "--snapshot-count must be positive");
		return -EINVAL;
	}
	if (strcmp(c->initial_cluster_state, "new") != 0 &&
	    strcmp(c->initial_cluster_state, "existing") != 0) {
		snprintf(errbuf, errlen, "invalid value \"%s\" for --initial-cluster-state",
		         c->initial_cluster_state);
		return -EINVAL;
	}
	return 0;
}

static void apply_defaults(struct node *n)
{
	struct node_config d, *c = &n->cfg;
	node_config_init(&d);
	if (!c->name || !*c->name) c->name = d.name;
	if (!c->initial_cluster_state || !*c->initial_cluster_state) c->initial_cluster_state = d.initial_cluster_state;
	if (!c->initial_cluster_token || !*c->initial_cluster_token) c->initial_cluster_token = d.initial_cluster_token;
	if (!c->listen_peer_urls || !*c->listen_peer_urls) c->listen_peer_urls = d.listen_peer_urls;
	if (!c->initial_advertise_peer_urls || !*c->initial_advertise_peer_urls)
		c->initial_advertise_peer_urls = d.initial_advertise_peer_urls;
	if (!c->advertise_client_urls || !*c->advertise_client_urls)
		c->advertise_client_urls = d.advertise_client_urls;
	if (!c->auto_compaction_mode || !*c->auto_compaction_mode) c->auto_compaction_mode = d.auto_compaction_mode;
	if (!c->auto_compaction_retention || !*c->auto_compaction_retention)
		c->auto_compaction_retention = d.auto_compaction_retention;
	if (c->quota_backend_bytes == 0)
		c->quota_backend_bytes = 2ll << 30; /* etcd's DefaultQuotaBytes */
	if (c->max_request_bytes <= 0) c->max_request_bytes = d.max_request_bytes;
	if (c->max_txn_ops <= 0) c->max_txn_ops = d.max_txn_ops;
	if (c->snapshot_count == 0) c->snapshot_count = d.snapshot_count;
	if (c->heartbeat_ms == 0) c->heartbeat_ms = d.heartbeat_ms;
	if (c->backend_batch_interval_ms == 0) c->backend_batch_interval_ms = d.backend_batch_interval_ms;
	if (c->checkpoint_commits == 0) c->checkpoint_commits = d.checkpoint_commits;
	if (c->map_release_bytes == 0) c->map_release_bytes = d.map_release_bytes;
	if (c->map_release_gap_ms == 0) c->map_release_gap_ms = d.map_release_gap_ms;
	if (c->election_ms == 0) c->election_ms = d.election_ms;
}

static int setup_paths(struct node *n, char *errbuf, size_t errlen)
{
	struct node_config *c = &n->cfg;
	if (c->data_dir == NULL || c->data_dir[0] == '\0') {
		if (asprintf(&n->owned_data_dir, "%s.etcd", c->name) < 0)
			return -ENOMEM;
		c->data_dir = n->owned_data_dir;
	}
	if ((size_t)snprintf(n->member_dir, sizeof(n->member_dir), "%s/member", c->data_dir) >=
	        sizeof(n->member_dir) - 16) {
		snprintf(errbuf, errlen, "--data-dir is too long");
		return -ENAMETOOLONG;
	}
	if (snprintf(n->raft_dir, sizeof(n->raft_dir), "%s/raft", n->member_dir) < 0 ||
	    snprintf(n->db_dir, sizeof(n->db_dir), "%s/db", n->member_dir) < 0)
		return -EINVAL;
	int rc = node_mkdirs(n->raft_dir, errbuf, errlen);
	return rc ? rc : node_mkdirs(n->db_dir, errbuf, errlen);
}

static bool raft_dir_has_state(const struct node *n)
{
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s/metadata1", n->raft_dir);
	if (access(p, F_OK) == 0)
		return true;
	snprintf(p, sizeof(p), "%s/metadata2", n->raft_dir);
	return access(p, F_OK) == 0;
}

static int setup_raft(struct node *n, char *errbuf, size_t errlen)
{
	int rc;
	size_t seg = 8u << 20;
	uint64_t threshold = (uint64_t)n->cfg.snapshot_count;
	uint64_t trailing;

	if ((rc = node_transport_init(n, errbuf, errlen)) != 0)
		return rc;
	n->segfill_slot = node_segfill_register(n->raft_dir);
	n->spool_slot = node_spool_register(n->member_dir); /* raft's heap: spool.c */
	if ((rc = raft_uv_init(&n->io, n->loop, n->raft_dir, &n->transport)) != 0) {
		snprintf(errbuf, errlen, "raft I/O in %s: %s", n->raft_dir, raft_strerror(rc));
		node_transport_close(n);
		return -EIO;
	}
	/* One entry may carry NODE_MAX_ENTRY_BYTES or one max-size request. */
	while (seg < 2 * (NODE_MAX_ENTRY_BYTES + (size_t)n->cfg.max_request_bytes))
		seg *= 2;
	raft_uv_set_segment_size(&n->io, seg);
	/* raft's default "auto recovery" renames a segment it cannot read and
	 * starts without its entries: committed writes would silently vanish.
	 * Refuse to start instead. */
	raft_uv_set_auto_recovery(&n->io, false);
	/* The snapshots we store are headers; one received from a leader holds
	 * a database, which raft would lz4 into a second whole buffer in
	 * memory before writing it (and decompress into one at each start). */
	raft_uv_set_snapshot_compression(&n->io, false);
	/* raft 0.15's libuv backend implements async_work (used for our
	 * off-loop LMDB syncs at a snapshot and copies for followers) but
	 * still says io->version = 1, which makes raft_init refuse an FSM with
	 * snapshot_async; upstream fixed that in 0.17.1 ("uv: set io version
	 * to 2", 269e541). */
	if (n->io.version < 2 && n->io.async_work != NULL)
		n->io.version = 2;
	node_metrics_init(n); /* times raft's log writes */
	node_contact_init(n); /* notes when peers' messages arrive */
	node_fsm_init(n);
	node_fsm_wrap_io(n, &n->io); /* full snapshots for followers */
	n->fsm_raft = &n->raft;
	if ((rc = raft_init(&n->raft, &n->io, &n->fsm, n->raft_id, n->raft_addr)) != 0) {
		snprintf(errbuf, errlen, "raft: %s", raft_errmsg(&n->raft));
		raft_uv_close(&n->io);
		node_transport_close(n);
		return -EIO;
	}
	n->raft.data = n;
	n->io_open = true;
	raft_set_heartbeat_timeout(&n->raft, n->cfg.heartbeat_ms);
	/* canonical/raft waits a random [T, 2T] before campaigning, and a
	 * follower that still has a leader refuses pre-votes until its own
	 * timer fires, so an election can take two rounds. We promise a new
	 * leader within two election timeouts of the flag, so give raft half
	 * of it: each round takes [0.5, 1] x --election-timeout. */
	raft_set_election_timeout(&n->raft, n->cfg.election_ms / 2);
	raft_set_pre_vote(&n->raft, true);
	/* --snapshot-count counts requests in etcd; one of our entries holds a
	 * batch of them: fsm.c asks for a snapshot after that many requests, so
	 * raft's entry threshold is only a bound. Keep etcd's 5000 catch-up
	 * entries (fewer for small counts: fsm.c keeps those of the last 5000
	 * requests) so a slow follower gets entries, not a snapshot. */
	if (threshold > UINT32_MAX)
		threshold = UINT32_MAX;
	trailing = threshold / 2 < 5000 ? threshold / 2 : 5000;
	raft_set_snapshot_threshold(&n->raft, (unsigned)threshold);
	raft_set_snapshot_trailing(&n->raft, (unsigned)(trailing ? trailing : 1));
	return 0;
}

/* Request ids start at a random point at each start: entries of an
 * earlier run that are replayed (and a forwarded write's entry, matched by
 * id and origin alone: fsm.c) must not match requests of this one. Without
 * the kernel's randomness (getrandom fails: no entropy yet with
 * GRND_NONBLOCK, an old kernel, a seccomp filter) the clocks' nanoseconds,
 * the process and this member's raft ID: a restart of the same member even
 * within the same second starts far from the last run's ids, never at 0. */
static void seed_ids(struct node *n)
{
	uint64_t r;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		struct timespec real, mono;
		clock_gettime(CLOCK_REALTIME, &real);
		clock_gettime(CLOCK_MONOTONIC, &mono);
		r = mix64((uint64_t)real.tv_sec * 1000000000u + (uint64_t)real.tv_nsec) ^
		    mix64(((uint64_t)mono.tv_sec * 1000000000u + (uint64_t)mono.tv_nsec) ^
		          ((uint64_t)getpid() << 40)) ^
		    mix64(n->raft_id);
	}
	n->next_id = (r >> 1) + 1; /* not 0, and 2^63 ids before it wraps */
}

int node_create(struct node **out, uv_loop_t *loop, const struct node_config *cfg, char *errbuf,
                size_t errlen)
{
	pthread_rwlockattr_t attr;
	struct node *n = calloc(1, sizeof(*n));
	int rc;

	*out = NULL;
	if (n == NULL) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	n->loop = loop;
	n->cfg = *cfg;
	n->segfill_slot = -1;
	n->spool_slot = -1;
	n->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (n->wake_fd < 0) {
		rc = -errno;
		snprintf(errbuf, errlen, "eventfd: %s", strerror(-rc));
		free(n);
		return rc;
	}
	apply_defaults(n);
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&n->env_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&n->qlock, NULL);
	pthread_mutex_init(&n->ckpt.io_lock, NULL);
	n->n_buckets = 1024;
	n->waiters = calloc(n->n_buckets, sizeof(*n->waiters));
	if (n->waiters == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = check_config(n, errbuf, errlen)) < 0 || (rc = setup_identity(n, errbuf, errlen)) < 0 ||
	    (rc = node_compactor_init(n, errbuf, errlen)) < 0 ||
	    (rc = setup_paths(n, errbuf, errlen)) < 0 || (rc = node_peer_setup(n, errbuf, errlen)) < 0 ||
	    (rc = node_auth_setup(n, errbuf, errlen)) < 0 ||
	    (rc = node_members_identity(n, errbuf, errlen)) < 0)
		goto fail;
	seed_ids(n);
	if ((rc = node_env_open(n, errbuf, errlen)) != 0)
		goto fail;
	if ((rc = node_forward_init(n)) != 0 || (rc = node_members_load(n)) != 0) {
		node_env_close(n);
		goto fail;
	}
	node_lease_init(n);
	node_auth_init(n);
	if ((rc = node_auth_load(n)) != 0) {
		snprintf(errbuf, errlen, "cannot load the auth store: %s", bollard_strerror(rc));
		node_env_close(n);
		goto fail;
	}
	if ((rc = node_lease_load(n)) != 0) {
		snprintf(errbuf, errlen, "cannot load leases: %s", bollard_strerror(rc));
		node_env_close(n);
		goto fail;
	}
	if ((rc = setup_raft(n, errbuf, errlen)) < 0) {
		node_env_close(n);
		goto fail;
	}
	uv_poll_init(loop, &n->wake, n->wake_fd);
	uv_poll_start(&n->wake, UV_READABLE, wake_cb);
	uv_prepare_init(loop, &n->prepare);
	uv_check_init(loop, &n->check);
	uv_timer_init(loop, &n->retry_timer);
	uv_timer_init(loop, &n->compact_timer);
	uv_timer_init(loop, &n->hold_timer);
	uv_timer_init(loop, &n->commit_timer);
	n->wake.data = n->prepare.data = n->check.data = n;
	n->retry_timer.data = n->compact_timer.data = n->hold_timer.data = n;
	n->commit_timer.data = n;
	n->open_handles = 8; /* + the lease timer (node_lease_init) */
	node_watch_init(n);
	n->open_handles += 2; /* the watch timers */
	node_ckpt_init(n);
	blog(BLOG_INFO, "node", "member %016llx (%s) of cluster %016llx, data in %s, raft at %s",
	     (unsigned long long)n->member_id, n->cfg.name, (unsigned long long)n->cluster_id,
	     n->cfg.data_dir, n->raft_addr);
	*out = n;
	return 0;
fail:
	if (rc == -ENOMEM)
		snprintf(errbuf, errlen, "out of memory");
	node_destroy(n);
	return rc;
}

/* --force-new-cluster (etcd's): this member's data, with itself as the only
 * member. raft_recover appends a configuration of this member alone to the
 * log; once it leads, it records the others as removed (members.c). The
 * cluster ID stays. */
static int force_new_cluster(struct node *n)
{
	struct raft_configuration conf;
	int rc;
	raft_configuration_init(&conf);
	if (raft_configuration_add(&conf, n->raft_id, n->raft_addr, RAFT_VOTER) != 0) {
		raft_configuration_close(&conf);
		return -ENOMEM;
	}
	rc = raft_recover(&n->raft, &conf);
	raft_configuration_close(&conf);
	if (rc != 0) {
		blog(BLOG_ERROR, "node", "--force-new-cluster: %s", raft_errmsg(&n->raft));
		return -EIO;
	}
	blog(BLOG_WARN, "node", "--force-new-cluster: member %016llx is now the only member of "
	     "cluster %016llx; restart without the flag", (unsigned long long)n->member_id,
	     (unsigned long long)n->cluster_id);
	return 0;
}

int node_start(struct node *n)
{
	struct raft_configuration conf;
	int rc;

	raft_configuration_init(&conf);
	/* --initial-cluster-state existing: no bootstrap; an empty raft dir
	 * receives the configuration and the log (or a snapshot) from the
	 * leader once the cluster added this member (members.c). */
	bool fresh = !raft_dir_has_state(n);
	for (size_t i = 0; fresh && strcmp(n->cfg.initial_cluster_state, "new") == 0 &&
	                   i < n->cluster.n; i++) {
		const struct cluster_member *m = &n->cluster.members[i];
		char addr[300], err[256];
		if (m->id == n->raft_id)
			snprintf(addr, sizeof(addr), "%s", n->raft_addr);
		else if (node_raft_address(m->peer_urls.v[0], addr, sizeof(addr), err, sizeof(err)) < 0) {
			blog(BLOG_ERROR, "node", "%s", err);
			raft_configuration_close(&conf);
			return -EINVAL;
		}
		if ((rc = raft_configuration_add(&conf, m->id, addr, RAFT_VOTER)) != 0) {
			raft_configuration_close(&conf);
			return -ENOMEM;
		}
	}
	if (conf.n == 0 && fresh)
		blog(BLOG_INFO, "node", "joining an existing cluster: waiting for the leader");

	rc = conf.n ? raft_bootstrap(&n->raft, &conf) : RAFT_CANTBOOTSTRAP;
	raft_configuration_close(&conf);
	if (rc != 0 && rc != RAFT_CANTBOOTSTRAP) {
		blog(BLOG_ERROR, "node", "raft bootstrap: %s", raft_errmsg(&n->raft));
		return -EIO;
	}
	if (rc == 0)
		blog(BLOG_INFO, "node", "bootstrapped a new cluster of %zu member(s)", n->cluster.n);
	if (n->cfg.force_new_cluster && rc == RAFT_CANTBOOTSTRAP && (rc = force_new_cluster(n)) != 0)
		return rc;
	if ((rc = raft_start(&n->raft)) != 0) {
		blog(BLOG_ERROR, "node", "raft start: %s",
		     *raft_errmsg(&n->raft) ? raft_errmsg(&n->raft) : raft_strerror(rc));
		return -EIO;
	}
	n->raft_started = true;
	node_members_sync(n); /* members added since --initial-cluster; their addresses */
	node_members_start(n);
	node_start_barrier(n);
	uv_prepare_start(&n->prepare, prepare_cb);
	uv_check_start(&n->check, check_cb);
	node_compactor_start(n);
	node_ckpt_start(n);
	node_watch_start(n);
	node_lease_start(n);
	blog(BLOG_INFO, "node", "started at applied index %llu, raft term %llu, %s",
	     (unsigned long long)n->applied_index, (unsigned long long)n->raft.current_term,
	     raft_state(&n->raft) == RAFT_LEADER ? "leader" : "not leader yet");
	return 0;
}

static void handle_closed(uv_handle_t *h)
{
	node_handle_release(h->data);
}

void node_handle_release(struct node *n)
{
	if (--n->open_handles > 0)
		return;
	node_env_close(n);
	blog(BLOG_INFO, "node", "closed at applied index %llu", (unsigned long long)n->applied_index);
	if (n->close_cb)
		n->close_cb(n);
}

/* raft's close callback. raft 0.15's libuv I/O calls it before the file
 * of the log segment it was writing is closed: the segment left the queue
 * the close waits for (uv_append.c uvAliveSegmentFinalize), and its
 * writer's close callback, when it comes after this one (libuv runs close
 * callbacks newest first; a write still on the threadpool holds it longer),
 * checks the I/O's close conditions again and calls the close callback a
 * second time. Freeing the I/O here made that a use after free (raft's own
 * ioCloseCb on a recycled io, a SEGV in libraft: bollard-store exiting -11,
 * or -6 under ASan, on SIGTERM). So the I/O and the transport stay until
 * node_destroy (the loop has ended by then), and a second call finds a raft
 * with nothing to free. */
static void raft_closed(struct raft *r)
{
	struct node *n = r->data;
	struct node_req *q;

	memset(&n->io_tomb, 0, sizeof(n->io_tomb));
	n->io.data = &n->io_tomb;
	if (n->syncwrite_on)
		syncwrite_detach();
	n->syncwrite_on = false;
	node_flush(n);
	node_fail_waiters(n, BOLLARD_ESTOPPED);
	pthread_mutex_lock(&n->qlock);
	n->stopped = true;
	q = n->q_head;
	n->q_head = n->q_tail = NULL;
	uv_close((uv_handle_t *)&n->wake, handle_closed);
	pthread_mutex_unlock(&n->qlock);
	node_dispatch(n, q); /* closing: every one fails with STOPPED */
	uv_close((uv_handle_t *)&n->prepare, handle_closed);
	uv_close((uv_handle_t *)&n->check, handle_closed);
	uv_close((uv_handle_t *)&n->retry_timer, handle_closed);
	uv_close((uv_handle_t *)&n->compact_timer, handle_closed);
	uv_close((uv_handle_t *)&n->hold_timer, handle_closed);
	uv_close((uv_handle_t *)&n->commit_timer, handle_closed);
	node_ckpt_close(n, handle_closed);
	node_watch_close(n, handle_closed);
	node_lease_close(n, handle_closed);
}

/* raft 0.15 crashes in raft_close() when more than one append is still being
 * written: each cancelled leader append truncates the in-memory log from its
 * own index, and the second finds its entries already gone (a SEGV in
 * refsDecr, seen on a member that had just lost a leadership: its
 * raft_apply callbacks had all failed with the entries still on their way
 * to disk). So close drains first: no new entries once closing, and
 * raft_close() runs when every raft_apply and barrier has called back and
 * no log write, a leader's or a follower's, is out (disk writes take
 * milliseconds; a timer bounds the wait). It runs from the prepare/check
 * handles, never inside a raft callback (raft's libuv backend touches its
 * handles after calling back). */
static void maybe_close_raft(struct node *n)
{
	/* raft 0.15 does not wait for a snapshot it is taking (LMDB's sync runs
	 * on the threadpool): closing under it crashes, so let it finish first;
	 * a copy of LMDB for a follower too (fsm.c: raft drops it once closed).
	 * Nor for one a leader sent that is still being stored
	 * (raft.snapshot.put): its callback then finds raft closing and drops
	 * the snapshot but leaks the buffer array (replication.c
	 * installSnapshotCb, fixed upstream in 0.17.1), which LeakSanitizer
	 * reports at exit. A follower's log truncation is covered by the
	 * writes: raft appends the leader's entries right after it, and the
	 * libuv I/O holds that write until the truncation is done (closing
	 * under a truncation calls its barrier callback again, which frees it
	 * under the running work: uvBarrierClose, upstream 5319cd9, 0.17.1). */
	bool busy = n->in_flight > 0 || n->barrier_in_flight ||
	            n->snapshot_in_flight || n->raft.snapshot.put.data != NULL || n->snap_sends ||
	            n->appends_in_flight > 0;

	if (!n->closing || n->raft_closing || (busy && !n->drain_expired))
		return;
	n->raft_closing = true;
	uv_timer_stop(&n->retry_timer);
	raft_close(&n->raft, raft_closed);
}

/* Every request waiting for something (a leader, a read round, the local
 * applied index, a forwarded call) fails with BOLLARD_ESTOPPED. */
static void fail_waiting(struct node *n)
{
	struct req_list parked = {n->parked_head, n->parked_tail, 0};
	struct req_list rparked = {n->rparked_head, n->rparked_tail, 0};

	n->rparked_head = n->rparked_tail = NULL;
	node_list_fail(n, &rparked, BOLLARD_ESTOPPED);
	node_members_close(n);
	node_forward_close(n);
	n->parked_head = n->parked_tail = NULL;
	node_list_fail(n, &parked, BOLLARD_ESTOPPED);
}

void node_stop_requests(struct node *n)
{
	if (n->refusing)
		return;
	n->refusing = true; /* node_dispatch refuses, internal senders stop */
	fail_waiting(n);
}

void node_close(struct node *n, void (*cb)(struct node *n))
{
	if (n->closing)
		return;
	n->refusing = true;
	fail_waiting(n); /* again: work under way may have parked since */
	n->closing = true;
	n->close_cb = cb;
	uv_timer_stop(&n->compact_timer);
	uv_timer_start(&n->retry_timer, retry_cb, 10000, 0);
	if (!n->raft_started) /* the loop's handles never ran */
		maybe_close_raft(n);
}

void node_destroy(struct node *n)
{
	if (n == NULL)
		return;
	node_compactor_free(n);
	node_watch_free(n);
	node_lease_free(n);
	node_forward_free(n);
	node_contact_free(n);
	if (n->io_open) /* raft closed (raft_closed) and the loop ended */
		raft_uv_close(&n->io);
	node_segfill_unregister(n->segfill_slot);
	node_spool_unregister(n->spool_slot);
	node_transport_close(n); /* raft's, or one raft never took */
	free(n->peer_auto_cert);
	free(n->peer_auto_key);
	node_auth_free(n);
	initial_cluster_free(&n->cluster);
	url_list_free(&n->client_urls);
	url_list_free(&n->bind_addrs);
	free(n->waiters);
	free(n->done);
	mvcc_key_log_free(&n->key_log);
	free(n->owned_data_dir);
	free(n->owned_initial_cluster);
	pthread_rwlock_destroy(&n->env_lock);
	pthread_mutex_destroy(&n->qlock);
	pthread_mutex_destroy(&n->ckpt.io_lock);
	if (n->wake_fd >= 0)
		close(n->wake_fd);
	free(n);
}

int64_t node_max_request_bytes(const struct node *n)
{
	return n->cfg.max_request_bytes;
}

int64_t node_max_txn_ops(const struct node *n)
{
	return n->cfg.max_txn_ops;
}

uint64_t node_member_id(const struct node *n)
{
	return n->member_id;
}

bool node_joining(const struct node *n)
{
	return __atomic_load_n(&n->joining, __ATOMIC_ACQUIRE);
}

uint64_t node_cluster_id(const struct node *n)
{
	return n->cluster_id;
}

void node_get_stats(const struct node *n, struct node_stats *out)
{
	*out = n->stats;
}

uint64_t node_applied_index(const struct node *n)
{
	return n->applied_index;
}
