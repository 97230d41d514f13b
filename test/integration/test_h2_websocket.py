"""SPEC section 8: WebSockets over HTTP/2 (RFC 8441 extended CONNECT) become
an HTTP/1.1 Upgrade to the sandbox. The client (python3-h2) speaks real
WebSocket frames (masked) over one stream; the sandbox is a real RFC 6455
server (upstreams.WebSocketUpstream), so what crosses the proxy is checked
at both ends: the upstream's handshake request, the proxy's check of its
Sec-WebSocket-Accept, the bytes both ways, and how each side's end (FIN,
RST) reaches the other."""

import base64
import json
import os
import signal
import time

import pytest
from hyperframe.frame import DataFrame, SettingsFrame

from h2client import CANCEL, NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, H2Client, RawH2, tls_context
from harness import (WS_UPGRADE_HEADERS, build_request, new_sid, private_record,
                     public_record, sandbox_host, tunnel_echo, wait_until)
from upstreams import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, WsParser,
                       ws_frame)
from tls_proxy_fixtures import access_log, certs, proxy, wsup  # noqa: F401 (fixtures)

ENABLE_CONNECT_PROTOCOL = 0x8


@pytest.fixture
def routed(redis_server, wsup, sid):
    redis_server.set_record(sid, public_record())
    return sid, sandbox_host(wsup.port, sid)


class WS:
    """A WebSocket on one stream of an H2Client (RFC 8441): CONNECT with
    :protocol websocket, then masked frames as DATA."""

    def __init__(self, c, authority, path, headers=(), version=True):
        self.c = c
        hdrs = [(":protocol", "websocket")]
        if version:
            hdrs.append(("sec-websocket-version", "13"))
        self.sid = c.request("CONNECT", path, authority, hdrs + list(headers), end_stream=False)
        self.parser = WsParser()
        self.taken = 0
        self.inbox = []

    @property
    def r(self):
        return self.c.results[self.sid]

    def opened(self, timeout=5):
        """The response head (or the stream's end); returns the Result."""
        self.c.wait_for(lambda: self.r.status is not None or self.r.done, timeout, "response head")
        return self.r

    def send(self, payload, op=OP_BINARY, end=False):
        self.c.send_body(self.sid, ws_frame(op, payload, mask=True), end_stream=end)

    def _poll(self):
        body = self.r.body
        if len(body) > self.taken:
            self.inbox += self.parser.feed(bytes(body[self.taken:]))
            self.taken = len(body)
        return bool(self.inbox)

    def recv(self, timeout=10):
        """The next message: (opcode, payload)."""
        self.c.wait_for(self._poll, timeout, "a WebSocket message on stream %d" % self.sid)
        op, payload, masked = self.inbox.pop(0)
        assert not masked, "a server frame came masked"
        return op, payload

    def echo(self, payload, op=OP_BINARY):
        self.send(payload, op)
        got = self.recv()
        assert got == (op, payload), (got[0], len(got[1]), op, len(payload))


def open_ws(c, host, path, headers=()):
    ws = WS(c, host, path, headers)
    r = ws.opened()
    assert r.status == 200 and not r.done, r
    return ws


def conn_of(ws):
    return int(ws.r.header("x-upstream-conn"))


# --------------------------------------------------------------------------
# The handshake


def test_settings_advertise_extended_connect(proxy):
    # RFC 8441 section 3: the server says it takes :protocol
    with RawH2(proxy.port) as raw:
        f = raw.until(lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags)
        assert f is not None and f.settings.get(ENABLE_CONNECT_PROTOCOL) == 1, f
    with H2Client(proxy.port) as c:
        c.wait_for(lambda: ENABLE_CONNECT_PROTOCOL in c.remote_settings, what="SETTINGS")
        assert c.remote_settings[ENABLE_CONNECT_PROTOCOL] == 1


