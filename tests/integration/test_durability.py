#!/usr/bin/python3
"""Durability: every acknowledged write survives kill -9 and SIGTERM.

Concurrent writer threads (one gRPC channel each) put unique keys and record each
acknowledged put; the server is killed mid-run, restarted on the same data dir, and
every acknowledged key must be there with its value. An overwriting writer checks that
a key's value is its last acknowledged one (or the one in flight at the crash).

Run by meson with BOLLARD_STORE set; STORE_IMPL=etcd runs it against Debian's etcd.
"""

import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

import grpc  # noqa: E402
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc  # noqa: E402

WRITERS = 4


class Writer(threading.Thread):
    """Puts w<id>/r<round>/<n> = unique value until told to stop or the server fails."""

    def __init__(self, endpoint, wid, round_no, deadline):
        super().__init__(daemon=True)
        self.endpoint, self.wid, self.round_no, self.deadline = endpoint, wid, round_no, deadline
        self.acked = {}          # key -> (value, revision)
        self.stop = threading.Event()
        self.error = None

    def run(self):
        ch = grpc.insecure_channel(self.endpoint)
        stub = rpc_pb2_grpc.KVStub(ch)
        n = 0
        try:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                key = b"dur/w%d/r%d/%06d" % (self.wid, self.round_no, n)
                value = b"%s=%d" % (key, random.getrandbits(48))
                try:
                    resp = stub.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=10)
                except grpc.RpcError as e:
                    self.error = "%s %s" % (e.code(), e.details())
                    return
                self.acked[key] = (value, resp.header.revision)
                n += 1
        finally:
            ch.close()


class Overwriter(threading.Thread):
    """Overwrites one key with a counter; remembers the last acknowledged and attempted."""

    def __init__(self, endpoint, key, start, deadline):
        super().__init__(daemon=True)
        self.endpoint, self.key, self.n, self.deadline = endpoint, key, start, deadline
        self.last_acked = None
        self.last_attempted = None
        self.stop = threading.Event()

    def run(self):
        ch = grpc.insecure_channel(self.endpoint)
        stub = rpc_pb2_grpc.KVStub(ch)
        try:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                self.n += 1
                v = b"%d" % self.n
                self.last_attempted = v
                try:
                    stub.Put(rpc_pb2.PutRequest(key=self.key, value=v), timeout=10)
                except grpc.RpcError:
                    return
                self.last_acked = v
        finally:
            ch.close()


