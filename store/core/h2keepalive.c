/* h2keepalive.c - an HTTP/2 connection's keepalive and handshake deadline
 * (see h2keepalive.h). */
#include "core/h2keepalive.h"

void h2ka_init(struct h2ka *k, uint64_t interval_ns, uint64_t timeout_ns,
               uint64_t handshake_ns, uint64_t now, bool open)
{
	k->interval_ns = interval_ns;
	k->timeout_ns = timeout_ns;
	k->handshake_ns = handshake_ns;
	k->start_ns = k->last_rx_ns = now;
	k->ping_sent_ns = 0;
	k->open = open;
	k->ping_out = false;
}

void h2ka_open(struct h2ka *k, uint64_t now)
{
	k->open = true;
	k->last_rx_ns = now;
}

void h2ka_rx(struct h2ka *k, uint64_t now)
{
	k->last_rx_ns = now;
}

void h2ka_acked(struct h2ka *k, uint64_t now)
{
	k->ping_out = false;
	k->last_rx_ns = now;
}

uint64_t h2ka_next(const struct h2ka *k)
{
	if (!k->open)
		return k->start_ns + k->handshake_ns;
	if (k->ping_out)
		return k->ping_sent_ns + k->timeout_ns;
	return k->last_rx_ns + k->interval_ns;
}

enum h2ka_act h2ka_tick(struct h2ka *k, uint64_t now)
{
	if (now < h2ka_next(k))
		return H2KA_NONE;
	if (!k->open || k->ping_out)
		return H2KA_CLOSE;
	k->ping_out = true;
	k->ping_sent_ns = now;
	return H2KA_PING;
}
