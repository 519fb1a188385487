/* grpc_wire.c - message <-> byte buffer (see grpc_wire.h). */
#include "wire/grpc_wire.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>

#ifdef BOLLARD_ABSL_DEADLOCK_MODE
/* absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle) of Debian 12's
 * abseil (inline namespace debian3), a C++ function with a C-compatible
 * name; meson checks that the library has it. OnDeadlockCycle::kIgnore is 0. */
void BOLLARD_ABSL_DEADLOCK_MODE(int mode);
#endif

void grpc_wire_init(void)
{
#ifdef BOLLARD_ABSL_DEADLOCK_MODE
	BOLLARD_ABSL_DEADLOCK_MODE(0);
#endif
	grpc_init();
}

grpc_byte_buffer *grpc_wire_pack(const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	grpc_slice s = grpc_slice_malloc(len);
	grpc_byte_buffer *bb;

	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	bb = grpc_raw_byte_buffer_create(&s, 1); /* takes its own reference */
	grpc_slice_unref(s);
	return bb;
}

ProtobufCMessage *grpc_wire_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d)
{
	return grpc_wire_unpack_with(bb, d, NULL);
}

ProtobufCMessage *grpc_wire_unpack_with(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d,
                                        ProtobufCAllocator *alloc)
{
	grpc_byte_buffer_reader rd;
	grpc_slice s;
	ProtobufCMessage *m;

	if (!bb)
		return NULL;
	/* A message gRPC holds in one uncompressed slice (the usual case) is
	 * read in place; others are joined into one copy first. */
	if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
	    bb->data.raw.slice_buffer.count == 1) {
		s = bb->data.raw.slice_buffer.slices[0];
		return protobuf_c_message_unpack(d, alloc, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
	}
	if (!grpc_byte_buffer_reader_init(&rd, bb))
		return NULL;
	s = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	m = protobuf_c_message_unpack(d, alloc, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
	grpc_slice_unref(s);
	return m;
}
