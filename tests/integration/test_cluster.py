"""A 3-member cluster on loopback: formation from etcd's flags, any member serves any
request (writes forwarded to the leader, linearizable reads on followers), Status and
MemberList, a watch on a follower, leases through a follower (keep-alive, TimeToLive and
Leases reach the leader's lessor), kill -9 of the leader under a write load (no
acknowledged write lost, a new leader within 2 election timeouts, equal HashKV), and
SIGSTOP/SIGCONT hangs of a follower and of the leader (the followers keep serving writes
and linearizable reads once a new leader exists). Run with Debian's python3; prints
"N passed, N failed" last."""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

HEARTBEAT_MS = 100
ELECTION_MS = 1000
TIMINGS = ["--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS)]


class ClusterTest(h.StoreTestCase):
    def setUp(self):
        super().setUp()
        self.c = h.Cluster(3, extra_args=TIMINGS)
        self._stores += self.c.members   # stopped and checked by tearDown
        self.c.start()

    def get(self, m, key, *flags):
        r = self.assertOk(m.etcdctl("get", key, "--print-value-only", *flags))
        return r.out.strip()

    def wait_equal_hashes(self, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            hs = [self.c.hash_kv(m) for m in self.c.members]
            if len(set(hs)) == 1:
                return hs[0]
            if time.monotonic() > deadline:
                self.fail("HashKV differs: %r" % hs)
            time.sleep(0.1)

    def test_formation_and_any_member_serves(self):
        sts = [self.c.status(m) for m in self.c.members]
        self.assertEqual(len({s["cluster_id"] for s in sts}), 1, sts)
        self.assertEqual(len({s["member_id"] for s in sts}), 3, sts)
        leader = self.c.leader()
        followers = [m for m in self.c.members if m is not leader]
        # a write on a follower, read back linearizably on every member
        self.assertOk(followers[0].etcdctl("put", "k1", "v1"))
        for m in self.c.members:
            self.assertEqual(self.get(m, "k1"), "v1", m.name)
        # delete and txn through the other follower
        self.assertOk(followers[1].etcdctl("put", "k2", "v2"))
        self.assertOk(followers[1].etcdctl("del", "k2"))
        for m in self.c.members:
            self.assertEqual(self.get(m, "k2"), "", m.name)
        # serializable reads converge
        time.sleep(0.5)
        for m in self.c.members:
            self.assertEqual(self.get(m, "k1", "--consistency=s"), "v1", m.name)
        # leases through a follower
        r = self.assertOk(followers[0].etcdctl("lease", "grant", "30"))
        lid = r.out.split()[1]
        self.assertOk(followers[1].etcdctl("put", "lk", "lv", "--lease", lid))
        r = self.assertOk(followers[1].etcdctl("lease", "timetolive", lid, "--keys"))
        self.assertIn("lk", r.out)
        self.assertOk(followers[0].etcdctl("lease", "keep-alive", "--once", lid))
        self.assertOk(followers[0].etcdctl("lease", "revoke", lid))
        self.assertEqual(self.get(leader, "lk"), "")
        # Status and MemberList
        r = self.assertOk(followers[0].etcdctl("endpoint", "status", "--cluster", "-w", "json"))
        st = r.json()
        self.assertEqual(len(st), 3, r.out)
        self.assertEqual({s["Status"]["leader"] for s in st},
                         {self.c.status(leader)["member_id"]})
        r = self.assertOk(followers[1].etcdctl("member", "list", "-w", "json"))
        ms = r.json()["members"]
        self.assertEqual(sorted(m["name"] for m in ms), ["n1", "n2", "n3"])
        self.assertEqual(sorted(m["clientURLs"][0] for m in ms),
                         sorted(m.client_url for m in self.c.members))
        self.wait_equal_hashes()

    def ttl(self, m, lid):
        r = self.assertOk(m.etcdctl("lease", "timetolive", lid, "-w", "json"))
        return r.json()["ttl"]

    def test_leases_on_follower(self):
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        leader = self.c.leader()
        f1, f2 = [m for m in self.c.members if m is not leader]
        # a forwarded write is answered with the serving member's ID (as etcd)
        ch = grpc.insecure_channel(f1.endpoint)
        try:
            r = rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"hk", value=b"1"), timeout=5)
        finally:
            ch.close()
        self.assertEqual(r.header.member_id, self.c.status(f1)["member_id"])
        # TimeToLive on a follower: the leader's remaining TTL, not the granted one
        term = self.c.status(f2)["raft_term"]
        lid = self.assertOk(f1.etcdctl("lease", "grant", "30")).out.split()[1]
        time.sleep(2.2)
        left = self.ttl(f2, lid)
        if left > 28:
            # only a new leader may have given it back its whole TTL (it extends every
            # lease on promotion, as etcd's lessor does); seen once on a loaded box
            self.assertNotEqual(self.c.status(f2)["raft_term"], term,
                                "TTL %d after 2.2 s of 30 with no leader change" % left)
        # a keep-alive on a follower reaches the leader's lessor
        self.assertOk(f2.etcdctl("lease", "keep-alive", "--once", lid))
        self.assertGreaterEqual(self.ttl(f1, lid), 29)
        r = self.assertOk(f2.etcdctl("lease", "list"))
        self.assertIn(lid, r.out)
        # a keep-alive stream on a follower keeps a short lease alive past its TTL
        short = self.assertOk(f1.etcdctl("lease", "grant", "2")).out.split()[1]
        self.assertOk(f2.etcdctl("put", "kept", "1", "--lease", short))
        ka = self.bg(f2, "lease", "keep-alive", short)
        time.sleep(4.5)
        self.assertEqual(self.get(leader, "kept"), "1")
        self.assertGreater(self.ttl(f1, short), 0)
        ka.stop()
        self.assertTrue(any("keepalived" in l for l in ka.lines()), ka.lines())

    def test_watch_on_follower(self):
        leader = self.c.leader()
        followers = [m for m in self.c.members if m is not leader]
        w = self.bg(followers[0], "watch", "wk")
        time.sleep(0.5)
        self.assertOk(followers[1].etcdctl("put", "wk", "a"))
        self.assertOk(leader.etcdctl("put", "wk", "b"))
        w.wait_for(lambda ls: len(ls) >= 6, timeout=10)
        time.sleep(0.3)
        self.assertEqual(w.lines(), ["PUT", "wk", "a", "PUT", "wk", "b"])

    def test_kill_leader_under_load(self):
        leader = self.c.leader()
        survivors = [m for m in self.c.members if m is not leader]
        load = h.WriteLoad(survivors, "load").start()
        time.sleep(1.0)
        t0 = time.monotonic()
        leader.kill9()
        new = self.c.leader(among=survivors, timeout=10)
        elected = time.monotonic() - t0
        # the new leader serves a write
        while True:
            r = new.etcdctl("put", "after-kill", "1", command_timeout="1s")
            if r.rc == 0:
                break
            self.assertLess(time.monotonic() - t0, 10, r)
        elapsed = time.monotonic() - t0
        print("new leader %s agreed %.2fs, serves a put %.2fs after kill -9"
              % (new.name, elected, elapsed), flush=True)
        # the promise: a new leader serves within 2 election timeouts
        # (plus the cost of starting etcdctl processes to observe it)
        self.assertLess(elected, 2 * ELECTION_MS / 1000.0)
        self.assertLess(elapsed, 2 * ELECTION_MS / 1000.0 + 0.5)
        time.sleep(1.0)
        load.stop(10)
        leader.restart()
        rev = self.wait_equal_hashes(timeout=20)
        print("%d acknowledged writes, HashKV %r on all members" % (len(load.acked), rev),
              flush=True)
        self.assertGreater(len(load.acked), 50)
        for m in self.c.members:
            self.assertEqual(load.missing_on(m), [], m.name)

    def test_sigstop_leader_under_load(self):
        leader = self.c.leader()
        followers = [m for m in self.c.members if m is not leader]
        load = h.WriteLoad(followers, "hang", timeout=8).start()
        time.sleep(1.0)
        t0 = time.monotonic()
        leader.proc.send_signal(signal.SIGSTOP)
        try:
            # each follower serves a fresh write and a linearizable read once the
            # other has taken over (no 5 s forwarding deadline in the way)
            served = {}
            for m in followers:
                cl = m.client(timeout=10)
                while True:
                    try:
                        cl.put("probe/" + m.name, "1")
                        self.assertEqual(cl.get("probe/" + m.name)[0], b"1")
                        break
                    except Exception:
                        self.assertLess(time.monotonic() - t0, 10)
                        time.sleep(0.05)
                served[m.name] = time.monotonic() - t0
            new = self.c.leader(among=followers, timeout=10)
            print("leader %s SIGSTOPped: %s leads, followers serve writes and reads after %s"
                  % (leader.name, new.name,
                     ", ".join("%s %.2fs" % kv for kv in sorted(served.items()))), flush=True)
            self.assertLess(max(served.values()), 4 * ELECTION_MS / 1000.0)
            time.sleep(1.0)
        finally:
            leader.proc.send_signal(signal.SIGCONT)
        # the old leader steps down and catches up
        self.assertIsNot(self.c.leader(timeout=10), leader)
        load.stop(15)
        self.assertOk(leader.etcdctl("put", "after-cont", "1"))
        rev = self.wait_equal_hashes(timeout=20)
        print("%d acknowledged writes, HashKV %r on all members; errors %r"
              % (len(load.acked), rev, load.errors), flush=True)
        self.assertGreater(len(load.acked), 50)
        for m in self.c.members:
            self.assertEqual(load.missing_on(m), [], m.name)
        for msg in load.errors:  # an unknown outcome is reported with etcd's words
            self.assertTrue("request timed out" in msg or "leader changed" in msg
                            or "no leader" in msg, load.errors)

    def test_sigstop_member(self):
        # a follower hangs
        leader = self.c.leader()
        victim = [m for m in self.c.members if m is not leader][0]
        others = [m for m in self.c.members if m is not victim]
        victim.proc.send_signal(signal.SIGSTOP)
        try:
            for i in range(20):
                self.assertOk(others[i % 2].etcdctl("put", "s%d" % i, str(i)))
            self.assertEqual(self.get(others[0], "s19"), "19")
        finally:
            victim.proc.send_signal(signal.SIGCONT)
        self.assertOk(victim.etcdctl("put", "after-cont", "1"))
        self.assertEqual(self.get(victim, "s19"), "19")
        self.wait_equal_hashes()


