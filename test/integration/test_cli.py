"""SPEC section 2: the command line (--version, --check, --print-config, exit
codes)."""

import json
import re
import socket
import subprocess

import pytest

import documented
from harness import REPO_ROOT, Proxy, base_config, edgeproxy_bin, free_port, merge


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


def print_config_rows():
    """--print-config as {key: default cell}, in order."""
    r = run(["--print-config"])
    assert r.returncode == 0, r
    rows = {}
    for line in r.stdout.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert len(cells) == 5, line
        m = re.fullmatch(r"`([a-z0-9_.\[\]]+)`", cells[0])
        assert m, line
        rows[m.group(1)] = cells[1]
    return rows


def test_print_config_is_the_readme_table():
    # README's Configuration table is this output, pasted: a key added,
    # removed or changed in common/config.c without README following (or
    # the reverse) fails here. Fix: paste `build/edgeproxy --print-config`.
    r = run(["--print-config"])
    assert r.returncode == 0, r
    assert r.stderr == "", r.stderr
    printed = r.stdout.splitlines()
    readme = documented.config_table()
    extra = [l for l in printed if l not in readme]
    missing = [l for l in readme if l not in printed]
    assert printed == readme, "README table differs from --print-config:\n" \
        "only in --print-config:\n%s\nonly in README:\n%s" % ("\n".join(extra), "\n".join(missing))
    assert run(["-p"]).stdout == r.stdout


def test_example_config_holds_every_default():
    # conf/edgeproxy.json shows every key at its default: each row whose
    # default is a JSON value (`...`) is there with that value, a required
    # key is there when its object is, a key absent by default (tls) is
    # absent, and the file holds no key the table lacks.
    conf = json.loads((REPO_ROOT / "conf" / "edgeproxy.json").read_text())
    rows = print_config_rows()

    def lookup(path):
        """(found, value), an array's members looked up in its first element."""
        node = conf
        for part in path.split("."):
            many = part.endswith("[]")
            name = part[:-2] if many else part
            if not isinstance(node, dict) or name not in node:
                return False, None
            node = node[name]
            if many:
                assert isinstance(node, list) and node, path
                node = node[0]
        return True, node

    for key, default in rows.items():
        parent = key.rsplit(".", 1)[0] if "." in key else None
        found, value = lookup(key)
        if default.startswith("`") and default.endswith("`"):
            assert found, "conf/edgeproxy.json lacks %s (default %s)" % (key, default)
            assert value == json.loads(default[1:-1]), \
                "conf/edgeproxy.json: %s is %r, the default is %s" % (key, value, default)
        elif default == "required":
            if parent is None or lookup(parent.rstrip("[]"))[0]:
                assert found, "conf/edgeproxy.json lacks the required %s" % key
        else:
            assert not found, "conf/edgeproxy.json: %s is there, its default is %s" % (key, default)

    def leaves(node, path):
        for name, value in node.items():
            p = path + name
            if isinstance(value, dict):
                yield from leaves(value, p + ".")
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                yield p
                yield from leaves(value[0], p + "[].")
            else:
                yield p

    unknown = [p for p in leaves(conf, "") if p not in rows]
    assert not unknown, "conf/edgeproxy.json holds keys --print-config lacks: %s" % unknown


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
