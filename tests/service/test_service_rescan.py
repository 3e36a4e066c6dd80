"""Models added to a running server: the controller asks its workers to rescan their repositories
(``RescanRepository``), registers what they now serve, and requests to the new models succeed."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from clockwork.core.actions import Action, ActionResult, ActionStatus, Infer, LoadWeights
from clockwork.core.errors import ConfigurationError
from clockwork.core.events import ModelInfo
from clockwork.core.ids import DeviceId
from clockwork.core.policies import PolicyBase, make_policy
from clockwork.core.profile import DEVICE_KINDS, DeviceKind, shipped_profile
from clockwork.core.requests import ResponseStatus
from clockwork.models import create_repository
from clockwork.models.profile_files import profile_path
from clockwork.models.repository import ModelRepository
from clockwork.service import ControllerService, WorkerService
from clockwork.worker.assembly import TorchRescan, emulated_setup, torch_setup
from clockwork.worker.backends.base import Backend
from clockwork.worker.backends.emulated import EmulatedBackend
from clockwork.worker.backends.torch_backend import TorchBackend
from clockwork.worker.device_state import WorkerModel
from clockwork.worker.profiler import profile_repository, sample_inputs
from clockwork.worker.runtime import WorkerRuntime

from support.units import MS

PARAMS = {"resolution": 32}


def run(coro: Coroutine[Any, Any, None], timeout_s: float = 60.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout_s):
            await coro

    asyncio.run(bounded())


def make_controller(*workers: WorkerService) -> ControllerService:
    return ControllerService(
        make_policy("clockwork"),
        [("127.0.0.1", w.port) for w in workers],
        ping_interval_s=0.05,
        silence_pings=40,
        connect_backoff_s=(0.02, 0.2),
    )


def add_model(root: Path, prefix: str) -> str:
    """A new mobilenet model in the repository (sharing the first model's weights file)."""
    [name] = create_repository(
        root, "mobilenet_v2", 1, seed=1, params=PARAMS, batch_sizes=(1, 2), name_prefix=prefix
    )
    return name


async def infer_ok(ctrl: ControllerService, repo: ModelRepository, name: str) -> None:
    [sample] = sample_inputs(repo.load_config(name), 1, np.random.default_rng(1))
    # generous: the profiles are 3 runs on a shared machine, and the first request loads
    response, outputs = await ctrl.submit(name, sample, timeout_ns=5000 * MS)
    assert response.status is ResponseStatus.SUCCESS, response
    assert outputs is not None and outputs["logits"].shape == (1000,)


def test_new_models_are_served_without_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    [first] = create_repository(
        tmp_path, "mobilenet_v2", 1, seed=1, params=PARAMS, batch_sizes=(1, 2)
    )
    repo = ModelRepository(tmp_path)
    profile_repository(repo, "cpu", runs=3, warmup=1, loads=2)
    devices, models = torch_setup("w0", tmp_path, "cpu")
    backend = devices[0][1]
    assert isinstance(backend, TorchBackend)
    rescan = TorchRescan(
        backend, models, profile_missing=True, profile_runs=3, profile_warmup=1, profile_loads=2
    )

    async def main() -> None:
        worker = WorkerService("w0", devices, models, rescan=rescan)
        await worker.start("127.0.0.1", 0)
        ctrl = make_controller(worker)
        await ctrl.start()
        try:
            await ctrl.wait_workers(1)
            assert set(ctrl.models) == {first}
            await infer_ok(ctrl, repo, first)

            # nothing new: nothing registered, nothing changes
            assert await ctrl.rescan_models() == []
            assert set(ctrl.models) == {first}

            # a model added while serving, without a profile: the worker profiles it first
            second = add_model(tmp_path, "added")
            assert not profile_path(repo, second, "cpu").is_file()
            rescanning = asyncio.create_task(ctrl.rescan_models())
            await infer_ok(ctrl, repo, first)  # served while the new model is profiled
            assert not rescanning.done()
            assert await rescanning == [second]
            assert profile_path(repo, second, "cpu").is_file()
            assert set(ctrl.models) == {first, second}
            assert ctrl.models[second].signature == ctrl.models[first].signature
            assert {m.name for m in worker.models} == {first, second}
            await infer_ok(ctrl, repo, second)
            assert await ctrl.rescan_models() == []

            # a broken model is skipped, the worker keeps serving; a valid one beside it is taken
            (tmp_path / "broken").mkdir()
            (tmp_path / "broken" / "config.json").write_text("{not json", encoding="utf-8")
            third = add_model(tmp_path, "third")
            with caplog.at_level(logging.WARNING):
                assert await ctrl.rescan_models() == [third]
            assert "broken" in caplog.text
            assert "broken" not in ctrl.models
            await infer_ok(ctrl, repo, first)
            await infer_ok(ctrl, repo, third)
            assert ctrl.workers == ("w0",)
        finally:
            await ctrl.close()
            await worker.close()

    run(main())


def test_torch_rescan_skips_models_without_a_profile_unless_asked(tmp_path: Path) -> None:
    create_repository(tmp_path, "mobilenet_v2", 1, seed=1, params=PARAMS, batch_sizes=(1, 2))
    repo = ModelRepository(tmp_path)
    profile_repository(repo, "cpu", runs=3, warmup=1, loads=2)
    devices, models = torch_setup("w0", tmp_path, "cpu")
    backend = devices[0][1]
    assert isinstance(backend, TorchBackend)
    rescan = TorchRescan(backend, models)
    assert [m.name for m in rescan()] == [m.name for m in models]
    name = add_model(tmp_path, "later")
    assert name not in {m.name for m in rescan()}  # no profile, not asked to measure one
    assert name not in backend.models()
    profile_repository(repo, "cpu", models=[name], runs=3, warmup=1, loads=2)
    infos = {m.name: m for m in rescan()}
    assert name in infos and name in backend.models()
    assert infos[name].profiles[0].model == name


# ---- the controller's side, with emulated workers ---------------------------------------------

PROFILE = shipped_profile("resnet50_v2-V100-32GB")
KIND = DEVICE_KINDS[PROFILE.device_kind]


class GrowingBackend(EmulatedBackend):
    """An emulated device that holds profiles for models it only serves once ``reveal``ed."""

    def __init__(self, visible: list[str], hidden: list[str]) -> None:
        super().__init__(KIND, {n: dataclasses.replace(PROFILE, model=n) for n in visible + hidden})
        self.visible = set(visible)

    def reveal(self, name: str) -> ModelInfo:
        self.visible.add(name)
        return ModelInfo(name, (dataclasses.replace(PROFILE, model=name),))

    def models(self) -> Mapping[str, WorkerModel]:
        return {n: m for n, m in super().models().items() if n in self.visible}


def emulated_worker(wid: str, backend: GrowingBackend, rescan: Any = None) -> WorkerService:
    infos = [
        ModelInfo(n, (dataclasses.replace(PROFILE, model=n),)) for n in sorted(backend.visible)
    ]
    devices: list[tuple[DeviceId, Backend]] = [(DeviceId(wid, 0), backend)]
    return WorkerService(wid, devices, infos, rescan=rescan)


def test_rescan_on_workers_without_rescan_finds_nothing() -> None:
    async def main() -> None:
        devs, infos = emulated_setup("w0", 1, 2, "resnet50_v2-V100-32GB")
        worker = WorkerService("w0", devs, infos)
        await worker.start("127.0.0.1", 0)
        ctrl = make_controller(worker)
        await ctrl.start()
        try:
            assert await ctrl.rescan_models() == []  # no worker joined yet
            await ctrl.wait_workers(1)
            assert await ctrl.rescan_models() == []
            assert len(ctrl.models) == 2
        finally:
            await ctrl.close()
            await worker.close()

    run(main())


def test_new_model_on_two_workers_registered_once_and_removed_ones_stay_removed() -> None:
    a = GrowingBackend(["m0", "gone"], ["m1", "m2"])
    b = GrowingBackend(["m0", "gone"], ["m1"])

    async def main() -> None:
        wa = emulated_worker("wa", a, lambda: [a.reveal("m1"), a.reveal("m2"), a.reveal("gone")])
        wb = emulated_worker("wb", b, lambda: [b.reveal("m1")])
        await wa.start("127.0.0.1", 0)
        await wb.start("127.0.0.1", 0)
        ctrl = make_controller(wa, wb)
        await ctrl.start()
        try:
            await ctrl.wait_workers(2)
            ctrl.remove_model("gone")
            assert await ctrl.rescan_models() == ["m1", "m2"]
            assert set(ctrl.models) == {"m0", "m1", "m2"}
            assert "gone" in ctrl.removed_models
            response, _ = await ctrl.submit("m2", timeout_ns=500 * MS)
            assert response.status is ResponseStatus.SUCCESS
        finally:
            await ctrl.close()
            await wa.close()
            await wb.close()

    run(main())


def test_slow_or_lost_workers_are_skipped() -> None:
    slow = GrowingBackend(["m0"], ["late"])
    release = threading.Event()

    def slow_rescan() -> list[ModelInfo]:
        release.wait(10)
        return [slow.reveal("late")]

    async def main() -> None:
        worker = emulated_worker("w0", slow, slow_rescan)
        await worker.start("127.0.0.1", 0)
        ctrl = make_controller(worker)
        await ctrl.start()
        try:
            await ctrl.wait_workers(1)
            # no answer in time: skipped; the worker keeps serving meanwhile
            assert await ctrl.rescan_models(timeout_s=0.2) == []
            response, _ = await ctrl.submit("m0", timeout_ns=500 * MS)
            assert response.status is ResponseStatus.SUCCESS
            # the late answer still registers the model
            release.set()
            async with asyncio.timeout(5):
                while "late" not in ctrl.models:
                    await asyncio.sleep(0.01)
            # a worker lost while its rescan runs: the rescan returns at once
            release.clear()
            rescan = asyncio.create_task(ctrl.rescan_models())
            await asyncio.sleep(0.1)
            await worker.close()
            async with asyncio.timeout(5):
                assert await rescan == []
        finally:
            release.set()
            await ctrl.close()
            await worker.close()

    run(main())


def test_a_failing_rescan_is_answered_and_changes_nothing() -> None:
    backend = GrowingBackend(["m0"], [])

    def broken() -> list[ModelInfo]:
        raise RuntimeError("repository unreadable")

    async def main() -> None:
        worker = emulated_worker("w0", backend, broken)
        await worker.start("127.0.0.1", 0)
        ctrl = make_controller(worker)
        await ctrl.start()
        try:
            await ctrl.wait_workers(1)
            assert await ctrl.rescan_models() == []
            assert ctrl.workers == ("w0",)
            # a rescan that names a model no backend has is not believed
            worker.rescan = lambda: [ModelInfo("ghost", (PROFILE,))]
            assert await ctrl.rescan_models() == []
            assert set(ctrl.models) == {"m0"}
        finally:
            await ctrl.close()
            await worker.close()

    run(main())


def recording_controller(
    policy: str, actions: list[Action], results: list[ActionResult], *workers: WorkerService
) -> ControllerService:
    return ControllerService(
        make_policy(policy),
        [("127.0.0.1", w.port) for w in workers],
        ping_interval_s=0.05,
        silence_pings=40,
        connect_backoff_s=(0.02, 0.2),
        on_action_sent=lambda a, now: actions.append(a),
        on_action_result=lambda r, now: results.append(r),
    )


@pytest.mark.parametrize("policy", ["clockwork", "reactive"])
def test_models_only_one_worker_serves_are_loaded_only_there(policy: str) -> None:
    """Two workers with different repositories: a model only one of them has is never sent to
    the other as a load (which it would answer UNKNOWN_MODEL)."""
    actions: list[Action] = []
    results: list[ActionResult] = []

    async def main() -> None:
        devs_a, infos_a = emulated_setup("wa", 1, 4, "resnet50_v2-V100-32GB")
        devs_b, infos_b = emulated_setup("wb", 1, 1, "resnet50_v2-V100-32GB")
        wa = WorkerService("wa", devs_a, infos_a)
        wb = WorkerService("wb", devs_b, infos_b)
        await wb.start("127.0.0.1", 0)
        await wa.start("127.0.0.1", 0)
        ctrl = recording_controller(policy, actions, results, wb, wa)
        await ctrl.start()
        try:
            await ctrl.wait_workers(2)
            names = [m.name for m in infos_a]
            assert [m.name for m in infos_b] == names[:1]
            # every model at once: without the workers' model sets, the idle wb would be
            # given a load of each model it does not have
            answers = await asyncio.gather(
                *(ctrl.submit(n, timeout_ns=2000 * MS) for _ in range(3) for n in names)
            )
            assert [r.status for r, _ in answers] == [ResponseStatus.SUCCESS] * 12
        finally:
            await ctrl.close()
            await wa.close()
            await wb.close()

    run(main())
    assert not [r for r in results if r.status is ActionStatus.UNKNOWN_MODEL]
    placed = {(a.model, a.device.worker) for a in actions if isinstance(a, LoadWeights | Infer)}
    only_a = {f"resnet50_v2-{i:04d}" for i in range(1, 4)}
    assert only_a <= {m for m, _ in placed}
    assert all(w == "wa" for m, w in placed if m in only_a)


def test_a_rescan_tells_the_scheduler_what_each_worker_serves() -> None:
    """A model a worker finds on rescan becomes loadable there, even when another worker had
    registered it already (the rescan registers nothing new)."""
    a = GrowingBackend(["m0", "m1"], [])
    b = GrowingBackend(["m0"], ["m1"])
    actions: list[Action] = []
    results: list[ActionResult] = []

    async def main() -> None:
        wa = emulated_worker("wa", a)
        wb = emulated_worker("wb", b, lambda: [b.reveal("m1")])
        await wa.start("127.0.0.1", 0)
        await wb.start("127.0.0.1", 0)
        ctrl = recording_controller("clockwork", actions, results, wa, wb)
        await ctrl.start()
        try:
            await ctrl.wait_workers(2)
            sched = ctrl.scheduler
            assert isinstance(sched, PolicyBase)
            assert sched.worker_models == {"wa": frozenset({"m0", "m1"}), "wb": frozenset({"m0"})}
            response, _ = await ctrl.submit("m1", timeout_ns=500 * MS)
            assert response.status is ResponseStatus.SUCCESS
            assert await ctrl.rescan_models() == []  # m1 is known: nothing registered...
            assert sched.worker_models["wb"] == frozenset({"m0", "m1"})  # ...but wb serves it
            assert sched.devices[DeviceId("wb", 0)].models == frozenset({"m0", "m1"})
            response, _ = await ctrl.submit("m1", timeout_ns=500 * MS)
            assert response.status is ResponseStatus.SUCCESS
        finally:
            await ctrl.close()
            await wa.close()
            await wb.close()

    run(main())
    assert not [r for r in results if r.status is ActionStatus.UNKNOWN_MODEL]


# ---- the pieces: backend registration and the runtime ----------------------------------------


def test_torch_backend_add_model(tmp_path: Path) -> None:
    [first] = create_repository(
        tmp_path, "mobilenet_v2", 1, seed=1, params=PARAMS, batch_sizes=(1, 2)
    )
    repo = ModelRepository(tmp_path)
    # 1 MiB pages, 16 of them: room for one mobilenet (about 14 MB) only
    backend = TorchBackend(repo, "cpu", kind=DeviceKind("cpu", 1 << 20, 16), models=[first])
    second = add_model(tmp_path, "added")
    assert second not in backend.models()
    model = backend.add_model(second)
    assert backend.models()[second] == model
    assert backend.add_model(second) == model  # already there: left as it is
    backend.load(second)
    [sample] = sample_inputs(repo.load_config(second), 1, np.random.default_rng(1))
    assert backend.infer(second, 1, [sample]).outputs[0]["logits"].shape == (1000,)
    # a model that can never fit the cache, and a broken one, are refused; the rest are added
    [big] = create_repository(
        tmp_path,
        "mobilenet_v2",
        1,
        seed=2,
        params={"resolution": 32, "width_mult": 2.0},
        batch_sizes=(1,),
        name_prefix="big",
    )
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}", encoding="utf-8")
    third = add_model(tmp_path, "third")
    with pytest.raises(ConfigurationError, match="pages"):
        backend.add_model(big)
    assert backend.add_models(["broken", big, third]) == [third]
    assert set(backend.models()) == {first, second, third}


def test_runtime_learns_new_models_on_refresh() -> None:
    backend = GrowingBackend(["m0"], ["m1"])
    results: list[ActionResult] = []
    done = threading.Event()

    def on_result(result: ActionResult, outputs: object) -> None:
        results.append(result)
        done.set()

    device = DeviceId("w0", 0)
    with WorkerRuntime([(device, backend)], on_result) as runtime:

        def load() -> ActionResult:
            done.clear()
            now = time.monotonic_ns()
            runtime.submit(LoadWeights(len(results), device, "m1", now, now + 10**9, 0))
            assert done.wait(5)
            return results[-1]

        assert load().status is ActionStatus.UNKNOWN_MODEL
        assert runtime.refresh_models() == ()  # the backend does not serve it yet
        backend.reveal("m1")
        assert runtime.refresh_models() == ("m1",)
        assert runtime.refresh_models() == ()
        assert load().status is ActionStatus.SUCCESS
