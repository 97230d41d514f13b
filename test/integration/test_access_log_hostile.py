"""The access log under hostile requests (issue 10): whatever a client puts
in the request line and Host header, every line in the file is one valid
JSON object (strict UTF-8), with exactly the keys README documents, no
longer than the documented line cap, and the proxy does not overrun its
buffer doing it (the stop asserts no sanitizer report).

Each test runs its own proxy with one worker (so every line goes through
the same 64 KiB buffer) and stops it before reading the file: the stop
flushes the buffer, so nothing depends on the once-a-second flush."""

import json

import pytest

from documented import access_log_keys
from harness import ConnectionClosed, HTTPError, new_sid, sandbox_host

# README, "Access log": the cap on a line (newline included) and the
# budgets of the free-text fields, in bytes as written (escapes count).
LINE_CAP = 4096
HOST_BUDGET = 512
PATH_BUDGET = 3000

TYPES = {"time": str, "client": str, "method": str, "host": str, "path": str,
         "status": int, "bytes": int, "duration_ms": (int, float),
         "sandbox_id": str, "port": int, "upstream": (str, type(None))}


def raw_request(target, host):
    return b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"


def send_all(proxy, requests):
    """Sends each raw request on a connection of its own and reads the
    response. Returns the statuses; stops early (shorter list) if the proxy
    stops answering, so that the stop that follows reports why."""
    statuses = []
    for req in requests:
        try:
            with proxy.connect() as c:
                c.send(req)
                statuses.append(c.read_response().status)
        except (ConnectionClosed, HTTPError, OSError):
            break
    return statuses


def logged_lines(make_proxy, workdir, requests, name):
    """Runs the requests through a fresh proxy, stops it (asserting a clean
    exit and no sanitizer report) and returns (statuses, parsed lines), each
    line checked: strict UTF-8, one JSON object, the documented keys in
    order with their types, within the line cap."""
    log = workdir / ("%s.log" % name)
    p = make_proxy({"workers": 1, "access_log": {"path": str(log)}}, name=name)
    statuses = send_all(p, requests)
    p.stop()
    assert len(statuses) == len(requests), "the proxy stopped answering after %d of %d requests" % (
        len(statuses), len(requests))
    data = log.read_bytes()
    assert data.endswith(b"\n"), data[-200:]
    keys = access_log_keys()
    objs = []
    for i, line in enumerate(data[:-1].split(b"\n")):
        assert len(line) + 1 <= LINE_CAP, "line %d: %d bytes" % (i, len(line) + 1)
        text = line.decode("utf-8")  # strict: raises on ill-formed UTF-8
        obj = json.loads(text)
        assert isinstance(obj, dict), text[:200]
        assert list(obj) == keys, (list(obj), keys)
        for k, t in TYPES.items():
            assert isinstance(obj[k], t), (k, obj[k])
        objs.append(obj)
    assert len(objs) == len(requests), (len(objs), len(requests))
    return statuses, objs


