#!/usr/bin/env python3
"""Chart of the room benchmark: CPU-µs per forwarded packet and loss versus
the number of viewers, one line per server, from the bench's JSON lines.

    python3 scripts/bench-chart.py OUT.png RESULTS.jsonl [MORE.jsonl ...]

Steady-state runs only (not the join storm); several runs at one N are
reduced to their median. The SRTP-send floor, when present, is drawn as a
horizontal line.
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
    cpu.set_ylim(bottom=0)
    loss.set_ylim(bottom=0)
    for ax in (cpu, loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("One presenter (720p-like VP8 + Opus), N viewers, loopback")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
