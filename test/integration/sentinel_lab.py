"""The failover lab: real redis-server processes on 127.0.0.1, one master,
replicas, and Sentinels (`redis-server x.conf --sentinel`), each stopped by
pid. Sentinels are tuned for the lab (down-after-milliseconds 1000,
failover-timeout 10000); `wait_ready` waits until every Sentinel knows
every replica and every other Sentinel, since a failover asked for
earlier does not happen (they learn replicas from the master's INFO and
each other from hello messages).

Python 3 stdlib only; uses harness.RedisServer and harness.Resp."""

import os
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from harness import RedisError, RedisServer, Resp, free_port, wait_until

MASTER_NAME = "edge"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 10000


class Sentinel:
    """redis-server <conf> --sentinel on 127.0.0.1:<port>, monitoring
    MASTER_NAME at the given master address, quorum 2."""

    def __init__(self, workdir, master_port, port=None, quorum=2, password=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.master_port = master_port
        self.quorum = quorum
        self.password = password
        self.conf = self.workdir / ("sentinel-%d.conf" % self.port)
        self.proc = None

    def write_conf(self):
        lines = [
            "port %d" % self.port,
            "bind 127.0.0.1",
            "protected-mode no",
            "daemonize no",
            "dir %s" % self.workdir,
            "sentinel monitor %s 127.0.0.1 %d %d" % (MASTER_NAME, self.master_port, self.quorum),
            "sentinel down-after-milliseconds %s %d" % (MASTER_NAME, DOWN_AFTER_MS),
            "sentinel failover-timeout %s %d" % (MASTER_NAME, FAILOVER_TIMEOUT_MS),
            "sentinel parallel-syncs %s 2" % MASTER_NAME,
        ]
        if self.password:
            lines.append("requirepass %s" % self.password)
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout=10.0):
        if not self.conf.exists():
            self.write_conf()
        log = open(self.workdir / ("sentinel-%d.log" % self.port), "ab")
        self.proc = subprocess.Popen(["/usr/bin/redis-server", str(self.conf), "--sentinel"],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        wait_until(lambda: self._pings(), timeout=timeout, interval=0.02,
                   what="sentinel %d answering" % self.port)
        return self

    def _pings(self):
        if self.proc.poll() is not None:
            raise RuntimeError("sentinel exited with %s" % self.proc.returncode)
        try:
            return self.cmd("PING") == "PONG"
        except (OSError, RedisError):
            return False

    def cmd(self, *args, timeout=2.0):
        c = Resp(self.port, timeout=timeout)
        try:
            if self.password:
                c.cmd("AUTH", self.password)
            return c.cmd(*args)
        finally:
            c.close()

    def master_addr(self):
        r = self.cmd("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        return None if r is None else (r[0].decode(), int(r[1]))

    def master_info(self):
        r = self.cmd("SENTINEL", "master", MASTER_NAME)
        return {r[i].decode(): r[i + 1].decode() for i in range(0, len(r), 2)}

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class Reconnecting:
    """A Resp that connects again (once per command) when the server closed
    it: Sentinel kills the normal clients of every node it reconfigures."""

    def __init__(self, port):
        self.port = port
        self.c = None

    def cmd(self, *args):
        for attempt in (0, 1):
            try:
                if self.c is None:
                    self.c = Resp(self.port, timeout=5.0)
                return self.c.cmd(*args)
            except (OSError, RedisError) as e:
                if isinstance(e, RedisError) and "connection closed" not in str(e):
                    raise
                if self.c is not None:
                    self.c.close()
                self.c = None
                if attempt:
                    raise

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None

    def __getattr__(self, name):  # set, get, publish, info, numsub...
        method = getattr(Resp, name)
        return lambda *a, **kw: method(self, *a, **kw)


class Node(RedisServer):
    """A data node of the lab: a RedisServer that can start as a replica;
    its client survives Sentinel's CLIENT KILL."""

    @property
    def client(self):
        if self._client is None:
            self._client = Reconnecting(self.port)
        return self._client

    def start_as_replica_of(self, master_port, timeout=10.0):
        self.extra_args = [a for a in self.extra_args]
        saved = list(self.extra_args)
        self.extra_args += ["--replicaof", "127.0.0.1", str(master_port)]
        try:
            return self.start(timeout)
        finally:
            self.extra_args = saved

    def role(self):
        c = Resp(self.port, timeout=1.0)
        try:
            r = c.cmd("ROLE")
            return r[0].decode()
        finally:
            c.close()

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None
        if self._client is not None:
            try:
                self._client.close()
            except OSError:
                pass
            self._client = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def clients(self, name_prefix="edgeproxy"):
        """CLIENT LIST entries whose name starts with name_prefix, as dicts."""
        c = Resp(self.port, timeout=2.0)
        try:
            text = c.cmd("CLIENT", "LIST").decode()
        finally:
            c.close()
        out = []
        for line in text.splitlines():
            d = dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv)
            if d.get("name", "").startswith(name_prefix):
                out.append(d)
        return out


class SwitchLog(list):
    """(monotonic time, message) of each +switch-master seen; stop() ends
    the watching threads."""

    def __init__(self):
        super().__init__()
        self.stopped = threading.Event()

    def stop(self):
        self.stopped.set()


class Lab:
    """One master, `replicas` replicas, `sentinels` Sentinels, all on
    127.0.0.1 with free ports. nodes[0] is the first master."""

    def __init__(self, workdir, replicas=2, sentinels=3):
        self.workdir = Path(workdir)
        self.nodes = [Node(self.workdir / ("node%d" % i)) for i in range(replicas + 1)]
        self.sentinels = []
        self.n_sentinels = sentinels

    def start(self):
        self.nodes[0].start()
        for n in self.nodes[1:]:
            n.start_as_replica_of(self.nodes[0].port)
        for i in range(self.n_sentinels):
            s = Sentinel(self.workdir / ("sentinel%d" % i), self.nodes[0].port)
            self.sentinels.append(s)
            s.start()
        self.wait_ready()
        return self

    def stop(self):
        for s in self.sentinels:
            s.stop()
        for n in self.nodes:
            n.stop()

    @property
    def sentinel_addrs(self):
        return ["127.0.0.1:%d" % s.port for s in self.sentinels]

    def node_at(self, port):
        for n in self.nodes:
            if n.port == port:
                return n
        raise KeyError(port)

    def live_sentinels(self):
        return [s for s in self.sentinels if s.alive()]

    def master(self):
        """The node the live Sentinels agree is master (and that says so)."""
        addrs = set()
        for s in self.live_sentinels():
            try:
                addrs.add(s.master_addr())
            except (OSError, RedisError):
                pass
        if len(addrs) != 1:
            return None
        host, port = addrs.pop()
        n = self.node_at(port)
        try:
            return n if n.alive() and n.role() == "master" else None
        except (OSError, RedisError):
            return None

    def replicas(self):
        m = self.master()
        return [n for n in self.nodes if n is not m and n.alive()]

    def wait_ready(self, timeout=30.0):
        """Every live Sentinel agrees on a live master that says so, knows
        every other live node as a connected replica, and every other live
        Sentinel; each replica's link to the master is up; no failover in
        progress."""
        def ready():
            m = self.master()
            if m is None:
                return False
            others = [n for n in self.nodes if n is not m and n.alive()]
            live = self.live_sentinels()
            for s in live:
                try:
                    info = s.master_info()
                    if "failover_in_progress" in info.get("flags", "") or \
                            info.get("flags") != "master":
                        return False
                    if int(info.get("num-other-sentinels", 0)) < len(live) - 1:
                        return False
                    reps = s.cmd("SENTINEL", "replicas", MASTER_NAME)
                    known = {}
                    for r in reps:
                        d = {r[i].decode(): r[i + 1].decode() for i in range(0, len(r), 2)}
                        known[int(d["port"])] = d
                    for n in others:
                        d = known.get(n.port)
                        if d is None or "s_down" in d.get("flags", "") or \
                                "disconnected" in d.get("flags", ""):
                            return False
                except (OSError, RedisError):
                    return False
            for n in others:
                try:
                    info = n.client.info("replication")
                    if info.get("role") != "slave" or info.get("master_link_status") != "up" or \
                            int(info.get("master_port", 0)) != m.port:
                        return False
                except (OSError, RedisError):
                    n._client = None
                    return False
            return True
        wait_until(ready, timeout=timeout, interval=0.1, what="the Sentinel lab settled")
        return self.master()

    def demote(self, node, master):
        """What Sentinel does to an old master that is back (some 10 s after
        it is seen again), done at once: REPLICAOF the new master."""
        node.client.cmd("REPLICAOF", "127.0.0.1", str(master.port))

    def watch_switches(self):
        """A thread subscribed to +switch-master on every live Sentinel:
        returns a list that gets (monotonic time, message) appended."""
        seen = SwitchLog()
        stop = seen.stopped

        head = b"$7\r\nmessage\r\n$14\r\n+switch-master\r\n$"

        def run(s):
            # Raw bytes, select() before each recv: a timeout inside a socket
            # file object would leave it unusable and lose messages.
            while not stop.is_set():
                sock = None
                try:
                    sock = socket.create_connection(("127.0.0.1", s.port), timeout=2.0)
                    sock.sendall(Resp.encode(["SUBSCRIBE", "+switch-master"]))
                    buf = b""
                    while not stop.is_set():
                        if not select.select([sock], [], [], 0.1)[0]:
                            continue
                        data = sock.recv(65536)
                        if not data:
                            break
                        buf += data
                        while True:
                            k = buf.find(head)
                            if k < 0:
                                break
                            rest = buf[k + len(head):]
                            nl = rest.find(b"\r\n")
                            if nl < 0:
                                break
                            n = int(rest[:nl])
                            if len(rest) < nl + 2 + n:
                                break
                            seen.append((time.monotonic(), rest[nl + 2:nl + 2 + n].decode()))
                            buf = rest[nl + 2 + n:]
                except (OSError, ValueError):
                    time.sleep(0.1)
                finally:
                    if sock is not None:
                        sock.close()

        threads = [threading.Thread(target=run, args=(s,), daemon=True)
                   for s in self.live_sentinels()]
        for t in threads:
            t.start()
        return seen
