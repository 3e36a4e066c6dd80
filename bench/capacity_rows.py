"""Issue 12's rows on the real server: find each configuration's capacity by a sweep, then
measure attainment and goodput at fractions of it, repeated and interleaved, and report medians.

usage: python bench/capacity_rows.py --config REPO:ENCODING:SLO_MS:GUESS [--config ...]
           [--fractions 0.1x1,0.5,0.8,2] [--repeats 3] [--duration 20] [--warmup-s 3]
           [--server-arg=--ARG ...] [--out bench/results/capacity-rows]

A configuration is a model repository served by ``clockwork serve --threads 1``, the client's
tensor encoding (``json`` or ``binary``), the deadline and a rough guess of the capacity in
requests/s. Every run is a fresh server, a warm-up of ``--warmup-s`` at the run's rate (seed 99,
not counted), then ``clockwork bench --url`` with Poisson arrivals over every model of the
repository for ``--duration`` seconds. ``--server-arg=--ARG`` (with ``=``: the value starts
with a dash) passes one more argument to every ``clockwork serve``.

1. **Sweep.** Rates of 0.8, 1.0, 1.2 and 1.4 x the guess, and 1.2 x more while the highest
   goodput is at the top rate (up to seven rates), one run each, configurations interleaved.
   Capacity = the highest goodput seen: what the issue defines it as.
2. **Rows.** Each fraction of the capacity (``FxN`` runs a fraction ``N`` times, else
   ``--repeats``), in rounds: every configuration's every fraction once per round, so a slow
   phase of the machine touches every cell alike. Seeds 1, 2, ... by round.

Runs go to ``runs.jsonl`` in ``--out`` as they finish; a rerun with the same ``--out`` skips
the runs already there (so a stopped campaign resumes). Then ``rows.md`` (medians and ranges,
against the issue's goals), ``rows.json`` and ``rows.png``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from clockwork.models.repository import ModelRepository
from real_server import bench_command, run_bench, serving

SWEEP_FACTORS = (0.8, 1.0, 1.2, 1.4)
SWEEP_MAX_RATES = 7
# the goals: attainment at or below these fractions, goodput share under overload
ATTAINMENT_GOALS = ((0.5, 0.999), (0.8, 0.99))
OVERLOAD_FRACTION, OVERLOAD_GOODPUT_SHARE = 2.0, 0.9


@dataclass(frozen=True)
class Config:
    repository: Path
    encoding: str
    slo_ms: float
    guess_rps: float

    @property
    def name(self) -> str:
        return f"{self.repository.name}:{self.encoding}:{self.slo_ms:g}"

    @staticmethod
    def parse(text: str) -> Config:
        parts = text.rsplit(":", 3)
        if len(parts) != 4 or parts[1] not in ("json", "binary"):
            raise argparse.ArgumentTypeError(
                f"--config {text!r}: expected REPO:json|binary:SLO_MS:GUESS_RPS"
            )
        try:
            return Config(Path(parts[0]), parts[1], float(parts[2]), float(parts[3]))
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"--config {text!r}: {e}") from e


@dataclass(frozen=True)
class Run:
    config: str
    phase: str  # "sweep" or "row"
    fraction: float  # of the capacity (rows), of the guess (sweep)
    rate_rps: int
    seed: int
    attainment: float
    goodput_rps: float
    requests: int
    late: int
    refused: int
    client_late_submits: int
    client_cpu_s: float
    finished_at: str

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.config, self.phase, self.rate_rps, self.seed)


def _fractions(text: str, repeats: int) -> list[tuple[float, int]]:
    out = []
    for part in text.split(","):
        frac, _, n = part.partition("x")
        out.append((float(frac), int(n) if n else repeats))
    return out


def measure(
    cfg: Config, phase: str, fraction: float, rate: int, seed: int, args: argparse.Namespace
) -> Run:
    """One fresh server, a warm-up, one measured run."""
    models = ModelRepository(cfg.repository).model_dirs()
    tag = f"{cfg.name.replace(':', '-')}-{phase}-{rate}-s{seed}"
    run_dir = args.out / "runs" / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    extra = ("--threads", "1", "--status-interval", "0", *args.server_arg)
    with serving(cfg.repository, run_dir / "server.log", extra) as (_, url):
        common = {"rate_rps": rate, "slo_ms": cfg.slo_ms, "encoding": cfg.encoding}
        if args.warmup_s > 0:
            run_bench(bench_command(url, models, duration_s=args.warmup_s, seed=99, **common))
        out = run_dir / "bench"
        run_bench(
            bench_command(url, models, duration_s=args.duration, seed=seed, out=out, **common)
        )
    s = json.loads((out / "summary.json").read_text())
    return Run(
        config=cfg.name, phase=phase, fraction=fraction, rate_rps=rate, seed=seed,
        attainment=s["slo_attainment"], goodput_rps=s["goodput_rps"], requests=s["requests"],
        late=s["late"], refused=sum(s["refused"].values()),
        client_late_submits=s["extra"]["late_submits"], client_cpu_s=s["extra"]["client_cpu_s"],
        finished_at=time.strftime("%Y-%m-%d %H:%M:%S"),
    )  # fmt: skip


class Campaign:
    """The runs so far (read back from ``runs.jsonl``) and the next ones to take."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.path = args.out / "runs.jsonl"
        self.runs: list[Run] = []
        if self.path.exists():
            self.runs = [Run(**json.loads(line)) for line in self.path.read_text().splitlines()]
        self.done = {r.key for r in self.runs}
        self.started = time.monotonic()
        self.taken = 0

    def take(self, cfg: Config, phase: str, fraction: float, rate: int, seed: int) -> None:
        if (cfg.name, phase, rate, seed) in self.done:
            return
        run = measure(cfg, phase, fraction, rate, seed, self.args)
        self.runs.append(run)
        self.done.add(run.key)
        self.taken += 1
        with self.path.open("a") as f:
            f.write(json.dumps(asdict(run)) + "\n")
        elapsed = time.monotonic() - self.started
        print(
            f"{run.finished_at} [{self.taken} runs, {elapsed / 60:.1f} min] {run.config} "
            f"{phase} {fraction:g} rate {rate} seed {seed}: {run.attainment:.2%}, goodput "
            f"{run.goodput_rps:.1f}",
            file=sys.stderr,
            flush=True,
        )

    def of(self, cfg: Config, phase: str) -> list[Run]:
        return [r for r in self.runs if r.config == cfg.name and r.phase == phase]


