"""Telemetry of a live controller: the same request and action logs as the simulator keeps.

``ControllerTelemetry.attach(service)`` installs itself on a ``ControllerService``'s hooks
(``on_request``, ``on_response``, ``on_action_sent``, ``on_action_result``) and fills a
``RequestLog`` and an ``ActionLog`` with the columns and meaning that ``clockwork.sim.runner``
gives them, so ``clockwork.telemetry.summary.summarize`` and ``report.write_report`` work on a
real run unchanged:

- every time is in ns relative to the run start (``start(now_ns)``, controller clock);
- a request row is appended when its response is given (status = ``ResponseStatus`` value;
  batch size, serving action and cold start from the response); requests still unanswered at
  ``finish`` get a row with status ``UNANSWERED``, as the simulator writes them;
- an action row is appended when its result is fed back to the scheduler (worker results, and the
  controller's synthetic ``TOO_LATE`` for an action whose window passed before it was sent):
  kind ``LoadWeights``/``Infer``/``EvictWeights``, sent time (when the scheduler emitted it), its
  window, the controller's expected duration, the worker's began/ended times (converted to the
  controller's clock) and the measured execution duration (0 unless it succeeded); actions with no
  result at ``finish`` (e.g. their worker was lost) get ``-1`` began/ended and ``UNANSWERED``.

``StatusLine`` formats the periodic one-line status of a running controller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from clockwork.core.actions import Action, ActionResult
from clockwork.core.requests import InferRequest, Response
from clockwork.service.observers import attach_observer
from clockwork.telemetry.records import UNANSWERED, ActionLog, RequestLog

if TYPE_CHECKING:
    from clockwork.service.controller_service import ControllerService


class ControllerTelemetry:
    """Request and action logs of one controller run. See the module docstring."""

    def __init__(self, record_logs: bool = True) -> None:
        self.record_logs = record_logs
        self.request_log = RequestLog()
        self.action_log = ActionLog()
        self.start_ns = 0
        self.responses = 0
        self.results = 0
        self._live: dict[int, InferRequest] = {}
        self._sent: dict[int, tuple[Action, int]] = {}

    # ----------------------------------------------------------------- wiring

    def attach(self, service: ControllerService) -> None:
        """Install the hooks on ``service`` (hooks already there are still called)."""
        attach_observer(service, self)

    def start(self, now_ns: int) -> None:
        """Times in the logs are relative to ``now_ns`` (controller clock)."""
        self.start_ns = now_ns

    @property
    def pending(self) -> int:
        """Requests seen and not answered yet."""
        return len(self._live)

    # ----------------------------------------------------------------- hooks

    def on_request(self, request: InferRequest) -> None:
        self._live[request.request_id] = request

    def on_response(self, response: Response) -> None:
        request = self._live.pop(response.request_id, None)
        if request is None:
            return
        self.responses += 1
        if self.record_logs:
            t0 = self.start_ns
            self.request_log.append(
                request.request_id,
                request.model,
                request.arrival_ns - t0,
                request.deadline_ns - t0,
                response.time_ns - t0,
                response.status.value,
                response.batch_size,
                response.action_id,
                response.cold_start,
            )

    def on_action_sent(self, action: Action, now_ns: int) -> None:
        self._sent[action.action_id] = (action, now_ns)

    def on_action_result(self, result: ActionResult, now_ns: int) -> None:
        sent = self._sent.pop(result.action_id, None)
        if sent is None:
            return
        self.results += 1
        if self.record_logs:
            action, sent_ns = sent
            t0 = self.start_ns
            self.action_log.append_action(
                action,
                sent_ns,
                result.began_ns - t0,
                result.ended_ns - t0,
                result.exec_ns if result.ok else 0,
                result.status.value,
                t0,
            )

    # ----------------------------------------------------------------- the end

    def finish(self, now_ns: int) -> tuple[int, int]:
        """Log what is still unanswered at ``now_ns`` (controller clock) as ``UNANSWERED``;
        returns (requests, actions) so logged. Call once, after the last response."""
        requests, actions = len(self._live), len(self._sent)
        if self.record_logs:
            t0 = self.start_ns
            for r in self._live.values():
                self.request_log.append(
                    r.request_id,
                    r.model,
                    r.arrival_ns - t0,
                    r.deadline_ns - t0,
                    now_ns - t0,
                    UNANSWERED,
                    0,
                    -1,
                    False,
                )
            for action, sent_ns in self._sent.values():
                self.action_log.append_action(action, sent_ns, -1, -1, 0, UNANSWERED, self.start_ns)
        self._live.clear()
        self._sent.clear()
        return requests, actions


class StatusLine:
    """The periodic status line of a running controller: workers joined, models, requests
    submitted/answered/pending, goodput since the previous line and attainment so far."""

    def __init__(
        self,
        service: ControllerService,
        expected_workers: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.expected_workers = expected_workers
        self.clock = clock
        self._last_t = clock()
        self._last_ok = service.stats.successes

    def line(self, extra: str = "") -> str:
        s = self.service.stats
        now = self.clock()
        dt = now - self._last_t
        goodput = (s.successes - self._last_ok) / dt if dt > 0 else 0.0
        self._last_t, self._last_ok = now, s.successes
        text = (
            f"workers {len(self.service.workers)}/{self.expected_workers}  models "
            f"{len(self.service.models)}  requests {s.submitted}  answered {s.answered}  "
            f"pending {self.service.pending()}  goodput {goodput:.1f}/s  "
            # nothing answered yet has no attainment (100% would claim one)
            f"attainment {f'{100 * s.attainment:.1f}%' if s.answered else '-'}"
        )
        if s.refused_early:
            text += f"  refused before decoding {s.refused_early}"
        return f"{text}  {extra}" if extra else text


__all__ = ["UNANSWERED", "ControllerTelemetry", "StatusLine"]
