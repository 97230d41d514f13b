/* The routing record the control plane writes to Redis: SPEC section 4.
 *
 * Parsed once per cache fill (cJSON), never per request. Pure. */
#ifndef EDGEPROXY_RECORD_H
#define EDGEPROXY_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct record {
    /* "address", already parsed: family and IP; the port is per request. */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char address[64];  /* the literal, for logs and pool keys */
    bool allow_public; /* "allowPublicTraffic", default true */
    char *token;       /* "trafficAccessToken" or NULL */
    size_t token_len;
    char *mask_host;          /* "maskRequestHost" template or NULL */
    char *execution_id;       /* "executionId" or NULL */
    uint32_t max_connections; /* "maxConnections"; 0 = unlimited */
};

/* Parses `json` (len bytes, need not be NUL-terminated). On success returns 0
 * and *out owns a new record (caller frees with record_free). On a broken
 * record returns -1 with a message in err naming the field at fault
 * ("address is not an IP literal", "trafficAccessToken missing while
 * allowPublicTraffic is false", "not valid JSON", ...).
 * Rules: address required (IPv4 or IPv6 literal, no port); allowPublicTraffic
 * boolean; when false, trafficAccessToken is a required non-empty string;
 * maskRequestHost a string of visible ASCII (0x21..0x7e, no CR/LF/NUL/space);
 * executionId a string; maxConnections a non-negative integer (0 or absent or
 * null = unlimited). Unknown fields are ignored (the control plane may add
 * some); null counts as absent for optional fields. */
int record_parse(const char *json, size_t len, struct record **out, char *err, size_t errlen);

void record_free(struct record *r);

/* Expands mask_host, each "${PORT}" becoming `port` in decimal, into buf
 * (NUL-terminated). Returns the length, or -1 if it does not fit or there is
 * no mask. */
int record_mask_host(const struct record *r, uint16_t port, char *buf, size_t cap);

#endif
