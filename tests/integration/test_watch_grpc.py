#!/usr/bin/python3
"""The Watch service over raw gRPC, for what etcdctl 3.4 cannot ask: periodic progress
notifications (`progress_notify`, etcdctl 3.5's --progress-notify) at the interval of
--experimental-watch-progress-notify-interval, progress requests (answered at once with
watch_id -1 and the current revision, as etcd 3.4 does), and the `hasleader` metadata
(etcd's clientv3.WithRequireLeader: a member without a leader refuses the stream with
"etcdserver: no leader").

Run by meson with BOLLARD_STORE set; STORE_IMPL=etcd runs it against Debian's etcd 3.4
(the leaderless member is bollard only: etcd 3.4 does not serve clients before it has
joined a cluster with a leader).
"""

import os
import queue
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

import grpc  # noqa: E402
from etcd3.etcdrpc import rpc_pb2 as pb, rpc_pb2_grpc as pbg  # noqa: E402

INTERVAL = 0.2   # seconds: --experimental-watch-progress-notify-interval 200ms


class Stream:
    """One Watch stream: requests through a queue, responses (with their arrival time)
    into another; an RpcError ends the responses."""

    def __init__(self, tc, store, metadata=None):
        self.ch = store.grpc_channel()
        tc.addCleanup(self.ch.close)
        self.reqs = queue.Queue()
        self.resps = queue.Queue()
        self.tc = tc

        self.call = h.watch_stream_call(self.ch, self.reqs, timeout=60, metadata=metadata)
        h.read_responses(self.call, self.resps)

        def stop():
            self.reqs.put(None)
            self.call.cancel()
        tc.addCleanup(stop)

    def create(self, key, **kw):
        self.reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=key.encode(), **kw)).SerializeToString())
        r = self.next()
        # a periodic progress notification of a watch created before may come first
        # when the box is slow (seen under load at a 200 ms interval)
        while not (r.created or r.canceled or r.events):
            r = self.next()
        self.tc.assertTrue(r.created, r)
        return r.watch_id

    def progress(self):
        self.reqs.put(b"\x1a\x00")

    def next(self, timeout=10):
        return h.next_response(self.tc, self.resps, timeout)[1]

    def collect(self, seconds):
        """Every (time, response) that arrives within the next `seconds`."""
        out = []
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return out
            try:
                t, r = self.resps.get(timeout=left)
            except queue.Empty:
                return out
            if isinstance(r, Exception):
                self.tc.fail("stream failed: %r" % r)
            out.append((t, r))


def kv(store):
    ch = store.grpc_channel()
    return ch, pbg.KVStub(ch)


