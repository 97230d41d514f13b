/* A byte stream with input and output evbuffers: the one I/O abstraction
 * every front end, the upstream pool and the tunnel use. The nginx model,
 * plain or TLS alike: the read event stays registered (level-triggered) for
 * the connection's life, reads go into pooled 64 KiB blocks handed to the
 * input (no FIONREAD, no 4 KiB cap), output is written at once from the
 * active queue (stream_flush) and EPOLLOUT is only asked for after a short
 * write, and timeouts are lazy (an activity timestamp, one timer re-armed
 * only when it fires early). TLS streams run OpenSSL on the socket with the
 * same events: SSL_read into the read blocks, SSL_write a full 16 KiB record
 * at a time, the server handshake first (STREAM_CONNECTED when done), and a
 * close_notify when the stream is freed (see the TLS part of stream.c). */
#ifndef EDGEPROXY_STREAM_H
#define EDGEPROXY_STREAM_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct evbuffer;
struct stream;

/* Event flags, the same values as libevent's BEV_EVENT_*. */
#define STREAM_READING 0x01
#define STREAM_WRITING 0x02
#define STREAM_EOF 0x10
#define STREAM_ERROR 0x20
#define STREAM_TIMEOUT 0x40
#define STREAM_CONNECTED 0x80 /* TLS handshake done */

typedef void (*stream_data_cb)(struct stream *st, void *arg);
typedef void (*stream_event_cb)(struct stream *st, short what, void *arg);

/* Takes ownership of fd (closed by stream_free). NULL on failure. */
struct stream *stream_new_socket(struct event_base *base, int fd);
/* Server side TLS over fd; takes ownership of fd and ssl. */
struct stream *stream_new_tls(struct event_base *base, int fd, SSL *ssl);

/* Safe inside the stream's own callbacks: the memory goes when they return. */
void stream_free(struct stream *st);

struct evbuffer *stream_input(struct stream *st);
struct evbuffer *stream_output(struct stream *st);
int stream_fd(struct stream *st);
bool stream_is_tls(const struct stream *st);

/* read_cb: new input. write_cb: output drained to the low-water mark or
 * below. event_cb: EOF, error or timeout (reading stops after each), and on
 * TLS streams STREAM_CONNECTED once the handshake is done. A TLS EOF is the
 * peer's close_notify or a TCP FIN without one (a dirty shutdown, allowed);
 * it comes after the data before it has been read, as on a plain socket. */
void stream_setcb(struct stream *st, stream_data_cb read_cb, stream_data_cb write_cb,
                  stream_event_cb event_cb, void *arg);

/* After adding to the output: writes it from libevent's active queue, later
 * in this loop iteration (so several producers share one writev, or one TLS
 * record). Every writer calls it, on TLS streams too (output queued during
 * the handshake goes once it is done). */
void stream_flush(struct stream *st);

void stream_enable_read(struct stream *st);
void stream_disable_read(struct stream *st);

/* Reading pauses by itself while the input holds `high` bytes or more, and
 * resumes when it is drained below. 0 = no limit. */
void stream_set_read_high(struct stream *st, size_t high);
void stream_set_write_low(struct stream *st, size_t low);

/* Idle timeouts in ms, 0 = none: reading (while enabled) and writing (while
 * output is pending). */
void stream_set_timeouts(struct stream *st, int read_ms, int write_ms);

/* Frees the calling thread's spare read buffers (at worker exit). */
void stream_thread_cleanup(void);

/* TLS: the connection's SSL (ALPN, the certificate SNI chose), NULL for a
 * plain stream. Borrowed. */
SSL *stream_tls_ssl(struct stream *st);

/* TLS: the OpenSSL error that ended the stream (0 when none: a socket
 * error, or an EOF), popping it. */
unsigned long stream_tls_error(struct stream *st);

#endif
