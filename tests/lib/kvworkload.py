"""Concurrent register clients for the multi-member fault tests (issue 4), and the checks
run on a cluster after them.

Owns: the workload (client threads doing gets, puts and compare-and-set txns over gRPC on a
few keys, each operation recorded in a linearizability.History with its invoke and complete
times and outcome), and ``verify_cluster``: the checks every crash and partition test ends
with (members converge to the same revision and the same HashKV; every member holds the
same sequence of events for the workload's keys; no acknowledged write is missing from it
and no value appears that no client wrote; the history is linearizable).

Outcomes, as the checker models them:
  * ok    the client got an answer;
  * fail  the RPC never left the client (gRPC could not connect: "failed to connect to all
          addresses"), so it certainly had no effect;
  * info  anything else that is not an answer (deadline exceeded, "request timed out",
          "leader changed", connection cut mid-call): it may or may not have taken effect.
A get without an answer tells nothing and the checker drops it.

Against the reference (STORE_IMPL=etcd), Debian's etcd 3.4.23 failed the same-events check
once in a few partition runs (one member's watch from revision 1 gave one event more): that
release can send a catching-up watcher an event twice (etcd-io/etcd#15248, fixed in 3.4.24).

Each client thread talks to one endpoint ("host:port") for its whole life, so a test
decides who talks to which member (e.g. some clients on an isolated leader). Values are
unique ("c<client>-<seq>"), which keeps the check fast and makes lost writes visible.
Uses Debian's python3-grpcio and python3-etcd3's generated etcd protos.
"""

import random
import threading
import time

import linearizability as lin
import storeharness

NOT_SENT = "failed to connect to all addresses"


def _rpc():
    import grpc
    from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
    return grpc, rpc_pb2, rpc_pb2_grpc


def prefix_end(p):
    return p[:-1] + bytes([p[-1] + 1])


