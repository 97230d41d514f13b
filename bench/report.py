#!/usr/bin/env python3
"""Turns the raw runs of bench/run.sh into the tables it prints.

    report.py RUNS.tsv MEM.tsv CLK_TCK IDLE_CONNS STREAM_MIB [FAILURES.tsv [TLS_CHECK.tsv]]

RUNS.tsv (with a header line): tool body round target file ticks origin_ticks
status srv_busy cli_busy, one row per measured run (the load tool's output
in `file`, h2load's per-request log in `file`.log; ticks = the target's
utime+stime delta over the run, in clock ticks; origin_ticks the origin's;
srv_busy/cli_busy = % of the server's and the client's CPU busy over the
run). MEM.tsv: target metric value. TLS_CHECK.tsv: target client
negotiated ("protocol cipher group alpn", from openssl s_client).

A run is valid only when every response was 2xx, no request failed, and
every TLS connection negotiated what the bench claims (TLS 1.3,
TLS_AES_128_GCM_SHA256, X25519, the ALPN protocol of the phase, no
resumption in the handshake phase); the report's verdict says which.
"""
import csv
import os
import re
import statistics
import sys

TARGETS = ["origin", "nginx", "haproxy", "h2o", "edgeproxy", "edgeproxy_base"]
PROXIES = ["nginx", "haproxy", "edgeproxy"]   # the memory tests
PEERS = ("nginx", "haproxy", "h2o")
BODY = {"small": "6 B body (GET /)", "16k": "16 KiB body (GET /16k)"}
TOOL = {
    "wrk": "wrk, HTTP/1.1",
    "h2load": "h2load --h1, HTTP/1.1",
    "https": "wrk, HTTPS/1.1 (TLS 1.3)",
    "h2": "h2load -m, h2 over TLS 1.3 (ALPN)",
    "h2c": "h2load -m, h2c (prior knowledge)",
    "handshake": "hsload, a new TLS 1.3 connection (full handshake) per request",
}
TOOL_ORDER = ["wrk", "h2load", "https", "h2", "h2c", "handshake"]
TLS13 = {"protocol": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256", "group": "X25519"}
# what each phase's load tool must report having negotiated (h2load: its
# "TLS Protocol", "Cipher", "Server Temp Key", "Application protocol" lines;
# hsload: its own); wrk prints nothing, its TLS is checked by TLS_CHECK.tsv
EXPECT = {
    "h2load": {"alpn": "http/1.1"},
    "h2": dict(TLS13, alpn="h2"),
    "h2c": {"alpn": "h2c"},
    "handshake": dict(TLS13, alpn="http/1.1"),
}
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
    neg = {}
    for key, pat in (("protocol", r"^TLS Protocol: (\S+)"), ("cipher", r"^Cipher: (\S+)"),
                     ("group", r"^Server Temp Key: (\S+)"),
                     ("alpn", r"^Application protocol: (\S+)")):
        m = re.search(pat, text, re.M)
        if m:
            neg[key] = m.group(1)
    r["negotiated"] = neg
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


def parse_hsload(path):
    r, text = read_run(path)
    if text is None:
        return r
    m = re.search(r"^connections/s: ([\d.]+)", text, re.M)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"^connections: (\d+) done, (\d+) 2xx, (\d+) non-2xx, (\d+) errors", text, re.M)
    if m:
        r["requests"] = int(m.group(1))
        bad = int(m.group(3)) + int(m.group(4))
        r["bad"] = bad
        if bad:
            r["errors"].append(m.group(0))
            m2 = re.search(r"^errors: .*$", text, re.M)
            if m2:
                r["errors"].append(m2.group(0))
    m = re.search(r"^handshakes: (\d+), resumed: (\d+), negotiated otherwise than the first: (\d+)",
                  text, re.M)
    if m and (int(m.group(2)) or int(m.group(3))):
        r["invalid"] = r.get("invalid", []) + [m.group(0)]
    neg = {}
    for key in ("protocol", "cipher", "group", "alpn"):
        m = re.search(r"^%s: (\S*)" % key, text, re.M)
        if m:
            neg[key] = m.group(1)
    r["negotiated"] = neg
    m = re.search(r"^client CPU us/connection: ([\d.]+)", text, re.M)
    if m:
        r["client_cpu"] = float(m.group(1))
    if r["rps"] is None:
        r["errors"].append("no result: " + " | ".join(text.strip().splitlines()[-3:]))
    return r


PARSE = {"wrk": parse_wrk, "https": parse_wrk, "h2load": parse_h2load, "h2": parse_h2load,
         "h2c": parse_h2load, "handshake": parse_hsload}


def check_negotiated(r):
    """What the run's tool negotiated against what the phase claims: a list
    of mismatches (group names compared case-blind: OpenSSL spells X25519
    both ways)."""
    want = EXPECT.get(r["tool"])
    if not want:
        return []
    got = r.get("negotiated", {})
    out = []
    for key, val in want.items():
        if got.get(key, "").lower() != val.lower():
            out.append("%s %r, not %r" % (key, got.get(key, "(none)"), val))
    return out


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


