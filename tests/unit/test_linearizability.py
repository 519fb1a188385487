"""Unit tests of tests/lib/linearizability.py: it accepts linearizable histories of the
key-value model (sequential, overlapping, indeterminate writes that did or did not land),
rejects the classic anomalies, agrees with a brute-force checker on small random histories,
and checks a 5 clients x 1,000 ops history over 10 keys in seconds.

Run: /usr/bin/python3 tests/unit/test_linearizability.py [-v]
"""

import itertools
import os
import random
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from linearizability import History, Op, check, check_detailed, step  # noqa: E402


def H(*rows):
    """rows: (client, f, key, call, ret, kwargs) with ret None = indeterminate."""
    h = History()
    for client, f, key, call, ret, kw in rows:
        h.add(client, f, key, call, ret, **kw)
    return h


def put(c, k, v, call, ret, **kw):
    return (c, "put", k, call, ret, dict(value=v, **kw))


def get(c, k, v, call, ret):
    return (c, "get", k, call, ret, dict(result=v))


def delete(c, k, call, ret, **kw):
    return (c, "delete", k, call, ret, kw)


def cas(c, k, exp, v, res, call, ret):
    return (c, "cas", k, call, ret, dict(expected=exp, value=v, result=res))


class Good(unittest.TestCase):
    def assertLin(self, h):
        ok, why = check(h)
        self.assertTrue(ok, why)

    def test_empty(self):
        self.assertLin(History())

    def test_sequential(self):
        self.assertLin(H(get(1, "a", None, 0, 1), put(1, "a", "1", 2, 3),
                         get(2, "a", "1", 4, 5), cas(1, "a", "1", "2", True, 6, 7),
                         cas(2, "a", "1", "3", False, 8, 9), get(1, "a", "2", 10, 11),
                         delete(2, "a", 12, 13, result=True), get(1, "a", None, 14, 15),
                         delete(1, "a", 16, 17, result=False),
                         cas(2, "a", None, "4", True, 18, 19), get(2, "a", "4", 20, 21)))

    def test_concurrent_overlapping(self):
        # write 1 and write 2 overlap; readers see either order, but consistently
        self.assertLin(H(put(1, "a", "1", 0, 10), put(2, "a", "2", 1, 9),
                         get(3, "a", "2", 2, 4), get(3, "a", "1", 5, 12),
                         get(4, "a", "1", 11, 13)))
        # a read concurrent with a write may see the old or the new value
        self.assertLin(H(put(1, "a", "1", 0, 1), put(2, "a", "2", 2, 10),
                         get(3, "a", "1", 3, 4), get(3, "a", "2", 5, 6),
                         get(4, "a", "2", 7, 8)))
        # reads ordered against an overlapping write by the linearization, not real time
        self.assertLin(H(put(1, "a", "1", 0, 100), get(2, "a", "1", 10, 20),
                         get(3, "a", None, 5, 30)))

    def test_equal_timestamps_are_concurrent(self):
        self.assertLin(H(put(1, "a", "1", 0, 5), get(2, "a", None, 5, 6)))

    def test_keys_are_independent(self):
        self.assertLin(H(put(1, "a", "1", 0, 1), put(1, "b", "2", 2, 3),
                         get(2, "a", "1", 4, 5), get(2, "b", "2", 4, 5)))

    def test_indeterminate_write_landed(self):
        # the client timed out; a later reader saw the value: it took effect
        self.assertLin(H(put(1, "a", "1", 0, 1), put(2, "a", "2", 2, None),
                         get(3, "a", "2", 50, 51), get(3, "a", "2", 60, 61)))

    def test_indeterminate_write_landed_late(self):
        # it may land long after the client gave up
        self.assertLin(H(put(2, "a", "2", 0, None), get(3, "a", None, 50, 51),
                         get(3, "a", None, 60, 61), get(3, "a", "2", 70, 71)))

    def test_indeterminate_write_lost(self):
        self.assertLin(H(put(1, "a", "1", 0, 1), put(2, "a", "2", 2, None),
                         get(3, "a", "1", 50, 51), get(3, "a", "1", 60, 61)))

    def test_indeterminate_cas_and_delete(self):
        self.assertLin(H(put(1, "a", "1", 0, 1),
                         (2, "cas", "a", 2, None, dict(expected="1", value="2")),
                         delete(3, "a", 3, None),
                         get(4, "a", "2", 10, 11), get(4, "a", None, 12, 13)))

    def test_failed_and_indeterminate_get_ignored(self):
        h = History()
        h.add(1, "put", "a", 0, 1, value="1")
        h.add(2, "put", "a", 2, 3, value="zzz", status="fail")  # certainly not applied
        h.add(3, "get", "a", 4, None, status="info")
        h.add(3, "get", "a", 5, 6, result="1")
        ok, why = check(h)
        self.assertTrue(ok, why)


