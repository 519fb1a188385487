"""Failover through the C client library (issue 7): a 3-member cluster, the test-failover
program (tests/client/failover.c: a watcher and two writers through bollard_connect with
every member as an endpoint), and kill -9 of the member it is connected to once it has
written for a while. The program checks that the writers go on, every acknowledged write is
in the store, writes of unknown outcome are reported as such, and the watcher saw every put
exactly once in revision order; this driver starts the cluster, does the kill, and checks the
program's verdict and that the surviving members stop cleanly.

    test_failover.py <test-failover binary>      ($BOLLARD_STORE: the store binary)
"""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

PROG = os.path.abspath(sys.argv.pop(1)) if len(sys.argv) > 1 else None


class Failover(h.StoreTestCase):
    def run_failover(self, victim_role):
        c = h.Cluster(3, extra_args=["--log-level", "warn"])
        self._stores.extend(c.members)
        c.start()
        leader = c.leader()
        others = [m for m in c.members if m is not leader]
        first = leader if victim_role == "leader" else others[0]
        order = [first] + [m for m in c.members if m is not first]
        ids = {c.status(m)["member_id"]: m for m in c.members}
        p = subprocess.Popen([PROG, "--endpoints", ",".join(m.endpoint for m in order),
                              "--before", "150", "--after", "60"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env=h.clean_env())
        out = []
        victim = None
        killed_at = None
        timer = threading.Timer(170, p.kill)
        timer.start()
        try:
            for line in p.stdout:
                out.append(line)
                if line.startswith("CONNECTED "):
                    victim = ids.get(int(line.split()[1], 16))
                    self.assertIs(victim, first, "the client starts on the first endpoint")
                elif line.strip() == "KILL":
                    victim.kill9()
                    killed_at = time.monotonic()
                    p.stdin.write("killed\n")
                    p.stdin.flush()
            rc = p.wait()
        finally:
            timer.cancel()
        text = "".join(out)
        sys.stdout.write(text)
        self.assertIsNotNone(killed_at, text)
        self.assertEqual(rc, 0, text)
        self.assertIn("exactly once in revision order: yes", text)
        self.assertIn("1 passed, 0 failed", text)
        # the survivors still agree on a leader and serve
        self.assertIsNot(c.leader(among=[m for m in c.members if m is not victim]), victim)
        c.members.remove(victim)
        self._stores.remove(victim)

    def test_kill_connected_leader(self):
        self.run_failover("leader")

    def test_kill_connected_follower(self):
        self.run_failover("follower")


if __name__ == "__main__":
    h.main()
