#!/usr/bin/python3
"""Errors exactly as etcd 3.4 gives them, limits, unknown methods, and hostile clients.

Run by meson with BOLLARD_STORE set; STORE_IMPL=etcd runs it against Debian's etcd.
"""

import os
import random
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import h2frames as h2f  # noqa: E402
import storeharness as h  # noqa: E402

import grpc  # noqa: E402
from etcd3.etcdrpc import rpc_pb2  # noqa: E402

KEY_NOT_PROVIDED = "etcdserver: key is not provided"
TOO_MANY_OPS = "etcdserver: too many operations in txn request"
DUPLICATE_KEY = "etcdserver: duplicate key given in txn request"
TOO_LARGE = "etcdserver: request is too large"
NOSPACE = "etcdserver: mvcc: database space exceeded"


def txn_puts(keys):
    return "\n" + "".join("put %s v\n" % k for k in keys) + "\n\n"


def raw_unary(channel, method):
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


class Errors(h.SharedStoreTestCase):
    """Against a store with default limits."""

    def test_empty_key(self):
        self.assertEtcdError(self.s.etcdctl("put", "", "v"), KEY_NOT_PROVIDED)
        self.assertEtcdError(self.s.etcdctl("get", ""), KEY_NOT_PROVIDED)
        self.assertEtcdError(self.s.etcdctl("del", ""), KEY_NOT_PROVIDED)
        self.assertEtcdError(self.s.etcdctl("txn", input="\nput \"\" v\n\n\n"), KEY_NOT_PROVIDED)
        r = self.s.etcdctl("put", "", "v")
        self.assertIn("code = InvalidArgument", r.err)

    def test_default_max_txn_ops_is_128(self):
        p = self._testMethodName + "/"
        self.assertOk(self.s.etcdctl("txn", input=txn_puts([p + str(i) for i in range(128)])))
        r = self.s.etcdctl("txn", input=txn_puts([p + str(i) for i in range(129)]))
        self.assertEtcdError(r, TOO_MANY_OPS)
        self.assertIn("code = InvalidArgument", r.err)

    def test_duplicate_key_in_txn(self):
        p = self._testMethodName + "/"
        self.assertOk(self.s.etcdctl("put", p + "a", "1"))
        r = self.s.etcdctl("txn", input=txn_puts([p + "a", p + "b", p + "a"]))
        self.assertEtcdError(r, DUPLICATE_KEY)
        self.assertIn("code = InvalidArgument", r.err)
        # the same key in the success and the failure branch is fine
        self.assertOk(self.s.etcdctl("txn", input="\nput %sa 2\n\nput %sa 3\n\n" % (p, p)))
        # put and delete of the same key in one branch is a duplicate too
        self.assertEtcdError(self.s.etcdctl("txn", input="\nput %sa 2\ndel %sa\n\n\n" % (p, p)),
                             DUPLICATE_KEY)
        # nothing was applied by the rejected txns
        self.assertEqual(self.s.etcdctl("get", p, "--prefix", "--print-value-only").out, "2\n")

    def test_default_request_limit(self):
        c = self.s.client()
        try:
            k = self._testMethodName
            c.put(k, b"x" * (1400 * 1024))
            self.assertEqual(len(c.get(k)[0]), 1400 * 1024)
            with self.assertRaises(grpc.RpcError) as cm:
                c.put(k, b"y" * (1600 * 1024))
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertEqual(cm.exception.details(), TOO_LARGE)
            self.assertEqual(c.get(k)[0][:1], b"x")
        finally:
            c.close()

    def test_compaction_errors_via_grpc(self):
        c = self.s.client()
        try:
            rev = c.put(self._testMethodName, "v").header.revision
            with self.assertRaises(grpc.RpcError) as cm:
                c.kvstub.Range(rpc_pb2.RangeRequest(key=b"a", revision=rev + 100), timeout=5)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.OUT_OF_RANGE)
            self.assertEqual(cm.exception.details(),
                             "etcdserver: mvcc: required revision is a future revision")
        finally:
            c.close()

    def test_unknown_methods_unimplemented_fast(self):
        with self.s.grpc_channel() as ch:
            for method in ("/etcdserverpb.Foo/Bar", "/etcdserverpb.KV/Nope", "/bollard.X/Y",
                           "/etcdserverpb.KV/Range/extra"):
                t0 = time.monotonic()
                with self.assertRaises(grpc.RpcError) as cm:
                    raw_unary(ch, method)(b"", timeout=2)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED,
                                 (method, cm.exception.details()))
                self.assertLess(time.monotonic() - t0, 2, method)
            # and without a deadline (python3-etcd3 sets none): must still answer at once
            fut = raw_unary(ch, "/etcdserverpb.Foo/NoDeadline").future(b"")
            try:
                fut.result(timeout=3)
                self.fail("expected UNIMPLEMENTED")
            except grpc.FutureTimeoutError:
                fut.cancel()
                self.fail("unknown method without a deadline did not answer within 3 s")
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertOk(self.s.etcdctl("get", "alive"))

    def test_garbage_payloads_to_every_method(self):
        methods = ["/etcdserverpb.KV/Range", "/etcdserverpb.KV/Put",
                   "/etcdserverpb.KV/DeleteRange", "/etcdserverpb.KV/Txn",
                   "/etcdserverpb.KV/Compact", "/etcdserverpb.Maintenance/Status",
                   "/etcdserverpb.Maintenance/Hash", "/etcdserverpb.Maintenance/HashKV",
                   "/etcdserverpb.Maintenance/Alarm", "/etcdserverpb.Maintenance/MoveLeader",
                   "/etcdserverpb.Cluster/MemberList", "/grpc.health.v1.Health/Check"]
        valid = [rpc_pb2.RangeRequest(key=b"k", range_end=b"z", limit=3).SerializeToString(),
                 rpc_pb2.PutRequest(key=b"garbage/k", value=b"v" * 50).SerializeToString(),
                 rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
                     key=b"garbage/t", value=b"v"))]).SerializeToString()]
        rng = random.Random(1234)
        payloads = [b"\xff" * 7, b"\x0a\xff\xff\xff\xff\x0f", b"\x08" * 3, b"\x12\x05ab"]
        payloads += [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
                     for _ in range(12)]
        for v in valid:
            payloads += [v[:n] for n in range(1, len(v), max(1, len(v) // 6))]
        with self.s.grpc_channel() as ch:
            for m in methods:
                call = raw_unary(ch, m)
                for p in payloads:
                    try:
                        call(p, timeout=5)
                    except grpc.RpcError as e:
                        self.assertNotIn(e.code(), (grpc.StatusCode.DEADLINE_EXCEEDED,
                                                    grpc.StatusCode.UNAVAILABLE),
                                         "%s with payload %r: %s %s"
                                         % (m, p, e.code(), e.details()))
                    self.assertTrue(self.s.running(), "%s with payload %r killed the server"
                                    % (m, p))
        self.assertOk(self.s.etcdctl("put", "after-garbage", "ok"))

    def test_garbage_on_client_port(self):
        preface, settings = h2f.PREFACE, h2f.SETTINGS_EMPTY
        frame, lit = h2f.frame, h2f.literal
        rng = random.Random(99)

        headers = (lit(b":method", b"POST") + lit(b":scheme", b"http") +
                   lit(b":path", b"/etcdserverpb.KV/Range") + lit(b":authority", b"x") +
                   lit(b"content-type", b"application/grpc") + lit(b"te", b"trailers"))
        cases = {
            "random bytes": bytes(rng.getrandbits(8) for _ in range(65536)),
            "half preface": preface[:12],
            "preface only": preface,
            "preface + truncated frame header": preface + settings + b"\x00\x00\x10\x01",
            "preface + truncated frame": preface + settings +
            frame(1, 4, 1, b"\x82\x86\x84", claim=200),
            "preface + huge frame length": preface + settings +
            frame(0, 0, 1, b"abc", claim=0xFFFFFF),
            "preface + garbage HPACK": preface + settings +
            frame(1, 5, 1, bytes(rng.getrandbits(8) for _ in range(64))),
            "preface + frame on stream 0": preface + settings + frame(1, 5, 0, headers),
            "grpc call with truncated message": preface + settings +
            frame(1, 4, 1, headers) + frame(0, 1, 1, b"\x00\x00\x00\x03\xe8\x0a\x01"),
            "grpc call with bad compression flag": preface + settings +
            frame(1, 4, 1, headers) + frame(0, 1, 1, b"\x07\x00\x00\x00\x01\x0a"),
            "grpc call, client vanishes": preface + settings + frame(1, 4, 1, headers) +
            frame(0, 0, 1, b"\x00\x00\x00\x00\x05\x0a\x03abc"),
            "http/1.1 request": b"GET /v3/kv/range HTTP/1.1\r\nHost: x\r\n\r\n",
            "nothing": b"",
        }
        for name, data in cases.items():
            for mode in ("close", "reset"):
                sock = socket.create_connection(("127.0.0.1", self.s.client_port), timeout=5)
                try:
                    if data:
                        try:
                            sock.sendall(data)
                        except OSError:
                            pass
                    time.sleep(0.05)
                finally:
                    if mode == "reset":
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    sock.close()
                r = self.s.etcdctl("get", "alive", timeout=10)
                self.assertOk(r, "after %r (%s)" % (name, mode))
                self.assertTrue(self.s.running(), name)
        # an idle half-open connection does not block other clients
        idle = socket.create_connection(("127.0.0.1", self.s.client_port), timeout=5)
        try:
            idle.sendall(preface[:5])
            self.assertOk(self.s.etcdctl("put", "alive", "yes", timeout=10))
        finally:
            idle.close()


class HostileClients(h.StoreTestCase):
    """Calls cancelled or abandoned mid-flight; the server stays up, answers, and still
    shuts down cleanly (checked at the end of every test)."""

    def test_cancelled_and_expired_calls(self):
        """Calls with 1-2 ms deadlines and cancelled calls may end any way (a race, and
        etcd itself answers DEADLINE_EXCEEDED, CANCELLED, UNKNOWN or UNAVAILABLE); the
        calls with a long deadline that nobody cancelled must all succeed."""
        s = self.store()
        ch = s.grpc_channel()
        try:
            from etcd3.etcdrpc import rpc_pb2_grpc
            kv = rpc_pb2_grpc.KVStub(ch)
            futs = []                                  # (future, must succeed)
            for i in range(300):
                req = rpc_pb2.PutRequest(key=b"cancel/%d" % i, value=b"v" * 100)
                f = kv.Put.future(req, timeout=0.001 if i % 2 else 10)
                if i % 3 == 0:
                    f.cancel()
                futs.append((f, i % 2 == 0 and i % 3 != 0))
                if i % 5 == 0:
                    futs.append((kv.Range.future(rpc_pb2.RangeRequest(
                        key=b"cancel/", range_end=b"cancel0"), timeout=0.002), False))
            for f, must in futs:
                try:
                    f.result(timeout=30)
                except grpc.FutureCancelledError:
                    self.assertFalse(must)
                except grpc.RpcError as e:
                    self.assertFalse(must, "%s %s" % (e.code(), e.details()))
        finally:
            ch.close()
        self.assertOk(s.etcdctl("put", "after", "cancel"))
        self.assertTrue(s.running())

    def test_channels_closed_with_calls_in_flight(self):
        s = self.store()
        from etcd3.etcdrpc import rpc_pb2_grpc
        for round_no in range(20):
            ch = s.grpc_channel()
            kv = rpc_pb2_grpc.KVStub(ch)
            for i in range(50):
                kv.Put.future(rpc_pb2.PutRequest(key=b"abandon/%d" % i, value=b"x"), timeout=10)
                kv.Txn.future(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
                    request_range=rpc_pb2.RangeRequest(key=b"abandon/", range_end=b"abandon0"))]),
                    timeout=10)
            ch.close()
        self.assertOk(s.etcdctl("get", "abandon/", "--prefix", "--limit", "1"))
        self.assertTrue(s.running())

    def test_snapshot_stream_abandoned(self):
        s = self.store()
        c = s.client()
        try:
            t = c.transactions
            for b in range(20):
                c.transaction(compare=[], failure=[], success=[
                    t.put("snap/%04d" % (b * 50 + i), os.urandom(1000)) for i in range(50)])
            for _ in range(5):
                stream = c.maintenancestub.Snapshot(rpc_pb2.SnapshotRequest(), timeout=30)
                first = next(stream)
                self.assertGreater(len(first.blob), 0)
                stream.cancel()
        finally:
            c.close()
        # a complete snapshot afterwards still works
        path = os.path.join(s.tmp, "after.db")
        self.assertOk(s.etcdctl("snapshot", "save", path))
        self.assertGreater(os.path.getsize(path), 1000000)

    def test_sigterm_with_open_stream_and_idle_connections(self):
        s = self.store()
        c = s.client()
        idle = socket.create_connection(("127.0.0.1", s.client_port), timeout=5)
        try:
            t = c.transactions
            for b in range(10):
                c.transaction(compare=[], failure=[], success=[
                    t.put("sig/%04d" % (b * 50 + i), os.urandom(1000)) for i in range(50)])
            stream = c.maintenancestub.Snapshot(rpc_pb2.SnapshotRequest(), timeout=60)
            next(stream)                      # a snapshot stream left open, unread
            idle.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            if s.impl == "etcd":
                # etcd 3.4 does not exit on SIGTERM while these are open (gRPC GracefulStop
                # waits for them): Bollard must do better than the reference here
                stream.cancel()
                idle.close()
            rc = s.terminate(timeout=20)
            self.assertIsNotNone(rc, "no exit within 20 s of SIGTERM with a stream open")
            self.assertIn(rc, s.clean_exit_codes(), s.log_tail())
        finally:
            idle.close()
            c.close()
        s.restart()
        self.assertEqual(s.etcdctl("get", "sig/", "--prefix", "--keys-only").out.count("sig/"),
                         500)

    def test_many_connections(self):
        s = self.store()
        chans = [s.grpc_channel() for _ in range(100)]
        try:
            from etcd3.etcdrpc import rpc_pb2_grpc
            futs = [rpc_pb2_grpc.KVStub(ch).Put.future(
                rpc_pb2.PutRequest(key=b"conn/%03d" % i, value=b"v"), timeout=30)
                for i, ch in enumerate(chans)]
            for f in futs:
                f.result(timeout=30)
        finally:
            for ch in chans:
                ch.close()
        r = s.etcdctl("get", "conn/", "--prefix", "--keys-only")
        self.assertOk(r)
        self.assertEqual(len(r.out.split()), 100)


