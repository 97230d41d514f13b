/* Host header -> (port, sandbox id): SPEC section 5.
 *
 * Pure: no allocation, no event loop. The fuzzers point here. */
#ifndef EDGEPROXY_HOST_H
#define EDGEPROXY_HOST_H

#include <stddef.h>
#include <stdint.h>

/* DNS caps a label at 63 bytes; "<port>-" takes at least 2 of them. */
#define HOST_ID_MAX 63

enum host_status {
    HOST_OK = 0,              /* port and sandbox id filled in */
    HOST_NEEDS_HEADERS = 1,   /* "sandbox.<domain>": id and port come from
                                  e2b-sandbox-id / e2b-sandbox-port */
    HOST_MALFORMED = -1,      /* empty, bad bytes, bad first label */
    HOST_FOREIGN_DOMAIN = -2, /* under none of the configured domains */
    HOST_BAD_SANDBOX_ID = -3, /* id empty, too long, or not [a-z0-9]+ */
    HOST_BAD_PORT = -4,       /* port not decimal 1..65535 */
};

struct host_target {
    uint16_t port;
    size_t id_len;
    char sandbox_id[HOST_ID_MAX + 1]; /* lower-cased, NUL-terminated */
};

/* Accepted domain suffixes, lower-case, without leading or trailing dots.
 * count == 0 means any suffix. The list is borrowed, never copied. */
struct domain_list {
    char **names;
    size_t count;
};

/* Parses a Host value (or the authority of an absolute-form target):
 * case-insensitive, an optional ":port" and one trailing dot are ignored.
 * The first label must be "<port>-<sandboxId>[-<anything>]" and the rest one
 * of the configured domains; or the whole name "sandbox.<domain>", which
 * returns HOST_NEEDS_HEADERS. Borrows `host` for the call only. */
int host_parse(const char *host, size_t len, const struct domain_list *domains,
               struct host_target *out);

/* Strict decimal 1..65535, no sign, no spaces, no leading '+'. Leading zeros
 * are allowed only as long as the value fits ("03000" is 3000). 0 ok, -1 bad. */
int host_parse_port(const char *s, size_t len, uint16_t *out);

/* [a-zA-Z0-9]{1,HOST_ID_MAX}, stored lower-cased in out->sandbox_id.
 * 0 ok, -1 bad. */
int host_parse_sandbox_id(const char *s, size_t len, struct host_target *out);

/* A short human sentence for a negative host_status, for the 400 body. */
const char *host_status_message(int status);

#endif
