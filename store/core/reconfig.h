/* reconfig.h - etcd 3.4's strict reconfiguration checks
 * (--strict-reconfig-check, on by default): whether a MemberAdd,
 * MemberRemove or MemberPromote may go ahead, judged from the members'
 * roles, which of them have started, and how long this member has been in
 * contact with each. Pure: the caller passes the view and the time.
 *
 * etcd's words. A member has "started" once it has a name (a member of
 * --initial-cluster, or one added later that published its name through
 * raft). A member is "connected since T" when this member has heard from it
 * without a break since T (etcd: its peer stream has been up since T); a
 * reconfiguration wants the members connected for RECONFIG_HEALTH_MS. */
#ifndef BOLLARD_CORE_RECONFIG_H
#define BOLLARD_CORE_RECONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* etcd's HealthInterval. */
#define RECONFIG_HEALTH_MS 5000u

struct reconfig_member {
	uint64_t id;
	bool learner;             /* not a voting member */
	bool started;             /* has a name */
	uint64_t active_since_ms; /* contact without a break since then; 0: none now */
};

/* The cluster as this member (the one judging) sees it. */
struct reconfig_view {
	const struct reconfig_member *members;
	size_t n;
	uint64_t self;   /* always connected to itself */
	uint64_t now_ms; /* same clock as active_since_ms */
};

/* Each returns 0 or the error etcd answers: BOLLARD_EMEMBER_NOT_ENOUGH_STARTED
 * ("re-configuration failed due to not enough started members") or
 * BOLLARD_EUNHEALTHY ("unhealthy cluster"). */

/* Adding a member (a voter unless learner): a voter may not leave fewer
 * started voters than a quorum of the grown cluster (except a second member
 * for a one-member cluster), and every voter must have been connected for
 * RECONFIG_HEALTH_MS (learners too). */
int reconfig_may_add(const struct reconfig_view *v, bool learner);
/* Removing member id: nothing for a learner; else the started voters left
 * must be a quorum of those left, and unless id is another member out of
 * contact, the voters connected for RECONFIG_HEALTH_MS but id must be too. */
int reconfig_may_remove(const struct reconfig_view *v, uint64_t id);
/* Promoting learner id (counted as a started voter): started voters must be
 * a quorum of the grown cluster. (Whether it caught up is the caller's.) */
int reconfig_may_promote(const struct reconfig_view *v, uint64_t id);

#endif
