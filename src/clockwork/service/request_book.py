"""The requests a controller holds: each one's future until answered, its inputs until they are
sent, and the outputs of the Infer that served it until its response comes.

Nothing here schedules or does I/O: the scheduling pump asks for an Infer's inputs when it sends
it, the worker links hand over results, and every response resolves its future exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from clockwork.core.actions import Infer
from clockwork.core.requests import Response
from clockwork.transport import ActionResultMsg, InferInputs, InferOutputs

log = logging.getLogger("clockwork.service.controller")

Arrays = dict[str, npt.NDArray[np.generic]]
Answer = tuple[Response, Arrays | None]


class RequestBook:
    """See the module docstring. ``open`` a request, ``answer`` it once."""

    __slots__ = ("_futures", "_inferring", "_inputs", "_next_id", "_outputs")

    def __init__(self) -> None:
        self._next_id = 0
        self._futures: dict[int, asyncio.Future[Answer]] = {}
        self._inputs: dict[int, InferInputs] = {}
        # Infer action id -> (worker, request ids), while in flight
        self._inferring: dict[int, tuple[str, tuple[int, ...]]] = {}
        # request id -> (action id, outputs) of a successful Infer, until the response
        self._outputs: dict[int, tuple[int, InferOutputs]] = {}

    def __len__(self) -> int:
        """Requests opened and not answered yet."""
        return len(self._futures)

    def open(
        self,
        loop: asyncio.AbstractEventLoop,
        inputs: Mapping[str, npt.NDArray[np.generic]] | InferInputs | None,
    ) -> tuple[int, asyncio.Future[Answer]]:
        """A new request id and the future its answer will resolve."""
        rid = self.new_id()
        fut: asyncio.Future[Answer] = loop.create_future()
        self._futures[rid] = fut
        if inputs is not None:
            self._inputs[rid] = (
                inputs if isinstance(inputs, InferInputs) else InferInputs.from_arrays(inputs)
            )
        return rid, fut

    def sending(self, action: Infer, worker: str) -> tuple[InferInputs, ...]:
        """``action`` goes to ``worker`` now: remember it, and return its requests' inputs
        (empty when none of them has any)."""
        self._inferring[action.action_id] = (worker, action.request_ids)
        inputs = self._inputs
        if inputs and any(rid in inputs for rid in action.request_ids):
            return tuple(inputs.get(rid, InferInputs()) for rid in action.request_ids)
        return ()

    def result(self, msg: ActionResultMsg) -> None:
        """Keep the outputs of a successful Infer for the requests still waiting."""
        result = msg.result
        infer = self._inferring.pop(result.action_id, None)
        if infer is None or not result.ok or not msg.outputs:
            return
        rids = infer[1]
        if len(msg.outputs) != len(rids):
            log.warning(
                "action %d: %d outputs for %d requests; dropped",
                result.action_id,
                len(msg.outputs),
                len(rids),
            )
            return
        for rid, out in zip(rids, msg.outputs, strict=True):
            if rid in self._futures:  # not answered yet (e.g. refused at its deadline)
                self._outputs[rid] = (result.action_id, out)

    def worker_lost(self, worker: str) -> None:
        """Forget the Infers in flight on ``worker``: their results will not come."""
        for action_id, (w, _) in list(self._inferring.items()):
            if w == worker:
                del self._inferring[action_id]

    def new_id(self) -> int:
        """A new request id with no future: a request answered as it arrives."""
        rid = self._next_id
        self._next_id += 1
        return rid

    def answer(self, response: Response) -> None:
        """Resolve the request's future with ``response`` and, for a delivered result, the
        outputs of the Infer that produced it."""
        rid = response.request_id
        self._inputs.pop(rid, None)
        stashed = self._outputs.pop(rid, None)
        outputs: Arrays | None = None
        if (
            stashed is not None
            and stashed[0] == response.action_id
            and response.status.delivered_result
        ):
            outputs = stashed[1].to_arrays()
        fut = self._futures.pop(rid, None)
        if fut is not None and not fut.done():
            fut.set_result((response, outputs))

    def close(self, error: BaseException) -> None:
        """Fail every request still waiting with ``error``."""
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(error)
        self._futures.clear()
        self._inputs.clear()
        self._outputs.clear()
        self._inferring.clear()
