/* Where an intercepted connection was going: the kernel keeps the original
 * destination of a connection that nftables `redirect` (DNAT) sent to an
 * egress listener; one that nftables `tproxy` handed over keeps it as its
 * own local address. */
#ifndef EDGEPROXY_EGRESS_ORIGIN_H
#define EDGEPROXY_EGRESS_ORIGIN_H

#include <stdint.h>
#include <sys/socket.h>

/* The original destination of accepted socket fd, whose peer is `peer`:
 * getsockopt(SOL_IP, SO_ORIGINAL_DST) for an IPv4 peer (an IPv4-mapped
 * one on a [::] listener too), getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)
 * for an IPv6 one. Writes an AF_INET or AF_INET6 address (port included)
 * and returns 0; -1 with errno when the kernel has none, or when it is the
 * socket's own local address (a connection made straight to the listener,
 * not redirected: following it would connect the proxy to itself). */
int egress_original_dst(int fd, const struct sockaddr *peer, struct sockaddr_storage *out,
                        socklen_t *len);

/* The same for egress.interception "tproxy": nft `tproxy` hands the
 * connection to a transparent listener without NAT, so the address the
 * sandbox dialled is the accepted socket's own (getsockname), written as
 * AF_INET for IPv4 (an IPv4-mapped one too) as above. -1 with errno ELOOP
 * when it is an address of this host on `listen_port`, the listener's own
 * port: a connection made straight to the listener, which the proxy would
 * follow to itself. Only that port pays for the check (a bind(2) test). */
int egress_tproxy_dst(int fd, uint16_t listen_port, struct sockaddr_storage *out, socklen_t *len);

#endif
