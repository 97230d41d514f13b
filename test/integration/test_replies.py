"""SPEC section 6: the proxy's own responses (JSON or HTML), limits (431),
and malformed / smuggling requests (400, connection closed, nothing
forwarded)."""

import json
import time

import pytest

from harness import (JSON_CT, ConnectionClosed, build_request, check_error, new_sid, private_record,
                     public_record, sandbox_host)

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
NAV_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


@pytest.mark.parametrize("headers,html", [
    ([("User-Agent", "curl/8.5.0"), ("Accept", "*/*")], False),
    ([], False),                                                    # no User-Agent
    ([("User-Agent", "python-requests/2.31")], False),
    ([("User-Agent", BROWSER), ("Accept", NAV_ACCEPT), ("Sec-Fetch-Mode", "navigate")], True),
    ([("User-Agent", BROWSER), ("Accept", NAV_ACCEPT)], True),
    ([("User-Agent", FIREFOX)], True),                              # browser, asks nothing
    ([("User-Agent", BROWSER), ("Accept", "application/json")], False),
    ([("User-Agent", BROWSER), ("accept", "APPLICATION/JSON")], False),
    ([("User-Agent", BROWSER), ("Accept", "application/json, text/plain, */*")], False),
    ([("User-Agent", BROWSER), ("Accept", "application/json, text/html")], True),
    ([("User-Agent", BROWSER), ("Accept", NAV_ACCEPT), ("Sec-Fetch-Mode", "cors")], False),
    ([("User-Agent", BROWSER), ("Accept", NAV_ACCEPT), ("Sec-Fetch-Mode", "no-cors")], False),
    ([("User-Agent", BROWSER), ("Accept", NAV_ACCEPT), ("Sec-Fetch-Mode", "same-origin")], False),
    ([("User-Agent", BROWSER), ("Accept", NAV_ACCEPT), ("Sec-Fetch-Mode", "websocket")], False),
    ([("User-Agent", BROWSER), ("Accept", NAV_ACCEPT), ("Sec-Fetch-Mode", "CORS")], False),
    ([("User-Agent", BROWSER), ("Accept", NAV_ACCEPT), ("X-Requested-With", "XMLHttpRequest")], False),
    ([("User-Agent", BROWSER), ("Accept", NAV_ACCEPT), ("X-Requested-With", "XMLHttpRequest"),
      ("Sec-Fetch-Mode", "navigate")], True),
])
def test_negotiation(proxy, upstream, headers, html):
    sid = new_sid()
    r = proxy.get(sandbox_host(upstream.port, sid), "/", headers=headers)
    assert r.status == 502, r
    assert r.header("access-control-allow-origin") == "*", r
    if html:
        assert r.header("content-type") == "text/html; charset=utf-8", r
        assert sid in r.text, r
        assert "<html" in r.text.lower(), r
    else:
        check_error(r, 502, sandbox_id=sid)


def test_json_content_type_exact(proxy, upstream):
    r = proxy.get(sandbox_host(upstream.port, new_sid()), "/")
    assert r.header_all("content-type") == [JSON_CT], r
    assert int(r.header("content-length")) == len(r.body)
    json.loads(r.body)


def test_html_escapes_host(proxy):
    # A hostile Host is echoed (if at all) escaped.
    r = proxy.get("<script>alert(1)</script>.sandbox.test", "/",
                  headers=[("User-Agent", BROWSER), ("Accept", NAV_ACCEPT)])
    assert r.status == 400, r
    assert r.header("access-control-allow-origin") == "*"
    assert b"<script>alert" not in r.body, r.body


def test_every_proxy_response_has_acao(proxy, upstream, redis_server):
    # check_error asserts Access-Control-Allow-Origin: * (used for every
    # proxy-made status across the suite: 400/403/414/429/431/502/503/504);
    # here the HTML flavours too.
    priv = new_sid()
    redis_server.set_record(priv, private_record("t"))
    browser = [("User-Agent", BROWSER), ("Accept", NAV_ACCEPT)]
    for host, status in (("bad", 400), (sandbox_host(upstream.port, priv), 403),
                         (sandbox_host(upstream.port, new_sid()), 502)):
        r = proxy.get(host, "/")
        assert r.status == status and r.header("access-control-allow-origin") == "*", r
        r = proxy.get(host, "/", headers=browser)
        assert r.status == status and r.header("access-control-allow-origin") == "*", r
        assert r.header("content-type") == "text/html; charset=utf-8", r


