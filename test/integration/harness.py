"""Black-box harness for edgeproxy: free ports, a real redis-server with a
tiny RESP client, the proxy process, and a raw-socket HTTP/1.1 client.

Python 3 stdlib only. Everything binds to 127.0.0.1.
"""

import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from httpmsg import HeaderLookup

REPO_ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "sandbox.test"

# Sanitizer findings that must never appear in the proxy's stderr.
SANITIZER_PATTERNS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "WARNING: ThreadSanitizer",
    "FATAL: ThreadSanitizer",
)

# The ThreadSanitizer build (make tsan) reads its suppressions from here:
# only reports inside uninstrumented libraries, each with its reason.
TSAN_SUPPRESSIONS = Path(__file__).resolve().parents[1] / "tsan.supp"


# --------------------------------------------------------------------------
# Ports, ids, hosts


def free_port():
    """A port that was free a moment ago (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_sid(prefix="t"):
    """A fresh sandbox id, [a-z0-9]+, unique per call."""
    return prefix + uuid.uuid4().hex[:16]


def sandbox_host(port, sid, domain=DOMAIN):
    return "%d-%s.%s" % (port, sid, domain)


def wait_until(pred, timeout=5.0, interval=0.01, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def edgeproxy_bin():
    p = os.environ.get("EDGEPROXY_BIN") or str(REPO_ROOT / "build" / "edgeproxy")
    p = Path(p)
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


# --------------------------------------------------------------------------
# RESP client and redis-server


class RedisError(Exception):
    pass


class Resp:
    """A tiny RESP2 client over one socket: enough for SET/GET/DEL/PUBLISH,
    INFO, PUBSUB. Not thread-safe; make one per thread."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb")

    def close(self):
        try:
            self.f.close()
        finally:
            self.sock.close()

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _read(self):
        line = self.f.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise RedisError("bad reply %r" % line)

    def cmd(self, *args):
        self.sock.sendall(self.encode(args))
        return self._read()

    def set(self, key, value):
        return self.cmd("SET", key, value)

    def get(self, key):
        return self.cmd("GET", key)

    def delete(self, *keys):
        return self.cmd("DEL", *keys)

    def publish(self, channel, msg):
        return self.cmd("PUBLISH", channel, msg)

    def info(self, section):
        text = self.cmd("INFO", section).decode()
        out = {}
        for line in text.splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v
        return out

    def command_calls(self, name):
        """calls=N of cmdstat_<name> from INFO commandstats (0 if absent)."""
        v = self.info("commandstats").get("cmdstat_" + name.lower())
        if not v:
            return 0
        for part in v.split(","):
            k, _, n = part.partition("=")
            if k == "calls":
                return int(n)
        return 0

    def numsub(self, channel):
        r = self.cmd("PUBSUB", "NUMSUB", channel)
        return int(r[1])


class RedisServer:
    """A real redis-server on 127.0.0.1:<port>, foreground, no persistence.
    Stopped by pid."""

    def __init__(self, workdir, port=None, exe="/usr/bin/redis-server", password=None,
                 extra_args=(), host="127.0.0.1"):
        """extra_args: more redis-server options, e.g. redis_debug_args().
        host: the loopback address to bind (127.0.0.2 for a second server on
        the same port)."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port()
        self.exe = exe
        self.password = password
        self.extra_args = list(extra_args)
        self.proc = None
        self._client = None

    def start(self, timeout=10.0):
        log = open(self.workdir / ("redis-%s-%d.log" % (self.host, self.port)), "ab")
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", self.host,
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--dir", str(self.workdir), "--protected-mode", "no"] +
            (["--requirepass", self.password] if self.password else []) +
            self.extra_args,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s" % self.proc.returncode)
            try:
                c = Resp(self.port, host=self.host, timeout=1.0)
                if self.password:
                    c.cmd("AUTH", self.password)
                if c.cmd("PING") == "PONG":
                    c.close()
                    break
                c.close()
            except (OSError, RedisError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not answer PING")
            time.sleep(0.02)
        return self

    @property
    def client(self):
        """A shared client for the test thread."""
        if self._client is None:
            self._client = Resp(self.port, host=self.host)
            if self.password:
                self._client.cmd("AUTH", self.password)
        return self._client

    @property
    def url(self):
        return "redis://%s:%d/0" % (self.host, self.port)

    def pause(self):
        """SIGSTOP: the server keeps its sockets but answers nothing (a
        network black hole, as far as its clients can tell)."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self):
        if self._client is not None:
            try:
                self._client.close()
            except OSError:
                pass
            self._client = None
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # in case it was paused
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    # Sandbox records -------------------------------------------------------

    def set_record(self, sid, record=None, prefix="sandbox:", **fields):
        """Writes the routing record for sid: a dict (JSON-encoded), a raw
        str/bytes (for broken records), or keyword fields."""
        if record is None:
            record = fields
        if isinstance(record, dict):
            record = json.dumps(record)
        return self.client.set(prefix + sid, record)

    def delete_record(self, sid, prefix="sandbox:"):
        return self.client.delete(prefix + sid)

    def invalidate(self, sid, prefix="sandbox:"):
        """PUBLISH <prefix>invalidate <sid>; returns the receiver count."""
        return self.client.publish(prefix + "invalidate", sid)


