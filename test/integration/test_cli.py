"""SPEC section 2: the command line (--version, --check, exit codes)."""

import json
import re
import socket
import subprocess

import pytest

from harness import Proxy, base_config, edgeproxy_bin, free_port, merge


def run(args, timeout=15):
    exe = edgeproxy_bin()
    assert exe.exists(), "edgeproxy binary not found at %s" % exe
    return subprocess.run([str(exe)] + args, capture_output=True, timeout=timeout, text=True)


def write_config(tmp_path, cfg, name="c.json"):
    p = tmp_path / name
    p.write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    return p


@pytest.fixture
def good_config():
    return base_config(free_port(), free_port(), "redis://127.0.0.1:%d/0" % free_port())


def test_version():
    r = run(["--version"])
    assert r.returncode == 0, r
    out = r.stdout + r.stderr
    assert re.search(r"\d+\.\d+", out), out


def test_check_good_config(tmp_path, good_config):
    r = run(["--config", str(write_config(tmp_path, good_config)), "--check"])
    assert r.returncode == 0, r


def test_check_minimal_config(tmp_path):
    # Everything but listeners has a default.
    cfg = {"listeners": [{"address": "127.0.0.1:%d" % free_port()}]}
    r = run(["--config", str(write_config(tmp_path, cfg)), "--check"])
    assert r.returncode == 0, r


@pytest.mark.parametrize("overrides,key", [
    ({"wrokers": 2}, "wrokers"),
    ({"client": {"header_timeout": 5}}, "header_timeout"),
    ({"listeners": [{"address": "127.0.0.1:1", "adress": "x"}]}, "adress"),
])
def test_check_unknown_key(tmp_path, good_config, overrides, key):
    r = run(["--config", str(write_config(tmp_path, merge(good_config, overrides))), "--check"])
    assert r.returncode != 0, r
    assert key in r.stderr, r.stderr


@pytest.mark.parametrize("overrides,key", [
    ({"workers": "two"}, "workers"),
    ({"listeners": [{"address": "nonsense"}]}, "address"),
    ({"redis": {"url": "http://x"}}, "url"),
])
def test_check_bad_value(tmp_path, good_config, overrides, key):
    r = run(["--config", str(write_config(tmp_path, merge(good_config, overrides))), "--check"])
    assert r.returncode != 0, r
    assert key in r.stderr, r.stderr


def test_check_missing_listeners(tmp_path):
    r = run(["--config", str(write_config(tmp_path, {"workers": 1})), "--check"])
    assert r.returncode != 0, r
    assert "listeners" in r.stderr, r.stderr


def test_check_not_json(tmp_path):
    r = run(["--config", str(write_config(tmp_path, "{\"workers\": ")), "--check"])
    assert r.returncode != 0, r
    assert r.stderr.strip(), r


def test_unknown_key_refuses_to_run(tmp_path, good_config):
    # Not only --check: running with a bad config exits non-zero at once.
    r = run(["--config", str(write_config(tmp_path, merge(good_config, {"wrokers": 2})))])
    assert r.returncode != 0, r
    assert "wrokers" in r.stderr, r.stderr


def test_listener_in_use(tmp_path, redis_server):
    # A plain listening socket without SO_REUSEPORT: the proxy's bind fails
    # even though it sets SO_REUSEPORT on its own sockets.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        p = Proxy(tmp_path, redis_server.url, name="busy")
        p.config["listeners"] = [{"address": "127.0.0.1:%d" % port}]
        p.config_path.write_text(json.dumps(p.config))
        r = run(["--config", str(p.config_path)], timeout=15)
    assert r.returncode != 0, r
    assert "127.0.0.1:%d" % port in r.stderr, r.stderr
