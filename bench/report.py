#!/usr/bin/env python3
"""Turns the raw runs of bench/run.sh into the tables it prints.

    report.py RUNS.tsv MEM.tsv CLK_TCK IDLE_CONNS STREAM_MIB [FAILURES.tsv]

RUNS.tsv: tool body round target file ticks origin_ticks status, one row per
measured run (wrk or h2load output in `file`, h2load's per-request log in
`file`.log; ticks = the target's utime+stime delta over the run, in clock
ticks; origin_ticks the origin's). MEM.tsv: target metric value.
"""
import os
import re
import statistics
import sys

TARGETS = ["origin", "nginx", "haproxy", "edgeproxy", "edgeproxy_base"]
PROXIES = ["nginx", "haproxy", "edgeproxy"]
BODY = {"small": "6 B body (GET /)", "16k": "16 KiB body (GET /16k)"}
UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def duration_us(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * UNIT_US[m.group(2)] if m else None


def read_run(path):
    """An empty result for one run and the tool's output (None if unreadable)."""
    r = {"errors": [], "requests": 0, "rps": None, "p50": None, "p99": None, "bad": 0}
    try:
        return r, open(path).read()
    except OSError as e:
        r["errors"].append(str(e))
        return r, None


def parse_wrk(path):
    r, text = read_run(path)
    if text is None:
        return r
    m = re.search(r"^\s*(\d+) requests in", text, re.M)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if m:
        r["rps"] = float(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, text, re.M)
        if m:
            r[key] = duration_us(m.group(1))
    bad = 0
    m = re.search(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", text, re.M)
    if m:
        bad += int(m.group(1))
        r["errors"].append(m.group(0).strip())
    m = re.search(r"^\s*Socket errors:.*$", text, re.M)
    if m:
        bad += sum(int(x) for x in re.findall(r"\d+", m.group(0)))
        r["errors"].append(m.group(0).strip())
    if r["rps"] is None:
        r["errors"].append("no result: " + " | ".join(text.strip().splitlines()[-3:]))
    r["bad"] = bad
    return r


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def parse_h2load(path):
    r, text = read_run(path)
    if text is None:
        return r
    m = re.search(r"^finished in [^,]+, ([\d.]+) req/s", text, re.M)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    if m:
        done, failed, errored, timeout = (int(m.group(i)) for i in (3, 5, 6, 7))
        r["requests"] = done
        r["bad"] += failed + errored + timeout
        if failed or errored or timeout:
            r["errors"].append(m.group(0))
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if m:
        non2xx = sum(int(m.group(i)) for i in (2, 3, 4))
        if non2xx:
            r["bad"] += non2xx
            r["errors"].append(m.group(0))
    lat = []
    try:
        with open(path + ".log") as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3 and parts[1].startswith("2"):
                    lat.append(float(parts[2]))
    except OSError:
        pass
    lat.sort()
    r["p50"] = percentile(lat, 50)
    r["p99"] = percentile(lat, 99)
    if r["rps"] is None:
        r["errors"].append("no result: " + " | ".join(text.strip().splitlines()[-3:]))
    return r


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, spec, dash="-"):
    return dash if v is None else format(v, spec)


def fmt_lat(us):
    if us is None:
        return "-"
    return "%.0fus" % us if us < 1000 else "%.2fms" % (us / 1000)


def table(rows, header):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    out = []
    for i, row in enumerate([header] + rows):
        cells = [str(c).ljust(w) if j == 0 else str(c).rjust(w)
                 for j, (c, w) in enumerate(zip(row, widths))]
        out.append("  ".join(cells).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def paired_ratios(sel, target, peer, key):
    """target/peer for each round in which both ran: runs of one round are
    seconds apart, so these ratios cancel most of the machine's drift."""
    by = {(r["target"], r["round"]): r.get(key) for r in sel}
    out = []
    for rnd in sorted({r["round"] for r in sel}):
        a, b = by.get((target, rnd)), by.get((peer, rnd))
        if a and b:
            out.append(a / b)
    return out


def paired_line(sel, target="edgeproxy", peers=("nginx", "haproxy")):
    parts = []
    for peer in peers:
        for key, label in (("rps", "req/s"), ("cpu", "CPU")):
            vals = paired_ratios(sel, target, peer, key)
            if vals:
                parts.append("%s %s %.2f (%.2f-%.2f)" % (
                    label, peer, statistics.median(vals), min(vals), max(vals)))
    if not parts:
        return "paired: -"
    return "%s / peer in the same round, median (min-max): %s" % (target, ", ".join(parts))


def main():
    runs_tsv, mem_tsv, hz, idle_conns, stream_mib = sys.argv[1:6]
    failures_tsv = sys.argv[6] if len(sys.argv) > 6 else ""
    hz = float(hz)
    runs = []
    with open(runs_tsv) as f:
        next(f)
        for line in f:
            tool, body, rnd, target, path, ticks, oticks, status = line.rstrip("\n").split("\t")
            r = parse_wrk(path) if tool == "wrk" else parse_h2load(path)
            r.update(tool=tool, body=body, round=int(rnd), target=target, status=status)
            if status != "ok":
                r["errors"].append("run status: " + status)
            cpu_us = int(ticks) * 1e6 / hz
            ocpu_us = int(oticks) * 1e6 / hz
            r["cpu"] = cpu_us / r["requests"] if r["requests"] else None
            r["ocpu"] = ocpu_us / r["requests"] if r["requests"] else None
            runs.append(r)

    # origin-normalised CPU: against the direct-origin run of the same round
    direct = {(r["tool"], r["body"], r["round"]): r["cpu"]
              for r in runs if r["target"] == "origin"}
    for r in runs:
        ref = direct.get((r["tool"], r["body"], r["round"]))
        r["norm"] = r["cpu"] / ref if r["cpu"] is not None and ref else None

    problems = []
    for tool in ("wrk", "h2load"):
        for body in ("small", "16k"):
            sel = [r for r in runs if r["tool"] == tool and r["body"] == body]
            if not sel:
                continue
            agg = {}
            for t in TARGETS:
                rs = [r for r in sel if r["target"] == t]
                if not rs:
                    continue
                agg[t] = {
                    "n": len(rs),
                    "rps": med([r["rps"] for r in rs]),
                    "p50": med([r["p50"] for r in rs]),
                    "p99": med([r["p99"] for r in rs]),
                    "cpu": med([r["cpu"] for r in rs]),
                    "norm": med([r["norm"] for r in rs]),
                    "bad": sum(r.get("bad", 0) for r in rs),
                }
                for r in rs:
                    if r["errors"]:
                        problems.append("%s %s round %d %s: %s" % (
                            tool, body, r["round"], t, "; ".join(r["errors"])))
            ng = agg.get("nginx", {})
            rows = []
            for t in TARGETS:
                a = agg.get(t)
                if a is None:
                    if t == "edgeproxy_base":
                        continue  # only with EDGEPROXY_BASE_BIN
                    rows.append([t, "not measured"] + [""] * 8)
                    continue
                rps_ratio = a["rps"] / ng["rps"] if a["rps"] and ng.get("rps") else None
                cpu_ratio = (a["cpu"] / ng["cpu"]
                             if t != "origin" and a["cpu"] and ng.get("cpu") else None)
                rows.append([
                    t if a["n"] == len({r["round"] for r in sel}) else "%s (%d runs)" % (t, a["n"]),
                    fmt(a["rps"], ",.0f"), fmt_lat(a["p50"]), fmt_lat(a["p99"]),
                    fmt(a["cpu"], ".2f"), fmt(a["norm"], ".2f"),
                    fmt(rps_ratio, ".2f"), fmt(cpu_ratio, ".2f"), str(a["bad"]),
                ])
            print("%s, %s: median of %d rounds" % (tool, BODY[body],
                                                     len({r["round"] for r in sel})))
            print(table(rows, ["target", "req/s", "p50", "p99", "CPU us/req",
                               "CPU/origin", "req/s/nginx", "CPU/nginx", "errors"]))
            print(paired_line(sel))
            if any(r["target"] == "edgeproxy_base" for r in sel):
                # EDGEPROXY_BASE_BIN: the same ratios for the baseline binary,
                # and the change itself
                print(paired_line(sel, "edgeproxy_base"))
                print(paired_line(sel, "edgeproxy", ("edgeproxy_base",)))
            print()

    print("CPU us/req: the target's utime+stime over the run / requests completed;")
    print("CPU/origin: that / the origin's CPU us/req when hit directly in the same round;")
    print("errors: non-2xx responses + socket errors (wrk), failed/errored/timeout + non-2xx (h2load).")
    print()

    # memory
    mem = {}
    if os.path.exists(mem_tsv):
        with open(mem_tsv) as f:
            next(f)
            for line in f:
                t, k, v = line.rstrip("\n").split("\t", 2)
                mem.setdefault(t, {})[k] = v
    if mem:
        n = int(idle_conns)

        def kib(t, k):
            try:
                return int(mem.get(t, {}).get(k, ""))
            except ValueError:
                return None

        def mib(v):
            return "-" if v is None else "%.1f" % (v / 1024)

        idle_n = {t: kib(t, "idle_conns") or n for t in PROXIES}
        per_conn = {}
        for t in PROXIES:
            b, w = kib(t, "idle_before_kib"), kib(t, "idle_with_kib")
            per_conn[t] = (w - b) / idle_n[t] if b is not None and w is not None else None
        rows = []
        for t in PROXIES:
            pc = per_conn[t]
            ratio = pc / per_conn["nginx"] if pc is not None and per_conn.get("nginx") else None
            rows.append([t, str(idle_n[t]), mib(kib(t, "idle_before_kib")),
                         mib(kib(t, "idle_with_kib")), fmt(pc, ".2f"), fmt(ratio, ".2f")])
        print("memory: RSS (VmRSS of the serving process: nginx worker, haproxy, edgeproxy)")
        print("with idle keep-alive client connections (one GET / each, then idle)")
        print(table(rows, ["target", "conns", "RSS before MiB", "RSS with conns MiB",
                           "KiB/conn", "KiB/conn / nginx"]))
        print("(KiB/conn = growth / connections. nginx allocates its whole connection table")
        print(" (worker_connections) and HAProxy its fd table (maxconn) at start, so part of")
        print(" their per-connection cost is already in 'RSS before'; compare the totals too.)")
        print()
        rows = []
        for t in PROXIES:
            rows.append([t,
                         mib(kib(t, "upload_before_kib")), mib(kib(t, "upload_peak_kib")),
                         mib(kib(t, "upload_after_kib")),
                         mib(kib(t, "download_before_kib")), mib(kib(t, "download_peak_kib")),
                         mib(kib(t, "download_after_kib"))])
        print("RSS around a %d MiB streamed body (MiB; the receiver reads at a capped rate)" %
              int(stream_mib))
        print(table(rows, ["target", "upload before", "peak", "after",
                           "download before", "peak", "after"]))
        print()
        for t in PROXIES:
            res = mem.get(t, {})
            up, down, idle = (res.get("upload_result", "-"), res.get("download_result", "-"),
                              res.get("idle_result", "-"))
            print("  %-9s upload: %s | download: %s | idle: %s" % (t, up, down, idle.strip()))
            expect = "%d" % (int(stream_mib) * 1024 * 1024)
            for kind, r in (("upload", up), ("download", down)):
                if r != "-" and r.split()[:2] != ["200", expect]:
                    problems.append("%s %s of %s MiB: curl said %r" % (t, kind, stream_mib, r))
            m = re.search(r"open=(\d+) ok=(\d+) bad=(\d+) errors=(\d+)", idle)
            if idle != "-" and (not m or int(m.group(2)) != idle_n[t]):
                problems.append("%s idle connections: %s" % (t, idle.strip()))
            m = re.search(r"still_open=(\d+)", idle)
            if m and int(m.group(1)) != idle_n[t]:
                problems.append("%s idle connections: only %s of %d still open when RSS was read"
                                % (t, m.group(1), idle_n[t]))
        print()

    if failures_tsv and os.path.exists(failures_tsv):
        with open(failures_tsv) as f:
            for line in f:
                t, reason = line.rstrip("\n").split("\t", 1)
                problems.append("%s: %s" % (t, reason))

    print("problems:" if problems else "problems: none (every response 2xx, no socket errors)")
    for p in problems:
        print("  " + p)

    print()
    print("per run: tool body round target req/s p50 p99 CPUus/req origin-CPUus/req(same run) errors")
    for r in runs:
        print("  %-6s %-5s %d %-9s %9s %8s %8s %7s %7s %s" % (
            r["tool"], r["body"], r["round"], r["target"], fmt(r["rps"], ".0f"),
            fmt_lat(r["p50"]), fmt_lat(r["p99"]), fmt(r["cpu"], ".2f"),
            fmt(r["ocpu"], ".2f"), r.get("bad", 0)))


if __name__ == "__main__":
    main()
