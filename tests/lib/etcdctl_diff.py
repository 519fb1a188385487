"""Differential tests' shared runner (test_differential.py, test_auth_differential.py,
test_watch_lease_differential.py): an etcdctl script run against a store with its output
masked where implementations legitimately differ (cluster/member IDs, raft terms and
indexes, db sizes, the server version, the KV hash, ports, timings, etcdctl's log noise),
and the step by step comparison of two runs as unified diffs."""

import difflib
import json
import re
import unittest

# Fields of etcdctl's JSON output that legitimately differ between implementations: IDs,
# raft terms and indexes, sizes, the server version, the KV hash.
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


def mask_text(text, *stores, named=False):
    """Mask what legitimately differs (module docstring) in etcdctl output from stores;
    named: each store's URLs become placeholders naming it (a cluster's members)."""
    for store in stores:
        tag = "-" + store.name if named else ""
        text = text.replace(store.client_url, "<client-url%s>" % tag)
        text = text.replace(store.peer_url, "<peer-url%s>" % tag)
        text = text.replace(store.endpoint, "<endpoint%s>" % tag)
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
            if isinstance(obj, dict) and isinstance(obj.get("members"), list):
                # member list: ordered by member ID, which differs: order by name
                obj["members"].sort(key=lambda m: m.get("name", ""))
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


def step_text(rc, out, err):
    """One step's outcome as compared: exit status, stdout, stderr (already masked)."""
    return "exit %s\n--- stdout\n%s\n--- stderr\n%s" % (rc, out, err)


def run_script(store, script):
    """Run each (etcdctl args, stdin or None) step of script against store; their masked
    outcomes."""
    outs = []
    for args, stdin in script:
        r = store.etcdctl(*args, input=stdin)
        outs.append(step_text(r.rc, mask_text(r.out, store), mask_text(r.err, store)))
    return outs


def script_titles(script):
    """How each (args, stdin) step of an etcdctl script is named in a diff."""
    return ["etcdctl %s%s" % (" ".join(args), " <<< %r" % stdin[:60] if stdin else "")
            for args, stdin in script]


class DiffAssertions(unittest.TestCase):
    """assertSameOutputs for differential test cases (mix in before StoreTestCase)."""

    def assertSameOutputs(self, titles, want, got, impl, what, context=2):
        """want (etcd's) and got (impl's) step outcomes are equal; else fail with a unified
        diff of each step that differs, titled by titles."""
        diffs = []
        for title, w, g in zip(titles, want, got):
            if w != g:
                diffs.append(title + "\n" + "\n".join(difflib.unified_diff(
                    w.splitlines(), g.splitlines(), "etcd", impl, lineterm="", n=context)))
        if diffs:
            print("\n\n".join(diffs), flush=True)
        self.assertEqual(len(diffs), 0, "%d of %d steps differ from %s:\n\n%s"
                         % (len(diffs), len(titles), what, "\n\n".join(diffs)))
