/* TLS termination for one listener: one SSL_CTX per configured certificate,
 * chosen by SNI (exact names first, then wildcards), TLS 1.2 and 1.3, ALPN
 * h2 (when the listener offers HTTP/2) then http/1.1, session tickets. Built by the main thread at start and reload;
 * SSL_CTX is safe to share across worker threads for SSL_new. */
#ifndef EDGEPROXY_TLS_H
#define EDGEPROXY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>

struct config_listener;
struct tls_ctx;

/* Loads every certificate of the listener. NULL with err naming the file or
 * the key path on failure. */
struct tls_ctx *tls_ctx_new(const struct config_listener *l, size_t index, char *err,
                            size_t errlen);
/* Drops a reference (the generation's, from runtime_free): the memory goes
 * once no handshake that started on it is still running. NULL is a no-op. */
void tls_ctx_unref(struct tls_ctx *t);

/* A new server-side SSL for an accepted connection, or NULL. It holds a
 * reference on t until its handshake is done or it is freed. */
SSL *tls_ssl_new(struct tls_ctx *t);

/* Did the handshake pick ALPN "h2"? */
bool tls_alpn_is_h2(const SSL *ssl);

/* Does the certificate this connection presented (the one SNI chose) cover
 * `host` (lower-case DNS name or IP literal, NUL-terminated)? A coalesced
 * HTTP/2 connection may only carry requests for those (RFC 9113 section
 * 9.1.1; otherwise 421). "*.example" covers one label, as SNI selection. */
bool tls_cert_covers(const SSL *ssl, const char *host);

/* The last OpenSSL error as text, for a one-line log. */
const char *tls_error_string(unsigned long e, char *buf, size_t len);

#endif
