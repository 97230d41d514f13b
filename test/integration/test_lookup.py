"""SPEC section 4: the route cache, PUBLISH invalidation, TTL expiry,
Redis load, upstream connection pooling, Redis outages."""

import collections
import time

import pytest

from harness import (RedisServer, check_error, new_sid, private_record, public_record,
                     sandbox_host, wait_until)
from upstreams import EchoUpstream

CHANNEL = "sandbox:invalidate"
WARM = 20  # new connections used to warm every worker's cache (2 workers)


@pytest.fixture(scope="module")
def proxy_long(make_proxy, redis_server):
    """A 60 s cache TTL: changes can only show up early through PUBLISH."""
    p = make_proxy({"cache": {"ttl_ms": 60000, "negative_ttl_ms": 60000}}, name="longttl")
    # Every worker subscribes; wait until at least one subscription is live.
    wait_until(lambda: redis_server.client.numsub(CHANNEL) >= 1, timeout=10,
               what="a subscriber on %s" % CHANNEL)
    return p


def status_of(proxy, host, target="/", headers=()):
    return proxy.get(host, target, headers=headers).status


def warm(proxy, host, expect=200, n=WARM):
    for i in range(n):
        r = proxy.get(host, "/warm%d" % i)
        assert r.status == expect, r


def publish(redis_server, sid):
    n = redis_server.invalidate(sid)
    assert n >= 1, "PUBLISH %s reached %d subscribers" % (CHANNEL, n)


def poll_change(proxy, host, want_status, budget, interval=0.005, headers=(), t0=None):
    """Polls with new connections until a response with want_status; returns
    (seconds from t0 (default: now) to the arrival of the response that
    showed it, [(ms, status)] of every poll)."""
    if t0 is None:
        t0 = time.monotonic()
    seen = []
    while True:
        r = proxy.get(host, "/poll", headers=headers)
        t = time.monotonic() - t0
        seen.append((round(t * 1000, 1), r.status))
        if r.status == want_status:
            return t, seen
        if t > budget:
            raise AssertionError("change not seen within %.0f ms: %r" % (budget * 1000, seen[-20:]))
        time.sleep(interval)


def test_publish_invalidation_within_50ms(proxy_long, upstream, redis_server, sid):
    host = sandbox_host(upstream.port, sid)
    redis_server.set_record(sid, public_record())
    warm(proxy_long, host)
    # Make it private without telling the proxy: the cache still serves it.
    redis_server.set_record(sid, private_record("tok-" + sid))
    for _ in range(10):
        assert status_of(proxy_long, host) == 200, "record not cached (ttl_ms 60000)"
    t_pub = time.monotonic()
    publish(redis_server, sid)
    dt, seen = poll_change(proxy_long, host, 403, budget=2.0, t0=t_pub)
    assert dt <= 0.050, "change seen %.1f ms after PUBLISH: %r" % (dt * 1000, seen)
    # Every worker has dropped it, not just the one that answered.
    time.sleep(max(0, 0.050 - (time.monotonic() - t_pub)))
    for _ in range(WARM):
        assert status_of(proxy_long, host) == 403


def test_publish_invalidation_address_change(proxy_long, redis_server, sid):
    # Switch routing (address) rather than policy: 127.0.0.1 -> 127.0.0.2
    # (both loopback), seen by which address the upstream sees us connect to.
    a = EchoUpstream(host="127.0.0.1", name="a")
    try:
        b = EchoUpstream(host="127.0.0.2", port=a.port, name="b")
    except OSError as e:
        a.stop()
        pytest.skip("cannot bind 127.0.0.2:%d: %s" % (a.port, e))
    try:
        host = sandbox_host(a.port, sid)
        redis_server.set_record(sid, public_record(address="127.0.0.1", executionId="e1"))
        warm(proxy_long, host)
        redis_server.set_record(sid, public_record(address="127.0.0.2", executionId="e2"))
        for _ in range(5):
            assert proxy_long.get(host, "/still-a").status == 200
        assert b.snapshot() == []
        publish(redis_server, sid)
        t0 = time.monotonic()
        while not b.requests_for("/poll"):
            assert proxy_long.get(host, "/poll").status == 200
            assert time.monotonic() - t0 < 2.0, "address change not seen"
            time.sleep(0.005)
        time.sleep(0.05)
        n = len(a.snapshot())
        for _ in range(WARM):
            assert proxy_long.get(host, "/after").status == 200
        assert len(a.snapshot()) == n, "some worker still routes to the old address"
        assert len(b.requests_for("/after")) == WARM
    finally:
        a.stop()
        b.stop()


