/* jwt.c - etcd's JWT auth tokens: sign and verify (see jwt.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "core/base64.h"
#include "core/jwt.h"

enum jwt_kind { JWT_RSA, JWT_PSS, JWT_EC, JWT_HMAC };

struct jwt_method {
	const char *name;
	enum jwt_kind kind;
	const EVP_MD *(*md)(void);
	int ec_bits; /* ES*: the curve's size */
};

static const struct jwt_method methods[] = {
	{"RS256", JWT_RSA, EVP_sha256, 0},  {"RS384", JWT_RSA, EVP_sha384, 0},
	{"RS512", JWT_RSA, EVP_sha512, 0},  {"PS256", JWT_PSS, EVP_sha256, 0},
	{"PS384", JWT_PSS, EVP_sha384, 0},  {"PS512", JWT_PSS, EVP_sha512, 0},
	{"ES256", JWT_EC, EVP_sha256, 256}, {"ES384", JWT_EC, EVP_sha384, 384},
	{"ES512", JWT_EC, EVP_sha512, 521}, {"HS256", JWT_HMAC, EVP_sha256, 0},
	{"HS384", JWT_HMAC, EVP_sha384, 0}, {"HS512", JWT_HMAC, EVP_sha512, 0},
};

struct jwt_key {
	const struct jwt_method *m;
	EVP_PKEY *priv;   /* signs (and verifies); NULL: verify only */
	EVP_PKEY *pub;    /* verifies */
	uint8_t *secret;  /* HMAC */
	size_t secret_len;
};

/* ------------------------------------------------------------------ keys */

static const struct jwt_method *method_find(const char *name)
{
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strcmp(methods[i].name, name) == 0)
			return &methods[i];
	return NULL;
}

static EVP_PKEY *pem_private(const uint8_t *pem, size_t len)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	return k;
}

/* A public key, or a certificate's (as Go's jwt parsers take either). */
static EVP_PKEY *pem_public(const uint8_t *pem, size_t len)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	EVP_PKEY *k = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	if (k == NULL && (b = BIO_new_mem_buf(pem, (int)len)) != NULL) {
		X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
		if (x) {
			k = X509_get_pubkey(x);
			X509_free(x);
		}
		BIO_free(b);
	}
	return k;
}

/* The key suits m: its type, and for ECDSA its curve. */
static int key_check(const struct jwt_method *m, EVP_PKEY *k, const char *which, char *err,
                     size_t errlen)
{
	bool ec = m->kind == JWT_EC;
	if (EVP_PKEY_get_base_id(k) != (ec ? EVP_PKEY_EC : EVP_PKEY_RSA)) {
		snprintf(err, errlen, "key is not a valid %s %s key", ec ? "ECDSA" : "RSA", which);
		return -1;
	}
	if (ec && EVP_PKEY_get_bits(k) != m->ec_bits) {
		snprintf(err, errlen, "the %s key's curve (%d bits) is not the one of %s (P-%d)",
		         which, EVP_PKEY_get_bits(k), m->name, m->ec_bits);
		return -1;
	}
	return 0;
}

struct jwt_key *jwt_key_new(const char *method, const uint8_t *pub, size_t pub_len,
                            const uint8_t *priv, size_t priv_len, char *err, size_t errlen)
{
	const struct jwt_method *m = method_find(method);
	struct jwt_key *k;

	if (!m) {
		snprintf(err, errlen, "auth: invalid auth signature method");
		return NULL;
	}
	if (!(k = calloc(1, sizeof(*k)))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	k->m = m;
	if (m->kind == JWT_HMAC) {
		if (priv_len == 0 || !(k->secret = malloc(priv_len))) {
			snprintf(err, errlen, priv_len ? "out of memory" : "auth: missing key data");
			goto fail;
		}
		memcpy(k->secret, priv, priv_len);
		k->secret_len = priv_len;
		return k;
	}
	if (priv_len == 0 && pub_len == 0) {
		snprintf(err, errlen, "auth: missing key data");
		goto fail;
	}
	if (priv_len) {
		if (!(k->priv = pem_private(priv, priv_len))) {
			snprintf(err, errlen, "Invalid Key: Key must be PEM encoded PKCS1 or PKCS8 "
			         "private key");
			goto fail;
		}
		if (key_check(m, k->priv, "private", err, errlen) != 0)
			goto fail;
	}
	if (pub_len) {
		if (!(k->pub = pem_public(pub, pub_len))) {
			snprintf(err, errlen, "Invalid Key: Key must be a PEM encoded PKCS1 or PKCS8 key");
			goto fail;
		}
		if (key_check(m, k->pub, "public", err, errlen) != 0)
			goto fail;
		if (k->priv && EVP_PKEY_eq(k->pub, k->priv) != 1) {
			snprintf(err, errlen, "auth: public and private keys don't match");
			goto fail;
		}
	}
	return k;
fail:
	jwt_key_free(k);
	return NULL;
}

void jwt_key_free(struct jwt_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->priv);
	EVP_PKEY_free(k->pub);
	if (k->secret)
		OPENSSL_cleanse(k->secret, k->secret_len);
	free(k->secret);
	free(k);
}

