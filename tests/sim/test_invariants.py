"""Invariants of any run, for both policies, over random small clusters and workloads (workers
sometimes serving only some of the models)."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clockwork.core.actions import EvictWeights, Infer, LoadWeights
from clockwork.core.events import RequestArrived, RequestsWithdrawn
from clockwork.core.policies import make_policy
from clockwork.core.policies.base import PolicyBase
from clockwork.core.requests import ResponseStatus
from clockwork.core.scheduler import SchedulerOutput
from clockwork.sim.noise import NoiseConfig
from clockwork.sim.runner import SimConfig, Simulation

from support.sim import SkewedPoisson, answered_once, model_set, small_kind
from support.units import MS, S


class CheckedScheduler:
    """Delegates to a policy and checks page accounting, and that models are placed only where
    their worker serves them, after every poll."""

    def __init__(
        self,
        inner: PolicyBase,
        served: dict[str, frozenset[str] | None] | None = None,
        withdraw_every: int = 0,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.sim: Simulation | None = None
        self.polls = 0
        # worker -> the models it serves (absent or None: all)
        self.served = served or {}
        # every n-th request is withdrawn by its caller at the next event (0: none is)
        self.withdraw_every = withdraw_every
        self._arrivals = 0
        self._to_withdraw: list[int] = []
        self.withdrawn: set[int] = set()  # answered WITHDRAWN

    def handle(self, event: object, now_ns: int) -> None:
        if self._to_withdraw:
            ids, self._to_withdraw = tuple(self._to_withdraw), []
            self.inner.handle(RequestsWithdrawn(ids, "its caller went away"), now_ns)
        self.inner.handle(event, now_ns)
        if self.withdraw_every and type(event) is RequestArrived:
            self._arrivals += 1
            if self._arrivals % self.withdraw_every == 0:
                self._to_withdraw.append(event.request.request_id)

    def pending_requests(self) -> int:
        return self.inner.pending_requests()

    def early_refusal(
        self, model: str, deadline_ns: int, now_ns: int, count: int = 1
    ) -> tuple[ResponseStatus, str] | None:
        return self.inner.early_refusal(model, deadline_ns, now_ns, count)

    def poll(self, now_ns: int) -> SchedulerOutput:
        out = self.inner.poll(now_ns)
        self.polls += 1
        for view in self.inner.devices.values():
            assert 0 <= view.free_pages <= view.total_pages
            assert view.used_pages() + view.free_pages == view.total_pages
        if self.sim is not None:
            for dev in self.sim._devices.values():
                assert 0 <= dev.state.free_pages <= dev.state.total_pages
                assert dev.state.used_pages() + dev.state.free_pages == dev.state.total_pages
        self.withdrawn.update(
            r.request_id for r in out.responses if r.status is ResponseStatus.WITHDRAWN
        )
        for a in out.actions:
            if type(a) is Infer:
                assert not self.withdrawn.intersection(a.request_ids), f"{a} runs a withdrawn"
            if not isinstance(a, EvictWeights):
                assert a.earliest_ns <= a.latest_ns, a
                assert now_ns <= a.latest_ns, a
            if type(a) is LoadWeights or type(a) is Infer:
                models = self.served.get(a.device.worker)
                assert models is None or a.model in models, f"{a} on a worker without it"
        return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=st.sampled_from(["clockwork", "reactive"]),
    n_models=st.integers(1, 12),
    gpus=st.integers(1, 3),
    cache_pages=st.integers(7, 40),
    rate=st.floats(20, 1500),
    slo_ms=st.sampled_from([8, 15, 30, 100, 250]),
    slo_spread=st.sampled_from([0.0, 1.0]),
    noise=st.sampled_from(["none", "lognormal", "lognormal+straggler"]),
    seed=st.integers(0, 10_000),
    per_device=st.booleans(),
    withdraw_every=st.sampled_from([0, 0, 2, 5]),
    data=st.data(),
)
def test_run_invariants(
    policy: str,
    n_models: int,
    gpus: int,
    cache_pages: int,
    rate: float,
    slo_ms: int,
    slo_spread: float,
    noise: str,
    seed: int,
    per_device: bool,
    withdraw_every: int,
    data: st.DataObject,
) -> None:
    kind = small_kind(cache_pages)
    models = model_set(n_models, kind)
    names = [m.name for m in models]
    wl = SkewedPoisson(names, rate, S, slo_ms * MS, seed, slo_spread)
    workers = (gpus + 1) // 2
    # per worker: every model (None), or a subset (possibly leaving some models on no worker)
    worker_models = tuple(
        data.draw(
            st.none() | st.sets(st.sampled_from(names)).map(lambda s: tuple(sorted(s))),
            label=f"w{w} models",
        )
        for w in range(workers)
    )
    served = {f"w{w}": None if ms is None else frozenset(ms) for w, ms in enumerate(worker_models)}
    sched = CheckedScheduler(
        make_policy(policy, per_device_estimates=per_device), served, withdraw_every
    )
    cfg = SimConfig(
        duration_ns=S,
        gpus=gpus,
        gpus_per_worker=2,
        device_kind=kind,
        noise=NoiseConfig(kind=noise, sigma=0.05, straggler_prob=0.01),
        seed=seed,
        drain_ns=30 * S,
        worker_models=worker_models,
    )
    sim = Simulation(cfg, models, wl, sched)
    sched.sim = sim
    result = sim.run()
    req = result.requests.table()
    act = result.actions.table()
    # every request answered exactly once; success only inside the deadline
    status = answered_once(result, wl.generated)
    ok, late = status == "SUCCESS", status == "LATE"
    # a result was delivered only through a successful Infer that carried the request
    delivered = ok | late
    assert (req.action_id[delivered] > 0).all() and (req.batch_size[delivered] >= 1).all()
    # nothing ran after its latest start, and nothing was sent already too late
    kinds = np.array(act.kind_names)[act.kind] if len(act) else np.array([])
    astatus = np.array(act.status_names)[act.status] if len(act) else np.array([])
    # no action for a model its worker does not serve (the sim worker would say so)
    assert not (astatus == "UNKNOWN_MODEL").any()
    timed = kinds != "EvictWeights"
    ran = timed & (astatus == "SUCCESS")
    assert (act.began_ns[ran] <= act.latest_ns[ran]).all()
    assert (act.sent_ns[timed] <= act.latest_ns[timed]).all()
    assert (act.earliest_ns[timed] <= act.latest_ns[timed]).all()
    # one inference at a time per device
    infer = ran & (kinds == "Infer")
    for d in np.unique(act.device[infer]):
        sel = infer & (act.device == d)
        order = np.argsort(act.began_ns[sel])
        b, e = act.began_ns[sel][order], act.ended_ns[sel][order]
        assert (b[1:] >= e[:-1]).all()
    if policy == "clockwork":
        # the Clockwork policy never delivers late when durations match estimates
        if noise == "none":
            assert not late.any(), Counter(status)
        assert not (status == "UNANSWERED").any()
    # only requests withdrawn while queued are answered WITHDRAWN (and then never ran)
    assert (status == "WITHDRAWN").sum() == len(sched.withdrawn)
    assert withdraw_every or not sched.withdrawn
