"""Do queues or memory grow over a run? Reads the periodic samples in summary.json files.

For each run: accepted-and-unanswered requests and resident memory, averaged over the first and
the second half of the arrival period, and their maxima.

usage: python bench/queue_growth.py DIR [DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from statistics import mean


def main() -> None:
    print(
        "| run | pending, 1st half mean | pending, 2nd half mean | pending max | "
        "RSS MB, 1st half mean | RSS MB, 2nd half mean | RSS MB max |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for path in sorted(p for d in sys.argv[1:] for p in Path(d).glob("**/summary.json")):
        s = json.loads(path.read_text())
        samples = s["extra"]["samples"]
        end = s["duration_s"]
        rows = [
            (t, n, m)
            for t, n, m in zip(samples["t_s"], samples["pending"], samples["rss_mb"], strict=True)
            if t <= end
        ]
        half = len(rows) // 2
        if half == 0:
            continue
        first, second = rows[:half], rows[half:]
        print(
            f"| {path.parent.name} | {mean(n for _, n, _ in first):,.0f} | "
            f"{mean(n for _, n, _ in second):,.0f} | {max(n for _, n, _ in rows):,} | "
            f"{mean(m for _, _, m in first):,.0f} | {mean(m for _, _, m in second):,.0f} | "
            f"{max(m for _, _, m in rows):,.0f} |"
        )


if __name__ == "__main__":
    main()
