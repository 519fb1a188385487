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
 * form: "http://127.0.0.1:2379,http://10.0.0.1:2379"; "https://" is refused
 * for now with "TLS not supported yet"; a port already in use is an error).
 * loop is the node's loop (used to report shutdown): call this on the loop
 * thread, or before the loop runs. Returns 0 or a negative error with errbuf
 * set; nothing is left running on error. */
int etcd_server_start(struct etcd_server **out, uv_loop_t *loop, struct node *node,
                      const char *listen_client_urls, char *errbuf, size_t errlen);

/* Begin a graceful stop: refuse new calls, cancel open streams; cb runs on
 * the loop thread once no call is in flight any more (the loop must keep
 * running the node meanwhile, so queued requests complete). Call once, on
 * the loop thread. */
void etcd_server_shutdown(struct etcd_server *s, void (*cb)(struct etcd_server *s));

/* Join the polling thread and free everything. After the shutdown cb. */
void etcd_server_destroy(struct etcd_server *s);

#endif
