#ifndef EDGEPROXY_H1_TARGET_H
#define EDGEPROXY_H1_TARGET_H

#include "exchange.h"

/* Sets ex->authority and ex->path from ex->rh (the absolute-form authority
 * if any, else the one Host header). NULL ok, else the 400 message. */
const char *h1_target_normalise(struct exchange *ex);

#endif
