"""SPEC section 9: the egress listeners, on a real kernel. This module
builds three network namespaces and deletes them at the end:

    sandbox --sb0/veth-sb0-- host --up0/in0-- internet

The sandbox (198.18.0.2 and 198.18.0.3 on one link, 2001:db8:ff::2) reaches
the fake internet only through the host, where `edgeproxy egress-rules`
rules (nft) redirect its TCP to the proxy's egress listeners. The proxy
and its Redis run in the host namespace; the internet namespace has the
servers of egress_internet.py on documentation addresses and dnsmasq as the
nameserver the proxy asks. Clients are real: curl, openssl s_client, nc
and egress_client.py, run in the sandbox namespace. Processes are stopped
by pid.

Needs root, ip, nft, dnsmasq, curl, openssl and nc (scripts/deps.sh)."""

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import harness
from harness import (Client, Resp, edgeproxy_bin, parse_metrics, value, wait_until,
                     SANITIZER_PATTERNS)
from documented import egress_log_keys
from test_egress_rules import in_ns, sh

TOOLS = ("ip", "nft", "dnsmasq", "curl", "openssl", "nc")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in TOOLS),
    reason="needs root and %s (network namespaces)" % ", ".join(TOOLS))

HERE = Path(__file__).resolve().parent

SBX_IP, SBX_IP2, SBX_IP6 = "198.18.0.2", "198.18.0.3", "2001:db8:ff::2"
ALLOWED, OTHER, DENIED, BANNER = "192.0.2.10", "192.0.2.20", "198.51.100.40", "203.0.113.30"
ALLOWED6, OTHER6 = "2001:db8::10", "2001:db8::20"
NAMESERVER = "198.51.100.53"
HOSTS = [ALLOWED, OTHER, DENIED, BANNER, ALLOWED6, OTHER6]
# What dnsmasq answers (exact names; wild.test and everything below it).
DNS = [
    "--host-record=allowed.test,%s" % ALLOWED,
    "--host-record=other.test,%s" % OTHER,
    "--host-record=denied.test,%s" % DENIED,
    "--host-record=v6.test,%s" % ALLOWED6,
    "--host-record=rebind.test,10.0.0.5",
    "--address=/wild.test/%s" % ALLOWED,
]
CERT_NAMES = ["allowed.test", "other.test", "denied.test", "v6.test", "rebind.test",
              "wild.test", "*.wild.test", "*.b.wild.test", "nowhere.test"]
PREFIX = "sandbox:"
PEEK_MS = 400

CONFIG = {
    # One worker: each has its own policy cache, and the Redis outage test
    # needs the one that cached a policy to be the one that serves it.
    "workers": 1,
    "listeners": [{"address": "127.0.0.1:18080"}],
    "admin": {"address": "127.0.0.1:9090"},
    "redis": {"url": "redis://127.0.0.1:6379/0", "key_prefix": PREFIX},
    "upstream": {"connect_timeout_ms": 2000},
    "egress": {
        "listeners": {"http": "[::]:15080", "tls": "[::]:15443", "tcp": "[::]:15000"},
        "nameservers": [NAMESERVER],
        "peek_timeout_ms": PEEK_MS,
    },
}


