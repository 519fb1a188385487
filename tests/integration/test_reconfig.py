"""etcd 3.4's strict reconfiguration checks (--strict-reconfig-check, on by default): a
membership change that would leave the cluster without a quorum of started or connected
members is refused before it reaches raft, with etcd's status codes and messages:
  Unavailable        "etcdserver: unhealthy cluster"  (a voting member out of contact, or in
                     contact for less than 5 s, where the change needs it)
  Unknown            "etcdserver: re-configuration failed due to not enough started members"
                     (etcd 3.4 maps it to its client-side error value, which gRPC sends as
                     Unknown)
  FailedPrecondition "etcdserver: can only promote a learner member which is in sync with
                     leader"
and --strict-reconfig-check=false lets the change through. Every scenario runs against
etcd 3.4 as well (STORE_IMPL=etcd); the answers asserted are the ones etcd gives.

Contact as etcd's peer streams: a killed member is out of contact at once (its peers'
connections to it fail), a new leader knows how long the others have been up (members
keep in touch whatever their roles), a restarted member is in contact from its restart.
Prints "N passed, N failed" last."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

TIMINGS = ["--heartbeat-interval", "100", "--election-timeout", "1000"]
TOKEN = "bollard-reconfig"
UNHEALTHY = ("Unavailable", "etcdserver: unhealthy cluster")
NOT_STARTED = ("Unknown",
               "etcdserver: re-configuration failed due to not enough started members")
NOT_IN_SYNC = ("FailedPrecondition",
               "etcdserver: can only promote a learner member which is in sync with leader")
OUT_OF_CONTACT_S = 2.5   # > the election timeout: a killed member is out of contact anyway


class StrictReconfigTest(h.StoreTestCase):
    def cluster(self, size, extra=(), timings=TIMINGS):
        c = h.Cluster(size, extra_args=list(timings) + list(extra), token=TOKEN)
        self._stores += c.members
        c.start(timeout=60)
        return c

    def new_store(self, name):
        n = h.Store(name=name)
        self._stores.append(n)
        return n

    def member_id(self, via, m):
        ms = self.assertOk(via.etcdctl("member", "list", "-w", "json")).json()["members"]
        return [x["ID"] for x in ms if m.peer_url in x["peerURLs"]][0]

    def assertRefused(self, r, status):
        """etcdctl failed with etcd's message, and the gRPC status clientv3 logged carries
        etcd's code."""
        code, msg = status
        self.assertEtcdError(r, msg)
        codes = set(re.findall(r"code = (\w+) desc = " + re.escape(msg), r.err))
        self.assertEqual(codes, {code}, r.err)

    def healthy(self, c, leader):
        """Until a learner add would pass (every member connected for 5 s): probe with a
        change that is refused anyway (a peer URL already in use)."""
        url = c.members[0].peer_url
        h.wait_until(lambda: "Peer URLs already exists" in leader.etcdctl(
            "member", "add", "probe", "--learner", "--peer-urls=" + url).err, 30,
            "every member connected for 5 s")

    def test_members_down(self):
        c = self.cluster(3)
        leader = c.leader(timeout=30)
        f1, f2 = [m for m in c.members if m is not leader]
        self.healthy(c, leader)
        n4 = self.new_store("n4")
        add_voter = ["member", "add", "n4", "--peer-urls=" + n4.peer_url]
        add_learner = add_voter + ["--learner"]
        f1_id, f2_id = self.member_id(leader, f1), self.member_id(leader, f2)
        leader_id = self.member_id(leader, leader)
        f1.kill9()
        time.sleep(OUT_OF_CONTACT_S)
        # one of three down: every voter must be connected to add, even a learner, and
        # removing a live member would leave one of two
        self.assertRefused(leader.etcdctl(*add_voter), UNHEALTHY)
        self.assertRefused(leader.etcdctl(*add_learner), UNHEALTHY)
        self.assertRefused(leader.etcdctl("member", "remove", "%x" % f2_id), UNHEALTHY)
        self.assertRefused(f2.etcdctl("member", "remove", "%x" % f2_id), UNHEALTHY)
        self.assertRefused(leader.etcdctl("member", "remove", "%x" % leader_id), UNHEALTHY)
        self.assertEqual(len(self.assertOk(leader.etcdctl("member", "list", "-w", "json"))
                             .json()["members"]), 3)
        # the member that is down may go
        r = self.assertOk(leader.etcdctl("member", "remove", "%x" % f1_id))
        self.assertIn("removed from cluster", r.out)
        # two left, the other one down too: the survivor, without a leader, refuses at once
        f2.kill9()
        time.sleep(OUT_OF_CONTACT_S)
        self.assertRefused(leader.etcdctl(*add_learner), UNHEALTHY)
        self.assertRefused(leader.etcdctl(*add_voter), UNHEALTHY)

    def test_unstarted_voter(self):
        c = self.cluster(1)
        n1 = c.members[0]
        n2, n3 = self.new_store("n2"), self.new_store("n3")
        # a second member for a one-member cluster may be added before it starts ...
        self.assertOk(n1.etcdctl("member", "add", "n2", "--peer-urls=" + n2.peer_url))
        # ... but not a third: two of three would not have started
        self.assertRefused(n1.etcdctl("member", "add", "n3", "--peer-urls=" + n3.peer_url),
                           NOT_STARTED)
        # a learner neither: n2 is not connected
        self.assertRefused(n1.etcdctl("member", "add", "n3", "--learner",
                                      "--peer-urls=" + n3.peer_url), UNHEALTHY)
        # nor may the only started member go
        n1_id = self.member_id(n1, n1)
        self.assertRefused(n1.etcdctl("member", "remove", "%x" % n1_id), NOT_STARTED)
        ms = self.assertOk(n1.etcdctl("member", "list", "-w", "json")).json()["members"]
        self.assertEqual(sorted(x["peerURLs"][0] for x in ms), sorted([n1.peer_url, n2.peer_url]))

    def test_promote(self):
        c = self.cluster(1)
        n1 = c.members[0]
        n2 = self.new_store("n2")
        r = self.assertOk(n1.etcdctl("member", "add", "n2", "--learner",
                                     "--peer-urls=" + n2.peer_url))
        n2_id = self.member_id(n1, n2)
        # a learner that has not started has not caught up
        self.assertRefused(n1.etcdctl("member", "promote", "%x" % n2_id), NOT_IN_SYNC)
        initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', r.out).group(1)
        n2.extra_args = ["--initial-cluster", initial, "--initial-cluster-state", "existing",
                         "--initial-cluster-token", TOKEN] + TIMINGS
        n2.start(wait=False)
        # once in sync it is promoted (it counts as started: one voter and it are a quorum)
        deadline = time.monotonic() + 30
        while True:
            r = n1.etcdctl("member", "promote", "%x" % n2_id)
            if r.ok:
                break
            self.assertRefused(r, NOT_IN_SYNC)
            self.assertLess(time.monotonic(), deadline, r.err)
            time.sleep(0.2)
        self.assertIn("promoted", r.out)
        n2.wait_ready(30)
        self.assertOk(n2.etcdctl("put", "after-promote", "1"))

    def test_strict_off(self):
        c = self.cluster(3, ["--strict-reconfig-check=false"])
        leader = c.leader(timeout=30)
        f1 = [m for m in c.members if m is not leader][0]
        f1.kill9()
        time.sleep(OUT_OF_CONTACT_S)
        n4 = self.new_store("n4")
        r = self.assertOk(leader.etcdctl("member", "add", "n4", "--learner",
                                         "--peer-urls=" + n4.peer_url))
        self.assertIn("added to cluster", r.out)
        self.assertOk(leader.etcdctl("put", "after-add", "1"))

    def test_concurrent_adds(self):
        """Two MemberAdds sent at the same instant, one to the leader and one to a
        follower (which forwards it), with the strict check off (both add unstarted
        voters: 5 members, 3 of them up, still a quorum). etcd 3.4's raft drops a
        configuration change proposed while another is unapplied, so its second caller
        waits until its deadline (both succeed only when the first was applied before the
        second came); Bollard's leader queues the second and runs it after the first:
        both succeed."""
        import threading
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        c = self.cluster(3, ["--strict-reconfig-check=false"])
        leader = c.leader(timeout=30)
        follower = [m for m in c.members if m is not leader][0]
        urls = ["http://127.0.0.1:%d" % h.free_port() for _ in range(2)]
        res = {}
        barrier = threading.Barrier(2)

        def add(i, via):
            ch = grpc.insecure_channel(via.endpoint)
            try:
                stub = rpc_pb2_grpc.ClusterStub(ch)
                stub.MemberList(rpc_pb2.MemberListRequest(), timeout=10)  # connected
                barrier.wait()
                t0 = time.monotonic()
                try:
                    stub.MemberAdd(rpc_pb2.MemberAddRequest(peerURLs=[urls[i]]), timeout=5)
                    res[i] = ("ok", time.monotonic() - t0)
                except grpc.RpcError as e:
                    res[i] = ("%s %s" % (e.code().name, e.details()), time.monotonic() - t0)
            finally:
                ch.close()
        ts = [threading.Thread(target=add, args=(i, via))
              for i, via in enumerate([leader, follower])]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        self.assertEqual(len(res), 2, res)
        print("outcomes (0: via the leader, 1: via a follower):", res, flush=True)
        ok = [i for i in res if res[i][0] == "ok"]
        if c.members[0].impl == "etcd":
            self.assertGreaterEqual(len(ok), 1, res)
            for i in res:
                if res[i][0] != "ok":   # dropped by raft: failed at its deadline only
                    self.assertIn(res[i][0], ("DEADLINE_EXCEEDED Deadline Exceeded",
                                              "UNAVAILABLE etcdserver: request timed out"),
                                  res)
                    self.assertGreater(res[i][1], 4.5, res)
        else:
            self.assertEqual(sorted(ok), [0, 1], res)
        ms = self.assertOk(leader.etcdctl("member", "list", "-w", "json")).json()["members"]
        listed = sorted(u for x in ms for u in x["peerURLs"] if u in urls)
        self.assertEqual(listed, sorted(urls[i] for i in ok), ms)
        self.assertEqual(len(ms), 3 + len(ok), ms)
        self.assertOk(follower.etcdctl("put", "after-adds", "1"))

    def probe(self, c, via):
        """A learner add that the strict check judges and that is refused anyway (a peer
        URL in use): etcd's answer, and when it came."""
        r = via.etcdctl("member", "add", "probe", "--learner",
                        "--peer-urls=" + c.members[0].peer_url)
        self.assertFalse(r.ok, r)
        return r.err.strip().splitlines()[-1], time.monotonic()

    def test_moved_leader_adds_at_once(self):
        """A new leader of a cluster whose members have long been up accepts a member add
        at once (etcd: the peers' streams were up before the leader changed; Bollard: every
        member probes every other one, whatever its role)."""
        c = self.cluster(3)
        leader = c.leader(timeout=30)
        self.healthy(c, leader)
        # the members' contacts began when each first reached the others (about when the
        # first leader was known), not all at the same instant: a margin beyond the leader's
        time.sleep(2)
        new = [m for m in c.members if m is not leader][0]
        r = self.assertOk(leader.etcdctl("move-leader", "%x" % self.member_id(leader, new)))
        self.assertIn("Leadership transferred", r.out)
        self.assertIs(c.leader(timeout=30), new)
        n4 = self.new_store("n4")
        r = self.assertOk(new.etcdctl("member", "add", "n4", "--learner",
                                      "--peer-urls=" + n4.peer_url))
        self.assertIn("added to cluster", r.out)

    def test_restarted_member_counts_from_restart(self):
        """The leader is killed, a new one elected, the old one restarted and caught up:
        the new leader refuses member adds ("unhealthy cluster") until the restarted member
        has been in contact for 5 s (etcd: its stream came up at the restart), then
        accepts them."""
        c = self.cluster(3)
        old = c.leader(timeout=30)
        self.healthy(c, old)
        old.kill9()
        new = c.leader(among=[m for m in c.members if m is not old], timeout=30)
        t_restart = time.monotonic()
        old.start(wait=True, timeout=60)

        def caught_up():
            a, b = c.status(new), c.status(old)
            return a and b and b["leader"] == a["leader"] and b["raft_index"] >= a["raft_index"]
        h.wait_until(caught_up, 30, "the restarted member caught up")
        answers = []
        while True:
            answer, t = self.probe(c, new)
            answers.append((answer, round(t - t_restart, 2)))
            if answer != "Error: " + UNHEALTHY[1]:
                break
            self.assertLess(t - t_restart, 30, answers)
            time.sleep(0.2)
        print("answers (seconds after the restart):", answers, flush=True)
        self.assertEqual(answer, "Error: etcdserver: Peer URLs already exists", answers)
        self.assertGreaterEqual(t - t_restart, 5.0, answers)
        n4 = self.new_store("n4")
        self.assertOk(new.etcdctl("member", "add", "n4", "--learner",
                                  "--peer-urls=" + n4.peer_url))

    def test_killed_member_out_of_contact_at_once(self):
        """A killed member is out of contact as soon as its peers' connections to it fail
        (etcd: its streams break), not an election timeout (5 s here) later: the leader
        refuses a member add within half of that."""
        c = self.cluster(3, timings=["--heartbeat-interval", "100", "--election-timeout", "5000"])
        leader = c.leader(timeout=60)
        self.healthy(c, leader)
        f = [m for m in c.members if m is not leader][0]
        f.kill9()
        t_kill = time.monotonic()
        answers = []
        while True:
            answer, t = self.probe(c, leader)
            answers.append((answer, round(t - t_kill, 2)))
            if answer == "Error: " + UNHEALTHY[1]:
                break
            self.assertEqual(answer, "Error: etcdserver: Peer URLs already exists", answers)
            self.assertLess(t - t_kill, 2.5, answers)
        print("answers (seconds after the kill):", answers, flush=True)
        self.assertLess(t - t_kill, 2.5, answers)


if __name__ == "__main__":
    h.main()
