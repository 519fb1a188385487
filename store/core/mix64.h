/* mix64.h - splitmix64's step: every input bit moves every output bit, so
 * consecutive or clock-derived inputs give well-spread 64-bit values (lease
 * IDs, request id seeds). Not a cryptographic generator. */
#ifndef BOLLARD_CORE_MIX64_H
#define BOLLARD_CORE_MIX64_H

#include <stdint.h>

static inline uint64_t mix64(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

#endif
