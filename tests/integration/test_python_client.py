#!/usr/bin/python3
"""python3-etcd3 (Debian, 0.12) and raw gRPC KV requests against one store.

Run by meson with BOLLARD_STORE set; STORE_IMPL=etcd runs it against Debian's etcd.
"""

import io
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

import grpc  # noqa: E402
from etcd3.etcdrpc import rpc_pb2  # noqa: E402

R = rpc_pb2.RangeRequest


class _Any:
    def __eq__(self, other):
        return True


unittest_any = _Any()


class Client(h.SharedStoreTestCase):

    def setUp(self):
        super().setUp()
        self.c = self.s.client()
        self.p = self._testMethodName + "/"
        self.addCleanup(self.c.close)

    def range(self, **kw):
        return self.c.kvstub.Range(R(**kw), timeout=10)

    def test_put_get_delete(self):
        k = self.p + "k"
        resp = self.c.put(k, "v1")
        rev = resp.header.revision
        value, meta = self.c.get(k)
        self.assertEqual(value, b"v1")
        self.assertEqual(meta.key, k.encode())
        self.assertEqual(meta.version, 1)
        self.assertEqual(meta.create_revision, rev)
        self.assertEqual(meta.mod_revision, rev)
        resp = self.c.put(k, "v2", prev_kv=True)
        self.assertEqual(resp.prev_kv.value, b"v1")
        self.assertEqual(resp.header.revision, rev + 1)
        self.assertEqual(self.c.get(k, serializable=True)[0], b"v2")
        self.assertTrue(self.c.delete(k))
        self.assertFalse(self.c.delete(k))
        self.assertEqual(self.c.get(k), (None, None))
        self.c.put(k, "v3")
        resp = self.c.delete(k, prev_kv=True, return_response=True)
        self.assertEqual(resp.deleted, 1)
        self.assertEqual(resp.prev_kvs[0].value, b"v3")

    def test_binary_keys_and_values(self):
        key = (self.p + "bin-").encode() + bytes(range(1, 256))
        value = bytes(range(256)) * 40
        self.c.put(key, value)
        self.assertEqual(self.c.get(key)[0], value)
        big = os.urandom(1024 * 1024)
        self.c.put(self.p + "big", big)
        self.assertEqual(self.c.get(self.p + "big")[0], big)
        self.c.put(self.p + "empty", b"")
        v, meta = self.c.get(self.p + "empty")
        self.assertEqual(v, b"")
        self.assertIsNotNone(meta)
        longkey = (self.p + "L" * 500)[:500]
        self.c.put(longkey, "long")
        self.assertEqual(self.c.get(longkey)[0], b"long")

    def test_prefix_and_delete_prefix(self):
        for i in range(10):
            self.c.put(self.p + "%02d" % i, "v%d" % i)
        self.c.put(self.p[:-1], "the prefix without slash")
        got = [(m.key.decode(), v.decode()) for v, m in self.c.get_prefix(self.p)]
        self.assertEqual(got, [(self.p + "%02d" % i, "v%d" % i) for i in range(10)])
        got = [m.key for _, m in self.c.get_prefix(self.p, sort_order="descend")]
        self.assertEqual(got[0], (self.p + "09").encode())
        got = list(self.c.get_prefix(self.p, keys_only=True))
        self.assertEqual(len(got), 10)
        self.assertTrue(all(v == b"" for v, _ in got))
        got = [m.key.decode() for _, m in self.c.get_range(self.p + "03", self.p + "06")]
        self.assertEqual(got, [self.p + "03", self.p + "04", self.p + "05"])
        resp = self.c.delete_prefix(self.p)
        self.assertEqual(resp.deleted, 10)
        self.assertEqual(list(self.c.get_prefix(self.p)), [])
        self.assertEqual(self.c.get(self.p[:-1])[0], b"the prefix without slash")

    def test_get_all(self):
        self.c.put(self.p + "x", "1")
        keys = [m.key for _, m in self.c.get_all()]
        self.assertIn((self.p + "x").encode(), keys)
        self.assertEqual(keys, sorted(keys))
        resp = self.range(key=b"\0", range_end=b"\0", count_only=True)
        self.assertEqual(resp.count, len(keys))
        self.assertEqual(len(resp.kvs), 0)

    def test_replace_and_put_if_not_exists(self):
        k = self.p + "k"
        self.assertTrue(self.c.put_if_not_exists(k, "a"))
        self.assertFalse(self.c.put_if_not_exists(k, "b"))
        self.assertTrue(self.c.replace(k, "a", "c"))
        self.assertFalse(self.c.replace(k, "a", "d"))
        self.assertEqual(self.c.get(k)[0], b"c")

    def test_transaction(self):
        t = self.c.transactions
        k, o = self.p + "k", self.p + "o"
        self.c.put(k, "1")
        ok, responses = self.c.transaction(
            compare=[t.value(k) == "1", t.version(k) > 0, t.create(o) == 0],
            success=[t.put(k, "2"), t.get(k), t.put(o, "x")],
            failure=[t.put(k, "failed")])
        self.assertTrue(ok)
        self.assertEqual(responses[1][0][0], b"2")
        ok, responses = self.c.transaction(
            compare=[t.value(k) == "1"],
            success=[t.put(k, "3")],
            failure=[t.get(k), t.delete(o)])
        self.assertFalse(ok)
        self.assertEqual(responses[0][0][0], b"2")
        self.assertEqual(responses[1].response_delete_range.deleted, 1)
        # nested txn
        ok, responses = self.c.transaction(
            compare=[],
            success=[t.txn(compare=[t.value(k) == "2"],
                           success=[t.put(k, "nested")], failure=[t.put(k, "bad")]),
                     t.put(o, "y")],
            failure=[])
        self.assertTrue(ok)
        inner = responses[0].response_txn
        self.assertTrue(inner.succeeded)
        self.assertEqual(self.c.get(k)[0], b"nested")
        mod1 = self.c.get(k)[1].mod_revision
        self.assertEqual(self.c.get(o)[1].mod_revision, mod1)  # one revision per txn

    def test_compare_lease_and_range_end(self):
        k = self.p + "k"
        self.c.put(k, "v")
        self.c.put(self.p + "k2", "v")
        C = rpc_pb2.Compare
        req = rpc_pb2.TxnRequest(compare=[C(result=C.EQUAL, target=C.LEASE, key=k.encode(),
                                            lease=0)])
        self.assertTrue(self.c.kvstub.Txn(req, timeout=10).succeeded)
        req = rpc_pb2.TxnRequest(compare=[C(result=C.GREATER, target=C.LEASE, key=k.encode(),
                                            lease=0)])
        self.assertFalse(self.c.kvstub.Txn(req, timeout=10).succeeded)
        # a compare over a range holds only if it holds for every key in it
        rng = dict(key=self.p.encode(), range_end=(self.p[:-1] + "0").encode())
        req = rpc_pb2.TxnRequest(compare=[C(result=C.EQUAL, target=C.VALUE, value=b"v", **rng)])
        self.assertTrue(self.c.kvstub.Txn(req, timeout=10).succeeded)
        self.c.put(self.p + "k3", "other")
        self.assertFalse(self.c.kvstub.Txn(req, timeout=10).succeeded)

    def test_range_filters(self):
        p = self.p
        revs = {}
        for name in ("a", "b", "c"):
            revs[name] = self.c.put(p + name, "1").header.revision
        self.c.put(p + "a", "2")   # a: create revs[a], mod later
        pk = dict(key=p.encode(), range_end=(p[:-1] + "0").encode())

        def keys(**kw):
            return [kv.key.decode()[len(p):] for kv in self.range(**pk, **kw).kvs]
        self.assertEqual(keys(min_create_revision=revs["b"]), ["b", "c"])
        self.assertEqual(keys(max_create_revision=revs["b"]), ["a", "b"])
        self.assertEqual(keys(min_mod_revision=revs["c"] + 1), ["a"])
        self.assertEqual(keys(max_mod_revision=revs["c"]), ["b", "c"])
        resp = self.range(count_only=True, **pk)
        self.assertEqual((resp.count, len(resp.kvs)), (3, 0))
        resp = self.range(limit=1, **pk)
        self.assertEqual((resp.count, len(resp.kvs), resp.more), (3, 1, True))
        resp = self.range(keys_only=True, sort_order=R.DESCEND, sort_target=R.MOD, **pk)
        self.assertEqual([kv.key.decode()[len(p):] for kv in resp.kvs], ["a", "c", "b"])
        self.assertEqual(resp.kvs[0].value, b"")
        resp = self.range(revision=revs["b"], **pk)
        self.assertEqual([(kv.key.decode()[len(p):], kv.value) for kv in resp.kvs],
                         [("a", b"1"), ("b", b"1")])

    def test_put_ignore_value(self):
        k = self.p + "k"
        self.c.put(k, "keep")
        self.c.kvstub.Put(rpc_pb2.PutRequest(key=k.encode(), ignore_value=True), timeout=10)
        v, meta = self.c.get(k)
        self.assertEqual((v, meta.version), (b"keep", 2))
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.kvstub.Put(rpc_pb2.PutRequest(key=(self.p + "none").encode(),
                                                 ignore_value=True), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(cm.exception.details(), "etcdserver: key not found")
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.kvstub.Put(rpc_pb2.PutRequest(key=k.encode(), value=b"x", ignore_value=True),
                              timeout=10)
        self.assertEqual(cm.exception.details(), "etcdserver: value is provided")

    def test_status_members_hash_alarms(self):
        st = self.c.status()
        self.assertIsNotNone(st.leader, "status().leader must be one of the members")
        members = list(self.c.members)
        self.assertEqual(len(members), 1)
        self.assertEqual(members[0].name, "default")
        self.assertEqual(list(members[0].client_urls), [self.s.client_url])
        self.assertEqual(st.leader.id, members[0].id)
        self.assertGreater(st.db_size, 0)
        self.assertGreater(st.raft_index, 0)
        self.assertGreaterEqual(st.raft_term, 1)
        self.assertIsInstance(self.c.hash(), int)
        self.assertEqual(list(self.c.list_alarms()), [])
        self.c.defragment()

    def test_snapshot_stream(self):
        self.c.put(self.p + "k", "v" * 1000)
        buf = io.BytesIO()
        self.c.snapshot(buf)
        self.assertGreater(len(buf.getvalue()), 1000)


    def test_long_keys(self):
        """Keys up to 511 bytes work; longer ones are a documented limit of bollard (LMDB):
        a write is refused with InvalidArgument, reads and deletes just find nothing."""
        ok = (self.p + "A" * 511).encode()[:511]
        long = (self.p + "L" * 600).encode()
        self.c.put(ok, "v")
        self.assertEqual(self.c.get(ok)[0], b"v")
        self.assertEqual(self.c.get(long), (None, None))
        self.assertFalse(self.c.delete(long))
        self.assertEqual(list(self.c.get_range(self.p, long)), [(b"v", unittest_any)])
        C = rpc_pb2.Compare
        cmp = C(key=long, target=C.VERSION, result=C.EQUAL, version=0)
        self.assertTrue(self.c.kvstub.Txn(rpc_pb2.TxnRequest(compare=[cmp]), timeout=10).succeeded)
        put_long = rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
            request_put=rpc_pb2.PutRequest(key=long, value=b"v"))])
        if self.s.impl == "etcd":
            self.c.put(long, "v")
            self.c.kvstub.Txn(put_long, timeout=10)
            return
        for call in (lambda: self.c.put(long, "v"),
                     lambda: self.c.kvstub.Txn(put_long, timeout=10)):
            with self.assertRaises(grpc.RpcError) as cm:
                call()
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertEqual(cm.exception.details(),
                             "bollard: key is longer than the store's limit")
        self.assertEqual(self.c.get(long), (None, None))

    def test_large_range_response(self):
        # ~3 MB in one Range response (python grpc's default receive limit is 4 MB)
        t = self.c.transactions
        value = "v" * 1000
        for b in range(30):
            ok, _ = self.c.transaction(compare=[], failure=[], success=[
                t.put(self.p + "%05d" % (b * 100 + i), value) for i in range(100)])
            self.assertTrue(ok)
        got = list(self.c.get_prefix(self.p))
        self.assertEqual(len(got), 3000)
        self.assertEqual(got[-1][1].key, (self.p + "02999").encode())
        self.assertTrue(all(v == value.encode() for v, _ in got))
        r = self.s.etcdctl("get", self.p, "--prefix", "--print-value-only")
        self.assertOk(r)
        self.assertEqual(r.out.count("\n"), 3000)
        self.assertEqual(self.c.delete_prefix(self.p).deleted, 3000)

    def test_read_your_writes_across_connections(self):
        other = self.s.client()
        self.addCleanup(other.close)
        k = self.p + "k"
        for i in range(300):
            rev = self.c.put(k, str(i)).header.revision
            v, meta = other.get(k)
            self.assertEqual(v, str(i).encode(), "linearizable read on another connection "
                             "missed an acknowledged put")
            self.assertEqual(meta.mod_revision, rev)
            self.assertGreaterEqual(meta.response_header.revision, rev)


class FreshClient(h.StoreTestCase):
    def test_compact(self):
        s = self.store()
        c = s.client()
        self.addCleanup(c.close)
        for i in range(4):
            c.put("k", str(i))                       # revisions 2..5
        c.compact(3, physical=True)
        with self.assertRaises(grpc.RpcError) as cm:
            c.kvstub.Range(R(key=b"k", revision=2), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.OUT_OF_RANGE)
        self.assertEqual(cm.exception.details(),
                         "etcdserver: mvcc: required revision has been compacted")
        self.assertEqual(c.kvstub.Range(R(key=b"k", revision=3), timeout=10).kvs[0].value, b"1")
        hk = c.maintenancestub.HashKV(rpc_pb2.HashKVRequest(revision=0), timeout=10)
        self.assertEqual(hk.compact_revision, 3)
        self.assertEqual(hk.header.revision, 5)


if __name__ == "__main__":
    h.main()
