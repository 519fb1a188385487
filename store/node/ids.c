/* ids.c - etcd URL lists and member/cluster IDs (see ids.h). */
#include "core/be64.h"
#include "core/hostport.h"
#include "node/ids.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The authority ("host:port") of url: *start and its length, or -1 when
 * the URL has no "scheme://". */
static int url_authority(const char *url, const char **start, size_t *len, const char **rest)
{
	const char *p = strstr(url, "://");
	if (p == NULL)
		return -1;
	p += 3;
	*start = p;
	*len = strcspn(p, "/?#");
	*rest = p + *len;
	return 0;
}

int ids_url_host_port(const char *url, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *a, *rest;
	size_t alen;

	if (url_authority(url, &a, &alen, &rest) < 0)
		return -EINVAL;
	return hostport_split(a, alen, host, hostlen, port, portlen);
}

/* Validate and normalise one URL as Go's url.Parse + etcd's checks would:
 * scheme lower-cased, surrounding spaces trimmed. */
static char *url_normalise(const char *in, size_t inlen, char *err, size_t errlen)
{
	char host[256], port[16];
	const char *a = NULL, *rest = "";
	size_t alen = 0;
	char *u;

	while (inlen > 0 && isspace((unsigned char)*in))
		in++, inlen--;
	while (inlen > 0 && isspace((unsigned char)in[inlen - 1]))
		inlen--;
	u = strndup(in, inlen);
	if (u == NULL)
		return NULL;
	for (char *p = u; *p && *p != ':'; p++)
		*p = (char)tolower((unsigned char)*p);
	if (strncmp(u, "http://", 7) && strncmp(u, "https://", 8) && strncmp(u, "unix://", 7) &&
	    strncmp(u, "unixs://", 8)) {
		snprintf(err, errlen, "URL scheme must be http, https, unix, or unixs: %s", u);
		goto fail;
	}
	if (ids_url_host_port(u, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen, "URL address does not have the form \"host:port\": %s", u);
		goto fail;
	}
	url_authority(u, &a, &alen, &rest);
	if (*rest == '/') {
		snprintf(err, errlen, "URL must not contain a path: %s", u);
		goto fail;
	}
	return u;
fail:
	free(u);
	errno = EINVAL;
	return NULL;
}

int ids_parse_urls(const char *csv, struct url_list *out, char *err, size_t errlen)
{
	const char *p = csv;

	out->n = 0;
	out->v = NULL;
	for (;;) {
		size_t len = strcspn(p, ",");
		char **v = realloc(out->v, (out->n + 1) * sizeof(*v));
		if (v == NULL)
			goto nomem;
		out->v = v;
		v[out->n] = url_normalise(p, len, err, errlen);
		if (v[out->n] == NULL) {
			if (errno != EINVAL)
				goto nomem;
			url_list_free(out);
			return -EINVAL;
		}
		out->n++;
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	qsort(out->v, out->n, sizeof(*out->v), cmp_str);
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	url_list_free(out);
	return -ENOMEM;
}

void url_list_free(struct url_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

void url_list_join(const struct url_list *l, char *buf, size_t len)
{
	size_t off = 0;
	if (len == 0)
		return;
	buf[0] = '\0';
	for (size_t i = 0; i < l->n && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? "," : "", l->v[i]);
}

uint64_t ids_member_id(const struct url_list *peer_urls, const char *token)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char **sorted = malloc((peer_urls->n ? peer_urls->n : 1) * sizeof(*sorted));

	if (sorted == NULL || ctx == NULL)
		abort();
	memcpy(sorted, peer_urls->v, peer_urls->n * sizeof(*sorted));
	qsort(sorted, peer_urls->n, sizeof(*sorted), cmp_str);
	EVP_DigestInit_ex(ctx, EVP_sha1(), NULL);
	for (size_t i = 0; i < peer_urls->n; i++)
		EVP_DigestUpdate(ctx, sorted[i], strlen(sorted[i]));
	EVP_DigestUpdate(ctx, token, strlen(token));
	EVP_DigestFinal_ex(ctx, md, NULL);
	EVP_MD_CTX_free(ctx);
	free(sorted);
	return be64_get(md);
}

uint64_t ids_member_id_at(const struct url_list *peer_urls, const char *token, int64_t unix_s)
{
	char *t;
	uint64_t id;
	if (asprintf(&t, "%s%lld", token, (long long)unix_s) < 0)
		abort();
	id = ids_member_id(peer_urls, t);
	free(t);
	return id;
}

uint64_t ids_cluster_id(const uint64_t *member_ids, size_t n)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned char *b = malloc(8 * (n ? n : 1));
	uint64_t *ids = malloc(8 * (n ? n : 1));

	if (b == NULL || ids == NULL)
		abort();
	memcpy(ids, member_ids, 8 * n);
	qsort(ids, n, sizeof(*ids), cmp_u64);
	for (size_t i = 0; i < n; i++)
		for (int j = 0; j < 8; j++)
			b[8 * i + (size_t)j] = (unsigned char)(ids[i] >> (56 - 8 * j));
	if (!EVP_Digest(b, 8 * n, md, NULL, EVP_sha1(), NULL))
		abort();
	free(b);
	free(ids);
	return be64_get(md);
}

