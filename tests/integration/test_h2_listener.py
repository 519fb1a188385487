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
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
os.environ.pop("BOLLARD_CLIENT_H2", None)  # this test names both ports itself
# compared with the gRPC C core on the client URLs (the rest of the suite runs them on h2)
os.environ["BOLLARD_CLIENT_TRANSPORT"] = "grpc-core"
import h2frames as h2f  # noqa: E402
import storeharness as h  # noqa: E402

import etcd3  # noqa: E402
import grpc  # noqa: E402
from etcd3.etcdrpc import rpc_pb2  # noqa: E402

PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"

# Every unary method of etcd's services with requests that etcd refuses or that leave the
# store as it was: (method, request); each also gets an undecodable request.
R = rpc_pb2


class Raw:
    """A request python3-etcd3's protos lack, as bytes."""

    def __init__(self, data):
        self.data = data

    def SerializeToString(self):
        return self.data


UNARY_CASES = [
    ("KV/Range", R.RangeRequest(key=b"")),
    ("KV/Range", R.RangeRequest(key=b"x", revision=999999)),
    ("KV/Put", R.PutRequest(key=b"")),
    ("KV/DeleteRange", R.DeleteRangeRequest(key=b"")),
    ("KV/DeleteRange", R.DeleteRangeRequest(key=b"h2-absent")),
    ("KV/Txn", R.TxnRequest(success=[R.RequestOp(request_put=R.PutRequest(key=b""))])),
    ("KV/Txn", R.TxnRequest(success=[R.RequestOp(request_put=R.PutRequest(key=b"d", value=b"1")),
                                     R.RequestOp(request_put=R.PutRequest(key=b"d"))])),
    ("KV/Compact", R.CompactionRequest(revision=999999)),
    ("Maintenance/Alarm", R.AlarmRequest(action=R.AlarmRequest.GET)),
    ("Maintenance/Hash", R.HashRequest()),
    ("Maintenance/HashKV", R.HashKVRequest(revision=999999)),
    ("Maintenance/MoveLeader", R.MoveLeaderRequest(targetID=12345)),
    ("Maintenance/Defragment", R.DefragmentRequest()),
    ("Cluster/MemberList", R.MemberListRequest()),
    ("Cluster/MemberAdd", R.MemberAddRequest(peerURLs=["not a url"])),
    ("Cluster/MemberRemove", R.MemberRemoveRequest(ID=12345)),
    ("Cluster/MemberUpdate", R.MemberUpdateRequest(ID=12345, peerURLs=["http://127.0.0.1:1"])),
    ("Cluster/MemberPromote", Raw(b"\x08\xb9\x60")),  # ID 12345
    ("Auth/AuthDisable", R.AuthDisableRequest()),
    ("Auth/Authenticate", R.AuthenticateRequest(name="x", password="y")),
    ("Auth/UserAdd", R.AuthUserAddRequest(name="")),
    ("Auth/UserGet", R.AuthUserGetRequest(name="nobody")),
    ("Auth/UserList", R.AuthUserListRequest()),
    ("Auth/UserDelete", R.AuthUserDeleteRequest(name="nobody")),
    ("Auth/UserChangePassword", R.AuthUserChangePasswordRequest(name="nobody", password="p")),
    ("Auth/UserGrantRole", R.AuthUserGrantRoleRequest(user="nobody", role="r")),
    ("Auth/UserRevokeRole", R.AuthUserRevokeRoleRequest(name="nobody", role="r")),
    ("Auth/RoleAdd", R.AuthRoleAddRequest(name="")),
    ("Auth/RoleGet", R.AuthRoleGetRequest(role="nobody")),
    ("Auth/RoleList", R.AuthRoleListRequest()),
    ("Auth/RoleDelete", R.AuthRoleDeleteRequest(role="nobody")),
    ("Auth/RoleGrantPermission", R.AuthRoleGrantPermissionRequest(name="nobody")),
    ("Auth/RoleRevokePermission", R.AuthRoleRevokePermissionRequest(role="nobody", key=b"k")),
    ("Lease/LeaseRevoke", R.LeaseRevokeRequest(ID=999)),
    ("Lease/LeaseTimeToLive", R.LeaseTimeToLiveRequest(ID=999)),
    ("Lease/LeaseLeases", R.LeaseLeasesRequest()),
    ("Lease/LeaseGrant", R.LeaseGrantRequest(TTL=60, ID=-5)),
]


def raw_call(endpoint, method, payload, timeout=10, metadata=None):
    """A unary call with raw request bytes: (status code, details, response bytes)."""
    with grpc.insecure_channel(endpoint) as ch:
        f = ch.unary_unary(method, request_serializer=lambda b: b,
                           response_deserializer=lambda b: b)
        try:
            return grpc.StatusCode.OK, "", f(payload, timeout=timeout, metadata=metadata)
        except grpc.RpcError as e:
            return e.code(), e.details(), None


