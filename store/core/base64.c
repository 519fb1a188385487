/* base64.c - base64.h on OpenSSL's EVP_EncodeBlock / EVP_DecodeBlock; what
 * they do not do: the URL-safe alphabet, missing padding, and refusing
 * characters outside the alphabet (EVP_DecodeBlock skips blanks). */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/base64.h"

char *base64_encode(const uint8_t *in, size_t len, bool url)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);
	int n;

	if (!out)
		return NULL;
	n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	if (url) {
		while (n > 0 && out[n - 1] == '=')
			n--;
		out[n] = '\0';
		for (int i = 0; i < n; i++)
			out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	}
	return out;
}

static bool in_alphabet(char c, bool url)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || (!url && (c == '+' || c == '/'));
}

uint8_t *base64_decode(const char *in, size_t len, bool url, size_t *outlen)
{
	size_t data = len, pad;
	char *t;
	uint8_t *out;
	int n;

	/* padding only at the end, at most two, and never in base64url */
	while (!url && data > 0 && len - data < 2 && in[data - 1] == '=')
		data--;
	if ((!url && data != len && len % 4 != 0) || data % 4 == 1)
		return NULL;
	for (size_t i = 0; i < data; i++)
		if (!in_alphabet(in[i], url))
			return NULL;
	pad = (4 - data % 4) % 4;
	if (!(t = malloc(data + pad + 1)))
		return NULL;
	for (size_t i = 0; i < data; i++)
		t[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
	memset(t + data, '=', pad);
	if (!(out = malloc((data + pad) / 4 * 3 + 1))) {
		free(t);
		return NULL;
	}
	n = EVP_DecodeBlock(out, (unsigned char *)t, (int)(data + pad));
	free(t);
	if (n < 0 || (size_t)n < pad) {
		free(out);
		return NULL;
	}
	*outlen = (size_t)n - pad;
	return out;
}
