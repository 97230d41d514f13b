/* common/strmap.c: the intrusive string-keyed table behind the route cache
 * and the upstream pools. put/get/remove, growth at load factor 1 (every
 * node still reachable after a rehash), and strmap_each with the callback
 * removing, and freeing, the node it is given. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "strmap.h"

struct item {
    struct strmap_node node;
    int value;
    char key[32];
};

#define ITEM_OF(n) ((struct item *)((char *)(n)-offsetof(struct item, node)))

static struct item *item_new(const char *key, int value)
{
    struct item *it = calloc(1, sizeof(*it));
    assert_non_null(it);
    snprintf(it->key, sizeof(it->key), "%s", key);
    it->value = value;
    return it;
}

static struct item *put(struct strmap *m, const char *key, int value)
{
    struct item *it = item_new(key, value);
    strmap_put(m, &it->node, it->key);
    return it;
}

static struct item *get(const struct strmap *m, const char *key)
{
    struct strmap_node *n = strmap_get(m, key);
    return n ? ITEM_OF(n) : NULL;
}

static void free_item(struct strmap_node *n, void *arg)
{
    struct strmap *m = arg;
    strmap_remove(m, n);
    free(ITEM_OF(n));
}

/* Removes and frees every node (each with removal, the way lookup_free and
 * the sweeper use it), then frees the buckets. */
static void destroy_all(struct strmap *m)
{
    strmap_each(m, free_item, m);
    assert_int_equal(m->count, 0);
    strmap_destroy(m);
    assert_null(m->buckets);
    assert_int_equal(m->nbuckets, 0);
    assert_int_equal(m->count, 0);
}

/* Walks every chain: the count matches and every node sits in the bucket its
 * hash says. */
static size_t check_invariants(const struct strmap *m)
{
    size_t n = 0;
    assert_true(m->nbuckets >= 16);
    assert_int_equal(m->nbuckets & (m->nbuckets - 1), 0);
    for (size_t b = 0; b < m->nbuckets; b++)
        for (struct strmap_node *x = m->buckets[b]; x; x = x->next) {
            assert_int_equal(x->hash & (m->nbuckets - 1), b);
            n++;
        }
    assert_int_equal(n, m->count);
    return n;
}

static void test_init_rounds_buckets(void **state)
{
    struct strmap m;
    size_t cases[][2] = {{0, 16},      {1, 16},      {16, 16},    {17, 32},
                         {1000, 1024}, {1024, 1024}, {1025, 2048}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(strmap_init(&m, cases[i][0]), 0);
        assert_int_equal(m.nbuckets, cases[i][1]);
        assert_int_equal(m.count, 0);
        for (size_t b = 0; b < m.nbuckets; b++)
            assert_null(m.buckets[b]);
        strmap_destroy(&m);
    }
}

static void test_put_get(void **state)
{
    struct strmap m;
    assert_int_equal(strmap_init(&m, 16), 0);
    assert_null(get(&m, "a"));
    struct item *a = put(&m, "a", 1);
    struct item *b = put(&m, "b", 2);
    struct item *e = put(&m, "", 3); /* the empty key is a key */
    assert_int_equal(m.count, 3);
    assert_ptr_equal(get(&m, "a"), a);
    assert_ptr_equal(get(&m, "b"), b);
    assert_ptr_equal(get(&m, ""), e);
    assert_string_equal(a->node.key, "a");
    assert_null(get(&m, "c"));
    assert_null(get(&m, "A")); /* case-sensitive: callers lower-case ids */
    assert_null(get(&m, "aa"));
    /* The map looks keys up by content, not by pointer. */
    char key[] = "b";
    assert_ptr_equal(get(&m, key), b);
    check_invariants(&m);
    destroy_all(&m);
}

static void test_remove(void **state)
{
    struct strmap m;
    assert_int_equal(strmap_init(&m, 16), 0);
    struct item *its[50];
    char key[32];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "sb%d", i);
        its[i] = put(&m, key, i);
    }
    /* Remove from the middle, the ends of chains, everywhere. */
    for (int i = 0; i < 50; i += 3) {
        strmap_remove(&m, &its[i]->node);
        free(its[i]);
        its[i] = NULL;
    }
    check_invariants(&m);
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "sb%d", i);
        if (i % 3 == 0)
            assert_null(get(&m, key));
        else
            assert_ptr_equal(get(&m, key), its[i]);
    }
    assert_int_equal(m.count, 50 - 17);
    /* Put back a removed key. */
    struct item *again = put(&m, "sb0", 100);
    assert_ptr_equal(get(&m, "sb0"), again);
    check_invariants(&m);
    destroy_all(&m);
}

