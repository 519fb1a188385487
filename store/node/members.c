/* members.c - cluster membership: etcd's Cluster service (MemberAdd,
 * MemberRemove, MemberPromote, MemberUpdate, MemberList) on the leader
 * through canonical/raft's configuration changes and replicated member
 * records, the member table every member keeps, the cluster ID, and a
 * removed member's stop, a joining member's wait before it serves, and
 * etcd's strict reconfiguration checks (core/reconfig.h).
 *
 * Two sources. raft's configuration says who is a member and in which role:
 * RAFT_VOTER, or RAFT_STANDBY (replicated to, not voting; RAFT_SPARE just
 * after raft_add). A standby is etcd's learner unless its record says it was
 * added as a voter: the leader makes that one a raft voter once it has
 * caught up (voters_tick). MemberInfo records (a raft entry each, kept in the meta database under
 * "minfo/<raft id>", retired IDs under "removed/<id>") say how clients and
 * peers know a member: its etcd member ID and its peer URLs. ClusterInfo
 * (meta "cluster") is the cluster ID. A new leader writes the records its
 * cluster lacks (a fresh cluster, or removals a crashed leader did not
 * record), so a member that joins later learns all of it from the log or a
 * snapshot, and reports the same cluster ID as the others.
 *
 * IDs. raft's ID of a member of --initial-cluster is etcd's ID (SHA-1 of peer
 * URLs and token); a member added later gets etcd's time-mixed ID (SHA-1 of
 * its peer URLs and the unix time, as etcd's MemberAdd), while its
 * raft ID stays the URL-and-token one, which the new member computes from its
 * own flags before it has heard from the cluster (it learns its etcd ID from
 * its record). The data dir keeps its raft ID (member/identity), so a member
 * whose peer URLs were updated restarts under the same ID.
 *
 * Peer URL changes (MemberUpdate) reach raft by rewriting the address of the
 * member in raft's in-memory configuration (node_members_patch): raft 0.15's
 * libuv transport reconnects when the address it is given changes, and
 * configurations raft writes afterwards carry the new address. raft's
 * address of a member is its first peer URL; the transports dial the one of
 * its current list that works (peer_pick.h).
 *
 * A removed member hears nothing more from the leader. Once it has known no
 * leader for three election timeouts it asks its peers on their peer ports
 * (bollard.Internal/MemberStatus, as etcd's peers answer 410 Gone; also one
 * that never received anything, at its --initial-cluster peer URLs) and
 * stops when one says it was removed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/be64.h"
#include "core/errors.h"
#include "core/reconfig.h"
#include "node/log.h"
#include "node/node_int.h"

static const struct raft_server *conf_find(struct node *n, uint64_t raft_id)
{
	for (unsigned i = 0; i < n->raft.configuration.n; i++)
		if (n->raft.configuration.servers[i].id == raft_id)
			return &n->raft.configuration.servers[i];
	return NULL;
}

static int cluster_index(struct node *n, uint64_t raft_id)
{
	for (size_t i = 0; i < n->cluster.n; i++)
		if (n->cluster.members[i].id == raft_id)
			return (int)i;
	return -1;
}

/* A voting member in etcd's sense: a voter, or one added as a voter that
 * raft has not made one yet (a spare or standby whose record says voter). */
static bool is_voting(struct node *n, const struct raft_server *s)
{
	int k = cluster_index(n, s->id);
	return s->role == RAFT_VOTER || (k >= 0 && n->cluster.members[k].voter);
}

/* etcd's isLearnerReady: a member the leader replicates to whose match index
 * is below 90% of the leader's is not ready; any other ID is (whether it is
 * a learner at all is asked after). */
static bool learner_ready(struct node *n, uint64_t id)
{
	const struct raft_configuration *c = &n->raft.configuration;
	raft_index last = n->raft.last_stored;
	if (id == n->raft_id || raft_state(&n->raft) != RAFT_LEADER ||
	    n->raft.leader_state.progress == NULL)
		return true;
	for (unsigned i = 0; i < c->n; i++)
		if (c->servers[i].id == id)
			return (double)n->raft.leader_state.progress[i].match_index >= (double)last * 0.9;
	return true;
}

static void self_refind(struct node *n)
{
	int i = cluster_index(n, n->raft_id);
	n->self = i >= 0 ? &n->cluster.members[i] : NULL;
}

static int urls_copy(struct url_list *dst, char *const *v, size_t k)
{
	struct url_list l = {0};
	if ((l.v = calloc(k ? k : 1, sizeof(char *))) == NULL)
		return -ENOMEM;
	for (l.n = 0; l.n < k; l.n++)
		if ((l.v[l.n] = strdup(v[l.n])) == NULL) {
			url_list_free(&l);
			return -ENOMEM;
		}
	url_list_free(dst);
	*dst = l;
	return 0;
}

/* A member known from raft or a record only: no name until it publishes. */
static int append_member(struct node *n, uint64_t raft_id, char *const *urls, size_t n_urls)
{
	struct cluster_member *ms;
	Bollard__MemberAttributes **as;
	size_t k = n->cluster.n;

	ms = realloc(n->cluster.members, (k + 1) * sizeof(*ms));
	if (ms == NULL)
		return -ENOMEM;
	n->cluster.members = ms;
	self_refind(n);
	if (n->attrs != NULL) { /* else node_forward_init sizes it */
		if ((as = realloc(n->attrs, (k + 1) * sizeof(*as))) == NULL)
			return -ENOMEM;
		n->attrs = as;
		as[k] = NULL;
	}
	memset(&ms[k], 0, sizeof(ms[k]));
	ms[k].id = ms[k].member_id = raft_id;
	if ((ms[k].name = strdup("")) == NULL || urls_copy(&ms[k].peer_urls, urls, n_urls) != 0) {
		free(ms[k].name);
		return -ENOMEM;
	}
	n->cluster.n = k + 1;
	self_refind(n);
	return 0;
}

/* "127.0.0.1:2380" -> "http://127.0.0.1:2380" for a member known only from
 * raft's configuration. */
static int append_from_conf(struct node *n, const struct raft_server *s)
{
	char url[320], *v[1] = {url};
	snprintf(url, sizeof(url), "http://%s", s->address ? s->address : "");
	return append_member(n, s->id, v, 1);
}

void node_members_sync(struct node *n)
{
	bool added = false;
	if (n->attrs == NULL)
		return;
	for (unsigned i = 0; i < n->raft.configuration.n; i++) {
		const struct raft_server *s = &n->raft.configuration.servers[i];
		if (cluster_index(n, s->id) >= 0)
			continue;
		if (append_from_conf(n, s) != 0)
			return;
		added = true;
	}
	if (added)
		node_forward_reload(n);
	node_members_patch(n);
}

uint64_t node_raft_id_of(struct node *n, uint64_t member_id)
{
	for (size_t i = 0; i < n->cluster.n; i++)
		if (n->cluster.members[i].member_id == member_id &&
		    node_is_member_raft(n, n->cluster.members[i].id))
			return n->cluster.members[i].id;
	return 0;
}