def paired_line(sel, target="edgeproxy", peers=PEERS):
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


def spread(vals):
    return "%.2f (%.2f-%.2f)" % (statistics.median(vals), min(vals), max(vals))


def goals(runs):
    """Issue 13's targets, each from the paired ratios of one run (median
    over the rounds, min-max): met, not met, or not measured."""
    lines = []

    def check(tool, key, peer, op, bound, what):
        for body in ("small", "16k"):
            sel = [r for r in runs if r["tool"] == tool and r["body"] == body]
            vals = paired_ratios(sel, "edgeproxy", peer, key)
            if not vals:
                continue
            m = statistics.median(vals)
            ok = m >= bound if op == ">=" else m > bound if op == ">" else m <= bound
            lines.append("  %-44s %-6s %-4s %s %s %.2f: %s" % (
                what, tool, body, spread(vals), op, bound, "met" if ok else "NOT MET"))

    check("h2", "rps", "nginx", ">=", 1.2, "req/s edgeproxy/nginx over h2")
    check("h2", "rps", "h2o", ">", 1.0, "req/s edgeproxy/h2o over h2")
    check("h2", "rps", "haproxy", ">", 1.0, "req/s edgeproxy/HAProxy over h2")
    check("https", "cpu", "nginx", "<=", 0.85, "CPU/request edgeproxy/nginx, HTTPS/1.1")
    check("h2", "cpu", "nginx", "<=", 0.85, "CPU/request edgeproxy/nginx, h2")
    check("handshake", "rps", "nginx", ">=", 1.0, "handshakes/s edgeproxy/nginx")
    if lines:
        print("issue 13 targets (paired ratio, median (min-max) over the rounds):")
        print("\n".join(lines))
        print()


def legend():
    print("CPU us/req: the target's utime+stime over the run / requests completed (handshake:")
    print("per connection); CPU/origin: that / the origin's CPU us/req when hit directly in the")
    print("same round (plain HTTP/1.1 phases only); srv%/cli%: how busy the server's and the")
    print("client's CPU were (a client near 100 % with the server below it measures the client);")
    print("errors: non-2xx + socket errors (wrk), failed/errored/timeout + non-2xx (h2load),")
    print("non-2xx + connect/handshake/io errors (hsload).")
    print()


