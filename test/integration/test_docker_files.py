"""docker/: what can be checked without a Docker engine (this machine has
only the client). A user notices these as `docker compose up --build`
failing or a stack that never serves:

  - the build context (docker/Dockerfile.dockerignore, as BuildKit applies
    it) holds every path the Dockerfile COPYs, and the image copies every
    source folder the Makefile builds;
  - each edgeproxy config a compose file mounts passes `edgeproxy --check`;
  - in compose.sentinel.yaml, HAProxy's backend and health checks point at
    the proxies' listener and admin ports, the proxies ask the Sentinel
    services by the name they monitor, and the seeded records point at the
    demo sandbox's fixed address;
  - HAProxy (when installed) accepts docker/haproxy.cfg.

What only a running engine shows (images pulled, containers started, the
failover) is not covered: bench/failover.sh INSTANCES=2 runs the same shape
on loopback instead."""

import fnmatch
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import REPO_ROOT, edgeproxy_bin

yaml = pytest.importorskip("yaml")

DOCKER = REPO_ROOT / "docker"


# --------------------------------------------------------------------------
# The build context


def ignore_patterns(path):
    """(negated, pattern) of a .dockerignore, in order."""
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line[1:] if neg else line
        out.append((neg, pat.strip("/")))
    return out


def excluded(rel, patterns):
    """Docker's rule: the last pattern that matches the path or one of its
    parent folders decides; a `!` pattern takes the path back in."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    out = False
    for neg, pat in patterns:
        if any(fnmatch.fnmatchcase(p, pat) for p in prefixes):
            out = not neg
    return out


def context_files():
    """The files of the repository (as git knows them) that reach the
    build context."""
    r = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files"], capture_output=True,
                       text=True, check=True)
    patterns = ignore_patterns(DOCKER / "Dockerfile.dockerignore")
    return {f for f in r.stdout.split() if not excluded(f, patterns)}


def dockerfile_copies():
    """Sources of the Dockerfile's COPY lines that come from the context."""
    out = []
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        m = re.match(r"\s*COPY\s+(.*)", line)
        if not m or "--from=" in m.group(1):
            continue
        args = m.group(1).split()
        out += args[:-1]
    return out


def test_build_context_has_every_path_the_dockerfile_copies():
    ctx = context_files()
    missing = []
    for src in dockerfile_copies():
        src = src.rstrip("/")
        if src not in ctx and not any(f.startswith(src + "/") for f in ctx):
            missing.append(src)
    assert not missing, "COPY sources the dockerignore leaves out of the context: %s" % missing


def test_image_copies_every_source_folder_the_makefile_builds():
    mk = (REPO_ROOT / "Makefile").read_text()
    layers = re.search(r"^LAYER_DIRS\s*:=\s*(.*)$", mk, re.M).group(1).split()
    srcs = re.search(r"^SRC_DIRS\s*:=\s*(.*)$", mk, re.M).group(1).split()
    dirs = [d for d in srcs if not d.startswith("$")] + layers
    copied = {c.rstrip("/") for c in dockerfile_copies()}
    assert set(dirs) <= copied, "folders built but not copied: %s" % sorted(set(dirs) - copied)


# --------------------------------------------------------------------------
# Compose files


def compose(name):
    return yaml.safe_load((DOCKER / name).read_text())


def mounted_configs(doc):
    """(service, host path) of every edgeproxy config a compose file mounts."""
    out = []
    for name, svc in doc["services"].items():
        for v in svc.get("volumes", []):
            host, _, rest = v.partition(":")
            if rest.startswith("/etc/edgeproxy/"):
                out.append((name, DOCKER / host))
    return out


@pytest.mark.parametrize("name", ["compose.yaml", "compose.sentinel.yaml"])
def test_compose_mounted_configs_pass_check(name):
    configs = mounted_configs(compose(name))
    assert configs, "no edgeproxy config mounted in %s" % name
    for svc, path in configs:
        r = subprocess.run([str(edgeproxy_bin()), "--config", str(path), "--check"],
                           capture_output=True, text=True, timeout=15)
        assert r.returncode == 0, "%s (%s): %s" % (svc, path.name, r.stderr)


def port_of(address):
    return int(address.rpartition(":")[2])


