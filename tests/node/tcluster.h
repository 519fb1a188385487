/* tcluster.h - a 3-member cluster on 127.0.0.1 for the node tests: each
 * member a real node (harness.h's tnode) on a loop thread of its own, the
 * test on its own thread. The test reaches a member's loop through its
 * control hook (tcluster_ctl -> on_ctl, on that loop's thread). */
#ifndef BOLLARD_TESTS_NODE_TCLUSTER_H
#define BOLLARD_TESTS_NODE_TCLUSTER_H

#include <pthread.h>
#include <stdatomic.h>

#include <raft.h>

#include "harness.h"

#define TCLUSTER_N 3

struct tmember {
	struct tnode t;
	pthread_t th;
	uv_async_t ctl;            /* commands from the test's thread */
	atomic_bool want_close;
	bool running;              /* its loop thread was started */
	int index;                 /* in its cluster's m[] */
	char name[8], peer_url[64], client_url[64];
	/* The test's: on_ctl runs on the member's loop thread at each
	 * tcluster_ctl (and once before it closes); data is the test's own. */
	void (*on_ctl)(struct tmember *m);
	void *data;
	/* raft's send of its I/O, under tcluster's (tcluster_cut), and the
	 * sends it cut, failed from ctl's callback (loop thread) */
	int (*send)(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
	            raft_io_send_cb cb);
	struct tcut *cuts;
};

struct tcluster {
	struct tmember m[TCLUSTER_N];
	char initial_cluster[256];
	/* Called for each member between node_create and node_start (its
	 * loop not running yet): install test I/O, a forwarder. May be NULL. */
	void (*on_create)(struct tmember *m);
	/* cut[i][j]: member i's raft messages to j are not sent (tcluster_cut) */
	atomic_bool cut[TCLUSTER_N][TCLUSTER_N];
	/* The test's finer rule (or NULL): true, m from i to j is not sent
	 * either (on i's loop thread). */
	bool (*lose)(int i, int j, const struct raft_message *m);
};

/* Names, URLs (free ports) and configurations (etcd's heartbeat and
 * election timings: no elections on a loaded box); nothing started. The
 * test may change m[i].t.cfg and set the hooks before tcluster_start. */
void tcluster_config(struct tcluster *c);
/* Create and start the members, run their loops, wait for a leader;
 * returns its index (REQUIREs one within 30 s). */
int tcluster_start(struct tcluster *c);
/* The member that says it leads (its Status), if every member that knows
 * a leader names it; else -1. */
int tcluster_leader(struct tcluster *c);
/* Raft messages between members i and j (both ways) are not sent: each
 * send fails (RAFT_NOCONNECTION, from the loop, as raft's transport fails
 * a send to a peer it cannot reach); or they go again. cut[i][j] may be
 * set alone: i's messages to j are lost, j's to i go. Only raft's: the
 * test's forwarder keeps its own rules. */
void tcluster_cut(struct tcluster *c, int i, int j, bool cut);
/* Member i cut from (or joined again to) every other member. */
void tcluster_isolate(struct tcluster *c, int i, bool cut);
/* Run m's on_ctl on its loop thread (soon; asynchronous). */
void tcluster_ctl(struct tmember *m);
/* Close every member (each loop ends before any node is destroyed: a
 * member answers the others' calls until its own loop ends). */
void tcluster_close(struct tcluster *c);

#endif
