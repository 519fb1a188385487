/* auth.c - etcd's Auth service: every call goes to the node as NODE_AUTH
 * (node/auth.c hashes or checks passwords off the loop, then proposes it
 * through raft; core/auth.c applies it). The caller's identity travels with
 * it, as etcd's request header does. */
#include "rpc.pb-c.h"
#include "server/server_int.h"

#define AUTH_METHOD(name, desc)                                                                    \
	{"/etcdserverpb.Auth/" name, &desc, NODE_AUTH, 1, 1, NULL, NULL}

const struct srv_method srv_auth_methods[] = {
	AUTH_METHOD("AuthEnable", etcdserverpb__auth_enable_request__descriptor),
	AUTH_METHOD("AuthDisable", etcdserverpb__auth_disable_request__descriptor),
	AUTH_METHOD("Authenticate", etcdserverpb__authenticate_request__descriptor),
	AUTH_METHOD("UserAdd", etcdserverpb__auth_user_add_request__descriptor),
	AUTH_METHOD("UserGet", etcdserverpb__auth_user_get_request__descriptor),
	AUTH_METHOD("UserList", etcdserverpb__auth_user_list_request__descriptor),
	AUTH_METHOD("UserDelete", etcdserverpb__auth_user_delete_request__descriptor),
	AUTH_METHOD("UserChangePassword", etcdserverpb__auth_user_change_password_request__descriptor),
	AUTH_METHOD("UserGrantRole", etcdserverpb__auth_user_grant_role_request__descriptor),
	AUTH_METHOD("UserRevokeRole", etcdserverpb__auth_user_revoke_role_request__descriptor),
	AUTH_METHOD("RoleAdd", etcdserverpb__auth_role_add_request__descriptor),
	AUTH_METHOD("RoleGet", etcdserverpb__auth_role_get_request__descriptor),
	AUTH_METHOD("RoleList", etcdserverpb__auth_role_list_request__descriptor),
	AUTH_METHOD("RoleDelete", etcdserverpb__auth_role_delete_request__descriptor),
	AUTH_METHOD("RoleGrantPermission",
	            etcdserverpb__auth_role_grant_permission_request__descriptor),
	AUTH_METHOD("RoleRevokePermission",
	            etcdserverpb__auth_role_revoke_permission_request__descriptor),
	{NULL, NULL, NODE_OP_COUNT_, 0, 0, NULL, NULL},
};
