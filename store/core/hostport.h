/* hostport.h - "host:port" and "[v6]:port" split into host and port: the
 * one parser of an address's authority for URLs (node/ids.c), listen
 * addresses (server) and bollard-bench's endpoints. */
#ifndef BOLLARD_CORE_HOSTPORT_H
#define BOLLARD_CORE_HOSTPORT_H

#include <stdbool.h>
#include <stddef.h>

/* Split the len bytes at hp into host (brackets of an IPv6 literal
 * removed) and port (digits only), each NUL-terminated in the caller's
 * buffers. An unbracketed host holds no ':'. 0, or -EINVAL when hp is not
 * of that form or a part does not fit. */
int hostport_split(const char *hp, size_t len, char *host, size_t hostlen, char *port,
                   size_t portlen);

/* The next item of a comma-separated list such as etcd's URL flags take:
 * false at the end; else true with *item and *len the item, blanks and
 * tabs around it left out (*len may be 0), and *pos moved past it and its
 * comma. Start with *pos at the list. */
bool hostport_list_next(const char **pos, const char **item, size_t *len);

#endif
