#!/usr/bin/python3
"""etcdctl 3.4 `watch` against one store: single key, prefix and range, --rev history replay
(older than the current revision, and in the future), --prev-kv, -w json, -i interactive
with several watches on one stream and the `progress` command, a watch from a compacted
revision, and exactly-once delivery of events written concurrently by several clients.

Run by meson with BOLLARD_STORE set; STORE_IMPL=etcd runs it against Debian's etcd 3.4.

Watches start at an explicit --rev (the next revision) unless the test is about the form
without --rev, so that no event can be missed while the watch is being set up; etcdctl
prints nothing when a watch is created. etcdctl 3.4 has no --progress-notify flag
(etcdctl 3.5 added it): periodic progress notifications are checked in
test_watch_lease_python.py over gRPC; here the interactive `progress` command is.
"""

import base64
import json
import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

COMPACTED_STDERR = ("watch was canceled (etcdserver: mvcc: required revision has been "
                    "compacted)\nError: watch is canceled by the server\n")


def b64(s):
    return base64.b64encode(s.encode()).decode()


def unb64(s):
    return base64.b64decode(s).decode()


def responses(lines):
    """The JSON watch responses among etcdctl -w json output lines."""
    out = []
    for l in lines:
        l = l.strip()
        if l.startswith("{"):
            out.append(json.loads(l))
    return out


def event(e):
    """(type, key, value, mod_revision) of a JSON event; PUT is 0 and omitted by etcdctl."""
    kv = e["kv"]
    return ("DELETE" if e.get("type", 0) in (1, "DELETE") else "PUT", unb64(kv["key"]),
            unb64(kv.get("value", "")), int(kv["mod_revision"]))


def events(lines):
    return [event(e) for r in responses(lines) for e in r.get("Events") or []]


class WatchBase:
    def ctl(self, *args, input=None):
        return self.assertOk(self.s.etcdctl(*args, input=input))

    def out(self, *args, input=None):
        return self.ctl(*args, input=input).out

    def rev(self):
        r = self.ctl("get", "rev-probe-nonexistent", "-w", "json")
        return int(json.loads(r.out)["header"]["revision"])

    def put(self, k, v):
        self.assertEqual(self.out("put", k, v), "OK\n")
        return self.rev()

    def watch(self, *args):
        return self.bg(self.s, "watch", *args)

    def wait_events(self, w, n, timeout=10):
        ok = w.wait_for(lambda ls: len(events(ls)) >= n, timeout)
        if not ok:
            self.fail("expected %d events within %ss, got %d: %r" % (n, timeout,
                                                                   len(events(w.lines())), w))

    def settle(self, w, extra=0.5):
        """Give a watch time to (wrongly) print more than expected."""
        time.sleep(extra)
        self.assertIsNone(w.proc.poll(), "watch exited: %r" % w)
        return w.lines()


