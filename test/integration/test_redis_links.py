"""Issue 10 items 4 and 7 (SPEC section 10): the Redis links of a worker.

A Redis address given as a name is resolved without blocking the worker's
loop (libevent's evdns: /etc/hosts, then the nameservers of
/etc/resolv.conf), again on every reconnect, so a failover that moves the
name is followed. A link counts as usable only once Redis accepted its
setup (AUTH, SELECT, the first heartbeat PUBLISH; the subscription for the
subscriber): a refused password, a database out of range or a PUBLISH
Redis refuses turn /readyz 503 with one log line naming the cause, and are
retried with backoff.

The DNS tests run the proxy in a mount namespace of its own with a
resolv.conf naming a tiny DNS server of the test (harness.DnsServer), which
can answer, or stay silent the way a nameserver that is down does. They
skip where that is impossible (not root, no mount namespaces)."""

import re
import threading
import time
import uuid

import pytest

from harness import (DnsServer, DnsUnavailable, RedisServer, Resp, check_error, new_sid,
                     own_resolver_argv, private_record, public_record, redis_debug_args,
                     redis_version, sandbox_host, wait_until)

CHANNEL = "sandbox:invalidate"
PROMPT_S = 2.0   # an uncached sandbox gets its 503 within this, whatever Redis or DNS do
SETTLE_S = 3.0   # how long a steady state is watched


def readyz(p):
    return p.admin("/readyz").status


def timed_get(p, host, target="/"):
    t0 = time.monotonic()
    r = p.get(host, target, timeout=10)
    return r, time.monotonic() - t0


def assert_prompt_503(p, upstream, tag):
    """An uncached sandbox gets 503 + Retry-After within PROMPT_S."""
    sid = new_sid()
    r, dt = timed_get(p, sandbox_host(upstream.port, sid), "/" + tag)
    check_error(r, 503, sandbox_id=sid)
    assert r.header("retry-after") == "1", r
    assert dt < PROMPT_S, "the 503 took %.1f s (the worker was blocked?)" % dt


def log_lines(p, pattern):
    return [line for line in p.stderr().splitlines() if re.search(pattern, line)]


def poll_status(p, host, status, timeout, what):
    wait_until(lambda: p.get(host, "/poll", timeout=10).status == status, timeout=timeout,
               interval=0.1, what=what)


@pytest.fixture
def own_redis(workdir, request):
    r = RedisServer(workdir / ("redis-" + request.node.name[:40])).start()
    yield r
    r.stop()


@pytest.fixture
def dns():
    try:
        d = DnsServer()
    except DnsUnavailable as e:
        pytest.skip(str(e))
    yield d
    d.stop()


def resolver_argv(dns, workdir, tag):
    try:
        return own_resolver_argv(dns.resolv_conf(workdir / ("resolv-%s.conf" % tag)))
    except DnsUnavailable as e:
        pytest.skip(str(e))


def redis_name():
    return "redis-%s.test" % uuid.uuid4().hex[:8]


# --------------------------------------------------------------------------
# Item 4: names


def test_name_from_hosts_file_end_to_end(make_proxy, own_redis, upstream):
    # /etc/hosts says localhost is 127.0.0.1: lookups and invalidations work
    # through both links of both workers.
    p = make_proxy({"cache": {"ttl_ms": 60000}}, name="localhost",
                   redis_url="redis://localhost:%d/0" % own_redis.port)
    sid = new_sid()
    host = sandbox_host(upstream.port, sid)
    own_redis.set_record(sid, public_record())
    wait_until(lambda: readyz(p) == 200, timeout=5, interval=0.05, what="/readyz 200")
    assert p.get(host).status == 200
    wait_until(lambda: own_redis.client.numsub(CHANNEL) == p.config["workers"], timeout=5,
               what="both workers subscribed")
    own_redis.set_record(sid, private_record("t"))
    assert own_redis.invalidate(sid) == p.config["workers"]
    poll_status(p, host, 403, 1.0, "the invalidated record replaced")


def test_stuck_resolution_does_not_block_the_worker(make_proxy, own_redis, upstream, dns, workdir):
    name = redis_name()
    dns.silent = True
    p = make_proxy({"cache": {"ttl_ms": 60000}}, name="dns-stuck",
                   redis_url="redis://%s:%d/0" % (name, own_redis.port),
                   argv_prefix=resolver_argv(dns, workdir, "stuck"))
    wait_until(lambda: any(q[0] == name for q in dns.queries), timeout=5,
               what="the proxy asking our DNS server for %s" % name)
    # While nobody answers, each worker still answers at once.
    t0, n = time.monotonic(), 0
    while time.monotonic() - t0 < SETTLE_S:
        assert_prompt_503(p, upstream, "stuck%d" % n)
        assert p.admin("/healthz").status == 200
        assert readyz(p) == 503
        n += 1
    # The DNS server answers again: the next try resolves and connects.
    sid = new_sid()
    own_redis.set_record(sid, public_record())
    dns.records[name] = ["127.0.0.1"]
    dns.silent = False
    wait_until(lambda: readyz(p) == 200, timeout=20, interval=0.1,
               what="/readyz 200 once %s resolves" % name)
    poll_status(p, sandbox_host(upstream.port, sid), 200, 5, "lookups through %s" % name)
    wait_until(lambda: own_redis.client.numsub(CHANNEL) == p.config["workers"], timeout=10,
               what="both subscribers connected through %s" % name)


