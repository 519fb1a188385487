#!/usr/bin/python3
"""Differential test: one etcdctl script against Debian's etcd 3.4 and against the store
under test, each on a fresh data dir; outputs (stdout, stderr, exit status) compared.

What is masked, and why it legitimately differs:
  * cluster and member IDs: derived from names/URLs/time by each implementation;
  * raft term and raft index, db sizes, the server version string: storage/raft details;
  * the client and peer ports: each server has its own free ports;
  * the KV hash of `endpoint hashkv`: etcd hashes its bbolt encoding;
  * timing ("took"), timestamps and client ids in etcdctl's warn log lines.
Revisions are NOT masked: both stores start at revision 1 and must number alike.

A second test drives both with the same random sequence of KV requests over gRPC (Range
with every option, Put, DeleteRange, Txn with random compares, Compact) and compares the
responses field by field, masking only the header's cluster_id, member_id and raft_term.
When a Range sorts on something other than the key, the order among equal sort values is
not compared (etcd's sort is not stable above 12 results; the scripted test above checks
small sorts exactly).

Both tests also run against a 3-member etcd cluster and a 3-member cluster of the store
under test, request i sent to member i mod 3 of each. Member list is ordered by name
(member IDs differ between the clusters, and etcd orders by ID). A follower answers
serializable reads (also etcd's txns of serializable ranges only, or empty), Status and
HashKV from what it has applied, so those follow a linearizable read on the same member. Ranges inside txns read the current revision there:
etcd 3.4 drops a txn's ranges on the members the client is not connected to, so a range
at a compacted or future revision fails the txn on one member only and the etcd cluster
diverges (etcd-io/etcd#18667; Bollard refuses it on every member).

With STORE_IMPL=etcd both run against two etcds (checks the masking is enough).
"""

import difflib
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import etcdctl_diff as ed  # noqa: E402
import storeharness as h  # noqa: E402
from etcdctl_diff import mask_text  # noqa: E402

TXN_OK = 'value("a") = "11"\nversion("b") = "2"\n\nput t 1\nget a\ndel c\n\nput f 1\n\n'
TXN_FAIL = 'value("a") = "nope"\n\nput t 2\n\nget a --prefix\nput f 2\nget nothing\n\n'
TXN_CMPS = ('mod("a") > "1"\ncreate("b") = "3"\nversion("zz") = "0"\nvalue("t") < "2"\n\n'
            'put cmp yes\n\nput cmp no\n\n')

