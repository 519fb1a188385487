/* auth.c - etcd's Auth service. Auth is never enabled yet: Authenticate
 * (which etcdctl --user calls when dialing) answers etcd's
 * "authentication is not enabled"; every other Auth method is left to the
 * UNIMPLEMENTED catch-all. */
#include "core/errors.h"
#include "rpc.pb-c.h"
#include "server/server_int.h"

static void start_authenticate(struct srv_call *c)
{
	srv_call_reply_err(c, BOLLARD_EAUTH_NOT_ENABLED);
}

const struct srv_method srv_auth_methods[] = {
	{"/etcdserverpb.Auth/Authenticate", &etcdserverpb__authenticate_request__descriptor,
	 NODE_OP_COUNT_, 0, 1, NULL, start_authenticate},
	{NULL, NULL, NODE_OP_COUNT_, 0, 0, NULL, NULL},
};
