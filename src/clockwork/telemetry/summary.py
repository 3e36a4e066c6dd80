"""Figures of one run (DESIGN.md s.7), computed from the request and action tables.

``summarize`` returns a JSON-serialisable dict whose keys are always present (a figure that cannot
be computed, e.g. a percentile of no data, is ``None``). Times are in ns in the tables; the summary
speaks seconds, milliseconds and rates. Keys:

Run description (copied from ``RunInfo``):
    ``policy`` (str), ``workload`` (dict; ``name`` and ``synthetic`` are used in titles),
    ``duration_s`` (float), ``devices``, ``models``, ``seed`` (int), ``extra`` (dict).
    ``partial`` (bool): the run was stopped early (Ctrl-C); its figures cover what ran, and
        ``duration_s`` is how far its arrivals got.

Requests:
    ``requests``: count offered (rows of the request table).
    ``succeeded``: count with status SUCCESS (answered within the deadline).
    ``late``: count with status LATE (answered after the deadline; a miss).
    ``refused``: {status name: count} for every non-SUCCESS, non-LATE status; every
        ``ResponseStatus`` name is present (0 when absent), plus any other name in the table.
        Invariant: ``succeeded + late + sum(refused.values()) == requests``.
    ``slo_attainment``: ``succeeded / requests`` (float in [0, 1]; ``None`` when no requests).
    ``slo_attainment_pct_str``: the same as a percentage with enough decimals that the miss
        fraction shows at least two significant digits ("99.9970%", "50.00%"); exactly "100%" only
        when every request succeeded; "n/a" when there were none. See ``format_attainment``.
    ``offered_rps``: requests / duration_s.
    ``goodput_rps``: succeeded / duration_s.
    ``ideal_capacity_rps``: from ``RunInfo``.
    ``goodput_fraction_of_ideal``: goodput_rps / ideal_capacity_rps (``None`` if capacity <= 0).
    ``latency_ms``: {"count", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"} of
        ``response_ns - arrival_ns`` over successful requests (SUCCESS: answered inside their
        deadline), in ms. Percentiles are nearest-rank (always an observed value); ``None`` when
        count is 0.
    ``delivered_latency_ms``: the same over every request that delivered a result (SUCCESS and
        LATE): the tail that a deadline-blind server's late answers make.
    ``cold_starts``: requests whose model was on no device when they arrived.

Actions:
    ``loads``, ``evictions``, ``infers``: counts of SUCCESS LoadWeights / EvictWeights / Infer.
    ``actions_by_status``: {kind: {status: count}} over all actions.
    ``batch_sizes``: {str(batch size): count of SUCCESS Infer actions}, ascending sizes.
    ``prediction_error``: {"Infer": E, "LoadWeights": E} where E is the distribution of
        ``actual_ns - expected_ns`` of SUCCESS actions in ms: {"count", "p1", "p50", "p99",
        "p99.9", "max", "mean", "frac_over"} (``frac_over``: fraction with actual > expected).
    ``device_utilisation``: sum of SUCCESS Infer ``actual_ns`` / (devices * the longer of
    duration_ns and the end of the last successful Infer).

Cost of the simulation and of the controller:
    ``sim_wall_s``: wall-clock seconds the run took.
    ``sim_requests_per_wall_s``: requests / sim_wall_s.
    ``scheduler_cpu_s``: CPU seconds spent in the controller (``None`` if not measured).
    ``scheduler_cpu_us_per_request``: scheduler_cpu_s / requests, in microseconds.
    ``scheduler_requests_per_cpu_s``: requests one controller core sustains: requests / cpu s.

Over time:
    ``timeseries``: see ``timeseries``; bucket chosen by ``choose_bucket_ns`` (1 s, or coarser so
        there are at most 2,000 buckets).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from clockwork.core.requests import ResponseStatus
from clockwork.core.units import NS_PER_MS, NS_PER_S
from clockwork.telemetry.records import ActionTable, RequestTable

MAX_BUCKETS = 2_000

SUCCESS = "SUCCESS"
LATE = "LATE"
INFER = "Infer"
LOAD = "LoadWeights"
EVICT = "EvictWeights"

LATENCY_QUANTILES: tuple[tuple[str, Fraction], ...] = (
    ("p50", Fraction(50)),
    ("p90", Fraction(90)),
    ("p99", Fraction(99)),
    ("p99.9", Fraction("99.9")),
    ("p99.99", Fraction("99.99")),
)
ERROR_QUANTILES: tuple[tuple[str, Fraction], ...] = (
    ("p1", Fraction(1)),
    ("p50", Fraction(50)),
    ("p99", Fraction(99)),
    ("p99.9", Fraction("99.9")),
)

Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What a run was, beside its logs. ``workload`` should carry ``name`` (and ``synthetic: True``
    for generated data, ``slo_ms`` when one SLO applies to every request)."""

    policy: str
    workload: dict[str, object]
    duration_ns: int
    devices: int
    models: int
    seed: int
    ideal_capacity_rps: float
    sim_wall_s: float
    scheduler_cpu_s: float | None = None
    extra: dict[str, object] = field(default_factory=dict)
    # stopped before its end (Ctrl-C): the figures cover what ran, over ``duration_ns``
    partial: bool = False


