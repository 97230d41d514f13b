/* The proxy's own responses: SPEC section 6. */
#include "reply.h"

#include <stdint.h>
#include <string.h>

#include "outbuf.h"
#include "toklist.h"

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Case-insensitive search for the lower-case `needle` in a header view. */
static bool hdr_contains(const struct reply_hdr *h, const char *needle)
{
    size_t n = strlen(needle);

    if (h->ptr == NULL || h->len < n)
        return false;
    for (size_t i = 0; i + n <= h->len; i++) {
        size_t j = 0;

        while (j < n && lower((unsigned char)h->ptr[i + j]) == (unsigned char)needle[j])
            j++;
        if (j == n)
            return true;
    }
    return false;
}

/* Case-insensitive equality with the lower-case `word`, ignoring optional
 * whitespace around the value (RFC 9110 section 5.5). */
static bool hdr_is(const struct reply_hdr *h, const char *word)
{
    const char *p = h->ptr;
    size_t len = h->len, n = strlen(word);

    if (p == NULL)
        return false;
    ows_trim(&p, &len);
    if (len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)p[i]) != (unsigned char)word[i])
            return false;
    return true;
}

bool reply_wants_html(const struct reply_negotiation *n)
{
    static const char *const json_modes[] = {"cors", "no-cors", "same-origin", "websocket"};

    if (!hdr_contains(&n->user_agent, "mozilla/"))
        return false;
    if (hdr_contains(&n->accept, "application/json") && !hdr_contains(&n->accept, "text/html"))
        return false;
    for (size_t i = 0; i < sizeof(json_modes) / sizeof(json_modes[0]); i++)
        if (hdr_is(&n->sec_fetch_mode, json_modes[i]))
            return false;
    /* Old XHR libraries mark themselves this way; a browser new enough to
     * send Sec-Fetch-Mode has already told us above. */
    if (n->x_requested_with.ptr != NULL && n->sec_fetch_mode.ptr == NULL)
        return false;
    return true;
}

const char *reply_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* JSON string (RFC 8259 section 7), whole: quote, backslash and C0
 * controls escaped; ill-formed UTF-8 becomes U+FFFD so the document stays
 * valid. */
static void put_json_str(struct outbuf *o, const char *str)
{
    outbuf_json_str(o, str, strlen(str), SIZE_MAX);
}

/* HTML text and attribute safe; controls and ill-formed UTF-8 become
 * U+FFFD (a page never needs them). */
static void put_html_str(struct outbuf *o, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t len = strlen(str);

    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        size_t n;

        switch (c) {
        case '&':
            outbuf_str(o, "&amp;");
            break;
        case '<':
            outbuf_str(o, "&lt;");
            break;
        case '>':
            outbuf_str(o, "&gt;");
            break;
        case '"':
            outbuf_str(o, "&quot;");
            break;
        case '\'':
            outbuf_str(o, "&#39;");
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                outbuf_str(o, "&#xfffd;");
            } else if ((n = outbuf_utf8_len(s + i, len - i)) > 0) {
                outbuf_put(o, str + i, n);
                i += n;
                continue;
            } else {
                outbuf_str(o, "&#xfffd;");
            }
        }
        i++;
    }
}

static const char *message_of(const struct reply *r)
{
    return r->message != NULL ? r->message : reply_reason(r->status);
}

static void render_json(struct outbuf *o, const struct reply *r)
{
    outbuf_str(o, "{\"code\":");
    outbuf_int(o, r->status);
    outbuf_str(o, ",\"message\":");
    put_json_str(o, message_of(r));
    if (r->sandbox_id != NULL) {
        outbuf_str(o, ",\"sandboxId\":");
        put_json_str(o, r->sandbox_id);
    }
    if (r->port != 0) {
        outbuf_str(o, ",\"port\":");
        outbuf_int(o, r->port);
    }
    if (r->connection_limit >= 0) {
        outbuf_str(o, ",\"connectionLimit\":");
        outbuf_int(o, r->connection_limit);
    }
    if (r->host != NULL) {
        outbuf_str(o, ",\"host\":");
        put_json_str(o, r->host);
    }
    outbuf_str(o, "}\n");
}

