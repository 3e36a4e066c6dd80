"""PNG plots of one run (DESIGN.md s.7), drawn on ``matplotlib.figure.Figure`` (no pyplot, no
global state). Every function takes ``(path, summary, requests, actions)``, writes one PNG, returns
its path, and draws a "no data" figure instead of failing when there is nothing to show.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from clockwork.core.units import NS_PER_MS
from clockwork.telemetry.records import ActionTable, RequestTable
from clockwork.telemetry.summary import (
    INFER,
    LATE,
    LOAD,
    SUCCESS,
    choose_bucket_ns,
    timeseries,
)

GOODPUT_LATENCY = "goodput_latency_over_time.png"
LATENCY_CDF = "latency_cdf.png"
BATCH_SIZES = "batch_sizes.png"
PREDICTION_ERROR = "prediction_error.png"

_CDF_POINTS = 4_000
_DPI = 110
_LAYOUT: Final = "constrained"
#: an SLO that changes during the run
_SLO_COLOUR: Final = "tab:orange"

PlotFn = Callable[[Path, Mapping[str, object], RequestTable, ActionTable], Path]


def run_title(summary: Mapping[str, object]) -> str:
    """``policy / workload name`` (the target server's URL for a bench run, which cannot know
    the policy) and "(synthetic)" when the workload says so."""
    policy = str(summary.get("url") or summary.get("policy", "?"))
    workload = summary.get("workload")
    name = "?"
    synthetic = False
    if isinstance(workload, Mapping):
        name = str(workload.get("name", workload.get("kind", "?")))
        synthetic = bool(workload.get("synthetic", False))
    return f"{policy} / {name}" + (" (synthetic)" if synthetic else "")


def slo_ms_of(summary: Mapping[str, object]) -> float | None:
    """The single SLO of the workload (``workload["slo_ms"]``), if it has one."""
    workload = summary.get("workload")
    if isinstance(workload, Mapping):
        slo = workload.get("slo_ms")
        if isinstance(slo, int | float) and not isinstance(slo, bool) and slo > 0:
            return float(slo)
    return None


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no data: {what}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, format="png")
    return path


def _floats(xs: object) -> npt.NDArray[np.float64]:
    """A list of numbers with ``None`` holes as a float array with NaN holes."""
    if not isinstance(xs, Sequence):
        return np.zeros(0)
    return np.array([np.nan if x is None else float(x) for x in xs], dtype=np.float64)


def _delivered_latency_ns(requests: RequestTable) -> npt.NDArray[np.int64]:
    names = requests.status_names
    ok = np.zeros(len(requests), dtype=bool)
    for s in (SUCCESS, LATE):
        if s in names:
            ok |= requests.status == names.index(s)
    return (requests.response_ns - requests.arrival_ns)[ok]


# --------------------------------------------------------------------------- plots


def bin_label(bin_s: float) -> str:
    """A time bin's width for a label: ``1 s``, ``10 s``, ``250 ms``."""
    if bin_s >= 1:
        return f"{bin_s:g} s"
    return f"{bin_s * 1000:g} ms"


