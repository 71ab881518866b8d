#!/usr/bin/env python3
"""Chart of the room benchmark: CPU-µs per forwarded packet and loss versus
the number of viewers, one line per server, from the bench's JSON lines.

    python3 scripts/bench-chart.py OUT.png RESULTS.jsonl [MORE.jsonl ...]

Steady-state runs only (not the join storm); several runs at one N are
reduced to their median. The SRTP-send floor, when present, is drawn as a
horizontal line. Also prints the medians as a Markdown table, with each
server's ratio to Staffroom's (ratios of the medians of one invocation).
"""
import json
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(out, paths):
    runs = defaultdict(lambda: defaultdict(list))
    floor = None
    for path in paths:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                if r["server"] == "floor":
                    if r.get("profile", "AES-128-CM-HMAC-SHA1-80") == "AEAD-AES-128-GCM":
                        floor = r["send_to_us_per_packet"]
                elif r.get("mode", "steady") == "steady":
                    runs[r["server"]][r["viewers"]].append(r)
    print_medians(runs, floor)
    fig, (cpu, loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server, by_n in sorted(runs.items()):
        ns = sorted(by_n)
        cpu.plot(ns, [statistics.median(x["cpu_us_per_packet"] for x in by_n[n]) for n in ns], "o-", label=server)
        loss.plot(ns, [statistics.median(x["loss_pct"] for x in by_n[n]) for n in ns], "o-", label=server)
    if floor is not None:
        cpu.axhline(floor, color="grey", linestyle="--", label=f"SRTP (GCM) + send floor ({floor:.1f} µs)")
        cpu.axhline(2 * floor, color="grey", linestyle=":", label="target: 2 × floor")
    loss.axhline(0.5, color="grey", linestyle=":", label="target: 0.5 %")
    cpu.set(xlabel="viewers (N)", ylabel="server CPU-µs per forwarded packet", title="Cost per forwarded packet")
    loss.set(xlabel="viewers (N)", ylabel="loss (%)", title="Loss over the steady window")
    # A collapsed server's cost per packet is thousands of µs: log scale.
    cpu.set_yscale("log")
    loss.set_ylim(bottom=0)
    for ax in (cpu, loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("One presenter (720p-like VP8 + Opus), N viewers, loopback")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def print_medians(runs, floor):
    def med(rs, key):
        return statistics.median(key(r) for r in rs)

    print("| N | server | runs | CPU µs/pkt | × floor | loss | key p95 ms | KiB/viewer | clients µs/pkt | Staffroom ÷ it: CPU | memory |")
    print("|---|--------|------|------------|---------|------|------------|------------|----------------|---------------------|--------|")
    ns = sorted({n for by_n in runs.values() for n in by_n})
    order = sorted(runs, key=lambda s: (s != "staffroom", s))
    for n in ns:
        ours = runs.get("staffroom", {}).get(n)
        for server in order:
            rs = runs[server].get(n)
            if not rs:
                continue
            cpu = med(rs, lambda r: r["cpu_us_per_packet"])
            kib = med(rs, lambda r: r["kib_per_viewer"])
            ratio = ["-", "-"]
            if ours and server != "staffroom":
                ratio = [
                    f"{med(ours, lambda r: r['cpu_us_per_packet']) / cpu:.2f}×",
                    f"{med(ours, lambda r: r['kib_per_viewer']) / kib:.2f}×",
                ]
            print(
                f"| {n} | {server} | {len(rs)} | {cpu:.2f} | {f'{cpu / floor:.1f}×' if floor else '-'} "
                f"| {med(rs, lambda r: r['loss_pct']):.2f} % | {med(rs, lambda r: r['join_to_first_keyframe_ms']['p95']):.0f} "
                f"| {kib:.0f} | {med(rs, lambda r: r.get('clients_cpu_us_per_packet', float('nan'))):.2f} | {ratio[0]} | {ratio[1]} |"
            )


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