class Watch(WatchBase, h.SharedStoreTestCase):

    def setUp(self):
        super().setUp()
        self.p = self._testMethodName + "/"

    def test_single_key_simple_output(self):
        k = self.p + "k"
        start = self.rev() + 1
        w = self.watch(k, "--rev", str(start))
        self.put(k, "v1")
        self.put(self.p + "other", "x")          # not watched
        self.put(k + "x", "x")                   # not watched: watch is on the key only
        self.put(k, "v2")
        self.assertEqual(self.out("del", k), "1\n")
        self.assertEqual(self.out("del", k), "0\n")   # no revision, no event
        want = "PUT\n%s\nv1\nPUT\n%s\nv2\nDELETE\n%s\n\n" % (k, k, k)
        self.assertTrue(w.wait_for(lambda ls: len(ls) >= 9, 10), w)
        self.settle(w)
        self.assertEqual(w.out(), want)
        self.assertEqual(w.err(), "")
        # etcdctl exits with 130 (interrupted)... any status; it must go away on SIGINT
        self.assertIsNotNone(w.stop(signal.SIGINT))

    def test_without_rev_sees_only_later_events(self):
        k = self.p + "k"
        self.put(k, "before")
        w = self.watch(k, "-w", "json")
        # the watch is being created: probe until it reports a put, then write for real
        n = 0
        deadline = time.monotonic() + 10
        while not events(w.lines()):
            self.assertLess(time.monotonic(), deadline, "watch never reported a put: %r" % w)
            n += 1
            self.put(k, "probe%d" % n)
            w.wait_for(lambda ls: events(ls), 0.3)
        first = events(w.lines())[0]
        self.assertEqual(first[:2], ("PUT", k))
        self.assertNotEqual(first[2], "before")
        m = int(first[2][len("probe"):])
        self.wait_events(w, n - m + 1)   # every probe after the first seen one arrives too
        seen = len(events(w.lines()))
        self.assertEqual(seen, n - m + 1)
        r1 = self.put(k, "after1")
        r2 = self.put(k, "after2")
        self.wait_events(w, seen + 2)
        got = events(self.settle(w))
        self.assertEqual(got[seen:], [("PUT", k, "after1", r1), ("PUT", k, "after2", r2)])
        probes = [e[2] for e in got[:seen]]
        self.assertEqual(probes, ["probe%d" % i for i in range(n - len(probes) + 1, n + 1)])

    def test_prefix_and_range(self):
        p = self.p + "dir/"
        start = self.rev() + 1
        wp = self.watch(p, "--prefix", "--rev", str(start), "-w", "json")
        wr = self.watch(p + "b", p + "d", "--rev", str(start), "-w", "json")   # [b, d)
        want_p, want_r = [], []
        for k in ("a", "b", "c", "d", "bz", "c/1"):
            r = self.put(p + k, "v" + k)
            want_p.append(("PUT", p + k, "v" + k, r))
            if "b" <= k < "d":
                want_r.append(("PUT", p + k, "v" + k, r))
        self.put(self.p + "dir", "outside")        # the prefix minus its slash
        self.put(self.p + "dir0", "outside")       # sorts after the prefix
        self.put(self.p + "dia", "outside")
        self.assertEqual(self.out("del", p + "b", p + "c/"), "3\n")   # [b, c/): b, bz, c
        r = self.rev()
        self.wait_events(wp, len(want_p) + 1)
        got_p = events(self.settle(wp))
        dels = got_p[len(want_p):]
        self.assertEqual(got_p[:len(want_p)], want_p)
        self.assertEqual(sorted(e[1] for e in dels), [p + "b", p + "bz", p + "c"])
        self.assertTrue(all(e[0] == "DELETE" and e[3] == r for e in dels), dels)
        # the three deletes of one DeleteRange are one revision: one response
        rs = [x for x in responses(wp.lines()) if x.get("Events")]
        self.assertEqual(len(rs[-1]["Events"]), 3, rs[-1])
        self.assertEqual([e[1] for e in dels], [p + "b", p + "bz", p + "c"])  # key order
        self.wait_events(wr, len(want_r) + 3)
        got_r = events(self.settle(wr))
        self.assertEqual(got_r[:len(want_r)], want_r)
        self.assertEqual(got_r[len(want_r):], dels)

    def test_rev_history_replay(self):
        k, o = self.p + "k", self.p + "o"
        revs = [self.put(k, "v%d" % i) for i in range(5)]
        self.put(o, "other")
        self.assertEqual(self.out("del", k), "1\n")
        rdel = self.rev()
        # from an old revision: the whole history of k since then, then live events
        w = self.watch(k, "--rev", str(revs[1]), "-w", "json")
        want = [("PUT", k, "v%d" % i, revs[i]) for i in range(1, 5)] + [("DELETE", k, "", rdel)]
        self.wait_events(w, len(want))
        rlive = self.put(k, "live")
        self.wait_events(w, len(want) + 1)
        self.assertEqual(events(self.settle(w)), want + [("PUT", k, "live", rlive)])
        # exactly the revision of the delete: only the delete, then the live put
        w2 = self.watch(k, "--rev", str(rdel), "-w", "json")
        self.wait_events(w2, 2)
        self.assertEqual(events(self.settle(w2)), [("DELETE", k, "", rdel),
                                                   ("PUT", k, "live", rlive)])
        # a future revision: nothing until then
        fut = self.rev() + 3
        w3 = self.watch(k, "--rev", str(fut), "-w", "json")
        r1 = self.put(k, "f1")
        r2 = self.put(k, "f2")
        r3 = self.put(k, "f3")
        self.assertEqual(r3, fut)
        self.wait_events(w3, 1)
        self.assertEqual(events(self.settle(w3)), [("PUT", k, "f3", r3)])
        self.assertLess(r1, r2)
        # simple output of a replay, from revision 1 of the prefix (first ever event: k v0)
        w4 = self.watch(self.p, "--prefix", "--rev", "1")
        self.assertTrue(w4.wait_for(lambda ls: len(ls) >= 3, 10), w4)
        self.assertEqual(w4.lines()[:3], ["PUT", k, "v0"])

    def test_prev_kv(self):
        k = self.p + "k"
        start = self.rev() + 1
        w = self.watch(k, "--prev-kv", "--rev", str(start))
        wj = self.watch(k, "--prev-kv", "--rev", str(start), "-w", "json")
        self.put(k, "1")
        self.put(k, "2")
        self.assertEqual(self.out("del", k), "1\n")
        self.put(k, "3")
        # simple: the previous key-value before the new one
        want = ("PUT\n%s\n1\n"
                "PUT\n%s\n1\n%s\n2\n"
                "DELETE\n%s\n2\n%s\n\n"
                "PUT\n%s\n3\n" % ((k,) * 6))
        self.assertTrue(w.wait_for(lambda ls: len(ls) >= want.count("\n"), 10), w)
        self.settle(w)
        self.assertEqual(w.out(), want)
        self.wait_events(wj, 4)
        evs = [e for r in responses(self.settle(wj)) for e in r.get("Events") or []]
        self.assertNotIn("prev_kv", evs[0])
        self.assertEqual(unb64(evs[1]["prev_kv"]["value"]), "1")
        self.assertEqual(evs[1]["prev_kv"]["version"], 1)
        self.assertEqual(unb64(evs[2]["prev_kv"]["value"]), "2")
        self.assertEqual(evs[2]["prev_kv"]["mod_revision"], evs[1]["kv"]["mod_revision"])
        # the delete event's kv: key and mod revision only, version 0
        self.assertEqual(evs[2]["kv"].get("version", 0), 0)
        self.assertNotIn("prev_kv", evs[3])      # recreated after a delete: no previous
        self.assertEqual(evs[3]["kv"]["version"], 1)
        self.assertEqual(evs[3]["kv"]["create_revision"], evs[3]["kv"]["mod_revision"])

    def test_txn_is_one_response(self):
        p = self.p
        self.put(p + "gone", "x")
        start = self.rev() + 1
        w = self.watch(p, "--prefix", "--rev", str(start), "-w", "json")
        out = self.out("txn", input="\nput %sz 1\nput %sa 2\ndel %sgone\nput %sm 3\n\n\n"
                       % (p, p, p, p))
        self.assertTrue(out.startswith("SUCCESS"), out)
        r = self.rev()
        self.assertEqual(r, start)
        self.wait_events(w, 4)
        rs = [x for x in responses(self.settle(w)) if x.get("Events")]
        self.assertEqual(len(rs), 1, rs)
        self.assertEqual(rs[0]["Header"]["revision"], r)
        # in the txn's order, not key order
        self.assertEqual(events(w.lines()), [("PUT", p + "z", "1", r), ("PUT", p + "a", "2", r),
                                             ("DELETE", p + "gone", "", r),
                                             ("PUT", p + "m", "3", r)])
        self.assertFalse(rs[0]["Canceled"])

    def test_interactive_several_watches_one_stream(self):
        p = self.p
        start = self.rev() + 1
        self.put(p + "a", "old")                      # at start: replayed
        w = self.bg(self.s, "watch", "-i", "-w", "json")
        w.write_line("watch %sa --rev %d" % (p, start))
        w.write_line("watch %sb --prefix --rev %d" % (p, start))
        w.write_line("bogus")
        ra = self.put(p + "a", "1")
        rb1 = self.put(p + "b/1", "2")
        rb2 = self.put(p + "b", "3")
        self.put(p + "c", "unwatched")
        self.assertEqual(self.out("del", p + "a"), "1\n")
        rd = self.rev()
        self.wait_events(w, 5)
        got = events(self.settle(w))
        self.assertEqual([e for e in got if e[1] == p + "a"],
                         [("PUT", p + "a", "old", start), ("PUT", p + "a", "1", ra),
                          ("DELETE", p + "a", "", rd)])
        self.assertEqual([e for e in got if e[1] != p + "a"],
                         [("PUT", p + "b/1", "2", rb1), ("PUT", p + "b", "3", rb2)])
        self.assertEqual(w.err(), "Invalid command bogus (only support watch)\n")
        # progress: one notification per watch of the stream, at the current revision
        cur = self.rev()
        w.write_line("progress")
        self.assertTrue(w.wait_for(lambda ls: sum(l.startswith("progress notify:")
                                                  for l in ls) >= 2, 10), w)
        # a third watch on the same stream, then progress again: three notifications
        w.write_line("watch %sc --prev-kv" % p)
        w.write_line("progress")
        self.assertTrue(w.wait_for(lambda ls: sum(l.startswith("progress notify:")
                                                  for l in ls) >= 5, 10), w)
        lines = self.settle(w)
        prog = [l for l in lines if l.startswith("progress notify:")]
        self.assertEqual(prog, ["progress notify: %d" % cur] * 5)
        # in -w json each progress line comes with its (empty) response (the watches'
        # goroutines print concurrently, so not necessarily on the next line)
        empty = [r for r in responses(lines) if not r.get("Events")]
        self.assertEqual([r["Header"]["revision"] for r in empty], [cur] * 5, empty)
        self.assertFalse(any(r["Canceled"] for r in empty))
        # the third watch is live (created before the progress answer came back)
        rc1 = self.put(p + "c", "v1")
        self.wait_events(w, 6)
        self.assertEqual(events(self.settle(w))[5:], [("PUT", p + "c", "v1", rc1)])
        evs = [e for r in responses(w.lines()) for e in r.get("Events") or []]
        self.assertEqual(unb64(evs[-1]["prev_kv"]["value"]), "unwatched")
        self.assertEqual(w.err(), "Invalid command bogus (only support watch)\n")

    def test_concurrent_writers_exactly_once(self):
        """4 clients write concurrently (puts, deletes, multi-op txns) under one prefix;
        two watchers (one live from the start, one started mid-way from an old revision)
        each get every event exactly once, in revision order, one revision per response."""
        import grpc
        from etcd3.etcdrpc import rpc_pb2 as pb, rpc_pb2_grpc as pbg
        p = self.p
        start = self.rev() + 1
        w1 = self.watch(p, "--prefix", "--rev", str(start), "-w", "json")
        w1b = self.watch(p + "w1/", "--prefix", "--rev", str(start), "-w", "json")
        records, lock, errors = [], threading.Lock(), []
        NW, OPS = 4, 40
        half = threading.Barrier(NW + 1)

        def writer(i):
            rng = random.Random(i)
            ch = grpc.insecure_channel(self.s.endpoint)
            kv = pbg.KVStub(ch)
            live = set()
            try:
                for n in range(OPS):
                    if n == OPS // 2:
                        half.wait(20)
                    r = rng.random()
                    keys = ["%sw%d/k%d" % (p, i, j) for j in range(6)]
                    if r < 0.2 and live:
                        k = rng.choice(sorted(live))
                        resp = kv.DeleteRange(pb.DeleteRangeRequest(key=k.encode()), timeout=10)
                        assert resp.deleted == 1
                        live.discard(k)
                        evs = [("DELETE", k, "")]
                    elif r < 0.5:
                        ks = rng.sample(keys, 3)
                        ops, evs = [], []
                        for k in ks[:2]:
                            v = "t%d.%d.%s" % (i, n, k[-1])
                            ops.append(pb.RequestOp(request_put=pb.PutRequest(
                                key=k.encode(), value=v.encode())))
                            evs.append(("PUT", k, v))
                        if ks[2] in live:
                            ops.append(pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(
                                key=ks[2].encode())))
                            evs.append(("DELETE", ks[2], ""))
                        resp = kv.Txn(pb.TxnRequest(success=ops), timeout=10)
                        assert resp.succeeded
                        live.update(ks[:2])
                        if len(ops) == 3:
                            live.discard(ks[2])
                    else:
                        k, v = rng.choice(keys), "p%d.%d" % (i, n)
                        resp = kv.Put(pb.PutRequest(key=k.encode(), value=v.encode()),
                                      timeout=10)
                        live.add(k)
                        evs = [("PUT", k, v)]
                    with lock:
                        records.append((resp.header.revision, evs))
            except Exception as e:      # reported by the main thread
                errors.append(repr(e))
                try:
                    half.abort()
                except Exception:
                    pass
            finally:
                ch.close()

        ts = [threading.Thread(target=writer, args=(i,)) for i in range(NW)]
        for t in ts:
            t.start()
        half.wait(30)
        mid = self.rev()
        w2 = self.watch(p, "--prefix", "--rev", str(start + 3), "-w", "json")
        for t in ts:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in ts), "writers hung")
        self.assertEqual(errors, [])
        self.assertGreater(mid, start + 3)
        records.sort()
        revs = [r for r, _ in records]
        self.assertEqual(len(set(revs)), len(revs), "two writes got one revision")
        self.assertEqual(revs, list(range(start, start + len(revs))))   # nothing else wrote
        want = [(t, k, v, r) for r, evs in records for t, k, v in evs]
        want1 = [e for e in want if e[1].startswith(p + "w1/")]
        want2 = [e for e in want if e[3] >= start + 3]
        for w, wn in ((w1, want), (w1b, want1), (w2, want2)):
            self.wait_events(w, len(wn), timeout=20)
        time.sleep(0.5)
        for name, w, wn in (("live", w1, want), ("live w1/", w1b, want1), ("replay", w2, want2)):
            got = events(w.lines())
            if got != wn:
                dup = len(got) - len(set(got))
                missing = [e for e in wn if e not in got][:5]
                self.fail("%s watcher: %d events, want %d; %d duplicates; missing e.g. %r; "
                          "first difference at %d" % (
                              name, len(got), len(wn), dup, missing,
                              next((i for i, (a, b) in enumerate(zip(got, wn)) if a != b),
                                   min(len(got), len(wn)))))
            # revisions ascending across responses; every revision in exactly one response
            seen = {}
            last = 0
            for i, r in enumerate(responses(w.lines())):
                rs = [int(e["kv"]["mod_revision"]) for e in r.get("Events") or []]
                for x in rs:
                    self.assertGreaterEqual(x, last, "%s: revision order" % name)
                    last = x
                    self.assertIn(seen.setdefault(x, i), (i,), "%s: revision %d split over "
                                                               "two responses" % (name, x))
                if rs:
                    self.assertGreaterEqual(r["Header"]["revision"], max(rs))
            self.assertEqual(w.err(), "")


