/* test_h2keepalive.c - the h2 listener's keepalive (core/h2keepalive.c):
 * a PING after the interval without input, none while input comes, a close
 * when its ACK is late, none when it came; the handshake deadline. */
#include "core/h2keepalive.h"
#include "unit.h"

#define S 1000000000ull

TEST(ping_after_idle_interval)
{
	struct h2ka k;

	h2ka_init(&k, 10 * S, 2 * S, 5 * S, 100 * S, true);
	CHECK_INT(h2ka_next(&k) == 110 * S, 1);
	CHECK_INT(h2ka_tick(&k, 109 * S), H2KA_NONE);
	h2ka_rx(&k, 105 * S); /* input moves the ping later */
	CHECK_INT(h2ka_tick(&k, 114 * S), H2KA_NONE);
	CHECK_INT(h2ka_tick(&k, 115 * S), H2KA_PING);
	CHECK_INT(h2ka_tick(&k, 116 * S), H2KA_NONE); /* one at a time */
	CHECK_INT(h2ka_next(&k) == 117 * S, 1);
}

TEST(late_ack_closes)
{
	struct h2ka k;

	h2ka_init(&k, 10 * S, 2 * S, 5 * S, 0, true);
	CHECK_INT(h2ka_tick(&k, 10 * S), H2KA_PING);
	h2ka_rx(&k, 11 * S); /* other input is not the ACK */
	CHECK_INT(h2ka_tick(&k, 12 * S - 1), H2KA_NONE);
	CHECK_INT(h2ka_tick(&k, 12 * S), H2KA_CLOSE);
}

TEST(ack_in_time_keeps_it)
{
	struct h2ka k;

	h2ka_init(&k, 10 * S, 2 * S, 5 * S, 0, true);
	CHECK_INT(h2ka_tick(&k, 10 * S), H2KA_PING);
	h2ka_acked(&k, 11 * S);
	CHECK_INT(h2ka_tick(&k, 15 * S), H2KA_NONE);
	CHECK_INT(h2ka_tick(&k, 21 * S), H2KA_PING); /* the next interval from the ACK */
}

TEST(handshake_deadline)
{
	struct h2ka k;

	h2ka_init(&k, 10 * S, 2 * S, 5 * S, 0, false);
	h2ka_rx(&k, 4 * S); /* bytes of a handshake do not extend it */
	CHECK_INT(h2ka_tick(&k, 5 * S - 1), H2KA_NONE);
	CHECK_INT(h2ka_tick(&k, 5 * S), H2KA_CLOSE);
	h2ka_init(&k, 10 * S, 2 * S, 5 * S, 0, false);
	h2ka_open(&k, 3 * S);
	CHECK_INT(h2ka_tick(&k, 6 * S), H2KA_NONE);
	CHECK_INT(h2ka_tick(&k, 13 * S), H2KA_PING);
}

UNIT_MAIN(TEST_ENTRY(ping_after_idle_interval), TEST_ENTRY(late_ack_closes),
          TEST_ENTRY(ack_in_time_keeps_it), TEST_ENTRY(handshake_deadline))