def capacity(runs: list[Run]) -> float:
    return max(r.goodput_rps for r in runs)


def sweep(c: Campaign, configs: list[Config]) -> dict[str, float]:
    rates = {
        cfg.name: [round(cfg.guess_rps * f / 10) * 10 for f in SWEEP_FACTORS] for cfg in configs
    }
    for i in range(len(SWEEP_FACTORS)):
        for cfg in configs:
            c.take(cfg, "sweep", SWEEP_FACTORS[i], rates[cfg.name][i], 1)
    for cfg in configs:
        rs = rates[cfg.name]
        while len(rs) < SWEEP_MAX_RATES:
            best = max(c.of(cfg, "sweep"), key=lambda r: r.goodput_rps)
            if best.rate_rps < rs[-1]:
                break
            rs.append(round(rs[-1] * 1.2 / 10) * 10)
            c.take(cfg, "sweep", rs[-1] / cfg.guess_rps, rs[-1], 1)
    return {cfg.name: capacity(c.of(cfg, "sweep")) for cfg in configs}


def rows(c: Campaign, configs: list[Config], caps: dict[str, float]) -> None:
    fractions = _fractions(c.args.fractions, c.args.repeats)
    for rnd in range(max(n for _, n in fractions)):
        for cfg in configs:
            for frac, n in fractions:
                if rnd < n:
                    c.take(cfg, "row", frac, round(caps[cfg.name] * frac), 1 + rnd)


