/* common/siphash.c: SipHash-2-4 against the reference test vectors (the
 * paper's appendix and vectors.h of github.com/veorq/SipHash: key 00 01 ..
 * 0f, messages 00 01 .. (n-1) for n = 0..63), from exact-size heap copies at
 * every alignment so ASan catches a read past the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "siphash.h"

/* vectors_sip64[n], its 8 output bytes read little-endian. */
static const uint64_t vectors[64] = {
    0x726fdb47dd0e0e31ull, 0x74f839c593dc67fdull, 0x0d6c8009d9a94f5aull, 0x85676696d7fb7e2dull,
    0xcf2794e0277187b7ull, 0x18765564cd99a68dull, 0xcbc9466e58fee3ceull, 0xab0200f58b01d137ull,
    0x93f5f5799a932462ull, 0x9e0082df0ba9e4b0ull, 0x7a5dbbc594ddb9f3ull, 0xf4b32f46226bada7ull,
    0x751e8fbc860ee5fbull, 0x14ea5627c0843d90ull, 0xf723ca908e7af2eeull, 0xa129ca6149be45e5ull,
    0x3f2acc7f57c29bdbull, 0x699ae9f52cbe4794ull, 0x4bc1b3f0968dd39cull, 0xbb6dc91da77961bdull,
    0xbed65cf21aa2ee98ull, 0xd0f2cbb02e3b67c7ull, 0x93536795e3a33e88ull, 0xa80c038ccd5ccec8ull,
    0xb8ad50c6f649af94ull, 0xbce192de8a85b8eaull, 0x17d835b85bbb15f3ull, 0x2f2e6163076bcfadull,
    0xde4daaaca71dc9a5ull, 0xa6a2506687956571ull, 0xad87a3535c49ef28ull, 0x32d892fad841c342ull,
    0x7127512f72f27cceull, 0xa7f32346f95978e3ull, 0x12e0b01abb051238ull, 0x15e034d40fa197aeull,
    0x314dffbe0815a3b4ull, 0x027990f029623981ull, 0xcadcd4e59ef40c4dull, 0x9abfd8766a33735cull,
    0x0e3ea96b5304a7d0ull, 0xad0c42d6fc585992ull, 0x187306c89bc215a9ull, 0xd4a60abcf3792b95ull,
    0xf935451de4f21df2ull, 0xa9538f0419755787ull, 0xdb9acddff56ca510ull, 0xd06c98cd5c0975ebull,
    0xe612a3cb9ecba951ull, 0xc766e62cfcadaf96ull, 0xee64435a9752fe72ull, 0xa192d576b245165aull,
    0x0a8787bf8ecb74b2ull, 0x81b3e73d20b49b6full, 0x7fa8220ba3b2eceaull, 0x245731c13ca42499ull,
    0xb78dbfaf3a8d83bdull, 0xea1ad565322a1a0bull, 0x60e61c23a3795013ull, 0x6606d7e446282b93ull,
    0x6ca4ecb15c5f91e1ull, 0x9f626da15c9625f3ull, 0xe51b38608ef25f57ull, 0x958a324ceb064572ull,
};

static struct siphash_key reference_key(void)
{
    uint8_t k[SIPHASH_KEY_BYTES];
    for (int i = 0; i < SIPHASH_KEY_BYTES; i++)
        k[i] = (uint8_t)i;
    return siphash_key_from_bytes(k);
}

/* SipHash of 00 01 .. (n-1), the message copied `shift` bytes into an
 * allocation that ends exactly where it does. */
static uint64_t hash_message(size_t n, size_t shift, const struct siphash_key *key)
{
    uint8_t *buf = malloc(n + shift + 1);
    assert_non_null(buf);
    uint8_t *msg = buf + shift;
    for (size_t i = 0; i < n; i++)
        msg[i] = (uint8_t)i;
    uint64_t h = siphash24(msg, n, key);
    free(buf);
    return h;
}

static void test_reference_vectors(void **state)
{
    struct siphash_key key = reference_key();
    for (size_t n = 0; n < 64; n++)
        for (size_t shift = 0; shift < 8; shift++)
            if (hash_message(n, shift, &key) != vectors[n])
                fail_msg("length %zu, offset %zu: %#llx, want %#llx", n, shift,
                         (unsigned long long)hash_message(n, shift, &key),
                         (unsigned long long)vectors[n]);
}

/* The paper's worked example (appendix A): 15 bytes, state after the key. */
static void test_paper_example(void **state)
{
    struct siphash_key key = reference_key();
    assert_true(key.k0 == 0x0706050403020100ull);
    assert_true(key.k1 == 0x0f0e0d0c0b0a0908ull);
    assert_true(hash_message(15, 0, &key) == 0xa129ca6149be45e5ull);
}

/* The empty message needs no data pointer. */
static void test_empty_null(void **state)
{
    struct siphash_key key = reference_key();
    assert_true(siphash24(NULL, 0, &key) == vectors[0]);
}

/* Another key, another hash: what makes colliding ids unguessable. */
static void test_key_matters(void **state)
{
    struct siphash_key a = reference_key(), b = a;
    b.k1 ^= 1;
    const char *id = "i62mff4ahtrdfdkyn2esc";
    assert_true(siphash24(id, strlen(id), &a) != siphash24(id, strlen(id), &b));
    b = a;
    b.k0 ^= 1ull << 63;
    assert_true(siphash24(id, strlen(id), &a) != siphash24(id, strlen(id), &b));
}

/* The length is part of the hash: a trailing NUL is not ignored. */
static void test_length_matters(void **state)
{
    struct siphash_key key = reference_key();
    const char s[] = "abc\0\0\0\0\0\0";
    assert_true(siphash24(s, 3, &key) != siphash24(s, 4, &key));
    assert_true(siphash24(s, 8, &key) != siphash24(s, 9, &key));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vectors), cmocka_unit_test(test_paper_example),
        cmocka_unit_test(test_empty_null),        cmocka_unit_test(test_key_matters),
        cmocka_unit_test(test_length_matters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