uint64_t node_member_id_of(struct node *n, uint64_t raft_id)
{
	int i = cluster_index(n, raft_id);
	return i >= 0 ? n->cluster.members[i].member_id : raft_id;
}

void node_members_patch(struct node *n)
{
	for (unsigned i = 0; i < n->raft.configuration.n; i++) {
		struct raft_server *s = &n->raft.configuration.servers[i];
		int k = cluster_index(n, s->id);
		char addr[300], err[256], *a;
		if (k < 0 || s->id == n->raft_id || n->cluster.members[k].peer_urls.n == 0 ||
		    node_raft_address(n->cluster.members[k].peer_urls.v[0], addr, sizeof(addr), err,
		                      sizeof(err)) != 0 ||
		    (s->address != NULL && strcmp(s->address, addr) == 0))
			continue;
		if ((a = raft_malloc(strlen(addr) + 1)) == NULL)
			return;
		strcpy(a, addr);
		blog(BLOG_INFO, "cluster", "member %016llx: raft address %s (was %s)",
		     (unsigned long long)node_member_id_of(n, s->id), a, s->address ? s->address : "");
		raft_free(s->address);
		s->address = a;
	}
}

/* ------------------------------------------------------- identity, records */

int node_members_identity(struct node *n, char *errbuf, size_t errlen)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 32];
	unsigned long long id;
	FILE *f;

	snprintf(path, sizeof(path), "%s/identity", n->member_dir);
	if ((f = fopen(path, "r")) != NULL) {
		int ok = fscanf(f, "raft_id %llx", &id) == 1;
		fclose(f);
		if (!ok || id == 0) {
			snprintf(errbuf, errlen, "%s is corrupt", path);
			return -EINVAL;
		}
		if (id != n->raft_id) { /* peer URLs changed since (MemberUpdate) */
			blog(BLOG_INFO, "cluster", "member %016llx from the data dir (the flags give %016llx)",
			     id, (unsigned long long)n->raft_id);
			n->raft_id = n->member_id = id;
			if (cluster_index(n, id) < 0 &&
			    append_member(n, id, n->self->peer_urls.v, n->self->peer_urls.n) != 0)
				return -ENOMEM;
			self_refind(n);
		}
		return 0;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL || fprintf(f, "raft_id %016llx\n",
	                                             (unsigned long long)n->raft_id) < 0 ||
	    fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
		snprintf(errbuf, errlen, "cannot write %s: %s", path, strerror(errno));
		return -EIO;
	}
	return 0;
}

static void id_key(char *buf, size_t len, const char *prefix, uint64_t id)
{
	snprintf(buf, len, "%s%016llx", prefix, (unsigned long long)id);
}

static bool meta_has(struct node *n, MDB_txn *txn, const char *key)
{
	MDB_val k = {strlen(key), (void *)key}, d;
	return mdb_get(txn, n->mvcc.meta_db, &k, &d) == 0;
}

static bool id_removed(struct node *n, uint64_t member_id)
{
	char key[40];
	MDB_txn *txn;
	bool r = false;
	id_key(key, sizeof(key), "removed/", member_id);
	if (mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn) == 0) {
		r = meta_has(n, txn, key);
		mdb_txn_abort(txn);
	}
	return r;
}

/* The record of raft_id says it was removed. */
static bool raft_id_removed(struct node *n, uint64_t raft_id)
{
	char key[40];
	MDB_val k, d;
	MDB_txn *txn;
	bool r = false;
	id_key(key, sizeof(key), "minfo/", raft_id);
	k = (MDB_val){strlen(key), key};
	if (mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn) != 0)
		return false;
	if (mdb_get(txn, n->mvcc.meta_db, &k, &d) == 0) {
		Bollard__MemberInfo *mi = bollard__member_info__unpack(NULL, d.mv_size, d.mv_data);
		r = mi != NULL && mi->removed;
		if (mi != NULL)
			bollard__member_info__free_unpacked(mi, NULL);
	}
	mdb_txn_abort(txn);
	return r;
}

/* A record into the member table (memory). */
static int record_load(struct node *n, const Bollard__MemberInfo *mi)
{
	int i = cluster_index(n, mi->raft_id), rc;
	if (i < 0) {
		if ((rc = append_member(n, mi->raft_id, mi->peer_urls, mi->n_peer_urls)) != 0)
			return rc;
		i = cluster_index(n, mi->raft_id);
	} else if ((rc = urls_copy(&n->cluster.members[i].peer_urls, mi->peer_urls,
	                           mi->n_peer_urls)) != 0) {
		return rc;
	}
	n->cluster.members[i].member_id = mi->id;
	n->cluster.members[i].voter = mi->voter;
	if (mi->raft_id == n->raft_id && !mi->removed) {
		__atomic_store_n(&n->member_id, mi->id, __ATOMIC_RELAXED);
		n->id_known = true;
	}
	return 0;
}

int node_members_load(struct node *n)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k = {6, (void *)"minfo/"}, d;
	int rc, op = MDB_SET_RANGE;

	if ((rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn)) != 0)
		return bollard_err_from_lmdb(rc);
	if ((rc = mdb_cursor_open(txn, n->mvcc.meta_db, &cur)) != 0) {
		mdb_txn_abort(txn);
		return bollard_err_from_lmdb(rc);
	}
	while ((rc = mdb_cursor_get(cur, &k, &d, (MDB_cursor_op)op)) == 0 && k.mv_size > 6 &&
	       memcmp(k.mv_data, "minfo/", 6) == 0) {
		Bollard__MemberInfo *mi = bollard__member_info__unpack(NULL, d.mv_size, d.mv_data);
		op = MDB_NEXT;
		if (mi == NULL)
			continue;
		rc = record_load(n, mi);
		bollard__member_info__free_unpacked(mi, NULL);
		if (rc != 0)
			break;
	}
	mdb_cursor_close(cur);
	k.mv_data = (void *)"cluster";
	k.mv_size = 7;
	if (mdb_get(txn, n->mvcc.meta_db, &k, &d) == 0 && d.mv_size == 8)
		__atomic_store_n(&n->cluster_id, be64_get(d.mv_data), __ATOMIC_RELAXED);
	mdb_txn_abort(txn);
	if (rc != 0 && rc != MDB_NOTFOUND && rc != 0)
		return rc < 0 ? rc : bollard_err_from_lmdb(rc);
	node_forward_reload(n);
	if (n->raft_started)
		node_members_patch(n);
	return 0;
}

