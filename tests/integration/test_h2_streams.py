#!/usr/bin/python3
"""Streams on the experimental HTTP/2 listener (--experimental-listen-h2-url,
store/server/h2srv.c): Watch and LeaseKeepAlive (bidirectional) and Maintenance.Snapshot
(server streaming) with real clients (etcdctl 3.4, python3-etcd3, raw grpcio, raw HTTP/2),
each answer compared with what the same store's gRPC C-core port gives: cancel, progress
requests, compacted revisions, client half-close and disconnect, many watchers on one
stream, a stream's deadline and keepalive pings, and a watcher that does not read (flow
control: the server's queue stays bounded and the watcher catches up from history).
TLS on the h2 port: test_h2_tls.py.

Run by meson with BOLLARD_STORE set (Bollard only: etcd has no such flag).
"""

import hashlib
import os
import queue
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
os.environ.pop("BOLLARD_CLIENT_H2", None)  # this test names both ports itself
# compared with the gRPC C core on the client URLs (the rest of the suite runs them on h2)
os.environ["BOLLARD_CLIENT_TRANSPORT"] = "grpc-core"
import h2frames as h2f  # noqa: E402
import storeharness as h  # noqa: E402

import etcd3  # noqa: E402
import grpc  # noqa: E402
from etcd3.etcdrpc import rpc_pb2 as pb, rpc_pb2_grpc as pbg  # noqa: E402

PROGRESS = b"\x1a\x00"  # WatchRequest{progress_request: {}} (python3-etcd3 0.12 lacks it)


class Stream:
    """One raw Watch stream on endpoint: requests through a queue (None half-closes),
    responses into another."""

    def __init__(self, tc, endpoint, timeout=60, options=None):
        self.ch = grpc.insecure_channel(endpoint, options=options or [])
        tc.addCleanup(self.ch.close)
        self.reqs = queue.Queue()
        self.resps = queue.Queue()
        self.tc = tc
        self.call = h.watch_stream_call(self.ch, self.reqs, timeout=timeout)
        h.read_responses(self.call, self.resps)

        def stop():
            self.reqs.put(None)
            self.call.cancel()
        tc.addCleanup(stop)

    def send(self, **kw):
        self.reqs.put(pb.WatchRequest(**kw))

    def create(self, key, **kw):
        self.send(create_request=pb.WatchCreateRequest(key=key.encode(), **kw))

    def next(self, timeout=20):
        return h.next_response(self.tc, self.resps, timeout)[1]

    def end(self, timeout=20, what=""):
        """The RpcError that ends the stream."""
        t_end = time.monotonic() + timeout
        while True:
            try:
                _, r = self.resps.get(timeout=max(0.01, t_end - time.monotonic()))
            except queue.Empty:
                self.tc.fail("the stream did not end within %ss %s" % (timeout, what))
            if isinstance(r, Exception):
                return r


def shape(r, prefix):
    """A WatchResponse without what differs between two runs on one store (revisions,
    the header): what both ports must agree on."""
    p = prefix.encode()
    return (r.watch_id, r.created, r.canceled, r.compact_revision > 0, r.cancel_reason,
            [(e.type, e.kv.key[len(p):], e.kv.value, e.prev_kv.value) for e in r.events])


