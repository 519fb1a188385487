/* pbwire.h - protobuf wire primitives (varints, field keys) for the few
 * messages the hot paths pack by hand, byte for byte as protobuf-c would,
 * and read without copying. */
#ifndef BOLLARD_CORE_PBWIRE_H
#define BOLLARD_CORE_PBWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* Fields as protobuf-c writes them, proto3: a zero varint or an empty
 * bytes/string field is not written (size 0). Any field number. Each put
 * returns the end of what it wrote. */
static inline size_t pbwire_varint_field_size(unsigned field, uint64_t v)
{
	return v ? pbwire_varint_size(field << 3) + pbwire_varint_size(v) : 0;
}

static inline size_t pbwire_len_field_size(unsigned field, size_t len)
{
	return len ? pbwire_varint_size(field << 3) + pbwire_varint_size(len) + len : 0;
}

static inline uint8_t *pbwire_put_varint_field(uint8_t *p, unsigned field, uint64_t v)
{
	if (v == 0)
		return p;
	p += pbwire_varint_put(p, field << 3 | PBWIRE_VARINT);
	return p + pbwire_varint_put(p, v);
}

/* A length-delimited field's key and length, written whatever the length
 * (an embedded message, present though empty); its len bytes come next. */
static inline uint8_t *pbwire_put_len_head(uint8_t *p, unsigned field, size_t len)
{
	p += pbwire_varint_put(p, field << 3 | PBWIRE_LEN);
	return p + pbwire_varint_put(p, len);
}

static inline uint8_t *pbwire_put_len_field(uint8_t *p, unsigned field, const void *data,
                                            size_t len)
{
	if (len == 0)
		return p;
	p = pbwire_put_len_head(p, field, len);
	memcpy(p, data, len);
	return p + len;
}

/* Reading. The varint at *p (ending before end) into *v, *p moved past it;
 * false if it runs past end or past 64 bits' worth of bytes. */
static inline bool pbwire_varint_get(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;
	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = r;
			return true;
		}
	}
	return false;
}

/* The next field of the message at *p (ending before end), *p moved past
 * it: its number and wire type; a varint's value in *v; a length-delimited
 * field's bytes in *bytes (borrowed), their length in *v. Fixed 32/64-bit
 * fields are passed over (wire type and nothing else set). false on bytes
 * that are not a field. */
static inline bool pbwire_field_next(const uint8_t **p, const uint8_t *end, unsigned *field,
                                     unsigned *wire_type, uint64_t *v, const uint8_t **bytes)
{
	uint64_t tag;
	size_t skip;

	/* field numbers run 1..2^29-1: anything else is malformed, not a
	 * field whose number truncation would alias */
	if (!pbwire_varint_get(p, end, &tag) || tag >> 3 == 0 || tag >> 3 > 0x1FFFFFFF)
		return false;
	*field = (unsigned)(tag >> 3);
	*wire_type = (unsigned)(tag & 7);
	switch (*wire_type) {
	case PBWIRE_VARINT:
		return pbwire_varint_get(p, end, v);
	case PBWIRE_LEN:
		if (!pbwire_varint_get(p, end, v) || *v > (uint64_t)(end - *p))
			return false;
		*bytes = *p;
		*p += *v;
		return true;
	case 1: /* fixed64 */
	case 5: /* fixed32 */
		skip = *wire_type == 1 ? 8 : 4;
		if ((size_t)(end - *p) < skip)
			return false;
		*p += skip;
		return true;
	default:
		return false;
	}
}

#endif