# Membership changes through etcdctl (etcd 3.4's Cluster service): member add --learner,
# the new member joining with --initial-cluster-state existing (no bootstrap, it receives
# the log from the leader), member list (learner, then started with name and client
# URLs), Status isLearner, member promote (4 voters), move-leader to the promoted member,
# member remove of another member (the others keep serving), etcd's error messages.
MEMBERSHIP_TOKEN = "bollard-cluster"


class FollowerWriteLatencyTest(h.StoreTestCase):
    """One client writing through a follower, one write at a time: each write is answered
    once the follower applied it, which needs the leader's commit index. canonical/raft
    sends that with its next AppendEntries only (new entries or the heartbeat), so before
    the leader's commit nudge (node/forward.c) every such write took one to two heartbeats
    (5 writes/s at 100 ms). With 500 ms heartbeats, 20 writes must take well under the
    10 s that would cost."""

    def test_sequential_writes_through_follower(self):
        c = h.Cluster(3, extra_args=["--heartbeat-interval", "500", "--election-timeout", "5000"])
        self._stores += c.members
        c.start(timeout=60)
        leader = c.leader(timeout=30)
        follower = next(m for m in c.members if m is not leader)
        cl = follower.client()
        cl.put("warm", "up")
        t0 = time.monotonic()
        for i in range(20):
            cl.put("seq/%d" % i, "v")
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 5.0, "20 sequential writes through a follower took %.2f s"
                        % elapsed)
        self.assertEqual(cl.get("seq/19")[0], b"v")


