"""Operating a 3-member cluster (issue 4): restart of every member (SIGTERM, then kill -9
of all three) brings data and leadership back; `etcdctl endpoint health --cluster` and
`endpoint status --cluster` (the real leader, raft index and term, isLearner); a member
added to a cluster whose raft log is compacted far past (small --snapshot-count) catches
up from a raft snapshot of the LMDB state and ends with the same HashKV; disaster
recovery: a new 3-member cluster restored from `etcdctl snapshot save`, and
`--force-new-cluster` from one survivor, to which members are then added back; a watch
stream that required a leader (metadata hasleader: true) is ended with "etcdserver: no
leader" once its member has known no leader for a few election timeouts, as etcd does,
and so is a LeaseKeepAlive stream with it (clientv3's lessor sends it); a unary call with
that metadata is refused at once while its member knows no leader.

Every wait is a condition with a deadline (a loaded 2-core box, ASan). Runs against
etcd 3.4 too (STORE_IMPL=etcd) to prove the tests. Prints "N passed, N failed" last."""

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

TIMINGS = ["--heartbeat-interval", "100", "--election-timeout", "1000"]


class OpsBase(h.StoreTestCase):
    def cluster(self, size=3, extra=(), token="bollard-ops", start=True):
        c = h.Cluster(size, extra_args=TIMINGS + list(extra), token=token)
        c.token = token
        self._stores += c.members
        if start:
            c.start(timeout=60)
        return c

    def get(self, m, key, *flags):
        return self.assertOk(m.etcdctl("get", key, "--print-value-only", *flags)).out.strip()

    def put_many(self, m, prefix, n):
        cl = m.client(timeout=10)
        for i in range(n):
            cl.put("%s/%04d" % (prefix, i), "v%d" % i)
        cl.close()

    def count(self, m, prefix, serializable=False):
        flags = ["--consistency=s"] if serializable else []
        r = self.assertOk(m.etcdctl("get", prefix + "/", "--prefix", "--keys-only", "-w",
                                    "json", *flags))
        return int(r.json().get("count", 0))

    def wait_equal_hashes(self, c, members=None, timeout=30):
        members = members or [m for m in c.members if m.running()]

        def same():
            hs = [c.hash_kv(m) for m in members]
            return hs[0] if len(set(hs)) == 1 else None
        return h.wait_until(same, timeout, "equal HashKV on %s" % [m.name for m in members])

    @contextlib.contextmanager
    def stopped(self, others):
        """others SIGSTOPped for the block; the time they stopped."""
        for x in others:
            x.proc.send_signal(signal.SIGSTOP)
        try:
            yield time.monotonic()
        finally:
            for x in others:
                x.proc.send_signal(signal.SIGCONT)

    @contextlib.contextmanager
    def client_transport(self, transport):
        """BOLLARD_CLIENT_TRANSPORT=transport (None: as it was) for the members started
        in the block."""
        saved = os.environ.get("BOLLARD_CLIENT_TRANSPORT")
        if transport:
            os.environ["BOLLARD_CLIENT_TRANSPORT"] = transport
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop("BOLLARD_CLIENT_TRANSPORT", None)
            else:
                os.environ["BOLLARD_CLIENT_TRANSPORT"] = saved

    def transport_clusters(self, size=3):
        """A cluster per client transport (Bollard's two; etcd's one), members started
        in the caller's block on that transport too, each stopped once the caller is
        done with it."""
        transports = ("h2", "grpc-core") if h.default_impl() == "bollard" else (None,)
        for transport in transports:
            with self.client_transport(transport):
                c = self.cluster(size, token="bollard-%d-%s" % (size, transport or "etcd"))
                yield c
            for x in c.members:
                self.assertIn(x.terminate(), x.clean_exit_codes(), x.name)

    def join(self, c, leader, name, learner=False, extra=(), start=True):
        """member add NAME (via leader), start it (unless not start) with
        --initial-cluster-state existing."""
        n = h.Store(name=name)
        self._stores.append(n)
        args = ["member", "add", name, "--peer-urls=" + n.peer_url] + (["--learner"] if learner
                                                                      else [])
        r = h.member_change(leader, args)
        initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', r.out).group(1)
        n.extra_args = ["--initial-cluster", initial, "--initial-cluster-state", "existing",
                        "--initial-cluster-token", c.token] + TIMINGS + list(extra)
        if start:
            n.start(wait=False)
        return n