class H2Streams(h.SharedStoreTestCase):

    @classmethod
    def setUpClass(cls):
        if h.default_impl() != "bollard":
            raise AssertionError("this test needs Bollard (BOLLARD_STORE)")
        cls.h2port = h.free_port()
        cls.h2 = "127.0.0.1:%d" % cls.h2port
        cls.mport = h.free_port()
        cls.store_args = ["--experimental-listen-h2-url", "http://" + cls.h2,
                          "--listen-metrics-urls", "http://127.0.0.1:%d" % cls.mport]
        super().setUpClass()

    def setUp(self):
        super().setUp()
        self.p = self._testMethodName + "/"
        self.c = etcd3.client(host="127.0.0.1", port=self.s.client_port, timeout=20)
        self.addCleanup(self.c.close)

    def ports(self):
        return (("h2", self.h2), ("grpc", self.s.endpoint))

    def metric(self, name):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.mport,
                                    timeout=10) as f:
            for line in f.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise KeyError(name)

    def wait_metric(self, name, want, timeout=20):
        t_end = time.monotonic() + timeout
        while True:
            got = self.metric(name)
            if got == want or time.monotonic() > t_end:
                return got
            time.sleep(0.1)

    # -- real clients

    def test_etcdctl_watch(self):
        ws = [h.spawn_etcdctl(ep, ["watch", "--prefix", "--prev-kv", self.p + port + "/"])
              for port, ep in self.ports()]
        time.sleep(1.5)  # both watches created (etcdctl prints nothing until an event)
        for port, _ in self.ports():
            k = self.p + port + "/k"
            self.c.put(k, "v1")
            self.c.put(k, "v2")
            self.c.delete(k)
        outs = []
        for (port, _), w in zip(self.ports(), ws):
            # PUT k v1 (3 lines); PUT, prev k v1, k v2 (5); DELETE, prev k v2, k and
            # its empty value (5): waiting for fewer raced the last lines on one port
            self.assertTrue(w.wait_lines(13, timeout=20), (port, w.out()))
            w.stop()
            outs.append(w.out().replace(port + "/", ""))
        self.assertEqual(outs[0], outs[1])
        self.assertEqual(outs[0].splitlines()[:3], ["PUT", self.p + "k", "v1"])

    def test_etcdctl_snapshot_save(self):
        self.c.put(self.p + "k", "v")
        files = []
        for port, ep in self.ports():
            path = os.path.join(self.s.tmp, "snap-%s.db" % port)
            r = self.assertOk(h.run_etcdctl(ep, ["snapshot", "save", path], timeout=60,
                                            command_timeout="50s"))
            self.assertIn("Snapshot saved", r.out + r.err)
            data = open(path, "rb").read()
            # etcd's framing: the database, then the SHA-256 of it
            self.assertEqual(hashlib.sha256(data[:-32]).digest(), data[-32:], port)
            files.append(data)
        self.assertEqual(len(files[0]), len(files[1]))
        out = os.path.join(self.s.tmp, "restored-" + self.p.strip("/"))
        self.assertOk(h.run_etcdctl(self.h2, ["snapshot", "restore",
                                              os.path.join(self.s.tmp, "snap-h2.db"),
                                              "--data-dir", out], timeout=60))

    def test_python_watch_and_lease_refresh(self):
        c = etcd3.client(host="127.0.0.1", port=self.h2port, timeout=20)
        self.addCleanup(c.close)
        events, cancel = c.watch_prefix(self.p)
        got = []

        def read():
            for e in events:
                got.append((type(e).__name__, e.key, e.value))
                if len(got) == 3:
                    cancel()
        t = threading.Thread(target=read, daemon=True)
        t.start()
        time.sleep(0.5)
        c.put(self.p + "a", "1")
        c.put(self.p + "b", "2")
        c.delete(self.p + "a")
        t.join(20)
        self.assertFalse(t.is_alive(), got)
        self.assertEqual(got, [("PutEvent", (self.p + "a").encode(), b"1"),
                               ("PutEvent", (self.p + "b").encode(), b"2"),
                               ("DeleteEvent", (self.p + "a").encode(), b"")])
        lease = c.lease(30)
        for _ in range(3):  # each refresh: one request, a half-close, one answer
            r = list(lease.refresh())
            self.assertEqual(len(r), 1)
            self.assertEqual((r[0].ID, r[0].TTL), (lease.id, 30))
        lease.revoke()
        self.assertEqual(list(lease.refresh())[0].TTL, 0)  # unknown lease: TTL 0 (etcd)

    # -- raw streams, both ports compared

    def scenario(self, ep, prefix):
        """create two watches, events, cancel one, a progress request, a watch from a
        compacted revision, a bad range: the responses' shapes."""
        w = Stream(self, ep)
        out = []
        w.create(prefix + "a", prev_kv=True)
        out.append(w.next())
        w.create(prefix, range_end=(prefix[:-1] + "0").encode())
        out.append(w.next())
        a, b = out[0].watch_id, out[1].watch_id
        self.c.put(prefix + "a", "1")
        self.c.put(prefix + "a", "2")
        for _ in range(2):  # each watch: its events, in one or more responses
            r = w.next()
            out.append(r)
            while sum(len(x.events) for x in out if x.watch_id == r.watch_id) < 2:
                out.append(w.next())
        out.sort(key=lambda r: (r.watch_id, not r.created))
        w.send(cancel_request=pb.WatchCancelRequest(watch_id=a))
        out.append(w.next())
        self.c.put(prefix + "b", "3")
        out.append(w.next())  # only the prefix watch sees it
        self.assertEqual(out[-1].watch_id, b)
        w.reqs.put(PROGRESS)
        r = w.next()
        self.assertEqual(r.watch_id, -1)  # etcd 3.4: a progress response has watch_id -1
        self.assertGreater(r.header.revision, 0)
        out.append(r)
        rev = self.c.put(prefix + "c", "4").header.revision
        out.append(w.next())
        self.c.compact(rev)
        w.create(prefix + "a", start_revision=2)
        r = w.next()  # created, then cancelled with the compacted revision (etcd 3.4)
        self.assertTrue(r.created, r)
        out.append(r)
        r = w.next()
        self.assertTrue(r.canceled and r.compact_revision == rev, r)
        out.append(r)
        w.create(prefix + "a", start_revision=rev + 100)  # a future revision: created
        r = w.next()
        self.assertTrue(r.created, r)
        out.append(r)
        w.reqs.put(None)  # half-close: the watches go on
        self.c.put(prefix + "a", "5")
        out.append(w.next())
        w.call.cancel()
        return [shape(r, prefix) for r in out]

    def test_watch_requests_as_grpc_port(self):
        a = self.scenario(self.h2, self.p + "h2/")
        b = self.scenario(self.s.endpoint, self.p + "grpc/")
        self.assertEqual(a, b)

    def test_many_watchers_on_one_stream(self):
        base = self.metric("etcd_debugging_mvcc_watcher_total")
        n = 300
        for port, ep in self.ports():
            w = Stream(self, ep)
            for i in range(n):
                w.create("%s%s/%03d" % (self.p, port, i))
            ids = set()
            for _ in range(n):
                r = w.next()
                self.assertTrue(r.created, r)
                ids.add(r.watch_id)
            self.assertEqual(len(ids), n)
            for i in range(n):
                self.c.put("%s%s/%03d" % (self.p, port, i), str(i))
            seen = {}
            while len(seen) < n:
                r = w.next()
                for e in r.events:
                    seen[r.watch_id] = e.kv.value
            self.assertEqual(sorted(int(v) for v in seen.values()), list(range(n)), port)
            w.call.cancel()
        self.assertEqual(self.wait_metric("etcd_debugging_mvcc_watcher_total", base), base)

    def test_client_disconnect_mid_stream(self):
        base = self.metric("etcd_debugging_mvcc_watcher_total")
        streams = self.metric("etcd_debugging_mvcc_watch_stream_total")
        stop = threading.Event()

        def write():
            cl = etcd3.client(host="127.0.0.1", port=self.s.client_port, timeout=20)
            i = 0
            while not stop.is_set():
                cl.put(self.p + "k", "v%d" % i)
                i += 1
            cl.close()
        t = threading.Thread(target=write, daemon=True)
        t.start()
        self.addCleanup(stop.set)
        for _ in range(3):
            w = Stream(self, self.h2)
            for i in range(20):
                w.create(self.p + "k")
            while not w.next().events:
                pass
            w.ch.close()  # the connection goes while events flow
        # a raw connection dropped with a watch's events unread
        with socket.create_connection(("127.0.0.1", self.h2port), timeout=20) as so:
            so.sendall(h2_preface() + h2f.frame(1, 4, 1, watch_headers()) +
                       h2f.frame(0, 0, 1, grpc_msg(pb.WatchRequest(
                           create_request=pb.WatchCreateRequest(key=(self.p + "k").encode())))))
            time.sleep(0.5)
        stop.set()
        t.join(30)
        self.assertEqual(self.wait_metric("etcd_debugging_mvcc_watcher_total", base), base)
        self.assertEqual(self.wait_metric("etcd_debugging_mvcc_watch_stream_total", streams),
                         streams)
        w = Stream(self, self.h2)  # the port serves on
        w.create(self.p + "after")
        self.assertTrue(w.next().created)
        self.c.put(self.p + "after", "x")
        self.assertEqual(w.next().events[0].kv.value, b"x")

    def test_lease_keepalive_as_grpc_port(self):
        lease = self.c.lease(60)
        for port, ep in self.ports():
            with grpc.insecure_channel(ep) as ch:
                stub = pbg.LeaseStub(ch)
                reqs = [pb.LeaseKeepAliveRequest(ID=lease.id)] * 3 + \
                    [pb.LeaseKeepAliveRequest(ID=12345)]
                got = [(r.ID, r.TTL) for r in stub.LeaseKeepAlive(iter(reqs), timeout=20)]
                self.assertEqual(got, [(lease.id, 60)] * 3 + [(12345, 0)], port)
                # a request that cannot be decoded: the stream ends
                raw = ch.stream_stream("/etcdserverpb.Lease/LeaseKeepAlive",
                                       request_serializer=lambda b: b,
                                       response_deserializer=lambda b: b)
                resp = list(raw(iter([b"\xff\xff\xff"]), timeout=20))
                self.assertEqual(resp, [], port)
        lease.revoke()

    def test_stream_deadline_as_grpc_port(self):
        streams = self.metric("etcd_debugging_mvcc_watch_stream_total")
        for port, ep in self.ports():
            w = Stream(self, ep, timeout=1.5)
            w.create(self.p + port)
            self.assertTrue(w.next().created)
            self.c.put(self.p + port, "x")
            self.assertEqual(len(w.next().events), 1)
            e = w.end(timeout=20)
            self.assertEqual(e.code(), grpc.StatusCode.DEADLINE_EXCEEDED, (port, e))
        self.assertEqual(self.wait_metric("etcd_debugging_mvcc_watch_stream_total", streams),
                         streams)

    def test_oversized_request_ends_the_stream_as_grpc_port(self):
        # past --max-request-bytes + 512 KiB (gRPC's receive limit): the stream ends
        # RESOURCE_EXHAUSTED on both ports, its watchers with it
        streams = self.metric("etcd_debugging_mvcc_watch_stream_total")
        for port, ep in self.ports():
            w = Stream(self, ep)
            w.create(self.p + port)
            self.assertTrue(w.next().created)
            w.create("k" * (3 << 20))
            e = w.end(timeout=20, what=port)
            self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, (port, e))
            self.assertIn("Received message larger than max", e.details(), port)
        self.assertEqual(self.wait_metric("etcd_debugging_mvcc_watch_stream_total", streams),
                         streams)

    def test_keepalive_pings_on_an_idle_watch(self):
        opts = [("grpc.keepalive_time_ms", 1000), ("grpc.keepalive_timeout_ms", 5000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0)]
        w = Stream(self, self.h2, options=opts)
        w.create(self.p + "k")
        self.assertTrue(w.next().created)
        time.sleep(5)  # idle but for pings
        self.c.put(self.p + "k", "late")
        self.assertEqual(w.next().events[0].kv.value, b"late")

    def test_snapshot_client_cancel(self):
        for i in range(40):  # a few MB, many messages
            self.c.put("%s%d" % (self.p, i), os.urandom(64 * 1024))
        for port, ep in self.ports():
            with grpc.insecure_channel(ep) as ch:
                call = pbg.MaintenanceStub(ch).Snapshot(pb.SnapshotRequest(), timeout=30)
                first = next(call)
                self.assertGreater(first.remaining_bytes, 0)
                call.cancel()  # the worker stops; the port serves on
        self.assertEqual(self.c.get(self.p + "0")[1].key, (self.p + "0").encode())
        self.c.delete_prefix(self.p)

    # -- a status with nothing more to wait for: refusals, deadlines (raw HTTP/2)

    def test_unknown_method_refused_at_once_as_grpc_port(self):
        # a stream to a method nobody serves is answered at its HEADERS (the client has
        # not ended its side): the status, then RST_STREAM NO_ERROR, as the gRPC C core
        for port, tcp in (("h2", self.h2port), ("grpc", self.s.client_port)):
            r = h2f.RawCall(self, tcp, b"/etcdserverpb.Watch/Nope", [(b"grpc-timeout", b"20S")])
            hdrs, rst = r.end(timeout=10, what=port)
            self.assertEqual((hdrs["grpc-status"], rst), ("12", h2f.NO_ERROR), port)

    def test_refused_stream_is_reset_and_its_deadline_dropped(self):
        # a Watch refused before its adapter took it (here: a grpc-encoding not served)
        # ends as any other status before the request ended: the trailers, RST_STREAM
        # NO_ERROR, and nothing more for it when its deadline passes
        r = h2f.RawCall(self, self.h2port, b"/etcdserverpb.Watch/Watch",
                    [(b"grpc-timeout", b"1S"), (b"grpc-encoding", b"snappy")])
        hdrs, rst = r.end(timeout=10)
        self.assertEqual((hdrs["grpc-status"], rst), ("12", h2f.NO_ERROR))
        time.sleep(2)  # past its deadline
        self.assertEqual(r.ping(), [])  # nothing for stream 1 came before the PING's ACK

    def test_deadline_cuts_a_half_sent_message_as_grpc_port(self):
        # The client grants no window: an event bigger than the 64 KiB the stream may
        # take is half sent when the deadline passes. The gRPC C core sends the status
        # at once all the same (close_from_api: the message cut), then RST_STREAM
        # NO_ERROR, and forgets the stream; so must this port.
        # (the count once the streams of the tests before have ended: a client that
        # vanished mid-stream is noticed a moment later)
        streams = self.wait_metric("etcd_debugging_mvcc_watch_stream_total", 0, timeout=10)
        big = os.urandom(200 * 1024)
        for port, tcp in (("h2", self.h2port), ("grpc", self.s.client_port)):
            key = (self.p + port).encode()
            r = h2f.RawCall(self, tcp, b"/etcdserverpb.Watch/Watch", [(b"grpc-timeout", b"4S")])
            r.send(grpc_msg(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key))))
            self.assertTrue(pb.WatchResponse.FromString(r.message()).created, port)
            t0 = time.monotonic()
            self.c.put(key, big)
            hdrs, rst = r.end(timeout=20, what=port)
            self.assertLess(time.monotonic() - t0, 10, port)
            self.assertGreater(len(r.data), 0, port)  # a part of the event came
            self.assertLess(len(r.data), len(big), port)  # not all of it
            self.assertEqual((hdrs["grpc-status"], hdrs.get("grpc-message"), rst),
                             ("4", "Deadline Exceeded", h2f.NO_ERROR), port)
        self.assertEqual(self.wait_metric("etcd_debugging_mvcc_watch_stream_total", streams),
                         streams)

    def test_watcher_that_does_not_read(self):
        # A raw HTTP/2 client whose windows stay closed: the server sends what the
        # windows allow, its queue for the stream stays within its limits (the watch
        # hub then keeps the watcher unsynced: etcd's slow watcher), and once the client
        # reads, every event arrives, in order, each once.
        n, val = 1500, os.urandom(1000)
        so = socket.create_connection(("127.0.0.1", self.h2port), timeout=30)
        self.addCleanup(so.close)
        so.sendall(h2_preface() + h2f.frame(1, 4, 1, watch_headers()) +
                   h2f.frame(0, 0, 1, grpc_msg(pb.WatchRequest(
                       create_request=pb.WatchCreateRequest(key=(self.p + "k").encode())))))
        rd = H2Reader(so)
        created = rd.message(1)
        self.assertTrue(pb.WatchResponse.FromString(created).created)
        first = None
        for i in range(n):
            rev = self.c.put(self.p + "k", val).header.revision
            first = first or rev
        self.assertGreaterEqual(self.wait_metric("etcd_debugging_mvcc_slow_watcher_total", 1,
                                                 timeout=10), 1)
        # now read: windows opened as data arrives
        revs = []
        while len(revs) < n:
            r = pb.WatchResponse.FromString(rd.message(1, update=True))
            revs += [e.kv.mod_revision for e in r.events]
        self.assertEqual(revs, list(range(first, first + n)))
        self.assertEqual(self.wait_metric("etcd_debugging_mvcc_slow_watcher_total", 0), 0)
        so.close()


