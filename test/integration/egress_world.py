"""The namespace world of the egress tests (test_egress.py and the tests
that run the same world with another config: test_egress_tproxy.py,
test_egress_workers.py). World builds three network namespaces and deletes
them when it stops:

    sandbox --sb0/veth-sb0-- host --up0/in0-- internet

The sandbox (198.18.0.2 and 198.18.0.3 on one link, 2001:db8:ff::2) reaches
the fake internet only through the host, where `edgeproxy egress-rules`
rules (nft) send its TCP to the proxy's egress listeners. The proxy and its
Redis run in the host namespace; the internet namespace has the servers of
egress_internet.py on documentation addresses and dnsmasq as the nameserver
the proxy asks. Clients are real: curl, openssl s_client, nc and
egress_client.py, run in the sandbox namespace. Processes are stopped by
pid.

Needs root, ip, nft, dnsmasq, curl, openssl and nc (scripts/deps.sh):
`needs_world` is the skip mark of the modules that use it."""

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
from harness import Client, Resp, edgeproxy_bin, merge, parse_metrics, wait_until, SANITIZER_PATTERNS
from test_egress_rules import in_ns, sh

TOOLS = ("ip", "nft", "dnsmasq", "curl", "openssl", "nc")
needs_world = pytest.mark.skipif(
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
# How long the TLS listener waits for a ClientHello before deciding by
# address. curl connects first and loads its CA file after, so on a loaded
# machine its ClientHello can come more than 400 ms after the
# connection (suspected in one run: a short peek turns an allowed name into
# an address decision, a reset). Only the server-speaks-first test waits.
PEEK_MS = 1500

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
    """The three namespaces, the fake internet, Redis and the proxy, whose
    config is CONFIG deep-merged with `overrides`. `tag` keeps the
    namespace names of two worlds apart."""

    def __init__(self, tmp, overrides=None, tag="eg"):
        self.tmp = tmp
        self.overrides = overrides
        pid = os.getpid()
        self.sbx, self.hst, self.net = ("%s%d-%s" % (tag, pid, n) for n in ("sbx", "hst", "net"))
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
        self.config = merge(CONFIG, self.overrides)
        self.config["access_log"] = {"path": str(self.access_log)}
        self.config_path = self.tmp / "edgeproxy.json"
        self.config_path.write_text(json.dumps(self.config))
        self.apply_rules({})
        if self.config["egress"].get("interception") == "tproxy":
            self.add_tproxy_routes()
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
        in_ns(self.hst, "nft", "-f", "-", input=self.rules_text(policy))

    def rules_text(self, policy):
        pol = self.tmp / "policy.json"
        pol.write_text(json.dumps(policy))
        return sh(str(edgeproxy_bin()), "egress-rules", "--config", str(self.config_path),
                  "--interface", "veth-sb0", "--policy", str(pol)).stdout

    def add_tproxy_routes(self):
        """The policy route the tproxy ruleset prints as comments, run as
        printed, in the host namespace (once: it is not per interface)."""
        cmds = re.findall(r"^#   (ip .*)$", self.rules_text({}), re.M)
        assert len(cmds) == 4, cmds
        for c in cmds:
            in_ns(self.hst, *c.split())

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


def run_world(tmp_path_factory, name, overrides=None, tag="eg"):
    """The body of a module's `world` fixture (`yield from`): a World
    started, listed for conftest's failure report, stopped at the end with
    its problems (exit status, sanitizer findings) asserted."""
    w = World(tmp_path_factory.mktemp(name), overrides, tag)
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


def hold(world, ip, port, src=None):
    """egress_client.py `hold` in the sandbox, running: its first line
    read ({"opened": the banner}); the caller reads the end and kills it."""
    p = subprocess.Popen(
        ["ip", "netns", "exec", world.sbx, "/usr/bin/python3", str(HERE / "egress_client.py")]
        + (["--src", src] if src else []) + ["hold", ip, port], stdout=subprocess.PIPE, text=True)
    world.procs.append(p)
    return p
