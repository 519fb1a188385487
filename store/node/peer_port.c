/* peer_port.c - a member's peer port as both raft transports have it: the
 * listener, and what a connection carries from its first bytes (see
 * peer_port.h). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/peer_port.h"

#define RAFT_PROTOCOL 1 /* raft's uv_tcp handshake protocol version */

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

enum peer_hello peer_hello_parse(const uint8_t *p, size_t len, uint64_t *id, char *address,
                                 size_t *used, char *why, size_t whylen)
{
	uint64_t alen;

	if (len < 8)
		return PEER_HELLO_MORE;
	if (memcmp(p, h2_preface, 8) == 0) {
		if (len < PEER_HELLO_H2_LEN)
			return PEER_HELLO_MORE;
		if (memcmp(p, h2_preface, PEER_HELLO_H2_LEN) != 0) {
			snprintf(why, whylen, "bad HTTP/2 preface");
			return PEER_HELLO_BAD;
		}
		return PEER_HELLO_GRPC;
	}
	if (le64(p) != RAFT_PROTOCOL) {
		snprintf(why, whylen, "not a raft peer: unknown protocol %llu",
		         (unsigned long long)le64(p));
		return PEER_HELLO_BAD;
	}
	if (len < 24)
		return PEER_HELLO_MORE;
	alen = le64(p + 16);
	if (alen == 0 || alen > PEER_HELLO_MAX_ADDRESS) {
		snprintf(why, whylen, "bad raft handshake");
		return PEER_HELLO_BAD;
	}
	if (len < 24 + alen)
		return PEER_HELLO_MORE;
	*id = le64(p + 8);
	memcpy(address, p + 24, alen);
	address[alen] = '\0';
	*used = 24 + alen;
	return PEER_HELLO_RAFT;
}

size_t peer_hello_encode(uint8_t *buf, uint64_t id, const char *address)
{
	size_t alen = strlen(address) + 1, plen = (alen + 7) & ~(size_t)7;

	if (plen > PEER_HELLO_MAX_ADDRESS)
		return 0;
	memset(buf, 0, 24 + plen);
	put_le64(buf, RAFT_PROTOCOL);
	put_le64(buf + 8, id);
	put_le64(buf + 16, plen);
	memcpy(buf + 24, address, alen);
	return 24 + plen;
}

int peer_address_parse(const char *address, struct sockaddr_in *sa, char *ip, size_t iplen)
{
	const char *colon = strrchr(address, ':');
	size_t hl;
	char *end;
	long port;

	if (!colon || (hl = (size_t)(colon - address)) == 0 || hl >= iplen)
		return -1;
	memcpy(ip, address, hl);
	ip[hl] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || *end != '\0' || port < 0 || port > 65535)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, ip, &sa->sin_addr) == 1 ? 0 : -1;
}

/* ------------------------------------------------------------- listener */

void peer_port_setup(struct peer_port *p, struct node *n, uv_loop_t *loop,
                     char *const *bind_addrs, size_t n_bind, struct raft_uv_transport *rt,
                     void *impl)
{
	p->n = n;
	p->loop = loop;
	p->bind_addrs = bind_addrs;
	p->n_bind = n_bind < PEER_PORT_MAX_LISTEN ? n_bind : PEER_PORT_MAX_LISTEN;
	p->rt = rt;
	rt->impl = impl;
}

int peer_port_init(struct raft_uv_transport *rt, raft_id id, const char *address)
{
	struct peer_port *p = rt->impl;
	p->id = id;
	snprintf(p->address, sizeof(p->address), "%s", address);
	return 0;
}

/* Listens on every address, as etcd on each of its --listen-peer-urls: a
 * peer may reach the member through any of them. */
int peer_port_listen(struct raft_uv_transport *rt, raft_uv_accept_cb cb, uv_connection_cb on_conn)
{
	struct peer_port *p = rt->impl;
	struct sockaddr_in sa[PEER_PORT_MAX_LISTEN];
	char ip[64];
	int rc;

	p->accept_cb = cb;
	for (size_t i = 0; i < p->n_bind; i++) /* all checked before any is bound */
		if (peer_address_parse(p->bind_addrs[i], &sa[i], ip, sizeof(ip)) != 0) {
			snprintf(rt->errmsg, sizeof(rt->errmsg), "bad listen address %.200s",
			         p->bind_addrs[i]);
			return RAFT_INVALID;
		}
	for (size_t i = 0; i < p->n_bind; i++) {
		uv_tcp_t *l = &p->listeners[i];
		uv_tcp_init(p->loop, l);
		l->data = p;
		p->n_listening++;
		p->pending++;
		if ((rc = uv_tcp_bind(l, (struct sockaddr *)&sa[i], 0)) != 0 ||
		    (rc = uv_listen((uv_stream_t *)l, 128, on_conn)) != 0) {
			snprintf(rt->errmsg, sizeof(rt->errmsg), "listen on %.200s: %s",
			         p->bind_addrs[i], uv_strerror(rc));
			return RAFT_IOERR;
		}
	}
	return 0;
}

void peer_port_maybe_closed(struct peer_port *p)
{
	if (p->closing && p->pending == 0 && p->close_cb) {
		raft_uv_transport_close_cb cb = p->close_cb;
		p->close_cb = NULL;
		cb(p->rt);
	}
}

static void listener_closed(uv_handle_t *h)
{
	struct peer_port *p = h->data;
	p->pending--;
	peer_port_maybe_closed(p);
}

void peer_port_close(struct peer_port *p, raft_uv_transport_close_cb cb)
{
	p->closing = true;
	p->close_cb = cb;
	for (size_t i = 0; i < p->n_listening; i++)
		uv_close((uv_handle_t *)&p->listeners[i], listener_closed);
	p->n_listening = 0;
}
