/* grpc_creds.h - client-side channel credentials for the gRPC C core: plain
 * text, or TLS from PEM files (a CA to verify the server, an optional client
 * certificate and key). Shared by every gRPC client of this repository. */
#ifndef BOLLARD_GRPC_CREDS_H
#define BOLLARD_GRPC_CREDS_H

#include <stddef.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

/* TLS channel credentials: ca_file NULL verifies the server against gRPC's
 * default roots; cert_file and key_file go together (mutual TLS) or are
 * both NULL. Returns 0 and *out (release with
 * grpc_channel_credentials_release), or -errno (file), -EINVAL (a cert
 * without its key or the reverse, or not PEM) with errbuf set. */
int grpc_wire_tls_creds(const char *ca_file, const char *cert_file, const char *key_file,
                        grpc_channel_credentials **out, char *errbuf, size_t errlen);

#endif
