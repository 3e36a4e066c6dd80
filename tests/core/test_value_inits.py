"""The per-request values write their ``__init__`` out (see core/requests.py): each must take
exactly its fields, in order, and behave as a dataclass's would (equality, hash, replace)."""

import dataclasses

import pytest

from clockwork.core.actions import ActionResult, ActionStatus, EvictWeights, Infer, LoadWeights
from clockwork.core.events import ActionFinished, RequestArrived
from clockwork.core.ids import DeviceId
from clockwork.core.requests import InferRequest, Response, ResponseStatus
from clockwork.core.scheduler import SchedulerOutput
from clockwork.worker.device_state import Refused, Started, Wait
from clockwork.workload.base import Arrival

DEV = DeviceId("w0", 1)
REQ = InferRequest(11, "m", 12, 13, 14)
RESULT = ActionResult(21, DEV, "m", ActionStatus.TOO_LATE, 22, 23, 24, 25, 26, 27, "why")
INFER = Infer(31, DEV, "m", 4, (1, 2), 32, 33, 34)
# one of each, every field given a value of its own (no defaults), as (class, field values)
EXAMPLES: list[tuple[type, tuple[object, ...]]] = [
    (InferRequest, (11, "m", 12, 13, 14)),
    (Response, (1, "m", ResponseStatus.LATE, 2, "late", 3, 4, True)),
    (LoadWeights, (41, DEV, "m", 42, 43, 44)),
    (Infer, (31, DEV, "m", 4, (1, 2), 32, 33, 34)),
    (EvictWeights, (51, DEV, "m")),
    (ActionResult, (21, DEV, "m", ActionStatus.TOO_LATE, 22, 23, 24, 25, 26, 27, "why")),
    (RequestArrived, (REQ,)),
    (ActionFinished, (RESULT,)),
    (SchedulerOutput, ([INFER], [], 61)),
    (Started, (INFER, 71)),
    (Refused, (RESULT,)),
    (Wait, (81,)),
    (Arrival, (91, "m", 92, 93)),
]


@pytest.mark.parametrize(("cls", "values"), EXAMPLES, ids=lambda x: getattr(x, "__name__", ""))
def test_init_takes_exactly_the_fields_in_order(cls: type, values: tuple[object, ...]) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    assert len(names) == len(values)
    positional = cls(*values)
    by_name = cls(**dict(zip(names, values, strict=True)))
    assert [getattr(positional, n) for n in names] == list(values)
    assert by_name == positional
    with pytest.raises(TypeError):
        cls(*values, 0)


def test_defaults_and_value_semantics() -> None:
    r = Response(7, "m", ResponseStatus.SUCCESS, 10)
    assert (r.detail, r.action_id, r.batch_size, r.cold_start) == ("", -1, 0, False)
    assert InferRequest(1, "m", 0, 5).priority == 0
    dev = DeviceId("w0", 0)
    a = ActionResult(3, dev, "m", ActionStatus.SUCCESS, 1, 2, 3)
    assert (a.exec_ns, a.input_copy_ns, a.output_copy_ns, a.detail) == (0, 0, 0, "")
    same = ActionResult(3, dev, "m", ActionStatus.SUCCESS, 1, 2, 3)
    assert a == same and hash(a) == hash(same) and a != dataclasses.replace(a, ended_ns=4)
    infer = Infer(1, dev, "m", 4, (1, 2), 0, 10, 5)
    moved = dataclasses.replace(infer, action_id=2, earliest_ns=1)
    assert (moved.action_id, moved.earliest_ns, moved.request_ids) == (2, 1, (1, 2))
    assert {LoadWeights(1, dev, "m", 0, 1, 1), EvictWeights(2, dev, "m")} == {
        LoadWeights(1, dev, "m", 0, 1, 1),
        EvictWeights(2, dev, "m"),
    }
    assert repr(InferRequest(1, "m", 0, 5)) == (
        "InferRequest(request_id=1, model='m', arrival_ns=0, deadline_ns=5, priority=0)"
    )


def test_device_id_equality_by_value() -> None:
    # compiled, DeviceId's equality is its own written-out __eq__ (see core/ids.py)
    a, b = DeviceId("w0", 1), DeviceId("w0", 1)
    assert a is not b and a == b and hash(a) == hash(b) and {a: 1}[b] == 1
    assert a != DeviceId("w0", 2) and a != DeviceId("w1", 1) and a != ("w0", 1)
    assert DeviceId("w0", 2) > a and str(a) == "w0/1" and DeviceId.parse("w0/1") == a
