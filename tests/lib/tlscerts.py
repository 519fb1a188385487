"""Test certificates made at test time with the `openssl` command (nothing is committed):
CAs and certificates signed by them, for the client TLS and peer TLS tests."""

import os
import shutil
import subprocess
import tempfile


def openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True,
                       timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), p.stderr))


def make_ca(d, name):
    """d/name.pem and d/name.key: a self-signed ECDSA P-256 CA, CN=name."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".pem", "-days", "2",
            "-subj", "/CN=%s" % name,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_cert(d, name, ca, cn, ext):
    """d/name.pem and d/name.key signed by CA d/ca.pem; ext: openssl extension lines."""
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=%s" % cn, cwd=d)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext",
            cwd=d)


# A member's peer certificate: it serves and dials (etcd's peer certificates carry both).
PEER_EXT = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
# The client port's certificate (etcd's server certificates serve and dial too).
SERVER_EXT = PEER_EXT
# A client's certificate.
CLIENT_EXT = "extendedKeyUsage=clientAuth\n"


class CertDir:
    """A temp dir for one test module's certificates; path(name) names a file in it;
    cleanup() removes it unless $KEEP_TEST_DIRS is set."""

    def __init__(self, prefix):
        self.dir = tempfile.mkdtemp(prefix=prefix)

    def path(self, name):
        return os.path.join(self.dir, name)

    def ca(self, name):
        make_ca(self.dir, name)

    def cert(self, name, ca, cn, ext):
        make_cert(self.dir, name, ca, cn, ext)

    def client_tls_set(self, clients=("alice",)):
        """The client-TLS tests' files: CA "ca"; "server" (CN bollard-server, SAN
        127.0.0.1 and localhost); a certificate per name in clients (CN the name); and
        "mallory" (CN alice) signed by another CA, "rogue-ca"."""
        self.ca("ca")
        self.cert("server", "ca", "bollard-server", SERVER_EXT)
        for name in clients:
            self.cert(name, "ca", name, CLIENT_EXT)
        self.ca("rogue-ca")
        self.cert("mallory", "rogue-ca", "alice", CLIENT_EXT)

    def server_args(self, mtls=False):
        """A store's flags for client_tls_set's server certificate; mtls: clients must
        present a certificate signed by "ca"."""
        a = ["--cert-file", self.path("server.pem"), "--key-file", self.path("server.key")]
        if mtls:
            a += ["--trusted-ca-file", self.path("ca.pem"), "--client-cert-auth"]
        return a

    def client_args(self, who=None):
        """etcdctl's flags trusting "ca", with who's certificate and key if given."""
        a = ["--cacert", self.path("ca.pem")]
        if who:
            a += ["--cert", self.path(who + ".pem"), "--key", self.path(who + ".key")]
        return a

    def other_key(self, name):
        """A key that matches no certificate."""
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", name, cwd=self.dir)

    def cleanup(self):
        if not os.environ.get("KEEP_TEST_DIRS"):
            shutil.rmtree(self.dir, ignore_errors=True)
