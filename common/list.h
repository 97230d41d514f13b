/* An intrusive doubly-linked list, in the style of the Linux kernel's and
 * h2o's: the element embeds a struct list_node, the list is an anchor node
 * (circular: an empty list points at itself), and every insert or unlink is
 * O(1) with no allocation. A node on no list has next == prev == NULL, so
 * zeroed memory (calloc) is a detached node and unlinking one is a no-op.
 * Pure, header only. */
#ifndef EDGEPROXY_LIST_H
#define EDGEPROXY_LIST_H

#include <stdbool.h>
#include <stddef.h>

/* The structure of type `type` whose member `member` is at ptr. */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct list_node {
    struct list_node *next, *prev;
};

/* An anchor: the empty list (LIST_ANCHOR(x) initialises a static one). */
#define LIST_ANCHOR(name) \
    {                     \
        &(name), &(name)  \
    }

static inline void list_init(struct list_node *head)
{
    head->next = head->prev = head;
}

static inline bool list_empty(const struct list_node *head)
{
    return head->next == head;
}

/* Is this node on a list? */
static inline bool list_linked(const struct list_node *n)
{
    return n->next != NULL;
}

/* Takes n off its list; nothing when it is on none. */
static inline void list_unlink(struct list_node *n)
{
    if (!n->next)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

/* Puts n, which is on no list, right after pos (an anchor or a node). */
static inline void list_insert_after(struct list_node *pos, struct list_node *n)
{
    n->prev = pos;
    n->next = pos->next;
    pos->next->prev = n;
    pos->next = n;
}

/* Puts n, which is on no list, first (last) on head. */
static inline void list_insert_front(struct list_node *head, struct list_node *n)
{
    list_insert_after(head, n);
}

static inline void list_insert_back(struct list_node *head, struct list_node *n)
{
    list_insert_after(head->prev, n);
}

/* Moves n (on this list, another, or none) to the front (back) of head. */
static inline void list_move_front(struct list_node *head, struct list_node *n)
{
    list_unlink(n);
    list_insert_front(head, n);
}

static inline void list_move_back(struct list_node *head, struct list_node *n)
{
    list_unlink(n);
    list_insert_back(head, n);
}

/* The first and the last node, or NULL when the list is empty. */
static inline struct list_node *list_first(const struct list_node *head)
{
    return list_empty(head) ? NULL : head->next;
}

static inline struct list_node *list_last(const struct list_node *head)
{
    return list_empty(head) ? NULL : head->prev;
}

/* Moves every node of `from` to the back of `head`, in order, leaving
 * `from` empty. */
static inline void list_splice_back(struct list_node *head, struct list_node *from)
{
    if (list_empty(from))
        return;
    from->next->prev = head->prev;
    head->prev->next = from->next;
    from->prev->next = head;
    head->prev = from->prev;
    list_init(from);
}

/* Every node of head, first to last; the loop's body may unlink (or free)
 * the node `pos` it is given, but no other. */
#define list_for_each_safe(pos, tmp, head) \
    for (pos = (head)->next, tmp = pos->next; pos != (head); pos = tmp, tmp = pos->next)

#endif