class Workload:
    """Client threads on targets (one "host:port" per client) over keys under prefix."""

    def __init__(self, targets, keys=4, prefix="lin/", timeout=3.0, seed=1,
                 mix=(0.4, 0.3, 0.3)):
        self.history = lin.History()
        self.targets = list(targets)
        self.keys = ["k%d" % i for i in range(keys)]
        self.prefix = prefix
        self.timeout = timeout
        self.seed = seed
        self.mix = mix                       # shares of get, put, cas
        self.errors = {}                     # "CODE: details" -> count
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []

    @classmethod
    def on_members(cls, members, per=2, **kw):
        """per clients on each of members (storeharness.Store objects): clients
        per*i .. per*i+per-1 talk to members[i] (see clients_of)."""
        w = cls([m.endpoint for m in members for _ in range(per)], **kw)
        w._members, w._per = list(members), per
        return w

    def clients_of(self, members):
        """The client ids that talk to members (a Workload made by on_members)."""
        ids = set()
        for m in members:
            i = self._members.index(m)
            ids |= set(range(self._per * i, self._per * (i + 1)))
        return ids

    # -- running
    def start(self):
        for i, t in enumerate(self.targets):
            th = threading.Thread(target=self._client, args=(i, t), daemon=True,
                                  name="kvclient-%d" % i)
            self._threads.append(th)
            th.start()
        return self

    def stop(self, timeout=30):
        """Stops the clients; an op still running when they are joined stays pending
        (the checker takes it as info)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for th in self._threads:
            th.join(max(0.1, deadline - time.monotonic()))
        alive = [th.name for th in self._threads if th.is_alive()]
        if alive:
            raise AssertionError("workload clients did not stop: %s" % alive)

    def _note_error(self, e):
        msg = "%s: %s" % (e.code().name, (e.details() or "")[:120])
        with self._lock:
            self.errors[msg] = self.errors.get(msg, 0) + 1
        return e.details() or ""

    def _client(self, idx, target):
        grpc, pb, pbg = _rpc()
        rng = random.Random(self.seed * 7919 + idx)
        ch = grpc.insecure_channel(target)
        kv = pbg.KVStub(ch)
        h, seq, last = self.history, 0, {}
        try:
            while not self._stop.is_set():
                key = rng.choice(self.keys)
                k = (self.prefix + key).encode()
                seq += 1
                value = "c%d-%d" % (idx, seq)
                r = rng.random()
                if r < self.mix[0]:
                    op = h.invoke(idx, "get", key)
                    call = lambda: kv.Range(pb.RangeRequest(key=k), timeout=self.timeout)
                elif r < self.mix[0] + self.mix[1]:
                    op = h.invoke(idx, "put", key, value=value)
                    call = lambda: kv.Put(pb.PutRequest(key=k, value=value.encode()),
                                          timeout=self.timeout)
                else:
                    exp = last.get(key)
                    if exp is None:
                        cmp = pb.Compare(key=k, target=pb.Compare.CREATE,
                                         result=pb.Compare.EQUAL, create_revision=0)
                    else:
                        cmp = pb.Compare(key=k, target=pb.Compare.VALUE,
                                         result=pb.Compare.EQUAL, value=exp.encode())
                    txn = pb.TxnRequest(compare=[cmp], success=[pb.RequestOp(
                        request_put=pb.PutRequest(key=k, value=value.encode()))])
                    op = h.invoke(idx, "cas", key, value=value, expected=exp)
                    call = lambda: kv.Txn(txn, timeout=self.timeout)
                try:
                    resp = call()
                except grpc.RpcError as e:
                    details = self._note_error(e)
                    if e.code() == grpc.StatusCode.UNAVAILABLE and NOT_SENT in details:
                        h.fail(op)
                    else:
                        h.info(op)
                    if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                        # The connection may be stuck in TCP retransmission backoff
                        # after a cut (seconds after the link is back): reconnect.
                        ch.close()
                        ch = grpc.insecure_channel(target)
                        kv = pbg.KVStub(ch)
                    self._stop.wait(0.05)     # no hot loop against a dead member
                    continue
                except Exception:
                    h.info(op)
                    raise
                if r < self.mix[0]:
                    got = resp.kvs[0].value.decode() if resp.kvs else None
                    h.ok(op, got)
                    last[key] = got
                elif r < self.mix[0] + self.mix[1]:
                    h.ok(op)
                    last[key] = value
                else:
                    h.ok(op, bool(resp.succeeded))
                    if resp.succeeded:
                        last[key] = value
                    else:
                        last.pop(key, None)   # unknown now: read it next time
        finally:
            ch.close()

    # -- what happened
    def ops(self):
        return self.history.ops

    def count(self, status="ok", since_ns=0, clients=None, writes_only=False):
        n = 0
        for o in self.history.ops:
            if o.status != status or o.call < since_ns:
                continue
            if clients is not None and o.client not in clients:
                continue
            if writes_only and o.f == "get":
                continue
            n += 1
        return n

    def wait_ok(self, n, since_ns=0, clients=None, writes_only=True, timeout=20):
        """Until n ops invoked at or after since_ns (by clients) got answers; the count."""
        deadline = time.monotonic() + timeout
        while True:
            c = self.count("ok", since_ns, clients, writes_only)
            if c >= n or time.monotonic() > deadline:
                return c
            time.sleep(0.05)

    def acked_writes(self):
        """{key: set of values} of puts and successful cas that were acknowledged."""
        out = {}
        for o in self.history.ops:
            if o.status == "ok" and (o.f == "put" or (o.f == "cas" and o.result)):
                out.setdefault(o.key, set()).add(o.value)
        return out

    def written_values(self):
        """{key: set of values} of every write invoked (whatever its outcome)."""
        out = {}
        for o in self.history.ops:
            if o.f in ("put", "cas"):
                out.setdefault(o.key, set()).add(o.value)
        return out

    def summary(self):
        st = {}
        for o in self.history.ops:
            st[o.status] = st.get(o.status, 0) + 1
        return "%d ops (%s); errors %r" % (len(self.history), ", ".join(
            "%s %d" % kv for kv in sorted(st.items())), self.errors)


# ---------------------------------------------------------------------------------------
# After the run: the same data everywhere, nothing lost, linearizable

def wait_converged(cluster, members, timeout=30):
    """Until every member reports the same revision and the same HashKV at it; returns
    (revision, hash). Raises AssertionError with what each member said otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        sts = [cluster.status(m) for m in members]
        revs = {s["revision"] for s in sts if s is not None}
        if None not in sts and len(revs) == 1:
            rev = revs.pop()
            hs = []
            for m in members:
                try:
                    hs.append(cluster.hash_kv(m, rev))
                except Exception as e:     # grpc.RpcError: say which member, retry
                    hs.append("%s: %s" % (m.name, e))
            if len(set(hs)) == 1 and not isinstance(hs[0], str):
                return rev, hs[0][0]
            last = "at revision %d HashKV %r" % (rev, hs)
        else:
            last = "revisions %r" % ([s and s["revision"] for s in sts],)
        if time.monotonic() > deadline:
            raise AssertionError("members did not converge within %ss: %s"
                                 % (timeout, last))
        time.sleep(0.1)


