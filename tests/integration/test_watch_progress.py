#!/usr/bin/python3
"""Periodic watch progress notifications (WatchCreateRequest.progress_notify).

etcd sends them every --experimental-watch-progress-notify-interval (default 10 minutes)
to synced watchers that asked for them; the store is started with the same flag set to
1 s so the test is bounded. etcdctl 3.4 has no --progress-notify flag (3.5 added it), so a
raw gRPC stream is used. The interactive `progress` command (a progress request) is
checked in test_watch.py.

Run by meson with BOLLARD_STORE set; STORE_IMPL=etcd runs it against Debian's etcd 3.4.
"""

import os
import queue
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

import grpc  # noqa: E402
from etcd3.etcdrpc import rpc_pb2 as pb, rpc_pb2_grpc as pbg  # noqa: E402

INTERVAL_FLAG = ["--experimental-watch-progress-notify-interval", "1s"]


class ProgressNotify(h.StoreTestCase):

    def test_periodic_progress_notify(self):
        s = self.store(extra_args=INTERVAL_FLAG)
        ch = grpc.insecure_channel(s.endpoint)
        self.addCleanup(ch.close)
        kv = pbg.KVStub(ch)
        reqs, resps = queue.Queue(), queue.Queue()
        call = h.watch_stream_call(ch, reqs, timeout=60)
        h.read_responses(call, resps)
        self.addCleanup(call.cancel)
        self.addCleanup(reqs.put, None)

        def nxt(timeout=10):
            return h.next_response(self, resps, timeout)

        kv.Put(pb.PutRequest(key=b"k", value=b"0"), timeout=10)
        reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"k",
                                                                      progress_notify=True)))
        _, c1 = nxt()
        self.assertTrue(c1.created)
        reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"other")))
        _, c2 = nxt()
        self.assertTrue(c2.created)
        t0 = time.monotonic()
        # about one a second for the watch that asked, none for the other
        got = []
        while time.monotonic() - t0 < 3.6:
            try:
                t, r = resps.get(timeout=0.2)
            except queue.Empty:
                continue
            self.assertNotIsInstance(r, Exception)
            got.append((t, r))
        self.assertTrue(all(r.watch_id == c1.watch_id for _, r in got), got)
        self.assertGreaterEqual(len(got), 2, "fewer progress notifications than one per "
                                             "1 s interval over 3.6 s: %r" % got)
        self.assertLessEqual(len(got), 5, got)
        cur = kv.Range(pb.RangeRequest(key=b"k"), timeout=10).header.revision
        for _, r in got:
            self.assertEqual(list(r.events), [])
            self.assertFalse(r.created or r.canceled)
            self.assertEqual(r.header.revision, cur)
        # events still arrive, then notifications carry the new revision
        rr = kv.Put(pb.PutRequest(key=b"k", value=b"1"), timeout=10).header.revision
        deadline = time.monotonic() + 5
        ev, later = None, []
        while time.monotonic() < deadline and not (ev and later):
            _, r = nxt()
            if r.events:
                ev = r
            elif ev:
                later.append(r)
        self.assertIsNotNone(ev)
        self.assertEqual(ev.events[0].kv.mod_revision, rr)
        self.assertTrue(later, "no progress notification after the event")
        self.assertEqual(later[0].header.revision, rr)


if __name__ == "__main__":
    h.main()
