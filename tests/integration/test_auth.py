#!/usr/bin/python3
"""Auth and role-based access control (issue 6), with etcdctl 3.4 and python3-etcd3.

Every scenario runs against Debian's etcd 3.4 AND the store under test (the same
assertions on both, so they also check that the expectations are etcd's): auth enable
refused without root, users and roles with a prefix permission, a limited user's allowed
and refused reads, writes, txns (refused whole) and watches (refused outside its range),
lease revoke needing write on the lease's keys, wrong passwords, state kept across a
restart, python3-etcd3 with user/password (its token stops working once the user is
deleted), the client certificate's CommonName as the user with --client-cert-auth, and
auth disable. STORE_IMPL=etcd runs the "store under test" side against etcd as well.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import storeharness as h  # noqa: E402
import tlscerts as tls  # noqa: E402

ROOT = ["--user", "root:rootpw"]
ALICE = ["--user", "alice:alicepw"]
DENIED = "Error: etcdserver: permission denied"


def impls():
    return ["etcd", h.default_impl()]


class AuthBase(h.StoreTestCase):
    def ok(self, s, *args, input=None):
        r = s.etcdctl(*args, input=input)
        self.assertEqual(r.rc, 0, "%s: %r" % (s.impl, r))
        return r.out

    def fails(self, s, want, *args, input=None):
        r = s.etcdctl(*args, input=input)
        self.assertNotEqual(r.rc, 0, "%s: %r" % (s.impl, r))
        self.assertIn(want, r.err, "%s: %r" % (s.impl, r))
        return r

    def setup_users(self, s):
        """root, alice with role app (readwrite on prefix /app/), auth enabled."""
        self.fails(s, "Error: etcdserver: root user does not exist", "auth", "enable")
        self.ok(s, "user", "add", "root:rootpw")
        self.ok(s, "user", "add", "alice:alicepw")
        self.ok(s, "role", "add", "app")
        self.ok(s, "role", "grant-permission", "app", "readwrite", "/app/", "--prefix")
        self.ok(s, "user", "grant-role", "alice", "app")
        self.assertEqual(self.ok(s, "auth", "enable"), "Authentication Enabled\n")


class LimitedUser(AuthBase):
    def check_limited_user(self, s):
        self.setup_users(s)
        # no credentials, wrong password, unknown user
        self.fails(s, "Error: etcdserver: user name is empty", "put", "/app/a", "1")
        self.fails(s, "Error: etcdserver: authentication failed, invalid user ID or password",
                   "--user", "alice:nope", "get", "/app/a")
        self.fails(s, "Error: etcdserver: authentication failed, invalid user ID or password",
                   "--user", "mallory:x", "get", "/app/a")
        # allowed reads and writes
        self.assertEqual(self.ok(s, *ALICE, "put", "/app/a", "1"), "OK\n")
        self.assertEqual(self.ok(s, *ALICE, "get", "/app/a"), "/app/a\n1\n")
        self.assertEqual(self.ok(s, *ALICE, "get", "/app/", "--prefix", "--consistency=s",
                                 "--print-value-only"), "1\n")
        self.ok(s, *ALICE, "del", "/app/a")
        # everything else is refused
        self.ok(s, *ROOT, "put", "/secret", "s")
        self.fails(s, DENIED, *ALICE, "put", "/secret", "x")
        self.fails(s, DENIED, *ALICE, "get", "/secret")
        self.fails(s, DENIED, *ALICE, "get", "/secret", "--consistency=s")
        self.fails(s, DENIED, *ALICE, "del", "/secret")
        self.fails(s, DENIED, *ALICE, "get", "/", "--prefix")
        self.fails(s, DENIED, *ALICE, "user", "list")
        self.fails(s, DENIED, *ALICE, "auth", "disable")
        self.assertEqual(self.ok(s, *ROOT, "get", "/secret", "--print-value-only"), "s\n")
        # a txn touching one forbidden key is refused whole
        self.fails(s, DENIED, *ALICE, "txn",
                   input='\nput /app/t1 x\nput /secret y\n\n\n')
        self.fails(s, DENIED, *ALICE, "txn",
                   input='value("/secret") = "s"\n\nput /app/t1 x\n\n\n')
        self.assertEqual(self.ok(s, *ROOT, "get", "/app/t1"), "")
        self.assertEqual(self.ok(s, *ROOT, "get", "/secret", "--print-value-only"), "s\n")
        self.assertIn("SUCCESS", self.ok(s, *ALICE, "txn",
                                         input='version("/app/t1") = "0"\n\nput /app/t1 x\n\n\n'))

    def test_limited_user(self):
        for impl in impls():
            with self.subTest(impl=impl):
                self.check_limited_user(self.store(impl=impl))


class Watches(AuthBase):
    def check_watches(self, s):
        self.setup_users(s)
        # outside the permitted range: canceled by the server at creation
        p = self.bg(s, *ALICE, "watch", "/secret")
        self.assertTrue(p.wait_for(lambda lines: "permission denied" in p.out() + p.err(), timeout=15),
                        "%s: %s / %s" % (s.impl, p.out(), p.err()))
        self.assertNotEqual(p.wait(timeout=15), 0)
        p = self.bg(s, *ALICE, "watch", "/", "--prefix")
        self.assertTrue(p.wait_for(lambda lines: "permission denied" in p.out() + p.err(), timeout=15))
        # inside it: events arrive
        p = self.bg(s, *ALICE, "watch", "/app/", "--prefix")
        deadline = time.monotonic() + 15
        while "/app/w" not in p.out() and time.monotonic() < deadline:
            self.ok(s, *ROOT, "put", "/app/w", "seen")
            time.sleep(0.3)
        self.assertIn("PUT\n/app/w\nseen", p.out(), s.impl)

    def test_watches(self):
        for impl in impls():
            with self.subTest(impl=impl):
                self.check_watches(self.store(impl=impl))


class Leases(AuthBase):
    def lease_id(self, out):
        return out.split()[1]   # "lease 694d... granted with TTL(100s)"

    def check_leases(self, s):
        self.setup_users(s)
        other = self.lease_id(self.ok(s, *ROOT, "lease", "grant", "100"))
        self.ok(s, *ROOT, "put", "/secret", "s", "--lease=" + other)
        # revoking deletes the lease's keys: write permission on each is needed
        self.fails(s, "Error: failed to revoke lease (etcdserver: permission denied)", *ALICE,
                   "lease", "revoke", other)
        # attaching a key to a lease whose keys one cannot write is refused too
        self.fails(s, DENIED, *ALICE, "put", "/app/l", "x", "--lease=" + other)
        mine = self.lease_id(self.ok(s, *ALICE, "lease", "grant", "100"))
        self.ok(s, *ALICE, "put", "/app/l", "x", "--lease=" + mine)
        self.assertIn("revoked", self.ok(s, *ALICE, "lease", "revoke", mine))
        self.assertEqual(self.ok(s, *ALICE, "get", "/app/l"), "")
        self.assertIn("revoked", self.ok(s, *ROOT, "lease", "revoke", other))

    def test_leases(self):
        for impl in impls():
            with self.subTest(impl=impl):
                self.check_leases(self.store(impl=impl))


class Restart(AuthBase):
    def check_restart(self, s):
        self.setup_users(s)
        self.ok(s, *ALICE, "put", "/app/k", "v")
        s.terminate()
        s.start()
        self.fails(s, "Error: etcdserver: user name is empty", "get", "/app/k")
        self.assertEqual(self.ok(s, *ALICE, "get", "/app/k", "--print-value-only"), "v\n")
        self.fails(s, DENIED, *ALICE, "put", "/x", "v")
        self.assertEqual(self.ok(s, *ROOT, "user", "list"), "alice\nroot\n")
        self.assertIn("[/app/, /app0)", self.ok(s, *ROOT, "role", "get", "app"))
        self.assertEqual(self.ok(s, *ROOT, "auth", "disable"), "Authentication Disabled\n")
        s.terminate()
        s.start()
        self.assertEqual(self.ok(s, "get", "/app/k", "--print-value-only"), "v\n")

    def test_restart_keeps_auth(self):
        for impl in impls():
            with self.subTest(impl=impl):
                self.check_restart(self.store(impl=impl))


class ClusterAuth(AuthBase):
    """Three members: Auth calls and a limited user's writes sent to followers are
    forwarded with the caller's identity and checked at apply, reads are checked where
    they are served, and every member knows every login."""

    def check_cluster(self, impl):
        c = h.Cluster(3, impl=impl, extra_args=["--heartbeat-interval", "100",
                                                "--election-timeout", "1000"])
        self._stores += c.members
        c.start()
        lead = c.leader()
        f1, f2 = [m for m in c.members if m is not lead]
        self.setup_users(f1)                       # every Auth call through a follower
        # the answer names the member that served it, as etcd's
        st = c.status(f1)
        out = self.ok(f1, *ROOT, "role", "add", "other", "-w", "json")
        self.assertEqual(json.loads(out)["header"]["member_id"], st["member_id"])
        self.assertEqual(self.ok(f2, *ALICE, "put", "/app/a", "1"), "OK\n")
        self.fails(f2, DENIED, *ALICE, "put", "/secret", "x")
        self.fails(f2, DENIED, *ALICE, "txn", input="\nput /app/b 1\nput /secret 1\n\n\n")
        self.fails(f1, DENIED, *ALICE, "get", "/secret")
        self.fails(f1, DENIED, *ALICE, "user", "list")
        for m in c.members:
            self.assertEqual(self.ok(m, *ALICE, "get", "/app/a", "--print-value-only"), "1\n")
            self.assertEqual(self.ok(m, *ROOT, "get", "/app/b"), "")
        self.assertEqual(self.ok(lead, *ROOT, "user", "list"), "alice\nroot\n")
        self.check_no_internal_on_client_port(c)
        self.check_watch_on_lagging_follower(c, lead, f2)
        # a token from the leader works on a follower at once (the follower waits for
        # the login's entry, as etcd)
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        with grpc.insecure_channel(lead.endpoint) as lc, \
                grpc.insecure_channel(f2.endpoint) as fc:
            auth, kv = rpc_pb2_grpc.AuthStub(lc), rpc_pb2_grpc.KVStub(fc)
            for i in range(20):
                tok = auth.Authenticate(rpc_pb2.AuthenticateRequest(
                    name="alice", password="alicepw"), timeout=10).token
                kv.Put(rpc_pb2.PutRequest(key=b"/app/t%d" % i, value=b"v"), timeout=10,
                       metadata=(("token", tok),))
            with self.assertRaises(grpc.RpcError) as e:   # a login never made:
                kv.Put(rpc_pb2.PutRequest(key=b"/app/x", value=b"v"), timeout=10,
                       metadata=(("token", ("A" if tok[0] != "A" else "B") + tok[1:]),))
            self.assertEqual(e.exception.details(), "etcdserver: invalid auth token")

    def check_watch_on_lagging_follower(self, c, lead, f):
        """A watch created on a follower with a token of a login that follower has not
        applied (nor received: it is stopped while the leader takes the login) waits for
        that login, as etcd's simple tokens do, and is then created and delivers."""
        import queue
        import signal
        import threading
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        f.proc.send_signal(signal.SIGSTOP)
        try:
            with grpc.insecure_channel(lead.endpoint) as lc:
                tok = rpc_pb2_grpc.AuthStub(lc).Authenticate(rpc_pb2.AuthenticateRequest(
                    name="alice", password="alicepw"), timeout=10).token
            got, done, calls = queue.Queue(), threading.Event(), []

            def reqs():
                yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
                    key=b"/app/lag"))
                done.wait(30)

            def watch():
                with grpc.insecure_channel(f.endpoint) as fc:
                    call = rpc_pb2_grpc.WatchStub(fc).Watch(reqs(), metadata=(("token", tok),),
                                                            timeout=30)
                    calls.append(call)
                    try:
                        for r in call:
                            got.put(r)
                    except grpc.RpcError as e:
                        got.put(e)
            t = threading.Thread(target=watch, daemon=True)
            t.start()
            time.sleep(0.5)    # the create waits in the stopped member's socket
        finally:
            f.proc.send_signal(signal.SIGCONT)
        try:
            r = got.get(timeout=15)
            self.assertNotIsInstance(r, grpc.RpcError, "%s: %r" % (f.impl, r))
            self.assertTrue(r.created, r)
            self.assertFalse(r.canceled, r)
            self.assertEqual(r.cancel_reason, "")
            self.ok(lead, *ROOT, "put", "/app/lag", "x")
            r = got.get(timeout=15)
            self.assertEqual([e.kv.key for e in r.events], [b"/app/lag"], r)
        finally:
            done.set()
            for call in calls:
                call.cancel()
            t.join(40)

    def check_no_internal_on_client_port(self, c):
        """Members' own service (bollard.Internal: forwarded writes stating their user and
        auth revision) is not on the client port: a client forging root's identity gets
        UNIMPLEMENTED from every member, as from etcd, and its write is not made."""
        import grpc
        from etcd3.etcdrpc import rpc_pb2

        def varint(v):
            out = b""
            while True:
                out += bytes([(v & 0x7f) | (0x80 if v > 0x7f else 0)])
                v >>= 7
                if not v:
                    return out

        def field(num, wire, payload):
            return varint(num << 3 | wire) + (varint(payload) if wire == 0 else
                                              varint(len(payload)) + payload)
        methods = ["ReadIndex", "LeaseKeepAlive", "LeaseTimeToLive", "LeaseLeases", "Member",
                   "MemberStatus"]
        for rev in [2**64 - 1] + list(range(1, 40)):   # the member's own, any auth revision
            put = rpc_pb2.PutRequest(key=b"/forged", value=b"%d" % rev).SerializeToString()
            req = field(1, 0, 1) + field(2, 2, put) + field(21, 2, b"root") + field(22, 0, rev)
            methods.append(("Propose", field(1, 2, req)))
        for m in c.members:
            with grpc.insecure_channel(m.endpoint) as ch:
                for meth in methods:
                    name, body = meth if isinstance(meth, tuple) else (meth, b"")
                    call = ch.unary_unary("/bollard.Internal/" + name)
                    with self.assertRaises(grpc.RpcError, msg="%s %s" % (m.impl, name)) as e:
                        call(body, timeout=10)
                    self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED,
                                     "%s %s: %r" % (m.impl, name, e.exception))
        for m in c.members:
            self.assertEqual(self.ok(m, *ROOT, "get", "/forged"), "")

    def test_three_members(self):
        for impl in impls():
            with self.subTest(impl=impl):
                self.check_cluster(impl)


