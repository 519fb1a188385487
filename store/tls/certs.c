/* certs.c - etcd's TLS certificate flags: read and check the files, build
 * OpenSSL contexts, generate the --auto-tls pair (see certs.h). */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/certs.h"

void tls_ssl_reason(char *buf, size_t len, const char *dflt)
{
	unsigned long e = ERR_peek_last_error();
	if (e)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "%s", dflt);
	ERR_clear_error();
}

void tls_ssl_peer_cn(SSL *ssl, char *buf, size_t len)
{
	X509 *x = ssl ? SSL_get1_peer_certificate(ssl) : NULL;

	buf[0] = '\0';
	if (x) {
		if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf,
		                              (int)len) < 0)
			buf[0] = '\0';
		X509_free(x);
	}
}

char *tls_read_file(const char *what, const char *path, char *errbuf, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int err;

	if (!f) {
		err = errno;
		snprintf(errbuf, errlen, "%s %s: %s", what, path, strerror(err));
		errno = err;
		return NULL;
	}
	for (;;) {
		if (cap - n < 4096) {
			char *nb = realloc(buf, cap ? cap * 2 : 8192);
			if (!nb) {
				free(buf);
				fclose(f);
				snprintf(errbuf, errlen, "out of memory");
				errno = ENOMEM;
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
		err = errno ? errno : EIO;
		snprintf(errbuf, errlen, "%s %s: %s", what, path, strerror(err));
		free(buf);
		fclose(f);
		errno = err;
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* A flag's file: errors name the flag as etcd does ("--peer-cert-file <path>: ..."). */
static char *read_flag_file(const char *prefix, const char *what, const char *path,
                            char *errbuf, size_t errlen)
{
	char flag[64];

	snprintf(flag, sizeof(flag), "--%s%s", prefix, what);
	return tls_read_file(flag, path, errbuf, errlen);
}

void tls_pem_free(struct tls_pem *p)
{
	if (!p)
		return;
	free(p->cert_pem);
	free(p->key_pem);
	free(p->ca_pem);
	memset(p, 0, sizeof(*p));
}

static bool empty(const char *s)
{
	return !s || !*s;
}

int tls_pem_load(struct tls_pem *out, const char *prefix, const char *cert_file,
                 const char *key_file, const char *ca_file, char *errbuf, size_t errlen)
{
	BIO *bio = NULL;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	char why[256];
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (empty(cert_file) && empty(key_file))
		return 0; /* no TLS */
	if (empty(cert_file) || empty(key_file)) {
		snprintf(errbuf, errlen, "--%scert-file and --%skey-file must both be given", prefix,
		         prefix);
		return -1;
	}
	if (!(out->cert_pem = read_flag_file(prefix, "cert-file", cert_file, errbuf, errlen)) ||
	    !(out->key_pem = read_flag_file(prefix, "key-file", key_file, errbuf, errlen)))
		goto out;
	if (!empty(ca_file) &&
	    !(out->ca_pem = read_flag_file(prefix, "trusted-ca-file", ca_file, errbuf, errlen)))
		goto out;

	bio = BIO_new_mem_buf(out->cert_pem, -1);
	if (!bio || !(cert = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		tls_ssl_reason(why, sizeof(why), "no PEM data");
		snprintf(errbuf, errlen, "--%scert-file %s: not a PEM certificate (%s)", prefix,
		         cert_file, why);
		goto out;
	}
	BIO_free(bio);
	bio = BIO_new_mem_buf(out->key_pem, -1);
	if (!bio || !(key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL))) {
		tls_ssl_reason(why, sizeof(why), "no PEM data");
		snprintf(errbuf, errlen, "--%skey-file %s: not an unencrypted PEM private key (%s)",
		         prefix, key_file, why);
		goto out;
	}
	if (X509_check_private_key(cert, key) != 1) {
		ERR_clear_error();
		snprintf(errbuf, errlen,
		         "--%skey-file %s does not match the certificate in --%scert-file %s", prefix,
		         key_file, prefix, cert_file);
		goto out;
	}
	if (out->ca_pem) {
		X509 *ca;
		BIO_free(bio);
		bio = BIO_new_mem_buf(out->ca_pem, -1);
		if (!bio || !(ca = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
			tls_ssl_reason(why, sizeof(why), "no PEM data");
			snprintf(errbuf, errlen, "--%strusted-ca-file %s: not a PEM certificate (%s)",
			         prefix, ca_file, why);
			goto out;
		}
		X509_free(ca);
	}
	rc = 0;
out:
	BIO_free(bio);
	X509_free(cert);
	EVP_PKEY_free(key);
	if (rc != 0)
		tls_pem_free(out);
	return rc;
}

size_t tls_first_https(const char *urls, const char **url)
{
	const char *p = urls ? urls : "";

	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		while (len && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		if (len >= 8 && strncmp(p, "https://", 8) == 0) {
			*url = p;
			return len;
		}
		if (!end)
			break;
		p = end + 1;
	}
	return 0;
}

/* ------------------------------------------------------------ contexts */

SSL_CTX *tls_ctx_new(const struct tls_pem *p, bool server, char *errbuf, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	BIO *bio = NULL;
	X509 *x = NULL;
	EVP_PKEY *key = NULL;
	char why[256];

	if (!ctx)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* the certificate, then its chain */
	if (!(bio = BIO_new_mem_buf(p->cert_pem, -1)) ||
	    !(x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) || SSL_CTX_use_certificate(ctx, x) != 1)
		goto fail;
	X509_free(x);
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (SSL_CTX_add0_chain_cert(ctx, x) != 1)
			goto fail;
		x = NULL;
	}
	ERR_clear_error(); /* the end of the PEM data */
	BIO_free(bio);
	if (!(bio = BIO_new_mem_buf(p->key_pem, -1)) ||
	    !(key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) ||
	    SSL_CTX_use_PrivateKey(ctx, key) != 1)
		goto fail;
	EVP_PKEY_free(key);
	key = NULL;
	BIO_free(bio);
	bio = NULL;
	if (p->ca_pem) {
		X509_STORE *st = SSL_CTX_get_cert_store(ctx);
		int n = 0;
		if (!(bio = BIO_new_mem_buf(p->ca_pem, -1)))
			goto fail;
		while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
			if (X509_STORE_add_cert(st, x) != 1)
				goto fail;
			X509_free(x);
			x = NULL;
			n++;
		}
		ERR_clear_error();
		if (n == 0)
			goto fail;
		if (server) {
			/* the CAs a client certificate may come from */
			STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
			BIO_free(bio);
			if (!names || !(bio = BIO_new_mem_buf(p->ca_pem, -1)))
				goto fail;
			while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
				X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(x));
				if (nm)
					sk_X509_NAME_push(names, nm);
				X509_free(x);
				x = NULL;
			}
			ERR_clear_error();
			SSL_CTX_set_client_CA_list(ctx, names);
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		goto fail;
	}
	BIO_free(bio);
	return ctx;
fail:
	tls_ssl_reason(why, sizeof(why), "no PEM data");
	snprintf(errbuf, errlen, "TLS context: %s", why);
	BIO_free(bio);
	X509_free(x);
	EVP_PKEY_free(key);
	SSL_CTX_free(ctx);
	return NULL;
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

/* Append "IP:x" or "DNS:x" for each host of urls to san. */
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

int tls_auto_cert(const char *flag, const char *dir, const char *urls, char **cert_file,
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
		snprintf(errbuf, errlen, "%s: cannot create %s: %s", flag, dir, strerror(-e));
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
	hosts_of_urls(urls, san, sizeof(san));
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
			snprintf(errbuf, errlen, "%s: cannot read /dev/urandom", flag);
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
		snprintf(errbuf, errlen, "%s: cannot write %s: %s", flag, kpath, strerror(errno));
		goto out;
	}
	if (!(f = fopen(cpath, "wx")) || !PEM_write_X509(f, x) || fclose(f) != 0) {
		f = NULL;
		snprintf(errbuf, errlen, "%s: cannot write %s: %s", flag, cpath, strerror(errno));
		goto out;
	}
	f = NULL;
	rc = 0;
	goto out;
ssl_fail:
	tls_ssl_reason(why, sizeof(why), "unknown error");
	snprintf(errbuf, errlen, "%s: cannot generate a certificate: %s", flag, why);
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
