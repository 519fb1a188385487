/* hostport.h - "host:port" and "[v6]:port" split into host and port: the
 * one parser of an address's authority for URLs (node/ids.c), listen
 * addresses (server) and bollard-bench's endpoints. */
#ifndef BOLLARD_CORE_HOSTPORT_H
#define BOLLARD_CORE_HOSTPORT_H

#include <stddef.h>

/* Split the len bytes at hp into host (brackets of an IPv6 literal
 * removed) and port (digits only), each NUL-terminated in the caller's
 * buffers. An unbracketed host holds no ':'. 0, or -EINVAL when hp is not
 * of that form or a part does not fit. */
int hostport_split(const char *hp, size_t len, char *host, size_t hostlen, char *port,
                   size_t portlen);

#endif
