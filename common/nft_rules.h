/* The nftables ruleset for one sandbox interface: `edgeproxy egress-rules`
 * (SPEC section 9). Pure: policy + configuration in, nft text out, so that
 * the kernel and the proxy decide from the same parsed policy.
 *
 * One table per interface, `table inet edgeproxy_<interface>`, emptied and
 * rebuilt in the same file (one nft transaction), so that `nft -f` replaces
 * that interface's previous rules atomically and leaves every other table
 * alone. Its chains, all limited to packets arriving from the interface:
 *
 *   guard     prerouting, before NAT (priority mangle): answers in
 *             connections the other side opened pass; IPv6 neighbour
 *             discovery passes; port 53 to the nameservers passes while
 *             allowOut holds a name; then always_deny, IPv4-mapped IPv6
 *             destinations, this host's own addresses (fib type local: the
 *             proxy's ports, admin, a local Redis) and a Redis given by
 *             address are refused, whatever the protocol.
 *   nat_redirect  nat prerouting (dstnat): TCP to port 80 -> the http listener,
 *             443 -> tls, every other port -> tcp (a missing listener's
 *             ports fall to the tcp one; with no tcp listener they stay for
 *             the forward chain). The proxy then decides with
 *             egress_decide().
 *   divert    instead of nat_redirect under egress.interception "tproxy":
 *             filter prerouting after guard (mangle + 10), the same ports
 *             to the same listeners by `tproxy to :port` (no NAT: the
 *             destination stays as dialled) with `meta mark set
 *             egress.tproxy_mark`; the once-per-host policy route for that
 *             mark (`ip rule add fwmark M lookup 100; ip route add local
 *             0.0.0.0/0 dev lo table 100`, and -6) is printed as comments.
 *   to_host   input: only TCP sent to the listeners (redirected: `ct status
 *             dnat` to their ports; diverted: the mark), answers,
 *             neighbour discovery and DNS to nameservers on this host.
 *   to_world  forward (what was not redirected: UDP, ICMP, TCP without a
 *             listener): the policy by address, allow beating deny; UDP 443
 *             (QUIC) refused while allowOut holds a name, unless its address
 *             is allowed, so that clients fall back to TCP, where the SNI is
 *             checked.
 *
 * Refused packets get a TCP reset or an ICMP administratively-prohibited
 * (reject at prerouting needs Linux 5.8 or later). */
#ifndef EDGEPROXY_NFT_RULES_H
#define EDGEPROXY_NFT_RULES_H

#include <stddef.h>

#include "config.h"
#include "egress_policy.h"
#include "outbuf.h"

/* An interface name the ruleset can carry: 1 to 15 bytes (IFNAMSIZ - 1) of
 * [A-Za-z0-9_.-], since it is quoted into iifname and becomes part of the
 * table's name. 0 ok, -1 with a message. */
int nft_rules_check_interface(const char *ifname, char *err, size_t errlen);

/* Writes the ruleset for `ifname` and policy `p` (listener ports,
 * interception and mark, nameservers, always_deny and redis.url from cfg)
 * into ob. Borrows
 * everything. Returns 0, or -1 with a message for a bad interface name; a
 * writer that ran out of room is marked truncated (see outbuf.h). */
int nft_rules_write(struct outbuf *ob, const char *ifname, const struct egress_policy *p,
                    const struct config *cfg, char *err, size_t errlen);

/* nft_rules_write sized by a first counting pass: a NUL-terminated ruleset
 * the caller frees, its length in *len; NULL with a message on error. */
char *nft_rules_build(const char *ifname, const struct egress_policy *p, const struct config *cfg,
                      size_t *len, char *err, size_t errlen);

#endif
