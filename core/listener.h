/* Listening sockets: bound by the main thread (so a bind failure is a clear
 * startup error), one per listener per worker with SO_REUSEPORT, then
 * accepted on by each worker's own event loop. */
#ifndef EDGEPROXY_LISTENER_H
#define EDGEPROXY_LISTENER_H

#include <stddef.h>
#include <sys/socket.h>

struct worker;

/* Out of descriptors, a pending connection cannot be taken and its
 * level-triggered event fires again at once: a spinning loop and a log line
 * per turn. Accepting pauses this long instead (nginx: accept_mutex_delay,
 * 500 ms); the connections wait in the backlog meanwhile. */
#define LISTENER_PAUSE_MS 250

/* A bound, listening, non-blocking socket; -1 with err filled. */
int listener_bind(const struct sockaddr *sa, socklen_t len, const char *name, char *err,
                  size_t errlen);

/* Starts accepting on the worker's fds. 0 ok, -1 error. Accepting pauses
 * for a moment when accept() runs out of descriptors, and while
 * client.max_connections are open in the process. */
int listener_start(struct worker *w);
/* Stops accepting and closes the worker's listening sockets. */
void listener_stop(struct worker *w);

/* A client connection accepted by this worker closed: its slot of
 * client.max_connections is free again. */
void listener_conn_closed(struct worker *w);

#endif