def slo_by_bin_ms(requests: RequestTable, bin_ns: int, bins: int) -> npt.NDArray[np.float64]:
    """The SLO (deadline - arrival, ms) given to the requests that arrived in each of ``bins`` bins
    of ``bin_ns`` (their median, so a few requests with a model's own SLO do not move it); NaN
    for a bin without arrivals. Arrivals past the last bin count in the last."""
    out = np.full(bins, np.nan, dtype=np.float64)
    if len(requests) == 0 or bins < 1 or bin_ns <= 0:
        return out
    arrival = requests.arrival_ns
    b = np.clip(arrival // bin_ns, 0, bins - 1)
    slo = requests.deadline_ns - arrival
    order = np.lexsort((slo, b))
    sorted_slo = slo[order]
    counts = np.bincount(b, minlength=bins)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = np.flatnonzero(counts)
    out[has] = sorted_slo[starts[has] + (counts[has] - 1) // 2] / NS_PER_MS
    return out


def _varies(xs: npt.NDArray[np.float64]) -> bool:
    finite = xs[np.isfinite(xs)]
    return len(finite) > 1 and float(finite.max()) > float(finite.min()) * (1 + 1e-9)


def _carried(xs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """NaN holes filled with the value before them (a bin without arrivals keeps the SLO)."""
    out = xs.copy()
    for i in range(1, len(out)):
        if np.isnan(out[i]):
            out[i] = out[i - 1]
    return out


def plot_goodput_latency(
    path: Path, summary: Mapping[str, object], requests: RequestTable, actions: ActionTable
) -> Path:
    """Offered and goodput rps over time (top), p99 latency over time (bottom)."""
    return _save(goodput_latency_figure(summary, requests, actions), path)


def goodput_latency_figure(
    summary: Mapping[str, object], requests: RequestTable, actions: ActionTable
) -> Figure:
    """The figure of ``plot_goodput_latency``. Rates are per time bin (the bin is named on the
    axes); the offered line is drawn dashed above goodput, which fills below it, so that both show
    when they are equal; an SLO that changes during the run (an SLO sweep) is drawn as a step
    line, over the latency and on a second axis beside the rates."""
    ts = summary.get("timeseries")
    if not isinstance(ts, Mapping):
        dur_s = summary.get("duration_s")
        dur_ns = int(float(dur_s) * 1e9) if isinstance(dur_s, int | float) else 0
        ts = timeseries(requests, actions, choose_bucket_ns(dur_ns), dur_ns or None)
    t = _floats(ts.get("t_s"))
    fig = Figure(figsize=(10, 6), layout=_LAYOUT)
    top, bottom = fig.subplots(2, 1, sharex=True)
    offered = _floats(ts.get("offered_rps"))
    bucket_s = ts.get("bucket_s")
    width = float(bucket_s) if isinstance(bucket_s, int | float) and bucket_s > 0 else 1.0
    fig.suptitle(
        f"{run_title(summary)}: goodput and latency over time (bins of {bin_label(width)})"
    )
    if len(t) == 0 or not np.nansum(offered) > 0:
        _no_data(top, "no requests")
        _no_data(bottom, "no requests")
        return fig
    edges = np.append(t, t[-1] + width)
    goodput = _floats(ts.get("goodput_rps"))
    refused = _floats(ts.get("refused_rps")) + _floats(ts.get("late_rps"))
    top.stairs(goodput, edges, baseline=0, fill=True, color="tab:green", alpha=0.35, lw=0)
    top.stairs(goodput, edges, baseline=None, label="goodput", color="tab:green", lw=1.5)
    top.stairs(refused, edges, baseline=None, label="refused + late", color="tab:red", lw=0.8)
    # last and on top, dashed: where goodput equals it, both stay visible
    top.stairs(
        offered,
        edges,
        baseline=None,
        label="offered",
        color="black",
        linestyle=(0, (4, 3)),
        linewidth=1.2,
        zorder=3,
    )
    ideal = summary.get("ideal_capacity_rps")
    if isinstance(ideal, int | float) and ideal > 0:
        top.axhline(float(ideal), linestyle="--", color="tab:blue", label="ideal capacity")
    top.set_ylabel(f"requests / s (per {bin_label(width)} bin)")
    top.set_xlim(float(edges[0]), float(edges[-1]))
    top.set_ylim(bottom=0)
    top.grid(True, alpha=0.3)

    slo_steps = slo_by_bin_ms(requests, max(1, round(width * 1e9)), len(t))
    sweep = _varies(slo_steps)
    handles, labels = top.get_legend_handles_labels()
    if sweep:
        slo_line = _carried(slo_steps)
        right = top.twinx()
        right.stairs(
            slo_line, edges, baseline=None, color=_SLO_COLOUR, lw=1.2, label="SLO (right axis)"
        )
        right.set_ylabel("SLO (ms)", color=_SLO_COLOUR)
        finite = slo_line[np.isfinite(slo_line)]
        if float(finite.max()) > 20 * float(finite.min()):
            right.set_yscale("log")
        else:
            right.set_ylim(bottom=0)
        h2, l2 = right.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    top.legend(handles, labels, loc="best", fontsize="small")

    p99 = _floats(ts.get("p99_latency_ms"))
    if np.any(np.isfinite(p99)):
        bottom.stairs(
            p99, edges, baseline=None, color="tab:purple", label="p99 latency (delivered)"
        )
        slo = slo_ms_of(summary)
        if sweep:
            bottom.stairs(
                _carried(slo_steps),
                edges,
                baseline=None,
                linestyle="--",
                color=_SLO_COLOUR,
                label="SLO (as it changes)",
            )
        elif slo is not None:
            bottom.axhline(slo, linestyle="--", color="tab:red", label=f"SLO {slo:g} ms")
        bottom.set_ylim(bottom=0)
        bottom.legend(loc="best", fontsize="small")
    else:
        bottom.text(
            0.5, 0.5, "no delivered results", ha="center", va="center", transform=bottom.transAxes
        )
    bottom.set_ylabel(f"p99 latency (ms, per {bin_label(width)} bin)")
    bottom.set_xlabel("time since start (s)")
    bottom.grid(True, alpha=0.3)
    return fig


def _cdf_sample(
    sorted_ns: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Points of the empirical CDF: evenly spread ranks plus dense ranks in the upper tail."""
    n = len(sorted_ns)
    if n <= _CDF_POINTS:
        ranks = np.arange(n)
    else:
        even = np.linspace(0, n - 1, _CDF_POINTS // 2).astype(np.int64)
        tail = n - np.unique(np.geomspace(1, n, _CDF_POINTS // 2).astype(np.int64))
        ranks = np.unique(np.concatenate((even, tail, [n - 1])))
    return sorted_ns[ranks], (ranks + 1) / n


def plot_latency_cdf(
    path: Path, summary: Mapping[str, object], requests: RequestTable, actions: ActionTable
) -> Path:
    """CDF of delivered-result latency (log x), and its tail (1 - CDF, log-log), SLO marked."""
    lat = np.sort(_delivered_latency_ns(requests))
    fig = Figure(figsize=(11, 4.5), layout=_LAYOUT)
    left, right = fig.subplots(1, 2)
    fig.suptitle(f"{run_title(summary)}: latency of delivered results (n={len(lat):,})")
    if len(lat) == 0:
        _no_data(left, "no delivered results")
        _no_data(right, "no delivered results")
        return _save(fig, path)
    x_ns, cdf = _cdf_sample(lat)
    x = np.maximum(x_ns, 1) / NS_PER_MS  # log axis: clamp 0 ns to 1 ns
    left.step(x, cdf, where="post", color="tab:blue")
    left.set_xscale("log")
    left.set_ylim(0, 1.01)
    left.set_xlabel("latency (ms)")
    left.set_ylabel("fraction of requests")
    ccdf = 1.0 - cdf
    keep = ccdf > 0
    if np.any(keep):
        right.step(x[keep], ccdf[keep], where="post", color="tab:blue")
        right.set_yscale("log")
    right.set_xscale("log")
    right.set_xlabel("latency (ms)")
    right.set_ylabel("fraction slower (1 - CDF)")
    slo = slo_ms_of(summary)
    for ax in (left, right):
        if slo is not None:
            ax.axvline(slo, linestyle="--", color="tab:red", label=f"SLO {slo:g} ms")
            ax.legend(loc="best", fontsize="small")
        ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_batch_sizes(
    path: Path, summary: Mapping[str, object], requests: RequestTable, actions: ActionTable
) -> Path:
    """Bar chart: successful Infer actions per batch size."""
    bs = summary.get("batch_sizes")
    items: list[tuple[int, int]] = []
    if isinstance(bs, Mapping):
        items = sorted((int(k), int(v)) for k, v in bs.items())
    fig = Figure(figsize=(7, 4.5), layout=_LAYOUT)
    ax = fig.subplots()
    ax.set_title(f"{run_title(summary)}: batch sizes")
    if not items or sum(v for _, v in items) == 0:
        _no_data(ax, "no successful Infer actions")
        return _save(fig, path)
    labels = [str(k) for k, _ in items]
    counts = [v for _, v in items]
    ax.bar(labels, counts, color="tab:blue")
    ax.set_xlabel("batch size")
    ax.set_ylabel("Infer actions")
    total = sum(counts)
    for i, c in enumerate(counts):
        ax.annotate(f"{100 * c / total:.1f}%", (i, c), ha="center", va="bottom", fontsize="small")
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def _errors_ms(actions: ActionTable, kind: str) -> npt.NDArray[np.float64]:
    if kind not in actions.kind_names or SUCCESS not in actions.status_names:
        return np.zeros(0)
    mask = (actions.kind == actions.kind_names.index(kind)) & (
        actions.status == actions.status_names.index(SUCCESS)
    )
    err: npt.NDArray[np.float64] = (actions.actual_ns - actions.expected_ns)[mask] / NS_PER_MS
    return err


def plot_prediction_error(
    path: Path, summary: Mapping[str, object], requests: RequestTable, actions: ActionTable
) -> Path:
    """Histograms of actual - expected duration (ms) of successful Infer and LoadWeights."""
    fig = Figure(figsize=(11, 4.5), layout=_LAYOUT)
    axes = fig.subplots(1, 2)
    fig.suptitle(f"{run_title(summary)}: prediction error (actual - expected)")
    for ax, kind in zip(axes, (INFER, LOAD), strict=True):
        err = _errors_ms(actions, kind)
        ax.set_title(f"{kind} (n={len(err):,})")
        if len(err) == 0:
            _no_data(ax, f"no successful {kind}")
            continue
        lo, hi = np.percentile(err, [0.1, 99.9])
        lo, hi = float(min(lo, 0.0)), float(max(hi, 0.0))
        if hi - lo <= 0:
            lo, hi = lo - 0.5, hi + 0.5
        counts, edges = np.histogram(np.clip(err, lo, hi), bins=80, range=(lo, hi))
        ax.stairs(counts, edges, fill=True, color="tab:blue", alpha=0.7)
        ax.axvline(0.0, color="black", linewidth=0.8)
        if counts.max() > 0:
            ax.set_yscale("log")
        ax.set_xlabel("error (ms); over-runs > 0; tails clipped to p0.1/p99.9")
        ax.set_ylabel("actions")
        ax.grid(True, alpha=0.3)
    return _save(fig, path)


PLOTS: tuple[tuple[str, PlotFn], ...] = (
    (GOODPUT_LATENCY, plot_goodput_latency),
    (LATENCY_CDF, plot_latency_cdf),
    (BATCH_SIZES, plot_batch_sizes),
    (PREDICTION_ERROR, plot_prediction_error),
)


def write_plots(
    out_dir: Path, summary: Mapping[str, object], requests: RequestTable, actions: ActionTable
) -> list[Path]:
    """All four PNGs into ``out_dir``; returns their paths."""
    return [fn(out_dir / name, summary, requests, actions) for name, fn in PLOTS]