static void render_html(struct outbuf *o, const struct reply *r)
{
    outbuf_str(o, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                  "<meta name=\"viewport\" content=\"width=device-width,"
                  "initial-scale=1\"><title>");
    outbuf_int(o, r->status);
    outbuf_str(o, " ");
    outbuf_str(o, reply_reason(r->status));
    outbuf_str(o, "</title><style>body{font-family:system-ui,sans-serif;"
                  "max-width:40em;margin:4em auto;padding:0 1em;color:#222}"
                  "h1{font-size:1.4em}code{background:#eee;padding:0 .3em}"
                  "</style></head><body><h1>");
    outbuf_int(o, r->status);
    outbuf_str(o, " ");
    outbuf_str(o, reply_reason(r->status));
    outbuf_str(o, "</h1><p>");
    put_html_str(o, message_of(r));
    outbuf_str(o, "</p>");
    if (r->sandbox_id != NULL) {
        outbuf_str(o, "<p>Sandbox: <code>");
        put_html_str(o, r->sandbox_id);
        outbuf_str(o, "</code></p>");
    }
    if (r->port != 0) {
        outbuf_str(o, "<p>Port: <code>");
        outbuf_int(o, r->port);
        outbuf_str(o, "</code></p>");
    }
    if (r->connection_limit >= 0) {
        outbuf_str(o, "<p>Connection limit: <code>");
        outbuf_int(o, r->connection_limit);
        outbuf_str(o, "</code></p>");
    }
    if (r->host != NULL) {
        outbuf_str(o, "<p>Host: <code>");
        put_html_str(o, r->host);
        outbuf_str(o, "</code></p>");
    }
    outbuf_str(o, "</body></html>\n");
}

/* The fields for a body of body_len bytes, in the order they are written. */
static void fill_fields(const struct reply *r, size_t body_len, struct reply_parts *p)
{
    struct outbuf o;

    p->nfields = 0;
    p->fields[p->nfields++] = (struct reply_field){
        "Content-Type", r->html ? "text/html; charset=utf-8" : "application/json; charset=utf-8"};
    outbuf_init(&o, p->length, sizeof(p->length));
    outbuf_uint(&o, body_len, 1);
    p->length[o.len] = '\0';
    p->fields[p->nfields++] = (struct reply_field){"Content-Length", p->length};
    p->fields[p->nfields++] = (struct reply_field){"Access-Control-Allow-Origin", "*"};
    p->fields[p->nfields++] = (struct reply_field){"Cache-Control", "no-store"};
    if (r->retry_after > 0) {
        outbuf_init(&o, p->retry, sizeof(p->retry));
        outbuf_int(&o, r->retry_after);
        p->retry[o.len] = '\0';
        p->fields[p->nfields++] = (struct reply_field){"Retry-After", p->retry};
    }
}

/* The body's length (a counting pass through the same writer). */
static size_t body_length(const struct reply *r)
{
    struct outbuf sizing;

    outbuf_init(&sizing, NULL, SIZE_MAX);
    (r->html ? render_html : render_json)(&sizing, r);
    return sizing.len;
}

int reply_render_parts(const struct reply *r, char *buf, size_t cap, struct reply_parts *p)
{
    struct outbuf o;

    if (r == NULL || buf == NULL || p == NULL || r->status < 100 || r->status > 599)
        return -1;
    fill_fields(r, body_length(r), p);
    if (r->head_only)
        return 0;
    outbuf_init(&o, buf, cap);
    (r->html ? render_html : render_json)(&o, r);
    if (o.truncated || o.len > INT32_MAX)
        return -1;
    return (int)o.len;
}

int reply_render(const struct reply *r, char *buf, size_t cap)
{
    struct outbuf o;
    struct reply_parts p;

    /* The status line needs three digits (RFC 9112 section 4). */
    if (r == NULL || buf == NULL || r->status < 100 || r->status > 599)
        return -1;
    /* Two passes, no scratch buffer: count the body, then write it all. */
    fill_fields(r, body_length(r), &p);
    outbuf_init(&o, buf, cap);

    outbuf_str(&o, "HTTP/1.1 ");
    outbuf_int(&o, r->status);
    outbuf_str(&o, " ");
    outbuf_str(&o, reply_reason(r->status));
    outbuf_str(&o, "\r\n");
    for (size_t i = 0; i < p.nfields; i++) {
        outbuf_str(&o, p.fields[i].name);
        outbuf_str(&o, ": ");
        outbuf_str(&o, p.fields[i].value);
        outbuf_str(&o, "\r\n");
    }
    if (r->close)
        outbuf_str(&o, "Connection: close\r\n");
    outbuf_str(&o, "\r\n");
    if (!r->head_only)
        (r->html ? render_html : render_json)(&o, r);

    if (o.truncated || o.len > INT32_MAX)
        return -1;
    /* A convenience for logs and tests, not part of the length. */
    if (o.len < cap)
        buf[o.len] = '\0';
    return (int)o.len;
}
