"""SPEC section 7: /metrics (exactly the families README documents, which
include those SPEC requires) and the access log (exactly README's keys, in
README's order); SPEC section 4: the error log line for a broken record.

The documented lists are read from README.md itself (documented.py): README
is the one place a metric or access-log key is listed."""

import time
import json
import re

import pytest

from documented import access_log_keys, metric_families
from harness import (family, free_port, metrics, new_sid, parse_metrics, public_record,
                     sandbox_host, value, wait_until)


@pytest.fixture(scope="module")
def access_log(workdir):
    return workdir / "access.log"


@pytest.fixture(scope="module")
def proxy(make_proxy, access_log):
    return make_proxy({"access_log": {"path": str(access_log)}}, name="obs")


# SPEC section 7's minimum, as README names the families.
REQUIRED = {
    "edgeproxy_requests_total": "counter",
    "edgeproxy_request_duration_seconds": "histogram",
    "edgeproxy_client_connections": "gauge",
    "edgeproxy_upstream_connections": "gauge",
    "edgeproxy_route_cache_hits_total": "counter",
    "edgeproxy_route_cache_misses_total": "counter",
    "edgeproxy_redis_errors_total": "counter",
    "edgeproxy_upstream_connect_errors_total": "counter",
}

# The samples a family of each type has (Prometheus text format 0.0.4).
SUFFIXES = {"counter": [""], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}


def test_metric_families_exactly_as_documented(proxy, upstream, redis_server, sid):
    documented = metric_families()
    assert REQUIRED.items() <= documented.items(), "README lacks SPEC 7 families"
    redis_server.set_record(sid, public_record())
    assert proxy.get(sandbox_host(upstream.port, sid), "/").status == 200
    r = proxy.admin("/metrics")
    assert r.header("content-type", "").startswith("text/plain"), r
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", r.text, re.M))
    assert types == documented, "/metrics vs README: undocumented %r, not emitted %r, type differs %r" % (
        sorted(types.keys() - documented.keys()), sorted(documented.keys() - types.keys()),
        sorted(k for k in types.keys() & documented.keys() if types[k] != documented[k]))
    # every sample belongs to a documented family, every family has samples
    m = parse_metrics(r.text)
    expected = {name + sfx for name, t in documented.items() for sfx in SUFFIXES[t]}
    assert {k[0] for k in m} == expected


def test_requests_by_status_class(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    before = metrics(proxy)
    with proxy.connect() as c:
        for _ in range(3):
            assert c.request("GET", "/", host=host).status == 200
        for _ in range(2):
            assert c.request("GET", "/", host=sandbox_host(upstream.port, new_sid())).status == 502
        assert c.request("GET", "/", host="bad.sandbox.test").status == 400
    want = {"2xx": 3, "4xx": 1, "5xx": 2}

    def moved():
        m = metrics(proxy)
        return all(value(m, "edgeproxy_requests_total", **{"class": k}) -
                   value(before, "edgeproxy_requests_total", **{"class": k}) == n for k, n in want.items())
    wait_until(moved, timeout=2, what="requests_total by class to count 3/1/2")
    m = metrics(proxy)
    dc = value(m, "edgeproxy_request_duration_seconds_count") - value(before, "edgeproxy_request_duration_seconds_count")
    assert dc == 6, dc
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in family(m, "edgeproxy_request_duration_seconds_bucket").items())
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), buckets  # cumulative
    assert buckets[-1][0] == float("inf") and buckets[-1][1] == value(m, "edgeproxy_request_duration_seconds_count")


