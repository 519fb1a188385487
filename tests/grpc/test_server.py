"""The gRPC server (store/server) in front of the in-memory fake node (and, with
$BOLLARD_STORE set, the real tools/bollard-store for the transport checks), driven
by real clients: etcdctl 3.4, python3-etcd3, raw gRPC calls and raw sockets.

Run by meson (FAKE_SERVER = the built tests/grpc/fake-server), or by hand:
  FAKE_SERVER=build/tests/grpc/fake-server /usr/bin/python3 tests/grpc/test_server.py -v
What it checks is the server's own job: routing, etcd's status codes and
texts, streaming, limits, robustness against garbage, keepalive tolerance,
start errors and a clean graceful shutdown. The store semantics are the fake's.
"""

import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import etcd3
import grpc
from etcd3.etcdrpc import rpc_pb2

FAKE_SERVER = os.environ.get("FAKE_SERVER", "build/tests/grpc/fake-server")
ETCDCTL = os.environ.get("ETCDCTL_BIN", "/usr/bin/etcdctl")
SNAPSHOT_BYTES = 5 * 1024 * 1024 + 3 * 4096  # LMDB-like (pages), not a multiple of 32 KiB


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url=None, env=None):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port if url is None else url
        self.addr = "127.0.0.1:%d" % self.port
        e = dict(os.environ)
        e.update(env or {})
        self.errf = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([FAKE_SERVER, self.url], stdout=subprocess.PIPE,
                                     stderr=self.errf, env=e)
        self.first_line = self.proc.stdout.readline().decode().strip()
        self.proc.stdout.close()

    def stderr(self):
        self.errf.seek(0)
        return self.errf.read().decode(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=20):
        """Graceful stop; returns (exit code, seconds taken)."""
        t0 = time.monotonic()
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "hung"
        return rc, time.monotonic() - t0


