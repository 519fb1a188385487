#!/usr/bin/python3
"""etcdctl 3.4 `lease` and `put --lease` against one store: grant (etcd's minimum TTL
rule), timetolive (--keys), list, keep-alive (--once and in the background for a few
seconds), revoke (attached keys deleted in one revision), a key disappearing when its
lease expires, --ignore-lease, and the errors for unknown leases.

Run by meson with BOLLARD_STORE set; STORE_IMPL=etcd runs it against Debian's etcd 3.4.

etcd's minimum lease TTL, with the default --heartbeat-interval=100 and
--election-timeout=1000 (10 election ticks): ceil(3 * 10 / 2 ticks * 100 ms) = 2 s;
a lower TTL (0 and 1 included) is raised to 2 s at grant. Expiry is checked by the
leader's lessor every 500 ms, so a lease expires between TTL and TTL + ~0.6 s after its
last grant or keep-alive.
"""

import base64
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

NOT_FOUND = "etcdserver: requested lease not found"


def unb64(s):
    return base64.b64decode(s).decode()


class LeaseBase:
    def ctl(self, *args, input=None):
        return self.assertOk(self.s.etcdctl(*args, input=input))

    def out(self, *args, input=None):
        return self.ctl(*args, input=input).out

    def js(self, *args):
        return json.loads(self.ctl(*args, "-w", "json").out)

    def rev(self):
        return int(self.js("get", "rev-probe-nonexistent")["header"]["revision"])

    def grant(self, ttl, want_ttl=None):
        out = self.out("lease", "grant", str(ttl))
        m = re.fullmatch(r"lease ([0-9a-f]{16}) granted with TTL\((\d+)s\)\n", out)
        self.assertIsNotNone(m, out)
        self.assertEqual(int(m.group(2)), ttl if want_ttl is None else want_ttl, out)
        self.assertNotEqual(int(m.group(1), 16), 0)
        return m.group(1)

    def exists(self, k):
        return self.out("get", k, "--keys-only") != ""

    def ttl_keys(self, lid):
        d = self.js("lease", "timetolive", lid, "--keys")
        return d, sorted(unb64(k) for k in d.get("keys") or [])