class ProgressNotify(h.StoreTestCase):

    def put(self, stub, k, v):
        return stub.Put(pb.PutRequest(key=k.encode(), value=v.encode()), timeout=5).header.revision

    def test_periodic_progress_at_the_flag_interval(self):
        s = self.store(extra_args=["--experimental-watch-progress-notify-interval", "200ms"])
        ch, stub = kv(s)
        self.addCleanup(ch.close)
        rev = self.put(stub, "other", "x")
        w = Stream(self, s)
        a = w.create("a", progress_notify=True)
        b = w.create("b", progress_notify=True)
        c = w.create("c")
        # idle: each progress_notify watch gets empty responses at the current revision,
        # about every interval; the other none
        got = [r for _, r in w.collect(8 * INTERVAL)]
        for r in got:
            self.assertEqual((len(r.events), r.header.revision, r.created, r.canceled),
                             (0, rev, False, False), r)
        ids = [r.watch_id for r in got]
        self.assertGreaterEqual(ids.count(a), 3, got)
        self.assertGreaterEqual(ids.count(b), 3, got)
        self.assertLessEqual(ids.count(a), 9, got)
        self.assertEqual(ids.count(c), 0, got)
        # a watch that receives events has its notifications elided; the idle one goes on
        stop = time.monotonic() + 10 * INTERVAL
        last = rev
        while time.monotonic() < stop:
            last = self.put(stub, "a", "v")
            time.sleep(INTERVAL / 5)
        got = [r for _, r in w.collect(INTERVAL / 2)]
        prog_a = [r for r in got if r.watch_id == a and not r.events]
        prog_b = [r for r in got if r.watch_id == b]
        evs_a = [e.kv.mod_revision for r in got if r.watch_id == a for e in r.events]
        self.assertEqual(evs_a, list(range(rev + 1, last + 1)))
        self.assertLessEqual(len(prog_a), 1, prog_a)
        self.assertGreaterEqual(len(prog_b), 5, got)
        self.assertTrue(all(not r.events for r in prog_b), prog_b)
        self.assertEqual([r.header.revision for r in prog_b],
                         sorted(r.header.revision for r in prog_b))

    def test_default_interval_is_quiet(self):
        s = self.store()
        w = Stream(self, s)
        w.create("a", progress_notify=True)
        self.assertEqual(w.collect(1.0), [])

    def test_progress_request_answered_at_once(self):
        s = self.store()
        ch, stub = kv(s)
        self.addCleanup(ch.close)
        w = Stream(self, s)
        # a stream without watches
        w.progress()
        r = w.next()
        rev = self.put(stub, "k", "v0")
        self.assertEqual((r.watch_id, len(r.events)), (-1, 0))
        self.assertEqual(r.header.revision, rev - 1)
        for i in range(1, 5):
            rev = self.put(stub, "k", "v%d" % i)
        # with a live watch and a replaying one (etcd 3.4 does not wait for the latter)
        w.create("k")
        w.create("k", start_revision=rev - 3)
        w.progress()
        got = [r for _, r in w.collect(1.0)]
        prog = [r for r in got if r.watch_id == -1]
        self.assertEqual(len(prog), 1, got)
        self.assertEqual((prog[0].header.revision, len(prog[0].events)), (rev, 0))
        evs = [e.kv.mod_revision for r in got for e in r.events]
        self.assertEqual(evs, list(range(rev - 3, rev + 1)))


class HasLeader(h.StoreTestCase):

    def test_single_member_serves_require_leader_streams(self):
        s = self.store()
        ch, stub = kv(s)
        self.addCleanup(ch.close)
        w = Stream(self, s, metadata=(("hasleader", "true"),))
        wid = w.create("k")
        rev = stub.Put(pb.PutRequest(key=b"k", value=b"v"), timeout=5).header.revision
        r = w.next()
        self.assertEqual((r.watch_id, [e.kv.mod_revision for e in r.events]), (wid, [rev]))

    def test_leaderless_member_refuses_require_leader_streams(self):
        s = self.store(start=False)
        # a three-member cluster whose two other members never start: no leader, ever
        others = ["b=http://127.0.0.1:%d" % h.free_port(), "c=http://127.0.0.1:%d" % h.free_port()]
        s.extra_args = ["--initial-cluster", ",".join(["%s=%s" % (s.name, s.peer_url)] + others)]
        s.start(wait=False)
        deadline = time.monotonic() + 20
        while not s._tcp_open():
            self.assertLess(time.monotonic(), deadline, s.log_tail())
            self.assertIsNone(s.proc.poll(), s.log_tail())
            time.sleep(0.05)
        time.sleep(1.5)   # past the election timeout: still no leader
        w = Stream(self, s, metadata=(("hasleader", "true"),))
        w.reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"k"))
                   .SerializeToString())
        if s.impl == "etcd":
            # etcd 3.4 serves no client request before its member has a leader (serve()
            # waits for ReadyNotify): the stream is never answered
            self.assertRaises(queue.Empty, w.resps.get, timeout=3)
            return
        _, e = w.resps.get(timeout=10)
        self.assertIsInstance(e, grpc.RpcError, e)
        self.assertEqual((e.code(), e.details()),
                         (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"))
        # without the metadata a watch needs no leader (as with etcd)
        w2 = Stream(self, s)
        w2.create("k")
        w2.reqs.put(None)


if __name__ == "__main__":
    h.main()
