#!/usr/bin/env python3
"""Clockwork against Ray Serve and MLServer: the same models and weights, the same client.

Usage (from anywhere; standard library only, the servers run in their own environments)::

    python3 bench/peers/compare.py --run-name NAME [--models 4] [--rates 20,40,80]
        [--slo-ms 100] [--repeats 3] [--duration 30] [--systems clockwork,ray,mlserver]
        [--encoding json] [--noise none|sine] [--keep-server] [--repo DIR]

1. The repository (``--repo``, default ``bench/peers/runs/repo-mobilenet64-N``) is created if
   missing with ``clockwork models create`` (N MobileNetV2 at 64x64, batch sizes 1,2,4,8, seed 1:
   the models of ``clockwork serve``'s demo repository) and profiled with ``clockwork profile`` if
   a model has no CPU profile (Clockwork's scheduler needs one; the peers ignore it).
2. ``setup_ray.sh`` / ``setup_mlserver.sh`` make sure the peers' environments exist (idempotent).
3. For each repeat, for each rate, for each system in an order that rotates from one (repeat, rate)
   to the next: start a fresh server (``serve_peer.sh``), check that it answers, warm it up
   (``--warmup-s`` of load at the lowest rate, not recorded), run
   ``clockwork bench --url ... --workload poisson --rate R --duration D --slo-ms SLO --seed S``
   (S = ``--seed`` + repeat: every system gets the same arrivals at a given rate and repeat) and
   stop the server. A fresh server per measurement costs 5-30 s of start-up each, but the systems
   meet the machine's phases interleaved at every rate, none is left idle in the background
   (Ray's idle processes take 0.2-0.4 of a core) and no measurement inherits another's queue.
   ``--keep-server`` instead starts each system once per repeat and runs every rate on it.
4. Each run's report (``summary.json``, ``requests.parquet``, the bench's output) lies in
   ``bench/results/peers/<run-name>/<system>-r<rate>-<repeat>/``; the table (markdown: every
   repeat's SLO attainment and goodput, and the medians) goes to stdout and to
   ``bench/results/peers/<run-name>/table.md``, every row to ``results.json``.

``--noise sine`` runs a background load during every measurement (``noise.py``: one process whose
busy share of one core follows a sine from 0 to 100% with a 10 s period, started from the same
phase at the start of each measurement, so every server meets the same load); the table's header
says so.

``--encoding binary`` (Triton's binary tensor extension) is only for ``--systems clockwork``: the
Ray app and MLServer speak JSON tensors only, so the common comparison is JSON.

Before the first measurement of each system, one request with the same random input goes to the
first model of each server; the table's header reports how far apart their outputs are (the same
weights give the same logits, to float rounding).
"""

import argparse
import datetime
import json
import os
import platform
import random
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CLOCKWORK = ROOT / ".venv" / "bin" / "clockwork"
RESULTS = ROOT / "bench" / "results" / "peers"
SYSTEMS = ("clockwork", "ray", "mlserver")
PORT_OFFSET = {"clockwork": 0, "ray": 10, "mlserver": 20}
SETUP = {"ray": "setup_ray.sh", "mlserver": "setup_mlserver.sh"}
ARCH = "mobilenet_v2"
RESOLUTION = 64
BATCH_SIZES = "1,2,4,8"


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    log("$ " + shlex.join(cmd))
    return subprocess.run(cmd, text=True, check=False, **kwargs)


# --------------------------------------------------------------------------- repository


def model_names(repo: Path) -> list[str]:
    return sorted(
        d.name
        for d in repo.iterdir()
        if d.is_dir()
        and not d.name.startswith(("_", "."))
        and ((d / "config.json").is_file() or (d / "config.pbtxt").is_file())
    )


