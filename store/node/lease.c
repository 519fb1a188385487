/* lease.c - a node's leases on its loop thread: the lessor (core/lease.h)
 * mirrors the leases in LMDB (core/leasedb.h) through apply hooks, and is
 * rebuilt from LMDB at open and after a snapshot restore.
 *
 * Expiry is decided by the leader alone, on the loop's monotonic clock
 * (uv_now, brought up to date at each read): when this member is raft leader its lessor is primary (promoted:
 * every lease's remaining TTL restarts, plus one election timeout, as etcd's
 * Promote); otherwise it is demoted and nothing expires here. A timer every
 * 500 ms (etcd's revoke loop period) proposes LeaseRevoke through raft for
 * expired leases, at most LEASE_REVOKE_RATE per second; a lease whose revoke
 * does not land is offered again after LEASE_EXPIRED_RETRY_MS. Every 5 s it
 * also proposes checkpoints (remaining TTLs) of leases longer than the
 * 5-minute checkpoint interval, so a new leader does not restart them at
 * their full TTL (etcd 3.4's lease checkpoints, on here by default).
 *
 * Keep-alive, TimeToLive and Leases are answered by the lessor without raft
 * (etcd: renewals are leader-local). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth.h"
#include "core/errors.h"
#include "core/leasedb.h"
#include "node/log.h"
#include "node/node_int.h"

#define LEASE_TICK_MS 500
#define LEASE_CP_INTERVAL_MS 300000 /* etcd's defaultLeaseCheckpointInterval */
#define LEASE_CP_SCAN_MS 5000
#define LEASE_CP_BATCH 1000         /* etcd's maxLeaseCheckpointBatchSize */
#define LEASE_MAX_INTERNAL 8192     /* internal requests in flight at most */

/* The lessor's clock. uv_now is the time the loop iteration began (before
 * node_start's first iteration: when the loop was created, hundreds of ms
 * back under load), and a lease's clock must start when its grant, renewal
 * or promotion happens, as etcd's time.Now(): otherwise a promotion after a
 * slow start cut every lease short by the time the start took. */
static uint64_t lease_now_ms(struct node *n)
{
	uv_update_time(n->loop);
	return node_now_ms(n);
}

/* ---- lessor <-> LMDB ------------------------------------------------------ */

static int load_one(void *ud, const struct lease_rec *r)
{
	struct node *n = ud;
	int rc = lessor_add(&n->lessor, r->id, r->ttl, r->remaining_ttl, lease_now_ms(n));
	return rc == BOLLARD_ELEASE_EXIST ? 0 : rc;
}

int node_lease_load(struct node *n)
{
	MDB_txn *txn;
	bool primary = n->lessor.primary;
	int rc;

	lessor_free(&n->lessor);
	lessor_init(&n->lessor);
	if ((rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn)) != 0)
		return rc > 0 ? -rc : rc;
	rc = leasedb_foreach(&n->mvcc, txn, load_one, n);
	mdb_txn_abort(txn);
	if (rc == 0 && primary)
		lessor_promote(&n->lessor, lease_now_ms(n), n->cfg.election_ms);
	if (rc == 0 && n->lessor.count > 0)
		blog(BLOG_INFO, "lease", "loaded %zu lease(s)", n->lessor.count);
	return rc;
}

static void sync_role(struct node *n);

static void hook_granted(void *ud, int64_t id, int64_t ttl)
{
	struct node *n = ud;
	/* A leader elected since the last tick must be primary before it starts
	 * the lease's clock; promoting later would add the election timeout on top. */
	sync_role(n);
	if (lessor_add(&n->lessor, id, ttl, 0, lease_now_ms(n)) == -ENOMEM)
		blog(BLOG_ERROR, "lease", "out of memory tracking lease %016llx",
		     (unsigned long long)id);
}

static void hook_revoked(void *ud, int64_t id)
{
	struct node *n = ud;
	lessor_remove(&n->lessor, id);
}

static void hook_checkpointed(void *ud, int64_t id, int64_t remaining)
{
	struct node *n = ud;
	lessor_checkpoint(&n->lessor, id, remaining);
}

struct apply_opts node_lease_apply_opts(struct node *n)
{
	return (struct apply_opts){
		.min_lease_ttl = n->min_lease_ttl,
		.lease_granted = hook_granted,
		.lease_revoked = hook_revoked,
		.lease_checkpointed = hook_checkpointed,
		.ud = n,
	};
}

/* ---- the leader's role ---------------------------------------------------- */

/* Primary exactly while raft leader. */
static void sync_role(struct node *n)
{
	bool leader = n->raft_started && !n->closing && raft_state(&n->raft) == RAFT_LEADER;
	if (leader && !n->lessor.primary) {
		lessor_promote(&n->lessor, lease_now_ms(n), n->cfg.election_ms);
		blog(BLOG_INFO, "lease", "promoted: %zu lease(s) extended by %u ms", n->lessor.count,
		     n->cfg.election_ms);
	} else if (!leader && n->lessor.primary) {
		lessor_demote(&n->lessor);
		blog(BLOG_INFO, "lease", "demoted");
	}
}

