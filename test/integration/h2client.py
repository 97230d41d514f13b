"""HTTP/2 clients for the tests, over plain sockets or TLS.

- H2Client: a well-behaved client on python3-h2 (streams, bodies, trailers,
  resets, flow control acknowledged as data is read unless `auto_ack` is
  off: a slow reader).
- RawH2: frames by hand (hyperframe + hpack), for what a real client must
  not send: malformed frames, floods, protocol errors. It decodes every
  header block it receives (HPACK state) and answers nothing by itself.

Both connect to 127.0.0.1; TLS when given an ssl.SSLContext (ALPN h2).
"""

import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame,
                              PingFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# RFC 9113 section 7 error codes
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = 0x4, 0x5, 0x6, 0x7
CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x8, 0x9, 0xb


def tls_context(cafiles, alpn=("h2", "http/1.1")):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for f in cafiles:
        ctx.load_verify_locations(f)
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def connect(port, ctx=None, server_name=None, timeout=5.0):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if ctx is not None:
        sock = ctx.wrap_socket(sock, server_hostname=server_name)
    return sock


class Result:
    """What came back on one stream."""

    def __init__(self, sid):
        self.sid = sid
        self.status = None
        self.headers = []      # final response fields, [(name, value)] as str
        self.interim = []      # [(status, headers)] of 1xx responses
        self.body = bytearray()
        self.trailers = None
        self.ended = False     # END_STREAM received
        self.reset = None      # RST_STREAM error code received

    @property
    def done(self):
        return self.ended or self.reset is not None

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def json(self):
        import json
        return json.loads(bytes(self.body).decode())

    def __repr__(self):
        return "<Result sid=%d status=%r ended=%r reset=%r headers=%r body=%r>" % (
            self.sid, self.status, self.ended, self.reset, self.headers, bytes(self.body[:300]))


def _s(x):
    return x.decode("latin-1") if isinstance(x, (bytes, bytearray)) else x


