/* Routing an exchange: its authority (or the sandbox.<domain> headers) ->
 * sandbox -> Redis record -> verdict. Answers through the exchange's
 * operations (a proxy reply) or starts the proxy. */
#ifndef EDGEPROXY_ROUTE_H
#define EDGEPROXY_ROUTE_H

struct exchange;

/* The exchange's request is normalised (authority, path, rh): route it. The
 * answer may come later (a Redis GET): ex->waiter is in use until then. */
void route_request(struct exchange *ex);

/* The ingress route as a front end calls it (route_request; the access log
 * line). */
struct route_ops;
extern const struct route_ops ingress_route_ops;

#endif
