"""SIGTERM at any moment of a member's life stops it cleanly: exit status 0 and no
sanitizer report, whether the signal arrives while the member is still starting (raft
loading its log, the data dir lock, the gRPC server coming up), right after a restart on
an existing data dir, while clients write, or on a member of a 3-member cluster.

Each round starts bollard-store and sends SIGTERM after a random 0-300 ms (the seed is
printed; SIGTERM_SEED replays it). bollard-store holds stop signals pending from the start
of main until its handlers run, so once it logged its first line a SIGTERM must end in
status 0; one that arrives earlier (while the dynamic loader or the sanitizer runtime
start) kills it (status -15), the only other status accepted. $SIGTERM_ROUNDS sets the
rounds per test (default 10: the default suite); the soak suite runs 150. On a failure the
member's temp dir is kept and its log printed.

    SIGTERM_ROUNDS=100 BOLLARD_STORE=build/tools/bollard-store \\
        /usr/bin/python3 tests/integration/test_sigterm.py
"""

import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

ROUNDS = int(os.environ.get("SIGTERM_ROUNDS", "10"))
SEED = int(os.environ.get("SIGTERM_SEED", str(random.SystemRandom().randrange(1 << 30))))
MAX_DELAY = 0.3
FIRST_LINE = "bollard-store: bollard-store "   # main's first line: stop signals held


class Writer:
    """Puts through raw gRPC as fast as the member answers (errors ignored: it may not be
    serving yet or any more), until stop()."""

    def __init__(self, store):
        self.store, self.acked = store, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        ch = grpc.insecure_channel(self.store.endpoint)
        kv = rpc_pb2_grpc.KVStub(ch)
        i = 0
        while not self._stop.is_set():
            try:
                kv.Put(rpc_pb2.PutRequest(key=b"w/%d" % (i % 50), value=b"x" * 100), timeout=1)
                self.acked += 1
            except grpc.RpcError:
                time.sleep(0.005)
            i += 1
        ch.close()

    def stop(self):
        self._stop.set()
        self._t.join(10)