bool jwt_key_can_sign(const struct jwt_key *k)
{
	return k->priv != NULL || k->secret != NULL;
}

/* ------------------------------------------------------------ signatures */

/* EVP sign/verify context for k's RSA/PSS/EC key. */
static EVP_MD_CTX *digest_ctx(const struct jwt_key *k, EVP_PKEY *key, bool sign)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	int ok;

	if (!ctx)
		return NULL;
	ok = sign ? EVP_DigestSignInit(ctx, &pctx, k->m->md(), NULL, key)
	          : EVP_DigestVerifyInit(ctx, &pctx, k->m->md(), NULL, key);
	if (ok == 1 && k->m->kind == JWT_PSS)
		ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
		     /* Go signs with a salt as long as the hash and verifies any */
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, sign ? RSA_PSS_SALTLEN_DIGEST
		                                                 : RSA_PSS_SALTLEN_AUTO) == 1;
	if (ok != 1) {
		EVP_MD_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* The signature of in as JWT has it (ECDSA: r || s, each the curve's size). */
static uint8_t *sign_bytes(const struct jwt_key *k, const char *in, size_t len, size_t *siglen)
{
	uint8_t *sig = NULL;
	EVP_MD_CTX *ctx;

	if (k->m->kind == JWT_HMAC) {
		unsigned int n = 0;
		if (!(sig = malloc(EVP_MAX_MD_SIZE)) ||
		    !HMAC(k->m->md(), k->secret, (int)k->secret_len, (const unsigned char *)in, len,
		          sig, &n)) {
			free(sig);
			return NULL;
		}
		*siglen = n;
		return sig;
	}
	if (!k->priv || !(ctx = digest_ctx(k, k->priv, true)))
		return NULL;
	if (EVP_DigestSign(ctx, NULL, siglen, (const unsigned char *)in, len) != 1 ||
	    !(sig = malloc(*siglen)) ||
	    EVP_DigestSign(ctx, sig, siglen, (const unsigned char *)in, len) != 1) {
		free(sig);
		sig = NULL;
	}
	EVP_MD_CTX_free(ctx);
	if (sig && k->m->kind == JWT_EC) { /* DER -> r || s */
		size_t half = ((size_t)k->m->ec_bits + 7) / 8;
		const unsigned char *p = sig;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)*siglen);
		uint8_t *raw = es ? malloc(2 * half) : NULL;
		if (raw && (BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, (int)half) < 0 ||
		            BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + half, (int)half) < 0)) {
			free(raw);
			raw = NULL;
		}
		ECDSA_SIG_free(es);
		free(sig);
		sig = raw;
		*siglen = 2 * half;
	}
	return sig;
}

static bool verify_bytes(const struct jwt_key *k, const char *in, size_t len, const uint8_t *sig,
                         size_t siglen)
{
	uint8_t *der = NULL;
	EVP_MD_CTX *ctx;
	EVP_PKEY *key = k->pub ? k->pub : k->priv;
	bool ok;

	if (k->m->kind == JWT_HMAC) {
		uint8_t mac[EVP_MAX_MD_SIZE];
		unsigned int n = 0;
		return HMAC(k->m->md(), k->secret, (int)k->secret_len, (const unsigned char *)in, len,
		            mac, &n) && n == siglen && CRYPTO_memcmp(mac, sig, n) == 0;
	}
	if (k->m->kind == JWT_EC) { /* r || s -> DER */
		size_t half = ((size_t)k->m->ec_bits + 7) / 8;
		ECDSA_SIG *es;
		BIGNUM *r, *s;
		int n;
		if (siglen != 2 * half || !(es = ECDSA_SIG_new()))
			return false;
		r = BN_bin2bn(sig, (int)half, NULL);
		s = BN_bin2bn(sig + half, (int)half, NULL);
		if (!r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
			BN_free(r);
			BN_free(s);
			ECDSA_SIG_free(es);
			return false;
		}
		n = i2d_ECDSA_SIG(es, &der);
		ECDSA_SIG_free(es);
		if (n <= 0)
			return false;
		sig = der;
		siglen = (size_t)n;
	}
	ctx = digest_ctx(k, key, false);
	ok = ctx && EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)in, len) == 1;
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	return ok;
}

