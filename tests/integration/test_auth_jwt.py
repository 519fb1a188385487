#!/usr/bin/python3
"""--auth-token jwt (issue 6), on Debian's etcd 3.4 AND the store under test with the same
key pairs (made at test time with openssl), the same steps and the same expectations:

- a 3-member cluster (RS256): etcdctl --user works through every member; a token's header
  and claims are etcd's ({"alg","typ"}, {"exp","revision","username"}, exp = now + ttl); a
  token minted on one member works on the others and after a member restarts; a token
  openssl signed (nothing of ours) is accepted, with exp in the past it is refused as
  "invalid auth token", as are tampered and foreign-key tokens; once the auth store moves
  on (a role added), a token is "revision of auth store is old";
- one member per signing method (ES256, PS384, HS512, ttl 2s): a token works, then
  expires ("invalid auth token");
- bad --auth-token options stop the member at start with etcd's message.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import storeharness as h  # noqa: E402
from test_auth import ALICE, ROOT, AuthBase, impls  # noqa: E402

INVALID = "etcdserver: invalid auth token"
OLD = "etcdserver: revision of auth store is old"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def parts(token):
    h64, c64, _ = token.split(".")
    return json.loads(unb64(h64)), json.loads(unb64(c64))


class Keys:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bollard-jwt-keys-")

    def openssl(self, *args, input=None):
        p = subprocess.run(["openssl"] + list(args), cwd=self.dir, capture_output=True,
                           input=input, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("openssl %s: %s" % (" ".join(args), p.stderr))
        return p.stdout

    def rsa(self, name):
        self.openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                     "-out", name + ".key")
        self.openssl("pkey", "-in", name + ".key", "-pubout", "-out", name + ".pub")
        return self.path(name + ".pub"), self.path(name + ".key")

    def ec(self, name, curve):
        self.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:" + curve,
                     "-out", name + ".key")
        self.openssl("pkey", "-in", name + ".key", "-pubout", "-out", name + ".pub")
        return self.path(name + ".pub"), self.path(name + ".key")

    def secret(self, name):
        with open(self.path(name), "wb") as f:
            f.write(os.urandom(48))
        return self.path(name)

    def path(self, name):
        return os.path.join(self.dir, name)

    def rs256(self, key, claims):
        """A token signed by openssl itself (RS256: RSASSA-PKCS1-v1_5 over SHA-256)."""
        head = b64(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":"),
                              sort_keys=True).encode())
        body = b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        sig = self.openssl("dgst", "-sha256", "-sign", key,
                           input=("%s.%s" % (head, body)).encode())
        return "%s.%s.%s" % (head, body, b64(sig))

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def jwt_opt(method, pub=None, priv=None, ttl=None):
    o = "jwt,sign-method=" + method
    if pub:
        o += ",pub-key=" + pub
    if priv:
        o += ",priv-key=" + priv
    if ttl:
        o += ",ttl=" + ttl
    return o


class JWTBase(AuthBase):
    @classmethod
    def setUpClass(cls):
        cls.keys = Keys()
        cls.rsa_pub, cls.rsa_key = cls.keys.rsa("rsa")
        cls.other_pub, cls.other_key = cls.keys.rsa("other")

    @classmethod
    def tearDownClass(cls):
        cls.keys.cleanup()

    def login(self, m, name="alice", password="alicepw"):
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        with grpc.insecure_channel(m.endpoint) as ch:
            return rpc_pb2_grpc.AuthStub(ch).Authenticate(
                rpc_pb2.AuthenticateRequest(name=name, password=password), timeout=10).token

    def call(self, m, token, key=b"/app/a", put=False):
        """A Range (or Put) with token: "ok" or (status code name, details)."""
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        with grpc.insecure_channel(m.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            try:
                if put:
                    kv.Put(rpc_pb2.PutRequest(key=key, value=b"v"), timeout=10,
                           metadata=(("token", token),))
                else:
                    kv.Range(rpc_pb2.RangeRequest(key=key), timeout=10,
                             metadata=(("token", token),))
                return "ok"
            except grpc.RpcError as e:
                return (e.code().name, e.details())


class ClusterJWT(JWTBase):
    def check_cluster(self, impl):
        opt = jwt_opt("RS256", self.rsa_pub, self.rsa_key, "10m")
        c = h.Cluster(3, impl=impl, extra_args=["--auth-token", opt, "--heartbeat-interval",
                                                "100", "--election-timeout", "1000"])
        self._stores += c.members
        c.start()
        a, b, d = c.members
        self.setup_users(b)
        for m in c.members:
            self.assertEqual(self.ok(m, *ALICE, "put", "/app/a", m.name), "OK\n")
            self.assertEqual(self.ok(m, *ALICE, "get", "/app/a", "--print-value-only"),
                             "%s\n" % m.name)
        tok = self.login(a)
        hdr, claims = parts(tok)
        self.assertEqual(hdr, {"alg": "RS256", "typ": "JWT"})
        self.assertEqual(sorted(claims), ["exp", "revision", "username"])
        self.assertEqual(claims["username"], "alice")
        self.assertAlmostEqual(claims["exp"], time.time() + 600, delta=30)
        self.assertGreater(claims["revision"], 0)
        # any member verifies it, also after a restart
        for m in c.members:
            self.assertEqual(self.call(m, tok), "ok", m.name)
            self.assertEqual(self.call(m, tok, key=b"/secret"),
                             ("PERMISSION_DENIED", "etcdserver: permission denied"))
        d.terminate()
        d.start()
        self.assertEqual(self.call(d, tok, put=True), "ok")
        # tokens openssl signed with the cluster's key: good, expired; tampered; other key
        good = self.keys.rs256(self.rsa_key, dict(claims, exp=int(time.time()) + 60))
        self.assertEqual(self.call(b, good), "ok")
        expired = self.keys.rs256(self.rsa_key, dict(claims, exp=int(time.time()) - 5))
        foreign = self.keys.rs256(self.other_key, claims)
        h64, c64, s64 = tok.split(".")
        root_claims = b64(json.dumps(dict(claims, username="root"), separators=(",", ":"),
                                     sort_keys=True).encode())
        for bad in (expired, foreign, "%s.%s.%s" % (h64, root_claims, s64),
                    "%s.%s.%s" % (h64, c64, s64[:-4] + ("AAAA" if s64[-4:] != "AAAA" else "BBBB")),
                    "%s.%s." % (h64, c64), "garbage", tok + ".x"):
            for m in (a, d):
                self.assertEqual(self.call(m, bad), ("UNAUTHENTICATED", INVALID), (m.name, bad))
        # the auth store moves on: the token names an old revision
        self.ok(a, *ROOT, "role", "add", "other")
        for m in c.members:
            self.assertEqual(self.call(m, tok, put=True), ("INVALID_ARGUMENT", OLD), m.name)
            self.assertEqual(self.call(m, tok), ("INVALID_ARGUMENT", OLD), m.name)
        self.assertEqual(self.call(d, self.login(d)), "ok")
        return hdr, sorted(claims)

    def test_three_members(self):
        seen = {}
        for impl in impls():
            with self.subTest(impl=impl):
                seen[impl] = self.check_cluster(impl)
        if len(seen) == 2:
            a, b = seen.values()
            self.assertEqual(a, b)


class Methods(JWTBase):
    def check_method(self, impl, method, pub, priv):
        s = h.Store(impl=impl, extra_args=["--auth-token", jwt_opt(method, pub, priv, "2s")])
        self._stores.append(s)
        s.start()
        self.setup_users(s)
        self.assertEqual(self.ok(s, *ALICE, "put", "/app/a", "1"), "OK\n")
        tok = self.login(s)
        self.assertEqual(parts(tok)[0], {"alg": method, "typ": "JWT"})
        self.assertEqual(self.call(s, tok), "ok")
        time.sleep(3.5)   # exp is whole seconds, then checked against the second
        self.assertEqual(self.call(s, tok), ("UNAUTHENTICATED", INVALID))
        # etcdctl logs in again by itself
        self.assertEqual(self.ok(s, *ALICE, "get", "/app/a", "--print-value-only"), "1\n")
        s.terminate()

    def test_methods(self):
        es_pub, es_key = self.keys.ec("es", "P-256")
        ps_pub, ps_key = self.keys.rsa("ps")
        secret = self.keys.secret("hs")
        for method, pub, priv in (("ES256", es_pub, es_key), ("PS384", ps_pub, ps_key),
                                  ("HS512", None, secret)):
            for impl in impls():
                with self.subTest(impl=impl, method=method):
                    self.check_method(impl, method, pub, priv)


class BadOptions(JWTBase):
    """A member with bad --auth-token options does not start; the message is etcd's."""

    def fatal(self, impl, opt):
        out = self.start_fails(["--auth-token", opt], impl=impl)
        # etcd: "C | etcdmain: <msg>"; bollard-store: "F | bollard-store: <msg>"
        for ln in reversed(out.splitlines()):
            for mark in (" C | etcdmain: ", " F | bollard-store: "):
                if mark in ln:
                    return ln.split(mark, 1)[1]
        self.fail("%s: no fatal line in\n%s" % (impl, out[-2000:]))

    def test_bad_options(self):
        es_pub, es_key = self.keys.ec("bad-es", "P-256")
        for opt, want in (
                (jwt_opt("XX256", self.rsa_pub, self.rsa_key), "auth: invalid auth options"),
                (jwt_opt("RS256"), "auth: missing key data"),
                (jwt_opt("RS256", priv=self.keys.path("nonexistent")),
                 "auth: invalid auth options"),
                (jwt_opt("RS256", self.rsa_pub, self.rsa_key, "5x"), "auth: invalid auth options"),
                (jwt_opt("ES256", priv=self.rsa_key), "key is not a valid ECDSA private key"),
                ("jwt,sign-method=RS256,priv-key", "auth: invalid auth options"),
                ("token", "auth: invalid auth options")):
            for impl in impls():
                with self.subTest(impl=impl, opt=opt):
                    self.assertEqual(self.fatal(impl, opt), want)


if __name__ == "__main__":
    h.main()
