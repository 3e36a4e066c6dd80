"""``ControllerModelServer`` over a real controller and an emulated worker on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from clockwork.core.policies import make_policy
from clockwork.frontend.api import (
    ErrorKind,
    FrontendError,
    InferenceCall,
    ModelState,
    RequestedOutput,
    Tensor,
)
from clockwork.frontend.door_ticket import TICKET, DoorTicket
from clockwork.frontend.metrics import ServingMetrics
from clockwork.frontend.server import ControllerModelServer, scheduler_priority
from clockwork.service import ControllerService, WorkerService
from clockwork.service.observers import attach_observer
from clockwork.worker.assembly import emulated_setup

PROFILE = "resnet50_v2-V100-32GB"
MODEL = "resnet50_v2-0000"
WIDTH = 602_112 // 4  # the emulated input: one FP32 vector of the profile's input bytes


def serve(
    body: Callable[[ControllerModelServer, ControllerService], Awaitable[None]],
    models: int = 2,
    timeout_s: float = 30.0,
    backlog_admission: bool = False,
) -> None:
    async def main() -> None:
        devices, infos = emulated_setup("w0", 1, models, PROFILE)
        worker = WorkerService("w0", devices, infos)
        await worker.start("127.0.0.1", 0)
        ctrl = ControllerService(
            make_policy("clockwork", backlog_admission=backlog_admission),
            [("127.0.0.1", worker.port)],
            ping_interval_s=0.05,
            connect_backoff_s=(0.02, 0.2),
        )
        metrics = ServingMetrics()
        attach_observer(ctrl, metrics)
        server = ControllerModelServer(ctrl, metrics)
        await ctrl.start()
        try:
            await ctrl.wait_workers(1)
            async with asyncio.timeout(timeout_s):
                await body(server, ctrl)
        finally:
            await ctrl.close()
            await worker.close()

    asyncio.run(main())


def call(batch: int = 1, **kw: Any) -> InferenceCall:
    data = np.zeros((batch, WIDTH), dtype=np.float32)
    fields: dict[str, Any] = {"model": MODEL, "inputs": (Tensor("input", "FP32", data),)}
    fields.update(kw)
    return InferenceCall(**fields)


async def refused(server: ControllerModelServer, c: InferenceCall) -> FrontendError:
    with pytest.raises(FrontendError) as info:
        await server.infer(c)
    return info.value


def test_metadata_and_config_come_from_the_workers_signature() -> None:
    async def body(server: ControllerModelServer, ctrl: ControllerService) -> None:
        assert server.ready() and server.live()
        meta = server.model_metadata(MODEL)
        assert meta.platform == "emulated"
        assert [(t.name, t.datatype, t.shape) for t in meta.inputs] == [("input", "FP32", (WIDTH,))]
        assert meta.max_batch_size == 16
        config = server.model_config(MODEL, "1")
        assert config["max_batch_size"] == 16
        assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [WIDTH]}]
        assert server.model_ready(MODEL)
        for bad in (
            lambda: server.model_metadata("nope"),
            lambda: server.model_metadata(MODEL, "7"),
            lambda: server.model_ready("nope"),
        ):
            with pytest.raises(FrontendError) as e:
                bad()
            assert e.value.kind is ErrorKind.NOT_FOUND

    serve(body)


def test_the_server_is_not_ready_while_serve_says_it_is_starting() -> None:
    async def body(server: ControllerModelServer, ctrl: ControllerService) -> None:
        assert ctrl.workers and server.ready()
        server.starting = True  # ``clockwork serve`` during its warm start
        assert not server.ready() and server.live()
        assert server.model_ready(MODEL)  # a model's own readiness is its workers'
        server.starting = False
        assert server.ready()

    serve(body)


def test_inference_splits_a_batch_and_stacks_the_outputs() -> None:
    async def body(server: ControllerModelServer, ctrl: ControllerService) -> None:
        result = await server.infer(call(batch=3, id="r1"))
        assert result.id == "r1" and result.model == MODEL and result.version == "1"
        (out,) = result.outputs
        assert out.name == "output" and out.datatype == "FP32"
        assert out.data.shape == (3, 4000 // 4)
        assert ctrl.stats.successes == 3  # three scheduler requests, one per sample
        stats = server.statistics(MODEL)
        assert stats[0].inference_count == 3

    serve(body)


def test_bad_tensors_are_refused_naming_the_problem_and_nothing_is_submitted() -> None:
    async def body(server: ControllerModelServer, ctrl: ControllerService) -> None:
        cases = [
            (call(inputs=()), "'input' is missing"),
            (
                call(inputs=(Tensor("input", "INT32", np.zeros((1, WIDTH), np.int32)),)),
                "datatype INT32",
            ),
            (call(inputs=(Tensor("input", "FP32", np.zeros((1, 5), np.float32)),)), "shape [1, 5]"),
            (call(inputs=(Tensor("input", "FP32", np.zeros((WIDTH,), np.float32)),)), "shape"),
            (call(batch=17), "batch dimension 17"),
            (
                call(
                    inputs=(
                        Tensor("input", "FP32", np.zeros((1, WIDTH), np.float32)),
                        Tensor("extra", "FP32", np.zeros((1, 1), np.float32)),
                    )
                ),
                "no input 'extra'",
            ),
            (call(outputs=(RequestedOutput("logits"),)), "no output 'logits'"),
            (call(timeout_us=-5), "timeout"),
            (call(priority=-1), "priority"),
        ]
        for c, match in cases:
            e = await refused(server, c)
            assert e.kind is ErrorKind.INVALID_ARGUMENT, (match, e)
            assert match in e.message, (match, e.message)
        assert ctrl.stats.submitted == 0

    serve(body)


def test_an_infeasible_timeout_is_refused_at_once_with_its_reason() -> None:
    async def body(server: ControllerModelServer, ctrl: ControllerService) -> None:
        e = await refused(server, call(timeout_us=1))
        assert e.kind is ErrorKind.DEADLINE_INFEASIBLE
        assert e.reason == "DEADLINE_INFEASIBLE"
        # a generous timeout is honoured
        await server.infer(call(timeout_us=2_000_000))

    serve(body)


def test_a_cold_model_refused_for_its_load_time_is_loaded_and_then_served() -> None:
    # emulated V100 ResNet50: load 8.3 ms + batch 1 2.73 ms; a 10 ms timeout fits batch 1 only
    async def body(server: ControllerModelServer, ctrl: ControllerService) -> None:
        e = await refused(server, call(timeout_us=10_000))
        assert e.kind is ErrorKind.DEADLINE_INFEASIBLE and "loading" in e.message
        served = 0
        for _ in range(40):  # the refusal asked for a load: the model comes, and then serves
            await asyncio.sleep(0.02)
            try:
                await server.infer(call(timeout_us=10_000))
                served += 1
            except FrontendError:
                pass
        assert served >= 20, served  # a busy test machine may make a few late, not most

    serve(body)


def test_time_spent_in_the_front_door_comes_off_the_timeout() -> None:
    async def body(server: ControllerModelServer, ctrl: ControllerService) -> None:
        # 50 ms would do; with 49.99 ms of it spent decoding and answering, it cannot
        e = await refused(server, call(timeout_us=50_000, overhead_ns=49_990_000))
        assert e.kind is ErrorKind.DEADLINE_INFEASIBLE
        await server.infer(call(timeout_us=50_000, overhead_ns=1_000_000))

    serve(body)


def test_unload_and_load_while_serving() -> None:
    async def body(server: ControllerModelServer, ctrl: ControllerService) -> None:
        await server.infer(call())
        await server.unload_model(MODEL)
        assert not server.model_ready(MODEL)
        states = {e.name: e.state for e in server.repository_index()}
        assert states[MODEL] is ModelState.UNAVAILABLE
        assert MODEL not in {e.name for e in server.repository_index(ready_only=True)}
        e = await refused(server, call())
        assert e.kind is ErrorKind.UNAVAILABLE
        # the other model is untouched
        other = "resnet50_v2-0001"
        await server.infer(InferenceCall(other, call().inputs))
        await server.load_model(MODEL)
        assert server.model_ready(MODEL)
        await server.infer(call())
        with pytest.raises(FrontendError) as unknown:
            await server.load_model("nope")
        assert unknown.value.kind is ErrorKind.NOT_FOUND

    serve(body)


def test_priorities_follow_tritons_convention() -> None:
    assert scheduler_priority(1) > scheduler_priority(2) > scheduler_priority(50)
    assert scheduler_priority(0) == scheduler_priority(10)


def test_the_doors_ticket_carries_the_timeout_and_whether_the_server_had_room() -> None:
    async def body(server: ControllerModelServer, ctrl: ControllerService) -> None:
        served = DoorTicket(began_ns=0)
        TICKET.set(served)
        await server.infer(call(timeout_us=2_000_000))
        assert served.timeout_ns == 2_000_000_000 and not served.failed
        # no timeout given: the server's default SLO is the one it judged against
        default = DoorTicket(began_ns=0)
        TICKET.set(default)
        await server.infer(call())
        assert default.timeout_ns == ctrl.default_slo_ns and not default.failed
        # an impossible deadline is the client's, not the server's load: not a failure
        infeasible = DoorTicket(began_ns=0)
        TICKET.set(infeasible)
        await refused(server, call(timeout_us=1))
        assert infeasible.timeout_ns == 1_000 and not infeasible.failed
        # a bad request is never judged: the ticket says nothing of the load
        bad = DoorTicket(began_ns=0)
        TICKET.set(bad)
        await refused(server, call(priority=-1))
        assert bad.met(now_ns=1) is None

    serve(body)


def test_a_refusal_known_before_decoding_is_raised_counted_and_told_to_the_ticket() -> None:
    async def body(server: ControllerModelServer, ctrl: ControllerService) -> None:
        await server.infer(call(timeout_us=2_000_000))  # loads the model
        server.refuse_early(MODEL, "", 8_000, 0)  # idle: it may be taken
        # a burst plans the device a batch of 16 (17 ms) ahead: 8 ms is too short for anything
        burst = [asyncio.ensure_future(server.infer(call(timeout_us=100_000))) for _ in range(30)]
        while ctrl.scheduler.pending_requests() < 30:
            await asyncio.sleep(0)
        ticket = DoorTicket(began_ns=0)
        TICKET.set(ticket)
        with pytest.raises(FrontendError) as info:
            server.refuse_early(MODEL, "", 8_000, 0)
        assert info.value.kind is ErrorKind.OVERLOADED and "queued ahead" in str(info.value)
        # a refusal for the server's load: the door's adaptive limit counts it as one
        assert ticket.timeout_ns == 8_000_000 and ticket.failed and ticket.met(now_ns=1) is False
        assert ctrl.stats.refused_early == 1
        # whatever only ``infer`` can judge is left to it: an unknown model, no refusal
        server.refuse_early("nope", "", 8_000, 0)
        server.refuse_early(MODEL, "", 5_000_000, 0)
        await asyncio.gather(*burst, return_exceptions=True)
        # counted as every request is: in the server's metrics too
        text = server.metrics_text().decode()
        line = f'clockwork_responses_total{{model="{MODEL}",status="OVERLOADED"}}'
        rows = text.splitlines()
        assert any(row.startswith(line) and float(row.split()[-1]) >= 1 for row in rows)
        assert ctrl.stats.submitted == ctrl.stats.answered

    serve(body, backlog_admission=True)
