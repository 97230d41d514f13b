#!/usr/bin/env python3
"""RSS per idle keep-alive connection, TLS beside plain, for one binary.

    /usr/bin/python3 bench/tls_idle.py [BIN] [N]

Starts a Redis, an upstream and BIN (default build/edgeproxy) with one
worker, a plain and a TLS listener (the integration tests' harness), warms
each listener with 200 connections, then opens N (default 2000) connections
with bench/idleconns.py (one request each, then idle) and prints the RSS
growth per connection. Every process it starts is stopped by pid."""

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test" / "integration"))

from harness import Proxy, RedisServer, make_cert, new_sid, public_record, wait_until  # noqa: E402
from upstreams import EchoUpstream  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def idle(port, host, n, tls, work):
    ready = work / ("ready-%d-%d" % (port, n))
    argv = ["/usr/bin/python3", str(ROOT / "bench" / "idleconns.py")] + (["--tls"] if tls else []) + \
        ["127.0.0.1", str(port), host, str(n), str(ready)]
    p = subprocess.Popen(argv)
    wait_until(lambda: ready.exists(), timeout=120, what="idle connections open")
    line = ready.read_text().strip()
    return p, line


def main():
    exe = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "build" / "edgeproxy")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    work = Path(tempfile.mkdtemp(prefix="tls_idle."))
    redis = RedisServer(work / "redis").start()
    up = EchoUpstream()
    cert = make_cert(work, "a", "sandbox.test")
    proxy = Proxy(work / "proxy", redis.url, {"workers": 1, "domains": ["sandbox.test"]}, exe=exe,
                  extra_listeners=[{"tls": {"certificates": [cert]}}])
    try:
        proxy.start()
        sid = new_sid()
        redis.set_record(sid, public_record())
        host = "%d-%s.sandbox.test" % (up.port, sid)
        print("%s, %d connections each" % (exe, n))
        for name, port, tls in (("plain", proxy.port, False), ("tls", proxy.extra_ports[0], True)):
            warm, _ = idle(port, host, 200, tls, work)
            warm.send_signal(signal.SIGUSR1)
            warm.wait(30)
            time.sleep(1)
            before = rss_kib(proxy.proc.pid)
            p, line = idle(port, host, n, tls, work)
            time.sleep(1)
            with_ = rss_kib(proxy.proc.pid)
            p.send_signal(signal.SIGUSR1)
            p.wait(60)
            print("  %-5s %s: RSS %.1f -> %.1f MiB, %.2f KiB per connection" % (
                name, line, before / 1024, with_ / 1024, (with_ - before) / n))
    finally:
        proxy.stop(check=False)
        up.stop()
        redis.stop()


if __name__ == "__main__":
    main()