def ensure_repository(repo: Path, count: int) -> list[str]:
    if not repo.is_dir() or not model_names(repo):
        log(f"creating {repo}: {count} x {ARCH} at {RESOLUTION}x{RESOLUTION}")
        cmd = [
            str(CLOCKWORK),
            "models",
            "create",
            str(repo),
            "--arch",
            ARCH,
            "--copies",
            str(count),
            "--seed",
            "1",
            "--resolution",
            str(RESOLUTION),
            "--batch-sizes",
            BATCH_SIZES,
        ]
        if run(cmd).returncode != 0:
            raise SystemExit("compare: clockwork models create failed")
    names = model_names(repo)
    if len(names) < count:
        raise SystemExit(f"compare: {repo} has {len(names)} models, {count} asked for")
    names = names[:count]
    if any(not (repo / n / "profile-cpu.json").is_file() for n in names):
        log(f"profiling {repo} (Clockwork needs each model's profile)")
        if run([str(CLOCKWORK), "profile", str(repo), "--models", ",".join(names)]).returncode:
            raise SystemExit("compare: clockwork profile failed")
    return names


# --------------------------------------------------------------------------- servers


def start_server(system: str, repo: Path, port: int, out: Path) -> bool:
    with (out / "server-start.txt").open("w") as f:
        r = run(
            [str(HERE / "serve_peer.sh"), system, str(repo), str(port)],
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    text = (out / "server-start.txt").read_text()
    sys.stderr.write(text)
    return r.returncode == 0


def stop_server(system: str, port: int) -> None:
    run([str(HERE / "serve_peer.sh"), "stop", system, str(port)], stdout=subprocess.DEVNULL)


def http_json(url: str, body: object | None = None, timeout: float = 10.0) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method="GET" if data is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def probe_outputs(port: int, model: str, seed: int) -> list[float]:
    """The first output of ``model`` for a seeded random input (metadata gives its shape)."""
    meta = http_json(f"http://127.0.0.1:{port}/v2/models/{model}")
    assert isinstance(meta, dict)
    gen = random.Random(seed)
    inputs = []
    for t in meta["inputs"]:
        shape = [1 if d < 0 else d for d in t["shape"]]
        n = 1
        for d in shape:
            n *= d
        inputs.append(
            {
                "name": t["name"],
                "datatype": t["datatype"],
                "shape": shape,
                "data": [gen.random() for _ in range(n)],
            }
        )
    answer = http_json(f"http://127.0.0.1:{port}/v2/models/{model}/infer", {"inputs": inputs})
    assert isinstance(answer, dict)
    return [float(x) for x in answer["outputs"][0]["data"]]


def server_version(port: int) -> str:
    try:
        meta = http_json(f"http://127.0.0.1:{port}/v2")
    except (OSError, ValueError):
        return "?"
    return f"{meta.get('name', '?')} {meta.get('version', '?')}" if isinstance(meta, dict) else "?"


# --------------------------------------------------------------------------- load


def bench(
    port: int,
    models: list[str],
    rate: float,
    args: argparse.Namespace,
    seed: int,
    duration: float,
    out: Path | None,
) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(CLOCKWORK),
        "bench",
        "--url",
        f"http://127.0.0.1:{port}",
        "--models",
        ",".join(models),
        "--binary" if args.encoding == "binary" else "--json",
        "--workload",
        "poisson",
        "--rate",
        f"{rate:g}",
        "--duration",
        f"{duration:g}",
        "--slo-ms",
        f"{args.slo_ms:g}",
        "--seed",
        str(seed),
        "--no-plots",
        "--quiet",
    ]
    if out is not None:
        cmd += ["--out", str(out)]
    return run(cmd, capture_output=True)


