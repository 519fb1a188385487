"""Network namespaces for partition tests: each member of a cluster in its own namespace
with its own address, joined by a bridge, so one member can be cut off from the others.

Owns: running a test inside a private network namespace, the namespaces and links of one
test network, cutting and healing a member's link, and removing what a crashed run left.

Layout (all of it private to the test process):
  * ``enter_private_netns()`` re-executes the test under ``unshare --net``: the bridge, the
    host ends of the veth pairs and the 10.77.0.0/24 addresses live in a namespace of the
    test's own, so concurrent runs never collide and the machine's network is untouched;
    it dies with the test process (and the veth pairs with it).
  * member i runs in the named namespace ``bollard-t<pid>-n<i>`` (``ip netns``), address
    10.77.0.<i>/24 on its ``eth0``, whose peer ``bv<i>`` is a port of bridge ``bbr0``
    (10.77.0.254/24, the test process's own address: its clients reach every member).
  * ``cut(i)`` sets ``bv<i>`` down: member i can reach nobody and nobody reaches it; a
    client run inside its namespace (``exec_argv``) still talks to it: the minority side.
    ``heal(i)`` sets it up again.
Named namespaces outlive a process killed with SIGKILL: ``remove_leftovers()`` (run by
``Net.up``) deletes those whose test process is gone, after killing what still runs in
them (members started by that run).

Needs root and iproute2. Anything missing fails the test loudly; nothing is skipped.
"""

import atexit
import os
import re
import signal
import subprocess
import sys
import time

import storeharness as h

MARK = "BOLLARD_PRIVATE_NETNS"
PREFIX = "bollard-t"
SUBNET = "10.77.0"
BRIDGE = "bbr0"


class NetnsError(AssertionError):
    pass


def ip(*args, check=True):
    p = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise NetnsError("ip %s: exit %d: %s" % (" ".join(args), p.returncode,
                                                p.stderr.strip()))
    return p


def enter_private_netns():
    """Re-exec this test (same interpreter and arguments) in a private network namespace,
    unless already inside one; then bring its loopback up. Exits non-zero with the reason
    when that cannot be done (not root, no unshare): a partition test never skips."""
    if os.environ.get(MARK) == "inside":
        ip("link", "set", "lo", "up")
        return
    why = None
    if os.geteuid() != 0:
        why = "network namespaces need root (running as uid %d)" % os.geteuid()
    else:
        probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
        if probe.returncode != 0:
            why = "unshare --net failed: %s" % probe.stderr.strip()
    if why:
        print("FAIL: cannot run the partition tests: %s" % why, flush=True)
        print("0 passed, 1 failed", flush=True)
        sys.exit(1)
    env = dict(os.environ)
    env[MARK] = "inside"
    os.execvpe("unshare", ["unshare", "--net", "--", sys.executable] + sys.argv, env)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace_pids(ns):
    p = ip("netns", "pids", ns, check=False)
    for tok in p.stdout.split():
        try:
            os.kill(int(tok), signal.SIGKILL)
        except (ValueError, OSError):
            pass


def remove_leftovers():
    """Delete namespaces of earlier runs whose test process is gone."""
    p = ip("netns", "list", check=False)
    removed = []
    for line in p.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(r"^%s(\d+)-" % re.escape(PREFIX), name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        _kill_namespace_pids(name)
        ip("netns", "del", name, check=False)
        removed.append(name)
    if removed:
        print("removed namespaces left by a crashed run: %s" % " ".join(removed), flush=True)
    return removed


class Net:
    """n namespaces on one bridge (module docstring). up() builds it, cleanup() removes
    the namespaces (also at exit)."""

    def __init__(self, n=3):
        self.n = n
        tag = "%s%d" % (PREFIX, os.getpid())
        self.ns = ["%s-n%d" % (tag, i + 1) for i in range(n)]
        self.addrs = ["%s.%d" % (SUBNET, i + 1) for i in range(n)]
        self.ports = ["bv%d" % (i + 1) for i in range(n)]
        self.created = []

    def up(self):
        remove_leftovers()
        atexit.register(self.cleanup)
        if ip("link", "show", BRIDGE, check=False).returncode != 0:
            ip("link", "add", BRIDGE, "type", "bridge")
            ip("addr", "add", SUBNET + ".254/24", "dev", BRIDGE)
            ip("link", "set", BRIDGE, "up")
        for ns, addr, port in zip(self.ns, self.addrs, self.ports):
            ip("netns", "add", ns)
            self.created.append(ns)
            ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", port, "master", BRIDGE, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", addr + "/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
        return self

    def exec_argv(self, i, argv):
        """argv run inside member i's namespace."""
        return ["ip", "netns", "exec", self.ns[i]] + list(argv)

    def cut(self, i):
        ip("link", "set", self.ports[i], "down")

    def heal(self, i):
        ip("link", "set", self.ports[i], "up")

    def cleanup(self):
        for ns in self.created:
            _kill_namespace_pids(ns)
            ip("netns", "del", ns, check=False)
        for port in self.ports:
            ip("link", "del", port, check=False)
        self.created = []


class NsStore(h.Store):
    """A Store (tests/lib/storeharness.py) running in member i's namespace of net, on its
    address there (the harness's free ports, which are free there too)."""

    def __init__(self, net, i, name, **kw):
        self.net, self.i, self.host = net, i, net.addrs[i]
        super().__init__(name=name, **kw)

    @property
    def client_url(self):
        return "%s://%s:%d" % (self.client_scheme, self.host, self.client_port)

    @property
    def peer_url(self):
        return "http://%s:%d" % (self.host, self.peer_port)

    @property
    def endpoint(self):
        return "%s:%d" % (self.host, self.client_port)

    def argv(self):
        return self.net.exec_argv(self.i, super().argv())

    def _tcp_open(self):
        import socket
        try:
            with socket.create_connection((self.host, self.client_port), timeout=1):
                return True
        except OSError:
            return False

    def etcdctl_inside(self, *args, timeout=20, **kw):
        """etcdctl against this member from inside its namespace (the side of it a cut
        leaves it on)."""
        return h.run_etcdctl(self.endpoint, args, timeout=timeout,
                             wrap=self.net.exec_argv(self.i, []), **kw)


def cluster(net, size=3, impl=None, extra_args=(), token="bollard-partition"):
    """A storeharness.Cluster whose members are NsStores, one per namespace of net."""
    return h.Cluster(size, impl=impl, extra_args=extra_args, token=token,
                     store=lambda i, name: NsStore(net, i, name, impl=impl))


def wait_until(pred, timeout, what, interval=0.1):
    """pred() until truthy (returned) or timeout (NetnsError naming what)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise NetnsError("%s: not within %ss" % (what, timeout))
        time.sleep(interval)
