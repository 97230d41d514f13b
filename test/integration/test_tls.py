"""TLS on the stream layer (core/stream.c): what a TLS layer gets wrong.
Bodies of several MiB both ways (a slow reader makes every write block),
a ClientHello that arrives a byte at a time, a client that never finishes
its handshake, renegotiation and key updates, session resumption (openssl
s_client, TLS 1.2 and 1.3, both certificates), close_notify both ways, and
a client that resets mid-response (everything freed; the module's proxy
stops with no ASan/LSan report)."""

import hashlib
import os
import socket
import ssl
import struct
import select
import subprocess
import time

import pytest

from harness import (WS_UPGRADE_HEADERS, ConnectionClosed, Client, build_request, make_cert, public_record,
                     wait_until)
from upstreams import pattern_bytes

HEADER_TIMEOUT_MS = 1500


@pytest.fixture(scope="module")
def certs(workdir):
    d = workdir / "tls"
    d.mkdir()
    return {"a": make_cert(d, "a", "sandbox.test"), "b": make_cert(d, "b", "sandbox2.test")}


@pytest.fixture(scope="module")
def proxy(make_proxy, certs):
    # extra_ports[0]: TLS, certificate a first (the default), b by SNI.
    return make_proxy({"domains": ["sandbox.test", "sandbox2.test"]},
                      extra_listeners=[{"tls": {"certificates": [certs["a"], certs["b"]]}}])


@pytest.fixture(scope="module")
def impatient(make_proxy, certs):
    """A short header timeout (it bounds the handshake too)."""
    return make_proxy({"domains": ["sandbox.test"], "client": {"header_timeout_ms": HEADER_TIMEOUT_MS}},
                      extra_listeners=[{"tls": {"certificates": [certs["a"]]}}], name="impatient")


@pytest.fixture
def routed(redis_server, upstream, sid):
    redis_server.set_record(sid, public_record())
    return sid, "%d-%s.sandbox.test" % (upstream.port, sid)


