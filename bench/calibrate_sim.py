"""Calibrate ``clockwork sim``'s noise on this machine's real executions, then check that the
simulator predicts the real server (issue "Predictable on real hardware").

usage: python bench/calibrate_sim.py --repository DIR [--rates 20,40,60] [--duration 20]
           [--slo-ms 100] [--seed 1] [--out bench/results/calibrate-sim]

1. Serves the repository with ``clockwork serve --log-dir`` and drives it with
   ``clockwork bench --url`` (JSON tensors, Poisson over every model) at each rate.
2. Fits the noise from the server's action log: per batch size the median measured execution is
   the nominal duration; ``sigma`` is the robust spread (1.4826 x MAD) of log(measured / median);
   runs above exp(3 sigma) x the median are stragglers (their share is ``straggler_prob``, their
   median ratio ``straggler_factor``). Writes a calibrated profile (nominal = median) beside it.
3. Runs ``clockwork sim`` with that profile and noise, one simulated device, the same models,
   rates, SLO, duration and seed, and prints real (as the client saw it, and as the server
   logged it) against simulated attainment.

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
from pathlib import Path

import pyarrow.parquet as pq

from real_server import CLOCKWORK, ROOT, serving


def _serve_and_measure(
    args: argparse.Namespace, models: list[str], out: Path
) -> dict[float, dict[str, float]]:
    logs = out / "server-logs"
    real: dict[float, dict[str, float]] = {}
    with serving(
        args.repository, out / "server.log", ("--status-interval", "0", "--log-dir", str(logs))
    ) as (_, url):
        for rate in args.rates:
            run = out / f"real-r{rate:g}"
            print(
                f"real server: {rate:g} requests/s for {args.duration:g} s",
                file=sys.stderr,
                flush=True,
            )
            subprocess.run(
                [
                    *CLOCKWORK,
                    "bench",
                    "--url",
                    url,
                    "--models",
                    ",".join(models),
                    "--json",
                    "--workload",
                    "poisson",
                    "--rate",
                    f"{rate:g}",
                    "--duration",
                    f"{args.duration:g}",
                    "--slo-ms",
                    f"{args.slo_ms:g}",
                    "--seed",
                    str(args.seed),
                    "--out",
                    str(run),
                    "--no-plots",
                    "--quiet",
                ],
                check=True,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            s = json.loads((run / "summary.json").read_text())
            real[rate] = {"client": s["slo_attainment"], "requests": s["requests"]}
    return real


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
    p.add_argument("--slo-ms", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=1)
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
    models = sorted(d.name for d in args.repository.iterdir() if (d / "config.json").is_file())
    real = _serve_and_measure(args, models, args.out)
    logs = args.out / "server-logs"
    actions = [
        r for f in sorted(logs.glob("actions-*.parquet")) for r in pq.read_table(f).to_pylist()
    ]
    requests = [
        r for f in sorted(logs.glob("requests-*.parquet")) for r in pq.read_table(f).to_pylist()
    ]
    fit = fit_noise(actions)
    profile = json.loads((args.repository / models[0] / "profile-cpu.json").read_text())
    cal = calibrated_profile(profile, fit)
    cal_path = args.out / "profile-cpu-calibrated.json"
    cal_path.write_text(json.dumps(cal, indent=1))
    server_ok = sum(r["status"] == "SUCCESS" for r in requests)
    rows = []
    for rate in args.rates:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [
                    *CLOCKWORK,
                    "sim",
                    "--workload",
                    "poisson",
                    "--models",
                    str(len(models)),
                    "--gpus",
                    "1",
                    "--profile",
                    str(cal_path),
                    "--cache-pages",
                    str(args.cache_pages),
                    "--rate",
                    f"{rate:g}",
                    "--duration",
                    f"{args.duration:g}",
                    "--slo-ms",
                    f"{args.slo_ms:g}",
                    "--seed",
                    str(args.seed),
                    "--noise",
                    "lognormal+straggler",
                    "--noise-sigma",
                    f"{fit['sigma']:.4f}",
                    "--straggler-prob",
                    f"{fit['straggler_prob']:.4f}",
                    "--straggler-factor",
                    f"{max(1.0, float(fit['straggler_factor'])):.3f}",
                    "--out",
                    tmp,
                    "--no-plots",
                    "--quiet",
                ],
                check=True,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            sim = json.loads((Path(tmp) / "summary.json").read_text())["slo_attainment"]
        rows.append(
            {
                "rate": rate,
                "real_client": real[rate]["client"],
                "sim": sim,
                "requests": real[rate]["requests"],
            }
        )
    result = {
        "fit": fit,
        "rows": rows,
        "server_logged_attainment_all_rates": server_ok / len(requests) if requests else None,
        "repository": str(args.repository),
        "models": len(models),
        "slo_ms": args.slo_ms,
        "duration_s": args.duration,
        "seed": args.seed,
    }
    (args.out / "calibration.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"noise fitted on {sum(fit['runs'].values()):,} real executions "
        f"(batch sizes {fit['runs']}): sigma {fit['sigma']:.3f}, stragglers "
        f"{fit['straggler_prob']:.2%} x{fit['straggler_factor']:.2f}; medians (ms) "
        + ", ".join(f"{b}: {v / 1e6:.2f}" for b, v in fit["medians_ns"].items()),
        "",
        "| rate (req/s) | real (client) | simulated | difference (points) |",
        "|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['rate']:g} | {r['real_client']:.2%} | {r['sim']:.2%} | "
            f"{100 * (r['sim'] - r['real_client']):+.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    (args.out / "calibration.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
