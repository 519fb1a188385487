/* listenurl.h - etcd's client listen URLs (--listen-client-urls and the h2
 * listener's --experimental-listen-h2-url): the scheme, the address, and the
 * checks of the scheme against the key/cert files, with etcd's words. Both
 * listeners parse a URL here and differ only in how they bind it. */
#ifndef BOLLARD_SERVER_LISTENURL_H
#define BOLLARD_SERVER_LISTENURL_H

#include <stdbool.h>
#include <stddef.h>

enum srv_url_kind { SRV_URL_TCP, SRV_URL_UNIX };

struct srv_url {
	enum srv_url_kind kind;
	bool tls;          /* https:// */
	const char *addr;  /* into the URL, not NUL-terminated: TCP "host:port" (a path */
	size_t addrlen;    /* dropped), UNIX the socket's path (shorter than sun_path) */
	char host[256];    /* TCP: the host, an IPv6 literal's brackets removed; "" = any */
	char port[16];     /* TCP: the port's digits, at most 65535 */
};

/* Split the len bytes at url (http://host:port, https://host:port,
 * unix://path) into *u. have_tls: key/cert files were given. 0; or -1 with
 * err set, prefix before the text but for the missing key/cert error (etcd's
 * words exactly): not such a URL, unixs://, or https:// without key/cert. An
 * http:// URL while key/cert are given is served without TLS, as etcd does,
 * with etcd's warning on stderr. */
int srv_url_split(const char *url, size_t len, bool have_tls, const char *prefix,
                  struct srv_url *u, char *err, size_t errlen);

/* A list of URLs that named none: -1 with err set, the gRPC port's words
 * for the client URLs (prefix ""), else prefix (a flag's "--name: ") and
 * "no URL given". */
int srv_url_none(const char *prefix, char *err, size_t errlen);

#endif
