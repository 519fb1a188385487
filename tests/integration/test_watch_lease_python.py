#!/usr/bin/python3
"""python3-etcd3 (Debian's, with /usr/bin/python3) against one store: watch, watch_prefix,
watch_once, add_watch_callback / cancel_watch (several watches on the client's one
stream), start_revision, prev_kv, filters; lease grant (server and client-chosen IDs),
refresh, remaining/granted TTL, keys, revoke; lock acquire/release, contention between
threads and between clients, a lock whose lease expires. A raw gRPC Watch stream checks
watch IDs, cancel, the from-key form and a compacted start revision.

Run by meson with BOLLARD_STORE set; STORE_IMPL=etcd runs it against Debian's etcd 3.4.
python3-etcd3's add_watch_callback returns once the server answered `created`, so a watch
is live when the call returns.

Two defects of Debian's python3-etcd3 0.12 (not of the store) are worked around:
  * Lock.acquire(timeout > 0) on a held lock raises TypeError: its retry wait function has
    the old tenacity signature (python3-tenacity 8 passes one argument). acquire(timeout=0)
    (one attempt, no wait) works, so contention is checked by polling that (acquire_poll).
  * watch(filters=...) fails to build its request (assigns a repeated field): filters are
    checked on a raw gRPC stream.
Its watcher thread dies with "Channel closed" after client.close(); that thread's exception
is not printed (quiet_watcher_threads).
"""

import os
import queue
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

import etcd3  # noqa: E402
import etcd3.events as ev  # noqa: E402
import grpc  # noqa: E402
from etcd3.etcdrpc import rpc_pb2 as pb, rpc_pb2_grpc as pbg  # noqa: E402


def collect(iterator, out):
    """Drain an etcd3 events iterator into a list (a daemon thread)."""
    def run():
        try:
            for e in iterator:
                out.append(e)
        except Exception as x:      # noqa: BLE001 - recorded for the test to see
            out.append(x)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def simple(e):
    kind = "PUT" if isinstance(e, ev.PutEvent) else "DELETE" if isinstance(e, ev.DeleteEvent) \
        else repr(e)
    return (kind, e.key.decode(), e.value.decode(), e.mod_revision)


def quiet_watcher_threads():
    prev = threading.excepthook

    def hook(args):
        if args.thread is not None and args.thread.name.startswith("etcd3_watch_") \
                and isinstance(args.exc_value, ValueError) \
                and "Channel closed" in str(args.exc_value):
            return
        prev(args)
    threading.excepthook = hook


quiet_watcher_threads()


