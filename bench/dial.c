/* dial.c - bollard-bench's TCP connections: dials host:port (retrying
 * until a deadline while nothing listens yet) and hands the socket to gRPC
 * as a direct channel (grpc_channel_create_from_fd). A direct channel has
 * no name resolution, load balancing, retry or subchannel layers: the same
 * HTTP/2 frames on the wire (the :authority is set to the endpoint, as the
 * ordinary channel has it) for about a third less client CPU per call. It
 * does not reconnect: a connection that breaks fails its calls, which the
 * report counts. With --cacert (TLS) a channel is an ordinary one: the C
 * core takes no credentials but insecure ones for a channel from an fd. */
#include "bench.h"
#include "core/hostport.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>

/* One non-blocking connect to ai, waiting at most until deadline_ns.
 * Returns the connected socket or -1 with errno set. */
static int connect_one(const struct addrinfo *ai, uint64_t deadline_ns)
{
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int err = 0, one = 1;
	socklen_t len = sizeof(err);

	if (fd < 0)
		return -1;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		uint64_t now = bb_now_ns();
		int ms = now < deadline_ns ? (int)((deadline_ns - now) / 1000000) + 1 : 0;

		if (errno != EINPROGRESS)
			goto fail;
		if (poll(&p, 1, ms) != 1) {
			errno = ETIMEDOUT;
			goto fail;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			goto fail;
		if (err != 0) {
			errno = err;
			goto fail;
		}
	}
	/* what gRPC's own dialer sets: requests go out at once */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

int bb_dial(const char *endpoint, uint64_t deadline_ns, char *err, size_t errlen)
{
	char host[256], port[32];
	struct addrinfo hints, *res = NULL;
	struct timespec pause = {0, 20000000};
	int rc, fd = -1;

	if (hostport_split(endpoint, strlen(endpoint), host, sizeof(host), port, sizeof(port)) != 0) {
		snprintf(err, errlen, "want host:port");
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(err, errlen, "%s", gai_strerror(rc));
		return -1;
	}
	/* Every address in turn; again after a pause while nothing listens. */
	for (;;) {
		for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
			fd = connect_one(ai, deadline_ns);
		if (fd >= 0 || bb_now_ns() + (uint64_t)pause.tv_nsec >= deadline_ns)
			break;
		nanosleep(&pause, NULL);
	}
	if (fd < 0)
		snprintf(err, errlen, "%s", strerror(errno));
	freeaddrinfo(res);
	return fd;
}

grpc_channel *bb_dial_tls_channel(const char *endpoint, const char *ca_pem,
                                  const grpc_channel_args *args)
{
	grpc_channel_credentials *creds = grpc_ssl_credentials_create(ca_pem, NULL, NULL, NULL);
	grpc_arg a[16];
	grpc_channel_args all = {0, a};
	grpc_channel *ch;

	for (size_t i = 0; i < args->num_args && i + 1 < sizeof(a) / sizeof(a[0]); i++)
		a[all.num_args++] = args->args[i];
	/* a connection of its own, not one shared by equal channels */
	a[all.num_args++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
	                               .key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
	                               .value.integer = 1};
	ch = grpc_channel_create(endpoint, creds, &all);
	grpc_channel_credentials_release(creds);
	return ch;
}

grpc_channel *bb_dial_channel(const char *endpoint, int fd, const grpc_channel_args *args)
{
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	grpc_arg a[16];
	grpc_channel_args all = {0, a};
	grpc_channel *ch;

	for (size_t i = 0; i < args->num_args && i + 1 < sizeof(a) / sizeof(a[0]); i++)
		a[all.num_args++] = args->args[i];
	/* gRPC names a channel from an fd "test.authority" unless told */
	a[all.num_args++] = (grpc_arg){.type = GRPC_ARG_STRING,
	                               .key = (char *)GRPC_ARG_DEFAULT_AUTHORITY,
	                               .value.string = (char *)endpoint};
	ch = grpc_channel_create_from_fd(endpoint, fd, creds, &all);
	grpc_channel_credentials_release(creds);
	return ch;
}
