"""A real cluster on one machine, driven by a workload: emulated worker processes, an in-process
controller and a load generator in the controller's event loop (``clockwork bench-cluster``).

``WorkerProcesses`` starts ``clockwork worker --backend emulated`` subprocesses on free
127.0.0.1 ports and always stops them (``stop``, also from ``__exit__``; on Linux each child is
also told by the kernel to exit if this process dies, so none is orphaned).

``run_bench`` connects a ``ControllerService`` to them, waits for every worker to join, then
submits each arrival of the workload at its time (real time, from the moment the load starts),
records every request and action with ``ControllerTelemetry``, drains (waits for the answers, at
most ``drain_ns``), closes the controller and returns the logs and the costs. Only the open-loop
part of a workload is driven (``arrivals()``; ``on_response`` is not called): Poisson and Azure
replay are open loop.

An arrival submitted more than ``LATE_SUBMIT_NS`` after its time counts in ``late_submits``: the
generator (or the controller sharing its loop) could not keep up. The generator sleeps only when
the next arrival is more than ``EARLY_NS`` away, so an arrival may go up to that much early (more
with uvloop, whose timers count whole milliseconds and may fire up to 1.5 ms early).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from clockwork.core.errors import ConfigurationError
from clockwork.core.requests import Response
from clockwork.core.scheduler import Scheduler
from clockwork.core.units import NS_PER_S
from clockwork.service.controller_service import Arrays, ControllerService
from clockwork.service.telemetry import ControllerTelemetry, StatusLine
from clockwork.telemetry.records import ActionLog, RequestLog
from clockwork.transport.cluster_secret import child_env, new_secret
from clockwork.workload.base import Arrival, Workload
from clockwork.workload.pacing import EARLY_NS, LATE_SUBMIT_NS

log = logging.getLogger("clockwork.service.bench_cluster")

DEFAULT_PROFILE = "resnet50_v2-V100-32GB"


# --------------------------------------------------------------------------- worker processes


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports free now (bound together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _find_prctl() -> Callable[..., int] | None:
    if sys.platform != "linux":
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# looked up here, not in the child: between fork and exec the child must take no lock (the
# loader's included) that another thread of ours may have held at the fork
_PRCTL = _find_prctl()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: ask for SIGTERM when the parent dies (PR_SET_PDEATHSIG)."""
    if _PRCTL is not None:
        with contextlib.suppress(Exception):
            _PRCTL(1, signal.SIGTERM, 0, 0, 0)


