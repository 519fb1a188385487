/* grpcframe.c - gRPC's length-prefixed messages, grpc-timeout and
 * grpc-message encoding (grpcframe.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/grpcframe.h"

void grpcframe_rd_init(struct grpcframe_rd *r, size_t max)
{
	memset(r, 0, sizeof(*r));
	r->max = max;
}

void grpcframe_rd_fini(struct grpcframe_rd *r)
{
	free(r->buf);
	r->buf = NULL;
}

int grpcframe_rd_partial(const struct grpcframe_rd *r)
{
	return r->hdr_got > 0;
}

/* The prefix is complete: check it and set the length. */
static int rd_header(struct grpcframe_rd *r, size_t *len_seen)
{
	uint32_t n = ((uint32_t)r->hdr[1] << 24) | ((uint32_t)r->hdr[2] << 16) |
	             ((uint32_t)r->hdr[3] << 8) | (uint32_t)r->hdr[4];

	if (len_seen)
		*len_seen = n;
	if (r->hdr[0] > 1 || (r->hdr[0] == 1 && !r->compressed_ok))
		return GRPCFRAME_ECOMPRESSED;
	r->compressed = r->hdr[0];
	if (n > r->max)
		return GRPCFRAME_ETOOBIG;
	r->len = n;
	r->got = 0;
	return 0;
}

int grpcframe_rd_feed(struct grpcframe_rd *r, const uint8_t *data, size_t len, size_t *used,
                      const uint8_t **msg, size_t *msg_len, size_t *len_seen)
{
	size_t off = 0, take;
	int rc;

	if (r->returned) { /* the message returned last time */
		free(r->buf);
		r->buf = NULL;
		r->returned = 0;
	}
	*used = 0;
	while (r->hdr_got < GRPCFRAME_PREFIX) {
		if (off == len) {
			*used = off;
			return GRPCFRAME_MORE;
		}
		r->hdr[r->hdr_got++] = data[off++];
		if (r->hdr_got == GRPCFRAME_PREFIX && (rc = rd_header(r, len_seen)) != 0) {
			*used = off;
			return rc;
		}
	}
	if (r->got == 0 && len - off >= r->len) { /* whole in this chunk */
		*msg = data + off;
		*msg_len = r->len;
		*used = off + r->len;
		r->hdr_got = 0;
		return GRPCFRAME_MSG;
	}
	if (r->got == 0 && r->len > 0 && r->buf == NULL) {
		if ((r->buf = malloc(r->len)) == NULL)
			return GRPCFRAME_ENOMEM;
	}
	take = len - off < r->len - r->got ? len - off : r->len - r->got;
	if (take > 0)
		memcpy(r->buf + r->got, data + off, take);
	r->got += take;
	off += take;
	*used = off;
	if (r->got < r->len)
		return GRPCFRAME_MORE;
	*msg = r->buf;
	*msg_len = r->len;
	r->hdr_got = 0;
	r->returned = 1; /* r->buf is freed by the next call */
	return GRPCFRAME_MSG;
}

void grpcframe_prefix(uint8_t out[GRPCFRAME_PREFIX], uint32_t len)
{
	out[0] = 0;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

int grpcframe_timeout_parse(const char *v, size_t len, uint64_t *ns)
{
	uint64_t n = 0, unit;
	size_t i;

	if (len < 2 || len > 9)
		return -EINVAL;
	for (i = 0; i + 1 < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EINVAL;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	switch (v[len - 1]) {
	case 'H': unit = 3600ull * 1000000000ull; break;
	case 'M': unit = 60ull * 1000000000ull; break;
	case 'S': unit = 1000000000ull; break;
	case 'm': unit = 1000000ull; break;
	case 'u': unit = 1000ull; break;
	case 'n': unit = 1; break;
	default: return -EINVAL;
	}
	*ns = n > UINT64_MAX / unit ? UINT64_MAX : n * unit;
	return 0;
}

size_t grpcframe_pct_encode(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	if (outlen == 0)
		return 0;
	for (; *in; in++) {
		unsigned char ch = (unsigned char)*in;
		if (ch >= 0x20 && ch <= 0x7e && ch != '%') {
			if (o + 1 >= outlen)
				break;
			out[o++] = (char)ch;
		} else {
			if (o + 3 >= outlen)
				break;
			out[o++] = '%';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	out[o] = 0;
	return o;
}