def acquire_poll(lock, timeout):
    """Acquire a python-etcd3 Lock within timeout seconds (see the module docstring)."""
    deadline = time.monotonic() + timeout
    while True:
        if lock.acquire(timeout=0):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def wait_until(pred, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


class PyBase(h.SharedStoreTestCase):

    def setUp(self):
        super().setUp()
        self.p = self._testMethodName + "/"
        self.c = self.s.client()
        self.addCleanup(self.c.close)

    def put(self, k, v, **kw):
        return self.c.put(k, v, **kw).header.revision

    def rev(self):
        return self.c.get_response("rev-probe-nonexistent").header.revision


class PythonWatch(PyBase):

    def test_watch_and_cancel(self):
        k = self.p + "k"
        it, cancel = self.c.watch(k)
        got = []
        t = collect(it, got)
        r1 = self.put(k, "1")
        self.put(k + "x", "no")
        r2 = self.put(k, "2")
        self.assertTrue(self.c.delete(k))
        r3 = self.rev()
        self.assertTrue(wait_until(lambda: len(got) >= 3), got)
        time.sleep(0.3)
        self.assertEqual([simple(e) for e in got], [("PUT", k, "1", r1), ("PUT", k, "2", r2),
                                                    ("DELETE", k, "", r3)])
        self.assertEqual(got[1].version, 2)
        self.assertEqual(got[1].create_revision, r1)
        cancel()
        t.join(5)
        self.assertFalse(t.is_alive(), "iterator did not end on cancel")
        self.put(k, "after")
        time.sleep(0.3)
        self.assertEqual(len(got), 3)

    def test_watch_prefix_start_revision_prev_kv(self):
        p = self.p
        r0 = self.put(p + "a", "1")
        r1 = self.put(p + "b", "2")
        self.put(self.p[:-1] + "0", "outside")
        r2 = self.put(p + "a", "3")
        it, cancel = self.c.watch_prefix(p, start_revision=r1, prev_kv=True)
        got = []
        t = collect(it, got)
        self.c.delete(p + "b")
        r3 = self.rev()
        self.assertTrue(wait_until(lambda: len(got) >= 3), got)
        time.sleep(0.2)
        cancel()
        t.join(5)
        self.assertEqual([simple(e) for e in got], [("PUT", p + "b", "2", r1),
                                                    ("PUT", p + "a", "3", r2),
                                                    ("DELETE", p + "b", "", r3)])
        self.assertEqual(got[1]._event.prev_kv.value, b"1")
        self.assertEqual(got[1]._event.prev_kv.mod_revision, r0)
        self.assertEqual(got[2]._event.prev_kv.value, b"2")
        self.assertFalse(got[0]._event.HasField("prev_kv"))

    def test_watch_once(self):
        k = self.p + "k"
        with self.assertRaises(etcd3.exceptions.WatchTimedOut):
            self.c.watch_once(k, timeout=0.5)
        r = self.put(k, "v")
        e = self.c.watch_once(k, timeout=5, start_revision=r)
        self.assertEqual(simple(e), ("PUT", k, "v", r))
        e = self.c.watch_prefix_once(self.p, timeout=5, start_revision=r)
        self.assertEqual(simple(e), ("PUT", k, "v", r))

    def test_add_watch_callback_several_on_one_stream(self):
        p = self.p
        q1, q2, q3 = [], [], []
        w1 = self.c.add_watch_callback(p + "a", q1.append)
        w2 = self.c.add_watch_prefix_callback(p + "b/", q2.append)
        w3 = self.c.add_watch_prefix_callback(p, q3.append)
        self.assertEqual(len({w1, w2, w3}), 3)
        ra = self.put(p + "a", "1")
        rb = self.put(p + "b/1", "2")
        self.c.delete(p + "a")
        rd = self.rev()
        self.assertTrue(wait_until(lambda: len(q1) >= 2 and len(q2) >= 1 and len(q3) >= 3))
        time.sleep(0.2)

        def evs(q):
            return [simple(e) for r in q for e in r.events]
        self.assertEqual(evs(q1), [("PUT", p + "a", "1", ra), ("DELETE", p + "a", "", rd)])
        self.assertEqual(evs(q2), [("PUT", p + "b/1", "2", rb)])
        self.assertEqual(evs(q3), [("PUT", p + "a", "1", ra), ("PUT", p + "b/1", "2", rb),
                                   ("DELETE", p + "a", "", rd)])
        for r in q1:
            self.assertGreaterEqual(r.header.revision, ra)
        # cancel one: the others go on
        self.c.cancel_watch(w1)
        n1 = len(q1)
        rb2 = self.put(p + "b/2", "3")
        self.put(p + "a", "again")
        self.assertTrue(wait_until(lambda: len(evs(q2)) >= 2 and len(evs(q3)) >= 5))
        time.sleep(0.3)
        self.assertEqual(len(q1), n1)
        self.assertEqual(evs(q2)[-1], ("PUT", p + "b/2", "3", rb2))
        self.c.cancel_watch(w2)
        self.c.cancel_watch(w3)

    def test_many_watchers_one_client(self):
        p = self.p
        qs = [[] for _ in range(50)]
        ids = [self.c.add_watch_callback(p + "k%d" % (i % 10), qs[i].append)
               for i in range(50)]
        revs = {}
        for j in range(10):
            revs[j] = self.put(p + "k%d" % j, "v%d" % j)
        self.assertTrue(wait_until(lambda: all(sum(len(r.events) for r in q) >= 1
                                               for q in qs)))
        time.sleep(0.2)
        for i, q in enumerate(qs):
            self.assertEqual([simple(e) for r in q for e in r.events],
                             [("PUT", p + "k%d" % (i % 10), "v%d" % (i % 10), revs[i % 10])])
        for w in ids:
            self.c.cancel_watch(w)


class RawWatchStream(PyBase):
    """One gRPC Watch stream driven by hand."""

    def open_stream(self):
        ch = grpc.insecure_channel(self.s.endpoint)
        self.addCleanup(ch.close)
        reqs = queue.Queue()
        call = h.watch_stream_call(ch, reqs, timeout=60)
        resps = queue.Queue()
        h.read_responses(call, resps)

        def stop():
            reqs.put(None)
            call.cancel()
        self.addCleanup(stop)
        return reqs, resps

    def next(self, resps, timeout=10):
        return h.next_response(self, resps, timeout)[1]

    def test_ids_cancel_from_key(self):
        p = self.p
        reqs, resps = self.open_stream()
        reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=(p + "a").encode())))
        c1 = self.next(resps)
        self.assertTrue(c1.created)
        self.assertFalse(c1.canceled)
        self.assertEqual(list(c1.events), [])
        # from-key form: range_end "\0" = every key >= key
        reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=(p + "m").encode(), range_end=b"\0")))
        c2 = self.next(resps)
        self.assertTrue(c2.created)
        self.assertNotEqual(c1.watch_id, c2.watch_id)
        ra = self.put(p + "a", "1")
        r1 = self.next(resps)
        self.assertEqual((r1.watch_id, [e.kv.key for e in r1.events]),
                         (c1.watch_id, [(p + "a").encode()]))
        self.assertEqual(r1.header.revision, ra)
        rz = self.put(p + "z", "2")
        self.put(p + "b", "not watched")
        r2 = self.next(resps)
        self.assertEqual((r2.watch_id, [e.kv.key for e in r2.events]),
                         (c2.watch_id, [(p + "z").encode()]))
        self.assertEqual(r2.events[0].kv.mod_revision, rz)
        # cancel the first
        reqs.put(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=c1.watch_id)))
        cr = self.next(resps)
        self.assertEqual((cr.watch_id, cr.canceled), (c1.watch_id, True))
        self.put(p + "a", "after cancel")
        rz2 = self.put(p + "zz", "3")
        r3 = self.next(resps)
        self.assertEqual((r3.watch_id, [e.kv.key for e in r3.events]),
                         (c2.watch_id, [(p + "zz").encode()]))
        self.assertEqual(r3.events[0].kv.mod_revision, rz2)
        self.assertTrue(resps.empty())

    def test_filters(self):
        p = self.p
        reqs, resps = self.open_stream()
        F = pb.WatchCreateRequest
        ids = {}
        for name, flt in (("noput", [F.NOPUT]), ("nodelete", [F.NODELETE]),
                          ("both", [F.NOPUT, F.NODELETE])):
            reqs.put(pb.WatchRequest(create_request=F(key=p.encode(),
                                                      range_end=(p[:-1] + "0").encode(),
                                                      filters=flt)))
            c = self.next(resps)
            self.assertTrue(c.created)
            ids[c.watch_id] = name
        r1 = self.put(p + "a", "1")
        self.c.delete(p + "a")
        r2 = self.rev()
        got = {"noput": [], "nodelete": [], "both": []}
        for _ in range(2):
            r = self.next(resps)
            got[ids[r.watch_id]] += [(e.type, e.kv.mod_revision) for e in r.events]
        time.sleep(0.3)
        self.assertTrue(resps.empty(), "an event that the filters drop was sent")
        self.assertEqual(got, {"noput": [(1, r2)], "nodelete": [(0, r1)], "both": []})

    def test_compacted_start_revision(self):
        p = self.p
        r1 = self.put(p + "k", "1")
        self.put(p + "k", "2")
        r3 = self.put(p + "k", "3")
        self.c.compact(r3)
        reqs, resps = self.open_stream()
        reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=(p + "k").encode(), start_revision=r1)))
        # etcd 3.4: created, then cancelled with compact_revision set
        first = self.next(resps)
        self.assertTrue(first.created, first)
        second = self.next(resps)
        self.assertTrue(second.canceled, second)
        self.assertEqual(second.watch_id, first.watch_id)
        self.assertEqual(second.compact_revision, r3)
        self.assertEqual(list(second.events), [])
        # the stream stays usable
        reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=(p + "k").encode(), start_revision=r3)))
        c = self.next(resps)
        self.assertTrue(c.created)
        r = self.next(resps)
        self.assertEqual([(e.kv.value, e.kv.mod_revision) for e in r.events], [(b"3", r3)])


