#!/usr/bin/python3
"""Watch delivery to a client that reads slowly: while a stream's send is outstanding, a
watcher's event responses travel together (Bollard merges them; etcd batches revisions for a
watcher that fell behind), and a watcher whose stream stays full catches up from history.
Whatever the path, each watcher must get every event of its keys exactly once, in revision
order; within a response revisions ascend, the header revision is at least the last event's
and never goes back for one watcher. A progress request answered in the middle must not be
overtaken by events it does not cover.

Run by meson with BOLLARD_STORE set; STORE_IMPL=etcd runs it against Debian's etcd 3.4.
"""

import concurrent.futures
import os
import queue
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

import grpc  # noqa: E402
from etcd3.etcdrpc import rpc_pb2 as pb, rpc_pb2_grpc as pbg  # noqa: E402

PUTS = 3000
VALUE = b"v" * 2000          # ~2 KB per event: megabytes per watcher, past every buffer
KEYS = [b"k1", b"k2", b"k3"]


class SlowReader:
    """A Watch stream whose responses are read by a thread: the first `first` at once,
    then, once `go` is set, it sleeps `delay`, reads one response per `pace` seconds for
    `slow_for` seconds, then as fast as it can."""

    def __init__(self, tc, store, first, delay, pace, slow_for):
        self.ch = store.grpc_channel()
        tc.addCleanup(self.ch.close)
        self.reqs = queue.Queue()
        self.resps = queue.Queue()

        self.call = h.watch_stream_call(self.ch, self.reqs, timeout=240)
        self.go = threading.Event()

        def read():
            try:
                it = iter(self.call)
                for _ in range(first):     # the created responses
                    self.resps.put((time.monotonic(), next(it)))
                self.go.wait()
                time.sleep(delay)
                end = time.monotonic() + slow_for
                for r in it:
                    self.resps.put((time.monotonic(), r))
                    if time.monotonic() < end:
                        time.sleep(pace)
            except grpc.RpcError as e:
                self.resps.put((time.monotonic(), e))
        self.reader = threading.Thread(target=read, daemon=True)

        def stop():
            self.reqs.put(None)
            self.call.cancel()
        tc.addCleanup(stop)

    def send(self, msg):
        self.reqs.put(msg.SerializeToString() if hasattr(msg, "SerializeToString") else msg)

    def next(self, tc, timeout=60):
        return h.next_response(tc, self.resps, timeout)[1]


class Coalesce(h.StoreTestCase):

    def test_slow_reader_gets_every_event_once_in_order(self):
        s = self.store()
        ch = s.grpc_channel()
        self.addCleanup(ch.close)
        kv = pbg.KVStub(ch)
        kv.Put(pb.PutRequest(key=b"other", value=b"x"), timeout=10)

        w = SlowReader(self, s, first=3, delay=1.0, pace=0.002, slow_for=2.0)
        w.reader.start()
        # three watches on one stream: a key, another key with prev_kv, a prefix
        creates = [pb.WatchCreateRequest(key=b"k1"),
                   pb.WatchCreateRequest(key=b"k2", prev_kv=True),
                   pb.WatchCreateRequest(key=b"k", range_end=b"l")]
        ids = []
        for c in creates:
            w.send(pb.WatchRequest(create_request=c))
            r = w.next(self)
            self.assertTrue(r.created, r)
            ids.append(r.watch_id)
        w.go.set()

        # puts from 8 clients at once; each put's revision is its reply's
        puts = {}    # revision -> (key, value)

        def put(i):
            k = KEYS[i % len(KEYS)]
            v = b"%d:" % i + VALUE
            return kv.Put(pb.PutRequest(key=k, value=v), timeout=60).header.revision, k, v
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            for rev, k, v in ex.map(put, range(PUTS // 2)):
                puts[rev] = (k, v)
            # a progress request while the stream is backed up, then more puts
            w.send(b"\x1a\x00")
            for rev, k, v in ex.map(put, range(PUTS // 2, PUTS)):
                puts[rev] = (k, v)
        last = max(puts)
        self.assertEqual(len(puts), PUTS)

        want = {ids[0]: [r for r in sorted(puts) if puts[r][0] == b"k1"],
                ids[1]: [r for r in sorted(puts) if puts[r][0] == b"k2"],
                ids[2]: sorted(puts)}
        got = {i: [] for i in ids}
        hdr = {i: 0 for i in ids}
        multi = 0        # responses carrying more than one event
        nresp = 0
        progress = None  # revision of the progress response, once seen
        deadline = time.monotonic() + 180
        while any(len(got[i]) < len(want[i]) for i in ids):
            self.assertLess(time.monotonic(), deadline,
                            {i: (len(got[i]), len(want[i])) for i in ids})
            r = w.next(self)
            if r.watch_id == -1 and not r.events:
                self.assertIsNone(progress, r)
                progress = r.header.revision
                continue
            self.assertIn(r.watch_id, ids, r)
            self.assertFalse(r.created or r.canceled or r.compact_revision, r)
            if not r.events:
                continue
            revs = [e.kv.mod_revision for e in r.events]
            self.assertEqual(revs, sorted(set(revs)), "revisions ascend in a response")
            self.assertGreaterEqual(r.header.revision, revs[-1], r.header)
            self.assertLessEqual(r.header.revision, last, r.header)
            self.assertGreaterEqual(r.header.revision, hdr[r.watch_id], "header went back")
            hdr[r.watch_id] = r.header.revision
            multi += len(r.events) > 1
            nresp += 1
            for e in r.events:
                rev = e.kv.mod_revision
                self.assertEqual(e.type, 0)   # PUT
                self.assertIn(rev, puts, e.kv.key)
                self.assertEqual((e.kv.key, e.kv.value), puts[rev])
                if r.watch_id == ids[1]:
                    # prev_kv: the key's value before this put (absent for its first put)
                    before = [x for x in want[ids[1]] if x < rev]
                    if before:
                        self.assertEqual(e.prev_kv.value, puts[before[-1]][1])
                        self.assertEqual(e.prev_kv.mod_revision, before[-1])
                    else:
                        self.assertFalse(e.prev_kv.key)
                got[r.watch_id].append(rev)
        for i in ids:
            self.assertEqual(got[i], want[i], "watch %d: every event once, in order" % i)
        # the progress request was answered on this stream (its revision is covered by
        # the events it follows, for the watchers that were synced; etcd 3.4 answers at
        # once even for watchers catching up, so nothing more is claimed here)
        while progress is None:
            r = w.next(self)
            if r.watch_id == -1 and not r.events:
                progress = r.header.revision
            else:
                self.assertFalse(r.events, "an event past the last put: %r" % r)
        self.assertGreater(progress, 1)
        # nothing more
        try:
            extra = w.resps.get(timeout=0.5)[1]
        except queue.Empty:
            extra = None
        self.assertTrue(extra is None or not getattr(extra, "events", None), extra)
        print("%s: %d events in %d responses, %d of them with several"
              % (s.impl, sum(len(g) for g in got.values()), nresp, multi))
        if s.impl == "bollard":
            # a stream that backs up carries several revisions per response
            self.assertGreater(multi, 0)


if __name__ == "__main__":
    h.main()
