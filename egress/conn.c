/* Egress TLS and other TCP connections: a peek, a decision and a splice.
 *
 *   peek     TLS listener only: read (not peek: the bytes are kept and
 *            forwarded) until common/clienthello.c has the whole
 *            ClientHello, reassembled across records and reads, at most
 *            CLIENTHELLO_MAX_INPUT bytes; its SNI is the name. Not a
 *            ClientHello, or nothing within egress.peek_timeout_ms (a
 *            server-speaks-first protocol on 443): decided by address.
 *            The TCP listener decides by address at once.
 *   decide   flow.c, whose policy lookup started at accept
 *   refuse   a ClientHello gets a fatal access_denied alert (RFC 8446
 *            section 6.2) and a FIN; anything else a RST (SO_LINGER 0)
 *   connect  to the original destination, or where the name's answers
 *            said (flow.c); a refusal or a timeout there is mirrored to the
 *            client as a RST
 *   splice   core/tunnel.c in half-close mode: the buffered hello goes
 *            first, a FIN one way shuts that way only, a reset either side
 *            resets the other; egress.idle_timeout_ms without a byte ends
 *            it
 *
 * Every connection ends with one log line (log.c). Never freed inside its
 * own callbacks: conn_close marks it, the outermost callback frees it. */
#include <errno.h>
#include <stdio.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clienthello.h"
#include "egress.h"
#include "ev.h"
#include "exchange.h"
#include "flow.h"
#include "listener.h"
#include "log.h"
#include "pool.h"
#include "stream.h"
#include "timeutil.h"
#include "tunnel.h"
#include "worker.h"

/* After a refusal's alert: how long the client may take to close. */
#define REFUSE_LINGER_MS 1000

enum conn_state {
    EC_PEEK,     /* reading the ClientHello */
    EC_DECIDING, /* the name is known (or none will come): waiting for the verdict */
    EC_CONNECT,  /* allowed: connecting */
    EC_SPLICE,   /* the tunnel moves the bytes */
    EC_REFUSING, /* the alert goes out, then the close */
};

struct egress_conn {
    struct list_node link; /* eg->conns */
    struct egress_flow flow;
    struct worker *w;
    struct stream *cl; /* the sandbox's connection */
    struct upconn *up; /* the destination (connecting, then up->io) */
    struct tunnel tun;
    struct event *timer; /* the peek timeout; the refusal's linger */
    enum conn_state state;
    bool tls;     /* from the TLS listener */
    bool hello;   /* a ClientHello was read: refuse with an alert */
    bool reset;   /* close with a RST */
    bool closing; /* free when busy drops to 0 */
    int busy;
    uint64_t hello_bytes;
};

static void conn_free(struct egress_conn *c);

static void conn_enter(struct egress_conn *c)
{
    c->busy++;
}

static void conn_leave(struct egress_conn *c)
{
    if (--c->busy == 0 && c->closing)
        conn_free(c);
}