class HalfClosedStreams(PyBase):
    """A client that sends its requests and half-closes the stream (what python-etcd3's
    Lease.refresh does: LeaseKeepAlive over a one-element request iterator) still gets
    every answer: etcd answers a keep-alive sent before the half-close, and keeps a watch
    stream delivering events after the client's side is closed."""

    def test_keepalive_then_half_close_is_answered(self):
        ch = grpc.insecure_channel(self.s.endpoint)
        self.addCleanup(ch.close)
        ls = pbg.LeaseStub(ch)
        lid = ls.LeaseGrant(pb.LeaseGrantRequest(TTL=60), timeout=10).ID
        counts = {}
        for _ in range(100):
            n = len(list(ls.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=lid)]),
                                           timeout=10)))
            counts[n] = counts.get(n, 0) + 1
        self.assertEqual(counts, {1: 100}, "responses per one-request keep-alive stream")
        ls.LeaseRevoke(pb.LeaseRevokeRequest(ID=lid), timeout=10)

    def test_watch_after_half_close_delivers(self):
        ch = grpc.insecure_channel(self.s.endpoint)
        self.addCleanup(ch.close)
        kv = pbg.KVStub(ch)
        missing = 0
        for i in range(10):
            k = ("%sk%d" % (self.p, i)).encode()
            call = pbg.WatchStub(ch).Watch(iter([pb.WatchRequest(
                create_request=pb.WatchCreateRequest(key=k))]), timeout=10)
            it = iter(call)
            self.assertTrue(next(it).created)
            r = kv.Put(pb.PutRequest(key=k, value=b"v"), timeout=10).header.revision
            try:
                e = next(it)
                ok = [x.kv.mod_revision for x in e.events] == [r]
            except (StopIteration, grpc.RpcError):
                ok = False
            missing += not ok
            call.cancel()
        self.assertEqual(missing, 0, "half-closed watch streams that lost their event (of 10)")


