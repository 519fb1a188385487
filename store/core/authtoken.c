/* authtoken.c - etcd's simple-token table (see authtoken.h): a chained
 * hash table of tokens; expired entries go lazily (at lookup) and in a
 * sweep at most once a second when tokens are added. */
#include "core/authtoken.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct auth_token {
	struct auth_token *next;
	uint64_t expires_ms;
	char *user;
	char token[]; /* NUL-terminated */
};

static size_t bucket(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return (size_t)(h % AUTH_TOKENS_BUCKETS);
}

void auth_tokens_init(struct auth_tokens *t, uint64_t ttl_ms)
{
	memset(t, 0, sizeof(*t));
	t->ttl_ms = ttl_ms;
}

static void drop_if(struct auth_tokens *t, const char *user, uint64_t now_ms, bool all)
{
	for (size_t i = 0; i < AUTH_TOKENS_BUCKETS; i++) {
		struct auth_token **pp = &t->b[i];
		while (*pp != NULL) {
			struct auth_token *e = *pp;
			if (all || (user != NULL && strcmp(e->user, user) == 0) ||
			    (user == NULL && e->expires_ms <= now_ms)) {
				*pp = e->next;
				free(e->user);
				free(e);
				t->n--;
			} else {
				pp = &e->next;
			}
		}
	}
}

void auth_tokens_free(struct auth_tokens *t)
{
	drop_if(t, NULL, 0, true);
}

void auth_tokens_clear(struct auth_tokens *t)
{
	drop_if(t, NULL, 0, true);
}

void auth_tokens_drop_user(struct auth_tokens *t, const char *user)
{
	drop_if(t, user, 0, false);
}

void auth_tokens_expire(struct auth_tokens *t, uint64_t now_ms)
{
	drop_if(t, NULL, now_ms, false);
	t->last_sweep_ms = now_ms;
}

static struct auth_token **find(struct auth_tokens *t, const char *token)
{
	struct auth_token **pp = &t->b[bucket(token)];
	while (*pp != NULL && strcmp((*pp)->token, token) != 0)
		pp = &(*pp)->next;
	return pp;
}

int auth_tokens_add(struct auth_tokens *t, const char *token, const char *user, uint64_t now_ms)
{
	size_t len = strlen(token);
	struct auth_token **pp, *e = malloc(sizeof(*e) + len + 1);
	if (now_ms - t->last_sweep_ms >= 1000)
		auth_tokens_expire(t, now_ms);
	if (e == NULL || (e->user = strdup(user)) == NULL) {
		free(e);
		return -ENOMEM;
	}
	memcpy(e->token, token, len + 1);
	e->expires_ms = now_ms + t->ttl_ms;
	pp = find(t, token);
	if (*pp != NULL) { /* replace */
		struct auth_token *old = *pp;
		e->next = old->next;
		free(old->user);
		free(old);
		t->n--;
	} else {
		e->next = NULL;
	}
	*pp = e;
	t->n++;
	return 0;
}

bool auth_tokens_lookup(struct auth_tokens *t, const char *token, uint64_t now_ms, char **user)
{
	struct auth_token **pp = find(t, token), *e = *pp;
	*user = NULL;
	if (e == NULL)
		return false;
	if (e->expires_ms <= now_ms) {
		*pp = e->next;
		free(e->user);
		free(e);
		t->n--;
		return false;
	}
	e->expires_ms = now_ms + t->ttl_ms;
	*user = strdup(e->user);
	return true;
}
