"""How fast the real server recovers from a fault (issue "Predictable on real hardware"): a paused
worker (SIGSTOP for ``--stall-s``), or an overload storm (a second client at ``--storm-factor``
times the rate for ``--storm-s``), in the middle of a steady Poisson load.

usage: python bench/recovery.py --repository DIR --fault stall|storm [--rate 40] [--slo-ms 100]
           [--duration 60] [--fault-at 20] [--out bench/results/recovery-stall]

Starts ``clockwork serve`` on the repository (a free port, no gRPC), drives it with
``clockwork bench --url`` (JSON tensors, Poisson over every model, timeout = SLO) from a separate
process, injects the fault at ``--fault-at`` seconds (the storm from when its requests arrive),
and reads the steady client's request log: attainment per second before, during and after the
fault; how long after the fault's end the first whole second is back within ``--tolerance`` of
the pre-fault attainment; and from when every later second stays there. The storm client's own
requests are not counted. Writes
``recovery.json``, ``recovery.md`` and ``recovery.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq

from real_server import ROOT, bench_command, serving


def _requests_seen(url: str) -> float:
    """The server's count of accepted requests (from its Prometheus metrics)."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("clockwork_requests_total")
    )


def _worker_pid(server_pid: int) -> int:
    out = subprocess.run(
        ["pgrep", "-P", str(server_pid)], capture_output=True, text=True, check=False
    )
    pids = [int(p) for p in out.stdout.split()]
    if not pids:
        raise SystemExit("no worker process under the server")
    return pids[0]


def _bench(
    url: str,
    models: list[str],
    rate: float,
    duration: float,
    slo_ms: float,
    seed: int,
    out: Path | None,
) -> list[str]:
    return bench_command(
        url,
        models,
        rate_rps=rate,
        duration_s=duration,
        slo_ms=slo_ms,
        seed=seed,
        out=out,
    )


def per_second(requests: Path, duration_s: float) -> list[tuple[int, int]]:
    """(requests arrived, requests met) in each second of arrivals."""
    rows = pq.read_table(requests, columns=["arrival_ns", "status"]).to_pylist()
    bins = [[0, 0] for _ in range(int(duration_s))]
    for r in rows:
        i = r["arrival_ns"] // 1_000_000_000
        if 0 <= i < len(bins):
            bins[i][0] += 1
            bins[i][1] += r["status"] == "SUCCESS"
    return [(n, ok) for n, ok in bins]


def recovery_s(
    bins: list[tuple[int, int]], fault_end_s: float, level: float, tolerance: float
) -> float | None:
    """Seconds from the fault's end to the first whole second after which every second is back
    within ``tolerance`` of ``level``; None if it never is."""
    start = int(fault_end_s)
    for i in range(start, len(bins)):
        if all(n == 0 or ok / n >= level - tolerance for n, ok in bins[i:]):
            return max(0.0, i - fault_end_s)
    return None


