/* common/outbuf.c: the bounded writer, its numbers and its JSON strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../json_strict.h"
#include "outbuf.h"

#define S(lit) (lit), sizeof(lit) - 1

static char out[256];

/* The body of s[0..n) under budget, NUL-terminated in out. */
static const char *body(const char *s, size_t n, size_t budget, bool *whole)
{
    struct outbuf ob;

    memset(out, 0, sizeof(out));
    outbuf_init(&ob, out, sizeof(out) - 1);
    *whole = outbuf_json_body(&ob, s, n, budget);
    assert_false(ob.truncated);
    assert_true(ob.len <= budget);
    return out;
}

static void expect(const char *s, size_t n, size_t budget, const char *want, bool want_whole)
{
    bool whole;
    const char *got = body(s, n, budget, &whole);

    if (strcmp(got, want) != 0 || whole != want_whole)
        fail_msg("input of %zu bytes, budget %zu: got \"%s\" (%s), want \"%s\" (%s)", n, budget,
                 got, whole ? "whole" : "cut", want, want_whole ? "whole" : "cut");
}

static void test_put_all_or_nothing(void **state)
{
    char buf[8 + 8];
    struct outbuf ob;

    memset(buf, '#', sizeof(buf));
    outbuf_init(&ob, buf, 8);
    assert_true(outbuf_lit(&ob, "abc"));
    assert_true(outbuf_put(&ob, "defgh", 5)); /* exactly full */
    assert_int_equal(ob.len, 8);
    assert_false(ob.truncated);
    assert_true(outbuf_put(&ob, "", 0));
    assert_false(outbuf_put(&ob, "x", 1));
    assert_true(ob.truncated);
    assert_int_equal(ob.len, 8);
    assert_memory_equal(buf, "abcdefgh########", 16);

    /* Sticky: after a refused append nothing more is stored, not even what
     * would fit, so the content is a clean cut between appends. */
    outbuf_init(&ob, buf, 8);
    assert_true(outbuf_lit(&ob, "abc"));
    assert_false(outbuf_lit(&ob, "123456"));
    assert_false(outbuf_lit(&ob, "z"));
    assert_false(outbuf_uint(&ob, 7, 1));
    assert_false(outbuf_json_str(&ob, S("q"), 10));
    assert_int_equal(ob.len, 3);
    assert_true(ob.truncated);
}

static void test_zero_capacity_and_counting(void **state)
{
    struct outbuf ob;
    char c = '#';

    outbuf_init(&ob, &c, 0);
    assert_false(outbuf_lit(&ob, "a"));
    assert_true(ob.truncated);
    assert_int_equal(c, '#');

    /* buf NULL: counts exactly what would be written, stores nothing. */
    outbuf_init(&ob, NULL, SIZE_MAX);
    assert_true(outbuf_lit(&ob, "ab"));
    assert_true(outbuf_int(&ob, -12));
    assert_true(outbuf_json_str(&ob, S("\"\x01\xff\xc3\xa9"), SIZE_MAX));
    assert_int_equal(ob.len, 2 + 3 + 1 + 2 + 6 + 6 + 2 + 1);
    assert_false(ob.truncated);
}

static void test_numbers(void **state)
{
    static const struct {
        uint64_t v;
        unsigned width;
        const char *want;
    } u[] = {
        {0, 0, "0"},
        {0, 1, "0"},
        {0, 3, "000"},
        {7, 2, "07"},
        {123, 2, "123"},
        {59, 2, "59"},
        {999, 3, "999"},
        {UINT64_MAX, 1, "18446744073709551615"},
        {1, 25, "00000000000000000001"}, /* width clamped to 20 */
    };
    static const struct {
        int64_t v;
        const char *want;
    } s[] = {{0, "0"},
             {-1, "-1"},
             {42, "42"},
             {INT64_MAX, "9223372036854775807"},
             {INT64_MIN, "-9223372036854775808"}};
    struct outbuf ob;

    for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
        memset(out, 0, sizeof(out));
        outbuf_init(&ob, out, sizeof(out) - 1);
        assert_true(outbuf_uint(&ob, u[i].v, u[i].width));
        assert_string_equal(out, u[i].want);
    }
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        memset(out, 0, sizeof(out));
        outbuf_init(&ob, out, sizeof(out) - 1);
        assert_true(outbuf_int(&ob, s[i].v));
        assert_string_equal(out, s[i].want);
    }
    /* A number is one append: it fits whole or not at all. */
    memset(out, 0, sizeof(out));
    outbuf_init(&ob, out, 3);
    assert_false(outbuf_int(&ob, -100));
    assert_int_equal(ob.len, 0);
    assert_true(ob.truncated);
}

