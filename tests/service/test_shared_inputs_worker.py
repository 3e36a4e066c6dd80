"""A worker on the controller's host gets large inputs as shared segments it maps (over real
TCP, with the link's handshake), not as bytes; a worker not started to map them fails that action
with a reason instead of reading anything, and the request is answered."""

from __future__ import annotations

import asyncio
import gc
import mmap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from clockwork.core.policies import make_policy
from clockwork.core.requests import ResponseStatus
from clockwork.service import ControllerService, WorkerService
from clockwork.transport.shared_segments import Segment, live_segments, removals_done
from clockwork.worker.assembly import emulated_setup

PROFILE = "resnet50_v2-V100-32GB"
MS = 1_000_000
WIDTH = 150_528  # the profile's input: 602,112 bytes of FP32
SECRET = b"0123456789abcdef0123456789abcdef"


def mapped(a: Any) -> bool:
    """Whether ``a`` views a memory map (a shared segment), not a received buffer."""
    while True:
        if isinstance(a, mmap.mmap):
            return True
        if isinstance(a, np.ndarray) and a.base is not None:
            a = a.base
        elif isinstance(a, memoryview):
            a = a.obj
        else:
            return False


class Recording:
    """A backend that remembers each batch's inputs (sums, and whether they were mapped)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.seen: list[tuple[float, bool]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def infer(
        self, model: str, batch_size: int, inputs: Sequence[Mapping[str, npt.NDArray[np.generic]]]
    ) -> Any:
        for one in inputs:
            for a in one.values():
                self.seen.append((float(a.sum()), mapped(a)))
        return self._inner.infer(model, batch_size, inputs)


async def serve_two(shared_inputs: bool) -> tuple[list[Any], Recording, list[Any]]:
    devs, infos = emulated_setup("w0", 1, 1, PROFILE)
    recording = Recording(devs[0][1])
    worker = WorkerService(
        "w0", [(devs[0][0], recording)], infos, secret=SECRET, shared_inputs=shared_inputs
    )
    await worker.start("127.0.0.1", 0)
    address = ("127.0.0.1", worker.port)
    ctrl = ControllerService(
        make_policy("clockwork"),
        [address],
        ping_interval_s=0.05,
        silence_pings=40,
        link_secret=SECRET,
        share_memory_with=[address],
    )
    await ctrl.start()
    segment = Segment.create(2 * WIDTH * 4)
    try:
        await ctrl.wait_workers(1)
        batch = np.frombuffer(segment.view, np.float32).reshape(2, WIDTH)
        batch[0], batch[1] = 1.0, 2.0
        model = infos[0].name
        name = infos[0].signature.inputs[0].name if infos[0].signature else "input"
        answers = await asyncio.gather(
            *(ctrl.submit(model, {name: batch[i]}, timeout_ns=5000 * MS) for i in range(2))
        )
        segment.release()
        del batch
        return [r for r, _ in answers], recording, [segment.name]
    finally:
        await ctrl.close()
        await worker.close()


def test_a_local_worker_maps_the_inputs() -> None:
    before = live_segments()
    responses, recording, _ = asyncio.run(serve_two(shared_inputs=True))
    assert [r.status for r in responses] == [ResponseStatus.SUCCESS] * 2
    per_sample = WIDTH
    assert sorted(recording.seen) == [(1.0 * per_sample, True), (2.0 * per_sample, True)]
    gc.collect()
    removals_done()
    assert live_segments() == before


def test_a_worker_that_does_not_map_segments_refuses_them() -> None:
    before = live_segments()
    responses, recording, _ = asyncio.run(serve_two(shared_inputs=False))
    assert recording.seen == []
    # answered, not served (the scheduler may try again before it gives up on them)
    assert all(r.status is not ResponseStatus.SUCCESS for r in responses), responses
    gc.collect()
    removals_done()
    assert live_segments() == before
