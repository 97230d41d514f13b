/* The WebSocket opening handshake as a proxy makes it for a client that
 * never sees it: an HTTP/2 client asks with an extended CONNECT (RFC 8441),
 * which has no Sec-WebSocket-Key or -Accept, and the sandbox gets an
 * HTTP/1.1 Upgrade (RFC 6455 section 4.1) with a key the proxy draws; the
 * sandbox's 101 proves it read the key by its Sec-WebSocket-Accept, which
 * the proxy checks in the client's stead (no one else can). Pure: no event
 * loop; the key comes from OpenSSL's CSPRNG. */
#ifndef EDGEPROXY_WEBSOCKET_H
#define EDGEPROXY_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>

/* base64 of 16 random bytes; base64 of a SHA-1 digest (20 bytes) */
#define WS_KEY_LEN 24
#define WS_ACCEPT_LEN 28

/* A new Sec-WebSocket-Key (RFC 6455 section 4.1: a nonce of 16 random
 * bytes, base64), NUL-terminated into key. 0 ok, -1 when the CSPRNG
 * failed (no key: never a predictable one). */
int ws_key_new(char key[WS_KEY_LEN + 1]);

/* The Sec-WebSocket-Accept a server must answer `key` with (RFC 6455
 * section 4.2.2 item 5.4: base64 of SHA-1 of the key and the GUID),
 * NUL-terminated into out. */
void ws_accept_for(const char *key, size_t klen, char out[WS_ACCEPT_LEN + 1]);

/* Does a server's Sec-WebSocket-Accept value (optional whitespace around
 * it, RFC 9110 section 5.5) match `key` exactly? */
bool ws_accept_matches(const char *key, size_t klen, const char *accept, size_t alen);

#endif