def test_head_error_has_no_body(proxy, upstream):
    sid = new_sid()
    with proxy.connect() as c:
        c.send(build_request("HEAD", "/", sandbox_host(upstream.port, sid)))
        r = c.read_response(head=True)
        assert r.status == 502, r
        assert r.header("access-control-allow-origin") == "*"
        # No body bytes follow (the connection stays quiet or closes).
        assert c.buf == b""
        c.is_closed(timeout=0.3)  # raises if any bytes arrive


def test_routing_errors_keep_connection_alive(proxy, upstream, redis_server, sid):
    # nginx and HAProxy keep the connection after a 403/502 they generate:
    # the request was well framed, so there is no reason to close it.
    redis_server.set_record(sid, private_record("tok"))
    host = sandbox_host(upstream.port, sid)
    with proxy.connect() as c:
        check_error(c.request("GET", "/", host=host), 403, sandbox_id=sid)
        other = new_sid()
        check_error(c.request("GET", "/", host=sandbox_host(upstream.port, other)), 502, sandbox_id=other)
        r = c.request("GET", "/r/%s/ok" % sid, host=host, headers=[("e2b-traffic-access-token", "tok")])
        assert r.status == 200, r


def test_rejected_request_body_is_not_a_request(proxy, upstream, redis_server, sid):
    # A request refused before forwarding (unknown sandbox) may carry a body
    # that looks like a request: it must never be parsed as one.
    redis_server.set_record(sid, public_record())
    inner = build_request("GET", "/r/%s/smuggled" % sid, sandbox_host(upstream.port, sid))
    with proxy.connect() as c:
        c.send(build_request("POST", "/", sandbox_host(upstream.port, new_sid()), body=inner))
        r = c.read_response()
        assert r.status == 502, r
        try:
            c.send(build_request("GET", "/r/%s/next" % sid, sandbox_host(upstream.port, sid)))
            r2 = c.read_response()
            assert r2.status == 200 and r2.json()["target"] == "/r/%s/next" % sid, r2
        except (ConnectionClosed, BrokenPipeError, ConnectionResetError):
            pass  # closing instead of draining the body is fine too
    time.sleep(0.1)
    assert upstream.requests_for("/r/%s/smuggled" % sid) == []


# --------------------------------------------------------------------------
# Limits