static void set_rst(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    if (fd != -1)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

/* Marks the connection for closing (with a RST to both sides when `rst`). */
static void conn_close(struct egress_conn *c, bool rst)
{
    c->reset = c->reset || rst;
    c->closing = true;
}

static void conn_free(struct egress_conn *c)
{
    struct worker *w = c->w;
    struct egress_flow *f = &c->flow;
    /* The tunnel's counts: the buffered hello is the first of a's bytes. */
    egress_log_conn(f, c->tun.a_bytes, c->tun.b_bytes, time_now_us() - f->start_us);
    egress_flow_end(f);
    ev_free(c->timer);
    if (c->reset) {
        set_rst(stream_fd(c->cl));
        if (c->up && c->up->io)
            set_rst(stream_fd(c->up->io));
    }
    stream_free(c->cl);
    upconn_close(c->up);
    list_unlink(&c->link);
    free(c);
    METRIC_DEC(&w->metrics, egress_connections);
    METRIC_DEC(&w->metrics, client_connections);
    __atomic_store_n(&w->session_count, w->session_count - 1, __ATOMIC_RELAXED);
    listener_conn_closed(w);
    worker_session_gone(w);
}

/* ---- refusing ---- */

/* TLS alert record: fatal (2) access_denied (49), RFC 8446 section 6.2 /
 * RFC 5246 section 7.2. The record version is the one every client takes
 * in an alert before the version is agreed (TLS 1.2's). */
static const unsigned char access_denied_alert[] = {21, 3, 3, 0, 2, 2, 49};

static void refuse_read_cb(struct stream *st, void *arg)
{
    evbuffer_drain(stream_input(st), evbuffer_get_length(stream_input(st)));
}

static void refuse_event_cb(struct stream *st, short what, void *arg)
{
    struct egress_conn *c = arg;
    conn_enter(c);
    conn_close(c, false);
    conn_leave(c);
}

static void refuse_write_cb(struct stream *st, void *arg)
{
    struct egress_conn *c = arg;
    if (evbuffer_get_length(stream_output(st)))
        return;
    /* The alert is out: FIN, then wait for the client's close so that
     * unread bytes do not turn into a RST that destroys the alert. */
    shutdown(stream_fd(st), SHUT_WR);
    stream_setcb(st, refuse_read_cb, NULL, refuse_event_cb, c);
}

static void refuse(struct egress_conn *c)
{
    ev_free(c->timer);
    c->timer = NULL;
    if (!c->hello) {
        conn_close(c, true);
        return;
    }
    c->state = EC_REFUSING;
    evbuffer_add(stream_output(c->cl), access_denied_alert, sizeof(access_denied_alert));
    stream_setcb(c->cl, refuse_read_cb, refuse_write_cb, refuse_event_cb, c);
    stream_set_write_low(c->cl, 0);
    stream_set_timeouts(c->cl, REFUSE_LINGER_MS, REFUSE_LINGER_MS);
    stream_enable_read(c->cl);
    stream_flush(c->cl);
}

/* ---- splicing ---- */

static void tun_hold(void *arg)
{
    conn_enter(arg);
}

static void tun_release(void *arg)
{
    conn_leave(arg);
}

static void tun_closed(void *arg, bool flush_a)
{
    struct egress_conn *c = arg;
    conn_close(c, c->tun.reset);
}

static const struct tunnel_owner conn_tunnel_owner = {
    .hold = tun_hold, .release = tun_release, .closed = tun_closed};

static void on_connected(struct upconn *u, int err, void *arg)
{
    struct egress_conn *c = arg;
    struct worker *w = c->w;
    conn_enter(c);
    c->up = u;
    if (!u) {
        log_info("egress: %s -> %s: cannot connect to %s: %s", c->flow.src, c->flow.dst_text,
                 c->flow.dial_text, strerror(err));
        conn_close(c, true); /* as the destination answered: a reset */
        goto out;
    }
    c->state = EC_SPLICE;
    stream_set_read_high(c->cl, EX_HIGH_WATER);
    stream_set_write_low(c->cl, EX_LOW_WATER);
    stream_set_write_low(u->io, EX_LOW_WATER);
    c->tun.half_close = true;
    tunnel_start(&c->tun, c->cl, u->io, w->cfg->egress_idle_timeout_ms,
                 w->cfg->upstream_idle_timeout_ms, &conn_tunnel_owner, c);
out:
    conn_leave(c);
}

/* ---- the decision ---- */

static struct egress_conn *conn_of(struct egress_flow *f)
{
    return container_of(f, struct egress_conn, flow);
}

static void flow_decided(struct egress_flow *f)
{
    struct egress_conn *c = conn_of(f);
    struct worker *w = c->w;
    /* Refused before the ClientHello is in (no policy, maxConnections):
     * the peek goes on, so that a TLS client gets its alert all the same;
     * peek_done refuses. */
    if (c->state == EC_PEEK)
        return;
    ev_free(c->timer);
    c->timer = NULL;
    stream_disable_read(c->cl);
    if (!f->allowed) {
        refuse(c);
        return;
    }
    c->state = EC_CONNECT;
    c->up = upconn_connect(w->pool, "egress", (struct sockaddr *)&f->dial, f->dial_len,
                           w->cfg->upstream_connect_timeout_ms, on_connected, c);
    if (!c->up) {
        log_warn("egress: %s -> %s: cannot create a socket: %s", f->src, f->dial_text,
                 strerror(errno));
        conn_close(c, true);
    }
}

static void flow_revoke(struct egress_flow *f)
{
    conn_close(conn_of(f), true);
}

static void flow_hold(struct egress_flow *f)
{
    conn_enter(conn_of(f));
}

static void flow_release(struct egress_flow *f)
{
    conn_leave(conn_of(f));
}

static const struct egress_flow_ops conn_flow_ops = {
    .decided = flow_decided,
    .revoke = flow_revoke,
    .hold = flow_hold,
    .release = flow_release,
};

/* ---- peeking ---- */

/* The peek is over: decide with what it found. */
static void peek_done(struct egress_conn *c, const char *name)
{
    c->state = EC_DECIDING;
    ev_free(c->timer);
    c->timer = NULL;
    stream_disable_read(c->cl);
    if (name) { /* normalised, so at most EGRESS_NAME_MAX */
        size_t n = strnlen(name, sizeof(c->flow.name) - 1);
        memcpy(c->flow.name, name, n);
        c->flow.name[n] = '\0';
    }
    if (c->flow.decided)
        flow_decided(&c->flow); /* refused while peeking */
    else
        egress_flow_decide(&c->flow, name);
}

static void peek_read_cb(struct stream *st, void *arg)
{
    struct egress_conn *c = arg;
    struct evbuffer *in = stream_input(st);
    size_t len = evbuffer_get_length(in);
    struct clienthello_info info;
    char err[160];
    conn_enter(c);
    if (c->state != EC_PEEK)
        goto out;
    const unsigned char *buf = evbuffer_pullup(in, -1);
    int r = clienthello_parse(buf, len, &info, err, sizeof(err));
    if (r == CLIENTHELLO_NEED_MORE && len < CLIENTHELLO_MAX_INPUT)
        goto out;
    if (r < 0) {
        log_debug("egress: %s -> %s: not a TLS ClientHello (%s): decided by address", c->flow.src,
                  c->flow.dst_text, r == CLIENTHELLO_NEED_MORE ? "too long" : err);
        peek_done(c, NULL);
        goto out;
    }
    c->hello = true;
    c->hello_bytes = (uint64_t)r;
    c->flow.ech = info.ech;
    if (info.ech)
        METRIC_INC(&c->w->metrics, egress_ech);
    peek_done(c, info.has_sni ? info.sni : NULL);
out:
    conn_leave(c);
}

static void peek_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct egress_conn *c = arg;
    conn_enter(c);
    if (c->state == EC_PEEK) {
        log_debug("egress: %s -> %s: no ClientHello within %d ms: decided by address", c->flow.src,
                  c->flow.dst_text, c->w->cfg->egress_peek_timeout_ms);
        peek_done(c, NULL);
    }
    conn_leave(c);
}

