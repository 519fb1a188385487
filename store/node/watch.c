/* watch.c - the watch hub (core/watch_hub.c) on the node's loop thread.
 *
 * After every applied batch (node_flush_or_keep) and before every LMDB
 * commit the hub is told the new current revision and sends that revision
 * range's events to its synced watchers, read once from the open write
 * transaction (while the commit waits, those writes are answered already:
 * fsm.c says why that is safe); outside of one, from a read transaction. Watch streams' requests arrive as
 * NODE_WATCH / NODE_WATCH_CLOSE node requests, in order. Watchers that lag
 * (old start revision, a stream that refused a response) are caught up in
 * bounded steps: one with each applied batch, commit or request, then from a 10 ms
 * timer while any remain (a full stream needs time to drain). A second
 * timer sends etcd's progress notifications.
 *
 * Streams that require a leader (Watch streams with require_leader, others
 * held with NODE_LEADER_HOLD) are ended once this member has known no
 * leader for 3 election timeouts (node_watch_tick). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "core/auth.h"
#include "core/errors.h"
#include "core/watch_hub.h"
#include "node/log.h"
#include "node/node_int.h"

#define WATCH_RETRY_MS 10
#define WATCH_PROGRESS_DEFAULT_MS (10 * 60 * 1000)

static int hub_send(void *ud, uint8_t *buf, size_t len, bool force, int64_t watch_id,
                    size_t events_at)
{
	struct node_watch_stream *ws = ud;
	return ws->send(ws, buf, len, force, watch_id, events_at);
}

static bool hub_writable(void *ud)
{
	struct node_watch_stream *ws = ud;
	return ws->writable(ws);
}

static void hub_flush(void *ud)
{
	struct node_watch_stream *ws = ud;
	if (ws->flush != NULL)
		ws->flush(ws);
}

static const struct watch_hub_io hub_io = {hub_send, hub_writable, hub_flush};

/* etcd's watch gauges and event counter, from the hub's stats (loop
 * thread; the metrics page reads them from another). */
static void publish(struct node *n)
{
	struct watch_hub_stats st;
	watch_hub_stats(n->hub, &st);
	metrics_set(&n->metrics.watch_streams, st.streams);
	metrics_set(&n->metrics.watchers, st.watchers);
	metrics_set(&n->metrics.slow_watchers, st.unsynced);
	metrics_set(&n->metrics.watch_events, st.events);
}

static void set_header(struct node *n)
{
	watch_hub_set_header(n->hub, n->cluster_id, n->member_id, n->raft.current_term);
}

static void retry_cb(uv_timer_t *t);

/* Bring the hub to the applied revision, then one catch-up step. */
static void pump(struct node *n)
{
	MDB_txn *txn = n->wtxn;
	int rc;

	if (n->hub == NULL || n->env == NULL)
		return;
	if (txn == NULL && (rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn)) != 0) {
		blog(BLOG_ERROR, "watch", "cannot read for watchers: %s", mdb_strerror(rc));
		return;
	}
	set_header(n);
	rc = watch_hub_notify(n->hub, &n->mvcc, txn, mvcc_current_rev(&n->mvcc, txn));
	if (rc != 0)
		blog(BLOG_ERROR, "watch", "notify: %s", bollard_strerror(rc));
	if (watch_hub_unsynced(n->hub) > 0 && (rc = watch_hub_sync(n->hub, &n->mvcc, txn)) < 0)
		blog(BLOG_ERROR, "watch", "catch-up: %s", bollard_strerror(rc));
	if (txn != n->wtxn)
		mdb_txn_abort(txn);
	publish(n);
	if (watch_hub_unsynced(n->hub) > 0 && !n->closing) {
		if (!uv_is_active((uv_handle_t *)&n->watch_timer))
			uv_timer_start(&n->watch_timer, retry_cb, WATCH_RETRY_MS, WATCH_RETRY_MS);
	} else {
		uv_timer_stop(&n->watch_timer);
	}
}

static void retry_cb(uv_timer_t *t)
{
	pump(t->data);
}

static void progress_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	if (n->hub == NULL)
		return;
	set_header(n);
	watch_hub_progress_tick(n->hub);
	publish(n);
}