def test_publish_new_record_replaces_negative_cache(proxy_long, upstream, redis_server, sid):
    host = sandbox_host(upstream.port, sid)
    warm(proxy_long, host, expect=502)
    redis_server.set_record(sid, public_record())
    publish(redis_server, sid)
    dt, seen = poll_change(proxy_long, host, 200, budget=1.0)
    time.sleep(0.05)
    for _ in range(WARM):
        assert status_of(proxy_long, host) == 200


def test_publish_delete_gives_502(proxy_long, upstream, redis_server, sid):
    host = sandbox_host(upstream.port, sid)
    redis_server.set_record(sid, public_record())
    warm(proxy_long, host)
    redis_server.delete_record(sid)
    assert status_of(proxy_long, host) == 200  # still cached
    publish(redis_server, sid)
    # The 50 ms bound is measured in the test above; here any purge within
    # 1 s proves the deletion went through a 60 s TTL.
    poll_change(proxy_long, host, 502, budget=1.0)
    time.sleep(0.05)
    for _ in range(WARM):
        check_error(proxy_long.get(host, "/"), 502, sandbox_id=sid)


def test_publish_for_other_sandbox_keeps_cache(proxy_long, upstream, redis_server, sid):
    host = sandbox_host(upstream.port, sid)
    redis_server.set_record(sid, public_record())
    warm(proxy_long, host)
    redis_server.set_record(sid, private_record("t"))
    publish(redis_server, new_sid())
    time.sleep(0.1)
    for _ in range(10):
        assert status_of(proxy_long, host) == 200


def test_change_without_publish_seen_within_ttl(proxy, upstream, redis_server, sid):
    # Default TTL 1 s (config ttl_ms 1000); allow 1.5 s.
    host = sandbox_host(upstream.port, sid)
    redis_server.set_record(sid, public_record())
    warm(proxy, host)
    t0 = time.monotonic()
    redis_server.set_record(sid, private_record("tok-" + sid))
    poll_change(proxy, host, 403, budget=1.5, interval=0.02)
    time.sleep(max(0, 1.5 - (time.monotonic() - t0)))
    for _ in range(WARM):
        assert status_of(proxy, host) == 403


def test_new_record_without_publish_seen_within_ttl(proxy, upstream, redis_server, sid):
    host = sandbox_host(upstream.port, sid)
    warm(proxy, host, expect=502)
    t0 = time.monotonic()
    redis_server.set_record(sid, public_record())
    poll_change(proxy, host, 200, budget=1.5, interval=0.02)
    time.sleep(max(0, 1.5 - (time.monotonic() - t0)))
    for _ in range(WARM):
        assert status_of(proxy, host) == 200


def test_one_redis_get_per_sandbox_per_ttl(proxy_long, upstream, redis_server, sid):
    host = sandbox_host(upstream.port, sid)
    redis_server.set_record(sid, public_record())
    before = redis_server.client.command_calls("get")
    for i in range(20):
        assert proxy_long.get(host, "/n%d" % i).status == 200  # new connection each
    with proxy_long.connect() as c:
        for i in range(20):
            assert c.request("GET", "/k%d" % i, host=host).status == 200
    gets = redis_server.client.command_calls("get") - before
    # One per worker at most (2 workers; 60 s TTL).
    assert 1 <= gets <= 2, "%d Redis GETs for 40 requests to one sandbox" % gets


def test_unknown_sandbox_negative_cached(proxy_long, upstream, redis_server, sid):
    host = sandbox_host(upstream.port, sid)
    before = redis_server.client.command_calls("get")
    for _ in range(20):
        assert status_of(proxy_long, host) == 502
    gets = redis_server.client.command_calls("get") - before
    assert 1 <= gets <= 2, "%d Redis GETs for 20 requests to an unknown sandbox" % gets


# --------------------------------------------------------------------------
# Upstream connection reuse


def upstream_conns_of_sequential_requests(proxy, upstream, redis_server, sid, n):
    """n requests one after another on one client connection (one worker):
    the upstream connection ids the responses name, and how many distinct
    ones the upstream saw."""
    host = sandbox_host(upstream.port, sid)
    redis_server.set_record(sid, public_record())
    with proxy.connect() as c:
        ids = [c.request("GET", "/r/%s/seq%d" % (sid, i), host=host).header("x-upstream-conn")
               for i in range(n)]
    return ids, len({r.conn_id for r in upstream.requests_for("/r/%s/" % sid)})


