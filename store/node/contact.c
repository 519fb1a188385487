/* contact.c - how long this member has been in touch with each peer (etcd's
 * rafthttp "active since": the time its stream with a peer came up, zero
 * while it is down). A peer is in contact since the first sign of it after a
 * silence of more than an election timeout, and out of contact once it has
 * been silent that long, or at once when a connection to it fails. Signs are
 * raft messages received from it and answers to probes: every member asks
 * every other member of the configuration, four times per election timeout
 * (at most every 250 ms, at least a heartbeat interval apart), over the peer
 * port (bollard.Internal/MemberStatus, forward.c), as etcd's members
 * keep a stream up with each other whatever their roles. So a new leader
 * knows how long the followers have been up (raft alone would tell it only
 * of the old leader), and a killed member is out of contact once a probe
 * finds its port closed, not an election timeout later. The strict
 * reconfiguration checks (members.c, core/reconfig.c) read it.
 *
 * "That long" is etcd's peer connection read timeout (5 s of silence, its
 * streams' heartbeats come every 5/3 s), not the election timeout: a hung
 * (SIGSTOPped) member is out of contact 5 s after it stopped (etcd 3.4.23:
 * 4.9 s with a 1 s election timeout, tests/integration/test_member_queue.py)
 * and, once it runs again, in contact from then.
 *
 * Raft messages alone are kept apart too (node_contact_raft_recent): a member
 * removed from the cluster still gets answers to its probes, but no more
 * messages from the leader, which is how it notices (members.c).
 *
 * raft_io's start is wrapped (before raft_start calls it) so raft's receive
 * callback passes through here first, and its tick is kept; raft_io's send
 * is wrapped so a leader knows the commit index each peer was last sent
 * (node_contact_commit_now). */
#include <errno.h>
#include <stdlib.h>

#include "core/errors.h"
#include "node/node_int.h"

#define PROBE_MAX_MS 250
#define SILENCE_MS 5000 /* etcd's rafthttp ConnReadTimeout */

struct node_contact {
	uint64_t id;
	uint64_t first_ms; /* start of the current contact */
	uint64_t last_ms;  /* last sign; 0: out of contact */
	uint64_t raft_ms;  /* last raft message */
	uint64_t probe_ms; /* last probe sent */
	uint64_t commit_sent; /* the commit index it can have learnt from us (send_wrap) */
	uint64_t told_ms;     /* node_contact_commit_now sent it one, not yet answered */
	bool probing;      /* a probe is out */
};

static struct node *node_of(struct raft_io *io)
{
	return (struct node *)(void *)((char *)io - offsetof(struct node, io));
}

static struct node_contact *find(struct node *n, uint64_t id, bool add)
{
	struct node_contact *c;
	for (size_t i = 0; i < n->n_contacts; i++)
		if (n->contacts[i].id == id)
			return &n->contacts[i];
	if (!add || (c = realloc(n->contacts, (n->n_contacts + 1) * sizeof(*c))) == NULL)
		return NULL;
	n->contacts = c;
	c = &c[n->n_contacts++];
	*c = (struct node_contact){.id = id};
	return c;
}

/* The silence after which a peer is out of contact: etcd's, or for a
 * heartbeat interval that long, two of them. */
static uint64_t silence_ms(const struct node *n)
{
	return SILENCE_MS > 2ull * n->cfg.heartbeat_ms ? SILENCE_MS : 2ull * n->cfg.heartbeat_ms;
}

static void heard(struct node *n, struct node_contact *c, uint64_t now)
{
	if (c->last_ms == 0 || now - c->last_ms > silence_ms(n))
		c->first_ms = now;
	c->last_ms = now;
}

static void recv_cb(struct raft_io *io, struct raft_message *msg)
{
	struct node *n = node_of(io);
	struct node_contact *c = find(n, msg->server_id, true);
	uint64_t now = node_now_ms(n);

	if (c != NULL) {
		heard(n, c, now);
		c->raft_ms = now;
		if (msg->type == RAFT_IO_APPEND_ENTRIES_RESULT)
			c->told_ms = 0;
	}
	n->io_recv(io, msg);
}

static int start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
	struct node *n = node_of(io);
	n->io_recv = recv;
	n->io_tick = tick;
	return n->io_start(io, msecs, tick, recv_cb);
}

/* What a follower can have learnt from what it was last sent: the commit
 * index, but no further than the entries the leader knows it holds (a
 * follower applies only entries it stored itself). */
static int send_wrap(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
                     raft_io_send_cb cb)
{
	struct node *n = node_of(io);
	struct raft *r = &n->raft;
	struct node_contact *c;
	if (m->type == RAFT_IO_APPEND_ENTRIES && r->state == RAFT_LEADER &&
	    (c = find(n, m->server_id, true)) != NULL) {
		uint64_t known = 0;
		for (unsigned i = 0; i < r->configuration.n; i++)
			if (r->configuration.servers[i].id == m->server_id)
				known = r->leader_state.progress[i].match_index;
		c->commit_sent = m->append_entries.leader_commit < known
		                         ? m->append_entries.leader_commit
		                         : known;
	}
	return n->io_send(io, req, m, cb);
}

