/* server.h - the etcd v3 gRPC API (KV, Maintenance, Cluster, ...) served with
 * the gRPC C core in front of a node.
 *
 * One thread polls the completion queue, decodes requests and hands them to
 * the node (node_submit); replies are sent from the node's loop thread.
 * Every gRPC C-core call lives in store/server/ so a gRPC upgrade touches
 * only these files. */
#ifndef BOLLARD_SERVER_H
#define BOLLARD_SERVER_H

#include <stddef.h>

#include <uv.h>

struct node;
struct etcd_server;

/* Start serving on each address of listen_client_urls (etcd's comma-separated
 * form: "http://127.0.0.1:2379,http://10.0.0.1:2379"; "https://" needs TLS,
 * see etcd_server_start_tls; a port already in use is an error; NULL: no
 * client listener, only members' bollard.Internal calls handed over by the
 * node's peer port, as when the client URLs are served by h2srv.h).
 * loop is the node's loop (used to report shutdown): call this on the loop
 * thread, or before the loop runs. Returns 0 or a negative error with errbuf
 * set; nothing is left running on error. */
int etcd_server_start(struct etcd_server **out, uv_loop_t *loop, struct node *node,
                      const char *listen_client_urls, char *errbuf, size_t errlen);

/* Client TLS, etcd's flags. All NULL/false: no TLS (https:// refused). */
struct etcd_tls_config {
	const char *cert_file;       /* --cert-file: PEM certificate (chain) */
	const char *key_file;        /* --key-file: its unencrypted PEM key */
	const char *trusted_ca_file; /* --trusted-ca-file: CA for client certs */
	int client_cert_auth;        /* --client-cert-auth: require and verify */
	int log_client_cn;           /* log each call's client CN (--log-level debug) */
};

/* etcd_server_start with client TLS (tls may be NULL). The files are read
 * and checked here (readable, PEM, key matches certificate): a bad file is
 * an error at start. https:// URLs are served with TLS; http:// URLs stay
 * plain text with a warning, as etcd does. With client_cert_auth, each
 * call's client certificate CommonName is kept (struct srv_call.peer_cn). */
int etcd_server_start_tls(struct etcd_server **out, uv_loop_t *loop, struct node *node,
                          const char *listen_client_urls, const struct etcd_tls_config *tls,
                          char *errbuf, size_t errlen);

/* Check a TLS configuration against the listen URLs without serving:
 * the same errors etcd_server_start_tls would give. 0 or -1 with errbuf. */
int etcd_tls_check(const struct etcd_tls_config *tls, const char *listen_client_urls,
                   char *errbuf, size_t errlen);

/* --auto-tls: make (or keep, if both exist) dir/cert.pem and dir/key.pem, a
 * self-signed ECDSA P-256 certificate valid one year for the hosts of
 * listen_client_urls. Sets malloc'ed paths; 0 or -1 with errbuf set. */
int etcd_tls_auto_cert(const char *dir, const char *listen_client_urls, char **cert_file,
                       char **key_file, char *errbuf, size_t errlen);

/* Begin a graceful stop: refuse new calls, cancel open streams; cb runs on
 * the loop thread once no call is in flight any more (the loop must keep
 * running the node meanwhile, so queued requests complete). Call once, on
 * the loop thread. */
void etcd_server_shutdown(struct etcd_server *s, void (*cb)(struct etcd_server *s));

/* Join the polling thread and free everything. After the shutdown cb. */
void etcd_server_destroy(struct etcd_server *s);

/* --listen-metrics-urls (http.c): GET /metrics and /health of node on each
 * comma-separated http URL, served on a thread of its own. Returns 0, or an
 * error with a message in err (bad URL, port in use). Stop before closing
 * the node: etcd_http_stop joins the thread and frees everything. */
struct etcd_http;
int etcd_http_start(struct etcd_http **out, struct node *node, const char *urls, char *err,
                    size_t errlen);
/* The client URLs' HTTP/1.x (GET /health, /metrics, /version of node), on
 * a thread of its own with no listener: it serves the connections handed
 * over with etcd_http_adopt. Stopped as the other. */
int etcd_http_start_client(struct etcd_http **out, struct node *node, char *err, size_t errlen);
/* Serve the connected socket fd (ownership taken; closed if h is
 * stopping). Any thread. */
void etcd_http_adopt(struct etcd_http *h, int fd);
void etcd_http_stop(struct etcd_http *h);

#endif
