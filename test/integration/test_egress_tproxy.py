"""egress.interception "tproxy" (SPEC section 9: "TPROXY as an option"), on
a real kernel: the namespace world of egress_world.py, with the ruleset
`edgeproxy egress-rules` prints in that mode (a `divert` chain: nft
`tproxy to :port` + `meta mark set`, no NAT) and the policy route it prints
as comments (`ip rule add fwmark 0x1 lookup 100; ip route add local
0.0.0.0/0 dev lo table 100`, and -6), run as printed in the host namespace.
The listeners are transparent (IP_TRANSPARENT); the original destination
is the accepted socket's own address.

Needs root, ip, nft (with nft_tproxy: built in or a module), dnsmasq,
curl, openssl and nc."""

import json
import os
import re

import pytest

from egress_world import (ALLOWED, ALLOWED6, BANNER, DENIED, HERE, OTHER, OTHER6, SBX_IP,
                          allow_only, hold, needs_world, run_world)
from test_egress_rules import in_ns, sh

pytestmark = needs_world


def kernel_has_nft_tproxy():
    """Loads a tproxy rule into a scratch namespace: the kernel refuses it
    without nft_tproxy (CONFIG_NFT_TPROXY)."""
    ns = "egtprobe%d" % os.getpid()
    sh("ip", "netns", "add", ns)
    try:
        r = in_ns(ns, "nft", "-f", "-", check=False, input=(
            "table inet probe {\n chain p {\n"
            "  type filter hook prerouting priority mangle;\n"
            "  meta l4proto tcp tproxy to :1 meta mark set 1 accept\n }\n}\n"))
        return r.returncode == 0, r.stderr.strip()
    finally:
        sh("ip", "netns", "del", ns, check=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    ok, why = kernel_has_nft_tproxy()
    if not ok:
        pytest.skip("this kernel cannot load an nft tproxy rule (nft_tproxy missing: "
                    "CONFIG_NFT_TPROXY, `modprobe nft_tproxy`): %s" % why)
    yield from run_world(tmp_path_factory, "egress_tproxy",
                         {"egress": {"interception": "tproxy"}}, tag="egt")


def last_line(world, **want):
    return world.log_lines(lambda l: all(l.get(k) == v for k, v in want.items()))[-1]


def test_the_rules_divert_without_nat(world):
    rules = world.rules_text({})
    assert "chain divert {" in rules and "tproxy to :15443 meta mark set 0x1" in rules
    assert "redirect" not in rules.replace("as with redirect", "")
    # The kernel took them, and the policy route the comments gave.
    listed = in_ns(world.hst, "nft", "list", "chain", "inet", "edgeproxy_veth-sb0",
                   "divert").stdout
    assert "tproxy to :15443" in listed
    assert "fwmark 0x1 lookup 100" in in_ns(world.hst, "ip", "rule").stdout


def test_http_allowed_and_refused_by_host_original_destination_seen(world):
    world.set_policy(allow_only("allowed.test"))
    got = world.client("http", ALLOWED, "80", "allowed.test", "other.test")
    assert [r["status"] for r in got] == [200, 403], got
    assert got[0]["json"]["server"] == ALLOWED
    line = last_line(world, egress="http", host="allowed.test", source=SBX_IP)
    assert line["destination"] == "%s:80" % ALLOWED and line["connected"] == "%s:80" % ALLOWED
    line = last_line(world, egress="http", host="other.test", source=SBX_IP)
    assert line["destination"] == "%s:80" % ALLOWED and line["decision"] == "deny"


def test_tls_allowed_by_sni_original_destination_seen(world):
    world.set_policy(allow_only("allowed.test"))
    code, body, err = world.curl("https://allowed.test/", "--resolve",
                                 "allowed.test:443:%s" % ALLOWED)
    assert code == 200 and json.loads(body)["server"] == ALLOWED, (code, body, err)
    line = last_line(world, egress="tls", name="allowed.test", destination="%s:443" % ALLOWED)
    assert line["decision"] == "allow" and line["connected"] == "%s:443" % ALLOWED
    # The sandbox dialled OTHER while claiming allowed.test: the proxy saw
    # OTHER as the destination, and connected to allowed.test's address.
    code, body, err = world.curl("https://allowed.test/", "--resolve",
                                 "allowed.test:443:%s" % OTHER)
    assert code == 200 and json.loads(body)["server"] == ALLOWED, (code, body, err)
    line = last_line(world, egress="tls", name="allowed.test", destination="%s:443" % OTHER)
    assert line["connected"] == "%s:443" % ALLOWED


def test_refused_tls_and_tcp(world):
    world.set_policy(allow_only("allowed.test", BANNER))
    code, body, err = world.curl("https://other.test/", "--resolve", "other.test:443:%s" % OTHER)
    assert code == 0 and "access denied" in err, err
    line = last_line(world, egress="tls", name="other.test", destination="%s:443" % OTHER)
    assert line["decision"] == "deny" and line["rule"] == "denyOut[0] 0.0.0.0/0"
    got = world.client("tcp", DENIED, "2222", "hello\n")
    assert got.get("end") == "reset" and got["data"] == "", got
    assert last_line(world, egress="tcp", destination="%s:2222" % DENIED)["decision"] == "deny"
    assert world.client("tcp", BANNER, "2222", "hi\n", "shut") == \
        {"data": "BANNER %s\nhi\n" % BANNER, "end": "eof"}


def test_ipv6(world):
    world.set_policy(allow_only("v6.test"))
    code, body, err = world.curl("https://v6.test/", "--resolve", "v6.test:443:[%s]" % ALLOWED6)
    assert code == 200 and json.loads(body)["server"] == ALLOWED6, (code, body, err)
    code, body, err = world.curl("https://other.test/", "--resolve", "other.test:443:[%s]" % OTHER6)
    assert code == 0 and "access denied" in err, err
    line = last_line(world, egress="tls", name="other.test", destination="[%s]:443" % OTHER6)
    assert line["decision"] == "deny"


def test_upstream_from_the_proxys_own_address(world):
    """No spoofing: the internet host sees the host's address, not the
    sandbox's (which it could not answer: no route back)."""
    world.set_policy({})
    p = hold(world, BANNER, "2222")
    try:
        assert json.loads(p.stdout.readline()) == {"opened": "BANNER %s" % BANNER}
        peers = in_ns(world.net, "ss", "-tnH", "state", "established", "sport", "=",
                      ":2222").stdout
        assert "198.18.1.1:" in peers and SBX_IP not in peers, peers
    finally:
        p.kill()
        p.wait()


def test_connection_made_to_the_listener_refused(world):
    """A connection that reaches a listener without the divert chain (its
    local address is this host's own, on the listener's port) is not
    followed: the proxy would connect to itself, again and again."""
    me = "192.0.2.99"
    in_ns(world.hst, "ip", "addr", "add", me + "/32", "dev", "lo")
    world.set_policy({"maxConnections": 4}, sources=(me,), rules=False)

    def tcp_decisions():
        return sum(v for (name, labels), v in world.metrics().items()
                   if name == "edgeproxy_egress_decisions_total" and dict(labels)["kind"] == "tcp")
    before = tcp_decisions()
    r = in_ns(world.hst, "/usr/bin/python3", str(HERE / "egress_client.py"), "--src", me, "tcp",
              me, "15000", "hi", check=False)
    assert json.loads(r.stdout)["end"] == "reset", r
    assert re.search(r"connection from %s:\d+ has no original destination \(made to the "
                     r"listener itself" % re.escape(me), world.stderr()), world.stderr()[-2000:]
    # Refused before any policy decision: none was counted.
    assert tcp_decisions() == before
