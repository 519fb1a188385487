#!/usr/bin/python3
"""etcdctl 3.4 (ETCDCTL_API=3) against one store: KV, txn, compaction, maintenance.

Run by meson with BOLLARD_STORE set; STORE_IMPL=etcd runs it against Debian's etcd.
Each test works under its own key prefix on the class's shared store; tests that need
the whole key space or a fixed revision history use a fresh store.
"""

import base64
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402


def b64(s):
    return base64.b64encode(s.encode()).decode()


def unb64(s):
    return base64.b64decode(s).decode()


class EtcdctlBase:
    def ctl(self, *args, input=None):
        return self.assertOk(self.s.etcdctl(*args, input=input))

    def out(self, *args, input=None):
        return self.ctl(*args, input=input).out

    def js(self, *args, input=None):
        r = self.ctl(*args, "-w", "json", input=input)
        try:
            return json.loads(r.out)
        except ValueError:
            self.fail("not JSON: %r" % r)

    def rev(self):
        return int(self.js("get", "rev-probe-nonexistent")["header"]["revision"])

    def put_all(self, pairs):
        for k, v in pairs:
            self.assertEqual(self.out("put", k, v), "OK\n")

    def keys(self, *args):
        d = self.js("get", *args)
        return [unb64(kv["key"]) for kv in d.get("kvs", [])]


