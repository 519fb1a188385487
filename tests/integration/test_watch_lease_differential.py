#!/usr/bin/python3
"""Differential test for watch, lease, lock and elect: one etcdctl 3.4 script against
Debian's etcd 3.4 and against the store under test, each on a fresh data dir; outputs
(exit status, stdout, stderr) compared step by step.

What is masked, and why it legitimately differs:
  * cluster and member IDs, raft terms: derived from names/URLs/time by each implementation
    (as in test_differential.py);
  * lease IDs: server-chosen, etcd derives them from the member ID and time. Each ID is
    replaced by L1, L2, ... in order of first appearance, so that the same lease is still
    recognised across steps (hex in text, decimal in JSON, the hex suffix of lock and
    election keys);
  * a lease's remaining TTL (timetolive "remaining(Ns)", JSON "ttl" when not -1): the time
    between grant and query differs by milliseconds from run to run, enough to cross a
    second boundary; the granted TTL is not masked;
  * the order of timetolive's attached keys (etcd lists them from a Go map: random order)
    and of `lease list` (etcd orders by expiry time, which ties for equal TTLs): sorted;
  * the order of output lines of `watch -i` (each watch of the stream prints from its own
    goroutine in etcdctl): sorted;
  * etcdctl's zap log lines: only level and error kept, as in test_differential.py.
Revisions are NOT masked: both stores start at revision 1 and must number alike.

Watches run until killed: each watch step is given a fixed time (WATCH_SECS) and its
output up to then is compared (etcdctl is killed; its status is "timeout" on both).

With STORE_IMPL=etcd both run against two etcds (checks the masking is enough).
"""

import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import etcdctl_diff as ed  # noqa: E402
import storeharness as h  # noqa: E402

WATCH_SECS = 1.5

