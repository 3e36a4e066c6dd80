"""The adaptive inference cap: misses (OVERLOADED, LATE) lower it by a factor at most once per
cooldown, answers in time raise it by one per cap's worth, it stays within its floor and ceiling,
and the door refuses at the cap it has now (HTTP, over a real socket)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from clockwork.core.requests import Response, ResponseStatus
from clockwork.frontend.adaptive_limit import AdaptiveLimit
from clockwork.frontend.limits import Door, DoorLimits, Refusal, RequestKind

from support.door import connect, door_server, head, read_answer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def answer(status: ResponseStatus) -> Response:
    return Response(1, "m", status, 0, "", 0, 1)


def test_misses_lower_the_cap_once_per_cooldown_and_answers_in_time_raise_it() -> None:
    clock = Clock()
    limit = AdaptiveLimit(4, 100, decrease=0.5, cooldown_s=0.1, clock_s=clock)
    assert limit.cap == 100
    limit.on_response(answer(ResponseStatus.OVERLOADED))
    limit.on_response(answer(ResponseStatus.LATE))  # the same burst: one signal
    assert limit.cap == 50
    clock.now += 0.1
    limit.on_response(answer(ResponseStatus.LATE))
    assert limit.cap == 25
    # infeasible at any load, and refusals that are not about time: no signal
    for status in (ResponseStatus.DEADLINE_INFEASIBLE, ResponseStatus.MODEL_NOT_FOUND):
        clock.now += 1
        limit.on_response(answer(status))
    assert limit.cap == 25
    for _ in range(26):  # about one cap's worth of answers in time: one more
        limit.on_response(answer(ResponseStatus.SUCCESS))
    assert limit.cap == 26
    for _ in range(10):
        clock.now += 1
        limit.on_response(answer(ResponseStatus.OVERLOADED))
    assert limit.cap == 4  # the floor


@given(
    st.lists(st.tuples(st.sampled_from(list(ResponseStatus)), st.floats(0, 1)), max_size=300),
    st.integers(1, 50),
    st.integers(0, 200),
)
def test_the_cap_stays_within_floor_and_ceiling(
    answers: list[tuple[ResponseStatus, float]], floor: int, extra: int
) -> None:
    clock = Clock()
    limit = AdaptiveLimit(floor, floor + extra, clock_s=clock)
    for status, dt in answers:
        clock.now += dt
        limit.on_response(answer(status))
        assert floor <= limit.cap <= floor + extra


def test_a_floor_at_the_cap_keeps_the_cap_fixed() -> None:
    assert Door(DoorLimits(max_inflight=64, inflight_floor=64)).adaptive is None
    door = Door(DoorLimits(max_inflight=64, inflight_floor=8))
    assert door.adaptive is not None and door.cap(RequestKind.INFERENCE) == 64
    assert door.cap(RequestKind.CONTROL) == DoorLimits().max_control_inflight


ADD = json.dumps(
    {
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]},
            {"name": "b", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]},
        ]
    }
).encode()


def _infer(port: int) -> tuple[int, str]:
    sock = connect(port)
    sock.sendall(
        head(
            "POST",
            "/v2/models/add/infer",
            {"Content-Type": "application/json", "Content-Length": str(len(ADD))},
        )
        + ADD
    )
    got = read_answer(sock)
    sock.close()
    return got.status, json.loads(got.body).get("reason", "") if got.status != 200 else ""


def test_the_door_refuses_at_the_cap_it_has_now() -> None:
    with door_server(DoorLimits(max_inflight=64, inflight_floor=1)) as s:
        assert _infer(s.port)[0] == 200
        adaptive = s.door.adaptive
        assert adaptive is not None

        def shrink() -> None:
            adaptive.value = 1.0
            s.door.enter(RequestKind.INFERENCE)  # one request held in flight

        s.call(shrink)
        status, reason = _infer(s.port)
        assert (status, reason) == (503, Refusal.INFLIGHT.value)
        s.call(lambda: s.door.leave(RequestKind.INFERENCE))
        assert _infer(s.port)[0] == 200
