"""Client and upstream timeouts (names and outcomes as documented in
README's configuration table): slow clients and stalled upstreams never hold
a connection forever. Short timeouts here; the assertions allow several
times the configured value."""

import time

import pytest

from harness import WS_UPGRADE_HEADERS, ConnectionClosed, build_request, check_error, public_record, sandbox_host

T = 0.5  # every timeout below, in seconds


@pytest.fixture(scope="module")
def proxy(make_proxy):
    ms = int(T * 1000)
    return make_proxy({
        "client": {"header_timeout_ms": ms, "keepalive_timeout_ms": ms, "body_timeout_ms": ms,
                   "websocket_idle_timeout_ms": ms},
        "upstream": {"idle_timeout_ms": ms, "response_timeout_ms": 0},
    }, name="timeouts")


@pytest.fixture
def routed(redis_server, upstream, sid):
    redis_server.set_record(sid, public_record())
    return sid, sandbox_host(upstream.port, sid)


def closed_within(c, seconds):
    """Reads until EOF; returns (elapsed, bytes received before EOF). Fails
    if the peer has not closed within `seconds`."""
    t0 = time.monotonic()
    deadline = t0 + seconds
    data = bytes(c.buf)
    try:
        while True:
            c.sock.settimeout(max(0.01, deadline - time.monotonic()))
            d = c.sock.recv(65536)
            if not d:
                break
            data += d
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError("connection still open after %.1fs (got %r)" % (seconds, data[:200]))
    return time.monotonic() - t0, data


def test_header_timeout_408(proxy, upstream, routed):
    sid, host = routed
    with proxy.connect(timeout=10) as c:
        c.send(("GET /r/%s/slowhead HTTP/1.1\r\nHost: %s\r\n" % (sid, host)).encode())
        r = c.read_response()
        check_error(r, 408)
        assert c.is_closed(timeout=5 * T)
    assert upstream.requests_for("/r/%s/" % sid) == []


def test_header_timeout_is_not_reset_by_dribbling(proxy, upstream, routed):
    # Slowloris: a byte every T/4 never completes the head; the header
    # timeout bounds the whole head, not the gap between bytes.
    sid, host = routed
    head = ("GET /r/%s/dribble HTTP/1.1\r\nHost: %s\r\nX-Pad: " % (sid, host)).encode() + b"a" * 200
    t0 = time.monotonic()
    with proxy.connect(timeout=10) as c:
        try:
            for i in range(len(head)):
                c.send(head[i:i + 1])
                time.sleep(T / 4)
                if time.monotonic() - t0 > 6 * T:
                    break
        except OSError:
            pass  # closed under us: fine
        closed_within(c, max(0.1, 8 * T - (time.monotonic() - t0)))
    assert upstream.requests_for("/r/%s/" % sid) == []


def test_keepalive_idle_closed_silently(proxy, upstream, routed):
    sid, host = routed
    with proxy.connect(timeout=10) as c:
        assert c.request("GET", "/r/%s/ka" % sid, host=host).status == 200
        dt, data = closed_within(c, 6 * T)
        assert data == b"", data  # RFC 9112 9.5: an idle connection just closes
        assert dt < 5 * T, "idle keep-alive connection open %.1fs" % dt


def test_body_timeout_closes(proxy, upstream, routed):
    sid, host = routed
    with proxy.connect(timeout=10) as c:
        c.send(build_request("POST", "/r/%s/slowbody" % sid, host, [("Content-Length", "100")]) + b"0123456789")
        dt, data = closed_within(c, 8 * T)
        assert dt < 6 * T, "stalled body held the connection %.1fs" % dt
        if data:  # a 408 before closing is fine too
            assert data.startswith(b"HTTP/1.1 408"), data[:200]
    # The upstream never saw a complete request.
    assert upstream.requests_for("/r/%s/" % sid) == []


def test_upstream_silent_504(proxy, upstream, routed):
    sid, host = routed
    hold = "hold-" + sid
    try:
        t0 = time.monotonic()
        r = proxy.get(host, "/r/%s/silent" % sid, headers=[("X-Test-Hold", hold)], timeout=10)
        check_error(r, 504, sandbox_id=sid, port=upstream.port)
        assert time.monotonic() - t0 < 6 * T
    finally:
        upstream.release(hold)


def test_upstream_stall_mid_response_cuts_client(proxy, upstream, routed):
    sid, host = routed
    hold = "hold-" + sid
    try:
        with proxy.connect(timeout=10) as c:
            c.send(build_request("GET", "/r/%s/stall" % sid, host, [
                ("X-Test-Body-Size", "100000"), ("X-Test-Partial", "1000"),
                ("X-Test-Partial-Then", "hold:" + hold)]))
            t0 = time.monotonic()
            try:
                r = c.read_response()
            except ConnectionClosed:
                r = None
            assert r is None, "stalled response relayed as complete: %r" % r
            assert time.monotonic() - t0 < 6 * T
    finally:
        upstream.release(hold)


def test_websocket_idle_timeout(proxy, upstream, routed):
    sid, host = routed
    with proxy.connect(timeout=10) as c:
        c.send(build_request("GET", "/r/%s/ws" % sid, host, WS_UPGRADE_HEADERS))
        assert c.read_response().status == 101
        # traffic keeps it open past the timeout...
        for _ in range(4):
            time.sleep(T / 2)
            c.send(b"x")
            assert c.recv_some(timeout=5) == b"x"
        # ...silence closes it
        dt, data = closed_within(c, 8 * T)
        assert dt < 6 * T, "idle tunnel open %.1fs" % dt


def test_slow_upload_is_not_an_upstream_timeout(proxy, upstream, routed):
    """The upstream's timeouts start once the request is sent: an upload that
    takes 4 x the upstream idle timeout (each pause shorter than the body
    timeout) is answered by the app, not cut with a 504."""
    sid, host = routed
    body = b"x" * 40
    with proxy.connect(timeout=10) as c:
        c.send(build_request("POST", "/r/%s/slowup" % sid, host, [("Content-Length", str(len(body)))]))
        for i in range(0, len(body), 5):
            time.sleep(T / 2)
            c.send(body[i:i + 5])
        r = c.read_response()
    assert r.status == 200, r
    got = upstream.requests_for("/r/%s/slowup" % sid)
    assert len(got) == 1 and got[0].body == body
