/* members.c - membership changes (etcd's Cluster service: MemberAdd,
 * MemberRemove, MemberPromote) through canonical/raft's configuration
 * changes on the leader, and the member table kept in step with raft's
 * configuration on every member.
 *
 * The raft configuration is the membership: IDs, raft addresses and roles
 * (RAFT_VOTER = member, RAFT_STANDBY or a just-added RAFT_SPARE = learner).
 * n->cluster (from --initial-cluster) grows with members added later
 * (node_members_sync), so names and client URLs published through raft
 * (forward.c) can be attached to them; removed members stay in n->cluster
 * but are not listed.
 *
 * Deviation from etcd: a new member's ID is derived from its peer URLs and
 * the cluster token only (etcd also hashes the current time), so the member
 * started with --initial-cluster-state existing computes the same ID from
 * its own flags without asking the cluster. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/errors.h"
#include "node/log.h"
#include "node/node_int.h"

static const struct raft_server *conf_find(struct node *n, uint64_t id)
{
	for (unsigned i = 0; i < n->raft.configuration.n; i++)
		if (n->raft.configuration.servers[i].id == id)
			return &n->raft.configuration.servers[i];
	return NULL;
}

static int cluster_index(struct node *n, uint64_t id)
{
	for (size_t i = 0; i < n->cluster.n; i++)
		if (n->cluster.members[i].id == id)
			return (int)i;
	return -1;
}

/* "127.0.0.1:2380" -> "http://127.0.0.1:2380" as the peer URL of a member
 * known only from the raft configuration. */
