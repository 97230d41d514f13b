/* common/toklist.h: the comma-list tokenizer behind the Connection header
 * handling (head.c: which headers a Connection value makes hop-by-hop) and
 * the OWS trim of reply.c. RFC 9110 section 5.6.1: elements split on
 * commas, OWS (SP, HTAB) trimmed around each, empty elements skipped; inner
 * whitespace stays part of the element; nothing is read past len. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "toklist.h"

/* The elements of a len-byte view, joined with '|', into a heap copy of
 * exactly len bytes (ASan catches any read past it). */
static void expect_elements(const char *val, size_t len, const char *want)
{
    char got[256];
    size_t o = 0;
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, val, len);
    struct toklist t = toklist_of(copy, len);
    const char *tok;
    size_t n;
    got[0] = '\0';
    while (toklist_next(&t, &tok, &n)) {
        assert_true(n > 0);
        assert_true(tok >= copy && tok + n <= copy + len);
        o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%.*s", o ? "|" : "", (int)n, tok);
    }
    free(copy);
    assert_string_equal(got, want);
}

static const struct {
    const char *val, *want;
} split_cases[] = {
    {"close", "close"},
    {"keep-alive, Upgrade", "keep-alive|Upgrade"},
    {"a,b,c", "a|b|c"},
    {"  a \t,\tb  ", "a|b"},
    /* RFC 9110 section 5.6.1's own examples with empty elements. */
    {"foo,bar", "foo|bar"},
    {"foo ,bar,", "foo|bar"},
    {"foo , ,bar,charlie", "foo|bar|charlie"},
    {",,upgrade,,", "upgrade"},
    /* Whitespace inside an element is the element's. */
    {"keep-alive upgrade, x", "keep-alive upgrade|x"},
    /* Only SP and HTAB are OWS. */
    {"\va\v", "\va\v"},
    /* Nothing but separators: no element. */
    {"", ""},
    {",", ""},
    {" ", ""},
    {",,, ,\t,", ""},
};

static void test_split(void **state)
{
    for (size_t i = 0; i < sizeof(split_cases) / sizeof(split_cases[0]); i++)
        expect_elements(split_cases[i].val, strlen(split_cases[i].val), split_cases[i].want);
}

/* Only len bytes are the value. */
static void test_len_is_exact(void **state)
{
    expect_elements("keep-alive, close", 10, "keep-alive");
    expect_elements("keep-alive, close", 13, "keep-alive|c");
    expect_elements("a, clos", 7, "a|clos");
    expect_elements("a,  \t ,", 7, "a");
    expect_elements("a, b", 0, "");
}

/* Membership: whole elements only, compared without regard to case; no
 * element is empty, so the empty token is never one. */
static const struct {
    const char *val, *tok;
    bool want;
} has_cases[] = {
    {"TE, Trailers", "te", true},
    {"te,trailers", "TRAILERS", true},
    {" gzip ,  chunked\t", "chunked", true},
    {"chunked gzip", "chunked gzip", true},
    {"gzip, chunked", "gzip, chunked", false},
    {"chunked gzip", "chunked", false},
    {"xchunked", "chunked", false},
    {"chunkedx", "chunked", false},
    {" , ", "chunked", false},
    {"te", "", false},
    {"te,", "", false},
    {", \t", "", false},
    {"", "", false},
};

static void test_has(void **state)
{
    for (size_t i = 0; i < sizeof(has_cases) / sizeof(has_cases[0]); i++) {
        const char *v = has_cases[i].val, *tok = has_cases[i].tok;
        if (toklist_has(v, strlen(v), tok, strlen(tok)) != has_cases[i].want)
            fail_msg("toklist_has(\"%s\", \"%s\") is not %d", v, tok, has_cases[i].want);
    }
}

static void test_ows_trim(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {{" \t cors \t", "cors"}, {" \t ", ""}, {"a b", "a b"}, {"", ""}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *p = cases[i].in;
        size_t len = strlen(p);
        ows_trim(&p, &len);
        assert_int_equal(len, strlen(cases[i].out));
        assert_memory_equal(p, cases[i].out, len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_len_is_exact),
        cmocka_unit_test(test_has),
        cmocka_unit_test(test_ows_trim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
