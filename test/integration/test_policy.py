"""SPEC sections 4-5: the traffic token, maskRequestHost, X-Forwarded-*,
hop-by-hop headers, and maxConnections."""

import time

import pytest

from harness import (Client, build_request, check_error, new_sid, private_record, public_record,
                     sandbox_host, wait_until)
from upstreams import EchoUpstream

TOKEN_HDR = "e2b-traffic-access-token"


@pytest.fixture(scope="module")
def exempt_upstream():
    u = EchoUpstream(name="exempt")
    yield u
    u.stop()


@pytest.fixture(scope="module")
def proxy(make_proxy, exempt_upstream):
    # The exempt list is the default (49983) plus the port of an upstream the
    # test owns, so the exemption is testable whether 49983 is free or not.
    return make_proxy({"policy": {"token_exempt_ports": [49983, exempt_upstream.port]}})


def no_token_upstream(rec):
    return not any(k.lower() == TOKEN_HDR for k, _ in rec.headers)


# --------------------------------------------------------------------------
# Token


def test_private_without_token_403(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, private_record("tok-" + sid))
    r = proxy.get(sandbox_host(upstream.port, sid), "/r/%s/notoken" % sid)
    check_error(r, 403, sandbox_id=sid)
    assert upstream.requests_for("/r/%s/" % sid) == []


@pytest.mark.parametrize("bad", ["wrong", "tok-", "tok-{sid}x", "TOK-{sid}", "", " tok-{sid}x",
                                 "tok-{sid}tok-{sid}"])
def test_private_wrong_token_403(proxy, upstream, redis_server, sid, bad):
    redis_server.set_record(sid, private_record("tok-" + sid))
    r = proxy.get(sandbox_host(upstream.port, sid), "/r/%s/wrong" % sid,
                  headers=[(TOKEN_HDR, bad.format(sid=sid))])
    check_error(r, 403, sandbox_id=sid)
    assert upstream.requests_for("/r/%s/" % sid) == []


def test_private_two_token_headers_one_wrong_403(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, private_record("tok-" + sid))
    r = proxy.get(sandbox_host(upstream.port, sid), "/r/%s/two" % sid,
                  headers=[(TOKEN_HDR, "wrong"), (TOKEN_HDR, "tok-" + sid)])
    assert r.status in (400, 403), r
    assert upstream.requests_for("/r/%s/" % sid) == []


@pytest.mark.parametrize("name", [TOKEN_HDR, "E2B-Traffic-Access-Token"])
def test_private_right_token_200_and_token_stripped(proxy, upstream, redis_server, sid, name):
    redis_server.set_record(sid, private_record("tok-" + sid))
    r = proxy.get(sandbox_host(upstream.port, sid), "/r/%s/ok" % sid,
                  headers=[(name, "tok-" + sid), ("X-Other", "kept")])
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert no_token_upstream(rec), rec.headers
    assert rec.header("x-other") == "kept"


def test_token_checked_on_every_request(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, private_record("tok-" + sid))
    host = sandbox_host(upstream.port, sid)
    with proxy.connect() as c:
        r1 = c.request("GET", "/r/%s/first" % sid, host=host, headers=[(TOKEN_HDR, "tok-" + sid)])
        assert r1.status == 200, r1
        r2 = c.request("GET", "/r/%s/second" % sid, host=host)
        check_error(r2, 403, sandbox_id=sid)
    recs = upstream.requests_for("/r/%s/" % sid)
    assert [x.target for x in recs] == ["/r/%s/first" % sid]


def test_token_checked_on_pipelined_requests(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, private_record("tok-" + sid))
    host = sandbox_host(upstream.port, sid)
    with proxy.connect() as c:
        c.send(build_request("GET", "/r/%s/p1" % sid, host, [(TOKEN_HDR, "tok-" + sid)]) +
               build_request("GET", "/r/%s/p2" % sid, host))
        assert c.read_response().status == 200
        check_error(c.read_response(), 403, sandbox_id=sid)
    assert [x.target for x in upstream.requests_for("/r/%s/" % sid)] == ["/r/%s/p1" % sid]