class RestartTest(OpsBase):
    def restart_all(self, c):
        for m in c.members:
            m.start(wait=False)
        for m in c.members:
            m.wait_ready(60)
        return c.leader(timeout=30)

    def test_restart_all_sigterm_then_kill9(self):
        c = self.cluster()
        leader = c.leader()
        self.put_many(leader, "a", 100)
        self.assertOk(c.members[1].etcdctl("put", "via-follower", "1"))
        rev = c.status(leader)["revision"]
        # every member stops cleanly on SIGTERM
        for m in c.members:
            self.assertIn(m.terminate(), m.clean_exit_codes(), m.log_tail())
        new = self.restart_all(c)
        print("after SIGTERM of all: %s leads" % new.name, flush=True)
        for m in c.members:
            self.assertEqual(self.count(m, "a"), 100, m.name)
            self.assertEqual(self.get(m, "via-follower"), "1", m.name)
            self.assertGreaterEqual(c.status(m)["revision"], rev)
        self.assertOk(c.members[2].etcdctl("put", "after-term", "2"))
        self.put_many(c.members[0], "b", 50)
        # kill -9 of all three
        for m in c.members:
            m.kill9()
        new = self.restart_all(c)
        print("after kill -9 of all: %s leads" % new.name, flush=True)
        for m in c.members:
            self.assertEqual(self.count(m, "a"), 100, m.name)
            self.assertEqual(self.count(m, "b"), 50, m.name)
            self.assertEqual(self.get(m, "after-term"), "2", m.name)
        self.assertOk(c.members[1].etcdctl("put", "after-kill", "3"))
        self.assertEqual(self.get(c.members[0], "after-kill"), "3")
        self.wait_equal_hashes(c)


class EndpointTest(OpsBase):
    def test_health_and_status_cluster(self):
        c = self.cluster()
        leader = c.leader()
        lid = c.status(leader)["member_id"]
        self.assertOk(leader.etcdctl("put", "x", "1"))
        follower = [m for m in c.members if m is not leader][0]
        r = self.assertOk(follower.etcdctl("endpoint", "health", "--cluster"))
        lines = [l for l in (r.out + r.err).splitlines() if "healthy" in l]
        self.assertEqual(len(lines), 3, r)
        for m in c.members:
            self.assertTrue(any(l.startswith(m.client_url + " is healthy") for l in lines), r)
        r = self.assertOk(follower.etcdctl("endpoint", "health", "--cluster", "-w", "json"))
        self.assertEqual(sorted((e["endpoint"], e["health"]) for e in r.json()),
                         sorted((m.client_url, True) for m in c.members))
        # status --cluster: every member, the real leader, one term, raft index > 0
        def statuses():
            r = self.assertOk(follower.etcdctl("endpoint", "status", "--cluster", "-w", "json"))
            st = r.json()
            idx = {s["Status"]["raftIndex"] for s in st}
            return st if len(idx) == 1 else None   # converged (heartbeats carry the commit)
        st = h.wait_until(statuses, 15, "raft indexes converge")
        self.assertEqual(sorted(s["Endpoint"] for s in st), sorted(m.client_url for m in c.members))
        self.assertEqual({s["Status"]["leader"] for s in st}, {lid})
        self.assertEqual(len({s["Status"]["raftTerm"] for s in st}), 1, st)
        self.assertEqual(len({s["Status"]["header"]["cluster_id"] for s in st}), 1, st)
        self.assertEqual(sorted(s["Status"]["header"]["member_id"] for s in st),
                         sorted(c.status(m)["member_id"] for m in c.members))
        for s in st:
            self.assertGreater(s["Status"]["raftIndex"], 0)
            self.assertFalse(s["Status"].get("isLearner", False))
        r = self.assertOk(follower.etcdctl("endpoint", "status", "--cluster", "-w", "table"))
        self.assertEqual(r.out.count("127.0.0.1"), 3, r.out)
        # a learner says so in its own status
        n4 = self.join(c, leader, "n4", learner=True)   # a learner serves no linearizable read
        h.wait_until(lambda: n4.client_url in self.assertOk(leader.etcdctl(
            "member", "list")).out, 60, "the learner started and published its client URL")
        r = self.assertOk(leader.etcdctl("endpoint", "status", "--cluster", "-w", "json"))
        st = {s["Endpoint"]: s["Status"] for s in r.json()}
        self.assertEqual(len(st), 4, st)
        self.assertTrue(st[n4.client_url].get("isLearner"), st)
        self.assertEqual(sum(1 for s in st.values() if s.get("isLearner")), 1, st)
        # one member down: health --cluster fails and names it
        victim = [m for m in c.members if m is not leader and m is not follower][0]
        victim.kill9()
        r = follower.etcdctl("endpoint", "health", "--cluster", timeout=60)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn(victim.client_url + " is unhealthy", r.out + r.err)
        self.assertIn(leader.client_url + " is healthy", r.out + r.err)


