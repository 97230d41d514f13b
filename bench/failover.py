#!/usr/bin/env python3
"""The Python half of bench/failover.sh (see bench/README.md, "Failover").

    failover.py lab STATE WORKDIR --down-after MS --failover-timeout MS --warm N --uncached N
        Starts the failover lab of test/integration/sentinel_lab.py (one
        master, two replicas, three Sentinels on 127.0.0.1; the lab is
        imported, not copied, with its Sentinel timings set from the
        arguments), writes the routing records (sandbox:w<i>, sandbox:u<k>:
        {"address": "127.0.0.1"}) on the master and waits for both replicas
        to have them, then writes STATE (JSON: Sentinel addresses, ports,
        pids). On SIGUSR1 it kills the master with SIGKILL and records, in
        STATE, when: the kill, the first replica answering ROLE "master"
        (the promotion), the first +switch-master from a Sentinel. SIGTERM
        stops the lab (every process by pid) and exits.

    failover.py sample OUT ADMIN_PORT...
        Every second (on the wall clock's second), GETs /metrics of each
        proxy and appends {"t", "port", "m": {metric: value}} lines to OUT,
        until SIGTERM.

    failover.py report DIR STATE SAMPLES [--title T] [PROXY_LOG...]
        The report: events, per-second table, totals. DIR holds the wrk
        logs of bench/failover.lua.

Python 3 stdlib only. Times are time.time() (CLOCK_REALTIME), the clock the
wrk script logs with."""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test" / "integration"))


class Stop(Exception):
    pass


def _on_term(signum, frame):
    raise Stop()


def write_json(path, obj):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# lab


def seed(port, warm, uncached):
    """SET every record through redis-cli --pipe (RESP on stdin)."""
    rec = b'{"address": "127.0.0.1"}'
    chunks = []
    for name in ["w%d" % i for i in range(warm)] + ["u%d" % k for k in range(uncached)]:
        key = b"sandbox:" + name.encode()
        chunks.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(rec), rec))
    r = subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=b"".join(chunks),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if r.returncode != 0 or b"errors: 0" not in r.stdout:
        raise RuntimeError("seeding failed: %s" % r.stdout.decode(errors="replace"))


def cmd_lab(a):
    import sentinel_lab
    from harness import RedisError, Resp
    sentinel_lab.DOWN_AFTER_MS = a.down_after
    sentinel_lab.FAILOVER_TIMEOUT_MS = a.failover_timeout

    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    kill_asked = []
    signal.signal(signal.SIGUSR1, lambda s, f: kill_asked.append(time.time()))

    lab = sentinel_lab.Lab(Path(a.workdir))
    state = {"phase": "starting"}
    try:
        t0 = time.time()
        lab.start()
        master = lab.master()
        seed(master.port, a.warm, a.uncached)
        n = master.client.cmd("WAIT", str(len(lab.nodes) - 1), "10000")
        if n != len(lab.nodes) - 1:
            raise RuntimeError("only %s replicas acknowledged the records" % n)
        state = {
            "phase": "ready",
            "lab_start_s": round(time.time() - t0, 2),
            "master_name": sentinel_lab.MASTER_NAME,
            "down_after_ms": a.down_after,
            "failover_timeout_ms": a.failover_timeout,
            "sentinels": lab.sentinel_addrs,
            "sentinel_pids": [s.proc.pid for s in lab.sentinels],
            "master_port": master.port,
            "master_pid": master.proc.pid,
            "nodes": [{"port": nd.port, "pid": nd.proc.pid} for nd in lab.nodes],
            "records": {"warm": a.warm, "uncached": a.uncached},
            "events": {},
        }
        write_json(a.state, state)
        switches = lab.watch_switches()
        # watch_switches stamps time.monotonic(): convert to the wall clock.
        mono_to_wall = time.time() - time.monotonic()
        while not kill_asked:
            time.sleep(0.05)
        others = [nd for nd in lab.nodes if nd is not master]
        ev = state["events"]
        ev["kill"] = time.time()
        master.kill9()
        write_json(a.state, state)
        # Poll the replicas' ROLE every 10 ms: the promotion is when one of
        # them stops being a replica (Sentinel's REPLICAOF NO ONE).
        while "switch" not in ev or "promoted" not in ev:
            if "promoted" not in ev:
                for nd in others:
                    try:
                        c = Resp(nd.port, timeout=0.5)
                        try:
                            role = c.cmd("ROLE")[0].decode()
                        finally:
                            c.close()
                    except (OSError, RedisError):
                        continue
                    if role == "master":
                        ev["promoted"] = time.time()
                        ev["promoted_port"] = nd.port
                        write_json(a.state, state)
                        break
            if "switch" not in ev and len(switches):
                t, msg = switches[0]
                ev["switch"] = t + mono_to_wall
                ev["switch_msg"] = msg
                write_json(a.state, state)
            time.sleep(0.01)
        while True:
            time.sleep(1)
    except Stop:
        pass
    except Exception as e:
        state["phase"] = "failed"
        state["error"] = "%s: %s" % (type(e).__name__, e)
        write_json(a.state, state)
        raise
    finally:
        lab.stop()