class Lease(LeaseBase, h.SharedStoreTestCase):

    def setUp(self):
        super().setUp()
        self.p = self._testMethodName + "/"

    def test_grant_json_and_min_ttl(self):
        d = self.js("lease", "grant", "30")
        self.assertEqual(d["TTL"], 30)
        self.assertGreater(d["ID"], 0)
        self.assertEqual(d.get("Error", ""), "")
        for f in ("cluster_id", "member_id", "revision", "raft_term"):
            self.assertIn(f, d)
        # below the minimum: raised to 2 s (see the module docstring)
        for ttl in (0, 1):
            self.grant(ttl, want_ttl=2)
        self.grant(2)
        self.grant(3)
        # IDs are distinct
        ids = {self.grant(5) for _ in range(5)}
        self.assertEqual(len(ids), 5)
        # a lease grant does not make a revision
        r = self.rev()
        self.grant(7)
        self.assertEqual(self.rev(), r)

    def test_put_lease_timetolive_keys(self):
        p = self.p
        lid = self.grant(100)
        self.assertEqual(self.out("put", "--lease=" + lid, p + "b", "1"), "OK\n")
        self.assertEqual(self.out("put", "--lease=" + lid, p + "a", "2"), "OK\n")
        kv = self.js("get", p + "a")["kvs"][0]
        self.assertEqual(kv["lease"], int(lid, 16))
        out = self.out("lease", "timetolive", lid)
        m = re.fullmatch(r"lease %s granted with TTL\(100s\), remaining\((\d+)s\)\n" % lid, out)
        self.assertIsNotNone(m, out)
        self.assertIn(int(m.group(1)), range(95, 101))
        out = self.out("lease", "timetolive", lid, "--keys")
        m = re.fullmatch(r"lease %s granted with TTL\(100s\), remaining\(\d+s\), "
                         r"attached keys\(\[(.*)\]\)\n" % lid, out)
        self.assertIsNotNone(m, out)
        self.assertEqual(sorted(m.group(1).split(" ")), [p + "a", p + "b"])
        d, keys = self.ttl_keys(lid)
        self.assertEqual(keys, [p + "a", p + "b"])
        self.assertEqual(d["id"], int(lid, 16))
        self.assertEqual(d["granted-ttl"], 100)
        self.assertIn(d["ttl"], range(95, 101))
        # without --keys: no keys in the answer
        self.assertIsNone(self.js("lease", "timetolive", lid)["keys"])
        # put --ignore-lease keeps the lease; a plain put detaches the key
        self.assertEqual(self.out("put", "--ignore-lease", p + "a", "3"), "OK\n")
        kv = self.js("get", p + "a")["kvs"][0]
        self.assertEqual((unb64(kv["value"]), kv["lease"]), ("3", int(lid, 16)))
        self.assertEqual(self.out("put", p + "b", "4"), "OK\n")
        self.assertNotIn("lease", self.js("get", p + "b")["kvs"][0])
        self.assertEqual(self.ttl_keys(lid)[1], [p + "a"])
        # a key moved to another lease
        lid2 = self.grant(100)
        self.assertEqual(self.out("put", "--lease=" + lid2, p + "a", "5"), "OK\n")
        self.assertEqual(self.ttl_keys(lid)[1], [])
        self.assertEqual(self.ttl_keys(lid2)[1], [p + "a"])
        # --ignore-lease on a key without a lease: no lease, value updated
        self.assertEqual(self.out("put", "--ignore-lease", p + "b", "6"), "OK\n")
        kv = self.js("get", p + "b")["kvs"][0]
        self.assertNotIn("lease", kv)
        # a deleted key leaves its lease
        self.assertEqual(self.out("del", p + "a"), "1\n")
        self.assertEqual(self.ttl_keys(lid2)[1], [])
        for x in (lid, lid2):
            self.assertEqual(self.out("lease", "revoke", x), "lease %s revoked\n" % x)
        self.assertEqual(self.out("get", p + "b", "--print-value-only"), "6\n")

    def test_revoke_deletes_keys_in_one_revision(self):
        p = self.p
        lid = self.grant(100)
        for k in ("x", "y", "z"):
            self.ctl("put", "--lease=" + lid, p + k, k)
        self.ctl("put", p + "keep", "k")
        start = self.rev() + 1
        w = self.bg(self.s, "watch", p, "--prefix", "--rev", str(start), "-w", "json")
        self.assertEqual(self.out("lease", "revoke", lid), "lease %s revoked\n" % lid)
        self.assertEqual(self.rev(), start)
        self.assertEqual(self.out("get", p, "--prefix", "--keys-only"), p + "keep\n\n")
        self.assertTrue(w.wait_for(lambda ls: len(ls) >= 1, 10), w)
        time.sleep(0.3)
        rs = [json.loads(l) for l in w.lines()]
        self.assertEqual(len(rs), 1, rs)
        evs = rs[0]["Events"]
        self.assertEqual(sorted(unb64(e["kv"]["key"]) for e in evs),
                         [p + "x", p + "y", p + "z"])
        self.assertTrue(all(e.get("type") == 1 and e["kv"]["mod_revision"] == start
                            for e in evs), evs)
        self.assertEqual(self.out("lease", "timetolive", lid),
                         "lease %s already expired\n" % lid)
        d = self.js("lease", "timetolive", lid, "--keys")
        self.assertEqual((d["ttl"], d["granted-ttl"], d.get("keys")), (-1, 0, None))
        # revoke again, keep-alive, put: not found
        r = self.s.etcdctl("lease", "revoke", lid)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("Error: failed to revoke lease (%s)\n" % NOT_FOUND, r.err)
        r = self.s.etcdctl("lease", "keep-alive", "--once", lid)
        self.assertEqual((r.rc, r.out), (2, ""), r)
        self.assertEqual(r.err, "Error: %s\n" % NOT_FOUND)
        r = self.s.etcdctl("put", "--lease=" + lid, p + "x", "again")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("Error: %s\n" % NOT_FOUND, r.err)
        self.assertEqual(self.out("get", p + "x"), "")
        # a lease revoked with no keys: no revision
        lid2 = self.grant(50)
        r0 = self.rev()
        self.ctl("lease", "revoke", lid2)
        self.assertEqual(self.rev(), r0)

    def test_unknown_lease(self):
        lid = "00000000000004d2"
        self.assertEqual(self.out("lease", "timetolive", "4d2"), "lease %s already expired\n"
                         % lid)
        self.assertEqual(self.out("lease", "timetolive", "4d2", "--keys"),
                         "lease %s already expired\n" % lid)
        r = self.s.etcdctl("lease", "keep-alive", "4d2", timeout=10)
        self.assertEqual((r.rc, r.out, r.err), (0, "lease %s expired or revoked.\n" % lid, ""))
        r = self.s.etcdctl("put", "--lease=4d2", self.p + "k", "v")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("Error: %s\n" % NOT_FOUND, r.err)

    def test_keep_alive_once_and_background(self):
        p = self.p
        lid = self.grant(2)
        self.ctl("put", "--lease=" + lid, p + "k", "v")
        self.assertEqual(self.out("lease", "keep-alive", "--once", lid),
                         "lease %s keepalived with TTL(2)\n" % lid)
        d = self.js("lease", "keep-alive", "--once", lid)
        self.assertEqual((d["ID"], d["TTL"]), (int(lid, 16), 2))
        ka = self.bg(self.s, "lease", "keep-alive", lid)
        t0 = time.monotonic()
        # 4.5 s, more than twice the TTL: the key stays
        while time.monotonic() - t0 < 4.5:
            self.assertTrue(self.exists(p + "k"), "key expired while kept alive: %r" % ka)
            self.assertIsNone(ka.proc.poll(), ka)
            time.sleep(0.3)
        lines = ka.lines()
        self.assertGreaterEqual(len(lines), 4, ka)         # every TTL/3 s
        self.assertEqual(set(lines), {"lease %s keepalived with TTL(2)" % lid})
        self.assertEqual(self.ttl_keys(lid)[0]["granted-ttl"], 2)
        # stop keeping it alive: gone within TTL + the lessor's check interval (+ slack)
        ka.stop(signal.SIGTERM)
        t1 = time.monotonic()
        while self.exists(p + "k"):
            self.assertLess(time.monotonic() - t1, 8, "key outlived its lease")
            time.sleep(0.1)
        self.assertGreater(time.monotonic() - t1, 0.8)
        self.assertEqual(self.out("lease", "timetolive", lid), "lease %s already expired\n"
                         % lid)

    def test_key_disappears_when_lease_expires(self):
        p = self.p
        lid = self.grant(1, want_ttl=2)
        t0 = time.monotonic()
        self.ctl("put", "--lease=" + lid, p + "a", "1")
        self.ctl("put", "--lease=" + lid, p + "b", "2")
        self.ctl("put", p + "c", "3")
        start = self.rev() + 1
        w = self.bg(self.s, "watch", p, "--prefix", "--rev", str(start), "-w", "json")
        time.sleep(max(0, 1.2 - (time.monotonic() - t0)))
        self.assertTrue(self.exists(p + "a"), "expired before its TTL of 2 s")
        while self.exists(p + "a"):
            self.assertLess(time.monotonic() - t0, 8, "key outlived its 2 s lease")
            time.sleep(0.1)
        self.assertFalse(self.exists(p + "b"))
        self.assertTrue(self.exists(p + "c"))
        self.assertTrue(w.wait_for(lambda ls: len(ls) >= 1, 10), w)
        time.sleep(0.3)
        rs = [json.loads(l) for l in w.lines()]
        self.assertEqual(len(rs), 1, rs)
        evs = rs[0]["Events"]
        self.assertEqual([(unb64(e["kv"]["key"]), e.get("type"), e["kv"]["mod_revision"])
                          for e in evs], [(p + "a", 1, start), (p + "b", 1, start)])
        self.assertNotIn(int(lid, 16), [x["id"] for x in self.js("lease", "list")
                                        .get("leases") or []])


