/* IPv4 and IPv6 networks: see cidr.h. */
#include "cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* ::ffff:0:0/96, RFC 4291 section 2.5.5.2. */
static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool is_mapped(const uint8_t *v6)
{
    return memcmp(v6, mapped_prefix, sizeof(mapped_prefix)) == 0;
}

/* s[0..len) as a NUL-terminated IPv4 or IPv6 literal into out: 0 ok. The
 * copy also keeps inet_pton from reading past len. */
static int parse_literal(const char *s, size_t len, int *family, uint8_t *out)
{
    char lit[INET6_ADDRSTRLEN + 1];

    if (len == 0 || len >= sizeof(lit) || memchr(s, '\0', len) != NULL)
        return -1;
    memcpy(lit, s, len);
    lit[len] = '\0';
    memset(out, 0, 16);
    if (inet_pton(AF_INET, lit, out) == 1) {
        *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, lit, out) == 1) {
        *family = AF_INET6;
        return 0;
    }
    return -1;
}

int cidr_parse(const char *s, size_t len, struct cidr *out)
{
    const char *slash;
    size_t alen;
    unsigned max, prefix;

    if (s == NULL)
        return -1;
    slash = memchr(s, '/', len);
    alen = slash != NULL ? (size_t)(slash - s) : len;
    memset(out, 0, sizeof(*out));
    if (parse_literal(s, alen, &out->family, out->addr) == -1)
        return -1;
    max = out->family == AF_INET ? 32 : 128;
    prefix = max;
    if (slash != NULL) {
        const char *p = slash + 1;
        size_t n = len - alen - 1;

        if (n == 0 || n > 3)
            return -1;
        prefix = 0;
        for (size_t i = 0; i < n; i++) {
            if (p[i] < '0' || p[i] > '9')
                return -1;
            prefix = prefix * 10 + (unsigned)(p[i] - '0');
        }
        if (prefix > max)
            return -1;
    }
    out->prefix = prefix;
    for (unsigned bit = prefix; bit < max; bit++)
        out->addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    if (out->family == AF_INET6 && prefix >= 96 && is_mapped(out->addr)) {
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = AF_INET;
        out->prefix = prefix - 96;
    }
    return 0;
}

static void canonical(struct cidr_addr *a)
{
    if (a->family == AF_INET6 && is_mapped(a->addr)) {
        memmove(a->addr, a->addr + 12, 4);
        memset(a->addr + 4, 0, 12);
        a->family = AF_INET;
    }
}

int cidr_addr_parse(const char *s, size_t len, struct cidr_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL || parse_literal(s, len, &out->family, out->addr) == -1)
        return -1;
    canonical(out);
    return 0;
}

int cidr_addr_from_sockaddr(const struct sockaddr *sa, struct cidr_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (sa == NULL)
        return -1;
    if (sa->sa_family == AF_INET) {
        out->family = AF_INET;
        memcpy(out->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        out->family = AF_INET6;
        memcpy(out->addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        canonical(out);
        return 0;
    }
    return -1;
}

uint16_t cidr_sockaddr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

void cidr_addr_mapped(const struct cidr_addr *v4, struct cidr_addr *out)
{
    uint8_t b[4];

    memcpy(b, v4->addr, 4);
    memset(out, 0, sizeof(*out));
    out->family = AF_INET6;
    memcpy(out->addr, mapped_prefix, sizeof(mapped_prefix));
    memcpy(out->addr + 12, b, 4);
}

bool cidr_contains(const struct cidr *net, const struct cidr_addr *a)
{
    unsigned bytes, rest;

    if (net->family != a->family)
        return false;
    bytes = net->prefix / 8;
    rest = net->prefix % 8;
    if (memcmp(net->addr, a->addr, bytes) != 0)
        return false;
    return rest == 0 || ((net->addr[bytes] ^ a->addr[bytes]) & (uint8_t)(0xff00u >> rest)) == 0;
}

long cidr_find(const struct cidr *nets, size_t count, const struct cidr_addr *a)
{
    for (size_t i = 0; i < count; i++)
        if (cidr_contains(&nets[i], a))
            return (long)i;
    return -1;
}

bool cidr_is_host(const struct cidr *net)
{
    return net->prefix == (net->family == AF_INET ? 32u : 128u);
}

size_t cidr_format(const struct cidr *net, char *buf, size_t cap)
{
    char lit[INET6_ADDRSTRLEN];
    int n;

    if (buf == NULL || cap == 0)
        return 0;
    buf[0] = '\0';
    if (inet_ntop(net->family, net->addr, lit, sizeof(lit)) == NULL)
        return 0;
    if (cidr_is_host(net))
        n = snprintf(buf, cap, "%s", lit);
    else
        n = snprintf(buf, cap, "%s/%u", lit, net->prefix);
    if (n < 0 || (size_t)n >= cap) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)n;
}
