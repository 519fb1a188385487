/* grpc_unary.h - one unary gRPC call on the C core: the single batch a
 * unary call is (send initial metadata, the request and close; receive the
 * initial metadata, the answer and the status) and the release of what it
 * holds. The one place for it: the client library, the server's forwarding
 * client and the test load tool start their unary calls here. */
#ifndef BOLLARD_GRPC_UNARY_H
#define BOLLARD_GRPC_UNARY_H

#include <grpc/grpc.h>
#include <grpc/support/time.h>

struct grpc_wire_unary {
	grpc_call *call;
	grpc_byte_buffer *recv; /* the answer; NULL if none came */
	grpc_metadata_array init_md, trail_md;
	grpc_status_code status;
	grpc_slice details; /* the status message */
};

/* Create a call of method ("/package.Service/Method", copied) on ch with
 * the deadline, and start its batch sending send (the caller's: it must
 * stay valid until tag completes, then the caller destroys it). tag
 * completes on cq when the call is over, with status and details set.
 * Returns GRPC_CALL_OK, or grpc_call_start_batch's error (then tag never
 * completes). Either way release u with grpc_wire_unary_release. */
grpc_call_error grpc_wire_unary_start(struct grpc_wire_unary *u, grpc_channel *ch,
                                      grpc_completion_queue *cq, const char *method,
                                      grpc_byte_buffer *send, gpr_timespec deadline, void *tag);

/* Unref the call and free what it received (recv too: set u->recv to NULL
 * first to keep it). u may be started again afterwards. */
void grpc_wire_unary_release(struct grpc_wire_unary *u);

#endif
