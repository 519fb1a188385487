"""A fault-injecting TCP proxy for loopback tests (standard library only).

Owns: forwarding 127.0.0.1:listen -> 127.0.0.1:target and breaking that link on command,
so the multi-member tests (issue 4) can partition members without tc/netem. Each proxy runs
an asyncio loop in its own daemon thread; its methods are called from the test's thread and
return once the new mode is in effect.

Modes (direction "a2b" is client -> target, "b2a" is target -> client):
  pass          forward both ways (with the current delay, if any)
  drop          close every existing connection (RST) and refuse new ones (the listener is
                closed, so connects get ECONNREFUSED); leaving drop listens again on the
                same port
  blackhole     accept and keep connections, silently discard bytes both ways
  cut a2b|b2a   discard one direction only; the other passes
  delay(s)      add a fixed latency to every chunk, both ways, order kept; combines with
                the other modes (delay(0) removes it)

Discarding bytes leaves a TCP stream that its peers can no longer parse, so a connection
that lost bytes is "tainted": when its discarding direction passes again (heal), it is
reset rather than resumed, as a real partition's connections would eventually time out.
Pass reset_on_heal=False to keep them.

Only loopback addresses (127.0.0.0/8, ::1, "localhost") are accepted, for both ends.

In process:
    p = FaultProxy(target_port=2380)            # listen port chosen (p.port) or given
    p.blackhole(); p.cut("a2b"); p.delay(0.05); p.drop(); p.pass_(); p.stats(); p.close()
    with FaultProxy(...) as p: ...

As a separate process, driven through a control socket (one command per line, answer
"ok ..." or "err ..." per line):
    /usr/bin/python3 tests/lib/faultproxy.py --route n1=12380:2380 --route n2=12381:2381 \\
        --control 19000
    commands:  <route|*> pass|drop|blackhole|cut a2b|cut b2a|delay SECONDS
               status            (one JSON line: every route's mode and counters)
               quit
    from Python: ProxyControl(19000).send("n1 blackhole")
"""

import argparse
import asyncio
import ipaddress
import json
import socket
import sys
import threading
import time

DIRECTIONS = ("a2b", "b2a")
CHUNK = 65536


