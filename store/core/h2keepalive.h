/* h2keepalive.h - one server HTTP/2 connection's liveness, as the gRPC C
 * core keeps it on the gRPC port (server.c's channel args, etcd's defaults):
 * a PING after --grpc-keepalive-interval (2 h) without input, the
 * connection closed when its ACK has not come within
 * --grpc-keepalive-timeout (20 s); and a connection whose TLS handshake has
 * not completed within the C core's 120 s handshake timeout closed. Pure:
 * the caller passes the time (ns) and does what h2ka_tick says. Clients'
 * own pings are always answered (the gRPC port never sends them GOAWAY),
 * so there is no policy for them here. */
#ifndef BOLLARD_CORE_H2KEEPALIVE_H
#define BOLLARD_CORE_H2KEEPALIVE_H

#include <stdbool.h>
#include <stdint.h>

#define H2KA_INTERVAL_NS (2ull * 3600 * 1000000000)
#define H2KA_TIMEOUT_NS (20ull * 1000000000)
#define H2KA_HANDSHAKE_NS (120ull * 1000000000)

struct h2ka {
	uint64_t interval_ns, timeout_ns, handshake_ns;
	uint64_t start_ns, last_rx_ns, ping_sent_ns;
	bool open;     /* the handshake completed (at once for plain text) */
	bool ping_out; /* a PING of ours waits for its ACK */
};

enum h2ka_act { H2KA_NONE, H2KA_PING, H2KA_CLOSE };

/* A new connection at now; open: no handshake to wait for. */
void h2ka_init(struct h2ka *k, uint64_t interval_ns, uint64_t timeout_ns,
               uint64_t handshake_ns, uint64_t now, bool open);
/* The handshake completed. */
void h2ka_open(struct h2ka *k, uint64_t now);
/* Bytes arrived from the peer. */
void h2ka_rx(struct h2ka *k, uint64_t now);
/* The ACK of our PING arrived. */
void h2ka_acked(struct h2ka *k, uint64_t now);
/* What to do now: H2KA_PING (counted as sent), H2KA_CLOSE, or nothing. */
enum h2ka_act h2ka_tick(struct h2ka *k, uint64_t now);
/* The earliest time h2ka_tick may have something to do. */
uint64_t h2ka_next(const struct h2ka *k);

#endif