def redis_version(exe="/usr/bin/redis-server"):
    """(major, minor, patch) of redis-server --version."""
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    for word in out.split():
        if word.startswith("v="):
            return tuple(int(x) for x in word[2:].split(".")[:3])
    return (0, 0, 0)


def redis_debug_args(exe="/usr/bin/redis-server"):
    """Options that allow DEBUG (SLEEP...) from any client: Redis 7 refuses
    DEBUG unless enable-debug-command says so; older ones have no option."""
    return ["--enable-debug-command", "yes"] if redis_version(exe) >= (7, 0, 0) else []


def public_record(port=None, address="127.0.0.1", **extra):
    r = {"address": address, "allowPublicTraffic": True}
    r.update(extra)
    return r


def private_record(token, address="127.0.0.1", **extra):
    r = {"address": address, "allowPublicTraffic": False, "trafficAccessToken": token}
    r.update(extra)
    return r


# --------------------------------------------------------------------------
# TLS material


def make_cert(d, name, domain):
    """A self-signed EC certificate for *.domain and domain (openssl CLI).
    Returns {"cert": path, "key": path} as the config wants it."""
    key, cert = d / (name + ".key"), d / (name + ".pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=" + domain,
                    "-addext", "subjectAltName=DNS:*.%s,DNS:%s" % (domain, domain)],
                   check=True, capture_output=True)
    return {"cert": str(cert), "key": str(key)}


# --------------------------------------------------------------------------
# Config


DELETE = object()  # an override value that removes the key


def base_config(listen_port, admin_port, redis_url):
    return {
        "workers": 2,
        "domains": [DOMAIN],
        "listeners": [{"address": "127.0.0.1:%d" % listen_port}],
        "admin": {"address": "127.0.0.1:%d" % admin_port},
        "redis": {"url": redis_url, "key_prefix": "sandbox:", "timeout_ms": 1000},
        "cache": {"ttl_ms": 1000, "negative_ttl_ms": 250, "stale_grace_ms": 30000},
        "policy": {"token_exempt_ports": [49983], "trusted_proxies": []},
        "client": {"header_timeout_ms": 10000, "keepalive_timeout_ms": 75000,
                   "body_timeout_ms": 60000, "max_head_bytes": 16384,
                   "max_headers": 100, "max_request_line": 8192,
                   "websocket_idle_timeout_ms": 3600000},
        "upstream": {"connect_timeout_ms": 5000, "connect_retries": 3,
                     "retry_backoff_ms": 100, "response_timeout_ms": 0,
                     "idle_timeout_ms": 60000, "pool_idle_timeout_ms": 30000,
                     "pool_max_idle": 64},
        "drain": {"delay_ms": 0, "timeout_ms": 30000},
        "access_log": {"path": None},
        "log": {"level": "info"},
    }


