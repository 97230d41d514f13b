/* The proxy's own responses: SPEC section 6. JSON or an HTML page, chosen by
 * the request's headers. Pure: renders into a caller buffer. */
#ifndef EDGEPROXY_REPLY_H
#define EDGEPROXY_REPLY_H

#include <stdbool.h>
#include <stddef.h>

/* A header value seen on the request: ptr/len view, ptr NULL when absent.
 * Borrowed for the call only. */
struct reply_hdr {
    const char *ptr;
    size_t len;
};

struct reply_negotiation {
    struct reply_hdr user_agent;
    struct reply_hdr accept;
    struct reply_hdr sec_fetch_mode;
    struct reply_hdr x_requested_with;
};

/* HTML only for a browser User-Agent (contains "Mozilla/") whose request does
 * not ask for JSON. JSON is asked for by: Accept containing
 * "application/json" but not "text/html"; or Sec-Fetch-Mode of cors,
 * no-cors, same-origin or websocket; or X-Requested-With present without
 * Sec-Fetch-Mode. Header matching is case-insensitive. */
bool reply_wants_html(const struct reply_negotiation *n);

struct reply {
    int status;             /* 400, 403, 429, 431, 502, 503, 504, ... */
    const char *message;    /* human sentence; escaped when rendered */
    const char *sandbox_id; /* NULL = field absent */
    int port;               /* 0 = field absent */
    long connection_limit;  /* < 0 = field absent */
    const char *host;       /* egress refusals: the Host asked for; NULL = absent */
    int retry_after;        /* seconds; 0 = no Retry-After header */
    bool close;             /* add "Connection: close" */
    bool head_only;         /* HEAD request: headers (with the real
                                Content-Length) but no body */
    bool html;              /* from reply_wants_html() */
};

/* Renders a complete HTTP/1.1 response (status line, headers, body) into
 * buf. Headers: Content-Type ("application/json; charset=utf-8" or
 * "text/html; charset=utf-8"), Content-Length, Access-Control-Allow-Origin: *,
 * Cache-Control: no-store, Retry-After when set, Connection: close when set.
 * JSON body: {"code":N,"message":"...","sandboxId":"...","port":N,
 * "connectionLimit":N,"host":"..."} with absent fields left out, strings
 * JSON-escaped.
 * HTML body: a small self-contained page with the status, message and
 * sandbox id, HTML-escaped. Returns the length written, or -1 if cap is too
 * small (4096 is enough for the proxy's own short ASCII messages; HTML
 * escaping can grow one byte of a message into 8). */
int reply_render(const struct reply *r, char *buf, size_t cap);

/* The same reply in parts, for a front end that frames it its own way
 * (HTTP/2 HEADERS + DATA): the header fields reply_render writes (but the
 * HTTP/1.1-only Connection) and the body. Names are as reply_render writes
 * them ("Content-Type"); values are NUL-terminated and point into the
 * struct or at literals. */
struct reply_field {
    const char *name;
    const char *value;
};
struct reply_parts {
    struct reply_field fields[5];
    size_t nfields;
    char length[24]; /* Content-Length's value */
    char retry[24];  /* Retry-After's value */
};

/* Renders the body into buf (none for head_only, but Content-Length still
 * says the real length) and fills p. Returns the body's length in buf (0
 * for head_only), -1 when cap is too small or the status is not 100..599. */
int reply_render_parts(const struct reply *r, char *buf, size_t cap, struct reply_parts *p);

/* "Bad Request", "Forbidden", ... ; "Unknown" for codes it does not know. */
const char *reply_reason(int status);

#endif
