/* cluster.c - etcd's Cluster service. MemberList for now; MemberAdd,
 * MemberRemove, MemberUpdate and MemberPromote are not registered, so the
 * catch-all answers UNIMPLEMENTED until membership changes land. */
#include "rpc.pb-c.h"
#include "server/server_int.h"

const struct srv_method srv_cluster_methods[] = {
	{"/etcdserverpb.Cluster/MemberList", &etcdserverpb__member_list_request__descriptor,
	 NODE_MEMBER_LIST, 0, 2, NULL, NULL},
	{NULL, NULL, NODE_OP_COUNT_, 0, 0, NULL, NULL},
};
