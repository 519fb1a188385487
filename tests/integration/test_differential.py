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

With STORE_IMPL=etcd the script runs against two etcds (checks the masking is enough).
"""

import difflib
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

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

# Fields of etcdctl's JSON output masked for a reason given in the module docstring.
MASK_JSON = {"cluster_id", "member_id", "raft_term", "ID", "leader", "dbSize", "dbSizeInUse",
             "raftIndex", "raftTerm", "raftAppliedIndex", "version", "hash"}


def mask_json(obj, path=()):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            # a key's "version" (an int) is data; Status "version" (a string) is not
            if k in MASK_JSON and not (k == "version" and not isinstance(v, str)):
                out[k] = "<%s>" % k
            else:
                out[k] = mask_json(v, path + (k,))
        return out
    if isinstance(obj, list):
        return [mask_json(v, path) for v in obj]
    return obj


def mask_text(text, store):
    text = text.replace(store.client_url, "<client-url>").replace(store.peer_url, "<peer-url>")
    text = text.replace(store.endpoint, "<endpoint>")
    text = re.sub(r"took = [0-9.]+[µmn]?s", "took = <t>", text)
    lines = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("{") and s.endswith("}") or s.startswith("[") and s.endswith("]"):
            try:
                obj = json.loads(s)
            except ValueError:
                obj = None
            if isinstance(obj, dict) and "level" in obj and "caller" in obj:
                # etcdctl's own zap log line: keep its level and error only
                lines.append("[log %s] %s" % (obj.get("level"), obj.get("error", obj.get("msg"))))
                continue
            if obj is not None:
                lines.append(json.dumps(mask_json(obj), sort_keys=True))
                continue
        # simple output: member IDs (hex) and memberID:<decimal> in alarms
        line = re.sub(r"^[0-9a-f]{1,16}, started, ", "<id>, started, ", line)
        line = re.sub(r"memberID:\d+", "memberID:<id>", line)
        # -w fields
        line = re.sub(r'^"(ClusterID|MemberID|RaftTerm)" : \d+$', r'"\1" : <masked>', line)
        lines.append(line)
    return "\n".join(lines)


class Differential(h.StoreTestCase):

    def run_script(self, s):
        outs = []
        for args, stdin in SCRIPT:
            r = s.etcdctl(*args, input=stdin)
            outs.append("exit %s\n--- stdout\n%s\n--- stderr\n%s"
                        % (r.rc, mask_text(r.out, s), mask_text(r.err, s)))
        return outs

    def test_same_output_as_etcd(self):
        ref = self.store(impl="etcd")
        sut = self.store()
        want = self.run_script(ref)
        got = self.run_script(sut)
        diffs = []
        for (args, stdin), w, g in zip(SCRIPT, want, got):
            if w != g:
                title = "etcdctl %s%s" % (" ".join(args), " <<< %r" % stdin[:60] if stdin else "")
                diffs.append(title + "\n" + "\n".join(difflib.unified_diff(
                    w.splitlines(), g.splitlines(), "etcd", sut.impl, lineterm="", n=2)))
        if diffs:
            print("\n\n".join(diffs), flush=True)
        self.assertEqual(len(diffs), 0, "%d of %d etcdctl commands differ from etcd 3.4:\n\n%s"
                         % (len(diffs), len(SCRIPT), "\n\n".join(diffs)))


if __name__ == "__main__":
    h.main()
