#!/usr/bin/python3
"""etcd's gRPC gateway on the client URL (HTTP/JSON under /v3/, as `curl -X POST
http://127.0.0.1:2379/v3/kv/put -d '{"key":"Zm9v","value":"YmFy"}'` uses it): the KV, lease,
cluster, maintenance and auth calls as JSON in and out, in etcd 3.4's format (proto field
names, 64-bit integers as strings, bytes as base64, defaults left out); errors as
grpc-gateway's {"error","message","code"} with the HTTP status Debian's etcd 3.4.23 gives
each gRPC code (400, 404, 412...); /v3beta/ as /v3/; 404 for an unknown path, 405 for
another method than POST; the Authorization header as the auth token. Watch, LeaseKeepAlive
and Snapshot (streams) are not served by Bollard's gateway and not tested here.

Run by meson with BOLLARD_STORE set; STORE_IMPL=etcd runs it against etcd 3.4 (which the
expectations were taken from). Prints "N passed, N failed" last."""

import base64
import http.client
import json
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s):
    return base64.b64decode(s)


class Gateway(h.SharedStoreTestCase):
    store_args = (["--experimental-client-transport", "h2"]
                  if h.default_impl() == "bollard" else [])

    def post(self, path, body=None, raw=None, headers=None, method="POST"):
        """(HTTP status, decoded JSON or the text) of one request."""
        c = http.client.HTTPConnection("127.0.0.1", self.s.client_port, timeout=10)
        try:
            data = raw if raw is not None else (json.dumps(body) if body is not None else None)
            c.request(method, path, body=data, headers=headers or {})
            r = c.getresponse()
            text = r.read().decode()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text
        finally:
            c.close()

    def ok(self, path, body=None, **kw):
        st, out = self.post(path, body, **kw)
        self.assertEqual(st, 200, (path, out))
        return out

    def error(self, path, body, status, code, msg):
        st, out = self.post(path, body)
        self.assertEqual((st, out), (status, {"error": msg, "message": msg, "code": code}), path)

    def test_put_range_delete(self):
        p = self.id().rsplit(".", 1)[-1] + "/"
        r = self.ok("/v3/kv/put", {"key": b64(p + "a"), "value": b64("1")})
        hdr = r["header"]
        self.assertEqual(sorted(hdr), ["cluster_id", "member_id", "raft_term", "revision"])
        self.assertTrue(all(isinstance(v, str) for v in hdr.values()), hdr)   # 64-bit: strings
        rev = int(hdr["revision"])
        self.assertEqual(set(r), {"header"})   # prev_kv absent: left out
        self.ok("/v3/kv/put", {"key": b64(p + "b"), "value": b64(b"\xff\x00")})
        r = self.ok("/v3/kv/range", {"key": b64(p + "a")})
        self.assertEqual(r["count"], "1")
        self.assertEqual(r["kvs"], [{"key": b64(p + "a"), "create_revision": str(rev),
                                     "mod_revision": str(rev), "version": "1",
                                     "value": b64("1")}])
        # a prefix, lowerCamel names, enums by name, limit as a number
        r = self.ok("/v3/kv/range", {"key": b64(p), "rangeEnd": b64(p[:-1] + "0"),
                                     "sort_order": "DESCEND", "sort_target": "KEY", "limit": 1,
                                     "keys_only": True})
        self.assertEqual((r["count"], r["more"]), ("2", True))
        self.assertEqual(r["kvs"], [{"key": b64(p + "b"), "create_revision": str(rev + 1),
                                     "mod_revision": str(rev + 1), "version": "1"}])
        self.assertEqual(unb64(self.ok("/v3/kv/range", {"key": b64(p + "b")})["kvs"][0]["value"]),
                         b"\xff\x00")
        self.assertNotIn("kvs", self.ok("/v3/kv/range", {"key": b64(p + "none")}))
        r = self.ok("/v3beta/kv/deleterange", {"key": b64(p + "a"), "prev_kv": True})
        self.assertEqual((r["deleted"], r["prev_kvs"][0]["value"]), ("1", b64("1")))
        r = self.assertOk(self.s.etcdctl("get", p + "b", "-w", "json"))   # as gRPC sees it
        self.assertEqual(unb64(r.json()["kvs"][0]["value"]), b"\xff\x00")

    def test_txn(self):
        k = b64("txn/k")
        self.ok("/v3/kv/put", {"key": k, "value": b64("bar")})
        body = {"compare": [{"target": "VALUE", "key": k, "result": "EQUAL", "value": b64("bar")}],
                "success": [{"request_put": {"key": k, "value": b64("baz")}},
                            {"requestRange": {"key": k}}],
                "failure": [{"request_range": {"key": k}}]}
        r = self.ok("/v3/kv/txn", body)
        self.assertTrue(r["succeeded"])
        put, rng = r["responses"]
        self.assertEqual(list(put), ["response_put"])
        self.assertEqual(list(put["response_put"]["header"]), ["revision"])
        self.assertEqual(rng["response_range"]["kvs"][0]["value"], b64("baz"))
        r = self.ok("/v3/kv/txn", body)   # the value is baz now: the failure branch
        self.assertNotIn("succeeded", r)  # false: left out
        self.assertEqual(r["responses"][0]["response_range"]["count"], "1")

    def test_leases(self):
        r = self.ok("/v3/lease/grant", {"TTL": "60"})
        lid = r["ID"]
        self.assertEqual(r["TTL"], "60")
        self.ok("/v3/kv/put", {"key": b64("lease/k"), "value": b64("v"), "lease": lid})
        r = self.ok("/v3/kv/lease/timetolive", {"ID": lid, "keys": True})
        self.assertEqual((r["ID"], r["grantedTTL"], r["keys"]), (lid, "60", [b64("lease/k")]))
        self.assertIn(lid, [x["ID"] for x in self.ok("/v3/lease/leases", {})["leases"]])
        self.ok("/v3/kv/lease/revoke", {"ID": lid})
        self.assertNotIn("kvs", self.ok("/v3/kv/range", {"key": b64("lease/k")}))
        self.error("/v3/lease/revoke", {"ID": lid}, 404, 5,
                   "etcdserver: requested lease not found")

    def test_cluster_and_maintenance(self):
        ms = self.ok("/v3/cluster/member/list", {})["members"]
        self.assertEqual(len(ms), 1)
        self.assertEqual(ms[0]["clientURLs"], [self.s.client_url])
        self.assertEqual(sorted(ms[0]), ["ID", "clientURLs", "name", "peerURLs"])
        st = self.ok("/v3/maintenance/status", {})
        self.assertEqual(st["version"], "3.4.23")
        self.assertEqual(st["leader"], ms[0]["ID"])
        self.assertGreater(int(st["dbSize"]), 0)
        self.assertGreater(int(st["raftIndex"]), 0)
        self.assertIsInstance(self.ok("/v3/maintenance/hash", {})["hash"], int)   # Hash
        self.assertNotIn("alarms", self.ok("/v3/maintenance/alarm", {}))

    def test_errors_as_etcd_gives_them(self):
        key_missing = "etcdserver: key is not provided"
        self.error("/v3/kv/put", {"key": ""}, 400, 3, key_missing)
        self.error("/v3/kv/range", None, 400, 3, key_missing)   # no body: the empty request
        self.error("/v3/kv/put", {"key": b64("k"), "lease": "12345"}, 404, 5,
                   "etcdserver: requested lease not found")
        self.error("/v3/kv/compaction", {"revision": "1000000"}, 400, 11,
                   "etcdserver: mvcc: required revision is a future revision")
        mid = self.ok("/v3/cluster/member/list", {})["members"][0]["ID"]
        self.error("/v3/cluster/member/promote", {"ID": mid}, 412, 9,
                   "etcdserver: can only promote a learner member")
        self.error("/v3/auth/authenticate", {"name": "root", "password": "x"}, 412, 9,
                   "etcdserver: authentication is not enabled")
        # undecodable JSON: InvalidArgument (Go's parser words its message otherwise)
        for raw in ('{"key": "Zm9v"', '{"limit": "x"}', '{"key": 5}'):
            st, out = self.post("/v3/kv/range", raw=raw)
            self.assertEqual((st, out["code"]), (400, 3), raw)
            self.assertEqual(out["error"], out["message"])
        # unknown fields are skipped, as grpc-gateway's jsonpb does
        self.ok("/v3/kv/range", {"key": b64("k"), "no_such_field": [1, 2]})

    def test_paths_and_methods(self):
        st, out = self.post("/v3/kv/nothing", {})
        self.assertEqual(st, 404)
        st, out = self.post("/v3/kv/range", method="GET")
        self.assertEqual(st, 405)
        self.assertEqual(self.post("/v3beta/kv/range", {"key": b64("k")})[0], 200)
        # etcd's CORS headers (its default --cors "*")
        c = http.client.HTTPConnection("127.0.0.1", self.s.client_port, timeout=10)
        try:
            c.request("POST", "/v3/kv/range", body=json.dumps({"key": b64("k")}))
            r = c.getresponse()
            r.read()
            self.assertEqual((r.getheader("Access-Control-Allow-Origin"),
                              r.getheader("Access-Control-Allow-Headers")),
                             ("*", "accept, content-type, authorization"))
        finally:
            c.close()
        if self.s.impl == "bollard":
            # streams are not served by Bollard's gateway (etcd streams them as JSON lines)
            for path in ("/v3/watch", "/v3/lease/keepalive", "/v3/maintenance/snapshot"):
                st, out = self.post(path, {})
                self.assertEqual((st, out["code"]), (501, 12), path)