def test_public_sandbox_token_header_stripped(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record(trafficAccessToken="tok-" + sid))
    r1 = proxy.get(sandbox_host(upstream.port, sid), "/r/%s/pub1" % sid)
    r2 = proxy.get(sandbox_host(upstream.port, sid), "/r/%s/pub2" % sid, headers=[(TOKEN_HDR, "anything")])
    assert r1.status == 200 and r2.status == 200, (r1, r2)
    recs = upstream.requests_for("/r/%s/" % sid)
    assert len(recs) == 2 and all(no_token_upstream(x) for x in recs), recs


def test_exempt_port_skips_token(proxy, exempt_upstream, upstream, redis_server, sid):
    redis_server.set_record(sid, private_record("tok-" + sid))
    r = proxy.get(sandbox_host(exempt_upstream.port, sid), "/r/%s/exempt" % sid)
    assert r.status == 200, r
    r = proxy.get(sandbox_host(exempt_upstream.port, sid), "/r/%s/exempt2" % sid,
                  headers=[(TOKEN_HDR, "wrong")])
    assert r.status == 200, r
    recs = exempt_upstream.requests_for("/r/%s/" % sid)
    assert len(recs) == 2
    # The secret never reaches the sandbox, exempt port or not.
    assert all(no_token_upstream(x) for x in recs), recs
    # Only the listed ports: the same sandbox on another port still needs it.
    check_error(proxy.get(sandbox_host(upstream.port, sid), "/r/%s/notexempt" % sid), 403, sandbox_id=sid)


def test_default_exempt_port_49983(proxy, redis_server, sid):
    try:
        up = EchoUpstream(port=49983, name="envd")
    except OSError as e:
        pytest.skip("port 49983 not free: %s" % e)
    try:
        redis_server.set_record(sid, private_record("tok-" + sid))
        r = proxy.get(sandbox_host(49983, sid), "/r/%s/envd" % sid)
        assert r.status == 200, r
        assert len(up.requests_for("/r/%s/" % sid)) == 1
    finally:
        up.stop()


def test_unknown_sandbox_with_token_502(proxy, upstream, sid):
    r = proxy.get(sandbox_host(upstream.port, sid), "/", headers=[(TOKEN_HDR, "whatever")])
    check_error(r, 502, sandbox_id=sid)


def test_unknown_sandbox_without_token_502(proxy, upstream, sid):
    check_error(proxy.get(sandbox_host(upstream.port, sid), "/"), 502, sandbox_id=sid)


# --------------------------------------------------------------------------
# Host masking and X-Forwarded-*


def test_mask_request_host(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record(maskRequestHost="localhost:${PORT}"))
    host = sandbox_host(upstream.port, sid)
    r = proxy.get(host, "/r/%s/mask" % sid)
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.header_all("host") == ["localhost:%d" % upstream.port]
    assert rec.header_all("x-forwarded-host") == [host]


def test_mask_request_host_multiple_placeholders(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record(maskRequestHost="p${PORT}.internal:${PORT}"))
    r = proxy.get(sandbox_host(upstream.port, sid), "/r/%s/mask2" % sid)
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.header_all("host") == ["p%d.internal:%d" % (upstream.port, upstream.port)]


