/* gwjson.h - the JSON of etcd's gRPC gateway (grpc-gateway 1.6's JSONPb with
 * OrigName, i.e. golang/protobuf's jsonpb), to and from protobuf, driven by
 * protobuf-c descriptors: a request's JSON object becomes the message's
 * wire bytes (for the same decoding as a gRPC request), and a decoded
 * response message becomes JSON text. No I/O: tests/unit/test_gwjson.c. */
#ifndef BOLLARD_CORE_GWJSON_H
#define BOLLARD_CORE_GWJSON_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* A growing byte buffer (malloc'ed p; free it). */
struct gwjson_buf {
	uint8_t *p;
	size_t len, cap;
};

/* The JSON object json/len (empty or all blanks: the empty message) as the
 * wire bytes of a message of type d, appended to out. Field names as jsonpb
 * takes them: the proto name or its lowerCamelCase form; unknown names and
 * nulls are skipped. 64-bit integers as numbers or strings, bytes as base64
 * (standard or URL-safe), enums as names or numbers. 0, or -EINVAL with a
 * message in err (-ENOMEM: out of memory). */
int gwjson_to_wire(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                   struct gwjson_buf *out, char *err, size_t errlen);

/* m as jsonpb marshals it with OrigName: proto field names, fields at their
 * default omitted (a oneof member that is set is not), 64-bit integers as
 * strings, bytes as standard base64, enums by name; compact. Malloc'ed
 * text (*len bytes, NUL-terminated), or NULL when out of memory. */
char *gwjson_from_message(const ProtobufCMessage *m, size_t *len);

#endif