def without_header(method, data):
    """A response's message with its header (revision, raft term) cleared."""
    name = method.split("/")[-1]
    name = {"Compact": "Compaction", "Authenticate": "Authenticate"}.get(name, name)
    for cand in (name + "Response", "Auth" + name + "Response"):
        cls = getattr(rpc_pb2, cand, None)
        if cls is not None:
            m = cls.FromString(data)
            m.ClearField("header")
            return m
    raise KeyError(name)


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
        preface, settings = h2f.PREFACE, h2f.SETTINGS_EMPTY
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
        a = raw_call(self.h2, "/etcdserverpb.KV/Nope", b"")
        b = raw_call(self.s.endpoint, "/etcdserverpb.KV/Nope", b"")
        self.assertEqual(a[0], grpc.StatusCode.UNIMPLEMENTED)
        self.assertEqual(a[:2], b[:2])

    def test_every_unary_method_as_grpc_port(self):
        for method, req in UNARY_CASES:
            path = "/etcdserverpb." + method
            for payload in (req.SerializeToString(), b"\xff\xff\xff"):
                a = raw_call(self.h2, path, payload)
                b = raw_call(self.s.endpoint, path, payload)
                self.assertEqual(a[:2], b[:2], (method, payload[:20]))
                if a[0] == grpc.StatusCode.OK and method not in ("Maintenance/Hash",):
                    self.assertEqual(without_header(path, a[2]), without_header(path, b[2]),
                                     method)

    def test_etcdctl_as_grpc_port(self):
        k = self.p + "k"
        self.assertOk(h.run_etcdctl(self.h2, ["put", k, "v"]))
        for args in (["member", "list"], ["alarm", "list"], ["lease", "list"],
                     ["user", "list"], ["role", "list"], ["auth", "disable"],
                     ["get", k, "-w", "fields"], ["lease", "timetolive", "1234"],
                     ["lease", "revoke", "1234"], ["compaction", "99999999"],
                     ["user", "get", "nobody"], ["role", "get", "nobody"],
                     ["move-leader", "1234"], ["member", "remove", "1234"]):
            a, b = self.both(*args)
            self.assertEqual((a.rc, a.out), (b.rc, b.out), args)
            self.assertEqual(a.err.splitlines()[-1:], b.err.splitlines()[-1:], args)
        r = self.assertOk(h.run_etcdctl(self.h2, ["endpoint", "status", "-w", "json"]))
        st = r.json()[0]["Status"]
        self.assertEqual(st["header"]["member_id"], st["leader"])
        self.assertOk(h.run_etcdctl(self.h2, ["endpoint", "health"]))
        self.assertOk(h.run_etcdctl(self.h2, ["endpoint", "hashkv"]))
        self.assertOk(h.run_etcdctl(self.h2, ["defrag"]))
        r = self.assertOk(h.run_etcdctl(self.h2, ["lease", "grant", "100"]))
        lease = r.out.split()[1]
        self.assertOk(h.run_etcdctl(self.h2, ["put", k, "leased", "--lease", lease]))
        r = self.assertOk(h.run_etcdctl(self.h2, ["lease", "timetolive", lease, "--keys"]))
        self.assertIn(k, r.out)
        self.assertIn(lease, self.assertOk(h.run_etcdctl(self.h2, ["lease", "list"])).out)
        self.assertOk(h.run_etcdctl(self.h2, ["lease", "revoke", lease]))
        self.assertEqual(self.assertOk(self.s.etcdctl("get", k)).out, "")
        txn = "value(\"%s\") = \"x\"\n\nput %s t-ok\n\nput %s t-else\n\n" % (k, k, k)
        r = self.assertOk(h.run_etcdctl(self.h2, ["txn"], input=txn))
        self.assertEqual(r.out, "FAILURE\n\nOK\n")
        self.assertEqual(self.assertOk(self.s.etcdctl("get", k, "--print-value-only")).out,
                         "t-else\n")
        self.assertEqual(self.assertOk(h.run_etcdctl(self.h2, ["del", k])).out, "1\n")
        rev = self.assertOk(h.run_etcdctl(self.h2, ["get", k, "-w", "json"])).json()
        self.assertOk(h.run_etcdctl(self.h2, ["compaction", str(rev["header"]["revision"])]))
        a, b = self.both("compaction", str(rev["header"]["revision"]))
        self.assertNotEqual(a.rc, 0)
        self.assertEqual(a.err.splitlines()[-1], b.err.splitlines()[-1])

    def test_python_etcd3_services(self):
        c = etcd3.client(host="127.0.0.1", port=self.h2port, timeout=10)
        self.addCleanup(c.close)
        st = c.status()  # Status and MemberList
        ref = self.s.client().status()
        self.assertEqual((st.leader.id, st.version), (ref.leader.id, ref.version))
        self.assertEqual(len(list(c.members)), 1)
        lease = c.lease(30)
        self.assertGreater(lease.remaining_ttl, 0)
        k = self.p + "k"
        c.put(k, "v", lease=lease)
        self.assertEqual(lease.keys, [k.encode()])
        ok, _ = c.transaction(compare=[c.transactions.value(k) == "v"],
                              success=[c.transactions.put(k, "w")], failure=[])
        self.assertTrue(ok)
        self.assertTrue(c.delete(k))
        lease.revoke()
        self.assertEqual(c.get_lease_info(lease.id).TTL, -1)
        self.assertEqual(list(c.list_alarms()), [])
        c.defragment()
        self.assertGreater(c.hash(), 0)

    def unfinished_call(self, port, timeout_hdr, wait, rst_first=None, check_open=False):
        """Over a raw HTTP/2 connection, a Range call's HEADERS (with grpc-timeout
        timeout_hdr unless None) and never the request's end: the frame types the server
        ended stream 1 with within wait seconds, in order (1 HEADERS with END_STREAM,
        3 RST_STREAM). rst_first: a stream ID to send RST_STREAM for first. check_open:
        return (that list, whether the connection still answers a PING after it)."""
        hdrs = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", RANGE.encode()),
                (b":authority", b"127.0.0.1"), (b"content-type", b"application/grpc"),
                (b"te", b"trailers")]
        if timeout_hdr:
            hdrs.append((b"grpc-timeout", timeout_hdr.encode()))
        block = b"".join(h2f.literal(n, v) for n, v in hdrs)
        ended = []
        with socket.create_connection(("127.0.0.1", port), timeout=wait) as so:
            rst = h2f.frame(h2f.RST_STREAM, 0, rst_first, struct.pack(">I", 8)) \
                if rst_first else b""
            so.sendall(h2f.PREFACE + h2f.SETTINGS_EMPTY + rst +
                       h2f.frame(h2f.HEADERS, h2f.END_HEADERS, 1, block))

            def next_frame(until):
                """The next frame before time until (a SETTINGS acked on the way), None
                at EOF or GOAWAY, "late" at the time."""
                while True:
                    if time.monotonic() >= until:
                        return "late"
                    so.settimeout(max(0.01, until - time.monotonic()))
                    try:
                        f = h2f.read_frame(so)
                    except socket.timeout:
                        return "late"
                    if f is None or f[0] == h2f.GOAWAY:
                        return None
                    if f[0] == h2f.SETTINGS and not f[1] & h2f.ACK:
                        so.sendall(h2f.frame(h2f.SETTINGS, h2f.ACK, 0))
                        continue
                    return f
            t_end = time.monotonic() + wait
            is_open = True
            while 3 not in ended:
                f = next_frame(t_end)
                if f in (None, "late"):
                    is_open = f == "late"
                    break
                ftype, flags, sid, _ = f
                if sid == 1 and (ftype == h2f.RST_STREAM or
                                 (ftype == h2f.HEADERS and flags & h2f.END_STREAM)):
                    ended.append(ftype)
            if not check_open:
                return ended
            if is_open:  # a PING answered proves the server still serves this connection
                so.sendall(h2f.frame(h2f.PING, 0, 0, b"stillopn"))
                t_ping = time.monotonic() + 10
                while True:
                    f = next_frame(t_ping)
                    if f in (None, "late"):
                        is_open = False
                        break
                    if f[0] == h2f.PING and f[1] & h2f.ACK and f[3] == b"stillopn":
                        break
        return ended, is_open

    def test_deadline_ends_the_call_as_grpc_port(self):
        # The server ends a call at its grpc-timeout: a status (curl shows it as
        # "grpc-status: 4", "grpc-message: Deadline Exceeded" on both ports), then a reset
        # since the request never ended
        self.assertEqual(self.unfinished_call(self.h2port, "300m", 10)[:2], [1, 3])
        # (the gRPC C core may repeat both under load)
        self.assertEqual(self.unfinished_call(self.s.client_port, "300m", 10)[:2], [1, 3])
        # without a deadline the call waits for its request, on a connection still open
        self.assertEqual(self.unfinished_call(self.h2port, None, 1, check_open=True),
                         ([], True))
        self.assertOk(h.run_etcdctl(self.h2, ["put", self.p + "k", "v"]))

    def test_reset_of_a_stream_never_opened_is_ignored(self):
        # grpcio sends one when it cancels a call whose HEADERS never went out; the gRPC
        # C core ignores it, nghttp2 alone would end the connection (PROTOCOL_ERROR)
        self.assertEqual(self.unfinished_call(self.h2port, "300m", 10, rst_first=9)[:2], [1, 3])
        self.assertEqual(self.unfinished_call(self.s.client_port, "300m", 10,
                                              rst_first=9)[:2], [1, 3])

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