def key_events(endpoint, prefix, upto_rev, timeout=30):
    """Every event under prefix from revision 1 to upto_rev, through a Watch on endpoint:
    [(key, type, mod_revision, value)]."""
    import queue
    grpc, pb, _ = _rpc()
    p = prefix.encode()
    reqs = queue.Queue()
    reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(
        key=p, range_end=prefix_end(p), start_revision=1)))
    ch = grpc.insecure_channel(endpoint)
    events = []
    try:
        stream = storeharness.watch_stream_call(ch, reqs, timeout)
        for resp in stream:
            if resp.canceled:
                raise AssertionError("watch on %s canceled: %r" % (endpoint, resp))
            for ev in resp.events:
                events.append((ev.kv.key.decode(), int(ev.type), ev.kv.mod_revision,
                               ev.kv.value.decode()))
            if events and events[-1][2] >= upto_rev:
                break
        stream.cancel()
    finally:
        reqs.put(None)
        ch.close()
    return events


def verify_cluster(cluster, workload, members=None, time_limit=120, converge_timeout=30):
    """The end-of-test checks (module docstring) on members (default: all of the
    storeharness.Cluster's). Returns a one-line summary; raises AssertionError on any
    violation."""
    members = list(members or cluster.members)
    endpoints = [m.endpoint for m in members]
    rev, hsh = wait_converged(cluster, members, converge_timeout)
    grpc, pb, pbg = _rpc()
    p = workload.prefix.encode()
    ch = grpc.insecure_channel(endpoints[0])
    try:
        r = pbg.KVStub(ch).Range(pb.RangeRequest(key=p, range_end=prefix_end(p)), timeout=10)
    finally:
        ch.close()
    upto = max((kv.mod_revision for kv in r.kvs), default=0)
    # A write whose client gave up (deadline exceeded, the op left "info") may still be
    # applied after the members converged, as in etcd: a watch response can then carry
    # events past upto on one member and not on another. Compare up to upto.
    per_member = [[ev for ev in key_events(e, workload.prefix, upto) if ev[2] <= upto]
                  if upto else [] for e in endpoints]
    for e, evs in zip(endpoints[1:], per_member[1:]):
        if evs != per_member[0]:
            first = per_member[0]
            i = next((i for i, (a, b) in enumerate(zip(first, evs)) if a != b),
                     min(len(first), len(evs)))
            raise AssertionError("events under %r differ: %s has %d, %s has %d; from #%d: "
                                 "%r vs %r" % (workload.prefix, endpoints[0], len(first), e,
                                               len(evs), i, first[max(0, i - 1):i + 3],
                                               evs[max(0, i - 1):i + 3]))
    seen = {}
    for key, _typ, _rev, value in per_member[0]:
        seen.setdefault(key[len(workload.prefix):], set()).add(value)
    lost = {k: sorted(v - seen.get(k, set())) for k, v in workload.acked_writes().items()}
    lost = {k: v for k, v in lost.items() if v}
    if lost:
        raise AssertionError("acknowledged writes missing from the store: %r" % lost)
    written = workload.written_values()
    phantom = {k: sorted(v - written.get(k, set())) for k, v in seen.items()}
    phantom = {k: v for k, v in phantom.items() if v}
    if phantom:
        raise AssertionError("values no client wrote: %r" % phantom)
    t0 = time.monotonic()
    res = lin.check_detailed(workload.history, time_limit=time_limit)
    took = time.monotonic() - t0
    if res.ok is None:
        raise AssertionError("linearizability check inconclusive: " + res.explanation)
    if not res.ok:
        raise AssertionError("history is not linearizable (%s):\n%s"
                             % (workload.summary(), res.explanation))
    return ("revision %d, HashKV %d on %d members; %d events; %s; linearizable (checked "
            "in %.2fs)" % (rev, hsh, len(endpoints), len(per_member[0]), workload.summary(),
                           took))
