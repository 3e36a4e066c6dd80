"""How a real server's execution times move together in time: per run, the autocorrelation of
log(held time / its batch size's median) across consecutive executions, and how much the mean of
each second's executions varies against what independent draws would give (the drift that
``clockwork sim --noise-drift-sigma`` models; BENCHMARKS.md s.36).

usage: python bench/noise_drift.py LOG_DIR [LOG_DIR ...]
       (each a ``clockwork serve --log-dir``, e.g. bench/calibrate_sim.py's server-logs/*)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def describe(log_dir: Path) -> str:
    files = sorted(log_dir.glob("actions-*.parquet"))
    if not files:
        return f"{log_dir}: no action log"
    t = {
        k: np.array(v)
        for k, v in pa.concat_tables([pq.read_table(f) for f in files]).to_pydict().items()
    }
    ok = (t["kind"] == "Infer") & (t["status"] == "SUCCESS")
    began, ended, batch = t["began_ns"][ok], t["ended_ns"][ok], t["batch_size"][ok]
    order = np.argsort(began)
    began, held, batch = (
        began[order],
        (ended - t["began_ns"][ok])[order].astype(float),
        batch[order],
    )
    r = np.empty_like(held)
    for b in np.unique(batch):
        sel = batch == b
        r[sel] = np.log(held[sel] / np.median(held[sel]))
    r -= r.mean()

    def acf(lag: int) -> float:
        return float(np.dot(r[:-lag], r[lag:]) / np.dot(r, r)) if len(r) > lag else float("nan")

    second = (began - began[0]) // 1_000_000_000
    counts = np.bincount(second)
    sums = np.bincount(second, weights=r)
    full = counts >= 20
    means = sums[full] / counts[full]
    independent = r.std() / np.sqrt(counts[full].mean())
    return (
        f"{log_dir}: {len(r)} executions, sd {r.std():.3f}; autocorrelation at lag 1 / 5 / 20 / "
        f"100: {acf(1):.3f} / {acf(5):.3f} / {acf(20):.3f} / {acf(100):.3f}; each second's mean: "
        f"sd {means.std():.3f} ({means.min():+.2f} .. {means.max():+.2f}) against "
        f"{independent:.3f} for independent draws"
    )


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    for d in sys.argv[1:]:
        print(describe(Path(d)))


if __name__ == "__main__":
    main()
