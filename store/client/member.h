/* member.h - a store member run by the library: the node (raft, LMDB, MVCC)
 * and, when it serves clients, etcd's gRPC API in front of it (our own
 * HTTP/2 by default, or the gRPC C core), on a private
 * thread with its own libuv loop. bollard_open_embedded() builds its
 * configuration from struct bollard_embedded_options; bollard-store builds
 * it from its flags and calls bc_member_open() (this header is internal:
 * not installed, the binary links the static library).
 *
 * Start: [auto-TLS, TLS checks] -> lock the data dir -> thread: node_create
 * -> node_start -> etcd_server_start_tls (the client URLs, or only the
 * peer port's calls) [-> etcd_h2_start]. Stop (bollard_close):
 * node_stop_requests -> each server's graceful shutdown -> node_close -> the member's loop
 * ends -> joined. */
#ifndef BOLLARD_CLIENT_MEMBER_H
#define BOLLARD_CLIENT_MEMBER_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "bollard/store.h"
#include "node/node.h"
#include "server/server.h"

/* What serves listen_client_urls (--experimental-client-transport). The
 * gRPC C core server runs either way: members' bollard.Internal calls come
 * to it through the peer port, and its completion queue carries the
 * follower's forwarding client. */
enum bc_client_transport {
	BC_TRANSPORT_DEFAULT = 0, /* BC_CLIENT_TRANSPORT_DEFAULT */
	BC_TRANSPORT_GRPC_CORE,   /* "grpc-core": the gRPC C core (server.h) */
	BC_TRANSPORT_H2,          /* "h2": our own HTTP/2 (server/h2srv.h) */
};
/* The one place the default is chosen. */
#define BC_CLIENT_TRANSPORT_DEFAULT BC_TRANSPORT_H2

/* "grpc-core" or "h2" (NULL or "": the default); -1 for anything else. */
int bc_client_transport_parse(const char *name);

/* Everything a member is started with. Strings are borrowed: they must stay
 * valid until the client is closed (bollard_close's callback ran). */
struct bc_member_config {
	struct node_config cfg;         /* node_config_init()'s defaults */
	const char *listen_client_urls; /* serve etcd's gRPC API here; NULL: nobody */
	const char *listen_metrics_urls; /* /metrics and /health here; NULL: nowhere */
	const char *experimental_h2_url; /* extra server/h2srv.h URLs; NULL: none */
	enum bc_client_transport client_transport; /* of listen_client_urls */
	struct etcd_tls_config tls;     /* client TLS of those URLs */
	bool auto_tls;                  /* --auto-tls (ignored with cert/key files) */
	const char *log_tag;            /* tag of the member's own log lines */
};

/* Open a client over a member started from mc, as bollard_open_embedded
 * does (loop may be NULL; the same calls, rules and close). Returns 0, or an
 * error with a one-line reason in errbuf (a bad TLS file, a data dir in use,
 * a port in use, ...). */
int bc_member_open(struct bollard_client **out, uv_loop_t *loop, const struct bc_member_config *mc,
                   char *errbuf, size_t errlen);

/* ---- shared with embedded.c (the calls over a running member) ---- */

/* Something the caller's loop must handle, queued by the member's thread. */
struct bc_emb_item {
	struct bc_emb_item *next;
	void (*fn)(struct bc_emb_item *it);
};

/* Queue it for the caller's loop and wake it (any thread). */
void bc_emb_post(struct bollard_client *c, struct bc_emb_item *it);
/* The member's node (valid while the client is open). */
struct node *bc_emb_node(const struct bollard_client *c);

#endif
