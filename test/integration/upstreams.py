"""Test upstreams: real HTTP/1.1 servers on 127.0.0.1 in Python threads, over
raw sockets so the tests control (and see) every byte.

EchoUpstream records every request it receives (method, target, version,
raw headers in order, body bytes, connection id) and answers 200 with a JSON
echo of it plus `X-Upstream-Conn: <id>`. Requests can steer the answer with
headers (they pass through the proxy like any other header):

  X-Test-Delay-Ms: N         wait N ms before answering
  X-Test-Hold: NAME          wait (up to 20 s) until the test calls release(NAME)
  X-Test-Hold-Body: NAME     the same, before reading the request body
  X-Test-Status: N           answer with status N instead of 200
  X-Test-Chunked: 1          answer with a chunked body (several chunks)
  X-Test-Body-Size: N        answer with N bytes of a fixed pattern instead of JSON
  X-Test-Discard-Body: 1     keep only the length and sha256 of the request body
  X-Test-Partial: N          send the head and only N body bytes, then
  X-Test-Partial-Then: close | reset | hold:NAME
                             close at once (FIN), reset (RST), or stall
                             until released
  X-Test-Headers: JSON       extra response headers, [["Name", "value"], ...]
  X-Test-No-Length: 1        no Content-Length, no chunking: the body ends at close
  X-Test-Reset: 1            close the connection (RST) without answering
  X-Test-Close-After-Ms: N   answer normally (keep-alive), then close the
                             connection N ms later without having said so
  X-Test-Drop-Next: 1        answer normally (keep-alive); the next request on
                             this connection is read and recorded, then the
                             connection closes (FIN) without an answer (an
                             app closing a keep-alive connection just as the
                             proxy reuses it)
  Upgrade: websocket (with Connection: upgrade)
                             answer 101 and echo raw bytes until EOF

WebSocketUpstream is a real RFC 6455 server (frames, masking, close
handshake), for WebSockets that go through the proxy in another protocol
than the client's (HTTP/2, RFC 8441); ws_frame / WsParser are the frame
codec both ends of those tests use.
"""

import base64
import hashlib
import json
import os
import socket
import struct
import threading
import time
from httpmsg import HeaderLookup

PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyz\n"


def pattern_bytes(n):
    reps = n // len(PATTERN) + 1
    return (PATTERN * reps)[:n]


