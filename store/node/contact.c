/* contact.c - how long this member has been in touch with each peer, from
 * the raft messages it receives (etcd's rafthttp "active since": the time a
 * peer's stream came up, zero while it is down). A peer is in contact since
 * its first message after a silence of more than an election timeout, and
 * out of contact once it has been silent that long. A leader hears from
 * every follower each heartbeat; a follower hears from the leader only.
 * The strict reconfiguration checks (members.c, core/reconfig.c) read it.
 *
 * raft_io's start is wrapped (before raft_start calls it) so raft's receive
 * callback passes through here first. */
#include <stdlib.h>

#include "node/node_int.h"

struct node_contact {
	uint64_t id;
	uint64_t first_ms; /* start of the current contact */
	uint64_t last_ms;  /* last message */
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

static void recv_cb(struct raft_io *io, struct raft_message *msg)
{
	struct node *n = node_of(io);
	struct node_contact *c = find(n, msg->server_id, true);
	uint64_t now = node_now_ms(n);

	if (c != NULL) {
		if (c->last_ms == 0 || now - c->last_ms > n->cfg.election_ms)
			c->first_ms = now;
		c->last_ms = now;
	}
	n->io_recv(io, msg);
}

static int start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
	struct node *n = node_of(io);
	n->io_recv = recv;
	return n->io_start(io, msecs, tick, recv_cb);
}

void node_contact_init(struct node *n)
{
	n->io_start = n->io.start;
	n->io.start = start;
}

uint64_t node_contact_since(struct node *n, uint64_t raft_id)
{
	struct node_contact *c = find(n, raft_id, false);
	if (c == NULL || c->last_ms == 0 || node_now_ms(n) - c->last_ms > n->cfg.election_ms)
		return 0;
	return c->first_ms;
}

void node_contact_free(struct node *n)
{
	free(n->contacts);
	n->contacts = NULL;
	n->n_contacts = 0;
}