# --------------------------------------------------------------------------- helpers


def nearest_rank_indices(n: int, qs: Sequence[Fraction]) -> list[int]:
    """0-based indices into a sorted array of ``n`` values of the nearest-rank percentiles ``qs``.

    The p-th percentile is the ceil(p/100 * n)-th smallest value (at least the first), in exact
    rational arithmetic: p99.9 of 1,000 values is the 999th, never the 1,000th by float rounding.
    """
    if n <= 0:
        raise ValueError("no values")
    return [min(n, max(1, math.ceil(q * n / 100))) - 1 for q in qs]


def nearest_rank(values: Int64Array, qs: Sequence[Fraction]) -> list[int]:
    """Nearest-rank percentiles of ``values`` (any order; not modified), as observed ints."""
    n = len(values)
    idx = nearest_rank_indices(n, qs)
    kth = sorted(set(idx))
    part = np.partition(values, kth)
    return [int(part[i]) for i in idx]


def format_attainment(attainment: float | None) -> str:
    """A fraction in [0, 1] as a percentage with enough nines.

    The number of decimals is the smallest (at least 2) that shows the miss fraction
    ``100 * (1 - attainment)`` with two significant digits, so a value below 1 never rounds up to
    100: 0.99997 -> "99.9970%", 0.9999 -> "99.990%", 0.999 -> "99.90%", 0.5 -> "50.00%",
    0 -> "0.00%". Exactly 1 gives "100%"; ``None`` gives "n/a".
    """
    if attainment is None:
        return "n/a"
    if attainment >= 1.0:
        return "100%"
    attainment = max(0.0, attainment)
    # Round away float noise (100 * (1 - 0.9999) is 0.00999...): a fraction near 1 carries ~1e-14
    # absolute error in percent, so 12 decimals keep every meaningful digit.
    raw = (1.0 - attainment) * 100.0
    miss_pct = round(raw, 12) or raw
    decimals = max(2, 1 - math.floor(math.log10(miss_pct)))
    return f"{attainment * 100.0:.{decimals}f}%"


def _code(names: Sequence[str], name: str) -> int:
    """The code of ``name`` in a code table, or -1 (matches nothing) when it never occurred."""
    try:
        return names.index(name)
    except ValueError:
        return -1


def _ms(ns: float) -> float:
    return ns / NS_PER_MS


def _distribution_ms(
    values: Int64Array, qs: Sequence[tuple[str, Fraction]]
) -> dict[str, float | int | None]:
    out: dict[str, float | int | None] = {"count": len(values)}
    if len(values) == 0:
        out.update({k: None for k, _ in qs})
        out["max"] = None
        out["mean"] = None
        return out
    got = nearest_rank(values, [q for _, q in qs])
    for (k, _), v in zip(qs, got, strict=True):
        out[k] = _ms(v)
    out["max"] = _ms(int(values.max()))
    out["mean"] = _ms(float(values.mean()))
    return out


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def choose_bucket_ns(duration_ns: int, max_buckets: int = MAX_BUCKETS) -> int:
    """1 s, or a whole number of seconds large enough for at most ``max_buckets`` buckets."""
    seconds = max(1, math.ceil(max(0, duration_ns) / (max_buckets * NS_PER_S)))
    return seconds * NS_PER_S


# --------------------------------------------------------------------------- time series


