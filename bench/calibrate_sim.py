"""Calibrate ``clockwork sim``'s noise on this machine's real executions, then check that the
simulator predicts the real server (issue "Predictable on real hardware").

usage: python bench/calibrate_sim.py --repository DIR [--rates 20,40,60] [--duration 20]
           [--warmup-s 3] [--slo-ms 100] [--seed 1] [--encoding json|binary]
           [--out bench/results/calibrate-sim]

1. Serves the repository with ``clockwork serve --log-dir`` (a fresh server per rate) and
   drives it with ``clockwork bench --url`` (``--encoding``'s tensors, Poisson over every
   model) at each rate, after ``--warmup-s`` at that rate that is not counted.
   A repository in either layout (``config.json`` or Triton's ``config.pbtxt``).
2. Fits the noise from the server's action log: per batch size the median measured execution is
   the nominal duration; ``sigma`` is the robust spread (1.4826 x MAD) of log(measured / median);
   runs above exp(3 sigma) x the median are stragglers (their share is ``straggler_prob``, their
   median ratio ``straggler_factor``). Writes a calibrated profile (nominal = median) beside it.
   Fitted twice: on every rate's executions pooled, and on each rate's server alone (the
   front door and the client share this host's cores with the executions, so a higher rate
   slows them; the simulator models no host CPU, so only a per-rate fit carries that).
3. Runs ``clockwork sim --as-served`` (the policy as ``serve`` configures it) with each fit's
   profile and noise, one simulated device, the same models, rates, SLO, duration and seed, its own
   warm-up's arrivals run first and not counted, and prints real (as the client saw it)
   against simulated attainment.

Writes ``calibration.json`` and ``calibration.md`` into --out.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from clockwork.models.repository import ModelRepository
from real_server import CLOCKWORK, ROOT, bench_command, run_bench, serving


@dataclass(frozen=True)
class RealRun:
    client: float  # attainment as the client saw it
    requests: int
    actions: list[dict[str, object]]  # the server's action log, warm-up included


def _serve_and_measure(
    args: argparse.Namespace, models: list[str], out: Path
) -> dict[float, RealRun]:
    """Per rate, on a fresh server (as the simulator starts afresh): the client's attainment,
    its requests, and the server's action log of the run."""
    real: dict[float, RealRun] = {}
    for rate in args.rates:
        logs = out / "server-logs" / f"r{rate:g}"
        run = out / f"real-r{rate:g}"
        print(
            f"real server: {rate:g} requests/s, {args.warmup_s:g} s of warm-up, then "
            f"{args.duration:g} s",
            file=sys.stderr,
            flush=True,
        )
        with serving(
            args.repository,
            out / f"server-r{rate:g}.log",
            ("--status-interval", "0", "--log-dir", str(logs)),
        ) as (_, url):
            common = {"rate_rps": rate, "slo_ms": args.slo_ms, "encoding": args.encoding}
            if args.warmup_s > 0:
                run_bench(bench_command(url, models, duration_s=args.warmup_s, seed=99, **common))
            # the warm-up's executions are logged too: they are this rate's as much
            run_bench(
                bench_command(
                    url, models, duration_s=args.duration, seed=args.seed, out=run, **common
                )
            )
        s = json.loads((run / "summary.json").read_text())
        actions = [
            r for f in sorted(logs.glob("actions-*.parquet")) for r in pq.read_table(f).to_pylist()
        ]
        real[rate] = RealRun(s["slo_attainment"], s["requests"], actions)
    return real


