/* peer_pick.c - the peer URL each member is dialed at (peer_pick.h). The
 * picked URL is kept as its raft address in the member table
 * (cluster_member.picked); each pick resolves the member's URLs again, so a
 * list changed by MemberUpdate is followed at once: a picked address still
 * in the list stays picked, otherwise the first URL is. */
#include <stdio.h>
#include <string.h>

#include "node/log.h"
#include "node/node_int.h"
#include "node/peer_pick.h"

static struct cluster_member *member(struct node *n, uint64_t raft_id)
{
	for (size_t i = 0; i < n->cluster.n; i++)
		if (n->cluster.members[i].id == raft_id && n->cluster.members[i].peer_urls.n > 0)
			return &n->cluster.members[i];
	return NULL;
}

/* The raft address of m's URL i into out (sizeof m->picked). */
static bool address_of(const struct cluster_member *m, size_t i, char *out)
{
	char err[256];
	return node_raft_address(m->peer_urls.v[i], out, sizeof(m->picked), err, sizeof(err)) == 0;
}

/* The index of m's picked address in its list, after making sure there is
 * one (the first URL that resolves); -1 when none does. */
static int picked_index(struct cluster_member *m)
{
	char a[sizeof(m->picked)];
	int first = -1;

	for (size_t i = 0; i < m->peer_urls.n; i++) {
		if (!address_of(m, i, a))
			continue;
		if (first < 0)
			first = (int)i;
		if (m->picked[0] != '\0' && strcmp(a, m->picked) == 0)
			return (int)i;
	}
	if (first >= 0)
		address_of(m, (size_t)first, m->picked);
	return first;
}

const char *node_peer_pick(struct node *n, uint64_t raft_id, const char *fallback)
{
	struct cluster_member *m = member(n, raft_id);
	if (m == NULL || picked_index(m) < 0)
		return fallback;
	return m->picked;
}

bool node_peer_failed(struct node *n, uint64_t raft_id, const char *address, unsigned tries,
                      char *out, size_t len)
{
	struct cluster_member *m = member(n, raft_id);
	int i;

	if (m == NULL || m->peer_urls.n < 2 || (i = picked_index(m)) < 0)
		return false;
	if (strcmp(m->picked, address) == 0) {
		for (size_t k = 1; k < m->peer_urls.n; k++) {
			char a[sizeof(m->picked)];
			if (address_of(m, ((size_t)i + k) % m->peer_urls.n, a)) {
				blog(BLOG_DEBUG, "peer", "member %016llx: %s failed, dialing %s next",
				     (unsigned long long)m->member_id, m->picked, a);
				memcpy(m->picked, a, sizeof(a));
				break;
			}
		}
	}
	if (tries >= m->peer_urls.n)
		return false;
	snprintf(out, len, "%s", m->picked);
	return true;
}