/* ---------------------------------------------------------------- tokens */

static char *json_b64(json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	char *b = s ? base64_encode((const uint8_t *)s, strlen(s), true) : NULL;
	free(s);
	json_decref(j);
	return b;
}

int jwt_sign(const struct jwt_key *k, const char *user, uint64_t rev, int64_t exp, char **out)
{
	char *h, *p, *in = NULL, *sig64 = NULL;
	uint8_t *sig = NULL;
	size_t siglen = 0;
	int rc = -ENOMEM;

	*out = NULL;
	if (!jwt_key_can_sign(k))
		return -EINVAL;
	h = json_b64(json_pack("{s:s,s:s}", "alg", k->m->name, "typ", "JWT"));
	p = json_b64(json_pack("{s:I,s:I,s:s}", "exp", (json_int_t)exp, "revision",
	                       (json_int_t)rev, "username", user));
	if (h && p && asprintf(&in, "%s.%s", h, p) < 0)
		in = NULL;
	if (in && (sig = sign_bytes(k, in, strlen(in), &siglen)) == NULL)
		rc = -EINVAL;
	if (sig && (sig64 = base64_encode(sig, siglen, true)) != NULL &&
	    asprintf(out, "%s.%s", in, sig64) >= 0)
		rc = 0;
	else
		*out = NULL;
	free(h);
	free(p);
	free(in);
	free(sig);
	free(sig64);
	return rc;
}

static json_t *json_part(const char *s, size_t len)
{
	size_t n;
	uint8_t *b = base64_decode(s, len, true, &n);
	json_t *j = b ? json_loadb((const char *)b, n, 0, NULL) : NULL;
	free(b);
	if (j && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

/* A time claim: absent is fine; else a number, and after (or before) now. */
static bool time_ok(json_t *claims, const char *name, int64_t now, bool until)
{
	json_t *v = json_object_get(claims, name);
	double t;
	if (!v)
		return true;
	if (!json_is_number(v))
		return false;
	t = json_number_value(v);
	return until ? (double)now <= t : (double)now >= t;
}

int jwt_verify(const struct jwt_key *k, const char *token, int64_t now, char **user,
               uint64_t *rev, char *why, size_t whylen)
{
	const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	json_t *hdr = NULL, *claims = NULL, *alg, *u, *r;
	uint8_t *sig = NULL;
	size_t siglen = 0;
	int rc = -EINVAL;
	char dummy[8];

	if (!why) {
		why = dummy;
		whylen = sizeof(dummy);
	}
	*user = NULL;
	if (!d2 || strchr(d2 + 1, '.')) {
		snprintf(why, whylen, "token contains an invalid number of segments");
		return -EINVAL;
	}
	if (!(hdr = json_part(token, (size_t)(d1 - token))) ||
	    !(claims = json_part(d1 + 1, (size_t)(d2 - d1 - 1)))) {
		snprintf(why, whylen, "malformed header or claims");
		goto out;
	}
	alg = json_object_get(hdr, "alg");
	if (!json_is_string(alg) || strcmp(json_string_value(alg), k->m->name) != 0) {
		snprintf(why, whylen, "invalid signing method");
		goto out;
	}
	if (!(sig = base64_decode(d2 + 1, strlen(d2 + 1), true, &siglen)) ||
	    !verify_bytes(k, token, (size_t)(d2 - token), sig, siglen)) {
		snprintf(why, whylen, "signature is invalid");
		goto out;
	}
	if (!time_ok(claims, "exp", now, true)) {
		snprintf(why, whylen, "Token is expired");
		goto out;
	}
	if (!time_ok(claims, "iat", now, false) || !time_ok(claims, "nbf", now, false)) {
		snprintf(why, whylen, "Token used before issued or valid");
		goto out;
	}
	u = json_object_get(claims, "username");
	r = json_object_get(claims, "revision");
	if (!json_is_string(u) || !json_is_number(r) || json_number_value(r) < 0 ||
	    !(json_number_value(r) < 1.8e19)) {
		snprintf(why, whylen, "no username or revision claim");
		goto out;
	}
	if (!(*user = strdup(json_string_value(u)))) {
		rc = -ENOMEM;
		goto out;
	}
	*rev = (uint64_t)json_number_value(r);
	rc = 0;
out:
	json_decref(hdr);
	json_decref(claims);
	free(sig);
	return rc;
}