void node_watch_applied(struct node *n)
{
	/* with none, pump() refreshes the revision at the next create */
	if (n->hub != NULL && watch_hub_watchers(n->hub) > 0)
		pump(n);
}

static bool has_leader(struct node *n)
{
	raft_id id = 0;
	const char *addr = NULL;
	if (raft_state(&n->raft) == RAFT_LEADER)
		return true;
	raft_leader(&n->raft, &id, &addr);
	return id != 0;
}

/* etcd's isWatchPermitted: read permission on the watched range, as its
 * watch server adjusts it (an empty key is "\0"; a from-key range_end
 * "\0" becomes empty, so only the key itself is checked, as in 3.4). Any
 * error but the token, revision and user-name ones reads "permission
 * denied". */
static int watch_permitted(struct node *n, const struct node_watch_req *wr,
                           const Etcdserverpb__WatchCreateRequest *c)
{
	static uint8_t zero = 0;
	const struct auth_info ai = {wr->req.auth_user, wr->req.auth_rev};
	ProtobufCBinaryData key = c->key, end = c->range_end;
	MDB_txn *txn;
	int rc = wr->auth_err;
	if (rc == 0 && !__atomic_load_n(&n->auth_enabled_cache, __ATOMIC_RELAXED))
		return 0;
	if (key.len == 0)
		key = (ProtobufCBinaryData){1, &zero};
	if (end.len == 1 && end.data[0] == 0)
		end.len = 0;
	if (rc == 0 && (rc = bollard_err_from_lmdb(
	                    mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn))) == 0) {
		rc = auth_check_range(&n->mvcc, txn, &ai, key, end);
		mdb_txn_abort(txn);
	}
	if (rc == 0 || rc == BOLLARD_EINVALID_AUTH_TOKEN || rc == BOLLARD_EAUTH_OLD_REVISION ||
	    rc == BOLLARD_EUSER_EMPTY)
		return rc;
	return BOLLARD_EPERMISSION_DENIED;
}

static void rl_del(struct node *n, struct node_leader_stream *s)
{
	for (size_t i = 0; i < n->n_rl; i++)
		if (n->rl_streams[i] == s) {
			n->rl_streams[i] = n->rl_streams[--n->n_rl];
			return;
		}
}