def test_compose_sentinel_wiring():
    doc = compose("compose.sentinel.yaml")
    services = doc["services"]
    cfg = json.loads((DOCKER / "edgeproxy-sentinel.json").read_text())
    listen = port_of(cfg["listeners"][0]["address"])
    admin = port_of(cfg["admin"]["address"])
    proxies = sorted(n for n in services if n.startswith("edgeproxy"))
    assert len(proxies) >= 2

    # HAProxy: one server per proxy on its listener, checked on its admin port.
    lb = (DOCKER / "haproxy.cfg").read_text()
    servers = re.findall(r"^\s*server\s+(\S+)\s+(\S+):(\d+)", lb, re.M)
    assert sorted(s[1] for s in servers) == proxies
    assert all(int(s[2]) == listen for s in servers)
    assert re.search(r"default-server\s.*\bcheck port %d\b" % admin, lb)
    assert re.search(r"option httpchk GET /readyz", lb)
    assert "lb" in services and "./haproxy.cfg:" in " ".join(services["lb"]["volumes"])
    # The compose health check asks the admin port too.
    for p in proxies:
        hc = " ".join(services[p]["healthcheck"]["test"])
        assert "/dev/tcp/127.0.0.1/%d" % admin in hc and "/readyz" in hc

    # Sentinels: the proxies ask services that exist, on the port they
    # listen on, for the name they monitor.
    script = services["sentinel-1"]["command"][0]
    sport = int(re.search(r"^port (\d+)$", script, re.M).group(1))
    mon = re.search(r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$", script, re.M)
    assert mon, script
    assert cfg["redis"]["master_name"] == mon.group(1)
    assert mon.group(2) in services
    for addr in cfg["redis"]["sentinels"]:
        host, _, port = addr.rpartition(":")
        assert host in services and int(port) == sport, addr
    assert int(mon.group(4)) <= len(cfg["redis"]["sentinels"]) // 2 + 1

    # Records: the address the seed writes is the demo sandbox's fixed one.
    sandbox_ip = services["sandbox"]["networks"]["sandboxes"]["ipv4_address"]
    seed = services["seed"]["command"][0]
    addrs = set(re.findall(r'"address":"([^"]+)"', seed))
    assert addrs == {sandbox_ip}, addrs
    assert "%s-demo1.%s" % (8000, cfg["domains"][0]) in (DOCKER / "compose.sentinel.yaml").read_text()


def runtime_packages():
    """The packages the runtime stage installs (the last apt-get install)."""
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    runs = re.findall(r"apt-get install -y --no-install-recommends ([^&]*)", text)
    return set(runs[-1].split())


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="not Debian")
def test_runtime_image_installs_every_library_the_binary_needs():
    """The build stage is Debian 12 as this machine is: the package of each
    library the binary links (its DT_NEEDED, found as ldd finds it) must be
    in the runtime stage's list (libc6 is in every image)."""
    exe = str(edgeproxy_bin())
    if "/san/" in exe or "/tsan/" in exe:
        exe = str(REPO_ROOT / "build" / "edgeproxy")  # the image ships the normal build
    if not Path(exe).exists():
        pytest.skip("no build/edgeproxy")
    needed = re.findall(r"\(NEEDED\).*\[(.*)\]",
                        subprocess.run(["readelf", "-d", exe], capture_output=True, text=True,
                                       check=True).stdout)
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(
        ["ldd", exe], capture_output=True, text=True, check=True).stdout, re.M))
    have = runtime_packages() | {"libc6"}
    missing = []
    for lib in needed:
        real = str(Path(paths[lib]).resolve())
        r = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True)
        if r.returncode != 0:  # merged /usr: dpkg knows the /lib path
            r = subprocess.run(["dpkg", "-S", real.replace("/usr/lib/", "/lib/", 1)],
                               capture_output=True, text=True)
        pkg = r.stdout.split(":")[0] if r.returncode == 0 else "?"
        if pkg not in have:
            missing.append("%s (%s)" % (lib, pkg))
    assert not missing, "libraries whose package the image does not install: %s" % missing


def test_compose_sentinel_template_runs(tmp_path):
    """The Sentinel config compose.sentinel.yaml writes at start, run by this
    machine's redis-server against a master on loopback (the service name
    replaced by "localhost", which resolve-hostnames resolves): it starts
    and names the master."""
    from harness import RedisServer, Resp, free_port, wait_until
    script = compose("compose.sentinel.yaml")["services"]["sentinel-1"]["command"][0]
    body = re.search(r"<<EOF\n(.*?)^EOF$", script, re.S | re.M).group(1)
    master = RedisServer(tmp_path / "master").start()
    sport = free_port()
    try:
        conf = re.sub(r"^port \d+$", "port %d\nbind 127.0.0.1" % sport, body, flags=re.M)
        conf = re.sub(r"^(sentinel monitor \S+) redis-master 6379 ", r"\1 localhost %d " % master.port,
                      conf, flags=re.M)
        (tmp_path / "sentinel.conf").write_text(conf)
        log = open(tmp_path / "sentinel.log", "wb")
        proc = subprocess.Popen(["redis-server", str(tmp_path / "sentinel.conf"), "--sentinel"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        try:
            def asked():
                assert proc.poll() is None, (tmp_path / "sentinel.log").read_text()
                try:
                    c = Resp(sport, timeout=1.0)
                    try:
                        return c.cmd("SENTINEL", "get-master-addr-by-name", "edge")
                    finally:
                        c.close()
                except OSError:
                    return None
            addr = wait_until(asked, timeout=10, what="the Sentinel answering")
            assert int(addr[1]) == master.port
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        master.stop()


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_haproxy_accepts_the_lb_config():
    r = subprocess.run(["haproxy", "-c", "-f", str(DOCKER / "haproxy.cfg")],
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stdout + r.stderr
