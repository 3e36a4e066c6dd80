"""Calibrate ``clockwork sim``'s noise on this machine's real executions, then check that the
simulator predicts the real server (issue "Predictable on real hardware").

usage: python bench/calibrate_sim.py --repository DIR [--rates 20,40,60] [--duration 20]
           [--warmup-s 3] [--slo-ms 100] [--seed 1] [--repeats 1] [--encoding json|binary]
           [--out bench/results/calibrate-sim]

1. Serves the repository with ``clockwork serve --log-dir`` (a fresh server per rate and
   repeat) and drives it with ``clockwork bench --url`` (``--encoding``'s tensors, Poisson over
   every model) at each rate, after ``--warmup-s`` at that rate that is not counted; repeat
   ``i`` uses seed ``--seed + i``. A repository in either layout (``config.json`` or Triton's
   ``config.pbtxt``). During each measured run it reads the CPU time of every thread of the
   server's process tree and of the client (``host_cpu.py``), and the door's refusals.
2. Fits the noise from the server's action log, every run's executions pooled
   (``clockwork.sim.calibration.fit_noise``: per batch size the median time the device was held
   is the nominal duration, with a log-normal spread and stragglers around it), and writes a
   calibrated profile (nominal = median).
3. Fits what the serving host costs (``clockwork.sim.host``; ``calibration.fit_host``: least
   squares of each thread's CPU time over the runs) and the worker's turnaround between
   Infers (``calibration.fit_turnaround``: the median gap before an Infer that waited for the
   one before it; ``fit_turnaround_quantiles``: all of them, which the simulator draws each
   turnaround from), and writes it as ``host.json`` (``clockwork sim --host``).
4. Runs ``clockwork sim --as-served`` (the policy as ``serve`` configures it) with the fitted
   profile and noise, one simulated device, the same models, rates, SLO, duration and seeds, its
   own warm-up's arrivals run first and not counted, without and with the host, and prints real
   (as the client saw it) against simulated attainment, medians over the repeats.

Writes ``calibration.json``, ``calibration.md`` and ``host.json`` into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq

from clockwork.models.repository import ModelRepository
from clockwork.sim.calibration import (
    HostSample,
    fit_drift,
    fit_host,
    fit_noise,
    fit_turnaround,
    fit_turnaround_quantiles,
)
from host_cpu import CpuSplit, snapshot, split
from real_server import CLOCKWORK, ROOT, bench_command, run_bench, serving


@dataclass(frozen=True)
class RealRun:
    rate: float
    seed: int
    client: float  # attainment as the client saw it
    requests: int
    actions: list[dict[str, object]]  # the server's action log, warm-up included
    wall_s: float  # the measured run's length
    cpu: CpuSplit  # the server's tree during it
    client_cpu_s: float
    door_refusals: int


def _door_refusals(url: str) -> int:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return round(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("clockwork_door_refusals_total")
        )
    )


def _serve_and_measure(args: argparse.Namespace, models: list[str], out: Path) -> list[RealRun]:
    """Per rate and repeat, on a fresh server (as the simulator starts afresh): the client's
    attainment, its requests, the server's action log and what the host spent."""
    runs: list[RealRun] = []
    for repeat in range(args.repeats):
        seed = args.seed + repeat
        for rate in args.rates:
            name = f"r{rate:g}-s{seed}"
            logs = out / "server-logs" / name
            run = out / f"real-{name}"
            print(
                f"real server: {rate:g} requests/s, seed {seed}, {args.warmup_s:g} s of warm-up, "
                f"then {args.duration:g} s",
                file=sys.stderr,
                flush=True,
            )
            with serving(
                args.repository,
                out / f"server-{name}.log",
                ("--status-interval", "0", "--log-dir", str(logs)),
            ) as (server, url):
                common = {"rate_rps": rate, "slo_ms": args.slo_ms, "encoding": args.encoding}
                if args.warmup_s > 0:
                    run_bench(
                        bench_command(url, models, duration_s=args.warmup_s, seed=99, **common)
                    )
                refused0, before, client0 = _door_refusals(url), snapshot(server.pid), os.times()
                t0 = time.monotonic()
                # the warm-up's executions are logged too: they are this rate's as much
                run_bench(
                    bench_command(
                        url, models, duration_s=args.duration, seed=seed, out=run, **common
                    )
                )
                wall_s = time.monotonic() - t0
                cpu = split(server.pid, before, snapshot(server.pid))
                client1 = os.times()
                refused = _door_refusals(url) - refused0
            s = json.loads((run / "summary.json").read_text())
            actions = _action_log(logs)
            client_s = (client1.children_user - client0.children_user) + (
                client1.children_system - client0.children_system
            )
            runs.append(
                RealRun(
                    rate, seed, s["slo_attainment"], s["requests"], actions, wall_s, cpu,
                    client_s, refused,
                )
            )  # fmt: skip
    return runs


