"""Start, stop, crash and restart an etcd-compatible store for integration tests.

Used by the Python tests under tests/integration (run with Debian's /usr/bin/python3,
standard library + python3-etcd3 + python3-grpcio only).

Which store runs:
  * ``bollard``: the binary named by $BOLLARD_STORE (meson sets it to the built
    tools/bollard-store);
  * ``etcd``: Debian's etcd 3.4 (/usr/bin/etcd), the reference.
$STORE_IMPL picks the default (``bollard`` when $BOLLARD_STORE is set, else ``etcd``);
STORE_IMPL=etcd runs the whole suite against the reference to prove the tests.
BOLLARD_CLIENT_H2=1 gives each plain-text Bollard store an experimental HTTP/2 listener
(--experimental-listen-h2-url) and makes it the store's endpoint (etcdctl, client(),
grpc_channel()), an extra h2 listener next to the client URLs.
The client URLs themselves are served by our own HTTP/2 unless
BOLLARD_CLIENT_TRANSPORT=grpc-core (passed to each Bollard store as
--experimental-client-transport): the whole suite then exercises the gRPC C core's
client port, the old path; tests comparing both transports set it themselves.

Guarantees: ports are free loopback ports, unique across concurrently running tests
(a lock file per port in a shared directory, held while the test process lives);
every wait is bounded; every process started is stopped when the test ends, also on
failure (Store.cleanup, atexit, and the unittest base class below).
"""

import atexit
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

ETCD = os.environ.get("ETCD_BIN", "/usr/bin/etcd")
ETCDCTL = os.environ.get("ETCDCTL_BIN", "/usr/bin/etcdctl")

# Sanitizer reports that mean the server is broken even if it kept answering.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "WARNING: ThreadSanitizer",
                     "ERROR: UndefinedBehaviorSanitizer")


def default_impl():
    impl = os.environ.get("STORE_IMPL")
    if impl:
        if impl not in ("bollard", "etcd"):
            raise RuntimeError("STORE_IMPL must be 'bollard' or 'etcd', not %r" % impl)
        return impl
    return "bollard" if os.environ.get("BOLLARD_STORE") else "etcd"


def store_binary(impl):
    if impl == "etcd":
        return ETCD
    path = os.environ.get("BOLLARD_STORE")
    if not path:
        raise RuntimeError("BOLLARD_STORE is not set (meson sets it; or use STORE_IMPL=etcd)")
    return os.path.abspath(path)      # servers run with their temp dir as cwd


# ---------------------------------------------------------------------------------------
# Ports

_PORT_LOCK_DIR = os.path.join(tempfile.gettempdir(), "bollard-test-ports")
_held_port_locks = {}


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def _port_is_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    except OSError:
        return False
    finally:
        s.close()
    return True


def free_port():
    """A free loopback TCP port outside the kernel's ephemeral range (so no outgoing
    connection can take it before the server binds), reserved for this process by an
    flock'd file so parallel tests never pick the same one."""
    os.makedirs(_PORT_LOCK_DIR, exist_ok=True)
    lo, hi = _ephemeral_range()
    # Candidates below the ephemeral range; fall back to above it.
    ranges = [(20000, min(lo, 32768) - 1)] if lo > 21000 else [(hi + 1, 65000)]
    rng = random.Random(os.getpid() ^ int(time.time() * 1e6))
    for _ in range(2000):
        a, b = rng.choice(ranges)
        port = rng.randint(a, b)
        if port in _held_port_locks:
            continue
        path = os.path.join(_PORT_LOCK_DIR, "%d.lock" % port)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if not _port_is_free(port):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            continue
        _held_port_locks[port] = fd
        return port
    raise RuntimeError("no free port found")


