/* base64.h - base64 in the two forms Bollard meets, on OpenSSL's codec:
 * the standard alphabet with padding (the gRPC gateway's JSON bytes) and
 * base64url without padding (JWT). */
#ifndef BOLLARD_CORE_BASE64_H
#define BOLLARD_CORE_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* len bytes at in as base64 (url: base64url without padding): malloc'ed,
 * NUL-terminated; NULL when out of memory. */
char *base64_encode(const uint8_t *in, size_t len, bool url);

/* The bytes of the len characters at in, malloc'ed (*outlen of them).
 * url: base64url without padding only; else either alphabet (as Go's
 * jsonpb takes bytes), padded or not. NULL for bad input or no memory. */
uint8_t *base64_decode(const char *in, size_t len, bool url, size_t *outlen);

#endif
