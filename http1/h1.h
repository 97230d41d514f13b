/* Internal to http1/: what session.c (the connection) and h1_exchange.c
 * (the exchange operations in HTTP/1.1) share. */
#ifndef EDGEPROXY_H1_H
#define EDGEPROXY_H1_H

#include "session.h"

/* How a closing connection with unread request bytes keeps reading and
 * discarding them, so the kernel does not answer them with a RST that could
 * destroy the response still in flight (nginx's lingering close). */
#define LINGER_MS 2000

extern const struct exchange_ops h1_exchange_ops;

/* The exchange is over (its last response byte is in the client output):
 * next request or close. */
void session_exchange_done(struct session *s);

/* The session timer: deadline in ms from now, or none. */
void session_set_timer(struct session *s, int ms);
void session_clear_timer(struct session *s);

/* Moves request body bytes from the client to the upstream while the
 * upstream takes them. */
void h1_pump_request_body(struct session *s);

#endif