# ---- talking to the host namespace from here -------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def ns_connect(ns, host, port, timeout=5.0):
    """A TCP connection made inside namespace `ns` (setns in a thread of its
    own: the socket stays in that namespace, this thread's does not
    change)."""
    out = {}

    def run():
        fd = os.open("/run/netns/" + ns, os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            out["sock"] = socket.create_connection((host, port), timeout=timeout)
        except BaseException as e:  # noqa: B902 (handed to the caller)
            out["err"] = e
        finally:
            os.close(fd)
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "err" in out:
        raise out["err"]
    return out["sock"]


def ns_resp(ns, port):
    r = Resp.__new__(Resp)
    r.sock = ns_connect(ns, "127.0.0.1", port)
    r.f = r.sock.makefile("rb")
    return r


# ---- the world ---------------------------------------------------------------


class World:
    def __init__(self, tmp):
        self.tmp = tmp
        pid = os.getpid()
        self.sbx, self.hst, self.net = ("eg%d-%s" % (pid, n) for n in ("sbx", "hst", "net"))
        self.procs = []
        self.redis = None
        self.proxy = None
        self.access_log = tmp / "access.log"
        self.name, self.port = "egress", 15080  # for conftest's failure report
        self.stderr_path = tmp / "edgeproxy.stderr"

    # namespaces and links
    def build(self):
        for ns in (self.sbx, self.hst, self.net):
            sh("ip", "netns", "add", ns)
            in_ns(ns, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "sb0", "netns", self.sbx, "type", "veth", "peer", "name",
           "veth-sb0", "netns", self.hst)
        sh("ip", "link", "add", "in0", "netns", self.net, "type", "veth", "peer", "name", "up0",
           "netns", self.hst)
        plan = {
            self.sbx: [
                "addr add 198.18.0.2/29 dev sb0", "addr add 198.18.0.3/29 dev sb0",
                "addr add 2001:db8:ff::2/64 dev sb0 nodad", "link set sb0 up",
                "route add default via 198.18.0.1", "-6 route add default via 2001:db8:ff::1"],
            self.hst: [
                "addr add 198.18.0.1/29 dev veth-sb0", "addr add 2001:db8:ff::1/64 dev veth-sb0 nodad",
                "addr add 198.18.1.1/30 dev up0", "addr add 2001:db8:ff:1::1/64 dev up0 nodad",
                "link set veth-sb0 up", "link set up0 up",
                "route add 192.0.2.0/24 via 198.18.1.2", "route add 198.51.100.0/24 via 198.18.1.2",
                "route add 203.0.113.0/24 via 198.18.1.2",
                "-6 route add 2001:db8::/64 via 2001:db8:ff:1::2"],
            self.net: [
                "addr add 198.18.1.2/30 dev in0", "addr add 2001:db8:ff:1::2/64 dev in0 nodad",
                "link set in0 up", "route add default via 198.18.1.1",
                "-6 route add default via 2001:db8:ff:1::1"]
            + ["addr add %s/%d dev lo" % (h, 128 if ":" in h else 32)
               for h in HOSTS + [NAMESERVER]],
        }
        for ns, cmds in plan.items():
            for c in cmds:
                in_ns(ns, "ip", *c.split())
        in_ns(self.hst, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        in_ns(self.hst, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")

    def start_bg(self, ns, argv, ready=None, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        if ready:
            line = p.stdout.readline().strip()
            assert line == ready, "%s: %r" % (argv[0], line)
        return p

    def start(self):
        self.build()
        self.cert = self.tmp / "test.pem"
        key = self.tmp / "test.key"
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
           "-nodes", "-keyout", str(key), "-out", str(self.cert), "-days", "2",
           "-subj", "/CN=egress test", "-addext",
           "subjectAltName=" + ",".join("DNS:" + n for n in CERT_NAMES))
        self.start_bg(self.net, ["/usr/bin/python3", str(HERE / "egress_internet.py"),
                                 str(self.cert), str(key), ",".join(HOSTS)],
                      ready="ready", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        dns_log = open(self.tmp / "dnsmasq.log", "wb")
        self.start_bg(self.net, ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                                 "--no-resolv", "--no-hosts", "--bind-interfaces",
                                 "--listen-address=" + NAMESERVER, "--pid-file=",
                                 "--user=root", "--log-facility=-"] + DNS,
                      stdout=dns_log, stderr=subprocess.STDOUT)
        redis_log = open(self.tmp / "redis.log", "wb")
        self.redis_proc = self.start_bg(
            self.hst, ["redis-server", "--port", "6379", "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=redis_log, stderr=subprocess.STDOUT)
        self.redis = wait_until(lambda: self._try(lambda: ns_resp(self.hst, 6379)), timeout=10,
                                what="redis in the host namespace")
        self.config = json.loads(json.dumps(CONFIG))
        self.config["access_log"] = {"path": str(self.access_log)}
        self.config_path = self.tmp / "edgeproxy.json"
        self.config_path.write_text(json.dumps(self.config))
        self.apply_rules({})
        err = open(self.stderr_path, "wb")
        env = dict(os.environ)
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        env.setdefault("TSAN_OPTIONS", "suppressions=%s second_deadlock_stack=1" %
                       harness.TSAN_SUPPRESSIONS)
        self.proxy = subprocess.Popen(
            ["ip", "netns", "exec", self.hst, str(edgeproxy_bin()), "--config",
             str(self.config_path)], stdout=err, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env)
        wait_until(lambda: self._try(lambda: self.admin("/healthz").status == 200), timeout=15,
                   what="edgeproxy /healthz")
        wait_until(lambda: self.admin("/readyz").status == 200, timeout=10, what="/readyz")

    @staticmethod
    def _try(fn):
        try:
            return fn()
        except OSError:
            return None

    def stop(self):
        problems = []
        if self.proxy and self.proxy.poll() is None:
            self.proxy.send_signal(signal.SIGTERM)
            try:
                rc = self.proxy.wait(15)
                if rc != 0:
                    problems.append("edgeproxy exited %s after SIGTERM" % rc)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
                self.proxy.wait()
                problems.append("edgeproxy did not exit after SIGTERM")
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for ns in (self.sbx, self.hst, self.net):
            sh("ip", "netns", "del", ns, check=False)
        found = [p for p in SANITIZER_PATTERNS if p in self.stderr()]
        if found:
            problems.append("sanitizer findings: %s" % found)
        return problems

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    # the proxy's side
    def admin(self, path):
        s = ns_connect(self.hst, "127.0.0.1", 9090, timeout=5)
        with Client(sock=s) as c:
            return c.request("GET", path, host="127.0.0.1", headers=[("Connection", "close")])

    def metrics(self):
        return parse_metrics(self.admin("/metrics").text)

    def decisions(self, kind, rule):
        return sum(v for (name, labels), v in self.metrics().items()
                   if name == "edgeproxy_egress_decisions_total" and
                   dict(labels)["kind"] == kind and dict(labels)["rule"] == rule)

    def apply_rules(self, policy):
        pol = self.tmp / "policy.json"
        pol.write_text(json.dumps(policy))
        r = sh(str(edgeproxy_bin()), "egress-rules", "--config", str(self.config_path),
               "--interface", "veth-sb0", "--policy", str(pol))
        in_ns(self.hst, "nft", "-f", "-", input=r.stdout)

    def set_policy(self, policy, sources=(SBX_IP, SBX_IP6), rules=True):
        """The control plane's part: the record, the purge, the kernel
        rules."""
        for src in sources:
            if policy is None:
                self.redis.cmd("DEL", PREFIX + "egress:" + src)
            else:
                raw = policy if isinstance(policy, str) else json.dumps(policy)
                self.redis.cmd("SET", PREFIX + "egress:" + src, raw)
            self.redis.cmd("PUBLISH", PREFIX + "invalidate", "egress:" + src)
        if rules and isinstance(policy, dict):
            self.apply_rules(policy)
        time.sleep(0.1)  # both workers' subscribers take the purge

    # the sandbox's side
    def run(self, *argv, timeout=20, check=False, **kw):
        return in_ns(self.sbx, *argv, check=check, timeout=timeout, **kw)

    def client(self, *args, src=None, timeout=20):
        pre = ["--cafile", str(self.cert)] + (["--src", src] if src else [])
        r = self.run("/usr/bin/python3", str(HERE / "egress_client.py"), *pre, *args,
                     timeout=timeout)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1])

    def curl(self, url, *extra):
        """curl in the sandbox: (HTTP status or 0, body, stderr)."""
        r = self.run("curl", "-sS", "--max-time", "8", "--cacert", str(self.cert), "-o", "-",
                     "-w", "\n%{http_code}", *extra, url)
        body, _, code = r.stdout.rpartition("\n")
        return int(code or 0), body, r.stderr

    def log_lines(self, pred, timeout=5.0):
        """The egress lines of the access log matching pred (it is written
        out once a second)."""
        def find():
            try:
                text = self.access_log.read_text()
            except OSError:
                return None
            found = [json.loads(l) for l in text.splitlines() if '"egress"' in l]
            found = [l for l in found if pred(l)]
            return found or None
        return wait_until(find, timeout=timeout, interval=0.1, what="egress log lines")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("egress"))
    try:
        w.start()
    except BaseException:
        print(w.stderr()[-5000:])
        w.stop()
        raise
    # conftest attaches the stderr of the proxies listed here to a failure
    harness.ACTIVE_PROXIES.append(w)
    yield w
    harness.ACTIVE_PROXIES.remove(w)
    problems = w.stop()
    assert not problems, "%s\n%s" % (problems, w.stderr()[-10000:])




def allow_only(*rules):
    return {"sandboxId": "sbxtest", "allowOut": list(rules), "denyOut": ["0.0.0.0/0"]}


# ---- decided by address ------------------------------------------------------


def test_tcp_allowed_and_denied_by_address(world):
    world.set_policy(allow_only(BANNER))
    assert world.client("tcp", BANNER, "2222", "hello\n", "shut") == \
        {"data": "BANNER %s\nhello\n" % BANNER, "end": "eof"}
    # Refused TCP is reset, not closed cleanly.
    got = world.client("tcp", DENIED, "2222", "hello\n")
    assert got.get("end") == "reset" and got["data"] == "", got
    # nc sees it too.
    r = world.run("nc", "-w", "3", DENIED, "2222")
    assert "BANNER" not in r.stdout
    r = world.run("sh", "-c", "echo hi | nc -N -w 3 %s 2222" % BANNER)
    assert r.stdout == "BANNER %s\nhi\n" % BANNER, r


def test_cidr_and_allow_beats_deny(world):
    world.set_policy({"allowOut": ["192.0.2.0/24"], "denyOut": ["0.0.0.0/0"]})
    assert world.client("tcp", ALLOWED, "2222", "", "shut")["data"] == "BANNER %s\n" % ALLOWED
    assert world.client("tcp", OTHER, "2222", "", "shut")["data"] == "BANNER %s\n" % OTHER
    assert world.client("tcp", BANNER, "2222")["end"] == "reset"
    # allow beats deny: the address inside a denied network.
    world.set_policy({"allowOut": [OTHER], "denyOut": ["192.0.2.0/24"]})
    assert world.client("tcp", OTHER, "2222", "", "shut")["data"] == "BANNER %s\n" % OTHER
    assert world.client("tcp", ALLOWED, "2222")["end"] == "reset"
    # Nothing denied: everything else goes.
    assert world.client("tcp", BANNER, "2222", "", "shut")["data"] == "BANNER %s\n" % BANNER


def test_all_traffic_covers_ipv6(world):
    world.set_policy({"denyOut": ["0.0.0.0/0"]})
    assert world.client("tcp", ALLOWED6, "2222")["end"] == "reset"
    world.set_policy({"allowInternetAccess": False})
    assert world.client("tcp", ALLOWED6, "2222")["end"] == "reset"
    world.set_policy({"allowOut": [ALLOWED6], "denyOut": ["0.0.0.0/0"]})
    assert world.client("tcp", ALLOWED6, "2222", "", "shut")["data"] == "BANNER %s\n" % ALLOWED6
    assert world.client("tcp", OTHER6, "2222")["end"] == "reset"


# ---- TLS ---------------------------------------------------------------------


def test_tls_by_sni_domain_and_wildcard(world):
    world.set_policy(allow_only("allowed.test", "*.wild.test"))
    code, body, err = world.curl("https://allowed.test/", "--resolve",
                                 "allowed.test:443:%s" % ALLOWED)
    assert code == 200 and json.loads(body)["server"] == ALLOWED, (code, body, err)
    # Any depth below the wildcard, not the apex.
    for name in ("a.wild.test", "x.b.wild.test"):
        code, body, err = world.curl("https://%s/" % name, "--resolve", "%s:443:%s" % (name, ALLOWED))
        assert code == 200, (name, err)
    code, body, err = world.curl("https://wild.test/", "--resolve", "wild.test:443:%s" % ALLOWED)
    assert code == 0 and "access denied" in err, err
    # A name not allowed: the client sees the access_denied alert.
    code, body, err = world.curl("https://other.test/", "--resolve", "other.test:443:%s" % OTHER)
    assert code == 0 and "access denied" in err, err
    r = world.run("openssl", "s_client", "-connect", "%s:443" % OTHER, "-servername", "other.test",
                  "-CAfile", str(world.cert), input="", timeout=10)
    assert "alert access denied" in r.stdout + r.stderr, r
    assert world.client("tls", OTHER, "443", "other.test") == {"error": "TLSV1_ALERT_ACCESS_DENIED"}


def test_sni_spoofing_lands_on_the_name_or_is_refused(world):
    world.set_policy(allow_only("allowed.test", "rebind.test"))
    # The sandbox claims allowed.test but dials other.test's address: the
    # proxy asks its own nameserver and connects to allowed.test's.
    code, body, err = world.curl("https://allowed.test/", "--resolve",
                                 "allowed.test:443:%s" % OTHER)
    assert code == 200 and json.loads(body)["server"] == ALLOWED, (code, body, err)
    # A name whose answer is a private address (DNS rebinding): refused.
    code, body, err = world.curl("https://rebind.test/", "--resolve",
                                 "rebind.test:443:%s" % OTHER)
    assert code == 0 and "access denied" in err, err
    lines = world.log_lines(lambda l: l["egress"] == "tls" and l["name"] == "rebind.test")
    assert lines[-1]["decision"] == "deny"
    assert lines[-1]["rule"] == "always_deny 10.0.0.0/8 (rebind.test resolves there)"
    spoofed = world.log_lines(lambda l: l["egress"] == "tls" and l["name"] == "allowed.test" and
                              l["destination"] == "%s:443" % OTHER)
    assert spoofed[-1]["connected"] == "%s:443" % ALLOWED
    assert spoofed[-1]["rule"] == "allowOut[0] allowed.test"


@pytest.mark.parametrize("mode", ["segments", "records"])
def test_clienthello_split(world, mode):
    world.set_policy(allow_only("allowed.test"))
    assert world.client("tls", ALLOWED, "443", "allowed.test", mode) == {"server": ALLOWED}
    assert world.client("tls", OTHER, "443", "other.test", mode) == \
        {"error": "TLSV1_ALERT_ACCESS_DENIED"}


def test_ech_counted_and_decided_by_outer_sni(world):
    world.set_policy(allow_only("allowed.test"))
    before = world.metrics()
    got = world.client("tls", OTHER, "443", "other.test", "ech")
    assert got == {"error": "TLSV1_ALERT_ACCESS_DENIED"}
    after = world.metrics()
    assert value(after, "edgeproxy_egress_ech_total") == value(before, "edgeproxy_egress_ech_total") + 1
    line = world.log_lines(lambda l: l["egress"] == "tls" and l.get("ech"))[-1]
    assert line["name"] == "other.test" and line["decision"] == "deny"


def test_server_speaks_first_on_443_decided_by_address(world):
    world.set_policy(allow_only(BANNER))
    # Nothing sent: after the peek timeout the address decides, and the
    # server's first words come through.
    got = world.client("greet", BANNER, "443")
    assert got["data"] == "BANNER %s\n" % BANNER, got
    assert got["after"] >= PEEK_MS / 1000.0 - 0.05, got
    world.set_policy(allow_only("allowed.test"))
    got = world.client("greet", BANNER, "443")
    assert got["end"] == "reset" and got["data"] == "", got


# ---- port 80 -------------------------------------------------------------------


def test_http_each_request_decided_by_its_host(world):
    world.set_policy(allow_only("allowed.test", "*.wild.test"))
    got = world.client("http", ALLOWED, "80", "allowed.test", "other.test", "a.wild.test",
                       "wild.test", "allowed.test:80")
    assert [r["status"] for r in got] == [200, 403, 200, 403, 200], got
    assert got[1]["json"]["code"] == 403 and got[1]["json"]["host"] == "other.test", got[1]
    assert "egress refused" in got[1]["json"]["message"]
    assert got[1]["headers"]["content-type"] == "application/json; charset=utf-8"
    assert all(r["json"]["server"] == ALLOWED for r in got if r["status"] == 200)
    # The upstream sees the request as the sandbox wrote it: no
    # X-Forwarded-* of the proxy's, the client's own kept, and nothing
    # stripped (the traffic token is the ingress's business).
    headers = dict((k.lower(), v) for k, v in got[0]["json"]["headers"])
    assert headers["x-forwarded-for"] == "1.2.3.4"
    assert "x-forwarded-host" not in headers and "x-forwarded-proto" not in headers
    assert headers["e2b-traffic-access-token"] == "tok"
    assert headers["host"] == "allowed.test"
    # curl, with the Host spoofed: goes to allowed.test's own address.
    code, body, err = world.curl("http://allowed.test/x", "--resolve",
                                 "allowed.test:80:%s" % OTHER)
    assert code == 200 and json.loads(body)["server"] == ALLOWED, (code, body, err)
    code, body, err = world.curl("http://denied.test/", "--resolve", "denied.test:80:%s" % DENIED)
    assert code == 403 and json.loads(body)["host"] == "denied.test", body
    lines = world.log_lines(lambda l: l["egress"] == "http" and l["host"] == "denied.test")
    assert lines[-1]["status"] == 403 and lines[-1]["decision"] == "deny"
    assert lines[-1]["rule"] == "denyOut[0] 0.0.0.0/0"


def test_http_refuses_proxy_forms_and_http2(world):
    world.set_policy({})
    absolute = "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
    got = world.client("raw", ALLOWED, "80", absolute.encode().hex())
    assert got["data"].startswith("HTTP/1.1 400"), got
    assert "Connection: close" in got["data"] and got["end"] == "eof", got
    connect = "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n"
    got = world.client("raw", ALLOWED, "80", connect.encode().hex())
    assert got["data"].startswith("HTTP/1.1 405"), got
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    got = world.client("raw", ALLOWED, "80", preface.hex())
    assert got["data"].startswith("HTTP/1.1 400"), got
    code, body, err = world.curl("http://allowed.test/", "--http2-prior-knowledge", "--resolve",
                                 "allowed.test:80:%s" % ALLOWED)
    assert code != 200, (code, body)


# ---- the connection itself ------------------------------------------------------


def test_half_close_and_reset_mirrored(world):
    world.set_policy({})
    # The client shuts its sending side; the answer still comes back.
    payload = "x" * 100000
    assert world.client("tcp", ALLOWED, "7777", payload, "shut") == \
        {"data": "got 100000\n", "end": "eof"}
    # The destination resets: so does the proxy, toward the sandbox.
    got = world.client("tcp", ALLOWED, "9999", "bye")
    assert got == {"data": "", "end": "reset"}, got
    # Nothing listens there: refused is mirrored as a reset.
    got = world.client("tcp", ALLOWED, "2345")
    assert got["end"] == "reset", got


def test_unknown_source_refused(world):
    world.set_policy(None, sources=(SBX_IP2,))
    world.set_policy({})
    assert world.client("tcp", ALLOWED, "2222", src=SBX_IP2)["end"] == "reset"
    assert world.client("tls", ALLOWED, "443", "allowed.test", src=SBX_IP2) == \
        {"error": "TLSV1_ALERT_ACCESS_DENIED"}
    got = world.client("http", ALLOWED, "80", "allowed.test", src=SBX_IP2)
    assert got[0]["status"] == 403, got
    line = world.log_lines(lambda l: l["source"] == SBX_IP2 and l["egress"] == "tcp")[-1]
    assert line["rule"] == "no policy" and line["sandbox_id"] is None
    # A broken record is refused the same way.
    world.set_policy('{"denyOut": ["example.com"]}', sources=(SBX_IP2,))
    assert world.client("tcp", ALLOWED, "2222", src=SBX_IP2)["end"] == "reset"
    assert world.decisions("tcp", "broken_policy") >= 1


def test_policy_change_closes_open_connections(world):
    world.set_policy({})
    holder = subprocess.Popen(
        ["ip", "netns", "exec", world.sbx, "/usr/bin/python3", str(HERE / "egress_client.py"),
         "hold", BANNER, "2222"], stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(holder.stdout.readline()) == {"opened": "BANNER %s" % BANNER}
        time.sleep(0.3)
        assert holder.poll() is None
        before = value(world.metrics(), "edgeproxy_egress_revoked_total")
        world.set_policy({"denyOut": [BANNER]})
        got = json.loads(holder.stdout.readline())
        assert got["end"] == "reset" and got["after"] < 3, got
    finally:
        holder.kill()
        holder.wait()
    assert value(world.metrics(), "edgeproxy_egress_revoked_total") == before + 1
    line = world.log_lines(lambda l: l["destination"] == "%s:2222" % BANNER and l["revoked"])[-1]
    assert line["revoked"] == "denyOut[0] %s" % BANNER and line["decision"] == "allow"


def test_ipv6_path(world):
    world.set_policy(allow_only("v6.test"))
    code, body, err = world.curl("https://v6.test/", "--resolve", "v6.test:443:[%s]" % ALLOWED6)
    assert code == 200 and json.loads(body)["server"] == ALLOWED6, (code, body, err)
    code, body, err = world.curl("http://v6.test/", "--resolve", "v6.test:80:[%s]" % OTHER6)
    assert code == 200 and json.loads(body)["server"] == ALLOWED6, (code, body, err)
    code, body, err = world.curl("https://other.test/", "--resolve", "other.test:443:[%s]" % OTHER6)
    assert code == 0 and "access denied" in err, err
    line = world.log_lines(lambda l: l["source"] == SBX_IP6 and l["egress"] == "http")[-1]
    assert line["destination"] == "[%s]:80" % OTHER6 and line["connected"] == "[%s]:80" % ALLOWED6


# ---- what it says about itself ----------------------------------------------------


def test_decisions_in_metrics_and_log(world):
    world.set_policy(allow_only(ALLOWED))
    before = world.decisions("tcp", "allow_address"), world.decisions("tcp", "deny_address")
    world.client("tcp", ALLOWED, "7777", "abc", "shut")
    world.client("tcp", OTHER, "7777", "abc", "shut")
    after = world.decisions("tcp", "allow_address"), world.decisions("tcp", "deny_address")
    assert after == (before[0] + 1, before[1] + 1)
    m = world.metrics()
    assert ("edgeproxy_egress_decisions_total",
            (("kind", "tls"), ("result", "allow"), ("rule", "allow_name"))) in m
    line = world.log_lines(lambda l: l["destination"] == "%s:7777" % ALLOWED and
                           l["bytes_out"] == 3)[-1]
    assert line["bytes_in"] == len("got 3\n") and line["decision"] == "allow"
    assert line["sandbox_id"] == "sbxtest" and line["source"] == SBX_IP
    assert line["rule"] == "allowOut[0] %s" % ALLOWED and line["connected"] == "%s:7777" % ALLOWED
    # README's keys, in its order (a TCP line has no "ech").
    tls_keys, http_keys = egress_log_keys()
    assert list(line) == [k for k in tls_keys if k != "ech"]
    world.client("tls", ALLOWED, "443", "allowed.test")
    world.client("http", ALLOWED, "80", "allowed.test")
    assert list(world.log_lines(lambda l: l["egress"] == "tls")[-1]) == tls_keys
    assert list(world.log_lines(lambda l: l["egress"] == "http")[-1]) == http_keys


def test_max_connections(world):
    world.set_policy({"maxConnections": 1})
    holder = subprocess.Popen(
        ["ip", "netns", "exec", world.sbx, "/usr/bin/python3", str(HERE / "egress_client.py"),
         "hold", BANNER, "2222"], stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(holder.stdout.readline())["opened"]
        assert world.client("tcp", BANNER, "2222")["end"] == "reset"
        got = world.client("http", ALLOWED, "80", "allowed.test")
        assert got[0]["status"] == 429 and got[0]["json"]["connectionLimit"] == 1, got
    finally:
        holder.kill()
        holder.wait()
    wait_until(lambda: world.client("tcp", BANNER, "2222", "", "shut")["end"] == "eof",
               timeout=5, what="the slot given back")


def test_redis_down_cached_policy_serves_uncached_refused(world):
    world.set_policy(allow_only(BANNER))
    world.set_policy(allow_only(BANNER), sources=(SBX_IP2,))
    assert world.client("tcp", BANNER, "2222", "", "shut")["end"] == "eof"  # cached now
    os.kill(world.redis_proc.pid, signal.SIGSTOP)
    try:
        time.sleep(1.2)  # past cache.ttl_ms: the record is stale, Redis silent
        # The stale record serves (once the GET has timed out); an address
        # never looked up has nothing to serve: refused, never a hang.
        got = world.client("tcp", BANNER, "2222", "", "shut")
        assert got == {"data": "BANNER %s\n" % BANNER, "end": "eof"}, got
        t0 = time.monotonic()
        assert world.client("tcp", BANNER, "2222", src=SBX_IP2)["end"] == "reset"
        assert time.monotonic() - t0 < 3
        got = world.client("http", ALLOWED, "80", "allowed.test", src=SBX_IP2)
        assert got[0]["status"] == 503 and got[0]["headers"]["retry-after"] == "1", got
    finally:
        os.kill(world.redis_proc.pid, signal.SIGCONT)
    wait_until(lambda: world.client("tcp", BANNER, "2222", "", "shut", src=SBX_IP2)["end"] == "eof",
               timeout=10, what="lookups after Redis came back")


def test_proxy_and_host_unreachable_from_the_sandbox(world):
    world.set_policy({})
    # The listeners and the admin port on the host's own addresses: refused
    # by the kernel rules before NAT, never redirected to the proxy.
    for port in ("15080", "15443", "15000", "9090", "6379"):
        got = world.client("tcp", "198.18.0.1", port)
        assert got.get("error") == "ECONNREFUSED", (port, got)


def test_dns_to_the_nameserver_by_the_generated_rules(world):
    if not shutil.which("dig"):
        pytest.skip("dig not installed")
    world.set_policy(allow_only("allowed.test"))
    r = world.run("dig", "+short", "+time=2", "+tries=1", "@" + NAMESERVER, "allowed.test")
    assert r.stdout.strip() == ALLOWED, r
    # No name in the policy: the nameserver is an address like any other.
    world.set_policy(allow_only(BANNER))
    r = world.run("dig", "+short", "+time=2", "+tries=1", "@" + NAMESERVER, "allowed.test")
    assert r.stdout.strip() != ALLOWED, r
