"""A 3-member cluster on loopback: formation from etcd's flags, any member serves any
request (writes forwarded to the leader, linearizable reads on followers), Status and
MemberList, a watch on a follower, kill -9 of the leader under a write load (no
acknowledged write lost, a new leader within 2 election timeouts, equal HashKV), and a
SIGSTOP/SIGCONT hang. Run with Debian's python3; prints "N passed, N failed" last."""

import os
import signal
import sys
import threading
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
        # TODO(issue 4): keep-alive on a follower must reach the leader (not forwarded yet)
        self.assertOk(self.c.leader().etcdctl("lease", "keep-alive", "--once", lid))
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
        acked, lock, stop = [], threading.Lock(), threading.Event()

        def writer(idx, m):
            cl = m.client(timeout=3)
            i = 0
            while not stop.is_set():
                key = "load/%d/%d" % (idx, i)
                try:
                    cl.put(key, str(i))
                    with lock:
                        acked.append(key)
                except Exception:
                    time.sleep(0.05)
                i += 1

        ths = [threading.Thread(target=writer, args=(i, survivors[i % 2]), daemon=True)
               for i in range(4)]
        for t in ths:
            t.start()
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
        stop.set()
        for t in ths:
            t.join(10)
        leader.restart()
        rev = self.wait_equal_hashes(timeout=20)
        print("%d acknowledged writes, HashKV %r on all members" % (len(acked), rev), flush=True)
        self.assertGreater(len(acked), 50)
        for m in self.c.members:
            cl = m.client()
            got = {k[1].key.decode() for k in cl.get_prefix("load/")}
            missing = [k for k in acked if k not in got]
            self.assertEqual(missing, [], m.name)

    def test_sigstop_member(self):
        # a follower hangs (a hung leader: writes forwarded to it time out until the
        # others elect; TODO(issue 4))
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


if __name__ == "__main__":
    h.main()
