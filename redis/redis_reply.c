#include "redis_reply.h"

#include <stdio.h>
#include <string.h>

#include "errf.h"

int redis_reply_value(const struct cache_desc *d, const char *id, const redisReply *reply,
                      void **value, char *err, size_t errlen)
{
    if (reply->type == REDIS_REPLY_NIL)
        return CACHE_NOT_FOUND;
    if (reply->type == REDIS_REPLY_STRING)
        return d->parse(id, reply->str, reply->len, value, err, errlen);
    errf(err, errlen, "the %s key does not hold a string", d->name);
    return CACHE_BROKEN;
}

static bool is_string(const redisReply *r, const char *s)
{
    size_t n = strlen(s);
    return r->type == REDIS_REPLY_STRING && r->len == n && memcmp(r->str, s, n) == 0;
}

void redis_reply_push(const redisReply *reply, struct redis_push *out)
{
    memset(out, 0, sizeof(*out));
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    const redisReply *kind = reply->element[0], *channel = reply->element[1],
                     *third = reply->element[2];
    if (channel->type != REDIS_REPLY_STRING)
        return;
    if (is_string(kind, "message") && third->type == REDIS_REPLY_STRING) {
        out->kind = REDIS_PUSH_MESSAGE;
        out->payload = third->str;
        out->payload_len = third->len;
    } else if (is_string(kind, "subscribe") && third->type == REDIS_REPLY_INTEGER) {
        out->kind = REDIS_PUSH_SUBSCRIBED;
    } else {
        return;
    }
    out->channel = channel->str;
    out->channel_len = channel->len;
}

bool redis_push_channel_is(const struct redis_push *p, const char *name)
{
    size_t n = strlen(name);
    return p->kind != REDIS_PUSH_OTHER && p->channel_len == n && memcmp(p->channel, name, n) == 0;
}