class WatchCompacted(WatchBase, h.StoreTestCase):
    """A watch from a compacted revision is cancelled with compact_revision set."""

    def test_watch_from_compacted_revision(self):
        self.s = self.store()
        revs = [self.put("k", "v%d" % i) for i in range(6)]      # revisions 2..7
        self.assertEqual(revs, list(range(2, 8)))
        self.assertEqual(self.out("compaction", "5"), "compacted revision 5\n")
        # simple output: nothing on stdout, the reason on stderr, exit status 5
        r = self.s.etcdctl("watch", "k", "--rev", "3", timeout=10)
        self.assertEqual((r.rc, r.out, r.err), (5, "", COMPACTED_STDERR))
        r = self.s.etcdctl("watch", "k", "--rev", "4", "-w", "json", timeout=10)
        self.assertEqual((r.rc, r.err), (5, COMPACTED_STDERR))
        resp = json.loads(r.out)
        self.assertEqual(resp["CompactRevision"], 5)
        self.assertTrue(resp["Canceled"])
        self.assertEqual(resp["Events"], [])
        # the prefix form too
        r = self.s.etcdctl("watch", "", "--prefix", "--rev", "1", timeout=10)
        self.assertEqual((r.rc, r.out, r.err), (5, "", COMPACTED_STDERR))
        # from the compaction revision itself: still available
        w = self.watch("k", "--rev", "5", "-w", "json")
        self.wait_events(w, 3)
        self.assertEqual(events(self.settle(w)), [("PUT", "k", "v%d" % i, i + 2)
                                                  for i in (3, 4, 5)])
        # an interactive stream: the compacted watch is cancelled, the others go on
        wi = self.bg(self.s, "watch", "-i", "-w", "json")
        wi.write_line("watch k --rev 2")
        wi.write_line("watch k --rev 6")
        r8 = self.put("k", "v8")
        self.assertTrue(wi.wait_for(lambda ls: len(events(ls)) >= 3, 10), wi)
        self.assertTrue(wi.wait_for(lambda ls: any(x["Canceled"] for x in responses(ls)), 10),
                        wi)
        lines = self.settle(wi)
        self.assertEqual(events(lines), [("PUT", "k", "v4", 6), ("PUT", "k", "v5", 7),
                                         ("PUT", "k", "v8", r8)])
        canc = [x for x in responses(lines) if x["Canceled"]]
        self.assertEqual(len(canc), 1)
        self.assertEqual(canc[0]["CompactRevision"], 5)
        self.assertIn("watch was canceled (etcdserver: mvcc: required revision has been "
                      "compacted)\n", wi.err())


if __name__ == "__main__":
    h.main()
