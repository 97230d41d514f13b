/* What egress says about itself: one JSON line per connection (TLS, TCP)
 * or request (port 80) in the access log, written through the access
 * log's own buffer and bounded writer (ingress/access_log.c, common/outbuf.h),
 * and the decisions counted for /metrics. Keys and budgets are README's
 * ("Egress log lines"). */
#include <string.h>

#include "access_log.h"
#include "exchange.h"
#include "flow.h"
#include "head.h"
#include "outbuf.h"
#include "policy.h"
#include "worker.h"

/* Budgets, in bytes as written (escapes count): what a sandbox or the
 * control plane chooses is cut there; the rest always fits beside them
 * (EG_WIDEST: every number at its widest, every string empty). */
#define EG_SANDBOX_MAX 128
#define EG_NAME_MAX 256 /* a normalised name: 253 plain bytes */
#define EG_RULE_MAX 300 /* "allowOut[4095] " + a name, ... */
#define EG_ADDR_MAX 64
#define EG_METHOD_MAX 32
#define EG_HOST_MAX 512
#define EG_PATH_MAX 1800
#define EG_WIDEST                                                                              \
    "{\"time\":\"-2147481748-12-31T23:59:60.999Z\",\"egress\":\"http\",\"sandbox_id\":\"\","   \
    "\"source\":\"\",\"destination\":\"\",\"name\":\"\",\"ech\":false,\"decision\":\"allow\"," \
    "\"rule\":\"\",\"connected\":\"\",\"revoked\":\"\",\"method\":\"\",\"host\":\"\","         \
    "\"path\":\"\",\"status\":-2147483648,\"bytes\":18446744073709551615,"                     \
    "\"bytes_out\":18446744073709551615,\"bytes_in\":18446744073709551615,"                    \
    "\"duration_ms\":18446744073709551.615}\n"
_Static_assert(sizeof(EG_WIDEST) - 1 + EG_SANDBOX_MAX + EG_NAME_MAX + 2 * EG_RULE_MAX +
                       3 * EG_ADDR_MAX + EG_METHOD_MAX + EG_HOST_MAX + EG_PATH_MAX <=
                   ACCESS_LOG_LINE_MAX,
               "egress log budgets exceed the line cap");

static const char *const kind_names[EGRESS_KIND_COUNT] = {"http", "tls", "tcp"};

static void put_str_or_null(struct outbuf *ob, const char *s, size_t n, size_t budget)
{
    if (!s || !n) {
        outbuf_lit(ob, "null");
        return;
    }
    outbuf_json_str(ob, s, n, budget);
}

static void put_cstr_or_null(struct outbuf *ob, const char *s, size_t budget)
{
    put_str_or_null(ob, s, s ? strlen(s) : 0, budget);
}

static void put_ms(struct outbuf *ob, uint64_t us)
{
    outbuf_uint(ob, us / 1000, 1);
    outbuf_lit(ob, ".");
    outbuf_uint(ob, us % 1000, 3);
}

