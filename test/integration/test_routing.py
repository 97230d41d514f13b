"""SPEC sections 4-6: Host parsing, lookup outcomes, and the 4xx/5xx the
proxy makes for them. Each test asserts what the client got and, when a
request should reach the upstream, what the upstream received."""

import re

import pytest

from harness import DOMAIN, check_error, free_port, new_sid, public_record, sandbox_host


def test_get_reaches_upstream(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    r = proxy.get(host, "/r/%s/path?q=1&x=%%20" % sid, headers=[("X-Custom", "v1")])
    assert r.status == 200, r
    echo = r.json()
    assert echo["method"] == "GET" and echo["target"] == "/r/%s/path?q=1&x=%%20" % sid
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.method == "GET"
    assert rec.target == "/r/%s/path?q=1&x=%%20" % sid
    assert rec.version == "HTTP/1.1"
    assert rec.header("host") == host  # no maskRequestHost: Host goes as sent
    assert rec.header_all("x-custom") == ["v1"]
    assert rec.body == b""
    assert r.header("x-upstream-conn") == str(rec.conn_id)


def test_post_body_reaches_upstream(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    body = b'{"hello": "world", "n": 1}'
    r = proxy.request("POST", "/r/%s/post" % sid, host=sandbox_host(upstream.port, sid),
                      headers=[("Content-Type", "application/json")], body=body)
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.method == "POST" and rec.body == body
    assert rec.header("content-type") == "application/json"


@pytest.mark.parametrize("methods", [["PUT", "DELETE", "PATCH", "OPTIONS"]])
def test_other_methods(proxy, upstream, redis_server, sid, methods):
    redis_server.set_record(sid, public_record())
    with proxy.connect() as c:
        for m in methods:
            r = c.request(m, "/r/%s/%s" % (sid, m), host=sandbox_host(upstream.port, sid),
                          body=b"x" if m in ("PUT", "PATCH") else None)
            assert r.status == 200, (m, r)
    got = [(rec.method, rec.target) for rec in upstream.requests_for("/r/%s/" % sid)]
    assert got == [(m, "/r/%s/%s" % (sid, m)) for m in methods]


@pytest.mark.parametrize("fmt", [
    "{port}-{SID}.SANDBOX.TEST",          # case-insensitive, id lower-cased
    "{port}-{sid}.Sandbox.Test",
    "{port}-{sid}.sandbox.test.",         # trailing dot
    "{port}-{sid}.sandbox.test:8080",     # :port ignored
    "{port}-{sid}.sandbox.test.:443",
    "{port}-{sid}-anything.sandbox.test",  # suffix after the id
    "{port}-{sid}-x-y-z.sandbox.test",
    "0{port}-{sid}.sandbox.test",         # leading zero (value still fits)
])
def test_host_forms(proxy, upstream, redis_server, sid, fmt):
    redis_server.set_record(sid, public_record())
    host = fmt.format(port=upstream.port, sid=sid, SID=sid.upper())
    r = proxy.get(host, "/r/%s/hf" % sid)
    assert r.status == 200, (host, r)
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.target == "/r/%s/hf" % sid


def test_absolute_form_wins_over_host(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    other = new_sid()  # not in Redis: routing by Host would give 502
    authority = sandbox_host(upstream.port, sid)
    with proxy.connect() as c:
        r = c.request("GET", "http://%s/r/%s/abs?x=1" % (authority, sid),
                      host=sandbox_host(upstream.port, other))
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    # Forwarded to the origin in origin-form (RFC 9112 3.2.1), and Host is
    # the target's authority (RFC 9112 3.2.2: the recipient ignores Host).
    assert rec.target == "/r/%s/abs?x=1" % sid
    assert rec.header("host") == authority


def test_absolute_form_routes_even_with_foreign_host(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    with proxy.connect() as c:
        r = c.request("GET", "http://%s/r/%s/abs2" % (sandbox_host(upstream.port, sid), sid),
                      host="www.example.com")
    assert r.status == 200, r
    assert len(upstream.requests_for("/r/%s/" % sid)) == 1


def test_sandbox_host_with_headers(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    with proxy.connect() as c:
        for i in range(2):
            r = c.request("GET", "/r/%s/hdr%d" % (sid, i), host="sandbox." + DOMAIN,
                          headers=[("e2b-sandbox-id", sid), ("e2b-sandbox-port", str(upstream.port))])
            assert r.status == 200, r
    recs = upstream.requests_for("/r/%s/" % sid)
    assert [x.target for x in recs] == ["/r/%s/hdr0" % sid, "/r/%s/hdr1" % sid]


def test_sandbox_host_headers_one_connection_many_sandboxes(proxy, upstream, redis_server):
    a, b = new_sid(), new_sid()
    redis_server.set_record(a, public_record())
    redis_server.set_record(b, public_record())
    with proxy.connect() as c:
        for s in (a, b, a):
            r = c.request("GET", "/r/%s/multi" % s, host="sandbox." + DOMAIN,
                          headers=[("e2b-sandbox-id", s), ("e2b-sandbox-port", str(upstream.port))])
            assert r.status == 200, r
    assert len(upstream.requests_for("/r/%s/" % a)) == 2
    assert len(upstream.requests_for("/r/%s/" % b)) == 1


@pytest.mark.parametrize("headers", [
    [],
    [("e2b-sandbox-id", "{sid}")],
    [("e2b-sandbox-port", "{port}")],
    [("e2b-sandbox-id", "{sid}"), ("e2b-sandbox-port", "0")],
    [("e2b-sandbox-id", "{sid}"), ("e2b-sandbox-port", "abc")],
    [("e2b-sandbox-id", "{sid}"), ("e2b-sandbox-port", "70000")],
    [("e2b-sandbox-id", "ab_c"), ("e2b-sandbox-port", "{port}")],
])
def test_sandbox_host_bad_headers(proxy, upstream, redis_server, sid, headers):
    redis_server.set_record(sid, public_record())
    hdrs = [(k, v.format(sid=sid, port=upstream.port)) for k, v in headers]
    r = proxy.get("sandbox." + DOMAIN, "/r/%s/bad" % sid, headers=hdrs)
    check_error(r, 400)
    assert upstream.requests_for("/r/%s/" % sid) == []


@pytest.mark.parametrize("fmt", [
    "",                                   # empty Host
    "sandbox.test",                       # the bare domain
    "nodash.sandbox.test",                # no <port>-<id>
    "{port}.sandbox.test",
    "{port}-.sandbox.test",               # empty id
    "-{sid}.sandbox.test",                # empty port
    "{port}-{sid}.other.test",            # foreign domain
    "{port}-{sid}.sandbox.test.evil.com",
    "{port}-{sid}.notsandbox.test",
    "{port}-ab_c.sandbox.test",           # bad sandbox id
    "3000-ab_c.sandbox.test",
    "{port}-{sid}!.sandbox.test",
    "{port}-{sid}.sandbox.test:abc",      # bad :port suffix
    "0-{sid}.sandbox.test",               # port out of range
    "65536-{sid}.sandbox.test",
    "99999-{sid}.sandbox.test",
    "123456789012-{sid}.sandbox.test",
    "abc-{sid}.sandbox.test",             # port not numeric
    "+80-{sid}.sandbox.test",
    "0x50-{sid}.sandbox.test",
    "{port}-{sid}..sandbox.test",
    "[::1]:8080",                         # IP literals
    "127.0.0.1:8080",
    "{port}-{sid}.sandbox.test:8080:80",
    "{port}-{sid}.sandbox.test/x",
    "{port} -{sid}.sandbox.test",
])
def test_bad_host_is_400(proxy, upstream, redis_server, sid, fmt):
    redis_server.set_record(sid, public_record())
    host = fmt.format(port=upstream.port, sid=sid)
    r = proxy.get(host, "/r/%s/badhost" % sid)
    check_error(r, 400)
    assert upstream.requests_for("/r/%s/" % sid) == []


def test_long_sandbox_id_is_400(proxy, upstream):
    r = proxy.get(sandbox_host(upstream.port, "a" * 70), "/")
    check_error(r, 400)


def test_missing_host_http11_is_400(proxy, upstream, sid):
    with proxy.connect() as c:
        c.send(b"GET /r/%s/nohost HTTP/1.1\r\nUser-Agent: t\r\n\r\n" % sid.encode())
        r = c.read_response()
    check_error(r, 400)
    assert upstream.requests_for("/r/%s/" % sid) == []


def test_two_host_headers_is_400(proxy, upstream, redis_server, sid):
    # RFC 9112 3.2: more than one Host is a 400.
    redis_server.set_record(sid, public_record())
    h = sandbox_host(upstream.port, sid)
    r = proxy.get(h, "/r/%s/twohost" % sid, headers=[("Host", h)])
    check_error(r, 400)
    assert upstream.requests_for("/r/%s/" % sid) == []


def test_unknown_sandbox_502(proxy, upstream, sid):
    r = proxy.get(sandbox_host(upstream.port, sid), "/r/%s/unknown" % sid)
    check_error(r, 502, sandbox_id=sid)
    assert upstream.requests_for("/r/%s/" % sid) == []


def test_unknown_sandbox_id_is_lowercased(proxy, upstream, sid):
    r = proxy.get(sandbox_host(upstream.port, sid.upper()), "/")
    check_error(r, 502, sandbox_id=sid)


@pytest.mark.parametrize("record", [
    "not json",
    "{\"address\": ",
    "[]",
    "{}",
    "{\"allowPublicTraffic\": true}",            # no address
    "{\"address\": \"not-an-ip\"}",
    "{\"address\": \"127.0.0.1:80\"}",
    "{\"address\": 12345}",
    "{\"address\": \"127.0.0.1\", \"allowPublicTraffic\": false}",  # private, no token
])
def test_broken_record_502(proxy, upstream, redis_server, record):
    sid = new_sid()
    unknown = proxy.get(sandbox_host(upstream.port, new_sid()), "/").json()
    redis_server.set_record(sid, record)
    r = proxy.get(sandbox_host(upstream.port, sid), "/r/%s/broken" % sid)
    body = check_error(r, 502, sandbox_id=sid)
    # "a message saying so": a broken record is not reported as a missing one.
    assert body["message"] != unknown["message"], (body, unknown)
    assert upstream.requests_for("/r/%s/" % sid) == []
    # Still alive and routing.
    assert proxy.alive()
    assert proxy.admin("/healthz").status == 200
    good = new_sid()
    redis_server.set_record(good, public_record())
    assert proxy.get(sandbox_host(upstream.port, good), "/r/%s/ok" % good).status == 200


def test_ipv6_loopback_address(proxy, redis_server, sid):
    # "address" may be an IPv6 literal.
    from upstreams import EchoUpstream
    try:
        up6 = EchoUpstream(host="::1")
    except OSError as e:
        pytest.skip("no IPv6 loopback: %s" % e)
    try:
        redis_server.set_record(sid, public_record(address="::1"))
        r = proxy.get(sandbox_host(up6.port, sid), "/r/%s/v6" % sid)
        assert r.status == 200, r
        assert len(up6.requests_for("/r/%s/" % sid)) == 1
    finally:
        up6.stop()


@pytest.fixture(scope="module")
def proxy_no_redis(make_proxy):
    # Redis "url" points at a port nothing listens on.
    return make_proxy({"redis": {"url": "redis://127.0.0.1:%d/0" % free_port()}}, name="noredis")


def test_redis_unreachable_503(proxy_no_redis, upstream, sid):
    r = proxy_no_redis.get(sandbox_host(upstream.port, sid), "/r/%s/noredis" % sid)
    check_error(r, 503, sandbox_id=sid)
    ra = r.header("retry-after")
    assert ra is not None and re.fullmatch(r"\d+", ra), r
    assert upstream.requests_for("/r/%s/" % sid) == []
    # Host errors do not need Redis: still 400, not 503.
    check_error(proxy_no_redis.get("bad.sandbox.test", "/"), 400)
    assert proxy_no_redis.admin("/healthz").status == 200


def test_empty_domain_list_accepts_any_suffix(make_proxy, upstream, redis_server, sid):
    p = make_proxy({"domains": []}, name="anydomain")
    redis_server.set_record(sid, public_record())
    for suffix in ("sandbox.test", "example.com", "a.b.c.example"):
        r = p.get("%d-%s.%s" % (upstream.port, sid, suffix), "/r/%s/%s" % (sid, suffix))
        assert r.status == 200, (suffix, r)
    assert len(upstream.requests_for("/r/%s/" % sid)) == 3
    check_error(p.get("nodash.example.com", "/"), 400)