class SmallLimits(h.SharedStoreTestCase):
    store_args = ("--max-txn-ops", "4", "--max-request-bytes", "1024")

    def test_max_txn_ops(self):
        self.assertOk(self.s.etcdctl("txn", input=txn_puts(["a", "b", "c", "d"])))
        r = self.s.etcdctl("txn", input=txn_puts(["a", "b", "c", "d", "e"]))
        self.assertEtcdError(r, TOO_MANY_OPS)
        self.assertEqual(self.s.etcdctl("get", "e").out, "")
        # the limit counts each branch separately
        self.assertOk(self.s.etcdctl("txn", input="\nput a 1\nput b 1\nput c 1\nput d 1\n\n"
                                     "put a 2\nput b 2\nput c 2\nput d 2\n\n"))

    def test_max_request_bytes(self):
        self.assertEqual(self.s.etcdctl("put", "small", "x" * 900).out, "OK\n")
        r = self.s.etcdctl("put", "big", "x" * 2000)
        self.assertEtcdError(r, TOO_LARGE)
        self.assertIn("code = InvalidArgument", r.err)
        self.assertEqual(self.s.etcdctl("get", "big").out, "")
        r = self.s.etcdctl("txn", input="\nput t1 %s\nput t2 %s\n\n\n" % ("a" * 600, "b" * 600))
        self.assertEtcdError(r, TOO_LARGE)


