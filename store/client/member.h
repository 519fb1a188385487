/* member.h - a store member run by the library: the node (raft, LMDB, MVCC)
 * and, when it serves clients, etcd's gRPC API in front of it, on a private
 * thread with its own libuv loop. bollard_open_embedded() builds its
 * configuration from struct bollard_embedded_options; bollard-store builds
 * it from its flags and calls bc_member_open() (this header is internal:
 * not installed, the binary links the static library).
 *
 * Start: [auto-TLS, TLS checks] -> lock the data dir -> thread: node_create
 * -> node_start -> etcd_server_start_tls. Stop (bollard_close):
 * node_stop_requests -> server shutdown -> node_close -> the member's loop
 * ends -> joined. */
#ifndef BOLLARD_CLIENT_MEMBER_H
#define BOLLARD_CLIENT_MEMBER_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "bollard/store.h"
#include "node/node.h"
#include "server/server.h"

/* Everything a member is started with. Strings are borrowed: they must stay
 * valid until the client is closed (bollard_close's callback ran). */
struct bc_member_config {
	struct node_config cfg;         /* node_config_init()'s defaults */
	const char *listen_client_urls; /* serve etcd's gRPC API here; NULL: nobody */
	const char *listen_metrics_urls; /* /metrics and /health here; NULL: nowhere */
	const char *experimental_h2_url; /* server/h2srv.h's listener; NULL: none */
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