def spool_mappings(m):
    """Lines of m's /proc/PID/maps that map deleted files of its member dir."""
    member = os.path.realpath(os.path.join(m.data_dir, "member")) + "/"
    with open("/proc/%d/maps" % m.proc.pid) as f:
        return [line for line in f if member in line and line.rstrip().endswith("(deleted)")]


class SnapshotCatchUpTest(OpsBase):
    def test_new_member_catches_up_from_snapshot(self):
        c = self.cluster(extra=["--snapshot-count", "40"])
        leader = c.leader()
        self.put_many(leader, "s", 600)       # ~600 entries: the log is compacted many times
        self.put_many(c.members[1], "f", 50)  # forwarded ones too
        want = self.wait_equal_hashes(c)
        n4 = self.join(c, leader, "n4", extra=["--snapshot-count", "40"])
        n4.wait_ready(60)
        h.wait_until(lambda: self.count(n4, "s", serializable=True) == 600, 30,
                   "n4 has every key")
        all4 = c.members + [n4]
        self.assertOk(n4.etcdctl("put", "after-join", "1"))
        got = self.wait_equal_hashes(c, all4)
        self.assertNotEqual(got, want)        # the new write is in it
        if n4.impl == "bollard":
            self.assertIn("restored snapshot at applied index", n4.log_text())
        for m in all4:
            self.assertEqual(self.get(m, "after-join"), "1", m.name)
            self.assertEqual(self.count(m, "f"), 50, m.name)

    def test_lagging_member_catches_up_under_load_and_kill9(self):
        """A follower killed (-9) while the others wrote on and compacted their logs past
        it restarts under a write load and catches up through a full snapshot the leader
        makes for it (the snapshots members store hold no database); killed -9 again right
        after it restored that, it restarts on its own data dir; then the leader is
        killed -9, and the two others, the caught-up one of them, keep every acknowledged
        write and take new ones; the old leader rejoins with the same HashKV."""
        c = self.cluster(extra=["--snapshot-count", "100"])
        leader = c.leader()
        lag, other = [m for m in c.members if m is not leader]
        lag.kill9()
        load = h.WriteLoad([leader, other], "w", threads=4).start()
        try:
            h.wait_until(lambda: len(load.acked) >= 1500, 120, "1500 writes without %s"
                         % lag.name)
            lag.start(wait=False)   # under the load
            if lag.impl == "bollard":
                h.wait_until(lambda: "restored snapshot at applied index" in lag.log_text(),
                             90, "%s restored a snapshot" % lag.name)
                # the copy is a spooled file mapping (spool.c's registry says so)
                self.assertRegex(leader.log_text(),
                                 r"sending snapshot at raft index \d+: database copy at "
                                 r"applied index \d+, \d+ bytes \(a mapped file\)")
            else:
                lag.wait_ready(60)
            lag.kill9()
            lag.start(wait=False)
            lag.wait_ready(60)
            n = len(load.acked)
            h.wait_until(lambda: self.count(lag, "w", serializable=True) >= n, 60,
                         "%s caught up with %d writes" % (lag.name, n))
            if leader.impl == "bollard":
                # the copy it sent was an unlinked file of its member dir mapped for
                # raft (store/node/spool.c; the log above proves it was), unmapped once
                # sent: none left mapped
                h.wait_until(lambda: not spool_mappings(leader), 30,
                             "%s's snapshot copies unmapped" % leader.name)
            leader.kill9()
            c.leader(among=[lag, other], timeout=30)
            n = len(load.acked)
            h.wait_until(lambda: len(load.acked) >= n + 100, 60, "writes after the kill")
        finally:
            load.stop()
        print("%d acknowledged writes; errors %s" % (len(load.acked), load.errors), flush=True)
        self.wait_equal_hashes(c, [lag, other])
        for m in (lag, other):
            self.assertEqual(load.missing_on(m), [], m.name)
        leader.start(wait=False)
        leader.wait_ready(60)
        self.wait_equal_hashes(c)
        if leader.impl == "bollard":
            # what members store: raft's snapshots are headers, no database (except one
            # received from a leader, until two newer ones replace it); other never lagged
            for m in c.members:
                raft_dir = os.path.join(m.data_dir, "member", "raft")
                snaps = [f for f in os.listdir(raft_dir)
                         if re.fullmatch(r"snapshot-\d+-\d+-\d+", f)]
                sizes = [os.path.getsize(os.path.join(raft_dir, f)) for f in snaps]
                print("%s: snapshot files %s" % (m.name, sizes), flush=True)
                if m is other:
                    self.assertTrue(snaps, m.name)
                    self.assertLess(max(sizes), 128, (m.name, snaps))