def loopback_host(host):
    """Returns host as an IP literal if it is a loopback address, else raises ValueError."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError("faultproxy: %r is not an IP address; only loopback is allowed"
                         % (host,)) from None
    if not ip.is_loopback:
        raise ValueError("faultproxy: refusing non-loopback address %s" % host)
    return str(ip)


class _Conn:
    """One proxied connection: two streams and the two pump tasks between them."""

    def __init__(self, cr, cw):
        self.cr, self.cw = cr, cw
        self.ur = self.uw = None
        self.tasks = []
        self.tainted = {"a2b": False, "b2a": False}

    def abort(self):
        for w in (self.cw, self.uw):
            if w is not None:
                try:
                    w.transport.abort()
                except Exception:
                    pass
        for t in self.tasks:
            t.cancel()


class FaultProxy:
    def __init__(self, target_port, port=0, host="127.0.0.1", target_host="127.0.0.1",
                 name="proxy", reset_on_heal=True):
        self.host = loopback_host(host)
        self.target_host = loopback_host(target_host)
        self.target_port = int(target_port)
        self.name = name
        self.reset_on_heal = reset_on_heal
        self.port = int(port)
        self._discard = {"a2b": False, "b2a": False}
        self._dropped = False
        self._delay = 0.0
        self._conns = set()
        self._tasks = set()  # every task of every connection, for a clean shutdown
        self._server = None
        self._counters = {"accepted": 0, "refused_upstream": 0, "reset_on_heal": 0,
                          "a2b_bytes": 0, "b2a_bytes": 0,
                          "a2b_discarded": 0, "b2a_discarded": 0}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="faultproxy-%s" % name, daemon=True)
        self._closed = False
        self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self._stop_loop()
            raise

    # -- control, from any thread ------------------------------------------------------
    def _call(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def pass_(self):
        """Forward both ways (keeps the current delay)."""
        self._call(self._set(discard=(False, False), dropped=False))

    def drop(self):
        self._call(self._set(discard=(False, False), dropped=True))

    def blackhole(self):
        self._call(self._set(discard=(True, True), dropped=False))

    def cut(self, direction):
        """Discard one direction: "a2b" (client -> target) or "b2a"; the other passes."""
        if direction not in DIRECTIONS:
            raise ValueError("direction must be a2b or b2a, not %r" % (direction,))
        self._call(self._set(discard=(direction == "a2b", direction == "b2a"),
                             dropped=False))

    def delay(self, seconds):
        """Add a fixed latency per chunk, both ways (0 removes it)."""
        seconds = float(seconds)
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self._call(self._set(delay=seconds))

    def set_mode(self, mode, arg=None):
        """The same as the methods above, by name: pass, drop, blackhole, cut, delay."""
        if mode == "pass":
            self.pass_()
        elif mode == "drop":
            self.drop()
        elif mode == "blackhole":
            self.blackhole()
        elif mode == "cut":
            self.cut(arg)
        elif mode == "delay":
            self.delay(arg)
        else:
            raise ValueError("unknown mode %r" % (mode,))

    @property
    def mode(self):
        if self._dropped:
            return "drop"
        d = self._discard
        if d["a2b"] and d["b2a"]:
            return "blackhole"
        if d["a2b"] or d["b2a"]:
            return "cut " + ("a2b" if d["a2b"] else "b2a")
        return "pass"

    def stats(self):
        s = dict(self._counters)
        s.update(name=self.name, mode=self.mode, delay=self._delay, port=self.port,
                 target=self.target_port, connections=len(self._conns))
        return s

    def close(self):
        """Stop listening, reset every connection, stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._shutdown())
        finally:
            self._stop_loop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _stop_loop(self):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -- on the loop -------------------------------------------------------------------
    async def _listen(self):
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, self.host, self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self):
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _set(self, discard=None, dropped=None, delay=None):
        if delay is not None:
            self._delay = delay
        if dropped is not None and dropped != self._dropped:
            self._dropped = dropped
            if dropped:
                await self._unlisten()
                for c in list(self._conns):
                    c.abort()
                self._conns.clear()
            else:
                await self._listen()
        if discard is not None:
            self._discard = dict(zip(DIRECTIONS, discard))
            if self.reset_on_heal:
                for c in list(self._conns):
                    if any(c.tainted[d] and not self._discard[d] for d in DIRECTIONS):
                        self._counters["reset_on_heal"] += 1
                        c.abort()
                        self._conns.discard(c)

    async def _shutdown(self):
        await self._unlisten()
        for c in list(self._conns):
            c.abort()
        self._conns.clear()
        while self._tasks:
            tasks = list(self._tasks)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)

    def _track(self, task):
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, cr, cw):
        self._track(asyncio.current_task())
        _nodelay(cw)
        conn = _Conn(cr, cw)
        if self._dropped or self._closed:
            conn.abort()
            return
        self._counters["accepted"] += 1
        self._conns.add(conn)
        try:
            conn.ur, conn.uw = await asyncio.open_connection(self.target_host,
                                                             self.target_port)
        except OSError:
            self._counters["refused_upstream"] += 1
            self._conns.discard(conn)
            conn.abort()
            return
        _nodelay(conn.uw)
        if conn not in self._conns:  # dropped while connecting
            conn.abort()
            return
        conn.tasks = [self._track(asyncio.ensure_future(self._pump(conn, "a2b", conn.cr,
                                                                   conn.uw))),
                      self._track(asyncio.ensure_future(self._pump(conn, "b2a", conn.ur,
                                                                   conn.cw)))]
        results = await asyncio.gather(*conn.tasks, return_exceptions=True)
        self._conns.discard(conn)
        if all(r is True for r in results):
            for w in (conn.cw, conn.uw):  # both sides finished cleanly: close gently
                w.close()
            for w in (conn.cw, conn.uw):
                try:
                    await w.wait_closed()
                except OSError:
                    pass
        else:
            conn.abort()

    async def _pump(self, conn, d, reader, writer):
        """Copies one direction through a queue so that delay keeps order without
        slowing throughput; discards (and taints) while the direction is cut.
        Returns True when the stream ended cleanly (EOF passed on)."""
        queue = asyncio.Queue()
        sender = self._track(asyncio.ensure_future(self._send(conn, d, queue, writer)))
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if self._discard[d]:
                    conn.tainted[d] = True
                    self._counters[d + "_discarded"] += len(data)
                    continue
                queue.put_nowait((time.monotonic() + self._delay, data))
            queue.put_nowait(None)
            await sender
            return True
        except (ConnectionError, OSError):
            conn.abort()
            return False
        finally:
            sender.cancel()

    async def _send(self, conn, d, queue, writer):
        while True:
            item = await queue.get()
            if item is None:
                if writer.can_write_eof():
                    writer.write_eof()  # half-close: pass the FIN on
                return
            due, data = item
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self._discard[d]:  # cut while it waited in the delay queue
                conn.tainted[d] = True
                self._counters[d + "_discarded"] += len(data)
                continue
            writer.write(data)
            self._counters[d + "_bytes"] += len(data)
            await writer.drain()


