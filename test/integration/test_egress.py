"""SPEC section 9: the egress listeners, on a real kernel, in the namespace
world of egress_world.py (sandbox, host with the proxy and the rules of
`edgeproxy egress-rules` redirecting the sandbox's TCP, a fake internet
with dnsmasq), with one worker and egress.interception "redirect".

Needs root, ip, nft, dnsmasq, curl, openssl and nc (scripts/deps.sh)."""

import json
import os
import shutil
import signal
import time

import pytest

from harness import value, wait_until
from documented import egress_log_keys
from egress_world import (ALLOWED, ALLOWED6, BANNER, DENIED, NAMESERVER, OTHER, OTHER6,
                          PEEK_MS, SBX_IP, SBX_IP2, SBX_IP6, allow_only, hold, needs_world,
                          run_world)

pytestmark = needs_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    yield from run_world(tmp_path_factory, "egress")


# ---- decided by address ------------------------------------------------------


def test_tcp_allowed_and_denied_by_address(world):
    world.set_policy(allow_only(BANNER))
    assert world.client("tcp", BANNER, "2222", "hello\n", "shut") == \
        {"data": "BANNER %s\nhello\n" % BANNER, "end": "eof"}
    # Refused TCP is reset, not closed cleanly.
    got = world.client("tcp", DENIED, "2222", "hello\n")
    assert got.get("end") == "reset" and got["data"] == "", got
    # nc sees it too.
    r = world.run("nc", "-w", "3", DENIED, "2222")
    assert "BANNER" not in r.stdout
    r = world.run("sh", "-c", "echo hi | nc -N -w 3 %s 2222" % BANNER)
    assert r.stdout == "BANNER %s\nhi\n" % BANNER, r


def test_cidr_and_allow_beats_deny(world):
    world.set_policy({"allowOut": ["192.0.2.0/24"], "denyOut": ["0.0.0.0/0"]})
    assert world.client("tcp", ALLOWED, "2222", "", "shut")["data"] == "BANNER %s\n" % ALLOWED
    assert world.client("tcp", OTHER, "2222", "", "shut")["data"] == "BANNER %s\n" % OTHER
    assert world.client("tcp", BANNER, "2222")["end"] == "reset"
    # allow beats deny: the address inside a denied network.
    world.set_policy({"allowOut": [OTHER], "denyOut": ["192.0.2.0/24"]})
    assert world.client("tcp", OTHER, "2222", "", "shut")["data"] == "BANNER %s\n" % OTHER
    assert world.client("tcp", ALLOWED, "2222")["end"] == "reset"
    # Nothing denied: everything else goes.
    assert world.client("tcp", BANNER, "2222", "", "shut")["data"] == "BANNER %s\n" % BANNER


def test_all_traffic_covers_ipv6(world):
    world.set_policy({"denyOut": ["0.0.0.0/0"]})
    assert world.client("tcp", ALLOWED6, "2222")["end"] == "reset"
    world.set_policy({"allowInternetAccess": False})
    assert world.client("tcp", ALLOWED6, "2222")["end"] == "reset"
    world.set_policy({"allowOut": [ALLOWED6], "denyOut": ["0.0.0.0/0"]})
    assert world.client("tcp", ALLOWED6, "2222", "", "shut")["data"] == "BANNER %s\n" % ALLOWED6
    assert world.client("tcp", OTHER6, "2222")["end"] == "reset"


# ---- TLS ---------------------------------------------------------------------


def test_tls_by_sni_domain_and_wildcard(world):
    world.set_policy(allow_only("allowed.test", "*.wild.test"))
    code, body, err = world.curl("https://allowed.test/", "--resolve",
                                 "allowed.test:443:%s" % ALLOWED)
    assert code == 200 and json.loads(body)["server"] == ALLOWED, (code, body, err)
    # Any depth below the wildcard, not the apex.
    for name in ("a.wild.test", "x.b.wild.test"):
        code, body, err = world.curl("https://%s/" % name, "--resolve", "%s:443:%s" % (name, ALLOWED))
        assert code == 200, (name, err)
    code, body, err = world.curl("https://wild.test/", "--resolve", "wild.test:443:%s" % ALLOWED)
    assert code == 0 and "access denied" in err, err
    # A name not allowed: the client sees the access_denied alert.
    code, body, err = world.curl("https://other.test/", "--resolve", "other.test:443:%s" % OTHER)
    assert code == 0 and "access denied" in err, err
    r = world.run("openssl", "s_client", "-connect", "%s:443" % OTHER, "-servername", "other.test",
                  "-CAfile", str(world.cert), input="", timeout=10)
    assert "alert access denied" in r.stdout + r.stderr, r
    assert world.client("tls", OTHER, "443", "other.test") == {"error": "TLSV1_ALERT_ACCESS_DENIED"}


