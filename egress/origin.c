/* SO_ORIGINAL_DST, or the local address under tproxy (origin.h).
 * nf_conntrack answers the first from the connection's conntrack entry:
 * the tuple before NAT. */
#include "origin.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

/* <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h> bring
 * in more than these two numbers, and clash with glibc's headers. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

static bool is_v4(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return true;
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
    return sa->sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr);
}

/* Same address and port, IPv4-mapped IPv6 taken as IPv4. */
static bool same_endpoint(const struct sockaddr *a, const struct sockaddr *b)
{
    struct sockaddr_in x, y;
    const struct sockaddr *p[2] = {a, b};
    struct sockaddr_in *v4[2] = {&x, &y};
    if (is_v4(a) != is_v4(b))
        return false;
    if (!is_v4(a)) {
        const struct sockaddr_in6 *a6 = (const void *)a, *b6 = (const void *)b;
        return a6->sin6_port == b6->sin6_port &&
               memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(a6->sin6_addr)) == 0;
    }
    for (int i = 0; i < 2; i++) {
        if (p[i]->sa_family == AF_INET) {
            *v4[i] = *(const struct sockaddr_in *)p[i];
        } else {
            const struct sockaddr_in6 *s6 = (const void *)p[i];
            v4[i]->sin_port = s6->sin6_port;
            memcpy(&v4[i]->sin_addr, &s6->sin6_addr.s6_addr[12], 4);
        }
    }
    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
}

int egress_original_dst(int fd, const struct sockaddr *peer, struct sockaddr_storage *out,
                        socklen_t *len)
{
    memset(out, 0, sizeof(*out));
    if (is_v4(peer)) {
        socklen_t n = sizeof(struct sockaddr_in);
        if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out, &n) == -1)
            return -1;
        out->ss_family = AF_INET;
        *len = sizeof(struct sockaddr_in);
    } else {
        socklen_t n = sizeof(struct sockaddr_in6);
        if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, out, &n) == -1)
            return -1;
        out->ss_family = AF_INET6;
        *len = sizeof(struct sockaddr_in6);
    }
    struct sockaddr_storage local;
    socklen_t llen = sizeof(local);
    if (getsockname(fd, (struct sockaddr *)&local, &llen) == 0 &&
        same_endpoint((const struct sockaddr *)out, (const struct sockaddr *)&local)) {
        errno = ELOOP;
        return -1;
    }
    return 0;
}

/* An address this host owns (or routes as local): bind(2) to it takes
 * only those (EADDRNOTAVAIL otherwise), without IP_FREEBIND. */
static bool is_local_address(const struct sockaddr *sa, socklen_t len)
{
    struct sockaddr_storage a;
    memcpy(&a, sa, len);
    if (a.ss_family == AF_INET)
        ((struct sockaddr_in *)&a)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&a)->sin6_port = 0;
    int fd = socket(a.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return false;
    bool local = bind(fd, (struct sockaddr *)&a, len) == 0;
    close(fd);
    return local;
}

int egress_tproxy_dst(int fd, uint16_t listen_port, struct sockaddr_storage *out, socklen_t *len)
{
    struct sockaddr_storage local;
    socklen_t llen = sizeof(local);
    uint16_t port;
    if (getsockname(fd, (struct sockaddr *)&local, &llen) == -1)
        return -1;
    memset(out, 0, sizeof(*out));
    if (is_v4((const struct sockaddr *)&local)) {
        struct sockaddr_in *o4 = (struct sockaddr_in *)out;
        o4->sin_family = AF_INET;
        if (local.ss_family == AF_INET) {
            *o4 = *(const struct sockaddr_in *)&local;
        } else {
            const struct sockaddr_in6 *l6 = (const struct sockaddr_in6 *)&local;
            o4->sin_port = l6->sin6_port;
            memcpy(&o4->sin_addr, &l6->sin6_addr.s6_addr[12], 4);
        }
        *len = sizeof(struct sockaddr_in);
        port = o4->sin_port;
    } else if (local.ss_family == AF_INET6) {
        memcpy(out, &local, sizeof(struct sockaddr_in6));
        *len = sizeof(struct sockaddr_in6);
        port = ((const struct sockaddr_in6 *)out)->sin6_port;
    } else {
        errno = EAFNOSUPPORT;
        return -1;
    }
    if (ntohs(port) == listen_port && is_local_address((const struct sockaddr *)out, *len)) {
        errno = ELOOP;
        return -1;
    }
    return 0;
}
