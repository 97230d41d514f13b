/* Internal to http2/: what the connection (h2_conn.c: the socket, nghttp2,
 * timers, abuse limits) and the streams (h2_stream.c: requests assembled
 * into exchanges, the exchange operations in HTTP/2) share.
 *
 * Lifetime: neither a connection nor a stream is freed inside a callback.
 * Every entry point brackets its work with conn_enter/conn_leave; a stream
 * that is over goes on the connection's `dead` list and is freed, like a
 * closing connection, when the outermost leave unwinds. nghttp2 is never
 * called re-entrantly: nghttp2_session_mem_recv and _send run only from
 * the connection's own handlers (c->in_ngh guards it), and what an exchange
 * operation submits is sent by the flush at that same outermost leave. */
#ifndef EDGEPROXY_H2_INT_H
#define EDGEPROXY_H2_INT_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>

#include "exchange.h"
#include "h2.h"
#include "h2_rules.h"
#include "list.h"
#include "websocket.h"

struct evbuffer;
struct event;

/* Every frame starts with 9 bytes (RFC 9113 section 4.1). */
#define H2_FRAME_HEADER 9

/* The socket's output: frames are written while it holds less than this,
 * resumed when it drains to the low mark (throughput without a deep queue
 * in front of every stream). */
#define H2_OUT_HIGH (128 * 1024)
#define H2_OUT_LOW (32 * 1024)
/* Response bytes queued in all the streams of a connection: above this
 * every stream reports its output full, so the upstreams stop being read
 * until the client takes some (one slow client, one bounded connection). */
#define H2_CONN_QUEUE_HIGH (1024 * 1024)
#define H2_CONN_QUEUE_LOW (512 * 1024)
/* How long a closing connection reads and discards after its GOAWAY (the
 * lingering close of http1/). */
#define H2_LINGER_MS 2000
/* The reset budget's cap (and start), see h2_rules.h. */
#define H2_RESET_BUDGET 100
/* A header block decoding to this many times client.max_head_bytes is no
 * request, it is an HPACK bomb: the stream is reset without reading more. */
#define H2_HEADER_BOMB_FACTOR 4

struct h2_conn {
    struct list_node link; /* on the worker's h2_conns */
    struct worker *w;
    struct stream *io;
    struct client_info client;
    nghttp2_session *ngh;
    int busy;          /* callback nesting */
    bool closing;      /* free when busy drops to 0 */
    bool in_ngh;       /* inside nghttp2_session_mem_recv or _send */
    bool in_flush;     /* the outermost leave is flushing */
    bool goaway;       /* GOAWAY sent: close once the streams are done */
    bool flushing_out; /* nghttp2 is done: write what is queued, then close */
    bool read_paused;  /* output congested: the client is not read */
    bool aborted;      /* an abuse limit tripped: every stream released */
    bool lingering;    /* GOAWAY written, half-closed: reading and discarding */
    uint64_t linger_until_ms;

    struct list_node streams; /* h2_stream.link: streams with an exchange */
    struct list_node ready;   /* h2_stream.ready_link: heads complete this read */
    struct list_node dead;    /* h2_stream.link: to free at the outermost leave */
    unsigned nstreams;        /* on `streams` */
    uint64_t requests;        /* streams accepted (http2.max_requests) */
    unsigned new_in_read;     /* streams begun in this read (rapid reset) */
    unsigned npaused;         /* streams whose pending() said full */
    size_t queued;            /* response bytes in all streams' queues */
    struct h2_budget budget;
    uint64_t bytes_in, payload_in; /* the flood check */

    struct event *timer;
    uint64_t armed_ms;   /* when the timer fires; 0 = not armed */
    uint64_t idle_ms;    /* since when no stream is open */
    uint64_t started_ms; /* the connection's first request must come in
                          * client.header_timeout_ms */

    /* 421: the last authority host the certificate was found to cover */
    char covered[256];

    nghttp2_nv *nva; /* scratch for HEADERS being submitted */
    size_t nva_cap;
};

struct h2_stream {
    struct exchange ex;
    struct list_node link;       /* conn's streams, then dead */
    struct list_node ready_link; /* conn's ready list */
    struct h2_conn *c;
    int32_t id;

    /* the request */
    bool head_done;     /* END_HEADERS of the request head */
    bool routed;        /* given to route_request */
    bool req_end_seen;  /* END_STREAM from the client */
    bool up_ready;      /* the upstream took the head (ops->body_consumed) */
    bool up_full;       /* ... and its output is above the high-water mark */
    bool dropping_body; /* answered already: DATA is consumed and dropped */
    int refuse;         /* a status decided while the head came in (431, 414, 400) */
    const char *refuse_why;
    uint32_t decoded; /* header bytes decoded for this block (HPACK bomb) */
    uint64_t body_received;
    struct evbuffer *body_in; /* DATA not yet handed upstream */
    nghttp2_rcbuf **cookies;  /* crumbs, joined with "; " at END_HEADERS */
    unsigned ncookies, cookies_cap;
    uint64_t head_deadline_ms; /* the head must be complete by then */
    uint64_t body_deadline_ms; /* client.body_timeout_ms since the last DATA */

