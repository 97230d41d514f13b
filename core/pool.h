/* Upstream connections: connect with a timeout, and per-worker pools of idle
 * keep-alive connections keyed by (sandbox id, address, port, executionId),
 * so a recycled sandbox address never reuses another sandbox's connection. */
#ifndef EDGEPROXY_UPSTREAM_H
#define EDGEPROXY_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "list.h"

struct worker;
struct pool;
struct upconn;
struct stream;

/* Called once when a connect attempt ends: `c` connected (caller owns it), or
 * NULL with err = errno (ECONNREFUSED, ETIMEDOUT, ...). */
typedef void (*upconn_connect_cb)(struct upconn *c, int err, void *arg);

struct upconn {
    struct list_node link;      /* idle list of its bucket */
    struct pool_bucket *bucket; /* set while idle in the pool */
    struct pool *pool;
    struct stream *io; /* NULL while connecting */
    char *key;
    bool reused;            /* came from the pool */
    uint64_t idle_since_ms; /* when it went back to the pool */
    /* connecting */
    int fd;
    int err; /* connect() failed at once */
    struct event *connect_ev;
    upconn_connect_cb cb;
    void *cb_arg;
};

struct pool *pool_new(struct worker *w);
void pool_free(struct pool *p);

/* Writes the pool key for a request into buf. */
void pool_key(char *buf, size_t cap, const char *sandbox_id, const char *address, unsigned port,
              const char *execution_id);

/* An idle connection for `key`, taken out of the pool, or NULL. */
struct upconn *pool_acquire(struct pool *p, const char *key);

/* Starts a connect to sa; the callback runs later, never from inside this
 * call. Returns the attempt (cancel with upconn_close) or NULL with errno. */
struct upconn *upconn_connect(struct pool *p, const char *key, const struct sockaddr *sa,
                              socklen_t salen, int timeout_ms, upconn_connect_cb cb, void *arg);

/* Gives a connection whose last exchange ended cleanly back to the pool (or
 * closes it when the pool for that key is full or the worker is draining). */
void pool_release(struct upconn *c);

/* Closes and frees, whatever the state. */
void upconn_close(struct upconn *c);

/* Closes every idle connection (drain). */
void pool_close_idle(struct pool *p);

#endif
