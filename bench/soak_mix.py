#!/usr/bin/env python3
"""Python traffic for bench/soak.sh: the streams wrk cannot make.

Starts the test suite's EchoUpstream (test/integration/upstreams.py) on a
free 127.0.0.1 port and, for --duration seconds, drives through the proxy:

  upload-cl       POST 64 KiB..1 MiB bodies with Content-Length (keep-alive),
                  X-Test-Discard-Body so the upstream keeps only length+sha;
                  the echoed length must match
  upload-chunked  the same with Transfer-Encoding: chunked (several chunks)
  websocket       open a WebSocket (Upgrade) to the echo upstream, send a few
                  masked frames, read each echoed back byte for byte, send a
                  close frame, read its echo, close; over and over
  err-unknown     a sandbox not in Redis                      expect 502
  err-403         the private sandbox without its token       expect 403
  err-400         a malformed request head                    expect 400
  err-refused     a sandbox port nothing listens on           expect 502

While Redis is down, lookups that miss the cache may answer 503: counted as
expected for err-unknown (like the wrk "unknown" stream). Everything else
that is not the expected answer is an error; a few samples are kept.

Writes one JSON object to --out:
  {"streams": {name: {"requests": n, "ok": n, "errors": n, "samples": [...]}}}
"""

import argparse
import base64
import json
import os
import random
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "integration"))
import harness  # noqa: E402
import upstreams  # noqa: E402

TIMEOUT = 15.0


class Stream:
    def __init__(self, name):
        self.name = name
        self.requests = 0
        self.ok = 0
        self.errors = 0
        self.extra = {}
        self.samples = []
        self.lock = threading.Lock()

    def result(self, good, what=""):
        with self.lock:
            self.requests += 1
            if good:
                self.ok += 1
            else:
                self.errors += 1
                if len(self.samples) < 5:
                    self.samples.append("%.1fs %s" % (time.monotonic() - T0, what))

    def add(self, key, n=1):
        with self.lock:
            self.extra[key] = self.extra.get(key, 0) + n

    def as_dict(self):
        d = {"requests": self.requests, "ok": self.ok, "errors": self.errors,
             "samples": self.samples}
        d.update(self.extra)
        return d


T0 = time.monotonic()


def conn(port):
    return harness.Client(port, timeout=TIMEOUT)


def upload_loop(a, st, chunked, stop):
    host = harness.sandbox_host(a.echo_port, a.sid, a.domain)
    c = None
    rnd = random.Random(os.getpid() * 2 + chunked)
    while not stop.is_set():
        size = rnd.randint(64 << 10, 1 << 20)
        body = upstreams.pattern_bytes(size)
        try:
            if c is None:
                c = conn(a.proxy_port)
            hdrs = [("X-Test-Discard-Body", "1")]
            if chunked:
                step = max(1, size // 4)
                data = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + step]), body[i:i + step])
                                for i in range(0, size, step)) + b"0\r\n\r\n"
                hdrs.append(("Transfer-Encoding", "chunked"))
                c.send(harness.build_request("POST", "/upload", host, hdrs) + data)
                r = c.read_response()
            else:
                r = c.request("POST", "/upload", host, hdrs, body)
            got = r.json().get("body_len") if r.status == 200 else None
            st.result(r.status == 200 and got == size,
                      "status %d body_len %r of %d" % (r.status, got, size))
            if r.status == 200 and got == size:
                st.add("bytes", size)
            if (r.header("connection") or "").lower() == "close":
                c.close()
                c = None
        except Exception as e:  # noqa: BLE001 - counted, soak keeps going
            st.result(False, "%s: %s" % (type(e).__name__, e))
            if c is not None:
                c.close()
            c = None
    if c is not None:
        c.close()