void node_contact_init(struct node *n)
{
	n->io_start = n->io.start;
	n->io.start = start;
	n->io_send = n->io.send;
	n->io.send = send_wrap;
}

uint64_t node_contact_since(struct node *n, uint64_t raft_id)
{
	struct node_contact *c = find(n, raft_id, false);
	if (c == NULL || c->last_ms == 0 || node_now_ms(n) - c->last_ms > silence_ms(n))
		return 0;
	return c->first_ms;
}

bool node_contact_raft_recent(struct node *n, uint64_t raft_id)
{
	struct node_contact *c = find(n, raft_id, false);
	return c != NULL && c->raft_ms != 0 && node_now_ms(n) - c->raft_ms <= n->cfg.election_ms;
}

void node_contact_tick(struct node *n)
{
	const struct raft_configuration *conf = &n->raft.configuration;
	uint64_t now = node_now_ms(n), interval = n->cfg.election_ms / 4;

	/* four a silence (election timeout) long, a heartbeat interval apart
	 * at the most often, and a killed peer found within PROBE_MAX_MS */
	if (interval > PROBE_MAX_MS)
		interval = PROBE_MAX_MS;
	if (interval < n->cfg.heartbeat_ms)
		interval = n->cfg.heartbeat_ms;

	if (!n->raft_started || n->closing || n->removed || n->refusing)
		return;
	for (unsigned i = 0; i < conf->n; i++) {
		const struct raft_server *s = &conf->servers[i];
		struct node_contact *c;
		if (s->id == n->raft_id || s->address == NULL ||
		    (c = find(n, s->id, true)) == NULL || c->probing ||
		    (c->probe_ms != 0 && now - c->probe_ms < interval))
			continue;
		c->probe_ms = now;
		c->probing = node_forward_probe(n, s->address, s->id);
	}
}

void node_contact_probed(struct node *n, uint64_t raft_id, int err)
{
	struct node_contact *c = find(n, raft_id, false);
	if (c == NULL)
		return;
	c->probing = false;
	if (err == -ECONNREFUSED || err == -ECONNRESET) {
		/* its port refused or dropped the call, and no raft message came
		 * since it was sent (at a member's start raft flows before its
		 * gRPC serves) */
		if (c->raft_ms < c->probe_ms)
			c->first_ms = c->last_ms = 0;
	} else if (err != BOLLARD_ETIMEOUT) {
		heard(n, c, node_now_ms(n));
	}
}

void node_contact_free(struct node *n)
{
	free(n->contacts);
	n->contacts = NULL;
	n->n_contacts = 0;
}

/* raft 0.15 tells followers a commit index only in its next AppendEntries
 * (new entries, or a heartbeat when a heartbeat interval passed since the
 * last send to that follower), and has no call that sends one. Its progress
 * records are public (raft.h): forgetting the last send to a follower and
 * running raft's own tick makes the leader send it an empty AppendEntries
 * now. The tick does what the periodic one does (by the real clock:
 * check-quorum, catch-up rounds, transfer expiry); an extra heartbeat is
 * always safe in raft. A follower is sent one when it holds entries up to a
 * commit index it was not told yet, and no such one sent it is unanswered
 * (under load, one per round trip; a heartbeat interval bounds the wait for
 * a lost answer); one that does not hold the entries up to index yet is
 * told once its answer says it does (this is called again). */
bool node_contact_commit_now(struct node *n, uint64_t index)
{
	struct raft *r = &n->raft;
	bool any = false, pending = false;
	uint64_t now = node_now_ms(n);

	if (n->io_tick == NULL || !n->raft_started || n->closing || raft_state(r) != RAFT_LEADER)
		return false;
	if (index > r->commit_index)
		index = r->commit_index;
	for (unsigned i = 0; i < r->configuration.n; i++) {
		const struct raft_server *s = &r->configuration.servers[i];
		struct raft_progress *p = &r->leader_state.progress[i];
		uint64_t can = index < p->match_index ? index : p->match_index;
		struct node_contact *c;
		if (s->id == r->id || s->role == RAFT_SPARE)
			continue;
		if (p->match_index < index)
			pending = true;
		if ((c = find(n, s->id, true)) == NULL || c->commit_sent >= can)
			continue;
		if (c->told_ms != 0 && now - c->told_ms < n->cfg.heartbeat_ms) {
			pending = true; /* again once it answered */
			continue;
		}
		c->told_ms = now ? now : 1;
		p->last_send = 0;
		any = true;
	}
	if (any)
		n->io_tick(&n->io);
	return pending;
}