class MembershipTest(h.StoreTestCase):
    def setUp(self):
        super().setUp()
        self.c = h.Cluster(3, extra_args=TIMINGS, token=MEMBERSHIP_TOKEN)
        self._stores += self.c.members
        self.c.start()

    def members(self, m):
        r = self.assertOk(m.etcdctl("member", "list", "-w", "json"))
        return r.json()["members"]

    def wait_members(self, m, pred, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            ms = self.members(m)
            if pred(ms):
                return ms
            if time.monotonic() > deadline:
                self.fail("member list never matched: %r" % ms)
            time.sleep(0.1)

    def is_learner(self, m):
        # Status.isLearner (python3-etcd3's protos predate it): etcdctl's JSON
        r = self.assertOk(m.etcdctl("endpoint", "status", "-w", "json"))
        return bool(r.json()[0]["Status"].get("isLearner", False))

    def test_add_learner_promote_move_leader_remove(self):
        leader = self.c.leader()
        for i in range(50):
            self.assertOk(leader.etcdctl("put", "pre%d" % i, str(i)))
        n4 = h.Store(name="n4")
        self._stores.append(n4)
        r = self.assertOk(h.member_change(leader, ["member", "add", "n4",
                                                    "--peer-urls=" + n4.peer_url, "--learner"]))
        m = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', r.out)
        self.assertIsNotNone(m, r.out)
        initial = m.group(1)
        self.assertIn("n4=" + n4.peer_url, initial)
        self.assertIn('ETCD_INITIAL_CLUSTER_STATE="existing"', r.out)
        ms = self.members(leader)
        self.assertEqual(len(ms), 4, ms)
        new = [x for x in ms if n4.peer_url in x.get("peerURLs", [])]
        self.assertEqual(len(new), 1, ms)
        self.assertTrue(new[0].get("isLearner"), new)
        new_id = new[0]["ID"]
        # the new member joins the existing cluster
        n4.extra_args = ["--initial-cluster", initial, "--initial-cluster-state", "existing",
                         "--initial-cluster-token", MEMBERSHIP_TOKEN] + TIMINGS
        n4.start()
        self.wait_members(leader, lambda ms: any(
            x["ID"] == new_id and x.get("name") == "n4" and n4.client_url in x.get("clientURLs", [])
            for x in ms))
        # it replicates (serializable reads are local)
        deadline = time.monotonic() + 15
        while n4.etcdctl("get", "pre49", "--print-value-only",
                         "--consistency=s").out.strip() != "49":
            self.assertLess(time.monotonic(), deadline, "n4 never caught up")
            time.sleep(0.1)
        self.assertTrue(self.is_learner(n4))
        self.assertFalse(self.is_learner(leader))
        # promote (retry while etcd says it is not in sync yet)
        deadline = time.monotonic() + 15
        while True:
            r = leader.etcdctl("member", "promote", "%x" % new_id)
            if r.ok:
                break
            self.assertIn("in sync", r.err)
            self.assertLess(time.monotonic(), deadline, r.err)
            time.sleep(0.2)
        ms = self.wait_members(leader, lambda ms: not any(x.get("isLearner") for x in ms))
        self.assertEqual(len(ms), 4)
        # n4 applies its promotion once the leader's next append tells it the entry is
        # committed (the leader's MemberList can say so a heartbeat earlier)
        deadline = time.monotonic() + 10
        while self.is_learner(n4):
            self.assertLess(time.monotonic(), deadline, "n4 never learned its promotion")
            time.sleep(0.1)
        # a promoted member serves writes and linearizable reads
        self.assertOk(n4.etcdctl("put", "from-n4", "x"))
        self.assertEqual(leader.etcdctl("get", "from-n4", "--print-value-only").out.strip(), "x")
        # move-leader to n4
        leader = self.c.leader()
        self.assertOk(leader.etcdctl("move-leader", "%x" % new_id))
        all4 = self.c.members + [n4]
        self.assertIs(self.c.leader(among=all4), n4)
        # remove a follower that is not n4
        victim = [x for x in self.c.members if x.running()][0]
        vid = self.c.status(victim)["member_id"]
        self.assertOk(h.member_change(n4, ["member", "remove", "%x" % vid]))
        rest = [x for x in all4 if x is not victim]
        ms = self.wait_members(n4, lambda ms: len(ms) == 3)
        self.assertNotIn(vid, [x["ID"] for x in ms])
        for i, x in enumerate(rest):
            self.assertOk(x.etcdctl("put", "after-remove-%d" % i, "1"))
        for x in rest:
            self.assertEqual(x.etcdctl("get", "after-remove-2", "--print-value-only")
                             .out.strip(), "1", x.name)
        # the removed member learns it from its peers and exits, as etcd's does
        h.wait_until(lambda: victim.proc.poll() is not None, 60, "the removed member exits")
        self.assertEqual(victim.wait_exit(5), 0)

    def test_errors(self):
        leader = self.c.leader()
        # (again while the cluster is too young for etcd's strict reconfiguration check)
        r = h.member_change(leader, ["member", "add", "dup",
                                     "--peer-urls=" + self.c.members[1].peer_url])
        self.assertFalse(r.ok)
        self.assertIn("Peer URLs already exists", r.err)
        r = leader.etcdctl("member", "remove", "1234")
        self.assertFalse(r.ok)
        self.assertIn("member not found", r.err)
        vid = self.c.status(self.c.members[0])["member_id"]
        r = leader.etcdctl("member", "promote", "%x" % vid)
        self.assertFalse(r.ok)
        self.assertIn("can only promote a learner member", r.err)


if __name__ == "__main__":
    h.main()