/* The client's side while nothing is spliced yet: an EOF or an error ends
 * the connection (nothing to deliver anywhere). */
static void early_event_cb(struct stream *st, short what, void *arg)
{
    struct egress_conn *c = arg;
    conn_enter(c);
    log_debug("egress: %s -> %s: client %s before the splice", c->flow.src, c->flow.dst_text,
              (what & STREAM_EOF) ? "closed" : "failed");
    conn_close(c, (what & STREAM_ERROR) != 0);
    conn_leave(c);
}

/* ---- accepting ---- */

static int conn_accept(struct worker *w, int fd, const struct sockaddr *sa, int salen, bool tls)
{
    struct egress *eg = w->egress;
    struct sockaddr_storage dst;
    socklen_t dst_len;
    const struct config_egress_listener *l = tls ? &w->cfg->egress_tls : &w->cfg->egress_tcp;
    if (egress_original_dst_or_refuse(w, l, fd, sa, &dst, &dst_len) == -1)
        return -1;
    struct egress_conn *c = calloc(1, sizeof(*c));
    struct stream *st = c ? stream_new_socket(w->base, fd) : NULL;
    if (!st) {
        if (!c)
            close(fd); /* stream_new_socket closes it on failure */
        free(c);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->w = w;
    c->cl = st;
    c->tls = tls;
    egress_flow_init(&c->flow, eg, tls ? EGRESS_KIND_TLS : EGRESS_KIND_TCP, &conn_flow_ops, sa,
                     (struct sockaddr *)&dst, dst_len);
    list_insert_back(&eg->conns, &c->link);
    METRIC_INC(&w->metrics, egress_connections);
    METRIC_INC(&w->metrics, client_connections);
    __atomic_store_n(&w->session_count, w->session_count + 1, __ATOMIC_RELAXED);
    conn_enter(c);
    if (tls) {
        c->state = EC_PEEK;
        stream_setcb(st, peek_read_cb, NULL, early_event_cb, c);
        stream_set_read_high(st, CLIENTHELLO_MAX_INPUT);
        c->timer = evtimer_new(w->base, peek_timeout_cb, c);
        struct timeval tv = tv_from_ms(w->cfg->egress_peek_timeout_ms);
        if (!c->timer || evtimer_add(c->timer, &tv) == -1) {
            conn_close(c, true);
        } else {
            stream_enable_read(st);
            egress_flow_lookup(&c->flow);
        }
    } else {
        c->state = EC_DECIDING;
        stream_setcb(st, NULL, NULL, early_event_cb, c);
        egress_flow_decide(&c->flow, NULL);
    }
    conn_leave(c);
    return 0;
}

int egress_accept_tls(struct worker *w, size_t index, int fd, const struct sockaddr *sa, int salen)
{
    return conn_accept(w, fd, sa, salen, true);
}

int egress_accept_tcp(struct worker *w, size_t index, int fd, const struct sockaddr *sa, int salen)
{
    return conn_accept(w, fd, sa, salen, false);
}

void egress_conn_drain(struct list_node *n)
{
    struct egress_conn *c = container_of(n, struct egress_conn, link);
    if (c->state == EC_SPLICE)
        return; /* ends by itself, or at the drain timeout */
    conn_enter(c);
    conn_close(c, c->state != EC_REFUSING);
    conn_leave(c);
}
