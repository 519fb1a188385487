#!/usr/bin/python3
"""Differential auth test (issue 6): one etcdctl script of users, roles, permissions and
logins against Debian's etcd 3.4 and against the store under test, each on a fresh data
dir; outputs (stdout, stderr, exit status) compared after tests/lib/etcdctl_diff.py's masking
(cluster/member IDs, raft terms and indexes, sizes, ports, timings).

It covers: auth enable refused without root, the root rules (root cannot be deleted or
lose its role, role root cannot be deleted), admin-only calls refused to a limited user,
a user reading itself and its own role, key-range permissions (prefix, key, range,
from-key) of get/put/del/txn (a txn touching one forbidden key refused whole), wrong
passwords and unknown users, a password change invalidating the old password, revoking a
permission, admin-only maintenance (defrag), and auth disable.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etcdctl_diff as ed  # noqa: E402
import storeharness as h  # noqa: E402

ROOT = ["--user", "root:rootpw"]
ALICE = ["--user", "alice:alicepw"]

TXN_FORBIDDEN = 'value("/app/x") = "1"\n\nput /app/t 1\nput /other t\n\nput /app/f 1\n\n'
TXN_ALLOWED = 'value("/app/x") = "1"\n\nput /app/t 1\nget /app/x\n\nput /app/f 1\n\n'
TXN_FORBIDDEN_CMP = 'value("/other") = "1"\n\nput /app/t 2\n\n\n'

# (args, stdin)
SCRIPT = [
    (["auth", "enable"], None),                                   # no root user
    (["user", "add", "root:rootpw"], None),
    (["user", "add", "alice:alicepw"], None),
    (["user", "add", "carol", "--no-password"], None),
    (["role", "add", "app"], None),
    (["role", "add", "ro"], None),
    (["role", "grant-permission", "app", "readwrite", "/app/", "--prefix"], None),
    (["role", "grant-permission", "app", "read", "cfg"], None),
    (["role", "grant-permission", "app", "write", "w1", "w5"], None),
    (["role", "grant-permission", "ro", "read", "z", "--from-key"], None),
    (["role", "grant-permission", "app", "readwrite", "/app/", "--prefix"], None),  # again
    (["user", "grant-role", "alice", "app"], None),
    (["user", "grant-role", "alice", "app"], None),              # already: ignored
    (["user", "grant-role", "alice", "ro"], None),
    (["role", "get", "app"], None),
    (["role", "get", "app", "-w", "json"], None),
    (["user", "get", "alice"], None),
    (["user", "get", "alice", "--detail"], None),
    (["user", "list"], None),
    (["role", "list"], None),
    (["auth", "enable"], None),                                   # adds role root itself
    (["auth", "enable"], None),
    (["put", "/app/x", "1"], None),                               # no credentials
    (["get", "/app/x"], None),
    (ALICE + ["put", "/app/x", "1"], None),
    (ALICE + ["get", "/app/x"], None),
    (ALICE + ["get", "/app/x", "--consistency=s"], None),
    (ALICE + ["put", "/other", "1"], None),
    (ALICE + ["get", "/other"], None),
    (ALICE + ["get", "/app/", "--prefix", "--keys-only"], None),
    (ALICE + ["get", "", "--prefix"], None),
    (ALICE + ["get", "cfg"], None),
    (ALICE + ["put", "cfg", "v"], None),
    (ALICE + ["put", "w2", "v"], None),
    (ALICE + ["get", "w2"], None),
    (ALICE + ["del", "w1", "w5"], None),
    (ALICE + ["del", "w1", "w6"], None),
    (ALICE + ["del", "w2", "--prev-kv"], None),
    (ALICE + ["get", "zz"], None),
    (ALICE + ["get", "z", "--from-key"], None),
    (ALICE + ["get", "y", "--from-key"], None),
    # a permission on "" --prefix under etcd 3.4's interval rules (an empty key compares
    # above every other key there)
    (ROOT + ["role", "grant-permission", "ro", "read", "", "--prefix"], None),
    (ALICE + ["get", "", "--prefix", "--keys-only"], None),
    (ALICE + ["get", "", "--from-key", "--keys-only"], None),
    (ALICE + ["get", "a", "--from-key", "--keys-only"], None),
    (ALICE + ["get", "cfg", "--keys-only"], None),
    (ROOT + ["role", "revoke-permission", "ro", "", "--prefix"], None),
    (ALICE + ["put", "/app/t", "0"], None),
    (ALICE + ["txn"], TXN_FORBIDDEN),
    (ALICE + ["get", "/app/t"], None),                            # not written by that txn
    (ALICE + ["txn"], TXN_FORBIDDEN_CMP),
    (ALICE + ["txn"], TXN_ALLOWED),
    (["--user", "alice:wrong", "get", "/app/x"], None),
    (["--user", "nobody:x", "get", "/app/x"], None),
    (["--user", "carol:x", "get", "/app/x"], None),              # no-password user
    (ALICE + ["user", "list"], None),
    (ALICE + ["user", "add", "eve:x"], None),
    (ALICE + ["user", "get", "alice"], None),
    (ALICE + ["user", "get", "root"], None),
    (ALICE + ["role", "get", "app"], None),
    (ALICE + ["role", "get", "root"], None),
    (ALICE + ["auth", "disable"], None),
    (ALICE + ["defrag"], None),
    (ALICE + ["endpoint", "status", "-w", "json"], None),
    (ALICE + ["member", "list", "-w", "json"], None),
    (ROOT + ["user", "delete", "root"], None),
    (ROOT + ["user", "revoke-role", "root", "root"], None),
    (ROOT + ["role", "delete", "root"], None),
    (ROOT + ["role", "revoke-permission", "app", "nothing"], None),
    (ROOT + ["user", "revoke-role", "carol", "ro"], None),
    (ROOT + ["user", "grant-role", "alice", "missing"], None),
    (ROOT + ["user", "grant-role", "ghost", "app"], None),
    (ROOT + ["user", "add", "alice:x"], None),
    (ROOT + ["role", "add", "app"], None),
    (ROOT + ["user", "delete", "ghost"], None),
    (ROOT + ["role", "delete", "ghost"], None),
    (ROOT + ["user", "get", "ghost"], None),
    (ROOT + ["get", "", "--prefix", "--keys-only"], None),
    (ROOT + ["defrag"], None),
    (ROOT + ["user", "passwd", "alice", "--interactive=false"], "newpw\n"),
    (ALICE + ["get", "/app/x"], None),                            # old password
    (["--user", "alice:newpw", "get", "/app/x"], None),
    (ROOT + ["role", "revoke-permission", "app", "/app/", "--prefix"], None),
    (["--user", "alice:newpw", "get", "/app/x"], None),
    (ROOT + ["role", "delete", "ro"], None),
    (ROOT + ["user", "get", "alice"], None),
    (ROOT + ["user", "delete", "alice"], None),
    (["--user", "alice:newpw", "get", "/app/x"], None),
    (ROOT + ["user", "list"], None),
    (ROOT + ["auth", "disable"], None),
    (["get", "/app/x"], None),
    (["user", "list"], None),
    (["--user", "root:rootpw", "get", "/app/x"], None),           # auth off: no login
    (["auth", "enable"], None),
    (["user", "add", "dave:x"], None),
]


class AuthDifferential(ed.DiffAssertions, h.StoreTestCase):

    def test_same_output_as_etcd(self):
        ref = self.store(impl="etcd")
        sut = self.store()
        self.assertSameOutputs(ed.script_titles(SCRIPT), ed.run_script(ref, SCRIPT),
                               ed.run_script(sut, SCRIPT), sut.impl, "etcd 3.4")


if __name__ == "__main__":
    h.main()
