"""SPEC section 8: HTTP/2 to clients. Front-end selection (ALPN h2 on TLS,
the preface on plain listeners), every rule of sections 4-6 per stream,
the translation to the HTTP/1.1 upstream and back, flow control tied to
the upstream, with python3-h2, curl and nghttp as clients."""

import json
import socket
import ssl
import subprocess
import threading
import time

import pytest
from hyperframe.frame import (ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame, PingFrame,
                              PriorityFrame, PushPromiseFrame, RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)

from h2client import (CANCEL, INTERNAL_ERROR, NO_ERROR, PREFACE, PROTOCOL_ERROR, H2Client, RawH2,
                      tls_context)
from harness import (DOMAIN, Client, build_request, make_cert, new_sid, private_record,
                     public_record, sandbox_host, wait_until)


@pytest.fixture(scope="module")
def certs(workdir):
    d = workdir / "tls"
    d.mkdir(exist_ok=True)
    return {"a": make_cert(d, "a", "sandbox.test"), "b": make_cert(d, "b", "sandbox2.test")}


@pytest.fixture(scope="module")
def proxy(make_proxy, certs):
    # extra_ports: [0] TLS (a is the default), [1] plain without HTTP/2,
    # [2] TLS without HTTP/2.
    return make_proxy({"domains": ["sandbox.test", "sandbox2.test"]}, extra_listeners=[
        {"tls": {"certificates": [certs["a"], certs["b"]]}},
        {"http2": False},
        {"tls": {"certificates": [certs["a"]]}, "http2": False},
    ])


@pytest.fixture
def routed(redis_server, upstream, sid):
    redis_server.set_record(sid, public_record())
    return sid, sandbox_host(upstream.port, sid)


def tls_h2(proxy, certs, server_name, port_index=0, alpn=("h2", "http/1.1")):
    ctx = tls_context([certs["a"]["cert"], certs["b"]["cert"]], alpn)
    return H2Client(proxy.extra_ports[port_index], ctx=ctx, server_name=server_name)


def upstream_request(upstream, marker):
    (rec,) = upstream.wait_requests(marker)
    return rec


def error_body(r, status, **fields):
    """A proxy reply (SPEC section 6) over HTTP/2."""
    assert r.status == status, r
    assert r.ended and r.reset is None, r
    assert r.header("content-type") == "application/json; charset=utf-8", r
    assert r.header("access-control-allow-origin") == "*", r
    assert int(r.header("content-length")) == len(r.body), r
    body = r.json()
    assert body["code"] == status, body
    for k, v in fields.items():
        assert body[k] == v, body
    return body


# --------------------------------------------------------------------------
# Front-end selection


def test_prior_knowledge_on_plain_listener(proxy, upstream, routed):
    sid, host = routed
    with H2Client(proxy.port) as c:
        r = c.get(host, "/r/%s/pk?q=1" % sid, headers=[("user-agent", "h2test")])
        assert r.status == 200 and r.ended, r
        assert r.header("x-upstream-conn") is not None
        # no connection-specific field reaches an HTTP/2 client
        assert not {"connection", "keep-alive", "transfer-encoding"} & {k for k, _ in r.headers}
        assert r.json()["target"] == "/r/%s/pk?q=1" % sid
    rec = upstream_request(upstream, "/r/%s/pk" % sid)
    assert rec.version == "HTTP/1.1" and rec.method == "GET"
    assert rec.header_all("host") == [host]
    assert rec.header_all("x-forwarded-proto") == ["http"]
    assert rec.header_all("x-forwarded-host") == [host]
    assert rec.header_all("x-forwarded-for") == ["127.0.0.1"]
    assert rec.header_all("user-agent") == ["h2test"]
    assert not rec.has_header("transfer-encoding") and not rec.has_header("content-length")


def test_http1_still_served_beside_http2(proxy, upstream, routed):
    sid, host = routed
    assert proxy.get(host, "/r/%s/h1" % sid).status == 200
    # a preface in pieces is waited for, then served as HTTP/2
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.sendall(PREFACE[:5])
    time.sleep(0.1)
    s.sendall(PREFACE[5:17])
    time.sleep(0.1)
    with RawH2(proxy.port, preface=False, sock=s) as raw:
        raw.send(PREFACE[17:], SettingsFrame(0))
        raw.send(raw.headers(1, [(":method", "GET"), (":path", "/r/%s/pieces" % sid),
                                 (":scheme", "http"), (":authority", host)]))
        status, _, body, ended, _ = raw.response(1)
        assert status == 200 and ended
    assert upstream.requests_for("/r/%s/pieces" % sid)


def test_preface_on_listener_without_http2_is_http1(proxy, upstream, routed):
    sid, host = routed
    with Client(proxy.extra_ports[1]) as c:
        c.send(PREFACE)
        r = c.read_response()
        assert r.status == 400, r  # "PRI * HTTP/2.0" taken as HTTP/1.x and refused
    # HTTP/1.1 there still works
    with Client(proxy.extra_ports[1]) as c:
        assert c.request("GET", "/r/%s/noh2" % sid, host=host).status == 200


def test_alpn_h2_on_tls(proxy, certs, upstream, routed):
    sid, host = routed
    with tls_h2(proxy, certs, host) as c:
        assert c.alpn == "h2"
        r = c.get(host, "/r/%s/tls" % sid)
        assert r.status == 200, r
    rec = upstream_request(upstream, "/r/%s/tls" % sid)
    assert rec.header_all("x-forwarded-proto") == ["https"]
    # a client that offers only http/1.1 still gets it
    ctx = tls_context([certs["a"]["cert"]], ("http/1.1",))
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", proxy.extra_ports[0])), server_hostname=host)
    assert s.selected_alpn_protocol() == "http/1.1"
    with Client(sock=s) as c:
        assert c.request("GET", "/r/%s/tls-h1" % sid, host=host).status == 200


def test_tls_listener_without_http2_offers_http11_only(proxy, certs, upstream, routed):
    sid, host = routed
    ctx = tls_context([certs["a"]["cert"]], ("h2", "http/1.1"))
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", proxy.extra_ports[2])), server_hostname=host)
    assert s.selected_alpn_protocol() == "http/1.1"
    with Client(sock=s) as c:
        assert c.request("GET", "/r/%s/tls-noh2" % sid, host=host).status == 200