class _Pattern:
    """pattern_bytes(n) without holding n bytes: len() and slicing."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, sl):
        start, stop, _ = sl.indices(self.n)
        if stop <= start:
            return b""
        off = start % len(PATTERN)
        return pattern_bytes(off + stop - start)[off:]


class Recorded(HeaderLookup):
    def __init__(self, conn_id, peer_port, method, target, version, headers, body):
        self.conn_id = conn_id
        self.peer_port = peer_port
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # [(name, value)] exactly as received, in order
        self.body = body
        self.time = time.monotonic()

    def has_header(self, name):
        return bool(self.header_all(name))

    def __repr__(self):
        return "<Recorded conn=%d %s %s headers=%r body=%d bytes>" % (
            self.conn_id, self.method, self.target, self.headers, len(self.body))


class BadRequest(Exception):
    pass


class _Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()  # amortised appends: bodies can be large

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def line(self, limit=65536):
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise BadRequest("line too long")
            if not self.fill():
                raise EOFError
        i = self.buf.index(b"\r\n")
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def exact(self, n):
        while len(self.buf) < n:
            if not self.fill():
                raise EOFError
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def head(self, limit=1 << 20):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise BadRequest("head too long")
            if not self.fill():
                if self.buf:
                    raise BadRequest("EOF inside a head")
                raise EOFError
        i = self.buf.index(b"\r\n\r\n")
        raw = bytes(self.buf[:i])
        del self.buf[:i + 4]
        return raw

    def take_all(self):
        data = bytes(self.buf)
        self.buf = bytearray()
        return data


class ThreadedServer:
    """A listening socket on host (port 0: a free one) with an accept thread
    that hands each connection, with its id, to self._serve in a thread of
    its own; keeps the open connections (closed by stop) and the requests
    (objects with a .target) the subclass records."""

    conn_timeout = 60.0
    backlog = 128

    def __init__(self, port=0, host="127.0.0.1", name="upstream"):
        self.host = host
        self.name = name
        self.lock = threading.Lock()
        self.requests = []
        self.conn_count = 0
        self.open_conns = {}
        self._stop = threading.Event()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.lsock = socket.socket(family, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(self.backlog)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept_loop, daemon=True,
                                       name="%s-%d" % (name, self.port))
        self.thread.start()

    def stop(self):
        self._stop.set()
        self.thread.join(2)
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.open_conns.values())
        self._on_stop()
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def _on_stop(self):
        """Subclasses: wake what their serving threads wait on."""

    def _on_accept(self, cid):
        """Subclasses: note the connection (called under self.lock)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def snapshot(self):
        with self.lock:
            return list(self.requests)

    def requests_for(self, marker):
        """Requests whose target contains marker (tests use unique paths)."""
        return [r for r in self.snapshot() if marker in r.target]

    def wait_requests(self, marker, n=1, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            got = self.requests_for(marker)
            if len(got) >= n:
                return got
            if time.monotonic() > deadline:
                raise AssertionError("%s: %d of %d requests matching %r within %.1fs; all: %r" % (
                    self.name, len(got), n, marker, timeout, self.snapshot()[-5:]))
            time.sleep(0.005)

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, peer = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.conn_count += 1
                cid = self.conn_count
                self.open_conns[cid] = s
                self._on_accept(cid)
            s.settimeout(self.conn_timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(s, cid, peer[1]), daemon=True).start()


class EchoUpstream(ThreadedServer):
    """Keep-alive HTTP/1.1 echo server. `delay` (seconds) applies to every
    answer (the "slow server")."""

    def __init__(self, port=0, delay=0.0, host="127.0.0.1", name="upstream"):
        self.delay = delay
        self.events = []  # (time, "accept"/"close", conn_id)
        self.holds = {}
        self.drop_next = set()  # connection ids whose next request is dropped
        self.body_bytes_sent = 0  # response body bytes written, all connections
        super().__init__(port, host, name)

    def _on_stop(self):
        with self.lock:
            for ev in self.holds.values():
                ev.set()

    def _on_accept(self, cid):
        self.events.append((time.monotonic(), "accept", cid))

    def _count_sent(self, n):
        with self.lock:
            self.body_bytes_sent += n

    def _hold_event(self, name):
        with self.lock:
            return self.holds.setdefault(name, threading.Event())

    def release(self, name):
        """Lets requests carrying X-Test-Hold: name answer."""
        self._hold_event(name).set()

    def _serve(self, s, cid, peer_port):
        r = _Reader(s)
        try:
            while not self._stop.is_set():
                try:
                    keep = self._one(s, r, cid, peer_port)
                except EOFError:
                    break
                if not keep:
                    break
        except BadRequest as e:
            try:
                msg = str(e).encode()
                s.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                          % (len(msg), msg))
            except OSError:
                pass
        except OSError:
            pass
        finally:
            with self.lock:
                self.open_conns.pop(cid, None)
                self.events.append((time.monotonic(), "close", cid))
            try:
                s.close()
            except OSError:
                pass

    def _read_body(self, r, headers, keep=True):
        """Returns (body or b"" when not keep, length, sha256 hex, trailers)."""
        te = ",".join(v for k, v in headers if k.lower() == "transfer-encoding").lower()
        cls = [v for k, v in headers if k.lower() == "content-length"]
        out = []
        h = hashlib.sha256()
        total = 0
        trailers = []

        def take(n):
            nonlocal total
            while n:
                part = r.exact(min(n, 1 << 20))
                n -= len(part)
                total += len(part)
                h.update(part)
                if keep:
                    out.append(part)

        if te:
            if cls:
                raise BadRequest("both Transfer-Encoding and Content-Length")
            if te.strip() != "chunked":
                raise BadRequest("unsupported transfer-encoding %r" % te)
            while True:
                line = r.line()
                size_s = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_s, 16)
                except ValueError:
                    raise BadRequest("bad chunk size %r" % line)
                if size == 0:
                    while True:
                        t = r.line()
                        if t == b"":
                            break
                        k, _, v = t.decode("latin-1").partition(":")
                        trailers.append((k, v.strip(" \t")))
                    break
                take(size)
                if r.line() != b"":
                    raise BadRequest("chunk without CRLF")
        elif cls:
            if len(set(v.strip() for v in cls)) != 1:
                raise BadRequest("conflicting Content-Length")
            take(int(cls[0]))
        return b"".join(out), total, h.hexdigest(), trailers

    def _one(self, s, r, cid, peer_port):
        raw = r.head()
        lines = raw.split(b"\r\n")
        try:
            method, target, version = lines[0].decode("latin-1").split(" ")
        except ValueError:
            raise BadRequest("bad request line %r" % lines[0])
        headers = []
        for line in lines[1:]:
            k, sep, v = line.decode("latin-1").partition(":")
            if not sep or not k or k != k.strip():
                raise BadRequest("bad header line %r" % line)
            headers.append((k, v.strip(" \t")))
        hold = [v for k, v in headers if k.lower() == "x-test-hold-body"]
        if hold:
            self._hold_event(hold[0]).wait(20)  # before reading the body
        keep = not any(k.lower() == "x-test-discard-body" for k, _ in headers)
        body, body_len, body_sha, trailers = self._read_body(r, headers, keep)
        rec = Recorded(cid, peer_port, method, target, version, headers, body)
        rec.body_len, rec.body_sha256, rec.trailers = body_len, body_sha, trailers
        with self.lock:
            self.requests.append(rec)
            dropped = cid in self.drop_next
            self.drop_next.discard(cid)
            if rec.header("x-test-drop-next") and not dropped:
                self.drop_next.add(cid)
        if dropped:
            return False  # seen, never answered: the connection just closes
        return self._answer(s, r, rec)

    def _answer(self, s, r, rec):
        conn_tokens = [t.strip().lower() for v in rec.header_all("connection") for t in v.split(",")]
        if rec.header("upgrade") and "upgrade" in conn_tokens:
            return self._tunnel(s, r, rec)
        if rec.header("x-test-reset"):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        hold = rec.header("x-test-hold")
        if hold:
            self._hold_event(hold).wait(20)
        delay = self.delay + int(rec.header("x-test-delay-ms", "0")) / 1000.0
        if delay:
            time.sleep(delay)
        status = int(rec.header("x-test-status", "200"))
        if rec.header("x-test-body-size") is not None:
            body = _Pattern(int(rec.header("x-test-body-size")))
            ctype = "application/octet-stream"
        else:
            body = json.dumps({
                "method": rec.method, "target": rec.target, "version": rec.version,
                "headers": rec.headers, "conn": rec.conn_id,
                "body_len": rec.body_len,
                "body_sha256": rec.body_sha256,
            }).encode()
            ctype = "application/json"
        close = "close" in conn_tokens or rec.version == "HTTP/1.0"
        hdrs = [("Content-Type", ctype), ("X-Upstream-Conn", str(rec.conn_id))]
        extra = rec.header("x-test-headers")
        if extra:
            hdrs += [tuple(h) for h in json.loads(extra)]
            if any(k.lower() == "connection" and "close" in v.lower() for k, v in hdrs):
                close = True  # we said so: do it
        chunked = bool(rec.header("x-test-chunked"))
        no_length = bool(rec.header("x-test-no-length"))
        if no_length:
            close = True  # the body ends when the connection does
        if status == 204 or no_length:
            pass  # RFC 9110 8.6: no Content-Length in a 204 (a 304 may have one)
        elif chunked:
            hdrs.append(("Transfer-Encoding", "chunked"))
        else:
            hdrs.append(("Content-Length", str(len(body))))
        if close and not any(k.lower() == "connection" for k, _ in hdrs):
            hdrs.append(("Connection", "close"))
        head = "HTTP/1.1 %d %s\r\n" % (status, "OK" if status == 200 else "Test")
        head += "".join("%s: %s\r\n" % h for h in hdrs) + "\r\n"
        s.sendall(head.encode("latin-1"))
        partial = rec.header("x-test-partial")
        if partial is not None and rec.method != "HEAD":
            # N body bytes of the promised ones, then close or stall.
            n = int(partial)
            if chunked:
                s.sendall(b"%x\r\n%s" % (len(body), body[:n]))
            else:
                s.sendall(body[:n])
            then = rec.header("x-test-partial-then", "close")
            if then.startswith("hold:"):
                self._hold_event(then[5:]).wait(20)
            elif then == "reset":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if rec.method != "HEAD" and status not in (204, 304):
            if chunked:
                step = max(1, len(body) // 3)
                for i in range(0, len(body), step):
                    part = body[i:i + step]
                    s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
                    self._count_sent(len(part))
                    time.sleep(0.01)
                trailers = json.loads(rec.header("x-test-trailers", "[]"))
                s.sendall(b"0\r\n" + "".join("%s: %s\r\n" % tuple(t) for t in trailers).encode("latin-1") + b"\r\n")
            else:
                for i in range(0, len(body), 1 << 20):
                    part = body[i:i + (1 << 20)]
                    s.sendall(part)
                    self._count_sent(len(part))
        after = rec.header("x-test-close-after-ms")
        if after is not None:
            time.sleep(int(after) / 1000.0)
            return False
        return not close

    def _tunnel(self, s, r, rec):
        key = rec.header("sec-websocket-key", "")
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                   "X-Upstream-Conn: %d\r\n\r\n" % (accept, rec.conn_id)).encode())
        early = r.take_all()
        if early:
            s.sendall(early)
        while True:
            data = s.recv(65536)
            if not data:
                return False
            s.sendall(data)