class LeaseList(LeaseBase, h.StoreTestCase):

    def test_list(self):
        self.s = self.store()
        self.assertEqual(self.out("lease", "list"), "found 0 leases\n")
        d = self.js("lease", "list")
        self.assertEqual(d.get("leases") or [], [])
        ids = [self.grant(ttl) for ttl in (100, 200, 300)]
        out = self.out("lease", "list")
        lines = out.splitlines()
        self.assertEqual(lines[0], "found 3 leases")
        self.assertEqual(sorted(lines[1:]), sorted(ids))
        d = self.js("lease", "list")
        self.assertEqual(sorted(x["id"] for x in d["leases"]), sorted(int(i, 16) for i in ids))
        self.ctl("lease", "revoke", ids[1])
        self.assertEqual(sorted(self.out("lease", "list").splitlines()[1:]),
                         sorted([ids[0], ids[2]]))
        # leases survive a restart (with their keys)
        self.ctl("put", "--lease=" + ids[0], "k", "v")
        rc = self.s.terminate()
        self.assertIn(rc, self.s.clean_exit_codes())
        self.s.restart()
        self.assertEqual(sorted(self.out("lease", "list").splitlines()[1:]),
                         sorted([ids[0], ids[2]]))
        self.assertEqual(self.ttl_keys(ids[0])[1], ["k"])
        out = self.out("lease", "timetolive", ids[2])
        m = re.fullmatch(r"lease %s granted with TTL\(300s\), remaining\((\d+)s\)\n" % ids[2],
                         out)
        self.assertIsNotNone(m, out)
        self.assertGreater(int(m.group(1)), 250)


if __name__ == "__main__":
    h.main()