def _simulate(
    args: argparse.Namespace,
    models: list[str],
    cal_path: Path,
    fit: dict[str, object],
    rate: float,
) -> float:
    """The simulated attainment at ``rate``: the policy as served, the warm-up's arrivals run
    first and not counted, as the real side's."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                *CLOCKWORK, "sim", "--as-served", "--workload", "poisson",
                "--models", str(len(models)), "--gpus", "1", "--profile", str(cal_path),
                "--cache-pages", str(args.cache_pages), "--rate", f"{rate:g}",
                "--duration", f"{args.warmup_s + args.duration:g}",
                "--slo-ms", f"{args.slo_ms:g}", "--seed", str(args.seed),
                "--noise", "lognormal+straggler", "--noise-sigma", f"{fit['sigma']:.4f}",
                "--straggler-prob", f"{fit['straggler_prob']:.4f}",
                "--straggler-factor", f"{max(1.0, float(fit['straggler_factor'])):.3f}",
                "--out", tmp, "--no-plots", "--quiet",
            ],
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        t = pq.read_table(Path(tmp) / "requests.parquet", columns=["arrival_ns", "status"])
    measured_from_ns = round(args.warmup_s * 1e9)
    counted = [
        st
        for a, st in zip(
            t.column("arrival_ns").to_pylist(), t.column("status").to_pylist(), strict=True
        )
        if a >= measured_from_ns
    ]
    return sum(st == "SUCCESS" for st in counted) / len(counted) if counted else 0.0


def fit_noise(actions: list[dict[str, object]]) -> dict[str, object]:
    by_batch: dict[int, list[int]] = {}
    for a in actions:
        if a["kind"] == "Infer" and a["status"] == "SUCCESS" and int(a["actual_ns"]) > 0:
            by_batch.setdefault(int(a["batch_size"]), []).append(int(a["actual_ns"]))
    medians = {b: statistics.median(v) for b, v in by_batch.items()}
    logs = [math.log(x / medians[b]) for b, v in by_batch.items() for x in v]
    mad = statistics.median(abs(x) for x in logs)
    sigma = 1.4826 * mad
    cut = 3 * sigma
    high = [x for x in logs if x > cut]
    return {
        "medians_ns": {str(b): int(m) for b, m in sorted(medians.items())},
        "runs": {str(b): len(v) for b, v in sorted(by_batch.items())},
        "sigma": sigma,
        "straggler_prob": len(high) / len(logs) if logs else 0.0,
        "straggler_factor": math.exp(statistics.median(high)) if high else 1.0,
    }


def calibrated_profile(profile: dict[str, object], fit: dict[str, object]) -> dict[str, object]:
    """The profile with each measured batch size at its median; the others scaled by the
    measured sizes' median-to-profile ratio."""
    exec_ns = {str(k): int(v) for k, v in profile["exec_ns"].items()}
    medians: dict[str, int] = fit["medians_ns"]
    ratios = [medians[b] / exec_ns[b] for b in medians if b in exec_ns]
    scale = statistics.median(ratios) if ratios else 1.0
    out = dict(profile)
    out["exec_ns"] = {b: medians.get(b, int(t * scale)) for b, t in exec_ns.items()}
    out["measured"] = {
        **profile["measured"],
        "how": "calibrated by bench/calibrate_sim.py: medians of a real run",
    }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, required=True)
    p.add_argument("--rates", default="20,40,60")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument(
        "--warmup-s",
        type=float,
        default=3.0,
        help="before each rate's measured run, this long at the rate, not counted (real and "
        "simulated alike: the simulated server starts cold, as a real one warms at start)",
    )
    p.add_argument("--slo-ms", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--encoding", choices=("json", "binary"), default="json", help="the client's tensors"
    )
    p.add_argument(
        "--cache-pages",
        type=int,
        default=64,
        help="the simulated device's weights cache (the torch CPU worker's default)",
    )
    p.add_argument("--out", type=Path, default=Path("bench/results/calibrate-sim"))
    args = p.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    models = sorted(ModelRepository(args.repository).model_dirs())
    real = _serve_and_measure(args, models, args.out)
    actions = [a for rate in args.rates for a in real[rate].actions]
    fit = fit_noise(actions)
    profile = json.loads((args.repository / models[0] / "profile-cpu.json").read_text())
    pooled_path = args.out / "profile-cpu-calibrated.json"
    pooled_path.write_text(json.dumps(calibrated_profile(profile, fit), indent=1))
    rows = []
    for rate in args.rates:
        # the executions of this rate's measured run alone: on a host whose cores the front
        # door and the client share, a higher rate slows them (the pooled fit averages that out)
        own = fit_noise(real[rate].actions) if real[rate].actions else fit
        own_path = args.out / f"profile-cpu-calibrated-r{rate:g}.json"
        own_path.write_text(json.dumps(calibrated_profile(profile, own), indent=1))
        rows.append(
            {
                "rate": rate,
                "real_client": real[rate].client,
                "sim": _simulate(args, models, pooled_path, fit, rate),
                "sim_own_fit": _simulate(args, models, own_path, own, rate),
                "own_fit": own,
                "requests": real[rate].requests,
            }
        )
    result = {
        "fit": fit,
        "rows": rows,
        "repository": str(args.repository),
        "models": len(models),
        "slo_ms": args.slo_ms,
        "duration_s": args.duration,
        "warmup_s": args.warmup_s,
        "seed": args.seed,
    }
    (args.out / "calibration.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"noise fitted on {sum(fit['runs'].values()):,} real executions "
        f"(batch sizes {fit['runs']}): sigma {fit['sigma']:.3f}, stragglers "
        f"{fit['straggler_prob']:.2%} x{fit['straggler_factor']:.2f}; medians (ms) "
        + ", ".join(f"{b}: {v / 1e6:.2f}" for b, v in fit["medians_ns"].items()),
        "",
        "| rate (req/s) | real (client) | simulated, pooled fit | difference (points) | "
        "batch-1 median at this rate (ms) | simulated, this rate's fit | difference (points) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b1 = r["own_fit"]["medians_ns"].get("1")
        lines.append(
            f"| {r['rate']:g} | {r['real_client']:.2%} | {r['sim']:.2%} | "
            f"{100 * (r['sim'] - r['real_client']):+.2f} | "
            f"{'-' if b1 is None else f'{b1 / 1e6:.2f}'} | {r['sim_own_fit']:.2%} | "
            f"{100 * (r['sim_own_fit'] - r['real_client']):+.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    (args.out / "calibration.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