int node_member_info_apply(struct node *n, MDB_txn *txn, const Bollard__MemberInfo *mi)
{
	size_t len = bollard__member_info__get_packed_size(mi);
	char key[40];
	MDB_val k = {0, key}, d = {len, NULL};
	int rc;

	id_key(key, sizeof(key), "minfo/", mi->raft_id);
	k.mv_size = strlen(key);
	if ((rc = mdb_put(txn, n->mvcc.meta_db, &k, &d, MDB_RESERVE)) != 0)
		return bollard_err_from_lmdb(rc);
	bollard__member_info__pack(mi, d.mv_data);
	if (mi->removed) {
		MDB_val e = {0, (void *)""};
		id_key(key, sizeof(key), "removed/", mi->id);
		k.mv_size = strlen(key);
		if ((rc = mdb_put(txn, n->mvcc.meta_db, &k, &e, 0)) != 0)
			return bollard_err_from_lmdb(rc);
	}
	if ((rc = record_load(n, mi)) != 0) /* attributes: in txn, not reloaded */
		return rc;
	/* No stop on our own removal here: a member re-added at the same raft ID
	 * replays its predecessor's; raft stops replicating to a removed member
	 * before this record anyway (its peers tell it: node_members_tick). */
	node_members_patch(n);
	return 0;
}

int node_cluster_info_apply(struct node *n, MDB_txn *txn, const Bollard__ClusterInfo *ci)
{
	unsigned char b[8];
	MDB_val k = {7, (void *)"cluster"}, d = {8, b};
	be64_put(b, ci->cluster_id);
	__atomic_store_n(&n->cluster_id, ci->cluster_id, __ATOMIC_RELAXED);
	return bollard_err_from_lmdb(mdb_put(txn, n->mvcc.meta_db, &k, &d, 0));
}

void node_member_removed(struct node *n)
{
	if (n->removed)
		return;
	n->removed = true;
	blog(BLOG_ERROR, "cluster", "the member has been permanently removed from the cluster "
	     "(member %016llx)", (unsigned long long)n->member_id);
	if (n->cfg.on_removed != NULL)
		n->cfg.on_removed(n->cfg.on_removed_arg);
}

/* ------------------------------------------------------- internal records */

/* A record proposed by the leader; then runs once it is applied (or failed). */
struct member_prop {
	struct node_req req;
	struct node *n;
	Bollard__MemberInfo mi;
	Bollard__ClusterInfo ci;
	struct url_list urls;
	void (*then)(struct member_prop *p, int err);
	void *ctx;
};

static void prop_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct member_prop *p = req->data;
	(void)len;
	free(resp);
	if (err != 0)
		blog(BLOG_WARN, "cluster", "member record of %016llx not written: %s",
		     (unsigned long long)p->mi.id, bollard_strerror(err));
	if (p->then != NULL)
		p->then(p, err);
	url_list_free(&p->urls);
	free(p);
}

static struct member_prop *prop_member(struct node *n, uint64_t raft_id, uint64_t id,
                                       const struct url_list *urls, bool removed)
{
	struct member_prop *p = calloc(1, sizeof(*p));
	int k = cluster_index(n, raft_id);
	if (p == NULL || urls_copy(&p->urls, urls->v, urls->n) != 0) {
		free(p);
		return NULL;
	}
	p->n = n;
	bollard__member_info__init(&p->mi);
	p->mi.raft_id = raft_id;
	p->mi.id = id;
	p->mi.peer_urls = p->urls.v;
	p->mi.n_peer_urls = p->urls.n;
	p->mi.removed = removed;
	p->mi.voter = k >= 0 && n->cluster.members[k].voter;
	p->req = (struct node_req){.data = p, .op = NODE_MEMBER_INFO, .msg = &p->mi.base,
	                           .cb = prop_done};
	return p;
}

static void propose_one_prop(struct node *n, struct member_prop *p)
{
	struct req_list l = {0};
	node_list_push(&l, &p->req);
	node_propose(n, &l);
}

/* A new leadership, once its barrier is applied: the records the cluster
 * lacks. Members of the configuration without a record (a cluster started
 * from --initial-cluster, or an older data dir), records of members no longer
 * configured (a leader crashed before recording a removal, or
 * --force-new-cluster), and the cluster ID. */
static void leading_records(struct node *n)
{
	struct req_list l = {0};
	MDB_txn *txn;
	char key[40];

	if (mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn) != 0)
		return;
	if (!meta_has(n, txn, "cluster")) {
		struct member_prop *p = calloc(1, sizeof(*p));
		if (p != NULL) {
			p->n = n;
			bollard__cluster_info__init(&p->ci);
			p->ci.cluster_id = n->cluster_id;
			p->req = (struct node_req){.data = p, .op = NODE_CLUSTER_INFO,
			                           .msg = &p->ci.base, .cb = prop_done};
			node_list_push(&l, &p->req);
		}
	}
	for (size_t i = 0; i < n->cluster.n; i++) {
		const struct cluster_member *m = &n->cluster.members[i];
		bool configured = conf_find(n, m->id) != NULL;
		struct member_prop *p = NULL;
		MDB_val k, d;
		id_key(key, sizeof(key), "minfo/", m->id);
		k.mv_data = key;
		k.mv_size = strlen(key);
		if (mdb_get(txn, n->mvcc.meta_db, &k, &d) != 0) {
			if (configured)
				p = prop_member(n, m->id, m->member_id, &m->peer_urls, false);
		} else if (!configured) {
			Bollard__MemberInfo *mi = bollard__member_info__unpack(NULL, d.mv_size, d.mv_data);
			if (mi != NULL && !mi->removed)
				p = prop_member(n, m->id, m->member_id, &m->peer_urls, true);
			if (mi != NULL)
				bollard__member_info__free_unpacked(mi, NULL);
		}
		if (p != NULL)
			node_list_push(&l, &p->req);
	}
	mdb_txn_abort(txn);
	if (l.head != NULL)
		blog(BLOG_INFO, "cluster", "recording %zu member/cluster record(s)", l.n);
	node_propose(n, &l);
}

/* Leader: one added as a voter becomes one once in contact and caught up
 * (etcd's 90%; raft's catch-up rounds do the rest), one configuration change
 * at a time, again an election timeout after a failed try. A spare whose
 * record says voter (a leader stopped before add_role) becomes a standby. */
static void members_pump(struct node *n);

struct voter_promo {
	struct raft_change c;
	struct node *n;
	uint64_t id;
	int role;
};

static void promo_done(struct raft_change *c, int status)
{
	struct voter_promo *p = c->data;
	struct node *n = p->n;

	n->promo_in_flight = false;
	if (status != 0) {
		blog(BLOG_WARN, "cluster", "member %016llx not made a %s yet: %s",
		     (unsigned long long)node_member_id_of(n, p->id),
		     p->role == RAFT_VOTER ? "voter" : "standby", raft_strerror(status));
		n->promo_next_ms = node_now_ms(n) + n->cfg.election_ms;
	} else {
		blog(BLOG_INFO, "cluster", "member %016llx is now a raft %s",
		     (unsigned long long)node_member_id_of(n, p->id),
		     p->role == RAFT_VOTER ? "voter (it caught up)" : "standby");
		node_members_sync(n);
	}
	free(p); /* waiting changes: node_members_tick, later in this loop iteration */
}

