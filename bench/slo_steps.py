"""Clockwork against the reactive baseline at fixed SLOs from 1x to 100x a model's batch-1 time,
in the simulator (issue "Predictable on real hardware": at least as good as reactive at every
step). Every step starts with every model cold, so the tight steps also test that a request
refused for its model's load time still gets the model loaded.

usage: python bench/slo_steps.py [--multiples 1,1.5,2,...] [--gpus 6] [--models 60]
           [--rate 1000] [--duration 30] [--seed 1] [--out bench/results/slo-steps]

Writes ``steps.json`` (one row per step and policy), ``steps.md`` (the table) and ``steps.png``
(attainment against the SLO multiple) into --out, and prints the table. Workload: Poisson,
synthetic (no trace), uniform over the models; noise log-normal 0.01 + stragglers (the sweep's).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

POLICIES = ("clockwork", "reactive")
DEFAULT_MULTIPLES = "1,1.25,1.5,2,3,5,10,20,50,100"


def run_step(slo_ms: float, args: argparse.Namespace, out: Path) -> dict[str, dict[str, float]]:
    command = [
        sys.executable,
        "-m",
        "clockwork.cli.main",
        "sim",
        "--workload",
        "poisson",
        "--models",
        str(args.models),
        "--gpus",
        str(args.gpus),
        "--rate",
        str(args.rate),
        "--duration",
        str(args.duration),
        "--slo-ms",
        f"{slo_ms:.4f}",
        "--seed",
        str(args.seed),
        "--noise",
        "lognormal+straggler",
        "--compare",
        ",".join(POLICIES),
        "--out",
        str(out),
        "--no-plots",
        "--quiet",
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    rows = {}
    for policy in POLICIES:
        s = json.loads((out / policy / "summary.json").read_text())
        rows[policy] = {
            "attainment": s["slo_attainment"],
            "goodput_rps": s["goodput_rps"],
            "late": s["late"],
            "refused": sum(s["refused"].values()),
            "cold_starts": s["cold_starts"],
            "requests": s["requests"],
        }
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--multiples", default=DEFAULT_MULTIPLES)
    p.add_argument("--gpus", type=int, default=6)
    p.add_argument("--models", type=int, default=60)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--batch1-ms",
        type=float,
        default=2.9,
        help="the model's batch-1 time (ResNet50 v2 on the V100 profile)",
    )
    p.add_argument("--out", type=Path, default=Path("bench/results/slo-steps"))
    args = p.parse_args()
    multiples = [float(m) for m in args.multiples.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, k in enumerate(multiples):
            slo = k * args.batch1_ms
            print(
                f"[{i + 1}/{len(multiples)}] SLO {slo:.2f} ms ({k:g}x batch 1)",
                file=sys.stderr,
                flush=True,
            )
            rows = run_step(slo, args, Path(tmp) / f"step{i}")
            results.append({"multiple": k, "slo_ms": slo, **rows})
    lines = [
        f"Poisson (synthetic), {args.models} models, {args.gpus} simulated V100s, "
        f"{args.rate:g} requests/s, {args.duration:g} s per step, seed {args.seed}, "
        "every model cold at the start of each step",
        "",
        "| SLO (x batch 1) | SLO ms | clockwork | reactive | clockwork refused | "
        "reactive late | clockwork cold starts |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        c, x = r["clockwork"], r["reactive"]
        lines.append(
            f"| {r['multiple']:g} | {r['slo_ms']:.2f} | {c['attainment']:.4%} | "
            f"{x['attainment']:.4%} | {c['refused']:,} | {x['late']:,} | "
            f"{c['cold_starts']:,} |"
        )
    table = "\n".join(lines)
    print(table)
    (args.out / "steps.md").write_text(table + "\n")
    (args.out / "steps.json").write_text(
        json.dumps(
            {"config": {k: str(v) for k, v in vars(args).items()}, "steps": results}, indent=1
        )
    )
    _plot(results, args.out / "steps.png")


def _plot(results: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = [float(r["multiple"]) for r in results]  # type: ignore[arg-type]
    for policy in POLICIES:
        ys = [100 * r[policy]["attainment"] for r in results]  # type: ignore[index]
        ax.plot(xs, ys, marker="o", label=policy)
    ax.set_xscale("log")
    ax.set_xlabel("SLO (multiple of the batch-1 time)")
    ax.set_ylabel("SLO attainment (%)")
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
