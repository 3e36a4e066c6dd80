"""Fitting the simulator to a real server's run (``bench/calibrate_sim.py`` measures, these fit).

- ``fit_noise``: from the worker's action log, per batch size the median time the device was
  held (from an execution's start to its end as the worker stamps them: the inputs' assembly and
  the outputs' hand-over included, which the simulated device's duration stands for too; the
  worker's ``actual_ns`` is the model's run alone, 0.2-0.7 ms less on a 2-core host, BENCHMARKS.md
  s.36), the log-normal spread around it (1.4826 x MAD of the log ratios) and the stragglers
  (runs above exp(3 sigma) x the median: their share and median ratio).
- ``fit_drift``: how the executions' speed drifts in time (``NoiseConfig.drift_sigma`` and
  ``drift_tau_ns``): per run, the mean log ratio (held time / its batch size's median) of the
  executions of each 100 ms window; the autocovariance of those means at lags of 1 to 20 windows
  fitted as ``drift_sigma**2 * exp(-lag / drift_tau)`` (lag 0 is left out: there the
  independent part of each execution adds its own variance). The independent part's ``sigma``
  is then what is left of the spread.
- ``fit_host``: what the serving host costs (``clockwork.sim.host.HostConfig``), by least squares
  over runs at several rates: the loop's CPU time as a constant share of a core plus a cost per
  request the door took and one per request it refused; the client's as a constant share plus a
  cost per request. A taken request's loop time is split ``TAKE_SHARE`` before the scheduler
  has it and the rest to answer it; a constant share slows that thread's jobs; the other threads'
  CPU is ``background_cores``.
- ``fit_turnaround``: the worker's turnaround between Infers (``HostConfig.worker_turnaround_ns``):
  the median gap from an Infer's end to the start of the next one, sent before that end, on the
  same device; ``fit_turnaround_quantiles`` keeps the whole distribution (its tail is what makes
  an Infer reach the worker too late), which the simulator then draws from.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

__all__ = [
    "DRIFT_WINDOW_NS",
    "TAKE_SHARE",
    "TURNAROUND_QUANTILES",
    "HostSample",
    "fit_drift",
    "fit_host",
    "fit_noise",
    "fit_turnaround",
    "fit_turnaround_quantiles",
]

#: the drift is fitted on the mean execution of each window this long (see ``fit_drift``)
DRIFT_WINDOW_NS = 100_000_000
#: and on the autocovariance of those means up to this many windows apart
DRIFT_LAGS = 20

#: of a taken request's loop time, the share spent before the scheduler has it (reading,
#: decoding, admitting); the rest answers it (a py-spy profile of the loop at 416 requests/s of
#: 60 KB JSON bodies, BENCHMARKS.md s.36)
TAKE_SHARE = 0.7
#: the turnaround's quantiles kept (every 0.1%: its tail above the p99 is where the worker
#: refuses Infers as too late, so it is kept fine)
TURNAROUND_QUANTILES = 1001


@dataclass(frozen=True, slots=True)
class HostSample:
    """One measured run: its length, its requests and what each thread spent (CPU seconds)."""

    wall_s: float
    requests: int  # sent by the client
    door_refusals: int  # of them, refused by the door before the scheduler saw them
    loop_s: float  # the server's main thread: the controller's loop and the front door
    other_s: float  # the server's other threads and processes, the executor's aside
    client_s: float


def _executions(actions: Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, int, int]]:
    """(start, batch size, time held) of each successful execution among ``actions`` (rows of
    the action log)."""
    for a in actions:
        if a["kind"] != "Infer" or a["status"] != "SUCCESS":
            continue
        began = int(a["began_ns"])
        held = int(a["ended_ns"]) - began
        if held > 0:
            yield began, int(a["batch_size"]), held


def fit_turnaround(runs: Sequence[Sequence[Mapping[str, Any]]]) -> int:
    """The worker's turnaround (``HostConfig.worker_turnaround_ns``): the median time from an
    Infer's end to the start of the next one on its device that was sent before that end (it
    waited for it), over the action logs of ``runs`` (each its own clock); 0 with none."""
    gaps = _turnarounds(runs)
    return max(0, int(statistics.median(gaps))) if gaps else 0


def fit_turnaround_quantiles(
    runs: Sequence[Sequence[Mapping[str, Any]]], count: int = TURNAROUND_QUANTILES
) -> list[int]:
    """The turnarounds of ``fit_turnaround`` as ``count`` quantiles at evenly spaced
    probabilities from 0 to 1 (``HostConfig.worker_turnaround_quantiles_ns``); empty with
    none."""
    gaps = np.maximum(np.asarray(_turnarounds(runs), dtype=np.float64), 0.0)
    if not gaps.size:
        return []
    return [round(float(q)) for q in np.quantile(gaps, np.linspace(0.0, 1.0, count))]


def _turnarounds(runs: Sequence[Sequence[Mapping[str, Any]]]) -> list[int]:
    gaps: list[int] = []
    for actions in runs:
        infers = sorted(
            (a for a in actions if a["kind"] == "Infer" and a["began_ns"] and a["ended_ns"]),
            key=lambda a: (str(a["device"]), int(a["began_ns"])),
        )
        gaps += [
            int(b["began_ns"]) - int(a["ended_ns"])
            for a, b in pairwise(infers)
            if a["device"] == b["device"] and int(b["sent_ns"]) <= int(a["ended_ns"])
        ]
    return gaps


def fit_noise(actions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The noise of the successful executions in ``actions`` (rows of the action log)."""
    by_batch: dict[int, list[int]] = {}
    for _, batch, held in _executions(actions):
        by_batch.setdefault(batch, []).append(held)
    medians = {b: statistics.median(v) for b, v in by_batch.items()}
    logs = [math.log(x / medians[b]) for b, v in by_batch.items() for x in v]
    sigma = 1.4826 * statistics.median(abs(x) for x in logs) if logs else 0.0
    high = [x for x in logs if x > 3 * sigma]
    return {
        "medians_ns": {str(b): int(m) for b, m in sorted(medians.items())},
        "runs": {str(b): len(v) for b, v in sorted(by_batch.items())},
        "sigma": sigma,
        "straggler_prob": len(high) / len(logs) if logs else 0.0,
        "straggler_factor": math.exp(statistics.median(high)) if high else 1.0,
    }