static void test_json_escapes(void **state)
{
    expect(S(""), 100, "", true);
    expect(S("plain /path?q=1"), 100, "plain /path?q=1", true);
    expect(S("a\"b\\c"), 100, "a\\\"b\\\\c", true);
    expect(S("\x00\x01\t\n\r\x1f\x7f"), 100, "\\u0000\\u0001\\u0009\\u000a\\u000d\\u001f\\u007f",
           true);
    /* '/' need not be escaped (RFC 8259 section 7) and is not. */
    expect(S("</script>"), 100, "</script>", true);
}

static void test_json_every_single_byte(void **state)
{
    for (unsigned c = 0; c < 256; c++) {
        char in = (char)c, want[8];
        bool whole;

        if (c == '"' || c == '\\')
            snprintf(want, sizeof(want), "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            snprintf(want, sizeof(want), "\\u%04x", c);
        else if (c >= 0x80)
            snprintf(want, sizeof(want), "\\ufffd"); /* never whole alone */
        else
            snprintf(want, sizeof(want), "%c", c);
        assert_string_equal(body(&in, 1, 100, &whole), want);
        assert_true(whole);
    }
}

static void test_json_utf8(void **state)
{
    /* well-formed: kept byte for byte, at the edges of each range */
    expect(S("\xc2\x80 \xdf\xbf \xe0\xa0\x80 \xef\xbf\xbf \xed\x9f\xbf \xee\x80\x80"), 100,
           "\xc2\x80 \xdf\xbf \xe0\xa0\x80 \xef\xbf\xbf \xed\x9f\xbf \xee\x80\x80", true);
    expect(S("\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf caf\xc3\xa9 \xf0\x9f\x98\x80"), 100,
           "\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf caf\xc3\xa9 \xf0\x9f\x98\x80", true);
    /* ill-formed: each byte not part of a well-formed sequence is U+FFFD */
    expect(S("\x80"), 100, "\\ufffd", true);            /* lone continuation */
    expect(S("\xc0\xaf"), 100, "\\ufffd\\ufffd", true); /* overlong '/' */
    expect(S("\xc1\xbf"), 100, "\\ufffd\\ufffd", true);
    expect(S("\xe0\x80\xaf"), 100, "\\ufffd\\ufffd\\ufffd", true); /* overlong 3 */
    expect(S("\xf0\x80\x80\xaf"), 100, "\\ufffd\\ufffd\\ufffd\\ufffd", true);
    expect(S("\xed\xa0\x80"), 100, "\\ufffd\\ufffd\\ufffd", true);            /* surrogate D800 */
    expect(S("\xed\xbf\xbf"), 100, "\\ufffd\\ufffd\\ufffd", true);            /* surrogate DFFF */
    expect(S("\xf4\x90\x80\x80"), 100, "\\ufffd\\ufffd\\ufffd\\ufffd", true); /* > U+10FFFF */
    expect(S("\xf5\x80\x80\x80"), 100, "\\ufffd\\ufffd\\ufffd\\ufffd", true);
    expect(S("\xff\xfe"), 100, "\\ufffd\\ufffd", true);
    /* cut short: at the end, and followed by ASCII */
    expect(S("a\xe2\x82"), 100, "a\\ufffd\\ufffd", true);
    expect(S("\xe2\x82x"), 100, "\\ufffd\\ufffdx", true);
    expect(S("\xf0\x9f\x98"), 100, "\\ufffd\\ufffd\\ufffd", true);
    /* a good sequence right after a bad byte is kept */
    expect(S("\xc3\xc3\xa9"), 100, "\\ufffd\xc3\xa9", true);
}

static void test_json_budget_cuts_between_units(void **state)
{
    expect(S("abcdef"), 0, "", false);
    expect(S("abcdef"), 3, "abc", false);
    expect(S("abcdef"), 6, "abcdef", true);
    expect(S("ab\"cd"), 3, "ab", false); /* \" needs 2 */
    expect(S("ab\"cd"), 4, "ab\\\"", false);
    expect(S("a\x01"), 6, "a", false); /* \u0001 needs 6 */
    expect(S("a\x01"), 7, "a\\u0001", true);
    expect(S("a\xc3\xa9"), 2, "a", false); /* never half of é */
    expect(S("a\xc3\xa9"), 3, "a\xc3\xa9", true);
    expect(S("a\xe2\x82\xac"), 3, "a", false);
    expect(S("a\xf0\x9f\x98\x80"), 4, "a", false);
    expect(S("a\xf0\x9f\x98\x80"), 5, "a\xf0\x9f\x98\x80", true);
    expect(S("a\xff"), 6, "a", false); /* \ufffd needs 6 */
    expect(S("a\xff"), 7, "a\\ufffd", true);
}

/* The writer's capacity (6 of a 10-byte buffer), not the budget, stops the
 * string: marked truncated, nothing past cap, no escape split. */
static void test_json_capacity_cut(void **state)
{
    static const struct {
        const char *in;
        size_t budget;
        bool truncated;
        const char *want; /* all 10 bytes of the buffer */
    } c[] = {
        {"abcdefgh", 100, true, "\"abcde####"},
        {"abc\x01", 100, true, "\"abc######"}, /* \u0001 would end past cap */
        {"ab\xc3\xa9\xc3\xa9", 100, true, "\"ab\xc3\xa9######"},
        /* a budget of exactly what the capacity leaves: a budget cut */
        {"abcdefgh", 4, false, "\"abcd\"####"},
    };

    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        char buf[10];
        struct outbuf ob;

        memset(buf, '#', sizeof(buf));
        outbuf_init(&ob, buf, 6);
        assert_false(outbuf_json_str(&ob, c[i].in, strlen(c[i].in), c[i].budget));
        assert_int_equal(ob.truncated, c[i].truncated);
        assert_memory_equal(buf, c[i].want, sizeof(buf));
    }
}

