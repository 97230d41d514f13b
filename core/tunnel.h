/* Bytes both ways between two streams, with backpressure, half-close and an
 * idle timeout: the WebSocket (any Upgrade) tunnel after a 101, and the
 * egress TLS/TCP splice. The tunnel owns neither stream: it takes over
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
     * when `flush_a` (b closed after saying its last words). With
     * t->reset set, a side failed (a reset, a write error): the owner
     * resets the other too, so the far end sees what happened. */
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
    /* Set by the caller before tunnel_start (kept by it): TCP half-close
     * (egress). A side's EOF then ends that direction only: what it said
     * is delivered, the other side's socket is shut for writing
     * (shutdown(SHUT_WR)), and the other direction goes on; the tunnel is
     * over when both directions are. Without it (WebSocket), an EOF on
     * either side ends the tunnel once the other side has the last bytes. */
    bool half_close;
    bool a_eof, b_eof;         /* half_close: that side said EOF */
    bool a_shut, b_shut;       /* half_close: that side's socket is shut for writing */
    bool reset;                /* closed because a side failed: reset the other */
    uint64_t a_bytes, b_bytes; /* bytes read from a (for b), from b (for a) */
};

/* Starts moving bytes (and what either side already buffered). Read
 * timeouts are the idle timeout, write timeouts `write_ms`. */
void tunnel_start(struct tunnel *t, struct stream *a, struct stream *b, int idle_ms, int write_ms,
                  const struct tunnel_owner *owner, void *arg);

#endif
