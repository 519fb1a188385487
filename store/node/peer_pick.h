/* peer_pick.h - which of a member's peer URLs its peers dial (etcd's
 * rafthttp URL picker): one URL at a time, the one that last worked, and on
 * a failed dial the next of the member's list, in the order etcd keeps them
 * (sorted). Raft's transports (peer_tcp.c, peer.c) and members' gRPC
 * (forward.c: calls to the leader, probes, status questions) share it, so a
 * URL found working by one is dialed by the others. A member's list is its
 * current one (MemberUpdate's records, members.c): a new list takes effect at
 * the next dial. Runs on the loop thread. */
#ifndef BOLLARD_NODE_PEER_PICK_H
#define BOLLARD_NODE_PEER_PICK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct node;

/* The raft address ("ip:port") to dial raft_id at: its picked peer URL, or
 * fallback for a member this node has no peer URLs of. The string lives in
 * the member table: use it before the table changes. */
const char *node_peer_pick(struct node *n, uint64_t raft_id, const char *fallback);

/* A dial of raft_id at address failed (refused, timed out): the next URL is
 * picked (if address is still the picked one). When fewer than all of the
 * member's URLs were tried (tries, this one included), the next to try goes
 * into out (len bytes) and true is returned. */
bool node_peer_failed(struct node *n, uint64_t raft_id, const char *address, unsigned tries,
                      char *out, size_t len);

#endif
