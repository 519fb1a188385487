#!/usr/bin/env python3
"""bbolt_mksnap.py DIR - make an etcd snapshot with real etcd, for test_bbolt.c.

Starts Debian's etcd 3.4 on free loopback ports with its data dir in DIR, writes a
known data set through etcd's JSON gateway (stdlib only), saves a snapshot with
`etcdctl snapshot save DIR/etcd.snap`, stops etcd, and writes DIR/expect.txt with
"name value" lines the C test checks against (the revisions etcd gave each step).

The data set (the C test knows it too):
  - 5000 keys k/00000..k/04999, value "v-%05d-" padded with '.' to 40 bytes,
    written by 50 txns of 100 puts (revisions txn_first..txn_last, subs 0..99);
  - 20 single puts overwriting k/00000..k/00019 with "v2-%05d" (single_first..);
  - 3 keys big/0..big/2 of 20000 bytes each, byte j = 'a' + (i + j) % 26 (big_first..);
  - one delete of [k/00020, k/00030): 10 tombstones at del_rev;
  - lease 0x1234 with TTL 600, and key "leased" = "L" attached to it (leased_rev);
  - role "reader" and user "alice" (auth bucket data; auth stays disabled);
  - a physical compaction at compact_rev = single_first + 8, which removes the 9
    old revisions of k/00000..k/00008.
"""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def b64(b):
    if isinstance(b, str):
        b = b.encode()
    return base64.b64encode(b).decode()


class Gateway:
    def __init__(self, url):
        self.url = url

    def call(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            out = json.loads(r.read())
        if "error" in out:
            raise RuntimeError("%s: %s" % (path, out))
        return out

    def rev(self, out):
        return int(out["header"]["revision"])


def main():
    d = os.path.abspath(sys.argv[1])
    etcd = shutil.which("etcd")
    etcdctl = shutil.which("etcdctl")
    if not etcd or not etcdctl:
        print("etcd / etcdctl not installed (Debian: etcd-server, etcd-client)", file=sys.stderr)
        return 2
    cport, pport = free_port(), free_port()
    curl, purl = "http://127.0.0.1:%d" % cport, "http://127.0.0.1:%d" % pport
    log = open(os.path.join(d, "etcd.log"), "w")
    proc = subprocess.Popen([etcd, "--name", "snap", "--data-dir", os.path.join(d, "etcd.data"),
                             "--listen-client-urls", curl, "--advertise-client-urls", curl,
                             "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
                             "--initial-cluster", "snap=" + purl, "--logger", "zap",
                             "--log-outputs", "stderr"],
                            stdout=log, stderr=log)
    try:
        gw = Gateway(curl)
        deadline = time.time() + 30
        while True:
            try:
                gw.call("/v3/kv/range", {"key": b64("x")})
                break
            except Exception:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("etcd did not come up; see etcd.log")
                time.sleep(0.1)
        exp = {}
        for t in range(50):
            ops = []
            for i in range(t * 100, t * 100 + 100):
                v = ("v-%05d-" % i).ljust(40, ".")
                ops.append({"requestPut": {"key": b64("k/%05d" % i), "value": b64(v)}})
            r = gw.rev(gw.call("/v3/kv/txn", {"success": ops}))
            exp.setdefault("txn_first", r)
            exp["txn_last"] = r
        for i in range(20):
            r = gw.rev(gw.call("/v3/kv/put", {"key": b64("k/%05d" % i), "value": b64("v2-%05d" % i)}))
            exp.setdefault("single_first", r)
        for i in range(3):
            v = bytes(ord("a") + (i + j) % 26 for j in range(20000))
            r = gw.rev(gw.call("/v3/kv/put", {"key": b64("big/%d" % i), "value": b64(v)}))
            exp.setdefault("big_first", r)
        out = gw.call("/v3/kv/deleterange", {"key": b64("k/00020"), "range_end": b64("k/00030")})
        assert int(out["deleted"]) == 10, out
        exp["del_rev"] = gw.rev(out)
        gw.call("/v3/lease/grant", {"TTL": 600, "ID": 0x1234})
        exp["leased_rev"] = gw.rev(gw.call("/v3/kv/put", {"key": b64("leased"), "value": b64("L"),
                                                           "lease": 0x1234}))
        gw.call("/v3/auth/role/add", {"name": "reader"})
        gw.call("/v3/auth/user/add", {"name": "alice", "password": "pw"})
        gw.call("/v3/auth/user/grant", {"user": "alice", "role": "reader"})
        exp["compact_rev"] = exp["single_first"] + 8
        gw.call("/v3/kv/compaction", {"revision": exp["compact_rev"], "physical": True})
        exp["final_rev"] = exp["leased_rev"]
        snap = os.path.join(d, "etcd.snap")
        subprocess.run([etcdctl, "--endpoints", curl, "snapshot", "save", snap],
                       env=dict(os.environ, ETCDCTL_API="3"), check=True,
                       stdout=subprocess.DEVNULL, stderr=log, timeout=60)
        with open(os.path.join(d, "expect.txt"), "w") as f:
            for k, v in exp.items():
                f.write("%s %d\n" % (k, v))
        return 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
