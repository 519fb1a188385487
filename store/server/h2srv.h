/* h2srv.h - EXPERIMENTAL: etcd's unary KV Put and Range served over our own
 * HTTP/2 (libnghttp2) instead of the gRPC C core, on a listener and a
 * thread of their own (--experimental-listen-h2-url). A prototype to
 * measure what the gRPC C core's per-call cost is; plain text only; every
 * other method answers UNIMPLEMENTED. Off unless the flag is given. */
#ifndef BOLLARD_SERVER_H2SRV_H
#define BOLLARD_SERVER_H2SRV_H

#include <stddef.h>

struct node;
struct etcd_h2;

/* Serve on url ("http://IP:PORT", numeric) with a thread of its own.
 * 0, or -1 with err set (nothing left running). */
int etcd_h2_start(struct etcd_h2 **out, struct node *node, const char *url, char *err,
                  size_t errlen);

/* Stop the thread, close every connection and free everything. Call it
 * after the node's loop ended (every request it was handed has been
 * answered) and before node_destroy. NULL: nothing. */
void etcd_h2_stop(struct etcd_h2 *h);

#endif
