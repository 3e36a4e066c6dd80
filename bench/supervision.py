"""Supervision of the real server's local worker (issue 13, part 5): how long a killed worker takes
to serve again, how fast a stalled (SIGSTOPped) worker is declared lost, and whether a loaded
server ever loses its worker by mistake.

usage: python bench/supervision.py --repository DIR --measure kill|stall|losses
           [--trials 5] [--rate 30] [--duration 30] [--out DIR]

``clockwork serve`` on the repository (HTTP only, a free port), then:

- ``kill``: ``--trials`` times, ``kill -9`` the local worker and time, from the kill, until the
  first model's ``/ready`` says 400 (loss seen) and until an inference succeeds again;
- ``stall``: ``--trials`` times, SIGSTOP the worker, time until ``/ready`` says 400 (polled
  every 2 ms; the controller's ping check), SIGCONT it and time until ``/ready`` is 200 again;
- ``losses``: ``clockwork bench --url`` (JSON, Poisson over every model at ``--rate`` for
  ``--duration`` s, 100 ms SLO) and count the "lost" lines of the server's log (a worker that
  answers slowly under load must not be declared lost).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.error import HTTPError, URLError

from real_server import CLOCKWORK, ROOT, serving


def _status(url: str, body: object | None = None) -> int:
    req = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
            return int(r.status)
    except HTTPError as e:
        e.read()
        return int(e.code)
    except (URLError, ConnectionError):
        return 0


def _worker_pid(server_pid: int) -> int:
    out = subprocess.run(
        ["pgrep", "-P", str(server_pid)], capture_output=True, text=True, check=False
    )
    pids = [int(p) for p in out.stdout.split()]
    if len(pids) != 1:
        raise SystemExit(f"expected one worker under the server, found {pids}")
    return pids[0]


def _infer_body(url: str, model: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url}/v2/models/{model}", timeout=10) as r:
        meta = json.loads(r.read())
    t = meta["inputs"][0]
    shape = [d if d > 0 else 1 for d in t["shape"]]  # the metadata shape has the batch
    n = 1
    for d in shape:
        n *= d
    tensor = {"name": t["name"], "datatype": t["datatype"], "shape": shape, "data": [0] * n}
    return {"inputs": [tensor], "parameters": {"timeout": 2_000_000}}


def _until(check: Callable[[], bool], timeout_s: float, poll_s: float) -> float:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout_s:
            raise SystemExit(f"not within {timeout_s} s")
        time.sleep(poll_s)
    return time.monotonic() - t0


def _first_model(url: str) -> str:
    with urllib.request.urlopen(
        urllib.request.Request(f"{url}/v2/repository/index", data=b"{}", method="POST"), timeout=10
    ) as r:
        return str(sorted(e["name"] for e in json.loads(r.read()) if e["state"] == "READY")[0])


def measure_kill(server: subprocess.Popen[bytes], url: str, trials: int) -> None:
    model = _first_model(url)
    ready = f"{url}/v2/models/{model}/ready"
    body = _infer_body(url, model)
    for i in range(trials):
        assert _status(f"{url}/v2/models/{model}/infer", body) == 200
        pid = _worker_pid(server.pid)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        seen = _until(lambda: _status(ready) == 400, 10, 0.002)
        t1 = time.monotonic()
        _until(lambda: _status(f"{url}/v2/models/{model}/infer", body) == 200, 120, 0.05)
        print(
            f"kill {i + 1}: not ready after {seen * 1000:.0f} ms, "
            f"served again after {time.monotonic() - t0:.2f} s "
            f"(restart and rejoin {time.monotonic() - t1:.2f} s)",
            flush=True,
        )
        time.sleep(1.0)


def measure_stall(server: subprocess.Popen[bytes], url: str, trials: int) -> None:
    model = _first_model(url)
    ready = f"{url}/v2/models/{model}/ready"
    for i in range(trials):
        _until(lambda: _status(ready) == 200, 30, 0.01)
        time.sleep(1.0)
        pid = _worker_pid(server.pid)
        os.kill(pid, signal.SIGSTOP)
        try:
            lost = _until(lambda: _status(ready) == 400, 10, 0.002)
        finally:
            os.kill(pid, signal.SIGCONT)
        back = _until(lambda: _status(ready) == 200, 30, 0.002)
        print(
            f"stall {i + 1}: declared lost {lost * 1000:.0f} ms after SIGSTOP; "
            f"ready again {back * 1000:.0f} ms after SIGCONT",
            flush=True,
        )


def measure_losses(url: str, log: Path, rate: float, duration: float, out: Path | None) -> None:
    before = log.read_text(errors="replace").count(" lost: ")
    cmd = [
        *CLOCKWORK,
        "bench",
        "--url",
        url,
        "--json",
        "--workload",
        "poisson",
        "--rate",
        f"{rate:g}",
        "--duration",
        f"{duration:g}",
        "--slo-ms",
        "100",
        "--no-plots",
        "--quiet",
    ]
    if out is not None:
        cmd += ["--out", str(out)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    print(res.stdout.strip()[-1500:], flush=True)
    lost_lines = [
        line for line in log.read_text(errors="replace").splitlines() if " lost: " in line
    ]
    print(f"worker losses during the load: {len(lost_lines) - before}", flush=True)
    for line in lost_lines[before:]:
        print("  " + line, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, required=True)
    p.add_argument("--measure", choices=("kill", "stall", "losses"), required=True)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--out", type=Path, default=None, help="the bench report (losses)")
    p.add_argument("--log", type=Path, default=None, help="the server's log (default: a temp)")
    args = p.parse_args()
    log = args.log or Path(tempfile.mkdtemp(prefix="supervision-")) / "serve.log"
    with serving(args.repository.resolve(), log, ("--status-interval", "0")) as (server, url):
        if args.measure == "kill":
            measure_kill(server, url, args.trials)
        elif args.measure == "stall":
            measure_stall(server, url, args.trials)
        else:
            measure_losses(url, log, args.rate, args.duration, args.out)
    print(f"server log: {log}")


if __name__ == "__main__":
    main()
