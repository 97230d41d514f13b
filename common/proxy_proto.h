/* PROXY protocol v1 (text) and v2 (binary) header parser, per
 * https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt
 *
 * Pure: bytes in, result out, nothing allocated. The fuzzers point here. */
#ifndef EDGEPROXY_PROXY_PROTO_H
#define EDGEPROXY_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* v1 lines are at most 107 bytes; v2 headers are 16 bytes plus a length
 * field; we refuse v2 headers larger than this (TLVs included). */
#define PROXY_PROTO_MAX_HEADER 1024

enum proxy_proto_result {
    PROXY_PROTO_NEED_MORE = -2, /* a valid prefix: read more bytes */
    PROXY_PROTO_BAD = -1,       /* not a PROXY header, or a broken one */
};

struct proxy_proto_info {
    int version;                 /* 1 or 2 */
    bool local;                  /* v1 "UNKNOWN" or v2 LOCAL command: keep
                                     the socket's own addresses */
    struct sockaddr_storage src; /* the real client (when !local) */
    socklen_t src_len;
    struct sockaddr_storage dst;
    socklen_t dst_len;
};

/* Parses the header at the start of buf. Returns the number of bytes it
 * takes (the caller drains them; what follows is the client's first bytes),
 * PROXY_PROTO_NEED_MORE, or PROXY_PROTO_BAD (err says why). v2 families
 * other than INET/INET6 (UNIX, UNSPEC) are treated as local. TLVs are
 * skipped. */
int proxy_proto_parse(const unsigned char *buf, size_t len, struct proxy_proto_info *out, char *err,
                      size_t errlen);

#endif