class CertCommonName(AuthBase):
    """--client-cert-auth: with no token, the certificate's CommonName is the user."""

    @classmethod
    def setUpClass(cls):
        cls.certs = tls.CertDir("bollard-auth-certs-")
        cls.certs.client_tls_set(clients=("alice", "root"))

    @classmethod
    def tearDownClass(cls):
        cls.certs.cleanup()

    def check_python(self, impl):
        """python3-etcd3 with user/password (over TLS: grpc sends the token as call
        credentials only on a secure channel)."""
        import etcd3
        import grpc
        c = self.certs
        s = self.store(impl=impl, client_scheme="https", extra_args=c.server_args(),
                       tls_client_args=c.client_args())
        ctl = lambda *a: h.run_etcdctl(s.client_url, c.client_args() + list(a))  # noqa
        for args in (["user", "add", "root:rootpw"], ["user", "add", "alice:alicepw"],
                     ["role", "add", "app"],
                     ["role", "grant-permission", "app", "readwrite", "/app/", "--prefix"],
                     ["user", "grant-role", "alice", "app"], ["auth", "enable"]):
            r = ctl(*args)
            self.assertEqual(r.rc, 0, r)
        cli = etcd3.client(host="127.0.0.1", port=s.client_port, timeout=10, user="alice",
                           password="alicepw", ca_cert=c.path("ca.pem"))
        cli.put("/app/py", "1")
        self.assertEqual(cli.get("/app/py")[0], b"1")
        with self.assertRaises(grpc.RpcError) as e:
            cli.put("/secret", "x")
        self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(e.exception.details(), "etcdserver: permission denied")
        with self.assertRaises(Exception) as e:
            etcd3.client(host="127.0.0.1", port=s.client_port, timeout=10, user="alice",
                         password="wrong", ca_cert=c.path("ca.pem"))
        self.assertIn("authentication failed, invalid user ID or password", str(e.exception))
        # the token dies with its user
        r = ctl("--user", "root:rootpw", "user", "delete", "alice")
        self.assertEqual(r.rc, 0, r)
        with self.assertRaises(grpc.RpcError) as e:
            cli.get("/app/py")
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(e.exception.details(), "etcdserver: invalid auth token")
        cli.close()

    def test_python_etcd3(self):
        for impl in impls():
            with self.subTest(impl=impl):
                self.check_python(impl)

    def check_cn(self, impl):
        c = self.certs
        s = self.store(impl=impl, client_scheme="https", extra_args=c.server_args(mtls=True),
                       tls_client_args=c.client_args("root"))
        ctl = lambda cn, *a: h.run_etcdctl(s.client_url, c.client_args(cn) + list(a))  # noqa
        for args in (["user", "add", "root:rootpw"], ["user", "add", "alice:alicepw"],
                     ["role", "add", "app"],
                     ["role", "grant-permission", "app", "readwrite", "/app/", "--prefix"],
                     ["user", "grant-role", "alice", "app"], ["auth", "enable"]):
            r = ctl("root", *args)
            self.assertEqual(r.rc, 0, r)
        r = ctl("alice", "put", "/app/cn", "v")
        self.assertEqual((r.rc, r.out), (0, "OK\n"), r)
        r = ctl("alice", "put", "/other", "v")
        self.assertNotEqual(r.rc, 0)
        self.assertIn(DENIED, r.err)
        r = ctl("root", "put", "/other", "v")       # CN root: the root role
        self.assertEqual(r.rc, 0, r)
        r = ctl("alice", "user", "list")
        self.assertIn(DENIED, r.err)

    def test_common_name_is_the_user(self):
        for impl in impls():
            with self.subTest(impl=impl):
                self.check_cn(impl)


if __name__ == "__main__":
    h.main()
