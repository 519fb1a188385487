"""Membership of a 3-member cluster through etcd 3.4's Cluster service (issue 4), beyond
test_cluster.py's MembershipTest: MemberUpdate (the new peer URLs go through raft, every
member lists them, and the member restarted on its new peer URL rejoins); every
membership call sent to a follower (forwarded to the leader, as etcd); one cluster ID on
every member, also on one that joined later with a longer --initial-cluster; a removed
member stops (and stops again when restarted); a re-added peer URL gets a new member ID
and a removed ID cannot be used again, with etcd's errors.

Every wait is a condition with a deadline. Runs against etcd 3.4 too (STORE_IMPL=etcd)
to prove the tests. Prints "N passed, N failed" last."""

import hashlib
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

TIMINGS = ["--heartbeat-interval", "100", "--election-timeout", "1000"]
TOKEN = "bollard-members"


class MembersTest(h.StoreTestCase):
    def setUp(self):
        super().setUp()
        self.c = h.Cluster(3, extra_args=TIMINGS, token=TOKEN)
        self._stores += self.c.members
        self.c.start(timeout=60)
        self.leader = self.c.leader(timeout=30)
        self.followers = [m for m in self.c.members if m is not self.leader]

    def mid(self, m):
        return self.c.status(m)["member_id"]

    def members(self, m):
        return self.assertOk(m.etcdctl("member", "list", "-w", "json")).json()["members"]

    def wait_members(self, m, pred, what, timeout=30):
        return h.wait_until(lambda: pred(self.members(m)), timeout, what)

    def new_store(self, name):
        n = h.Store(name=name)
        self._stores.append(n)
        return n

    def start_joiner(self, n, add_out, learner=False):
        """Start n as member add printed; until it serves (a learner: until it published
        its name, as it serves no linearizable read)."""
        initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', add_out).group(1)
        n.extra_args = ["--initial-cluster", initial, "--initial-cluster-state", "existing",
                        "--initial-cluster-token", TOKEN] + TIMINGS
        n.start(wait=not learner, timeout=60)
        if learner:
            self.wait_members(self.leader, lambda ms: any(
                x.get("name") == n.name and n.client_url in x.get("clientURLs", []) for x in ms),
                n.name + " started")

    def test_member_update(self):
        f = self.followers[0]
        fid = self.mid(f)
        old_url = f.peer_url
        new_port = h.free_port()
        new_url = "http://127.0.0.1:%d" % new_port
        r = self.assertOk(h.member_change(self.leader, ["member", "update", "%x" % fid,
                                                        "--peer-urls=" + new_url]))
        self.assertIn("updated in cluster", r.out)
        def updated(ms):
            return any(x["ID"] == fid and x["peerURLs"] == [new_url] for x in ms)
        # replicated: the others list the new URL (f itself may hear of it only once it
        # listens there: its peers already talk to the new URL)
        for m in self.c.members:
            if m is not f:
                self.wait_members(m, updated, "update seen by " + m.name)
        # errors: unknown ID; a URL another member has
        r = self.leader.etcdctl("member", "update", "1234", "--peer-urls=http://127.0.0.1:1")
        self.assertEtcdError(r, "etcdserver: member not found")
        r = self.leader.etcdctl("member", "update", "%x" % fid,
                                "--peer-urls=" + self.followers[1].peer_url)
        self.assertEtcdError(r, "etcdserver: Peer URLs already exists")
        # the member restarts on its new peer URL (its config updated as an operator would)
        f.terminate()
        h.release_port(f.peer_port)
        f.peer_port = new_port
        initial = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.c.members)
        self.assertNotIn(old_url, initial)
        for m in self.c.members:
            m.extra_args[1] = initial
        f.start(timeout=60)
        self.assertEqual(self.mid(f), fid)       # its ID comes from its data dir
        self.wait_members(f, updated, "update seen by the updated member")
        self.assertOk(self.leader.etcdctl("put", "after-update", "1"))
        h.wait_until(lambda: f.etcdctl("get", "after-update", "--print-value-only",
                                     "--consistency=s").out.strip() == "1", 30,
                   "the updated member replicates")
        self.assertOk(f.etcdctl("put", "from-updated", "2"))
        self.assertEqual(self.leader.etcdctl("get", "from-updated", "--print-value-only")
                         .out.strip(), "2")
        # the leader and the updated member are a majority without the third member
        self.followers[1].kill9()
        self.assertOk(f.etcdctl("put", "quorum-with-updated", "3", command_timeout="15s",
                                timeout=60))

    def test_membership_calls_on_follower(self):
        f1, f2 = self.followers
        n4 = self.new_store("n4")
        r = self.assertOk(h.member_change(f1, ["member", "add", "n4",
                                                "--peer-urls=" + n4.peer_url, "--learner"]))
        self.assertIn('ETCD_INITIAL_CLUSTER_STATE="existing"', r.out)
        # f2 answers from what it has applied (as etcd 3.4's MemberList): it may lag f1
        self.wait_members(f2, lambda ms: len(ms) == 4, "the add, seen by the other follower")
        ms = self.members(f2)
        new = [x for x in ms if x["peerURLs"] == [n4.peer_url]]
        self.assertEqual(len(new), 1, ms)
        self.assertTrue(new[0].get("isLearner"), new)
        nid = new[0]["ID"]
        self.start_joiner(n4, r.out, learner=True)
        deadline = time.monotonic() + 30
        while True:
            r = f2.etcdctl("member", "promote", "%x" % nid)
            if r.ok:
                break
            self.assertIn("in sync", r.err)
            self.assertLess(time.monotonic(), deadline, r.err)
            time.sleep(0.2)
        self.wait_members(f1, lambda ms: len(ms) == 4 and not any(x.get("isLearner")
                                                                  for x in ms), "promoted")
        url2 = "http://127.0.0.1:%d" % h.free_port()
        self.assertOk(h.member_change(f2, ["member", "update", "%x" % nid,
                                           "--peer-urls=" + url2]))
        self.wait_members(f1, lambda ms: any(x["ID"] == nid and x["peerURLs"] == [url2]
                                             for x in ms), "updated")
        r = self.assertOk(h.member_change(f1, ["member", "remove", "%x" % nid]))
        self.assertIn("removed from cluster", r.out)
        for m in self.c.members:
            self.wait_members(m, lambda ms: len(ms) == 3 and nid not in [x["ID"] for x in ms],
                              "removed, seen by " + m.name)
        h.wait_until(lambda: n4.proc.poll() is not None, 60, "n4 stops once removed")
        n4.wait_exit(5)
        # errors come back from the leader with etcd's words
        r = f1.etcdctl("member", "remove", "%x" % nid)
        self.assertEtcdError(r, "etcdserver: member not found")
        r = f2.etcdctl("member", "promote", "%x" % self.mid(f1))
        self.assertEtcdError(r, "etcdserver: can only promote a learner member")
        r = f2.etcdctl("member", "add", "dup", "--peer-urls=" + f1.peer_url)
        self.assertEtcdError(r, "etcdserver: Peer URLs already exists")

    def test_cluster_id_same_on_joined_member(self):
        cid = self.c.status(self.leader)["cluster_id"]
        n4 = self.new_store("n4")
        r = self.assertOk(h.member_change(self.leader, ["member", "add", "n4",
                                                         "--peer-urls=" + n4.peer_url]))
        nid = int(re.search(r"Member\s+([0-9a-f]+) added", r.out).group(1), 16)
        # from its first answer on, the joiner reports the ID and cluster ID the cluster
        # gave it (etcd learns them from its peers before it serves), also while the
        # leader is hung and a new one not elected yet
        initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', r.out).group(1)
        n4.extra_args = ["--initial-cluster", initial, "--initial-cluster-state", "existing",
                         "--initial-cluster-token", TOKEN] + TIMINGS
        os.killpg(self.leader.proc.pid, signal.SIGSTOP)
        stopped = True
        try:
            n4.start(wait=False)
            answers = []
            t0 = time.monotonic()
            while len(answers) < 20:
                if stopped and time.monotonic() > t0 + 3:
                    os.killpg(self.leader.proc.pid, signal.SIGCONT)
                    stopped = False
                self.assertLess(time.monotonic(), t0 + 60, "n4 never answered Status")
                self.assertIsNone(n4.proc.poll(), n4.log_tail())
                st = self.c.status(n4, timeout=1)
                if st is not None:
                    answers.append((st["member_id"], st["cluster_id"]))
                else:
                    time.sleep(0.02)
        finally:
            if stopped:
                os.killpg(self.leader.proc.pid, signal.SIGCONT)
        self.assertEqual(set(answers), {(nid, cid)})
        n4.wait_ready(60)
        self.assertOk(n4.etcdctl("put", "j", "1"))
        r = self.assertOk(n4.etcdctl("get", "j", "-w", "json"))
        self.assertEqual(r.json()["header"]["cluster_id"], cid)
        h.wait_until(lambda: self.c.status(n4)["cluster_id"] == cid, 30, "n4's cluster ID")
        n4.terminate()
        n4.start(timeout=60)
        self.assertEqual(self.c.status(n4)["cluster_id"], cid)
        r = self.assertOk(n4.etcdctl("member", "list", "-w", "json"))
        self.assertEqual(r.json()["header"]["cluster_id"], cid)
        for m in self.c.members:
            self.assertEqual(self.c.status(m)["cluster_id"], cid)

    def test_voter_started_late(self):
        """A member added as a voter is one to the API at once (not isLearner) and joins
        as a voter also when it starts well after the add (raft 0.15's catch-up rounds
        give up after 5 s; the leader makes it a voter once it caught up): it can lead."""
        n4 = self.new_store("n4")
        r = self.assertOk(h.member_change(self.leader, ["member", "add", "n4",
                                                         "--peer-urls=" + n4.peer_url]))
        nid = int(re.search(r"Member\s+([0-9a-f]+) added", r.out).group(1), 16)
        new = [x for x in self.members(self.leader) if x["ID"] == nid]
        self.assertEqual(len(new), 1)
        self.assertFalse(new[0].get("isLearner", False), new)
        time.sleep(7)
        self.start_joiner(n4, r.out)
        self.assertOk(n4.etcdctl("put", "late-voter", "1"))
        def moved():
            leader = self.c.leader(among=self.c.members + [n4], timeout=10)
            if leader is n4:
                return True
            leader.etcdctl("move-leader", "%x" % nid)
            return False
        h.wait_until(moved, 60, "n4 leads after move-leader")
        self.assertOk(self.leader.etcdctl("put", "under-n4", "1"))
        self.assertFalse(any(x.get("isLearner") for x in self.members(n4)))

    def test_removed_member_stops(self):
        victim = self.followers[0]
        vid = self.mid(victim)
        r = self.assertOk(h.member_change(self.followers[1], ["member", "remove", "%x" % vid]))
        self.assertIn("removed from cluster", r.out)
        h.wait_until(lambda: victim.proc.poll() is not None, 60, "the removed member exits")
        rc = victim.wait_exit(5)
        print("removed member exited with status %s" % rc, flush=True)
        self.assertIn("removed", victim.log_text().split("==== start #1")[-1])
        self.assertOk(self.leader.etcdctl("put", "after-remove", "1"))
        # restarted on its data dir, it stops again: its peers refuse it
        victim.start(wait=False)
        h.wait_until(lambda: victim.proc.poll() is not None, 60, "the removed member exits again")
        victim.wait_exit(5)
        self.assertIn("removed", victim.log_text().split("==== start #2")[-1])
        ms = self.members(self.leader)
        self.assertEqual(sorted(x["ID"] for x in ms),
                         sorted(self.mid(m) for m in self.followers[1:] + [self.leader]))

    def test_removed_before_start(self):
        """A member added, then removed before it ever started, stops when started: it
        asks its peers (their peer URLs from --initial-cluster) and is told it was
        removed. etcd refuses it at start instead (its peers' member list lacks it:
        "member count is unequal", status 1)."""
        n4 = self.new_store("n4")
        r = self.assertOk(h.member_change(self.leader, ["member", "add", "n4",
                                                         "--peer-urls=" + n4.peer_url]))
        nid = int(re.search(r"Member\s+([0-9a-f]+) added", r.out).group(1), 16)
        self.assertOk(h.member_change(self.leader, ["member", "remove", "%x" % nid]))
        initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', r.out).group(1)
        n4.extra_args = ["--initial-cluster", initial, "--initial-cluster-state", "existing",
                         "--initial-cluster-token", TOKEN] + TIMINGS
        n4.start(wait=False)
        h.wait_until(lambda: n4.proc.poll() is not None, 60, "the removed member exits")
        rc = n4.wait_exit(5)
        log = n4.log_text()
        if n4.impl == "bollard":
            self.assertEqual(rc, 0)
            self.assertIn("the member has been permanently removed from the cluster", log)
        else:
            self.assertEqual(rc, 1)
            self.assertIn("member count is unequal", log)
        self.assertEqual(len(self.members(self.leader)), 3)

    def test_hung_member_removed(self):
        """A member hung (SIGSTOP) while it is removed learns it once it runs again and
        exits (status 0) with etcd's words."""
        victim = self.followers[0]
        vid = self.mid(victim)
        os.killpg(victim.proc.pid, signal.SIGSTOP)
        try:
            r = self.assertOk(h.member_change(self.followers[1],
                                              ["member", "remove", "%x" % vid], timeout=60))
            self.assertIn("removed from cluster", r.out)
        finally:
            os.killpg(victim.proc.pid, signal.SIGCONT)
        h.wait_until(lambda: victim.proc.poll() is not None, 60, "the removed member exits")
        self.assertEqual(victim.wait_exit(5), 0)
        self.assertIn("the member has been permanently removed from the cluster",
                      victim.log_text())

    def test_readd_gets_new_id(self):
        victim = self.followers[0]
        vid = self.mid(victim)
        url = victim.peer_url
        self.assertOk(h.member_change(self.leader, ["member", "remove", "%x" % vid]))
        h.wait_until(lambda: victim.proc.poll() is not None, 60, "the removed member exits")
        victim.wait_exit(5)
        # the same peer URL added again: a new ID (etcd mixes the time into it)
        n = self.new_store(victim.name)
        h.release_port(n.peer_port)
        n.peer_port = victim.peer_port
        t0 = int(time.time())
        added = self.assertOk(h.member_change(self.leader, ["member", "add", victim.name,
                                                             "--peer-urls=" + url]))
        t1 = int(time.time())
        m = re.search(r"Member\s+([0-9a-f]+) added", added.out)
        self.assertIsNotNone(m, added.out)
        new_id = int(m.group(1), 16)
        self.assertNotEqual(new_id, vid)
        # etcd's MemberAdd: the first 8 bytes of SHA-1(sorted peer URLs, unix seconds) (its
        # NewMember with an empty cluster name)
        ids = {int.from_bytes(hashlib.sha1((url + str(t)).encode()).digest()[:8], "big")
               for t in range(t0 - 1, t1 + 2)}
        self.assertIn(new_id, ids)
        # the removed ID stays removed
        r = self.leader.etcdctl("member", "remove", "%x" % vid)
        self.assertEtcdError(r, "etcdserver: member not found")
        r = self.leader.etcdctl("member", "update", "%x" % vid, "--peer-urls=http://127.0.0.1:1")
        self.assertEtcdError(r, "etcdserver: member not found")
        # a fresh data dir on that URL joins as the new member
        self.start_joiner(n, added.out)
        r = h.member_change(self.leader, ["member", "add", "again", "--peer-urls=" + url])
        self.assertEtcdError(r, "etcdserver: Peer URLs already exists")
        self.assertEqual(self.mid(n), new_id)
        self.assertOk(n.etcdctl("put", "readded", "1"))
        self.wait_members(self.leader, lambda ms: any(x["ID"] == new_id and x.get("name")
                                                      == victim.name for x in ms), "started")


if __name__ == "__main__":
    h.main()