def test_handshake_becomes_http11_upgrade(proxy, wsup, redis_server):
    sid = new_sid()
    redis_server.set_record(sid, private_record("tok-" + sid))
    host = sandbox_host(wsup.port, sid)
    with H2Client(proxy.port) as c:
        ws = open_ws(c, host, "/r/%s/chat?room=1" % sid, [
            ("e2b-traffic-access-token", "tok-" + sid),
            ("sec-websocket-protocol", "chat, superchat"),
            ("sec-websocket-extensions", "x-test-ext"),
            ("x-test-ws-extensions", "x-test-ext"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),  # not used in HTTP/2: dropped
            ("origin", "https://app.example")])
        r = ws.r
        # the 101 is the client's 200, with what the client negotiates
        assert r.header("sec-websocket-protocol") == "chat", r
        assert r.header("sec-websocket-extensions") == "x-test-ext", r
        names = {k for k, _ in r.headers}
        assert not names & {"sec-websocket-accept", "upgrade", "connection", "content-length",
                            "transfer-encoding"}, r
        ws.echo(b"hello", OP_TEXT)
    (rec,) = wsup.requests_for("/r/%s/chat" % sid)
    assert rec.method == "GET" and rec.version == "HTTP/1.1" and rec.target == "/r/%s/chat?room=1" % sid
    assert rec.header_all("host") == [host]
    assert rec.header("upgrade", "").lower() == "websocket"
    assert "upgrade" in rec.header("connection", "").lower()
    assert rec.header_all("sec-websocket-version") == ["13"]
    assert rec.header_all("sec-websocket-protocol") == ["chat, superchat"]
    assert rec.header_all("sec-websocket-extensions") == ["x-test-ext"]
    assert rec.header_all("origin") == ["https://app.example"]
    # one key, the proxy's: 16 random bytes in base64, not the client's
    (key,) = rec.header_all("sec-websocket-key")
    assert len(base64.b64decode(key, validate=True)) == 16 and key != "dGhlIHNhbXBsZSBub25jZQ=="
    assert not rec.has_header("e2b-traffic-access-token")
    assert rec.header_all("x-forwarded-proto") == ["http"]
    assert rec.header_all("x-forwarded-host") == [host]
    assert not rec.has_header("content-length") and not rec.has_header("transfer-encoding")


def test_one_host_for_many_sandboxes(proxy, wsup, redis_server):
    # the SDK's host: sandbox.<domain> with the sandbox in e2b-sandbox-*
    a, b = new_sid(), new_sid()
    for s in (a, b):
        redis_server.set_record(s, public_record())
    with H2Client(proxy.port) as c:
        wss = [open_ws(c, "sandbox.sandbox.test", "/r/%s/sdk" % s,
                       [("e2b-sandbox-id", s), ("e2b-sandbox-port", str(wsup.port))]) for s in (a, b)]
        for ws in wss:
            ws.echo(b"sdk")
    for s in (a, b):
        (rec,) = wsup.requests_for("/r/%s/sdk" % s)
        assert rec.header("upgrade", "").lower() == "websocket"


def test_keys_differ_per_websocket(proxy, wsup, routed):
    sid, host = routed
    with H2Client(proxy.port) as c:
        for i in range(3):
            open_ws(c, host, "/r/%s/keys" % sid)
    keys = {r.header("sec-websocket-key") for r in wsup.requests_for("/r/%s/keys" % sid)}
    assert len(keys) == 3


SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537, 200000, 1 << 20]


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
def test_echo_messages_of_every_size(proxy, certs, wsup, routed, tls):
    sid, host = routed
    if tls:
        c = H2Client(proxy.extra_ports[0], ctx=tls_context([certs["cert"]]), server_name=host, timeout=10)
        assert c.alpn == "h2"
    else:
        c = H2Client(proxy.port, timeout=10)
    with c:
        ws = open_ws(c, host, "/r/%s/sizes" % sid)
        for n in SIZES:
            ws.echo(os.urandom(n))
        ws.echo("héllo wörld".encode(), OP_TEXT)
        # fragments (a message in three frames) and a ping between them
        c.send_body(ws.sid, ws_frame(OP_TEXT, b"frag-", mask=True, fin=False), end_stream=False)
        c.send_body(ws.sid, ws_frame(OP_PING, b"p1", mask=True), end_stream=False)
        c.send_body(ws.sid, ws_frame(0, b"ment-", mask=True, fin=False), end_stream=False)
        c.send_body(ws.sid, ws_frame(0, b"ed", mask=True), end_stream=True)
        assert ws.recv() == (OP_PONG, b"p1")
        assert ws.recv() == (OP_TEXT, b"frag-ment-ed")
        assert ws.recv() == (OP_TEXT, b"after-eof")  # the END_STREAM above: a half-close
        assert c.wait(ws.sid).ended
    assert wsup.unmasked == 0


def test_pipelined_messages_in_order(proxy, wsup, routed):
    sid, host = routed
    with H2Client(proxy.port, timeout=10) as c:
        ws = open_ws(c, host, "/r/%s/pipeline" % sid)
        msgs = [os.urandom(n) for n in (10, 70000, 3, 100000, 0, 5)]
        c.send_body(ws.sid, b"".join(ws_frame(OP_BINARY, m, mask=True) for m in msgs), end_stream=False)
        for m in msgs:
            assert ws.recv() == (OP_BINARY, m)


def test_data_before_the_200_and_bytes_right_after_the_101(proxy, wsup, routed):
    # A client that does not wait for the 200: its first frame waits in the
    # proxy (within the stream window) until the sandbox switched. And what
    # the sandbox writes with its 101 is the first DATA.
    sid, host = routed
    with H2Client(proxy.port) as c:
        ws = WS(c, host, "/r/%s/early" % sid, [("x-test-ws-greeting", "welcome")])
        ws.send(b"early bird", OP_TEXT)
        assert ws.opened().status == 200
        assert ws.recv() == (OP_TEXT, b"welcome")
        assert ws.recv() == (OP_TEXT, b"early bird")


def test_two_websockets_and_requests_on_one_connection(proxy, wsup, upstream, redis_server):
    a, b, plain = new_sid(), new_sid(), new_sid()
    for s in (a, b):
        redis_server.set_record(s, public_record())
    redis_server.set_record(plain, public_record())
    ha, hb, hp = sandbox_host(wsup.port, a), sandbox_host(wsup.port, b), sandbox_host(upstream.port, plain)
    with H2Client(proxy.port, timeout=10) as c:
        wa = open_ws(c, ha, "/r/%s/two" % a)
        wb = open_ws(c, hb, "/r/%s/two" % b)
        assert conn_of(wa) != conn_of(wb)
        gets = []
        for i in range(5):
            ma, mb = os.urandom(1000 * (i + 1)), os.urandom(70000 + i)
            wa.send(ma)
            wb.send(mb)
            gets.append(c.request("GET", "/r/%s/beside-%d" % (plain, i), hp))
            assert wb.recv() == (OP_BINARY, mb)
            assert wa.recv() == (OP_BINARY, ma)
        for i, s in enumerate(gets):
            r = c.wait(s)
            assert r.status == 200 and r.json()["target"] == "/r/%s/beside-%d" % (plain, i), r
        # one WebSocket ends, the other and the connection go on
        wa.send(b"bye", OP_TEXT)
        assert wa.recv()[0] == OP_CLOSE
        c.wait(wa.sid)
        wb.echo(b"still here", OP_TEXT)
        assert c.get(hp, "/r/%s/after" % plain).status == 200


# --------------------------------------------------------------------------
# Refusals


