"""Replay of the Azure Functions 2019 invocation trace (DESIGN.md s.6).

The trace (``invocations.csv``, see ``../shared/data/traces/README.md`` s.2) has one row per
function and one column per minute holding that function's invocation count in that minute.
:class:`AzureTrace` loads and validates it; :class:`AzureReplay` maps functions onto models and
turns the per-minute counts, scaled to a target load, into Poisson arrivals minute by minute.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from clockwork.core.errors import InvalidInputError
from clockwork.core.units import NS_PER_S
from clockwork.workload._common import (
    CHUNK_ARRIVALS,
    check_float,
    check_int,
    check_models,
    check_seed,
    emit,
    make_rng,
    name_array,
)
from clockwork.workload.base import Arrival

#: The 500-function sample of the 2019 trace kept in the shared data folder. The path is relative,
#: so it is resolved against the current working directory when the file is opened: it is right
#: when running from the repository root (``/work/main``), whose sibling is ``../shared``. Pass
#: an explicit path to :meth:`AzureTrace.load` when running from anywhere else.
DEFAULT_AZURE_TRACE = Path("../shared/data/traces/azure_functions_2019_sample500/invocations.csv")

#: The four columns before the minute columns, in order.
ID_COLUMNS = ("HashOwner", "HashApp", "HashFunction", "Trigger")

NS_PER_MINUTE = 60 * NS_PER_S


def _is_count(cell: str) -> bool:
    return cell.isascii() and cell.isdigit()


@dataclass(frozen=True, eq=False)
class AzureTrace:
    """Per-minute invocation counts of ``F`` functions over ``T`` consecutive minutes.

    ``counts[f, t]`` is the count of function ``f`` (row order of the file) in minute
    ``minute_labels[t]`` of the original day. ``path`` is the file it came from, or ``None``
    for a trace built in memory with :meth:`from_counts`, which is then ``synthetic``.
    """

    counts: NDArray[np.int64]
    minute_labels: tuple[int, ...]
    owners: tuple[str, ...]
    apps: tuple[str, ...]
    functions: tuple[str, ...]
    triggers: tuple[str, ...]
    path: Path | None = None
    synthetic: bool = False

    def __post_init__(self) -> None:
        counts = np.array(self.counts, dtype=np.int64, copy=True)
        if counts.ndim != 2 or counts.shape[0] == 0 or counts.shape[1] == 0:
            raise InvalidInputError(
                f"AzureTrace: counts must be a non-empty 2-D array, got shape {counts.shape}"
            )
        if (counts < 0).any():
            raise InvalidInputError("AzureTrace: counts must be non-negative")
        f, t = counts.shape
        if len(self.minute_labels) != t:
            raise InvalidInputError(
                f"AzureTrace: {len(self.minute_labels)} minute labels for {t} minute columns"
            )
        for name in ("owners", "apps", "functions", "triggers"):
            if len(getattr(self, name)) != f:
                raise InvalidInputError(
                    f"AzureTrace: {len(getattr(self, name))} {name} for {f} function rows"
                )
        counts.setflags(write=False)
        object.__setattr__(self, "counts", counts)

    @classmethod
    def load(cls, path: str | os.PathLike[str] = DEFAULT_AZURE_TRACE) -> AzureTrace:
        """Read and validate an ``invocations.csv`` file.

        Checks: the header is ``HashOwner,HashApp,HashFunction,Trigger`` followed by at least
        one minute column, the minute columns are consecutive non-negative integers, every row
        has as many cells as the header, the four id cells are non-empty and every count is a
        non-negative integer (ASCII digits only). Blank lines are skipped. Any problem raises
        :class:`InvalidInputError` naming the file, the line and (for cells) the column.
        """
        p = Path(path)
        try:
            with p.open("r", encoding="utf-8-sig", newline="") as fh:
                return cls._parse(p, fh)
        except FileNotFoundError:
            raise InvalidInputError(
                f"{p}: Azure trace file not found (resolved to {p.resolve()})"
            ) from None
        except IsADirectoryError:
            raise InvalidInputError(f"{p}: is a directory, not an invocations.csv file") from None
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{p}: not UTF-8 text ({exc.reason})") from None
        except csv.Error as exc:
            raise InvalidInputError(f"{p}: malformed CSV: {exc}") from None
        except OSError as exc:
            raise InvalidInputError(f"{p}: cannot read Azure trace: {exc}") from None

    @classmethod
    def _parse(cls, p: Path, fh: Iterator[str]) -> AzureTrace:
        reader = csv.reader(fh, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise InvalidInputError(f"{p}: empty file (expected a header line)") from None
        if len(header) <= len(ID_COLUMNS):
            raise InvalidInputError(
                f"{p}, line {reader.line_num}: header has {len(header)} columns; expected "
                f"{','.join(ID_COLUMNS)} followed by at least one minute column"
            )
        for col, (got, want) in enumerate(zip(header, ID_COLUMNS, strict=False), start=1):
            if got != want:
                raise InvalidInputError(
                    f"{p}, line {reader.line_num}, column {col}: header is {got!r}, expected "
                    f"{want!r}"
                )
        labels: list[int] = []
        for col, cell in enumerate(header[len(ID_COLUMNS) :], start=len(ID_COLUMNS) + 1):
            if not _is_count(cell):
                raise InvalidInputError(
                    f"{p}, line {reader.line_num}, column {col}: minute header {cell!r} is not a "
                    "non-negative integer"
                )
            minute = int(cell)
            if labels and minute != labels[-1] + 1:
                raise InvalidInputError(
                    f"{p}, line {reader.line_num}, column {col}: minute header {minute} does not "
                    f"follow {labels[-1]} (minute columns must be consecutive)"
                )
            labels.append(minute)

        width = len(header)
        ids: list[list[str]] = [[], [], [], []]
        rows: list[list[int]] = []
        for row in reader:
            if not row:
                continue
            line = reader.line_num
            if len(row) != width:
                raise InvalidInputError(
                    f"{p}, line {line}: {len(row)} columns, but the header has {width}"
                )
            for col in range(len(ID_COLUMNS)):
                if not row[col].strip():
                    raise InvalidInputError(
                        f"{p}, line {line}, column {col + 1} ({ID_COLUMNS[col]}): empty"
                    )
                ids[col].append(row[col])
            cells = row[len(ID_COLUMNS) :]
            joined = "".join(cells)
            if not (joined.isascii() and joined.isdigit() and all(cells)):
                for col, cell in enumerate(cells, start=len(ID_COLUMNS) + 1):
                    if not _is_count(cell):
                        raise InvalidInputError(
                            f"{p}, line {line}, column {col} (minute {header[col - 1]}): count "
                            f"{cell!r} is not a non-negative integer"
                        )
            values = list(map(int, cells))
            if max(values) >= 1 << 62:
                col = values.index(max(values)) + len(ID_COLUMNS) + 1
                raise InvalidInputError(
                    f"{p}, line {line}, column {col} (minute {header[col - 1]}): count "
                    f"{max(values)} is too large"
                )
            rows.append(values)
        if not rows:
            raise InvalidInputError(f"{p}: header only, no function rows")
        return cls(
            counts=np.array(rows, dtype=np.int64),
            minute_labels=tuple(labels),
            owners=tuple(ids[0]),
            apps=tuple(ids[1]),
            functions=tuple(ids[2]),
            triggers=tuple(ids[3]),
            path=p,
            synthetic=False,
        )

    @classmethod
    def from_counts(
        cls, counts: Sequence[Sequence[int]] | NDArray[np.integer], first_minute: int = 0
    ) -> AzureTrace:
        """A synthetic trace from an ``F x T`` count matrix (for tests and experiments); its
        functions are named ``f0``, ``f1``, ... and ``describe()`` says it is synthetic."""
        arr = np.asarray(counts)
        if arr.ndim != 2:
            raise InvalidInputError(f"AzureTrace.from_counts: need a 2-D matrix, got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise InvalidInputError(
                f"AzureTrace.from_counts: counts must be integers, got dtype {arr.dtype}"
            )
        f, t = arr.shape
        names = tuple(f"f{i}" for i in range(f))
        return cls(
            counts=arr.astype(np.int64),
            minute_labels=tuple(range(first_minute, first_minute + t)),
            owners=names,
            apps=names,
            functions=names,
            triggers=("synthetic",) * f,
            path=None,
            synthetic=True,
        )

    @property
    def num_functions(self) -> int:
        return int(self.counts.shape[0])

    @property
    def num_minutes(self) -> int:
        return int(self.counts.shape[1])

    @property
    def totals(self) -> NDArray[np.int64]:
        """Invocations of each function over the whole trace."""
        totals: NDArray[np.int64] = self.counts.sum(axis=1)
        return totals

    def describe(self) -> dict[str, object]:
        return {
            "path": None if self.path is None else str(self.path),
            "resolved_path": None if self.path is None else str(self.path.resolve()),
            "synthetic": self.synthetic,
            "functions": self.num_functions,
            "minutes": self.num_minutes,
            "first_minute_label": self.minute_labels[0],
            "invocations": int(self.counts.sum()),
        }


@dataclass(frozen=True, eq=False)
class AzureReplay:
    """Poisson arrivals following an :class:`AzureTrace`, scaled to a target load.

    **Mapping.** Functions are ranked by total invocations over the whole trace (descending;
    ties keep row order) and function ``i`` of ``F`` goes to model ``floor(i * N / F)``: models
    get contiguous blocks of the ranking, popular functions on the first models. When there are
    more models than functions, ``copies = ceil(N / F)`` copies of the function set are made
    first; copy ``k`` is the trace delayed cyclically by ``k * shift_minutes`` (its minute ``t``
    is the original minute ``(t - k * shift) mod T``; default ``shift = T // copies``). The
    copies have the same totals as their originals; equal totals are ranked by copy, then by
    row. ``F`` above is then ``F * copies``. An explicit ``shift_minutes`` is taken mod ``T``
    and ignored when no copies are needed. After construction, ``function_model[k * F + row]``
    is the model index of row ``row``, copy ``k``, and ``model_counts[j, t]`` is model ``j``'s
    summed (unscaled) count in trace minute ``t``.

    **Scaling.** The replay covers ``M = ceil(duration_ns / minute_ns)`` trace minutes from
    ``start_minute`` (an index into the trace's minute columns, 0 = first column), wrapping
    around to minute 0 when it runs past the end; the last minute may be partial. A trace
    minute lasts ``minute_ns`` (compressing it raises the rate). ``trace_mean_rps`` is the mean
    invocation rate of the window at that minute length (partial minute weighted by its
    length), and every count is multiplied by ``scale = load_factor * capacity_rps /
    trace_mean_rps``, so the mean offered rate is ``load_factor * capacity_rps``.

    **Arrivals.** For each replayed minute and each model, the count is Poisson with mean
    (the model's summed counts in that minute) * ``scale`` (* the fraction of a partial minute)
    and the times are uniform within the minute (cut at ``duration_ns``). Minutes are generated
    one at a time, vectorised over models; within a minute arrivals are sorted by time, ties by
    model index. A minute expecting more than ``CHUNK_ARRIVALS`` (65,536) arrivals is drawn in
    equal time slices of about that many (the same Poisson process), so memory stays bounded.
    """

    trace: AzureTrace
    models: Sequence[str]
    capacity_rps: float
    load_factor: float
    duration_ns: int
    slo_ns: int
    seed: int
    minute_ns: int = NS_PER_MINUTE
    start_minute: int = 0
    shift_minutes: int | None = None
    copies: int = field(init=False)
    shift_used: int = field(init=False)
    model_counts: NDArray[np.int64] = field(init=False, repr=False)
    function_model: NDArray[np.int64] = field(init=False, repr=False)
    num_replay_minutes: int = field(init=False)
    wrapped: bool = field(init=False)
    trace_mean_rps: float = field(init=False)
    scale: float = field(init=False)
    _names: NDArray[np.object_] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        owner = "AzureReplay"
        if not isinstance(self.trace, AzureTrace):
            raise InvalidInputError(f"{owner}: trace must be an AzureTrace, got {self.trace!r}")
        models = check_models(owner, self.models)
        capacity = check_float(owner, "capacity_rps", self.capacity_rps, positive=True)
        load = check_float(owner, "load_factor", self.load_factor, positive=True)
        check_int(owner, "duration_ns", self.duration_ns, minimum=1)
        check_int(owner, "slo_ns", self.slo_ns, minimum=1)
        check_seed(owner, self.seed)
        check_int(owner, "minute_ns", self.minute_ns, minimum=1)
        f, t = self.trace.counts.shape
        check_int(owner, "start_minute", self.start_minute, minimum=0)
        if self.start_minute >= t:
            raise InvalidInputError(
                f"{owner}: start_minute {self.start_minute} is past the trace's {t} minutes"
            )
        n = len(models)
        copies = -(-n // f) if n > f else 1
        if self.shift_minutes is not None:
            check_int(owner, "shift_minutes", self.shift_minutes, minimum=0)
        if copies == 1:
            shift = 0
        elif self.shift_minutes is None:
            shift = t // copies
        else:
            shift = self.shift_minutes % t

        # Rank functions (copy-major: id = k * f + row) by total, descending, stable.
        expanded_totals = np.tile(self.trace.totals, copies)
        order = np.argsort(-expanded_totals, kind="stable")
        total_functions = f * copies
        model_of_rank = (np.arange(total_functions, dtype=np.int64) * n) // total_functions
        function_model = np.empty(total_functions, dtype=np.int64)
        function_model[order] = model_of_rank

        # Sum each model's functions per minute, one copy at a time (a cyclic delay of a sum is
        # the sum of the delayed rows), never materialising F * copies rows.
        model_counts = np.zeros((n, t), dtype=np.int64)
        for k in range(copies):
            rows_model = function_model[k * f : (k + 1) * f]
            by_model = np.argsort(rows_model, kind="stable")
            sorted_models = rows_model[by_model]
            starts = np.flatnonzero(np.r_[True, sorted_models[1:] != sorted_models[:-1]])
            sums = np.add.reduceat(self.trace.counts[by_model], starts, axis=0)
            model_counts[sorted_models[starts]] += np.roll(sums, k * shift, axis=1)
        model_counts.setflags(write=False)
        function_model.setflags(write=False)

        # The replay window and its mean rate at minute_ns per trace minute.
        m = -(-self.duration_ns // self.minute_ns)
        per_minute_total = model_counts.sum(axis=0).astype(np.float64)
        full_cycles, rest = divmod(m - 1, t)  # the first m - 1 minutes are whole
        whole = full_cycles * float(per_minute_total.sum())
        idx = (self.start_minute + np.arange(rest)) % t
        whole += float(per_minute_total[idx].sum())
        last_len = self.duration_ns - (m - 1) * self.minute_ns
        last_idx = (self.start_minute + m - 1) % t
        window_invocations = whole + float(per_minute_total[last_idx]) * last_len / self.minute_ns
        if window_invocations <= 0.0:
            raise InvalidInputError(
                f"{owner}: the trace has no invocations in the replayed minutes "
                f"{self.start_minute}..{self.start_minute + m - 1} (mod {t}); cannot scale it"
            )
        trace_mean_rps = window_invocations / (self.duration_ns / NS_PER_S)

        object.__setattr__(self, "models", models)
        object.__setattr__(self, "capacity_rps", capacity)
        object.__setattr__(self, "load_factor", load)
        object.__setattr__(self, "copies", copies)
        object.__setattr__(self, "shift_used", shift)
        object.__setattr__(self, "model_counts", model_counts)
        object.__setattr__(self, "function_model", function_model)
        object.__setattr__(self, "num_replay_minutes", m)
        object.__setattr__(self, "wrapped", self.start_minute + m > t)
        object.__setattr__(self, "trace_mean_rps", trace_mean_rps)
        object.__setattr__(self, "scale", load * capacity / trace_mean_rps)
        object.__setattr__(self, "_names", name_array(models))

    @property
    def mean_offered_rps(self) -> float:
        """Expected arrivals per second over the run: ``load_factor * capacity_rps``."""
        return self.load_factor * self.capacity_rps

    def trace_minute(self, replay_minute: int) -> int:
        """The trace minute index (column) that replayed minute ``replay_minute`` plays."""
        return (self.start_minute + replay_minute) % self.trace.num_minutes

    def model_functions(self, model: str) -> list[tuple[int, int]]:
        """The ``(row in the trace, copy)`` pairs of the functions mapped to ``model``."""
        try:
            j = list(self.models).index(model)
        except ValueError:
            raise InvalidInputError(f"AzureReplay: unknown model {model!r}") from None
        ids = np.flatnonzero(self.function_model == j).tolist()
        f = self.trace.num_functions
        return [(i % f, i // f) for i in ids]

    def expected_counts(self, replay_minute: int) -> NDArray[np.float64]:
        """Each model's expected arrivals in replayed minute ``replay_minute`` (partial last
        minute included)."""
        t0 = replay_minute * self.minute_ns
        length = min(self.minute_ns, self.duration_ns - t0)
        if replay_minute < 0 or length <= 0:
            raise InvalidInputError(
                f"AzureReplay: replay minute {replay_minute} is outside the run"
            )
        column = self.model_counts[:, self.trace_minute(replay_minute)].astype(np.float64)
        result: NDArray[np.float64] = column * (self.scale * length / self.minute_ns)
        return result

    def describe(self) -> dict[str, object]:
        blocks = np.bincount(self.function_model, minlength=len(self.models))
        return {
            "kind": "azure_replay",
            "synthetic": self.trace.synthetic,
            "trace": self.trace.describe(),
            "trace_path": None if self.trace.path is None else str(self.trace.path),
            "functions": self.trace.num_functions,
            "copies": self.copies,
            "copies_made": self.copies > 1,
            "shift_minutes": self.shift_used,
            "replayed_functions": self.trace.num_functions * self.copies,
            "functions_per_model": [int(blocks.min()), int(blocks.max())],
            "models": list(self.models),
            "num_models": len(self.models),
            "capacity_rps": self.capacity_rps,
            "load_factor": self.load_factor,
            "trace_mean_rps": self.trace_mean_rps,
            "scale": self.scale,
            "mean_offered_rps": self.mean_offered_rps,
            "minute_ns": self.minute_ns,
            "start_minute": self.start_minute,
            "start_minute_label": self.trace.minute_labels[self.start_minute],
            "replay_minutes": self.num_replay_minutes,
            "wrapped": self.wrapped,
            "duration_ns": self.duration_ns,
            "slo_ns": self.slo_ns,
            "seed": self.seed,
        }

    def arrivals(self) -> Iterator[Arrival]:
        rng = make_rng(self.seed)
        n = len(self.models)
        model_ids = np.arange(n, dtype=np.int64)
        # Sort one int64 key (time * n + model) instead of argsorting times: same order (ties by
        # model), several times faster. Fall back to argsort if the key could overflow.
        key_sort = self.minute_ns * n < (1 << 62)
        for minute in range(self.num_replay_minutes):
            t0 = minute * self.minute_ns
            length = min(self.minute_ns, self.duration_ns - t0)
            expected = self.expected_counts(minute)
            # A busy minute is split into equal slices of about CHUNK_ARRIVALS expected arrivals
            # each (a Poisson process has independent increments, so this is the same process),
            # which bounds the memory held at once whatever the rate.
            slices = max(1, min(length, math.ceil(float(expected.sum()) / CHUNK_ARRIVALS)))
            bounds = [t0 + length * i // slices for i in range(slices + 1)]
            for lo, hi in itertools.pairwise(bounds):
                counts = rng.poisson(expected * ((hi - lo) / length))
                total = int(counts.sum())
                if total == 0:
                    continue
                offsets = rng.integers(0, hi - lo, size=total, dtype=np.int64)
                which = np.repeat(model_ids, counts)
                if key_sort:
                    keys = offsets * n + which
                    keys.sort()
                    times, which = np.divmod(keys, n)
                else:
                    order = np.argsort(offsets, kind="stable")
                    times, which = offsets[order], which[order]
                times += lo
                yield from emit(times, which, self._names, self.slo_ns)

    def on_response(self, arrival: Arrival, now_ns: int) -> Arrival | None:
        return None