class Durability(h.StoreTestCase):

    def read_all(self, s, prefix=b"dur/"):
        ch = grpc.insecure_channel(s.endpoint)
        try:
            stub = rpc_pb2_grpc.KVStub(ch)
            resp = stub.Range(rpc_pb2.RangeRequest(key=prefix, range_end=prefix[:-1] + b"0"),
                              timeout=30)
            return {kv.key: kv.value for kv in resp.kvs}, resp.header.revision
        finally:
            ch.close()

    def check(self, s, acked, max_rev, what):
        got, rev = self.read_all(s)
        missing = [k for k in acked if k not in got]
        wrong = [(k, acked[k][0], got[k]) for k in acked if k in got and got[k] != acked[k][0]]
        self.assertEqual(missing, [], "%s: %d of %d acknowledged keys lost (first: %r)"
                         % (what, len(missing), len(acked), missing[:5]))
        self.assertEqual(wrong, [], "%s: acknowledged keys with other values" % what)
        self.assertGreaterEqual(rev, max_rev, "%s: revision went back below an acknowledged "
                                "put's revision" % what)
        return got

    def run_writers(self, s, round_no, seconds, overwriter_start):
        deadline = time.monotonic() + 60
        ws = [Writer(s.endpoint, i, round_no, deadline) for i in range(WRITERS)]
        ow = Overwriter(s.endpoint, b"dur/counter", overwriter_start, deadline)
        for w in ws + [ow]:
            w.start()
        time.sleep(seconds)
        return ws, ow

    def crash_rounds(self, extra_args, rounds=3):
        s = self.store(extra_args=extra_args)
        acked, max_rev, counter = {}, 0, 0
        rng = random.Random()
        for rnd in range(rounds):
            ws, ow = self.run_writers(s, rnd, rng.uniform(0.8, 1.6), counter)
            n_before = sum(len(w.acked) for w in ws)
            s.kill9()
            for w in ws + [ow]:
                w.join(20)
                self.assertFalse(w.is_alive(), "a writer hung after the server was killed")
            for w in ws:
                acked.update(w.acked)
                max_rev = max([max_rev] + [r for _, r in w.acked.values()])
            n_round = sum(len(w.acked) for w in ws)
            self.assertGreater(n_before, 0, "round %d: no put was acknowledged before kill -9"
                               % rnd)
            print("round %d: %d puts acknowledged before kill -9 (%d in total)"
                  % (rnd, n_round, len(acked)), flush=True)
            s.restart(timeout=60)
            got = self.check(s, acked, max_rev, "after kill -9 #%d" % (rnd + 1))
            if ow.last_acked is not None:
                self.assertIn(got.get(b"dur/counter"), (ow.last_acked, ow.last_attempted),
                              "overwritten key: not the last acknowledged value")
            counter = ow.n + 1
        # the store still takes writes after all that
        self.assertEqual(s.etcdctl("put", "dur-after", "ok").out, "OK\n")
        return s

    def test_kill9_three_rounds(self):
        self.crash_rounds([])

    def test_kill9_with_raft_snapshots(self):
        # a low snapshot count makes raft snapshot and truncate its log during the run
        self.crash_rounds(["--snapshot-count", "200"])

    def test_lost_database_refuses_to_start(self):
        """A raft snapshot holds no database (etcd's neither): with the database file
        gone and the raft log compacted past its beginning, the member refuses to start,
        naming where its database should be, instead of serving an empty or old store."""
        s = self.store(extra_args=["--snapshot-count", "50"])
        cl = s.client()
        for i in range(300):
            cl.put("lost/%03d" % i, "v%d" % i)
        cl.close()
        if s.impl == "bollard":
            db = os.path.join(s.data_dir, "member", "db")
            h.wait_until(lambda: "snapshot at applied index" in s.log_text(), 30, "a snapshot")
            path = os.path.join(db, "data.mdb")
        else:
            path = os.path.join(s.data_dir, "member", "snap", "db")
            h.wait_until(lambda: any(f.endswith(".snap") for f in
                                     os.listdir(os.path.dirname(path))), 30, "a snapshot")
        self.assertIn(s.terminate(), s.clean_exit_codes())
        os.unlink(path)
        # (run here: etcd 3.4 panics, and its log would read as a crash of the test's store)
        p = subprocess.run(s.argv(), cwd=s.tmp, env=h.clean_env(), capture_output=True,
                           text=True, timeout=60)
        text = p.stdout + p.stderr
        self.assertNotEqual(p.returncode, 0, text)
        for m in h.SANITIZER_MARKERS if s.impl == "bollard" else ():
            self.assertNotIn(m, text)
        if s.impl == "bollard":
            self.assertIn("cannot start: the database in %s holds applied index 0" % db, text)
        else:
            self.assertIn("failed to find database snapshot file", text)

    def state(self, s):
        """What must be identical before and after a restart with no writes in between."""
        hk = s.etcdctl("endpoint", "hashkv", "-w", "json")
        self.assertOk(hk)
        ml = s.etcdctl("member", "list", "-w", "json")
        self.assertOk(ml)
        d, m = hk.json()[0]["HashKV"], ml.json()
        return {"hash": d["hash"], "compact_revision": d.get("compact_revision"),
                "revision": d["header"]["revision"], "cluster_id": m["header"]["cluster_id"],
                "member_id": m["header"]["member_id"], "members": m["members"]}

    def test_restart_keeps_identical_state(self):
        s = self.store()
        ws, ow = self.run_writers(s, 0, 0.5, 0)
        for w in ws + [ow]:
            w.stop.set()
            w.join(20)
        self.assertOk(s.etcdctl("compaction", str(self.state(s)["revision"] - 10)))
        before = self.state(s)
        s.kill9()
        s.restart()
        self.assertEqual(self.state(s), before, "state after kill -9 + restart")
        self.assertIn(s.terminate(), s.clean_exit_codes())
        s.restart()
        self.assertEqual(self.state(s), before, "state after SIGTERM + restart")
        rev = s.etcdctl("put", "next", "x", "-w", "json").json()["header"]["revision"]
        self.assertEqual(rev, before["revision"] + 1, "revisions continue after a restart")

    def test_kill9_during_defrag_and_compaction(self):
        s = self.store()
        acked, max_rev = {}, 0
        rng = random.Random()
        for rnd in range(3):
            ws, ow = self.run_writers(s, rnd, 0.6, 0)
            for w in ws + [ow]:
                w.stop.set()
                w.join(20)
            for w in ws:
                acked.update(w.acked)
                max_rev = max([max_rev] + [r for _, r in w.acked.values()])
            # delete one writer's keys of this round so compaction and defrag have work
            self.assertOk(s.etcdctl("del", "dur/w0/r%d/" % rnd, "--prefix"))
            for k in [k for k in acked if k.startswith(b"dur/w0/r%d/" % rnd)]:
                del acked[k]
            rev = self.state(s)["revision"]
            max_rev = max(max_rev, rev)
            cmds = [["compaction", "--physical", str(rev)], ["defrag"]]
            procs = [subprocess.Popen([h.ETCDCTL, "--endpoints=" + s.endpoint] + c,
                                      env=h.clean_env(), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for c in cmds]
            time.sleep(rng.uniform(0.0, 0.05))
            s.kill9()
            for p in procs:
                p.wait(20)
            s.restart(timeout=60)
            got = self.check(s, acked, max_rev, "after kill -9 during compaction+defrag #%d"
                             % (rnd + 1))
            self.assertFalse([k for k in got if k.startswith(b"dur/w0/r%d/" % rnd)],
                             "deleted keys came back")
        self.assertOk(s.etcdctl("defrag"))
        self.check(s, acked, max_rev, "after a final defrag")

    def test_sigterm_clean_shutdown(self):
        s = self.store()
        ws, ow = self.run_writers(s, 0, 1.0, 0)
        t0 = time.monotonic()
        rc = s.terminate(timeout=20)
        took = time.monotonic() - t0
        for w in ws + [ow]:
            w.join(20)
            self.assertFalse(w.is_alive())
        acked, max_rev = {}, 0
        for w in ws:
            acked.update(w.acked)
            max_rev = max([max_rev] + [r for _, r in w.acked.values()])
        self.assertIsNotNone(rc, "no exit within 20 s of SIGTERM (under load)")
        self.assertIn(rc, s.clean_exit_codes(), "exit status after SIGTERM (under load)\n%s"
                      % s.log_tail())
        print("SIGTERM under load: %d puts acknowledged, exit %s after %.2fs"
              % (len(acked), rc, took), flush=True)
        s.restart()
        self.check(s, acked, max_rev, "after SIGTERM under load")
        # an idle store shuts down quickly and cleanly too
        rc = s.terminate(timeout=20)
        self.assertIn(rc, s.clean_exit_codes(), "exit status after SIGTERM (idle)")
        s.restart()
        self.check(s, acked, max_rev, "after SIGTERM when idle")


if __name__ == "__main__":
    h.main()
