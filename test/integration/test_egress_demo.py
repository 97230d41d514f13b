"""`sudo make egress-demo` (scripts/egress-demo.sh, README "Deploying it"),
run as a user would but without a terminal: what it prints is what the
README tells a reader happens, so the outcomes are asserted here from that
output (and the README's excerpt of a real run must be lines this run
prints), and it must leave nothing behind: no namespace, nft table,
process or temporary file. Each run uses a names prefix of its own
(EGRESS_DEMO_NS), so a user's demo or a second test run can go on beside.

Needs root, ip, nft, dnsmasq, redis-server, curl and openssl (make deps)."""

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from documented import egress_demo_excerpt
from harness import REPO_ROOT, SANITIZER_PATTERNS, edgeproxy_bin

TOOLS = ("ip", "nft", "dnsmasq", "redis-server", "redis-cli", "curl", "openssl")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in TOOLS),
    reason="needs root and %s (network namespaces)" % ", ".join(TOOLS))

SCRIPT = REPO_ROOT / "scripts" / "egress-demo.sh"
ALLOWED, OTHER, CDN = "192.0.2.10", "192.0.2.20", "203.0.113.10"


def demo_env(tmp, prefix):
    (tmp / "tmp").mkdir(exist_ok=True)
    return dict(os.environ, EDGEPROXY_BIN=str(edgeproxy_bin()), EGRESS_DEMO_NS=prefix,
                EGRESS_DEMO_LOGS=str(tmp / "logs"), TMPDIR=str(tmp / "tmp"))


def default_sigint():
    # The demo is stopped with Ctrl-C: let it see SIGINT even if this
    # process was started with it ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_demo(tmp, prefix, *args, timeout=120):
    return subprocess.run(["bash", str(SCRIPT), *args], env=demo_env(tmp, prefix),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=default_sigint)


def start_waiting(tmp, prefix):
    """The demo with --wait, read up to its "Press Enter" line: (process,
    what it printed so far)."""
    p = subprocess.Popen(["bash", str(SCRIPT), "--wait"], env=demo_env(tmp, prefix),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True,
                         preexec_fn=default_sigint)
    out = []
    for line in p.stdout:
        out.append(line)
        if line.startswith("Press Enter"):
            break
    if not (out and out[-1].startswith("Press Enter")):
        stop_waiting(p)
        raise AssertionError("".join(out))
    return p, "".join(out)


def stop_waiting(p):
    """Enter, as a user would: the script cleans up and exits."""
    try:
        p.stdin.write("\n")
        p.stdin.close()
    except OSError:
        pass
    p.stdout.read()
    p.stdout.close()
    p.wait(60)


def clean(tmp, prefix):
    """What a failed test may have left (the script's --clean)."""
    run_demo(tmp, prefix, "--clean", timeout=60)


MARKERS = ("# ", "== ", "access log, ", "egress-demo: ")


def steps(out):
    """[(where, command, [output lines])] for each `host$` / `sandbox$` line:
    the lines up to the next command or comment, trailing blank ones off."""
    found, cur = [], None
    for line in out.splitlines():
        m = re.match(r"^(host|sandbox)\$ (.*)$", line)
        if m:
            cur = (m.group(1), m.group(2), [])
            found.append(cur)
        elif line.startswith(MARKERS):
            cur = None
        elif cur:
            cur[2].append(line)
    for _, _, lines in found:
        while lines and not lines[-1].strip():
            lines.pop()
    return found


def log_sections(out):
    """The access-log excerpts the demo prints: a list of JSON-line lists."""
    sections, cur = [], None
    for line in out.splitlines():
        if line.startswith("access log, "):
            cur = []
            sections.append(cur)
        elif cur is not None and line.startswith("{"):
            cur.append(json.loads(line))
        else:
            cur = None
    return sections


def outcome(found, where, command_end, nth=0):
    """The output of the nth step run at `where` whose command ends with
    command_end, as one string."""
    got = [o for w, c, o in found if w == where and c.endswith(command_end)]
    assert len(got) > nth, "no step %s$ ...%s in %s" % (where, command_end, found)
    return "\n".join(got[nth])


def body_json(text):
    return json.loads(text.splitlines()[0])


def started_pids(out):
    """{pid: name} of what the script says it started."""
    line = next(l for l in out.splitlines() if l.startswith("egress-demo: started "))
    return {int(pid): name for name, pid in re.findall(r"(\S+) \(pid (\d+)\)", line)}


