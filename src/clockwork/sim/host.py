"""The serving host in the simulator: the front door's loop, the client, and the door's limits.

On a GPU server the devices are the bottleneck and the simulator's devices are the model. On a
small CPU host the real server loses requests the devices could have served: each request costs
the controller's loop CPU time to read, decode and answer (about 0.8-1.2 ms on this project's
2-core machine with 60 KB JSON bodies, BENCHMARKS.md s.36), the door refuses what its adaptive
limit or its queue-delay gate holds back, and the client, on the same cores, reads answers late.
``HostModel`` adds those to a simulation (``SimConfig.host``):

- the client is one thread: each request costs it ``client_send_ns`` before its first byte
  reaches the server and each answer ``client_read_ns`` before the client has it; it starts
  work in arrival order, one job at a time, at the share of a core the other threads leave it;
- the loop is one thread, first in first out, at full speed (``serve`` runs it at a real-time
  priority, so it always has a core): a request's first job is the door's admission (the same
  ``QueueDelayGate`` and ``AdaptiveLimit`` objects ``serve`` uses, with the same limits),
  then reading and decoding it (``take_ns``) before the scheduler sees it; a refusal at the
  door costs ``refuse_ns``; the scheduler's answer costs ``answer_ns`` (a result) or
  ``refuse_ns`` (a refusal) to write;
- the client shares the cores left after the loop and ``background_cores`` with the running
  executions, fairly: a client job that starts while more threads are busy than those cores
  takes ``1 / share`` times its cost (the share taken when the job starts: jobs are short
  against the changes). The executions themselves keep their drawn durations: the noise is
  fitted on executions measured under the same load (``bench/calibrate_sim.py``), so their
  contention is in it already.

A request's deadline runs from when the client meant to send it; its answer counts when the
client has read it. ``take_ns``, ``answer_ns``, ``refuse_ns`` and the client's costs are measured
on the real host (``bench/calibrate_sim.py``).

Sans-IO: the simulator passes the time and receives what to schedule through callbacks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from clockwork.core.errors import ConfigurationError
from clockwork.core.requests import Response, ResponseStatus
from clockwork.frontend.limits import DoorLimits
from clockwork.sim.turnarounds import check_quantiles
from clockwork.workload.base import Arrival

__all__ = ["ClientDone", "HostConfig", "HostModel", "Job", "Thread"]


@dataclass(frozen=True, slots=True)
class HostConfig:
    """What the serving host costs (nanoseconds of one core's time) and its cores."""

    take_ns: int
    answer_ns: int
    refuse_ns: int
    client_send_ns: int = 0
    client_read_ns: int = 0
    cores: float = 2.0
    #: cores always taken by threads the model has no jobs for (the worker's own loop, ...)
    background_cores: float = 0.0
    #: the door's limits, as ``serve`` runs them by default
    door: DoorLimits = field(default_factory=DoorLimits)
    #: the worker's turnaround: how long after an Infer ends the next one queued behind it
    #: starts (the result sent, the next inputs put in place), while the device waits
    worker_turnaround_ns: int = 0
    #: or each turnaround drawn from these, the measured turnaround's quantiles at evenly
    #: spaced probabilities from 0 to 1 (``sim.turnarounds``); empty: the constant above
    worker_turnaround_quantiles_ns: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        costs = (self.take_ns, self.answer_ns, self.refuse_ns, self.worker_turnaround_ns)
        if min(costs) < 0 or self.client_send_ns < 0 or self.client_read_ns < 0:
            raise ConfigurationError(f"host costs must be >= 0 ns, got {self}")
        why = check_quantiles(self.worker_turnaround_quantiles_ns)
        if why:
            raise ConfigurationError(f"worker_turnaround_quantiles_ns: {why}")
        if self.cores < 1 or not 0 <= self.background_cores < self.cores:
            raise ConfigurationError(
                f"need cores >= 1 and 0 <= background cores < cores, got {self.cores} and "
                f"{self.background_cores}"
            )


@dataclass(frozen=True, slots=True)
class ClientDone:
    """A request as the client saw it end: read at ``end_ns``, with ``status`` (LATE for a
    result read after the deadline; a door's refusal is OVERLOADED, as a 503 is to a client)."""

    request_id: int
    arrival: Arrival
    sent_ns: int
    deadline_ns: int
    end_ns: int
    status: ResponseStatus
    response: Response | None


# a request on its way: (request id, arrival, when the client meant to send it)
_Request = tuple[int, Arrival, int]
# a job: called when its thread turns to it, returns its cost and what follows its end
Job = Callable[[int], tuple[int, Callable[[int], None]]]
# what tells the door's limit that the server had no room for a request it took (the door's)
_LOAD_FAILURES = frozenset({ResponseStatus.OVERLOADED, ResponseStatus.LATE})


class Thread:
    """One thread of the host: its jobs, first in first out, one running at a time."""

    __slots__ = ("jobs", "name", "then")

    def __init__(self, name: str) -> None:
        self.name = name
        self.jobs: deque[Job] = deque()
        # what follows the running job (None: the thread is idle)
        self.then: Callable[[int], None] | None = None

    @property
    def busy(self) -> bool:
        return self.then is not None


class HostModel:
    """The host of one simulation. ``schedule(when_ns, thread)``: call ``finish(thread,
    when_ns)`` then; ``submit(request_id, arrival, deadline_ns, now_ns)``: hand a request to
    the scheduler; ``done(ClientDone)``: a request ended at the client."""

    def __init__(
        self,
        config: HostConfig,
        schedule: Callable[[int, Thread], None],
        submit: Callable[[int, Arrival, int, int], None],
        done: Callable[[ClientDone], None],
    ) -> None:
        self.config = config
        self._schedule = schedule
        self._submit = submit
        self._done = done
        self.loop = Thread("loop")
        self.client = Thread("client")
        # the door's gate and limit, as ``serve``'s door builds them
        self.gate = config.door.queue_delay_gate()
        self.limit = config.door.adaptive_limit()
        self.inflight = 0
        self.executing = 0  # executions running now (each a busy thread)
        # request id -> (the request, when its first byte reached the server)
        self._taken: dict[int, tuple[_Request, int]] = {}

    # ----------------------------------------------------------------- what the simulator calls

    def arrive(self, request_id: int, arrival: Arrival, now_ns: int) -> None:
        """The client means to send ``arrival`` now."""
        request: _Request = (request_id, arrival, now_ns)
        send = self.config.client_send_ns
        self._queue(self.client, lambda t: (send, lambda e: self._first_byte(request, e)), now_ns)

    def answer(self, response: Response, now_ns: int) -> None:
        """The scheduler answered a request it was handed: the loop writes the answer."""
        request, first_byte_ns = self._taken.pop(response.request_id)
        status = response.status
        cost = self.config.answer_ns if status.delivered_result else self.config.refuse_ns

        def written(t: int) -> None:
            self.inflight -= 1
            if self.limit is not None:
                met = status not in _LOAD_FAILURES and t - first_byte_ns <= request[1].slo_ns
                self.limit.answered(first_byte_ns, t, met=met)
            self._to_client(request, status, response, t)

        self._queue(self.loop, lambda t: (cost, written), now_ns)

    def execution_started(self) -> None:
        """An execution starts now: one more thread busy beside the client."""
        self.executing += 1

    def execution_ended(self) -> None:
        self.executing -= 1

    def finish(self, thread: Thread, now_ns: int) -> None:
        """``thread``'s running job ends now."""
        then = thread.then
        assert then is not None
        thread.then = None
        then(now_ns)
        self._next(thread, now_ns)

    # ----------------------------------------------------------------- a request's way

    def _first_byte(self, request: _Request, first_byte_ns: int) -> None:
        def admission(t: int) -> tuple[int, Callable[[int], None]]:
            # the door decides when the loop turns to the request, as ``serve``'s middleware
            if self._admitted(first_byte_ns, t):
                self.inflight += 1
                self._taken[request[0]] = (request, first_byte_ns)
                # the door takes the time spent and its answer's cost from the timeout
                deadline_ns = first_byte_ns + request[1].slo_ns - self.config.answer_ns
                return self.config.take_ns, lambda e: self._submit(
                    request[0], request[1], deadline_ns, e
                )
            return self.config.refuse_ns, lambda e: self._to_client(
                request, ResponseStatus.OVERLOADED, None, e
            )

        self._queue(self.loop, admission, first_byte_ns)

    def _admitted(self, first_byte_ns: int, now_ns: int) -> bool:
        if not self.gate.admit(now_ns - first_byte_ns, now_ns):
            return False
        if self.inflight >= self.config.door.max_inflight:
            return False
        return self.limit is None or self.limit.admits(self.inflight)

    def _to_client(
        self, request: _Request, status: ResponseStatus, response: Response | None, now_ns: int
    ) -> None:
        rid, arrival, sent_ns = request
        deadline_ns = sent_ns + arrival.slo_ns
        read = self.config.client_read_ns

        def have(t: int) -> None:
            final = status
            if status is ResponseStatus.SUCCESS and t > deadline_ns:
                final = ResponseStatus.LATE  # on time at the server, read late
            self._done(ClientDone(rid, arrival, sent_ns, deadline_ns, t, final, response))

        self._queue(self.client, lambda t: (read, have), now_ns)

    # ----------------------------------------------------------------- threads

    def _share(self, busy: int) -> float:
        """The share of a core each of ``busy`` threads gets beside the loop."""
        free = self.config.cores - self.config.background_cores - (1 if self.loop.busy else 0)
        return 1.0 if busy <= free else max(free, 0.05) / busy

    def _queue(self, thread: Thread, job: Job, now_ns: int) -> None:
        thread.jobs.append(job)
        self._next(thread, now_ns)

    def _next(self, thread: Thread, now_ns: int) -> None:
        if thread.busy or not thread.jobs:
            return
        cost_ns, then = thread.jobs.popleft()(now_ns)
        if thread is self.client:
            cost_ns = round(cost_ns / self._share(1 + self.executing))
        thread.then = then
        self._schedule(now_ns + max(0, cost_ns), thread)
