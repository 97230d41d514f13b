#include "listener.h"

#include <errno.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "session.h"
#include "worker.h"

#define LISTEN_BACKLOG 4096

int listener_bind(const struct sockaddr *sa, socklen_t len, const char *name,
                  char *err, size_t errlen)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        snprintf(err, errlen, "listener %s: socket: %s", name, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* One socket per worker on the same address: the kernel spreads new
     * connections across workers without a shared accept lock. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, sa, len) == -1) {
        snprintf(err, errlen, "listener %s: cannot bind: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, LISTEN_BACKLOG) == -1) {
        snprintf(err, errlen, "listener %s: cannot listen: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct listener_slot *slot = arg;
    session_accept(slot->w, slot->index, fd, sa, salen);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    /* EMFILE and friends: log and keep the listener; libevent retries. */
    log_error("accept: %s", strerror(errno));
}

int listener_start(struct worker *w)
{
    for (size_t i = 0; i < w->listener_count; i++) {
        w->listeners[i] = evconnlistener_new(w->base, accept_cb, &w->slots[i], LEV_OPT_CLOSE_ON_FREE, 0,
                                             w->listen_fds[i]);
        if (!w->listeners[i])
            return -1;
        w->listen_fds[i] = -1; /* owned by the evconnlistener */
        evconnlistener_set_error_cb(w->listeners[i], accept_error_cb);
    }
    return 0;
}

void listener_stop(struct worker *w)
{
    for (size_t i = 0; i < w->listener_count; i++) {
        if (w->listeners[i])
            evconnlistener_free(w->listeners[i]);
        w->listeners[i] = NULL;
        if (w->listen_fds[i] != -1)
            close(w->listen_fds[i]);
        w->listen_fds[i] = -1;
    }
}