class Bad(unittest.TestCase):
    def assertNotLin(self, h, window_ids=None):
        r = check_detailed(h)
        self.assertIs(r.ok, False, r.explanation)
        self.assertIn("stuck window", r.explanation)
        if window_ids is not None:
            self.assertEqual(sorted(o.id for o in r.window), sorted(window_ids),
                             r.explanation)
        return r

    def test_stale_read_after_completed_write(self):
        r = self.assertNotLin(H(put(1, "a", "1", 0, 1), put(1, "a", "2", 2, 3),
                                get(2, "a", "1", 4, 5)), window_ids=[2])
        self.assertEqual(r.state, "2")
        self.assertEqual(r.key, "a")

    def test_stale_read_absent_after_write(self):
        self.assertNotLin(H(put(1, "a", "1", 0, 1), get(2, "a", None, 2, 3)))

    def test_lost_acknowledged_write(self):
        # put 2 was acknowledged, then readers keep seeing 1 forever
        self.assertNotLin(H(put(1, "a", "1", 0, 1), put(2, "a", "2", 2, 3),
                            get(3, "a", "1", 10, 11), get(3, "a", "1", 20, 21)))

    def test_read_of_value_never_written(self):
        self.assertNotLin(H(put(1, "a", "1", 0, 10), get(2, "a", "7", 1, 9)))

    def test_two_cas_succeed_from_same_expected(self):
        self.assertNotLin(H(put(1, "a", "0", 0, 1),
                            cas(1, "a", "0", "1", True, 2, 10),
                            cas(2, "a", "0", "2", True, 3, 11)))

    def test_read_goes_back_in_time(self):
        self.assertNotLin(H(put(1, "a", "1", 0, 1), put(2, "a", "2", 2, 20),
                            get(3, "a", "2", 3, 4), get(3, "a", "1", 5, 6)))
        # the same across two readers: once one saw v2 (returned), later reads can't see v1
        self.assertNotLin(H(put(1, "a", "1", 0, 1), put(2, "a", "2", 2, 20),
                            get(3, "a", "2", 3, 4), get(4, "a", "1", 5, 6)))

    def test_wrong_cas_and_delete_results(self):
        self.assertNotLin(H(put(1, "a", "1", 0, 1), cas(1, "a", "1", "2", False, 2, 3)))
        self.assertNotLin(H(cas(1, "a", None, "1", True, 0, 1),
                            cas(2, "a", None, "2", True, 2, 3)))
        self.assertNotLin(H(put(1, "a", "1", 0, 1), delete(1, "a", 2, 3, result=False)))

    def test_indeterminate_does_not_excuse_order(self):
        # an unknown-outcome write invoked after the read returned cannot explain it
        self.assertNotLin(H(put(1, "a", "1", 0, 1), get(2, "a", "2", 2, 3),
                            put(3, "a", "2", 4, None)))

    def test_explanation_names_smallest_failing_key(self):
        h = H(put(1, "a", "1", 0, 1), put(1, "a", "2", 2, 3), get(2, "a", "1", 4, 5),
              put(1, "b", "1", 0, 10), put(2, "b", "2", 1, 11), put(3, "b", "3", 2, 12),
              get(4, "b", "9", 3, 13))
        r = check_detailed(h)
        self.assertIs(r.ok, False)
        self.assertEqual(r.key, "a", r.explanation)
        self.assertIn("2 keys fail", r.explanation)


