/* common/list.h: the intrusive doubly-linked list behind the route cache's
 * LRU lists and waiters, the upstream pools' idle lists and the worker's
 * sessions. Order is what the users rely on (newest first, LRU from the
 * tail, waiters answered in arrival order): every test reads the whole list
 * forwards and backwards. A detached node is NULL-linked, so zeroed memory
 * unlinks as a no-op; the loop may free the node it is given. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "list.h"

struct item {
    int value;
    struct list_node link; /* not first: container_of must subtract */
};

#define ITEM(n) container_of(n, struct item, link)

/* The values on head, front to back, as a string ("" when empty), after
 * checking that the backward walk is the same list reversed. */
static const char *order(const struct list_node *head)
{
    static char buf[64];
    char back[64];
    size_t n = 0, m = 0;
    for (const struct list_node *x = head->next; x != head; x = x->next) {
        assert_ptr_equal(x->next->prev, x);
        buf[n++] = (char)('0' + ITEM(x)->value);
    }
    for (const struct list_node *x = head->prev; x != head; x = x->prev)
        back[m++] = (char)('0' + ITEM(x)->value);
    assert_int_equal(n, m);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(buf[i], back[n - 1 - i]);
    buf[n] = '\0';
    return buf;
}

static void items(struct item *it, int count)
{
    memset(it, 0, sizeof(*it) * (size_t)count);
    for (int i = 0; i < count; i++)
        it[i].value = i;
}

static void test_empty(void **state)
{
    struct list_node head;
    list_init(&head);
    assert_true(list_empty(&head));
    assert_null(list_first(&head));
    assert_null(list_last(&head));
    assert_string_equal(order(&head), "");
    static struct list_node anchored = LIST_ANCHOR(anchored);
    assert_true(list_empty(&anchored));
    assert_null(list_first(&anchored));
}

static void test_insert_front_and_back(void **state)
{
    struct list_node head;
    struct item it[5];
    items(it, 5);
    list_init(&head);
    list_insert_front(&head, &it[1].link);
    list_insert_front(&head, &it[0].link); /* newest first */
    list_insert_back(&head, &it[2].link);
    list_insert_back(&head, &it[3].link); /* arrival order */
    assert_string_equal(order(&head), "0123");
    assert_false(list_empty(&head));
    assert_ptr_equal(ITEM(list_first(&head)), &it[0]);
    assert_ptr_equal(ITEM(list_last(&head)), &it[3]);
    list_insert_after(&it[1].link, &it[4].link);
    assert_string_equal(order(&head), "01423");
}

static void test_unlink(void **state)
{
    struct list_node head;
    struct item it[3];
    items(it, 3);
    list_init(&head);
    assert_false(list_linked(&it[0].link)); /* zeroed: on no list */
    list_unlink(&it[0].link);               /* a no-op */
    for (int i = 0; i < 3; i++)
        list_insert_back(&head, &it[i].link);
    assert_true(list_linked(&it[1].link));
    list_unlink(&it[1].link);
    assert_false(list_linked(&it[1].link));
    assert_null(it[1].link.next);
    assert_null(it[1].link.prev);
    assert_string_equal(order(&head), "02");
    list_unlink(&it[1].link); /* twice: still a no-op */
    list_unlink(&it[0].link);
    list_unlink(&it[2].link);
    assert_true(list_empty(&head));
    assert_null(list_last(&head));
}

/* Moves: within the list (LRU touch), from another list, from none; to the
 * back when already last, to the front when already first. */
static void test_move(void **state)
{
    struct list_node a, b;
    struct item it[4];
    items(it, 4);
    list_init(&a);
    list_init(&b);
    for (int i = 0; i < 3; i++)
        list_insert_back(&a, &it[i].link);
    list_move_front(&a, &it[2].link);
    assert_string_equal(order(&a), "201");
    list_move_front(&a, &it[2].link);
    assert_string_equal(order(&a), "201");
    list_move_back(&a, &it[1].link);
    assert_string_equal(order(&a), "201");
    list_move_back(&a, &it[2].link);
    assert_string_equal(order(&a), "012");
    list_move_back(&b, &it[0].link); /* to another list */
    assert_string_equal(order(&a), "12");
    assert_string_equal(order(&b), "0");
    list_move_front(&b, &it[3].link); /* from none */
    assert_string_equal(order(&b), "30");
    list_move_front(&a, &it[0].link);
    list_move_front(&a, &it[3].link);
    assert_true(list_empty(&b));
    assert_string_equal(order(&a), "3012");
}

static void test_splice_back(void **state)
{
    struct list_node a, b;
    struct item it[5];
    items(it, 5);
    list_init(&a);
    list_init(&b);
    list_splice_back(&a, &b); /* both empty */
    assert_true(list_empty(&a) && list_empty(&b));
    list_insert_back(&b, &it[0].link);
    list_insert_back(&b, &it[1].link);
    list_splice_back(&a, &b); /* into an empty list */
    assert_string_equal(order(&a), "01");
    assert_true(list_empty(&b));
    list_insert_back(&b, &it[2].link);
    list_insert_back(&b, &it[3].link);
    list_insert_back(&b, &it[4].link);
    list_splice_back(&a, &b); /* behind what is there, in order */
    assert_string_equal(order(&a), "01234");
    assert_true(list_empty(&b));
    list_splice_back(&a, &b); /* an empty one changes nothing */
    assert_string_equal(order(&a), "01234");
}

/* The loop body frees the node it is given; the others are visited once,
 * front to back. */
static void test_for_each_safe_frees(void **state)
{
    struct list_node head, *n, *tmp;
    list_init(&head);
    for (int i = 0; i < 6; i++) {
        struct item *x = calloc(1, sizeof(*x));
        assert_non_null(x);
        x->value = i;
        list_insert_back(&head, &x->link);
    }
    char seen[8];
    size_t k = 0;
    list_for_each_safe(n, tmp, &head)
    {
        struct item *x = ITEM(n);
        seen[k++] = (char)('0' + x->value);
        if (x->value % 2 == 0) {
            list_unlink(n);
            free(x);
        }
    }
    seen[k] = '\0';
    assert_string_equal(seen, "012345");
    assert_string_equal(order(&head), "135");
    list_for_each_safe(n, tmp, &head)
    {
        list_unlink(n);
        free(ITEM(n));
    }
    assert_true(list_empty(&head));
    k = 0;
    list_for_each_safe(n, tmp, &head) k++;
    assert_int_equal(k, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),       cmocka_unit_test(test_insert_front_and_back),
        cmocka_unit_test(test_unlink),      cmocka_unit_test(test_move),
        cmocka_unit_test(test_splice_back), cmocka_unit_test(test_for_each_safe_frees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
