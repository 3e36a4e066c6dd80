"""Where the controller loop's time goes under one attack row (issue 13: loop lateness).

usage: python bench/loop_profile.py [--only largest-inputs] [--flood-s 5] [--slowdown 30]
                                    [--out bench/results] [--threshold-ms 0.5]
                                    [--shared-inputs] [--cprofile]

Runs rows of ``bench/attacks.py`` against a server started through this file, which, in the
server process only, times every callback the event loop runs (asyncio's own loop, not uvloop:
uvloop's callbacks cannot be wrapped from Python) in CPU time of the loop's thread and in wall
time, and at exit writes ``loop-profile.json`` into ``--out``: per callback kind (the coroutine a
task step runs, or the function a handle calls) the count, total and worst CPU and wall time, the
callbacks over ``--threshold-ms`` of CPU, and the CPU time of every thread of the process (the
decode pool's result thread, gRPC's threads: what holds the interpreter lock while the loop
waits for it). CPU time, not wall time: this machine is shared, and wall time includes waiting
for a core.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROBE_ENV = "CLOCKWORK_LOOP_PROFILE_OUT"
THRESHOLD_ENV = "CLOCKWORK_LOOP_PROFILE_THRESHOLD_MS"
CPROFILE_ENV = "CLOCKWORK_LOOP_PROFILE_CPROFILE"


# --------------------------------------------------------------------------- in the server


def _kind(handle: asyncio.Handle) -> str:
    cb: Any = handle._callback  # type: ignore[attr-defined]
    owner = getattr(cb, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        frame = getattr(coro, "cr_frame", None)
        where = ""
        # the innermost awaiting coroutine says more than the task's outermost one
        inner = coro
        while getattr(inner, "cr_await", None) is not None and hasattr(inner.cr_await, "cr_frame"):
            inner = inner.cr_await
        if inner is not coro and getattr(inner, "cr_code", None) is not None:
            where = f" > {inner.cr_code.co_qualname}"
        name = coro.cr_code.co_qualname if frame is not None or hasattr(coro, "cr_code") else coro
        # aiohttp's request tasks: which path (an answer to /metrics is rendered in one step)
        request = frame.f_locals.get("request") if frame is not None else None
        path = getattr(request, "path", None)
        if isinstance(path, str):
            where += " " + ("infer" if path.endswith("/infer") else path)
        return f"task {name}{where}"
    fn = getattr(cb, "__qualname__", None) or type(cb).__qualname__
    if owner is not None and not isinstance(owner, type):
        fn = f"{type(owner).__qualname__}.{getattr(cb, '__name__', fn)}"
    return f"call {fn}"


def install_probe(out: Path, threshold_ms: float) -> None:
    stats: dict[str, list[float]] = {}  # kind -> [count, cpu_s, wall_s, max_cpu_s, max_wall_s]
    slow: list[tuple[float, float, str]] = []
    cpu_hist = [0] * 8  # < 0.1, 0.25, 0.5, 1, 2, 5, 10 ms, more
    bounds = (1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2)
    original: Callable[[asyncio.Handle], None] = asyncio.events.Handle._run
    threshold_s = threshold_ms / 1000

    def timed_run(self: asyncio.Handle) -> None:
        c0 = time.thread_time()
        w0 = time.perf_counter()
        kind = _kind(self)  # before the run: a task's coroutine moves on
        try:
            original(self)
        finally:
            cpu = time.thread_time() - c0
            wall = time.perf_counter() - w0
            s = stats.get(kind)
            if s is None:
                stats[kind] = [1, cpu, wall, cpu, wall]
            else:
                s[0] += 1
                s[1] += cpu
                s[2] += wall
                s[3] = max(s[3], cpu)
                s[4] = max(s[4], wall)
            i = 0
            while i < len(bounds) and cpu >= bounds[i]:
                i += 1
            cpu_hist[i] += 1
            if cpu >= threshold_s and len(slow) < 5000:
                slow.append((cpu, wall, kind))

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]

    def thread_cpu() -> dict[str, float]:
        names = {t.native_id: t.name for t in threading.enumerate()}
        out_: dict[str, float] = {}
        tick = os.sysconf("SC_CLK_TCK")
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/self/task/{tid}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            name = names.get(int(tid), comm)
            key = f"{name} ({tid})"
            out_[key] = (int(fields[11]) + int(fields[12])) / tick
        return out_

    def dump() -> None:
        rows = sorted(stats.items(), key=lambda kv: -kv[1][1])
        out.write_text(
            json.dumps(
                {
                    "callbacks": sum(int(s[0]) for s in stats.values()),
                    "cpu_histogram_ms": {
                        **{f"< {b * 1000:g}": n for b, n in zip(bounds, cpu_hist, strict=False)},
                        f">= {bounds[-1] * 1000:g}": cpu_hist[-1],
                    },
                    "by_kind": [
                        {
                            "kind": k,
                            "count": int(s[0]),
                            "cpu_ms": round(s[1] * 1000, 1),
                            "wall_ms": round(s[2] * 1000, 1),
                            "max_cpu_ms": round(s[3] * 1000, 2),
                            "max_wall_ms": round(s[4] * 1000, 2),
                        }
                        for k, s in rows[:40]
                    ],
                    "slowest": [
                        {"cpu_ms": round(c * 1000, 2), "wall_ms": round(w * 1000, 2), "kind": k}
                        for c, w, k in sorted(slow, reverse=True)[:60]
                    ],
                    "thread_cpu_s": thread_cpu(),
                },
                indent=1,
            )
        )

    atexit.register(dump)
    if os.environ.get(CPROFILE_ENV):
        import cProfile

        profiler = cProfile.Profile()  # the loop's thread only

        def dump_profile() -> None:
            profiler.disable()
            profiler.dump_stats(str(out.with_suffix(".pstats")))

        profiler.enable()
        atexit.register(dump_profile)


def as_clockwork() -> None:
    """``python -m clockwork.cli.main`` with the probe installed when this is the server."""
    argv = sys.argv[2:]
    if "serve" in argv and os.environ.get(PROBE_ENV):
        argv = [*argv, "--no-uvloop"]
        install_probe(Path(os.environ[PROBE_ENV]), float(os.environ.get(THRESHOLD_ENV, "0.5")))
    sys.argv = ["clockwork", *argv]
    from clockwork.cli.main import main

    main()


# --------------------------------------------------------------------------- the driver


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--as-clockwork":
        as_clockwork()
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--only", default="largest-inputs")
    p.add_argument("--flood-s", type=float, default=5.0)
    p.add_argument("--slowdown", type=float, default=30.0)
    p.add_argument("--threshold-ms", type=float, default=0.5)
    p.add_argument("--shared-inputs", action="store_true")
    p.add_argument(
        "--cprofile",
        action="store_true",
        help="also profile the loop's thread with cProfile (loop-profile.pstats; slows it)",
    )
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HERE))
    import attacks

    attacks.CLOCKWORK = [sys.executable, str(Path(__file__).resolve()), "--as-clockwork"]
    os.environ[PROBE_ENV] = str((args.out / "loop-profile.json").resolve())
    os.environ[THRESHOLD_ENV] = str(args.threshold_ms)
    if args.cprofile:
        os.environ[CPROFILE_ENV] = "1"
    cluster = attacks.Cluster(args.out, args.slowdown, args.shared_inputs)
    try:
        rows = asyncio.run(attacks.main_async(args, cluster))
    finally:
        cluster.close()
    print(attacks.markdown(rows))
    profile = json.loads((args.out / "loop-profile.json").read_text())
    print(json.dumps({k: profile[k] for k in ("callbacks", "cpu_histogram_ms")}, indent=1))
    for row in profile["by_kind"][:15]:
        print(row)
    print("slowest:")
    for row in profile["slowest"][:20]:
        print(row)
    print(json.dumps(profile["thread_cpu_s"], indent=1))


if __name__ == "__main__":
    main()