class H2Auth(h.StoreTestCase):
    """Auth through the h2 port: tokens, refusals and the admin checks as the gRPC port."""

    def test_auth_with_tokens(self):
        h2port = h.free_port()
        self.addCleanup(h.release_port, h2port)
        h2 = "127.0.0.1:%d" % h2port
        s = self.store(extra_args=["--experimental-listen-h2-url", "http://" + h2])
        run = lambda *a: h.run_etcdctl(h2, list(a))  # noqa: E731
        both = lambda *a: (run(*a), s.etcdctl(*a))  # noqa: E731
        self.assertOk(run("user", "add", "root:rootpw"))
        self.assertOk(run("user", "add", "alice:alicepw"))
        self.assertOk(run("role", "add", "r"))
        self.assertOk(run("role", "grant-permission", "r", "readwrite", "a/", "--prefix=true"))
        self.assertOk(run("user", "grant-role", "alice", "r"))
        self.assertOk(run("auth", "enable"))
        for args in (["get", "k"], ["--user", "root:wrong", "get", "k"],
                     ["--user", "alice:alicepw", "put", "b/1", "v"],
                     ["--user", "alice:alicepw", "defrag"],
                     ["--user", "alice:alicepw", "member", "add", "x",
                      "--peer-urls=http://127.0.0.1:1"],
                     ["--user", "alice:alicepw", "user", "list"],
                     ["--user", "nobody:pw", "get", "k"]):
            a, b = both(*args)
            self.assertNotEqual(a.rc, 0, args)
            # the same words; defrag's name the endpoint
            self.assertEqual(a.err.replace(h2, "EP").splitlines()[-1:],
                             b.err.replace(s.endpoint, "EP").splitlines()[-1:], args)
        self.assertOk(run("--user", "alice:alicepw", "put", "a/1", "v"))
        r = self.assertOk(run("--user", "root:rootpw", "get", "a/1", "--print-value-only"))
        self.assertEqual(r.out, "v\n")
        self.assertOk(run("--user", "root:rootpw", "endpoint", "status"))
        self.assertOk(run("--user", "root:rootpw", "defrag"))
        # a token from Authenticate on the h2 port, sent with each call as python3-etcd3
        # does (its user= needs a TLS channel: grpcio sends no call credentials without)
        login = rpc_pb2.AuthenticateRequest(name="alice", password="alicepw")
        code, _, data = raw_call(h2, "/etcdserverpb.Auth/Authenticate",
                                 login.SerializeToString())
        self.assertEqual(code, grpc.StatusCode.OK)
        tok = [("token", rpc_pb2.AuthenticateResponse.FromString(data).token)]
        code, _, data = raw_call(h2, RANGE, rpc_pb2.RangeRequest(key=b"a/1").SerializeToString(),
                                 metadata=tok)
        self.assertEqual(code, grpc.StatusCode.OK)
        self.assertEqual([kv.value for kv in rpc_pb2.RangeResponse.FromString(data).kvs], [b"v"])
        put = rpc_pb2.PutRequest(key=b"b/2", value=b"v").SerializeToString()
        a, b = raw_call(h2, PUT, put, metadata=tok), raw_call(s.endpoint, PUT, put, metadata=tok)
        self.assertEqual(a[:2], b[:2])
        self.assertEqual(a[:2], (grpc.StatusCode.PERMISSION_DENIED,
                                 "etcdserver: permission denied"))
        # a token of the simple form naming a login never made: waited for, then refused,
        # as on the gRPC port; an arbitrary token refused at once
        req = rpc_pb2.RangeRequest(key=b"a/1").SerializeToString()
        for tok in ("abcdefghijklmnop.999999999", "bogus"):
            a = raw_call(h2, RANGE, req, metadata=[("token", tok)])
            b = raw_call(s.endpoint, RANGE, req, metadata=[("token", tok)])
            self.assertEqual(a[:2], b[:2], tok)
            self.assertEqual(a[0], grpc.StatusCode.UNAUTHENTICATED, a)
        self.assertOk(run("--user", "root:rootpw", "auth", "disable"))
        self.assertOk(run("get", "a/1"))


if __name__ == "__main__":
    h.main()