# --------------------------------------------------------------------------
# sample

KEEP = ("edgeproxy_route_lookups_total", "edgeproxy_redis_replica_reads_total",
        "edgeproxy_redis_circuit", "edgeproxy_redis_master_switches_total",
        "edgeproxy_requests_total", "edgeproxy_redis_errors_total",
        "edgeproxy_redis_reconnects_total", "edgeproxy_proxy_replies_total")


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=0.8) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(KEEP):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


def pressure():
    """The host's pressure stall totals (µs, /proc/pressure): time some task
    waited for a CPU, some or all waited for I/O."""
    out = {}
    for res, kinds in (("cpu", ("some",)), ("io", ("some", "full"))):
        try:
            text = Path("/proc/pressure/" + res).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            kind, _, rest = line.partition(" ")
            if kind in kinds:
                out["%s_%s" % (res, kind)] = int(rest.rpartition("total=")[2])
    return out


def cmd_sample(a):
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    try:
        with open(a.out, "a") as f:
            while True:
                time.sleep(1 - time.time() % 1)
                f.write(json.dumps({"t": time.time(), "psi": pressure()}) + "\n")
                for port in a.ports:
                    t = time.time()
                    try:
                        m = scrape(port)
                    except OSError as e:
                        m = {"error": str(e)}
                    f.write(json.dumps({"t": t, "port": port, "m": m}) + "\n")
                f.flush()
    except Stop:
        pass


# --------------------------------------------------------------------------
# report


def read_requests(d, role):
    """[(start_s, latency_s, status, retry_after)] of every wrk thread of a
    role, sorted by start."""
    out = []
    for p in sorted(Path(d).glob("%s-*.log" % role)):
        if p.name.endswith("-unfinished.log"):
            continue
        for line in p.read_text().splitlines():
            parts = line.split()
            if len(parts) != 4:
                continue  # a line cut by the end of the run
            st = parts[2]
            out.append((float(parts[0]) / 1e3, int(parts[1]) / 1e6,
                        st if st == "E" else int(st), parts[3] == "1"))
    out.sort()
    return out


def read_unfinished(d, role):
    p = Path(d) / ("%s-unfinished.log" % role)
    if not p.exists():
        return []
    return [float(x) / 1e3 for x in p.read_text().split()]


def ok(status):
    return status != "E" and 200 <= status < 300


def proxy_switch_times(logs):
    """Wall-clock times of each proxy's 'master ... is now' log line."""
    out = []
    pat = re.compile(r"^(\S+Z) \[\w+\] redis: master of \"[^\"]+\" is now")
    for p in logs:
        for line in Path(p).read_text(errors="replace").splitlines():
            m = pat.match(line)
            if m:
                ts = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
                out.append((Path(p).stem, ts.replace(tzinfo=timezone.utc).timestamp()))
                break
    return out