static int rl_add(struct node *n, struct node_leader_stream *s)
{
	if (n->n_rl == n->cap_rl) {
		size_t cap = n->cap_rl ? 2 * n->cap_rl : 16;
		struct node_leader_stream **v = realloc(n->rl_streams, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		n->rl_streams = v;
		n->cap_rl = cap;
	}
	n->rl_streams[n->n_rl++] = s;
	return 0;
}

static void watch_held_end(struct node_leader_stream *s, int err)
{
	struct node_watch_stream *ws =
	    (struct node_watch_stream *)(void *)((char *)s - offsetof(struct node_watch_stream, held_));
	if (ws->end != NULL)
		ws->end(ws, err);
}

void node_leader_dispatch(struct node *n, struct node_req *req)
{
	struct node_leader_stream *s = ((struct node_leader_req *)(void *)req)->stream;
	int rc = 0;

	if (req->op == NODE_LEADER_RELEASE)
		rl_del(n, s);
	else if (!has_leader(n)) /* etcd's interceptor refuses such a stream at its start */
		rc = BOLLARD_ENO_LEADER;
	else
		rc = rl_add(n, s);
	node_complete(n, req, rc, NULL, 0);
}

void node_watch_tick(struct node *n)
{
	uint64_t now = node_now_ms(n);
	if (n->closing || !n->raft_started || has_leader(n)) {
		n->leaderless_since_ms = 0;
		return;
	}
	if (n->leaderless_since_ms == 0)
		n->leaderless_since_ms = now;
	if (n->n_rl == 0 || now - n->leaderless_since_ms < 3ull * n->cfg.election_ms)
		return;
	blog(BLOG_WARN, "watch", "no leader for %llu ms: ending %zu stream(s) that require one",
	     (unsigned long long)(now - n->leaderless_since_ms), n->n_rl);
	while (n->n_rl > 0) { /* as etcd: once ended, a stream is forgotten here */
		struct node_leader_stream *s = n->rl_streams[--n->n_rl];
		s->end(s, BOLLARD_ENO_LEADER);
	}
}

void node_watch_dispatch(struct node *n, struct node_req *req)
{
	struct node_watch_req *wr = (struct node_watch_req *)(void *)req;
	struct node_watch_stream *ws = wr->stream;
	int rc = 0;

	if (req->op == NODE_WATCH_CLOSE) {
		if (ws->hub_ != NULL && n->hub != NULL)
			watch_hub_stream_close(n->hub, ws->hub_);
		if (ws->hub_ != NULL && ws->require_leader)
			rl_del(n, &ws->held_);
		ws->hub_ = NULL;
		if (n->hub != NULL)
			publish(n);
		node_complete(n, req, 0, NULL, 0);
		return;
	}
	if (n->hub == NULL || n->closing) {
		node_complete(n, req, BOLLARD_ESTOPPED, NULL, 0);
		return;
	}
	/* etcd's stream interceptor: a client that requires a leader is
	 * refused at the stream's start when this member knows none, and its
	 * stream ended after 3 leaderless election timeouts (node_watch_tick). */
	if (ws->hub_ == NULL && ws->require_leader && !has_leader(n)) {
		node_complete(n, req, BOLLARD_ENO_LEADER, NULL, 0);
		return;
	}
	ws->held_.end = watch_held_end;
	if (ws->hub_ == NULL && ws->require_leader && rl_add(n, &ws->held_) != 0) {
		node_complete(n, req, -ENOMEM, NULL, 0);
		return;
	}
	if (ws->hub_ == NULL && (ws->hub_ = watch_hub_stream_open(n->hub, ws)) == NULL) {
		if (ws->require_leader)
			rl_del(n, &ws->held_);
		node_complete(n, req, -ENOMEM, NULL, 0);
		return;
	}
	pump(n); /* the created response carries the committed revision */
	const Etcdserverpb__WatchRequest *q = (const void *)req->msg;
	int deny = q->request_union_case ==
	                           ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST &&
	                   q->create_request != NULL
	               ? watch_permitted(n, wr, q->create_request)
	               : 0;
	if (deny != 0)
		rc = watch_hub_refuse(n->hub, ws->hub_, bollard_strerror(deny));
	else
		rc = watch_hub_request(n->hub, ws->hub_, q);
	if (watch_hub_unsynced(n->hub) > 0)
		pump(n);
	publish(n);
	node_complete(n, req, rc, NULL, 0);
}

void node_watch_init(struct node *n)
{
	MDB_txn *txn;
	int64_t rev = 1;

	uv_timer_init(n->loop, &n->watch_timer);
	uv_timer_init(n->loop, &n->progress_timer);
	n->watch_timer.data = n->progress_timer.data = n;
	if (mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn) == 0) {
		rev = mvcc_current_rev(&n->mvcc, txn);
		mdb_txn_abort(txn);
	}
	n->hub = watch_hub_new(&hub_io, NULL, rev);
	if (n->hub == NULL)
		blog(BLOG_ERROR, "watch", "out of memory: watches refused");
}

void node_watch_start(struct node *n)
{
	uint64_t ms = n->cfg.watch_progress_ms ? n->cfg.watch_progress_ms : WATCH_PROGRESS_DEFAULT_MS;
	if (n->cfg.watch_progress_ms)
		blog(BLOG_INFO, "watch", "progress notify interval %llu ms", (unsigned long long)ms);
	uv_timer_start(&n->progress_timer, progress_cb, ms, ms);
}

void node_watch_close(struct node *n, uv_close_cb cb)
{
	/* Every stream's close request was handled by now or fails at submit:
	 * nothing will be sent any more. */
	watch_hub_free(n->hub);
	n->hub = NULL;
	uv_close((uv_handle_t *)&n->watch_timer, cb);
	uv_close((uv_handle_t *)&n->progress_timer, cb);
}

void node_watch_free(struct node *n)
{
	free(n->rl_streams);
	n->rl_streams = NULL;
	n->n_rl = n->cap_rl = 0;
	watch_hub_free(n->hub);
	n->hub = NULL;
}