def test_upstream_connection_reused_on_keepalive(proxy, upstream, redis_server, sid):
    ids, seen = upstream_conns_of_sequential_requests(proxy, upstream, redis_server, sid, 5)
    assert len(set(ids)) == 1 and seen == 1, ids


def test_pool_max_idle_zero_never_reuses(make_proxy, upstream, redis_server, sid):
    # upstream.pool_max_idle: 0 means no reuse: every request gets its own
    # upstream connection.
    p = make_proxy({"upstream": {"pool_max_idle": 0}}, name="nopool")
    ids, seen = upstream_conns_of_sequential_requests(p, upstream, redis_server, sid, 4)
    assert len(set(ids)) == 4 and seen == 4, ids
    assert p.metric("edgeproxy_upstream_pool_reuses_total") == 0


def test_upstream_connection_reused_across_client_connections(proxy, upstream, redis_server, sid):
    # Pools are per worker, and a new client connection may land on either
    # of the 2 workers: sequential requests use at most one upstream
    # connection per worker.
    host = sandbox_host(upstream.port, sid)
    redis_server.set_record(sid, public_record())
    ids = []
    for i in range(10):
        with proxy.connect() as c:
            ids.append(c.request("GET", "/r/%s/x%d" % (sid, i), host=host).header("x-upstream-conn"))
    counts = collections.Counter(ids)
    assert len(counts) <= 2, ids
    assert counts.most_common(1)[0][1] >= 2, ids
    # what the upstream saw agrees
    assert len({r.conn_id for r in upstream.requests_for("/r/%s/" % sid)}) == len(counts)


def test_pool_is_per_sandbox(proxy, upstream, redis_server):
    # Two sandboxes at the same address:port never share a connection.
    a, b = new_sid(), new_sid()
    redis_server.set_record(a, public_record(executionId="ea"))
    redis_server.set_record(b, public_record(executionId="eb"))
    with proxy.connect() as c:  # one client connection: one worker
        for i in range(3):
            for s in (a, b):
                assert c.request("GET", "/r/%s/%d" % (s, i), host=sandbox_host(upstream.port, s)).status == 200
    ca = {r.conn_id for r in upstream.requests_for("/r/%s/" % a)}
    cb = {r.conn_id for r in upstream.requests_for("/r/%s/" % b)}
    assert ca and cb and not (ca & cb), (ca, cb)
    assert len(ca) == 1 and len(cb) == 1, (ca, cb)


def test_pool_is_per_execution_id(proxy_long, upstream, redis_server, sid):
    host = sandbox_host(upstream.port, sid)
    redis_server.set_record(sid, public_record(executionId="e1"))
    with proxy_long.connect() as c:
        first = c.request("GET", "/r/%s/e1" % sid, host=host).header("x-upstream-conn")
        assert c.request("GET", "/r/%s/e1b" % sid, host=host).header("x-upstream-conn") == first
        # The sandbox was recycled: same id and address, new execution.
        redis_server.set_record(sid, public_record(executionId="e2"))
        publish(redis_server, sid)
        deadline = time.monotonic() + 2
        while True:
            r = c.request("GET", "/r/%s/e2" % sid, host=host)
            if r.header("x-upstream-conn") != first or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert r.header("x-upstream-conn") != first, "old execution's connection reused"


def test_upstream_closed_idle_connection_is_not_an_error(proxy, upstream, redis_server, sid):
    # The app closes its keep-alive connection after a while (Node's 5 s
    # keepAliveTimeout): the next request must not see a 502.
    host = sandbox_host(upstream.port, sid)
    redis_server.set_record(sid, public_record())
    with proxy.connect() as c:
        r = c.request("GET", "/r/%s/c1" % sid, host=host, headers=[("X-Test-Close-After-Ms", "0")])
        assert r.status == 200
        time.sleep(0.3)
        for i in range(3):
            r = c.request("GET", "/r/%s/c2-%d" % (sid, i), host=host)
            assert r.status == 200, r