def test_curl_http2(proxy, certs, upstream, routed):
    sid, host = routed
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                          "-H", "Host: " + host, "http://127.0.0.1:%d/r/%s/curl-pk" % (proxy.port, sid)],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout == "2 200", out
    url = "https://%s:%d/r/%s/curl-tls" % (host, proxy.extra_ports[0], sid)
    out = subprocess.run(["curl", "-s", "--http2", "--cacert", certs["a"]["cert"], "--resolve",
                          "%s:%d:127.0.0.1" % (host, proxy.extra_ports[0]), "-o", "/dev/null",
                          "-w", "%{http_version} %{http_code}", url],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout == "2 200", out
    # curl --http2 on a plain URL upgrades (h2c Upgrade): not offered, HTTP/1.1 answers
    out = subprocess.run(["curl", "-s", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                          "-H", "Host: " + host, "http://127.0.0.1:%d/r/%s/curl-up" % (proxy.port, sid)],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout == "1.1 200", out
    rec = upstream_request(upstream, "/r/%s/curl-up" % sid)
    assert not rec.has_header("upgrade") and not rec.has_header("http2-settings"), rec
    assert not rec.has_header("connection"), rec


def test_nghttp_several_streams(proxy, upstream, routed):
    sid, host = routed
    urls = ["http://127.0.0.1:%d/r/%s/ng%d" % (proxy.port, sid, i) for i in range(4)]
    out = subprocess.run(["nghttp", "-n", "-s", "-H", ":authority: " + host] + urls,
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out
    recs = upstream.wait_requests("/r/%s/ng" % sid, 4)
    assert sorted(r.target for r in recs) == sorted(u.split(str(proxy.port))[1] for u in urls)


# --------------------------------------------------------------------------
# Sections 4-6 per stream


def test_two_sandboxes_one_connection(proxy, redis_server, upstream):
    a, b = new_sid(), new_sid()
    redis_server.set_record(a, public_record())
    redis_server.set_record(b, public_record())
    ha, hb = sandbox_host(upstream.port, a), sandbox_host(upstream.port, b)
    with H2Client(proxy.port) as c:
        s1 = c.request("GET", "/r/%s/two" % a, ha, [("x-test-delay-ms", "200")])
        s2 = c.request("GET", "/r/%s/two" % b, hb)
        r2 = c.wait(s2)
        assert r2.status == 200 and not c.results[s1].done, "the second stream waited for the first"
        r1 = c.wait(s1)
        assert r1.status == 200
    assert upstream_request(upstream, "/r/%s/two" % a).header_all("host") == [ha]
    assert upstream_request(upstream, "/r/%s/two" % b).header_all("host") == [hb]


def test_unknown_sandbox_does_not_disturb_siblings(proxy, upstream, routed):
    sid, host = routed
    other = new_sid()
    with H2Client(proxy.port) as c:
        s1 = c.request("GET", "/r/%s/sib1" % sid, host, [("x-test-delay-ms", "100")])
        s2 = c.request("GET", "/", sandbox_host(upstream.port, other))
        s3 = c.request("GET", "/", "bad.sandbox.test")
        error_body(c.wait(s2), 502, sandboxId=other)
        error_body(c.wait(s3), 400)
        assert c.wait(s1).status == 200
        assert c.get(host, "/r/%s/sib2" % sid).status == 200  # the connection goes on
        assert c.goaway is None


def test_token_per_stream(proxy, redis_server, upstream, sid):
    redis_server.set_record(sid, private_record("s3cret"))
    host = sandbox_host(upstream.port, sid)
    with H2Client(proxy.port) as c:
        s1 = c.request("GET", "/r/%s/tok1" % sid, host)
        s2 = c.request("GET", "/r/%s/tok2" % sid, host, [("e2b-traffic-access-token", "s3cret")])
        s3 = c.request("GET", "/r/%s/tok3" % sid, host, [("e2b-traffic-access-token", "wrong")])
        error_body(c.wait(s1), 403, sandboxId=sid)
        assert c.wait(s2).status == 200
        error_body(c.wait(s3), 403, sandboxId=sid)
    (rec,) = upstream.requests_for("/r/%s/tok" % sid)
    assert rec.target.endswith("tok2") and not rec.has_header("e2b-traffic-access-token")


def test_sandbox_headers_host(proxy, redis_server, upstream, sid):
    redis_server.set_record(sid, public_record(maskRequestHost="localhost:${PORT}"))
    with H2Client(proxy.port) as c:
        r = c.get("sandbox." + DOMAIN, "/r/%s/hdrs" % sid,
                  [("e2b-sandbox-id", sid), ("e2b-sandbox-port", str(upstream.port))])
        assert r.status == 200, r
        r = c.get("sandbox." + DOMAIN, "/r/%s/hdrs-bad" % sid, [("e2b-sandbox-id", sid)])
        error_body(r, 400)
    rec = upstream_request(upstream, "/r/%s/hdrs" % sid)
    assert rec.header_all("host") == ["localhost:%d" % upstream.port]
    assert rec.header_all("x-forwarded-host") == ["sandbox." + DOMAIN]


def test_host_must_match_authority(proxy, upstream, routed):
    sid, host = routed
    with H2Client(proxy.port) as c:
        r = c.get(host, "/r/%s/hostdiff" % sid, [("host", "other.sandbox.test")])
        error_body(r, 400)
        r = c.get(host, "/r/%s/hostsame" % sid, [("host", host.upper())])
        assert r.status == 200, r
        # no :authority at all: Host names the target (RFC 9113 section 8.3.1)
        sid2 = c.request("GET", "/r/%s/hostonly" % sid, None, [("host", host)])
        assert c.wait(sid2).status == 200
    assert not upstream.requests_for("/r/%s/hostdiff" % sid)
    assert upstream_request(upstream, "/r/%s/hostsame" % sid).header_all("host") == [host]


def test_misdirected_request_421(proxy, certs, redis_server, upstream, sid):
    redis_server.set_record(sid, public_record())
    h1 = sandbox_host(upstream.port, sid, "sandbox.test")
    h2 = sandbox_host(upstream.port, sid, "sandbox2.test")
    with tls_h2(proxy, certs, h1) as c:  # certificate a: *.sandbox.test
        r = c.get(h2, "/r/%s/misdirected" % sid)
        error_body(r, 421)
        other = sandbox_host(upstream.port, new_sid(), "sandbox.test")
        assert c.get(h1, "/r/%s/covered" % sid).status == 200
        error_body(c.get(other, "/"), 502)  # covered: routed (and unknown)
    with tls_h2(proxy, certs, h2) as c:  # SNI picks certificate b
        assert c.get(h2, "/r/%s/covered-b" % sid).status == 200
    assert not upstream.requests_for("/r/%s/misdirected" % sid)


def test_cookies_joined(proxy, upstream, routed):
    sid, host = routed
    with H2Client(proxy.port) as c:
        r = c.get(host, "/r/%s/cookies" % sid, [("cookie", "a=1"), ("x-other", "y"), ("cookie", "b=2"),
                                                  ("cookie", "c=3")])
        assert r.status == 200
    rec = upstream_request(upstream, "/r/%s/cookies" % sid)
    assert rec.header_all("cookie") == ["a=1; b=2; c=3"], rec


@pytest.mark.parametrize("field", [("connection", "keep-alive"), ("keep-alive", "timeout=5"),
                                   ("proxy-connection", "x"), ("transfer-encoding", "chunked"),
                                   ("upgrade", "websocket"), ("te", "gzip")])
def test_connection_specific_fields_refused(proxy, upstream, routed, field):
    sid, host = routed
    with H2Client(proxy.port) as c:
        bad = c.request("GET", "/r/%s/connspec" % sid, host, [field])
        ok = c.request("GET", "/r/%s/connspec-ok" % sid, host, [("te", "trailers")])
        assert c.wait(bad).reset == PROTOCOL_ERROR, c.results[bad]
        assert c.wait(ok).status == 200
    assert not upstream.requests_for("/r/%s/connspec?" % sid) and \
        [r.target for r in upstream.requests_for("/r/%s/connspec" % sid)] == ["/r/%s/connspec-ok" % sid]
    assert not upstream_request(upstream, "/r/%s/connspec-ok" % sid).has_header("te")


@pytest.mark.parametrize("headers,why", [
    ([(":method", "GET"), (":scheme", "http"), (":authority", "{host}")], "no :path"),
    ([(":path", "/"), (":scheme", "http"), (":authority", "{host}")], "no :method"),
    ([(":method", "GET"), (":path", "/"), (":authority", "{host}")], "no :scheme"),
    ([(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "{host}"), (":path", "/2")], "twice"),
    ([(":method", "GET"), (":path", "/"), (":scheme", "http"), ("x-a", "1"), (":authority", "{host}")], "after a field"),
    ([(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "{host}"), (":foo", "1")], "unknown"),
    ([(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "{host}"), ("X-Upper", "1")], "upper case"),
    ([(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "{host}"), (":status", "200")], "response pseudo"),
    ([(":method", "GET"), (":path", "/a b"), (":scheme", "http"), (":authority", "{host}")], "space in path"),
    ([(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "{host}"), ("x-a", "a\r\nb")], "CRLF in value"),
])
def test_malformed_requests_reset(proxy, upstream, routed, headers, why):
    # RFC 9113 section 8.1.1: malformed -> stream error PROTOCOL_ERROR
    sid, host = routed
    with RawH2(proxy.port) as raw:
        raw.send(raw.headers(1, [(k, v.format(host=host)) for k, v in headers]))
        f = raw.rst(1)
        assert f is not None and f.error_code == PROTOCOL_ERROR, (why, raw.frames)
        raw.send(raw.headers(3, [(":method", "GET"), (":path", "/r/%s/after-malformed" % sid),
                                 (":scheme", "http"), (":authority", host)]))
        status, _, _, ended, _ = raw.response(3)
        assert status == 200 and ended, why
    assert upstream_request(upstream, "/r/%s/after-malformed" % sid)


def test_methods(proxy, upstream, routed):
    sid, host = routed
    with H2Client(proxy.port) as c:
        error_body(c.wait(c.request("FOO", "/r/%s/foo" % sid, host)), 501)
        r = c.wait(c.request("DELETE", "/r/%s/del" % sid, host))
        assert r.status == 200 and r.json()["method"] == "DELETE"
        r = c.wait(c.request("OPTIONS", "*", host))
        assert r.status == 200 and r.json()["target"] == "*"
    with RawH2(proxy.port) as raw:  # CONNECT: :method and :authority only
        raw.send(raw.headers(1, [(":method", "CONNECT"), (":authority", host)], end_stream=False))
        status, hdrs, body, ended, reset = raw.response(1)
        assert status == 405 and ended, raw.frames
    assert not upstream.requests_for("/r/%s/foo" % sid)


def test_header_limits_431(make_proxy, redis_server, upstream, sid):
    p = make_proxy({"client": {"max_headers": 10, "max_head_bytes": 2048, "max_request_line": 256}},
                   name="limits")
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    with H2Client(p.port) as c:
        many = [("x-h%d" % i, "v") for i in range(20)]
        error_body(c.get(host, "/r/%s/many" % sid, many), 431)
        error_body(c.get(host, "/r/%s/big" % sid, [("x-big", "v" * 3000)]), 431)
        error_body(c.get(host, "/r/%s/cookies" % sid, [("cookie", "c" * 1000), ("cookie", "d" * 1000)]), 431)
        error_body(c.get(host, "/r/%s/" % sid + "p" * 300), 414)
        assert c.get(host, "/r/%s/fine" % sid).status == 200
        assert c.goaway is None
    assert [r.target for r in upstream.requests_for("/r/%s/" % sid)] == ["/r/%s/fine" % sid]


def test_replies_html_for_browsers(proxy, upstream):
    with H2Client(proxy.port) as c:
        r = c.get(sandbox_host(upstream.port, new_sid()), "/", [("user-agent", "Mozilla/5.0"),
                                                                ("accept", "text/html")])
        assert r.status == 502 and r.header("content-type") == "text/html; charset=utf-8", r
        assert int(r.header("content-length")) == len(r.body) and b"<html" in r.body
        r = c.wait(c.request("HEAD", "/", sandbox_host(upstream.port, new_sid())))
        assert r.status == 502 and r.body == b"" and int(r.header("content-length")) > 0, r


# --------------------------------------------------------------------------
# Responses and bodies


def test_response_bodies(proxy, upstream, routed):
    sid, host = routed
    with H2Client(proxy.port) as c:
        r = c.get(host, "/r/%s/len" % sid, [("x-test-body-size", "100000")])
        assert r.status == 200 and len(r.body) == 100000 and r.header("content-length") == "100000"
        r = c.get(host, "/r/%s/chunked" % sid, [("x-test-body-size", "70000"), ("x-test-chunked", "1")])
        assert r.status == 200 and len(r.body) == 70000 and r.header("content-length") is None, r.headers
        r = c.get(host, "/r/%s/eof" % sid, [("x-test-body-size", "5000"), ("x-test-no-length", "1")])
        assert r.status == 200 and len(r.body) == 5000 and r.ended
        r = c.get(host, "/r/%s/big" % sid, [("x-test-body-size", str(3 << 20))], timeout=20)
        from upstreams import pattern_bytes
        assert bytes(r.body) == pattern_bytes(3 << 20)


def test_request_bodies(proxy, upstream, routed):
    sid, host = routed
    import hashlib
    body = bytes(range(256)) * 1000
    with H2Client(proxy.port) as c:
        r = c.wait(c.request("POST", "/r/%s/cl" % sid, host, [("content-length", str(len(body)))], body=body))
        assert r.status == 200 and r.json()["body_len"] == len(body)
        r = c.wait(c.request("POST", "/r/%s/nocl" % sid, host, body=body))
        assert r.status == 200 and r.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
        big = b"u" * (3 << 20)
        r = c.wait(c.request("PUT", "/r/%s/big" % sid, host, [("x-test-discard-body", "1")], body=big),
                   timeout=30)
        assert r.status == 200 and r.json()["body_len"] == len(big)
    cl = upstream_request(upstream, "/r/%s/cl" % sid)
    assert cl.header_all("content-length") == [str(len(body))] and not cl.has_header("transfer-encoding")
    nocl = upstream_request(upstream, "/r/%s/nocl" % sid)
    assert nocl.header_all("transfer-encoding") == ["chunked"] and not nocl.has_header("content-length")
    assert nocl.body == body


def test_content_length_mismatch_reset(proxy, upstream, routed):
    sid, host = routed
    with RawH2(proxy.port) as raw:
        base = [(":method", "POST"), (":scheme", "http"), (":authority", host)]
        raw.send(raw.headers(1, base + [(":path", "/r/%s/short" % sid), ("content-length", "10")],
                             end_stream=False), raw.data(1, b"12345", end_stream=True))
        assert raw.rst(1).error_code == PROTOCOL_ERROR
        raw.send(raw.headers(3, base + [(":path", "/r/%s/long" % sid), ("content-length", "3")],
                             end_stream=False), raw.data(3, b"12345", end_stream=True))
        assert raw.rst(3).error_code == PROTOCOL_ERROR
    time.sleep(0.2)
    # what the upstream got never exceeds the declared length
    for r in upstream.requests_for("/r/%s/" % sid):
        assert len(r.body) <= int(r.header("content-length")), r


def test_trailers_both_ways(proxy, upstream, routed):
    sid, host = routed
    with H2Client(proxy.port) as c:
        sid_ = c.request("POST", "/r/%s/trl" % sid, host,
                         [("x-test-chunked", "1"),
                          ("x-test-trailers", json.dumps([["x-checksum", "abc"], ["content-length", "9"]]))],
                         body=b"hello", trailers=[("x-req-trailer", "t1"), ("host", "evil")])
        r = c.wait(sid_)
        assert r.status == 200 and r.ended
        assert r.trailers == [("x-checksum", "abc")], r.trailers
    rec = upstream_request(upstream, "/r/%s/trl" % sid)
    assert rec.header_all("transfer-encoding") == ["chunked"] and rec.body == b"hello"
    assert rec.trailers == [("x-req-trailer", "t1")], rec.trailers


@pytest.mark.parametrize("method,status", [("HEAD", 200), ("GET", 204), ("GET", 304)])
def test_bodyless_responses(proxy, upstream, routed, method, status):
    sid, host = routed
    with RawH2(proxy.port) as raw:
        raw.send(raw.headers(1, [(":method", method), (":path", "/r/%s/nobody" % sid), (":scheme", "http"),
                                 (":authority", host), ("x-test-status", str(status))]))
        st, hdrs, body, ended, reset = raw.response(1)
        assert st == status and ended and body == b"", raw.frames
        # END_STREAM on the HEADERS frame itself: no DATA frame at all
        assert not [f for f in raw.frames if isinstance(f, DataFrame) and f.stream_id == 1]
        if method == "HEAD":
            assert dict(hdrs).get("content-length") not in (None, "0")


def one_shot_upstream(response):
    """A listening socket that answers the first request with `response`
    (raw bytes) and closes. Returns (port, thread, got) with got the
    request bytes."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    got = []

    def run():
        s, _ = ls.accept()
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        got.append(buf)
        s.sendall(response)
        time.sleep(0.2)
        s.close()
        ls.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return ls.getsockname()[1], t, got


def test_interim_responses(proxy, redis_server, sid):
    redis_server.set_record(sid, public_record())
    port, t, got = one_shot_upstream(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nok")
    with H2Client(proxy.port) as c:
        r = c.get(sandbox_host(port, sid), "/interim")
        assert [s for s, _ in r.interim] == [100, 103], r.interim
        assert ("link", "</s.css>; rel=preload") in r.interim[1][1]
        assert r.status == 200 and bytes(r.body) == b"ok"
        assert r.header("connection") is None and r.header("keep-alive") is None
    t.join(2)


def test_101_on_plain_request_is_502(proxy, upstream, routed):
    sid, host = routed
    with H2Client(proxy.port) as c:
        error_body(c.get(host, "/r/%s/sw" % sid, [("x-test-status", "101")]), 502, sandboxId=sid)


@pytest.mark.parametrize("then", ["close", "reset"])
def test_upstream_cut_mid_body_is_rst(proxy, upstream, routed, then):
    sid, host = routed
    with H2Client(proxy.port) as c:
        r = c.get(host, "/r/%s/cut" % sid, [("x-test-body-size", "100000"), ("x-test-partial", "1000"),
                                             ("x-test-partial-then", then)])
        assert r.status == 200 and r.reset == INTERNAL_ERROR and not r.ended, r
        assert c.get(host, "/r/%s/after-cut" % sid).status == 200  # siblings unaffected


def upstream_conn_closed(upstream, conn_id):
    return any(ev == "close" and cid == conn_id for _, ev, cid in list(upstream.events))


def test_client_reset_closes_upstream_connection(proxy, upstream, routed):
    sid, host = routed
    # A response far bigger than the windows: the upstream is left blocked
    # writing it, until the proxy closes its connection.
    with H2Client(proxy.port, auto_ack=False) as c:
        s1 = c.request("GET", "/r/%s/rst" % sid, host, [("x-test-body-size", str(64 << 20))])
        c.wait_for(lambda: c.results[s1].status == 200, what="response head")
        conn = int(c.results[s1].header("x-upstream-conn"))
        c.reset(s1, CANCEL)
        wait_until(lambda: upstream_conn_closed(upstream, conn), what="upstream connection closed")
    with H2Client(proxy.port) as c:  # (that one's connection window is spent: never acked)
        r = c.get(host, "/r/%s/after-rst" % sid)
        assert r.status == 200 and int(r.header("x-upstream-conn")) != conn  # not pooled


# --------------------------------------------------------------------------
# Flow control tied to the upstream


def rss_kib(proxy):
    for line in open("/proc/%d/status" % proxy.proc.pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.fixture(scope="module")
def slowproxy(make_proxy):
    return make_proxy({"http2": {"send_timeout_ms": 1500}, "workers": 1}, name="slow")


def test_upload_to_a_sandbox_that_does_not_read(proxy, upstream, routed):
    # The window opens only as bytes reach the upstream: while the app
    # does not read, the client is held back, memory stays put.
    sid, host = routed
    import hashlib
    total = 48 << 20
    chunk = b"q" * (1 << 20)
    with H2Client(proxy.port, timeout=10) as c:
        s = c.request("POST", "/r/%s/held-upload" % sid, host,
                      [("x-test-hold-body", "up-" + sid), ("content-length", str(total))], end_stream=False)
        rss0 = rss_kib(proxy)
        sent = 0
        deadline = time.monotonic() + 3
        while sent < total and time.monotonic() < deadline:
            window = min(c.conn.local_flow_control_window(s), c.conn.max_outbound_frame_size)
            if window <= 0:
                c.pump(0.05)
                continue
            c.conn.send_data(s, chunk[:window])
            c.flush()
            sent += window
        # loopback socket buffers take some; the proxy takes a window and its 256 KiB
        assert sent < 24 << 20, "the client sent %d bytes to an app that reads nothing" % sent
        assert rss_kib(proxy) - rss0 < 16 * 1024, "RSS grew by %d KiB" % (rss_kib(proxy) - rss0)
        upstream.release("up-" + sid)
        while sent < total:
            n = min(len(chunk), total - sent)
            c.send_body(s, chunk[:n], end_stream=False, timeout=20)
            sent += n
        c.conn.end_stream(s)
        c.flush()
        r = c.wait(s, timeout=30)
        assert r.status == 200 and r.json()["body_len"] == total, r
        assert r.json()["body_sha256"] == hashlib.sha256(b"q" * total).hexdigest()


def test_download_to_a_client_that_does_not_read(slowproxy, upstream, redis_server, sid):
    # The upstream is read only as fast as the client takes the bytes;
    # a window that stays shut resets the stream after http2.send_timeout_ms.
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    size = 256 << 20
    before = upstream.body_bytes_sent
    with H2Client(slowproxy.port, auto_ack=False, timeout=10) as c:
        rss0 = rss_kib(slowproxy)
        s = c.request("GET", "/r/%s/big-down" % sid, host, [("x-test-body-size", str(size))])
        c.wait_for(lambda: c.results[s].status == 200, what="response head")
        time.sleep(1.0)
        pulled = upstream.body_bytes_sent - before
        assert pulled < 24 << 20, "the proxy read %d bytes for a client that reads none" % pulled
        assert rss_kib(slowproxy) - rss0 < 16 * 1024
        r = c.wait(s, timeout=10)
        assert r.reset == CANCEL and not r.ended, r
        assert len(r.body) <= 65535
        assert c.goaway is None  # only that stream
    assert upstream.body_bytes_sent - before < 48 << 20


def test_trickled_window_does_not_hold_a_stream(slowproxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    with H2Client(slowproxy.port, auto_ack=False, timeout=10) as c:
        s = c.request("GET", "/r/%s/trickle" % sid, host, [("x-test-body-size", str(64 << 20))])
        c.wait_for(lambda: len(c.results[s].body) >= 65535, what="the first window")
        t0 = time.monotonic()
        while not c.results[s].done and time.monotonic() - t0 < 8:
            c.conn.increment_flow_control_window(100, s)  # 1 KB/s: a real trickle
            c.conn.increment_flow_control_window(100)
            c.flush()
            time.sleep(0.1)
            c.pump(0.01)
        assert c.results[s].reset == CANCEL, c.results[s]
        assert time.monotonic() - t0 < 5, "a trickle of window updates kept the stream"


# --------------------------------------------------------------------------
# Abuse (SPEC section 8): answered with GOAWAY or RST, bounded


GET = [(":method", "GET"), (":scheme", "http")]


def test_server_settings(proxy):
    with H2Client(proxy.port) as c:
        c.wait_for(lambda: 3 in c.remote_settings, what="SETTINGS")
        assert c.remote_settings[3] == 100  # MAX_CONCURRENT_STREAMS
        assert c.remote_settings.get(4, 65535) == 65535


def test_rapid_reset(proxy, upstream, routed):
    sid, host = routed
    before = proxy.metric("edgeproxy_http2_abuse_closes_total")
    with RawH2(proxy.port) as raw:
        sent = 0
        for batch in range(20):
            frames = []
            for i in range(50):
                n = 1 + 2 * (batch * 50 + i)
                frames.append(raw.headers(n, GET + [(":path", "/r/%s/rr%d" % (sid, n)), (":authority", host)]))
                frames.append(RstStreamFrame(n, error_code=CANCEL))
            raw.send(*frames)
            sent += 50
            if raw.closed:
                break
            time.sleep(0.01)
        g = raw.goaway(timeout=5)
        assert g is not None and g.error_code == 0xb, raw.frames[-5:]  # ENHANCE_YOUR_CALM
        assert raw.wait_closed(5)
    time.sleep(0.3)
    assert len(upstream.requests_for("/r/%s/rr" % sid)) < 150, "every reset stream reached the sandbox"
    assert proxy.metric("edgeproxy_http2_abuse_closes_total") > before


def test_too_many_new_streams_in_one_read(make_proxy, upstream, redis_server, sid):
    p = make_proxy({"http2": {"max_concurrent_streams": 4}}, name="streams4")
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    with RawH2(p.port) as raw:
        frames = []
        for i in range(12):
            n = 1 + 2 * i
            frames.append(raw.headers(n, GET + [(":path", "/r/%s/burst" % sid), (":authority", host)]))
            frames.append(RstStreamFrame(n, error_code=CANCEL))
        raw.send(*frames)
        f = raw.until(lambda f: isinstance(f, RstStreamFrame) and f.error_code == 0x7, timeout=3)
        assert f is not None and f.stream_id > 2 * 4 * 2 - 1, raw.frames  # streams past 8 in the read
        # the connection itself goes on
        raw.send(raw.headers(101, GET + [(":path", "/r/%s/after-burst" % sid), (":authority", host)]))
        st, _, _, ended, _ = raw.response(101)
        assert st == 200 and ended


def test_continuation_flood(proxy, upstream, routed):
    sid, host = routed
    with RawH2(proxy.port) as raw:
        block = raw.block(GET + [(":path", "/r/%s/cont" % sid), (":authority", host)])
        h = HeadersFrame(1)
        h.data = block
        h.flags.add("END_STREAM")
        frames = [h]
        for i in range(100):
            c = ContinuationFrame(1)
            c.data = b"\x40\x01a\x01b"  # literal "a: b", indexed: each frame a little more
            frames.append(c)
        raw.send(*frames)
        assert raw.wait_closed(5), raw.frames
    assert not upstream.requests_for("/r/%s/cont" % sid)


def test_unfinished_header_block_times_out(make_proxy, upstream, redis_server, sid):
    p = make_proxy({"client": {"header_timeout_ms": 800}}, name="hdrtimeout")
    with RawH2(p.port) as raw:
        h = raw.headers(1, GET + [(":path", "/x"), (":authority", "a.b")], end_headers=False)
        raw.send(h)
        t0 = time.monotonic()
        assert raw.wait_closed(5)
        assert time.monotonic() - t0 < 4


def test_hpack_bomb(proxy, upstream, routed):
    sid, host = routed
    with RawH2(proxy.port) as raw:
        big = ("x-bomb", "b" * 4000)
        raw.send(raw.headers(1, GET + [(":path", "/r/%s/bomb-seed" % sid), (":authority", host), big]))
        st, _, _, _, _ = raw.response(1)
        assert st == 200
        # now each reference to the table entry is one byte, 4 KB decoded
        raw.send(raw.headers(3, GET + [(":path", "/r/%s/bomb" % sid), (":authority", host)] + [big] * 3000))
        f = raw.rst(3)
        assert f is not None, raw.frames
        raw.send(raw.headers(5, GET + [(":path", "/r/%s/after-bomb" % sid), (":authority", host)]))
        st, _, _, ended, _ = raw.response(5)
        assert st == 200 and ended
    assert not upstream.requests_for("/r/%s/bomb?" % sid) and len(upstream.requests_for("/r/%s/bomb" % sid)) == 1


def test_header_count_flood(proxy, upstream, routed):
    sid, host = routed
    with H2Client(proxy.port) as c:
        r = c.get(host, "/r/%s/count" % sid, [("a", "b")] * 5000)
        assert r.status == 431 or r.reset is not None, r
    assert not upstream.requests_for("/r/%s/count" % sid)


@pytest.mark.parametrize("kind", ["ping", "settings", "empty-data", "tiny-window-updates"])
def test_control_frame_floods(make_proxy, upstream, redis_server, sid, kind):
    p = make_proxy({"workers": 1}, name="flood-" + kind)
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    with RawH2(p.port, timeout=10) as raw:
        if kind == "ping":
            unit = PingFrame(0, opaque_data=b"12345678").serialize()
        elif kind == "settings":
            unit = SettingsFrame(0).serialize()
        elif kind == "empty-data":
            raw.send(raw.headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/r/%s/flood" % sid),
                                     (":authority", host), ("x-test-hold-body", "flood-" + sid)],
                                 end_stream=False))
            unit = raw.data(1, b"").serialize()
        else:
            raw.send(raw.headers(1, GET + [(":path", "/r/%s/flood" % sid), (":authority", host),
                                           ("x-test-body-size", str(1 << 30))]))
            unit = WindowUpdateFrame(1, window_increment=1).serialize()
        batch = unit * (256 * 1024 // len(unit))
        sent = 0
        t0 = time.monotonic()
        goaway = lambda: [f for f in raw.frames if isinstance(f, GoAwayFrame)]
        while not raw.closed and not goaway() and sent < (64 << 20) and time.monotonic() - t0 < 20:
            raw.send(batch)
            sent += len(batch)
            while raw.read_frame(0) not in (None, False):  # a client that keeps up
                pass
        # nghttp2's ACK cap closes without a word, the flood check with a GOAWAY
        assert raw.closed or goaway(), "%s: %d bytes and still open" % (kind, sent)
        assert not goaway() or goaway()[0].error_code == 0xb, goaway()
        assert sent < 32 << 20, sent
        assert raw.wait_closed(5)
    upstream.release("flood-" + sid)
    assert p.metric("edgeproxy_http2_abuse_closes_total") >= 1


@pytest.mark.parametrize("provoke", ["malformed", "window-overflow"])
def test_provoked_resets(proxy, upstream, routed, provoke):
    # CVE-2025-8671: stream errors the client provokes spend the budget too.
    # (WINDOW_UPDATE 0 is not one: nghttp2 closes the connection for it.)
    sid, host = routed
    with RawH2(proxy.port) as raw:
        for i in range(150):
            n = 1 + 2 * i
            if provoke == "malformed":
                raw.send(raw.headers(n, GET + [(":path", "/r/%s/myr" % sid), (":authority", host),
                                               ("te", "gzip")]))
            else:
                raw.send(raw.headers(n, GET + [(":path", "/r/%s/myr" % sid), (":authority", host),
                                               ("x-test-delay-ms", "2000")]),
                         WindowUpdateFrame(n, window_increment=0x7fffffff))
            if raw.closed:
                break
        g = raw.goaway(timeout=5)
        assert g is not None and g.error_code == 0xb, raw.frames[-5:]
    rsts = [f for f in raw.frames if isinstance(f, RstStreamFrame)]
    assert 90 <= len(rsts) <= 110, len(rsts)
    assert all(f.error_code in (PROTOCOL_ERROR, 0x3) for f in rsts)
    assert len(upstream.requests_for("/r/%s/myr" % sid)) <= len(rsts)


def test_max_requests_then_goaway(make_proxy, upstream, redis_server, sid):
    p = make_proxy({"http2": {"max_requests": 3}}, name="maxreq")
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    with RawH2(p.port) as raw:
        for i in range(3):
            n = 1 + 2 * i
            raw.send(raw.headers(n, GET + [(":path", "/r/%s/mr%d" % (sid, i)), (":authority", host)]))
            st, _, _, ended, _ = raw.response(n)
            assert st == 200 and ended
        g = raw.goaway()
        assert g.error_code == NO_ERROR and g.last_stream_id == 5
        raw.send(raw.headers(7, GET + [(":path", "/r/%s/mr-late" % sid), (":authority", host)]))
        assert raw.wait_closed(5)
    assert not upstream.requests_for("/r/%s/mr-late" % sid)


def test_drain_sends_goaway_and_lets_streams_finish(make_proxy, upstream, redis_server, sid):
    import signal
    p = make_proxy(name="drain")
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    with RawH2(p.port) as raw:
        raw.send(raw.headers(1, GET + [(":path", "/r/%s/draining" % sid), (":authority", host),
                                       ("x-test-hold", "drain-" + sid)]))
        upstream.wait_requests("/r/%s/draining" % sid)
        p.signal(signal.SIGTERM)
        g = raw.goaway()
        assert g.error_code == NO_ERROR and g.last_stream_id == 1
        upstream.release("drain-" + sid)
        st, _, _, ended, _ = raw.response(1)
        assert st == 200 and ended
        assert raw.wait_closed(5)
    assert p.wait(10) == 0


def test_idle_connection_closed(make_proxy, upstream, redis_server, sid):
    p = make_proxy({"client": {"keepalive_timeout_ms": 500}}, name="idle")
    redis_server.set_record(sid, public_record())
    with H2Client(p.port) as c:
        assert c.get(sandbox_host(upstream.port, sid), "/r/%s/idle" % sid).status == 200
        t0 = time.monotonic()
        c.wait_closed(5)
        assert c.goaway is not None and c.goaway.error_code == NO_ERROR
        assert time.monotonic() - t0 < 3


# --------------------------------------------------------------------------
# Conformance (h2spec's list: preface, frames, streams, HPACK, settings)

FRAME_SIZE_ERROR_, STREAM_CLOSED_, COMPRESSION_ERROR_, FLOW_CONTROL_ERROR_ = 0x6, 0x5, 0x9, 0x3


def raw_frame(ftype, flags, sid, payload):
    import struct
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def settings(*pairs, ack=False):
    import struct
    return raw_frame(0x4, 0x1 if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def conformance_cases(host):
    get = lambda raw, n: raw.headers(n, GET + [(":path", "/"), (":authority", host)])
    return {
        # section 3.4 / 6.5: the first frame after the preface is SETTINGS
        "first frame not SETTINGS": (lambda raw: [PREFACE, PingFrame(0, opaque_data=b"x" * 8)], ("goaway", PROTOCOL_ERROR)),
        # section 4.2: over SETTINGS_MAX_FRAME_SIZE
        "DATA over max frame size": (lambda raw: [raw.headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", host)], end_stream=False), raw.data(1, b"x" * 16385)], ("goaway", FRAME_SIZE_ERROR_)),
        "HEADERS over max frame size": (lambda raw: [raw_frame(0x1, 0x5, 1, b"\x00" * 16385)], ("goaway", FRAME_SIZE_ERROR_)),
        # section 5.1: stream states
        "DATA on an idle stream": (lambda raw: [raw.data(1, b"x")], ("goaway", PROTOCOL_ERROR)),
        "RST_STREAM on an idle stream": (lambda raw: [RstStreamFrame(1, error_code=CANCEL)], ("goaway", PROTOCOL_ERROR)),
        "WINDOW_UPDATE on an idle stream": (lambda raw: [WindowUpdateFrame(1, window_increment=1)], ("goaway", PROTOCOL_ERROR)),
        "HEADERS with an even stream id": (lambda raw: [get(raw, 2)], ("goaway", PROTOCOL_ERROR)),
        "HEADERS on stream 0": (lambda raw: [raw_frame(0x1, 0x5, 0, raw.block(GET + [(":path", "/"), (":authority", host)]))], ("goaway", PROTOCOL_ERROR)),
        "DATA on a half-closed (remote) stream": (lambda raw: [raw.headers(1, GET + [(":path", "/"), (":authority", host), ("x-test-delay-ms", "500")]), raw.data(1, b"x")], ("rst-or-goaway", STREAM_CLOSED_)),
        # section 6.2, 6.10: CONTINUATION rules
        "CONTINUATION without HEADERS": (lambda raw: [raw_frame(0x9, 0x4, 1, raw.block([("a", "b")]))], ("goaway", PROTOCOL_ERROR)),
        "other frame inside a header block": (lambda raw: [raw.headers(1, GET + [(":path", "/"), (":authority", host)], end_headers=False), PingFrame(0, opaque_data=b"x" * 8)], ("goaway", PROTOCOL_ERROR)),
        "CONTINUATION on another stream": (lambda raw: [raw.headers(1, GET + [(":path", "/")], end_headers=False), raw_frame(0x9, 0x4, 3, raw.block([(":authority", host)]))], ("goaway", PROTOCOL_ERROR)),
        # section 6.3, 6.4: PRIORITY and RST_STREAM sizes
        "PRIORITY of a bad length": (lambda raw: [raw_frame(0x2, 0, 1, b"\x00" * 4)], ("rst-or-goaway", FRAME_SIZE_ERROR_)),
        "RST_STREAM of a bad length": (lambda raw: [get(raw, 1), raw_frame(0x3, 0, 1, b"\x00" * 3)], ("goaway", FRAME_SIZE_ERROR_)),
        # section 6.5: SETTINGS
        "SETTINGS ACK with a payload": (lambda raw: [settings((1, 4096), ack=True)], ("goaway", FRAME_SIZE_ERROR_)),
        "SETTINGS on a stream": (lambda raw: [raw_frame(0x4, 0, 1, b"")], ("goaway", PROTOCOL_ERROR)),
        "SETTINGS of a bad length": (lambda raw: [raw_frame(0x4, 0, 0, b"\x00" * 5)], ("goaway", FRAME_SIZE_ERROR_)),
        "SETTINGS_ENABLE_PUSH 2": (lambda raw: [settings((2, 2))], ("goaway", PROTOCOL_ERROR)),
        "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1": (lambda raw: [settings((4, 1 << 31))], ("goaway", FLOW_CONTROL_ERROR_)),
        "SETTINGS_MAX_FRAME_SIZE under 16384": (lambda raw: [settings((5, 16383))], ("goaway", PROTOCOL_ERROR)),
        # section 6.6: a client never promises
        "PUSH_PROMISE from a client": (lambda raw: [get(raw, 1), raw_frame(0x5, 0x4, 1, b"\x00\x00\x00\x02" + raw.block([(":method", "GET")]))], ("goaway", PROTOCOL_ERROR)),
        # section 6.7: PING
        "PING on a stream": (lambda raw: [raw_frame(0x6, 0, 1, b"\x00" * 8)], ("goaway", PROTOCOL_ERROR)),
        "PING of a bad length": (lambda raw: [raw_frame(0x6, 0, 0, b"\x00" * 7)], ("goaway", FRAME_SIZE_ERROR_)),
        # section 6.8: GOAWAY on a stream
        "GOAWAY on a stream": (lambda raw: [raw_frame(0x7, 0, 1, b"\x00" * 8)], ("goaway", PROTOCOL_ERROR)),
        # section 6.9: WINDOW_UPDATE
        "WINDOW_UPDATE 0 on the connection": (lambda raw: [WindowUpdateFrame(0, window_increment=0)], ("goaway", PROTOCOL_ERROR)),
        "WINDOW_UPDATE 0 on a stream": (lambda raw: [raw.headers(1, GET + [(":path", "/"), (":authority", host), ("x-test-delay-ms", "500")]), WindowUpdateFrame(1, window_increment=0)], ("rst-or-goaway", PROTOCOL_ERROR)),
        "connection window over 2^31-1": (lambda raw: [WindowUpdateFrame(0, window_increment=0x7fffffff)], ("goaway", FLOW_CONTROL_ERROR_)),
        "stream window over 2^31-1": (lambda raw: [raw.headers(1, GET + [(":path", "/"), (":authority", host), ("x-test-delay-ms", "500")]), WindowUpdateFrame(1, window_increment=0x7fffffff)], ("rst", FLOW_CONTROL_ERROR_)),
        "WINDOW_UPDATE of a bad length": (lambda raw: [raw_frame(0x8, 0, 0, b"\x00" * 3)], ("goaway", FRAME_SIZE_ERROR_)),
        # RFC 7541: HPACK
        "HPACK index out of range": (lambda raw: [raw_frame(0x1, 0x5, 1, b"\xff\x7f")], ("goaway", COMPRESSION_ERROR_)),
        "HPACK table size update above SETTINGS": (lambda raw: [raw_frame(0x1, 0x5, 1, b"\x3f\xe1\x7f" + raw.block(GET + [(":path", "/")]))], ("goaway", COMPRESSION_ERROR_)),
    }


@pytest.mark.parametrize("case", sorted(conformance_cases("x").keys()))
def test_conformance(proxy, upstream, routed, case):
    sid, host = routed
    build, (kind, code) = conformance_cases(host)[case]
    with RawH2(proxy.port, preface=case != "first frame not SETTINGS") as raw:
        raw.send(*build(raw))
        if kind == "goaway":
            f = raw.goaway()
            assert f is not None and f.error_code == code, (case, raw.frames)
            assert raw.wait_closed(5), case
        else:
            f = raw.until(lambda f: isinstance(f, (RstStreamFrame, GoAwayFrame)) and f.stream_id in (0, 1))
            assert f is not None and f.error_code == code, (case, raw.frames)
            if kind == "rst":
                assert isinstance(f, RstStreamFrame), (case, f)


def test_stream_ids_going_down_are_ignored(proxy, upstream, routed):
    # RFC 9113 section 5.1.1 allows a PROTOCOL_ERROR; nghttp2 ignores the
    # HEADERS instead when it cannot be sure the client saw the stream
    # closed (its session_on_request_headers_received explains why): the
    # lower stream is never served, the connection goes on.
    sid, host = routed
    with RawH2(proxy.port) as raw:
        raw.send(raw.headers(5, GET + [(":path", "/r/%s/down5" % sid), (":authority", host)]),
                 raw.headers(3, GET + [(":path", "/r/%s/down3" % sid), (":authority", host)]))
        st, _, _, ended, _ = raw.response(5)
        assert st == 200 and ended
        assert raw.response(3, timeout=0.5) is None
        raw.send(raw.headers(7, GET + [(":path", "/r/%s/down7" % sid), (":authority", host)]))
        st, _, _, ended, _ = raw.response(7)
        assert st == 200 and ended
    assert not upstream.requests_for("/r/%s/down3" % sid)


def test_ping_and_settings_acknowledged(proxy, upstream, routed):
    sid, host = routed
    with RawH2(proxy.port) as raw:
        raw.send(PingFrame(0, opaque_data=b"abcdefgh"))
        f = raw.until(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags)
        assert f.opaque_data == b"abcdefgh"
        assert raw.until(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags) is not None
        # unknown frame types and settings are ignored (sections 4.1, 6.5.2)
        raw.send(raw_frame(0xfa, 0, 0, b"whatever"), settings((0x99, 7)))
        raw.send(PriorityFrame(3, depends_on=0, stream_weight=10))  # on an idle stream: fine
        raw.send(raw.headers(5, GET + [(":path", "/r/%s/conf-ok" % sid), (":authority", host)]))
        st, _, _, ended, _ = raw.response(5)
        assert st == 200 and ended


# --------------------------------------------------------------------------
# Metrics and the access log


def test_metrics_and_access_log_name_the_protocol(make_proxy, workdir, upstream, redis_server, sid):
    log = workdir / "h2-access.log"
    p = make_proxy({"access_log": {"path": str(log)}, "workers": 1}, name="h2log")
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    h1_before = p.metric("edgeproxy_requests_by_protocol_total", protocol="http1")
    h2_before = p.metric("edgeproxy_requests_by_protocol_total", protocol="http2")
    with H2Client(p.port) as c:
        assert c.get(host, "/r/%s/log-h2" % sid).status == 200
        assert p.metric("edgeproxy_http2_connections") == 1
        s = c.request("GET", "/r/%s/log-rst" % sid, host, [("x-test-delay-ms", "300")])
        c.reset(s)
        c.wait_for(lambda: p.metric("edgeproxy_http2_resets_total", by="client") >= 1, what="reset counted")
    assert p.request("GET", "/r/%s/log-h1" % sid, host=host).status == 200
    wait_until(lambda: p.metric("edgeproxy_http2_connections") == 0, what="gauge back to 0")
    assert p.metric("edgeproxy_requests_by_protocol_total", protocol="http2") - h2_before == 2
    assert p.metric("edgeproxy_requests_by_protocol_total", protocol="http1") - h1_before == 1
    assert p.metric("edgeproxy_client_connections") == 0

    def lines():
        return [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []
    wait_until(lambda: len([l for l in lines() if sid in l["path"]]) == 3, timeout=5, what="access log lines")
    by_path = {l["path"]: l for l in lines() if sid in l["path"]}
    assert by_path["/r/%s/log-h2" % sid]["protocol"] == "HTTP/2"
    assert by_path["/r/%s/log-h2" % sid]["status"] == 200 and by_path["/r/%s/log-h2" % sid]["bytes"] > 0
    assert by_path["/r/%s/log-h2" % sid]["host"] == host and by_path["/r/%s/log-h2" % sid]["method"] == "GET"
    assert by_path["/r/%s/log-rst" % sid]["status"] == 0  # aborted: nobody answered
    assert by_path["/r/%s/log-h1" % sid]["protocol"] == "HTTP/1.1"


def test_request_body_timeout_per_stream(make_proxy, upstream, redis_server, sid):
    p = make_proxy({"client": {"body_timeout_ms": 500}}, name="bodytimeout")
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    with H2Client(p.port) as c:
        s = c.request("POST", "/r/%s/stalled-body" % sid, host, [("content-length", "100")],
                      body=b"x" * 10, end_stream=False)
        t0 = time.monotonic()
        r = c.wait(s, timeout=5)
        assert r.reset == CANCEL, r
        assert time.monotonic() - t0 < 3
        assert c.get(host, "/r/%s/after-stall" % sid).status == 200  # only that stream
    assert not upstream.requests_for("/r/%s/stalled-body" % sid)  # never completed upstream


def test_proxy_protocol_then_prior_knowledge(make_proxy, upstream, redis_server, sid):
    p = make_proxy(name="pp-h2", extra_listeners=[{"proxy_protocol": True}])
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    s = socket.create_connection(("127.0.0.1", p.extra_ports[0]), timeout=5)
    s.sendall(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 80\r\n")
    with H2Client(None, sock=s) as c:
        assert c.get(host, "/r/%s/pp-h2" % sid).status == 200
    rec = upstream_request(upstream, "/r/%s/pp-h2" % sid)
    assert rec.header_all("x-forwarded-for") == ["203.0.113.9"]
