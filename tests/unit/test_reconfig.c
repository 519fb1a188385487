/* test_reconfig.c - etcd 3.4's strict reconfiguration checks (core/reconfig.c)
 * in the situations tests/integration/test_members.py also runs against a
 * real etcd 3.4 (the expected answers are what etcd gave there). */
#include "core/errors.h"
#include "core/reconfig.h"
#include "unit.h"

#define NOW 100000u
#define LONG (NOW - 60000u)  /* connected for a minute */
#define YOUNG (NOW - 2000u)  /* connected for 2 s: less than etcd's 5 s */
#define DOWN 0u              /* out of contact */

static struct reconfig_view view(const struct reconfig_member *m, size_t n)
{
	return (struct reconfig_view){.members = m, .n = n, .self = 1, .now_ms = NOW};
}

TEST(healthy_cluster)
{
	struct reconfig_member m[] = {{1, false, true, DOWN}, /* self: always connected */
	                              {2, false, true, LONG},
	                              {3, false, true, LONG}};
	struct reconfig_view v = view(m, 3);
	CHECK_INT(reconfig_may_add(&v, false), 0);
	CHECK_INT(reconfig_may_add(&v, true), 0);
	CHECK_INT(reconfig_may_remove(&v, 2), 0);
	CHECK_INT(reconfig_may_remove(&v, 1), 0);
	CHECK_INT(reconfig_may_remove(&v, 99), 0); /* unknown: the caller says not found */
}

TEST(one_of_three_down)
{
	struct reconfig_member m[] = {{1, false, true, DOWN},
	                              {2, false, true, LONG},
	                              {3, false, true, DOWN}};
	struct reconfig_view v = view(m, 3);
	CHECK_INT(reconfig_may_add(&v, false), BOLLARD_EUNHEALTHY);
	CHECK_INT(reconfig_may_add(&v, true), BOLLARD_EUNHEALTHY);
	CHECK_INT(reconfig_may_remove(&v, 2), BOLLARD_EUNHEALTHY); /* would leave 1 of 2 */
	CHECK_INT(reconfig_may_remove(&v, 1), BOLLARD_EUNHEALTHY);
	CHECK_INT(reconfig_may_remove(&v, 3), 0); /* the member that is down */
}

TEST(two_of_three_down)
{
	struct reconfig_member m[] = {{1, false, true, DOWN},
	                              {2, false, true, DOWN},
	                              {3, false, true, DOWN}};
	struct reconfig_view v = view(m, 3);
	CHECK_INT(reconfig_may_add(&v, false), BOLLARD_EUNHEALTHY);
	CHECK_INT(reconfig_may_add(&v, true), BOLLARD_EUNHEALTHY);
	CHECK_INT(reconfig_may_remove(&v, 3), 0); /* allowed here; raft cannot commit it */
}

TEST(young_connections)
{
	struct reconfig_member m[] = {{1, false, true, DOWN},
	                              {2, false, true, YOUNG},
	                              {3, false, true, LONG}};
	struct reconfig_view v = view(m, 3);
	CHECK_INT(reconfig_may_add(&v, false), BOLLARD_EUNHEALTHY);
	CHECK_INT(reconfig_may_remove(&v, 3), BOLLARD_EUNHEALTHY);
	CHECK_INT(reconfig_may_remove(&v, 2), BOLLARD_EUNHEALTHY); /* in contact, though young */
	m[1].active_since_ms = NOW - RECONFIG_HEALTH_MS;           /* exactly 5 s: not yet */
	CHECK_INT(reconfig_may_add(&v, false), BOLLARD_EUNHEALTHY);
	m[1].active_since_ms = NOW - RECONFIG_HEALTH_MS - 1;
	CHECK_INT(reconfig_may_add(&v, false), 0);
}

TEST(unstarted_voter)
{
	/* a one-member cluster that added a voter which never started */
	struct reconfig_member m[] = {{1, false, true, DOWN}, {2, false, false, DOWN}};
	struct reconfig_view v = view(m, 1);
	CHECK_INT(reconfig_may_add(&v, false), 0); /* the second member of a one-member cluster */
	v.n = 2;
	CHECK_INT(reconfig_may_add(&v, false), BOLLARD_EMEMBER_NOT_ENOUGH_STARTED);
	CHECK_INT(reconfig_may_add(&v, true), BOLLARD_EUNHEALTHY);
	CHECK_INT(reconfig_may_remove(&v, 1), BOLLARD_EMEMBER_NOT_ENOUGH_STARTED);
	CHECK_INT(reconfig_may_remove(&v, 2), 0);
}

TEST(unstarted_fourth)
{
	/* three healthy members and a fourth added that never started */
	struct reconfig_member m[] = {{1, false, true, DOWN},
	                              {2, false, true, LONG},
	                              {3, false, true, LONG},
	                              {4, false, false, DOWN}};
	struct reconfig_view v = view(m, 4);
	CHECK_INT(reconfig_may_add(&v, false), BOLLARD_EUNHEALTHY);
	CHECK_INT(reconfig_may_add(&v, true), BOLLARD_EUNHEALTHY);
	CHECK_INT(reconfig_may_remove(&v, 2), 0); /* 2 of the 3 left are started */
	CHECK_INT(reconfig_may_remove(&v, 4), 0);
}

TEST(learners)
{
	struct reconfig_member m[] = {{1, false, true, DOWN},
	                              {2, false, true, LONG},
	                              {3, false, true, DOWN},
	                              {4, true, false, DOWN}};
	struct reconfig_view v = view(m, 4);
	CHECK_INT(reconfig_may_remove(&v, 4), 0); /* a learner: never checked */
	CHECK_INT(reconfig_may_promote(&v, 4), 0);
	/* learners are not counted among the voters that must be connected */
	m[2].active_since_ms = LONG;
	CHECK_INT(reconfig_may_add(&v, false), 0);
	/* one voter and a learner: the learner counts as started (etcd 3.4.23) */
	struct reconfig_member one[] = {{1, false, true, DOWN}, {4, true, true, LONG}};
	v = view(one, 2);
	CHECK_INT(reconfig_may_promote(&v, 4), 0);
	/* three voters of which two never started */
	struct reconfig_member u[] = {{1, false, true, DOWN},
	                              {2, false, false, DOWN},
	                              {3, false, false, DOWN},
	                              {4, true, true, LONG}};
	v = view(u, 4);
	CHECK_INT(reconfig_may_promote(&v, 4), BOLLARD_EMEMBER_NOT_ENOUGH_STARTED);
}

UNIT_MAIN(TEST_ENTRY(healthy_cluster), TEST_ENTRY(one_of_three_down),
          TEST_ENTRY(two_of_three_down), TEST_ENTRY(young_connections),
          TEST_ENTRY(unstarted_voter), TEST_ENTRY(unstarted_fourth), TEST_ENTRY(learners))
