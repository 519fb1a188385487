/* grpc_unary.c - a unary call's batch (see grpc_unary.h). */
#include "wire/grpc_unary.h"

#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>

grpc_call_error grpc_wire_unary_start(struct grpc_wire_unary *u, grpc_channel *ch,
                                      grpc_completion_queue *cq, const char *method,
                                      grpc_byte_buffer *send, gpr_timespec deadline, void *tag)
{
	grpc_slice m = grpc_slice_from_copied_string(method);
	grpc_op ops[6];

	memset(u, 0, sizeof(*u));
	grpc_metadata_array_init(&u->init_md);
	grpc_metadata_array_init(&u->trail_md);
	u->details = grpc_empty_slice();
	u->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, deadline,
	                                   NULL);
	grpc_slice_unref(m);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->init_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &u->recv;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &u->trail_md;
	ops[5].data.recv_status_on_client.status = &u->status;
	ops[5].data.recv_status_on_client.status_details = &u->details;
	return grpc_call_start_batch(u->call, ops, 6, tag, NULL);
}

void grpc_wire_unary_release(struct grpc_wire_unary *u)
{
	if (u->recv)
		grpc_byte_buffer_destroy(u->recv);
	u->recv = NULL;
	grpc_slice_unref(u->details);
	u->details = grpc_empty_slice();
	grpc_metadata_array_destroy(&u->init_md);
	grpc_metadata_array_destroy(&u->trail_md);
	if (u->call)
		grpc_call_unref(u->call);
	u->call = NULL;
}
