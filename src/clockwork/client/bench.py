"""``clockwork bench --url``: drive any Open Inference Protocol server with a workload, in real
time, and write the same report as the simulator.

Open loop, as ``clockwork bench-cluster`` drives its controller: each arrival of
``workload.arrivals()`` is sent at its time (real time from the start of the load) with Triton's
``timeout`` parameter set to the arrival's SLO in microseconds, whatever happened to the earlier
ones. A workload that also reacts to answers (closed loop) gets ``on_response`` for every answer
and its follow-ups are sent at their times too.

Every arrival becomes exactly one row of the request log, whatever happens to it:

- arrival = when the request was sent (client clock), deadline = arrival + SLO, response = when
  the whole answer was read;
- status: an answer within the deadline is SUCCESS, after it LATE; a refusal maps to the
  ``ResponseStatus`` the server names (Clockwork puts it in the error) or else by code: 429 /
  RESOURCE_EXHAUSTED -> DEADLINE_INFEASIBLE, 404 / NOT_FOUND -> MODEL_NOT_FOUND, 400 /
  INVALID_ARGUMENT -> INVALID_INPUT (a 503 is OVERLOADED only when the server says so, or when
  its reason is a door shedding load: ``TOO_MANY_REQUESTS``, ``TOO_MANY_CONNECTIONS``,
  ``BODY_MEMORY_FULL``, ``QUEUE_DELAY``);
- anything else gets the closest ``ResponseStatus`` and is counted in ``client_errors`` by kind:
  no answer (``transport``, ``timeout``: the client waited the SLO plus the drain;
  ``unanswered``: still in flight when the drain ended) -> WORKER_LOST; another HTTP status or
  gRPC code (``http_500``, ``grpc_INTERNAL``...) -> EXECUTION_FAILED (INVALID_INPUT for 413,
  WORKER_LOST for 503);
- an arrival that finds ``concurrency_limit`` requests already in flight is not sent: it is logged
  as refused with status ``CLIENT_DROPPED`` (answered at once) and counted in ``client_dropped``.

A request sent more than ``LATE_SUBMIT_NS`` after its time counts in ``late_submits``: this
client could not keep up, and the figures say less about the server.

Models: the workload's i-th model is the server's i-th: ``models`` as given, or the READY models
of the server's repository index in name order (``model_mapping`` in the summary says which).
Inputs are generated once per model from its metadata (batch 1, zeros or seeded random).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from clockwork.client.cpu_wait import cpu_wait
from clockwork.client.credentials import ClientCredentials
from clockwork.client.oip_client import (
    TIMEOUT,
    Endpoint,
    GrpcClient,
    HttpClient,
    InferInputs,
    OIPError,
    Outcome,
    OutcomeKind,
    connect,
    make_inputs,
    parse_endpoint,
)
from clockwork.core.errors import ConfigurationError
from clockwork.core.requests import ResponseStatus
from clockwork.core.units import NS_PER_MS, NS_PER_S, NS_PER_US
from clockwork.telemetry.progress import ProgressPrinter
from clockwork.telemetry.records import ActionLog, ActionTable, RequestLog, RequestTable
from clockwork.telemetry.summary import RunInfo, summarize
from clockwork.transport.loop import loop_factory
from clockwork.workload.base import Arrival, Workload
from clockwork.workload.closed_loop import ClosedLoop
from clockwork.workload.pacing import EARLY_NS, LATE_SUBMIT_NS

#: the status of an arrival this client did not send (too many requests in flight)
CLIENT_DROPPED = "CLIENT_DROPPED"
SOURCE_INDEX = "repository index (READY models, sorted by name)"
SOURCE_GIVEN = "given list"

_SUCCESS = ResponseStatus.SUCCESS.value
_LATE = ResponseStatus.LATE.value
_REFUSALS = frozenset(s.value for s in ResponseStatus if not s.delivered_result)
# the reasons a front door (Clockwork's) gives when it sheds load before the scheduler sees the
# request: refusals for overload, whatever the code
_DOOR_OVERLOAD = frozenset(
    {"TOO_MANY_REQUESTS", "TOO_MANY_CONNECTIONS", "BODY_MEMORY_FULL", "QUEUE_DELAY"}
)
# refusals by HTTP status / gRPC code when the server names no reason; 503 only with a reason
_BY_CODE: dict[int | str, str] = {
    429: ResponseStatus.DEADLINE_INFEASIBLE.value,
    "RESOURCE_EXHAUSTED": ResponseStatus.DEADLINE_INFEASIBLE.value,
    404: ResponseStatus.MODEL_NOT_FOUND.value,
    "NOT_FOUND": ResponseStatus.MODEL_NOT_FOUND.value,
    400: ResponseStatus.INVALID_INPUT.value,
    "INVALID_ARGUMENT": ResponseStatus.INVALID_INPUT.value,
}
# unexpected codes: the closest status (counted as client errors)
_CLOSEST: dict[int | str, str] = {
    413: ResponseStatus.INVALID_INPUT.value,
    503: ResponseStatus.WORKER_LOST.value,
    "UNAVAILABLE": ResponseStatus.WORKER_LOST.value,
}


def status_of(outcome: Outcome, deadline_ns: int) -> tuple[str, str | None]:
    """The request-log status of ``outcome`` (``deadline_ns`` on its clock) and, when the mapping
    is only the closest guess, the ``client_errors`` kind to count it under (else None). See the
    module docstring."""
    if outcome.kind is OutcomeKind.OK:
        return (_SUCCESS if outcome.recv_ns <= deadline_ns else _LATE), None
    if outcome.kind is OutcomeKind.ERROR:
        return ResponseStatus.WORKER_LOST.value, (
            "timeout" if outcome.reason == TIMEOUT else "transport"
        )
    if outcome.reason in _REFUSALS:
        return outcome.reason, None
    if outcome.reason in _DOOR_OVERLOAD:
        return ResponseStatus.OVERLOADED.value, None
    code = outcome.code if outcome.code is not None else "none"
    mapped = _BY_CODE.get(code)
    if mapped is not None:
        return mapped, None
    kind = f"http_{code}" if isinstance(code, int) else f"grpc_{code}"
    return _CLOSEST.get(code, ResponseStatus.EXECUTION_FAILED.value), kind


@dataclass(frozen=True, slots=True)
class BenchUrlResult:
    """The report of a run: ``summary`` (``summarize``'s keys plus this module's), the request
    log and an empty action log (a client sees no actions; the report writers want one)."""

    summary: dict[str, object]
    requests: RequestTable
    actions: ActionTable


# --------------------------------------------------------------------------- models


def workload_models(workload: Workload) -> list[str]:
    """The workload's model names in index order (its ``models``, else ``describe()``'s)."""
    models = getattr(workload, "models", None)
    if models is None:
        models = workload.describe().get("models")
    if isinstance(models, str) or not isinstance(models, Sequence):
        return []
    return [str(m) for m in models]


async def resolve_models(
    client: HttpClient | GrpcClient, names: Sequence[str] | None = None, count: int | None = None
) -> tuple[list[str], str]:
    """The server models to drive and where they came from: ``names`` (each checked against the
    repository index when the server has one, else by its metadata) or the first ``count`` (all
    when None) READY models of the index, sorted by name. ``ConfigurationError`` for an unknown
    name, an empty index or too few models."""
    if names:
        if len(set(names)) != len(names):
            raise ConfigurationError(f"a model is named twice in {list(names)}")
        try:
            known = {m.name for m in await client.repository_index()}
        except OIPError as e:
            if e.code is None:  # unreachable: say so now
                raise
            known = set()  # no index here: model_metadata checks each name below
        missing = [n for n in names if known and n not in known]
        if missing:
            raise ConfigurationError(
                f"unknown model(s) at {client.endpoint.url}: {', '.join(missing)}"
            )
        return list(names), SOURCE_GIVEN
    ready = sorted({m.name for m in await client.repository_index() if m.ready and m.name})
    if not ready:
        raise ConfigurationError(
            f"{client.endpoint.url} lists no READY model in its "
            "repository index; name them with --models"
        )
    if count is not None:
        if count < 1:
            raise ConfigurationError(f"the number of models must be >= 1, got {count}")
        if count > len(ready):
            raise ConfigurationError(
                f"{count} models asked for, but {client.endpoint.url} has "
                f"{len(ready)} READY: {', '.join(ready[:10])}"
                f"{', ...' if len(ready) > 10 else ''}"
            )
        ready = ready[:count]
    return ready, SOURCE_INDEX


def discover_models(
    url: str,
    protocol: str | None = None,
    *,
    names: Sequence[str] | None = None,
    count: int | None = None,
    connect_timeout_s: float = 5.0,
    use_uvloop: bool = False,
    credentials: ClientCredentials | None = None,
) -> tuple[list[str], str]:
    """``resolve_models`` on a short-lived connection to ``url`` (so a workload can be built
    with the server's names before the run)."""
    endpoint = parse_endpoint(url, protocol)

    async def go() -> tuple[list[str], str]:
        async with connect(
            endpoint, pool_size=1, connect_timeout_s=connect_timeout_s, credentials=credentials
        ) as client:
            await client.server_metadata()  # fails clearly when nothing is there
            return await resolve_models(client, names, count)

    with asyncio.Runner(loop_factory=loop_factory(use_uvloop)) as runner:
        return runner.run(go())


# --------------------------------------------------------------------------- the run


def _resolve(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


class _Waker:
    """A sleep that ``wake()`` cuts short (a closed-loop follow-up may be due before the arrival
    being waited for)."""

    def __init__(self) -> None:
        self._fut: asyncio.Future[bool] | None = None

    async def sleep(self, delay_s: float) -> bool:
        """Sleep ``delay_s``; True if woken before."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._fut = fut
        handle = loop.call_later(delay_s, _resolve, fut, False)
        try:
            return await fut
        finally:
            handle.cancel()
            self._fut = None

    def wake(self) -> None:
        if self._fut is not None:
            _resolve(self._fut, True)


@dataclass(frozen=True, slots=True)
class _InFlight:
    arrival: Arrival
    model: str
    target_ns: int  # when it was due (client clock)
    submit_ns: int  # when the generator handed it to its task


class _Driver:
    """The state of one run: the pacing loop, the requests in flight and the log."""

    def __init__(
        self,
        client: HttpClient | GrpcClient,
        workload: Workload,
        mapping: Mapping[str, str],
        inputs: Mapping[str, InferInputs],
        concurrency_limit: int,
        duration_ns: int,
        drain_ns: int,
        clock_ns: Callable[[], int],
    ) -> None:
        self.client = client
        self.workload = workload
        self.mapping = mapping
        self.inputs = inputs
        self.limit = concurrency_limit
        self.duration_ns = duration_ns
        self.drain_ns = drain_ns
        self.clock_ns = clock_ns
        self.log = RequestLog()
        self.in_flight: dict[int, _InFlight] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        # closed-loop follow-ups: (due, tie-break, arrival)
        self.followups: list[tuple[int, int, Arrival]] = []
        self._seq = itertools.count()
        self.waker = _Waker()
        self.waiting_for_answers = False
        self.t0 = 0
        self.next_id = 0
        self.sent = 0
        self.answered = 0  # got an answer (result or refusal)
        self.dropped = 0
        self.errors: Counter[str] = Counter()
        self.late = 0
        self.lateness_sum = 0
        self.lateness_max = 0
        self.end_ns = 0
        # Ctrl-C: the first stops sending (the answers still due are waited for), the second
        # stops waiting
        self.interrupted = False
        self._give_up = asyncio.Event()

    def interrupt(self) -> None:
        """Stop sending; called again, stop waiting for the answers in flight."""
        if self.interrupted:
            self._give_up.set()
            return
        self.interrupted = True
        self.waker.wake()

    # -- bookkeeping

    def _lateness(self, ns: int) -> None:
        if ns > 0:
            self.lateness_sum += ns
            self.lateness_max = max(self.lateness_max, ns)
            if ns > LATE_SUBMIT_NS:
                self.late += 1

    def _answered(self, arrival: Arrival, now_ns: int) -> None:
        """Let a closed-loop workload send its next request."""
        rel = now_ns - self.t0
        nxt = self.workload.on_response(arrival, rel)
        if nxt is not None and nxt.time_ns < self.duration_ns:
            heapq.heappush(self.followups, (max(nxt.time_ns, rel), next(self._seq), nxt))
            self.waker.wake()
        elif self.waiting_for_answers and not self.in_flight:
            self.waker.wake()

    def _submit(self, arrival: Arrival, target_ns: int, now_ns: int) -> None:
        rid = self.next_id
        self.next_id += 1
        model = self.mapping.get(arrival.model, arrival.model)
        if len(self.in_flight) >= self.limit:
            self.dropped += 1
            self._lateness(now_ns - target_ns)
            t = now_ns - self.t0
            self.log.append(rid, model, t, t + arrival.slo_ns, t, CLIENT_DROPPED, 0, -1, False)
            self._answered(arrival, now_ns)
            return
        self.in_flight[rid] = _InFlight(arrival, model, target_ns, now_ns)
        task = asyncio.get_running_loop().create_task(self._send(rid, arrival, model, target_ns))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, rid: int, arrival: Arrival, model: str, target_ns: int) -> None:
        self.sent += 1
        timeout_us = max(1, (arrival.slo_ns + NS_PER_US // 2) // NS_PER_US)
        try:
            outcome = await self.client.infer(
                model,
                self.inputs[model],
                timeout_us,
                arrival.priority,
                request_id=str(rid),
                client_timeout_s=(arrival.slo_ns + self.drain_ns) / NS_PER_S,
            )
        except Exception as e:  # a bug of ours must not lose the row: log it as an error
            now = self.clock_ns()
            outcome = Outcome(
                OutcomeKind.ERROR, now, now, None, "CLIENT", f"{type(e).__name__}: {e}"
            )
        self.in_flight.pop(rid)
        self._lateness(outcome.send_ns - target_ns)
        status, error = status_of(outcome, outcome.send_ns + arrival.slo_ns)
        if error is not None:
            self.errors[error] += 1
        if outcome.kind is not OutcomeKind.ERROR:
            self.answered += 1
        arrival_rel = outcome.send_ns - self.t0
        self.log.append(
            rid,
            model,
            arrival_rel,
            arrival_rel + arrival.slo_ns,
            outcome.recv_ns - self.t0,
            status,
            outcome.batch_size,
            -1,
            outcome.cold_start,
        )
        self._answered(arrival, outcome.recv_ns)

    # -- the loop

    async def run(self, progress: ProgressPrinter | None) -> None:
        clock = self.clock_ns
        status_task = (
            asyncio.create_task(self._progress(progress)) if progress is not None else None
        )
        self.t0 = t0 = clock()
        try:
            arrivals = iter(self.workload.arrivals())
            nxt = next(arrivals, None)
            while not self.interrupted:
                if nxt is not None and nxt.time_ns >= self.duration_ns:
                    nxt = None  # arrivals come in time order: nothing more to send
                fu = self.followups[0] if self.followups else None
                if nxt is None and fu is None:
                    # only answers still in flight can bring more (closed loop)
                    left = t0 + self.duration_ns - clock()
                    if not self.in_flight or left <= 0:
                        break
                    self.waiting_for_answers = True
                    await self.waker.sleep(left / NS_PER_S)
                    self.waiting_for_answers = False
                    continue
                if fu is not None and (nxt is None or fu[0] < nxt.time_ns):
                    take_fu, due = True, fu[0]
                else:
                    assert nxt is not None
                    take_fu, due = False, nxt.time_ns
                target = t0 + due
                now = clock()
                if target - now > EARLY_NS:
                    if await self.waker.sleep((target - now) / NS_PER_S):
                        continue  # a follow-up came in: it may be due first
                    now = clock()
                if take_fu:
                    arrival = heapq.heappop(self.followups)[2]
                else:
                    assert nxt is not None  # for mypy: nxt was chosen above
                    arrival = nxt
                    nxt = next(arrivals, None)
                self._submit(arrival, target, now)
            if self.tasks:
                answered = asyncio.ensure_future(asyncio.wait(set(self.tasks)))
                give_up = asyncio.ensure_future(self._give_up.wait())
                await asyncio.wait(
                    {answered, give_up},
                    timeout=self.drain_ns / NS_PER_S,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for waiting in (answered, give_up):
                    waiting.cancel()
                await asyncio.gather(answered, give_up, return_exceptions=True)
            self.end_ns = clock()
        finally:
            if status_task is not None:
                status_task.cancel()
                await asyncio.gather(status_task, return_exceptions=True)
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
        # what the drain did not see answered is logged too, as unanswered
        end = self.end_ns
        for rid, f in sorted(self.in_flight.items()):
            t = f.submit_ns - t0
            self.log.append(
                rid,
                f.model,
                t,
                t + f.arrival.slo_ns,
                end - t0,
                ResponseStatus.WORKER_LOST.value,
                0,
                -1,
                False,
            )
            self.errors["unanswered"] += 1
        self.in_flight.clear()

    def progress_extra(self) -> str:
        return (
            f"in flight {len(self.in_flight)}  late submits {self.late}  "
            f"client errors {sum(self.errors.values())}  dropped {self.dropped}"
        )

    async def _progress(self, printer: ProgressPrinter) -> None:
        while True:
            await asyncio.sleep(min(0.5, printer.interval_s))
            elapsed = self.clock_ns() - self.t0
            printer.update(elapsed, len(self.log), self.progress_extra())


@contextmanager
def _interrupts_to(driver: _Driver, stream: TextIO | None, drain_ns: int) -> Iterator[None]:
    """While entered, SIGINT calls ``driver.interrupt`` (and says what happens next) instead of
    raising ``KeyboardInterrupt``; outside the main thread, nothing changes."""
    loop = asyncio.get_running_loop()
    out = stream or sys.stderr

    def on_sigint() -> None:
        if not driver.interrupted:
            print(
                f"\ninterrupted: sending stopped; waiting up to {drain_ns / NS_PER_S:g} s for "
                f"{len(driver.in_flight)} answer(s) in flight (Ctrl-C again to stop waiting)",
                file=out,
                flush=True,
            )
        driver.interrupt()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (RuntimeError, ValueError, NotImplementedError):  # not the main thread
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _workload_info(workload: Workload, slo_ns: int) -> dict[str, object]:
    d = dict(workload.describe())
    d.pop("models", None)  # possibly thousands of names: the mapping has the server's
    d.setdefault("name", d.get("kind", "?"))
    d["slo_ms"] = slo_ns / NS_PER_MS
    return d


async def bench_url(
    endpoint: Endpoint,
    workload: Workload,
    models: Sequence[str] | None,
    slo_ns: int,
    concurrency_limit: int,
    duration_ns: int,
    *,
    binary: bool = True,
    fill: str = "zeros",
    seed: int = 0,
    drain_ns: int = 10 * NS_PER_S,
    ideal_capacity_rps: float = 0.0,
    devices: int = 0,
    workload_info: Mapping[str, object] | None = None,
    model_source: str | None = None,
    progress: TextIO | None = None,
    status_every_s: float = 5.0,
    connect_timeout_s: float = 5.0,
    clock_ns: Callable[[], int] = time.monotonic_ns,
    credentials: ClientCredentials | None = None,
    stop_on_sigint: bool = False,
) -> BenchUrlResult:
    """``run_bench_url`` inside a running event loop. ``stop_on_sigint``: Ctrl-C stops sending
    and the report covers what was sent (``partial``); a second one stops waiting for answers
    (main thread only)."""
    if concurrency_limit < 1:
        raise ConfigurationError(f"the concurrency limit must be >= 1, got {concurrency_limit}")
    if duration_ns <= 0 or slo_ns <= 0 or drain_ns < 0:
        raise ConfigurationError("the duration and the SLO must be > 0, the drain >= 0")
    wl_models = workload_models(workload)
    if isinstance(workload, ClosedLoop):
        clients = workload.concurrency * len(wl_models)
        if clients > concurrency_limit:
            raise ConfigurationError(
                f"the closed loop has {clients} clients, more than the "
                f"concurrency limit {concurrency_limit}"
            )
    async with connect(
        endpoint,
        binary=binary,
        pool_size=concurrency_limit,
        connect_timeout_s=connect_timeout_s,
        credentials=credentials,
    ) as client:
        server = await client.server_metadata()
        if models:
            server_models, source = list(models), model_source or SOURCE_GIVEN
        else:
            server_models, source = await resolve_models(client, None, len(wl_models) or None)
        if len(wl_models) > len(server_models):
            raise ConfigurationError(
                f"the workload addresses {len(wl_models)} models but only "
                f"{len(server_models)} server models are given"
            )
        # the workload's i-th model is the server's i-th
        mapping = dict(zip(wl_models, server_models, strict=False))
        used = list(dict.fromkeys(mapping.values())) or server_models
        rng = np.random.default_rng(seed)
        inputs = {}
        for name in used:
            inputs[name] = make_inputs(await client.model_metadata(name), fill, rng)
            # encoded before the clock starts: on first use, 64 models' JSON inputs took the
            # client's loop for about half a second of the measured run
            client.prepare(inputs[name])
        driver = _Driver(
            client, workload, mapping, inputs, concurrency_limit, duration_ns, drain_ns, clock_ns
        )
        printer = (
            ProgressPrinter(duration_ns, stream=progress, interval_s=status_every_s, label="bench")
            if progress is not None
            else None
        )
        cpu0, wall0, sched0 = time.process_time(), time.perf_counter(), cpu_wait()
        with _interrupts_to(driver, progress, drain_ns) if stop_on_sigint else nullcontext():
            await driver.run(printer)
        cpu_s, wall_s, sched1 = time.process_time() - cpu0, time.perf_counter() - wall0, cpu_wait()
        waited = None if sched0 is None or sched1 is None else (sched1 - sched0).wait_ns
        if printer is not None:
            printer.close(
                driver.end_ns - driver.t0,
                len(driver.log),
                driver.progress_extra(),
                finished=not driver.interrupted,
            )

    requests = driver.log.table()
    actions = ActionLog().table()
    info_workload = (
        dict(workload_info) if workload_info is not None else _workload_info(workload, slo_ns)
    )
    seed_of = workload.describe().get("seed", seed)
    n = len(requests)
    errors = dict(sorted(driver.errors.items()))
    lateness_n = driver.sent + driver.dropped
    info = RunInfo(
        # a client cannot know the server's policy (its name is under "server")
        policy="-",
        workload=info_workload,
        # an interrupted run's rates are over the time it sent
        duration_ns=(
            max(1, min(driver.end_ns - driver.t0, duration_ns))
            if driver.interrupted
            else duration_ns
        ),
        partial=driver.interrupted,
        devices=devices,
        models=len(used),
        seed=int(seed_of) if isinstance(seed_of, int) else seed,
        ideal_capacity_rps=ideal_capacity_rps,
        sim_wall_s=wall_s,
        scheduler_cpu_s=None,
        extra={
            "mode": "bench-url",
            "binary": binary if endpoint.protocol == "http" else None,
            "inputs": fill,
            "concurrency_limit": concurrency_limit,
            "drain_s": drain_ns / NS_PER_S,
            "submitted": n,
            "sent": driver.sent,
            "answered": driver.answered,
            "client_cpu_s": cpu_s,
            "client_cpu_us_per_request": (1e6 * cpu_s / n) if n else None,
            # runnable but not running (None: the kernel does not say)
            "client_cpu_wait_s": None if waited is None else waited / NS_PER_S,
            "late_submits": driver.late,
            "max_submit_lateness_ms": driver.lateness_max / NS_PER_MS,
            "mean_submit_lateness_ms": (
                driver.lateness_sum / lateness_n / NS_PER_MS if lateness_n else 0.0
            ),
            "run_end_s": (driver.end_ns - driver.t0) / NS_PER_S,
        },
    )
    summary = summarize(requests, actions, info)
    summary.update(
        {
            "url": endpoint.url,
            "protocol": endpoint.protocol,
            "server": server,
            "late_submits": driver.late,
            "client_errors": sum(errors.values()),
            "client_errors_by_kind": errors,
            "client_dropped": driver.dropped,
            "model_mapping": {
                "source": source,
                "rule": "workload model i -> server model i",
                "models": used,
            },
        }
    )
    return BenchUrlResult(summary, requests, actions)


def run_bench_url(
    url: str,
    protocol: str | None,
    workload: Workload,
    models: Sequence[str] | None,
    slo_ns: int,
    concurrency_limit: int,
    duration_ns: int,
    *,
    binary: bool = True,
    fill: str = "zeros",
    seed: int = 0,
    drain_ns: int = 10 * NS_PER_S,
    ideal_capacity_rps: float = 0.0,
    devices: int = 0,
    workload_info: Mapping[str, object] | None = None,
    model_source: str | None = None,
    progress: TextIO | None = None,
    status_every_s: float = 5.0,
    connect_timeout_s: float = 5.0,
    use_uvloop: bool = False,
    credentials: ClientCredentials | None = None,
) -> BenchUrlResult:
    """Drive the OIP server at ``url`` (``protocol`` ``http``/``grpc``, None: from the scheme)
    with ``workload`` for ``duration_ns`` and return the report (see the module docstring).

    ``models``: the server models, index-aligned with the workload's (None: the READY ones of the
    repository index); ``slo_ns``: the workload's SLO, for the report (each request's timeout is
    its arrival's SLO); ``concurrency_limit``: most requests in flight (also the connection
    pool); ``binary``: Triton binary tensors over HTTP, else JSON; ``fill``: ``zeros`` or
    ``random`` inputs (seeded by ``seed``); ``drain_ns``: how long to wait for answers after the
    last arrival; ``ideal_capacity_rps`` and ``devices``: what the server can do, if known, for
    the report; ``workload_info``: the summary's ``workload`` (default: ``describe()`` without the
    model list, with ``slo_ms``); ``progress``: a stream for the progress line every
    ``status_every_s`` (None: none). ``ConfigurationError``/``OIPError`` (both
    ``ClockworkError``) for bad arguments, an unreachable server or an unknown model.
    ``credentials``: token and TLS files for a secured server."""
    endpoint = parse_endpoint(url, protocol)
    with asyncio.Runner(loop_factory=loop_factory(use_uvloop)) as runner:
        return runner.run(
            bench_url(
                endpoint,
                workload,
                models,
                slo_ns,
                concurrency_limit,
                duration_ns,
                binary=binary,
                fill=fill,
                seed=seed,
                drain_ns=drain_ns,
                ideal_capacity_rps=ideal_capacity_rps,
                devices=devices,
                workload_info=workload_info,
                model_source=model_source,
                progress=progress,
                status_every_s=status_every_s,
                connect_timeout_s=connect_timeout_s,
                credentials=credentials,
                stop_on_sigint=True,
            )
        )


# --------------------------------------------------------------------------- report


def write_bench_report(out_dir: Path, result: BenchUrlResult, plots: bool = True) -> list[Path]:
    """``summary.json``, ``requests.parquet`` (and an empty ``actions.parquet``, as every report
    has one) and the plots that apply to a client's view: goodput and latency over time, latency
    CDF. Returns the paths written."""
    from clockwork.telemetry.plots import (
        GOODPUT_LATENCY,
        LATENCY_CDF,
        plot_goodput_latency,
        plot_latency_cdf,
    )
    from clockwork.telemetry.report import write_report

    out_dir = Path(out_dir)
    written = write_report(out_dir, result.summary, result.requests, result.actions, plots=False)
    if plots:
        written.append(
            plot_goodput_latency(
                out_dir / GOODPUT_LATENCY, result.summary, result.requests, result.actions
            )
        )
        written.append(
            plot_latency_cdf(out_dir / LATENCY_CDF, result.summary, result.requests, result.actions)
        )
    return written


def format_bench_lines(summary: Mapping[str, object]) -> str:
    """What ``format_table`` does not show of a bench run: where, how, and the client's own
    troubles."""
    mapping = summary.get("model_mapping")
    models: list[object] = []
    source = "?"
    if isinstance(mapping, Mapping):
        source = str(mapping.get("source", "?"))
        m = mapping.get("models")
        models = list(m) if isinstance(m, list) else []
    shown = ", ".join(str(x) for x in models[:5]) + (", ..." if len(models) > 5 else "")
    extra = summary.get("extra")
    max_late = extra.get("max_submit_lateness_ms") if isinstance(extra, Mapping) else None
    by_kind = summary.get("client_errors_by_kind")
    kinds = (
        ", ".join(f"{k} {v}" for k, v in by_kind.items())
        if isinstance(by_kind, Mapping) and by_kind
        else ""
    )
    lines = [
        f"server {summary.get('url')} ({summary.get('protocol')}); {len(models)} model(s) from "
        f"the {source}: {shown}",
        f"late submits {summary.get('late_submits')} (max "
        f"{max_late if isinstance(max_late, int | float) else 0:.2f} ms); client dropped "
        f"{summary.get('client_dropped')}; client errors {summary.get('client_errors')}"
        + (f" ({kinds})" if kinds else ""),
    ]
    starved = (
        _starved_line(extra, summary.get("sim_wall_s")) if isinstance(extra, Mapping) else None
    )
    if starved:
        lines.append(starved)
    return "\n".join(lines)


#: the share of a run's wall time the client may wait for a core before its figures say so
STARVED_SHARE = 0.1


def _starved_line(extra: Mapping[str, object], wall: object) -> str | None:
    """A warning where the client waited, runnable, for a core for more than ``STARVED_SHARE``
    of the run's ``wall`` seconds (``client.cpu_wait``): its latencies include those waits."""
    waited = extra.get("client_cpu_wait_s")
    if not isinstance(waited, int | float) or not isinstance(wall, int | float) or wall <= 0:
        return None
    if waited <= STARVED_SHARE * wall:
        return None
    return (
        f"warning: this client waited {waited:.1f} s of the run's {wall:.1f} s for a CPU core "
        "(the host's cores were busy); answers that came meanwhile were read late, and the "
        "latencies above include that: run the client on cores of its own (taskset) or on "
        "another host"
    )


__all__ = [
    "CLIENT_DROPPED",
    "BenchUrlResult",
    "bench_url",
    "discover_models",
    "format_bench_lines",
    "resolve_models",
    "run_bench_url",
    "status_of",
    "workload_models",
    "write_bench_report",
]
