#!/usr/bin/python3
"""Memory of a leader and a follower while the follower catches up through a full raft
snapshot of a large database (not part of the test suite; a measurement).

A 3-member cluster (--snapshot-count 50) of $BOLLARD_STORE (or --bollard PATH); one
follower is stopped, --mb megabytes of 512 KiB values are written through the leader (the
log is compacted far past the stopped follower), then the follower is started again and
catches up from the leader's snapshot. /proc/PID/status of both is sampled every 20 ms
from the restart until the follower has restored the snapshot and answers; printed: the
leader's VmRSS / RssAnon / RssFile / RssShmem before the restart and their peaks during
the catch-up, the follower's peaks and its VmHWM, and how long the catch-up took.
--sends N repeats the catch-up N times (the follower is stopped, 200 more writes compact
the log past it, it is restarted and gets a new snapshot) and prints the leader's RssAnon after each: it must not grow
with every send.

    bench/snapshot_rss.py --bollard build-rel/tools/bollard-store --mb 300
"""

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
import storeharness as h  # noqa: E402

FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM")


def status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in FIELDS:
                    out[k] = int(v.split()[0]) // 1024   # MB
    except OSError:
        pass
    return out


class Sampler:
    def __init__(self, procs):
        self.procs = procs
        self.peak = {name: {} for name in procs}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for name, pid in self.procs.items():
                for k, v in status(pid).items():
                    self.peak[name][k] = max(self.peak[name].get(k, 0), v)
            time.sleep(0.02)

    def start(self):
        self._t.start()
        return self

    def stop(self):
        self._stop.set()
        self._t.join()
        return self.peak


def fmt(d):
    return " ".join("%s %d" % (k, d[k]) for k in FIELDS if k in d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bollard")
    ap.add_argument("--mb", type=int, default=300)
    ap.add_argument("--sends", type=int, default=1)
    a = ap.parse_args()
    if a.bollard:
        os.environ["BOLLARD_STORE"] = os.path.abspath(a.bollard)
    c = h.Cluster(3, extra_args=["--heartbeat-interval", "100", "--election-timeout", "1000",
                                 "--snapshot-count", "50",
                                 "--quota-backend-bytes", str(8 << 30)])
    try:
        c.start(timeout=60)
        leader = c.leader()
        lag = [m for m in c.members if m is not leader][0]
        lag.terminate()
        cl = leader.client(timeout=30)
        val = os.urandom(256 << 10).hex()   # 512 KiB of text
        t0 = time.monotonic()
        for i in range(a.mb * 2):
            cl.put("big/%06d" % i, val)
        for i in range(200):
            cl.put("small/%d" % i, "x")
        print("wrote %d MB in %.1f s" % (a.mb, time.monotonic() - t0), flush=True)
        lag_log = 0
        for send in range(a.sends):
            time.sleep(1)
            before = status(leader.proc.pid)
            lag.start(wait=False)
            s = Sampler({"leader": leader.proc.pid, "follower": lag.proc.pid}).start()
            t0 = time.monotonic()
            h.wait_until(lambda: "restored snapshot at applied index" in lag.log_text()[lag_log:],
                         600, "restore")
            lag.wait_ready(120)
            took = time.monotonic() - t0
            peak = s.stop()
            after = status(leader.proc.pid)
            fol = status(lag.proc.pid)
            print("send %d: catch-up %.1f s" % (send + 1, took))
            print("  leader before:   %s" % fmt(before))
            print("  leader peak:     %s" % fmt(peak["leader"]))
            print("  leader after:    %s" % fmt(after))
            print("  follower peak:   %s (VmHWM at end %d)" % (fmt(peak["follower"]),
                                                              fol.get("VmHWM", 0)), flush=True)
            if send + 1 < a.sends:
                lag.terminate()
                lag_log = len(lag.log_text())
                for i in range(200):   # the log compacted past it again
                    cl.put("small/%d" % i, "y%d" % send)
    finally:
        for m in c.members:
            h.finish_store(m)


if __name__ == "__main__":
    main()
