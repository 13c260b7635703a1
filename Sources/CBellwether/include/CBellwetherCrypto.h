// Hash functions for PostgreSQL authentication (md5 and SCRAM-SHA-256),
// written from their specifications so that bellwether links no crypto
// library. They hash what a lease client sends and receives during login;
// nothing here is meant for bulk data or for secrets at rest. A NULL
// pointer is allowed wherever its length is 0.
#ifndef CBELLWETHER_CRYPTO_H
#define CBELLWETHER_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

/// SHA-256 (FIPS 180-4) of `len` bytes at `data`.
void bw_sha256(const void *data, size_t len, unsigned char out[32]);

/// HMAC-SHA-256 (RFC 2104); keys longer than 64 bytes are hashed first.
void bw_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                    unsigned char out[32]);

/// PBKDF2 (RFC 8018) with HMAC-SHA-256 as its pseudorandom function: `outlen`
/// bytes derived from `pass` and `salt` by `iterations` rounds. Returns 0, or
/// -EINVAL (nothing written) when `iterations` is 0 or `outlen` is 0 or more
/// than the (2^32 - 1) blocks RFC 8018 allows.
int bw_pbkdf2_sha256(const void *pass, size_t passlen, const void *salt, size_t saltlen,
                     uint32_t iterations, unsigned char *out, size_t outlen);

/// MD5 (RFC 1321). Broken as a hash; here only because PostgreSQL's
/// `md5` password method is built on it.
void bw_md5(const void *data, size_t len, unsigned char out[16]);

#endif
