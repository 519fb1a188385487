#!/usr/bin/python3
"""The experimental HTTP/2 listener (--experimental-listen-h2-url, store/server/h2srv.c):
real clients (etcdctl 3.4, python3-etcd3, raw grpcio) against its port, each answer
compared with what the same store's gRPC C-core port gives.

Run by meson with BOLLARD_STORE set (Bollard only: etcd has no such flag).
"""

import os
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

import etcd3  # noqa: E402
import grpc  # noqa: E402
from etcd3.etcdrpc import rpc_pb2  # noqa: E402

PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"


def raw_call(endpoint, method, payload, timeout=10):
    """A unary call with raw request bytes: (status code, details, response bytes)."""
    with grpc.insecure_channel(endpoint) as ch:
        f = ch.unary_unary(method, request_serializer=lambda b: b,
                           response_deserializer=lambda b: b)
        try:
            return grpc.StatusCode.OK, "", f(payload, timeout=timeout)
        except grpc.RpcError as e:
            return e.code(), e.details(), None


class H2Listener(h.SharedStoreTestCase):

    @classmethod
    def setUpClass(cls):
        if h.default_impl() != "bollard":
            raise AssertionError("this test needs Bollard (BOLLARD_STORE)")
        cls.h2port = h.free_port()
        cls.h2 = "127.0.0.1:%d" % cls.h2port
        cls.store_args = ["--experimental-listen-h2-url", "http://" + cls.h2]
        super().setUpClass()

    def setUp(self):
        super().setUp()
        self.p = self._testMethodName + "/"

    def both(self, *args):
        """etcdctl ARGS on the h2 port, then on the gRPC port."""
        return (h.run_etcdctl(self.h2, args), self.s.etcdctl(*args))

    def test_etcdctl_put_get(self):
        k = self.p + "k"
        self.assertOk(h.run_etcdctl(self.h2, ["put", k, "v1"]))
        r = self.assertOk(h.run_etcdctl(self.h2, ["get", k]))
        self.assertEqual(r.out, "%s\nv1\n" % k)
        # one store behind both ports
        self.assertEqual(self.assertOk(self.s.etcdctl("get", k)).out, r.out)
        self.assertOk(self.s.etcdctl("put", k, "v2"))
        r = self.assertOk(h.run_etcdctl(self.h2, ["get", k, "--consistency=s", "-w", "json"]))
        kv = r.json()["kvs"][0]
        self.assertEqual(kv["version"], 2)

    def test_etcdctl_errors_as_grpc_port(self):
        for args in (["put", "", "v"], ["get", ""], ["get", self.p + "a", "--rev", "999999"]):
            a, b = self.both(*args)
            self.assertNotEqual(a.rc, 0, a)
            self.assertEqual(a.rc, b.rc, (a, b))
            self.assertEqual(a.err.splitlines()[-1], b.err.splitlines()[-1], (a, b))

    def test_python_etcd3(self):
        c = etcd3.client(host="127.0.0.1", port=self.h2port, timeout=10)
        self.addCleanup(c.close)
        k = self.p + "k"
        resp = c.put(k, "v1")
        self.assertGreater(resp.header.revision, 0)
        resp = c.put(k, "v2", prev_kv=True)
        self.assertEqual(resp.prev_kv.value, b"v1")
        value, meta = c.get(k)
        self.assertEqual(value, b"v2")
        self.assertEqual(meta.version, 2)
        self.assertEqual(c.get(self.p + "absent"), (None, None))
        c.put(self.p + "k2", "x")
        self.assertEqual(sorted(v for v, _ in c.get_prefix(self.p)), [b"v2", b"x"])
        big = os.urandom(300 * 1024)  # many DATA frames each way
        c.put(self.p + "big", big)
        self.assertEqual(c.get(self.p + "big")[0], big)

    def test_big_range_response(self):
        # a 3 MB answer: more than the listener serializes ahead of the socket at once
        c = etcd3.client(host="127.0.0.1", port=self.h2port, timeout=20,
                         grpc_options=[("grpc.max_receive_message_length", 16 << 20)])
        self.addCleanup(c.close)
        vals = {}
        for i in range(10):
            vals[("%sb%d" % (self.p, i)).encode()] = os.urandom(300 * 1024)
            c.put(("%sb%d" % (self.p, i)), vals[("%sb%d" % (self.p, i)).encode()])
        got = {m.key: v for v, m in c.get_prefix(self.p)}
        self.assertEqual(got, vals)

    def test_concurrent_streams_on_one_connection(self):
        c = etcd3.client(host="127.0.0.1", port=self.h2port, timeout=20)
        self.addCleanup(c.close)
        errors = []

        def work(t):
            try:
                for i in range(40):
                    c.put("%st%d/%d" % (self.p, t, i), "v%d" % i)
            except Exception as e:  # reported below
                errors.append(e)
        ts = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(errors, [])
        got = {m.key.decode(): v for v, m in c.get_prefix(self.p)}
        self.assertEqual(len(got), 8 * 40)
        self.assertEqual(got[self.p + "t3/39"], b"v39")

    def test_raw_errors_as_grpc_port(self):
        too_big = rpc_pb2.PutRequest(key=b"k", value=b"x" * (1800 * 1024)).SerializeToString()
        over_max = rpc_pb2.PutRequest(key=b"k", value=b"x" * (2 * 1024 * 1024)).SerializeToString()
        cases = [
            (PUT, b"\xff\xff\xff"),                 # undecodable
            (PUT, too_big),                         # over --max-request-bytes
            (PUT, over_max),                        # over the transport's message limit
            (RANGE, rpc_pb2.RangeRequest(key=b"").SerializeToString()),
            (RANGE, b""),                           # an empty request: key not provided
            (PUT, rpc_pb2.PutRequest(key=b"k", lease=12345).SerializeToString()),
        ]
        for method, payload in cases:
            a = raw_call(self.h2, method, payload)
            b = raw_call(self.s.endpoint, method, payload)
            self.assertNotEqual(a[0], grpc.StatusCode.OK, (method, a))
            self.assertEqual(a[:2], b[:2], method)

    def test_bad_connections_do_not_hurt(self):
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        settings = struct.pack(">I", 0)[1:] + b"\x04\x00" + struct.pack(">I", 0)
        # HEADERS on stream 1 with END_HEADERS but an undecodable header block; a DATA
        # frame on a stream never opened; a frame cut short; random bytes
        junk = [preface + b"garbage" * 50,
                preface + settings + b"\x00\x00\x05\x01\x04\x00\x00\x00\x01\xff\xff\xff\xff\xff",
                preface + settings + b"\x00\x00\x03\x00\x01\x00\x00\x00\x07abc",
                preface + settings + b"\x00\x40\x00\x00\x00\x00\x00\x00\x01ab",
                os.urandom(64 * 1024)]
        for data in junk:
            with socket.create_connection(("127.0.0.1", self.h2port), timeout=10) as so:
                try:
                    so.sendall(data)
                    so.shutdown(socket.SHUT_WR)
                    while so.recv(65536):
                        pass
                except OSError:
                    pass  # reset by the server: fine
        self.assertOk(h.run_etcdctl(self.h2, ["put", self.p + "k", "v"]))

    def test_unimplemented_method(self):
        code, details, _ = raw_call(self.h2, "/etcdserverpb.KV/DeleteRange",
                                    rpc_pb2.DeleteRangeRequest(key=b"k").SerializeToString())
        self.assertEqual(code, grpc.StatusCode.UNIMPLEMENTED)
        self.assertIn("/etcdserverpb.KV/DeleteRange", details)

    def test_range_response_as_grpc_port(self):
        c = etcd3.client(host="127.0.0.1", port=self.h2port, timeout=10)
        self.addCleanup(c.close)
        for i in range(5):
            c.put("%sr%d" % (self.p, i), "v%d" % i)
        req = rpc_pb2.RangeRequest(key=self.p.encode(), range_end=self.p.encode()[:-1] + b"0",
                                   limit=3).SerializeToString()
        a = raw_call(self.h2, RANGE, req)
        b = raw_call(self.s.endpoint, RANGE, req)
        self.assertEqual(a[0], grpc.StatusCode.OK)
        self.assertEqual(a[2], b[2])  # byte for byte (same revision, no writes between)


if __name__ == "__main__":
    h.main()
