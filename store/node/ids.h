/* ids.h - etcd's URL lists, --initial-cluster parsing and the member and
 * cluster IDs derived from them, computed exactly as etcd 3.4 does
 * (etcdserver/api/membership/member.go, cluster.go):
 *   member ID  = first 8 bytes (big-endian) of SHA-1(sorted peer URLs ++ token)
 *   cluster ID = first 8 bytes (big-endian) of SHA-1(sorted member IDs, each
 *                8 bytes big-endian)
 * so a Bollard member reports the same IDs an etcd member started with the
 * same flags would. Pure functions, no I/O. */
#ifndef BOLLARD_NODE_IDS_H
#define BOLLARD_NODE_IDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A list of URLs, normalised and sorted the way etcd's types.NewURLs does. */
struct url_list {
	size_t n;
	char **v;
};

/* Parse a comma-separated list (etcd's types.NewURLs rules: scheme http,
 * https, unix or unixs; host:port; no path). Returns 0 or -EINVAL with a
 * message in err. */
int ids_parse_urls(const char *csv, struct url_list *out, char *err, size_t errlen);
void url_list_free(struct url_list *l);

/* Join a list back with commas into buf (truncating). */
void url_list_join(const struct url_list *l, char *buf, size_t len);

struct cluster_member {
	char *name;
	struct url_list peer_urls;
	uint64_t id;        /* raft's ID */
	uint64_t member_id; /* etcd's member ID: id for members of --initial-cluster */
	bool voter;         /* added as a voter (members.c: a standby until caught up) */
	char picked[64];    /* the raft address its peers dial (peer_pick.c), or "" */
};

struct initial_cluster {
	size_t n;
	struct cluster_member *members; /* sorted by ID */
	uint64_t cluster_id;
};

/* Parse --initial-cluster ("n1=u1,n1=u2,n2=u3"): members are grouped by name
 * as etcd does and get their IDs from token. */
int ids_parse_initial_cluster(const char *s, const char *token, struct initial_cluster *out,
                              char *err, size_t errlen);
void initial_cluster_free(struct initial_cluster *c);
const struct cluster_member *initial_cluster_find(const struct initial_cluster *c,
                                                  const char *name);

uint64_t ids_member_id(const struct url_list *peer_urls, const char *token);
/* etcd's NewMember ID with a time: the peer URLs, token (etcd's MemberAdd
 * passes "") and the time in unix seconds. */
uint64_t ids_member_id_at(const struct url_list *peer_urls, const char *token, int64_t unix_s);
uint64_t ids_cluster_id(const uint64_t *member_ids, size_t n);

/* Split a URL's authority into host and port ("http://[::1]:2380" gives
 * "::1" and "2380"). Returns 0 or -EINVAL. */
int ids_url_host_port(const char *url, char *host, size_t hostlen, char *port, size_t portlen);

#endif