def timeseries(
    requests: RequestTable,
    actions: ActionTable,
    bucket_ns: int,
    duration_ns: int | None = None,
) -> dict[str, object]:
    """Per-bucket figures, bucketed by request arrival time (actions by the time they began).

    Returns lists of equal length, one entry per bucket: ``t_s`` (bucket start, s),
    ``offered_rps``, ``goodput_rps``, ``late_rps``, ``refused_rps`` (arrivals in the bucket per
    second of bucket, by how they ended), ``p99_latency_ms`` (nearest-rank p99 of delivered
    results, SUCCESS and LATE; ``None`` for a bucket with none), ``infers`` and ``loads`` (SUCCESS
    actions that began in the bucket); and ``bucket_s``. The buckets cover ``duration_ns`` (or the
    last arrival); a last, partial bucket's rates are per second of its actual width.
    """
    if bucket_ns <= 0:
        raise ValueError("bucket_ns must be positive")
    arrival = requests.arrival_ns
    last = int(arrival.max()) + 1 if len(arrival) else 0
    span = max(last, duration_ns if duration_ns is not None else 0)
    nb = max(1, -(-span // bucket_ns))
    widths_s = np.full(nb, bucket_ns / NS_PER_S, dtype=np.float64)
    if duration_ns is not None and duration_ns > 0 and last <= duration_ns:
        tail = duration_ns - (nb - 1) * bucket_ns
        widths_s[-1] = tail / NS_PER_S

    bucket = np.clip(arrival // bucket_ns, 0, nb - 1)
    status = requests.status
    ok = status == _code(requests.status_names, SUCCESS)
    late = status == _code(requests.status_names, LATE)
    delivered = ok | late

    offered = np.bincount(bucket, minlength=nb)
    good = np.bincount(bucket[ok], minlength=nb)
    n_late = np.bincount(bucket[late], minlength=nb)
    refused = offered - good - n_late

    p99 = _bucket_p99(bucket[delivered], (requests.response_ns - arrival)[delivered], nb)

    a_ok = actions.status == _code(actions.status_names, SUCCESS)
    began = actions.began_ns
    a_bucket = np.clip(began // bucket_ns, 0, nb - 1)
    infers = np.bincount(
        a_bucket[a_ok & (actions.kind == _code(actions.kind_names, INFER)) & (began >= 0)],
        minlength=nb,
    )
    loads = np.bincount(
        a_bucket[a_ok & (actions.kind == _code(actions.kind_names, LOAD)) & (began >= 0)],
        minlength=nb,
    )
    return {
        "bucket_s": bucket_ns / NS_PER_S,
        "t_s": (np.arange(nb, dtype=np.float64) * (bucket_ns / NS_PER_S)).tolist(),
        "offered_rps": (offered / widths_s).tolist(),
        "goodput_rps": (good / widths_s).tolist(),
        "late_rps": (n_late / widths_s).tolist(),
        "refused_rps": (refused / widths_s).tolist(),
        "p99_latency_ms": p99,
        "infers": infers[:nb].tolist(),
        "loads": loads[:nb].tolist(),
    }


def _bucket_p99(bucket: Int64Array, latency: Int64Array, nb: int) -> list[float | None]:
    """Nearest-rank p99 of ``latency`` within each of ``nb`` buckets, vectorised."""
    out: list[float | None] = [None] * nb
    if len(latency) == 0:
        return out
    lo = int(latency.min())
    rel = latency - lo  # >= 0
    width = int(rel.max()) + 1
    if nb * width < 2**62:
        key = np.sort(bucket * width + rel)
        sorted_rel = key % width
    else:  # latencies too wide to pack beside the bucket: sort by two keys
        order = np.lexsort((rel, bucket))
        sorted_rel = rel[order]
    counts = np.bincount(bucket, minlength=nb)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = np.flatnonzero(counts)
    c = counts[has]
    # ceil(99 * c / 100) in integers, at least 1
    rank = np.maximum(1, (99 * c + 99) // 100)
    vals = sorted_rel[starts[has] + rank - 1] + lo
    for b, v in zip(has.tolist(), vals.tolist(), strict=True):
        out[b] = _ms(v)
    return out


# --------------------------------------------------------------------------- summary


def _status_counts(codes: Int64Array, names: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(codes, minlength=len(names)) if len(codes) else np.zeros(len(names), int)
    return {name: int(counts[i]) for i, name in enumerate(names)}


def summarize(requests: RequestTable, actions: ActionTable, info: RunInfo) -> dict[str, object]:
    """Every figure of DESIGN.md s.7 for one run; the keys are listed in the module docstring."""
    n = len(requests)
    duration_s = info.duration_ns / NS_PER_S

    by_status = _status_counts(requests.status, requests.status_names)
    succeeded = by_status.get(SUCCESS, 0)
    late = by_status.get(LATE, 0)
    refused: dict[str, int] = {s.name: 0 for s in ResponseStatus if s.name not in (SUCCESS, LATE)}
    for name, count in by_status.items():
        if name not in (SUCCESS, LATE):
            refused[name] = refused.get(name, 0) + count

    successful = requests.status == _code(requests.status_names, SUCCESS)
    delivered = successful | (requests.status == _code(requests.status_names, LATE))
    all_latency = requests.response_ns - requests.arrival_ns
    attainment = succeeded / n if n else None

    # actions
    kinds = actions.kind_names
    a_ok = actions.status == _code(actions.status_names, SUCCESS)
    is_infer = actions.kind == _code(kinds, INFER)
    is_load = actions.kind == _code(kinds, LOAD)
    is_evict = actions.kind == _code(kinds, EVICT)
    infer_ok = a_ok & is_infer
    load_ok = a_ok & is_load

    actions_by_status: dict[str, dict[str, int]] = {}
    if len(actions):
        n_st = max(1, len(actions.status_names))
        pair = np.bincount(actions.kind * n_st + actions.status, minlength=len(kinds) * n_st)
        for k, kind in enumerate(kinds):
            row = {
                st: int(pair[k * n_st + s])
                for s, st in enumerate(actions.status_names)
                if pair[k * n_st + s]
            }
            if row:
                actions_by_status[kind] = row

    batch_sizes: dict[str, int] = {}
    bs = actions.batch_size[infer_ok]
    if len(bs):
        sizes, counts = np.unique(bs, return_counts=True)
        batch_sizes = {str(int(s)): int(c) for s, c in zip(sizes, counts, strict=True)}

    def error_of(mask: npt.NDArray[np.bool_]) -> dict[str, float | int | None]:
        err = (actions.actual_ns - actions.expected_ns)[mask]
        d = _distribution_ms(err, ERROR_QUANTILES)
        d["frac_over"] = float(np.count_nonzero(err > 0) / len(err)) if len(err) else None
        return d

    infer_busy_ns = int(actions.actual_ns[infer_ok].sum())
    # work that runs on after the last arrival (the drain) counts against the time it took
    busy_span_ns = max(
        info.duration_ns, int(actions.ended_ns[infer_ok].max()) if infer_ok.any() else 0
    )
    ideal = float(info.ideal_capacity_rps)
    goodput = _ratio(succeeded, duration_s)
    cpu = info.scheduler_cpu_s

    out: dict[str, object] = {
        "policy": info.policy,
        "partial": info.partial,
        "workload": dict(info.workload),
        "duration_s": duration_s,
        "devices": info.devices,
        "models": info.models,
        "seed": info.seed,
        "requests": n,
        "succeeded": succeeded,
        "late": late,
        "refused": refused,
        "slo_attainment": attainment,
        "slo_attainment_pct_str": format_attainment(attainment),
        "offered_rps": _ratio(n, duration_s),
        "goodput_rps": goodput,
        "ideal_capacity_rps": ideal,
        "goodput_fraction_of_ideal": (_ratio(goodput, ideal) if goodput is not None else None),
        "latency_ms": _distribution_ms(all_latency[successful], LATENCY_QUANTILES),
        "delivered_latency_ms": _distribution_ms(all_latency[delivered], LATENCY_QUANTILES),
        "cold_starts": int(np.count_nonzero(requests.cold_start)),
        "loads": int(np.count_nonzero(load_ok)),
        "evictions": int(np.count_nonzero(a_ok & is_evict)),
        "infers": int(np.count_nonzero(infer_ok)),
        "actions_by_status": actions_by_status,
        "batch_sizes": batch_sizes,
        "prediction_error": {INFER: error_of(infer_ok), LOAD: error_of(load_ok)},
        "device_utilisation": _ratio(infer_busy_ns, info.devices * busy_span_ns),
        "sim_wall_s": info.sim_wall_s,
        "sim_requests_per_wall_s": _ratio(n, info.sim_wall_s),
        "scheduler_cpu_s": cpu,
        "scheduler_cpu_us_per_request": (cpu * 1e6 / n if cpu is not None and n else None),
        "scheduler_requests_per_cpu_s": _ratio(n, cpu) if cpu is not None else None,
        "extra": dict(info.extra),
        "timeseries": timeseries(
            requests, actions, choose_bucket_ns(info.duration_ns), info.duration_ns
        ),
    }
    return out