static int append_member(struct node *n, const struct raft_server *s)
{
	struct cluster_member *ms;
	Bollard__MemberAttributes **as;
	uint64_t self_id = n->self ? n->self->id : 0;
	size_t k = n->cluster.n;
	char url[320];

	ms = realloc(n->cluster.members, (k + 1) * sizeof(*ms));
	if (ms == NULL)
		return -ENOMEM;
	n->cluster.members = ms;
	as = realloc(n->attrs, (k + 1) * sizeof(*as));
	if (as == NULL)
		return -ENOMEM;
	n->attrs = as;
	as[k] = NULL;
	memset(&ms[k], 0, sizeof(ms[k]));
	ms[k].id = s->id;
	ms[k].name = strdup("");
	snprintf(url, sizeof(url), "http://%s", s->address ? s->address : "");
	ms[k].peer_urls.v = calloc(1, sizeof(char *));
	if (ms[k].name == NULL || ms[k].peer_urls.v == NULL ||
	    (ms[k].peer_urls.v[0] = strdup(url)) == NULL) {
		free(ms[k].name);
		free(ms[k].peer_urls.v);
		return -ENOMEM;
	}
	ms[k].peer_urls.n = 1;
	n->cluster.n = k + 1;
	if (self_id) {
		int i = cluster_index(n, self_id);
		n->self = i >= 0 ? &n->cluster.members[i] : n->self;
	}
	return 0;
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
		if (append_member(n, s) != 0)
			return;
		added = true;
	}
	if (added)
		node_forward_reload(n);
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
		ms[k].id = m->id;
		ms[k].n_peerurls = m->peer_urls.n;
		ms[k].peerurls = m->peer_urls.v;
		ms[k].islearner = s != NULL && s->role != RAFT_VOTER;
		ms[k].name = m->name;
		if (m == n->self) {
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

enum member_op { M_LIST, M_ADD, M_REMOVE, M_PROMOTE };

static void reply_members(struct node *n, struct node_req *req, enum member_op op, uint64_t id)
{
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
	switch (op) {
	case M_ADD: {
		Etcdserverpb__MemberAddResponse r = ETCDSERVERPB__MEMBER_ADD_RESPONSE__INIT;
		r.header = &h;
		r.members = mp;
		r.n_members = k;
		for (size_t i = 0; i < k; i++)
			if (ms[i].id == id)
				r.member = &ms[i];
		node_reply_msg(n, req, &r.base);
		break;
	}
	case M_REMOVE: {
		Etcdserverpb__MemberRemoveResponse r = ETCDSERVERPB__MEMBER_REMOVE_RESPONSE__INIT;
		r.header = &h;
		r.members = mp;
		r.n_members = k;
		node_reply_msg(n, req, &r.base);
		break;
	}
	case M_PROMOTE: {
		Etcdserverpb__MemberPromoteResponse r = ETCDSERVERPB__MEMBER_PROMOTE_RESPONSE__INIT;
		r.header = &h;
		r.members = mp;
		r.n_members = k;
		node_reply_msg(n, req, &r.base);
		break;
	}
	default: {
		Etcdserverpb__MemberListResponse r = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
		h.revision = 0;
		r.header = &h;
		r.members = mp;
		r.n_members = k;
		node_reply_msg(n, req, &r.base);
		break;
	}
	}
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
	uint64_t id;
	int then_role; /* M_ADD: the role to assign once added, -1 none */
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

static void bg_done(struct raft_change *c, int status)
{
	struct member_change *bg = c->data;
	if (status != 0)
		blog(BLOG_WARN, "cluster", "promotion of new member %016llx: %s",
		     (unsigned long long)bg->id, raft_strerror(status));
	free(bg);
}

static void change_done(struct raft_change *c, int status)
{
	struct member_change *mc = c->data;
	struct node *n = mc->n;

	if (status != 0) {
		blog(BLOG_WARN, "cluster", "membership change of %016llx failed: %s",
		     (unsigned long long)mc->id, raft_strerror(status));
		node_complete(n, mc->req, change_err(status), NULL, 0);
		free(mc);
		return;
	}
	if (mc->op == M_ADD && mc->then_role >= 0) {
		int role = mc->then_role, rv;
		mc->then_role = -1;
		if (!mc->learner) {
			/* etcd: a voting member is added at once; the leader catches it
			 * up once it starts (raft's promotion rounds), not waited for. */
			struct member_change *bg = calloc(1, sizeof(*bg));
			uint64_t id = mc->id;
			reply_members(n, mc->req, M_ADD, id);
			free(mc);
			if (bg == NULL)
				return;
			bg->n = n;
			bg->id = id;
			bg->c.data = bg;
			if (raft_assign(&n->raft, &bg->c, id, role, bg_done) != 0)
				free(bg);
			return;
		}
		if ((rv = raft_assign(&n->raft, &mc->c, mc->id, role, change_done)) != 0) {
			node_complete(n, mc->req, change_err(rv), NULL, 0);
			free(mc);
		}
		return;
	}
	node_members_sync(n);
	blog(BLOG_INFO, "cluster", "membership change of %016llx applied", (unsigned long long)mc->id);
	reply_members(n, mc->req, mc->op, mc->id);
	free(mc);
}

static struct member_change *new_change(struct node *n, struct node_req *req, enum member_op op,
                                        uint64_t id)
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
	mc->then_role = -1;
	mc->c.data = mc;
	return mc;
}

static bool url_in_use(struct node *n, const char *url)
{
	for (size_t i = 0; i < n->cluster.n; i++) {
		const struct cluster_member *m = &n->cluster.members[i];
		if (n->raft.configuration.n && conf_find(n, m->id) == NULL)
			continue;
		for (size_t j = 0; j < m->peer_urls.n; j++)
			if (strcmp(m->peer_urls.v[j], url) == 0)
				return true;
	}
	return false;
}

/* etcd's isLearnerReady: the learner's match index is at least 90% of the
 * leader's. */
static bool learner_ready(struct node *n, uint64_t id)
{
	const struct raft_configuration *c = &n->raft.configuration;
	raft_index last = n->raft.last_stored;
	for (unsigned i = 0; i < c->n; i++)
		if (c->servers[i].id == id && n->raft.leader_state.progress)
			return (double)n->raft.leader_state.progress[i].match_index >= (double)last * 0.9;
	return false;
}

void node_serve_member_add(struct node *n, struct node_req *req)
{
	const Etcdserverpb__MemberAddRequest *q = (const void *)req->msg;
	struct url_list urls = {0};
	struct member_change *mc;
	char csv[1024] = "", err[256], addr[300];
	size_t learners = 0;
	uint64_t id;
	int rv;

	if (raft_state(&n->raft) != RAFT_LEADER) {
		node_complete(n, req, BOLLARD_ENOT_LEADER, NULL, 0);
		return;
	}
	for (size_t i = 0; i < q->n_peerurls; i++) {
		size_t l = strlen(csv);
		snprintf(csv + l, sizeof(csv) - l, "%s%s", i ? "," : "", q->peerurls[i]);
	}
	if (q->n_peerurls == 0 || ids_parse_urls(csv, &urls, err, sizeof(err)) != 0 ||
	    node_raft_address(urls.v[0], addr, sizeof(addr), err, sizeof(err)) != 0) {
		url_list_free(&urls);
		node_complete(n, req, BOLLARD_EMEMBER_BAD_URLS, NULL, 0);
		return;
	}
	id = ids_member_id(&urls, n->cfg.initial_cluster_token);
	for (size_t i = 0; i < urls.n; i++)
		if (url_in_use(n, urls.v[i])) {
			url_list_free(&urls);
			node_complete(n, req, BOLLARD_EPEER_URL_EXIST, NULL, 0);
			return;
		}
	if (conf_find(n, id) != NULL) {
		url_list_free(&urls);
		node_complete(n, req, BOLLARD_EMEMBER_EXIST, NULL, 0);
		return;
	}
	for (unsigned i = 0; i < n->raft.configuration.n; i++)
		learners += n->raft.configuration.servers[i].role != RAFT_VOTER;
	if (q->islearner && learners >= 1) { /* etcd's maxLearners */
		url_list_free(&urls);
		node_complete(n, req, BOLLARD_ETOO_MANY_LEARNERS, NULL, 0);
		return;
	}
	/* Record the member's peer URLs as given (raft knows only its address). */
	{
		struct raft_server s = {.id = id, .address = addr, .role = RAFT_SPARE};
		int k;
		if (append_member(n, &s) != 0) {
			url_list_free(&urls);
			node_complete(n, req, -ENOMEM, NULL, 0);
			return;
		}
		k = cluster_index(n, id);
		url_list_free(&n->cluster.members[k].peer_urls);
		n->cluster.members[k].peer_urls = urls;
	}
	if ((mc = new_change(n, req, M_ADD, id)) == NULL)
		return;
	mc->learner = q->islearner;
	mc->then_role = q->islearner ? RAFT_STANDBY : RAFT_VOTER;
	if ((rv = raft_add(&n->raft, &mc->c, id, addr, change_done)) != 0) {
		node_complete(n, req, change_err(rv), NULL, 0);
		free(mc);
	}
}

void node_serve_member_remove(struct node *n, struct node_req *req)
{
	const Etcdserverpb__MemberRemoveRequest *q = (const void *)req->msg;
	struct member_change *mc;
	int rv;

	if (raft_state(&n->raft) != RAFT_LEADER) {
		node_complete(n, req, BOLLARD_ENOT_LEADER, NULL, 0);
		return;
	}
	if (conf_find(n, q->id) == NULL) {
		node_complete(n, req, BOLLARD_EMEMBER_NOT_FOUND, NULL, 0);
		return;
	}
	if ((mc = new_change(n, req, M_REMOVE, q->id)) == NULL)
		return;
	if ((rv = raft_remove(&n->raft, &mc->c, q->id, change_done)) != 0) {
		node_complete(n, req, change_err(rv), NULL, 0);
		free(mc);
	}
}

void node_serve_member_promote(struct node *n, struct node_req *req)
{
	const Etcdserverpb__MemberPromoteRequest *q = (const void *)req->msg;
	const struct raft_server *s;
	struct member_change *mc;
	int rv;

	if (raft_state(&n->raft) != RAFT_LEADER) {
		node_complete(n, req, BOLLARD_ENOT_LEADER, NULL, 0);
		return;
	}
	if ((s = conf_find(n, q->id)) == NULL) {
		node_complete(n, req, BOLLARD_EMEMBER_NOT_FOUND, NULL, 0);
		return;
	}
	if (s->role == RAFT_VOTER) {
		node_complete(n, req, BOLLARD_EMEMBER_NOT_LEARNER, NULL, 0);
		return;
	}
	if (!learner_ready(n, q->id)) {
		node_complete(n, req, BOLLARD_ELEARNER_NOT_READY, NULL, 0);
		return;
	}
	if ((mc = new_change(n, req, M_PROMOTE, q->id)) == NULL)
		return;
	if ((rv = raft_assign(&n->raft, &mc->c, q->id, RAFT_VOTER, change_done)) != 0) {
		node_complete(n, req, change_err(rv), NULL, 0);
		free(mc);
	}
}

bool node_is_learner(struct node *n)
{
	const struct raft_server *s = conf_find(n, n->member_id);
	return s != NULL && s->role != RAFT_VOTER;
}

bool node_is_member(struct node *n, uint64_t id)
{
	return n->raft.configuration.n ? conf_find(n, id) != NULL : cluster_index(n, id) >= 0;
}
