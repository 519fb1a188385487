/* health.c - gRPC's health checking service (grpc.health.v1.Health) on the
 * client port, as etcd 3.4 registers grpc-go's health server beside its own
 * services: the overall service "" is always SERVING, any other name is
 * unknown. Check answers at once (Not Found "unknown service" for another
 * name); Watch sends the status (SERVICE_UNKNOWN for another name) and
 * stays open until the client leaves or the server stops, since the status
 * never changes. Neither asks the node; etcd's interceptors still apply
 * (dispatch.c: a learner refuses both, "hasleader" without a leader too). */
#include <errno.h>
#include <stdlib.h>

#include "core/errors.h"
#include "health.pb-c.h"
#include "server/server_int.h"

static Grpc__Health__V1__HealthCheckResponse__ServingStatus
health_status_of(const struct srv_call *c)
{
	const Grpc__Health__V1__HealthCheckRequest *r = (const void *)c->msg;
	return r->service[0] == '\0' ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
	                             : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
}

/* A packed HealthCheckResponse (malloc'ed), or NULL. */
static uint8_t *health_pack(Grpc__Health__V1__HealthCheckResponse__ServingStatus status,
                            size_t *len)
{
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	uint8_t *packed;

	resp.status = status;
	*len = grpc__health__v1__health_check_response__get_packed_size(&resp);
	packed = malloc(*len ? *len : 1);
	if (packed)
		grpc__health__v1__health_check_response__pack(&resp, packed);
	return packed;
}

static void health_check(struct srv_call *c)
{
	Grpc__Health__V1__HealthCheckResponse__ServingStatus st = health_status_of(c);
	uint8_t *packed;
	size_t len;

	if (st != GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING) {
		srv_call_reply_status(c, GRPC_STATUS_NOT_FOUND, "unknown service"); /* grpc-go's */
		return;
	}
	if ((packed = health_pack(st, &len)) == NULL) {
		srv_call_reply_err(c, -ENOMEM);
		return;
	}
	srv_call_reply(c, packed, len);
}

static void health_watch(struct srv_call *c)
{
	uint8_t *packed;
	size_t len;

	srv_call_ref(c); /* once open, the call may end on another thread */
	if (srv_stream_open(c) != 0) {
		srv_call_reply_err(c, BOLLARD_EINTERNAL);
		srv_call_unref(c);
		return;
	}
	if ((packed = health_pack(health_status_of(c), &len)) == NULL)
		srv_stream_finish(c, -ENOMEM);
	else
		srv_stream_send(c, packed, len, 0); /* then nothing until the end */
	srv_call_unref(c);
}

const struct srv_method srv_health_methods[] = {
	{"/grpc.health.v1.Health/Check", &grpc__health__v1__health_check_request__descriptor,
	 NODE_OP_COUNT_, 0, 1, NULL, health_check},
	{"/grpc.health.v1.Health/Watch", &grpc__health__v1__health_check_request__descriptor,
	 NODE_OP_COUNT_, 0, 1, NULL, health_watch, .server_stream = 1},
	{NULL, NULL, NODE_OP_COUNT_, 0, 0, NULL, NULL},
};