def _log_ratios(
    actions: Sequence[Mapping[str, Any]], medians_ns: Mapping[str, int]
) -> tuple[list[int], list[float]]:
    """The start and log(held / its batch size's median) of each successful execution."""
    starts, ratios = [], []
    for began, batch, held in _executions(actions):
        median = medians_ns.get(str(batch))
        if median:
            starts.append(began)
            ratios.append(math.log(held / median))
    return starts, ratios


def fit_drift(
    runs: Sequence[Sequence[Mapping[str, Any]]], fit: Mapping[str, Any]
) -> dict[str, Any]:
    """``fit`` (``fit_noise``'s) with the drift of ``runs`` (each a run's action log) added and
    its ``sigma`` reduced to the independent part (see the module docstring)."""
    sums = np.zeros(DRIFT_LAGS + 1)
    counts = np.zeros(DRIFT_LAGS + 1)
    for actions in runs:
        starts, ratios = _log_ratios(actions, fit["medians_ns"])
        if len(starts) < 2:
            continue
        t = np.array(starts, dtype=np.int64)
        r = np.array(ratios)
        r -= r.mean()
        window = (t - t.min()) // DRIFT_WINDOW_NS
        n = int(window.max()) + 1
        per = np.bincount(window, minlength=n)
        total = np.bincount(window, weights=r, minlength=n)
        means = np.where(per > 0, total / np.maximum(per, 1), np.nan)
        for lag in range(1, DRIFT_LAGS + 1):
            if lag >= n:
                break
            pair = means[:-lag] * means[lag:]
            ok = ~np.isnan(pair)
            sums[lag] += float(pair[ok].sum())
            counts[lag] += int(ok.sum())
    lags = [k for k in range(1, DRIFT_LAGS + 1) if counts[k] > 0 and sums[k] > 0]
    out = dict(fit)
    if len(lags) < 2:
        out.update(drift_sigma=0.0, drift_tau_ns=DRIFT_WINDOW_NS)
        return out
    cov = np.array([sums[k] / counts[k] for k in lags])
    # log c_k = log(sigma_d^2) - k * window / tau: a line in k
    slope, intercept = np.polyfit(np.array(lags, dtype=np.float64), np.log(cov), 1)
    variance = float(math.exp(intercept))
    tau_ns = DRIFT_WINDOW_NS / -slope if slope < 0 else 100.0 * DRIFT_WINDOW_NS
    drift_sigma = math.sqrt(min(variance, float(fit["sigma"]) ** 2))
    out.update(
        drift_sigma=drift_sigma,
        drift_tau_ns=round(tau_ns),
        sigma=math.sqrt(max(0.0, float(fit["sigma"]) ** 2 - drift_sigma**2)),
    )
    return out


def _nonnegative_least_squares(rows: Sequence[Sequence[float]], y: Sequence[float]) -> list[float]:
    """Least squares with the terms that come out negative dropped, one at a time (a few terms,
    each a cost that cannot be negative); a dropped term is 0."""
    keep = list(range(len(rows[0])))
    while True:
        a = np.array([[r[i] for i in keep] for r in rows], dtype=np.float64)
        coef = np.linalg.lstsq(a, np.array(y, dtype=np.float64), rcond=None)[0]
        if bool((coef >= 0).all()) or len(keep) == 1:
            out = [0.0] * len(rows[0])
            for i, c in zip(keep, coef.tolist(), strict=True):
                out[i] = max(0.0, float(c))
            return out
        keep.pop(int(np.argmin(coef)))


def fit_host(samples: Sequence[HostSample], cores: float) -> dict[str, float]:
    """``HostConfig``'s fields (the door's limits aside) fitted on ``samples``, for a host of
    ``cores`` cores; what ``clockwork sim --host`` reads."""
    if not samples:
        raise ValueError("fit_host needs at least one run")
    loop = _nonnegative_least_squares(
        [[s.wall_s, s.requests - s.door_refusals, s.door_refusals] for s in samples],
        [s.loop_s for s in samples],
    )
    client = _nonnegative_least_squares(
        [[s.wall_s, s.requests] for s in samples], [s.client_s for s in samples]
    )
    # a thread busy a constant share of the time has that much less for its jobs
    loop_slow = 1.0 / max(0.05, 1.0 - loop[0])
    client_slow = 1.0 / max(0.05, 1.0 - client[0])
    per_request_s, refuse_s = loop[1] * loop_slow, loop[2] * loop_slow
    client_s = client[1] * client_slow
    return {
        "take_ns": round(TAKE_SHARE * per_request_s * 1e9),
        "answer_ns": round((1 - TAKE_SHARE) * per_request_s * 1e9),
        "refuse_ns": round(refuse_s * 1e9),
        "client_send_ns": round(client_s / 2 * 1e9),
        "client_read_ns": round(client_s / 2 * 1e9),
        "cores": float(cores),
        "background_cores": round(statistics.mean(s.other_s / s.wall_s for s in samples), 3),
    }
