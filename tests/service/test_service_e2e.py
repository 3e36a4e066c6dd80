"""Controller and emulated workers end to end, over real TCP on 127.0.0.1 (one process, asyncio)."""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from clockwork.core.actions import ActionStatus, LoadWeights
from clockwork.core.ids import DeviceId
from clockwork.core.policies import make_policy
from clockwork.core.profile import save_profile, shipped_profile
from clockwork.core.requests import Response, ResponseStatus
from clockwork.service import ControllerService, WorkerService
from clockwork.service.controller_service import ControllerClosedError
from clockwork.transport import (
    PROTOCOL_VERSION,
    ActionResultMsg,
    Hello,
    LoadWeightsMsg,
    Role,
    connect,
)
from clockwork.worker.assembly import emulated_setup

from support.units import MS

PROFILE = "resnet50_v2-V100-32GB"


def run(coro: Coroutine[Any, Any, None], timeout_s: float = 30.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout_s):
            await coro

    asyncio.run(bounded())


async def start_worker(
    wid: str, devices: int = 1, models: int = 3, clock_ns: Callable[[], int] = time.monotonic_ns
) -> WorkerService:
    devs, infos = emulated_setup(wid, devices, models, PROFILE)
    svc = WorkerService(wid, devs, infos, clock_ns=clock_ns)
    await svc.start("127.0.0.1", 0)
    return svc


def make_controller(
    *workers: WorkerService,
    policy: str = "clockwork",
    silence_pings: int = 40,
    handshake_timeout_s: float = 5.0,
) -> ControllerService:
    # 2 s of silence before a worker is lost: workers and controller share this process's event
    # loop, which a loaded 2-core machine stalled for 0.41 s once (a healthy worker was dropped);
    # only the test of silence itself wants it short
    return ControllerService(
        make_policy(policy),
        [("127.0.0.1", w.port) for w in workers],
        ping_interval_s=0.05,
        silence_pings=silence_pings,
        connect_backoff_s=(0.02, 0.2),
        handshake_timeout_s=handshake_timeout_s,
    )


async def load(
    ctrl: ControllerService,
    models: list[str],
    n: int,
    gap_s: float,
    timeout_ns: int = 100 * MS,
    during: Callable[[int], Coroutine[Any, Any, None]] | None = None,
) -> list[tuple[int, Response]]:
    """Submit ``n`` requests ``gap_s`` apart, round robin over ``models``; (deadline, response)
    of each. ``during(i)`` is awaited before request ``i`` is submitted."""

    async def one(model: str) -> tuple[int, Response]:
        deadline = time.monotonic_ns() + timeout_ns
        response, _ = await ctrl.submit(model, deadline_ns=deadline)
        return deadline, response

    tasks = []
    for i in range(n):
        if during is not None:
            await during(i)
        tasks.append(asyncio.create_task(one(models[i % len(models)])))
        await asyncio.sleep(gap_s)
    return list(await asyncio.gather(*tasks))


def check_answers(ctrl: ControllerService, results: list[tuple[int, Response]]) -> None:
    ids = [r.request_id for _, r in results]
    assert len(ids) == len(set(ids))  # one response per request
    assert ctrl.stats.answered == ctrl.stats.submitted == len(results)
    assert ctrl.pending() == 0
    for deadline, r in results:
        if r.status is ResponseStatus.SUCCESS:
            assert r.time_ns <= deadline


def successes(results: list[tuple[int, Response]]) -> int:
    return sum(r.status is ResponseStatus.SUCCESS for _, r in results)


def test_end_to_end_every_request_answered_within_deadline() -> None:
    async def main() -> None:
        worker = await start_worker("w0", devices=2, models=3)
        ctrl = make_controller(worker)
        await ctrl.start()
        try:
            await ctrl.wait_workers(1)
            assert sorted(ctrl.models) == [f"resnet50_v2-{i:04d}" for i in range(3)]
            models = sorted(ctrl.models)
            results = await load(ctrl, models, 90, 0.004)
            check_answers(ctrl, results)
            assert successes(results) >= 0.9 * len(results)
            # outputs come back with a success
            response, outputs = await ctrl.submit(models[0], timeout_ns=100 * MS)
            assert response.status is ResponseStatus.SUCCESS
            assert outputs is not None and outputs["output"].shape == (1000,)
            # an unknown model is refused, not dropped
            response, outputs = await ctrl.submit("nope", timeout_ns=100 * MS)
            assert response.status is ResponseStatus.MODEL_NOT_FOUND and outputs is None
        finally:
            await ctrl.close()
            await worker.close()

    run(main())


