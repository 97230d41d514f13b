/* libFuzzer: hiredis's reply reader on raw bytes (what a Redis server, or
 * anything answering on its port, may send), then every reply and every
 * element of every array in it to redis_reply_value (as a sandbox route
 * record, ingress/route_rec.c's route_rec_desc) and redis_reply_push
 * (redis/redis_reply.c).
 *
 * Input: byte 0 splits the rest into two feeds (replies cut anywhere).
 * Invariants: a record answer exists (memory is plentiful here) with a
 * known status, FOUND with a record (and only FOUND with a value), BROKEN
 * with a non-empty NUL-terminated reason; a push is MESSAGE or SUBSCRIBED only for a three-element array,
 * its channel and payload are that array's elements, byte for byte, and
 * OTHER carries nothing. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_reply.h"
#include "route_rec.h"

#define MAX_ELEMENTS 4096

static redisReplyObjectFunctions fns;
static void *(*default_create_array)(const redisReadTask *, int);

/* hiredis 0.14 allocates an array's element pointers before reading any:
 * "*2000000000\r\n" asks for 16 GB. Refused here (the reader reports out of
 * memory, as when calloc fails) so the fuzzer explores parsing, not malloc. */
static void *create_array(const redisReadTask *task, int elements)
{
    if (elements > MAX_ELEMENTS)
        return NULL;
    return default_create_array(task, elements);
}

static void check_record(const redisReply *reply)
{
    char why[200];
    void *value = NULL;

    memset(why, 0xa5, sizeof(why));
    int status = redis_reply_value(&route_rec_desc, "fuzzsandbox", reply, &value, why, sizeof(why));
    struct route_rec *rr = value;

    assert(status != -1);
    assert((rr != NULL) == (status == LOOKUP_FOUND));
    switch (status) {
    case LOOKUP_FOUND:
        assert(rr->refs == 1);
        assert(rr->status == LOOKUP_FOUND);
        assert(rr->rec != NULL);
        assert(reply->type == REDIS_REPLY_STRING);
        break;
    case LOOKUP_NOT_FOUND:
        assert(reply->type == REDIS_REPLY_NIL);
        break;
    case LOOKUP_BROKEN:
        assert(memchr(why, '\0', sizeof(why)) != NULL);
        assert(why[0] != '\0');
        break;
    default:
        assert(0 && "unknown status");
    }
    route_rec_unref(rr);
}

static void check_push(const redisReply *reply)
{
    struct redis_push p;

    memset(&p, 0xa5, sizeof(p));
    redis_reply_push(reply, &p);
    if (p.kind == REDIS_PUSH_OTHER) {
        assert(p.channel == NULL && p.channel_len == 0);
        assert(p.payload == NULL && p.payload_len == 0);
        assert(!redis_push_channel_is(&p, ""));
        return;
    }
    assert(p.kind == REDIS_PUSH_MESSAGE || p.kind == REDIS_PUSH_SUBSCRIBED);
    assert(reply->type == REDIS_REPLY_ARRAY && reply->elements == 3);
    const redisReply *kind = reply->element[0], *channel = reply->element[1],
                     *third = reply->element[2];
    assert(kind->type == REDIS_REPLY_STRING);
    assert(channel->type == REDIS_REPLY_STRING);
    assert(p.channel == channel->str && p.channel_len == channel->len);
    assert(redis_push_channel_is(&p, "") == (channel->len == 0));
    if (p.kind == REDIS_PUSH_MESSAGE) {
        assert(kind->len == 7 && memcmp(kind->str, "message", 7) == 0);
        assert(third->type == REDIS_REPLY_STRING);
        assert(p.payload == third->str && p.payload_len == third->len);
    } else {
        assert(kind->len == 9 && memcmp(kind->str, "subscribe", 9) == 0);
        assert(third->type == REDIS_REPLY_INTEGER);
        assert(p.payload == NULL && p.payload_len == 0);
    }
}

static void check(const redisReply *reply)
{
    check_record(reply);
    check_push(reply);
    if (reply->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < reply->elements; i++)
            check(reply->element[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!default_create_array) {
        redisReader *probe = redisReaderCreate();
        assert(probe != NULL);
        fns = *probe->fn;
        default_create_array = fns.createArray;
        fns.createArray = create_array;
        redisReaderFree(probe);
    }
    if (size == 0)
        return 0;
    size_t cut = 1 + (size_t)data[0] % size;
    redisReader *r = redisReaderCreateWithFunctions(&fns);
    void *reply;

    assert(r != NULL);
    const uint8_t *parts[2] = {data + 1, data + cut};
    const size_t lens[2] = {cut - 1, size - cut};
    for (int i = 0; i < 2; i++) {
        if (redisReaderFeed(r, (const char *)parts[i], lens[i]) != REDIS_OK)
            break;
        while (redisReaderGetReply(r, &reply) == REDIS_OK && reply != NULL) {
            check(reply);
            freeReplyObject(reply);
        }
        if (r->err)
            break;
    }
    redisReaderFree(r);
    return 0;
}
