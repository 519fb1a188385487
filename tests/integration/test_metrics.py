"""--listen-metrics-urls: GET /health answers etcd's {"health":"true"}; GET /metrics serves the
Prometheus text format, with etcd 3.4's names (each family we share with etcd has etcd's TYPE
and HELP, checked against a real etcd 3.4 started here) and Bollard's per-stage histograms.
Writes move the counters by exactly what they did: N puts add N to each stage's count, N
raft entries to proposals committed/applied, the packed request and response sizes to the
gRPC byte counters, N keys to the key count. In a 3-member cluster, writes sent to a
follower show a forward stage there and are applied by the leader's stages. Run with
Debian's python3; prints "N passed, N failed" last."""

import os
import re
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402

STAGES = ("queue", "forward", "append_fsync", "replicate_quorum", "apply", "respond")
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def http_get(port, path, timeout=10):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def parse(text):
    """{(name, labels): value} and {name: (type, help)} of a Prometheus text page."""
    values, families = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, help_ = line[7:].split(" ", 1)
            families.setdefault(name, [None, None])[1] = help_
        elif line.startswith("# TYPE "):
            name, type_ = line[7:].split(" ", 1)
            families.setdefault(name, [None, None])[0] = type_
        elif line and not line.startswith("#"):
            m = LINE.match(line)
            assert m, "bad line %r" % line
            values[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return values, {k: tuple(v) for k, v in families.items()}


def scrape(port):
    status, ctype, body = http_get(port, "/metrics")
    assert status == 200, (status, body)
    assert ctype == "text/plain; version=0.0.4; charset=utf-8", ctype
    return parse(body)[0]


def stage_count(v, stage):
    return v[("bollard_request_stage_duration_seconds_count", '{stage="%s"}' % stage)]


def wait_settled(port, timeout=10):
    """Until two scrapes a moment apart agree on the applied index (start-up entries such
    as the member's own attribute publish are done)."""
    deadline = time.monotonic() + timeout
    prev = None
    while time.monotonic() < deadline:
        v = scrape(port)
        cur = v[("etcd_server_proposals_applied_total", "")]
        if (cur == prev and cur == v[("etcd_server_proposals_committed_total", "")]
                and v[("etcd_server_has_leader", "")] == 1):
            return v
        prev = cur
        time.sleep(0.3)
    raise AssertionError("applied index still moving")


class MetricsTest(h.StoreTestCase):
    def test_single_member_counters(self):
        from etcd3.etcdrpc import rpc_pb2
        port = h.free_port()
        s = self.store(extra_args=["--listen-metrics-urls", "http://127.0.0.1:%d" % port])
        status, ctype, body = http_get(port, "/health")
        self.assertEqual((status, body), (200, '{"health":"true"}'))
        self.assertEqual(ctype, "text/plain; charset=utf-8")
        self.assertEqual(http_get(port, "/nothing")[0], 404)

        before = wait_settled(port)
        c = s.client()
        n, req_bytes, resp_bytes = 20, 0, 0
        for i in range(n):
            key, val = b"metrics/%02d" % i, b"v" * (i + 1)
            req_bytes += rpc_pb2.PutRequest(key=key, value=val).ByteSize()
            resp = c.put(key, val)
            resp_bytes += resp.ByteSize()
        after = wait_settled(port)

        def moved(name, labels=""):
            return after[(name, labels)] - before[(name, labels)]

        for st in ("queue", "append_fsync", "replicate_quorum", "apply", "respond"):
            self.assertEqual(stage_count(after, st) - stage_count(before, st), n, st)
        self.assertEqual(stage_count(after, "forward"), 0)
        self.assertEqual(moved("bollard_request_duration_seconds_count"), n)
        # serial puts: one raft entry each
        self.assertEqual(moved("etcd_server_proposals_committed_total"), n)
        self.assertEqual(moved("etcd_server_proposals_applied_total"), n)
        self.assertEqual(after[("etcd_server_proposals_pending", "")], 0)
        self.assertEqual(moved("etcd_server_proposals_failed_total"), 0)
        self.assertEqual(moved("etcd_network_client_grpc_received_bytes_total"), req_bytes)
        self.assertEqual(moved("etcd_network_client_grpc_sent_bytes_total"), resp_bytes)
        self.assertEqual(moved("etcd_debugging_mvcc_keys_total"), n)
        self.assertGreaterEqual(moved("etcd_disk_wal_fsync_duration_seconds_count"), n)
        # serial puts share an LMDB commit while the commit delay lasts (50 ms;
        # tests/node answered_writes_wait_for_one_commit counts them exactly)
        self.assertGreaterEqual(moved("etcd_disk_backend_commit_duration_seconds_count"), 1)
        self.assertLessEqual(moved("etcd_disk_backend_commit_duration_seconds_count"), n)
        self.assertGreater(moved("etcd_disk_wal_fsync_duration_seconds_sum"), 0)
        for name in ("etcd_server_has_leader", "etcd_server_is_leader",
                     "etcd_server_leader_changes_seen_total"):
            self.assertEqual(after[(name, "")], 1, name)
        self.assertEqual(after[("etcd_server_is_learner", "")], 0)
        self.assertGreater(after[("etcd_mvcc_db_total_size_in_bytes", "")], 0)
        # a histogram's +Inf bucket is its count; the stages' sum is within the total's
        for st in STAGES:
            self.assertEqual(after[("bollard_request_stage_duration_seconds_bucket",
                                    '{stage="%s",le="+Inf"}' % st)], stage_count(after, st))
        stage_sum = sum(after[("bollard_request_stage_duration_seconds_sum",
                               '{stage="%s"}' % st)] for st in STAGES)
        self.assertLessEqual(stage_sum, after[("bollard_request_duration_seconds_sum", "")]
                             + 1e-3)
        # deletes take keys away
        c.delete_prefix(b"metrics/1")
        self.assertEqual(scrape(port)[("etcd_debugging_mvcc_keys_total", "")], n - 10)

    def test_watch_gauges(self):
        """etcd's watch stream, watcher and slow-watcher gauges follow the watches a client
        opens and cancels; the events counter moves by the events delivered."""
        port = h.free_port()
        s = self.store(extra_args=["--listen-metrics-urls", "http://127.0.0.1:%d" % port])
        c = s.client()

        def value(name):
            return scrape(port)[(name, "")]

        def wait_for(name, want, timeout=10):
            deadline = time.monotonic() + timeout
            while value(name) != want and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(value(name), want, name)

        for name in ("etcd_debugging_mvcc_watch_stream_total", "etcd_debugging_mvcc_watcher_total",
                     "etcd_debugging_mvcc_slow_watcher_total", "etcd_debugging_mvcc_events_total"):
            self.assertEqual(value(name), 0, name)
        got = []
        w1 = c.add_watch_callback(b"wm/a", got.append)   # both on the client's one stream
        w2 = c.add_watch_prefix_callback(b"wm/", got.append)
        wait_for("etcd_debugging_mvcc_watcher_total", 2)
        self.assertEqual(value("etcd_debugging_mvcc_watch_stream_total"), 1)
        for i in range(5):
            c.put(b"wm/a", b"v%d" % i)
        c.put(b"wm/b", b"v")
        c.put(b"other", b"v")
        wait_for("etcd_debugging_mvcc_events_total", 5 * 2 + 1)
        deadline = time.monotonic() + 10
        while sum(len(r.events) for r in got) < 11 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(sum(len(r.events) for r in got), 11)
        self.assertEqual(value("etcd_debugging_mvcc_slow_watcher_total"), 0)
        c.cancel_watch(w1)
        wait_for("etcd_debugging_mvcc_watcher_total", 1)
        c.cancel_watch(w2)
        wait_for("etcd_debugging_mvcc_watcher_total", 0)
        self.assertEqual(value("etcd_debugging_mvcc_events_total"), 11)

    def test_families_match_etcd(self):
        """Every etcd_* family Bollard exports exists in etcd 3.4.23's /metrics with the
        same TYPE and HELP (no invented or clashing names)."""
        ports = [h.free_port(), h.free_port()]
        b = self.store(extra_args=["--listen-metrics-urls", "http://127.0.0.1:%d" % ports[0]])
        e = self.store(impl="etcd",
                       extra_args=["--listen-metrics-urls", "http://127.0.0.1:%d" % ports[1]])
        self.assertOk(b.etcdctl("put", "a", "b"))
        self.assertOk(e.etcdctl("put", "a", "b"))
        self.assertEqual(http_get(ports[1], "/health")[2], http_get(ports[0], "/health")[2])
        ours = parse(http_get(ports[0], "/metrics")[2])[1]
        theirs = parse(http_get(ports[1], "/metrics")[2])[1]
        shared = [n for n in ours if n.startswith("etcd_")]
        self.assertGreaterEqual(len(shared), 15, shared)
        for name in shared:
            self.assertIn(name, theirs, name)
            self.assertEqual(ours[name], theirs[name], name)
        for name in ours:
            self.assertTrue(name.startswith(("etcd_", "bollard_")), name)

    def test_bad_urls_stop_the_server(self):
        for url in ("https://127.0.0.1:1", "http://127.0.0.1:notaport", "http://[::1"):
            s = self.store(extra_args=["--listen-metrics-urls", url], start=False)
            s.start(wait=False)
            rc = s.proc.wait(timeout=30)
            s.reaped = True
            self.assertEqual(rc, 1, url)
            self.assertIn("--listen-metrics-urls", s.log_text(), url)
            self._stores.remove(s)
            s.cleanup()

    def test_cluster_forward_stage(self):
        c = h.Cluster(3, extra_args=["--heartbeat-interval", "100", "--election-timeout", "1000"])
        ports = {}
        for m in c.members:
            ports[m.name] = h.free_port()
            m.extra_args += ["--listen-metrics-urls", "http://127.0.0.1:%d" % ports[m.name]]
        self._stores += c.members
        c.start()
        leader = c.leader()
        follower = next(m for m in c.members if m is not leader)
        fb, lb = wait_settled(ports[follower.name]), wait_settled(ports[leader.name])
        cl = follower.client()
        n = 10
        for i in range(n):
            cl.put(b"fwd/%d" % i, b"x")
        fa, la = wait_settled(ports[follower.name]), wait_settled(ports[leader.name])
        for st in ("queue", "forward", "apply", "respond"):
            self.assertEqual(stage_count(fa, st) - stage_count(fb, st), n, st)
        # the follower appended no entry of its own for them
        self.assertEqual(stage_count(fa, "append_fsync"), stage_count(fb, "append_fsync"))
        # the leader ran them through its raft stages
        for st in ("append_fsync", "replicate_quorum", "apply"):
            self.assertEqual(stage_count(la, st) - stage_count(lb, st), n, st)
        self.assertEqual(stage_count(la, "forward"), 0)
        for v, is_leader in ((fa, 0), (la, 1)):
            self.assertEqual(v[("etcd_server_is_leader", "")], is_leader)
            self.assertEqual(v[("etcd_server_has_leader", "")], 1)
        # both applied the same entries
        self.assertEqual(fa[("etcd_server_proposals_applied_total", "")],
                         la[("etcd_server_proposals_applied_total", "")])


if __name__ == "__main__":
    h.main()