def test_worker_clock_skew_of_seconds() -> None:
    def skewed() -> int:
        return time.monotonic_ns() + 5_000_000_000

    async def main() -> None:
        worker = await start_worker("w0", models=2, clock_ns=skewed)
        ctrl = make_controller(worker)
        await ctrl.start()
        try:
            await ctrl.wait_workers(1)
            results = await load(ctrl, sorted(ctrl.models), 60, 0.005)
            check_answers(ctrl, results)
            assert successes(results) >= 0.9 * len(results)
            assert ctrl.stats.too_late_unsent == 0
        finally:
            await ctrl.close()
            await worker.close()

    run(main())


def test_worker_killed_mid_run_every_request_answered_once() -> None:
    async def main() -> None:
        w0 = await start_worker("w0", models=2)
        w1 = await start_worker("w1", models=2)
        ctrl = make_controller(w0, w1)
        await ctrl.start()
        try:
            await ctrl.wait_workers(2)

            async def kill(i: int) -> None:
                if i == 40:
                    await w0.close()

            results = await load(ctrl, sorted(ctrl.models), 120, 0.004, during=kill)
            check_answers(ctrl, results)
            assert ctrl.workers == ("w1",)
            assert ctrl.stats.losses == 1
            allowed = {
                ResponseStatus.SUCCESS,
                ResponseStatus.WORKER_LOST,
                ResponseStatus.OVERLOADED,
            }
            assert {r.status for _, r in results} <= allowed
            # the survivor keeps serving
            later = results[70:]
            assert successes(later) >= 0.9 * len(later)
        finally:
            await ctrl.close()
            await w0.close()
            await w1.close()

    run(main())


def test_controller_restart_relearns_resident_models() -> None:
    async def main() -> None:
        worker = await start_worker("w0", models=2)
        ctrl = make_controller(worker)
        await ctrl.start()
        try:
            await ctrl.wait_workers(1)
            models = sorted(ctrl.models)
            results = await load(ctrl, models, 20, 0.005)
            assert successes(results) >= 18
        finally:
            await ctrl.close()
        loads_before = {m: worker.received[("LoadWeights", m)] for m in models}
        assert all(n >= 1 for n in loads_before.values())
        resident = worker.runtime.state(DeviceId("w0", 0)).resident_models
        assert sorted(resident) == models

        ctrl2 = make_controller(worker)
        await ctrl2.start()
        try:
            await ctrl2.wait_workers(1)
            results = await load(ctrl2, models, 20, 0.005)
            check_answers(ctrl2, results)
            assert successes(results) >= 18
            assert {m: worker.received[("LoadWeights", m)] for m in models} == loads_before
            assert ctrl2.stats.actions_sent["LoadWeights"] == 0
            assert all(not r.cold_start for _, r in results)
        finally:
            await ctrl2.close()
            await worker.close()

    run(main())


def test_model_loading_when_a_new_controller_connects_is_reported_resident(tmp_path: Path) -> None:
    """A load the former controller sent is still running when the next one asks for the state:
    the answer waits for it, so the model is resident (no second load, no cold start)."""
    slow = tmp_path / "slow-load.json"
    # a load long enough to outlive the first controller
    save_profile(dataclasses.replace(shipped_profile(PROFILE), load_ns=400 * MS), slow)

    async def main() -> None:
        devs, infos = emulated_setup("w0", 1, 2, str(slow))
        worker = WorkerService("w0", devs, infos)
        await worker.start("127.0.0.1", 0)
        model = infos[0].name
        ctrl = make_controller(worker)
        await ctrl.start()
        try:
            await ctrl.wait_workers(1)
            pending = asyncio.create_task(
                ctrl.submit(model, deadline_ns=time.monotonic_ns() + 2_000 * MS)
            )
            while worker.received[("LoadWeights", model)] == 0:
                await asyncio.sleep(0.005)
        finally:
            await ctrl.close()
        with pytest.raises(ControllerClosedError):  # its controller went away
            await pending
        device = DeviceId("w0", 0)
        assert worker.runtime.state(device).running_load is not None  # still loading

        ctrl2 = make_controller(worker)
        await ctrl2.start()
        try:
            await ctrl2.wait_workers(1)
            assert worker.runtime.state(device).resident_models == (model,)
            results = await load(ctrl2, [model], 5, 0.005)
            check_answers(ctrl2, results)
            assert successes(results) == 5
            assert all(not r.cold_start for _, r in results)
            assert ctrl2.stats.actions_sent["LoadWeights"] == 0
            assert worker.received[("LoadWeights", model)] == 1
        finally:
            await ctrl2.close()
            await worker.close()

    run(main())


