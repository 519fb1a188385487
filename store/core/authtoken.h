/* authtoken.h - etcd's simple-token table: which user each login token
 * names, each token living --auth-token-ttl past its last use (etcd's
 * simpleTokenTTLKeeper). Pure: the caller passes the time; not thread-safe
 * (the node guards it with a mutex). Tokens are not durable: a restart or
 * AuthDisable forgets them, as in etcd. */
#ifndef BOLLARD_CORE_AUTHTOKEN_H
#define BOLLARD_CORE_AUTHTOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_TOKENS_BUCKETS 256

struct auth_token;

struct auth_tokens {
	struct auth_token *b[AUTH_TOKENS_BUCKETS];
	size_t n;
	uint64_t ttl_ms;
	uint64_t last_sweep_ms;
};

void auth_tokens_init(struct auth_tokens *t, uint64_t ttl_ms);
void auth_tokens_free(struct auth_tokens *t);
/* Register token for user (both copied), expiring ttl after now. A token
 * already present is replaced. 0 or -ENOMEM. */
int auth_tokens_add(struct auth_tokens *t, const char *token, const char *user, uint64_t now_ms);
/* The user of a live token: a malloc'ed copy in *user (NULL on ENOMEM),
 * and its expiry moves to now + ttl. false for an unknown or expired one. */
bool auth_tokens_lookup(struct auth_tokens *t, const char *token, uint64_t now_ms, char **user);
/* Forget every token of user (deleted, new password). */
void auth_tokens_drop_user(struct auth_tokens *t, const char *user);
/* Forget every token (AuthDisable). */
void auth_tokens_clear(struct auth_tokens *t);
/* Forget the tokens expired at now. */
void auth_tokens_expire(struct auth_tokens *t, uint64_t now_ms);

#endif
