"""Self-tests of the harness pieces (no proxy needed): redis-server + RESP
client, the echo upstream, the HTTP client's framing."""

import json
import socket
import time

from harness import (DELETE, Client, ConnectionClosed, Resp, base_config, build_request,
                     free_port, merge)
from upstreams import EchoUpstream, pattern_bytes, start_later


def test_resp_client(redis_server):
    c = redis_server.client
    assert c.cmd("PING") == "PONG"
    assert c.set("k1", "v1") == "OK"
    assert c.get("k1") == b"v1"
    assert c.get("missing") is None
    assert c.delete("k1") == 1
    before = c.command_calls("get")
    c.get("k1")
    assert c.command_calls("get") == before + 1
    # a subscriber in another connection receives the message
    sub = Resp(redis_server.port)
    assert sub.cmd("SUBSCRIBE", "sandbox:invalidate") == [b"subscribe", b"sandbox:invalidate", 1]
    assert c.numsub("sandbox:invalidate") == 1
    assert redis_server.invalidate("abc") == 1
    assert sub._read() == [b"message", b"sandbox:invalidate", b"abc"]
    sub.close()


def test_redis_record_helpers(redis_server):
    redis_server.set_record("xyz", address="127.0.0.1", allowPublicTraffic=True)
    assert json.loads(redis_server.client.get("sandbox:xyz")) == {
        "address": "127.0.0.1", "allowPublicTraffic": True}
    redis_server.set_record("xyz", "not json")
    assert redis_server.client.get("sandbox:xyz") == b"not json"
    assert redis_server.delete_record("xyz") == 1


def test_echo_upstream_keepalive_and_bodies():
    with EchoUpstream() as up:
        with Client(up.port) as c:
            r1 = c.request("GET", "/a?x=1", host="h", headers=[("X-A", "1"), ("x-a", "2")])
            assert r1.status == 200
            assert r1.json()["target"] == "/a?x=1"
            r2 = c.request("POST", "/b", host="h", body=b"hello")
            c.send(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n")
            r3 = c.read_response()
            assert r1.header("x-upstream-conn") == r2.header("x-upstream-conn") == r3.header("x-upstream-conn") == "1"
        reqs = up.snapshot()
        assert [r.target for r in reqs] == ["/a?x=1", "/b", "/c"]
        assert reqs[0].headers == [("Host", "h"), ("X-A", "1"), ("x-a", "2")]
        assert reqs[0].header_all("x-a") == ["1", "2"]
        assert reqs[1].body == b"hello"
        assert reqs[2].body == b"abcde"
        assert up.conn_count == 1
        # a second connection gets id 2
        with Client(up.port) as c:
            assert c.request("GET", "/d", host="h").header("x-upstream-conn") == "2"


def test_echo_upstream_controls():
    with EchoUpstream() as up:
        with Client(up.port) as c:
            r = c.request("GET", "/chunk", host="h", headers=[("X-Test-Chunked", "1"),
                                                              ("X-Test-Body-Size", "1000")])
            assert r.header("transfer-encoding") == "chunked"
            assert r.body == pattern_bytes(1000)
            r = c.request("HEAD", "/head", host="h")
            assert r.body == b"" and int(r.header("content-length")) > 0
            r = c.request("GET", "/after-head", host="h")
            assert r.json()["target"] == "/after-head"
            r = c.request("GET", "/st", host="h", headers=[("X-Test-Status", "418"),
                                                           ("X-Test-Headers", '[["X-Extra", "yes"]]')])
            assert r.status == 418 and r.header("x-extra") == "yes"
            t0 = time.monotonic()
            c.request("GET", "/slow", host="h", headers=[("X-Test-Delay-Ms", "200")])
            assert time.monotonic() - t0 >= 0.2
        with Client(up.port) as c:
            c.send(build_request("GET", "/reset", "h", [("X-Test-Reset", "1")]))
            try:
                c.read_response()
                assert False, "expected a reset"
            except (ConnectionClosed, ConnectionResetError):
                pass
        with Client(up.port) as c:
            c.send(b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            r = c.read_response()
            assert r.status == 101
            assert r.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
            c.send(b"ping-bytes")
            got = b""
            while len(got) < 10:
                got += c.recv_some()
            assert got == b"ping-bytes"


def test_slow_upstream_and_start_later():
    with EchoUpstream(delay=0.2) as up:
        t0 = time.monotonic()
        with Client(up.port) as c:
            assert c.request("GET", "/", host="h").status == 200
        assert time.monotonic() - t0 >= 0.2
    port = free_port()
    h = start_later(port, 0.1)
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        refused = False
    except ConnectionRefusedError:
        refused = True
    assert refused
    h.thread.join(2)
    assert h.server is not None, h.error
    with Client(port) as c:
        assert c.request("GET", "/", host="h").status == 200
    h.server.stop()


def test_config_merge():
    base = base_config(1, 2, "redis://127.0.0.1:3/0")
    m = merge(base, {"cache": {"ttl_ms": 60000}, "workers": 1, "access_log": DELETE})
    assert m["cache"] == {"ttl_ms": 60000, "negative_ttl_ms": 250, "stale_grace_ms": 30000}
    assert m["workers"] == 1 and "access_log" not in m
    assert base["cache"]["ttl_ms"] == 1000
