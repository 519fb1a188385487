/* tls.c - client TLS for the gRPC server: check the certificate files at
 * start (etcd's --cert-file, --key-file, --trusted-ca-file), build the gRPC
 * server credentials, and generate --auto-tls's self-signed certificate.
 * A misconfiguration is an error at start, never a failed handshake later. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <arpa/inet.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "server/server_int.h"

static void ssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	if (e)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "no PEM data");
	ERR_clear_error();
}

/* The whole file as a NUL-terminated string, or NULL with errbuf set. */
static char *read_file(const char *what, const char *path, char *errbuf, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;

	if (!f) {
		snprintf(errbuf, errlen, "%s %s: %s", what, path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (cap - n < 4096) {
			char *nb = realloc(buf, cap ? cap * 2 : 8192);
			if (!nb) {
				free(buf);
				fclose(f);
				snprintf(errbuf, errlen, "out of memory");
				return NULL;
			}
			buf = nb;
			cap = cap ? cap * 2 : 8192;
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(f)) {
		snprintf(errbuf, errlen, "%s %s: %s", what, path, strerror(errno));
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	return buf;
}

void srv_tls_free(struct srv_tls *t)
{
	if (!t)
		return;
	free(t->cert_pem);
	free(t->key_pem);
	free(t->ca_pem);
	free(t);
}

int srv_tls_load(struct srv_tls **out, const struct etcd_tls_config *cfg, char *errbuf,
                 size_t errlen)
{
	struct srv_tls *t;
	BIO *bio = NULL;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	char why[256];
	int rc = -1;

	*out = NULL;
	if (!cfg || ((!cfg->cert_file || !*cfg->cert_file) && (!cfg->key_file || !*cfg->key_file)))
		return 0; /* no TLS */
	if (!cfg->cert_file || !*cfg->cert_file || !cfg->key_file || !*cfg->key_file) {
		snprintf(errbuf, errlen, "--cert-file and --key-file must both be given");
		return -1;
	}
	if (cfg->client_cert_auth && (!cfg->trusted_ca_file || !*cfg->trusted_ca_file)) {
		snprintf(errbuf, errlen,
		         "--client-cert-auth needs --trusted-ca-file (the CA that signs client "
		         "certificates)");
		return -1;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	t->client_cert_auth = cfg->client_cert_auth;
	t->log_client_cn = cfg->log_client_cn;
	if (!(t->cert_pem = read_file("--cert-file", cfg->cert_file, errbuf, errlen)) ||
	    !(t->key_pem = read_file("--key-file", cfg->key_file, errbuf, errlen)))
		goto out;
	if (cfg->trusted_ca_file && *cfg->trusted_ca_file &&
	    !(t->ca_pem = read_file("--trusted-ca-file", cfg->trusted_ca_file, errbuf, errlen)))
		goto out;

	bio = BIO_new_mem_buf(t->cert_pem, -1);
	if (!bio || !(cert = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		ssl_reason(why, sizeof(why));
		snprintf(errbuf, errlen, "--cert-file %s: not a PEM certificate (%s)", cfg->cert_file,
		         why);
		goto out;
	}
	BIO_free(bio);
	bio = BIO_new_mem_buf(t->key_pem, -1);
	if (!bio || !(key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL))) {
		ssl_reason(why, sizeof(why));
		snprintf(errbuf, errlen, "--key-file %s: not an unencrypted PEM private key (%s)",
		         cfg->key_file, why);
		goto out;
	}
	if (X509_check_private_key(cert, key) != 1) {
		ERR_clear_error();
		snprintf(errbuf, errlen, "--key-file %s does not match the certificate in --cert-file %s",
		         cfg->key_file, cfg->cert_file);
		goto out;
	}
	if (t->ca_pem) {
		X509 *ca;
		BIO_free(bio);
		bio = BIO_new_mem_buf(t->ca_pem, -1);
		if (!bio || !(ca = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
			ssl_reason(why, sizeof(why));
			snprintf(errbuf, errlen, "--trusted-ca-file %s: not a PEM certificate (%s)",
			         cfg->trusted_ca_file, why);
			goto out;
		}
		X509_free(ca);
	}
	rc = 0;
out:
	BIO_free(bio);
	X509_free(cert);
	EVP_PKEY_free(key);
	if (rc == 0)
		*out = t;
	else
		srv_tls_free(t);
	return rc;
}

grpc_server_credentials *srv_tls_credentials(const struct srv_tls *t)
{
	grpc_ssl_pem_key_cert_pair pair = {t->key_pem, t->cert_pem};
	return grpc_ssl_server_credentials_create_ex(
		t->ca_pem, &pair, 1,
		t->client_cert_auth ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
		                    : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
		NULL);
}

char *srv_tls_peer_cn(grpc_call *call)
{
	grpc_auth_context *ctx = grpc_call_auth_context(call);
	grpc_auth_property_iterator it;
	const grpc_auth_property *p;
	char *cn = NULL;

	if (!ctx)
		return NULL;
	it = grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
	if ((p = grpc_auth_property_iterator_next(&it)) != NULL && p->value) {
		cn = malloc(p->value_length + 1);
		if (cn) {
			memcpy(cn, p->value, p->value_length);
			cn[p->value_length] = '\0';
		}
	}
	grpc_auth_context_release(ctx);
	return cn;
}

int etcd_tls_check(const struct etcd_tls_config *tls, const char *listen_client_urls,
                   char *errbuf, size_t errlen)
{
	struct srv_tls *t;
	const char *p = listen_client_urls ? listen_client_urls : "";

	if (srv_tls_load(&t, tls, errbuf, errlen) != 0)
		return -1;
	if (t) {
		srv_tls_free(t);
		return 0;
	}
	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		while (len && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		if (len >= 8 && strncmp(p, "https://", 8) == 0) {
			snprintf(errbuf, errlen,
			         "TLS key/cert (--cert-file, --key-file) must be provided for client url "
			         "%.*s with HTTPS scheme", (int)len, p);
			return -1;
		}
		if (!end)
			break;
		p = end + 1;
	}
	return 0;
}

/* ------------------------------------------------------------ --auto-tls */

static int mkdir_p(const char *path)
{
	char buf[4096];
	size_t n = strlen(path);
	if (n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] == '/' || buf[i] == '\0') {
			char c = buf[i];
			buf[i] = '\0';
			if (mkdir(buf, 0700) != 0 && errno != EEXIST)
				return -errno;
			buf[i] = c;
		}
	}
	return 0;
}

/* Append "IP:x" or "DNS:x" for each https host of urls to san. */
static void hosts_of_urls(const char *urls, char *san, size_t sanlen)
{
	const char *p = urls;
	size_t used = strlen(san);

	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *h = memchr(p, ':', len);
		char host[256];
		size_t hl = 0;

		if (h && len - (size_t)(h - p) > 3 && h[1] == '/' && h[2] == '/') {
			const char *s = h + 3, *e = p + len;
			if (*s == '[') {
				const char *c = memchr(s, ']', (size_t)(e - s));
				if (c) {
					s++;
					e = c;
				}
			} else {
				const char *c = memchr(s, ':', (size_t)(e - s));
				const char *sl = memchr(s, '/', (size_t)(e - s));
				if (sl && (!c || sl < c))
					c = sl;
				if (c)
					e = c;
			}
			hl = (size_t)(e - s);
			if (hl && hl < sizeof(host)) {
				unsigned char bin[16];
				memcpy(host, s, hl);
				host[hl] = '\0';
				int ip = inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1;
				int w = snprintf(san + used, sanlen - used, "%s%s:%s", used ? "," : "",
				                 ip ? "IP" : "DNS", host);
				if (w > 0 && (size_t)w < sanlen - used)
					used += (size_t)w;
				else
					san[used] = '\0';
			}
		}
		p = end ? end + 1 : NULL;
	}
}

int etcd_tls_auto_cert(const char *dir, const char *listen_client_urls, char **cert_file,
                       char **key_file, char *errbuf, size_t errlen)
{
	char *cpath = NULL, *kpath = NULL, san[2048] = "", why[256];
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	X509_EXTENSION *ext = NULL;
	X509V3_CTX v3;
	FILE *f = NULL;
	struct stat st;
	int rc = -1, e;

	*cert_file = *key_file = NULL;
	if ((e = mkdir_p(dir)) != 0) {
		snprintf(errbuf, errlen, "--auto-tls: cannot create %s: %s", dir, strerror(-e));
		return -1;
	}
	if (asprintf(&cpath, "%s/cert.pem", dir) < 0 || asprintf(&kpath, "%s/key.pem", dir) < 0) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	/* As etcd: keep a pair generated by an earlier start. */
	if (stat(cpath, &st) == 0 && stat(kpath, &st) == 0) {
		rc = 0;
		goto out;
	}
	hosts_of_urls(listen_client_urls, san, sizeof(san));
	if (!san[0])
		snprintf(san, sizeof(san), "DNS:localhost,IP:127.0.0.1");
	if (!(key = EVP_EC_gen("P-256")) || !(x = X509_new()))
		goto ssl_fail;
	X509_set_version(x, 2);
	{
		unsigned char serial[16];
		BIGNUM *bn;
		ASN1_INTEGER *ai;
		FILE *r = fopen("/dev/urandom", "rb");
		if (!r || fread(serial, 1, sizeof(serial), r) != sizeof(serial)) {
			if (r)
				fclose(r);
			snprintf(errbuf, errlen, "--auto-tls: cannot read /dev/urandom");
			goto out;
		}
		fclose(r);
		serial[0] &= 0x7f;
		bn = BN_bin2bn(serial, sizeof(serial), NULL);
		ai = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
		BN_free(bn);
		if (!ai)
			goto ssl_fail;
		X509_set_serialNumber(x, ai);
		ASN1_INTEGER_free(ai);
	}
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600); /* etcd: one year */
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "O", MBSTRING_ASC,
	                           (const unsigned char *)"etcd", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_set_pubkey(x, key);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	{
		const char *exts[][2] = {
			{"subjectAltName", san},
			{"keyUsage", "critical,digitalSignature,keyEncipherment,keyCertSign"},
			{"extendedKeyUsage", "serverAuth"},
			{"basicConstraints", "critical,CA:TRUE"},
		};
		for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
			if (!(ext = X509V3_EXT_conf(NULL, &v3, exts[i][0], exts[i][1])))
				goto ssl_fail;
			X509_add_ext(x, ext, -1);
			X509_EXTENSION_free(ext);
			ext = NULL;
		}
	}
	if (!X509_sign(x, key, EVP_sha256()))
		goto ssl_fail;
	{
		int fd = open(kpath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		f = fd >= 0 ? fdopen(fd, "w") : NULL;
		if (fd >= 0 && !f)
			close(fd);
	}
	if (!f || !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) ||
	    fclose(f) != 0) {
		f = NULL;
		snprintf(errbuf, errlen, "--auto-tls: cannot write %s: %s", kpath, strerror(errno));
		goto out;
	}
	if (!(f = fopen(cpath, "wx")) || !PEM_write_X509(f, x) || fclose(f) != 0) {
		f = NULL;
		snprintf(errbuf, errlen, "--auto-tls: cannot write %s: %s", cpath, strerror(errno));
		goto out;
	}
	f = NULL;
	rc = 0;
	goto out;
ssl_fail:
	ssl_reason(why, sizeof(why));
	snprintf(errbuf, errlen, "--auto-tls: cannot generate a certificate: %s", why);
out:
	if (f)
		fclose(f);
	X509_free(x);
	EVP_PKEY_free(key);
	if (rc == 0) {
		*cert_file = cpath;
		*key_file = kpath;
	} else {
		free(cpath);
		free(kpath);
	}
	return rc;
}
