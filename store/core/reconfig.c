/* reconfig.c - etcd 3.4's strict reconfiguration checks (reconfig.h): the
 * rules of its etcdserver mayAddMember/mayRemoveMember/mayPromoteMember and
 * membership IsReadyTo*, on a view the caller builds. */
#include "core/reconfig.h"

#include "core/errors.h"

/* Connected without a break since before now - RECONFIG_HEALTH_MS. */
static bool connected(const struct reconfig_view *v, const struct reconfig_member *m)
{
	if (m->id == v->self)
		return true;
	return m->active_since_ms != 0 && v->now_ms >= RECONFIG_HEALTH_MS &&
	       m->active_since_ms < v->now_ms - RECONFIG_HEALTH_MS;
}

/* Voting members (all but except), how many started, how many connected. */
struct tally {
	int voters, started, connected;
};

static struct tally count(const struct reconfig_view *v, uint64_t except)
{
	struct tally t = {0, 0, 0};
	for (size_t i = 0; i < v->n; i++) {
		const struct reconfig_member *m = &v->members[i];
		if (m->learner || (except != 0 && m->id == except))
			continue;
		t.voters++;
		t.started += m->started;
		t.connected += connected(v, m);
	}
	return t;
}

static const struct reconfig_member *find(const struct reconfig_view *v, uint64_t id)
{
	for (size_t i = 0; i < v->n; i++)
		if (v->members[i].id == id)
			return &v->members[i];
	return NULL;
}

int reconfig_may_add(const struct reconfig_view *v, bool learner)
{
	struct tally t = count(v, 0);
	if (!learner) {
		int members = t.voters + 1; /* with the new one, not started */
		/* a second member for a one-member cluster (restoring one) */
		bool second = t.started == 1 && members == 2;
		if (!second && t.started < members / 2 + 1)
			return BOLLARD_EMEMBER_NOT_ENOUGH_STARTED;
	}
	if (t.connected != t.voters)
		return BOLLARD_EUNHEALTHY;
	return 0;
}

int reconfig_may_remove(const struct reconfig_view *v, uint64_t id)
{
	const struct reconfig_member *m = find(v, id);
	struct tally rest, all;

	if (m != NULL && m->learner)
		return 0;
	rest = count(v, id);
	if (rest.started < rest.voters / 2 + 1)
		return BOLLARD_EMEMBER_NOT_ENOUGH_STARTED;
	/* a member out of contact is no part of the active quorum */
	if (id != v->self && (m == NULL || m->active_since_ms == 0))
		return 0;
	all = count(v, 0);
	if (all.connected - 1 < 1 + (all.voters - 1) / 2)
		return BOLLARD_EUNHEALTHY;
	return 0;
}

int reconfig_may_promote(const struct reconfig_view *v, uint64_t id)
{
	struct tally t = count(v, id);
	/* the learner counts as a started voter of the grown cluster */
	if (t.started + 1 < (t.voters + 1) / 2 + 1)
		return BOLLARD_EMEMBER_NOT_ENOUGH_STARTED;
	return 0;
}
