"""gRPC inference is refused as QUEUE_DELAY (RESOURCE_EXHAUSTED) while the loop stays behind
(``grpc_queue_delay``), health is not, and inference is served again once the loop catches up;
with the test off, a loop as far behind refuses nothing."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from clockwork.frontend.grpc_queue_delay import LoopLag
from clockwork.frontend.limits import DoorLimits, Refusal

from support.door import DoorServer, door_server
from support.grpc_inputs import add_inputs

HOG_S = 0.02  # the loop is held this long at each turn: every callback runs that late


class LoopHog:
    """Holds the server's loop ``HOG_S`` at every turn until stopped: a standing queue."""

    def __init__(self, server: DoorServer) -> None:
        self.server = server
        self.running = True
        server.loop.call_soon_threadsafe(self._hold)

    def _hold(self) -> None:
        if self.running:
            time.sleep(HOG_S)
            self.server.loop.call_soon(self._hold)

    def stop(self) -> None:
        self.running = False


def refusals_while_behind(server: DoorServer, client: tg.InferenceServerClient) -> list[str]:
    """The errors of inferences sent for a second while the loop is held."""
    hog = LoopHog(server)
    errors = []
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:
            try:
                client.infer("add", add_inputs(), client_timeout=5)
            except InferenceServerException as e:
                errors.append(f"{e.status()} {e.message()}")
        assert client.is_server_live()  # health is never refused for the queue
    finally:
        hog.stop()
    return errors


def test_inference_is_refused_while_the_loop_is_behind_and_served_after() -> None:
    limits = DoorLimits(queue_delay_target_s=0.005, queue_delay_interval_s=0.1)
    with door_server(limits, grpc=True) as server:
        client = tg.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            client.infer("add", add_inputs())  # the loop is on time: served
            errors = refusals_while_behind(server, client)
            assert errors, "no inference was refused while the loop ran 20 ms late"
            assert all(e.startswith(str(grpc.StatusCode.RESOURCE_EXHAUSTED)) for e in errors)
            assert all("the server is behind" in e for e in errors), errors
            assert server.call(lambda: server.door.refusals[Refusal.QUEUE_DELAY]) == len(errors)
            # caught up, the first call that waited less ends the refusals
            deadline = time.monotonic() + 3
            while True:
                try:
                    client.infer("add", add_inputs())
                    break
                except InferenceServerException:
                    assert time.monotonic() < deadline, "still refused after the loop caught up"
                    time.sleep(0.05)
        finally:
            client.close()


def test_with_the_test_off_a_late_loop_refuses_nothing() -> None:
    with door_server(DoorLimits(queue_delay_target_s=0), grpc=True) as server:
        client = tg.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            assert refusals_while_behind(server, client) == []
        finally:
            client.close()


def test_loop_lag_measures_a_held_loop_and_stops_when_not_asked() -> None:
    async def run() -> tuple[int, int, bool]:
        lag = LoopLag(interval_ns=5_000_000)
        assert lag.late_ns() == 0  # nothing measured yet
        await asyncio.sleep(0.001)
        time.sleep(0.03)  # the loop held past the beat's due time
        await asyncio.sleep(0.001)  # the late beat runs; the next is not due yet
        held = lag.late_ns()
        await asyncio.sleep(0.05)
        on_time = lag.late_ns()
        lag.stop()
        return held, on_time, not lag._timer.running

    held, on_time, stopped = asyncio.run(run())
    assert held >= 20_000_000
    assert on_time < held
    assert stopped


@pytest.mark.parametrize("interval_ns", [0, -1])
def test_loop_lag_needs_a_positive_interval(interval_ns: int) -> None:
    with pytest.raises(ValueError, match="interval_ns"):
        LoopLag(interval_ns)