class KV(EtcdctlBase, h.SharedStoreTestCase):

    def setUp(self):
        super().setUp()
        self.p = self._testMethodName + "/"

    def test_put_get_simple(self):
        k = self.p + "foo"
        self.assertEqual(self.out("put", k, "bar"), "OK\n")
        self.assertEqual(self.out("get", k), "%s\nbar\n" % k)
        self.assertEqual(self.out("get", k, "--print-value-only"), "bar\n")
        self.assertEqual(self.out("get", self.p + "missing"), "")
        d = self.js("get", k)
        self.assertEqual(d["count"], 1)
        self.assertNotIn("more", d)
        kv = d["kvs"][0]
        self.assertEqual(kv["key"], b64(k))
        self.assertEqual(kv["value"], b64("bar"))
        self.assertEqual(kv["version"], 1)
        self.assertEqual(kv["create_revision"], kv["mod_revision"])
        self.assertEqual(kv["mod_revision"], d["header"]["revision"])
        for f in ("cluster_id", "member_id", "revision", "raft_term"):
            self.assertIn(f, d["header"])

    def test_overwrite_version_and_prev_kv(self):
        k = self.p + "k"
        self.put_all([(k, "v1")])
        first = self.js("get", k)["kvs"][0]
        self.assertEqual(self.out("put", k, "v2", "--prev-kv"), "OK\n%s\nv1\n" % k)
        self.put_all([(k, "v3")])
        kv = self.js("get", k)["kvs"][0]
        self.assertEqual(kv["version"], 3)
        self.assertEqual(kv["create_revision"], first["create_revision"])
        self.assertEqual(kv["mod_revision"], first["mod_revision"] + 2)
        self.assertEqual(unb64(kv["value"]), "v3")
        # put -w json: header only, revision = the new mod revision
        d = self.js("put", k, "v4", "--prev-kv")
        self.assertEqual(d["header"]["revision"], kv["mod_revision"] + 1)
        self.assertEqual(unb64(d["prev_kv"]["value"]), "v3")

    def test_prefix_range_limit(self):
        p = self.p
        self.put_all([(p + "a", "1"), (p + "b", "2"), (p + "c", "3"), (p + "d", "4"),
                      (self.p[:-1] + "0", "outside")])  # "test_x0" sorts after "test_x/"
        self.assertEqual(self.keys(p, "--prefix"), [p + "a", p + "b", p + "c", p + "d"])
        # explicit [key, range_end)
        self.assertEqual(self.keys(p + "b", p + "d"), [p + "b", p + "c"])
        d = self.js("get", p, "--prefix", "--limit", "2")
        self.assertEqual([unb64(kv["key"]) for kv in d["kvs"]], [p + "a", p + "b"])
        self.assertEqual(d["count"], 4)
        self.assertTrue(d["more"])
        d = self.js("get", p, "--prefix", "--limit", "4")
        self.assertEqual(len(d["kvs"]), 4)
        self.assertNotIn("more", d)
        self.assertEqual(self.out("get", p, "--prefix", "--limit", "1"), p + "a\n1\n")

    def test_keys_only_and_print_value_only(self):
        p = self.p
        self.put_all([(p + "a", "va"), (p + "b", "vb")])
        self.assertEqual(self.out("get", p, "--prefix", "--keys-only"),
                         "%sa\n\n%sb\n\n" % (p, p))
        d = self.js("get", p, "--prefix", "--keys-only")
        self.assertEqual(d["count"], 2)
        for kv in d["kvs"]:
            self.assertNotIn("value", kv)
        self.assertEqual(self.out("get", p, "--prefix", "--print-value-only"), "va\nvb\n")

    def test_sort(self):
        p = self.p
        # created in order c, a, b; values reverse of keys; b modified twice more
        self.put_all([(p + "c", "1"), (p + "a", "3"), (p + "b", "2"), (p + "b", "2"),
                      (p + "b", "2")])
        self.put_all([(p + "a", "3")])
        cases = [
            (["--sort-by=KEY"], ["a", "b", "c"]),
            (["--sort-by=KEY", "--order=DESCEND"], ["c", "b", "a"]),
            (["--order=DESCEND"], ["c", "b", "a"]),
            (["--sort-by=VALUE"], ["c", "b", "a"]),
            (["--sort-by=VALUE", "--order=DESCEND"], ["a", "b", "c"]),
            (["--sort-by=CREATE"], ["c", "a", "b"]),
            (["--sort-by=CREATE", "--order=DESCEND"], ["b", "a", "c"]),
            (["--sort-by=MODIFY"], ["c", "b", "a"]),
            (["--sort-by=MODIFY", "--order=DESCEND"], ["a", "b", "c"]),
            (["--sort-by=VERSION", "--order=DESCEND"], ["b", "a", "c"]),
            (["--sort-by=CREATE", "--order=DESCEND", "--limit=2"], ["b", "a"]),
        ]
        for opts, want in cases:
            got = self.keys(p, "--prefix", *opts)
            self.assertEqual(got, [p + x for x in want], opts)
        d = self.js("get", p, "--prefix", "--sort-by=MODIFY", "--order=DESCEND", "--limit=1")
        self.assertEqual(d["count"], 3)
        self.assertTrue(d["more"])

    def test_historic_rev(self):
        k = self.p + "k"
        self.put_all([(k, "a")])
        r1 = self.rev()
        self.put_all([(k, "b")])
        r2 = self.rev()
        self.assertEqual(self.out("del", k), "1\n")
        r3 = self.rev()
        self.assertEqual(self.out("get", k, "--rev", str(r1), "--print-value-only"), "a\n")
        self.assertEqual(self.out("get", k, "--rev", str(r2), "--print-value-only"), "b\n")
        self.assertEqual(self.out("get", k, "--rev", str(r3)), "")
        self.assertEqual(self.out("get", k), "")
        d = self.js("get", k, "--rev", str(r1))
        # the header carries the current revision, not the requested one
        self.assertEqual(d["header"]["revision"], r3)
        self.assertEqual(d["kvs"][0]["mod_revision"], r1)

    def test_future_revision(self):
        r = self.s.etcdctl("get", "x", "--rev", str(self.rev() + 1000))
        self.assertEtcdError(r, "etcdserver: mvcc: required revision is a future revision")

    def test_serializable(self):
        k = self.p + "k"
        self.put_all([(k, "v")])
        self.assertEqual(self.out("get", k, "--consistency=s"), "%s\nv\n" % k)

    def test_del_variants(self):
        p = self.p
        self.put_all([(p + x, x) for x in "abcdef"])
        self.assertEqual(self.out("del", p + "a"), "1\n")
        self.assertEqual(self.out("del", p + "a"), "0\n")
        self.assertEqual(self.out("del", p + "b", "--prev-kv"), "1\n%sb\nb\n" % p)
        self.assertEqual(self.out("del", p + "c", p + "e"), "2\n")   # [c, e)
        self.assertEqual(self.keys(p, "--prefix"), [p + "e", p + "f"])
        self.assertEqual(self.out("del", p, "--prefix", "--prev-kv"),
                         "2\n%se\ne\n%sf\nf\n" % (p, p))
        self.assertEqual(self.out("get", p, "--prefix"), "")
        d = self.js("del", p + "zz")
        self.assertNotIn("deleted", d)  # zero is omitted by etcdctl's JSON

    def test_txn_value_compare(self):
        k, o = self.p + "k", self.p + "other"
        self.put_all([(k, "v1")])
        script = 'value("%s") = "v1"\n\nput %s v2\nget %s\n\nput %s failed\n\n' % (k, k, k, o)
        self.assertEqual(self.out("txn", input=script), "SUCCESS\n\nOK\n\n%s\nv2\n" % k)
        # same txn again: value is now v2 -> failure branch
        self.assertEqual(self.out("txn", input=script), "FAILURE\n\nOK\n")
        self.assertEqual(self.out("get", o, "--print-value-only"), "failed\n")
        self.assertEqual(self.out("txn", input='value("%s") != "v1"\n\ndel %s\n\n\n' % (k, o)),
                         "SUCCESS\n\n1\n")
        self.assertEqual(self.out("txn", input='value("%s") > "v1"\nvalue("%s") < "v3"\n\n'
                                  'get %s\n\n\n' % (k, k, k)),
                         "SUCCESS\n\n%s\nv2\n" % k)

    def test_txn_interactive(self):
        k = self.p + "k"
        self.put_all([(k, "v1")])
        out = self.out("txn", "-i", input='version("%s") = "1"\n\nput %s v2\n\nget %s\n\n'
                       % (k, k, k))
        self.assertEqual(out, "compares:\nsuccess requests (get, put, del):\n"
                              "failure requests (get, put, del):\nSUCCESS\n\nOK\n")
        out = self.out("txn", "-i", input='version("%s") = "1"\n\nput %s v3\n\nget %s\n\n'
                       % (k, k, k))
        self.assertTrue(out.endswith("FAILURE\n\n%s\nv2\n" % k), out)

    def test_txn_version_create_mod(self):
        k, m = self.p + "k", self.p + "missing"
        self.put_all([(k, "a")])
        kv = self.js("get", k)["kvs"][0]
        cr, mr = kv["create_revision"], kv["mod_revision"]
        self.put_all([(k, "b")])
        cases = [
            ('version("%s") = "2"' % k, "SUCCESS"),
            ('version("%s") > "2"' % k, "FAILURE"),
            ('version("%s") < "3"' % k, "SUCCESS"),
            ('version("%s") = "0"' % m, "SUCCESS"),    # a missing key has version 0
            ('create("%s") = "%d"' % (k, cr), "SUCCESS"),
            ('create("%s") > "%d"' % (k, cr), "FAILURE"),
            ('create("%s") = "0"' % m, "SUCCESS"),
            ('mod("%s") = "%d"' % (k, mr), "FAILURE"),
            ('mod("%s") = "%d"' % (k, mr + 1), "SUCCESS"),
            ('mod("%s") > "%d"' % (k, mr), "SUCCESS"),
            ('mod("%s") != "%d"' % (k, mr + 1), "FAILURE"),
            ('value("%s") = "x"' % m, "FAILURE"),       # value compare on a missing key fails
        ]
        for cmp, want in cases:
            out = self.out("txn", input="%s\n\n\n\n" % cmp)
            self.assertEqual(out.splitlines()[0], want, cmp)
        # several compares: all must hold
        out = self.out("txn", input='version("%s") = "2"\nversion("%s") = "1"\n\n\n\n' % (k, k))
        self.assertEqual(out.splitlines()[0], "FAILURE")

    def test_txn_json(self):
        k, o = self.p + "k", self.p + "o"
        self.put_all([(k, "a"), (o, "x")])
        before = self.rev()
        d = self.js("txn", input='value("%s") = "a"\n\nput %s b\nget %s\ndel %s\n\n\n'
                    % (k, k, k, o))
        self.assertTrue(d["succeeded"])
        self.assertEqual(d["header"]["revision"], before + 1)   # one revision per txn
        rs = d["responses"]
        self.assertIn("ResponsePut", rs[0]["Response"])
        rng = rs[1]["Response"]["ResponseRange"]
        self.assertEqual(unb64(rng["kvs"][0]["value"]), "b")
        self.assertEqual(rng["kvs"][0]["mod_revision"], before + 1)
        self.assertEqual(rs[2]["Response"]["ResponseDeleteRange"]["deleted"], 1)
        self.assertEqual(self.out("get", o), "")

    def test_endpoint_status(self):
        d = self.js("endpoint", "status")
        self.assertEqual(len(d), 1)
        self.assertEqual(d[0]["Endpoint"], self.s.endpoint)
        st = d[0]["Status"]
        for f in ("header", "version", "dbSize", "leader", "raftIndex", "raftTerm",
                  "raftAppliedIndex"):
            self.assertIn(f, st)
        self.assertEqual(st["leader"], st["header"]["member_id"])
        self.assertGreater(st["dbSize"], 0)
        self.assertGreater(st["raftIndex"], 0)
        self.assertGreaterEqual(st["raftTerm"], 1)
        self.assertEqual(st["header"]["revision"], self.rev())
        self.assertNotIn("errors", st)
        simple = self.out("endpoint", "status")
        self.assertTrue(simple.startswith(self.s.endpoint + ", %x, " % st["header"]["member_id"]),
                        simple)

    def test_endpoint_health(self):
        r = self.ctl("endpoint", "health")
        self.assertRegex(r.out + r.err, r"^%s is healthy: successfully committed proposal: "
                         r"took = " % re.escape(self.s.endpoint))
        d = self.js("endpoint", "health")
        self.assertTrue(d[0]["health"])

    def test_member_list(self):
        self.assertRegex(self.out("member", "list"),
                         r"^[0-9a-f]+, started, default, %s, %s, false\n$"
                         % (re.escape(self.s.peer_url), re.escape(self.s.client_url)))
        d = self.js("member", "list")
        self.assertEqual(len(d["members"]), 1)
        m = d["members"][0]
        self.assertEqual(m["ID"], d["header"]["member_id"])
        self.assertEqual(m["name"], "default")
        self.assertEqual(m["peerURLs"], [self.s.peer_url])
        self.assertEqual(m["clientURLs"], [self.s.client_url])

    def test_alarm_list_empty(self):
        self.assertEqual(self.out("alarm", "list"), "")

    def test_defrag_keeps_data(self):
        k = self.p + "k"
        self.put_all([(k, "v")])
        self.assertEqual(self.out("defrag"),
                         "Finished defragmenting etcd member[%s]\n" % self.s.endpoint)
        self.assertEqual(self.out("get", k, "--print-value-only"), "v\n")

    def test_snapshot_save(self):
        k = self.p + "k"
        self.put_all([(k, "v")])
        path = os.path.join(self.s.tmp, "snap.db")
        self.assertEqual(self.out("snapshot", "save", path), "Snapshot saved at %s\n" % path)
        self.assertGreater(os.path.getsize(path), 0)
        self.assertEqual(self.out("get", k, "--print-value-only"), "v\n")

    def test_user_flag_auth_not_enabled(self):
        # clientv3 calls Authenticate and tolerates "authentication is not enabled"
        k = self.p + "k"
        r = self.s.etcdctl("--user", "root:pw", "put", k, "v")
        self.assertOk(r)
        self.assertIn("etcdserver: authentication is not enabled", r.err)
        self.assertIn("FailedPrecondition", r.err)
        self.assertEqual(self.out("get", k, "--print-value-only"), "v\n")

    def test_from_key(self):
        # keys under "~" (0x7e) sort after every other test's keys in this class
        self.put_all([("~fk/a", "1"), ("~fk/b", "2"), ("~fl", "3")])
        self.assertEqual(self.keys("~fk/b", "--from-key"), ["~fk/b", "~fl"])
        self.assertEqual(self.out("get", "~fk/b", "--from-key", "--keys-only", "--limit=1"),
                         "~fk/b\n\n")
        self.assertEqual(self.out("del", "~fk/b", "--from-key", "--prev-kv"),
                         "2\n~fk/b\n2\n~fl\n3\n")
        self.assertEqual(self.keys("~", "--from-key"), ["~fk/a"])


