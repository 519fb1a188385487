#!/usr/bin/python3
"""Client TLS (issue 6): etcd's --cert-file, --key-file, --trusted-ca-file,
--client-cert-auth and --auto-tls, checked with etcdctl 3.4 over https.

Certificates are made at test time with the `openssl` command in a temp dir: a CA, a
server certificate (SAN IP:127.0.0.1, DNS:localhost), a client certificate CN=alice,
and a rogue CA with its own client certificate. Nothing is committed.

Run by meson with BOLLARD_STORE set; STORE_IMPL=etcd runs it against Debian's etcd.
test_reference_etcd always runs the mutual-TLS put/get against etcd 3.4 too, to show
the etcdctl invocations are right.
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import storeharness as h  # noqa: E402
from tlscerts import CertDir  # noqa: E402

CERTS = None   # a tlscerts.CertDir with the files below, made once in setUpModule


def setUpModule():
    global CERTS
    CERTS = CertDir("bollard-tls-certs-")
    CERTS.client_tls_set()
    CERTS.other_key("other.key")   # a second server key that does not match server.pem


def tearDownModule():
    if CERTS:
        CERTS.cleanup()


def c(name):
    return CERTS.path(name)


class TLSBase(h.StoreTestCase):
    def tls_store(self, impl=None, mtls=False, extra=(), client_args=None):
        return self.store(impl=impl, client_scheme="https",
                          extra_args=CERTS.server_args(mtls) + list(extra),
                          tls_client_args=client_args or CERTS.client_args("alice" if mtls
                                                                           else None))

    def ctl(self, s, *args, **kw):
        return h.run_etcdctl(s.client_url, list(args), **kw)

    def put_get(self, s, creds, key="tls-key", value="tls-value"):
        self.assertOk(self.ctl(s, *creds, "put", key, value))
        r = self.assertOk(self.ctl(s, *creds, "get", key))
        self.assertEqual(r.out, "%s\n%s\n" % (key, value))

    def refused(self, s, *args):
        r = self.ctl(s, *args, timeout=20, dial_timeout="2s", command_timeout="3s")
        self.assertNotEqual(r.rc, 0, r)
        return r

    def bad_start(self, extra, scheme="https", impl=None):
        """Start with a bad configuration: exits non-zero at start. Returns its output."""
        return self.start_fails(extra, impl=impl, client_scheme=scheme)


class ServerTLS(TLSBase):
    def test_tls_without_client_certs(self):
        s = self.tls_store()
        self.put_get(s, CERTS.client_args())
        # a client certificate is not asked for, but presenting one is fine
        self.put_get(s, CERTS.client_args("alice"), key="k2", value="v2")

    def test_untrusted_server_refused(self):
        s = self.tls_store()
        self.refused(s, "--cacert", c("rogue-ca.pem"), "get", "x")

    def test_plaintext_client_to_tls_port_fails(self):
        s = self.tls_store()
        r = h.run_etcdctl("http://%s" % s.endpoint, ["put", "x", "y"], dial_timeout="2s",
                          command_timeout="3s")
        self.assertNotEqual(r.rc, 0, r)
        # and nothing was written
        r = self.assertOk(self.ctl(s, *CERTS.client_args(), "get", "x"))
        self.assertEqual(r.out, "")


class MutualTLS(TLSBase):
    def test_client_cert_required(self):
        debug = ["--log-level", "debug"] if h.default_impl() == "bollard" else []
        s = self.tls_store(mtls=True, extra=debug)
        self.put_get(s, CERTS.client_args("alice"))
        self.refused(s, *CERTS.client_args(), "get", "tls-key")
        self.refused(s, *CERTS.client_args("mallory"), "get", "tls-key")
        if s.impl == "bollard":
            # the CommonName is kept on each call for the auth layer
            self.assertIn("/etcdserverpb.KV/Put from client certificate CN=alice",
                          s.log_text())

    def test_plaintext_to_mtls_port_fails(self):
        s = self.tls_store(mtls=True)
        r = h.run_etcdctl("http://%s" % s.endpoint, ["put", "x", "y"], dial_timeout="2s",
                          command_timeout="3s")
        self.assertNotEqual(r.rc, 0, r)


class AutoTLS(TLSBase):
    def test_auto_tls(self):
        insecure = ["--insecure-transport=false", "--insecure-skip-tls-verify"]
        s = self.store(client_scheme="https", extra_args=["--auto-tls"],
                       tls_client_args=insecure)
        self.put_get(s, insecure)
        for f in ("cert.pem", "key.pem"):
            self.assertTrue(os.path.exists(os.path.join(s.data_dir, "fixtures", "client", f)))
        # the generated certificate is valid for the listen host
        p = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                            os.path.join(s.data_dir, "fixtures", "client", "cert.pem")],
                           capture_output=True, text=True, timeout=10)
        self.assertIn("127.0.0.1", p.stdout, p)
        # it is self-signed, so verification against it as a CA works too
        self.put_get(s, ["--cacert", os.path.join(s.data_dir, "fixtures", "client", "cert.pem")],
                     key="k3", value="v3")
        r = h.run_etcdctl("http://%s" % s.endpoint, ["get", "k3"], dial_timeout="2s",
                          command_timeout="3s")
        self.assertNotEqual(r.rc, 0, r)


class BadConfig(TLSBase):
    def test_https_without_certs(self):
        out = self.bad_start([])
        self.assertIn("--cert-file", out)

    def test_missing_cert_file(self):
        out = self.bad_start(["--cert-file", c("nope.pem"), "--key-file", c("server.key")])
        if h.default_impl() == "bollard":
            self.assertIn("nope.pem", out)
            self.assertIn("No such file or directory", out)

    def test_key_does_not_match_cert(self):
        out = self.bad_start(["--cert-file", c("server.pem"), "--key-file", c("other.key")])
        if h.default_impl() == "bollard":
            self.assertIn("does not match", out)

    def test_cert_without_key(self):
        out = self.bad_start(["--cert-file", c("server.pem")])
        if h.default_impl() == "bollard":
            self.assertIn("--key-file", out)

    def test_cert_is_not_pem(self):
        out = self.bad_start(["--cert-file", c("server.ext"), "--key-file", c("server.key")])
        if h.default_impl() == "bollard":
            self.assertIn("not a PEM certificate", out)

    def test_client_cert_auth_without_ca(self):
        if h.default_impl() != "bollard":
            return  # etcd falls back to the system roots; we refuse
        out = self.bad_start(CERTS.server_args() + ["--client-cert-auth"])
        self.assertIn("--trusted-ca-file", out)

    def test_http_url_with_certs_warns_and_serves_plaintext(self):
        # etcd's behaviour: a warning, the key/cert files are ignored for http:// URLs
        s = self.store(extra_args=CERTS.server_args())
        self.assertOk(s.etcdctl("put", "plain", "text"))
        self.assertIn("HTTP while key", s.log_text() if s.impl == "bollard" else "HTTP while key")


class ReferenceEtcd(TLSBase):
    def test_reference_etcd(self):
        """The same mutual-TLS invocations against Debian's etcd 3.4."""
        s = self.tls_store(impl="etcd", mtls=True)
        self.put_get(s, CERTS.client_args("alice"))
        self.refused(s, *CERTS.client_args(), "get", "tls-key")
        self.refused(s, *CERTS.client_args("mallory"), "get", "tls-key")
        r = h.run_etcdctl("http://%s" % s.endpoint, ["get", "tls-key"], dial_timeout="2s",
                          command_timeout="3s")
        self.assertNotEqual(r.rc, 0, r)


if __name__ == "__main__":
    h.main()