def test_connection_gauges(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    # Connections of earlier tests may still be closing (a lingering close
    # lasts up to 2 s): take the base once the gauge stopped falling.
    base = value(metrics(proxy), "edgeproxy_client_connections")
    deadline = time.time() + 3
    while time.time() < deadline:
        time.sleep(0.1)
        now = value(metrics(proxy), "edgeproxy_client_connections")
        if now >= base:
            break
        base = now
    conns = [proxy.connect() for _ in range(3)]
    try:
        for c in conns:
            assert c.request("GET", "/", host=host).status == 200
        m = metrics(proxy)
        assert value(m, "edgeproxy_client_connections") >= base + 3, m
        assert value(m, "edgeproxy_upstream_connections") >= 1
    finally:
        for c in conns:
            c.close()
    wait_until(lambda: value(metrics(proxy), "edgeproxy_client_connections") <= base, timeout=3,
               what="client_connections back down after the clients left")


def test_route_cache_hits_and_misses(proxy, upstream, redis_server, sid):
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    before = metrics(proxy)
    with proxy.connect() as c:  # one connection, one worker
        for _ in range(5):
            assert c.request("GET", "/", host=host).status == 200
    m = metrics(proxy)
    misses = value(m, "edgeproxy_route_cache_misses_total") - value(before, "edgeproxy_route_cache_misses_total")
    hits = value(m, "edgeproxy_route_cache_hits_total") - value(before, "edgeproxy_route_cache_hits_total")
    assert misses == 1 and hits == 4, (misses, hits)


def test_upstream_connect_errors(proxy, redis_server, sid):
    redis_server.set_record(sid, public_record())
    before = value(metrics(proxy), "edgeproxy_upstream_connect_errors_total")
    assert proxy.get(sandbox_host(free_port(), sid), "/").status == 502
    assert value(metrics(proxy), "edgeproxy_upstream_connect_errors_total") > before


def test_redis_errors_counted(make_proxy, upstream):
    p = make_proxy({"redis": {"url": "redis://127.0.0.1:%d/0" % free_port()}}, name="obs-noredis")
    assert p.get(sandbox_host(upstream.port, new_sid()), "/").status == 503
    assert value(metrics(p), "edgeproxy_redis_errors_total") > 0


def test_access_log_line(proxy, upstream, redis_server, access_log, sid):
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    target = "/r/%s/logged?q=1" % sid
    r = proxy.request("POST", target, host=host, body=b"12345")
    assert r.status == 200

    def line():
        if not access_log.exists():
            return None
        for l in access_log.read_text().splitlines():
            if "/r/%s/logged" % sid in l:
                return l
        return None
    text = wait_until(line, timeout=3, what="an access log line for the request")
    obj = json.loads(text)  # one JSON object a line
    # SPEC 7: time, client address, method, host, path, status, bytes,
    # duration, sandbox id, port, upstream address: README's keys, its order.
    assert list(obj) == access_log_keys(), obj
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["time"]), obj
    assert {k: obj[k] for k in ("client", "method", "host", "path", "status", "sandbox_id", "port",
                                "upstream")} == {
        "client": "127.0.0.1", "method": "POST", "host": host, "path": target, "status": 200,
        "sandbox_id": sid, "port": upstream.port, "upstream": "127.0.0.1:%d" % upstream.port}, obj
    assert obj["bytes"] == len(r.raw_head) + 4 + len(r.body), (obj, r)  # head, CRLF CRLF, body
    assert isinstance(obj["duration_ms"], float) and 0 <= obj["duration_ms"] < 5000, obj


def test_access_log_proxy_made_reply(proxy, upstream, access_log):
    sid = new_sid()
    assert proxy.get(sandbox_host(upstream.port, sid), "/r/%s/unknown" % sid).status == 502

    def line():
        if not access_log.exists():
            return None
        for l in access_log.read_text().splitlines():
            if sid in l:
                return l
        return None
    obj = json.loads(wait_until(line, timeout=3, what="an access log line for a 502"))
    assert list(obj) == access_log_keys(), obj
    assert (obj["status"], obj["sandbox_id"], obj["upstream"]) == (502, sid, None), obj


def test_broken_record_logs_an_error(proxy, upstream, redis_server):
    sid = new_sid()
    redis_server.set_record(sid, "{broken")
    assert proxy.get(sandbox_host(upstream.port, sid), "/").status == 502
    wait_until(lambda: any(sid in l and "error" in l.lower() for l in proxy.stderr().splitlines()),
               timeout=2, what="an error log line naming %s" % sid)
