#!/usr/bin/python3
"""etcd-format snapshots (issue 8), checked with etcd's own tools.

Export: data is loaded into a Bollard store (single puts and multi-put txns over many
revisions, overwrites, deletes, a 20 KB value, leases with keys, a compaction), then
`etcdctl snapshot save` (Maintenance.Snapshot), `etcdctl snapshot status` (revision,
key count, size, the SHA-256 trailer etcd's restore checks), `etcdctl snapshot restore`
and a real etcd 3.4 started on the restored dir must serve every key with the same
value, create/mod revision, version and lease, the same history above the compaction,
the compaction itself, and the leases with their TTLs.

Import: the same history loaded into Debian's etcd 3.4, `etcdctl snapshot save`,
`bollard-store snapshot restore` and bollard-store started on the new dir must serve the
same keys, history, compaction and leases (with their keys), also as a three-member
cluster whose members all restored the one file; a truncated file, a file
missing a page and a file with one flipped byte are refused, leaving no data dir.

Users and roles: made in etcd 3.4 with auth enabled, they survive into Bollard (the same
passwords log in, the same permissions apply) and from there back into a real etcd.

Run by meson with BOLLARD_STORE set (always Bollard for the export and the import;
etcd is the reference that writes or reads the snapshot).
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

ETCDCTL = "/usr/bin/etcdctl"


def etcdctl_local(*args, timeout=60):
    """An etcdctl command that needs no server (snapshot status/restore)."""
    env = h.clean_env({"ETCDCTL_API": "3"})
    p = subprocess.run([ETCDCTL] + list(args), capture_output=True, env=env, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


class SnapshotBase(h.StoreTestCase):
    def ctl(self, s, *args, input=None):
        return self.assertOk(s.etcdctl(*args, input=input))

    def js(self, s, *args):
        return json.loads(self.ctl(s, *args, "-w", "json").out)

    def all_kvs(self, s, rev=0):
        args = ["get", "", "--prefix"] + (["--rev=%d" % rev] if rev else [])
        d = self.js(s, *args)
        return int(d["header"]["revision"]), d.get("kvs") or []

    def leases(self, s):
        d = self.js(s, "lease", "list")
        out = {}
        for le in d.get("leases") or []:
            t = self.js(s, "lease", "timetolive", "%x" % le["id"], "--keys")
            txt = self.ctl(s, "lease", "timetolive", "%x" % le["id"]).out
            m = re.match(r"lease [0-9a-f]+ granted with TTL\((\d+)s\)", txt)
            self.assertIsNotNone(m, txt)
            out[le["id"]] = (int(m.group(1)), sorted(t.get("keys") or []))
        return out

    def load(self, s):
        """Writes a known history; returns (compact revision, the revisions above it
        worth reading back)."""
        c = s.client()
        try:
            for i in range(300):
                c.put("k/%04d" % i, "v-%04d-%s" % (i, "." * (i % 50)))
            for t in range(5):  # multi-put txns: several sub revisions per main revision
                c.transaction(compare=[], success=[c.transactions.put("t/%02d/%03d" % (t, j),
                                                                       "tv%d" % j)
                                                   for j in range(40)], failure=[])
            for i in range(0, 60, 3):  # overwrites: versions > 1
                c.put("k/%04d" % i, "w-%04d" % i)
            c.put("big", "".join(chr(ord("a") + j % 26) for j in range(20000)))
        finally:
            c.close()
        lease = self.ctl(s, "lease", "grant", "600").out.split()[1]
        self.ctl(s, "put", "--lease=" + lease, "leased/a", "A")
        self.ctl(s, "put", "--lease=" + lease, "leased/b", "B")
        lease2 = self.ctl(s, "lease", "grant", "3600").out.split()[1]
        self.ctl(s, "del", "k/0010", "k/0020")            # 10 tombstones in one revision
        rev, _ = self.all_kvs(s)
        compact = rev - 5
        self.ctl(s, "compaction", "--physical", str(compact))
        self.ctl(s, "put", "k/0000", "after-compaction")
        self.ctl(s, "del", "k/0001")
        self.ctl(s, "put", "k/0001", "again")               # new generation: version 1
        self.ctl(s, "put", "--lease=" + lease2, "leased/c", "C")
        rev, _ = self.all_kvs(s)
        return compact, list(range(compact, rev + 1)), (lease, lease2)


class Export(SnapshotBase):

    def test_save_status_restore_serve(self):
        b = self.store(impl="bollard")
        compact, revs, _ = self.load(b)
        want_rev, want_kvs = self.all_kvs(b)
        want_hist = {r: self.all_kvs(b, r)[1] for r in revs}
        want_leases = self.leases(b)
        self.assertEqual(len(want_leases), 2)
        self.assertEqual(len(want_kvs), 300 + 200 + 1 + 3 - 10)

        snap = os.path.join(b.tmp, "bollard.snap")
        self.ctl(b, "snapshot", "save", snap)
        data = open(snap, "rb").read()
        db, trailer = data[:-32], data[-32:]
        # db + sha256(db), as etcd's: restore finds the trailer by size % 512 == 32
        self.assertEqual(len(data) % 512, 32)
        self.assertEqual(hashlib.sha256(db).digest(), trailer)

        rc, out, err = etcdctl_local("snapshot", "status", snap, "-w", "json")
        self.assertEqual(rc, 0, err)
        st = json.loads(out)
        print("snapshot status:", st, "file bytes:", len(data), flush=True)
        self.assertEqual(st["revision"], want_rev)
        self.assertEqual(st["totalSize"], len(db))
        self.assertNotEqual(st["hash"], 0)
        # a second save without writes in between is the same file (a deterministic export)
        snap2 = os.path.join(b.tmp, "bollard2.snap")
        self.ctl(b, "snapshot", "save", snap2)
        self.assertEqual(open(snap2, "rb").read(), data)

        # etcd restores it and serves everything Bollard had.
        e = self.store(impl="etcd", name="restored", start=False)
        rc, out, err = etcdctl_local(
            "snapshot", "restore", snap, "--data-dir", e.data_dir, "--name", "restored",
            "--initial-cluster", "restored=" + e.peer_url,
            "--initial-cluster-token", "bollard-it",
            "--initial-advertise-peer-urls", e.peer_url)
        self.assertEqual(rc, 0, out + err)
        e.start()
        got_rev, got_kvs = self.all_kvs(e)
        self.assertEqual(got_rev, want_rev)
        self.assertEqual(got_kvs, want_kvs)
        for r in revs:
            self.assertEqual(self.all_kvs(e, r)[1], want_hist[r], "at revision %d" % r)
        r = e.etcdctl("get", "k/0000", "--rev=%d" % (compact - 1))
        self.assertEtcdError(r, "etcdserver: mvcc: required revision has been compacted")
        self.assertEqual(self.leases(e), want_leases)
        # etcd's own snapshot of what it restored has the same revision and the same
        # entries plus one: etcd 3.4's restore adds the new member to the members bucket
        # next to the exported one (it does the same to its own snapshots)
        esnap = os.path.join(b.tmp, "etcd.snap")
        self.ctl(e, "snapshot", "save", esnap)
        rc, out, err = etcdctl_local("snapshot", "status", esnap, "-w", "json")
        self.assertEqual(rc, 0, err)
        est = json.loads(out)
        self.assertEqual((est["revision"], est["totalKey"]), (st["revision"], st["totalKey"] + 1))
        # etcd goes on from there: the next write gets the next revision
        d = self.js(e, "put", "new", "x")
        self.assertEqual(int(d["header"]["revision"]), want_rev + 1)

    def test_empty_store(self):
        b = self.store(impl="bollard")
        snap = os.path.join(b.tmp, "empty.snap")
        self.ctl(b, "snapshot", "save", snap)
        rc, out, err = etcdctl_local("snapshot", "status", snap, "-w", "json")
        self.assertEqual(rc, 0, err)
        st = json.loads(out)
        # authRevision, clusterVersion, the member, consistent_index
        self.assertEqual(st["totalKey"], 4)
        self.assertEqual(st["revision"], 0)


class Import(SnapshotBase):
    """etcd -> Bollard: the same history loaded into Debian's etcd 3.4, `etcdctl snapshot
    save`, `bollard-store snapshot restore`, bollard-store started on the new dir serves
    every key at every revision above the compaction (value, create/mod revision,
    version, lease), the compaction, and the leases with their TTLs and keys."""

    def restore(self, snap, data_dir, name, peer_url, *extra, initial=None):
        argv = [h.store_binary("bollard"), "snapshot", "restore", snap, "--data-dir", data_dir,
                "--name", name, "--initial-cluster", initial or "%s=%s" % (name, peer_url),
                "--initial-cluster-token", "bollard-it",
                "--initial-advertise-peer-urls", peer_url] + list(extra)
        p = subprocess.run(argv, capture_output=True, timeout=120)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def test_etcd_to_bollard(self):
        e = self.store(impl="etcd")
        compact, revs, _ = self.load(e)
        want_rev, want_kvs = self.all_kvs(e)
        want_hist = {r: self.all_kvs(e, r)[1] for r in revs}
        want_leases = self.leases(e)
        self.assertEqual(len(want_leases), 2)
        snap = os.path.join(e.tmp, "etcd.snap")
        self.ctl(e, "snapshot", "save", snap)

        b = self.store(impl="bollard", name="imported", start=False)
        rc, out, err = self.restore(snap, b.data_dir, "imported", b.peer_url)
        self.assertEqual(rc, 0, out + err)
        print("restore:", out.strip(), flush=True)
        self.assertIn("revision %d, compacted %d" % (want_rev, compact), out)
        b.start()
        got_rev, got_kvs = self.all_kvs(b)
        self.assertEqual(got_rev, want_rev)
        self.assertEqual(got_kvs, want_kvs)
        for r in revs:
            self.assertEqual(self.all_kvs(b, r)[1], want_hist[r], "at revision %d" % r)
        r = b.etcdctl("get", "k/0000", "--rev=%d" % (compact - 1))
        self.assertEtcdError(r, "etcdserver: mvcc: required revision has been compacted")
        self.assertEqual(self.leases(b), want_leases)
        # the key/lease index came along: revoking a lease deletes its keys
        lid = sorted(want_leases)[0]
        self.ctl(b, "lease", "revoke", "%x" % lid)
        for k in want_leases[lid][1]:
            self.assertEqual(self.js(b, "get", k).get("kvs"), None)
        # Bollard goes on from there: the next write gets the next revisions
        d = self.js(b, "put", "new", "x")
        self.assertEqual(int(d["header"]["revision"]), want_rev + 2)
        # and back: Bollard's snapshot restores into etcd with the same history
        snap2 = os.path.join(b.tmp, "bollard.snap")
        self.ctl(b, "snapshot", "save", snap2)
        rc, out, err = etcdctl_local("snapshot", "status", snap2, "-w", "json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["revision"], want_rev + 2)

    def test_users_and_roles(self):
        """Users (with their bcrypt hashes), roles with their permissions and the auth
        flag and revision come along both ways: etcd -> Bollard -> etcd, and the same
        passwords log in everywhere."""
        root, alice = ["--user", "root:rootpw"], ["--user", "alice:alicepw"]
        e = self.store(impl="etcd")
        for args in (["user", "add", "root:rootpw"], ["user", "add", "alice:alicepw"],
                     ["role", "add", "app"],
                     ["role", "grant-permission", "app", "readwrite", "/app/", "--prefix"],
                     ["role", "grant-permission", "app", "read", "cfg"],
                     ["user", "grant-role", "alice", "app"], ["auth", "enable"]):
            self.ctl(e, *args)
        self.ctl(e, *root, "put", "/app/x", "1")
        want_users = self.ctl(e, *root, "user", "list").out
        want_role = self.ctl(e, *root, "role", "get", "app").out
        want_alice = self.ctl(e, *root, "user", "get", "alice").out
        snap = os.path.join(e.tmp, "etcd-auth.snap")
        self.ctl(e, *root, "snapshot", "save", snap)

        b = self.store(impl="bollard", name="imported", start=False)
        rc, out, err = self.restore(snap, b.data_dir, "imported", b.peer_url)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("2 users, 2 roles, auth enabled", out)
        b.start()
        self.check_auth(b, root, alice, want_users, want_role, want_alice)

        # and back into a real etcd
        snap2 = os.path.join(b.tmp, "bollard-auth.snap")
        self.ctl(b, *root, "snapshot", "save", snap2)
        e2 = self.store(impl="etcd", name="back", start=False)
        rc, out, err = etcdctl_local(
            "snapshot", "restore", snap2, "--data-dir", e2.data_dir, "--name", "back",
            "--initial-cluster", "back=" + e2.peer_url, "--initial-cluster-token", "back",
            "--initial-advertise-peer-urls", e2.peer_url)
        self.assertEqual(rc, 0, out + err)
        e2.start()
        self.check_auth(e2, root, alice, want_users, want_role, want_alice)

    def check_auth(self, s, root, alice, want_users, want_role, want_alice):
        self.assertEqual(self.ctl(s, *root, "user", "list").out, want_users)
        self.assertEqual(self.ctl(s, *root, "role", "get", "app").out, want_role)
        self.assertEqual(self.ctl(s, *root, "user", "get", "alice").out, want_alice)
        self.assertEqual(self.ctl(s, *alice, "get", "/app/x", "--print-value-only").out, "1\n")
        self.ctl(s, *alice, "put", "/app/y", "2")
        self.assertEtcdError(s.etcdctl(*alice, "put", "cfg", "x"), "etcdserver: permission denied")
        self.assertEtcdError(s.etcdctl("get", "/app/x"), "etcdserver: user name is empty")
        self.assertEtcdError(s.etcdctl("--user", "alice:wrong", "get", "/app/x"),
                             "etcdserver: authentication failed, invalid user ID or password")

    def test_three_members(self):
        """Every member restores the same file and the three bootstrap one cluster."""
        e = self.store(impl="etcd")
        for i in range(40):
            self.ctl(e, "put", "m/%02d" % (i % 10), "v%d" % i)
        self.ctl(e, "del", "m/05")
        lease = self.ctl(e, "lease", "grant", "900").out.split()[1]
        self.ctl(e, "put", "--lease=" + lease, "m/leased", "L")
        want_rev, want_kvs = self.all_kvs(e)
        want_leases = self.leases(e)
        snap = os.path.join(e.tmp, "etcd.snap")
        self.ctl(e, "snapshot", "save", snap)
        c = h.Cluster(3, impl="bollard", token="bollard-import")
        self._stores += c.members
        initial = ",".join("%s=%s" % (m.name, m.peer_url) for m in c.members)
        for m in c.members:
            rc, out, err = self.restore(snap, m.data_dir, m.name, m.peer_url, initial=initial)
            self.assertEqual(rc, 0, out + err)
        c.start()
        c.leader()
        for m in c.members:
            self.assertEqual(self.all_kvs(m, want_rev), (want_rev, want_kvs), m.name)
        self.assertEqual(self.leases(c.members[1]), want_leases)
        d = self.js(c.members[2], "put", "after", "x")
        self.assertEqual(int(d["header"]["revision"]), want_rev + 1)
        for m in c.members:
            for _ in range(100):
                got = self.js(m, "get", "after", "--consistency=s").get("kvs")
                if got:
                    break
                time.sleep(0.05)
            self.assertEqual(int(got[0]["mod_revision"]), want_rev + 1, m.name)

    def test_corrupt_refused(self):
        e = self.store(impl="etcd")
        self.ctl(e, "put", "a", "1")
        self.ctl(e, "put", "b", "x" * 5000)
        snap = os.path.join(e.tmp, "etcd.snap")
        self.ctl(e, "snapshot", "save", snap)
        data = open(snap, "rb").read()
        cases = {
            "truncated": (data[:len(data) // 2], "truncated"),
            "truncated-page": (data[:-32 - 4096] + hashlib.sha256(data[:-32 - 4096]).digest(),
                               None),
            "flipped": (data[:len(data) // 3] + bytes([data[len(data) // 3] ^ 0x10]) +
                        data[len(data) // 3 + 1:], "snapshot hash mismatch"),
        }
        parent = os.path.join(e.tmp, "restores")
        os.mkdir(parent)
        for name, (blob, msg) in cases.items():
            path = os.path.join(e.tmp, name + ".snap")
            with open(path, "wb") as f:
                f.write(blob)
            dd = os.path.join(parent, name + ".etcd")
            rc, out, err = self.restore(path, dd, "x", "http://127.0.0.1:1")
            self.assertNotEqual(rc, 0, name)
            print(name, "->", err.strip(), flush=True)
            if msg:
                self.assertIn(msg, err, name)
            self.assertEqual(os.listdir(parent), [], name)  # no data dir, no temp dir
        # the intact file restores; then the same data dir is refused
        dd = os.path.join(parent, "ok.etcd")
        rc, out, err = self.restore(snap, dd, "x", "http://127.0.0.1:1")
        self.assertEqual(rc, 0, out + err)
        self.assertTrue(os.path.exists(os.path.join(dd, "member", "db", "data.mdb")))
        rc, out, err = self.restore(snap, dd, "x", "http://127.0.0.1:1")
        self.assertNotEqual(rc, 0)
        self.assertIn("exists", err)


if __name__ == "__main__":
    h.main()
