/* grpc_wire.h - protobuf-c messages to and from gRPC byte buffers: the one
 * place every gRPC C-core user of this repository (client library, server's
 * forwarding client, bench) turns a message into bytes on the wire. */
#ifndef BOLLARD_GRPC_WIRE_H
#define BOLLARD_GRPC_WIRE_H

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>

/* grpc_init(), for every gRPC user here. Also switches off abseil's mutex
 * deadlock detector when the installed abseil has it on (Debian 12's is
 * built without NDEBUG): it builds a lock graph on every gRPC mutex
 * acquisition (~4% of a loaded server's CPU in perf). */
void grpc_wire_init(void);

/* Pack m into a new byte buffer (the caller destroys it with
 * grpc_byte_buffer_destroy). */
grpc_byte_buffer *grpc_wire_pack(const ProtobufCMessage *m);

/* Unpack a received buffer (NULL: none arrived) as a message of type d;
 * NULL when it does not decode. Free the result with
 * protobuf_c_message_free_unpacked. The buffer stays the caller's. */
ProtobufCMessage *grpc_wire_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d);

/* The same with protobuf-c allocator alloc (NULL: malloc), e.g. an arena
 * the caller resets after each message instead of freeing it. */
ProtobufCMessage *grpc_wire_unpack_with(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d,
                                        ProtobufCAllocator *alloc);

#endif
