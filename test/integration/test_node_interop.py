"""Interop with Node (issue 13): Node's own http2 client over TLS (ALPN h2,
trusting the test certificate) and with prior knowledge on a plain port,
many requests at once to two sandboxes on one session, a POST whose body
is streamed, trailers, a WebSocket over an extended CONNECT (RFC 8441);
and Node's global fetch (undici: HTTP/1.1 over TLS). The scripts are in
test/integration/node/ and print what they got as JSON; the tests check
that and what the upstream received. Skipped only when `node` is absent."""

import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest

from harness import new_sid, public_record, sandbox_host, wait_until
from tls_proxy_fixtures import access_log, certs, proxy, wsup  # noqa: F401 (fixtures)

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")
SCRIPTS = os.path.join(os.path.dirname(__file__), "node")


@pytest.fixture
def two(redis_server, upstream):
    """Two sandboxes on the echo upstream: [(sid, host), (sid, host)]."""
    out = []
    for _ in range(2):
        s = new_sid()
        redis_server.set_record(s, public_record())
        out.append((s, sandbox_host(upstream.port, s)))
    return out


def node(script, cfg, env=None, timeout=30):
    p = subprocess.run([NODE, os.path.join(SCRIPTS, script), json.dumps(cfg)], capture_output=True,
                       timeout=timeout, env=dict(os.environ, **(env or {})))
    try:
        out = json.loads(p.stdout)
    except ValueError:
        raise AssertionError("node %s: rc %d, stdout %r, stderr %r" % (script, p.returncode, p.stdout[-2000:],
                                                                       p.stderr[-2000:]))
    assert p.returncode == 0 and "error" not in out, (out, p.stderr[-2000:])
    return out


def log_lines(access_log, marker):
    if not access_log.exists():
        return []
    return [json.loads(l) for l in access_log.read_text().splitlines() if marker in l]


def http2_requests(two, tag):
    """Six GETs spread over the two sandboxes, a POST streamed in five
    pieces without a length, a GET whose chunked response has trailers."""
    (a, ha), (b, hb) = two
    reqs = []
    for i in range(6):
        s, h = (a, ha) if i % 2 == 0 else (b, hb)
        reqs.append({"method": "GET", "path": "/r/%s/%s-get-%d" % (s, tag, i), "authority": h,
                     "headers": {"x-test-delay-ms": str(50 * (i % 3))}})
    reqs.append({"method": "POST", "path": "/r/%s/%s-post" % (a, tag), "authority": ha,
                 "headers": {"content-type": "text/plain"},
                 "chunks": ["chunk-%d;" % i * 500 for i in range(5)], "delay_ms": 30})
    reqs.append({"method": "GET", "path": "/r/%s/%s-trailers" % (b, tag), "authority": hb,
                 "headers": {"x-test-chunked": "1", "x-test-trailers": json.dumps([["X-Checksum", "c0ffee"]])}})
    return reqs


def check_http2_results(out, two, upstream, tag, proto):
    (a, ha), (b, hb) = two
    res = out["results"]
    for i in range(6):
        r = res[i]
        s = a if i % 2 == 0 else b
        assert r["status"] == 200, r
        body = json.loads(r["body"])
        assert body["method"] == "GET" and body["target"] == "/r/%s/%s-get-%d" % (s, tag, i), body
        assert "connection" not in r["headers"] and "transfer-encoding" not in r["headers"]
    post = res[6]
    sent = "".join("chunk-%d;" % i * 500 for i in range(5)).encode()
    assert post["status"] == 200, post
    pb = json.loads(post["body"])
    assert pb["method"] == "POST" and pb["body_len"] == len(sent)
    assert pb["body_sha256"] == hashlib.sha256(sent).hexdigest()
    trl = res[7]
    assert trl["status"] == 200 and json.loads(trl["body"])["target"] == "/r/%s/%s-trailers" % (b, tag)
    assert trl["trailers"] == {"x-checksum": "c0ffee"}, trl
    # what the sandboxes received, in HTTP/1.1
    (rec,) = upstream.requests_for("/r/%s/%s-post" % (a, tag))
    assert rec.version == "HTTP/1.1" and rec.header("transfer-encoding") == "chunked"
    assert not rec.has_header("content-length") and rec.body == sent
    assert rec.header_all("content-type") == ["text/plain"]
    assert rec.header_all("x-forwarded-proto") == [proto]
    for i in range(6):
        s, h = (a, ha) if i % 2 == 0 else (b, hb)
        (rec,) = upstream.requests_for("/r/%s/%s-get-%d" % (s, tag, i))
        assert rec.header_all("host") == [h] and rec.header_all("x-forwarded-proto") == [proto]


