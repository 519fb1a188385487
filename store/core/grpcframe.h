/* grpcframe.h - gRPC's message framing over HTTP/2, as pure functions: the
 * length-prefixed messages of a stream's DATA (1 byte compressed flag, 4
 * bytes big-endian length, the message), the grpc-timeout header value and
 * the percent-encoding of grpc-message. Used by the experimental HTTP/2
 * listener (server/h2srv.c); no sockets, no clock, no HTTP/2 library.
 *
 * Pure: the owner serializes the calls. */
#ifndef BOLLARD_CORE_GRPCFRAME_H
#define BOLLARD_CORE_GRPCFRAME_H

#include <stddef.h>
#include <stdint.h>

#define GRPCFRAME_PREFIX 5

/* Reassembles the messages of one stream from DATA chunks of any size. */
struct grpcframe_rd {
	size_t max;       /* largest message accepted */
	uint8_t hdr[GRPCFRAME_PREFIX];
	size_t hdr_got;   /* prefix bytes seen of the current message */
	uint8_t *buf;     /* the current message when it spans chunks */
	size_t len, got;  /* its length (once the prefix is complete), bytes seen */
	int returned;     /* buf holds the message the last feed returned */
	int compressed_ok; /* the owner's: flag 1 accepted (grpc-encoding gzip, deflate) */
	int compressed;   /* the message last returned has the compressed flag */
};

enum {
	GRPCFRAME_MORE = 0,          /* every byte consumed, no message complete */
	GRPCFRAME_MSG = 1,           /* a message is complete (see feed) */
	GRPCFRAME_ETOOBIG = -1,      /* a message is longer than max */
	GRPCFRAME_ECOMPRESSED = -2,  /* the compressed flag set, not compressed_ok (or > 1) */
	GRPCFRAME_ENOMEM = -3,
};

void grpcframe_rd_init(struct grpcframe_rd *r, size_t max);
void grpcframe_rd_fini(struct grpcframe_rd *r);

/* Consume bytes of data[0, len) up to the end of the next message; *used
 * gets how many. GRPCFRAME_MSG: msg, msg_len give the message, either inside
 * data (a message that arrived whole in this chunk: no copy) or in r's own
 * buffer; valid until the next call on r. Call again with the rest of the
 * chunk. A message is complete only once its prefix and all its bytes
 * arrived (a zero-length message completes with its prefix). After an error
 * r must not be fed again. *len_seen (may be NULL) gets the length the
 * prefix announced, for an error message. */
int grpcframe_rd_feed(struct grpcframe_rd *r, const uint8_t *data, size_t len, size_t *used,
                      const uint8_t **msg, size_t *msg_len, size_t *len_seen);

/* True while part of a message has arrived but not all of it. */
int grpcframe_rd_partial(const struct grpcframe_rd *r);

/* The prefix of an uncompressed message of len bytes. */
void grpcframe_prefix(uint8_t out[GRPCFRAME_PREFIX], uint32_t len);

/* A grpc-timeout value ("1-8 digits" then H, M, S, m, u or n) in
 * nanoseconds (saturating). 0 or -EINVAL. */
int grpcframe_timeout_parse(const char *v, size_t len, uint64_t *ns);

/* grpc-message's encoding of in (printable ASCII but '%' kept, everything
 * else %XX): written NUL-terminated to out, cut at a whole character when
 * out is too small. Returns the length written. */
size_t grpcframe_pct_encode(const char *in, char *out, size_t outlen);

#endif
