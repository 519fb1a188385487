#!/usr/bin/python3
"""The experimental HTTP/2 listener's listeners, TLS and graceful stop (--experimental-listen-h2-url,
store/server/h2srv.c, h2tls.c): https:// with etcd's client TLS flags as the gRPC port
takes them, checked with etcdctl 3.4, python3-etcd3 and raw TLS sockets; several URLs,
IPv6 and unix:// on one flag; start errors; SIGTERM: GOAWAY, calls in flight answered.

Certificates are made at test time with `openssl` (tests/lib/tlscerts.py): a CA, a server
certificate, client certificates CN=alice and CN=root, and a rogue CA's CN=alice.

Run by meson with BOLLARD_STORE set (Bollard only: etcd has no such flag).
"""

import hashlib
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
os.environ.pop("BOLLARD_CLIENT_H2", None)  # this test gives its stores their h2 ports itself
# compared with the gRPC C core on the client URLs (the rest of the suite runs them on h2)
os.environ["BOLLARD_CLIENT_TRANSPORT"] = "grpc-core"
import storeharness as h  # noqa: E402
import h2frames as h2f  # noqa: E402
from tlscerts import CertDir  # noqa: E402

import etcd3  # noqa: E402
import grpc  # noqa: E402
from etcd3 import etcdrpc  # noqa: E402
from etcd3.etcdrpc import rpc_pb2  # noqa: E402

CERTS = None
PREFACE = h2f.PREFACE + h2f.SETTINGS_EMPTY


def setUpModule():
    global CERTS
    if h.default_impl() != "bollard":
        raise AssertionError("this test needs Bollard (BOLLARD_STORE)")
    CERTS = CertDir("bollard-h2tls-certs-")
    CERTS.client_tls_set(clients=("alice", "root"))


def tearDownModule():
    if CERTS:
        CERTS.cleanup()


def c(name):
    return CERTS.path(name)


def tls_probe(port, alpn=None, version=None, cert=None):
    """A raw TLS connection sending the HTTP/2 preface: ('handshake', error) if the
    handshake failed, else (selected ALPN, the first bytes the server sent back)."""
    ctx = ssl.create_default_context(cafile=c("ca.pem"))
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if cert:
        ctx.load_cert_chain(c(cert + ".pem"), c(cert + ".key"))
    with socket.create_connection(("127.0.0.1", port), timeout=20) as so:
        try:
            t = ctx.wrap_socket(so, server_hostname="127.0.0.1")
        except (ssl.SSLError, OSError) as e:
            return "handshake", e
        with t:
            try:
                t.sendall(PREFACE)
                return t.selected_alpn_protocol(), t.recv(9)
            except (ssl.SSLError, OSError) as e:
                return t.selected_alpn_protocol(), e


class H2Base(h.StoreTestCase):
    def h2_store(self, scheme="https", extra=(), mtls=False):
        """A store with TLS on its gRPC port and on its h2 port (self.h2, host:port)."""
        self.h2port = h.free_port()
        self.h2 = "127.0.0.1:%d" % self.h2port
        return self.store(client_scheme="https",
                          extra_args=CERTS.server_args(mtls) + list(extra) +
                          ["--experimental-listen-h2-url", "%s://%s" % (scheme, self.h2)],
                          tls_client_args=CERTS.client_args("alice" if mtls else None))

    def ctl(self, *args, who=None, **kw):
        return h.run_etcdctl("https://" + self.h2, CERTS.client_args(who) + list(args), **kw)

    def refused(self, *args, who=None, endpoint=None):
        creds = CERTS.client_args(who) if endpoint is None else []
        r = h.run_etcdctl(endpoint or "https://" + self.h2, creds + list(args),
                          dial_timeout="2s", command_timeout="3s")
        self.assertNotEqual(r.rc, 0, r)
        return r


