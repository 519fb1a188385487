/* cluster.c - etcd's Cluster service: MemberList, MemberAdd, MemberRemove,
 * MemberPromote, MemberUpdate (node/members.c; a follower forwards the
 * changes to the leader). With auth on, membership changes need the root
 * role (etcd's checkMembershipOperationPermission); MemberList does not. */
#include "rpc.pb-c.h"
#include "server/server_int.h"

const struct srv_method srv_cluster_methods[] = {
	{"/etcdserverpb.Cluster/MemberList", &etcdserverpb__member_list_request__descriptor,
	 NODE_MEMBER_LIST, 0, 2, NULL, NULL},
	{"/etcdserverpb.Cluster/MemberAdd", &etcdserverpb__member_add_request__descriptor,
	 NODE_MEMBER_ADD, 0, 1, srv_check_admin, NULL},
	{"/etcdserverpb.Cluster/MemberRemove", &etcdserverpb__member_remove_request__descriptor,
	 NODE_MEMBER_REMOVE, 0, 1, srv_check_admin, NULL},
	{"/etcdserverpb.Cluster/MemberPromote", &etcdserverpb__member_promote_request__descriptor,
	 NODE_MEMBER_PROMOTE, 0, 1, srv_check_admin, NULL},
	{"/etcdserverpb.Cluster/MemberUpdate", &etcdserverpb__member_update_request__descriptor,
	 NODE_MEMBER_UPDATE, 0, 1, srv_check_admin, NULL},
	{NULL, NULL, NODE_OP_COUNT_, 0, 0, NULL, NULL},
};
