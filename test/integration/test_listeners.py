"""SPEC section 3 listeners: PROXY protocol v1/v2 and TLS termination with
SNI-selected certificates and ALPN."""

import ipaddress
import os
import time
import socket
import ssl
import struct

import pytest

from harness import (Client, wait_until, ConnectionClosed, build_request, check_error, make_cert, new_sid, public_record,
                     sandbox_host)

PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


@pytest.fixture(scope="module")
def certs(workdir):
    d = workdir / "tls"
    d.mkdir()
    return {"a": make_cert(d, "a", "sandbox.test"), "b": make_cert(d, "b", "sandbox2.test")}


@pytest.fixture(scope="module")
def proxy(make_proxy, certs):
    # extra_ports[0]: PROXY protocol; extra_ports[1]: TLS (a first = default).
    return make_proxy({"domains": ["sandbox.test", "sandbox2.test"]}, extra_listeners=[
        {"proxy_protocol": True},
        {"tls": {"certificates": [certs["a"], certs["b"]]}},
    ])


def pp_v1(src, dst="127.0.0.1", sport=40000, dport=80):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def pp_v2(src, dst="127.0.0.1", sport=40000, dport=80, command=1):
    if ":" in src:
        fam, addrs = 0x21, ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
    else:
        fam, addrs = 0x11, ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
    if command == 0:  # LOCAL: no address (a balancer's health check)
        return PP2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    body = addrs + struct.pack("!HH", sport, dport)
    return PP2_SIG + bytes([0x20 | command, fam]) + struct.pack("!H", len(body)) + body


@pytest.fixture
def routed(redis_server, upstream, sid):
    redis_server.set_record(sid, public_record())
    return sid, sandbox_host(upstream.port, sid)


# --------------------------------------------------------------------------
# PROXY protocol


@pytest.mark.parametrize("header,client", [
    (pp_v1("203.0.113.7"), "203.0.113.7"),
    (pp_v1("2001:db8::7", "2001:db8::1"), "2001:db8::7"),
    (pp_v2("198.51.100.9"), "198.51.100.9"),
    (pp_v2("2001:db8::9", "2001:db8::1"), "2001:db8::9"),
    (b"PROXY UNKNOWN\r\n", "127.0.0.1"),          # v1 UNKNOWN: the socket's peer
    (pp_v2("0.0.0.0", command=0), "127.0.0.1"),   # v2 LOCAL: the socket's peer
], ids=["v1-tcp4", "v1-tcp6", "v2-tcp4", "v2-tcp6", "v1-unknown", "v2-local"])
def test_proxy_protocol_client_address(proxy, upstream, routed, header, client):
    sid, host = routed
    with Client(proxy.extra_ports[0]) as c:
        c.send(header + build_request("GET", "/r/%s/pp1" % sid, host))
        assert c.read_response().status == 200
        # every request of the connection carries the same client address
        assert c.request("GET", "/r/%s/pp2" % sid, host=host).status == 200
    recs = upstream.requests_for("/r/%s/" % sid)
    assert [r.header_all("x-forwarded-for") for r in recs] == [[client], [client]], recs


def test_proxy_protocol_header_in_pieces(proxy, upstream, routed):
    import time
    sid, host = routed
    with Client(proxy.extra_ports[0]) as c:
        h = pp_v2("198.51.100.10")
        c.send(h[:5])
        time.sleep(0.05)
        c.send(h[5:14])
        time.sleep(0.05)
        c.send(h[14:] + build_request("GET", "/r/%s/pieces" % sid, host))
        assert c.read_response().status == 200
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.header_all("x-forwarded-for") == ["198.51.100.10"]


@pytest.mark.parametrize("prefix", [
    b"",                                         # no header at all
    b"PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 127.0.0.1 99999 80\r\n",
    PP2_SIG + b"\x21\x11\x00\x02ab",             # v2 with a truncated address block
], ids=["none", "v1-bad-ip", "v1-bad-port", "v2-truncated"])
def test_proxy_protocol_required_and_checked(proxy, upstream, routed, prefix):
    sid, host = routed
    with Client(proxy.extra_ports[0]) as c:
        c.send(prefix + build_request("GET", "/r/%s/nopp" % sid, host))
        try:
            r = c.read_response()
            assert r.status == 400, r  # a 400 or a plain close; never served
        except (ConnectionClosed, OSError):
            pass
    assert upstream.requests_for("/r/%s/" % sid) == []


def test_plain_listener_ignores_no_proxy_header(proxy, upstream, routed):
    # On a listener without proxy_protocol, a PROXY line is not trusted.
    sid, host = routed
    with proxy.connect() as c:
        c.send(pp_v1("203.0.113.7") + build_request("GET", "/r/%s/plain" % sid, host))
        try:
            r = c.read_response()
            check_error(r, 400)
        except (ConnectionClosed, OSError):
            pass
    assert upstream.requests_for("/r/%s/" % sid) == []


# --------------------------------------------------------------------------
# TLS