static int cmp_member(const void *a, const void *b)
{
	return cmp_u64(&((const struct cluster_member *)a)->id,
	               &((const struct cluster_member *)b)->id);
}

/* Append url (len bytes) to the member called name, creating it. */
static int cluster_add(struct initial_cluster *c, const char *name, size_t nlen, const char *url,
                       size_t ulen, char *err, size_t errlen)
{
	struct cluster_member *m = NULL;
	char **v;

	for (size_t i = 0; i < c->n; i++)
		if (strlen(c->members[i].name) == nlen && !memcmp(c->members[i].name, name, nlen))
			m = &c->members[i];
	if (m == NULL) {
		m = realloc(c->members, (c->n + 1) * sizeof(*m));
		if (m == NULL)
			goto nomem;
		c->members = m;
		m = &c->members[c->n];
		memset(m, 0, sizeof(*m));
		if ((m->name = strndup(name, nlen)) == NULL)
			goto nomem;
		c->n++;
	}
	v = realloc(m->peer_urls.v, (m->peer_urls.n + 1) * sizeof(*v));
	if (v == NULL)
		goto nomem;
	m->peer_urls.v = v;
	v[m->peer_urls.n] = url_normalise(url, ulen, err, errlen);
	if (v[m->peer_urls.n] == NULL)
		return errno == EINVAL ? -EINVAL : -ENOMEM;
	m->peer_urls.n++;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

int ids_parse_initial_cluster(const char *s, const char *token, struct initial_cluster *out,
                              char *err, size_t errlen)
{
	const char *p = s;
	int rc;

	memset(out, 0, sizeof(*out));
	while (*p) {
		size_t len = strcspn(p, ",");
		const char *eq = memchr(p, '=', len);
		if (len > 0) {
			if (eq == NULL)
				rc = cluster_add(out, p, len, "", 0, err, errlen);
			else
				rc = cluster_add(out, p, (size_t)(eq - p), eq + 1,
				                 len - (size_t)(eq - p) - 1, err, errlen);
			if (rc < 0) {
				initial_cluster_free(out);
				return rc;
			}
		}
		p += len;
		if (*p == ',')
			p++;
	}
	if (out->n == 0) {
		snprintf(err, errlen, "--initial-cluster is empty");
		return -EINVAL;
	}
	uint64_t *ids = malloc(out->n * sizeof(*ids));
	if (ids == NULL) {
		initial_cluster_free(out);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < out->n; i++) {
		struct url_list *l = &out->members[i].peer_urls;
		qsort(l->v, l->n, sizeof(*l->v), cmp_str);
		out->members[i].id = ids_member_id(l, token);
		out->members[i].member_id = out->members[i].id;
		ids[i] = out->members[i].id;
		for (size_t j = 0; j < i; j++)
			if (ids[j] == ids[i]) {
				snprintf(err, errlen, "member exists with identical ID %016llx",
				         (unsigned long long)ids[i]);
				free(ids);
				initial_cluster_free(out);
				return -EINVAL;
			}
	}
	qsort(out->members, out->n, sizeof(*out->members), cmp_member);
	out->cluster_id = ids_cluster_id(ids, out->n);
	free(ids);
	return 0;
}

void initial_cluster_free(struct initial_cluster *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->members[i].name);
		url_list_free(&c->members[i].peer_urls);
	}
	free(c->members);
	memset(c, 0, sizeof(*c));
}

const struct cluster_member *initial_cluster_find(const struct initial_cluster *c,
                                                  const char *name)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->members[i].name, name) == 0)
			return &c->members[i];
	return NULL;
}