class SigtermRace(h.StoreTestCase):
    def setUp(self):
        super().setUp()
        self.rng = random.Random("%d/%s" % (SEED, self.id()))
        self.stats = {}

    def sigterm(self, s, delay, what):
        """SIGTERM s delay seconds after it was started; check how it ended."""
        time.sleep(max(0.0, delay - (time.monotonic() - s.t_start)))
        os.kill(s.proc.pid, signal.SIGTERM)
        rc = s._reap(30)
        if rc is None:
            os.killpg(s.proc.pid, signal.SIGKILL)
            s._reap(10)
        log = s.log_text().rsplit("==== start #", 1)[-1]
        ok = rc == 0 or (rc == -signal.SIGTERM and FIRST_LINE not in log)
        rep = s.sanitizer_report()
        if not ok or rep:
            s.cleanup(keep=True)
            self.fail("%s: SIGTERM %.0f ms after start gave status %s (seed %d)\n%s\n%s"
                      % (what, delay * 1000, "no exit within 30 s" if rc is None else rc, SEED,
                         rep or "", s.log_tail(120)))
        key = "0" if rc == 0 else "-15 (before main)"
        self.stats[key] = self.stats.get(key, 0) + 1

    def start(self, s):
        s.start(wait=False)
        s.t_start = time.monotonic()

    def ready_or_lagging(self, m, timeout=5):
        """Until m answers a linearizable read, or timeout: a member that lags may wait
        raft 0.15's install-snapshot timeout (30 s) for the leader to send the snapshot
        again when it was busy with its own snapshot; a SIGTERM must stop it anyway."""
        try:
            m.wait_ready(timeout=timeout)
        except h.StoreError:
            self.assertTrue(m.running(), m.log_tail())
            self.stats["lagging"] = self.stats.get("lagging", 0) + 1

    def report(self, what):
        print("%s: %d rounds, exit statuses (and lagging members) %s" % (what, ROUNDS, self.stats),
              flush=True)

    def test_single_member(self):
        """A fresh data dir every other round; otherwise a restart on the last one."""
        s = self.store(start=False)
        for i in range(ROUNDS):
            if i % 2 == 0:
                s.cleanup()
                s = self.store(start=False)
            self.start(s)
            self.sigterm(s, self.rng.uniform(0, MAX_DELAY), "round %d" % i)
        self.report("single member")

    def test_restart_with_data(self):
        """Restarts on a data dir with a raft log and a snapshot, some right after the
        member answered (as at the end of a test), some while it loads."""
        s = self.store(extra_args=["--snapshot-count", "50"])
        cl = s.client()
        for i in range(300):
            cl.put("k%d" % (i % 20), "v" * 200)
        cl.close()
        s.terminate()
        for i in range(ROUNDS):
            self.start(s)
            if i % 2:
                s.wait_ready()
                delay = time.monotonic() - s.t_start + self.rng.uniform(0, 0.05)
            else:
                delay = self.rng.uniform(0, MAX_DELAY)
            self.sigterm(s, delay, "restart round %d" % i)
        self.report("restart with data")

    def test_while_writing(self):
        s = self.store(start=False, extra_args=["--snapshot-count", "100"])
        for i in range(ROUNDS):
            self.start(s)
            w = Writer(s)
            try:
                if i % 2:
                    s.wait_ready()
                self.sigterm(s, time.monotonic() - s.t_start + self.rng.uniform(0, MAX_DELAY),
                             "writing round %d" % i)
            finally:
                w.stop()
        self.report("while writing")

    def test_cluster_member(self):
        """Two members keep running; the third is started and stopped (the cluster has a
        leader or elects one meanwhile), and now and then one of the others too."""
        c = h.Cluster(3, extra_args=["--heartbeat-interval", "50", "--election-timeout", "500",
                                     "--snapshot-count", "100"])
        self._stores += c.members
        c.start()
        for m in c.members:
            m.t_start = time.monotonic()
        w = Writer(c.members[0])
        try:
            for i in range(ROUNDS):
                m = c.members[self.rng.randrange(3) if i % 3 == 2 else 2]
                what = "cluster round %d (%s)" % (i, m.name)
                if m.running():
                    if i % 2:
                        self.ready_or_lagging(m)
                    self.sigterm(m, 0, what + ", running")
                self.start(m)
                self.sigterm(m, self.rng.uniform(0, 2 * MAX_DELAY), what)
                self.start(m)
            for m in c.members:
                self.ready_or_lagging(m)
        finally:
            w.stop()
        self.report("cluster member")

    def test_request_waiting_for_a_leader(self):
        """A member without a leader (the others of its cluster never started) holds a
        write until the request timeout (5 s + 2 election timeouts: 15 s here); SIGTERM
        must not wait for it."""
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        c = h.Cluster(3, extra_args=["--election-timeout", "5000"])
        m = c.members[0]
        self._stores += c.members
        m.start(wait=False)
        errors, sending = [], threading.Event()

        def put():
            ch = grpc.insecure_channel(m.endpoint)
            try:
                grpc.channel_ready_future(ch).result(timeout=30)
                sending.set()
                rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=60)
                errors.append("acknowledged without a leader")
            except grpc.RpcError as e:
                errors.append("%s %s" % (e.code(), e.details()))
            finally:
                ch.close()
        t = threading.Thread(target=put, daemon=True)
        t.start()
        self.assertTrue(sending.wait(30), "no connection to the member\n" + m.log_tail())
        time.sleep(1.0)   # the put reaches the member (it waits there for a leader)
        t0 = time.monotonic()
        rc = m.terminate(timeout=30)
        took = time.monotonic() - t0
        t.join(30)
        print("SIGTERM with a write waiting for a leader: exit %s after %.2f s, client saw %s"
              % (rc, took, errors), flush=True)
        self.assertEqual(rc, 0, m.log_tail())
        self.assertLess(took, 5.0, "the stop waited for the request timeout\n" + m.log_tail())
        self.assertEqual(len(errors), 1)
        self.assertNotIn("acknowledged", errors[0])


if __name__ == "__main__":
    print("SIGTERM_SEED=%d SIGTERM_ROUNDS=%d" % (SEED, ROUNDS), flush=True)
    h.main()