def test_node_http2_over_tls(proxy, certs, upstream, two, access_log):
    host = two[0][1]
    out = node("h2_client.js", {"port": proxy.extra_ports[0], "tls": True, "ca": certs["cert"],
                                "servername": host, "requests": http2_requests(two, "tls")})
    assert out["alpn"] == "h2"
    assert out["settings"]["maxConcurrentStreams"] == 100
    assert out["settings"]["enableConnectProtocol"] is True
    check_http2_results(out, two, upstream, "tls", "https")
    wait_until(lambda: len(log_lines(access_log, "tls-get-")) == 6, timeout=5, what="access log lines")
    assert {l["protocol"] for l in log_lines(access_log, "tls-get-")} == {"HTTP/2"}


def test_node_http2_prior_knowledge(proxy, upstream, two):
    out = node("h2_client.js", {"port": proxy.port, "tls": False, "requests": http2_requests(two, "h2c")})
    assert out["alpn"] == "h2c"
    check_http2_results(out, two, upstream, "h2c", "http")


def test_node_websocket_over_http2(proxy, certs, wsup, redis_server):
    # Node checks the SETTINGS itself: it sends :protocol only to a server
    # that said ENABLE_CONNECT_PROTOCOL.
    sid = new_sid()
    redis_server.set_record(sid, public_record())
    host = sandbox_host(wsup.port, sid)
    out = node("h2_client.js", {"port": proxy.extra_ports[0], "tls": True, "ca": certs["cert"],
                                "servername": host,
                                "websocket": {"path": "/r/%s/node-ws" % sid, "authority": host,
                                              "message": "hello from node"}})
    ws = out["ws"]
    assert ws["status"] == 200 and ws["headers"]["sec-websocket-protocol"] == "chat", ws
    # the echo, then what the sandbox said after reading the half-close
    assert ws["messages"] == ["hello from node", "after-eof"] and ws["ended"], ws
    (rec,) = wsup.requests_for("/r/%s/node-ws" % sid)
    assert rec.method == "GET" and rec.header("upgrade", "").lower() == "websocket"
    assert rec.header_all("x-forwarded-proto") == ["https"]


def test_node_fetch_over_tls(proxy, certs, upstream, two, access_log):
    (a, ha), (b, hb) = two
    port = proxy.extra_ports[0]
    big = "p" * 100000
    out = node("fetch_client.js", {"requests": [
        {"url": "https://%s:%d/r/%s/fetch-get?q=1" % (ha, port, a), "headers": {"x-from": "fetch"}},
        {"url": "https://%s:%d/r/%s/fetch-post" % (hb, port, b), "method": "POST", "body": big,
         "headers": {"content-type": "text/plain"}},
        {"url": "https://%s:%d/r/%s/fetch-stream" % (ha, port, a), "method": "POST",
         "chunks": ["one,", "two,", "three"]},
        {"url": "https://%s:%d/r/%s/fetch-404" % (hb, port, b), "headers": {"x-test-status": "404"}},
    ]}, env={"NODE_EXTRA_CA_CERTS": certs["cert"]})
    get, post, stream, nf = out["results"]
    assert get["status"] == 200 and json.loads(get["body"])["target"] == "/r/%s/fetch-get?q=1" % a, get
    assert post["status"] == 200, post
    pb = json.loads(post["body"])
    assert pb["body_len"] == len(big) and pb["body_sha256"] == hashlib.sha256(big.encode()).hexdigest()
    assert stream["status"] == 200 and json.loads(stream["body"])["body_len"] == len("one,two,three")
    assert nf["status"] == 404
    (rec,) = upstream.requests_for("/r/%s/fetch-get" % a)
    assert rec.header_all("x-from") == ["fetch"] and rec.header_all("host") == ["%s:%d" % (ha, port)]
    assert rec.header_all("x-forwarded-proto") == ["https"]
    (rec,) = upstream.requests_for("/r/%s/fetch-post" % b)
    assert rec.method == "POST" and rec.header("content-length") == str(len(big)) and rec.body == big.encode()
    (rec,) = upstream.requests_for("/r/%s/fetch-stream" % a)
    assert rec.header("transfer-encoding") == "chunked" and rec.body == b"one,two,three"
    # undici speaks HTTP/1.1 (no h2 offered in its ALPN): the proxy says so
    wait_until(lambda: len(log_lines(access_log, "/fetch-")) == 4, timeout=5, what="access log lines")
    assert {l["protocol"] for l in log_lines(access_log, "/fetch-")} == {"HTTP/1.1"}
