"""Members that advertise several peer URLs, of which only some answer.

etcd members may advertise several --initial-advertise-peer-urls; etcd's peer transport
(rafthttp's URL picker) dials one and, when it fails, the next. Here each member of a
3-member cluster advertises two peer URLs: the first (in etcd's sorted order) a port that
refuses connections (a bound socket that does not listen, held by the test), the second
the port it listens on. Checked on etcd 3.4 (STORE_IMPL=etcd) and Bollard alike:

- the cluster forms, agrees on a leader, and every member lists both URLs of each;
- writes sent to each member (followers forward them to the leader) are on every member;
- a follower killed and restarted rejoins and catches up, and writes through it;
- the leader killed: the other two elect a new one; restarted, it catches up;
- MemberUpdate of a follower to a new list (a new refusing port first, then its real
  one): the running members dial by the new list; the follower killed and restarted
  rejoins under its ID and catches up;
- the same cluster with peer TLS (https peer URLs, --peer-client-cert-auth): it forms and
  writes through each member replicate;
- a member with two --listen-peer-urls that advertises only the second: peers reach it
  there (the member listens on each), writes through it replicate, it rejoins after a
  kill -9;
- MemberUpdate of such a member to its second URL: new dials go there at once, connections
  open to the old one stay until they break (etcd 3.4's rafthttp changes its URL picker,
  not its open streams); restarted listening on the new URL only, it is reached there.

Every wait is a condition with a deadline. Prints "N passed, N failed" last."""

import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402
from tlscerts import PEER_EXT, CertDir  # noqa: E402

TIMINGS = ["--heartbeat-interval", "100", "--election-timeout", "1000"]
TOKEN = "bollard-member-urls"
CERTS = None   # a tlscerts.CertDir for the peer TLS test, made once in setUpModule


def setUpModule():
    global CERTS
    CERTS = CertDir("bollard-member-urls-certs-")
    CERTS.ca("ca")
    for n in ("n1", "n2", "n3"):
        CERTS.cert(n, "ca", n, PEER_EXT)   # SAN IP:127.0.0.1


def tearDownModule():
    if CERTS:
        CERTS.cleanup()


def refusing_port(below):
    """A loopback port that refuses connections, numbered below `below` (the URLs sort
    before the member's real one: ports here all have 5 digits), as (port, socket that
    holds it: bound, never listening)."""
    for _ in range(200):
        p = h.free_port()
        if p < below:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", p))
            return p, s
        h.release_port(p)
    raise AssertionError("no free port below %d" % below)