def first_back_s(
    bins: list[tuple[int, int]], fault_end_s: float, level: float, tolerance: float
) -> float | None:
    """Seconds from the fault's end to the start of the first second (from the one the fault
    ends in) within ``tolerance`` of ``level``."""
    for i in range(int(fault_end_s), len(bins)):
        n, ok = bins[i]
        if n and ok / n >= level - tolerance:
            return max(0.0, i - fault_end_s)
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, required=True)
    p.add_argument("--fault", choices=("stall", "storm"), required=True)
    p.add_argument("--rate", type=float, default=40.0)
    p.add_argument("--slo-ms", type=float, default=100.0)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--fault-at", type=float, default=20.0)
    p.add_argument("--stall-s", type=float, default=0.5)
    p.add_argument("--storm-s", type=float, default=30.0)
    p.add_argument(
        "--storm-factor",
        type=float,
        default=5.0,
        help="total rate during the storm, as a multiple of --rate",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="how close to the pre-fault attainment counts as recovered",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    out = args.out or Path(f"bench/results/recovery-{args.fault}")
    out.mkdir(parents=True, exist_ok=True)
    # a model's folder holds config.json (built-in) or config.pbtxt (imported files)
    models = sorted(
        d.name
        for d in args.repository.iterdir()
        if (d / "config.json").is_file() or (d / "config.pbtxt").is_file()
    )
    with serving(args.repository, out / "server.log", ("--status-interval", "5")) as (server, url):
        print(
            f"server ready on {url}; steady client at {args.rate:g} requests/s for "
            f"{args.duration:g} s, {args.fault} at {args.fault_at:g} s",
            file=sys.stderr,
        )
        before = _requests_seen(url)
        client = subprocess.Popen(
            _bench(url, models, args.rate, args.duration, args.slo_ms, args.seed, out / "steady"),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        # the client's clock starts with its first arrival, after its start-up: count from there
        while _requests_seen(url) == before and client.poll() is None:
            time.sleep(0.01)
        t0 = time.monotonic()
        time.sleep(args.fault_at)
        if args.fault == "stall":
            worker = _worker_pid(server.pid)
            fault_start = time.monotonic() - t0
            os.kill(worker, signal.SIGSTOP)
            time.sleep(args.stall_s)
            os.kill(worker, signal.SIGCONT)
            fault_s = args.stall_s
        else:
            storm = subprocess.Popen(
                _bench(
                    url,
                    models,
                    args.rate * (args.storm_factor - 1),
                    args.storm_s,
                    args.slo_ms,
                    args.seed + 1,
                    None,
                ),
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            # the storm begins when requests come in far faster than the steady client sends
            seen, at = _requests_seen(url), time.monotonic()
            while storm.poll() is None:
                time.sleep(0.1)
                now_seen, now = _requests_seen(url), time.monotonic()
                if now_seen - seen > 2 * args.rate * (now - at):
                    break
                seen, at = now_seen, now
            fault_start = time.monotonic() - t0
            fault_s = args.storm_s
            if storm.wait() != 0:
                print(f"the storm client exited {storm.returncode}", file=sys.stderr)
        if client.wait() != 0:
            raise SystemExit(f"the steady client exited {client.returncode}")
    bins = per_second(out / "steady" / "requests.parquet", args.duration)
    before = bins[: int(fault_start)]
    n_before = sum(n for n, _ in before)
    level = sum(ok for _, ok in before) / n_before if n_before else 1.0
    fault_end = fault_start + fault_s
    rec = recovery_s(bins, fault_end, level, args.tolerance)
    back = first_back_s(bins, fault_end, level, args.tolerance)
    after = bins[int(fault_end) + 2 :]
    n_after = sum(n for n, _ in after)
    result = {
        "fault": args.fault,
        "rate": args.rate,
        "slo_ms": args.slo_ms,
        "fault_start_s": fault_start,
        "fault_s": fault_s,
        "back_s": back,
        "storm_factor": args.storm_factor if args.fault == "storm" else None,
        "attainment_before": level,
        "attainment_from_2s_after": (sum(ok for _, ok in after) / n_after if n_after else None),
        "recovery_s": rec,
        "per_second": bins,
        "repository": str(args.repository),
    }
    (out / "recovery.json").write_text(json.dumps(result, indent=1))
    fmt = "never" if rec is None else f"{rec:.1f} s"
    fmt_back = "never" if back is None else f"{back:.1f} s"
    table = (
        f"| fault | rate | SLO ms | before | back at that level after | stays there from | "
        f"from 2 s after the fault |\n|---|---:|---:|---:|---:|---:|---:|\n"
        f"| {args.fault} {fault_s:g} s | {args.rate:g} | {args.slo_ms:g} | {level:.2%} | "
        f"{fmt_back} | {fmt} | {result['attainment_from_2s_after'] or 0:.2%} |"
    )
    print(table)
    (out / "recovery.md").write_text(table + "\n")
    _plot(bins, fault_start, fault_end, out / "recovery.png")


def _plot(bins: list[tuple[int, int]], start: float, end: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    xs = [i + 0.5 for i in range(len(bins))]
    ys = [100 * ok / n if n else float("nan") for n, ok in bins]
    ax.plot(xs, ys, marker=".")
    ax.axvspan(start, max(end, start + 0.2), color="red", alpha=0.2, label="fault")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("met deadline (%)")
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
