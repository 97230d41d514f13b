/* For the unit tests of redis/ (test_lookup.c, test_cache.c): a real
 * redis-server, one per test on a free loopback port, no persistence,
 * killed by pid at the end (and by the kernel if the test dies first:
 * PR_SET_PDEATHSIG), with a blocking hiredis client for the test's own
 * commands; and the shell of a worker for the code under test (config,
 * event_base, counters). What a test asks the server (INFO commandstats) is
 * what the code under test really sent.
 *
 * Header-only: static inline functions, included after <cmocka.h>. */
#ifndef EDGEPROXY_TEST_REDIS_TEST_H
#define EDGEPROXY_TEST_REDIS_TEST_H

#include <arpa/inet.h>
#include <event2/event.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "redis_link.h"
#include "worker.h"

#define REDIS_SERVER "/usr/bin/redis-server"

struct redis_server {
    pid_t pid;
    int port;
    redisContext *rc; /* the test's own client */
};

static inline uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* Starts it and waits until it answers PING (5 s at most). */
static inline void redis_start(struct redis_server *r)
{
    char port[16];
    r->port = free_port();
    snprintf(port, sizeof(port), "%d", r->port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        execl(REDIS_SERVER, REDIS_SERVER, "--port", port, "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no", "--daemonize", "no", "--dir", "/tmp", (char *)NULL);
        _exit(127);
    }
    r->pid = pid;
    for (int i = 0; i < 500; i++) {
        r->rc = redisConnect("127.0.0.1", r->port);
        if (r->rc && !r->rc->err) {
            redisReply *reply = redisCommand(r->rc, "PING");
            bool up = reply && reply->type == REDIS_REPLY_STATUS;
            freeReplyObject(reply);
            if (up)
                return;
        }
        redisFree(r->rc);
        r->rc = NULL;
        usleep(10000);
    }
    fail_msg("redis-server on port %d did not answer PING", r->port);
}

/* Kills it (also when stopped with SIGSTOP); safe to call twice. */
static inline void redis_kill(struct redis_server *r)
{
    if (r->rc)
        redisFree(r->rc);
    r->rc = NULL;
    if (r->pid > 0) {
        kill(r->pid, SIGCONT);
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
    }
    r->pid = 0;
}

/* A command that must succeed. */
static inline void redis_cmd(struct redis_server *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *reply = redisvCommand(r->rc, fmt, ap);
    va_end(ap);
    assert_non_null(reply);
    if (reply->type == REDIS_REPLY_ERROR)
        fail_msg("redis: %s", reply->str);
    freeReplyObject(reply);
}

/* An integer answer (or the count of PUBSUB NUMSUB's one channel); -1 for
 * any other. */
static inline long long redis_int(struct redis_server *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *reply = redisvCommand(r->rc, fmt, ap);
    va_end(ap);
    assert_non_null(reply);
    long long v = -1;
    if (reply->type == REDIS_REPLY_INTEGER)
        v = reply->integer;
    else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
             reply->element[1]->type == REDIS_REPLY_INTEGER)
        v = reply->element[1]->integer; /* PUBSUB NUMSUB channel */
    freeReplyObject(reply);
    return v;
}

/* GETs Redis has served since the last CONFIG RESETSTAT. */
static inline long gets_served(struct redis_server *r)
{
    redisReply *reply = redisCommand(r->rc, "INFO commandstats");
    assert_non_null(reply);
    assert_int_equal(reply->type, REDIS_REPLY_STRING);
    const char *p = strstr(reply->str, "cmdstat_get:calls=");
    long n = p ? strtol(p + strlen("cmdstat_get:calls="), NULL, 10) : 0;
    freeReplyObject(reply);
    return n;
}

/* ---- the worker shell ---- */

static void worker_shell_tick(evutil_socket_t fd, short what, void *arg)
{
}

/* What the link and caches use of a worker: w->cfg = cfg (the defaults,
 * Redis on redis_port), a new event_base with a 1 ms tick so EVLOOP_ONCE
 * never blocks, counters at zero (w zeroed by the caller). Returns the
 * tick, for worker_shell_free. */
static inline struct event *worker_shell_init(struct worker *w, struct config *cfg, int redis_port)
{
    config_defaults(cfg);
    cfg->redis_port = redis_port;
    w->cfg = cfg;
    w->base = event_base_new();
    assert_non_null(w->base);
    struct event *tick = event_new(w->base, -1, EV_PERSIST, worker_shell_tick, NULL);
    struct timeval tv = {0, 1000};
    assert_non_null(tick);
    event_add(tick, &tv);
    return tick;
}

/* After the caches and the link are gone. */
static inline void worker_shell_free(struct worker *w, struct config *cfg, struct event *tick)
{
    event_free(tick);
    event_base_free(w->base);
    config_free(cfg);
}

static inline void loop_run_for(struct event_base *base, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    while (now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
}

/* Runs w's loop until its link (w->redis) has the data connection set up
 * and the subscriber on sandbox:invalidate (3 s at most); then lets the
 * subscription's own expiry of every cache pass and resets the server's
 * command stats, so a test counts only its own GETs. */
static inline void wait_link_up(struct redis_server *r, struct worker *w)
{
    uint64_t end = now_ms() + 3000;
    while (!redis_link_connected(w->redis) ||
           redis_int(r, "PUBSUB NUMSUB sandbox:invalidate") < 1) {
        if (now_ms() > end)
            fail_msg("the link did not connect to redis on port %d", r->port);
        loop_run_for(w->base, 5);
    }
    loop_run_for(w->base, 50);
    redis_cmd(r, "CONFIG RESETSTAT");
}

#endif