/* Every input of two bytes under every budget up to 14: the quoted output
 * is strict JSON, within budget, and a longer budget only adds to it. */
static void test_json_two_bytes_every_budget(void **state)
{
    for (unsigned v = 0; v < 65536; v++) {
        char in[2] = {(char)(v >> 8), (char)v};
        char prev[32] = "";
        size_t prev_len = 0;

        for (size_t budget = 0; budget <= 14; budget++) {
            char buf[32];
            struct outbuf ob;

            outbuf_init(&ob, buf, sizeof(buf));
            bool whole = outbuf_json_str(&ob, in, 2, budget);
            assert_false(ob.truncated);
            assert_true(ob.len <= budget + 2);
            if (!json_strict_valid(buf, ob.len))
                fail_msg("%02x %02x budget %zu: %.*s", v >> 8, v & 255, budget, (int)ob.len, buf);
            /* prefix property on the body */
            assert_true(ob.len - 1 >= prev_len);
            assert_memory_equal(buf, prev, prev_len);
            memcpy(prev, buf, ob.len - 1);
            prev_len = ob.len - 1;
            if (whole)
                assert_true(budget >= 2);
        }
    }
}

static void test_utf8_len(void **state)
{
    assert_int_equal(outbuf_utf8_len((const unsigned char *)"a", 1), 1);
    assert_int_equal(outbuf_utf8_len((const unsigned char *)"\xc3\xa9", 2), 2);
    assert_int_equal(outbuf_utf8_len((const unsigned char *)"\xc3\xa9", 1), 0);
    assert_int_equal(outbuf_utf8_len((const unsigned char *)"\xe2\x82\xac", 3), 3);
    assert_int_equal(outbuf_utf8_len((const unsigned char *)"\xf4\x8f\xbf\xbf", 4), 4);
    assert_int_equal(outbuf_utf8_len((const unsigned char *)"\xf4\x90\x80\x80", 4), 0);
    assert_int_equal(outbuf_utf8_len((const unsigned char *)"\xed\xa0\x80", 3), 0);
    assert_int_equal(outbuf_utf8_len((const unsigned char *)"\xe0\x9f\xbf", 3), 0);
}

/* The judge of the test above: it must refuse what a broken writer would
 * produce. */
static void test_strict_validator(void **state)
{
    static const char *const bad[] = {
        "\"a",          "\"\x01\"",    "\"\xc3\"",    "\"\xc3(\"", "\"\xed\xa0\x80\"",
        "\"\xc0\xaf\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\x41\"", "\"\\u00g0\"",
        "\"a\"x",       "{\"a\":}",    "{\"a\":1,}",  "[1,]",      "01",
        "1.",           "\"\\\"",
    };
    static const char *const good[] = {
        "\"\"",
        "\"\\ud83d\\ude00\"",
        "\"\xf0\x9f\x98\x80\"",
        "{\"a\":[1,-0.5e3,null,true]}",
        " {} ",
        "\"\\/\\b\\f\\n\\r\\t\\u00e9\"",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (json_strict_valid(bad[i], strlen(bad[i])))
            fail_msg("accepted %s", bad[i]);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!json_strict_valid(good[i], strlen(good[i])))
            fail_msg("refused %s", good[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_all_or_nothing),
        cmocka_unit_test(test_zero_capacity_and_counting),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_json_every_single_byte),
        cmocka_unit_test(test_json_utf8),
        cmocka_unit_test(test_json_budget_cuts_between_units),
        cmocka_unit_test(test_json_capacity_cut),
        cmocka_unit_test(test_json_two_bytes_every_budget),
        cmocka_unit_test(test_utf8_len),
        cmocka_unit_test(test_strict_validator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
