"""The Clockwork policy (DESIGN.md s.5): plan a short horizon ahead on every device from
estimates, batch while the oldest request's deadline holds, load by unmet demand, evict the least
recently used models without demand, and refuse early what cannot be served.

Strategies: for a queued request ``r`` and batch size ``b`` on a device that holds its model, the
latest start that still meets ``r``'s deadline is ``deadline - margin - estimate(b)``. Each device
keeps them in a min-heap. Only the largest batch size is pushed at first; when it is found
infeasible, the next smaller size is pushed (its key is larger, so the heap order is the same as if
all sizes had been pushed at once, at a fifth of the cost).

Batch size: the oldest requests, padded up to the next supported size, as many as the oldest
deadline allows; except that when padding costs more device time per request than running only
the next smaller size (full), the smaller size runs and the youngest stay queued for the next
batch, provided they would still make their deadline run right after. On the V100 profile 9
to 13 requests run as 8, not 16.

Loads: a model's unmet demand is the device time its queue needs per unit of time left, less
the devices holding it; a device that refused a queued request in the last
``spread_window_ns`` does not count, so the models of an overloaded device become load
candidates for devices that refused nothing for ``spread_calm_ns``.

What each rule is worth on the Azure replay, and the variants measured and dropped, is in
BENCHMARKS.md sections 1 (unpadded batches, spreading, the overload hold) and 9 (the horizon).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from clockwork.core.actions import ActionResult, Infer
from clockwork.core.cluster import DeviceView
from clockwork.core.estimator import EstimatorConfig, ModelEstimates, Spread
from clockwork.core.events import ModelRegistered, WorkerModelsChanged
from clockwork.core.ids import DeviceId
from clockwork.core.policies.base import DONE, QUEUED, Flight, PendingRequest, PolicyBase
from clockwork.core.policies.device_refusals import DeviceRefusals
from clockwork.core.policies.link_delays import LinkDelays, StartGaps
from clockwork.core.requests import ResponseStatus
from clockwork.core.units import NS_PER_MS, NS_PER_S, NS_PER_US

# Final aliases: a compiled-build accommodation (core/requests.py says why)
_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop
_bisect_left: Final = bisect_left


# Heap entries and batch choices are plain tuples, their fields named by unpacking or by the
# positions below, not NamedTuples: a compiled-build accommodation (core/requests.py says why).
# Their fields:
#
# a strategy, one way to serve a request on a device (min-heap per device: latest start first,
# then higher priority, then older): (latest start ns, -priority, tie-break, request, batch size)
Strategy = tuple[int, int, int, PendingRequest, int]
# an expiry: (time after which the queued request is certainly lost, tie-break, request,
# whether that time assumed a load first)
Expiry = tuple[int, int, PendingRequest, bool]
# an Infer in flight, by the earliest deadline among its unanswered requests:
# (deadline ns, tie-break, action id)
FlightExpiry = tuple[int, int, int]
# what a model runs next on a device: give up the ``skip`` oldest queued requests (shed under
# overload for a fuller batch), then run the next ``taken`` in a batch of ``batch_size`` (padded
# where ``taken`` is smaller): (skip, batch size, taken)
BatchChoice = tuple[int, int, int]
# the positions of the fields read one at a time (elsewhere an entry is unpacked into named
# locals); Final, so compiled code reads them as constants
STRATEGY_REQUEST: Final = 3
EXPIRY_NS: Final = 0
EXPIRY_REQUEST: Final = 2
FLIGHT_DEADLINE_NS: Final = 0
FLIGHT_ACTION_ID: Final = 2
TAKEN: Final = 2


# the horizon ``clockwork sim`` plans with: its controller never falls behind (a real one's
# event loop does, by 10-25 ms at moments: BENCHMARKS.md s.7, hence the 10 ms default), so it
# needs only the simulated link's round trip (0.2 ms) and some room, and committing later makes
# fuller batches. On the Azure replay 5 ms took load factor 0.7 from 99.9849% (10 ms) to 99.9936%
# (BENCHMARKS.md s.23); 1 ms took 0.8 from 96.70% to 97.03% and 1.0 from 86.69% to 86.89%
# (s.40); 0.5 ms was below 1 ms at both
SIMULATED_SCHEDULE_AHEAD_NS: Final = 1 * NS_PER_MS
# ... and what it plans ahead beyond a simulated link's round trip, where that is longer: an
# action must reach its worker before its start (0.8 Azure replay with 2 ms each way: 95.41% at
# 4.5 ms, 95.29% at 5 ms, 90.82% at 1 ms; with 0.5 ms each way 1 ms and 1.5 ms are within 0.07
# points, s.40)
SIMULATED_ROOM_NS: Final = 500 * NS_PER_US


def simulated_schedule_ahead_ns(network_delay_ns: int) -> int:
    """The horizon ``clockwork sim`` plans with on links of ``network_delay_ns`` each way:
    ``SIMULATED_SCHEDULE_AHEAD_NS``, or the round trip and ``SIMULATED_ROOM_NS`` if longer."""
    return max(SIMULATED_SCHEDULE_AHEAD_NS, 2 * network_delay_ns + SIMULATED_ROOM_NS)


@dataclass(frozen=True, slots=True)
class ClockworkConfig:
    """Tunables of the Clockwork policy; defaults are the paper's where it has one."""

    # how far ahead of now each device's inference timeline is planned
    schedule_ahead_ns: int = 10 * NS_PER_MS
    # ... but at most this fraction of the tightest SLO of the requests of about the last
    # second, and no less than ``min_schedule_ahead_ns``: actions planned ahead cannot make way
    # for a more urgent request that arrives after them, which costs tight SLOs (the paper ran
    # its tight-SLO experiments with 5 ms) (0: a fixed horizon)
    horizon_slo_fraction: float = 0.125
    min_schedule_ahead_ns: int = 1 * NS_PER_MS
    # loads outstanding per device at once
    max_loads_in_flight: int = 2
    # time reserved between an action's end and the deadline, for the result to reach us:
    # until results have been measured, or always if ``learn_link_delays`` is off
    result_margin_ns: int = 500 * NS_PER_US
    # plan with the links' measured delays (the p99 of the last ``link_window`` results each):
    # the margin above, and the lead from sending an action to its worker receiving it (an
    # action cannot start before then); the two together never exceed ``result_margin_ns``
    learn_link_delays: bool = True
    link_window: int = 100
    # a device that had to refuse ``overload_drops`` queued requests within ``overload_window_ns``
    # counts as overloaded for ``overload_hold_ns`` after the last of them, and then prefers
    # fuller batches (goodput) over the strict most-urgent-first order. Holding longer than the
    # counting window keeps the mode through the short lulls of a sustained overload
    overload_window_ns: int = 30 * NS_PER_MS
    overload_drops: int = 4
    overload_hold_ns: int = 100 * NS_PER_MS
    # batches of fewer requests than this are inefficient enough to be passed over in overload,
    # for one at least twice as full (or this full): a request run alone costs most per request
    # (2.73 ms on the V100, 2.03 in a pair, 1.47 in four), so a lone one gives way to a pair
    efficient_batch: int = 4
    # how many further strategies an overloaded device looks at for a fuller batch (0: never);
    # at Azure load factor 1.0, 64 served more than 32, and 128 fewer: a fuller batch taken far
    # ahead of its time runs with fewer requests than it would have (BENCHMARKS.md s.40)
    overload_lookahead: int = 64
    # a device that refused a queued request within this long is not counted among the devices
    # that can take its models' queued work: those models become load candidates for devices
    # that refused nothing for ``spread_calm_ns``, which spreads an overloaded device's models
    # out (0: holders always count)
    spread_window_ns: int = 100 * NS_PER_MS
    spread_calm_ns: int = 2 * NS_PER_S
    # a request refused because its model is on no device, although a device holding the model
    # could have served it, still counts as demand for a load for this long: otherwise an SLO
    # below load-plus-run time refuses every request of a cold model forever (0: refusals make
    # no demand, as in the paper)
    refused_demand_window_ns: int = 1 * NS_PER_S
    # a model whose estimate makes it refuse requests is re-measured on an idle device holding
    # it (an all-padding batch of the smallest size), at most this often: refused requests never
    # run, so nothing else would ever correct a stale high estimate (0: never)
    probe_interval_ns: int = 100 * NS_PER_MS
    # a request whose estimate says it cannot make its deadline is still tried, alone, on a
    # device holding its model that is idle (nothing planned), when the spread of recent runs
    # gives it at least this chance: idle device time costs nothing the plan knows of, and a
    # try that misses is answered at its deadline, never late. The worker starts it only while
    # that chance holds. At an SLO within a few percent of the run time (1x batch 1 in
    # ``bench/slo_steps.py``) nothing else is ever served (0: never try, the paper's rule)
    long_shot_chance: float = 0.02
    # the spread (sd of the log of durations) assumed for a series with fewer than 3 runs
    long_shot_prior_log_sd: float = 0.02
    # load registered models that are on no device into free pages while nothing else needs the
    # load executors (no eviction), ``warm_first`` first, then in registration order: a server
    # that just started then serves its first requests warm. Off in the simulator, whose
    # workloads (the paper's) start cold
    warm_start: bool = False
    warm_first: tuple[str, ...] = ()
    # refuse a request at arrival (OVERLOADED) when more requests of its model are queued ahead
    # of it than the devices holding the model could run before its deadline, even with nothing
    # else to run (an upper bound: no request it refuses could have been served). Without it an
    # overloaded model's requests wait until their latest start to be refused: most of their
    # timeout, which the client spends waiting instead of retrying elsewhere. Off in the
    # simulator (the paper's policy); a serving process turns it on
    backlog_admission: bool = False
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)

    def __post_init__(self) -> None:
        if self.schedule_ahead_ns <= 0 or self.min_schedule_ahead_ns <= 0:
            raise ValueError("schedule_ahead_ns and min_schedule_ahead_ns must be > 0")
        if not 0.0 <= self.horizon_slo_fraction <= 1.0:
            raise ValueError("horizon_slo_fraction must be in [0, 1]")
        if self.max_loads_in_flight < 1:
            raise ValueError("max_loads_in_flight must be >= 1")
        if self.result_margin_ns < 0:
            raise ValueError("result_margin_ns must be >= 0")
        if self.link_window < 1:
            raise ValueError("link_window must be >= 1")
        if self.overload_window_ns <= 0 or self.overload_drops < 1 or self.overload_hold_ns <= 0:
            raise ValueError(
                "overload_window_ns and overload_hold_ns must be > 0 and overload_drops >= 1"
            )
        if self.spread_window_ns < 0 or self.spread_calm_ns < 0:
            raise ValueError("spread_window_ns and spread_calm_ns must be >= 0")
        if self.efficient_batch < 1 or self.overload_lookahead < 0:
            raise ValueError("efficient_batch must be >= 1 and overload_lookahead >= 0")
        if not 0.0 <= self.long_shot_chance < 1.0 or self.long_shot_prior_log_sd < 0:
            raise ValueError("long_shot_chance must be in [0, 1) and long_shot_prior_log_sd >= 0")
        if self.refused_demand_window_ns < 0 or self.probe_interval_ns < 0:
            raise ValueError("refused_demand_window_ns and probe_interval_ns must be >= 0")