def leftovers(prefix, tmp, pids):
    """What a run (of this prefix, with TMPDIR under tmp, that started pids)
    left behind."""
    left = []
    names = [l.split()[0] for l in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                  text=True).stdout.splitlines()]
    left += ["namespace " + n for n in names if n.startswith(prefix + "-")]
    if Path("/etc/netns/%s-sb" % prefix).exists():
        left.append("/etc/netns/%s-sb" % prefix)
    left += ["temporary directory %s" % d for d in (tmp / "tmp").glob(prefix + ".*")]
    # The script adds no table to this (the machine's) namespace, ever.
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    if "edgeproxy_veth-sb0" in tables:
        left.append("an nft table edgeproxy_veth-sb0 in the machine's namespace")
    for pid, name in pids.items():
        try:
            cmd = Path("/proc/%d/cmdline" % pid).read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if name.split(".")[0] in cmd:
            left.append("process %d %s" % (pid, cmd))
    # Anything else still running from its temporary directory.
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(tmp / "tmp" / prefix) in cmd:
            left.append("process %s %s" % (d.name, cmd))
    return left


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("egress_demo")
    prefix = "epd%d" % os.getpid()
    try:
        r = run_demo(tmp, prefix, "--no-wait")
        out = r.stdout
        # What a reader sees carries the README's names, not this run's prefix.
        out = out.replace(prefix + "-", "epdemo-")
        yield {"rc": r.returncode, "out": out, "err": r.stderr, "tmp": tmp, "prefix": prefix,
               "steps": steps(out), "logs": log_sections(out)}
    finally:
        clean(tmp, prefix)


def test_demo_runs_clean(demo):
    assert demo["rc"] == 0, demo["out"] + demo["err"]
    assert "egress-demo: every outcome as expected" in demo["out"]
    assert "!!" not in demo["out"]


def test_demo_allowed_traffic(demo):
    s = demo["steps"]
    got = outcome(s, "sandbox", "http://allowed.demo.test/")
    assert got.endswith("HTTP 200"), got
    assert body_json(got)["server"] == ALLOWED and body_json(got)["tls"] is False
    got = outcome(s, "sandbox", "--cacert demo-ca.pem https://allowed.demo.test/")
    assert got.endswith("HTTP 200") and body_json(got)["tls"] is True, got
    assert body_json(got)["server"] == ALLOWED
    # the wildcard
    got = outcome(s, "sandbox", "https://img.cdn.demo.test/")
    assert got.endswith("HTTP 200") and body_json(got)["server"] == CDN, got


def test_demo_refused_traffic(demo):
    s = demo["steps"]
    got = outcome(s, "sandbox", "http://other.demo.test/")
    assert got.endswith("HTTP 403"), got
    assert body_json(got) == {"code": 403, "message": "egress refused: denyOut[0] 0.0.0.0/0",
                              "host": "other.demo.test"}
    got = outcome(s, "sandbox", "https://other.demo.test/")
    assert "alert access denied" in got and got.endswith("HTTP 000"), got
    got = outcome(s, "sandbox", "cat </dev/tcp/%s/2222" % OTHER)
    assert "Connection reset by peer" in got, got
    got = outcome(s, "sandbox", "redis-cli -h 198.18.0.1 -p 6379 ping")
    assert "Connection refused" in got, got


def test_demo_sni_spoofing_lands_on_the_allowed_host(demo):
    got = outcome(demo["steps"], "sandbox",
                  "--resolve allowed.demo.test:443:%s https://allowed.demo.test/" % OTHER)
    assert got.endswith("HTTP 200") and body_json(got)["server"] == ALLOWED, got


def test_demo_access_log_names_decision_and_rule(demo):
    first, after = demo["logs"]
    by = {(l["egress"], l["destination"], l["name"]): l for l in first}
    assert len(first) == 7, first
    l = by[("http", ALLOWED + ":80", "allowed.demo.test")]
    assert (l["decision"], l["rule"], l["status"]) == ("allow", "allowOut[0] allowed.demo.test", 200)
    l = by[("tls", CDN + ":443", "img.cdn.demo.test")]
    assert (l["decision"], l["rule"]) == ("allow", "allowOut[1] *.cdn.demo.test")
    l = by[("http", OTHER + ":80", "other.demo.test")]
    assert (l["decision"], l["rule"], l["status"]) == ("deny", "denyOut[0] 0.0.0.0/0", 403)
    l = by[("tls", OTHER + ":443", "other.demo.test")]
    assert (l["decision"], l["rule"]) == ("deny", "denyOut[0] 0.0.0.0/0")
    # the spoofed one: dialled OTHER, connected to allowed.demo.test's address
    l = by[("tls", OTHER + ":443", "allowed.demo.test")]
    assert (l["decision"], l["connected"]) == ("allow", ALLOWED + ":443")
    l = by[("tcp", OTHER + ":2222", None)]
    assert (l["decision"], l["rule"]) == ("deny", "denyOut[0] 0.0.0.0/0")
    # after the policy was tightened
    by = {(l["egress"], l["name"]): l for l in after}
    assert by[("http", "allowed.demo.test")]["decision"] == "deny"
    assert by[("http", "allowed.demo.test")]["status"] == 403
    assert by[("tls", "allowed.demo.test")]["rule"] == "denyOut[0] 0.0.0.0/0"
    assert by[("tls", "img.cdn.demo.test")]["rule"] == "allowOut[0] *.cdn.demo.test"