def test_many_quote_paths_stay_in_bounds_and_valid(make_proxy, workdir, upstream):
    """The report: with the access log on, 16 requests within a second whose
    path is 2,100 '"' (each escaped to 2 bytes), to an unknown sandbox,
    overran the 64 KiB buffer (ASan heap-buffer-overflow in
    access_log_request) and every line was cut mid-string."""
    sid = new_sid()
    host = sandbox_host(upstream.port, sid)
    target = "/" + '"' * 2100
    reqs = [raw_request(target.encode(), host.encode()) for _ in range(48)]
    statuses, objs = logged_lines(make_proxy, workdir, reqs, "alog-quotes")
    assert statuses == [502] * len(reqs)
    for o in objs:
        assert (o["method"], o["host"], o["status"], o["sandbox_id"], o["port"], o["upstream"]) == (
            "GET", host, 502, sid, upstream.port, None), o
        # cut, not mangled: a prefix of what was sent, as much as the budget
        # takes ('"' is written as 2 bytes)
        assert target.startswith(o["path"]), o["path"][:50]
        assert o["path"] == "/" + '"' * ((PATH_BUDGET - 1) // 2), len(o["path"])


# Host values llhttp (strict) lets through to the log: obs-text bytes
# 0x80-0xff in any arrangement, quotes, backslashes. (Control bytes other
# than HTAB are rejected before a head exists, and the request target allows
# neither controls nor bytes >= 0x80 in strict mode.) Each (sent, logged):
# an ill-formed byte becomes U+FFFD, one for each byte.
HOSTILE_HOSTS = [
    (b"caf\xc3\xa9.sandbox.test", "caf\u00e9.sandbox.test"),            # valid 2-byte
    (b"x\xf0\x9f\x98\x80y.sandbox.test", "x\U0001F600y.sandbox.test"),  # valid 4-byte
    (b"a\xffb", "a\ufffdb"),                                        # never valid
    (b"a\xc3", "a\ufffd"),                                          # cut sequence at the end
    (b"a\xc3x", "a\ufffdx"),                                        # cut sequence mid-value
    (b"\x80\xbf", "\ufffd\ufffd"),                                  # lone continuations
    (b"\xc0\xaf", "\ufffd\ufffd"),                                  # overlong '/'
    (b"\xed\xa0\x80", "\ufffd\ufffd\ufffd"),                        # UTF-16 surrogate
    (b"\xf4\x90\x80\x80", "\ufffd\ufffd\ufffd\ufffd"),              # above U+10FFFF
    (b'q"uo\\te', 'q"uo\\te'),
]


def test_hostile_hosts_logged_as_valid_json(make_proxy, workdir, upstream):
    reqs = [raw_request(b"/h", h) for h, _ in HOSTILE_HOSTS]
    statuses, objs = logged_lines(make_proxy, workdir, reqs, "alog-hosts")
    assert all(s in (400, 502) for s in statuses), statuses
    assert [o["host"] for o in objs] == [want for _, want in HOSTILE_HOSTS]


@pytest.mark.parametrize("unit,width", [
    (b"\xc3\xa9", 2),   # kept as is: 2 bytes each
    (b"\xe2\x82\xac", 3),  # a budget of 512 is not a multiple of 3
    (b"\xff", 6),       # written as \ufffd
    (b'"', 2),          # written as \"
], ids=["2-byte", "3-byte", "ill-formed", "quote"])
def test_long_host_cut_at_its_budget(make_proxy, workdir, upstream, unit, width, request):
    """A Host of 12,000 bytes: cut to HOST_BUDGET bytes as written, never
    inside a UTF-8 sequence or an escape (the line parses), the rest of the
    line intact."""
    sid = new_sid()
    target = "/r/%s" % sid
    host = unit * (12000 // len(unit))
    reqs = [raw_request(target.encode(), host)] * 20
    statuses, objs = logged_lines(make_proxy, workdir, reqs, "alog-longhost-" + request.node.callspec.id)
    for o in objs:
        n = HOST_BUDGET // width
        assert len(o["host"]) == n, (len(o["host"]), n)
        assert o["path"] == target and o["method"] == "GET", o


def test_hostile_paths_logged_exactly(make_proxy, workdir, upstream):
    """Backslashes and quotes in every arrangement the target allows, and a
    path of backslashes past the budget."""
    sid = new_sid()
    host = sandbox_host(upstream.port, sid).encode()
    paths = ['/a"b\\c', '/\\"', '/"\\"\\u0000', "/%22%5C%00", "/" + "\\" * 5000]
    reqs = [raw_request(p.encode(), host) for p in paths]
    statuses, objs = logged_lines(make_proxy, workdir, reqs, "alog-paths")
    assert statuses == [502] * len(paths)
    assert [o["path"] for o in objs[:-1]] == paths[:-1]
    assert objs[-1]["path"] == "/" + "\\" * ((PATH_BUDGET - 1) // 2)