class FreshStore(EtcdctlBase, h.StoreTestCase):
    """Tests that need a known history: a store of their own."""

    def setUp(self):
        super().setUp()
        self.s = self.store()

    def test_revisions_start_at_one(self):
        self.assertEqual(self.rev(), 1)
        self.put_all([("a", "1")])
        self.assertEqual(self.js("get", "a")["kvs"][0]["create_revision"], 2)
        self.assertEqual(self.keys("", "--from-key"), ["a"])
        self.put_all([("\x01", "low")])
        self.assertEqual(self.keys("\x01", "--from-key"), ["\x01", "a"])
        self.assertEqual(self.keys("\x02", "--from-key"), ["a"])

    def test_compaction(self):
        for i in range(5):
            self.put_all([("k", "v%d" % i)])           # revisions 2..6
        self.assertEqual(self.out("compaction", "4"), "compacted revision 4\n")
        compacted = "etcdserver: mvcc: required revision has been compacted"
        self.assertEtcdError(self.s.etcdctl("get", "k", "--rev", "3"), compacted)
        self.assertEtcdError(self.s.etcdctl("get", "k", "--rev", "2"), compacted)
        # the compaction revision itself and later ones stay readable
        self.assertEqual(self.out("get", "k", "--rev", "4", "--print-value-only"), "v2\n")
        self.assertEqual(self.out("get", "k", "--rev", "5", "--print-value-only"), "v3\n")
        self.assertEqual(self.out("get", "k", "--print-value-only"), "v4\n")
        self.assertEtcdError(self.s.etcdctl("compaction", "3"), compacted)
        self.assertEtcdError(self.s.etcdctl("compaction", "4"), compacted)
        self.assertEtcdError(self.s.etcdctl("compaction", "100"),
                             "etcdserver: mvcc: required revision is a future revision")
        self.assertEqual(self.out("compaction", "--physical", "6"), "compacted revision 6\n")
        self.assertEtcdError(self.s.etcdctl("get", "k", "--rev", "5"), compacted)
        self.assertEqual(self.out("get", "k", "--rev", "6", "--print-value-only"), "v4\n")
        # hashkv reports the compaction revision
        d = self.js("endpoint", "hashkv")
        self.assertEqual(d[0]["HashKV"]["compact_revision"], 6)
        # compaction survives a restart
        rc = self.s.terminate()
        self.assertIn(rc, self.s.clean_exit_codes())
        self.s.restart()
        self.assertEtcdError(self.s.etcdctl("get", "k", "--rev", "5"), compacted)
        self.assertEqual(self.out("get", "k", "--print-value-only"), "v4\n")

    def test_hashkv(self):
        self.put_all([("a", "1"), ("b", "2")])
        d1 = self.js("endpoint", "hashkv")[0]["HashKV"]
        self.assertIn("hash", d1)
        self.assertEqual(d1["header"]["revision"], 3)
        self.assertRegex(self.out("endpoint", "hashkv"),
                         r"^%s, \d+\n$" % re.escape(self.s.endpoint))
        self.assertEqual(self.js("endpoint", "hashkv")[0]["HashKV"]["hash"], d1["hash"])
        self.put_all([("a", "changed")])
        d2 = self.js("endpoint", "hashkv")[0]["HashKV"]
        self.assertNotEqual(d2["hash"], d1["hash"])
        # the hash up to a fixed revision does not move when later revisions are added
        at3 = self.js("endpoint", "hashkv", "--rev", "3")[0]["HashKV"]["hash"]
        self.assertEqual(at3, d1["hash"])
        self.put_all([("c", "3")])
        self.assertEqual(self.js("endpoint", "hashkv", "--rev", "3")[0]["HashKV"]["hash"], at3)


if __name__ == "__main__":
    h.main()
