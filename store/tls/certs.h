/* certs.h - TLS certificate files as etcd's flags name them, for both the
 * client port (--cert-file, --key-file, --trusted-ca-file) and the peer port
 * (the same with "peer-"): read and check them at start, make OpenSSL
 * contexts from them, and generate --auto-tls / --peer-auto-tls's
 * self-signed pair. A misconfiguration is an error at start, with the flag's
 * name in the message, never a failed handshake later. */
#ifndef BOLLARD_TLS_CERTS_H
#define BOLLARD_TLS_CERTS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

/* The PEM text of a configuration (malloc'ed, NUL-terminated). */
struct tls_pem {
	char *cert_pem; /* certificate, maybe followed by its chain */
	char *key_pem;  /* unencrypted private key */
	char *ca_pem;   /* trusted CA certificates, NULL if not given */
};

/* Read and check cert_file, key_file and (if non-empty) ca_file: readable,
 * PEM, the key matches the certificate. prefix names the flags in messages:
 * "" gives "--cert-file", "peer-" gives "--peer-cert-file". Both files empty
 * or NULL: no TLS, 0 with out zeroed. 0 or -1 with errbuf set. */
/* The whole file as a NUL-terminated malloc'ed string, or NULL with errbuf
 * set to "<what> <path>: <reason>" and errno kept. */
char *tls_read_file(const char *what, const char *path, char *errbuf, size_t errlen);

int tls_pem_load(struct tls_pem *out, const char *prefix, const char *cert_file,
                 const char *key_file, const char *ca_file, char *errbuf, size_t errlen);
void tls_pem_free(struct tls_pem *p);

/* The first https:// URL of a comma-separated list: its length, with *url
 * pointing at it; 0 if there is none. */
size_t tls_first_https(const char *urls, const char **url);

/* Make (or keep, if both exist: as etcd) dir/cert.pem and dir/key.pem, a
 * self-signed ECDSA P-256 certificate valid one year for the hosts of urls
 * (IP or DNS SANs; localhost and 127.0.0.1 when there are none). flag names
 * the option in messages ("--auto-tls"). Sets malloc'ed paths; 0 or -1
 * with errbuf set. */
int tls_auto_cert(const char *flag, const char *dir, const char *urls, char **cert_file,
                  char **key_file, char *errbuf, size_t errlen);

/* An OpenSSL context (TLS 1.2 or later) holding p's certificate chain and
 * key; with p->ca_pem, those CAs are its trust store (else the system's).
 * server: for accepting. Verification is the caller's choice
 * (SSL_CTX_set_verify). NULL with errbuf set. */
SSL_CTX *tls_ctx_new(const struct tls_pem *p, bool server, char *errbuf, size_t errlen);

/* The CommonName of the peer's certificate of an established connection,
 * or "" if it sent none. */
void tls_ssl_peer_cn(SSL *ssl, char *buf, size_t len);

/* The reason of the last OpenSSL error (cleared), or dflt if none. */
void tls_ssl_reason(char *buf, size_t len, const char *dflt);

#endif
