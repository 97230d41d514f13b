/* The proxy's own responses: SPEC section 6. */
#include "reply.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

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
    while (len > 0 && (*p == ' ' || *p == '\t')) {
        p++;
        len--;
    }
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    if (len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)p[i]) != (unsigned char)word[i])
            return false;
    return true;
}

bool reply_wants_html(const struct reply_negotiation *n)
{
    static const char *const json_modes[] = {"cors", "no-cors", "same-origin",
                                             "websocket"};

    if (!hdr_contains(&n->user_agent, "mozilla/"))
        return false;
    if (hdr_contains(&n->accept, "application/json") &&
        !hdr_contains(&n->accept, "text/html"))
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
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* A writer that counts what it could not store, so the body can be sized in
 * a first pass (buf NULL) and written in a second: no scratch buffer. */
struct out {
    char *buf;
    size_t cap;
    size_t len;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->buf != NULL && n <= o->cap && o->len <= o->cap - n)
        memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_long(struct out *o, long v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%ld", v);

    put(o, tmp, (size_t)n);
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629 section 4: no
 * overlongs, no surrogates, nothing above U+10FFFF), 0 if ill-formed. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return n;
}

/* JSON string body (RFC 8259 section 7): quote, backslash and C0 controls
 * escaped; ill-formed UTF-8 becomes U+FFFD so the document stays valid. */
static void put_json_str(struct out *o, const char *str)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t len = strlen(str);

    put(o, "\"", 1);
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        size_t n;

        if (c == '"') {
            put(o, "\\\"", 2);
        } else if (c == '\\') {
            put(o, "\\\\", 2);
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

            put(o, e, sizeof(e));
        } else if ((n = utf8_seq(s + i, len - i)) > 0) {
            put(o, str + i, n);
            i += n;
            continue;
        } else {
            put(o, "\\ufffd", 6);
        }
        i++;
    }
    put(o, "\"", 1);
}

/* HTML text and attribute safe; controls and ill-formed UTF-8 become
 * U+FFFD (a page never needs them). */
static void put_html_str(struct out *o, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t len = strlen(str);

    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        size_t n;

        switch (c) {
        case '&': puts_(o, "&amp;"); break;
        case '<': puts_(o, "&lt;"); break;
        case '>': puts_(o, "&gt;"); break;
        case '"': puts_(o, "&quot;"); break;
        case '\'': puts_(o, "&#39;"); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                puts_(o, "&#xfffd;");
            } else if ((n = utf8_seq(s + i, len - i)) > 0) {
                put(o, str + i, n);
                i += n;
                continue;
            } else {
                puts_(o, "&#xfffd;");
            }
        }
        i++;
    }
}

static const char *message_of(const struct reply *r)
{
    return r->message != NULL ? r->message : reply_reason(r->status);
}

static void render_json(struct out *o, const struct reply *r)
{
    puts_(o, "{\"code\":");
    put_long(o, r->status);
    puts_(o, ",\"message\":");
    put_json_str(o, message_of(r));
    if (r->sandbox_id != NULL) {
        puts_(o, ",\"sandboxId\":");
        put_json_str(o, r->sandbox_id);
    }
    if (r->port != 0) {
        puts_(o, ",\"port\":");
        put_long(o, r->port);
    }
    if (r->connection_limit >= 0) {
        puts_(o, ",\"connectionLimit\":");
        put_long(o, r->connection_limit);
    }
    puts_(o, "}\n");
}

static void render_html(struct out *o, const struct reply *r)
{
    puts_(o, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             "<meta name=\"viewport\" content=\"width=device-width,"
             "initial-scale=1\"><title>");
    put_long(o, r->status);
    puts_(o, " ");
    puts_(o, reply_reason(r->status));
    puts_(o, "</title><style>body{font-family:system-ui,sans-serif;"
             "max-width:40em;margin:4em auto;padding:0 1em;color:#222}"
             "h1{font-size:1.4em}code{background:#eee;padding:0 .3em}"
             "</style></head><body><h1>");
    put_long(o, r->status);
    puts_(o, " ");
    puts_(o, reply_reason(r->status));
    puts_(o, "</h1><p>");
    put_html_str(o, message_of(r));
    puts_(o, "</p>");
    if (r->sandbox_id != NULL) {
        puts_(o, "<p>Sandbox: <code>");
        put_html_str(o, r->sandbox_id);
        puts_(o, "</code></p>");
    }
    if (r->port != 0) {
        puts_(o, "<p>Port: <code>");
        put_long(o, r->port);
        puts_(o, "</code></p>");
    }
    if (r->connection_limit >= 0) {
        puts_(o, "<p>Connection limit: <code>");
        put_long(o, r->connection_limit);
        puts_(o, "</code></p>");
    }
    puts_(o, "</body></html>\n");
}

int reply_render(const struct reply *r, char *buf, size_t cap)
{
    struct out sizing = {NULL, 0, 0};
    struct out o = {buf, cap, 0};
    void (*body)(struct out *, const struct reply *);

    /* The status line needs three digits (RFC 9112 section 4). */
    if (r == NULL || buf == NULL || r->status < 100 || r->status > 599)
        return -1;
    body = r->html ? render_html : render_json;
    body(&sizing, r);

    puts_(&o, "HTTP/1.1 ");
    put_long(&o, r->status);
    puts_(&o, " ");
    puts_(&o, reply_reason(r->status));
    puts_(&o, r->html ? "\r\nContent-Type: text/html; charset=utf-8"
                      : "\r\nContent-Type: application/json; charset=utf-8");
    puts_(&o, "\r\nContent-Length: ");
    put_long(&o, (long)sizing.len);
    puts_(&o, "\r\nAccess-Control-Allow-Origin: *"
              "\r\nCache-Control: no-store\r\n");
    if (r->retry_after > 0) {
        puts_(&o, "Retry-After: ");
        put_long(&o, r->retry_after);
        puts_(&o, "\r\n");
    }
    if (r->close)
        puts_(&o, "Connection: close\r\n");
    puts_(&o, "\r\n");
    if (!r->head_only)
        body(&o, r);

    if (o.len > cap || o.len > INT32_MAX)
        return -1;
    /* A convenience for logs and tests, not part of the length. */
    if (o.len < cap)
        buf[o.len] = '\0';
    return (int)o.len;
}
