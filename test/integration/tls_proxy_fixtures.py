"""Module-scoped fixtures shared by the test modules that drive one proxy
with a TLS listener (ALPN h2, then http/1.1) and an access log, beside a
WebSocket sandbox (test_h2_websocket.py, test_node_interop.py). Import the
four names into the test module; `make_proxy`, `workdir` come from
conftest.py."""

import pytest

from harness import make_cert
from upstreams import WebSocketUpstream


@pytest.fixture(scope="module")
def certs(workdir):
    d = workdir / "tls"
    d.mkdir(exist_ok=True)
    return make_cert(d, "proxy", "sandbox.test")


@pytest.fixture(scope="module")
def access_log(workdir):
    return workdir / "access.log"


@pytest.fixture(scope="module")
def proxy(make_proxy, certs, access_log):
    # extra_ports[0]: TLS (ALPN h2 then http/1.1)
    return make_proxy({"access_log": {"path": str(access_log)}},
                      extra_listeners=[{"tls": {"certificates": [certs]}}])


@pytest.fixture(scope="module")
def wsup():
    u = WebSocketUpstream()
    yield u
    u.stop()
