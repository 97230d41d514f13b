"""SPEC section 9: `edgeproxy egress-rules --config FILE --interface IF
--policy FILE` prints the nftables ruleset of one sandbox interface. The
kernel checks and loads it for real, inside network namespaces this module
makes and deletes: a table per interface, replaced whole by a second `nft -f`
and leaving other interfaces' tables alone; and traffic from a sandbox
namespace through a "host" namespace to a fake internet (documentation
addresses only) is allowed, refused or redirected as the policy says.

Needs root, `ip` and `nft` (scripts/deps.sh installs nftables)."""

import json
import re
import os
import shutil
import subprocess
import textwrap
import time
import types

import pytest

from harness import edgeproxy_bin, free_port

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
    reason="needs root, ip and nft (network namespaces)")

CONFIG = {
    "listeners": [{"address": "127.0.0.1:18080"}],
    "egress": {
        "listeners": {"tcp": "[::]:15000"},
        "nameservers": ["198.51.100.53"],
    },
}

POLICY = {
    "sandboxId": "i62mff4ahtrdfdkyn2esc",
    "allowOut": ["example.com", "*.github.com", "192.0.2.1", "2001:db8::2"],
    "denyOut": ["0.0.0.0/0"],
}


def sh(*args, check=True, input=None, timeout=20):
    r = subprocess.run(list(args), input=input, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("%s: exit %d\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def in_ns(ns, *args, **kw):
    return sh("ip", "netns", "exec", ns, *args, **kw)


def egress_rules(tmp_path, config=None, policy=None, interface="veth-sb0", raw_policy=None):
    cfg = tmp_path / "edgeproxy.json"
    pol = tmp_path / "policy.json"
    cfg.write_text(json.dumps(CONFIG if config is None else config))
    pol.write_text(raw_policy if raw_policy is not None else json.dumps(POLICY if policy is None else policy))
    return subprocess.run([edgeproxy_bin(), "egress-rules", "--config", str(cfg),
                           "--interface", interface, "--policy", str(pol)],
                          capture_output=True, text=True, timeout=15)


@pytest.fixture
def netns():
    """netns(suffix) -> a fresh namespace name; all deleted at the end."""
    made = []

    def make(suffix):
        name = "epr%d-%s" % (os.getpid(), suffix)
        sh("ip", "netns", "add", name)
        made.append(name)
        in_ns(name, "ip", "link", "set", "lo", "up")
        return name

    yield make
    for name in made:
        sh("ip", "netns", "del", name, check=False)


# ---- the command line ------------------------------------------------------


def test_prints_a_ruleset(tmp_path):
    r = egress_rules(tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    out = r.stdout
    assert "table inet edgeproxy_veth-sb0 {}\ndelete table inet edgeproxy_veth-sb0\n" in out
    assert 'iifname != "veth-sb0" return' in out
    assert "meta l4proto tcp redirect to :15000" in out
    assert "udp dport 443 jump refuse" in out
    assert "@nameservers_v4" in out


@pytest.mark.parametrize("interface,why", [
    ("", "a name of 1 to 15 bytes is required"),
    ("a-very-long-ifname", "a name of 1 to 15 bytes is required"),
    ('eth0" accept', "holds a byte other than"),
    ("eth0;", "holds a byte other than"),
])
def test_bad_interface_is_a_usage_error(tmp_path, interface, why):
    r = egress_rules(tmp_path, interface=interface)
    assert r.returncode == 2, r
    assert r.stdout == ""
    assert "--interface" in r.stderr and why in r.stderr, r.stderr


def test_missing_arguments(tmp_path):
    for args in (["egress-rules"], ["egress-rules", "--config", "x", "--interface", "e0"],
                 ["egress-rules", "--config", "x", "--policy", "y"],
                 ["egress-rules", "--config", "x", "--interface", "e0", "--policy", "y", "extra"],
                 ["egress-rules", "--bogus"]):
        r = subprocess.run([edgeproxy_bin()] + args, capture_output=True, text=True, timeout=15)
        assert r.returncode == 2, (args, r)
        assert "egress-rules --config FILE --interface IF --policy FILE" in r.stderr


def test_bad_config_names_file_and_key(tmp_path):
    cfg = dict(CONFIG, egress={"nameservers": ["dns.google"]})
    r = egress_rules(tmp_path, config=cfg)
    assert r.returncode == 1, r
    assert r.stdout == ""
    assert "edgeproxy.json: egress.nameservers[0]: not an IPv4 or IPv6 address" in r.stderr
    cfg = dict(CONFIG, egress={"listeners": {"tcp": "[::]:15000", "udp": "[::]:15001"}})
    r = egress_rules(tmp_path, config=cfg)
    assert r.returncode == 1
    assert 'unknown key "egress.listeners.udp"' in r.stderr


def test_bad_policy_names_file_and_field(tmp_path):
    r = egress_rules(tmp_path, policy={"denyOut": ["example.com"]})
    assert r.returncode == 1, r
    assert r.stdout == ""
    assert ('policy.json: denyOut[0]: "example.com" is a domain; denyOut takes addresses '
            'and networks only') in r.stderr
    r = egress_rules(tmp_path, raw_policy="{\"allowOut\": [1.1.1.1]}")
    assert r.returncode == 1
    assert "policy.json: not valid JSON" in r.stderr
    r = subprocess.run([edgeproxy_bin(), "egress-rules", "--config", str(tmp_path / "edgeproxy.json"),
                        "--interface", "e0", "--policy", str(tmp_path / "absent.json")],
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 1
    assert "absent.json: No such file or directory" in r.stderr


def test_policy_from_stdin(tmp_path):
    egress_rules(tmp_path)
    r = subprocess.run([edgeproxy_bin(), "egress-rules", "--config", str(tmp_path / "edgeproxy.json"),
                        "--interface", "e0", "--policy", "-"], input=json.dumps(POLICY),
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    assert "table inet edgeproxy_e0 {" in r.stdout


# ---- the kernel takes it ----------------------------------------------------


@pytest.mark.parametrize("policy", [
    POLICY,
    {},
    {"allowInternetAccess": False},
    {"allowOut": ["0.0.0.0/0", "1.1.1.1", "1.1.1.1", "8.8.8.0/24", "8.8.8.0/25"],
     "denyOut": ["0.0.0.0/0", "::/0", "203.0.113.0/24"]},
    {"allowOut": ["*"], "denyOut": ["2001:db8::/32", "::ffff:198.51.100.0/120"]},
])
@pytest.mark.parametrize("config", [
    CONFIG,
    {"listeners": [{"address": "127.0.0.1:18080"}],
     "redis": {"url": "redis://[2001:db8::6]:6380/0"},
     "egress": {"listeners": {"http": "0.0.0.0:15080", "tls": "[::]:15443", "tcp": "[::1]:15000"},
                "nameservers": ["192.0.2.53", "2001:db8::53"],
                "always_deny": ["10.0.0.0/8", "10.1.0.0/16", "10.0.0.0/8", "::/0"]}},
    {"listeners": [{"address": "127.0.0.1:18080"}], "egress": {"always_deny": []}},
])
def test_nft_check_accepts_it(tmp_path, netns, policy, config):
    r = egress_rules(tmp_path, config=config, policy=policy)
    assert r.returncode == 0, r.stderr
    ns = netns("chk")
    in_ns(ns, "nft", "-c", "-f", "-", input=r.stdout)


def test_apply_replaces_one_interface_and_leaves_others(tmp_path, netns):
    ns = netns("apply")
    in_ns(ns, "ip", "link", "add", "veth-sb0", "type", "veth", "peer", "name", "veth-sb1")
    first = egress_rules(tmp_path, interface="veth-sb0")
    assert first.returncode == 0, first.stderr
    in_ns(ns, "nft", "-f", "-", input=first.stdout)
    other = egress_rules(tmp_path, interface="veth-sb1", policy={"denyOut": ["198.51.100.0/24"]})
    in_ns(ns, "nft", "-f", "-", input=other.stdout)

    tables = in_ns(ns, "nft", "list", "tables").stdout.split("\n")
    assert "table inet edgeproxy_veth-sb0" in tables and "table inet edgeproxy_veth-sb1" in tables
    sb0 = in_ns(ns, "nft", "list", "table", "inet", "edgeproxy_veth-sb0").stdout
    assert "192.0.2.1" in sb0 and "redirect to :15000" in sb0
    sb1_before = in_ns(ns, "nft", "list", "table", "inet", "edgeproxy_veth-sb1").stdout
    assert "198.51.100.0/24" in sb1_before

    # The same file again: no duplicate chains or rules.
    in_ns(ns, "nft", "-f", "-", input=first.stdout)
    assert in_ns(ns, "nft", "list", "table", "inet", "edgeproxy_veth-sb0").stdout == sb0

    # A changed policy replaces sb0's table whole; sb1's is untouched.
    changed = egress_rules(tmp_path, interface="veth-sb0",
                           policy={"allowOut": ["203.0.113.9"], "denyOut": ["0.0.0.0/0"]})
    in_ns(ns, "nft", "-f", "-", input=changed.stdout)
    sb0_after = in_ns(ns, "nft", "list", "table", "inet", "edgeproxy_veth-sb0").stdout
    assert "203.0.113.9" in sb0_after
    assert "192.0.2.1" not in sb0_after
    assert "nameservers_v4" not in sb0_after  # no names any more
    assert sb0_after.count("chain to_world {") == 1
    assert in_ns(ns, "nft", "list", "table", "inet", "edgeproxy_veth-sb1").stdout == sb1_before

    # A broken file changes nothing (one transaction).
    broken = changed.stdout.replace("redirect to :15000", "redirect to :99999")
    r = in_ns(ns, "nft", "-f", "-", input=broken, check=False)
    assert r.returncode != 0
    assert in_ns(ns, "nft", "list", "table", "inet", "edgeproxy_veth-sb0").stdout == sb0_after


# ---- and traffic follows it ----------------------------------------------------

# Runs inside a namespace: probes given as JSON on argv, results as JSON.
PROBE = textwrap.dedent(r'''
    import errno, json, socket, sys

    def udp(host, port):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(3)
        try:
            s.connect((host, port))
            s.send(b"ping")
            return "ok" if s.recv(100) == b"ping" else "bad"
        except socket.timeout:
            return "timeout"
        except OSError as e:
            return "refused:" + errno.errorcode.get(e.errno, str(e.errno))
        finally:
            s.close()

    def icmp(host, _port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        s.settimeout(3)
        try:
            s.connect((host, 0))
            s.send(b"\x08\x00\x00\x00\x00\x00\x00\x01hello")
            return "ok" if s.recv(100)[0] == 0 else "bad"
        except socket.timeout:
            return "timeout"
        except OSError as e:
            return "refused:" + errno.errorcode.get(e.errno, str(e.errno))
        finally:
            s.close()

    def tcp(host, port):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(3)
        try:
            s.connect((host, port))
            return "said:" + s.recv(200).decode().strip()
        except socket.timeout:
            return "timeout"
        except OSError as e:
            return "refused:" + errno.errorcode.get(e.errno, str(e.errno))
        finally:
            s.close()

    out = []
    for kind, host, port in json.loads(sys.argv[1]):
        out.append({"udp": udp, "icmp": icmp, "tcp": tcp}[kind](host, port))
    print(json.dumps(out))
''')

# The fake internet: UDP echo on a few ports of each host (bound to each
# address, so that answers come from the address asked).
ECHO = textwrap.dedent(r'''
    import select, socket, sys
    socks = []
    for host in ("192.0.2.1", "203.0.113.1", "198.51.100.53", "2001:db8::1", "2001:db8::2"):
        for port in (7, 53, 54, 443):
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                              socket.SOCK_DGRAM)
            s.bind((host, port))
            socks.append(s)
    print("ready", flush=True)
    while True:
        for s in select.select(socks, [], [])[0]:
            data, peer = s.recvfrom(2048)
            s.sendto(data, peer)
''')

# The egress tcp listener's stand-in on the host: says the original
# destination (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST) and closes.
LISTENER = textwrap.dedent(r'''
    import socket, struct
    SO_ORIGINAL_DST = 80
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind(("::", 15000))
    srv.listen(16)
    print("ready", flush=True)
    while True:
        c, peer = srv.accept()
        try:
            raw = c.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            port, = struct.unpack("!H", raw[2:4])
            dst = "%s:%d" % (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
        except OSError:
            raw = c.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)
            port, = struct.unpack("!H", raw[2:4])
            dst = "[%s]:%d" % (socket.inet_ntop(socket.AF_INET6, raw[8:24]), port)
        c.sendall(dst.encode() + b"\n")
        c.close()
''')


# The same under egress.interception "tproxy": a transparent listener
# (IP_TRANSPARENT, IPV6_TRANSPARENT) whose accepted sockets' own address is
# the original destination.
TPROXY_LISTENER = textwrap.dedent(r'''
    import socket, sys
    IP_TRANSPARENT, IPV6_TRANSPARENT = 19, 75
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
    srv.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
    srv.bind(("::", int(sys.argv[1])))
    srv.listen(16)
    print("ready", flush=True)
    while True:
        c, peer = srv.accept()
        host, port = c.getsockname()[:2]
        host = host[7:] if host.startswith("::ffff:") else "[%s]" % host
        c.sendall(("%s:%d\n" % (host, port)).encode())
        c.close()
''')

# A TCP service of the fake internet that says who it is.
INTERNET_TCP = textwrap.dedent(r'''
    import socket
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("192.0.2.1", 2223))
    srv.listen(16)
    print("ready", flush=True)
    while True:
        c, peer = srv.accept()
        c.sendall(b"internet\n")
        c.close()
''')


def start_in_ns(ns, path, text, *args):
    path.write_text(text)
    p = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", str(path), *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.poll() is not None else ""
    return p


@pytest.fixture
def world(netns, tmp_path):
    """sandbox --veth-sb0/sb0-- host --up0/in0-- internet, with the fake
    internet's hosts on the internet namespace's loopback. Links from
    198.18.0.0/15 and 2001:db8:ff::/48; hosts 192.0.2.1, 203.0.113.1,
    198.51.100.53, 2001:db8::1, 2001:db8::2; the host also owns
    203.0.113.254."""
    sbx, hst, net = netns("sbx"), netns("hst"), netns("net")
    sh("ip", "link", "add", "sb0", "netns", sbx, "type", "veth", "peer", "name", "veth-sb0",
       "netns", hst)
    sh("ip", "link", "add", "in0", "netns", net, "type", "veth", "peer", "name", "up0",
       "netns", hst)
    for ns, cmds in (
        (sbx, [["ip", "addr", "add", "198.18.0.2/30", "dev", "sb0"],
               ["ip", "addr", "add", "2001:db8:ff::2/64", "dev", "sb0", "nodad"],
               ["ip", "link", "set", "sb0", "up"],
               ["ip", "route", "add", "default", "via", "198.18.0.1"],
               ["ip", "-6", "route", "add", "default", "via", "2001:db8:ff::1"],
               ["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"]]),
        (hst, [["ip", "addr", "add", "198.18.0.1/30", "dev", "veth-sb0"],
               ["ip", "addr", "add", "2001:db8:ff::1/64", "dev", "veth-sb0", "nodad"],
               ["ip", "addr", "add", "198.18.1.1/30", "dev", "up0"],
               ["ip", "addr", "add", "2001:db8:ff:1::1/64", "dev", "up0", "nodad"],
               ["ip", "addr", "add", "203.0.113.254/32", "dev", "lo"],
               ["ip", "link", "set", "veth-sb0", "up"],
               ["ip", "link", "set", "up0", "up"],
               ["ip", "route", "add", "192.0.2.0/24", "via", "198.18.1.2"],
               ["ip", "route", "add", "198.51.100.0/24", "via", "198.18.1.2"],
               ["ip", "route", "add", "203.0.113.0/24", "via", "198.18.1.2"],
               ["ip", "-6", "route", "add", "2001:db8::/64", "via", "2001:db8:ff:1::2"],
               ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
               ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]]),
        (net, [["ip", "addr", "add", "198.18.1.2/30", "dev", "in0"],
               ["ip", "addr", "add", "2001:db8:ff:1::2/64", "dev", "in0", "nodad"],
               ["ip", "link", "set", "in0", "up"],
               ["ip", "addr", "add", "192.0.2.1/32", "dev", "lo"],
               ["ip", "addr", "add", "203.0.113.1/32", "dev", "lo"],
               ["ip", "addr", "add", "198.51.100.53/32", "dev", "lo"],
               ["ip", "addr", "add", "2001:db8::1/128", "dev", "lo"],
               ["ip", "addr", "add", "2001:db8::2/128", "dev", "lo"],
               ["ip", "route", "add", "default", "via", "198.18.1.1"],
               ["ip", "-6", "route", "add", "default", "via", "2001:db8:ff:1::1"]]),
    ):
        for cmd in cmds:
            in_ns(ns, *cmd)
    procs = [start_in_ns(net, tmp_path / "echo.py", ECHO),
             start_in_ns(hst, tmp_path / "listener.py", LISTENER)]
    (tmp_path / "probe.py").write_text(PROBE)

    def probe(*probes):
        r = in_ns(sbx, "/usr/bin/python3", str(tmp_path / "probe.py"), json.dumps(probes),
                  timeout=60)
        return json.loads(r.stdout)

    def apply(policy, config=None):
        r = egress_rules(tmp_path, config=config, policy=policy)
        assert r.returncode == 0, r.stderr
        in_ns(hst, "nft", "-f", "-", input=r.stdout)
        return r.stdout

    def start(name, text, *args):
        procs.append(start_in_ns({"hst": hst, "net": net}[name], tmp_path / (name + ".py"),
                                 text, *args))

    yield types.SimpleNamespace(probe=probe, apply=apply, start=start, hst=hst)
    for p in procs:
        p.kill()
        p.wait()


def test_traffic_follows_the_rules(world):
    probe, apply = world.probe, world.apply
    # Before any rule: everything passes, TCP is not redirected.
    assert probe(["udp", "203.0.113.1", 7], ["tcp", "203.0.113.1", 2222]) == \
        ["ok", "refused:ECONNREFUSED"]

    apply(POLICY)
    got = probe(
        ["udp", "192.0.2.1", 7],        # allowOut address
        ["udp", "203.0.113.1", 7],      # denyOut 0.0.0.0/0
        ["udp", "2001:db8::2", 7],      # allowOut IPv6 address
        ["udp", "2001:db8::1", 7],      # 0.0.0.0/0 covers IPv6
        ["udp", "198.51.100.53", 53],   # the nameserver, names in use
        ["udp", "198.51.100.53", 54],   # ... on port 53 only
        ["udp", "192.0.2.1", 443],      # QUIC to an allowed address
        ["icmp", "192.0.2.1", 0],
        ["icmp", "203.0.113.1", 0],
        ["tcp", "203.0.113.1", 2222],   # redirected: the proxy decides TCP
        ["tcp", "2001:db8::1", 443],
        ["tcp", "10.0.0.1", 22],        # always_deny, before NAT
        ["tcp", "203.0.113.254", 9090],  # the host itself
    )
    assert got == [
        "ok", "refused:EHOSTUNREACH", "ok", "refused:EACCES", "ok", "refused:EHOSTUNREACH",
        "ok", "ok", "refused:EHOSTUNREACH",
        "said:203.0.113.1:2222", "said:[2001:db8::1]:443", "refused:ECONNREFUSED",
        "refused:ECONNREFUSED",
    ], got

    # Deny only a range; no names: QUIC and DNS are plain addresses again.
    apply({"denyOut": ["192.0.2.0/24"]})
    got = probe(["udp", "192.0.2.1", 7], ["udp", "203.0.113.1", 7], ["udp", "203.0.113.1", 443],
                ["udp", "2001:db8::1", 7], ["udp", "198.51.100.53", 54])
    assert got == ["refused:EHOSTUNREACH", "ok", "ok", "ok", "ok"], got

    # allowInternetAccess false, one address allowed.
    apply({"allowInternetAccess": False, "allowOut": ["2001:db8::1"]})
    got = probe(["udp", "2001:db8::1", 7], ["udp", "2001:db8::2", 7], ["udp", "192.0.2.1", 7],
                ["udp", "198.51.100.53", 53])
    assert got == ["ok", "refused:EACCES", "refused:EHOSTUNREACH", "refused:EHOSTUNREACH"], got


def test_tproxy_traffic(world):
    """egress.interception "tproxy": TCP reaches a transparent listener
    with its destination unchanged, by the divert chain and the policy
    route the ruleset prints; with no listener it is refused, not
    forwarded past the proxy."""
    cfg = dict(CONFIG, egress=dict(CONFIG["egress"], interception="tproxy",
                                   listeners={"tcp": "[::]:15001"}))
    rules = world.apply(POLICY, config=cfg)
    for cmd in re.findall(r"^#   (ip .*)$", rules, re.M):
        in_ns(world.hst, *cmd.split())
    world.start("net", INTERNET_TCP)
    # No listener (the proxy down): refused, although 192.0.2.1 is an
    # allowed address the forward chain would let through.
    assert world.probe(["tcp", "192.0.2.1", 2223]) == ["refused:ECONNREFUSED"]
    world.start("hst", TPROXY_LISTENER, "15001")
    got = world.probe(
        ["tcp", "192.0.2.1", 2223],
        ["tcp", "203.0.113.1", 2222],
        ["tcp", "2001:db8::1", 443],
        ["tcp", "10.0.0.1", 22],          # always_deny, in guard
        ["tcp", "203.0.113.254", 9090],   # the host itself
        ["udp", "192.0.2.1", 7],          # UDP: by address, as before
        ["udp", "203.0.113.1", 7],
    )
    assert got == [
        "said:192.0.2.1:2223", "said:203.0.113.1:2222", "said:[2001:db8::1]:443",
        "refused:ECONNREFUSED", "refused:ECONNREFUSED", "ok", "refused:EHOSTUNREACH",
    ], got
