"""The C client library over TLS (issue 6 item 1 for the library, issue 7): test-tls
(tests/client/tls.c) against a bollard-store serving https with --client-cert-auth, and
an embedded store serving TLS itself. Certificates are made at test time with openssl, as
tests/integration/test_tls.py makes them (its certificate set is reused).

    test_client_tls.py <test-tls binary>      ($BOLLARD_STORE: the store binary)
"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import storeharness as h  # noqa: E402
import test_tls as certs  # noqa: E402

PROG = os.path.abspath(sys.argv.pop(1)) if len(sys.argv) > 1 else None


def setUpModule():
    certs.setUpModule()


def tearDownModule():
    certs.tearDownModule()


class ClientTLS(h.StoreTestCase):
    def test_client_library_tls(self):
        s = self.store(client_scheme="https", extra_args=certs.CERTS.server_args(mtls=True),
                       tls_client_args=certs.CERTS.client_args("alice"))
        emb_dir = tempfile.mkdtemp(prefix="bollard-tls-emb-")
        p = subprocess.run([PROG, "--endpoint", s.endpoint, "--certs", certs.CERTS.dir,
                            "--data-dir", os.path.join(emb_dir, "data")],
                           capture_output=True, text=True, timeout=240, env=h.clean_env())
        sys.stdout.write(p.stdout)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("4 passed, 0 failed", p.stdout)
        subprocess.run(["rm", "-rf", emb_dir])


if __name__ == "__main__":
    h.main()