def test_garbage_frames_do_not_disturb_the_worker() -> None:
    async def main() -> None:
        worker = await start_worker("w0", models=1)
        ctrl = make_controller(worker)
        await ctrl.start()
        try:
            await ctrl.wait_workers(1)
            garbage = [
                b"\x00\x00\x00\x05hello",  # a frame that does not decode
                struct.pack(">I", 0xFFFFFFF0) + b"xx",  # an oversized length prefix
                b"\x00\x00",  # a truncated header
                bytes(range(256)) * 4,
            ]
            for blob in garbage:
                _, writer = await asyncio.open_connection("127.0.0.1", worker.port)
                writer.write(blob)
                await writer.drain()
                writer.close()
                await writer.wait_closed()
            await asyncio.sleep(0.1)
            model = sorted(ctrl.models)[0]
            response, _ = await ctrl.submit(model, timeout_ns=200 * MS)
            assert response.status is ResponseStatus.SUCCESS
            assert ctrl.stats.losses == 0 and worker.controller_connected
        finally:
            await ctrl.close()
            await worker.close()

    run(main())


def test_worker_refuses_actions_before_clock_sync() -> None:
    async def main() -> None:
        worker = await start_worker("w0", models=1)
        try:
            conn = await connect("127.0.0.1", worker.port)
            await conn.send(Hello(0, PROTOCOL_VERSION, Role.CONTROLLER, "raw"))
            hello = await conn.recv()
            assert isinstance(hello, Hello) and hello.sender_id == "w0"
            now = time.monotonic_ns()
            action = LoadWeights(7, DeviceId("w0", 0), "resnet50_v2-0000", now, now + 10**9, 8 * MS)
            await conn.send(LoadWeightsMsg(0, action))
            reply = await conn.recv()
            assert isinstance(reply, ActionResultMsg)
            assert reply.result.action_id == 7
            assert reply.result.status is ActionStatus.INVALID_WINDOW
            conn.close()
            await conn.wait_closed()
        finally:
            await worker.close()

    run(main())


class _Gag:
    """Makes a worker deaf (what its controller sends is dropped unhandled) or silent as a
    stalled process is (deaf, and nothing it sends goes out, heartbeats included)."""

    def __init__(self, worker: WorkerService) -> None:
        self.worker = worker
        self.deaf = False
        self.silent = False
        real = worker._on_message

        def on_message(session: Any, msg: Any) -> None:
            if not (self.deaf or self.silent):
                real(session, msg)

        worker._on_message = on_message  # type: ignore[method-assign]

    def silence(self) -> None:
        """Silent from now on, on its current connection, until ``silent`` is set False."""
        assert self.worker._session is not None
        conn = self.worker._session.conn
        send = conn.send

        async def send_unless_silent(msg: Any) -> None:
            if not self.silent:
                await send(msg)

        conn.send = send_unless_silent  # type: ignore[method-assign]
        self.silent = True


async def _served_once(worker: WorkerService) -> tuple[ControllerService, str]:
    """A started controller (6 pings of 50 ms of silence make a worker lost) that has served
    one request of ``worker``'s model; the caller closes it."""
    ctrl = make_controller(worker, silence_pings=6, handshake_timeout_s=0.5)
    await ctrl.start()
    try:
        await ctrl.wait_workers(1)
        model = sorted(ctrl.models)[0]
        response, _ = await ctrl.submit(model, timeout_ns=200 * MS)
        assert response.status is ResponseStatus.SUCCESS
    except BaseException:
        await ctrl.close()
        raise
    return ctrl, model


def test_silent_worker_is_lost_then_rejoins() -> None:
    async def main() -> None:
        worker = await start_worker("w0", models=1)
        gag = _Gag(worker)
        ctrl, model = await _served_once(worker)
        try:
            gag.silence()
            # a request sent into the silence is answered once the worker is declared lost
            response, _ = await ctrl.submit(model, timeout_ns=2000 * MS)
            assert response.status is ResponseStatus.WORKER_LOST
            assert ctrl.stats.losses == 1 and ctrl.workers == ()
            gag.silent = False
            await ctrl.wait_workers(1, timeout_s=5.0)
            response, _ = await ctrl.submit(model, timeout_ns=200 * MS)
            assert response.status is ResponseStatus.SUCCESS
            assert not response.cold_start  # re-learnt as resident
            assert ctrl.stats.answered == ctrl.stats.submitted == 3
        finally:
            await ctrl.close()
            await worker.close()

    run(main())


def test_a_worker_that_hears_nothing_but_heartbeats_is_not_lost() -> None:
    """The controller's pings can wait behind a large frame on their way to the worker; the
    worker's own heartbeats keep it live meanwhile (it was declared lost for want of a ping to
    answer)."""

    async def main() -> None:
        worker = await start_worker("w0", models=1)
        gag = _Gag(worker)
        ctrl, model = await _served_once(worker)
        try:
            gag.deaf = True
            # twice the silence limit (6 pings of 50 ms) without a pong
            await asyncio.sleep(0.6)
            gag.deaf = False
            assert ctrl.stats.losses == 0 and len(ctrl.workers) == 1
            response, _ = await ctrl.submit(model, timeout_ns=200 * MS)
            assert response.status is ResponseStatus.SUCCESS
        finally:
            await ctrl.close()
            await worker.close()

    run(main())