class Recorder(unittest.TestCase):
    def test_threads_and_json_roundtrip(self):
        h = History()
        store, lock = {}, threading.Lock()

        def client(cid):
            rng = random.Random(cid)
            for i in range(200):
                k = "k%d" % rng.randrange(3)
                if rng.random() < 0.5:
                    v = "%d-%d" % (cid, i)
                    op = h.invoke(cid, "put", k, value=v)
                    with lock:
                        store[k] = v
                    h.ok(op)
                else:
                    with h.op(cid, "get", k) as rec:
                        with lock:
                            v = store.get(k)
                        rec.ok(v)

        ts = [threading.Thread(target=client, args=(c,)) for c in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(len(h), 800)
        ok, why = check(h)
        self.assertTrue(ok, why)
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "h.json")
            h.save(p)
            h2 = History.load(p)
        self.assertEqual([o.to_dict() for o in h.ops], [o.to_dict() for o in h2.ops])

    def test_context_manager_marks_info_on_exception(self):
        h = History()
        with self.assertRaises(TimeoutError):
            with h.op(1, "put", "a", value="1"):
                raise TimeoutError()
        with h.op(1, "get", "a") as rec:
            rec.ok(b"1")  # bytes are stored as latin-1 strings
        pending = h.invoke(2, "put", "a", value="2")  # never completed
        self.assertEqual(h.ops[0].status, "info")
        self.assertIsNone(h.ops[0].ret)
        self.assertEqual(h.ops[1].result, "1")
        self.assertEqual(h.ops[pending].status, "pending")
        ok, why = check(h)
        self.assertTrue(ok, why)
        t = h.ops[pending].call
        h.add(3, "get", "a", t + 1, t + 2, result="2")
        self.assertTrue(check(h)[0])  # the pending put may have landed
        h.add(3, "get", "a", t + 3, t + 4, result="1")
        self.assertFalse(check(h)[0])  # but not un-landed again

    def test_bad_input(self):
        with self.assertRaises(ValueError):
            Op(0, 1, "increment", "a")
        with self.assertRaises(ValueError):
            check(H(put(1, "a", "1", 5, 4)))
        with self.assertRaises(ValueError):
            History.from_json('{"version": 99, "ops": []}')


# -- random histories ------------------------------------------------------------------

def random_history(seed, clients=5, ops_per_client=1000, keys=10, info_rate=0.0,
                   read_rate=0.5):
    """A linearizable history: each op takes effect at a random point inside its
    [call, ret] interval, results computed by applying ops in that order. Every written
    value is unique. Returns (History, {op id: linearization time})."""
    rng = random.Random(seed)
    plan = []  # (client, f, key, call, ret, lin)
    for c in range(clients):
        t = rng.randrange(100)
        for i in range(ops_per_client):
            call = t + rng.randrange(1, 50)
            dur = rng.randrange(1, 200) if rng.random() < 0.9 else rng.randrange(200, 2000)
            ret = call + dur
            r = rng.random()
            f = "get" if r < read_rate else ("put" if r < read_rate + 0.3 else
                                             ("cas" if r < read_rate + 0.45 else "delete"))
            plan.append([c, f, "k%d" % rng.randrange(keys), call, ret,
                         rng.uniform(call, ret), "%d-%d" % (c, i)])
            t = ret
    h = History()
    state = {}
    results = {}
    for p in sorted(plan, key=lambda p: p[5]):
        c, f, k, call, ret, lin, v = p
        cur = state.get(k)
        indeterminate = f != "get" and rng.random() < info_rate
        landed = not indeterminate or rng.random() < 0.5
        if indeterminate and not landed:
            lin = float("inf")
        kw = {}
        if f == "get":
            kw["result"] = cur
        elif f == "put":
            kw["value"] = v
            if landed:
                state[k] = v
        elif f == "delete":
            kw["result"] = cur is not None
            if landed:
                state.pop(k, None)
        else:
            exp = cur if rng.random() < 0.6 else rng.choice([None, "x", cur])
            kw.update(expected=exp, value=v, result=cur == exp)
            if cur == exp and landed:
                state[k] = v
        if indeterminate:
            kw.pop("result", None)
            ret = None
        results[id(p)] = (c, f, k, call, ret, kw, lin)
    for p in sorted(plan, key=lambda p: p[3]):
        c, f, k, call, ret, kw, lin = results[id(p)]
        h.add(c, f, k, call, ret, **kw)
    return h


