"""Linearizability of a 3-member cluster on loopback under crashes and hangs (issue 4).

Six gRPC clients (two per member) do gets, puts and compare-and-set txns on four keys
while the leader is killed with SIGKILL and restarted, or hung with SIGSTOP and resumed.
Every operation is recorded (tests/lib/kvworkload.py) and the history goes through the
Wing-Gong/Lowe checker (tests/lib/linearizability.py): the test fails when no sequential
order explains what the clients were told. After each test: every member at the same
revision has the same HashKV, every member holds the same events for the keys, no
acknowledged write is missing and no unwritten value appears. Run with Debian's python3;
prints "N passed, N failed" last.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import kvworkload as kw  # noqa: E402
import storeharness as h  # noqa: E402

HEARTBEAT_MS = 100
ELECTION_MS = 1000
TIMINGS = ["--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS)]


class LinearizableClusterTest(h.StoreTestCase):
    def setUp(self):
        super().setUp()
        self.c = h.Cluster(3, extra_args=TIMINGS)
        self._stores += self.c.members   # stopped and checked by tearDown
        self.c.start()
        self.w = None

    def tearDown(self):
        if self.w is not None:
            self.w._stop.set()
        super().tearDown()

    def start_workload(self, seed):
        self.w = kw.Workload.on_members(self.c.members, seed=seed).start()
        return self.w

    def finish(self):
        self.w.stop()
        summary = kw.verify_cluster(self.c, self.w)
        print(summary, flush=True)
        return summary

    def test_kill_leader(self):
        w = self.start_workload(seed=11)
        self.assertGreaterEqual(w.wait_ok(60), 60, w.summary())
        leader = self.c.leader()
        survivors = [m for m in self.c.members if m is not leader]
        t_kill = time.monotonic_ns()
        leader.kill9()
        new = self.c.leader(among=survivors, timeout=10)
        # the survivors' clients keep getting writes through
        n = w.wait_ok(40, since_ns=time.monotonic_ns(), clients=self.w.clients_of(survivors))
        self.assertGreaterEqual(n, 40, w.summary())
        print("leader %s killed; %s leads after %.2fs" % (
            leader.name, new.name, (time.monotonic_ns() - t_kill) / 1e9), flush=True)
        leader.restart()
        # the restarted member serves its clients again
        n = w.wait_ok(20, since_ns=time.monotonic_ns(), clients=self.w.clients_of([leader]))
        self.assertGreaterEqual(n, 20, w.summary())
        self.finish()

    def test_sigstop_leader(self):
        w = self.start_workload(seed=12)
        self.assertGreaterEqual(w.wait_ok(60), 60, w.summary())
        leader = self.c.leader()
        others = [m for m in self.c.members if m is not leader]
        leader.proc.send_signal(signal.SIGSTOP)
        try:
            new = self.c.leader(among=others, timeout=10)
            n = w.wait_ok(40, since_ns=time.monotonic_ns(), clients=self.w.clients_of(others))
            self.assertGreaterEqual(n, 40, w.summary())
            print("leader %s stopped; %s leads" % (leader.name, new.name), flush=True)
        finally:
            leader.proc.send_signal(signal.SIGCONT)
        # the resumed member steps down, catches up and serves its clients again
        self.assertIsNot(self.c.leader(timeout=15), leader)
        n = w.wait_ok(20, since_ns=time.monotonic_ns(), clients=self.w.clients_of([leader]))
        self.assertGreaterEqual(n, 20, w.summary())
        self.finish()

    def test_kill_follower_and_restart_all(self):
        w = self.start_workload(seed=13)
        self.assertGreaterEqual(w.wait_ok(40), 40, w.summary())
        leader = self.c.leader()
        victim = [m for m in self.c.members if m is not leader][0]
        victim.kill9()
        n = w.wait_ok(40, since_ns=time.monotonic_ns(),
                      clients=self.w.clients_of([m for m in self.c.members if m is not victim]))
        self.assertGreaterEqual(n, 40, w.summary())
        victim.restart()
        # every member restarts (SIGTERM), one after the other, under load
        for m in self.c.members:
            self.assertIn(m.terminate(), m.clean_exit_codes(), m.log_tail())
            m.restart()
            n = w.wait_ok(10, since_ns=time.monotonic_ns())
            self.assertGreaterEqual(n, 10, w.summary())
        self.finish()


if __name__ == "__main__":
    h.main()