def start_noise(args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    if args.noise == "none":
        return None
    return subprocess.Popen(
        [
            sys.executable,
            str(HERE / "noise.py"),
            "--period-s",
            f"{args.noise_period_s:g}",
            "--low",
            "0",
            "--high",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_noise(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(
    system: str,
    port: int,
    models: list[str],
    rate: float,
    repeat: int,
    args: argparse.Namespace,
    run_dir: Path,
) -> dict[str, object]:
    """One recorded bench run against a server that is up; its row."""
    out = run_dir / f"{system}-r{rate:g}-{repeat}"
    out.mkdir(parents=True, exist_ok=True)
    if args.warmup_s > 0:
        bench(port, models, min(args.rates), args, args.seed + 1000, args.warmup_s, None)
    noise = start_noise(args)
    try:
        result = bench(port, models, rate, args, args.seed + repeat, args.duration, out)
    finally:
        stop_noise(noise)
    (out / "bench.txt").write_text(result.stdout + result.stderr)
    row: dict[str, object] = {
        "system": system,
        "rate": rate,
        "repeat": repeat,
        "dir": str(out.relative_to(ROOT)),
    }
    summary_path = out / "summary.json"
    if result.returncode != 0 or not summary_path.is_file():
        log(
            f"{system} rate {rate:g} repeat {repeat}: clockwork bench failed "
            f"(exit {result.returncode}); see {out / 'bench.txt'}"
        )
        row["error"] = f"bench exit {result.returncode}"
        return row
    s = json.loads(summary_path.read_text())
    latency = s.get("latency_ms") or {}
    row.update(
        attainment=s.get("slo_attainment"),
        goodput_rps=s.get("goodput_rps"),
        offered_rps=s.get("offered_rps"),
        requests=s.get("requests"),
        late=s.get("late"),
        refused=sum((s.get("refused") or {}).values()),
        client_errors=s.get("client_errors"),
        p50_ms=latency.get("p50"),
        p99_ms=latency.get("p99"),
    )
    log(
        f"{system} rate {rate:g} repeat {repeat}: attainment {s.get('slo_attainment_pct_str')}, "
        f"goodput {s.get('goodput_rps', 0):.1f} req/s, p99 {latency.get('p99')} ms"
    )
    return row


def failed_row(system: str, rate: float, repeat: int, why: str) -> dict[str, object]:
    return {"system": system, "rate": rate, "repeat": repeat, "error": why}


# --------------------------------------------------------------------------- the table


def pct(x: object) -> str:
    return "-" if not isinstance(x, int | float) else f"{100 * x:.1f}%"


def num(x: object, fmt: str = ".1f") -> str:
    return "-" if not isinstance(x, int | float) else format(x, fmt)


def median(values: list[object]) -> float | None:
    vs = [float(v) for v in values if isinstance(v, int | float)]
    return statistics.median(vs) if vs else None


def table(rows: list[dict[str, object]], header: list[str], args: argparse.Namespace) -> str:
    lines = [f"# Peer comparison: {args.run_name}", "", *header, ""]
    lines.append(
        "| rate (req/s) | system | SLO attainment, each repeat | median | "
        "goodput (req/s), each repeat | median | p99 latency (ms), median |"
    )
    lines.append("|---:|---|---|---:|---|---:|---:|")
    for rate in args.rates:
        for system in args.systems:
            mine = sorted(
                (r for r in rows if r["system"] == system and r["rate"] == rate),
                key=lambda r: int(r["repeat"]),
            )
            if not mine:
                continue
            att = [r.get("attainment") for r in mine]
            good = [r.get("goodput_rps") for r in mine]
            each_att = ", ".join(
                pct(a) if "error" not in r else "fail" for a, r in zip(att, mine, strict=True)
            )
            each_good = ", ".join(
                num(g) if "error" not in r else "fail" for g, r in zip(good, mine, strict=True)
            )
            lines.append(
                f"| {rate:g} | {system} | {each_att} | {pct(median(att))} | "
                f"{each_good} | {num(median(good))} | "
                f"{num(median([r.get('p99_ms') for r in mine]))} |"
            )
    lines.append("")
    lines.append(
        "SLO attainment: answers within the SLO / requests sent; goodput: those answers "
        "per second. A late answer is a miss (the peers ignore the deadline that the "
        "client sends). Each repeat's arrivals are the same for every system (seed "
        f"{args.seed} + repeat)."
    )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--run-name", default=None, help="default: peers-<date>-<time>")
    p.add_argument(
        "--repo",
        type=Path,
        default=None,
        help="model repository (default bench/peers/runs/repo-mobilenet64-N)",
    )
    p.add_argument("--models", type=int, default=4, help="N: models in the repository, all used")
    p.add_argument("--rates", default="20,40,80", help="total requests/s, comma separated")
    p.add_argument("--slo-ms", type=float, default=100.0)
    p.add_argument("--encoding", choices=("json", "binary"), default="json")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of arrivals per run")
    p.add_argument(
        "--warmup-s",
        type=float,
        default=3.0,
        help="unrecorded load at the lowest rate after each start (0: none)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument(
        "--port-base",
        type=int,
        default=18400,
        help="clockwork on it, ray on +10, mlserver on +20 (+21, +22)",
    )
    p.add_argument(
        "--noise",
        choices=("none", "sine"),
        default="none",
        help="background load during every measurement",
    )
    p.add_argument("--noise-period-s", type=float, default=10.0)
    p.add_argument(
        "--keep-server",
        action="store_true",
        help="one server per (system, repeat) for every rate, not one per run",
    )
    p.add_argument("--skip-setup", action="store_true", help="do not run the setup scripts")
    args = p.parse_args()
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown or not args.systems:
        p.error(f"--systems: unknown {unknown}; choose from {', '.join(SYSTEMS)}")
    if not args.rates or min(args.rates) <= 0:
        p.error("--rates must list positive rates")
    if args.encoding == "binary" and args.systems != ["clockwork"]:
        p.error(
            "--encoding binary: only Clockwork supports Triton's binary tensors; "
            "use --systems clockwork, or JSON for the comparison"
        )
    if args.repeats < 1 or args.duration <= 0 or args.models < 1:
        p.error("--repeats, --duration and --models must be positive")
    if args.run_name is None:
        args.run_name = "peers-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    if args.repo is None:
        args.repo = HERE / "runs" / f"repo-mobilenet64-{args.models}"
    args.repo = args.repo.resolve()
    return args


def rotated(systems: list[str], k: int) -> list[str]:
    k %= len(systems)
    return systems[k:] + systems[:k]


def main() -> int:
    args = parse_args()
    if not CLOCKWORK.exists():
        raise SystemExit(f"compare: {CLOCKWORK} is missing: run `make install` in {ROOT}")
    if not args.skip_setup:
        for system in args.systems:
            script = SETUP.get(system)
            if script and run(["bash", str(HERE / script)], stdout=sys.stderr).returncode != 0:
                raise SystemExit(f"compare: {script} failed")
    models = ensure_repository(args.repo, args.models)
    run_dir = RESULTS / args.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    ports = {s: args.port_base + PORT_OFFSET[s] for s in args.systems}
    rows: list[dict[str, object]] = []
    versions: dict[str, str] = {}
    probes: dict[str, list[float]] = {}
    started = time.monotonic()

    def up(system: str, out: Path) -> bool:
        out.mkdir(parents=True, exist_ok=True)
        if not start_server(system, args.repo, ports[system], out):
            return False
        if system not in versions:
            versions[system] = server_version(ports[system])
            try:
                probes[system] = probe_outputs(ports[system], models[0], args.seed)
            except (OSError, ValueError, KeyError, AssertionError) as e:
                log(f"{system}: the output probe failed: {e}")
        return True

    try:
        for repeat in range(1, args.repeats + 1):
            if args.keep_server:
                for system in rotated(args.systems, repeat - 1):
                    if not up(system, run_dir / f"{system}-server-{repeat}"):
                        rows += [
                            failed_row(system, r, repeat, "server did not start")
                            for r in args.rates
                        ]
                        stop_server(system, ports[system])
                        continue
                    try:
                        for rate in args.rates:
                            rows.append(
                                measure(system, ports[system], models, rate, repeat, args, run_dir)
                            )
                    finally:
                        stop_server(system, ports[system])
                continue
            for i, rate in enumerate(args.rates):
                for system in rotated(args.systems, (repeat - 1) * len(args.rates) + i):
                    out = run_dir / f"{system}-r{rate:g}-{repeat}"
                    if not up(system, out):
                        rows.append(failed_row(system, rate, repeat, "server did not start"))
                        stop_server(system, ports[system])
                        continue
                    try:
                        rows.append(
                            measure(system, ports[system], models, rate, repeat, args, run_dir)
                        )
                    finally:
                        stop_server(system, ports[system])
    except KeyboardInterrupt:
        log("interrupted: stopping the servers; the table has what was measured")
        for system in args.systems:
            stop_server(system, ports[system])

    header = header_lines(args, models, versions, probes, time.monotonic() - started)
    text = table(rows, header, args)
    (run_dir / "table.md").write_text(text)
    (run_dir / "results.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "versions": versions,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(text)
    log(f"table written to {run_dir / 'table.md'}")
    return 0 if rows and all("error" not in r for r in rows) else 1


def describe_models(repo: Path, models: list[str]) -> str:
    """``4 x mobilenet_v2 (resolution 64), batch sizes [1, 2, 4, 8]`` from the configs (a
    Triton-layout model: its platform, its input dims and max batch size)."""
    kinds: dict[str, int] = {}
    for name in models:
        pbtxt = repo / name / "config.pbtxt"
        if pbtxt.is_file():
            text = pbtxt.read_text()
            found = {
                field: re.search(rf"{field}:\s*([^\n}}]+)", text)
                for field in ("platform", "max_batch_size", "dims")
            }
            key = ", ".join(f"{k} {m.group(1).strip()}" for k, m in found.items() if m)
            kinds[key] = kinds.get(key, 0) + 1
            continue
        c = json.loads((repo / name / "config.json").read_text())
        params = c.get("arch_params", {})
        shape = f"resolution {params['resolution']}" if "resolution" in params else ""
        key = f"{c['architecture']}{f' ({shape})' if shape else ''}, batch sizes {c['batch_sizes']}"
        kinds[key] = kinds.get(key, 0) + 1
    return "; ".join(f"{n} x {k}" for k, n in kinds.items())


def header_lines(
    args: argparse.Namespace,
    models: list[str],
    versions: dict[str, str],
    probes: dict[str, list[float]],
    wall_s: float,
) -> list[str]:
    noise = (
        "none"
        if args.noise == "none"
        else f"a sine from 0 to 100% of one core, period {args.noise_period_s:g} s "
        "(bench/peers/noise.py, restarted from the same phase for every measurement)"
    )
    servers = (
        "one fresh server per run"
        if not args.keep_server
        else "one server per (system, repeat), every rate on it"
    )
    lines = [
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; host: "
        f"{platform.node()}, {os.cpu_count()} CPUs; wall time {wall_s / 60:.1f} min",
        f"- models: {describe_models(args.repo, models)} from {args.repo}",
        f"- load: poisson, rates {', '.join(f'{r:g}' for r in args.rates)} req/s over all "
        f"models, {args.duration:g} s per run, SLO {args.slo_ms:g} ms, {args.encoding} tensors, "
        f"{args.repeats} repeat(s), systems interleaved in a rotating order; {servers}; "
        f"{args.warmup_s:g} s of unrecorded warm-up after each start",
        f"- background load: {noise}",
        "- servers: "
        + "; ".join(f"{s}: {versions.get(s, '?')}" for s in args.systems)
        + " (one torch thread each; batching on: Clockwork's scheduler, Ray serve.batch and "
        "MLServer adaptive batching up to each model's max_batch_size with a 5 ms wait)",
    ]
    if len(probes) >= 2:
        names = sorted(probes)
        ref = probes[names[0]]
        diffs = {
            n: max((abs(a - b) for a, b in zip(ref, probes[n], strict=False)), default=0.0)
            for n in names[1:]
        }
        lines.append(
            f"- same weights: {models[0]}'s logits for one random input, largest "
            "difference from "
            + names[0]
            + ": "
            + ", ".join(f"{n} {d:.2g}" for n, d in diffs.items())
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