def main():
    runs_tsv, mem_tsv, hz, idle_conns, stream_mib = sys.argv[1:6]
    failures_tsv = sys.argv[6] if len(sys.argv) > 6 else ""
    tls_check_tsv = sys.argv[7] if len(sys.argv) > 7 else ""
    hz = float(hz)
    runs = []
    with open(runs_tsv) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            tool = row["tool"]
            r = PARSE[tool](row["file"])
            r.update(tool=tool, body=row["body"], round=int(row["round"]), target=row["target"],
                     status=row["status"], srv_busy=row.get("srv_busy") or "",
                     cli_busy=row.get("cli_busy") or "")
            if r["status"] != "ok":
                r["errors"].append("run status: " + r["status"])
            if not r["requests"] and r["rps"] is not None:
                r["errors"].append("no request completed in the run")
            mism = check_negotiated(r)
            if mism:
                r["invalid"] = r.get("invalid", []) + ["negotiated " + ", ".join(mism)]
            cpu_us = int(row["ticks"]) * 1e6 / hz
            ocpu_us = int(row["origin_ticks"]) * 1e6 / hz
            r["cpu"] = cpu_us / r["requests"] if r["requests"] else None
            r["ocpu"] = ocpu_us / r["requests"] if r["requests"] else None
            runs.append(r)

    # origin-normalised CPU: against the direct-origin run of the same round
    direct = {(r["tool"], r["body"], r["round"]): r["cpu"]
              for r in runs if r["target"] == "origin"}
    for r in runs:
        ref = direct.get((r["tool"], r["body"], r["round"]))
        r["norm"] = r["cpu"] / ref if r["cpu"] is not None and ref else None

    problems = []   # what makes the run invalid
    for r in runs:
        for e in r["errors"]:
            problems.append("%s %s round %d %s: %s" % (r["tool"], r["body"], r["round"],
                                                      r["target"], e))
        for e in r.get("invalid", []):
            problems.append("%s %s round %d %s: INVALID: %s" % (r["tool"], r["body"], r["round"],
                                                               r["target"], e))

    # the TLS settings a client restricted like wrk gets from each server
    checks = []
    if tls_check_tsv and os.path.exists(tls_check_tsv):
        with open(tls_check_tsv) as f:
            checks = list(csv.DictReader(f, delimiter="\t"))
    for c in checks:
        got = c["negotiated"].split()
        want = [TLS13["protocol"], TLS13["cipher"], TLS13["group"],
                "h2" if "h2" in c["client"] else "-"]
        if [g.lower() for g in got] != [w.lower() for w in want]:
            problems.append("%s: openssl s_client, %s: INVALID: negotiated %r, not %r" % (
                c["target"], c["client"], c["negotiated"], " ".join(want)))
    if failures_tsv and os.path.exists(failures_tsv):
        with open(failures_tsv) as f:
            for line in f:
                t, reason = line.rstrip("\n").split("\t", 1)
                problems.append("%s: %s" % (t, reason))

    if problems:
        print("verdict: INVALID: %d problem(s), listed under problems: below" % len(problems))
    elif runs:
        print("verdict: valid: every response 2xx, no failed request, every connection "
              "negotiated what its phase claims")
    print()

    tools = sorted({r["tool"] for r in runs}, key=TOOL_ORDER.index)
    for tool in tools:
        for body in ("small", "16k"):
            sel = [r for r in runs if r["tool"] == tool and r["body"] == body]
            if not sel:
                continue
            rounds = len({r["round"] for r in sel})
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
                    "srv": med([float(r["srv_busy"]) for r in rs if r["srv_busy"]]),
                    "cli": med([float(r["cli_busy"]) for r in rs if r["cli_busy"]]),
                    "bad": sum(r.get("bad", 0) for r in rs),
                }
            ng = agg.get("nginx", {})
            rows = []
            for t in TARGETS:
                a = agg.get(t)
                if a is None:
                    continue
                rps_ratio = a["rps"] / ng["rps"] if a["rps"] and ng.get("rps") else None
                cpu_ratio = (a["cpu"] / ng["cpu"]
                             if t != "origin" and a["cpu"] and ng.get("cpu") else None)
                rows.append([
                    t if a["n"] == rounds else "%s (%d runs)" % (t, a["n"]),
                    fmt(a["rps"], ",.0f"), fmt_lat(a["p50"]), fmt_lat(a["p99"]),
                    fmt(a["cpu"], ".2f"), fmt(a["norm"], ".2f"),
                    fmt(rps_ratio, ".2f"), fmt(cpu_ratio, ".2f"),
                    fmt(a["srv"], ".0f"), fmt(a["cli"], ".0f"), str(a["bad"]),
                ])
            rate = "conn/s" if tool == "handshake" else "req/s"
            title = "%s, %s" % (TOOL[tool], BODY[body])
            if tool == "handshake":
                title = TOOL[tool]
            print("%s: median of %d rounds" % (title, rounds))
            neg = [r.get("negotiated") for r in sel if r.get("negotiated")]
            if neg:
                n0 = neg[0]
                print("negotiated: %s" % ", ".join("%s %s" % (k, n0[k]) for k in
                                                  ("protocol", "cipher", "group", "alpn") if k in n0))
            print(table(rows, ["target", rate, "p50", "p99", "CPU us/req", "CPU/origin",
                               rate + "/nginx", "CPU/nginx", "srv%", "cli%", "errors"]))
            bound = [t for t in agg if agg[t]["cli"] is not None and agg[t]["srv"] is not None
                     and agg[t]["cli"] >= 95 and agg[t]["srv"] < 90]
            if bound:
                print("client-bound: %s: the client's CPU >= 95 %% busy, the server's < 90 %%: "
                      "their %s measure the load tool; compare CPU us/req" % (", ".join(bound), rate))
            print(paired_line(sel))
            if any(r["target"] == "edgeproxy_base" for r in sel):
                # EDGEPROXY_BASE_BIN: the same ratios for the baseline binary,
                # and the change itself
                print(paired_line(sel, "edgeproxy_base"))
                print(paired_line(sel, "edgeproxy", ("edgeproxy_base",)))
            print()

    if runs:
        legend()
    goals(runs)
    if checks:
        print("TLS negotiated by openssl s_client restricted like wrk (conf/openssl-tls13.cnf):")
        for c in checks:
            print("  %-15s %-17s %s" % (c["target"], c["client"], c["negotiated"]))
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

    print("problems:" if problems else "problems: none (every response 2xx, no socket errors)")
    for p in problems:
        print("  " + p)
    if problems:
        print("verdict: INVALID (%d problem(s) above)" % len(problems))

    print()
    print("per run: tool body round target req/s p50 p99 CPUus/req origin-CPUus/req(same run) "
          "srv% cli% errors")
    for r in runs:
        print("  %-9s %-5s %d %-14s %9s %8s %8s %7s %7s %3s %3s %s" % (
            r["tool"], r["body"], r["round"], r["target"], fmt(r["rps"], ".0f"),
            fmt_lat(r["p50"]), fmt_lat(r["p99"]), fmt(r["cpu"], ".2f"),
            fmt(r["ocpu"], ".2f"), r["srv_busy"], r["cli_busy"], r.get("bad", 0)))


if __name__ == "__main__":
    main()