static void voters_tick(struct node *n, uint64_t now)
{
	const struct raft_configuration *c = &n->raft.configuration;
	struct voter_promo *p;

	if (n->promo_in_flight || n->member_busy || n->member_queue.head != NULL ||
	    n->raft.leader_state.change != NULL || now < n->promo_next_ms)
		return;
	for (unsigned i = 0; i < c->n; i++) {
		const struct raft_server *s = &c->servers[i];
		int k = cluster_index(n, s->id), role;
		if (s->role == RAFT_VOTER || k < 0 || !n->cluster.members[k].voter)
			continue;
		if (s->role == RAFT_SPARE)
			role = RAFT_STANDBY;
		else if (node_contact_since(n, s->id) != 0 && learner_ready(n, s->id))
			role = RAFT_VOTER;
		else
			continue;
		if ((p = calloc(1, sizeof(*p))) == NULL)
			return;
		*p = (struct voter_promo){.n = n, .id = s->id, .role = role};
		p->c.data = p;
		if (raft_assign(&n->raft, &p->c, p->id, role, promo_done) != 0) {
			blog(BLOG_WARN, "cluster", "cannot make member %016llx a voter: %s",
			     (unsigned long long)node_member_id_of(n, p->id), raft_errmsg(&n->raft));
			n->promo_next_ms = now + n->cfg.election_ms;
			free(p);
			return;
		}
		n->promo_in_flight = true;
		return;
	}
}

void node_members_tick(struct node *n)
{
	uint64_t now = node_now_ms(n);
	raft_id lid = 0;
	const char *addr = NULL;

	if (!n->raft_started || n->refusing || n->removed)
		return;
	if (n->joining && n->id_known) {
		struct req_list l = n->join_waiters;
		__atomic_store_n(&n->joining, false, __ATOMIC_RELEASE);
		n->join_waiters = (struct req_list){0};
		blog(BLOG_INFO, "cluster", "joined cluster %016llx as member %016llx; serving clients",
		     (unsigned long long)n->cluster_id, (unsigned long long)n->member_id);
		/* the waiting calls judge whether a learner may serve them and
		 * whether a leader is known from what the loop published */
		node_metrics_publish(n);
		node_list_fail(n, &l, 0);
	}
	raft_leader(&n->raft, &lid, &addr);
	/* a leader heard of once (a removed member may get a heartbeat raft had
	 * queued for it before its removal) but silent since is none */
	if (lid != 0 && lid != n->raft_id && !node_contact_raft_recent(n, lid))
		lid = 0;
	if (lid != 0 || n->leader_seen_ms == 0)
		n->leader_seen_ms = now;
	/* A one-member cluster writes its records once it grows (or after
	 * --force-new-cluster, to retire the others): no extra entries alone. */
	if (raft_state(&n->raft) == RAFT_LEADER && n->members_term != n->raft.current_term &&
	    (n->raft.configuration.n > 1 || n->cfg.force_new_cluster)) {
		if (n->barrier_term == n->raft.current_term) { /* all before it is applied */
			n->members_term = n->raft.current_term;
			leading_records(n);
		} else {
			node_start_barrier(n);
		}
		return;
	}
	members_pump(n);
	if (raft_state(&n->raft) == RAFT_LEADER)
		voters_tick(n, now);
	if (lid != 0 || n->cluster.n < 2 || now - n->leader_seen_ms < 3ull * n->cfg.election_ms ||
	    now < n->status_next_ms)
		return;
	n->status_next_ms = now + n->cfg.election_ms;
	/* over the peer port: raft's address of each member, or for one not in
	 * this member's configuration (none yet: added, then removed before it
	 * received anything), its peer URL from --initial-cluster */
	for (size_t i = 0; i < n->cluster.n; i++) {
		const struct cluster_member *m = &n->cluster.members[i];
		const struct raft_server *s = conf_find(n, m->id);
		char paddr[300], err[256];
		if (m->id == n->raft_id)
			continue;
		if (s != NULL && s->address != NULL)
			node_forward_status(n, s->address, m->id);
		else if (s == NULL && m->peer_urls.n > 0 &&
		         node_raft_address(m->peer_urls.v[0], paddr, sizeof(paddr), err, sizeof(err)) == 0)
			node_forward_status(n, paddr, m->id);
	}
}

void node_serve_join_wait(struct node *n, struct node_req *req)
{
	if (!n->joining)
		node_complete(n, req, 0, NULL, 0);
	else if (n->join_cancelled)
		node_complete(n, req, BOLLARD_ESTOPPED, NULL, 0);
	else
		node_list_push(&n->join_waiters, req);
}

void node_members_start(struct node *n)
{
	/* a member of the configuration already knows its ID (or its cluster
	 * writes its record, as for a restarted one-member cluster) */
	if (strcmp(n->cfg.initial_cluster_state, "existing") != 0 || n->id_known ||
	    conf_find(n, n->raft_id) != NULL)
		return;
	__atomic_store_n(&n->joining, true, __ATOMIC_RELEASE);
	blog(BLOG_INFO, "cluster", "joining: serving clients once the cluster's record of this "
	     "member (its member ID) is applied");
}

void node_join_waits_cancel(struct node *n)
{
	struct req_list l = n->join_waiters;
	n->join_cancelled = true; /* and any that come after */
	n->join_waiters = (struct req_list){0};
	node_list_fail(n, &l, BOLLARD_ESTOPPED);
}

void node_members_close(struct node *n)
{
	struct req_list q = n->member_queue;
	n->member_queue = (struct req_list){0};
	node_list_fail(n, &q, BOLLARD_ESTOPPED);
	node_join_waits_cancel(n);
}

void node_serve_member_status(struct node *n, struct node_req *req)
{
	const Bollard__MemberStatusRequest *q = (const void *)req->msg;
	Bollard__MemberStatusResponse r = BOLLARD__MEMBER_STATUS_RESPONSE__INIT;
	/* a member re-added at the ID's raft ID asks with the old ID until it
	 * learns its new one: a configured raft ID is never told it was removed.
	 * One that never learnt its ID asks with the one it computed: its raft
	 * ID's record says whether it was removed (and not added again). */
	r.removed = (id_removed(n, q->id) || raft_id_removed(n, q->raft_id)) &&
	            !node_is_member_raft(n, q->raft_id);
	node_reply_msg(n, req, &r.base);
}

/* ------------------------------------------------------------- answering */

static void fill_header(struct node *n, Etcdserverpb__ResponseHeader *h)
{
	etcdserverpb__response_header__init(h);
	h->cluster_id = n->cluster_id;
	h->member_id = n->member_id;
	h->raft_term = n->raft.current_term;
}

/* The listed members: raft's configuration, or while this member has none
 * yet (joining), the --initial-cluster table. ms/mp hold n->cluster.n + 1. */