def _nodelay(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


# -- control socket --------------------------------------------------------------------

def apply_command(proxies, line):
    """Applies one control line to a dict of name -> FaultProxy; returns the answer line."""
    words = line.split()
    if not words:
        return "err empty command"
    if words == ["status"]:
        return "ok " + json.dumps({n: p.stats() for n, p in proxies.items()})
    if len(words) < 2:
        return "err usage: <route|*> pass|drop|blackhole|cut a2b|cut b2a|delay SECONDS"
    name, mode, args = words[0], words[1], words[2:]
    targets = list(proxies.values()) if name == "*" else [proxies.get(name)]
    if targets == [None]:
        return "err no route %r" % name
    try:
        for p in targets:
            p.set_mode(mode, args[0] if args else None)
    except (ValueError, TypeError) as e:
        return "err %s" % e
    return "ok " + " ".join("%s=%s" % (p.name, p.mode) for p in targets)


class ControlServer:
    """Serves apply_command on 127.0.0.1:port in a thread (one client at a time)."""

    def __init__(self, proxies, port=0):
        self.proxies = proxies
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.quit = threading.Event()

    def serve(self):
        while not self.quit.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c, c.makefile("rw") as f:
                for line in f:
                    if line.strip() == "quit":
                        f.write("ok bye\n")
                        f.flush()
                        self.quit.set()
                        break
                    f.write(apply_command(self.proxies, line) + "\n")
                    f.flush()
        self.sock.close()


class ProxyControl:
    """Client of a ControlServer: send("n1 blackhole") -> "ok n1=blackhole"."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rw")

    def send(self, line):
        self.f.write(line.strip() + "\n")
        self.f.flush()
        answer = self.f.readline().strip()
        if not answer.startswith("ok"):
            raise RuntimeError("faultproxy: %s -> %s" % (line, answer))
        return answer

    def status(self):
        return json.loads(self.send("status")[3:])

    def close(self):
        self.f.close()
        self.sock.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description="fault-injecting TCP proxy on loopback")
    ap.add_argument("--route", action="append", required=True,
                    help="NAME=LISTEN_PORT:TARGET_PORT (on 127.0.0.1)")
    ap.add_argument("--control", type=int, default=0, help="control port (0: pick one)")
    a = ap.parse_args(argv)
    proxies = {}
    try:
        for r in a.route:
            name, _, ports = r.partition("=")
            listen, _, target = ports.partition(":")
            proxies[name] = FaultProxy(int(target), port=int(listen), name=name)
        ctl = ControlServer(proxies, a.control)
        # The first line tells a parent process where everything listens.
        print(json.dumps({"control": ctl.port,
                          "routes": {n: p.port for n, p in proxies.items()}}), flush=True)
        ctl.serve()
    finally:
        for p in proxies.values():
            p.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
