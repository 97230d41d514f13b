#include "siphash.h"

#include <string.h>

/* Reads 8 bytes little-endian whatever the host order. */
static uint64_t load_le64(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

struct siphash_key siphash_key_from_bytes(const uint8_t bytes[SIPHASH_KEY_BYTES])
{
    struct siphash_key k = {load_le64(bytes), load_le64(bytes + 8)};
    return k;
}

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

struct sip_state {
    uint64_t v0, v1, v2, v3;
};

/* One SipRound (paper, section 2). */
static inline void sip_round(struct sip_state *s)
{
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

/* Compression of one 8-byte word m: c = 2 rounds. */
static inline void sip_compress(struct sip_state *s, uint64_t m)
{
    s->v3 ^= m;
    sip_round(s);
    sip_round(s);
    s->v0 ^= m;
}

uint64_t siphash24(const void *data, size_t len, const struct siphash_key *key)
{
    const uint8_t *p = data;
    /* "somepseudorandomlygeneratedbytes" */
    struct sip_state s = {key->k0 ^ 0x736f6d6570736575ull, key->k1 ^ 0x646f72616e646f6dull,
                          key->k0 ^ 0x6c7967656e657261ull, key->k1 ^ 0x7465646279746573ull};
    size_t words = len / 8;
    for (size_t i = 0; i < words; i++)
        sip_compress(&s, load_le64(p + 8 * i));
    /* The last word: the remaining bytes, zero-padded, with len mod 256 in
     * its top byte. */
    uint8_t tail[8] = {0};
    if (len % 8)
        memcpy(tail, p + 8 * words, len % 8);
    tail[7] = (uint8_t)len;
    sip_compress(&s, load_le64(tail));
    /* Finalization: d = 4 rounds. */
    s.v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        sip_round(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}