static size_t fill_members(struct node *n, Etcdserverpb__Member *ms, Etcdserverpb__Member **mp)
{
	static char *no_urls[1];
	size_t k = 0;
	bool from_conf = n->raft.configuration.n > 0;
	node_members_sync(n);
	for (size_t i = 0; i < n->cluster.n; i++) {
		const struct cluster_member *m = &n->cluster.members[i];
		const struct raft_server *s = conf_find(n, m->id);
		if (from_conf && s == NULL)
			continue;
		etcdserverpb__member__init(&ms[k]);
		ms[k].id = m->member_id;
		ms[k].n_peerurls = m->peer_urls.n;
		ms[k].peerurls = m->peer_urls.v;
		ms[k].islearner = s != NULL && !is_voting(n, s);
		ms[k].name = m->name;
		if (m->id == n->raft_id) {
			ms[k].name = (char *)n->cfg.name;
			ms[k].n_clienturls = n->client_urls.n;
			ms[k].clienturls = n->client_urls.v;
		} else if (n->attrs && n->attrs[i]) { /* published through raft (forward.c) */
			ms[k].name = n->attrs[i]->name;
			ms[k].n_clienturls = n->attrs[i]->n_client_urls;
			ms[k].clienturls = n->attrs[i]->client_urls;
		} else {
			ms[k].name = (char *)"";
			ms[k].clienturls = no_urls;
		}
		mp[k] = &ms[k];
		k++;
	}
	return k;
}

enum member_op { M_LIST, M_ADD, M_REMOVE, M_PROMOTE, M_UPDATE };

/* Every Cluster response is {header, members} (MemberAdd also member). */
static const ProtobufCMessageDescriptor *const resp_desc[] = {
	[M_LIST] = &etcdserverpb__member_list_response__descriptor,
	[M_ADD] = &etcdserverpb__member_add_response__descriptor,
	[M_REMOVE] = &etcdserverpb__member_remove_response__descriptor,
	[M_PROMOTE] = &etcdserverpb__member_promote_response__descriptor,
	[M_UPDATE] = &etcdserverpb__member_update_response__descriptor,
};

static void set_field(ProtobufCMessage *m, const char *name, void *v, size_t count)
{
	const ProtobufCFieldDescriptor *f =
		protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
	*(void **)(void *)((char *)m + f->offset) = v;
	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		*(size_t *)(void *)((char *)m + f->quantifier_offset) = count;
}

static void reply_members(struct node *n, struct node_req *req, enum member_op op, uint64_t id)
{
	union {
		ProtobufCMessage base;
		Etcdserverpb__MemberListResponse l;
		Etcdserverpb__MemberAddResponse a;
		Etcdserverpb__MemberRemoveResponse r;
		Etcdserverpb__MemberPromoteResponse p;
		Etcdserverpb__MemberUpdateResponse u;
	} resp;
	Etcdserverpb__ResponseHeader h;
	Etcdserverpb__Member *ms = calloc(n->cluster.n + 2, sizeof(*ms));
	Etcdserverpb__Member **mp = calloc(n->cluster.n + 2, sizeof(*mp));
	size_t k;

	if (ms == NULL || mp == NULL) {
		free(ms);
		free(mp);
		node_complete(n, req, -ENOMEM, NULL, 0);
		return;
	}
	k = fill_members(n, ms, mp);
	fill_header(n, &h);
	protobuf_c_message_init(resp_desc[op], &resp);
	set_field(&resp.base, "header", &h, 0);
	set_field(&resp.base, "members", mp, k);
	for (size_t i = 0; op == M_ADD && i < k; i++)
		if (ms[i].id == id)
			resp.a.member = &ms[i];
	node_reply_msg(n, req, &resp.base);
	free(ms);
	free(mp);
}

void node_serve_member_list(struct node *n, struct node_req *req)
{
	reply_members(n, req, M_LIST, 0);
}

/* ------------------------------------------------------------- changes */

struct member_change {
	struct raft_change c;
	struct node *n;
	struct node_req *req;
	enum member_op op;
	uint64_t id;      /* raft's ID */
	uint64_t api_id;  /* etcd's ID */
	int then_role;    /* M_ADD: the role to assign once recorded */
	bool learner;
};

static int change_err(int rv)
{
	switch (rv) {
	case RAFT_NOTLEADER:
	case RAFT_LEADERSHIPLOST:
		return BOLLARD_ENOT_LEADER;
	case RAFT_NOTFOUND:
		return BOLLARD_EMEMBER_NOT_FOUND;
	case RAFT_DUPLICATEID:
		return BOLLARD_EMEMBER_EXIST;
	case RAFT_DUPLICATEADDRESS:
		return BOLLARD_EPEER_URL_EXIST;
	case RAFT_NOCONNECTION:
		return BOLLARD_ELEARNER_NOT_READY;
	default:
		return BOLLARD_ETIMEOUT;
	}
}

static void change_done(struct raft_change *c, int status);

/* M_ADD: raft has the new member (a spare); now a standby, replicated to
 * but not voting, answered once that is applied. A learner stays so until
 * MemberPromote; one added as a voter (its record says so) is made a voter
 * by the leader once it has caught up (voters_tick), as raft 0.15's
 * catch-up rounds give up on a member that has not started within 5 s. */
static void add_role(struct member_change *mc)
{
	struct node *n = mc->n;
	int rv;

	mc->then_role = -1;
	if ((rv = raft_assign(&n->raft, &mc->c, mc->id, RAFT_STANDBY, change_done)) != 0) {
		node_complete(n, mc->req, change_err(rv), NULL, 0);
		free(mc);
	}
}

/* M_ADD: the record is written; now raft's configuration. */
static void add_recorded(struct member_prop *p, int err)
{
	struct member_change *mc = p->ctx;
	struct node *n = mc->n;
	char addr[300], e[256];
	int rv;

	if (err == 0 && raft_state(&n->raft) != RAFT_LEADER)
		err = BOLLARD_ENOT_LEADER;
	if (err == 0 &&
	    node_raft_address(p->urls.v[0], addr, sizeof(addr), e, sizeof(e)) != 0)
		err = BOLLARD_EMEMBER_BAD_URLS;
	if (err == 0 && (rv = raft_add(&n->raft, &mc->c, mc->id, addr, change_done)) != 0)
		err = change_err(rv);
	if (err != 0) {
		node_complete(n, mc->req, err, NULL, 0);
		free(mc);
	}
}

static void removal_recorded(struct member_prop *p, int err)
{
	struct member_change *mc = p->ctx;
	(void)err; /* the removal itself is done; a new leader records it if this failed */
	reply_members(mc->n, mc->req, M_REMOVE, mc->api_id);
	free(mc);
}