def test_private_sandbox_without_token_refused(proxy, wsup, redis_server):
    sid = new_sid()
    redis_server.set_record(sid, private_record("tok-" + sid))
    host = sandbox_host(wsup.port, sid)
    with H2Client(proxy.port) as c:
        ws = WS(c, host, "/r/%s/private" % sid)
        ws.send(b"sent before the answer")
        r = c.wait(ws.sid)
        assert r.status == 403 and r.ended, r
        assert r.json()["code"] == 403 and r.json()["sandboxId"] == sid
        ws = WS(c, host, "/r/%s/private" % sid, [("e2b-traffic-access-token", "wrong")])
        assert c.wait(ws.sid).status == 403
        # the connection goes on; with the token it opens
        ws = open_ws(c, host, "/r/%s/private-ok" % sid, [("e2b-traffic-access-token", "tok-" + sid)])
        ws.echo(b"in")
    assert not wsup.requests_for("/r/%s/private?" % sid) and not wsup.requests_for("/r/%s/private " % sid)
    assert len(wsup.requests_for("/r/%s/private" % sid)) == 1  # only private-ok


def test_unknown_sandbox_502(proxy, wsup):
    sid = new_sid()
    with H2Client(proxy.port) as c:
        r = c.wait(WS(c, sandbox_host(wsup.port, sid), "/ws").sid)
        assert r.status == 502 and r.json()["sandboxId"] == sid, r


@pytest.mark.parametrize("status", [403, 404, 426])
def test_upstream_refusing_the_upgrade_passes_through(proxy, wsup, routed, status):
    sid, host = routed
    with H2Client(proxy.port) as c:
        ws = WS(c, host, "/r/%s/refuse-%d" % (sid, status), [("x-test-ws-status", str(status))])
        r = c.wait(ws.sid)
        assert r.status == status and r.ended, r
        assert r.json() == {"refused": True, "target": "/r/%s/refuse-%d" % (sid, status)}
        assert int(r.header("content-length")) == len(r.body)
        assert c.get(host, "/r/%s/after-refusal" % sid, [("x-test-ws-status", "404")]).status == 404


def test_upstream_200_without_switching_is_502(proxy, wsup, routed):
    # a 2xx to an extended CONNECT would tell the client its tunnel is open
    sid, host = routed
    with H2Client(proxy.port) as c:
        r = c.wait(WS(c, host, "/r/%s/no-switch" % sid, [("x-test-ws-status", "200")]).sid)
        assert r.status == 502 and r.ended, r
        assert r.json()["sandboxId"] == sid


def test_wrong_accept_is_502(proxy, wsup, routed):
    sid, host = routed
    with H2Client(proxy.port) as c:
        ws = WS(c, host, "/r/%s/bad-accept" % sid, [("x-test-ws-accept", "wrong")])
        r = c.wait(ws.sid)
        assert r.status == 502 and r.ended, r
        body = r.json()
        assert body["sandboxId"] == sid and body["port"] == wsup.port
        assert "Sec-WebSocket-Accept" in body["message"], body
    (rec,) = wsup.requests_for("/r/%s/bad-accept" % sid)
    wait_until(lambda: "closed" in wsup.events_of(rec.conn_id), what="the upstream connection closed")


