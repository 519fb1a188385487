#!/usr/bin/env python3
"""Runs the examples (election, workqueue) remote and embedded, and builds
them from an installed prefix with pkg-config only.

  test_examples.py run BOLLARD_STORE ELECTION WORKQUEUE
  test_examples.py install BUILD_DIR EXAMPLES_SRC PREFIX LIBDIR BOLLARD_STORE
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Store:
    def __init__(self, binary, tmp):
        self.client = "127.0.0.1:%d" % free_port()
        peer = "http://127.0.0.1:%d" % free_port()
        self.log = open(os.path.join(tmp, "store.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "--data-dir", os.path.join(tmp, "store"),
             "--listen-client-urls", "http://" + self.client,
             "--advertise-client-urls", "http://" + self.client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", "default=" + peer, "--log-level", "warn"],
            stdout=self.log, stderr=self.log)
        host, port = self.client.split(":")
        for _ in range(100):
            try:
                socket.create_connection((host, int(port)), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("bollard-store did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        self.log.close()


class Proc:
    """A child whose stdout lines are collected with arrival times."""

    def __init__(self, argv):
        self.lines = []
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.strip()))

    def wait_line(self, prefix, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, line in list(self.lines):
                if line.startswith(prefix):
                    return t
            time.sleep(0.02)
        raise AssertionError("no %r within %ss; got %r" % (prefix, timeout, self.lines))

    def finish(self, timeout=20):
        rc = self.proc.wait(timeout)
        self.t.join(5)
        return rc


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def election(elect, where):
    a = Proc([elect] + where + ["A", "1500"])
    a.wait_line("LEADER A", 10)
    b = Proc([elect] + where + ["B"])
    b.wait_line("FOLLOWER B (leader: A)", 10)
    t_exit = a.wait_line("EXIT A", 10)
    check(a.finish() == 0, "A exited with an error")
    t_lead = b.wait_line("LEADER B", 10)
    check(t_lead > t_exit, "B led before A was gone")
    b.proc.send_signal(signal.SIGTERM)
    b.finish()
    leaders = [l for p in (a, b) for _, l in p.lines if l.startswith("LEADER")]
    check(leaders == ["LEADER A", "LEADER B"], "leaders: %r" % leaders)
    print("election: A led, B took over %.2f s after A exited (lease TTL 2 s)" % (t_lead - t_exit))


def workqueue(wq, where, n=200):
    consumers = [Proc([wq] + where + ["consume", name, "2500"]) for name in ("c1", "c2")]
    time.sleep(0.3)
    t0 = time.monotonic()
    producer = subprocess.run([wq] + where + ["produce", str(n)], timeout=60)
    check(producer.returncode == 0, "producer failed")
    done = {}
    lost = 0
    for c in consumers:
        check(c.finish(30) == 0, "consumer failed")
        for _, line in c.lines:
            kind, name, key = line.split(" ", 3)[:3]
            if kind == "LOST":
                lost += 1
                continue
            check(key not in done, "%s processed twice (%s, %s)" % (key, done.get(key), name))
            done[key] = name
    check(len(done) == n, "%d of %d items processed" % (len(done), n))
    per = {name: sum(1 for v in done.values() if v == name) for name in ("c1", "c2")}
    check(lost > 0 or min(per.values()) > 0, "the consumers never competed")
    print("workqueue: %d items, each exactly once (%r, %d claims lost to the other), "
          "in %.2f s" % (n, per, lost, time.monotonic() - t0 - 2.5))


def embedded(elect, wq, tmp):
    d = os.path.join(tmp, "emb")
    a = Proc([elect, "--data-dir", d, "E", "300"])
    a.wait_line("EXIT E", 15)
    check(a.finish() == 0 and a.lines[0][1] == "LEADER E", "embedded election: %r" % a.lines)
    check(subprocess.run([wq, "--data-dir", d, "produce", "50"], timeout=60).returncode == 0,
          "embedded producer failed")
    c = Proc([wq, "--data-dir", d, "consume", "solo", "500"])
    check(c.finish(30) == 0, "embedded consumer failed")
    keys = [line.split(" ")[2] for _, line in c.lines if line.startswith("DONE")]
    check(len(keys) == 50 and len(set(keys)) == 50, "embedded: %d items" % len(keys))
    print("embedded: election leader, 50 queued items processed once after a restart")


def run(store_bin, elect, wq):
    tmp = tempfile.mkdtemp(prefix="bollard-examples-")
    store = Store(store_bin, tmp)
    try:
        where = ["--endpoints", store.client]
        election(elect, where)
        workqueue(wq, where)
    finally:
        store.stop()
    embedded(elect, wq, tmp)
    shutil.rmtree(tmp)


def install(build, src, prefix, libdir, store_bin, sanitize="none"):
    tmp = tempfile.mkdtemp(prefix="bollard-install-")
    dest = os.path.join(tmp, "dest")
    subprocess.run(["meson", "install", "-C", build, "--destdir", dest, "--no-rebuild",
                    "--quiet"], check=True, stdout=subprocess.DEVNULL)
    root = dest + prefix
    lib = os.path.join(root, libdir)
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(lib, "pkgconfig"),
               PKG_CONFIG_SYSROOT_DIR=dest, PKG_CONFIG_LIBDIR="")
    env.pop("PKG_CONFIG_LIBDIR")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "bollard-store"], env=env,
                           check=True, capture_output=True, text=True).stdout.split()
    print("pkg-config --cflags --libs bollard-store:", " ".join(flags))
    # A library built with sanitizers (tools/test.sh does) needs its users
    # linked with the same runtime; a normal build adds nothing here.
    if sanitize not in ("", "none"):
        flags = ["-fsanitize=" + sanitize] + flags
    bins = {}
    for name in ("election", "workqueue"):
        out = os.path.join(tmp, name)
        # Only the installed header: the source's own directory for
        # common.h, nothing from the build or source trees of the library.
        subprocess.run(["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                        os.path.join(src, name + ".c"), "-o", out] + flags, check=True)
        bins[name] = out
    os.environ["LD_LIBRARY_PATH"] = lib
    embedded(bins["election"], bins["workqueue"], tmp)
    shutil.rmtree(tmp)


def main():
    if sys.argv[1] == "run":
        run(*sys.argv[2:5])
    else:
        install(*sys.argv[2:8])
    print("ok")


if __name__ == "__main__":
    main()