def release_port(port):
    fd = _held_port_locks.pop(port, None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ---------------------------------------------------------------------------------------
# Command results

class Result:
    """Outcome of a client command: rc, out, err (text)."""

    def __init__(self, argv, rc, out, err, elapsed):
        self.argv, self.rc, self.out, self.err, self.elapsed = argv, rc, out, err, elapsed

    @property
    def ok(self):
        return self.rc == 0

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return "Result(rc=%r, argv=%r, out=%r, err=%r)" % (self.rc, self.argv, self.out[-2000:],
                                                          self.err[-2000:])


def clean_env(extra=None):
    """The environment for servers and clients: no ETCD_*/ETCDCTL_* leaking in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ETCD_") and not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    if extra:
        env.update(extra)
    return env


def run_etcdctl(endpoint, args, input=None, timeout=20, command_timeout="5s",
                dial_timeout="3s", wrap=()):
    """Run ``etcdctl --endpoints=ENDPOINT ARGS`` (API v3) with bounded time; wrap is a
    command prefix (e.g. ``ip netns exec NS``)."""
    argv = list(wrap) + [ETCDCTL, "--endpoints=" + endpoint, "--dial-timeout=" + dial_timeout,
                         "--command-timeout=" + command_timeout] + list(args)
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, input=input, capture_output=True, text=True,
                           timeout=timeout, env=clean_env())
    except subprocess.TimeoutExpired as e:
        return Result(argv, "timeout", _text(e.stdout), _text(e.stderr) + "\n[timed out after %ss]"
                      % timeout, time.monotonic() - t0)
    return Result(argv, p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


def _text(b):
    if b is None:
        return ""
    if isinstance(b, bytes):
        return b.decode("utf-8", "replace")
    return b


# ---------------------------------------------------------------------------------------
# Long-running client processes (etcdctl watch, lease keep-alive, lock, elect)

import threading  # noqa: E402

_live_procs = set()


class BgProc:
    """A client process running in the background in its own process group: stdout and
    stderr are collected line by line by reader threads; stdin is a pipe (write_line).
    Every wait is bounded; stop() (also run at exit) ends it: the signal given, then
    SIGKILL."""

    def __init__(self, argv, env=None):
        self.argv = list(argv)
        self._cv = threading.Condition()
        self.out_lines, self.err_lines = [], []
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env or clean_env(),
                                     start_new_session=True)
        _live_procs.add(self)
        self._readers = [threading.Thread(target=self._read, args=(f, dst), daemon=True)
                         for f, dst in ((self.proc.stdout, self.out_lines),
                                        (self.proc.stderr, self.err_lines))]
        for t in self._readers:
            t.start()

    def _read(self, f, dst):
        for raw in iter(f.readline, b""):
            with self._cv:
                dst.append((time.monotonic(), raw.decode("utf-8", "replace").rstrip("\n")))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    @property
    def pid(self):
        return self.proc.pid

    def out(self):
        with self._cv:
            return "".join(l + "\n" for _, l in self.out_lines)

    def err(self):
        with self._cv:
            return "".join(l + "\n" for _, l in self.err_lines)

    def lines(self):
        with self._cv:
            return [l for _, l in self.out_lines]

    def wait_for(self, pred, timeout=10):
        """Until pred(list of stdout lines) is true (returns True) or timeout (False)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                if pred([l for _, l in self.out_lines]):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._readers):
                    return bool(pred([l for _, l in self.out_lines]))
                self._cv.wait(min(left, 0.1))

    def wait_lines(self, n, timeout=10):
        return self.wait_for(lambda ls: len(ls) >= n, timeout)

    def write_line(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def send(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except OSError:
            pass

    def wait(self, timeout=10):
        """The exit status, or None if still running after timeout."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        for t in self._readers:
            t.join(2)
        return rc

    def stop(self, sig=signal.SIGTERM, timeout=5):
        """Send sig (unless already exited), wait, SIGKILL if needed; the exit status."""
        if self.proc.poll() is None:
            self.send(sig)
            rc = self.wait(timeout)
            if rc is None:
                self.send(signal.SIGKILL)
                rc = self.wait(5)
        else:
            rc = self.wait(1)
        self.send(signal.SIGKILL)         # anything left in its group
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        _live_procs.discard(self)
        return rc

    def __repr__(self):
        return "BgProc(%r, rc=%r, out=%r, err=%r)" % (self.argv[3:], self.proc.poll(),
                                                       self.out()[-2000:], self.err()[-2000:])


def spawn_etcdctl(endpoint, args, dial_timeout="3s"):
    """Start ``etcdctl --endpoints=ENDPOINT ARGS`` (API v3) in the background."""
    return BgProc([ETCDCTL, "--endpoints=" + endpoint, "--dial-timeout=" + dial_timeout]
                  + list(args))


# ---------------------------------------------------------------------------------------
# The store process

_live_stores = set()


class StoreError(AssertionError):
    pass


class Store:
    """One single-member store process on free loopback ports in its own data dir.

    Flags are etcd's; ``extra_args`` adds more (e.g. ["--max-txn-ops", "4"]).
    The same ports and data dir are reused by restart()."""

    def __init__(self, impl=None, name="default", extra_args=(), data_dir=None, tmp_root=None,
                 omit_data_dir=False, client_scheme="http", tls_client_args=(),
                 peer_scheme="http"):
        # client_scheme "https": TLS client URLs (extra_args carries --cert-file etc.);
        # wait_ready then polls `etcdctl TLS_CLIENT_ARGS endpoint health` instead.
        self.client_scheme = client_scheme
        self.peer_scheme = peer_scheme   # "https": peer TLS (extra_args carries --peer-*)
        self.tls_client_args = list(tls_client_args)
        self.impl = impl or default_impl()
        self.binary = store_binary(self.impl)
        self.name = name
        self.extra_args = list(extra_args)
        self.tmp = tempfile.mkdtemp(prefix="bollard-it-%s-" % self.impl, dir=tmp_root)
        # omit_data_dir: no --data-dir flag, the server's default (<name>.etcd in its cwd,
        # which is self.tmp) applies
        self.omit_data_dir = omit_data_dir
        self.data_dir = (os.path.join(self.tmp, name + ".etcd") if omit_data_dir
                         else data_dir or os.path.join(self.tmp, "data"))
        self.log_path = os.path.join(self.tmp, "server.log")
        self.client_port = free_port()
        self.peer_port = free_port()
        # BOLLARD_CLIENT_H2=1: clients go to the experimental HTTP/2 listener
        self.h2_port = (free_port() if os.environ.get("BOLLARD_CLIENT_H2") == "1"
                        and self.impl == "bollard" and client_scheme == "http" else None)
        self.proc = None
        self.reaped = False          # the current incarnation's exit was collected by us
        self.starts = 0
        self.exit_codes = []         # exit status of each stopped incarnation
        self._log = None
        _live_stores.add(self)

    # -- addresses
    @property
    def client_url(self):
        return "%s://127.0.0.1:%d" % (self.client_scheme, self.client_port)

    @property
    def peer_url(self):
        return "%s://127.0.0.1:%d" % (self.peer_scheme, self.peer_port)

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % (self.h2_port or self.client_port)

    def argv(self):
        return [self.binary,
                "--name", self.name] + \
               ([] if self.omit_data_dir else ["--data-dir", self.data_dir]) + \
               ["--listen-client-urls", self.client_url,
                "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", "%s=%s" % (self.name, self.peer_url),
                "--initial-cluster-state", "new",
                "--initial-cluster-token", "bollard-it",
                ] + (["--experimental-listen-h2-url", "http://127.0.0.1:%d" % self.h2_port]
                     if self.h2_port else []) + \
               (["--experimental-client-transport", os.environ["BOLLARD_CLIENT_TRANSPORT"]]
                if os.environ.get("BOLLARD_CLIENT_TRANSPORT") and self.impl == "bollard"
                else []) + self.extra_args

    # -- lifecycle
    def start(self, wait=True, timeout=30):
        if self.running():
            raise StoreError("already running")
        self._log = open(self.log_path, "ab")
        self._log.write(("\n==== start #%d: %s\n" % (self.starts + 1, " ".join(self.argv())))
                        .encode())
        self._log.flush()
        self.reaped = False
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=clean_env(),
                                     cwd=self.tmp, start_new_session=True)
        self.starts += 1
        if wait:
            self.wait_ready(timeout)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=30):
        """Until a linearizable Range of key "health" answers (what `endpoint health` does)."""
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StoreError("%s exited with status %s before answering\n%s"
                                 % (self.impl, self.proc.returncode, self.log_tail()))
            if self._tcp_open() and self.client_scheme == "https":
                r = run_etcdctl(self.client_url, self.tls_client_args + ["endpoint", "health"],
                                timeout=10, command_timeout="2s", dial_timeout="2s")
                if r.ok:
                    return
                last = r.err.strip()[-300:]
            elif self._tcp_open():
                ch = grpc.insecure_channel(self.endpoint)
                try:
                    stub = rpc_pb2_grpc.KVStub(ch)
                    stub.Range(rpc_pb2.RangeRequest(key=b"health"), timeout=2)
                    return
                except grpc.RpcError as e:
                    # With auth enabled a Range without credentials is refused, but
                    # refused by a serving store (etcdctl endpoint health agrees); so
                    # is any linearizable read by a learner that joined (etcd 3.4).
                    if e.details() in ("etcdserver: user name is empty",
                                       "etcdserver: permission denied",
                                       "etcdserver: rpc not supported for learner"):
                        return
                    last = "%s %s" % (e.code(), e.details())
                finally:
                    ch.close()
            time.sleep(0.05)
        raise StoreError("%s not ready within %ss (last: %s)\n%s"
                         % (self.impl, timeout, last, self.log_tail()))

    def _tcp_open(self):
        try:
            with socket.create_connection(("127.0.0.1", self.client_port), timeout=1):
                return True
        except OSError:
            return False

    def _reap(self, timeout):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.exit_codes.append(rc)
        self.reaped = True
        if self._log:
            self._log.write(("\n==== exited with status %s\n" % rc).encode())
            self._log.close()
            self._log = None
        return rc

    def kill9(self):
        """Crash: SIGKILL the server, wait for it to be gone."""
        if not self.running():
            raise StoreError("kill9: not running (status %s)\n%s"
                             % (self.proc and self.proc.returncode, self.log_tail()))
        os.killpg(self.proc.pid, signal.SIGKILL)
        rc = self._reap(10)
        if rc is None:
            raise StoreError("process did not die after SIGKILL")
        return rc

    def terminate(self, timeout=15):
        """Clean shutdown: SIGTERM; returns the exit status (negative = killed by a signal)
        or None if it had not exited within timeout (it is then SIGKILLed)."""
        if not self.running():
            raise StoreError("terminate: not running (status %s)\n%s"
                             % (self.proc and self.proc.returncode, self.log_tail()))
        os.killpg(self.proc.pid, signal.SIGTERM)
        rc = self._reap(timeout)
        if rc is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self._reap(10)
            return None
        return rc

    def wait_exit(self, timeout=10):
        """Collect the exit of a process that stops on its own (so that the end of the test
        does not count it as a crash): its status, or None if still running after timeout."""
        if self.proc is None:
            return None
        if self.reaped:
            return self.exit_codes[-1]
        return self._reap(timeout)

    def restart(self, timeout=30):
        self.start(wait=True, timeout=timeout)
        return self

    def clean_exit_codes(self):
        """Exit statuses that count as a clean SIGTERM shutdown: 0 for bollard-store;
        etcd 3.4 re-raises SIGTERM after its own clean shutdown, so -15 for the reference."""
        return (0,) if self.impl == "bollard" else (0, -signal.SIGTERM)

    def cleanup(self, keep=False):
        """Stop the process if still running (SIGTERM, then SIGKILL), release ports, remove
        the temp dir unless keep or $KEEP_TEST_DIRS is set. Returns the last exit status."""
        rc = None
        if self.proc is not None and self.proc.poll() is None:
            rc = self.terminate()
        elif self.proc is not None:
            rc = self.proc.returncode
            if not self.reaped:
                self._reap(1)
        # Any process group members left behind.
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        release_port(self.client_port)
        release_port(self.peer_port)
        if self.h2_port:
            release_port(self.h2_port)
        _live_stores.discard(self)
        if not keep and not os.environ.get("KEEP_TEST_DIRS"):
            shutil.rmtree(self.tmp, ignore_errors=True)
        return rc

    # -- logs
    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=60):
        lines = self.log_text().splitlines()
        return "---- %s log (%s, last %d lines) ----\n%s\n----" % (
            self.impl, self.log_path, n, "\n".join(lines[-n:]))

    def sanitizer_report(self):
        text = self.log_text()
        for m in SANITIZER_MARKERS:
            i = text.find(m)
            if i >= 0:
                return text[max(0, i - 200): i + 4000]
        return None

    # -- clients
    def etcdctl(self, *args, input=None, timeout=20, **kw):
        return run_etcdctl(self.endpoint, args, input=input, timeout=timeout, **kw)

    def spawn(self, *args):
        """etcdctl ARGS in the background (BgProc); stopped at the latest at exit."""
        return spawn_etcdctl(self.endpoint, args)

    def client(self, timeout=10):
        import etcd3
        return etcd3.client(host="127.0.0.1", port=self.h2_port or self.client_port,
                            timeout=timeout)

    def grpc_channel(self):
        import grpc
        return grpc.insecure_channel(self.endpoint)


@atexit.register
def _stop_all():
    for p in list(_live_procs):
        try:
            p.stop(signal.SIGKILL)
        except Exception:
            pass
    for s in list(_live_stores):
        try:
            s.cleanup()
        except Exception:
            pass


def _on_signal(signum, frame):
    _stop_all()
    sys.exit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    try:
        signal.signal(_sig, _on_signal)
    except (ValueError, OSError):
        pass


# ---------------------------------------------------------------------------------------
# unittest glue

def finish_store(s):
    """Stop a store at the end of a test; return what went wrong: it died on its own, it
    did not exit cleanly on SIGTERM, or its log holds a sanitizer report."""
    problems = []
    was_running = s.running()
    died = s.proc is not None and not was_running and not s.reaped
    # Stop it first and read its log before cleanup() removes the temp dir (the log of a
    # crash must reach the failure message); the dir stays when something went wrong.
    rc = s.terminate() if was_running else s.wait_exit(1) if s.proc is not None else None
    if died:
        problems.append("%s died during the test with status %s\n%s"
                        % (s.impl, rc, s.log_tail()))
    elif was_running and rc not in s.clean_exit_codes():
        problems.append("%s: SIGTERM at the end of the test gave exit status %s, expected %s"
                        "\n%s" % (s.impl, rc, s.clean_exit_codes(), s.log_tail()))
    rep = s.sanitizer_report()
    if rep:
        problems.append("%s: sanitizer report in the server log:\n%s" % (s.impl, rep))
    s.cleanup(keep=bool(problems))
    if problems:
        problems.append("(kept %s)" % s.tmp)
    return problems


class StoreTestCase(unittest.TestCase):
    """Base class: self.store(...) starts a store that is stopped after the test; at the
    end each store must have shut down cleanly on SIGTERM and have no sanitizer report."""

    maxDiff = None

    def setUp(self):
        self._stores = []
        self._procs = []

    def bg(self, store, *args):
        """etcdctl ARGS against store in the background (BgProc), SIGKILLed at the end of
        the test if still running (before the test's stores are stopped)."""
        p = store.spawn(*args)
        self._procs.append(p)
        return p

    def store(self, impl=None, extra_args=(), start=True, timeout=30, **kw):
        s = Store(impl=impl, extra_args=extra_args, **kw)
        self._stores.append(s)
        if start:
            s.start(timeout=timeout)
        return s

    def tearDown(self):
        for p in getattr(self, "_procs", ()):
            p.stop(signal.SIGKILL)
        problems = []
        for st in self._stores:
            problems += finish_store(st)
        if problems:
            self.fail("\n\n".join(problems))

    # helpers
    def start_fails(self, extra_args, **kw):
        """Start a store (Store(**kw)) with a bad configuration: it must exit non-zero at
        start. Returns its output."""
        s = Store(extra_args=extra_args, **kw)
        try:
            p = subprocess.run(s.argv(), cwd=s.tmp, env=clean_env(), capture_output=True,
                               text=True, timeout=30)
        finally:
            s.cleanup()
        self.assertNotEqual(p.returncode, 0, "started with %s:\n%s%s" % (extra_args, p.stdout,
                                                                           p.stderr))
        return p.stdout + p.stderr

    def assertOk(self, r, msg=None):
        if r.rc != 0:
            self.fail("%s failed (rc %s):\nstdout: %s\nstderr: %s%s"
                      % (" ".join(r.argv[4:]), r.rc, r.out, r.err, "\n" + msg if msg else ""))
        return r

    def assertEtcdError(self, r, message):
        """etcdctl exits non-zero and prints exactly 'Error: <message>' on stderr."""
        self.assertNotEqual(r.rc, 0, "expected failure %r, got success: %r" % (message, r))
        self.assertIn("Error: " + message, r.err, r)


class SharedStoreTestCase(StoreTestCase):
    """One store for the whole class (started in setUpClass with ``store_args``), as
    ``self.s``; it must stay alive through every test and stop cleanly at the end."""

    store_args = ()
    shared = None

    @classmethod
    def setUpClass(cls):
        cls.shared = Store(extra_args=cls.store_args)
        try:
            cls.shared.start()
        except BaseException:
            cls.shared.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        problems = finish_store(cls.shared)
        if problems:
            raise AssertionError("\n\n".join(problems))

    def setUp(self):
        super().setUp()
        self.s = self.shared
        if not self.s.running():
            self.fail("the shared store is not running (status %s)\n%s"
                      % (self.s.proc.returncode, self.s.log_tail()))

    def tearDown(self):
        super().tearDown()
        if not self.s.running():
            self.fail("the shared store died during this test (status %s)\n%s"
                      % (self.s.proc.returncode, self.s.log_tail()))


# ---------------------------------------------------------------------------------------
# Runner with the project's summary line

class _CountingResult(unittest.TextTestResult):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.passed = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1


def main():
    """Run the calling module's tests; print exactly "N passed, N failed" last and exit
    non-zero if anything failed (errors, failures and unexpected successes all count as
    failed; a skipped test counts as failed too: nothing here may silently not run)."""
    import __main__
    argv = sys.argv[1:]
    loader = unittest.TestLoader()
    if argv:
        suite = loader.loadTestsFromNames(argv, __main__)
    else:
        suite = loader.loadTestsFromModule(__main__)
    print("store implementation: %s (%s)" % (default_impl(), store_binary(default_impl())),
          flush=True)
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=_CountingResult)
    t0 = time.monotonic()
    result = runner.run(suite)
    failed = (len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
              + len(result.skipped))
    _stop_all()
    print("took %.1fs" % (time.monotonic() - t0))
    print("%d passed, %d failed" % (result.passed, failed), flush=True)
    sys.exit(1 if failed else 0)


# ---------------------------------------------------------------------------------------
# Write load

class WriteLoad:
    """threads writer threads putting PREFIX/<thread>/<i> through members (round robin),
    each with its own python3-etcd3 client, until stop(). acked lists every key whose put
    was acknowledged; errors counts failed puts by gRPC detail text."""

    def __init__(self, members, prefix, threads=4, timeout=3):
        self.prefix = prefix
        self.acked, self.errors = [], {}
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True,
                                          args=(i, members[i % len(members)], timeout))
                         for i in range(threads)]

    def _run(self, idx, m, timeout):
        cl = m.client(timeout=timeout)
        i = 0
        while not self._stop.is_set():
            key = "%s/%d/%d" % (self.prefix, idx, i)
            try:
                cl.put(key, str(i))
                with self._lock:
                    self.acked.append(key)
            except Exception as e:
                cause = e.__cause__ or e.__context__ or e   # etcd3 hides the grpc error
                msg = str(getattr(cause, "details", lambda: cause)())
                with self._lock:
                    self.errors[msg] = self.errors.get(msg, 0) + 1
                time.sleep(0.05)
            i += 1

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout=15):
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    def missing_on(self, m):
        """Acknowledged keys member m does not have."""
        got = {kv[1].key.decode() for kv in m.client().get_prefix(self.prefix + "/")}
        return [k for k in self.acked if k not in got]


