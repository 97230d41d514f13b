/* redis_reply_value / redis_reply_push (redis/redis_reply.c): every reply
 * shape a server may send, built by hiredis's own reader from RESP bytes;
 * GET replies read as sandbox route records (route_rec_desc). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "redis_reply.h"
#include "route_rec.h"

/* The reply hiredis makes of exactly these bytes. */
static redisReply *resp_n(const char *bytes, size_t len)
{
    redisReader *r = redisReaderCreate();
    void *reply = NULL;

    assert_non_null(r);
    assert_int_equal(redisReaderFeed(r, bytes, len), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(r);
    return reply;
}

#define RESP(lit) resp_n(lit, sizeof(lit) - 1)

/* "$<n>\r\n<n bytes of fill>\r\n", or that string as a message payload. */
static redisReply *big_string(size_t n, char fill, bool as_message)
{
    static const char head[] = "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n";
    size_t cap = sizeof(head) + n + 32, off = 0;
    char *buf = malloc(cap);

    assert_non_null(buf);
    if (as_message) {
        memcpy(buf, head, sizeof(head) - 1);
        off = sizeof(head) - 1;
    }
    off += (size_t)snprintf(buf + off, cap - off, "$%zu\r\n", n);
    memset(buf + off, fill, n);
    memcpy(buf + off + n, "\r\n", 2);
    redisReply *r = resp_n(buf, off + n + 2);
    free(buf);
    return r;
}

/* What a GET reply says about sandbox "sb1": a value exactly when found;
 * the reason in message when broken. */
static int record_status(redisReply *reply, char *message, size_t cap)
{
    char why[200] = "";
    void *value = NULL;
    int status = redis_reply_value(&route_rec_desc, "sb1", reply, &value, why, sizeof(why));

    assert_true(status >= 0);
    if (status == LOOKUP_FOUND)
        assert_non_null(value);
    else
        assert_null(value);
    if (message)
        snprintf(message, cap, "%s", why);
    route_rec_unref(value);
    freeReplyObject(reply);
    return status;
}

static enum redis_push_kind push_kind(redisReply *reply)
{
    struct redis_push p;

    redis_reply_push(reply, &p);
    if (p.kind == REDIS_PUSH_OTHER) {
        assert_null(p.channel);
        assert_null(p.payload);
    }
    freeReplyObject(reply);
    return p.kind;
}

static void test_get_nil_is_not_found(void **state)
{
    assert_int_equal(record_status(RESP("$-1\r\n"), NULL, 0), LOOKUP_NOT_FOUND);
    assert_int_equal(record_status(RESP("*-1\r\n"), NULL, 0), LOOKUP_NOT_FOUND);
}

static void test_get_string_is_parsed(void **state)
{
    redisReply *reply = RESP("$22\r\n{\"address\":\"10.0.0.1\"}\r\n");
    void *value = NULL;
    char why[200];

    assert_int_equal(redis_reply_value(&route_rec_desc, "sb1", reply, &value, why, sizeof(why)),
                     LOOKUP_FOUND);
    struct route_rec *rr = value;
    assert_non_null(rr);
    assert_int_equal(rr->status, LOOKUP_FOUND);
    assert_string_equal(rr->rec->address, "10.0.0.1");
    route_rec_unref(rr);
    freeReplyObject(reply);

    char msg[200];
    assert_int_equal(record_status(RESP("$3\r\nabc\r\n"), msg, sizeof(msg)), LOOKUP_BROKEN);
    assert_true(msg[0] != '\0');
    assert_int_equal(record_status(RESP("$0\r\n\r\n"), NULL, 0), LOOKUP_BROKEN);
    /* A NUL inside the value is part of it, not its end. */
    assert_int_equal(record_status(RESP("$24\r\n{\"address\":\"10.0.0.1\"}\0x\r\n"), NULL, 0),
                     LOOKUP_BROKEN);
}

static void test_get_other_types_are_broken(void **state)
{
    static const char *const shapes[] = {
        ":42\r\n", "+OK\r\n",           "-ERR wrong\r\n",
        "*0\r\n",  "*1\r\n$1\r\na\r\n", "*2\r\n*1\r\n:1\r\n$-1\r\n",
    };
    char msg[200];

    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        assert_int_equal(record_status(resp_n(shapes[i], strlen(shapes[i])), msg, sizeof(msg)),
                         LOOKUP_BROKEN);
        assert_string_equal(msg, "the sandbox key does not hold a string");
    }
}

static void test_get_huge_value(void **state)
{
    char msg[200];

    assert_int_equal(record_status(big_string(4u << 20, 'x', false), msg, sizeof(msg)),
                     LOOKUP_BROKEN);
    assert_true(msg[0] != '\0');
}

static void test_message(void **state)
{
    redisReply *reply =
        RESP("*3\r\n$7\r\nmessage\r\n$18\r\nsandbox:invalidate\r\n$5\r\na\0b\0c\r\n");
    struct redis_push p;

    redis_reply_push(reply, &p);
    assert_int_equal(p.kind, REDIS_PUSH_MESSAGE);
    assert_true(redis_push_channel_is(&p, "sandbox:invalidate"));
    assert_false(redis_push_channel_is(&p, "sandbox:invalidat"));
    assert_false(redis_push_channel_is(&p, "sandbox:invalidatex"));
    assert_int_equal(p.payload_len, 5);
    assert_memory_equal(p.payload, "a\0b\0c", 5);
    freeReplyObject(reply);

    /* Empty channel and payload are still a message. */
    reply = RESP("*3\r\n$7\r\nmessage\r\n$0\r\n\r\n$0\r\n\r\n");
    redis_reply_push(reply, &p);
    assert_int_equal(p.kind, REDIS_PUSH_MESSAGE);
    assert_true(redis_push_channel_is(&p, ""));
    assert_int_equal(p.payload_len, 0);
    freeReplyObject(reply);
}