class RealServer(Server):
    """tools/bollard-store on a fresh data dir (when $BOLLARD_STORE is set)."""

    def __init__(self):
        self.port, peer = free_port(), free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.addr = "127.0.0.1:%d" % self.port
        self.dir = tempfile.TemporaryDirectory()
        self.errf = tempfile.TemporaryFile()
        peer_url = "http://127.0.0.1:%d" % peer
        self.proc = subprocess.Popen(
            [os.environ["BOLLARD_STORE"], "--data-dir", os.path.join(self.dir.name, "d"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", "default=" + peer_url],
            stdout=self.errf, stderr=self.errf)
        self.first_line = "not ready"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.alive():
            try:
                raw_call(self.addr, "/etcdserverpb.KV/Range", b"\x0a\x01x", timeout=1)
                self.first_line = "ready"
                break
            except grpc.RpcError:
                time.sleep(0.1)

    def stop(self, timeout=20):
        r = super().stop(timeout)
        if "bollard-store: stopped" in self.stderr():
            self.errf.seek(0, 2)
            self.errf.write(b"\nclean exit\n")
        self.dir.cleanup()
        return r


def etcdctl(addr, *args, stdin=None, check=True):
    env = dict(os.environ, ETCDCTL_API="3")
    p = subprocess.run([ETCDCTL, "--endpoints=" + addr, "--command-timeout=10s"] + list(args),
                       input=stdin, capture_output=True, env=env, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("etcdctl %s failed: %s" % (" ".join(args), p.stderr.decode()))
    return p


def raw_call(addr, path, payload, timeout=5):
    with grpc.insecure_channel(addr) as ch:
        fn = ch.unary_unary(path)
        return fn(payload, timeout=timeout)


class ServerCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(env={"FAKE_SNAPSHOT_BYTES": str(SNAPSHOT_BYTES)})
        assert cls.srv.first_line == "ready", cls.srv.first_line + cls.srv.stderr()

    @classmethod
    def tearDownClass(cls):
        rc, took = cls.srv.stop()
        err = cls.srv.stderr()
        assert rc == 0, "server exit %r, stderr:\n%s" % (rc, err)
        assert "clean exit" in err, err
        for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
            assert marker not in err, err

    def assertCode(self, fn, code, details=None):
        with self.assertRaises(grpc.RpcError) as cm:
            fn()
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        if details is not None:
            self.assertEqual(cm.exception.details(), details)
        return cm.exception


class EtcdctlTest(ServerCase):
    def test_kv(self):
        a = self.srv.addr
        self.assertEqual(etcdctl(a, "put", "k1", "v1").stdout, b"OK\n")
        etcdctl(a, "put", "k2", "v2")
        self.assertEqual(etcdctl(a, "get", "k1").stdout, b"k1\nv1\n")
        self.assertEqual(etcdctl(a, "get", "--consistency=s", "k1").stdout, b"k1\nv1\n")
        self.assertEqual(etcdctl(a, "get", "--prefix", "k", "--print-value-only").stdout,
                         b"v1\nv2\n")
        self.assertEqual(etcdctl(a, "del", "k2").stdout, b"1\n")
        self.assertEqual(etcdctl(a, "get", "k2").stdout, b"")
        out = etcdctl(a, "txn", stdin=b'value("k1") = "v1"\n\nput k1 v9\n\nput k1 no\n\n').stdout
        self.assertTrue(out.startswith(b"SUCCESS"), out)
        self.assertEqual(etcdctl(a, "get", "k1", "--print-value-only").stdout, b"v9\n")

    def test_errors_are_etcds(self):
        p = etcdctl(self.srv.addr, "put", "", "x", check=False)
        self.assertIn(b"Error: etcdserver: key is not provided", p.stderr)
        p = etcdctl(self.srv.addr, "compaction", "99999", check=False)
        self.assertIn(b"Error: etcdserver: mvcc: required revision is a future revision",
                      p.stderr)

    def test_maintenance(self):
        a = self.srv.addr
        etcdctl(a, "put", "m", "1")
        self.assertIn(b"is healthy", etcdctl(a, "endpoint", "health").stderr
                      + etcdctl(a, "endpoint", "health").stdout)
        self.assertIn(b"3.4.23", etcdctl(a, "endpoint", "status").stdout)
        self.assertIn(a.encode(), etcdctl(a, "endpoint", "hashkv").stdout)
        self.assertIn(b"started, default", etcdctl(a, "member", "list").stdout)
        self.assertEqual(etcdctl(a, "alarm", "list").stdout, b"")
        self.assertIn(b"Finished defragmenting", etcdctl(a, "defrag").stdout)
        self.assertIn(b"compacted revision", etcdctl(a, "compaction", "2").stdout)

    def test_snapshot(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "snap.db")
            etcdctl(self.srv.addr, "snapshot", "save", path)
            data = open(path, "rb").read()
        self.assertEqual(len(data), SNAPSHOT_BYTES + 32)
        self.assertEqual(hashlib.sha256(data[:-32]).digest(), data[-32:])

    def test_snapshot_framing(self):
        with grpc.insecure_channel(self.srv.addr) as ch:
            fn = ch.unary_stream("/etcdserverpb.Maintenance/Snapshot",
                                 request_serializer=rpc_pb2.SnapshotRequest.SerializeToString,
                                 response_deserializer=rpc_pb2.SnapshotResponse.FromString)
            msgs = list(fn(rpc_pb2.SnapshotRequest(), timeout=30))
        sent = 0
        for m in msgs[:-1]:
            self.assertLessEqual(len(m.blob), 32 * 1024)
            sent += len(m.blob)
            self.assertEqual(m.remaining_bytes, SNAPSHOT_BYTES - sent)
            self.assertNotEqual(m.header.member_id, 0)
        self.assertEqual(sent, SNAPSHOT_BYTES)
        self.assertEqual(msgs[-1].remaining_bytes, 0)
        self.assertEqual(len(msgs[-1].blob), 32)

    def test_snapshot_cancelled_midway(self):
        for _ in range(5):
            with grpc.insecure_channel(self.srv.addr) as ch:
                fn = ch.unary_stream("/etcdserverpb.Maintenance/Snapshot")
                it = fn(b"", timeout=30)
                next(it)
                next(it)
                it.cancel()
        self.assertEqual(etcdctl(self.srv.addr, "put", "after-cancel", "1").stdout, b"OK\n")

    def test_concurrent_snapshots(self):
        errs = []

        def one(i):
            try:
                with tempfile.TemporaryDirectory() as d:
                    etcdctl(self.srv.addr, "snapshot", "save", os.path.join(d, "s.db"))
            except Exception as e:  # noqa
                errs.append(e)
        ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        self.assertEqual(errs, [])


class Etcd3PyTest(ServerCase):
    def test_client(self):
        host, port = self.srv.addr.split(":")
        c = etcd3.client(host=host, port=int(port), timeout=5)
        c.put("/p/a", "1")
        c.put("/p/b", "2")
        self.assertEqual(c.get("/p/a")[0], b"1")
        self.assertEqual(sorted(v for v, _ in c.get_prefix("/p/")), [b"1", b"2"])
        ok, _ = c.transaction(compare=[c.transactions.value("/p/a") == "1"],
                              success=[c.transactions.put("/p/a", "3")], failure=[])
        self.assertTrue(ok)
        self.assertEqual(c.get("/p/a")[0], b"3")
        self.assertTrue(c.delete("/p/b"))
        self.assertEqual(c.get("/p/b"), (None, None))
        st = c.status()
        self.assertEqual(st.version, "3.4.23")
        self.assertEqual(st.leader.id, 0x8e9e05c52164694d)
        c.close()

    def test_many_concurrent_puts(self):
        host, port = self.srv.addr.split(":")
        errs = []

        def worker(w):
            c = etcd3.client(host=host, port=int(port), timeout=10)
            try:
                for i in range(300):
                    c.put("/load/%d/%d" % (w, i), "x" * (i % 50))
            except Exception as e:  # noqa
                errs.append(e)
            c.close()
        ts = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        self.assertEqual(errs, [])
        c = etcd3.client(host=host, port=int(port), timeout=10)
        self.assertEqual(len(list(c.get_prefix("/load/", keys_only=True))), 2400)
        c.close()

    def test_large_replies_from_many_threads(self):
        # Replies far bigger than HTTP/2's 64 KiB window finish only after the
        # client read them: their batches complete on a gRPC thread later,
        # not inside the reply's grpc_call_start_batch (calls.c, the reply
        # queue); small ones in between complete inline.
        host, port = self.srv.addr.split(":")
        c = etcd3.client(host=host, port=int(port), timeout=30)
        blob = [bytes([65 + i]) * (1024 * 1024) for i in range(3)]  # 4 MiB: the client limit
        for i, v in enumerate(blob):
            c.put("/big/%d" % i, v)
        errs = []

        def worker(w):
            cl = etcd3.client(host=host, port=int(port), timeout=30)
            try:
                for r in range(3):
                    got = [v for v, _ in cl.get_prefix("/big/")]
                    if got != blob:
                        errs.append("worker %d round %d: %d values" % (w, r, len(got)))
                    cl.put("/small/%d" % w, str(r))
            except Exception as e:  # noqa
                errs.append(e)
            cl.close()
        ts = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        self.assertEqual(errs, [])
        c.delete_prefix("/big/")
        c.close()


class RawGrpcTest(ServerCase):
    def test_unimplemented_is_prompt(self):
        # AuthStatus came with etcd 3.5: 3.4 has none. (grpc.health.v1.Health is
        # served, as etcd serves it: tests/integration/test_grpc_health.py.)
        for path in ("/etcdserverpb.Cluster/NoSuchCall",
                     "/etcdserverpb.Auth/AuthStatus", "/no.Such/Method",
                     "/grpc.health.v1.Health/NoSuchCall"):
            t0 = time.monotonic()
            self.assertCode(lambda: raw_call(self.srv.addr, path, b"", timeout=10),
                            grpc.StatusCode.UNIMPLEMENTED)
            self.assertLess(time.monotonic() - t0, 2, path)

    def test_unimplemented_without_deadline(self):
        # python3-etcd3 sets no deadline: an unanswered method would hang forever.
        with grpc.insecure_channel(self.srv.addr) as ch:
            fut = ch.stream_stream("/no.Such/Stream")(iter([b""]))
            self.assertEqual(fut.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_authenticate(self):
        self.assertCode(lambda: raw_call(self.srv.addr, "/etcdserverpb.Auth/Authenticate",
                                         rpc_pb2.AuthenticateRequest(name="root",
                                                                     password="x")
                                         .SerializeToString()),
                        grpc.StatusCode.FAILED_PRECONDITION,
                        "etcdserver: authentication is not enabled")

    def test_request_sizes_and_compression(self):
        # A request is decoded in place when it is one plain slice, else
        # read out first (compressed, or many slices); its pieces live in
        # the call up to 1 KiB, beyond in malloc'ed blocks (calls.c).
        cases = [(b"sz/0", b""), (b"sz/1", b"v" * 100), (b"sz/2", b"w" * 900),
                 (b"sz/3", b"x" * 5000), (b"sz/4", os.urandom(300 * 1024))]
        for comp in (None, grpc.Compression.Gzip, grpc.Compression.Deflate):
            with grpc.insecure_channel(self.srv.addr, compression=comp) as ch:
                put = ch.unary_unary("/etcdserverpb.KV/Put")
                rng = ch.unary_unary("/etcdserverpb.KV/Range")
                for key, value in cases:
                    put(rpc_pb2.PutRequest(key=key, value=value).SerializeToString(),
                        timeout=10)
                    r = rpc_pb2.RangeResponse.FromString(
                        rng(rpc_pb2.RangeRequest(key=key).SerializeToString(), timeout=10))
                    self.assertEqual([(kv.key, kv.value) for kv in r.kvs], [(key, value)],
                                     (comp, key))

    def test_garbage_payload(self):
        for payload in (b"\xff\xff\xff\xff", b"\x0a\x80", b"\x0a\x05ab", os.urandom(64)):
            try:
                raw_call(self.srv.addr, "/etcdserverpb.KV/Put", payload)
            except grpc.RpcError as e:
                self.assertIn(e.code(), (grpc.StatusCode.INVALID_ARGUMENT,), e.details())
        e = self.assertCode(lambda: raw_call(self.srv.addr, "/etcdserverpb.KV/Txn",
                                             b"\x0a\xff\xff\xff\xff\x0f"),
                            grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("etcdserverpb.TxnRequest", e.details())

    def test_empty_payload(self):
        self.assertCode(lambda: raw_call(self.srv.addr, "/etcdserverpb.KV/Put", b""),
                        grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")
        resp = rpc_pb2.StatusResponse.FromString(
            raw_call(self.srv.addr, "/etcdserverpb.Maintenance/Status", b""))
        self.assertEqual(resp.version, "3.4.23")

    def test_request_too_large(self):
        big = rpc_pb2.PutRequest(key=b"big", value=b"v" * (1536 * 1024)).SerializeToString()
        self.assertCode(lambda: raw_call(self.srv.addr, "/etcdserverpb.KV/Put", big),
                        grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large")
        # Just under the limit passes.
        ok = rpc_pb2.PutRequest(key=b"big", value=b"v" * (1536 * 1024 - 100)).SerializeToString()
        raw_call(self.srv.addr, "/etcdserverpb.KV/Put", ok)
        # Beyond the gRPC receive limit: gRPC's own refusal, never a crash.
        huge = rpc_pb2.PutRequest(key=b"huge", value=b"v" * (3 << 20)).SerializeToString()
        self.assertCode(lambda: raw_call(self.srv.addr, "/etcdserverpb.KV/Put", huge),
                        grpc.StatusCode.RESOURCE_EXHAUSTED)
        p = etcdctl(self.srv.addr, "put", "big2", stdin=b"v" * (1600 * 1024), check=False)
        self.assertIn(b"etcdserver: request is too large", p.stderr)

    def test_garbage_on_the_wire(self):
        host, port = self.srv.addr.split(":")
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        rnd = random.Random(7)
        blobs = [b"", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", preface[:10], preface,
                 preface + b"\x00\x00\x12\x04\x00\x00\x00\x00\x00",  # truncated SETTINGS
                 preface + bytes(rnd.getrandbits(8) for _ in range(4096)),
                 bytes(rnd.getrandbits(8) for _ in range(65536))]
        for _ in range(3):
            for b in blobs:
                s = socket.create_connection((host, int(port)), timeout=5)
                try:
                    s.sendall(b)
                    if rnd.random() < 0.5:
                        s.shutdown(socket.SHUT_WR)
                        try:
                            s.recv(1024)
                        except OSError:
                            pass
                except OSError:
                    pass
                s.close()
        # Many half-open connections left open for a moment.
        socks = []
        for _ in range(50):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(preface[:rnd.randrange(len(preface))])
            socks.append(s)
        self.assertEqual(etcdctl(self.srv.addr, "put", "after-garbage", "1").stdout, b"OK\n")
        for s in socks:
            s.close()
        self.assertTrue(self.srv.alive())
        self.assertEqual(etcdctl(self.srv.addr, "get", "after-garbage",
                                 "--print-value-only").stdout, b"1\n")

    def test_pings_do_not_kill_idle_connections(self):
        # Pings every second with no data, 12 s long: with gRPC's defaults the
        # server would answer GOAWAY too_many_pings after a few.
        opts = [("grpc.keepalive_time_ms", 1000), ("grpc.keepalive_timeout_ms", 5000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.http2.min_time_between_pings_ms", 1000)]
        states = []
        ch = grpc.insecure_channel(self.srv.addr, options=opts)
        ch.subscribe(states.append, try_to_connect=True)
        put = ch.unary_unary("/etcdserverpb.KV/Put")
        put(rpc_pb2.PutRequest(key=b"ping", value=b"1").SerializeToString(), timeout=5)
        time.sleep(12)
        put(rpc_pb2.PutRequest(key=b"ping", value=b"2").SerializeToString(), timeout=5)
        ch.close()
        ready_idx = states.index(grpc.ChannelConnectivity.READY)
        self.assertEqual(states[ready_idx:], [grpc.ChannelConnectivity.READY], states)


@unittest.skipUnless(os.environ.get("BOLLARD_STORE"), "BOLLARD_STORE not set")
class RealStoreRawGrpcTest(RawGrpcTest):
    """The same transport-level checks against the real store."""

    @classmethod
    def setUpClass(cls):
        cls.srv = RealServer()
        assert cls.srv.first_line == "ready", cls.srv.stderr()

    def test_snapshot_framing_and_sha(self):
        with grpc.insecure_channel(self.srv.addr) as ch:
            fn = ch.unary_stream("/etcdserverpb.Maintenance/Snapshot",
                                 request_serializer=rpc_pb2.SnapshotRequest.SerializeToString,
                                 response_deserializer=rpc_pb2.SnapshotResponse.FromString)
            msgs = list(fn(rpc_pb2.SnapshotRequest(), timeout=60))
        total = msgs[0].remaining_bytes + len(msgs[0].blob)
        data = b"".join(m.blob for m in msgs[:-1])
        self.assertEqual(len(data), total)
        self.assertEqual(total % 512, 0)
        self.assertEqual(msgs[-2].remaining_bytes, 0)
        self.assertEqual(hashlib.sha256(data).digest(), msgs[-1].blob)

    def test_sigterm_under_load(self):
        s = RealServer()
        self.assertEqual(s.first_line, "ready", s.stderr())
        stop = threading.Event()
        codes = []

        def writer(w):
            with grpc.insecure_channel(s.addr) as ch:
                put = ch.unary_unary("/etcdserverpb.KV/Put")
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        put(rpc_pb2.PutRequest(key=b"w%d/%d" % (w, i), value=b"x")
                            .SerializeToString(), timeout=10)
                    except grpc.RpcError as e:
                        codes.append(e.code())
                        return
        ts = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        [t.start() for t in ts]
        time.sleep(1)
        rc, took = s.stop()
        stop.set()
        [t.join(20) for t in ts]
        self.assertEqual(rc, 0, s.stderr())
        self.assertLess(took, 10)
        self.assertNotIn("Sanitizer", s.stderr())


class StartStopTest(unittest.TestCase):
    def test_port_in_use(self):
        a = Server()
        try:
            self.assertEqual(a.first_line, "ready")
            b = Server(url=a.url)
            self.assertIn("start failed: listen on %s" % a.addr, b.first_line)
            self.assertIn("in use", b.first_line)
            self.assertEqual(b.proc.wait(10), 2)
            b.errf.close()
        finally:
            self.assertEqual(a.stop()[0], 0, a.stderr())

    def test_bad_urls(self):
        for url, want in (("https://127.0.0.1:%d" % free_port(), "must be provided for client url"),
                          ("127.0.0.1:2379", "invalid listen client URL"),
                          ("http://127.0.0.1", "invalid listen client URL"),
                          ("http://127.0.0.1:70000", "invalid listen client URL"),
                          ("unixs:///tmp/x", "TLS not supported yet: unixs:///tmp/x"),
                          ("", "no listen client URL")):
            s = Server(url=url)
            self.assertIn(want, s.first_line, url)
            self.assertEqual(s.proc.wait(10), 2)
            s.errf.close()

    def test_several_urls(self):
        p1, p2 = free_port(), free_port()
        s = Server(url="http://127.0.0.1:%d, http://localhost:%d/" % (p1, p2))
        try:
            self.assertEqual(s.first_line, "ready", s.stderr())
            etcdctl("127.0.0.1:%d" % p1, "put", "x", "1")
            self.assertEqual(etcdctl("localhost:%d" % p2, "get", "x", "--print-value-only").stdout,
                             b"1\n")
        finally:
            self.assertEqual(s.stop()[0], 0, s.stderr())

    def test_empty_host_is_every_address(self):
        """http://:port and http://[]:port listen on every address, as etcd 3.4 (an empty
        host from net.SplitHostPort) and the h2 listener do."""
        for form in ("http://:%d", "http://[]:%d"):
            p = free_port()
            s = Server(url=form % p)
            try:
                self.assertEqual(s.first_line, "ready", s.stderr())
                etcdctl("127.0.0.1:%d" % p, "put", "x", form)
                self.assertEqual(etcdctl("127.0.0.1:%d" % p, "get", "x",
                                         "--print-value-only").stdout, form.encode() + b"\n")
            finally:
                self.assertEqual(s.stop()[0], 0, s.stderr())

    def test_shutdown_with_calls_in_the_node_and_open_streams(self):
        s = Server(env={"FAKE_SNAPSHOT_BYTES": str(64 << 20)})
        self.assertEqual(s.first_line, "ready")
        results = []

        def held():
            try:
                raw_call(s.addr, "/etcdserverpb.KV/Put",
                         rpc_pb2.PutRequest(key=b"__hold__1", value=b"1").SerializeToString(),
                         timeout=30)
                results.append("ok")
            except grpc.RpcError as e:
                results.append(e.code())

        def snap():
            try:
                with grpc.insecure_channel(s.addr) as ch:
                    it = ch.unary_stream("/etcdserverpb.Maintenance/Snapshot")(b"", timeout=30)
                    next(it)
                    time.sleep(3)  # stall: the server's send queue fills up
                    for _ in it:
                        pass
                results.append("snap-ok")
            except grpc.RpcError as e:
                results.append(e.code())
        ts = [threading.Thread(target=held) for _ in range(5)] + [threading.Thread(target=snap)]
        [t.start() for t in ts]
        time.sleep(0.5)
        rc, took = s.stop()
        [t.join() for t in ts]
        err = s.stderr()
        self.assertEqual(rc, 0, err)
        self.assertIn("clean exit", err)
        self.assertNotIn("Sanitizer", err)
        self.assertLess(took, 10)
        self.assertEqual(len(results), 6, results)

    def test_shutdown_idle(self):
        s = Server()
        self.assertEqual(s.first_line, "ready")
        rc, took = s.stop()
        self.assertEqual(rc, 0, s.stderr())
        self.assertLess(took, 5)


if __name__ == "__main__":
    unittest.main(verbosity=2)