class Quota(h.StoreTestCase):
    # 1 MiB, not less: Bollard's file grows past its data by the pages that
    # commits since the last pinned checkpoint rewrote (checkpoint.c), and
    # with 256 KiB a loaded run reached the quota after only 10 puts.
    QUOTA = 1024 * 1024

    def fill_until_nospace(self, s):
        c = s.client()
        try:
            for i in range(4000):     # 4 MB of values against a 1 MiB quota
                try:
                    c.put("fill/%05d" % i, "v" * 1000)
                except grpc.RpcError as e:
                    self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, e.details())
                    self.assertEqual(e.details(), NOSPACE)
                    return i
            self.fail("no NOSPACE after 4000 puts of 1 kB with --quota-backend-bytes %d"
                      % self.QUOTA)
        finally:
            c.close()

    def member_id(self, s):
        return s.etcdctl("member", "list", "-w", "json").json()["header"]["member_id"]

    def test_nospace_alarm_and_recovery(self):
        s = self.store(extra_args=["--quota-backend-bytes", str(self.QUOTA)])
        self.assertEqual(s.etcdctl("alarm", "list").out, "")
        n = self.fill_until_nospace(s)
        self.assertGreater(n, 10)
        r = s.etcdctl("put", "x", "y")
        self.assertEtcdError(r, NOSPACE)
        self.assertIn("code = ResourceExhausted", r.err)
        alarm = "memberID:%d alarm:NOSPACE \n" % self.member_id(s)
        self.assertEqual(s.etcdctl("alarm", "list").out, alarm)
        # a txn with a put is refused too; reads and deletes still work
        self.assertEtcdError(s.etcdctl("txn", input="\nput x y\n\n\n"), NOSPACE)
        self.assertEqual(s.etcdctl("get", "fill/00000", "--print-value-only").out,
                         "v" * 1000 + "\n")
        self.assertEqual(s.etcdctl("del", "fill/", "--prefix").out, "%d\n" % n)
        st = s.etcdctl("endpoint", "status", "-w", "json").json()[0]["Status"]
        self.assertEqual(st.get("errors"), [alarm.rstrip("\n")])
        # still alarmed after freeing space: the alarm must be disarmed explicitly
        self.assertEtcdError(s.etcdctl("put", "x", "y"), NOSPACE)
        self.assertEqual(s.etcdctl("compaction", str(st["header"]["revision"])).out,
                         "compacted revision %d\n" % st["header"]["revision"])
        self.assertOk(s.etcdctl("defrag"))
        self.assertEqual(s.etcdctl("alarm", "disarm").out, alarm)
        self.assertEqual(s.etcdctl("alarm", "list").out, "")
        self.assertEqual(s.etcdctl("put", "x", "y").out, "OK\n")
        self.assertEqual(s.etcdctl("get", "x", "--print-value-only").out, "y\n")

    def test_nospace_alarm_survives_restart(self):
        s = self.store(extra_args=["--quota-backend-bytes", str(self.QUOTA)])
        self.fill_until_nospace(s)
        alarm = "memberID:%d alarm:NOSPACE \n" % self.member_id(s)
        self.assertIn(s.terminate(), s.clean_exit_codes())
        s.restart()
        self.assertEqual(s.etcdctl("alarm", "list").out, alarm)
        self.assertEtcdError(s.etcdctl("put", "x", "y"), NOSPACE)


