"""Markdown table of the summary.json files under one or more run directories.

usage: python bench/runs_table.py DIR [DIR ...]

p99 and max: successful requests; delivered: successful and late ones (a late answer's latency).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"


def row(path: Path) -> str:
    s = json.loads(path.read_text())
    w = s["workload"]
    # summaries written before stop 11 have only "latency_ms", and it covered late answers too
    if "delivered_latency_ms" in s:
        lat, delivered = s["latency_ms"], s["delivered_latency_ms"]
    else:
        lat, delivered = {}, s["latency_ms"]
    refused = sum(v for v in s["refused"].values())
    pe = s["prediction_error"]["Infer"].get("p99")
    return (
        f"| {w.get('load_factor', '-')} | {s['policy']} | {s['requests']:,} | "
        f"{s['offered_rps']:,.0f} | {s['goodput_rps']:,.0f} | "
        f"{s['goodput_rps'] / s['ideal_capacity_rps']:.1%} | {s['slo_attainment_pct_str']} | "
        f"{s['late']:,} | {refused:,} | {_ms(lat.get('p99'))} | {_ms(lat.get('max'))} | "
        f"{_ms(delivered.get('p99'))} | {_ms(delivered.get('max'))} | "
        f"{s['cold_starts']:,} | {s['device_utilisation']:.1%} | "
        f"{'-' if pe is None else f'{pe:+.3f}'} | {s['sim_requests_per_wall_s']:,.0f} |"
    )


def main() -> None:
    paths = sorted(p for d in sys.argv[1:] for p in Path(d).glob("**/summary.json"))
    print(
        "| load factor | policy | requests | offered rps | goodput rps | of ideal | "
        "SLO attainment | late | refused | p99 ms | max ms | delivered p99 ms | "
        "delivered max ms | cold starts | utilisation | Infer error p99 ms | sim req/wall-s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in paths:
        print(row(p))


if __name__ == "__main__":
    main()
