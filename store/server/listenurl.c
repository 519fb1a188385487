/* listenurl.c - a client listen URL's scheme and address, and etcd's
 * scheme-versus-key/cert checks (see listenurl.h). */
#include "server/listenurl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "core/hostport.h"

static int bad_url(const char *url, size_t len, const char *prefix, char *err, size_t errlen)
{
	snprintf(err, errlen,
	         "%sinvalid listen client URL %.*s (want http://host:port or https://host:port)",
	         prefix, (int)len, url);
	return -1;
}

static bool has_scheme(const char *url, size_t len, const char *scheme)
{
	size_t n = strlen(scheme);
	return len >= n && strncmp(url, scheme, n) == 0;
}

int srv_url_none(const char *prefix, char *err, size_t errlen)
{
	if (prefix[0])
		snprintf(err, errlen, "%sno URL given", prefix);
	else
		snprintf(err, errlen, "no listen client URL given");
	return -1;
}

int srv_url_split(const char *url, size_t len, bool have_tls, const char *prefix,
                  struct srv_url *u, char *err, size_t errlen)
{
	size_t skip;

	memset(u, 0, sizeof(*u));
	if (has_scheme(url, len, "unix://")) {
		u->kind = SRV_URL_UNIX;
		u->addr = url + 7;
		u->addrlen = len - 7;
		if (u->addrlen == 0 || u->addrlen >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return bad_url(url, len, prefix, err, errlen);
		return 0;
	}
	if (has_scheme(url, len, "unixs://")) {
		snprintf(err, errlen, "%sTLS not supported yet: %.*s", prefix, (int)len, url);
		return -1;
	}
	if (has_scheme(url, len, "https://"))
		u->tls = true, skip = 8;
	else if (has_scheme(url, len, "http://"))
		skip = 7;
	else
		return bad_url(url, len, prefix, err, errlen);
	u->kind = SRV_URL_TCP;
	u->addr = url + skip;
	u->addrlen = len - skip;
	for (size_t i = 0; i < u->addrlen; i++) {
		if (u->addr[i] == '/') { /* a path means nothing for a listener */
			u->addrlen = i;
			break;
		}
	}
	if (hostport_split(u->addr, u->addrlen, u->host, sizeof(u->host), u->port,
	                   sizeof(u->port)) != 0 ||
	    !u->port[0] || strtoul(u->port, NULL, 10) > 65535)
		return bad_url(url, len, prefix, err, errlen);
	if (u->tls && !have_tls) { /* etcd's words */
		snprintf(err, errlen,
		         "TLS key/cert (--cert-file, --key-file) must be provided for client url "
		         "%.*s with HTTPS scheme", (int)len, url);
		return -1;
	}
	if (!u->tls && have_tls)
		fprintf(stderr,
		        "bollard: warning: the scheme of client url %.*s is HTTP while key/cert "
		        "files are present; ignoring key/cert files (and --client-cert-auth) for "
		        "this URL\n", (int)len, url);
	return 0;
}