def _action_log(logs: Path) -> list[dict[str, object]]:
    """The rows of the action log a ``serve --log-dir`` wrote into ``logs``."""
    return [r for f in sorted(logs.glob("actions-*.parquet")) for r in pq.read_table(f).to_pylist()]


def _earlier_runs(out: Path) -> list[RealRun]:
    """The real runs of an earlier ``--out``: what its calibration.json says of each, and its
    server's action log."""
    earlier = json.loads((out / "calibration.json").read_text())
    runs = []
    for row in earlier["rows"]:
        rate = float(row["rate"])
        for i, seed in enumerate(earlier["seeds"]):
            logs = out / "server-logs" / f"r{rate:g}-s{seed}"
            actions = _action_log(logs)
            cpu = row["cpu"][i]
            runs.append(
                RealRun(
                    rate, seed, row["real_client"][i], row["requests"][i], actions,
                    cpu["wall_s"], CpuSplit(cpu["loop_s"], cpu["executor_s"], cpu["other_s"]),
                    cpu["client_s"], row["door_refusals"][i],
                )
            )  # fmt: skip
    return runs


def _simulate(
    args: argparse.Namespace,
    models: list[str],
    cal_path: Path,
    fit: dict[str, object],
    rate: float,
    seed: int,
    host: Path | None = None,
) -> float:
    """The simulated attainment at ``rate``: the policy as served, the warm-up's arrivals run
    first and not counted, as the real side's; with the serving host of ``host`` if given."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                *CLOCKWORK, "sim", "--as-served", "--workload", "poisson",
                "--models", str(len(models)), "--gpus", "1", "--profile", str(cal_path),
                "--cache-pages", str(args.cache_pages), "--rate", f"{rate:g}",
                "--duration", f"{args.warmup_s + args.duration:g}",
                "--slo-ms", f"{args.slo_ms:g}", "--seed", str(seed),
                "--noise", "lognormal+straggler", "--noise-sigma", f"{fit['sigma']:.4f}",
                "--straggler-prob", f"{fit['straggler_prob']:.4f}",
                "--straggler-factor", f"{max(1.0, float(fit['straggler_factor'])):.3f}",
                "--noise-drift-sigma", f"{fit.get('drift_sigma', 0.0):.4f}",
                "--noise-drift-tau-ms", f"{fit.get('drift_tau_ns', 1e9) / 1e6:.1f}",
                *(["--host", str(host)] if host is not None else []),
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
        "--repeats", type=int, default=1, help="runs per rate (seeds --seed, --seed + 1, ...)"
    )
    p.add_argument(
        "--encoding", choices=("json", "binary"), default="json", help="the client's tensors"
    )
    p.add_argument(
        "--cache-pages",
        type=int,
        default=64,
        help="the simulated device's weights cache (the torch CPU worker's default)",
    )
    p.add_argument(
        "--no-drift", action="store_true", help="fit and simulate no drift of the speed in time"
    )
    p.add_argument(
        "--no-turnaround",
        action="store_true",
        help="simulate the host without the worker's turnaround between Infers (to compare)",
    )
    p.add_argument(
        "--reuse",
        type=Path,
        default=None,
        metavar="DIR",
        help="serve nothing: fit and simulate the real runs an earlier --out DIR holds "
        "(its calibration.json and server-logs/)",
    )
    p.add_argument("--out", type=Path, default=Path("bench/results/calibrate-sim"))
    args = p.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    args.out = args.out.resolve()  # the benches run from the repository's root
    args.out.mkdir(parents=True, exist_ok=True)
    models = sorted(ModelRepository(args.repository).model_dirs())
    if args.reuse is None:
        real = _serve_and_measure(args, models, args.out)
    else:
        real = _earlier_runs(args.reuse)
        earlier = json.loads((args.reuse / "calibration.json").read_text())
        # simulated as they were served
        args.rates = sorted({r.rate for r in real})
        args.duration, args.warmup_s = earlier["duration_s"], earlier["warmup_s"]
        args.slo_ms, args.encoding = earlier["slo_ms"], earlier.get("encoding", "json")
    fit = fit_noise([a for r in real for a in r.actions])
    if not args.no_drift:
        fit = fit_drift([r.actions for r in real], fit)
    profile = json.loads((args.repository / models[0] / "profile-cpu.json").read_text())
    cal_path = args.out / "profile-cpu-calibrated.json"
    cal_path.write_text(json.dumps(calibrated_profile(profile, fit), indent=1))
    host = fit_host(
        [
            HostSample(
                r.wall_s, r.requests, r.door_refusals, r.cpu.loop_s, r.cpu.other_s, r.client_cpu_s
            )
            for r in real
        ],
        os.cpu_count() or 1,
    )
    host["worker_turnaround_ns"] = (
        0 if args.no_turnaround else fit_turnaround([r.actions for r in real])
    )
    if not args.no_turnaround:
        host["worker_turnaround_quantiles_ns"] = fit_turnaround_quantiles([r.actions for r in real])
    host_path = args.out / "host.json"
    host_path.write_text(json.dumps(host, indent=1))
    rows = []
    for rate in args.rates:
        runs = [r for r in real if r.rate == rate]
        sims = [_simulate(args, models, cal_path, fit, rate, r.seed) for r in runs]
        hosted = [_simulate(args, models, cal_path, fit, rate, r.seed, host_path) for r in runs]
        rows.append(
            {
                "rate": rate,
                "real_client": [r.client for r in runs],
                "sim": sims,
                "sim_host": hosted,
                "requests": [r.requests for r in runs],
                "door_refusals": [r.door_refusals for r in runs],
                "cpu": [
                    {**asdict(r.cpu), "client_s": r.client_cpu_s, "wall_s": r.wall_s} for r in runs
                ],
            }
        )
    result = {
        "fit": fit,
        "host": host,
        "rows": rows,
        "repository": str(args.repository),
        "models": len(models),
        "slo_ms": args.slo_ms,
        "duration_s": args.duration,
        "warmup_s": args.warmup_s,
        "seeds": sorted({r.seed for r in real}),
        "encoding": args.encoding,
    }
    (args.out / "calibration.json").write_text(json.dumps(result, indent=1))
    table = _table(result)
    print(table)
    (args.out / "calibration.md").write_text(table + "\n")


def _table(result: dict[str, object]) -> str:
    fit, host = result["fit"], result["host"]
    med = statistics.median
    lines = [
        f"noise fitted on {sum(fit['runs'].values()):,} real executions "
        f"(batch sizes {fit['runs']}): sigma {fit['sigma']:.3f}, stragglers "
        f"{fit['straggler_prob']:.2%} x{fit['straggler_factor']:.2f}, drift sigma "
        f"{fit.get('drift_sigma', 0.0):.3f} over {fit.get('drift_tau_ns', 0) / 1e9:.2f} s; "
        "medians of the device's "
        "time (ms) " + ", ".join(f"{b}: {v / 1e6:.2f}" for b, v in fit["medians_ns"].items()),
        f"host fitted: take {host['take_ns'] / 1e3:.0f} us, answer {host['answer_ns'] / 1e3:.0f} "
        f"us, refuse {host['refuse_ns'] / 1e3:.0f} us a request on the loop; client "
        f"{(host['client_send_ns'] + host['client_read_ns']) / 1e3:.0f} us a request; "
        f"{host['background_cores']:.2f} cores in other threads, {host['cores']:g} cores",
        "",
        "| rate (req/s) | real (client), each run | real, median | simulated, median | "
        "difference (points) | simulated with the host, median | difference (points) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        real = med(r["real_client"])
        sim, hosted = med(r["sim"]), med(r["sim_host"])
        lines.append(
            f"| {r['rate']:g} | {', '.join(f'{x:.2%}' for x in r['real_client'])} | "
            f"{real:.2%} | {sim:.2%} | {100 * (sim - real):+.2f} | {hosted:.2%} | "
            f"{100 * (hosted - real):+.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