class DisasterRecoveryTest(OpsBase):
    def restore(self, snap, m, initial, token):
        if m.impl == "etcd":
            argv = [h.ETCDCTL, "snapshot", "restore", snap]
        else:
            argv = [m.binary, "snapshot", "restore", snap]
        argv += ["--data-dir", m.data_dir, "--name", m.name, "--initial-cluster", initial,
                 "--initial-cluster-token", token, "--initial-advertise-peer-urls", m.peer_url]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=h.clean_env())
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_restore_cluster_from_snapshot(self):
        old = self.cluster(token="bollard-old")
        leader = old.leader()
        self.put_many(leader, "d", 200)
        lid = self.assertOk(leader.etcdctl("lease", "grant", "600")).out.split()[1]
        self.assertOk(leader.etcdctl("put", "leased", "L", "--lease", lid))
        self.assertOk(leader.etcdctl("del", "d/0007"))
        want_rev = old.status(leader)["revision"]
        old_cid = old.status(leader)["cluster_id"]
        self.wait_equal_hashes(old)   # a snapshot is of one member's applied state
        snap = os.path.join(leader.tmp, "backup.db")
        self.assertOk(old.members[1].etcdctl("snapshot", "save", snap))
        for m in old.members:       # the disaster
            m.kill9()
        new = h.Cluster(3, extra_args=TIMINGS, token="bollard-new")
        self._stores += new.members
        initial = ",".join("%s=%s" % (m.name, m.peer_url) for m in new.members)
        for m in new.members:
            self.restore(snap, m, initial, "bollard-new")
        new.start(timeout=60)
        nl = new.leader(timeout=30)
        for m in new.members:
            self.assertEqual(self.count(m, "d"), 199, m.name)
            self.assertEqual(self.get(m, "leased"), "L", m.name)
            self.assertEqual(new.status(m)["revision"], want_rev, m.name)
        r = self.assertOk(nl.etcdctl("lease", "timetolive", lid, "--keys"))
        self.assertIn("leased", r.out)
        # a new cluster: new IDs, and it takes writes at the next revision
        self.assertNotEqual(new.status(nl)["cluster_id"], old_cid)
        r = self.assertOk(new.members[2].etcdctl("put", "after", "x", "-w", "json"))
        self.assertEqual(int(r.json()["header"]["revision"]), want_rev + 1)
        self.wait_equal_hashes(new)

    def test_force_new_cluster(self):
        c = self.cluster()
        leader = c.leader()
        self.put_many(leader, "f", 100)
        cid = c.status(leader)["cluster_id"]
        # one write more, so that the survivor's log also holds the commit of the 100
        # (etcd drops the entries it does not know committed: the last one may go)
        self.assertOk(leader.etcdctl("put", "marker", "1"))
        self.wait_equal_hashes(c)     # the survivor has every acknowledged write
        survivor = c.members[0]
        sid = c.status(survivor)["member_id"]
        for m in c.members:   # two members lost for good, the survivor stopped
            m.kill9()
        survivor.extra_args = survivor.extra_args + ["--force-new-cluster"]
        survivor.start(timeout=60)
        self.assertIs(c.leader(among=[survivor], timeout=30), survivor)
        r = self.assertOk(survivor.etcdctl("member", "list", "-w", "json"))
        ms = r.json()["members"]
        self.assertEqual([m["ID"] for m in ms], [sid], ms)
        st = c.status(survivor)
        self.assertEqual(st["cluster_id"], cid)     # the same cluster, one member
        self.assertEqual(st["member_id"], sid)
        self.assertEqual(self.count(survivor, "f"), 100)
        self.assertOk(survivor.etcdctl("put", "alone", "1"))
        # restarted without the flag it stays a one-member cluster
        survivor.terminate()
        survivor.extra_args = survivor.extra_args[:-1]
        survivor.start(timeout=60)
        self.assertEqual(self.get(survivor, "alone"), "1")
        # members are added back one at a time, with fresh data dirs
        n2 = self.join(c, survivor, "n2b")
        n2.wait_ready(60)
        n3 = self.join(c, survivor, "n3b")
        n3.wait_ready(60)
        all3 = [survivor, n2, n3]
        h.wait_until(lambda: len(self.assertOk(survivor.etcdctl("member", "list", "-w", "json"))
                               .json()["members"]) == 3, 30, "three members")
        self.assertOk(n3.etcdctl("put", "back", "1"))
        for m in all3:
            self.assertEqual(self.get(m, "back"), "1", m.name)
            self.assertEqual(self.count(m, "f"), 100, m.name)
            self.assertEqual(c.status(m)["cluster_id"], cid, m.name)
        self.wait_equal_hashes(c, all3)
        # three voters again: two of them serve without the survivor
        survivor.kill9()   # (a put may time out once while the two elect a leader)
        h.wait_until(lambda: n2.etcdctl("put", "without-survivor", "1").ok, 60,
                     "a put served by the two members added back")
        self.assertEqual(self.get(n3, "without-survivor"), "1")