def ws_frame(opcode, payload, rnd):
    mask = bytes(rnd.getrandbits(8) for _ in range(4))
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def ws_loop(a, st, stop):
    host = harness.sandbox_host(a.echo_port, a.sid, a.domain)
    rnd = random.Random(os.getpid() + 7)
    while not stop.is_set():
        c = None
        try:
            c = conn(a.proxy_port)
            key = base64.b64encode(os.urandom(16)).decode()
            c.send(harness.build_request("GET", "/ws", host, [
                ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
            r = c.read_response()
            if r.status != 101:
                st.result(False, "upgrade answered %d" % r.status)
                continue
            for i in range(rnd.randint(2, 5)):
                payload = os.urandom(rnd.choice((5, 200, 3000)))
                f = ws_frame(0x2, payload, rnd)
                c.send(f)
                back = c._read_exact(len(f))  # the upstream echoes raw bytes
                if back != f:
                    raise harness.HTTPError("message %d echoed wrong" % i)
                st.add("messages")
            f = ws_frame(0x8, b"\x03\xe8bye", rnd)
            c.send(f)
            if c._read_exact(len(f)) != f:
                raise harness.HTTPError("close frame echoed wrong")
            st.result(True)
        except Exception as e:  # noqa: BLE001
            st.result(False, "%s: %s" % (type(e).__name__, e))
        finally:
            if c is not None:
                c.close()


def status_of(port, raw):
    with conn(port) as c:
        c.send(raw)
        return c.read_response().status


def err_loop(a, st, make, expect, stop, pause=0.0):
    while not stop.is_set():
        try:
            s = status_of(a.proxy_port, make())
            st.result(s in expect, "status %d, expected %s" % (s, expect))
        except Exception as e:  # noqa: BLE001
            st.result(False, "%s: %s" % (type(e).__name__, e))
        if pause:
            stop.wait(pause)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--proxy-port", type=int, required=True)
    p.add_argument("--domain", required=True)
    p.add_argument("--sid", required=True, help="a public sandbox (any port)")
    p.add_argument("--private-sid", required=True)
    p.add_argument("--private-port", type=int, required=True)
    p.add_argument("--unknown-sid", required=True)
    p.add_argument("--refused-port", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    echo = upstreams.EchoUpstream(name="soak-echo")
    a.echo_port = echo.port
    stop = threading.Event()
    streams = {n: Stream(n) for n in ("upload-cl", "upload-chunked", "websocket",
                                      "err-unknown", "err-403", "err-400", "err-refused")}
    unknown_host = harness.sandbox_host(a.echo_port, a.unknown_sid, a.domain)
    private_host = harness.sandbox_host(a.private_port, a.private_sid, a.domain)
    refused_host = harness.sandbox_host(a.refused_port, a.sid, a.domain)
    jobs = [
        (upload_loop, (a, streams["upload-cl"], False, stop)),
        (upload_loop, (a, streams["upload-chunked"], True, stop)),
        (ws_loop, (a, streams["websocket"], stop)),
        (err_loop, (a, streams["err-unknown"],
                    lambda: harness.build_request("GET", "/x", unknown_host), (502, 503), stop, 0.02)),
        (err_loop, (a, streams["err-403"],
                    lambda: harness.build_request("GET", "/x", private_host), (403,), stop, 0.02)),
        (err_loop, (a, streams["err-400"],
                    lambda: b"GET /x HTTP/1.1\r\nHost: " + unknown_host.encode() +
                    b"\r\nthis is not a header\r\n\r\n", (400,), stop, 0.02)),
        (err_loop, (a, streams["err-refused"],
                    lambda: harness.build_request("GET", "/x", refused_host), (502,), stop, 0.02)),
    ]
    threads = [threading.Thread(target=f, args=args, daemon=True) for f, args in jobs]
    for t in threads:
        t.start()
    stop.wait(a.duration)
    stop.set()
    for t in threads:
        t.join(TIMEOUT + 5)
    stuck = [t.name for t in threads if t.is_alive()]
    out = {"streams": {n: s.as_dict() for n, s in streams.items()}, "stuck_threads": stuck,
           "echo_port": echo.port}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    echo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
