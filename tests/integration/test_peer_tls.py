#!/usr/bin/python3
"""Peer TLS (issue 6): etcd's --peer-cert-file, --peer-key-file, --peer-trusted-ca-file,
--peer-client-cert-auth and --peer-auto-tls with https peer URLs: raft traffic between
members is encrypted and, with --peer-client-cert-auth, mutually authenticated.

Certificates are made at test time with `openssl` (tests/lib/tlscerts.py): a CA, one peer
certificate per member (SAN IP:127.0.0.1), a rogue CA with a peer certificate of its own,
and a CA-signed certificate for the wrong IP. Nothing is committed.

Checked: a 3-member cluster forms, serves writes through followers (members' gRPC over the
peer port; the client port refuses bollard.Internal) and survives kill -9 of its leader under
load with no acknowledged write lost; a lagging member catches up by a snapshot sent over
TLS; a member with a rogue certificate (bootstrapped, or added with MemberAdd and started
with --initial-cluster-state existing), one whose certificate names another IP and a
plain-text member are refused, and the refusals are logged with the peer's address and
OpenSSL's reason, while a member with a CA-signed certificate joins; a --peer-auto-tls
cluster forms; misconfigurations stop the member at start; members stopped with handshakes
and raft preambles half done exit cleanly (the ASan build reports no leak). Run with
Debian's python3; prints "N passed, N failed" last."""

import os
import re
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402
from tlscerts import PEER_EXT, CertDir  # noqa: E402

CERTS = None   # a tlscerts.CertDir, made once in setUpModule
TIMINGS = ["--heartbeat-interval", "100", "--election-timeout", "1000"]


def setUpModule():
    global CERTS
    CERTS = CertDir("bollard-peer-tls-certs-")
    CERTS.ca("ca")
    for n in ("n1", "n2", "n3"):
        CERTS.cert(n, "ca", n, PEER_EXT)
    CERTS.ca("rogue-ca")
    CERTS.cert("rogue", "rogue-ca", "n3", PEER_EXT)
    CERTS.cert("wrongip", "ca", "n3",
               "subjectAltName=IP:127.0.0.2\nextendedKeyUsage=serverAuth,clientAuth\n")
    CERTS.other_key("other.key")
    for n in ("shared1", "shared2"):   # the CommonName every member has (--peer-cert-allowed-cn)
        CERTS.cert(n, "ca", "bollard-peer", PEER_EXT)
    CERTS.cert("ipsan", "ca", "n3",       # no DNS name (--peer-cert-allowed-hostname)
               "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")


def tearDownModule():
    if CERTS:
        CERTS.cleanup()


def c(name):
    return CERTS.path(name)


def peer_args(cert):
    return ["--peer-cert-file", c(cert + ".pem"), "--peer-key-file", c(cert + ".key"),
            "--peer-trusted-ca-file", c("ca.pem"), "--peer-client-cert-auth"]


