/* tls.c - client TLS for the gRPC server: etcd's --cert-file, --key-file,
 * --trusted-ca-file and --client-cert-auth as gRPC server credentials, and
 * the client CommonName of a call. The files are read and checked by
 * tls/certs.c (shared with peer TLS), at start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "server/server_int.h"
#include "tls/certs.h"

void srv_tls_free(struct srv_tls *t)
{
	if (!t)
		return;
	tls_pem_free(&t->pem);
	free(t);
}

int srv_tls_load(struct srv_tls **out, const struct etcd_tls_config *cfg, char *errbuf,
                 size_t errlen)
{
	struct srv_tls *t;

	*out = NULL;
	if (!cfg || ((!cfg->cert_file || !*cfg->cert_file) && (!cfg->key_file || !*cfg->key_file)))
		return 0; /* no TLS */
	if (cfg->client_cert_auth && (!cfg->trusted_ca_file || !*cfg->trusted_ca_file) &&
	    cfg->cert_file && *cfg->cert_file && cfg->key_file && *cfg->key_file) {
		snprintf(errbuf, errlen,
		         "--client-cert-auth needs --trusted-ca-file (the CA that signs client "
		         "certificates)");
		return -1;
	}
	if (!(t = calloc(1, sizeof(*t)))) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	t->client_cert_auth = cfg->client_cert_auth;
	t->log_client_cn = cfg->log_client_cn;
	if (tls_pem_load(&t->pem, "", cfg->cert_file, cfg->key_file, cfg->trusted_ca_file, errbuf,
	                 errlen) != 0) {
		free(t);
		return -1;
	}
	*out = t;
	return 0;
}

grpc_server_credentials *srv_tls_credentials(const struct srv_tls *t)
{
	grpc_ssl_pem_key_cert_pair pair = {t->pem.key_pem, t->pem.cert_pem};
	return grpc_ssl_server_credentials_create_ex(
		t->pem.ca_pem, &pair, 1,
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
	const char *u;
	size_t len;

	if (srv_tls_load(&t, tls, errbuf, errlen) != 0)
		return -1;
	if (t) {
		srv_tls_free(t);
		return 0;
	}
	if ((len = tls_first_https(listen_client_urls, &u)) != 0) {
		snprintf(errbuf, errlen,
		         "TLS key/cert (--cert-file, --key-file) must be provided for client url "
		         "%.*s with HTTPS scheme", (int)len, u);
		return -1;
	}
	return 0;
}

int etcd_tls_auto_cert(const char *dir, const char *listen_client_urls, char **cert_file,
                       char **key_file, char *errbuf, size_t errlen)
{
	return tls_auto_cert("--auto-tls", dir, listen_client_urls, cert_file, key_file, errbuf,
	                     errlen);
}