def test_malformed_and_unsupported_extended_connect(proxy, wsup, routed):
    sid, host = routed
    base = [(":method", "CONNECT"), (":scheme", "http"), (":authority", host)]
    with RawH2(proxy.port) as raw:
        # another protocol: 501, the request is fine, the proxy does not do it
        raw.send(raw.headers(1, base + [(":path", "/r/%s/udp" % sid), (":protocol", "connect-udp")],
                             end_stream=False))
        st, _, body, ended, _ = raw.response(1)
        assert st == 501 and ended and json.loads(body)["code"] == 501
        # a CONNECT has no content (RFC 9110 section 9.3.6)
        raw.send(raw.headers(3, base + [(":path", "/r/%s/cl" % sid), (":protocol", "websocket"),
                                        ("content-length", "10")], end_stream=False))
        st, _, _, ended, _ = raw.response(3)
        assert st == 400 and ended
        # plain CONNECT keeps its 405
        raw.send(raw.headers(5, [(":method", "CONNECT"), (":authority", host)], end_stream=False))
        st, _, _, ended, _ = raw.response(5)
        assert st == 405 and ended
        # malformed (RFC 8441 section 4): :protocol without CONNECT, or without :path
        # or :scheme -> stream error PROTOCOL_ERROR (nghttp2 checks them)
        raw.send(raw.headers(7, [(":method", "GET"), (":scheme", "http"), (":authority", host),
                                 (":path", "/r/%s/get-proto" % sid), (":protocol", "websocket")],
                             end_stream=False))
        assert raw.rst(7).error_code == PROTOCOL_ERROR
        raw.send(raw.headers(9, [(":method", "CONNECT"), (":scheme", "http"), (":authority", host),
                                 (":protocol", "websocket")], end_stream=False))
        assert raw.rst(9).error_code == PROTOCOL_ERROR
        raw.send(raw.headers(11, [(":method", "CONNECT"), (":path", "/r/%s/noscheme" % sid),
                                  (":authority", host), (":protocol", "websocket")], end_stream=False))
        assert raw.rst(11).error_code == PROTOCOL_ERROR
        # the connection is fine
        raw.send(raw.headers(13, [(":method", "GET"), (":scheme", "http"), (":authority", host),
                                  (":path", "/r/%s/after" % sid), ("x-test-ws-status", "404")]))
        st, _, _, _, _ = raw.response(13)
        assert st == 404
    assert not [r for r in wsup.requests_for("/r/%s/" % sid) if "/after" not in r.target]


def test_trailers_on_a_tunnel_are_a_stream_error(proxy, wsup, routed):
    # RFC 9113 section 8.5: only DATA and stream management on a CONNECT stream
    sid, host = routed
    with H2Client(proxy.port) as c:
        ws = open_ws(c, host, "/r/%s/trailers" % sid)
        ws.echo(b"x")
        cid = conn_of(ws)
        c.conn.send_headers(ws.sid, [(b"x-trailer", b"1")], end_stream=True)
        c.flush()
        assert c.wait(ws.sid).reset == PROTOCOL_ERROR
    wait_until(lambda: "closed" in wsup.events_of(cid), what="the upstream connection closed")


# --------------------------------------------------------------------------
# Ends


def test_client_end_stream_is_a_half_close(proxy, wsup, routed):
    # END_STREAM is the TCP FIN (RFC 8441 section 5): the sandbox reads EOF
    # and may still answer; its EOF then ends the stream, cleanly.
    sid, host = routed
    with H2Client(proxy.port) as c:
        ws = open_ws(c, host, "/r/%s/half" % sid)
        cid = conn_of(ws)
        ws.send(b"last words", OP_TEXT, end=True)
        assert ws.recv() == (OP_TEXT, b"last words")
        assert ws.recv() == (OP_TEXT, b"after-eof")  # said after the sandbox read EOF
        r = c.wait(ws.sid)
        assert r.ended and r.reset is None, r
        assert wsup.events_of(cid)[:2] == ["open", "eof"], wsup.events_of(cid)
        assert c.get(host, "/r/%s/conn-ok" % sid, [("x-test-ws-status", "404")]).status == 404


def test_client_reset_closes_the_upstream(proxy, wsup, routed):
    sid, host = routed
    with H2Client(proxy.port) as c:
        ws = open_ws(c, host, "/r/%s/rst" % sid)
        ws.echo(b"x" * 1000)
        cid = conn_of(ws)
        assert "closed" not in wsup.events_of(cid)
        c.reset(ws.sid, CANCEL)
        wait_until(lambda: "closed" in wsup.events_of(cid), timeout=3, what="the upstream connection closed")
        # the connection and its other streams are not affected
        ws2 = open_ws(c, host, "/r/%s/rst-after" % sid)
        ws2.echo(b"y")