class PeerTLSBase(h.StoreTestCase):
    def cluster(self, member_args, start=True, **kw):
        cl = h.Cluster(3, extra_args=TIMINGS, peer_scheme="https", member_args=member_args,
                       **kw)
        self._stores += cl.members   # stopped and checked by tearDown
        if start:
            cl.start()
        return cl

    def get(self, m, key, *flags):
        r = self.assertOk(m.etcdctl("get", key, "--print-value-only", *flags))
        return r.out.strip()

    def wait_log(self, members, pattern, timeout=20):
        """The first match of pattern in the log of any of members."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in members:
                found = re.search(pattern, m.log_text())
                if found:
                    return found.group(0)
            time.sleep(0.1)
        self.fail("no /%s/ in the logs within %ss\n%s" % (
            pattern, timeout, "\n".join(m.log_tail() for m in members)))

    def serves_without(self, cl, outsider):
        """The other two form a cluster that serves; outsider never gets its data."""
        good = [m for m in cl.members if m is not outsider]
        for m in good:
            m.wait_ready(30)
        leader = cl.leader(among=good)
        follower = [m for m in good if m is not leader][0]
        self.assertOk(follower.etcdctl("put", "secret", "v"))
        self.assertEqual(self.get(leader, "secret"), "v")
        time.sleep(2.0)   # a few heartbeats and connection retries
        st = cl.status(outsider)
        self.assertIsNotNone(st, "the outsider should answer Status")
        self.assertEqual(st["leader"], 0, "the outsider joined: %r" % st)
        r = outsider.etcdctl("get", "secret", "--consistency=s", "--print-value-only")
        self.assertEqual(r.out.strip(), "", r)
        return good


class PeerTLSCluster(PeerTLSBase):
    def test_forms_serves_through_followers_survives_leader_kill(self):
        cl = self.cluster(lambda m: peer_args(m.name))
        leader = cl.leader()
        followers = [m for m in cl.members if m is not leader]
        self.assertOk(followers[0].etcdctl("put", "k1", "v1"))
        self.assertOk(followers[1].etcdctl("put", "k2", "v2"))
        for m in cl.members:
            self.assertEqual(self.get(m, "k1"), "v1", m.name)
            self.assertEqual(self.get(m, "k2"), "v2", m.name)
        # the peer port speaks TLS: a trusted client certificate completes a handshake
        ctx = ssl.create_default_context(cafile=c("ca.pem"))
        ctx.load_cert_chain(c("n1.pem"), c("n1.key"))
        with socket.create_connection(("127.0.0.1", leader.peer_port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                self.assertIn(t.version(), ("TLSv1.2", "TLSv1.3"))
        for m in cl.members:
            self.assertNotIn("rejected connection", m.log_text(), m.name)
        # members' own gRPC (forwarded writes, ReadIndex) uses the peer port: the client
        # port does not serve bollard.Internal
        import grpc
        ch = grpc.insecure_channel(followers[0].endpoint)
        try:
            with self.assertRaises(grpc.RpcError) as e:
                ch.unary_unary("/bollard.Internal/ReadIndex")(b"", timeout=5)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        finally:
            ch.close()

        # kill -9 of the leader under a write load through the followers
        load = h.WriteLoad(followers, "load").start()
        time.sleep(1.0)
        leader.kill9()
        new = cl.leader(among=followers, timeout=15)
        deadline = time.monotonic() + 15
        while new.etcdctl("put", "after-kill", "1", command_timeout="2s").rc != 0:
            self.assertLess(time.monotonic(), deadline)
        time.sleep(1.0)
        load.stop()
        leader.restart()
        self.assertEqual(self.get(leader, "after-kill"), "1")
        print("%d acknowledged writes, new leader %s" % (len(load.acked), new.name), flush=True)
        self.assertGreater(len(load.acked), 20)
        for m in cl.members:
            self.assertEqual(load.missing_on(m), [], m.name)


class PeerTLSSnapshot(PeerTLSBase):
    def test_lagging_member_gets_a_snapshot(self):
        """A member that was down while the others took snapshots and truncated their logs
        catches up through raft's InstallSnapshot: megabytes through one TLS connection
        (the pump's back-pressure both ways)."""
        cl = self.cluster(lambda m: peer_args(m.name) + ["--snapshot-count", "64"])
        leader = cl.leader()
        lagging = [m for m in cl.members if m is not leader][0]
        self.assertEqual(lagging.terminate(), 0)
        client = leader.client()
        value = "v" * 16384
        for i in range(300):
            client.put("snap/%03d" % i, value + str(i))
        lagging.start()
        deadline = time.monotonic() + 60
        while True:
            r = lagging.etcdctl("get", "snap/299", "--consistency=s", "--print-value-only")
            if r.out.strip() == value + "299":
                break
            self.assertLess(time.monotonic(), deadline, "the lagging member never caught up")
            time.sleep(0.2)
        line = self.wait_log([lagging], r"restored snapshot at applied index \d+", timeout=1)
        print(line, flush=True)
        r = self.assertOk(lagging.etcdctl("get", "snap/", "--prefix", "--keys-only",
                                          "--consistency=s", "-w", "json"))
        self.assertEqual(r.json()["count"], 300)


class PeerTLSRefusals(PeerTLSBase):
    def outsider(self, cert, good=None, extra=()):
        """n1 and n2 with their own certificates (or good[0], good[1]), n3 with cert; extra
        flags for all: (cluster, n3, [n1, n2])."""
        good = good or ("n1", "n2")
        cl = self.cluster(lambda m: peer_args(cert if m.name == "n3" else
                                              good[int(m.name[1]) - 1]) + list(extra),
                          start=False)
        for m in cl.members:
            m.start(wait=False)
        return cl, cl.members[2], self.serves_without(cl, cl.members[2])

    def test_rogue_certificate_refused(self):
        cl, rogue, good = self.outsider("rogue")
        # the members refuse its certificate when it dials them, and refuse to talk to it
        # when they dial it; both logged with its address and OpenSSL's reason
        line = self.wait_log(good, r'rejected connection from "127\.0\.0\.1:\d+" '
                                      r'\(error "[^"]*(unknown ca|certificate verify failed)')
        print(line, flush=True)
        line = self.wait_log(good, r"cannot connect to member [0-9a-f]+ at 127\.0\.0\.1:%d:"
                                      r" TLS handshake failed: .*certificate verify failed"
                                      % rogue.peer_port)
        print(line, flush=True)

    def add_member(self, cl, leader, name, cert):
        """MemberAdd (as a learner) then start it with --initial-cluster-state existing."""
        m = h.Store(name=name, peer_scheme="https")
        self._stores.append(m)
        r = self.assertOk(h.member_change(leader, ["member", "add", name,
                                                    "--peer-urls=" + m.peer_url, "--learner"]))
        initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', r.out).group(1)
        m.extra_args = ["--initial-cluster", initial, "--initial-cluster-state", "existing",
                        "--initial-cluster-token", "bollard-cluster"] + TIMINGS + peer_args(cert)
        member_id = [x["ID"] for x in self.assertOk(leader.etcdctl(
            "member", "list", "-w", "json")).json()["members"] if m.peer_url in x["peerURLs"]][0]
        return m, member_id

    def test_rogue_member_cannot_join_a_good_one_can(self):
        cl = self.cluster(lambda m: peer_args(m.name))
        leader = cl.leader()
        self.assertOk(leader.etcdctl("put", "before-join", "1"))
        rogue, rogue_id = self.add_member(cl, leader, "n4", "rogue")
        rogue.start(wait=False)
        line = self.wait_log(cl.members, r"cannot connect to member %016x at 127\.0\.0\.1:%d: "
                                         r"TLS handshake failed: .*certificate verify failed"
                                         % (rogue_id, rogue.peer_port))
        print(line, flush=True)
        time.sleep(2.0)
        r = rogue.etcdctl("get", "before-join", "--consistency=s", "--print-value-only")
        self.assertEqual(r.out.strip(), "", r)
        self.assertOk(h.member_change(leader, ["member", "remove", "%x" % rogue_id]))
        rogue.terminate()
        # a member with a certificate from the CA joins over TLS and replicates
        good, _ = self.add_member(cl, leader, "n3b", "n3")
        good.start()
        deadline = time.monotonic() + 20
        while good.etcdctl("get", "before-join", "--consistency=s",
                           "--print-value-only").out.strip() != "1":
            self.assertLess(time.monotonic(), deadline, "the good member never caught up")
            time.sleep(0.2)

    def test_allowed_cn(self):
        cl, odd, good = self.outsider("n3", good=("shared1", "shared2"),
                                      extra=["--peer-cert-allowed-cn", "bollard-peer"])
        line = self.wait_log(good, r'rejected connection from "127\.0\.0\.1:\d+" \(error "TLS '
                                   r"handshake failed: certificate CommonName 'n3' is not the "
                                   r"allowed 'bollard-peer'")
        print(line, flush=True)
        self.wait_log(good, r"cannot connect to member [0-9a-f]+ at 127\.0\.0\.1:%d: TLS "
                            r"handshake failed: certificate CommonName 'n3'" % odd.peer_port)

    def test_allowed_hostname(self):
        cl, odd, good = self.outsider("ipsan", extra=["--peer-cert-allowed-hostname",
                                                      "localhost"])
        line = self.wait_log(good, r'rejected connection from "127\.0\.0\.1:\d+" \(error "TLS '
                                   r"handshake failed: certificate \(CN 'n3'\) is not valid for "
                                   r"the allowed hostname 'localhost'")
        print(line, flush=True)

    def test_certificate_for_another_ip_refused(self):
        cl, odd, good = self.outsider("wrongip")
        line = self.wait_log(good, r"cannot connect to member [0-9a-f]+ at 127\.0\.0\.1:%d:"
                                      r" .*IP address mismatch" % odd.peer_port)
        print(line, flush=True)

    def test_plaintext_member_refused(self):
        cl = self.cluster(lambda m: peer_args(m.name), start=False)
        plain = cl.members[2]
        plain.peer_scheme = "http"
        initial = ",".join("%s=%s" % (m.name, m.peer_url) for m in cl.members)
        plain.extra_args = ["--initial-cluster", initial,
                            "--initial-cluster-token", "bollard-cluster"] + TIMINGS
        for m in cl.members:
            m.start(wait=False)
        good = self.serves_without(cl, plain)
        line = self.wait_log(good, r'rejected connection from "127\.0\.0\.1:\d+" '
                                      r'\(error "TLS handshake failed: [^"]+"\)')
        print(line, flush=True)


class PeerTLSReferenceEtcd(PeerTLSBase):
    def test_reference_etcd(self):
        """The same certificates and flags with Debian's etcd 3.4: the cluster forms with
        the good members, and etcd too logs the rogue member's refusal as `rejected
        connection from "ip:port" (error "...")`."""
        cl = self.cluster(lambda m: peer_args("rogue" if m.name == "n3" else m.name),
                          start=False, impl="etcd")
        for m in cl.members:
            m.start(wait=False)
        good = cl.members[:2]
        for m in good:
            m.wait_ready(30)
        self.assertOk(good[1].etcdctl("put", "k", "v"))
        self.assertEqual(self.get(good[0], "k"), "v")
        line = self.wait_log(good, r'rejected connection from "127\.0\.0\.1:\d+" '
                                   r'\(error "[^"]+"')
        print(line, flush=True)


class PeerAutoTLS(PeerTLSBase):
    def test_auto_tls_cluster_forms(self):
        cl = self.cluster(lambda m: ["--peer-auto-tls"])
        leader = cl.leader()
        follower = [m for m in cl.members if m is not leader][0]
        self.assertOk(follower.etcdctl("put", "auto", "tls"))
        for m in cl.members:
            self.assertEqual(self.get(m, "auto"), "tls", m.name)
            cert = os.path.join(m.data_dir, "fixtures", "peer", "cert.pem")
            self.assertTrue(os.path.exists(cert), cert)
            self.assertTrue(os.path.exists(os.path.join(m.data_dir, "fixtures", "peer",
                                                        "key.pem")))
        # a restart keeps the pair
        before = open(cert).read()
        cl.members[2].terminate()
        cl.members[2].start()
        self.assertEqual(open(cert).read(), before)
        self.assertEqual(self.get(cl.members[2], "auto"), "tls")


class PeerTLSShutdown(PeerTLSBase):
    def test_stop_with_handshakes_in_progress(self):
        """Members stopped with an incoming handshake half done, a TLS connection that
        never sends raft's preamble, and an outgoing handshake to a peer that never answers
        exit cleanly; the ASan build's leak check runs at their exit (tearDown reads it)."""
        cl = self.cluster(lambda m: peer_args(m.name), start=False)
        silent = socket.socket()
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind(("127.0.0.1", cl.members[2].peer_port))   # n3's port: accepts, never speaks
        silent.listen(16)
        held = []
        try:
            for m in cl.members[:2]:
                m.start(wait=False)
            for m in cl.members[:2]:
                m.wait_ready(30)
            self.assertOk(cl.members[0].etcdctl("put", "x", "y"))
            for m in cl.members[:2]:
                half = socket.create_connection(("127.0.0.1", m.peer_port), timeout=5)
                half.sendall(b"\x16\x03\x01\x02\x00\x01")   # the start of a ClientHello
                held.append(half)
                ctx = ssl.create_default_context(cafile=c("ca.pem"))
                ctx.load_cert_chain(c("n1.pem"), c("n1.key"))
                raw = socket.create_connection(("127.0.0.1", m.peer_port), timeout=5)
                t = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                t.sendall(b"\x01\x00\x00")   # 3 bytes of a 24-byte preamble
                held.append(t)
            silent.settimeout(10)
            held.append(silent.accept()[0])   # a member's outgoing handshake, unanswered
            time.sleep(0.5)
            for m in cl.members[:2]:
                rc = m.terminate()
                self.assertIn(rc, m.clean_exit_codes(), m.log_tail())
                self.assertIsNone(m.sanitizer_report(), m.name)
        finally:
            for s in held:
                s.close()
            silent.close()


class PeerTLSMisconfiguration(PeerTLSBase):
    def bad_start(self, extra):
        return self.start_fails(extra, peer_scheme="https")

    def test_misconfigurations_stop_the_member(self):
        out = self.bad_start([])
        self.assertRegex(out, r"cannot listen on TLS for 127\.0\.0\.1:\d+: KeyFile and "
                              r"CertFile are not presented")
        out = self.bad_start(["--peer-cert-file", c("missing.pem"), "--peer-key-file",
                              c("n1.key")])
        self.assertIn("--peer-cert-file %s: No such file or directory" % c("missing.pem"), out)
        out = self.bad_start(["--peer-cert-file", c("n1.pem"), "--peer-key-file",
                              c("other.key")])
        self.assertIn("--peer-key-file %s does not match the certificate in --peer-cert-file %s"
                      % (c("other.key"), c("n1.pem")), out)
        out = self.bad_start(["--peer-cert-file", c("n1.pem"), "--peer-key-file", c("n1.key"),
                              "--peer-client-cert-auth"])
        self.assertIn("--peer-client-cert-auth needs --peer-trusted-ca-file", out)
        out = self.bad_start(["--peer-cert-file", c("n1.pem"), "--peer-key-file", c("n1.key"),
                              "--peer-trusted-ca-file", c("n1.key")])
        self.assertIn("--peer-trusted-ca-file %s: not a PEM certificate" % c("n1.key"), out)
        out = self.bad_start(peer_args("n1") + ["--peer-cert-allowed-cn", "a",
                                                "--peer-cert-allowed-hostname", "b"])
        self.assertIn("AllowedCN and AllowedHostname are mutually exclusive (cn=a, hostname=b)",
                      out)
        out = self.bad_start(["--peer-cert-file", c("n1.pem")])
        self.assertIn("--peer-cert-file and --peer-key-file must both be given", out)


if __name__ == "__main__":
    h.main()
