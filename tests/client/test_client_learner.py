"""The C client library with a learner first among its endpoints: test-learner
(tests/client/learner.c) makes a put, a linearizable range, a txn and a delete through
bollard_connect with the endpoints LEARNER,VOTER. The learner refuses each (etcd 3.4's
"rpc not supported for learner", before it does anything), and the client takes it to the
voter, writes included; this driver starts the two members and checks the program's
verdict.

    test_client_learner.py <test-learner binary>      ($BOLLARD_STORE: the store binary)
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

PROG = os.path.abspath(sys.argv.pop(1)) if len(sys.argv) > 1 else None


class ClientLearner(h.StoreTestCase):
    def test_calls_go_on_past_a_learner(self):
        a = self.store(name="a")
        b = h.Store(name="b")
        self._stores.append(b)
        r = self.assertOk(h.member_change(a, ["member", "add", "b", "--learner",
                                              "--peer-urls=" + b.peer_url]))
        initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', r.out).group(1)
        b.extra_args = ["--initial-cluster", initial, "--initial-cluster-state", "existing",
                        "--initial-cluster-token", "bollard-it"]
        b.start(timeout=60)
        r = b.etcdctl("put", "k", "v")   # the learner refuses a write itself
        self.assertIn("rpc not supported for learner", r.err)
        p = subprocess.run([PROG, "--endpoints", "%s,%s" % (b.endpoint, a.endpoint)],
                           capture_output=True, text=True, timeout=120, env=h.clean_env())
        print(p.stdout, end="")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout.splitlines()[-1], "1 passed, 0 failed")
        self.assertEqual(a.etcdctl("get", "learner/a").out, "")   # the delete went through


if __name__ == "__main__":
    h.main()
