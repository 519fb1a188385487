"""A linearizability checker for histories of a key-value store, and a recorder for them.

Owns: the history format (record from client threads, save/load as JSON), the key-value
register model, and the checker. Used by the multi-member crash and partition tests (issue 4):
concurrent clients record what they asked and what they were told, the test calls
``check(history)`` and fails when the store's answers cannot be explained by any single
sequential order that respects real time.

The model, per key (P-compositionality: every operation touches one key, so the history is
split by key and each key is checked on its own, which keeps large histories tractable):
  * put(k, v)                     the value becomes v
  * get(k) -> v | None            None means the key is absent
  * delete(k) [-> existed]        the key becomes absent; an optional result says whether
                                  it existed (etcd's "deleted" count > 0)
  * cas(k, expected, v) -> bool   txn: if value(k) == expected then put(k, v); expected None
                                  means "the key is absent" (etcd's create_revision == 0)

Operation outcomes:
  * ok    the client got an answer: the operation took effect once, between invoke and return
  * fail  the operation certainly did not take effect (e.g. refused before being proposed);
          it is left out of the check
  * info  unknown outcome (timeout, server died, connection cut): it may have taken effect at
          any point after its invocation, or never. Modelled as returning at +infinity. A get
          with an unknown outcome tells nothing and is left out. An operation invoked but never
          completed in the recorder counts as info.

The algorithm is Wing & Gong's search for a linearization with Lowe's memoization (the
approach of Knossos and porcupine): walk a doubly linked list of call/return entries in time
order; at a call, try to linearize that operation now (apply it to the model; if its recorded
result matches, lift its call and return out of the list and restart from the head); at a
return whose operation is still unlinearized, the current prefix is a dead end: backtrack.
A cache of (set of linearized ops, model state) prunes configurations already explored.
Indeterminate operations have no return entry, so the search never has to linearize them;
it succeeds as soon as every completed operation is linearized.

Heuristics that change speed, never the verdict (a brute-force cross-check in the unit test
holds them to that): the candidates at each step (ops invoked before the first pending
return) are tried most urgent first, by return time, so indeterminate ops come last; the
cache also skips a configuration that differs from an explored one only by having linearized
more indeterminate ops (it has no option the explored one lacked); and a blind write (put,
unchecked delete) is never linearized right after an indeterminate op, whose effect it
would erase (that order without the erased op is explored anyway).

Cost: 5 clients x 1,000 ops over 10 keys checks in well under a second; a single hot key
with many indeterminate writes is the expensive case (exponential in the worst case, as for
every checker of this family): pass time_limit to get ok=None instead of waiting forever.

API:
    h = History()
    op = h.invoke(client, "put", key, value="v1")       # from any thread
    h.ok(op)            / h.ok(op, result) / h.fail(op) / h.info(op)
    with h.op(client, "get", key) as rec: rec.ok(value)  # info on an exception
    ok, explanation = check(h)                           # or check(h.ops) / check_detailed
    h.save(path); h2 = History.load(path)

Timestamps are time.monotonic_ns(). Values are strings (bytes are decoded as latin-1, so any
bytes round-trip through JSON) or ints.
"""

import contextlib
import gc
import json
import threading
import time

FUNCS = ("put", "get", "delete", "cas")
STATUSES = ("ok", "fail", "info", "pending")
FORMAT_VERSION = 1


class Op:
    """One operation of a history. ``ret`` is None when the outcome is unknown."""

    __slots__ = ("id", "client", "f", "key", "value", "expected", "call", "ret",
                 "result", "status")

    def __init__(self, id, client, f, key, value=None, expected=None, call=0, ret=None,
                 result=None, status="pending"):
        if f not in FUNCS:
            raise ValueError("unknown operation %r (want one of %s)" % (f, ", ".join(FUNCS)))
        if status not in STATUSES:
            raise ValueError("unknown status %r" % (status,))
        self.id = id
        self.client = client
        self.f = f
        self.key = _norm(key)
        self.value = _norm(value)
        self.expected = _norm(expected)
        self.call = call
        self.ret = ret
        self.result = _norm(result)
        self.status = status

    @property
    def determinate(self):
        return self.status == "ok"

    def to_dict(self):
        return {s: getattr(self, s) for s in self.__slots__}

    @classmethod
    def from_dict(cls, d):
        return cls(**{s: d.get(s) for s in cls.__slots__ if s in d})

    def describe(self, t0=0):
        if self.f == "put":
            s = "put(%r, %r)" % (self.key, self.value)
        elif self.f == "get":
            s = "get(%r)" % (self.key,)
        elif self.f == "delete":
            s = "delete(%r)" % (self.key,)
        else:
            s = "cas(%r, %r -> %r)" % (self.key, self.expected, self.value)
        if self.status == "ok":
            if self.f == "get":
                s += " -> %s" % ("absent" if self.result is None else repr(self.result))
            elif self.result is not None:
                s += " -> %r" % (self.result,)
        else:
            s += " -> ?"
        ret = "inf" if self.ret is None else "%.3fms" % ((self.ret - t0) / 1e6)
        return "#%d client %s %s [%.3fms .. %s] %s" % (
            self.id, self.client, s, (self.call - t0) / 1e6, ret, self.status)

    def __repr__(self):
        return "Op(%s)" % self.describe()


