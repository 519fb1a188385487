#!/usr/bin/python3
"""watch_soak.py - many watchers on one member (not part of the default test run).

    meson test -C <build> --suite soak          # or run it directly:
    /usr/bin/python3 bench/watch_soak.py <bollard-store binary> [watchers] [streams] [puts]

Starts bollard-store in a temp dir, opens STREAMS Watch streams (over several
channels) carrying WATCHERS watchers in all (default 100,000 over 1,000), most
on one key of soak/<n> and some on prefixes, then makes PUTS puts (default
10,000) and checks that every watcher received exactly its events (key and
revision), each once, in order. Prints the server's RSS growth per watcher and
the event delivery rate. Exits non-zero on any mismatch.
"""
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time

import grpc

sys.path.insert(0, "/usr/lib/python3/dist-packages/etcd3/etcdrpc")
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BOLLARD_STORE", "")
WATCHERS = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
STREAMS = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000
PUTS = int(sys.argv[4]) if len(sys.argv) > 4 else 10_000
CHANNELS = max(1, STREAMS // 100)
PREFIX_EVERY = 1000  # one watcher in this many watches a prefix


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def spec_of(i):
    """(key, range_end) of watcher i."""
    if i % PREFIX_EVERY == 0:
        p = b"soak/%d" % (i // PREFIX_EVERY % 100 + 900)  # soak/900.. : ~11 keys each
        return p, p[:-1] + bytes([p[-1] + 1])
    return b"soak/%d" % (i % PUTS), b""


def matches(spec, key):
    k, e = spec
    return key == k if not e else k <= key < e


class Stream:
    def __init__(self, stub, ids):
        self.ids = ids  # watcher numbers on this stream, in creation order
        self.q = asyncio.Queue()
        self.call = stub.Watch(self._reqs())
        self.created = 0
        self.wid = {}  # watch_id -> watcher number
        self.got = {}  # watcher number -> [(key, rev)]

    async def _reqs(self):
        while True:
            r = await self.q.get()
            if r is None:
                return
            yield r

    async def create_all(self):
        for i in self.ids:
            k, e = spec_of(i)
            self.q.put_nowait(rpc_pb2.WatchRequest(
                create_request=rpc_pb2.WatchCreateRequest(key=k, range_end=e)))

    async def read(self, want_created, done):
        async for resp in self.call:
            if resp.created:
                if resp.canceled:
                    raise RuntimeError("create refused: %s" % resp.cancel_reason)
                self.wid[resp.watch_id] = self.ids[self.created]
                self.created += 1
                if self.created == len(self.ids):
                    want_created.release()
                continue
            w = self.wid[resp.watch_id]
            lst = self.got.setdefault(w, [])
            for ev in resp.events:
                lst.append((ev.kv.key, ev.kv.mod_revision))
                done[0] += 1


async def main():
    if not BIN:
        sys.exit("usage: watch_soak.py <bollard-store> [watchers] [streams] [puts]")
    tmp = tempfile.mkdtemp(prefix="bollard-soak-")
    port = free_port()
    srv = subprocess.Popen([BIN, "--data-dir", tmp + "/d",
                            "--listen-client-urls", "http://127.0.0.1:%d" % port,
                            "--advertise-client-urls", "http://127.0.0.1:%d" % port,
                            "--listen-peer-urls", "http://127.0.0.1:%d" % free_port(),
                            "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % free_port()],
                           cwd=tmp, stdout=subprocess.DEVNULL, stderr=open(tmp + "/log", "w"))
    try:
        addr = "127.0.0.1:%d" % port
        chans = [grpc.aio.insecure_channel(addr, options=[("grpc.use_local_subchannel_pool", 1)])
                 for _ in range(CHANNELS)]
        kv = rpc_pb2_grpc.KVStub(chans[0])
        for _ in range(100):
            try:
                await kv.Range(rpc_pb2.RangeRequest(key=b"x"), timeout=1)
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
        rss0 = rss_kb(srv.pid)

        per = WATCHERS // STREAMS
        streams = []
        for s in range(STREAMS):
            stub = rpc_pb2_grpc.WatchStub(chans[s % CHANNELS])
            streams.append(Stream(stub, list(range(s * per, (s + 1) * per))))
        nwatch = per * STREAMS
        created = asyncio.Semaphore(0)
        done = [0]
        t0 = time.monotonic()
        readers = [asyncio.ensure_future(st.read(created, done)) for st in streams]
        for st in streams:
            await st.create_all()
        for _ in streams:
            await asyncio.wait_for(created.acquire(), 600)
        t_create = time.monotonic() - t0
        await asyncio.sleep(1)
        rss1 = rss_kb(srv.pid)

        # Expected events: every put of a key each watcher matches.
        revs = {}
        sem = asyncio.Semaphore(64)

        async def put(n):
            async with sem:
                k = b"soak/%d" % n
                r = await kv.Put(rpc_pb2.PutRequest(key=k, value=b"v"))
                revs[k] = r.header.revision

        t1 = time.monotonic()
        await asyncio.gather(*(put(n) for n in range(PUTS)))
        t_put = time.monotonic() - t1
        expected = 0
        for i in range(nwatch):
            spec = spec_of(i)
            expected += sum(1 for k in revs if matches(spec, k))
        deadline = time.monotonic() + 300
        while done[0] < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        t_ev = time.monotonic() - t1
        await asyncio.sleep(0.5)
        rss2 = rss_kb(srv.pid)

        bad = 0
        for st in streams:
            for i in st.ids:
                spec = spec_of(i)
                want = sorted((k, r) for k, r in revs.items() if matches(spec, k))
                want.sort(key=lambda kr: kr[1])
                got = st.got.get(i, [])
                if got != want:
                    bad += 1
                    if bad <= 5:
                        print("watcher %d %r: got %r want %r" % (i, spec, got[:5], want[:5]))
        for st in streams:
            st.q.put_nowait(None)
            st.call.cancel()
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for c in chans:
            await c.close()

        print("watchers %d on %d streams (%d channels): created in %.1f s" %
              (nwatch, STREAMS, CHANNELS, t_create))
        print("server RSS: %d KiB idle, %d KiB with watchers, %d KiB after puts" % (rss0, rss1, rss2))
        print("RSS growth per watcher: %.0f bytes" % ((rss1 - rss0) * 1024.0 / nwatch))
        print("puts %d in %.1f s; events delivered %d of %d expected in %.1f s (%.0f events/s)" %
              (PUTS, t_put, done[0], expected, t_ev, done[0] / t_ev if t_ev else 0))
        print("watchers with wrong events: %d" % bad)
        ok = bad == 0 and done[0] == expected
        print("soak %s" % ("OK" if ok else "FAILED"))
        return 0 if ok else 1
    finally:
        srv.terminate()
        try:
            srv.wait(20)
        except subprocess.TimeoutExpired:
            srv.kill()


if __name__ == "__main__":
    rc = asyncio.run(main())
    sys.stdout.flush()
    os._exit(rc)  # grpc.aio's threads can hold the interpreter's exit