# ---------------------------------------------------------------------------------------
# Clusters

def wait_until(fn, timeout, what):
    """fn() until it returns a true value (returned; an exception counts as not yet);
    AssertionError naming what and the last value after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %ss (last: %r)" % (what, timeout, last))
        time.sleep(0.1)


def member_change(store, args, timeout=30):
    """etcdctl ARGS (a `member add/remove/update`) on store, again while etcd 3.4 finds the cluster too
    young to change ("unhealthy cluster": a member connected for less than 5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        r = store.etcdctl(*args)
        if r.ok or "unhealthy cluster" not in r.err or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


class Cluster:
    """n members of one cluster on free loopback ports (etcd's static bootstrap flags:
    --initial-cluster with every member, state new, one token). Members are Store objects
    named n1..nN; extra_args go to every member (e.g. timings). store(i, name) makes
    member i (default: a loopback Store; tests/lib/netns.py passes one per namespace)."""

    def __init__(self, size=3, impl=None, extra_args=(), token="bollard-cluster", store=None,
                 peer_scheme="http", member_args=None):
        # member_args(store) -> extra flags of that member (e.g. its own peer certificate)
        make = store or (lambda i, name: Store(impl=impl, name=name, peer_scheme=peer_scheme))
        self.members = [make(i, "n%d" % (i + 1)) for i in range(size)]
        initial = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)
        for m in self.members:
            m.extra_args = ["--initial-cluster", initial,
                            "--initial-cluster-token", token] + list(extra_args) + \
                           (list(member_args(m)) if member_args else [])

    def start(self, timeout=30):
        for m in self.members:
            m.start(wait=False)
        for m in self.members:
            m.wait_ready(timeout)
        return self

    @property
    def endpoints(self):
        return ",".join(m.endpoint for m in self.members)

    def status(self, m, timeout=3):
        """Maintenance.Status of member m (a dict of the fields tests use), or None."""
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        ch = grpc.insecure_channel(m.endpoint)
        try:
            r = rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=timeout)
            return {"member_id": r.header.member_id, "cluster_id": r.header.cluster_id,
                    "leader": r.leader, "raft_index": r.raftIndex, "raft_term": r.raftTerm,
                    "revision": r.header.revision}
        except grpc.RpcError:
            return None
        finally:
            ch.close()

    def leader(self, among=None, timeout=10):
        """The member every running member of among agrees leads; waits for agreement."""
        among = [m for m in (among or self.members) if m.running()]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sts = [self.status(m, timeout=1) for m in among]
            ids = {s["leader"] for s in sts if s}
            if len(ids) == 1 and None not in sts and 0 not in ids:
                lid = ids.pop()
                for m, s in zip(among, sts):
                    if s["member_id"] == lid:
                        return m
            time.sleep(0.05)
        raise StoreError("no agreed leader within %ss: %r" % (timeout, [self.status(m) for m in among]))

    def hash_kv(self, m, rev=0, timeout=5):
        import grpc
        from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
        ch = grpc.insecure_channel(m.endpoint)
        try:
            r = rpc_pb2_grpc.MaintenanceStub(ch).HashKV(rpc_pb2.HashKVRequest(revision=rev),
                                                        timeout=timeout)
            return r.hash, r.header.revision
        finally:
            ch.close()

    def cleanup(self):
        return [finish_store(m) for m in self.members]