def merge(base, overrides):
    """Deep-merges overrides into a copy of base. Dicts merge key by key;
    anything else replaces; DELETE removes the key."""
    out = copy.deepcopy(base)
    for k, v in (overrides or {}).items():
        if v is DELETE:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# --------------------------------------------------------------------------
# The proxy process

ACTIVE_PROXIES = []  # for failure reports (conftest prints their stderr)


class ProxyError(AssertionError):
    pass


class Proxy:
    """build/edgeproxy --config <tmpfile>, stopped by pid with SIGTERM."""

    def __init__(self, workdir, redis_url, overrides=None, name="proxy", exe=None,
                 extra_listeners=(), argv_prefix=(), env=None):
        """extra_listeners: listener objects without "address" (e.g.
        {"proxy_protocol": True}); each gets 127.0.0.1:<free port>, listed in
        self.extra_ports, after the plain listener on self.port.
        argv_prefix: a command that execs the rest of its arguments (the
        process keeps its pid), e.g. own_resolver_argv(). env: more
        environment variables for the process."""
        self.argv_prefix = list(argv_prefix)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.exe = Path(exe) if exe else edgeproxy_bin()
        self.port = free_port()
        self.admin_port = free_port()
        self.config = merge(base_config(self.port, self.admin_port, redis_url), overrides)
        self.extra_ports = []
        for lst in extra_listeners:
            port = free_port()
            self.extra_ports.append(port)
            self.config["listeners"].append(dict(lst, address="127.0.0.1:%d" % port))
        self.name = name
        self.env = dict(env or {})
        self.config_path = self.workdir / ("%s-%d.json" % (name, self.port))
        self.stderr_path = self.workdir / ("%s-%d.stderr" % (name, self.port))
        self.proc = None
        self.returncode = None
        self.preexec_fn = None  # run in the child before exec (e.g. setrlimit)

    @property
    def is_asan(self):
        return "/san/" in str(self.exe)

    @property
    def is_tsan(self):
        return "/tsan/" in str(self.exe)

    def start(self, timeout=10.0):
        if not self.exe.exists():
            raise ProxyError("edgeproxy binary not found at %s (run make, or set EDGEPROXY_BIN)" % self.exe)
        self.config_path.write_text(json.dumps(self.config, indent=2))
        env = dict(os.environ)
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        env.setdefault("TSAN_OPTIONS", "suppressions=%s second_deadlock_stack=1" % TSAN_SUPPRESSIONS)
        env.update(self.env)
        err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.argv_prefix + [str(self.exe), "--config", str(self.config_path)],
                                     stdout=err, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env,
                                     preexec_fn=self.preexec_fn)
        err.close()
        ACTIVE_PROXIES.append(self)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise ProxyError("edgeproxy exited early with %s:\n%s" % (self.returncode, self.stderr()))
            try:
                r = admin_get(self.admin_port, "/healthz", timeout=1.0)
                if r.status == 200:
                    break
            except OSError:
                pass
            except HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise ProxyError("edgeproxy /healthz not 200 within %.0fs:\n%s" % (timeout, self.stderr()))
            time.sleep(0.02)
        # Listeners are opened by the workers; make sure the main one accepts.
        wait_until(lambda: _can_connect(self.port), timeout=timeout, what="listener accepting")
        return self

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.returncode = self.proc.returncode if self.proc else None
        if self in ACTIVE_PROXIES:
            ACTIVE_PROXIES.remove(self)

    def sanitizer_findings(self):
        text = self.stderr()
        return [p for p in SANITIZER_PATTERNS if p in text]

    def stop(self, timeout=10.0, check=True):
        """SIGTERM, wait; with check, assert exit 0 and a clean stderr."""
        if self.proc is None:
            return None
        problems = []
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            t0 = time.monotonic()
            if self.wait(timeout) is None:
                problems.append("did not exit within %.0fs of SIGTERM (killed)" % timeout)
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            else:
                self.stop_seconds = time.monotonic() - t0
        self.returncode = self.proc.returncode
        if self in ACTIVE_PROXIES:
            ACTIVE_PROXIES.remove(self)
        if self.returncode != 0 and not problems:
            problems.append("exit code %s after SIGTERM" % self.returncode)
        found = self.sanitizer_findings()
        if found:
            problems.append("sanitizer findings in stderr: %s" % ", ".join(found))
        if check and problems:
            raise ProxyError("%s (%s): %s\n--- stderr ---\n%s" % (
                self.name, self.exe, "; ".join(problems), self.stderr()[-20000:]))
        return self.returncode

    # Convenience ---------------------------------------------------------

    def connect(self, timeout=5.0):
        return Client(self.port, timeout=timeout)

    def request(self, method="GET", target="/", host=None, headers=(), body=None, timeout=5.0):
        """One request on a fresh connection; returns the Response."""
        with self.connect(timeout=timeout) as c:
            return c.request(method, target, host=host, headers=headers, body=body)

    def get(self, host, target="/", headers=(), **kw):
        return self.request("GET", target, host=host, headers=headers, **kw)

    def admin(self, path):
        return admin_get(self.admin_port, path)

    def metric(self, name, **labels):
        """One sample of /metrics: the line for `name` with exactly these
        labels (0.0 when absent)."""
        r = self.admin("/metrics")
        assert r.status == 200, r
        want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
        key = "%s{%s}" % (name, want) if want else name
        for line in r.text.splitlines():
            k, _, v = line.rpartition(" ")
            if k == key:
                return float(v)
        return 0.0


