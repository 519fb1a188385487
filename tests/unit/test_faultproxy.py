"""Unit tests of tests/lib/faultproxy.py: an echo server behind the proxy, the effect of
each mode (pass, drop, blackhole, one-way cuts, delay) observed from both ends, switching
modes at run time, the loopback-only rule, the control socket of a proxy run as a separate
process, and a shutdown that leaves no thread or socket behind.

Run: /usr/bin/python3 tests/unit/test_faultproxy.py [-v]
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(HERE, "..", "lib")
sys.path.insert(0, LIB)

from faultproxy import FaultProxy, ProxyControl, loopback_host  # noqa: E402

QUIET = 0.3  # how long "nothing arrives" is watched for


class EchoServer:
    """Echoes every byte; counts what it received; push() sends unprompted data."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.conns = []
        self.threads = []
        self.lock = threading.Lock()
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            t = threading.Thread(target=self._echo, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    def _echo(self, c):
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    c.shutdown(socket.SHUT_WR)
                    return
                with self.lock:
                    self.received += len(data)
                c.sendall(data)
        except OSError:
            pass

    def push(self, data):
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sendall(data)
            except OSError:
                pass

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.accepter.join(5)
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(5)
        for c in conns:
            c.close()


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exactly(s, n, timeout=5):
    s.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise ConnectionError("closed after %d of %d bytes" % (len(buf), n))
        buf += d
    return buf


def nothing_arrives(s, wait=QUIET):
    s.settimeout(wait)
    try:
        d = s.recv(100)
    except socket.timeout:
        return True
    raise AssertionError("unexpected %r" % (d,))


def is_closed(s, timeout=5):
    """True when the peer closed or reset the connection."""
    s.settimeout(timeout)
    try:
        return s.recv(100) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def open_fds():
    return len(os.listdir("/proc/self/fd"))


class ProxyTest(unittest.TestCase):
    def setUp(self):
        self.threads0 = threading.active_count()
        self.fds0 = open_fds()
        self.echo = EchoServer()
        self.proxy = FaultProxy(self.echo.port, name="t")
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        self.proxy.close()
        self.echo.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (threading.active_count() > self.threads0 or
                                               open_fds() > self.fds0):
            time.sleep(0.02)
        self.assertEqual(threading.active_count(), self.threads0, "leaked threads: %s"
                         % threading.enumerate())
        self.assertEqual(open_fds(), self.fds0, "leaked file descriptors")

    def client(self):
        s = connect(self.proxy.port)
        self.socks.append(s)
        return s

    def roundtrip(self, s, data=b"ping"):
        s.sendall(data)
        self.assertEqual(recv_exactly(s, len(data)), data)

    def wait_received(self, n):
        deadline = time.monotonic() + 5
        while self.echo.received < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.echo.received

    # -- modes -------------------------------------------------------------------------
    def test_pass_forwards_bytes_intact(self):
        s = self.client()
        self.roundtrip(s)
        blob = os.urandom(2 * 1024 * 1024)
        t = threading.Thread(target=s.sendall, args=(blob,))
        t.start()
        self.assertEqual(recv_exactly(s, len(blob), timeout=20), blob)
        t.join()
        self.assertEqual(self.proxy.mode, "pass")
        # The proxy counts a chunk after forwarding it, so the client can
        # hold the last bytes a moment before the counters do: wait for them.
        want = len(blob) + 4
        deadline = time.monotonic() + 5
        st = self.proxy.stats()
        while (st["a2b_bytes"], st["b2a_bytes"]) != (want, want) and time.monotonic() < deadline:
            time.sleep(0.01)
            st = self.proxy.stats()
        self.assertEqual(st["a2b_bytes"], want)
        self.assertEqual(st["b2a_bytes"], want)
        # the client's FIN passes through, the echo server closes in turn
        s.shutdown(socket.SHUT_WR)
        self.assertTrue(is_closed(s))

    def test_drop_closes_and_refuses_then_recovers(self):
        s = self.client()
        self.roundtrip(s)
        self.proxy.drop()
        self.assertEqual(self.proxy.mode, "drop")
        self.assertTrue(is_closed(s))
        with self.assertRaises(ConnectionRefusedError):
            connect(self.proxy.port).close()
        self.proxy.pass_()
        s2 = self.client()
        self.roundtrip(s2, b"again")

    def test_blackhole_discards_both_ways_and_heal_resets_tainted(self):
        s = self.client()
        self.roundtrip(s)
        self.proxy.blackhole()
        before = self.echo.received
        s.sendall(b"lost")
        nothing_arrives(s)
        self.assertEqual(self.echo.received, before)  # a2b discarded
        self.echo.push(b"also lost")
        nothing_arrives(s)  # b2a discarded
        quiet = self.client()  # new connections are accepted, and hang
        time.sleep(0.1)  # let the proxy connect upstream before the heal
        self.assertEqual(self.proxy.stats()["connections"], 2)
        st = self.proxy.stats()
        self.assertEqual(st["a2b_discarded"], 4)
        self.assertEqual(st["b2a_discarded"], len(b"also lost"))
        self.proxy.pass_()
        self.assertTrue(is_closed(s))  # lost bytes: its stream is reset on heal
        self.roundtrip(quiet, b"untouched")  # lost nothing: resumes
        self.assertEqual(self.proxy.stats()["reset_on_heal"], 1)

    def test_cut_a2b(self):
        s = self.client()
        self.roundtrip(s)
        self.proxy.cut("a2b")
        self.assertEqual(self.proxy.mode, "cut a2b")
        before = self.echo.received
        s.sendall(b"lost")
        nothing_arrives(s)
        self.assertEqual(self.echo.received, before)
        self.echo.push(b"pushed")  # target -> client still passes
        self.assertEqual(recv_exactly(s, 6), b"pushed")

    def test_cut_b2a(self):
        s = self.client()
        self.roundtrip(s)
        self.proxy.cut("b2a")
        before = self.echo.received
        s.sendall(b"arrives")
        self.assertEqual(self.wait_received(before + 7), before + 7)  # client -> target ok
        nothing_arrives(s)  # the echo is discarded
        self.echo.push(b"x")
        nothing_arrives(s)

    def test_delay_adds_latency_and_keeps_order(self):
        s = self.client()
        t = time.monotonic()
        self.roundtrip(s)
        fast = time.monotonic() - t
        self.proxy.delay(0.2)
        t = time.monotonic()
        self.roundtrip(s)
        slow = time.monotonic() - t
        self.assertGreaterEqual(slow, 0.4)  # 0.2 each way
        self.assertLess(slow, 2.0)
        # many chunks under delay: all arrive, in order, in about one delay, not n delays
        t = time.monotonic()
        msgs = [b"%04d" % i for i in range(100)]
        for m in msgs:
            s.sendall(m)
            time.sleep(0.001)
        self.assertEqual(recv_exactly(s, 400), b"".join(msgs))
        self.assertLess(time.monotonic() - t, 2.0)
        self.proxy.delay(0)
        t = time.monotonic()
        self.roundtrip(s)
        self.assertLess(time.monotonic() - t, max(0.2, fast * 10))

    def test_switching_modes_at_run_time(self):
        s = self.client()
        self.roundtrip(s)
        self.proxy.delay(0.1)
        self.proxy.cut("b2a")
        self.proxy.cut("a2b")  # a cut that lost nothing yet changes nothing
        self.proxy.pass_()
        self.roundtrip(s, b"still")
        self.proxy.delay(0)
        for mode, arg in [("blackhole", None), ("pass", None), ("drop", None),
                          ("pass", None), ("cut", "a2b"), ("delay", 0.05), ("pass", None)]:
            self.proxy.set_mode(mode, arg)
        self.assertEqual(self.proxy.mode, "pass")
        self.roundtrip(self.client(), b"new")
        with self.assertRaises(ValueError):
            self.proxy.set_mode("cut", "sideways")
        with self.assertRaises(ValueError):
            self.proxy.set_mode("teleport")

    def test_upstream_down(self):
        self.echo.close()
        s = self.client()  # accepted, then closed: nothing listens behind
        self.assertTrue(is_closed(s))
        self.assertEqual(self.proxy.stats()["refused_upstream"], 1)

    def test_close_with_live_connections(self):
        a, b = self.client(), self.client()
        self.roundtrip(a)
        self.proxy.delay(0.5)
        b.sendall(b"in flight")
        self.proxy.close()
        self.proxy.close()  # idempotent
        self.assertTrue(is_closed(a))
        self.assertTrue(is_closed(b))
        with self.assertRaises(ConnectionRefusedError):
            connect(self.proxy.port).close()


class Loopback(unittest.TestCase):
    def test_only_loopback(self):
        self.assertEqual(loopback_host("localhost"), "127.0.0.1")
        self.assertEqual(loopback_host("127.0.0.2"), "127.0.0.2")
        self.assertEqual(loopback_host("::1"), "::1")
        for bad in ("10.0.0.1", "192.168.1.1", "0.0.0.0", "example.com", "8.8.8.8"):
            with self.assertRaises(ValueError):
                loopback_host(bad)
        threads = threading.active_count()
        with self.assertRaises(ValueError):
            FaultProxy(80, target_host="10.1.2.3")
        with self.assertRaises(ValueError):
            FaultProxy(80, host="0.0.0.0")
        self.assertEqual(threading.active_count(), threads)


class ControlProcess(unittest.TestCase):
    def test_separate_process_driven_by_control_socket(self):
        echo = EchoServer()
        proc = subprocess.Popen([sys.executable, os.path.join(LIB, "faultproxy.py"),
                                 "--route", "e=0:%d" % echo.port],
                                stdout=subprocess.PIPE, text=True)
        try:
            info = json.loads(proc.stdout.readline())
            port = info["routes"]["e"]
            ctl = ProxyControl(info["control"])
            s = connect(port)
            s.sendall(b"hi")
            self.assertEqual(recv_exactly(s, 2), b"hi")
            self.assertEqual(ctl.send("e blackhole"), "ok e=blackhole")
            s.sendall(b"lost")
            nothing_arrives(s)
            self.assertEqual(ctl.status()["e"]["a2b_discarded"], 4)
            self.assertEqual(ctl.send("* drop"), "ok e=drop")
            self.assertTrue(is_closed(s))
            s.close()
            with self.assertRaises(ConnectionRefusedError):
                connect(port).close()
            ctl.send("e pass")
            ctl.send("e delay 0.1")
            s = connect(port)
            t = time.monotonic()
            s.sendall(b"slow")
            self.assertEqual(recv_exactly(s, 4), b"slow")
            self.assertGreaterEqual(time.monotonic() - t, 0.2)
            s.close()
            with self.assertRaises(RuntimeError):
                ctl.send("nosuch pass")
            with self.assertRaises(RuntimeError):
                ctl.send("e cut up")
            self.assertEqual(ctl.send("quit"), "ok bye")
            ctl.close()
            self.assertEqual(proc.wait(10), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            echo.close()


if __name__ == "__main__":
    unittest.main()