def test_sni_spoofing_lands_on_the_name_or_is_refused(world):
    world.set_policy(allow_only("allowed.test", "rebind.test"))
    # The sandbox claims allowed.test but dials other.test's address: the
    # proxy asks its own nameserver and connects to allowed.test's.
    code, body, err = world.curl("https://allowed.test/", "--resolve",
                                 "allowed.test:443:%s" % OTHER)
    assert code == 200 and json.loads(body)["server"] == ALLOWED, (code, body, err)
    # A name whose answer is a private address (DNS rebinding): refused.
    code, body, err = world.curl("https://rebind.test/", "--resolve",
                                 "rebind.test:443:%s" % OTHER)
    assert code == 0 and "access denied" in err, err
    lines = world.log_lines(lambda l: l["egress"] == "tls" and l["name"] == "rebind.test")
    assert lines[-1]["decision"] == "deny"
    assert lines[-1]["rule"] == "always_deny 10.0.0.0/8 (rebind.test resolves there)"
    spoofed = world.log_lines(lambda l: l["egress"] == "tls" and l["name"] == "allowed.test" and
                              l["destination"] == "%s:443" % OTHER)
    assert spoofed[-1]["connected"] == "%s:443" % ALLOWED
    assert spoofed[-1]["rule"] == "allowOut[0] allowed.test"


@pytest.mark.parametrize("mode", ["segments", "records"])
def test_clienthello_split(world, mode):
    world.set_policy(allow_only("allowed.test"))
    assert world.client("tls", ALLOWED, "443", "allowed.test", mode) == {"server": ALLOWED}
    assert world.client("tls", OTHER, "443", "other.test", mode) == \
        {"error": "TLSV1_ALERT_ACCESS_DENIED"}


def test_ech_counted_and_decided_by_outer_sni(world):
    world.set_policy(allow_only("allowed.test"))
    before = world.metrics()
    got = world.client("tls", OTHER, "443", "other.test", "ech")
    assert got == {"error": "TLSV1_ALERT_ACCESS_DENIED"}
    after = world.metrics()
    assert value(after, "edgeproxy_egress_ech_total") == value(before, "edgeproxy_egress_ech_total") + 1
    line = world.log_lines(lambda l: l["egress"] == "tls" and l.get("ech"))[-1]
    assert line["name"] == "other.test" and line["decision"] == "deny"


def test_server_speaks_first_on_443_decided_by_address(world):
    world.set_policy(allow_only(BANNER))
    # Nothing sent: after the peek timeout the address decides, and the
    # server's first words come through.
    got = world.client("greet", BANNER, "443")
    assert got["data"] == "BANNER %s\n" % BANNER, got
    assert got["after"] >= PEEK_MS / 1000.0 - 0.05, got
    world.set_policy(allow_only("allowed.test"))
    got = world.client("greet", BANNER, "443")
    assert got["end"] == "reset" and got["data"] == "", got


# ---- port 80 -------------------------------------------------------------------


def test_http_each_request_decided_by_its_host(world):
    world.set_policy(allow_only("allowed.test", "*.wild.test"))
    got = world.client("http", ALLOWED, "80", "allowed.test", "other.test", "a.wild.test",
                       "wild.test", "allowed.test:80")
    assert [r["status"] for r in got] == [200, 403, 200, 403, 200], got
    assert got[1]["json"]["code"] == 403 and got[1]["json"]["host"] == "other.test", got[1]
    assert "egress refused" in got[1]["json"]["message"]
    assert got[1]["headers"]["content-type"] == "application/json; charset=utf-8"
    assert all(r["json"]["server"] == ALLOWED for r in got if r["status"] == 200)
    # The upstream sees the request as the sandbox wrote it: no
    # X-Forwarded-* of the proxy's, the client's own kept, and nothing
    # stripped (the traffic token is the ingress's business).
    headers = dict((k.lower(), v) for k, v in got[0]["json"]["headers"])
    assert headers["x-forwarded-for"] == "1.2.3.4"
    assert "x-forwarded-host" not in headers and "x-forwarded-proto" not in headers
    assert headers["e2b-traffic-access-token"] == "tok"
    assert headers["host"] == "allowed.test"
    # curl, with the Host spoofed: goes to allowed.test's own address.
    code, body, err = world.curl("http://allowed.test/x", "--resolve",
                                 "allowed.test:80:%s" % OTHER)
    assert code == 200 and json.loads(body)["server"] == ALLOWED, (code, body, err)
    code, body, err = world.curl("http://denied.test/", "--resolve", "denied.test:80:%s" % DENIED)
    assert code == 403 and json.loads(body)["host"] == "denied.test", body
    lines = world.log_lines(lambda l: l["egress"] == "http" and l["host"] == "denied.test")
    assert lines[-1]["status"] == 403 and lines[-1]["decision"] == "deny"
    assert lines[-1]["rule"] == "denyOut[0] 0.0.0.0/0"


