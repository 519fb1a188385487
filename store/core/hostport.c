/* hostport.c - host and port of "host:port" / "[v6]:port" (see hostport.h). */
#include "core/hostport.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

bool hostport_list_next(const char **pos, const char **item, size_t *len)
{
	const char *p = *pos, *end;
	size_t n;

	if (!p || !*p)
		return false;
	end = strchr(p, ',');
	n = end ? (size_t)(end - p) : strlen(p);
	*pos = end ? end + 1 : p + n;
	while (n && (*p == ' ' || *p == '\t'))
		p++, n--;
	while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	*item = p;
	*len = n;
	return true;
}

int hostport_split(const char *hp, size_t len, char *host, size_t hostlen, char *port,
                   size_t portlen)
{
	const char *end = hp + len, *h = hp, *colon;
	size_t hlen, plen;

	if (len == 0)
		return -EINVAL;
	if (hp[0] == '[') { /* [v6]:port */
		const char *close = memchr(hp, ']', len);
		if (close == NULL || close + 1 >= end || close[1] != ':')
			return -EINVAL;
		h = hp + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = memchr(hp, ':', len);
		if (colon == NULL || memchr(colon + 1, ':', (size_t)(end - colon - 1)))
			return -EINVAL;
		hlen = (size_t)(colon - hp);
	}
	plen = (size_t)(end - (colon + 1));
	if (hlen + 1 > hostlen || plen + 1 > portlen)
		return -EINVAL;
	for (size_t i = 0; i < plen; i++)
		if (!isdigit((unsigned char)colon[1 + i]))
			return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	memcpy(port, colon + 1, plen);
	port[plen] = '\0';
	return 0;
}