class H2JoiningMember(h.StoreTestCase):
    """A member joining a cluster (--initial-cluster-state existing) whose leader is
    paused (SIGSTOP): it serves clients only once it knows its member ID, so a Watch
    stream's adapter does not take the stream yet while its client sends on."""

    def test_requests_flooded_before_the_adapter_takes_the_stream(self):
        # The gRPC C core reads a stream's messages one at a time, as the adapter asks:
        # what the client sends meanwhile waits within the stream's HTTP/2 window. This
        # port decodes each message as it comes and keeps it for the adapter; past a
        # bound it stops giving the window back, so the client is held, not the
        # server's memory grown, until the adapter takes the stream; then every
        # request is served.
        # b joins as a voter: a learner would refuse Watch streams (as etcd 3.4's does),
        # and the strict check would refuse a voter that has not started
        leader = self.store(name="a", extra_args=["--strict-reconfig-check=false"])
        h2port = h.free_port()
        n = h.Store(name="b", extra_args=["--experimental-listen-h2-url",
                                          "http://127.0.0.1:%d" % h2port])
        self._stores.append(n)
        r = self.assertOk(h.member_change(leader, ["member", "add", "b",
                                                   "--peer-urls=" + n.peer_url]))
        initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', r.out).group(1)
        n.extra_args += ["--initial-cluster", initial, "--initial-cluster-state", "existing",
                         "--initial-cluster-token", "bollard-it"]
        msg = grpc_msg(pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=b"k" * 16000)))
        count = (8 << 20) // len(msg)
        os.killpg(leader.proc.pid, signal.SIGSTOP)
        try:
            n.start(wait=False)
            t_end = time.monotonic() + 30
            while b"serving client requests" not in open(n.log_path, "rb").read():
                self.assertLess(time.monotonic(), t_end, n.log_tail())
                time.sleep(0.1)
            self.assertIn(b"joining: serving clients once", open(n.log_path, "rb").read())
            floods = {port: Flood(self, tcp) for port, tcp in (("h2", h2port),
                                                               ("grpc", n.client_port))}
            for f in floods.values():
                f.send(msg * count, idle=3)
            held = {port: f.sent for port, f in floods.items()}
            rss = int(open("/proc/%d/status" % n.proc.pid).read().split("VmRSS:")[1].split()[0])
        finally:
            os.killpg(leader.proc.pid, signal.SIGCONT)
        print("bytes sent before the client was held: %s of %d; joining member's RSS %d kB"
              % (held, count * len(msg), rss))
        for port, sent in held.items():
            self.assertLess(sent, 5 << 20, (port, held))
        # the member joins: the adapters take the streams, the clients go on, every
        # create is answered
        for port, f in floods.items():
            f.send(msg * count, idle=30)
            self.assertEqual(f.sent, count * len(msg), port)
            self.assertEqual(f.created(count, timeout=30), count, port)