class H2TLS(H2Base):
    def test_etcdctl_and_python_etcd3(self):
        s = self.h2_store()
        self.assertOk(self.ctl("put", "k", "v1"))
        self.assertEqual(self.assertOk(self.ctl("get", "k")).out, "k\nv1\n")
        # one store behind both ports
        self.assertEqual(self.assertOk(s.etcdctl(*CERTS.client_args(), "get", "k")).out, "k\nv1\n")
        # presenting a certificate that is not asked for is fine
        self.assertOk(self.ctl("put", "k", "v2", who="alice"))
        cl = etcd3.client(host="127.0.0.1", port=self.h2port, ca_cert=c("ca.pem"), timeout=20)
        self.addCleanup(cl.close)
        self.assertEqual(cl.get("k")[0], b"v2")
        big = os.urandom(300 * 1024)  # many TLS records and DATA frames each way
        cl.put("big", big)
        self.assertEqual(cl.get("big")[0], big)
        vals = {}
        for i in range(8):  # a 2.4 MB answer: more than is serialized ahead at once
            vals[b"r/%d" % i] = os.urandom(300 * 1024)
            cl.put(b"r/%d" % i, vals[b"r/%d" % i])
        big_cl = etcd3.client(host="127.0.0.1", port=self.h2port, ca_cert=c("ca.pem"),
                              timeout=30,
                              grpc_options=[("grpc.max_receive_message_length", 16 << 20)])
        self.addCleanup(big_cl.close)
        self.assertEqual({m.key: v for v, m in big_cl.get_prefix("r/")}, vals)

    def test_streams(self):
        # Watch, LeaseKeepAlive and Snapshot over TLS on the h2 port (test_h2_streams.py
        # has them in plain text against the gRPC port)
        s = self.h2_store()
        w = h.spawn_etcdctl("https://" + self.h2, CERTS.client_args() + ["watch", "--prefix", "w/"])
        self.addCleanup(w.stop)
        time.sleep(1.5)  # the watch created (etcdctl prints nothing until an event)
        big = os.urandom(50 * 1024).hex()  # an event of 100 kB: several TLS records
        self.assertOk(self.ctl("put", "w/1", "one"))
        self.assertOk(self.ctl("put", "w/2", big))
        w.wait_lines(6, timeout=30)
        self.assertEqual(w.lines()[:6], ["PUT", "w/1", "one", "PUT", "w/2", big])
        cl = etcd3.client(host="127.0.0.1", port=self.h2port, ca_cert=c("ca.pem"), timeout=20)
        self.addCleanup(cl.close)
        events, cancel = cl.watch("p")
        got = []

        def read():
            for e in events:
                got.append(e.value)
                cancel()
        t = threading.Thread(target=read, daemon=True)
        t.start()
        time.sleep(0.5)
        cl.put("p", "x")
        t.join(20)
        self.assertEqual(got, [b"x"])
        lease = cl.lease(20)
        self.assertEqual([r.TTL for r in lease.refresh()], [20])
        path = os.path.join(s.tmp, "snap.db")
        r = self.assertOk(self.ctl("snapshot", "save", path, timeout=60,
                                   command_timeout="50s"))
        self.assertIn("Snapshot saved", r.out + r.err)
        data = open(path, "rb").read()
        self.assertEqual(hashlib.sha256(data[:-32]).digest(), data[-32:])

    def test_bollard_bench_tls(self):
        # bench/h2ab.sh TLS=1 measures both TLS ports with bollard-bench --cacert
        bench = os.path.join(os.path.dirname(os.path.dirname(os.environ["BOLLARD_STORE"])),
                             "bench", "bollard-bench")
        s = self.h2_store()
        for ep in (s.endpoint, self.h2):
            r = subprocess.run([bench, "put", "--total", "40", "--clients", "4", "--conns", "2",
                                "--cacert", c("ca.pem"), "--endpoints", ep, "--no-histogram"],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("put: 40 ok", r.stdout, r.stdout)
        r = subprocess.run([bench, "put", "--total", "5", "--timeout", "2", "--cacert",
                            c("rogue-ca.pem"), "--endpoints", self.h2], capture_output=True,
                           text=True, timeout=120)
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("put: 5 ok", r.stdout)

    def test_refusals(self):
        self.h2_store()
        # an untrusted server certificate, plaintext to the TLS port: nothing is written
        self.refused("put", "x", "y", endpoint="http://" + self.h2)
        r = h.run_etcdctl("https://" + self.h2, ["--cacert", c("rogue-ca.pem"), "get", "x"],
                          dial_timeout="2s", command_timeout="3s")
        self.assertNotEqual(r.rc, 0, r)
        self.assertEqual(self.assertOk(self.ctl("get", "x")).out, "")
        # ALPN h2 or the connection ends after the handshake, as the gRPC port does
        alpn, first = tls_probe(self.h2port, alpn=["h2"])
        self.assertEqual(alpn, "h2")
        self.assertEqual(first[3], 4)  # the server's SETTINGS frame
        for offer in (None, ["http/1.1"]):
            alpn, first = tls_probe(self.h2port, alpn=offer)
            self.assertIsNone(alpn, offer)
            self.assertIn(first, (b"",), offer)  # closed without a frame
        # TLS 1.1 is refused in the handshake
        alpn, err = tls_probe(self.h2port, alpn=["h2"], version=ssl.TLSVersion.TLSv1_1)
        self.assertEqual(alpn, "handshake", err)
        # a plaintext HTTP/2 client and junk: closed; the port serves on
        for junk in (PREFACE, b"\x16\x03\x01\x00\x05hello", os.urandom(3000)):
            with socket.create_connection(("127.0.0.1", self.h2port), timeout=20) as so:
                so.sendall(junk)
                so.shutdown(socket.SHUT_WR)
                while so.recv(4096):
                    pass
        self.assertOk(self.ctl("put", "after", "junk"))


    def test_auto_tls(self):
        insecure = ["--insecure-transport=false", "--insecure-skip-tls-verify"]
        self.h2port = h.free_port()
        self.store(client_scheme="https", tls_client_args=insecure, extra_args=[
            "--auto-tls", "--experimental-listen-h2-url", "https://127.0.0.1:%d" % self.h2port])
        url = "https://127.0.0.1:%d" % self.h2port
        self.assertOk(h.run_etcdctl(url, insecure + ["put", "k", "auto"]))
        self.assertEqual(self.assertOk(h.run_etcdctl(url, insecure + ["get", "k"])).out,
                         "k\nauto\n")


class H2MutualTLS(H2Base):
    def test_client_certificate_required(self):
        s = self.h2_store(mtls=True, extra=["--log-level", "debug"])
        self.assertOk(self.ctl("put", "k", "v", who="alice"))
        self.assertEqual(self.assertOk(self.ctl("get", "k", who="alice")).out, "k\nv\n")
        self.refused("get", "k")                    # no client certificate
        self.refused("get", "k", who="mallory")     # signed by another CA
        alpn, err = tls_probe(self.h2port, alpn=["h2"])
        self.assertTrue(alpn == "handshake" or isinstance(err, OSError) or err == b"",
                        (alpn, err))
        self.assertIn("h2 connection from client certificate CN=alice", s.log_text())

    def test_common_name_is_the_auth_user(self):
        s = self.h2_store(mtls=True)
        root = CERTS.client_args("root")
        for args in (["user", "add", "root", "--new-user-password=rootpw"],
                     ["user", "add", "alice", "--new-user-password=alicepw"],
                     ["role", "add", "r"],
                     ["role", "grant-permission", "r", "readwrite", "a/", "--prefix=true"],
                     ["user", "grant-role", "alice", "r"],
                     ["auth", "enable"]):
            self.assertOk(s.etcdctl(*root, *args))
        # no token: the certificate's CommonName is the user, on the h2 port as on gRPC's
        self.assertOk(self.ctl("put", "a/1", "x", who="alice"))
        for port_ctl in (lambda *a: self.ctl(*a, who="alice"),
                         lambda *a: s.etcdctl(*CERTS.client_args("alice"), *a)):
            r = port_ctl("put", "b/1", "x")
            self.assertEtcdError(r, "etcdserver: permission denied")
        self.assertOk(self.ctl("put", "b/1", "x", who="root"))
        self.assertEqual(self.assertOk(self.ctl("get", "b/1", who="root")).out, "b/1\nx\n")


class H2Listeners(H2Base):
    def test_several_urls_ipv6_unix(self):
        p1, p2 = h.free_port(), h.free_port()
        sock = os.path.join(tempfile.mkdtemp(prefix="bollard-h2sock-"), "h2.sock")
        self.addCleanup(shutil.rmtree, os.path.dirname(sock), True)
        s = self.store(extra_args=[
            "--experimental-listen-h2-url",
            "http://127.0.0.1:%d, http://[::1]:%d,unix://%s" % (p1, p2, sock)])
        self.assertOk(h.run_etcdctl("127.0.0.1:%d" % p1, ["put", "k", "v"]))
        self.assertEqual(self.assertOk(h.run_etcdctl("[::1]:%d" % p2, ["get", "k"])).out,
                         "k\nv\n")
        with grpc.insecure_channel("unix://" + sock) as ch:
            r = etcdrpc.KVStub(ch).Range(etcdrpc.RangeRequest(key=b"k"), timeout=20)
        self.assertEqual(r.kvs[0].value, b"v")
        self.assertEqual(self.assertOk(s.etcdctl("get", "k")).out, "k\nv\n")

    def test_start_errors(self):
        p = h.free_port()
        out = self.start_fails(["--experimental-listen-h2-url", "https://127.0.0.1:%d" % p])
        self.assertIn("TLS key/cert (--cert-file, --key-file) must be provided for client url "
                      "https://127.0.0.1:%d with HTTPS scheme" % p, out)
        for bad in ("127.0.0.1:%d" % p, "http://127.0.0.1", "http://127.0.0.1:x",
                    "http://127.0.0.1:99999", "ftp://127.0.0.1:%d" % p):
            out = self.start_fails(["--experimental-listen-h2-url", bad])
            self.assertIn("--experimental-listen-h2-url: invalid listen client URL %s" % bad,
                          out)
        out = self.start_fails(["--experimental-listen-h2-url", " , "])
        self.assertIn("--experimental-listen-h2-url: no URL given", out)
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            out = self.start_fails(["--experimental-listen-h2-url",
                                    "http://127.0.0.1:%d" % port])
            self.assertIn("--experimental-listen-h2-url: listen on 127.0.0.1:%d: Address "
                          "already in use" % port, out)


class ClientTransport(H2Base):
    def test_client_url_errors_alike_on_both_transports(self):
        # --listen-client-urls on h2 (the default) or the gRPC C core: etcd's texts either way
        p = h.free_port()
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            for transport in ("h2", "grpc-core"):
                os.environ["BOLLARD_CLIENT_TRANSPORT"] = transport
                try:
                    for url, want in (
                            ("https://127.0.0.1:%d" % p,
                             "TLS key/cert (--cert-file, --key-file) must be provided for "
                             "client url https://127.0.0.1:%d with HTTPS scheme" % p),
                            ("127.0.0.1:%d" % p, "cannot serve clients on 127.0.0.1:%d: invalid "
                             "listen client URL 127.0.0.1:%d" % (p, p)),
                            ("unixs:///tmp/x", "TLS not supported yet: unixs:///tmp/x"),
                            (" , ", "cannot serve clients on  , : no listen client URL given"),
                            ("http://127.0.0.1:%d" % port, "cannot serve clients on "
                             "http://127.0.0.1:%d: listen on 127.0.0.1:%d: Address already in "
                             "use" % (port, port))):
                        out = self.start_fails(["--listen-client-urls", url])
                        self.assertIn(want, out, transport)
                finally:
                    os.environ["BOLLARD_CLIENT_TRANSPORT"] = "grpc-core"

    def test_client_urls_on_h2_by_default(self):
        # no flag: the client URLs are served by our own HTTP/2 listener (its thread,
        # bollard-h2, runs; the log names no gRPC C core); with
        # --experimental-client-transport grpc-core, neither
        for args, on_h2 in (([], True), (["--experimental-client-transport", "grpc-core"],
                                         False)):
            saved = os.environ.pop("BOLLARD_CLIENT_TRANSPORT")  # no flag from the harness
            try:
                s = self.store(extra_args=args)
            finally:
                os.environ["BOLLARD_CLIENT_TRANSPORT"] = saved
            argv = open("/proc/%d/cmdline" % s.proc.pid, "rb").read().split(b"\0")
            self.assertEqual(argv.count(b"--experimental-client-transport"), len(args) // 2)
            self.assertOk(s.etcdctl("put", "k", "v"))
            names = set()
            for t in os.listdir("/proc/%d/task" % s.proc.pid):
                try:
                    names.add(open("/proc/%d/task/%s/comm" % (s.proc.pid, t)).read().strip())
                except OSError:
                    pass  # a thread that ended meanwhile
            log = open(s.log_path, "rb").read()
            self.assertEqual(("bollard-h2" in names, b"(gRPC C core)" in log),
                             (on_h2, not on_h2), (args, sorted(names)))
            self.assertEqual(s.terminate(), 0, s.log_tail())

    def test_bad_transport(self):
        out = self.start_fails(["--experimental-client-transport", "quic"])
        self.assertIn('--experimental-client-transport "quic": want "h2" or "grpc-core"', out)


class H2Pings(H2Base):
    def test_client_pings_always_acked(self):
        # gRPC clients' keepalive and BDP pings: the gRPC port never sends GOAWAY for them
        # (etcd's --grpc-keepalive-min-time, max ping strikes 0); neither does this port
        self.h2port = h.free_port()
        self.store(extra_args=["--experimental-listen-h2-url",
                               "http://127.0.0.1:%d" % self.h2port])
        with socket.create_connection(("127.0.0.1", self.h2port), timeout=30) as so:
            so.sendall(PREFACE + b"".join(h2f.frame(6, 0, 0, b"%08d" % i) for i in range(200)))
            acks, kinds = set(), set()
            while len(acks) < 200:
                f = h2f.read_frame(so)
                self.assertIsNotNone(f, "closed after %d ACKs" % len(acks))
                kinds.add(f[0])
                if f[0] == 6 and f[1] & 1:
                    acks.add(f[3])
            self.assertNotIn(7, kinds)  # no GOAWAY
            self.assertEqual(acks, {b"%08d" % i for i in range(200)})
        # and grpcio pinging every second through 6 s of idle channel keeps working
        opts = [("grpc.keepalive_time_ms", 1000), ("grpc.keepalive_timeout_ms", 5000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0)]
        with grpc.insecure_channel("127.0.0.1:%d" % self.h2port, options=opts) as ch:
            kv = etcdrpc.KVStub(ch)
            kv.Put(etcdrpc.PutRequest(key=b"p", value=b"1"), timeout=20)
            time.sleep(6)
            r = kv.Range(etcdrpc.RangeRequest(key=b"p"), timeout=20)
            self.assertEqual(r.kvs[0].value, b"1")


class H2GracefulStop(H2Base):
    def h2_plain(self):
        self.h2port = h.free_port()
        return self.store(extra_args=["--experimental-listen-h2-url",
                                      "http://127.0.0.1:%d" % self.h2port])

    def test_goaway_then_the_open_call_is_answered(self):
        s = self.h2_plain()
        hdrs = b"".join(h2f.literal(n, v) for n, v in (
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/etcdserverpb.KV/Put"),
            (b":authority", b"x"), (b"content-type", b"application/grpc"), (b"te", b"trailers")))
        with socket.create_connection(("127.0.0.1", self.h2port), timeout=30) as so:
            # stream 1 opened (HEADERS, no END_STREAM); the PING's ACK says it was read
            so.sendall(PREFACE + h2f.frame(1, 0x4, 1, hdrs) + h2f.frame(6, 0, 0, b"12345678"))
            while True:
                f = h2f.read_frame(so)
                self.assertIsNotNone(f, "closed before the PING's ACK")
                if f[0] == 6 and f[1] & 1:
                    break
            os.killpg(s.proc.pid, signal.SIGTERM)
            while True:
                f = h2f.read_frame(so)
                self.assertIsNotNone(f, "closed without GOAWAY")
                if f[0] == 7:
                    break
            last, code = struct.unpack(">II", f[3][:8])
            self.assertEqual((last & 0x7fffffff, code), (1, 0))  # stream 1 is served
            msg = rpc_pb2.PutRequest(key=b"late", value=b"v").SerializeToString()
            so.sendall(h2f.frame(0, 0x1, 1, b"\x00" + struct.pack(">I", len(msg)) + msg))
            seen = []
            while True:
                f = h2f.read_frame(so)
                if f is None:
                    break
                seen.append(f[:3])
        self.assertNotIn(3, [t for t, _, sid in seen if sid == 1])  # no RST_STREAM
        self.assertIn(True, [t == 1 and bool(fl & 1) for t, fl, sid in seen if sid == 1],
                      seen)  # its status arrived (HEADERS with END_STREAM)
        answered = any(t == 0 and sid == 1 for t, _, sid in seen)  # a PutResponse
        self.assertEqual(s.wait_exit(60), 0, s.log_tail())
        s.restart()
        got = self.assertOk(s.etcdctl("get", "late")).out
        self.assertEqual(got, "late\nv\n" if answered else "", seen)

    def test_sigterm_ends_a_stream_its_client_does_not_read(self):
        # A watcher granting no window has an event half sent. At SIGTERM its status goes
        # at once, the message cut (as the gRPC C core's close_from_api), then
        # RST_STREAM NO_ERROR: nothing is left open, the store exits without waiting
        # out the drain (10 s) for a client that never reads.
        s = self.h2_plain()
        r = h2f.RawCall(self, self.h2port, b"/etcdserverpb.Watch/Watch")
        req = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"k"))
        b = req.SerializeToString()
        r.send(b"\x00" + struct.pack(">I", len(b)) + b)
        self.assertTrue(rpc_pb2.WatchResponse.FromString(r.message()).created)
        cl = etcd3.client(host="127.0.0.1", port=s.client_port, timeout=20)
        self.addCleanup(cl.close)
        cl.put("k", os.urandom(200 * 1024))
        while not r.data:  # the event's first bytes, up to the window
            self.assertIsNotNone(r.frame(), "closed before the event")
        t0 = time.monotonic()
        os.killpg(s.proc.pid, signal.SIGTERM)
        hdrs, rst = r.end(timeout=20)
        self.assertEqual((hdrs["grpc-status"], hdrs.get("grpc-message"), rst),
                         ("14", "etcdserver: server stopped", h2f.NO_ERROR))
        self.assertEqual(s.wait_exit(60), 0, s.log_tail())
        self.assertLess(time.monotonic() - t0, 8)

    def test_sigterm_with_two_h2_listeners(self):
        # The client URLs on h2 (the default) and --experimental-listen-h2-url: both
        # listeners drain at SIGTERM, each telling the member; told at once (an idle
        # store), the member must still count both, or it never closes (it hung)
        saved = os.environ.pop("BOLLARD_CLIENT_TRANSPORT")
        try:
            for i in range(6):
                self.h2port = h.free_port()
                s = self.store(extra_args=["--experimental-listen-h2-url",
                                           "http://127.0.0.1:%d" % self.h2port])
                self.assertEqual(s.terminate(), 0, "round %d\n%s" % (i, s.log_tail()))
        finally:
            os.environ["BOLLARD_CLIENT_TRANSPORT"] = saved

    def test_puts_in_flight_at_sigterm(self):
        s = self.h2_plain()
        acked, errors = [], []

        def work(t):
            c = etcd3.client(host="127.0.0.1", port=self.h2port, timeout=20)
            try:
                for i in range(100000):
                    c.put("t%d/%d" % (t, i), "v")
                    acked.append("t%d/%d" % (t, i))
            except Exception as e:  # the server went away: the end of this worker
                errors.append(e)
            finally:
                c.close()
        ts = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(6)]
        for t in ts:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertGreaterEqual(len(acked), 200)
        os.killpg(s.proc.pid, signal.SIGTERM)
        for t in ts:
            t.join(60)
            self.assertFalse(t.is_alive(), "a client hung after SIGTERM")
        self.assertEqual(s.wait_exit(60), 0, s.log_tail())
        self.assertEqual(len(errors), 6)  # each worker ended on an error, none hung
        s.restart()
        cl = etcd3.client(host="127.0.0.1", port=self.h2port, timeout=20)
        self.addCleanup(cl.close)
        have = {m.key.decode() for _, m in cl.get_prefix("t")}
        self.assertEqual([k for k in acked if k not in have], [])  # every acked put stayed


if __name__ == "__main__":
    h.main()
