/* grpc_creds.c - channel credentials from PEM files (see grpc_creds.h). */
#include "wire/grpc_creds.h"
#include "tls/certs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int grpc_wire_tls_creds(const char *ca_file, const char *cert_file, const char *key_file,
                        grpc_channel_credentials **out, char *errbuf, size_t errlen)
{
	char *ca = NULL, *cert = NULL, *key = NULL;
	grpc_ssl_pem_key_cert_pair pair;
	int rc = 0;

	*out = NULL;
	if (!cert_file != !key_file) {
		snprintf(errbuf, errlen, "a client certificate needs its key and the reverse");
		return -EINVAL;
	}
	if ((ca_file && !(ca = tls_read_file("CA file", ca_file, errbuf, errlen))) ||
	    (cert_file && !(cert = tls_read_file("certificate", cert_file, errbuf, errlen))) ||
	    (key_file && !(key = tls_read_file("key", key_file, errbuf, errlen)))) {
		rc = -errno;
		goto out;
	}
	/* gRPC checks the PEM only when it connects: catch a wrong file now. */
	if ((ca && !strstr(ca, "-----BEGIN CERTIFICATE-----")) ||
	    (cert && !strstr(cert, "-----BEGIN CERTIFICATE-----")) ||
	    (key && !strstr(key, "PRIVATE KEY-----"))) {
		snprintf(errbuf, errlen, "%s is not PEM",
		         ca && !strstr(ca, "-----BEGIN CERTIFICATE-----") ? ca_file
		         : cert && !strstr(cert, "-----BEGIN CERTIFICATE-----") ? cert_file
		                                                                  : key_file);
		rc = -EINVAL;
		goto out;
	}
	pair.private_key = key;
	pair.cert_chain = cert;
	*out = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
	if (!*out) {
		snprintf(errbuf, errlen, "grpc_ssl_credentials_create failed");
		rc = -EINVAL;
	}
out:
	free(ca);
	free(cert);
	free(key);
	return rc;
}