class Flood:
    """A raw Watch stream sending as fast as the server's windows allow (it grants no
    window for what it receives)."""

    def __init__(self, tc, port):
        self.tc = tc
        self.so = socket.create_connection(("127.0.0.1", port), timeout=30)
        tc.addCleanup(self.so.close)
        self.so.sendall(h2_preface() + h2f.frame(h2f.HEADERS, h2f.END_HEADERS, 1,
                                                 watch_headers()))
        self.conn_win = self.strm_win = self.init = 65535
        self.sent, self.rd, self.data = 0, b"", b""

    def send(self, payload, idle):
        """Send on from payload[self.sent:] until all went or the windows stayed shut
        for idle seconds."""
        last = time.monotonic()
        while self.sent < len(payload) and time.monotonic() - last < idle:
            n = min(16384, self.conn_win, self.strm_win, len(payload) - self.sent)
            if n > 0:
                self.so.sendall(h2f.frame(h2f.DATA, 0, 1, payload[self.sent:self.sent + n]))
                self.sent += n
                self.conn_win -= n
                self.strm_win -= n
                last = time.monotonic()
            self.read(0 if n > 0 else 0.2)

    def read(self, timeout):
        """What came within timeout: windows, SETTINGS (acknowledged), stream 1's data."""
        self.so.settimeout(timeout or None)
        if not timeout:
            self.so.setblocking(False)
        try:
            chunk = self.so.recv(1 << 16)
            if not chunk:
                self.tc.fail("the connection closed")
            self.rd += chunk
        except (BlockingIOError, socket.timeout):
            pass
        finally:
            self.so.settimeout(30)
        while len(self.rd) >= 9 and len(self.rd) >= 9 + int.from_bytes(self.rd[:3], "big"):
            ln = int.from_bytes(self.rd[:3], "big")
            ftype, flags, body = self.rd[3], self.rd[4], self.rd[9:9 + ln]
            sid = int.from_bytes(self.rd[5:9], "big") & 0x7fffffff
            self.rd = self.rd[9 + ln:]
            if ftype == h2f.SETTINGS and not flags & h2f.ACK:
                for i in range(0, len(body), 6):
                    if int.from_bytes(body[i:i + 2], "big") == h2f.SETTINGS_INITIAL_WINDOW_SIZE:
                        v = int.from_bytes(body[i + 2:i + 6], "big")
                        self.strm_win += v - self.init
                        self.init = v
                self.so.sendall(h2f.frame(h2f.SETTINGS, h2f.ACK, 0))
            elif ftype == h2f.WINDOW_UPDATE:
                inc = int.from_bytes(body[:4], "big") & 0x7fffffff
                if sid == 0:
                    self.conn_win += inc
                elif sid == 1:
                    self.strm_win += inc
            elif ftype == h2f.DATA and sid == 1:
                self.data += body
            elif ftype in (h2f.RST_STREAM, h2f.GOAWAY) or (ftype == h2f.HEADERS and
                                                          flags & h2f.END_STREAM):
                self.tc.fail("stream 1 ended: %r" % ((ftype, flags, sid, body),))

    def created(self, want, timeout):
        """How many created WatchResponses came, waiting up to timeout for want."""
        t_end, n = time.monotonic() + timeout, 0
        while n < want and time.monotonic() < t_end:
            self.read(0.2)
            while len(self.data) >= 5 and \
                    len(self.data) >= 5 + int.from_bytes(self.data[1:5], "big"):
                ln = int.from_bytes(self.data[1:5], "big")
                r = pb.WatchResponse.FromString(self.data[5:5 + ln])
                self.data = self.data[5 + ln:]
                n += bool(r.created)
        return n

