/* test_jwt.c - store/core/jwt.c: tokens of every signing method signed and
 * verified (keys made here with OpenSSL), expiry, tampering, another key or
 * method, malformed tokens and keys, and Go's durations. The interplay with
 * etcd 3.4 is tests/integration/test_auth_jwt.py. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/duration.h"
#include "core/jwt.h"
#include "unit.h"

/* PEM of a fresh key: "RSA" or an EC curve name; *pub gets the public PEM. */
static char *pem_key(const char *type, char **pub)
{
	EVP_PKEY *k = strcmp(type, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
	                                       : EVP_PKEY_Q_keygen(NULL, NULL, "EC", type);
	BIO *b = BIO_new(BIO_s_mem()), *p = BIO_new(BIO_s_mem());
	char *data, *out, *pout;
	long n;

	REQUIRE(k != NULL);
	REQUIRE(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1);
	REQUIRE(PEM_write_bio_PUBKEY(p, k) == 1);
	n = BIO_get_mem_data(b, &data);
	out = strndup(data, (size_t)n);
	n = BIO_get_mem_data(p, &data);
	pout = strndup(data, (size_t)n);
	BIO_free(b);
	BIO_free(p);
	EVP_PKEY_free(k);
	*pub = pout;
	return out;
}

static struct jwt_key *key(const char *method, const char *pub, const char *priv)
{
	char err[256] = "";
	struct jwt_key *k = jwt_key_new(method, (const uint8_t *)pub, pub ? strlen(pub) : 0,
	                                (const uint8_t *)priv, priv ? strlen(priv) : 0, err,
	                                sizeof(err));
	if (!k)
		unit_fail(__FILE__, __LINE__, "%s: %s", method, err);
	return k;
}

static void round_trip(const char *method, const char *pub, const char *priv)
{
	struct jwt_key *k = key(method, pub, priv), *vo = pub ? key(method, pub, NULL) : NULL;
	char *tok = NULL, *user = NULL, why[96];
	uint64_t rev = 0;

	REQUIRE(k != NULL);
	CHECK_INT(jwt_sign(k, "alice", 42, 1000, &tok), 0);
	REQUIRE(tok != NULL);
	CHECK_INT(jwt_verify(k, tok, 999, &user, &rev, why, sizeof(why)), 0);
	CHECK(user && strcmp(user, "alice") == 0);
	CHECK_INT(rev, 42);
	free(user);
	user = NULL;
	CHECK_INT(jwt_verify(k, tok, 1000, &user, &rev, NULL, 0), 0); /* until exp itself */
	free(user);
	CHECK_INT(jwt_verify(k, tok, 1001, &user, &rev, why, sizeof(why)), -EINVAL);
	CHECK(strcmp(why, "Token is expired") == 0);
	if (vo) { /* a public key only: verifies, cannot sign */
		char *t2 = NULL;
		CHECK(!jwt_key_can_sign(vo));
		CHECK_INT(jwt_verify(vo, tok, 999, &user, &rev, NULL, 0), 0);
		free(user);
		CHECK_INT(jwt_sign(vo, "alice", 1, 1, &t2), -EINVAL);
		jwt_key_free(vo);
	}
	/* a flipped bit in each part */
	for (char *p = tok; *p; p++) {
		char c = *p;
		if (c == '.')
			continue;
		*p = c == 'A' ? 'B' : 'A';
		user = NULL;
		if (jwt_verify(k, tok, 999, &user, &rev, NULL, 0) == 0) {
			/* base64's last character may carry unused bits */
			CHECK(p[1] == '\0' || p[1] == '.');
			free(user);
		}
		*p = c;
	}
	free(tok);
	jwt_key_free(k);
}

TEST(methods)
{
	char *rpub, *rsa = pem_key("RSA", &rpub);
	char *p256pub, *p256 = pem_key("P-256", &p256pub);
	char *p384pub, *p384 = pem_key("P-384", &p384pub);
	char *p521pub, *p521 = pem_key("P-521", &p521pub);
	const char *m[] = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"};

	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		round_trip(m[i], rpub, rsa);
	round_trip("ES256", p256pub, p256);
	round_trip("ES384", p384pub, p384);
	round_trip("ES512", p521pub, p521);
	round_trip("HS256", NULL, "a shared secret");
	round_trip("HS512", NULL, "a shared secret");
	free(rsa), free(rpub), free(p256), free(p256pub), free(p384), free(p384pub);
	free(p521), free(p521pub);
}

TEST(wrong_key_or_method)
{
	char *apub, *a = pem_key("RSA", &apub), *bpub, *b = pem_key("RSA", &bpub);
	struct jwt_key *ka = key("RS256", apub, a), *kb = key("RS256", bpub, b),
	               *k384 = key("RS384", apub, a), *hs = key("HS256", NULL, "s");
	char *tok, *user = NULL, why[96], err[256];
	uint64_t rev;

	CHECK_INT(jwt_sign(ka, "u", 1, 100, &tok), 0);
	CHECK_INT(jwt_verify(kb, tok, 1, &user, &rev, why, sizeof(why)), -EINVAL);
	CHECK(strcmp(why, "signature is invalid") == 0);
	CHECK_INT(jwt_verify(k384, tok, 1, &user, &rev, why, sizeof(why)), -EINVAL);
	CHECK(strcmp(why, "invalid signing method") == 0);
	CHECK_INT(jwt_verify(hs, tok, 1, &user, &rev, NULL, 0), -EINVAL);
	free(tok);
	/* keys that do not fit */
	CHECK(jwt_key_new("RS256", (const uint8_t *)bpub, strlen(bpub), (const uint8_t *)a,
	                  strlen(a), err, sizeof(err)) == NULL);
	CHECK(strcmp(err, "auth: public and private keys don't match") == 0);
	CHECK(jwt_key_new("ES256", NULL, 0, (const uint8_t *)a, strlen(a), err, sizeof(err)) == NULL);
	CHECK(strcmp(err, "key is not a valid ECDSA private key") == 0);
	CHECK(jwt_key_new("RS256", NULL, 0, NULL, 0, err, sizeof(err)) == NULL);
	CHECK(strcmp(err, "auth: missing key data") == 0);
	CHECK(jwt_key_new("none", NULL, 0, (const uint8_t *)a, strlen(a), err, sizeof(err)) == NULL);
	CHECK(strcmp(err, "auth: invalid auth signature method") == 0);
	CHECK(jwt_key_new("RS256", NULL, 0, (const uint8_t *)"junk", 4, err, sizeof(err)) == NULL);
	char *ecpub, *ec = pem_key("P-384", &ecpub);
	CHECK(jwt_key_new("ES256", NULL, 0, (const uint8_t *)ec, strlen(ec), err, sizeof(err)) ==
	      NULL); /* ES256 wants P-256 */
	free(ec), free(ecpub);
	jwt_key_free(ka), jwt_key_free(kb), jwt_key_free(k384), jwt_key_free(hs);
	free(a), free(apub), free(b), free(bpub);
}

TEST(malformed)
{
	struct jwt_key *k = key("HS256", NULL, "s");
	const char *bad[] = {"", "a", "a.b", "a.b.c.d", "..", "e30.e30.", "!!.??.**",
	                     /* {"alg":"HS256"} . {} : no claims */
	                     "eyJhbGciOiJIUzI1NiJ9.e30.x", "eyJhbGciOiJIUzI1NiJ9.W10.x"};
	char *user = NULL;
	uint64_t rev;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_INT(jwt_verify(k, bad[i], 1, &user, &rev, NULL, 0), -EINVAL);
	CHECK(user == NULL);
	jwt_key_free(k);
}

TEST(durations)
{
	uint64_t ms = 0;
	char why[128];

	CHECK_INT(duration_parse_ms("5m", &ms, why, sizeof(why)), 0);
	CHECK_INT(ms, 300000);
	CHECK_INT(duration_parse_ms("1h30m", &ms, why, sizeof(why)), 0);
	CHECK_INT(ms, 5400000);
	CHECK_INT(duration_parse_ms("1.5s", &ms, why, sizeof(why)), 0);
	CHECK_INT(ms, 1500);
	CHECK_INT(duration_parse_ms("300ms", &ms, why, sizeof(why)), 0);
	CHECK_INT(ms, 300);
	CHECK_INT(duration_parse_ms("0", &ms, why, sizeof(why)), 0);
	CHECK_INT(ms, 0);
	CHECK_INT(duration_parse_ms("5x", &ms, why, sizeof(why)), -1);
	CHECK(strcmp(why, "time: unknown unit \"x\" in duration \"5x\"") == 0);
	CHECK_INT(duration_parse_ms("5", &ms, why, sizeof(why)), -1);
	CHECK(strcmp(why, "time: missing unit in duration \"5\"") == 0);
	CHECK_INT(duration_parse_ms("", &ms, why, sizeof(why)), -1);
	CHECK_INT(duration_parse_ms("-1s", &ms, why, sizeof(why)), -1);
	CHECK_INT(duration_parse_ms("s", &ms, why, sizeof(why)), -1);
}

UNIT_MAIN(TEST_ENTRY(methods), TEST_ENTRY(wrong_key_or_method), TEST_ENTRY(malformed),
          TEST_ENTRY(durations))
