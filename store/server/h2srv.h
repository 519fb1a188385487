/* h2srv.h - etcd's gRPC services (KV, Maintenance, Cluster, Auth, Lease,
 * Watch; streams included) served over our own HTTP/2 (libnghttp2) instead
 * of the gRPC C core, on a listener and a thread of their own: the client
 * URLs by default (--experimental-client-transport=h2), and the extra URLs
 * of --experimental-listen-h2-url. TLS: h2tls.h. */
#ifndef BOLLARD_SERVER_H2SRV_H
#define BOLLARD_SERVER_H2SRV_H

#include <stddef.h>

struct node;
struct etcd_h2;
struct etcd_tls_config;
struct etcd_http;
struct h2_conn;

/* Serve on urls (etcd's comma-separated form: http://host:port,
 * https://host:port, [v6] hosts, unix://path) with a thread of its own.
 * https:// needs tls (server.h: the client TLS flags, as the gRPC port
 * takes them; NULL: none). A plain-text connection that does not start
 * with the HTTP/2 preface is handed to http1 (server.h etcd_http_adopt;
 * NULL: closed). flag: the flag the URLs came from, prefixing
 * start errors ("--experimental-listen-h2-url: "); NULL for the client URLs
 * (the gRPC port's texts, etcd's). 0, or -1 with err set (nothing left
 * running). */
int etcd_h2_start(struct etcd_h2 **out, struct node *node, const char *urls,
                  const struct etcd_tls_config *tls, struct etcd_http *http1, const char *flag,
                  char *err, size_t errlen);

/* With --client-cert-auth, the CommonName of the connection's client
 * certificate (the auth user, as the gRPC port's srv_call.peer_cn), else
 * NULL. Valid while the connection is; the h2 thread only. */
const char *etcd_h2_conn_peer_cn(const struct h2_conn *conn);

/* A graceful stop (SIGTERM): close the listeners, send GOAWAY on every
 * connection, answer the calls already taken (the node must keep running),
 * then close each connection; after at most 10 s the rest are closed. cb
 * runs once, on the h2 thread, when no connection is left (only
 * thread-safe work there: uv_async_send). Once; etcd_h2_stop after. */
void etcd_h2_shutdown(struct etcd_h2 *h, void (*cb)(void *arg), void *arg);

/* Stop the thread, close every connection and free everything. Call it
 * after the node's loop ended (every request it was handed has been
 * answered) and before node_destroy. NULL: nothing. */
void etcd_h2_stop(struct etcd_h2 *h);

#endif
