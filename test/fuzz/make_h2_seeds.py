#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_h2 (test/fuzz/corpus/h2/) in its op
language (see fuzz_h2.c): a few ordinary conversations the fuzzer mutates
from. Run from the repository root: python3 test/fuzz/make_h2_seeds.py"""

import os
import struct

HEADERS, CONT, DATA, RST, WU, SETTINGS, PING, PRIO, GOAWAY, RAW, PUSH, WRITE = range(12)
# template flag byte: bit0 END_STREAM, bit1 no END_HEADERS, bit2 template,
# bits 3-4 method (GET POST HEAD PUT), bits 5-7 sandbox
# (pub priv+token priv slowpub lim broken nosuch down)
def tpl(method=0, sandbox=0, end=True, more=False):
    return (1 if end else 0) | (2 if more else 0) | 4 | (method << 3) | (sandbox << 5)


def fields(*pairs):
    out = b""
    for k, v in pairs:
        out += bytes([len(k)]) + k.encode() + bytes([len(v)]) + v.encode()
    return out


def headers(s, f, *pairs):
    fl = fields(*pairs)
    return bytes([HEADERS, s, f, len(fl)]) + fl


def cont(s, end, *pairs):
    fl = fields(*pairs)
    return bytes([CONT, s, 1 if end else 0, len(fl)]) + fl


def data(s, payload, end=False):
    return bytes([DATA, s, 1 if end else 0]) + struct.pack(">H", len(payload)) + payload


def rst(s, code=8):
    return bytes([RST, s, code])


def wu(s, inc):
    return bytes([WU, s]) + struct.pack(">I", inc)


def settings(*entries):
    return bytes([SETTINGS, len(entries)]) + b"".join(bytes([i]) + struct.pack(">I", v) for i, v in entries)


def ctrl(up=0, flags=0, tls=0, first=0):
    return bytes([up, flags, tls, first])


WS = ((":protocol", "websocket"), ("sec-websocket-version", "13"))
# a masked text frame "hello" (RFC 6455 section 5.7)
WS_HELLO = bytes([0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58])

SEEDS = {
    "get-pub": ctrl() + headers(0, tpl()),
    "get-two-sandboxes": ctrl() + headers(0, tpl(sandbox=0)) + headers(1, tpl(sandbox=6)) + headers(2, tpl(sandbox=1)),
    "priv-with-and-without-token": ctrl() + headers(0, tpl(sandbox=1)) + headers(1, tpl(sandbox=2)),
    "post-length": ctrl() + headers(0, tpl(method=1, end=False), ("content-length", "10")) + data(0, b"0123456789", True),
    "post-chunked-trailers": ctrl(up=1) + headers(0, tpl(method=1, end=False)) + data(0, b"hello") +
        bytes([HEADERS, 0, 1, len(fields(("x-t", "1")))]) + fields(("x-t", "1")),
    "head-and-204": ctrl(up=3) + headers(0, tpl(method=2)) + headers(1, tpl()),
    "interim": ctrl(up=4) + headers(0, tpl()),
    "cut-mid-body": ctrl(up=5) + headers(0, tpl()),
    "slow-then-reset": ctrl() + headers(0, tpl(sandbox=3)) + rst(0),
    "reset-mid-upload": ctrl() + headers(0, tpl(method=1, end=False)) + data(0, b"x" * 1000) + bytes([WRITE]) + rst(0),
    "continuation": ctrl() + headers(0, tpl(more=True)) + cont(0, False, ("a", "b")) + cont(0, True, ("c", "d")),
    "cookies": ctrl() + headers(0, tpl(), ("cookie", "a=1"), ("cookie", "b=2")),
    "host-mismatch": ctrl() + headers(0, tpl(), ("host", "other.sandbox.test")),
    "bad-field": ctrl() + headers(0, tpl(), ("connection", "close")) + headers(1, tpl()),
    "window-updates": ctrl() + settings((4, 16)) + headers(0, tpl()) + bytes([WRITE]) + wu(0, 100) + wu(255, 100),
    "settings-ping-prio": ctrl() + settings((1, 0), (5, 20000)) + bytes([PING, 0, PRIO, 3, 0]) + headers(0, tpl()),
    "many-streams": ctrl(flags=4) + b"".join(headers(i, tpl()) for i in range(12)),
    "rapid-reset": ctrl() + b"".join(headers(i, tpl()) + rst(i) for i in range(30)),
    "goaway-from-client": ctrl() + headers(0, tpl(sandbox=3)) + bytes([GOAWAY]),
    "push-promise": ctrl() + headers(0, tpl()) + bytes([PUSH, 0]),
    "tls-h2": ctrl(flags=1, tls=2) + headers(0, tpl()),
    "proxy-protocol-tls": ctrl(flags=3, tls=2) + headers(0, tpl(sandbox=4)),
    "drain": ctrl(flags=8, first=1) + headers(0, tpl(sandbox=3)) + bytes([WRITE]) + headers(1, tpl()),
    "small-limits-slow-reader": ctrl(flags=4) + headers(0, tpl()) + bytes([WRITE]) + data(0, b"", False),
    "raw-junk": ctrl(flags=0x20) + bytes([RAW, 10]) + b"PRI * HTTP",
    "unknown-and-down": ctrl() + headers(0, tpl(sandbox=6)) + headers(1, tpl(sandbox=7)) + headers(2, tpl(sandbox=5)),
    # extended CONNECT (RFC 8441): a template whose first field is
    # :protocol is a CONNECT; the stub answers the Upgrade with a 101 and
    # echoes (kind 6: a wrong Accept, 0x10: a 200 instead)
    "ws-echo-half-close": ctrl() + headers(0, tpl(end=False), *WS) + bytes([WRITE]) +
        data(0, WS_HELLO) + bytes([WRITE]) + data(0, WS_HELLO, True),
    "ws-priv-and-reset": ctrl() + headers(0, tpl(sandbox=1, end=False), *WS) + headers(1, tpl(sandbox=2, end=False), *WS) +
        bytes([WRITE]) + data(0, WS_HELLO) + bytes([WRITE]) + rst(0),
    "ws-wrong-accept": ctrl(up=6) + headers(0, tpl(end=False), *WS) + data(0, WS_HELLO),
    "ws-no-switch": ctrl(up=0x10) + headers(0, tpl(end=False), *WS) + headers(1, tpl()),
    "ws-upstream-closes": ctrl(up=0x40) + headers(0, tpl(end=False), *WS) + bytes([WRITE]) + data(0, WS_HELLO),
    "ws-small-limits": ctrl(flags=4) + headers(0, tpl(end=False), *WS) + headers(1, tpl(end=False), *WS) +
        bytes([WRITE]) + data(0, b"x" * 3000) + data(1, b"y" * 3000) + wu(0, 10),
    "ws-drain": ctrl(flags=8, first=1) + headers(0, tpl(end=False), *WS) + bytes([WRITE]) + data(0, WS_HELLO, True),
    "ws-refused-forms": ctrl() + headers(0, tpl(end=False), (":protocol", "connect-udp")) +
        headers(1, tpl(end=False), *WS, ("content-length", "5")) +
        headers(2, tpl(end=False), *WS) + bytes([HEADERS, 2, 1, len(fields(("x-t", "1")))]) + fields(("x-t", "1")) +
        headers(3, tpl(end=False), ("x-a", "b"), (":protocol", "websocket")),
}

if __name__ == "__main__":
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "h2")
    os.makedirs(d, exist_ok=True)
    for name, b in SEEDS.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(b)
    print("%d seeds in %s" % (len(SEEDS), d))
