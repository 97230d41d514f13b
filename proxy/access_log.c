#include "access_log.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "head.h"
#include "log.h"
#include "runtime.h"
#include "session.h"
#include "worker.h"

#define ACCESS_LOG_BUF (64 * 1024)
#define ACCESS_LOG_LINE_MAX 4096
#define ACCESS_LOG_FLUSH_MS 1000

struct access_log_buf {
    char *buf;
    size_t len;
    struct event *flush_ev;
};

int access_log_open(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1)
        snprintf(err, errlen, "access_log.path: cannot open %s: %s", path, strerror(errno));
    return fd;
}

void access_log_flush(struct worker *w)
{
    struct access_log_buf *b = w->access_log;
    if (!b || b->len == 0)
        return;
    int fd = w->rt->access_log_fd;
    /* O_APPEND + whole lines: workers' writes do not interleave mid-line. */
    if (fd != -1 && write(fd, b->buf, b->len) == -1)
        log_warn("access log: write failed: %s", strerror(errno));
    b->len = 0;
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    access_log_flush(arg);
}

int access_log_worker_init(struct worker *w)
{
    struct access_log_buf *b = calloc(1, sizeof(*b));
    if (!b)
        return -1;
    b->buf = malloc(ACCESS_LOG_BUF);
    b->flush_ev = event_new(w->base, -1, EV_PERSIST, flush_cb, w);
    if (!b->buf || !b->flush_ev) {
        free(b->buf);
        if (b->flush_ev)
            event_free(b->flush_ev);
        free(b);
        return -1;
    }
    struct timeval tv = {ACCESS_LOG_FLUSH_MS / 1000, (ACCESS_LOG_FLUSH_MS % 1000) * 1000};
    event_add(b->flush_ev, &tv);
    w->access_log = b;
    return 0;
}

void access_log_worker_free(struct worker *w)
{
    struct access_log_buf *b = w->access_log;
    if (!b)
        return;
    access_log_flush(w);
    event_free(b->flush_ev);
    free(b->buf);
    free(b);
    w->access_log = NULL;
}

/* JSON string body: request bytes are already validated by llhttp, but a
 * path may still hold '"' or '\\'. */
static size_t put_json(char *dst, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 6 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", c);
        } else {
            dst[o++] = (char)c;
        }
    }
    return o;
}

void access_log_request(struct session *s, uint64_t duration_us)
{
    struct worker *w = s->w;
    struct access_log_buf *b = w->access_log;
    if (!b || w->rt->access_log_fd == -1)
        return;
    if (ACCESS_LOG_BUF - b->len < ACCESS_LOG_LINE_MAX)
        access_log_flush(w);
    char *p = b->buf + b->len;
    size_t cap = ACCESS_LOG_LINE_MAX - 2, o = 0;

    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    o += strftime(p + o, cap - o, "{\"time\":\"%Y-%m-%dT%H:%M:%S", &tm);
    o += (size_t)snprintf(p + o, cap - o, ".%03ldZ\",\"client\":\"%s\",\"method\":\"%s\",\"host\":\"",
                          (long)(tv.tv_usec / 1000), s->peer_ip,
                          s->rh && s->rh->url_len ? llhttp_method_name(s->req.method) : "");
    if (s->host)
        o += put_json(p + o, cap - o, s->host, s->host_len > 255 ? 255 : s->host_len);
    o += (size_t)snprintf(p + o, cap - o, "\",\"path\":\"");
    if (s->path)
        o += put_json(p + o, cap - o, s->path, s->path_len > 2048 ? 2048 : s->path_len);
    o += (size_t)snprintf(p + o, cap - o,
                          "\",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.3f,\"sandbox_id\":\"%s\","
                          "\"port\":%u,\"upstream\":",
                          s->status, (unsigned long long)s->bytes_out, (double)duration_us / 1000.0,
                          s->target.sandbox_id, (unsigned)s->target.port);
    if (s->rr && s->rr->rec && s->upstream_used) {
        const char *addr = s->rr->rec->address;
        bool v6 = strchr(addr, ':') != NULL;
        o += (size_t)snprintf(p + o, cap - o, "\"%s%s%s:%u\"}", v6 ? "[" : "", addr, v6 ? "]" : "",
                              (unsigned)s->target.port);
    } else {
        o += (size_t)snprintf(p + o, cap - o, "null}");
    }
    if (o > cap)
        o = cap;
    p[o++] = '\n';
    b->len += o;
}