def tls_client(proxy, certs, server_name, alpn=("http/1.1",), verify_name=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = verify_name
    ctx.load_verify_locations(certs["a"]["cert"])
    ctx.load_verify_locations(certs["b"]["cert"])
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    raw = socket.create_connection(("127.0.0.1", proxy.extra_ports[1]), timeout=5)
    s = ctx.wrap_socket(raw, server_hostname=server_name)
    return s


@pytest.mark.parametrize("domain,cert", [("sandbox.test", "a"), ("sandbox2.test", "b")])
def test_tls_sni_selects_certificate(proxy, certs, upstream, redis_server, sid, domain, cert):
    redis_server.set_record(sid, public_record())
    host = "%d-%s.%s" % (upstream.port, sid, domain)
    s = tls_client(proxy, certs, host)  # verifies the certificate for this name
    der = s.getpeercert(binary_form=True)
    want = ssl.PEM_cert_to_DER_cert(open(certs[cert]["cert"]).read())
    assert der == want, "SNI %s did not get certificate %s" % (host, cert)
    assert s.selected_alpn_protocol() == "http/1.1"
    with Client(sock=s) as c:
        r = c.request("GET", "/r/%s/tls" % sid, host=host)
        assert r.status == 200, r
        assert c.request("GET", "/r/%s/tls2" % sid, host=host).status == 200
    recs = upstream.requests_for("/r/%s/" % sid)
    assert len(recs) == 2
    assert all(x.header_all("x-forwarded-proto") == ["https"] for x in recs), recs
    assert all(x.header_all("x-forwarded-for") == ["127.0.0.1"] for x in recs), recs


def test_tls_no_sni_gets_default_certificate(proxy, certs, upstream, routed):
    sid, host = routed
    s = tls_client(proxy, certs, None, verify_name=False)
    der = s.getpeercert(binary_form=True)
    assert der == ssl.PEM_cert_to_DER_cert(open(certs["a"]["cert"]).read())
    with Client(sock=s) as c:
        assert c.request("GET", "/r/%s/nosni" % sid, host=host).status == 200


def test_tls_without_alpn(proxy, certs, upstream, routed):
    sid, host = routed
    s = tls_client(proxy, certs, host, alpn=None)
    with Client(sock=s) as c:
        assert c.request("GET", "/r/%s/noalpn" % sid, host=host).status == 200


def test_tls_proxy_error_and_large_body(proxy, certs, upstream, routed):
    sid, host = routed
    s = tls_client(proxy, certs, host)
    with Client(sock=s, timeout=15) as c:
        other = new_sid()
        check_error(c.request("GET", "/", host=sandbox_host(upstream.port, other)), 502, sandbox_id=other)
        body = b"t" * (3 << 20)
        r = c.request("POST", "/r/%s/tlsbody" % sid, host=host, body=body)
        assert r.status == 200 and r.json()["body_len"] == len(body), r
        r = c.request("GET", "/r/%s/tlsdown" % sid, host=host, headers=[("X-Test-Body-Size", str(3 << 20))])
        assert r.status == 200 and len(r.body) == 3 << 20


def test_plain_http_on_tls_listener_not_served(proxy, upstream, routed):
    sid, host = routed
    with Client(proxy.extra_ports[1]) as c:
        c.send(build_request("GET", "/r/%s/plain-on-tls" % sid, host))
        try:
            c.sock.settimeout(3)
            c.sock.recv(65536)
        except OSError:
            pass
    assert upstream.requests_for("/r/%s/" % sid) == []


def test_tls_session_resumption(proxy, certs, upstream, routed):
    """Issue 4: session resumption (tickets) works, TLS 1.2 and 1.3 alike."""
    sid, host = routed
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        first = ctx.wrap_socket(socket.create_connection(("127.0.0.1", proxy.extra_ports[1]), timeout=5),
                                server_hostname=host)
        assert first.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                   ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
        with Client(sock=first) as c:
            # TLS 1.3 tickets arrive after the handshake: one exchange first.
            assert c.request("GET", "/r/%s/t1" % sid, host=host).status == 200
            session = first.session
        assert session is not None
        second = ctx.wrap_socket(socket.create_connection(("127.0.0.1", proxy.extra_ports[1]), timeout=5),
                                 server_hostname=host, session=session)
        assert second.session_reused, "TLS %s session was not resumed" % version
        with Client(sock=second) as c:
            assert c.request("GET", "/r/%s/t2" % sid, host=host).status == 200


def test_tls_old_versions_refused_with_one_log_line(proxy, certs, routed):
    """TLS 1.0/1.1 are refused; a failed handshake costs one log line."""
    before = proxy.stderr().count("TLS handshake failed")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    raw = socket.create_connection(("127.0.0.1", proxy.extra_ports[1]), timeout=5)
    with pytest.raises((ssl.SSLError, OSError)):
        ctx.wrap_socket(raw, server_hostname="x.sandbox.test")
    raw.close()
    wait_until(lambda: proxy.stderr().count("TLS handshake failed") == before + 1, timeout=5,
               what="one handshake failure line")


def proxy_cpu_seconds(proxy):
    with open("/proc/%d/stat" % proxy.proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("then_close", [False, True], ids=["pending", "then-close"])
def test_proxy_protocol_partial_header_does_not_spin(proxy, upstream, routed, then_close):
    """A PROXY header that arrives in part (and maybe never completes) waits
    quietly: no busy loop on the peeked bytes (found by the request-path
    fuzzer). A busy loop burns a whole core; idle waiting burns next to
    nothing, so the bound below is far from any timing noise."""
    sid, host = routed
    with Client(proxy.extra_ports[0]) as c:
        c.send(b"PROXY TCP4 203.0.113.9 ")
        time.sleep(0.2)
        before = proxy_cpu_seconds(proxy)
        if then_close:
            c.sock.shutdown(socket.SHUT_WR)
            assert c.is_closed(timeout=5), "a header cut short should close the connection"
        time.sleep(1.0)
        spent = proxy_cpu_seconds(proxy) - before
        assert spent < 0.5, "the proxy burned %.2f s of CPU on a pending PROXY header" % spent
        if not then_close:
            c.send(b"127.0.0.1 4444 80\r\n" + build_request("GET", "/r/%s/late" % sid, host))
            assert c.read_response().status == 200
    if not then_close:
        (rec,) = upstream.requests_for("/r/%s/late" % sid)
        assert rec.header_all("x-forwarded-for") == ["203.0.113.9"]