/* ---- internal proposals --------------------------------------------------- */

struct internal_req {
	struct node_req req;
	union {
		Etcdserverpb__LeaseRevokeRequest revoke;
		Etcdserverpb__LeaseCheckpointRequest cp;
	} m;
	Etcdserverpb__LeaseCheckpoint **cpp;
	Etcdserverpb__LeaseCheckpoint *cpv;
};

static void internal_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct internal_req *ir = (struct internal_req *)req;
	struct node *n = req->data;
	(void)len;
	free(resp);
	if (err != 0 && err != BOLLARD_ELEASE_NOT_FOUND && err != BOLLARD_ESTOPPED)
		blog(BLOG_WARN, "lease", "%s failed: %s",
		     req->op == NODE_LEASE_REVOKE ? "revoke of an expired lease" : "lease checkpoint",
		     bollard_strerror(err));
	n->lease_internal--;
	free(ir->cpp);
	free(ir->cpv);
	free(ir);
}

static void propose_revoke(struct node *n, int64_t id)
{
	struct internal_req *ir = calloc(1, sizeof(*ir));
	if (ir == NULL)
		return; /* offered again after the retry interval */
	etcdserverpb__lease_revoke_request__init(&ir->m.revoke);
	ir->m.revoke.id = id;
	ir->req.data = n;
	ir->req.op = NODE_LEASE_REVOKE;
	ir->req.msg = &ir->m.revoke.base;
	ir->req.auth_rev = AUTH_REV_SYSTEM; /* etcd revokes expired leases as root */
	ir->req.cb = internal_done;
	n->lease_internal++;
	node_submit(n, &ir->req);
}

static void propose_checkpoints(struct node *n, const int64_t *ids, const int64_t *rem, size_t k)
{
	struct internal_req *ir = calloc(1, sizeof(*ir));
	if (ir == NULL || (ir->cpp = calloc(k, sizeof(*ir->cpp))) == NULL ||
	    (ir->cpv = calloc(k, sizeof(*ir->cpv))) == NULL) {
		if (ir)
			free(ir->cpp);
		free(ir);
		return;
	}
	etcdserverpb__lease_checkpoint_request__init(&ir->m.cp);
	for (size_t i = 0; i < k; i++) {
		etcdserverpb__lease_checkpoint__init(&ir->cpv[i]);
		ir->cpv[i].id = ids[i];
		ir->cpv[i].remaining_ttl = rem[i];
		ir->cpp[i] = &ir->cpv[i];
	}
	ir->m.cp.checkpoints = ir->cpp;
	ir->m.cp.n_checkpoints = k;
	ir->req.data = n;
	ir->req.op = NODE_LEASE_CHECKPOINT;
	ir->req.msg = &ir->m.cp.base;
	ir->req.cb = internal_done;
	n->lease_internal++;
	node_submit(n, &ir->req);
}

static void lease_tick(uv_timer_t *t)
{
	struct node *n = t->data;
	uint64_t now = lease_now_ms(n);
	/* At most half the per-second rate per 500 ms tick. */
	int64_t ids[LEASE_REVOKE_RATE / 2];
	size_t k;

	if (n->refusing)
		return;
	sync_role(n);
	if (!n->lessor.primary || n->lease_internal >= LEASE_MAX_INTERNAL)
		return;
	k = lessor_expired(&n->lessor, now, ids, sizeof(ids) / sizeof(ids[0]));
	for (size_t i = 0; i < k; i++)
		propose_revoke(n, ids[i]);
	if (k > 0)
		blog(BLOG_DEBUG, "lease", "revoking %zu expired lease(s)", k);
	if (now - n->lease_cp_last_ms >= LEASE_CP_SCAN_MS) {
		static int64_t cids[LEASE_CP_BATCH], rem[LEASE_CP_BATCH];
		n->lease_cp_last_ms = now;
		k = lessor_checkpoints_due(&n->lessor, now, LEASE_CP_INTERVAL_MS, cids, rem,
		                           LEASE_CP_BATCH);
		if (k > 0)
			propose_checkpoints(n, cids, rem, k);
	}
}

/* ---- lifecycle ------------------------------------------------------------ */

void node_lease_init(struct node *n)
{
	lessor_init(&n->lessor);
	n->min_lease_ttl = lease_min_ttl(n->cfg.election_ms, n->cfg.heartbeat_ms);
	uv_timer_init(n->loop, &n->lease_timer);
	n->lease_timer.data = n;
}

void node_lease_start(struct node *n)
{
	n->lease_cp_last_ms = lease_now_ms(n);
	sync_role(n);
	uv_timer_start(&n->lease_timer, lease_tick, LEASE_TICK_MS, LEASE_TICK_MS);
}

