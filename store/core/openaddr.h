/* openaddr.h - the shift rule of backward-shift deletion shared by the
 * open-addressing tables (linear probing, power-of-two capacity, no
 * tombstones) of the watch hub and the stream send queue. */
#ifndef BOLLARD_OPENADDR_H
#define BOLLARD_OPENADDR_H

#include <stdbool.h>
#include <stddef.h>

/* After slot `hole` was emptied, the entry at slot j (whose home slot is
 * `home`) moves into the hole unless its home lies cyclically in (hole, j]. */
static inline bool openaddr_shift_back(size_t home, size_t hole, size_t j)
{
	return hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
}

#endif