# Steps: ("ctl", args[, stdin]) runs etcdctl to completion (bounded); ("watch", args)
# runs it WATCH_SECS; ("interactive", lines, n_out) feeds `watch -i` and waits for n_out
# lines; ("sleep", secs). "$L1".. in args stand for the lease IDs granted so far (hex).
# Revisions: a=2 b/1=3 a=4 b/2=5 (txn) 6, del a=7, c=8, L1 keys 9,10, ...
SCRIPT = [
    ("ctl", ["put", "a", "1"]),
    ("ctl", ["put", "b/1", "x"]),
    ("ctl", ["put", "a", "2"]),
    ("ctl", ["put", "b/2", "y"]),
    ("ctl", ["txn"], "\nput a 3\nput b/3 z\ndel b/1\n\n\n"),
    ("ctl", ["del", "a"]),
    ("ctl", ["put", "c", "cc"]),
    ("watch", ["watch", "a", "--rev", "1"]),
    ("watch", ["watch", "a", "--rev", "3", "--prev-kv"]),
    ("watch", ["watch", "b", "--prefix", "--rev", "1"]),
    ("watch", ["watch", "b", "--prefix", "--rev", "2", "-w", "json"]),
    ("watch", ["watch", "a", "c", "--rev", "4", "-w", "json", "--prev-kv"]),
    ("watch", ["watch", "zzz", "--rev", "1"]),
    ("watch", ["watch", "a", "--rev", "100"]),
    # 4 events of a (12 lines), 3 of b/ (9 lines), a progress line per watch
    ("interactive", ["watch a --rev 2", "watch b/ --prefix --rev 5", "bogus", "progress"], 23),
    # leases
    ("ctl", ["lease", "grant", "100"]),                  # L1
    ("ctl", ["lease", "grant", "200", "-w", "json"]),    # L2
    ("ctl", ["lease", "grant", "1"]),                    # L3: TTL raised to 2 s, no keys
    ("ctl", ["lease", "grant", "0", "-w", "json"]),      # L4
    ("ctl", ["put", "--lease=$L1", "l/1", "v1"]),
    ("ctl", ["put", "--lease=$L1", "l/2", "v2", "-w", "json"]),
    ("ctl", ["put", "--lease=$L2", "l/3", "v3"]),
    ("ctl", ["put", "--ignore-lease", "l/3", "v3b"]),
    ("ctl", ["get", "l/", "--prefix", "-w", "json"]),
    ("ctl", ["lease", "timetolive", "$L1"]),
    ("ctl", ["lease", "timetolive", "$L1", "--keys"]),
    ("ctl", ["lease", "timetolive", "$L1", "--keys", "-w", "json"]),
    ("ctl", ["lease", "timetolive", "$L2", "-w", "json"]),
    ("ctl", ["lease", "list"]),
    ("ctl", ["lease", "list", "-w", "json"]),
    ("ctl", ["lease", "keep-alive", "--once", "$L1"]),
    ("ctl", ["lease", "keep-alive", "--once", "$L2", "-w", "json"]),
    ("ctl", ["lease", "revoke", "$L1"]),
    ("ctl", ["lease", "revoke", "$L1"]),
    ("ctl", ["lease", "timetolive", "$L1", "--keys"]),
    ("ctl", ["lease", "timetolive", "$L1", "-w", "json"]),
    ("ctl", ["lease", "keep-alive", "--once", "$L1"]),
    ("ctl", ["lease", "keep-alive", "$L1"]),
    ("ctl", ["put", "--lease=$L1", "l/1", "again"]),
    ("ctl", ["put", "--lease=123abc", "l/1", "again"]),
    ("ctl", ["lease", "timetolive", "123abc"]),
    # a key on a lease that expires: granted right before it is looked at, with a TTL
    # that the two etcdctl runs in between stay far below also on a loaded box (at load
    # 15 one etcdctl run takes up to 0.7 s: the ~16 steps since L3's grant took longer
    # than its 2 s, and one store's run saw the key and the other's did not)
    ("ctl", ["lease", "grant", "5"]),                    # L6 (L5 is 123abc, named above)
    ("ctl", ["put", "--lease=$L6", "l/short", "s"]),
    ("ctl", ["get", "l/", "--prefix"]),                  # PRE_EXPIRY: l/short still there
    ("sleep", [6.0]),                                    # L3, L4 (2 s) and L6 (5 s) expire
    ("ctl", ["get", "l/", "--prefix"]),
    ("ctl", ["lease", "timetolive", "$L3", "--keys"]),
    ("ctl", ["lease", "list"]),
    ("watch", ["watch", "l/", "--prefix", "--rev", "9", "-w", "json"]),
    ("ctl", ["lease", "revoke", "$L2"]),
    ("ctl", ["lease", "list", "-w", "json"]),
    ("ctl", ["get", "", "--prefix", "--keys-only"]),
    # lock and elect
    ("ctl", ["lock", "L", "--", "sh", "-c", "echo held $ETCD_LOCK_KEY"]),
    ("ctl", ["lock", "L", "--", "false"]),
    ("watch", ["elect", "E", "prop"]),
    ("ctl", ["get", "", "--prefix", "--keys-only"]),
    # compaction: a watch from before it is cancelled
    ("ctl", ["compaction", "5"]),
    ("ctl", ["watch", "a", "--rev", "2"]),
    ("ctl", ["watch", "b", "--prefix", "--rev", "4", "-w", "json"]),
    ("watch", ["watch", "a", "--rev", "5"]),
    ("ctl", ["put", "last", "v", "-w", "json"]),
]

# the step before the sleep sees l/short; the one after it does not
PRE_EXPIRY = next(i for i, st in enumerate(SCRIPT) if st[0] == "sleep") - 1
HEADER_MASK = {"cluster_id", "member_id", "raft_term"}
LEASE_FIELDS = {"ID", "id", "lease"}