def test_name_resolved_again_on_reconnect(make_proxy, workdir, upstream, dns):
    # A failover moves the name from A (127.0.0.1) to B (127.0.0.2, same
    # port); for a while its resolution is stuck.
    a = RedisServer(workdir / "redis-dns-a").start()
    b = RedisServer(workdir / "redis-dns-b", port=a.port, host="127.0.0.2").start()
    try:
        name = redis_name()
        dns.records[name] = ["127.0.0.1"]
        p = make_proxy({"workers": 1, "cache": {"ttl_ms": 200, "negative_ttl_ms": 100,
                                                "stale_grace_ms": 60000}},
                       name="dns-moves", redis_url="redis://%s:%d/0" % (name, a.port),
                       argv_prefix=resolver_argv(dns, workdir, "moves"))
        cached, on_b = new_sid(), new_sid()
        a.set_record(cached, public_record())
        b.set_record(on_b, public_record())
        cached_host, b_host = sandbox_host(upstream.port, cached), sandbox_host(upstream.port, on_b)
        wait_until(lambda: readyz(p) == 200, timeout=5, interval=0.05, what="/readyz 200")
        assert p.get(cached_host).status == 200
        check_error(p.get(b_host), 502, sandbox_id=on_b)

        dns.silent = True
        a.stop()
        t0, n = time.monotonic(), 0
        while time.monotonic() - t0 < SETTLE_S:
            assert_prompt_503(p, upstream, "moving%d" % n)
            r, dt = timed_get(p, cached_host, "/stale%d" % n)
            assert r.status == 200 and dt < PROMPT_S, (r, dt)
            n += 1
        assert readyz(p) == 503

        dns.records[name] = ["127.0.0.2"]
        dns.silent = False
        poll_status(p, b_host, 200, 20, "lookups answered by B once %s points there" % name)
        wait_until(lambda: b.client.numsub(CHANNEL) == 1, timeout=10, what="subscribed on B")
    finally:
        a.stop()
        b.stop()


# --------------------------------------------------------------------------
# Item 7: a link is usable once Redis accepted its setup


def assert_not_ready_for_a_while(p, upstream, sid):
    t0 = time.monotonic()
    while time.monotonic() - t0 < SETTLE_S:
        assert readyz(p) == 503
        check_error(p.get(sandbox_host(upstream.port, sid), "/not-ready"), 503, sandbox_id=sid)
        time.sleep(0.2)


def wait_all_workers_serve(p, host, timeout=6):
    """/readyz is 200 once one worker's link is up; the others follow within
    their reconnect backoff (at most 2 s plus jitter). Until then a request
    the kernel gives to a worker still backing off gets 503: wait until
    several requests in a row (new connections, spread over the workers) are
    answered 200."""
    def all_ok():
        return all(p.get(host).status == 200 for _ in range(4 * p.config["workers"]))
    wait_until(all_ok, timeout=timeout, interval=0.1, what="every worker serving %s" % host)


@pytest.mark.parametrize("password,cause", [
    ("wrong", r"redis: AUTH to 127\.0\.0\.1:%d failed: WRONGPASS"),
    (None, r"redis: SELECT 0 on 127\.0\.0\.1:%d failed: NOAUTH"),
], ids=["wrong-password", "no-password"])
def test_refused_password_is_not_ready(make_proxy, workdir, upstream, password, cause):
    r = RedisServer(workdir / ("redis-auth-%s" % password), password="s3cret").start()
    try:
        sid = new_sid()
        r.set_record(sid, public_record())
        p = make_proxy({"cache": {"ttl_ms": 60000}}, name="auth-%s" % password,
                       redis_url="redis://%s127.0.0.1:%d/0" % (
                           ":%s@" % password if password else "", r.port))
        cause = cause % r.port
        wait_until(lambda: log_lines(p, cause), timeout=5, what="a log line %r" % cause)
        conns_before = int(r.client.info("stats")["total_connections_received"])
        assert_not_ready_for_a_while(p, upstream, sid)
        # Retried with backoff, not in a tight loop, and not a log line per try:
        # one per link and worker so far.
        conns = int(r.client.info("stats")["total_connections_received"]) - conns_before
        assert conns < 40, "%d connections in %.0f s" % (conns, SETTLE_S)
        failures = log_lines(p, r"redis: .* failed: ")
        assert len(failures) <= 2 * p.config["workers"], "\n".join(failures)

        # Redis now takes the proxy's password: ready again within the backoff.
        r.client.cmd("CONFIG", "SET", "requirepass", password or "")
        wait_until(lambda: readyz(p) == 200, timeout=6, interval=0.1, what="/readyz 200 again")
        wait_all_workers_serve(p, sandbox_host(upstream.port, sid))
        wait_until(lambda: r.client.numsub(CHANNEL) == p.config["workers"], timeout=6,
                   what="both subscribers authenticated")
    finally:
        r.stop()