# (args, stdin). Revisions: a=2, b=3, c=4, a=5, b=6, d=7 ...
SCRIPT = [
    (["put", "a", "1"], None),
    (["put", "b", "2"], None),
    (["put", "c", "3"], None),
    (["put", "a", "11"], None),
    (["put", "b", "22", "--prev-kv"], None),
    (["put", "d", "4", "-w", "json"], None),
    (["put", "e/1", "x"], None),
    (["put", "e/2", "y"], None),
    (["put", "e2", "z"], None),
    (["get", "a"], None),
    (["get", "a", "-w", "json"], None),
    (["get", "a", "-w", "fields"], None),
    (["get", "missing"], None),
    (["get", "missing", "-w", "json"], None),
    (["get", "a", "d"], None),
    (["get", "a", "d", "-w", "json"], None),
    (["get", "e/", "--prefix"], None),
    (["get", "e", "--prefix", "-w", "json"], None),
    (["get", "c", "--from-key"], None),
    (["get", "", "--from-key", "-w", "json"], None),
    (["get", "", "--prefix", "--limit", "3", "-w", "json"], None),
    (["get", "", "--prefix", "--limit", "3"], None),
    (["get", "", "--prefix", "--keys-only"], None),
    (["get", "", "--prefix", "--keys-only", "-w", "json"], None),
    (["get", "", "--prefix", "--print-value-only"], None),
    (["get", "", "--prefix", "--sort-by=VALUE", "--order=DESCEND"], None),
    (["get", "", "--prefix", "--sort-by=MODIFY", "-w", "json"], None),
    (["get", "", "--prefix", "--sort-by=CREATE", "--order=DESCEND", "--limit", "2"], None),
    (["get", "", "--prefix", "--sort-by=VERSION", "--order=DESCEND", "-w", "json"], None),
    (["get", "", "--prefix", "--order=DESCEND", "--keys-only"], None),
    (["get", "a", "--rev", "2"], None),
    (["get", "a", "--rev", "4", "-w", "json"], None),
    (["get", "", "--prefix", "--rev", "3", "-w", "json"], None),
    (["get", "a", "--rev", "1000"], None),
    (["get", "a", "--consistency=s", "-w", "json"], None),
    (["get", "a", "--hex"], None),
    (["txn"], TXN_OK),
    (["txn", "-w", "json"], TXN_FAIL),
    (["txn"], TXN_CMPS),
    (["txn", "-i"], TXN_CMPS),
    (["txn", "-w", "json"], "\n\n\n"),
    (["del", "missing"], None),
    (["del", "d", "--prev-kv"], None),
    (["del", "e/", "--prefix", "-w", "json"], None),
    (["del", "e2", "--prev-kv", "-w", "json"], None),
    (["get", "", "--from-key", "-w", "json"], None),
    (["compaction", "5"], None),
    (["get", "a", "--rev", "4"], None),
    (["get", "a", "--rev", "5"], None),
    (["get", "a", "--rev", "5", "-w", "json"], None),
    (["compaction", "5"], None),
    (["compaction", "3"], None),
    (["compaction", "1000"], None),
    (["compaction", "--physical", "8"], None),
    (["put", "", "v"], None),
    (["get", ""], None),
    (["txn"], "\nput x 1\nput x 2\n\n\n"),
    (["txn"], "\n" + "".join("put many%d v\n" % i for i in range(129)) + "\n\n"),
    (["txn"], "\n" + "".join("put many%d v\n" % i for i in range(128)) + "\n\n"),
    (["get", "many", "--prefix", "--keys-only", "--limit", "2"], None),
    (["get", "many", "--prefix", "--limit", "1", "-w", "json"], None),
    (["del", "many", "--prefix"], None),
    (["member", "list"], None),
    (["member", "list", "-w", "json"], None),
    (["endpoint", "status", "-w", "json"], None),
    (["endpoint", "hashkv", "-w", "json"], None),
    (["endpoint", "health"], None),
    (["alarm", "list"], None),
    (["defrag"], None),
    (["--user", "root:pw", "get", "a"], None),
    (["put", "last", "value", "-w", "json"], None),
    (["get", "", "--from-key", "-w", "json"], None),
]

class Differential(ed.DiffAssertions, h.StoreTestCase):

    def run_script(self, s):
        return ed.run_script(s, SCRIPT)

    def test_same_output_as_etcd(self):
        ref = self.store(impl="etcd")
        sut = self.store()
        self.assertSameOutputs(ed.script_titles(SCRIPT), self.run_script(ref),
                               self.run_script(sut), sut.impl, "etcd 3.4")


class ClusterDifferential(Differential):
    """The same script against a 3-member etcd 3.4 cluster and a 3-member cluster of the
    store under test, command i sent to member i mod 3 of each (writes to followers are
    forwarded, linearizable reads on followers wait for the leader's index). Before a
    serializable read, `endpoint status` or `endpoint hashkv` the member serves a
    linearizable read, so that it has applied every write acknowledged before (both
    implementations answer those from whatever the member has applied)."""

    def cluster(self, impl):
        c = h.Cluster(3, impl=impl, token="bollard-differential")
        self._stores += c.members
        c.start()
        c.leader()
        return c

    def run_script(self, c):
        outs = []
        for i, (args, stdin) in enumerate(SCRIPT):
            m = c.members[i % len(c.members)]
            if "--consistency=s" in args or args[0] == "endpoint":
                # answered from what m applied (serializable reads, Status, HashKV)
                self.assertOk(m.etcdctl("get", "barrier"))
            r = m.etcdctl(*args, input=stdin)
            out = mask_text(r.out, *c.members, named=True)
            if args[:2] == ["member", "list"] and "-w" not in args:
                out = "\n".join(sorted(out.splitlines()))   # ordered by member ID
            outs.append("member %d: %s" % (i % len(c.members), ed.step_text(
                r.rc, out, mask_text(r.err, *c.members, named=True))))
        return outs

    test_same_output_as_etcd = None     # Differential's; this class runs the cluster one

    def test_same_output_as_etcd_cluster(self):
        ref = self.cluster("etcd")
        sut = self.cluster(None)
        self.assertSameOutputs(ed.script_titles(SCRIPT), self.run_script(ref),
                               self.run_script(sut), sut.members[0].impl,
                               "a 3-member etcd 3.4 cluster")


