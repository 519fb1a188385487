#!/usr/bin/python3
"""etcdctl 3.4 `lock` and `elect` (etcd's concurrency recipes over txn + lease + watch)
across concurrent etcdctl processes on one store.

lock: the second client acquires only after the first releases (SIGTERM/SIGINT of the
holder, or the end of the `lock NAME -- command` form), or, when the holder is killed
with SIGKILL, after its session lease expires (--ttl; etcdctl 3.4's default is 10 s, the
tests use 3 s). elect: a campaigner holds leadership until it exits; the next campaigner
then leads, and an observer (`elect -l`) prints each leader's proposal in turn.

Output forms (etcdctl 3.4): `lock NAME` prints the lock's key (NAME/<lease id in hex>)
when acquired and an empty line on exit; `elect NAME PROPOSAL` prints the election key
and the proposal when elected; `elect -l NAME` prints the key and proposal of each leader.

Run by meson with BOLLARD_STORE set; STORE_IMPL=etcd runs it against Debian's etcd 3.4.
"""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

KEY = r"%s/[0-9a-f]{1,16}"


class LockElect(h.SharedStoreTestCase):

    def ctl(self, *args):
        return self.assertOk(self.s.etcdctl(*args))

    def keys(self, prefix):
        return self.ctl("get", prefix, "--prefix", "--keys-only").out.split()

    def acquired(self, p, timeout=10):
        return p.wait_for(lambda ls: len(ls) >= 1 and ls[0] != "", timeout)

    def test_lock_second_waits_for_sigterm_of_first(self):
        name = "lk-term"
        a = self.bg(self.s, "lock", name)
        self.assertTrue(self.acquired(a), a)
        ka = a.lines()[0]
        self.assertRegex(ka, "^%s$" % (KEY % name))
        b = self.bg(self.s, "lock", name)
        time.sleep(1.5)
        self.assertEqual(b.lines(), [], "second client got the lock while it was held")
        self.assertIsNone(b.proc.poll(), b)
        # both clients' keys exist
        ks = self.keys(name + "/")
        self.assertEqual(len(ks), 2)
        self.assertIn(ka, ks)
        a.send(signal.SIGTERM)
        t0 = time.monotonic()
        self.assertEqual(a.wait(10), 0, a)
        self.assertTrue(self.acquired(b, 5), b)
        self.assertLess(time.monotonic() - t0, 3, "acquired late after the release")
        kb = b.lines()[0]
        self.assertRegex(kb, "^%s$" % (KEY % name))
        self.assertNotEqual(ka, kb)
        self.assertEqual(a.out(), ka + "\n\n")
        self.assertEqual(self.keys(name + "/"), [kb])
        b.send(signal.SIGINT)
        self.assertEqual(b.wait(10), 0, b)
        self.assertEqual(b.out(), kb + "\n\n")
        self.assertEqual(self.keys(name + "/"), [])

    def test_lock_exec_form_is_exclusive(self):
        name = "lk-exec"
        # Each holder stamps its own start and end (the clock is read inside
        # the lock); when the test's reader threads saw the lines says nothing
        # about the order the holders ran in.
        script = ('echo start $(date +%s%N); echo "$ETCD_LOCK_KEY"; sleep 1; '
                  'echo end $(date +%s%N)')
        ps = [self.bg(self.s, "lock", name, "--", "sh", "-c", script) for _ in range(3)]
        for p in ps:
            self.assertEqual(p.wait(20), 0, p)
        spans = []
        for p in ps:
            ls = p.lines()
            self.assertEqual(len(ls), 3, p)
            self.assertRegex(ls[0], r"^start \d+$")
            self.assertRegex(ls[2], r"^end \d+$")
            self.assertRegex(ls[1], "^%s$" % (KEY % name))
            spans.append((int(ls[0].split()[1]), int(ls[2].split()[1])))
        spans.sort()
        for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
            self.assertGreaterEqual(s2, e1, "two holders at once: %r" % spans)
        self.assertEqual(self.keys(name + "/"), [])

    def test_lock_holder_killed_lease_expires(self):
        name = "lk-kill"
        a = self.bg(self.s, "lock", "--ttl=3", name)
        self.assertTrue(self.acquired(a), a)
        b = self.bg(self.s, "lock", name)
        time.sleep(1.0)
        self.assertEqual(b.lines(), [])
        a.send(signal.SIGKILL)
        a.wait(5)
        t0 = time.monotonic()
        self.assertTrue(self.acquired(b, 12), "not acquired after the holder's lease "
                                              "expired: %r" % b)
        dt = time.monotonic() - t0
        # the holder's last keep-alive was at most TTL/3 = 1 s before the kill
        self.assertGreater(dt, 1.0, "acquired before the dead holder's lease expired")
        self.assertLess(dt, 8)
        self.assertEqual(self.keys(name + "/"), [b.lines()[0]])
        b.stop(signal.SIGINT)

    def test_elect_leadership_passes_on_exit(self):
        name = "el"
        c1 = self.bg(self.s, "elect", name, "p1")
        self.assertTrue(c1.wait_lines(2), c1)
        l1 = c1.lines()
        self.assertRegex(l1[0], "^%s$" % (KEY % name))
        self.assertEqual(l1[1], "p1")
        obs = self.bg(self.s, "elect", "-l", name)
        self.assertTrue(obs.wait_lines(2), obs)
        self.assertEqual(obs.lines(), l1)
        c2 = self.bg(self.s, "elect", name, "p2")
        time.sleep(1.5)
        self.assertEqual(c2.lines(), [], "second campaigner elected while the first leads")
        self.assertEqual(obs.lines(), l1)
        c1.send(signal.SIGINT)
        self.assertEqual(c1.wait(10), 0, c1)
        self.assertTrue(c2.wait_lines(2, 5), c2)
        l2 = c2.lines()
        self.assertRegex(l2[0], "^%s$" % (KEY % name))
        self.assertNotEqual(l2[0], l1[0])
        self.assertEqual(l2[1], "p2")
        self.assertTrue(obs.wait_lines(4, 5), obs)
        time.sleep(0.3)
        self.assertEqual(obs.lines(), l1 + l2)
        # a third campaigner after the second leaves; the observer follows
        c3 = self.bg(self.s, "elect", name, "p3")
        time.sleep(1.0)
        self.assertEqual(c3.lines(), [])
        c2.send(signal.SIGTERM)
        self.assertEqual(c2.wait(10), 0, c2)
        self.assertTrue(c3.wait_lines(2, 5), c3)
        self.assertEqual(c3.lines()[1], "p3")
        self.assertTrue(obs.wait_lines(6, 5), obs)
        self.assertEqual(obs.lines()[4:], c3.lines())
        c3.stop(signal.SIGINT)
        self.assertEqual(self.keys(name + "/"), [])
        obs.stop(signal.SIGINT)


if __name__ == "__main__":
    h.main()
