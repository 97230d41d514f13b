/* What the proxy makes of Redis replies: pure functions of a hiredis
 * redisReply, for any shape a server (or the fuzzer) may send. No I/O, no
 * logging: cache.c and redis_link.c act on the answers. */
#ifndef EDGEPROXY_REDIS_REPLY_H
#define EDGEPROXY_REDIS_REPLY_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#include "cache.h"

/* The answer a reply to GET <prefix><ns><id> gives about `id`, for the
 * record type d: CACHE_NOT_FOUND for nil; for a string, what d->parse makes
 * of it (CACHE_FOUND with *value a new reference, or CACHE_BROKEN with the
 * reason in err); CACHE_BROKEN ("the <name> key does not hold a string")
 * for any other type. An error reply says nothing about the id (the cache
 * answers 503 before asking); here it is BROKEN like any other non-string.
 * *value is set only for CACHE_FOUND. -1 when out of memory. */
int redis_reply_value(const struct cache_desc *d, const char *id, const redisReply *reply,
                      void **value, char *err, size_t errlen);

enum redis_push_kind {
    REDIS_PUSH_OTHER = 0,  /* not for us: ignored */
    REDIS_PUSH_MESSAGE,    /* ["message", channel, payload] */
    REDIS_PUSH_SUBSCRIBED, /* ["subscribe", channel, count] */
};

/* A reply on a subscriber connection, classified. channel and payload
 * point into the reply (binary, not NUL-terminated by contract). */
struct redis_push {
    enum redis_push_kind kind;
    const char *channel;
    size_t channel_len;
    const char *payload; /* MESSAGE only */
    size_t payload_len;
};

/* RESP2 pub/sub (https://redis.io/docs/latest/develop/interact/pubsub/):
 * exactly three elements, the first two strings, the third a string for a
 * message and an integer for a confirmation; anything else is OTHER. */
void redis_reply_push(const redisReply *reply, struct redis_push *out);

/* Is the push's channel exactly `name` (all of it, byte for byte)? */
bool redis_push_channel_is(const struct redis_push *p, const char *name);

#endif
