"""Partitions of a 3-member cluster in network namespaces (issue 4, tests/lib/netns.py):
each member in its own namespace with its own address, joined by a bridge; a member is
cut off by setting its bridge port down.

Isolating the leader: the majority elects a leader and keeps taking writes; on the old
leader's side (etcdctl run inside its namespace) writes and linearizable reads fail with
etcd's errors (a write: after etcd's request timeout, the bare "context deadline exceeded"
with status Unknown) while serializable reads still answer; the old leader steps down (check
quorum) and, with pre-vote, does not raise its term while cut off; after healing it
follows the new leader without an election (leader and term unchanged), and every member
converges. Isolating a follower: the cluster carries on, and its return does not disturb
the leader. Six recording gRPC clients (two per member) run throughout; their history must
be linearizable, no acknowledged write may be lost, and HashKV must agree at the same
revision (tests/lib/kvworkload.py). A stale serializable read on the cut-off side is also
fed to the checker, which must reject it: the recording catches a real anomaly.

Needs root (network namespaces): without it the test fails, it does not skip. The whole
test re-executes itself in a private network namespace first. Run with Debian's python3;
prints "N passed, N failed" last.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import netns  # noqa: E402
import storeharness as h  # noqa: E402

if __name__ == "__main__":
    netns.enter_private_netns()

import kvworkload as kw  # noqa: E402
import linearizability as lin  # noqa: E402

HEARTBEAT_MS = 100
ELECTION_MS = 1000
TIMINGS = ["--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS)]
ELECTION = ELECTION_MS / 1000.0
# What etcd 3.4 answers on the minority side (by the request and by how long the client
# waits): the server's request timeout, the client's own deadline, or no leader.
NO_LEADER_WRITE_ERROR = "rpc error: code = Unknown desc = context deadline exceeded"
MINORITY_ERRORS = ("etcdserver: request timed out", "context deadline exceeded",
                   "etcdserver: no leader", "etcdserver: leader changed")


class PartitionTest(h.StoreTestCase):
    def setUp(self):
        super().setUp()
        self.net = netns.Net(3)
        self.addCleanup(self.net.cleanup)   # after tearDown stopped the members
        self.net.up()
        # etcd 3.4 has pre-vote off by default (on from 3.5); Bollard always has it on
        pre_vote = ["--pre-vote"] if h.default_impl() == "etcd" else []
        self.c = netns.cluster(self.net, 3, extra_args=TIMINGS + pre_vote)
        self._stores += self.c.members
        self.c.start()
        self.w = None

    def tearDown(self):
        if self.w is not None:
            self.w._stop.set()
        for i in range(self.net.n):
            netns.ip("link", "set", self.net.ports[i], "up", check=False)
        super().tearDown()

    # -- helpers
    def start_workload(self, seed):
        self.w = kw.Workload.on_members(self.c.members, seed=seed).start()
        return self.w

    def inside_status(self, m):
        """Status of m asked from inside its namespace: (member_id, leader, term) or None."""
        r = m.etcdctl_inside("endpoint", "status", "-w", "json", command_timeout="2s",
                             timeout=10)
        if not r.ok:
            return None
        st = json.loads(r.out)[0]["Status"]
        return st["header"]["member_id"], st.get("leader", 0), st.get("raftTerm", 0)

    def steady(self, members, leader, term, seconds, returning=None):
        """For seconds, every status of members shows term, and names leader; only the
        returning member may also say it knows no leader for a moment (while it catches
        up its election timer may fire: with pre-vote that changes nothing, as the term
        check shows; a real election would raise the term). Returns how many samples
        of the returning member knew no leader."""
        lid = self.c.status(leader)["member_id"]
        end, leaderless = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            for m in members:
                st = self.c.status(m, timeout=2)
                if st is None:
                    continue
                if m is returning and st["leader"] == 0 and st["raft_term"] == term:
                    leaderless += 1
                    continue
                self.assertEqual((st["leader"], st["raft_term"]), (lid, term),
                                 "%s sees leader %x term %d; expected %s (%x) term %d"
                                 % (m.name, st["leader"], st["raft_term"], leader.name, lid,
                                    term))
            time.sleep(0.1)
        return leaderless

    def finish(self):
        self.w.stop()
        print(kw.verify_cluster(self.c, self.w), flush=True)

    # -- tests
    def test_isolate_leader(self):
        w = self.start_workload(seed=21)
        self.assertGreaterEqual(w.wait_ok(60), 60, w.summary())
        old = self.c.leader()
        i_old = self.c.members.index(old)
        majority = [m for m in self.c.members if m is not old]
        # a value every member holds, for the stale-read check below
        self.assertOk(old.etcdctl("put", "stale", "before"))
        oid, _, term0 = netns.wait_until(lambda: self.inside_status(old), 10,
                                         "old leader status")

        self.net.cut(i_old)
        t_cut = time.monotonic()
        new = self.c.leader(among=majority, timeout=15)
        # (etcd's Status may show the old term for a moment after the election)
        term1 = netns.wait_until(lambda: (lambda st: st and st["raft_term"] > term0 and
                                          st["raft_term"])(self.c.status(new)), 10,
                                 "the new leader's term")
        n = w.wait_ok(40, since_ns=time.monotonic_ns(), clients=self.w.clients_of(majority))
        self.assertGreaterEqual(n, 40, "majority side stalled: " + w.summary())
        print("%s cut off; %s leads at term %d after %.2fs" % (
            old.name, new.name, term1, time.monotonic() - t_cut), flush=True)

        # the old leader steps down: it names no leader, and its term stays (pre-vote)
        st = netns.wait_until(lambda: (lambda s: s if s and s[1] != oid else None)(
            self.inside_status(old)), 4 * ELECTION + 5, "old leader steps down")
        # minority side: writes and linearizable reads refused, serializable reads served
        # a write there waits etcd's request timeout (5 s + 2 election timeouts) for a
        # leader, then fails with the bare context error, as etcd 3.4's does
        r = old.etcdctl_inside("put", "minority", "x", command_timeout="15s", timeout=30)
        self.assertFalse(r.ok, r)
        self.assertIn("Error: " + NO_LEADER_WRITE_ERROR, r.err)
        self.assertTrue(5 < r.elapsed < 14, r.elapsed)    # the server's answer, not etcdctl's
        refused = ["put after %.1fs: %s" % (r.elapsed, NO_LEADER_WRITE_ERROR)]
        for args in (["txn"], ["get", "stale"]):
            r = old.etcdctl_inside(*args, command_timeout="3s",
                                   input="\nput minority y\n\n\n" if args == ["txn"] else None)
            self.assertFalse(r.ok, r)
            self.assertTrue(any(e in r.err for e in MINORITY_ERRORS), r)
            refused.append("%s: %s" % (args[0], r.err.strip().splitlines()[-1][:90]))
        # a stale serializable read: the majority acknowledged a newer value first
        hist = lin.History()
        p = hist.invoke("majority", "put", "stale", value="after")
        self.assertOk(new.etcdctl("put", "stale", "after"))
        hist.ok(p)
        g = hist.invoke("minority", "get", "stale")
        r = self.assertOk(old.etcdctl_inside("get", "stale", "--consistency=s",
                                             "--print-value-only"))
        hist.ok(g, r.out.strip())
        self.assertEqual(r.out.strip(), "before")
        ok, why = lin.check([lin.Op(0, "all", "put", "stale", value="before", call=0, ret=1,
                                    status="ok")] + hist.ops)
        self.assertFalse(ok, "the checker accepted a stale read:\n" + why)
        st = self.inside_status(old)
        self.assertIsNotNone(st)
        self.assertEqual(st[2], term0, "the cut-off member's term moved: pre-vote is off?")
        print("old leader stepped down (leader %x), term still %d; minority side: %s"
              % (st[1], st[2], "; ".join(refused)), flush=True)

        self.net.heal(i_old)
        # the old leader follows the new one: no election, no new term
        self.assertIs(self.c.leader(timeout=15), new)
        n = self.steady(self.c.members, new, term1, 3 * ELECTION, returning=old)
        print("healed: %s leads at term %d throughout%s" % (
            new.name, term1, "; %s knew no leader in %d samples" % (old.name, n) if n else ""),
            flush=True)
        n = w.wait_ok(20, since_ns=time.monotonic_ns(), clients=self.w.clients_of([old]),
                      timeout=40)
        self.assertGreaterEqual(n, 20, "the healed member does not serve: " + w.summary())
        self.finish()

    def test_isolate_follower(self):
        w = self.start_workload(seed=22)
        self.assertGreaterEqual(w.wait_ok(40), 40, w.summary())
        leader = self.c.leader()
        term = self.c.status(leader)["raft_term"]
        f = [m for m in self.c.members if m is not leader][0]
        rest = [m for m in self.c.members if m is not f]
        _, _, fterm0 = netns.wait_until(lambda: self.inside_status(f), 10, "follower status")
        self.net.cut(self.c.members.index(f))
        # the others carry on, undisturbed, for several election timeouts
        t0 = time.monotonic_ns()
        self.steady(rest, leader, term, 4 * ELECTION)
        n = w.wait_ok(40, since_ns=t0, clients=self.w.clients_of(rest))
        self.assertGreaterEqual(n, 40, w.summary())
        st = self.inside_status(f)
        self.assertIsNotNone(st)
        self.assertEqual(st[2], fterm0, "the cut-off follower's term moved: pre-vote is off?")
        self.net.heal(self.c.members.index(f))
        self.assertIs(self.c.leader(timeout=15), leader)
        n = self.steady(self.c.members, leader, term, 3 * ELECTION, returning=f)
        print("healed: %s leads at term %d throughout%s" % (
            leader.name, term, "; %s knew no leader in %d samples" % (f.name, n) if n else ""),
            flush=True)
        n = w.wait_ok(20, since_ns=time.monotonic_ns(), clients=self.w.clients_of([f]),
                      timeout=40)
        self.assertGreaterEqual(n, 20, "the healed member does not serve: " + w.summary())
        self.finish()


if __name__ == "__main__":
    h.main()