class RandomDifferential(h.StoreTestCase):
    SEEDS = (1, 2, 3)
    OPS = 400

    def setUp(self):
        super().setUp()
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        self.grpc, self.pb, self.pbg = grpc, rpc_pb2, rpc_pb2_grpc

    # -- request generation
    def gen_key(self, rng):
        r = rng.random()
        if r < 0.02:
            return b""
        return b"k%d" % rng.randint(0, 15) if r < 0.9 else b"k%d/%d" % (rng.randint(0, 3),
                                                                         rng.randint(0, 3))

    def gen_range(self, rng):
        key, kind = self.gen_key(rng), rng.random()
        if kind < 0.5:
            return key, b""
        if kind < 0.7:
            return key, self.gen_key(rng) or b"k9"
        if kind < 0.85:     # prefix
            return key, key[:-1] + bytes([key[-1] + 1]) if key else b"\0"
        if kind < 0.95:
            return key, b"\0"                  # from key
        return b"\0", b"\0"                   # everything

    def gen_rangereq(self, rng, cur):
        pb = self.pb
        key, end = self.gen_range(rng)
        req = pb.RangeRequest(key=key, range_end=end)
        if rng.random() < 0.3:
            req.limit = rng.randint(0, 5)
        if rng.random() < 0.3:
            req.revision = rng.randint(max(0, cur - 12), cur + 2)
        if rng.random() < 0.4:
            req.sort_order = rng.choice([0, 1, 2])
            req.sort_target = rng.choice([0, 1, 2, 3, 4])
        req.keys_only = rng.random() < 0.15
        req.count_only = rng.random() < 0.1
        req.serializable = rng.random() < 0.2
        for f in ("min_mod_revision", "max_mod_revision", "min_create_revision",
                  "max_create_revision"):
            if rng.random() < 0.07:
                setattr(req, f, rng.randint(0, cur + 1))
        return req

    def gen_put(self, rng):
        req = self.pb.PutRequest(key=self.gen_key(rng),
                                 value=rng.choice([b"a", b"b", b"c", b"", b"zz"]))
        req.prev_kv = rng.random() < 0.3
        if rng.random() < 0.05:
            req.ignore_value = True
            req.value = b""
        return req

    def gen_delete(self, rng):
        key, end = self.gen_range(rng)
        return self.pb.DeleteRangeRequest(key=key, range_end=end, prev_kv=rng.random() < 0.3)

    def gen_op(self, rng, cur, depth=0):
        pb, r = self.pb, rng.random()
        if r < 0.35:
            return pb.RequestOp(request_put=self.gen_put(rng))
        if r < 0.65:
            return pb.RequestOp(request_range=self.gen_rangereq(rng, cur))
        if r < 0.9 or depth > 0:
            return pb.RequestOp(request_delete_range=self.gen_delete(rng))
        return pb.RequestOp(request_txn=self.gen_txn(rng, cur, depth + 1))

    def gen_txn(self, rng, cur, depth=0):
        pb = self.pb
        C = pb.Compare
        cmps = []
        for _ in range(rng.randint(0, 3)):
            key, end = (self.gen_key(rng) or b"k1"), b""
            if rng.random() < 0.15:
                key, end = self.gen_range(rng)
            c = C(key=key, range_end=end, result=rng.choice([0, 1, 2, 3]))
            t = rng.choice(["version", "create_revision", "mod_revision", "value", "lease"])
            c.target = {"version": C.VERSION, "create_revision": C.CREATE,
                        "mod_revision": C.MOD, "value": C.VALUE, "lease": C.LEASE}[t]
            if t == "value":
                c.value = rng.choice([b"a", b"b", b"c", b""])
            elif t == "lease":
                c.lease = 0
            else:
                setattr(c, t, rng.randint(0, cur + 1) if t != "version" else rng.randint(0, 4))
            cmps.append(c)
        return pb.TxnRequest(compare=cmps,
                             success=[self.gen_op(rng, cur, depth) for _ in range(rng.randint(0, 3))],
                             failure=[self.gen_op(rng, cur, depth) for _ in range(rng.randint(0, 3))])

    # -- execution and comparison
    def call(self, stub, method, req):
        try:
            return "ok", getattr(stub, method)(req, timeout=10)
        except self.grpc.RpcError as e:
            return "error", "%s: %s" % (e.code(), e.details())

    def normalize(self, msg, req=None):
        """Mask the header's IDs and term everywhere; for Ranges sorted on a non-key target,
        keep the order of sort values but not the order among equal ones."""
        from google.protobuf import text_format
        msg = type(msg).FromString(msg.SerializeToString())
        self._mask(msg, req)
        return text_format.MessageToString(msg)

    def _mask(self, msg, req):
        pb = self.pb
        if isinstance(msg, pb.ResponseHeader):
            msg.cluster_id = msg.member_id = msg.raft_term = 0
            return
        # (etcd sorts ascending when the target is not KEY even with sort_order NONE)
        if isinstance(msg, pb.RangeResponse) and req is not None and \
                req.sort_target != pb.RangeRequest.KEY:
            field = {pb.RangeRequest.VERSION: "version", pb.RangeRequest.CREATE: "create_revision",
                     pb.RangeRequest.MOD: "mod_revision", pb.RangeRequest.VALUE: "value"}[
                         req.sort_target]
            kvs = list(msg.kvs)
            if req.limit and msg.more:
                # which of several equal ones made the cut is unspecified: keep the values
                for kv in kvs:
                    v = getattr(kv, field)
                    kv.Clear()
                    setattr(kv, field, v)
            else:
                # equal sort values may come in any order: sort each run of equal ones by key
                runs, out = {}, []
                for kv in kvs:
                    runs.setdefault(getattr(kv, field), []).append(kv)
                seen = set()
                for kv in kvs:
                    v = getattr(kv, field)
                    if v not in seen:
                        seen.add(v)
                        out += sorted(runs[v], key=lambda x: x.key)
                kvs = out
            copies = [type(kv).FromString(kv.SerializeToString()) for kv in kvs]
            del msg.kvs[:]
            msg.kvs.extend(copies)
        for fd, value in msg.ListFields():
            if fd.type != fd.TYPE_MESSAGE:
                continue
            sub_req = None
            if fd.label == fd.LABEL_REPEATED:
                for i, v in enumerate(value):
                    if isinstance(msg, pb.TxnResponse) and req is not None:
                        ops = req.success if msg.succeeded else req.failure
                        op = ops[i] if i < len(ops) else None
                        sub_req = self._op_req(op)
                    self._mask(v, sub_req)
            else:
                if isinstance(msg, pb.ResponseOp) and req is not None:
                    sub_req = req
                self._mask(value, sub_req)

    def _op_req(self, op):
        if op is None:
            return None
        w = op.WhichOneof("request")
        return getattr(op, w) if w else None

    def strip_txn_range_revisions(self, txn):
        """etcd 3.4 drops a txn's range requests on the members the client is not
        connected to (etcd-io/etcd#18667), so a range at a compacted or future revision
        fails the txn on one member and not on the others: its members diverge and it is
        no reference there. Clusters get txns whose ranges read the current revision."""
        for op in list(txn.success) + list(txn.failure):
            w = op.WhichOneof("request")
            if w == "request_range":
                op.request_range.revision = 0
            elif w == "request_txn":
                self.strip_txn_range_revisions(op.request_txn)

    @staticmethod
    def local_txn(txn):
        """etcd serves a txn of serializable ranges only (or of nothing) from what the
        member applied, like a serializable Range."""
        return all(op.WhichOneof("request") == "request_range" and
                   op.request_range.serializable
                   for op in list(txn.success) + list(txn.failure))

    def run_seed(self, seed, refs, suts):
        """OPS random requests, request i to refs[i mod n] and suts[i mod n]; compared.
        Returns the outcome counts and the final revision."""
        from etcd3.etcdrpc import rpc_pb2_grpc
        chans = [[m.grpc_channel() for m in refs], [m.grpc_channel() for m in suts]]
        try:
            stubs = [[rpc_pb2_grpc.KVStub(c) for c in cs] for cs in chans]
            rng = random.Random(seed)
            cur, outcomes = 1, {}
            for i in range(self.OPS):
                r = rng.random()
                if r < 0.3:
                    method, req = "Put", self.gen_put(rng)
                elif r < 0.6:
                    method, req = "Range", self.gen_rangereq(rng, cur)
                elif r < 0.72:
                    method, req = "DeleteRange", self.gen_delete(rng)
                elif r < 0.97:
                    method, req = "Txn", self.gen_txn(rng, cur)
                else:
                    method, req = "Compact", self.pb.CompactionRequest(
                        revision=rng.randint(max(0, cur - 8), cur + 1),
                        physical=rng.random() < 0.5)
                ref, sut = (st[i % len(st)] for st in stubs)
                if method == "Txn" and len(refs) > 1:
                    self.strip_txn_range_revisions(req)
                if len(refs) > 1 and (method == "Range" and req.serializable or
                                      method == "Txn" and self.local_txn(req)):
                    # a follower answers from what it applied: catch up first
                    for st in (ref, sut):
                        self.assertEqual(self.call(st, "Range", self.pb.RangeRequest(
                            key=b"barrier"))[0], "ok")
                (ks, kr), (gs, gr) = (self.call(st, method, req) for st in (ref, sut))
                outcomes[ks if ks == "error" else method] = \
                    outcomes.get(ks if ks == "error" else method, 0) + 1
                want = kr if ks == "error" else self.normalize(kr, req if method in (
                    "Range", "Txn") else None)
                got = gr if gs == "error" else self.normalize(gr, req if method in (
                    "Range", "Txn") else None)
                if (ks, want) != (gs, got):
                    from google.protobuf import text_format
                    self.fail("seed %d, request #%d (member %d): %s\n%s\n%s" % (
                        seed, i, i % len(refs), method, text_format.MessageToString(req),
                        "\n".join(difflib.unified_diff(
                            ("%s\n%s" % (ks, want)).splitlines(),
                            ("%s\n%s" % (gs, got)).splitlines(),
                            "etcd", suts[0].impl, lineterm=""))))
                if ks == "ok" and kr.header.revision:
                    cur = kr.header.revision
        finally:
            for cs in chans:
                for c in cs:
                    c.close()
        return sorted(outcomes.items()), cur

    def test_random_kv_sequences(self):
        for seed in self.SEEDS:
            ref, sut = self.store(impl="etcd"), self.store()
            outcomes, cur = self.run_seed(seed, [ref], [sut])
            print("seed %d: %s, final revision %d" % (seed, outcomes, cur), flush=True)
            for st in (ref, sut):
                self._stores.remove(st)
                problems = h.finish_store(st)
                self.assertEqual(problems, [])

    def test_random_kv_sequences_cluster(self):
        """The same against two 3-member clusters, request i to member i mod 3."""
        clusters = []
        for impl in ("etcd", None):
            c = h.Cluster(3, impl=impl, token="bollard-differential")
            self._stores += c.members
            c.start()
            c.leader()
            clusters.append(c)
        outcomes, cur = self.run_seed(4, clusters[0].members, clusters[1].members)
        print("3-member clusters, seed 4: %s, final revision %d" % (outcomes, cur), flush=True)


if __name__ == "__main__":
    h.main()