def queue_requests(reqs):
    """The requests taken from the queue reqs until None, as a gRPC stream's request
    iterator: a stream the test feeds as it goes."""
    while True:
        r = reqs.get()
        if r is None:
            return
        yield r


def _serialized(r):
    return r if isinstance(r, bytes) else r.SerializeToString()


def watch_stream_call(ch, reqs, timeout, metadata=None):
    """Open etcd's Watch stream on the gRPC channel ch. Requests are taken from the queue reqs
    until None: WatchRequest messages, or serialized bytes (python3-etcd3 0.12's rpc_pb2 has
    no WatchProgressRequest, WatchRequest field 3, so callers encode that one themselves);
    responses are WatchResponses."""
    from etcd3.etcdrpc import rpc_pb2

    watch = ch.stream_stream("/etcdserverpb.Watch/Watch", request_serializer=_serialized,
                             response_deserializer=rpc_pb2.WatchResponse.FromString)
    return watch(queue_requests(reqs), timeout=timeout, metadata=metadata)


def read_responses(call, resps):
    """Read the stream call's responses on a daemon thread into the queue resps, each as
    (time.monotonic() at arrival, response); the grpc.RpcError that ends the stream is put
    the same way."""
    import grpc

    def read():
        try:
            for r in call:
                resps.put((time.monotonic(), r))
        except grpc.RpcError as e:
            resps.put((time.monotonic(), e))
    threading.Thread(target=read, daemon=True).start()


def next_response(tc, resps, timeout=10):
    """The next (arrival time, response) from a queue filled as read_responses does; fails
    the test case tc if none comes within timeout seconds or the stream failed."""
    import queue

    try:
        t, r = resps.get(timeout=timeout)
    except queue.Empty:
        tc.fail("no watch response within %ss" % timeout)
    if isinstance(r, Exception):
        tc.fail("stream failed: %r" % r)
    return t, r