def test_upstream_close_ends_the_stream(proxy, wsup, routed):
    sid, host = routed
    with H2Client(proxy.port) as c:
        ws = open_ws(c, host, "/r/%s/bye" % sid)
        ws.send(b"bye", OP_TEXT)  # the sandbox sends a Close and closes its connection
        op, payload = ws.recv()
        assert op == OP_CLOSE and payload == b"\x03\xe8"
        r = c.wait(ws.sid)
        # END_STREAM (a clean end, never a reset in its place), then a
        # RST_STREAM(NO_ERROR) asks the client to stop sending (RFC 9113 8.1)
        assert r.ended and r.reset in (None, NO_ERROR), r
        assert c.get(host, "/r/%s/conn-ok" % sid, [("x-test-ws-status", "404")]).status == 404


def test_upstream_reset_is_cancel(proxy, wsup, routed):
    # RST exceptions are RST_STREAM(CANCEL) (RFC 8441 section 5)
    sid, host = routed
    with H2Client(proxy.port) as c:
        ws = open_ws(c, host, "/r/%s/up-rst" % sid)
        ws.echo(b"x")
        ws.send(b"rst", OP_TEXT)  # the sandbox resets its connection
        r = c.wait(ws.sid)
        assert r.reset == CANCEL and not r.ended, r


def test_idle_websocket_is_closed(make_proxy, wsup, redis_server, sid):
    p = make_proxy({"client": {"websocket_idle_timeout_ms": 600}}, name="wsidle")
    redis_server.set_record(sid, public_record())
    host = sandbox_host(wsup.port, sid)
    with H2Client(p.port) as c:
        ws = open_ws(c, host, "/r/%s/idle" % sid)
        for _ in range(4):  # traffic keeps it open past the timeout
            time.sleep(0.3)
            ws.echo(b"tick")
        t0 = time.monotonic()
        r = c.wait(ws.sid, timeout=5)
        assert r.reset == CANCEL, r
        assert 0.4 < time.monotonic() - t0 < 3
        wait_until(lambda: "closed" in wsup.events_of(conn_of(ws)), what="the upstream connection closed")


# --------------------------------------------------------------------------
# Backpressure


