#!/usr/bin/env python3
"""The report of bench/egress.sh, from its measurements (a TSV of test,
round, target, metric, value): medians over the rounds per target, and
edgeproxy's ratios to the best peer (HAProxy or nginx, whichever is better
on that column).

    egress_report.py EGRESS_TSV
"""
import csv
import statistics
import sys

PEERS = ("haproxy", "nginx")
TARGETS = ("direct", "edgeproxy", "haproxy", "nginx")


def load(path):
    rows = {}
    problems = []
    with open(path) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            if r["metric"] in ("error", "reason"):
                problems.append("%s %s round %s: %s" % (r["test"], r["target"], r["round"],
                                                        r["value"]))
                continue
            if r["metric"] == "result":
                continue
            rows.setdefault((r["test"], r["target"], r["metric"]), []).append(float(r["value"]))
    return rows, problems


def med(rows, test, target, metric):
    v = rows.get((test, target, metric))
    return statistics.median(v) if v else None


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def ratio(rows, test, metric, higher_better):
    """edgeproxy / the best peer on this metric, and which peer that is."""
    ep = med(rows, test, "edgeproxy", metric)
    peers = [(med(rows, test, p, metric), p) for p in PEERS]
    peers = [(v, p) for v, p in peers if v is not None]
    if ep is None or not peers:
        return None, None
    best = max(peers) if higher_better else min(peers)
    if best[0] == 0:
        return None, best[1]
    return ep / best[0], best[1]


def table(title, head, lines):
    print(title)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    for line in [head] + lines:
        print("  " + "  ".join(str(x).rjust(w) if i else str(x).ljust(w)
                               for i, (x, w) in enumerate(zip(line, widths))))


def ratio_line(rows, specs):
    out = []
    for label, test, metric, higher in specs:
        r, peer = ratio(rows, test, metric, higher)
        if r is not None:
            out.append("%s %.2fx %s" % (label, r, peer))
    if out:
        print("  edgeproxy / best peer: " + ", ".join(out))
    print()


def main():
    rows, problems = load(sys.argv[1])
    table("TLS splice throughput (one download, median of the rounds; CPU: the proxy's "
          "utime+stime per GiB moved)",
          ["target", "MiB/s", "CPU s/GiB"],
          [[t, fmt(med(rows, "throughput", t, "mib_s"), ".0f"),
            fmt(med(rows, "throughput", t, "cpu_s_gib"), ".3f") if t != "direct" else "-"]
           for t in TARGETS])
    ratio_line(rows, [("MiB/s", "throughput", "mib_s", True),
                      ("CPU/GiB", "throughput", "cpu_s_gib", False)])

    table("New connections (short TLS connections through the splice, full handshakes, "
          "Connection: close)",
          ["target", "conn/s", "CPU us/conn"],
          [[t, fmt(med(rows, "newconns", t, "conn_s"), ".0f"),
            fmt(med(rows, "newconns", t, "cpu_us_conn"), ".1f") if t != "direct" else "-"]
           for t in TARGETS])
    ratio_line(rows, [("conn/s", "newconns", "conn_s", True),
                      ("CPU/conn", "newconns", "cpu_us_conn", False)])

    lines = []
    for t in TARGETS:
        hit, miss = med(rows, "ttfb", t, "hit_ms"), med(rows, "ttfb", t, "miss_ms")
        lines.append([t, fmt(hit, ".2f"), fmt(miss, ".2f"),
                      fmt(miss - hit if hit is not None and miss is not None else None, ".2f")])
    table("Time to first byte, ms (median; hit: the name in the proxy's resolver cache, "
          "miss: a name never asked)", ["target", "hit", "miss", "miss-hit"], lines)
    ratio_line(rows, [("hit", "ttfb", "hit_ms", False), ("miss", "ttfb", "miss_ms", False)])

    table("Memory, KiB of RSS per connection (growth with the connections open / their count)",
          ["target", "idle (spliced)", "silent (peeking)"],
          [[t, fmt(med(rows, "mem_idle", t, "kib_conn"), ".2f"),
            fmt(med(rows, "mem_silent", t, "kib_conn"), ".2f")] for t in TARGETS[1:]])
    ratio_line(rows, [("idle", "mem_idle", "kib_conn", False),
                      ("silent", "mem_silent", "kib_conn", False)])

    if problems:
        print("problems:")
        for p in problems:
            print("  " + p)


if __name__ == "__main__":
    main()
