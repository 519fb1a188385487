/* jwt.h - etcd's JWT auth tokens (--auth-token jwt,...): a signed token
 * whose claims are {"exp", "revision", "username"}, the user it names and
 * the auth revision at login, so any member holding the key verifies it
 * without state, across restarts; etcd rejects it once the auth store moved
 * past that revision ("revision of auth store is old"). Signing methods as
 * etcd's JWT library: RS256/384/512 and PS256/384/512 (RSA), ES256/384/512
 * (ECDSA P-256/384/521), HS256/384/512 (HMAC, the key being the priv-key
 * file's bytes). OpenSSL does the cryptography and base64, jansson the JSON.
 * Pure: the caller passes the time and the key files' contents. */
#ifndef BOLLARD_CORE_JWT_H
#define BOLLARD_CORE_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jwt_key;

/* A key for method (e.g. "RS256") from the PEM contents of the public and
 * private key files (either may be NULL/0; HMAC takes the private file's
 * bytes as its secret). With only a public key it verifies but cannot sign.
 * NULL with err set: etcd's message where etcd has one ("auth: invalid auth
 * signature method", "auth: missing key data", "auth: public and private
 * keys don't match"), else what is wrong with the key. */
struct jwt_key *jwt_key_new(const char *method, const uint8_t *pub, size_t pub_len,
                            const uint8_t *priv, size_t priv_len, char *err, size_t errlen);
void jwt_key_free(struct jwt_key *k);
bool jwt_key_can_sign(const struct jwt_key *k);

/* A signed token for user at auth revision rev, expiring at exp (Unix
 * seconds): *out malloc'ed. 0, -ENOMEM, or -EINVAL (cannot sign). */
int jwt_sign(const struct jwt_key *k, const char *user, uint64_t rev, int64_t exp, char **out);

/* Verify token at now (Unix seconds): its method must be the key's, its
 * signature good, exp (if present) after now, and it must name a user and
 * a revision. 0 with *user (malloc'ed) and *rev, -ENOMEM, or -EINVAL (an
 * invalid token; why, if not NULL, says what). */
int jwt_verify(const struct jwt_key *k, const char *token, int64_t now, char **user,
               uint64_t *rev, char *why, size_t whylen);

#endif