class LeaderlessWatchTest(OpsBase):
    NEED = [("hasleader", "true")]

    def alone(self, c):
        """(leader, m, others): m a follower of cluster c, others the members that
        stopped() stops."""
        leader = c.leader()
        m = [x for x in c.members if x is not leader][0]
        return leader, m, [x for x in c.members if x is not m]

    @staticmethod
    def stream(call, first, metadata):
        """A bidirectional call run in a thread, first its first request: (responses
        queue, then None at its end; its end {"err": (code, details, time)}; requests
        queue, None half-closes)."""
        import grpc
        reqs, out, end = queue.Queue(), queue.Queue(), {}
        reqs.put(first)

        def run():
            try:
                for r in call(iter(reqs.get, None), metadata=metadata):
                    out.put(r)
            except grpc.RpcError as e:
                end["err"] = (e.code(), e.details(), time.monotonic())
            out.put(None)
        threading.Thread(target=run, daemon=True).start()
        return out, end, reqs

    def assert_ended_no_leader(self, out, end, t0, what):
        """The stream ended by its member with "etcdserver: no leader", not at the first
        missed heartbeat."""
        import grpc
        self.assertIsNone(out.get(timeout=30))
        code, details, t = end["err"]
        print("%s ended %.1fs after the others stopped: %s %s" % (what, t - t0, code, details),
              flush=True)
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(details, "etcdserver: no leader")
        self.assertGreater(t - t0, 2.0)

    def test_require_leader_stream_ends_without_leader(self):
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        c = self.cluster()
        leader, m, others = self.alone(c)
        ch1, ch2 = grpc.insecure_channel(m.endpoint), grpc.insecure_channel(m.endpoint)
        create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"w"))
        req_out, req_end, req_reqs = self.stream(rpc_pb2_grpc.WatchStub(ch1).Watch, create,
                                                 self.NEED)
        plain_out, plain_end, plain_reqs = self.stream(rpc_pb2_grpc.WatchStub(ch2).Watch,
                                                       create, None)
        self.assertTrue(req_out.get(timeout=10).created)
        self.assertTrue(plain_out.get(timeout=10).created)
        with self.stopped(others) as t0:
            self.assert_ended_no_leader(req_out, req_end, t0, "hasleader stream")
            self.assertEqual(plain_end, {})   # a stream without it stays
        c.leader(timeout=30)
        self.assertOk(leader.etcdctl("put", "w", "after"))
        r = plain_out.get(timeout=15)
        self.assertEqual([e.kv.value for e in r.events], [b"after"])
        for q in (req_reqs, plain_reqs):
            q.put(None)
        ch1.close()
        ch2.close()

    def test_require_leader_keepalive_stream_ends_without_leader(self):
        # clientv3's lessor keeps leases alive on a stream with "hasleader: true": etcd
        # ends it with "etcdserver: no leader" once the member has known no leader for 3
        # election timeouts (the client then goes to another member before its leases
        # expire), refuses a new one at once meanwhile, and leaves plain streams alone.
        # Both client transports.
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        for c in self.transport_clusters():
            _, m, others = self.alone(c)
            ch = grpc.insecure_channel(m.endpoint)
            stub = rpc_pb2_grpc.LeaseStub(ch)
            ka = rpc_pb2.LeaseKeepAliveRequest(
                ID=stub.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60), timeout=10).ID)
            req_out, req_end, _ = self.stream(stub.LeaseKeepAlive, ka, self.NEED)
            plain_out, plain_end, plain_reqs = self.stream(stub.LeaseKeepAlive, ka, None)
            self.assertEqual(req_out.get(timeout=10).TTL, 60)
            self.assertEqual(plain_out.get(timeout=10).TTL, 60)
            with self.stopped(others) as t0:
                # nothing sent since the first answer: ended by m
                self.assert_ended_no_leader(req_out, req_end, t0, "hasleader keep-alive stream")
                self.assertEqual(plain_end, {})
                new_out, new_end, _ = self.stream(stub.LeaseKeepAlive, ka, self.NEED)
                self.assertIsNone(new_out.get(timeout=10))
                self.assertEqual(new_end["err"][:2],
                                 (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"))
            c.leader(timeout=30)

            def kept_alive():
                out, _, reqs = self.stream(stub.LeaseKeepAlive, ka, self.NEED)
                r = out.get(timeout=15)
                reqs.put(None)
                return r is not None and r.TTL > 0
            h.wait_until(kept_alive, 30, "a hasleader keep-alive once %s has a leader" % m.name)
            self.assertEqual(plain_end, {})
            plain_reqs.put(None)
            ch.close()

    def test_require_leader_unary_refused_without_leader(self):
        # etcd's unary interceptor: a call with "hasleader: true" (clientv3's
        # WithRequireLeader) on a member that knows no leader is refused at once with
        # Unavailable "etcdserver: no leader", reads included; without it a serializable
        # read is served and a write waits for a leader. Both client transports.
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        need = self.NEED
        for c in self.transport_clusters():
            _, m, others = self.alone(c)
            ch = grpc.insecure_channel(m.endpoint)
            kv = rpc_pb2_grpc.KVStub(ch)
            kv.Put(rpc_pb2.PutRequest(key=b"u", value=b"1"), metadata=need, timeout=10)
            h.wait_until(lambda: kv.Range(rpc_pb2.RangeRequest(key=b"u", serializable=True),
                                          timeout=5).count == 1, 10, "the put on %s" % m.name)

            def no_leader(call):
                """Unavailable "etcdserver: no leader" within 1 s -> True; served or
                another error (a write waiting for the leader m still believes in) -> False."""
                t = time.monotonic()
                try:
                    call(timeout=2)
                    return False
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE:
                        return False
                    self.assertEqual(e.details(), "etcdserver: no leader")
                    self.assertLess(time.monotonic() - t, 1.0)
                    return True

            ser = rpc_pb2.RangeRequest(key=b"u", serializable=True)
            with self.stopped(others):
                h.wait_until(lambda: no_leader(lambda **kw: kv.Range(ser, metadata=need, **kw)),
                             30, "%s refuses a hasleader read" % m.name)
                self.assertTrue(no_leader(lambda **kw: kv.Put(
                    rpc_pb2.PutRequest(key=b"v", value=b"2"), metadata=need, **kw)))
                self.assertEqual(kv.Range(ser, timeout=5).kvs[0].value, b"1")
                with self.assertRaises(grpc.RpcError) as e:
                    kv.Put(rpc_pb2.PutRequest(key=b"held", value=b"3"), timeout=1.5)
                self.assertEqual(e.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
            c.leader(timeout=30)

            def served():
                try:
                    kv.Put(rpc_pb2.PutRequest(key=b"v", value=b"after"), metadata=need,
                           timeout=5)
                    return True
                except grpc.RpcError:
                    return False
            h.wait_until(served, 30, "a hasleader put once %s has a leader again" % m.name)
            self.assertEqual(kv.Range(rpc_pb2.RangeRequest(key=b"v"), timeout=10).kvs[0].value,
                             b"after")
            ch.close()


class LearnerTest(OpsBase):
    NOT_FOR_LEARNER = "etcdserver: rpc not supported for learner"

    def test_learner_serves_status_and_serializable_reads_only(self):
        # etcd 3.4's interceptors (api/v3rpc/interceptor.go, isRPCSupportedForLearner):
        # a learner answers Status and serializable Range only; every other unary call
        # and every stream is refused at once with Unavailable "etcdserver: rpc not
        # supported for learner" (clientv3 then tries another endpoint), also one it
        # held while joining. Promoted, it serves them all. Both client transports.
        import grpc
        from etcd3.etcdrpc import rpc_pb2 as p, rpc_pb2_grpc as g
        refused = (grpc.StatusCode.UNAVAILABLE, self.NOT_FOR_LEARNER, True)

        def outcome(call):
            t = time.monotonic()
            try:
                call(timeout=5)
                return "served"
            except grpc.RpcError as e:
                return (e.code(), e.details(), time.monotonic() - t < 2.0)
        for c in self.transport_clusters(size=1):
            leader = c.members[0]
            self.assertOk(leader.etcdctl("put", "k", "v"))
            n = self.join(c, leader, "n2", learner=True, start=False)
            ch = grpc.insecure_channel(n.endpoint)
            kv = g.KVStub(ch)
            # a read sent while n joins (its leader hung) waits until it has joined
            # (etcd: until it listens), then is judged as a learner's
            with self.stopped([leader]):
                n.start(wait=False)
                if h.default_impl() == "bollard":
                    h.wait_until(lambda: b"joining: serving clients once" in
                                 open(n.log_path, "rb").read(), 30, "n2 listening")
                held = kv.Range.future(p.RangeRequest(key=b"k"), timeout=30,
                                       wait_for_ready=True)
                time.sleep(0.5)
                self.assertFalse(held.done())
            self.assertEqual(outcome(lambda **kw: held.result())[:2], refused[:2])
            h.wait_until(lambda: n.etcdctl("get", "k", "--consistency=s", "--print-value-only",
                                           timeout=10).out.strip() == "v", 60,
                         "the learner started and caught up")
            nid = [x["ID"] for x in self.assertOk(leader.etcdctl(
                "member", "list", "-w", "json")).json()["members"]
                if n.peer_url in x["peerURLs"]][0]
            lease, mt = g.LeaseStub(ch), g.MaintenanceStub(ch)
            cl, auth, w = g.ClusterStub(ch), g.AuthStub(ch), g.WatchStub(ch)
            self.assertEqual(kv.Range(p.RangeRequest(key=b"k", serializable=True),
                                      timeout=10).kvs[0].value, b"v")
            self.assertEqual(mt.Status(p.StatusRequest(), timeout=10).leader,
                             c.status(leader)["member_id"])
            create = p.WatchRequest(create_request=p.WatchCreateRequest(key=b"k"))
            put = p.PutRequest(key=b"k", value=b"x")
            calls = {
                "Range": lambda **kw: kv.Range(p.RangeRequest(key=b"k"), **kw),
                "Put": lambda **kw: kv.Put(put, **kw),
                "DeleteRange": lambda **kw: kv.DeleteRange(p.DeleteRangeRequest(key=b"k"),
                                                           **kw),
                "Txn": lambda **kw: kv.Txn(p.TxnRequest(success=[p.RequestOp(
                    request_put=put)]), **kw),
                "Compact": lambda **kw: kv.Compact(p.CompactionRequest(revision=1), **kw),
                "LeaseGrant": lambda **kw: lease.LeaseGrant(p.LeaseGrantRequest(TTL=60), **kw),
                "LeaseRevoke": lambda **kw: lease.LeaseRevoke(p.LeaseRevokeRequest(ID=1), **kw),
                "LeaseTimeToLive": lambda **kw: lease.LeaseTimeToLive(
                    p.LeaseTimeToLiveRequest(ID=1), **kw),
                "LeaseLeases": lambda **kw: lease.LeaseLeases(p.LeaseLeasesRequest(), **kw),
                "MemberList": lambda **kw: cl.MemberList(p.MemberListRequest(), **kw),
                "Alarm": lambda **kw: mt.Alarm(p.AlarmRequest(), **kw),
                "Hash": lambda **kw: mt.Hash(p.HashRequest(), **kw),
                "HashKV": lambda **kw: mt.HashKV(p.HashKVRequest(), **kw),
                "Defragment": lambda **kw: mt.Defragment(p.DefragmentRequest(), **kw),
                "MoveLeader": lambda **kw: mt.MoveLeader(p.MoveLeaderRequest(targetID=nid),
                                                         **kw),
                "UserList": lambda **kw: auth.UserList(p.AuthUserListRequest(), **kw),
                "Authenticate": lambda **kw: auth.Authenticate(p.AuthenticateRequest(
                    name="root", password="x"), **kw),
                "Snapshot": lambda **kw: list(mt.Snapshot(p.SnapshotRequest(), **kw)),
                "Watch": lambda **kw: list(w.Watch(iter([create]), **kw)),
                "LeaseKeepAlive": lambda **kw: list(lease.LeaseKeepAlive(
                    iter([p.LeaseKeepAliveRequest(ID=1)]), **kw)),
                # gRPC's health service: etcd's interceptors wrap it too
                "HealthCheck": lambda **kw: ch.unary_unary("/grpc.health.v1.Health/Check")(
                    b"", **kw),
                "HealthWatch": lambda **kw: next(ch.unary_stream(
                    "/grpc.health.v1.Health/Watch")(b"", **kw)),
            }
            got = {name: outcome(call) for name, call in calls.items()}
            self.assertEqual(got, {name: refused for name in calls})
            self.assertEqual(self.get(leader, "k"), "v")   # nothing went through
            # a serializable read asking for a leader is served (the learner knows one)
            self.assertEqual(kv.Range(p.RangeRequest(key=b"k", serializable=True), timeout=10,
                                      metadata=[("hasleader", "true")]).count, 1)
            # promoted (once in sync), it serves every call
            h.wait_until(lambda: leader.etcdctl("member", "promote", "%x" % nid).ok, 30,
                         "the learner promoted")

            def served(name):
                try:
                    calls[name](timeout=5)
                    return True
                except grpc.RpcError as e:
                    self.assertEqual(e.details(), self.NOT_FOR_LEARNER, name)
                    return False
            h.wait_until(lambda: served("Put"), 30, "the promoted member serves a put")
            for name in ("Range", "Txn", "MemberList", "LeaseGrant", "HashKV"):
                self.assertTrue(served(name), name)
            ws = w.Watch(iter([create]), timeout=10)
            self.assertTrue(next(ws).created)
            ws.cancel()
            ch.close()
            self.assertIn(n.terminate(), n.clean_exit_codes(), n.name)


if __name__ == "__main__":
    h.main()