    /* the response */
    bool resp_submitted;  /* final HEADERS submitted */
    bool resp_ended;      /* the whole body is in `out` */
    bool deferred;        /* the data provider said DEFERRED */
    bool ex_done;         /* exchange_finish'ed */
    bool our_reset;       /* a RST_STREAM the proxy sends not for the client's fault */
    bool closed;          /* nghttp2 closed the stream */
    bool paused_full;     /* counted in c->npaused */
    struct evbuffer *out; /* response DATA not yet framed */
    nghttp2_nv *trailers; /* copied at ops->end (one block), sent after the last DATA */
    size_t ntrailers;
    size_t sent_since_mark; /* the send timeout's notion of progress */
    uint64_t send_mark_ms;

    /* CONNECT (RFC 9113 section 8.5) and extended CONNECT (RFC 8441) */
    bool connect;  /* :method CONNECT */
    bool protocol; /* :protocol given (nghttp2 checked it rides a CONNECT) */
    bool ws;       /* :protocol websocket: a WebSocket, upstream an HTTP/1.1 Upgrade */
    char ws_key[WS_KEY_LEN + 1]; /* the Sec-WebSocket-Key the proxy drew */
    /* the WebSocket's tunnel (h2_tunnel.c), after the sandbox's 101 */
    bool tunnel;            /* DATA <-> the upstream connection's bytes */
    bool tun_paused;        /* the upstream is not read: this stream's output is full */
    bool tun_up_eof;        /* the upstream said EOF: END_STREAM after the last DATA */
    bool tun_up_shut;       /* the client's END_STREAM reached the upstream (SHUT_WR) */
    uint64_t tun_active_ms; /* a byte moved either way (client.websocket_idle_timeout_ms) */
};

void conn_enter(struct h2_conn *c);
void conn_leave(struct h2_conn *c);
/* The timer fires no later than `when_ms` (a deadline that just began). */
void conn_arm(struct h2_conn *c, uint64_t when_ms);
/* The client broke a rule on this connection: GOAWAY with `code`, close. */
void conn_abuse(struct h2_conn *c, uint32_t code, const char *why);
/* A reset the client caused: spend the budget (may close). */
void conn_spend(struct h2_conn *c, const char *why);
/* Room for n header fields in c->nva; NULL when out of memory. */
nghttp2_nv *conn_nva(struct h2_conn *c, size_t n);

/* h2_stream.c: the nghttp2 callbacks that concern one stream. */
int h2s_on_begin_headers(struct h2_conn *c, const nghttp2_frame *frame);
int h2s_on_header(struct h2_conn *c, const nghttp2_frame *frame, nghttp2_rcbuf *name,
                  nghttp2_rcbuf *value);
int h2s_on_frame_recv(struct h2_conn *c, const nghttp2_frame *frame);
int h2s_on_data(struct h2_conn *c, int32_t id, const uint8_t *data, size_t len);
void h2s_on_close(struct h2_conn *c, struct h2_stream *st, uint32_t code);
void h2s_on_end_stream_sent(struct h2_conn *c, struct h2_stream *st);
int h2s_send_data(struct h2_conn *c, nghttp2_frame *frame, const uint8_t *framehd, size_t length,
                  nghttp2_data_source *source);
/* After a read: route the streams whose head completed in it. */
void h2s_route_ready(struct h2_conn *c);
/* Timers: what is due for this stream at `now` (reset, close); returns the
 * stream's next deadline, 0 for none. */
uint64_t h2s_check_deadlines(struct h2_conn *c, struct h2_stream *st, uint64_t now);
/* After a flush: upstreams paused on a full output may be read again. */
void h2s_resume_paused(struct h2_conn *c);
/* Ends the stream's exchange (abort the upstream when it was still at
 * work) and moves it to the dead list. */
void h2s_release(struct h2_conn *c, struct h2_stream *st);
void h2s_free(struct h2_stream *st);
/* For the tunnel: `len` bytes at the front of src become the stream's
 * response DATA (moved, not copied); the stream's queued output as
 * ops->pending counts it (may mark it paused); a RST_STREAM with `code`
 * that is not the client's fault, ending the exchange. */
void h2s_send_out(struct h2_stream *st, struct evbuffer *src, size_t len);
size_t h2s_pending(struct h2_stream *st);
void h2s_abort(struct h2_stream *st, uint32_t code);
void h2s_resume_data(struct h2_stream *st);

/* h2_tunnel.c: an RFC 8441 WebSocket after the sandbox's 101. */
/* ops->start_tunnel of a WebSocket stream: DATA <-> the upstream's bytes. */
void h2t_start(struct h2_stream *st);
/* DATA from the client (before the 101 it waits, within the window). */
void h2t_on_data(struct h2_stream *st, const uint8_t *data, size_t len);
/* The client's END_STREAM: a half-close toward the sandbox. */
void h2t_on_client_end(struct h2_stream *st);
/* The stream's output drained: read the upstream again. */
void h2t_resume(struct h2_stream *st);
/* The idle timeout (both directions quiet): resets the stream when due
 * and returns 0, else the deadline. */
uint64_t h2t_idle_deadline(struct h2_stream *st, uint64_t now);

#endif