# -- raw HTTP/2 (what grpcio would not let a test do: never open a window)

def h2_preface():
    # SETTINGS: initial window 65535 (the default) but never a WINDOW_UPDATE until read
    return h2f.PREFACE + h2f.SETTINGS_EMPTY


def watch_headers():
    return b"".join(h2f.literal(n, v) for n, v in (
        (b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/etcdserverpb.Watch/Watch"),
        (b":authority", b"127.0.0.1"), (b"content-type", b"application/grpc"),
        (b"te", b"trailers")))


def grpc_msg(m):
    b = m.SerializeToString()
    return b"\x00" + struct.pack(">I", len(b)) + b


class H2Reader:
    """gRPC messages of one stream from a raw HTTP/2 connection."""

    def __init__(self, so):
        self.so, self.data = so, b""

    def frame(self):
        f = h2f.read_frame(self.so)
        if f is None:
            raise AssertionError("connection closed")
        if f[0] == h2f.SETTINGS and not f[1] & h2f.ACK:
            self.so.sendall(h2f.frame(h2f.SETTINGS, h2f.ACK, 0))
        return f

    def message(self, sid, update=False):
        while len(self.data) < 5 or len(self.data) < 5 + int.from_bytes(self.data[1:5], "big"):
            ftype, _, fsid, payload = self.frame()
            if ftype == 0 and fsid == sid:
                self.data += payload
                if update and payload:  # give back what was read, stream and connection
                    inc = struct.pack(">I", len(payload))
                    self.so.sendall(h2f.frame(8, 0, 0, inc) + h2f.frame(8, 0, sid, inc))
            elif ftype == 3 and fsid == sid:
                raise AssertionError("stream reset")
        n = int.from_bytes(self.data[1:5], "big")
        m, self.data = self.data[5:5 + n], self.data[5 + n:]
        return m


if __name__ == "__main__":
    h.main()