def test_select_refused_is_not_ready(make_proxy, workdir, upstream):
    r = RedisServer(workdir / "redis-select", extra_args=["--databases", "4"]).start()
    try:
        sid = new_sid()
        p = make_proxy(name="select", redis_url="redis://127.0.0.1:%d/9" % r.port)
        cause = r"redis: SELECT 9 on 127\.0\.0\.1:%d failed: ERR DB index is out of range" % r.port
        wait_until(lambda: log_lines(p, cause), timeout=5, what="a log line %r" % cause)
        assert_not_ready_for_a_while(p, upstream, sid)
        assert len(log_lines(p, cause)) <= p.config["workers"]
    finally:
        r.stop()


@pytest.mark.skipif(redis_version() < (6, 0, 0), reason="ACL needs Redis 6")
def test_heartbeat_publish_error_is_a_failure(make_proxy, own_redis, upstream):
    p = make_proxy(name="publish-refused", redis_url=own_redis.url)
    wait_until(lambda: readyz(p) == 200, timeout=5, interval=0.05, what="/readyz 200")
    own_redis.client.cmd("ACL", "SETUSER", "default", "-publish")
    # The next heartbeat (every 500 ms) gets NOPERM: the data link is dead,
    # and it cannot come back while PUBLISH is refused.
    wait_until(lambda: readyz(p) == 503, timeout=5, interval=0.05, what="/readyz 503")
    cause = r"redis: PUBLISH on 127\.0\.0\.1:%d failed: NOPERM" % own_redis.port
    wait_until(lambda: log_lines(p, cause), timeout=5, what="a log line %r" % cause)
    assert_not_ready_for_a_while(p, upstream, new_sid())

    own_redis.client.cmd("ACL", "SETUSER", "default", "+publish")
    wait_until(lambda: readyz(p) == 200, timeout=6, interval=0.1, what="/readyz 200 again")
    sid = new_sid()
    own_redis.set_record(sid, public_record())
    wait_all_workers_serve(p, sandbox_host(upstream.port, sid))


def test_request_during_setup_waits_for_it(make_proxy, workdir, upstream):
    # Redis is busy (DEBUG SLEEP) while the proxy connects: the connections
    # are up but their setup is not answered yet. A request then waits for
    # the setup (within redis.timeout_ms) instead of getting a 503.
    r = RedisServer(workdir / "redis-slow-setup", extra_args=redis_debug_args()).start()
    try:
        sid = new_sid()
        r.set_record(sid, public_record())
        sleeper = Resp(r.port)
        t = threading.Thread(target=sleeper.cmd, args=("DEBUG", "SLEEP", "1.5"))
        t.start()
        time.sleep(0.1)
        p = make_proxy({"redis": {"timeout_ms": 5000}}, name="slow-setup", redis_url=r.url)
        assert readyz(p) == 503  # still asleep: nothing set up yet
        resp, dt = timed_get(p, sandbox_host(upstream.port, sid))
        assert resp.status == 200, resp
        t.join()
        sleeper.close()
    finally:
        r.stop()


def test_exit_while_resolution_is_stuck(make_proxy, own_redis, dns, workdir):
    # SIGTERM while both links of both workers wait for the DNS server: the
    # resolutions are given up, the exit is prompt and leaks nothing (the
    # harness checks the sanitizer's report).
    name = redis_name()
    dns.silent = True
    p = make_proxy(name="dns-exit", redis_url="redis://%s:%d/0" % (name, own_redis.port),
                   argv_prefix=resolver_argv(dns, workdir, "exit"))
    wait_until(lambda: len([q for q in dns.queries if q[0] == name]) >= 4 * p.config["workers"],
               timeout=5, what="every link asking for %s" % name)
    t0 = time.monotonic()
    p.stop(timeout=5)
    assert time.monotonic() - t0 < 2.0


def test_answers_tried_in_turn(make_proxy, own_redis, upstream, dns, workdir):
    # The name has two addresses and Redis listens on the second only: each
    # try goes on to the next answer at once, and the link comes up.
    name = redis_name()
    dns.records[name] = ["127.0.0.3", "127.0.0.1"]
    p = make_proxy(name="dns-two", redis_url="redis://%s:%d/0" % (name, own_redis.port),
                   argv_prefix=resolver_argv(dns, workdir, "two"))
    wait_until(lambda: readyz(p) == 200, timeout=5, interval=0.05, what="/readyz 200")
    sid = new_sid()
    own_redis.set_record(sid, public_record())
    assert p.get(sandbox_host(upstream.port, sid)).status == 200
    refused = r"redis: connect to %s:%d \(127\.0\.0\.3\) failed: " % (re.escape(name), own_redis.port)
    assert log_lines(p, refused), p.stderr()