static void change_done(struct raft_change *c, int status)
{
	struct member_change *mc = c->data;
	struct node *n = mc->n;
	int k = cluster_index(n, mc->id);
	struct member_prop *p;

	if (status != 0) {
		blog(BLOG_WARN, "cluster", "membership change of %016llx failed: %s",
		     (unsigned long long)mc->api_id, raft_strerror(status));
		node_complete(n, mc->req, change_err(status), NULL, 0);
		free(mc);
		return;
	}
	node_members_sync(n);
	if (mc->op == M_ADD && mc->then_role >= 0) {
		add_role(mc);
		return;
	}
	if (mc->op == M_REMOVE) { /* record the retired ID */
		p = k < 0 ? NULL
		          : prop_member(n, mc->id, mc->api_id, &n->cluster.members[k].peer_urls, true);
		if (p == NULL) {
			node_complete(n, mc->req, -ENOMEM, NULL, 0);
			free(mc);
			return;
		}
		p->then = removal_recorded;
		p->ctx = mc;
		propose_one_prop(n, p);
		return;
	}
	blog(BLOG_INFO, "cluster", "membership change of %016llx applied",
	     (unsigned long long)mc->api_id);
	reply_members(n, mc->req, mc->op, mc->api_id);
	free(mc);
}

static struct member_change *new_change(struct node *n, struct node_req *req, enum member_op op,
                                        uint64_t id, uint64_t api_id)
{
	struct member_change *mc = calloc(1, sizeof(*mc));
	if (mc == NULL) {
		node_complete(n, req, -ENOMEM, NULL, 0);
		return NULL;
	}
	mc->n = n;
	mc->req = req;
	mc->op = op;
	mc->id = id;
	mc->api_id = api_id;
	mc->then_role = -1;
	mc->c.data = mc;
	return mc;
}

/* url is a peer URL of a configured member other than raft_id. */
static bool url_in_use(struct node *n, const char *url, uint64_t except)
{
	for (size_t i = 0; i < n->cluster.n; i++) {
		const struct cluster_member *m = &n->cluster.members[i];
		if (m->id == except || (n->raft.configuration.n && conf_find(n, m->id) == NULL))
			continue;
		for (size_t j = 0; j < m->peer_urls.n; j++)
			if (strcmp(m->peer_urls.v[j], url) == 0)
				return true;
	}
	return false;
}


/* etcd's "started": it has a name (from --initial-cluster, or published
 * through raft once it ran). */
static bool is_started(struct node *n, uint64_t raft_id)
{
	int k = cluster_index(n, raft_id);
	if (raft_id == n->raft_id)
		return true;
	if (k < 0)
		return false;
	return n->cluster.members[k].name[0] != '\0' ||
	       (n->attrs && n->attrs[k] && n->attrs[k]->name && n->attrs[k]->name[0] != '\0');
}

enum strict_op { STRICT_ADD, STRICT_ADD_LEARNER, STRICT_REMOVE, STRICT_PROMOTE };

/* --strict-reconfig-check (on by default): etcd's refusals of changes that
 * would leave the cluster without a quorum of started or connected members
 * (core/reconfig.h), judged by the leader from its configuration and its
 * contact with each peer (contact.c). id: raft's ID of the member removed or
 * promoted (0: none such). */
static int strict_check(struct node *n, enum strict_op op, uint64_t id)
{
	const struct raft_configuration *c = &n->raft.configuration;
	struct reconfig_member *ms;
	struct reconfig_view v;
	int rc = 0;

	if (!n->cfg.strict_reconfig_check)
		return 0;
	if ((ms = calloc(c->n ? c->n : 1, sizeof(*ms))) == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < c->n; i++)
		ms[i] = (struct reconfig_member){
			.id = c->servers[i].id,
			.learner = !is_voting(n, &c->servers[i]),
			.started = is_started(n, c->servers[i].id),
			.active_since_ms = node_contact_since(n, c->servers[i].id),
		};
	v = (struct reconfig_view){.members = ms, .n = c->n, .self = n->raft_id,
	                           .now_ms = node_now_ms(n)};
	switch (op) {
	case STRICT_ADD: rc = reconfig_may_add(&v, false); break;
	case STRICT_ADD_LEARNER: rc = reconfig_may_add(&v, true); break;
	case STRICT_REMOVE: rc = reconfig_may_remove(&v, id); break;
	case STRICT_PROMOTE: rc = reconfig_may_promote(&v, id); break;
	}
	free(ms);
	if (rc != 0)
		blog(BLOG_WARN, "cluster", "rejecting member %s request: %s",
		     op == STRICT_REMOVE ? "remove" : op == STRICT_PROMOTE ? "promote" : "add",
		     bollard_strerror(rc));
	return rc;
}

/* Parse the peer URLs of an add or update (etcd's "given member URLs are
 * invalid" for any bad one). */
static int parse_peer_urls(char **v, size_t k, struct url_list *urls, char *addr, size_t alen)
{
	char csv[1024] = "", err[256];
	for (size_t i = 0; i < k; i++) {
		size_t l = strlen(csv);
		snprintf(csv + l, sizeof(csv) - l, "%s%s", i ? "," : "", v[i]);
	}
	if (k == 0 || ids_parse_urls(csv, urls, err, sizeof(err)) != 0)
		return BOLLARD_EMEMBER_BAD_URLS;
	if (node_raft_address(urls->v[0], addr, alen, err, sizeof(err)) != 0) {
		url_list_free(urls);
		return BOLLARD_EMEMBER_BAD_URLS;
	}
	return 0;
}

/* On a follower, membership calls go to the leader (forward.c). */
/* On a follower, membership calls go to the leader (forward.c). With no
 * leader known, an add or a remove is first judged by the strict check here,
 * as each etcd member judges with its own view of its peers: a member cut
 * off from the rest answers "unhealthy cluster" at once. */
static bool leads(struct node *n, struct node_req *req, int strict_op, uint64_t id)
{
	raft_id lid = 0;
	const char *addr = NULL;
	int rv;

	if (raft_state(&n->raft) == RAFT_LEADER)
		return true;
	raft_leader(&n->raft, &lid, &addr);
	if (lid == 0 && strict_op >= 0 && (rv = strict_check(n, strict_op, id)) != 0) {
		node_complete(n, req, rv, NULL, 0);
		return false;
	}
	node_forward_member(n, req);
	return false;
}

