/* pbwire.h - protobuf wire primitives (varints, field keys) for the few
 * messages the hot paths pack by hand, byte for byte as protobuf-c would. */
#ifndef BOLLARD_CORE_PBWIRE_H
#define BOLLARD_CORE_PBWIRE_H

#include <stddef.h>
#include <stdint.h>

/* Wire types. */
#define PBWIRE_VARINT 0
#define PBWIRE_LEN 2

static inline size_t pbwire_varint_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static inline size_t pbwire_varint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* A field's key (field numbers below 16: one byte). */
static inline uint8_t pbwire_key(unsigned field, unsigned wire_type)
{
	return (uint8_t)(field << 3 | wire_type);
}

#endif