class Flags(h.StoreTestCase):
    """etcd's server flags."""

    def test_unknown_flag_is_an_error(self):
        binary = h.store_binary(h.default_impl())
        p = subprocess.run([binary, "--no-such-flag"], capture_output=True, text=True,
                           timeout=15, env=h.clean_env(), cwd="/tmp")
        self.assertNotEqual(p.returncode, 0, "an unknown flag must fail")
        self.assertIn("no-such-flag", p.stdout + p.stderr)

    def test_all_common_flags_accepted(self):
        s = self.store(extra_args=[
            "--quota-backend-bytes", str(64 * 1024 * 1024), "--max-request-bytes", "2000000",
            "--max-txn-ops", "64", "--snapshot-count", "5000", "--heartbeat-interval", "50",
            "--election-timeout", "500", "--auto-compaction-mode", "revision",
            "--auto-compaction-retention", "1000", "--log-level", "warn"])
        self.assertEqual(s.etcdctl("put", "k", "v").out, "OK\n")
        self.assertEtcdError(s.etcdctl("txn", input=txn_puts(["k%d" % i for i in range(65)])),
                             TOO_MANY_OPS)

    def test_default_data_dir(self):
        s = self.store(omit_data_dir=True)
        self.assertEqual(s.etcdctl("put", "k", "v").out, "OK\n")
        self.assertTrue(os.path.isdir(os.path.join(s.tmp, "default.etcd")),
                        "no ./default.etcd: %s" % os.listdir(s.tmp))
        self.assertIn(s.terminate(), s.clean_exit_codes())
        s.restart()
        self.assertEqual(s.etcdctl("get", "k", "--print-value-only").out, "v\n")


if __name__ == "__main__":
    h.main()
