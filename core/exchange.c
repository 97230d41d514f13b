#include "exchange.h"

#include <event2/buffer.h>
#include <string.h>

#include "access_log.h"
#include "conn_limit.h"
#include "ev.h"
#include "head.h"
#include "pool.h"
#include "proxy.h"
#include "reply.h"
#include "route_rec.h"
#include "timeutil.h"
#include "worker.h"

void exchange_init(struct exchange *ex, struct worker *w, const struct client_info *client,
                   const struct exchange_ops *ops)
{
    struct evbuffer *body_buf = ex->body_buf; /* kept across exchanges */
    struct event *retry_timer = ex->retry_timer;
    memset(ex, 0, sizeof(*ex));
    ex->body_buf = body_buf;
    ex->retry_timer = retry_timer;
    ex->ops = ops;
    ex->w = w;
    ex->client = client;
    ex->state = EX_ROUTING;
    ex->start_us = time_now_us();
    ex->outcome = OUTCOME_ABORTED;
    list_init(&ex->waiter.cw.link);
}

void exchange_count(struct exchange *ex)
{
    if (!ex->start_us)
        return;
    uint64_t dur = time_now_us() - ex->start_us;
    if (ex->status)
        metrics_observe_request(&ex->w->metrics, ex->status, dur);
    metrics_observe_outcome(&ex->w->metrics, ex->outcome);
    METRIC_INC(&ex->w->metrics, requests_by_protocol[ex->http_version == 20]);
    const struct route_ops *r = ex->client ? ex->client->route : NULL;
    if (r && r->log)
        r->log(ex, dur);
    else
        access_log_request(ex, dur);
    ex->start_us = 0;
}

void exchange_finish(struct exchange *ex)
{
    if (!ex->w)
        return;
    exchange_count(ex);
    if (ex->tunneled) {
        ex->tunneled = false;
        METRIC_DEC(&ex->w->metrics, tunnels[ex->http_version == 20]);
    }
    lookup_cancel(&ex->waiter);
    proxy_abort(ex);
    if (ex->route_state && ex->client->route->finish)
        ex->client->route->finish(ex);
    ex->route_state = NULL;
    if (ex->limit_held) {
        limits_release(ex->rr->limit);
        ex->limit_held = false;
    }
    route_rec_unref(ex->rr);
    ex->rr = NULL;
    head_put(&ex->w->heads, ex->ph);
    ex->ph = NULL;
    ex->state = EX_DONE;
}

void exchange_free_buffers(struct exchange *ex)
{
    if (ex->body_buf) {
        evbuffer_free(ex->body_buf);
        ex->body_buf = NULL;
    }
    ev_free(ex->retry_timer);
    ex->retry_timer = NULL;
}

/* The SPEC section 6 reply; a 503 says when to try again. */
static void error_reply(struct exchange *ex, int status, const char *message,
                        const char *sandbox_id, int port)
{
    struct reply r = {.status = status,
                      .message = message,
                      .sandbox_id = sandbox_id,
                      .port = port,
                      .connection_limit = -1,
                      .retry_after = status == 503 ? 1 : 0};
    ex->ops->reply(ex, &r);
}

void exchange_error(struct exchange *ex, int status, const char *message)
{
    error_reply(ex, status, message, NULL, 0);
}

void exchange_error_sandbox(struct exchange *ex, int status, const char *message, bool with_port)
{
    error_reply(ex, status, message, ex->target.sandbox_id, with_port ? ex->target.port : 0);
}
