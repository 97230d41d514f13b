"""SPEC section 5: bodies both ways, framing, retries on refused
connections, upstream failures, HEAD, WebSocket tunnel, admin endpoints."""

import hashlib
import os
import socket
import threading
import time

import pytest

from harness import (WS_UPGRADE_HEADERS, tunnel_echo, Client, ConnectionClosed, build_request, check_error, free_port, new_sid, public_record,
                     rss_kib, sandbox_host)
from upstreams import pattern_bytes, start_later


@pytest.fixture
def routed(redis_server, upstream, sid):
    redis_server.set_record(sid, public_record())
    return sid, sandbox_host(upstream.port, sid)


def test_content_length_body(proxy, upstream, routed):
    sid, host = routed
    body = os.urandom(1 << 20)
    with proxy.connect(timeout=15) as c:
        r = c.request("POST", "/r/%s/cl" % sid, host=host, body=body)
    assert r.status == 200, r
    assert r.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.body == body


def test_content_length_body_in_pieces(proxy, upstream, routed):
    sid, host = routed
    body = b"x" * 1000 + b"y" * 1000
    with proxy.connect() as c:
        c.send(build_request("PUT", "/r/%s/pieces" % sid, host, [("Content-Length", str(len(body)))]))
        time.sleep(0.05)
        c.send(body[:700])
        time.sleep(0.05)
        c.send(body[700:])
        r = c.read_response()
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.body == body