static void test_remove_node_not_in_map(void **state)
{
    struct strmap m;
    assert_int_equal(strmap_init(&m, 16), 0);
    struct item *a = put(&m, "a", 1);
    strmap_remove(&m, &a->node);
    assert_int_equal(m.count, 0);
    /* Twice: a no-op, the count does not go below zero. */
    strmap_remove(&m, &a->node);
    assert_int_equal(m.count, 0);
    assert_null(get(&m, "a"));
    free(a);
    destroy_all(&m);
}

static void test_same_key_twice_shadows(void **state)
{
    /* The contract says callers check first; if they do not, the newest
   * wins and removing it uncovers the older one (no corruption). */
    struct strmap m;
    assert_int_equal(strmap_init(&m, 16), 0);
    struct item *old = put(&m, "k", 1);
    struct item *neu = put(&m, "k", 2);
    assert_int_equal(m.count, 2);
    assert_ptr_equal(get(&m, "k"), neu);
    strmap_remove(&m, &neu->node);
    free(neu);
    assert_ptr_equal(get(&m, "k"), old);
    destroy_all(&m);
}

static void test_grow_keeps_everything(void **state)
{
    struct strmap m;
    assert_int_equal(strmap_init(&m, 16), 0);
    char key[32];
    enum { N = 5000 };
    static struct item *its[N];
    size_t last_buckets = m.nbuckets;
    int grows = 0;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "i62mff4ahtrdfdk%d", i);
        its[i] = put(&m, key, i);
        /* Load factor at most 1 after every put (grow happens before). */
        assert_true(m.count <= m.nbuckets);
        if (m.nbuckets != last_buckets) {
            assert_int_equal(m.nbuckets, last_buckets * 2);
            last_buckets = m.nbuckets;
            grows++;
            check_invariants(&m);
        }
    }
    assert_true(grows >= 8); /* 16 -> 8192 */
    assert_true(m.nbuckets >= N / 2);
    assert_int_equal(check_invariants(&m), N);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "i62mff4ahtrdfdk%d", i);
        struct item *it = get(&m, key);
        assert_ptr_equal(it, its[i]);
        assert_int_equal(it->value, i);
    }
    destroy_all(&m);
}

struct each_ctx {
    struct strmap *m;
    int seen;
    int removed;
    int seen_values[200];
};

static void each_remove_odd(struct strmap_node *n, void *arg)
{
    struct each_ctx *c = arg;
    struct item *it = ITEM_OF(n);
    c->seen_values[it->value]++;
    c->seen++;
    if (it->value % 2) {
        strmap_remove(c->m, n);
        free(it); /* freed inside the walk: ASan catches a later touch */
        c->removed++;
    }
}

static void test_each_with_removal(void **state)
{
    struct strmap m;
    assert_int_equal(strmap_init(&m, 16), 0);
    char key[32];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "x%d", i);
        put(&m, key, i);
    }
    struct each_ctx c = {.m = &m};
    strmap_each(&m, each_remove_odd, &c);
    assert_int_equal(c.seen, 200);
    for (int i = 0; i < 200; i++)
        assert_int_equal(c.seen_values[i], 1); /* each node exactly once */
    assert_int_equal(c.removed, 100);
    assert_int_equal(m.count, 100);
    check_invariants(&m);
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "x%d", i);
        struct item *it = get(&m, key);
        if (i % 2)
            assert_null(it);
        else
            assert_non_null(it);
    }
    /* A second walk sees only the survivors. */
    memset(&c, 0, sizeof(c));
    c.m = &m;
    strmap_each(&m, each_remove_odd, &c);
    assert_int_equal(c.seen, 100);
    assert_int_equal(c.removed, 0);
    destroy_all(&m);
}

static void count_node(struct strmap_node *n, void *arg)
{
    (*(int *)arg)++;
}

static void test_each_empty(void **state)
{
    struct strmap m;
    int n = 0;
    assert_int_equal(strmap_init(&m, 16), 0);
    strmap_each(&m, count_node, &n);
    assert_int_equal(n, 0);
    strmap_destroy(&m);
}

static void test_long_keys(void **state)
{
    struct strmap m;
    assert_int_equal(strmap_init(&m, 16), 0);
    /* Keys that differ only in the last byte. */
    struct item *a = put(&m, "0123456789012345678901234567890", 1);
    struct item *b = put(&m, "0123456789012345678901234567891", 2);
    assert_ptr_equal(get(&m, "0123456789012345678901234567890"), a);
    assert_ptr_equal(get(&m, "0123456789012345678901234567891"), b);
    assert_null(get(&m, "012345678901234567890123456789"));
    destroy_all(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_rounds_buckets),
        cmocka_unit_test(test_put_get),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_remove_node_not_in_map),
        cmocka_unit_test(test_same_key_twice_shadows),
        cmocka_unit_test(test_grow_keeps_everything),
        cmocka_unit_test(test_each_with_removal),
        cmocka_unit_test(test_each_empty),
        cmocka_unit_test(test_long_keys),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
