/* libevent helpers the proxy's modules share. */
#ifndef EDGEPROXY_EV_H
#define EDGEPROXY_EV_H

#include <event2/event.h>

/* event_free for an event that may not exist: teardown of objects built
 * part way, or never started. (libevent's own dereferences NULL.) */
static inline void ev_free(struct event *ev)
{
    if (ev)
        event_free(ev);
}

#endif
