/* peer_port.h - what both raft transports (peer.c with TLS, peer_tcp.c
 * without) share about a member's peer port: its listener and the raft
 * transport's init/listen/close around it (struct peer_port, first member of
 * either transport's struct), and, pure, the first bytes of a connection,
 * which say what it carries: raft's TCP handshake (canonical/raft's uv_tcp wire:
 * protocol 1, the sender's server ID, the padded length of its address, the
 * NUL-padded address; little-endian 64-bit words), or HTTP/2's client
 * preface (members' gRPC, bollard.Internal); and raft's addresses. Pure: no
 * sockets. */
#ifndef BOLLARD_NODE_PEER_PORT_H
#define BOLLARD_NODE_PEER_PORT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

struct node;

#define PEER_HELLO_MAX_ADDRESS 1024
#define PEER_HELLO_MAX (24 + PEER_HELLO_MAX_ADDRESS)
#define PEER_HELLO_H2_LEN 24 /* HTTP/2's client preface */
#define PEER_PORT_MAX_LISTEN 8 /* --listen-peer-urls */

enum peer_hello {
	PEER_HELLO_MORE, /* not enough bytes yet to tell */
	PEER_HELLO_RAFT, /* a raft handshake of *used bytes: *id, address */
	PEER_HELLO_GRPC, /* HTTP/2's preface (nothing to consume) */
	PEER_HELLO_BAD,  /* neither: why says what (etcd-like words) */
};

/* Classify the len bytes at p. address must hold PEER_HELLO_MAX_ADDRESS + 1
 * bytes; why at least 64. */
enum peer_hello peer_hello_parse(const uint8_t *p, size_t len, uint64_t *id, char *address,
                                 size_t *used, char *why, size_t whylen);

/* Write raft's handshake for id and address into buf (PEER_HELLO_MAX bytes);
 * its length, or 0 when the address is too long. */
size_t peer_hello_encode(uint8_t *buf, uint64_t id, const char *address);

/* The listener part of a transport; rt->impl points at the transport's
 * struct, whose first member this is. */
struct peer_port {
	struct node *n;
	uv_loop_t *loop;
	char *const *bind_addrs; /* "ip:port" to listen on, each (the node's) */
	size_t n_bind;
	struct raft_uv_transport *rt;
	raft_id id;
	char address[300];       /* this member's raft address */
	raft_uv_accept_cb accept_cb;
	uv_tcp_t listeners[PEER_PORT_MAX_LISTEN];
	size_t n_listening;      /* listeners[0..n_listening) are open */
	bool closing;
	int pending;             /* listeners + connections not yet closed */
	raft_uv_transport_close_cb close_cb;
};

/* rt's impl (p's transport) and the init/listen of raft_uv_transport, with
 * on_conn for each listener (its data is p): one per address of bind_addrs
 * (at most PEER_PORT_MAX_LISTEN; the caller keeps them). */
void peer_port_setup(struct peer_port *p, struct node *n, uv_loop_t *loop,
                     char *const *bind_addrs, size_t n_bind, struct raft_uv_transport *rt,
                     void *impl);
int peer_port_init(struct raft_uv_transport *rt, raft_id id, const char *address);
int peer_port_listen(struct raft_uv_transport *rt, raft_uv_accept_cb cb, uv_connection_cb on_conn);
/* transport->close: stop listening; the caller closes its connections, each
 * ending with pending--, then calls peer_port_maybe_closed. */
void peer_port_close(struct peer_port *p, raft_uv_transport_close_cb cb);
void peer_port_maybe_closed(struct peer_port *p);

/* A raft address "ip:port" (IPv4, as node_raft_address makes them) as a
 * socket address, and its IP as text in ip (iplen bytes). 0 or -1. */
int peer_address_parse(const char *address, struct sockaddr_in *sa, char *ip, size_t iplen);

#endif