def test_http_refuses_proxy_forms_and_http2(world):
    world.set_policy({})
    absolute = "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
    got = world.client("raw", ALLOWED, "80", absolute.encode().hex())
    assert got["data"].startswith("HTTP/1.1 400"), got
    assert "Connection: close" in got["data"] and got["end"] == "eof", got
    connect = "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n"
    got = world.client("raw", ALLOWED, "80", connect.encode().hex())
    assert got["data"].startswith("HTTP/1.1 405"), got
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    got = world.client("raw", ALLOWED, "80", preface.hex())
    assert got["data"].startswith("HTTP/1.1 400"), got
    code, body, err = world.curl("http://allowed.test/", "--http2-prior-knowledge", "--resolve",
                                 "allowed.test:80:%s" % ALLOWED)
    assert code != 200, (code, body)


# ---- the connection itself ------------------------------------------------------


def test_half_close_and_reset_mirrored(world):
    world.set_policy({})
    # The client shuts its sending side; the answer still comes back.
    payload = "x" * 100000
    assert world.client("tcp", ALLOWED, "7777", payload, "shut") == \
        {"data": "got 100000\n", "end": "eof"}
    # The destination resets: so does the proxy, toward the sandbox.
    got = world.client("tcp", ALLOWED, "9999", "bye")
    assert got == {"data": "", "end": "reset"}, got
    # Nothing listens there: refused is mirrored as a reset.
    got = world.client("tcp", ALLOWED, "2345")
    assert got["end"] == "reset", got


def test_unknown_source_refused(world):
    world.set_policy(None, sources=(SBX_IP2,))
    world.set_policy({})
    assert world.client("tcp", ALLOWED, "2222", src=SBX_IP2)["end"] == "reset"
    assert world.client("tls", ALLOWED, "443", "allowed.test", src=SBX_IP2) == \
        {"error": "TLSV1_ALERT_ACCESS_DENIED"}
    got = world.client("http", ALLOWED, "80", "allowed.test", src=SBX_IP2)
    assert got[0]["status"] == 403, got
    line = world.log_lines(lambda l: l["source"] == SBX_IP2 and l["egress"] == "tcp")[-1]
    assert line["rule"] == "no policy" and line["sandbox_id"] is None
    # A broken record is refused the same way.
    world.set_policy('{"denyOut": ["example.com"]}', sources=(SBX_IP2,))
    assert world.client("tcp", ALLOWED, "2222", src=SBX_IP2)["end"] == "reset"
    assert world.decisions("tcp", "broken_policy") >= 1


def test_policy_change_closes_open_connections(world):
    world.set_policy({})
    holder = hold(world, BANNER, "2222")
    try:
        assert json.loads(holder.stdout.readline()) == {"opened": "BANNER %s" % BANNER}
        time.sleep(0.3)
        assert holder.poll() is None
        before = value(world.metrics(), "edgeproxy_egress_revoked_total")
        world.set_policy({"denyOut": [BANNER]})
        got = json.loads(holder.stdout.readline())
        assert got["end"] == "reset" and got["after"] < 3, got
    finally:
        holder.kill()
        holder.wait()
    assert value(world.metrics(), "edgeproxy_egress_revoked_total") == before + 1
    line = world.log_lines(lambda l: l["destination"] == "%s:2222" % BANNER and l["revoked"])[-1]
    assert line["revoked"] == "denyOut[0] %s" % BANNER and line["decision"] == "allow"


def test_ipv6_path(world):
    world.set_policy(allow_only("v6.test"))
    code, body, err = world.curl("https://v6.test/", "--resolve", "v6.test:443:[%s]" % ALLOWED6)
    assert code == 200 and json.loads(body)["server"] == ALLOWED6, (code, body, err)
    code, body, err = world.curl("http://v6.test/", "--resolve", "v6.test:80:[%s]" % OTHER6)
    assert code == 200 and json.loads(body)["server"] == ALLOWED6, (code, body, err)
    code, body, err = world.curl("https://other.test/", "--resolve", "other.test:443:[%s]" % OTHER6)
    assert code == 0 and "access denied" in err, err
    line = world.log_lines(lambda l: l["source"] == SBX_IP6 and l["egress"] == "http")[-1]
    assert line["destination"] == "[%s]:80" % OTHER6 and line["connected"] == "[%s]:80" % ALLOWED6


# ---- what it says about itself ----------------------------------------------------