def spawn_child(
    command: Sequence[str], out: int | None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session (Ctrl-C goes to us; we stop children in order) with
    stdout and stderr to ``out`` (a file descriptor, ``subprocess.DEVNULL``, or None to
    inherit ours) and environment ``env`` (default: ours); on Linux the kernel also stops it if
    we die."""
    return subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        start_new_session=True,
        # runs only a ctypes call found beforehand: safe with other threads running
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
    )


class WorkerProcesses:
    """``workers`` emulated worker processes (``w0``, ``w1``, ...), each with
    ``gpus_per_worker`` devices serving ``models`` copies of ``profile``. They share a cluster
    secret made for them (``secret``, given to them in their environment): pass it to the
    controller (``run_bench(link_secret=...)``)."""

    def __init__(
        self,
        workers: int,
        gpus_per_worker: int,
        models: int,
        profile: str = DEFAULT_PROFILE,
        host: str = "127.0.0.1",
        noise_sigma: float = 0.0,
        log_dir: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        if workers < 1 or gpus_per_worker < 1 or models < 1:
            raise ConfigurationError("need at least one worker, one GPU per worker and one model")
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker
        self.models = models
        self.profile = profile
        self.host = host
        self.noise_sigma = noise_sigma
        self.log_dir = log_dir
        self.python = python
        self.procs: list[subprocess.Popen[bytes]] = []
        self.addresses: list[tuple[str, int]] = []
        self.secret = new_secret()

    def command(self, index: int, port: int) -> list[str]:
        return [
            self.python,
            "-m",
            "clockwork.cli.main",
            "worker",
            "--listen",
            f"{self.host}:{port}",
            "--id",
            f"w{index}",
            "--backend",
            "emulated",
            "--devices",
            str(self.gpus_per_worker),
            "--models",
            str(self.models),
            "--profile",
            self.profile,
            "--noise-sigma",
            str(self.noise_sigma),
        ]

    def start(self) -> None:
        if self.procs:
            raise RuntimeError("worker processes already started")
        ports = free_ports(self.workers, self.host)
        try:
            for i, port in enumerate(ports):
                if self.log_dir is not None:
                    self.log_dir.mkdir(parents=True, exist_ok=True)
                    with (self.log_dir / f"worker-w{i}.log").open("wb") as out:
                        proc = self._spawn(i, port, out.fileno())
                else:
                    proc = self._spawn(i, port, subprocess.DEVNULL)
                self.procs.append(proc)
                self.addresses.append((self.host, port))
        except BaseException:
            self.stop()
            raise

    def _spawn(self, index: int, port: int, out: int) -> subprocess.Popen[bytes]:
        return spawn_child(self.command(index, port), out, child_env(self.secret))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def check_alive(self) -> None:
        """``ConfigurationError`` if a worker has exited."""
        for i, p in enumerate(self.procs):
            code = p.poll()
            if code is not None:
                where = (
                    f"; see {self.log_dir / f'worker-w{i}.log'}" if self.log_dir is not None else ""
                )
                raise ConfigurationError(f"worker w{i} exited with code {code}{where}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate every worker and wait for it (kill those that do not exit in time)."""
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        deadline = time.monotonic() + timeout_s
        for p in self.procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait()

    def __enter__(self) -> WorkerProcesses:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True, slots=True)
class BenchResult:
    requests: RequestLog
    actions: ActionLog
    submitted: int
    responses: int
    unanswered: int
    unfinished_actions: int
    late_submits: int
    max_submit_lateness_ns: int
    mean_submit_lateness_ns: float
    # controller clock, from the start of the load to the end of the drain
    end_ns: int
    wall_s: float
    # CPU seconds of this process (controller + load generator) over the same interval
    cpu_s: float
    startup_s: float


Status = Callable[[str], None]
Answer = tuple[Response, Arrays | None]