def _norm(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("latin-1")
    return v


class _Recording:
    """Handle returned by History.op(): call ok/fail/info once; an exception means info."""

    def __init__(self, history, op_id):
        self.history = history
        self.id = op_id
        self.done = False

    def ok(self, result=None):
        self.done = True
        self.history.ok(self.id, result)

    def fail(self):
        self.done = True
        self.history.fail(self.id)

    def info(self):
        self.done = True
        self.history.info(self.id)


class History:
    """A thread-safe recorder of operations; also the unit of (de)serialization."""

    def __init__(self, ops=None, clock=time.monotonic_ns):
        self._lock = threading.Lock()
        self._ops = list(ops or [])
        self._clock = clock

    # -- recording ---------------------------------------------------------------------
    def invoke(self, client, f, key, value=None, expected=None):
        """Record the invocation (now); returns the op id to complete with ok/fail/info."""
        with self._lock:
            op = Op(len(self._ops), client, f, key, value, expected, call=self._clock())
            self._ops.append(op)
            return op.id

    def _complete(self, op_id, status, result=None, ret=None):
        now = self._clock()
        with self._lock:
            op = self._ops[op_id]
            if op.status != "pending":
                raise ValueError("op #%d already completed (%s)" % (op_id, op.status))
            op.status = status
            op.result = _norm(result)
            op.ret = ret if ret is not None else (now if status != "info" else None)

    def ok(self, op_id, result=None):
        """The client got an answer. result: get -> value or None; cas -> bool;
        delete -> optional bool/count (whether the key existed); put -> None."""
        if isinstance(result, int) and not isinstance(result, bool):
            op = self._ops[op_id]
            if op.f == "delete":
                result = result > 0
        self._complete(op_id, "ok", result)

    def fail(self, op_id):
        """The operation certainly did not take effect."""
        self._complete(op_id, "fail")

    def info(self, op_id):
        """Unknown outcome: it may take effect at any time after its invocation, or never."""
        self._complete(op_id, "info")

    @contextlib.contextmanager
    def op(self, client, f, key, value=None, expected=None):
        rec = _Recording(self, self.invoke(client, f, key, value, expected))
        try:
            yield rec
        except BaseException:
            if not rec.done:
                rec.info()
            raise
        if not rec.done:
            rec.info()

    def add(self, client, f, key, call, ret, value=None, expected=None, result=None,
            status=None):
        """Append a finished op with explicit times (tests, importers). ret None -> info."""
        if status is None:
            status = "info" if ret is None else "ok"
        with self._lock:
            op = Op(len(self._ops), client, f, key, value, expected, call, ret, result, status)
            self._ops.append(op)
            return op.id

    @property
    def ops(self):
        with self._lock:
            return list(self._ops)

    def __len__(self):
        return len(self._ops)

    # -- JSON --------------------------------------------------------------------------
    def to_json(self):
        return json.dumps({"version": FORMAT_VERSION,
                           "ops": [o.to_dict() for o in self.ops]}, indent=None)

    @classmethod
    def from_json(cls, text):
        d = json.loads(text)
        if d.get("version") != FORMAT_VERSION:
            raise ValueError("unsupported history format version %r" % d.get("version"))
        return cls([Op.from_dict(o) for o in d["ops"]])

    def save(self, path):
        with open(path, "w") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls.from_json(f.read())


# -- the model -------------------------------------------------------------------------

def step(state, op):
    """Apply op to a key's state (value or None). Returns (matches, new_state)."""
    f = op.f
    if f == "put":
        return True, op.value
    if f == "get":
        return op.result == state, state
    if f == "delete":
        if op.status == "ok" and op.result is not None and bool(op.result) != (state is not None):
            return False, state
        return True, None
    # cas
    hit = state == op.expected
    if op.status == "ok" and bool(op.result) != hit:
        return False, state
    return True, (op.value if hit else state)


# -- the checker -----------------------------------------------------------------------

class Result:
    """Outcome of check_detailed. ok is True, False, or None (time limit reached)."""

    def __init__(self, ok, explanation, key=None, window=(), prefix=(), state=None,
                 stats=None):
        self.ok = ok
        self.explanation = explanation
        self.key = key              # the failing key
        self.window = list(window)  # ops that could not be linearized (the stuck window)
        self.prefix = list(prefix)  # the longest linearizable prefix found, in order
        self.state = state          # the model state after that prefix
        self.stats = stats or {}

    def __iter__(self):
        return iter((self.ok, self.explanation))


class _Stuck:
    __slots__ = ("depth", "blocked", "window", "prefix", "state")


def _check_key(ops, deadline):
    """Wing-Gong + Lowe on one key's ops. Returns (True|False|None, _Stuck|None, steps)."""
    entries = []  # (time, kind, op index); kind 0 = call, 1 = return
    for i, op in enumerate(ops):
        entries.append((op.call, 0, i))
        if op.determinate:
            entries.append((op.ret, 1, i))
    entries.sort()  # at equal times calls come first: treated as concurrent (permissive)
    n = len(entries)
    head, tail = n, n + 1
    nxt = list(range(1, n + 1)) + [0 if n else tail, -1]
    if n:
        nxt[n - 1] = tail
    prv = [i - 1 for i in range(n)] + [-1, n - 1 if n else head]
    if n:
        prv[0] = head
    is_call = [e[1] == 0 for e in entries]
    op_of = [e[2] for e in entries]
    ret_entry = [-1] * len(ops)
    for idx, e in enumerate(entries):
        if e[1] == 1:
            ret_entry[e[2]] = idx

    def lift(x):
        nxt[prv[x]] = nxt[x]
        prv[nxt[x]] = prv[x]
        r = ret_entry[op_of[x]]
        if r >= 0:
            nxt[prv[r]] = nxt[r]
            prv[nxt[r]] = prv[r]

    def unlift(x):
        r = ret_entry[op_of[x]]
        if r >= 0:
            nxt[prv[r]] = r
            prv[nxt[r]] = r
        nxt[prv[x]] = x
        prv[nxt[x]] = x

    det = [op.determinate for op in ops]
    # put, and delete without a checked result, ignore the state they overwrite
    blind = [op.f == "put" or (op.f == "delete" and (op.result is None or not det[i]))
             for i, op in enumerate(ops)]
    remaining = sum(det)
    inf = float("inf")
    urgency = [(op.ret if det[i] else inf, op.call, i) for i, op in enumerate(ops)]

    def candidates():
        """Ops that may be linearized next (invoked before the first pending return),
        most urgent first: by return time, so indeterminate ops come last."""
        c, x = [], nxt[head]
        while x != tail and is_call[x]:
            c.append(x)
            x = nxt[x]
        c.sort(key=lambda e: urgency[op_of[e]])
        return c, x

    state = None
    dset = 0      # bitset of linearized determinate ops
    iset = 0      # bitset of linearized indeterminate ops
    cache = {}    # (dset, state) -> the isets explored with them
    stack = []    # (entry linearized, state before, candidates, next position)
    stuck = None
    steps = 0
    cands, first_ret = candidates()
    pos = 0
    while remaining > 0:
        steps += 1
        if deadline is not None and steps & 0x3FF == 0 and time.monotonic() > deadline:
            return None, stuck, steps
        if pos < len(cands):
            entry = cands[pos]
            pos += 1
            i = op_of[entry]
            if blind[i] and stack and not det[op_of[stack[-1][0]]]:
                # A blind write right after an indeterminate op erases it: the same order
                # without that op is explored from the configuration below it.
                continue
            matches, new_state = step(state, ops[i])
            if not matches:
                continue
            bit = 1 << i
            nd, ni = (dset | bit, iset) if det[i] else (dset, iset | bit)
            # Lowe's memo, with dominance: a configuration that only adds linearized
            # indeterminate ops to an explored one has no option that one lacked.
            seen = cache.setdefault((nd, new_state), [])
            if any(prev & ~ni == 0 for prev in seen):
                continue
            seen.append(ni)
            stack.append((entry, state, cands, pos))
            state, dset, iset = new_state, nd, ni
            lift(entry)
            remaining -= det[i]
            cands, first_ret = candidates()
            pos = 0
        else:
            # No candidate works here: the op returning at first_ret cannot be linearized
            # after this prefix. Dead end: backtrack.
            if stuck is None or len(stack) > stuck.depth:
                stuck = _stuck_at(ops, stack, state, first_ret, op_of, is_call, nxt, head)
            if not stack:
                return False, stuck, steps
            entry, state, cands, pos = stack.pop()
            i = op_of[entry]
            if det[i]:
                dset &= ~(1 << i)
            else:
                iset &= ~(1 << i)
            unlift(entry)
            remaining += det[i]
            first_ret = _first_return(nxt, is_call, head, tail)
    return True, None, steps


def _first_return(nxt, is_call, head, tail):
    x = nxt[head]
    while x != tail and is_call[x]:
        x = nxt[x]
    return x


def _stuck_at(ops, stack, state, entry, op_of, is_call, nxt, head):
    stuck = _Stuck()
    stuck.depth = len(stack)
    stuck.blocked = ops[op_of[entry]]
    stuck.state = state
    stuck.prefix = [ops[op_of[e[0]]] for e in stack]
    win, x = [], nxt[head]
    while x != entry:
        if is_call[x]:
            win.append(ops[op_of[x]])
        x = nxt[x]
    if stuck.blocked not in win:
        win.append(stuck.blocked)
    stuck.window = win
    return stuck


def _relevant(op):
    if op.status == "fail":
        return False
    if op.f == "get" and op.status != "ok":
        return False  # a read with an unknown outcome constrains nothing
    return True


def _validate(op):
    if op.status == "ok":
        if op.ret is None:
            raise ValueError("op #%d is ok but has no return time" % op.id)
        if op.ret < op.call:
            raise ValueError("op #%d returns before it is invoked" % op.id)
        if op.f == "cas" and op.result is None:
            raise ValueError("op #%d: a completed cas needs a result (bool)" % op.id)


def check_detailed(history, time_limit=None):
    """Check a History (or a list of Op). Returns a Result (iterable as (ok, explanation))."""
    ops = history.ops if isinstance(history, History) else list(history)
    by_key = {}
    for op in ops:
        if op.status == "pending":  # invoked, never completed: unknown outcome
            op = Op(op.id, op.client, op.f, op.key, op.value, op.expected, op.call, None,
                    None, "info")
        elif op.status == "info" and op.ret is not None:
            op = Op(op.id, op.client, op.f, op.key, op.value, op.expected, op.call, None,
                    None, "info")
        if not _relevant(op):
            continue
        _validate(op)
        by_key.setdefault(op.key, []).append(op)
    deadline = None if time_limit is None else time.monotonic() + time_limit
    t0 = min((o.call for o in ops), default=0)
    failures, unknown, steps = [], [], 0
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the search allocates many small objects and frees none till the end
    try:
        results = _check_keys(by_key, deadline)
    finally:
        if gc_was_enabled:
            gc.enable()
    for key, ok, stuck, n in results:
        steps += n
        if ok is None:
            unknown.append(key)
            break
        if not ok:
            failures.append((key, stuck))
    stats = {"ops": len(ops), "keys": len(by_key), "steps": steps}
    if failures:
        key, stuck = min(failures, key=lambda f: (len(f[1].window), repr(f[0])))
        return Result(False, _explain(key, stuck, by_key[key], t0, len(failures)), key,
                      stuck.window, stuck.prefix, stuck.state, stats)
    if unknown:
        return Result(None, "time limit of %ss reached while checking key %r (%d ops); "
                      "no violation found before that" % (time_limit, unknown[0],
                                                         len(by_key[unknown[0]])),
                      unknown[0], stats=stats)
    return Result(True, "linearizable: %d ops over %d keys" % (len(ops), len(by_key)),
                  stats=stats)


def _check_keys(by_key, deadline):
    out = []
    for key in sorted(by_key, key=repr):
        ok, stuck, n = _check_key(by_key[key], deadline)
        out.append((key, ok, stuck, n))
        if ok is None:
            break
    return out


def check(history, time_limit=None):
    """Returns (ok, explanation). ok is None when time_limit (seconds) ran out."""
    r = check_detailed(history, time_limit)
    return r.ok, r.explanation


def _explain(key, stuck, key_ops, t0, nfail):
    lines = ["not linearizable: key %r (%d ops on it%s)" % (
        key, len(key_ops), "; %d keys fail, this one has the smallest window" % nfail
        if nfail > 1 else "")]
    lines.append("longest linearizable prefix: %d ops; value after it: %s" % (
        stuck.depth, "absent" if stuck.state is None else repr(stuck.state)))
    for op in stuck.prefix[-3:]:
        lines.append("  ... %s" % op.describe(t0))
    lines.append("stuck window: after that prefix (and after every other order tried), "
                 "these %d pending ops cannot be linearized so that #%d fits before it "
                 "returns:" % (len(stuck.window), stuck.blocked.id))
    for op in stuck.window:
        lines.append("  %s%s" % (op.describe(t0), "   <- blocked" if op is stuck.blocked
                                 else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 2:
        sys.exit("usage: linearizability.py HISTORY.json")
    t = time.monotonic()
    ok, why = check(History.load(sys.argv[1]))
    print(why)
    print("checked in %.2fs" % (time.monotonic() - t))
    sys.exit(0 if ok else 1)