def test_x_forwarded_set(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    r = proxy.get(host, "/r/%s/xf" % sid)
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.header_all("x-forwarded-for") == ["127.0.0.1"]
    assert rec.header_all("x-forwarded-proto") == ["http"]
    # "X-Forwarded-Host is always the Host the client sent", mask or not.
    assert rec.header_all("x-forwarded-host") == [host]


def test_x_forwarded_client_values_replaced(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record(maskRequestHost="localhost:${PORT}"))
    host = sandbox_host(upstream.port, sid)
    r = proxy.get(host, "/r/%s/xfr" % sid, headers=[
        ("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "5.6.7.8, 9.9.9.9"),
        ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example"),
        ("x-forwarded-host", "evil2.example")])
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.header_all("x-forwarded-for") == ["127.0.0.1"], rec.headers
    assert rec.header_all("x-forwarded-proto") == ["http"], rec.headers
    assert rec.header_all("x-forwarded-host") == [host], rec.headers


def test_hop_by_hop_request_headers_removed(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    r = proxy.get(sandbox_host(upstream.port, sid), "/r/%s/hop" % sid, headers=[
        ("Connection", "keep-alive, X-Foo"), ("X-Foo", "bar"), ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"), ("TE", "trailers"), ("X-Kept", "yes")])
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    for name in ("x-foo", "keep-alive", "proxy-connection", "te"):
        assert not rec.has_header(name), (name, rec.headers)
    for v in rec.header_all("connection"):
        assert "x-foo" not in v.lower(), rec.headers
    assert rec.header("x-kept") == "yes"


def test_client_connection_close_not_forwarded(proxy, upstream, redis_server, sid):
    # Connection: close is the client's business: the upstream connection
    # stays pooled, the client's is closed after the response.
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    with proxy.connect() as c:
        r = c.request("GET", "/r/%s/close" % sid, host=host, headers=[("Connection", "close")])
        assert r.status == 200, r
        assert c.is_closed(), "client connection not closed after Connection: close"
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert "close" not in [t.strip().lower() for v in rec.header_all("connection") for t in v.split(",")]


def test_hop_by_hop_response_headers_removed(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    extra = '[["Connection", "X-Up-Hop"], ["X-Up-Hop", "1"], ["Keep-Alive", "timeout=5"], ["X-Up-Kept", "1"]]'
    with proxy.connect() as c:
        r = c.request("GET", "/r/%s/rhop" % sid, host=sandbox_host(upstream.port, sid),
                      headers=[("X-Test-Headers", extra)])
        assert r.status == 200, r
        assert r.header("x-up-hop") is None, r.headers
        assert r.header("keep-alive") is None, r.headers
        assert r.header("x-up-kept") == "1", r.headers
        # and the client connection is still usable
        assert c.request("GET", "/r/%s/rhop2" % sid, host=sandbox_host(upstream.port, sid)).status == 200


# --------------------------------------------------------------------------
# maxConnections


def release_window(fn, timeout=1.0):
    """Runs fn until it returns a 200 response or timeout. The slot of a
    finished request is released when the proxy finishes it; a request sent
    on another worker the instant the last byte arrives may race with that
    release, so the check after completion allows a short window."""
    deadline = time.monotonic() + timeout
    while True:
        r = fn()
        if r.status == 200 or time.monotonic() > deadline:
            return r
        time.sleep(0.02)


def test_max_connections_one(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record(maxConnections=1))
    host = sandbox_host(upstream.port, sid)
    hold = "hold-" + sid
    a = Client(proxy.port)
    try:
        a.send(build_request("GET", "/r/%s/a" % sid, host, [("X-Test-Hold", hold)]))
        upstream.wait_requests("/r/%s/a" % sid)
        # Several connections, so both workers are (very likely) involved.
        for i in range(8):
            with proxy.connect() as c:
                r = c.request("GET", "/r/%s/over%d" % (sid, i), host=host)
                check_error(r, 429, sandbox_id=sid, connection_limit=1)
        assert [x.target for x in upstream.requests_for("/r/%s/" % sid)] == ["/r/%s/a" % sid]
        upstream.release(hold)
        ra = a.read_response()
        assert ra.status == 200, ra
    finally:
        upstream.release(hold)
        a.close()
    r = release_window(lambda: proxy.get(host, "/r/%s/after" % sid))
    assert r.status == 200, r
    # and the slot is released again after that one: 5 more in a row
    for i in range(5):
        r = release_window(lambda: proxy.get(host, "/r/%s/after%d" % (sid, i)))
        assert r.status == 200, r


def test_max_connections_two(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record(maxConnections=2))
    host = sandbox_host(upstream.port, sid)
    hold = "hold-" + sid
    held = [Client(proxy.port) for _ in range(2)]
    try:
        for i, c in enumerate(held):
            c.send(build_request("GET", "/r/%s/held%d" % (sid, i), host, [("X-Test-Hold", hold)]))
        upstream.wait_requests("/r/%s/held" % sid, 2)
        for i in range(6):
            check_error(proxy.get(host, "/r/%s/over%d" % (sid, i)), 429, sandbox_id=sid, connection_limit=2)
        upstream.release(hold)
        for c in held:
            assert c.read_response().status == 200
    finally:
        upstream.release(hold)
        for c in held:
            c.close()
    assert release_window(lambda: proxy.get(host, "/r/%s/after" % sid)).status == 200
    assert len(upstream.requests_for("/r/%s/" % sid)) == 3


def test_max_connections_same_keepalive_connection_sequential(proxy, upstream, redis_server, sid):
    # Sequential requests on one connection never exceed a limit of 1.
    redis_server.set_record(sid, public_record(maxConnections=1))
    host = sandbox_host(upstream.port, sid)
    with proxy.connect() as c:
        for i in range(5):
            assert c.request("GET", "/r/%s/seq%d" % (sid, i), host=host).status == 200


def test_max_connections_slot_not_leaked(proxy, upstream, redis_server, sid):
    token = "tok-" + sid
    redis_server.set_record(sid, private_record(token, maxConnections=1))
    host = sandbox_host(upstream.port, sid)
    tok = [(TOKEN_HDR, token)]
    # 403s do not hold a slot
    for _ in range(3):
        check_error(proxy.get(host, "/r/%s/noauth" % sid), 403, sandbox_id=sid)
    assert proxy.get(host, "/r/%s/ok1" % sid, headers=tok).status == 200
    # an upstream reset (502) releases its slot
    r = proxy.get(host, "/r/%s/reset" % sid, headers=tok + [("X-Test-Reset", "1")])
    check_error(r, 502, sandbox_id=sid, port=upstream.port)
    assert release_window(lambda: proxy.get(host, "/r/%s/ok2" % sid, headers=tok)).status == 200
    # a client that goes away mid-request releases its slot
    hold = "hold-" + sid
    a = Client(proxy.port)
    a.send(build_request("GET", "/r/%s/gone" % sid, host, tok + [("X-Test-Hold", hold)]))
    upstream.wait_requests("/r/%s/gone" % sid)
    a.close()
    time.sleep(0.1)
    upstream.release(hold)
    r = release_window(lambda: proxy.get(host, "/r/%s/ok3" % sid, headers=tok), timeout=3.0)
    assert r.status == 200, r


def test_max_connections_per_sandbox_not_global(proxy, upstream, redis_server):
    a, b = new_sid(), new_sid()
    redis_server.set_record(a, public_record(maxConnections=1))
    redis_server.set_record(b, public_record(maxConnections=1))
    hold = "hold-" + a
    c = Client(proxy.port)
    try:
        c.send(build_request("GET", "/r/%s/held" % a, sandbox_host(upstream.port, a), [("X-Test-Hold", hold)]))
        upstream.wait_requests("/r/%s/held" % a)
        assert proxy.get(sandbox_host(upstream.port, b), "/r/%s/free" % b).status == 200
        upstream.release(hold)
        assert c.read_response().status == 200
    finally:
        upstream.release(hold)
        c.close()


# --------------------------------------------------------------------------
# Trusted proxies: a load balancer in front may pass on what it knows.


@pytest.fixture(scope="module")
def proxy_trusted(make_proxy):
    return make_proxy({"policy": {"trusted_proxies": ["127.0.0.0/8"]}}, name="trusted")


def test_trusted_peer_xff_appended(proxy_trusted, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    r = proxy_trusted.get(host, "/r/%s/trusted" % sid, headers=[
        ("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example")])
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    # As nginx's $proxy_add_x_forwarded_for: the chain plus the peer.
    xff = [a.strip() for v in rec.header_all("x-forwarded-for") for a in v.split(",")]
    assert xff == ["203.0.113.7", "127.0.0.1"], rec.headers
    # The balancer terminated TLS: its X-Forwarded-Proto is kept.
    assert rec.header_all("x-forwarded-proto") == ["https"], rec.headers
    # SPEC 5: X-Forwarded-Host is always the Host the client sent.
    assert rec.header_all("x-forwarded-host") == [host], rec.headers


def test_trusted_peer_without_headers(proxy_trusted, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    r = proxy_trusted.get(sandbox_host(upstream.port, sid), "/r/%s/trusted2" % sid)
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.header_all("x-forwarded-for") == ["127.0.0.1"], rec.headers
    assert rec.header_all("x-forwarded-proto") == ["http"], rec.headers


def test_untrusted_peer_chain_replaced(make_proxy, upstream, redis_server, sid):
    # A trusted list that does not contain the peer changes nothing.
    p = make_proxy({"policy": {"trusted_proxies": ["10.0.0.0/8", "::1"]}}, name="trusted-other")
    redis_server.set_record(sid, public_record())
    r = p.get(sandbox_host(upstream.port, sid), "/r/%s/untrusted" % sid,
              headers=[("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")])
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.header_all("x-forwarded-for") == ["127.0.0.1"], rec.headers
    assert rec.header_all("x-forwarded-proto") == ["http"], rec.headers