def test_decisions_in_metrics_and_log(world):
    world.set_policy(allow_only(ALLOWED))
    before = world.decisions("tcp", "allow_address"), world.decisions("tcp", "deny_address")
    world.client("tcp", ALLOWED, "7777", "abc", "shut")
    world.client("tcp", OTHER, "7777", "abc", "shut")
    after = world.decisions("tcp", "allow_address"), world.decisions("tcp", "deny_address")
    assert after == (before[0] + 1, before[1] + 1)
    m = world.metrics()
    assert ("edgeproxy_egress_decisions_total",
            (("kind", "tls"), ("result", "allow"), ("rule", "allow_name"))) in m
    line = world.log_lines(lambda l: l["destination"] == "%s:7777" % ALLOWED and
                           l["bytes_out"] == 3)[-1]
    assert line["bytes_in"] == len("got 3\n") and line["decision"] == "allow"
    assert line["sandbox_id"] == "sbxtest" and line["source"] == SBX_IP
    assert line["rule"] == "allowOut[0] %s" % ALLOWED and line["connected"] == "%s:7777" % ALLOWED
    # README's keys, in its order (a TCP line has no "ech").
    tls_keys, http_keys = egress_log_keys()
    assert list(line) == [k for k in tls_keys if k != "ech"]
    world.client("tls", ALLOWED, "443", "allowed.test")
    world.client("http", ALLOWED, "80", "allowed.test")
    assert list(world.log_lines(lambda l: l["egress"] == "tls")[-1]) == tls_keys
    assert list(world.log_lines(lambda l: l["egress"] == "http")[-1]) == http_keys


def test_max_connections(world):
    world.set_policy({"maxConnections": 1})
    holder = hold(world, BANNER, "2222")
    try:
        assert json.loads(holder.stdout.readline())["opened"]
        assert world.client("tcp", BANNER, "2222")["end"] == "reset"
        got = world.client("http", ALLOWED, "80", "allowed.test")
        assert got[0]["status"] == 429 and got[0]["json"]["connectionLimit"] == 1, got
    finally:
        holder.kill()
        holder.wait()
    wait_until(lambda: world.client("tcp", BANNER, "2222", "", "shut")["end"] == "eof",
               timeout=5, what="the slot given back")


def test_redis_down_cached_policy_serves_uncached_refused(world):
    world.set_policy(allow_only(BANNER))
    world.set_policy(allow_only(BANNER), sources=(SBX_IP2,))
    assert world.client("tcp", BANNER, "2222", "", "shut")["end"] == "eof"  # cached now
    os.kill(world.redis_proc.pid, signal.SIGSTOP)
    try:
        time.sleep(1.2)  # past cache.ttl_ms: the record is stale, Redis silent
        # The stale record serves (once the GET has timed out); an address
        # never looked up has nothing to serve: refused, never a hang.
        got = world.client("tcp", BANNER, "2222", "", "shut")
        assert got == {"data": "BANNER %s\n" % BANNER, "end": "eof"}, got
        t0 = time.monotonic()
        assert world.client("tcp", BANNER, "2222", src=SBX_IP2)["end"] == "reset"
        assert time.monotonic() - t0 < 3
        got = world.client("http", ALLOWED, "80", "allowed.test", src=SBX_IP2)
        assert got[0]["status"] == 503 and got[0]["headers"]["retry-after"] == "1", got
    finally:
        os.kill(world.redis_proc.pid, signal.SIGCONT)
    wait_until(lambda: world.client("tcp", BANNER, "2222", "", "shut", src=SBX_IP2)["end"] == "eof",
               timeout=10, what="lookups after Redis came back")


def test_proxy_and_host_unreachable_from_the_sandbox(world):
    world.set_policy({})
    # The listeners and the admin port on the host's own addresses: refused
    # by the kernel rules before NAT, never redirected to the proxy.
    for port in ("15080", "15443", "15000", "9090", "6379"):
        got = world.client("tcp", "198.18.0.1", port)
        assert got.get("error") == "ECONNREFUSED", (port, got)


def test_dns_to_the_nameserver_by_the_generated_rules(world):
    if not shutil.which("dig"):
        pytest.skip("dig not installed")
    world.set_policy(allow_only("allowed.test"))
    r = world.run("dig", "+short", "+time=2", "+tries=1", "@" + NAMESERVER, "allowed.test")
    assert r.stdout.strip() == ALLOWED, r
    # No name in the policy: the nameserver is an address like any other.
    world.set_policy(allow_only(BANNER))
    r = world.run("dig", "+short", "+time=2", "+tries=1", "@" + NAMESERVER, "allowed.test")
    assert r.stdout.strip() != ALLOWED, r
