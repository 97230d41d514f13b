#include "access_log.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "errf.h"
#include "ev.h"
#include "head.h"
#include "log.h"
#include "outbuf.h"
#include "runtime.h"
#include "exchange.h"
#include "timeutil.h"
#include "worker.h"

#define ACCESS_LOG_BUF (64 * 1024)
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
        errf(err, errlen, "access_log.path: cannot open %s: %s", path, strerror(errno));
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
        ev_free(b->flush_ev);
        free(b);
        return -1;
    }
    struct timeval tv = tv_from_ms(ACCESS_LOG_FLUSH_MS);
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

/* A line is built in place in the worker buffer, through one bounded writer
 * (common/outbuf.h), so it cannot run past the line or the buffer. The
 * client's free text (method, host, path) gets a budget, in bytes as
 * written (escapes count); within budgets the rest of the line always fits:
 * ALOG_WIDEST is the line with every number at its widest and every string
 * empty. */
#define ALOG_METHOD_MAX 32
#define ALOG_HOST_MAX 512
#define ALOG_PATH_MAX 3000
#define ALOG_ADDR_MAX 64 /* client, sandbox_id, upstream address */
#define ALOG_WIDEST                                                                  \
    "{\"time\":\"-2147481748-12-31T23:59:60.999Z\",\"client\":\"\",\"method\":\"\"," \
    "\"host\":\"\",\"path\":\"\",\"protocol\":\"HTTP/"                               \
    "1.1\",\"status\":-2147483648,\"bytes\":18446744073709551615,"                   \
    "\"duration_ms\":18446744073709551.615,\"sandbox_id\":\"\",\"port\":65535,"      \
    "\"upstream\":\"[]:65535\"}\n"
_Static_assert(sizeof(ALOG_WIDEST) - 1 + ALOG_METHOD_MAX + ALOG_HOST_MAX + ALOG_PATH_MAX +
                       3 * ALOG_ADDR_MAX <=
                   ACCESS_LOG_LINE_MAX,
               "access log budgets exceed the line cap");
_Static_assert(ACCESS_LOG_LINE_MAX <= ACCESS_LOG_BUF, "a line must fit the worker buffer");

void access_log_put_time(struct outbuf *ob)
{
    struct timeval tv;
    struct tm tm;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    outbuf_int(ob, (int64_t)tm.tm_year + 1900);
    outbuf_lit(ob, "-");
    outbuf_uint(ob, (uint64_t)tm.tm_mon + 1, 2);
    outbuf_lit(ob, "-");
    outbuf_uint(ob, (uint64_t)tm.tm_mday, 2);
    outbuf_lit(ob, "T");
    outbuf_uint(ob, (uint64_t)tm.tm_hour, 2);
    outbuf_lit(ob, ":");
    outbuf_uint(ob, (uint64_t)tm.tm_min, 2);
    outbuf_lit(ob, ":");
    outbuf_uint(ob, (uint64_t)tm.tm_sec, 2);
    outbuf_lit(ob, ".");
    outbuf_uint(ob, (uint64_t)tv.tv_usec / 1000, 3);
    outbuf_lit(ob, "Z");
}

static void put_view(struct outbuf *ob, const char *s, size_t n, size_t budget)
{
    outbuf_json_str(ob, s ? s : "", s ? n : 0, budget);
}

static void put_upstream(struct outbuf *ob, const struct exchange *s)
{
    if (!(s->rr && s->rr->rec && s->upstream_used)) {
        outbuf_lit(ob, "null");
        return;
    }
    const char *addr = s->rr->rec->address;
    bool v6 = strchr(addr, ':') != NULL;
    outbuf_lit(ob, "\"");
    if (v6)
        outbuf_lit(ob, "[");
    outbuf_json_body(ob, addr, strlen(addr), ALOG_ADDR_MAX);
    if (v6)
        outbuf_lit(ob, "]");
    outbuf_lit(ob, ":");
    outbuf_uint(ob, s->target.port, 1);
    outbuf_lit(ob, "\"");
}

/* The keys, their order and the budgets are README's ("Access log"). */
static void format_line(struct outbuf *ob, const struct exchange *s, uint64_t duration_us)
{
    const char *method = s->rh && s->rh->url_len ? llhttp_method_name(s->method) : "";

    outbuf_lit(ob, "{\"time\":\"");
    access_log_put_time(ob);
    outbuf_lit(ob, "\",\"client\":");
    put_view(ob, s->client->peer_ip, strlen(s->client->peer_ip), ALOG_ADDR_MAX);
    outbuf_lit(ob, ",\"method\":");
    put_view(ob, method, strlen(method), ALOG_METHOD_MAX);
    outbuf_lit(ob, ",\"host\":");
    put_view(ob, s->authority, s->authority_len, ALOG_HOST_MAX);
    outbuf_lit(ob, ",\"path\":");
    put_view(ob, s->path, s->path_len, ALOG_PATH_MAX);
    outbuf_lit(ob, ",\"protocol\":");
    outbuf_str(ob, s->http_version == 20   ? "\"HTTP/2\""
                   : s->http_version == 10 ? "\"HTTP/1.0\""
                                           : "\"HTTP/1.1\"");
    outbuf_lit(ob, ",\"status\":");
    outbuf_int(ob, s->status);
    outbuf_lit(ob, ",\"bytes\":");
    outbuf_uint(ob, s->bytes_out, 1);
    outbuf_lit(ob, ",\"duration_ms\":");
    outbuf_uint(ob, duration_us / 1000, 1);
    outbuf_lit(ob, ".");
    outbuf_uint(ob, duration_us % 1000, 3);
    outbuf_lit(ob, ",\"sandbox_id\":");
    put_view(ob, s->target.sandbox_id, strlen(s->target.sandbox_id), ALOG_ADDR_MAX);
    outbuf_lit(ob, ",\"port\":");
    outbuf_uint(ob, s->target.port, 1);
    outbuf_lit(ob, ",\"upstream\":");
    put_upstream(ob, s);
    outbuf_lit(ob, "}\n");
}

struct request_line {
    const struct exchange *ex;
    uint64_t duration_us;
};

static void format_request(struct outbuf *ob, const void *arg)
{
    const struct request_line *r = arg;
    format_line(ob, r->ex, r->duration_us);
}

void access_log_request(struct exchange *s, uint64_t duration_us)
{
    struct request_line r = {s, duration_us};
    access_log_append(s->w, format_request, &r);
}

void access_log_append(struct worker *w, void (*format)(struct outbuf *ob, const void *arg),
                       const void *arg)
{
    struct access_log_buf *b = w->access_log;
    if (!b || w->rt->access_log_fd == -1)
        return;
    if (ACCESS_LOG_BUF - b->len < ACCESS_LOG_LINE_MAX)
        access_log_flush(w);
    /* The line's bound is the smaller of the cap and what the buffer has
     * left (the same after the flush above; the min makes it local). */
    size_t room = ACCESS_LOG_BUF - b->len;
    struct outbuf ob;
    outbuf_init(&ob, b->buf + b->len, room < ACCESS_LOG_LINE_MAX ? room : ACCESS_LOG_LINE_MAX);
    format(&ob, arg);
    if (ob.truncated) {
        /* Ruled out by the budgets above; a cut line would not be JSON. */
        log_error("access log: line over %d bytes dropped", ACCESS_LOG_LINE_MAX);
        return;
    }
    b->len += ob.len;
}
