/* gateway.h - etcd's gRPC gateway (HTTP/JSON under /v3/) for the client
 * URLs' HTTP/1.x thread (http.c); gateway.c says what it serves. */
#ifndef BOLLARD_SERVER_GATEWAY_H
#define BOLLARD_SERVER_GATEWAY_H

#include <h2o.h>

struct node;
struct gateway;

/* Its handlers on host (before h2o's context is made from the config), its
 * answers through loop. NULL when out of memory. */
struct gateway *gateway_new(struct node *node, uv_loop_t *loop, h2o_hostconf_t *host);
/* On loop's thread, while it runs, once: answer what was answered, cut the
 * calls still in the node from their requests (they free themselves when
 * answered), and let the gateway go with the last of them. */
void gateway_close(struct gateway *gw);

#endif