void node_lease_close(struct node *n, uv_close_cb cb)
{
	uv_close((uv_handle_t *)&n->lease_timer, cb);
}

void node_lease_free(struct node *n)
{
	lessor_free(&n->lessor);
}

/* ---- requests answered by the lessor ------------------------------------- */

static void fill_header(struct node *n, Etcdserverpb__ResponseHeader *h, MDB_txn *txn)
{
	etcdserverpb__response_header__init(h);
	h->cluster_id = n->cluster_id;
	h->member_id = n->member_id;
	h->revision = mvcc_current_rev(&n->mvcc, txn);
	h->raft_term = n->raft.current_term;
}

void node_serve_lease_keepalive(struct node *n, struct node_req *req)
{
	const Etcdserverpb__LeaseKeepAliveRequest *q = (const void *)req->msg;
	Etcdserverpb__LeaseKeepAliveResponse r = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h;
	bool had_cp;
	MDB_txn *txn;
	int rc;

	sync_role(n);
	if ((rc = lessor_renew(&n->lessor, q->id, lease_now_ms(n), &r.ttl, &had_cp)) != 0) {
		node_complete(n, req, rc, NULL, 0);
		return;
	}
	if (had_cp) { /* a later leader must not restart it from the old checkpoint */
		int64_t zero = 0;
		propose_checkpoints(n, &q->id, &zero, 1);
	}
	if ((rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn)) != 0) {
		node_complete(n, req, rc > 0 ? -rc : rc, NULL, 0);
		return;
	}
	fill_header(n, &h, txn);
	mdb_txn_abort(txn);
	r.header = &h;
	r.id = q->id;
	node_reply_msg(n, req, &r.base);
}

void node_serve_lease_ttl(struct node *n, struct node_req *req)
{
	const Etcdserverpb__LeaseTimeToLiveRequest *q = (const void *)req->msg;
	Etcdserverpb__LeaseTimeToLiveResponse r = ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h;
	struct arena a;
	MDB_txn *txn;
	int rc;

	sync_role(n);
	if ((rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn)) != 0) {
		node_complete(n, req, rc > 0 ? -rc : rc, NULL, 0);
		return;
	}
	arena_init(&a, 4096);
	fill_header(n, &h, txn);
	r.header = &h;
	r.id = q->id;
	const struct lease_ent *e = lessor_get(&n->lessor, q->id);
	if (e == NULL) {
		r.ttl = -1; /* etcd answers an unknown lease with TTL -1, no error */
	} else {
		r.ttl = lessor_remaining(&n->lessor, e, lease_now_ms(n));
		r.grantedttl = e->ttl;
		if (q->keys)
			rc = leasedb_keys(&n->mvcc, txn, &a, q->id, &r.keys, &r.n_keys);
	}
	if (rc == 0)
		node_reply_msg(n, req, &r.base); /* keys point into the arena: pack first */
	else
		node_complete(n, req, rc, NULL, 0);
	mdb_txn_abort(txn);
	arena_free(&a);
}

static int collect(void *ud, const struct lease_ent *e)
{
	const struct lease_ent ***p = ud;
	*(*p)++ = e;
	return 0;
}

static int by_expiry(const void *a, const void *b)
{
	const struct lease_ent *x = *(const struct lease_ent *const *)a;
	const struct lease_ent *y = *(const struct lease_ent *const *)b;
	if (x->expiry_ms != y->expiry_ms)
		return x->expiry_ms < y->expiry_ms ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

void node_serve_lease_leases(struct node *n, struct node_req *req)
{
	Etcdserverpb__LeaseLeasesResponse r = ETCDSERVERPB__LEASE_LEASES_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h;
	size_t cnt = n->lessor.count;
	const struct lease_ent **v = malloc((cnt ? cnt : 1) * sizeof(*v)), **p = v;
	Etcdserverpb__LeaseStatus *st = calloc(cnt ? cnt : 1, sizeof(*st));
	Etcdserverpb__LeaseStatus **stp = calloc(cnt ? cnt : 1, sizeof(*stp));
	MDB_txn *txn;
	int rc = v && st && stp ? 0 : -ENOMEM;

	sync_role(n);
	if (rc == 0 && (rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn)) == 0) {
		fill_header(n, &h, txn);
		mdb_txn_abort(txn);
		lessor_foreach(&n->lessor, collect, &p);
		qsort(v, cnt, sizeof(*v), by_expiry); /* etcd lists by expiry */
		for (size_t i = 0; i < cnt; i++) {
			etcdserverpb__lease_status__init(&st[i]);
			st[i].id = v[i]->id;
			stp[i] = &st[i];
		}
		r.header = &h;
		r.leases = stp;
		r.n_leases = cnt;
		node_reply_msg(n, req, &r.base);
	} else {
		node_complete(n, req, rc > 0 ? -rc : rc, NULL, 0);
	}
	free(v);
	free(st);
	free(stp);
}