/* The keys every egress line starts with: time ... revoked. */
static void put_head(struct outbuf *ob, const char *kind, const struct egress_flow *f,
                     const char *src, const char *dst)
{
    outbuf_lit(ob, "{\"time\":\"");
    access_log_put_time(ob);
    outbuf_lit(ob, "\",\"egress\":\"");
    outbuf_str(ob, kind);
    outbuf_lit(ob, "\",\"sandbox_id\":");
    put_cstr_or_null(ob, f ? egress_flow_sandbox(f) : NULL, EG_SANDBOX_MAX);
    outbuf_lit(ob, ",\"source\":");
    put_cstr_or_null(ob, src, EG_ADDR_MAX);
    outbuf_lit(ob, ",\"destination\":");
    put_cstr_or_null(ob, dst, EG_ADDR_MAX);
    outbuf_lit(ob, ",\"name\":");
    put_cstr_or_null(ob, f ? f->name : NULL, EG_NAME_MAX);
    if (f && f->kind == EGRESS_KIND_TLS) {
        outbuf_lit(ob, ",\"ech\":");
        if (f->ech)
            outbuf_lit(ob, "true");
        else
            outbuf_lit(ob, "false");
    }
    outbuf_lit(ob, ",\"decision\":");
    if (!f || !f->decided)
        outbuf_lit(ob, "null");
    else if (f->allowed)
        outbuf_lit(ob, "\"allow\"");
    else
        outbuf_lit(ob, "\"deny\"");
    outbuf_lit(ob, ",\"rule\":");
    put_cstr_or_null(ob, f && f->decided ? f->d.rule : NULL, EG_RULE_MAX);
    outbuf_lit(ob, ",\"connected\":");
    put_cstr_or_null(ob, f && f->allowed ? f->dial_text : NULL, EG_ADDR_MAX);
    outbuf_lit(ob, ",\"revoked\":");
    put_cstr_or_null(ob, f ? f->revoked : NULL, EG_RULE_MAX);
}

struct conn_line {
    const struct egress_flow *f;
    uint64_t out, in, us;
};

static void format_conn(struct outbuf *ob, const void *arg)
{
    const struct conn_line *l = arg;
    put_head(ob, kind_names[l->f->kind], l->f, l->f->src, l->f->dst_text);
    outbuf_lit(ob, ",\"bytes_out\":");
    outbuf_uint(ob, l->out, 1);
    outbuf_lit(ob, ",\"bytes_in\":");
    outbuf_uint(ob, l->in, 1);
    outbuf_lit(ob, ",\"duration_ms\":");
    put_ms(ob, l->us);
    outbuf_lit(ob, "}\n");
}

void egress_log_conn(struct egress_flow *f, uint64_t bytes_out, uint64_t bytes_in,
                     uint64_t duration_us)
{
    struct conn_line l = {f, bytes_out, bytes_in, duration_us};
    access_log_append(f->eg->w, format_conn, &l);
}

struct request_line {
    const struct egress_flow *f;
    const struct exchange *ex;
    uint64_t us;
};

static void format_request(struct outbuf *ob, const void *arg)
{
    const struct request_line *l = arg;
    const struct exchange *ex = l->ex;
    char dst[INET6_ADDRSTRLEN + 8] = "";
    if (!l->f && ex->client->dst_len)
        egress_format_endpoint((const struct sockaddr *)&ex->client->dst, dst, sizeof(dst));
    put_head(ob, "http", l->f, l->f ? l->f->src : ex->client->peer_ip, l->f ? l->f->dst_text : dst);
    const char *method = ex->rh && ex->rh->url_len ? llhttp_method_name(ex->method) : NULL;
    outbuf_lit(ob, ",\"method\":");
    put_cstr_or_null(ob, method, EG_METHOD_MAX);
    outbuf_lit(ob, ",\"host\":");
    put_str_or_null(ob, ex->authority, ex->authority_len, EG_HOST_MAX);
    outbuf_lit(ob, ",\"path\":");
    put_str_or_null(ob, ex->path, ex->path_len, EG_PATH_MAX);
    outbuf_lit(ob, ",\"status\":");
    outbuf_int(ob, ex->status);
    outbuf_lit(ob, ",\"bytes\":");
    outbuf_uint(ob, ex->bytes_out, 1);
    outbuf_lit(ob, ",\"duration_ms\":");
    put_ms(ob, l->us);
    outbuf_lit(ob, "}\n");
}

void egress_log_request(struct egress_flow *f, const struct exchange *ex, uint64_t duration_us)
{
    struct request_line l = {f, ex, duration_us};
    access_log_append(ex->w, format_request, &l);
}

void egress_count_decision(struct egress *eg, const struct egress_flow *f)
{
    if ((unsigned)f->d.by < EGRESS_BY_COUNT)
        METRIC_INC(&eg->w->metrics, egress_decisions[f->kind][f->d.by]);
}