def test_chunked_request_body(proxy, upstream, routed):
    sid, host = routed
    parts = [b"a" * 1, b"b" * 100, os.urandom(70000), b"c" * 5]
    with proxy.connect() as c:
        c.send(build_request("POST", "/r/%s/chunked" % sid, host, [("Transfer-Encoding", "chunked")]))
        for p in parts:
            c.send(b"%x\r\n%s\r\n" % (len(p), p))
            time.sleep(0.01)
        c.send(b"0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.body == b"".join(parts)
    # Framing upstream is chunked or a correct Content-Length, never both.
    assert not (rec.has_header("content-length") and rec.has_header("transfer-encoding")), rec.headers


def test_chunked_request_then_next_request(proxy, upstream, routed):
    sid, host = routed
    with proxy.connect() as c:
        c.send(build_request("POST", "/r/%s/c1" % sid, host, [("Transfer-Encoding", "chunked")]) +
               b"5;ext=1\r\nhello\r\n0\r\n\r\n")
        assert c.read_response().status == 200
        assert c.request("GET", "/r/%s/c2" % sid, host=host).status == 200
    recs = upstream.requests_for("/r/%s/" % sid)
    assert [(x.target, x.body) for x in recs] == [("/r/%s/c1" % sid, b"hello"), ("/r/%s/c2" % sid, b"")]


def test_request_trailers_reach_the_upstream(proxy, upstream, routed):
    """A chunked request's trailer fields go up after its last chunk; the
    ones a trailer must not carry (framing, routing, hop-by-hop, the token:
    RFC 9110 section 6.5.1) do not."""
    sid, host = routed
    with proxy.connect() as c:
        c.send(build_request("POST", "/r/%s/tr" % sid, host, [("Transfer-Encoding", "chunked")]) +
               b"5\r\nhello\r\n0\r\nX-Checksum: 5d41\r\nContent-Length: 99\r\n"
               b"Host: evil.example\r\ne2b-traffic-access-token: t\r\nX-Other: 2\r\n\r\n")
        assert c.read_response().status == 200
        assert c.request("GET", "/r/%s/tr2" % sid, host=host).status == 200
    rec = upstream.requests_for("/r/%s/tr" % sid)[0]
    assert rec.body == b"hello"
    assert rec.trailers == [("X-Checksum", "5d41"), ("X-Other", "2")], rec.trailers


def test_response_trailers_reach_the_client(proxy, upstream, routed):
    """A chunked response's trailers come after the last chunk, minus the
    fields a trailer must not carry; the connection stays in sync."""
    sid, host = routed
    trailers = '[["X-Checksum", "abc"], ["Content-Length", "7"], ["Connection", "close"], ["X-Done", "1"]]'
    with proxy.connect() as c:
        c.send(build_request("GET", "/r/%s/rt" % sid, host,
                             [("X-Test-Chunked", "1"), ("X-Test-Body-Size", "3000"),
                              ("X-Test-Trailers", trailers)]))
        raw = b""
        while not raw.endswith(b"\r\n0\r\nX-Checksum: abc\r\nX-Done: 1\r\n\r\n"):
            part = c.sock.recv(65536)
            assert part, raw[-200:]
            raw += part
            assert len(raw) < 10000, raw[-200:]
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        assert c.request("GET", "/r/%s/rt2" % sid, host=host).status == 200


def test_large_upload(proxy, upstream, routed):
    sid, host = routed
    n = 32 << 20
    block = pattern_bytes(1 << 20)
    with proxy.connect(timeout=30) as c:
        c.send(build_request("POST", "/r/%s/big" % sid, host, [("Content-Length", str(n))]))
        for _ in range(n // len(block)):
            c.send(block)
        r = c.read_response()
    assert r.status == 200, r
    assert r.json()["body_len"] == n
    assert r.json()["body_sha256"] == hashlib.sha256(block * (n // len(block))).hexdigest()


def test_chunked_response_relayed(proxy, upstream, routed):
    sid, host = routed
    with proxy.connect() as c:
        r = c.request("GET", "/r/%s/rc" % sid, host=host,
                      headers=[("X-Test-Chunked", "1"), ("X-Test-Body-Size", "100000")])
        assert r.status == 200, r
        assert r.body == pattern_bytes(100000)
        # connection still in sync
        r2 = c.request("GET", "/r/%s/rc2" % sid, host=host)
        assert r2.json()["target"] == "/r/%s/rc2" % sid


def test_large_response(proxy, upstream, routed):
    sid, host = routed
    with proxy.connect(timeout=30) as c:
        r = c.request("GET", "/r/%s/big" % sid, host=host, headers=[("X-Test-Body-Size", str(20 << 20))])
    assert r.status == 200, r
    assert len(r.body) == 20 << 20 and r.body == pattern_bytes(20 << 20)


def test_upstream_status_and_headers_pass_through(proxy, upstream, routed):
    sid, host = routed
    r = proxy.get(host, "/r/%s/st" % sid, headers=[("X-Test-Status", "404"),
                                                    ("X-Test-Headers", '[["X-App", "a"], ["Set-Cookie", "a=1"], ["Set-Cookie", "b=2"]]')])
    assert r.status == 404, r
    assert r.json()["target"] == "/r/%s/st" % sid  # the app's body, not a proxy page
    assert r.header("x-app") == "a"
    assert r.header_all("set-cookie") == ["a=1", "b=2"]


@pytest.mark.parametrize("status", [204, 304])
def test_bodyless_statuses(proxy, upstream, routed, status):
    sid, host = routed
    with proxy.connect() as c:
        r = c.request("GET", "/r/%s/s" % sid, host=host, headers=[("X-Test-Status", str(status))])
        assert r.status == status and r.body == b"", r
        assert c.request("GET", "/r/%s/after" % sid, host=host).status == 200


def test_head_has_no_body(proxy, upstream, routed):
    sid, host = routed
    with proxy.connect() as c:
        r = c.request("HEAD", "/r/%s/head" % sid, host=host)
        assert r.status == 200, r
        assert r.body == b""
        assert int(r.header("content-length")) > 0  # the GET's length, per RFC 9110 9.3.2
        r2 = c.request("GET", "/r/%s/after-head" % sid, host=host)
        assert r2.status == 200 and r2.json()["target"] == "/r/%s/after-head" % sid, r2
    recs = upstream.requests_for("/r/%s/" % sid)
    assert [x.method for x in recs] == ["HEAD", "GET"]


def test_pipelined_requests(proxy, upstream, routed):
    sid, host = routed
    with proxy.connect() as c:
        c.send(b"".join(build_request("GET", "/r/%s/p%d" % (sid, i), host) for i in range(5)))
        for i in range(5):
            r = c.read_response()
            assert r.status == 200 and r.json()["target"] == "/r/%s/p%d" % (sid, i), r


def test_expect_100_continue(proxy, upstream, routed):
    sid, host = routed
    body = b"z" * 5000
    with proxy.connect() as c:
        c.send(build_request("POST", "/r/%s/expect" % sid, host,
                             [("Content-Length", str(len(body))), ("Expect", "100-continue")]))
        # Either a 100 Continue comes, or (like curl after 1 s) we send anyway.
        c.settimeout(1.0)
        try:
            c._fill()
        except OSError:
            pass
        c.settimeout(5.0)
        c.send(body)
        r = c.read_response()  # skips a 100 if there was one
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.body == body


def test_http10_client(proxy, upstream, routed):
    sid, host = routed
    with proxy.connect() as c:
        c.send(("GET /r/%s/h10 HTTP/1.0\r\nHost: %s\r\n\r\n" % (sid, host)).encode())
        r = c.read_response()
        assert r.status == 200, r
        assert r.json()["target"] == "/r/%s/h10" % sid
        assert c.is_closed(), "HTTP/1.0 without keep-alive must be closed"


def test_connection_refused_retried(proxy, redis_server, sid):
    port = free_port()  # reserved: nothing listens yet
    redis_server.set_record(sid, public_record())
    with proxy.connect() as c:
        c.send(build_request("GET", "/r/%s/late" % sid, sandbox_host(port, sid)))
        holder = start_later(port, 0.15)
        r = c.read_response()
    holder.thread.join(2)
    try:
        assert holder.server is not None, holder.error
        assert r.status == 200, r
        assert len(holder.server.requests_for("/r/%s/late" % sid)) == 1
    finally:
        if holder.server:
            holder.server.stop()


def test_no_upstream_502_with_port(proxy, redis_server, sid):
    port = free_port()
    redis_server.set_record(sid, public_record())
    t0 = time.monotonic()
    r = proxy.get(sandbox_host(port, sid), "/")
    check_error(r, 502, sandbox_id=sid, port=port)
    # retried, but briefly (3 retries, 100 ms doubling: ~0.7 s)
    assert time.monotonic() - t0 < 5.0


def test_upstream_reset_502(proxy, upstream, routed):
    sid, host = routed
    r = proxy.get(host, "/r/%s/reset" % sid, headers=[("X-Test-Reset", "1")])
    check_error(r, 502, sandbox_id=sid, port=upstream.port)
    # the proxy is fine afterwards
    assert proxy.get(host, "/r/%s/ok" % sid).status == 200


def test_websocket_tunnel(proxy, upstream, routed):
    sid, host = routed
    with proxy.connect() as c:
        c.send(build_request("GET", "/r/%s/ws" % sid, host, WS_UPGRADE_HEADERS))
        r = c.read_response()
        assert r.status == 101, r
        assert r.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert r.header("upgrade", "").lower() == "websocket"
        for msg in (b"hello", os.urandom(100000), b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"):
            tunnel_echo(c, msg)
    (rec,) = upstream.requests_for("/r/%s/ws" % sid)
    assert rec.header("upgrade", "").lower() == "websocket"
    assert "upgrade" in rec.header("connection", "").lower()


@pytest.fixture(scope="module")
def proxy_timeout(make_proxy):
    return make_proxy({"upstream": {"response_timeout_ms": 300}}, name="resptimeout")


def test_response_timeout_504(proxy_timeout, upstream, routed):
    sid, host = routed
    hold = "hold-" + sid
    try:
        t0 = time.monotonic()
        r = proxy_timeout.get(host, "/r/%s/slow" % sid, headers=[("X-Test-Hold", hold)])
        check_error(r, 504, sandbox_id=sid, port=upstream.port)
        assert time.monotonic() - t0 < 5
    finally:
        upstream.release(hold)
    assert proxy_timeout.get(host, "/r/%s/fast" % sid).status == 200


def test_admin_endpoints(proxy, upstream, routed):
    sid, host = routed
    assert proxy.get(host, "/r/%s/m" % sid).status == 200
    assert proxy.admin("/healthz").status == 200
    assert proxy.admin("/readyz").status == 200
    m = proxy.admin("/metrics")
    assert m.status == 200
    assert "edgeproxy_requests_total" in m.text, m.text[:2000]


# --------------------------------------------------------------------------
# Backpressure: memory stays bounded whatever the body size. The checks are
# on bytes and memory, not time: a pause only gives a proxy that buffers
# everything the chance to do so.

BP_SIZE = 128 << 20   # body size
BP_SLACK = 48 << 20   # kernel socket buffers + proxy buffers, generously


def rss_bytes(pid):
    return rss_kib(pid) * 1024


def test_upload_backpressure(proxy, upstream, routed):
    import threading
    sid, host = routed
    hold = "holdbody-" + sid
    block = pattern_bytes(1 << 20)
    sent = [0]
    err = []
    c = proxy.connect(timeout=30)

    def sender():
        try:
            for _ in range(BP_SIZE // len(block)):
                c.send(block)
                sent[0] += len(block)
        except OSError as e:
            err.append(e)

    try:
        assert c.request("GET", "/r/%s/warm" % sid, host=host).status == 200
        base = rss_bytes(proxy.proc.pid)
        c.send(build_request("POST", "/r/%s/upload" % sid, host, [
            ("Content-Length", str(BP_SIZE)), ("X-Test-Hold-Body", hold), ("X-Test-Discard-Body", "1")]))
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        time.sleep(1.0)  # the upstream reads nothing meanwhile
        grown = rss_bytes(proxy.proc.pid) - base
        pushed = sent[0]
        upstream.release(hold)
        t.join(60)
        assert not err, err
        r = c.read_response()
    finally:
        upstream.release(hold)
        c.close()
    assert r.status == 200, r
    assert r.json()["body_len"] == BP_SIZE
    assert r.json()["body_sha256"] == hashlib.sha256(block * (BP_SIZE // len(block))).hexdigest()
    print("upload: pushed %d MiB, RSS +%d MiB while stalled" % (pushed >> 20, grown >> 20))
    assert pushed < BP_SLACK, "client pushed %d MiB while the upstream read nothing" % (pushed >> 20)
    assert grown < BP_SLACK, "proxy RSS grew %d MiB with a stalled upstream" % (grown >> 20)


def test_download_backpressure(proxy, upstream, routed):
    sid, host = routed
    with proxy.connect(timeout=30) as c:
        assert c.request("GET", "/r/%s/warm" % sid, host=host).status == 200
        base = rss_bytes(proxy.proc.pid)
        sent0 = upstream.body_bytes_sent
        c.send(build_request("GET", "/r/%s/download" % sid, host, [("X-Test-Body-Size", str(BP_SIZE))]))
        time.sleep(1.0)  # the client reads nothing meanwhile
        grown = rss_bytes(proxy.proc.pid) - base
        pushed = upstream.body_bytes_sent - sent0
        r = c.read_response()
    assert r.status == 200 and len(r.body) == BP_SIZE, r
    assert r.body == pattern_bytes(BP_SIZE)
    print("download: pushed %d MiB, RSS +%d MiB while stalled" % (pushed >> 20, grown >> 20))
    assert pushed < BP_SLACK, "upstream pushed %d MiB while the client read nothing" % (pushed >> 20)
    assert grown < BP_SLACK, "proxy RSS grew %d MiB with a stalled client" % (grown >> 20)


# --------------------------------------------------------------------------
# A response cut by the upstream is never presented as complete.


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_truncated_response_is_not_complete(proxy, upstream, routed, chunked):
    sid, host = routed
    hdrs = [("X-Test-Body-Size", "100000"), ("X-Test-Partial", "1000")]
    if chunked:
        hdrs.append(("X-Test-Chunked", "1"))
    with proxy.connect() as c:
        c.send(build_request("GET", "/r/%s/cut" % sid, host, hdrs))
        try:
            r = c.read_response()
        except ConnectionClosed:
            r = None
    assert r is None, "a cut response was relayed as complete: %r" % r
    # and the proxy is fine
    assert proxy.get(host, "/r/%s/after" % sid).status == 200


# --------------------------------------------------------------------------
# Framing and connection hygiene


def test_upstream_connection_close_not_reused(proxy, upstream, routed):
    sid, host = routed
    with proxy.connect() as c:
        r1 = c.request("GET", "/r/%s/bye" % sid, host=host, headers=[("X-Test-Headers", '[["Connection", "close"]]')])
        assert r1.status == 200, r1
        # The upstream's close is not the client's: its connection stays up.
        r2 = c.request("GET", "/r/%s/next" % sid, host=host)
        assert r2.status == 200, r2
        assert r2.header("x-upstream-conn") != r1.header("x-upstream-conn")


def test_close_delimited_response(proxy, upstream, routed):
    sid, host = routed
    with proxy.connect() as c:
        r = c.request("GET", "/r/%s/eof" % sid, host=host,
                      headers=[("X-Test-No-Length", "1"), ("X-Test-Body-Size", "50000")])
        assert r.status == 200, r
        assert r.body == pattern_bytes(50000)
        # If the proxy re-framed it (chunked), the client connection survives.
        if r.header("transfer-encoding") or r.header("content-length"):
            assert c.request("GET", "/r/%s/after" % sid, host=host).status == 200


def test_target_and_headers_passed_unchanged(proxy, upstream, routed):
    sid, host = routed
    target = "/r/%s/a//b/../c/%%2F%%zz?x=%%2F&y=a+b&&z=" % sid
    r = proxy.get(host, target, headers=[("X-Multi", "one"), ("X-Other", "o"), ("X-Multi", "two"),
                                         ("x-CaSe", "VaLuE"), ("X-Empty", ""), ("User-Agent", "ua/1")])
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert rec.target == target  # no normalisation, no decoding
    assert rec.header_all("x-multi") == ["one", "two"]
    assert rec.header("x-case") == "VaLuE"
    assert rec.header_all("x-empty") == [""]
    assert rec.header("user-agent") == "ua/1"


def test_concurrent_clients(proxy, upstream, redis_server):
    import threading
    sids = [new_sid() for _ in range(4)]
    for s in sids:
        redis_server.set_record(s, public_record())
    errors = []

    def client(i):
        s = sids[i % len(sids)]
        try:
            with proxy.connect(timeout=15) as c:
                for j in range(5):
                    body = ("%d-%d" % (i, j)).encode() * 100
                    r = c.request("POST", "/r/%s/cc-%d-%d" % (s, i, j), host=sandbox_host(upstream.port, s), body=body)
                    if r.status != 200 or r.json()["body_sha256"] != hashlib.sha256(body).hexdigest():
                        errors.append((i, j, r))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((i, repr(e)))
    threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]
    total = sum(len(upstream.requests_for("/r/%s/cc-" % s)) for s in sids)
    assert total == 64 * 5


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 20 OK", b"HTTP/2.0 200 OK", b"HTTP/1.1 600 Nope",
                                         b"HTTP/1.1 200 OK\r\n: no-name"],
                         ids=["two-digit-status", "http2-version", "status-600",
                              "empty-header-name"])
def test_bad_status_line_from_upstream_is_502(proxy, redis_server, sid, status_line):
    """A response head a client could not frame (found by the request-path
    fuzzer), or one with a header without a name (llhttp lets it through, a
    request with one gets 400), is never relayed: the client gets the
    proxy's own 502."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]

    def serve():
        try:
            conn, _ = srv.accept()
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            conn.sendall(status_line + b"\r\nContent-Length: 2\r\n\r\nok")
            time.sleep(0.2)
            conn.close()
        except OSError:
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        redis_server.set_record(sid, public_record())
        r = proxy.get(sandbox_host(port, sid), "/bad-status")
        check_error(r, 502, sandbox_id=sid, port=port)
    finally:
        t.join(5)
        srv.close()


# --------------------------------------------------------------------------
# Forwarded (RFC 7239) and X-Real-IP: the same claims as X-Forwarded-For, so
# the same rule: only a peer in policy.trusted_proxies may make them.

ADDRESS_CLAIMS = [("Forwarded", "for=203.0.113.7;proto=https;host=evil.example"),
                  ("forwarded", "for=198.51.100.1"),
                  ("X-Real-IP", "203.0.113.7")]


def test_forwarded_and_x_real_ip_removed_from_untrusted_peer(proxy, upstream, routed):
    sid, host = routed
    r = proxy.get(host, "/r/%s/claims" % sid, headers=ADDRESS_CLAIMS + [("X-Other", "kept")])
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    assert not rec.has_header("forwarded"), rec.headers
    assert not rec.has_header("x-real-ip"), rec.headers
    assert rec.header_all("x-other") == ["kept"], rec.headers
    assert rec.header_all("x-forwarded-for") == ["127.0.0.1"], rec.headers


def test_forwarded_and_x_real_ip_kept_from_trusted_peer(make_proxy, upstream, routed):
    p = make_proxy({"policy": {"trusted_proxies": ["127.0.0.0/8"]}}, name="trusted")
    sid, host = routed
    r = p.get(host, "/r/%s/claims" % sid, headers=ADDRESS_CLAIMS)
    assert r.status == 200, r
    (rec,) = upstream.requests_for("/r/%s/" % sid)
    # As sent: every value, in order, nothing added.
    assert rec.header_all("forwarded") == ["for=203.0.113.7;proto=https;host=evil.example",
                                           "for=198.51.100.1"], rec.headers
    assert rec.header_all("x-real-ip") == ["203.0.113.7"], rec.headers