class H2Client:
    def __init__(self, port, ctx=None, server_name=None, timeout=5.0, auto_ack=True,
                 settings=None, sock=None):
        self.sock = sock or connect(port, ctx, server_name, timeout)
        self.timeout = timeout
        self.auto_ack = auto_ack
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                        validate_outbound_headers=False,
                                        normalize_outbound_headers=False)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.results = {}
        self.goaway = None      # ConnectionTerminated event
        self.closed = False
        self.remote_settings = {}
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    @property
    def alpn(self):
        return self.sock.selected_alpn_protocol() if isinstance(self.sock, ssl.SSLSocket) else None

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    # Requests ---------------------------------------------------------------

    def request(self, method="GET", path="/", authority=None, headers=(), body=None,
                end_stream=None, scheme="http", trailers=None):
        """Starts a stream; returns its id. body: bytes sent (respecting flow
        control, reading meanwhile); end_stream defaults to 'nothing more'."""
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", scheme)]
        if authority is not None:
            hdrs.append((":authority", authority))
        hdrs += list(headers)
        hdrs = [(k.encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v)
                for k, v in hdrs]
        if end_stream is None:
            end_stream = True  # nothing follows what is given here
        self.results[sid] = Result(sid)
        self.conn.send_headers(sid, hdrs, end_stream=end_stream and body is None)
        self.flush()
        if body is not None:
            self.send_body(sid, body, end_stream=end_stream and trailers is None)
        if trailers is not None:
            self.conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in trailers],
                                   end_stream=True)
            self.flush()
        return sid

    def send_body(self, sid, data, end_stream=True, timeout=None):
        """Sends data within the flow-control windows, reading while blocked."""
        deadline = time.monotonic() + (timeout or self.timeout * 4)
        view = memoryview(data)
        while view:
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                if time.monotonic() > deadline:
                    raise TimeoutError("window stayed shut with %d bytes to send" % len(view))
                self.pump(0.2)
                continue
            n = min(window, len(view))
            self.conn.send_data(sid, bytes(view[:n]))
            view = view[n:]
            self.flush()
        if end_stream:
            self.conn.end_stream(sid)
            self.flush()

    def reset(self, sid, code=CANCEL):
        self.conn.reset_stream(sid, code)
        self.flush()

    # Receiving --------------------------------------------------------------

    def pump(self, timeout=None):
        """Reads once (up to timeout) and handles the events; False on EOF."""
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return True
        except (ConnectionResetError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            raise AssertionError("the proxy broke the protocol: %r" % e)
        for ev in events:
            self._event(ev)
        try:
            self.flush()
        except OSError:
            pass
        return True

    def _result(self, sid):
        return self.results.setdefault(sid, Result(sid))

    def _event(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            r = self._result(ev.stream_id)
            hdrs = [(_s(k), _s(v)) for k, v in ev.headers]
            r.status = int(dict(hdrs)[":status"])
            r.headers = [(k, v) for k, v in hdrs if not k.startswith(":")]
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            hdrs = [(_s(k), _s(v)) for k, v in ev.headers]
            self._result(ev.stream_id).interim.append((int(dict(hdrs)[":status"]), hdrs))
        elif isinstance(ev, h2.events.DataReceived):
            self._result(ev.stream_id).body += ev.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            self._result(ev.stream_id).trailers = [(_s(k), _s(v)) for k, v in ev.headers]
        elif isinstance(ev, h2.events.StreamEnded):
            self._result(ev.stream_id).ended = True
        elif isinstance(ev, h2.events.StreamReset):
            self._result(ev.stream_id).reset = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            for k, v in ev.changed_settings.items():
                self.remote_settings[int(k)] = v.new_value

    def wait(self, sid, timeout=None):
        """Until the stream ended or was reset; returns its Result."""
        deadline = time.monotonic() + (timeout or self.timeout)
        r = self._result(sid)
        while not r.done:
            if self.closed:
                raise AssertionError("connection closed before stream %d finished: %r" % (sid, r))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("stream %d not finished within %.1fs: %r" % (sid, timeout or self.timeout, r))
            self.pump(min(left, 0.5))
        return r

    def wait_for(self, pred, timeout=None, what="condition"):
        deadline = time.monotonic() + (timeout or self.timeout)
        while not pred():
            if self.closed:
                if pred():
                    break
                raise AssertionError("connection closed while waiting for %s" % what)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s not seen within %.1fs" % (what, timeout or self.timeout))
            self.pump(min(left, 0.5))

    def wait_closed(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("connection still open after %.1fs" % (timeout or self.timeout))
            try:
                self.pump(min(left, 0.5))
            except AssertionError:
                pass

    def get(self, authority, path="/", headers=(), **kw):
        sid = self.request("GET", path, authority, headers)
        return self.wait(sid, **kw)


class RawH2:
    """Frames by hand. send() takes hyperframe frames or bytes."""

    def __init__(self, port, ctx=None, server_name=None, timeout=5.0, preface=True, settings=None,
                 sock=None):
        self.sock = sock or connect(port, ctx, server_name, timeout)
        self.timeout = timeout
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_header_list_size = 1 << 30
        self.buf = bytearray()
        self.closed = False
        self.frames = []    # every frame received, in order
        self.blocks = {}    # stream -> list of decoded header lists
        if preface:
            self.send(PREFACE, SettingsFrame(0, settings=settings or {}))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, *items):
        out = b"".join(i if isinstance(i, (bytes, bytearray)) else i.serialize() for i in items)
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(out)
        except OSError:
            self.closed = True

    def block(self, headers):
        """An HPACK header block (the encoder's state moves with it)."""
        return self.enc.encode([(k.encode() if isinstance(k, str) else k,
                                 v.encode() if isinstance(v, str) else v) for k, v in headers])

    def headers(self, sid, headers, end_stream=True, end_headers=True):
        f = HeadersFrame(sid)
        f.data = self.block(headers)
        if end_stream:
            f.flags.add("END_STREAM")
        if end_headers:
            f.flags.add("END_HEADERS")
        return f

    def data(self, sid, data, end_stream=False):
        f = DataFrame(sid)
        f.data = data
        if end_stream:
            f.flags.add("END_STREAM")
        return f

    def ack_settings(self):
        f = SettingsFrame(0)
        f.flags.add("ACK")
        return f

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except (socket.timeout, BlockingIOError, ssl.SSLWantReadError):
            return None
        except (ConnectionResetError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            return False
        self.buf += data
        return True

    def read_frame(self, timeout=None):
        """The next frame, None on timeout, False at EOF."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            if len(self.buf) >= 9:
                f, length = Frame.parse_frame_header(memoryview(bytes(self.buf[:9])))
                if len(self.buf) >= 9 + length:
                    body = bytes(self.buf[9:9 + length])
                    del self.buf[:9 + length]
                    f.parse_body(memoryview(body))
                    if isinstance(f, (HeadersFrame, ContinuationFrame)):
                        self.blocks.setdefault(f.stream_id, []).append(
                            [(_s(k), _s(v)) for k, v in self.dec.decode(f.data)])
                    self.frames.append(f)
                    return f
            if self.closed:
                return False
            left = max(0.0, deadline - time.monotonic())
            r = self._fill(left)  # 0: one look without waiting
            if r is None:
                return None

    def until(self, pred, timeout=None):
        """The first frame, read already or still to come, for which
        pred(frame) holds; None when the connection closed or time ran out
        first."""
        for f in self.frames:
            if pred(f):
                return f
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            f = self.read_frame(left)
            if f is None or f is False:
                return None
            if pred(f):
                return f

    def goaway(self, timeout=None):
        return self.until(lambda f: isinstance(f, GoAwayFrame), timeout)

    def rst(self, sid, timeout=None):
        return self.until(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == sid, timeout)

    def wait_closed(self, timeout=None):
        """True once the proxy closed the connection (frames read meanwhile)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.read_frame(left) is None and not self.closed:
                return False
        return True

    def response(self, sid, timeout=None):
        """(status, headers, body, ended, reset code) once the stream ended
        or was reset; None if neither happened in time."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        body = bytearray()
        idx = 0
        while True:
            for f in self.frames[idx:]:
                idx += 1
                if f.stream_id != sid:
                    continue
                if isinstance(f, DataFrame):
                    body += f.data
                if isinstance(f, RstStreamFrame):
                    return self._resp(sid, body, False, f.error_code)
                if "END_STREAM" in getattr(f, "flags", ()):
                    return self._resp(sid, body, True, None)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            f = self.read_frame(left)
            if f is None or f is False:
                return None

    def _resp(self, sid, body, ended, reset):
        blocks = self.blocks.get(sid, [])
        status, hdrs = None, []
        for b in blocks:
            st = dict(b).get(":status")
            if st and int(st) >= 200:
                status, hdrs = int(st), [(k, v) for k, v in b if not k.startswith(":")]
        return status, hdrs, bytes(body), ended, reset