class _ModelQueue:
    """Per-model queue and where the model is."""

    __slots__ = (
        "batch_sizes",
        "ests",
        "loading_on",
        "name",
        "probe_at_ns",
        "queue",
        "ready_on",
        "refused",
    )

    def __init__(
        self, name: str, batch_sizes: tuple[int, ...], ests: tuple[ModelEstimates, ...]
    ) -> None:
        self.name = name
        self.batch_sizes = batch_sizes
        # the model's estimates on every device kind it has a profile for, or with per-device
        # estimates on every connected device that serves it (``PolicyBase.model_estimates``;
        # kept up to date as devices come and go and as what workers serve changes)
        self.ests = ests
        # queued requests in deadline order (oldest deadline first)
        self.queue: deque[PendingRequest] = deque()
        self.ready_on: dict[DeviceId, DeviceView] = {}
        self.loading_on: dict[DeviceId, DeviceView] = {}
        # when requests were refused for want of a holder that could have served them
        self.refused: deque[int] = deque()
        # no probe of this model before this time
        self.probe_at_ns = 0

    def holders(self) -> int:
        return len(self.ready_on) + len(self.loading_on)

    def pad(self, n: int) -> int:
        """Smallest supported batch size >= n (or the largest)."""
        sizes = self.batch_sizes
        i = _bisect_left(sizes, n)
        return sizes[i] if i < len(sizes) else sizes[-1]

    def smaller(self, b: int) -> int:
        """Next supported batch size below b, or 0."""
        i = _bisect_left(self.batch_sizes, b)
        return self.batch_sizes[i - 1] if i > 0 else 0