def rss_kib(proxy):
    for line in open("/proc/%d/status" % proxy.proc.pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_slow_reader_stops_the_upstream(make_proxy, wsup, redis_server, sid):
    # A client that reads nothing: the proxy queues at most a stream's
    # bound, then stops reading the sandbox, whose writes block; memory
    # stays put however much the sandbox has to say.
    p = make_proxy({"workers": 1}, name="wsslow")
    redis_server.set_record(sid, public_record())
    host = sandbox_host(wsup.port, sid)
    with H2Client(p.port, auto_ack=False, timeout=10) as c:
        ws = open_ws(c, host, "/r/%s/flood" % sid)
        rss0 = rss_kib(p)
        before = wsup.flood_sent
        ws.send(b"flood:%d" % (256 << 20), OP_TEXT)
        time.sleep(1.5)
        mid = wsup.flood_sent - before
        time.sleep(1.0)
        taken = wsup.flood_sent - before
        # the client's window (64 KiB), the stream's queue (256 KiB) and the
        # loopback sockets' buffers: nowhere near 256 MiB, and no longer growing
        assert taken < 24 << 20, "the sandbox wrote %d bytes to a client that reads none" % taken
        assert taken - mid < 1 << 20, "still growing: %d then %d" % (mid, taken)
        assert rss_kib(p) - rss0 < 16 * 1024, "RSS grew by %d KiB" % (rss_kib(p) - rss0)
        assert len(ws.r.body) <= 65535 + 65535
        # reading again resumes the sandbox
        c.auto_ack = True
        c.conn.acknowledge_received_data(len(ws.r.body), ws.sid)
        c.flush()
        got = 0
        while got < (8 << 20):
            op, payload = ws.recv()
            got += len(payload)
        assert wsup.flood_sent - before > taken
        c.reset(ws.sid, CANCEL)


def test_slow_sandbox_holds_the_client_back(make_proxy, redis_server, sid):
    # The other way: a sandbox that does not read takes no more than its
    # socket buffers, the upstream's high-water mark and a stream window.
    import socket
    import threading
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    held = []

    def serve():
        s, _ = lsock.accept()
        held.append(s)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        key = [l.split(b":", 1)[1].strip() for l in data.split(b"\r\n")
               if l.lower().startswith(b"sec-websocket-key:")][0].decode()
        from upstreams import ws_accept
        s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n\r\n" % ws_accept(key)).encode())
        # and never read again
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    p = make_proxy({"workers": 1}, name="wsdeaf")
    redis_server.set_record(sid, public_record())
    try:
        with H2Client(p.port, timeout=10) as c:
            ws = open_ws(c, sandbox_host(port, sid), "/r/%s/deaf" % sid)
            rss0 = rss_kib(p)
            frame = ws_frame(OP_BINARY, b"z" * 16000, mask=True)
            sent = 0
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and sent < (64 << 20):
                window = min(c.conn.local_flow_control_window(ws.sid), c.conn.max_outbound_frame_size)
                if window < len(frame):
                    c.pump(0.05)
                    continue
                c.conn.send_data(ws.sid, frame)
                c.flush()
                sent += len(frame)
            assert sent < 24 << 20, "the client sent %d bytes to a sandbox that reads none" % sent
            assert rss_kib(p) - rss0 < 16 * 1024
    finally:
        for s in held:
            s.close()
        lsock.close()


# --------------------------------------------------------------------------
# Streams, limits, accounting, drain


def test_counts_against_stream_and_sandbox_limits(make_proxy, wsup, redis_server, sid):
    p = make_proxy({"http2": {"max_concurrent_streams": 2}}, name="wslimits")
    redis_server.set_record(sid, public_record(maxConnections=1))
    host = sandbox_host(wsup.port, sid)
    other = new_sid()
    redis_server.set_record(other, public_record())
    ohost = sandbox_host(wsup.port, other)
    with H2Client(p.port) as c:
        a = open_ws(c, host, "/r/%s/lim-a" % sid)
        # maxConnections: the open WebSocket holds the sandbox's one slot
        r = c.wait(WS(c, host, "/r/%s/lim-b" % sid).sid)
        assert r.status == 429 and r.json()["connectionLimit"] == 1, r
        a.send(b"bye", OP_TEXT)
        c.wait(a.sid)
        a2 = open_ws(c, host, "/r/%s/lim-c" % sid)  # the slot came back
        a2.echo(b"ok")
    # two open WebSockets are two open streams: a third is refused
    # (http2.max_concurrent_streams), the two go on
    ws_head = lambda n: [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                         (":path", "/r/%s/lim-%d" % (other, n)), (":authority", ohost),
                         ("sec-websocket-version", "13")]
    with RawH2(p.port) as raw:
        raw.send(raw.headers(1, ws_head(1), end_stream=False), raw.headers(3, ws_head(3), end_stream=False))
        for n in (1, 3):
            raw.until(lambda f, n=n: f.stream_id == n and "END_HEADERS" in getattr(f, "flags", ()))
            assert dict(raw.blocks[n][0])[":status"] == "200", raw.blocks
        raw.send(raw.headers(5, ws_head(5), end_stream=False))
        assert raw.rst(5).error_code == REFUSED_STREAM
        raw.send(raw.data(3, ws_frame(OP_TEXT, b"on", mask=True)))
        f = raw.until(lambda f: isinstance(f, DataFrame) and f.stream_id == 3)
        assert f is not None and f.data == ws_frame(OP_TEXT, b"on")
    assert len(wsup.requests_for("/r/%s/lim-" % other)) == 2


def test_access_log_and_metrics(proxy, wsup, routed, access_log):
    sid, host = routed
    before = proxy.metric("edgeproxy_requests_by_protocol_total", protocol="http2")
    with H2Client(proxy.port) as c:
        ws = open_ws(c, host, "/r/%s/logged" % sid)
        wait_until(lambda: proxy.metric("edgeproxy_tunnels", protocol="http2") >= 1,
                   what="the tunnel in the gauge")
        ws.echo(b"x")
        ws.send(b"bye", OP_TEXT)
        ws.recv()
        c.wait(ws.sid)
    wait_until(lambda: proxy.metric("edgeproxy_tunnels", protocol="http2") == 0,
               what="the tunnel out of the gauge")
    assert proxy.metric("edgeproxy_requests_by_protocol_total", protocol="http2") >= before + 1

    def line():
        if not access_log.exists():
            return None
        for l in access_log.read_text().splitlines():
            obj = json.loads(l)
            if obj["path"] == "/r/%s/logged" % sid:
                return obj
    wait_until(line, timeout=5, what="the access log line")
    obj = line()
    assert obj["method"] == "CONNECT" and obj["protocol"] == "HTTP/2" and obj["status"] == 200, obj
    assert obj["sandbox_id"] == sid and obj["port"] == wsup.port and obj["upstream"], obj


def test_http1_tunnels_in_the_gauge_too(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    base = proxy.metric("edgeproxy_tunnels", protocol="http1")
    with proxy.connect() as c:
        c.send(build_request("GET", "/r/%s/h1ws" % sid, host, WS_UPGRADE_HEADERS))
        assert c.read_response().status == 101
        tunnel_echo(c, b"ping")
        assert proxy.metric("edgeproxy_tunnels", protocol="http1") == base + 1
    wait_until(lambda: proxy.metric("edgeproxy_tunnels", protocol="http1") == base,
               what="the HTTP/1.1 tunnel out of the gauge")


def test_drain_sends_goaway_and_lets_the_websocket_finish(make_proxy, wsup, redis_server, sid):
    # As HTTP/1.1 WebSockets: a drain does not cut an open tunnel (it ends
    # by itself, or drain.timeout_ms ends the process); HTTP/2 adds the
    # GOAWAY, so no new stream starts on the connection. (Frames by hand:
    # python3-h2 sends nothing more once it read a GOAWAY.)
    p = make_proxy({"drain": {"timeout_ms": 20000}}, name="wsdrain")
    redis_server.set_record(sid, public_record())
    host = sandbox_host(wsup.port, sid)
    head = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
            (":path", "/r/%s/drain" % sid), (":authority", host), ("sec-websocket-version", "13")]
    echoed = lambda msg: lambda f: isinstance(f, DataFrame) and f.stream_id == 1 and msg in f.data
    with RawH2(p.port) as raw:
        raw.send(raw.headers(1, head, end_stream=False))
        raw.until(lambda f: f.stream_id == 1 and "END_HEADERS" in getattr(f, "flags", ()))
        assert dict(raw.blocks[1][0])[":status"] == "200"
        p.signal(signal.SIGTERM)
        g = raw.goaway()
        assert g is not None and g.error_code == NO_ERROR and g.last_stream_id >= 1, raw.frames
        time.sleep(0.3)
        assert p.alive()
        raw.send(raw.data(1, ws_frame(OP_TEXT, b"still open during the drain", mask=True)))
        assert raw.until(echoed(b"still open during the drain")) is not None, raw.frames
        # a new stream is not taken any more
        raw.send(raw.headers(3, head, end_stream=False))
        raw.send(raw.data(1, ws_frame(OP_TEXT, b"bye", mask=True)))
        assert raw.until(lambda f: isinstance(f, DataFrame) and f.stream_id == 1 and
                         "END_STREAM" in f.flags) is not None, raw.frames
        assert p.wait(5) == 0
    assert len(wsup.requests_for("/r/%s/drain" % sid)) == 1