# A pooled connection the app closes as the request arrives: the request may
# have been acted on, so only an idempotent one (RFC 9110 section 9.2.2) is
# sent again, and only while none of its body went up.
@pytest.mark.parametrize("method,body,replayed", [
    ("GET", None, True), ("PUT", b"", True), ("DELETE", b"", True),
    ("POST", b"", False), ("PATCH", b"", False),
    ("PUT", b"x" * 100, False),  # idempotent, but its body went up already
], ids=["GET", "PUT", "DELETE", "POST", "PATCH", "PUT-with-body"])
def test_stale_pooled_connection_replays_only_idempotent(proxy, upstream, redis_server, sid,
                                                         method, body, replayed):
    host = sandbox_host(upstream.port, sid)
    redis_server.set_record(sid, public_record())
    with proxy.connect() as c:
        r = c.request("GET", "/r/%s/first" % sid, host=host, headers=[("X-Test-Drop-Next", "1")])
        assert r.status == 200, r
        first = int(r.header("x-upstream-conn"))
        r = c.request(method, "/r/%s/second" % sid, host=host, body=body)
        seen = upstream.requests_for("/r/%s/second" % sid)
        assert seen and seen[0].conn_id == first, seen  # it did go to the pooled connection
        if replayed:
            assert r.status == 200, r
            assert [x.method for x in seen] == [method, method], seen
            assert seen[1].conn_id != first, seen
        else:
            check_error(r, 502, sandbox_id=sid, port=upstream.port)
            assert [x.method for x in seen] == [method], seen
        # The client connection is still good.
        assert c.request("GET", "/r/%s/third" % sid, host=host).status == 200


# --------------------------------------------------------------------------
# Redis outage


def test_redis_restart_survived(make_proxy, workdir, upstream):
    r = RedisServer(workdir / "redis2").start()
    try:
        p = make_proxy({"cache": {"ttl_ms": 300, "negative_ttl_ms": 100, "stale_grace_ms": 30000}},
                       redis_url=r.url, name="outage")
        cached, fresh = new_sid(), new_sid()
        r.set_record(cached, public_record())
        warm(p, sandbox_host(upstream.port, cached))
        r.stop()
        time.sleep(0.5)  # past the TTL: records are stale now, Redis is gone
        for _ in range(10):
            assert status_of(p, sandbox_host(upstream.port, cached)) == 200, "stale record not served"
        resp = p.get(sandbox_host(upstream.port, fresh), "/")
        check_error(resp, 503, sandbox_id=fresh)
        assert resp.header("retry-after") is not None
        assert p.admin("/healthz").status == 200
        # Redis comes back on the same port (empty, as after a failover).
        r.start()
        r.set_record(fresh, public_record())
        r.set_record(cached, public_record())
        wait_until(lambda: status_of(p, sandbox_host(upstream.port, fresh)) == 200, timeout=10,
                   interval=0.1, what="lookups after Redis came back")
        # and the subscription is back by itself
        wait_until(lambda: r.client.numsub(CHANNEL) >= 1, timeout=10, interval=0.1,
                   what="re-subscription after Redis came back")
    finally:
        r.stop()


# --------------------------------------------------------------------------
# Redis URL and key prefix


def test_redis_password_and_db(make_proxy, workdir, upstream):
    r = RedisServer(workdir / "redis-auth", password="s3cret").start()
    try:
        assert r.client.cmd("SELECT", 2) == "OK"  # records live in db 2
        sid = new_sid()
        r.set_record(sid, public_record())
        p = make_proxy({"cache": {"ttl_ms": 60000}}, redis_url="redis://:s3cret@127.0.0.1:%d/2" % r.port,
                       name="auth")
        host = sandbox_host(upstream.port, sid)
        assert status_of(p, host) == 200
        wait_until(lambda: r.client.numsub(CHANNEL) >= 1, timeout=5, what="an authenticated subscriber")
        warm(p, host)
        r.set_record(sid, private_record("t"))
        publish(r, sid)
        poll_change(p, host, 403, budget=1.0)
        bad = make_proxy(redis_url="redis://:wrong@127.0.0.1:%d/2" % r.port, name="badauth")
        check_error(bad.get(host, "/"), 503, sandbox_id=sid)
    finally:
        r.stop()


def test_key_prefix(make_proxy, upstream, redis_server):
    p = make_proxy({"redis": {"key_prefix": "edge:sb:"}, "cache": {"ttl_ms": 60000}}, name="prefix")
    a, b = new_sid(), new_sid()
    redis_server.set_record(a, public_record(), prefix="edge:sb:")
    redis_server.set_record(b, public_record())  # under the default prefix only
    assert status_of(p, sandbox_host(upstream.port, a)) == 200
    check_error(p.get(sandbox_host(upstream.port, b), "/"), 502, sandbox_id=b)
    wait_until(lambda: redis_server.client.numsub("edge:sb:invalidate") >= 1, timeout=5,
               what="a subscriber on edge:sb:invalidate")
    host = sandbox_host(upstream.port, a)
    warm(p, host)
    redis_server.set_record(a, private_record("t"), prefix="edge:sb:")
    assert redis_server.invalidate(a, prefix="edge:sb:") >= 1
    poll_change(p, host, 403, budget=1.0)