def tcp_to(port):
    """Established TCP connections to 127.0.0.1:port (this host's, from /proc/net/tcp
    and /proc/net/tcp6: gRPC's sockets are IPv6 ones connected to ::ffff:127.0.0.1;
    the ports here are the test's own)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):   # a kernel without IPv6
            continue
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                    n += 1
    return n


class MemberURLsTest(h.StoreTestCase):
    def setUp(self):
        super().setUp()
        self._held = []

    def tearDown(self):
        for s in self._held:
            s.close()
        super().tearDown()

    def refusing_url(self, below, scheme="http"):
        p, s = refusing_port(below)
        self._held.append(s)
        return "%s://127.0.0.1:%d" % (scheme, p)

    def cluster(self, scheme="http"):
        c = h.Cluster(3, token=TOKEN, peer_scheme=scheme)
        for m in c.members:   # real ports high enough that a lower one is easy to find
            while m.peer_port < 21000:
                h.release_port(m.peer_port)
                m.peer_port = h.free_port()
        self._stores += c.members
        self.advertised = {m.name: [self.refusing_url(m.peer_port, scheme), m.peer_url]
                           for m in c.members}
        initial = ",".join("%s=%s" % (m.name, u) for m in c.members
                           for u in self.advertised[m.name])
        for m in c.members:
            m.extra_args = ["--initial-cluster", initial, "--initial-cluster-token", TOKEN,
                            "--initial-advertise-peer-urls", ",".join(self.advertised[m.name])
                            ] + TIMINGS + (self.peer_tls_args(m.name) if scheme == "https"
                                           else [])
        c.start(timeout=60)
        return c

    def peer_tls_args(self, name):
        p = CERTS.path
        return ["--peer-cert-file", p(name + ".pem"), "--peer-key-file", p(name + ".key"),
                "--peer-trusted-ca-file", p("ca.pem"), "--peer-client-cert-auth"]

    def members(self, m):
        r = self.assertOk(m.etcdctl("member", "list", "-w", "json"))
        return r.json()["members"]

    def get(self, m, key):
        """key's value on m, read serializably (m's own state), or None."""
        r = m.etcdctl("get", key, "--consistency=s", "--print-value-only")
        return r.out.strip() if r.ok and r.out.strip() else None

    def on_all(self, c, key, value, among=None, timeout=30):
        for m in among or c.members:
            h.wait_until(lambda: self.get(m, key) == value, timeout,
                         "%s=%s on %s" % (key, value, m.name))

    def put(self, m, key, value):
        self.assertOk(m.etcdctl("put", key, value, command_timeout="10s", timeout=30))

    def test_cluster_forms_and_rejoins_on_second_url(self):
        c = self.cluster()
        leader = c.leader(timeout=30)
        for m in c.members:
            ms = self.members(m)
            self.assertEqual(sorted(sorted(x["peerURLs"]) for x in ms),
                             sorted(sorted(u) for u in self.advertised.values()), ms)
        # writes through every member, on every member
        for i, m in enumerate(c.members):
            self.put(m, "via-%s" % m.name, str(i))
        for i, m in enumerate(c.members):
            self.on_all(c, "via-%s" % m.name, str(i))
        # a follower killed, written past, restarted: it catches up and writes
        f = [m for m in c.members if m is not leader][0]
        f.kill9()
        self.put(leader, "while-down", "1")
        f.restart(timeout=60)
        self.on_all(c, "while-down", "1", among=[f])
        self.put(f, "after-restart", "1")
        self.on_all(c, "after-restart", "1")
        # the leader killed: the others elect a new one; it comes back and catches up
        leader.kill9()
        others = [m for m in c.members if m is not leader]
        new = c.leader(among=others, timeout=30)
        self.assertIsNot(new, leader)
        self.put(others[0], "new-leader", "1")
        leader.restart(timeout=60)
        self.on_all(c, "new-leader", "1")
        self.put(leader, "old-leader-back", "1")
        self.on_all(c, "old-leader-back", "1")
        print("leaders: %s then %s" % (leader.name, new.name), flush=True)

    def test_updated_urls_dialed_by_running_members(self):
        c = self.cluster()
        leader = c.leader(timeout=30)
        f = [m for m in c.members if m is not leader][0]
        fid = c.status(f)["member_id"]
        urls = [self.refusing_url(f.peer_port), f.peer_url]
        r = self.assertOk(h.member_change(leader, ["member", "update", "%x" % fid,
                                                   "--peer-urls=" + ",".join(urls)]))
        print(r.out.strip(), flush=True)
        for m in c.members:
            h.wait_until(lambda: sorted(urls) in [sorted(x["peerURLs"])
                                                  for x in self.members(m)],
                         30, "the update applied on %s" % m.name)
        # f restarted (its flags as at its start: a restart reads its data dir): the
        # others reach it at the updated URLs only
        f.kill9()
        self.put(leader, "after-update", "1")
        f.restart(timeout=60)
        self.on_all(c, "after-update", "1", among=[f])
        self.assertEqual(c.status(f)["member_id"], fid)
        self.put(f, "through-updated", "1")
        self.on_all(c, "through-updated", "1")

    def test_listens_on_every_listen_peer_url(self):
        """A member with two --listen-peer-urls advertises only the second: its peers reach
        it there (etcd listens on each of its --listen-peer-urls)."""
        c = h.Cluster(3, token=TOKEN)
        self._stores += c.members
        two = c.members[1]
        second = "http://127.0.0.1:%d" % h.free_port()
        advertised = {m.name: second if m is two else m.peer_url for m in c.members}
        initial = ",".join("%s=%s" % (m.name, advertised[m.name]) for m in c.members)
        for m in c.members:
            m.extra_args = ["--initial-cluster", initial, "--initial-cluster-token", TOKEN,
                            "--initial-advertise-peer-urls", advertised[m.name]] + TIMINGS
        two.extra_args += ["--listen-peer-urls", "%s,%s" % (two.peer_url, second)]
        c.start(timeout=60)
        c.leader(timeout=30)
        for port in (two.peer_port, int(second.rsplit(":", 1)[1])):   # both listen
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        for i, m in enumerate(c.members):
            self.put(m, "via-%s" % m.name, str(i))
        for i, m in enumerate(c.members):
            self.on_all(c, "via-%s" % m.name, str(i))
        two.kill9()
        self.put(c.leader(among=[m for m in c.members if m is not two], timeout=30),
                 "while-down", "1")
        two.restart(timeout=60)
        self.on_all(c, "while-down", "1", among=[two])
        self.put(two, "after-restart", "1")
        self.on_all(c, "after-restart", "1")

    def test_update_to_second_listen_url(self):
        """n2 listens on two peer URLs and advertises the first; MemberUpdate moves it to
        the second. As etcd 3.4 (rafthttp's UpdatePeer changes the URL picker and the
        probers, not the streams it has open): new dials go to the new URL at once, the
        connections open to the old one stay until they break. n2 restarted listening
        on the new URL only: its old port refuses, the others reach it at the new one."""
        c = h.Cluster(3, token=TOKEN)
        self._stores += c.members
        two = c.members[1]
        new_port = h.free_port()
        new = "http://127.0.0.1:%d" % new_port
        initial = ",".join("%s=%s" % (m.name, m.peer_url) for m in c.members)
        for m in c.members:
            m.extra_args = ["--initial-cluster", initial, "--initial-cluster-token", TOKEN
                            ] + TIMINGS
        two.extra_args += ["--listen-peer-urls", "%s,%s" % (two.peer_url, new)]
        c.start(timeout=60)
        leader = c.leader(timeout=30)
        h.wait_until(lambda: tcp_to(two.peer_port) > 0, 30, "connections to the old URL")
        self.assertEqual(tcp_to(new_port), 0)
        tid = c.status(two)["member_id"]
        self.assertOk(h.member_change(leader, ["member", "update", "%x" % tid,
                                               "--peer-urls=" + new]))
        for m in c.members:
            h.wait_until(lambda: [new] in [x["peerURLs"] for x in self.members(m)], 30,
                         "the update applied on %s" % m.name)
        h.wait_until(lambda: tcp_to(new_port) > 0, 30, "connections to the new URL")
        print("connections to n2's old / new peer URL after the update: %d / %d"
              % (tcp_to(two.peer_port), tcp_to(new_port)), flush=True)
        for i, m in enumerate(c.members):
            self.put(m, "updated-via-%s" % m.name, str(i))
        for i, m in enumerate(c.members):
            self.on_all(c, "updated-via-%s" % m.name, str(i))
        # restarted on the new URL alone: all traffic moves there
        old_port = two.peer_port
        two.terminate()
        two.extra_args[-1] = new
        two.start(wait=False)
        two.wait_ready(60)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", old_port), timeout=5).close()
        self.put(two, "moved", "1")
        self.on_all(c, "moved", "1")
        h.wait_until(lambda: tcp_to(old_port) == 0, 30, "no connection to the old URL")

    def test_peer_tls_cluster_on_second_url(self):
        c = self.cluster("https")
        leader = c.leader(timeout=30)
        for i, m in enumerate(c.members):   # followers forward over the peer TLS
            self.put(m, "tls-via-%s" % m.name, str(i))
        for i, m in enumerate(c.members):
            self.on_all(c, "tls-via-%s" % m.name, str(i))
        f = [m for m in c.members if m is not leader][0]
        f.kill9()
        self.put(leader, "tls-while-down", "1")
        f.restart(timeout=60)
        self.on_all(c, "tls-while-down", "1", among=[f])


if __name__ == "__main__":
    h.main()