def read_samples(path):
    """([(t, summed metrics, {port: metrics})] of the seconds where every
    proxy answered, [(t, pressure totals)])."""
    by_t = {}
    psi = []
    for line in Path(path).read_text().splitlines():
        try:
            s = json.loads(line)
        except ValueError:
            continue
        if "psi" in s:
            psi.append((s["t"], s["psi"]))
            continue
        if "error" in s["m"]:
            continue
        by_t.setdefault(round(s["t"]), {})[s["port"]] = s["m"]
    ports = set()
    for v in by_t.values():
        ports.update(v)
    # Keep only the seconds where every proxy answered, then sum them.
    rows = []
    for t in sorted(by_t):
        if set(by_t[t]) != ports:
            continue
        total = {}
        for m in by_t[t].values():
            for k, v in m.items():
                total[k] = total.get(k, 0) + v
        rows.append((t, total, by_t[t]))
    return rows, psi


def lookups(m, outcome):
    return m.get('edgeproxy_route_lookups_total{outcome="%s"}' % outcome, 0)


def fmt_ms(s):
    return "-" if s is None else "%.0f" % (s * 1e3)


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def cmd_report(a):
    state = json.loads(Path(a.state).read_text())
    ev = state.get("events", {})
    kill = ev.get("kill")
    warm = read_requests(a.dir, "warm")
    unc = read_requests(a.dir, "uncached")
    orig = read_requests(a.dir, "origin")
    samples, psi = read_samples(a.samples)
    w = sys.stdout.write

    if a.title:
        w(a.title + "\n\n")
    if kill is None:
        w("no kill recorded (state: %s)\n" % state.get("phase"))
        return 1

    def rel(t):
        return None if t is None else t - kill

    # ---- events
    w("events (seconds after the kill -9 of the master):\n")
    promoted, switch = ev.get("promoted"), ev.get("switch")
    w("  replica promoted (answers ROLE master):  %s\n" %
      ("%.2f" % rel(promoted) if promoted else "never (within the run)"))
    w("  +switch-master from a Sentinel:          %s\n" %
      ("%.2f" % rel(switch) if switch else "never (within the run)"))
    for name, t in proxy_switch_times(a.proxy_logs):
        w("  %-40s %.2f\n" % (name + " logs the new master:", rel(t)))
    first_ok_after = None
    if promoted:
        after = [t for t in unc if t[0] >= promoted and ok(t[2])]
        if after:
            first_ok_after = after[0][0] + after[0][1]
    w("  time to recovery: the first uncached request started after the promotion\n"
      "  that got a 200 was answered at %s, %s after the promotion\n" %
      ("%.2f" % rel(first_ok_after) if first_ok_after else "-",
       "%.0f ms" % ((first_ok_after - promoted) * 1e3) if first_ok_after else "-"))
    for name, reqs in (("uncached", unc), ("warm", warm)):
        bad = [t for t in reqs if t[0] + t[1] >= kill and not ok(t[2])]
        if not bad:
            w("  %s requests failing: none\n" % name)
            continue
        last = max(t[0] + t[1] for t in bad)
        w("  %s requests failing: %d, answered from %.2f to %.2f%s\n" % (
            name, len(bad), rel(bad[0][0] + bad[0][1]), rel(last),
            " (the last %.2f s after the promotion)" % (last - promoted)
            if promoted and last > promoted else ""))
    # Replica reads stop growing when every data connection is back on a master.
    rr_key = "edgeproxy_redis_replica_reads_total"
    rr_last = None
    for (t0, m0, _), (t1, m1, _) in zip(samples, samples[1:]):
        if m1.get(rr_key, 0) > m0.get(rr_key, 0):
            rr_last = t1
    if rr_last is not None:
        w("  replica reads last seen in the second ending at %.0f s\n" % rel(rr_last))
    w("\n")

    # ---- per second
    start = min([t[0] for t in warm + unc] or [kill])
    end = max([t[0] for t in warm + unc] or [kill])
    s0, s1 = int((start - kill) // 1), int((end - kill) // 1)
    by_s = {}
    for role, reqs in (("w", warm), ("u", unc), ("o", orig)):
        for t in reqs:
            b = by_s.setdefault((role, int((t[0] - kill) // 1)), [])
            b.append(t)
    # Samples: counter deltas over each second between two samples, shown in
    # the row that the middle of that second falls in.
    sdelta = {}
    for (t0, m0, _), (t1, m1, _) in zip(samples, samples[1:]):
        sec = int((t1 - 0.5 - kill) // 1)
        d = {k: m1.get(k, 0) - m0.get(k, 0) for k in m1}
        d["circuit_open"] = m1.get('edgeproxy_redis_circuit{state="open"}', 0)
        sdelta[sec] = d
    pdelta = {}
    for (t0, p0), (t1, p1) in zip(psi, psi[1:]):
        pdelta[int((t1 - 0.5 - kill) // 1)] = {
            k: (p1[k] - p0.get(k, 0)) / 1e4 / max(t1 - t0, 0.001) for k in p1}

    w("per second (requests by start time; s = seconds after the kill; warm = cached\n"
      "sandboxes, unc = a new sandbox each request; fail = non-2xx/socket errors,\n"
      "with the statuses; 503RA = 503 with Retry-After; max = slowest request, ms;\n"
      "lookups from /metrics, sampled on each wall-clock second, in the row\n"
      "the middle of their second falls in: hit/miss/stale/err, rr = replica\n"
      "reads, open = workers whose circuit is open at the sample; the control:\n"
      "orig = slowest request straight to the origin, ms, and the host's\n"
      "pressure stall, % of the second some task waited for a CPU (cpu) or for\n"
      "I/O (io), from /proc/pressure):\n\n")
    w("%4s | %6s %5s %5s | %6s %5s %6s %6s | %6s %6s %5s %4s %5s %4s | %5s %4s %4s  %s\n" %
      ("s", "warm", "fail", "max", "unc", "fail", "503RA", "max",
       "hit", "miss", "stale", "err", "rr", "open", "orig", "cpu", "io", "statuses"))

    def stat(reqs):
        okc = sum(1 for t in reqs if ok(t[2]))
        bad = [t for t in reqs if not ok(t[2])]
        ra = sum(1 for t in bad if t[2] == 503 and t[3])
        mx = max((t[1] for t in reqs), default=None)
        st = {}
        for t in bad:
            st[str(t[2])] = st.get(str(t[2]), 0) + 1
        return okc, len(bad), ra, mx, st

    for s in range(s0, s1 + 1):
        wo, wf, _, wm, wst = stat(by_s.get(("w", s), []))
        uo, uf_, ura, um, ust = stat(by_s.get(("u", s), []))
        d = sdelta.get(s, {})
        om = max((t[1] for t in by_s.get(("o", s), [])), default=None)
        pd = pdelta.get(s, {})
        sts = " ".join("w%s=%d" % kv for kv in sorted(wst.items())) + " " + \
            " ".join("u%s=%d" % kv for kv in sorted(ust.items()))
        w("%4d | %6d %5d %5s | %6d %5d %6d %6s | %6s %6s %5s %4s %5s %4s | %5s %4s %4s  %s\n" % (
            s, wo, wf, fmt_ms(wm), uo, uf_, ura, fmt_ms(um),
            "%d" % lookups(d, "hit") if d else "-", "%d" % lookups(d, "miss") if d else "-",
            "%d" % lookups(d, "stale") if d else "-", "%d" % lookups(d, "error") if d else "-",
            "%d" % d.get(rr_key, 0) if d else "-", "%d" % d["circuit_open"] if d else "-",
            fmt_ms(om), "%.0f" % pd["cpu_some"] if "cpu_some" in pd else "-",
            "%.0f" % pd["io_some"] if "io_some" in pd else "-", sts.strip()))
    w("\n")

    # ---- totals
    def totals(name, reqs, unfinished):
        okc, nbad, ra, mx, st = stat(reqs)
        lat = [t[1] for t in reqs]
        w("%s: %d requests, %d ok, %d failed%s; 503 with Retry-After %d; latency p50 %s ms,"
          " p99 %s ms, max %s ms; over 300 ms %d, over 1 s %d; unfinished at the end %d\n" % (
              name, len(reqs), okc, nbad,
              " (%s)" % ", ".join("%s: %d" % kv for kv in sorted(st.items())) if st else "",
              ra, fmt_ms(pct(lat, 0.5)), fmt_ms(pct(lat, 0.99)), fmt_ms(mx),
              sum(1 for x in lat if x > 0.3), sum(1 for x in lat if x > 1.0), len(unfinished)))
        bad503 = [t for t in reqs if t[2] == 503]
        if bad503:
            w("  503s: slowest %s ms, without Retry-After %d\n" %
              (fmt_ms(max(t[1] for t in bad503)), sum(1 for t in bad503 if not t[3])))

    w("totals, whole run:\n")
    totals("  warm", warm, read_unfinished(a.dir, "warm"))
    totals("  uncached", unc, read_unfinished(a.dir, "uncached"))
    totals("  origin (control, not through the proxy)", orig, read_unfinished(a.dir, "origin"))
    outage_end = (promoted or end) + 5
    w("from the kill to 5 s after the promotion (%.1f s):\n" % (outage_end - kill))
    totals("  warm", [t for t in warm if kill <= t[0] < outage_end], [])
    totals("  uncached", [t for t in unc if kill <= t[0] < outage_end], [])

    if samples:
        first = samples[0][1]
        last = samples[-1][1]
        before = [row for row in samples if row[0] <= kill]
        at_kill = before[-1][1] if before else first
        after = [row for row in samples if row[0] >= outage_end]
        at_end = after[0][1] if after else last

        def deltas(m0, m1):
            return ", ".join("%s %d" % (o, lookups(m1, o) - lookups(m0, o))
                             for o in ("hit", "miss", "stale", "not_found", "broken", "error"))
        w("\nlookups (/metrics edgeproxy_route_lookups_total, all proxies):\n")
        w("  whole run:                        %s\n" % deltas(first, last))
        w("  kill to 5 s after the promotion:  %s\n" % deltas(at_kill, at_end))
        w("  replica reads %d, Redis errors %d, master switches %d, Redis connections made %d\n" % (
            last.get(rr_key, 0) - first.get(rr_key, 0),
            last.get("edgeproxy_redis_errors_total", 0) - first.get("edgeproxy_redis_errors_total", 0),
            last.get("edgeproxy_redis_master_switches_total", 0) -
            first.get("edgeproxy_redis_master_switches_total", 0),
            last.get("edgeproxy_redis_reconnects_total", 0) -
            first.get("edgeproxy_redis_reconnects_total", 0)))
        ports = sorted(samples[-1][2])
        if len(ports) > 1:
            w("  requests answered per instance (admin port: count):")
            for p in ports:
                m0 = samples[0][2][p]
                m1 = samples[-1][2][p]
                n = sum(v - m0.get(k, 0) for k, v in m1.items()
                        if k.startswith("edgeproxy_requests_total{"))
                w(" %d: %d" % (p, n))
            w("\n")

    # ---- one line for bench/README.md
    def failed(reqs):
        return sum(1 for t in reqs if not ok(t[2]))
    stale = lookups(samples[-1][1], "stale") - lookups(samples[0][1], "stale") if samples else 0
    w("\nsummary: promoted %s s, +switch-master %s s after the kill; first uncached 200 %s ms after"
      " the promotion; warm failed %d of %d; uncached failed %d of %d (503 + Retry-After %d),"
      " slowest uncached %s ms; served stale %d\n" % (
          "%.2f" % rel(promoted) if promoted else "-", "%.2f" % rel(switch) if switch else "-",
          "%.0f" % ((first_ok_after - promoted) * 1e3) if first_ok_after else "-",
          failed(warm), len(warm), failed(unc), len(unc),
          sum(1 for t in unc if t[2] == 503 and t[3]), fmt_ms(max((t[1] for t in unc), default=None)),
          stale))
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("lab")
    p.add_argument("state")
    p.add_argument("workdir")
    p.add_argument("--down-after", type=int, required=True)
    p.add_argument("--failover-timeout", type=int, required=True)
    p.add_argument("--warm", type=int, required=True)
    p.add_argument("--uncached", type=int, required=True)
    p = sub.add_parser("sample")
    p.add_argument("out")
    p.add_argument("ports", type=int, nargs="+")
    p = sub.add_parser("report")
    p.add_argument("dir")
    p.add_argument("state")
    p.add_argument("samples")
    p.add_argument("--title")
    p.add_argument("proxy_logs", nargs="*")
    a = ap.parse_args()
    return {"lab": cmd_lab, "sample": cmd_sample, "report": cmd_report}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