class ClockworkPolicy(PolicyBase):
    name = "clockwork"
    # skip planning on polls that cannot plan anything: after an arrival whose model's devices
    # are all planned past the horizon, or with no event since the last poll (an instance set
    # to False plans on every poll; the decisions are the same, tests compare the two)
    settles = True

    def __init__(self, config: ClockworkConfig) -> None:
        super().__init__(config.estimator)
        self.config = config
        self._queues: dict[str, _ModelQueue] = {}
        self._heaps: dict[DeviceId, list[Strategy]] = {}
        # the same heaps beside their devices, for the per-poll scans
        self._dev_heaps: list[tuple[DeviceView, list[Strategy]]] = []
        self._expiry: list[Expiry] = []
        self._seq = 0
        # models with queued requests that need (another) device: on none, or demand > holders
        self._on_no_device: dict[str, _ModelQueue] = {}
        self._short_of_devices: dict[str, _ModelQueue] = {}
        # when a load executor that candidates wait for comes inside the horizon (None: no wait)
        self._load_wake_ns: int | None = None
        # the overload and spreading rules' history of refusals per device
        self._refusals = DeviceRefusals(
            config.overload_window_ns,
            config.overload_drops,
            config.overload_hold_ns,
            config.spread_window_ns,
            config.spread_calm_ns,
        )
        self._spreadable_at_ns = -1
        self._spreadable_now = True
        # cold models whose requests were refused although a holder could have served them
        self._wanted: dict[str, _ModelQueue] = {}
        # models whose estimates made them refuse a request: re-measure them when a holder idles
        self._probe: dict[str, _ModelQueue] = {}
        # when a probe waits for (None: none waits)
        self._probe_wake_ns: int | None = None
        # requests refused by their estimates, to try on an idle holder at the next plan (see
        # ``ClockworkConfig.long_shot_chance``), or else refuse then
        self._long_shots: list[PendingRequest] = []
        # Infers sent, by the earliest deadline among their unanswered requests: a request whose
        # result has not come back by its deadline is answered then (a paused or lost worker
        # must not hold its answer back): (deadline, tie-break, action id)
        self._flight_expiry: list[FlightExpiry] = []
        # the horizon in force (see ``ClockworkConfig.horizon_slo_fraction``), and until when the
        # tight SLO that set it counts
        self._ahead_ns = config.schedule_ahead_ns
        self._ahead_until_ns = 0
        # whether a warm-start pass could still load something (see ``_plan_warm``)
        self._warm_pending = config.warm_start
        # the links' delays to plan with (``ClockworkConfig.learn_link_delays``): the margin
        # between an action's end and the deadline, and the lead before an action can start
        self._links = LinkDelays(0, config.result_margin_ns, config.link_window)
        self._margin_ns = config.result_margin_ns
        self._lead_ns = 0
        # the workers' turnaround between Infers, for the backlog rule (zero until measured)
        self._gaps = StartGaps(config.link_window)

    def observe_link(self, flight: Flight, result: ActionResult, now_ns: int) -> None:
        if self.config.backlog_admission and type(flight.action) is Infer:
            self._gaps.observe(
                flight.device.device, result.received_ns, result.began_ns, result.ended_ns
            )
        if self.config.learn_link_delays:
            links = self._links
            links.observe(flight.sent_ns, result.received_ns, result.ended_ns, now_ns)
            # never more than the fixed margin in all: on a loaded host a message now and then
            # waits for the event loop (leads of 2-15 ms measured in the front door's tests),
            # and planning for the worst of those would refuse what the worker's own
            # ``latest`` check handles; measured faster links give the difference back
            cap = self.config.result_margin_ns
            margin = links.margin.value_ns
            self._margin_ns = margin if margin < cap else cap
            lead = links.lead.value_ns
            room = cap - self._margin_ns
            self._lead_ns = lead if lead < room else room

    # ----------------------------------------------------------------- model state

    def _model(self, name: str) -> _ModelQueue:
        m = self._queues.get(name)
        if m is None:
            sizes = sorted({b for p in self.models[name].profiles for b in p.exec_ns})
            m = _ModelQueue(name, tuple(sizes), self.model_estimates(name))
            self._queues[name] = m
        return m

    @staticmethod
    def _best_exec1_ns(m: _ModelQueue) -> int:
        """The smallest batch's estimate on the fastest kind (or device): the least any plan
        needs."""
        ests = m.ests
        e = ests[0]
        best = e.exec[e.batch_sizes[0]].estimate_ns
        # a loop, not min() of a generator: with per-device estimates there is one per device,
        # read at every arrival
        for i in range(1, len(ests)):
            e = ests[i]
            v = e.exec[e.batch_sizes[0]].estimate_ns
            best = v if v < best else best
        return best

    def is_cold(self, model: str) -> bool:
        m = self._queues.get(model)
        return m is None or not m.holders()

    def _demand(self, m: _ModelQueue, now_ns: int) -> float:
        """Devices' worth of work the queue needs before its deadlines."""
        n = len(m.queue)
        if n == 0:
            return 0.0
        e = m.ests[0]
        b = m.pad(min(n, m.batch_sizes[-1]))
        work_ns = n * e.exec_ns(b) / b
        left_ns = max(1, m.queue[0].request.deadline_ns - now_ns)
        return work_ns / left_ns

    def _unmet_demand(self, m: _ModelQueue, now_ns: int) -> float:
        """The demand less the devices holding the model that can take its work."""
        if not m.queue:
            return 0.0
        return self._demand(m, now_ns) - self._able_holders(m, now_ns)

    def _able_holders(self, m: _ModelQueue, now_ns: int) -> int:
        """Devices holding (or loading) ``m`` that are not refusing work; all of them while no
        device could take more (there is nowhere to spread to)."""
        n = m.holders()
        refusals = self._refusals
        if refusals.spread_window_ns > 0 and refusals.any_refused():
            refusing = 0
            for view in m.ready_on.values():
                if refusals.refusing(view.device, now_ns):
                    refusing += 1
            # the cluster-wide check only when it matters: it scans every device
            if refusing and self._spreadable(now_ns):
                n -= refusing
        return n

    def _spreadable(self, now_ns: int) -> bool:
        """Whether some device could take another's models (cached for one ``now_ns``)."""
        if self._spreadable_at_ns != now_ns:
            self._spreadable_at_ns = now_ns
            found = False
            for v in self.devices.values():
                if self._spread_target(v, now_ns):
                    found = True
                    break
            self._spreadable_now = found
        return self._spreadable_now

    def _spread_target(self, view: DeviceView, now_ns: int) -> bool:
        """A device that keeps up: it refused nothing for ``spread_calm_ns``. Loading models onto
        one that merely stopped refusing a moment ago moves the overload around and evicts what
        it will need (BENCHMARKS.md section 1)."""
        return self._refusals.calm(view.device, now_ns)

    def _update_candidacy(self, m: _ModelQueue, now_ns: int) -> None:
        name = m.name
        if not m.queue:
            if name in self._on_no_device:
                del self._on_no_device[name]
            if name in self._short_of_devices:
                del self._short_of_devices[name]
        elif m.holders() == 0:
            self._on_no_device[name] = m
            if name in self._short_of_devices:
                del self._short_of_devices[name]
        else:
            if name in self._on_no_device:
                del self._on_no_device[name]
            if self._unmet_demand(m, now_ns) > 0:
                self._short_of_devices[name] = m
            elif name in self._short_of_devices:
                del self._short_of_devices[name]

    # ----------------------------------------------------------------- queueing

    def _enqueue(self, p: PendingRequest, m: _ModelQueue, now_ns: int) -> int:
        """Queue ``p``; returns the time its expiry entry fires after."""
        q = m.queue
        deadline = p.request.deadline_ns
        if not q or q[-1].request.deadline_ns <= deadline:
            q.append(p)
        else:  # rare: a tighter deadline than requests queued before it
            i = len(q)
            while i > 0 and q[i - 1].request.deadline_ns > deadline:
                i -= 1
            q.insert(i, p)
        top = m.batch_sizes[-1]
        n = len(q)
        # the head's key may have been raised to a batch size its queue could fill (see
        # ``_pop_valid``): when the queue grows into a larger size, its key at that size
        grew = 1 < n <= top and m.pad(n) != m.pad(n - 1)
        for view in m.ready_on.values():
            self._push_strategy(view, p, top)
            if grew:
                self._push_strategy(view, q[0], m.pad(n))
        margin = self._margin_ns
        e1 = self._best_exec1_ns(m)
        needs_load = m.holders() == 0
        load = min(e.load.estimate_ns for e in m.ests) if needs_load else 0
        self._seq += 1
        expires_ns = deadline - margin - e1 - load - self._lead_ns
        _heappush(self._expiry, (expires_ns, self._seq, p, needs_load))
        self._update_candidacy(m, now_ns)
        return expires_ns

    def _settle_arrival(
        self, m: _ModelQueue, expires_ns: int, was_candidate: bool, now_ns: int
    ) -> None:
        """After an arrival queued on ``m``, keep the scheduler settled if a poll now would
        still plan nothing (what ``plan`` and ``wake_at`` would find), and move the wake-up.

        Nothing expires: the new entry fires at ``expires_ns`` >= now (it was accepted), the
        others after the settled wake-up. No device becomes plannable if every device holding
        ``m`` is planned up to the horizon; the others were, or had nothing to plan. No load
        becomes possible if ``m`` was already a load candidate (its queue is longer; where it
        fits is the same) or is not one now."""
        wake = self._settled_wake_ns
        if wake is not None and wake <= now_ns:
            return
        name = m.name
        if not was_candidate and (name in self._on_no_device or name in self._short_of_devices):
            return
        ahead = self._ahead_ns
        horizon = now_ns + ahead
        for view in m.ready_on.values():
            free = view.infer_free_at_ns
            if free < horizon:
                return
            if wake is None or free - ahead < wake:
                wake = free - ahead
        if wake is None or expires_ns + 1 < wake:
            wake = expires_ns + 1
        self._settled = True
        self._settled_wake_ns = wake if wake > now_ns else now_ns + 1

    def _push_strategy(self, view: DeviceView, p: PendingRequest, batch_size: int) -> None:
        e = self.estimates[p.request.model].get(view.estimates_key)
        if e is None:
            return
        self._seq += 1
        r = p.request
        key = r.deadline_ns - self._margin_ns - e.exec_ns(batch_size)
        _heappush(self._heaps[view.device], (key, -r.priority, self._seq, p, batch_size))

    def _remove_queued(self, m: _ModelQueue, p: PendingRequest) -> None:
        q = m.queue
        if q and q[0] is p:
            q.popleft()
        else:
            q.remove(p)

    def _give_up(self, p: PendingRequest, now_ns: int, why: str) -> None:
        status = ResponseStatus.WORKER_LOST if p.lost else ResponseStatus.OVERLOADED
        self.respond(p, status, now_ns, why)

    # ----------------------------------------------------------------- policy hooks

    def _note_slo(self, slo_ns: int, now_ns: int) -> bool:
        """Shrink the horizon for a tight SLO; let it grow back a second after the last.
        True if the horizon changed."""
        config = self.config
        before = self._ahead_ns
        ahead = int(slo_ns * config.horizon_slo_fraction)
        if ahead >= config.schedule_ahead_ns:
            if before < config.schedule_ahead_ns and now_ns > self._ahead_until_ns:
                self._ahead_ns = config.schedule_ahead_ns
            return self._ahead_ns != before
        ahead = max(ahead, config.min_schedule_ahead_ns)
        if ahead <= before or now_ns > self._ahead_until_ns:
            self._ahead_ns = ahead
            self._ahead_until_ns = now_ns + NS_PER_S
        return self._ahead_ns != before

    def accept(self, p: PendingRequest, now_ns: int) -> None:
        r = p.request
        # a new horizon moves every device's planning point: no settled shortcut then
        moved = bool(self.config.horizon_slo_fraction) and self._note_slo(
            r.deadline_ns - r.arrival_ns, now_ns
        )
        if not self.devices:
            self.respond(p, ResponseStatus.OVERLOADED, now_ns, "no worker is connected")
            return
        why = self.unservable(r.model)
        if why:
            self.respond(p, ResponseStatus.DEADLINE_INFEASIBLE, now_ns, why)
            return
        m = self._model(r.model)
        budget = r.deadline_ns - now_ns - self._lead_ns - self._margin_ns
        need = self._need_ns(m)
        if budget < need and self._refresh(m, now_ns):
            need = self._need_ns(m)  # the estimate was stale
        level = self.config.long_shot_chance
        if budget < need and level and m.ready_on and self._chance(m, budget) >= level:
            self._long_shots.append(p)
            return
        if budget < need:
            self._refused_infeasible(m, budget, now_ns)
            what = "running batch 1" if m.holders() else "loading the model and running batch 1"
            self.respond(
                p,
                ResponseStatus.DEADLINE_INFEASIBLE,
                now_ns,
                f"{what} is estimated at {need / NS_PER_MS:.3f} ms; "
                f"only {max(0, budget) / NS_PER_MS:.3f} ms are left",
            )
            return
        if self.config.backlog_admission and m.holders():
            why = self._backlog_refusal(m, r.deadline_ns, now_ns)
            if why:
                self.respond(p, ResponseStatus.OVERLOADED, now_ns, why)
                return
        name = m.name
        was_candidate = name in self._on_no_device or name in self._short_of_devices
        expires_ns = self._enqueue(p, m, now_ns)
        if self._settled_before_event and not moved:
            self._settle_arrival(m, expires_ns, was_candidate, now_ns)

    def _backlog_refusal(
        self, m: _ModelQueue, deadline_ns: int, now_ns: int, count: int = 1
    ) -> str:
        """Why ``count`` requests of ``m`` due at ``deadline_ns`` cannot all be served behind
        the requests queued ahead of them on the devices holding ``m``; "" if they may be."""
        # with nothing queued ahead, the devices may still be planned past its deadline
        ahead = self._queued_ahead(m, deadline_ns) if m.queue else 0
        can = self._capacity_by(m, deadline_ns - self._margin_ns, now_ns)
        them = "it" if count == 1 else f"its {count} samples"
        if ahead + count > can:
            return (
                f"{ahead} requests of {m.name} are queued ahead of {them}; the devices "
                f"holding it could run at most {can} before its deadline"
            )
        return self._displaced(m, ahead, count, them, now_ns)

    def _displaced(self, m: _ModelQueue, ahead: int, count: int, them: str, now_ns: int) -> str:
        """Why taking ``count`` requests at queue position ``ahead`` (a tighter deadline than
        the requests queued from there on) would push one of those past what the holders can
        run before its deadline; "" if none. The requests taken first keep their place: a
        newcomer is refused rather than a request already accepted lost."""
        q = m.queue
        n = len(q)
        if ahead >= n:  # (usually: one SLO per model queues in arrival order)
            return ""
        # two of them, not each: requests reach the queue a little out of deadline order
        # (decoded in parallel), and one capacity each would cost the loop per arrival. The
        # first pushed has the least room when the holders run more than its model's arrivals
        # (room grows with the deadline), the last when they run less
        first = ahead
        deadline = q[first].request.deadline_ns
        while first + 1 < n and q[first + 1].request.deadline_ns == deadline:
            first += 1
        for i in (first, n - 1) if first < n - 1 else (first,):
            can = self._capacity_by(m, q[i].request.deadline_ns - self._margin_ns, now_ns)
            if i + 1 + count > can:
                return (
                    f"taking {them} would push requests of {m.name} queued before it past "
                    f"their deadlines: the devices holding it could run at most {can} by then"
                )
        return ""

    def early_refusal(
        self, model: str, deadline_ns: int, now_ns: int, count: int = 1
    ) -> tuple[ResponseStatus, str] | None:
        # only the backlog rule: the others (an infeasible budget, no device) have effects of
        # their own when they refuse (demand for a load, a re-measurement, a long shot)
        if not self.config.backlog_admission:
            return None
        m = self._queues.get(model)
        if m is None or not m.holders() or model not in self.models:
            return None
        budget = deadline_ns - now_ns - self._lead_ns - self._margin_ns
        if budget < self._need_ns(m):
            return None
        why = self._backlog_refusal(m, deadline_ns, now_ns, count)
        return (ResponseStatus.OVERLOADED, why) if why else None

    @staticmethod
    def _queued_ahead(m: _ModelQueue, deadline_ns: int) -> int:
        """Requests of ``m`` queued that would run before one due at ``deadline_ns``."""
        q = m.queue
        if q[-1].request.deadline_ns <= deadline_ns:
            return len(q)
        return sum(1 for p in q if p.request.deadline_ns <= deadline_ns)

    def _capacity_by(self, m: _ModelQueue, end_ns: int, now_ns: int) -> int:
        """The most requests of ``m`` the devices holding it (or loading it) could run by
        ``end_ns``, each from when it is free (and the model loaded), in the largest batches
        that fit, with no other model's work: a bound no schedule can beat."""
        total = 0
        by_key = self.estimates[m.name]
        gap = self._gaps.typical.value_ns
        tail = self._gaps.tail.value_ns - gap
        for view in (*m.ready_on.values(), *m.loading_on.values()):
            e = by_key.get(view.estimates_key)
            if e is None:
                continue
            earliest = now_ns + self._lead_ns
            end = end_ns
            t = earliest
            if view.infer_free_at_ns > earliest:
                # behind the work planned on it: each batch after the worker's turnaround,
                # and room for one slow turnaround
                t = view.infer_free_at_ns + gap
                end -= tail
            res = view.resident.get(m.name)
            if res is not None and not res.ready and res.ready_at_ns > t:
                t = res.ready_at_ns
            sizes = e.batch_sizes
            for _ in range(256):  # batches back to back; a bound on the loop, not the answer
                fit = 0
                for b in reversed(sizes):
                    if t + e.exec_ns(b) <= end:
                        fit = b
                        break
                if not fit:
                    break
                total += fit
                t += e.exec_ns(fit) + gap
        return total

    def _need_ns(self, m: _ModelQueue) -> int:
        """The least time from now a request of ``m`` needs: batch 1, after a load if cold."""
        e1 = self._best_exec1_ns(m)
        if m.holders() == 0:
            return e1 + min(e.load.estimate_ns for e in m.ests)
        return e1

    def _refresh(self, m: _ModelQueue, now_ns: int) -> bool:
        """Age ``m``'s estimates; True if one changed."""
        changed = False
        max_age = self.estimator_config.max_age_ns
        for e in m.ests:
            changed = e.refresh(now_ns, max_age) or changed
        return changed

    def _refused_infeasible(self, m: _ModelQueue, budget_ns: int, now_ns: int) -> None:
        """A request of ``m`` with ``budget_ns`` left is being refused as infeasible: make that
        refusal heal. Cold, and a device holding ``m`` could have served it: demand for a load.
        Held, and the estimate said no: re-measure on an idle holder."""
        if m.holders() == 0:
            window = self.config.refused_demand_window_ns
            if not self._links.measured:
                # the margin is still a guess, and nothing will run to measure it unless
                # something is loaded: judge with the device alone
                budget_ns += self._margin_ns + self._lead_ns
            level = self.config.long_shot_chance
            if window and (
                budget_ns >= self._best_exec1_ns(m)
                or (level and self._chance(m, budget_ns) >= level)
            ):
                refused = m.refused
                refused.append(now_ns)
                while refused[0] < now_ns - window:
                    refused.popleft()
                self._wanted[m.name] = m
        elif self.config.probe_interval_ns:
            since = now_ns - self.config.probe_interval_ns
            b = m.batch_sizes[0]
            # measured that recently (it runs, or was tried): its estimate is not stale
            if not any(e.exec[b].last_measured_ns >= since for e in m.ests):
                self._probe[m.name] = m

    def requeue(self, p: PendingRequest, now_ns: int) -> None:
        m = self._model(p.request.model)
        if self.config.backlog_admission and m.holders():
            # its Infer did not run (refused too late, or its worker was lost): admitted again
            # by the rule that admitted it, so that a request the backlog can no longer serve
            # is answered now, not at its latest start after a device ran part of its call
            why = self._backlog_refusal(m, p.request.deadline_ns, now_ns)
            if why:
                self._give_up(p, now_ns, why)
                return
        self._enqueue(p, m, now_ns)

    def unqueue(self, p: PendingRequest, now_ns: int) -> None:
        m = self._queues.get(p.request.model)
        # (a long shot waits outside its model's queue: answered, it is passed over there)
        if m is None or p not in m.queue:
            return
        self._remove_queued(m, p)
        if m.queue:
            # the requests left may hold no strategy entry of their own (``_commit`` says why)
            self._key_head(m)
        self._update_candidacy(m, now_ns)

    def drop_queued(self, model: str) -> list[PendingRequest]:
        m = self._queues.pop(model, None)
        self._wanted.pop(model, None)
        self._probe.pop(model, None)
        if model in self._on_no_device:
            del self._on_no_device[model]
        if model in self._short_of_devices:
            del self._short_of_devices[model]
        return list(m.queue) if m else []

    def warming(self) -> bool:
        """Whether a warm start may still load models (or is loading them)."""
        return self._warm_pending or any(v.loads_in_flight for v in self.devices.values())

    def _on_model_registered(self, event: ModelRegistered, now_ns: int) -> None:
        super()._on_model_registered(event, now_ns)
        self._warm_pending = self.config.warm_start

    def _on_worker_models_changed(self, event: WorkerModelsChanged, now_ns: int) -> None:
        super()._on_worker_models_changed(event, now_ns)
        self._warm_pending = self.config.warm_start
        if self.per_device_estimates:
            self._renew_ests()

    def on_device_added(self, view: DeviceView, now_ns: int) -> None:
        self._warm_pending = self.config.warm_start
        heap: list[Strategy] = []
        self._heaps[view.device] = heap
        self._dev_heaps.append((view, heap))
        self._spreadable_at_ns = -1
        if self.per_device_estimates:
            self._renew_ests()

    def on_device_removed(self, view: DeviceView) -> None:
        self._heaps.pop(view.device, None)
        self._refusals.forget(view.device)
        self._gaps.forget(view.device)
        self._spreadable_at_ns = -1
        self._dev_heaps = [(v, h) for v, h in self._dev_heaps if v is not view]
        if self.per_device_estimates:
            self._renew_ests()

    def _renew_ests(self) -> None:
        """Per-device estimates came or went with a device, or what a worker serves changed:
        every model's ``ests`` again."""
        for m in self._queues.values():
            m.ests = self.model_estimates(m.name)

    def on_residency_ready(self, view: DeviceView, model: str, now_ns: int) -> None:
        m = self._model(model)
        m.loading_on.pop(view.device, None)
        m.ready_on[view.device] = view
        top = m.batch_sizes[-1]
        for p in m.queue:
            self._push_strategy(view, p, top)
        self._update_candidacy(m, now_ns)

    def on_residency_gone(self, view: DeviceView, model: str) -> None:
        # a failed load or an eviction may leave pages a warm start can fill
        self._warm_pending = self.config.warm_start
        m = self._queues.get(model)
        if m is None:
            return
        m.ready_on.pop(view.device, None)
        m.loading_on.pop(view.device, None)
        if m.queue and m.holders() == 0:
            self._on_no_device[model] = m
            if model in self._short_of_devices:
                del self._short_of_devices[model]

    # ----------------------------------------------------------------- planning

    def plan(self, now_ns: int) -> None:
        self._expire(now_ns)
        if self._flight_expiry and self._flight_expiry[0][FLIGHT_DEADLINE_NS] < now_ns:
            self._expire_flights(now_ns)
        if self._failed_calls:  # a sample expired: its call's others are not planned
            self.withdraw_failed_calls(now_ns)
        if not self.devices:
            if self._long_shots:
                self._plan_long_shots(now_ns)
            return
        horizon = now_ns + self._ahead_ns
        ready = [v for v, heap in self._dev_heaps if heap and v.infer_free_at_ns < horizon]
        if len(ready) > 1:
            ready.sort(key=_infer_free_at)
        for view in ready:
            self._plan_infers(view, now_ns, horizon)
        self._load_wake_ns = None
        if self._on_no_device or self._short_of_devices or self._wanted:
            self._plan_loads(now_ns, horizon)
        if self._long_shots:
            self._plan_long_shots(now_ns)
        self._probe_wake_ns = None
        if self._probe:
            self._plan_probes(now_ns)
        if self._warm_pending:
            self._plan_warm(now_ns, horizon)

    def _plan_warm(self, now_ns: int, horizon: int) -> None:
        """Warm start: load models that are on no device into free pages, one device each,
        where a load executor is free within the horizon and no demand waits for it."""
        if self._on_no_device or self._short_of_devices or self._wanted:
            return  # demand first; planned again when it is met
        order = [n for n in self.config.warm_first if n in self.models]
        order += [n for n in self.models if n not in self.config.warm_first]
        todo = [n for n in order if self.is_cold(n)]
        limit = self.config.max_loads_in_flight
        waiting = False
        for view in sorted(self.devices.values(), key=_load_free_at):
            served = view.models
            while todo and view.loads_in_flight < limit:
                start = self._load_start(view, now_ns, horizon)
                if start is None:
                    waiting = True
                    break
                chosen = None
                for i, name in enumerate(todo):
                    profile = self.models[name].profile_for(view.kind_name)
                    if (
                        profile is None
                        or (served is not None and name not in served)
                        or profile.pages_for(view.kind) > view.free_pages
                    ):
                        continue
                    chosen = i, name, profile.pages_for(view.kind)
                    break
                if chosen is None:
                    break
                i, name, pages = chosen
                # no request waits for it: it may start late rather than fail
                if self.start_load(view, name, pages, start, start + NS_PER_S, now_ns) is None:
                    break
                self._model(name).loading_on[view.device] = view
                del todo[i]
                self._settled = False
            if view.loads_in_flight >= limit:
                waiting = True  # its slot frees with a result, which plans again
        # done when nothing is left or nothing fits anywhere and no load slot is awaited
        self._warm_pending = bool(todo) and waiting

    def _chance(self, m: _ModelQueue, budget_ns: int) -> float:
        """The chance that batch 1 of ``m`` runs within ``budget_ns`` on its fastest kind, from
        the spread of its recent runs (0 when long shots are off)."""
        level = self.config.long_shot_chance
        if not level or budget_ns <= 0:
            return 0.0
        best = 0.0
        for e in m.ests:
            c = self._spread(e, m.batch_sizes[0]).probability_within(budget_ns)
            best = c if c > best else best
        return best

    def _spread(self, e: ModelEstimates, batch_size: int) -> Spread:
        s = e.exec[batch_size].spread()
        prior = self.config.long_shot_prior_log_sd
        if s.samples < 3 and s.log_sd < prior:
            return Spread(s.samples, s.median_ns, s.log_mean, prior)
        return s

    def _plan_long_shots(self, now_ns: int) -> None:
        """Try the requests held back by ``accept`` on holders idle now, batch 1, each only
        while it has ``long_shot_chance``; refuse the others as infeasible."""
        shots = self._long_shots
        self._long_shots = []
        level = self.config.long_shot_chance
        start = now_ns + self._lead_ns
        margin = self._margin_ns
        for p in shots:
            if p.state != QUEUED:
                continue
            r = p.request
            if r.model not in self.models:
                self.respond(
                    p, ResponseStatus.MODEL_REMOVED, now_ns, f"model {r.model!r} was removed"
                )
                continue
            m = self._model(r.model)
            b = m.batch_sizes[0]
            budget = r.deadline_ns - margin - start
            for view in m.ready_on.values():
                e = self.estimates[m.name].get(view.estimates_key)
                if e is None or view.infer_free_at_ns > now_ns:
                    continue
                spread = self._spread(e, b)
                if spread.probability_within(budget) < level:
                    continue
                latest = r.deadline_ns - margin - spread.quantile_ns(level)
                expected = e.exec_ns(b)
                action = Infer(
                    self.new_action_id(),
                    view.device,
                    m.name,
                    b,
                    (r.request_id,),
                    now_ns,
                    max(now_ns, latest),
                    expected,
                )
                view.infer_free_at_ns = start + expected
                view.touch(m.name, now_ns)
                # a try measures the model as a probe would
                m.probe_at_ns = now_ns + self.config.probe_interval_ns
                self.send(action, view, now_ns, [p])
                self._seq += 1
                _heappush(self._flight_expiry, (r.deadline_ns, self._seq, action.action_id))
                self._settled = False
                break
            if p.state == QUEUED:
                # (not ``_refused_infeasible``: the estimate gave it its chance, a busy device
                # did not; probing would only take device time)
                left = r.deadline_ns - now_ns - self._lead_ns - margin
                self.respond(
                    p,
                    ResponseStatus.DEADLINE_INFEASIBLE,
                    now_ns,
                    f"running batch 1 is estimated at {self._need_ns(m) / NS_PER_MS:.3f} ms; "
                    f"only {max(0, left) / NS_PER_MS:.3f} ms are left, and no device holding "
                    "its model was idle to try it",
                )

    def _plan_probes(self, now_ns: int) -> None:
        """Re-measure models whose estimates made them refuse work: an all-padding batch of the
        smallest size on a holder that is idle now, expected to take the window's median (not
        the high estimate, which would keep the device from other work). Its result is measured
        like any other; nobody waits for it."""
        wake = None
        for name, m in list(self._probe.items()):
            if not m.ready_on:
                del self._probe[name]
                continue
            if m.probe_at_ns > now_ns:
                wake = m.probe_at_ns if wake is None or m.probe_at_ns < wake else wake
                continue
            idle = None
            for view in m.ready_on.values():
                if view.infer_free_at_ns <= now_ns:
                    idle = view
                    break
                if wake is None or view.infer_free_at_ns < wake:
                    wake = view.infer_free_at_ns
            if idle is None:
                continue
            b = m.batch_sizes[0]
            e = self.estimates[name][idle.estimates_key]
            expected = e.exec[b].spread().median_ns
            self.send(
                Infer(
                    self.new_action_id(),
                    idle.device,
                    name,
                    b,
                    (),
                    now_ns,
                    now_ns + self._ahead_ns,
                    expected,
                ),
                idle,
                now_ns,
            )
            idle.infer_free_at_ns = now_ns + self._lead_ns + expected
            m.probe_at_ns = now_ns + self.config.probe_interval_ns
            del self._probe[name]
            self._settled = False
        self._probe_wake_ns = wake

    def _expire(self, now_ns: int) -> None:
        expiry = self._expiry
        while expiry and expiry[0][EXPIRY_NS] < now_ns:
            _, _, p, assumed_load = _heappop(expiry)
            if p.state != QUEUED:
                continue
            m = self._queues[p.request.model]
            if assumed_load and m.holders():
                # the model arrived (or is arriving) after all: only execution is needed now
                self._seq += 1
                e1 = self._best_exec1_ns(m)
                _heappush(
                    expiry,
                    (
                        p.request.deadline_ns - self._margin_ns - e1 - self._lead_ns,
                        self._seq,
                        p,
                        False,
                    ),
                )
                continue
            self._remove_queued(m, p)
            self._mark_overload(m.ready_on.values(), now_ns)
            self._give_up(
                p,
                now_ns,
                "no device could start it in time"
                if not assumed_load
                else "its model could not be loaded in time",
            )
            self._update_candidacy(m, now_ns)

    def _expire_flights(self, now_ns: int) -> None:
        """Answer the requests of Infers in flight whose deadlines passed without a result: a
        refusal at the deadline, not an answer whenever the worker comes back. A result that
        comes later is measured and dropped."""
        heap = self._flight_expiry
        while heap and heap[0][FLIGHT_DEADLINE_NS] < now_ns:
            _, _, action_id = _heappop(heap)
            flight = self.inflight.get(action_id)
            if flight is None:
                continue
            left = 0
            for p in flight.requests:
                if p.state == DONE:
                    continue
                if p.request.deadline_ns < now_ns:
                    self.respond(
                        p,
                        ResponseStatus.OVERLOADED,
                        now_ns,
                        "its result did not come back by its deadline",
                    )
                elif not left or p.request.deadline_ns < left:
                    left = p.request.deadline_ns
            if left:
                self._seq += 1
                _heappush(heap, (left, self._seq, action_id))

    def _plan_infers(self, view: DeviceView, now_ns: int, horizon: int) -> None:
        heap = self._heaps[view.device]
        lookahead = self.config.overload_lookahead
        efficient = self.config.efficient_batch
        earliest = now_ns + self._lead_ns
        while heap:
            t = view.infer_free_at_ns if view.infer_free_at_ns > earliest else earliest
            if t >= horizon:
                return
            popped = self._pop_valid(heap, view, t)
            if popped is None:
                return
            entry, m = popped
            e = self.estimates[m.name][view.estimates_key]
            choice = self._candidate(view, m, e, t, now_ns)
            if choice is None:
                continue
            if (
                choice[TAKEN] < efficient
                and lookahead
                and self._refusals.overloaded(view.device, now_ns)
            ):
                # overloaded: a small batch now would push a fuller one past its deadline, and
                # goodput is what is left to save; look a little further for a fuller batch
                want = min(efficient, 2 * choice[TAKEN])
                better = self._fuller_batch(heap, view, t, now_ns, m, want)
                if better is not None:
                    _heappush(heap, entry)  # deferred, not dropped
                    m, choice = better
                    e = self.estimates[m.name][view.estimates_key]
            self._commit(view, m, e, t, choice, now_ns)

    def _pop_valid(
        self, heap: list[Strategy], view: DeviceView, t: int
    ) -> tuple[Strategy, _ModelQueue] | None:
        """Pop strategies until one is feasible at ``t``; return its model (the strategy is
        consumed: its request is served with the model's oldest, or by another holder)."""
        device = view.device
        while heap:
            entry = _heappop(heap)
            key, _, _, p, b = entry
            if p.state != QUEUED:
                continue
            m = self._queues.get(p.request.model)
            if m is None or device not in m.ready_on:
                continue
            if t > key:
                # the next smaller size that is still feasible at t: a size that is not would be
                # pushed and popped again at once (its key is below t, so below every feasible
                # entry's)
                e = self.estimates[m.name].get(view.estimates_key)
                nb = m.smaller(b)
                if e is not None:
                    limit = p.request.deadline_ns - self._margin_ns
                    while nb and t > limit - e.exec_ns(nb):
                        nb = m.smaller(nb)
                if nb:
                    self._push_strategy(view, p, nb)
                continue
            q = m.queue
            n = len(q)
            if 1 < n < b:
                # a key at a batch size the queue cannot fill is earlier than the batch that
                # will run: a model with 2 queued would pass one with 1 queued and an earlier
                # deadline (BENCHMARKS.md s.21). Keys only ever grow here, so the heap still pops
                # the least true key first; a longer queue later pushes its own entries
                real = m.pad(n)
                if real < b:
                    e = self.estimates[m.name].get(view.estimates_key)
                    if e is not None:
                        head = q[0].request.deadline_ns - self._margin_ns
                        real_key = head - e.exec_ns(real)
                        if real_key > key:
                            self._seq += 1
                            head_p = q[0]
                            _heappush(
                                heap, (real_key, -head_p.request.priority, self._seq, head_p, real)
                            )
                            continue
            return entry, m
        return None

    def _fuller_batch(
        self,
        heap: list[Strategy],
        view: DeviceView,
        t: int,
        now_ns: int,
        first: _ModelQueue,
        want: int,
    ) -> tuple[_ModelQueue, BatchChoice] | None:
        """Among the next few most urgent models on this device, one whose batch now would be
        at least ``want`` requests."""
        held: list[Strategy] = []
        seen = {first.name}
        found = None
        for _ in range(self.config.overload_lookahead):
            if not heap:
                break
            entry = _heappop(heap)
            held.append(entry)
            p = entry[STRATEGY_REQUEST]
            if p.state != QUEUED or p.request.model in seen:
                continue
            m = self._queues.get(p.request.model)
            if m is None or view.device not in m.ready_on:
                continue
            seen.add(m.name)
            e = self.estimates[m.name][view.estimates_key]
            choice = self._candidate(view, m, e, t, now_ns)
            if choice is not None and choice[TAKEN] >= want:
                found = (m, choice)
                break
        for entry in held:
            _heappush(heap, entry)
        return found

    def _feasible_elsewhere(
        self, m: _ModelQueue, p: PendingRequest, here: DeviceView, now_ns: int
    ) -> bool:
        deadline = p.request.deadline_ns - self._margin_ns
        for holders, loading in ((m.ready_on, False), (m.loading_on, True)):
            for view in holders.values():
                if view is here:
                    continue
                e = self.estimates[m.name][view.estimates_key]
                t = max(now_ns + self._lead_ns, view.infer_free_at_ns)
                if loading:
                    res = view.resident.get(m.name)
                    if res is not None:
                        t = max(t, res.ready_at_ns)
                if t + e.exec_ns(m.batch_sizes[0]) <= deadline:
                    return True
        return False

    def _mark_overload(self, views: Iterable[DeviceView], now_ns: int) -> None:
        """Count a refusal against ``views``; enough of them close together mean overload."""
        self._spreadable_at_ns = -1
        for view in views:
            self._refusals.record(view.device, now_ns)

    def _candidate(
        self, view: DeviceView, m: _ModelQueue, e: ModelEstimates, t: int, now_ns: int
    ) -> BatchChoice | None:
        """The batch ``m`` would run on ``view`` starting at ``t``: (requests to skip at the
        head, batch size, requests taken). Refuses heads that no device can serve in time."""
        q = m.queue
        margin = self._margin_ns
        smallest = m.batch_sizes[0]
        first_end = t + e.exec_ns(smallest) + margin
        while q and first_end > q[0].request.deadline_ns:
            head = q[0]
            if self._feasible_elsewhere(m, head, view, now_ns):
                return None
            q.popleft()
            self._give_up(
                head, now_ns, "the devices holding its model were busy until past its deadline"
            )
            self._mark_overload((view,), now_ns)
        if not q:
            self._update_candidacy(m, now_ns)
            return None
        top = m.batch_sizes[-1]
        n = min(len(q), top)
        b = m.pad(n)
        oldest = q[0].request.deadline_ns - margin
        while b > smallest and t + e.exec_ns(b) > oldest:
            b = m.smaller(b)
        k = min(n, b)
        if k < b:
            # k requests padded to b: the b' = smaller(b) oldest alone may cost less per request
            # (9 requests at size 16 take 17.3 ms, 8 at size 8 take 9.9 ms on the V100)
            bs = m.smaller(b)
            if (
                bs
                and e.exec_ns(bs) * k < e.exec_ns(b) * bs
                # and the requests left over still make it if they run right after
                and t + e.exec_ns(bs) + e.exec_ns(m.pad(k - bs)) + margin
                <= q[bs].request.deadline_ns
            ):
                b = k = bs
        if len(q) < 2 * k or not self._refusals.overloaded(view.device, now_ns):
            return 0, b, k
        # overloaded and the oldest deadline forces a small batch: consider giving up the oldest
        # requests (they would be served at a fraction of the device's throughput) for a batch
        # at least twice as full of younger ones
        size = top
        while size > b:
            end = t + e.exec_ns(size) + margin
            skip = 0
            while skip < len(q) and q[skip].request.deadline_ns < end:
                skip += 1
            avail = min(len(q) - skip, size)
            run = m.pad(avail)
            # estimates need not grow with batch size: check the size that will actually run
            if (
                avail >= 2 * k
                and 2 * avail >= size
                and t + e.exec_ns(run) + margin <= q[skip].request.deadline_ns
            ):
                return skip, run, avail
            size = m.smaller(size)
        return 0, b, k

    def _commit(
        self,
        view: DeviceView,
        m: _ModelQueue,
        e: ModelEstimates,
        t: int,
        choice: BatchChoice,
        now_ns: int,
    ) -> None:
        skip, b, k = choice
        q = m.queue
        for _ in range(skip):
            head = q.popleft()
            self._give_up(head, now_ns, "shed under overload for a fuller batch")
        if self._failed_calls:
            # a sample shed ends its call: the call's other samples leave this batch too
            self.withdraw_failed_calls(now_ns)
            if len(q) < k:
                k = len(q)
                if not k:
                    return
                b = m.pad(k)
        margin = self._margin_ns
        batch = [q.popleft() for _ in range(k)]
        expected = e.exec_ns(b)
        latest = batch[0].request.deadline_ns - margin - expected
        action = Infer(
            self.new_action_id(),
            view.device,
            m.name,
            b,
            tuple(p.request.request_id for p in batch),
            now_ns,
            latest,
            expected,
        )
        view.infer_free_at_ns = t + expected
        view.touch(m.name, now_ns)
        self.send(action, view, now_ns, batch)
        self._seq += 1
        _heappush(
            self._flight_expiry,
            (batch[0].request.deadline_ns, self._seq, action.action_id),
        )
        if not q:
            if m.name in self._on_no_device:
                del self._on_no_device[m.name]
            if m.name in self._short_of_devices:
                del self._short_of_devices[m.name]
        else:
            # what was left (a batch smaller than the queue) must stay plannable: the entries of
            # the requests left may have been re-keyed to the head just served (``_pop_valid``)
            self._key_head(m)

    def _key_head(self, m: _ModelQueue) -> None:
        """Give ``m``'s queue head an entry at the batch its queue fills, on every holder."""
        head = m.queue[0]
        size = m.pad(min(len(m.queue), m.batch_sizes[-1]))
        for view in m.ready_on.values():
            self._push_strategy(view, head, size)

    def _plan_loads(self, now_ns: int, horizon: int) -> None:
        # (unmet demand, name, model, whether a holder is refusing its work: a spread candidate)
        ranked: list[tuple[float, str, _ModelQueue, bool]] = []
        for pool in (self._on_no_device, self._short_of_devices):
            for name, m in list(pool.items()):
                able = self._able_holders(m, now_ns) if m.queue else 0
                unmet = self._demand(m, now_ns) - able if m.queue else 0.0
                if unmet > 0:
                    ranked.append((unmet, name, m, able < m.holders()))
                elif pool is self._short_of_devices:
                    del pool[name]
        if self._wanted:
            window = self.config.refused_demand_window_ns
            for name, m in list(self._wanted.items()):
                refused = m.refused
                while refused and refused[0] < now_ns - window:
                    refused.popleft()
                if not refused or m.holders():
                    del self._wanted[name]
                elif not m.queue:  # (one with a queue is ranked above, as cold)
                    # the work the refused requests would have brought, per unit of time
                    ranked.append((len(refused) * self._best_exec1_ns(m) / window, name, m, False))
        if not ranked:
            return
        ranked.sort(key=lambda x: (-x[0], x[1]))
        limit = self.config.max_loads_in_flight
        waits_for_calm = False
        for view in sorted(self.devices.values(), key=_load_free_at):
            served = view.models  # None: its worker serves every model
            while ranked and view.loads_in_flight < limit:
                start = self._load_start(view, now_ns, horizon)
                if start is None:
                    break
                chosen = None
                target = self._spread_target(view, now_ns)
                for i, (_, name, m, spreading) in enumerate(ranked):
                    if (
                        name in view.resident
                        or (not m.queue and name not in self._wanted)
                        or (served is not None and name not in served)
                    ):
                        continue
                    if spreading and not target:
                        waits_for_calm = True
                        continue  # spread a refusing device's model to one that keeps up
                    profile = self.models[name].profile_for(view.kind_name)
                    if profile is None:
                        continue
                    pages = profile.pages_for(view.kind)
                    if self.make_room(view, pages, now_ns, self._has_demand):
                        chosen = (i, m, pages)
                        break
                if chosen is None:
                    break
                i, m, pages = chosen
                e = self.estimates[m.name][view.estimates_key]
                if m.queue:
                    head = m.queue[0].request.deadline_ns - self._margin_ns
                    latest = head - e.exec_ns(m.batch_sizes[0]) - e.load.estimate_ns
                else:  # wanted for refused requests: no deadline waits on it
                    latest = start + self._ahead_ns
                if self.start_load(view, m.name, pages, start, latest, now_ns) is None:
                    break
                m.loading_on[view.device] = view
                del ranked[i]
                # one load per model per poll: if it needs more devices still, the next poll
                # (whenever it comes) ranks it again, so this one is not settled
                self._settled = False
                self._update_candidacy(m, now_ns)
        if waits_for_calm:
            self._wake_when_calm(now_ns)

    def _load_start(self, view: DeviceView, now_ns: int, horizon: int) -> int | None:
        """When a load on ``view`` could start; None if not inside the horizon (then the
        scheduler wakes up when it comes inside)."""
        start = max(now_ns + self._lead_ns, view.load_free_at_ns)
        if start < horizon:
            return start
        w = start - self._ahead_ns
        if self._load_wake_ns is None or w < self._load_wake_ns:
            self._load_wake_ns = w
        return None

    def _wake_when_calm(self, now_ns: int) -> None:
        """A model waits to be spread until some device has been calm for ``spread_calm_ns``:
        no event marks that moment, so wake up for it (else the load would wait for whatever
        event comes next, and a poll skipped as settled would differ from one that plans)."""
        wake = self._refusals.next_calm_ns(self.devices, now_ns)
        if wake is not None and (self._load_wake_ns is None or wake < self._load_wake_ns):
            self._load_wake_ns = wake

    def _has_demand(self, model: str) -> bool:
        m = self._queues.get(model)
        return m is not None and bool(m.queue)

    def wake_at(self, now_ns: int) -> int | None:
        # a plain int while searching (no wake yet: ``found`` False), boxed once at the end
        wake = 0
        found = False
        expiry = self._expiry
        # entries of requests already served are dropped here, or each would cost a wake-up
        while expiry and expiry[0][EXPIRY_REQUEST].state != QUEUED:
            _heappop(expiry)
        if expiry:
            wake = expiry[0][EXPIRY_NS] + 1
            found = True
        ahead = self._ahead_ns
        for view, heap in self._dev_heaps:
            while heap and heap[0][STRATEGY_REQUEST].state != QUEUED:
                _heappop(heap)
            if heap:
                t = view.infer_free_at_ns - ahead
                if not found or t < wake:
                    wake = t
                    found = True
        flights = self._flight_expiry
        while flights and flights[0][FLIGHT_ACTION_ID] not in self.inflight:
            _heappop(flights)
        if flights and (not found or flights[0][FLIGHT_DEADLINE_NS] + 1 < wake):
            wake = flights[0][FLIGHT_DEADLINE_NS] + 1
            found = True
        lw = self._load_wake_ns
        if lw is not None and (not found or lw < wake):
            wake = lw
            found = True
        pw = self._probe_wake_ns
        if pw is not None and (not found or pw < wake):
            wake = pw
            found = True
        if not found:
            return None
        return wake if wake > now_ns else now_ns + 1


def _infer_free_at(view: DeviceView) -> int:
    return view.infer_free_at_ns


def _load_free_at(view: DeviceView) -> int:
    return view.load_free_at_ns