class GatewayAuth(h.StoreTestCase):
    def test_token_in_the_authorization_header(self):
        s = self.store(extra_args=["--experimental-client-transport", "h2"]
                       if h.default_impl() == "bollard" else [])
        for args in (["user", "add", "root:pw"], ["role", "add", "root"],
                     ["user", "grant-role", "root", "root"], ["auth", "enable"]):
            self.assertOk(s.etcdctl(*args))
        g = Gateway.post.__get__(type("G", (), {"s": s})())
        st, out = g("/v3/auth/authenticate", {"name": "root", "password": "pw"})
        self.assertEqual(st, 200, out)
        token = out["token"]
        st, out = g("/v3/kv/put", {"key": b64("a"), "value": b64("1")},
                    headers={"Authorization": token})
        self.assertEqual(st, 200, out)
        st, out = g("/v3/kv/range", {"key": b64("a")}, headers={"Authorization": token})
        self.assertEqual((st, out["kvs"][0]["value"]), (200, b64("1")))
        st, out = g("/v3/kv/range", {"key": b64("a")})
        self.assertEqual((st, out["code"], out["error"]),
                         (400, 3, "etcdserver: user name is empty"))
        st, out = g("/v3/kv/range", {"key": b64("a")}, headers={"Authorization": "bogus"})
        self.assertEqual((st, out["code"]), (401, 16))
        self.assertEqual(out["error"], "etcdserver: invalid auth token")


