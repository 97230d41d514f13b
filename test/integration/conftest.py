"""Fixtures: a real redis-server per module, edgeproxy processes (module
scoped, reused by the tests of a module with unique sandbox ids), and
upstreams. On a failing test the stderr of every running proxy is attached
to the report."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import harness  # noqa: E402
from harness import Proxy, RedisServer, new_sid  # noqa: E402
from upstreams import EchoUpstream  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for p in list(harness.ACTIVE_PROXIES):
            tail = "\n".join(p.stderr().splitlines()[-80:])
            rep.sections.append(("edgeproxy %s stderr (port %d, last 80 lines)" % (p.name, p.port), tail))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, request):
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def redis_server(workdir):
    r = RedisServer(workdir / "redis").start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def make_proxy(workdir, redis_server):
    """make_proxy(overrides=None, redis_url=None, name=...) -> started Proxy.
    All are stopped (SIGTERM, exit 0, clean sanitizer output) at module end."""
    started = []

    def make(overrides=None, redis_url=None, name="proxy", start=True, extra_listeners=(),
             argv_prefix=(), env=None):
        p = Proxy(workdir / "proxy", redis_url or redis_server.url, overrides, name=name,
                  extra_listeners=extra_listeners, argv_prefix=argv_prefix, env=env)
        started.append(p)
        if start:
            p.start()
        return p

    yield make
    errors = []
    for p in started:
        try:
            p.stop()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture(scope="module")
def proxy(make_proxy):
    return make_proxy()


@pytest.fixture(scope="module")
def upstream():
    u = EchoUpstream(name="echo")
    yield u
    u.stop()


@pytest.fixture
def sid():
    return new_sid()