def _can_connect(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# HTTP/1.1 client (raw sockets)


class HTTPError(Exception):
    pass


class ConnectionClosed(HTTPError):
    """The peer closed before a complete response."""


class Response(HeaderLookup):
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) in order, as received
        self.body = body
        self.raw_head = raw_head

    def has_token(self, name, token):
        """Does the comma-separated header `name` carry `token`?"""
        token = token.lower()
        for v in self.header_all(name):
            if token in [t.strip().lower() for t in v.split(",")]:
                return True
        return False

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return "<Response %s %r headers=%r body=%r>" % (
            self.status, self.reason, self.headers, self.body[:300])


# A WebSocket handshake (RFC 6455 section 1.3's example key).
WS_UPGRADE_HEADERS = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                      ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]


def tunnel_echo(c, msg, timeout=5):
    """Sends msg through an open tunnel to the echo upstream and asserts the
    same bytes come back."""
    c.send(msg)
    got = b""
    while len(got) < len(msg):
        data = c.recv_some(timeout=timeout)
        assert data, "tunnel closed after %d of %d bytes" % (len(got), len(msg))
        got += data
    assert got == msg


def build_request(method, target, host=None, headers=(), body=None, version="HTTP/1.1"):
    lines = ["%s %s %s" % (method, target, version)]
    hdrs = list(headers)
    names = {k.lower() for k, _ in hdrs}
    if host is not None:
        lines.append("Host: %s" % host)
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        hdrs.append(("Content-Length", str(len(body))))
    for k, v in hdrs:
        lines.append("%s: %s" % (k, v))
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body is None:
        return head
    if isinstance(body, str):
        body = body.encode()
    return head + body