class GatewayLifetime(h.StoreTestCase):
    """Clients that leave before their answer, and SIGTERM with calls in flight: the store
    stays up, then exits cleanly (a sanitized build checks that nothing leaked)."""

    def test_clients_leave_and_sigterm_with_calls_in_flight(self):
        s = self.store(extra_args=["--experimental-client-transport", "h2"]
                       if h.default_impl() == "bollard" else [])
        body = json.dumps({"key": b64("gone"), "value": b64("x" * 1000)}).encode()
        req = (b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
               % len(body)) + body
        for _ in range(200):   # each connection closed as soon as its request went
            so = socket.create_connection(("127.0.0.1", s.client_port), timeout=5)
            so.sendall(req)
            so.close()
        self.assertOk(s.etcdctl("put", "alive", "1"))
        stop = threading.Event()
        answered = []

        def writer():
            while not stop.is_set():
                try:
                    c = http.client.HTTPConnection("127.0.0.1", s.client_port, timeout=10)
                    c.request("POST", "/v3/kv/put", body=body)
                    answered.append(c.getresponse().status)
                    c.close()
                except OSError:
                    return
        ts = [threading.Thread(target=writer) for _ in range(4)]
        for t in ts:
            t.start()
        h.wait_until(lambda: len(answered) >= 50, 30, "gateway puts answered")
        rc = s.terminate(timeout=20)
        stop.set()
        for t in ts:
            t.join()
        self.assertIsNotNone(rc, "no exit within 20 s of SIGTERM with gateway calls in flight")
        self.assertIn(rc, s.clean_exit_codes(), s.log_tail())
        self.assertEqual(set(answered) - {200, 503}, set())


if __name__ == "__main__":
    h.main()
