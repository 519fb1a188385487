#!/usr/bin/python3
"""gRPC's health checking service (grpc.health.v1.Health) on the client port, as etcd 3.4
registers grpc-go's health server beside its own services (grpc_health_probe, Kubernetes'
gRPC probes and load balancers use it): Check of the overall service "" answers SERVING and
of any other name Not Found "unknown service"; Watch sends SERVING (SERVICE_UNKNOWN for
another name), then nothing, and stays open until the client leaves; a store with one open
still stops cleanly on SIGTERM. (A learner refuses both: test_cluster_ops.py LearnerTest.)

Both Bollard client transports. Messages are encoded by hand: Debian's python3-grpcio has no
health stubs. Run by meson with BOLLARD_STORE set; STORE_IMPL=etcd runs it against etcd 3.4.
Prints "N passed, N failed" last."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

import grpc  # noqa: E402

CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"
SERVING = b"\x08\x01"          # HealthCheckResponse{status: SERVING}
SERVICE_UNKNOWN = b"\x08\x03"  # HealthCheckResponse{status: SERVICE_UNKNOWN}


def request(service):
    """HealthCheckRequest{service} (field 1, a string)."""
    s = service.encode()
    return b"\x0a" + bytes([len(s)]) + s if s else b""


class Health(h.StoreTestCase):
    def stores(self):
        """A store per client transport (Bollard's two; etcd's one)."""
        transports = ("h2", "grpc-core") if h.default_impl() == "bollard" else (None,)
        for t in transports:
            yield self.store(extra_args=["--experimental-client-transport", t] if t else [])

    def test_check(self):
        for s in self.stores():
            with s.grpc_channel() as ch:
                check = ch.unary_unary(CHECK)
                self.assertEqual(check(b"", timeout=5), SERVING)
                self.assertEqual(check(request(""), timeout=5), SERVING)
                for name in ("etcdserverpb.KV", "grpc.health.v1.Health"):
                    with self.assertRaises(grpc.RpcError) as e:
                        check(request(name), timeout=5)
                    self.assertEqual((e.exception.code(), e.exception.details()),
                                     (grpc.StatusCode.NOT_FOUND, "unknown service"), name)
            self.assertIn(s.terminate(), s.clean_exit_codes())

    def test_watch_stays_open_until_the_client_leaves(self):
        for s in self.stores():
            with s.grpc_channel() as ch:
                watch = ch.unary_stream(WATCH)
                for _ in range(20):   # each cancelled: nothing kept (ASan checks at exit)
                    for service, first in (("", SERVING), ("nope", SERVICE_UNKNOWN)):
                        it = watch(request(service), timeout=60)
                        self.assertEqual(next(it), first, service)
                        it.cancel()
                it = watch(b"", timeout=60)
                self.assertEqual(next(it), SERVING)
                time.sleep(1.0)
                self.assertTrue(it.is_active())
                it.cancel()
                with self.assertRaises(grpc.RpcError) as e:   # and nothing more was sent
                    next(it)
                self.assertEqual(e.exception.code(), grpc.StatusCode.CANCELLED)
                self.assertEqual(ch.unary_unary(CHECK)(b"", timeout=5), SERVING)
            self.assertIn(s.terminate(), s.clean_exit_codes())

    def test_sigterm_with_a_watch_open(self):
        for s in self.stores():
            ch = s.grpc_channel()
            try:
                it = ch.unary_stream(WATCH)(b"", timeout=60)
                self.assertEqual(next(it), SERVING)
                if s.impl == "etcd":
                    # etcd 3.4 does not exit on SIGTERM with a stream open (gRPC's
                    # GracefulStop waits for it), as test_errors.py notes
                    it.cancel()
                rc = s.terminate(timeout=20)
                self.assertIsNotNone(rc, "no exit within 20 s of SIGTERM with a Watch open")
                self.assertIn(rc, s.clean_exit_codes(), s.log_tail())
                if s.impl == "bollard":
                    with self.assertRaises(grpc.RpcError) as e:
                        next(it)
                    self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
            finally:
                ch.close()


if __name__ == "__main__":
    h.main()