static void member_add(struct node *n, struct node_req *req)
{
	const Etcdserverpb__MemberAddRequest *q = (const void *)req->msg;
	struct url_list urls = {0};
	struct member_change *mc;
	struct member_prop *p;
	char addr[300];
	size_t learners = 0;
	uint64_t id, api_id;
	int rv;

	if (!leads(n, req, q->islearner ? STRICT_ADD_LEARNER : STRICT_ADD, 0))
		return;
	if ((rv = parse_peer_urls(q->peerurls, q->n_peerurls, &urls, addr, sizeof(addr))) != 0 ||
	    (rv = strict_check(n, q->islearner ? STRICT_ADD_LEARNER : STRICT_ADD, 0)) != 0) {
		url_list_free(&urls);
		node_complete(n, req, rv, NULL, 0);
		return;
	}
	for (size_t i = 0; i < urls.n; i++)
		if (url_in_use(n, urls.v[i], 0)) {
			url_list_free(&urls);
			node_complete(n, req, BOLLARD_EPEER_URL_EXIST, NULL, 0);
			return;
		}
	/* raft's ID: what the new member computes from its flags; etcd's: the
	 * URLs and the time (etcd's MemberAdd hashes no cluster token), so a URL
	 * added again is a new member. */
	id = ids_member_id(&urls, n->cfg.initial_cluster_token);
	api_id = ids_member_id_at(&urls, "", (int64_t)time(NULL));
	if (id_removed(n, api_id)) { /* etcd: ErrIDRemoved, answered as not found */
		url_list_free(&urls);
		node_complete(n, req, BOLLARD_EMEMBER_NOT_FOUND, NULL, 0);
		return;
	}
	if (conf_find(n, id) != NULL || node_raft_id_of(n, api_id) != 0) {
		url_list_free(&urls);
		node_complete(n, req, BOLLARD_EMEMBER_EXIST, NULL, 0);
		return;
	}
	for (unsigned i = 0; i < n->raft.configuration.n; i++)
		learners += !is_voting(n, &n->raft.configuration.servers[i]);
	if (q->islearner && learners >= 1) { /* etcd's maxLearners */
		url_list_free(&urls);
		node_complete(n, req, BOLLARD_ETOO_MANY_LEARNERS, NULL, 0);
		return;
	}
	/* The member's peer URLs and ID as given (raft knows only its address):
	 * recorded for all, then added to raft's configuration. A leader that
	 * crashes in between leaves a record without a member, which the next
	 * leader retires (leading_records). */
	{
		int k = cluster_index(n, id);
		if (k < 0 && (rv = append_member(n, id, urls.v, urls.n)) == 0)
			k = cluster_index(n, id);
		else if (k >= 0)
			rv = urls_copy(&n->cluster.members[k].peer_urls, urls.v, urls.n);
		url_list_free(&urls);
		if (rv != 0 || k < 0) {
			node_complete(n, req, -ENOMEM, NULL, 0);
			return;
		}
		n->cluster.members[k].member_id = api_id;
		if (n->cluster.members[k].name[0] != '\0') { /* a removed member's, at this ID */
			char *e = strdup("");
			if (e != NULL) {
				free(n->cluster.members[k].name);
				n->cluster.members[k].name = e;
			}
		}
		if (n->attrs[k] != NULL) { /* the name of a removed member at this ID */
			bollard__member_attributes__free_unpacked(n->attrs[k], NULL);
			n->attrs[k] = NULL;
		}
	}
	if ((mc = new_change(n, req, M_ADD, id, api_id)) == NULL)
		return;
	mc->learner = q->islearner;
	mc->then_role = RAFT_STANDBY;
	n->cluster.members[cluster_index(n, id)].voter = !q->islearner;
	p = prop_member(n, id, api_id, &n->cluster.members[cluster_index(n, id)].peer_urls, false);
	if (p == NULL) {
		node_complete(n, req, -ENOMEM, NULL, 0);
		free(mc);
		return;
	}
	p->then = add_recorded;
	p->ctx = mc;
	propose_one_prop(n, p);
}

static void member_remove(struct node *n, struct node_req *req)
{
	const Etcdserverpb__MemberRemoveRequest *q = (const void *)req->msg;
	struct member_change *mc;
	uint64_t id;
	int rv;

	id = node_raft_id_of(n, q->id);
	if (!leads(n, req, STRICT_REMOVE, id))
		return;
	if ((rv = strict_check(n, STRICT_REMOVE, id)) != 0 ||
	    (id == 0 && (rv = BOLLARD_EMEMBER_NOT_FOUND) != 0)) {
		node_complete(n, req, rv, NULL, 0);
		return;
	}
	if ((mc = new_change(n, req, M_REMOVE, id, q->id)) == NULL)
		return;
	if ((rv = raft_remove(&n->raft, &mc->c, id, change_done)) != 0) {
		node_complete(n, req, change_err(rv), NULL, 0);
		free(mc);
	}
}

static void member_promote(struct node *n, struct node_req *req)
{
	const Etcdserverpb__MemberPromoteRequest *q = (const void *)req->msg;
	const struct raft_server *s;
	struct member_change *mc;
	uint64_t id;
	int rv;

	if (!leads(n, req, -1, 0)) /* etcd's followers leave it to the leader */
		return;
	/* etcd's order: in sync, the strict check, then what the apply checks */
	id = node_raft_id_of(n, q->id);
	if (!learner_ready(n, id)) {
		node_complete(n, req, BOLLARD_ELEARNER_NOT_READY, NULL, 0);
		return;
	}
	if ((rv = strict_check(n, STRICT_PROMOTE, id)) != 0) {
		node_complete(n, req, rv, NULL, 0);
		return;
	}
	if (id == 0 || (s = conf_find(n, id)) == NULL) {
		node_complete(n, req, BOLLARD_EMEMBER_NOT_FOUND, NULL, 0);
		return;
	}
	if (is_voting(n, s)) {
		node_complete(n, req, BOLLARD_EMEMBER_NOT_LEARNER, NULL, 0);
		return;
	}
	if ((mc = new_change(n, req, M_PROMOTE, id, q->id)) == NULL)
		return;
	if ((rv = raft_assign(&n->raft, &mc->c, id, RAFT_VOTER, change_done)) != 0) {
		node_complete(n, req, change_err(rv), NULL, 0);
		free(mc);
	}
}

static void update_recorded(struct member_prop *p, int err)
{
	struct node_req *req = p->ctx;
	if (err != 0)
		node_complete(p->n, req, err, NULL, 0);
	else
		reply_members(p->n, req, M_UPDATE, p->mi.id);
}

static void member_update(struct node *n, struct node_req *req)
{
	const Etcdserverpb__MemberUpdateRequest *q = (const void *)req->msg;
	struct url_list urls = {0};
	struct member_prop *p;
	char addr[300];
	uint64_t id;
	int rv;

	if (!leads(n, req, -1, 0))
		return;
	if ((id = node_raft_id_of(n, q->id)) == 0) {
		node_complete(n, req, BOLLARD_EMEMBER_NOT_FOUND, NULL, 0);
		return;
	}
	if ((rv = parse_peer_urls(q->peerurls, q->n_peerurls, &urls, addr, sizeof(addr))) != 0) {
		node_complete(n, req, rv, NULL, 0);
		return;
	}
	for (size_t i = 0; i < urls.n; i++)
		if (url_in_use(n, urls.v[i], id)) {
			url_list_free(&urls);
			node_complete(n, req, BOLLARD_EPEER_URL_EXIST, NULL, 0);
			return;
		}
	p = prop_member(n, id, q->id, &urls, false);
	url_list_free(&urls);
	if (p == NULL) {
		node_complete(n, req, -ENOMEM, NULL, 0);
		return;
	}
	p->then = update_recorded;
	p->ctx = req;
	propose_one_prop(n, p);
}

/* ------------------------------------------------- one change at a time */