class Random(unittest.TestCase):
    def test_random_histories_pass_and_corruptions_fail(self):
        for seed in range(20):
            h = random_history(seed, clients=4, ops_per_client=60, keys=3,
                               info_rate=0.03 if seed % 2 else 0.0)
            ok, why = check(h)
            self.assertTrue(ok, "seed %d: %s" % (seed, why))
            ops = h.ops
            rng = random.Random(seed)
            reads = [o for o in ops if o.f == "get" and o.status == "ok"]
            # 1. a read of a value never written
            bad = History([Op.from_dict(o.to_dict()) for o in ops])
            victim = rng.choice(reads)
            bad.ops[victim.id].result = "never-written"
            r = check_detailed(bad)
            self.assertIs(r.ok, False, "seed %d" % seed)
            self.assertIn(victim.id, [o.id for o in r.window], r.explanation)
            # 2. a stale read: v was overwritten by a write that completed before the read
            stale = self._stale_corruption(ops, reads, rng)
            if stale is not None:
                rid, v = stale
                bad = History([Op.from_dict(o.to_dict()) for o in ops])
                bad.ops[rid].result = v
                self.assertIs(check(bad)[0], False, "seed %d read #%d" % (seed, rid))

    @staticmethod
    def _stale_corruption(ops, reads, rng):
        writes = [o for o in ops if o.status == "ok" and (
            o.f == "put" or (o.f == "cas" and o.result))]
        rng.shuffle(reads)
        for r in reads:
            done = [w for w in writes if w.key == r.key and w.ret < r.call]
            for w1 in done:
                if any(w2.call > w1.ret and w2.value != w1.value for w2 in done) and \
                        r.result != w1.value:
                    return r.id, w1.value
        return None

    def test_agrees_with_brute_force(self):
        rng = random.Random(7)
        verdicts = {True: 0, False: 0}
        for _ in range(1000):
            h = History()
            n = rng.randrange(1, 7)
            for _ in range(n):
                call = rng.randrange(20)
                ret = None if rng.random() < 0.25 else call + rng.randrange(1, 10)
                f = rng.choice(["put", "get", "get", "cas", "delete"])
                kw = {}
                v = rng.choice(["1", "2", None])
                if f == "put":
                    kw["value"] = v or "3"
                elif f == "get" and ret is not None:
                    kw["result"] = v
                elif f == "cas":
                    kw.update(expected=v, value=rng.choice(["1", "2"]))
                    if ret is not None:
                        kw["result"] = rng.random() < 0.5
                elif f == "delete" and ret is not None and rng.random() < 0.5:
                    kw["result"] = rng.random() < 0.5
                if f == "get" and ret is None:
                    h.add(rng.randrange(3), f, "k", call, None, status="info")
                else:
                    h.add(rng.randrange(3), f, "k", call, ret, **kw)
            got = check(h)[0]
            want = brute_force(h.ops)
            self.assertEqual(got, want, "\n".join(o.describe() for o in h.ops))
            verdicts[want] += 1
        self.assertGreater(verdicts[True], 50)
        self.assertGreater(verdicts[False], 50)

    def test_performance_5_clients_1000_ops_10_keys(self):
        h = random_history(42, clients=5, ops_per_client=1000, keys=10, info_rate=0.005)
        t = time.monotonic()
        r = check_detailed(h)
        ok_s = time.monotonic() - t
        self.assertTrue(r.ok, r.explanation)
        bad = History([Op.from_dict(o.to_dict()) for o in h.ops])
        victim = [o for o in bad.ops if o.f == "get" and o.status == "ok"][2500]
        victim.result = "never-written"
        t = time.monotonic()
        self.assertIs(check(bad)[0], False)
        bad_s = time.monotonic() - t
        sys.stderr.write("\nPERF: 5 clients x 1000 ops over 10 keys (%d indeterminate): "
                         "linearizable checked in %.3fs (%d steps), corrupted one rejected "
                         "in %.3fs\n" % (sum(o.status == "info" for o in h.ops), ok_s,
                                         r.stats["steps"], bad_s))
        self.assertLess(ok_s, 10)
        self.assertLess(bad_s, 10)

    def test_performance_one_hot_key(self):
        h = random_history(3, clients=5, ops_per_client=1000, keys=1, info_rate=0.01)
        t = time.monotonic()
        r = check_detailed(h, time_limit=60)
        ok_s = time.monotonic() - t
        self.assertTrue(r.ok, r.explanation)
        sys.stderr.write("\nPERF: 5 clients x 1000 ops on ONE key (%d indeterminate): "
                         "checked in %.3fs (%d steps)\n"
                         % (sum(o.status == "info" for o in h.ops), ok_s, r.stats["steps"]))
        self.assertLess(ok_s, 30)

    def test_time_limit_gives_unknown(self):
        h = random_history(4, clients=10, ops_per_client=2000, keys=1, info_rate=0.05)
        r = check_detailed(h, time_limit=0.2)
        self.assertIsNone(r.ok)
        self.assertIn("time limit", r.explanation)


def brute_force(ops):
    """Reference: try every order of every subset that keeps all completed ops and respects
    real time (a before b when a returned before b was invoked)."""
    ops = [o for o in ops if o.status != "fail" and not (o.f == "get" and o.status != "ok")]
    must = [o for o in ops if o.status == "ok"]
    maybe = [o for o in ops if o.status != "ok"]
    for k in range(len(maybe) + 1):
        for extra in itertools.combinations(maybe, k):
            chosen = must + list(extra)
            for perm in itertools.permutations(chosen):
                if _valid_order(perm):
                    return True
    return False


def _valid_order(perm):
    for i, a in enumerate(perm):
        for b in perm[i + 1:]:
            if b.ret is not None and b.ret < a.call:
                return False
    state = None
    for o in perm:
        good, state = step(state, o)
        if not good:
            return False
    return True


if __name__ == "__main__":
    unittest.main()
