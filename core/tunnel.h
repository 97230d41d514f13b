/* Bytes both ways between two streams, with backpressure, half-close and an
 * idle timeout: the WebSocket (any Upgrade) tunnel after a 101 today, the
 * egress TLS/TCP splice next. The tunnel owns neither stream: it takes over
 * their callbacks and tells its owner when it is over. */
#ifndef EDGEPROXY_TUNNEL_H
#define EDGEPROXY_TUNNEL_H

#include <stdbool.h>
#include <stdint.h>

struct stream;

struct tunnel_owner {
    /* Callback nesting (see exchange_ops.hold). */
    void (*hold)(void *arg);
    void (*release)(void *arg);
    /* The tunnel is over: close both streams; flush side a's output first
     * when `flush_a` (b closed after saying its last words). */
    void (*closed)(void *arg, bool flush_a);
};

struct tunnel {
    struct stream *a, *b; /* a: the client side, b: the upstream side */
    const struct tunnel_owner *owner;
    void *arg;
    int idle_ms; /* no byte either way for this long: closed */
    uint64_t last_activity_ms;
    bool a_paused, b_paused; /* reading stopped: the other side's output is full */
    bool flushing_b;         /* a is gone; b's output drains, then closed */
};

/* Starts moving bytes (and what either side already buffered). Read
 * timeouts are the idle timeout, write timeouts `write_ms`. */
void tunnel_start(struct tunnel *t, struct stream *a, struct stream *b, int idle_ms, int write_ms,
                  const struct tunnel_owner *owner, void *arg);

#endif
