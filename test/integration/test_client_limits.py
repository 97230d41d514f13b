"""SPEC section 11, hostile clients: limits that hold whatever a client
does. Pipelined requests the proxy answers itself are not parsed ahead of
unsent output; running out of file descriptors pauses accepting instead of
spinning; client.max_connections bounds the open connections of the whole
process, the next ones waiting in the kernel's backlog."""

import os
import resource
import socket
import threading
import time

import pytest

from harness import build_request, new_sid, public_record, rss_kib, sandbox_host, wait_until


class PipelineSender(threading.Thread):
    """Sends `count` copies of `request` on the socket, in batches, counting
    what went out; blocks when the proxy stops reading (what the test
    wants to see)."""

    def __init__(self, sock, request, count, batch=500):
        super().__init__(daemon=True)
        self.sock, self.request, self.count, self.batch = sock, request, count, batch
        self.sent = 0
        self.error = None

    def run(self):
        try:
            while self.sent < self.count:
                n = min(self.batch, self.count - self.sent)
                self.sock.sendall(self.request * n)
                self.sent += n
        except OSError as e:
            self.error = e

    def wait_stalled_or_done(self, quiet=1.0, timeout=60):
        """Returns once everything is sent, or nothing more went out for
        `quiet` seconds."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while self.is_alive() and time.monotonic() < deadline:
            if self.sent != last:
                last, since = self.sent, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.05)


def count_responses(sock, want, timeout=60):
    """Reads until `want` response status lines arrived; returns how many
    did (a proxy reply's JSON body never contains "HTTP/1.1 ")."""
    marker = b"HTTP/1.1 "
    seen, tail = 0, b""
    deadline = time.monotonic() + timeout
    sock.settimeout(5)
    while seen < want and time.monotonic() < deadline:
        data = sock.recv(1 << 20)
        if not data:
            break
        buf = tail + data
        seen += buf.count(marker)
        # Keep what could be the start of a marker cut by this read.
        tail = buf[-(len(marker) - 1):]
        if marker in tail:
            tail = b""
    return seen


def test_pipelined_proxy_replies_wait_for_unsent_output(proxy, upstream):
    # An unknown sandbox: every request gets the proxy's own 502, and the
    # connection stays open (keep-alive). The client pipelines many of them
    # and reads nothing: the proxy must not parse and answer ahead of what
    # it could send.
    host = sandbox_host(upstream.port, new_sid())
    request = build_request("GET", "/p", host=host)
    n = 100000
    with proxy.connect(timeout=60) as warm:
        assert warm.request("GET", "/warm", host=host).status == 502
    pid = proxy.proc.pid
    rss_before = rss_kib(pid)
    replies_before = proxy.metric("edgeproxy_proxy_replies_total")
    with proxy.connect(timeout=60) as c:
        sender = PipelineSender(c.sock, request, n)
        sender.start()
        sender.wait_stalled_or_done()
        time.sleep(0.5)
        grown_kib = rss_kib(pid) - rss_before
        answered = proxy.metric("edgeproxy_proxy_replies_total") - replies_before
        print("sent %d of %d, answered %d, VmRSS +%d KiB" % (sender.sent, n, answered, grown_kib))
        # What the proxy may hold: its output high-water mark (256 KiB),
        # the kernel's socket buffers (the proxy's send buffer grows to
        # 4 MiB), one input buffer. Not the 100000 replies (~30 MB).
        assert grown_kib < 16 * 1024, "VmRSS grew by %d KiB (sent %d, answered %d)" % (
            grown_kib, sender.sent, answered)
        assert answered < n / 2, "answered %d of %d requests nobody read" % (answered, sender.sent)
        # Nothing is lost: once the client reads, every request is answered.
        got = count_responses(c.sock, n)
        sender.join(30)
        assert sender.error is None, sender.error
        assert sender.sent == n
        assert got == n, "%d responses for %d requests" % (got, n)


# --------------------------------------------------------------------------
# Out of file descriptors: accepting pauses, nothing spins.


def cpu_seconds(pid):
    """utime + stime of the whole process, from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def accept_lines(proxy):
    return [l for l in proxy.stderr().splitlines() if "accept" in l and "Too many open files" in l]


def test_fd_exhaustion_pauses_accepting(make_proxy, redis_server, upstream):
    limit = 64  # descriptors for the whole proxy process
    # A max_connections far above the fd limit: the descriptors run out first.
    p = make_proxy({"client": {"max_connections": 100000}}, name="fds", start=False)
    p.preexec_fn = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    p.start()
    sid = new_sid()
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    assert p.get(host, "/r/%s/before" % sid).status == 200
    conns = []
    try:
        # More connections than the proxy has descriptors: the kernel
        # completes them all (listen backlog), the proxy cannot take them.
        for _ in range(limit + 40):
            conns.append(socket.create_connection(("127.0.0.1", p.port), timeout=5))
        wait_until(lambda: accept_lines(p), timeout=10, what="an accept error in the log")
        # A metrics scrape arriving now waits too (the admin listener is
        # the main thread's): it must not spin either.
        conns.append(socket.create_connection(("127.0.0.1", p.admin_port), timeout=5))
        t0 = time.monotonic()
        cpu0 = cpu_seconds(p.proc.pid)
        time.sleep(2)
        cpu = cpu_seconds(p.proc.pid) - cpu0
        lines = accept_lines(p)
        elapsed = time.monotonic() - t0 + 1  # since a little before the first line
        print("CPU %.2f s in 2 s, %d accept lines" % (cpu, len(lines)))
        # A spinning accept loop burns a core per worker; a paused one sleeps.
        assert cpu < 0.5, "%.2f s of CPU in 2 s while out of descriptors" % cpu
        # One line per pause (250 ms) per listening thread (2 workers and the
        # admin's main thread), not one per turn.
        assert len(lines) <= 3 * (elapsed / 0.25 + 2), "%d accept log lines in %.1f s" % (
            len(lines), elapsed)
    finally:
        for s in conns:
            s.close()
    # Descriptors come back as the connections close: served again.
    r = p.get(host, "/r/%s/after" % sid, timeout=10)
    assert r.status == 200, r
    assert p.metric("edgeproxy_accept_pauses_total", reason="fds") >= 1


# --------------------------------------------------------------------------
# client.max_connections: further connections wait in the backlog.


def test_max_connections_waits_until_one_closes(make_proxy, redis_server, upstream):
    n = 3
    p = make_proxy({"client": {"max_connections": n}}, name="maxconn")
    sid = new_sid()
    redis_server.set_record(sid, public_record())
    host = sandbox_host(upstream.port, sid)
    held = []
    try:
        for i in range(n):
            c = p.connect()
            held.append(c)
            assert c.request("GET", "/r/%s/held%d" % (sid, i), host=host).status == 200
        extra = p.connect(timeout=10)  # the kernel completes it: the backlog
        held.append(extra)
        extra.send(build_request("GET", "/r/%s/extra" % sid, host=host))
        extra.settimeout(1.0)
        with pytest.raises(socket.timeout):
            extra.sock.recv(1)  # not accepted: no response, no reset
        assert not upstream.requests_for("/r/%s/extra" % sid)
        assert p.metric("edgeproxy_client_connections") <= n
        assert p.metric("edgeproxy_accept_pauses_total", reason="max_connections") >= 1
        # One closes: the waiting one is taken and served.
        held[0].close()
        extra.settimeout(10)
        r = extra.read_response()
        assert r.status == 200, r
        assert p.metric("edgeproxy_client_connections") <= n
    finally:
        for c in held:
            c.close()