def _cell(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def report(c: Campaign, configs: list[Config], caps: dict[str, float]) -> None:
    fractions = [f for f, _ in _fractions(c.args.fractions, c.args.repeats)]
    head = "| config | sweep: rate -> goodput (attainment) | capacity |"
    head += "".join(f" {f:.0%} |" for f in fractions)
    lines = [head, "|---|---|---:|" + "---|" * len(fractions)]
    result = []
    goals_met, goals_all = 0, 0
    for cfg in configs:
        cap = caps[cfg.name]
        sw = sorted(c.of(cfg, "sweep"), key=lambda r: r.rate_rps)
        cells = []
        entry: dict[str, object] = {"config": cfg.name, "capacity_rps": cap, "rows": {}}
        for frac in fractions:
            rs = [r for r in c.of(cfg, "row") if r.fraction == frac]
            if not rs:
                cells.append("-")
                continue
            att = [r.attainment for r in rs]
            share = [r.goodput_rps / cap for r in rs]
            med_att, med_share = statistics.median(att), statistics.median(share)
            goal = next((g for f, g in ATTAINMENT_GOALS if frac <= f), None)
            mark = ""
            if goal is not None:
                goals_all += 1
                goals_met += med_att >= goal
                mark = " ok" if med_att >= goal else " MISS"
            if frac >= OVERLOAD_FRACTION:
                goals_all += 1
                goals_met += med_share >= OVERLOAD_GOODPUT_SHARE
                mark = " ok" if med_share >= OVERLOAD_GOODPUT_SHARE else " MISS"
                cells.append(f"{rs[0].rate_rps}: goodput {_cell(share, '{:.0%}')}{mark}")
            else:
                cells.append(f"{rs[0].rate_rps}: {_cell(att, '{:.2%}')}{mark}")
            entry["rows"][f"{frac:g}"] = {  # type: ignore[index]
                "rate_rps": rs[0].rate_rps,
                "attainment": att,
                "goodput_share": share,
                "median_attainment": med_att,
                "median_goodput_share": med_share,
            }
        sweep_text = ", ".join(
            f"{r.rate_rps} -> {r.goodput_rps:.1f} ({r.attainment:.1%})" for r in sw
        )
        # the sweep stopped while goodput was still growing: the capacity is a lower bound
        top = " (the sweep's top rate: at least)" if sw and cap == sw[-1].goodput_rps else ""
        lines.append(f"| {cfg.name} | {sweep_text} | {cap:.1f}{top} | " + " | ".join(cells) + " |")
        result.append(entry)
    lines += [
        "",
        f"Medians of the runs (range in brackets). Goals (50%: 99.9%, 80%: 99%, 2x: goodput 90% "
        f"of capacity) met in {goals_met} of {goals_all} cells.",
    ]
    table = "\n".join(lines)
    print(table)
    (c.args.out / "rows.md").write_text(table + "\n")
    (c.args.out / "rows.json").write_text(json.dumps(result, indent=1))
    _plot(c, configs, caps, c.args.out / "rows.png")


def _plot(c: Campaign, configs: list[Config], caps: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for cfg in configs:
        rs = sorted(c.of(cfg, "row") + c.of(cfg, "sweep"), key=lambda r: r.rate_rps)
        x = [r.rate_rps / caps[cfg.name] for r in rs]
        ax1.plot(x, [100 * r.attainment for r in rs], "o", ms=3, label=cfg.name)
        ax2.plot(x, [r.goodput_rps / caps[cfg.name] for r in rs], "o", ms=3, label=cfg.name)
    ax1.set(xlabel="offered load / capacity", ylabel="within deadline (%)", ylim=(0, 101))
    ax2.set(xlabel="offered load / capacity", ylabel="goodput / capacity")
    ax2.axhline(OVERLOAD_GOODPUT_SHARE, color="grey", lw=0.8, ls="--")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Config.parse, action="append", required=True)
    p.add_argument("--fractions", default="0.1x1,0.5,0.8,2")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup-s", type=float, default=3.0)
    p.add_argument(
        "--server-arg", action="append", default=[], help="one more `clockwork serve` argument"
    )
    p.add_argument("--out", type=Path, default=Path("bench/results/capacity-rows"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    c = Campaign(args)
    caps = sweep(c, args.config)
    for name, cap in caps.items():
        print(f"{name}: capacity {cap:.1f} requests/s", file=sys.stderr, flush=True)
    rows(c, args.config, caps)
    report(c, args.config, caps)


if __name__ == "__main__":
    main()