class _LoadGenerator:
    """Submits each arrival at its time, from loop callbacks: one timer per wait, and no task
    nor sleep future per arrival (the generator shares the controller's loop and its CPU).
    ``finished`` is done when the arrivals are (or with what ``submit`` or the workload
    raised)."""

    def __init__(
        self,
        service: ControllerService,
        arrivals: Iterator[Arrival],
        t0: int,
        duration_ns: int,
        clock_ns: Callable[[], int],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._submit = service.submit_nowait
        self._arrivals = arrivals
        self._t0 = t0
        self._duration_ns = duration_ns
        self._clock = clock_ns
        self._held: Arrival | None = None  # the next arrival, waiting for its time
        self._timer: asyncio.TimerHandle | None = None
        self.finished: asyncio.Future[None] = self._loop.create_future()
        # the futures of the requests not answered yet
        self.answers: set[asyncio.Future[Answer]] = set()
        self.late = 0
        self.lateness_sum = 0
        self.lateness_max = 0
        self._done_cb = self._done  # one bound method, not one per arrival

    def start(self) -> None:
        self._tick()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        if self.finished.done():
            return
        try:
            self._submit_due()
        except Exception as e:
            self.finished.set_exception(e)

    def _submit_due(self) -> None:
        while True:
            arrival = self._held
            now = self._clock()
            if arrival is not None:
                # its timer fired: submit it now, as an awaited sleep would (never re-arm, even
                # if the loop's millisecond timers fired a little early)
                self._held = None
            else:
                arrival = next(self._arrivals, None)
                if arrival is None or arrival.time_ns >= self._duration_ns:
                    self.finished.set_result(None)
                    return
                target = self._t0 + arrival.time_ns
                if target - now > EARLY_NS:
                    self._held = arrival
                    self._timer = self._loop.call_later((target - now) / NS_PER_S, self._tick)
                    return
            lateness = now - (self._t0 + arrival.time_ns)
            if lateness > 0:
                self.lateness_sum += lateness
                self.lateness_max = max(self.lateness_max, lateness)
                if lateness > LATE_SUBMIT_NS:
                    self.late += 1
            answer = self._submit(
                arrival.model, timeout_ns=arrival.slo_ns, priority=arrival.priority
            )
            self.answers.add(answer)
            answer.add_done_callback(self._done_cb)

    def _done(self, answer: asyncio.Future[Answer]) -> None:
        self.answers.discard(answer)
        if not answer.cancelled():
            answer.exception()  # retrieved: unanswered requests are logged by telemetry


async def run_bench(
    policy: Scheduler,
    addresses: Sequence[tuple[str, int]],
    workload: Workload,
    duration_ns: int,
    *,
    drain_ns: int = 10 * NS_PER_S,
    startup_timeout_s: float = 60.0,
    status_every_s: float = 5.0,
    status: Status | None = None,
    check_alive: Callable[[], None] | None = None,
    clock_ns: Callable[[], int] = time.monotonic_ns,
    link_secret: bytes | None = None,
) -> BenchResult:
    """Drive ``workload`` through a controller connected to ``addresses``. See the module
    docstring. ``status`` receives a status line every ``status_every_s``; ``check_alive`` is
    called while waiting for the workers (to fail fast if one died); ``link_secret`` is the
    cluster secret of the workers (``WorkerProcesses.secret``)."""
    telemetry = ControllerTelemetry()
    service = ControllerService(policy, list(addresses), clock_ns, link_secret=link_secret)
    telemetry.attach(service)
    wall0 = time.perf_counter()
    await service.start()
    generator: _LoadGenerator | None = None
    status_task: asyncio.Task[None] | None = None
    try:
        deadline = time.monotonic() + startup_timeout_s
        while len(service.workers) < len(addresses):
            if check_alive is not None:
                check_alive()
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"only {len(service.workers)} of {len(addresses)} workers joined within "
                    f"{startup_timeout_s:.0f} s"
                )
            await asyncio.sleep(0.02)
        startup_s = time.perf_counter() - wall0
        t0 = clock_ns()
        gen = generator = _LoadGenerator(
            service, iter(workload.arrivals()), t0, duration_ns, clock_ns
        )
        if status is not None:
            line = StatusLine(service, len(addresses))

            async def status_loop() -> None:
                while True:
                    await asyncio.sleep(status_every_s)
                    status(line.line(f"late submits {gen.late}"))

            status_task = asyncio.create_task(status_loop())

        telemetry.start(t0)
        cpu0, wall_load0 = time.process_time(), time.perf_counter()
        generator.start()
        await generator.finished
        # drain: the answers to what was submitted (the scheduler answers every request)
        if generator.answers:
            await asyncio.wait(set(generator.answers), timeout=drain_ns / NS_PER_S)
        end = clock_ns()
        cpu_s = time.process_time() - cpu0
        wall_s = time.perf_counter() - wall_load0
    finally:
        if status_task is not None:
            status_task.cancel()
            await asyncio.gather(status_task, return_exceptions=True)
        if generator is not None:
            generator.stop()
        await service.close()
        if generator is not None:
            for answer in list(generator.answers):
                answer.cancel()
            await asyncio.gather(*generator.answers, return_exceptions=True)
    submitted = service.stats.submitted
    responses = telemetry.responses
    unanswered, unfinished = telemetry.finish(end)
    late, lateness_sum = generator.late, generator.lateness_sum
    return BenchResult(
        telemetry.request_log,
        telemetry.action_log,
        submitted,
        responses,
        unanswered,
        unfinished,
        late,
        generator.lateness_max,
        lateness_sum / submitted if submitted else 0.0,
        end - t0,
        wall_s,
        cpu_s,
        startup_s,
    )


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (and is not a zombie of ours: those are reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["BenchResult", "WorkerProcesses", "free_ports", "pid_alive", "run_bench"]
