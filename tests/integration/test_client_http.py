#!/usr/bin/python3
"""HTTP/1.x on the client URL, beside gRPC on the same port, as etcd 3.4's client port
serves it (cmux): GET /health ({"health":"true"}), GET /version ({"etcdserver":"3.4.23",
"etcdcluster":"3.4.0"}, byte for byte etcd's), GET /metrics (Prometheus text); another
method on /health or /version is 405 with "Allow: GET"; an unknown path 404; several requests
on one kept-alive connection; gRPC clients on the same port unaffected, also while HTTP/1.x
connections come and go. Bollard serves it on its HTTP/2 transport (the default; this test
asks for it), and on --experimental-listen-h2-url. Run by meson with BOLLARD_STORE set;
STORE_IMPL=etcd runs it against etcd 3.4. Prints "N passed, N failed" last."""

import http.client
import json
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402


def request(port, method, path, conn=None):
    """(status, headers, body) of one request; on conn if given (kept open)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        if conn is None:
            c.close()


class ClientPortHTTP(h.SharedStoreTestCase):
    store_args = (["--experimental-client-transport", "h2"]
                  if h.default_impl() == "bollard" else [])

    def test_health_version_metrics(self):
        port = self.s.client_port
        st, hd, body = request(port, "GET", "/health")
        self.assertEqual((st, json.loads(body)), (200, {"health": "true"}))
        st, hd, body = request(port, "GET", "/version")
        self.assertEqual(st, 200)
        self.assertEqual(hd["Content-Type"], "application/json")
        self.assertEqual(body, b'{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}')
        st, hd, body = request(port, "GET", "/metrics")
        self.assertEqual(st, 200)
        self.assertIn(b"\netcd_server_has_leader 1\n", body)

    def test_other_methods_and_paths(self):
        port = self.s.client_port
        for path in ("/health", "/version"):
            st, hd, body = request(port, "POST", path)
            self.assertEqual((st, hd["Allow"]), (405, "GET"), path)
        self.assertEqual(request(port, "GET", "/no/such/path")[0], 404)

    def test_keep_alive_and_grpc_on_the_same_port(self):
        port = self.s.client_port
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for _ in range(5):
                self.assertEqual(request(port, "GET", "/version", conn=c)[0], 200)
                self.assertEqual(request(port, "GET", "/health", conn=c)[0], 200)
        finally:
            c.close()
        errors = []

        def http_clients():
            try:
                for _ in range(100):
                    if request(port, "GET", "/health")[0] != 200:
                        errors.append("health not 200")
            except OSError as e:
                errors.append(repr(e))
        t = threading.Thread(target=http_clients)
        t.start()
        cl = self.s.client(timeout=10)
        try:
            for i in range(100):
                cl.put("mixed/%d" % i, str(i))
        finally:
            t.join()
            cl.close()
        self.assertEqual(errors, [])
        r = self.assertOk(self.s.etcdctl("get", "mixed/", "--prefix", "--keys-only", "-w",
                                         "json"))
        self.assertEqual(r.json()["count"], 100)


class ExtraH2URL(h.StoreTestCase):
    def test_version_on_the_extra_h2_url(self):
        if h.default_impl() != "bollard":
            return   # a Bollard flag: nothing to compare with etcd
        port = h.free_port()
        s = self.store(extra_args=["--experimental-listen-h2-url",
                                   "http://127.0.0.1:%d" % port])
        self.assertEqual(request(port, "GET", "/version")[2],
                         b'{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}')
        self.assertOk(s.etcdctl("put", "k", "v"))


if __name__ == "__main__":
    h.main()
