/* IPv4 and IPv6 networks, and the addresses tested against them: the egress
 * policy's allowOut/denyOut (SPEC section 9), egress.always_deny,
 * egress.nameservers and policy.trusted_proxies.
 *
 * One canonical form on both sides, so that no address has two spellings:
 * an IPv4-mapped IPv6 address (::ffff:a.b.c.d, RFC 4291 section 2.5.5.2) is
 * the IPv4 address, and an IPv4-mapped network of prefix 96 or more is the
 * IPv4 network. A connection that a dual-stack socket reports as
 * ::ffff:10.0.0.1 is then 10.0.0.1 for every rule. Matching is within one
 * family: "::/0" covers every IPv6 address and no IPv4 one (the egress
 * policy's ALL_TRAFFIC, "0.0.0.0/0" covering IPv6 too, is its own rule kind
 * in egress_policy.c, not a property of the network). Pure, no allocation. */
#ifndef EDGEPROXY_CIDR_H
#define EDGEPROXY_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128" and a NUL. */
#define CIDR_STRLEN 51

struct cidr {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* network bytes, host bits cleared; IPv4 in [0..4) */
    unsigned prefix;  /* bits: 0..32 or 0..128 */
};

/* An address in canonical form (IPv4-mapped IPv6 is IPv4). */
struct cidr_addr {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* IPv4 in [0..4) */
};

/* Parses s[0..len) (need not be NUL-terminated): "a.b.c.d", "a.b.c.d/n",
 * an IPv6 address, "v6/n". A bare address is one host (/32, /128). The
 * prefix is 1 to 3 decimal digits, at most 32 or 128. Host bits past the
 * prefix are cleared rather than refused, as nginx's set_real_ip_from does:
 * "10.1.2.3/8" can only mean 10.0.0.0/8. An IPv4-mapped network of prefix
 * >= 96 becomes the IPv4 network ("::ffff:10.0.0.0/104" is 10.0.0.0/8).
 * No zone ids, no brackets, no spaces, no NUL. 0 ok, -1 bad. */
int cidr_parse(const char *s, size_t len, struct cidr *out);

/* A bare address (no prefix), canonical. 0 ok, -1 bad. */
int cidr_addr_parse(const char *s, size_t len, struct cidr_addr *out);

/* The address of an AF_INET or AF_INET6 sockaddr (the port is ignored),
 * canonical. -1 for NULL or any other family. */
int cidr_addr_from_sockaddr(const struct sockaddr *sa, struct cidr_addr *out);

/* The port of an AF_INET or AF_INET6 sockaddr, host order; 0 for any
 * other family. */
uint16_t cidr_sockaddr_port(const struct sockaddr *sa);

/* The IPv4 address `v4` as IPv4-mapped IPv6, for rules written the other
 * way round (config_cidr_match). */
void cidr_addr_mapped(const struct cidr_addr *v4, struct cidr_addr *out);

/* Is `a` inside `net`? Only within one family. */
bool cidr_contains(const struct cidr *net, const struct cidr_addr *a);

/* The index of the first of nets[0..count) holding `a`, or -1. */
long cidr_find(const struct cidr *nets, size_t count, const struct cidr_addr *a);

/* "10.0.0.0/8", "2001:db8::/32"; a one-host network bare ("1.1.1.1",
 * "::1"). Writes at most cap bytes, NUL-terminated (CIDR_STRLEN always
 * fits); returns the length, or 0 when cap is too small. */
size_t cidr_format(const struct cidr *net, char *buf, size_t cap);

/* A one-host network (/32 or /128)? */
bool cidr_is_host(const struct cidr *net);

#endif