def test_demo_tightened_policy_refuses_what_was_allowed(demo):
    s = demo["steps"]
    sets = [c for w, c, o in s if w == "host" and c.startswith("redis-cli SET ")]
    assert len(sets) == 2 and "allowed.demo.test" in sets[0] and "allowed.demo.test" not in sets[1]
    assert sum(1 for w, c, o in s if w == "host" and "| nft -f -" in c) == 2
    got = outcome(s, "sandbox", "http://allowed.demo.test/", nth=1)
    assert got.endswith("HTTP 403") and body_json(got)["host"] == "allowed.demo.test", got
    got = outcome(s, "sandbox", "--cacert demo-ca.pem https://allowed.demo.test/", nth=1)
    assert "alert access denied" in got, got
    got = outcome(s, "sandbox", "https://img.cdn.demo.test/", nth=1)
    assert got.endswith("HTTP 200"), got


def test_demo_leaves_nothing_behind(demo):
    out = demo["out"]
    pids = started_pids(out)
    assert sorted(pids.values()) == ["dnsmasq", "edgeproxy", "egress_internet.py", "redis-server"]
    assert leftovers(demo["prefix"], demo["tmp"], pids) == []
    # The proxy drained and exited 0, with nothing from the sanitizers.
    assert re.search(r"stopped edgeproxy \(pid \d+, exit 0\)", out), out
    log = (demo["tmp"] / "logs" / "edgeproxy.log").read_text(errors="replace")
    assert not [p for p in SANITIZER_PATTERNS if p in log], log[-5000:]


def normalise(line):
    line = re.sub(r"curl/[0-9.]+", "curl/X", line)
    return re.sub(r"OpenSSL/\S+: error:\S+:SSL routines:\S*:", "OpenSSL: SSL routines:", line)


def test_readme_excerpt_is_what_the_demo_prints(demo):
    excerpt = [normalise(l) for l in egress_demo_excerpt()]
    printed = [normalise(l) for l in demo["out"].splitlines()]
    missing = [l for l in excerpt if l.strip() and l != "..." and l not in printed]
    assert not missing, "README lines the demo does not print:\n" + "\n".join(missing)
    # its commands, in the demo's order
    commands = [l for l in excerpt if re.match(r"^(host|sandbox)\$ ", l)]
    assert commands
    at = 0
    for c in commands:
        at = printed.index(c, at) + 1


def test_needs_root_says_so():
    if not shutil.which("setpriv"):
        pytest.skip("setpriv not installed")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "bash", "-s", "--", "--no-wait"], stdin=open(SCRIPT), cwd="/",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "needs root" in r.stderr and "sudo make egress-demo" in r.stderr, r.stderr
    assert r.stdout == ""


def test_interrupted_run_is_cleaned_up_by_the_next(tmp_path):
    prefix = "epd%dk" % os.getpid()
    try:
        first, out1 = start_waiting(tmp_path, prefix)
        # Killed outright: its trap cannot run, everything stays.
        first.kill()
        first.wait()
        first.stdin.close()
        first.stdout.close()
        pids = started_pids(out1)
        left = leftovers(prefix, tmp_path, pids)
        assert "namespace %s-sb" % prefix in left and len(left) > 5, left
        r = run_demo(tmp_path, prefix, "--no-wait")
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.startswith("egress-demo: removing what an interrupted run left: "
                                   "%s-sb %s-host %s-net" % (prefix, prefix, prefix)), r.stdout
        pids.update(started_pids(r.stdout))
        assert leftovers(prefix, tmp_path, pids) == []
    finally:
        clean(tmp_path, prefix)


def test_clean_option_removes_a_killed_run(tmp_path):
    prefix = "epd%dx" % os.getpid()
    try:
        p, out = start_waiting(tmp_path, prefix)
        p.kill()
        p.wait()
        p.stdin.close()
        p.stdout.close()
        pids = started_pids(out)
        assert leftovers(prefix, tmp_path, pids)
        r = run_demo(tmp_path, prefix, "--clean")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "removing what an interrupted run left" in r.stdout
        assert "building namespaces" not in r.stdout
        assert leftovers(prefix, tmp_path, pids) == []
    finally:
        clean(tmp_path, prefix)


def test_ctrl_c_while_waiting_cleans_up(tmp_path):
    prefix = "epd%dc" % os.getpid()
    try:
        p, out = start_waiting(tmp_path, prefix)
        try:
            assert "every outcome as expected" in out
            os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
            rest = p.stdout.read()
            assert p.wait(30) == 130, rest
        finally:
            stop_waiting(p)
        assert "egress-demo: deleted namespaces" in rest, rest
        assert leftovers(prefix, tmp_path, started_pids(out)) == []
    finally:
        clean(tmp_path, prefix)