class PythonLease(PyBase):

    def test_lease_grant_refresh_ttl_keys_revoke(self):
        p = self.p
        lease = self.c.lease(20)
        self.assertGreater(lease.id, 0)
        self.assertEqual(lease.granted_ttl, 20)
        self.assertIn(lease.remaining_ttl, range(17, 21))
        self.put(p + "a", "1", lease=lease)
        self.put(p + "b", "2", lease=lease.id)
        self.assertEqual(sorted(lease.keys), [(p + "a").encode(), (p + "b").encode()])
        _, meta = self.c.get(p + "a")
        self.assertEqual(meta.lease_id, lease.id)
        rs = lease.refresh()
        self.assertEqual(len(rs), 1)
        self.assertEqual((rs[0].ID, rs[0].TTL), (lease.id, 20))
        info = self.c.get_lease_info(lease.id)
        self.assertEqual((info.ID, info.grantedTTL), (lease.id, 20))
        before = self.rev()
        lease.revoke()
        self.assertEqual(self.rev(), before + 1)     # both keys in one revision
        self.assertEqual(self.c.get(p + "a")[0], None)
        self.assertEqual(self.c.get(p + "b")[0], None)
        info = self.c.get_lease_info(lease.id)
        self.assertEqual(info.TTL, -1)
        with self.assertRaises(Exception) as cm:
            self.c.revoke_lease(lease.id)
        self.assertIn("requested lease not found", str(cm.exception))

    def test_client_chosen_id_and_min_ttl(self):
        lid = 0x1234abcd
        lease = self.c.lease(1, lease_id=lid)
        self.assertEqual(lease.id, lid)
        self.assertEqual(lease.granted_ttl, 2)        # etcd's minimum with default ticks
        ch = grpc.insecure_channel(self.s.endpoint)
        self.addCleanup(ch.close)
        with self.assertRaises(grpc.RpcError) as cm:
            pbg.LeaseStub(ch).LeaseGrant(pb.LeaseGrantRequest(TTL=10, ID=lid), timeout=10)
        self.assertEqual((cm.exception.code(), cm.exception.details()),
                         (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: lease already exists"))
        self.c.revoke_lease(lid)

    def test_lease_expires_with_keys(self):
        p = self.p
        lease = self.c.lease(2)
        self.put(p + "k", "v", lease=lease)
        it, cancel = self.c.watch(p + "k")
        got = []
        collect(it, got)
        t0 = time.monotonic()
        self.assertTrue(wait_until(lambda: self.c.get(p + "k")[0] is None, 8),
                        "key outlived its lease")
        self.assertGreater(time.monotonic() - t0, 1.0)
        self.assertTrue(wait_until(lambda: len(got) >= 1))
        self.assertIsInstance(got[0], ev.DeleteEvent)
        cancel()
        self.assertEqual(self.c.get_lease_info(lease.id).TTL, -1)


class PythonLock(PyBase):

    def test_acquire_release_and_contention_between_clients(self):
        c2 = self.s.client()
        self.addCleanup(c2.close)
        l1 = self.c.lock(self.p + "L", ttl=10)
        l2 = c2.lock(self.p + "L", ttl=10)
        self.assertTrue(l1.acquire(timeout=5))
        self.assertTrue(l1.is_acquired())
        self.assertFalse(acquire_poll(l2, 1))
        self.assertFalse(l2.is_acquired())
        # released while the other waits: the waiter gets it (its watch sees the delete)
        threading.Timer(0.5, l1.release).start()
        t0 = time.monotonic()
        self.assertTrue(acquire_poll(l2, 5))
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.assertFalse(l1.is_acquired())
        self.assertTrue(l2.is_acquired())
        l2.refresh()
        self.assertTrue(l2.release())
        self.assertFalse(l2.release())
        with self.c.lock(self.p + "L", ttl=5) as l3:
            self.assertTrue(l3.is_acquired())
        self.assertFalse(l3.is_acquired())

    def test_threads_mutual_exclusion(self):
        counter = self.p + "counter"
        self.put(counter, "0")
        errors, inside = [], []
        active = [0]
        guard = threading.Lock()

        def worker():
            c = self.s.client()
            try:
                for _ in range(5):
                    lk = c.lock(self.p + "M", ttl=10)
                    if not acquire_poll(lk, 30):
                        errors.append("not acquired")
                        return
                    with guard:
                        active[0] += 1
                        inside.append(active[0])
                    v, _ = c.get(counter)
                    time.sleep(0.01)
                    c.put(counter, str(int(v) + 1))
                    with guard:
                        active[0] -= 1
                    lk.release()
            except Exception as e:    # noqa: BLE001
                errors.append(repr(e))
            finally:
                c.close()
        ts = [threading.Thread(target=worker) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in ts))
        self.assertEqual(errors, [])
        self.assertEqual(max(inside), 1, "two threads held the lock at once")
        self.assertEqual(self.c.get(counter)[0], b"20")

    def test_lock_lease_expires(self):
        c2 = self.s.client()
        self.addCleanup(c2.close)
        l1 = self.c.lock(self.p + "E", ttl=2)
        self.assertTrue(l1.acquire(timeout=5))
        t0 = time.monotonic()
        l2 = c2.lock(self.p + "E", ttl=10)
        # never refreshed: l1's lease expires after 2 s and its key is deleted
        self.assertTrue(acquire_poll(l2, 10))
        self.assertGreater(time.monotonic() - t0, 1.0)
        self.assertFalse(l1.is_acquired())
        l2.release()


if __name__ == "__main__":
    h.main()