def start_later(port, delay, **kw):
    """Starts an EchoUpstream on `port` after `delay` seconds, in a thread.
    Returns a holder whose .server is set once it listens."""
    class Holder:
        server = None
        error = None
    h = Holder()

    def run():
        time.sleep(delay)
        try:
            h.server = EchoUpstream(port=port, **kw)
        except OSError as e:
            h.error = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    h.thread = t
    return h


# --------------------------------------------------------------------------
# WebSockets (RFC 6455)

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def _mask(data, key):
    n = len(data)
    if not n:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def ws_frame(opcode, payload=b"", mask=False, fin=True):
    """One frame: a client's are masked (RFC 6455 section 5.3), a server's not."""
    b0 = (0x80 if fin else 0) | opcode
    m = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if mask:
        key = os.urandom(4)
        return head + key + _mask(bytes(payload), key)
    return head + bytes(payload)


class WsParser:
    """Messages out of a byte stream: feed() returns the complete ones as
    (opcode, payload, masked), fragments joined, control frames as they
    come."""

    def __init__(self):
        self.buf = bytearray()
        self.frag_op = None
        self.frag = bytearray()

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            f = self._frame()
            if f is None:
                return out
            fin, op, payload, masked = f
            if op >= 0x8:
                out.append((op, payload, masked))
            elif op == OP_CONT:
                self.frag += payload
                if fin:
                    out.append((self.frag_op, bytes(self.frag), masked))
                    self.frag_op, self.frag = None, bytearray()
            elif fin:
                out.append((op, payload, masked))
            else:
                self.frag_op, self.frag = op, bytearray(payload)

    def _frame(self):
        b = self.buf
        if len(b) < 2:
            return None
        fin, op, masked, n = b[0] & 0x80, b[0] & 0x0F, b[1] & 0x80, b[1] & 0x7F
        at = 2
        if n == 126:
            if len(b) < 4:
                return None
            n, at = struct.unpack(">H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, at = struct.unpack(">Q", b[2:10])[0], 10
        key = b""
        if masked:
            if len(b) < at + 4:
                return None
            key, at = bytes(b[at:at + 4]), at + 4
        if len(b) < at + n:
            return None
        payload = bytes(b[at:at + n])
        del b[:at + n]
        if masked:
            payload = _mask(payload, key)
        return bool(fin), op, payload, bool(masked)


class WebSocketUpstream(ThreadedServer):
    """An RFC 6455 echo server, as a sandbox app runs one: records each
    handshake request (Recorded, as EchoUpstream does), answers 101 with the
    key's Sec-WebSocket-Accept and the first subprotocol offered, echoes
    every data message (unmasked, same opcode), answers a ping with a pong
    and a Close with a Close, then closes. The client's frames must be
    masked (a proxy must not touch them). Steered by request headers:

      X-Test-WS-Status: N        answer N with a small JSON body, no upgrade
      X-Test-WS-Accept: wrong    a Sec-WebSocket-Accept for another key
      X-Test-WS-Extensions: V    answer Sec-WebSocket-Extensions: V
      X-Test-WS-Greeting: TEXT   a text message in the same write as the 101

    and by text messages:

      "bye"       a Close (1000), then the connection closes (FIN)
      "rst"       the connection is reset (RST), without a Close
      "flood:N"   N bytes of binary messages (64 KiB each), as fast as the
                  proxy takes them (flood_sent counts what sendall took)

    Per connection id, events[cid] lists what happened: "open", "eof" (the
    proxy half-closed: read EOF), "reset" (read error), "closed". After an
    EOF it still sends a text message "after-eof", then closes: what a
    half-close must let through."""

    conn_timeout = 30.0
    backlog = 64

    def __init__(self, host="127.0.0.1", name="ws"):
        self.events = {}
        self.flood_sent = 0
        self.unmasked = 0  # client frames that came unmasked (a protocol error)
        super().__init__(0, host, name)

    def _event(self, cid, what):
        with self.lock:
            self.events.setdefault(cid, []).append(what)

    def events_of(self, cid):
        with self.lock:
            return list(self.events.get(cid, []))

    def _serve(self, s, cid, peer_port):
        try:
            self._handshake_and_echo(s, cid, peer_port)
        except (OSError, EOFError, BadRequest):
            self._event(cid, "reset")
        finally:
            with self.lock:
                self.open_conns.pop(cid, None)
            try:
                s.close()
            except OSError:
                pass
            self._event(cid, "closed")

    def _handshake_and_echo(self, s, cid, peer_port):
        r = _Reader(s)
        lines = r.head().split(b"\r\n")
        method, target, version = lines[0].decode("latin-1").split(" ")
        headers = []
        for line in lines[1:]:
            k, _, v = line.decode("latin-1").partition(":")
            headers.append((k, v.strip(" \t")))
        rec = Recorded(cid, peer_port, method, target, version, headers, b"")
        with self.lock:
            self.requests.append(rec)
        status = rec.header("x-test-ws-status")
        if status:
            body = json.dumps({"refused": True, "target": target}).encode()
            s.sendall(b"HTTP/1.1 %s Test\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (status.encode(), len(body), body))
            r.head()  # a keep-alive connection: the next request, or EOF
            return
        key = rec.header("sec-websocket-key", "")
        accept = ws_accept("x" + key if rec.header("x-test-ws-accept") == "wrong" else key)
        head = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
                "Sec-WebSocket-Accept: " + accept, "X-Upstream-Conn: %d" % cid]
        offered = [p.strip() for v in rec.header_all("sec-websocket-protocol") for p in v.split(",")]
        if offered and offered[0]:
            head.append("Sec-WebSocket-Protocol: " + offered[0])
        if rec.header("x-test-ws-extensions"):
            head.append("Sec-WebSocket-Extensions: " + rec.header("x-test-ws-extensions"))
        out = ("\r\n".join(head) + "\r\n\r\n").encode()
        if rec.header("x-test-ws-greeting"):
            out += ws_frame(OP_TEXT, rec.header("x-test-ws-greeting").encode())
        s.sendall(out)
        self._event(cid, "open")
        parser = WsParser()
        pending = r.take_all()
        while True:
            for op, payload, masked in parser.feed(pending):
                if not masked:
                    with self.lock:
                        self.unmasked += 1
                if op == OP_CLOSE:
                    s.sendall(ws_frame(OP_CLOSE, payload[:2]))
                    return
                if op == OP_PING:
                    s.sendall(ws_frame(OP_PONG, payload))
                elif op == OP_TEXT and payload == b"bye":
                    s.sendall(ws_frame(OP_CLOSE, struct.pack(">H", 1000)))
                    return
                elif op == OP_TEXT and payload == b"rst":
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                elif op == OP_TEXT and payload.startswith(b"flood:"):
                    self._flood(s, int(payload[6:]))
                elif op in (OP_TEXT, OP_BINARY):
                    s.sendall(ws_frame(op, payload))
            try:
                pending = s.recv(1 << 20)
            except ConnectionResetError:
                self._event(cid, "reset")
                return
            if not pending:
                self._event(cid, "eof")
                s.sendall(ws_frame(OP_TEXT, b"after-eof"))
                return

    def _flood(self, s, n):
        chunk = ws_frame(OP_BINARY, pattern_bytes(65536))
        left = n
        while left > 0:
            s.sendall(chunk)
            left -= 65536
            with self.lock:
                self.flood_sent += len(chunk)