class Client:
    """One client connection. send() exact bytes, read_response() parses one
    response (Content-Length, chunked, or close-delimited)."""

    def __init__(self, port=None, host="127.0.0.1", timeout=5.0, sock=None):
        """Connects to host:port, or wraps an already connected `sock`
        (e.g. a TLS socket)."""
        if sock is None:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            sock.settimeout(timeout)
        self.sock = sock
        self.buf = bytearray()  # amortised appends: bodies can be large
        self.eof = False

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
    def local_port(self):
        return self.sock.getsockname()[1]

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def request(self, method="GET", target="/", host=None, headers=(), body=None,
                version="HTTP/1.1"):
        self.send(build_request(method, target, host, headers, body, version))
        return self.read_response(head=(method == "HEAD"))

    def _fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_line(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionClosed("closed while reading a line; have %r" % bytes(self.buf[:200]))
        i = self.buf.index(b"\r\n")
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def _read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionClosed("closed with %d of %d body bytes" % (len(self.buf), n))
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionClosed("closed before a response head; have %r" % bytes(self.buf[:300]))
        i = self.buf.index(b"\r\n\r\n")
        raw = bytes(self.buf[:i])
        del self.buf[:i + 4]
        lines = raw.split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise HTTPError("bad status line %r" % lines[0])
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for line in lines[1:]:
            k, sep, v = line.decode("latin-1").partition(":")
            if not sep:
                raise HTTPError("bad header line %r" % line)
            headers.append((k, v.strip(" \t")))
        return version, status, reason, headers, raw

    def read_response(self, head=False):
        while True:
            version, status, reason, headers, raw = self.read_head()
            if 100 <= status < 200 and status != 101:
                continue  # interim response
            break
        resp = Response(version, status, reason, headers, b"", raw)
        if head or status in (101, 204, 304):
            return resp
        te = ",".join(resp.header_all("transfer-encoding")).lower()
        if "chunked" in te:
            resp.body = self._read_chunked()
        elif resp.header("content-length") is not None:
            resp.body = self._read_exact(int(resp.header("content-length")))
        else:
            while self._fill():
                pass
            resp.body, self.buf = bytes(self.buf), bytearray()
        return resp

    def _read_chunked(self):
        out = []
        while True:
            line = self._read_line()
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self._read_line() != b"":
                    pass  # trailers
                return b"".join(out)
            out.append(self._read_exact(size))
            if self._read_line() != b"":
                raise HTTPError("chunk not followed by CRLF")

    def recv_some(self, timeout=2.0):
        """Raw bytes (for tunnels): whatever arrives next, b'' on EOF."""
        if self.buf:
            data, self.buf = bytes(self.buf), bytearray()
            return data
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""

    def is_closed(self, timeout=2.0):
        """True if the peer closes (EOF or reset) within timeout with no
        further data; False if the connection stays open; raises if bytes
        arrive."""
        if self.buf:
            raise HTTPError("unexpected extra bytes %r" % bytes(self.buf[:200]))
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(old)
        if data:
            raise HTTPError("unexpected extra bytes %r" % data[:200])
        return True


def admin_get(port, path, timeout=5.0):
    with Client(port, timeout=timeout) as c:
        return c.request("GET", path, host="127.0.0.1:%d" % port,
                         headers=[("Connection", "close")])


# --------------------------------------------------------------------------
# Assertions on the proxy's own responses (SPEC section 6)

JSON_CT = "application/json; charset=utf-8"


# --------------------------------------------------------------------------
# What the proxy reports: /metrics, and its memory


def parse_metrics(text):
    """Prometheus text -> {(name, ((label, value), ...)): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)', line)
        assert m, "bad metrics line %r" % line
        labels = tuple(sorted(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', m.group(3) or "")))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def metrics(proxy):
    r = proxy.admin("/metrics")
    assert r.status == 200, r
    return parse_metrics(r.text)


def value(m, name, **labels):
    """The sample with exactly these labels; 0.0 if absent."""
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


def family(m, name):
    return {k: v for k, v in m.items() if k[0] == name}


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def check_error(resp, status, sandbox_id=None, port=None, connection_limit=None,
                html=False):
    """Asserts resp is a proxy-made error: status, ACAO *, content type, and a
    JSON body {"code","message"} plus exactly the listed extra fields."""
    assert resp.status == status, "expected %d, got %r" % (status, resp)
    assert resp.header("access-control-allow-origin") == "*", resp
    if html:
        ct = resp.header("content-type", "")
        assert ct.lower().startswith("text/html"), resp
        return None
    assert resp.header("content-type") == JSON_CT, resp
    body = resp.json()
    want = {"code", "message"}
    assert body.get("code") == status, body
    assert isinstance(body.get("message"), str) and body["message"], body
    if sandbox_id is not None:
        want.add("sandboxId")
        assert body.get("sandboxId") == sandbox_id, body
    if port is not None:
        want.add("port")
        assert body.get("port") == port, body
    if connection_limit is not None:
        want.add("connectionLimit")
        assert body.get("connectionLimit") == connection_limit, body
    assert set(body) == want, "fields %r, expected exactly %r" % (sorted(body), sorted(want))
    return body


# --------------------------------------------------------------------------
# wrk (load generator): started in the background, output parsed


def wrk_exe():
    """Path of wrk, or None when it is not installed."""
    return shutil.which("wrk")


class WrkResult:
    def __init__(self, text, returncode):
        self.text = text
        self.returncode = returncode
        m = re.search(r"^\s*(\d+) requests in ", text, re.M)
        self.requests = int(m.group(1)) if m else None
        # Both lines are absent when their counts are zero.
        m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
        self.non_2xx = int(m.group(1)) if m else 0
        self.has_non_2xx_line = m is not None
        m = re.search(r"Socket errors:\s*connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
        self.socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                                      (int(x) for x in m.groups()))) if m else {}
        self.has_socket_errors_line = "Socket errors" in text

    def __repr__(self):
        return "<WrkResult rc=%s requests=%s non_2xx=%d socket_errors=%r>\n%s" % (
            self.returncode, self.requests, self.non_2xx, self.socket_errors, self.text)


class Wrk:
    """wrk -t<threads> -c<conns> -d<duration>s against 127.0.0.1:<port><path>
    with the given Host, in the background. Bounded: at most 16 connections
    and 10 s."""

    def __init__(self, port, host, path="/", duration=3, conns=16, threads=2,
                 headers=(), timeout_s=5):
        assert conns <= 16 and duration <= 10, "keep wrk runs bounded"
        exe = wrk_exe()
        if exe is None:
            raise RuntimeError("wrk is not installed")
        self.duration = duration
        args = [exe, "-t%d" % min(threads, conns), "-c%d" % conns, "-d%ds" % duration,
                "--timeout", "%ds" % timeout_s, "-H", "Host: %s" % host]
        for k, v in headers:
            args += ["-H", "%s: %s" % (k, v)]
        args.append("http://127.0.0.1:%d%s" % (port, path))
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def running(self):
        return self.proc.poll() is None

    def result(self):
        try:
            out, _ = self.proc.communicate(timeout=self.duration + 30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            out, _ = self.proc.communicate()
        return WrkResult(out.decode(errors="replace"), self.proc.returncode)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


# --------------------------------------------------------------------------
# A TCP relay that can cut the network silently


class TcpRelay:
    """127.0.0.1:<port> -> 127.0.0.1:<target_port>, byte for byte, two
    threads per connection.

    cut(): every connection open at that moment goes silent, as in a network
    partition or a failover to another server: the server side is closed (the
    server forgets the client), while the client's socket stays open and
    gets nothing, no FIN, no RST; what the client sends is swallowed.
    Connections made after cut() are relayed normally."""

    def __init__(self, target_port, host="127.0.0.1"):
        self.target = (host, target_port)
        self.lock = threading.Lock()
        self.pairs = []  # [client_sock, server_sock, cut_flag(list)]
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True,
                                       name="relay-%d" % self.port)
        self.thread.start()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                s = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            c.settimeout(None)
            s.settimeout(None)
            pair = [c, s, [False]]
            with self.lock:
                self.pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, False), daemon=True).start()

    def _pump(self, pair, upstream):
        c, s, cut = pair
        src, dst = (c, s) if upstream else (s, c)
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if cut[0]:
                if upstream and data:
                    continue  # swallowed: the client's bytes go nowhere
                if upstream or not data:
                    break     # the client closed, or our server side did
                continue
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        if not cut[0] or upstream:
            self._close(pair)

    @staticmethod
    def _close(pair):
        for sock in pair[:2]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass

    def connections(self):
        with self.lock:
            return sum(1 for p in self.pairs if not p[2][0])

    def cut(self):
        with self.lock:
            pairs = [p for p in self.pairs if not p[2][0]]
            for p in pairs:
                p[2][0] = True
        for p in pairs:
            try:
                p[1].shutdown(socket.SHUT_RDWR)  # the server forgets us
            except OSError:
                pass

    def stop(self):
        self._stop.set()
        self.thread.join(2)
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            pairs = list(self.pairs)
        for p in pairs:
            self._close(p)


# --------------------------------------------------------------------------
# A DNS server of our own, and the proxy run with a resolv.conf naming it


class DnsUnavailable(Exception):
    """This machine cannot run DnsServer or own_resolver_argv() (not root,
    no mount namespaces): the test should skip."""


class DnsServer:
    """A tiny DNS server on UDP <127.53.x.y>:53 (port 53 because glibc's
    resolv.conf cannot name another; a random loopback address so tests
    running at once do not collide). It answers A queries for the names in
    `records` (name -> list of IPv4 strings), other names with NXDOMAIN and
    AAAA queries for known names with no data. While `silent` it answers
    nothing at all: a resolver asking it waits for its own timeout, as with
    a nameserver that is down or unreachable. `queries` lists (name, qtype)
    as received."""

    def __init__(self, records=None, silent=False):
        self.records = dict(records or {})
        self.silent = silent
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):
            addr = "127.53.%d.%d" % (uuid.uuid4().int % 250 + 1, uuid.uuid4().int % 250 + 1)
            try:
                self.sock.bind((addr, 53))
                break
            except PermissionError as e:
                self.sock.close()
                raise DnsUnavailable("cannot bind UDP port 53: %s" % e)
            except OSError:
                continue
        else:
            self.sock.close()
            raise DnsUnavailable("no free 127.53.x.y:53")
        self.address = addr
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True, name="dns-" + addr)
        self.thread.start()

    def resolv_conf(self, path, options="timeout:5 attempts:1"):
        """Writes a resolv.conf naming only this server; returns path."""
        Path(path).write_text("nameserver %s\noptions %s\n" % (self.address, options))
        return path

    def _serve(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            reply = self._answer(data)
            if reply is not None:
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    pass

    def _answer(self, data):
        if len(data) < 12:
            return None
        qid, flags, qdcount = int.from_bytes(data[0:2], "big"), \
            int.from_bytes(data[2:4], "big"), int.from_bytes(data[4:6], "big")
        if qdcount != 1:
            return None
        i, labels = 12, []
        while i < len(data) and data[i]:
            labels.append(data[i + 1:i + 1 + data[i]].decode("ascii", "replace"))
            i += 1 + data[i]
        if i + 5 > len(data):
            return None
        qtype = int.from_bytes(data[i + 1:i + 3], "big")
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        if self.silent:
            return None
        ips = self.records.get(name)
        answers = []
        if ips and qtype == 1:
            for ip in ips:
                # name = pointer to the question (offset 12), A, IN, TTL 0, 4 bytes
                answers.append(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04" +
                               socket.inet_aton(ip))
        rcode = 0 if ips is not None else 3
        # QR, AA, the query's RD, RA; the question echoed as received (0x20
        # case randomisation included).
        rflags = 0x8480 | (flags & 0x0100) | rcode
        head = qid.to_bytes(2, "big") + rflags.to_bytes(2, "big") + b"\x00\x01" + \
            len(answers).to_bytes(2, "big") + b"\x00\x00\x00\x00"
        return head + data[12:i + 5] + b"".join(answers)

    def stop(self):
        self._stop.set()
        self.sock.close()
        self.thread.join(2)


_UNSHARE_OK = None


def own_resolver_argv(resolv_conf):
    """An argv prefix that runs a command with `resolv_conf` mounted over
    /etc/resolv.conf, in a mount namespace of its own (the machine's file is
    untouched; other processes see nothing). The command keeps the pid:
    unshare and sh both exec. Raises DnsUnavailable where that is not
    possible."""
    global _UNSHARE_OK
    if _UNSHARE_OK is None:
        probe = subprocess.run(["unshare", "--mount", "sh", "-c",
                                "mount --bind /etc/hostname /etc/hostname"],
                               capture_output=True, text=True)
        _UNSHARE_OK = True if probe.returncode == 0 else \
            (probe.stderr.strip() or "exit status %d" % probe.returncode)
    if _UNSHARE_OK is not True:
        raise DnsUnavailable("unshare --mount: %s" % _UNSHARE_OK)
    return ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"',
            str(resolv_conf)]
