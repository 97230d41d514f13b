/* SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF",
 * 2012): a keyed 64-bit hash for tables whose keys an attacker chooses (the
 * route cache, keyed by sandbox ids from the Host header). Without the key,
 * nobody can pick keys that collide, so chains stay short (DESIGN.md rule
 * 12). Pure.
 *
 * A small implementation of our own: OpenSSL's SipHash is an EVP_MAC that
 * needs a context allocated (EVP_MAC_CTX_new, init with the key, update,
 * final, free) for every message, which is several times the cost of
 * hashing a 20-byte id on a path that runs for every request. */
#ifndef EDGEPROXY_SIPHASH_H
#define EDGEPROXY_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define SIPHASH_KEY_BYTES 16

struct siphash_key {
    uint64_t k0, k1; /* the 16 key bytes, read little-endian */
};

/* The key from its 16 bytes, as the reference implementation reads them. */
struct siphash_key siphash_key_from_bytes(const uint8_t bytes[SIPHASH_KEY_BYTES]);

/* SipHash-2-4 of len bytes, 64-bit output (the reference implementation's
 * output bytes, read little-endian). */
uint64_t siphash24(const void *data, size_t len, const struct siphash_key *key);

#endif