/* canonical/raft takes one configuration change at a time (RAFT_CANTCHANGE
 * while one is in flight), and an add here is three steps (record, raft_add,
 * standby). So the leader runs MemberAdd, MemberRemove, MemberPromote and
 * MemberUpdate (a record only, but judged against the peer URLs the others
 * leave: etcd makes it a configuration change too) one after another: a call
 * that comes while another has its turn (or while the leader makes an added
 * member a voter, voters_tick) waits in n->member_queue, is judged (strict
 * check included) when its turn comes, as etcd judges a change against the
 * configuration before it, and fails with "request timed out" once it has
 * waited the request timeout or its caller's deadline has passed; it never
 * starts after either (a forwarded call carries its caller's time left).
 * (etcd 3.4's raft instead drops a change proposed while another is
 * unapplied; its caller waits until its deadline.) A turn ends when the call
 * is answered: its callback is wrapped for that. */
struct member_turn {
	struct node *n;
	node_req_cb cb;
	void *data;
};

static void turn_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct member_turn *t = req->data;
	struct node *n = t->n;

	req->cb = t->cb;
	req->data = t->data;
	free(t);
	n->member_busy = false;
	req->cb(req, err, resp, len);
	/* the next turn from node_members_tick, later in this loop iteration:
	 * this may run inside raft (a proposal failed as leadership is lost),
	 * where raft_apply must not be called */
}

static void member_begin(struct node *n, struct node_req *req)
{
	struct member_turn *t;

	if (raft_state(&n->raft) == RAFT_LEADER) {
		if ((t = malloc(sizeof(*t))) == NULL) {
			node_complete(n, req, -ENOMEM, NULL, 0);
			return;
		}
		*t = (struct member_turn){.n = n, .cb = req->cb, .data = req->data};
		req->cb = turn_done;
		req->data = t;
		n->member_busy = true;
	}
	switch (req->op) {
	case NODE_MEMBER_ADD: member_add(n, req); break;
	case NODE_MEMBER_REMOVE: member_remove(n, req); break;
	case NODE_MEMBER_UPDATE: member_update(n, req); break;
	default: member_promote(n, req); break;
	}
}

/* The leader has a change in flight that is not a call's turn: its own
 * (voters_tick), or one raft would refuse a new change for (RAFT_CANTCHANGE,
 * which a call would have been answered "request timed out" for at once): a
 * configuration entry not committed yet, also one this leader inherited
 * from the leader before it, or a promotion's catch-up rounds. */
static bool change_pending(struct node *n)
{
	return raft_state(&n->raft) == RAFT_LEADER &&
	       (n->promo_in_flight || n->raft.leader_state.change != NULL ||
	        n->raft.configuration_uncommitted_index != 0 ||
	        n->raft.leader_state.promotee_id != 0);
}

/* Waiting calls: the expired fail, the first takes its turn when free. */
static void members_pump(struct node *n)
{
	struct req_list all = n->member_queue, late = {0};
	struct node_req *r;

	if (n->member_pumping)
		return;
	n->member_pumping = true;
	n->member_queue = (struct req_list){0};
	for (r = all.head; r != NULL;) {
		struct node_req *next = r->next_;
		node_list_push(n->closing || node_req_expired(n, r) ? &late : &n->member_queue, r);
		r = next;
	}
	node_list_fail(n, &late, n->closing ? BOLLARD_ESTOPPED : BOLLARD_ETIMEOUT);
	while (!n->member_busy && !change_pending(n) && (r = n->member_queue.head) != NULL) {
		n->member_queue.head = r->next_;
		if (n->member_queue.head == NULL)
			n->member_queue.tail = NULL;
		n->member_queue.n--;
		r->next_ = NULL;
		member_begin(n, r);
	}
	n->member_pumping = false;
}

void node_serve_member_change(struct node *n, struct node_req *req)
{
	if (raft_state(&n->raft) != RAFT_LEADER) { /* forwarded, or judged here */
		member_begin(n, req);
		return;
	}
	node_list_push(&n->member_queue, req);
	members_pump(n);
}

/* ------------------------------------------- calls forwarded by followers */

struct member_call {
	struct node_req sub;
	struct node_req *outer;
	struct node *n;
};

static void member_call_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct member_call *mc = req->data;
	struct node *n = mc->n;
	Bollard__MemberCallResponse r = BOLLARD__MEMBER_CALL_RESPONSE__INIT;
	if (err != 0) {
		node_complete(n, mc->outer, err, NULL, 0);
	} else {
		r.index = raft_last_applied(&n->raft);
		r.resp.data = resp;
		r.resp.len = len;
		node_reply_msg(n, mc->outer, &r.base);
	}
	free(resp);
	free(mc);
}

void node_serve_member_call(struct node *n, struct node_req *req)
{
	const Bollard__MemberCall *q = (const void *)req->msg;
	struct member_call *mc;

	if (raft_state(&n->raft) != RAFT_LEADER) { /* never forwarded twice */
		node_complete(n, req, BOLLARD_ENOT_LEADER, NULL, 0);
		return;
	}
	if ((mc = calloc(1, sizeof(*mc))) == NULL) {
		node_complete(n, req, -ENOMEM, NULL, 0);
		return;
	}
	mc->n = n;
	mc->outer = req;
	mc->sub.data = mc;
	mc->sub.cb = member_call_done;
	mc->sub.msg = (const ProtobufCMessage *)(const void *)q->add; /* any member of the oneof */
	mc->sub.seq_ = node_now_ms(n); /* when it came (the queue's timeout) */
	/* the sooner of this call's deadline and the caller's */
	mc->sub.deadline_ns = req->deadline_ns;
	if (q->timeout_ms != 0) {
		uint64_t d = node_clock_ns() + q->timeout_ms * 1000000;
		if (mc->sub.deadline_ns == 0 || d < mc->sub.deadline_ns)
			mc->sub.deadline_ns = d;
	}
	switch (q->call_case) {
	case BOLLARD__MEMBER_CALL__CALL_ADD: mc->sub.op = NODE_MEMBER_ADD; break;
	case BOLLARD__MEMBER_CALL__CALL_REMOVE: mc->sub.op = NODE_MEMBER_REMOVE; break;
	case BOLLARD__MEMBER_CALL__CALL_UPDATE: mc->sub.op = NODE_MEMBER_UPDATE; break;
	case BOLLARD__MEMBER_CALL__CALL_PROMOTE: mc->sub.op = NODE_MEMBER_PROMOTE; break;
	default:
		free(mc);
		node_complete(n, req, BOLLARD_EBAD_REQUEST, NULL, 0);
		return;
	}
	node_serve_member_change(n, &mc->sub);
}

bool node_is_learner(struct node *n)
{
	const struct raft_server *s = conf_find(n, n->raft_id);
	return s != NULL && !is_voting(n, s);
}

bool node_is_member_raft(struct node *n, uint64_t raft_id)
{
	return n->raft.configuration.n ? conf_find(n, raft_id) != NULL
	                               : cluster_index(n, raft_id) >= 0;
}