def client_ctx(version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def tls_connect(proxy, host, version=None, rcvbuf=None, ragged_ok=True):
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window
    raw.settimeout(10)
    raw.connect(("127.0.0.1", proxy.extra_ports[0]))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client_ctx(version).wrap_socket(raw, server_hostname=host, suppress_ragged_eofs=ragged_ok)


VERSIONS = [pytest.param(ssl.TLSVersion.TLSv1_2, id="tls1.2"), pytest.param(ssl.TLSVersion.TLSv1_3, id="tls1.3")]


# --------------------------------------------------------------------------
# Bodies


@pytest.mark.parametrize("version", VERSIONS)
def test_large_response_to_slow_reader_arrives_intact(proxy, upstream, routed, version):
    """8 MiB down to a client with a 16 KiB receive buffer that reads in
    small sips: the proxy's SSL_write blocks (WANT_WRITE) hundreds of times
    and must resume each with the same bytes."""
    sid, host = routed
    size = 8 << 20
    s = tls_connect(proxy, host, version, rcvbuf=16384)
    with Client(sock=s, timeout=30) as c:
        c.send(build_request("GET", "/r/%s/big" % sid, host, [("X-Test-Body-Size", str(size))]))
        _, status, _, headers, _ = c.read_head()
        assert status == 200
        assert dict((k.lower(), v) for k, v in headers)["content-length"] == str(size)
        h = hashlib.sha256(bytes(c.buf))
        got = len(c.buf)
        c.buf.clear()
        sips = 0
        while got < size:
            data = s.recv(min(8192, size - got))
            assert data, "closed after %d of %d bytes" % (got, size)
            h.update(data)
            got += len(data)
            sips += 1
            if sips % 8 == 0:
                time.sleep(0.001)
        assert h.hexdigest() == hashlib.sha256(pattern_bytes(size)).hexdigest()
        # The connection is still good for the next request.
        assert c.request("GET", "/r/%s/after" % sid, host=host).status == 200


@pytest.mark.parametrize("version", VERSIONS)
def test_large_upload_reaches_upstream_intact(proxy, upstream, routed, version):
    sid, host = routed
    size = (8 << 20) + 12345
    body = os.urandom(size)
    s = tls_connect(proxy, host, version)
    with Client(sock=s, timeout=30) as c:
        r = c.request("POST", "/r/%s/up" % sid, host=host, headers=[("X-Test-Discard-Body", "1")], body=body)
        assert r.status == 200, r
        assert r.json()["body_len"] == size
        assert r.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


# --------------------------------------------------------------------------
# Handshakes


class MemTLS:
    """A TLS client over a raw socket through memory BIOs: the test decides
    how the bytes go out (one at a time, a TCP half-close)."""

    def __init__(self, proxy, host):
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = client_ctx().wrap_bio(self.inc, self.out, server_hostname=host)
        self.sock = socket.create_connection(("127.0.0.1", proxy.extra_ports[0]), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def pump(self, step):
        """Runs step() until it stops wanting to read; returns its result."""
        while True:
            try:
                r = step()
                self.flush()
                return r
            except ssl.SSLWantReadError:
                self.flush()
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionClosed("the proxy closed the connection")
                self.inc.write(data)

    def flush(self):
        pending = self.out.read()
        if pending:
            self.sock.sendall(pending)

    def send(self, data):
        self.obj.write(data)
        self.flush()

    def read(self):
        data = self.pump(lambda: self.obj.read(65536))
        if not data:
            raise ConnectionClosed("the proxy sent close_notify")
        return data

    def read_head(self):
        resp = b""
        while b"\r\n\r\n" not in resp:
            resp += self.read()
        return resp


def test_websocket_over_tls_echoes_4_mib(proxy, upstream, routed):
    """A tunnel with a TLS side: 4 MiB sent while the echo comes back, both
    directions under backpressure (one thread: select() interleaves)."""
    sid, host = routed
    size = 4 << 20
    data = os.urandom(size)
    t = MemTLS(proxy, host)
    try:
        t.pump(t.obj.do_handshake)
        t.send(build_request("GET", "/r/%s/ws" % sid, host, WS_UPGRADE_HEADERS))
        head, _, got = t.read_head().partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        got, sent, wire = bytearray(got), 0, bytearray()
        t.sock.setblocking(False)
        deadline = time.monotonic() + 30
        while len(got) < size:
            assert time.monotonic() < deadline, "echoed %d of %d bytes" % (len(got), size)
            if sent < size and len(wire) < (256 << 10):
                t.obj.write(data[sent:sent + 16384])
                sent = min(size, sent + 16384)
                wire += t.out.read()
            r, w, _ = select.select([t.sock], [t.sock] if wire else [], [], 1)
            if w:
                del wire[:t.sock.send(wire)]
            if r:
                more = t.sock.recv(65536)
                assert more, "tunnel closed after %d of %d bytes" % (len(got), size)
                t.inc.write(more)
                try:
                    while True:
                        plain = t.obj.read(65536)
                        assert plain, "close_notify after %d of %d bytes" % (len(got), size)
                        got += plain
                except ssl.SSLWantReadError:
                    pass
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    finally:
        t.sock.close()


def test_client_hello_one_byte_at_a_time(proxy, upstream, routed):
    """Each byte its own segment: the handshake is driven by many reads
    that each end in WANT_READ."""
    sid, host = routed
    t = MemTLS(proxy, host)
    with pytest.raises(ssl.SSLWantReadError):
        t.obj.do_handshake()
    hello = t.out.read()
    assert len(hello) > 200
    try:
        for b in hello:
            t.sock.sendall(bytes([b]))
            time.sleep(0.001)
        t.pump(t.obj.do_handshake)
        t.send(build_request("GET", "/r/%s/bytewise" % sid, host, [("Connection", "close")]))
        resp = t.read_head()
        assert resp.startswith(b"HTTP/1.1 200"), resp[:200]
    finally:
        t.sock.close()
    assert len(upstream.requests_for("/r/%s/bytewise" % sid)) == 1


def client_hello_bytes(host):
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx().wrap_bio(inc, out, server_hostname=host)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


@pytest.mark.parametrize("sent", ["nothing", "half-hello"])
def test_client_that_never_handshakes_is_closed(impatient, routed, sent):
    """TCP up, then silence (or half a ClientHello): the header timeout
    (which bounds the handshake) closes it; nothing is held after."""
    sid, host = routed
    before = impatient.metric("edgeproxy_client_connections")
    sock = socket.create_connection(("127.0.0.1", impatient.extra_ports[0]), timeout=10)
    try:
        if sent == "half-hello":
            hello = client_hello_bytes(host)
            sock.sendall(hello[:len(hello) // 2])
        wait_until(lambda: impatient.metric("edgeproxy_client_connections") == before + 1, what="connection counted")
        start = time.monotonic()
        try:
            data = sock.recv(4096)
        except ConnectionResetError:
            data = b""
        took = time.monotonic() - start
        assert data == b"", data
        assert took >= HEADER_TIMEOUT_MS / 1000 * 0.5, "closed after %.2f s, before the timeout" % took
        assert took < HEADER_TIMEOUT_MS / 1000 * 4, "closed only after %.2f s" % took
    finally:
        sock.close()
    wait_until(lambda: impatient.metric("edgeproxy_client_connections") == before, what="connection released")


def s_client(proxy, host, args, typed, delay=0.5, timeout=20):
    """openssl s_client with each string of `typed` written at once,
    `delay` s apart (-crlf: lines end in CRLF). Returns its output."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % proxy.extra_ports[0], "-servername", host,
           "-crlf"] + args
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(delay)
        for text in typed:
            p.stdin.write(text.encode())
            p.stdin.flush()
            time.sleep(delay)
        out, _ = p.communicate(timeout=timeout)
    except (BrokenPipeError, subprocess.TimeoutExpired):
        p.kill()
        out, _ = p.communicate()
    return out.decode("latin-1")


def request_text(sid, host, tag):
    return "GET /r/%s/%s HTTP/1.1\nHost: %s\nConnection: close\n\n" % (sid, tag, host)


def test_renegotiation_refused(proxy, upstream, routed):
    """A TLS 1.2 client asking to renegotiate ('R') gets no_renegotiation
    (SSL_OP_NO_RENEGOTIATION): the connection does not go on under new
    keys, nothing crashes, and the proxy serves the next connection."""
    sid, host = routed
    out = s_client(proxy, host, ["-tls1_2"], ["R\n", request_text(sid, host, "after-reneg")])
    assert "RENEGOTIATING" in out, out
    assert "no renegotiation" in out.lower(), out
    assert "HTTP/1.1 200" not in out, out
    assert upstream.requests_for("/r/%s/after-reneg" % sid) == []
    with Client(sock=tls_connect(proxy, host)) as c:
        assert c.request("GET", "/r/%s/next" % sid, host=host).status == 200


def test_tls13_key_update_requested(proxy, upstream, routed):
    """A TLS 1.3 KeyUpdate asking for one back ('K'): the proxy's SSL_read
    has to write the answer; the request after it is served."""
    sid, host = routed
    out = s_client(proxy, host, ["-tls1_3"], ["K\n", request_text(sid, host, "after-keyupdate")])
    assert "KEYUPDATE" in out, out
    assert "HTTP/1.1 200" in out, out
    assert len(upstream.requests_for("/r/%s/after-keyupdate" % sid)) == 1


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
@pytest.mark.parametrize("domain", ["sandbox.test", "sandbox2.test"])
def test_session_resumption_s_client(proxy, upstream, redis_server, sid, workdir, version, domain):
    """A session saved by one connection resumes on the next ("Reused"),
    for the default certificate and for the one SNI selects."""
    redis_server.set_record(sid, public_record())
    host = "%d-%s.%s" % (upstream.port, sid, domain)
    sess = workdir / ("sess-%s%s" % (sid, version))
    first = s_client(proxy, host, [version, "-sess_out", str(sess)], [request_text(sid, host, "first")])
    assert "New, TLSv1." in first, first
    assert "HTTP/1.1 200" in first, first
    assert sess.exists() and sess.stat().st_size > 0
    second = s_client(proxy, host, [version, "-sess_in", str(sess)], [request_text(sid, host, "second")])
    assert "Reused, TLSv1." in second, second
    assert "HTTP/1.1 200" in second, second


# --------------------------------------------------------------------------
# Closing


def test_close_notify_from_client_ends_cleanly(proxy, upstream, routed):
    """The client's close_notify is an EOF: the proxy answers with its own
    close_notify (unwrap() returns) and then closes the TCP connection."""
    sid, host = routed
    before = proxy.metric("edgeproxy_client_connections")
    s = tls_connect(proxy, host, ragged_ok=False)
    c = Client(sock=s)
    assert c.request("GET", "/r/%s/cn" % sid, host=host).status == 200
    raw = s.unwrap()  # sends close_notify, waits for the proxy's
    raw.settimeout(5)
    assert raw.recv(1) == b""
    raw.close()
    wait_until(lambda: proxy.metric("edgeproxy_client_connections") == before, what="connection released")


def test_tcp_half_close_without_close_notify_still_answered(proxy, upstream, routed):
    """A client that shuts its TCP side without a close_notify (a dirty EOF,
    allowed) once its request has gone upstream still gets the whole
    response, as on a plain connection."""
    sid, host = routed
    t = MemTLS(proxy, host)
    try:
        t.pump(t.obj.do_handshake)
        t.send(build_request("GET", "/r/%s/halfclosed" % sid, host,
                             [("X-Test-Body-Size", "100000"), ("X-Test-Hold", sid)]))
        upstream.wait_requests("/r/%s/halfclosed" % sid)
        t.sock.shutdown(socket.SHUT_WR)
        time.sleep(0.2)  # the FIN is read before the response comes
        upstream.release(sid)
        resp = t.read_head()
        head, _, body = resp.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        while len(body) < 100000:
            body += t.read()
        assert body == pattern_bytes(100000)
    finally:
        t.sock.close()


def test_proxy_closes_with_close_notify(proxy, upstream, routed):
    """Connection: close: the response, then close_notify, then FIN (a TCP
    FIN alone is a truncation to a strict client)."""
    sid, host = routed
    s = tls_connect(proxy, host, ragged_ok=False)
    with Client(sock=s) as c:
        r = c.request("GET", "/r/%s/closing" % sid, host=host, headers=[("Connection", "close")])
        assert r.status == 200
        assert not c.buf
        assert s.recv(1) == b""  # SSLEOFError here without close_notify


@pytest.mark.parametrize("version", VERSIONS)
def test_client_reset_mid_response_frees_everything(proxy, upstream, routed, version):
    """A client that resets while a 64 MiB response is flowing: the client
    connection and the upstream one (mid-body: never pooled) both go."""
    sid, host = routed
    clients = proxy.metric("edgeproxy_client_connections")
    ups = proxy.metric("edgeproxy_upstream_connections")
    s = tls_connect(proxy, host, version, rcvbuf=32768)
    s.sendall(build_request("GET", "/r/%s/reset" % sid, host, [("X-Test-Body-Size", str(64 << 20))]))
    got = 0
    while got < (1 << 20):
        data = s.recv(65536)
        assert data
        got += len(data)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST, unread bytes and all
    wait_until(lambda: proxy.metric("edgeproxy_client_connections") == clients, timeout=10,
               what="client connection released")
    wait_until(lambda: proxy.metric("edgeproxy_upstream_connections") <= ups, timeout=10,
               what="upstream connection closed")
    with Client(sock=tls_connect(proxy, host, version)) as c:
        assert c.request("GET", "/r/%s/after-reset" % sid, host=host).status == 200
