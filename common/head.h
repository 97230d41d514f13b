/* A message head (request or response) as parsed by llhttp: the raw tokens
 * copied into one arena so header views survive buffer drains. One malloc per
 * arena, recycled per worker: no per-header allocation. */
#ifndef EDGEPROXY_HEAD_H
#define EDGEPROXY_HEAD_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The headers the proxy acts on, recognised once when the name is complete
 * (h2o's token habit): every later test is an integer compare. */
enum hdr_kind {
    HDR_OTHER = 0,
    HDR_HOST,
    HDR_CONNECTION,
    HDR_KEEP_ALIVE,
    HDR_PROXY_CONNECTION,
    HDR_TE,
    HDR_TRAILER,
    HDR_UPGRADE,
    HDR_CONTENT_LENGTH,
    HDR_TRANSFER_ENCODING,
    HDR_TRAFFIC_TOKEN, /* e2b-traffic-access-token */
    HDR_SANDBOX_ID,    /* e2b-sandbox-id */
    HDR_SANDBOX_PORT,  /* e2b-sandbox-port */
    HDR_X_FORWARDED_FOR,
    HDR_X_FORWARDED_PROTO,
    HDR_X_FORWARDED_HOST,
    HDR_FORWARDED, /* RFC 7239 */
    HDR_X_REAL_IP,
    HDR_USER_AGENT,
    HDR_ACCEPT,
    HDR_SEC_FETCH_MODE,
    HDR_X_REQUESTED_WITH,
    HDR_SEC_WEBSOCKET_KEY,    /* RFC 6455: the proxy draws its own for RFC 8441 */
    HDR_SEC_WEBSOCKET_ACCEPT, /* ... and checks the sandbox's answer */
};

struct hdr {
    uint32_t name_off, name_len;
    uint32_t val_off, val_len;
    enum hdr_kind kind;
};

enum head_err {
    HEAD_OK = 0,
    HEAD_TOO_LARGE = 1,   /* 431 */
    HEAD_TOO_MANY = 2,    /* 431 */
    HEAD_URL_TOO_LONG = 3 /* 414 */
};

struct head {
    struct head *next_free;
    char *buf;
    uint32_t cap, used;
    struct hdr *hdrs;
    uint32_t max_hdrs, nhdrs;
    uint32_t url_off, url_len; /* request target, or response reason */
    uint32_t max_url;
    bool in_field, in_value;
    bool conn_lists_others; /* a Connection header names more
                                         than close/keep-alive/upgrade */
    enum head_err err;
};

/* Recycled arenas, one pool per worker: enough for the requests in flight
 * on a busy worker without holding memory for idle keep-alive connections. */
#define HEAD_FREE_MAX 256

struct head_limits {
    uint32_t max_bytes;   /* raw bytes of the head (client.max_head_bytes) */
    uint32_t max_headers; /* header fields (client.max_headers) */
    uint32_t max_url;     /* request target (client.max_request_line) */
};

struct head_pool {
    struct head *free;
    size_t count;
    struct head_limits limits;
};

/* Sets the limits new arenas get; changed limits drop the recycled arenas,
 * and an arena of the old limits handed back later is freed, not kept (a
 * reload must not serve a request with the old limits). */
void head_pool_set_limits(struct head_pool *p, uint32_t max_bytes, uint32_t max_headers,
                          uint32_t max_url);
/* An arena with the pool's current limits (NULL when out of memory); give
 * it back with head_put. head_free_all frees the recycled ones. */
struct head *head_get(struct head_pool *p);
void head_put(struct head_pool *p, struct head *h);
void head_free_all(struct head_pool *p);

/* llhttp settings whose span callbacks (target or status, header names and
 * values, trailers too) fill a head: the head being collected is the
 * `struct head *` at byte offset `head_off` in the parser's data object, so
 * one set of callbacks serves the HTTP/1 request parser (the session's
 * exchange's rh), the upstream response parser (the exchange's ph) and the
 * tests. `st` is first: llhttp's parser->settings points at it. The caller
 * llhttp_settings_init()s `st` and sets its other callbacks. */
struct head_parser_settings {
    llhttp_settings_t st;
    size_t head_off;
};
void head_parser_callbacks(struct head_parser_settings *hs, size_t head_off);

/* Appenders for the llhttp span callbacks. 0 ok, -1 limit hit (h->err set). */
int head_on_url(struct head *h, const char *at, size_t len);
int head_on_field(struct head *h, const char *at, size_t len);
int head_on_field_done(struct head *h);
int head_on_value(struct head *h, const char *at, size_t len);
int head_on_value_done(struct head *h);

static inline const char *head_str(const struct head *h, uint32_t off)
{
    return h->buf + off;
}

/* Case-insensitive header name compare against a lower-case literal. */
bool head_name_is(const struct head *h, const struct hdr *x, const char *lc, size_t lclen);
#define HEAD_NAME_IS(h, x, lit) head_name_is(h, x, lit, sizeof(lit) - 1)

/* First header of that kind, or NULL; *count (if given) gets how many. */
const struct hdr *head_find(const struct head *h, enum hdr_kind kind, unsigned *count);

/* The one header of a kind that may appear only once: NULL when absent,
 * *dup set when there are several. */
static inline const struct hdr *head_find_one(const struct head *h, enum hdr_kind kind, bool *dup)
{
    unsigned n;
    const struct hdr *x = head_find(h, kind, &n);
    *dup = n > 1;
    return x;
}

/* Does a comma-separated header value list (e.g. Connection) contain the
 * token (case-insensitive)? Elements as common/toklist.h reads them. */
bool head_list_has(const char *val, size_t len, const char *tok, size_t toklen);

/* Does a header have an empty name (": value")? llhttp accepts it, RFC 9110
 * section 5.1 does not: a request with one is refused, a response is a 502. */
bool head_has_empty_name(const struct head *h);

/* One whole field appended (a front end that gets fields whole, like
 * HTTP/2, rather than in llhttp spans): the same limits and header kinds as
 * the span appenders. 0 ok, -1 limit hit (h->err set). */
int head_add(struct head *h, const char *name, size_t nlen, const char *val, size_t vlen);

/* Copies bytes into the arena without making them a field (e.g. HTTP/2's
 * :authority), *off gets where. 0 ok, -1 full (h->err = HEAD_TOO_LARGE). */
int head_add_bytes(struct head *h, const char *at, size_t len, uint32_t *off);

/* May this field travel in a trailer section (RFC 9110 section 6.5.1)? Not
 * what frames, routes or authenticates the message (Host, Content-Length,
 * Transfer-Encoding, the traffic token), never a hop-by-hop field. */
bool head_trailer_allowed(const struct head *h, const struct hdr *x);

/* Starts the arena over for the next message (1xx then final response). */
void head_reset(struct head *h);

/* Hop-by-hop (RFC 9110 section 7.6.1): Connection, Keep-Alive,
 * Proxy-Connection, TE, Trailer, Upgrade, and any name listed in a Connection
 * header, except the framing and routing headers (Content-Length,
 * Transfer-Encoding, Host), which a client must never be able to strip: the
 * body is relayed with its original framing. */
bool head_is_hop_by_hop(const struct head *h, const struct hdr *x);

#endif