static void test_channel_with_nul(void **state)
{
    redisReply *reply = RESP("*3\r\n$7\r\nmessage\r\n$3\r\na\0b\r\n$1\r\nx\r\n");
    struct redis_push p;

    redis_reply_push(reply, &p);
    assert_int_equal(p.kind, REDIS_PUSH_MESSAGE);
    assert_int_equal(p.channel_len, 3);
    assert_false(redis_push_channel_is(&p, "a"));
    freeReplyObject(reply);
}

static void test_subscribe_confirmation(void **state)
{
    redisReply *reply = RESP("*3\r\n$9\r\nsubscribe\r\n$18\r\nsandbox:invalidate\r\n:1\r\n");
    struct redis_push p;

    redis_reply_push(reply, &p);
    assert_int_equal(p.kind, REDIS_PUSH_SUBSCRIBED);
    assert_true(redis_push_channel_is(&p, "sandbox:invalidate"));
    assert_null(p.payload);
    freeReplyObject(reply);
}

static void test_push_wrong_arity(void **state)
{
    assert_int_equal(push_kind(RESP("*0\r\n")), REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*1\r\n$7\r\nmessage\r\n")), REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*2\r\n$7\r\nmessage\r\n$1\r\nc\r\n")), REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*4\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\np\r\n$1\r\nq\r\n")),
                     REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$1\r\nc\r\n$1\r\np\r\n")),
                     REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*2\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n")), REDIS_PUSH_OTHER);
}

static void test_push_not_an_array(void **state)
{
    assert_int_equal(push_kind(RESP("$-1\r\n")), REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*-1\r\n")), REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("$7\r\nmessage\r\n")), REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("-ERR no\r\n")), REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP(":3\r\n")), REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("+message\r\n")), REDIS_PUSH_OTHER);
}

static void test_push_nested_arrays(void **state)
{
    assert_int_equal(push_kind(RESP("*3\r\n*1\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\np\r\n")),
                     REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*3\r\n$7\r\nmessage\r\n*1\r\n$1\r\nc\r\n$1\r\np\r\n")),
                     REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n*0\r\n")), REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n*1\r\n:1\r\n")),
                     REDIS_PUSH_OTHER);
}

static void test_push_non_string_elements(void **state)
{
    /* Kind: an integer, a status (+message is not a bulk string), nil,
     * another case. */
    assert_int_equal(push_kind(RESP("*3\r\n:7\r\n$1\r\nc\r\n$1\r\np\r\n")), REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*3\r\n+message\r\n$1\r\nc\r\n$1\r\np\r\n")), REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*3\r\n$-1\r\n$1\r\nc\r\n$1\r\np\r\n")), REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*3\r\n$7\r\nMESSAGE\r\n$1\r\nc\r\n$1\r\np\r\n")),
                     REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*3\r\n$8\r\nmessages\r\n$1\r\nc\r\n$1\r\np\r\n")),
                     REDIS_PUSH_OTHER);
    /* Channel. */
    assert_int_equal(push_kind(RESP("*3\r\n$7\r\nmessage\r\n:1\r\n$1\r\np\r\n")), REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*3\r\n$7\r\nmessage\r\n$-1\r\n$1\r\np\r\n")),
                     REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*3\r\n$7\r\nmessage\r\n-ERR c\r\n$1\r\np\r\n")),
                     REDIS_PUSH_OTHER);
    /* Payload / count. */
    assert_int_equal(push_kind(RESP("*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n:1\r\n")), REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$-1\r\n")),
                     REDIS_PUSH_OTHER);
    assert_int_equal(push_kind(RESP("*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n$1\r\n1\r\n")),
                     REDIS_PUSH_OTHER);
}

static void test_huge_payload(void **state)
{
    redisReply *reply = big_string(4u << 20, 'q', true);
    struct redis_push p;

    redis_reply_push(reply, &p);
    assert_int_equal(p.kind, REDIS_PUSH_MESSAGE);
    assert_int_equal(p.payload_len, 4u << 20);
    assert_true(p.payload[0] == 'q' && p.payload[p.payload_len - 1] == 'q');
    assert_true(redis_push_channel_is(&p, "c"));
    freeReplyObject(reply);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_nil_is_not_found),
        cmocka_unit_test(test_get_string_is_parsed),
        cmocka_unit_test(test_get_other_types_are_broken),
        cmocka_unit_test(test_get_huge_value),
        cmocka_unit_test(test_message),
        cmocka_unit_test(test_channel_with_nul),
        cmocka_unit_test(test_subscribe_confirmation),
        cmocka_unit_test(test_push_wrong_arity),
        cmocka_unit_test(test_push_not_an_array),
        cmocka_unit_test(test_push_nested_arrays),
        cmocka_unit_test(test_push_non_string_elements),
        cmocka_unit_test(test_huge_payload),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