class Masker:
    def __init__(self, store):
        self.store = store
        self.names = {}         # lease id (int) -> "L<n>"

    def name(self, lid):
        if lid == 0:
            return 0
        if lid not in self.names:
            self.names[lid] = "L%d" % (len(self.names) + 1)
        return "<%s>" % self.names[lid]

    def learn(self, out):
        """Register lease IDs in the order they first appear in a grant's output."""
        for m in re.finditer(r"lease ([0-9a-f]{16}) granted", out):
            self.name(int(m.group(1), 16))
        for line in out.splitlines():
            if line.startswith("{"):
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                if isinstance(d, dict) and "ID" in d and "TTL" in d:
                    self.name(int(d["ID"]))

    def lease_args(self, args):
        ids = sorted(self.names, key=lambda i: int(self.names[i][1:]))
        out = []
        for a in args:
            for n, lid in enumerate(ids, 1):
                a = a.replace("$L%d" % n, "%x" % lid)
            out.append(a)
        return out

    def json(self, obj, key=None):
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                if k in HEADER_MASK:
                    out[k] = "<%s>" % k
                elif k in LEASE_FIELDS and isinstance(v, int):
                    out[k] = self.name(v)
                elif k == "ttl" and isinstance(v, int) and v != -1:
                    out[k] = "<remaining>"
                elif k == "keys" and isinstance(v, list):
                    out[k] = sorted(v)
                elif k == "leases" and isinstance(v, list):
                    out[k] = sorted((self.json(x) for x in v), key=json.dumps)
                else:
                    out[k] = self.json(v, k)
            return out
        if isinstance(obj, list):
            return [self.json(v) for v in obj]
        return obj

    def hexid(self, m):
        return m.group(1) + self.name(int(m.group(2), 16))

    def text(self, text, sort_lines=False):
        s = self.store
        text = text.replace(s.client_url, "<client-url>").replace(s.endpoint, "<endpoint>")
        lines = []
        for line in text.splitlines():
            st = line.strip()
            if st.startswith("{") and st.endswith("}"):
                try:
                    obj = json.loads(st)
                except ValueError:
                    obj = None
                if isinstance(obj, dict) and "level" in obj and "caller" in obj:
                    lines.append("[log %s] %s" % (obj.get("level"),
                                                  obj.get("error", obj.get("msg"))))
                    continue
                if obj is not None:
                    lines.append(json.dumps(self.json(obj), sort_keys=True))
                    continue
            line = re.sub(r"(lease )([0-9a-f]{16})\b", self.hexid, line)
            # the script's lock (L) and election (E) keys: NAME/<lease id in hex>
            line = re.sub(r"^((?:L|E)/)([0-9a-f]{1,16})$", self.hexid, line)
            line = re.sub(r"(held L/)([0-9a-f]{1,16})$", self.hexid, line)
            line = re.sub(r"^()([0-9a-f]{16})$", self.hexid, line)     # `lease list`
            line = re.sub(r"remaining\(\d+s\)", "remaining(<s>)", line)
            m = re.match(r"^(.*attached keys\(\[)(.*)(\]\))$", line)
            if m:
                line = m.group(1) + " ".join(sorted(m.group(2).split())) + m.group(3)
            if re.fullmatch(r"<L\d+>", line):
                lines.append(("LIST", line))       # `lease list` entries: sorted below
                continue
            lines.append(line)
        # `lease list`: the ID lines after "found N leases"
        ids = sorted(x[1] for x in lines if isinstance(x, tuple))
        it = iter(ids)
        lines = [next(it) if isinstance(x, tuple) else x for x in lines]
        if sort_lines:
            lines.sort()
        return "\n".join(lines)


class WatchLeaseDifferential(ed.DiffAssertions, h.StoreTestCase):

    def run_script(self, s):
        mk = Masker(s)
        outs = []
        for step in SCRIPT:
            kind, args = step[0], step[1]
            if kind == "sleep":
                time.sleep(args[0])
                outs.append("slept")
                continue
            if kind == "interactive":
                p = self.bg(s, "watch", "-i")
                for l in args:
                    p.write_line(l)
                p.wait_lines(step[2], 10)
                time.sleep(0.5)
                rc = p.stop(signal.SIGKILL)
                outs.append(ed.step_text("killed" if rc == -signal.SIGKILL else rc,
                                         mk.text(p.out(), sort_lines=True), mk.text(p.err())))
                continue
            argv = mk.lease_args(args)
            if kind == "watch":
                r = s.etcdctl(*argv, timeout=WATCH_SECS)
            else:
                r = s.etcdctl(*argv, input=step[2] if len(step) > 2 else None, timeout=20)
            mk.learn(r.out)
            outs.append(ed.step_text(r.rc, mk.text(r.out), mk.text(r.err)))
        return outs

    def test_same_output_as_etcd(self):
        ref = self.store(impl="etcd")
        sut = self.store()
        want = self.run_script(ref)
        got = self.run_script(sut)
        titles = []
        for step in SCRIPT:
            title = "%s %s" % (step[0], " ".join(str(a) for a in step[1]))
            if len(step) > 2 and isinstance(step[2], str):
                title += " <<< %r" % step[2][:60]
            titles.append(title)
        self.assertSameOutputs(titles, want, got, sut.impl, "etcd 3.4", context=3)
        # the script exercised what it should (guards against a script that tests nothing)
        joined = "\n".join(want)
        for needle in ('"type": 1', "progress notify: ", "attached keys([l/1 l/2])",
                       "watch was canceled (etcdserver: mvcc: required revision has been "
                       "compacted)", "held L/<L", "E/<L", "already expired",
                       "requested lease not found", "TTL(2s)"):
            self.assertIn(needle, joined)
        self.assertIn("l/short", want[PRE_EXPIRY], "the reference's run was slower than L6's TTL")
        self.assertNotIn("l/short", want[PRE_EXPIRY + 2])


if __name__ == "__main__":
    h.main()