def test_head_over_limit_431(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    with proxy.connect() as c:
        c.send(build_request("GET", "/r/%s/big" % sid, sandbox_host(upstream.port, sid),
                             [("X-Big", "a" * 17000)]))
        r = c.read_response()
    check_error(r, 431)
    assert upstream.requests_for("/r/%s/" % sid) == []


def test_head_spread_over_many_headers_431(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    hdrs = [("X-H%02d" % i, "b" * 300) for i in range(60)]  # ~19 KB, 60 headers
    with proxy.connect() as c:
        c.send(build_request("GET", "/r/%s/big2" % sid, sandbox_host(upstream.port, sid), hdrs))
        r = c.read_response()
    check_error(r, 431)
    assert upstream.requests_for("/r/%s/" % sid) == []


def test_too_many_headers_431(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    hdrs = [("X-N%d" % i, "1") for i in range(150)]  # client.max_headers is 100
    with proxy.connect() as c:
        c.send(build_request("GET", "/r/%s/many" % sid, sandbox_host(upstream.port, sid), hdrs))
        r = c.read_response()
    check_error(r, 431)
    assert upstream.requests_for("/r/%s/" % sid) == []


def test_head_under_limit_passes(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    r = proxy.get(sandbox_host(upstream.port, sid), "/r/%s/ok" % sid, headers=[("X-Big", "a" * 12000)])
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.header("x-big") == "a" * 12000


def test_request_line_over_limit_414(proxy, upstream, redis_server, sid):
    # client.max_request_line (8192): 414 URI Too Long, as nginx answers.
    redis_server.set_record(sid, public_record())
    with proxy.connect() as c:
        c.send(build_request("GET", "/r/%s/" % sid + "u" * 9000, sandbox_host(upstream.port, sid)))
        r = c.read_response()
    check_error(r, 414)
    assert upstream.requests_for("/r/%s/" % sid) == []


# --------------------------------------------------------------------------
# Malformed requests and smuggling: 400, connection closed, nothing forwarded

SMUGGLE_CASES = {
    "cl_and_te": "POST /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nContent-Length: {n}\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{inner}",
    "te_and_cl": "POST /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
                 "Content-Length: {n}\r\n\r\n0\r\n\r\n{inner}",
    "two_cl": "POST /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n"
              "Content-Length: {n}\r\n\r\nhello{inner}",
    "cl_list": "POST /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5, {n}\r\n\r\nhello{inner}",
    "cl_sign": "POST /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nContent-Length: +5\r\n\r\nhello{inner}",
    "cl_space_before_colon": "POST /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nContent-Length : 5\r\n\r\nhello{inner}",
    "te_space_before_colon": "POST /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding : chunked\r\n"
                             "\r\n0\r\n\r\n{inner}",
    "bad_chunk_size": "POST /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "zz\r\nhello\r\n0\r\n\r\n{inner}",
    "chunk_size_overflow": "POST /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "ffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n{inner}",
    "chunk_size_negative": "POST /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "-5\r\nhello\r\n0\r\n\r\n{inner}",
    "chunk_no_crlf": "POST /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhelloXX0\r\n\r\n{inner}",
    "te_not_chunked_last": "POST /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked, identity\r\n"
                           "\r\n0\r\n\r\n{inner}",
    "obs_fold": "POST /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n"
                " 0\r\n\r\nhello{inner}",
    "header_no_colon": "GET /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nNoColonHere\r\n\r\n{inner}",
    "bare_lf_garbage": "GET /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nX: a\rb\r\n\r\n{inner}",
    "bad_request_line": "GARBAGE\r\nHost: {host}\r\n\r\n{inner}",
    "bad_version": "GET /r/{sid}/front HTTP/1.x\r\nHost: {host}\r\n\r\n{inner}",
    # Found by the http_head fuzzer: llhttp 8.1 lets these through.
    "te_not_chunked": "POST /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: gzip\r\n"
                      "\r\n{inner}",
    "te_empty_with_cl": "POST /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding:\r\n"
                        "Content-Length: {n}\r\n\r\nhello{inner}",
    "empty_header_name": "GET /r/{sid}/front HTTP/1.1\r\nHost: {host}\r\n:Transfer-Encoding: chunked\r\n"
                         "\r\n{inner}",
    "http09_with_headers": "GET /r/{sid}/front\nHost: {host}\r\n\r\n{inner}",
    # RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
    "te_in_http10": "POST /r/{sid}/front HTTP/1.0\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
                    "\r\n0\r\n\r\n{inner}",
}


@pytest.mark.parametrize("case", sorted(SMUGGLE_CASES))
def test_malformed_or_smuggling_400_and_close(proxy, upstream, redis_server, sid, case):
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    inner = "GET /r/%s/smuggled HTTP/1.1\r\nHost: %s\r\n\r\n" % (sid, host)
    raw = SMUGGLE_CASES[case].format(sid=sid, host=host, inner=inner, n=len(inner) + 5)
    with proxy.connect() as c:
        c.send(raw.encode())
        r = c.read_response()
        check_error(r, 400)
        assert c.is_closed(timeout=2.0), "connection left open after %s" % case
    time.sleep(0.1)
    assert upstream.requests_for("/r/%s/smuggled" % sid) == [], upstream.requests_for(sid)
    # The front request never completed upstream either.
    assert upstream.requests_for("/r/%s/front" % sid) == []


def test_odd_chunked_spelling_goes_upstream_canonical(proxy, upstream, redis_server, sid):
    """A Transfer-Encoding llhttp reads as chunked but spelled oddly (here a
    no-break space, found by the request-path fuzzer) reaches the upstream as
    plain "chunked", so both sides frame the body the same way."""
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    raw = (b"POST /r/%s/odd HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding:\xa0 chunked\r\n\r\n"
           b"5\r\nhello\r\n0\r\n\r\n" % (sid.encode(), host.encode()))
    with proxy.connect() as c:
        c.send(raw)
        r = c.read_response()
    got = upstream.requests_for("/r/%s/odd" % sid)
    if r.status == 400:  # refusing it is as good
        assert got == []
        return
    assert r.status == 200, r
    (rec,) = got
    assert rec.header_all("transfer-encoding") == ["chunked"], rec
    assert rec.body == b"hello"
